//! One SMPP session (SMPP 3.4 §2.2–2.4): a task that owns the socket, binds, keeps a bounded
//! window of submit_sm matched to their responses by sequence number, answers the SMSC's
//! requests, keeps the link alive with enquire_link, and reconnects with backoff and jitter.
//! When the connection drops, every submit still waiting for its response is failed as
//! transient, so the dispatcher sends again only what the SMSC never acknowledged.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use textgate_core::clock::now_ms;
use textgate_core::config::BindMode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;

use super::codec::{self, Frame, DEFAULT_MAX_LEN};
use super::pdu;
use super::reassembly::{Fragment, PartKey, Pushed, Reassembler};
use super::receipt;
use super::text::{self, Decoded};
use super::Shared;
use crate::{Ack, DeviceEvent, DeviceState, SendError};

/// The connection: plain TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A TLS client configuration: the public roots (webpki-roots) plus `ca_file`, if given.
pub fn tls_config(
    ca_file: Option<&str>,
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read tls_ca_file {path}: {e}"))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("tls_ca_file {path}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("tls_ca_file {path}: {e}"))?;
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A submit_sm waiting for a session, and where its message id goes.
pub struct SubmitReq {
    /// The PDU.
    pub pdu: SubmitSm,
    /// The SMSC's message id (normalised), or why not.
    pub reply: oneshot::Sender<Result<String, SendError>>,
}

/// What a session needs from its device.
pub struct SessionCtx {
    /// The device's shared state.
    pub shared: Arc<Shared>,
    /// Submits to send, shared by the device's sessions.
    pub submits: Arc<Mutex<mpsc::Receiver<SubmitReq>>>,
    /// Receipts and inbound texts.
    pub events: mpsc::Sender<DeviceEvent>,
}

/// Whether an error status is worth retrying (§5.1.3): throttling, a full queue, system
/// errors, temporary application errors and "not bound" are; address and content errors
/// are not.
pub fn is_transient(status: u32) -> bool {
    matches!(status, 0x04 | 0x08 | 0x14 | 0x45 | 0x58 | 0x64 | 0xFF)
}

fn status_error(status: CommandStatus) -> SendError {
    let code = u32::from(status);
    let reason = format!("the SMSC refused the submit: {status:?} (0x{code:08X})");
    if code == 0x58 || code == 0x14 {
        SendError::Throttled {
            code: Some(format!("0x{code:08X}")),
            reason,
        }
    } else if is_transient(code) {
        SendError::Transient {
            code: Some(format!("0x{code:08X}")),
            reason,
        }
    } else {
        SendError::Permanent {
            code: Some(format!("0x{code:08X}")),
            reason,
        }
    }
}

