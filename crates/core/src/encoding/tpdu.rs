//! SMS transfer PDUs (3GPP TS 23.040 §9.2) as a GSM modem takes and gives them in PDU mode
//! (TS 27.005 §3.1, `<pdu>`): the SMSC address field (TS 24.011 §8.2.5.1-2; length octet 0
//! for "the modem's SMSC") followed by the TPDU, written as hex.
//!
//! - Encoding: [`encode_submit`] builds the SMS-SUBMIT of one part, [`encode_message`] those
//!   of every part of a [`Body`]; each [`SubmitPdu`] is the hex line typed after
//!   `AT+CMGS=<tpdu_len>`'s prompt.
//! - Decoding: [`decode`] reads what `+CMGR`, `+CMGL`, `+CMT` and `+CDS` hand back, SMSC
//!   field first, and dispatches on TP-MTI (§9.2.3.1) to [`Deliver`], [`StatusReport`] or
//!   [`Submit`] (stored outgoing messages, which `AT+CMGL=4` lists too).
//!
//! Text goes through the rest of [`crate::encoding`]: [`gsm7`] for the alphabet and septet
//! packing, [`ucs2`] for UTF-16BE, [`udh`] for the concatenation header and the fill bits
//! that put GSM 7-bit text on a septet boundary after it (§9.2.3.24), and [`Body`] for the
//! choice of alphabet and the split into parts.
//!
//! Everything a modem sends is untrusted: every length is checked against the octets that
//! remain before anything is read or allocated, input longer than [`MAX_PDU_OCTETS`] is
//! refused before it is decoded, and nothing panics; what cannot be read is a [`PduError`]
//! that says which field was wrong. What is odd but readable is read: an address digit
//! that is not decimal is shown as TS 24.008 shows it, a timestamp that is not a date is
//! kept as octets ([`Timestamp::utc_ms`] is `None`), octets after the user data are ignored.

use std::borrow::Cow;
use std::time::Duration;

use super::udh::{self, Concat, ConcatRef, Udh, UdhError};
use super::{gsm7, ucs2, Body, Encoding};
use crate::address::{Recipient, E164};
use crate::clock::Millis;

/// The longest PDU [`decode`] accepts, in octets. A TPDU is at most 164 octets (an
/// SMS-SUBMIT with every optional field and 140 octets of user data, §9.2.2.2) and the
/// SMSC field at most 12 (length, type of address, 10 octets of digits); the margin is for
/// modems that pad.
pub const MAX_PDU_OCTETS: usize = 200;
/// The most septets of GSM 7-bit user data in one SMS, header included (§9.2.3.16).
pub const MAX_USER_DATA_SEPTETS: usize = 160;
/// The most octets of 8-bit or UCS-2 user data in one SMS, header included (§9.2.3.16).
pub const MAX_USER_DATA_OCTETS: usize = 140;
/// The most digits of an address: 10 octets of address value (§9.1.2.5).
pub const MAX_ADDRESS_DIGITS: usize = 20;
/// The longest SMSC field after its length octet: type of address and 10 octets of digits
/// (20 digits, as for the addresses of §9.1.2.5 and modems' `+CSCA`).
const MAX_SMSC_OCTETS: usize = 11;

/// Type of address (§9.1.2.5): TON international, NPI ISDN/E.164. Bit 7 is always 1.
pub const TOA_INTERNATIONAL: u8 = 0x91;
/// Type of address (§9.1.2.5): TON unknown, NPI ISDN/E.164, for short codes and numbers
/// without a country code.
pub const TOA_UNKNOWN: u8 = 0x81;
/// TON 001, international number (§9.1.2.5, bits 6-4 of the type of address).
const TON_INTERNATIONAL: u8 = 0b001;
/// TON 101, alphanumeric, GSM 7-bit default alphabet (§9.1.2.5).
const TON_ALPHANUMERIC: u8 = 0b101;

/// TP-MTI of an SMS-SUBMIT (§9.2.3.1).
const MTI_SUBMIT: u8 = 0b01;
/// TP-MTI of an SMS-STATUS-REPORT (§9.2.3.1).
const MTI_STATUS_REPORT: u8 = 0b10;
/// First octet, bit 2 of an SMS-SUBMIT: TP-RD, reject duplicates (§9.2.3.25).
const RD: u8 = 0x04;
/// First octet, bit 2 of an SMS-DELIVER or SMS-STATUS-REPORT: TP-MMS (§9.2.3.2), set when
/// no more messages are waiting.
const MMS: u8 = 0x04;
/// First octet, bits 4-3 of an SMS-SUBMIT: TP-VPF = 10, relative validity (§9.2.3.3).
const VPF_RELATIVE: u8 = 0x10;
/// First octet, bit 5 of an SMS-SUBMIT: TP-SRR (§9.2.3.5); of an SMS-DELIVER: TP-SRI
/// (§9.2.3.4); of an SMS-STATUS-REPORT: TP-SRQ (§9.2.3.26).
const BIT5: u8 = 0x20;
/// First octet, bit 6: TP-UDHI, the user data starts with a header (§9.2.3.23).
const UDHI: u8 = 0x40;
/// First octet, bit 7 of an SMS-SUBMIT or SMS-DELIVER: TP-RP, reply path (§9.2.3.17).
const RP: u8 = 0x80;

// ---------------------------------------------------------------------------------------
// Errors

/// Why a PDU from a modem could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// The hex string is empty (or only white space).
    #[error("the PDU is empty")]
    Empty,
    /// A character that is not a hex digit.
    #[error("the PDU has {found:?} at position {index}, which is not a hex digit")]
    NotHex {
        /// Its byte offset in the string given.
        index: usize,
        /// The character.
        found: char,
    },
    /// An odd number of hex digits: half an octet at the end.
    #[error("the PDU has {digits} hex digits, an odd number: every octet takes two")]
    OddLength {
        /// How many hex digits there are.
        digits: usize,
    },
    /// More octets than any SMSC field and TPDU can take together.
    #[error(
        "the PDU is {octets} octets long; the longest accepted is {MAX_PDU_OCTETS} (an SMSC \
         address and a TPDU take at most 176)"
    )]
    TooLong {
        /// The length of the input, in octets.
        octets: usize,
    },
    /// The PDU ends before a field it announces.
    #[error(
        "the PDU ends inside {field}: {needed} octets needed at offset {offset}, {available} left"
    )]
    Truncated {
        /// The field being read, named as TS 23.040 names it.
        field: &'static str,
        /// Where it starts, in octets from the start of the input.
        offset: usize,
        /// How many octets it needs.
        needed: usize,
        /// How many there were.
        available: usize,
    },
    /// A length field larger than its field can ever be.
    #[error("{field} has length {len}; the most it can have is {max}")]
    FieldTooLong {
        /// The field, named as TS 23.040 or TS 24.011 names it.
        field: &'static str,
        /// The length received.
        len: usize,
        /// The most the spec allows.
        max: usize,
    },
    /// TP-DCS says the text is compressed (TS 23.038 §4, TS 23.042): we cannot inflate it.
    #[error(
        "TP-DCS 0x{0:02X} marks the user data as compressed (3GPP TS 23.042), which is not supported"
    )]
    Compressed(u8),
    /// The user data header does not add up (TS 23.040 §9.2.3.24).
    #[error("the user data header cannot be read: {0}")]
    Header(#[from] UdhError),
    /// A GSM 7-bit user data header (with its fill bits) longer than TP-UDL says the whole
    /// user data is. (For 8-bit and UCS-2 the header cannot outgrow TP-UDL: it is read from
    /// the TP-UDL octets.)
    #[error("the user data header takes {header} septets but TP-UDL is only {udl}")]
    HeaderExceedsUserData {
        /// Septets the header takes, fill bits included.
        header: usize,
        /// TP-UDL.
        udl: usize,
    },
}

/// Why an SMS-SUBMIT could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// A destination or SMSC number that is not 1 to 20 decimal digits (after the '+').
    #[error(
        "{number:?} cannot be written in a PDU: an address is 1 to {MAX_ADDRESS_DIGITS} digits"
    )]
    BadAddress {
        /// The number as given.
        number: String,
    },
    /// More user data than one SMS holds.
    #[error("the user data takes {len} {unit} with its header; one SMS holds at most {max}")]
    TooLong {
        /// Septets (GSM 7-bit) or octets (UCS-2), header included.
        len: usize,
        /// "septets" or "octets".
        unit: &'static str,
        /// 160 or 140.
        max: usize,
    },
    /// UCS-2 data that is not whole 16-bit units.
    #[error("UCS-2 user data must be whole 16-bit units, but it is {len} octets")]
    OddUcs2 {
        /// Its length in octets.
        len: usize,
    },
    /// More parts than a concatenation header can number.
    #[error("the message has {0} parts; a concatenation header numbers at most 255")]
    TooManyParts(usize),
}

// ---------------------------------------------------------------------------------------
// Addresses

/// An address as TP-OA, TP-DA, TP-RA (§9.1.2.5) or the SMSC field (TS 24.011 §8.2.5.1-2)
/// carries it, decoded by its type of number. Digits beyond 0-9 are shown as TS 24.008
/// (table 10.5.118) shows them: `*`, `#`, `a`, `b`, `c`.
///
/// Nothing is checked beyond what the PDU says: an `International` value is not
/// necessarily a valid [`crate::address::E164`], and an alphanumeric one may hold any GSM
/// character, control characters included (store it with
/// [`crate::address::without_controls`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// TON 001, international: "+" and the digits, e.g. "+46708251358".
    International(String),
    /// TON 101, alphanumeric: GSM 7-bit packed text, e.g. "InternetSMS".
    Alphanumeric(String),
    /// Any other type of number (unknown, national, network specific, subscriber,
    /// abbreviated, reserved): the digits as sent, and the type-of-address octet.
    Other {
        /// The type-of-address octet: TON in bits 6-4, numbering plan in bits 3-0.
        type_of_address: u8,
        /// The digits, e.g. "72345" for a short code.
        digits: String,
    },
}

