//! Remote port servers: real `textgate serve` and `textgate port` processes on loopback, a
//! port server's `smpp` device against node-smpp, its loopback device echoing texts back.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::smpp::{wait_for, Smsc};

const TOKEN_A: &str = "token-of-branch-a-0123456789";
const TOKEN_B: &str = "token-of-branch-b-9876543210";

/// A running (or stopped) `textgate port`.
struct PortServer {
    dir: TempDir,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl PortServer {
    fn new(name: &str, central: &str, token: &str, devices: &str, extra: &str) -> PortServer {
        let dir = TempDir::new("port");
        let config = dir.path().join("port.toml");
        std::fs::write(
            &config,
            format!(
                "server = \"{central}\"\nname = \"{name}\"\ntoken = \"{token}\"\ndata_dir = \"{}\"\n\
                 heartbeat = \"500ms\"\nreconnect_min = \"100ms\"\nreconnect_max = \"500ms\"\n{extra}\n{devices}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("port.log");
        let mut p = PortServer {
            dir,
            config,
            log,
            child: None,
        };
        p.start();
        p
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            command()
                .args(["port", "--config", self.config.to_str().unwrap()])
                .env("TEXTGATE_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("start textgate port"),
        );
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What it last wrote in `status.json`.
    fn status(&self) -> Value {
        std::fs::read_to_string(self.dir.path().join("data/status.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }
}

impl Drop for PortServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn port_servers(app: &App) -> HashMap<String, Value> {
    let r = app.get("/api/v1/port-servers");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["port_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p.clone()))
        .collect()
}

fn wait_linked(app: &App, name: &str, port: &PortServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while port_servers(app)[name]["connected"] != json!(true) {
        assert!(
            Instant::now() < deadline,
            "port server {name} did not link; its log:\n{}\ncentral log:\n{}",
            port.log_text(),
            app.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every inbound text an administrator sees.
fn inbound(app: &App) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app.get(&format!("/api/v1/inbound?limit=1000&cursor={cursor}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        out.extend(v["messages"].as_array().unwrap().iter().cloned());
        if v["has_more"] != json!(true) {
            return out;
        }
        cursor = v["next_cursor"].as_str().unwrap().to_string();
    }
}

fn smsc_device(smsc: &Smsc) -> String {
    format!(
        "[[device]]\nname = \"smsc1\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         system_id = \"textgate\"\npassword = \"secret\"\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n",
        smsc.port
    )
}

const LOOPBACK_ECHO: &str = "[[device]]\nname = \"lb\"\nkind = \"loopback\"\necho = true\n";

/// The central server's config for port servers `a` (its `lb`) and `b` (its `smsc1`), with
/// a local loopback device for failover.
fn central_config(lease: &str) -> String {
    format!(
        "retry_backoff = \"50ms\"\nretry_backoff_max = \"200ms\"\nmax_attempts = 50\nclaim_lease = \"{lease}\"\n\
         [[port_server]]\nname = \"a\"\ntoken = \"{TOKEN_A}\"\n\
         [[port_server]]\nname = \"b\"\ntoken = \"{TOKEN_B}\"\n\
         [[device]]\nname = \"branch-a\"\nkind = \"remote\"\nport_server = \"a\"\nremote_device = \"lb\"\n\
         [[device]]\nname = \"branch-b\"\nkind = \"remote\"\nport_server = \"b\"\nremote_device = \"smsc1\"\n\
         [[device]]\nname = \"local\"\nkind = \"loopback\"\n\
         [[route]]\nprefix = \"+1555\"\ndevices = [\"branch-a\"]\n\
         [[route]]\nprefix = \"+1444\"\ndevices = [\"branch-b\"]\n\
         [[route]]\nprefix = \"+1777\"\ndevices = [\"branch-a\", \"local\"]\n"
    )
}

fn central() -> App {
    central_with_lease("10s")
}

fn central_with_lease(lease: &str) -> App {
    let mut app = spawn_app_users(&central_config(lease), &[("admin", "admin")]);
    // Port servers are told the central server's address: keep it across restarts.
    let text = std::fs::read_to_string(&app.config).unwrap().replace(
        "http_listen = \"127.0.0.1:0\"",
        &format!("http_listen = \"{}\"", app.addr),
    );
    std::fs::write(&app.config, text).unwrap();
    app.restart();
    app
}

fn numbers(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{:07}", 1_000_000 + i))
        .collect()
}

fn send_many(app: &App, to: &[String], body: &str) -> Vec<i64> {
    to.chunks(100)
        .flat_map(|c| app.send_ok(&json!({"to": c, "body": body})))
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn messages_reach_devices_on_two_port_servers_with_receipts_and_their_texts_reach_the_inbox() {
    let mut smsc = Smsc::start(&["--receipt-delay", "20"]);
    let app = central();
    let a = PortServer::new("a", &app.base, TOKEN_A, LOOPBACK_ECHO, "");
    let b = PortServer::new("b", &app.base, TOKEN_B, &smsc_device(&smsc), "");
    wait_linked(&app, "a", &a);
    wait_linked(&app, "b", &b);
    let ids_a = send_many(&app, &numbers("+1555", 20), "to branch a");
    let ids_b = send_many(&app, &numbers("+1444", 20), "to branch b");
    for id in ids_a.iter().chain(&ids_b) {
        let m = app.wait_final(*id);
        assert_eq!(m["status"], "delivered", "{m}");
    }
    assert_eq!(app.message(ids_a[0])["device"], "branch-a");
    assert_eq!(app.message(ids_b[0])["device"], "branch-b");
    // node-smpp saw each message once.
    let submits = smsc.submits();
    assert_eq!(submits.len(), 20, "{submits:?}");
    // Inbound: port a's loopback echoes every message; port b's SMSC delivers texts.
    for i in 0..3 {
        smsc.cmd(json!({"cmd": "mo", "from": format!("+1444900000{i}"), "to": "12345", "text": format!("mo {i}")}));
    }
    wait_for(
        "the echoes and the SMSC's texts in the central inbox",
        || inbound(&app).len() >= 23,
    );
    let texts = inbound(&app);
    assert_eq!(texts.len(), 23);
    let from_b: Vec<&Value> = texts.iter().filter(|t| t["device"] == "branch-b").collect();
    assert_eq!(from_b.len(), 3, "{texts:?}");
    assert!(from_b
        .iter()
        .any(|t| t["body"] == "mo 1" && t["from"] == "+14449000001"));
    assert_eq!(
        texts
            .iter()
            .filter(|t| t["device"] == "branch-a" && t["body"] == "Echo: to branch a")
            .count(),
        20
    );
    // The central server's view: both linked, their devices up, nothing left over.
    wait_for(
        "both port servers to report nothing held and their devices up",
        || {
            let p = port_servers(&app);
            ["a", "b"].iter().all(|n| {
                p[*n]["held"] == 0 && p[*n]["unacked"] == 0 && p[*n]["devices"][0]["state"] == "up"
            })
        },
    );
    let p = port_servers(&app);
    assert_eq!(
        p["b"]["devices"],
        json!([{"name": "smsc1", "kind": "smpp", "state": "up"}])
    );
    assert_eq!(p["a"]["protocol"], 1);
    assert!(p["a"]["last_seen"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));
    let devices = app.get("/api/v1/devices").json();
    let b_dev = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "branch-b")
        .unwrap()
        .clone();
    assert_eq!(b_dev["kind"], "remote");
    assert_eq!(b_dev["state"], "up");
    assert_eq!(b_dev["info"]["port_server"], "b");
    assert!(
        b_dev["info"]["last_seen"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')),
        "{b_dev}"
    );
    assert_eq!(b_dev["receipts"], 20);
    // The port server's own view, through its command line.
    wait_for("the port server's status to catch up", || {
        b.status()["devices"][0]["state"] == "up" && b.status()["link"] == "up"
    });
    let out = cli(
        &["port", "--config", b.config.to_str().unwrap(), "--status"],
        None,
    );
    let text = stdout(&out);
    assert!(
        out.status.success()
            && text.contains("link      up")
            && text.contains("device    smsc1 (smpp) up"),
        "{text}\n{}",
        b.log_text()
    );
}

#[test]
fn a_port_server_killed_mid_burst_loses_nothing_and_doubles_only_what_its_smsc_had_in_flight() {
    // Answers slowed, so that submits are in flight at the SMSC when the port server dies.
    let mut smsc = Smsc::start(&["--receipt-delay", "20", "--resp-delay", "5"]);
    let app = central();
    let mut b = PortServer::new(
        "b",
        &app.base,
        TOKEN_B,
        &(smsc_device(&smsc) + "window = 8\n"),
        "",
    );
    wait_linked(&app, "b", &b);
    let to = numbers("+1444", 400);
    let ids = send_many(&app, &to, "burst");
    wait_for("some submits", || {
        smsc.cmd(json!({"cmd": "stats"}))["stats"]["submits"]
            .as_u64()
            .unwrap_or(0)
            >= 60
    });
    b.kill();
    let at_kill = smsc.submits().len();
    assert!(at_kill < 400, "the burst was over before the kill");
    // Texts that arrive while the port server is dead wait at the SMSC.
    for i in 0..5 {
        smsc.cmd(json!({"cmd": "mo", "from": format!("+1444800000{i}"), "to": "12345", "text": format!("while down {i}")}));
    }
    std::thread::sleep(Duration::from_millis(300));
    b.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &ids {
        let m = loop {
            let m = app.message(*id);
            if is_final(m["status"].as_str().unwrap_or("")) {
                break m;
            }
            assert!(
                Instant::now() < deadline,
                "{m}\nport log:\n{}\nSMSC: {}\nits submits: {:?}\ncentral log:\n{}",
                b.log_text(),
                smsc.cmd(json!({"cmd": "stats"})),
                smsc.submits()
                    .iter()
                    .filter(|s| m["to"]
                        .as_str()
                        .unwrap()
                        .ends_with(s["destination_addr"].as_str().unwrap_or("-")))
                    .collect::<Vec<_>>(),
                app.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(m["status"], "delivered", "{m}\nport log:\n{}", b.log_text());
    }
    let submits = smsc.submits();
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for s in &submits {
        *per_number
            .entry(
                s["to"]
                    .as_str()
                    .or(s["destination_addr"].as_str())
                    .unwrap_or("")
                    .trim_start_matches('+')
                    .to_string(),
            )
            .or_default() += 1;
    }
    assert_eq!(per_number.len(), 400, "every number reached the SMSC");
    let doubled = submits.len() - 400;
    // Only a submit the SMSC took whose answer the port server had not yet committed when
    // it died can go twice: those in flight (at most the device's window of 8) and those
    // answered but not yet committed (at most the window again).
    assert!(doubled <= 16, "{doubled} doubled submits");
    eprintln!("kill -9 mid-burst: {at_kill} of 400 submitted at the kill, {doubled} sent twice (in flight at the SMSC)");
    wait_for("the texts received while the port server was down", || {
        inbound(&app)
            .iter()
            .filter(|t| t["body"].as_str().unwrap_or("").starts_with("while down"))
            .count()
            >= 5
    });
    std::thread::sleep(Duration::from_millis(500));
    let texts = inbound(&app);
    assert_eq!(texts.len(), 5, "each text once: {texts:?}");
}

#[test]
fn the_central_server_stopped_while_texts_arrive_at_a_port_server_gets_each_once() {
    let mut smsc = Smsc::start(&["--receipt-delay", "20"]);
    let mut app = central();
    let b = PortServer::new("b", &app.base, TOKEN_B, &smsc_device(&smsc), "");
    wait_linked(&app, "b", &b);
    let first = send_many(&app, &numbers("+1444", 10), "before");
    for id in &first {
        app.wait_final(*id);
    }
    app.kill();
    for i in 0..30 {
        let r = smsc.cmd(json!({"cmd": "mo", "from": format!("+14447{i:06}"), "to": "12345", "text": format!("text {i}"), "wait_ack": true}));
        assert_eq!(
            r["ok"], true,
            "the port server takes texts while the central server is down: {r}"
        );
    }
    wait_for("the port server to hold 30 reports", || {
        b.status()["unacked"].as_u64() == Some(30)
    });
    app.start();
    wait_linked(&app, "b", &b);
    wait_for("30 texts in the central inbox", || {
        inbound(&app).len() >= 30
    });
    wait_for("the port server to hear they are stored", || {
        b.status()["unacked"].as_u64() == Some(0)
    });
    let texts = inbound(&app);
    let mut bodies: Vec<String> = texts
        .iter()
        .map(|t| t["body"].as_str().unwrap().to_string())
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        (texts.len(), bodies.len()),
        (30, 30),
        "each text exactly once"
    );
    // And sending goes on through it.
    let id = send_many(&app, &numbers("+1444", 1), "after")[0];
    assert_eq!(app.wait_final(id)["status"], "delivered");
}

#[test]
fn messages_for_an_offline_port_server_wait_or_fail_over_and_a_drained_one_gets_none() {
    let app = central();
    // Port server a is not running: +1555 has only its device and waits; +1777 fails over.
    let waiting = send_many(&app, &numbers("+1555", 3), "waits");
    let over = send_many(&app, &numbers("+1777", 3), "fails over");
    for id in &over {
        let m = app.wait_final(*id);
        assert_eq!(
            (m["status"].as_str(), m["device"].as_str()),
            (Some("delivered"), Some("local")),
            "{m}"
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    for id in &waiting {
        let m = app.message(*id);
        assert_eq!(m["status"], "queued", "{m}");
        assert_eq!(
            m["attempts"].as_i64().unwrap_or(0),
            0,
            "waiting costs no attempt: {m}"
        );
    }
    let p = port_servers(&app);
    assert_eq!(
        (p["a"]["connected"].clone(), p["a"]["last_seen"].clone()),
        (json!(false), Value::Null)
    );
    let a = PortServer::new("a", &app.base, TOKEN_A, LOOPBACK_ECHO, "");
    wait_linked(&app, "a", &a);
    for id in &waiting {
        assert_eq!(app.wait_final(*id)["status"], "delivered");
    }
    // Drained: no new messages; they wait until it resumes.
    let r = app.req("POST", "/api/v1/port-servers/a/drain", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["draining"], true);
    wait_for("the port server to hear it drains", || b_draining(&a));
    let held = send_many(&app, &numbers("+1555", 2), "while draining");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(app.message(held[0])["status"], "queued");
    let over = send_many(&app, &numbers("+1777", 1), "drained: fails over")[0];
    assert_eq!(app.wait_final(over)["device"], "local");
    let r = app.req("POST", "/api/v1/port-servers/a/resume", None);
    assert_eq!(
        (r.status, r.json()["draining"].clone()),
        (200, json!(false))
    );
    for id in &held {
        assert_eq!(app.wait_final(*id)["status"], "delivered");
    }
    assert_eq!(
        app.req("POST", "/api/v1/port-servers/nope/drain", None)
            .status,
        404
    );
    let alice = create_user_with_key(&app.config, "alice", "user");
    assert_eq!(
        app.req_as(&alice, "POST", "/api/v1/port-servers/a/drain", None, &[])
            .status,
        403
    );
}

#[test]
fn the_central_server_killed_mid_burst_sends_each_message_once_through_a_port_server() {
    let mut smsc = Smsc::start(&["--receipt-delay", "20", "--resp-delay", "2"]);
    // A short lease: the messages the dead central server had handed over come back soon.
    let mut app = central_with_lease("2s");
    let b = PortServer::new("b", &app.base, TOKEN_B, &smsc_device(&smsc), "");
    wait_linked(&app, "b", &b);
    let ids = send_many(&app, &numbers("+1444", 300), "central dies");
    wait_for("some submits", || {
        smsc.cmd(json!({"cmd": "stats"}))["stats"]["submits"]
            .as_u64()
            .unwrap_or(0)
            >= 40
    });
    app.kill();
    let at_kill = smsc.submits().len();
    app.start();
    for id in &ids {
        let m = app.wait_final(*id);
        assert_eq!(m["status"], "delivered", "{m}\nport log:\n{}", b.log_text());
    }
    // The port server stayed up: it sent each message once, and answered the messages the
    // restarted central server handed over again from its own record.
    let submits = smsc.submits();
    assert_eq!(
        submits.len(),
        300,
        "{at_kill} submitted when the central server died"
    );
    eprintln!("central kill -9 mid-burst: {at_kill} of 300 submitted at the kill, none doubled");
}

#[test]
fn the_central_server_never_hands_a_port_server_more_than_its_window() {
    let app = central();
    let a = PortServer::new(
        "a",
        &app.base,
        TOKEN_A,
        "[[device]]\nname = \"lb\"\nkind = \"loopback\"\ndelay = \"50ms\"\n",
        "window = 4",
    );
    wait_linked(&app, "a", &a);
    let ids = send_many(&app, &numbers("+1555", 40), "windowed");
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids
        .iter()
        .any(|id| !is_final(app.message(*id)["status"].as_str().unwrap_or("")))
    {
        let p = &port_servers(&app)["a"];
        let (in_flight, held) = (
            p["in_flight"].as_u64().unwrap(),
            p["held"].as_u64().unwrap(),
        );
        assert!(in_flight <= 4 && held <= 4, "over the window: {p}");
        most = most.max(in_flight);
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(most >= 2, "the window was used ({most} at most in flight)");
    assert_eq!(port_servers(&app)["a"]["window"], 4);
    // A port server that stops answering is noticed within three heartbeats.
    let pid = a.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("the central server to notice the silence", || {
        port_servers(&app)["a"]["connected"] == json!(false)
    });
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    wait_linked(&app, "a", &a);
    let id = send_many(&app, &numbers("+1555", 1), "after the silence")[0];
    assert_eq!(app.wait_final(id)["status"], "delivered");
}

#[test]
fn a_message_a_port_server_took_is_never_sent_by_another_device_and_a_stopping_one_finishes_its_own(
) {
    // The lease is shorter than the port server's device takes: the central server stops
    // waiting, yet the message goes back to the port server that holds it, never to the
    // route's other device.
    let app = central_with_lease("2s");
    let mut a = PortServer::new(
        "a",
        &app.base,
        TOKEN_A,
        "[[device]]\nname = \"lb\"\nkind = \"loopback\"\ndelay = \"2500ms\"\n",
        "",
    );
    wait_linked(&app, "a", &a);
    let ids = send_many(&app, &numbers("+1777", 3), "slow");
    for id in &ids {
        let m = app.wait_final(*id);
        assert_eq!(
            (m["status"].as_str(), m["device"].as_str()),
            (Some("delivered"), Some("branch-a")),
            "{m}"
        );
    }
    let local = |app: &App| {
        app.get("/api/v1/devices").json()["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "local")
            .unwrap()["sent"]
            .clone()
    };
    assert_eq!(local(&app), 0, "the route's other device sent none of them");
    // Stopping (SIGTERM) with messages in hand: it says so, gets nothing new (that goes to
    // the route's other device), and finishes what it holds before it exits.
    let held = send_many(&app, &numbers("+1777", 2), "held at the stop");
    wait_for("the port server to hold them", || b_held(&a) == 2);
    let mut child = a.child.take().unwrap();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    wait_for("the central server to hear it stops", || {
        port_servers(&app)["a"]["draining"] == json!(true)
    });
    let other = send_many(&app, &numbers("+1777", 1), "while it stops")[0];
    assert_eq!(app.wait_final(other)["device"], "local");
    assert!(child.wait().unwrap().success());
    for id in &held {
        let m = app.wait_final(*id);
        assert_eq!(
            (m["status"].as_str(), m["device"].as_str()),
            (Some("delivered"), Some("branch-a")),
            "{m}\ncentral log:\n{}\nport log:\n{}",
            app.log_text(),
            a.log_text()
        );
    }
    assert_eq!(a.status()["held"], 0, "nothing left for the next start");
}

fn b_held(p: &PortServer) -> u64 {
    p.status()["held"].as_u64().unwrap_or(0)
}

fn b_draining(p: &PortServer) -> bool {
    p.status()["draining"] == json!(true)
}

#[test]
fn a_wrong_token_is_refused_without_being_logged_and_versions_are_agreed_or_refused_clearly() {
    let app = central();
    let wrong = "not-the-token-of-anybody-42";
    let p = PortServer::new("a", &app.base, wrong, LOOPBACK_ECHO, "");
    wait_for("the port server to say it was refused", || {
        p.status()["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("401"))
    });
    assert_eq!(port_servers(&app)["a"]["connected"], false);
    wait_for("the central server to log the refusal", || {
        app.log_text().contains("wrong or missing token")
    });
    assert!(!app.log_text().contains(wrong), "the token is never logged");
    assert!(!app.log_text().contains(TOKEN_A));
    // A plain GET (no upgrade) with the right token is told what the endpoint is.
    let r = app.req_as(TOKEN_A, "GET", "/api/v1/port/link", None, &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    // By hand: a port server of protocol version 2 only, then one speaking 1 and 2.
    let hello = |versions: Value, name: &str| -> Value {
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/api/v1/port/link",
            app.addr
        ))
        .unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {TOKEN_A}").parse().unwrap(),
        );
        let (mut ws, _) = tungstenite::connect(req).expect("the upgrade");
        // A field this version does not know, as a newer port server might send.
        let frame = json!({"t": "hello", "versions": versions, "name": name, "build": "test", "devices": [], "window": 4, "heartbeat_ms": 1000, "from_the_future": true});
        ws.send(tungstenite::Message::text(frame.to_string()))
            .unwrap();
        loop {
            match ws.read().expect("an answer") {
                tungstenite::Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                _ => continue,
            }
        }
    };
    let v2 = hello(json!([2]), "a");
    assert_eq!(v2["t"], "refused", "{v2}");
    assert!(
        v2["reason"]
            .as_str()
            .unwrap()
            .contains("no link protocol version in common"),
        "{v2}"
    );
    let both = hello(json!([1, 2]), "a");
    assert_eq!(
        (both["t"].as_str(), both["version"].as_u64()),
        (Some("welcome"), Some(1)),
        "{both}"
    );
    let other = hello(json!([1]), "b");
    assert!(
        other["reason"]
            .as_str()
            .unwrap()
            .contains("belongs to port server \"a\""),
        "{other}"
    );
    assert!(app
        .log_text()
        .contains("no link protocol version in common"));
}

/// A TLS front for the central server (what a reverse proxy does), in Python's `ssl`.
const TLS_PROXY: &str = r#"
import socket, ssl, sys, threading
cert, key, target = sys.argv[1], sys.argv[2], sys.argv[3].rsplit(":", 1)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.close()
        except OSError:
            pass
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
    except (OSError, ssl.SSLError):
        c.close()
        return
    u = socket.create_connection((target[0], int(target[1])))
    threading.Thread(target=pump, args=(t, u), daemon=True).start()
    pump(u, t)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn over_https_the_central_servers_certificate_is_verified() {
    let app = central();
    let certs = TempDir::new("tls");
    let (cert, key, ca) = test_certificate(certs.path());
    let mut proxy = Command::new("python3")
        .args(["-c", TLS_PROXY, &cert, &key, &app.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(proxy.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = format!("https://127.0.0.1:{}", line.trim());
    // Without the CA the certificate is not trusted: no link.
    let untrusting = PortServer::new("a", &url, TOKEN_A, LOOPBACK_ECHO, "");
    wait_for("the port server to refuse the certificate", || {
        untrusting.status()["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("TLS") && e.to_lowercase().contains("certificate"))
    });
    drop(untrusting);
    assert_eq!(port_servers(&app)["a"]["connected"], false);
    let trusting = PortServer::new(
        "a",
        &url,
        TOKEN_A,
        LOOPBACK_ECHO,
        &format!("tls_ca_file = \"{ca}\""),
    );
    wait_linked(&app, "a", &trusting);
    let id = send_many(&app, &numbers("+1555", 1), "over TLS")[0];
    assert_eq!(app.wait_final(id)["status"], "delivered");
    let _ = proxy.kill();
    let _ = proxy.wait();
}
