//! The `smpp` device: its sessions share one queue of submits, and it reports the best state
//! of its sessions.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use textgate_core::config::{BindMode, SmppConfig};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::pdu;
use super::session::{self, SessionCtx, SubmitReq};
use crate::{BoxFuture, Device, DeviceEvent, DeviceState, OutboundSms, SendError, Submitted};

/// How long the sessions pause after ESME_RTHROTTLED or ESME_RMSGQFUL.
const THROTTLE_PAUSE: Duration = Duration::from_millis(500);

/// State shared by a device and its sessions.
pub struct Shared {
    /// The device's name.
    pub name: String,
    /// Its configuration.
    pub cfg: Arc<SmppConfig>,
    states: Vec<AtomicU8>,
    last_error: StdMutex<Option<String>>,
    throttle_until: StdMutex<Option<Instant>>,
    /// Inbound texts received.
    pub received: AtomicU64,
}

impl Shared {
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
                states: (0..binds)
                    .map(|_| AtomicU8::new(DeviceState::Connecting as u8))
                    .collect(),
                cfg: Arc::new(cfg),
                last_error: StdMutex::new(None),
                throttle_until: StdMutex::new(None),
                received: AtomicU64::new(0),
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

    fn start(&self, events: mpsc::UnboundedSender<DeviceEvent>) {
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

    fn window(&self) -> usize {
        (self.shared.cfg.window.max(1) * self.shared.cfg.binds.max(1)) as usize
    }

    fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().ok().and_then(|e| e.clone())
    }
}
