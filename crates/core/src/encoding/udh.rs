//! The user data header (3GPP TS 23.040 §9.2.3.24) as far as textgate needs it: building
//! the concatenation element for the parts we send (§9.2.3.24.1, IEI 0x00, 8-bit
//! reference; §9.2.3.24.8, IEI 0x08, 16-bit reference), and parsing any header that
//! arrives, to find the concatenation element among whatever else it carries.
//!
//! The header is `UDHL, (IEI, IEDL, data[IEDL])*`; UDHL counts the octets after itself.
//! Parsing is strict about lengths (a header that does not add up is an error, since the
//! text after it cannot be located) and tolerant of content: unknown elements are kept and
//! skipped, a concatenation element whose numbers are out of range is ignored as
//! §9.2.3.24.1 says a receiver shall, and when an element repeats the last one counts
//! (§9.2.3.24).

/// IEI of the concatenation element with an 8-bit reference (TS 23.040 §9.2.3.24.1).
pub const IEI_CONCAT_8: u8 = 0x00;
/// IEI of the concatenation element with a 16-bit reference (TS 23.040 §9.2.3.24.8).
pub const IEI_CONCAT_16: u8 = 0x08;

/// The concatenated-message reference: the same in every part of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConcatRef {
    /// IEI 0x00: one octet (6-octet header, 153 septets or 67 UTF-16 units per part).
    Bits8(u8),
    /// IEI 0x08: two octets, big-endian (7-octet header, so one unit less per part).
    Bits16(u16),
}

impl ConcatRef {
    /// The reference number, whatever its width.
    pub fn value(self) -> u16 {
        match self {
            ConcatRef::Bits8(r) => u16::from(r),
            ConcatRef::Bits16(r) => r,
        }
    }
}

/// Which part of which concatenated message this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    /// The message reference, shared by all parts.
    pub reference: ConcatRef,
    /// How many parts the message has (1..=255).
    pub total: u8,
    /// This part's number, from 1 (1..=total).
    pub sequence: u8,
}

impl Concat {
    /// A concatenation element; `sequence` counts from 1 and may not exceed `total`.
    pub fn new(reference: ConcatRef, total: u8, sequence: u8) -> Result<Concat, UdhError> {
        if total == 0 || sequence == 0 || sequence > total {
            return Err(UdhError::BadConcatNumbers { total, sequence });
        }
        Ok(Concat {
            reference,
            total,
            sequence,
        })
    }

    /// The information element alone (IEI, IEDL, data), to combine with other elements.
    pub fn element(&self) -> Vec<u8> {
        match self.reference {
            ConcatRef::Bits8(r) => vec![IEI_CONCAT_8, 3, r, self.total, self.sequence],
            ConcatRef::Bits16(r) => {
                let [hi, lo] = r.to_be_bytes();
                vec![IEI_CONCAT_16, 4, hi, lo, self.total, self.sequence]
            }
        }
    }

    /// The whole user data header with only this element, UDHL first: `05 00 03 ref total
    /// seq` or `06 08 04 ref_hi ref_lo total seq`.
    pub fn header(&self) -> Vec<u8> {
        let element = self.element();
        let mut header = Vec::with_capacity(element.len() + 1);
        // The element is 5 or 6 octets, so its length always fits the UDHL octet.
        header.push(element.len() as u8);
        header.extend_from_slice(&element);
        header
    }
}

/// One information element of a header, as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InformationElement {
    /// Its identifier (TS 23.040 §9.2.3.24, table of IEIs).
    pub iei: u8,
    /// Its data, without IEI and length.
    pub data: Vec<u8>,
}

/// A parsed user data header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udh {
    /// The header's size in octets, the UDHL octet included: the text starts at this offset
    /// in the user data.
    pub len: usize,
    /// Every element, in order, concatenation elements included.
    pub elements: Vec<InformationElement>,
    /// The concatenation info, if a valid concatenation element is present.
    pub concat: Option<Concat>,
}

impl Udh {
    /// The fill bits between this header and GSM 7-bit text ([`fill_bits`]).
    pub fn fill_bits(&self) -> u8 {
        fill_bits(self.len)
    }

    /// The septets this header occupies in a GSM 7-bit TP-UDL ([`header_septets`]).
    pub fn septets(&self) -> usize {
        header_septets(self.len)
    }
}