impl Address {
    /// The number with '+', the digits, or the alphanumeric text.
    pub fn as_str(&self) -> &str {
        match self {
            Address::International(s) | Address::Alphanumeric(s) => s,
            Address::Other { digits, .. } => digits,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`encode_submit`] writes a recipient: a number as international (0x91), a short code
/// as TON unknown (0x81).
impl From<&Recipient> for Address {
    fn from(recipient: &Recipient) -> Address {
        match recipient {
            Recipient::Number(n) => Address::International(n.as_str().to_owned()),
            Recipient::ShortCode(s) => Address::Other {
                type_of_address: TOA_UNKNOWN,
                digits: s.clone(),
            },
        }
    }
}

/// The character a semi-octet stands for in an address (§9.1.2.3, TS 24.008 table
/// 10.5.118); `None` for 1111, the filler of an odd-length number.
fn semi_octet_char(nibble: u8) -> Option<char> {
    match nibble {
        0..=9 => Some(char::from(b'0' + nibble)),
        0xA => Some('*'),
        0xB => Some('#'),
        0xC => Some('a'),
        0xD => Some('b'),
        0xE => Some('c'),
        _ => None,
    }
}

/// The first `count` semi-octets of `value`, low nibble first (§9.1.2.3); fillers skipped.
fn semi_octet_digits(value: &[u8], count: usize) -> String {
    value
        .iter()
        .flat_map(|&o| [o & 0x0F, o >> 4])
        .take(count)
        .filter_map(semi_octet_char)
        .collect()
}

/// An address value read by its type of address; `semi_octets` is the number of useful
/// semi-octets (§9.1.2.5: digits for a number, ⌈7 × characters / 4⌉ for alphanumeric).
fn address_from(type_of_address: u8, value: &[u8], semi_octets: usize) -> Address {
    match (type_of_address >> 4) & 0x07 {
        TON_ALPHANUMERIC => {
            // 4 bits per semi-octet, 7 per septet; rounding down drops the 1-3 bits of the
            // last semi-octet that are padding. (A sender that counts 2 semi-octets per octet
            // where 7 bits are padding makes a trailing '@'; it is kept, not guessed away.)
            let septets = semi_octets * 4 / 7;
            Address::Alphanumeric(gsm7::decode(&gsm7::unpack(value, 0, septets)))
        }
        TON_INTERNATIONAL => {
            Address::International(format!("+{}", semi_octet_digits(value, semi_octets)))
        }
        _ => Address::Other {
            type_of_address,
            digits: semi_octet_digits(value, semi_octets),
        },
    }
}

/// `digits` as semi-octets, low nibble first, an odd one padded with 1111 (§9.1.2.3), or
/// `None` unless they are 1 to [`MAX_ADDRESS_DIGITS`] decimal digits.
fn digits_to_semi_octets(digits: &str) -> Option<Vec<u8>> {
    let ok = (1..=MAX_ADDRESS_DIGITS).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| {
        digits
            .as_bytes()
            .chunks(2)
            .map(|pair| match pair {
                [low, high] => (low - b'0') | ((high - b'0') << 4),
                [low] => (low - b'0') | 0xF0,
                _ => 0xFF,
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------
// Data coding scheme

/// The alphabet of the user data (TS 23.038 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alphabet {
    /// The GSM 7-bit default alphabet; TP-UDL counts septets.
    Gsm7,
    /// 8-bit data; TP-UDL counts octets.
    Data8,
    /// UCS-2 (read as UTF-16BE); TP-UDL counts octets.
    Ucs2,
}

impl Alphabet {
    /// The [`Encoding`] textgate sends this alphabet as, if it sends it.
    pub fn encoding(self) -> Option<Encoding> {
        match self {
            Alphabet::Gsm7 => Some(Encoding::Gsm7),
            Alphabet::Ucs2 => Some(Encoding::Ucs2),
            Alphabet::Data8 => None,
        }
    }
}

/// The message class (TS 23.038 §4): where the receiving phone puts the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageClass {
    /// Class 0: shown at once and not stored ("flash SMS").
    Class0,
    /// Class 1: ME specific (stored in the phone).
    Class1,
    /// Class 2: SIM specific (stored on the SIM).
    Class2,
    /// Class 3: TE specific (passed to the terminal equipment).
    Class3,
}

impl MessageClass {
    /// The class in bits 1-0 of a TP-DCS octet.
    fn from_bits(dcs: u8) -> MessageClass {
        match dcs & 0x03 {
            0 => MessageClass::Class0,
            1 => MessageClass::Class1,
            2 => MessageClass::Class2,
            _ => MessageClass::Class3,
        }
    }
}

/// A TP-DCS octet (§9.2.3.10), read by its coding group (TS 23.038 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataCoding {
    /// The octet as received.
    pub octet: u8,
    /// The alphabet it names.
    pub alphabet: Alphabet,
    /// The message class, when the octet gives one.
    pub class: Option<MessageClass>,
}

impl DataCoding {
    /// Reads a TP-DCS octet (TS 23.038 §4):
    ///
    /// - 00xx and 01xx (general data coding; 01xx also marks the message for automatic
    ///   deletion): bit 5 compressed, bit 4 "bits 1-0 are a class", bits 3-2 the alphabet
    ///   (00 GSM 7-bit, 01 8-bit, 10 UCS-2, 11 reserved);
    /// - 1100 and 1101 (message waiting, discard or store): GSM 7-bit; 1110 (message
    ///   waiting, store): UCS-2;
    /// - 1111 (data coding / message class): bit 2 is 8-bit data or GSM 7-bit, bits 1-0
    ///   the class;
    /// - reserved codings (alphabet 11, groups 1000-1011): GSM 7-bit, because TS 23.038 §4
    ///   says a receiving entity shall assume the default alphabet for any reserved coding.
    ///
    /// Errors: compressed text, which TS 23.042 defines and we cannot inflate.
    pub fn from_octet(octet: u8) -> Result<DataCoding, PduError> {
        let (alphabet, class) = match octet >> 4 {
            0x0..=0x7 => {
                if octet & 0x20 != 0 {
                    return Err(PduError::Compressed(octet));
                }
                let alphabet = match (octet >> 2) & 0x03 {
                    0b01 => Alphabet::Data8,
                    0b10 => Alphabet::Ucs2,
                    // 00 default alphabet; 11 reserved, read as the default alphabet.
                    _ => Alphabet::Gsm7,
                };
                let class = (octet & 0x10 != 0).then(|| MessageClass::from_bits(octet));
                (alphabet, class)
            }
            0xC | 0xD => (Alphabet::Gsm7, None),
            0xE => (Alphabet::Ucs2, None),
            0xF => {
                let alphabet = if octet & 0x04 != 0 {
                    Alphabet::Data8
                } else {
                    Alphabet::Gsm7
                };
                (alphabet, Some(MessageClass::from_bits(octet)))
            }
            // 1000..1011: reserved coding groups.
            _ => (Alphabet::Gsm7, None),
        };
        Ok(DataCoding {
            octet,
            alphabet,
            class,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Time

/// A time stamp in semi-octets (TP-SCTS §9.2.3.11, also TP-DT §9.2.3.13 and an absolute
/// TP-VP §9.2.3.12.2): year, month, day, hour, minute, second and the offset from UTC in
/// quarter hours, each octet two decimal digits with the low nibble first; bit 3 of the
/// last octet is the offset's sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// The seven octets as received.
    pub octets: [u8; 7],
    /// The time in UTC, in milliseconds since the Unix epoch; `None` when the octets are
    /// not a date and time (a digit above 9, month 13, all zeros).
    pub utc_ms: Option<Millis>,
    /// The sender's offset from UTC in minutes (east positive); `None` when `utc_ms` is.
    pub offset_minutes: Option<i16>,
}

impl Timestamp {
    /// Reads the seven octets. Never fails: what is not a time is kept as octets only.
    ///
    /// The year has two digits; 90-99 are read as 1990-1999 (the first SMS was sent in
    /// 1992) and 00-89 as 2000-2089.
    pub fn from_octets(octets: [u8; 7]) -> Timestamp {
        match utc(&octets) {
            Some((utc_ms, offset_minutes)) => Timestamp {
                octets,
                utc_ms: Some(utc_ms),
                offset_minutes: Some(offset_minutes),
            },
            None => Timestamp {
                octets,
                utc_ms: None,
                offset_minutes: None,
            },
        }
    }
}

/// Two swapped decimal digits (§9.2.3.11: the low nibble is the tens), or `None`.
fn swapped_bcd(octet: u8) -> Option<u8> {
    let (tens, units) = (octet & 0x0F, octet >> 4);
    (tens <= 9 && units <= 9).then_some(tens * 10 + units)
}

/// The UTC milliseconds and the offset in minutes of a semi-octet time stamp.
fn utc(octets: &[u8; 7]) -> Option<(Millis, i16)> {
    let [year, month, day, hour, minute, second, zone] = *octets;
    let year = i32::from(swapped_bcd(year)?);
    let year = if year >= 90 { 1900 + year } else { 2000 + year };
    let month = time::Month::try_from(swapped_bcd(month)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, swapped_bcd(day)?).ok()?;
    let clock = time::Time::from_hms(
        swapped_bcd(hour)?,
        swapped_bcd(minute)?,
        swapped_bcd(second)?,
    )
    .ok()?;
    // The zone's tens digit has 3 bits (the 4th is the sign), so at most 79 quarters.
    let units = zone >> 4;
    if units > 9 {
        return None;
    }
    let quarters = i16::from(zone & 0x07) * 10 + i16::from(units);
    let offset_minutes = if zone & 0x08 != 0 { -15 } else { 15 } * quarters;
    let local = time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp();
    Some((
        (local - i64::from(offset_minutes) * 60) * 1000,
        offset_minutes,
    ))
}

/// One minute, in seconds.
const MINUTE: u64 = 60;
/// One hour, in seconds.
const HOUR: u64 = 60 * MINUTE;
/// One day, in seconds.
const DAY: u64 = 24 * HOUR;
/// One week, in seconds.
const WEEK: u64 = 7 * DAY;

/// The relative TP-VP (§9.2.3.12.1) for a validity period, rounded up to the next value
/// the format can say, so that a message is never dropped earlier than asked: 0-143 are
/// (VP + 1) × 5 minutes, 144-167 are 12 hours + (VP − 143) × 30 minutes, 168-196 are
/// (VP − 166) days, 197-255 are (VP − 192) weeks. Longer than 63 weeks gives 255, the
/// longest there is; zero gives 0, the shortest (5 minutes).
pub fn relative_validity(period: Duration) -> u8 {
    let secs = period
        .as_secs()
        .saturating_add(u64::from(period.subsec_nanos() > 0));
    let vp = if secs <= 12 * HOUR {
        secs.div_ceil(5 * MINUTE).max(1) - 1
    } else if secs <= DAY {
        143 + (secs - 12 * HOUR).div_ceil(30 * MINUTE)
    } else if secs <= 30 * DAY {
        // Over a day is at least 2 days: the day steps start at 168.
        166 + secs.div_ceil(DAY)
    } else if secs <= 63 * WEEK {
        // Over 30 days is at least 5 weeks: the week steps start at 197.
        192 + secs.div_ceil(WEEK)
    } else {
        255
    };
    u8::try_from(vp).unwrap_or(u8::MAX)
}

/// The validity period a relative TP-VP stands for (§9.2.3.12.1); the inverse of
/// [`relative_validity`] on the values the format can say.
pub fn relative_validity_duration(vp: u8) -> Duration {
    let v = u64::from(vp);
    let minutes = match vp {
        0..=143 => (v + 1) * 5,
        144..=167 => 12 * 60 + (v - 143) * 30,
        168..=196 => (v - 166) * 24 * 60,
        _ => (v - 192) * 7 * 24 * 60,
    };
    Duration::from_secs(minutes * MINUTE)
}

/// TP-VP of an SMS-SUBMIT, as TP-VPF says it is written (§9.2.3.3, §9.2.3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Validity {
    /// TP-VPF 00: none; the SMSC's default applies.
    None,
    /// TP-VPF 10: relative, one octet ([`relative_validity_duration`]).
    Relative(u8),
    /// TP-VPF 11: absolute, a time stamp.
    Absolute(Timestamp),
    /// TP-VPF 01: the enhanced format, kept as its seven octets.
    Enhanced([u8; 7]),
}

impl Validity {
    /// The period of a relative validity.
    pub fn duration(&self) -> Option<Duration> {
        match *self {
            Validity::Relative(vp) => Some(relative_validity_duration(vp)),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// User data

/// What follows the user data header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// GSM 7-bit or UCS-2 text, decoded ([`gsm7::decode`], [`ucs2::decode`]: never lossy
    /// for valid text, a replacement character for what is not).
    Text(String),
    /// 8-bit data, as received.
    Data(Vec<u8>),
}

impl Content {
    /// The content as text. 8-bit data has no alphabet (TS 23.038 §4), so it is read as
    /// UTF-8 when it is valid UTF-8 (ASCII included) and else as ISO 8859-1, one
    /// character per octet: nothing is dropped, and the common senders of 8-bit text
    /// (gateways sending Latin-1 or UTF-8 by mistake) read right.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Content::Text(text) => Cow::Borrowed(text),
            Content::Data(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
            },
        }
    }
}

/// TP-UD (§9.2.3.24): the header, when TP-UDHI is set, and the content after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    /// The user data header.
    pub header: Option<Udh>,
    /// The text or data after the header (and its fill bits).
    pub content: Content,
}

impl UserData {
    /// Which part of which concatenated message this is, if the header says.
    pub fn concat(&self) -> Option<Concat> {
        self.header.as_ref().and_then(|h| h.concat)
    }

    /// The content as text ([`Content::text`]).
    pub fn text(&self) -> Cow<'_, str> {
        self.content.text()
    }
}

// ---------------------------------------------------------------------------------------
// Status reports

/// TP-ST (§9.2.3.15): what became of a message the status report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportStatus(pub u8);

/// The four ranges of TP-ST (§9.2.3.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// 0x00-0x1F, short message transaction completed: received by the recipient (0x00),
    /// forwarded but the SC cannot confirm delivery (0x01), replaced (0x02), or an SC
    /// specific completion.
    Delivered,
    /// 0x20-0x3F, temporary error: the SC is still trying; another report follows.
    StillTrying,
    /// 0x40-0x5F, permanent error: the SC is not trying any more. Reserved values
    /// (0x80-0xFF) are counted here too.
    PermanentError,
    /// 0x60-0x7F, temporary error, but the SC is not making any more attempts.
    TemporaryErrorGaveUp,
}

impl StatusClass {
    /// Whether no other report will follow for the message.
    pub fn is_final(self) -> bool {
        self != StatusClass::StillTrying
    }
}

impl ReportStatus {
    /// The range the value is in; a reserved value (bit 7 set) is a permanent error, and
    /// the value itself stays in `self.0`.
    pub fn class(self) -> StatusClass {
        match self.0 {
            0x00..=0x1F => StatusClass::Delivered,
            0x20..=0x3F => StatusClass::StillTrying,
            0x60..=0x7F => StatusClass::TemporaryErrorGaveUp,
            _ => StatusClass::PermanentError,
        }
    }

    /// Whether TS 23.040 reserves the value (bit 7 set).
    pub fn is_reserved(self) -> bool {
        self.0 & 0x80 != 0
    }

    /// What §9.2.3.15 calls the value, for logs and people.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x00 => "short message received by the SME",
            0x01 => "short message forwarded by the SC to the SME but the SC is unable to confirm delivery",
            0x02 => "short message replaced by the SC",
            0x03..=0x0F => "transaction completed (reserved value)",
            0x10..=0x1F => "transaction completed (SC specific value)",
            0x20 | 0x60 => "congestion",
            0x21 | 0x61 => "SME busy",
            0x22 | 0x62 => "no response from SME",
            0x23 | 0x63 => "service rejected",
            0x24 | 0x44 | 0x64 => "quality of service not available",
            0x25 | 0x65 => "error in SME",
            0x26..=0x2F => "temporary error, SC still trying (reserved value)",
            0x30..=0x3F => "temporary error, SC still trying (SC specific value)",
            0x40 => "remote procedure error",
            0x41 => "incompatible destination",
            0x42 => "connection rejected by SME",
            0x43 => "not obtainable",
            0x45 => "no interworking available",
            0x46 => "SM validity period expired",
            0x47 => "SM deleted by originating SME",
            0x48 => "SM deleted by SC administration",
            0x49 => "SM does not exist",
            0x4A..=0x4F => "permanent error (reserved value)",
            0x50..=0x5F => "permanent error (SC specific value)",
            0x66..=0x6F => "temporary error, SC not trying any more (reserved value)",
            0x70..=0x7F => "temporary error, SC not trying any more (SC specific value)",
            _ => "reserved value",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Encoding SMS-SUBMIT

/// The settings of an SMS-SUBMIT that are the same for every part of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// The SMSC to send through, written as an international number (type of address
    /// 0x91); `None` writes length 0, which makes the modem use its own (`AT+CSCA`, by
    /// default the one on the SIM).
    pub smsc: Option<E164>,
    /// TP-SRR: ask for a status report (§9.2.3.5), which the modem hands back as `+CDS`
    /// (or stores) with the TP-MR of `+CMGS: <mr>`.
    pub status_report: bool,
    /// TP-VP in the relative format ([`relative_validity`], rounded up, at most 63 weeks);
    /// `None` leaves it out and the SMSC's default applies.
    pub validity: Option<Duration>,
    /// TP-MR (§9.2.3.6). 0 lets the modem number the message; either way `+CMGS: <mr>`
    /// answers with the reference actually used, which a status report carries. Every part
    /// gets the same value.
    pub message_reference: u8,
    /// TP-RD: ask the SMSC to reject a message with the same TP-MR and destination as one
    /// it still holds (§9.2.3.25).
    pub reject_duplicates: bool,
}

/// One part's user data, in the form [`Body::parts`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part<'a> {
    /// Gives TP-DCS ([`Encoding::dcs`]) and how `data` is written.
    pub encoding: Encoding,
    /// Unpacked septets, one per octet (GSM 7-bit; a top bit is ignored, as [`gsm7::pack`]
    /// ignores it), or UTF-16BE octets (UCS-2).
    pub data: &'a [u8],
    /// The concatenation element, for a part of a longer message.
    pub concat: Option<Concat>,
}

/// An SMS-SUBMIT ready for `AT+CMGS` in PDU mode (TS 27.005 §3.5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitPdu {
    /// The PDU in upper-case hex, SMSC field first: what is written after the `> ` prompt,
    /// before Ctrl-Z.
    pub hex: String,
    /// The TPDU's length in octets, the SMSC field not counted: `AT+CMGS=<tpdu_len>`.
    pub tpdu_len: usize,
}

