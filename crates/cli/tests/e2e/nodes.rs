//! Several `textgate serve` nodes on one PostgreSQL database: they know each other, and the
//! work that runs once (the queue's upkeep, the retention purge) is done by one node at a
//! time and moves when that node dies or stops.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

fn nodes(app: &App) -> Vec<Value> {
    let r = app.get("/api/v1/nodes");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["nodes"].as_array().unwrap().clone()
}

fn survivor_metrics(app: &App) -> String {
    let r = app.get("/metrics");
    assert_eq!(r.status, 200);
    r.text()
}

/// Gives `user` a password (as an administrator, through `app`) and signs in with it on the
/// node at `addr`; the session cookie.
fn sign_in(app: &App, admin_key: &str, user: &str, addr: &str) -> String {
    let users = app
        .req_as(admin_key, "GET", "/api/v1/users", None, &[])
        .json();
    let id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == user)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let password = format!("a long password for {user}");
    let body = json!({ "password": password }).to_string();
    let path = format!("/api/v1/users/{id}/password");
    assert_eq!(
        app.req_as(admin_key, "POST", &path, Some(&body), &[])
            .status,
        200
    );
    let form = format!("username={user}&password={}", password.replace(' ', "+"));
    let r = http(
        addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 303, "{}", r.text());
    r.header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn holder_of<'a>(nodes: &'a [Value], lease: &str) -> Option<&'a Value> {
    nodes.iter().find(|n| {
        n["leases"]
            .as_array()
            .is_some_and(|l| l.contains(&json!(lease)))
    })
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nodes_on_one_database_know_each_other_and_the_work_of_a_dead_one_moves() {
    let a = spawn_app_with(Opts {
        extra: "node_heartbeat = \"200ms\"\nnode_dead_after = \"1s\"\n",
        users: &[("admin", "admin"), ("alice", "user")],
        db: Db::Postgres,
    });
    let b = a.another_node("node_name = \"b\"");
    let c = a.another_node("node_name = \"c\"");
    // The first node owns the schema: it is dropped last.
    let mut all = vec![a, b, c];
    wait_until("three nodes alive, one doing the queue's upkeep", || {
        let n = nodes(&all[0]);
        n.iter().filter(|n| n["state"] == "alive").count() == 3
            && holder_of(&n, "queue-upkeep").is_some()
    });
    let list = nodes(&all[0]);
    assert_eq!(list.iter().filter(|n| n["this"] == true).count(), 1);
    let bee = list
        .iter()
        .find(|n| n["name"] == "b")
        .expect("node b listed");
    assert_eq!(bee["address"], all[1].addr.as_str());
    assert!(bee["version"].as_str().is_some_and(|v| !v.is_empty()));
    let alice = all[0].key_of("alice").to_string();
    assert_eq!(
        all[0]
            .req_as(&alice, "GET", "/api/v1/nodes", None, &[])
            .status,
        403,
        "administrators only"
    );
    // Kill the node that does the upkeep, whichever it is: another takes it over.
    let holder = holder_of(&list, "queue-upkeep").unwrap()["address"].clone();
    let dead = all.iter().position(|n| holder == n.addr.as_str()).unwrap();
    all[dead].kill();
    let alive = (dead + 1) % 3;
    let dead_addr = all[dead].addr.clone();
    wait_until("the dead node seen dead and its upkeep taken over", || {
        let n = nodes(&all[alive]);
        let seen_dead = n
            .iter()
            .any(|x| x["address"] == dead_addr.as_str() && x["state"] == "dead");
        seen_dead && holder_of(&n, "queue-upkeep").is_some_and(|h| h["state"] == "alive")
    });
    let metrics = survivor_metrics(&all[alive]);
    assert!(metrics.contains("textgate_node_info{node="), "{metrics}");
    // The upkeep really runs: a message scheduled a moment ahead is sent when due.
    let at = rfc3339(now_ms() + 1500);
    let survivor = &all[alive];
    let r = survivor.send(&json!({"to": "+15550001111", "body": "scheduled", "schedule_at": at}));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["messages"][0]["id"].as_i64().unwrap();
    assert_eq!(survivor.wait_final(id)["status"], "delivered");
    // A node that stops cleanly says so and gives its leases up at once.
    let other = 3 - dead - alive;
    let (_, ok) = all[other].terminate();
    assert!(ok);
    let stopped_addr = all[other].addr.clone();
    let n = nodes(&all[alive]);
    let s = n
        .iter()
        .find(|x| x["address"] == stopped_addr.as_str())
        .unwrap();
    assert_eq!(
        (s["state"].as_str(), s["leases"].as_array().map(Vec::len)),
        (Some("stopped"), Some(0)),
        "{s}"
    );
    while let Some(node) = all.pop() {
        drop(node);
    }
}

