//! Inbound texts: `GET /api/v1/inbound` (oldest first after a cursor, so an application can
//! fetch every text exactly once while new ones keep arriving), `GET /api/v1/inbound/{id}`,
//! and `POST /api/v1/devices/{name}/inbound`, which makes a loopback device receive a text.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use textgate_core::clock::format_rfc3339;
use textgate_store::{Inbound, InboundFilter};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// An inbound text as the API and webhooks show it.
pub fn inbound_json(t: &Inbound) -> Value {
    json!({
        "id": t.id,
        "from": t.from,
        "to": t.to,
        "body": t.body,
        "encoding": t.encoding,
        "parts": t.parts,
        "partial": t.partial,
        "device": t.device,
        "received_at": format_rfc3339(t.received_at),
    })
}

/// `GET /api/v1/inbound`: oldest first after the cursor.
pub async fn list(
    caller: Caller,
    State(st): State<AppState>,
    q: Result<Query<super::PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = super::list_query(q)?;
    let limit = super::page_limit(q.limit.as_deref(), 100, 1000)?;
    let after = super::id_cursor(q.cursor.as_deref())?;
    // On an empty page the cursor stays where the caller was: polling with it returns only
    // new texts.
    let rows = st
        .store
        .list_inbound(InboundFilter {
            user_id: caller.owner_filter(),
            after,
            limit: limit + 1,
        })
        .await?;
    Ok(Json(super::page_json(
        "messages",
        rows,
        limit,
        Some(after.unwrap_or(0).to_string()),
        |t| t.id.to_string(),
        inbound_json,
    )))
}

/// `GET /api/v1/inbound/{id}`: with the users it is designated to.
pub async fn get_one(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = super::path_id(&id, "inbound text")?;
    let Some(t) = st.store.get_inbound(id, caller.owner_filter()).await? else {
        return Err(ApiError::not_found("inbound text"));
    };
    let mut v = inbound_json(&t);
    if caller.is_admin() {
        v["users"] = json!(st.store.inbound_designees(id).await?);
    }
    Ok(Json(v))
}

/// The body of `POST /api/v1/devices/{name}/inbound`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateRequest {
    /// The sender.
    pub from: String,
    /// The number it was sent to (default: the device's `number`).
    pub to: Option<String>,
    /// The text.
    pub body: String,
}

/// `POST /api/v1/devices/{name}/inbound` (admins): a loopback device receives a text, which
/// then takes the path of every inbound text. Answers once it is stored.
pub async fn simulate(
    caller: Caller,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    super::require_admin(&caller)?;
    let (req, _) =
        super::json_body::<SimulateRequest>(&headers, body, st.config.server.max_request_bytes.0)?;
    let entry = st
        .dispatcher
        .devices
        .iter()
        .find(|d| d.device.name() == name)
        .ok_or_else(|| ApiError::not_found("device"))?;
    if req.from.trim().is_empty() || req.body.is_empty() {
        return Err(ApiError::invalid(
            "invalid_inbound",
            "from and body must not be empty",
        ));
    }
    let to = req.to.unwrap_or_default();
    let Some(stored) = entry.device.simulate_inbound(&req.from, &to, &req.body) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_simulated",
            format!(
                "device \"{name}\" ({}) receives texts only from its network; inject texts into a loopback device",
                entry.device.kind()
            ),
        ));
    };
    match stored.await {
        Ok(true) => Ok((StatusCode::ACCEPTED, Json(json!({"stored": true})))),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_stored",
            "the text could not be stored; see the server log",
        )),
    }
}