/// Why a user data header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdhError {
    /// There is no UDHL octet.
    #[error("the user data is empty but should start with a header length octet")]
    Empty,
    /// UDHL announces more octets than the user data has.
    #[error("the user data header says it is {declared} octets long but only {available} follow")]
    HeaderTooLong {
        /// The UDHL value.
        declared: usize,
        /// Octets after the UDHL octet.
        available: usize,
    },
    /// An element's length octet is missing, or its data runs past the header's end.
    #[error(
        "information element 0x{iei:02X} at header offset {offset} does not fit in the header"
    )]
    ElementOverrun {
        /// The element's identifier.
        iei: u8,
        /// Where the element starts, counted from the UDHL octet.
        offset: usize,
    },
    /// A concatenation element whose length is not the one its IEI defines (3 or 4).
    #[error("concatenation element 0x{iei:02X} has length {len}; it must be {expected}")]
    BadConcatLength {
        /// 0x00 or 0x08.
        iei: u8,
        /// The IEDL received.
        len: usize,
        /// The length the spec defines for it.
        expected: usize,
    },
    /// Part numbers that cannot be (only when building; parsing ignores such an element).
    #[error("part {sequence} of {total} is not a valid concatenation: parts count from 1 to the total, which is 1 to 255")]
    BadConcatNumbers {
        /// The total given.
        total: u8,
        /// The sequence number given.
        sequence: u8,
    },
}

/// Parses the header at the start of `user_data` (the UDHL octet first), as sent when
/// TP-UDHI is set (TS 23.040 §9.2.3.23). Never panics on any input.
pub fn parse(user_data: &[u8]) -> Result<Udh, UdhError> {
    let (&udhl, rest) = user_data.split_first().ok_or(UdhError::Empty)?;
    let declared = usize::from(udhl);
    let mut body = rest.get(..declared).ok_or(UdhError::HeaderTooLong {
        declared,
        available: rest.len(),
    })?;
    let mut elements = Vec::new();
    let mut concat = None;
    let mut offset = 1;
    while let Some((&iei, after_iei)) = body.split_first() {
        let overrun = UdhError::ElementOverrun { iei, offset };
        let (&len, after_len) = after_iei.split_first().ok_or(overrun.clone())?;
        let len = usize::from(len);
        let data = after_len.get(..len).ok_or(overrun)?;
        match iei {
            IEI_CONCAT_8 | IEI_CONCAT_16 => {
                let expected = if iei == IEI_CONCAT_8 { 3 } else { 4 };
                if len != expected {
                    return Err(UdhError::BadConcatLength { iei, len, expected });
                }
                // Last occurrence wins (§9.2.3.24); an out-of-range one is ignored
                // (§9.2.3.24.1), which also means it no longer overrides an earlier one.
                if let Some(c) = concat_from(iei, data) {
                    concat = Some(c);
                }
            }
            _ => {}
        }
        elements.push(InformationElement {
            iei,
            data: data.to_vec(),
        });
        body = after_len.get(len..).unwrap_or_default();
        offset += 2 + len;
    }
    Ok(Udh {
        len: 1 + declared,
        elements,
        concat,
    })
}

/// The concatenation info of a 0x00 (3-octet) or 0x08 (4-octet) element, or `None` when
/// its numbers are out of range.
fn concat_from(iei: u8, data: &[u8]) -> Option<Concat> {
    let (reference, total, sequence) = match (iei, data) {
        (IEI_CONCAT_8, &[r, total, seq]) => (ConcatRef::Bits8(r), total, seq),
        (IEI_CONCAT_16, &[hi, lo, total, seq]) => {
            (ConcatRef::Bits16(u16::from_be_bytes([hi, lo])), total, seq)
        }
        _ => return None,
    };
    Concat::new(reference, total, sequence).ok()
}

/// The fill bits that put the first GSM 7-bit character on a septet boundary after a header
/// of `header_len` octets, UDHL included (TS 23.040 §9.2.3.24): 1 for the 6-octet
/// concatenation header, 0 for the 7-octet one.
pub fn fill_bits(header_len: usize) -> u8 {
    // The remainder is below 7, so it fits a u8.
    ((7 - (header_len % 7 * 8 % 7)) % 7) as u8
}

