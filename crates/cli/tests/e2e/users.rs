//! A user sees only their own messages; another user's is answered exactly like a missing
//! one; an admin sees everyone's.

use serde_json::json;

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