/// Runs one session for as long as the device lives, reconnecting after every failure.
pub async fn run(ctx: SessionCtx, index: usize) {
    let cfg = ctx.shared.cfg.clone();
    let mut backoff = cfg.reconnect_min.0;
    loop {
        ctx.shared.set_state(index, DeviceState::Connecting);
        // Shared with other nodes: bind only on a slot this node holds, and unbind as soon
        // as it may no longer hold it.
        let renewing = match ctx.shared.slots.get() {
            None => None,
            Some(slots) => {
                let of = ctx.shared.leaving.len();
                while !slots.hold(&ctx.shared.name, index, of).await {
                    if ctx.shared.closing.load(Ordering::Relaxed) {
                        ctx.shared.session_closed();
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(slots.every().mul_f64(0.75 + fastrand::f64() / 2.0)) => {}
                        _ = ctx.shared.close.notified() => {}
                    }
                }
                if let Some(l) = ctx.shared.leaving.get(index) {
                    l.store(false, Ordering::Relaxed);
                }
                let (slots, shared) = (slots.clone(), ctx.shared.clone());
                Some(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(slots.every()).await;
                        if !slots.hold(&shared.name, index, of).await {
                            if let Some(l) = shared.leaving.get(index) {
                                l.store(true, Ordering::Relaxed);
                            }
                            shared.close.notify_waiters();
                            return;
                        }
                    }
                }))
            }
        };
        let reason = match connect_and_bind(&ctx).await {
            Ok((stream, seq, early)) => {
                backoff = cfg.reconnect_min.0;
                ctx.shared.set_state(index, DeviceState::Up);
                ctx.shared.binds.fetch_add(1, Ordering::Relaxed);
                tracing::info!(device = %ctx.shared.name, session = index, "bound to the SMSC");
                let reason = Session::new(&ctx, stream, seq, index).serve(early).await;
                ctx.shared.set_state(index, DeviceState::Down);
                if let Some(r) = renewing {
                    r.abort();
                }
                if let Some(slots) = ctx.shared.slots.get() {
                    slots.release(&ctx.shared.name, index).await;
                }
                if ctx.shared.leaving(index) && !ctx.shared.closing.load(Ordering::Relaxed) {
                    tracing::info!(device = %ctx.shared.name, session = index, "SMPP session unbound: its bind slot went to another node");
                    continue;
                }
                if ctx.shared.closing.load(Ordering::Relaxed) {
                    tracing::info!(device = %ctx.shared.name, session = index, "SMPP session closed: {reason}");
                    ctx.shared.session_closed();
                    return;
                }
                reason
            }
            Err(e) => {
                if let Some(r) = renewing {
                    r.abort();
                }
                if let Some(slots) = ctx.shared.slots.get() {
                    slots.release(&ctx.shared.name, index).await;
                }
                e
            }
        };
        if ctx.shared.closing.load(Ordering::Relaxed) {
            ctx.shared.session_closed();
            return;
        }
        tracing::warn!(device = %ctx.shared.name, session = index, reason = %reason, "SMPP session down; reconnecting");
        ctx.shared.note_error(&reason);
        ctx.shared.set_state(index, DeviceState::Down);
        // Jitter: sessions of many devices that dropped together do not come back together.
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64())).await;
        backoff = (backoff * 2).min(cfg.reconnect_max.0);
    }
}

