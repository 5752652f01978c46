//! Inbound rules (`[[inbound_rule]]` and `[inbound]`, docs/inbound.md): which users,
//! e-mail addresses and webhooks an incoming text goes to, automatic replies, and the
//! opt-out keywords. Pure: [`InboundRules::plan`] decides, and the store carries the plan out
//! in the same transaction that stores the text, so a text is never stored without its
//! routing or routed twice.

use crate::address::{Country, E164};
pub use crate::config::{InboundConfig, InboundRuleConfig};

/// An opt-out or opt-in asked for by a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptChange {
    /// Put the sender on the suppression list.
    Out,
    /// Take the sender off it.
    In,
}

/// An automatic reply a rule asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoReply {
    /// The text.
    pub body: String,
    /// The user it is sent as (the rule's first user); `None` = the first admin.
    pub owner: Option<String>,
}

/// What to do with one inbound text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Whether any rule matched (when none did, the catch-all applies unless a conversation
    /// claims the text).
    pub matched: bool,
    /// Users whose inboxes it goes to, by name, without repeats.
    pub users: Vec<String>,
    /// E-mail addresses it is forwarded to, without repeats.
    pub emails: Vec<String>,
    /// Webhook URLs it is POSTed to, without repeats.
    pub webhooks: Vec<String>,
    /// Automatic replies.
    pub replies: Vec<AutoReply>,
    /// An opt-out or opt-in keyword.
    pub opt: Option<OptChange>,
}

/// The rules, checked and ready to match.
#[derive(Debug, Clone, Default)]
pub struct InboundRules {
    rules: Vec<InboundRuleConfig>,
    opt_out: Vec<String>,
    opt_in: Vec<String>,
}

impl InboundRules {
    /// Readies the rules (checked by [`crate::config::Config::check`]).
    pub fn new(rules: &[InboundRuleConfig], inbound: &InboundConfig) -> InboundRules {
        let upper =
            |v: &[String]| -> Vec<String> { v.iter().map(|k| k.trim().to_uppercase()).collect() };
        InboundRules {
            rules: rules.to_vec(),
            opt_out: upper(&inbound.opt_out_keywords),
            opt_in: upper(&inbound.opt_in_keywords),
        }
    }

    /// The rules as configured.
    pub fn rules(&self) -> &[InboundRuleConfig] {
        &self.rules
    }

    /// The secret configured for a rule webhook URL, if any rule with that URL has one.
    pub fn webhook_secret(&self, url: &str) -> Option<&str> {
        self.rules
            .iter()
            .filter(|r| r.webhook.as_deref() == Some(url))
            .find_map(|r| r.webhook_secret.as_deref())
    }

    /// What to do with a text from `from` to `to` received by `device`.
    pub fn plan(&self, device: &str, from: &str, to: &str, body: &str) -> Plan {
        let first = first_word(body);
        let mut plan = Plan::default();
        for r in &self.rules {
            let hit = r.to.as_deref().is_none_or(|p| number_glob(p, to))
                && r.from.as_deref().is_none_or(|p| number_glob(p, from))
                && r.device.as_deref().is_none_or(|d| d == device)
                && r.keyword
                    .as_deref()
                    .is_none_or(|k| first.eq_ignore_ascii_case(k.trim()));
            if !hit {
                continue;
            }
            plan.matched = true;
            push_new(&mut plan.users, &r.users);
            push_new(&mut plan.emails, &r.email);
            if let Some(w) = &r.webhook {
                push_new(&mut plan.webhooks, std::slice::from_ref(w));
            }
            if let Some(text) = &r.reply {
                plan.replies.push(AutoReply {
                    body: text.clone(),
                    owner: r.users.first().cloned(),
                });
            }
        }
        let word = first.to_uppercase();
        if self.opt_out.contains(&word) {
            plan.opt = Some(OptChange::Out);
        } else if self.opt_in.contains(&word) {
            plan.opt = Some(OptChange::In);
        }
        plan
    }
}

fn push_new(into: &mut Vec<String>, from: &[String]) {
    for v in from {
        if !into.contains(v) {
            into.push(v.clone());
        }
    }
}

/// The first word of a text, without surrounding punctuation ("Stop." is STOP).
pub fn first_word(body: &str) -> &str {
    body.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric())
}

