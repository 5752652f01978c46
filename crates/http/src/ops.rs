//! Operations endpoints: `/healthz`, `/metrics`, `/api/openapi.json`, and the JSON answers
//! for unknown paths and methods.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use textgate_core::status::Status;

use crate::error::ApiError;
use crate::AppState;

/// The OpenAPI document, written by hand next to the handlers it describes.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /healthz`: 200 when the store answers, 503 when it does not.
pub async fn healthz(State(st): State<AppState>) -> Response {
    match st.store.health().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({"status": "ok", "store": st.store.backend_name()})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(
                    json!({"status": "unavailable", "error": "the database does not answer"}),
                ),
            )
                .into_response()
        }
    }
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// How old the queue depth on `/metrics` may be: it is counted in the database, at most this
/// often however many scrapers ask (everything else on `/metrics` is kept in memory).
pub const QUEUE_DEPTH_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// Messages waiting, by status.
type Depth = Vec<(Status, i64)>;

/// The queue depth of `/metrics`, counted at most once per [`QUEUE_DEPTH_MAX_AGE`]; while one
/// scrape counts, the others answer with the last count.
#[derive(Default)]
pub struct QueueDepth {
    last: std::sync::Mutex<Option<(std::time::Instant, Depth)>>,
    counting: std::sync::atomic::AtomicBool,
}

impl QueueDepth {
    /// The depth, counted by `count` when the last count is too old.
    pub async fn get<F, Fut>(&self, count: F) -> Vec<(Status, i64)>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<Vec<(Status, i64)>>>,
    {
        let cached = self.last.lock().ok().and_then(|l| l.clone());
        let fresh = cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < QUEUE_DEPTH_MAX_AGE);
        if fresh || self.counting.swap(true, Ordering::AcqRel) {
            return cached.map(|(_, v)| v).unwrap_or_default();
        }
        let counted = count().await;
        self.counting.store(false, Ordering::Release);
        match counted {
            Some(v) => {
                if let Ok(mut l) = self.last.lock() {
                    *l = Some((std::time::Instant::now(), v.clone()));
                }
                v
            }
            None => cached.map(|(_, v)| v).unwrap_or_default(),
        }
    }
}

