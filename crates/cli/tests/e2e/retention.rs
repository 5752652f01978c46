//! `[retention]` through the running server: old finished messages, inbound texts and the
//! watched folder's old files go; what is young or still moving stays.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn old_messages_and_spool_files_are_removed_and_young_ones_kept() {
    let spool = TempDir::new("retention-spool");
    let app = spawn_app_with(Opts {
        extra: &format!(
            "[spool]\ndir = \"{}\"\nuser = \"alice\"\npoll_interval = \"50ms\"\nsettle = \"200ms\"\n\n[retention]\nmessages = \"2s\"\ninbound = \"2s\"\njob_files = \"2s\"\ninterval = \"200ms\"\n",
            spool.path().display()
        ),
        users: &[("alice", "user"), ("root", "admin")],
        ..Opts::default()
    });
    let old = app.send_ok(&json!({"to": "+15550000001", "body": "soon gone"}))[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.wait_final(old)["status"], "delivered");
    // Scheduled far ahead: old soon, but never final, so it stays.
    let waiting = app.send_ok(&json!({"to": "+15550000002", "body": "later",
        "schedule_at": rfc3339(now_ms() + 3_600_000)}))[0]["id"]
        .as_i64()
        .unwrap();
    std::fs::write(
        spool.path().join("incoming/list.csv"),
        "to,body\n+15550000003,from a file\n",
    )
    .unwrap();
    let done = spool.path().join("done/list.csv");
    wait_until("the file imported", 30, || done.exists());
    let root = app.key_of("root").to_string();
    let r = app.req_as(
        &root,
        "POST",
        "/api/v1/devices/loopback/inbound",
        Some(&json!({"from": "+15550000009", "body": "an old reply"}).to_string()),
        &[],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    // After two seconds and a pass: the finished message, the text and the files are gone.
    wait_until("the old message removed", 20, || {
        app.get(&format!("/api/v1/messages/{old}")).status == 404
    });
    wait_until("the spool's files removed", 20, || !done.exists());
    wait_until("the inbound text removed", 20, || {
        app.req_as(&root, "GET", "/api/v1/inbound", None, &[])
            .json()["messages"]
            .as_array()
            .is_some_and(|m| m.is_empty())
    });
    assert_eq!(
        app.message(waiting)["status"],
        "scheduled",
        "not final: kept"
    );
    // A message sent now is young, and kept.
    let young = app.send_ok(&json!({"to": "+15550000004", "body": "young"}))[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.wait_final(young)["body"], "young");
}