/// Connects and binds: the stream, the next sequence number, and whatever the SMSC sent
/// right behind its bind_resp (an SMSC with texts queued sends them at once, often in the
/// same segment), which the session must read first.
async fn connect_and_bind(ctx: &SessionCtx) -> Result<(Box<dyn Io>, u32, BytesMut), String> {
    let cfg = &ctx.shared.cfg;
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let timeout = cfg.response_timeout.0;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Io> = if cfg.tls {
        let name = cfg
            .tls_server_name
            .clone()
            .unwrap_or_else(|| cfg.host.clone());
        let server_name = tokio_rustls::rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| format!("\"{name}\" cannot be checked against a certificate: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(tls_config(cfg.tls_ca_file.as_deref())?);
        let tls = tokio::time::timeout(timeout, connector.connect(server_name, tcp))
            .await
            .map_err(|_| format!("the TLS handshake with {addr} timed out"))?
            .map_err(|e| format!("the TLS handshake with {addr} failed: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let system_id = pdu::c_octet_str(&cfg.system_id)?;
    let password = pdu::c_octet_str(&cfg.password)?;
    let system_type = pdu::c_octet_str(&cfg.system_type)?;
    macro_rules! bind {
        ($t:ident) => {
            Pdu::from(
                $t::builder()
                    .system_id(system_id)
                    .password(password)
                    .system_type(system_type)
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .address_range(COctetString::empty())
                    .build(),
            )
        };
    }
    let pdu = match cfg.bind {
        BindMode::Transmitter => bind!(BindTransmitter),
        BindMode::Receiver => bind!(BindReceiver),
        BindMode::Transceiver => bind!(BindTransceiver),
    };
    let bytes = codec::encode(&Command::new(CommandStatus::EsmeRok, 1, pdu));
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| format!("writing the bind failed: {e}"))?;
    let mut buf = BytesMut::with_capacity(4096);
    let deadline = Instant::now() + timeout;
    loop {
        match codec::next_frame(&mut buf, DEFAULT_MAX_LEN).map_err(|e| e.to_string())? {
            Some(Frame::Command(c)) if c.sequence_number == 1 => {
                if c.status != CommandStatus::EsmeRok {
                    return Err(format!(
                        "the SMSC refused the bind as \"{}\": {:?}",
                        cfg.system_id, c.status
                    ));
                }
                return Ok((stream, 2, buf));
            }
            Some(_) => continue,
            None => {}
        }
        let n = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf))
            .await
            .map_err(|_| "no answer to the bind".to_string())?
            .map_err(|e| format!("reading the bind answer failed: {e}"))?;
        if n == 0 {
            return Err("the SMSC closed the connection during the bind".into());
        }
    }
}

struct Pending {
    deadline: Instant,
    reply: oneshot::Sender<Result<String, SendError>>,
}

/// What a deliver_sm's optional parameters say (SMPP 3.4 §5.3.2).
#[derive(Default)]
struct DeliverTlvs {
    /// receipted_message_id: the SMSC's id of the message a receipt is for.
    receipted: Option<String>,
    /// message_state of a receipt.
    state: Option<u8>,
    /// network_error_code: type and code, three octets.
    network_error: Option<Vec<u8>>,
    /// message_payload, in place of short_message.
    payload: Option<Vec<u8>>,
    /// sar_msg_ref_num, sar_total_segments, sar_segment_seqnum: a long text's part.
    sar: (Option<u16>, Option<u8>, Option<u8>),
}

impl DeliverTlvs {
    fn of(d: &rusmpp::pdus::DeliverSm) -> DeliverTlvs {
        let mut t = DeliverTlvs::default();
        for tlv in d.tlvs() {
            match tlv.value() {
                Some(TlvValue::ReceiptedMessageId(id)) => {
                    t.receipted = Some(
                        String::from_utf8_lossy(id.as_ref())
                            .trim_end_matches('\0')
                            .to_string(),
                    )
                }
                Some(TlvValue::MessageState(s)) => t.state = Some(u8::from(*s)),
                Some(TlvValue::NetworkErrorCode(n)) => {
                    let code = n.error_code.to_be_bytes();
                    t.network_error = Some(vec![u8::from(n.network_type), code[0], code[1]]);
                }
                Some(TlvValue::MessagePayload(p)) => t.payload = Some(p.value.as_ref().to_vec()),
                Some(TlvValue::SarMsgRefNum(r)) => t.sar.0 = Some(*r),
                Some(TlvValue::SarTotalSegments(n)) => t.sar.1 = Some(*n),
                Some(TlvValue::SarSegmentSeqnum(n)) => t.sar.2 = Some(*n),
                _ => {}
            }
        }
        t
    }
}

struct Session<'a> {
    /// Which of the device's sessions.
    index: usize,
    ctx: &'a SessionCtx,
    stream: Box<dyn Io>,
    next_seq: u32,
    pending: HashMap<u32, Pending>,
    out: Vec<u8>,
    acks_tx: mpsc::UnboundedSender<(u32, CommandStatus)>,
    acks_rx: mpsc::UnboundedReceiver<(u32, CommandStatus)>,
    reassembler: Reassembler,
    /// What the reassembler held when the gauge was last updated.
    reassembly_bytes: usize,
    /// Events read but not yet taken by the dispatcher. While any wait, nothing more is read
    /// from the SMSC: unanswered deliver_sm fill its window, and it stops sending.
    backlog: std::collections::VecDeque<DeviceEvent>,
    enquire_sent: Option<Instant>,
}

