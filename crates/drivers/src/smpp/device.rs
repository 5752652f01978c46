//! The `smpp` device: its sessions share one queue of submits, and it reports the best state
//! of its sessions.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use textgate_core::config::{BindMode, SmppConfig};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::pdu;
use super::receipt::IdFormat;
use super::session::{self, SessionCtx, SubmitReq};
use super::text::DefaultAlphabet;
use crate::{BoxFuture, Device, DeviceEvent, DeviceState, OutboundSms, SendError, Submitted};

/// How long the sessions pause after ESME_RTHROTTLED or ESME_RMSGQFUL.
const THROTTLE_PAUSE: Duration = Duration::from_millis(500);

/// State shared by a device and its sessions.
pub struct Shared {
    /// The device's name.
    pub name: String,
    /// Its configuration.
    pub cfg: Arc<SmppConfig>,
    /// `resp_id_format`, parsed once.
    pub resp_ids: IdFormat,
    /// `receipt_id_format`, parsed once.
    pub receipt_ids: IdFormat,
    /// `default_alphabet`, parsed once.
    pub alphabet: DefaultAlphabet,
    states: Vec<AtomicU8>,
    last_error: StdMutex<Option<String>>,
    throttle_until: StdMutex<Option<Instant>>,
    /// Inbound texts received.
    pub received: AtomicU64,
    /// Submits sent and not yet answered, over all sessions (the window in use).
    pub in_flight: AtomicI64,
    /// Successful binds since start (1 per session, plus one per reconnect).
    pub binds: AtomicU64,
    /// ESME_RTHROTTLED and ESME_RMSGQFUL answers.
    pub throttled: AtomicU64,
    /// Delivery receipts read.
    pub receipts: AtomicU64,
    /// Incomplete long texts handed back early to keep within the reassembly budget (or
    /// the most sets pending).
    pub reassembly_evicted: AtomicU64,
    /// Bytes of parts of long texts held, over all binds.
    pub reassembly_bytes: AtomicI64,
    /// Set on shutdown: sessions drain their window, unbind and stop.
    pub closing: AtomicBool,
    /// Wakes sessions when `closing` is set.
    pub close: tokio::sync::Notify,
    closed: std::sync::atomic::AtomicUsize,
    all_closed: tokio::sync::Notify,
    /// With several nodes on one account: the slot each session must hold to be open.
    pub slots: std::sync::OnceLock<Arc<dyn crate::SessionSlots>>,
    /// Per session: its slot was lost (or given to another node), so it unbinds.
    pub leaving: Vec<AtomicBool>,
}

impl Shared {
    /// Whether session `index` is to unbind: the device is closing, or the session's slot
    /// went to another node.
    pub fn leaving(&self, index: usize) -> bool {
        self.closing.load(Ordering::Relaxed)
            || self
                .leaving
                .get(index)
                .is_some_and(|l| l.load(Ordering::Relaxed))
    }

    /// Records a session's state.
    pub fn set_state(&self, session: usize, st: DeviceState) {
        if let Some(s) = self.states.get(session) {
            s.store(st as u8, Ordering::Relaxed);
        }
    }

    /// The best state of any session.
    pub fn state(&self) -> DeviceState {
        let states: Vec<u8> = self
            .states
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect();
        if states.contains(&(DeviceState::Up as u8)) {
            DeviceState::Up
        } else if states.contains(&(DeviceState::Connecting as u8)) {
            DeviceState::Connecting
        } else {
            DeviceState::Down
        }
    }

    /// Keeps the last error for the API.
    pub fn note_error(&self, e: &str) {
        if let Ok(mut l) = self.last_error.lock() {
            *l = Some(e.to_string());
        }
    }

    /// The SMSC asked us to slow down.
    pub fn throttle(&self) {
        if let Ok(mut t) = self.throttle_until.lock() {
            *t = Some(Instant::now() + THROTTLE_PAUSE);
        }
    }

    /// A session has ended for good.
    pub fn session_closed(&self) {
        if self.closed.fetch_add(1, Ordering::SeqCst) + 1 >= self.states.len() {
            self.all_closed.notify_waiters();
        }
    }

