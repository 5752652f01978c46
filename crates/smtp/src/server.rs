//! The SMTP listener: binds `[smtp] listen`, loads the STARTTLS certificate, accepts
//! connections up to `max_connections`, gives each a task, and shuts down in order.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use textgate_core::config::Config;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::connection::{self, Timeouts};
use crate::gateway::Gateway;
use crate::session::{Peer, Session, Settings, BUSY_REPLY};
use crate::SmtpError;

/// The STARTTLS acceptor for `[smtp] tls_cert` and `tls_key` (rustls with the ring
/// provider), or `None` when they are not set.
pub fn tls_acceptor(cfg: &Config) -> Result<Option<TlsAcceptor>, SmtpError> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::ServerConfig;

    let Some(smtp) = &cfg.smtp else {
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&smtp.tls_cert, &smtp.tls_key) else {
        return Ok(None);
    };
    let tls_err = |key: &'static str, file: &str, reason: String| SmtpError::Tls {
        key,
        file: file.to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_err("tls_cert", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(
            "tls_cert",
            cert,
            "no PEM certificate in it".to_string(),
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        tls_err(
            "tls_key",
            key,
            format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}"),
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("tls_cert", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| tls_err("tls_key", key, format!("does not fit the certificate: {e}")))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// A bound, not yet running, SMTP listener.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    settings: Arc<Settings>,
    timeouts: Timeouts,
    max_connections: usize,
    per_client: usize,
}

impl Listener {
    /// Binds `[smtp] listen` and loads the certificate. `None` when `[smtp]` is off.
    pub async fn bind(cfg: &Config) -> Result<Option<Listener>, SmtpError> {
        let Some(smtp) = &cfg.smtp else {
            return Ok(None);
        };
        let tls = tls_acceptor(cfg)?;
        let tcp = TcpListener::bind(&smtp.listen)
            .await
            .map_err(|e| SmtpError::Bind {
                addr: smtp.listen.clone(),
                source: e,
            })?;
        Ok(Some(Listener {
            tcp,
            tls,
            settings: Arc::new(Settings::new(
                smtp,
                cfg.default_country(),
                cfg.server.max_parts,
            )),
            timeouts: Timeouts {
                command: smtp.command_timeout.0,
                data: smtp.data_timeout.0,
                session: smtp.session_timeout.0,
            },
            max_connections: smtp.max_connections,
            per_client: smtp.max_connections_per_client,
        }))
    }

    /// The address it listens on (the port, when `listen` ends in `:0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Starts accepting connections, until `stop` is cancelled (then see [`Running::finish`]).
    pub fn start(self, gateway: Arc<Gateway>, stop: CancellationToken) -> Running {
        let task = tokio::spawn(self.accept_loop(gateway, stop));
        Running { task }
    }

    async fn accept_loop(self, gateway: Arc<Gateway>, stopped: CancellationToken) {
        // Bounds the connections served at once; a client over the limit is told 421 at
        // once rather than left waiting in the accept backlog.
        let slots = Arc::new(Semaphore::new(self.max_connections));
        // And per client address, so that one client cannot take every slot.
        let clients = Arc::new(Clients::new(self.per_client));
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(10);
        loop {
            // Reap finished connections so the set does not grow with every client.
            while tasks.try_join_next().is_some() {}
            let accepted = tokio::select! {
                a = self.tcp.accept() => a,
                _ = stopped.cancelled() => break,
            };
            let (sock, peer) = match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(10);
                    a
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on, so that a
                    // passing shortage does not end the listener nor spin it.
                    tracing::warn!(error = %e, "SMTP accept failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            // Replies are small and each waits for the client: Nagle would delay them.
            let _ = sock.set_nodelay(true);
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tasks.spawn(turn_away(sock, BUSY_REPLY));
                continue;
            };
            let client = Peer::of(peer.ip(), &self.settings);
            // The company mail server relays every user's mail over many parallel sessions:
            // trusted networks are held only by `max_connections` (as Postfix exempts
            // `mynetworks` from its per-client limits).
            let this_client = if client.trusted {
                None
            } else {
                let Some(slot) = clients.clone().enter(peer.ip()) else {
                    tasks.spawn(turn_away(sock, CLIENT_BUSY_REPLY));
                    continue;
                };
                Some(slot)
            };
            let session = Session::new(self.settings.clone(), client);
            let (gateway, tls, timeouts, stopped) = (
                gateway.clone(),
                self.tls.clone(),
                self.timeouts,
                stopped.clone(),
            );
            tasks.spawn(async move {
                if let Err(e) =
                    connection::serve(sock, peer.ip(), session, gateway, tls, timeouts, stopped)
                        .await
                {
                    tracing::debug!(%peer, error = %e, "SMTP connection ended with an error");
                }
                drop(this_client);
                drop(permit);
            });
        }
        // Stopped: sessions say 421 at their next read, and those committing a message
        // finish first. The caller bounds the wait.
        while tasks.join_next().await.is_some() {}
    }
}

async fn turn_away(mut sock: TcpStream, reply: &'static [u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), sock.write_all(reply)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sock.shutdown()).await;
}

/// The reply to a client that has `max_connections_per_client` open already.
const CLIENT_BUSY_REPLY: &[u8] =
    b"421 4.7.0 Too many connections from your address; try again later\r\n";

/// Connections open per client address.
struct Clients {
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
}

/// One open connection of a client, counted until dropped.
struct ClientSlot(Arc<Clients>, IpAddr);

impl Clients {
    fn new(max: usize) -> Clients {
        Clients {
            max: max.max(1),
            open: Default::default(),
        }
    }

    fn enter(self: Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let ip = ip.to_canonical();
        {
            let mut m = self.open.lock().ok()?;
            let n = m.entry(ip).or_default();
            if *n >= self.max {
                return None;
            }
            *n += 1;
        }
        Some(ClientSlot(self, ip))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0.open.lock() {
            if let Some(n) = m.get_mut(&self.1) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.1);
                }
            }
        }
    }
}

/// A running listener.
pub struct Running {
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Once its stop token is cancelled (every session is told `421` at its next read, and
    /// messages being committed finish): returns when all connections are closed, or at
    /// `deadline`.
    pub async fn finish(self, deadline: tokio::time::Instant) {
        let mut task = self.task;
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
}
