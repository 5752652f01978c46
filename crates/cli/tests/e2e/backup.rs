//! `textgate backup` and `textgate restore` (docs/backup.md), through the real binary: a backup
//! taken in the middle of a burst of sends holds every message accepted before it began and
//! none asked for after it ended, and a server started on the restored store serves them; and
//! each refusal says what is wrong and what to do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

/// A message the burst got a 202 for, with when its request was sent.
struct Accepted {
    id: i64,
    asked: Instant,
}

/// Sends one recipient a request, as fast as the server answers, until `stop`.
fn burst(app: &App, stop: &AtomicBool, accepted: &Mutex<Vec<Accepted>>, client: usize) {
    let auth = format!("Bearer {}", app.key);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let body = json!({"to": format!("+1555{client}{n:06}"), "body": "burst"}).to_string();
        let asked = Instant::now();
        let r = http(
            &app.addr,
            "POST",
            "/api/v1/messages",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
        .expect("the server answers throughout the backup");
        assert_eq!(r.status, 202, "{}", r.text());
        let id = r.json()["messages"][0]["id"].as_i64().expect("an id");
        accepted.lock().unwrap().push(Accepted { id, asked });
    }
}

/// The number in `... N messages ...` of a backup's or a restore's line.
fn messages_in(out: &str) -> usize {
    let words: Vec<&str> = out.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == "messages")
        .unwrap_or_else(|| panic!("no message count in {out:?}"));
    words[at - 1].parse().expect("a count")
}

#[test]
fn a_backup_in_the_middle_of_a_burst_restores_every_message_accepted_before_it() {
    let mut app = spawn_app("");
    let cfg = app.config.to_str().unwrap().to_string();
    let file = app.dir.path().join("backups").join("textgate.backup");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let stop = AtomicBool::new(false);
    let accepted = Mutex::new(Vec::new());
    let (before, backup_began, backup_ended, out) = std::thread::scope(|s| {
        for client in 0..3 {
            let (app, stop, accepted) = (&app, &stop, &accepted);
            s.spawn(move || burst(app, stop, accepted, client));
        }
        // Some store to copy first.
        let deadline = Instant::now() + Duration::from_secs(60);
        while accepted.lock().unwrap().len() < 1500 {
            assert!(Instant::now() < deadline, "the burst is too slow");
            std::thread::sleep(Duration::from_millis(20));
        }
        let before: Vec<i64> = accepted.lock().unwrap().iter().map(|a| a.id).collect();
        let began = Instant::now();
        let o = cli(&["backup", file.to_str().unwrap(), "--config", &cfg], None);
        let ended = Instant::now();
        assert!(o.status.success(), "backup: {}{}", stdout(&o), stderr(&o));
        // The burst goes on a little after the backup, then stops.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        (before, began, ended, stdout(&o))
    });
    let accepted = accepted.into_inner().unwrap();
    assert!(
        out.contains("backed up") && out.contains("schema version"),
        "{out}"
    );
    let in_backup = messages_in(&out);
    let during = accepted
        .iter()
        .filter(|a| a.asked >= backup_began && a.asked < backup_ended)
        .count();
    assert!(
        during > 0,
        "sends went on while the backup ran ({:?})",
        backup_ended - backup_began
    );
    let after: Vec<i64> = accepted
        .iter()
        .filter(|a| a.asked >= backup_ended)
        .map(|a| a.id)
        .collect();
    assert!(!after.is_empty(), "the burst went on after the backup");
    assert!(
        in_backup >= before.len() && in_backup < accepted.len(),
        "{in_backup} messages in the backup; {} accepted before it, {} in all",
        before.len(),
        accepted.len()
    );

    // Into the same data folder, once the server has stopped.
    app.terminate();
    let o = cli(&["restore", file.to_str().unwrap(), "--config", &cfg], None);
    assert!(o.status.success(), "restore: {}{}", stdout(&o), stderr(&o));
    let said = stdout(&o);
    assert_eq!(messages_in(&said), in_backup, "{said}");
    let kept = said
        .lines()
        .find_map(|l| l.strip_prefix("the store it replaced is kept as "))
        .unwrap_or_else(|| panic!("no kept store in {said:?}"));
    assert!(
        kept.contains("textgate.db.before-restore-") && std::path::Path::new(kept).is_file(),
        "{said}"
    );
    app.start();
    let listed = app.all_messages(&app.key.clone());
    assert_eq!(
        listed.len(),
        in_backup,
        "the server serves what the backup held"
    );
    for id in &before {
        assert!(
            listed.contains_key(id),
            "message {id} was accepted before the backup began"
        );
    }
    for id in &after {
        assert!(
            !listed.contains_key(id),
            "message {id} was asked for after the backup ended"
        );
    }
    app.message(before[0]);

    // And into a fresh folder, as on another machine.
    let dir = TempDir::new("restored");
    let config = dir.path().join("textgate.toml");
    let text = std::fs::read_to_string(&app.config).unwrap().replace(
        &app.dir.path().join("textgate.db").display().to_string(),
        &dir.path()
            .join("data")
            .join("textgate.db")
            .display()
            .to_string(),
    );
    std::fs::write(&config, text).unwrap();
    let o = cli(
        &[
            "restore",
            file.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "restore: {}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("there was no store at"),
        "{}",
        stdout(&o)
    );
    let key = app.key.clone();
    drop(app);
    let elsewhere = App::on_config(dir, config, key.clone());
    let listed = elsewhere.all_messages(&key);
    assert_eq!(listed.len(), in_backup);
    assert!(before.iter().all(|id| listed.contains_key(id)));
}

#[test]
fn a_restore_is_refused_while_a_server_runs_on_the_store() {
    let app = spawn_app("");
    let cfg = app.config.to_str().unwrap();
    let id = app.send_ok(&json!({"to": "+15550001111", "body": "kept"}))[0]["id"]
        .as_i64()
        .unwrap();
    let file = app.dir.path().join("copy.db");
    let o = cli(&["backup", file.to_str().unwrap(), "--config", cfg], None);
    assert!(o.status.success(), "backup: {}", stderr(&o));
    let second = app.send_ok(&json!({"to": "+15550002222", "body": "after"}))[0]["id"]
        .as_i64()
        .unwrap();

    let o = cli(&["restore", file.to_str().unwrap(), "--config", cfg], None);
    assert!(!o.status.success(), "restore under a running server");
    let err = stderr(&o);
    assert!(
        err.contains("is open in another textgate process")
            && err.contains("stop `textgate serve`"),
        "{err}"
    );
    // Nothing was touched: the server goes on with both messages.
    app.message(id);
    app.message(second);
    let names: Vec<String> = std::fs::read_dir(app.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("before-restore") || n.contains("restoring")),
        "{names:?}"
    );
}

