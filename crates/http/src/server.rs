//! The HTTP listener: accepts connections up to `[server] max_connections`, serves each with
//! hyper's HTTP/1.1 connection under deadlines, and shuts down by letting every connection
//! finish the request it is serving.
//!
//! A client is never allowed to hold a connection for nothing (docs/operations.md, limits):
//!
//! - between requests, a connection on which nothing arrives for `idle_timeout` is closed;
//! - once the first byte of a request has arrived, its head (request line and headers) must
//!   be complete within `header_read_timeout`;
//! - a handler, body included, must answer within `request_timeout` (`upload_timeout` for a
//!   job upload), else the client gets 408 (see [`request_deadline`]);
//! - an answer that the client does not read for `idle_timeout` ends the connection.
//!
//! hyper's own header timer starts when the connection waits for a request, so it would also
//! be the idle timeout; the deadlines here are kept by [`Watched`], which wraps the socket,
//! and a per-connection [`Activity`] that the service updates when a request starts and ends.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// The deadlines and the connection cap, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// From a request's first byte to the end of its head.
    pub header_read: Duration,
    /// Nothing received between requests, or an answer not read by the client.
    pub idle: Duration,
}

impl Limits {
    /// From the configuration.
    pub fn from_config(s: &textgate_core::config::ServerConfig) -> Limits {
        Limits {
            max_connections: s.max_connections.max(1),
            header_read: s.header_read_timeout.0,
            idle: s.idle_timeout.0,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled; then takes no new connections,
/// lets each connection finish the request it is serving (bounded by the request timeouts),
/// and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: tokio_util::sync::CancellationToken,
) -> io::Result<()> {
    // Bounds the connections served at once (file descriptors and memory); a client over the
    // limit is told 503 at once rather than left in the accept backlog.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Tells every connection to finish its request and close.
    let (closing, closed) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        // Reap finished connections so the set does not grow with every client.
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
        };
        let (sock, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(error = %e, "HTTP accept failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            conns.spawn(turn_away(sock));
            continue;
        };
        let (app, closed) = (app.clone(), closed.clone());
        conns.spawn(async move {
            connection(sock, peer, app, limits, closed).await;
            drop(permit);
        });
    }
    let _ = closing.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// The answer to a connection over `max_connections`.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 124\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server has its most connections open ([server] max_connections)\"}}";

async fn turn_away(mut sock: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), sock.write_all(BUSY)).await;
    let _ = sock.shutdown().await;
}

