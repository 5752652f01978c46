//! Property tests and differential tests for `textgate_core::encoding` and
//! `textgate_core::address`.
//!
//! Oracles (dev-dependencies only):
//! - `rusmpp-extra`: its GSM 7-bit unpacked encoder is an independent copy of the TS 23.038
//!   tables (it lacks the form feed of the extension table, so texts with one are left out),
//!   and its `Concatenator` with a 160-septet message and a 7-septet header splits like we
//!   do, never ending a part on an escape. Its UCS-2 codec refuses characters beyond U+FFFF,
//!   so it checks BMP-only text.
//! - `gsm7`: an independent septet packer/unpacker (a bit-stream writer, least significant
//!   bit first), with a leading fill bit written as one more bit.
//! - `sms_splitter`: an independent SMS part counter for GSM (escapes count 2, never split)
//!   and UTF-16 (never splits a surrogate pair).
//! - Formula oracles written here: part counts from the char widths alone, and the
//!   closed forms `n ≤ 160 → 1, else ⌈n / 153⌉` (and 70/67) for text without escapes or
//!   surrogate pairs.

use proptest::prelude::*;
use textgate_core::address::{AddressError, Country, Recipient, Sender, E164};
use textgate_core::encoding::{gsm7, segment, ucs2, udh, Body, Encoding};

// ---------------------------------------------------------------------------------------
// Strategies

/// Every char of the default alphabet (not the escape).
fn default_chars() -> Vec<char> {
    gsm7::DEFAULT_ALPHABET
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != usize::from(gsm7::ESCAPE))
        .map(|(_, &c)| c)
        .collect()
}

fn extension_chars() -> Vec<char> {
    gsm7::EXTENSION_TABLE.iter().map(|&(_, c)| c).collect()
}

fn gsm_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(default_chars()),
        1 => prop::sample::select(extension_chars()),
    ]
}

/// Texts of GSM characters, long enough to need several parts.
fn gsm_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(gsm_char(), 0..200),
        prop::collection::vec(gsm_char(), 140..700),
    ]
    .prop_map(|v| v.into_iter().collect())
}

/// Characters that need UCS-2: BMP letters, emoji (surrogate pairs), anything.
fn wide_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::char::range('\u{0400}', '\u{04FF}'),
        prop::char::range('\u{1F300}', '\u{1FAFF}'),
        // A body never holds a NUL: `Body::new` refuses one.
        any::<char>().prop_filter("no NUL", |c| *c != '\0'),
    ]
}

/// Mixed texts: mostly GSM with some UCS-2-only characters sprinkled in.
fn mixed_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![3 => gsm_char(), 1 => wide_char()], 0..400)
        .prop_map(|v| v.into_iter().collect())
}

/// BMP-only texts that need UCS-2 (rusmpp-extra's UCS-2 refuses anything else).
fn bmp_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![gsm_char(), prop::char::range('\u{0400}', '\u{04FF}')],
        1..300,
    )
    .prop_map(|v| v.into_iter().collect())
}

// ---------------------------------------------------------------------------------------
// Independent formula oracles

/// Part count from char widths alone, by a different route from the library: walk the
/// chars, start a new part whenever the next char would not fit.
fn formula_parts(widths: &[usize], single: usize, per_part: usize) -> usize {
    let total: usize = widths.iter().sum();
    if total <= single {
        return 1;
    }
    let mut parts = 1;
    let mut used = 0;
    for &w in widths {
        if used + w > per_part {
            parts += 1;
            used = 0;
        }
        used += w;
    }
    parts
}

fn gsm_widths(text: &str) -> Vec<usize> {
    text.chars()
        .map(|c| if extension_chars().contains(&c) { 2 } else { 1 })
        .collect()
}

fn utf16_widths(text: &str) -> Vec<usize> {
    text.chars().map(char::len_utf16).collect()
}

// ---------------------------------------------------------------------------------------
// GSM 7-bit

