//! The Debian package (packaging/deb): built from the binary under test, installed by dpkg
//! into a clean root of its own, and run from there, as the textgate user its postinst made,
//! on the configuration it installed, to send a text.
//!
//! The root is a folder, not a chroot: `dpkg --root=DIR --force-script-chrootless` unpacks
//! into it and runs the maintainer scripts on this machine with `DPKG_ROOT=DIR`, which they
//! honour (the user goes into DIR/etc/passwd, not this machine's). The installed binary then
//! runs with this machine's libraries, as the package's Depends say it may.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::json;

use crate::helpers::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(program: &[OsString], args: &[&str]) -> Output {
    let mut c = Command::new(&program[0]);
    c.args(&program[1..]).args(args).stdin(Stdio::null());
    test_env(&mut c);
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"))
}

fn ok(what: &str, o: Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}): {}{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn running_as_root() -> bool {
    let o = Command::new("id").arg("-u").output().expect("id -u");
    stdout(&o).trim() == "0"
}

/// A root with nothing installed: an empty dpkg database and the account files of a fresh
/// system (root alone), which the postinst's useradd adds to.
fn clean_root(root: &Path) {
    for d in ["etc", "var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (file, line) in [
        ("var/lib/dpkg/status", ""),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
        ("etc/gshadow", "root:*::\n"),
    ] {
        std::fs::write(root.join(file), line).unwrap();
    }
}

/// dpkg on the clean root. --force-depends: nothing is installed there, so libc6 and passwd
/// are this machine's.
fn dpkg(root: &Path, args: &[&str]) -> String {
    let root_arg = format!("--root={}", root.display());
    let o = Command::new("dpkg")
        .args([
            root_arg.as_str(),
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dpkg");
    ok(&format!("dpkg {args:?}"), o)
}

/// textgate's entry in the root's passwd file: (uid, gid, home, shell).
fn account(root: &Path) -> (u32, u32, String, String) {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("textgate:"))
        .unwrap_or_else(|| panic!("the postinst made no textgate user: {passwd}"));
    let f: Vec<&str> = line.split(':').collect();
    (
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        f[5].to_string(),
        f[6].to_string(),
    )
}

#[test]
fn the_debian_package_installs_and_its_service_sends_a_text() {
    if !has("dpkg-deb") || !has("objdump") {
        eprintln!("note: no dpkg-deb or objdump here; the Debian package is not tested");
        return;
    }
    let dir = TempDir::new("deb");
    let out = dir.path().join("out");

    // Built from the binary under test, uncompressed (xz would take longer than the rest).
    let built = Command::new("bash")
        .arg(repo().join("packaging/deb/build"))
        .env("TEXTGATE_BIN", bin())
        .env("TEXTGATE_DEB_OUT", &out)
        .env("TEXTGATE_DEB_COMPRESSION", "none")
        .stdin(Stdio::null())
        .output()
        .expect("run packaging/deb/build");
    let printed = ok("packaging/deb/build", built);
    let deb = PathBuf::from(
        printed
            .lines()
            .last()
            .expect("the build prints the package"),
    );
    let arch = ok(
        "dpkg --print-architecture",
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .unwrap(),
    );
    assert_eq!(
        deb,
        out.join(format!(
            "textgate_{}_{}.deb",
            env!("CARGO_PKG_VERSION"),
            arch.trim()
        ))
    );
    let deb_s = deb.to_str().unwrap();

    // What it says and holds.
    let field = |name: &str| {
        let o = Command::new("dpkg-deb")
            .args(["-f", deb_s, name])
            .output()
            .unwrap();
        ok(&format!("dpkg-deb -f {name}"), o).trim().to_string()
    };
    assert_eq!(field("Package"), "textgate");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    let depends = field("Depends");
    assert!(
        depends.starts_with("libc6 (>= 2.") && depends.contains("passwd"),
        "{depends}"
    );
    let conffiles = Command::new("dpkg-deb")
        .args(["-I", deb_s, "conffiles"])
        .output()
        .unwrap();
    assert_eq!(
        ok("dpkg-deb -I conffiles", conffiles),
        "/etc/textgate/textgate.toml\n",
        "upgrades must keep local edits of the configuration"
    );
    let contents = ok(
        "dpkg-deb -c",
        Command::new("dpkg-deb")
            .args(["-c", deb_s])
            .output()
            .unwrap(),
    );
    for path in [
        "./usr/bin/textgate",
        "./etc/textgate/textgate.toml",
        "./lib/systemd/system/textgate.service",
        "./usr/share/man/man1/textgate.1.gz",
        "./usr/share/man/man1/textgate-serve.1.gz",
        "./usr/share/bash-completion/completions/textgate",
        "./usr/share/zsh/vendor-completions/_textgate",
        "./usr/share/fish/vendor_completions.d/textgate.fish",
        "./usr/share/doc/textgate/copyright",
        "./usr/share/doc/textgate/changelog.Debian.gz",
        "./usr/share/doc/textgate/docs/operations.md",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} is not in the package:\n{contents}"
        );
    }

    // Installed into a clean root. As root, by dpkg with its maintainer scripts; otherwise
    // only unpacked (the postinst's useradd and chown need root), and run as this user.
    let root = dir.path().join("root");
    let as_root = running_as_root();
    let user = if as_root {
        clean_root(&root);
        dpkg(&root, &["-i", deb_s]);
        let (uid, gid, home, shell) = account(&root);
        assert_eq!(
            (home.as_str(), shell.as_str()),
            ("/var/lib/textgate", "/usr/sbin/nologin")
        );
        let data = std::fs::metadata(root.join("var/lib/textgate")).unwrap();
        assert_eq!(
            (data.uid(), data.gid(), data.mode() & 0o7777),
            (uid, gid, 0o750),
            "/var/lib/textgate is textgate's alone"
        );
        let conf = std::fs::metadata(root.join("etc/textgate/textgate.toml")).unwrap();
        assert_eq!(
            (conf.uid(), conf.gid(), conf.mode() & 0o7777),
            (0, gid, 0o640),
            "root writes the configuration, textgate reads it"
        );
        Some((uid, gid))
    } else {
        eprintln!(
            "note: not root, so the package is unpacked without its maintainer scripts and \
             runs as this user, not as textgate"
        );
        let o = Command::new("dpkg-deb")
            .args(["-x", deb_s])
            .arg(&root)
            .output()
            .unwrap();
        ok("dpkg-deb -x", o);
        None
    };

    let installed = root.join("usr/bin/textgate");
    let config = root.join("etc/textgate/textgate.toml");
    let config_s = config.to_str().unwrap().to_string();
    // The textgate user of the installed root, by number: this machine's own user database
    // knows nothing of it.
    let program: Vec<OsString> = match user {
        Some((uid, gid)) => vec![
            "setpriv".into(),
            format!("--reuid={uid}").into(),
            format!("--regid={gid}").into(),
            "--clear-groups".into(),
            "--".into(),
            installed.clone().into(),
        ],
        None => vec![installed.clone().into()],
    };
    ok(
        "textgate check on the installed configuration",
        run(&program, &["check", "--config", &config_s]),
    );

    // The unit, as systemd reads it, with ExecStart on the installed binary.
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/textgate.service")).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=30s",
        "User=textgate",
        "ExecStart=/usr/bin/textgate serve --config /etc/textgate/textgate.toml",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/textgate",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit has no {line:?}");
    }
    verify_unit(
        &unit.replace("/usr/bin/textgate", installed.to_str().unwrap()),
        dir.path(),
    );

    // The installed configuration, in this root: its paths under it, and a free port.
    let text = std::fs::read_to_string(&config).unwrap();
    for line in [
        "http_listen = \"127.0.0.1:8080\"",
        "database_url = \"sqlite:///var/lib/textgate/textgate.db\"",
    ] {
        assert!(
            text.contains(line),
            "the installed configuration has no {line}"
        );
    }
    let here = root.join("var/lib/textgate");
    let text = text
        .replace("/var/lib/textgate", here.to_str().unwrap())
        .replace("\"127.0.0.1:8080\"", "\"127.0.0.1:0\"");
    // Written in place: it keeps its owner and mode.
    std::fs::write(&config, text).unwrap();
    ok(
        "textgate check on the configuration in the root",
        run(&program, &["check", "--config", &config_s]),
    );

    // A user and a key, made by the installed binary as textgate; then its server.
    ok(
        "user add",
        run(
            &program,
            &[
                "user", "add", "alice", "--role", "user", "--config", &config_s,
            ],
        ),
    );
    let printed = ok(
        "apikey create",
        run(
            &program,
            &["apikey", "create", "--user", "alice", "--config", &config_s],
        ),
    );
    let key = printed.lines().last().unwrap().trim().to_string();
    let mut app = App::with_program(dir, config, key, program);
    if let Some((uid, _)) = user {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", app.pid().unwrap())).unwrap();
        let ids = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap()
            .split_whitespace()
            .map(|id| id.parse::<u32>().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(
            ids, [uid; 4],
            "serve runs as textgate (real, effective, saved, fs)"
        );
        let db = std::fs::metadata(here.join("textgate.db")).unwrap();
        assert_eq!(db.uid(), uid, "the store is textgate's");
    }
    let sent = app.send_ok(&json!({"to": "+15551234567", "body": "Installed from the package"}));
    let m = app.wait_final(sent[0]["id"].as_i64().unwrap());
    assert_eq!(m["status"], "delivered", "{m}");
    assert_eq!(m["device"], "loopback", "{m}");
    let (_, clean) = app.terminate();
    assert!(clean, "serve did not stop cleanly:\n{}", app.log_text());

    if as_root {
        // Installed again, as an upgrade is: the edited configuration and the store stay.
        let root = app.dir.path().join("root");
        dpkg(&root, &["-i", deb_s]);
        let text = std::fs::read_to_string(root.join("etc/textgate/textgate.toml")).unwrap();
        assert!(
            text.contains("\"127.0.0.1:0\""),
            "the edited configuration was replaced"
        );
        let (uid, gid) = user.unwrap();
        let conf = std::fs::metadata(root.join("etc/textgate/textgate.toml")).unwrap();
        assert_eq!(
            (conf.uid(), conf.gid(), conf.mode() & 0o7777),
            (0, gid, 0o640)
        );
        assert_eq!(account(&root).0, uid, "the same user");
        assert!(root.join("var/lib/textgate/textgate.db").exists());

        // Removing keeps the store and the configuration; purging deletes both.
        dpkg(&root, &["--remove", "textgate"]);
        assert!(!root.join("usr/bin/textgate").exists());
        assert!(root.join("var/lib/textgate/textgate.db").exists());
        assert!(root.join("etc/textgate/textgate.toml").exists());
        dpkg(&root, &["--purge", "textgate"]);
        assert!(!root.join("var/lib/textgate").exists());
        assert!(!root.join("etc/textgate/textgate.toml").exists());
    }
}

/// `systemd-analyze verify` on `unit`: no error and no warning (an unknown or misspelt key
/// is only a warning). Skipped with a note where it cannot run: no systemd-analyze, or no
/// systemd units on this machine for it to load.
fn verify_unit(unit: &str, dir: &Path) {
    if !has("systemd-analyze") {
        eprintln!("note: no systemd-analyze here; the unit is not verified");
        return;
    }
    let copy = dir.join("textgate.service");
    std::fs::write(&copy, unit).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    let said = format!("{}{}", stdout(&o), stderr(&o));
    if said.contains("sysinit.target not found") {
        eprintln!("note: systemd-analyze cannot load systemd's own units here; the unit is not verified: {said}");
        return;
    }
    assert!(
        o.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}
