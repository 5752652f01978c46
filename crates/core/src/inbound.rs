//! Inbound rules (DESIGN.md §4 `[[inbound_rule]]`, `[inbound]`, `[webhooks]`): which users,
//! e-mail addresses and webhooks an incoming text goes to, automatic replies, and the
//! opt-out keywords. Pure: [`InboundRules::plan`] decides, and the store carries the plan out
//! in the same transaction that stores the text, so a text is never stored without its
//! routing or routed twice.

use std::time::Duration;

use serde::Deserialize;

use crate::address::{Country, E164};
use crate::config::{ConfigError, Dur};

/// One `[[inbound_rule]]`. Every condition given must hold; a rule with none matches every
/// text. Every matching rule applies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundRuleConfig {
    /// The number the text was sent to; `*` and `?` are wildcards.
    pub to: Option<String>,
    /// The first word of the text, case-insensitive.
    pub keyword: Option<String>,
    /// The sender; `*` and `?` are wildcards (`+4477*`).
    pub from: Option<String>,
    /// Only texts received by this device.
    pub device: Option<String>,
    /// Shown in these users' inboxes.
    #[serde(default)]
    pub users: Vec<String>,
    /// Forwarded to these addresses by e-mail.
    #[serde(default)]
    pub email: Vec<String>,
    /// POSTed here as a `message.inbound` event.
    pub webhook: Option<String>,
    /// Signs this rule's webhook instead of `[server] webhook_secret`.
    pub webhook_secret: Option<String>,
    /// Answered with this text, sent back to the sender from the number it wrote to.
    pub reply: Option<String>,
}

/// `[inbound]`: what happens to texts besides the rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundConfig {
    /// Users whose inboxes get texts that no rule matched and no conversation claims;
    /// empty = every admin.
    pub catch_all: Vec<String>,
    /// A reply from a number that a user texted within this window is shown to that user
    /// too; `0s` turns conversations off.
    pub conversation_window: Dur,
    /// First words that put the sender on the suppression list (case-insensitive).
    pub opt_out_keywords: Vec<String>,
    /// First words that take the sender off it again.
    pub opt_in_keywords: Vec<String>,
    /// Sent back after an opt-out; empty = no confirmation.
    pub opt_out_reply: String,
    /// Sent back after an opt-in; empty = no confirmation.
    pub opt_in_reply: String,
    /// A rule's automatic reply goes to the same number at most once in this interval, so
    /// two auto-responders cannot answer each other forever.
    pub reply_interval: Dur,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            catch_all: Vec::new(),
            conversation_window: Dur(Duration::from_secs(7 * 24 * 3600)),
            // The keywords US carriers (CTIA) and most SMSC operators honour.
            opt_out_keywords: ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
                .map(String::from)
                .to_vec(),
            opt_in_keywords: ["START", "UNSTOP"].map(String::from).to_vec(),
            opt_out_reply: "You are unsubscribed and will get no more texts from this number. Reply START to subscribe again.".into(),
            opt_in_reply: "You are subscribed again. Reply STOP to unsubscribe.".into(),
            reply_interval: Dur(Duration::from_secs(600)),
        }
    }
}

/// `[webhooks]`: how webhooks and status callbacks are delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// How long one POST may take.
    pub timeout: Dur,
    /// The first retry delay; doubles each attempt.
    pub backoff: Dur,
    /// The longest retry delay.
    pub backoff_max: Dur,
    /// A delivery is retried this long, then kept as a dead letter.
    pub retry_for: Dur,
    /// POSTs in flight at once.
    pub concurrency: usize,
    /// Status callbacks in flight at once for one user: a user whose receiver is slow
    /// waits for themselves, never holding up other users or the inbound rules' webhooks.
    pub per_owner_concurrency: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            timeout: Dur(Duration::from_secs(10)),
            backoff: Dur(Duration::from_secs(5)),
            backoff_max: Dur(Duration::from_secs(3600)),
            retry_for: Dur(Duration::from_secs(24 * 3600)),
            concurrency: 64,
            per_owner_concurrency: 8,
        }
    }
}

