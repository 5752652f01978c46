//! A PDU a GSM modem hands back (`+CMGR`, `+CMGL`, `+CMT`, `+CDS`), decoded by
//! `tpdu::decode` when the input is UTF-8 (the hex path: white space, case, odd lengths,
//! non-hex characters) and by `tpdu::decode_octets` and `decode_tpdu` on the raw bytes (the
//! field path: every length against what is left).
//!
//! Checked:
//! - nothing panics, and every error can be shown;
//! - a decoded PDU is no longer than the input and its parts are within the limits of one
//!   SMS: a concatenation element numbers parts 1..=total, GSM 7-bit text has at most 160
//!   characters, UCS-2 text at most 70, 8-bit data at most 140 octets; a time stamp has
//!   both its UTC time and its offset or neither;
//! - every decoded SMS-SUBMIT that `encode_submit` can write (a numeric destination, GSM
//!   7-bit or UCS-2, no header or only an 8-bit concatenation element) is written again:
//!   that succeeds unless the destination has other characters than 1-20 digits, or UCS-2
//!   data of an odd length grew by its replacement character; it decodes to the same
//!   destination, text, concatenation, TP-MR, TP-SRR, TP-RD and relative TP-VP; and
//!   writing what it decodes to gives the same hex again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use textgate_core::address::{Recipient, E164};
use textgate_core::encoding::tpdu::{
    self, Address, Alphabet, Content, Part, Pdu, PduError, Submit, SubmitError, SubmitOptions,
    Timestamp, Tpdu, Validity,
};
use textgate_core::encoding::udh::ConcatRef;
use textgate_core::encoding::{gsm7, ucs2, Encoding};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // The hex path can only give as many octets as half the characters.
        check(tpdu::decode(text), text.len() / 2);
    }
    check(tpdu::decode_octets(data), data.len());
    match tpdu::decode_tpdu(data) {
        Ok(tpdu) => check_tpdu(&tpdu),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});

fn check(result: Result<Pdu, PduError>, max_octets: usize) {
    let pdu = match result {
        Ok(pdu) => pdu,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(pdu.tpdu_len >= 1 && pdu.tpdu_len < max_octets, "{pdu:?}");
    check_tpdu(&pdu.tpdu);
    if let Tpdu::Submit(submit) = &pdu.tpdu {
        resubmit(submit);
    }
}

fn check_tpdu(tpdu: &Tpdu) {
    match tpdu {
        Tpdu::Deliver(d) => {
            check_user_data(d.data_coding.alphabet, &d.user_data);
            check_time(&d.service_centre_time);
        }
        Tpdu::Submit(s) => {
            check_user_data(s.data_coding.alphabet, &s.user_data);
            if let Validity::Absolute(t) = &s.validity {
                check_time(t);
            }
        }
        Tpdu::StatusReport(r) => {
            check_time(&r.service_centre_time);
            check_time(&r.discharge_time);
            assert!(!r.status.description().is_empty());
            let _ = r.status.class().is_final();
        }
    }
}

fn check_user_data(alphabet: Alphabet, user_data: &tpdu::UserData) {
    if let Some(c) = user_data.concat() {
        assert!(
            c.total >= 1 && c.sequence >= 1 && c.sequence <= c.total,
            "{c:?}"
        );
    }
    match (&user_data.content, alphabet) {
        (Content::Text(text), Alphabet::Gsm7) => assert!(text.chars().count() <= 160),
        (Content::Text(text), Alphabet::Ucs2) => assert!(text.chars().count() <= 70),
        (Content::Data(bytes), Alphabet::Data8) => assert!(bytes.len() <= 140),
        (content, alphabet) => panic!("{alphabet:?} decoded as {content:?}"),
    }
    let _ = user_data.text();
}

fn check_time(t: &Timestamp) {
    assert_eq!(t.utc_ms.is_some(), t.offset_minutes.is_some(), "{t:?}");
}

/// Writes a decoded SMS-SUBMIT again, if our encoder can, and checks what comes out.
fn resubmit(s: &Submit) {
    let destination = match &s.destination {
        Address::International(n) => Recipient::Number(E164::from_stored(n)),
        Address::Other { digits, .. } => Recipient::ShortCode(digits.clone()),
        Address::Alphanumeric(_) => return,
    };
    let concat = match &s.user_data.header {
        None => None,
        Some(h) => match h.concat {
            Some(c) if h.elements.len() == 1 && matches!(c.reference, ConcatRef::Bits8(_)) => {
                Some(c)
            }
            _ => return,
        },
    };
    let Some(encoding) = s.data_coding.alphabet.encoding() else {
        return;
    };
    let text = s.user_data.text().into_owned();
    let data = match encoding {
        // What gsm7::decode gives is GSM text again, in no more septets than it came in.
        Encoding::Gsm7 => gsm7::encode(&text).expect("decoded GSM 7-bit text encodes"),
        Encoding::Ucs2 => ucs2::encode(&text),
    };
    let options = SubmitOptions {
        smsc: None,
        status_report: s.status_report,
        validity: s.validity.duration(),
        message_reference: s.message_reference,
        reject_duplicates: s.reject_duplicates,
    };
    let part = Part {
        encoding,
        data: &data,
        concat,
    };
    let pdu = match tpdu::encode_submit(&destination, &part, &options) {
        Ok(pdu) => pdu,
        Err(SubmitError::BadAddress { .. }) => {
            let digits = destination.as_str().trim_start_matches('+');
            assert!(
                digits.is_empty()
                    || digits.len() > 20
                    || !digits.bytes().all(|b| b.is_ascii_digit()),
                "{digits:?} refused"
            );
            return;
        }
        Err(SubmitError::TooLong { .. }) if encoding == Encoding::Ucs2 => return,
        Err(e) => panic!("{e}: {s:?}"),
    };

    let again = tpdu::decode(&pdu.hex).expect("what encode_submit writes decodes");
    assert_eq!(again.tpdu_len * 2 + 2, pdu.hex.len());
    let Tpdu::Submit(t) = again.tpdu else {
        panic!("not a SUBMIT: {again:?}");
    };
    assert_eq!(t.destination, Address::from(&destination));
    assert_eq!(t.user_data.text(), text);
    assert_eq!(t.user_data.concat(), concat);
    assert_eq!(t.data_coding.octet, encoding.dcs());
    assert_eq!(
        (t.message_reference, t.status_report, t.reject_duplicates),
        (s.message_reference, s.status_report, s.reject_duplicates)
    );
    match s.validity {
        Validity::Relative(vp) => assert_eq!(t.validity, Validity::Relative(vp)),
        _ => assert_eq!(t.validity, Validity::None),
    }

    // What it decodes to is written the same way again.
    let data = match encoding {
        Encoding::Gsm7 => gsm7::encode(&t.user_data.text()).expect("GSM 7-bit text encodes"),
        Encoding::Ucs2 => ucs2::encode(&t.user_data.text()),
    };
    let part = Part {
        encoding,
        data: &data,
        concat: t.user_data.concat(),
    };
    let options = SubmitOptions {
        validity: t.validity.duration(),
        ..options
    };
    let rewritten = tpdu::encode_submit(&destination, &part, &options).expect("written once");
    assert_eq!(rewritten, pdu);
}
