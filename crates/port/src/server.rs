//! `textgate port`: a port server. It runs its own devices, keeps what it holds in its own
//! store ([`Hold`]), and connects out to the central server over one WebSocket on the
//! central server's HTTP port, reconnecting with backoff and jitter whenever the link
//! breaks.
//!
//! - Messages: a [`Frame::Submit`] is committed, then answered [`Frame::Taken`], then sent
//!   on a device; its outcome is committed and reported until acknowledged. Messages held
//!   when the process stopped are sent after the next start.
//! - Receipts and inbound texts: committed as reports before the device acknowledges them
//!   to its SMSC or modem, then sent to the central server until it acknowledges them.
//! - Status: the link's state and what is held are logged when they change, written to
//!   `status.json` in the data folder on every heartbeat (`textgate port status` prints it),
//!   and sent to the central server.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use textgate_core::clock::now_ms;
use textgate_core::config::PortConfig;
use textgate_drivers::{Device, DeviceEvent, DeviceState, OutboundSms};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};
use tokio_util::sync::CancellationToken;

use crate::hold::{HeldMessage, Hold, Taken};
use crate::link::{self, DeviceInfo, Frame, Report, SendResult};

/// How long connecting (TCP, TLS, the upgrade, the hello) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A link that lasted this long starts the next reconnection from the shortest wait.
const STABLE_LINK: Duration = Duration::from_secs(10);
/// How long a message waits for its device to finish connecting before it is tried.
const DEVICE_WAIT: Duration = Duration::from_secs(3);
/// How long a stopping port server waits for what it holds to be sent and acknowledged.
const STOP_GRACE: Duration = Duration::from_secs(10);

struct PortDevice {
    dev: Arc<dyn Device>,
    enabled: bool,
    slots: Arc<Semaphore>,
    load: AtomicI64,
    /// `max_rate`'s spacing, and the next free moment.
    pace: Option<(Duration, Mutex<tokio::time::Instant>)>,
}

