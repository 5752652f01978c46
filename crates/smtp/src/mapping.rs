//! From envelope addresses to phone numbers and owners (docs/email.md), without I/O.
//!
//! - [`Rules`]: the configured domains, addresses and allowed senders, normalised once.
//! - [`Rules::target`]: what a `RCPT TO` address means: one number (domain mode,
//!   `DIGITS@domain`), "the numbers in the Subject" (address mode), or relaying, which is
//!   never done.
//! - [`subject_numbers`]: the numbers of an address-mode Subject line.
//! - [`SenderPattern`]: `*@example.com`-style patterns for senders allowed without AUTH.

use textgate_core::address::{AddressError, Country, Recipient};
use textgate_core::config::SmtpConfig;

/// What a recipient address stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `DIGITS@domain`: one text to this number.
    Number(Recipient),
    /// A configured address: the numbers are in the Subject.
    Subject,
}

/// Why a recipient address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Neither a configured domain nor a configured address: textgate never relays.
    Relay,
    /// A configured domain, but the local part is not a number.
    BadNumber(AddressError),
}

/// An allowed-sender pattern: an address in which `*` stands for any run of characters,
/// compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderPattern(String);

impl SenderPattern {
    /// The pattern as configured (`*@example.com`).
    pub fn new(pattern: &str) -> SenderPattern {
        SenderPattern(pattern.to_ascii_lowercase())
    }

