//! The e-mail gateway (docs/email.md) through the real binary, with a client we did not write:
//! Python's `smtplib` and `email` packages (`tests/peers/smtp/client.py`), plus raw bytes on
//! a socket for garbage. Texts are then looked up with `GET /api/v1/messages` as their owner.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

const SMTP: &str = "[smtp]\nlisten = \"127.0.0.1:0\"\ndomains = [\"sms.example.com\"]\naddresses = [\"textmsg@example.com\"]\nallowed_senders = [\"*@example.com\"]\nmax_message_bytes = \"64KiB\"\nmax_recipients = 5\n";

fn client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/smtp/client.py")
}

/// Runs one smtplib session described by `req` (see client.py) against the app.
pub fn smtp(app: &App, req: Value) -> Value {
    let v = smtp_session(app, req);
    assert!(
        v.get("error").is_none(),
        "the SMTP client failed: {v}; log:\n{}",
        app.log_text()
    );
    v
}

/// The same, for a session the server may end (the client then reports an `error`).
fn smtp_session(app: &App, mut req: Value) -> Value {
    assert!(!app.smtp.is_empty(), "the app has no SMTP listener");
    let (host, port) = app.smtp.rsplit_once(':').unwrap();
    req["host"] = json!(host);
    req["port"] = json!(port.parse::<u16>().unwrap());
    let mut child = Command::new("python3")
        .arg(client_script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "client.py printed no JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v
}

/// A plain message from `from` to `to` with this text.
pub fn plain(from: &str, to: &[&str], subject: &str, text: &str) -> Value {
    json!({"from": from, "to": to, "message": {"kind": "plain", "subject": subject, "text": text}})
}

fn code(v: &Value, step: &str) -> i64 {
    v[step][0]
        .as_i64()
        .unwrap_or_else(|| panic!("no {step} step: {v}"))
}

fn text(v: &Value, step: &str) -> String {
    v[step][1].as_str().unwrap_or_default().to_string()
}

/// `textgate user add NAME --email EMAIL` with a password, and an API key for them.
fn add_user(app: &App, name: &str, email: Option<&str>, password: &str) -> String {
    let cfg = app.config.to_str().unwrap();
    let mut args = vec!["user", "add", name, "--password-stdin", "--config", cfg];
    if let Some(e) = email {
        args.extend(["--email", e]);
    }
    let o = cli(&args, Some(&format!("{password}\n")));
    assert!(o.status.success(), "user add: {}{}", stdout(&o), stderr(&o));
    let o = cli(&["apikey", "create", "--user", name, "--config", cfg], None);
    assert!(o.status.success(), "apikey: {}", stderr(&o));
    stdout(&o).trim().lines().last().unwrap().trim().to_string()
}

/// The user's messages by number (each test sends each number one text).
fn texts_by_number(app: &App, key: &str) -> HashMap<String, Value> {
    app.all_messages(key)
        .into_values()
        .map(|m| (m["to"].as_str().unwrap().to_string(), m))
        .collect()
}

#[test]
fn domain_and_address_mode_texts_belong_to_the_sender() {
    let app = spawn_app(SMTP);
    let carol = add_user(&app, "carol", Some("Carol@Example.com"), "carol-password");
    // Domain mode: one text per recipient, with and without '+', national with the
    // default country; a duplicate is one text.
    let v = smtp(
        &app,
        plain(
            "carol@example.com",
            &[
                "+15551230001@sms.example.com",
                "15551230002@SMS.example.com",
                "5551230003@sms.example.com",
                "15551230002@sms.example.com",
            ],
            "ignored in domain mode",
            "Server db1 is down",
        ),
    );
    assert_eq!(code(&v, "mail"), 250, "{v}");
    assert_eq!(code(&v, "data"), 250, "{v}");
    assert!(text(&v, "data").contains("3 texts stored"), "{v}");
    // Address mode: numbers from the Subject.
    let v = smtp(
        &app,
        plain(
            "carol@example.com",
            &["textmsg@example.com"],
            "+15551230004, +44 7700 900123; 15551230005",
            "Meeting moved to 3pm",
        ),
    );
    assert_eq!(code(&v, "data"), 250, "{v}");
    let mine = texts_by_number(&app, &carol);
    let body = |n: &str| {
        mine.get(n)
            .unwrap_or_else(|| panic!("no text to {n}: {mine:?}"))["body"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(mine.len(), 6, "{mine:?}");
    for n in ["+15551230001", "+15551230002", "+15551230003"] {
        assert_eq!(body(n), "Server db1 is down");
    }
    for n in ["+15551230004", "+447700900123", "+15551230005"] {
        assert_eq!(body(n), "Meeting moved to 3pm");
    }
    // Stored means on its way: the loopback device delivers them.
    let id = mine["+15551230001"]["id"].as_i64().unwrap();
    let final_ = (0..400)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(25));
            app.req_as(&carol, "GET", &format!("/api/v1/messages/{id}"), None, &[])
                .json()
        })
        .find(|m| is_final(m["status"].as_str().unwrap_or("")))
        .expect("the text reaches a final status");
    assert_eq!(final_["status"], "delivered");
    // The other user sees none of carol's texts.
    assert!(app.all_messages(&app.key).is_empty());
    let metrics = app.get("/metrics").text();
    for line in [
        "textgate_emails_accepted_total 2",
        "textgate_email_texts_total 6",
        "textgate_smtp_auth_failures_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}

#[test]
fn mime_shapes_charsets_attachments_signatures_and_quotes() {
    let app = spawn_app(SMTP);
    let dave = add_user(&app, "dave", Some("dave@example.com"), "dave-password");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "+15552000001",
            json!({"kind": "alternative", "text": "Plain wins", "html": "<p>HTML <b>loses</b></p>"}),
            "Plain wins",
        ),
        (
            "+15552000002",
            json!({"kind": "html", "html": "<html><head><style>p{color:red}</style></head><body><div>Disk&nbsp;full on <b>db1</b> &amp; db2</div><div>Call ops</div><blockquote>old thread</blockquote></body></html>"}),
            "Disk full on db1 & db2\nCall ops",
        ),
        (
            "+15552000003",
            json!({"kind": "plain", "charset": "iso-8859-1", "subject": "Café", "text": "Réunion à 10h, café offert"}),
            "Réunion à 10h, café offert",
        ),
        (
            "+15552000004",
            json!({"kind": "plain", "charset": "shift_jis", "text": "会議は10時です"}),
            "会議は10時です",
        ),
        (
            "+15552000005",
            json!({"kind": "plain", "charset": "windows-1252", "text": "“Quoted” price: 5€"}),
            "“Quoted” price: 5€",
        ),
        (
            "+15552000006",
            json!({"kind": "attachments", "text": "Report attached"}),
            "Report attached",
        ),
        (
            "+15552000007",
            json!({"kind": "plain", "text": "Yes,   on my way.\n\nOn Tue, 2 Jan 2024 at 09:00, Ops <ops@example.com> wrote:\n> Can you come in?\n> Thanks\n\n-- \nDave Smith\nACME Corp | +1 555 0100\n"}),
            "Yes, on my way.",
        ),
    ];
    for (number, mut message, _) in cases.clone() {
        if message.get("subject").is_none() {
            message["subject"] = json!("test");
        }
        let v = smtp(
            &app,
            json!({"from": "dave@example.com", "to": [format!("{number}@sms.example.com")], "message": message}),
        );
        assert_eq!(code(&v, "data"), 250, "{number}: {v}");
    }
    let mine = texts_by_number(&app, &dave);
    for (number, _, want) in cases {
        assert_eq!(
            mine.get(number).map(|m| m["body"].as_str().unwrap()),
            Some(want),
            "{number}"
        );
    }
    assert_eq!(mine["+15552000004"]["encoding"], "ucs2");
    assert_eq!(mine["+15552000001"]["encoding"], "gsm7");
}

