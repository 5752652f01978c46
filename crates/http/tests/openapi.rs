//! The OpenAPI document and the router agree: every route is documented, every documented
//! path and method is routed (a request to it is not answered by the fallback).
//!
//! The one exception is the port servers' link (docs/port-servers.md): a WebSocket, not a
//! request and an answer, so it is routed but left out of the document.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::Value;
use textgate_core::config::Config;
use textgate_store::Store;
use tower_service::Service;

/// Routes that are not HTTP requests and answers: left out of the document.
const NOT_DOCUMENTED: &[(&str, &str)] = &[("GET", "/api/v1/port/link")];

/// `(METHOD, path)` of every `.route(...)` in the router's source.
fn routed() -> BTreeSet<(String, String)> {
    let src = include_str!("../src/lib.rs");
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let open = rest.find('"').expect("a path string");
        let close = rest[open + 1..].find('"').expect("its end") + open + 1;
        let path = rest[open + 1..close].to_string();
        // The route's handlers run to the next `.route(` (or the end of the router).
        let end = rest.find(".route(").unwrap_or(rest.len());
        let handlers = &rest[close..end];
        for (word, method) in [
            ("get(", "GET"),
            ("post(", "POST"),
            ("delete(", "DELETE"),
            ("patch(", "PATCH"),
            ("put(", "PUT"),
        ] {
            if handlers.contains(word) && !NOT_DOCUMENTED.contains(&(method, path.as_str())) {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(textgate_http::ops::OPENAPI).expect("valid JSON");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "delete", "patch", "put"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_path_is_routed() {
    let (r, d) = (routed(), documented());
    let undocumented: Vec<_> = r.difference(&d).collect();
    let unrouted: Vec<_> = d.difference(&r).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    assert!(r.len() > 20, "the source scan found the routes: {r:?}");
    let src = include_str!("../src/lib.rs");
    for (method, path) in NOT_DOCUMENTED {
        assert!(
            src.contains(&format!("\"{path}\"")),
            "{method} {path} is no longer routed: drop it from NOT_DOCUMENTED"
        );
        assert!(
            !d.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not a request and an answer: keep it out of openapi.json"
        );
    }
}

#[tokio::test]
async fn the_router_answers_every_documented_path_itself() {
    let dir = std::env::temp_dir().join(format!("tg-openapi-{}", std::process::id()));
    let mut cfg = Config::embedded_defaults();
    cfg.server.database_url = format!("sqlite://{}/t.db", dir.display());
    let store = Store::open(&cfg.server.database_url).await.expect("store");
    let devices = textgate_drivers::build_devices(&cfg.devices, &|_, _| None).expect("devices");
    let dispatcher = textgate_engine::dispatcher::Dispatcher::new(store.clone(), &cfg, devices);
    let ports = textgate_port::central::PortServers::new(&cfg, "test");
    let state = textgate_http::AppState::new(store.clone(), dispatcher, Arc::new(cfg), ports);
    let mut app = textgate_http::router(state);
    for (method, path) in documented() {
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(&concrete)
            .body(Body::empty())
            .expect("request");
        let resp = app.call(req).await.expect("an answer");
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(
            status != 405 && !text.contains("no such endpoint"),
            "{method} {path} is documented but the router's fallback answered {status}: {text}"
        );
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
