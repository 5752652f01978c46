//! systemd's service notifications (sd_notify(3)), for a `Type=notify` unit: `serve` says
//! `READY=1` once the store is open and its listeners are bound, `STOPPING=1` when it starts
//! draining, and `WATCHDOG=1` while it is healthy, on the datagram socket systemd names in
//! `$NOTIFY_SOCKET`. Without that variable (not started by systemd) nothing is sent.
//!
//! The protocol is a few `KEY=VALUE` lines in one datagram, so it is written here with std's
//! `UnixDatagram` rather than a crate or libsystemd. [`socket_address`], [`message`] and
//! [`watchdog_interval`] are pure and tested; [`Notifier`] only sends.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where `$NOTIFY_SOCKET` says to send: a path, or (`@name`) a Linux abstract socket.
#[derive(Debug, PartialEq, Eq)]
pub enum SocketPath {
    File(std::path::PathBuf),
    Abstract(Vec<u8>),
}

/// Reads `$NOTIFY_SOCKET`. Anything but an absolute path or `@name` (systemd also knows
/// `vsock:` addresses, for virtual machines) is `None`: we cannot send there.
pub fn socket_address(value: &OsStr) -> Option<SocketPath> {
    let bytes = value.as_bytes();
    match bytes.first()? {
        b'/' => Some(SocketPath::File(value.into())),
        b'@' if bytes.len() > 1 => Some(SocketPath::Abstract(bytes[1..].to_vec())),
        _ => None,
    }
}

/// One notification: `fields` as `KEY=VALUE` lines. A newline inside a value would start a
/// field of its own (sd_notify(3)), so it becomes a space.
pub fn message(fields: &[(&str, &str)]) -> String {
    let mut m = String::new();
    for (k, v) in fields {
        m.push_str(k);
        m.push('=');
        m.extend(v.chars().map(|c| if c == '\n' { ' ' } else { c }));
        m.push('\n');
    }
    m
}

/// How often systemd expects `WATCHDOG=1`, from `$WATCHDOG_USEC`, if the watchdog is meant
/// for this process: `$WATCHDOG_PID`, when set, names the process it is for
/// (sd_watchdog_enabled(3)).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, ours: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != ours {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// A socket to systemd's notification socket.
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for, or `None` when it is unset or unusable (said in
    /// the log: systemd would then wait for a readiness that never comes).
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        let notifier = socket_address(&value)
            .ok_or_else(|| std::io::Error::other("not a path or an @abstract name"))
            .and_then(|path| Notifier::to(&path));
        match notifier {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(socket = ?value, error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
                None
            }
        }
    }

    /// A notifier that sends to `path`.
    pub fn to(path: &SocketPath) -> std::io::Result<Notifier> {
        let to = match path {
            SocketPath::File(p) => SocketAddr::from_pathname(p)?,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            SocketPath::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            SocketPath::Abstract(_) => {
                return Err(std::io::Error::other("abstract sockets are Linux's"))
            }
        };
        let socket = UnixDatagram::unbound()?;
        // A blocking send, as sd_notify's, but never one that holds a runtime thread for
        // long if the receiver stops reading.
        socket.set_write_timeout(Some(Duration::from_secs(1)))?;
        Ok(Notifier { socket, to })
    }

    /// Sends one notification; a failure is logged, never fatal (the service goes on, and
    /// systemd acts on what it did not hear).
    pub fn send(&self, fields: &[(&str, &str)]) {
        let m = message(fields);
        if let Err(e) = self.socket.send_to_addr(m.as_bytes(), &self.to) {
            tracing::warn!(error = %e, notification = %m.trim_end(), "cannot notify systemd");
        }
    }

    /// `READY=1`, with a status line and our pid (systemd then knows the main process even
    /// if it was started through a wrapper).
    pub fn ready(&self, status: &str) {
        let pid = std::process::id().to_string();
        self.send(&[("READY", "1"), ("STATUS", status), ("MAINPID", &pid)]);
    }

    /// `STOPPING=1`: the service is draining, and systemd waits for the process to exit.
    pub fn stopping(&self, status: &str) {
        self.send(&[("STOPPING", "1"), ("STATUS", status)]);
    }

    /// A status line alone, for a step of the start that may take long (a migration).
    pub fn status(&self, status: &str) {
        self.send(&[("STATUS", status)]);
    }
}

