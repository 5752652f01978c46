//! `GET /api/v1/devices`: each device's state and counters. Only administrators see a
//! device's `last_error`: it names the SMSC's host, port and account.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::AppState;

/// Lists the devices.
pub async fn list(caller: Caller, State(st): State<AppState>) -> Json<Value> {
    let admin = caller.is_admin();
    let devices: Vec<Value> = st
        .dispatcher
        .devices
        .iter()
        .map(|d| {
            let s = &d.stats;
            json!({
                "name": d.device.name(),
                "kind": d.device.kind(),
                "state": d.state().as_str(),
                "sent": s.sent.load(Ordering::Relaxed),
                "received": s.received.load(Ordering::Relaxed),
                "failed": s.failed.load(Ordering::Relaxed),
                "retried": s.retried.load(Ordering::Relaxed),
                "receipts": s.receipts.load(Ordering::Relaxed),
                "window": d.device.window(),
                "max_rate": d.max_rate,
                "details": d.device.details().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "last_error": admin
                    .then(|| d.device.last_error().or_else(|| s.last_error.lock().ok().and_then(|e| e.clone())))
                    .flatten(),
            })
        })
        .collect();
    Json(json!({ "devices": devices, "next_cursor": null, "has_more": false }))
}
