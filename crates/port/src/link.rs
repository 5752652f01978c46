//! The link between a port server and the central server, as frames and bookkeeping.
//!
//! The port server connects out (so it works from behind NAT) and speaks first. Every frame
//! is one JSON object with a `"t"` naming its type; both sides refuse a frame larger than
//! [`MAX_FRAME`] bytes, or one they cannot read, and close the link with the reason.
//!
//! 1. The port server says [`Frame::Hello`]: the protocol versions it speaks, its name, its
//!    devices and its window (how many messages it takes at once). The token that
//!    authenticates it travels in the link's opening request, never in a frame.
//! 2. The central server answers [`Frame::Welcome`] with the version both speak (the highest
//!    in common), or [`Frame::Refused`] saying why (no common version: one side must be
//!    upgraded) and closes.
//! 3. Then, in both directions, any number of:
//!    - central → port: [`Frame::Submit`] (a message for one of its devices; at most the
//!      window's worth unanswered), [`Frame::Ack`] (port items the central store has
//!      committed), [`Frame::Drain`] and [`Frame::Resume`];
//!    - port → central: [`Frame::Taken`] (a submit committed to the port server's own store:
//!      from then on it is the port server's to send, across restarts), [`Frame::Item`]s (a
//!      send's outcome, a receipt, an inbound text, each with the port server's own id),
//!      [`Frame::Status`] (its devices' states, what it holds);
//!    - either way: [`Frame::Ping`] / [`Frame::Pong`] heartbeats.
//!
//! Nothing is lost and nothing doubled because everything carries an id the receiver has
//! seen before if it is a resend: a submit is `(message, attempt)`, which the port server
//! stores once and answers again from its store if it comes a second time; a port item has
//! the port server's own id, which it keeps (in its store) and sends again on every new link
//! until the central server acknowledges it after committing what it says. Applying an item
//! twice changes nothing: an outcome is recorded only for the attempt it names, a receipt
//! sets a part's status once, an inbound text carries a key the central store keeps once.

use serde::{Deserialize, Serialize};

/// The versions of this protocol this build speaks, oldest first.
pub const VERSIONS: &[u32] = &[1];

/// The largest frame either side reads, in bytes: a message's body is at most 255 parts of
/// 153 characters (about 39 kB of text, at most 4 bytes a character in UTF-8).
pub const MAX_FRAME: usize = 256 * 1024;

/// The most messages a port server may ask to take at once.
pub const MAX_WINDOW: u32 = 10_000;

/// A device as a port server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Its name on the port server.
    pub name: String,
    /// `smpp`, `modem` or `loopback`.
    pub kind: String,
    /// `up`, `connecting`, `down` or `disabled`.
    pub state: String,
}

/// What became of a message a port server took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SendResult {
    /// Its device took it: the device's id of each part (what receipts name).
    Sent {
        /// Part ids, in part order.
        part_ids: Vec<String>,
    },
    /// Try again later, maybe elsewhere.
    Transient {
        /// The device's code.
        code: Option<String>,
        /// Why.
        reason: String,
    },
    /// The device asked to slow down.
    Throttled {
        /// The device's code.
        code: Option<String>,
        /// Why.
        reason: String,
    },
    /// It will not go this way.
    Permanent {
        /// The device's code.
        code: Option<String>,
        /// Why.
        reason: String,
    },
}

impl From<Result<textgate_drivers::Submitted, textgate_drivers::SendError>> for SendResult {
    /// A device's answer, as reported over the link.
    fn from(r: Result<textgate_drivers::Submitted, textgate_drivers::SendError>) -> SendResult {
        use textgate_drivers::SendError as E;
        match r {
            Ok(s) => SendResult::Sent {
                part_ids: s.part_ids,
            },
            Err(E::Transient { code, reason }) => SendResult::Transient { code, reason },
            Err(E::Throttled { code, reason }) => SendResult::Throttled { code, reason },
            Err(E::Permanent { code, reason }) => SendResult::Permanent { code, reason },
        }
    }
}