#[test]
fn what_one_node_changes_every_node_obeys_within_seconds() {
    let a = spawn_app_with(Opts {
        users: &[("admin", "admin"), ("alice", "user")],
        db: Db::Postgres,
        ..Opts::default()
    });
    let b = a.another_node("node_name = \"b\"");
    let admin = a.key_of("admin").to_string();
    // An API key made on one node works on the other; revoked on one, the other refuses it
    // within its revocation poll (2 s).
    let r = a.req_as(&admin, "POST", "/api/v1/keys", Some("{}"), &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    let (key, id) = (
        r.json()["key"].as_str().unwrap().to_string(),
        r.json()["id"].as_i64().unwrap(),
    );
    assert_eq!(
        b.req_as(&key, "GET", "/api/v1/messages", None, &[]).status,
        200
    );
    assert_eq!(
        a.req_as(&admin, "DELETE", &format!("/api/v1/keys/{id}"), None, &[])
            .status,
        200
    );
    let revoked = Instant::now();
    wait_until("node b to refuse the revoked key", || {
        b.req_as(&key, "GET", "/api/v1/messages", None, &[]).status == 401
    });
    assert!(
        revoked.elapsed() < Duration::from_secs(4),
        "{:?}",
        revoked.elapsed()
    );
    // A device disabled on one node: the other sends nothing through it within its poll
    // (2 s), and sends again once it is enabled there.
    assert_eq!(
        a.req_as(
            &admin,
            "POST",
            "/api/v1/devices/loopback/disable",
            None,
            &[]
        )
        .status,
        200
    );
    std::thread::sleep(Duration::from_millis(2500));
    let r = b.send(&json!({"to": "+15550002222", "body": "held"}));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["messages"][0]["id"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        b.message(id)["status"],
        "queued",
        "disabled on node a, so on b too"
    );
    assert_eq!(
        a.req_as(&admin, "POST", "/api/v1/devices/loopback/enable", None, &[])
            .status,
        200
    );
    assert_eq!(b.wait_final(id)["status"], "delivered");
    // A web session started on one node is good on the other.
    let cookie = sign_in(&a, &admin, "alice", &a.addr);
    let page = http(&b.addr, "GET", "/inbox", &[("Cookie", &cookie)], None).unwrap();
    assert_eq!(
        page.status,
        200,
        "signed in on a, served by b: {}",
        page.text()
    );
    assert!(page.text().contains("alice"));
    // Administrators see the nodes in the web UI; others do not.
    let status = http(&b.addr, "GET", "/admin/nodes", &[("Cookie", &cookie)], None)
        .unwrap()
        .status;
    assert_eq!(status, 404);
    let cookie = sign_in(&a, &admin, "admin", &b.addr);
    let page = http(&a.addr, "GET", "/admin/nodes", &[("Cookie", &cookie)], None).unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    assert!(text.contains("<td>b"), "node b listed: {text}");
    assert_eq!(text.matches("state-up\">alive").count(), 2, "{text}");
    drop(b);
}

/// A PostgreSQL server of the test's own (initdb in a temporary folder, on a free port), so
/// that it can be restarted without touching the machine's.
struct PrivatePg {
    dir: TempDir,
    port: u16,
}

impl PrivatePg {
    fn bin(tool: &str) -> String {
        let base = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server programs in /usr/lib/postgresql")
            .flatten()
            .map(|e| e.path())
            .max()
            .expect("a PostgreSQL version under /usr/lib/postgresql");
        base.join("bin").join(tool).to_string_lossy().into_owned()
    }

    /// Runs a PostgreSQL program: as the `postgres` user when the tests run as root (the
    /// server refuses root).
    fn run(args: &[&str]) -> std::process::Output {
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut c = if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).args(args);
            c
        } else {
            let mut c = std::process::Command::new(args[0]);
            c.args(&args[1..]);
            c
        };
        c.output().expect("run a PostgreSQL program")
    }

    fn start() -> PrivatePg {
        let dir = TempDir::new("pg");
        let _ = std::process::Command::new("chmod")
            .args(["777", dir.path().to_str().unwrap()])
            .status();
        let data = dir.path().join("data");
        let o = Self::run(&[
            &Self::bin("initdb"),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]);
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePg { dir, port };
        pg.ctl("start");
        pg
    }

    fn ctl(&self, what: &str) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let o = Self::run(&[
            &Self::bin("pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-m",
            "fast",
            "-w",
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            what,
        ]);
        assert!(
            o.status.success(),
            "pg_ctl {what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Self::run(&[
            &Self::bin("pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "stop",
        ]);
    }
}

