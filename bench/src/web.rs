//! The web UI under a full store: every page's server time with 1,000,000 messages and
//! 100,000 inbound texts (issue 16: the 95th percentile under 50 ms).
//!
//!   textgate-bench-web fill --db PATH [--messages N] [--inbound N]
//!       fills a database made by `textgate user add` (users `bench`, an administrator, and
//!       `alice`): N messages over the last 7 days, 90 % of them alice's, 95 % delivered and
//!       5 % undelivered, and N inbound texts designated to alice from 1,000 numbers.
//!   textgate-bench-web measure --url URL [--requests N] [--message ID]
//!       signs in as alice and as bench and times each page N times (after one cold
//!       request, shown apart), as a browser would ask for it: loopback HTTP, one connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use textgate_store::{
    InboundRouting, Inserted, NewInbound, NewMessage, Outcome, PartReceipt, RenderFn, Store,
};

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

const DAY: i64 = 86_400_000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    match args.first().map(String::as_str) {
        Some("fill") => {
            let db = opt("--db").context("fill needs --db PATH")?;
            let messages = opt("--messages").map_or(Ok(1_000_000), |v| v.parse())?;
            let inbound = opt("--inbound").map_or(Ok(100_000), |v| v.parse())?;
            fill(&db, messages, inbound).await
        }
        Some("measure") => {
            let url = opt("--url").context("measure needs --url URL")?;
            let n = opt("--requests").map_or(Ok(40), |v| v.parse())?;
            let message = opt("--message").map_or(Ok(2), |v| v.parse())?;
            measure(&url, n, message).await
        }
        _ => bail!("usage: textgate-bench-web fill --db PATH [--messages N] [--inbound N] | measure --url URL [--requests N] [--message ID]"),
    }
}