impl PortDevice {
    /// Waits for this device's next slot under its `max_rate`.
    async fn paced(&self) {
        let Some((every, next)) = &self.pace else {
            return;
        };
        let slot = {
            let now = tokio::time::Instant::now();
            let Ok(mut n) = next.lock() else { return };
            let slot = (*n).max(now);
            *n = slot + *every;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// What `status.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortStatus {
    /// `up`, `connecting` or `down`.
    pub link: String,
    /// The central server's URL.
    pub server: String,
    /// The central node it is linked to.
    pub central: Option<String>,
    /// The protocol version in use.
    pub protocol: Option<u32>,
    /// When the link came up (ms since the epoch).
    pub since: Option<i64>,
    /// Why the last link ended, or was refused.
    pub last_error: Option<String>,
    /// Messages taken and not yet finished.
    pub held: u64,
    /// Reports the central server has not acknowledged yet.
    pub unacked: u64,
    /// Whether it was asked to drain.
    pub draining: bool,
    /// Its devices.
    pub devices: Vec<DeviceInfo>,
    /// When this was written (ms since the epoch).
    pub at: i64,
}

struct Port {
    cfg: PortConfig,
    hold: Hold,
    devices: Vec<PortDevice>,
    out: mpsc::UnboundedSender<String>,
    draining: AtomicBool,
    /// Stopping: takes nothing new, finishes what it holds.
    stopping: AtomicBool,
    status: Mutex<PortStatus>,
}

/// Runs a port server with a checked configuration until `stop` is cancelled; `ready` is told
/// once its store is open and its devices are started.
pub async fn run(
    cfg: PortConfig,
    stop: CancellationToken,
    ready: impl FnOnce(&str),
) -> anyhow::Result<()> {
    let dir = PathBuf::from(&cfg.data_dir);
    let (hold, open) = Hold::open(&dir)?;
    let built = textgate_drivers::build_devices(&cfg.devices, &|_, _| None)?;
    let (ev_tx, ev_rx) = mpsc::channel(textgate_drivers::EVENTS_CAPACITY);
    let devices: Vec<PortDevice> = built
        .into_iter()
        .zip(&cfg.devices)
        .map(|(dev, dc)| {
            if dc.enabled {
                dev.start(ev_tx.clone());
            }
            PortDevice {
                slots: Arc::new(Semaphore::new(dev.window().max(1))),
                dev,
                enabled: dc.enabled,
                load: AtomicI64::new(0),
                pace: (dc.max_rate > 0).then(|| {
                    (
                        Duration::from_secs_f64(1.0 / f64::from(dc.max_rate)),
                        Mutex::new(tokio::time::Instant::now()),
                    )
                }),
            }
        })
        .collect();
    drop(ev_tx);
    let (out, out_rx) = mpsc::unbounded_channel();
    let port = Arc::new(Port {
        status: Mutex::new(PortStatus {
            link: "down".into(),
            server: cfg.server.clone(),
            ..PortStatus::default()
        }),
        cfg,
        hold,
        devices,
        out,
        draining: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
    });
    tracing::info!(
        port_server = %port.cfg.name,
        server = %port.cfg.server,
        held = open.len(),
        unacked = port.hold.counts.unacked.load(Ordering::Relaxed),
        "textgate port server starting"
    );
    for m in open {
        port.clone().dispatch(m);
    }
    let (take_tx, take_rx) = mpsc::unbounded_channel();
    tokio::spawn(port.clone().taker(take_rx));
    tokio::spawn(port.clone().reporter(ev_rx));
    tokio::spawn(port.clone().housekeeping(stop.clone()));
    let linker = tokio::spawn(port.clone().link_loop(out_rx, take_tx, stop.clone()));
    // Its store is open and its devices started; the link comes and goes by itself.
    ready(&format!("linking to {}", port.cfg.server));
    stop.cancelled().await;
    // Finish what is held, and hear that the central server has it, within a grace; the
    // link tells the central server this port server drains.
    port.stopping.store(true, Ordering::Relaxed);
    let until = tokio::time::Instant::now() + STOP_GRACE;
    while tokio::time::Instant::now() < until
        && !linker.is_finished()
        && (port.hold.counts.held.load(Ordering::Relaxed) > 0
            || port.hold.counts.unacked.load(Ordering::Relaxed) > 0
            || port
                .devices
                .iter()
                .any(|d| d.load.load(Ordering::Relaxed) > 0))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    linker.abort();
    for d in &port.devices {
        let _ = tokio::time::timeout(Duration::from_secs(5), d.dev.shutdown()).await;
    }
    port.write_status();
    tracing::info!(
        held = port.hold.counts.held.load(Ordering::Relaxed),
        unacked = port.hold.counts.unacked.load(Ordering::Relaxed),
        "textgate port server stopped; what it holds goes after the next start"
    );
    Ok(())
}

impl Port {
    fn device_infos(&self) -> Vec<DeviceInfo> {
        self.devices
            .iter()
            .map(|d| DeviceInfo {
                name: d.dev.name().to_string(),
                kind: d.dev.kind().to_string(),
                state: if d.enabled {
                    d.dev.state()
                } else {
                    DeviceState::Disabled
                }
                .as_str()
                .to_string(),
            })
            .collect()
    }

    fn status_frame(&self) -> String {
        Frame::Status {
            devices: self.device_infos(),
            held: self.hold.counts.held.load(Ordering::Relaxed),
            unacked: self.hold.counts.unacked.load(Ordering::Relaxed),
            stopping: self.stopping.load(Ordering::Relaxed),
        }
        .encode()
    }

    /// Changes the link's state, and writes `status.json` at once.
    fn set_link(&self, f: impl FnOnce(&mut PortStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
        self.write_status();
    }

    /// Writes `status.json` (atomically) and returns what it wrote.
    fn write_status(&self) -> PortStatus {
        let mut s = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        s.held = self.hold.counts.held.load(Ordering::Relaxed);
        s.unacked = self.hold.counts.unacked.load(Ordering::Relaxed);
        s.draining = self.draining.load(Ordering::Relaxed) || self.stopping.load(Ordering::Relaxed);
        s.devices = self.device_infos();
        s.at = now_ms();
        let dir = PathBuf::from(&self.cfg.data_dir);
        let tmp = dir.join("status.json.tmp");
        if let Ok(text) = serde_json::to_string_pretty(&s) {
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, dir.join("status.json"));
            }
        }
        s
    }

    /// The device for a message: the one it names, else the least busy that is up.
    fn choose(&self, wanted: Option<&str>) -> Result<usize, String> {
        let usable = |d: &PortDevice| d.enabled && d.dev.can_send();
        if let Some(name) = wanted {
            return self
                .devices
                .iter()
                .position(|d| d.dev.name() == name && usable(d))
                .ok_or_else(|| {
                    format!(
                        "port server \"{}\" has no device \"{name}\" that sends",
                        self.cfg.name
                    )
                });
        }
        let pick = |up: bool| {
            self.devices
                .iter()
                .enumerate()
                .filter(|(_, d)| usable(d) && (!up || d.dev.state() == DeviceState::Up))
                .min_by_key(|(_, d)| d.load.load(Ordering::Relaxed))
                .map(|(i, _)| i)
        };
        pick(true)
            .or_else(|| pick(false))
            .ok_or_else(|| format!("port server \"{}\" has no device that sends", self.cfg.name))
    }

    /// Sends a held message on a device and commits its outcome.
    fn dispatch(self: Arc<Self>, m: HeldMessage) {
        tokio::spawn(async move {
            let (device, result) = match self.choose(m.device.as_deref()) {
                Err(reason) => (
                    m.device.clone().unwrap_or_default(),
                    SendResult::Permanent { code: None, reason },
                ),
                Ok(i) => {
                    let d = &self.devices[i];
                    // Just started, or reconnecting: a moment's wait beats a round trip
                    // through the central server's retries.
                    let until = tokio::time::Instant::now() + DEVICE_WAIT;
                    while d.dev.state() == DeviceState::Connecting
                        && tokio::time::Instant::now() < until
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    d.load.fetch_add(1, Ordering::Relaxed);
                    d.paced().await;
                    let slot = d.slots.clone().acquire_owned().await;
                    let r = d
                        .dev
                        .send(OutboundSms {
                            message_id: m.message_id,
                            attempt: m.attempt,
                            to: m.to.clone(),
                            from: m.from.clone(),
                            body: m.body.clone(),
                            segments: m.segments,
                        })
                        .await;
                    drop(slot);
                    d.load.fetch_sub(1, Ordering::Relaxed);
                    let result = SendResult::from(r);
                    (d.dev.name().to_string(), result)
                }
            };
            let mut wait = Duration::from_millis(100);
            loop {
                match self
                    .hold
                    .finish(m.message_id, device.clone(), result.clone(), now_ms())
                    .await
                {
                    Ok(Some(frame)) => {
                        let _ = self.out.send(frame.encode());
                        return;
                    }
                    Ok(None) => return,
                    Err(e) => {
                        // The device took it: its outcome must not be forgotten.
                        tracing::error!(message_id = m.message_id, error = %e, "cannot commit a sent message's outcome; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }

    /// Commits submits in batches, answers each `taken`, and sends the new ones.
    async fn taker(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<HeldMessage>) {
        let mut batch = Vec::with_capacity(1024);
        while rx.recv_many(&mut batch, 4096).await > 0 {
            let submits: Vec<HeldMessage> = std::mem::take(&mut batch);
            let ids: Vec<(i64, i64)> = submits.iter().map(|m| (m.message_id, m.attempt)).collect();
            match self.hold.take(submits).await {
                Ok(taken) => {
                    for ((message_id, attempt), t) in ids.into_iter().zip(taken) {
                        let _ = self.out.send(
                            Frame::Taken {
                                message_id,
                                attempt,
                            }
                            .encode(),
                        );
                        match t {
                            Taken::New(m) => self.clone().dispatch(m),
                            Taken::Held => {}
                            Taken::Answered(f) => {
                                let _ = self.out.send(f.encode());
                            }
                        }
                    }
                }
                // Not answered: the central server hands them over again on the next link.
                Err(e) => tracing::error!(error = %e, "cannot commit submits; they are not taken"),
            }
        }
    }

    /// Commits the devices' receipts and inbound texts, then lets each device acknowledge
    /// its own to its peer, then reports them.
    async fn reporter(self: Arc<Self>, mut events: mpsc::Receiver<DeviceEvent>) {
        let mut buf = Vec::with_capacity(1024);
        while events.recv_many(&mut buf, 1024).await > 0 {
            let mut waiting = Vec::with_capacity(buf.len());
            for ev in buf.drain(..) {
                let (report, ack) = match ev {
                    DeviceEvent::Receipt {
                        device,
                        device_msg_id,
                        delivered,
                        code,
                        at,
                        ack,
                    } => (
                        Report::Receipt {
                            device,
                            device_msg_id,
                            delivered,
                            code,
                            at,
                        },
                        ack,
                    ),
                    // Only the central server's remote devices report these.
                    DeviceEvent::Outcome { ack, .. } => {
                        if let Some(a) = ack {
                            a.send(true);
                        }
                        continue;
                    }
                    DeviceEvent::Inbound { text, ack } => {
                        let key = match text.dedup_key {
                            Some(k) => format!("{}:{k}", text.device),
                            None => textgate_core::auth::random_token(16)
                                .unwrap_or_else(|_| format!("{}-{}", now_ms(), fastrand::u64(..))),
                        };
                        (
                            Report::Inbound {
                                device: text.device,
                                from: text.from,
                                to: text.to,
                                body: text.body,
                                encoding: text.encoding,
                                parts: text.parts,
                                partial: text.partial,
                                received_at: text.received_at,
                                key,
                            },
                            ack,
                        )
                    }
                };
                waiting.push((self.hold.report(report), ack));
            }
            for (committed, ack) in waiting {
                match committed.await {
                    Ok(frame) => {
                        if let Some(a) = ack {
                            a.send(true);
                        }
                        let _ = self.out.send(frame.encode());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot commit a report; its device is asked to deliver it again");
                        if let Some(a) = ack {
                            a.send(false);
                        }
                    }
                }
            }
        }
    }

    /// Forgets finished messages past `keep_done`, keeps `status.json` current, tells the
    /// central server of a change at once (not at the next heartbeat), and logs the status
    /// when the link or a device changes (what it holds, at most once a minute).
    async fn housekeeping(self: Arc<Self>, stop: CancellationToken) {
        let mut last_purge = tokio::time::Instant::now();
        let mut last_sent: Option<PortStatus> = None;
        let mut last_logged: Option<(String, bool, Vec<DeviceInfo>, u64, u64)> = None;
        let mut logged_at = tokio::time::Instant::now();
        loop {
            let s = self.write_status();
            let same = |a: &PortStatus| {
                (&a.link, a.held, a.unacked, a.draining, &a.devices)
                    == (&s.link, s.held, s.unacked, s.draining, &s.devices)
            };
            if !last_sent.as_ref().is_some_and(same) {
                let _ = self.out.send(self.status_frame());
                last_sent = Some(s.clone());
            }
            let key = (
                s.link.clone(),
                s.draining,
                s.devices.clone(),
                s.held,
                s.unacked,
            );
            let changed =
                last_logged
                    .as_ref()
                    .is_none_or(|(link, draining, devices, held, unacked)| {
                        (link, *draining, devices) != (&key.0, key.1, &key.2)
                            || ((*held, *unacked) != (key.3, key.4)
                                && logged_at.elapsed() >= Duration::from_secs(60))
                    });
            if changed {
                let devices: Vec<String> = s
                    .devices
                    .iter()
                    .map(|d| format!("{} {}", d.name, d.state))
                    .collect();
                tracing::info!(
                    link = %s.link,
                    held = s.held,
                    unacked = s.unacked,
                    draining = s.draining,
                    devices = %devices.join(", "),
                    "port server status"
                );
                last_logged = Some(key);
                logged_at = tokio::time::Instant::now();
            }
            if last_purge.elapsed() > Duration::from_secs(3600) {
                let keep = i64::try_from(self.cfg.keep_done.0.as_millis()).unwrap_or(i64::MAX);
                self.hold.purge(now_ms().saturating_sub(keep));
                last_purge = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.cfg.heartbeat.0.min(Duration::from_secs(1))) => {}
            }
        }
    }

    async fn link_loop(
        self: Arc<Self>,
        mut out_rx: mpsc::UnboundedReceiver<String>,
        take: mpsc::UnboundedSender<HeldMessage>,
        stop: CancellationToken,
    ) {
        let mut failures: u32 = 0;
        loop {
            self.set_link(|s| s.link = "connecting".into());
            let started = tokio::time::Instant::now();
            let end = self.session(&mut out_rx, &take, &stop).await;
            self.set_link(|s| {
                s.link = "down".into();
                s.since = None;
            });
            let long_wait = match &end {
                Ok(()) => return,
                Err(LinkEnd::Refused(reason)) => {
                    tracing::error!(%reason, "the central server refused this port server; trying again later");
                    self.set_link(|s| s.last_error = Some(reason.clone()));
                    true
                }
                Err(LinkEnd::Broken(reason)) => {
                    tracing::warn!(%reason, "the link to the central server is down; reconnecting");
                    self.set_link(|s| s.last_error = Some(reason.clone()));
                    false
                }
            };
            if started.elapsed() >= STABLE_LINK {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            let wait = if long_wait {
                self.cfg.reconnect_max.0
            } else {
                textgate_core::config::backoff(
                    self.cfg.reconnect_min.0,
                    self.cfg.reconnect_max.0,
                    failures,
                    fastrand::f64(),
                )
            };
            let until = tokio::time::Instant::now() + wait;
            // What is reported while the link is down is in the store, and goes from there
            // on the next link.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(until) => break,
                    m = out_rx.recv() => if m.is_none() { return },
                }
            }
        }
    }

    async fn session(
        &self,
        out_rx: &mut mpsc::UnboundedReceiver<String>,
        take: &mpsc::UnboundedSender<HeldMessage>,
        stop: &CancellationToken,
    ) -> Result<(), LinkEnd> {
        let ws = tokio::time::timeout(CONNECT_TIMEOUT, connect(&self.cfg))
            .await
            .map_err(|_| {
                LinkEnd::Broken(format!(
                    "connecting to {} took over {} s",
                    self.cfg.server,
                    CONNECT_TIMEOUT.as_secs()
                ))
            })??;
        let (mut sink, mut stream) = ws.split();
        let held = self
            .hold
            .held_ids()
            .await
            .map_err(|e| LinkEnd::Broken(e.to_string()))?;
        let hello = Frame::Hello {
            held,
            versions: link::VERSIONS.to_vec(),
            name: self.cfg.name.clone(),
            build: format!("textgate {}", env!("CARGO_PKG_VERSION")),
            devices: self.device_infos(),
            window: self.cfg.window,
            heartbeat_ms: u64::try_from(self.cfg.heartbeat.0.as_millis()).unwrap_or(u64::MAX),
        };
        sink.send(Message::text(hello.encode()))
            .await
            .map_err(broken)?;
        let (version, node) =
            match tokio::time::timeout(CONNECT_TIMEOUT, next_frame(&mut stream)).await {
                Err(_) => return Err(LinkEnd::Broken("no welcome from the central server".into())),
                Ok(r) => match r? {
                    Frame::Welcome { version, node } => (version, node),
                    Frame::Refused { reason } => return Err(LinkEnd::Refused(reason)),
                    other => {
                        return Err(LinkEnd::Broken(format!(
                            "expected a welcome, got {other:?}"
                        )))
                    }
                },
            };
        // Everything sent on an earlier link, or while none was up, is in the store.
        while out_rx.try_recv().is_ok() {}
        tracing::info!(central = %node, version, server = %self.cfg.server, "linked to the central server");
        self.set_link(|s| {
            s.link = "up".into();
            s.central = Some(node.clone());
            s.protocol = Some(version);
            s.since = Some(now_ms());
            s.last_error = None;
        });
        sink.feed(Message::text(self.status_frame()))
            .await
            .map_err(broken)?;
        // Every report not yet acknowledged, oldest first.
        let mut after = 0;
        loop {
            let page = self
                .hold
                .unacked(after, 1000)
                .await
                .map_err(|e| LinkEnd::Broken(e.to_string()))?;
            let Some(Frame::Item { id, .. }) = page.last() else {
                break;
            };
            after = *id;
            for f in &page {
                sink.feed(Message::text(f.encode())).await.map_err(broken)?;
            }
            sink.flush().await.map_err(broken)?;
        }
        sink.flush().await.map_err(broken)?;
        let hb = self.cfg.heartbeat.0;
        let mut tick = tokio::time::interval(hb);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_rx = tokio::time::Instant::now();
        let mut batch = Vec::with_capacity(256);
        let mut stopping = false;
        loop {
            tokio::select! {
                m = stream.next() => {
                    let frame = match m {
                        None => return Err(LinkEnd::Broken("the central server closed the link".into())),
                        Some(m) => match read_frame(m) {
                            Ok(Some(f)) => f,
                            Ok(None) => continue,
                            Err(e) => return Err(e),
                        },
                    };
                    last_rx = tokio::time::Instant::now();
                    match frame {
                        Frame::Submit { message_id, attempt, device, to, from, body, segments } => {
                            let _ = take.send(HeldMessage { message_id, attempt, device, to, from, body, segments });
                        }
                        Frame::Ack { ids } => self.hold.ack(ids),
                        Frame::Ping { at } => {
                            sink.send(Message::text(Frame::Pong { at }.encode())).await.map_err(broken)?;
                        }
                        Frame::Pong { .. } => {}
                        Frame::Resume => {
                            if self.draining.swap(false, Ordering::Relaxed) {
                                tracing::info!("the central server ended the drain: this port server takes messages again");
                            }
                        }
                        Frame::Drain => {
                            if !self.draining.swap(true, Ordering::Relaxed) {
                                tracing::warn!("the central server asked this port server to drain: it finishes what it holds and takes no new messages");
                            }
                        }
                        Frame::Refused { reason } => return Err(LinkEnd::Refused(reason)),
                        other => {
                            let reason = format!("a central server may not send {other:?}");
                            let _ = sink.send(Message::text(Frame::Refused { reason: reason.clone() }.encode())).await;
                            return Err(LinkEnd::Broken(reason));
                        }
                    }
                }
                n = out_rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        return Ok(());
                    }
                    for f in batch.drain(..) {
                        sink.feed(Message::text(f)).await.map_err(broken)?;
                    }
                    sink.flush().await.map_err(broken)?;
                }
                _ = tick.tick() => {
                    if last_rx.elapsed() > hb * 3 {
                        return Err(LinkEnd::Broken(format!("nothing heard from the central server for {} s (three heartbeats)", (hb * 3).as_secs())));
                    }
                    sink.feed(Message::text(Frame::Ping { at: now_ms() }.encode())).await.map_err(broken)?;
                    sink.feed(Message::text(self.status_frame())).await.map_err(broken)?;
                    sink.flush().await.map_err(broken)?;
                }
                // Stopping: the central server hears it drains and hands over nothing more;
                // the link stays up while what is held is finished and reported.
                _ = stop.cancelled(), if !stopping => {
                    stopping = true;
                    self.stopping.store(true, Ordering::Relaxed);
                    sink.send(Message::text(self.status_frame())).await.map_err(broken)?;
                }
            }
        }
    }
}

/// Why a link ended.
enum LinkEnd {
    /// Refused by the central server (a wrong token, no common version): retried after
    /// the longest wait.
    Refused(String),
    /// Broken or never made: retried with backoff.
    Broken(String),
}

fn broken(e: tungstenite::Error) -> LinkEnd {
    LinkEnd::Broken(e.to_string())
}

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn textgate_drivers::smpp::session::Io>>;

async fn next_frame(stream: &mut futures_util::stream::SplitStream<Ws>) -> Result<Frame, LinkEnd> {
    loop {
        match stream.next().await {
            None => return Err(LinkEnd::Broken("the central server closed the link".into())),
            Some(m) => {
                if let Some(f) = read_frame(m)? {
                    return Ok(f);
                }
            }
        }
    }
}

fn read_frame(m: Result<Message, tungstenite::Error>) -> Result<Option<Frame>, LinkEnd> {
    match m.map_err(broken)? {
        Message::Text(t) => Frame::decode(t.as_str())
            .map(Some)
            .map_err(|e| LinkEnd::Broken(format!("the central server sent a broken frame: {e}"))),
        Message::Close(c) => Err(LinkEnd::Broken(match c {
            Some(c) if !c.reason.is_empty() => {
                format!("the central server closed the link: {}", c.reason)
            }
            _ => "the central server closed the link".into(),
        })),
        Message::Binary(_) => Err(LinkEnd::Broken(
            "the central server sent a binary frame".into(),
        )),
        _ => Ok(None),
    }
}

/// The parts of the central server's URL the link needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// Whether it is `https`.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The link's URL (`ws://…/api/v1/port/link` or `wss://…`).
    pub url: String,
}

/// Reads `http(s)://host[:port][/prefix]`.
pub fn target(server: &str) -> Result<Target, String> {
    let server = server.trim().trim_end_matches('/');
    let (tls, rest) = if let Some(r) = server.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = server.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("\"{server}\" is not an http:// or https:// URL"));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address without its closing ]")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("\"{server}\" names no host"));
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("\"{p}\" is not a port"))?,
        None if tls => 443,
        None => 80,
    };
    let url = format!(
        "{}://{authority}{path}/api/v1/port/link",
        if tls { "wss" } else { "ws" }
    );
    Ok(Target {
        tls,
        host,
        port,
        url,
    })
}