/// Builds the SMS-SUBMIT (§9.2.2.2) of one part for `destination`: a number is written as
/// international (0x91), a short code as TON unknown (0x81). With a concatenation element
/// the user data starts with its header and, for GSM 7-bit, the fill bits that start the
/// text on a septet boundary (§9.2.3.24); TP-UDL counts header, fill bits and text.
///
/// Errors: an address that is not 1-20 digits, user data that does not fit in one SMS
/// (160 septets or 140 octets with the header), UCS-2 data of an odd length.
pub fn encode_submit(
    destination: &Recipient,
    part: &Part<'_>,
    options: &SubmitOptions,
) -> Result<SubmitPdu, SubmitError> {
    let mut out = Vec::with_capacity(MAX_PDU_OCTETS);

    // The SMSC field (TS 27.005 §3.1; TS 24.011 §8.2.5.2): its length counts the type of
    // address and the digit octets, unlike TP-DA's.
    match &options.smsc {
        None => out.push(0),
        Some(smsc) => {
            let digits =
                digits_to_semi_octets(smsc.digits()).ok_or_else(|| SubmitError::BadAddress {
                    number: smsc.as_str().to_owned(),
                })?;
            // At most 10 digit octets, so the length fits an octet.
            out.push(1 + digits.len() as u8);
            out.push(TOA_INTERNATIONAL);
            out.extend_from_slice(&digits);
        }
    }
    let smsc_len = out.len();

    let mut first = MTI_SUBMIT;
    if options.reject_duplicates {
        first |= RD;
    }
    if options.validity.is_some() {
        first |= VPF_RELATIVE;
    }
    if options.status_report {
        first |= BIT5;
    }
    if part.concat.is_some() {
        first |= UDHI;
    }
    out.push(first);
    out.push(options.message_reference);

    // TP-DA (§9.1.2.5): its length counts digits, not octets.
    let (digits, type_of_address) = match destination {
        Recipient::Number(n) => (n.digits(), TOA_INTERNATIONAL),
        Recipient::ShortCode(s) => (s.as_str(), TOA_UNKNOWN),
    };
    let semi_octets = digits_to_semi_octets(digits).ok_or_else(|| SubmitError::BadAddress {
        number: destination.as_str().to_owned(),
    })?;
    // At most 20 digits.
    out.push(digits.len() as u8);
    out.push(type_of_address);
    out.extend_from_slice(&semi_octets);

    out.push(0x00); // TP-PID: plain short message (§9.2.3.9).
    out.push(part.encoding.dcs());
    if let Some(period) = options.validity {
        out.push(relative_validity(period));
    }

    let header = part.concat.map(|c| c.header()).unwrap_or_default();
    match part.encoding {
        Encoding::Gsm7 => {
            let udl = udh::header_septets(header.len()) + part.data.len();
            if udl > MAX_USER_DATA_SEPTETS {
                return Err(SubmitError::TooLong {
                    len: udl,
                    unit: "septets",
                    max: MAX_USER_DATA_SEPTETS,
                });
            }
            out.push(udl as u8);
            out.extend_from_slice(&header);
            out.extend(gsm7::pack(part.data, udh::fill_bits(header.len())));
        }
        Encoding::Ucs2 => {
            if !part.data.len().is_multiple_of(2) {
                return Err(SubmitError::OddUcs2 {
                    len: part.data.len(),
                });
            }
            let udl = header.len() + part.data.len();
            if udl > MAX_USER_DATA_OCTETS {
                return Err(SubmitError::TooLong {
                    len: udl,
                    unit: "octets",
                    max: MAX_USER_DATA_OCTETS,
                });
            }
            out.push(udl as u8);
            out.extend_from_slice(&header);
            out.extend_from_slice(part.data);
        }
    }

    Ok(SubmitPdu {
        hex: to_hex(&out),
        tpdu_len: out.len() - smsc_len,
    })
}

/// Builds the SMS-SUBMIT of every part of `body`, in order, in the encoding `body` chose:
/// one PDU without a header for a single SMS, else one per part with an 8-bit
/// concatenation element (`reference`, which the caller picks per message and which must
/// differ between messages to the same destination in flight together).
///
/// Errors: as [`encode_submit`]; a `body` built by [`Body::new`] always fits.
pub fn encode_message(
    destination: &Recipient,
    body: &Body,
    reference: u8,
    options: &SubmitOptions,
) -> Result<Vec<SubmitPdu>, SubmitError> {
    let parts = body.parts();
    let total = parts.len();
    let total_u8 = u8::try_from(total).map_err(|_| SubmitError::TooManyParts(total))?;
    let encoding = body.encoding();
    parts
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let concat = if total > 1 {
                let sequence = u8::try_from(i + 1).map_err(|_| SubmitError::TooManyParts(total))?;
                let concat = Concat::new(ConcatRef::Bits8(reference), total_u8, sequence)
                    .map_err(|_| SubmitError::TooManyParts(total))?;
                Some(concat)
            } else {
                None
            };
            let part = Part {
                encoding,
                data,
                concat,
            };
            encode_submit(destination, &part, options)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Decoding

/// A PDU as a modem hands it back: the SMSC field and the TPDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// The SMSC address; `None` when its length octet is 0.
    pub smsc: Option<Address>,
    /// The TPDU's length in octets: what `+CMGR`, `+CMGL`, `+CMT` and `+CDS` give as
    /// `<length>`, for the driver to compare.
    pub tpdu_len: usize,
    /// The TPDU.
    pub tpdu: Tpdu,
}

/// A TPDU, by its TP-MTI (§9.2.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tpdu {
    /// A received message (TP-MTI 00; also the reserved 11, see [`decode_tpdu`]).
    Deliver(Deliver),
    /// A status report for a message sent with TP-SRR (TP-MTI 10).
    StatusReport(StatusReport),
    /// An outgoing message stored on the SIM or in the modem (TP-MTI 01).
    Submit(Submit),
}

/// An SMS-DELIVER (§9.2.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    /// TP-OA: who sent it.
    pub originator: Address,
    /// TP-PID (§9.2.3.9); 0x00 for a plain message.
    pub protocol_id: u8,
    /// TP-DCS.
    pub data_coding: DataCoding,
    /// TP-SCTS: when the SMSC received it.
    pub service_centre_time: Timestamp,
    /// TP-MMS clear: the SMSC has more messages waiting for this phone (§9.2.3.2).
    pub more_messages_waiting: bool,
    /// TP-SRI: the sender will get a status report (§9.2.3.4).
    pub status_report_indication: bool,
    /// TP-RP: a reply may go through the same SMSC (§9.2.3.17).
    pub reply_path: bool,
    /// TP-UD.
    pub user_data: UserData,
}

/// An SMS-SUBMIT (§9.2.2.2), as modems list stored outgoing messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// TP-MR.
    pub message_reference: u8,
    /// TP-DA: who it goes to.
    pub destination: Address,
    /// TP-PID.
    pub protocol_id: u8,
    /// TP-DCS.
    pub data_coding: DataCoding,
    /// TP-VP, in the format TP-VPF names.
    pub validity: Validity,
    /// TP-SRR.
    pub status_report: bool,
    /// TP-RD.
    pub reject_duplicates: bool,
    /// TP-RP.
    pub reply_path: bool,
    /// TP-UD.
    pub user_data: UserData,
}

