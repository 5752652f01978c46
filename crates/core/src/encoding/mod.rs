//! Message text as the network carries it: the GSM 7-bit default alphabet and extension
//! table (3GPP TS 23.038 §6.2.1) or UCS-2/UTF-16 (TS 23.038 §7), split into the parts of a
//! concatenated SMS (TS 23.040 §9.2.3.24.1).
//!
//! - [`gsm7`]: the GSM 03.38 tables, septet encode/decode, septet packing with fill bits.
//! - [`ucs2`]: UTF-16BE encode/decode, lossy and panic-free on bad input.
//! - [`segment`]: the part limits (160/153 septets, 70/67 units) and the splitter.
//! - [`udh`]: the concatenation user data header, built and parsed.
//! - [`tpdu`]: SMS-SUBMIT built and SMS-DELIVER / STATUS-REPORT / SUBMIT decoded as a GSM
//!   modem takes and gives them in PDU mode (TS 23.040 §9.2, TS 27.005).
//!
//! [`Body`] is the one type the rest of textgate holds: a text whose encoding and part count
//! were decided once, when it was accepted (docs/architecture.md).

pub mod gsm7;
pub mod segment;
pub mod tpdu;
pub mod ucs2;
pub mod udh;

use std::fmt;

/// The alphabet a message is sent in (TS 23.038 §4, data coding scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The GSM 7-bit default alphabet with its extension table.
    Gsm7,
    /// UCS-2, sent as UTF-16BE so that characters beyond U+FFFF survive as surrogate pairs.
    Ucs2,
}

impl Encoding {
    /// The name used in the API and the store: `"gsm7"` or `"ucs2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// The inverse of [`Encoding::as_str`]; ASCII case is ignored.
    pub fn parse(s: &str) -> Option<Encoding> {
        if s.eq_ignore_ascii_case("gsm7") {
            Some(Encoding::Gsm7)
        } else if s.eq_ignore_ascii_case("ucs2") {
            Some(Encoding::Ucs2)
        } else {
            None
        }
    }

    /// What [`Body::units`] counts in this encoding, for messages to people.
    pub fn unit_name(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "septets",
            Encoding::Ucs2 => "UTF-16 units",
        }
    }

    /// The TP-DCS octet for a plain message of this encoding (TS 23.038 §4: general data
    /// coding, no message class): 0x00 GSM 7-bit, 0x08 UCS-2. SMPP's `data_coding` uses 0x08
    /// for UCS-2 too, but 0x00 there means the SMSC's default alphabet, which is usually but
    /// not always GSM 7-bit.
    pub fn dcs(self) -> u8 {
        match self {
            Encoding::Gsm7 => 0x00,
            Encoding::Ucs2 => 0x08,
        }
    }

    /// The most units a single, non-concatenated SMS holds (160 or 70).
    pub fn single_limit(self) -> usize {
        match self {
            Encoding::Gsm7 => segment::GSM7_SINGLE,
            Encoding::Ucs2 => segment::UCS2_SINGLE,
        }
    }

    /// The most units each part of a concatenated SMS holds (153 or 67).
    pub fn part_limit(self) -> usize {
        match self {
            Encoding::Gsm7 => segment::GSM7_PER_PART,
            Encoding::Ucs2 => segment::UCS2_PER_PART,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Encoding::parse(s).ok_or_else(|| UnknownEncoding(s.to_owned()))
    }
}

/// A name that is not an [`Encoding`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an encoding: use \"gsm7\" or \"ucs2\"")]
pub struct UnknownEncoding(pub String);

/// A message text that has been checked: its encoding and part count are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    text: String,
    encoded: Encoded,
    segments: u16,
}

/// The text in its chosen encoding, kept so that [`Body::parts`] cannot fail later.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Encoded {
    /// Unpacked septets, escapes included.
    Gsm7(Vec<u8>),
    /// UTF-16 code units.
    Ucs2(Vec<u16>),
}

