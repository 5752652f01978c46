//! The mailer end to end: texts forwarded to e-mail through a real SMTP relay (aiosmtpd,
//! `tests/peers/smtp/sink.py`), retried while the relay is down; answers to texts that came
//! from e-mail going back to the e-mail's sender; replies to a forward texting the number
//! back through the SMTP listener (Python's smtplib); failure notices.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::inbound::{inject, wait_for};
use crate::smtp::{plain, smtp};

/// aiosmtpd relaying into a list of what it took.
struct Relay {
    child: Child,
    mails: Arc<Mutex<Vec<Value>>>,
}

impl Relay {
    fn start(port: u16) -> Relay {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/peers/smtp/sink.py"
        );
        let mut child = Command::new("python3")
            .args([script, "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the relay (pip install aiosmtpd)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert!(
            first.starts_with("listening"),
            "the relay said {first:?} (is aiosmtpd installed?)"
        );
        let mails = Arc::new(Mutex::new(Vec::new()));
        let sink = mails.clone();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Relay { child, mails }
    }

    fn wait(&self, n: usize) -> Vec<Value> {
        wait_for(&format!("{n} e-mails at the relay"), || {
            let m = self.mails.lock().unwrap().clone();
            (m.len() >= n).then_some(m)
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn app(relay_port: u16, extra: &str) -> App {
    spawn_app_with(Opts {
        extra: &format!(
            r#"[mailer]
relay = "smtp://127.0.0.1:{relay_port}"
from = "sms@example.com"
backoff = "200ms"
backoff_max = "400ms"

[smtp]
listen = "127.0.0.1:0"
domains = ["sms.example.com"]
allowed_senders = ["*@example.com"]
user = "alice"
{extra}"#
        ),
        users: &[("alice", "user"), ("root", "admin")],
        ..Opts::default()
    })
}

#[test]
fn forwards_wait_for_a_relay_that_is_down_and_lose_nothing() {
    let port = free_port();
    let app = app(port, "\n[[inbound_rule]]\nkeyword = \"support\"\nemail = [\"help@example.com\", \"desk@example.com\"]\n");
    inject(
        &app,
        "+15557654321",
        "+15550001111",
        "Support: my card was swallowed",
    );
    let root = app.key_of("root");
    // The relay is down: attempts fail and are retried.
    let d = wait_for("failed attempts", || {
        let v = app
            .req_as(
                root,
                "GET",
                "/api/v1/webhooks/deliveries?state=pending",
                None,
                &[],
            )
            .json();
        v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["channel"] == "email" && d["attempts"].as_i64().unwrap_or(0) >= 2)
            .cloned()
    });
    assert!(d["last_error"].as_str().unwrap().contains("relay"), "{d}");

    let relay = Relay::start(port);
    let mail = relay.wait(1)[0].clone();
    assert_eq!(mail["mail_from"], "sms@example.com");
    assert_eq!(
        mail["rcpt_tos"],
        json!(["help@example.com", "desk@example.com"])
    );
    assert!(
        mail["from"]
            .as_str()
            .unwrap()
            .contains("15557654321@sms.example.com"),
        "{mail}"
    );
    assert!(
        mail["subject"]
            .as_str()
            .unwrap()
            .starts_with("SMS from +15557654321"),
        "{mail}"
    );
    assert!(
        mail["body"]
            .as_str()
            .unwrap()
            .starts_with("Support: my card was swallowed"),
        "{mail}"
    );
    let id = d["id"].as_i64().unwrap();
    let d = wait_for("the delivery recorded", || {
        let d = app
            .req_as(
                root,
                "GET",
                &format!("/api/v1/webhooks/deliveries/{id}"),
                None,
                &[],
            )
            .json();
        (d["state"] == "delivered").then_some(d)
    });
    // Each attempt is recorded: the failures while the relay was down, then the relay's 250.
    let log = d["attempt_log"].as_array().unwrap();
    assert!(log.len() >= 3, "{d}");
    assert!(
        log[..log.len() - 1]
            .iter()
            .all(|a| a["error"].as_str().is_some_and(|e| e.contains("relay"))),
        "{d}"
    );
    assert_eq!(log.last().unwrap()["code"], 250);
    assert_eq!(relay.mails.lock().unwrap().len(), 1, "sent once");
}

#[test]
fn replies_go_both_ways_and_failures_are_reported() {
    let port = free_port();
    let relay = Relay::start(port);
    let app = app(port, "");
    // bob writes an e-mail to a number: a text goes out, owned by alice ([smtp] user).
    let r = smtp(
        &app,
        plain(
            "bob@example.com",
            &["15557650001@sms.example.com"],
            "hi",
            "Is the meeting at 3?",
        ),
    );
    assert_eq!(r["data"][0], 250, "{r}");
    // The phone answers: the answer is e-mailed to bob, from the number's address.
    inject(&app, "+15557650001", "", "Yes, at 3");
    let mail = relay.wait(1)[0].clone();
    assert_eq!(mail["rcpt_tos"], json!(["bob@example.com"]));
    assert!(
        mail["from"]
            .as_str()
            .unwrap()
            .contains("15557650001@sms.example.com"),
        "{mail}"
    );
    assert!(mail["body"].as_str().unwrap().starts_with("Yes, at 3"));
    // bob replies to that e-mail: its text goes back to the number, without the quote.
    let reply = format!(
        "Thanks!\n\nOn Fri, +15557650001 wrote:\n> {}\n",
        "Yes, at 3"
    );
    let r = smtp(
        &app,
        plain(
            "bob@example.com",
            &["15557650001@sms.example.com"],
            "Re: SMS",
            &reply,
        ),
    );
    assert_eq!(r["data"][0], 250, "{r}");
    let texts = wait_for("bob's reply as a text", || {
        let all = app.all_messages(app.key_of("alice"));
        let mut v: Vec<Value> = all
            .into_values()
            .filter(|m| m["to"] == "+15557650001")
            .collect();
        v.sort_by_key(|m| m["id"].as_i64());
        (v.len() == 2).then_some(v)
    });
    assert_eq!(texts[1]["body"], "Thanks!");

    // A text from e-mail that fails: bob hears why.
    let root = app.key_of("root");
    let add = app.req_as(
        root,
        "POST",
        "/api/v1/suppressions",
        Some(r#"{"number": "+15557650002"}"#),
        &[],
    );
    assert_eq!(add.status, 201);
    let r = smtp(
        &app,
        plain(
            "bob@example.com",
            &["15557650002@sms.example.com"],
            "x",
            "Are you there?",
        ),
    );
    assert_eq!(r["data"][0], 250);
    let notice = relay.wait(2)[1].clone();
    assert_eq!(notice["rcpt_tos"], json!(["bob@example.com"]));
    assert!(
        notice["subject"].as_str().unwrap().contains("+15557650002"),
        "{notice}"
    );
    let body = notice["body"].as_str().unwrap();
    assert!(
        body.contains("opted out") && body.contains("> Are you there?"),
        "{body}"
    );
}
