//! The `modem` device: a GSM/LTE modem on a serial port, driven with AT commands in PDU mode
//! (3GPP TS 27.005, TS 27.007), as modems behave and not only as the standards say.
//!
//! One task owns the port and does one thing at a time, as a modem does: it sets the modem
//! up, sends texts part by part (`AT+CMGS`, SMS-SUBMIT PDUs from
//! [`textgate_core::encoding::tpdu`]), reads what the modem announces (`+CMTI`, `+CDSI`,
//! `+CMT`, `+CDS`) and sweeps its storage (`AT+CMGL=4`) so nothing left there is missed,
//! and polls registration, signal and storage. A text is deleted from the modem only after
//! the store has committed it. When the port fails or the modem stops answering, the port
//! is closed and opened again with backoff; the modem is set up again after it restarts on
//! its own (`RDY`).
//!
//! - [`at`]: lines, prompts, answers and unsolicited codes; `+CMS ERROR` codes sorted.

pub mod at;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use textgate_core::address::{Recipient, E164};
use textgate_core::clock::now_ms;
use textgate_core::config::{ModemConfig, ModemMode};
use textgate_core::encoding::tpdu::{self, Alphabet, StatusClass, SubmitOptions, Tpdu};
use textgate_core::encoding::Body;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_serial::SerialStream;

use self::at::{Final, Kind, LineReader, Said, Urc, Verdict};
use crate::smpp::reassembly::{Assembled, Fragment, PartKey, Pushed, Reassembler};
use crate::{
    Ack, BoxFuture, Device, DeviceEvent, DeviceState, InboundText, OutboundSms, SendError,
    Submitted,
};

/// Messages waiting for the modem at most (it sends one part at a time).
const QUEUE: usize = 8;
/// Unsolicited codes waiting to be handled at most (see `Session::keep_unsolicited`).
const MAX_PENDING: usize = 256;
/// How many sent parts are remembered per message reference for their status reports.
const SENT_PER_REFERENCE: usize = 4;

/// A message handed to the modem's task.
struct Job {
    sms: OutboundSms,
    reply: oneshot::Sender<Result<Submitted, SendError>>,
}

/// A part the modem sent, waiting for its status report. TP-MR wraps at 256, so a report is
/// matched by reference and recipient, newest first.
#[derive(Debug, Clone)]
struct SentPart {
    id: String,
    recipient: String,
}

/// What the device and its task share.
struct Shared {
    name: String,
    cfg: ModemConfig,
    state: AtomicU8,
    last_error: StdMutex<Option<String>>,
    signal_dbm: AtomicI64,
    registered: AtomicI64,
    storage_used: AtomicI64,
    storage_total: AtomicI64,
    /// The network's name, as `AT+COPS?` gives it.
    operator: StdMutex<Option<String>>,
    /// The SIM's own number: configured, or from `AT+CNUM`.
    number: StdMutex<String>,
    sent: AtomicU64,
    received: AtomicU64,
    receipts: AtomicU64,
    reopened: AtomicU64,
    /// Sent parts by message reference.
    parts: StdMutex<HashMap<u8, VecDeque<SentPart>>>,
    /// Set when the SIM refused the PIN: it is not tried again (three wrong PINs block the
    /// SIM) until the server restarts with another.
    pin_refused: AtomicBool,
    closing: AtomicBool,
    close: Notify,
}

impl Shared {
    fn set_state(&self, st: DeviceState) {
        self.state.store(st as u8, Ordering::Relaxed);
    }

    fn down(&self, why: &str) {
        self.set_state(DeviceState::Down);
        tracing::warn!(device = %self.name, "modem down: {why}");
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(why.to_string());
        }
    }

    fn remember(&self, mr: u8, part: SentPart) {
        if let Ok(mut m) = self.parts.lock() {
            let q = m.entry(mr).or_default();
            q.push_front(part);
            q.truncate(SENT_PER_REFERENCE);
        }
    }

    /// The part a status report is about: the newest sent with that reference to that
    /// recipient (digits compared, so `+` and national forms match).
    fn match_report(&self, mr: u8, recipient: &str) -> Option<SentPart> {
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        let want = digits(recipient);
        let mut m = self.parts.lock().ok()?;
        let q = m.get_mut(&mr)?;
        let i = q.iter().position(|p| {
            let have = digits(&p.recipient);
            want.is_empty() || have.ends_with(&want) || want.ends_with(&have)
        })?;
        q.remove(i)
    }
}

/// A GSM modem on a serial port.
pub struct Modem {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Job>,
    rx: StdMutex<Option<mpsc::Receiver<Job>>>,
    started: AtomicBool,
    stopped: Arc<Notify>,
}

impl Modem {
    /// A modem device with these settings (the port is opened by [`Device::start`]).
    pub fn new(name: &str, cfg: ModemConfig) -> Modem {
        let (tx, rx) = mpsc::channel(QUEUE);
        let number = cfg.number.clone().unwrap_or_default();
        Modem {
            shared: Arc::new(Shared {
                name: name.to_string(),
                cfg,
                state: AtomicU8::new(DeviceState::Connecting as u8),
                last_error: StdMutex::new(None),
                signal_dbm: AtomicI64::new(i64::MIN),
                registered: AtomicI64::new(0),
                storage_used: AtomicI64::new(-1),
                storage_total: AtomicI64::new(-1),
                operator: StdMutex::new(None),
                number: StdMutex::new(number),
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                receipts: AtomicU64::new(0),
                reopened: AtomicU64::new(0),
                parts: StdMutex::new(HashMap::new()),
                pin_refused: AtomicBool::new(false),
                closing: AtomicBool::new(false),
                close: Notify::new(),
            }),
            tx,
            rx: StdMutex::new(Some(rx)),
            started: AtomicBool::new(false),
            stopped: Arc::new(Notify::new()),
        }
    }
}

