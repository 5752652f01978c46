//! SMSC delivery receipts: a `deliver_sm` whose `esm_class` says "SMSC delivery receipt"
//! (SMPP 3.4 §5.2.12), read from its TLVs (`receipted_message_id` §5.3.2.12,
//! `message_state` §5.3.2.35, `network_error_code` §5.3.2.31) and from its `short_message`
//! text (Appendix B, "the format is SMSC vendor specific, but typically ..."):
//!
//! ```text
//! id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...
//! ```
//!
//! Appendix B is only a suggestion and SMSCs take liberties: fields in another order or
//! missing, keys in other cases, `submit_date` for `submit date`, ids in hex or decimal,
//! padded with zeros. [`parse_text`] reads all of that and never panics; [`normalize_id`]
//! and [`receipt_id_to_resp`] make the receipt's id comparable with the `message_id` of
//! the `submit_sm_resp` (§4.4.2).

/// A message's state as a receipt reports it (SMPP 3.4 §5.2.28 `message_state` values, and
/// Appendix B `stat` words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptState {
    /// 1, `ENROUTE`: on its way; an intermediate notification.
    Enroute,
    /// 2, `DELIVRD`: delivered to the handset.
    Delivered,
    /// 3, `EXPIRED`: its validity period passed before it could be delivered.
    Expired,
    /// 4, `DELETED`: deleted (by `cancel_sm` or an operator).
    Deleted,
    /// 5, `UNDELIV`: undeliverable.
    Undeliverable,
    /// 6, `ACCEPTD`: accepted. §5.2.28 means "read by customer service on behalf of the
    /// subscriber"; in practice most SMSCs and aggregators send it as "taken by the next
    /// hop", followed later by `DELIVRD` or `UNDELIV`. See [`ReceiptState::is_final`].
    Accepted,
    /// 7, `UNKNOWN`: the message is in an invalid state.
    Unknown,
    /// 8, `REJECTD`: rejected.
    Rejected,
    /// 9, `SKIPPED` (SMPP 5.0 §4.7.15): skipped, e.g. in a distribution list.
    Skipped,
}

impl ReceiptState {
    /// The state of an Appendix B `stat` value: `DELIVRD`, `EXPIRED`, `DELETED`, `UNDELIV`,
    /// `ACCEPTD`, `UNKNOWN`, `REJECTD`, `ENROUTE`, and the spelled-out forms some SMSCs use
    /// (`DELIVERED`, `UNDELIVERABLE`, `ACCEPTED`, `REJECTED`, `SKIPPED`), plus `BUFFRED`
    /// (`BUFFERED`), an intermediate "queued at the SMSC" that some SMSCs send, read as
    /// [`ReceiptState::Enroute`]. ASCII case and surrounding spaces are ignored.
    pub fn from_stat(s: &str) -> Option<Self> {
        const STATS: [(&str, ReceiptState); 17] = [
            ("DELIVRD", ReceiptState::Delivered),
            ("DELIVERED", ReceiptState::Delivered),
            ("EXPIRED", ReceiptState::Expired),
            ("DELETED", ReceiptState::Deleted),
            ("UNDELIV", ReceiptState::Undeliverable),
            ("UNDELIVERABLE", ReceiptState::Undeliverable),
            ("ACCEPTD", ReceiptState::Accepted),
            ("ACCEPTED", ReceiptState::Accepted),
            ("UNKNOWN", ReceiptState::Unknown),
            ("REJECTD", ReceiptState::Rejected),
            ("REJECTED", ReceiptState::Rejected),
            ("ENROUTE", ReceiptState::Enroute),
            ("BUFFRED", ReceiptState::Enroute),
            ("BUFFERED", ReceiptState::Enroute),
            ("SKIPPED", ReceiptState::Skipped),
            ("SKIPPD", ReceiptState::Skipped),
            ("UNDELIVRD", ReceiptState::Undeliverable),
        ];
        let s = s.trim();
        STATS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, state)| state)
    }

    /// The state of a `message_state` TLV value (SMPP 3.4 §5.2.28; 9 from SMPP 5.0).
    /// 0 (SMPP 5.0 `SCHEDULED`) and anything above 9 are not receipt states.
    pub fn from_message_state(v: u8) -> Option<Self> {
        Some(match v {
            1 => ReceiptState::Enroute,
            2 => ReceiptState::Delivered,
            3 => ReceiptState::Expired,
            4 => ReceiptState::Deleted,
            5 => ReceiptState::Undeliverable,
            6 => ReceiptState::Accepted,
            7 => ReceiptState::Unknown,
            8 => ReceiptState::Rejected,
            9 => ReceiptState::Skipped,
            _ => return None,
        })
    }

    /// The Appendix B `stat` word for this state.
    pub fn as_stat(self) -> &'static str {
        match self {
            ReceiptState::Enroute => "ENROUTE",
            ReceiptState::Delivered => "DELIVRD",
            ReceiptState::Expired => "EXPIRED",
            ReceiptState::Deleted => "DELETED",
            ReceiptState::Undeliverable => "UNDELIV",
            ReceiptState::Accepted => "ACCEPTD",
            ReceiptState::Unknown => "UNKNOWN",
            ReceiptState::Rejected => "REJECTD",
            ReceiptState::Skipped => "SKIPPED",
        }
    }

    /// Whether the state is an outcome, after which no other receipt is expected: every
    /// state but `Enroute` and `Accepted`.
    ///
    /// `Accepted` is not final here although Appendix B lists it among the final states:
    /// most SMSCs and aggregators send `ACCEPTD` when the next hop took the message and a
    /// `DELIVRD`/`UNDELIV` afterwards (Kannel reads it as "buffered" for that reason), and
    /// textgate records only the first final receipt of a part. Taking `ACCEPTD` as final
    /// would fix such messages at the wrong outcome; leaving it non-final costs only that a
    /// message from an SMSC that sends nothing after `ACCEPTD` stays `sent`, which is true.
    pub fn is_final(self) -> bool {
        !matches!(self, ReceiptState::Enroute | ReceiptState::Accepted)
    }

    /// Whether the message reached the handset: `Delivered` only.
    ///
    /// `Accepted` is not delivered: in the spec's sense (§5.2.28) customer service read the
    /// message, not the subscriber, and in the common practical sense only the next hop has
    /// it. Reporting it as delivered would claim a success that may never happen.
    pub fn delivered(self) -> bool {
        self == ReceiptState::Delivered
    }
}

