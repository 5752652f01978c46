//! `GET /api/v1/devices`: each device's state and counters. Only administrators see a
//! device's `last_error`: it names the SMSC's host, port and account. Administrators disable
//! a device (`POST …/{name}/disable`: nothing is sent through it, on every node) and enable it.

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
                "info": d.device.info().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "last_error": admin
                    .then(|| d.device.last_error().or_else(|| s.last_error.lock().ok().and_then(|e| e.clone())))
                    .flatten(),
            })
        })
        .collect();
    Json(json!({ "devices": devices, "next_cursor": null, "has_more": false }))
}

/// Disables or enables a device by name, here at once and on other nodes within
/// [`textgate_engine::dispatcher::DEVICE_CONTROL_POLL`]; the answer or why not.
pub async fn set_disabled(
    st: &AppState,
    name: &str,
    disabled: bool,
    by: &textgate_engine::audit::Actor,
) -> Result<(), crate::error::ApiError> {
    if !st
        .dispatcher
        .devices
        .iter()
        .any(|d| d.device.name() == name)
    {
        return Err(crate::error::ApiError::not_found("device"));
    }
    st.store
        .set_device_disabled(name, disabled, &by.name)
        .await
        .map_err(crate::error::ApiError::not_stored)?;
    let list = st
        .store
        .disabled_devices()
        .await
        .map_err(crate::error::ApiError::not_stored)?;
    st.dispatcher
        .set_paused(list.iter().map(|(n, _, _)| n.as_str()));
    let action = if disabled {
        "device.disabled"
    } else {
        "device.enabled"
    };
    textgate_engine::audit::record(&st.store, by, action, name, None).await;
    Ok(())
}

/// `POST /api/v1/devices/{name}/disable` (administrators).
pub async fn disable(
    caller: Caller,
    State(st): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> crate::error::ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    set_disabled(&st, &name, true, &caller.actor()).await?;
    Ok(Json(json!({"name": name, "state": "disabled"})))
}

/// `POST /api/v1/devices/{name}/enable` (administrators).
pub async fn enable(
    caller: Caller,
    State(st): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> crate::error::ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    set_disabled(&st, &name, false, &caller.actor()).await?;
    let state = st
        .dispatcher
        .devices
        .iter()
        .find(|d| d.device.name() == name)
        .map_or("unknown", |d| d.state().as_str());
    Ok(Json(json!({"name": name, "state": state})))
}