async fn fill(db: &str, messages: usize, inbound: usize) -> anyhow::Result<()> {
    let store = Store::open(&format!("sqlite://{db}")).await?;
    let bench = store
        .user_by_name("bench")
        .await?
        .context("no user bench")?;
    let alice = store
        .user_by_name("alice")
        .await?
        .context("no user alice")?;
    let t0 = now();
    let start = t0 - 7 * DAY;
    let step = (7 * DAY) / messages.max(1) as i64;
    let started = Instant::now();
    let batch = 1000;
    let mut done = 0;
    while done < messages {
        let n = batch.min(messages - done);
        let rows: Vec<NewMessage> = (0..n)
            .map(|i| {
                let k = done + i;
                let at = start + k as i64 * step;
                NewMessage {
                    owner_id: if k % 10 == 0 { bench.id } else { alice.id },
                    job_id: None,
                    to: format!("+1555{:07}", k % 1_000_000),
                    from: None,
                    body: format!("Your one-time code is {:06}", k % 1_000_000),
                    encoding: "gsm7".into(),
                    segments: 1,
                    schedule_at: None,
                    expires_at: at + DAY,
                    callback_url: None,
                    reference: None,
                    priority: 0,
                    created_at: at,
                    claimed_until: Some(t0 + 600_000),
                    origin: None,
                    api_key_id: None,
                    email_from: None,
                }
            })
            .collect();
        let render: RenderFn = Box::new(|_| String::new());
        let ids = match store.insert_messages(rows, None, render).await? {
            Inserted::New { ids, .. } => ids,
            _ => bail!("messages were not inserted"),
        };
        let outcomes: Vec<Outcome> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let at = start + (done + i) as i64 * step + 2000;
                Outcome::Sent {
                    id,
                    attempt: 1,
                    device: "loopback".into(),
                    part_ids: vec![format!("lb-{id}")],
                    receipts: vec![Some(PartReceipt {
                        delivered: (done + i) % 20 != 3,
                        code: ((done + i) % 20 == 3).then(|| "001".to_string()),
                        at: at + 1000,
                    })],
                    at,
                }
            })
            .collect();
        store.record_outcomes(Arc::new(outcomes)).await?;
        done += n;
        if done % 100_000 == 0 {
            eprintln!(
                "  {done} messages ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut done = 0;
    let istep = (7 * DAY) / inbound.max(1) as i64;
    while done < inbound {
        let n = batch.min(inbound - done);
        let texts: Vec<NewInbound> = (0..n)
            .map(|i| {
                let k = done + i;
                NewInbound {
                    device: "loopback".into(),
                    from: format!("+1555{:07}", k % 1000),
                    to: "+15550000000".into(),
                    body: format!("Reply number {k}"),
                    encoding: "gsm7".into(),
                    parts: 1,
                    partial: false,
                    dedup_key: None,
                    same_within: None,
                    received_at: start + k as i64 * istep,
                    routing: Box::new(InboundRouting {
                        matched: true,
                        users: vec!["alice".into()],
                        ..Default::default()
                    }),
                }
            })
            .collect();
        store.insert_inbound_many(texts).await?;
        done += n;
    }
    store.close().await;
    println!(
        "filled: {messages} messages, {inbound} inbound texts in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn sign_in(client: &Http, url: &str, name: &str, password: &str) -> anyhow::Result<String> {
    let body = format!("username={name}&password={password}&next=%2F");
    let req = hyper::Request::post(format!("{url}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))?;
    let resp = client.request(req).await?;
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .with_context(|| format!("{name} could not sign in: {}", resp.status()))?;
    let _ = resp.into_body().collect().await;
    Ok(cookie)
}

async fn get(client: &Http, url: &str, cookie: &str) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    let req = hyper::Request::get(url)
        .header("cookie", cookie)
        .body(Full::new(Bytes::new()))?;
    let resp = client.request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    let took = t.elapsed();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok((took, body.len()))
}

async fn measure(url: &str, n: usize, message: i64) -> anyhow::Result<()> {
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let alice = sign_in(&client, url, "alice", "alice-password").await?;
    let admin = sign_in(&client, url, "bench", "bench-password").await?;
    // A message of alice's (`message`) and a conversation of hers to open.
    let pages: Vec<(&str, String, &str)> = vec![
        ("dashboard (day)", "/".into(), &alice),
        ("dashboard (week)", "/?range=week".into(), &alice),
        ("dashboard, admin", "/".into(), &admin),
        ("outbox", "/outbox".into(), &alice),
        (
            "outbox, delivered",
            "/outbox?status=delivered".into(),
            &alice,
        ),
        (
            "outbox, undelivered",
            "/outbox?status=undelivered".into(),
            &alice,
        ),
        ("outbox, admin", "/outbox".into(), &admin),
        ("outbox, 10th page", "/outbox?before=900000".into(), &alice),
        ("message", format!("/outbox/{message}"), &alice),
        ("inbox", "/inbox".into(), &alice),
        ("conversation", "/inbox/%2B15550000007".into(), &alice),
        ("compose", "/compose".into(), &alice),
        ("jobs", "/jobs".into(), &alice),
        ("devices", "/devices".into(), &admin),
        ("admin: users", "/admin".into(), &admin),
        ("admin: keys", "/admin/keys".into(), &admin),
    ];
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "page", "cold ms", "p50 ms", "p95 ms", "max ms", "bytes"
    );
    let mut all = Vec::new();
    for (name, path, cookie) in &pages {
        let full = format!("{url}{path}");
        let (cold, bytes) = get(&client, &full, cookie).await?;
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            times.push(get(&client, &full, cookie).await?.0);
        }
        times.sort();
        all.extend(times.iter().copied());
        println!(
            "{name:<22} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {bytes:>9}",
            cold.as_secs_f64() * 1000.0,
            common::pct(&times, 0.5),
            common::pct(&times, 0.95),
            common::pct(&times, 1.0),
        );
    }
    all.sort();
    println!(
        "all pages: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} requests)",
        common::pct(&all, 0.5),
        common::pct(&all, 0.95),
        common::pct(&all, 1.0),
        all.len()
    );
    Ok(())
}