/// An SMS-STATUS-REPORT (§9.2.2.3). The optional parameters after TP-ST (TP-PI and what it
/// announces) are not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// TP-MR of the message reported on, as `+CMGS: <mr>` gave it.
    pub message_reference: u8,
    /// TP-RA: the recipient of that message.
    pub recipient: Address,
    /// TP-SCTS: when the SMSC received that message.
    pub service_centre_time: Timestamp,
    /// TP-DT: when it was delivered, or when the SMSC last tried or gave up (§9.2.3.13).
    pub discharge_time: Timestamp,
    /// TP-ST.
    pub status: ReportStatus,
    /// TP-MMS clear: more messages are waiting.
    pub more_messages_waiting: bool,
    /// TP-SRQ: the report is about an SMS-COMMAND, not an SMS-SUBMIT (§9.2.3.26).
    pub for_command: bool,
}

/// Decodes a PDU in hex as a modem gives it in PDU mode, SMSC field first. Surrounding
/// white space is ignored; either case of hex digit is taken.
///
/// Errors: empty input, a character that is not a hex digit, an odd number of digits,
/// more than [`MAX_PDU_OCTETS`] octets, and whatever [`decode_octets`] refuses.
pub fn decode(hex: &str) -> Result<Pdu, PduError> {
    decode_octets(&hex_to_octets(hex)?)
}

/// Decodes a PDU given as octets, SMSC field first (see [`decode`]).
pub fn decode_octets(octets: &[u8]) -> Result<Pdu, PduError> {
    if octets.len() > MAX_PDU_OCTETS {
        return Err(PduError::TooLong {
            octets: octets.len(),
        });
    }
    let mut r = Reader::new(octets);
    let smsc = read_smsc(&mut r)?;
    let tpdu_len = octets.len() - r.pos;
    let tpdu = read_tpdu(&mut r)?;
    Ok(Pdu {
        smsc,
        tpdu_len,
        tpdu,
    })
}

/// Decodes a TPDU without the SMSC field before it (some modems leave it out).
///
/// TP-MTI 00 is an SMS-DELIVER, 01 an SMS-SUBMIT and 10 an SMS-STATUS-REPORT: the types a
/// phone stores or is handed. The reserved 11 is read as an SMS-DELIVER, as §9.2.3.1 tells
/// a phone to do.
pub fn decode_tpdu(octets: &[u8]) -> Result<Tpdu, PduError> {
    if octets.len() > MAX_PDU_OCTETS {
        return Err(PduError::TooLong {
            octets: octets.len(),
        });
    }
    read_tpdu(&mut Reader::new(octets))
}

