//! Port servers on the central server's own pages (docs/port-servers.md): their families on
//! `/metrics`, their section on the web UI's devices page with its drain and resume forms,
//! and `GET /api/v1/port-servers`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use textgate_core::auth::hash_api_key;
use textgate_core::clock::now_ms;
use textgate_core::config::Config;
use textgate_port::central::PortServers;
use textgate_store::{NewUser, NewWebSession, Role, Store};
use tower_service::Service;

const WITH_PORT_SERVER: &str = r#"
[[port_server]]
name = "b1"
token = "0123456789abcdef0123"

[[device]]
name = "lb"
kind = "loopback"

[[device]]
name = "r1"
kind = "remote"
port_server = "b1"
"#;

/// A central server on a fresh SQLite store, with the configuration `toml`.
struct App {
    router: Router,
    store: Store,
    ports: Arc<PortServers>,
    dir: std::path::PathBuf,
}

impl App {
    async fn new(tag: &str, toml: &str) -> App {
        let dir =
            std::env::temp_dir().join(format!("tg-port-servers-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cfg = Config::parse(toml, &|_| None).expect("config");
        cfg.server.database_url = format!("sqlite://{}/t.db", dir.display());
        cfg.check().expect("a valid config");
        let store = Store::open(&cfg.server.database_url).await.expect("store");
        let ports = PortServers::new(&cfg, "test");
        let lease = cfg.server.claim_lease.0;
        let devices = textgate_drivers::build_devices(&cfg.devices, &|name, r| {
            let d = ports.device(name, &r.port_server, r.remote_device, lease)?;
            Some(Arc::new(d) as Arc<dyn textgate_drivers::Device>)
        })
        .expect("devices");
        let dispatcher = textgate_engine::dispatcher::Dispatcher::new(store.clone(), &cfg, devices);
        let state =
            textgate_http::AppState::new(store.clone(), dispatcher, Arc::new(cfg), ports.clone());
        App {
            router: textgate_http::router(state),
            store,
            ports,
            dir,
        }
    }

    async fn call(&mut self, req: Request<Body>) -> (StatusCode, header::HeaderMap, String) {
        let resp = self.router.call(req).await.expect("an answer");
        let (status, headers) = (resp.status(), resp.headers().clone());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .expect("body");
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(
        &mut self,
        path: &str,
        auth: &[(header::HeaderName, String)],
    ) -> (StatusCode, String) {
        let mut b = Request::builder().uri(path);
        for (k, v) in auth {
            b = b.header(k, v);
        }
        let (status, _, body) = self.call(b.body(Body::empty()).expect("request")).await;
        (status, body)
    }

    async fn post_form(
        &mut self,
        path: &str,
        cookie: &str,
        form: &str,
    ) -> (StatusCode, Option<String>) {
        let req = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .expect("request");
        let (status, headers, _) = self.call(req).await;
        let location = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, location)
    }

    /// A user with a web session (its cookie and CSRF token) and an API key.
    async fn user(&self, name: &str, role: Role) -> (String, String, String) {
        let user = self
            .store
            .create_user(NewUser {
                name: name.into(),
                role,
                email: None,
                password_hash: None,
                created_at: now_ms(),
            })
            .await
            .expect("user");
        // Session tokens are 64 hex digits.
        let token = format!("{:064x}", user.id);
        let csrf = format!("csrf-of-{name}");
        self.store
            .create_session(NewWebSession {
                token_hash: hash_api_key(&token),
                user_id: user.id,
                csrf: csrf.clone(),
                created_at: now_ms(),
                expires_at: now_ms() + 3_600_000,
            })
            .await
            .expect("session");
        let key = format!("tg_test_key_of_{name}");
        self.store
            .create_api_key(user.id, hash_api_key(&key), "tg_test".into(), None)
            .await
            .expect("key");
        (format!("textgate_session={token}"), csrf, key)
    }

    async fn close(self) {
        self.store.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn metrics_show_each_port_server() {
    let mut app = App::new("metrics", WITH_PORT_SERVER).await;
    let (status, text) = app.get("/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    for (name, kind, value) in [
        ("textgate_port_server_connected", "gauge", "0"),
        ("textgate_port_server_last_seen_seconds", "gauge", "0"),
        ("textgate_port_server_held", "gauge", "0"),
        ("textgate_port_server_unacked", "gauge", "0"),
        ("textgate_port_server_in_flight", "gauge", "0"),
        ("textgate_port_server_submits_total", "counter", "0"),
        ("textgate_port_server_reports_total", "counter", "0"),
        ("textgate_port_server_links_total", "counter", "0"),
        ("textgate_port_server_refused_total", "counter", "0"),
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "HELP of {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "TYPE of {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("\n{name}{{port_server=\"b1\"}} {value}\n")),
            "{name} of b1:\n{text}"
        );
    }
    // The remote device is a device like the others.
    assert!(
        text.contains("textgate_device_up{device=\"r1\",kind=\"remote\"} 0\n"),
        "{text}"
    );

    // The counters are the link's own.
    let b1 = app.ports.get("b1").expect("b1").clone();
    b1.counters
        .submits
        .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
    b1.counters
        .refused
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (_, text) = app.get("/metrics", &[]).await;
    assert!(
        text.contains("\ntextgate_port_server_submits_total{port_server=\"b1\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("\ntextgate_port_server_refused_total{port_server=\"b1\"} 1\n"),
        "{text}"
    );
    app.close().await;

    // Without port servers, no families of theirs.
    let mut app = App::new(
        "metrics-none",
        "[[device]]\nname = \"lb\"\nkind = \"loopback\"\n",
    )
    .await;
    let (status, text) = app.get("/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("textgate_device_up{"), "{text}");
    assert!(!text.contains("textgate_port_server_"), "{text}");
    app.close().await;
}

#[tokio::test]
async fn the_devices_page_shows_port_servers_and_drains_and_resumes_them() {
    let mut app = App::new("web", WITH_PORT_SERVER).await;
    let (cookie, csrf, key) = app.user("root", Role::Admin).await;

    let (status, body) = app
        .get("/devices", &[(header::COOKIE, cookie.clone())])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("<h2 class=\"section\">Port servers</h2>"),
        "{body}"
    );
    assert!(body.contains("<td>b1</td>"), "{body}");
    assert!(body.contains("offline"), "{body}");
    assert!(body.contains("last seen never"), "{body}");
    assert!(body.contains("none reported"), "{body}");
    assert!(body.contains("action=\"/port-servers/b1/drain\""), "{body}");
    assert!(
        body.contains(&format!("name=\"csrf\" value=\"{csrf}\"")),
        "{body}"
    );
    // The remote device is in the devices' list, with its port server.
    assert!(body.contains("<td>r1</td><td>remote</td>"), "{body}");

    // A wrong CSRF token changes nothing.
    let (status, _) = app
        .post_form("/port-servers/b1/drain", &cookie, "csrf=forged")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!app.ports.get("b1").expect("b1").draining());

    let form = format!("csrf={csrf}");
    let (status, location) = app
        .post_form("/port-servers/b1/drain", &cookie, &form)
        .await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location.as_deref(), Some("/devices"));
    assert!(app.ports.get("b1").expect("b1").draining());
    let (_, body) = app
        .get("/devices", &[(header::COOKIE, cookie.clone())])
        .await;
    assert!(
        body.contains("action=\"/port-servers/b1/resume\""),
        "{body}"
    );
    assert!(body.contains(">Resume</button>"), "{body}");

    // The API says the same.
    let bearer = [(header::AUTHORIZATION, format!("Bearer {key}"))];
    let (status, list) = app.get("/api/v1/port-servers", &bearer).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list: Value = serde_json::from_str(&list).expect("JSON");
    assert_eq!(list["port_servers"][0]["name"], "b1");
    assert_eq!(list["port_servers"][0]["draining"], true);
    assert_eq!(list["port_servers"][0]["connected"], false);
    assert_eq!(list["port_servers"][0]["last_seen"], Value::Null);

    let (status, location) = app
        .post_form("/port-servers/b1/resume", &cookie, &form)
        .await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location.as_deref(), Some("/devices"));
    assert!(!app.ports.get("b1").expect("b1").draining());

    // Unknown port servers and actions are not there.
    let (status, _) = app
        .post_form("/port-servers/nope/drain", &cookie, &form)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post_form("/port-servers/b1/explode", &cookie, &form)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Users who are not administrators see no devices page and cannot drain.
    let (alice, alice_csrf, _) = app.user("alice", Role::User).await;
    let (status, _) = app
        .get("/devices", &[(header::COOKIE, alice.clone())])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post_form(
            "/port-servers/b1/drain",
            &alice,
            &format!("csrf={alice_csrf}"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!app.ports.get("b1").expect("b1").draining());
    app.close().await;
}

#[tokio::test]
async fn without_port_servers_the_devices_page_has_no_such_section() {
    let mut app = App::new(
        "web-none",
        "[[device]]\nname = \"lb\"\nkind = \"loopback\"\n",
    )
    .await;
    let (cookie, _, _) = app.user("root", Role::Admin).await;
    let (status, body) = app.get("/devices", &[(header::COOKIE, cookie)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("<td>lb</td>"), "{body}");
    assert!(!body.contains("Port servers"), "{body}");
    app.close().await;
}