impl Body {
    /// Picks GSM 7-bit when every char is in the default alphabet or extension table, else
    /// UCS-2. The text is taken as it is: nothing is trimmed or transliterated.
    ///
    /// `max_parts` above 255 is taken as 255, the most a concatenation header can number
    /// (TS 23.040 §9.2.3.24.1).
    ///
    /// Errors: an empty text, one with a NUL character (no phone shows one, and PostgreSQL
    /// cannot store one), or one that needs more than `max_parts` parts.
    pub fn new(text: &str, max_parts: u16) -> Result<Body, BodyError> {
        if text.is_empty() {
            return Err(BodyError::Empty);
        }
        if text.contains('\0') {
            return Err(BodyError::Nul);
        }
        let max = max_parts.min(segment::MAX_PARTS as u16);
        let (encoded, parts) = match gsm7::encode(text) {
            Ok(septets) => {
                let parts = segment::septet_parts(&septets);
                (Encoded::Gsm7(septets), parts)
            }
            Err(_) => {
                let units = ucs2::units(text);
                let parts = segment::unit_parts(&units);
                (Encoded::Ucs2(units), parts)
            }
        };
        // A count too big for u16 is certainly over the limit; saturate rather than wrap.
        let segments = u16::try_from(parts).unwrap_or(u16::MAX);
        let body = Body {
            text: text.to_owned(),
            encoded,
            segments,
        };
        if segments > max {
            return Err(BodyError::TooLong {
                parts: segments,
                units: body.units(),
                unit_name: body.encoding().unit_name(),
                max,
            });
        }
        Ok(body)
    }

    /// The text, exactly as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The encoding chosen for the text.
    pub fn encoding(&self) -> Encoding {
        match self.encoded {
            Encoded::Gsm7(_) => Encoding::Gsm7,
            Encoded::Ucs2(_) => Encoding::Ucs2,
        }
    }

    /// The number of SMS parts (1 for a single SMS).
    pub fn segments(&self) -> u16 {
        self.segments
    }

    /// The length in septets (gsm7, an escape and its character count 2) or UTF-16 units
    /// (ucs2, a surrogate pair counts 2).
    pub fn units(&self) -> usize {
        match &self.encoded {
            Encoded::Gsm7(septets) => septets.len(),
            Encoded::Ucs2(units) => units.len(),
        }
    }

    /// The parts as the device sends them: for gsm7 the UNPACKED septets per part (one byte
    /// per septet, escapes included, never split); for ucs2 the UTF-16BE bytes per part
    /// (surrogate pairs never split). One element when [`Body::segments`] is 1.
    ///
    /// A device adds the concatenation header ([`udh::Concat`], 8-bit reference) to each
    /// part when there is more than one, and packs gsm7 septets with [`gsm7::pack`] where
    /// its protocol wants octets.
    pub fn parts(&self) -> Vec<Vec<u8>> {
        match &self.encoded {
            Encoded::Gsm7(septets) => segment::split_septets(septets)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect(),
            Encoded::Ucs2(units) => segment::split_units(units)
                .into_iter()
                .map(|part| ucs2::units_to_bytes(part.iter().copied()))
                .collect(),
        }
    }

    /// The text of each part, in order: what each part shows on its own. Concatenated they
    /// give back [`Body::text`].
    pub fn part_texts(&self) -> Vec<String> {
        match &self.encoded {
            Encoded::Gsm7(septets) => segment::split_septets(septets)
                .into_iter()
                .map(gsm7::decode)
                .collect(),
            Encoded::Ucs2(units) => segment::split_units(units)
                .into_iter()
                .map(ucs2::decode_units)
                .collect(),
        }
    }
}

