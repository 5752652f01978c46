//! The suppression list (admins): numbers that texted STOP, or that an admin added. Texts to
//! them fail with `OPTED_OUT` until they text START or are removed here.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use textgate_core::address::E164;
use textgate_core::clock::{format_rfc3339, now_ms};
use textgate_engine::audit;
use textgate_store::Suppression;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

fn suppression_json(s: &Suppression) -> Value {
    json!({
        "number": s.number,
        "source": s.source,
        "note": s.note,
        "created_at": format_rfc3339(s.created_at),
    })
}

fn number(st: &AppState, raw: &str) -> ApiResult<String> {
    E164::parse(raw, st.country)
        .map(|n| n.as_str().to_string())
        .map_err(|e| ApiError::invalid("invalid_number", format!("\"{raw}\": {e}")))
}

/// `GET /api/v1/suppressions`: in number order.
pub async fn list(
    caller: Caller,
    State(st): State<AppState>,
    q: Result<Query<super::PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    let q = super::list_query(q)?;
    let limit = super::page_limit(q.limit.as_deref(), 100, 1000)?;
    let after = q.cursor.filter(|c| !c.is_empty());
    let rows = st.store.list_suppressions(after.clone(), limit + 1).await?;
    Ok(Json(super::page_json(
        "suppressions",
        rows,
        limit,
        after,
        |s| s.number.clone(),
        suppression_json,
    )))
}

/// The body of `POST /api/v1/suppressions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    /// The number.
    pub number: String,
    /// Why, for people.
    pub note: Option<String>,
}

/// `POST /api/v1/suppressions`: 201 when added, 200 when it was on the list already.
pub async fn add(
    caller: Caller,
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    super::require_admin(&caller)?;
    let (req, _) =
        super::json_body::<AddRequest>(&headers, body, st.config.server.max_request_bytes.0)?;
    let s = Suppression {
        number: number(&st, &req.number)?,
        source: "api".into(),
        note: req.note,
        created_at: now_ms(),
    };
    let added = st
        .store
        .add_suppression(s.clone())
        .await
        .map_err(ApiError::not_stored)?;
    st.dispatcher.inbound.set_suppressed(&s.number, true);
    if added {
        audit::record(
            &st.store,
            &caller.actor(),
            "suppression.added",
            &s.number,
            None,
        )
        .await;
    }
    let code = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(suppression_json(&s))))
}

/// `DELETE /api/v1/suppressions/{number}`.
pub async fn remove(
    caller: Caller,
    State(st): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<StatusCode> {
    super::require_admin(&caller)?;
    let n = number(&st, &raw)?;
    let removed = st
        .store
        .remove_suppression(&n)
        .await
        .map_err(ApiError::not_stored)?;
    st.dispatcher.inbound.set_suppressed(&n, false);
    if removed {
        audit::record(&st.store, &caller.actor(), "suppression.removed", &n, None).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("suppressed number"))
    }
}
