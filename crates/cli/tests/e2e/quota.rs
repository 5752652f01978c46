//! Quotas: a user's texts per day, per month and per second, from `[quotas]` or their own
//! limits; a clear `429 quota_exceeded` with the limit, through the API, bulk jobs, the web
//! UI and e-mail; administrators exempt.

use serde_json::{json, Value};

use crate::helpers::*;

fn send_as(app: &App, key: &str, to: &[&str]) -> Resp {
    let body = json!({"to": to, "body": "quota"}).to_string();
    app.req_as(key, "POST", "/api/v1/messages", Some(&body), &[])
}

fn user_id(app: &App, name: &str) -> i64 {
    let list = app.get("/api/v1/users").json();
    list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[test]
fn quotas_refuse_what_would_pass_a_limit_with_a_clear_429() {
    let app = spawn_app_users(
        "\n[quotas]\ntexts_per_day = 5\n",
        &[("root", "admin"), ("alice", "user"), ("bob", "user")],
    );
    let alice = app.key_of("alice").to_string();
    assert_eq!(
        send_as(
            &app,
            &alice,
            &["+15551230001", "+15551230002", "+15551230003"]
        )
        .status,
        202
    );
    // Three more would make six: refused, nothing stored, and the answer says why.
    let r = send_as(
        &app,
        &alice,
        &["+15551230004", "+15551230005", "+15551230006"],
    );
    let msg = r.assert_error(429, "quota_exceeded");
    assert!(msg.contains("daily limit of 5 texts"), "{msg}");
    let q = &r.json()["error"]["quota"];
    assert_eq!(
        (
            q["period"].as_str(),
            q["limit"].as_i64(),
            q["used"].as_i64(),
            q["requested"].as_i64()
        ),
        (Some("day"), Some(5), Some(3), Some(3))
    );
    let resets = parse_rfc3339_z(q["resets_at"].as_str().unwrap()).unwrap();
    assert_eq!(resets % 86_400_000, 0, "midnight UTC");
    let retry: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 86_400, "{retry}");
    // What fits still goes.
    assert_eq!(
        send_as(&app, &alice, &["+15551230004", "+15551230005"]).status,
        202
    );
    send_as(&app, &alice, &["+15551230006"]).assert_error(429, "quota_exceeded");
    assert_eq!(app.all_messages(&alice).len(), 5);

    // A bulk job counts all its texts at once: refused whole, no job made.
    let csv = "to,body\n+15551230007,a\n";
    let auth = format!("Bearer {alice}");
    let r = http(
        &app.addr,
        "POST",
        "/api/v1/jobs",
        &[("Authorization", &auth), ("Content-Type", "text/csv")],
        Some(csv.as_bytes()),
    )
    .unwrap();
    r.assert_error(429, "quota_exceeded");
    let jobs = app.req_as(&alice, "GET", "/api/v1/jobs", None, &[]).json();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0, "{jobs}");

    // An administrator sees the limits and the usage; administrators have none.
    let alice_id = user_id(&app, "alice");
    let v = app.get(&format!("/api/v1/users/{alice_id}")).json();
    assert_eq!(v["usage"]["today"], 5, "{v}");
    assert_eq!(v["limits"]["texts_per_day"], 5);
    assert_eq!(
        v["quota"]["texts_per_day"],
        Value::Null,
        "her own: the default"
    );
    let many: Vec<String> = (0..8).map(|i| format!("+1555123100{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(send_as(&app, &app.key, &many).status, 202, "root is exempt");
    let root = app
        .get(&format!("/api/v1/users/{}", user_id(&app, "root")))
        .json();
    assert_eq!(root["limits"]["exempt"], true);

    // Her own limit: 0 is none.
    let r = app.req(
        "PATCH",
        &format!("/api/v1/users/{alice_id}"),
        Some(r#"{"quota":{"texts_per_day":0}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["limits"]["texts_per_day"], Value::Null);
    assert_eq!(send_as(&app, &alice, &["+15551230008"]).status, 202);
    app.req(
        "PATCH",
        &format!("/api/v1/users/{alice_id}"),
        Some(r#"{"quota":{"texts_per_day":-1}}"#),
    )
    .assert_error(422, "invalid_user");

    // A rate of 2 a second: the third text at once waits.
    let bob = app.key_of("bob").to_string();
    let bob_id = user_id(&app, "bob");
    let r = app.req(
        "PATCH",
        &format!("/api/v1/users/{bob_id}"),
        Some(r#"{"quota":{"texts_per_second":2}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The key's cached user is forgotten on this node, so the new limit applies at once.
    assert_eq!(
        send_as(&app, &bob, &["+15551230009", "+15551230010"]).status,
        202
    );
    let r = send_as(&app, &bob, &["+15551230011"]);
    r.assert_error(429, "quota_exceeded");
    assert_eq!(r.json()["error"]["quota"]["period"], "second");
    assert_eq!(r.header("retry-after"), Some("1"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(send_as(&app, &bob, &["+15551230011"]).status, 202);

    // The web UI: the account page shows the usage, and Compose says why it sent nothing.
    // (The text she sent without a limit was not counted.)
    let r = app.req(
        "PATCH",
        &format!("/api/v1/users/{alice_id}"),
        Some(r#"{"quota":{"texts_per_day":5}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = web_sign_in(&app, "alice", "alice-password-1");
    let page = web_get(&app, "/account", &cookie).text();
    assert!(page.contains("5 of 5 today"), "{page}");
    let form = web_get(&app, "/compose", &cookie).text();
    let field = |name: &str| {
        form.split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no {name} field"))
            .to_string()
    };
    let (csrf, nonce) = (field("csrf"), field("nonce"));
    let r = web_form(
        &app,
        "/compose",
        Some(&cookie),
        &format!("csrf={csrf}&nonce={nonce}&to=%2B15551230012&body=hello"),
    );
    let text = r.text();
    assert!(
        text.contains("Nothing was sent: the daily limit of 5 texts is reached"),
        "{} {text}",
        r.status
    );
}
