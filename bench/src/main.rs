//! Load generator for textgate's benchmarks. `bench/run` starts the server and calls this.
//!
//! Sends N messages through `POST /api/v1/messages` from C concurrent keep-alive clients
//! (optionally paced to a fixed total rate), then waits until the server's `/metrics` count
//! every message as delivered. Prints accepted msg/s, end-to-end msg/s, accept latency
//! percentiles and the server's CPU time per message (from /proc/PID/stat).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

mod common;

use common::{
    cpu_seconds, cpu_since, metric, print_latency_and_cpu, wait_delivered, HttpClient, DELIVERED,
};

struct Args {
    url: String,
    key: String,
    pid: Option<u32>,
    n: usize,
    c: usize,
    rate: f64,
    label: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        url: String::new(),
        key: String::new(),
        pid: None,
        n: 20_000,
        c: 64,
        rate: 0.0,
        label: "run".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val()?,
            "--key" => a.key = val()?,
            "--pid" => a.pid = Some(val()?.parse()?),
            "-n" => a.n = val()?.parse()?,
            "-c" => a.c = val()?.parse()?,
            "--rate" => a.rate = val()?.parse()?,
            "--label" => a.label = val()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if a.url.is_empty() || a.key.is_empty() {
        bail!("usage: textgate-bench --url URL --key KEY [--pid PID] [-n N] [-c C] [--rate R] [--label L]");
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(a.c)
        .build_http();
    let delivered_before = metric(&client, &a.url, DELIVERED).await?;
    let cpu_before = a.pid.and_then(cpu_seconds);
    let next = Arc::new(AtomicUsize::new(0));
    let url = Arc::new(format!("{}/api/v1/messages", a.url));
    let auth = Arc::new(format!("Bearer {}", a.key));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.c {
        let (client, next, url, auth) = (client.clone(), next.clone(), url.clone(), auth.clone());
        let (n, rate) = (a.n, a.rate);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if rate > 0.0 {
                    // Open-loop pacing: request i is due at i / rate seconds.
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = format!(
                    r#"{{"to":"+1555{:07}","body":"Your verification code is {:06}"}}"#,
                    i % 10_000_000,
                    i % 1_000_000
                );
                let req = hyper::Request::post(url.as_str())
                    .header("authorization", auth.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .expect("a valid request");
                let t = Instant::now();
                match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().as_u16() == 202;
                        let _ = resp.into_body().collect().await;
                        if ok {
                            lat.push(t.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::with_capacity(a.n);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let accept_time = start.elapsed();
    let accepted = lat.len();
    wait_delivered(&client, &a.url, delivered_before, accepted).await?;
    let e2e_time = start.elapsed();
    let cpu = cpu_since(a.pid, cpu_before);
    lat.sort();
    println!("== {} ==", a.label);
    println!(
        "messages          {accepted} accepted, {errors} errors, concurrency {}{}",
        a.c,
        if a.rate > 0.0 {
            format!(", paced at {} msg/s", a.rate)
        } else {
            String::new()
        }
    );
    println!(
        "accepted          {:.0} msg/s",
        accepted as f64 / accept_time.as_secs_f64()
    );
    println!(
        "end to end        {:.0} msg/s (all delivered after {:.2} s)",
        accepted as f64 / e2e_time.as_secs_f64(),
        e2e_time.as_secs_f64()
    );
    print_latency_and_cpu("accept latency", &lat, cpu, "message");
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}