impl Device for Modem {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> &'static str {
        "modem"
    }

    fn start(&self, events: mpsc::Sender<DeviceEvent>) {
        let Some(rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        self.started.store(true, Ordering::SeqCst);
        let (shared, stopped) = (self.shared.clone(), self.stopped.clone());
        tokio::spawn(async move {
            run(shared, rx, events).await;
            stopped.notify_one();
        });
    }

    fn send(&self, sms: OutboundSms) -> BoxFuture<'_, Result<Submitted, SendError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let gone = || SendError::Transient {
                code: None,
                reason: format!("modem {} is stopping", self.shared.name),
            };
            self.tx.send(Job { sms, reply }).await.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        })
    }

    fn state(&self) -> DeviceState {
        match self.shared.state.load(Ordering::Relaxed) {
            s if s == DeviceState::Up as u8 => DeviceState::Up,
            s if s == DeviceState::Connecting as u8 => DeviceState::Connecting,
            _ => DeviceState::Down,
        }
    }

    fn can_send(&self) -> bool {
        self.shared.cfg.mode != ModemMode::Receive
    }

    fn recover(&self, part_ids: Vec<String>) {
        // Part ids are `<mr>.<recipient digits>.<ms>`: enough to match the reports of parts
        // sent before a restart.
        for id in part_ids {
            let mut it = id.split('.');
            if let (Some(mr), Some(to)) = (it.next().and_then(|m| m.parse().ok()), it.next()) {
                self.shared.remember(
                    mr,
                    SentPart {
                        recipient: to.to_string(),
                        id: id.clone(),
                    },
                );
            }
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if !self.started.load(Ordering::SeqCst) {
                return;
            }
            let stopped = self.stopped.notified();
            self.shared.closing.store(true, Ordering::SeqCst);
            self.shared.close.notify_waiters();
            let _ = tokio::time::timeout(Duration::from_secs(5), stopped).await;
        })
    }

    fn details(&self) -> Vec<(&'static str, i64)> {
        let s = &self.shared;
        let count = |a: &AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        let mut out = vec![
            ("registered", s.registered.load(Ordering::Relaxed)),
            ("sent_parts_total", count(&s.sent)),
            ("received_total", count(&s.received)),
            ("receipts_total", count(&s.receipts)),
            ("reopened_total", count(&s.reopened)),
        ];
        let dbm = s.signal_dbm.load(Ordering::Relaxed);
        if dbm != i64::MIN {
            out.push(("signal_dbm", dbm));
        }
        let (used, total) = (
            s.storage_used.load(Ordering::Relaxed),
            s.storage_total.load(Ordering::Relaxed),
        );
        if total >= 0 {
            out.push(("storage_used", used));
            out.push(("storage_total", total));
        }
        out
    }

    fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn info(&self) -> Vec<(&'static str, String)> {
        let operator = self.shared.operator.lock().ok().and_then(|o| o.clone());
        let number = self.shared.number.lock().ok().map(|n| n.clone());
        operator
            .map(|o| ("operator", o))
            .into_iter()
            .chain(number.filter(|n| !n.is_empty()).map(|n| ("number", n)))
            .collect()
    }

    fn window(&self) -> usize {
        QUEUE
    }
}

/// Why a session with the modem ended.
#[derive(Debug)]
enum Fail {
    /// The port failed or closed.
    Port(String),
    /// The modem did not answer in time.
    Silent(String),
    /// It refused something it must do.
    Refused(String),
    /// It restarted on its own: set it up again.
    Restarted,
    /// The device is stopping.
    Closing,
}

impl Fail {
    fn reason(&self) -> String {
        match self {
            Fail::Port(m) | Fail::Silent(m) | Fail::Refused(m) => m.clone(),
            Fail::Restarted => "the modem restarted".into(),
            Fail::Closing => "stopping".into(),
        }
    }
}

/// The modem's task: open, set up, serve; on failure, close and start again with backoff.
async fn run(sh: Arc<Shared>, mut rx: mpsc::Receiver<Job>, events: mpsc::Sender<DeviceEvent>) {
    let mut backoff = sh.cfg.reconnect_min.0;
    let mut failures = 0u32;
    while !sh.closing.load(Ordering::SeqCst) {
        sh.set_state(DeviceState::Connecting);
        let result = match open(&sh.cfg) {
            Ok(port) => {
                let mut s = Session::new(port, &sh, &events);
                let r = s.set_up().await;
                match r {
                    Ok(()) => {
                        backoff = sh.cfg.reconnect_min.0;
                        failures = 0;
                        s.serve(&mut rx).await
                    }
                    Err(e) => {
                        if matches!(e, Fail::Silent(_)) && failures >= 1 {
                            s.reset().await;
                        }
                        Err(e)
                    }
                }
            }
            Err(e) => Err(Fail::Port(format!("cannot open {}: {e}", sh.cfg.serial))),
        };
        match result {
            Ok(()) | Err(Fail::Closing) => break,
            Err(Fail::Restarted) => {
                tracing::info!(device = %sh.name, "the modem restarted; setting it up again");
                sh.reopened.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => {
                failures += 1;
                sh.down(&e.reason());
                sh.reopened.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Wait before trying again; what is handed over meanwhile is refused at once, so
        // it can go another way.
        let until = Instant::now() + jitter(backoff);
        backoff = (backoff * 2).min(sh.cfg.reconnect_max.0);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                _ = sh.close.notified() => return,
                job = rx.recv() => match job {
                    Some(j) => refuse(&sh, j),
                    None => return,
                },
            }
        }
    }
    sh.set_state(DeviceState::Down);
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + fastrand::f64() * 0.4)
}

fn refuse(sh: &Shared, job: Job) {
    let why = sh
        .last_error
        .lock()
        .ok()
        .and_then(|e| e.clone())
        .unwrap_or_else(|| "not ready".into());
    let _ = job.reply.send(Err(SendError::Transient {
        code: None,
        reason: format!("modem {} is not ready: {why}", sh.name),
    }));
}

