//! Who a text goes to and who it comes from, parsed once at the edge so that the rest of
//! textgate only ever holds valid values ("parse, don't validate").
//!
//! - [`E164`]: a full international number, ITU-T E.164 (at most 15 digits after `+`),
//!   normalised from what people type with the `phonenumber` crate (libphonenumber's data).
//! - [`Recipient`]: a number or a short code (3–8 digits, national, carrier-routed).
//! - [`Sender`]: a number, a short code, or an alphanumeric originator of 1–11 characters of
//!   the GSM 7-bit default alphabet, the most TP-OA can carry (3GPP TS 23.040 §9.1.2.5:
//!   10 octets of address value, 11 packed septets; type of number 101).
//!
//! Error messages say what is wrong and what to write instead: people read them in API
//! answers, SMTP replies and CSV job reports.

use std::fmt;
use std::str::FromStr;

use phonenumber::PhoneNumber;

use crate::encoding::gsm7;

/// The example every error message shows.
const EXAMPLE: &str = "+15551234567";
/// More digits than any number with an international prefix can have (15 for E.164, plus
/// up to 3 for a prefix like 011); longer input is refused before the parser sees it.
const MAX_INPUT_DIGITS: usize = 18;
/// Inputs longer than this are refused as too long before any parsing: even a number
/// written with generous spacing and punctuation fits.
const MAX_INPUT_CHARS: usize = 64;
/// How much of a bad input an error message repeats, so that a huge input does not make a
/// huge error.
const MAX_ECHO_CHARS: usize = 40;
/// The most characters of an alphanumeric sender (TS 23.040 §9.1.2.5).
pub const MAX_ALPHANUMERIC_CHARS: usize = 11;
/// The shortest and longest short codes.
pub const SHORT_CODE_DIGITS: std::ops::RangeInclusive<usize> = 3..=8;

/// A country used for numbers written without +country, e.g. "US". Wraps
/// [`phonenumber::country::Id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country(phonenumber::country::Id);

impl Country {
    /// The ISO 3166 alpha-2 code, upper case ("US").
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    /// The `phonenumber` id, for callers that use that crate directly.
    pub fn id(&self) -> phonenumber::country::Id {
        self.0
    }
}

impl FromStr for Country {
    type Err = AddressError;

    /// "US", "gb": an ISO 3166 alpha-2 code, any case, surrounding spaces ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let code = s.trim();
        let unknown = || AddressError::UnknownCountry { input: echo(s) };
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(unknown());
        }
        code.to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .map(Country)
            .map_err(|_| unknown())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `raw` without its control characters (C0, DEL and C1: line breaks, escapes, NUL), cut
