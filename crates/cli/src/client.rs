//! `textgate send` and `textgate job submit`: clients of a running server's HTTP API.

use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// The arguments of `textgate send`.
pub struct SendArgs {
    pub to: String,
    pub body: String,
    pub from: Option<String>,
    pub server: Option<String>,
    pub api_key: Option<String>,
    pub wait: bool,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn call(
    client: &HttpClient,
    method: &str,
    url: &str,
    key: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))?;
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("cannot reach the server at {url}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

fn error_text(v: &Value) -> String {
    v.pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("no details")
        .to_string()
}

/// The server URL and API key from the flags or the environment.
fn endpoint(server: Option<String>, api_key: Option<String>) -> anyhow::Result<(String, String)> {
    let server = server
        .or_else(|| std::env::var("TEXTGATE_SERVER").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let server = server.trim_end_matches('/').to_string();
    if server.starts_with("https://") {
        bail!("this build's CLI speaks plain HTTP only; use an http:// URL (or curl for https)");
    }
    let Some(key) = api_key.or_else(|| std::env::var("TEXTGATE_API_KEY").ok()) else {
        bail!("no API key: pass --api-key or set TEXTGATE_API_KEY (create one with `textgate apikey create --user NAME`)");
    };
    Ok((server, key))
}

/// `textgate send --to N --body T [--from S] [--server URL] [--api-key KEY] [--wait]`.
pub async fn send(a: SendArgs) -> anyhow::Result<()> {
    let (server, key) = endpoint(a.server, a.api_key)?;
    let server = server.as_str();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut req = json!({"to": a.to, "body": a.body});
    if let Some(f) = a.from {
        req["from"] = json!(f);
    }
    let (status, v) = call(
        &client,
        "POST",
        &format!("{server}/api/v1/messages"),
        &key,
        Some(req),
    )
    .await?;
    if status != 202 {
        bail!(
            "the server refused the message ({status}): {}",
            error_text(&v)
        );
    }
    let m = v.pointer("/messages/0").cloned().unwrap_or(Value::Null);
    let id = m["id"]
        .as_i64()
        .context("the server's answer has no message id")?;
    println!(
        "{id} {} {} ({} part(s), {})",
        m["to"].as_str().unwrap_or(""),
        m["status"].as_str().unwrap_or(""),
        m["segments"],
        m["encoding"].as_str().unwrap_or("")
    );
    if !a.wait {
        return Ok(());
    }
    let mut last = m["status"].as_str().unwrap_or("").to_string();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, v) = call(
            &client,
            "GET",
            &format!("{server}/api/v1/messages/{id}"),
            &key,
            None,
        )
        .await?;
        if status != 200 {
            bail!("cannot read message {id} ({status}): {}", error_text(&v));
        }
        let now = v["status"].as_str().unwrap_or("").to_string();
        if now != last {
            // The error of a retried attempt stays on the message while it is sent again;
            // show it only with the status it explains.
            let ended = matches!(now.as_str(), "undelivered" | "failed" | "expired");
            match v["error"].as_str().filter(|_| ended || now == "queued") {
                Some(e) => println!("{id} {now}: {e}"),
                None => println!("{id} {now}"),
            }
            last = now;
        }
        if matches!(
            last.as_str(),
            "delivered" | "undelivered" | "failed" | "expired" | "cancelled"
        ) {
            if last == "delivered" {
                return Ok(());
            }
            bail!("message {id} ended {last}");
        }
    }
}

/// `textgate status [--server URL] [--api-key KEY] [--json]`: a running server's answer to
/// `GET /api/v1/status`, as lines for a person or as JSON.
pub async fn status(
    server: Option<String>,
    api_key: Option<String>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (server, key) = endpoint(server, api_key)?;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let (code, v) = call(
        &client,
        "GET",
        &format!("{server}/api/v1/status"),
        &key,
        None,
    )
    .await?;
    if code != 200 {
        bail!("the server at {server} answered {code}: {}", error_text(&v));
    }
    if as_json {
        println!("{v:#}");
        return Ok(());
    }
    print!("{}", status_text(&server, &v));
    Ok(())
}

/// The lines `textgate status` prints for the server's answer.
fn status_text(server: &str, v: &Value) -> String {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("?");
    let n = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
    let mut out = format!(
        "textgate {} at {server}: node {}, up {}, store {} (schema {}), {} node(s) alive\n",
        s("/version"),
        s("/node"),
        uptime(n(v, "uptime_seconds")),
        s("/store"),
        n(v, "schema"),
        n(v, "nodes_alive"),
    );
    let queue = &v["queue"];
    out += &format!(
        "queue: {} queued, {} scheduled, {} sending\n",
        n(queue, "queued"),
        n(queue, "scheduled"),
        n(queue, "sending")
    );
    let devices = v["devices"].as_array().cloned().unwrap_or_default();
    let width = devices
        .iter()
        .filter_map(|d| d["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0);
    out += &format!("devices: {}\n", devices.len());
    for d in &devices {
        out += &format!(
            "  {:width$}  {:8}  {:12}  sent {}, failed {}, received {}\n",
            d["name"].as_str().unwrap_or("?"),
            d["kind"].as_str().unwrap_or("?"),
            d["state"].as_str().unwrap_or("?"),
            n(d, "sent"),
            n(d, "failed"),
            n(d, "received"),
        );
    }
    out
}

/// An uptime as a person reads it: `3d 4h`, `2h 5m`, `42s`.
fn uptime(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The arguments of `textgate job submit`.
pub struct SubmitArgs {
    pub file: std::path::PathBuf,
    pub template: Option<String>,
    pub from: Option<String>,
    pub name: Option<String>,
    pub rate: Option<f64>,
    pub dedupe: bool,
    pub all_or_nothing: bool,
    pub server: Option<String>,
    pub api_key: Option<String>,
    pub wait: bool,
}

/// Percent-encodes a query value (RFC 3986: everything but the unreserved characters).
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request body read from a file a chunk at a time, so a large file is never in memory.
struct FileBody(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(hyper::body::Frame::data)))
    }
}

