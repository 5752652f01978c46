//! The operators' commands: `version`, `status`, `completions`, `man`, and a database that a
//! newer build has migrated.

use serde_json::{json, Value};

use crate::helpers::*;

/// This build's schema versions, as `textgate version` prints them: (SQLite, PostgreSQL).
fn schemas() -> (i64, i64) {
    let o = cli(&["version"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!("textgate {}\n", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("schema: SQLite "))
        .unwrap_or_else(|| panic!("no schema line: {out}"));
    let (sqlite, pg) = line.split_once(", PostgreSQL ").expect("both schemas");
    (sqlite.parse().unwrap(), pg.parse().unwrap())
}

#[test]
fn version_reads_a_databases_schema_and_a_newer_database_is_refused() {
    let (_, pg_schema) = schemas();
    let mut app = spawn_app_pg("");
    let config = app.config.to_str().unwrap().to_string();
    let o = cli(&["version", "--config", &config], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("schema {pg_schema} (current)")),
        "{}",
        stdout(&o)
    );
    // A newer build migrated the database while this one was stopped.
    app.kill();
    let newer = pg_schema + 1;
    app.sql(&format!(
        "INSERT INTO schema_migrations (version, applied_at) VALUES ({newer}, 0)"
    ));
    let o = cli(&["version", "--config", &config], None);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("newer than this textgate"),
        "{}",
        stderr(&o)
    );
    let o = cli(&["serve", "--config", &config], None);
    assert!(!o.status.success(), "serve ran on a newer database");
    let err = stderr(&o);
    assert!(
        err.contains(&format!("schema version {newer}, newer than this textgate"))
            && err.contains("restore a backup"),
        "{err}"
    );
    // Nothing was migrated or written by the refused start.
    assert_eq!(
        app.sql("SELECT max(version) FROM schema_migrations").trim(),
        newer.to_string()
    );
    app.sql(&format!(
        "DELETE FROM schema_migrations WHERE version = {newer}"
    ));
    app.start();
    assert_eq!(app.get("/healthz").status, 200);
}

#[test]
fn version_of_a_database_not_created_yet_or_behind() {
    let (sqlite_schema, _) = schemas();
    let dir = TempDir::new("version");
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndatabase_url = \"sqlite://{}/db/textgate.db\"\n\n[[device]]\nname = \"lb\"\nkind = \"loopback\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let o = cli(&["version", "--config", config], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("not created yet"), "{}", stdout(&o));
    assert!(
        !dir.path().join("db").exists(),
        "version created the database"
    );
    let o = cli(&["user", "list", "--config", config], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&["version", "--config", config], None);
    assert!(
        stdout(&o).contains(&format!("schema {sqlite_schema} (current)")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn status_shows_the_node_its_devices_and_the_queue() {
    let app = spawn_app_users("", &[("root", "admin"), ("bob", "user")]);
    let (sqlite_schema, _) = schemas();
    // One message waits for tomorrow: the queue shows it.
    let later = rfc3339(now_ms() + 86_400_000);
    app.send_ok(&json!({"to": "+15551230001", "body": "later", "schedule_at": later}));
    let args = ["status", "--server", &app.base, "--api-key", &app.key];
    let o = cli(&args, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!(
            "textgate {} at {}: node ",
            env!("CARGO_PKG_VERSION"),
            app.base
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "store sqlite (schema {sqlite_schema}), 1 node(s) alive"
        )),
        "{out}"
    );
    assert!(
        out.contains("queue: 0 queued, 1 scheduled, 0 sending"),
        "{out}"
    );
    assert!(
        out.contains("devices: 1\n  loopback  loopback  up"),
        "{out}"
    );

    let o = cli(&[&args[..], &["--json"]].concat(), None);
    let v: Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["store"], "sqlite");
    assert_eq!(v["schema"], sqlite_schema);
    assert_eq!(v["queue"]["scheduled"], 1);
    assert_eq!(v["devices"][0]["name"], "loopback");
    assert!(v["uptime_seconds"].as_i64().unwrap() >= 0);

    // Only administrators; and a server that is not there is said to be so.
    let o = cli(
        &[
            "status",
            "--server",
            &app.base,
            "--api-key",
            app.key_of("bob"),
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("answered 403"), "{}", stderr(&o));
    let o = cli(
        &[
            "status",
            "--server",
            "http://127.0.0.1:9",
            "--api-key",
            &app.key,
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot reach the server"),
        "{}",
        stderr(&o)
    );
}

/// Every subcommand `--help` lists (clap's own `help` aside).
fn subcommands() -> Vec<String> {
    let o = cli(&["--help"], None);
    let help = stdout(&o);
    let list = help
        .split("Commands:\n")
        .nth(1)
        .expect("a command list")
        .split("\n\n")
        .next()
        .unwrap();
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_and_man_pages_come_from_the_command_line() {
    let commands = subcommands();
    assert!(commands.len() >= 10, "{commands:?}");
    // bash loads the script and completes the subcommands.
    let o = std::process::Command::new("bash")
        .args([
            "-c",
            &format!(
                "source <('{}' completions bash); COMP_WORDS=(textgate ''); COMP_CWORD=1; _textgate textgate '' textgate; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                bin()
            ),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let offered = stdout(&o);
    for c in &commands {
        assert!(
            offered.lines().any(|l| l == c),
            "bash does not offer {c}: {offered}"
        );
    }
    for shell in ["zsh", "fish"] {
        let o = cli(&["completions", shell], None);
        assert!(
            o.status.success() && stdout(&o).contains("serve"),
            "{shell}"
        );
    }

    // The man page renders, and names every subcommand.
    let o = cli(&["man"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(page.contains(".TH textgate 1"), "{page}");
    for c in &commands {
        assert!(
            page.contains(&format!("textgate\\-{}", c.replace('-', "\\-"))),
            "{c}"
        );
    }
    let dir = TempDir::new("man");
    let o = cli(&["man", "--dir", dir.path().to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    for c in &commands {
        let p = dir.path().join(format!("textgate-{c}.1"));
        assert!(p.exists(), "no page for {c}");
    }
    // man(1) reads what was written (groff formats it without warnings).
    let o = std::process::Command::new("man")
        .arg("-l")
        .arg(dir.path().join("textgate-status.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output();
    if let Ok(o) = o {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("--api-key"), "{text}");
    }
}
