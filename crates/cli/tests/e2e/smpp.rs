//! The `smpp` device against an SMSC we did not write: node-smpp in server mode
//! (`tests/peers/smsc/smsc.js`), driven over its stdin control channel.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// A running smsc.js.
pub(crate) struct Smsc {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pub(crate) port: u16,
}

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/smsc")
}

impl Smsc {
    pub(crate) fn start(flags: &[&str]) -> Smsc {
        let dir = peer_dir();
        // The peer's packages are installed on first use, so `cargo test` alone works on a
        // fresh machine that has Node.js and npm.
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            if !dir.join("node_modules/smpp").exists() {
                let ok = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--silent"])
                    .current_dir(&dir)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(
                    ok,
                    "`npm ci` in {} failed: the SMPP tests need Node.js and npm",
                    dir.display()
                );
            }
        });
        let mut child = Command::new("node")
            .arg(dir.join("smsc.js"))
            .args([
                "--port",
                "0",
                "--system-id",
                "textgate",
                "--password",
                "secret",
            ])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the SMSC starts");
        let port = first
            .strip_prefix("SMSC listening on ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Smsc {
            child,
            stdin,
            lines,
            port,
        }
    }

    pub(crate) fn cmd(&mut self, c: Value) -> Value {
        writeln!(self.stdin, "{c}").expect("write to the SMSC");
        let want = c["cmd"].as_str().unwrap_or("").to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).expect("the SMSC answers");
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["cmd"] == want.as_str() {
                    return v;
                }
            }
        }
    }

    pub(crate) fn submits(&mut self) -> Vec<Value> {
        self.cmd(json!({"cmd": "submits"}))["submits"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn stats(&mut self) -> Value {
        self.cmd(json!({"cmd": "stats"}))["stats"].clone()
    }

    pub(crate) fn device(&self, extra: &str) -> String {
        format!(
            "retry_backoff = \"50ms\"\nretry_backoff_max = \"200ms\"\nmax_attempts = 50\n\
             [[device]]\nname = \"smsc1\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             system_id = \"textgate\"\npassword = \"secret\"\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n{extra}\n",
            self.port
        )
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The device as an administrator sees it (users are not shown `last_error`).
fn device_state(app: &App) -> Value {
    app.req_as(app.key_of("root"), "GET", "/api/v1/devices", None, &[])
        .json()["devices"][0]
        .clone()
}

/// An app with alice (the default caller) and root, an administrator.
fn spawn_smpp_app(config: &str) -> App {
    spawn_app_users(config, &[("alice", "user"), ("root", "admin")])
}

fn metric(app: &App, name: &str) -> f64 {
    let text = app.get("/metrics").text();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn spawn_on(smsc: &Smsc, extra: &str) -> App {
    let app = spawn_smpp_app(&smsc.device(extra));
    wait_for("the SMPP bind", || device_state(&app)["state"] == "up");
    app
}

#[test]
fn sends_gsm_ucs2_and_long_texts_and_records_their_receipts() {
    let mut smsc = Smsc::start(&[]);
    let app = spawn_on(&smsc, "");
    let gsm = app.send_ok(&json!({"to": "+15551234567", "body": "Hi {€}", "from": "ACME"}))[0]
        ["id"]
        .as_i64()
        .unwrap();
    let ucs2 = app.send_ok(&json!({"to": "+15551234567", "body": "Привет 👋"}))[0]["id"]
        .as_i64()
        .unwrap();
    let long = app.send_ok(&json!({"to": "+15551234567", "body": "x".repeat(200)}))[0]["id"]
        .as_i64()
        .unwrap();
    for id in [gsm, ucs2, long] {
        let m = app.wait_final(id);
        assert_eq!(
            (m["status"].as_str(), m["device"].as_str()),
            (Some("delivered"), Some("smsc1")),
            "{m}"
        );
    }
    let subs = smsc.submits();
    assert_eq!(
        subs.len(),
        4,
        "one submit each, two for the long text: {subs:?}"
    );
    // Messages go out concurrently (the window), so the submits are found by content.
    let g = subs
        .iter()
        .find(|x| x["source_addr"] == "ACME")
        .expect("the GSM submit");
    assert_eq!(
        (
            g["data_coding"].as_u64(),
            g["esm_class"].as_u64(),
            g["registered_delivery"].as_u64()
        ),
        (Some(0), Some(0), Some(1))
    );
    assert_eq!(
        g["short_message_hex"], "4869201b281b651b29",
        "unpacked GSM septets with escapes"
    );
    assert_eq!(
        (g["source_addr"].as_str(), g["source_addr_ton"].as_u64()),
        (Some("ACME"), Some(5))
    );
    assert_eq!(
        (
            g["destination_addr"].as_str(),
            g["dest_addr_ton"].as_u64(),
            g["dest_addr_npi"].as_u64()
        ),
        (Some("15551234567"), Some(1), Some(1))
    );
    let u = subs
        .iter()
        .find(|x| x["data_coding"] == 8)
        .expect("the UCS-2 submit");
    assert_eq!(u["text"], "Привет 👋");
    let parts: Vec<&Value> = subs.iter().filter(|x| x["esm_class"] == 0x40).collect();
    assert_eq!(parts.len(), 2);
    // One message's parts are sent in order on one session.
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part["udh"]["concat"]["total"].as_u64(), Some(2));
        assert_eq!(part["udh"]["concat"]["seq"].as_u64(), Some(i as u64 + 1));
    }
    assert_eq!(
        parts[0]["udh"]["concat"]["ref"],
        parts[1]["udh"]["concat"]["ref"]
    );
}

#[test]
fn inbound_texts_single_and_multipart_are_stored_before_they_are_acknowledged() {
    let mut smsc = Smsc::start(&[]);
    let app = spawn_on(&smsc, "");
    smsc.cmd(json!({"cmd": "mo", "from": "+15550001", "to": "12345", "text": "hello {there}", "coding": "gsm7"}));
    smsc.cmd(json!({"cmd": "mo", "from": "+15550002", "to": "12345", "text": "Привет мир", "coding": "ucs2"}));
    smsc.cmd(json!({"cmd": "mo_multipart", "from": "+15550003", "to": "12345", "text": "y".repeat(300), "coding": "gsm7"}));
    smsc.cmd(json!({"cmd": "mo_multipart", "from": "+15550004", "to": "12345", "sar": true, "text": "z".repeat(300), "coding": "gsm7"}));
    smsc.cmd(
        json!({"cmd": "mo", "from": "+15550005", "to": "12345", "text": "twice", "repeat": 2}),
    );
    wait_for("inbound texts stored", || {
        metric(&app, "textgate_inbound_total") >= 6.0
    });
    let stats = smsc.stats();
    assert_eq!(
        stats["deliver_sm_acked"].as_u64(),
        Some(8),
        "every deliver_sm acknowledged: {stats}"
    );
    assert_eq!(stats["deliver_sm_nacked"].as_u64(), Some(0));
    assert_eq!(device_state(&app)["received"].as_u64(), Some(6));
}

#[test]
fn throttling_answers_slow_down_and_retry_without_losing_anything() {
    let mut smsc = Smsc::start(&["--throttle-every", "3", "--queue-full-every", "7"]);
    // One attempt allowed: a throttled answer must not use it up.
    let app = spawn_smpp_app(
        &smsc
            .device("window = 4")
            .replace("max_attempts = 50", "max_attempts = 1"),
    );
    wait_for("the SMPP bind", || device_state(&app)["state"] == "up");
    let ids: Vec<i64> = (0..20)
        .map(|i| {
            app.send_ok(&json!({"to": format!("+1555000{i:04}"), "body": format!("n{i}")}))[0]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    for id in &ids {
        assert_eq!(app.wait_final(*id)["status"], "delivered");
    }
    let subs = smsc.submits();
    let throttled = subs
        .iter()
        .filter(|s| s["outcome"] == "throttled" || s["outcome"] == "queue_full")
        .count();
    assert!(throttled > 0, "the SMSC throttled some submits");
    assert_eq!(
        subs.iter().filter(|s| s["outcome"] == "ok").count(),
        20,
        "each message accepted exactly once"
    );
}

#[test]
fn a_dropped_connection_resends_only_what_was_not_acknowledged() {
    let mut smsc = Smsc::start(&["--drop-after", "8", "--resp-delay", "100"]);
    let app = spawn_on(&smsc, "window = 5");
    let ids: Vec<i64> = (0..20)
        .map(|i| {
            app.send_ok(&json!({"to": format!("+1555100{i:04}"), "body": format!("d{i}")}))[0]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    for id in &ids {
        let m = app.wait_final(*id);
        assert!(
            matches!(m["status"].as_str(), Some("delivered" | "sent")),
            "{m}"
        );
    }
    let subs = smsc.submits();
    let ok: Vec<&Value> = subs.iter().filter(|s| s["outcome"] == "ok").collect();
    for i in 0..20 {
        let n = ok
            .iter()
            .filter(|s| s["text"] == format!("d{i}").as_str())
            .count();
        assert!(n >= 1, "message d{i} reached the SMSC");
        if n > 1 {
            assert!(
                ok.iter()
                    .any(|s| s["text"] == format!("d{i}").as_str() && s["resp_sent"] == false),
                "d{i} was sent twice although its submit_sm_resp had been written"
            );
        }
    }
    assert!(
        smsc.stats()["binds"].as_u64().unwrap_or(0) >= 2,
        "textgate reconnected"
    );
}

#[test]
fn a_refused_bind_is_shown_and_retried() {
    let mut smsc = Smsc::start(&[]);
    let app = spawn_smpp_app(
        &smsc
            .device("")
            .replace("password = \"secret\"", "password = \"wrong\""),
    );
    wait_for("the refusal to show", || {
        device_state(&app)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused the bind"))
    });
    assert_ne!(device_state(&app)["state"], "up");
    let id = app.send_ok(&json!({"to": "+15551234567", "body": "waits"}))[0]["id"]
        .as_i64()
        .unwrap();
    // It binds again and again (with backoff), and meanwhile the text waits, neither sent
    // nor failed.
    let before = smsc.stats()["bind_failures"].as_u64().unwrap_or(0);
    wait_for("two more refused binds", || {
        smsc.stats()["bind_failures"].as_u64().unwrap_or(0) >= before + 2
    });
    let m = app.message(id);
    assert!(!is_final(m["status"].as_str().unwrap()), "{m}");
}

#[test]
fn a_receipt_that_arrives_before_its_submit_response_is_matched() {
    let mut smsc = Smsc::start(&["--receipt-before-resp", "--resp-delay", "50"]);
    // Receipts acknowledged only once recorded: an early one must still be held and matched.
    let app = spawn_on(&smsc, "ack_receipts_after_commit = true");
    let ids: Vec<i64> = (0..5)
        .map(|i| {
            app.send_ok(&json!({"to": format!("+1555200{i:04}"), "body": "early"}))[0]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    for id in ids {
        assert_eq!(app.wait_final(id)["status"], "delivered");
    }
    assert_eq!(smsc.stats()["receipts_sent"].as_u64(), Some(5));
    assert_eq!(metric(&app, "textgate_receipts_unmatched_total"), 0.0);
}

#[test]
fn an_undeliverable_receipt_fails_the_message_with_the_network_error() {
    let smsc = Smsc::start(&["--undeliverable-rate", "1"]);
    let app = spawn_on(&smsc, "");
    let id = app.send_ok(&json!({"to": "+15551234567", "body": "nope"}))[0]["id"]
        .as_i64()
        .unwrap();
    let m = app.wait_final(id);
    assert_eq!(m["status"], "undelivered", "{m}");
    assert!(
        m["error"]
            .as_str()
            .is_some_and(|e| e.contains("could not deliver")),
        "{m}"
    );
}

#[test]
fn smpp_over_tls_with_a_private_ca() {
    // A private CA and a certificate it signed for 127.0.0.1; textgate trusts the CA through
    // tls_ca_file (webpki refuses a self-signed CA certificate used as the server's own).
    let dir = TempDir::new("tls");
    let (cert, key, ca) = test_certificate(dir.path());
    let mut smsc = Smsc::start(&["--tls-key", &key, "--tls-cert", &cert]);
    let app = spawn_on(&smsc, &format!("tls = true\ntls_ca_file = \"{ca}\""));
    let id = app.send_ok(&json!({"to": "+15551234567", "body": "over TLS"}))[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.wait_final(id)["status"], "delivered");
    assert_eq!(smsc.submits()[0]["text"], "over TLS");

    // Without the CA the certificate is refused, and the device says why.
    let plain = spawn_smpp_app(&smsc.device("tls = true"));
    wait_for("the certificate refusal", || {
        device_state(&plain)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("TLS handshake"))
    });
    assert_ne!(device_state(&plain)["state"], "up");
}

#[test]
fn a_receiver_bind_takes_inbound_texts_and_is_never_routed_to() {
    let mut smsc = Smsc::start(&[]);
    let extra = smsc.device("bind = \"receiver\"")
        + "[[device]]\nname = \"lb\"\nkind = \"loopback\"\n[[route]]\ndevices = [\"smsc1\", \"lb\"]\n";
    let app = spawn_smpp_app(&extra);
    wait_for("the receiver bind", || device_state(&app)["state"] == "up");
    let id = app.send_ok(&json!({"to": "+15551234567", "body": "goes by loopback"}))[0]["id"]
        .as_i64()
        .unwrap();
    let m = app.wait_final(id);
    assert_eq!(
        (m["status"].as_str(), m["device"].as_str()),
        (Some("delivered"), Some("lb")),
        "{m}"
    );
    assert!(smsc.submits().is_empty());
    smsc.cmd(json!({"cmd": "mo", "from": "+15550009", "to": "12345", "text": "to the receiver"}));
    wait_for("the inbound text", || {
        metric(&app, "textgate_inbound_total") >= 1.0
    });
}

#[test]
fn an_smsc_that_never_completes_its_long_texts_gets_a_bounded_memory_and_loses_nothing() {
    let mut smsc = Smsc::start(&[]);
    let app = spawn_on(
        &smsc,
        "reassembly_budget = \"2KiB\"\nreassembly_timeout = \"3s\"\n",
    );
    // Forty long texts of which only the first part ever comes: ~150 bytes each held until
    // the rest arrives, so 2 KiB holds about a dozen.
    for i in 0..40 {
        let r = smsc.cmd(
            json!({"cmd": "mo_multipart", "from": format!("+1555000{i:04}"), "to": "12345",
            "text": "y".repeat(300), "coding": "gsm7", "order": [0]}),
        );
        assert_eq!(r["ok"], true, "{r}");
    }
    let held = "textgate_device_reassembly_bytes{device=\"smsc1\"}";
    let evicted = "textgate_device_reassembly_evicted_total{device=\"smsc1\"}";
    wait_for("every part acknowledged", || {
        smsc.stats()["deliver_sm_acked"].as_u64() == Some(40)
    });
    assert!(metric(&app, held) <= 2048.0, "held {}", metric(&app, held));
    let early = metric(&app, evicted);
    assert!(early >= 20.0, "the oldest were handed on early: {early}");
    // Each one handed on early is stored at once, partial; the rest after the timeout.
    wait_for("all forty stored", || {
        metric(&app, "textgate_inbound_total") >= 40.0
    });
    assert_eq!(metric(&app, held), 0.0);
    let root = app.key_of("root").to_string();
    let mut texts = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app.req_as(
            &root,
            "GET",
            &format!("/api/v1/inbound?limit=100&cursor={cursor}"),
            None,
            &[],
        );
        let v = r.json();
        let page = v["messages"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        cursor = v["next_cursor"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| v["next_cursor"].to_string());
        texts.extend(page);
    }
    assert_eq!(texts.len(), 40, "nothing lost, nothing doubled");
    assert!(
        texts
            .iter()
            .all(|t| t["partial"] == true && t["body"].as_str().unwrap().starts_with("yyy")),
        "{texts:?}"
    );
}
