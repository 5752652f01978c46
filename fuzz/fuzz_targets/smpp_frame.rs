//! The SMPP framer (`codec::next_frame`) over arbitrary bytes from the SMSC, then what the
//! session does with a deliver_sm (TLVs, receipt, UDH, reassembly key, text decoding), and a
//! re-encode of every decoded command.
//!
//! Input: the first byte picks the frame size limit, the rest is the stream.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rusmpp::tlvs::TlvValue;
use rusmpp::{Command, Pdu};
use textgate_drivers::smpp::codec::{self, Frame, HEADER_LEN};
use textgate_drivers::smpp::reassembly::split_udh;
use textgate_drivers::smpp::receipt::{self, IdFormat};
use textgate_drivers::smpp::text::{self, DefaultAlphabet};

const ID_FORMATS: [IdFormat; 4] = [
    IdFormat::Auto,
    IdFormat::Hex,
    IdFormat::Decimal,
    IdFormat::Text,
];
const ALPHABETS: [DefaultAlphabet; 3] = [
    DefaultAlphabet::Gsm7,
    DefaultAlphabet::Latin1,
    DefaultAlphabet::Ascii,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let max_len = if sel & 1 == 0 {
        codec::DEFAULT_MAX_LEN
    } else {
        512
    };
    let mut buf = BytesMut::from(stream);
    let mut consumed = 0usize;
    loop {
        let before = buf.len();
        match codec::next_frame(&mut buf, max_len) {
            Ok(Some(frame)) => {
                // The frame took exactly the length it declared.
                let declared =
                    u32::from_be_bytes(stream[consumed..consumed + 4].try_into().unwrap()) as usize;
                let taken = before - buf.len();
                assert_eq!(
                    taken, declared,
                    "a frame took other than its declared length"
                );
                assert!((HEADER_LEN..=max_len).contains(&taken));
                consumed += taken;
                if let Frame::Command(command) = frame {
                    handle(&command, sel);
                    round_trip(&command, max_len);
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }
});

/// Re-encoding a command that decoded does not panic, and frames as one whole frame with
/// the same header. That the body decodes again is rusmpp's business, not checked: rusmpp
/// 0.4 re-encodes some malformed PDUs (an alert_notification with a broken TLV area) into
/// bytes it does not decode, and textgate never re-encodes what it receives.
fn round_trip(command: &Command, max_len: usize) {
    let wire = codec::encode(command);
    let declared = u32::from_be_bytes(wire[..4].try_into().unwrap()) as usize;
    assert_eq!(declared, wire.len());
    let mut again = BytesMut::from(&wire[..]);
    match codec::next_frame(&mut again, max_len.max(wire.len())) {
        Ok(Some(Frame::Command(c))) => {
            assert_eq!(
                (c.id(), c.status, c.sequence_number),
                (command.id(), command.status, command.sequence_number),
                "a re-encoded header decoded differently"
            );
        }
        Ok(Some(Frame::Malformed {
            command_id,
            sequence_number,
            ..
        })) => {
            assert_eq!(
                (command_id, sequence_number),
                (u32::from(command.id()), command.sequence_number)
            );
        }
        other => panic!("a re-encoded command did not frame: {other:?}"),
    }
    assert!(again.is_empty());
}

/// What `session::Session::deliver` does with a deliver_sm, without the session: the same
/// calls into the public modules, on the decoded fields.
fn handle(command: &Command, sel: u8) {
    let Some(Pdu::DeliverSm(d)) = command.pdu() else {
        return;
    };
    let esm = u8::from(d.esm_class);
    let dc = u8::from(d.data_coding);
    let mut receipted = None;
    let mut state = None;
    let mut network_error = None;
    let mut payload = None;
    let mut sar = (None, None, None);
    for tlv in d.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => {
                receipted = Some(
                    String::from_utf8_lossy(id.as_ref())
                        .trim_end_matches('\0')
                        .to_string(),
                )
            }
            Some(TlvValue::MessageState(s)) => state = Some(u8::from(*s)),
            Some(TlvValue::NetworkErrorCode(n)) => {
                let code = n.error_code.to_be_bytes();
                network_error = Some(vec![u8::from(n.network_type), code[0], code[1]]);
            }
            Some(TlvValue::MessagePayload(p)) => payload = Some(p.value.as_ref().to_vec()),
            Some(TlvValue::SarMsgRefNum(r)) => sar.0 = Some(*r),
            Some(TlvValue::SarTotalSegments(t)) => sar.1 = Some(*t),
            Some(TlvValue::SarSegmentSeqnum(s)) => sar.2 = Some(*s),
            _ => {}
        }
    }
    let short: Vec<u8> = payload.unwrap_or_else(|| d.short_message().as_ref().to_vec());
    let _from = String::from_utf8_lossy(d.source_addr.as_ref()).into_owned();
    let _to = String::from_utf8_lossy(d.destination_addr.as_ref()).into_owned();
    if esm & 0x3C == 0x04 || receipted.is_some() {
        let text = String::from_utf8_lossy(&short).to_string();
        if let Some(r) =
            receipt::parse(&text, receipted.as_deref(), state, network_error.as_deref())
        {
            let rf = ID_FORMATS[usize::from(sel >> 1) % 4];
            let sf = ID_FORMATS[usize::from(sel >> 3) % 4];
            let _ = receipt::receipt_id_to_resp(&r.id, rf, sf);
            let _ = (r.state.is_final(), r.state.delivered(), r.state.as_stat());
        }
        return;
    }
    let (concat, data) = if esm & 0x40 != 0 {
        match split_udh(&short) {
            Ok(x) => x,
            Err(_) => (None, short.clone()),
        }
    } else if let (Some(r), Some(t), Some(s)) = sar {
        (Some((r, t, s)), short.clone())
    } else {
        (None, short.clone())
    };
    let _ = concat;
    let _ = text::decode(dc, &data, ALPHABETS[usize::from(sel >> 5) % 3]);
}