proptest! {
    #[test]
    fn gsm_round_trip(text in gsm_text()) {
        let septets = gsm7::encode(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(gsm7::decode(&septets), text.clone());
        prop_assert_eq!(gsm7::septet_count(&text), Some(septets.len()));
        prop_assert_eq!(septets.len(), gsm_widths(&text).iter().sum::<usize>());
        prop_assert!(septets.iter().all(|&s| s < 0x80));
    }

    #[test]
    fn any_text_round_trips_when_it_encodes(text in mixed_text()) {
        match gsm7::encode(&text) {
            Ok(septets) => prop_assert_eq!(gsm7::decode(&septets), text),
            Err(e) => {
                prop_assert!(gsm7::lookup(e.ch).is_none());
                prop_assert_eq!(text.get(e.index..).and_then(|t| t.chars().next()), Some(e.ch));
                prop_assert!(!gsm7::is_gsm7(&text));
            }
        }
    }

    #[test]
    fn pack_unpack_round_trip(
        septets in prop::collection::vec(0u8..0x80, 0..400),
        fill in 0u8..7,
    ) {
        let packed = gsm7::pack(&septets, fill);
        prop_assert_eq!(packed.len(), (usize::from(fill) + 7 * septets.len()).div_ceil(8));
        prop_assert_eq!(gsm7::unpack(&packed, fill, septets.len()), septets.clone());
        // Reading everything gives at most one extra septet, from 7 spare bits at the end.
        let all = gsm7::unpack(&packed, fill, usize::MAX);
        prop_assert!(all.len() == septets.len() || all.len() == septets.len() + 1);
        prop_assert_eq!(&all[..septets.len()], &septets[..]);
    }

    #[test]
    fn decoders_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        fill in any::<u8>(),
        count in any::<usize>(),
    ) {
        let _ = gsm7::decode(&bytes);
        let unpacked = gsm7::unpack(&bytes, fill, count);
        prop_assert!(unpacked.len() <= gsm7::max_septets(bytes.len(), fill));
        let _ = gsm7::decode(&unpacked);
        let text = ucs2::decode(&bytes);
        prop_assert!(text.chars().count() <= bytes.len() / 2 + 1);
        let _ = udh::parse(&bytes);
        let _ = segment::split_septets(&bytes);
        let _ = segment::split_units(&ucs2::bytes_to_units(&bytes));
    }

    #[test]
    fn arbitrary_septets_decode_to_at_most_one_char_each(
        septets in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let text = gsm7::decode(&septets);
        prop_assert!(text.chars().count() <= septets.len());
        // Whatever came in, what comes out is GSM text again.
        prop_assert!(gsm7::is_gsm7(&text));
    }
}

// ---------------------------------------------------------------------------------------
// UCS-2

proptest! {
    #[test]
    fn ucs2_round_trip(text in any::<String>()) {
        let bytes = ucs2::encode(&text);
        prop_assert_eq!(bytes.len(), 2 * text.encode_utf16().count());
        prop_assert_eq!(ucs2::decode(&bytes), text.clone());
        prop_assert_eq!(ucs2::unit_count(&text), bytes.len() / 2);
    }

    #[test]
    fn ucs2_round_trip_emoji(text in prop::collection::vec(wide_char(), 0..200)
        .prop_map(|v| v.into_iter().collect::<String>())) {
        prop_assert_eq!(ucs2::decode(&ucs2::encode(&text)), text);
    }
}

// ---------------------------------------------------------------------------------------
// Segmentation and Body