fn file_body(path: std::path::PathBuf) -> FileBody {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut f = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match f.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    FileBody(rx)
}

/// `textgate job submit FILE [--template T] [--from S] ...`: uploads the file, then follows
/// the job with a progress bar (a redrawn line on a terminal, a line every few seconds
/// otherwise) until every message has a final status.
pub async fn submit(a: SubmitArgs) -> anyhow::Result<()> {
    let (server, key) = endpoint(a.server, a.api_key)?;
    let size = std::fs::metadata(&a.file)
        .with_context(|| format!("cannot read {}", a.file.display()))?
        .len();
    let mut q: Vec<String> = Vec::new();
    for (k, v) in [
        ("template", a.template),
        ("from", a.from),
        ("name", a.name),
        ("rate", a.rate.map(|r| r.to_string())),
        ("dedupe", a.dedupe.then(|| "true".to_string())),
        (
            "all_or_nothing",
            a.all_or_nothing.then(|| "true".to_string()),
        ),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", query_value(&v)));
        }
    }
    let url = format!("{server}/api/v1/jobs?{}", q.join("&"));
    let upload: Client<hyper_util::client::legacy::connect::HttpConnector, FileBody> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::builder()
        .method("POST")
        .uri(&url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "text/csv")
        .header("content-length", size)
        .body(file_body(a.file.clone()))?;
    eprintln!("uploading {} ({size} bytes)...", a.file.display());
    let resp = upload
        .request(req)
        .await
        .with_context(|| format!("cannot reach the server at {server}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    for e in v["errors"].as_array().into_iter().flatten() {
        eprintln!("row {}: {}", e["row"], e["message"].as_str().unwrap_or(""));
    }
    if v["errors_truncated"] == Value::Bool(true) {
        eprintln!("(more bad rows: see the job's results.csv)");
    }
    if status != 201 {
        bail!("the server refused the job ({status}): {}", error_text(&v));
    }
    let id = v["id"]
        .as_i64()
        .context("the server's answer has no job id")?;
    println!(
        "job {id}: {} rows, {} accepted, {} rejected ({} duplicates), {} SMS parts",
        v["total"], v["accepted"], v["rejected"], v["duplicates"], v["segments"]
    );
    if !a.wait {
        return Ok(());
    }
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = std::time::Instant::now();
    let mut last_done = -1i64;
    loop {
        let (status, j) = call(
            &client,
            "GET",
            &format!("{server}/api/v1/jobs/{id}"),
            &key,
            None,
        )
        .await?;
        if status != 200 {
            bail!("cannot read job {id} ({status}): {}", error_text(&j));
        }
        let state = j["state"].as_str().unwrap_or("").to_string();
        let accepted = j["accepted"].as_i64().unwrap_or(0);
        let done = j["finished"].as_i64().unwrap_or(0);
        let ended = matches!(state.as_str(), "done" | "failed" | "cancelled");
        if tty {
            eprint!("\r{}", progress_line(done, accepted, &state));
            if ended {
                eprintln!();
            }
        } else if ended || (done != last_done && last_line.elapsed() >= Duration::from_secs(5)) {
            eprintln!("{}", progress_line(done, accepted, &state));
            last_line = std::time::Instant::now();
            last_done = done;
        }
        if ended {
            let counts = &j["counts"];
            let n = |s: &str| counts[s].as_i64().unwrap_or(0);
            println!(
                "job {id} {state}: {} delivered, {} sent without a receipt, {} undelivered, {} failed, {} expired, {} cancelled",
                n("delivered"), n("sent"), n("undelivered"), n("failed"), n("expired"), n("cancelled")
            );
            if state != "done" {
                bail!(
                    "job {id} ended {state}{}",
                    j["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
            let lost = n("undelivered") + n("failed") + n("expired") + n("cancelled");
            if lost > 0 {
                bail!("job {id}: {lost} message(s) were not delivered (see GET /api/v1/jobs/{id}/results.csv)");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(if tty { 300 } else { 1000 })).await;
    }
}

/// `[#########-----------]  45% 4500/10000 running`.
pub(crate) fn progress_line(done: i64, total: i64, state: &str) -> String {
    const WIDTH: i64 = 30;
    let filled = if total > 0 {
        (done * WIDTH / total).clamp(0, WIDTH)
    } else {
        0
    };
    let pct = if total > 0 { done * 100 / total } else { 0 };
    format!(
        "[{}{}] {pct:3}% {done}/{total} {state}   ",
        "#".repeat(filled as usize),
        "-".repeat((WIDTH - filled) as usize)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            query_value("Hi {{name}}, ok"),
            "Hi%20%7B%7Bname%7D%7D%2C%20ok"
        );
        assert_eq!(query_value("a-b_c.d~"), "a-b_c.d~");
    }

    #[test]
    fn uptimes_read_as_a_person_says_them() {
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(125), "2m 5s");
        assert_eq!(uptime(2 * 3600 + 5 * 60 + 9), "2h 5m");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
    }

    #[test]
    fn progress_bar() {
        assert_eq!(
            progress_line(0, 0, "importing").trim_end(),
            "[------------------------------]   0% 0/0 importing"
        );
        assert!(progress_line(5, 10, "running")
            .starts_with("[###############---------------]  50% 5/10"));
    }
}