fn open(cfg: &ModemConfig) -> Result<SerialStream, tokio_serial::Error> {
    let builder = tokio_serial::new(&cfg.serial, cfg.baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None);
    SerialStream::open(&builder)
}

/// Where a message is kept on the modem: storage and index.
type Slot = (String, u32);

/// Something the modem said on its own, waiting to be handled.
#[derive(Debug)]
enum Pending {
    Urc(Urc),
    /// A text or status report delivered directly (`+CMT`, `+CDS`): its PDU.
    Direct(String),
}

/// The store's answer for a text or receipt handed to it, and what to do then: delete its
/// slots (none: it was delivered directly, acknowledge it), or on failure leave them for the
/// next sweep.
struct Committed {
    slots: Vec<Slot>,
    /// Delivered directly (`+CMT`, `+CDS`): acknowledged with `AT+CNMA` once committed.
    direct: bool,
    ok: bool,
    /// For a receipt: the part it matched, remembered again if the store failed.
    part: Option<(u8, SentPart)>,
}

/// One open port and what is known of the modem behind it.
struct Session<'a> {
    port: SerialStream,
    lines: LineReader,
    sh: &'a Shared,
    events: &'a mpsc::Sender<DeviceEvent>,
    pending: VecDeque<Pending>,
    /// The next line is the PDU of a `+CMT`/`+CDS`.
    pdu_next: bool,
    /// The storage that `AT+CMGR`, `AT+CMGL` and `AT+CMGD` work on now.
    mem: String,
    /// The storage texts are kept in: the configured one, or the modem's own if it refused
    /// that.
    storage: String,
    reassembly: Reassembler,
    /// Where the parts of each incomplete long text are kept on the modem.
    held: HashMap<PartKey, Vec<Slot>>,
    /// Every slot held for an incomplete text: the sweep leaves them alone.
    holding: HashSet<Slot>,
    timeout: Duration,
    /// Status reports were found in "SR", apart from texts: sweeps list it too.
    reports_apart: bool,
    /// The `+CNMI` setting the modem took: checked on every poll, since a modem resets it
    /// when a direct delivery goes unacknowledged (TS 27.005 §3.4.4).
    cnmi: Option<&'static str>,
    /// Answers from the store, as they come: the modem goes on meanwhile.
    done_tx: mpsc::UnboundedSender<Committed>,
    done_rx: mpsc::UnboundedReceiver<Committed>,
}