#[test]
fn a_postgresql_restart_mid_burst_is_answered_503_and_every_202_is_delivered() {
    let pg = PrivatePg::start();
    let dir = TempDir::new("pgnode");
    let config = dir.path().join("textgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp_listen = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\ndefault_country = \"US\"\n[[device]]\nname = \"loopback\"\nkind = \"loopback\"\n",
            pg.url()
        ),
    )
    .unwrap();
    let key = create_user_with_key(&config, "alice", "user");
    let mut node = App::on_config(dir, config, key);
    let accepted = std::sync::Mutex::new(Vec::new());
    let refused = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..300 {
                let r = node
                    .send(&json!({"to": format!("+1555300{i:04}"), "body": format!("burst {i}")}));
                match r.status {
                    202 => accepted
                        .lock()
                        .unwrap()
                        .push(r.json()["messages"][0]["id"].as_i64().unwrap()),
                    503 => {
                        assert_eq!(
                            r.json()["error"]["code"],
                            "store_unavailable",
                            "{}",
                            r.text()
                        );
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    other => panic!("{other}: {}", r.text()),
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        std::thread::sleep(Duration::from_millis(800));
        pg.ctl("restart");
    });
    let accepted = accepted.into_inner().unwrap();
    let refused = refused.into_inner();
    assert_eq!(accepted.len() + refused, 300);
    assert!(accepted.len() > 100, "{} accepted", accepted.len());
    eprintln!(
        "PostgreSQL restarted mid-burst: {} accepted, {refused} answered 503",
        accepted.len()
    );
    for id in &accepted {
        assert_eq!(
            node.wait_final(*id)["status"],
            "delivered",
            "every 202 is delivered"
        );
    }
    node.kill();
}