/// `GET /metrics`, in the Prometheus text format; with `[server] metrics_token`, only for
/// `Authorization: Bearer TOKEN`.
pub async fn metrics(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &st.config.server.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compared as hashes, so the time taken says nothing about the token.
        use sha2::{Digest, Sha256};
        if Sha256::digest(given.as_bytes()) != Sha256::digest(token.as_bytes()) {
            return ApiError::unauthorized(
                "/metrics needs `Authorization: Bearer TOKEN` with [server] metrics_token",
            )
            .into_response();
        }
    }
    let mut out = String::with_capacity(4096);
    let d = &st.dispatcher;
    let c = &d.counters;
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    };
    counter(
        "textgate_messages_accepted_total",
        "Messages accepted through the HTTP API.",
        st.http.accepted.load(Ordering::Relaxed),
    );
    counter(
        "textgate_messages_sent_total",
        "Messages a device took.",
        c.sent.load(Ordering::Relaxed),
    );
    counter(
        "textgate_message_retries_total",
        "Transient device errors that were retried.",
        c.retries.load(Ordering::Relaxed),
    );
    counter(
        "textgate_receipts_unmatched_total",
        "Delivery receipts that matched no message part.",
        c.unmatched_receipts.load(Ordering::Relaxed),
    );
    counter(
        "textgate_inbound_total",
        "Inbound texts stored.",
        c.inbound.load(Ordering::Relaxed),
    );
    let w = &st.http.webhooks;
    counter(
        "textgate_webhooks_delivered_total",
        "Webhook POSTs answered with a 2xx.",
        w.delivered.load(Ordering::Relaxed),
    );
    counter(
        "textgate_webhook_failures_total",
        "Webhook attempts that failed (retried or given up).",
        w.failed.load(Ordering::Relaxed),
    );
    counter(
        "textgate_webhooks_dead_total",
        "Webhook deliveries given up and kept as dead letters.",
        w.dead.load(Ordering::Relaxed),
    );
    counter(
        "textgate_emails_accepted_total",
        "E-mails the SMTP listener accepted and stored as texts.",
        c.emails.load(Ordering::Relaxed),
    );
    counter(
        "textgate_email_texts_total",
        "Texts stored from accepted e-mails.",
        c.email_texts.load(Ordering::Relaxed),
    );
    let m = &c.mail;
    counter(
        "textgate_mails_sent_total",
        "E-mails the mailer handed to the relay.",
        m.delivered.load(Ordering::Relaxed),
    );
    counter(
        "textgate_mail_failures_total",
        "Mailer attempts the relay refused or that could not reach it.",
        m.failed.load(Ordering::Relaxed),
    );
    counter(
        "textgate_mails_dead_total",
        "E-mails given up after [mailer] retry_for: dead letters.",
        m.dead.load(Ordering::Relaxed),
    );
    counter(
        "textgate_smtp_auth_failures_total",
        "SMTP AUTH attempts refused.",
        c.smtp_auth_failures.load(Ordering::Relaxed),
    );
    counter(
        "textgate_signin_lockouts_total",
        "Sign-ins refused unchecked because the name or address was locked out.",
        c.signin_lockouts.load(Ordering::Relaxed),
    );
    let _ = writeln!(out, "# HELP textgate_messages_final_total Messages that reached a final status.\n# TYPE textgate_messages_final_total counter");
    for (i, s) in Status::ALL.iter().enumerate() {
        if s.is_final() {
            let _ = writeln!(
                out,
                "textgate_messages_final_total{{status=\"{s}\"}} {}",
                c.finals[i].load(Ordering::Relaxed)
            );
        }
    }
    let store = st.store.clone();
    let depth = st
        .queue_depth
        .get(|| async move {
            store
                .queue_depth()
                .await
                .map_err(|e| tracing::warn!(error = %e, "metrics: queue depth unavailable"))
                .ok()
        })
        .await;
    let _ = writeln!(out, "# HELP textgate_queue_depth Messages waiting, by status (counted at most every 10 s).\n# TYPE textgate_queue_depth gauge");
    for (s, n) in depth {
        let _ = writeln!(out, "textgate_queue_depth{{status=\"{s}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP textgate_device_up Whether the device is up (1) or not (0).\n# TYPE textgate_device_up gauge");
    for e in &d.devices {
        let up = u8::from(e.state() == textgate_drivers::DeviceState::Up);
        let _ = writeln!(
            out,
            "textgate_device_up{{device=\"{}\",kind=\"{}\"}} {up}",
            e.device.name(),
            e.device.kind()
        );
    }
    for (name, help, get) in [
        (
            "textgate_device_sent_total",
            "Messages the device took.",
            (|e: &textgate_engine::dispatcher::DeviceEntry| e.stats.sent.load(Ordering::Relaxed))
                as fn(&_) -> u64,
        ),
        (
            "textgate_device_failed_total",
            "Messages the device refused for good.",
            |e| e.stats.failed.load(Ordering::Relaxed),
        ),
        (
            "textgate_device_retried_total",
            "Transient errors from the device.",
            |e| e.stats.retried.load(Ordering::Relaxed),
        ),
        (
            "textgate_device_receipts_total",
            "Delivery receipts from the device.",
            |e| e.stats.receipts.load(Ordering::Relaxed),
        ),
        (
            "textgate_device_received_total",
            "Inbound texts from the device.",
            |e| e.stats.received.load(Ordering::Relaxed),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for e in &d.devices {
            let _ = writeln!(out, "{name}{{device=\"{}\"}} {}", e.device.name(), get(e));
        }
    }
    // Each family's samples together, as the text format wants them.
    let mut families: std::collections::BTreeMap<&'static str, Vec<(String, i64)>> =
        Default::default();
    for e in &d.devices {
        for (k, v) in e.device.details() {
            families
                .entry(k)
                .or_default()
                .push((e.device.name().to_string(), v));
        }
    }
    for (k, samples) in families {
        let kind = if k.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# TYPE textgate_device_{k} {kind}");
        for (device, v) in samples {
            let _ = writeln!(out, "textgate_device_{k}{{device=\"{device}\"}} {v}");
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Any unknown path.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint: see /api/openapi.json for the API",
    )
}

/// A known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method: see /api/openapi.json",
    )
}

/// Makes every error answer JSON (DESIGN.md §5), whatever produced it: axum's own rejections
/// (a path parameter that is not UTF-8, a body over the limit) and the timeout layers answer
/// in plain text, which this rewrites as `{"error": {"code", "message"}}` with their text as
/// the message.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // Rejections' texts are a line or two; a longer body is not one of them.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message).into_response();
    // Keep what the rejection said about the answer itself (Allow, Retry-After).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_depth_is_counted_at_most_once_per_interval() {
        let q = QueueDepth::default();
        let counted = std::sync::atomic::AtomicU32::new(0);
        for _ in 0..100 {
            let v = q
                .get(|| async {
                    counted.fetch_add(1, Ordering::Relaxed);
                    Some(vec![(Status::Queued, 7)])
                })
                .await;
            assert_eq!(v, vec![(Status::Queued, 7)]);
        }
        assert_eq!(
            counted.load(Ordering::Relaxed),
            1,
            "a hundred scrapes, one count"
        );
    }
}
