//! The HTTP API's happy paths: send, follow to delivered, encodings and parts, listing with
//! cursors, scheduling and cancelling, and the operations endpoints.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::*;

fn assert_time_z(m: &Value, field: &str) -> i64 {
    let s = m[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} must be a string: {m}"));
    parse_rfc3339_z(s).unwrap_or_else(|| panic!("{field} = {s:?} is not RFC 3339 UTC with Z"))
}

#[test]
fn one_message_is_accepted_normalised_and_delivered() {
    let app = spawn_app("");
    let r = app.send(&json!({"to": "(555) 123-4567", "body": "Hello from textgate"}));
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    let v = r.json();
    let msgs = v["messages"].as_array().expect("messages array");
    assert_eq!(msgs.len(), 1, "{v}");
    let m = &msgs[0];
    let id = m["id"].as_i64().expect("numeric id");
    assert_eq!(m["to"], "+15551234567", "{v}");
    assert_eq!(m["status"], "queued", "{v}");
    assert_eq!(m["segments"], 1, "{v}");
    assert_eq!(m["encoding"], "gsm7", "{v}");

    let m = app.wait_final(id);
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(m["id"], id);
    assert_eq!(m["to"], "+15551234567");
    assert_eq!(m["body"], "Hello from textgate");
    assert_eq!(m["device"], "loopback", "{m}");
    assert_eq!(m["error"], Value::Null, "{m}");
    assert_eq!(m["segments"], 1);
    assert_eq!(m["encoding"], "gsm7");
    for k in ["from", "error"] {
        assert!(m.get(k).is_some(), "GET must have `{k}` (maybe null): {m}");
    }
    let created = assert_time_z(&m, "created_at");
    let sent = assert_time_z(&m, "sent_at");
    let delivered = assert_time_z(&m, "delivered_at");
    assert!(
        created <= sent && sent <= delivered,
        "times out of order: {m}"
    );
}

#[test]
fn many_recipients_in_one_request() {
    let app = spawn_app("");
    let to = [
        "+15550000001",
        "555-000-0002",
        "555.000.0003",
        "(555) 000 0004",
        "+44 20 7946 0958",
    ];
    let msgs = app.send_ok(&json!({"to": to, "body": "to all"}));
    assert_eq!(msgs.len(), to.len());
    let want = [
        "+15550000001",
        "+15550000002",
        "+15550000003",
        "+15550000004",
        "+442079460958",
    ];
    let mut ids = HashSet::new();
    for (m, w) in msgs.iter().zip(want) {
        assert_eq!(m["to"], w, "answers must be in request order: {msgs:?}");
        assert_eq!(m["status"], "queued");
        assert!(ids.insert(m["id"].as_i64().unwrap()), "duplicate id");
    }
    for id in &ids {
        let m = app.wait_final(*id);
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(m["body"], "to all");
    }
    assert_eq!(app.count(), to.len());
}

#[test]
fn parts_and_encodings_are_known_at_accept_time() {
    let app = spawn_app("");
    let cases: Vec<(String, i64, &str)> = vec![
        ("a".repeat(160), 1, "gsm7"),
        ("a".repeat(161), 2, "gsm7"),
        ("a".repeat(153 * 2), 2, "gsm7"),
        ("a".repeat(153 * 2 + 1), 3, "gsm7"),
        // Extension characters take two septets.
        ("€".repeat(80), 1, "gsm7"),
        ("€".repeat(81), 2, "gsm7"),
        ("Hi 😀".to_string(), 1, "ucs2"),
        ("ж".repeat(70), 1, "ucs2"),
        ("ж".repeat(71), 2, "ucs2"),
        ("ж".repeat(134), 2, "ucs2"),
        ("ж".repeat(135), 3, "ucs2"),
    ];
    for (text, segments, encoding) in &cases {
        let msgs = app.send_ok(&json!({"to": "+15551230000", "body": text}));
        let m = &msgs[0];
        assert_eq!(
            (&m["segments"], m["encoding"].as_str()),
            (&json!(segments), Some(*encoding)),
            "{} chars of {:?}: {m}",
            text.chars().count(),
            text.chars().next().unwrap()
        );
        let got = app.message(m["id"].as_i64().unwrap());
        assert_eq!(got["body"], json!(text), "the body must be stored as sent");
        assert_eq!(got["segments"], json!(segments));
        assert_eq!(got["encoding"], json!(encoding));
    }
}

