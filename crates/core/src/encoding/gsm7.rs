//! The GSM 7-bit default alphabet and its extension table (3GPP TS 23.038 §6.2.1 and
//! §6.2.1.1), and the packing of septets into octets (TS 23.038 §6.1.2.1.1, with the
//! fill bits of TS 23.040 §9.2.3.24 when a user data header comes first).
//!
//! Text is encoded to *unpacked* septets, one byte per septet, with an extension character
//! written as the escape septet 0x1B followed by its code; that is the form the segmenter
//! and SMPP (`data_coding` 0x00 on most SMSCs) work with. [`pack`] and [`unpack`] convert
//! to and from the packed form that goes over the air and into modem PDUs.
//!
//! Decoding never fails and never panics: a septet that has no character is shown as the
//! spec says a receiver shall show it (see [`decode`]).

/// The escape septet that introduces a character of the extension table
/// (TS 23.038 §6.2.1, position 0x1B).
pub const ESCAPE: u8 = 0x1B;

/// The default alphabet, indexed by septet (TS 23.038 §6.2.1). Position 0x1B is the
/// escape to the extension table, not a character; it holds U+001B only as a marker and is
/// never produced by [`decode`] nor accepted by [`encode`].
pub const DEFAULT_ALPHABET: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', // 0x00
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß',
    'É', // 0x10
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', // 0x20
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', // 0x30
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', // 0x40
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', // 0x50
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', // 0x60
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', // 0x70
];

/// The extension table (TS 23.038 §6.2.1.1): the septet that follows [`ESCAPE`], and its
/// character. Every other code of the table is undefined.
pub const EXTENSION_TABLE: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// No septet: the marker in [`ASCII_TO_SEPTET`] for an ASCII char outside the default table.
const NONE: u8 = 0xFF;

/// The default-table septet of each ASCII char, built from [`DEFAULT_ALPHABET`] so that the
/// two directions cannot disagree; most text is ASCII, so this avoids a table scan per char.
const ASCII_TO_SEPTET: [u8; 128] = {
    let mut table = [NONE; 128];
    let mut septet = 0;
    while septet < 128 {
        let c = DEFAULT_ALPHABET[septet] as u32;
        if c < 128 && septet != ESCAPE as usize {
            table[c as usize] = septet as u8;
        }
        septet += 1;
    }
    table
};

/// How one character is written in GSM 7-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gsm7Char {
    /// One septet of the default alphabet.
    Default(u8),
    /// [`ESCAPE`] followed by this septet of the extension table (two septets).
    Extension(u8),
}

impl Gsm7Char {
    /// The number of septets the character takes: 1, or 2 for an extension character.
    pub fn septets(self) -> usize {
        match self {
            Gsm7Char::Default(_) => 1,
            Gsm7Char::Extension(_) => 2,
        }
    }
}

/// A character that GSM 7-bit cannot carry, with its byte offset in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{ch:?} (at byte {index}) is not in the GSM 7-bit alphabet")]
pub struct NotGsm7 {
    /// The character.
    pub ch: char,
    /// Its byte offset in the text.
    pub index: usize,
}

/// The GSM 7-bit form of `c`, or `None` when `c` is in neither table.
pub fn lookup(c: char) -> Option<Gsm7Char> {
    if let Some(&septet) = ASCII_TO_SEPTET.get(c as usize) {
        if septet != NONE {
            return Some(Gsm7Char::Default(septet));
        }
    } else if let Some(septet) = DEFAULT_ALPHABET.iter().position(|&d| d == c) {
        // Non-ASCII default characters (£, Δ, ä, ...); the table index is the septet.
        return Some(Gsm7Char::Default(septet as u8));
    }
    EXTENSION_TABLE
        .iter()
        .find(|&&(_, e)| e == c)
        .map(|&(code, _)| Gsm7Char::Extension(code))
}

/// Whether `c` is in the default alphabet itself (not the extension table).
pub fn is_default_char(c: char) -> bool {
    matches!(lookup(c), Some(Gsm7Char::Default(_)))
}

/// Whether every char of `text` is in the default alphabet or the extension table.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| lookup(c).is_some())
}

/// The number of septets `text` needs (extension characters count 2), or `None` when some
/// char cannot be encoded.
pub fn septet_count(text: &str) -> Option<usize> {
    text.chars()
        .try_fold(0usize, |n, c| Some(n + lookup(c)?.septets()))
}