/// A delivery receipt, as the SMSC reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// The message id, as received (trimmed); see [`receipt_id_to_resp`] to match it.
    pub id: String,
    /// The state.
    pub state: ReceiptState,
    /// The error: the `err:` field as received (`"000"` kept as it is), or the
    /// `network_error_code` TLV as `"TYPE:CODE"` (see [`format_network_error`]).
    pub error: Option<String>,
    /// `sub:`, the number of short messages originally submitted.
    pub submitted: Option<u32>,
    /// `dlvrd:`, the number of them delivered.
    pub delivered: Option<u32>,
    /// `submit date:`, as received (`YYMMDDhhmm`, some SMSCs add `ss`).
    pub submit_date: Option<String>,
    /// `done date:`, as received.
    pub done_date: Option<String>,
    /// `text:`, the start of the original message (20 characters in Appendix B).
    pub text: Option<String>,
}

/// Parses a receipt from its TLVs where they are present (they win: §5.3.2.12 and §5.3.2.35
/// are the machine-readable form, Appendix B text is vendor specific), else from the
/// `short_message` text; any field the TLVs do not carry is taken from the text. `None`
/// when neither gives both an id and a known state: it is not a receipt we can use.
pub fn parse(
    short_message_text: &str,
    receipted_message_id: Option<&str>,
    message_state: Option<u8>,
    network_error_code: Option<&[u8]>,
) -> Option<DeliveryReceipt> {
    let from_text = parse_text(short_message_text);
    let tlv_id = receipted_message_id
        .map(|id| id.trim_matches(|c: char| c.is_whitespace() || c == '\0'))
        .filter(|id| !id.is_empty());
    let tlv_state = message_state.and_then(ReceiptState::from_message_state);
    let tlv_error = network_error_code.and_then(format_network_error);
    let text = from_text.as_ref();
    let id = tlv_id
        .map(str::to_owned)
        .or_else(|| text.map(|r| r.id.clone()))?;
    let state = tlv_state.or_else(|| text.map(|r| r.state))?;
    Some(DeliveryReceipt {
        id,
        state,
        error: tlv_error.or_else(|| text.and_then(|r| r.error.clone())),
        submitted: text.and_then(|r| r.submitted),
        delivered: text.and_then(|r| r.delivered),
        submit_date: text.and_then(|r| r.submit_date.clone()),
        done_date: text.and_then(|r| r.done_date.clone()),
        text: text.and_then(|r| r.text.clone()),
    })
}