impl WebhooksConfig {
    /// The delay before attempt `attempts + 1`, doubling from `backoff`, capped, with ±20 %
    /// jitter so that an outage's backlog does not come back as one burst.
    pub fn retry_delay(&self, attempts: u32, jitter: f64) -> Duration {
        crate::config::backoff(self.backoff.0, self.backoff_max.0, attempts, jitter)
    }
}

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
    /// Checks the rules (`key` paths as `inbound_rule[N].field`) and readies them.
    pub fn new(
        rules: &[InboundRuleConfig],
        inbound: &InboundConfig,
    ) -> Result<InboundRules, ConfigError> {
        for (i, r) in rules.iter().enumerate() {
            let key = |f: &str| format!("inbound_rule[{i}].{f}");
            if let Some(k) = &r.keyword {
                if k.trim().is_empty() || k.split_whitespace().count() != 1 {
                    return Err(ConfigError::new(
                        key("keyword"),
                        format!("\"{k}\" is not one word: a keyword is matched against the first word of the text"),
                    ));
                }
            }
            if let Some(url) = &r.webhook {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::new(
                        key("webhook"),
                        format!("\"{url}\" is not an http:// or https:// URL"),
                    ));
                }
            }
            for a in &r.email {
                if !looks_like_email(a) {
                    return Err(ConfigError::new(
                        key("email"),
                        format!("\"{a}\" is not an e-mail address"),
                    ));
                }
            }
            if r.reply.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return Err(ConfigError::new(
                    key("reply"),
                    "is empty: give the text to answer with, or remove the key",
                ));
            }
            if r.webhook_secret.is_some() && r.webhook.is_none() {
                return Err(ConfigError::new(
                    key("webhook_secret"),
                    "is set but the rule has no webhook",
                ));
            }
            if r.users.is_empty() && r.email.is_empty() && r.webhook.is_none() && r.reply.is_none()
            {
                return Err(ConfigError::new(
                    format!("inbound_rule[{i}]"),
                    "has no action: give users, email, webhook or reply",
                ));
            }
        }
        let upper =
            |v: &[String]| -> Vec<String> { v.iter().map(|k| k.trim().to_uppercase()).collect() };
        Ok(InboundRules {
            rules: rules.to_vec(),
            opt_out: upper(&inbound.opt_out_keywords),
            opt_in: upper(&inbound.opt_in_keywords),
        })
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

fn looks_like_email(a: &str) -> bool {
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !a.contains(char::is_whitespace)
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}

/// The longest inbound party kept, in characters (SMPP's `source_addr` holds 20; the rest of
/// a longer one is not an address).
pub const MAX_PARTY_CHARS: usize = 64;

/// An inbound party (sender or recipient) as stored and shown: numbers as E.164 with `+`
/// (DESIGN.md §5), so a reply can be matched with the messages sent to that number; anything
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
        InboundRules::new(&rs, &InboundConfig::default()).unwrap()
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
    fn bad_rules_are_named() {
        let bad = |r: InboundRuleConfig| {
            InboundRules::new(&[r], &InboundConfig::default())
                .unwrap_err()
                .key
        };
        assert_eq!(
            bad(rule(|r| r.keyword = Some("two words".into()))),
            "inbound_rule[0].keyword"
        );
        assert_eq!(
            bad(rule(|r| r.webhook = Some("ftp://x".into()))),
            "inbound_rule[0].webhook"
        );
        assert_eq!(
            bad(rule(|r| r.email = vec!["nobody".into()])),
            "inbound_rule[0].email"
        );
        assert_eq!(
            bad(rule(|r| r.webhook_secret = Some("s".into()))),
            "inbound_rule[0].webhook_secret"
        );
        assert_eq!(bad(InboundRuleConfig::default()), "inbound_rule[0]");
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

    #[test]
    fn retry_delay_doubles_and_caps() {
        let w = WebhooksConfig {
            backoff: Dur(Duration::from_secs(1)),
            backoff_max: Dur(Duration::from_secs(5)),
            ..Default::default()
        };
        assert_eq!(w.retry_delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(w.retry_delay(2, 0.5), Duration::from_secs(2));
        assert_eq!(w.retry_delay(10, 0.5), Duration::from_secs(5));
    }
}
