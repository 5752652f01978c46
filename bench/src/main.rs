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

use common::{cpu_seconds, metric, print_latency_and_cpu, wait_delivered, HttpClient, DELIVERED};

struct Args {
    url: String,
    key: String,
    pid: Option<String>,
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
            "--pid" => a.pid = Some(val()?),
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
    // Several nodes: `--url` and `--pid` list them, comma-separated; clients spread over the
    // nodes, and deliveries and CPU are summed over them.
    let urls: Vec<String> = a.url.split(',').map(str::to_string).collect();
    let pids: Vec<u32> = a
        .pid
        .iter()
        .flat_map(|p| p.split(','))
        .filter_map(|p| p.parse().ok())
        .collect();
    let delivered = |client: HttpClient, urls: Vec<String>| async move {
        let mut sum = 0.0;
        for u in &urls {
            sum += metric(&client, u, DELIVERED).await?;
        }
        anyhow::Ok(sum)
    };
    let cpu_all = |pids: &[u32]| -> Option<f64> { pids.iter().map(|p| cpu_seconds(*p)).sum() };
    let delivered_before = delivered(client.clone(), urls.clone()).await?;
    let cpu_before = cpu_all(&pids);
    let next = Arc::new(AtomicUsize::new(0));
    let auth = Arc::new(format!("Bearer {}", a.key));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..a.c {
        let url = Arc::new(format!("{}/api/v1/messages", urls[k % urls.len()]));
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
    if urls.len() == 1 {
        wait_delivered(&client, &urls[0], delivered_before, accepted).await?;
    } else {
        let deadline = Instant::now() + Duration::from_secs(300);
        while (delivered(client.clone(), urls.clone()).await? - delivered_before) < accepted as f64
        {
            if Instant::now() > deadline {
                bail!("not all {accepted} messages were delivered within 300 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let e2e_time = start.elapsed();
    let cpu = match (cpu_all(&pids), cpu_before) {
        (Some(after), Some(before)) => Some(after - before),
        _ => None,
    };
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
