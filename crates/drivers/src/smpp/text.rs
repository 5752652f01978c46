//! Decoding an inbound `short_message` (or `message_payload`) by its `data_coding`
//! (SMPP 3.4 §5.2.19), with textgate-core's GSM 03.38 and UCS-2 codecs.
//!
//! SMPP gives `data_coding` 0x00..=0x0F its own meanings (§5.2.19); from 0x10 on, SMSCs pass
//! the GSM data coding scheme through, so those values are read as 3GPP TS 23.038 §4 says.
//! Nothing here fails or panics: a coding we cannot turn into text is handed back as
//! [`Decoded::Binary`], and bad bytes inside a text become replacement characters, since an
//! inbound message must be stored whatever the network sent.
//!
//! GSM 7-bit in SMPP is *unpacked*: one septet per octet (that is what SMSCs send in
//! `short_message`; packing is an air-interface matter), so it goes straight to
//! [`gsm7::decode`].

use textgate_core::encoding::{gsm7, ucs2};

/// What `data_coding` 0x00 means on a given SMSC; parsed from the device's
/// `default_alphabet`.
pub use textgate_core::config::DefaultAlphabet;

/// An inbound message body, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A text, and the alphabet it came in.
    Text {
        /// The text.
        text: String,
        /// `"gsm7"`, `"latin1"`, `"ascii"` or `"ucs2"`.
        encoding: &'static str,
    },
    /// 8-bit data, or a coding we do not read as text (compressed, reserved, JIS, ...).
    Binary {
        /// The bytes as received.
        bytes: Vec<u8>,
    },
}

/// The alphabets a `data_coding` value can name, before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alphabet {
    Gsm7,
    Latin1,
    Ascii,
    Ucs2,
    Binary,
}

/// Decodes `bytes` as `data_coding` says (SMPP 3.4 §5.2.19; 3GPP TS 23.038 §4 for the
/// values SMPP does not define itself). `default_alphabet` is what 0x00 means on this SMSC.
/// Never panics.
pub fn decode(data_coding: u8, bytes: &[u8], default_alphabet: DefaultAlphabet) -> Decoded {
    match alphabet(data_coding, default_alphabet) {
        Alphabet::Gsm7 => text(gsm7::decode(bytes), "gsm7"),
        Alphabet::Latin1 => text(bytes.iter().map(|&b| char::from(b)).collect(), "latin1"),
        Alphabet::Ascii => text(decode_ascii(bytes), "ascii"),
        Alphabet::Ucs2 => text(ucs2::decode(bytes), "ucs2"),
        Alphabet::Binary => Decoded::Binary {
            bytes: bytes.to_vec(),
        },
    }
}

fn text(text: String, encoding: &'static str) -> Decoded {
    Decoded::Text { text, encoding }
}

/// IA5 is 7-bit: an octet with its top bit set is not a character of it, so it is shown as
/// a replacement character rather than guessed at.
fn decode_ascii(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii() {
                char::from(b)
            } else {
                ucs2::REPLACEMENT
            }
        })
        .collect()
}

