//! What both load generators share: the server's CPU time, its `/metrics`, percentiles.

use std::time::{Duration, Instant};

use anyhow::bail;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;

/// The HTTP client the load generators use.
pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}

/// A value of the server's `/metrics`, 0 when absent.
pub async fn metric(client: &HttpClient, url: &str, name: &str) -> anyhow::Result<f64> {
    let resp = client.get(format!("{url}/metrics").parse()?).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix(name) {
            if let Some(v) = v.strip_prefix(' ') {
                return Ok(v.trim().parse()?);
            }
        }
    }
    Ok(0.0)
}

/// The `p` percentile of sorted durations, in milliseconds.
pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// The server's count of delivered messages.
pub const DELIVERED: &str = "textgate_messages_final_total{status=\"delivered\"}";

/// Waits until [`DELIVERED`] has grown by `n` since it was `before`, for at most 300 s.
pub async fn wait_delivered(
    client: &HttpClient,
    url: &str,
    before: f64,
    n: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let d = metric(client, url, DELIVERED).await? - before;
        if d as usize >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {d} of {n} messages were delivered within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CPU seconds process `pid` used since it had used `before`. (Each benchmark binary
/// includes this file; not all of them use everything in it.)
#[allow(dead_code)]
pub fn cpu_since(pid: Option<u32>, before: Option<f64>) -> Option<f64> {
    Some(cpu_seconds(pid?)? - before?)
}

/// Prints the latency percentiles (of sorted durations) and the server's CPU per item.
pub fn print_latency_and_cpu(what: &str, lat: &[Duration], cpu: Option<f64>, unit: &str) {
    println!(
        "{what:<18}p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(lat, 0.5),
        pct(lat, 0.9),
        pct(lat, 0.99),
        pct(lat, 1.0)
    );
    if let Some(cpu) = cpu {
        println!(
            "textgate CPU      {:.2} s total, {:.1} µs per {unit}",
            cpu,
            cpu * 1e6 / lat.len().max(1) as f64
        );
    }
}