    /// Whether sessions should hold back submits now.
    pub fn throttled(&self) -> bool {
        self.throttle_until
            .lock()
            .ok()
            .and_then(|t| *t)
            .is_some_and(|t| t > Instant::now())
    }
}

/// An SMSC account.
pub struct Smpp {
    shared: Arc<Shared>,
    tx: mpsc::Sender<SubmitReq>,
    rx: Arc<Mutex<mpsc::Receiver<SubmitReq>>>,
    started: AtomicBool,
    reference: AtomicU16,
}

impl Smpp {
    /// A device for this account; it connects when started.
    pub fn new(name: &str, cfg: SmppConfig) -> Smpp {
        let binds = cfg.binds.max(1) as usize;
        let (tx, rx) = mpsc::channel(cfg.window.max(1) as usize * binds);
        Smpp {
            shared: Arc::new(Shared {
                name: name.to_string(),
                resp_ids: cfg.resp_id_format,
                receipt_ids: cfg.receipt_id_format,
                alphabet: cfg.default_alphabet,
                states: (0..binds)
                    .map(|_| AtomicU8::new(DeviceState::Connecting as u8))
                    .collect(),
                cfg: Arc::new(cfg),
                last_error: StdMutex::new(None),
                throttle_until: StdMutex::new(None),
                received: AtomicU64::new(0),
                in_flight: AtomicI64::new(0),
                binds: AtomicU64::new(0),
                throttled: AtomicU64::new(0),
                receipts: AtomicU64::new(0),
                reassembly_evicted: AtomicU64::new(0),
                reassembly_bytes: AtomicI64::new(0),
                closing: AtomicBool::new(false),
                slots: std::sync::OnceLock::new(),
                leaving: (0..binds).map(|_| AtomicBool::new(false)).collect(),
                close: tokio::sync::Notify::new(),
                closed: std::sync::atomic::AtomicUsize::new(0),
                all_closed: tokio::sync::Notify::new(),
            }),
            tx,
            rx: Arc::new(Mutex::new(rx)),
            started: AtomicBool::new(false),
            reference: AtomicU16::new(fastrand::u16(..)),
        }
    }

    async fn submit(&self, pdu: rusmpp::pdus::SubmitSm) -> Result<String, SendError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(SubmitReq { pdu, reply })
            .await
            .map_err(|_| SendError::Transient {
                code: None,
                reason: "the SMPP device is shut down".into(),
            })?;
        answer.await.unwrap_or_else(|_| {
            Err(SendError::Transient {
                code: None,
                reason: "the SMPP session ended before the SMSC answered".into(),
            })
        })
    }
}

