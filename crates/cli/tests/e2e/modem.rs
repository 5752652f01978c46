//! The `modem` device against a GSM modem we did not write: `tests/peers/modem/emulator.py`,
//! an AT command interpreter on a pseudo-terminal with a simulated network (see its
//! README.md), driven over its TCP control port. Everything is observed from outside: the
//! HTTP API of the real binary on one side, what the emulator decoded, stored, read and
//! deleted on the other.
//!
//! Each test starts its own emulator (with `--link` in a temp dir, which the device's `serial`
//! names) and its own server; both are killed on drop (the emulator also exits when its stdin
//! closes, so a test process that dies takes it along). A wait that times out prints the
//! server's log, the emulator's state and the end of its log (every chunk that crossed the
//! pty, tagged).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// The device's name in every test.
const DEVICE: &str = "gsm1";

/// The device's `poll_interval`: registration, signal, storage and the AT+CMGL sweep.
const POLL: Duration = Duration::from_secs(1);

/// How long a wait for something the driver should do within a few polls may take before the
/// test fails (generous: CI machines have two cores and run tests in parallel).
const WAIT: u64 = 20;

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/modem")
}

/// A running emulator.py.
struct Modem {
    child: Child,
    /// Held open: `--exit-on-stdin-eof` makes the emulator exit once it closes.
    _stdin: ChildStdin,
    /// Its control port on 127.0.0.1.
    control: u16,
    /// The symlink to the current pts (what the device's `serial` names).
    link: PathBuf,
    /// Its stderr: the log of everything in and out of the pty and on the control port.
    log: PathBuf,
    // Holds the symlink and the log; removed after the emulator is gone.
    _dir: TempDir,
}