/// Encodes `text` to unpacked septets, one byte each, extension characters as
/// `[ESCAPE, code]`.
pub fn encode(text: &str) -> Result<Vec<u8>, NotGsm7> {
    let mut out = Vec::with_capacity(text.len());
    for (index, ch) in text.char_indices() {
        match lookup(ch) {
            Some(Gsm7Char::Default(septet)) => out.push(septet),
            Some(Gsm7Char::Extension(code)) => out.extend_from_slice(&[ESCAPE, code]),
            None => return Err(NotGsm7 { ch, index }),
        }
    }
    Ok(out)
}

/// Decodes unpacked septets (one per byte) to text. Never fails:
///
/// - a byte's top bit is ignored, since a septet has only 7 bits;
/// - [`ESCAPE`] followed by a code the extension table does not define decodes to the
///   default-table character of that code (TS 23.038 §6.2.1.1, note 1);
/// - [`ESCAPE`] followed by [`ESCAPE`] (reserved for a further extension table) decodes to
///   one space, as §6.2.1.1 says a receiver shall display it;
/// - a lone [`ESCAPE`] at the very end decodes to a space too: the escape still occupied a
///   character position, and a space keeps the character count visible where dropping it
///   would hide that something was there.
pub fn decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut rest = septets.iter().map(|&b| b & 0x7F);
    while let Some(septet) = rest.next() {
        if septet != ESCAPE {
            out.push(DEFAULT_ALPHABET[usize::from(septet)]);
            continue;
        }
        let ch = match rest.next() {
            None | Some(ESCAPE) => ' ',
            Some(code) => extension_char(code).unwrap_or(DEFAULT_ALPHABET[usize::from(code)]),
        };
        out.push(ch);
    }
    out
}

/// The extension-table character for the septet after an escape, if the table defines one.
pub fn extension_char(code: u8) -> Option<char> {
    EXTENSION_TABLE
        .iter()
        .find(|&&(c, _)| c == code)
        .map(|&(_, ch)| ch)
}

/// Packs unpacked septets into octets, least significant bit first (TS 23.038 §6.1.2.1.1),
/// after `fill_bits` zero bits. The fill bits align the first septet on a septet boundary
/// when a user data header precedes the text (TS 23.040 §9.2.3.24; see
/// [`crate::encoding::udh::fill_bits`]): pack the text on its own with the fill bits and
/// append the result to the header octets. Each byte's top bit is ignored.
///
/// Spare bits at the end are zero. Unlike cell broadcast and USSD (TS 23.038 §6.1.2.3.1) an
/// SMS is not padded with CR, because TP-UDL gives the exact septet count.
pub fn pack(septets: &[u8], fill_bits: u8) -> Vec<u8> {
    let fill = usize::from(fill_bits);
    let total_bits = fill + 7 * septets.len();
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    for (k, &septet) in septets.iter().enumerate() {
        let bit = fill + 7 * k;
        let shifted = u16::from(septet & 0x7F) << (bit % 8);
        let [low, high] = shifted.to_le_bytes();
        if let Some(o) = out.get_mut(bit / 8) {
            *o |= low;
        }
        if high != 0 {
            if let Some(o) = out.get_mut(bit / 8 + 1) {
                *o |= high;
            }
        }
    }
    out
}

/// The largest number of septets `octet_len` octets can hold after `fill_bits` fill bits.
pub fn max_septets(octet_len: usize, fill_bits: u8) -> usize {
    octet_len
        .saturating_mul(8)
        .saturating_sub(usize::from(fill_bits))
        / 7
}

