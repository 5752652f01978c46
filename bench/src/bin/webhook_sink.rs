//! A fast webhook receiver for `bench/inbound/run`: answers every POST with 200, counts
//! them, and keeps how long each inbound text took from `received_at` (stamped by textgate
//! when the device handed it over) to arriving here. `GET /stats` answers
//! `{"count", "p50_ms", "p99_ms", "max_ms"}`.
//!
//!     textgate-webhook-sink [ADDR]      # prints "listening ADDR"

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Default)]
struct Stats {
    latencies_ms: Vec<f64>,
}

async fn handle(
    req: Request<Incoming>,
    stats: Arc<Mutex<Stats>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == hyper::Method::GET {
        let mut l = stats
            .lock()
            .map(|s| s.latencies_ms.clone())
            .unwrap_or_default();
        l.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if l.is_empty() {
                0.0
            } else {
                l[((l.len() - 1) as f64 * p).round() as usize]
            }
        };
        let body = serde_json::json!({
            "count": l.len(), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0)
        });
        return Ok(Response::new(Full::new(Bytes::from(body.to_string()))));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    let latency = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["data"]["received_at"].as_str().map(str::to_string))
        .and_then(|s| OffsetDateTime::parse(&s, &Rfc3339).ok())
        .map(|t| (now - t).as_seconds_f64() * 1000.0)
        .unwrap_or(0.0);
    if let Ok(mut s) = stats.lock() {
        s.latencies_ms.push(latency);
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening {}", listener.local_addr()?);
    let stats = Arc::new(Mutex::new(Stats::default()));
    loop {
        let (stream, _) = listener.accept().await?;
        let stats = stats.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |r| handle(r, stats.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
