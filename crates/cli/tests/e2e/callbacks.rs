//! Users' status callbacks cannot reach into the server's network, cannot hold the webhook
//! worker, and cannot learn more than a status code from their dead letters.

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::inbound::{inject, wait_for, Receiver};

const USERS: &[(&str, &str)] = &[("alice", "user"), ("bob", "user"), ("root", "admin")];

fn app(extra: &str) -> App {
    spawn_app_users(extra, USERS)
}

fn send_with_callback(app: &App, key: &str, url: &str) -> Resp {
    app.req_as(
        key,
        "POST",
        "/api/v1/messages",
        Some(&json!({"to": "+15557770040", "body": "cb", "callback_url": url}).to_string()),
        &[],
    )
}

fn deliveries(app: &App, key: &str) -> Vec<Value> {
    let v = app
        .req_as(key, "GET", "/api/v1/webhooks/deliveries", None, &[])
        .json();
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

#[test]
fn internal_callback_urls_are_refused_when_accepted_and_when_resolved() {
    let rx = Receiver::start(0, "", 0);
    let app = app("");
    // Literal internal addresses and localhost: 422 at once, nothing stored.
    for url in [
        rx.url("/cb"),
        "http://[::1]/cb".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/".to_string(),
        format!("http://localhost:{}/cb", rx.port),
    ] {
        let r = send_with_callback(&app, &app.key, &url);
        let m = r.assert_error(422, "invalid_callback_url");
        assert!(
            m.contains("internal address") && m.contains("callback_allow"),
            "{url}: {m}"
        );
    }
    assert_eq!(app.count(), 0);

    // A name that resolves to this machine (as a name whose DNS answer changed after the
    // message was accepted would): accepted, then never connected to. Its delivery is a dead
    // letter at once, and the user is told why.
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let resolved: Vec<_> = (host.as_str(), 80)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    assert!(
        !resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback() || is_private(a.ip())),
        "this test needs the machine's host name ({host:?}) to resolve to an internal address: {resolved:?}"
    );
    let url = format!("http://{host}:{}/cb", rx.port);
    let r = send_with_callback(&app, &app.key, &url);
    assert_eq!(r.status, 202, "{}", r.text());
    let dead = wait_for("dead callbacks", || {
        let d = deliveries(&app, &app.key);
        (d.len() == 2 && d.iter().all(|d| d["state"] == "dead")).then_some(d)
    });
    for d in &dead {
        assert_eq!(d["attempts"], 1, "not retried: {d}");
        let e = d["last_error"].as_str().unwrap();
        assert!(
            e.contains("refused by policy") && e.contains("internal"),
            "{d}"
        );
    }
    // Dead at the first attempt, which never connected: nothing more will come.
    assert!(rx.requests().is_empty(), "the receiver was never called");
}

fn is_private(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v) => v.is_private() || v.is_link_local(),
        std::net::IpAddr::V6(v) => (v.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[test]
fn a_slow_users_callbacks_wait_for_themselves_and_answers_are_read_only_so_far() {
    // alice's receiver takes 5 s per POST; she may have 2 in flight, of 4 in all.
    let slow = Receiver::start_with(0, "", 0, &["--delay", "5"]);
    let quick = Receiver::start(0, "", 0);
    let rules = Receiver::start(0, "rule-secret", 0);
    let endless = Receiver::start_with(0, "", 0, &["--endless"]);
    let app = app(&format!(
        "callback_allow = [\"127.0.0.1\"]\n\n[webhooks]\nconcurrency = 4\nper_owner_concurrency = 2\n\n[[inbound_rule]]\nwebhook = \"{}\"\nwebhook_secret = \"rule-secret\"\n",
        rules.url("/in")
    ));
    for _ in 0..10 {
        let r = send_with_callback(&app, app.key_of("alice"), &slow.url("/slow"));
        assert_eq!(r.status, 202, "{}", r.text());
    }
    // Twenty of alice's callbacks are due, two of them in flight; bob's and the inbound
    // rule's go at once anyway.
    slow.wait(2);
    let start = Instant::now();
    let r = send_with_callback(&app, app.key_of("bob"), &quick.url("/quick"));
    assert_eq!(r.status, 202, "{}", r.text());
    inject(&app, "+15557770041", "", "for the rule");
    quick.wait(2);
    rules.wait(1);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "bob and the rule waited {:?} behind alice's slow receiver",
        start.elapsed()
    );
    // The receiver logs a request when it arrives, then waits 5 s to answer it.
    assert!(
        slow.requests().len() <= 2,
        "alice never has more than 2 in flight: {} arrived within 5 s",
        slow.requests().len()
    );

    // A receiver whose answer never ends: the status is taken, the rest is not read.
    let r = send_with_callback(&app, app.key_of("bob"), &endless.url("/endless"));
    assert_eq!(r.status, 202, "{}", r.text());
    let done = wait_for("the endless receiver's deliveries", || {
        let d: Vec<Value> = deliveries(&app, app.key_of("bob"))
            .into_iter()
            .filter(|d| d["target"].as_str().unwrap_or("").ends_with("/endless"))
            .collect();
        (d.len() == 2 && d.iter().all(|d| d["state"] == "delivered")).then_some(d)
    });
    assert!(done.iter().all(|d| d["attempts"] == 1), "{done:?}");
}

#[test]
fn users_see_status_codes_and_administrators_see_why() {
    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = app("callback_allow = [\"127.0.0.1\"]\n\n[webhooks]\nbackoff = \"30s\"\n");
    let r = send_with_callback(
        &app,
        app.key_of("alice"),
        &format!("http://127.0.0.1:{port}/x"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let mine = wait_for("a failed attempt", || {
        let d = deliveries(&app, app.key_of("alice"));
        d.iter().find(|d| d["last_error"].is_string()).cloned()
    });
    let shown = mine["last_error"].as_str().unwrap();
    assert!(shown.contains("no HTTP answer"), "{mine}");
    assert!(
        !shown.to_lowercase().contains("refused") && !shown.contains("127.0.0.1"),
        "{mine}"
    );
    let id = mine["id"].as_i64().unwrap();
    let one = app
        .req_as(
            app.key_of("alice"),
            "GET",
            &format!("/api/v1/webhooks/deliveries/{id}"),
            None,
            &[],
        )
        .json();
    for a in one["attempt_log"].as_array().unwrap() {
        assert!(
            a["error"].as_str().unwrap().contains("no HTTP answer"),
            "{one}"
        );
    }
    let admin = app
        .req_as(
            app.key_of("root"),
            "GET",
            &format!("/api/v1/webhooks/deliveries/{id}"),
            None,
            &[],
        )
        .json();
    let full = admin["last_error"].as_str().unwrap();
    assert!(
        full.contains("request failed"),
        "the administrator sees the cause: {admin}"
    );
}
