//! Bulk CSV jobs through the real server: uploads (text/csv and multipart), row numbers and
//! reasons of bad rows, templates, dry runs, duplicates, all-or-nothing, pause/resume/cancel,
//! the results CSV, owners, the watched folder (a file written slowly, a broken one, a
//! SIGKILL in the middle of a large one), an API text that overtakes a large job, and
//! `textgate job submit`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

fn post_csv(app: &App, key: &str, query: &str, csv: &str) -> Resp {
    let auth = format!("Bearer {key}");
    let path = if query.is_empty() {
        "/api/v1/jobs".to_string()
    } else {
        format!("/api/v1/jobs?{query}")
    };
    http(
        &app.addr,
        "POST",
        &path,
        &[("Authorization", &auth), ("Content-Type", "text/csv")],
        Some(csv.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("POST {path} failed: {e}; log:\n{}", app.log_text()))
}

fn created(r: &Resp) -> Value {
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn job(app: &App, key: &str, id: i64) -> Value {
    let r = app.req_as(key, "GET", &format!("/api/v1/jobs/{id}"), None, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Polls a job until `pred` holds.
fn wait_job(app: &App, id: i64, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let j = job(app, &app.key, id);
        if pred(&j) {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not get there; last {j}; log:\n{}",
            app.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn results_csv(app: &App, key: &str, id: i64) -> Vec<Vec<String>> {
    let r = app.req_as(
        key,
        "GET",
        &format!("/api/v1/jobs/{id}/results.csv"),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/csv")));
    let text = r.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("row,number,message_id,status,error"));
    lines
        .map(|l| {
            // The error column may be quoted (it can hold commas); the others never are.
            let mut parts: Vec<String> = l.splitn(5, ',').map(str::to_string).collect();
            if let Some(last) = parts.get_mut(4) {
                *last = last.trim_matches('"').to_string();
            }
            parts
        })
        .collect()
}

#[test]
fn good_and_bad_rows_are_numbered_and_the_good_ones_delivered() {
    let app = spawn_app("max_parts = 2");
    let long = "x".repeat(400);
    let csv = format!(
        "to,body\n\
         +15550000001,first\n\
         not-a-number,bad number\n\
         555-000-0003,\n\
         +15550000004,\"quoted, with comma\nand a line break\"\n\
         +15550000005,{long}\n\
         +15550000006,too,many,fields\n\
         (555) 000-0007,last\n"
    );
    let v = created(&post_csv(&app, &app.key, "name=mixed", &csv));
    assert_eq!(
        (
            v["total"].as_i64(),
            v["accepted"].as_i64(),
            v["rejected"].as_i64()
        ),
        (Some(7), Some(3), Some(4)),
        "{v}"
    );
    let errors: Vec<(i64, String)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_i64().unwrap(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let rows: Vec<i64> = errors.iter().map(|e| e.0).collect();
    // Row 5 spans two lines of the file but is one spreadsheet row; the header is row 1.
    assert_eq!(rows, vec![3, 4, 6, 7], "{errors:?}");
    assert!(errors[0].1.contains("invalid number"), "{errors:?}");
    assert!(errors[1].1.contains("empty text"), "{errors:?}");
    assert!(errors[2].1.contains("too long"), "{errors:?}");
    assert!(errors[3].1.contains("broken CSV line"), "{errors:?}");
    let id = v["id"].as_i64().unwrap();
    let j = wait_job(&app, id, 30, |j| j["state"] == "done");
    assert_eq!(j["counts"]["delivered"], 3, "{j}");
    assert_eq!(j["name"], "mixed");
    assert_eq!(
        (j["total"].as_i64(), j["accepted"].as_i64()),
        (Some(7), Some(3))
    );

    let res = results_csv(&app, &app.key, id);
    let by_row: HashMap<i64, &Vec<String>> =
        res.iter().map(|r| (r[0].parse().unwrap(), r)).collect();
    assert_eq!(res.len(), 7, "{res:?}");
    assert_eq!(by_row[&2][1], "+15550000001");
    assert_eq!(by_row[&2][3], "delivered");
    assert_eq!(by_row[&8][1], "+15550000007");
    assert_eq!(by_row[&3][3], "rejected");
    assert!(by_row[&3][2].is_empty());
    assert!(by_row[&3][4].contains("invalid number"));
    // The message behind row 5 kept its comma and line break.
    let m = app.message(by_row[&5][2].parse().unwrap());
    assert_eq!(m["body"], "quoted, with comma\nand a line break");
    // Rows are in file order.
    let order: Vec<i64> = res.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(order, vec![2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn templates_aliases_dry_runs_duplicates_and_all_or_nothing() {
    let app = spawn_app("");
    let csv =
        "Mobile,name,amount\n5550000001,Ann,$5\n5550000002,Bob,$7\n+1 555 000 0001,Ann again,$9\n";
    // A placeholder naming a column the file lacks: refused before anything is stored.
    let r = post_csv(&app, &app.key, "template=Hi%20%7B%7Bsurname%7D%7D", csv);
    let msg = r.assert_error(422, "invalid_columns");
    assert!(msg.contains("surname"), "{msg}");
    // A dry run: the report, the count of texts and parts and a preview; nothing stored.
    let r = post_csv(
        &app,
        &app.key,
        "template=Hi%20%7B%7Bname%7D%7D%2C%20you%20owe%20%7B%7Bamount%7D%7D&dry_run=true",
        csv,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["texts"].as_i64(), v["parts"].as_i64()),
        (Some(3), Some(3)),
        "{v}"
    );
    assert_eq!(v["preview"][0]["body"], "Hi Ann, you owe $5", "{v}");
    assert_eq!(v["preview"][0]["to"], "+15550000001");
    let list = app.get("/api/v1/jobs").json();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(app.count(), 0);
    // dedupe: the third row repeats the first number.
    let v = created(&post_csv(
        &app,
        &app.key,
        "template=Hi%20%7B%7Bname%7D%7D&dedupe=true&from=ACME",
        csv,
    ));
    assert_eq!(
        (v["accepted"].as_i64(), v["duplicates"].as_i64()),
        (Some(2), Some(1)),
        "{v}"
    );
    let id = v["id"].as_i64().unwrap();
    wait_job(&app, id, 30, |j| j["state"] == "done");
    let res = results_csv(&app, &app.key, id);
    assert_eq!(res[2][3], "duplicate", "{res:?}");
    assert!(res[2][4].contains("row 2"), "{res:?}");
    let m = app.message(res[1][2].parse().unwrap());
    assert_eq!(
        (m["body"].as_str(), m["from"].as_str()),
        (Some("Hi Bob"), Some("ACME"))
    );
    // all_or_nothing with a bad row: 422 with the rows, nothing stored.
    let before = app.count();
    let bad = "to,body\n+15550000001,ok\nnope,bad\n";
    let r = post_csv(&app, &app.key, "all_or_nothing=true", bad);
    r.assert_error(422, "rows_rejected");
    assert_eq!(r.json()["errors"][0]["row"], 3);
    assert_eq!(app.count(), before);
    // ... and without one, stored as usual.
    let v = created(&post_csv(
        &app,
        &app.key,
        "all_or_nothing=true",
        "to,body\n+15550000009,ok\n",
    ));
    assert_eq!(v["accepted"], 1);
    // Unknown parameters, bad rates and content types are 4xx.
    post_csv(&app, &app.key, "colour=red", bad).assert_error(400, "unknown_parameter");
    post_csv(&app, &app.key, "rate=-1", bad).assert_error(422, "invalid_parameter");
    post_csv(&app, &app.key, "", "name,body\nx,y\n").assert_error(422, "invalid_columns");
    let r = app.req("POST", "/api/v1/jobs", Some("{}"));
    r.assert_error(415, "unsupported_media_type");
}

#[test]
fn multipart_uploads_and_the_upload_limit() {
    // The normal request limit is small; uploads have their own.
    let app = spawn_app("max_request_bytes = \"1KiB\"\nmax_upload_bytes = \"64KiB\"");
    let mut csv = String::from("to,body\n");
    for i in 0..100 {
        csv.push_str(&format!(
            "+1555{i:07},multipart row {i} padded to make the file larger than one KiB\n"
        ));
    }
    let boundary = "XyZzY";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nfrom a form\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"list.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n\
         --{boundary}--\r\n"
    );
    let auth = format!("Bearer {}", app.key);
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = http(
        &app.addr,
        "POST",
        "/api/v1/jobs",
        &[("Authorization", &auth), ("Content-Type", &ct)],
        Some(body.as_bytes()),
    )
    .unwrap();
    let v = created(&r);
    assert_eq!(v["accepted"], 100, "{v}");
    assert_eq!(v["name"], "from a form");
    wait_job(&app, v["id"].as_i64().unwrap(), 30, |j| {
        j["state"] == "done"
    });
    // Over max_upload_bytes: 413, and nothing stored.
    let big = csv.repeat(10);
    let r = post_csv(&app, &app.key, "", &big);
    r.assert_error(413, "payload_too_large");
    assert_eq!(app.count(), 100);
}

#[test]
fn another_users_job_is_not_found_and_admins_see_all() {
    let app = spawn_app_with(Opts {
        users: &[("alice", "user"), ("bob", "user"), ("root", "admin")],
        ..Opts::default()
    });
    let v = created(&post_csv(
        &app,
        app.key_of("alice"),
        "",
        "to,body\n+15550000001,hi\n",
    ));
    let id = v["id"].as_i64().unwrap();
    let bob = app.key_of("bob");
    for (method, path) in [
        ("GET", format!("/api/v1/jobs/{id}")),
        ("GET", format!("/api/v1/jobs/{id}/results.csv")),
        ("POST", format!("/api/v1/jobs/{id}/pause")),
        ("POST", format!("/api/v1/jobs/{id}/cancel")),
        ("GET", "/api/v1/jobs/999999".to_string()),
    ] {
        app.req_as(bob, method, &path, None, &[])
            .assert_error(404, "not_found");
    }
    let bobs = app.req_as(bob, "GET", "/api/v1/jobs", None, &[]).json();
    assert_eq!(bobs["jobs"].as_array().unwrap().len(), 0, "{bobs}");
    assert_eq!(job(&app, app.key_of("root"), id)["id"], id);
    let all = app
        .req_as(app.key_of("root"), "GET", "/api/v1/jobs", None, &[])
        .json();
    assert_eq!(all["jobs"][0]["id"], id, "{all}");
}

const SLOW: &str = r#"
[[device]]
name = "loopback"
kind = "loopback"
delay = "10ms"
window = 1
"#;

fn numbers_csv(n: usize, start: usize) -> String {
    let mut csv = String::from("to,body\n");
    for i in start..start + n {
        csv.push_str(&format!("+1555{i:07},bulk {i}\n"));
    }
    csv
}

#[test]
fn pause_resume_and_cancel() {
    let app = spawn_app(SLOW);
    let v = created(&post_csv(&app, &app.key, "rate=50", &numbers_csv(400, 0)));
    let id = v["id"].as_i64().unwrap();
    wait_job(&app, id, 30, |j| {
        j["counts"]["delivered"].as_i64().unwrap_or(0) >= 5
    });
    let p = app.req("POST", &format!("/api/v1/jobs/{id}/pause"), None);
    assert_eq!(p.status, 200, "{}", p.text());
    assert_eq!(p.json()["state"], "paused");
    // What was already handed to the device finishes; every other row is held back
    // (scheduled until the job resumes), none left where the dispatcher could claim it.
    let n = |j: &Value, s: &str| j["counts"][s].as_i64().unwrap_or(0);
    let j = wait_job(&app, id, 30, |j| {
        n(j, "sending") == 0 && n(j, "queued") == 0
    });
    let held = j["finished"].as_i64().unwrap();
    assert!(held < 400 && n(&j, "scheduled") > 0, "{j}");
    // The dispatcher claims again (an API text goes out), and still the job does not move.
    let t = app.send_ok(&json!({"to": "+15559990001", "body": "meanwhile"}))[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.wait_final(t)["status"], "delivered");
    let j = job(&app, &app.key, id);
    assert_eq!(
        j["finished"].as_i64().unwrap(),
        held,
        "a paused job went on sending: {j}"
    );
    let r = app.req("POST", &format!("/api/v1/jobs/{id}/resume"), None);
    assert_eq!(r.json()["state"], "running", "{}", r.text());
    wait_job(&app, id, 30, |j| {
        j["finished"].as_i64().unwrap() >= held + 20
    });
    let c = app.req("POST", &format!("/api/v1/jobs/{id}/cancel"), None);
    assert_eq!(c.status, 200, "{}", c.text());
    let j = wait_job(&app, id, 30, |j| {
        j["counts"].as_object().unwrap().keys().all(|s| is_final(s))
    });
    assert_eq!(j["state"], "cancelled", "{j}");
    let cancelled = j["counts"]["cancelled"].as_i64().unwrap_or(0);
    assert!(cancelled > 0 && cancelled < 400, "{j}");
    assert_eq!(
        j["counts"]["delivered"].as_i64().unwrap() + cancelled,
        400,
        "{j}"
    );
    app.req("POST", &format!("/api/v1/jobs/{id}/resume"), None)
        .assert_error(409, "not_allowed");
}

#[test]
fn an_api_text_goes_out_while_a_large_job_is_running() {
    let app = spawn_app(SLOW);
    // 2,000 rows at about 100 a second: the job takes twenty seconds.
    let v = created(&post_csv(&app, &app.key, "", &numbers_csv(2000, 0)));
    let id = v["id"].as_i64().unwrap();
    wait_job(&app, id, 30, |j| {
        j["counts"]["delivered"].as_i64().unwrap_or(0) > 0
    });
    let started = Instant::now();
    let m = app.send_ok(&json!({"to": "+15559999999", "body": "urgent"}));
    let m = app.wait_final(m[0]["id"].as_i64().unwrap());
    assert_eq!(m["status"], "delivered");
    let took = started.elapsed();
    let j = job(&app, &app.key, id);
    assert!(
        j["counts"]["delivered"].as_i64().unwrap() < 1500,
        "the job was nearly done, so this proves nothing: {j}"
    );
    assert!(
        took < Duration::from_secs(3),
        "the API text waited {took:?} behind the job"
    );
}

fn spool_config(dir: &Path) -> String {
    format!(
        "[spool]\ndir = \"{}\"\nuser = \"alice\"\nfrom = \"ACME\"\npoll_interval = \"50ms\"\nsettle = \"400ms\"\n",
        dir.display()
    )
}

fn wait_for_file(p: &Path, secs: u64, app: &App) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !p.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared; log:\n{}",
            p.display(),
            app.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_watched_folder_takes_complete_files_only() {
    let spool = TempDir::new("spool");
    let app = spawn_app(&spool_config(spool.path()));
    let incoming = spool.path().join("incoming");
    // A file written slowly, each pause shorter than `settle`: taken only once complete.
    let path = incoming.join("slow.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(b"to,name\n").unwrap();
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(150));
        writeln!(f, "+1555000{i:04},Person {i}").unwrap();
        f.flush().unwrap();
    }
    drop(f);
    // Its sidecar, written first in real life; here it just has to be there before settle.
    std::fs::write(
        incoming.join("slow.csv.json"),
        r#"{"template": "Dear {{name}}"}"#,
    )
    .unwrap();
    let done = spool.path().join("done/slow.csv");
    wait_for_file(&done, 30, &app);
    let report = std::fs::read_to_string(spool.path().join("done/slow.csv.report.csv")).unwrap();
    assert_eq!(report.lines().count(), 9, "{report}");
    let jobs = app.get("/api/v1/jobs").json();
    let j = &jobs["jobs"][0];
    assert_eq!(
        (j["total"].as_i64(), j["accepted"].as_i64()),
        (Some(8), Some(8)),
        "{jobs}"
    );
    assert_eq!(j["source"], "spool");
    let id = j["id"].as_i64().unwrap();
    wait_job(&app, id, 30, |j| j["state"] == "done");
    let res = results_csv(&app, &app.key, id);
    let m = app.message(res[3][2].parse().unwrap());
    assert_eq!(
        (m["body"].as_str(), m["from"].as_str()),
        (Some("Dear Person 3"), Some("ACME"))
    );
    // Written under a .tmp name and renamed into place.
    let tmp = incoming.join("renamed.csv.tmp");
    std::fs::write(&tmp, "to,body\n+15550000100,hello\n").unwrap();
    std::fs::rename(&tmp, incoming.join("renamed.csv")).unwrap();
    wait_for_file(&spool.path().join("done/renamed.csv"), 30, &app);
    // A file without a number column: failed/, with the reason beside it.
    std::fs::write(incoming.join("broken.csv"), "name,body\nx,y\n").unwrap();
    let reason = spool.path().join("failed/broken.csv.reason");
    wait_for_file(&reason, 30, &app);
    assert!(std::fs::read_to_string(&reason)
        .unwrap()
        .contains("number column"));
    assert!(spool.path().join("failed/broken.csv").exists());
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
}

#[test]
fn a_kill_in_the_middle_of_a_large_file_neither_loses_nor_repeats_rows() {
    const ROWS: usize = 30_000;
    let spool = TempDir::new("spool-kill");
    let mut app = spawn_app(&spool_config(spool.path()));
    let tmp = spool.path().join("incoming/.big.csv");
    std::fs::write(&tmp, numbers_csv(ROWS, 0)).unwrap();
    std::fs::rename(&tmp, spool.path().join("incoming/big.csv")).unwrap();
    // Kill -9 once some rows of the file are stored, before all are.
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let jobs = app.get("/api/v1/jobs").json();
        if let Some(j) = jobs["jobs"].as_array().and_then(|a| a.first()) {
            let acc = j["accepted"].as_i64().unwrap_or(0);
            assert!(
                acc < ROWS as i64,
                "the import finished before the kill: {j}"
            );
            if acc > 0 {
                break j["id"].as_i64().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the import never started; log:\n{}",
            app.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    app.kill();
    app.start();
    let j = wait_job(&app, id, 120, |j| j["state"] == "done");
    assert_eq!(
        (j["total"].as_i64(), j["accepted"].as_i64()),
        (Some(ROWS as i64), Some(ROWS as i64)),
        "{j}"
    );
    assert_eq!(j["counts"]["delivered"].as_i64(), Some(ROWS as i64), "{j}");
    let res = results_csv(&app, &app.key, id);
    let mut rows: Vec<i64> = res.iter().map(|r| r[0].parse().unwrap()).collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), ROWS, "a row is missing or repeated");
    assert_eq!((rows[0], rows[ROWS - 1]), (2, ROWS as i64 + 1));
    wait_for_file(&spool.path().join("done/big.csv"), 30, &app);
    assert_eq!(
        app.get("/api/v1/jobs").json()["jobs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn job_submit_uploads_and_follows_the_job() {
    let app = spawn_app("");
    let file = app.write_file("list.csv", "phone,name\n5550000001,Ann\n5550000002,Bob\n");
    let o = cli(
        &[
            "job",
            "submit",
            file.to_str().unwrap(),
            "--template",
            "Hi {{name}}",
            "--from",
            "ACME",
            "--server",
            &app.base,
            "--api-key",
            &app.key,
        ],
        None,
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("2 accepted"), "{out}");
    assert!(out.contains("done: 2 delivered"), "{out}");
    // Not a TTY: progress comes as lines.
    assert!(stderr(&o).contains("100% 2/2 done"), "{}", stderr(&o));
    let o = cli(
        &[
            "job",
            "submit",
            file.to_str().unwrap(),
            "--template",
            "Hi {{nobody}}",
            "--server",
            &app.base,
            "--api-key",
            &app.key,
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nobody"), "{}", stderr(&o));
}

#[test]
fn an_api_upload_cut_by_a_kill_is_imported_after_the_restart() {
    const ROWS: usize = 30_000;
    let mut app = spawn_app("");
    let csv = numbers_csv(ROWS, 0);
    let (addr, key) = (app.addr.clone(), app.key.clone());
    // The client's request dies with the server; the job must not.
    let client = std::thread::spawn(move || {
        let auth = format!("Bearer {key}");
        let _ = http(
            &addr,
            "POST",
            "/api/v1/jobs",
            &[("Authorization", &auth), ("Content-Type", "text/csv")],
            Some(csv.as_bytes()),
        );
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let jobs = app.get("/api/v1/jobs").json();
        if let Some(j) = jobs["jobs"].as_array().and_then(|a| a.first()) {
            let acc = j["accepted"].as_i64().unwrap_or(0);
            assert!(
                acc < ROWS as i64,
                "the import finished before the kill: {j}"
            );
            if acc > 0 {
                break j["id"].as_i64().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the import never started; log:\n{}",
            app.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    app.kill();
    let _ = client.join();
    app.start();
    let j = wait_job(&app, id, 120, |j| j["state"] == "done");
    assert_eq!(
        (
            j["total"].as_i64(),
            j["accepted"].as_i64(),
            j["counts"]["delivered"].as_i64()
        ),
        (Some(ROWS as i64), Some(ROWS as i64), Some(ROWS as i64)),
        "{j}"
    );
    let mut rows: Vec<i64> = results_csv(&app, &app.key, id)
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), ROWS, "a row is missing or repeated");
    // The upload is removed once its import is done.
    let uploads = app.dir.path().join("uploads");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0) > 0 {
        assert!(Instant::now() < deadline, "the upload file was left behind");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_job_on_postgres_is_imported_paused_and_delivered() {
    let app = spawn_app_pg("");
    let mut csv = numbers_csv(300, 0);
    csv.push_str("bogus,bad\n");
    let v = created(&post_csv(&app, &app.key, "dedupe=true&rate=200", &csv));
    assert_eq!(
        (v["accepted"].as_i64(), v["rejected"].as_i64()),
        (Some(300), Some(1)),
        "{v}"
    );
    assert_eq!(v["errors"][0]["row"], 302);
    let id = v["id"].as_i64().unwrap();
    let p = app.req("POST", &format!("/api/v1/jobs/{id}/pause"), None);
    assert_eq!(p.json()["state"], "paused", "{}", p.text());
    let r = app.req("POST", &format!("/api/v1/jobs/{id}/resume"), None);
    assert_eq!(r.json()["state"], "running", "{}", r.text());
    let j = wait_job(&app, id, 60, |j| j["state"] == "done");
    assert_eq!(j["counts"]["delivered"], 300, "{j}");
    assert_eq!(results_csv(&app, &app.key, id).len(), 301);
}

fn multipart(app: &App, fields: &[(&str, &str)], csv: &str) -> Resp {
    let boundary = "XyZzY";
    let mut body = String::new();
    for (k, v) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"l.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
    ));
    let auth = format!("Bearer {}", app.key);
    let ct = format!("multipart/form-data; boundary={boundary}");
    http(
        &app.addr,
        "POST",
        "/api/v1/jobs",
        &[("Authorization", &auth), ("Content-Type", &ct)],
        Some(body.as_bytes()),
    )
    .unwrap()
}

#[test]
fn a_template_cannot_make_the_server_build_a_huge_text() {
    let app = spawn_app("");
    // 50 KB of placeholders over a 1 MB column: rendered whole that is 10 GB per row. The
    // row is refused as too long as soon as its text passes what 10 parts can carry; the
    // other rows are stored and the server goes on.
    let template = "{{b}}".repeat(10_000);
    let huge = "x".repeat(1_000_000);
    let csv = format!("to,b\n+15550000001,{huge}\n+15550000002,ok\n");
    let r = multipart(&app, &[("template", &template)], &csv);
    let v = created(&r);
    assert_eq!(
        (v["accepted"].as_i64(), v["rejected"].as_i64()),
        (Some(0), Some(2)),
        "{v}"
    );
    let e = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        e.contains("text too long") && e.contains("max_parts"),
        "{v}"
    );
    assert_eq!(v["errors"][0]["row"], 2);
    // A template that fits, over the same column: row 2 too long, row 3 stored.
    let r = multipart(&app, &[("template", "Hi {{b}}")], &csv);
    let v = created(&r);
    assert_eq!(
        (v["accepted"].as_i64(), v["rejected"].as_i64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(app.get("/healthz").status, 200);

    // A template over 64 KiB in a form field is refused before the file is read. (A query
    // string cannot carry one: hyper refuses a URI that long with 414.)
    let long = "a".repeat(70_000);
    let r = multipart(&app, &[("template", &long)], "to,b\n+15550000001,x\n");
    let m = r.assert_error(413, "field_too_large");
    assert!(m.contains("template"), "{m}");
    // Any other form field over 64 KiB too, without reading it whole.
    let r = multipart(&app, &[("name", &long)], "to,b\n+15550000001,x\n");
    r.assert_error(413, "field_too_large");
    assert_eq!(app.count(), 1, "only the one good row was ever stored");
}

#[test]
fn links_left_in_the_watched_folder_are_never_written_through_nor_read() {
    let spool = TempDir::new("spool-links");
    let app = spawn_app(&spool_config(spool.path()));
    let victim = spool.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    // Whoever can write into failed/ guesses where the next reason goes.
    std::fs::create_dir_all(spool.path().join("failed")).unwrap();
    std::os::unix::fs::symlink(&victim, spool.path().join("failed/broken.csv.reason")).unwrap();
    let incoming = spool.path().join("incoming");
    std::fs::write(incoming.join("broken.csv"), "name,body\nx,y\n").unwrap();
    let reason = spool.path().join("failed/broken.csv.reason.1");
    wait_for_file(&reason, 30, &app);
    assert!(std::fs::read_to_string(&reason)
        .unwrap()
        .contains("number column"));
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "the link was not followed"
    );
    // A sidecar that is a link to another file is refused, not read.
    let secret = spool.path().join("secret.json");
    std::fs::write(&secret, r#"{"template": "the secret is 42"}"#).unwrap();
    std::fs::write(incoming.join("list.csv"), "to,body\n+15550000100,hello\n").unwrap();
    std::os::unix::fs::symlink(&secret, incoming.join("list.csv.json")).unwrap();
    let reason = spool.path().join("failed/list.csv.reason");
    wait_for_file(&reason, 30, &app);
    assert!(std::fs::read_to_string(&reason)
        .unwrap()
        .contains("not a plain file"));
    assert_eq!(app.count(), 0);
}

/// The watched folder's jobs are its user's: a user given senders gets the folder's `from`
/// only if it is one of them; otherwise the file goes to failed/ with the reason, nothing sent.
#[test]
fn the_watched_folder_sends_only_as_its_user_may() {
    let spool = TempDir::new("spool");
    let app = spawn_app_with(Opts {
        extra: &spool_config(spool.path()),
        users: &[("alice", "user"), ("root", "admin")],
        ..Opts::default()
    });
    let users = app
        .req_as(app.key_of("root"), "GET", "/api/v1/users", None, &[])
        .json();
    let alice = users["users"][0]["id"].as_i64().unwrap();
    let r = app.req_as(
        app.key_of("root"),
        "PATCH",
        &format!("/api/v1/users/{alice}"),
        Some(r#"{"senders": ["BRANCH"]}"#),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let incoming = spool.path().join("incoming");
    std::fs::write(incoming.join("acme.csv"), "to,body\n+15550000200,hello\n").unwrap();
    let reason = spool.path().join("failed/acme.csv.reason");
    wait_for_file(&reason, 30, &app);
    let why = std::fs::read_to_string(&reason).unwrap();
    assert!(why.contains("ACME") && why.contains("BRANCH"), "{why}");
    assert!(app.all_messages(app.key_of("alice")).is_empty());
}