async fn connect(cfg: &PortConfig) -> Result<Ws, LinkEnd> {
    let t = target(&cfg.server).map_err(LinkEnd::Refused)?;
    let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| LinkEnd::Broken(format!("cannot connect to {}:{}: {e}", t.host, t.port)))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn textgate_drivers::smpp::session::Io> = if t.tls {
        let tls = textgate_drivers::smpp::session::tls_config(cfg.tls_ca_file.as_deref())
            .map_err(LinkEnd::Refused)?;
        let name =
            tokio_rustls::rustls::pki_types::ServerName::try_from(t.host.clone()).map_err(|e| {
                LinkEnd::Refused(format!("\"{}\" is not a host name for TLS: {e}", t.host))
            })?;
        let s = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| LinkEnd::Broken(format!("TLS with {} failed: {e}", t.host)))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let mut req = t
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| LinkEnd::Refused(format!("the server URL: {e}")))?;
    let token = cfg.token.as_deref().unwrap_or_default();
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| LinkEnd::Refused("the token holds characters a header cannot carry".into()))?;
    req.headers_mut().insert("authorization", bearer);
    let mut wsc = tungstenite::protocol::WebSocketConfig::default();
    wsc.max_message_size = Some(link::MAX_FRAME);
    wsc.max_frame_size = Some(link::MAX_FRAME);
    match tokio_tungstenite::client_async_with_config(req, io, Some(wsc)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status();
            let body = resp
                .body()
                .as_ref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(300)
                        .collect::<String>()
                })
                .unwrap_or_default();
            let why = format!("the central server answered HTTP {status} to the link: {body}");
            if status.as_u16() == 401 || status.as_u16() == 403 {
                Err(LinkEnd::Refused(format!("{why} (check this port server's name and token against the central server's [[port_server]])")))
            } else {
                Err(LinkEnd::Broken(why))
            }
        }
        Err(e) => Err(LinkEnd::Broken(format!(
            "the WebSocket upgrade failed: {e}"
        ))),
    }
}

/// Reads the status a running (or stopped) port server last wrote in its data folder.
pub fn read_status(data_dir: &str) -> Result<PortStatus, String> {
    let path = PathBuf::from(data_dir).join("status.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {}: {e} (has the port server run with this data_dir?)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not a status file: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_url_comes_from_the_server_url() {
        let t = target("https://central.example.com").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "central.example.com".into(),
                port: 443,
                url: "wss://central.example.com/api/v1/port/link".into()
            }
        );
        let t = target("http://127.0.0.1:8080/textgate/").unwrap();
        assert_eq!(
            (t.port, t.url.as_str()),
            (8080, "ws://127.0.0.1:8080/textgate/api/v1/port/link")
        );
        let t = target("http://[::1]:9000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(target("ftp://x").is_err());
        assert!(target("http://:80").is_err());
        assert!(target("http://h:port").is_err());
    }
}