/// The `network_error_code` TLV (SMPP 3.4 §5.3.2.31: network type, 1 octet; error code, 2
/// octets big-endian) as `"TYPE:CODE"` in decimal, the code padded to 3 digits like the
/// `err:` field: `03 00 1B` (GSM, 27) is `"3:027"`. A value of another length (a broken
/// SMSC) is kept as hex so that nothing is lost; an empty one is `None`.
pub fn format_network_error(bytes: &[u8]) -> Option<String> {
    match bytes {
        [] => None,
        &[net, hi, lo] => Some(format!("{net}:{:03}", u16::from_be_bytes([hi, lo]))),
        other => Some(other.iter().map(|b| format!("{b:02x}")).collect()),
    }
}

/// The Appendix B fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
}

/// Each key as words; between words any run of spaces, `_` or `-` (or none) is accepted,
/// so `submit date`, `submit_date` and `submitdate` are one key.
const KEYS: [(&[&str], Key); 8] = [
    (&["id"], Key::Id),
    (&["sub"], Key::Sub),
    (&["dlvrd"], Key::Dlvrd),
    (&["submit", "date"], Key::SubmitDate),
    (&["done", "date"], Key::DoneDate),
    (&["stat"], Key::Stat),
    (&["err"], Key::Err),
    (&["text"], Key::Text),
];

/// Parses the Appendix B receipt text, tolerantly:
///
/// - keys in any ASCII case and any order, with spaces around the `:`; `submit date`,
///   `submit_date` and `submitdate` alike; fields separated by spaces (or `,`/`;`);
/// - any field but `id` and `stat` may be missing; the first occurrence of a key counts;
/// - `text:` runs to the end of the message, colons and key-like words included, as it is
///   the last field in Appendix B and holds user text; only when `id` or `stat` has not been
///   seen before it (an SMSC that puts `text:` elsewhere) does it end at the next key;
/// - ids are kept as received (letters included).
///
/// `None` when there is no non-empty `id` or no `stat` that [`ReceiptState::from_stat`]
/// knows. Never panics on any input.
pub fn parse_text(text: &str) -> Option<DeliveryReceipt> {
    let mut values: [Option<&str>; KEYS.len()] = [None; KEYS.len()];
    let mut current: Option<(Key, usize)> = None;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let Some((key, value_start)) = key_at(text, i) else {
            i += 1;
            continue;
        };
        if let Some((k, start)) = current.take() {
            store(&mut values, k, text.get(start..i));
        }
        let have_required = values[Key::Id as usize].is_some_and(|v| !v.trim().is_empty())
            && values[Key::Stat as usize].is_some();
        if key == Key::Text && have_required {
            store(&mut values, key, text.get(value_start..));
            current = None;
            break;
        }
        current = Some((key, value_start));
        i = value_start;
    }
    if let Some((k, start)) = current {
        store(&mut values, k, text.get(start..));
    }

    let field = |k: Key| {
        values[k as usize]
            .map(|v| v.trim_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '\0')))
            .filter(|v| !v.is_empty())
    };
    let id = field(Key::Id)?.to_owned();
    let state = ReceiptState::from_stat(field(Key::Stat)?)?;
    let count = |k: Key| field(k).and_then(|v| v.parse::<u32>().ok());
    Some(DeliveryReceipt {
        id,
        state,
        error: field(Key::Err).map(str::to_owned),
        submitted: count(Key::Sub),
        delivered: count(Key::Dlvrd),
        submit_date: field(Key::SubmitDate).map(str::to_owned),
        done_date: field(Key::DoneDate).map(str::to_owned),
        text: values[Key::Text as usize]
            .map(|v| v.trim().trim_end_matches('\0'))
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
    })
}

/// Keeps the first value of each key.
fn store<'a>(values: &mut [Option<&'a str>; KEYS.len()], key: Key, value: Option<&'a str>) {
    let slot = &mut values[key as usize];
    if slot.is_none() {
        *slot = Some(value.unwrap_or_default());
    }
}

