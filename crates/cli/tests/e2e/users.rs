//! A user sees only their own messages; another user's is answered exactly like a missing
//! one; an admin sees everyone's.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

#[test]
fn users_see_only_their_own_messages_and_admins_see_all() {
    let app = spawn_app_with(Opts {
        users: &[("alice", "user"), ("bob", "user"), ("boss", "admin")],
        ..Opts::default()
    });
    let (alice, bob, boss) = (app.key_of("alice"), app.key_of("bob"), app.key_of("boss"));
    let send = |key: &str, to: &str| -> i64 {
        let r = app.req_as(
            key,
            "POST",
            "/api/v1/messages",
            Some(
                &json!({"to": to, "body": "later", "schedule_at": rfc3339(now_ms() + 3_600_000)})
                    .to_string(),
            ),
            &[],
        );
        assert_eq!(r.status, 202, "{}", r.text());
        r.json()["messages"][0]["id"].as_i64().unwrap()
    };
    let a = send(alice, "+15550003001");
    let b = send(bob, "+15550003002");
    let missing = a.max(b) + 1000;

    // GET: bob on alice's message looks exactly like a missing id.
    let theirs = app.req_as(bob, "GET", &format!("/api/v1/messages/{a}"), None, &[]);
    let nothing = app.req_as(
        bob,
        "GET",
        &format!("/api/v1/messages/{missing}"),
        None,
        &[],
    );
    theirs.assert_error(404, "not_found");
    assert_eq!(theirs.status, nothing.status);
    assert_eq!(
        theirs.body, nothing.body,
        "another user's message must look missing"
    );

    // Cancel: the same, and alice's message is untouched.
    let theirs = app.req_as(
        bob,
        "POST",
        &format!("/api/v1/messages/{a}/cancel"),
        None,
        &[],
    );
    let nothing = app.req_as(
        bob,
        "POST",
        &format!("/api/v1/messages/{missing}/cancel"),
        None,
        &[],
    );
    theirs.assert_error(404, "not_found");
    assert_eq!(theirs.body, nothing.body);
    assert_eq!(
        app.message(a)["status"],
        "scheduled",
        "bob cancelled alice's message"
    );

    // Lists.
    let mine: Vec<i64> = app.all_messages(bob).into_keys().collect();
    assert_eq!(mine, vec![b], "bob's list");
    let mine: Vec<i64> = app.all_messages(alice).into_keys().collect();
    assert_eq!(mine, vec![a], "alice's list");
    let all = app.all_messages(boss);
    assert!(
        all.contains_key(&a) && all.contains_key(&b),
        "admin's list: {all:?}"
    );
    assert_eq!(all.len(), 2);

    // The admin can read both, and the owner reads their own.
    for id in [a, b] {
        let r = app.req_as(boss, "GET", &format!("/api/v1/messages/{id}"), None, &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], id);
    }
    let r = app.req_as(bob, "GET", &format!("/api/v1/messages/{b}"), None, &[]);
    assert_eq!(r.status, 200);

    // Alice can cancel her own.
    let r = app.req_as(
        alice,
        "POST",
        &format!("/api/v1/messages/{a}/cancel"),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "cancelled");
}

