//! textgate's SMS device drivers, behind one trait, knowing nothing of storage: a driver
//! takes [`OutboundSms`] and reports [`DeviceEvent`]s; the engine (`textgate-engine`) wires
//! them to the store.
//!
//! - [`Device`]: the one interface every driver implements (`smpp`, `modem`, `loopback`, and
//!   `remote`, which lives with the port servers in `textgate-port`): send a message, report its parts' receipts and inbound texts as
//!   [`DeviceEvent`]s, say what state it is in.
//! - [`smpp`]: SMPP 3.4 sessions: the frame codec, PDUs, receipts, long texts, the session.
//! - [`modem`]: GSM/LTE modems on serial ports, with AT commands in PDU mode.
//! - [`loopback`]: the built-in device for demos and tests.
//! - [`build_devices`]: the devices a configuration names.
#![forbid(unsafe_code)]

pub mod loopback;
pub mod modem;
pub mod smpp;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use textgate_core::clock::Millis;
use textgate_core::config::{ConfigError, DeviceConfig, DeviceSettings, RemoteConfig};
use tokio::sync::mpsc;

/// Events the devices may have handed over that the dispatcher has not taken yet.
pub const EVENTS_CAPACITY: usize = 8192;

/// Hands an event over without waiting: at once if there is room, else from a task that
/// waits for room (for devices whose own traffic is bounded already, such as loopback).
pub(crate) fn emit(events: &mpsc::Sender<DeviceEvent>, ev: DeviceEvent) {
    match events.try_send(ev) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(ev)) => {
            let events = events.clone();
            tokio::spawn(async move {
                let _ = events.send(ev).await;
            });
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// The sessions of devices whose account several nodes share (an SMSC account allows so
/// many binds): a session may be open only while this node holds its slot.
pub trait SessionSlots: Send + Sync + 'static {
    /// Takes or renews slot `slot` (of `of`) of `device` for this node; whether it is this
    /// node's now. `false` also when it cannot tell (the store is away): a session must not
    /// stay open on a slot it may have lost.
    fn hold<'a>(&'a self, device: &'a str, slot: usize, of: usize) -> BoxFuture<'a, bool>;
    /// Gives a slot up (its session closed).
    fn release<'a>(&'a self, device: &'a str, slot: usize) -> BoxFuture<'a, ()>;
    /// How often a slot held is renewed, and a free one looked at again.
    fn every(&self) -> std::time::Duration;
}

/// A boxed future, so that [`Device`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A message handed to a device.
#[derive(Debug, Clone)]
pub struct OutboundSms {
    /// The message's id in the store.
    pub message_id: i64,
    /// Its attempt number (with the id, what tells a resend from a new attempt).
    pub attempt: i64,
    /// Destination: E.164 with `+`, or a short code.
    pub to: String,
    /// Sender id, if the caller chose one.
    pub from: Option<String>,
    /// The text.
    pub body: String,
    /// How many parts it takes.
    pub segments: u16,
}

/// What a device said when it took a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The device's id for each part, in part order (normalised, so receipts match).
    pub part_ids: Vec<String>,
}

/// Why a device did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later, perhaps on another device (throttling, a connection down, a timeout).
    #[error("{reason}")]
    Transient {
        /// The device's own code, if it gave one.
        code: Option<String>,
        /// Readable reason.
        reason: String,
    },
    /// The device asked to slow down (SMPP ESME_RTHROTTLED, ESME_RMSGQFUL): try again soon;
    /// the attempt does not count against `max_attempts`.
    #[error("{reason}")]
    Throttled {
        /// The device's own code.
        code: Option<String>,
        /// Readable reason.
        reason: String,
    },
    /// This message will never go through this way (an invalid number, a refused sender).
    #[error("{reason}")]
    Permanent {
        /// The device's own code.
        code: Option<String>,
        /// Readable reason.
        reason: String,
    },
}

