//! `GET /api/v1/nodes` (administrators): the nodes that share this store, alive, dead or
//! stopped, with their address, build, uptime and the work each does for all (its leases);
//! docs/operations.md.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Lists the nodes, newest start first.
pub async fn list(caller: Caller, State(st): State<AppState>) -> ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    let cluster = super::cluster(&st)?;
    let nodes = cluster.nodes().await.map_err(ApiError::not_stored)?;
    Ok(Json(
        json!({ "nodes": nodes, "next_cursor": null, "has_more": false }),
    ))
}
