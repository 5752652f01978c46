//! The web UI in real headless Chromium: `tests/browser/ui.mjs` (playwright-core driving
//! Debian's `chromium`, with axe-core checking accessibility) against the real binary. It
//! signs in, composes and follows texts to delivered, reads and answers an inbound text,
//! checks that one user sees nothing of another's, refuses forged and cross-site forms and
//! ended sessions. Screenshots of every page go to `target/browser-artifacts/`.
//!
//! `.ci/run` installs Chromium and the Node packages (`npm ci` in `tests/browser`).

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::*;

fn set_password(app: &App, name: &str, password: &str) {
    let cfg = app.config.to_str().unwrap();
    let o = cli(
        &["user", "passwd", name, "--password-stdin", "--config", cfg],
        Some(&format!("{password}\n")),
    );
    assert!(
        o.status.success(),
        "user passwd {name}: {}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// Sessions end after 4 idle seconds; texts to +1555999… fail once on `flaky`, then go
/// through `loopback` (a timeline with a failed attempt).
const WEB_CONFIG: &str = r#"retry_backoff = "50ms"
retry_backoff_max = "100ms"

[auth]
session_idle = "4s"

[[device]]
name = "loopback"
kind = "loopback"

[[device]]
name = "flaky"
kind = "loopback"
transient_failure_rate = 1.0

[[route]]
prefix = "+1555999"
devices = ["flaky", "loopback"]

[[route]]
devices = ["loopback"]
"#;

#[test]
fn the_web_ui_in_chromium() {
    let app = spawn_app_users(
        WEB_CONFIG,
        &[("root", "admin"), ("alice", "user"), ("bob", "user")],
    );
    for (name, pw) in [
        ("root", "root-password-1"),
        ("alice", "alice-password-1"),
        ("bob", "bob-password-1"),
    ] {
        set_password(&app, name, pw);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("tests/browser/ui.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "run `npm ci` in tests/browser first (.ci/run does)"
    );
    let out = Command::new("node")
        .arg(&script)
        .env("TEXTGATE_URL", &app.base)
        .env("TG_ADMIN", "root:root-password-1")
        .env("TG_ALICE", "alice:alice-password-1")
        .env("TG_BOB", "bob:bob-password-1")
        .env("TG_ADMIN_KEY", &app.keys["root"])
        .env("TG_IDLE_MS", "4000")
        .env("TG_ARTIFACTS", root.join("target/browser-artifacts"))
        .output()
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser tests failed:\n{text}");
    assert!(text.contains("browser tests passed"), "{text}");
}
