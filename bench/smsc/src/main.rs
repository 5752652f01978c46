//! textgate-smsc: a fast SMPP 3.4 SMSC simulator for the SMPP benchmark (bench/kannel), plus
//! two load generators.
//!
//!   textgate-smsc --listen 127.0.0.1:2775 [--system-id ID] [--password PW] [--window W]
//!                 [--mo RATE --mo-count N [--mo-on-usr1]] [--stats-interval SECS] [--threads T]
//!       SMSC: prints `SMSC listening on ADDR`, answers submit_sm at once with increasing hex
//!       message ids, sends a deliver_sm receipt when registered_delivery & 1, generates MO
//!       texts (RATE per second, 0 = as fast as the window allows) to bound receivers, and
//!       prints its counters as one JSON line every SECS and on SIGINT/SIGTERM (then exits).
//!
//!   textgate-smsc --client-load N --connect ADDR [--window W] [--dlr] [--system-id ID] [--password PW]
//!       raw SMPP load: binds as transceiver and pushes N submit_sm as fast as the window
//!       allows (waiting for N receipts too with --dlr); prints one JSON line.
//!
//!   textgate-smsc --http-load URL -n N -c C
//!       N HTTP GETs from C keep-alive clients; `{i}` in URL is replaced by the message index.
//!       Counts 2xx as accepted; prints one JSON line (with start/end unix times).

mod pdu;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use pdu::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{tcp::OwnedWriteHalf, TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};

#[derive(Default)]
struct Args {
    listen: Option<String>,
    system_id: Option<String>,
    password: Option<String>,
    window: usize,
    mo_rate: f64,
    mo_count: u64,
    mo_on_usr1: bool,
    stats_interval: f64,
    threads: usize,
    client_load: Option<u64>,
    connect: Option<String>,
    dlr: bool,
    http_load: Option<String>,
    n: usize,
    c: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        window: 64,
        threads: 1,
        n: 20_000,
        c: 32,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = Some(val()?),
            "--system-id" => a.system_id = Some(val()?),
            "--password" => a.password = Some(val()?),
            "--window" => a.window = val()?.parse()?,
            "--mo" => a.mo_rate = val()?.parse()?,
            "--mo-count" => a.mo_count = val()?.parse()?,
            "--mo-on-usr1" => a.mo_on_usr1 = true,
            "--stats-interval" => a.stats_interval = val()?.parse()?,
            "--threads" => a.threads = val()?.parse()?,
            "--client-load" => a.client_load = Some(val()?.parse()?),
            "--connect" => a.connect = Some(val()?),
            "--dlr" => a.dlr = true,
            "--http-load" => a.http_load = Some(val()?),
            "-n" => a.n = val()?.parse()?,
            "-c" => a.c = val()?.parse()?,
            "-h" | "--help" => {
                println!("{}", USAGE);
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    a.window = a.window.max(1);
    Ok(a)
}

const USAGE: &str = "usage:
  textgate-smsc --listen ADDR [--system-id ID] [--password PW] [--window W] [--mo RATE --mo-count N [--mo-on-usr1]] [--stats-interval SECS] [--threads T]
  textgate-smsc --client-load N --connect ADDR [--window W] [--dlr] [--system-id ID] [--password PW]
  textgate-smsc --http-load URL [-n N] [-c C]";

fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let rt = if a.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async move {
        if let Some(url) = a.http_load.clone() {
            http_load(url, a.n, a.c).await
        } else if let Some(n) = a.client_load {
            client_load(&a, n).await
        } else if a.listen.is_some() {
            serve(a).await
        } else {
            bail!("{USAGE}")
        }
    })
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// SMSC
// ------------------------------------------------------------------------------------------

#[derive(Default)]
struct Counters {
    binds: AtomicU64,
    submits: AtomicU64,
    submit_errors: AtomicU64,
    receipts_sent: AtomicU64,
    receipt_resps: AtomicU64,
    receipt_resp_errors: AtomicU64,
    mo_sent: AtomicU64,
    mo_acked: AtomicU64,
    mo_errors: AtomicU64,
    first_submit_us: AtomicU64,
    last_submit_us: AtomicU64,
    last_receipt_resp_us: AtomicU64,
    first_mo_us: AtomicU64,
    last_mo_ack_us: AtomicU64,
}

