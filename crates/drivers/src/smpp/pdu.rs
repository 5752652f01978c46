//! Building submit_sm PDUs (SMPP 3.4 §4.4.1) from an outbound message: addresses with their
//! TON/NPI, the text in GSM 03.38 or UCS-2 from our own codec, and long texts as UDH parts,
//! SAR parts or one message_payload.

use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, ServiceType, Ton,
};
use textgate_core::config::{LongMessages, SmppConfig};
use textgate_core::encoding::udh::{Concat, ConcatRef};
use textgate_core::encoding::{Body, Encoding};

use crate::{OutboundSms, SendError};

/// esm_class with the UDH indicator (§5.2.12, bit 6). Built from the byte: rusmpp 0.4's
/// `EsmClass::default()` encodes 0x08, not 0x00.
const ESM_UDHI: u8 = 0x40;
/// data_coding for UCS-2 (§5.2.19).
const DC_UCS2: u8 = 0x08;

/// TON, NPI and the address digits for a number, short code or alphanumeric id (§5.2.5–6).
pub fn address(addr: &str, ton: Option<u8>, npi: Option<u8>) -> (u8, u8, String) {
    let (auto_ton, auto_npi, value) = if let Some(digits) = addr.strip_prefix('+') {
        (1, 1, digits.to_string()) // international, ISDN (E.164)
    } else if addr.is_empty() {
        (0, 0, String::new())
    } else if addr.bytes().all(|b| b.is_ascii_digit()) {
        (3, 0, addr.to_string()) // a short code: network specific
    } else {
        (5, 0, addr.to_string()) // alphanumeric (TS 23.040 §9.1.2.5)
    };
    (ton.unwrap_or(auto_ton), npi.unwrap_or(auto_npi), value)
}

/// A NUL-terminated field (§3.1) from text; too long for the field is an error.
pub fn c_octet_str<const MIN: usize, const MAX: usize>(
    value: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    COctetString::from_vec(bytes).map_err(|e| format!("\"{value}\": {e}"))
}

fn c_octet<const MIN: usize, const MAX: usize>(
    field: &str,
    value: &str,
) -> Result<COctetString<MIN, MAX>, SendError> {
    c_octet_str(value).map_err(|e| SendError::Permanent {
        code: None,
        reason: format!("{field} cannot be sent over SMPP: {e}"),
    })
}

fn octets<const MIN: usize, const MAX: usize>(
    bytes: Vec<u8>,
) -> Result<OctetString<MIN, MAX>, SendError> {
    OctetString::from_vec(bytes).map_err(|e| SendError::Permanent {
        code: None,
        reason: format!("a part does not fit in short_message: {e}"),
    })
}

