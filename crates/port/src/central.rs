//! The central server's side of port servers: who may join ([`PortServers`]), each one's
//! link ([`serve_link`]), and its devices as the dispatcher sees them ([`RemoteDevice`]).
//!
//! A message for a remote device is sent as a [`Frame::Submit`] and its device's `send`
//! waits for the port server's outcome, so the dispatcher records it, retries it or fails
//! it over exactly as for a local device. The port server's report of that outcome is
//! acknowledged only once the dispatcher has committed it ([`Device::outcome_recorded`]);
//! receipts and inbound texts go through the dispatcher's events with an [`Ack`] that
//! acknowledges them once stored. A link that breaks loses nothing: submits not yet
//! answered are handed over again on the next link (the port server recognises them by
//! message id), and the port server sends again every report not yet acknowledged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use textgate_core::clock::now_ms;
use textgate_core::config::{Config, DeviceSettings};
use textgate_drivers::{
    Ack, BoxFuture, Device, DeviceEvent, DeviceState, InboundText, OutboundSms, SendError,
    Submitted,
};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use crate::link::{self, DeviceInfo, Frame, Report};

/// How long a new link may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a message whose report was not recorded still goes back to the port server
/// that sent it, at least.
pub const STICKY_AFTER_REPORT: Duration = Duration::from_secs(60);
/// How often acknowledgements are gathered into one frame, at most.
const ACK_EVERY: Duration = Duration::from_millis(5);

/// The port servers a central server lets in, by name.
pub struct PortServers {
    node: String,
    entries: Vec<Arc<PortEntry>>,
}

/// One port server as the central server knows it.
pub struct PortEntry {
    /// Its name.
    pub name: String,
    token_hash: String,
    state: Mutex<LinkState>,
    last_seen: AtomicI64,
    /// What it holds at most (its window); permits are taken per submit until its outcome.
    window: Arc<Semaphore>,
    window_total: Mutex<u32>,
    pending: Mutex<HashMap<i64, Pending>>,
    /// Messages it took, with the central device that handed each over (`None`: known from
    /// its hello, any of its devices): later attempts go back to it. Kept until its outcome
    /// is recorded for the message; an outcome that came while the message was waiting
    /// for another attempt (and so was not recorded) keeps it, marked with when, for a while
    /// (twice the lease, at least [`STICKY_AFTER_REPORT`]), so that the next attempt comes
    /// back here and is answered from the port server's record.
    taken: Mutex<HashMap<i64, Taken>>,
    /// How long a reported message still sticks to this port server.
    sticky_for: Duration,
    /// Outcomes handed to the dispatcher, by message id: the item to acknowledge once the
    /// dispatcher has recorded it.
    to_ack: Mutex<HashMap<i64, u64>>,
    acks: Arc<Mutex<Vec<u64>>>,
    ack_ready: Arc<Notify>,
    events: OnceLock<mpsc::Sender<DeviceEvent>>,
    session: Mutex<Option<Session>>,
    sessions: AtomicU64,
    /// Its devices by their name there → the central device name.
    exact: HashMap<String, String>,
    /// The central device that takes any of its devices (`remote_device` left out).
    any: Option<String>,
    /// Wakes whoever waits for it to come back (the dispatcher looks again).
    pub changed: Notify,
    /// Counters.
    pub counters: PortCounters,
}

/// Counters of a port server's link.
#[derive(Default, Debug)]
pub struct PortCounters {
    /// Submits handed over (resends included).
    pub submits: AtomicU64,
    /// Reports received (outcomes, receipts, inbound texts; resends included).
    pub items: AtomicU64,
    /// Links opened.
    pub links: AtomicU64,
    /// Links refused (wrong name, no common version, broken frames).
    pub refused: AtomicU64,
}

#[derive(Clone)]
struct Session {
    id: u64,
    out: mpsc::UnboundedSender<String>,
}

struct Taken {
    device: Option<String>,
    reported: Option<tokio::time::Instant>,
}

struct Pending {
    attempt: i64,
    device: String,
    frame: String,
    tx: oneshot::Sender<Result<Submitted, SendError>>,
    _permit: OwnedSemaphorePermit,
}

