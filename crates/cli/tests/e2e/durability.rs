//! Nothing accepted is ever lost, across `kill -9` (docs/architecture.md): many clients send while the
//! server is SIGKILLed and restarted on the same database; every message that got a 202 must
//! end delivered, and none may be left in `sending`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

const CONFIG: &str = r#"claim_lease = "2s"
retry_backoff = "50ms"

[[device]]
name = "loopback"
kind = "loopback"
report_delay = "200ms"
"#;

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Ids from 202 answers.
    accepted: Mutex<Vec<i64>>,
    accepted_count: AtomicUsize,
    /// Requests without an answer (connection refused or cut).
    failed_requests: AtomicUsize,
    /// Answers other than 202, with their body.
    other: Mutex<Vec<(u16, String)>>,
}

fn run(app: &mut App, total: usize, threads: usize) {
    // Requests of 1 to 10 recipients, numbers unique across the run.
    let mut plan: Vec<Vec<String>> = Vec::new();
    let mut n = 0usize;
    let mut i = 0usize;
    while n < total {
        let size = (i * 7 % 10 + 1).min(total - n);
        plan.push((n..n + size).map(|k| format!("+1555{:07}", k)).collect());
        n += size;
        i += 1;
    }
    let addr = RwLock::new(app.addr.clone());
    let next = AtomicUsize::new(0);
    let seen = Seen::default();
    let key = app.key.clone();
    let kill_after = total / 3;
    let kill_ms = std::sync::atomic::AtomicI64::new(0);

    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(to) = plan.get(i) else { return };
                let body = json!({"to": to, "body": format!("durable {i}")}).to_string();
                // A request without an answer (the server is down) is sent again, as a
                // client would, until the server is back; one cut off in flight may have
                // been stored, which only makes more ids, never lost ones.
                let retry_until = Instant::now() + Duration::from_secs(60);
                loop {
                    let a = addr.read().unwrap().clone();
                    let auth = format!("Bearer {key}");
                    let r = http(
                        &a,
                        "POST",
                        "/api/v1/messages",
                        &[
                            ("Authorization", &auth),
                            ("Content-Type", "application/json"),
                        ],
                        Some(body.as_bytes()),
                    );
                    match r {
                        Ok(r) if r.status == 202 => {
                            let v = r.json();
                            let ids: Vec<i64> = v["messages"]
                                .as_array()
                                .expect("messages")
                                .iter()
                                .map(|m| m["id"].as_i64().expect("id"))
                                .collect();
                            assert_eq!(ids.len(), to.len(), "{v}");
                            seen.accepted_count.fetch_add(ids.len(), Ordering::Relaxed);
                            seen.accepted.lock().unwrap().extend(ids);
                        }
                        Ok(r) => seen.other.lock().unwrap().push((r.status, r.text())),
                        Err(_) if Instant::now() < retry_until => {
                            seen.failed_requests.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                        Err(_) => {
                            seen.failed_requests.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    break;
                }
            });
        }
        // In the middle of it all: kill -9, and start again on the same database.
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.accepted_count.load(Ordering::Relaxed) < kill_after {
            assert!(Instant::now() < deadline, "the clients make no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        kill_ms.store(now_ms(), Ordering::Relaxed);
        app.kill();
        app.start();
        *addr.write().unwrap() = app.addr.clone();
    });

    let accepted = seen.accepted.into_inner().unwrap();
    let other = seen.other.into_inner().unwrap();
    let failed = seen.failed_requests.load(Ordering::Relaxed);
    // Only a server-side failure (503 while the store is unavailable) is an acceptable
    // answer other than 202; a 4xx or 500 is a bug.
    for (status, body) in &other {
        assert_eq!(*status, 503, "unexpected answer {status}: {body}");
    }
    let unique: HashSet<i64> = accepted.iter().copied().collect();
    assert_eq!(unique.len(), accepted.len(), "an id was given out twice");
    assert!(
        accepted.len() > kill_after,
        "too few messages accepted ({}) to say anything",
        accepted.len()
    );
    eprintln!(
        "durability: {} messages accepted, {failed} requests failed, {} other answers",
        accepted.len(),
        other.len()
    );

    let kill = kill_ms.load(Ordering::Relaxed);
    // First the hard guarantee: every accepted message is stored, and none is left waiting
    // in `queued` or `sending` once the dead server's claim leases (2s) have run out.
    let last = wait_for(app, &unique, kill, "stored and past queued/sending", |m| {
        !matches!(m["status"].as_str(), Some("queued" | "sending"))
    });
    let sending: Vec<&Value> = last.values().filter(|m| m["status"] == "sending").collect();
    assert!(sending.is_empty(), "messages left in sending: {sending:?}");
    // Then: every accepted message is delivered (the loopback device delivers everything).
    wait_for(app, &unique, kill, "delivered", |m| {
        m["status"] == "delivered"
    });
}

