//! The audit log: what administrators, users and the command line do is recorded once, with
//! who, how and from where, shown to administrators through `GET /api/v1/audit` and the web
//! UI's `/admin/audit`, and never holds a secret.

use serde_json::Value;

use crate::helpers::*;

fn entries(app: &App, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/api/v1/audit{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["entries"].as_array().unwrap().clone()
}

/// The (action, target) pairs of `entries`, oldest first.
fn actions(entries: &[Value]) -> Vec<(String, String)> {
    entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn administrators_actions_and_sign_ins_are_audited_without_secrets() {
    let app = spawn_app_users("", &[("root", "admin"), ("alice", "user")]);
    let mut secrets: Vec<String> = Vec::new();

    // Users through the API.
    let r = app.req("POST", "/api/v1/users", Some(r#"{"name":"bob"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let bob = r.json();
    secrets.push(bob["password"].as_str().unwrap().to_string());
    let bob_id = bob["id"].as_i64().unwrap();
    for body in [
        r#"{"disabled":true}"#,
        r#"{"disabled":false}"#,
        r#"{"role":"admin"}"#,
    ] {
        let r = app.req("PATCH", &format!("/api/v1/users/{bob_id}"), Some(body));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = app.req(
        "POST",
        &format!("/api/v1/users/{bob_id}/password"),
        Some(r#"{"password":"bobs-secret-password"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    secrets.push("bobs-secret-password".into());

    // A key made and revoked; a device switched; a number on and off the opt-out list.
    let r = app.req(
        "POST",
        "/api/v1/keys",
        Some(r#"{"user":"bob","webhook_secret":true}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let key = r.json();
    secrets.push(key["key"].as_str().unwrap().to_string());
    secrets.push(key["webhook_secret"].as_str().unwrap().to_string());
    let key_id = key["id"].as_i64().unwrap();
    assert_eq!(
        app.req("DELETE", &format!("/api/v1/keys/{key_id}"), None)
            .status,
        200
    );
    assert_eq!(
        app.req("POST", "/api/v1/devices/loopback/disable", None)
            .status,
        200
    );
    assert_eq!(
        app.req("POST", "/api/v1/devices/loopback/enable", None)
            .status,
        200
    );
    let r = app.req(
        "POST",
        "/api/v1/suppressions",
        Some(r#"{"number":"+15551230009"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        app.req("DELETE", "/api/v1/suppressions/+15551230009", None)
            .status,
        204
    );

    // The command line, as the operating system's user.
    let cfg = app.config.to_str().unwrap();
    let o = command()
        .args(["user", "disable", "alice", "--config", cfg])
        .env("USER", "operator1")
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // Web sign-ins: a wrong password, a password typed as a name, then a good one.
    let o = cli(
        &[
            "user",
            "passwd",
            "root",
            "--password-stdin",
            "--config",
            cfg,
        ],
        Some("root-password-1\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = web_form(
        &app,
        "/login",
        None,
        "username=root&password=wrong-guess-123",
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let r = web_form(
        &app,
        "/login",
        None,
        "username=typed-my-password-here&password=x",
    );
    assert_eq!(r.status, 401, "{}", r.text());
    secrets.extend(["wrong-guess-123".into(), "typed-my-password-here".into()]);
    let r = web_form(
        &app,
        "/login",
        None,
        "username=root&password=root-password-1",
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = session_cookie(&r);
    secrets.extend([cookie.clone(), "root-password-1".into()]);

    let all = entries(&app, "?limit=1000");
    let got = actions(&all);
    let want: Vec<(String, String)> = [
        ("user.created", "bob"),
        ("user.disabled", "bob"),
        ("user.enabled", "bob"),
        ("user.updated", "bob"),
        ("user.password_set", "bob"),
        ("apikey.created", key_id.to_string().as_str()),
        ("apikey.revoked", key_id.to_string().as_str()),
        ("device.disabled", "loopback"),
        ("device.enabled", "loopback"),
        ("suppression.added", "+15551230009"),
        ("suppression.removed", "+15551230009"),
        ("user.disabled", "alice"),
        ("user.password_set", "root"),
        ("signin.failed", "root"),
        ("signin.failed", "(unknown)"),
        ("signin.succeeded", "root"),
    ]
    .iter()
    .map(|(a, t)| (a.to_string(), t.to_string()))
    .collect();
    // The users the test app was made with come first.
    let tail = &got[got.len() - want.len()..];
    assert_eq!(tail, want.as_slice(), "all: {got:?}");

    let by_action = |a: &str| {
        all.iter()
            .find(|e| e["action"] == a)
            .unwrap_or_else(|| panic!("no {a}"))
            .clone()
    };
    let created = by_action("user.created");
    assert_eq!(created["actor"], "root");
    assert_eq!(created["via"], "api");
    assert_eq!(created["address"], "127.0.0.1");
    assert_eq!(created["detail"], "role user");
    assert_eq!(by_action("user.updated")["detail"], "role admin");
    assert_eq!(
        by_action("apikey.created")["detail"],
        format!("for bob, label {}", key["label"].as_str().unwrap())
    );
    let cli_entry = all
        .iter()
        .find(|e| e["via"] == "cli" && e["target"] == "alice")
        .unwrap();
    assert_eq!(cli_entry["actor"], "operator1");
    assert_eq!(cli_entry["address"], Value::Null);
    let signin = by_action("signin.succeeded");
    assert_eq!(
        (signin["via"].as_str(), signin["actor"].as_str()),
        (Some("web"), Some("root"))
    );

    // No secret anywhere in it.
    let text = serde_json::to_string(&all).unwrap();
    for s in &secrets {
        assert!(
            !text.contains(s.as_str()),
            "the audit log holds a secret: {s}"
        );
    }

    // Filters and pages.
    let users = actions(&entries(&app, "?action=user.&limit=1000"));
    assert!(
        users.iter().all(|(a, _)| a.starts_with("user.")),
        "{users:?}"
    );
    assert!(users.len() >= 7, "{users:?}");
    let failed = entries(&app, "?action=signin.failed");
    assert_eq!(failed.len(), 2);
    let first = app.get("/api/v1/audit?limit=3").json();
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().unwrap();
    let next = entries(&app, &format!("?limit=3&cursor={cursor}"));
    assert!(next[0]["id"].as_i64() < first["entries"][2]["id"].as_i64());
    app.req(
        "GET",
        &format!("/api/v1/audit?action={}", "x".repeat(200)),
        None,
    )
    .assert_error(400, "invalid_filter");

    // Administrators only.
    let alice_key = app.key_of("alice").to_string();
    let o = cli(&["user", "enable", "alice", "--config", cfg], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = wait_for_status(&app, &alice_key, 403);
    assert_eq!(r, 403);

    // The web UI's page lists the same, for an administrator.
    let r = http(
        &app.addr,
        "GET",
        "/admin/audit?action=signin.",
        &[("Cookie", &format!("textgate_session={cookie}"))],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.text();
    assert!(page.contains("<h1>Audit log</h1>"), "{page}");
    assert!(
        page.contains("signin.succeeded") && page.contains("(unknown)"),
        "{page}"
    );
    assert!(!page.contains("user.created"), "the filter was not applied");
}

/// `GET /api/v1/audit` with `key` until it answers `status` (a key of a user just enabled
/// is taken again within seconds); the last status.
fn wait_for_status(app: &App, key: &str, status: u16) -> u16 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = app.req_as(key, "GET", "/api/v1/audit", None, &[]);
        if r.status == status || std::time::Instant::now() > deadline {
            return r.status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