/// The key that starts at byte `i` of `text` (at a word boundary, followed by optional
/// spaces and `:`), and the byte offset of its value.
fn key_at(text: &str, i: usize) -> Option<(Key, usize)> {
    let bytes = text.as_bytes();
    // A key starts a word: at the start, or after an ASCII byte that is not part of a word
    // (a non-ASCII byte belongs to a character that may be a letter).
    if i > 0 {
        let prev = *bytes.get(i - 1)?;
        if !prev.is_ascii() || prev.is_ascii_alphanumeric() || prev == b'_' {
            return None;
        }
    }
    KEYS.iter().find_map(|&(words, key)| {
        let mut at = i;
        for (n, word) in words.iter().enumerate() {
            if n > 0 {
                while matches!(bytes.get(at), Some(b' ' | b'\t' | b'_' | b'-')) {
                    at += 1;
                }
            }
            let candidate = bytes.get(at..at + word.len())?;
            if !candidate.eq_ignore_ascii_case(word.as_bytes()) {
                return None;
            }
            at += word.len();
        }
        while matches!(bytes.get(at), Some(b' ' | b'\t')) {
            at += 1;
        }
        (bytes.get(at) == Some(&b':')).then_some((key, at + 1))
    })
}

/// How one side writes message ids; parsed from the device's `resp_id_format` and
/// `receipt_id_format`.
pub use textgate_core::config::IdFormat;

/// The canonical form of a message id, for matching a receipt with its `submit_sm_resp`
/// (SMPP 3.4 §4.4.2 `message_id`, a C-string of up to 65 octets whose form the SMSC chooses):
///
/// - always trimmed (spaces and NULs);
/// - `Decimal`: leading zeros removed (`"0000012345"` is `"12345"`);
/// - `Hex`: `0x` removed, lower-cased, leading zeros removed;
/// - `Auto`: an id of hex digits only is treated like `Hex` without `0x` (so a decimal id
///   loses its zeros and keeps its digits); any other id is only trimmed, since its case
///   may matter;
/// - `Text`, or an id that is not valid in its format: only trimmed.
///
/// An id of zeros only becomes `"0"`.
pub fn normalize_id(id: &str, format: IdFormat) -> String {
    let id = id.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    match format {
        IdFormat::Text => id.to_owned(),
        IdFormat::Decimal if is_digits(id, 10) => strip_zeros(id).to_owned(),
        IdFormat::Hex => {
            let digits = strip_hex_prefix(id);
            if is_digits(digits, 16) {
                strip_zeros(digits).to_ascii_lowercase()
            } else {
                id.to_owned()
            }
        }
        IdFormat::Auto if is_digits(id, 16) => strip_zeros(id).to_ascii_lowercase(),
        IdFormat::Decimal | IdFormat::Auto => id.to_owned(),
    }
}

/// The receipt's id in the canonical form of the `submit_sm_resp` ids, so that
/// `receipt_id_to_resp(r, rf, sf) == normalize_id(resp_id, sf)` when they name the same
/// message. When one side is `Hex` and the other `Decimal` (a classic SMSC quirk:
/// `submit_sm_resp` in hex, the receipt in decimal, or the other way round), the number is
/// converted; otherwise the id is normalised in the resp's format. An id that is not a
/// number in `receipt_format` cannot be converted and is only normalised with `Auto`.
pub fn receipt_id_to_resp(id: &str, receipt_format: IdFormat, resp_format: IdFormat) -> String {
    let radix = match (receipt_format, resp_format) {
        (IdFormat::Decimal, IdFormat::Hex) => (10, 16),
        (IdFormat::Hex, IdFormat::Decimal) => (16, 10),
        _ => return normalize_id(id, resp_format),
    };
    let trimmed = id.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let digits = if radix.0 == 16 {
        strip_hex_prefix(trimmed)
    } else {
        trimmed
    };
    match convert_radix(digits, radix.0, radix.1) {
        Some(converted) => converted,
        None => normalize_id(id, IdFormat::Auto),
    }
}

/// Longest id [`convert_radix`] converts; SMPP ids are at most 64 characters (§4.4.2),
/// and the conversion is quadratic in the length.
const MAX_CONVERTIBLE: usize = 256;

/// `digits` (in base `from`) written in base `to`, lower case, no leading zeros; `None`
/// when `digits` is empty, too long, or not all digits of `from`. Works digit by digit, so
/// an id longer than any integer type converts too.
fn convert_radix(digits: &str, from: u32, to: u32) -> Option<String> {
    if digits.is_empty() || digits.len() > MAX_CONVERTIBLE {
        return None;
    }
    // Digits of the number in base `to`, least significant first.
    let mut out: Vec<u32> = Vec::new();
    for c in digits.chars() {
        let mut carry = c.to_digit(from)?;
        for d in out.iter_mut() {
            let v = *d * from + carry;
            *d = v % to;
            carry = v / to;
        }
        while carry > 0 {
            out.push(carry % to);
            carry /= to;
        }
    }
    if out.is_empty() {
        return Some("0".to_owned());
    }
    out.iter().rev().map(|&d| char::from_digit(d, to)).collect()
}