const LOOPBACK: &str = "\n[[device]]\nname = \"loopback\"\nkind = \"loopback\"\n";

/// A store made by the CLI, with no server: `user list` creates and migrates it.
fn store_without_server(dir: &TempDir) -> String {
    let config = dir.path().join("textgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndatabase_url = \"sqlite://{}/data/textgate.db\"\n{LOOPBACK}",
            dir.path().display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    let o = cli(&["user", "list", "--config", &config], None);
    assert!(o.status.success(), "user list: {}", stderr(&o));
    config
}

#[test]
fn a_backup_refuses_to_replace_a_file_unless_forced() {
    let dir = TempDir::new("backup-exists");
    let config = store_without_server(&dir);
    let file = dir.path().join("precious.db");
    std::fs::write(&file, "someone's file").unwrap();
    let o = cli(
        &["backup", file.to_str().unwrap(), "--config", &config],
        None,
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("precious.db exists already") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "someone's file");

    let o = cli(
        &[
            "backup",
            file.to_str().unwrap(),
            "--force",
            "--config",
            &config,
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(messages_in(&stdout(&o)), 0);
    let partial = dir.path().join("precious.db.partial");
    assert!(!partial.exists(), "nothing half-written is left");
}

#[test]
fn a_restore_refuses_a_file_that_is_not_a_textgate_store() {
    let dir = TempDir::new("restore-junk");
    let config = store_without_server(&dir);
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "these are not the messages you are looking for\n").unwrap();
    let o = cli(
        &["restore", junk.to_str().unwrap(), "--config", &config],
        None,
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("notes.txt is not a SQLite database") && err.contains("textgate backup"),
        "{err}"
    );
    let data: Vec<String> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        data.iter().all(|n| !n.contains("restor")),
        "nothing moved: {data:?}"
    );
}

#[test]
fn backup_and_restore_send_a_postgresql_store_to_its_own_tools() {
    let dir = TempDir::new("backup-pg");
    let config = dir.path().join("textgate.toml");
    std::fs::write(
        &config,
        format!("[server]\ndatabase_url = \"postgres://textgate:s3cret@127.0.0.1:5432/textgate\"\n{LOOPBACK}"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let file = dir.path().join("copy.db");
    let o = cli(
        &["backup", file.to_str().unwrap(), "--config", config],
        None,
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("PostgreSQL") && err.contains("pg_dump") && err.contains("docs/backup.md"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "the password is not shown: {err}");
    assert!(!file.exists());
    std::fs::write(&file, "x").unwrap();
    let o = cli(
        &["restore", file.to_str().unwrap(), "--config", config],
        None,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("pg_restore"), "{}", stderr(&o));
}
