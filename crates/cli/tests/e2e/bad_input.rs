//! Refused requests: each is a 4xx JSON error with the right code, and nothing is stored.

use serde_json::json;

use crate::helpers::*;

const LIMITS: &str = "max_request_bytes = \"2KiB\"\nmax_recipients = 3\n";

/// POSTs `body` raw and insists on `status` + `code` and an unchanged (empty) store.
fn refused(app: &App, body: &str, status: u16, code: &str) -> String {
    let r = app.req("POST", "/api/v1/messages", Some(body));
    let msg = r.assert_error(status, code);
    assert_eq!(
        app.count(),
        0,
        "{body:?} was refused but something was stored"
    );
    msg
}

#[test]
fn malformed_requests_are_refused_and_store_nothing() {
    let app = spawn_app(LIMITS);
    refused(
        &app,
        "{\"to\": \"+15551234567\", \"body\": ",
        400,
        "invalid_json",
    );
    refused(&app, "not json at all", 400, "invalid_json");
    refused(&app, "[1, 2]", 400, "invalid_json");
    refused(&app, "", 400, "empty_request");
    refused(&app, "   \n", 400, "empty_request");
    let m = refused(
        &app,
        r#"{"to":"+15551234567","body":"x","colour":"red"}"#,
        400,
        "unknown_field",
    );
    assert!(m.contains("colour"), "the message names the field: {m}");
    let m = refused(
        &app,
        r#"{"to":"+15551234567","to":"+15551234568","body":"x"}"#,
        400,
        "duplicate_field",
    );
    assert!(m.contains("to"), "{m}");
    refused(
        &app,
        r#"{"to":"+15551234567","body":"x","body":"y"}"#,
        400,
        "duplicate_field",
    );
    let m = refused(&app, r#"{"to":"+15551234567"}"#, 400, "missing_field");
    assert!(m.contains("body"), "the message names the field: {m}");
    refused(&app, r#"{"body":"x"}"#, 400, "missing_field");
    refused(
        &app,
        r#"{"to":15551234567,"body":"x"}"#,
        400,
        "invalid_field",
    );
    refused(
        &app,
        r#"{"to":["+15551234567", 7],"body":"x"}"#,
        400,
        "invalid_field",
    );
}

#[test]
fn unacceptable_values_are_refused_and_store_nothing() {
    let app = spawn_app(LIMITS);
    let j = |v: serde_json::Value| v.to_string();
    refused(
        &app,
        &j(json!({"to": "12ab", "body": "x"})),
        422,
        "invalid_number",
    );
    refused(
        &app,
        &j(json!({"to": "", "body": "x"})),
        422,
        "invalid_number",
    );
    // One bad number among good ones: nothing is half-accepted.
    let m = refused(
        &app,
        &j(json!({"to": ["+15551234567", "not-a-number", "+15551234569"], "body": "x"})),
        422,
        "invalid_number",
    );
    assert!(
        m.contains("to[1]"),
        "the message points at the bad one: {m}"
    );
    refused(
        &app,
        &j(json!({"to": [], "body": "x"})),
        422,
        "no_recipients",
    );
    refused(
        &app,
        &j(json!({"to": "+15551234567", "body": ""})),
        422,
        "empty_body",
    );
    refused(
        &app,
        &j(json!({"to": "+15551234567", "body": "a\u{0}b"})),
        422,
        "invalid_body",
    );
    // 10 parts of 153 GSM characters is the default limit; one more character is 11 parts.
    refused(
        &app,
        &j(json!({"to": "+15551234567", "body": "a".repeat(153 * 10 + 1)})),
        422,
        "body_too_long",
    );
    refused(
        &app,
        &j(
            json!({"to": ["+15550000001", "+15550000002", "+15550000003", "+15550000004"], "body": "x"}),
        ),
        422,
        "too_many_recipients",
    );
    refused(
        &app,
        &j(json!({"to": "+15551234567", "body": "x", "schedule_at": "tomorrow"})),
        422,
        "invalid_time",
    );
    // Over max_request_bytes (2 KiB here): 413.
    let big = j(json!({"to": "+15551234567", "body": "a".repeat(4000)}));
    refused(&app, &big, 413, "payload_too_large");

    // The limits are exact: 10 parts and 3 recipients are fine.
    let r = app.send(&json!({"to": ["+15550000001", "+15550000002", "+15550000003"], "body": "a".repeat(153 * 10)}));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["messages"][0]["segments"], 10);
    assert_eq!(app.count(), 3);
}

#[test]
fn missing_or_wrong_keys_are_401_and_store_nothing() {
    let app = spawn_app("");
    let body = json!({"to": "+15551234567", "body": "x"}).to_string();
    let ct = ("Content-Type", "application/json");
    let r = http(
        &app.addr,
        "POST",
        "/api/v1/messages",
        &[ct],
        Some(body.as_bytes()),
    )
    .unwrap();
    r.assert_error(401, "unauthorized");
    for auth in [
        "Bearer tg_wrong_key",
        "Bearer ",
        "Basic YWxpY2U6eA==",
        &app.key,
    ] {
        let r = http(
            &app.addr,
            "POST",
            "/api/v1/messages",
            &[ct, ("Authorization", auth)],
            Some(body.as_bytes()),
        )
        .unwrap();
        r.assert_error(401, "unauthorized");
    }
    let r = http(&app.addr, "GET", "/api/v1/messages", &[], None).unwrap();
    r.assert_error(401, "unauthorized");
    let r = http(
        &app.addr,
        "GET",
        "/api/v1/messages/1",
        &[("Authorization", "Bearer nope")],
        None,
    )
    .unwrap();
    r.assert_error(401, "unauthorized");
    assert_eq!(app.count(), 0);
}

#[test]
fn bad_list_queries_are_400() {
    let app = spawn_app("");
    app.get("/api/v1/messages?status=bogus")
        .assert_error(400, "invalid_status");
    app.get("/api/v1/messages?limit=0")
        .assert_error(400, "invalid_limit");
    app.get("/api/v1/messages?limit=1001")
        .assert_error(400, "invalid_limit");
    app.get("/api/v1/messages?limit=ten")
        .assert_error(400, "invalid_limit");
    app.get("/api/v1/messages?cursor=xyz")
        .assert_error(400, "invalid_cursor");
    app.get("/api/v1/messages?colour=red")
        .assert_error(400, "invalid_query");
    app.get("/api/v1/messages/not-a-number")
        .assert_error(404, "not_found");
    app.get("/api/v1/messages/424242")
        .assert_error(404, "not_found");
}