#[test]
fn refusals_say_why_with_the_contract_codes() {
    let app = spawn_app(&format!("max_parts = 2\n{SMTP}"));
    let erin = add_user(&app, "erin", Some("erin@example.com"), "erin-password");
    // A sender neither allowed nor authenticated: 550 5.7.1 at MAIL FROM.
    let v = smtp(
        &app,
        plain("eve@evil.org", &["15553000001@sms.example.com"], "s", "hi"),
    );
    assert_eq!(code(&v, "mail"), 550, "{v}");
    assert!(text(&v, "mail").starts_with("5.7.1"), "{v}");
    // Allowed by pattern, but no user has the address, and no [smtp] user: 550 5.7.1.
    let v = smtp(
        &app,
        plain(
            "ghost@example.com",
            &["15553000001@sms.example.com"],
            "s",
            "hi",
        ),
    );
    assert_eq!(code(&v, "mail"), 550, "{v}");
    assert!(text(&v, "mail").contains("no textgate user"), "{v}");
    // Relaying (another domain, a subdomain), a bad number: refused at RCPT; the good
    // recipient in the same message still gets its text.
    let v = smtp(
        &app,
        plain(
            "erin@example.com",
            &[
                "someone@gmail.com",
                "15553000001@sub.sms.example.com",
                "not-a-number@sms.example.com",
                "15553000002@sms.example.com",
            ],
            "s",
            "only one of these",
        ),
    );
    let rcpt: Vec<(i64, String)> = v["rcpt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        rcpt.iter().map(|r| r.0).collect::<Vec<_>>(),
        [550, 550, 550, 250],
        "{v}"
    );
    assert!(rcpt[0].1.starts_with("5.7.1") && rcpt[0].1.contains("relaying denied"));
    assert!(rcpt[1].1.starts_with("5.7.1"));
    assert!(rcpt[2].1.starts_with("5.1.1"), "{v}");
    assert_eq!(code(&v, "data"), 250, "{v}");
    // A bad number in an address-mode Subject: 550 5.1.1 after DATA.
    let v = smtp(
        &app,
        plain(
            "erin@example.com",
            &["textmsg@example.com"],
            "+15553000003, call-me",
            "x",
        ),
    );
    assert_eq!(code(&v, "data"), 550, "{v}");
    assert!(text(&v, "data").starts_with("5.1.1"), "{v}");
    // Larger than max_message_bytes (64KiB): 552, announced with SIZE or not.
    let big = "x".repeat(70 * 1024);
    for size in [false, true] {
        let mut req = plain(
            "erin@example.com",
            &["15553000004@sms.example.com"],
            "s",
            &big,
        );
        req["size"] = json!(size);
        let v = smtp(&app, req);
        let step = if size { "mail" } else { "data" };
        assert_eq!(code(&v, step), 552, "{v}");
    }
    // Within SIZE, but more than max_parts (2) SMS parts: a clear 552.
    let v = smtp(
        &app,
        plain(
            "erin@example.com",
            &["15553000005@sms.example.com"],
            "s",
            &"word ".repeat(100),
        ),
    );
    assert_eq!(code(&v, "data"), 552, "{v}");
    assert!(text(&v, "data").contains("too long for SMS"), "{v}");
    // Only the one good recipient got a text.
    let mine = texts_by_number(&app, &erin);
    assert_eq!(
        mine.keys().collect::<Vec<_>>(),
        ["+15553000002"],
        "{mine:?}"
    );
    // The listener is still up.
    let v = smtp(
        &app,
        plain(
            "erin@example.com",
            &["15553000006@sms.example.com"],
            "s",
            "still here",
        ),
    );
    assert_eq!(code(&v, "data"), 250, "{v}");
}