impl Device for Smpp {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> &'static str {
        "smpp"
    }

    fn share_sessions(&self, slots: Arc<dyn crate::SessionSlots>) {
        let _ = self.shared.slots.set(slots);
    }

    fn start(&self, events: mpsc::Sender<DeviceEvent>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        for i in 0..self.shared.states.len() {
            let ctx = SessionCtx {
                shared: self.shared.clone(),
                submits: self.rx.clone(),
                events: events.clone(),
            };
            tokio::spawn(session::run(ctx, i));
        }
    }

    fn send(&self, sms: OutboundSms) -> BoxFuture<'_, Result<Submitted, SendError>> {
        Box::pin(async move {
            if self.shared.cfg.bind == BindMode::Receiver {
                return Err(SendError::Permanent {
                    code: None,
                    reason: format!(
                        "device \"{}\" binds as receiver only and cannot send",
                        self.shared.name
                    ),
                });
            }
            if self.shared.state() != DeviceState::Up {
                // Queued submits would go out whenever a session binds, perhaps after the
                // dispatcher has given up on this attempt: refuse now instead.
                return Err(SendError::Transient {
                    code: None,
                    reason: "the SMPP device is not bound to its SMSC".into(),
                });
            }
            let reference = self.reference.fetch_add(1, Ordering::Relaxed);
            let pdus = pdu::submits(&sms, &self.shared.cfg, reference)?;
            let mut part_ids = Vec::with_capacity(pdus.len());
            for p in pdus {
                part_ids.push(self.submit(p).await?);
            }
            Ok(Submitted { part_ids })
        })
    }

    fn state(&self) -> DeviceState {
        self.shared.state()
    }

    fn can_send(&self) -> bool {
        self.shared.cfg.bind != BindMode::Receiver
    }

    fn window(&self) -> usize {
        (self.shared.cfg.window.max(1) * self.shared.cfg.binds.max(1)) as usize
    }

    fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if !self.started.load(Ordering::SeqCst) {
                return;
            }
            let done = self.shared.all_closed.notified();
            self.shared.closing.store(true, Ordering::SeqCst);
            self.shared.close.notify_waiters();
            let wait = self.shared.cfg.response_timeout.0 + Duration::from_secs(1);
            if self.shared.closed.load(Ordering::SeqCst) < self.shared.states.len()
                && tokio::time::timeout(wait, done).await.is_err()
            {
                tracing::warn!(device = %self.shared.name, "SMPP sessions did not unbind in time");
            }
        })
    }

    fn details(&self) -> Vec<(&'static str, i64)> {
        let up = self
            .shared
            .states
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) == DeviceState::Up as u8)
            .count();
        let count = |a: &AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        vec![
            ("binds_up", up as i64),
            ("binds_configured", self.shared.states.len() as i64),
            (
                "window_in_use",
                self.shared.in_flight.load(Ordering::Relaxed).max(0),
            ),
            ("window_size", self.window() as i64),
            ("binds_total", count(&self.shared.binds)),
            ("throttled_total", count(&self.shared.throttled)),
            ("receipts_read_total", count(&self.shared.receipts)),
            ("inbound_texts_total", count(&self.shared.received)),
            (
                "reassembly_evicted_total",
                count(&self.shared.reassembly_evicted),
            ),
            (
                "reassembly_bytes",
                self.shared.reassembly_bytes.load(Ordering::Relaxed).max(0),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    //! The session against a scripted SMSC on a real socket: what it answers to PDUs that do
    //! not decode, and that it stays bound through them.

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn read_pdu(s: &mut TcpStream) -> Vec<u8> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.expect("a PDU");
        let n = u32::from_be_bytes(len) as usize;
        let mut rest = vec![0u8; n - 4];
        s.read_exact(&mut rest).await.expect("its body");
        [len.to_vec(), rest].concat()
    }

    fn header(len: u32, id: u32, status: u32, seq: u32) -> Vec<u8> {
        [len, id, status, seq]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect()
    }

    fn be(b: &[u8]) -> u32 {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// A device whose session has connected and sent its bind, with an event queue of
    /// `capacity`; the bind is not answered yet (see [`bind_resp`]).
    async fn connected(capacity: usize) -> (Smpp, TcpStream, mpsc::Receiver<DeviceEvent>, u32) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cfg: SmppConfig = toml::from_str(&format!(
            "host='127.0.0.1'\nport={port}\nsystem_id='t'\npassword='p'\n"
        ))
        .expect("config");
        let dev = Smpp::new("s", cfg);
        let (tx, rx) = mpsc::channel(capacity);
        dev.start(tx);
        let (mut smsc, _) = listener.accept().await.expect("the session connects");
        let bind = read_pdu(&mut smsc).await;
        assert_eq!(
            be(&bind[4..8]),
            0x0000_0009,
            "bind_transceiver (SMPP 3.4 §4.1.5)"
        );
        (dev, smsc, rx, be(&bind[12..16]))
    }

    /// The bind_transceiver_resp to the bind with sequence number `seq`.
    fn bind_resp(seq: u32) -> Vec<u8> {
        let mut resp = header(17, 0x8000_0009, 0, seq);
        resp.push(0); // system_id ""
        resp
    }

    async fn bound() -> (Smpp, TcpStream, mpsc::Receiver<DeviceEvent>) {
        let (dev, mut smsc, rx, seq) = connected(crate::EVENTS_CAPACITY).await;
        smsc.write_all(&bind_resp(seq)).await.expect("write");
        for _ in 0..100 {
            if dev.state() == DeviceState::Up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(dev.state(), DeviceState::Up);
        (dev, smsc, rx)
    }

    #[tokio::test]
    async fn malformed_pdus_get_generic_nack_and_the_session_stays_up() {
        let (dev, mut smsc, _rx) = bound().await;
        // An unknown command_id (§4.3: generic_nack, ESME_RINVCMDID).
        smsc.write_all(&header(16, 0x0000_0199, 0, 41))
            .await
            .unwrap();
        let nack = read_pdu(&mut smsc).await;
        assert_eq!(
            (be(&nack[4..8]), be(&nack[8..12]), be(&nack[12..16])),
            (0x8000_0000, 0x03, 41)
        );
        // A deliver_sm whose body stops inside its mandatory fields (ESME_RINVCMDLEN).
        let mut bad = header(19, 0x0000_0005, 0, 42);
        bad.extend_from_slice(b"\x00\x01\x01");
        smsc.write_all(&bad).await.unwrap();
        let nack = read_pdu(&mut smsc).await;
        assert_eq!(
            (be(&nack[4..8]), be(&nack[8..12]), be(&nack[12..16])),
            (0x8000_0000, 0x02, 42)
        );
        // Still bound: an enquire_link is answered.
        smsc.write_all(&header(16, 0x0000_0015, 0, 43))
            .await
            .unwrap();
        let resp = read_pdu(&mut smsc).await;
        assert_eq!((be(&resp[4..8]), be(&resp[12..16])), (0x8000_0015, 43));
        assert_eq!(dev.state(), DeviceState::Up);
    }

    /// A deliver_sm of a one-part text: source "1", destination "2", text "hi".
    fn deliver(seq: u32) -> Vec<u8> {
        // service_type "", ton/npi, "1", ton/npi, "2", esm 0, pid 0, prio 0, sched "",
        // valid "", reg 0, replace 0, dc 0, default_msg_id 0, sm_length 2, "hi".
        let body =
            b"\x00\x01\x01\x31\x00\x01\x01\x32\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02hi";
        let mut pdu = header(16 + body.len() as u32, 0x0000_0005, 0, seq);
        pdu.extend_from_slice(body);
        pdu
    }

    #[tokio::test]
    async fn texts_sent_right_behind_the_bind_resp_are_not_lost() {
        let (_dev, mut smsc, mut rx, seq) = connected(16).await;
        // bind_resp and a queued text in one write, as an SMSC with texts waiting sends them.
        let mut bytes = bind_resp(seq);
        bytes.extend(deliver(7));
        smsc.write_all(&bytes).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the text is read")
            .expect("an event");
        assert!(
            matches!(ev, DeviceEvent::Inbound { ref text, .. } if text.body == "hi"),
            "{ev:?}"
        );
    }

    #[tokio::test]
    async fn a_full_event_queue_stops_the_session_reading_until_there_is_room() {
        // Room for two events, and nobody taking them yet.
        let (_dev, mut smsc, mut rx, seq) = connected(2).await;
        smsc.write_all(&bind_resp(seq)).await.unwrap();
        // Five texts, then an enquire_link: the session reads the texts, finds no room for
        // the last ones, and reads nothing more.
        for seq in 10..15 {
            smsc.write_all(&deliver(seq)).await.unwrap();
        }
        smsc.write_all(&header(16, 0x0000_0015, 0, 99))
            .await
            .unwrap();
        let early = tokio::time::timeout(Duration::from_millis(500), read_pdu(&mut smsc)).await;
        assert!(
            early.is_err(),
            "nothing is read, so the enquire_link is not answered yet"
        );
        // Room again: every text comes through, and the enquire_link is answered.
        let texts = tokio::spawn(async move {
            let mut n = 0;
            while n < 5 {
                if let Some(DeviceEvent::Inbound { ack: Some(ack), .. }) = rx.recv().await {
                    ack.send(true);
                    n += 1;
                }
            }
            n
        });
        let mut acked = Vec::new();
        let answered = loop {
            let pdu = tokio::time::timeout(Duration::from_secs(5), read_pdu(&mut smsc))
                .await
                .expect("answered once there is room");
            match be(&pdu[4..8]) {
                0x8000_0005 => acked.push((be(&pdu[8..12]), be(&pdu[12..16]))),
                _ => break pdu,
            }
        };
        assert_eq!(
            (be(&answered[4..8]), be(&answered[12..16])),
            (0x8000_0015, 99)
        );
        assert_eq!(texts.await.unwrap(), 5);
        // Every text was answered ESME_ROK once stored; none was lost while waiting.
        while acked.len() < 5 {
            let pdu = read_pdu(&mut smsc).await;
            acked.push((be(&pdu[8..12]), be(&pdu[12..16])));
        }
        acked.sort();
        assert_eq!(acked, (10..15).map(|s| (0, s)).collect::<Vec<_>>());
    }

    /// Timers in the test's own clock: the session's enquire_link interval and response
    /// timeout pass without waiting for them.
    #[tokio::test(start_paused = true)]
    async fn an_smsc_that_stops_answering_is_disconnected() {
        let (dev, mut smsc, _rx) = bound().await;
        let before = tokio::time::Instant::now();
        // Idle: after enquire_link (30 s) the session asks; the SMSC says nothing.
        let ask = read_pdu(&mut smsc).await;
        assert_eq!(be(&ask[4..8]), 0x0000_0015, "enquire_link (SMPP 3.4 §4.11)");
        // (The interval began with the session, a moment before `before`.)
        assert!(
            before.elapsed() >= Duration::from_secs(29),
            "{:?}",
            before.elapsed()
        );
        // After response_timeout (10 s) without an answer the session closes the connection.
        let mut rest = Vec::new();
        let n = smsc.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "nothing more, then the end: {rest:?}");
        assert!(
            before.elapsed() >= Duration::from_secs(39),
            "{:?}",
            before.elapsed()
        );
        assert_ne!(dev.state(), DeviceState::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn a_submit_the_smsc_never_answers_fails_as_transient_after_the_timeout() {
        let (dev, mut smsc, _rx) = bound().await;
        let sent = tokio::spawn(async move {
            let r = dev
                .send(crate::OutboundSms {
                    message_id: 1,
                    attempt: 1,
                    to: "+15550000001".into(),
                    from: None,
                    body: "hi".into(),
                    segments: 1,
                })
                .await;
            (r, dev)
        });
        let submit = read_pdu(&mut smsc).await;
        assert_eq!(be(&submit[4..8]), 0x0000_0004, "submit_sm");
        let start = tokio::time::Instant::now();
        let (r, _dev) = sent.await.unwrap();
        assert!(
            matches!(r, Err(SendError::Transient { ref reason, .. }) if reason.contains("in time")),
            "{r:?}"
        );
        assert!(
            start.elapsed() >= Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn shutdown_unbinds() {
        let (dev, mut smsc, _rx) = bound().await;
        let stop = tokio::spawn(async move { dev.shutdown().await });
        let unbind = read_pdu(&mut smsc).await;
        assert_eq!(be(&unbind[4..8]), 0x0000_0006, "unbind (§4.2.1)");
        smsc.write_all(&header(16, 0x8000_0006, 0, be(&unbind[12..16])))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("shutdown finishes")
            .unwrap();
    }

    #[tokio::test]
    async fn random_bodies_never_break_the_session() {
        let (dev, mut smsc, mut rx) = bound().await;
        // Play the store: every inbound text is committed at once.
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let DeviceEvent::Inbound { ack: Some(ack), .. } = ev {
                    ack.send(true);
                }
            }
        });
        let mut rng = fastrand::Rng::with_seed(7);
        for seq in 100..300u32 {
            // A known request id with a random body of a plausible length.
            let id = [0x0000_0005u32, 0x0000_0004, 0x0000_0015, 0x0000_0103][rng.usize(..4)];
            let body: Vec<u8> = (0..rng.usize(0..80)).map(|_| rng.u8(..)).collect();
            let mut pdu = header(16 + body.len() as u32, id, 0, seq);
            pdu.extend_from_slice(&body);
            smsc.write_all(&pdu).await.unwrap();
            let answer = read_pdu(&mut smsc).await;
            assert_eq!(
                be(&answer[12..16]),
                seq,
                "every request is answered, in order"
            );
            assert!(
                be(&answer[4..8]) & 0x8000_0000 != 0,
                "with a response or generic_nack"
            );
        }
        assert_eq!(dev.state(), DeviceState::Up);
    }
}