/// Unpacks `count` septets from packed octets, skipping `fill_bits` leading fill bits; the
/// inverse of [`pack`]. The count comes from TP-UDL (TS 23.040 §9.2.3.16), because the last
/// octet may hold 7 spare bits that would otherwise read as an '@'. Asking for more septets
/// than the octets hold returns only those there are (see [`max_septets`]), so
/// `usize::MAX` reads them all.
pub fn unpack(octets: &[u8], fill_bits: u8, count: usize) -> Vec<u8> {
    let fill = usize::from(fill_bits);
    let n = count.min(max_septets(octets.len(), fill_bits));
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let bit = fill + 7 * k;
        let low = octets.get(bit / 8).copied().unwrap_or(0);
        let high = octets.get(bit / 8 + 1).copied().unwrap_or(0);
        let word = u16::from_le_bytes([low, high]);
        out.push(((word >> (bit % 8)) & 0x7F) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_positions_match_the_spec() {
        let expect = [
            (0x00, '@'),
            (0x01, '£'),
            (0x09, 'Ç'),
            (0x0A, '\n'),
            (0x0D, '\r'),
            (0x10, 'Δ'),
            (0x11, '_'),
            (0x1A, 'Ξ'),
            (0x1F, 'É'),
            (0x20, ' '),
            (0x24, '¤'),
            (0x40, '¡'),
            (0x5B, 'Ä'),
            (0x5C, 'Ö'),
            (0x5D, 'Ñ'),
            (0x5E, 'Ü'),
            (0x5F, '§'),
            (0x60, '¿'),
            (0x7B, 'ä'),
            (0x7C, 'ö'),
            (0x7D, 'ñ'),
            (0x7E, 'ü'),
            (0x7F, 'à'),
        ];
        for (septet, ch) in expect {
            assert_eq!(DEFAULT_ALPHABET[septet], ch);
            assert_eq!(lookup(ch), Some(Gsm7Char::Default(septet as u8)), "{ch:?}");
        }
    }

    #[test]
    fn every_table_entry_round_trips() {
        for (septet, &ch) in DEFAULT_ALPHABET.iter().enumerate() {
            if septet == usize::from(ESCAPE) {
                assert_eq!(lookup(ch), None, "ESC is not a character");
                continue;
            }
            assert_eq!(lookup(ch), Some(Gsm7Char::Default(septet as u8)));
            assert_eq!(decode(&[septet as u8]), ch.to_string());
        }
        for (code, ch) in EXTENSION_TABLE {
            assert_eq!(lookup(ch), Some(Gsm7Char::Extension(code)));
            assert_eq!(decode(&[ESCAPE, code]), ch.to_string());
        }
    }

    #[test]
    fn extension_characters_take_an_escape() {
        assert_eq!(encode("€[]").unwrap(), [0x1B, 0x65, 0x1B, 0x3C, 0x1B, 0x3E]);
        assert_eq!(septet_count("a€"), Some(3));
        assert_eq!(encode("{}\\~|^\u{0C}").unwrap().len(), 14);
    }

    #[test]
    fn characters_outside_the_alphabet_are_refused() {
        // Lower-case ç is not in the default alphabet (only Ç at 0x09), nor are ` and NBSP.
        for ch in ['ç', '`', '\u{A0}', '\u{1B}', '\t', 'ω', 'ą', '😀'] {
            assert_eq!(lookup(ch), None, "{ch:?}");
        }
        assert_eq!(encode("abç"), Err(NotGsm7 { ch: 'ç', index: 2 }));
        assert_eq!(septet_count("😀"), None);
    }

    #[test]
    fn unknown_escapes_and_lone_escapes_decode_without_loss_of_position() {
        // 0x1B 0x41 is undefined in the extension table: show the default 'A'.
        assert_eq!(decode(&[0x1B, 0x41]), "A");
        assert_eq!(decode(&[0x1B, 0x1B]), " ");
        assert_eq!(decode(&[0x41, 0x1B]), "A ");
        assert_eq!(decode(&[0xC1]), "A", "the top bit is ignored");
        assert_eq!(decode(&[]), "");
    }

    #[test]
    fn packs_the_spec_example() {
        // "hellohello" is the classic packing example: E8 32 9B FD 46 97 D9 EC 37.
        let septets = encode("hellohello").unwrap();
        let packed = pack(&septets, 0);
        assert_eq!(
            packed,
            [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(unpack(&packed, 0, septets.len()), septets);
        // 8 septets fill 7 octets exactly.
        assert_eq!(pack(&[0x7F; 8], 0), [0xFF; 7]);
    }

    #[test]
    fn fill_bit_after_a_six_octet_udh() {
        // One fill bit: the first 'A' (0x41) takes bits 1..=7 of octet 0, the second all of
        // octet 1 but its top bit, the third the top bit of octet 1 and 6 bits of octet 2.
        let packed = pack(&[0x41, 0x41, 0x41], 1);
        assert_eq!(packed, [0x82, 0xC1, 0x20]);
        assert_eq!(unpack(&packed, 1, 3), [0x41, 0x41, 0x41]);
        assert_eq!(max_septets(3, 1), 3);
        assert_eq!(unpack(&packed, 1, usize::MAX), [0x41, 0x41, 0x41]);
        assert_eq!(unpack(&packed, 1, 2), [0x41, 0x41]);
    }

    #[test]
    fn unpack_is_bounded_by_the_input() {
        assert!(unpack(&[], 0, 10).is_empty());
        assert!(unpack(&[0xFF], 200, 10).is_empty());
        assert_eq!(unpack(&[0xFF], 0, 10), [0x7F]);
        assert_eq!(max_septets(usize::MAX, 0), usize::MAX / 7);
    }
}