/// Pings systemd's watchdog every half `interval` while `healthy` answers `true` within that
/// half, until `stop`. A ping comes from a task of the runtime, so a wedged runtime sends
/// none; a store that does not answer sends none either; and systemd restarts the service
/// when a whole interval passes without one.
pub async fn watchdog<F, Fut>(
    notifier: std::sync::Arc<Notifier>,
    interval: Duration,
    healthy: F,
    stop: tokio_util::sync::CancellationToken,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let half = interval / 2;
    let mut tick = tokio::time::interval(half);
    // After a slow check the next one comes half an interval later, not at once.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::time::timeout(half, healthy()).await {
            Ok(true) => notifier.send(&[("WATCHDOG", "1")]),
            Ok(false) => tracing::warn!("the store failed its health check: no watchdog ping"),
            Err(_) => tracing::warn!(
                within = ?half,
                "the store did not answer its health check: no watchdog ping"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses() {
        assert_eq!(
            socket_address(OsStr::new("/run/systemd/notify")),
            Some(SocketPath::File("/run/systemd/notify".into()))
        );
        assert_eq!(
            socket_address(OsStr::new("@/org/freedesktop/systemd1/notify/123")),
            Some(SocketPath::Abstract(
                b"/org/freedesktop/systemd1/notify/123".to_vec()
            ))
        );
        for unusable in ["", "@", "relative/path", "vsock:2:1234"] {
            assert_eq!(socket_address(OsStr::new(unusable)), None, "{unusable:?}");
        }
    }

    #[test]
    fn messages_are_one_line_per_field() {
        assert_eq!(
            message(&[("READY", "1"), ("STATUS", "serving"), ("MAINPID", "42")]),
            "READY=1\nSTATUS=serving\nMAINPID=42\n"
        );
        assert_eq!(
            message(&[("STATUS", "two\nlines")]),
            "STATUS=two lines\n",
            "a newline in a value must not start a field"
        );
    }

    #[test]
    fn watchdog_intervals() {
        let us = |n| Some(Duration::from_micros(n));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), us(30_000_000));
        assert_eq!(watchdog_interval(Some("400000"), Some("7"), 7), us(400_000));
        // For another process (a wrapper that started us, say).
        assert_eq!(watchdog_interval(Some("400000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("400000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    /// What the notifier sends, as a receiver bound at `path` gets it.
    fn round_trip(receiver: UnixDatagram, path: SocketPath) {
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::to(&path).unwrap();
        n.ready("serving");
        let mut buf = [0u8; 256];
        let len = receiver.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..len]).unwrap();
        assert_eq!(
            got,
            format!("READY=1\nSTATUS=serving\nMAINPID={}\n", std::process::id())
        );
    }

    #[test]
    fn sends_to_a_socket_file() {
        let dir = std::env::temp_dir().join(format!(
            "textgate-notify-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        round_trip(receiver, SocketPath::File(path.clone()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("textgate-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        // As systemd writes it in the variable.
        let path = socket_address(OsStr::new(&format!("@{name}"))).unwrap();
        round_trip(receiver, path);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(start_paused = true)]
    async fn the_watchdog_pings_only_while_the_store_answers() {
        use std::os::linux::net::SocketAddrExt;
        use std::sync::atomic::{AtomicU8, Ordering};
        use std::sync::Arc;
        const ANSWERS: u8 = 0;
        const FAILS: u8 = 1;
        const HANGS: u8 = 2;
        let name = format!("textgate-watchdog-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        receiver.set_nonblocking(true).unwrap();
        let pings = || {
            let mut n = 0;
            let mut buf = [0u8; 64];
            while let Ok(len) = receiver.recv(&mut buf) {
                assert_eq!(&buf[..len], b"WATCHDOG=1\n");
                n += 1;
            }
            n
        };
        let notifier = Arc::new(Notifier::to(&SocketPath::Abstract(name.into_bytes())).unwrap());
        let store = Arc::new(AtomicU8::new(ANSWERS));
        let stop = tokio_util::sync::CancellationToken::new();
        let s = store.clone();
        let task = tokio::spawn(watchdog(
            notifier,
            Duration::from_secs(10),
            move || {
                let s = s.clone();
                async move {
                    match s.load(Ordering::SeqCst) {
                        ANSWERS => true,
                        FAILS => false,
                        _ => std::future::pending().await,
                    }
                }
            },
            stop.clone(),
        ));
        let after = |secs: f64| tokio::time::sleep(Duration::from_secs_f64(secs));
        // The first tick is at once, then one every 5 s.
        after(10.5).await;
        assert_eq!(pings(), 3, "at 0 s, 5 s and 10 s");
        store.store(FAILS, Ordering::SeqCst);
        after(10.0).await;
        assert_eq!(pings(), 0, "no ping while the health check fails");
        store.store(HANGS, Ordering::SeqCst);
        after(20.0).await;
        assert_eq!(pings(), 0, "no ping while the health check hangs");
        store.store(ANSWERS, Ordering::SeqCst);
        after(10.0).await;
        assert!(pings() >= 1, "pings again once the store answers");
        stop.cancel();
        task.await.unwrap();
    }
}