/// to `max_chars`: how every address and name taken from the network is stored, so none can
/// break a header, a log line or a terminal it is later written to.
pub fn without_controls(raw: &str, max_chars: usize) -> String {
    raw.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

/// Loads the numbering-plan data that parsing numbers needs (libphonenumber's metadata and
/// the table built from it). It happens on first use anyway, but takes tens of milliseconds:
/// a server calls this at start so that its first text does not wait for it.
pub fn warm_up() {
    let _ = code_table();
    let _ = E164::parse("+1 202 555 0100", None);
    let _ = E164::parse("020 7946 0000", "GB".parse().ok());
}

/// A valid E.164 number, always stored as "+<digits>".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses a number as people write it: "+1 (555) 123-4567"; "1-555-123-4567" (digits
    /// with the country code); "555 123 4567" with a default country of US; "00 44 …" or
    /// "011 44 …" with an international prefix. Spaces, dashes, dots and parentheses are
    /// allowed anywhere; a '+' only first.
    ///
    /// A number is accepted when libphonenumber's data says it is valid, or when it has a
    /// known country code and a length the country's numbers can have ("possible" in
    /// libphonenumber's terms). The second rule admits numbers in ranges the data does not
    /// list as assigned, such as the +1 555 numbers used in examples and tests, and numbers
    /// in ranges opened after the data was made; [`E164::parse_strict`] refuses them.
    ///
    /// Without a '+', the digits are read first as a national number of
    /// `default_country` (which also handles that country's international prefix and a
    /// leading country code), then as digits with a country code, then after a "00" or
    /// "011" prefix; the first reading that can be a number is taken.
    pub fn parse(input: &str, default_country: Option<Country>) -> Result<E164, AddressError> {
        parse_number(input, default_country, Strictness::Possible)
    }

    /// Like [`E164::parse`], but accepts only numbers that libphonenumber's data says are
    /// valid ([`phonenumber::is_valid`]): right length and an assigned range. It reads the
    /// input the same way, so when it succeeds it gives the same number as `parse`.
    pub fn parse_strict(
        input: &str,
        default_country: Option<Country>,
    ) -> Result<E164, AddressError> {
        parse_number(input, default_country, Strictness::Valid)
    }

    /// "+15551234567".
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// "15551234567": the digits without '+', as in `DIGITS@domain` e-mail addresses.
    pub fn digits(&self) -> &str {
        self.0.strip_prefix('+').unwrap_or(&self.0)
    }

    /// Trusted constructor for values read back from our own store: no validation, except
    /// that a missing '+' is added so that [`E164::as_str`] keeps its promise.
    pub fn from_stored(s: &str) -> E164 {
        if s.starts_with('+') {
            E164(s.to_owned())
        } else {
            E164(format!("+{s}"))
        }
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for E164 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Where a text can be sent to: a full number, or a short code (3–8 digits, no '+', e.g.
/// "72345").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// A full international number.
    Number(E164),
    /// A short code, digits only.
    ShortCode(String),
}

impl Recipient {
    /// A string of 3–8 digits with no '+' and no separators is a short code ONLY when it is
    /// not a valid national number for `default_country` (checked strictly, with
    /// [`phonenumber::is_valid`]); everything else is parsed as an [`E164`].
    pub fn parse(input: &str, default_country: Option<Country>) -> Result<Recipient, AddressError> {
        let text = input.trim();
        if let Some(code) = short_code(text, default_country) {
            return Ok(Recipient::ShortCode(code));
        }
        E164::parse(text, default_country).map(Recipient::Number)
    }

    /// The number with '+', or the short code's digits.
    pub fn as_str(&self) -> &str {
        match self {
            Recipient::Number(n) => n.as_str(),
            Recipient::ShortCode(s) => s,
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a text appears to come from: a number, a short code, or an alphanumeric id (1–11
/// chars of the GSM default alphabet, at least one letter; TS 23.040 §9.1.2.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sender {
    /// A full international number.
    Number(E164),
    /// A short code, digits only.
    ShortCode(String),
    /// An alphanumeric originator such as "ACME".
    Alphanumeric(String),
}

impl Sender {
    /// Reads a sender: 3–8 plain digits are a short code (as for [`Recipient::parse`]);
    /// text with a letter in it is an alphanumeric id; anything else must be a number.
    /// Surrounding spaces are ignored.
    pub fn parse(input: &str, default_country: Option<Country>) -> Result<Sender, AddressError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(AddressError::EmptySender);
        }
        if let Some(code) = short_code(text, default_country) {
            return Ok(Sender::ShortCode(code));
        }
        if text.chars().any(char::is_alphabetic) {
            return alphanumeric(text).map(Sender::Alphanumeric);
        }
        E164::parse(text, default_country).map(Sender::Number)
    }

    /// The number with '+', the short code's digits, or the alphanumeric id.
    pub fn as_str(&self) -> &str {
        match self {
            Sender::Number(n) => n.as_str(),
            Sender::ShortCode(s) | Sender::Alphanumeric(s) => s,
        }
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an address was refused. Each message says what is wrong and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing was given.
    #[error("the phone number is empty: write it with the country code, like {EXAMPLE}")]
    Empty,
    /// Letters or symbols other than spaces, dashes, dots, parentheses and a leading '+'.
    #[error("{input:?} is not a phone number: use digits with the country code, like {EXAMPLE}")]
    NotANumber {
        /// The input (at most 40 characters of it).
        input: String,
    },
    /// Too few digits for any number.
    #[error("{input:?} is too short to be a phone number: write the whole number with the country code, like {EXAMPLE}")]
    TooShort {
        /// The input (at most 40 characters of it).
        input: String,
    },
    /// Too many digits for any number.
    #[error("{input:?} is too long to be a phone number: an international number has at most 15 digits after the '+'")]
    TooLong {
        /// The input (at most 40 characters of it).
        input: String,
    },
    /// After '+' (or an international prefix) there is no country code that exists.
    #[error("{input:?} does not start with a country code that exists: check the digits after the '+', like {EXAMPLE} for the US")]
    UnknownCountryCode {
        /// The input (at most 40 characters of it).
        input: String,
    },
    /// Digits without a country code, and no default country to read them with.
    #[error("{input:?} has no country code: write it with '+' and the country code, like {EXAMPLE}, or set a default country")]
    NeedsCountryCode {
        /// The input (at most 40 characters of it).
        input: String,
    },
    /// The digits are not a number that exists in the country they belong to.
    #[error("{input:?} is not a valid phone number{}: check the digits and the country code, like {EXAMPLE}", .country.as_deref().map(|c| format!(" in {c}")).unwrap_or_default())]
    Invalid {
        /// The input (at most 40 characters of it).
        input: String,
        /// The country the number was read for, when one was known.
        country: Option<String>,
    },
    /// Not a two-letter country code.
    #[error("{input:?} is not a country: use a two-letter ISO 3166 code, like US or GB")]
    UnknownCountry {
        /// The input (at most 40 characters of it).
        input: String,
    },
    /// An empty sender.
    #[error("the sender is empty: give a phone number, a short code or a name of up to 11 letters and digits, like ACME")]
    EmptySender,
    /// An alphanumeric sender longer than 11 characters.
    #[error("{input:?} is too long for a sender name: use at most 11 characters, like ACME")]
    SenderTooLong {
        /// The input (at most 40 characters of it).
        input: String,
    },
    /// An alphanumeric sender with a character the GSM default alphabet lacks.
    #[error("{input:?} cannot be a sender name: {ch:?} is not allowed; use letters, digits, spaces and common punctuation of the GSM alphabet, like ACME")]
    SenderBadChar {
        /// The input (at most 40 characters of it).
        input: String,
        /// The first character that is not allowed.
        ch: char,
    },
}

/// How sure [`parse_number`] must be that a number exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// Known country code and a possible length.
    Possible,
    /// `phonenumber::is_valid`.
    Valid,
}

/// The input as an error message repeats it: at most [`MAX_ECHO_CHARS`] characters.
fn echo(input: &str) -> String {
    let mut chars = input.chars();
    let mut out: String = chars.by_ref().take(MAX_ECHO_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// The short code `text` is, if it is 3–8 plain digits and not a valid national number of
/// `default_country`.
fn short_code(text: &str, default_country: Option<Country>) -> Option<String> {
    if !SHORT_CODE_DIGITS.contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let national = default_country
        .and_then(|c| phonenumber::parse(Some(c.0), text).ok())
        .is_some_and(|n| phonenumber::is_valid(&n));
    (!national).then(|| text.to_owned())
}

/// The most senders one user may be given.
pub const MAX_USER_SENDERS: usize = 50;

/// A sender its owner may not send as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("you may not send as \"{asked}\": your senders are {}; choose one of them, or leave the sender out to send as {}", .allowed.join(", "), .allowed.first().map(String::as_str).unwrap_or_default())]
pub struct SenderNotAllowed {
    /// The sender asked for.
    pub asked: String,
    /// The senders the owner may use.
    pub allowed: Vec<String>,
}

/// The sender a text goes out as, given the senders its owner may use (`allowed`, as
/// [`user_senders`] wrote them; empty: any) and the one the text asked for: the asked one if
/// it is allowed (an alphanumeric id matched without regard to case, and then spelled as
/// allowed), the owner's first sender if none was asked for, `None` (the device's default)
/// when neither says.
pub fn choose_sender(
    allowed: &[String],
    asked: Option<Sender>,
    default_country: Option<Country>,
) -> Result<Option<Sender>, SenderNotAllowed> {
    let Some(first) = allowed.first() else {
        return Ok(asked);
    };
    let pick = match &asked {
        None => first,
        Some(a) => allowed
            .iter()
            .find(|s| s.eq_ignore_ascii_case(a.as_str()))
            .ok_or_else(|| SenderNotAllowed {
                asked: a.as_str().to_string(),
                allowed: allowed.to_vec(),
            })?,
    };
    // Stored in the form `Sender::as_str` wrote, so it reads back as the same sender.
    Ok(Sender::parse(pick, default_country).ok().or(asked))
}

/// A user's senders as an administrator listed them: each read as a [`Sender`] and written
/// back in its normal form, duplicates dropped, order kept (the first is the default), at
/// most [`MAX_USER_SENDERS`]. The error names the entry that is wrong.
pub fn user_senders(
    listed: &[String],
    default_country: Option<Country>,
) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for entry in listed.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let s =
            Sender::parse(entry, default_country).map_err(|e| format!("sender {entry:?}: {e}"))?;
        if !out.iter().any(|o| o.eq_ignore_ascii_case(s.as_str())) {
            out.push(s.as_str().to_string());
        }
    }
    if out.len() > MAX_USER_SENDERS {
        return Err(format!(
            "{} senders: a user may have at most {MAX_USER_SENDERS}",
            out.len()
        ));
    }
    Ok(out)
}

/// An alphanumeric sender: 1–11 chars of the default alphabet (no control characters), at
/// least one of them a letter (the caller has checked that).
fn alphanumeric(text: &str) -> Result<String, AddressError> {
    if let Some(ch) = text
        .chars()
        .find(|&c| !gsm7::is_default_char(c) || c.is_control())
    {
        return Err(AddressError::SenderBadChar {
            input: echo(text),
            ch,
        });
    }
    if text.chars().count() > MAX_ALPHANUMERIC_CHARS {
        return Err(AddressError::SenderTooLong { input: echo(text) });
    }
    Ok(text.to_owned())
}

/// The shared body of [`E164::parse`] and [`E164::parse_strict`].
fn parse_number(
    input: &str,
    default_country: Option<Country>,
    strictness: Strictness,
) -> Result<E164, AddressError> {
    parse_number_with(input, default_country, strictness, true)
}

/// Per country calling code: the national lengths [`is_possible`] accepts, and whether any
/// of its regions has a national prefix or a parsing rule that could rewrite the digits.
struct CodeInfo {
    lengths: Vec<u16>,
    prefixes: Vec<String>,
    rewrites: bool,
}

fn code_table() -> &'static std::collections::HashMap<u16, CodeInfo> {
    static TABLE: std::sync::OnceLock<std::collections::HashMap<u16, CodeInfo>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = std::collections::HashMap::new();
        for code in 1u16..=999 {
            let Some(regions) = phonenumber::metadata::DATABASE.by_code(&code) else {
                continue;
            };
            let regions_len = regions.len();
            let mut info = CodeInfo {
                lengths: Vec::new(),
                prefixes: Vec::new(),
                rewrites: false,
            };
            for meta in regions {
                let d = meta.descriptors();
                for desc in [
                    Some(d.general()),
                    d.fixed_line(),
                    d.mobile(),
                    d.personal_number(),
                    d.voip(),
                    d.pager(),
                ]
                .into_iter()
                .flatten()
                {
                    info.lengths.extend_from_slice(desc.possible_length());
                }
                // A number written with +code is stripped by the rules of the code's main
                // region only (libphonenumber's parse), so only its rules matter here.
                if meta.is_main_country_for_code() || regions_len == 1 {
                    info.prefixes
                        .extend(meta.national_prefix().map(str::to_owned));
                    info.rewrites |= meta.national_prefix_for_parsing().is_some()
                        || meta.national_prefix_transform_rule().is_some();
                }
            }
            t.insert(code, info);
        }
        t
    })
}