impl SendResult {
    /// Back as the device's answer, for the dispatcher.
    pub fn into_answer(self) -> Result<textgate_drivers::Submitted, textgate_drivers::SendError> {
        use textgate_drivers::SendError as E;
        match self {
            SendResult::Sent { part_ids } => Ok(textgate_drivers::Submitted { part_ids }),
            SendResult::Transient { code, reason } => Err(E::Transient { code, reason }),
            SendResult::Throttled { code, reason } => Err(E::Throttled { code, reason }),
            SendResult::Permanent { code, reason } => Err(E::Permanent { code, reason }),
        }
    }

    /// Whether it failed only for now (a later attempt sends it again).
    pub fn for_now(&self) -> bool {
        matches!(
            self,
            SendResult::Transient { .. } | SendResult::Throttled { .. }
        )
    }
}

/// Something a port server reports, kept until the central server has committed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// The outcome of a submit.
    Outcome {
        /// The central server's message id.
        message_id: i64,
        /// The attempt it was handed over with.
        attempt: i64,
        /// The port server's device that carried it.
        device: String,
        /// What came of it.
        #[serde(flatten)]
        result: SendResult,
        /// When (milliseconds since the epoch).
        at: i64,
    },
    /// A delivery receipt for a part.
    Receipt {
        /// The port server's device.
        device: String,
        /// The part's id as [`SendResult::Sent`] gave it.
        device_msg_id: String,
        /// Delivered or not.
        delivered: bool,
        /// The network's code.
        code: Option<String>,
        /// When.
        at: i64,
    },
    /// An inbound text.
    Inbound {
        /// The port server's device that received it.
        device: String,
        /// Sender, as received.
        from: String,
        /// The number it was sent to.
        to: String,
        /// The text.
        body: String,
        /// `gsm7`, `ucs2`, `latin1` or `binary`.
        encoding: String,
        /// How many parts it came in.
        parts: i64,
        /// Whether some never came.
        partial: bool,
        /// When.
        received_at: i64,
        /// The same for a repeated delivery of the same text (the device's own key, or one
        /// the port server made): the central server stores a text once per key.
        key: String,
    },
}

/// The longest name, number or code a report may carry, in bytes.
const MAX_FIELD: usize = 256;
/// The longest text a report may carry, in bytes (255 parts of UCS-2 at most, in UTF-8).
const MAX_BODY: usize = 64 * 1024;