/// An address copied out of a submit_sm (at most 20 characters in SMPP 3.4).
#[derive(Clone, Copy)]
struct Addr {
    ton: u8,
    npi: u8,
    len: u8,
    b: [u8; 21],
}

impl Addr {
    fn new(ton: u8, npi: u8, s: &[u8]) -> Self {
        let mut a = Addr {
            ton,
            npi,
            len: s.len().min(21) as u8,
            b: [0; 21],
        };
        a.b[..a.len as usize].copy_from_slice(&s[..a.len as usize]);
        a
    }
    fn bytes(&self) -> &[u8] {
        &self.b[..self.len as usize]
    }
}

enum Deliver {
    Receipt {
        id: u64,
        submit_unix: u64,
        src: Addr,
        dst: Addr,
    },
    Mo(u64),
}

type DeliverTx = mpsc::UnboundedSender<Deliver>;

#[derive(Default)]
struct Entry {
    sessions: Vec<(u64, DeliverTx)>,
    /// Receipts for a system_id with no receiver bound yet.
    backlog: Vec<Deliver>,
    rr: usize,
}

struct Shared {
    c: Counters,
    msg_id: AtomicU64,
    next_session: AtomicU64,
    system_id: Option<String>,
    password: Option<String>,
    window: usize,
    registry: Mutex<HashMap<Vec<u8>, Entry>>,
    receiver_bound: Notify,
    mo_rr: AtomicUsize,
}