#[derive(Default, Clone)]
struct LinkState {
    connected: bool,
    connected_since: Option<i64>,
    address: Option<String>,
    build: Option<String>,
    version: Option<u32>,
    devices: Vec<DeviceInfo>,
    held: u64,
    unacked: u64,
    draining: bool,
    /// The port server said it is stopping.
    stopping: bool,
    window: u32,
    last_error: Option<String>,
}

/// A port server as `GET /api/v1/port-servers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PortServerView {
    /// Its name.
    pub name: String,
    /// Whether its link is up.
    pub connected: bool,
    /// When a frame last came from it (RFC 3339), `null` if never.
    pub last_seen: Option<String>,
    /// Since when the current link is up.
    pub connected_since: Option<String>,
    /// Where it connected from.
    pub address: Option<String>,
    /// Its build.
    pub build: Option<String>,
    /// The link protocol version in use.
    pub protocol: Option<u32>,
    /// Its devices as it last reported them.
    pub devices: Vec<DeviceInfo>,
    /// Messages it holds (taken, not finished), as it last reported.
    pub held: u64,
    /// Its reports not yet acknowledged, as it last reported.
    pub unacked: u64,
    /// Messages handed over and not yet answered.
    pub in_flight: u64,
    /// The most it holds at once.
    pub window: u32,
    /// Whether it is draining (takes no new messages).
    pub draining: bool,
    /// Why its last link ended or was refused.
    pub last_error: Option<String>,
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn rfc3339(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

impl PortServers {
    /// From a checked configuration; `node` names this central server to port servers.
    pub fn new(cfg: &Config, node: &str) -> Arc<PortServers> {
        let sticky_for = (cfg.server.claim_lease.0 * 2).max(STICKY_AFTER_REPORT);
        let entries = cfg
            .port_servers
            .iter()
            .map(|p| {
                let mut exact = HashMap::new();
                let mut any = None;
                for d in &cfg.devices {
                    if let Ok(DeviceSettings::Remote(r)) = d.settings() {
                        if r.port_server == p.name {
                            match r.remote_device {
                                Some(x) => {
                                    exact.insert(x, d.name.clone());
                                }
                                None => any = Some(d.name.clone()),
                            }
                        }
                    }
                }
                Arc::new(PortEntry {
                    name: p.name.clone(),
                    token_hash: textgate_core::auth::hash_api_key(p.token.as_deref().unwrap_or("")),
                    state: Mutex::new(LinkState::default()),
                    last_seen: AtomicI64::new(0),
                    window: Arc::new(Semaphore::new(0)),
                    window_total: Mutex::new(0),
                    pending: Mutex::new(HashMap::new()),
                    taken: Mutex::new(HashMap::new()),
                    sticky_for,
                    to_ack: Mutex::new(HashMap::new()),
                    acks: Arc::new(Mutex::new(Vec::new())),
                    ack_ready: Arc::new(Notify::new()),
                    events: OnceLock::new(),
                    session: Mutex::new(None),
                    sessions: AtomicU64::new(0),
                    exact,
                    any,
                    changed: Notify::new(),
                    counters: PortCounters::default(),
                })
            })
            .collect();
        Arc::new(PortServers {
            node: node.to_string(),
            entries,
        })
    }

    /// The port server whose token this is; `None` for any other token. Every entry is
    /// compared, in constant time, whatever matches.
    pub fn authenticate(&self, token: &str) -> Option<Arc<PortEntry>> {
        let hash = textgate_core::auth::hash_api_key(token);
        let mut found = None;
        for e in &self.entries {
            if ct_eq(&hash, &e.token_hash) {
                found = Some(e.clone());
            }
        }
        found
    }

    /// A port server by name.
    pub fn get(&self, name: &str) -> Option<&Arc<PortEntry>> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Every port server, in config order.
    pub fn all(&self) -> &[Arc<PortEntry>] {
        &self.entries
    }

    /// The remote device a configured `kind = "remote"` device is.
    pub fn device(
        &self,
        name: &str,
        port_server: &str,
        remote_device: Option<String>,
        lease: Duration,
    ) -> Option<RemoteDevice> {
        Some(RemoteDevice {
            name: name.to_string(),
            port: self.get(port_server)?.clone(),
            remote_device,
            wait: lease.mul_f64(0.9).max(Duration::from_secs(1)),
        })
    }

    /// Every port server as the API shows it.
    pub fn views(&self) -> Vec<PortServerView> {
        self.entries.iter().map(|e| e.view()).collect()
    }
}

impl PortEntry {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether its link is up.
    pub fn connected(&self) -> bool {
        self.lock_state().connected
    }

    /// Whether it is draining.
    pub fn draining(&self) -> bool {
        self.lock_state().draining
    }

    /// How it looks in the API.
    pub fn view(&self) -> PortServerView {
        let s = self.lock_state().clone();
        let seen = self.last_seen.load(Ordering::Relaxed);
        PortServerView {
            name: self.name.clone(),
            connected: s.connected,
            last_seen: (seen > 0).then(|| rfc3339(seen)).flatten(),
            connected_since: s.connected_since.and_then(rfc3339),
            address: s.address,
            build: s.build,
            protocol: s.version,
            devices: s.devices,
            held: s.held,
            unacked: s.unacked,
            in_flight: self.pending.lock().map(|p| p.len() as u64).unwrap_or(0),
            window: s.window,
            draining: s.draining || s.stopping,
            last_error: s.last_error,
        }
    }

    /// When a frame last came from it (ms since the epoch, 0 = never).
    pub fn last_seen_ms(&self) -> i64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    /// Stops handing it messages and tells it to finish what it holds (`true`), or lets it
    /// take messages again (`false`). Messages routed to it wait, or fail over.
    pub fn set_draining(&self, on: bool) {
        self.lock_state().draining = on;
        self.send(if on { Frame::Drain } else { Frame::Resume }.encode());
        self.changed.notify_waiters();
    }

    /// Its outcome for a message came: one that failed for now frees the message for any
    /// device; a sent or refused one keeps it here until recorded.
    fn reported(&self, message_id: i64, for_now: bool) {
        if let Ok(mut t) = self.taken.lock() {
            if for_now {
                t.remove(&message_id);
            } else if let Some(e) = t.get_mut(&message_id) {
                e.reported = Some(tokio::time::Instant::now());
            }
        }
    }

    /// Forgets messages reported long enough ago.
    fn prune_taken(&self) {
        let keep = self.sticky_for;
        if let Ok(mut t) = self.taken.lock() {
            t.retain(|_, e| e.reported.is_none_or(|at| at.elapsed() < keep));
        }
    }

    fn send(&self, text: String) -> bool {
        let s = self.session.lock().ok().and_then(|s| s.clone());
        match s {
            Some(s) => s.out.send(text).is_ok(),
            None => false,
        }
    }

    /// Sets the window to what the port server asked for, keeping permits already taken.
    fn set_window(&self, size: u32) {
        let mut total = self.window_total.lock().unwrap_or_else(|e| e.into_inner());
        if size > *total {
            self.window.add_permits((size - *total) as usize);
        } else if size < *total {
            // Permits held now come back and are then forgotten as they return: the window
            // shrinks as the port server answers.
            let want = (*total - size) as usize;
            let gone = self.window.forget_permits(want);
            if gone < want {
                let window = self.window.clone();
                let rest = (want - gone) as u32;
                tokio::spawn(async move {
                    if let Ok(p) = window.acquire_many(rest).await {
                        p.forget();
                    }
                });
            }
        }
        *total = size;
    }

    fn device_name(&self, theirs: &str) -> String {
        self.exact
            .get(theirs)
            .or(self.any.as_ref())
            .cloned()
            .unwrap_or_else(|| format!("{}/{}", self.name, theirs))
    }

    fn queue_ack(acks: &Mutex<Vec<u64>>, ready: &Notify, id: u64) {
        if let Ok(mut a) = acks.lock() {
            a.push(id);
        }
        ready.notify_one();
    }

    fn ack_closure(&self, id: u64) -> Ack {
        let acks = self.acks.clone();
        let ready = self.ack_ready.clone();
        Ack::new(move |ok| {
            if ok {
                PortEntry::queue_ack(&acks, &ready, id);
            }
        })
    }
}

/// The frames a link's socket carries: the text of each frame received (or why the socket
/// failed), and a channel for the text of each frame to send.
pub struct LinkIo {
    /// Frames received.
    pub incoming: mpsc::Receiver<Result<String, String>>,
    /// Frames to send; dropping it closes the socket.
    pub outgoing: mpsc::UnboundedSender<String>,
}

/// Runs one port server's link until it ends. `peer` is where it came from (for the logs
/// and the API).
pub async fn serve_link(
    servers: Arc<PortServers>,
    entry: Arc<PortEntry>,
    peer: String,
    mut io: LinkIo,
) {
    let refuse = |io: &LinkIo, reason: String| {
        entry.counters.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(port_server = %entry.name, %peer, %reason, "port server link refused");
        entry.lock_state().last_error = Some(reason.clone());
        let _ = io.outgoing.send(Frame::Refused { reason }.encode());
    };
    let text = match tokio::time::timeout(HELLO_TIMEOUT, io.incoming.recv()).await {
        Ok(Some(Ok(text))) => text,
        Ok(_) => return,
        Err(_) => {
            refuse(
                &io,
                format!("no hello within {} s", HELLO_TIMEOUT.as_secs()),
            );
            return;
        }
    };
    // The versions first, however the rest reads: a port server of another version is
    // told clearly which versions each side speaks.
    let (offered, hello) = link::decode_hello(&text);
    if !offered.is_empty() && link::agree(link::VERSIONS, &offered).is_none() {
        refuse(
            &io,
            format!(
                "no link protocol version in common: the port server speaks {offered:?}, the central server {:?}; upgrade the older of the two",
                link::VERSIONS
            ),
        );
        return;
    }
    let (versions, name, build, devices, window, heartbeat_ms, held) = match hello {
        Ok(Frame::Hello {
            versions,
            name,
            build,
            devices,
            window,
            heartbeat_ms,
            held,
        }) => (versions, name, build, devices, window, heartbeat_ms, held),
        Ok(other) => {
            refuse(
                &io,
                format!(
                    "the first frame must be a hello, not {}",
                    frame_kind(&other)
                ),
            );
            return;
        }
        Err(e) => {
            refuse(&io, format!("the hello could not be read: {e}"));
            return;
        }
    };
    if name != entry.name {
        refuse(
            &io,
            format!("this token belongs to port server \"{}\", not \"{name}\": give each port server its own name and token", entry.name),
        );
        return;
    }
    let Some(version) = link::agree(link::VERSIONS, &versions) else {
        refuse(
            &io,
            format!(
                "no link protocol version in common: the port server speaks {versions:?}, the central server {:?}; upgrade the older of the two",
                link::VERSIONS
            ),
        );
        return;
    };
    let _ = io.outgoing.send(
        Frame::Welcome {
            version,
            node: servers.node.clone(),
        }
        .encode(),
    );
    let id = entry.sessions.fetch_add(1, Ordering::Relaxed) + 1;
    let previous = entry.session.lock().ok().and_then(|mut s| {
        s.replace(Session {
            id,
            out: io.outgoing.clone(),
        })
    });
    drop(previous); // an older link of the same port server: its socket closes
    entry.counters.links.fetch_add(1, Ordering::Relaxed);
    entry.set_window(window);
    if let Ok(mut t) = entry.taken.lock() {
        for id in held {
            t.entry(id).or_insert(Taken {
                device: None,
                reported: None,
            });
        }
    }
    let now = now_ms();
    entry.last_seen.store(now, Ordering::Relaxed);
    let draining = {
        let mut s = entry.lock_state();
        s.connected = true;
        s.connected_since = Some(now);
        s.address = Some(peer.clone());
        s.build = Some(build.clone());
        s.version = Some(version);
        s.devices = devices;
        s.window = window;
        s.last_error = None;
        s.stopping = false;
        s.draining
    };
    tracing::info!(port_server = %entry.name, %peer, %build, version, window, "port server connected");
    if draining {
        let _ = io.outgoing.send(Frame::Drain.encode());
    }
    // Submits not yet answered go again: the port server takes each once.
    let resend: Vec<String> = entry
        .pending
        .lock()
        .map(|p| p.values().map(|p| p.frame.clone()).collect())
        .unwrap_or_default();
    for f in resend {
        entry.counters.submits.fetch_add(1, Ordering::Relaxed);
        let _ = io.outgoing.send(f);
    }
    entry.changed.notify_waiters();

    let silence = Duration::from_millis(heartbeat_ms.saturating_mul(3));
    let mut last_rx = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(heartbeat_ms.clamp(100, 5_000)));
    let mut ack_at: Option<tokio::time::Instant> = None;
    let ending: String = loop {
        let text = tokio::select! {
            m = io.incoming.recv() => match m {
                Some(Ok(t)) => t,
                Some(Err(e)) => break format!("the link broke: {e}"),
                None => break "the port server closed the link".into(),
            },
            // Acknowledgements wait a moment to share a frame.
            _ = entry.ack_ready.notified(), if ack_at.is_none() => {
                ack_at = Some(tokio::time::Instant::now() + ACK_EVERY);
                continue;
            }
            _ = tokio::time::sleep_until(ack_at.unwrap_or_else(tokio::time::Instant::now)), if ack_at.is_some() => {
                ack_at = None;
                let ids = entry.acks.lock().map(|mut a| std::mem::take(&mut *a)).unwrap_or_default();
                for chunk in ids.chunks(50_000) {
                    let _ = io.outgoing.send(Frame::Ack { ids: chunk.to_vec() }.encode());
                }
                continue;
            }
            _ = tick.tick() => {
                entry.prune_taken();
                if last_rx.elapsed() > silence {
                    break format!("nothing heard for {} s (three heartbeats)", silence.as_secs());
                }
                if entry.session.lock().map(|s| s.as_ref().map(|s| s.id) != Some(id)).unwrap_or(true) {
                    break "a newer link of the same port server replaced this one".into();
                }
                continue;
            }
        };
        last_rx = tokio::time::Instant::now();
        entry.last_seen.store(now_ms(), Ordering::Relaxed);
        let frame = match Frame::decode(&text) {
            Ok(f) => f,
            Err(e) => {
                let reason = format!("a broken frame: {e}");
                let _ = io.outgoing.send(
                    Frame::Refused {
                        reason: reason.clone(),
                    }
                    .encode(),
                );
                break reason;
            }
        };
        match frame {
            Frame::Taken { message_id, .. } => {
                let device = entry
                    .pending
                    .lock()
                    .ok()
                    .and_then(|p| p.get(&message_id).map(|w| w.device.clone()));
                if let (Some(d), Ok(mut t)) = (device, entry.taken.lock()) {
                    t.insert(
                        message_id,
                        Taken {
                            device: Some(d),
                            reported: None,
                        },
                    );
                }
            }
            Frame::Item { id, report } => {
                entry.counters.items.fetch_add(1, Ordering::Relaxed);
                handle_item(&entry, id, report).await;
            }
            Frame::Status {
                devices,
                held,
                unacked,
                stopping,
            } => {
                let mut s = entry.lock_state();
                s.devices = devices;
                s.held = held;
                s.unacked = unacked;
                if s.stopping != stopping {
                    tracing::info!(port_server = %entry.name, stopping, "the port server is stopping: it gets no new messages and finishes what it holds");
                    s.stopping = stopping;
                    drop(s);
                    entry.changed.notify_waiters();
                }
            }
            Frame::Ping { at } => {
                let _ = io.outgoing.send(Frame::Pong { at }.encode());
            }
            Frame::Pong { .. } => {}
            Frame::Refused { reason } => break format!("the port server ended the link: {reason}"),
            other => {
                let reason = format!("a port server may not send a {} frame", frame_kind(&other));
                let _ = io.outgoing.send(
                    Frame::Refused {
                        reason: reason.clone(),
                    }
                    .encode(),
                );
                break reason;
            }
        }
    };
    let current = entry
        .session
        .lock()
        .map(|mut s| {
            if s.as_ref().map(|s| s.id) == Some(id) {
                *s = None;
                true
            } else {
                false
            }
        })
        .unwrap_or(false);
    if current {
        let mut s = entry.lock_state();
        s.connected = false;
        s.connected_since = None;
        s.last_error = Some(ending.clone());
    }
    tracing::warn!(port_server = %entry.name, %peer, reason = %ending, "port server link closed");
    entry.changed.notify_waiters();
}

