//! The command line: `check`, `user add`, `apikey create`, `send`, and `serve`'s bootstrap.

use crate::helpers::*;

const GOOD: &str = r#"[server]
http_listen = "127.0.0.1:0"
database_url = "sqlite://DIR/textgate.db"
default_country = "US"
claim_lease = "30s"
max_request_bytes = "1MiB"
max_recipients = 100

[[device]]
name = "lb"
kind = "loopback"
report_delay = "10ms"

[[route]]
prefix = "+1"
devices = ["lb"]
"#;

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text.replace("DIR", &dir.path().display().to_string())).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn check_accepts_a_good_config() {
    let dir = TempDir::new("check");
    let f = write(&dir, "good.toml", GOOD);
    let o = cli(&["check", "--config", &f], None);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("valid"), "{}", stdout(&o));
}

#[test]
fn check_names_the_bad_key_and_exits_2() {
    let dir = TempDir::new("check");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "route",
            GOOD.replace("devices = [\"lb\"]", "devices = [\"nope\"]"),
            "route[0].devices",
        ),
        (
            "listen",
            GOOD.replace("127.0.0.1:0", "nowhere"),
            "server.http_listen",
        ),
        (
            "unknown",
            GOOD.replace(
                "max_recipients = 100",
                "max_recipients = 100\nhttp_listn = \"x\"",
            ),
            "http_listn",
        ),
        (
            "lease",
            GOOD.replace("\"30s\"", "\"soon\""),
            "not a duration",
        ),
        (
            "country",
            GOOD.replace("\"US\"", "\"XX\""),
            "server.default_country",
        ),
        (
            "kind",
            GOOD.replace("kind = \"loopback\"", "kind = \"fax\""),
            "kind",
        ),
        (
            "rate",
            GOOD.replace("report_delay = \"10ms\"", "failure_rate = 2.0"),
            "failure_rate",
        ),
        (
            "db",
            GOOD.replace("sqlite://DIR/textgate.db", "mysql://x/y"),
            "server.database_url",
        ),
        (
            "nodevice",
            "[server]\nhttp_listen = \"127.0.0.1:0\"\n".to_string(),
            "device",
        ),
        ("syntax", "[server\n".to_string(), "line 1"),
        (
            "clear-relay-password",
            format!("{GOOD}\n[mailer]\nrelay = \"smtp://mail.example.com\"\nfrom = \"sms@example.com\"\nusername = \"u\"\npassword = \"p\"\n"),
            "mailer.relay",
        ),
        (
            "trusted",
            format!("{GOOD}\n[smtp]\ndomains = [\"sms.example.com\"]\ntrusted_networks = [\"mail.example.com\"]\n"),
            "smtp.trusted_networks",
        ),
        (
            "callback-allow",
            GOOD.replace("max_recipients = 100", "max_recipients = 100\ncallback_allow = [\"10.0.0.0/99\"]"),
            "server.callback_allow",
        ),
    ];
    for (name, text, key) in &cases {
        let f = write(&dir, &format!("{name}.toml"), text);
        let o = cli(&["check", "--config", &f], None);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {}{err}", stdout(&o));
        assert!(
            err.starts_with(&format!("{f}: ")),
            "{name}: stderr must start with the file: {err}"
        );
        assert!(err.contains(key), "{name}: stderr must name {key}: {err}");
    }
    let missing = dir.path().join("missing.toml");
    let o = cli(&["check", "--config", missing.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn user_add_twice_and_apikey_for_nobody_fail_clearly() {
    let dir = TempDir::new("users");
    let f = write(&dir, "c.toml", GOOD);
    let o = cli(
        &[
            "user",
            "add",
            "carol",
            "--email",
            "carol@example.com",
            "--password-stdin",
            "--config",
            &f,
        ],
        Some("a-long-password\n"),
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("carol"), "{}", stdout(&o));
    assert!(
        !stdout(&o).contains("a-long-password"),
        "the password is not echoed"
    );

    let o = cli(&["user", "add", "carol", "--config", &f], None);
    assert!(
        !o.status.success(),
        "a second carol was created: {}",
        stdout(&o)
    );
    let e = stderr(&o);
    assert!(e.contains("carol") && e.contains("already exists"), "{e}");

    let o = cli(
        &["user", "add", "dave", "--role", "overlord", "--config", &f],
        None,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("overlord"), "{}", stderr(&o));

    let o = cli(
        &["user", "add", "erin", "--password-stdin", "--config", &f],
        Some("short\n"),
    );
    assert!(!o.status.success(), "a 5-character password was accepted");

    let o = cli(
        &["apikey", "create", "--user", "ghost", "--config", &f],
        None,
    );
    assert!(!o.status.success(), "a key for nobody: {}", stdout(&o));
    assert!(stderr(&o).contains("ghost"), "{}", stderr(&o));
    assert!(
        stdout(&o).trim().is_empty(),
        "no key printed: {}",
        stdout(&o)
    );

    // Two keys for carol are different.
    let k1 = create_user_with_key_existing(&f, "carol");
    let k2 = create_user_with_key_existing(&f, "carol");
    assert_ne!(k1, k2);
}

fn create_user_with_key_existing(config: &str, user: &str) -> String {
    let o = cli(
        &["apikey", "create", "--user", user, "--config", config],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "the key alone on its line: {out:?}");
    lines[0].trim().to_string()
}

#[test]
fn send_wait_follows_the_message_to_delivered() {
    let app = spawn_app("");
    let o = cli(
        &[
            "send",
            "--to",
            "555-123-9999",
            "--body",
            "from the CLI",
            "--server",
            &app.base,
            "--api-key",
            &app.key,
            "--wait",
        ],
        None,
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let first = out.lines().next().expect("output");
    let id: i64 = first
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the first line starts with the id: {out:?}"));
    assert!(first.contains("+15551239999"), "{out}");
    assert!(out.lines().last().unwrap().contains("delivered"), "{out}");
    let m = app.message(id);
    assert_eq!(m["status"], "delivered");
    assert_eq!(m["body"], "from the CLI");

    // A wrong key: non-zero and the server's reason.
    let o = cli(
        &[
            "send",
            "--to",
            "+15551239999",
            "--body",
            "x",
            "--server",
            &app.base,
            "--api-key",
            "wrong",
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    // A message that fails: --wait ends non-zero.
    let app2 = spawn_app("[[device]]\nname = \"no\"\nkind = \"loopback\"\nfailure_rate = 1.0\n");
    let o = cli(
        &[
            "send",
            "--to",
            "+15551239999",
            "--body",
            "x",
            "--server",
            &app2.base,
            "--api-key",
            &app2.key,
            "--wait",
        ],
        None,
    );
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("failed") || stderr(&o).contains("failed"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(app.count(), 1);
}

#[test]
fn serve_creates_admin_on_an_empty_database() {
    let app = spawn_app_with(Opts {
        users: &[],
        ..Opts::default()
    });
    // Admin now exists: user add admin fails.
    let o = cli(
        &[
            "user",
            "add",
            "admin",
            "--config",
            app.config.to_str().unwrap(),
        ],
        None,
    );
    assert!(!o.status.success(), "admin was not created by serve");
    // And a key for it works against the server.
    let key = create_user_with_key_existing(app.config.to_str().unwrap(), "admin");
    let r = app.req_as(&key, "GET", "/api/v1/messages", None, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn serve_refuses_a_bad_config() {
    let dir = TempDir::new("serve");
    let f = write(
        &dir,
        "bad.toml",
        &GOOD.replace("devices = [\"lb\"]", "devices = [\"nope\"]"),
    );
    let o = cli(&["serve", "--config", &f], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("route[0].devices"), "{}", stderr(&o));
}

/// The commented configuration that `textgate config example` prints.
const EXAMPLE: &str = include_str!("../../textgate.example.toml");

/// `textgate config example` prints the file verbatim, and `check` (either spelling) accepts it
/// as printed: it opens neither the database nor the upload folder, so the installed paths
/// under /var/lib/textgate can stay.
#[test]
fn the_example_config_is_printed_and_passes_check() {
    let o = cli(&["config", "example"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), EXAMPLE);
    let dir = TempDir::new("example");
    let f = dir.path().join("textgate.toml");
    std::fs::write(&f, stdout(&o)).unwrap();
    let f = f.to_str().unwrap();
    for check in [vec!["check"], vec!["config", "check"]] {
        let o = cli(&[check.as_slice(), &["--config", f]].concat(), None);
        assert_eq!(o.status.code(), Some(0), "{check:?}: {}", stderr(&o));
        assert_eq!(
            stdout(&o).trim(),
            format!(
                "{f}: valid (1 device(s), 0 route(s), database sqlite:///var/lib/textgate/textgate.db)"
            )
        );
    }
}

/// A table of the example file, commented out or not: its name (`server`, `device`), a
/// device's kind, and the keys written in it (`key =`, commented out or not).
struct ExampleTable {
    name: String,
    kind: Option<String>,
    keys: Vec<String>,
}

/// `[name]` or `[[name]]` alone on a line: the name.
fn table_header(line: &str) -> Option<&str> {
    let name = line.trim_end().strip_prefix('[')?.strip_suffix(']')?;
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    plain.then_some(name)
}

/// `key = value`: the key and the value.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(" = ")?;
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    plain.then_some((key, value))
}

fn example_tables() -> Vec<ExampleTable> {
    let mut tables: Vec<ExampleTable> = Vec::new();
    for line in EXAMPLE.lines() {
        let line = line.trim_start_matches(['#', ' ']);
        if let Some(name) = table_header(line) {
            tables.push(ExampleTable {
                name: name.to_string(),
                kind: None,
                keys: Vec::new(),
            });
        } else if let (Some(t), Some((key, value))) = (tables.last_mut(), key_value(line)) {
            if key == "kind" {
                t.kind = Some(value.trim_matches('"').to_string());
            }
            t.keys.push(key.to_string());
        }
    }
    tables
}

/// Every key that docs/configuration.md documents is in the example, in its own table (a
/// `kind = "smpp"` key in the smpp device), so the two cannot drift apart. The keys are read
/// from the reference's tables whose header is `| key | type | default | meaning |`, under a
/// heading that names the table (`## [server]`, `### kind = "smpp"`), which leaves out the
/// value formats and the environment variables. The port server's file is left out too: it
/// is another file, read by `textgate port`, not a section of this one.
#[test]
fn the_example_config_has_every_documented_key() {
    let md_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let md = std::fs::read_to_string(md_path).unwrap();
    let tables = example_tables();
    let (mut heading, mut in_key_table) = (String::new(), false);
    let (mut sections, mut missing) = (std::collections::BTreeSet::new(), Vec::new());
    for line in md.lines() {
        if line.starts_with('#') {
            heading = line.to_string();
            continue;
        }
        if line.starts_with("| key | type | default | meaning |") {
            in_key_table = !heading.contains("port server's file");
            continue;
        }
        if !line.starts_with("| `") {
            in_key_table = in_key_table && line.starts_with('|');
            continue;
        }
        if !in_key_table {
            continue;
        }
        // The heading's code span: `[server]`, `[[device]]` or `kind = "smpp"`.
        let span = heading.split('`').nth(1).unwrap_or_else(|| {
            panic!("a key table under a heading that names no table: {heading}")
        });
        let (name, kind) = match span.strip_prefix("kind = ") {
            Some(kind) => ("device", Some(kind.trim_matches('"'))),
            None => (span.trim_matches(['[', ']']), None),
        };
        sections.insert(span.to_string());
        let in_example: Vec<&ExampleTable> = tables
            .iter()
            .filter(|t| t.name == name && (kind.is_none() || t.kind.as_deref() == kind))
            .collect();
        let first_cell = line.split('|').nth(1).unwrap();
        for key in first_cell.split('`').skip(1).step_by(2) {
            if !in_example.iter().any(|t| t.keys.iter().any(|k| k == key)) {
                missing.push(format!("{span} {key}"));
            }
        }
    }
    assert!(
        sections.len() >= 16,
        "the reference's key tables were not all found: {sections:?}"
    );
    assert!(
        missing.is_empty(),
        "documented in docs/configuration.md but not in crates/cli/textgate.example.toml: {missing:?}"
    );
}

/// Every commented-out line of the example that is a key or a table header, uncommented at
/// once, makes a configuration that `check` accepts: every example value is valid, and the
/// commented-out devices, route and inbound rule fit together. Its secrets read `CHANGE-ME`:
/// the environment gives them, as the file advises, and those with a required form are
/// refused until it does. The files it names are made here.
#[test]
fn the_example_config_uncommented_passes_check() {
    let dir = TempDir::new("example-all");
    let (cert, key, ca) = test_certificate(dir.path());
    let text: Vec<&str> = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(l) if table_header(l).is_some() || key_value(l).is_some() => l,
            _ => line,
        })
        .collect();
    let text = text
        .join("\n")
        .replace("/etc/textgate/smsc-ca.pem", &ca)
        .replace("/etc/textgate/smtp-cert.pem", &cert)
        .replace("/etc/textgate/smtp-key.pem", &key);
    let f = dir.path().join("all.toml");
    std::fs::write(&f, text).unwrap();
    let f = f.to_str().unwrap();
    // The environment variable, a value it may have, and the key refused without it.
    let secrets = [
        (
            "TEXTGATE_METRICS_TOKEN",
            "0123456789abcdef0123",
            "server.metrics_token",
        ),
        (
            "TEXTGATE_DEVICE_SMSC1_PASSWORD",
            "s3cret",
            "device \"smsc1\".password",
        ),
        ("TEXTGATE_DEVICE_GSM1_PIN", "4321", "device \"gsm1\".pin"),
        (
            "TEXTGATE_PORT_SERVER_BRANCH_OSLO_TOKEN",
            "0123456789abcdef0123",
            "port_server \"branch-oslo\".token",
        ),
    ];
    let run = |without: Option<&str>| {
        let mut c = command();
        c.args(["check", "--config", f]);
        for (var, value, _) in secrets {
            if Some(var) != without {
                c.env(var, value);
            }
        }
        c.output().unwrap()
    };
    let o = run(None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("valid (4 device(s), 1 route(s)"),
        "{}",
        stdout(&o)
    );
    for (var, _, key) in secrets {
        let o = run(Some(var));
        assert_eq!(o.status.code(), Some(2), "CHANGE-ME passed as {key}");
        assert!(
            stderr(&o).contains(&format!(": {key}: ")),
            "without {var}: {}",
            stderr(&o)
        );
    }
}