impl Shared {
    /// Hands a receipt to a receiver session of `system_id`, or keeps it until one binds.
    fn route(&self, system_id: &[u8], d: Deliver) {
        let mut reg = self.registry.lock().unwrap();
        let e = reg.entry(system_id.to_vec()).or_default();
        let mut d = d;
        while !e.sessions.is_empty() {
            let i = e.rr % e.sessions.len();
            e.rr = e.rr.wrapping_add(1);
            match e.sessions[i].1.send(d) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => {
                    d = back;
                    e.sessions.swap_remove(i);
                }
            }
        }
        e.backlog.push(d);
    }

    /// One MO text to any bound receiver, round robin. Gives it back if none is bound.
    fn route_mo(&self, d: Deliver) -> Result<(), Deliver> {
        let reg = self.registry.lock().unwrap();
        let all: Vec<&DeliverTx> = reg
            .values()
            .flat_map(|e| e.sessions.iter().map(|s| &s.1))
            .collect();
        if all.is_empty() {
            return Err(d);
        }
        let i = self.mo_rr.fetch_add(1, Relaxed) % all.len();
        all[i].send(d).map_err(|e| e.0)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

/// Sequence numbers of our deliver_sm: receipts below this bit, MO texts with it set.
const MO_SEQ_BIT: u32 = 0x4000_0000;

struct Session {
    id: u64,
    sh: Arc<Shared>,
    bound: Option<BindKind>,
    system_id: Vec<u8>,
    dtx: DeliverTx,
    pending: VecDeque<Deliver>,
    outstanding: usize,
    seq: u32,
    closing: bool,
    // per-batch counters, folded into the shared atomics once per wake-up
    submits: u64,
}

impl Session {
    fn next_seq(&mut self) -> u32 {
        self.seq = if self.seq >= MO_SEQ_BIT - 1 {
            1
        } else {
            self.seq + 1
        };
        self.seq
    }

    fn handle(&mut self, h: Header, body: &[u8], out: &mut Vec<u8>) {
        let sh = self.sh.clone();
        match h.id {
            BIND_RECEIVER | BIND_TRANSMITTER | BIND_TRANSCEIVER => {
                if self.bound.is_some() {
                    return bind_resp(out, h.id, ESME_RALYBND, h.seq, b"");
                }
                let Some(b) = parse_bind(body) else {
                    return bind_resp(out, h.id, ESME_RSYSERR, h.seq, b"");
                };
                if let Some(want) = &sh.system_id {
                    if want.as_bytes() != b.system_id {
                        return bind_resp(out, h.id, ESME_RINVSYSID, h.seq, b"");
                    }
                }
                if let Some(want) = &sh.password {
                    if want.as_bytes() != b.password {
                        return bind_resp(out, h.id, ESME_RINVPASWD, h.seq, b"");
                    }
                }
                let kind = match h.id {
                    BIND_RECEIVER => BindKind::Receiver,
                    BIND_TRANSMITTER => BindKind::Transmitter,
                    _ => BindKind::Transceiver,
                };
                self.bound = Some(kind);
                self.system_id = b.system_id.to_vec();
                sh.c.binds.fetch_add(1, Relaxed);
                bind_resp(out, h.id, ESME_ROK, h.seq, b"textgate-smsc");
                if kind != BindKind::Transmitter {
                    let mut reg = sh.registry.lock().unwrap();
                    let e = reg.entry(self.system_id.clone()).or_default();
                    e.sessions.push((self.id, self.dtx.clone()));
                    self.pending.extend(e.backlog.drain(..));
                    drop(reg);
                    sh.receiver_bound.notify_waiters();
                }
            }
            SUBMIT_SM => {
                if !matches!(
                    self.bound,
                    Some(BindKind::Transmitter | BindKind::Transceiver)
                ) {
                    return sm_resp(out, h.id, ESME_RINVBNDSTS, h.seq, b"");
                }
                let Some(s) = parse_sm(body) else {
                    sh.c.submit_errors.fetch_add(1, Relaxed);
                    return sm_resp(out, h.id, ESME_RSYSERR, h.seq, b"");
                };
                let id = sh.msg_id.fetch_add(1, Relaxed);
                let mut hb = [0u8; 16];
                sm_resp(out, h.id, ESME_ROK, h.seq, hex(id, &mut hb));
                self.submits += 1;
                if s.registered_delivery & 1 != 0 {
                    let d = Deliver::Receipt {
                        id,
                        submit_unix: unix_us() / 1_000_000,
                        // the receipt comes from the recipient, to the original sender
                        src: Addr::new(s.dest_ton, s.dest_npi, s.dest_addr),
                        dst: Addr::new(s.source_ton, s.source_npi, s.source_addr),
                    };
                    if self.bound == Some(BindKind::Transceiver) {
                        self.pending.push_back(d);
                    } else {
                        sh.route(&self.system_id, d);
                    }
                }
            }
            id if id == DELIVER_SM | RESP || id == GENERIC_NACK => {
                self.outstanding = self.outstanding.saturating_sub(1);
                let ok = id != GENERIC_NACK && h.status == ESME_ROK;
                let now = unix_us();
                if h.seq & MO_SEQ_BIT != 0 {
                    if ok {
                        sh.c.mo_acked.fetch_add(1, Relaxed);
                        sh.c.last_mo_ack_us.store(now, Relaxed);
                    } else {
                        sh.c.mo_errors.fetch_add(1, Relaxed);
                    }
                } else if ok {
                    sh.c.receipt_resps.fetch_add(1, Relaxed);
                    sh.c.last_receipt_resp_us.store(now, Relaxed);
                } else {
                    sh.c.receipt_resp_errors.fetch_add(1, Relaxed);
                }
            }
            ENQUIRE_LINK => header_only(out, ENQUIRE_LINK | RESP, ESME_ROK, h.seq),
            UNBIND => {
                header_only(out, UNBIND | RESP, ESME_ROK, h.seq);
                self.closing = true;
            }
            id if id & RESP != 0 => {} // enquire_link_resp, unbind_resp, ...
            _ => header_only(out, GENERIC_NACK, ESME_RINVCMDID, h.seq),
        }
    }

    /// Sends queued receipts and MO texts while the window allows.
    fn drain_pending(&mut self, out: &mut Vec<u8>) {
        let mut receipts = 0;
        let mut mos = 0;
        while self.outstanding < self.sh.window {
            let Some(d) = self.pending.pop_front() else {
                break;
            };
            self.outstanding += 1;
            let seq = self.next_seq();
            match d {
                Deliver::Receipt {
                    id,
                    submit_unix,
                    src,
                    dst,
                } => {
                    let mut hb = [0u8; 16];
                    let hid = hex(id, &mut hb);
                    let mut text = Vec::with_capacity(120);
                    text.extend_from_slice(b"id:");
                    text.extend_from_slice(hid);
                    text.extend_from_slice(b" sub:001 dlvrd:001 submit date:");
                    receipt_date(submit_unix, &mut text);
                    text.extend_from_slice(b" done date:");
                    receipt_date(unix_us() / 1_000_000, &mut text);
                    text.extend_from_slice(b" stat:DELIVRD err:000 text:");
                    let at = sm(
                        out,
                        DELIVER_SM,
                        seq,
                        &SmOut {
                            source_ton: src.ton,
                            source_npi: src.npi,
                            source_addr: src.bytes(),
                            dest_ton: dst.ton,
                            dest_npi: dst.npi,
                            dest_addr: dst.bytes(),
                            esm_class: 0x04,
                            registered_delivery: 0,
                            data_coding: 0,
                            short_message: &text,
                        },
                    );
                    let mut idz = [0u8; 17];
                    idz[..hid.len()].copy_from_slice(hid);
                    put_tlv(out, TLV_RECEIPTED_MESSAGE_ID, &idz[..hid.len() + 1]);
                    put_tlv(out, TLV_MESSAGE_STATE, &[2]); // DELIVERED
                    finish(out, at);
                    receipts += 1;
                }
                Deliver::Mo(i) => {
                    let mut src = *b"15550000000";
                    let mut v = i % 10_000_000;
                    for k in (4..11).rev() {
                        src[k] = b'0' + (v % 10) as u8;
                        v /= 10;
                    }
                    let mut text = Vec::with_capacity(32);
                    text.extend_from_slice(b"bench inbound ");
                    text.extend_from_slice(i.to_string().as_bytes());
                    let at = sm(
                        out,
                        DELIVER_SM,
                        seq | MO_SEQ_BIT,
                        &SmOut {
                            source_ton: 1,
                            source_npi: 1,
                            source_addr: &src,
                            dest_ton: 0,
                            dest_npi: 0,
                            dest_addr: b"12345",
                            esm_class: 0,
                            registered_delivery: 0,
                            data_coding: 0,
                            short_message: &text,
                        },
                    );
                    finish(out, at);
                    mos += 1;
                }
            }
        }
        let c = &self.sh.c;
        if receipts > 0 {
            c.receipts_sent.fetch_add(receipts, Relaxed);
        }
        if mos > 0 && c.mo_sent.fetch_add(mos, Relaxed) == 0 {
            c.first_mo_us.store(unix_us(), Relaxed);
        }
        if self.submits > 0 {
            let now = unix_us();
            if c.submits.fetch_add(self.submits, Relaxed) == 0 {
                c.first_submit_us.store(now, Relaxed);
            }
            c.last_submit_us.store(now, Relaxed);
            self.submits = 0;
        }
    }
}

async fn writer(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    recycle: mpsc::UnboundedSender<Vec<u8>>,
) {
    while let Some(mut buf) = rx.recv().await {
        if wr.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
        let _ = recycle.send(buf);
    }
    let _ = wr.shutdown().await;
}

async fn session(sock: TcpStream, sh: Arc<Shared>) {
    let _ = sock.set_nodelay(true);
    let (mut rd, wr) = sock.into_split();
    let (wtx, wrx) = mpsc::unbounded_channel();
    let (rtx, mut rrx) = mpsc::unbounded_channel::<Vec<u8>>();
    let w = tokio::spawn(writer(wr, wrx, rtx));
    let (dtx, mut drx) = mpsc::unbounded_channel();
    let mut s = Session {
        id: sh.next_session.fetch_add(1, Relaxed),
        sh: sh.clone(),
        bound: None,
        system_id: Vec::new(),
        dtx,
        pending: VecDeque::new(),
        outstanding: 0,
        seq: 0,
        closing: false,
        submits: 0,
    };
    let mut inbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    'conn: loop {
        if inbuf.capacity() - inbuf.len() < 16 * 1024 {
            inbuf.reserve(64 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut inbuf) => {
                match r {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => {}
                }
                let mut at = 0;
                loop {
                    match frame(&inbuf[at..]) {
                        Ok(Some(h)) => {
                            s.handle(h, &inbuf[at + HEADER_LEN..at + h.len], &mut out);
                            at += h.len;
                            if s.closing {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            header_only(&mut out, GENERIC_NACK, ESME_RINVCMDLEN, 0);
                            s.closing = true;
                            break;
                        }
                    }
                }
                inbuf.drain(..at);
            }
            Some(d) = drx.recv() => {
                s.pending.push_back(d);
                while let Ok(d) = drx.try_recv() {
                    s.pending.push_back(d);
                }
            }
        }
        if !s.closing {
            s.drain_pending(&mut out);
        }
        if !out.is_empty() {
            let next = rrx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(16 * 1024));
            if wtx.send(std::mem::replace(&mut out, next)).is_err() {
                break;
            }
        }
        if s.closing {
            break;
        }
    }
    // Fold the last counts in; hand back receipts that were never sent.
    s.drain_pending(&mut Vec::new());
    {
        let mut reg = sh.registry.lock().unwrap();
        if let Some(e) = reg.get_mut(&s.system_id) {
            e.sessions.retain(|(id, _)| *id != s.id);
        }
    }
    drop(drx);
    for d in s.pending.drain(..) {
        match d {
            Deliver::Receipt { .. } => sh.route(&s.system_id, d),
            Deliver::Mo(_) => {
                let _ = sh.route_mo(d);
            }
        }
    }
    drop(wtx);
    let _ = w.await;
}