#[test]
fn list_pages_newest_first_with_a_cursor() {
    let app = spawn_app("");
    let mut sent = Vec::new();
    for i in 0..7 {
        let m = app.send_ok(&json!({"to": format!("+1555000{i:04}"), "body": format!("n{i}")}));
        sent.push(m[0]["id"].as_i64().unwrap());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/messages?limit=3&cursor={c}"),
            None => "/api/v1/messages?limit=3".to_string(),
        };
        let r = app.get(&path);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let page = v["messages"].as_array().unwrap();
        pages += 1;
        assert!(page.len() <= 3, "limit ignored: {v}");
        for m in page {
            seen.push(m["id"].as_i64().unwrap());
        }
        let has_more = v["has_more"].as_bool().expect("has_more is a boolean");
        assert!(
            v.get("next_cursor").is_some(),
            "next_cursor always present: {v}"
        );
        if !page.is_empty() {
            assert_eq!(
                v["next_cursor"],
                json!(page.last().unwrap()["id"].as_i64().unwrap().to_string()),
                "next_cursor is the position after the last item: {v}"
            );
        }
        if !has_more {
            break;
        }
        cursor = Some(v["next_cursor"].as_str().expect("a cursor").to_string());
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3, "7 messages at 3 a page");
    let mut newest_first = sent.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    // Filtering by status.
    for id in &sent {
        app.wait_final(*id);
    }
    let v = app
        .get("/api/v1/messages?status=delivered&limit=100")
        .json();
    assert_eq!(v["messages"].as_array().unwrap().len(), 7, "{v}");
    let v = app.get("/api/v1/messages?status=queued").json();
    assert_eq!(v["messages"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["has_more"], false);
}

