//! `GET /api/v1/status` (administrators): what `textgate status` shows — this node's build,
//! uptime and store, its devices' states, the queue and the nodes alive; docs/operations.md.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// This node's status.
pub async fn get(caller: Caller, State(st): State<AppState>) -> ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    let cluster = super::cluster(&st)?;
    let schema = st
        .store
        .schema_version()
        .await
        .map_err(ApiError::not_stored)?;
    let nodes = cluster.nodes().await.map_err(ApiError::not_stored)?;
    let queue: Map<String, Value> = crate::ops::queue_depth(&st)
        .await
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), json!(n)))
        .collect();
    let devices: Vec<Value> = st
        .dispatcher
        .devices
        .iter()
        .map(|d| {
            json!({
                "name": d.device.name(),
                "kind": d.device.kind(),
                "state": d.state().as_str(),
                "sent": d.stats.sent.load(Ordering::Relaxed),
                "failed": d.stats.failed.load(Ordering::Relaxed),
                "received": d.stats.received.load(Ordering::Relaxed),
            })
        })
        .collect();
    let me = &cluster.me;
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node": me.name,
        "started_at": me.started_at,
        "uptime_seconds": (textgate_core::clock::now_ms() - me.started_at).max(0) / 1000,
        "store": st.store.backend_name(),
        "schema": schema,
        "devices": devices,
        "queue": queue,
        "nodes_alive": nodes.iter().filter(|n| n.state == "alive").count(),
    })))
}
