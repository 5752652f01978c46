//! `GET /api/v1/audit` (administrators): the audit log, newest first; docs/operations.md.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use textgate_core::clock::format_rfc3339;
use textgate_store::{AuditEntry, AuditFilter};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this action (`user.disabled`), or a family of them (`user.`).
    pub action: Option<String>,
    /// Only what this user (or, on the command line, operating system user) did.
    pub actor: Option<String>,
    /// Page size (1–1000, default 50).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The longest `action` or `actor` filter: longer ones match nothing that is stored.
const MAX_FILTER: usize = 128;

/// An entry as the API shows it.
pub fn entry_json(e: &AuditEntry) -> Value {
    json!({
        "id": e.id,
        "at": format_rfc3339(e.at),
        "actor": e.actor,
        "via": e.via,
        "address": e.address,
        "action": e.action,
        "target": e.target,
        "detail": e.detail,
    })
}

/// `GET /api/v1/audit?action=&actor=&limit=&cursor=`.
pub async fn list(
    caller: Caller,
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    super::require_admin(&caller)?;
    let q = super::list_query(q)?;
    let filter = |v: Option<String>, what: &str| -> ApiResult<Option<String>> {
        match v.filter(|v| !v.is_empty()) {
            Some(v) if v.len() > MAX_FILTER => Err(ApiError::bad_request(
                "invalid_filter",
                format!("the {what} filter is longer than {MAX_FILTER} bytes"),
            )),
            v => Ok(v),
        }
    };
    let action = filter(q.action, "action")?;
    let actor = filter(q.actor, "actor")?;
    let limit = super::page_limit(q.limit.as_deref(), 50, 1000)?;
    let before = super::id_cursor(q.cursor.as_deref())?;
    let rows = st
        .store
        .audit_log(AuditFilter {
            action,
            actor,
            before,
            limit: limit + 1,
        })
        .await?;
    Ok(Json(super::page_json(
        "entries",
        rows,
        limit,
        q.cursor.filter(|c| !c.is_empty()),
        |e| e.id.to_string(),
        entry_json,
    )))
}