/// The septets a header of `header_len` octets (UDHL included) takes, fill bits included;
/// TP-UDL of a GSM 7-bit message counts these as well as the text's (TS 23.040 §9.2.3.16).
pub fn header_septets(header_len: usize) -> usize {
    header_len.saturating_mul(8).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_both_concatenation_headers() {
        let c = Concat::new(ConcatRef::Bits8(0x2A), 3, 1).unwrap();
        assert_eq!(c.header(), [0x05, 0x00, 0x03, 0x2A, 0x03, 0x01]);
        let c = Concat::new(ConcatRef::Bits16(0xBEEF), 2, 2).unwrap();
        assert_eq!(c.header(), [0x06, 0x08, 0x04, 0xBE, 0xEF, 0x02, 0x02]);
        assert_eq!(c.reference.value(), 0xBEEF);
    }

    #[test]
    fn refuses_impossible_part_numbers() {
        for (total, seq) in [(0, 0), (2, 0), (2, 3), (0, 1)] {
            assert!(Concat::new(ConcatRef::Bits8(1), total, seq).is_err());
        }
        assert!(Concat::new(ConcatRef::Bits8(1), 255, 255).is_ok());
    }

    #[test]
    fn parses_what_it_builds() {
        for c in [
            Concat::new(ConcatRef::Bits8(7), 4, 2).unwrap(),
            Concat::new(ConcatRef::Bits16(300), 9, 9).unwrap(),
        ] {
            let mut data = c.header();
            data.extend_from_slice(b"text");
            let udh = parse(&data).unwrap();
            assert_eq!(udh.concat, Some(c));
            assert_eq!(udh.len, data.len() - 4);
            assert_eq!(udh.elements.len(), 1);
        }
    }

    #[test]
    fn finds_concat_among_other_elements() {
        // Port addressing (0x05, 4 octets) first, then concat, then an unknown IE.
        let data = [
            0x0E, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x11, 0x02, 0x01, 0x70, 0x01,
            0xAA, 0x99,
        ];
        let udh = parse(&data).unwrap();
        assert_eq!(udh.len, 15);
        assert_eq!(udh.elements.len(), 3);
        assert_eq!(
            udh.concat,
            Some(Concat {
                reference: ConcatRef::Bits8(0x11),
                total: 2,
                sequence: 1
            })
        );
    }

    #[test]
    fn ignores_out_of_range_concat_and_keeps_the_last_valid_one() {
        let data = [0x05, 0x00, 0x03, 0x01, 0x02, 0x03];
        assert_eq!(parse(&data).unwrap().concat, None);
        let data = [
            0x0A, 0x00, 0x03, 0x01, 0x02, 0x01, 0x00, 0x03, 0x02, 0x03, 0x02,
        ];
        let concat = parse(&data).unwrap().concat.unwrap();
        assert_eq!((concat.reference.value(), concat.sequence), (2, 2));
    }

    #[test]
    fn empty_header_is_fine() {
        let udh = parse(&[0x00, 0x41]).unwrap();
        assert_eq!((udh.len, udh.elements.len(), udh.concat), (1, 0, None));
    }

    #[test]
    fn malformed_lengths_are_errors() {
        assert_eq!(parse(&[]), Err(UdhError::Empty));
        assert_eq!(
            parse(&[0x05, 0x00, 0x03]),
            Err(UdhError::HeaderTooLong {
                declared: 5,
                available: 2
            })
        );
        // Element length runs past UDHL (even though the user data is longer).
        assert_eq!(
            parse(&[0x03, 0x00, 0x03, 0x01, 0x02, 0x03]),
            Err(UdhError::ElementOverrun { iei: 0, offset: 1 })
        );
        // IEI with no length octet.
        assert_eq!(
            parse(&[0x01, 0x70]),
            Err(UdhError::ElementOverrun {
                iei: 0x70,
                offset: 1
            })
        );
        assert_eq!(
            parse(&[0x04, 0x00, 0x02, 0x01, 0x02]),
            Err(UdhError::BadConcatLength {
                iei: 0,
                len: 2,
                expected: 3
            })
        );
    }

    #[test]
    fn fill_bits_and_septets() {
        assert_eq!(fill_bits(6), 1);
        assert_eq!(fill_bits(7), 0);
        assert_eq!(fill_bits(1), 6);
        assert_eq!(fill_bits(0), 0);
        assert_eq!(header_septets(6), 7);
        assert_eq!(header_septets(7), 8);
        // The general rule: header bits plus fill bits is a whole number of septets.
        for len in 0..300 {
            assert_eq!((len * 8 + usize::from(fill_bits(len))) % 7, 0);
            assert_eq!(
                header_septets(len) * 7,
                len * 8 + usize::from(fill_bits(len))
            );
        }
    }
}
