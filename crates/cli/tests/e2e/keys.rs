//! API keys through `/api/v1/keys` and `textgate apikey`, revocation on a running server,
//! and what users are not shown: other users' keys, devices' errors, an open `/metrics`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

const USERS: &[(&str, &str)] = &[("alice", "user"), ("bob", "user"), ("root", "admin")];

fn app(extra: &str) -> App {
    spawn_app_users(extra, USERS)
}

fn new_key(app: &App, as_key: &str, body: Value) -> Value {
    let r = app.req_as(as_key, "POST", "/api/v1/keys", Some(&body.to_string()), &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn status_with(app: &App, key: &str) -> u16 {
    app.req_as(key, "GET", "/api/v1/messages", None, &[]).status
}

#[test]
fn a_key_revoked_through_the_api_is_refused_at_once() {
    let app = app("");
    let alice = app.key_of("alice").to_string();
    let k = new_key(&app, &alice, json!({"webhook_secret": true}));
    let key = k["key"].as_str().unwrap().to_string();
    assert!(
        key.starts_with("tg_") && k["webhook_secret"].as_str().unwrap().starts_with("whsec_"),
        "{k}"
    );
    assert_eq!(k["user"], "alice");
    // Used once (and so cached), then revoked: the very next request is refused.
    assert_eq!(status_with(&app, &key), 200);
    let id = k["id"].as_i64().unwrap();
    let r = app.req_as(&alice, "DELETE", &format!("/api/v1/keys/{id}"), None, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["revoked_at"].is_string(), "{}", r.text());
    app.req_as(&key, "GET", "/api/v1/messages", None, &[])
        .assert_error(401, "unauthorized");
    // The list shows it revoked, with when it was last used; never the key itself.
    let list = app.req_as(&alice, "GET", "/api/v1/keys", None, &[]).json();
    let mine = list["keys"].as_array().unwrap();
    let listed = mine.iter().find(|x| x["id"] == id).unwrap();
    assert!(
        listed["revoked_at"].is_string() && listed["last_used_at"].is_string(),
        "{listed}"
    );
    assert!(!list.to_string().contains(&key));
    assert!(mine.iter().all(|x| x["user"] == "alice"), "{list}");
}

#[test]
fn a_key_revoked_elsewhere_is_refused_within_seconds_over_http_and_smtp() {
    let app = app("[smtp]\nlisten = \"127.0.0.1:0\"\ndomains = [\"sms.example.com\"]\n");
    let alice = app.key_of("alice").to_string();
    let k = new_key(&app, &alice, json!({}));
    let key = k["key"].as_str().unwrap().to_string();
    assert_eq!(status_with(&app, &key), 200, "cached now");
    let o = cli(
        &[
            "apikey",
            "revoke",
            &k["id"].to_string(),
            "--config",
            app.config.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("revoked key"), "{}", stdout(&o));
    let start = Instant::now();
    while status_with(&app, &key) == 200 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still taken after 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SMTP AUTH with it is refused too.
    let mut req = crate::smtp::plain("", &["15555000001@sms.example.com"], "s", "x");
    req["auth"] = json!({"user": "alice", "password": key, "mech": "PLAIN"});
    let v = crate::smtp::smtp(&app, req);
    assert_eq!(v["auth"][0], 535, "{v}");
    // `apikey list` shows it revoked.
    let o = cli(
        &[
            "apikey",
            "list",
            "--user",
            "alice",
            "--config",
            app.config.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o)
        .lines()
        .find(|l| l.trim_start().starts_with(&k["id"].to_string()))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("alice") && line.matches('T').count() >= 2,
        "{}",
        stdout(&o)
    );
}

#[test]
fn users_manage_their_own_keys_and_administrators_everyones() {
    let app = app("");
    let (alice, bob, root) = (
        app.key_of("alice").to_string(),
        app.key_of("bob").to_string(),
        app.key_of("root").to_string(),
    );
    let bobs = new_key(&app, &bob, json!({}));
    // alice cannot make a key for bob, list his, nor revoke his (it is not found).
    app.req_as(
        &alice,
        "POST",
        "/api/v1/keys",
        Some(&json!({"user": "bob"}).to_string()),
        &[],
    )
    .assert_error(403, "forbidden");
    app.req_as(&alice, "GET", "/api/v1/keys?user=bob", None, &[])
        .assert_error(403, "forbidden");
    app.req_as(
        &alice,
        "DELETE",
        &format!("/api/v1/keys/{}", bobs["id"]),
        None,
        &[],
    )
    .assert_error(404, "not_found");
    assert_eq!(status_with(&app, bobs["key"].as_str().unwrap()), 200);
    // An administrator can do all three.
    let made = new_key(&app, &root, json!({"user": "bob"}));
    assert_eq!(made["user"], "bob");
    let his = app
        .req_as(&root, "GET", "/api/v1/keys?user=bob", None, &[])
        .json();
    assert_eq!(
        his["keys"].as_array().unwrap().len(),
        3,
        "his first, and two new: {his}"
    );
    let all = app.req_as(&root, "GET", "/api/v1/keys", None, &[]).json();
    assert!(all["keys"].as_array().unwrap().len() >= 5, "{all}");
    let r = app.req_as(
        &root,
        "DELETE",
        &format!("/api/v1/keys/{}", made["id"]),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    app.req_as(&root, "GET", "/api/v1/keys?user=nobody", None, &[])
        .assert_error(404, "not_found");
}

#[test]
fn metrics_can_ask_for_a_token_or_live_on_their_own_address() {
    let app = app("metrics_token = \"a-long-random-metrics-token\"\n");
    let r = http(&app.addr, "GET", "/metrics", &[], None).unwrap();
    r.assert_error(401, "unauthorized");
    let r = http(
        &app.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer a-long-random-metrics-token")],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("textgate_queue_depth"), "{}", r.text());

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let apart = app_with_metrics(port);
    assert_eq!(apart.metrics, format!("127.0.0.1:{port}"));
    apart.get("/metrics").assert_error(404, "not_found");
    let r = http(&apart.metrics, "GET", "/metrics", &[], None).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("textgate_messages_accepted_total"),
        "{}",
        r.text()
    );
    let r = http(&apart.metrics, "GET", "/api/v1/messages", &[], None).unwrap();
    r.assert_error(404, "not_found");
}

fn app_with_metrics(port: u16) -> App {
    app(&format!("metrics_listen = \"127.0.0.1:{port}\"\n"))
}