/// Something a device reports on its own.
#[derive(Debug)]
pub enum DeviceEvent {
    /// A delivery receipt for one part.
    Receipt {
        /// The device.
        device: String,
        /// The device's id of the part.
        device_msg_id: String,
        /// Delivered or not.
        delivered: bool,
        /// The network's error code.
        code: Option<String>,
        /// When.
        at: Millis,
        /// Answered once the receipt is recorded (`true`), so the device acknowledges it to
        /// its peer only then; `false` asks the peer to deliver it again.
        ack: Option<Ack>,
    },
    /// The outcome of a message the device took while nobody was waiting for its answer (a
    /// port server reporting, after the central server restarted, what it sent): recorded
    /// if the message is still at that attempt. Only `Ok` (sent) and `Permanent` are
    /// recorded; an outcome that calls for a retry is left to the claim lease.
    Outcome {
        /// The device.
        device: String,
        /// The message.
        message_id: i64,
        /// The attempt it was taken under.
        attempt: i64,
        /// What came of it.
        result: Result<Submitted, SendError>,
        /// When.
        at: Millis,
        /// Answered once recorded.
        ack: Option<Ack>,
    },
    /// An inbound text, reassembled. The device acknowledges it to its peer only after
    /// `ack` answers `true` (the text is committed).
    Inbound {
        /// The text.
        text: InboundText,
        /// Answered once the text is stored (`true`) or could not be (`false`).
        ack: Option<Ack>,
    },
}

/// An inbound text as a device received it (the engine normalises its numbers, routes it
/// and stores it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundText {
    /// The device that received it.
    pub device: String,
    /// The sender, as received.
    pub from: String,
    /// The number it was sent to, as received.
    pub to: String,
    /// The text.
    pub body: String,
    /// `gsm7`, `ucs2`, `latin1` or `binary`.
    pub encoding: String,
    /// How many parts it came in.
    pub parts: i64,
    /// Whether some parts never arrived.
    pub partial: bool,
    /// A key that is the same for a repeated delivery of the same text (device-specific).
    pub dedup_key: Option<String>,
    /// A key of the text's content and a window (ms): a text with the same key stored
    /// within the window before is not stored again (an SMSC's redelivery to another bind,
    /// perhaps another node's, of a text that carries no id).
    pub same_within: Option<(String, Millis)>,
    /// When.
    pub received_at: Millis,
}

/// How a device hears that an event it reported is recorded: called once, with `true` once
/// committed and `false` when it could not be (the device then asks its peer to send it
/// again). Dropped unanswered, it answers `false`.
///
/// A function rather than a channel: the SMPP session's answer is one message on the
/// session's own queue, with no task or channel per text between the commit and the
/// deliver_sm_resp.
pub struct Ack(Option<Box<dyn FnOnce(bool) + Send>>);

impl Ack {
    /// Calls `f` with the outcome.
    pub fn new(f: impl FnOnce(bool) + Send + 'static) -> Ack {
        Ack(Some(Box::new(f)))
    }

    /// An answer to await.
    pub fn channel() -> (Ack, tokio::sync::oneshot::Receiver<bool>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            Ack::new(move |ok| {
                let _ = tx.send(ok);
            }),
            rx,
        )
    }

    /// Answers: recorded (`true`) or not.
    pub fn send(mut self, recorded: bool) {
        if let Some(f) = self.0.take() {
            f(recorded);
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(false);
        }
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

/// A device's state as the API shows it (docs/api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Ready to send.
    Up,
    /// Trying to connect.
    Connecting,
    /// Not usable now.
    Down,
    /// Turned off in the config.
    Disabled,
}

impl DeviceState {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Up => "up",
            DeviceState::Connecting => "connecting",
            DeviceState::Down => "down",
            DeviceState::Disabled => "disabled",
        }
    }
}

