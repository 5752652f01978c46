//! Inbound short_message decoding: `text::decode` for any data_coding and bytes, and
//! `reassembly::split_udh` on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use textgate_drivers::smpp::reassembly::split_udh;
use textgate_drivers::smpp::text::{decode, Decoded, DefaultAlphabet};

fuzz_target!(|data: &[u8]| {
    let [data_coding, alphabet, bytes @ ..] = data else {
        return;
    };
    let alphabet = [
        DefaultAlphabet::Gsm7,
        DefaultAlphabet::Latin1,
        DefaultAlphabet::Ascii,
    ][usize::from(*alphabet % 3)];
    match decode(*data_coding, bytes, alphabet) {
        Decoded::Binary { bytes: out } => assert_eq!(out, bytes, "binary is kept as received"),
        Decoded::Text { text, encoding } => {
            assert!(["gsm7", "latin1", "ascii", "ucs2"].contains(&encoding));
            if encoding == "latin1" || encoding == "ascii" {
                assert_eq!(text.chars().count(), bytes.len(), "one character per octet");
            }
        }
    }
    match split_udh(bytes) {
        Ok((concat, payload)) => {
            // The payload is what follows the header: a suffix of the input, and the header
            // is the UDHL octet plus the octets it counts.
            let header = 1 + usize::from(bytes[0]);
            assert_eq!(payload, &bytes[header..]);
            if let Some((_reference, total, seq)) = concat {
                // An out-of-range concatenation element is ignored (TS 23.040 §9.2.3.24.1).
                assert!(total >= 1 && seq >= 1 && seq <= total, "{concat:?}");
            }
            let _ = decode(*data_coding, &payload, alphabet);
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