/// Polls the list until `done` holds for every id; panics with a breakdown at the deadline.
fn wait_for(
    app: &App,
    ids: &HashSet<i64>,
    kill: i64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> HashMap<i64, Value> {
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let last = app.all_messages(&app.key);
        if ids.iter().all(|id| last.get(id).is_some_and(&done)) {
            return last;
        }
        if Instant::now() > deadline {
            let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
            let mut missing = Vec::new();
            for id in ids {
                match last.get(id) {
                    Some(m) => {
                        *by_status
                            .entry(m["status"].as_str().unwrap_or("?").to_string())
                            .or_default() += 1
                    }
                    None => missing.push(*id),
                }
            }
            let not_done: Vec<&Value> = ids
                .iter()
                .filter_map(|id| last.get(id))
                .filter(|m| !done(m))
                .collect();
            // How long before the kill the ones not done were handed to the device.
            let before_kill: Vec<i64> = not_done
                .iter()
                .filter_map(|m| m["sent_at"].as_str().and_then(parse_rfc3339_z))
                .map(|t| kill - t)
                .collect();
            panic!(
                "not every accepted message is {what}: {} accepted, by status {by_status:?}, \
                 {} missing from the store (first: {:?}); those not {what} were sent from {:?} \
                 to {:?} ms before the kill; examples: {:?}",
                ids.len(),
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>(),
                before_kill.iter().max(),
                before_kill.iter().min(),
                not_done.iter().take(2).collect::<Vec<_>>(),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sqlite_loses_nothing_across_kill_9() {
    let mut app = spawn_app(CONFIG);
    run(&mut app, 3000, 4);
}

#[test]
fn postgres_loses_nothing_across_kill_9() {
    let mut app = spawn_app_pg(CONFIG);
    run(&mut app, 500, 3);
}

/// SIGTERM during a burst drains the server: it stops taking requests, sends what it has in
/// flight and records it, and exits within `shutdown_grace`. Every message that got a 202 is
/// then either delivered or still queued (never lost, never left `sending`), and goes out
/// after the next start.
#[test]
fn sigterm_during_a_burst_drains_within_the_grace_period() {
    let mut app = spawn_app(
        "shutdown_grace = \"5s\"\n\n[[device]]\nname = \"loopback\"\nkind = \"loopback\"\ndelay = \"20ms\"\nwindow = 4\n",
    );
    let accepted = Mutex::new(Vec::new());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let key = app.key.clone();
    let addr = app.addr.clone();
    let (took, ok) = std::thread::scope(|s| {
        for t in 0..6 {
            let (accepted, stop, key, addr) = (&accepted, &stop, &key, &addr);
            s.spawn(move || {
                let auth = format!("Bearer {key}");
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body =
                        json!({"to": format!("+1555{t:02}{i:05}"), "body": "burst"}).to_string();
                    i += 1;
                    match http(
                        addr,
                        "POST",
                        "/api/v1/messages",
                        &[
                            ("Authorization", &auth),
                            ("Content-Type", "application/json"),
                        ],
                        Some(body.as_bytes()),
                    ) {
                        Ok(r) if r.status == 202 => accepted
                            .lock()
                            .unwrap()
                            .push(r.json()["messages"][0]["id"].as_i64().unwrap()),
                        // Refused or cut while shutting down: not accepted, nothing promised.
                        _ => {}
                    }
                }
            });
        }
        // Let messages pile up in the queue and in flight, then ask the server to stop.
        while accepted.lock().unwrap().len() < 300 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = app.terminate();
        stop.store(true, Ordering::Relaxed);
        r
    });
    assert!(
        ok,
        "serve exits with success after SIGTERM; log:\n{}",
        app.log_text()
    );
    assert!(
        took < Duration::from_secs(7),
        "drained in {took:?}, grace 5 s"
    );
    // Restart: everything accepted is delivered or queued, nothing is left sending.
    app.start();
    let ids = accepted.into_inner().unwrap();
    let all = app.all_messages(&app.key.clone());
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let m = all
            .get(id)
            .unwrap_or_else(|| panic!("accepted message {id} is gone"));
        *counts
            .entry(m["status"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(
        counts.keys().all(|s| s == "delivered" || s == "queued"),
        "{counts:?}"
    );
    // And the queued ones go out now.
    for id in ids.iter().rev().take(20) {
        assert_eq!(app.wait_final(*id)["status"], "delivered");
    }
}
