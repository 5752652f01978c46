//! `textgate serve` under systemd's `Type=notify`: the notifications it sends to
//! `$NOTIFY_SOCKET`, received here on a socket of the test's own as systemd would.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Kills the server if the test fails before it stops it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// Sends SIGTERM, as systemd stops a service.
    fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM failed");
    }
}

/// A socket of the test's own in `dir`, where notifications arrive as systemd's would.
fn notify_socket(dir: &TempDir) -> (std::path::PathBuf, UnixDatagram) {
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (path, socket)
}

/// The next notification, as its lines.
fn next(socket: &UnixDatagram, log: &std::path::Path) -> Vec<String> {
    let mut buf = [0u8; 4096];
    let len = socket.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no notification from textgate ({e}); log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    let text = std::str::from_utf8(&buf[..len]).expect("a notification is UTF-8");
    assert!(text.ends_with('\n'), "{text:?}");
    text.lines().map(str::to_string).collect()
}

#[test]
fn serve_says_ready_pings_the_watchdog_and_says_stopping() {
    let dir = TempDir::new("notify");
    let (socket_path, socket) = notify_socket(&dir);
    let config = dir.path().join("textgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp_listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}/textgate.db\"\n\n[[device]]\nname = \"loopback\"\nkind = \"loopback\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("server.log");
    let child = command()
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        // Pings every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start textgate serve");
    let mut server = Server(child);

    assert_eq!(next(&socket, &log), ["STATUS=opening the store"]);
    let ready = next(&socket, &log);
    assert_eq!(ready[0], "READY=1", "{ready:?}");
    assert_eq!(ready[2], format!("MAINPID={}", server.0.id()), "{ready:?}");
    let addr = ready[1]
        .strip_prefix("STATUS=serving HTTP on http://")
        .unwrap_or_else(|| panic!("the status names the address: {ready:?}"));
    // Ready means ready: what systemd starts next can connect at once.
    let r = http(addr, "GET", "/healthz", &[], None).expect("HTTP answers once READY=1 is sent");
    assert_eq!(r.status, 200, "{}", r.text());

    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(next(&socket, &log), ["WATCHDOG=1"]);
    }
    // Three pings take about 400 ms; within the 400 ms interval each, with room for a slow
    // machine.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    server.terminate();
    // Pings sent before the signal may come first.
    let stopping = loop {
        let m = next(&socket, &log);
        if m != ["WATCHDOG=1"] {
            break m;
        }
    };
    assert_eq!(stopping[0], "STOPPING=1", "{stopping:?}");
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `textgate port` too: ready once its store is open and its devices started (the link to
/// the central server comes and goes by itself, so it is not waited for), stopping on SIGTERM.
#[test]
fn a_port_server_says_ready_and_stopping() {
    let dir = TempDir::new("notify-port");
    let (socket_path, socket) = notify_socket(&dir);
    let config = dir.path().join("port.toml");
    // A central server that is not there: the port server is ready all the same.
    std::fs::write(
        &config,
        format!(
            "server = \"http://127.0.0.1:9\"\nname = \"branch\"\ntoken = \"port-token-for-the-notify-test\"\ndata_dir = \"{}\"\n\n[[device]]\nname = \"gsm\"\nkind = \"loopback\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("port.log");
    let child = command()
        .args(["port", "--config", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start textgate port");
    let mut port = Server(child);
    let ready = next(&socket, &log);
    assert_eq!(
        ready,
        [
            "READY=1".to_string(),
            "STATUS=linking to http://127.0.0.1:9".to_string(),
            format!("MAINPID={}", port.0.id()),
        ]
    );
    port.terminate();
    assert_eq!(next(&socket, &log)[0], "STOPPING=1");
    let status = port.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
