//! Operations endpoints: `/healthz`, `/metrics`, `/api/openapi.json`, and the JSON answers
//! for unknown paths and methods.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use textgate_core::histogram::{Histogram, Snapshot};
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

/// Messages waiting, by status, counted at most every [`QUEUE_DEPTH_MAX_AGE`].
pub async fn queue_depth(st: &AppState) -> Depth {
    let store = st.store.clone();
    st.queue_depth
        .get(|| async move {
            store
                .queue_depth()
                .await
                .map_err(|e| tracing::warn!(error = %e, "queue depth unavailable"))
                .ok()
        })
        .await
}

/// `GET /metrics`, in the Prometheus text format; with `[server] metrics_token`, only for
/// `Authorization: Bearer TOKEN`.
pub async fn metrics(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(refused) = metrics_refused(&st, &headers) {
        return refused;
    }
    let mut out = Exposition::default();
    global_counters(&mut out, &st);
    out.family(
        "textgate_accept_duration_seconds",
        "histogram",
        "POST /api/v1/messages answered 202, from the request to the answer.",
    );
    out.histogram(
        "textgate_accept_duration_seconds",
        &[],
        &st.http.accept.snapshot(),
    );
    final_statuses(&mut out, &st.dispatcher.counters);
    let depth = queue_depth(&st).await;
    out.family(
        "textgate_queue_depth",
        "gauge",
        "Messages waiting, by status (counted at most every 10 s).",
    );
    for (s, n) in depth {
        out.sample("textgate_queue_depth", &[("status", s.as_str())], n);
    }
    device_metrics(&mut out, &st.dispatcher.devices);
    port_server_metrics(&mut out, &st.ports);
    if let Some(c) = st.cluster.get() {
        node_metrics(&mut out, c);
    }
    let url = st.config.server.database_url.clone();
    if let Ok(Some(d)) = tokio::task::spawn_blocking(move || Disk::read(&url)).await {
        d.write(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out.0).into_response()
}

/// `Some(401)` when `/metrics` asks for a token and the request does not carry it.
fn metrics_refused(st: &AppState, headers: &axum::http::HeaderMap) -> Option<Response> {
    let token = st.config.server.metrics_token.as_ref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared as hashes, so the time taken says nothing about the token.
    use sha2::{Digest, Sha256};
    (Sha256::digest(given.as_bytes()) != Sha256::digest(token.as_bytes())).then(|| {
        ApiError::unauthorized(
            "/metrics needs `Authorization: Bearer TOKEN` with [server] metrics_token",
        )
        .into_response()
    })
}

/// The Prometheus text format, written a family at a time (each family's samples together).
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {v}", labels.join(","));
        }
    }

    fn counter(&mut self, name: &str, help: &str, v: &AtomicU64) {
        self.family(name, "counter", help);
        self.sample(name, &[], v.load(Ordering::Relaxed));
    }

    /// One histogram's series: `NAME_bucket{…, le}` cumulative up to `+Inf`, `NAME_sum`
    /// (seconds) and `NAME_count`.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Snapshot) {
        let bucket = format!("{name}_bucket");
        for (le, n) in &h.buckets {
            let le = if le.is_finite() {
                le.to_string()
            } else {
                "+Inf".to_string()
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, n);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count);
    }
}

/// The SQLite database's files and the space of the filesystem that holds them: what a
/// "disk filling" alert watches. Nothing on PostgreSQL, whose files are on its own server.
struct Disk {
    /// The database, its write-ahead log and its shared-memory index, in bytes.
    store_bytes: u64,
    /// The filesystem's space free for textgate (not root's reserve), and its size.
    filesystem: Option<(u64, u64)>,
}

impl Disk {
    /// Reads the sizes now (a few `stat`s and one `statvfs`: blocking, but short).
    fn read(database_url: &str) -> Option<Disk> {
        let path = std::path::Path::new(database_url.strip_prefix("sqlite://")?);
        let store_bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                std::fs::metadata(p).ok()
            })
            .map(|m| m.len())
            .sum();
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        Some(Disk {
            store_bytes,
            filesystem: filesystem_space(dir),
        })
    }

    fn write(&self, out: &mut Exposition) {
        out.family(
            "textgate_store_size_bytes",
            "gauge",
            "The SQLite database's files: the database, its write-ahead log and its index.",
        );
        out.sample("textgate_store_size_bytes", &[], self.store_bytes);
        if let Some((avail, size)) = self.filesystem {
            out.family(
                "textgate_store_filesystem_avail_bytes",
                "gauge",
                "Space free for textgate on the filesystem that holds the SQLite database.",
            );
            out.sample("textgate_store_filesystem_avail_bytes", &[], avail);
            out.family(
                "textgate_store_filesystem_size_bytes",
                "gauge",
                "The size of the filesystem that holds the SQLite database.",
            );
            out.sample("textgate_store_filesystem_size_bytes", &[], size);
        }
    }
}