fn is_digits(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

fn strip_hex_prefix(s: &str) -> &str {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(s)
}

/// `s` without leading zeros, `"0"` if it is all zeros.
fn strip_zeros(s: &str) -> &str {
    let t = s.trim_start_matches('0');
    if t.is_empty() && !s.is_empty() {
        "0"
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn receipt(text: &str) -> DeliveryReceipt {
        parse_text(text).unwrap_or_else(|| panic!("not parsed: {text:?}"))
    }

    #[test]
    fn appendix_b_receipt() {
        let r = receipt("id:0123456789 sub:001 dlvrd:001 submit date:2311271200 done date:2311271201 stat:DELIVRD err:000 text:Hello");
        assert_eq!(
            r,
            DeliveryReceipt {
                id: "0123456789".into(),
                state: ReceiptState::Delivered,
                error: Some("000".into()),
                submitted: Some(1),
                delivered: Some(1),
                submit_date: Some("2311271200".into()),
                done_date: Some("2311271201".into()),
                text: Some("Hello".into()),
            }
        );
        assert!(r.state.delivered() && r.state.is_final());
    }

    #[test]
    fn hex_id_capital_text_key_undeliverable() {
        let r = receipt("id:7E9A3 sub:1 dlvrd:1 submit date:2311271200 done date:2311271201 stat:UNDELIV err:027 Text:Your code is: 1234");
        assert_eq!(r.id, "7E9A3");
        assert_eq!(r.state, ReceiptState::Undeliverable);
        assert_eq!(r.error.as_deref(), Some("027"));
        assert_eq!(r.text.as_deref(), Some("Your code is: 1234"));
        assert!(r.state.is_final() && !r.state.delivered());
    }

    #[test]
    fn missing_text_and_lowercase_and_uppercase_keys() {
        let r = receipt("id:42 sub:001 dlvrd:000 submit date:2311271200 done date:2311271300 stat:EXPIRED err:000");
        assert_eq!(
            (r.state, r.text, r.delivered),
            (ReceiptState::Expired, None, Some(0))
        );
        let r = receipt("ID:42 SUB:001 DLVRD:001 SUBMIT DATE:2311271200 DONE DATE:2311271300 STAT:delivrd ERR:000 TEXT:x");
        assert_eq!(r.id, "42");
        assert_eq!(r.state, ReceiptState::Delivered);
        assert_eq!(r.submit_date.as_deref(), Some("2311271200"));
        assert_eq!(r.text.as_deref(), Some("x"));
    }

    #[test]
    fn any_order_extra_spaces_and_underscored_dates() {
        let r = receipt("  stat : REJECTD   err: 011  id :  abc-123   done_date:2311271201 submit_date: 2311271200  ");
        assert_eq!(r.id, "abc-123");
        assert_eq!(r.state, ReceiptState::Rejected);
        assert_eq!(r.error.as_deref(), Some("011"));
        assert_eq!(r.submit_date.as_deref(), Some("2311271200"));
        assert_eq!(r.done_date.as_deref(), Some("2311271201"));
        assert_eq!((r.submitted, r.delivered, r.text), (None, None, None));
        let r = receipt("id:1 submitdate:2311271200 donedate:2311271201 stat:DELIVERED");
        assert_eq!(r.submit_date.as_deref(), Some("2311271200"));
        assert_eq!(r.done_date.as_deref(), Some("2311271201"));
        assert_eq!(r.state, ReceiptState::Delivered);
    }

    #[test]
    fn text_field_keeps_colons_and_key_like_words() {
        let r = receipt("id:9 sub:001 dlvrd:001 submit date:2311271200 done date:2311271201 stat:DELIVRD err:000 text:id:5 stat:UNDELIV err:9");
        assert_eq!(r.id, "9");
        assert_eq!(r.state, ReceiptState::Delivered);
        assert_eq!(r.error.as_deref(), Some("000"));
        assert_eq!(r.text.as_deref(), Some("id:5 stat:UNDELIV err:9"));
    }

    #[test]
    fn text_before_the_required_fields_ends_at_the_next_key() {
        let r = receipt("text:Hello there id:77 stat:DELIVRD err:000");
        assert_eq!(r.id, "77");
        assert_eq!(r.text.as_deref(), Some("Hello there"));
        assert_eq!(r.error.as_deref(), Some("000"));
    }

    #[test]
    fn keys_inside_words_are_not_keys() {
        // "paid:" contains "id:", "substat:" contains "stat:": neither starts a word.
        let r = receipt("id:1 paid:2 substat:ENROUTE stat:ACCEPTD");
        assert_eq!(r.id, "1 paid:2 substat:ENROUTE");
        assert_eq!(r.state, ReceiptState::Accepted);
    }

    #[test]
    fn comma_separated_fields() {
        let r = receipt("id:55,sub:1,dlvrd:1,stat:DELIVRD,err:0");
        assert_eq!(r.id, "55");
        assert_eq!(r.submitted, Some(1));
        assert_eq!(r.error.as_deref(), Some("0"));
    }

    #[test]
    fn not_receipts() {
        for t in [
            "",
            "Hello, this is an ordinary text",
            "id: stat:DELIVRD",
            "id:12 stat:WHATEVER",
            "id:12 sub:1 dlvrd:1",
            "stat:DELIVRD err:000",
            "identity:1 status:DELIVRD",
        ] {
            assert_eq!(parse_text(t), None, "{t:?}");
        }
    }

    #[test]
    fn bad_numbers_are_missing_not_errors() {
        let r = receipt("id:1 sub:abc dlvrd:99999999999 stat:DELIVRD");
        assert_eq!((r.submitted, r.delivered), (None, None));
    }

    #[test]
    fn first_occurrence_wins() {
        let r = receipt("id:1 id:2 stat:DELIVRD stat:UNDELIV");
        assert_eq!((r.id.as_str(), r.state), ("1", ReceiptState::Delivered));
    }

    #[test]
    fn non_ascii_is_fine() {
        let r = receipt("id:é1 stat:DELIVRD text:Привет: мир 😀");
        assert_eq!(r.id, "é1");
        assert_eq!(r.text.as_deref(), Some("Привет: мир 😀"));
        // A key right after a non-ASCII letter is inside a word.
        assert_eq!(parse_text("éid:1 stat:DELIVRD"), None);
    }

    #[test]
    fn stat_words() {
        for (s, st) in [
            ("DELIVRD", ReceiptState::Delivered),
            ("delivered", ReceiptState::Delivered),
            ("EXPIRED", ReceiptState::Expired),
            ("DELETED", ReceiptState::Deleted),
            ("UNDELIV", ReceiptState::Undeliverable),
            ("Undeliverable", ReceiptState::Undeliverable),
            ("ACCEPTD", ReceiptState::Accepted),
            ("UNKNOWN", ReceiptState::Unknown),
            ("REJECTD", ReceiptState::Rejected),
            ("ENROUTE", ReceiptState::Enroute),
            ("BUFFRED", ReceiptState::Enroute),
            (" skipped ", ReceiptState::Skipped),
        ] {
            assert_eq!(ReceiptState::from_stat(s), Some(st), "{s}");
        }
        assert_eq!(ReceiptState::from_stat("DELIV"), None);
        assert_eq!(ReceiptState::from_stat(""), None);
        for v in 1..=9 {
            let st = ReceiptState::from_message_state(v).unwrap();
            assert_eq!(ReceiptState::from_stat(st.as_stat()), Some(st));
        }
        assert_eq!(ReceiptState::from_message_state(0), None);
        assert_eq!(ReceiptState::from_message_state(10), None);
    }

    #[test]
    fn finality_and_delivery() {
        use ReceiptState::*;
        for s in [
            Delivered,
            Expired,
            Deleted,
            Undeliverable,
            Unknown,
            Rejected,
            Skipped,
        ] {
            assert!(s.is_final(), "{s:?}");
        }
        assert!(!Enroute.is_final());
        assert!(!Accepted.is_final());
        for s in [
            Enroute,
            Expired,
            Deleted,
            Undeliverable,
            Accepted,
            Unknown,
            Rejected,
            Skipped,
        ] {
            assert!(!s.delivered(), "{s:?}");
        }
        assert!(Delivered.delivered());
    }

    #[test]
    fn tlvs_win_over_text() {
        // The text says decimal 8198 DELIVRD; the TLVs say hex 2006, UNDELIVERABLE, GSM 27.
        let text = "id:8198 sub:001 dlvrd:000 submit date:2311271200 done date:2311271201 stat:DELIVRD err:000 text:Hi";
        let r = parse(text, Some("2006\0"), Some(5), Some(&[3, 0, 27])).unwrap();
        assert_eq!(r.id, "2006");
        assert_eq!(r.state, ReceiptState::Undeliverable);
        assert_eq!(r.error.as_deref(), Some("3:027"));
        // Fields only the text has are kept.
        assert_eq!(r.submitted, Some(1));
        assert_eq!(r.done_date.as_deref(), Some("2311271201"));
        assert_eq!(r.text.as_deref(), Some("Hi"));
    }

    #[test]
    fn tlvs_alone_or_mixed() {
        let r = parse("", Some("abc"), Some(2), None).unwrap();
        assert_eq!(
            r,
            DeliveryReceipt {
                id: "abc".into(),
                state: ReceiptState::Delivered,
                error: None,
                submitted: None,
                delivered: None,
                submit_date: None,
                done_date: None,
                text: None,
            }
        );
        // Id from the TLV, state from the text; and the other way round.
        let r = parse("id:1 stat:EXPIRED err:005", Some("99"), None, None).unwrap();
        assert_eq!((r.id.as_str(), r.state), ("99", ReceiptState::Expired));
        assert_eq!(r.error.as_deref(), Some("005"));
        let r = parse("id:1 stat:EXPIRED", None, Some(2), None).unwrap();
        assert_eq!((r.id.as_str(), r.state), ("1", ReceiptState::Delivered));
        // An unknown message_state falls back to the text.
        let r = parse("id:1 stat:EXPIRED", Some("1"), Some(0), None).unwrap();
        assert_eq!(r.state, ReceiptState::Expired);
        // Nothing usable.
        assert_eq!(parse("hello", None, None, None), None);
        assert_eq!(parse("hello", Some("1"), None, None), None);
        assert_eq!(parse("hello", Some(" "), Some(2), None), None);
        assert_eq!(parse("hello", None, Some(2), None), None);
    }

    #[test]
    fn network_error_code_forms() {
        assert_eq!(format_network_error(&[3, 0, 1]).as_deref(), Some("3:001"));
        assert_eq!(
            format_network_error(&[8, 0x12, 0x34]).as_deref(),
            Some("8:4660")
        );
        assert_eq!(format_network_error(&[]), None);
        assert_eq!(format_network_error(&[1, 0xAB]).as_deref(), Some("01ab"));
    }

    #[test]
    fn normalising_ids() {
        assert_eq!(normalize_id(" 0000012345 ", IdFormat::Decimal), "12345");
        assert_eq!(normalize_id("0000012345", IdFormat::Auto), "12345");
        assert_eq!(normalize_id("000", IdFormat::Decimal), "0");
        assert_eq!(normalize_id("00A1b2", IdFormat::Hex), "a1b2");
        assert_eq!(normalize_id("0x00FF", IdFormat::Hex), "ff");
        assert_eq!(normalize_id("7E9A3", IdFormat::Auto), "7e9a3");
        // Not numbers: only trimmed; case kept where it may matter.
        assert_eq!(normalize_id("AbZ-007\0", IdFormat::Auto), "AbZ-007");
        assert_eq!(normalize_id("00AB", IdFormat::Text), "00AB");
        assert_eq!(normalize_id("12a", IdFormat::Decimal), "12a");
        assert_eq!(normalize_id("xyz", IdFormat::Hex), "xyz");
        assert_eq!(normalize_id("", IdFormat::Auto), "");
        assert_eq!(
            normalize_id("6a1c2f0e-1b6e-4a43-9d55-0d6b1e1f4b6a", IdFormat::Auto),
            "6a1c2f0e-1b6e-4a43-9d55-0d6b1e1f4b6a"
        );
    }

    #[test]
    fn hex_resp_decimal_receipt() {
        // submit_sm_resp said "1A2B3C"; the receipt says 1715004, zero-padded to 10 digits.
        let resp = normalize_id("1A2B3C", IdFormat::Hex);
        assert_eq!(
            receipt_id_to_resp("0001715004", IdFormat::Decimal, IdFormat::Hex),
            resp
        );
        assert_eq!(
            receipt_id_to_resp("1a2b3c", IdFormat::Hex, IdFormat::Decimal),
            normalize_id("1715004", IdFormat::Decimal)
        );
        // Beyond u128: 40 hex digits.
        let hex = "ffffffffffffffffffffffffffffffffffffffff";
        let dec = "1461501637330902918203684832716283019655932542975";
        assert_eq!(
            receipt_id_to_resp(dec, IdFormat::Decimal, IdFormat::Hex),
            hex
        );
        assert_eq!(
            receipt_id_to_resp(hex, IdFormat::Hex, IdFormat::Decimal),
            dec
        );
        assert_eq!(
            receipt_id_to_resp("0", IdFormat::Decimal, IdFormat::Hex),
            "0"
        );
        // Not a number in the receipt's format: normalised, not converted.
        assert_eq!(
            receipt_id_to_resp("12Z", IdFormat::Decimal, IdFormat::Hex),
            "12Z"
        );
        // Same format (or unknown): normalised in the resp's format.
        assert_eq!(
            receipt_id_to_resp("00FF", IdFormat::Hex, IdFormat::Hex),
            "ff"
        );
        assert_eq!(
            receipt_id_to_resp("0042", IdFormat::Auto, IdFormat::Decimal),
            "42"
        );
    }

    proptest! {
        #[test]
        fn parse_text_never_panics(s in "\\PC{0,200}") {
            let _ = parse_text(&s);
        }

        #[test]
        fn parse_text_never_panics_on_receipt_like_noise(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("id:".to_owned()), Just("stat:".to_owned()), Just("text:".to_owned()),
                    Just("submit date:".to_owned()), Just(" ".to_owned()), Just("é".to_owned()),
                    Just("DELIVRD".to_owned()), "[a-zA-Z0-9:_ ]{0,6}",
                ],
                0..20,
            )
        ) {
            let s = parts.concat();
            let _ = parse(&s, None, None, None);
        }

        #[test]
        fn generated_receipts_parse_back(
            id in "[0-9A-Za-z]{1,20}",
            sub in 0u32..1000,
            dlvrd in 0u32..1000,
            stat in 1u8..=9,
            err in "[0-9]{3}",
            text in "\\PC{0,20}",
        ) {
            let state = ReceiptState::from_message_state(stat).unwrap();
            let line = format!(
                "id:{id} sub:{sub:03} dlvrd:{dlvrd:03} submit date:2311271200 done date:2311271201 stat:{} err:{err} text:{text}",
                state.as_stat()
            );
            let r = parse_text(&line).unwrap();
            prop_assert_eq!(r.id, id);
            prop_assert_eq!(r.state, state);
            prop_assert_eq!(r.submitted, Some(sub));
            prop_assert_eq!(r.delivered, Some(dlvrd));
            prop_assert_eq!(r.error, Some(err));
            let t = text.trim();
            prop_assert_eq!(r.text.as_deref(), (!t.is_empty()).then_some(t));
        }

        #[test]
        fn hex_decimal_round_trip(n in any::<u128>(), hex_pad in 0usize..6, dec_pad in 0usize..6, upper in any::<bool>()) {
            let hex = if upper { format!("{n:X}") } else { format!("{n:x}") };
            let hex = format!("{}{hex}", "0".repeat(hex_pad));
            let dec = format!("{}{n}", "0".repeat(dec_pad));
            prop_assert_eq!(
                receipt_id_to_resp(&dec, IdFormat::Decimal, IdFormat::Hex),
                normalize_id(&hex, IdFormat::Hex)
            );
            prop_assert_eq!(
                receipt_id_to_resp(&hex, IdFormat::Hex, IdFormat::Decimal),
                normalize_id(&dec, IdFormat::Decimal)
            );
            let there = receipt_id_to_resp(&dec, IdFormat::Decimal, IdFormat::Hex);
            prop_assert_eq!(receipt_id_to_resp(&there, IdFormat::Hex, IdFormat::Decimal), n.to_string());
            prop_assert_eq!(normalize_id(&hex, IdFormat::Hex), format!("{n:x}"));
        }

        #[test]
        fn id_functions_never_panic(s in "\\PC{0,300}", a in 0u8..4, b in 0u8..4) {
            let f = |k: u8| [IdFormat::Auto, IdFormat::Hex, IdFormat::Decimal, IdFormat::Text][usize::from(k)];
            let _ = normalize_id(&s, f(a));
            let _ = receipt_id_to_resp(&s, f(a), f(b));
        }
    }
}