#[test]
fn a_scheduled_message_can_be_cancelled_once() {
    let app = spawn_app("");
    let at = rfc3339(now_ms() + 3_600_000);
    let msgs = app.send_ok(&json!({"to": "+15551110000", "body": "later", "schedule_at": at}));
    assert_eq!(msgs[0]["status"], "scheduled", "{msgs:?}");
    let id = msgs[0]["id"].as_i64().unwrap();
    let m = app.message(id);
    assert_eq!(m["status"], "scheduled", "{m}");
    assert_eq!(m["schedule_at"], json!(at), "{m}");

    let r = app.req("POST", &format!("/api/v1/messages/{id}/cancel"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "cancelled", "{}", r.text());
    assert_eq!(app.message(id)["status"], "cancelled");

    let r = app.req("POST", &format!("/api/v1/messages/{id}/cancel"), None);
    r.assert_error(409, "not_cancellable");
    assert_eq!(app.message(id)["status"], "cancelled");

    // A delivered one cannot be cancelled either.
    let id2 = app.send_ok(&json!({"to": "+15551110001", "body": "now"}))[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.wait_final(id2)["status"], "delivered");
    app.req("POST", &format!("/api/v1/messages/{id2}/cancel"), None)
        .assert_error(409, "not_cancellable");
    // A missing one is 404.
    app.req("POST", "/api/v1/messages/987654321/cancel", None)
        .assert_error(404, "not_found");
}

#[test]
fn a_message_scheduled_shortly_is_delivered_after_its_time() {
    let app = spawn_app("");
    let at_ms = (now_ms() / 1000 + 3) * 1000;
    let at = rfc3339(at_ms);
    let msgs = app.send_ok(&json!({"to": "+15551112222", "body": "soon", "schedule_at": at}));
    assert_eq!(msgs[0]["status"], "scheduled", "{msgs:?}");
    let id = msgs[0]["id"].as_i64().unwrap();
    let m = app.wait_final(id);
    assert_eq!(m["status"], "delivered", "{m}");
    let sent = parse_rfc3339_z(m["sent_at"].as_str().unwrap()).unwrap();
    assert!(
        sent >= at_ms,
        "sent at {sent} before its schedule {at_ms}: {m}"
    );
}

#[test]
fn health_metrics_and_openapi() {
    let app = spawn_app("");
    let r = http(&app.addr, "GET", "/healthz", &[], None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let msgs =
        app.send_ok(&json!({"to": ["+15550001000", "+15550001001", "+15550001002"], "body": "m"}));
    for m in &msgs {
        app.wait_final(m["id"].as_i64().unwrap());
    }
    let r = http(&app.addr, "GET", "/metrics", &[], None).unwrap();
    assert_eq!(r.status, 200);
    let text = r.text();
    let metric = |name: &str| -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    assert_eq!(
        metric("textgate_messages_accepted_total"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(metric("textgate_messages_sent_total"), Some(3.0), "{text}");
    assert_eq!(
        metric("textgate_messages_final_total{status=\"delivered\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric("textgate_device_sent_total{device=\"loopback\"}"),
        Some(3.0),
        "{text}"
    );

    let r = http(&app.addr, "GET", "/api/openapi.json", &[], None).unwrap();
    assert_eq!(r.status, 200);
    let doc = r.json();
    let paths = doc["paths"].as_object().expect("paths");
    let answered = [
        "/api/v1/messages",
        "/api/v1/messages/{id}",
        "/api/v1/messages/{id}/cancel",
        "/api/v1/devices",
        "/healthz",
        "/metrics",
        "/api/openapi.json",
    ];
    for p in answered {
        assert!(
            paths.contains_key(p),
            "openapi.json lacks {p}: {:?}",
            paths.keys()
        );
    }
    // And every path it documents is answered (not the JSON 404 for unknown endpoints).
    for p in [
        "/api/v1/inbound",
        "/api/v1/inbound/{id}",
        "/api/v1/suppressions",
        "/api/v1/webhooks/deliveries",
    ] {
        assert!(paths.contains_key(p), "openapi.json lacks {p}");
    }
    let id = msgs[0]["id"].as_i64().unwrap().to_string();
    // Job paths get a job's id.
    let auth = format!("Bearer {}", app.key);
    let job = http(
        &app.addr,
        "POST",
        "/api/v1/jobs",
        &[("Authorization", &auth), ("Content-Type", "text/csv")],
        Some(b"to,body\n+15550000001,x\n"),
    )
    .unwrap();
    assert_eq!(job.status, 201, "{}", job.text());
    let job_id = job.json()["id"].as_i64().unwrap().to_string();
    for (p, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let m = method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&m.as_str()) {
                continue;
            }
            let path = if p.starts_with("/api/v1/jobs/") {
                p.replace("{id}", &job_id)
            } else {
                p.replace("{id}", &id)
            };
            let body = (m == "POST" && !path.ends_with("/cancel")).then_some("{}");
            let r = app.req(&m, &path, body);
            // A 404 about the object (no inbound text with that id) is an answer; the
            // fallback for unknown endpoints is not.
            let unknown = r.status == 404 && r.text().contains("no such endpoint");
            assert!(
                !unknown && r.status != 405,
                "{m} {path} is documented but answered {}: {}",
                r.status,
                r.text()
            );
        }
    }
    // An unknown path is a JSON 404, a wrong method a JSON 405.
    app.get("/api/v1/nothing").assert_error(404, "not_found");
    app.req("DELETE", "/api/v1/messages", None)
        .assert_error(405, "method_not_allowed");
}

#[test]
fn devices_are_listed() {
    let app = spawn_app(
        "[[device]]\nname = \"lb1\"\nkind = \"loopback\"\n\n[[device]]\nname = \"lb2\"\nkind = \"loopback\"\nenabled = false\n",
    );
    let id = app.send_ok(&json!({"to": "+15550002000", "body": "x"}))[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.wait_final(id)["device"], "lb1");
    let r = app.get("/api/v1/devices");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let ds = v["devices"].as_array().expect("devices array");
    assert_eq!(ds.len(), 2, "{v}");
    assert_eq!(ds[0]["name"], "lb1");
    assert_eq!(ds[0]["kind"], "loopback");
    assert_eq!(ds[0]["state"], "up");
    assert_eq!(ds[0]["sent"], 1, "{v}");
    assert_eq!(ds[0]["received"], 0);
    assert!(ds[0].get("last_error").is_some(), "{v}");
    assert_eq!(ds[1]["name"], "lb2");
    assert_eq!(ds[1]["state"], "disabled", "a disabled device says so: {v}");
    assert_eq!(ds[1]["sent"], 0);
    assert!(
        v.get("next_cursor").is_some() && v.get("has_more").is_some(),
        "{v}"
    );
    // Without a key: 401.
    http(&app.addr, "GET", "/api/v1/devices", &[], None)
        .unwrap()
        .assert_error(401, "unauthorized");
}