#[test]
fn allowed_senders_without_a_user_go_to_the_default_owner_as_its_sender_and_long_texts_can_be_cut()
{
    let app = spawn_app_with(Opts {
        extra: &format!("max_parts = 1\n{SMTP}user = \"batch\"\ntruncate = true\n"),
        users: &[("batch", "user"), ("alice", "user"), ("root", "admin")],
        ..Opts::default()
    });
    // Mail names no sender: texts go out as the owner's first sender.
    let users = app
        .req_as(app.key_of("root"), "GET", "/api/v1/users", None, &[])
        .json();
    let batch_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "batch")
        .unwrap()["id"]
        .clone();
    let r = app.req_as(
        app.key_of("root"),
        "PATCH",
        &format!("/api/v1/users/{batch_id}"),
        Some(r#"{"senders": ["ACME", "BRANCH"]}"#),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = smtp(
        &app,
        plain(
            "nobody-in-particular@example.com",
            &["15554000001@sms.example.com"],
            "s",
            &"long text ".repeat(40),
        ),
    );
    assert_eq!(code(&v, "data"), 250, "{v}");
    let batch = texts_by_number(&app, app.key_of("batch"));
    let m = &batch["+15554000001"];
    assert_eq!(m["segments"], 1);
    assert_eq!(m["from"], "ACME");
    let body = m["body"].as_str().unwrap();
    assert!(
        body.len() <= 160 && body.starts_with("long text long"),
        "{body}"
    );
    assert!(app.all_messages(app.key_of("alice")).is_empty());
}

