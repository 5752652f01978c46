//! The store's share of the foundation benchmark, without HTTP or devices: what the SQLite
//! writer does for each message that `bench/run` pushes through, measured as CPU time of this
//! process per message. Concurrent callers each insert one message (committed, fsynced, as
//! the API does before its 202), then each batch is recorded as the loopback device reports
//! it: sent, with its one part delivered.
//!
//!   textgate-bench-store [-n 50000] [-c 64] [--db PATH | --url URL] [--callbacks]
//!
//! `--url` takes any store URL (`postgres://…` for PostgreSQL: use an empty database, the
//! run creates a user); `--callbacks` gives every message a callback URL, so that each
//! status change also queues its status callback.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use textgate_store::{Inserted, NewMessage, NewUser, Outcome, PartReceipt, RenderFn, Role, Store};

fn cpu_now() -> f64 {
    let pid = std::process::id();
    common::cpu_seconds(pid).unwrap_or(0.0)
}

#[path = "common.rs"]
#[allow(dead_code)]
mod common;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (mut n, mut c, mut db, mut url) = (50_000usize, 64usize, None::<String>, None::<String>);
    let mut callbacks = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-n" => n = val()?.parse()?,
            "-c" => c = val()?.parse()?,
            "--db" => db = Some(val()?),
            "--url" => url = Some(val()?),
            "--callbacks" => callbacks = true,
            other => bail!(
                "unknown argument {other}; usage: textgate-bench-store [-n N] [-c C] [--db PATH | --url URL] [--callbacks]"
            ),
        }
    }
    let dir = std::env::temp_dir().join(format!("textgate-bench-store-{}", std::process::id()));
    let path = db.unwrap_or_else(|| dir.join("store.db").to_string_lossy().into_owned());
    let url = url.unwrap_or_else(|| format!("sqlite://{path}"));
    let store = Store::open(&url).await?;
    let user = store
        .create_user(NewUser {
            name: "bench".into(),
            role: Role::User,
            email: None,
            password_hash: None,
            created_at: now(),
        })
        .await?;
    let cpu0 = cpu_now();
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let batch = c.min(n - done);
        let inserts = (0..batch).map(|i| {
            let store = store.clone();
            let to = format!("+1555{:07}", done + i);
            tokio::spawn(async move {
                let t = now();
                let msg = NewMessage {
                    owner_id: user.id,
                    job_id: None,
                    to,
                    from: None,
                    body: "Your code is 123456".into(),
                    encoding: "gsm7".into(),
                    segments: 1,
                    schedule_at: None,
                    expires_at: t + 86_400_000,
                    callback_url: callbacks.then(|| "https://example.com/status".to_string()),
                    reference: None,
                    priority: 0,
                    created_at: t,
                    claimed_until: Some(t + 60_000),
                    origin: None,
                    api_key_id: None,
                    email_from: None,
                };
                let render: RenderFn = Box::new(|ids| format!("{ids:?}"));
                store.insert_messages(vec![msg], None, render).await
            })
        });
        let mut ids = Vec::with_capacity(batch);
        for h in inserts.collect::<Vec<_>>() {
            match h.await?? {
                Inserted::New { ids: got, .. } => ids.extend(got),
                _ => bail!("a message was not inserted"),
            }
        }
        let at = now();
        let outcomes: Vec<Outcome> = ids
            .iter()
            .map(|&id| Outcome::Sent {
                id,
                attempt: 1,
                device: "loopback".into(),
                part_ids: vec![format!("lb-{id}")],
                receipts: vec![Some(PartReceipt {
                    delivered: true,
                    code: None,
                    at,
                })],
                at,
            })
            .collect();
        let applied = store.record_outcomes(Arc::new(outcomes)).await?;
        if applied.iter().any(|a| !a) {
            bail!("an outcome was not applied");
        }
        done += batch;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_now() - cpu0;
    let callbacks = if callbacks { ", with callbacks" } else { "" };
    println!(
        "== store: insert (durable) + sent/delivered record, {} (N={n}, C={c}{callbacks}) ==",
        store.backend_name()
    );
    println!("rate              {:.0} msg/s", n as f64 / secs);
    println!(
        "CPU               {cpu:.2} s total, {:.1} µs per message",
        cpu * 1e6 / n as f64
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