fn frame_kind(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "hello",
        Frame::Welcome { .. } => "welcome",
        Frame::Refused { .. } => "refused",
        Frame::Submit { .. } => "submit",
        Frame::Taken { .. } => "taken",
        Frame::Item { .. } => "item",
        Frame::Ack { .. } => "ack",
        Frame::Status { .. } => "status",
        Frame::Drain => "drain",
        Frame::Resume => "resume",
        Frame::Ping { .. } => "ping",
        Frame::Pong { .. } => "pong",
    }
}

async fn handle_item(entry: &Arc<PortEntry>, id: u64, report: Report) {
    // What goes to the dispatcher's recorder, acknowledged to the port server once stored.
    let event = match report {
        Report::Outcome {
            message_id,
            attempt,
            result,
            device,
            at,
        } => {
            entry.reported(message_id, result.for_now());
            let waiting = entry
                .pending
                .lock()
                .ok()
                .and_then(|mut p| match p.get(&message_id) {
                    Some(w) if w.attempt == attempt => p.remove(&message_id),
                    _ => None,
                });
            tracing::debug!(port_server = %entry.name, item = id, message_id, attempt, waiting = waiting.is_some(), "an outcome from a port server");
            match waiting {
                Some(w) => {
                    // Acknowledged once the dispatcher has recorded it.
                    if let Ok(mut t) = entry.to_ack.lock() {
                        t.insert(message_id, id);
                    }
                    if w.tx.send(result.into_answer()).is_err() {
                        if let Ok(mut t) = entry.to_ack.lock() {
                            t.remove(&message_id);
                        }
                    }
                    return;
                }
                // Nobody waits for this attempt (the central server restarted, or the wait
                // ran out): a sent or refused message is recorded if it is still open; one
                // that failed for now comes back when its claim lease runs out (or with its
                // next attempt) and is sent again.
                None if result.for_now() => {
                    PortEntry::queue_ack(&entry.acks, &entry.ack_ready, id);
                    return;
                }
                None => DeviceEvent::Outcome {
                    device: entry.device_name(&device),
                    message_id,
                    attempt,
                    result: result.into_answer(),
                    at,
                    ack: Some(entry.ack_closure(id)),
                },
            }
        }
        Report::Receipt {
            device,
            device_msg_id,
            delivered,
            code,
            at,
        } => {
            tracing::debug!(port_server = %entry.name, item = id, %device, %device_msg_id, "a receipt from a port server");
            DeviceEvent::Receipt {
                device: entry.device_name(&device),
                device_msg_id,
                delivered,
                code,
                at,
                ack: Some(entry.ack_closure(id)),
            }
        }
        Report::Inbound {
            device,
            from,
            to,
            body,
            encoding,
            parts,
            partial,
            received_at,
            key,
        } => DeviceEvent::Inbound {
            text: InboundText {
                device: entry.device_name(&device),
                from,
                to,
                body,
                encoding,
                parts,
                partial,
                dedup_key: Some(format!("port:{}:{key}", entry.name)),
                same_within: None,
                received_at,
            },
            ack: Some(entry.ack_closure(id)),
        },
    };
    // Without a dispatcher (no remote device of this port server is started) the report
    // stays unacknowledged, and comes again on the next link.
    if let Some(events) = entry.events.get() {
        let _ = events.send(event).await;
    }
}

