//! Splitting an encoded text into the parts of a concatenated SMS (3GPP TS 23.040 §9.2.3.24.1).
//!
//! A single SMS carries 140 octets of user data: 160 GSM 7-bit septets or 70 UTF-16 units.
//! Each part of a concatenated SMS gives 6 of those octets to the user data header (UDHL,
//! IEI 0x00, IEDL, reference, total, sequence; [`super::udh`]), leaving 134 octets: 67 UTF-16
//! units, or 153 septets (the header and one fill bit take 7 septets: 49 bits ≥ 48).
//!
//! A part never ends inside a character: an extension character's escape septet stays with
//! the septet after it (TS 23.038 §6.2.1.1), and a surrogate pair stays whole, so a part
//! that would end on the first half ends one unit early (152 septets, 66 units). Each part
//! then decodes to text on its own, which is what a handset that shows parts as they come
//! (or never gets the rest) displays.
//!
//! The counts assume the 8-bit reference (IEI 0x00). With the 16-bit reference (IEI 0x08)
//! the header is one octet longer and the parts hold 152 septets or 66 units, so a device
//! that sends these parts must use the 8-bit reference.

use super::{gsm7, ucs2};

/// Septets in a GSM 7-bit SMS that is not concatenated.
pub const GSM7_SINGLE: usize = 160;
/// Septets in each part of a concatenated GSM 7-bit SMS (8-bit reference).
pub const GSM7_PER_PART: usize = 153;
/// UTF-16 units in a UCS-2 SMS that is not concatenated.
pub const UCS2_SINGLE: usize = 70;
/// UTF-16 units in each part of a concatenated UCS-2 SMS (8-bit reference).
pub const UCS2_PER_PART: usize = 67;
/// The most parts a concatenated SMS can have: the total is one octet
/// (TS 23.040 §9.2.3.24.1).
pub const MAX_PARTS: usize = 255;

/// Splits unpacked septets (one per byte, as [`gsm7::encode`] makes them) into parts: the
/// whole text when it fits in [`GSM7_SINGLE`] septets, else parts of at most
/// [`GSM7_PER_PART`] septets, none ending on an escape septet whose partner follows.
///
/// Returns one (possibly empty) part for an empty input.
pub fn split_septets(septets: &[u8]) -> Vec<&[u8]> {
    split(septets, GSM7_SINGLE, GSM7_PER_PART, |rest| {
        // An escape and the septet after it are one character; a trailing lone escape is
        // one septet on its own. Top bits are ignored, as gsm7::decode ignores them.
        match rest {
            [first, _, ..] if first & 0x7F == gsm7::ESCAPE => 2,
            _ => 1,
        }
    })
}

/// Splits UTF-16 units into parts: the whole text when it fits in [`UCS2_SINGLE`] units,
/// else parts of at most [`UCS2_PER_PART`] units, none ending between the two halves of a
/// surrogate pair. An unpaired surrogate counts as one unit of its own.
///
/// Returns one (possibly empty) part for an empty input.
pub fn split_units(units: &[u16]) -> Vec<&[u16]> {
    split(units, UCS2_SINGLE, UCS2_PER_PART, |rest| match rest {
        [high, low, ..] if ucs2::is_high_surrogate(*high) && ucs2::is_low_surrogate(*low) => 2,
        _ => 1,
    })
}

/// The number of parts [`split_septets`] makes.
pub fn septet_parts(septets: &[u8]) -> usize {
    split_septets(septets).len()
}

/// The number of parts [`split_units`] makes.
pub fn unit_parts(units: &[u16]) -> usize {
    split_units(units).len()
}