/// Checks every invariant of a GSM body's parts.
fn check_gsm_parts(text: &str, body: &Body) -> Result<(), TestCaseError> {
    let parts = body.parts();
    let septets = gsm7::encode(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(parts.len(), usize::from(body.segments()));
    prop_assert_eq!(parts.concat(), septets.clone());
    let limit = if parts.len() == 1 { 160 } else { 153 };
    for (i, part) in parts.iter().enumerate() {
        prop_assert!(part.len() <= limit, "part {} has {} septets", i, part.len());
        prop_assert!(!part.is_empty());
        if i + 1 < parts.len() {
            // Never ends on an escape (its character would start the next part).
            prop_assert_ne!(part.last().copied(), Some(gsm7::ESCAPE));
            // And is as full as it can be: the next character would not fit.
            let next_width = if parts[i + 1].first() == Some(&gsm7::ESCAPE) {
                2
            } else {
                1
            };
            prop_assert!(part.len() + next_width > 153);
        }
    }
    // Each part decodes on its own; together they give back the text.
    let decoded: String = parts.iter().map(|p| gsm7::decode(p)).collect();
    prop_assert_eq!(decoded, text);
    prop_assert_eq!(body.part_texts().concat(), text);
    Ok(())
}

/// Checks every invariant of a UCS-2 body's parts.
fn check_ucs2_parts(text: &str, body: &Body) -> Result<(), TestCaseError> {
    let parts = body.parts();
    prop_assert_eq!(parts.len(), usize::from(body.segments()));
    prop_assert_eq!(parts.concat(), ucs2::encode(text));
    let limit = if parts.len() == 1 { 70 } else { 67 };
    for (i, part) in parts.iter().enumerate() {
        let units = ucs2::bytes_to_units(part);
        prop_assert_eq!(part.len() % 2, 0);
        prop_assert!(units.len() <= limit && !units.is_empty());
        prop_assert!(
            !units.first().is_some_and(|&u| ucs2::is_low_surrogate(u)),
            "part {} starts with a low surrogate",
            i
        );
        prop_assert!(
            !units.last().is_some_and(|&u| ucs2::is_high_surrogate(u)),
            "part {} ends with a high surrogate",
            i
        );
        if i + 1 < parts.len() {
            let next = ucs2::bytes_to_units(&parts[i + 1]);
            let next_width = if next.first().is_some_and(|&u| ucs2::is_high_surrogate(u)) {
                2
            } else {
                1
            };
            prop_assert!(units.len() + next_width > 67);
        }
    }
    let decoded: String = parts.iter().map(|p| ucs2::decode(p)).collect();
    prop_assert_eq!(decoded, text);
    prop_assert_eq!(body.part_texts().concat(), text);
    Ok(())
}

proptest! {
    #[test]
    fn gsm_bodies_split_correctly(text in gsm_text().prop_filter("non-empty", |t| !t.is_empty())) {
        let body = Body::new(&text, 255).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(body.encoding(), Encoding::Gsm7);
        prop_assert_eq!(body.text(), text.as_str());
        let widths = gsm_widths(&text);
        prop_assert_eq!(body.units(), widths.iter().sum::<usize>());
        prop_assert_eq!(usize::from(body.segments()), formula_parts(&widths, 160, 153));
        check_gsm_parts(&text, &body)?;
    }

    #[test]
    fn mixed_bodies_split_correctly(text in mixed_text().prop_filter("non-empty", |t| !t.is_empty())) {
        let body = Body::new(&text, 255).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if gsm7::is_gsm7(&text) {
            prop_assert_eq!(body.encoding(), Encoding::Gsm7);
            check_gsm_parts(&text, &body)?;
        } else {
            prop_assert_eq!(body.encoding(), Encoding::Ucs2);
            let widths = utf16_widths(&text);
            prop_assert_eq!(body.units(), text.encode_utf16().count());
            prop_assert_eq!(usize::from(body.segments()), formula_parts(&widths, 70, 67));
            check_ucs2_parts(&text, &body)?;
        }
    }

    #[test]
    fn closed_form_part_counts(n in 1usize..2000, wide in any::<bool>()) {
        // Without escapes or surrogate pairs the count is the textbook formula.
        let (text, single, per_part) = if wide {
            ("ж".repeat(n), 70, 67)
        } else {
            ("a".repeat(n), 160, 153)
        };
        let expected = if n <= single { 1 } else { n.div_ceil(per_part) };
        match Body::new(&text, 255) {
            Ok(body) => prop_assert_eq!(usize::from(body.segments()), expected),
            Err(e) => {
                prop_assert!(expected > 255, "{}", e);
                let is_too_long = matches!(e, textgate_core::encoding::BodyError::TooLong { .. });
                prop_assert!(is_too_long);
            }
        }
    }

    #[test]
    fn max_parts_is_enforced(text in mixed_text().prop_filter("non-empty", |t| !t.is_empty()), max in 0u16..5) {
        let needed = Body::new(&text, 255).map(|b| b.segments());
        match (Body::new(&text, max), needed) {
            (Ok(body), Ok(n)) => prop_assert!(body.segments() == n && n <= max),
            (Err(textgate_core::encoding::BodyError::TooLong { parts, max: m, .. }), Ok(n)) => {
                prop_assert!(parts == n && n > max && m == max);
            }
            (other, needed) => prop_assert!(false, "{:?} / {:?}", other, needed),
        }
    }
}

// ---------------------------------------------------------------------------------------
// UDH

proptest! {
    #[test]
    fn udh_round_trip(reference in any::<u16>(), wide in any::<bool>(), total in 1u8..=255, seq in any::<u8>(),
                      other in prop::collection::vec((0x70u8..0x7F, prop::collection::vec(any::<u8>(), 0..5)), 0..3)) {
        let seq = seq % total + 1;
        let reference = if wide {
            udh::ConcatRef::Bits16(reference)
        } else {
            udh::ConcatRef::Bits8(reference as u8)
        };
        let concat = udh::Concat::new(reference, total, seq).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Other elements before the concatenation element are skipped but kept.
        let mut elements = Vec::new();
        for (iei, data) in &other {
            elements.push(*iei);
            elements.push(data.len() as u8);
            elements.extend_from_slice(data);
        }
        elements.extend_from_slice(&concat.element());
        let mut user_data = vec![elements.len() as u8];
        user_data.extend_from_slice(&elements);
        user_data.extend_from_slice(b"hello");
        let parsed = udh::parse(&user_data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.concat, Some(concat));
        prop_assert_eq!(parsed.len, user_data.len() - 5);
        prop_assert_eq!(parsed.elements.len(), other.len() + 1);
        if other.is_empty() {
            prop_assert_eq!(concat.header(), user_data[..parsed.len].to_vec());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Differential tests against the oracle crates

mod oracles {
    use super::*;
    use rusmpp_extra::concatenation::owned::{Concatenation, Concatenator};
    use rusmpp_extra::encoding::gsm7bit::Gsm7BitUnpacked;
    use rusmpp_extra::encoding::ucs2::Ucs2;
    use std::io::Cursor;

    fn rusmpp_parts(c: Concatenation) -> Vec<Vec<u8>> {
        match c {
            Concatenation::Single(part) => vec![part],
            Concatenation::Concatenated(parts) => parts,
        }
    }

    /// The text without the form feed, which rusmpp-extra's extension table lacks.
    fn without_form_feed(text: String) -> String {
        text.replace('\u{0C}', "")
    }

    /// Packs with the `gsm7` crate: `fill` zero bits, then the text.
    fn gsm7_crate_pack(text: &str, fill: u8) -> std::io::Result<Vec<u8>> {
        let mut writer = ::gsm7::Gsm7Writer::new(Vec::new());
        if fill > 0 {
            writer.write_var(u32::from(fill), 0u8)?;
        }
        writer.write_str(text)?;
        writer.into_writer()
    }

    proptest! {
        #[test]
        fn encode_table_matches_rusmpp_extra(text in gsm_text().prop_map(without_form_feed)) {
            let theirs = Gsm7BitUnpacked::new().encode_to_vec(&text).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(gsm7::encode(&text).ok(), Some(theirs));
        }

        #[test]
        fn gsm_split_matches_rusmpp_extra(text in gsm_text().prop_map(without_form_feed).prop_filter("non-empty", |t| !t.is_empty())) {
            // 160 septets for one SMS, 7 septets of header per part: 153, never ending on an escape.
            let (theirs, _) = Gsm7BitUnpacked::new().concatenate(&text, 160, 7).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let ours = Body::new(&text, 255).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(ours.parts(), rusmpp_parts(theirs));
        }

        #[test]
        fn ucs2_split_matches_rusmpp_extra(text in bmp_text().prop_filter("needs UCS-2", |t| !gsm7::is_gsm7(t))) {
            // 140 octets for one SMS, 6 octets of header per part: 134 octets = 67 units.
            let (theirs, _) = Ucs2::new().concatenate(&text, 140, 6).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let ours = Body::new(&text, 255).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(ours.parts(), rusmpp_parts(theirs));
            let encoded = Ucs2::new().encode_to_vec(&text).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(ucs2::encode(&text), encoded);
        }

        #[test]
        fn packing_matches_the_gsm7_crate(text in gsm_text(), fill in 0u8..7) {
            let septets = gsm7::encode(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let ours = gsm7::pack(&septets, fill);
            let mut theirs = gsm7_crate_pack(&text, fill).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // The gsm7 crate pads a last octet that has room for one more septet with CR
            // (TS 23.038 §6.1.2.3.1, a USSD rule) and truncates what does not fit, which
            // leaves CR's low bit in the top bit; an SMS has zero spare bits instead.
            let used_bits = (usize::from(fill) + 7 * septets.len()) % 8;
            if used_bits == 7 {
                if let Some(last) = theirs.last_mut() {
                    *last &= 0x7F;
                }
            }
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn unpacking_matches_the_gsm7_crate(text in gsm_text(), fill in 0u8..7) {
            let septets = gsm7::encode(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let packed = gsm7::pack(&septets, fill);
            let reader = ::gsm7::Gsm7Reader::new_with_bit_offset(Cursor::new(&packed), u32::from(fill))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            // It reads to the end of the octets, so 7 spare bits become one more '@'.
            let theirs: String = reader.collect::<std::io::Result<String>>().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let ours = gsm7::decode(&gsm7::unpack(&packed, fill, septets.len()));
            prop_assert_eq!(&ours, &text);
            prop_assert!(theirs == text || theirs == format!("{text}@"), "{:?}", theirs);
        }

        #[test]
        fn part_counts_match_sms_splitter(text in prop_oneof![gsm_text(), mixed_text()].prop_filter("non-empty", |t| !t.is_empty())) {
            let theirs = sms_splitter::SplitSms::default().split(text.clone());
            let ours = Body::new(&text, 255).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let expected_set = match ours.encoding() {
                Encoding::Gsm7 => "GSM",
                Encoding::Ucs2 => "Unicode",
            };
            prop_assert_eq!(theirs.character_set.as_str(), expected_set);
            prop_assert_eq!(theirs.parts.len(), usize::from(ours.segments()));
            let their_texts: Vec<String> = theirs.parts.iter().map(|p| p.content.clone()).collect();
            prop_assert_eq!(their_texts, ours.part_texts());
        }
    }

    #[test]
    fn the_oracles_agree_on_the_edges() {
        for text in [
            "a".repeat(160),
            "a".repeat(161),
            format!("{}€", "a".repeat(152)),
            format!("{}€b", "a".repeat(152)),
            "€".repeat(80),
            "€".repeat(81),
        ] {
            let ours = Body::new(&text, 255).map(|b| b.parts()).ok();
            let theirs = Gsm7BitUnpacked::new()
                .concatenate(&text, 160, 7)
                .ok()
                .map(|(c, _)| rusmpp_parts(c));
            assert_eq!(ours, theirs, "{text}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Addresses

fn countries() -> Vec<Option<Country>> {
    let mut out: Vec<Option<Country>> =
        ["US", "GB", "DE", "FR", "IN", "BR", "NU", "IT", "JP", "AU"]
            .iter()
            .map(|c| c.parse().ok())
            .collect();
    out.push(None);
    out
}

/// Things people type into a "to" field: digits with separators, sometimes a '+'.
fn number_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[+]?[0-9]{1,20}",
        "[+]?[0-9 ().-]{0,30}",
        "(00|011|\\+)[1-9][0-9]{6,14}",
        "[+]?1[ -]?[2-9][0-9]{2}[ -]?[2-9][0-9]{2}[ -]?[0-9]{4}",
        any::<String>(),
    ]
}

fn is_e164_shape(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

proptest! {
    #[test]
    fn address_parsers_never_panic_and_normalise(input in number_like(), country in prop::sample::select(countries())) {
        match E164::parse(&input, country) {
            Ok(n) => {
                prop_assert!(is_e164_shape(n.as_str()), "{}", n);
                prop_assert_eq!(format!("+{}", n.digits()), n.as_str());
                // The normal form parses to itself, with or without a default country.
                prop_assert_eq!(E164::parse(n.as_str(), None), Ok(n.clone()));
                prop_assert_eq!(E164::parse(n.as_str(), country), Ok(n.clone()));
                prop_assert_eq!(E164::from_stored(n.as_str()), n.clone());
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(!message.is_empty() && message.len() < 400, "{}", message);
            }
        }
        if let Ok(n) = E164::parse_strict(&input, country) {
            prop_assert_eq!(E164::parse(&input, country), Ok(n));
        }
        match Recipient::parse(&input, country) {
            Ok(Recipient::ShortCode(code)) => {
                prop_assert!((3..=8).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()));
            }
            Ok(Recipient::Number(n)) => prop_assert!(is_e164_shape(n.as_str())),
            Err(_) => {}
        }
        let _ = Sender::parse(&input, country);
    }

    #[test]
    fn senders_never_panic(input in prop_oneof!["[A-Za-z0-9 &.-]{0,15}", any::<String>()],
                           country in prop::sample::select(countries())) {
        match Sender::parse(&input, country) {
            Ok(Sender::Alphanumeric(s)) => {
                prop_assert!((1..=11).contains(&s.chars().count()));
                prop_assert!(s.chars().any(char::is_alphabetic));
                prop_assert!(s.chars().all(gsm7::is_default_char));
                prop_assert_eq!(s.as_str(), input.trim());
            }
            Ok(Sender::ShortCode(s)) => prop_assert!(s.bytes().all(|b| b.is_ascii_digit())),
            Ok(Sender::Number(n)) => prop_assert!(is_e164_shape(n.as_str())),
            Err(e) => prop_assert!(!matches!(e, AddressError::Empty)),
        }
    }

    #[test]
    fn every_country_reads_national_numbers_without_panicking(a in b'A'..=b'Z', b in b'A'..=b'Z', digits in "[0-9]{3,15}") {
        let code = String::from_utf8(vec![a, b]).unwrap_or_default();
        if let Ok(country) = code.parse::<Country>() {
            prop_assert_eq!(country.as_str(), code.as_str());
            let _ = E164::parse(&digits, Some(country));
            let _ = Recipient::parse(&digits, Some(country));
        }
    }
}
