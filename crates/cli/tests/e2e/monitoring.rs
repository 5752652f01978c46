//! Logs and metrics as monitoring systems read them: `[log] format = "json"` writes only JSON
//! lines, with the fields log processors index; `/metrics` follows the Prometheus conventions;
//! and the dashboard and alert rules of docs/monitoring/ use only metrics that exist.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::helpers::*;

const ALERTS: &str = include_str!("../../../../docs/monitoring/alerts.yml");
const DASHBOARD: &str = include_str!("../../../../docs/monitoring/grafana-dashboard.json");
const OPERATIONS: &str = include_str!("../../../../docs/operations.md");
/// Lists each driver's `details`, which `/metrics` has as `textgate_device_<name>`.
const DEVICES: &str = include_str!("../../../../docs/devices-and-routing.md");

#[test]
fn json_logs_are_one_object_per_line_with_the_message_device_and_user() {
    let mut app = spawn_app(
        "[log]\nformat = \"json\"\nlevel = \"info\"\n\n\
         [[device]]\nname = \"loopback\"\nkind = \"loopback\"\nfailure_rate = 1.0\n",
    );
    // Started once with the tests' TEXTGATE_LOG (warn); again with the file's level, which
    // logs each message a device refuses.
    app.kill();
    app.log_from_config = true;
    app.start();
    let id = app.send_ok(&json!({"to": "+15550001000", "body": "refused"}))[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.wait_final(id)["status"], "failed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        let text = app.log_text();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\nlog:\n{text}"))
            })
            .collect();
        assert!(lines.len() > 2, "{text}");
        for l in &lines {
            for key in ["timestamp", "level", "target", "message"] {
                assert!(l.get(key).is_some(), "no {key} in {l}");
            }
            assert!(l.get("fields").is_none(), "fields are flattened: {l}");
        }
        if let Some(l) = lines.iter().find(|l| l["message_id"] == id) {
            break l.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line with message_id {id}:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(refused["device"], "loopback", "{refused}");
    assert_eq!(refused["user"], "alice", "{refused}");
    assert_eq!(refused["level"], "INFO", "{refused}");
    assert_eq!(refused["code"], "LB-REJECT", "{refused}");
}

/// One metric family of an exposition.
#[derive(Default, Debug)]
struct Family {
    kind: Option<String>,
    help: bool,
    samples: Vec<(String, f64)>,
}

/// The exposition's families, by name; panics on what the text format forbids (a family
/// described twice, a sample of no described family).
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            let f = out.entry(name.to_string()).or_default();
            assert!(!f.help, "{name} has two HELP lines");
            f.help = true;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let f = out.entry(name.to_string()).or_default();
            assert!(f.kind.is_none(), "{name} has two TYPE lines");
            f.kind = Some(kind.to_string());
        } else if !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|f| out.get(*f).and_then(|f| f.kind.as_deref()) == Some("histogram"))
                .unwrap_or(name);
            let f = out
                .get_mut(family)
                .unwrap_or_else(|| panic!("{line}: a sample before its family's TYPE"));
            f.samples
                .push((series.to_string(), value.parse().expect("a number")));
        }
    }
    out
}