/// Greedy split: fill each part with whole characters until the next one would not fit.
/// `char_len` gives the length (1 or 2) of the character at the start of a non-empty slice.
fn split<T>(
    units: &[T],
    single: usize,
    per_part: usize,
    char_len: impl Fn(&[T]) -> usize,
) -> Vec<&[T]> {
    if units.len() <= single {
        return vec![units];
    }
    let mut parts = Vec::with_capacity(units.len() / per_part + 1);
    let mut rest = units;
    while !rest.is_empty() {
        // Walk whole characters until adding the next one would overflow the part.
        let mut end = 0;
        while let Some(tail) = rest.get(end..).filter(|t| !t.is_empty()) {
            let len = char_len(tail).max(1);
            if end + len > per_part && end > 0 {
                break;
            }
            end += len;
        }
        let (part, tail) = rest.split_at(end.min(rest.len()));
        parts.push(part);
        rest = tail;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn septet_lengths(septets: &[u8]) -> Vec<usize> {
        split_septets(septets).iter().map(|p| p.len()).collect()
    }

    fn unit_lengths(units: &[u16]) -> Vec<usize> {
        split_units(units).iter().map(|p| p.len()).collect()
    }

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(septet_lengths(&[]), [0]);
        assert_eq!(septet_lengths(&[0x41; 160]), [160]);
        assert_eq!(septet_lengths(&[0x41; 161]), [153, 8]);
        assert_eq!(septet_lengths(&[0x41; 306]), [153, 153]);
        assert_eq!(septet_lengths(&[0x41; 307]), [153, 153, 1]);
    }

    #[test]
    fn an_escape_is_not_split_from_its_character() {
        // 152 plain septets then '€' (ESC 0x65): the escape would be septet 153, so the
        // first part ends at 152 and the euro sign starts the second.
        let mut septets = vec![0x41; 152];
        septets.extend_from_slice(&[0x1B, 0x65]);
        septets.extend_from_slice(&[0x41; 10]);
        assert_eq!(septet_lengths(&septets), [152, 12]);
        assert_eq!(split_septets(&septets)[1][0], 0x1B);
        // 151 plain then '€' fits exactly at 153.
        let mut septets = vec![0x41; 151];
        septets.extend_from_slice(&[0x1B, 0x65]);
        septets.extend_from_slice(&[0x41; 10]);
        assert_eq!(septet_lengths(&septets), [153, 10]);
    }

    #[test]
    fn extension_characters_count_double_for_the_single_limit() {
        let septets = gsm7::encode(&"€".repeat(80)).unwrap_or_default();
        assert_eq!(septet_lengths(&septets), [160]);
        let septets = gsm7::encode(&"€".repeat(81)).unwrap_or_default();
        assert_eq!(septet_lengths(&septets), [152, 10]);
    }

    #[test]
    fn ucs2_boundaries() {
        assert_eq!(unit_lengths(&[]), [0]);
        assert_eq!(unit_lengths(&[0x0416; 70]), [70]);
        assert_eq!(unit_lengths(&[0x0416; 71]), [67, 4]);
        assert_eq!(unit_lengths(&[0x0416; 134]), [67, 67]);
    }

    #[test]
    fn a_surrogate_pair_is_not_split() {
        // 66 units, then 😀 (2 units): the pair would straddle 67, so part one has 66.
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        let units = ucs2::units(&text);
        assert_eq!(unit_lengths(&units), [66, 12]);
        assert!(ucs2::is_high_surrogate(split_units(&units)[1][0]));
        // 35 emoji = 70 units fit a single SMS.
        assert_eq!(unit_lengths(&ucs2::units(&"😀".repeat(35))), [70]);
        // 36 emoji = 72 units: 33 emoji (66 units) per part.
        assert_eq!(unit_lengths(&ucs2::units(&"😀".repeat(36))), [66, 6]);
    }

    #[test]
    fn lone_escape_and_lone_surrogates_count_one() {
        let mut septets = vec![0x41; 160];
        septets.push(0x1B);
        assert_eq!(septet_lengths(&septets), [153, 8]);
        let mut units = vec![0xDC00; 70];
        units.push(0xD800);
        assert_eq!(unit_lengths(&units), [67, 4]);
    }
}