impl<'a> Session<'a> {
    fn new(port: SerialStream, sh: &'a Shared, events: &'a mpsc::Sender<DeviceEvent>) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Session {
            reports_apart: false,
            cnmi: None,
            done_tx,
            done_rx,
            port,
            lines: LineReader::default(),
            sh,
            events,
            pending: VecDeque::new(),
            pdu_next: false,
            mem: sh.cfg.storage.clone(),
            storage: sh.cfg.storage.clone(),
            reassembly: Reassembler::new(sh.cfg.reassembly_timeout.0, 1000)
                .with_byte_budget(1 << 20),
            held: HashMap::new(),
            holding: HashSet::new(),
            timeout: sh.cfg.command_timeout.0,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Fail> {
        let w = async {
            self.port.write_all(bytes).await?;
            self.port.flush().await
        };
        match tokio::time::timeout(self.timeout, w).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Fail::Port(format!("writing to the port failed: {e}"))),
            Err(_) => Err(Fail::Silent("the port takes no more bytes".into())),
        }
    }

    /// The next thing the modem says, by `deadline`.
    async fn said(&mut self, deadline: Instant, what: &str) -> Result<Said, Fail> {
        let mut buf = [0u8; 512];
        loop {
            if let Some(s) = self.lines.next_said() {
                return Ok(s);
            }
            let read = tokio::select! {
                r = tokio::time::timeout_at(deadline, self.port.read(&mut buf)) => r,
                _ = self.sh.close.notified() => return Err(Fail::Closing),
            };
            match read {
                Ok(Ok(0)) => return Err(Fail::Port("the port closed".into())),
                Ok(Ok(n)) => self.lines.push(&buf[..n]),
                Ok(Err(e)) => return Err(Fail::Port(format!("reading the port failed: {e}"))),
                Err(_) => {
                    return Err(Fail::Silent(format!(
                        "the modem did not answer {what} within {:?}",
                        self.timeout
                    )))
                }
            }
        }
    }

    /// Keeps an unsolicited line for later; `true` when it was one.
    fn keep_unsolicited(&mut self, line: &str, kind: &Kind) -> bool {
        // A modem that floods indications faster than they can be read does not grow this
        // queue without end: past the cap they are dropped (what they announced is stored,
        // and the sweep finds it; a direct delivery not acknowledged is delivered again),
        // but a restart is never missed.
        let full = self.pending.len() >= MAX_PENDING;
        if std::mem::take(&mut self.pdu_next) {
            if !full {
                self.pending.push_back(Pending::Direct(line.to_string()));
            }
            return true;
        }
        match kind {
            Kind::Urc(Urc::NeedsPdu { .. }) => self.pdu_next = true,
            Kind::Urc(Urc::Other) => {}
            Kind::Urc(u @ Urc::Restarted) => self.pending.push_back(Pending::Urc(u.clone())),
            Kind::Urc(u) if !full => self.pending.push_back(Pending::Urc(u.clone())),
            Kind::Urc(_) => {}
            _ => return false,
        }
        true
    }

    /// Runs one command: its answer lines, or why it failed. With `prompt`, stops at the
    /// `> ` prompt (answer empty) instead of a final code.
    async fn exchange(
        &mut self,
        cmd: &str,
        timeout: Duration,
        prompt: bool,
    ) -> Result<Result<Vec<String>, Final>, Fail> {
        // The PIN is a secret: never in a log, whatever the level.
        let shown = if cmd.to_ascii_uppercase().starts_with("AT+CPIN=") {
            "AT+CPIN=…"
        } else {
            cmd
        };
        tracing::trace!(device = %self.sh.name, "> {shown}");
        self.write(format!("{cmd}\r").as_bytes()).await?;
        self.answer(cmd, timeout, prompt).await
    }

    async fn answer(
        &mut self,
        cmd: &str,
        timeout: Duration,
        prompt: bool,
    ) -> Result<Result<Vec<String>, Final>, Fail> {
        let deadline = Instant::now() + timeout;
        let mut answer = Vec::new();
        loop {
            match self.said(deadline, cmd).await? {
                Said::Prompt if prompt => return Ok(Ok(answer)),
                Said::Prompt | Said::Overlong => {}
                Said::Line(l) => {
                    tracing::trace!(device = %self.sh.name, "< {l}");
                    let kind = at::classify(&l, Some(cmd));
                    if self.keep_unsolicited(&l, &kind) {
                        continue;
                    }
                    match kind {
                        Kind::Final(Final::Ok) => return Ok(Ok(answer)),
                        Kind::Final(f) => return Ok(Err(f)),
                        Kind::Answer => answer.push(l),
                        Kind::Echo | Kind::Urc(_) => {}
                    }
                }
            }
        }
    }

    /// A command that must succeed.
    async fn must(&mut self, cmd: &str) -> Result<Vec<String>, Fail> {
        match self.exchange(cmd, self.timeout, false).await? {
            Ok(a) => Ok(a),
            Err(f) => Err(Fail::Refused(format!("the modem refused {cmd}: {f}"))),
        }
    }

    /// A command whose failure does not matter.
    async fn may(&mut self, cmd: &str) -> Result<Option<Vec<String>>, Fail> {
        Ok(self.exchange(cmd, self.timeout, false).await?.ok())
    }

    /// Sends the reset command, if there is one, and gives the modem time to restart.
    async fn reset(&mut self) {
        if let Some(cmd) = self.sh.cfg.reset_command.clone() {
            tracing::warn!(device = %self.sh.name, "resetting the modem with {cmd}");
            let _ = self.write(format!("\x1b{cmd}\r").as_bytes()).await;
            tokio::time::sleep(self.timeout).await;
        }
    }

    /// Sets the modem up: echo off, errors as codes, the SIM unlocked, PDU mode, storage,
    /// indications, the configured extra commands; then polls and sweeps once.
    async fn set_up(&mut self) -> Result<(), Fail> {
        // ESC ends a prompt a previous session left open; then the modem must answer AT.
        self.write(b"\x1b").await?;
        let mut alive = false;
        for _ in 0..3 {
            match self
                .exchange("AT", self.timeout.min(Duration::from_secs(2)), false)
                .await
            {
                Ok(Ok(_)) => {
                    alive = true;
                    break;
                }
                Ok(Err(_)) | Err(Fail::Silent(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if !alive {
            return Err(Fail::Silent("the modem does not answer AT".into()));
        }
        self.may("ATE0").await?;
        self.may("AT+CMEE=1").await?;
        self.unlock().await?;
        // A modem that was just unlocked may need a moment before SMS commands work.
        let mut pdu_mode = Err(Fail::Refused(String::new()));
        for _ in 0..5 {
            pdu_mode = self.must("AT+CMGF=0").await;
            if pdu_mode.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        pdu_mode?;
        let mem = self.sh.cfg.storage.clone();
        if self
            .may(&format!("AT+CPMS=\"{mem}\",\"{mem}\",\"{mem}\""))
            .await?
            .is_some()
        {
            self.storage = mem;
        } else {
            // Its own, then: `+CPMS: <mem1>,…` names what reads and deletes work on.
            let own = self
                .may("AT+CPMS?")
                .await?
                .and_then(|a| a.first().and_then(|l| at::fields(l).first().cloned()))
                .filter(|m| (1..=4).contains(&m.len()))
                .unwrap_or_else(|| "SM".into());
            tracing::warn!(device = %self.sh.name, "the modem refused storage {mem}; using its own, {own}");
            self.storage = own;
        }
        self.mem = self.storage.clone();
        // Texts stored and announced; status reports stored and announced, else delivered.
        let mut indications = false;
        for cnmi in [
            "AT+CNMI=2,1,0,2,0",
            "AT+CNMI=2,1,0,1,0",
            "AT+CNMI=1,1,0,2,0",
            "AT+CNMI=1,1,0,0,0",
        ] {
            if self.may(cnmi).await?.is_some() {
                indications = true;
                self.cnmi = Some(cnmi);
                break;
            }
        }
        if !indications {
            tracing::warn!(device = %self.sh.name, "the modem takes no +CNMI: texts are found by the sweep alone");
        }
        for cmd in self.sh.cfg.init.clone() {
            self.must(&cmd).await?;
        }
        if self.sh.cfg.number.is_none() {
            // `+CNUM: [<alpha>],<number>,<type>` (TS 27.007 §7.1); many SIMs store none.
            if let Some(a) = self.may("AT+CNUM").await? {
                let found = a.iter().find_map(|l| {
                    let n = at::fields(l).get(1).cloned().unwrap_or_default();
                    let digits = n.strip_prefix('+').unwrap_or(&n);
                    (!digits.is_empty()
                        && digits.len() <= 15
                        && digits.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| format!("+{digits}"))
                });
                if let (Some(n), Ok(mut own)) = (found, self.sh.number.lock()) {
                    *own = n;
                }
            }
        }
        self.poll().await?;
        self.sweep().await?;
        Ok(())
    }

    async fn unlock(&mut self) -> Result<(), Fail> {
        let answer = match self.exchange("AT+CPIN?", self.timeout, false).await? {
            Ok(a) => a.join(" "),
            Err(f) => {
                return Err(Fail::Refused(format!(
                    "the SIM is not readable: {f} (is one inserted?)"
                )))
            }
        };
        let upper = answer.to_ascii_uppercase();
        if upper.contains("READY") {
            return Ok(());
        }
        if upper.contains("PUK") {
            return Err(Fail::Refused(
                "the SIM is blocked and asks for its PUK: unblock it in a phone".into(),
            ));
        }
        if !upper.contains("SIM PIN") {
            return Err(Fail::Refused(format!("the SIM is not ready: {answer}")));
        }
        if self.sh.pin_refused.load(Ordering::SeqCst) {
            return Err(Fail::Refused("the SIM refused the configured PIN; it is not tried again (three wrong PINs block the SIM): set the right pin and restart".into()));
        }
        if self.sh.cfg.pin.is_empty() {
            return Err(Fail::Refused(
                "the SIM asks for a PIN: set pin (or TEXTGATE_DEVICE_<NAME>_PIN)".into(),
            ));
        }
        let cmd = format!("AT+CPIN=\"{}\"", self.sh.cfg.pin);
        // The PIN is never logged: the exchange logs commands only at trace level, and the
        // error below does not repeat it.
        match self.exchange(&cmd, self.timeout, false).await? {
            Ok(_) => Ok(()),
            Err(f) => {
                self.sh.pin_refused.store(true, Ordering::SeqCst);
                Err(Fail::Refused(format!("the SIM refused the PIN ({f}); it is not tried again: set the right pin and restart")))
            }
        }
    }

    /// Registration, signal and storage, into the device's state.
    async fn poll(&mut self) -> Result<(), Fail> {
        let mut registered = false;
        let mut status = String::from("unknown");
        for cmd in ["AT+CREG?", "AT+CEREG?"] {
            if let Some(a) = self.may(cmd).await? {
                for l in &a {
                    let f = at::fields(l);
                    // `+CREG: <n>,<stat>[,…]` (TS 27.007 §7.2): 1 home, 5 roaming.
                    if let Some(stat) = f.get(1).and_then(|s| s.parse::<u32>().ok()) {
                        status = match stat {
                            0 => "not registered, not searching".into(),
                            2 => "searching for a network".into(),
                            3 => "registration denied".into(),
                            4 => "unknown".into(),
                            1 | 5 => "registered".into(),
                            n => format!("status {n}"),
                        };
                        registered |= stat == 1 || stat == 5;
                    }
                }
            }
            if registered {
                break;
            }
        }
        self.sh
            .registered
            .store(i64::from(registered), Ordering::Relaxed);
        if let Some(a) = self.may("AT+CSQ").await? {
            if let Some(rssi) = a
                .first()
                .and_then(|l| at::fields(l).first().and_then(|r| r.parse().ok()))
            {
                self.sh
                    .signal_dbm
                    .store(at::rssi_dbm(rssi).unwrap_or(i64::MIN), Ordering::Relaxed);
            }
        }
        if let Some(set) = self.cnmi {
            if let Some(a) = self.may("AT+CNMI?").await? {
                let now: Vec<String> = a.first().map(|l| at::fields(l)).unwrap_or_default();
                let want: Vec<&str> = set.trim_start_matches("AT+CNMI=").split(',').collect();
                if now.len() >= 4 && now.iter().zip(&want).any(|(n, w)| n != w) {
                    tracing::warn!(device = %self.sh.name, "the modem's +CNMI changed to {}; setting it again", now.join(","));
                    self.may(set).await?;
                }
            }
        }
        if let Some(a) = self.may("AT+COPS?").await? {
            // `+COPS: <mode>[,<format>,<oper>[,<AcT>]]` (TS 27.007 §7.3); the name is the
            // modem's word, shown to administrators: printable and short.
            let name = a
                .first()
                .and_then(|l| at::fields(l).get(2).cloned())
                .map(|n| textgate_core::address::without_controls(&n, 32));
            if let Ok(mut o) = self.sh.operator.lock() {
                *o = name.filter(|n| !n.is_empty());
            }
        }
        if let Some(a) = self.may("AT+CPMS?").await? {
            // `+CPMS: <mem1>,<used1>,<total1>,…`
            if let Some(f) = a.first().map(|l| at::fields(l)) {
                if let (Some(u), Some(t)) = (
                    f.get(1).and_then(|v| v.parse::<i64>().ok()),
                    f.get(2).and_then(|v| v.parse::<i64>().ok()),
                ) {
                    self.sh.storage_used.store(u, Ordering::Relaxed);
                    self.sh.storage_total.store(t, Ordering::Relaxed);
                }
            }
        }
        if registered {
            self.sh.set_state(DeviceState::Up);
            if let Ok(mut e) = self.sh.last_error.lock() {
                *e = None;
            }
        } else {
            self.sh.down(&format!(
                "the modem is not registered on a network ({status})"
            ));
        }
        Ok(())
    }

    /// Reads every text and report stored on the modem (`AT+CMGL=4`), except the parts of
    /// long texts already held.
    async fn sweep(&mut self) -> Result<(), Fail> {
        let storage = self.storage.clone();
        self.sweep_mem(&storage).await?;
        // Status reports kept apart (Quectel stores them in "SR", whatever it announces);
        // a modem without that storage refuses it, and there is nothing more to read.
        if self.reports_apart && self.use_mem("SR").await? {
            self.sweep_mem("SR").await?;
        }
        self.use_mem(&storage).await?;
        Ok(())
    }

    /// Lists and handles what one storage holds.
    async fn sweep_mem(&mut self, mem: &str) -> Result<(), Fail> {
        if !self.use_mem(mem).await? {
            return Ok(());
        }
        let answer = match self.exchange("AT+CMGL=4", self.timeout * 2, false).await? {
            Ok(a) => a,
            Err(_) => return Ok(()),
        };
        let mut found = Vec::new();
        let mut header: Option<u32> = None;
        for l in answer {
            if l.to_ascii_uppercase().starts_with("+CMGL:") {
                header = at::fields(&l).first().and_then(|i| i.parse().ok());
            } else if let Some(index) = header.take() {
                found.push((index, l));
            }
        }
        for (index, pdu) in found {
            let slot = (self.mem.clone(), index);
            if !self.holding.contains(&slot) {
                self.handle(Some(slot), &pdu).await?;
            }
        }
        Ok(())
    }

    /// Makes `mem` the storage that reads and deletes work on; `false` when the modem
    /// refuses it.
    async fn use_mem(&mut self, mem: &str) -> Result<bool, Fail> {
        if self.mem != mem {
            if self.may(&format!("AT+CPMS=\"{mem}\"")).await?.is_none() {
                return Ok(false);
            }
            self.mem = mem.to_string();
        }
        Ok(true)
    }

    /// Reads what a `+CMTI`/`+CDSI` announced. A report announced in one storage and kept
    /// in "SR" (as Quectel modems do) is looked for there too.
    async fn read_slot(&mut self, slot: Slot, report: bool) -> Result<(), Fail> {
        let mut places = vec![slot];
        if report && places[0].0 != "SR" {
            places.push(("SR".to_string(), places[0].1));
        }
        for place in places {
            if self.holding.contains(&place) {
                return Ok(());
            }
            if !self.use_mem(&place.0).await? {
                continue;
            }
            let answer = match self
                .exchange(&format!("AT+CMGR={}", place.1), self.timeout, false)
                .await?
            {
                Ok(a) => a,
                // Not here (321: invalid index), or unreadable: the next place, then the
                // sweep.
                Err(_) => continue,
            };
            if let Some(pdu) = answer.get(1).cloned() {
                if place.0 == "SR" {
                    self.reports_apart = true;
                }
                self.handle(Some(place), &pdu).await?;
                break;
            }
        }
        let storage = self.storage.clone();
        self.use_mem(&storage).await?;
        Ok(())
    }

    async fn delete(&mut self, slot: &Slot) -> Result<(), Fail> {
        if !self.use_mem(&slot.0).await? {
            return Ok(());
        }
        self.may(&format!("AT+CMGD={}", slot.1)).await?;
        Ok(())
    }

    /// Hands an event to the store; its slots are held (the sweep leaves them) until the
    /// store answers, and then deleted ([`Session::finish`]).
    async fn commit(
        &mut self,
        slots: Vec<Slot>,
        direct: bool,
        part: Option<(u8, SentPart)>,
        make: impl FnOnce(Ack) -> DeviceEvent,
    ) {
        for s in &slots {
            self.holding.insert(s.clone());
        }
        let tx = self.done_tx.clone();
        let held = slots.clone();
        let ack = Ack::new(move |ok| {
            let _ = tx.send(Committed {
                slots: held,
                direct,
                ok,
                part,
            });
        });
        // A closed channel drops the event, whose ack then answers false.
        let _ = self.events.send(make(ack)).await;
    }

    /// What to do once the store has answered.
    async fn finish(&mut self, c: Committed) -> Result<(), Fail> {
        for s in &c.slots {
            self.holding.remove(s);
        }
        if !c.ok {
            tracing::warn!(device = %self.sh.name, "the store did not commit a text or receipt; it stays on the modem for the next sweep");
            if let Some((mr, part)) = c.part {
                self.sh.remember(mr, part);
            }
            return Ok(());
        }
        match c.part {
            Some(_) => self.sh.receipts.fetch_add(1, Ordering::Relaxed),
            None => self.sh.received.fetch_add(1, Ordering::Relaxed),
        };
        if c.direct {
            self.may("AT+CNMA").await?;
        }
        for s in &c.slots {
            self.delete(s).await?;
        }
        Ok(())
    }

    /// A PDU read from `slot` (or delivered directly): stored, then removed from the modem.
    async fn handle(&mut self, slot: Option<Slot>, hex: &str) -> Result<(), Fail> {
        let pdu = match tpdu::decode(hex) {
            Ok(p) => p,
            Err(e) => {
                // Kept, not lost: stored as it came, so someone can look at it.
                tracing::warn!(device = %self.sh.name, error = %e, "an undecodable PDU from the modem; stored as received");
                let text = self.inbound_text(
                    "unknown",
                    &format!("undecodable PDU ({e}): {hex}"),
                    "binary",
                    1,
                    false,
                    None,
                );
                let direct = slot.is_none();
                return self
                    .store_text(text, slot.into_iter().collect(), direct)
                    .await;
            }
        };
        match pdu.tpdu {
            Tpdu::Deliver(d) => {
                if self.sh.cfg.mode == ModemMode::Send {
                    return Ok(());
                }
                let from = d.originator.as_str().to_string();
                let body = d.user_data.text().into_owned();
                let encoding = match d.data_coding.alphabet {
                    Alphabet::Gsm7 => "gsm7",
                    Alphabet::Ucs2 => "ucs2",
                    Alphabet::Data8 => "binary",
                };
                let key = format!(
                    "modem:{}:{}:{}",
                    from,
                    textgate_core::auth::hex(&d.service_centre_time.octets),
                    fnv(body.as_bytes())
                );
                match d.user_data.concat() {
                    Some(c) if c.total > 1 => {
                        let frag = Fragment {
                            key: PartKey {
                                from: from.clone(),
                                to: self.sh.name.clone(),
                                reference: c.reference.value(),
                                total: c.total,
                            },
                            seq: c.sequence,
                            data_coding: d.data_coding.octet,
                            payload: body.into_bytes(),
                        };
                        let part_key = frag.key.clone();
                        let out = self.reassembly.push(frag, std::time::Instant::now());
                        if let Some(s) = &slot {
                            if out.pushed != Pushed::Duplicate {
                                self.held.entry(part_key).or_default().push(s.clone());
                                self.holding.insert(s.clone());
                            }
                        }
                        match &slot {
                            Some(s) if out.pushed == Pushed::Duplicate => self.delete(s).await?,
                            Some(_) => {}
                            // A part delivered directly is acknowledged as it comes: the
                            // network sends the next part only then (TS 27.005 §3.4.4). It is
                            // held in memory only until its text is complete; textgate asks
                            // for stored delivery (+CMTI) so that this happens only when a
                            // modem or an `init` command chose direct delivery.
                            None => {
                                self.may("AT+CNMA").await?;
                            }
                        }
                        for a in out.evicted {
                            self.store_assembled(a).await?;
                        }
                        if let Pushed::Complete(a) = out.pushed {
                            self.store_assembled(a).await?;
                        }
                    }
                    _ => {
                        let text = self.inbound_text(&from, &body, encoding, 1, false, Some(key));
                        let direct = slot.is_none();
                        self.store_text(text, slot.into_iter().collect(), direct)
                            .await?;
                    }
                }
            }
            Tpdu::StatusReport(r) => {
                let recipient = r.recipient.as_str().to_string();
                let class = r.status.class();
                if class == StatusClass::StillTrying {
                    // Not an outcome: removed, the final report follows.
                    return self.remove(slot).await;
                }
                let Some(part) = self.sh.match_report(r.message_reference, &recipient) else {
                    tracing::info!(device = %self.sh.name, mr = r.message_reference, "a status report for no part this modem sent; dropped");
                    return self.remove(slot).await;
                };
                let delivered = class == StatusClass::Delivered;
                let at = r.discharge_time.utc_ms.unwrap_or_else(now_ms);
                let device = self.sh.name.clone();
                let code = (!delivered).then(|| format!("{:02X}", r.status.0));
                let id = part.id.clone();
                let direct = slot.is_none();
                self.commit(
                    slot.into_iter().collect(),
                    direct,
                    Some((r.message_reference, part)),
                    |ack| DeviceEvent::Receipt {
                        device,
                        device_msg_id: id,
                        delivered,
                        code,
                        at,
                        ack: Some(ack),
                    },
                )
                .await;
            }
            // Outgoing texts someone stored on the SIM are theirs: left alone.
            Tpdu::Submit(_) => {}
        }
        Ok(())
    }

    /// Removes what was handled: deleted from its slot, or acknowledged when it was
    /// delivered directly.
    async fn remove(&mut self, slot: Option<Slot>) -> Result<(), Fail> {
        match slot {
            Some(s) => self.delete(&s).await,
            None => {
                self.may("AT+CNMA").await?;
                Ok(())
            }
        }
    }

    fn inbound_text(
        &self,
        from: &str,
        body: &str,
        encoding: &str,
        parts: i64,
        partial: bool,
        key: Option<String>,
    ) -> InboundText {
        InboundText {
            device: self.sh.name.clone(),
            from: from.to_string(),
            to: self.sh.number.lock().map(|n| n.clone()).unwrap_or_default(),
            body: body.to_string(),
            encoding: encoding.to_string(),
            parts,
            partial,
            dedup_key: key,
            same_within: None,
            received_at: now_ms(),
        }
    }

    async fn store_assembled(&mut self, a: Assembled) -> Result<(), Fail> {
        let slots = self.held.remove(&a.key).unwrap_or_default();
        for s in &slots {
            self.holding.remove(s);
        }
        let encoding = match textgate_core::encoding::tpdu::DataCoding::from_octet(a.data_coding)
            .map(|d| d.alphabet)
        {
            Ok(Alphabet::Ucs2) => "ucs2",
            Ok(Alphabet::Data8) => "binary",
            _ => "gsm7",
        };
        let body = String::from_utf8_lossy(&a.payload).into_owned();
        let key = format!(
            "modem:{}:{}:{}:{}",
            a.key.from,
            a.key.reference,
            a.key.total,
            fnv(&a.payload)
        );
        let text = self.inbound_text(
            &a.key.from,
            &body,
            encoding,
            i64::from(a.parts),
            !a.is_complete(),
            Some(key),
        );
        // Its parts were acknowledged as they came, if they came directly.
        self.store_text(text, slots, false).await
    }

    /// Stores a text, then deletes its slots (or, delivered directly, acknowledges it).
    async fn store_text(
        &mut self,
        text: InboundText,
        slots: Vec<Slot>,
        direct: bool,
    ) -> Result<(), Fail> {
        self.commit(slots, direct, None, |ack| DeviceEvent::Inbound {
            text,
            ack: Some(ack),
        })
        .await;
        Ok(())
    }

    /// Handles what the modem said on its own.
    async fn handle_pending(&mut self) -> Result<(), Fail> {
        while let Some(p) = self.pending.pop_front() {
            match p {
                Pending::Urc(Urc::Stored { mem, index }) => {
                    self.read_slot((mem, index), false).await?;
                }
                Pending::Urc(Urc::ReportStored { mem, index }) => {
                    self.read_slot((mem, index), true).await?;
                }
                Pending::Urc(Urc::Restarted) => return Err(Fail::Restarted),
                Pending::Urc(Urc::StorageFull) => {
                    tracing::warn!(device = %self.sh.name, "the modem's storage is full; sweeping it now");
                    self.sweep().await?;
                }
                Pending::Urc(_) => {}
                Pending::Direct(pdu) => self.handle(None, &pdu).await?,
            }
        }
        Ok(())
    }

    /// Serves until the port fails, the modem stops answering or restarts, or the device stops.
    async fn serve(&mut self, rx: &mut mpsc::Receiver<Job>) -> Result<(), Fail> {
        let mut next_poll = Instant::now() + self.sh.cfg.poll_interval.0;
        let mut buf = [0u8; 512];
        loop {
            self.handle_pending().await?;
            let expiry = self
                .reassembly
                .next_deadline()
                .map(Instant::from_std)
                .unwrap_or(next_poll);
            tokio::select! {
                _ = self.sh.close.notified() => return Err(Fail::Closing),
                Some(c) = self.done_rx.recv() => self.finish(c).await?,
                job = rx.recv() => match job {
                    Some(j) => {
                        if self.sh.registered.load(Ordering::Relaxed) == 0 {
                            refuse(self.sh, j);
                        } else {
                            let r = self.send(&j.sms).await;
                            let fatal = match &r {
                                Err(f) => Some(f.reason()),
                                Ok(_) => None,
                            };
                            let answer = r.unwrap_or_else(|f| Err(SendError::Transient { code: None, reason: f.reason() }));
                            let _ = j.reply.send(answer);
                            if fatal.is_some() {
                                // The exchange broke down: the modem is set up again.
                                return Err(Fail::Silent(fatal.unwrap_or_default()));
                            }
                        }
                    }
                    None => return Err(Fail::Closing),
                },
                r = self.port.read(&mut buf) => match r {
                    Ok(0) => return Err(Fail::Port("the port closed".into())),
                    Ok(n) => {
                        self.lines.push(&buf[..n]);
                        while let Some(s) = self.lines.next_said() {
                            if let Said::Line(l) = s {
                                let kind = at::classify(&l, None);
                                self.keep_unsolicited(&l, &kind);
                            }
                        }
                    }
                    Err(e) => return Err(Fail::Port(format!("reading the port failed: {e}"))),
                },
                _ = tokio::time::sleep_until(next_poll) => {
                    self.poll().await?;
                    if self.sh.cfg.mode != ModemMode::Send {
                        self.sweep().await?;
                    }
                    next_poll = Instant::now() + self.sh.cfg.poll_interval.0;
                }
                _ = tokio::time::sleep_until(expiry), if expiry < next_poll => {
                    for a in self.reassembly.expire(std::time::Instant::now()) {
                        self.store_assembled(a).await?;
                    }
                }
            }
        }
    }

    /// Sends one message, part by part. The outer error ends the session (the modem broke
    /// down); the inner one is the message's.
    async fn send(&mut self, sms: &OutboundSms) -> Result<Result<Submitted, SendError>, Fail> {
        let permanent = |reason: String| SendError::Permanent { code: None, reason };
        let to = match Recipient::parse(&sms.to, None) {
            Ok(r) => r,
            Err(e) => return Ok(Err(permanent(format!("{}: {e}", sms.to)))),
        };
        let body = match Body::new(&sms.body, 255) {
            Ok(b) => b,
            Err(e) => return Ok(Err(permanent(e.to_string()))),
        };
        let options = SubmitOptions {
            smsc: self
                .sh
                .cfg
                .smsc
                .as_deref()
                .and_then(|s| E164::parse(s, None).ok()),
            status_report: self.sh.cfg.status_reports,
            validity: self.sh.cfg.validity.map(|v| v.0),
            ..SubmitOptions::default()
        };
        let reference = (sms.message_id & 0xFF) as u8;
        let pdus = match tpdu::encode_message(&to, &body, reference, &options) {
            Ok(p) => p,
            Err(e) => return Ok(Err(permanent(e.to_string()))),
        };
        let mut ids = Vec::with_capacity(pdus.len());
        for (i, p) in pdus.iter().enumerate() {
            let cmd = format!("AT+CMGS={}", p.tpdu_len);
            match self.exchange(&cmd, self.timeout, true).await? {
                Ok(_) => {}
                Err(f) => return Ok(Err(refusal(&f, i))),
            }
            self.write(format!("{}\x1a", p.hex).as_bytes()).await?;
            let answer = match self.answer(&cmd, self.timeout * 4, false).await? {
                Ok(a) => a,
                Err(f) => return Ok(Err(refusal(&f, i))),
            };
            let Some(mr) = answer
                .iter()
                .find(|l| l.to_ascii_uppercase().starts_with("+CMGS:"))
                .and_then(|l| at::fields(l).first().and_then(|m| m.parse::<u32>().ok()))
            else {
                return Ok(Err(SendError::Transient {
                    code: None,
                    reason: "the modem answered OK without a message reference".into(),
                }));
            };
            let mr = (mr & 0xFF) as u8;
            let digits: String = sms.to.chars().filter(char::is_ascii_digit).collect();
            let id = format!("{mr}.{digits}.{}{}", now_ms(), i);
            self.sh.remember(
                mr,
                SentPart {
                    id: id.clone(),
                    recipient: digits,
                },
            );
            self.sh.sent.fetch_add(1, Ordering::Relaxed);
            ids.push(id);
            self.handle_pending().await?;
        }
        Ok(Ok(Submitted { part_ids: ids }))
    }
}

/// What a refused part means for its message.
fn refusal(f: &Final, part: usize) -> SendError {
    let code = match f {
        Final::Cms(c) | Final::Cme(c) => Some(c.clone()),
        Final::Error(_) | Final::Ok => None,
    };
    let text = f.to_string();
    let note = if part > 0 {
        format!(" (after {part} part(s) were sent; they may arrive twice)")
    } else {
        String::new()
    };
    let reason = format!("the modem refused the text: {text}{note}");
    let verdict = match f {
        Final::Cms(c) => c.parse().map(at::cms_error).unwrap_or(Verdict::Transient),
        _ => Verdict::Transient,
    };
    match verdict {
        Verdict::Permanent => SendError::Permanent { code, reason },
        Verdict::Throttled => SendError::Throttled { code, reason },
        Verdict::Transient => SendError::Transient { code, reason },
    }
}

/// FNV-1a: a short stable digest of a text, for the deduplication key.
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
