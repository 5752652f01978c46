//! The API's one error type. Each variant knows its HTTP status and a stable `code`; the
//! message says what was wrong and what to do. Server-side causes are logged with their
//! chain and answered with a generic message, never with internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use textgate_store::StoreError;

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request cannot be read.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 422: the request is well-formed but its values are not acceptable.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 404: no such thing (or not the caller's: the two look the same, docs/api.md).
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} with that id"),
        )
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 500, logging the cause.
    pub fn internal(cause: &dyn std::error::Error) -> ApiError {
        tracing::error!(error = %chain(cause), "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle the request; it has been logged",
        )
    }

    /// A store failure of a request that would have changed something: 503 "nothing was
    /// stored" when the database did not answer (so the client knows to try again), and as
    /// [`From<StoreError>`] otherwise.
    pub fn not_stored(e: StoreError) -> ApiError {
        match e {
            StoreError::Backend(_) | StoreError::Closed | StoreError::Open { .. } => {
                let mut err = ApiError::unavailable(&e);
                err.message = "the database is not answering; nothing was stored, try again".into();
                err
            }
            other => other.into(),
        }
    }

    fn unavailable(cause: &StoreError) -> ApiError {
        tracing::error!(error = %chain(cause), "request failed: the store");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the database is not answering; try again",
        )
    }
}

/// An error with its causes, each once: `outer: inner: innermost` (a cause whose message
/// its wrapper already shows is not repeated).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

impl From<StoreError> for ApiError {
    /// A conflict is 409; a database that does not answer is 503 (try again); a stored value
    /// that cannot be read is 500 and logged.
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Corrupt(_) => ApiError::internal(&e),
            StoreError::Backend(_) | StoreError::Closed | StoreError::Open { .. } => {
                ApiError::unavailable(&e)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        (self.status, body).into_response()
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_read_says_try_again_and_only_a_failed_write_says_nothing_was_stored() {
        let down = || StoreError::backend("connection refused");
        let read = ApiError::from(down());
        assert_eq!(read.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!read.message.contains("stored"), "{}", read.message);
        let write = ApiError::not_stored(down());
        assert_eq!(write.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            write.message.contains("nothing was stored"),
            "{}",
            write.message
        );
        let corrupt = ApiError::from(StoreError::Corrupt("unknown role".into()));
        assert_eq!(corrupt.status, StatusCode::INTERNAL_SERVER_ERROR);
        let conflict = ApiError::not_stored(StoreError::Conflict("taken".into()));
        assert_eq!(
            (conflict.status, conflict.code),
            (StatusCode::CONFLICT, "conflict")
        );
    }

    #[test]
    fn chains_show_each_cause_once() {
        let e = StoreError::Backend(textgate_store::Cause::new(std::io::Error::other("disk")));
        assert_eq!(chain(&e), "database error: disk");
    }
}
