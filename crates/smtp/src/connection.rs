//! One client connection: the task that owns the socket, feeds what it reads to the
//! [`Session`], writes the replies, carries out the session's actions, applies the timeouts,
//! and upgrades to TLS on STARTTLS.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::gateway::Gateway;
use crate::session::{Action, Session};

/// Bytes read from the socket at once.
const READ_BUF: usize = 16 * 1024;

/// How long the connection waits for the client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For each command line.
    pub command: Duration,
    /// For more of the message during DATA.
    pub data: Duration,
}

/// What ended a run over one stream.
enum End {
    Closed,
    StartTls,
}

/// Serves one client until it leaves, the session ends, or the listener shuts down.
pub(crate) async fn serve(
    tcp: TcpStream,
    mut session: Session,
    gateway: Arc<Gateway>,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut tcp = tcp;
    match run(&mut tcp, &mut session, &gateway, timeouts, &mut shutdown).await? {
        End::Closed => Ok(()),
        End::StartTls => {
            let Some(acceptor) = tls else {
                return Ok(());
            };
            let handshake = tokio::time::timeout(timeouts.command, acceptor.accept(tcp)).await;
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
            session.tls_started();
            // A second STARTTLS is refused by the session, so this run ends the connection.
            run(&mut stream, &mut session, &gateway, timeouts, &mut shutdown).await?;
            Ok(())
        }
    }
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    gateway: &Gateway,
    timeouts: Timeouts,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<End> {
    let mut buf = vec![0u8; READ_BUF];
    let mut action: Option<Action> = None;
    loop {
        // Replies go out before anything that waits: the client may be waiting for them
        // (RFC 2920 §3.1: a server never holds replies back while it blocks).
        let out = session.take_output();
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
        }
        match action.take() {
            Some(Action::Close) => {
                let _ = stream.shutdown().await;
                return Ok(End::Closed);
            }
            Some(Action::StartTls) => return Ok(End::StartTls),
            // Lookups and commits are not raced against shutdown: a message whose commit
            // started is answered, so the client knows whether it was taken.
            Some(a) => {
                action = match gateway.answer(a).await {
                    Some(answer) => session.resolve(answer),
                    None => None,
                };
                continue;
            }
            None => {}
        }
        if session.is_closed() {
            return Ok(End::Closed);
        }
        let limit = if session.in_data() {
            timeouts.data
        } else {
            timeouts.command
        };
        tokio::select! {
            read = tokio::time::timeout(limit, stream.read(&mut buf)) => match read {
                Err(_) => action = Some(session.timed_out()),
                Ok(Ok(0)) => return Ok(End::Closed),
                Ok(Ok(n)) => action = session.ingest(&buf[..n]),
                Ok(Err(e)) => return Err(e),
            },
            // `wait_for` also returns at once when the listener is gone.
            _ = shutdown.wait_for(|stop| *stop) => action = Some(session.shutting_down()),
        }
    }
}
