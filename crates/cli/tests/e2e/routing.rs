//! Routing, failover and device failures, end to end through the loopback device's knobs.

use serde_json::{json, Value};

use crate::helpers::*;

/// Devices and routes shared by these tests: each number range exercises one path.
const CONFIG: &str = r#"max_attempts = 2
retry_backoff = "50ms"
retry_backoff_max = "100ms"

[[device]]
name = "flaky"
kind = "loopback"
transient_failure_rate = 1.0

[[device]]
name = "good"
kind = "loopback"

[[device]]
name = "rejecter"
kind = "loopback"
failure_rate = 1.0

[[device]]
name = "lost"
kind = "loopback"
undelivered_rate = 1.0

[[route]]
prefix = "+1555100"
devices = ["flaky", "good"]

[[route]]
prefix = "+1555200"
devices = ["rejecter"]

[[route]]
prefix = "+1555300"
devices = ["lost"]

[[route]]
prefix = "+1555400"
devices = ["flaky"]

[[route]]
prefix = "+44"
devices = ["good"]
"#;

fn send_one(app: &App, to: &str) -> Value {
    let id = app.send_ok(&json!({"to": to, "body": "routing test"}))[0]["id"]
        .as_i64()
        .unwrap();
    app.wait_final(id)
}

fn error_of(m: &Value) -> &str {
    m["error"]
        .as_str()
        .unwrap_or_else(|| panic!("a failed message has an error: {m}"))
}