#[test]
fn starttls_then_auth_plain_with_a_password_and_login_with_an_api_key() {
    let certs = TempDir::new("smtp-tls");
    let (cert, key, ca) = test_certificate(certs.path());
    // No allowed_senders: only authenticated senders may send.
    let app = spawn_app(&format!(
        "[smtp]\nlisten = \"127.0.0.1:0\"\ndomains = [\"sms.example.com\"]\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n"
    ));
    let frank = add_user(&app, "frank", Some("frank@example.com"), "frank-password");
    let to = ["15555000001@sms.example.com"];
    // Unauthenticated: refused, and the client is told how to get in.
    let v = smtp(&app, plain("frank@example.com", &to, "s", "x"));
    assert_eq!(code(&v, "mail"), 550, "{v}");
    assert!(text(&v, "mail").starts_with("5.7.1"), "{v}");
    let features = v["features"].to_string();
    assert!(
        features.contains("starttls")
            && features.contains("pipelining")
            && features.contains("size")
            && features.contains("8bitmime"),
        "{features}"
    );
    // STARTTLS (the certificate checked against our CA), then AUTH PLAIN with a password;
    // authenticated, frank may not claim another sender (notices would go there).
    let mut req = plain("frank@anywhere.org", &to, "s", "over TLS with a password");
    req["tls"] = json!(true);
    req["cafile"] = json!(ca);
    req["auth"] = json!({"user": "frank", "password": "frank-password", "mech": "PLAIN"});
    let v = smtp(&app, req.clone());
    assert_eq!(code(&v, "auth"), 235, "{v}");
    assert_eq!(code(&v, "mail"), 550, "{v}");
    assert!(
        text(&v, "mail").starts_with("5.7.1") && text(&v, "mail").contains("frank@example.com"),
        "{v}"
    );
    req["from"] = json!("Frank@Example.com");
    let v = smtp(&app, req.clone());
    assert_eq!(code(&v, "tls"), 220, "{v}");
    assert!(v["features"].to_string().contains("auth"), "{v}");
    assert_eq!(code(&v, "auth"), 235, "{v}");
    assert_eq!(code(&v, "data"), 250, "{v}");
    // AUTH LOGIN (in two steps, no initial response) with an API key instead.
    req["to"] = json!(["15555000002@sms.example.com"]);
    req["message"]["text"] = json!("over TLS with an API key");
    req["auth"] = json!({"user": "frank", "password": frank, "mech": "LOGIN", "initial": false});
    let v = smtp(&app, req.clone());
    assert_eq!(code(&v, "auth"), 235, "{v}");
    assert_eq!(code(&v, "data"), 250, "{v}");
    // A wrong password: 535.
    req["auth"] = json!({"user": "frank", "password": "wrong-password", "mech": "PLAIN"});
    let v = smtp(&app, req);
    assert_eq!(code(&v, "auth"), 535, "{v}");
    assert!(text(&v, "auth").starts_with("5.7.8"), "{v}");
    let mine = texts_by_number(&app, &frank);
    assert_eq!(mine["+15555000001"]["body"], "over TLS with a password");
    assert_eq!(mine["+15555000002"]["body"], "over TLS with an API key");
    assert_eq!(mine.len(), 2);
    // `textgate check` reads the certificate too: a key that is no PEM is named.
    let bad = app.write_file("bad-key.pem", "not a key\n");
    let cfg = std::fs::read_to_string(&app.config)
        .unwrap()
        .replace(&key, bad.to_str().unwrap());
    let f = app.write_file("bad.toml", &cfg);
    let o = cli(&["check", "--config", f.to_str().unwrap()], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("smtp.tls_key"), "{}", stderr(&o));
    // Disabled, frank's password stops working too, though it was verified (and kept) a
    // moment ago: the node hears of it within its revocation check.
    let cfg = app.config.to_str().unwrap();
    let o = cli(&["user", "disable", "frank", "--config", cfg], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut req = plain("frank@example.com", &to, "s", "after being disabled");
    req["tls"] = json!(true);
    req["cafile"] = json!(ca);
    req["auth"] = json!({"user": "frank", "password": "frank-password", "mech": "PLAIN"});
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let v = smtp(&app, req.clone());
        if code(&v, "auth") == 535 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still accepted: {v}");
        std::thread::sleep(Duration::from_millis(1000));
    }
}