/// A device of a port server, as the dispatcher uses it.
pub struct RemoteDevice {
    name: String,
    port: Arc<PortEntry>,
    remote_device: Option<String>,
    wait: Duration,
}

impl RemoteDevice {
    fn offline(&self) -> SendError {
        SendError::Transient {
            code: Some("PORT-OFFLINE".into()),
            reason: format!("port server \"{}\" is not connected", self.port.name),
        }
    }
}

impl Device for RemoteDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "remote"
    }

    fn start(&self, events: mpsc::Sender<DeviceEvent>) {
        let _ = self.port.events.set(events);
    }

    fn send(&self, sms: OutboundSms) -> BoxFuture<'_, Result<Submitted, SendError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + self.wait;
            if !self.port.connected() {
                return Err(self.offline());
            }
            let permit =
                match tokio::time::timeout_at(deadline, self.port.window.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(p)) => p,
                    _ => {
                        // Not the message's fault: tried again soon, not counted.
                        return Err(SendError::Throttled {
                            code: Some("PORT-BUSY".into()),
                            reason: format!(
                                "port server \"{}\" held its whole window for the claim lease",
                                self.port.name
                            ),
                        });
                    }
                };
            let frame = Frame::Submit {
                message_id: sms.message_id,
                attempt: sms.attempt,
                device: self.remote_device.clone(),
                to: sms.to,
                from: sms.from,
                body: sms.body,
                segments: sms.segments,
            }
            .encode();
            let (tx, rx) = oneshot::channel();
            if let Ok(mut p) = self.port.pending.lock() {
                // A later attempt replaces an earlier one still waiting (its lease ran out).
                p.insert(
                    sms.message_id,
                    Pending {
                        attempt: sms.attempt,
                        device: self.name.clone(),
                        frame: frame.clone(),
                        tx,
                        _permit: permit,
                    },
                );
            }
            self.port.counters.submits.fetch_add(1, Ordering::Relaxed);
            // Not connected now: it goes when the link is back.
            self.port.send(frame);
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(SendError::Transient {
                    code: Some("PORT-SUPERSEDED".into()),
                    reason: "handed over again under a later attempt".into(),
                }),
                Err(_) => {
                    if let Ok(mut p) = self.port.pending.lock() {
                        if p.get(&sms.message_id)
                            .is_some_and(|w| w.attempt == sms.attempt)
                        {
                            p.remove(&sms.message_id);
                        }
                    }
                    if self.holds(sms.message_id) {
                        // It took the message: it comes back here, and the attempt does
                        // not count.
                        return Err(SendError::Throttled {
                            code: Some("PORT-HELD".into()),
                            reason: format!(
                                "port server \"{}\" holds it and has not reported yet; asked again",
                                self.port.name
                            ),
                        });
                    }
                    Err(SendError::Transient {
                        code: Some("PORT-TIMEOUT".into()),
                        reason: format!(
                            "port server \"{}\" did not take it within the claim lease",
                            self.port.name
                        ),
                    })
                }
            }
        })
    }

    fn state(&self) -> DeviceState {
        let s = self.port.lock_state();
        if !s.connected {
            return DeviceState::Down;
        }
        let state_of = |d: &DeviceInfo| match d.state.as_str() {
            "up" => DeviceState::Up,
            "connecting" => DeviceState::Connecting,
            "disabled" => DeviceState::Disabled,
            _ => DeviceState::Down,
        };
        match &self.remote_device {
            Some(x) => s
                .devices
                .iter()
                .find(|d| &d.name == x)
                .map_or(DeviceState::Down, state_of),
            None if s.devices.iter().any(|d| d.state == "up") => DeviceState::Up,
            None => DeviceState::Down,
        }
    }

    fn parked(&self) -> bool {
        let s = self.port.lock_state();
        !s.connected || s.draining || s.stopping
    }

    fn holds(&self, message_id: i64) -> bool {
        self.port.taken.lock().is_ok_and(|t| {
            t.get(&message_id)
                .is_some_and(|e| e.device.as_ref().is_none_or(|d| *d == self.name))
        })
    }

    fn outcome_recorded(&self, message_id: i64, settled: bool) {
        let item = self
            .port
            .to_ack
            .lock()
            .ok()
            .and_then(|mut t| t.remove(&message_id));
        if let Some(id) = item {
            PortEntry::queue_ack(&self.port.acks, &self.port.ack_ready, id);
        }
        if settled {
            if let Ok(mut t) = self.port.taken.lock() {
                t.remove(&message_id);
            }
        }
    }

    fn window(&self) -> usize {
        link::MAX_WINDOW as usize
    }

    fn details(&self) -> Vec<(&'static str, i64)> {
        let s = self.port.lock_state();
        vec![
            ("port_held", s.held as i64),
            ("port_unacked", s.unacked as i64),
            ("port_window", i64::from(s.window)),
        ]
    }

    fn info(&self) -> Vec<(&'static str, String)> {
        vec![
            ("port_server", self.port.name.clone()),
            (
                "remote_device",
                self.remote_device.clone().unwrap_or_else(|| "any".into()),
            ),
            (
                "link",
                if self.port.connected() {
                    "up".into()
                } else {
                    "down".into()
                },
            ),
            (
                "last_seen",
                rfc3339(self.port.last_seen_ms())
                    .filter(|_| self.port.last_seen_ms() > 0)
                    .unwrap_or_else(|| "never".into()),
            ),
        ]
    }

    fn last_error(&self) -> Option<String> {
        self.port.lock_state().last_error.clone()
    }
}