fn stats_json(sh: &Shared, started: Instant, prev: &mut [u64; 4], prev_t: &mut Instant) -> String {
    let c = &sh.c;
    let now = Instant::now();
    let dt = now.duration_since(*prev_t).as_secs_f64().max(1e-9);
    let cur = [
        c.submits.load(Relaxed),
        c.receipts_sent.load(Relaxed),
        c.receipt_resps.load(Relaxed),
        c.mo_acked.load(Relaxed),
    ];
    let rate = |i: usize| (cur[i] - prev[i]) as f64 / dt;
    let ts = |a: &AtomicU64| a.load(Relaxed) as f64 / 1e6;
    let s = format!(
        concat!(
            "{{\"elapsed_s\":{:.3},\"binds\":{},\"submits\":{},\"submit_errors\":{},",
            "\"receipts_sent\":{},\"receipt_resps\":{},\"receipt_resp_errors\":{},",
            "\"mo_sent\":{},\"mo_acked\":{},\"mo_errors\":{},",
            "\"submits_per_s\":{:.1},\"receipts_per_s\":{:.1},\"receipt_resps_per_s\":{:.1},\"mo_acked_per_s\":{:.1},",
            "\"first_submit_unix\":{:.6},\"last_submit_unix\":{:.6},\"last_receipt_resp_unix\":{:.6},",
            "\"first_mo_unix\":{:.6},\"last_mo_ack_unix\":{:.6}}}"
        ),
        started.elapsed().as_secs_f64(),
        c.binds.load(Relaxed),
        cur[0],
        c.submit_errors.load(Relaxed),
        cur[1],
        cur[2],
        c.receipt_resp_errors.load(Relaxed),
        c.mo_sent.load(Relaxed),
        cur[3],
        c.mo_errors.load(Relaxed),
        rate(0),
        rate(1),
        rate(2),
        rate(3),
        ts(&c.first_submit_us),
        ts(&c.last_submit_us),
        ts(&c.last_receipt_resp_us),
        ts(&c.first_mo_us),
        ts(&c.last_mo_ack_us),
    );
    *prev = cur;
    *prev_t = now;
    s
}