/// Reads what the server says until it closes or `quiet` passes without a byte.
fn read_replies(s: &mut TcpStream, quiet: Duration) -> String {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn garbage_and_floods_get_errors_and_the_listener_stays_up() {
    let app = spawn_app(SMTP);
    let gina = add_user(&app, "gina", Some("gina@example.com"), "gina-password");
    // Binary noise, an over-long line, a command flood: errors, then 421 and a close.
    let mut s = TcpStream::connect(&app.smtp).unwrap();
    let mut noise: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
    noise.extend_from_slice(b"\r\n");
    noise.extend(std::iter::repeat_n(b'Z', 20_000));
    noise.extend_from_slice(b"\r\n");
    for _ in 0..40 {
        noise.extend_from_slice(b"FOO BAR\r\n");
    }
    s.write_all(&noise).unwrap();
    let replies = read_replies(&mut s, Duration::from_secs(3));
    assert!(replies.starts_with("220 "), "{replies:?}");
    assert!(replies.contains("\r\n500 5.5."), "{replies:?}");
    assert!(replies.contains("421 4.7.0 Too many errors"), "{replies:?}");
    // DATA without a transaction, and a client that vanishes mid-message.
    let mut s = TcpStream::connect(&app.smtp).unwrap();
    s.write_all(b"EHLO x\r\nDATA\r\nMAIL FROM:<gina@example.com>\r\nRCPT TO:<15556000001@sms.example.com>\r\nDATA\r\nSubject: half\r\n\r\nhalf a mess")
        .unwrap();
    let replies = read_replies(&mut s, Duration::from_secs(3));
    assert!(replies.contains("503 5.5.1"), "{replies:?}");
    assert!(replies.contains("354 "), "{replies:?}");
    drop(s);
    // Many connections at once, opened and dropped.
    let conns: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(&app.smtp).unwrap())
        .collect();
    drop(conns);
    // A valid session still works, and nothing of the above was stored.
    let v = smtp(
        &app,
        plain(
            "gina@example.com",
            &["15556000002@sms.example.com"],
            "s",
            "after the noise",
        ),
    );
    assert_eq!(code(&v, "data"), 250, "{v}; log:\n{}", app.log_text());
    let all = texts_by_number(&app, app.key_of("alice"));
    assert!(all.is_empty());
    let mine = texts_by_number(&app, &gina);
    assert_eq!(
        mine.keys().collect::<Vec<_>>(),
        ["+15556000002"],
        "{mine:?}"
    );
}

