//! One client connection: the task that owns the socket, feeds what it reads to the
//! [`Session`], writes the replies, carries out the session's actions, keeps the deadlines,
//! and upgrades to TLS on STARTTLS.
//!
//! The deadlines are totals, not per read, so a client that sends a byte at a time gains
//! nothing: each command line must be complete within `command_timeout` of the reply to the
//! one before, a message within `data_timeout` of the 354 reply, and the whole connection
//! within `session_timeout`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;
use crate::session::{Action, Session};

/// Bytes read from the socket at once.
const READ_BUF: usize = 16 * 1024;

/// How long the connection waits for the client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For each command line, from the reply to the one before.
    pub command: Duration,
    /// For the whole message, from the 354 reply to the final dot.
    pub data: Duration,
    /// For the whole connection.
    pub session: Duration,
}

/// The connection's clock: when it started, and when the session last replied.
struct Clock {
    timeouts: Timeouts,
    session_ends: Instant,
    last_reply: Instant,
}

impl Clock {
    fn new(timeouts: Timeouts) -> Clock {
        let now = Instant::now();
        Clock {
            timeouts,
            session_ends: now + timeouts.session,
            last_reply: now,
        }
    }

    /// When the client must have sent what the session waits for.
    fn deadline(&self, in_data: bool) -> Instant {
        let phase = if in_data {
            self.timeouts.data
        } else {
            self.timeouts.command
        };
        (self.last_reply + phase).min(self.session_ends)
    }
}

/// What ended a run over one stream.
enum End {
    Closed,
    StartTls,
}

/// Serves one client until it leaves, the session ends, or the listener shuts down.
pub(crate) async fn serve(
    tcp: TcpStream,
    client: IpAddr,
    mut session: Session,
    gateway: Arc<Gateway>,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut tcp = tcp;
    let mut clock = Clock::new(timeouts);
    let mut conn = Conn {
        session: &mut session,
        gateway: &gateway,
        client,
        clock: &mut clock,
        shutdown: &shutdown,
    };
    match run(&mut tcp, &mut conn).await? {
        End::Closed => Ok(()),
        End::StartTls => {
            let Some(acceptor) = tls else {
                return Ok(());
            };
            let handshake = tokio::time::timeout(timeouts.command, acceptor.accept(tcp)).await;
            conn.clock.last_reply = Instant::now();
            let mut stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "SMTP STARTTLS handshake failed");
                    return Ok(());
                }
                Err(_) => {
                    tracing::debug!("SMTP STARTTLS handshake timed out");
                    return Ok(());
                }
            };
            conn.session.tls_started();
            // A second STARTTLS is refused by the session, so this run ends the connection.
            run(&mut stream, &mut conn).await?;
            Ok(())
        }
    }
}

/// What a run over one stream works with.
struct Conn<'a> {
    session: &'a mut Session,
    gateway: &'a Gateway,
    client: IpAddr,
    clock: &'a mut Clock,
    shutdown: &'a CancellationToken,
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    c: &mut Conn<'_>,
) -> std::io::Result<End> {
    let mut buf = vec![0u8; READ_BUF];
    let mut action: Option<Action> = None;
    loop {
        // Replies go out before anything that waits: the client may be waiting for them
        // (RFC 2920 §3.1: a server never holds replies back while it blocks).
        let out = c.session.take_output();
        if !out.is_empty() {
            c.clock.last_reply = Instant::now();
            // A client that does not read its replies is held to the same deadline.
            let deadline = c.clock.deadline(false);
            let written = tokio::time::timeout_at(deadline, async {
                stream.write_all(&out).await?;
                stream.flush().await
            })
            .await;
            match written {
                Ok(r) => r?,
                Err(_) => return Ok(End::Closed),
            }
        }
        match action.take() {
            Some(Action::Close) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
                return Ok(End::Closed);
            }
            Some(Action::StartTls) => return Ok(End::StartTls),
            // Lookups and commits are not raced against shutdown: a message whose commit
            // started is answered, so the client knows whether it was taken.
            Some(a) => {
                action = match c.gateway.answer(a, c.client).await {
                    Some(answer) => c.session.resolve(answer),
                    None => None,
                };
                continue;
            }
            None => {}
        }
        if c.session.is_closed() {
            return Ok(End::Closed);
        }
        let deadline = c.clock.deadline(c.session.in_data());
        tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read(&mut buf)) => match read {
                Err(_) => action = Some(c.session.timed_out()),
                Ok(Ok(0)) => return Ok(End::Closed),
                Ok(Ok(n)) => action = c.session.ingest(&buf[..n]),
                Ok(Err(e)) => return Err(e),
            },
            _ = c.shutdown.cancelled() => action = Some(c.session.shutting_down()),
        }
    }
}