#[test]
fn an_smsc_accounts_binds_are_shared_by_the_nodes_and_never_exceeded() {
    let mut smsc = crate::smpp::Smsc::start(&["--receipt-delay", "20"]);
    let a = spawn_app_with(Opts {
        extra: &format!(
            "node_heartbeat = \"200ms\"\nnode_dead_after = \"1s\"\n{}",
            smsc.device("binds = 2\nmax_rate = 20")
        ),
        users: &[("admin", "admin")],
        db: Db::Postgres,
    });
    let mut most = 0;
    let mut bound = |smsc: &mut crate::smpp::Smsc| {
        let n = smsc.stats()["bound_now"].as_u64().unwrap_or(0);
        most = most.max(n);
        n
    };
    wait_until("node a bound twice", || bound(&mut smsc) == 2);
    // A second node: the first gives one bind up, the second takes it.
    let b = a.another_node("node_name = \"b\"");
    let slots_of = |n: &Value| {
        n["leases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l.as_str().unwrap_or("").starts_with("bind:smsc1:"))
            .count()
    };
    wait_until("one bind each", || {
        let list = nodes(&a);
        bound(&mut smsc) == 2
            && list
                .iter()
                .filter(|n| n["state"] == "alive")
                .all(|n| slots_of(n) == 1)
    });
    let ids: Vec<i64> = (0..40)
        .map(|i| {
            let node = if i % 2 == 0 { &a } else { &b };
            let r = node.send(&json!({"to": format!("+1555400{i:04}"), "body": "shared account"}));
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["messages"][0]["id"].as_i64().unwrap()
        })
        .collect();
    for id in &ids {
        assert_eq!(b.wait_final(*id)["status"], "delivered");
        bound(&mut smsc);
    }
    // max_rate = 20 holds for the account, not for each node: in no second did the SMSC
    // get more than 20 submits (and a little for the two nodes' pacing not being in step).
    let times: Vec<i64> = smsc
        .submits()
        .iter()
        .filter_map(|s| parse_rfc3339_z(s["time"].as_str()?))
        .collect();
    assert_eq!(times.len(), 40);
    let busiest = times
        .iter()
        .map(|t| times.iter().filter(|u| **u >= *t && **u < t + 1000).count())
        .max()
        .unwrap_or(0);
    assert!(
        busiest <= 22,
        "{busiest} submits in one second, over max_rate = 20"
    );
    // Node a dies: its bind drops with it, and b takes its slot once a's lease runs out.
    let mut a = a;
    a.kill();
    wait_until("b bound twice", || {
        let list = nodes(&b);
        bound(&mut smsc) == 2 && list.iter().any(|n| n["name"] == "b" && slots_of(n) == 2)
    });
    assert!(
        most <= 2,
        "the account's 2 binds were exceeded: {most} at once"
    );
    let r = b.send(&json!({"to": "+15554009999", "body": "after the takeover"}));
    assert_eq!(
        b.wait_final(r.json()["messages"][0]["id"].as_i64().unwrap())["status"],
        "delivered"
    );
    assert!(smsc.stats()["bind_failures"].as_u64() == Some(0));
    drop(b);
}

#[test]
fn nodes_sharing_a_watched_folder_take_each_file_once_and_one_takes_over() {
    let spool = TempDir::new("spool");
    let a = spawn_app_with(Opts {
        extra: &format!(
            "node_heartbeat = \"200ms\"\nnode_dead_after = \"1s\"\n[spool]\ndir = \"{}\"\nuser = \"alice\"\npoll_interval = \"50ms\"\nsettle = \"200ms\"\n",
            spool.path().display()
        ),
        users: &[("admin", "admin"), ("alice", "user")],
        db: Db::Postgres,
    });
    let b = a.another_node("node_name = \"b\"");
    let mut all = vec![a, b];
    let incoming = spool.path().join("incoming");
    for f in 0..5 {
        let rows: String = (0..3)
            .map(|r| format!("+1555600{f}{r:03},file {f} row {r}\n"))
            .collect();
        std::fs::write(
            incoming.join(format!("f{f}.csv")),
            format!("to,body\n{rows}"),
        )
        .unwrap();
    }
    wait_until("the five files done", || {
        (0..5).all(|f| spool.path().join(format!("done/f{f}.csv")).exists())
    });
    let jobs = all[0].get("/api/v1/jobs").json();
    assert_eq!(
        jobs["jobs"].as_array().unwrap().len(),
        5,
        "each file one job: {jobs}"
    );
    wait_until("15 messages", || all[0].count() == 15);
    // One node watches; when it dies the other takes over.
    let list = nodes(&all[0]);
    let holder = holder_of(&list, "spool").expect("one node watches the folder")["address"].clone();
    let dead = all.iter().position(|n| holder == n.addr.as_str()).unwrap();
    all[dead].kill();
    std::fs::write(
        incoming.join("after.csv"),
        "to,body\n+15556009999,after the takeover\n",
    )
    .unwrap();
    wait_until("the file taken by the other node", || {
        spool.path().join("done/after.csv").exists()
    });
    let other = &all[1 - dead];
    wait_until("16 messages", || other.count() == 16);
    while let Some(n) = all.pop() {
        drop(n);
    }
}

#[test]
fn three_nodes_lose_nothing_when_one_is_killed_mid_burst() {
    // An account of 3 binds: one each.
    let mut smsc = crate::smpp::Smsc::start(&["--receipt-delay", "50", "--resp-delay", "2"]);
    let a = spawn_app_with(Opts {
        extra: &format!(
            "node_heartbeat = \"200ms\"\nnode_dead_after = \"1s\"\nclaim_lease = \"5s\"\n{}",
            smsc.device("binds = 3\nwindow = 10\nack_receipts_after_commit = true")
        ),
        users: &[("admin", "admin")],
        db: Db::Postgres,
    });
    let b = a.another_node("node_name = \"b\"");
    let c = a.another_node("node_name = \"c\"");
    let mut all = vec![a, b, c];
    let mut most_bound = 0;
    let mut bound = |smsc: &mut crate::smpp::Smsc| {
        let n = smsc.stats()["bound_now"].as_u64().unwrap_or(0);
        most_bound = most_bound.max(n);
        n
    };
    wait_until("one bind each", || bound(&mut smsc) == 3);
    // Clients spread over the three nodes at once, 100 numbers a request; node c is killed
    // once a third of the 20,100 messages are accepted.
    const EACH: usize = 6700;
    const CHUNK: usize = 100;
    let c_pid = all[2].pid().unwrap().to_string();
    let so_far = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let nodes = &all;
    let accepted: Vec<i64> = std::thread::scope(|s| {
        let senders: Vec<_> = (0..nodes.len())
            .map(|k| {
                let so_far = &so_far;
                s.spawn(move || {
                    let mut ids = Vec::new();
                    // Each client starts on its own node; when that node stops answering
                    // it sends the same request (same Idempotency-Key) to the next one, as
                    // behind a load balancer.
                    let mut at = k;
                    for chunk in 0..EACH / CHUNK {
                        let to: Vec<String> = (0..CHUNK)
                            .map(|i| format!("+1555{k}{:06}", chunk * CHUNK + i))
                            .collect();
                        let body = json!({"to": to, "body": "three nodes"}).to_string();
                        let idem = format!("client-{k}-request-{chunk}");
                        let mut tries = 0;
                        let got = loop {
                            let node = &nodes[at];
                            let auth = format!("Bearer {}", node.key);
                            let headers = [
                                ("Authorization", auth.as_str()),
                                ("Content-Type", "application/json"),
                                ("Idempotency-Key", idem.as_str()),
                            ];
                            match http(
                                &node.addr,
                                "POST",
                                "/api/v1/messages",
                                &headers,
                                Some(body.as_bytes()),
                            ) {
                                Ok(r) if r.status == 202 => break r.json(),
                                other => {
                                    tries += 1;
                                    assert!(tries < 3, "no node took request {idem}: {other:?}");
                                    at = (at + 1) % nodes.len();
                                }
                            }
                        };
                        let got: Vec<i64> = got["messages"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|m| m["id"].as_i64().unwrap())
                            .collect();
                        so_far.fetch_add(got.len(), std::sync::atomic::Ordering::Relaxed);
                        ids.extend(got);
                    }
                    ids
                })
            })
            .collect();
        wait_until("a third accepted", || {
            so_far.load(std::sync::atomic::Ordering::Relaxed) >= EACH
        });
        assert!(std::process::Command::new("kill")
            .args(["-9", &c_pid])
            .status()
            .unwrap()
            .success());
        senders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    all[2].kill();
    assert_eq!(
        accepted.len(),
        EACH * 3,
        "every request was taken by some node"
    );
    // Every message any node accepted, the dead one included, ends delivered (its receipt
    // applied) exactly once.
    let survivor = &all[0];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open = survivor.sql("SELECT count(*) FROM messages WHERE status <> 'delivered'");
        if open.trim() == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "{open} messages not delivered");
        bound(&mut smsc);
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    let delivered: std::collections::HashSet<i64> = survivor
        .sql("SELECT id FROM messages WHERE status = 'delivered'")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let lost: Vec<_> = accepted
        .iter()
        .filter(|id| !delivered.contains(id))
        .collect();
    assert!(lost.is_empty(), "accepted and not delivered: {lost:?}");
    let submits = smsc.submits();
    let mut per: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for s in &submits {
        *per.entry(s["destination_addr"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    // Every message stored reached the SMSC, each request stored once: one the killed node
    // committed without living to answer was answered from that commit when sent again.
    let stored: usize = survivor
        .sql("SELECT count(*) FROM messages")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        stored,
        accepted.len(),
        "a request sent again was answered from the first"
    );
    assert_eq!(per.len(), stored, "every stored message reached the SMSC");
    let doubled = submits.len() - per.len();
    if doubled > 400 {
        let logs: Vec<String> = all
            .iter()
            .map(|n| {
                std::fs::read_to_string(&n.log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .take(8)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        // Where the first of each doubled submit went, and when.
        let mut first: std::collections::HashMap<&str, (String, &str)> = Default::default();
        let mut twice: std::collections::BTreeMap<(String, String), (usize, String, String)> =
            Default::default();
        for sub in &submits {
            let to = sub["destination_addr"].as_str().unwrap_or("");
            let at = (
                sub["session"].to_string(),
                sub["time"].as_str().unwrap_or(""),
            );
            match first.get(to) {
                None => {
                    first.insert(to, (at.0.clone(), at.1));
                }
                Some((s1, t1)) => {
                    let e = twice.entry((s1.to_string(), at.0.clone())).or_insert((
                        0,
                        t1.to_string(),
                        t1.to_string(),
                    ));
                    e.0 += 1;
                    e.1 = e.1.clone().min(t1.to_string());
                    e.2 = e.2.clone().max(t1.to_string());
                }
            }
        }
        panic!(
            "{doubled} sent twice (first session, second session: count, first sent from..to): {twice:?}; attempts by outcome:\n{}\nwarnings:\n{}",
            survivor.sql("SELECT outcome, count(*), max(at) - min(at) FROM message_attempts GROUP BY outcome"),
            logs.join("\n--\n")
        );
    }
    assert!(
        most_bound <= 3,
        "{most_bound} binds at once on an account of 3"
    );
    eprintln!(
        "three nodes, one killed: {} accepted, all delivered in {took:.1?}, {doubled} sent twice, at most {most_bound} binds",
        accepted.len()
    );
    while let Some(n) = all.pop() {
        drop(n);
    }
}

#[test]
fn a_text_an_smsc_delivers_to_two_nodes_is_stored_once() {
    let mut smsc = crate::smpp::Smsc::start(&[]);
    let a = spawn_app_with(Opts {
        extra: &format!(
            "node_heartbeat = \"200ms\"\nnode_dead_after = \"1s\"\n{}",
            smsc.device("binds = 2\ninbound_dedup_window = \"1m\"")
        ),
        users: &[("admin", "admin")],
        db: Db::Postgres,
    });
    let b = a.another_node("node_name = \"b\"");
    wait_until("one bind each", || {
        let list = nodes(&a);
        smsc.stats()["bound_now"].as_u64() == Some(2)
            && list.iter().filter(|n| n["state"] == "alive").all(|n| {
                n["leases"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l.as_str().unwrap_or("").starts_with("bind:"))
            })
    });
    // The same text delivered twice goes round robin: once to each node.
    smsc.cmd(json!({"cmd": "mo", "from": "+15550007777", "to": "12345", "text": "only once please", "repeat": 2}));
    smsc.cmd(json!({"cmd": "mo", "from": "+15550007777", "to": "12345", "text": "another text"}));
    wait_until("every deliver_sm answered", || {
        smsc.stats()["deliver_sm_acked"].as_u64() == Some(3)
    });
    let texts = || {
        let r = a.get("/api/v1/inbound?limit=100");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["messages"].as_array().unwrap().clone()
    };
    wait_until("the texts stored", || texts().len() >= 2);
    std::thread::sleep(Duration::from_millis(300));
    let bodies: Vec<String> = texts()
        .iter()
        .map(|t| t["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        bodies.iter().filter(|b| *b == "only once please").count(),
        1,
        "{bodies:?}"
    );
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    drop(b);
}

#[test]
fn a_job_paused_on_one_node_stops_on_every_node() {
    let a = spawn_app_with(Opts {
        users: &[("admin", "admin")],
        db: Db::Postgres,
        ..Opts::default()
    });
    let b = a.another_node("node_name = \"b\"");
    let csv: String = std::iter::once("to\n".to_string())
        .chain((0..400).map(|i| format!("+1555700{i:04}\n")))
        .collect();
    let auth = format!("Bearer {}", a.key);
    let r = http(
        &a.addr,
        "POST",
        "/api/v1/jobs?rate=50&template=hello",
        &[("Authorization", &auth), ("Content-Type", "text/csv")],
        Some(csv.as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let job = |app: &App| app.get(&format!("/api/v1/jobs/{id}")).json();
    let n = |j: &Value, s: &str| j["counts"][s].as_i64().unwrap_or(0);
    wait_until("some rows delivered", || n(&job(&a), "delivered") >= 5);
    // Paused on b: both nodes stop sending its rows at once (they are held in the database).
    let p = b.req("POST", &format!("/api/v1/jobs/{id}/pause"), None);
    assert_eq!(
        (p.status, p.json()["state"].clone()),
        (200, json!("paused")),
        "{}",
        p.text()
    );
    wait_until("nothing of the job left to claim", || {
        let j = job(&a);
        n(&j, "sending") == 0 && n(&j, "queued") == 0
    });
    let held = job(&a)["finished"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        job(&b)["finished"].as_i64().unwrap(),
        held,
        "a paused job went on sending"
    );
    assert!(held < 400);
    // Resumed on a: it goes on, on whichever node claims its rows.
    let r = a.req("POST", &format!("/api/v1/jobs/{id}/resume"), None);
    assert_eq!(r.json()["state"], "running", "{}", r.text());
    wait_until("the job going on", || {
        job(&b)["finished"].as_i64().unwrap() >= held + 20
    });
    drop(b);
}