#[test]
fn embedded_defaults_take_mail_for_sms_localhost_from_authenticated_senders() {
    // `serve` without a config file, in an empty directory; the environment moves both
    // listeners to free ports (the defaults are 8080 and 2525).
    let dir = TempDir::new("smtp-defaults");
    let mut child = command()
        .arg("serve")
        .current_dir(dir.path())
        .env("TEXTGATE_HTTP_LISTEN", "127.0.0.1:0")
        .env("TEXTGATE_SMTP_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let lines = BufReader::new(child.stdout.take().unwrap());
    let guard = Kill(child);
    let (mut smtp_addr, mut http_addr) = (String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in lines.lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("textgate smtp listening on ") {
            smtp_addr = a.trim().to_string();
        }
        if let Some(u) = line.strip_prefix("textgate listening on http://") {
            http_addr = u.trim().to_string();
            break;
        }
        assert!(Instant::now() < deadline, "serve did not start");
    }
    assert!(!smtp_addr.is_empty() && !http_addr.is_empty());
    let app_like = |req: Value| -> Value {
        let (host, port) = smtp_addr.rsplit_once(':').unwrap();
        let mut req = req;
        req["host"] = json!(host);
        req["port"] = json!(port.parse::<u16>().unwrap());
        let mut c = Command::new("python3")
            .arg(client_script())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(req.to_string().as_bytes())
            .unwrap();
        let out = c.wait_with_output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // On loopback AUTH is offered without TLS; the admin's password is from the environment.
    // The admin has no e-mail address, so the envelope sender is empty.
    let mut req = plain(
        "",
        &["+15557000001@sms.localhost"],
        "s",
        "from the defaults",
    );
    req["auth"] = json!({"user": "admin", "password": "admin-password-for-tests"});
    let v = app_like(req);
    assert_eq!(code(&v, "auth"), 235, "{v}");
    assert_eq!(code(&v, "data"), 250, "{v}");
    // Unauthenticated mail is refused: the defaults allow no sender by address.
    let v = app_like(plain(
        "admin@localhost",
        &["+15557000002@sms.localhost"],
        "s",
        "x",
    ));
    assert_eq!(code(&v, "mail"), 550, "{v}");
    // The text is the admin's, in the default database under the working directory.
    let o = command()
        .args(["apikey", "create", "--user", "admin"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let key = stdout(&o).trim().lines().last().unwrap().trim().to_string();
    let auth = format!("Bearer {key}");
    let r = http(
        &http_addr,
        "GET",
        "/api/v1/messages",
        &[("Authorization", &auth)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let msgs = r.json()["messages"].as_array().unwrap().clone();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["to"], "+15557000001");
    assert_eq!(msgs[0]["body"], "from the defaults");
    drop(guard);
}

/// Reads one SMTP reply (all its lines) from a raw socket.
fn reply(s: &mut BufReader<TcpStream>) -> String {
    let mut out = String::new();
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).unwrap_or(0) == 0 {
            return out;
        }
        out.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return out;
        }
    }
}

fn raw(app: &App) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(&app.smtp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let greeting = reply(&mut r);
    assert!(greeting.starts_with("220"), "{greeting}");
    (s, r)
}

#[test]
fn mail_without_auth_needs_a_trusted_network_and_never_speaks_for_an_administrator() {
    // Loopback is not among the trusted networks here: this client is "anyone".
    let app = spawn_app(&SMTP.replace(
        "[smtp]\n",
        "[smtp]\ntrusted_networks = [\"192.0.2.0/24\"]\n",
    ));
    let v = smtp(
        &app,
        plain(
            "bob@example.com",
            &["15555000001@sms.example.com"],
            "s",
            "x",
        ),
    );
    assert_eq!(code(&v, "mail"), 530, "{v}");
    assert!(
        text(&v, "mail").starts_with("5.7.0 Authentication required"),
        "{v}"
    );
    assert_eq!(app.count(), 0);

    // From a trusted network (the default, loopback), an administrator's address is still
    // refused without AUTH: anyone can write it in MAIL FROM.
    let app = spawn_app(SMTP);
    add_user(&app, "boss", Some("boss@example.com"), "boss-password");
    let o = cli(
        &[
            "user",
            "add",
            "root",
            "--role",
            "admin",
            "--email",
            "root@example.com",
            "--config",
            app.config.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = smtp(
        &app,
        plain(
            "root@example.com",
            &["15555000002@sms.example.com"],
            "s",
            "x",
        ),
    );
    assert_eq!(code(&v, "mail"), 550, "{v}");
    assert!(
        text(&v, "mail").contains("administrator") && text(&v, "mail").contains("AUTH"),
        "{v}"
    );
    // A plain user's address goes through as before.
    let v = smtp(
        &app,
        plain(
            "boss@example.com",
            &["15555000003@sms.example.com"],
            "s",
            "x",
        ),
    );
    assert_eq!(code(&v, "data"), 250, "{v}");
}

#[test]
fn failed_authentications_lock_the_name_out_across_connections() {
    let app = spawn_app(&format!(
        "{SMTP}\n[auth]\nmax_failures_per_user = 3\nlockout = \"10m\"\n"
    ));
    add_user(&app, "gina", Some("gina@example.com"), "gina-password");
    let mut req = plain(
        "gina@example.com",
        &["15555000001@sms.example.com"],
        "s",
        "x",
    );
    // Three wrong guesses, each on a connection of its own.
    for _ in 0..3 {
        req["auth"] = json!({"user": "gina", "password": "guess", "mech": "PLAIN"});
        let v = smtp(&app, req.clone());
        assert_eq!(code(&v, "auth"), 535, "{v}");
    }
    // Now even the right password is refused, without being checked, on a fresh connection.
    req["auth"] = json!({"user": "gina", "password": "gina-password", "mech": "PLAIN"});
    let v = smtp_session(&app, req.clone());
    assert_eq!(code(&v, "auth"), 421, "{v}");
    assert!(text(&v, "auth").contains("try again in 10 minute"), "{v}");
    // Another user is not locked out by gina's guesser.
    add_user(&app, "hal", Some("hal@example.com"), "hal-password");
    let mut other = plain(
        "hal@example.com",
        &["15555000002@sms.example.com"],
        "s",
        "y",
    );
    other["auth"] = json!({"user": "hal", "password": "hal-password", "mech": "PLAIN"});
    let v = smtp(&app, other);
    assert_eq!(code(&v, "data"), 250, "{v}");
    let m = http(&app.addr, "GET", "/metrics", &[], None)
        .unwrap()
        .text();
    assert!(m.contains("textgate_smtp_auth_failures_total 3"), "{m}");
}

#[test]
fn a_client_that_trickles_or_lingers_is_cut_off_and_one_address_has_few_connections() {
    let app = spawn_app(&SMTP.replace(
        "[smtp]\n",
        "[smtp]\ncommand_timeout = \"2s\"\nsession_timeout = \"4s\"\nmax_connections_per_client = 3\ntrusted_networks = []\n",
    ));
    // A command sent a byte every 300 ms: the line is not complete within 2 s of the reply
    // before it, whatever the bytes in between.
    let (mut s, mut r) = raw(&app);
    s.write_all(b"EHLO x\r\n").unwrap();
    assert!(reply(&mut r).starts_with("250"));
    let start = Instant::now();
    for b in b"MAIL FROM:<bob@example.com>".iter() {
        if s.write_all(&[*b]).is_err() || start.elapsed() > Duration::from_secs(6) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let end = reply(&mut r);
    assert!(end.starts_with("421 4.4.2"), "{end:?}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "cut after {:?}",
        start.elapsed()
    );

    // Busy, but for longer than the session may last: NOOP every 500 ms.
    let (mut s, mut r) = raw(&app);
    let start = Instant::now();
    let last = loop {
        if s.write_all(b"NOOP\r\n").is_err() {
            break String::new();
        }
        let line = reply(&mut r);
        if !line.starts_with("250") {
            break line;
        }
        std::thread::sleep(Duration::from_millis(500));
        assert!(start.elapsed() < Duration::from_secs(10), "never cut off");
    };
    assert!(last.starts_with("421"), "{last:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(3500) && took < Duration::from_secs(6),
        "{took:?}"
    );

    // Three connections from one address are served; a fourth is told why it is not.
    let held: Vec<_> = (0..3).map(|_| raw(&app)).collect();
    let mut s = TcpStream::connect(&app.smtp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line).unwrap();
    assert!(
        line.starts_with("421 4.7.0 Too many connections from your address"),
        "{line:?}"
    );
    drop(held);

    // The mail server that relays to textgate (a trusted network) opens as many sessions
    // as it likes, up to `max_connections`.
    let relay = spawn_app(&SMTP.replace("[smtp]\n", "[smtp]\nmax_connections_per_client = 3\n"));
    let held: Vec<_> = (0..6).map(|_| raw(&relay)).collect();
    assert_eq!(held.len(), 6);
}

/// A sender over quota gets a temporary refusal that says which limit and when it resets,
/// and nothing is stored; within the limit, mail goes through.
#[test]
fn mail_over_the_senders_quota_is_refused_for_now_with_the_limit() {
    let app = spawn_app(&format!("{SMTP}\n[quotas]\ntexts_per_day = 2\n"));
    let dave = add_user(&app, "dave", Some("dave@example.com"), "dave-password");
    let v = smtp(
        &app,
        plain(
            "dave@example.com",
            &["+15551230001@sms.example.com"],
            "",
            "one",
        ),
    );
    assert_eq!(code(&v, "data"), 250, "{v}");
    let v = smtp(
        &app,
        plain(
            "dave@example.com",
            &[
                "+15551230002@sms.example.com",
                "+15551230003@sms.example.com",
            ],
            "",
            "two more",
        ),
    );
    assert_eq!(code(&v, "data"), 452, "{v}");
    let why = text(&v, "data");
    assert!(
        why.contains("daily limit of 2 texts") && why.contains("resets at"),
        "{why}"
    );
    assert_eq!(texts_by_number(&app, &dave).len(), 1);
}