/// The alphabet `data_coding` names.
fn alphabet(data_coding: u8, default_alphabet: DefaultAlphabet) -> Alphabet {
    match data_coding {
        // SMPP 3.4 §5.2.19: SMSC default alphabet.
        0x00 => match default_alphabet {
            DefaultAlphabet::Gsm7 => Alphabet::Gsm7,
            DefaultAlphabet::Latin1 => Alphabet::Latin1,
            DefaultAlphabet::Ascii => Alphabet::Ascii,
        },
        // §5.2.19: IA5 (CCITT T.50) / ASCII.
        0x01 => Alphabet::Ascii,
        // §5.2.19: octet unspecified (8-bit binary), both values.
        0x02 | 0x04 => Alphabet::Binary,
        // §5.2.19: Latin 1 (ISO-8859-1).
        0x03 => Alphabet::Latin1,
        // §5.2.19: UCS2 (ISO/IEC-10646), sent as UTF-16BE by every current SMSC.
        0x08 => Alphabet::Ucs2,
        // §5.2.19: JIS, Cyrillic, Latin/Hebrew, pictogram, ISO-2022-JP, Kanji JIS, KS C 5601,
        // and the reserved values: no codec of ours reads them.
        0x05..=0x07 | 0x09..=0x0F => Alphabet::Binary,
        // TS 23.038 §4, coding groups 00xx (general data coding) and 01xx (the same, marked
        // for automatic deletion): bit 5 = compressed (TS 23.042, which we cannot inflate),
        // bits 3-2 = alphabet.
        0x10..=0x7F => {
            if data_coding & 0x20 != 0 {
                return Alphabet::Binary;
            }
            match (data_coding >> 2) & 0x03 {
                0b00 => Alphabet::Gsm7,
                0b10 => Alphabet::Ucs2,
                // 01 = 8-bit data; 11 = reserved.
                _ => Alphabet::Binary,
            }
        }
        // TS 23.038 §4, message waiting indication groups: 1100 "discard message" and 1101
        // "store message" carry GSM 7-bit text, 1110 "store message" carries UCS2.
        0xC0..=0xDF => Alphabet::Gsm7,
        0xE0..=0xEF => Alphabet::Ucs2,
        // TS 23.038 §4, group 1111 (data coding / message class): bit 2 = 8-bit data, else
        // GSM 7-bit; bit 3 is reserved and ignored.
        0xF0..=0xFF => {
            if data_coding & 0x04 != 0 {
                Alphabet::Binary
            } else {
                Alphabet::Gsm7
            }
        }
        // TS 23.038 §4: groups 1000..1011 are reserved.
        0x80..=0xBF => Alphabet::Binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn txt(t: &str, e: &'static str) -> Decoded {
        Decoded::Text {
            text: t.to_owned(),
            encoding: e,
        }
    }

    fn bin(b: &[u8]) -> Decoded {
        Decoded::Binary { bytes: b.to_vec() }
    }

    #[test]
    fn default_alphabet_is_the_smscs_choice() {
        // "Hello@" in unpacked septets: @ is septet 0x00; 0x1B 0x65 is the euro sign.
        let septets = [0x48, 0x65, 0x6C, 0x6C, 0x6F, 0x00, 0x1B, 0x65];
        assert_eq!(
            decode(0x00, &septets, DefaultAlphabet::Gsm7),
            txt("Hello@€", "gsm7")
        );
        assert_eq!(
            decode(0x00, b"caf\xE9", DefaultAlphabet::Latin1),
            txt("café", "latin1")
        );
        assert_eq!(
            decode(0x00, b"plain", DefaultAlphabet::Ascii),
            txt("plain", "ascii")
        );
        // The GSM table differs from ASCII where it matters: 0x24 is ¤ ($ is 0x02), 0x40 is
        // ¡, 0x00 is @.
        assert_eq!(
            decode(0x00, &[0x24, 0x02, 0x40, 0x00], DefaultAlphabet::Gsm7),
            txt("¤$¡@", "gsm7")
        );
    }

    #[test]
    fn smpp_codings() {
        let d = DefaultAlphabet::Gsm7;
        assert_eq!(decode(0x01, b"Hi there", d), txt("Hi there", "ascii"));
        assert_eq!(decode(0x01, b"a\xFFb", d), txt("a\u{FFFD}b", "ascii"));
        assert_eq!(
            decode(0x03, b"\xC5ngstr\xF6m", d),
            txt("Ångström", "latin1")
        );
        assert_eq!(decode(0x02, b"\x00\xFF", d), bin(b"\x00\xFF"));
        assert_eq!(decode(0x04, b"\x0B\x84", d), bin(b"\x0B\x84"));
        for dc in [0x05, 0x06, 0x07, 0x09, 0x0A, 0x0D, 0x0E, 0x0F] {
            assert_eq!(decode(dc, b"xy", d), bin(b"xy"), "data_coding {dc:#04x}");
        }
    }

    #[test]
    fn ucs2_with_surrogates_and_odd_length() {
        let d = DefaultAlphabet::Gsm7;
        let bytes = ucs2::encode("Привет 😀");
        assert_eq!(decode(0x08, &bytes, d), txt("Привет 😀", "ucs2"));
        assert_eq!(
            decode(0x08, &[0x00, 0x41, 0x00], d),
            txt("A\u{FFFD}", "ucs2")
        );
        assert_eq!(decode(0x08, &[], d), txt("", "ucs2"));
    }

    #[test]
    fn gsm_general_data_coding_groups() {
        let d = DefaultAlphabet::Latin1;
        // 0x11: class 1, GSM 7-bit; 0x18: UCS2 with no class; 0x15: 8-bit, class 1.
        assert_eq!(decode(0x11, &[0x41, 0x00], d), txt("A@", "gsm7"));
        assert_eq!(decode(0x10, &[0x41], d), txt("A", "gsm7"));
        assert_eq!(decode(0x18, &[0x04, 0x14], d), txt("Д", "ucs2"));
        assert_eq!(decode(0x19, &[0x00, 0x41], d), txt("A", "ucs2"));
        assert_eq!(decode(0x15, b"\x01", d), bin(b"\x01"));
        // Alphabet 11 is reserved; bit 5 set means compressed.
        assert_eq!(decode(0x1C, b"x", d), bin(b"x"));
        assert_eq!(decode(0x20, b"x", d), bin(b"x"));
        assert_eq!(decode(0x38, b"x", d), bin(b"x"));
        // 01xx, marked for automatic deletion, same layout.
        assert_eq!(decode(0x40, &[0x41], d), txt("A", "gsm7"));
        assert_eq!(decode(0x48, &[0x00, 0x41], d), txt("A", "ucs2"));
        assert_eq!(decode(0x44, b"x", d), bin(b"x"));
        assert_eq!(decode(0x60, b"x", d), bin(b"x"));
    }

    #[test]
    fn message_waiting_and_class_groups() {
        let d = DefaultAlphabet::Latin1;
        assert_eq!(decode(0xC8, &[0x41], d), txt("A", "gsm7"));
        assert_eq!(decode(0xD0, &[0x41], d), txt("A", "gsm7"));
        assert_eq!(decode(0xE0, &[0x00, 0x41], d), txt("A", "ucs2"));
        // 0xF0: flash (class 0) GSM 7-bit; 0xF1..0xF3 classes 1-3; 0xF4..0xF7 8-bit.
        assert_eq!(decode(0xF0, &[0x41], d), txt("A", "gsm7"));
        assert_eq!(decode(0xF3, &[0x41], d), txt("A", "gsm7"));
        assert_eq!(decode(0xF5, b"\x41", d), bin(b"\x41"));
        assert_eq!(decode(0xF6, b"\x41", d), bin(b"\x41"));
        // Reserved bit 3 does not change the alphabet.
        assert_eq!(decode(0xF8, &[0x41], d), txt("A", "gsm7"));
        assert_eq!(decode(0xFC, b"\x41", d), bin(b"\x41"));
        for dc in [0x80, 0x9F, 0xBF] {
            assert_eq!(decode(dc, b"x", d), bin(b"x"));
        }
    }

    #[test]
    fn septets_with_the_top_bit_set_do_not_panic() {
        assert_eq!(
            decode(0x00, &[0xC1, 0x1B], DefaultAlphabet::Gsm7),
            txt("A ", "gsm7")
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(dc in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..300), alpha in 0u8..3) {
            let alpha = [DefaultAlphabet::Gsm7, DefaultAlphabet::Latin1, DefaultAlphabet::Ascii][usize::from(alpha)];
            match decode(dc, &bytes, alpha) {
                Decoded::Binary { bytes: b } => prop_assert_eq!(b, bytes),
                Decoded::Text { encoding, .. } => prop_assert!(["gsm7", "latin1", "ascii", "ucs2"].contains(&encoding)),
            }
        }

        #[test]
        fn latin1_and_ucs2_round_trip(s in "\\PC{0,80}") {
            let d = DefaultAlphabet::Gsm7;
            prop_assert_eq!(decode(0x08, &ucs2::encode(&s), d), txt(&s, "ucs2"));
            let latin: String = s.chars().filter(|&c| u32::from(c) < 256).collect();
            let bytes: Vec<u8> = latin.chars().map(|c| u32::from(c) as u8).collect();
            prop_assert_eq!(decode(0x03, &bytes, d), txt(&latin, "latin1"));
        }
    }
}