async fn serve(a: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(a.listen.as_deref().unwrap())
        .await
        .context("binding --listen")?;
    let sh = Arc::new(Shared {
        c: Counters::default(),
        msg_id: AtomicU64::new(1),
        next_session: AtomicU64::new(1),
        system_id: a.system_id.clone(),
        password: a.password.clone(),
        window: a.window,
        registry: Mutex::new(HashMap::new()),
        receiver_bound: Notify::new(),
        mo_rr: AtomicUsize::new(0),
    });
    println!("SMSC listening on {}", listener.local_addr()?);

    if a.mo_count > 0 {
        let sh = sh.clone();
        let (rate, count, on_usr1) = (a.mo_rate, a.mo_count, a.mo_on_usr1);
        tokio::spawn(async move {
            if on_usr1 {
                use tokio::signal::unix::{signal, SignalKind};
                if let Ok(mut s) = signal(SignalKind::user_defined1()) {
                    s.recv().await;
                }
            }
            let start = Instant::now();
            for i in 0..count {
                if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    if due > Instant::now() {
                        tokio::time::sleep_until(due.into()).await;
                    }
                } else if i % 1024 == 1023 {
                    tokio::task::yield_now().await;
                }
                let mut d = Deliver::Mo(i);
                loop {
                    let notified = sh.receiver_bound.notified();
                    match sh.route_mo(d) {
                        Ok(()) => break,
                        Err(back) => {
                            d = back;
                            let _ =
                                tokio::time::timeout(Duration::from_millis(100), notified).await;
                        }
                    }
                }
            }
        });
    }

    {
        let sh = sh.clone();
        let interval = a.stats_interval;
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let started = Instant::now();
            let mut prev = [0u64; 4];
            let mut prev_t = started;
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let period = if interval > 0.0 {
                Duration::from_secs_f64(interval)
            } else {
                Duration::from_secs(86_400 * 365)
            };
            let mut tick = tokio::time::interval_at((started + period).into(), period);
            loop {
                tokio::select! {
                    _ = tick.tick() => println!("{}", stats_json(&sh, started, &mut prev, &mut prev_t)),
                    _ = int.recv() => break,
                    _ = term.recv() => break,
                }
            }
            println!("{}", stats_json(&sh, started, &mut prev, &mut prev_t));
            std::process::exit(0);
        });
    }

    loop {
        let (sock, _) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(session(sock, sh.clone()));
    }
}