#[test]
fn transient_failures_fail_over_to_the_next_device() {
    let app = spawn_app_users(CONFIG, &[("alice", "user"), ("root", "admin")]);
    for i in 0..3 {
        let m = send_one(&app, &format!("+155510000{i:02}"));
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(m["device"], "good", "{m}");
        // The attempt that did not send it, with its device, code and error; `attempts`
        // stays the count.
        assert_eq!(m["attempts"], 2, "{m}");
        let tried = &m["history"][0];
        assert_eq!(
            (
                tried["attempt"].as_i64(),
                tried["device"].as_str(),
                tried["outcome"].as_str()
            ),
            (Some(1), Some("flaky"), Some("retry")),
            "{m}"
        );
        assert!(
            tried["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{m}"
        );
    }
    // Users are not shown a device's last error (it names hosts and accounts); admins are.
    let mine = app.get("/api/v1/devices").json();
    assert!(
        mine["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["last_error"].is_null()),
        "{mine}"
    );
    let ds = app
        .req_as(app.key_of("root"), "GET", "/api/v1/devices", None, &[])
        .json();
    let flaky = ds["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "flaky")
        .unwrap()
        .clone();
    assert!(
        flaky["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "the flaky device's last error is shown: {flaky}"
    );
}

#[test]
fn a_permanent_refusal_fails_with_the_devices_reason() {
    let app = spawn_app(CONFIG);
    let m = send_one(&app, "+15552000001");
    assert_eq!(m["status"], "failed", "{m}");
    let e = error_of(&m);
    assert!(
        e.contains("simulating a refusal"),
        "the device's reason: {m}"
    );
    assert_eq!(m["error_code"], "LB-REJECT", "{m}");
}

#[test]
fn a_negative_receipt_is_undelivered() {
    let app = spawn_app(CONFIG);
    let m = send_one(&app, "+15553000001");
    assert_eq!(m["status"], "undelivered", "{m}");
    assert_eq!(m["device"], "lost", "{m}");
    assert!(m["sent_at"].is_string(), "it was sent: {m}");
    assert_eq!(m["delivered_at"], Value::Null, "{m}");
}

#[test]
fn a_number_no_route_matches_fails_naming_the_route() {
    let app = spawn_app(CONFIG);
    let m = send_one(&app, "+15559990000");
    assert_eq!(m["status"], "failed", "{m}");
    let e = error_of(&m);
    assert!(e.contains("route"), "the error mentions the route: {m}");
    assert!(e.contains("+15559990000"), "and the number: {m}");
    // A route by prefix still works for other numbers.
    let m = send_one(&app, "+442079460000");
    assert_eq!(
        (m["status"].as_str(), m["device"].as_str()),
        (Some("delivered"), Some("good")),
        "{m}"
    );
}

#[test]
fn only_transient_failures_give_up_after_max_attempts() {
    let app = spawn_app(CONFIG);
    let m = send_one(&app, "+15554000001");
    assert_eq!(m["status"], "failed", "{m}");
    let e = error_of(&m);
    assert!(e.starts_with("gave up after 2 attempts"), "{m}");
    assert!(e.contains("busy"), "with the last device error: {m}");
    assert_eq!(m["attempts"], 2, "{m}");
}

/// An administrator disables a device: nothing is sent through it, and a text routed only to
/// it waits (neither sent nor failed) until the device is enabled again.
#[test]
fn a_disabled_device_holds_its_texts_until_enabled() {
    let app = spawn_app_with(Opts {
        users: &[("alice", "user"), ("boss", "admin")],
        ..Opts::default()
    });
    let (alice, boss) = (app.key_of("alice"), app.key_of("boss"));
    let r = app.req_as(alice, "POST", "/api/v1/devices/loopback/disable", None, &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = app.req_as(boss, "POST", "/api/v1/devices/nowhere/disable", None, &[]);
    assert_eq!(r.status, 404, "{}", r.text());
    let r = app.req_as(boss, "POST", "/api/v1/devices/loopback/disable", None, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let devices = app.req_as(boss, "GET", "/api/v1/devices", None, &[]).json();
    assert_eq!(devices["devices"][0]["state"], "disabled");

    let sent = app.req_as(
        alice,
        "POST",
        "/api/v1/messages",
        Some(r#"{"to": "+15551260001", "body": "wait for me"}"#),
        &[],
    );
    assert_eq!(sent.status, 202, "{}", sent.text());
    let id = sent.json()["messages"][0]["id"].as_i64().unwrap();
    let status = |key: &str| {
        app.req_as(key, "GET", &format!("/api/v1/messages/{id}"), None, &[])
            .json()["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    // Two claim rounds and more: still waiting (queued, or claimed and put back), neither
    // sent (the loopback device delivers at once) nor failed for want of a route.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let now = status(alice);
    assert!(matches!(now.as_str(), "queued" | "sending"), "{now}");

    let r = app.req_as(boss, "POST", "/api/v1/devices/loopback/enable", None, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while status(alice) != "delivered" {
        assert!(
            std::time::Instant::now() < deadline,
            "still {}",
            status(alice)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `strategy = "spread"`: a route's messages go to whichever of its devices has the fewest
/// waiting or in flight, so slow devices (modems) send in parallel; the default, failover,
/// keeps them on the first device that is up.
#[test]
fn a_spreading_route_shares_its_messages_among_its_devices() {
    let slow = |name: &str| {
        format!(
            "[[device]]\nname = \"{name}\"\nkind = \"loopback\"\ndelay = \"100ms\"\nwindow = 1\n\n"
        )
    };
    let config = format!(
        "{}{}{}[[route]]\nprefix = \"+1555600\"\nstrategy = \"spread\"\ndevices = [\"s1\", \"s2\"]\n\n\
         [[route]]\ndevices = [\"f1\", \"s2\"]\n",
        slow("s1"),
        slow("s2"),
        slow("f1")
    );
    let app = spawn_app_users(&config, &[("alice", "user")]);
    let send = |prefix: &str| -> Vec<i64> {
        let to: Vec<String> = (0..8).map(|i| format!("{prefix}{i:04}")).collect();
        app.send_ok(&json!({"to": to, "body": "spread"}))
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect()
    };
    let devices_of = |ids: &[i64]| -> Vec<String> {
        ids.iter()
            .map(|&id| app.wait_final(id)["device"].as_str().unwrap().to_string())
            .collect()
    };
    let spread = devices_of(&send("+1555600"));
    let on = |d: &str| spread.iter().filter(|x| *x == d).count();
    assert!(
        on("s1") >= 2 && on("s2") >= 2,
        "both devices took some: {spread:?}"
    );
    let failover = devices_of(&send("+1555700"));
    assert!(
        failover.iter().all(|d| d == "f1"),
        "failover keeps to the first: {failover:?}"
    );
}