impl Modem {
    /// Starts the emulator with these extra flags and reads its one JSON line.
    fn start(flags: &[&str]) -> Modem {
        let dir = TempDir::new("modem");
        let link = dir.path().join("ttyMODEM");
        let log = dir.path().join("emulator.log");
        let err = std::fs::File::create(&log).expect("create the emulator's log");
        let mut child = Command::new("python3")
            .arg(peer_dir().join("emulator.py"))
            .arg("--link")
            .arg(&link)
            .arg("--exit-on-stdin-eof")
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("python3 runs: the modem tests need Python 3.11 (standard library only)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // It prints exactly one line, once the pty and the control port are ready.
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let ready: Value = match serde_json::from_str(line.trim()) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the modem emulator did not start (first line {line:?}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let control = ready["control"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("no control port in {ready}"));
        assert!(
            std::fs::symlink_metadata(&link).is_ok(),
            "the emulator keeps its symlink at {}: {ready}",
            link.display()
        );
        Modem {
            child,
            _stdin: stdin,
            control,
            link,
            log,
            _dir: dir,
        }
    }

    /// One control request on its own connection; the answer, whatever its `ok`.
    fn try_cmd(&self, req: &Value) -> Result<Value, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.control))
            .map_err(|e| format!("cannot reach the emulator's control port: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        writeln!(s, "{req}").map_err(|e| format!("write {req}: {e}"))?;
        let mut line = String::new();
        BufReader::new(&s)
            .read_line(&mut line)
            .map_err(|e| format!("read the answer to {req}: {e}"))?;
        serde_json::from_str(&line)
            .map_err(|e| format!("answer to {req} is not JSON ({e}): {line:?}"))
    }

    /// A control request that must succeed.
    fn cmd(&self, req: Value) -> Value {
        match self.try_cmd(&req) {
            Ok(v) if v["ok"] == true => v,
            Ok(v) => panic!("the emulator refused {req}: {v}\n{}", self.log_tail()),
            Err(e) => panic!("{e}\n{}", self.log_tail()),
        }
    }

    fn set(&self, settings: Value) {
        let mut req = settings;
        req["cmd"] = json!("set");
        self.cmd(req);
    }

    fn state(&self) -> Value {
        self.cmd(json!({"cmd": "state"}))["state"].clone()
    }

    /// The network delivers a text (`mode` and the rest as in the README).
    fn inbound(&self, req: Value) -> Value {
        let mut req = req;
        req["cmd"] = json!("inbound");
        self.cmd(req)
    }

    /// The network sends the status report for the accepted submit with this TP-MR.
    fn report(&self, mr: u64, status: u64) {
        self.cmd(json!({"cmd": "report", "mr": mr, "status": status}));
    }

    /// Every SMS-SUBMIT the driver gave to AT+CMGS, whatever became of it.
    fn submits(&self) -> Vec<Value> {
        self.cmd(json!({"cmd": "submitted", "since": 0}))["submitted"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The submits to this number, in the order they were made.
    fn submits_to(&self, to: &str) -> Vec<Value> {
        self.submits()
            .into_iter()
            .filter(|s| s["to"] == to)
            .collect()
    }

    /// The accepted submits (`+CMGS: <mr>`) to this number, in part order.
    fn accepted_to(&self, to: &str) -> Vec<Value> {
        let mut v: Vec<Value> = self
            .submits_to(to)
            .into_iter()
            .filter(|s| s["outcome"] == "ok")
            .collect();
        v.sort_by_key(|s| s["concat"]["seq"].as_u64().unwrap_or(0));
        v
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.cmd(json!({"cmd": "events", "since": 0, "kind": kind}))["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// How many AT+CMGL (the stored-message sweep) the driver has sent so far.
    fn sweeps(&self) -> usize {
        self.events("command")
            .iter()
            .filter(|e| {
                e["text"]
                    .as_str()
                    .is_some_and(|t| t.to_ascii_uppercase().starts_with("AT+CMGL"))
            })
            .count()
    }

    fn storage(&self) -> Value {
        self.cmd(json!({"cmd": "storage"}))
    }

    /// The last lines of its log, each cut to a readable length.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(150);
        let mut out = String::from("--- the emulator's log (last 150 lines):\n");
        for l in &lines[from..] {
            let cut: String = l.chars().take(400).collect();
            out.push_str(&cut);
            out.push('\n');
        }
        out
    }

    /// The config: quick retries (so a message that waits for the device is retried often
    /// and never runs out of attempts) and a `[[device]]` on this emulator with short
    /// timeouts, plus `extra` keys for the device.
    fn config(&self, extra: &str) -> String {
        format!(
            "max_attempts = 1000\nretry_backoff = \"100ms\"\nretry_backoff_max = \"500ms\"\n\n\
             [[device]]\nname = \"{DEVICE}\"\nkind = \"modem\"\nserial = \"{}\"\nbaud = 115200\n\
             command_timeout = \"1s\"\npoll_interval = \"{}s\"\nreconnect_min = \"100ms\"\n\
             reconnect_max = \"1s\"\nreassembly_timeout = \"5s\"\n{extra}\n",
            self.link.display(),
            POLL.as_secs()
        )
    }
}

impl Drop for Modem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with one modem device on one emulator. The server is declared first, so it is
/// stopped before the emulator goes.
struct Rig {
    app: App,
    modem: Modem,
}

impl Rig {
    /// An emulator started with `flags`, and a server (alice a user, root an administrator)
    /// whose only device is `gsm1` on it, with `extra` device keys.
    fn start(flags: &[&str], extra: &str) -> Rig {
        let modem = Modem::start(flags);
        let app = spawn_app_users(
            &modem.config(extra),
            &[("alice", "user"), ("root", "admin")],
        );
        Rig { app, modem }
    }

    /// What to read when something did not happen: the server's log, the emulator's state and
    /// the end of its log.
    fn diag(&self) -> String {
        let state = match self.modem.try_cmd(&json!({"cmd": "state"})) {
            Ok(v) => v["state"].to_string(),
            Err(e) => e,
        };
        // Not through `req_as`, which panics when the server is not running.
        let auth = format!("Bearer {}", self.app.key_of("root"));
        let devices = match http(
            &self.app.addr,
            "GET",
            "/api/v1/devices",
            &[("Authorization", &auth)],
            None,
        ) {
            Ok(r) => r.text(),
            Err(e) => format!("(no answer: {e})"),
        };
        format!(
            "--- GET /api/v1/devices: {devices}\n--- textgate's log:\n{}\n\
             --- the emulator's state: {state}\n{}",
            self.app.log_text(),
            self.modem.log_tail()
        )
    }

    fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.diag())
    }

    /// Polls `f` until it gives a value; fails after `secs` seconds.
    fn wait<T>(&self, what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {secs} s waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Checks `f` every 100 ms for `dur`: for what must stay so for a while, such as a
    /// message that waits for its device rather than failing (no event marks "not yet").
    fn hold(&self, what: &str, dur: Duration, mut f: impl FnMut() -> Result<(), String>) {
        let end = Instant::now() + dur;
        while Instant::now() < end {
            if let Err(e) = f() {
                self.fail(&format!("{what}: {e}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get_as_root(&self, path: &str) -> Value {
        let r = self
            .app
            .req_as(self.app.key_of("root"), "GET", path, None, &[]);
        if r.status != 200 {
            self.fail(&format!("GET {path} answered {}: {}", r.status, r.text()));
        }
        r.json()
    }

    /// gsm1 as an administrator sees it in GET /api/v1/devices (with `last_error`).
    fn device(&self) -> Value {
        let v = self.get_as_root("/api/v1/devices");
        v["devices"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["name"] == DEVICE).cloned())
            .unwrap_or_else(|| self.fail(&format!("no device {DEVICE} in {v}")))
    }

    fn wait_state(&self, want: &str) -> Value {
        self.wait(&format!("{DEVICE} to be {want}"), WAIT, || {
            let d = self.device();
            (d["state"] == want).then_some(d)
        })
    }

    fn wait_up(&self) -> Value {
        self.wait_state("up")
    }

    /// Sends a text as alice; its id.
    fn send(&self, to: &str, body: &str) -> i64 {
        let r = self.app.send(&json!({"to": to, "body": body}));
        if r.status != 202 {
            self.fail(&format!("send to {to} answered {}: {}", r.status, r.text()));
        }
        r.json()["messages"][0]["id"]
            .as_i64()
            .expect("a 202 has the message's id")
    }

    fn message(&self, id: i64) -> Value {
        let r = self.app.get(&format!("/api/v1/messages/{id}"));
        if r.status != 200 {
            self.fail(&format!("GET message {id}: {} {}", r.status, r.text()));
        }
        r.json()
    }

    /// Polls a message until its status is `want`; a final status other than `want` fails at
    /// once.
    fn wait_msg(&self, id: i64, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(WAIT);
        loop {
            let m = self.message(id);
            let s = m["status"].as_str().unwrap_or("");
            if s == want {
                return m;
            }
            if is_final(s) {
                self.fail(&format!("message {id} ended {s}, not {want}: {m}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "message {id} did not become {want} in {WAIT} s; last seen {m}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every inbound text, as root (an administrator sees them all), oldest first.
    fn inbox(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let v = self.get_as_root(&format!("/api/v1/inbound?limit=100&cursor={cursor}"));
            let page = v["messages"].as_array().cloned().unwrap_or_default();
            if page.is_empty() {
                return out;
            }
            cursor = match &v["next_cursor"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.extend(page);
        }
    }

    /// Waits until `n` inbound texts are stored; them.
    fn wait_inbox(&self, n: usize) -> Vec<Value> {
        let texts = self.wait(&format!("{n} inbound texts"), WAIT, || {
            let t = self.inbox();
            (t.len() >= n).then_some(t)
        });
        if texts.len() != n {
            self.fail(&format!(
                "{} inbound texts where {n} were sent: {texts:?}",
                texts.len()
            ));
        }
        texts
    }

    /// Waits until the driver has swept the storage `n` more times (AT+CMGL): whatever it
    /// would find twice would have shown up by then.
    fn wait_sweeps(&self, n: usize) {
        let start = self.modem.sweeps();
        self.wait(
            &format!("{n} more AT+CMGL sweeps (after {start})"),
            WAIT,
            || (self.modem.sweeps() >= start + n).then_some(()),
        );
    }

    /// Waits until no received text is left in the modem's memories; the storage then.
    fn wait_storage_empty(&self) -> Value {
        self.wait(
            "the received texts to be deleted from the modem",
            WAIT,
            || {
                let st = self.modem.storage();
                let left: usize = ["SM", "ME"]
                    .iter()
                    .map(|m| {
                        st["memories"][m]["entries"]
                            .as_array()
                            .map_or(0, |e| e.iter().filter(|x| x["type"] == "deliver").count())
                    })
                    .sum();
                (left == 0).then_some(st)
            },
        )
    }
}

/// The one inbound text from `from`, insisting there is exactly one.
fn one_from<'a>(texts: &'a [Value], from: &str) -> &'a Value {
    let found: Vec<&Value> = texts.iter().filter(|t| t["from"] == from).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one inbound text from {from}: {texts:?}"
    );
    found[0]
}

/// Every deleted SMS-DELIVER was read first (a text leaves the SIM only after textgate has
/// it), and there are `n` of them.
fn assert_deleted_after_reading(storage: &Value, n: usize) {
    let deleted: Vec<&Value> = storage["deleted"]
        .as_array()
        .map(|d| d.iter().filter(|x| x["type"] == "deliver").collect())
        .unwrap_or_default();
    assert_eq!(
        deleted.len(),
        n,
        "each stored part deleted once: {deleted:?}"
    );
    for d in &deleted {
        assert_eq!(
            d["read_before_delete"], true,
            "a text was deleted before it was read: {d}"
        );
    }
}

fn mr(rec: &Value) -> u64 {
    rec["mr"]
        .as_u64()
        .unwrap_or_else(|| panic!("an accepted submit has its TP-MR: {rec}"))
}

/// A 3-part UCS-2 text (135 UTF-16 units: two would hold 134), with an emoji.
const UCS2_LONG: &str = "Part one: Zażółć gęślą jaźń. Part two: Привет, мир! Part three: 你好，世界 🙂. Part four: Ελληνικά γράμματα. Part five: שלום עולם. The end ✓";

/// `n` GSM characters that say where they are, so a wrong reassembly shows.
fn numbered(n: usize) -> String {
    (0..n)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect::<String>()
}

/// Three texts go out through AT+CMGS in PDU mode, as the emulator decodes them: a GSM one with
/// extension characters, a 200-character one in two concatenated parts (one reference, parts 1
/// and 2 of 2, the text whole again when joined) and a UCS-2 one. Each goes to the number
/// given (international), asks for a status report, and carries the configured SMSC and
/// validity (1 day). Each is `sent` on gsm1 until the reports of all its parts are in: the
/// long text stays `sent` with one part's report and is `delivered` with both.
#[test]
fn texts_go_out_in_pdu_mode_and_are_delivered_when_every_parts_report_is_in() {
    let rig = Rig::start(&[], "smsc = \"+15550009999\"\nvalidity = \"1d\"\n");
    rig.wait_up();
    let gsm_body = "Hi {there} €5 [ok] @ 10:30";
    let long_body = numbered(200);
    let ucs2_body = "Zażółć gęślą jaźń";
    let (gsm_to, long_to, ucs2_to) = ("+15551230001", "+15551230002", "+15551230003");
    let gsm = rig.send(gsm_to, gsm_body);
    let long = rig.send(long_to, &long_body);
    let ucs2 = rig.send(ucs2_to, ucs2_body);
    for id in [gsm, long, ucs2] {
        let m = rig.wait_msg(id, "sent");
        assert_eq!(m["device"], DEVICE, "{m}");
    }

    let all = rig.modem.submits();
    assert_eq!(all.len(), 4, "one AT+CMGS a part, none refused: {all:?}");
    let csca = rig.modem.state()["csca"].clone();
    for s in &all {
        assert_eq!(s["outcome"], "ok", "{s}");
        assert_eq!(s["mode"], "pdu", "sent in PDU mode: {s}");
        assert_eq!(s["srr"], true, "a status report is asked for: {s}");
        assert_eq!(s["to_toa"], 145, "an international number: {s}");
        assert!(
            s["sca"] == "+15550009999" || (s["sca"].is_null() && csca == "+15550009999"),
            "the configured SMSC, in the PDU or set with AT+CSCA (modem has {csca}): {s}"
        );
        assert_eq!(
            (s["vpf"].as_str(), s["vp_minutes"].as_u64()),
            (Some("relative"), Some(1440)),
            "validity = \"1d\" is a relative TP-VP of 24 h: {s}"
        );
    }
    let g = rig.modem.accepted_to(gsm_to);
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(
        (g[0]["encoding"].as_str(), g[0]["text"].as_str()),
        (Some("gsm7"), Some(gsm_body)),
        "{}",
        g[0]
    );
    assert!(
        g[0]["warnings"].as_array().is_none_or(|w| w.is_empty()),
        "{}",
        g[0]
    );
    let parts = rig.modem.accepted_to(long_to);
    assert_eq!(
        parts.len(),
        2,
        "200 GSM characters take two parts: {parts:?}"
    );
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["encoding"], "gsm7", "{p}");
        assert_eq!(p["udhi"], true, "{p}");
        assert_eq!(
            (p["concat"]["total"].as_u64(), p["concat"]["seq"].as_u64()),
            (Some(2), Some(i as u64 + 1)),
            "{p}"
        );
    }
    assert_eq!(
        parts[0]["concat"]["ref"], parts[1]["concat"]["ref"],
        "one concatenation reference"
    );
    let joined: String = parts
        .iter()
        .map(|p| p["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(joined, long_body, "the parts make the text again");
    let u = rig.modem.accepted_to(ucs2_to);
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(
        (u[0]["encoding"].as_str(), u[0]["text"].as_str()),
        (Some("ucs2"), Some(ucs2_body)),
        "{}",
        u[0]
    );
    // A third opinion on our encoder: python-gsmmodem-new, a PDU library we did not write
    // (installed by .ci/run), decodes the same PDUs to the same number, text and parts. (It
    // reads the extension table's characters its own way, so the GSM text with them is left
    // to the emulator's decoder above.)
    for s in parts.iter().chain(&u) {
        let x = &s["crosscheck"];
        assert_eq!(
            x["library"], "python-gsmmodem-new",
            "the oracle is installed: {s}"
        );
        assert_eq!(x["agrees"], true, "the oracle reads the PDU as sent: {s}");
    }

    // The first part's report, then the UCS-2 text's: once that one is delivered the first was
    // read too (the network hands reports over one at a time, in order), and the long text
    // must still be waiting for its second part.
    rig.modem.report(mr(&parts[0]), 0);
    rig.modem.report(mr(&u[0]), 0);
    rig.wait_msg(ucs2, "delivered");
    let m = rig.message(long);
    assert_eq!(
        m["status"], "sent",
        "one part's report does not deliver a two-part text: {m}"
    );
    rig.modem.report(mr(&parts[1]), 0);
    rig.modem.report(mr(&g[0]), 0);
    for id in [long, gsm] {
        let m = rig.wait_msg(id, "delivered");
        assert_eq!(m["device"], DEVICE, "{m}");
    }
}

/// TS 23.040 §9.2.3.15: a status report with TP-ST 0x41 (permanent error, "incompatible
/// destination") makes its message `undelivered` with an error; one with 0x21 ("SME busy", a
/// temporary error while the SMSC is still trying) is no outcome: the message stays `sent`, and
/// the final report that follows (0x00) delivers it.
#[test]
fn a_failed_report_makes_the_message_undelivered_and_a_still_trying_one_does_not() {
    let rig = Rig::start(&[], "");
    rig.wait_up();
    let (busy_to, bad_to) = ("+15551230021", "+15551230022");
    let busy = rig.send(busy_to, "the handset is busy for a while");
    let bad = rig.send(bad_to, "this one cannot be delivered");
    rig.wait_msg(busy, "sent");
    rig.wait_msg(bad, "sent");
    let busy_mr = mr(&rig.modem.accepted_to(busy_to)[0]);
    let bad_mr = mr(&rig.modem.accepted_to(bad_to)[0]);
    rig.modem.report(busy_mr, 0x21);
    rig.modem.report(bad_mr, 0x41);
    let m = rig.wait_msg(bad, "undelivered");
    assert!(
        m["error"].as_str().is_some_and(|e| !e.is_empty()),
        "an undelivered message says why: {m}"
    );
    // The 0x21 report came before the 0x41 one.
    let m = rig.message(busy);
    assert_eq!(
        m["status"], "sent",
        "a temporary report while the SMSC keeps trying is not an outcome: {m}"
    );
    rig.modem.report(busy_mr, 0);
    rig.wait_msg(busy, "delivered");
}

/// The modem numbers its submits with an 8-bit TP-MR that wraps from 255 to 0 (TS 23.040
/// §9.2.3.6). A three-part text sent as the counter wraps (MRs 255, 0, 1) is delivered once its
/// three reports are in; the report for MR 1 goes to that text, the newest submit with that
/// reference, and not to the older text that had MR 1 before the wrap (which stays `sent`).
#[test]
fn message_references_wrap_from_255_to_0_and_a_report_goes_to_the_newest_submit() {
    let rig = Rig::start(&[], "");
    rig.wait_up();
    let (old_to, new_to) = ("+15551230031", "+15551230032");
    let old = rig.send(old_to, "before the wrap");
    rig.wait_msg(old, "sent");
    let old_mr = mr(&rig.modem.accepted_to(old_to)[0]);
    assert_eq!(
        old_mr, 1,
        "the emulator's counter starts at 1 and this is the first submit"
    );
    rig.modem.set(json!({"next_mr": 255}));
    let body = numbered(400);
    let new = rig.send(new_to, &body);
    rig.wait_msg(new, "sent");
    let parts = rig.modem.accepted_to(new_to);
    let mrs: Vec<u64> = parts.iter().map(mr).collect();
    assert_eq!(
        mrs,
        vec![255, 0, 1],
        "400 characters, three parts: {parts:?}"
    );
    // MR 1 first: the report is for the newest submit with it.
    rig.modem.report(1, 0);
    rig.modem.report(255, 0);
    rig.modem.report(0, 0);
    rig.wait_msg(new, "delivered");
    let m = rig.message(old);
    assert_eq!(
        m["status"], "sent",
        "the report for MR 1 after the wrap is not the old text's: {m}"
    );
}

/// Inbound texts of every kind arrive, each exactly once and whole: a GSM text announced with
/// +CMTI (extension characters), a three-part UCS-2 text whose parts come out of order (with an
/// emoji), one from an alphanumeric sender, and one handed over directly with +CMT (with `@`,
/// the septet 0x00). Every stored part is deleted from the SIM, and only after it was read;
/// the +CMT is never left unacknowledged (no redelivery). Two more sweeps later nothing has come
/// twice.
#[test]
fn inbound_texts_arrive_once_and_leave_the_sim_only_after_being_read() {
    let rig = Rig::start(&[], "");
    rig.wait_up();
    let gsm = "Hello {gateway} ~ €5 [ok]";
    let alnum = "Your code is 123456";
    let direct = "Straight to you @ 10:30";
    rig.modem
        .inbound(json!({"from": "+15557654321", "text": gsm, "mode": "cmti"}));
    let r = rig
        .modem
        .inbound(json!({"from": "+4915123456789", "text": UCS2_LONG,
        "encoding": "ucs2", "parts": 3, "order": [2, 0, 1], "mode": "cmti"}));
    assert_eq!(r["parts"], 3, "{r}");
    rig.modem
        .inbound(json!({"from": "ACME Bank", "text": alnum, "mode": "cmti"}));
    rig.modem
        .inbound(json!({"from": "+15557654322", "text": direct, "mode": "cmt"}));

    let texts = rig.wait_inbox(4);
    let expect: [(&str, &str, &str, i64); 4] = [
        ("+15557654321", gsm, "gsm7", 1),
        ("+4915123456789", UCS2_LONG, "ucs2", 3),
        ("ACME Bank", alnum, "gsm7", 1),
        ("+15557654322", direct, "gsm7", 1),
    ];
    for (from, body, encoding, parts) in expect {
        let t = one_from(&texts, from);
        assert_eq!(t["body"], body, "{t}");
        assert_eq!(t["device"], DEVICE, "{t}");
        assert_eq!(t["encoding"], encoding, "{t}");
        assert_eq!(t["parts"], parts, "{t}");
        assert_eq!(t["partial"], false, "{t}");
        // Sent to the SIM's own number, as AT+CNUM gives it (for inbound rules with `to`).
        assert_eq!(t["to"], "+15550001111", "{t}");
    }

    let storage = rig.wait_storage_empty();
    assert_deleted_after_reading(&storage, 5);
    let timeouts = rig.modem.events("ack_timeout");
    assert!(
        timeouts.is_empty(),
        "every +CMT acknowledged in time: {timeouts:?}"
    );
    rig.wait_sweeps(2);
    let again = rig.inbox();
    assert_eq!(again.len(), 4, "nothing arrives twice: {again:?}");
}

/// Texts the modem stored without telling anyone (no +CMTI: what a modem does with +CNMI
/// `<mt>` 0, or after an unacknowledged +CMT) are found by the periodic AT+CMGL sweep, a
/// single one and a two-part one, within a few poll intervals after the first sweep; each
/// arrives once and is deleted after it was read.
#[test]
fn texts_stored_without_an_indication_are_found_by_the_sweep() {
    let rig = Rig::start(&[], "");
    rig.wait_up();
    // After a sweep, so that only a later (periodic) one can find them.
    rig.wait("the first AT+CMGL sweep", WAIT, || {
        (rig.modem.sweeps() > 0).then_some(())
    });
    let long = numbered(200);
    rig.modem.inbound(
        json!({"from": "+15557650001", "text": "found by the sweep", "mode": "stored_silent"}),
    );
    let r = rig
        .modem
        .inbound(json!({"from": "+15557650002", "text": long, "mode": "stored_silent"}));
    assert_eq!(r["parts"], 2, "{r}");
    let texts = rig.wait(
        "the stored texts to be swept",
        5 + 5 * POLL.as_secs(),
        || {
            let t = rig.inbox();
            (t.len() >= 2).then_some(t)
        },
    );
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_eq!(
        one_from(&texts, "+15557650001")["body"],
        "found by the sweep"
    );
    let t = one_from(&texts, "+15557650002");
    assert_eq!(
        (t["body"].as_str(), t["parts"].as_i64()),
        (Some(long.as_str()), Some(2)),
        "{t}"
    );
    let storage = rig.wait_storage_empty();
    assert_deleted_after_reading(&storage, 3);
    rig.wait_sweeps(2);
    assert_eq!(rig.inbox().len(), 2, "nothing arrives twice");
}

/// GET /api/v1/devices shows the modem: `up`, with its signal in dBm from AT+CSQ (27.007
/// §8.5: rssi 25 is -63 dBm) updated by the poll; roaming (+CREG stat 5) is registered too. A
/// registration the network denies (stat 3) makes it `down` with a `last_error` about the
/// registration, and a text sent meanwhile waits, neither sent nor failed; registered again,
/// the modem is `up` and the text goes out once.
#[test]
fn the_device_shows_signal_and_registration_and_waits_out_a_denied_registration() {
    let rig = Rig::start(&[], "");
    let d = rig.wait_up();
    assert_eq!(d["kind"], "modem", "{d}");
    rig.modem.set(json!({"signal": 25}));
    let d = rig.wait("signal_dbm -63 after AT+CSQ says 25", WAIT, || {
        let d = rig.device();
        (d["details"]["signal_dbm"] == -63).then_some(d)
    });
    assert_eq!(
        d["details"]["storage_total"], 20,
        "the emulator's SIM holds 20: {d}"
    );
    assert_eq!(d["details"]["storage_used"], 0, "{d}");
    assert_eq!(d["details"]["registered"], 1, "{d}");
    // Words: the network's name (AT+COPS?) and the SIM's number (AT+CNUM).
    assert_eq!(d["info"]["operator"], "Emulated Net", "{d}");
    assert_eq!(d["info"]["number"], "+15550001111", "{d}");
    rig.modem.set(json!({"operator": "Other\u{7}Net"}));
    rig.wait(
        "the new operator, without its control character",
        WAIT,
        || (rig.device()["info"]["operator"] == "OtherNet").then_some(()),
    );
    // Roaming, and a new signal to know a poll has happened since.
    rig.modem.set(json!({"registered": 5, "signal": 10}));
    let d = rig.wait("signal_dbm -93 after AT+CSQ says 10", WAIT, || {
        let d = rig.device();
        (d["details"]["signal_dbm"] == -93).then_some(d)
    });
    assert_eq!(d["state"], "up", "roaming is registered: {d}");

    rig.modem.set(json!({"registered": 3}));
    let d = rig.wait("down, with a registration error", WAIT, || {
        let d = rig.device();
        let says = d["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("regist"));
        (d["state"] == "down" && says).then_some(d)
    });
    assert!(d["last_error"].is_string(), "{d}");
    let to = "+15551230041";
    let id = rig.send(to, "waits for the network");
    rig.hold("a text while registration is denied", 2 * POLL, || {
        let m = rig.message(id);
        let s = m["status"].as_str().unwrap_or("");
        if is_final(s) || s == "sent" {
            return Err(format!("it must wait: {m}"));
        }
        Ok(())
    });
    rig.modem.set(json!({"registered": 1}));
    rig.wait_up();
    rig.wait_msg(id, "sent");
    assert_eq!(rig.modem.accepted_to(to).len(), 1, "sent once");
}

/// A text arrives between the Ctrl-Z of an AT+CMGS and its `+CMGS: <mr>`: first announced
/// (+CMTI), then handed over directly (+CMT, two lines). Each time the message is sent exactly
/// once with the right reference, and the interleaved text arrives exactly once.
#[test]
fn a_text_arriving_in_the_middle_of_a_send_is_neither_lost_nor_mistaken_for_the_answer() {
    let rig = Rig::start(&[], "");
    rig.wait_up();
    rig.modem
        .cmd(json!({"cmd": "interleave_next", "what": "inbound",
        "from": "+15550009001", "text": "sneaked in", "mode": "cmti"}));
    let first = rig.send("+15551230051", "first, with a +CMTI inside");
    rig.wait_msg(first, "sent");
    rig.modem
        .cmd(json!({"cmd": "interleave_next", "what": "inbound",
        "from": "+15550009002", "text": "sneaked in directly", "mode": "cmt"}));
    let second = rig.send("+15551230052", "second, with a +CMT inside");
    rig.wait_msg(second, "sent");

    let subs = rig.modem.submits();
    assert_eq!(subs.len(), 2, "each sent once, nothing refused: {subs:?}");
    assert!(subs.iter().all(|s| s["outcome"] == "ok"), "{subs:?}");
    let texts = rig.wait_inbox(2);
    assert_eq!(one_from(&texts, "+15550009001")["body"], "sneaked in");
    assert_eq!(
        one_from(&texts, "+15550009002")["body"],
        "sneaked in directly"
    );
    // The references are the ones the modem gave: their reports deliver them.
    rig.modem.report(mr(&subs[0]), 0);
    rig.modem.report(mr(&subs[1]), 0);
    rig.wait_msg(first, "delivered");
    rig.wait_msg(second, "delivered");
    let storage = rig.wait_storage_empty();
    assert_deleted_after_reading(&storage, 1);
    assert!(rig.modem.events("ack_timeout").is_empty());
}

/// A fast network: the status report for a submit comes before the modem's `+CMGS: <mr>`
/// (python-gsmmodem issue #44's trace, the other way round). It is still matched: the
/// message ends `delivered`.
#[test]
fn a_report_that_comes_before_its_message_reference_is_matched() {
    let rig = Rig::start(&[], "");
    rig.wait_up();
    rig.modem
        .cmd(json!({"cmd": "interleave_next", "what": "report", "status": 0}));
    let id = rig.send("+15551230061", "reported at once");
    let m = rig.wait_msg(id, "delivered");
    assert_eq!(m["device"], DEVICE, "{m}");
    assert_eq!(rig.modem.submits().len(), 1, "sent once");
}

/// +CMS ERROR 38 ("network out of order") and 42 ("congestion") are temporary: the text is
/// sent again and ends `sent`, then `delivered`, never `failed`. +CMS ERROR 21 ("short message
/// transfer rejected") is the network refusing this text: `failed` at once, with the code or
/// the reason, and not tried again.
#[test]
fn temporary_send_errors_are_retried_and_a_refusal_fails_the_message() {
    let rig = Rig::start(&[], "");
    rig.wait_up();
    let retry_to = "+15551230071";
    rig.modem.set(json!({"cms_error": [38, 42]}));
    let id = rig.send(retry_to, "try, try again");
    rig.wait_msg(id, "sent");
    let subs = rig.modem.submits_to(retry_to);
    let outcomes: Vec<(&str, Option<u64>)> = subs
        .iter()
        .map(|s| (s["outcome"].as_str().unwrap_or(""), s["error"].as_u64()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("cms_error", Some(38)),
            ("cms_error", Some(42)),
            ("ok", None)
        ],
        "two refusals, then accepted once: {subs:?}"
    );
    rig.modem.report(mr(&subs[2]), 0);
    rig.wait_msg(id, "delivered");

    let refused_to = "+15551230072";
    rig.modem.set(json!({"cms_error": [21]}));
    let id = rig.send(refused_to, "not wanted by the network");
    let m = rig.wait_msg(id, "failed");
    let said = format!(
        "{} {}",
        m["error"].as_str().unwrap_or(""),
        m["error_code"].as_str().unwrap_or("")
    )
    .to_lowercase();
    assert!(
        said.contains("21") || said.contains("rejected"),
        "the failure names +CMS ERROR 21 or its meaning: {m}"
    );
    let subs = rig.modem.submits_to(refused_to);
    assert_eq!(subs.len(), 1, "a refused text is not tried again: {subs:?}");
}

/// A hung modem (no echo, no answer, input discarded): the device goes `down` (or
/// `connecting`, while it tries the modem again) within a few command timeouts, with a
/// `last_error`. Texts sent meanwhile wait in the queue, neither sent
/// nor failed. Once the modem answers again the device comes back `up` by itself and each
/// text goes out exactly once and is delivered.
#[test]
fn a_hung_modem_goes_down_and_its_texts_wait_until_it_answers_again() {
    let rig = Rig::start(&[], "reset_command = \"AT+CFUN=1,1\"\n");
    rig.wait_up();
    rig.modem.set(json!({"silent": true}));
    let d = rig.wait("the device to notice the modem is hung", WAIT, || {
        let d = rig.device();
        matches!(d["state"].as_str(), Some("down" | "connecting")).then_some(d)
    });
    assert!(d["last_error"].is_string(), "it says why: {d}");
    let to = ["+15551230081", "+15551230082"];
    let ids: Vec<i64> = to
        .iter()
        .map(|t| rig.send(t, &format!("waiting for {t}")))
        .collect();
    rig.hold("texts while the modem is hung", 2 * POLL, || {
        for id in &ids {
            let m = rig.message(*id);
            let s = m["status"].as_str().unwrap_or("");
            if is_final(s) || s == "sent" {
                return Err(format!("it must wait: {m}"));
            }
        }
        Ok(())
    });
    rig.modem.set(json!({"silent": false}));
    rig.wait_up();
    for (id, t) in ids.iter().zip(to) {
        rig.wait_msg(*id, "sent");
        let subs = rig.modem.accepted_to(t);
        assert_eq!(subs.len(), 1, "sent once: {subs:?}");
        rig.modem.report(mr(&subs[0]), 0);
        rig.wait_msg(*id, "delivered");
    }
}

/// The modem reboots (power-on state: echo on, text mode, no indications, SIM locked again):
/// the driver notices, enters the PIN again (once, never a wrong one), sets the modem up
/// again, and carries on: a text announced after the reboot arrives, a text sent after it goes
/// out in PDU mode, and the reports of texts sent before and after it are matched.
#[test]
fn a_rebooted_modem_is_set_up_again_pin_included() {
    let rig = Rig::start(&["--pin", "1234"], "pin = \"1234\"\n");
    rig.wait_up();
    assert_eq!(
        rig.modem.events("sim_ready").len(),
        1,
        "the PIN was entered"
    );
    let before = rig.send("+15551230091", "before the reboot");
    rig.wait_msg(before, "sent");
    let before_mr = mr(&rig.modem.accepted_to("+15551230091")[0]);

    rig.modem.cmd(json!({"cmd": "reboot"}));
    rig.wait("the PIN entered again after the reboot", WAIT, || {
        (rig.modem.events("sim_ready").len() >= 2).then_some(())
    });
    rig.wait_up();
    rig.modem
        .inbound(json!({"from": "+15557650091", "text": "after the reboot", "mode": "cmti"}));
    let texts = rig.wait_inbox(1);
    assert_eq!(one_from(&texts, "+15557650091")["body"], "after the reboot");
    let after = rig.send("+15551230092", "after the reboot");
    rig.wait_msg(after, "sent");
    let subs = rig.modem.submits_to("+15551230092");
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(
        (subs[0]["mode"].as_str(), subs[0]["outcome"].as_str()),
        (Some("pdu"), Some("ok")),
        "PDU mode set again after the reboot: {}",
        subs[0]
    );
    rig.modem.report(mr(&subs[0]), 0);
    rig.modem.report(before_mr, 0);
    rig.wait_msg(after, "delivered");
    rig.wait_msg(before, "delivered");
    assert_eq!(
        rig.modem.events("sim_ready").len(),
        2,
        "the PIN once per boot"
    );
    assert!(
        rig.modem.events("pin_wrong").is_empty(),
        "never a wrong PIN"
    );
}

/// The USB port vanishes (the pty closes, the by-id symlink goes): the device is `down` (or
/// `connecting`, while it tries to reopen the port). A text sent meanwhile waits, and a text
/// the network holds meanwhile is not lost.
/// The port reappears under the same symlink (a new pts, a freshly booted modem): the device
/// is `up` again, the waiting text goes out once and is delivered, and the held text arrives.
#[test]
fn a_vanished_port_is_reopened_when_it_comes_back_and_nothing_is_lost() {
    let rig = Rig::start(&[], "");
    rig.wait_up();
    rig.modem.cmd(json!({"cmd": "vanish"}));
    let d = rig.wait("the device to notice the port is gone", WAIT, || {
        let d = rig.device();
        matches!(d["state"].as_str(), Some("down" | "connecting")).then_some(d)
    });
    assert!(d["last_error"].is_string(), "it says why: {d}");
    let to = "+15551230101";
    let id = rig.send(to, "sent while the port was gone");
    rig.modem
        .inbound(json!({"from": "+15557650101", "text": "held by the network", "mode": "cmti"}));
    rig.hold("a text while the port is gone", 2 * POLL, || {
        let m = rig.message(id);
        let s = m["status"].as_str().unwrap_or("");
        if is_final(s) || s == "sent" {
            return Err(format!("it must wait: {m}"));
        }
        let d = rig.device();
        if d["state"] == "up" {
            return Err(format!("the device is up without a port: {d}"));
        }
        Ok(())
    });
    rig.modem.cmd(json!({"cmd": "reappear"}));
    rig.wait_up();
    rig.wait_msg(id, "sent");
    let subs = rig.modem.accepted_to(to);
    assert_eq!(subs.len(), 1, "sent once: {subs:?}");
    rig.modem.report(mr(&subs[0]), 0);
    rig.wait_msg(id, "delivered");
    let texts = rig.wait_inbox(1);
    assert_eq!(
        one_from(&texts, "+15557650101")["body"],
        "held by the network"
    );
}

/// A wrong PIN in the config: the modem refuses it (+CME ERROR: 16), the device does not come
/// up, and its `last_error` says it is the PIN. The SIM is not blocked by the driver trying
/// again and again (three wrong PINs ask for the PUK): it still asks for the PIN after a few
/// reconnect delays.
#[test]
fn a_wrong_pin_keeps_the_device_down_and_says_so() {
    let rig = Rig::start(&["--pin", "1234"], "pin = \"4321\"\n");
    let d = rig.wait("a last_error about the PIN", WAIT, || {
        let d = rig.device();
        d["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("pin"))
            .then_some(d)
    });
    assert_ne!(d["state"], "up", "{d}");
    assert!(
        !rig.modem.events("pin_wrong").is_empty(),
        "the configured PIN was tried"
    );
    // Three reconnect_max: a driver that enters the PIN on every reopen blocks the SIM by then.
    rig.hold("the SIM after a wrong PIN", Duration::from_secs(3), || {
        let sim = rig.modem.state()["sim"].clone();
        if sim != "SIM PIN" {
            return Err(format!(
                "the SIM must still ask for the PIN, not {sim}; wrong PINs: {:?}",
                rig.modem.events("pin_wrong")
            ));
        }
        if rig.device()["state"] == "up" {
            return Err("up with a wrong PIN".into());
        }
        Ok(())
    });
}

/// textgate stops (killed) while three texts, one of them in two parts, wait on the SIM with
/// no indication; started again, it finds them and each arrives exactly once, besides the
/// text received before the stop (which does not come again); the SIM is emptied, each part
/// deleted after it was read.
#[test]
fn texts_left_on_the_sim_across_a_restart_arrive_exactly_once() {
    let mut rig = Rig::start(&[], "");
    rig.wait_up();
    rig.modem
        .inbound(json!({"from": "+15557650110", "text": "before the stop", "mode": "cmti"}));
    rig.wait_inbox(1);
    rig.app.kill();
    let long = numbered(200);
    rig.modem.inbound(
        json!({"from": "+15557650111", "text": "one while stopped", "mode": "stored_silent"}),
    );
    rig.modem
        .inbound(json!({"from": "+15557650112", "text": long, "mode": "stored_silent"}));
    rig.modem.inbound(
        json!({"from": "+15557650113", "text": "three while stopped", "mode": "stored_silent"}),
    );
    let used = rig.modem.storage()["memories"]["SM"]["used"].clone();
    assert_eq!(used, 4, "four parts wait on the SIM");
    rig.app.start();
    rig.wait_up();
    let texts = rig.wait_inbox(4);
    assert_eq!(one_from(&texts, "+15557650110")["body"], "before the stop");
    assert_eq!(
        one_from(&texts, "+15557650111")["body"],
        "one while stopped"
    );
    assert_eq!(one_from(&texts, "+15557650112")["body"], long.as_str());
    assert_eq!(
        one_from(&texts, "+15557650113")["body"],
        "three while stopped"
    );
    let storage = rig.wait_storage_empty();
    assert_deleted_after_reading(&storage, 5);
    rig.wait_sweeps(2);
    let again = rig.inbox();
    assert_eq!(again.len(), 4, "nothing arrives twice: {again:?}");
}

/// `textgate check` accepts a modem device, and refuses bad modem keys by name with a readable
/// reason, exit code 2: a PIN that is not 4 to 8 digits, an unknown message storage, an empty
/// serial port.
#[test]
fn check_refuses_bad_modem_settings_by_name() {
    let dir = TempDir::new("check-modem");
    let good = format!(
        "[server]\nhttp_listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}/textgate.db\"\n\n\
         [[device]]\nname = \"gsm1\"\nkind = \"modem\"\nserial = \"/dev/serial/by-id/usb-test-modem\"\n\
         pin = \"1234\"\nsmsc = \"+15550009999\"\nstorage = \"SM\"\nmode = \"both\"\n\
         command_timeout = \"2s\"\npoll_interval = \"1s\"\n",
        dir.path().display()
    );
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let f = write("good.toml", &good);
    let o = cli(&["check", "--config", &f], None);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    let cases = [
        (
            "pin",
            good.replace("pin = \"1234\"", "pin = \"12\""),
            "device \"gsm1\".pin",
            "digit",
        ),
        (
            "storage",
            good.replace("storage = \"SM\"", "storage = \"XX\""),
            "device \"gsm1\".storage",
            "SM",
        ),
        (
            "serial",
            good.replace(
                "serial = \"/dev/serial/by-id/usb-test-modem\"",
                "serial = \"\"",
            ),
            "device \"gsm1\".serial",
            "empty",
        ),
    ];
    for (name, text, key, hint) in cases {
        let f = write(&format!("{name}.toml"), &text);
        let o = cli(&["check", "--config", &f], None);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {}{err}", stdout(&o));
        assert!(
            err.starts_with(&format!("{f}: ")),
            "{name}: stderr starts with the file: {err}"
        );
        assert!(err.contains(key), "{name}: stderr names {key}: {err}");
        assert!(
            err.contains(hint),
            "{name}: stderr says what is wanted ({hint}): {err}"
        );
    }
}

impl Rig {
    /// Like [`Rig::start`], with emulator `settings` applied before the server starts (so the
    /// driver meets them from its very first command).
    fn start_set(flags: &[&str], settings: Value, extra: &str) -> Rig {
        let modem = Modem::start(flags);
        modem.set(settings);
        let app = spawn_app_users(
            &modem.config(extra),
            &[("alice", "user"), ("root", "admin")],
        );
        Rig { app, modem }
    }

    /// The AT commands the emulator ran that start with `prefix` (case-insensitive).
    fn commands(&self, prefix: &str) -> Vec<String> {
        let prefix = prefix.to_ascii_uppercase();
        self.modem
            .events("command")
            .iter()
            .filter_map(|e| e["text"].as_str())
            .filter(|t| t.to_ascii_uppercase().starts_with(&prefix))
            .map(str::to_string)
            .collect()
    }

    /// The URCs the emulator wrote (text of each), in order.
    fn urcs(&self) -> Vec<String> {
        self.modem
            .events("urc")
            .iter()
            .filter_map(|e| e["text"].as_str().map(str::to_string))
            .collect()
    }

    /// Everything that crossed the pty in one direction (`in`: written by the driver, also
    /// what a silent modem discarded; `out`: the modem's), joined.
    fn transcript(&self, dir: &str) -> String {
        self.modem.cmd(json!({"cmd": "transcript", "last": 5000}))["transcript"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter(|c| c["dir"] == dir)
                    .filter_map(|c| c["data"].as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The device's `reopened_total` detail.
    fn reopened(&self) -> i64 {
        let d = self.device();
        d["details"]["reopened_total"]
            .as_i64()
            .unwrap_or_else(|| self.fail(&format!("no reopened_total in {d}")))
    }

    /// Sends a text, waits for it to be `sent`, has the network report every part of it
    /// delivered and waits for `delivered`; insists each part was accepted exactly once.
    fn send_and_deliver(&self, to: &str, body: &str, parts: usize) {
        let id = self.send(to, body);
        self.wait_msg(id, "sent");
        let subs = self.modem.submits_to(to);
        if subs.len() != parts || subs.iter().any(|s| s["outcome"] != "ok") {
            self.fail(&format!(
                "{parts} part(s) to {to}, each given to AT+CMGS once and accepted: {subs:?}"
            ));
        }
        let joined: String = self
            .modem
            .accepted_to(to)
            .iter()
            .map(|s| s["text"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(joined, body, "what the modem sent to {to}");
        for s in &subs {
            self.modem.report(mr(s), 0);
        }
        self.wait_msg(id, "delivered");
    }
}

/// How many received texts (SMS-DELIVER) the emulator's storage holds in `mem`.
fn delivers_in(storage: &Value, mem: &str) -> usize {
    storage["memories"][mem]["entries"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|x| x["type"] == "deliver").count())
}

/// Seven texts for a SIM that holds three: the network holds them while the modem searches
/// for a network, then hands them over at once, and stores what fits. Every text must arrive
/// exactly once, the SIM must end empty (each text read before it was deleted) and the
/// network must hold nothing back. `full_urc`: what the modem says when its storage is full.
fn seven_texts_through_a_sim_that_holds_three(profile: &str, full_urc: Option<&str>) {
    let rig = Rig::start(&["--profile", profile, "--storage-size", "3"], "");
    rig.wait_up();
    rig.modem.set(json!({"registered": 2}));
    let n = 7;
    let from = |i: usize| format!("+155576502{i:02}");
    for i in 0..n {
        rig.modem.inbound(
            json!({"from": from(i), "text": format!("text {} of {n} ({profile})", i + 1),
            "mode": "cmti"}),
        );
    }
    rig.modem.set(json!({"registered": 1}));
    let texts = rig.wait_inbox(n);
    for i in 0..n {
        assert_eq!(
            one_from(&texts, &from(i))["body"],
            format!("text {} of {n} ({profile})", i + 1)
        );
    }
    let full = rig.modem.events("storage_full");
    assert!(
        !full.is_empty(),
        "{profile}: the SIM was full at least once (otherwise this proves nothing)"
    );
    if let Some(urc) = full_urc {
        let said = rig.urcs();
        assert!(
            said.iter().any(|u| u == urc),
            "{profile}: the modem announced its full storage with {urc}: {said:?}"
        );
    }
    let storage = rig.wait_storage_empty();
    assert_deleted_after_reading(&storage, n);
    assert_eq!(
        storage["pending"].as_array().map(Vec::len),
        Some(0),
        "{profile}: the network holds nothing back: {}",
        storage["pending"]
    );
    rig.wait_sweeps(1);
    let again = rig.inbox();
    assert_eq!(
        again.len(),
        n,
        "{profile}: nothing arrives twice: {again:?}"
    );
}

/// A SIM that fills up (27.005: no index, no +CMTI; the network keeps the text and tries again
/// once memory is free, TS 24.011 RP-SMMA) on a modem that says nothing about it (SIMCom):
/// seven texts through three slots each arrive exactly once, and the SIM ends empty.
#[test]
fn a_full_sim_loses_nothing_texts_come_once_as_slots_are_freed() {
    seven_texts_through_a_sim_that_holds_three("sim800", None);
}

/// The same with modems that announce their full storage: Huawei `^SMMEMFULL: "SM"` and
/// Quectel `+QIND: "smsfull","SM"` (the driver sweeps on them). Every text arrives exactly
/// once and the SIM ends empty.
#[test]
fn a_full_sim_announced_by_the_modem_loses_nothing() {
    // Each on its own emulator and server, side by side.
    std::thread::scope(|s| {
        for (profile, urc) in [
            ("e3372", "^SMMEMFULL: \"SM\""),
            ("ec25", "+QIND: \"smsfull\",\"SM\""),
        ] {
            s.spawn(move || seven_texts_through_a_sim_that_holds_three(profile, Some(urc)));
        }
    });
}

/// A modem whose echo stays on after ATE0 (python-gsmmodem issue #56) and that chatters
/// vendor URCs every ~150 ms (Huawei `^RSSI`, `^MODE`, `^BOOT`, `^DSFLOWRPT`): a text and a
/// two-part text go out, each part once and whole; a text announced with +CMTI, one handed
/// over with +CMT and a two-part one arrive, each exactly once; the reports deliver both sent
/// texts. The echo (of AT+CMGS) and the noise really were there. The noise is never taken
/// for a restart: the modem is not set up again (`reopened_total` stays 0), also after three
/// more `^BOOT:` lines.
#[test]
fn a_stuck_echo_and_vendor_noise_neither_break_nor_double_anything() {
    let rig = Rig::start_set(
        &["--profile", "e3372", "--noise"],
        json!({"echo_stuck_on": true, "noise_ms": 150}),
        "",
    );
    rig.wait_up();
    rig.send_and_deliver("+15551230121", "through the noise", 1);
    let long = numbered(200);
    rig.send_and_deliver("+15551230122", &long, 2);
    rig.modem
        .inbound(json!({"from": "+15557650121", "text": "announced", "mode": "cmti"}));
    rig.modem
        .inbound(json!({"from": "+15557650122", "text": "handed over", "mode": "cmt"}));
    rig.modem
        .inbound(json!({"from": "+15557650123", "text": long, "mode": "cmti"}));
    let texts = rig.wait_inbox(3);
    assert_eq!(one_from(&texts, "+15557650121")["body"], "announced");
    assert_eq!(one_from(&texts, "+15557650122")["body"], "handed over");
    assert_eq!(one_from(&texts, "+15557650123")["body"], long.as_str());
    let storage = rig.wait_storage_empty();
    assert_deleted_after_reading(&storage, 3);
    rig.wait_sweeps(1);
    assert_eq!(rig.inbox().len(), 3, "nothing arrives twice");
    assert_eq!(rig.modem.submits().len(), 3, "each part sent once");

    let echoed = rig.transcript("out");
    assert!(
        echoed.contains("AT+CMGS="),
        "the modem echoed AT+CMGS after ATE0 (the stuck echo was on)"
    );
    let noise = rig.urcs().iter().filter(|u| u.starts_with('^')).count();
    assert!(noise >= 5, "the modem chattered: {noise} vendor URCs");
    // Huawei's `^BOOT:` is periodic noise (ModemManager's Huawei plugin ignores it), not a
    // restart: three of them, mostly while the driver is idle.
    let boots = || {
        rig.urcs()
            .iter()
            .filter(|u| u.starts_with("^BOOT:"))
            .count()
    };
    let before = boots();
    rig.modem
        .set(json!({"noise_lines": ["^BOOT:20952155,0,0,0,72"]}));
    rig.wait("three more ^BOOT URCs", WAIT, || {
        (boots() >= before + 3).then_some(())
    });
    let reopened = rig.reopened();
    if reopened != 0 {
        rig.fail(&format!(
            "noise is not taken for a restart, but the modem was set up again {reopened} time(s)"
        ));
    }
}

/// A modem that takes 300 ms over every answer (and the network as long again over a send),
/// with `command_timeout` 1 s: it comes up, a text goes out once and is delivered,
/// a text announced with +CMTI arrives once, and the slowness is never taken for a hung
/// modem (the port is not reopened).
#[test]
fn slow_answers_within_the_command_timeout_are_waited_for() {
    let rig = Rig::start_set(&[], json!({"slow_ms": 300}), "");
    rig.wait_up();
    rig.send_and_deliver("+15551230131", "slow but sure", 1);
    rig.modem
        .inbound(json!({"from": "+15557650131", "text": "slowly", "mode": "cmti"}));
    let texts = rig.wait_inbox(1);
    assert_eq!(one_from(&texts, "+15557650131")["body"], "slowly");
    rig.wait_storage_empty();
    assert_eq!(rig.reopened(), 0, "a slow modem is not a hung one");
    assert_eq!(rig.device()["state"], "up");
}

/// A Quectel EC25 (`--profile ec25`) with `storage = "ME"`: texts are announced as
/// `+CMTI: "ME",<i>` (serialport-gsm issues #12, #92) and read from ME; status reports are
/// stored in "SR" but announced as `+CDSI: "SM",<i>` (asterisk-chan-quectel PR #75). A text
/// arrives once and leaves ME; a sent text's report is found and delivers it, and SR ends
/// empty.
#[test]
fn a_quectel_modem_storing_in_me_and_reports_in_sr_announced_as_sm_works() {
    let rig = Rig::start_set(
        &["--profile", "ec25"],
        json!({"report_storage": "SR", "cdsi_label": "SM"}),
        "storage = \"ME\"\n",
    );
    rig.wait_up();
    rig.modem
        .inbound(json!({"from": "+15557650141", "text": "stored in ME", "mode": "cmti"}));
    let texts = rig.wait_inbox(1);
    assert_eq!(one_from(&texts, "+15557650141")["body"], "stored in ME");
    let said = rig.urcs();
    assert!(
        said.iter().any(|u| u.starts_with("+CMTI: \"ME\",")),
        "announced in ME: {said:?}"
    );
    let storage = rig.wait_storage_empty();
    assert_deleted_after_reading(&storage, 1);
    assert_eq!(storage["deleted"][0]["mem"], "ME", "{}", storage["deleted"]);

    let to = "+15551230141";
    let id = rig.send(to, "reported from SR");
    rig.wait_msg(id, "sent");
    let subs = rig.modem.accepted_to(to);
    assert_eq!(subs.len(), 1, "{subs:?}");
    rig.modem.report(mr(&subs[0]), 0);
    rig.wait("the report stored in SR", WAIT, || {
        rig.urcs()
            .iter()
            .any(|u| u.starts_with("+CDSI: \"SM\","))
            .then_some(())
    });
    // Found at once or by a sweep: within a few polls.
    rig.wait(
        "the report to be read from SR",
        5 + 5 * POLL.as_secs(),
        || {
            rig.modem
                .events("read")
                .iter()
                .any(|e| e["mem"] == "SR")
                .then_some(())
        },
    );
    rig.wait_msg(id, "delivered");
    rig.wait("SR to be emptied", WAIT, || {
        (rig.modem.storage()["memories"]["SR"]["used"] == 0).then_some(())
    });
}

/// `mode = "receive"` on the only device: a text sent through the API is never given to the
/// modem (no AT+CMGS at all) but fails with a reason (no device of its route can send),
/// while a text announced with +CMTI arrives once and leaves the SIM.
#[test]
fn a_receive_only_modem_is_never_given_a_text_to_send() {
    let rig = Rig::start(&[], "mode = \"receive\"\n");
    rig.wait_up();
    let r = rig
        .app
        .send(&json!({"to": "+15551230151", "body": "nobody can send this"}));
    if r.status == 202 {
        let id = r.json()["messages"][0]["id"].as_i64().expect("an id");
        let m = rig.wait("the text to fail", WAIT, || {
            let m = rig.message(id);
            let s = m["status"].as_str().unwrap_or("").to_string();
            if s == "sent" || s == "delivered" {
                rig.fail(&format!("a receive-only modem sent it: {m}"));
            }
            is_final(&s).then_some(m)
        });
        assert_eq!(m["status"], "failed", "{m}");
        assert!(m["device"].is_null(), "never handed to a device: {m}");
        assert!(
            m["error"].as_str().is_some_and(|e| e.contains("route")),
            "it says no device can take it: {m}"
        );
    } else {
        assert!(
            (400..500).contains(&r.status),
            "refused as the caller's problem: {} {}",
            r.status,
            r.text()
        );
    }
    rig.modem
        .inbound(json!({"from": "+15557650151", "text": "still received", "mode": "cmti"}));
    let texts = rig.wait_inbox(1);
    assert_eq!(one_from(&texts, "+15557650151")["body"], "still received");
    rig.wait_storage_empty();
    rig.wait_sweeps(1);
    let cmgs = rig.commands("AT+CMGS");
    assert!(
        cmgs.is_empty(),
        "no AT+CMGS to a receive-only modem: {cmgs:?}"
    );
    assert!(rig.modem.submits().is_empty());
}

/// `mode = "send"`: texts go out and their reports deliver them, but received texts are
/// left on the SIM: one announced with +CMTI and one stored silently are still there (and
/// none in the inbox) after a few polls.
#[test]
fn a_send_only_modem_leaves_received_texts_on_the_sim() {
    let rig = Rig::start(&[], "mode = \"send\"\n");
    rig.wait_up();
    rig.modem
        .inbound(json!({"from": "+15557650161", "text": "left on the SIM", "mode": "cmti"}));
    rig.modem.inbound(
        json!({"from": "+15557650162", "text": "also left there", "mode": "stored_silent"}),
    );
    rig.send_and_deliver("+15551230161", "sent by a send-only modem", 1);
    rig.hold("texts received by a send-only modem", 2 * POLL, || {
        let inbox = rig.inbox();
        if !inbox.is_empty() {
            return Err(format!("a send-only modem receives nothing: {inbox:?}"));
        }
        let st = rig.modem.storage();
        match delivers_in(&st, "SM") {
            2 => Ok(()),
            n => Err(format!(
                "both texts stay on the SIM, {n} there; deleted: {}",
                st["deleted"]
            )),
        }
    });
}

/// Texts handed over directly (+CMT) and a status report handed over directly (+CDS) with
/// `+CSMS=1` (set by `init`), where the modem waits for AT+CNMA (27.005 §3.4.4) and the
/// network for the RP-ACK: each is acknowledged once, in time (no ack timeout, no
/// redelivery, no negative ack), the texts arrive exactly once and the report delivers its
/// message.
#[test]
fn direct_deliveries_are_acknowledged_once_when_the_modem_asks_for_it() {
    let rig = Rig::start(&[], "init = [\"AT+CSMS=1\"]\n");
    rig.wait_up();
    assert_eq!(rig.modem.state()["csms"], 1, "init set +CSMS=1");
    rig.modem
        .inbound(json!({"from": "+15557650171", "text": "direct one", "mode": "cmt"}));
    rig.modem
        .inbound(json!({"from": "+15557650172", "text": "direct two", "mode": "cmt"}));
    let texts = rig.wait_inbox(2);
    assert_eq!(one_from(&texts, "+15557650171")["body"], "direct one");
    assert_eq!(one_from(&texts, "+15557650172")["body"], "direct two");
    let to = "+15551230171";
    let id = rig.send(to, "reported directly");
    rig.wait_msg(id, "sent");
    let subs = rig.modem.accepted_to(to);
    assert_eq!(subs.len(), 1, "{subs:?}");
    rig.modem
        .cmd(json!({"cmd": "report", "mr": mr(&subs[0]), "status": 0, "mode": "cds"}));
    rig.wait_msg(id, "delivered");
    rig.wait("three acknowledgements", WAIT, || {
        (rig.modem.events("ack").len() >= 3).then_some(())
    });
    // The modem cancels its ack timer on AT+CNMA, so a missed or late acknowledgement
    // shows before the third ack; one more sweep for anything arriving again.
    rig.wait_sweeps(1);
    let acks = rig.modem.events("ack");
    assert_eq!(acks.len(), 3, "one AT+CNMA each: {acks:?}");
    for kind in ["ack_timeout", "nack", "redeliver_scheduled"] {
        let e = rig.modem.events(kind);
        assert!(e.is_empty(), "no {kind}: {e:?}");
    }
    assert_eq!(rig.inbox().len(), 2, "nothing arrives twice");
    assert_eq!(
        rig.modem.state()["cnmi"][1],
        1,
        "the modem still announces texts (+CNMI <mt> untouched)"
    );
}

/// A two-part text handed over directly (+CMT, one part at a time) with `+CSMS=1`: the
/// network sends part 2 only once part 1 is acknowledged (TS 24.011, one MT transfer per
/// RP-ACK), so part 1 must be acknowledged before the text is whole. The text arrives once,
/// whole, each part acknowledged in time, with no ack timeout (which would make the modem
/// turn its indications off, 27.005 §3.4.4) and no redelivery.
#[test]
fn a_long_text_handed_over_directly_is_acknowledged_part_by_part() {
    let rig = Rig::start(&[], "init = [\"AT+CSMS=1\"]\n");
    rig.wait_up();
    let long = numbered(200);
    rig.modem
        .inbound(json!({"from": "+15557650181", "text": long, "mode": "cmt"}));
    let texts = rig.wait_inbox(1);
    let t = one_from(&texts, "+15557650181");
    assert_eq!(
        (
            t["body"].as_str(),
            t["parts"].as_i64(),
            t["partial"].as_bool()
        ),
        (Some(long.as_str()), Some(2), Some(false)),
        "{t}"
    );
    rig.wait(
        "both parts acknowledged, or an acknowledgement missed",
        WAIT,
        || {
            let acks = rig.modem.events("ack").len();
            (acks >= 2 || !rig.modem.events("ack_timeout").is_empty()).then_some(())
        },
    );
    for kind in ["ack_timeout", "nack", "redeliver_scheduled"] {
        let e = rig.modem.events(kind);
        if !e.is_empty() {
            rig.fail(&format!(
                "every part acknowledged in time, but the modem logged {kind}: {e:?}; the modem's \
                 +CNMI is now {}",
                rig.modem.state()["cnmi"]
            ));
        }
    }
    let acks = rig.modem.events("ack");
    assert_eq!(acks.len(), 2, "one AT+CNMA a part: {acks:?}");
    assert_eq!(rig.inbox().len(), 1, "nothing arrives twice");
}

/// `reset_command = "AT+CFUN=1,1"`: a modem that stops answering (silent: it discards what
/// it reads, which the emulator's transcript still shows) is sent the reset command once it
/// has failed twice in a row: after the session that noticed the silence, a set-up that got
/// no answer to AT (three tries), then ESC and the command. Never while it answers. Answering
/// again, it comes back `up` and sends.
#[test]
fn a_modem_that_does_not_answer_twice_is_sent_the_reset_command() {
    let rig = Rig::start(&[], "reset_command = \"AT+CFUN=1,1\"\n");
    rig.wait_up();
    let answered = rig.transcript("in");
    assert!(
        !answered.contains("AT+CFUN=1,1"),
        "no reset while the modem answers"
    );
    rig.modem.set(json!({"silent": true}));
    let written = rig.wait(
        "the reset command, written to the silent modem",
        WAIT,
        || {
            let t = rig.transcript("in");
            t.contains("AT+CFUN=1,1").then_some(t)
        },
    );
    // What the driver wrote since the modem went silent, up to the reset.
    let silent = written.get(answered.len()..).unwrap_or("");
    let before_reset = &silent[..silent.find("AT+CFUN=1,1").unwrap_or(0)];
    let tries = before_reset.matches("AT\r").count();
    if tries < 3 || !before_reset.ends_with('\x1b') {
        rig.fail(&format!(
            "the reset after a failed set-up (3 × AT), behind an ESC; written while silent: \
             {silent:?}"
        ));
    }
    let d = rig.device();
    assert_ne!(d["state"], "up", "{d}");
    rig.modem.set(json!({"silent": false}));
    rig.wait_up();
    rig.send_and_deliver("+15551230191", "after the reset", 1);
}
