//! The HTTP listener's limits: no client holds a connection for nothing, the connection cap
//! holds, JSON is only read when it says it is JSON, and every error is JSON, whatever
//! refused the request.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helpers::*;

const LIMITS: &str = "header_read_timeout = \"1s\"\nidle_timeout = \"2s\"\nrequest_timeout = \"1s\"\nmax_connections = 4\nmax_request_bytes = \"2KiB\"\n";

fn connect(app: &App) -> TcpStream {
    let s = TcpStream::connect(&app.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    (out, start.elapsed())
}

#[test]
fn a_slow_header_an_idle_connection_and_a_slow_body_are_cut_off() {
    let app = spawn_app(LIMITS);
    // Half a request line, then nothing: the head is not complete within 1s.
    let mut s = connect(&app);
    s.write_all(b"GET /healthz HT").unwrap();
    let (_, took) = read_until_closed(&mut s);
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "a slow head is cut after header_read_timeout, took {took:?}"
    );

    // One byte every 300 ms does not keep a connection past the head's deadline either.
    let mut s = connect(&app);
    for b in b"GET /healthz HTTP/1.1\r\nHost: ".iter() {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e)
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut => {}
        other => panic!("a head trickled for 4s was not cut off: {other:?}"),
    }

    // A keep-alive connection that is answered, then says nothing, is closed after idle_timeout.
    let mut s = connect(&app);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (answer, took) = read_until_closed(&mut s);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "an idle connection is closed after idle_timeout (2s), took {took:?}"
    );

    // A body promised and never sent: 408 after request_timeout, as JSON.
    let mut s = connect(&app);
    let key = app.key.clone();
    s.write_all(
        format!(
            "POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"to\""
        )
        .as_bytes(),
    )
    .unwrap();
    let (answer, took) = read_until_closed(&mut s);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    assert!(text.contains("[server] request_timeout"), "{text}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(app.count(), 0);
}

#[test]
fn connections_over_the_cap_are_answered_503_and_the_rest_are_served() {
    let app = spawn_app(LIMITS);
    // Four connections held open with a request half-sent (the cap is 4).
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(&app);
            s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut s = connect(&app);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (answer, _) = read_until_closed(&mut s);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).expect("the 503 body is JSON");
    assert_eq!(v["error"]["code"], "too_many_connections");
    // When they are cut (header_read_timeout), new clients are served again.
    for s in &mut held {
        let _ = read_until_closed(s);
    }
    let r = http(&app.addr, "GET", "/healthz", &[], None).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn json_is_read_only_when_it_says_so_and_every_refusal_is_json() {
    let app = spawn_app(LIMITS);
    let body = br#"{"to":"+15551234567","body":"hi"}"#;
    let auth = format!("Bearer {}", app.key);
    for ctype in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut h = vec![("Authorization", auth.as_str())];
        if let Some(c) = ctype {
            h.push(("Content-Type", c));
        }
        let r = http(&app.addr, "POST", "/api/v1/messages", &h, Some(body)).unwrap();
        let m = r.assert_error(415, "unsupported_media_type");
        assert!(m.contains("application/json"), "{m}");
    }
    assert_eq!(app.count(), 0, "nothing sent as another type was stored");
    // application/json with parameters, and a +json type, are JSON.
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json; charset=utf-8"),
    ];
    let r = http(&app.addr, "POST", "/api/v1/messages", &h, Some(body)).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());

    // axum's own refusals, made JSON: a path that is not UTF-8, a body over the limit.
    let r = http(
        &app.addr,
        "GET",
        "/api/v1/messages/%FF%FE",
        &[("Authorization", auth.as_str())],
        None,
    )
    .unwrap();
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.text()
    );
    assert!(r.status == 400 || r.status == 404, "{}", r.text());
    assert!(r.json()["error"]["message"].is_string(), "{}", r.text());
    let big = vec![b'x'; 4096];
    let r = http(
        &app.addr,
        "POST",
        "/api/v1/messages",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        Some(&big),
    )
    .unwrap();
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.text()
    );
    r.assert_error(413, "payload_too_large");
    // A query string axum cannot read as the handler's parameters.
    let r = app.get("/api/v1/jobs?limit=1&limit=2&cursor=%FF");
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.text()
    );
    assert!(r.status >= 400, "{}", r.text());
}
