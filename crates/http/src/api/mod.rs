//! The REST API under `/api/v1` (DESIGN.md §5).
//!
//! - [`messages`]: send, get, list, cancel.
//! - [`devices`]: the devices and their counters.
//! - [`jobs`]: bulk CSV jobs: upload, progress, pause/resume/cancel, results.

pub mod devices;
pub mod jobs;
pub mod messages;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Reads a JSON body: a clear 400 for malformed JSON or an unknown or duplicated field, 413
/// for a body over the configured limit.
pub fn json_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: u64,
) -> Result<(T, Bytes), ApiError> {
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
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "empty_request",
            "the request has no body: send a JSON object",
        ));
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