/// `(available, size)` of the filesystem holding `dir`, in bytes.
#[cfg(unix)]
fn filesystem_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    // Counted in fragments; the types are the platform's (`c_ulong`, `fsblkcnt_t`), all at
    // most 64 bits.
    let unit = s.fragment_size() as u64;
    Some((
        (s.blocks_available() as u64).saturating_mul(unit),
        (s.blocks() as u64).saturating_mul(unit),
    ))
}

#[cfg(not(unix))]
fn filesystem_space(_: &std::path::Path) -> Option<(u64, u64)> {
    None
}

/// A label value as the text format wants it: backslashes, `"` and line feeds escaped. Names are
/// checked when the configuration is read, so this changes nothing for them; it keeps a
/// value that slips through from breaking the exposition.
fn escape_label(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 2);
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The counters that are one number each.
fn global_counters(out: &mut Exposition, st: &AppState) {
    let c = &st.dispatcher.counters;
    let (w, m) = (&st.http.webhooks, &c.mail);
    for (name, help, v) in [
        (
            "textgate_messages_accepted_total",
            "Messages accepted through the HTTP API.",
            &st.http.accepted,
        ),
        (
            "textgate_messages_sent_total",
            "Messages a device took.",
            &c.sent,
        ),
        (
            "textgate_message_retries_total",
            "Transient device errors that were retried.",
            &c.retries,
        ),
        (
            "textgate_receipts_unmatched_total",
            "Delivery receipts that matched no message part.",
            &c.unmatched_receipts,
        ),
        (
            "textgate_inbound_total",
            "Inbound texts stored.",
            &c.inbound,
        ),
        (
            "textgate_webhooks_delivered_total",
            "Webhook POSTs answered with a 2xx.",
            &w.delivered,
        ),
        (
            "textgate_webhook_failures_total",
            "Webhook attempts that failed (retried or given up).",
            &w.failed,
        ),
        (
            "textgate_webhooks_dead_total",
            "Webhook deliveries given up and kept as dead letters.",
            &w.dead,
        ),
        (
            "textgate_emails_accepted_total",
            "E-mails the SMTP listener accepted and stored as texts.",
            &c.emails,
        ),
        (
            "textgate_email_texts_total",
            "Texts stored from accepted e-mails.",
            &c.email_texts,
        ),
        (
            "textgate_mails_sent_total",
            "E-mails the mailer handed to the relay.",
            &m.delivered,
        ),
        (
            "textgate_mail_failures_total",
            "Mailer attempts the relay refused or that could not reach it.",
            &m.failed,
        ),
        (
            "textgate_mails_dead_total",
            "E-mails given up after [mailer] retry_for: dead letters.",
            &m.dead,
        ),
        (
            "textgate_smtp_auth_failures_total",
            "SMTP AUTH attempts refused.",
            &c.smtp_auth_failures,
        ),
        (
            "textgate_signin_lockouts_total",
            "Sign-ins refused unchecked because the name or address was locked out.",
            &c.signin_lockouts,
        ),
    ] {
        out.counter(name, help, v);
    }
}

/// Messages that reached a final status, by status.
fn final_statuses(out: &mut Exposition, c: &textgate_engine::dispatcher::Counters) {
    let name = "textgate_messages_final_total";
    out.family(name, "counter", "Messages that reached a final status.");
    for (i, s) in Status::ALL.iter().enumerate() {
        if s.is_final() {
            out.sample(
                name,
                &[("status", s.as_str())],
                c.finals[i].load(Ordering::Relaxed),
            );
        }
    }
}

