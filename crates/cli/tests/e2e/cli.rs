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