/// `/api/v1/users`: administrators add users (a generated password answered once), change
/// them and set passwords; a disabled user's key stops at once; the last administrator stays
/// one; users see only themselves. `textgate user list|disable|enable` do the same from the
/// shell.
#[test]
fn administrators_manage_users_through_the_api_and_the_cli() {
    let app = spawn_app_with(Opts {
        users: &[("boss", "admin"), ("alice", "user")],
        ..Opts::default()
    });
    let (boss, alice) = (app.key_of("boss"), app.key_of("alice"));
    let r = app.req_as(alice, "GET", "/api/v1/users", None, &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = app.req_as(
        boss,
        "POST",
        "/api/v1/users",
        Some(&json!({"name": "carol", "email": "carol@example.com"}).to_string()),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let carol = r.json();
    assert_eq!(carol["role"], "user");
    assert!(carol["password"].as_str().is_some_and(|p| p.len() >= 8));
    let id = carol["id"].as_i64().unwrap();
    let r = app.req_as(
        boss,
        "POST",
        "/api/v1/users",
        Some(&json!({"name": "carol"}).to_string()),
        &[],
    );
    assert_eq!(r.status, 409, "a taken name: {}", r.text());
    let r = app.req_as(
        boss,
        "POST",
        "/api/v1/users",
        Some(&json!({"name": "bad name", "password": "short"}).to_string()),
        &[],
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("not a usable user name"), "{}", r.text());

    let list = app.req_as(boss, "GET", "/api/v1/users", None, &[]).json();
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["alice", "boss", "carol"]);
    assert!(
        !list.to_string().contains("argon2"),
        "no password hash in the answer"
    );

    // Users see themselves, and no one else.
    let alice_id = list["users"][0]["id"].as_i64().unwrap();
    assert_eq!(
        app.req_as(
            alice,
            "GET",
            &format!("/api/v1/users/{alice_id}"),
            None,
            &[]
        )
        .status,
        200
    );
    assert_eq!(
        app.req_as(alice, "GET", &format!("/api/v1/users/{id}"), None, &[])
            .status,
        404
    );

    // Disabling alice stops her key at once on this node.
    assert_eq!(
        app.req_as(alice, "GET", "/api/v1/messages", None, &[])
            .status,
        200
    );
    let r = app.req_as(
        boss,
        "PATCH",
        &format!("/api/v1/users/{alice_id}"),
        Some(&json!({"disabled": true, "role": "admin"}).to_string()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["disabled_at"].is_string());
    assert_eq!(
        app.req_as(alice, "GET", "/api/v1/messages", None, &[])
            .status,
        401
    );

    // The last enabled administrator cannot be demoted.
    let boss_id = list["users"][1]["id"].as_i64().unwrap();
    let r = app.req_as(
        boss,
        "PATCH",
        &format!("/api/v1/users/{boss_id}"),
        Some(&json!({"role": "user"}).to_string()),
        &[],
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "last_admin");

    let r = app.req_as(
        boss,
        "POST",
        &format!("/api/v1/users/{id}/password"),
        Some("{}"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["password"].as_str().is_some_and(|p| p.len() >= 8));
    let r = app.req_as(
        boss,
        "POST",
        &format!("/api/v1/users/{id}/password"),
        Some(&json!({"password": "chosen-password"}).to_string()),
        &[],
    );
    assert!(
        r.json()["password"].is_null(),
        "a given password is not echoed"
    );

    // The command line: list, then enable alice again; her key works again.
    let cfg = app.config.to_str().unwrap();
    let o = cli(&["user", "list", "--config", cfg], None);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let alice_line = out.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(alice_line.contains("disabled"), "{out}");
    let o = cli(
        &["user", "disable", "alice", "--enable", "--config", cfg],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&["user", "disable", "nobody", "--config", cfg], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no user is named \"nobody\""),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        app.req_as(alice, "GET", "/api/v1/messages", None, &[])
            .status,
        200
    );

    // `user disable` and `user enable`, as the contract spells them: the running server
    // refuses her key within its revocation check, and takes it again once she is enabled.
    let status_becomes = |want: u16| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = app
                .req_as(alice, "GET", "/api/v1/messages", None, &[])
                .status;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "alice's key still answers {got}, not {want}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let o = cli(&["user", "disable", "alice", "--config", cfg], None);
    assert!(o.status.success(), "{}", stderr(&o));
    status_becomes(401);
    let o = cli(&["user", "enable", "alice", "--config", cfg], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("\"alice\" is enabled"),
        "{}",
        stdout(&o)
    );
    status_becomes(200);
    let out = stdout(&cli(&["user", "list", "--config", cfg], None));
    let alice_line = out.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(alice_line.contains("active"), "{out}");
    let o = cli(&["user", "enable", "nobody", "--config", cfg], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no user is named \"nobody\""),
        "{}",
        stderr(&o)
    );
}

/// A user given senders sends only as them, through every edge that names one (a message, a
/// bulk job), and as the first when a text names none; an administrator sets them with
/// `PATCH /api/v1/users/{id}` (checked, in their normal form); `[]` lifts the limit.
#[test]
fn a_user_sends_only_as_the_senders_an_administrator_gave_them() {
    let app = spawn_app_with(Opts {
        users: &[("boss", "admin"), ("alice", "user")],
        ..Opts::default()
    });
    let (boss, alice) = (app.key_of("boss"), app.key_of("alice"));
    let me = app.req_as(alice, "GET", "/api/v1/users", None, &[]);
    assert_eq!(me.status, 403);
    let users = app.req_as(boss, "GET", "/api/v1/users", None, &[]).json();
    let alice_id = users["users"][0]["id"].as_i64().unwrap();
    let patch = |senders: Value| {
        app.req_as(
            boss,
            "PATCH",
            &format!("/api/v1/users/{alice_id}"),
            Some(&json!({ "senders": senders }).to_string()),
            &[],
        )
    };
    let r = patch(json!(["ACME", "not a sender!"]));
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("not a sender!"),
        "names the bad entry: {}",
        r.text()
    );
    let r = patch(json!(["ACME", "+1 (555) 000-1234", "acme"]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["senders"], json!(["ACME", "+15550001234"]));

    let send = |from: Option<&str>| {
        let mut body = json!({"to": "+15551230001", "body": "hi"});
        if let Some(f) = from {
            body["from"] = json!(f);
        }
        app.req_as(
            alice,
            "POST",
            "/api/v1/messages",
            Some(&body.to_string()),
            &[],
        )
    };
    let r = send(Some("EVIL"));
    let msg = r.assert_error(403, "sender_not_allowed");
    assert!(msg.contains("ACME, +15550001234"), "{msg}");
    let from_of = |r: Resp| {
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["messages"][0]["id"].as_i64().unwrap();
        app.req_as(alice, "GET", &format!("/api/v1/messages/{id}"), None, &[])
            .json()["from"]
            .clone()
    };
    assert_eq!(from_of(send(None)), "ACME", "the first is the default");
    assert_eq!(from_of(send(Some("acme"))), "ACME");
    assert_eq!(from_of(send(Some("+15550001234"))), "+15550001234");

    // A bulk job names its sender once, for every row.
    let auth = format!("Bearer {alice}");
    let csv = "to,body\n+15551230002,hello\n";
    let job = |query: &str| {
        http(
            &app.addr,
            "POST",
            &format!("/api/v1/jobs?{query}"),
            &[("Authorization", &auth), ("Content-Type", "text/csv")],
            Some(csv.as_bytes()),
        )
        .unwrap()
    };
    job("from=EVIL").assert_error(403, "sender_not_allowed");
    let r = job("from=%2B15550001234");
    assert_eq!(r.status, 201, "{}", r.text());

    // No senders: any again.
    assert_eq!(patch(json!([])).status, 200);
    assert_eq!(from_of(send(Some("EVIL"))), "EVIL");
}