impl Report {
    /// Checks the limits of its fields: whatever a port server sends is checked before the
    /// central server stores it.
    fn check(&self) -> Result<(), String> {
        let short = |what: &str, v: &str| {
            if v.len() > MAX_FIELD {
                Err(format!(
                    "a report's {what} of {} bytes: at most {MAX_FIELD}",
                    v.len()
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Report::Outcome { device, result, .. } => {
                short("device", device)?;
                match result {
                    SendResult::Sent { part_ids } => {
                        if part_ids.len() > 255 {
                            return Err(format!("{} part ids: at most 255", part_ids.len()));
                        }
                        part_ids.iter().try_for_each(|p| short("part id", p))
                    }
                    SendResult::Transient { code, reason }
                    | SendResult::Throttled { code, reason }
                    | SendResult::Permanent { code, reason } => {
                        short("code", code.as_deref().unwrap_or(""))?;
                        if reason.len() > 4096 {
                            return Err("a reason over 4096 bytes".into());
                        }
                        Ok(())
                    }
                }
            }
            Report::Receipt {
                device,
                device_msg_id,
                code,
                ..
            } => {
                short("device", device)?;
                short("message id", device_msg_id)?;
                short("code", code.as_deref().unwrap_or(""))
            }
            Report::Inbound {
                device,
                from,
                to,
                body,
                encoding,
                parts,
                key,
                ..
            } => {
                for (what, v) in [
                    ("device", device),
                    ("sender", from),
                    ("recipient", to),
                    ("encoding", encoding),
                    ("key", key),
                ] {
                    short(what, v)?;
                }
                if body.len() > MAX_BODY {
                    return Err(format!(
                        "an inbound text of {} bytes: at most {MAX_BODY}",
                        body.len()
                    ));
                }
                if !(1..=255).contains(parts) {
                    return Err(format!("an inbound text of {parts} parts: 1 to 255"));
                }
                Ok(())
            }
        }
    }
}

/// One frame of the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum Frame {
    /// Port → central, first: who it is.
    Hello {
        /// The protocol versions it speaks.
        versions: Vec<u32>,
        /// Its name (as `[[port_server]] name` on the central server).
        name: String,
        /// Its build (`textgate --version`), for the operators.
        build: String,
        /// Its devices.
        devices: Vec<DeviceInfo>,
        /// How many messages it takes at once.
        window: u32,
        /// How often it sends a ping on a quiet link (ms); the central server closes a link
        /// silent for three of these.
        heartbeat_ms: u64,
        /// The messages it holds (taken, not yet finished): every later attempt of these
        /// comes back to it, so that no other device sends them too.
        #[serde(default)]
        held: Vec<i64>,
    },
    /// Central → port: accepted, in this version.
    Welcome {
        /// The version both speak.
        version: u32,
        /// The central node's name, for the operators.
        node: String,
    },
    /// Either way, then the link closes: why it cannot go on.
    Refused {
        /// A readable reason.
        reason: String,
    },
    /// Central → port: a message for one of its devices.
    Submit {
        /// The central server's message id.
        message_id: i64,
        /// Its attempt number: with the id, what makes a resend recognisable.
        attempt: i64,
        /// The port server's device to use; `None`: any that can send.
        device: Option<String>,
        /// Destination.
        to: String,
        /// Sender id.
        from: Option<String>,
        /// The text.
        body: String,
        /// Its parts.
        segments: u16,
    },
    /// Port → central: the submit is committed in the port server's store.
    Taken {
        /// The message.
        message_id: i64,
        /// The attempt.
        attempt: i64,
    },
    /// Port → central: a report, with the port server's id for it.
    Item {
        /// The port server's id (increasing, never reused).
        id: u64,
        /// What it reports.
        report: Report,
    },
    /// Central → port: these items are committed centrally; the port server may forget them.
    Ack {
        /// Item ids.
        ids: Vec<u64>,
    },
    /// Port → central: its devices' states and what it holds (on a change, and with every
    /// heartbeat).
    Status {
        /// Every device.
        devices: Vec<DeviceInfo>,
        /// Messages taken and not yet finished.
        held: u64,
        /// Reports not yet acknowledged.
        unacked: u64,
        /// Whether it is stopping (then it takes nothing new and finishes what it holds).
        stopping: bool,
    },
    /// Central → port: no new messages come; finish and report what is held.
    Drain,
    /// Central → port: messages come again (the drain is over).
    Resume,
    /// A heartbeat.
    Ping {
        /// The sender's clock (milliseconds), echoed in the pong.
        at: i64,
    },
    /// The answer to a ping.
    Pong {
        /// The ping's `at`.
        at: i64,
    },
}

/// Why a frame could not be read, or a link could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Over [`MAX_FRAME`].
    #[error("a frame of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// Not a frame of this protocol.
    #[error("an unreadable frame: {0}")]
    Unreadable(String),
    /// A frame that breaks the protocol's rules.
    #[error("{0}")]
    Protocol(String),
}

impl Frame {
    /// The frame as sent.
    pub fn encode(&self) -> String {
        // Serialising these types cannot fail: no map has non-string keys, no float is NaN.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a frame, checking its size and the limits of its fields.
    pub fn decode(text: &str) -> Result<Frame, LinkError> {
        if text.len() > MAX_FRAME {
            return Err(LinkError::TooLarge(text.len()));
        }
        let f: Frame =
            serde_json::from_str(text).map_err(|e| LinkError::Unreadable(e.to_string()))?;
        f.check()?;
        Ok(f)
    }

    fn check(&self) -> Result<(), LinkError> {
        let bad = |m: String| Err(LinkError::Protocol(m));
        match self {
            Frame::Hello {
                versions,
                name,
                devices,
                window,
                heartbeat_ms,
                held,
                ..
            } => {
                if versions.is_empty() || versions.len() > 64 {
                    return bad("a hello names no protocol version (or too many)".into());
                }
                if name.is_empty() || name.len() > 64 {
                    return bad("a port server's name must be 1 to 64 bytes".into());
                }
                if devices.len() > 1000 {
                    return bad(format!("{} devices: at most 1000", devices.len()));
                }
                if *window == 0 || *window > MAX_WINDOW {
                    return bad(format!("a window of {window}: use 1 to {MAX_WINDOW}"));
                }
                if held.len() > 100_000 {
                    return bad(format!(
                        "a hello listing {} held messages: at most 100000",
                        held.len()
                    ));
                }
                if *heartbeat_ms < 100 || *heartbeat_ms > 3_600_000 {
                    return bad(format!(
                        "a heartbeat of {heartbeat_ms} ms: use 100 to 3600000"
                    ));
                }
            }
            Frame::Ack { ids } if ids.len() > 100_000 => {
                return bad(format!("an ack of {} ids: at most 100000", ids.len()));
            }
            Frame::Submit {
                segments,
                to,
                from,
                body,
                device,
                ..
            } => {
                if *segments == 0 || *segments > 255 {
                    return bad(format!("a submit of {segments} parts: 1 to 255"));
                }
                if to.is_empty() || to.len() > MAX_FIELD {
                    return bad("a submit's recipient must be 1 to 256 bytes".into());
                }
                if from.as_ref().is_some_and(|f| f.len() > MAX_FIELD)
                    || device.as_ref().is_some_and(|d| d.len() > MAX_FIELD)
                {
                    return bad("a submit's sender or device over 256 bytes".into());
                }
                if body.len() > MAX_BODY {
                    return bad(format!(
                        "a submit's text of {} bytes: at most {MAX_BODY}",
                        body.len()
                    ));
                }
            }
            Frame::Status { devices, .. } if devices.len() > 1000 => {
                return bad(format!("{} devices: at most 1000", devices.len()));
            }
            Frame::Item { report, .. } => report.check().map_err(LinkError::Protocol)?,
            _ => {}
        }
        Ok(())
    }
}

/// Reads the first frame of a link, a hello, as every version writes it: the keys this
/// version knows are read and any others left aside (a newer port server's hello may
/// carry more), so that two versions can always agree on one or say clearly that they
/// cannot. The versions it names, and the hello if it reads as one.
pub fn decode_hello(text: &str) -> (Vec<u32>, Result<Frame, LinkError>) {
    const KNOWN: &[&str] = &[
        "t",
        "versions",
        "name",
        "build",
        "devices",
        "window",
        "heartbeat_ms",
        "held",
    ];
    if text.len() > MAX_FRAME {
        return (Vec::new(), Err(LinkError::TooLarge(text.len())));
    }
    let mut v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (Vec::new(), Err(LinkError::Unreadable(e.to_string()))),
    };
    let versions: Vec<u32> = v
        .get("versions")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64())
                .filter_map(|x| u32::try_from(x).ok())
                .take(64)
                .collect()
        })
        .unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.retain(|k, _| KNOWN.contains(&k.as_str()));
    }
    let frame = serde_json::from_value::<Frame>(v)
        .map_err(|e| LinkError::Unreadable(e.to_string()))
        .and_then(|f| f.check().map(|_| f));
    (versions, frame)
}