impl<'a> Session<'a> {
    fn new(ctx: &'a SessionCtx, stream: Box<dyn Io>, next_seq: u32, index: usize) -> Session<'a> {
        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        Session {
            index,
            ctx,
            stream,
            next_seq,
            pending: HashMap::new(),
            out: Vec::with_capacity(8192),
            acks_tx,
            acks_rx,
            reassembler: Reassembler::new(ctx.shared.cfg.reassembly_timeout.0, 10_000)
                .with_byte_budget(
                    usize::try_from(ctx.shared.cfg.reassembly_budget.0).unwrap_or(usize::MAX),
                ),
            reassembly_bytes: 0,
            backlog: std::collections::VecDeque::new(),
            enquire_sent: None,
        }
    }

    fn submit(&mut self, req: SubmitReq, timeout: Duration) {
        if req.reply.is_closed() {
            // Its sender gave up waiting (and the dispatcher will try again): sending it now
            // would send it twice.
            return;
        }
        let seq = self.seq();
        self.queue(&Command::new(
            CommandStatus::EsmeRok,
            seq,
            Pdu::from(req.pdu),
        ));
        self.pending.insert(
            seq,
            Pending {
                deadline: Instant::now() + timeout,
                reply: req.reply,
            },
        );
        self.ctx.shared.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes a pending submit, keeping the window gauge right.
    fn take(&mut self, seq: u32) -> Option<Pending> {
        let p = self.pending.remove(&seq)?;
        self.ctx.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        Some(p)
    }

    fn seq(&mut self) -> u32 {
        let s = self.next_seq;
        // §5.1.4: 0x00000001 to 0x7FFFFFFF.
        self.next_seq = if s >= 0x7FFF_FFFF { 1 } else { s + 1 };
        s
    }

    fn queue(&mut self, command: &Command) {
        self.out.extend_from_slice(&codec::encode(command));
    }

    /// Hands an event to the dispatcher, or keeps it (and stops reading) while the
    /// dispatcher's queue is full.
    fn emit(&mut self, ev: DeviceEvent) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(ev);
            return;
        }
        match self.ctx.events.try_send(ev) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => self.backlog.push_back(ev),
        }
    }

    /// Keeps the reassembly gauge up to date.
    fn note_reassembly(&mut self, evicted: usize) {
        if evicted > 0 {
            self.ctx
                .shared
                .reassembly_evicted
                .fetch_add(evicted as u64, Ordering::Relaxed);
        }
        let now = self.reassembler.pending_bytes();
        let delta = now as i64 - self.reassembly_bytes as i64;
        if delta != 0 {
            self.ctx
                .shared
                .reassembly_bytes
                .fetch_add(delta, Ordering::Relaxed);
            self.reassembly_bytes = now;
        }
    }

    /// Serves the bound session until it ends, starting with `early` (what came behind the
    /// bind_resp); returns why.
    async fn serve(mut self, early: BytesMut) -> String {
        let reason = self.serve_inner(early).await;
        // What was held for this bind is no longer held; the parts of incomplete texts are
        // sent again by the SMSC (it had them acknowledged, but never saw a whole text
        // answered) or are lost with the connection, as with any SMSC.
        self.ctx
            .shared
            .reassembly_bytes
            .fetch_sub(self.reassembly_bytes as i64, Ordering::Relaxed);
        self.ctx
            .shared
            .in_flight
            .fetch_sub(self.pending.len() as i64, Ordering::Relaxed);
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(SendError::Transient {
                code: None,
                reason: format!("the SMPP connection was lost before the SMSC answered ({reason})"),
            }));
        }
        reason
    }

    async fn serve_inner(&mut self, early: BytesMut) -> String {
        let cfg = self.ctx.shared.cfg.clone();
        let can_send = cfg.bind != BindMode::Receiver;
        let window = cfg.window as usize;
        let mut buf = early;
        buf.reserve(16 * 1024);
        // Frames that came with the bind_resp are handled before anything is read.
        if let Some(end) = self.handle_buffered(&mut buf) {
            return end;
        }
        let mut enquire = tokio::time::interval(cfg.enquire_link.0);
        enquire.tick().await;
        let mut sweep = tokio::time::interval(Duration::from_millis(250));
        let submits = self.ctx.submits.clone();
        let mut unbinding = false;
        loop {
            // Shutdown (§4.2): take no more submits, let the window drain, then unbind.
            if !unbinding && self.ctx.shared.leaving(self.index) && self.pending.is_empty() {
                let seq = self.seq();
                self.queue(&Command::new(CommandStatus::EsmeRok, seq, Pdu::Unbind));
                unbinding = true;
            }
            if !self.out.is_empty() {
                if let Err(e) = self.stream.write_all(&self.out).await {
                    return format!("writing to the SMSC failed: {e}");
                }
                self.out.clear();
            }
            let room = can_send
                && self.pending.len() < window
                && !self.ctx.shared.throttled()
                && !self.ctx.shared.leaving(self.index);
            let reading = self.backlog.is_empty();
            let ctx = self.ctx;
            tokio::select! {
                permit = ctx.events.reserve(), if !reading => match permit {
                    Ok(permit) => {
                        if let Some(ev) = self.backlog.pop_front() {
                            permit.send(ev);
                        }
                        // Room at last: go on with the frames already read.
                        if let Some(end) = self.handle_buffered(&mut buf) {
                            return end;
                        }
                    }
                    Err(_) => return "the dispatcher is gone".into(),
                },
                read = self.stream.read_buf(&mut buf), if reading => match read {
                    Ok(0) => return "the SMSC closed the connection".into(),
                    Ok(_) => if let Some(end) = self.handle_buffered(&mut buf) { return end },
                    Err(e) => return format!("reading from the SMSC failed: {e}"),
                },
                req = async { submits.lock().await.recv().await }, if room => match req {
                    Some(req) => {
                        self.submit(req, cfg.response_timeout.0);
                        // Take whatever else is waiting, up to the window, so that one write
                        // carries many submits.
                        if let Ok(mut q) = submits.try_lock() {
                            while self.pending.len() < window {
                                match q.try_recv() {
                                    Ok(more) => self.submit(more, cfg.response_timeout.0),
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                    None => return "the device was shut down".into(),
                },
                Some(first) = self.acks_rx.recv() => {
                    // One commit answers many: one write carries all of their responses.
                    let mut next = Some(first);
                    while let Some((seq, status)) = next {
                        self.answer_deliver(seq, status);
                        next = self.acks_rx.try_recv().ok();
                    }
                }
                _ = enquire.tick() => {
                    // One enquire_link at a time: while one is unanswered, only check its age.
                    match self.enquire_sent {
                        Some(sent) if sent.elapsed() > cfg.response_timeout.0 => {
                            return "the SMSC did not answer enquire_link".into();
                        }
                        Some(_) => {}
                        None => {
                            let seq = self.seq();
                            self.queue(&Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLink));
                            self.enquire_sent = Some(Instant::now());
                        }
                    }
                }
                _ = sweep.tick() => self.sweep(),
                _ = self.ctx.shared.close.notified(), if !unbinding => {}
            }
        }
    }

    /// Handles the whole frames in `buf` for as long as the dispatcher takes events; the
    /// rest wait in `buf` (and nothing more is read) until it has room; `Some(reason)` ends
    /// the session.
    fn handle_buffered(&mut self, buf: &mut BytesMut) -> Option<String> {
        while self.backlog.is_empty() {
            match codec::next_frame(buf, DEFAULT_MAX_LEN) {
                Ok(Some(frame)) => {
                    if let Some(end) = self.handle(frame) {
                        return Some(end);
                    }
                }
                Ok(None) => break,
                Err(e) => return Some(format!("unreadable data from the SMSC: {e}")),
            }
        }
        None
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let late: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for seq in late {
            if let Some(p) = self.take(seq) {
                let _ = p.reply.send(Err(SendError::Transient {
                    code: None,
                    reason: "the SMSC did not answer the submit in time".into(),
                }));
            }
        }
        let expired = self.reassembler.expire(std::time::Instant::now());
        self.note_reassembly(0);
        for done in expired {
            tracing::warn!(device = %self.ctx.shared.name, missing = ?done.missing, "an inbound long text is incomplete after the reassembly timeout; stored as partial");
            self.inbound(
                done.key.from,
                done.key.to,
                done.data_coding,
                done.payload,
                u32::from(done.parts),
                true,
                None,
            );
        }
    }

    /// Handles one frame; `Some(reason)` ends the session.
    fn handle(&mut self, frame: Frame) -> Option<String> {
        let command = match frame {
            Frame::Command(c) => c,
            Frame::Malformed {
                sequence_number,
                status,
                reason,
                ..
            } => {
                tracing::warn!(device = %self.ctx.shared.name, %reason, "malformed PDU from the SMSC; answered with generic_nack");
                self.queue(&codec::generic_nack(sequence_number, status));
                return None;
            }
        };
        let seq = command.sequence_number;
        let status = command.status;
        match command.id() {
            CommandId::SubmitSmResp => {
                // A response to nothing we sent (or already timed out) is ignored.
                let p = self.take(seq)?;
                let result = if status == CommandStatus::EsmeRok {
                    let id = match command.pdu() {
                        Some(Pdu::SubmitSmResp(r)) => {
                            String::from_utf8_lossy(r.message_id().as_ref())
                                .trim_end_matches('\0')
                                .to_string()
                        }
                        _ => String::new(),
                    };
                    Ok(receipt::normalize_id(&id, self.ctx.shared.resp_ids))
                } else {
                    let code = u32::from(status);
                    if code == 0x58 || code == 0x14 {
                        self.ctx.shared.throttle();
                        self.ctx.shared.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status_error(status))
                };
                let _ = p.reply.send(result);
            }
            CommandId::GenericNack => {
                if matches!(u32::from(status), 0x58 | 0x14) {
                    self.ctx.shared.throttle();
                    self.ctx.shared.throttled.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(p) = self.take(seq) {
                    let _ = p.reply.send(Err(status_error(status)));
                }
            }
            CommandId::EnquireLinkResp => self.enquire_sent = None,
            CommandId::UnbindResp => return Some("unbound".into()),
            CommandId::EnquireLink => self.queue(&Command::new(
                CommandStatus::EsmeRok,
                seq,
                Pdu::EnquireLinkResp,
            )),
            CommandId::Unbind => {
                self.queue(&Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp));
                return Some("the SMSC unbound".into());
            }
            CommandId::DeliverSm => match command.pdu() {
                Some(Pdu::DeliverSm(d)) => self.deliver(seq, d),
                // A deliver_sm without its body is not one we can take.
                _ => self.queue(&codec::generic_nack(seq, CommandStatus::EsmeRinvcmdlen)),
            },
            other if u32::from(other) & 0x8000_0000 == 0 => {
                // A request we do not serve (§4.3: answer with generic_nack).
                self.queue(&codec::generic_nack(seq, CommandStatus::EsmeRinvcmdid));
            }
            _ => {}
        }
        None
    }

    fn ack(&mut self, seq: u32) {
        self.answer_deliver(seq, CommandStatus::EsmeRok);
    }

    /// Queues the deliver_sm_resp to `seq`.
    fn answer_deliver(&mut self, seq: u32, status: CommandStatus) {
        self.queue(&Command::new(
            status,
            seq,
            Pdu::from(DeliverSmResp::default()),
        ));
    }

    fn deliver(&mut self, seq: u32, d: &rusmpp::pdus::DeliverSm) {
        let tlvs = DeliverTlvs::of(d);
        let esm = u8::from(d.esm_class);
        let short: Vec<u8> = tlvs
            .payload
            .clone()
            .unwrap_or_else(|| d.short_message().as_ref().to_vec());
        // §5.2.12: esm_class bits 2–5 = 0001 is an SMSC delivery receipt.
        if esm & 0x3C == 0x04 || tlvs.receipted.is_some() {
            self.receipt(seq, &short, &tlvs);
            return;
        }
        // An inbound text, possibly one part of a long one.
        let from = addr(d.source_addr.as_ref(), u8::from(d.source_addr_ton));
        let to = addr(d.destination_addr.as_ref(), u8::from(d.dest_addr_ton));
        let dc = u8::from(d.data_coding);
        let (concat, data) = if esm & 0x40 != 0 {
            match super::reassembly::split_udh(&short) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(device = %self.ctx.shared.name, error = %e, "inbound text with a broken UDH; stored as received");
                    (None, short)
                }
            }
        } else if let (Some(r), Some(t), Some(s)) = tlvs.sar {
            (Some((r, t, s)), short)
        } else {
            (None, short)
        };
        match concat {
            Some((reference, total, part)) if total > 1 => {
                let key = PartKey {
                    from,
                    to,
                    reference,
                    total,
                };
                self.long_text_part(seq, key, part, dc, data);
            }
            _ => self.inbound(from, to, dc, data, 1, false, Some(seq)),
        }
    }

    /// A delivery receipt: a final one is handed on (and acknowledged once recorded, if so
    /// configured); anything else is acknowledged now.
    fn receipt(&mut self, seq: u32, short: &[u8], tlvs: &DeliverTlvs) {
        let text = String::from_utf8_lossy(short).to_string();
        let parsed = receipt::parse(
            &text,
            tlvs.receipted.as_deref(),
            tlvs.state,
            tlvs.network_error.as_deref(),
        );
        let Some(r) = parsed else {
            tracing::warn!(device = %self.ctx.shared.name, "a delivery receipt could not be read: {text:?}");
            self.ack(seq);
            return;
        };
        self.ctx.shared.receipts.fetch_add(1, Ordering::Relaxed);
        if !r.state.is_final() {
            // Nothing to record: acknowledged now.
            self.ack(seq);
            return;
        }
        let id = receipt::receipt_id_to_resp(
            &r.id,
            self.ctx.shared.receipt_ids,
            self.ctx.shared.resp_ids,
        );
        let after_commit = self.ctx.shared.cfg.ack_receipts_after_commit;
        let ack = after_commit.then(|| self.ack_when_recorded(seq));
        self.emit(DeviceEvent::Receipt {
            device: self.ctx.shared.name.clone(),
            device_msg_id: id,
            delivered: r.state.delivered(),
            code: r.error.clone(),
            at: now_ms(),
            ack,
        });
        if !after_commit {
            self.ack(seq);
        }
    }

    /// One part of a long text: held until the text is whole (or handed on partial when
    /// the reassembly budget is full).
    fn long_text_part(&mut self, seq: u32, key: PartKey, part: u8, dc: u8, data: Vec<u8>) {
        let frag = Fragment {
            key,
            seq: part,
            data_coding: dc,
            payload: data,
        };
        let out = self.reassembler.push(frag, std::time::Instant::now());
        self.note_reassembly(out.evicted.len());
        if !out.evicted.is_empty() {
            tracing::warn!(device = %self.ctx.shared.name, texts = out.evicted.len(), "incomplete inbound long texts handed on early, partial, to keep within the reassembly budget");
        }
        for ev in out.evicted {
            let parts = u32::from(ev.parts);
            self.inbound(
                ev.key.from,
                ev.key.to,
                ev.data_coding,
                ev.payload,
                parts,
                true,
                None,
            );
        }
        match out.pushed {
            // The last part is acknowledged once the whole text is stored; the others as
            // they arrive (they are only held in memory until then).
            Pushed::Complete(a) => {
                let parts = u32::from(a.parts);
                self.inbound(
                    a.key.from,
                    a.key.to,
                    a.data_coding,
                    a.payload,
                    parts,
                    false,
                    Some(seq),
                )
            }
            Pushed::Incomplete | Pushed::Duplicate => self.ack(seq),
        }
    }

    /// An [`Ack`] that answers deliver_sm `seq` when the store has recorded what it
    /// carried: ESME_ROK, or ESME_RX_T_APPN (§4.6.2), which asks the SMSC to deliver it
    /// again later.
    fn ack_when_recorded(&self, seq: u32) -> Ack {
        let acks = self.acks_tx.clone();
        Ack::new(move |recorded| {
            let status = if recorded {
                CommandStatus::EsmeRok
            } else {
                CommandStatus::EsmeRxTAppn
            };
            let _ = acks.send((seq, status));
        })
    }

    /// Hands an inbound text to the store; `ack_seq` is answered after it is committed.
    #[allow(clippy::too_many_arguments)]
    fn inbound(
        &mut self,
        from: String,
        to: String,
        dc: u8,
        payload: Vec<u8>,
        parts: u32,
        partial: bool,
        ack_seq: Option<u32>,
    ) {
        let (body, encoding) = match text::decode(dc, &payload, self.ctx.shared.alphabet) {
            Decoded::Text { text, encoding } => (text, encoding.to_string()),
            Decoded::Binary { bytes } => (textgate_core::auth::hex(&bytes), "binary".to_string()),
        };
        let window = self.ctx.shared.cfg.inbound_dedup_window.0;
        let same_within = (!window.is_zero()).then(|| {
            let content = format!("{from}\u{0}{to}\u{0}{encoding}\u{0}{body}");
            (
                format!(
                    "{}:{}",
                    self.ctx.shared.name,
                    textgate_core::auth::hash_api_key(&content)
                ),
                i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            )
        });
        let text = crate::InboundText {
            device: self.ctx.shared.name.clone(),
            dedup_key: None,
            same_within,
            from,
            to,
            body,
            encoding,
            parts: i64::from(parts),
            partial,
            received_at: now_ms(),
        };
        self.ctx.shared.received.fetch_add(1, Ordering::Relaxed);
        let ack = ack_seq.map(|seq| self.ack_when_recorded(seq));
        self.emit(DeviceEvent::Inbound { text, ack });
    }
}

/// An address as the API shows it: international numbers with '+'.
fn addr(raw: &[u8], ton: u8) -> String {
    let s = String::from_utf8_lossy(raw)
        .trim_end_matches('\0')
        .to_string();
    if ton == 1 && !s.starts_with('+') && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{s}")
    } else {
        s
    }
}
