//! Inbound texts end to end: texts received by the loopback device (injected through the
//! API, or echoed), inbound rules, inboxes kept apart between users, conversations, the
//! cursor API under concurrent arrivals, opt-out, automatic replies, and webhooks and status
//! callbacks received by a real HTTP server (Python's http.server, which checks the
//! signatures with Python's hmac module).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

const USERS: &[(&str, &str)] = &[("alice", "user"), ("bob", "user"), ("root", "admin")];

fn app(extra: &str) -> App {
    spawn_app_with(Opts {
        extra,
        users: USERS,
        ..Opts::default()
    })
}

/// Makes the loopback device receive a text (as root, an admin).
pub fn inject(app: &App, from: &str, to: &str, body: &str) {
    let r = app.req_as(
        app.key_of("root"),
        "POST",
        "/api/v1/devices/loopback/inbound",
        Some(&json!({"from": from, "to": to, "body": body}).to_string()),
        &[],
    );
    assert_eq!(r.status, 202, "inject: {}", r.text());
}

/// Every inbound text `user` may see, through the cursor API.
fn inbox(app: &App, user: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app.req_as(
            app.key_of(user),
            "GET",
            &format!("/api/v1/inbound?limit=2&cursor={cursor}"),
            None,
            &[],
        );
        assert_eq!(r.status, 200, "inbound list: {}", r.text());
        let v = r.json();
        let page = v["messages"].as_array().unwrap().clone();
        cursor = v["next_cursor"].as_str().unwrap().to_string();
        if page.is_empty() {
            assert_eq!(v["has_more"], false);
            return out;
        }
        out.extend(page);
    }
}

fn bodies(texts: &[Value]) -> Vec<&str> {
    texts.iter().map(|t| t["body"].as_str().unwrap()).collect()
}

pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rules_put_texts_in_the_right_inboxes_and_nowhere_else() {
    let app = app(r#"
[[inbound_rule]]
keyword = "help"
users = ["alice"]

[[inbound_rule]]
to = "+15550001111"
users = ["bob"]

[[inbound_rule]]
from = "+4477*"
users = ["alice", "bob"]
"#);
    inject(
        &app,
        "+15557650001",
        "+15550009999",
        "Help, my card is blocked",
    );
    inject(&app, "+15557650002", "+1 (555) 000-1111", "sales question");
    inject(&app, "447700900123", "+15550009999", "hello from London");
    inject(&app, "+15557650003", "+15550009999", "nobody's");

    assert_eq!(
        bodies(&inbox(&app, "alice")),
        vec!["Help, my card is blocked", "hello from London"]
    );
    assert_eq!(
        bodies(&inbox(&app, "bob")),
        vec!["sales question", "hello from London"]
    );
    let all = inbox(&app, "root");
    assert_eq!(all.len(), 4, "an admin sees every text");
    let london = &all[2];
    assert_eq!(london["from"], "+447700900123", "numbers are E.164");
    assert_eq!(london["device"], "loopback");
    assert!(london["received_at"].as_str().unwrap().ends_with('Z'));

    // The unmatched text went to the catch-all (the admins), and to no user.
    let lost = &all[3];
    let id = lost["id"].as_i64().unwrap();
    let r = app.req_as(
        app.key_of("root"),
        "GET",
        &format!("/api/v1/inbound/{id}"),
        None,
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["users"], json!(["root"]));
    // One user never sees another's text, through any endpoint.
    let help = inbox(&app, "alice")[0]["id"].as_i64().unwrap();
    app.req_as(
        app.key_of("bob"),
        "GET",
        &format!("/api/v1/inbound/{help}"),
        None,
        &[],
    )
    .assert_error(404, "not_found");
    app.req_as(
        app.key_of("alice"),
        "GET",
        &format!("/api/v1/inbound/{id}"),
        None,
        &[],
    )
    .assert_error(404, "not_found");
    let r = app.req_as(
        app.key_of("alice"),
        "GET",
        &format!("/api/v1/inbound/{help}"),
        None,
        &[],
    );
    assert_eq!(r.json()["body"], "Help, my card is blocked");
    assert!(
        r.json().get("users").is_none(),
        "only admins see who else has it"
    );
    // Only admins inject texts.
    app.req_as(
        app.key_of("alice"),
        "POST",
        "/api/v1/devices/loopback/inbound",
        Some(r#"{"from":"+15550000001","body":"x"}"#),
        &[],
    )
    .assert_error(403, "forbidden");
    app.get("/api/v1/inbound?cursor=abc")
        .assert_error(400, "invalid_cursor");
}

#[test]
fn a_reply_reaches_whoever_wrote_to_that_number() {
    let app = app("[inbound]\ncatch_all = [\"root\"]\n");
    let sent = app.req_as(
        app.key_of("bob"),
        "POST",
        "/api/v1/messages",
        Some(r#"{"to": "+15557654321", "body": "Your order shipped"}"#),
        &[],
    );
    assert_eq!(sent.status, 202);
    inject(&app, "+15557654321", "", "Thanks! When does it arrive?");
    assert_eq!(
        bodies(&inbox(&app, "bob")),
        vec!["Thanks! When does it arrive?"]
    );
    assert!(inbox(&app, "alice").is_empty());
    // A number nobody wrote to goes to the catch-all only.
    inject(&app, "+15550000042", "", "who is this?");
    assert!(inbox(&app, "bob").len() == 1);
    assert_eq!(inbox(&app, "root").len(), 2);
}

#[test]
fn the_cursor_gives_every_text_once_while_texts_keep_arriving() {
    cursor_under_concurrent_arrivals(Db::Sqlite);
}

#[test]
fn the_cursor_gives_every_text_once_on_postgres() {
    cursor_under_concurrent_arrivals(Db::Postgres);
}

fn cursor_under_concurrent_arrivals(db: Db) {
    let app = Arc::new(spawn_app_with(Opts {
        extra: "",
        users: USERS,
        db,
    }));
    const WRITERS: usize = 4;
    const EACH: usize = 60;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let app = app.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    inject(&app, &format!("+1555010{w:04}"), "", &format!("w{w} t{i}"));
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < WRITERS * EACH {
        assert!(Instant::now() < deadline, "only {} texts seen", seen.len());
        let r = app.req_as(
            app.key_of("root"),
            "GET",
            &format!("/api/v1/inbound?limit=7&cursor={cursor}"),
            None,
            &[],
        );
        let v = r.json();
        cursor = v["next_cursor"].as_str().unwrap().to_string();
        for t in v["messages"].as_array().unwrap() {
            seen.push(t["body"].as_str().unwrap().to_string());
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a text was returned twice");
    assert_eq!(seen.len(), WRITERS * EACH);
    // Nothing more after the end.
    let v = app.get(&format!("/api/v1/inbound?cursor={cursor}")).json();
    assert_eq!(v["messages"], json!([]));
    assert_eq!(v["next_cursor"].as_str().unwrap(), cursor);
    // Each writer's texts came in its own order.
    for w in 0..WRITERS {
        let mine: Vec<_> = seen
            .iter()
            .filter(|b| b.starts_with(&format!("w{w} ")))
            .collect();
        let want: Vec<_> = (0..EACH).map(|i| format!("w{w} t{i}")).collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>());
    }
}

#[test]
fn stop_suppresses_the_number_until_start() {
    let app = app("");
    let number = "+15557770001";
    inject(&app, number, "", "STOP");
    // The confirmation goes out although the number is now suppressed.
    let root = app.key_of("root");
    let confirmation = wait_for("the opt-out confirmation", || {
        let r = app.req_as(root, "GET", "/api/v1/messages?limit=10", None, &[]);
        r.json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["to"] == number && m["status"] == "delivered")
            .cloned()
    });
    assert!(confirmation["body"].as_str().unwrap().contains("START"));
    let list = app
        .req_as(root, "GET", "/api/v1/suppressions", None, &[])
        .json();
    assert_eq!(list["suppressions"][0]["number"], number);
    assert_eq!(list["suppressions"][0]["source"], "keyword");

    let id = app.send_ok(&json!({"to": number, "body": "Sale today"}))[0]["id"]
        .as_i64()
        .unwrap();
    let m = app.wait_final(id);
    assert_eq!(m["status"], "failed");
    assert_eq!(m["error_code"], "OPTED_OUT");
    assert!(m["error"].as_str().unwrap().contains("opted out"), "{m}");

    inject(&app, number, "", "start");
    let list = app
        .req_as(root, "GET", "/api/v1/suppressions", None, &[])
        .json();
    assert_eq!(list["suppressions"], json!([]));
    let id = app.send_ok(&json!({"to": number, "body": "Welcome back"}))[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.wait_final(id)["status"], "delivered");

    // Admins edit the list; users may not.
    app.req("GET", "/api/v1/suppressions", None)
        .assert_error(403, "forbidden");
    let add = |body: &str| app.req_as(root, "POST", "/api/v1/suppressions", Some(body), &[]);
    assert_eq!(
        add(r#"{"number": "(555) 777-0002", "note": "asked by phone"}"#).status,
        201
    );
    assert_eq!(add(r#"{"number": "+15557770002"}"#).status, 200);
    add(r#"{"number": "12"}"#).assert_error(422, "invalid_number");
    let id = app.send_ok(&json!({"to": "+15557770002", "body": "x"}))[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.wait_final(id)["error_code"], "OPTED_OUT");
    let del = app.req_as(
        root,
        "DELETE",
        "/api/v1/suppressions/+15557770002",
        None,
        &[],
    );
    assert_eq!(del.status, 204);
    app.req_as(
        root,
        "DELETE",
        "/api/v1/suppressions/+15557770002",
        None,
        &[],
    )
    .assert_error(404, "not_found");
}

#[test]
fn automatic_replies_and_the_echoing_loopback() {
    let app = app(r#"
[[inbound_rule]]
keyword = "HOURS"
users = ["alice"]
reply = "We are open 9-5, Monday to Friday."

[[device]]
name = "loopback"
kind = "loopback"
echo = true
number = "+15550000100"
"#);
    inject(&app, "+15557770010", "+15550000100", "hours?");
    let reply = wait_for("the automatic reply", || {
        let all = app.all_messages(app.key_of("alice"));
        all.into_values().find(|m| m["to"] == "+15557770010")
    });
    assert_eq!(reply["body"], "We are open 9-5, Monday to Friday.");
    assert_eq!(reply["from"], "+15550000100");
    // The echo of that reply came back in: at most one reply per interval, so no loop.
    let echoes = wait_for("the echo", || {
        let t = inbox(&app, "root");
        (t.len() >= 2).then_some(t)
    });
    assert_eq!(
        echoes[1]["body"],
        "Echo: We are open 9-5, Monday to Friday."
    );
    // A second reply would have been stored with the echo, in the same transaction: there
    // is none.
    let replies = app
        .all_messages(app.key_of("alice"))
        .into_values()
        .filter(|m| m["to"] == "+15557770010")
        .count();
    assert_eq!(replies, 1);

    // A user's own message is echoed into their inbox as the conversation's answer.
    let id = app.send_ok(&json!({"to": "+15557770011", "body": "ping"}))[0]["id"]
        .as_i64()
        .unwrap();
    app.wait_final(id);
    let mine = wait_for("the echo in alice's inbox", || {
        let t = inbox(&app, "alice");
        t.iter().any(|t| t["body"] == "Echo: ping").then_some(t)
    });
    assert_eq!(mine.last().unwrap()["from"], "+15557770011");
}

/// A webhook receiver: Python's http.server (`tests/peers/webhook/receiver.py`).
pub struct Receiver {
    child: Child,
    pub port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    pub fn start(port: u16, secret: &str, fail: u32) -> Receiver {
        Receiver::start_with(port, secret, fail, &[])
    }

    /// With more of receiver.py's options (`--delay SECONDS`, `--endless`).
    pub fn start_with(port: u16, secret: &str, fail: u32, more: &[&str]) -> Receiver {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/peers/webhook/receiver.py"
        );
        let mut child = Command::new("python3")
            .args([
                script,
                "--port",
                &port.to_string(),
                "--secret",
                secret,
                "--fail",
                &fail.to_string(),
            ])
            .args(more)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the webhook receiver");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let port = first
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the receiver said {first:?}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Receiver { child, port, lines }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until `n` requests have come.
    pub fn wait(&self, n: usize) -> Vec<Value> {
        wait_for(&format!("{n} webhook requests"), || {
            let r = self.requests();
            (r.len() >= n).then_some(r)
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn inbound_webhooks_are_signed_and_retried_until_they_succeed() {
    let rx = Receiver::start(0, "rule-secret", 3);
    let app = app(&format!(
        r#"webhook_secret = "server-secret"

[webhooks]
backoff = "100ms"
backoff_max = "200ms"

[[inbound_rule]]
keyword = "JOIN"
webhook = "{}"
webhook_secret = "rule-secret"
"#,
        rx.url("/sms")
    ));
    inject(&app, "+15557770020", "", "join the list");
    let reqs = rx.wait(4);
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r["path"], "/sms");
        assert_eq!(r["event"], "message.inbound");
        assert_eq!(r["sig_ok"], true, "request {i}: {r}");
        assert_eq!(r["sig_v2_ok"], true, "request {i}: {r}");
        assert_eq!(r["answered"], if i < 3 { 500 } else { 200 });
        assert_eq!(r["delivery"], reqs[0]["delivery"], "one delivery, retried");
    }
    let data = &reqs[3]["body"]["data"];
    assert_eq!(reqs[3]["body"]["event"], "message.inbound");
    assert_eq!(data["from"], "+15557770020");
    assert_eq!(data["body"], "join the list");
    let id = reqs[3]["delivery"].as_str().unwrap();
    let d = wait_for("the delivery to be recorded", || {
        let d = app
            .req_as(
                app.key_of("root"),
                "GET",
                &format!("/api/v1/webhooks/deliveries/{id}"),
                None,
                &[],
            )
            .json();
        (d["state"] == "delivered").then_some(d)
    });
    assert_eq!(d["attempts"], 4);
    assert_eq!(d["last_code"], 200);
    let codes: Vec<_> = d["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["code"].clone())
        .collect();
    assert_eq!(codes, vec![json!(500), json!(500), json!(500), json!(200)]);
    // A text no rule sends to the webhook is not posted: no delivery is queued with it (a
    // delivery is queued in the transaction that stores its text, so this is final).
    inject(&app, "+15557770020", "", "hello");
    let all = app
        .req_as(
            app.key_of("root"),
            "GET",
            "/api/v1/webhooks/deliveries",
            None,
            &[],
        )
        .json();
    assert_eq!(all["deliveries"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(rx.requests().len(), 4);
    // Users do not see rule deliveries.
    let mine = app.get("/api/v1/webhooks/deliveries").json();
    assert_eq!(mine["deliveries"], json!([]));
}

#[test]
fn status_callbacks_are_signed_with_the_key_secret() {
    // The receiver is on this machine: an internal address that must be allowed.
    let app = app("webhook_secret = \"server-secret\"\ncallback_allow = [\"127.0.0.1\"]\n");
    // A key of alice's with its own webhook secret.
    let o = cli(
        &[
            "apikey",
            "create",
            "--user",
            "alice",
            "--webhook-secret",
            "--config",
            app.config.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    let (key, secret) = (lines[0], lines[1]);
    assert!(secret.starts_with("whsec_") && key.starts_with("tg_"));
    // The receiver checks the signatures with the key's secret, not the server's.
    let rx = Receiver::start(0, secret, 0);
    let r = app.req_as(
        key,
        "POST",
        "/api/v1/messages",
        Some(
            &json!({"to": "+15557770030", "body": "with callback", "callback_url": rx.url("/cb")})
                .to_string(),
        ),
        &[],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["messages"][0]["id"].as_i64().unwrap();
    // Stored claimed, sent and delivered at once: still a 'sent' event, then 'delivered'.
    let reqs = rx.wait(2);
    let mut statuses: Vec<_> = reqs
        .iter()
        .map(|r| r["body"]["data"]["status"].as_str().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, vec!["delivered", "sent"]);
    for r in &reqs {
        assert_eq!(r["sig_ok"], true, "{r}");
        assert_eq!(r["sig_v2_ok"], true, "{r}");
        assert_eq!(r["event"], "message.status");
        assert_eq!(r["path"], "/cb");
        assert_eq!(r["body"]["data"]["id"], id);
        assert_eq!(r["body"]["data"]["to"], "+15557770030");
    }
    // A message without a callback_url causes none: once it is delivered (its status
    // changes queue their callbacks in the same transaction), none is queued.
    let quiet = app.send_ok(&json!({"to": "+15557770031", "body": "quiet"}))[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.wait_final(quiet)["status"], "delivered");
    let queued = app
        .req_as(key, "GET", "/api/v1/webhooks/deliveries", None, &[])
        .json();
    assert!(
        queued["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["message_id"] == id),
        "{queued}"
    );
    // Alice sees her callbacks' deliveries; bob does not.
    let mine = wait_for("recorded deliveries", || {
        let v = app
            .get("/api/v1/webhooks/deliveries?state=delivered")
            .json();
        let n = v["deliveries"].as_array().unwrap().len();
        (n == 2).then_some(v)
    });
    assert_eq!(mine["deliveries"][0]["message_id"], id);
    let bobs = app
        .req_as(
            app.key_of("bob"),
            "GET",
            "/api/v1/webhooks/deliveries",
            None,
            &[],
        )
        .json();
    assert_eq!(bobs["deliveries"], json!([]));
}

#[test]
fn dead_letters_are_listed_and_replayed() {
    // Nothing listens on this port yet.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = app(&format!(
        r#"[webhooks]
backoff = "100ms"
backoff_max = "100ms"
retry_for = "1s"
timeout = "500ms"

[[inbound_rule]]
webhook = "http://127.0.0.1:{port}/hook"
"#
    ));
    inject(&app, "+15557770040", "", "lost for now");
    let root = app.key_of("root");
    let dead = wait_for("a dead letter", || {
        let v = app
            .req_as(
                root,
                "GET",
                "/api/v1/webhooks/deliveries?state=dead",
                None,
                &[],
            )
            .json();
        v["deliveries"].as_array().unwrap().first().cloned()
    });
    assert!(dead["attempts"].as_i64().unwrap() >= 2, "{dead}");
    assert!(
        dead["last_error"].as_str().unwrap().contains("failed"),
        "{dead}"
    );
    // The text itself is stored and listed whatever became of its webhook.
    assert_eq!(inbox(&app, "root").len(), 1);

    let rx = Receiver::start(port, "", 0);
    let id = dead["id"].as_i64().unwrap();
    let r = app.req_as(
        root,
        "POST",
        &format!("/api/v1/webhooks/deliveries/{id}/replay"),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "pending");
    let got = rx.wait(1);
    assert_eq!(got[0]["body"]["data"]["body"], "lost for now");
    wait_for("the replay to be recorded", || {
        let d = app
            .req_as(
                root,
                "GET",
                &format!("/api/v1/webhooks/deliveries/{id}"),
                None,
                &[],
            )
            .json();
        (d["state"] == "delivered").then_some(())
    });
    app.req_as(
        root,
        "POST",
        &format!("/api/v1/webhooks/deliveries/{id}/replay"),
        None,
        &[],
    )
    .assert_error(409, "not_dead");
    app.req_as(
        app.key_of("bob"),
        "POST",
        &format!("/api/v1/webhooks/deliveries/{id}/replay"),
        None,
        &[],
    )
    .assert_error(404, "not_found");
}