/// The version both sides speak: the highest in common, `None` when there is none.
pub fn agree(ours: &[u32], theirs: &[u32]) -> Option<u32> {
    ours.iter().filter(|v| theirs.contains(v)).max().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello() -> Frame {
        Frame::Hello {
            versions: vec![1],
            name: "branch1".into(),
            build: "textgate 0.1.0".into(),
            devices: vec![DeviceInfo {
                name: "modem1".into(),
                kind: "modem".into(),
                state: "up".into(),
            }],
            window: 64,
            heartbeat_ms: 10_000,
            held: vec![41],
        }
    }

    #[test]
    fn frames_read_back_as_written() {
        let frames = vec![
            hello(),
            Frame::Welcome {
                version: 1,
                node: "central-a".into(),
            },
            Frame::Submit {
                message_id: 42,
                attempt: 2,
                device: Some("modem1".into()),
                to: "+15551234567".into(),
                from: None,
                body: "Zażółć 😀".into(),
                segments: 1,
            },
            Frame::Taken {
                message_id: 42,
                attempt: 2,
            },
            Frame::Item {
                id: 7,
                report: Report::Outcome {
                    message_id: 42,
                    attempt: 2,
                    device: "modem1".into(),
                    result: SendResult::Sent {
                        part_ids: vec!["12.15551234567.1".into()],
                    },
                    at: 1,
                },
            },
            Frame::Ack { ids: vec![7, 8] },
            Frame::Drain,
            Frame::Resume,
            Frame::Ping { at: 5 },
        ];
        for f in frames {
            let text = f.encode();
            assert_eq!(Frame::decode(&text), Ok(f.clone()), "{text}");
        }
        assert!(hello().encode().starts_with("{\"t\":\"hello\""));
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        assert!(matches!(
            Frame::decode("{\"t\":\"launch\"}"),
            Err(LinkError::Unreadable(_))
        ));
        assert!(matches!(
            Frame::decode("{\"t\":\"ping\",\"at\":1,\"extra\":2}"),
            Err(LinkError::Unreadable(_))
        ));
        assert!(matches!(
            Frame::decode(&"x".repeat(MAX_FRAME + 1)),
            Err(LinkError::TooLarge(_))
        ));
        let zero = hello().encode().replace("\"window\":64", "\"window\":0");
        assert!(Frame::decode(&zero)
            .unwrap_err()
            .to_string()
            .contains("window of 0"));
        let huge = Frame::Item {
            id: 1,
            report: Report::Receipt {
                device: "m".into(),
                device_msg_id: "x".repeat(300),
                delivered: true,
                code: None,
                at: 1,
            },
        };
        assert!(Frame::decode(&huge.encode())
            .unwrap_err()
            .to_string()
            .contains("message id of 300 bytes"));
        let none = hello()
            .encode()
            .replace("\"versions\":[1]", "\"versions\":[]");
        assert!(matches!(Frame::decode(&none), Err(LinkError::Protocol(_))));
    }

    #[test]
    fn a_newer_hello_is_read_as_far_as_this_version_knows_it() {
        let newer = hello().encode().replace(
            "\"versions\":[1]",
            "\"versions\":[1,2],\"compression\":\"zstd\"",
        );
        assert!(Frame::decode(&newer).is_err(), "strict everywhere else");
        let (versions, f) = decode_hello(&newer);
        assert_eq!(versions, vec![1, 2]);
        assert!(matches!(f, Ok(Frame::Hello { .. })));
        let only2 = r#"{"t":"hello","versions":[2],"name":"b","something":"new"}"#;
        let (versions, f) = decode_hello(only2);
        assert_eq!(versions, vec![2]);
        assert!(f.is_err());
    }

    #[test]
    fn versions_meet_at_the_highest_in_common() {
        assert_eq!(agree(&[1, 2], &[1]), Some(1));
        assert_eq!(agree(&[1, 2], &[2, 3]), Some(2));
        assert_eq!(agree(&[1], &[2]), None);
    }

    proptest! {
        #[test]
        fn any_text_is_a_frame_or_an_error(text in ".{0,300}") {
            let _ = Frame::decode(&text);
            let _ = decode_hello(&text);
        }

        #[test]
        fn a_hello_read_leniently_reads_back_strictly(
            versions in proptest::collection::vec(0u32..5, 0..4),
            window in 0u32..20_000,
            extra in "[a-z_]{1,12}",
        ) {
            let text = format!(
                r#"{{"t":"hello","versions":{versions:?},"name":"b","build":"x","devices":[],"window":{window},"heartbeat_ms":1000,"{extra}":1}}"#
            );
            if let (_, Ok(hello)) = decode_hello(&text) {
                prop_assert_eq!(Frame::decode(&hello.encode()), Ok(hello));
            }
        }
    }
}
