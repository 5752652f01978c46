//! SMPP 3.4 framing (§3.2): a PDU is a 4-byte big-endian `command_length` that counts
//! itself, then `command_id`, `command_status`, `sequence_number` and the body. The PDUs
//! themselves are decoded and encoded by the `rusmpp` crate; this module cuts the stream
//! into frames so that one malformed PDU costs a `generic_nack` (§4.3) and not the
//! connection: the frame's length is trusted to find the next one, whatever its body says.
//! Only a length that cannot be right (under 16 bytes, or over the limit) ends the session,
//! because after it no frame boundary can be found again.

use bytes::{Buf, BytesMut};
use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::{Encode, Length};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};

/// The header: command_length, command_id, command_status, sequence_number (§3.2).
pub const HEADER_LEN: usize = 16;
/// The largest PDU accepted by default: a submit_sm or deliver_sm with a full
/// message_payload stays far below it.
pub const DEFAULT_MAX_LEN: usize = 64 * 1024;

/// One frame from the stream.
#[derive(Debug)]
pub enum Frame {
    /// A PDU that decoded.
    Command(Box<Command>),
    /// A PDU with a plausible length that did not decode: answer it with [`generic_nack`]
    /// (`status`) and carry on.
    Malformed {
        /// Its command_id, as sent.
        command_id: u32,
        /// Its sequence_number, to answer with.
        sequence_number: u32,
        /// `ESME_RINVCMDID` for an unknown command, else `ESME_RINVCMDLEN`.
        status: CommandStatus,
        /// What was wrong, for the log.
        reason: String,
    },
}

/// The stream cannot be read any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A command_length below the header's 16 bytes.
    #[error("a PDU declared {0} bytes, fewer than its own 16-byte header")]
    TooShort(usize),
    /// A command_length over the limit.
    #[error("a PDU declared {0} bytes, more than the {1}-byte limit")]
    TooLong(usize, usize),
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Takes the next frame out of `buf`, if a whole one is there.
pub fn next_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = be32(&buf[..4]) as usize;
    if len < HEADER_LEN {
        return Err(FrameError::TooShort(len));
    }
    if len > max_len {
        return Err(FrameError::TooLong(len, max_len));
    }
    if buf.len() < len {
        buf.reserve(len - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(len);
    let command_id = be32(&frame[4..8]);
    let sequence_number = be32(&frame[12..16]);
    frame.advance(4);
    let body_len = len - 4;
    match Command::decode(&mut frame, body_len) {
        Ok((command, _)) if !matches!(command.id(), CommandId::Other(_)) => {
            Ok(Some(Frame::Command(Box::new(command))))
        }
        Ok(_) => Ok(Some(Frame::Malformed {
            command_id,
            sequence_number,
            status: CommandStatus::EsmeRinvcmdid,
            reason: format!("unknown command_id 0x{command_id:08x}"),
        })),
        Err(e) => {
            let known = !matches!(CommandId::from(command_id), CommandId::Other(_));
            Ok(Some(Frame::Malformed {
                command_id,
                sequence_number,
                status: if known {
                    CommandStatus::EsmeRinvcmdlen
                } else {
                    CommandStatus::EsmeRinvcmdid
                },
                reason: format!("command 0x{command_id:08x} did not decode: {e}"),
            }))
        }
    }
}

/// A command as bytes on the wire, command_length included.
pub fn encode(command: &Command) -> Vec<u8> {
    let body = command.length();
    let mut out = vec![0u8; 4 + body];
    out[..4].copy_from_slice(&((4 + body) as u32).to_be_bytes());
    command.encode(&mut out[4..]);
    out
}

/// The answer to a PDU that could not be read (§4.3.1).
pub fn generic_nack(sequence_number: u32, status: CommandStatus) -> Command {
    Command::new(status, sequence_number, Pdu::GenericNack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enquire_link(seq: u32) -> Vec<u8> {
        encode(&Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLink))
    }

    #[test]
    fn frames_come_out_whole_and_in_order() {
        let mut wire = enquire_link(7);
        assert_eq!(
            wire,
            [0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 7],
            "SMPP 3.4 §4.11.1"
        );
        wire.extend(enquire_link(8));
        let mut buf = BytesMut::from(&wire[..20]);
        let Some(Frame::Command(c)) = next_frame(&mut buf, DEFAULT_MAX_LEN).unwrap() else {
            panic!()
        };
        assert_eq!((c.id(), c.sequence_number), (CommandId::EnquireLink, 7));
        assert!(
            next_frame(&mut buf, DEFAULT_MAX_LEN).unwrap().is_none(),
            "half a frame waits"
        );
        buf.extend_from_slice(&wire[20..]);
        let Some(Frame::Command(c)) = next_frame(&mut buf, DEFAULT_MAX_LEN).unwrap() else {
            panic!()
        };
        assert_eq!(c.sequence_number, 8);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_malformed_pdu_is_skipped_and_named_for_generic_nack() {
        // An unknown command id with a valid length, then a submit_sm whose body is cut short
        // (its length covers only part of the mandatory fields), then a good PDU.
        let mut wire = vec![0, 0, 0, 16, 0x00, 0x00, 0x01, 0x99, 0, 0, 0, 0, 0, 0, 0, 3];
        wire.extend([
            0, 0, 0, 19, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 4, b'x', b'y', b'z',
        ]);
        wire.extend(enquire_link(5));
        let mut buf = BytesMut::from(&wire[..]);
        match next_frame(&mut buf, DEFAULT_MAX_LEN).unwrap() {
            Some(Frame::Malformed {
                sequence_number: 3,
                status: CommandStatus::EsmeRinvcmdid,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match next_frame(&mut buf, DEFAULT_MAX_LEN).unwrap() {
            Some(Frame::Malformed {
                sequence_number: 4,
                status: CommandStatus::EsmeRinvcmdlen,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(next_frame(&mut buf, DEFAULT_MAX_LEN).unwrap(), Some(Frame::Command(c)) if c.sequence_number == 5)
        );
        let nack = encode(&generic_nack(4, CommandStatus::EsmeRinvcmdlen));
        assert_eq!(
            nack,
            [0, 0, 0, 16, 0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 4],
            "SMPP 3.4 §4.3.1"
        );
    }

    #[test]
    fn impossible_lengths_end_the_stream() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2, 3, 4][..]);
        assert_eq!(
            next_frame(&mut buf, DEFAULT_MAX_LEN).unwrap_err(),
            FrameError::TooShort(3)
        );
        let mut buf = BytesMut::from(&[0u8, 1, 0, 0][..]);
        assert_eq!(
            next_frame(&mut buf, 1024).unwrap_err(),
            FrameError::TooLong(65536, 1024)
        );
    }

    proptest! {
        /// Arbitrary bytes never panic the framer, and every frame it yields consumed exactly
        /// the length it declared.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut buf = BytesMut::from(&bytes[..]);
            loop {
                let before = buf.len();
                match next_frame(&mut buf, 512) {
                    Ok(Some(_)) => {
                        let declared = be32(&bytes[bytes.len() - before..][..4]) as usize;
                        prop_assert_eq!(before - buf.len(), declared);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