/// The common case without the parser: `+` and digits, where the country code is known, no
/// national prefix or parsing rule could rewrite the rest, and the rest has a possible
/// length. Then libphonenumber would accept the digits unchanged (a property test checks
/// this against the full parse), and its regular expressions cost ten times more.
fn fast_possible(digits: &str) -> Option<E164> {
    if digits.len() > 15 || digits.starts_with('0') {
        return None;
    }
    let table = code_table();
    for cc_len in 1..=3.min(digits.len()) {
        let Ok(code) = digits[..cc_len].parse::<u16>() else {
            return None;
        };
        if let Some(info) = table.get(&code) {
            let national = &digits[cc_len..];
            let len = u16::try_from(national.len()).ok()?;
            let plain = !info.rewrites
                && !info
                    .prefixes
                    .iter()
                    .any(|p| national.starts_with(p.as_str()));
            return (plain && info.lengths.contains(&len)).then(|| E164(format!("+{digits}")));
        }
    }
    None
}

fn parse_number_with(
    input: &str,
    default_country: Option<Country>,
    strictness: Strictness,
    fast_path: bool,
) -> Result<E164, AddressError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(AddressError::Empty);
    }
    let echoed = || echo(text);
    if text.chars().count() > MAX_INPUT_CHARS {
        return Err(AddressError::TooLong { input: echoed() });
    }
    let (plus, rest) = match text.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(AddressError::NotANumber { input: echoed() }),
        }
    }
    if digits.is_empty() {
        return Err(AddressError::NotANumber { input: echoed() });
    }
    if digits.len() > MAX_INPUT_DIGITS {
        return Err(AddressError::TooLong { input: echoed() });
    }
    if plus && strictness == Strictness::Possible && fast_path {
        if let Some(e) = fast_possible(&digits) {
            return Ok(e);
        }
    }

    // The readings to try, most likely first (see E164::parse).
    let mut candidates: Vec<(Option<phonenumber::country::Id>, String)> = Vec::new();
    if plus {
        candidates.push((None, format!("+{digits}")));
    } else {
        if let Some(country) = default_country {
            candidates.push((Some(country.0), digits.clone()));
        }
        candidates.push((None, format!("+{digits}")));
        for prefix in ["00", "011"] {
            if let Some(after) = digits.strip_prefix(prefix) {
                candidates.push((None, format!("+{after}")));
            }
        }
    }

    let mut first_error = None;
    for (country, candidate) in &candidates {
        match phonenumber::parse(*country, candidate) {
            Ok(number) => {
                // The first reading that can be a number is the one the input means; strict
                // parsing then also wants it valid, rather than trying a less likely reading
                // that happens to be valid (so parse_strict agrees with parse or fails).
                let valid = phonenumber::is_valid(&number);
                if valid || is_possible(&number) {
                    if strictness == Strictness::Valid && !valid {
                        return Err(invalid(&number, text));
                    }
                    return canonical(&number, valid).ok_or_else(|| invalid(&number, text));
                }
                first_error.get_or_insert_with(|| invalid(&number, text));
            }
            Err(e) => {
                first_error.get_or_insert_with(|| parse_error(&e, text, plus, default_country));
            }
        }
    }
    Err(match first_error {
        // Bare digits with no default country: whatever the digits were read as, the fix
        // is the same, so say that rather than name a country the user never meant.
        Some(AddressError::Invalid { .. } | AddressError::UnknownCountryCode { .. })
            if !plus && default_country.is_none() =>
        {
            AddressError::NeedsCountryCode { input: echoed() }
        }
        Some(e) => e,
        None => AddressError::NotANumber { input: echoed() },
    })
}