/// A cursor over the octets that checks every length before it reads.
struct Reader<'a> {
    octets: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(octets: &'a [u8]) -> Reader<'a> {
        Reader { octets, pos: 0 }
    }

    /// The next `n` octets of `field`, or [`PduError::Truncated`].
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PduError> {
        let rest = self.octets.get(self.pos..).unwrap_or_default();
        let taken = rest.get(..n).ok_or(PduError::Truncated {
            field,
            offset: self.pos,
            needed: n,
            available: rest.len(),
        })?;
        self.pos += n;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PduError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn octet(&mut self, field: &'static str) -> Result<u8, PduError> {
        let [octet] = self.array(field)?;
        Ok(octet)
    }
}

/// The SMSC field (TS 27.005 §3.1, TS 24.011 §8.2.5.1-2): a length in octets that counts
/// the type of address, then the digits.
fn read_smsc(r: &mut Reader<'_>) -> Result<Option<Address>, PduError> {
    const FIELD: &str = "the SMSC address";
    let len = usize::from(r.octet(FIELD)?);
    if len == 0 {
        return Ok(None);
    }
    if len > MAX_SMSC_OCTETS {
        return Err(PduError::FieldTooLong {
            field: FIELD,
            len,
            max: MAX_SMSC_OCTETS,
        });
    }
    let type_of_address = r.octet(FIELD)?;
    let value = r.take(len - 1, FIELD)?;
    Ok(Some(address_from(type_of_address, value, 2 * (len - 1))))
}

/// TP-OA, TP-DA or TP-RA (§9.1.2.5): a length in useful semi-octets, the type of address,
/// and the value.
fn read_address(r: &mut Reader<'_>, field: &'static str) -> Result<Address, PduError> {
    let semi_octets = usize::from(r.octet(field)?);
    if semi_octets > MAX_ADDRESS_DIGITS {
        return Err(PduError::FieldTooLong {
            field,
            len: semi_octets,
            max: MAX_ADDRESS_DIGITS,
        });
    }
    let type_of_address = r.octet(field)?;
    let value = r.take(semi_octets.div_ceil(2), field)?;
    Ok(address_from(type_of_address, value, semi_octets))
}

fn read_tpdu(r: &mut Reader<'_>) -> Result<Tpdu, PduError> {
    let first = r.octet("the first octet of the TPDU")?;
    match first & 0x03 {
        MTI_SUBMIT => read_submit(r, first).map(Tpdu::Submit),
        MTI_STATUS_REPORT => read_status_report(r, first).map(Tpdu::StatusReport),
        // 00, SMS-DELIVER, and the reserved 11 (§9.2.3.1).
        _ => read_deliver(r, first).map(Tpdu::Deliver),
    }
}

fn read_deliver(r: &mut Reader<'_>, first: u8) -> Result<Deliver, PduError> {
    let originator = read_address(r, "TP-OA")?;
    let protocol_id = r.octet("TP-PID")?;
    let data_coding = DataCoding::from_octet(r.octet("TP-DCS")?)?;
    let service_centre_time = Timestamp::from_octets(r.array("TP-SCTS")?);
    let user_data = read_user_data(r, first & UDHI != 0, data_coding.alphabet)?;
    Ok(Deliver {
        originator,
        protocol_id,
        data_coding,
        service_centre_time,
        more_messages_waiting: first & MMS == 0,
        status_report_indication: first & BIT5 != 0,
        reply_path: first & RP != 0,
        user_data,
    })
}

fn read_submit(r: &mut Reader<'_>, first: u8) -> Result<Submit, PduError> {
    let message_reference = r.octet("TP-MR")?;
    let destination = read_address(r, "TP-DA")?;
    let protocol_id = r.octet("TP-PID")?;
    let data_coding = DataCoding::from_octet(r.octet("TP-DCS")?)?;
    // TP-VPF, bits 4-3 (§9.2.3.3).
    let validity = match (first >> 3) & 0x03 {
        0b10 => Validity::Relative(r.octet("TP-VP")?),
        0b11 => Validity::Absolute(Timestamp::from_octets(r.array("TP-VP")?)),
        0b01 => Validity::Enhanced(r.array("TP-VP")?),
        _ => Validity::None,
    };
    let user_data = read_user_data(r, first & UDHI != 0, data_coding.alphabet)?;
    Ok(Submit {
        message_reference,
        destination,
        protocol_id,
        data_coding,
        validity,
        status_report: first & BIT5 != 0,
        reject_duplicates: first & RD != 0,
        reply_path: first & RP != 0,
        user_data,
    })
}

fn read_status_report(r: &mut Reader<'_>, first: u8) -> Result<StatusReport, PduError> {
    let message_reference = r.octet("TP-MR")?;
    let recipient = read_address(r, "TP-RA")?;
    let service_centre_time = Timestamp::from_octets(r.array("TP-SCTS")?);
    let discharge_time = Timestamp::from_octets(r.array("TP-DT")?);
    let status = ReportStatus(r.octet("TP-ST")?);
    Ok(StatusReport {
        message_reference,
        recipient,
        service_centre_time,
        discharge_time,
        status,
        more_messages_waiting: first & MMS == 0,
        for_command: first & BIT5 != 0,
    })
}

/// TP-UDL and TP-UD (§9.2.3.16, §9.2.3.24). For GSM 7-bit, TP-UDL counts septets, the
/// header's and its fill bits' included, and the user data takes ⌈7 × TP-UDL / 8⌉ octets;
/// otherwise it counts octets.
fn read_user_data(
    r: &mut Reader<'_>,
    udhi: bool,
    alphabet: Alphabet,
) -> Result<UserData, PduError> {
    const FIELD: &str = "TP-UD";
    let udl = usize::from(r.octet("TP-UDL")?);
    let max = match alphabet {
        Alphabet::Gsm7 => MAX_USER_DATA_SEPTETS,
        Alphabet::Data8 | Alphabet::Ucs2 => MAX_USER_DATA_OCTETS,
    };
    if udl > max {
        return Err(PduError::FieldTooLong {
            field: "TP-UDL",
            len: udl,
            max,
        });
    }
    let octets = match alphabet {
        Alphabet::Gsm7 => (udl * 7).div_ceil(8),
        Alphabet::Data8 | Alphabet::Ucs2 => udl,
    };
    let ud = r.take(octets, FIELD)?;
    let header = if udhi { Some(udh::parse(ud)?) } else { None };
    // udh::parse checked that the header fits in `ud`.
    let header_octets = header.as_ref().map_or(0, |h| h.len);
    let after = ud.get(header_octets..).unwrap_or_default();
    let content = match alphabet {
        Alphabet::Gsm7 => {
            let header_septets = header.as_ref().map_or(0, Udh::septets);
            if header_septets > udl {
                return Err(PduError::HeaderExceedsUserData {
                    header: header_septets,
                    udl,
                });
            }
            let fill = header.as_ref().map_or(0, Udh::fill_bits);
            Content::Text(gsm7::decode(&gsm7::unpack(
                after,
                fill,
                udl - header_septets,
            )))
        }
        Alphabet::Ucs2 => Content::Text(ucs2::decode(after)),
        Alphabet::Data8 => Content::Data(after.to_vec()),
    };
    Ok(UserData { header, content })
}

// ---------------------------------------------------------------------------------------
// Hex

/// Upper-case hex, as modems echo it.
fn to_hex(octets: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(octets.len() * 2);
    for &o in octets {
        out.push(char::from(DIGITS[usize::from(o >> 4)]));
        out.push(char::from(DIGITS[usize::from(o & 0x0F)]));
    }
    out
}

/// The octets of a hex string, its length checked before anything is allocated.
fn hex_to_octets(hex: &str) -> Result<Vec<u8>, PduError> {
    let start = hex.len()
        - hex
            .trim_start_matches(|c: char| c.is_ascii_whitespace())
            .len();
    let trimmed = hex.trim_matches(|c: char| c.is_ascii_whitespace());
    if trimmed.is_empty() {
        return Err(PduError::Empty);
    }
    if trimmed.len() > 2 * MAX_PDU_OCTETS {
        return Err(PduError::TooLong {
            octets: trimmed.len() / 2,
        });
    }
    if let Some((index, found)) = trimmed.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(PduError::NotHex {
            index: start + index,
            found,
        });
    }
    if !trimmed.len().is_multiple_of(2) {
        return Err(PduError::OddLength {
            digits: trimmed.len(),
        });
    }
    // Every digit was checked above; the last arm is never taken.
    let nibble = |d: u8| match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        b'A'..=b'F' => d - b'A' + 10,
        _ => 0,
    };
    Ok(trimmed
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_rfc3339;
    use proptest::prelude::*;

    fn number(n: &str) -> Recipient {
        Recipient::Number(E164::from_stored(n))
    }

    fn octets(hex: &str) -> Vec<u8> {
        hex_to_octets(hex).unwrap()
    }

    fn deliver(hex: &str) -> (Option<Address>, Deliver) {
        let pdu = decode(hex).unwrap();
        assert_eq!(pdu.tpdu_len * 2, hex.len() - smsc_hex_len(hex), "{hex}");
        match pdu.tpdu {
            Tpdu::Deliver(d) => (pdu.smsc, d),
            other => panic!("not a DELIVER: {other:?}"),
        }
    }

    fn status_report(hex: &str) -> (Option<Address>, StatusReport) {
        let pdu = decode(hex).unwrap();
        match pdu.tpdu {
            Tpdu::StatusReport(s) => (pdu.smsc, s),
            other => panic!("not a STATUS-REPORT: {other:?}"),
        }
    }

    fn submit(hex: &str) -> (Option<Address>, usize, Submit) {
        let pdu = decode(hex).unwrap();
        match pdu.tpdu {
            Tpdu::Submit(s) => (pdu.smsc, pdu.tpdu_len, s),
            other => panic!("not a SUBMIT: {other:?}"),
        }
    }

    /// Hex digits of the SMSC field, its length octet included.
    fn smsc_hex_len(hex: &str) -> usize {
        2 + 2 * usize::from(octets(&hex[..2])[0])
    }

    fn ms(rfc3339: &str) -> Option<Millis> {
        Some(parse_rfc3339(rfc3339).unwrap())
    }

    fn intl(n: &str) -> Address {
        Address::International(n.to_owned())
    }

    fn other(type_of_address: u8, digits: &str) -> Address {
        Address::Other {
            type_of_address,
            digits: digits.to_owned(),
        }
    }

    // -----------------------------------------------------------------------------------
    // SMS-SUBMIT encoding against published PDUs

    /// (destination, text, options, the PDU), each from the source in its comment.
    fn submit_vectors() -> Vec<(Recipient, &'static str, SubmitOptions, &'static str)> {
        let days = |d: u64| Some(Duration::from_secs(d * DAY));
        vec![
            // Lars Pettersson, "SMS messages and the PDU format" (dreamfabric.com/sms,
            // mirrored at turbocontrol.com/CoolStuff): "hellohello" to +46708251358, TP-VP
            // AA (4 days), the SMSC on the SIM.
            (
                number("+46708251358"),
                "hellohello",
                SubmitOptions {
                    validity: days(4),
                    ..SubmitOptions::default()
                },
                "0011000B916407281553F80000AA0AE8329BFD4697D9EC37",
            ),
            // python-gsmmodem test/test_pdu.py, test_encodeSmsSubmit: no TP-VP (VPF 00).
            (
                number("+27820001111"),
                "Hello World!",
                SubmitOptions::default(),
                "0001000B917228001011F100000CC8329BFD065DDF72363904",
            ),
            // python-gsmmodem test_encodeSmsSubmit: UCS-2, an SMSC given, 52 weeks (F4),
            // a 9-digit number (odd: F padding).
            (
                number("+123456789"),
                "世界您好！",
                SubmitOptions {
                    smsc: Some(E164::from_stored("+44000000000")),
                    validity: Some(Duration::from_secs(52 * WEEK)),
                    ..SubmitOptions::default()
                },
                "07914400000000F01100099121436587F90008F40A4E16754C60A8597DFF01",
            ),
            // python-gsmmodem test_decode (a PDU from diafaan.com): TP-SRR, TP-MR 0x0D,
            // 3 days (A9), an SMSC.
            (
                number("+31628870634"),
                "www.diafaan.com",
                SubmitOptions {
                    smsc: Some(E164::from_stored("+31624000000")),
                    status_report: true,
                    validity: days(3),
                    message_reference: 0x0D,
                    ..SubmitOptions::default()
                },
                "07911326040000F0310D0B911326880736F40000A90FF7FBDD454E87CDE1B0DB357EB701",
            ),
            // ModemManager src/tests/test-sms-part-3gpp.c, test_create_pdu_gsm_with_smsc:
            // 5 minutes is TP-VP 00; Δ is GSM 7-bit 0x10.
            (
                number("+15555551234"),
                "Hi there...Tue 17th Jan 2012 05:30.18 pm (GMT+1) ΔΔΔΔΔ",
                SubmitOptions {
                    smsc: Some(E164::from_stored("+19037029920")),
                    validity: Some(Duration::from_secs(5 * MINUTE)),
                    ..SubmitOptions::default()
                },
                "07919130079229F011000B915155551532F400000036C834888E2ECBCB2E978B5A2F8362373A1AA40CBB4132584C0682D57433982B8603C1DB20D4B1495DC552200804028100",
            ),
            // ModemManager test_create_pdu_ucs2_no_smsc.
            (
                number("+15555551234"),
                "Да здравствует король, детка!",
                SubmitOptions {
                    validity: Some(Duration::from_secs(5 * MINUTE)),
                    ..SubmitOptions::default()
                },
                "0011000B915155551532F40008003A041404300020043704340440043004320441044204320443043504420020043A043E0440043E043B044C002C0020043404350442043A04300021",
            ),
            // ModemManager test_create_pdu_gsm_3: 25 septets, the last alone in its octet.
            (
                number("+15556661234"),
                "This is really cool ΔΔΔΔΔ",
                SubmitOptions::default(),
                "0001000B915155661632F400001954747A0E4ACF41F27298CDCE83C6EF371B0481402010",
            ),
        ]
    }

    #[test]
    fn submit_matches_published_pdus() {
        for (destination, text, options, expected) in submit_vectors() {
            let body = Body::new(text, 1).unwrap();
            let pdus = encode_message(&destination, &body, 0, &options).unwrap();
            assert_eq!(pdus.len(), 1);
            assert_eq!(pdus[0].hex, expected, "{text}");
            assert_eq!(
                pdus[0].tpdu_len * 2,
                expected.len() - smsc_hex_len(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn concatenated_submit_matches_python_gsmmodem() {
        // python-gsmmodem test_encodeSmsSubmit_concatenated: three GSM 7-bit parts with an
        // 8-bit reference 0, TP-RD set, no TP-VP; 153 + 153 + 133 septets, so TP-UDL A0
        // (7 septets of header and fill bit + 153) and 8C.
        let text = "Lorem ipsum dolor sit amet, consectetur adipisicing elit, sed do eiusmod \
            tempor incididunt ut labore et dolore magna aliqua.Ut enim ad minim veniam, \
            quinostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.\
            Duis aute irure dolor in reprehenderit in voluptate velit esse cillum doloe eu \
            fugiat nulla pariatur.Excepteur sint occaecat cupidatat non proident, sunt in \
            culpa qui officia deserunt mollit anim id est laborum";
        let expected = [
            "0045000B915121551532F40000A0050003000301986F79B90D4AC3E7F53688FC66BFE5A0799A0E0AB7CB741668FC76CFCB637A995E9783C2E4343C3D4F8FD3EE33A8CC4ED359A079990C22BF41E5747DDE7E9341F4721BFE9683D2EE719A9C26D7DD74509D0E6287C56F791954A683C86FF65B5E06B5C36777181466A7E3F5B0AB4A0795DDE936284C06B5D3EE741B642FBBD3E1360B14AFA7DD",
            "0045000B915121551532F40000A0050003000302DE73BABC4E0695F165F9384D0FD3D36F37A8CE6687DBE337881D16BFE5E939C89D9EA741753A28CC4EC7EB6938A88C0795C3A0F1BBDD7E93DFA0F1DB3D2FC7EB61BA8B584FCF41E13ABD0C4ACBEBF23288FC66BFE5A0B41B242FC3E56574D94D2ECBD37450DA0DB2BFD975383D4C2F83EC65769A0E2ACFE765D038CD66D7DB20F29BFD2E83CA",
            "0045000B915121551532F400008C050003000303EA2073FD9C0ED341EE3A9B1D06C1C3F274985E97BB8AF871194E2FD7E5A079DA4D07BDC7E370791CA683C675789A1CA687E920F7DB0D82CBDF6972D94D6781E675371D947683C675363C0C8AD7D3A0B7D99C1EA7C32072795E96D7DD7450FBCD66A7E9A0B03BDD06A5C9A0F29C0E6287C56F79BD0D",
        ];
        let body = Body::new(text, 10).unwrap();
        let options = SubmitOptions {
            reject_duplicates: true,
            ..SubmitOptions::default()
        };
        let pdus = encode_message(&number("+15125551234"), &body, 0, &options).unwrap();
        let hex: Vec<&str> = pdus.iter().map(|p| p.hex.as_str()).collect();
        assert_eq!(hex, expected);
        // And they decode back to the parts, in order.
        let texts: Vec<String> = pdus
            .iter()
            .map(|p| submit(&p.hex).2.user_data.text().into_owned())
            .collect();
        assert_eq!(texts.concat(), text);
    }

    #[test]
    fn submit_refuses_what_a_pdu_cannot_carry() {
        let opts = SubmitOptions::default();
        let gsm = |data: &'static [u8]| Part {
            encoding: Encoding::Gsm7,
            data,
            concat: None,
        };
        let bad = Recipient::ShortCode("12a4".into());
        assert_eq!(
            encode_submit(&bad, &gsm(b"\x41"), &opts),
            Err(SubmitError::BadAddress {
                number: "12a4".into()
            })
        );
        let empty = Recipient::ShortCode(String::new());
        assert!(encode_submit(&empty, &gsm(b"\x41"), &opts).is_err());
        let long = number(&format!("+{}", "1".repeat(21)));
        assert!(encode_submit(&long, &gsm(b"\x41"), &opts).is_err());
        let bad_smsc = SubmitOptions {
            smsc: Some(E164::from_stored("+")),
            ..SubmitOptions::default()
        };
        assert!(matches!(
            encode_submit(&number("+15551234567"), &gsm(b"\x41"), &bad_smsc),
            Err(SubmitError::BadAddress { .. })
        ));

        let to = number("+15551234567");
        let septets = [0x41u8; 161];
        let part = Part {
            encoding: Encoding::Gsm7,
            data: &septets,
            concat: None,
        };
        assert_eq!(
            encode_submit(&to, &part, &opts),
            Err(SubmitError::TooLong {
                len: 161,
                unit: "septets",
                max: 160
            })
        );
        assert!(encode_submit(
            &to,
            &Part {
                data: &septets[..160],
                ..part
            },
            &opts
        )
        .is_ok());
        // With a 6-octet header (7 septets) 153 fit, 154 do not.
        let concat = Concat::new(ConcatRef::Bits8(1), 2, 1).ok();
        let with_header = |n: usize| Part {
            encoding: Encoding::Gsm7,
            data: &septets[..n],
            concat,
        };
        assert!(encode_submit(&to, &with_header(153), &opts).is_ok());
        assert!(encode_submit(&to, &with_header(154), &opts).is_err());

        let units = [0u8; 141];
        let ucs2 = |n: usize| Part {
            encoding: Encoding::Ucs2,
            data: &units[..n],
            concat: None,
        };
        assert!(encode_submit(&to, &ucs2(140), &opts).is_ok());
        assert_eq!(
            encode_submit(&to, &ucs2(139), &opts),
            Err(SubmitError::OddUcs2 { len: 139 })
        );
        assert!(matches!(
            encode_submit(&to, &ucs2(141), &opts),
            Err(SubmitError::OddUcs2 { .. })
        ));
        let ucs2_header = Part {
            concat,
            ..ucs2(136)
        };
        assert!(matches!(
            encode_submit(&to, &ucs2_header, &opts),
            Err(SubmitError::TooLong { len: 142, .. })
        ));
    }

    #[test]
    fn short_codes_are_written_as_ton_unknown() {
        let pdu = encode_message(
            &Recipient::ShortCode("72345".into()),
            &Body::new("STOP", 1).unwrap(),
            0,
            &SubmitOptions::default(),
        )
        .unwrap();
        // 05 digits, type 81, 27 43 F5.
        assert!(pdu[0].hex.starts_with("00010005812743F5"), "{}", pdu[0].hex);
        let (_, _, s) = submit(&pdu[0].hex);
        assert_eq!(s.destination, other(0x81, "72345"));
        assert_eq!(
            s.destination,
            Address::from(&Recipient::ShortCode("72345".into()))
        );
    }

    // -----------------------------------------------------------------------------------
    // Validity period

    #[test]
    fn relative_validity_matches_published_values() {
        // python-gsmmodem TestRelativeValidityPeriod, and dreamfabric's AA = 4 days.
        for (period, vp) in [
            (30 * MINUTE, 5),
            (16 * HOUR, 151),
            (3 * DAY, 169),
            (4 * DAY, 0xAA),
            (5 * WEEK, 197),
            (52 * WEEK, 0xF4),
        ] {
            assert_eq!(relative_validity(Duration::from_secs(period)), vp);
            assert_eq!(relative_validity_duration(vp), Duration::from_secs(period));
        }
    }

    #[test]
    fn relative_validity_rounds_up_and_caps() {
        let vp = |secs: u64| relative_validity(Duration::from_secs(secs));
        assert_eq!(relative_validity(Duration::ZERO), 0);
        assert_eq!(vp(1), 0);
        assert_eq!(vp(5 * MINUTE), 0);
        assert_eq!(relative_validity(Duration::from_millis(300_001)), 1);
        assert_eq!(vp(5 * MINUTE + 1), 1);
        assert_eq!(vp(12 * HOUR), 143);
        assert_eq!(vp(12 * HOUR + 1), 144);
        assert_eq!(vp(DAY), 167);
        assert_eq!(vp(DAY + 1), 168);
        assert_eq!(vp(2 * DAY), 168);
        assert_eq!(vp(30 * DAY), 196);
        assert_eq!(vp(30 * DAY + 1), 197);
        assert_eq!(vp(63 * WEEK), 255);
        assert_eq!(vp(63 * WEEK + 1), 255);
        assert_eq!(relative_validity(Duration::MAX), 255);
    }

    #[test]
    fn relative_validity_is_exact_on_every_step_and_never_shorter() {
        let mut previous = Duration::ZERO;
        for vp in 0..=255u8 {
            let period = relative_validity_duration(vp);
            assert!(period > previous, "{vp}");
            assert_eq!(relative_validity(period), vp);
            // One second more needs the next step (or is capped).
            let next = relative_validity(period + Duration::from_secs(1));
            assert_eq!(next, vp.saturating_add(1));
            assert!(relative_validity_duration(next) >= period);
            previous = period;
        }
    }

    // -----------------------------------------------------------------------------------
    // SMS-DELIVER against published PDUs

    #[test]
    fn deliver_dreamfabric() {
        // Lars Pettersson, "SMS messages and the PDU format": "hellohello" from 27838890001,
        // type of address C8 (TON 100 subscriber number, NPI 1000 national plan; not
        // alphanumeric), SMSC +27381000015, 1999-03-29 15:16:59, zone 80 = +8 quarters.
        let (smsc, d) =
            deliver("07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37");
        assert_eq!(smsc, Some(intl("+27381000015")));
        assert_eq!(d.originator, other(0xC8, "27838890001"));
        assert_eq!(d.user_data.text(), "hellohello");
        assert_eq!(d.user_data.header, None);
        assert_eq!(
            d.service_centre_time.utc_ms,
            ms("1999-03-29T15:16:59+02:00")
        );
        assert_eq!(d.service_centre_time.offset_minutes, Some(120));
        assert!(!d.more_messages_waiting, "first octet 04: TP-MMS set");
        assert!(!d.status_report_indication && !d.reply_path);
        assert_eq!(d.data_coding.alphabet, Alphabet::Gsm7);
        assert_eq!(d.protocol_id, 0);
    }

    #[test]
    fn deliver_python_gsmmodem() {
        // python-gsmmodem test_decode.
        let (smsc, d) = deliver("06917228195339040B917228214365F700003130805120618005D4F29C2E03");
        assert_eq!(smsc, Some(intl("+2782913593")));
        assert_eq!(d.originator, intl("+27821234567"));
        assert_eq!(d.user_data.text(), "Test2");
        assert_eq!(
            d.service_centre_time.utc_ms,
            ms("2013-03-08T15:02:16+02:00")
        );

        let (_, d) = deliver(
            "07915892000000F0040B915892214365F700007040213252242331493A283D0795C3F33C88FE06C9CB\
             6132885EC6D341EDF27C1E3E97E7207B3A0C0A5241E377BB1D7693E72E",
        );
        assert_eq!(
            d.user_data.text(),
            "It is easy to read text messages via AT commands."
        );
        assert_eq!(
            d.service_centre_time.utc_ms,
            ms("2007-04-12T23:25:42+08:00")
        );

        // é is GSM 7-bit 0x05; {} are escapes.
        let (_, d) =
            deliver("06917228195339040B917228214365F70000313062315352800A800D8A5E98D337A910");
        assert_eq!(d.user_data.text(), "@{tést}!");
    }

    #[test]
    fn deliver_with_extension_characters_and_a_negative_zone() {
        // ModemManager test_pdu1: zone 0A = sign bit, 20 quarters: -05:00.
        let (smsc, d) = deliver(
            "07912104442961F4040B916171957291F800001120821105050A6AC8B2BC7C9A83C220F6DB7D2ECB41EDF27C1E3E97411BDE06754FD3D1A0F9BB5D0695F1F4B29B5C2683C6E8B03C3CA697E5F34D6AE303D1D1F2F7DD0D4ABB59A0797D8C0685E7A00028EC26832A960B28EC2683BE6050780EBA97D96C17",
        );
        assert_eq!(smsc, Some(intl("+12404492164")));
        assert_eq!(d.originator, intl("+16175927198"));
        assert_eq!(
            d.user_data.text(),
            "Here's a longer message [{with some extended characters}] thrown in, such as £ \
             and ΩΠΨ and §¿ as well."
        );
        assert_eq!(
            d.service_centre_time.utc_ms,
            ms("2011-02-28T11:50:50-05:00")
        );
        assert_eq!(d.service_centre_time.offset_minutes, Some(-300));
    }

    #[test]
    fn deliver_ucs2_from_an_alphanumeric_originator() {
        // ModemManager test_pdu2: "InternetSMS" (TON 101, 20 semi-octets = 11 septets),
        // UCS-2 "тест", zone 61 = +16 quarters.
        let (smsc, d) = deliver(
            "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442",
        );
        assert_eq!(smsc, Some(intl("+79037011111")));
        assert_eq!(d.originator, Address::Alphanumeric("InternetSMS".into()));
        assert_eq!(d.data_coding.alphabet, Alphabet::Ucs2);
        assert_eq!(d.user_data.content, Content::Text("тест".into()));
        assert_eq!(
            d.service_centre_time.utc_ms,
            ms("2011-03-29T19:20:04+04:00")
        );
    }

    #[test]
    fn deliver_class_1_and_8_bit() {
        // ModemManager test_pdu_dcsf1: TP-DCS F1 (GSM 7-bit, class 1), 160 septets, type of
        // address 85.
        let (_, d) = deliver(
            "07913306091093F0040485810000F111604231805180A049B7F90D9A1AA5A01668F8769BD3E4B29B9E2EB359A03FC85D06A9C3ED707A0EA2CBC3EE79BB4CA7CBCBA05643617DA7C76990FD4D979741EE77DD5E0ED741ED371D442E83E0E1F9BC0CD281E677D9B84C06C1DF7539E85C9097E520FB9B2E2F83C6EF369C5E064D8D52D0BC2E07DDEF77D7DC2C7799E5A0771D040FCB41F402BB0047BFDD6550B80ECAD966",
        );
        assert_eq!(d.originator, other(0x85, "1800"));
        assert_eq!(
            d.data_coding,
            DataCoding {
                octet: 0xF1,
                alphabet: Alphabet::Gsm7,
                class: Some(MessageClass::Class1)
            }
        );
        assert_eq!(
            d.user_data.text(),
            "Info SFR - Confidentiel, à ne jamais transmettre -\r\nVoici votre nouveau mot de \
             passe : sw2ced pour gérer votre compte SFR sur www.sfr.fr ou par téléphone au 963"
        );
        assert_eq!(
            d.service_centre_time.utc_ms,
            ms("2011-06-24T13:08:15+02:00")
        );

        // ModemManager test_pdu3_8bit and test_pdu_dcsf_8bit: the same octets as data.
        for dcs in ["04", "F4"] {
            let hex = format!(
                "07912143658709F1040B918100551512F200{dcs}11101021436500\
                 0AE8329BFD4697D9EC37DE"
            );
            let (_, d) = deliver(&hex);
            assert_eq!(d.data_coding.alphabet, Alphabet::Data8);
            assert_eq!(
                d.user_data.content,
                Content::Data(vec![
                    0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37, 0xDE
                ])
            );
            // Not UTF-8, so read as Latin-1, one character per octet.
            assert_eq!(d.user_data.text().chars().count(), 10);
            assert!(d.user_data.text().starts_with("è2\u{9B}ý"));
        }
    }

    #[test]
    fn deliver_concatenated_with_fill_bits() {
        // ModemManager test_pdu_multipart: 8-bit reference 0x4C, 2 parts; a 6-octet header,
        // so one fill bit; zone 69 = -16 quarters.
        let (_, first) = deliver(
            "07912160130320F5440B916171056429F5000021405291650569A00500034C0201A9E8F41C949E\
             83C2207B599E07B1DFEE33885E9ED341E4F23C7D7697C920FA1B54C697E5E3F4BC0C6AD7D9F434\
             081E96D341E3303C2C4EB3D3F4BC0B94A483E6E8779D4D06CDD1EF3BA80E0785E7A0B7BB0C6A97\
             E7F3F0B9CC02B9DF7450780EA2DFDF2C50780EA2A3CBA0BA9B5C96B3F369F71954768FDFE4B4FB\
             0C9297E1F2F2BCECA6CF41",
        );
        let (_, second) = deliver(
            "07912160130320F6440B916171056429F5000021405291651569320500034C0202E9E8301D4447\
             9741F0B09C3E0785E56590BCCC0ED3CB6410FD0D7ABBCBA0B0FB4D4797E52E10",
        );
        let concat = |total, sequence| {
            Some(Concat {
                reference: ConcatRef::Bits8(0x4C),
                total,
                sequence,
            })
        };
        assert_eq!(first.user_data.concat(), concat(2, 1));
        assert_eq!(second.user_data.concat(), concat(2, 2));
        assert_eq!(first.originator, intl("+16175046925"));
        assert_eq!(
            format!("{}{}", first.user_data.text(), second.user_data.text()),
            "This is a very long test designed to exercise multi part capability. It should \
             show up as one message, not as two, as the underlying encoding represents that \
             the parts are related to one another. "
        );
        assert_eq!(
            first.service_centre_time.utc_ms,
            ms("2012-04-25T19:56:50-04:00")
        );
        assert!(!first.more_messages_waiting, "first octet 44: TP-MMS set");

        // python-gsmmodem test_decode: a 7-digit national sender (81), reference C3, one
        // part of one; TP-MMS clear (first octet 40).
        let (smsc, d) = deliver(
            "0591721891F1400781721881F800003160526104848059050003C30101916536FB1DCABEEB2074D8\
             5E064941B19CAB060319A5C522289C96D3D3ED32286C0FA7D96131BBEC024941B19CAB0603DDD3\
             6C36A88C87A7E565D0DB0D82C55EB0DB4B068BCD5C20",
        );
        assert_eq!(smsc, Some(intl("+2781191")));
        assert_eq!(d.originator, other(0x81, "2781188"));
        assert!(d.more_messages_waiting);
        assert_eq!(
            d.user_data.text(),
            "Hello!You have R 19.50 FREE airtime available. R 19.50 will expire on 01/07/2013. "
        );
        assert_eq!(
            d.user_data.concat(),
            Some(Concat {
                reference: ConcatRef::Bits8(0xC3),
                total: 1,
                sequence: 1
            })
        );
    }

    #[test]
    fn deliver_with_a_16_bit_reference_and_no_fill_bits() {
        // ModemManager test_pdu_udhi (KPN's welcome message): a 7-octet header (IEI 08),
        // which ends on a septet boundary: no fill bits; TP-PID 39.
        let (_, d) = deliver(
            "07911356131313F64004850120390011609232239180A006080400100201D7327BFD6EB340E232\
             1BF46E83EA7790F59D1E97DBE1341B442F83C465763D3DA797E56537C81D0ECB41AB59CC1693C1\
             6031D96C064241E5656838AF03A96230982A269BCD462917C8FA4E8FCBED709A0D7ABBE9F6B0FB\
             5C7683D27350984D4FABC9A0B33C4C4FCF5D20EBFB2D079DCB62793DBD06D9C36E50FB2D4E97D9\
             A0B49B5E96BBCB",
        );
        assert_eq!(d.originator, other(0x85, "1002"));
        assert_eq!(d.protocol_id, 0x39);
        assert_eq!(
            d.user_data.concat(),
            Some(Concat {
                reference: ConcatRef::Bits16(0x0010),
                total: 2,
                sequence: 1
            })
        );
        assert_eq!(d.user_data.header.as_ref().map(Udh::fill_bits), Some(0));
        assert_eq!(
            d.user_data.text(),
            "Welkom, bel om uw Voicemail te beluisteren naar +31612001233 (PrePay: \
             *100*1233#). Voicemail ontvangen is altijd gratis. Voor gebruik van mobiel interne"
        );
        assert_eq!(
            d.service_centre_time.utc_ms,
            ms("2011-06-29T23:32:19+02:00")
        );
    }

    #[test]
    fn alphanumeric_addresses() {
        // python-gsmmodem TestSmsPduAddressFields: 'abc' (6 semi-octets), 'FRANCOIS' (14),
        // 'a[]{}€' (11 septets, 20 semi-octets), and a national number.
        for (hex, expected) in [
            ("06D061F118", Address::Alphanumeric("abc".into())),
            (
                "0ED04669D0397C26A7",
                Address::Alphanumeric("FRANCOIS".into()),
            ),
            (
                "14D0E10D6FE3DBA036A94D19",
                Address::Alphanumeric("a[]{}€".into()),
            ),
            ("0AA11092997856", other(0xA1, "0129998765")),
            ("0A918967452301", intl("+9876543210")),
            ("099189674523F1", intl("+987654321")),
        ] {
            let bytes = octets(hex);
            let mut r = Reader::new(&bytes);
            assert_eq!(read_address(&mut r, "TP-OA"), Ok(expected), "{hex}");
            assert_eq!(r.pos, bytes.len(), "{hex}");
        }
        // Seven characters take 49 bits: 13 semi-octets, and the 7 spare bits are not an '@'.
        let septets = gsm7::encode("ACMEbnk").unwrap();
        let mut field = vec![13, 0xD0];
        field.extend(gsm7::pack(&septets, 0));
        let mut r = Reader::new(&field);
        assert_eq!(
            read_address(&mut r, "TP-OA"),
            Ok(Address::Alphanumeric("ACMEbnk".into()))
        );
    }

    // -----------------------------------------------------------------------------------
    // SMS-STATUS-REPORT

    #[test]
    fn status_report_delivered() {
        // python-gsmmodem test_decode: no SMSC field, TP-MR D6 (214), delivered (00).
        let (smsc, s) = status_report("0006D60B911326880736F4111011719551401110117195714000");
        assert_eq!(smsc, None);
        assert_eq!(s.message_reference, 214);
        assert_eq!(s.recipient, intl("+31628870634"));
        assert_eq!(
            s.service_centre_time.utc_ms,
            ms("2011-01-11T17:59:15+01:00")
        );
        assert_eq!(s.discharge_time.utc_ms, ms("2011-01-11T17:59:17+01:00"));
        assert_eq!(s.status, ReportStatus(0));
        assert_eq!(s.status.class(), StatusClass::Delivered);
        assert!(!s.more_messages_waiting && !s.for_command);
    }

    #[test]
    fn status_report_still_trying() {
        // ModemManager test_pdu_not_stored: TP-MR 5A, national recipient (81), TP-ST 30
        // (SC specific, temporary error, SC still trying).
        let (smsc, s) =
            status_report("07914356060013F1065A098136397339F7219011700463802190117004638030");
        assert_eq!(smsc, Some(intl("+34656000311")));
        assert_eq!(s.message_reference, 0x5A);
        assert_eq!(s.recipient, other(0x81, "639337937"));
        assert_eq!(s.status.class(), StatusClass::StillTrying);
        assert!(!s.status.class().is_final());
        assert_eq!(s.discharge_time.utc_ms, ms("2012-09-11T07:40:36+02:00"));
    }

    #[test]
    fn status_report_with_odd_digits() {
        // python-gsmmodem test_decode, "semi-invalid status report PDU captured from a ZTE
        // modem": SMSC type 97 with one digit, and a recipient whose first semi-octet is
        // 1011, which TS 24.008 shows as '#'.
        let (smsc, s) =
            status_report("0297F1061C0F910B487228297020F5317062419272803170624192138000");
        assert_eq!(smsc, Some(intl("+1")));
        assert_eq!(s.message_reference, 28);
        assert_eq!(s.recipient, intl("+#08427829207025"));
        assert_eq!(
            s.service_centre_time.utc_ms,
            ms("2013-07-26T14:29:27+02:00")
        );
        assert_eq!(s.discharge_time.utc_ms, ms("2013-07-26T14:29:31+02:00"));
        assert_eq!(s.status.class(), StatusClass::Delivered);
    }

    #[test]
    fn status_classes() {
        let class = |st: u8| ReportStatus(st).class();
        for st in 0x00..=0x1F {
            assert_eq!(class(st), StatusClass::Delivered);
        }
        for st in 0x20..=0x3F {
            assert_eq!(class(st), StatusClass::StillTrying);
        }
        for st in 0x40..=0x5F {
            assert_eq!(class(st), StatusClass::PermanentError);
        }
        for st in 0x60..=0x7F {
            assert_eq!(class(st), StatusClass::TemporaryErrorGaveUp);
        }
        for st in 0x80..=0xFF {
            assert_eq!(class(st), StatusClass::PermanentError);
            assert!(ReportStatus(st).is_reserved());
        }
        assert_eq!(
            ReportStatus(0x46).description(),
            "SM validity period expired"
        );
        assert_eq!(
            ReportStatus(0x01).description(),
            "short message forwarded by the SC to the SME but the SC is unable to confirm delivery"
        );
        assert_eq!(
            ReportStatus(0x02).description(),
            "short message replaced by the SC"
        );
        assert_eq!(ReportStatus(0x62).description(), "no response from SME");
        assert!(!ReportStatus(0x7F).is_reserved());
        assert!(StatusClass::TemporaryErrorGaveUp.is_final());
    }

    // -----------------------------------------------------------------------------------
    // Stored SMS-SUBMIT

    #[test]
    fn stored_submits() {
        // ModemManager test_pdu_stored_by_us: UCS-2, TP-SRR, national destination.
        let (smsc, tpdu_len, s) = submit(
            "002100098136397339F70008224F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60",
        );
        assert_eq!((smsc, tpdu_len), (None, 46));
        assert_eq!(s.destination, other(0x81, "639337937"));
        assert_eq!(s.user_data.text(), "你好你好你好你好你好你好你好你好你");
        assert!(s.status_report && !s.reject_duplicates);
        assert_eq!(s.validity, Validity::None);

        // python-gsmmodem test_decode: 8-bit "Hello world!" (valid UTF-8, so read as it).
        let (smsc, _, s) = submit("0591721891F101000B917228214365F700040C48656C6C6F20776F726C6421");
        assert_eq!(smsc, Some(intl("+2781191")));
        assert_eq!(s.user_data.content, Content::Data(b"Hello world!".to_vec()));
        assert_eq!(s.user_data.text(), "Hello world!");

        // python-gsmmodem test_decode: TP-VPF 11, an absolute validity period.
        let (_, _, s) = submit(
            "0019000B917228001011F100003170013193008017D474BB3CA787DB70903DCC4E93D3F43C885E9ED301",
        );
        assert_eq!(s.user_data.text(), "Timestamp validity test");
        match s.validity {
            Validity::Absolute(t) => {
                assert_eq!(t.utc_ms, ms("2013-07-10T13:39:00+02:00"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.validity.duration(), None);

        // python-gsmmodem test_decode: UCS-2 with TP-UDL A0 (160 octets) but 12 there. It
        // reads what is there; a UCS-2 TP-UDL above 140 cannot be, so we refuse it.
        assert_eq!(
            decode("0041010C910661345542F60008A0050003000301306F3044"),
            Err(PduError::FieldTooLong {
                field: "TP-UDL",
                len: 160,
                max: 140
            })
        );
    }

    // -----------------------------------------------------------------------------------
    // Data coding, time stamps

    #[test]
    fn data_coding_groups() {
        let dcs = |o: u8| DataCoding::from_octet(o).map(|d| (d.alphabet, d.class));
        use Alphabet::*;
        use MessageClass::*;
        for (octet, expected) in [
            (0x00, (Gsm7, None)),
            (0x04, (Data8, None)),
            (0x08, (Ucs2, None)),
            (0x0C, (Gsm7, None)), // reserved alphabet: default alphabet
            (0x01, (Gsm7, None)), // bits 1-0 without bit 4 are no class
            (0x10, (Gsm7, Some(Class0))),
            (0x11, (Gsm7, Some(Class1))),
            (0x16, (Data8, Some(Class2))),
            (0x18, (Ucs2, Some(Class0))),
            (0x13, (Gsm7, Some(Class3))),
            (0x1B, (Ucs2, Some(Class3))),
            (0x48, (Ucs2, None)), // automatic deletion group
            (0x55, (Data8, Some(Class1))),
            (0x80, (Gsm7, None)), // reserved groups
            (0xB4, (Gsm7, None)),
            (0xC0, (Gsm7, None)), // message waiting, discard
            (0xD8, (Gsm7, None)), // message waiting, store
            (0xE8, (Ucs2, None)), // message waiting, store, UCS-2
            (0xF0, (Gsm7, Some(Class0))),
            (0xF1, (Gsm7, Some(Class1))),
            (0xF4, (Data8, Some(Class0))),
            (0xF6, (Data8, Some(Class2))),
            (0xFB, (Gsm7, Some(Class3))),
        ] {
            assert_eq!(dcs(octet), Ok(expected), "0x{octet:02X}");
        }
        for compressed in [0x20, 0x24, 0x28, 0x3F, 0x60, 0x7A] {
            assert_eq!(dcs(compressed), Err(PduError::Compressed(compressed)));
        }
        assert_eq!(
            decode("0004048121430020000000000000000000").map(|_| ()),
            Err(PduError::Compressed(0x20))
        );
    }

    #[test]
    fn timestamps() {
        let t = |hex: &str| Timestamp::from_octets(octets(hex).try_into().unwrap());
        // TP-SCTS example of Lars Pettersson's pages: 12 Feb 1999 05:57:30 GMT+3.
        assert_eq!(t("99202150750321").utc_ms, ms("1999-02-12T05:57:30+03:00"));
        // python-gsmmodem TestTimestamp: +8 and -8 hours.
        assert_eq!(t("70402132522423").utc_ms, ms("2007-04-12T23:25:42+08:00"));
        assert_eq!(t("7040213252242B").utc_ms, ms("2007-04-12T23:25:42-08:00"));
        assert_eq!(t("7040213252242B").offset_minutes, Some(-480));
        assert_eq!(t("51117200000080").utc_ms, ms("2015-11-27T00:00:00+02:00"));
        // -00:15 (18: sign, tens 0, units 1), -02:45 (19: sign, tens 1, units 1), and a
        // zone of 0 with the sign bit.
        assert_eq!(t("51117200000018").utc_ms, ms("2015-11-27T00:00:00-00:15"));
        assert_eq!(t("51117200000019").offset_minutes, Some(-165));
        assert_eq!(t("51117200000008").offset_minutes, Some(0));
        // 29 February exists in 2024, not in 2023.
        assert_eq!(t("42209200000000").utc_ms, ms("2024-02-29T00:00:00Z"));
        for bad in [
            "32209200000000", // 2023-02-29
            "00000000000000", // month 0
            "2131A100000000", // a digit above 9
            "21112142000000", // hour 24
            "211121000060A0", // zone units A
            "21112100F00000", // minute digit F
        ] {
            let stamp = t(bad);
            assert_eq!((stamp.utc_ms, stamp.offset_minutes), (None, None), "{bad}");
            assert_eq!(to_hex(&stamp.octets), bad);
        }
        // A nonsense time stamp does not lose the message.
        let (_, d) = deliver("0004048121430000000000000000000000");
        assert_eq!(d.service_centre_time.utc_ms, None);
        assert_eq!(d.user_data.text(), "");
    }

    // -----------------------------------------------------------------------------------
    // Hostile input

    fn published_pdus() -> Vec<String> {
        let mut all: Vec<String> = [
            "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37",
            "0011000B916407281553F80000AA0AE8329BFD4697D9EC37",
            "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442",
            "0006D60B911326880736F4111011719551401110117195714000",
            "07914356060013F1065A098136397339F7219011700463802190117004638030",
            "07912160130320F6440B916171056429F5000021405291651569320500034C0202E9E8301D44479741F0B09C3E0785E56590BCCC0ED3CB6410FD0D7ABBCBA0B0FB4D4797E52E10",
            "002100098136397339F70008224F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60",
            "0019000B917228001011F100003170013193008017D474BB3CA787DB70903DCC4E93D3F43C885E9ED301",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect();
        for (_, _, _, hex) in submit_vectors() {
            all.push(hex.to_owned());
        }
        all
    }

    #[test]
    fn every_truncation_is_an_error() {
        for hex in published_pdus() {
            let full = octets(&hex);
            assert!(decode_octets(&full).is_ok(), "{hex}");
            for n in 0..full.len() {
                assert!(decode_octets(&full[..n]).is_err(), "{hex} cut at {n}");
            }
            for n in 1..hex.len() {
                let cut = &hex[..n];
                let result = decode(cut);
                assert!(result.is_err(), "{cut}");
                if n % 2 == 1 {
                    assert_eq!(result, Err(PduError::OddLength { digits: n }));
                }
            }
        }
    }

    #[test]
    fn bad_hex_says_what_is_wrong() {
        assert_eq!(decode(""), Err(PduError::Empty));
        assert_eq!(decode(" \r\n"), Err(PduError::Empty));
        assert_eq!(decode("000"), Err(PduError::OddLength { digits: 3 }));
        assert_eq!(
            decode("00G1"),
            Err(PduError::NotHex {
                index: 2,
                found: 'G'
            })
        );
        assert_eq!(
            decode("  00 11"),
            Err(PduError::NotHex {
                index: 4,
                found: ' '
            })
        );
        assert_eq!(
            decode("00é1"),
            Err(PduError::NotHex {
                index: 2,
                found: 'é'
            })
        );
        assert_eq!(
            decode(&"0".repeat(402)),
            Err(PduError::TooLong { octets: 201 })
        );
        assert_eq!(
            decode_octets(&[0; 201]),
            Err(PduError::TooLong { octets: 201 })
        );
        assert_eq!(
            decode_tpdu(&[0; 201]),
            Err(PduError::TooLong { octets: 201 })
        );
        // White space around, lower case: fine (a modem line ends in CR LF).
        let hex = "0011000b916407281553f80000aa0ae8329bfd4697d9ec37";
        let with_spaces = format!("\r\n {hex}\r\n");
        assert_eq!(decode(&with_spaces), decode(&hex.to_uppercase()));
        assert!(decode(&with_spaces).is_ok());
        assert!(PduError::TooLong { octets: 300 }
            .to_string()
            .contains("at most 176"));
    }

    #[test]
    fn lengths_that_cannot_be_are_refused() {
        // SMSC length FF.
        assert_eq!(
            decode("FF").map(|_| ()),
            Err(PduError::FieldTooLong {
                field: "the SMSC address",
                len: 255,
                max: 11
            })
        );
        // TP-OA of 21 digits.
        assert!(matches!(
            decode("000415910000000000000000000000").map(|_| ()),
            Err(PduError::FieldTooLong {
                field: "TP-OA",
                len: 21,
                ..
            })
        ));
        // GSM 7-bit TP-UDL A1 (161).
        assert!(matches!(
            decode("000404812143000000000000000000A1").map(|_| ()),
            Err(PduError::FieldTooLong {
                field: "TP-UDL",
                len: 161,
                ..
            })
        ));
        // TP-UDL 0A with 8 octets of text: 9 needed.
        assert_eq!(
            decode("0004048121430000000000000000000AE8329BFD4697D9EC").map(|_| ()),
            Err(PduError::Truncated {
                field: "TP-UD",
                offset: 16,
                needed: 9,
                available: 8
            })
        );
        // TP-UDHI with a header longer than the user data.
        assert!(matches!(
            decode("0044048121430000000000000000000205000302").map(|_| ()),
            Err(PduError::Header(UdhError::HeaderTooLong { .. }))
        ));
        // A 6-octet header takes 7 septets; TP-UDL 6 holds only 6.
        assert_eq!(
            decode("00440481214300000000000000000006050003020101").map(|_| ()),
            Err(PduError::HeaderExceedsUserData { header: 7, udl: 6 })
        );
        // TP-UDHI set but TP-UDL 0: no UDHL octet.
        assert_eq!(
            decode("0044048121430000000000000000000000").map(|_| ()),
            Err(PduError::Header(UdhError::Empty))
        );
    }

    #[test]
    fn trailing_octets_are_ignored_and_the_reserved_mti_is_a_deliver() {
        let hex = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37";
        let padded = decode(&format!("{hex}FFFF")).unwrap();
        let plain = decode(hex).unwrap();
        assert_eq!(padded.tpdu, plain.tpdu);
        assert_eq!(padded.tpdu_len, plain.tpdu_len + 2);
        // First octet 07: TP-MTI 11.
        let reserved = decode(&hex.replacen("F504", "F507", 1)).unwrap();
        assert!(matches!(reserved.tpdu, Tpdu::Deliver(_)));
        // The TPDU alone decodes the same.
        let tpdu = octets(&hex[16..]);
        assert_eq!(decode_tpdu(&tpdu), Ok(plain.tpdu));
    }

    // -----------------------------------------------------------------------------------
    // Properties

    fn gsm_char() -> impl Strategy<Value = char> {
        let default: Vec<char> = gsm7::DEFAULT_ALPHABET
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != usize::from(gsm7::ESCAPE))
            .map(|(_, &c)| c)
            .collect();
        prop_oneof![
            4 => prop::sample::select(default),
            1 => prop::sample::select(vec!['€', '[', ']', '{', '}', '^', '~', '\\', '|', '\u{0C}']),
        ]
    }

    fn any_text() -> impl Strategy<Value = String> {
        let wide = prop_oneof![
            prop::char::range('\u{0400}', '\u{04FF}'),
            prop::char::range('\u{1F300}', '\u{1FAFF}'),
            any::<char>().prop_filter("a body holds no NUL", |c| *c != '\0'),
        ];
        prop_oneof![
            // GSM only: one part or several.
            prop::collection::vec(gsm_char(), 1..500),
            // Mostly GSM with something that forces UCS-2.
            prop::collection::vec(prop_oneof![6 => gsm_char(), 1 => wide], 1..300),
            // Emoji only: surrogate pairs at every part boundary.
            prop::collection::vec(prop::char::range('\u{1F300}', '\u{1FAFF}'), 1..120),
        ]
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn recipient() -> impl Strategy<Value = Recipient> {
        prop_oneof![
            "[1-9][0-9]{6,14}".prop_map(|d| Recipient::Number(E164::from_stored(&format!("+{d}")))),
            "[0-9]{3,8}".prop_map(Recipient::ShortCode),
        ]
    }

    fn options() -> impl Strategy<Value = SubmitOptions> {
        (
            proptest::option::of("[1-9][0-9]{4,14}"),
            any::<bool>(),
            proptest::option::of(0u64..(70 * WEEK)),
            any::<u8>(),
            any::<bool>(),
        )
            .prop_map(
                |(smsc, status_report, validity, message_reference, reject_duplicates)| {
                    SubmitOptions {
                        smsc: smsc.map(|d| E164::from_stored(&format!("+{d}"))),
                        status_report,
                        validity: validity.map(Duration::from_secs),
                        message_reference,
                        reject_duplicates,
                    }
                },
            )
    }

    /// The text of a GSM 7-bit PDU's user data read by the `gsm7` crate, an independent
    /// unpacker, from the bit after the header and its fill bits.
    fn oracle_text(hex: &str, udl: usize, header_len: usize) -> String {
        let all = octets(hex);
        let ud = &all[all.len() - (udl * 7).div_ceil(8)..];
        let offset =
            u32::try_from(header_len * 8 + usize::from(udh::fill_bits(header_len))).unwrap();
        ::gsm7::Gsm7Reader::new_with_bit_offset(std::io::Cursor::new(ud), offset)
            .unwrap()
            .collect::<std::io::Result<String>>()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_submit_decodes_to_what_was_encoded(
            text in any_text(),
            to in recipient(),
            opts in options(),
            reference in any::<u8>(),
        ) {
            let body = Body::new(&text, 255).unwrap();
            let pdus = encode_message(&to, &body, reference, &opts).unwrap();
            prop_assert_eq!(pdus.len(), usize::from(body.segments()));
            let total = pdus.len();
            let mut reassembled = String::new();
            for (i, pdu) in pdus.iter().enumerate() {
                prop_assert!(pdu.hex.len() <= 2 * MAX_PDU_OCTETS);
                let decoded = decode(&pdu.hex).unwrap();
                prop_assert_eq!(decoded.tpdu_len * 2 + smsc_hex_len(&pdu.hex), pdu.hex.len());
                prop_assert!(decoded.tpdu_len <= 164);
                let expected_smsc = opts.smsc.as_ref().map(|n| Address::International(n.as_str().to_owned()));
                prop_assert_eq!(decoded.smsc, expected_smsc);
                let Tpdu::Submit(s) = decoded.tpdu else {
                    return Err(TestCaseError::fail("not a SUBMIT"));
                };
                prop_assert_eq!(&s.destination, &Address::from(&to));
                prop_assert_eq!(s.data_coding.octet, body.encoding().dcs());
                prop_assert_eq!(s.data_coding.alphabet.encoding(), Some(body.encoding()));
                prop_assert_eq!(s.status_report, opts.status_report);
                prop_assert_eq!(s.reject_duplicates, opts.reject_duplicates);
                prop_assert_eq!(s.message_reference, opts.message_reference);
                prop_assert_eq!(s.protocol_id, 0);
                match opts.validity {
                    None => prop_assert_eq!(s.validity, Validity::None),
                    Some(period) => {
                        prop_assert_eq!(s.validity, Validity::Relative(relative_validity(period)));
                        let said = s.validity.duration().unwrap();
                        prop_assert!(said >= period.min(relative_validity_duration(255)));
                    }
                }
                let concat = s.user_data.concat();
                if total == 1 {
                    prop_assert_eq!(s.user_data.header.clone(), None);
                } else {
                    prop_assert_eq!(concat, Some(Concat {
                        reference: ConcatRef::Bits8(reference),
                        total: total as u8,
                        sequence: (i + 1) as u8,
                    }));
                }
                let part_text = s.user_data.text().into_owned();
                prop_assert_eq!(&part_text, &body.part_texts()[i]);
                if body.encoding() == Encoding::Gsm7 {
                    let header_len = s.user_data.header.as_ref().map_or(0, |h| h.len);
                    let udl = udh::header_septets(header_len) + body.parts()[i].len();
                    prop_assert!(udl <= 160);
                    // The gsm7 crate reads to the end of the octets: 7 spare bits are an '@'.
                    let theirs = oracle_text(&pdu.hex, udl, header_len);
                    prop_assert!(theirs == part_text || theirs == format!("{part_text}@"),
                        "{:?} vs {:?}", theirs, part_text);
                }
                reassembled.push_str(&part_text);
            }
            prop_assert_eq!(reassembled, text);
        }

        #[test]
        fn random_octets_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..260)) {
            let _ = decode_octets(&bytes);
            let _ = decode_tpdu(&bytes);
            let _ = decode(&to_hex(&bytes));
        }

        #[test]
        fn random_strings_never_panic(s in ".{0,420}") {
            let _ = decode(&s);
        }

        #[test]
        fn mangled_pdus_never_panic(
            which in 0usize..16,
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let all = published_pdus();
            let mut bytes = octets(&all[which % all.len()]);
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let keep = cut.index(bytes.len() + 1);
            if let Ok(pdu) = decode_octets(&bytes[..keep]) {
                prop_assert!(pdu.tpdu_len < keep);
            }
        }
    }
}