// ------------------------------------------------------------------------------------------
// raw SMPP load generator
// ------------------------------------------------------------------------------------------

async fn client_load(a: &Args, n: u64) -> anyhow::Result<()> {
    let addr: SocketAddr = a
        .connect
        .as_deref()
        .context("--client-load needs --connect ADDR")?
        .parse()?;
    let sock = TcpStream::connect(addr).await?;
    sock.set_nodelay(true)?;
    let (mut rd, mut wr) = sock.into_split();
    let mut out = Vec::new();
    let at = begin(&mut out, BIND_TRANSCEIVER, 0, 1);
    put_cstr(
        &mut out,
        a.system_id.as_deref().unwrap_or("load").as_bytes(),
    );
    put_cstr(&mut out, a.password.as_deref().unwrap_or("load").as_bytes());
    put_cstr(&mut out, b"");
    out.extend_from_slice(&[0x34, 0, 0]);
    put_cstr(&mut out, b"");
    finish(&mut out, at);
    wr.write_all(&out).await?;
    let mut inbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        rd.read_buf(&mut inbuf).await?;
        if let Some(h) = frame(&inbuf).map_err(|e| anyhow::anyhow!("bad PDU length {}", e.0))? {
            if h.id != BIND_TRANSCEIVER | RESP || h.status != ESME_ROK {
                bail!("bind failed: id {:#x} status {:#x}", h.id, h.status);
            }
            inbuf.drain(..h.len);
            break;
        }
    }

    let (wtx, wrx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (rtx, _rrx) = mpsc::unbounded_channel();
    let w = tokio::spawn(writer(wr, wrx, rtx));
    let window = Arc::new(Semaphore::new(a.window));
    let start = Instant::now();
    let dlr = a.dlr;

    let producer = {
        let (wtx, window) = (wtx.clone(), window.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            while sent < n {
                let Ok(p) = window.acquire().await else {
                    return;
                };
                p.forget();
                let mut k = 1;
                while k < 256 && sent + k < n {
                    match window.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            k += 1;
                        }
                        Err(_) => break,
                    }
                }
                let mut buf = Vec::with_capacity(k as usize * 80);
                for j in sent..sent + k {
                    let mut dst = *b"15550000000";
                    let mut v = j % 10_000_000;
                    for d in (4..11).rev() {
                        dst[d] = b'0' + (v % 10) as u8;
                        v /= 10;
                    }
                    let at = sm(
                        &mut buf,
                        SUBMIT_SM,
                        (j as u32 % (MO_SEQ_BIT - 2)) + 2,
                        &SmOut {
                            source_ton: 5,
                            source_npi: 0,
                            source_addr: b"BENCH",
                            dest_ton: 1,
                            dest_npi: 1,
                            dest_addr: &dst,
                            esm_class: 0,
                            registered_delivery: u8::from(dlr),
                            data_coding: 0,
                            short_message: b"Your verification code is 123456",
                        },
                    );
                    finish(&mut buf, at);
                }
                sent += k;
                if wtx.send(buf).is_err() {
                    return;
                }
            }
        })
    };

    let (mut acked, mut errors, mut receipts) = (0u64, 0u64, 0u64);
    let mut acked_at = None;
    while acked + errors < n || (dlr && receipts < n) {
        if inbuf.capacity() - inbuf.len() < 16 * 1024 {
            inbuf.reserve(64 * 1024);
        }
        if rd.read_buf(&mut inbuf).await? == 0 {
            bail!("SMSC closed the connection after {acked} submit_sm_resp");
        }
        let mut at = 0;
        let mut resp = Vec::new();
        let mut freed = 0;
        while let Some(h) =
            frame(&inbuf[at..]).map_err(|e| anyhow::anyhow!("bad PDU length {}", e.0))?
        {
            match h.id {
                x if x == SUBMIT_SM | RESP => {
                    freed += 1;
                    if h.status == ESME_ROK {
                        acked += 1;
                    } else {
                        errors += 1;
                    }
                }
                DELIVER_SM => {
                    receipts += 1;
                    sm_resp(&mut resp, DELIVER_SM, ESME_ROK, h.seq, b"");
                }
                ENQUIRE_LINK => header_only(&mut resp, ENQUIRE_LINK | RESP, ESME_ROK, h.seq),
                GENERIC_NACK => {
                    freed += 1;
                    errors += 1;
                }
                _ => {}
            }
            at += h.len;
        }
        inbuf.drain(..at);
        window.add_permits(freed);
        if !resp.is_empty() {
            let _ = wtx.send(resp);
        }
        if acked_at.is_none() && acked + errors >= n {
            acked_at = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    let acked_t = acked_at.unwrap_or(total);
    let _ = producer.await;
    let mut bye = Vec::new();
    header_only(&mut bye, UNBIND, 0, 1);
    let _ = wtx.send(bye);
    drop(wtx);
    let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
    println!(
        "{{\"mode\":\"client-load\",\"n\":{n},\"window\":{},\"acked\":{acked},\"errors\":{errors},\"receipts\":{receipts},\"submit_s\":{:.3},\"submits_per_s\":{:.0},\"total_s\":{:.3},\"receipts_per_s\":{:.0}}}",
        a.window,
        acked_t.as_secs_f64(),
        acked as f64 / acked_t.as_secs_f64(),
        total.as_secs_f64(),
        receipts as f64 / total.as_secs_f64(),
    );
    if errors > 0 {
        bail!("{errors} submit_sm failed");
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// HTTP load generator (Kannel's sendsms interface)
// ------------------------------------------------------------------------------------------

async fn http_load(url: String, n: usize, c: usize) -> anyhow::Result<()> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(c)
        .build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let url = Arc::new(url);
    let start_unix = unix_us();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c.max(1) {
        let (client, next, url) = (client.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut first_error) = (0usize, 0usize, None::<String>);
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                let uri: hyper::Uri = match url.replace("{i}", &i.to_string()).parse() {
                    Ok(u) => u,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e.to_string());
                        continue;
                    }
                };
                match client.get(uri).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                        if status.is_success() && body.is_ok() {
                            ok += 1;
                        } else {
                            errors += 1;
                            first_error.get_or_insert_with(|| {
                                format!(
                                    "HTTP {status}: {}",
                                    body.map(|b| String::from_utf8_lossy(&b).into_owned())
                                        .unwrap_or_default()
                                        .trim()
                                )
                            });
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            (ok, errors, first_error)
        }));
    }
    let (mut ok, mut errors, mut first_error) = (0, 0, None);
    for t in tasks {
        let (o, e, f) = t.await?;
        ok += o;
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"http-load\",\"n\":{n},\"concurrency\":{c},\"accepted\":{ok},\"errors\":{errors},\"elapsed_s\":{el:.3},\"accepted_per_s\":{:.1},\"start_unix\":{:.6},\"end_unix\":{:.6}}}",
        ok as f64 / el,
        start_unix as f64 / 1e6,
        unix_us() as f64 / 1e6,
    );
    if let Some(e) = first_error {
        eprintln!("first error: {e}");
    }
    Ok(())
}
