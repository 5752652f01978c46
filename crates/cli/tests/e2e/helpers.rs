//! Starting the real binary and talking to it.
//!
//! - [`spawn_app`] / [`spawn_app_with`]: a fresh temp dir and database, users and API keys
//!   made with the CLI, then `textgate serve` on a free port; the child is killed on drop.
//! - [`http`]: a tiny blocking HTTP/1.1 client (one connection per request,
//!   `Connection: close`), so a failed request is plainly an `Err` and nothing is pooled
//!   across a server restart.
//! - [`cli`]: runs a `textgate` subcommand and returns its output.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_textgate")
}

/// A short random-enough suffix for temp dirs and schema names.
pub fn rand_suffix() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("tg-e2e-{tag}-{}", rand_suffix()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `Command` for the binary with the environment that would override the config removed.
pub fn command() -> Command {
    let mut c = Command::new(bin());
    test_env(&mut c);
    c
}

/// The environment of every `textgate` the tests run: what would override the config
/// removed, the log filter, and the first administrator's password.
pub fn test_env(c: &mut Command) {
    for k in [
        "TEXTGATE_DATABASE_URL",
        "TEXTGATE_HTTP_LISTEN",
        "TEXTGATE_WEBHOOK_SECRET",
        "TEXTGATE_SERVER",
        "TEXTGATE_API_KEY",
    ] {
        c.env_remove(k);
    }
    // TEXTGATE_TEST_LOG=debug (or a filter) shows more in a failing test's log.
    c.env(
        "TEXTGATE_LOG",
        std::env::var("TEXTGATE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
    );
    c.env("TEXTGATE_ADMIN_PASSWORD", "admin-password-for-tests");
}

/// Runs `textgate ARGS…` with optional standard input; returns its output.
pub fn cli(args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = command();
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run textgate");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().unwrap();
        s.write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("wait for textgate")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `textgate user add NAME --role ROLE` then `apikey create`; returns the key.
pub fn create_user_with_key(config: &Path, name: &str, role: &str) -> String {
    let cfg = config.to_str().unwrap();
    let o = cli(
        &["user", "add", name, "--role", role, "--config", cfg],
        None,
    );
    assert!(
        o.status.success(),
        "user add {name} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = cli(&["apikey", "create", "--user", name, "--config", cfg], None);
    assert!(
        o.status.success(),
        "apikey create {name} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let out = stdout(&o);
    let key = out
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .expect("apikey create printed nothing")
        .to_string();
    assert!(
        !key.contains(' '),
        "apikey create must print the key alone on a line, got {out:?}"
    );
    key
}

/// Which database a test app runs on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// How to start a test app.
pub struct Opts<'a> {
    /// Appended to the config right after the `[server]` keys the helper writes: leading
    /// `key = value` lines are more `[server]` keys, then any tables. Without a `[[device]]`
    /// a loopback device named `loopback` is added.
    pub extra: &'a str,
    /// Users to create before the server starts, with their roles; the first is the app's
    /// default caller.
    pub users: &'a [(&'a str, &'a str)],
    pub db: Db,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            extra: "",
            users: &[("alice", "user")],
            db: Db::Sqlite,
        }
    }
}

/// The base URL of the test PostgreSQL database.
pub fn postgres_base() -> String {
    std::env::var("TEXTGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn psql(sql: &str) -> Output {
    Command::new("psql")
        .args([&postgres_base(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .expect("psql must be installed for the PostgreSQL tests")
}

/// A fresh schema in the test database, dropped on drop.
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    pub fn new() -> PgSchema {
        let name = format!("tg_e2e_{}", rand_suffix());
        let o = psql(&format!("CREATE SCHEMA {name}"));
        assert!(
            o.status.success(),
            "cannot create a schema in PostgreSQL at {} (is it running?): {}",
            postgres_base(),
            stderr(&o)
        );
        PgSchema { name }
    }

    pub fn url(&self) -> String {
        let base = postgres_base();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-csearch_path%3D{}", self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

/// A SQLite database with these users and one API key each, made by the CLI once per test
/// run and copied by each app that wants the same users. Lives under Cargo's target tmp dir.
fn sqlite_template(users: &[(&str, &str)]) -> (PathBuf, HashMap<String, String>) {
    type Templates = HashMap<String, (PathBuf, HashMap<String, String>)>;
    static TEMPLATES: Mutex<Option<Templates>> = Mutex::new(None);
    let sig = users
        .iter()
        .map(|(n, r)| format!("{n}:{r}"))
        .collect::<Vec<_>>()
        .join(",");
    // Held while building, so two tests never build the same template at once.
    let mut guard = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(t) = map.get(&sig) {
        return t.clone();
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("textgate-e2e-templates");
    if map.is_empty() {
        // Templates of earlier runs, if an hour old (another run may be going on now).
        if let Ok(rd) = std::fs::read_dir(&root) {
            for e in rd.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(3600));
                if old {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let tdir = root.join(format!("{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&tdir).unwrap();
    let config = tdir.join("template.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndatabase_url = \"sqlite://{}/textgate.db\"\n\n[[device]]\nname = \"loopback\"\nkind = \"loopback\"\n",
            tdir.display()
        ),
    )
    .unwrap();
    let keys: HashMap<String, String> = users
        .iter()
        .map(|(name, role)| (name.to_string(), create_user_with_key(&config, name, role)))
        .collect();
    map.insert(sig, (tdir.clone(), keys.clone()));
    (tdir, keys)
}

/// A running (or killed) `textgate serve`.
pub struct App {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The SMTP listener's `127.0.0.1:PORT`, when `[smtp]` is on; else empty.
    pub smtp: String,
    /// The first user's API key.
    pub key: String,
    /// Every user's API key, by name.
    pub keys: HashMap<String, String>,
    /// `[server] metrics_listen`'s address, when set.
    pub metrics: String,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Whether the next start leaves the log's level to the file's `[log] level` (else the
    /// tests' `TEXTGATE_LOG`, `warn` by default, wins over it).
    pub log_from_config: bool,
    /// What runs the server: the binary under test, or another command line that ends in a
    /// `textgate` (`serve --config FILE` is added).
    program: Vec<OsString>,
    child: Option<Child>,
    starts: u32,
    // Dropped last: the server must be gone before its database is.
    _pg: Option<PgSchema>,
    pub dir: TempDir,
}

/// Starts an app with the default options plus `config_extra`.
pub fn spawn_app(config_extra: &str) -> App {
    spawn_app_with(Opts {
        extra: config_extra,
        ..Opts::default()
    })
}

/// Starts an app with these users (the first is the default caller) plus `config_extra`.
pub fn spawn_app_users(config_extra: &str, users: &[(&str, &str)]) -> App {
    spawn_app_with(Opts {
        extra: config_extra,
        users,
        ..Opts::default()
    })
}

/// Starts an app on a fresh PostgreSQL schema.
pub fn spawn_app_pg(config_extra: &str) -> App {
    spawn_app_with(Opts {
        extra: config_extra,
        db: Db::Postgres,
        ..Opts::default()
    })
}

pub fn spawn_app_with(opts: Opts<'_>) -> App {
    let dir = TempDir::new("app");
    let pg = (opts.db == Db::Postgres).then(PgSchema::new);
    let database_url = match &pg {
        Some(s) => s.url(),
        None => format!("sqlite://{}/textgate.db", dir.path().display()),
    };
    let mut text = format!(
        "[server]\nhttp_listen = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\ndefault_country = \"US\"\n{}\n",
        opts.extra
    );
    if !opts.extra.contains("[[device]]") {
        text.push_str("\n[[device]]\nname = \"loopback\"\nkind = \"loopback\"\n");
    }
    let config = dir.path().join("textgate.toml");
    std::fs::write(&config, &text).unwrap();
    let keys = match &pg {
        None if !opts.users.is_empty() => {
            // A copy of a database made once by the CLI with these users (password hashing
            // is slow in a debug build, and every test wants the same users).
            let (tdir, keys) = sqlite_template(opts.users);
            for e in std::fs::read_dir(&tdir).unwrap() {
                let e = e.unwrap();
                let name = e.file_name();
                if name.to_string_lossy().starts_with("textgate.db") {
                    std::fs::copy(e.path(), dir.path().join(&name)).unwrap();
                }
            }
            keys
        }
        _ => opts
            .users
            .iter()
            .map(|(name, role)| (name.to_string(), create_user_with_key(&config, name, role)))
            .collect(),
    };
    let first = opts
        .users
        .first()
        .map(|(n, _)| keys[*n].clone())
        .unwrap_or_default();
    let log = dir.path().join("server.log");
    let mut app = App {
        base: String::new(),
        addr: String::new(),
        smtp: String::new(),
        metrics: String::new(),
        key: first,
        keys,
        config,
        log,
        log_from_config: false,
        program: vec![bin().into()],
        child: None,
        starts: 0,
        _pg: pg,
        dir,
    };
    app.start();
    app
}

impl App {
    /// Starts `textgate serve` on this app's config and waits for its listening line.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(&self.program[0]);
        command.args(&self.program[1..]);
        test_env(&mut command);
        if self.log_from_config {
            command.env_remove("TEXTGATE_LOG");
        }
        let mut child = command
            .args(["serve", "--config", self.config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start textgate serve");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        // Reads stdout to the end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let url = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("textgate listening on ") {
                        break url.trim().to_string();
                    }
                    if let Some(addr) = line.strip_prefix("textgate smtp listening on ") {
                        self.smtp = addr.trim().to_string();
                    }
                    if let Some(addr) = line.strip_prefix("textgate metrics listening on http://") {
                        self.metrics = addr.trim().to_string();
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    panic!(
                        "textgate serve ended ({status:?}) before listening; stdout: {seen:?}; log:\n{}",
                        self.log_text()
                    );
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "textgate serve did not print its listening line; stdout: {seen:?}; log:\n{}",
                    self.log_text()
                );
            }
        };
        self.addr = url
            .strip_prefix("http://")
            .expect("the listening line has an http:// URL")
            .to_string();
        self.base = url;
        self.child = Some(child);
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILLs the server (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the server to exit; how long it took, and whether it
    /// exited with success.
    pub fn terminate(&mut self) -> (Duration, bool) {
        let mut c = self.child.take().expect("the server is running");
        let start = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM failed");
        let status = c.wait().expect("wait for textgate");
        (start.elapsed(), status.success())
    }

    /// Kills and starts again on the same config and database.
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A server on a config of the caller's making (in `dir`), called with `key`.
    pub fn on_config(dir: TempDir, config: PathBuf, key: String) -> App {
        App::with_program(dir, config, key, vec![bin().into()])
    }

    /// The same, run by `program`: another `textgate` binary, or a command line that runs
    /// one (as another user, say).
    pub fn with_program(dir: TempDir, config: PathBuf, key: String, program: Vec<OsString>) -> App {
        let mut app = App {
            base: String::new(),
            addr: String::new(),
            smtp: String::new(),
            metrics: String::new(),
            key,
            keys: HashMap::new(),
            log: dir.path().join("server.log"),
            config,
            log_from_config: false,
            program,
            child: None,
            starts: 0,
            _pg: None,
            dir,
        };
        app.start();
        app
    }

    /// Another node on this app's database (PostgreSQL): the same config, its own listener
    /// and folder, with `server_extra` added to `[server]`. The schema stays the first
    /// app's: drop this node first.
    pub fn another_node(&self, server_extra: &str) -> App {
        let dir = TempDir::new("node");
        let text = std::fs::read_to_string(&self.config).unwrap().replacen(
            "[server]\n",
            &format!("[server]\n{server_extra}\n"),
            1,
        );
        let config = dir.path().join("textgate.toml");
        std::fs::write(&config, text).unwrap();
        let mut app = App::on_config(dir, config, self.key.clone());
        app.keys = self.keys.clone();
        app
    }

    /// Writes a config file next to the app's and returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn key_of(&self, user: &str) -> &str {
        self.keys
            .get(user)
            .unwrap_or_else(|| panic!("no user {user} in this app"))
    }

    /// A request as the default user.
    pub fn req(&self, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.req_as(&self.key, method, path, body, &[])
    }

    /// A request with this key and extra headers.
    pub fn req_as(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let auth = format!("Bearer {key}");
        let mut h: Vec<(&str, &str)> = vec![("Authorization", auth.as_str())];
        if body.is_some() {
            h.push(("Content-Type", "application/json"));
        }
        h.extend_from_slice(headers);
        http(&self.addr, method, path, &h, body.map(str::as_bytes))
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}; log:\n{}", self.log_text()))
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None)
    }

    /// `POST /api/v1/messages` as the default user.
    pub fn send(&self, body: &Value) -> Resp {
        self.req("POST", "/api/v1/messages", Some(&body.to_string()))
    }

    /// Sends and insists on 202; returns the `messages` array.
    pub fn send_ok(&self, body: &Value) -> Vec<Value> {
        let r = self.send(body);
        assert_eq!(r.status, 202, "send {body} answered {}", r.text());
        r.json()["messages"]
            .as_array()
            .expect("a 202 has a messages array")
            .clone()
    }

    /// `GET /api/v1/messages/{id}` (200 insisted on).
    pub fn message(&self, id: i64) -> Value {
        let r = self.get(&format!("/api/v1/messages/{id}"));
        assert_eq!(r.status, 200, "GET message {id}: {}", r.text());
        r.json()
    }

    /// Polls a message until its status is final; returns it.
    pub fn wait_final(&self, id: i64) -> Value {
        self.wait_until(id, |m| is_final(m["status"].as_str().unwrap_or("")))
    }

    /// Polls a message until `pred` holds.
    pub fn wait_until(&self, id: i64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.message(id);
            if pred(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "message {id} did not reach the expected state; last seen {m}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Every message the key's user may list, by id, paging through with the cursor.
    pub fn all_messages(&self, key: &str) -> HashMap<i64, Value> {
        let mut out = HashMap::new();
        let mut cursor = String::new();
        loop {
            let r = self.req_as(
                key,
                "GET",
                &format!("/api/v1/messages?limit=1000&cursor={cursor}"),
                None,
                &[],
            );
            assert_eq!(r.status, 200, "list: {}", r.text());
            let v = r.json();
            for m in v["messages"].as_array().unwrap() {
                out.insert(m["id"].as_i64().unwrap(), m.clone());
            }
            if v["has_more"] != Value::Bool(true) {
                return out;
            }
            cursor = v["next_cursor"].as_str().unwrap().to_string();
        }
    }

    /// The rows of `query` on this app's PostgreSQL schema, one line each (`psql -At`).
    /// Panics for a SQLite app.
    pub fn sql(&self, query: &str) -> String {
        let url = self
            ._pg
            .as_ref()
            .expect("sql() is for apps on PostgreSQL")
            .url();
        let o = Command::new("psql")
            .args([&url, "-v", "ON_ERROR_STOP=1", "-At", "-c", query])
            .stdin(Stdio::null())
            .output()
            .expect("psql must be installed for the PostgreSQL tests");
        assert!(o.status.success(), "{query}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// How many messages the default user's list shows.
    pub fn count(&self) -> usize {
        self.all_messages(&self.key).len()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn is_final(s: &str) -> bool {
    matches!(
        s,
        "delivered" | "undelivered" | "failed" | "expired" | "cancelled"
    )
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Insists on a JSON error with this status and code; returns the message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got {}: {}",
            self.status,
            self.text()
        );
        let v = self.json();
        assert_eq!(
            v["error"]["code"].as_str(),
            Some(code),
            "expected error code {code}: {v}"
        );
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("the error has no message: {v}"));
        assert!(!msg.is_empty(), "empty error message: {v}");
        msg.to_string()
    }
}

/// One HTTP/1.1 request on a new connection.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.set_write_timeout(Some(Duration::from_secs(20)))?;
    s.set_nodelay(true)?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or(b"");
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers in the answer"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let nl = rest[i..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("truncated chunk"))?;
            let size_s = std::str::from_utf8(&rest[i..i + nl]).map_err(|_| bad("chunk size"))?;
            let size = usize::from_str_radix(size_s.split(';').next().unwrap().trim(), 16)
                .map_err(|_| bad("chunk size"))?;
            i += nl + 2;
            if size == 0 {
                break;
            }
            if rest.len() < i + size {
                return Err(bad("truncated chunk body"));
            }
            out.extend_from_slice(&rest[i..i + size]);
            i += size + 2;
        }
        out
    } else {
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        match len {
            Some(n) if rest.len() < n => return Err(bad("truncated body")),
            Some(n) => rest[..n].to_vec(),
            None => rest.to_vec(),
        }
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A private CA and a certificate it signed for 127.0.0.1 and localhost, made with the
/// `openssl` command in `dir`: `(certificate, key, CA certificate)` paths. (webpki refuses a
/// self-signed CA certificate used as a server's own, hence the CA.)
pub fn test_certificate(dir: &Path) -> (String, String, String) {
    let p = |f: &str| dir.join(f).to_string_lossy().to_string();
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let (ca_key, ca, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("key.pem"),
        p("leaf.csr"),
        p("cert.pem"),
        p("ext.cnf"),
    );
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=textgate test CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-CAcreateserial",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    ];
    for args in steps {
        let ok = Command::new("openssl")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "openssl {args:?}");
    }
    (cert, key, ca)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `ms` as RFC 3339 UTC with a `Z` (whole seconds).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` strictly (UTC with `Z` only) into milliseconds.
pub fn parse_rfc3339_z(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = &s[19..s.len() - 1];
    let ms = if frac.is_empty() {
        0
    } else {
        let digits = frac.strip_prefix('.')?;
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let three: String = digits.chars().chain("000".chars()).take(3).collect();
        three.parse().ok()?
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // days_from_civil
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if mo > 2 { mo - 3 } else { mo + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) * 1000) + ms)
}

#[test]
fn time_helpers_round_trip() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(
        parse_rfc3339_z("2030-01-01T12:00:00Z"),
        Some(1_893_499_200_000)
    );
    assert_eq!(rfc3339(1_893_499_200_000), "2030-01-01T12:00:00Z");
    assert_eq!(
        parse_rfc3339_z("2024-02-29T23:59:59.250Z"),
        Some(1_709_251_199_250)
    );
    assert_eq!(parse_rfc3339_z("2024-02-29T23:59:59+00:00"), None);
    let now = now_ms() / 1000 * 1000;
    assert_eq!(parse_rfc3339_z(&rfc3339(now)), Some(now));
}

/// A form POST to the web UI, as a browser on this site sends it, with a session cookie.
pub fn web_form(app: &App, path: &str, cookie: Option<&str>, form: &str) -> Resp {
    let origin = app.base.clone();
    let mut headers = vec![
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", origin.as_str()),
    ];
    let cookie = cookie.map(|c| format!("textgate_session={c}"));
    if let Some(c) = &cookie {
        headers.push(("Cookie", c.as_str()));
    }
    http(&app.addr, "POST", path, &headers, Some(form.as_bytes())).unwrap()
}

/// A web UI page, with a session cookie.
pub fn web_get(app: &App, path: &str, cookie: &str) -> Resp {
    let cookie = format!("textgate_session={cookie}");
    http(&app.addr, "GET", path, &[("Cookie", &cookie)], None).unwrap()
}

/// The session token a sign-in's answer sets.
pub fn session_cookie(r: &Resp) -> String {
    r.header("set-cookie")
        .and_then(|c| c.strip_prefix("textgate_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no session cookie: {} {}", r.status, r.text()))
}

/// Sets a user's password with `textgate user passwd` and signs in to the web UI; the
/// session token.
pub fn web_sign_in(app: &App, name: &str, password: &str) -> String {
    let cfg = app.config.to_str().unwrap();
    let o = cli(
        &["user", "passwd", name, "--password-stdin", "--config", cfg],
        Some(&format!("{password}\n")),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = web_form(
        app,
        "/login",
        None,
        &format!("username={name}&password={password}"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    session_cookie(&r)
}
