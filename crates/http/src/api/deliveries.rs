//! Webhook deliveries: `GET /api/v1/webhooks/deliveries?state=` (the dead letters with
//! `state=dead`), one delivery, and `POST .../{id}/replay`, which makes a dead one pending
//! again. A user sees the status callbacks of their own messages; admins see all.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use textgate_core::clock::{format_rfc3339, now_ms};
use textgate_store::{Delivery, DeliveryFilter};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// What a caller is shown of an attempt's failure. Administrators see it whole; a user sees
/// the receiver's HTTP status, or the policy's refusal of their URL, but never a transport
/// error: "connection refused" against "timed out" would let a user map a network from the
/// server's side.
fn shown_error(caller: &Caller, code: Option<i64>, error: Option<&str>) -> Option<String> {
    let error = error?;
    if caller.is_admin() {
        return Some(error.to_string());
    }
    Some(match code {
        Some(c) => format!("the receiver answered HTTP {c}"),
        None if error.contains(crate::callbacks::REFUSED) => error.to_string(),
        None => {
            "no HTTP answer (the receiver could not be reached or did not answer in time)".into()
        }
    })
}

fn delivery_json(caller: &Caller, d: &Delivery) -> Value {
    let t = |v: Option<i64>| v.map(format_rfc3339);
    json!({
        "id": d.id,
        "channel": d.channel,
        "event": d.event,
        "target": d.target,
        "inbound_id": d.inbound_id,
        "message_id": d.message_id,
        "status": d.status,
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at": (d.state == "pending").then(|| format_rfc3339(d.next_at)),
        "last_code": d.last_code,
        "last_error": shown_error(caller, d.last_code, d.last_error.as_deref()),
        "created_at": format_rfc3339(d.created_at),
        "done_at": t(d.done_at),
    })
}

fn visible(caller: &Caller, d: &Delivery) -> bool {
    caller.is_admin() || d.owner_id == Some(caller.id)
}

/// The query of `GET /api/v1/webhooks/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `pending`, `delivered` or `dead`.
    pub state: Option<String>,
    /// Page size (1–1000, default 50).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /api/v1/webhooks/deliveries`: newest first.
pub async fn list(
    caller: Caller,
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = super::list_query(q)?;
    let state = q.state.filter(|s| !s.is_empty());
    if let Some(s) = &state {
        if !matches!(s.as_str(), "pending" | "delivered" | "dead") {
            return Err(ApiError::bad_request(
                "invalid_state",
                format!("unknown state \"{s}\": use pending, delivered or dead"),
            ));
        }
    }
    let limit = super::page_limit(q.limit.as_deref(), 50, 1000)?;
    let before = super::id_cursor(q.cursor.as_deref())?;
    let rows = st
        .store
        .list_deliveries(DeliveryFilter {
            state,
            owner_id: caller.owner_filter(),
            before,
            limit: limit + 1,
        })
        .await?;
    Ok(Json(super::page_json(
        "deliveries",
        rows,
        limit,
        q.cursor.filter(|c| !c.is_empty()),
        |d| d.id.to_string(),
        |d| delivery_json(&caller, d),
    )))
}

async fn find(st: &AppState, caller: &Caller, raw: &str) -> ApiResult<Delivery> {
    let id = super::path_id(raw, "delivery")?;
    match st.store.get_delivery(id).await? {
        Some(d) if visible(caller, &d) => Ok(d),
        _ => Err(ApiError::not_found("delivery")),
    }
}

/// `GET /api/v1/webhooks/deliveries/{id}`: with every attempt (`attempt_log`).
pub async fn get_one(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let d = find(&st, &caller, &id).await?;
    let mut v = delivery_json(&caller, &d);
    let log = st.store.delivery_attempts(d.id).await?;
    v["attempt_log"] = log
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "at": format_rfc3339(a.at),
                "code": a.code,
                "error": shown_error(&caller, a.code, a.error.as_deref()),
            })
        })
        .collect();
    Ok(Json(v))
}

/// `POST /api/v1/webhooks/deliveries/{id}/replay`: a dead delivery is tried again at once,
/// and retried for the configured period from now.
pub async fn replay(
    caller: Caller,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let d = find(&st, &caller, &id).await?;
    let now = now_ms();
    let give_up_at = now + st.dispatcher.inbound.retry_for();
    match st
        .store
        .replay_delivery(d.id, now, give_up_at)
        .await
        .map_err(ApiError::not_stored)?
    {
        Some(d) => {
            st.dispatcher.deliveries.notify_waiters();
            Ok(Json(delivery_json(&caller, &d)))
        }
        None => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_dead",
            format!(
                "delivery {} is {}: only dead deliveries can be replayed",
                d.id, d.state
            ),
        )),
    }
}
