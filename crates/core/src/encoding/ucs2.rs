//! UCS-2 text for SMS (data coding 0x08, 3GPP TS 23.038 §4 and §7), which every current
//! handset and SMSC treats as UTF-16 big-endian: a character outside the Basic Multilingual
//! Plane (most emoji) is a surrogate pair of two 16-bit units and is kept whole.
//!
//! Decoding is lossy but never fails and never panics: text arrives from devices and
//! networks that we do not control, and a replacement character is better than losing the
//! message.

/// The Unicode replacement character, shown for bytes that are not valid UTF-16.
pub const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// The UTF-16 code units of `text`.
pub fn units(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

/// The number of UTF-16 code units in `text` (a surrogate pair counts 2).
pub fn unit_count(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Encodes `text` as UTF-16BE bytes. Every `&str` can be encoded.
pub fn encode(text: &str) -> Vec<u8> {
    units_to_bytes(text.encode_utf16())
}

/// Writes UTF-16 code units as big-endian bytes.
pub fn units_to_bytes(units: impl IntoIterator<Item = u16>) -> Vec<u8> {
    units.into_iter().flat_map(u16::to_be_bytes).collect()
}

/// Reads big-endian bytes as UTF-16 code units; an odd last byte is dropped (see [`decode`]).
pub fn bytes_to_units(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect()
}

/// Decodes UTF-16BE bytes to text. A surrogate without its partner becomes
/// [`REPLACEMENT`], and so does an odd byte at the end (half a unit: it cannot be a
/// character, but showing that something was there is more honest than dropping it).
pub fn decode(bytes: &[u8]) -> String {
    let mut text = decode_units(&bytes_to_units(bytes));
    if bytes.len() % 2 == 1 {
        text.push(REPLACEMENT);
    }
    text
}

/// Decodes UTF-16 code units to text, with [`REPLACEMENT`] for each unpaired surrogate.
pub fn decode_units(units: &[u16]) -> String {
    char::decode_utf16(units.iter().copied())
        .map(|r| r.unwrap_or(REPLACEMENT))
        .collect()
}

/// Whether `unit` is the first half of a surrogate pair (U+D800..=U+DBFF).
pub fn is_high_surrogate(unit: u16) -> bool {
    (0xD800..=0xDBFF).contains(&unit)
}

/// Whether `unit` is the second half of a surrogate pair (U+DC00..=U+DFFF).
pub fn is_low_surrogate(unit: u16) -> bool {
    (0xDC00..=0xDFFF).contains(&unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_big_endian_with_surrogate_pairs() {
        assert_eq!(encode("Aé"), [0x00, 0x41, 0x00, 0xE9]);
        // U+1F600 is D83D DE00 in UTF-16.
        assert_eq!(encode("😀"), [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(unit_count("a😀"), 3);
        assert_eq!(units("😀"), [0xD83D, 0xDE00]);
    }

    #[test]
    fn decodes_what_it_encodes() {
        let text = "Привет, 世界 😀 ç";
        assert_eq!(decode(&encode(text)), text);
    }

    #[test]
    fn bad_input_is_replaced_not_refused() {
        assert_eq!(decode(&[0x00, 0x41, 0x00]), "A\u{FFFD}");
        assert_eq!(decode(&[0xD8, 0x3D]), "\u{FFFD}", "lone high surrogate");
        assert_eq!(
            decode(&[0xDE, 0x00, 0x00, 0x41]),
            "\u{FFFD}A",
            "lone low surrogate"
        );
        assert_eq!(decode(&[0xD8, 0x3D, 0x00, 0x41]), "\u{FFFD}A");
        assert_eq!(decode(&[]), "");
        assert_eq!(decode(&[0x41]), "\u{FFFD}");
    }

    #[test]
    fn surrogate_classes() {
        assert!(is_high_surrogate(0xD83D));
        assert!(!is_high_surrogate(0xDE00));
        assert!(is_low_surrogate(0xDE00));
        assert!(!is_low_surrogate(0x0041));
    }
}