/// The one interface of every SMS device driver.
pub trait Device: Send + Sync + 'static {
    /// Its configured name.
    fn name(&self) -> &str;
    /// `smpp`, `modem`, `remote` or `loopback`.
    fn kind(&self) -> &'static str;
    /// Starts its background work; receipts and inbound texts go to `events` from then on.
    /// The channel is bounded: a device that finds it full waits (an SMPP session stops
    /// reading, so that the SMSC's own window holds back what it sends).
    fn start(&self, events: mpsc::Sender<DeviceEvent>);
    /// Hands over one message; resolves when the device has taken or refused it.
    fn send(&self, sms: OutboundSms) -> BoxFuture<'_, Result<Submitted, SendError>>;
    /// Its state now.
    fn state(&self) -> DeviceState;
    /// Whether it sends at all (an SMPP device bound as receiver only does not).
    fn can_send(&self) -> bool {
        true
    }
    /// Whether messages for it should wait rather than be tried now (a port server that is
    /// offline or draining): they stay queued, or fail over to another device of their
    /// route, and no attempt is counted.
    fn parked(&self) -> bool {
        false
    }
    /// Called once the dispatcher has committed the outcome of a message this device
    /// answered (a port server's report is acknowledged to it only then); `settled`: the
    /// message is now sent or failed for good (not when it waits for a retry, nor when the
    /// outcome was stale because the message had moved on).
    fn outcome_recorded(&self, _message_id: i64, _settled: bool) {}
    /// Shares this device's sessions with other nodes through `slots` (an SMPP device's
    /// binds), before [`Device::start`]. Devices without such sessions ignore it.
    fn share_sessions(&self, _slots: Arc<dyn SessionSlots>) {}
    /// Whether this device has taken the message and will report what became of it (a
    /// port server holds it): every later attempt goes to this device, whatever its route
    /// says, so that it is never sent twice by two devices.
    fn holds(&self, _message_id: i64) -> bool {
        false
    }
    /// Called after a restart with the ids of parts an earlier run handed to this device
    /// that still have no receipt. A device whose peer re-delivers unacknowledged receipts
    /// (an SMSC does) has nothing to do; one that kept receipts only in memory reports them
    /// again.
    fn recover(&self, _part_ids: Vec<String>) {}
    /// Stops for good: finishes what is in flight and closes connections politely (an SMPP
    /// unbind). Called after the dispatcher has stopped handing it messages.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// Driver-specific gauges and counters for the API and `/metrics` (names ending in
    /// `_total` are counters).
    fn details(&self) -> Vec<(&'static str, i64)> {
        Vec::new()
    }
    /// Driver-specific facts that are words, not numbers (a modem's operator), for the API
    /// and the web UI.
    fn info(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// The device's own last error (a failed connection, a refused bind), if it keeps one.
    fn last_error(&self) -> Option<String> {
        None
    }
    /// How many messages it takes at once.
    fn window(&self) -> usize;
    /// Receives a text as if a phone had sent it (the loopback device, for demos and
    /// tests); the answer says once it is stored. `None` for devices whose texts come only
    /// from their network.
    fn simulate_inbound(
        &self,
        _from: &str,
        _to: &str,
        _body: &str,
    ) -> Option<tokio::sync::oneshot::Receiver<bool>> {
        None
    }
}

/// Builds a `kind = "remote"` device (the port servers' side lives in `textgate-port`).
pub type BuildRemote<'a> = &'a dyn Fn(&str, RemoteConfig) -> Option<Arc<dyn Device>>;

/// Builds the devices a checked configuration names, in config order; `remote` builds
/// the devices of port servers (`None`: refused).
pub fn build_devices(
    devices: &[DeviceConfig],
    remote: BuildRemote<'_>,
) -> Result<Vec<Arc<dyn Device>>, ConfigError> {
    devices
        .iter()
        .map(|d| -> Result<Arc<dyn Device>, _> {
            match d.settings()? {
                DeviceSettings::Loopback(lb) => Ok(Arc::new(loopback::Loopback::new(&d.name, lb))),
                DeviceSettings::Smpp(s) => Ok(Arc::new(smpp::Smpp::new(&d.name, *s))),
                DeviceSettings::Modem(m) => Ok(Arc::new(modem::Modem::new(&d.name, *m))),
                DeviceSettings::Remote(r) => remote(&d.name, r).ok_or_else(|| {
                    ConfigError::new(
                        format!("device \"{}\".kind", d.name),
                        "a port server's devices are its own (smpp, modem, loopback), not remote",
                    )
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Ack;

    #[tokio::test]
    async fn an_ack_answers_once_and_a_dropped_one_answers_not_recorded() {
        let (ack, rx) = Ack::channel();
        ack.send(true);
        assert_eq!(rx.await, Ok(true));
        // A device must never wait for ever on an event the recorder lost track of.
        let (ack, rx) = Ack::channel();
        drop(ack);
        assert_eq!(rx.await, Ok(false));
    }
}
