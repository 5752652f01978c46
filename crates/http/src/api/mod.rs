//! The REST API under `/api/v1` (docs/api.md).
//!
//! - [`messages`]: send, get, list, cancel.
//! - [`devices`]: the devices and their counters.
//! - [`inbound`]: inbound texts (cursor API) and texts injected into a loopback device.
//! - [`suppressions`]: the opt-out list (admins).
//! - [`deliveries`]: webhook deliveries and the dead letters, replayable.
//! - [`jobs`]: bulk CSV jobs: upload, progress, pause/resume/cancel, results.
//! - [`keys`]: API keys: list, create, revoke.
//! - [`contacts`]: the address book: contacts and groups, personal or shared.
//! - [`users`]: users (administrators): list, create, change, disable, set a password.
//! - [`ports`]: remote port servers: their link, their list, drain and resume.
//! - [`nodes`]: the nodes that share the store, and the work each does for all.

pub mod audit;
pub mod contacts;
pub mod deliveries;
pub mod devices;
pub mod inbound;
pub mod jobs;
pub mod keys;
pub mod messages;
pub mod nodes;
pub mod ports;
pub mod status;
pub mod suppressions;
pub mod users;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Reads a JSON body: 415 unless the request says it is JSON (a browser may send
/// `text/plain` across sites without asking first, so nothing else is read as JSON), a clear
/// 400 for malformed JSON or an unknown or duplicated field, 413 for a body over the
/// configured limit.
pub fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: u64,
) -> Result<(T, Bytes), ApiError> {
    require_json(headers)?;
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than the server's limit of {limit} bytes ([server] max_request_bytes)"),
            )
        } else {
            ApiError::bad_request("unreadable_body", format!("the request body could not be read: {e}"))
        }
    })?;
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::bad_request(
                "empty_request",
                "the request has no body: send a JSON object",
            ))
        }
        // serde would also read a struct from an array of its fields.
        Some(b) if *b != b'{' => {
            return Err(ApiError::bad_request(
                "invalid_json",
                "the body must be a JSON object, like {\"to\": \"+15551234567\", \"body\": \"Hi\"}",
            ))
        }
        Some(_) => {}
    }
    let value = serde_json::from_slice(&bytes).map_err(|e| {
        let msg = e.to_string();
        let code = if msg.contains("unknown field") {
            "unknown_field"
        } else if msg.contains("duplicate field") {
            "duplicate_field"
        } else if msg.contains("missing field") {
            "missing_field"
        } else {
            "invalid_json"
        };
        ApiError::bad_request(code, format!("the JSON body is not acceptable: {msg}"))
    })?;
    Ok((value, bytes))
}

/// 415 unless `Content-Type` is `application/json` or another `+json` type.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        return Ok(());
    }
    let said = if ctype.is_empty() {
        "no Content-Type".to_string()
    } else {
        format!(
            "Content-Type \"{}\"",
            ctype.chars().take(100).collect::<String>()
        )
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("the request has {said}: send the JSON body with `Content-Type: application/json`"),
    ))
}

/// A page size from the query: 1 to `max`, `default` when absent.
pub fn page_limit(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match raw {
        None | Some("") => Ok(default),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_limit",
                    format!("limit must be a whole number from 1 to {max}"),
                )
            }),
    }
}

/// The query of a list request, or a 400 that says what is wrong with it.
pub fn list_query<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(q)| q)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// A numeric cursor from the query (an id from an earlier page's `next_cursor`).
pub fn id_cursor(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_cursor",
                    "cursor must be a next_cursor value from an earlier page",
                )
            }),
    }
}

/// Refuses a caller who is not an admin.
pub fn require_admin(caller: &crate::auth::Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only admins may do this: use an admin's API key",
        ))
    }
}

/// The id in a path (`/api/v1/messages/{id}`); one that is not a number names nothing, so it
/// is answered as `what` not found.
pub(crate) fn path_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| ApiError::not_found(what))
}

/// A page of a list answer: the first `limit` of `rows` (read as `limit + 1`, so that one
/// more says there is more) as `{key: [...], "next_cursor", "has_more"}`. `next_cursor` is the
/// last item's cursor, or `fallback` on an empty page, so a client can keep polling with it.
pub fn page_json<T>(
    key: &str,
    mut rows: Vec<T>,
    limit: usize,
    fallback: Option<String>,
    cursor: impl Fn(&T) -> String,
    item: impl Fn(&T) -> serde_json::Value,
) -> serde_json::Value {
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = rows.last().map(cursor).or(fallback);
    let items: Vec<serde_json::Value> = rows.iter().map(item).collect();
    serde_json::json!({ key: items, "next_cursor": next_cursor, "has_more": has_more })
}

/// The query of a list that has only paging: `limit` and `cursor` (the `next_cursor` of the
/// previous page).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size; each list says its range and default.
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `429 quota_exceeded`: which limit, how much of it is used and when it resets, in the
/// error and in `Retry-After`.
pub fn over_quota(
    r: &textgate_engine::quota::Refused,
    now: textgate_core::clock::Millis,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({
        "error": {
            "code": "quota_exceeded",
            "message": r.message(),
            "quota": {
                "period": r.period,
                "limit": r.limit,
                "used": r.used,
                "requested": r.asked,
                "resets_at": textgate_core::clock::format_rfc3339(r.resets_at),
            },
        }
    });
    (
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        [(
            axum::http::header::RETRY_AFTER,
            r.retry_after(now).to_string(),
        )],
        axum::Json(body),
    )
        .into_response()
}

/// This node among the nodes on the store; `503 starting` until the server listens.
pub fn cluster(
    st: &crate::AppState,
) -> Result<&std::sync::Arc<textgate_engine::cluster::Cluster>, ApiError> {
    st.cluster.get().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the server is still starting; try again in a moment",
        )
    })
}