/// The submit_sm PDUs for one message, in part order. `reference` numbers the parts of a
/// long text (TS 23.040 §9.2.3.24.1); it must differ between long texts to one handset.
pub fn submits(
    sms: &OutboundSms,
    cfg: &SmppConfig,
    reference: u16,
) -> Result<Vec<SubmitSm>, SendError> {
    let body = Body::new(&sms.body, 255).map_err(|e| SendError::Permanent {
        code: None,
        reason: e.to_string(),
    })?;
    let (dc, parts) = match body.encoding() {
        Encoding::Gsm7 => (cfg.gsm_data_coding, body.parts()),
        Encoding::Ucs2 => (DC_UCS2, body.parts()),
    };
    let (src_ton, src_npi, src) = address(
        sms.from.as_deref().unwrap_or(""),
        cfg.source_ton,
        cfg.source_npi,
    );
    let (dst_ton, dst_npi, dst) = address(&sms.to, cfg.dest_ton, cfg.dest_npi);
    let base = |esm: u8,
                short_message: Vec<u8>,
                tlvs: Vec<MessageSubmissionRequestTlvValue>|
     -> Result<SubmitSm, SendError> {
        Ok(SubmitSm::builder()
            .service_type(ServiceType::default())
            .source_addr_ton(Ton::from(src_ton))
            .source_addr_npi(Npi::from(src_npi))
            .source_addr(c_octet("source_addr", &src)?)
            .dest_addr_ton(Ton::from(dst_ton))
            .dest_addr_npi(Npi::from(dst_npi))
            .destination_addr(c_octet("destination_addr", &dst)?)
            .esm_class(EsmClass::from(esm))
            .registered_delivery(RegisteredDelivery::from(u8::from(cfg.registered_delivery)))
            .data_coding(DataCoding::from(dc))
            .short_message(octets(short_message)?)
            .tlvs(tlvs)
            .build())
    };
    if parts.len() == 1 {
        let single = parts.into_iter().next().unwrap_or_default();
        return Ok(vec![base(0, single, Vec::new())?]);
    }
    let total = u8::try_from(parts.len()).map_err(|_| SendError::Permanent {
        code: None,
        reason: "a text of more than 255 parts cannot be concatenated".into(),
    })?;
    match cfg.long_messages {
        LongMessages::Payload => {
            let all: Vec<u8> = parts.concat();
            let payload = MessagePayload::new(AnyOctetString::from_vec(all));
            Ok(vec![base(
                0,
                Vec::new(),
                vec![MessageSubmissionRequestTlvValue::MessagePayload(payload)],
            )?])
        }
        LongMessages::Udh => parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let concat = Concat::new(ConcatRef::Bits8(reference as u8), total, i as u8 + 1)
                    .map_err(|e| SendError::Permanent {
                        code: None,
                        reason: e.to_string(),
                    })?;
                let mut sm = concat.header();
                sm.extend_from_slice(&part);
                base(ESM_UDHI, sm, Vec::new())
            })
            .collect(),
        LongMessages::Sar => parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                base(
                    0,
                    part,
                    vec![
                        MessageSubmissionRequestTlvValue::SarMsgRefNum(reference),
                        MessageSubmissionRequestTlvValue::SarTotalSegments(total),
                        MessageSubmissionRequestTlvValue::SarSegmentSeqnum(i as u8 + 1),
                    ],
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::codec::encode;
    use rusmpp::{Command, CommandStatus};

    fn cfg(long: LongMessages) -> SmppConfig {
        let text = format!(
            "host='h'\nsystem_id='s'\nlong_messages='{}'\n",
            match long {
                LongMessages::Udh => "udh",
                LongMessages::Sar => "sar",
                LongMessages::Payload => "payload",
            }
        );
        toml::from_str(&text).expect("config")
    }

    fn sms(to: &str, from: Option<&str>, body: &str) -> OutboundSms {
        OutboundSms {
            message_id: 1,
            attempt: 1,
            to: to.into(),
            from: from.map(String::from),
            body: body.into(),
            segments: 1,
        }
    }

    /// The submit_sm body after the header: service_type, then the address fields, then
    /// esm_class, protocol_id, priority_flag, schedule_delivery_time, validity_period,
    /// registered_delivery, replace_if_present, data_coding, sm_default_msg_id, sm_length
    /// and short_message (§4.4.1).
    fn fields(pdu: SubmitSm) -> (Vec<u8>, u8, u8, u8, Vec<u8>) {
        let wire = encode(&Command::new(CommandStatus::EsmeRok, 1, pdu));
        let body = &wire[16..];
        let mut i = 1; // empty service_type
        let cstr = |i: &mut usize| {
            let start = *i;
            while body[*i] != 0 {
                *i += 1;
            }
            *i += 1;
            body[start..*i - 1].to_vec()
        };
        let src_ton_npi = vec![body[i], body[i + 1]];
        i += 2;
        let _src = cstr(&mut i);
        i += 2;
        let _dst = cstr(&mut i);
        let esm = body[i];
        i += 3; // esm_class, protocol_id, priority_flag
        cstr(&mut i); // schedule_delivery_time
        cstr(&mut i); // validity_period
        let reg = body[i];
        let dc = body[i + 2];
        let len = body[i + 4] as usize;
        let sm = body[i + 5..i + 5 + len].to_vec();
        (src_ton_npi, esm, reg, dc, sm)
    }

    #[test]
    fn addresses_get_their_ton_and_npi() {
        assert_eq!(
            address("+15551234567", None, None),
            (1, 1, "15551234567".into())
        );
        assert_eq!(address("72345", None, None), (3, 0, "72345".into()));
        assert_eq!(address("ACME", None, None), (5, 0, "ACME".into()));
        assert_eq!(address("ACME", Some(1), Some(1)), (1, 1, "ACME".into()));
    }

    #[test]
    fn a_single_gsm_text_is_plain_bytes_with_esm_class_zero() {
        let pdus = submits(
            &sms("+15551234567", Some("ACME"), "Hi {€}"),
            &cfg(LongMessages::Udh),
            7,
        )
        .unwrap();
        assert_eq!(pdus.len(), 1);
        let (src, esm, reg, dc, sm) = fields(pdus.into_iter().next().unwrap());
        assert_eq!((src, esm, reg, dc), (vec![5, 0], 0x00, 1, 0));
        // Unpacked septets, extension characters escaped (TS 23.038 §6.2.1.1).
        assert_eq!(sm, [0x48, 0x69, 0x20, 0x1B, 0x28, 0x1B, 0x65, 0x1B, 0x29]);
    }

    #[test]
    fn long_texts_as_udh_sar_or_payload() {
        let text = "x".repeat(200);
        let udh = submits(
            &sms("+15551234567", None, &text),
            &cfg(LongMessages::Udh),
            0x2A,
        )
        .unwrap();
        assert_eq!(udh.len(), 2);
        let (_, esm, _, _, sm) = fields(udh[1].clone());
        assert_eq!(esm, 0x40);
        assert_eq!(
            &sm[..6],
            [0x05, 0x00, 0x03, 0x2A, 0x02, 0x02],
            "TS 23.040 §9.2.3.24.1"
        );
        assert_eq!(sm.len(), 6 + 47);
        let sar = submits(
            &sms("+15551234567", None, &text),
            &cfg(LongMessages::Sar),
            9,
        )
        .unwrap();
        assert_eq!(sar.len(), 2);
        assert_eq!(fields(sar[0].clone()).1, 0);
        assert_eq!(sar[0].tlvs().len(), 3);
        let payload = submits(
            &sms("+15551234567", None, &text),
            &cfg(LongMessages::Payload),
            9,
        )
        .unwrap();
        assert_eq!(payload.len(), 1);
        assert!(fields(payload[0].clone()).4.is_empty());
    }

    #[test]
    fn ucs2_text_uses_data_coding_8() {
        let pdus = submits(
            &sms("+15551234567", None, "Привет 👋"),
            &cfg(LongMessages::Udh),
            1,
        )
        .unwrap();
        let (_, _, _, dc, sm) = fields(pdus[0].clone());
        assert_eq!(dc, 0x08);
        assert_eq!(&sm[..2], [0x04, 0x1F]);
        assert_eq!(
            &sm[sm.len() - 4..],
            [0xD8, 0x3D, 0xDC, 0x4B],
            "a surrogate pair kept whole"
        );
    }
}
