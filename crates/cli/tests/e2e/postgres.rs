//! The same server on PostgreSQL (a fresh schema in database `test`).

use serde_json::json;

use crate::helpers::*;

#[test]
fn postgres_send_deliver_list() {
    let app = spawn_app_with(Opts {
        users: &[("alice", "user"), ("bob", "user")],
        db: Db::Postgres,
        ..Opts::default()
    });
    let r = http(&app.addr, "GET", "/healthz", &[], None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let msgs = app.send_ok(&json!({"to": ["(555) 123-4567", "+15550005001"], "body": "über pg"}));
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["to"], "+15551234567");
    for m in &msgs {
        let id = m["id"].as_i64().unwrap();
        let got = app.wait_final(id);
        assert_eq!(got["status"], "delivered", "{got}");
        assert_eq!(got["device"], "loopback");
        assert_eq!(got["body"], "über pg");
        assert!(
            parse_rfc3339_z(got["delivered_at"].as_str().unwrap()).is_some(),
            "{got}"
        );
    }
    let v = app.get("/api/v1/messages?limit=1").json();
    assert_eq!(v["messages"][0]["id"], msgs[1]["id"], "newest first: {v}");
    assert_eq!(v["has_more"], true);
    let c = v["next_cursor"].as_str().unwrap();
    let v = app
        .get(&format!("/api/v1/messages?limit=1&cursor={c}"))
        .json();
    assert_eq!(v["messages"][0]["id"], msgs[0]["id"], "{v}");
    assert_eq!(v["has_more"], false);
    assert_eq!(
        app.all_messages(app.key_of("bob")).len(),
        0,
        "bob sees none"
    );
    let id = msgs[0]["id"].as_i64().unwrap();
    app.req_as(
        app.key_of("bob"),
        "GET",
        &format!("/api/v1/messages/{id}"),
        None,
        &[],
    )
    .assert_error(404, "not_found");

    // Idempotency and a refused request on this backend too.
    let body = json!({"to": "+15550005002", "body": "once"}).to_string();
    let a = app.req_as(
        &app.key,
        "POST",
        "/api/v1/messages",
        Some(&body),
        &[("Idempotency-Key", "k")],
    );
    let b = app.req_as(
        &app.key,
        "POST",
        "/api/v1/messages",
        Some(&body),
        &[("Idempotency-Key", "k")],
    );
    assert_eq!(a.status, 202);
    assert_eq!(a.text(), b.text());
    app.send(&json!({"to": "+15550005003", "body": ""}))
        .assert_error(422, "empty_body");
    // A NUL, which PostgreSQL cannot store, is refused as the caller's mistake, not answered
    // as a database failure.
    app.send(&json!({"to": "+15550005003", "body": "a\u{0}b"}))
        .assert_error(422, "invalid_body");
    assert_eq!(app.count(), 3);
}
