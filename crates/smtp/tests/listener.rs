//! The listener and connection tasks on real sockets, in-process: the connection limit, the
//! command timeout, shutdown while a session is open, and a whole session whose texts land in
//! the store. Raw bytes on the wire, as a client sends them.

use std::sync::Arc;
use std::time::Duration;

use textgate_core::config::{Config, Dur, SmtpConfig};
use textgate_engine::dispatcher::Dispatcher;
use textgate_smtp::{Gateway, Listener, Running};
use textgate_store::{MessageFilter, NewUser, Role, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Server {
    addr: String,
    running: Option<Running>,
    stop: tokio_util::sync::CancellationToken,
    store: Store,
    _dispatcher: textgate_engine::dispatcher::Running,
}

async fn start(tune: impl FnOnce(&mut SmtpConfig)) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "tg-smtp-listener-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    let mut cfg = Config::embedded_defaults();
    cfg.server.database_url = format!("sqlite://{}/t.db", dir.display());
    let mut smtp = SmtpConfig {
        listen: "127.0.0.1:0".into(),
        domains: vec!["sms.example.com".into()],
        allowed_senders: vec!["*@example.com".into()],
        ..SmtpConfig::default()
    };
    tune(&mut smtp);
    cfg.smtp = Some(smtp);
    cfg.check().expect("a valid config");
    let store = Store::open(&cfg.server.database_url).await.expect("store");
    store
        .create_user(NewUser {
            name: "bob".into(),
            role: Role::User,
            email: Some("bob@example.com".into()),
            password_hash: None,
            created_at: 1,
        })
        .await
        .expect("user");
    let devices = textgate_drivers::build_devices(&cfg.devices, &|_, _| None).expect("devices");
    let dispatcher = Dispatcher::new(store.clone(), &cfg, devices);
    let dispatcher_running = dispatcher.start(tokio_util::sync::CancellationToken::new());
    let signin = Arc::new(textgate_engine::signin::SignIn::new(
        store.clone(),
        &cfg.auth,
    ));
    let gateway = Gateway::new(store.clone(), dispatcher, signin, &cfg)
        .await
        .expect("gateway");
    let listener = Listener::bind(&cfg)
        .await
        .expect("bind")
        .expect("[smtp] on");
    let addr = listener.local_addr().expect("addr").to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    Server {
        addr,
        running: Some(listener.start(Arc::new(gateway), stop.clone())),
        stop,
        store,
        _dispatcher: dispatcher_running,
    }
}

fn fastrand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: &str) -> Client {
        let (r, w) = TcpStream::connect(addr)
            .await
            .expect("connect")
            .into_split();
        Client {
            r: BufReader::new(r),
            w,
        }
    }

    /// One whole reply (its last line), or "" when the server closed.
    async fn reply(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line))
                .await
                .expect("a reply in time")
                .expect("read");
            if n == 0 || line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }

    async fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).await.expect("write");
    }
}

#[tokio::test]
async fn a_session_stores_its_texts_before_250() {
    let s = start(|_| {}).await;
    let mut c = Client::connect(&s.addr).await;
    assert!(c.reply().await.starts_with("220 sms.example.com"));
    c.send("EHLO t\r\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<15551234567@sms.example.com>\r\nDATA\r\n")
        .await;
    for want in ["250 ", "250 2.1.0", "250 2.1.5", "354"] {
        let r = c.reply().await;
        assert!(r.starts_with(want), "{want}: {r}");
    }
    c.send("Subject: t\r\n\r\nhello from the wire\r\n.\r\n")
        .await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 OK: 1 text stored"), "{r}");
    // 250 means committed: the text is readable now.
    let msgs = s
        .store
        .list_messages(MessageFilter {
            owner_id: None,
            status: None,
            before: None,
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        (msgs[0].to.as_str(), msgs[0].body.as_str()),
        ("+15551234567", "hello from the wire")
    );
    c.send("QUIT\r\n").await;
    assert!(c.reply().await.starts_with("221"));
    assert_eq!(c.reply().await, "", "closed after QUIT");
}

#[tokio::test]
async fn connections_over_the_limit_are_told_421() {
    let s = start(|c| c.max_connections = 1).await;
    let mut first = Client::connect(&s.addr).await;
    assert!(first.reply().await.starts_with("220"));
    let mut second = Client::connect(&s.addr).await;
    assert!(second
        .reply()
        .await
        .starts_with("421 4.7.0 Too many connections"));
    assert_eq!(second.reply().await, "");
    // When the first leaves, there is room again.
    first.send("QUIT\r\n").await;
    assert!(first.reply().await.starts_with("221"));
    assert_eq!(first.reply().await, "");
    let mut third = Client::connect(&s.addr).await;
    let mut r = third.reply().await;
    for _ in 0..50 {
        if r.starts_with("220") {
            break;
        }
        // The first connection's slot is freed when its task ends, just after the close.
        tokio::time::sleep(Duration::from_millis(20)).await;
        third = Client::connect(&s.addr).await;
        r = third.reply().await;
    }
    assert!(r.starts_with("220"), "{r}");
}

#[tokio::test]
async fn an_idle_client_times_out() {
    let s = start(|c| c.command_timeout = Dur(Duration::from_secs(1))).await;
    let mut c = Client::connect(&s.addr).await;
    assert!(c.reply().await.starts_with("220"));
    c.send("EHLO t\r\n").await;
    assert!(c.reply().await.starts_with("250 "));
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert_eq!(c.reply().await, "");
}

#[tokio::test]
async fn shutdown_tells_open_sessions_and_stops_accepting() {
    let mut s = start(|_| {}).await;
    let mut c = Client::connect(&s.addr).await;
    assert!(c.reply().await.starts_with("220"));
    s.stop.cancel();
    s.running
        .take()
        .expect("running")
        .finish(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.3.2"), "{r}");
    assert_eq!(c.reply().await, "");
    let again = TcpStream::connect(&s.addr).await;
    assert!(again.is_err(), "the listener is closed");
}