/// Whether `s` matches `pattern` with `*` (any run) and `?` (one character). Numbers are
/// compared without their leading `+`, so `+1555*` matches `15551234` as a device gave it.
pub fn number_glob(pattern: &str, s: &str) -> bool {
    let p = pattern.strip_prefix('+').unwrap_or(pattern);
    let s = s.strip_prefix('+').unwrap_or(s);
    glob(p.as_bytes(), s.as_bytes())
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard match with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&s[si])) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The longest inbound party kept, in characters (SMPP's `source_addr` holds 20; the rest of
/// a longer one is not an address).
pub const MAX_PARTY_CHARS: usize = 64;

/// An inbound party (sender or recipient) as stored and shown: numbers as E.164 with `+`
/// (docs/api.md), so a reply can be matched with the messages sent to that number; anything
/// else (an alphanumeric sender id, a short code) as received, less its control characters
/// (a line break in a sender id would end up in an e-mail header) and cut to
/// [`MAX_PARTY_CHARS`].
pub fn normalize_party(raw: &str, country: Option<Country>) -> String {
    let clean = crate::address::without_controls(raw, MAX_PARTY_CHARS);
    let t = clean.trim();
    // Written-out numbers ("+1 (555) 000-1111") lose their punctuation first.
    let compact: String = t
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    // Short codes (up to 6 digits) are kept as they are: they are not E.164 numbers.
    if digits.len() > 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
        let input = if compact.starts_with('+') || country.is_none() {
            format!("+{digits}")
        } else {
            digits.to_string()
        };
        if let Ok(n) = E164::parse(&input, country) {
            return n.as_str().to_string();
        }
        if let Ok(n) = E164::parse(&format!("+{digits}"), None) {
            return n.as_str().to_string();
        }
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(f: impl FnOnce(&mut InboundRuleConfig)) -> InboundRuleConfig {
        let mut r = InboundRuleConfig {
            users: vec!["alice".into()],
            ..Default::default()
        };
        f(&mut r);
        r
    }

    fn rules(rs: Vec<InboundRuleConfig>) -> InboundRules {
        InboundRules::new(&rs, &InboundConfig::default())
    }

    #[test]
    fn every_matching_rule_applies() {
        let r = rules(vec![
            rule(|r| r.keyword = Some("help".into())),
            rule(|r| {
                r.to = Some("+15550001".into());
                r.users = vec!["bob".into(), "alice".into()];
                r.webhook = Some("http://x/h".into());
            }),
            rule(|r| r.from = Some("+44*".into())),
        ]);
        let p = r.plan("d", "+15557654321", "15550001", "Help! me");
        assert!(p.matched);
        assert_eq!(p.users, vec!["alice", "bob"]);
        assert_eq!(p.webhooks, vec!["http://x/h"]);
        let p = r.plan("d", "+447700900123", "+15550002", "hello");
        assert_eq!(p.users, vec!["alice"]);
        let p = r.plan("d", "+15557654321", "+15550002", "helpless");
        assert!(!p.matched);
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn device_condition_and_reply_owner() {
        let r = rules(vec![rule(|r| {
            r.device = Some("smsc1".into());
            r.reply = Some("Thanks".into());
        })]);
        assert!(!r.plan("lb", "+1", "+2", "x").matched);
        let p = r.plan("smsc1", "+1", "+2", "x");
        assert_eq!(
            p.replies,
            vec![AutoReply {
                body: "Thanks".into(),
                owner: Some("alice".into())
            }]
        );
    }

    #[test]
    fn opt_out_and_in_keywords() {
        let r = rules(vec![]);
        assert_eq!(r.plan("d", "+1", "+2", "stop").opt, Some(OptChange::Out));
        assert_eq!(
            r.plan("d", "+1", "+2", " Stop. please").opt,
            Some(OptChange::Out)
        );
        assert_eq!(
            r.plan("d", "+1", "+2", "UNSUBSCRIBE").opt,
            Some(OptChange::Out)
        );
        assert_eq!(r.plan("d", "+1", "+2", "start").opt, Some(OptChange::In));
        assert_eq!(r.plan("d", "+1", "+2", "stopping by later").opt, None);
        assert_eq!(r.plan("d", "+1", "+2", "").opt, None);
    }

    #[test]
    fn globs() {
        assert!(number_glob("+1555*", "15551234"));
        assert!(number_glob("1555*", "+15551234"));
        assert!(number_glob("*", "ACME"));
        assert!(number_glob("+1555?234", "+15551234"));
        assert!(!number_glob("+1555?234", "+155512345"));
        assert!(number_glob("*34*", "+15551234"));
        assert!(!number_glob("+44*", "+15551234"));
        assert!(number_glob("acme", "ACME"));
        assert!(number_glob("a*b*c", "axxbyyc"));
        assert!(!number_glob("a*b*c", "axxbyy"));
    }

    #[test]
    fn parties_are_normalised() {
        let us: Option<Country> = "US".parse().ok();
        assert_eq!(normalize_party("+15551234567", None), "+15551234567");
        assert_eq!(normalize_party("15551234567", None), "+15551234567");
        assert_eq!(normalize_party("5551234567", us), "+15551234567");
        assert_eq!(normalize_party("ACME", us), "ACME");
        assert_eq!(normalize_party("72345", us), "72345");
        assert_eq!(normalize_party("+1 (555) 000-1111", us), "+15550001111");
        assert_eq!(normalize_party("Mr. Smith", us), "Mr. Smith");
        assert_eq!(normalize_party("Evil\r\nBcc: x@y\0", us), "EvilBcc: x@y");
        assert_eq!(normalize_party("\u{1b}[31mRED\u{85}", us), "[31mRED");
        assert_eq!(normalize_party(&"A".repeat(500), us).len(), MAX_PARTY_CHARS);
    }
}