/// Every `textgate_…` name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("textgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Every PromQL expression of the dashboard: its panels' targets and its variables' queries.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// The alert rules' names and expressions, read line by line (the file's shape is fixed: a
/// `- alert:` line, then `expr:` inline or as a folded block); the templates of annotations
/// are kept too, since they may query metrics.
fn alert_rules(text: &str) -> Vec<(String, String)> {
    assert!(text.contains("\ngroups:\n"), "not a Prometheus rules file");
    let mut rules: Vec<(String, String)> = Vec::new();
    let mut in_expr = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if let Some(name) = t.strip_prefix("- alert: ") {
            rules.push((name.to_string(), String::new()));
            in_expr = false;
            continue;
        }
        let Some((_, expr)) = rules.last_mut() else {
            continue;
        };
        if let Some(e) = t.strip_prefix("expr:") {
            let e = e.trim();
            in_expr = e == ">" || e == "|";
            if !in_expr {
                expr.push_str(e);
            }
        } else if in_expr && line.starts_with("          ") {
            expr.push(' ');
            expr.push_str(t);
        } else {
            in_expr = false;
            if t.starts_with("description:") || t.starts_with("summary:") {
                expr.push_str(" # ");
                expr.push_str(t);
            }
        }
    }
    rules
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_use_is_exposed() {
    // A port server configured (none joins), so that its families are on /metrics too.
    let app = spawn_app(
        "[[port_server]]\nname = \"branch\"\ntoken = \"a-token-of-sixteen-chars\"\n\n\
         [[device]]\nname = \"branch-lb\"\nkind = \"remote\"\nport_server = \"branch\"\n\n\
         [[device]]\nname = \"loopback\"\nkind = \"loopback\"\n\n\
         [[route]]\nprefix = \"+1\"\ndevices = [\"loopback\"]\n",
    );
    let msgs = app.send_ok(&json!({"to": ["+15550001000", "+15550001001"], "body": "m"}));
    for m in &msgs {
        assert_eq!(
            app.wait_final(m["id"].as_i64().unwrap())["status"],
            "delivered"
        );
    }
    let r = http(&app.addr, "GET", "/metrics", &[], None).unwrap();
    assert_eq!(r.status, 200);
    let text = r.text();
    let fams = families(&text);

    // The conventions: every family described, counters in `_total`, units in the names of
    // histograms, and samples in the histograms just filled.
    for (name, f) in &fams {
        let kind = f
            .kind
            .as_deref()
            .unwrap_or_else(|| panic!("{name}: no TYPE"));
        assert!(f.help, "{name}: no HELP");
        assert!(name.starts_with("textgate_"), "{name}");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}: counters, and only they, end in _total"
        );
        if kind == "histogram" {
            assert!(name.ends_with("_seconds"), "{name}: a latency in seconds");
        }
        let documented = OPERATIONS.contains(&format!("`{name}`"))
            || name
                .strip_prefix("textgate_device_")
                .is_some_and(|d| DEVICES.contains(&format!("`{d}`")));
        assert!(
            documented,
            "{name} is not in the metrics table of docs/operations.md (nor a driver's figure in docs/devices-and-routing.md)"
        );
    }
    let count = |series: &str| -> f64 {
        let (family, _) = series.split_once("_count").unwrap();
        fams[family]
            .samples
            .iter()
            .find(|(s, _)| s == series)
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .1
    };
    assert_eq!(count("textgate_accept_duration_seconds_count"), 1.0);
    assert_eq!(
        count("textgate_device_submit_duration_seconds_count{device=\"loopback\"}"),
        2.0
    );
    assert_eq!(
        count("textgate_receipt_delay_seconds_count{device=\"loopback\"}"),
        2.0
    );
    assert!(text.contains("textgate_accept_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
    assert!(fams["textgate_store_size_bytes"].samples[0].1 > 0.0);
    assert!(fams["textgate_store_filesystem_avail_bytes"].samples[0].1 > 0.0);
    // Alone on SQLite, the node does the queue's upkeep: the rule on no holder stays quiet.
    assert!(
        text.contains("textgate_node_lease_held{lease=\"queue-upkeep\"} 1\n"),
        "{text}"
    );

    // What the dashboard and the rules use exists, under the name they use.
    let exposed = |m: &str| {
        fams.contains_key(m)
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                m.strip_suffix(s)
                    .and_then(|f| fams.get(f))
                    .is_some_and(|f| f.kind.as_deref() == Some("histogram"))
            })
    };
    let rules = alert_rules(ALERTS);
    let names: Vec<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in [
        "TextgateQueueGrowing",
        "TextgateDeviceDown",
        "TextgateReceiptRateFalling",
        "TextgateWebhookDeadLetters",
        "TextgateDiskFilling",
    ] {
        assert!(names.contains(&wanted), "no {wanted} in {names:?}");
    }
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 10));
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() > 20, "{queries:?}");
    let mut used = BTreeSet::new();
    for (name, expr) in &rules {
        assert!(!expr.is_empty(), "{name} has no expr");
        used.extend(metric_names(expr));
    }
    for q in &queries {
        used.extend(metric_names(q));
    }
    let missing: Vec<&String> = used.iter().filter(|m| !exposed(m)).collect();
    assert!(
        missing.is_empty(),
        "used by docs/monitoring/ but not on /metrics: {missing:?}"
    );
    // And the histograms are among what they use.
    for h in [
        "textgate_accept_duration_seconds_bucket",
        "textgate_device_submit_duration_seconds_bucket",
        "textgate_receipt_delay_seconds_bucket",
        "textgate_store_filesystem_avail_bytes",
    ] {
        assert!(used.contains(h), "docs/monitoring/ does not use {h}");
    }
}
