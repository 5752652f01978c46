//! `textgate send`: a client of a running server's HTTP API.

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

/// `textgate send --to N --body T [--from S] [--server URL] [--api-key KEY] [--wait]`.
pub async fn send(a: SendArgs) -> anyhow::Result<()> {
    let server = a
        .server
        .or_else(|| std::env::var("TEXTGATE_SERVER").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let server = server.trim_end_matches('/');
    if server.starts_with("https://") {
        bail!("this build's CLI speaks plain HTTP only; use an http:// URL (or curl for https)");
    }
    let Some(key) = a.api_key.or_else(|| std::env::var("TEXTGATE_API_KEY").ok()) else {
        bail!("no API key: pass --api-key or set TEXTGATE_API_KEY (create one with `textgate apikey create --user NAME`)");
    };
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