    /// Whether `address` matches. Iterative wildcard matching with one backtrack point,
    /// linear in practice and never exponential, since senders are untrusted input.
    pub fn matches(&self, address: &str) -> bool {
        let p = self.0.as_bytes();
        let a = address.to_ascii_lowercase();
        let a = a.as_bytes();
        let (mut pi, mut ai) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ai < a.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ai));
                pi += 1;
            } else if pi < p.len() && p[pi] == a[ai] {
                pi += 1;
                ai += 1;
            } else if let Some((sp, sa)) = star {
                // Let the last star swallow one more character and retry after it.
                pi = sp + 1;
                ai = sa + 1;
                star = Some((sp, sa + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

/// The mapping part of `[smtp]`, normalised (lower case) once.
#[derive(Debug, Clone)]
pub struct Rules {
    domains: Vec<String>,
    addresses: Vec<String>,
    senders: Vec<SenderPattern>,
    country: Option<Country>,
}

impl Rules {
    /// From the checked `[smtp]` section and `[server] default_country`.
    pub fn new(cfg: &SmtpConfig, country: Option<Country>) -> Rules {
        Rules {
            domains: cfg.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            addresses: cfg
                .addresses
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            senders: cfg
                .allowed_senders
                .iter()
                .map(|p| SenderPattern::new(p))
                .collect(),
            country,
        }
    }

    /// The first configured domain, else the domain of the first address: the name the
    /// listener gives itself in its greeting.
    pub fn hostname(&self) -> &str {
        self.domains
            .first()
            .map(String::as_str)
            .or_else(|| {
                self.addresses
                    .first()
                    .and_then(|a| a.rsplit_once('@'))
                    .map(|(_, d)| d)
            })
            .unwrap_or("textgate")
    }

    /// `[server] default_country`.
    pub fn country(&self) -> Option<Country> {
        self.country
    }

    /// Whether an envelope sender may send without SMTP AUTH. The null sender `<>` (used
    /// by bounces) never may.
    pub fn sender_allowed(&self, address: &str) -> bool {
        !address.is_empty() && self.senders.iter().any(|p| p.matches(address))
    }

    /// Whether any sender may send without AUTH at all.
    pub fn has_allowed_senders(&self) -> bool {
        !self.senders.is_empty()
    }

    /// What `RCPT TO:<address>` stands for.
    pub fn target(&self, address: &str) -> Result<Target, TargetError> {
        let lower = address.to_ascii_lowercase();
        if self.addresses.contains(&lower) {
            return Ok(Target::Subject);
        }
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(TargetError::Relay);
        };
        if !self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return Err(TargetError::Relay);
        }
        Recipient::parse(local, self.country)
            .map(Target::Number)
            .map_err(TargetError::BadNumber)
    }
}

/// Reply prefixes that mail programs put before a Subject ("Re: Fwd: ...").
const SUBJECT_PREFIXES: &[&str] = &["re:", "fwd:", "fw:", "aw:", "wg:", "tr:", "sv:", "vs:"];

/// The numbers of an address-mode Subject: separated by commas, semicolons or spaces
/// (docs/email.md). A comma- or semicolon-separated piece that is one number as a whole is
/// taken whole, so "+1 555 123 4567, +44 20 7946 0000" means two numbers, not eight bad
/// ones; otherwise the piece is split at spaces. Reply prefixes ("Re:") are skipped, and a
/// number given twice is one recipient.
///
/// Errors: the bad pieces, each with what is wrong with it; or that there is no number.
pub fn subject_numbers(
    subject: &str,
    country: Option<Country>,
) -> Result<Vec<Recipient>, Vec<String>> {
    let mut rest = subject.trim();
    'prefixes: loop {
        for p in SUBJECT_PREFIXES {
            if rest.len() >= p.len()
                && rest.is_char_boundary(p.len())
                && rest[..p.len()].eq_ignore_ascii_case(p)
            {
                rest = rest[p.len()..].trim_start();
                continue 'prefixes;
            }
        }
        break;
    }
    let mut out: Vec<Recipient> = Vec::new();
    let mut bad = Vec::new();
    let push = |r: Recipient, out: &mut Vec<Recipient>| {
        if !out.contains(&r) {
            out.push(r);
        }
    };
    for piece in rest
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if let Ok(r) = Recipient::parse(piece, country) {
            push(r, &mut out);
            continue;
        }
        for token in piece.split_whitespace() {
            match Recipient::parse(token, country) {
                Ok(r) => push(r, &mut out),
                Err(e) => bad.push(e.to_string()),
            }
        }
    }
    if !bad.is_empty() {
        return Err(bad);
    }
    if out.is_empty() {
        return Err(vec![
            "the Subject has no phone number: write the numbers there, separated by commas"
                .to_string(),
        ]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        let cfg = SmtpConfig {
            domains: vec!["SMS.example.com".into()],
            addresses: vec!["TextMsg@example.com".into()],
            allowed_senders: vec!["*@example.com".into(), "ops@partner.org".into()],
            ..SmtpConfig::default()
        };
        Rules::new(&cfg, "US".parse().ok())
    }

    #[test]
    fn recipients_map_to_numbers_subject_or_relay() {
        let r = rules();
        let num = |s: &str| match r.target(s) {
            Ok(Target::Number(n)) => n.as_str().to_string(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(num("+15551234567@sms.example.com"), "+15551234567");
        assert_eq!(num("15551234567@SMS.Example.COM"), "+15551234567");
        // A national number uses default_country.
        assert_eq!(num("5551234567@sms.example.com"), "+15551234567");
        assert_eq!(num("447700900123@sms.example.com"), "+447700900123");
        assert_eq!(r.target("textmsg@EXAMPLE.com"), Ok(Target::Subject));
        assert_eq!(r.target("someone@gmail.com"), Err(TargetError::Relay));
        assert_eq!(
            r.target("15551234567@sms.example.com.evil.org"),
            Err(TargetError::Relay)
        );
        assert_eq!(r.target("no-at-sign"), Err(TargetError::Relay));
        assert!(matches!(
            r.target("alice@sms.example.com"),
            Err(TargetError::BadNumber(_))
        ));
        assert!(matches!(
            r.target("12@sms.example.com"),
            Err(TargetError::BadNumber(_))
        ));
    }

    #[test]
    fn sender_patterns() {
        let r = rules();
        assert!(r.sender_allowed("bob@example.com"));
        assert!(r.sender_allowed("Bob@EXAMPLE.com"));
        assert!(r.sender_allowed("ops@partner.org"));
        assert!(!r.sender_allowed("bob@example.com.evil.org"));
        assert!(!r.sender_allowed("bob@sub.example.org"));
        assert!(!r.sender_allowed("other@partner.org"));
        assert!(!r.sender_allowed(""));
        let p = SenderPattern::new("a*b*c@*.example.com");
        assert!(p.matches("abc@x.example.com"));
        assert!(p.matches("axxbyyc@deep.sub.example.com"));
        assert!(!p.matches("axxbyy@x.example.com"));
        assert!(SenderPattern::new("*").matches("anything@anywhere"));
        // Many stars against a long near-miss: must not take exponential time.
        let evil = SenderPattern::new(&"*a".repeat(30));
        assert!(!evil.matches(&"a".repeat(25)));
        assert!(!evil.matches(&format!("{}b", "a".repeat(5000))));
    }

    #[test]
    fn subject_lists() {
        let us = "US".parse().ok();
        let n = |s: &str| -> Vec<String> {
            subject_numbers(s, us)
                .unwrap_or_else(|e| panic!("{s}: {e:?}"))
                .iter()
                .map(|r| r.as_str().to_string())
                .collect()
        };
        assert_eq!(n("+15551234567"), ["+15551234567"]);
        assert_eq!(
            n("+15551234567, +447700900123;+15557654321"),
            ["+15551234567", "+447700900123", "+15557654321"]
        );
        assert_eq!(
            n("+15551234567 +447700900123  5557654321"),
            ["+15551234567", "+447700900123", "+15557654321"]
        );
        assert_eq!(
            n("+1 555 123 4567, +44 7700 900123"),
            ["+15551234567", "+447700900123"]
        );
        assert_eq!(n("Re: FWD: +15551234567"), ["+15551234567"]);
        assert_eq!(n("+15551234567, 15551234567"), ["+15551234567"]);
        let e = subject_numbers("+15551234567, call me", us).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("call"), "{e:?}");
        assert!(subject_numbers("  ", us).unwrap_err()[0].contains("no phone number"));
        assert!(subject_numbers("Re:", us).is_err());
    }

    #[test]
    fn hostname_comes_from_the_config() {
        assert_eq!(rules().hostname(), "sms.example.com");
        let only_addr = SmtpConfig {
            addresses: vec!["t@corp.example".into()],
            ..SmtpConfig::default()
        };
        assert_eq!(Rules::new(&only_addr, None).hostname(), "corp.example");
    }
}