/// libphonenumber's "possible number", for the kinds of number a text can go to: the
/// national number has a length that fixed-line, mobile, personal, VoIP or pager numbers of
/// its country code can have (local-only lengths do not count). The crate's data leaves the
/// general descriptor's lengths empty, so the lengths of those kinds are used instead.
fn is_possible(number: &PhoneNumber) -> bool {
    let Ok(len) = u16::try_from(number.national().to_string().len()) else {
        return false;
    };
    code_table()
        .get(&number.code().value())
        .is_some_and(|info| info.lengths.contains(&len))
}

/// The E.164 form of a parsed number, if reading that form back gives the same number,
/// just as acceptable. Odd national readings (all zeros after a national prefix, say) can
/// print as digits that mean something else; refusing them keeps `parse` idempotent, which
/// the store relies on when it compares numbers.
fn canonical(number: &PhoneNumber, valid: bool) -> Option<E164> {
    let e164 = e164_of(number)?;
    let again = phonenumber::parse(None, e164.as_str()).ok()?;
    let same = e164_of(&again).as_ref() == Some(&e164);
    let still_ok = phonenumber::is_valid(&again) || (!valid && is_possible(&again));
    (same && still_ok).then_some(e164)
}

/// "+<country code><national number>", or `None` if that is more than E.164's 15 digits.
fn e164_of(number: &PhoneNumber) -> Option<E164> {
    let digits = format!("{}{}", number.code().value(), number.national());
    (digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| E164(format!("+{digits}")))
}