async fn connection(
    sock: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    mut closed: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched::new(sock, activity.clone(), limits));
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let serving = Serving::begin(activity.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(Upgrading(activity.clone()));
        let mut app = app.clone();
        async move {
            let answer = app.call(req.map(axum::body::Body::new)).await;
            drop(serving);
            answer
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Kept by `Watched` instead (see the module's comment).
        .header_read_timeout(None)
        .serve_connection(io, svc)
        // The port servers' link is a WebSocket upgrade.
        .with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = closed.wait_for(|c| *c) => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// What a connection is doing, for its deadlines.
struct Activity(Mutex<ActivityState>);

struct ActivityState {
    /// Requests being served (HTTP/1.1 serves one at a time).
    serving: u32,
    /// When bytes last moved either way.
    last: Instant,
    /// When the first byte of the next request's head arrived.
    head_started: Option<Instant>,
    /// The task of a read left waiting without a deadline while a request was served: woken
    /// when the request ends, so that its read is polled again with the idle deadline (hyper
    /// polls a read that returned `Pending` only once it is woken).
    parked_read: Option<std::task::Waker>,
    /// Handed over to a protocol with its own heartbeats (the port servers' WebSocket):
    /// reads wait without a deadline.
    upgraded: bool,
}

impl Activity {
    fn new() -> Activity {
        Activity(Mutex::new(ActivityState {
            serving: 0,
            last: Instant::now(),
            head_started: None,
            parked_read: None,
            upgraded: false,
        }))
    }

    fn with<T>(&self, f: impl FnOnce(&mut ActivityState) -> T) -> Option<T> {
        self.0.lock().ok().map(|mut s| f(&mut s))
    }

    fn moved(&self, read: bool) {
        self.with(|s| {
            let now = Instant::now();
            s.last = now;
            if read && s.serving == 0 && s.head_started.is_none() {
                s.head_started = Some(now);
            }
        });
    }

    /// When a pending read must have completed: none while a request is served (the request
    /// timeout covers its body, and hyper watches for the client closing meanwhile).
    fn read_deadline(&self, limits: &Limits, cx: &Context<'_>) -> Option<Instant> {
        self.with(|s| match (s.serving, s.head_started) {
            _ if s.upgraded => None,
            (0, Some(started)) => Some(started + limits.header_read),
            (0, None) => Some(s.last + limits.idle),
            _ => {
                s.parked_read = Some(cx.waker().clone());
                None
            }
        })
        .flatten()
    }

    fn write_deadline(&self, limits: &Limits) -> Option<Instant> {
        self.with(|s| s.last + limits.idle)
    }
}

/// Lets a handler say its connection is being upgraded to a protocol that keeps its own
/// heartbeats (the port servers' link), so that the idle and header deadlines of HTTP no
/// longer close it. In every request's extensions.
#[derive(Clone)]
pub struct Upgrading(Arc<Activity>);

impl Upgrading {
    /// From now on, reads on this connection wait without a deadline.
    pub fn mark(&self) {
        self.0.with(|s| s.upgraded = true);
    }
}

/// A request being served on a connection, from its head to its answer's head.
struct Serving(Arc<Activity>);

impl Serving {
    fn begin(a: Arc<Activity>) -> Serving {
        a.with(|s| {
            s.serving += 1;
            s.head_started = None;
        });
        Serving(a)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let parked = self
            .0
            .with(|s| {
                s.serving = s.serving.saturating_sub(1);
                s.last = Instant::now();
                s.parked_read.take()
            })
            .flatten();
        if let Some(w) = parked {
            w.wake();
        }
    }
}

/// A socket whose reads and writes fail with `TimedOut` once they wait past the
/// connection's deadline.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    limits: Limits,
    timer: Pin<Box<Sleep>>,
}

impl<S> Watched<S> {
    fn new(inner: S, activity: Arc<Activity>, limits: Limits) -> Watched<S> {
        Watched {
            inner,
            activity,
            limits,
            timer: Box::pin(tokio::time::sleep(limits.idle)),
        }
    }

    /// Whether `deadline` has passed; if not, the task is woken when it does (or earlier).
    ///
    /// Bytes move on every request, so the deadline moves later at almost every poll, and
    /// re-arming the timer is a trip through tokio's timer wheel: the timer is moved only when
    /// the deadline comes earlier than it, or when it fires before the deadline (once per
    /// idle period, a wake-up that costs nothing).
    fn expired(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> bool {
        let Some(deadline) = deadline else {
            return false;
        };
        if deadline < self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
        false
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.activity.moved(true);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = self.activity.read_deadline(&self.limits, cx);
                if self.expired(cx, deadline) {
                    return Poll::Ready(Err(timed_out("the client sent nothing in time")));
                }
                Poll::Pending
            }
        }
    }
}

impl<S> Watched<S> {
    /// What a write came to, with the connection's deadline applied to a write that waits.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.activity.moved(false);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = self.activity.write_deadline(&self.limits);
                if self.expired(cx, deadline) {
                    return Poll::Ready(Err(timed_out("the client read nothing in time")));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.wrote(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Middleware: a request whose handler has not answered within `[server] request_timeout`
/// (`upload_timeout` for `POST /api/v1/jobs`, whose answer comes once every row is stored) is
/// answered 408, and its handler dropped. A job's import goes on in its own task regardless.
pub async fn request_deadline(
    axum::extract::State(limits): axum::extract::State<RequestLimits>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let upload = req.method() == axum::http::Method::POST
        && matches!(req.uri().path(), "/api/v1/jobs" | "/jobs/new");
    let (limit, key) = if upload {
        (limits.upload, "upload_timeout")
    } else {
        (limits.request, "request_timeout")
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => crate::error::ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request took longer than {} ([server] {key}); send it faster, or ask an administrator to raise the limit",
                fmt_duration(limit)
            ),
        )
        .into_response(),
    }
}

/// The handler deadlines of [`request_deadline`].
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Every request but job uploads.
    pub request: Duration,
    /// `POST /api/v1/jobs`.
    pub upload: Duration,
}

/// `30s`, `1500ms`, `30m`: as the configuration writes durations.
fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn start(limits: Limits) -> (SocketAddr, tokio_util::sync::CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "hi" }));
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(serve(listener, app, limits, stop.clone()));
        (addr, stop)
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed() {
        let limits = Limits {
            max_connections: 4,
            header_read: Duration::from_millis(300),
            idle: Duration::from_millis(600),
        };
        let (addr, _stop) = start(limits).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let start = std::time::Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the connection is closed");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(4),
            "closed after idle_timeout, took {took:?}"
        );
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    }
}