/// Why a text cannot be a [`Body`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The text is empty.
    #[error("the message body is empty")]
    Empty,
    /// The text holds a NUL character (U+0000).
    #[error("the message body contains a NUL character (U+0000); remove it")]
    Nul,
    /// The text needs more parts than allowed.
    #[error(
        "the message body needs {parts} parts ({units} {unit_name}); the most allowed is {max}"
    )]
    TooLong {
        /// Parts the text needs (saturated at `u16::MAX`).
        parts: u16,
        /// Its length in septets or UTF-16 units.
        units: usize,
        /// What `units` counts: "septets" or "UTF-16 units".
        unit_name: &'static str,
        /// The most parts allowed.
        max: u16,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_names() {
        for e in [Encoding::Gsm7, Encoding::Ucs2] {
            assert_eq!(Encoding::parse(e.as_str()), Some(e));
            assert_eq!(e.to_string(), e.as_str());
            assert_eq!(e.as_str().parse::<Encoding>(), Ok(e));
        }
        assert_eq!(Encoding::parse("UCS2"), Some(Encoding::Ucs2));
        assert_eq!(Encoding::parse("utf8"), None);
        assert_eq!(
            serde_json::to_string(&Encoding::Gsm7).ok().as_deref(),
            Some("\"gsm7\"")
        );
    }

    #[test]
    fn picks_gsm7_when_it_can() {
        let body = Body::new("Hello {world} €5", 10).unwrap();
        assert_eq!(body.encoding(), Encoding::Gsm7);
        assert_eq!(body.units(), 19);
        assert_eq!(body.segments(), 1);
        assert_eq!(body.parts(), [gsm7::encode("Hello {world} €5").unwrap()]);
    }

    #[test]
    fn falls_back_to_ucs2() {
        // Lower-case ç is not GSM 7-bit; the text is not transliterated.
        let body = Body::new("ça va", 10).unwrap();
        assert_eq!(body.encoding(), Encoding::Ucs2);
        assert_eq!(body.units(), 5);
        assert_eq!(body.parts(), [ucs2::encode("ça va")]);
        let body = Body::new("ok 😀", 10).unwrap();
        assert_eq!((body.encoding(), body.units()), (Encoding::Ucs2, 5));
    }

    #[test]
    fn whitespace_is_a_body() {
        let body = Body::new(" ", 1).unwrap();
        assert_eq!(body.text(), " ");
        assert_eq!(Body::new("", 1), Err(BodyError::Empty));
        assert_eq!(Body::new("a\0b", 1), Err(BodyError::Nul));
    }

    #[test]
    fn counts_parts() {
        let body = Body::new(&"a".repeat(161), 10).unwrap();
        assert_eq!(body.segments(), 2);
        assert_eq!(body.part_texts().concat(), "a".repeat(161));
        let body = Body::new(&"ж".repeat(71), 10).unwrap();
        assert_eq!(body.segments(), 2);
        assert_eq!(body.parts()[0].len(), 134);
    }

    #[test]
    fn refuses_too_many_parts() {
        let err = Body::new(&"a".repeat(307), 2).unwrap_err();
        assert_eq!(
            err,
            BodyError::TooLong {
                parts: 3,
                units: 307,
                unit_name: "septets",
                max: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "the message body needs 3 parts (307 septets); the most allowed is 2"
        );
        let err = Body::new(&"ж".repeat(71), 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the message body needs 2 parts (71 UTF-16 units); the most allowed is 1"
        );
        assert!(Body::new("a", 0).is_err());
    }

    #[test]
    fn max_parts_is_capped_at_what_a_header_can_number() {
        let text = "a".repeat(153 * 256);
        let err = Body::new(&text, u16::MAX).unwrap_err();
        assert!(matches!(
            err,
            BodyError::TooLong {
                parts: 256,
                max: 255,
                ..
            }
        ));
        assert_eq!(
            Body::new(&"a".repeat(153 * 255), u16::MAX)
                .map(|b| b.segments())
                .ok(),
            Some(255)
        );
    }
}