/// Each device's state and counters, and the gauges and counters its driver keeps.
fn device_metrics(out: &mut Exposition, devices: &[textgate_engine::dispatcher::DeviceEntry]) {
    out.family(
        "textgate_device_up",
        "gauge",
        "Whether the device is up (1) or not (0).",
    );
    for e in devices {
        let up = u8::from(e.state() == textgate_drivers::DeviceState::Up);
        out.sample(
            "textgate_device_up",
            &[("device", e.device.name()), ("kind", e.device.kind())],
            up,
        );
    }
    type Get = fn(&textgate_engine::dispatcher::DeviceEntry) -> u64;
    let families: [(&str, &str, Get); 5] = [
        (
            "textgate_device_sent_total",
            "Messages the device took.",
            |e| e.stats.sent.load(Ordering::Relaxed),
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
    ];
    for (name, help, get) in families {
        out.family(name, "counter", help);
        for e in devices {
            out.sample(name, &[("device", e.device.name())], get(e));
        }
    }
    type Hist = fn(&textgate_engine::dispatcher::DeviceEntry) -> &Histogram;
    let histograms: [(&str, &str, Hist); 2] = [
        (
            "textgate_device_submit_duration_seconds",
            "From handing a message to the device to its answer, whatever the answer.",
            |e| &e.stats.submit,
        ),
        (
            "textgate_receipt_delay_seconds",
            "From a part's submit to its delivery receipt.",
            |e| &e.stats.receipt_delay,
        ),
    ];
    for (name, help, get) in histograms {
        out.family(name, "histogram", help);
        for e in devices {
            out.histogram(name, &[("device", e.device.name())], &get(e).snapshot());
        }
    }
    // The drivers' own: each family's samples together, as the text format wants them.
    let mut own: std::collections::BTreeMap<&'static str, Vec<(String, i64)>> = Default::default();
    for e in devices {
        for (k, v) in e.device.details() {
            own.entry(k)
                .or_default()
                .push((e.device.name().to_string(), v));
        }
    }
    for (k, samples) in own {
        let name = format!("textgate_device_{k}");
        // A figure named like one of the dispatcher's families above (a modem's
        // `received_total`) would repeat that family, which breaks the whole scrape: it is
        // left to `GET /api/v1/devices`.
        if families.iter().any(|(f, ..)| *f == name) {
            continue;
        }
        let kind = if k.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        out.family(
            &name,
            kind,
            &format!("The device driver's `{k}` (GET /api/v1/devices, `details`)."),
        );
        for (device, v) in samples {
            out.sample(&name, &[("device", &device)], v);
        }
    }
}

/// Each port server's link (docs/port-servers.md): whether it is up, when it was last heard
/// from, what it holds, and its counters. Nothing when no `[[port_server]]` is configured.
fn port_server_metrics(out: &mut Exposition, ports: &textgate_port::central::PortServers) {
    let all = ports.all();
    if all.is_empty() {
        return;
    }
    // One view each, so that a port server's gauges are read together.
    let views: Vec<_> = all.iter().map(|e| (e, e.view())).collect();
    let label = "port_server";
    out.family(
        "textgate_port_server_connected",
        "gauge",
        "Whether the port server's link is up (1) or not (0).",
    );
    for (e, v) in &views {
        out.sample(
            "textgate_port_server_connected",
            &[(label, &e.name)],
            u8::from(v.connected),
        );
    }
    // The same figure twice: `_timestamp_seconds` is the name the conventions give a Unix
    // time; the older name stays for the dashboards that use it.
    for (name, help) in [
        (
            "textgate_port_server_last_seen_timestamp_seconds",
            "When a frame last came from the port server (Unix time in seconds; 0: never).",
        ),
        (
            "textgate_port_server_last_seen_seconds",
            "Deprecated: textgate_port_server_last_seen_timestamp_seconds, under its old name.",
        ),
    ] {
        out.family(name, "gauge", help);
        for (e, _) in &views {
            let ms = e.last_seen_ms().max(0);
            out.sample(name, &[(label, &e.name)], ms as f64 / 1000.0);
        }
    }
    type Gauge = fn(&textgate_port::central::PortServerView) -> u64;
    let gauges: [(&str, &str, Gauge); 3] = [
        (
            "textgate_port_server_held",
            "Messages the port server holds (taken, not finished), as it last reported.",
            |v| v.held,
        ),
        (
            "textgate_port_server_unacked",
            "The port server's reports not yet acknowledged, as it last reported.",
            |v| v.unacked,
        ),
        (
            "textgate_port_server_in_flight",
            "Messages handed to the port server and not yet answered.",
            |v| v.in_flight,
        ),
    ];
    for (name, help, get) in gauges {
        out.family(name, "gauge", help);
        for (e, v) in &views {
            out.sample(name, &[(label, &e.name)], get(v));
        }
    }
    type Counter = fn(&textgate_port::central::PortCounters) -> &AtomicU64;
    let counters: [(&str, &str, Counter); 4] = [
        (
            "textgate_port_server_submits_total",
            "Messages handed to the port server (resends included).",
            |c| &c.submits,
        ),
        (
            "textgate_port_server_reports_total",
            "Reports from the port server: outcomes, receipts, inbound texts (resends included).",
            |c| &c.items,
        ),
        (
            "textgate_port_server_links_total",
            "Links the port server opened.",
            |c| &c.links,
        ),
        (
            "textgate_port_server_refused_total",
            "Links of the port server refused (wrong name, no common version, broken frames).",
            |c| &c.refused,
        ),
    ];
    for (name, help, get) in counters {
        out.family(name, "counter", help);
        for (e, _) in &views {
            out.sample(
                name,
                &[(label, &e.name)],
                get(&e.counters).load(Ordering::Relaxed),
            );
        }
    }
}

/// This node (each node serves its own `/metrics`): who it is, and the leases it holds.
fn node_metrics(out: &mut Exposition, c: &textgate_engine::cluster::Cluster) {
    out.family(
        "textgate_node_info",
        "gauge",
        "This node: its name, its id for this run and its build (always 1).",
    );
    out.sample(
        "textgate_node_info",
        &[
            ("node", &c.me.name),
            ("id", &c.me.id),
            ("version", &c.me.version),
        ],
        1,
    );
    out.family(
        "textgate_node_lease_held",
        "gauge",
        "Whether this node holds the lease of work done for all nodes (1), as it last took it; always 1 on a store of one node.",
    );
    // A node alone on its store (SQLite) takes no leases and does all that work itself: 1,
    // so that an alert on no node holding a lease does not fire for it.
    let held = c.held();
    for lease in ["queue-upkeep", "retention", "spool"] {
        out.sample(
            "textgate_node_lease_held",
            &[("lease", lease)],
            u8::from(!c.shared() || held.iter().any(|h| h == lease)),
        );
    }
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

/// Makes every error answer JSON (docs/api.md), whatever produced it: axum's own rejections
/// (a path parameter that is not UTF-8, a body over the limit) and the timeout layers answer
/// in plain text, which this rewrites as `{"error": {"code", "message"}}` with their text as
/// the message.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // JSON already, or a page of the web UI, which shows its errors as pages.
    let keep = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json") || c.starts_with("text/html"));
    if keep {
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

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("device", "plain-1")], 1);
        out.sample("m", &[("device", "a\"b\\c\nd")], 2);
        assert_eq!(
            out.0,
            "m{device=\"plain-1\"} 1\nm{device=\"a\\\"b\\\\c\\nd\"} 2\n"
        );
    }

    #[test]
    fn a_histogram_is_written_with_cumulative_buckets_sum_and_count() {
        let h = Histogram::new(&[0.01, 1.0]);
        h.observe(std::time::Duration::from_millis(5));
        h.observe(std::time::Duration::from_secs(2));
        let mut out = Exposition::default();
        out.histogram("t_seconds", &[("device", "d")], &h.snapshot());
        assert_eq!(
            out.0,
            "t_seconds_bucket{device=\"d\",le=\"0.01\"} 1\n\
             t_seconds_bucket{device=\"d\",le=\"1\"} 1\n\
             t_seconds_bucket{device=\"d\",le=\"+Inf\"} 2\n\
             t_seconds_sum{device=\"d\"} 2.005\n\
             t_seconds_count{device=\"d\"} 2\n"
        );
    }

    #[test]
    fn the_disk_gauges_read_the_sqlite_files_and_their_filesystem() {
        let dir = std::env::temp_dir().join(format!("textgate-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("t.db");
        std::fs::write(&db, [0u8; 1000]).unwrap();
        std::fs::write(dir.join("t.db-wal"), [0u8; 24]).unwrap();
        let d = Disk::read(&format!("sqlite://{}", db.display())).unwrap();
        assert_eq!(d.store_bytes, 1024);
        if cfg!(unix) {
            let (avail, size) = d.filesystem.expect("statvfs answers");
            assert!(size > 0 && avail <= size, "{avail} of {size}");
        }
        assert!(Disk::read("postgres://u@h/db").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