/// The error for a number that parsed but is not valid.
fn invalid(number: &PhoneNumber, text: &str) -> AddressError {
    AddressError::Invalid {
        input: echo(text),
        country: number
            .country()
            .id()
            .map(|id| AsRef::<str>::as_ref(&id).to_owned()),
    }
}

/// The error for input that `phonenumber` could not parse.
fn parse_error(
    e: &phonenumber::ParseError,
    text: &str,
    plus: bool,
    default_country: Option<Country>,
) -> AddressError {
    use phonenumber::ParseError as P;
    let input = echo(text);
    match e {
        P::NoNumber | P::TooShortAfterIdd | P::TooShortNsn => AddressError::TooShort { input },
        P::TooLong | P::MalformedInteger(_) => AddressError::TooLong { input },
        P::InvalidCountryCode if !plus && default_country.is_none() => {
            AddressError::NeedsCountryCode { input }
        }
        P::InvalidCountryCode => AddressError::UnknownCountryCode { input },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_user_sends_only_as_their_senders() {
        let us = Some(Country(phonenumber::country::Id::US));
        let allowed = user_senders(
            &[
                "ACME".into(),
                " (555) 000-1234 ".into(),
                "acme".into(),
                "".into(),
                "12345".into(),
            ],
            us,
        )
        .unwrap();
        assert_eq!(allowed, ["ACME", "+15550001234", "12345"]);
        let pick = |asked: Option<&str>| {
            choose_sender(&allowed, asked.map(|a| Sender::parse(a, us).unwrap()), us)
                .map(|s| s.map(|s| s.as_str().to_string()))
        };
        assert_eq!(pick(None).unwrap().as_deref(), Some("ACME"));
        assert_eq!(pick(Some("Acme")).unwrap().as_deref(), Some("ACME"));
        assert_eq!(
            pick(Some("5550001234")).unwrap().as_deref(),
            Some("+15550001234")
        );
        assert_eq!(pick(Some("12345")).unwrap().as_deref(), Some("12345"));
        let e = pick(Some("EVIL")).unwrap_err();
        assert_eq!(e.asked, "EVIL");
        assert!(e.to_string().contains("ACME, +15550001234, 12345"), "{e}");
        // No list: any sender, and none by default.
        assert_eq!(choose_sender(&[], None, us).unwrap(), None);
        let any = Sender::parse("EVIL", us).unwrap();
        assert_eq!(
            choose_sender(&[], Some(any.clone()), us).unwrap(),
            Some(any)
        );
        assert!(user_senders(&["not a sender!!".into()], us)
            .unwrap_err()
            .contains("not a sender"));
        let many: Vec<String> = (0..=MAX_USER_SENDERS).map(|i| format!("S{i}")).collect();
        assert!(user_senders(&many, us).is_err());
    }

    use super::*;

    #[test]
    fn the_fast_path_agrees_with_the_parser() {
        let mut accepted = 0;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let codes = [
            1u16, 7, 20, 27, 30, 31, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 52, 55,
            61, 64, 65, 81, 82, 86, 90, 91, 234, 254, 351, 353, 358, 380, 420, 852, 971, 972,
        ];
        for _ in 0..4_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let code = codes[(state % codes.len() as u64) as usize];
            let len = 4 + (state >> 8) % 11;
            let mut digits = code.to_string();
            let mut x = state >> 16;
            for _ in 0..len {
                digits.push(char::from(b'0' + (x % 10) as u8));
                x = (x / 10) ^ (state >> 3).rotate_left(7);
            }
            let input = format!("+{digits}");
            if let Some(fast) = fast_possible(&digits) {
                accepted += 1;
                let slow = parse_number_with(&input, None, Strictness::Possible, false);
                assert_eq!(
                    slow.as_ref().ok(),
                    Some(&fast),
                    "{input}: fast path {fast:?}, parser {slow:?}"
                );
            }
        }
        assert!(
            accepted > 200,
            "the fast path should take common numbers ({accepted})"
        );
        assert!(fast_possible("15551234567").is_some());
    }

    fn us() -> Option<Country> {
        "US".parse().ok()
    }

    fn e164(input: &str, country: Option<Country>) -> Result<String, AddressError> {
        E164::parse(input, country).map(|n| n.as_str().to_owned())
    }

    #[test]
    fn countries() {
        assert_eq!(
            "gb".parse::<Country>().map(|c| c.as_str().to_owned()),
            Ok("GB".into())
        );
        assert_eq!(
            " US ".parse::<Country>().map(|c| c.to_string()),
            Ok("US".into())
        );
        for bad in ["", "USA", "U1", "XX", "ÜS"] {
            let err = bad.parse::<Country>().unwrap_err();
            assert!(matches!(err, AddressError::UnknownCountry { .. }), "{bad}");
        }
        assert_eq!(
            "XX".parse::<Country>().unwrap_err().to_string(),
            "\"XX\" is not a country: use a two-letter ISO 3166 code, like US or GB"
        );
    }

    #[test]
    fn accepts_the_usual_ways_of_writing_a_number() {
        let want = Ok("+15551234567".to_owned());
        assert_eq!(e164("+1 (555) 123-4567", None), want);
        assert_eq!(e164("+1.555.123.4567", None), want);
        assert_eq!(e164("1-555-123-4567", None), want);
        assert_eq!(e164("1-555-123-4567", us()), want);
        assert_eq!(e164("555 123 4567", us()), want);
        assert_eq!(e164("  (555) 123-4567 ", us()), want);
        assert_eq!(e164("+442079460958", us()), Ok("+442079460958".into()));
        assert_eq!(
            e164("011 44 20 7946 0958", us()),
            Ok("+442079460958".into())
        );
        assert_eq!(e164("0044 20 7946 0958", None), Ok("+442079460958".into()));
        let gb = "GB".parse().ok();
        assert_eq!(e164("020 7946 0958", gb), Ok("+442079460958".into()));
        assert_eq!(e164("00 1 650 253 0000", gb), Ok("+16502530000".into()));
    }

    #[test]
    fn digits_and_as_str() {
        let n = E164::parse("+1 650 253 0000", None).unwrap();
        assert_eq!(n.as_str(), "+16502530000");
        assert_eq!(n.digits(), "16502530000");
        assert_eq!(n.to_string(), "+16502530000");
        assert_eq!(E164::from_stored("+16502530000"), n);
        assert_eq!(E164::from_stored("16502530000"), n);
    }

    #[test]
    fn strict_parsing_wants_an_assigned_range() {
        assert!(E164::parse_strict("+1 650 253 0000", None).is_ok());
        assert!(matches!(
            E164::parse_strict("+1 555 123 4567", None),
            Err(AddressError::Invalid { .. })
        ));
    }

    #[test]
    fn refuses_what_is_not_a_number() {
        assert_eq!(e164("", us()), Err(AddressError::Empty));
        assert_eq!(e164("   ", us()), Err(AddressError::Empty));
        assert_eq!(
            e164("12ab", us()).unwrap_err().to_string(),
            "\"12ab\" is not a phone number: use digits with the country code, like +15551234567"
        );
        assert!(matches!(
            e164("+", None),
            Err(AddressError::NotANumber { .. })
        ));
        assert!(matches!(
            e164("1+2", None),
            Err(AddressError::NotANumber { .. })
        ));
        assert!(matches!(
            e164("++15551234567", None),
            Err(AddressError::NotANumber { .. })
        ));
        assert!(matches!(
            e164("+1 555 123 4567 ext 9", None),
            Err(AddressError::NotANumber { .. })
        ));
        assert!(matches!(
            e164("+12", None),
            Err(AddressError::TooShort { .. })
        ));
        assert!(matches!(
            e164("+1 555 0001", None),
            Err(AddressError::Invalid { .. })
        ));
        assert!(matches!(
            e164("+1 555 123 4567 8901 2345", None),
            Err(AddressError::TooLong { .. } | AddressError::Invalid { .. })
        ));
        assert!(matches!(
            e164(&"1".repeat(19), None),
            Err(AddressError::TooLong { .. })
        ));
        assert!(matches!(
            e164(&" 1".repeat(100), None),
            Err(AddressError::TooLong { .. })
        ));
        assert!(matches!(
            e164("+999 1234 5678", None),
            Err(AddressError::UnknownCountryCode { .. })
        ));
        // A national number but no country to read it with.
        assert_eq!(
            e164("555 123 4567", None).unwrap_err().to_string(),
            "\"555 123 4567\" has no country code: write it with '+' and the country code, \
             like +15551234567, or set a default country"
        );
    }

    #[test]
    fn a_reading_that_does_not_survive_normalisation_is_refused() {
        // Found by the property tests: read as a Japanese national number this printed as
        // +81000000001, which reads back as something else.
        let jp = "JP".parse().ok();
        assert!(E164::parse("00000000001", jp).is_err());
    }

    #[test]
    fn error_messages_do_not_repeat_huge_input() {
        let err = e164(&"x".repeat(10_000), None).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn recipients() {
        assert_eq!(
            Recipient::parse("72345", us()),
            Ok(Recipient::ShortCode("72345".into()))
        );
        assert_eq!(
            Recipient::parse("2125551", us()),
            Ok(Recipient::ShortCode("2125551".into()))
        );
        assert_eq!(
            Recipient::parse("72345", None).map(|r| r.as_str().to_owned()),
            Ok("72345".into())
        );
        // A separator or '+' means a number, not a short code.
        assert!(Recipient::parse("72 345", us()).is_err());
        assert!(Recipient::parse("+72345", us()).is_err());
        assert_eq!(
            Recipient::parse("650 253 0000", us()).map(|r| r.to_string()),
            Ok("+16502530000".into())
        );
        // A valid national number of the default country wins over a short code: Niue's
        // numbers are 4 digits.
        let nu = "NU".parse().ok();
        assert_eq!(
            Recipient::parse("4002", nu).map(|r| r.to_string()),
            Ok("+6834002".into())
        );
        assert_eq!(
            Recipient::parse("4002", us()),
            Ok(Recipient::ShortCode("4002".into()))
        );
        assert!(Recipient::parse("12", us()).is_err());
    }

    #[test]
    fn senders() {
        assert_eq!(
            Sender::parse("ACME", us()),
            Ok(Sender::Alphanumeric("ACME".into()))
        );
        assert_eq!(
            Sender::parse(" Shop-24 ", us()).map(|s| s.to_string()),
            Ok("Shop-24".into())
        );
        assert_eq!(
            Sender::parse("Ärzte & Co", None),
            Ok(Sender::Alphanumeric("Ärzte & Co".into()))
        );
        assert_eq!(
            Sender::parse("72345", us()),
            Ok(Sender::ShortCode("72345".into()))
        );
        assert_eq!(
            Sender::parse("+1 650 253 0000", None),
            Ok(Sender::Number(E164::from_stored("+16502530000")))
        );
        assert_eq!(Sender::parse("  ", us()), Err(AddressError::EmptySender));
        assert_eq!(
            Sender::parse("ACME Corporation", us()).unwrap_err().to_string(),
            "\"ACME Corporation\" is too long for a sender name: use at most 11 characters, like ACME"
        );
        assert!(matches!(
            Sender::parse("ACME™", us()),
            Err(AddressError::SenderBadChar { ch: '™', .. })
        ));
        // '[' needs the extension table, so is not in the default alphabet.
        assert!(matches!(
            Sender::parse("[ACME]", us()),
            Err(AddressError::SenderBadChar { ch: '[', .. })
        ));
        assert!(matches!(
            Sender::parse("AC\nME", us()),
            Err(AddressError::SenderBadChar { ch: '\n', .. })
        ));
        // Eleven characters is the most; it may count non-ASCII letters as one each.
        assert!(Sender::parse("ABCDEFGHIJK", us()).is_ok());
        assert!(Sender::parse("ÄBCDEFGHIJK", us()).is_ok());
    }
}
