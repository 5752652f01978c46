//! `[[inbound_rule]]`, `[inbound]` and `[webhooks]`: where incoming texts go, and how
//! webhooks and status callbacks are delivered. The rules are matched by
//! [`crate::inbound::InboundRules`].

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Dur};

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

impl WebhooksConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (key, n) in [
            ("concurrency", self.concurrency),
            ("per_owner_concurrency", self.per_owner_concurrency),
        ] {
            if n == 0 {
                return Err(ConfigError::new(
                    format!("webhooks.{key}"),
                    "must be at least 1",
                ));
            }
        }
        if self.timeout.0 < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "webhooks.timeout",
                "must be at least 100ms",
            ));
        }
        if self.backoff.0.is_zero() || self.backoff.0 > self.backoff_max.0 {
            return Err(ConfigError::new(
                "webhooks.backoff",
                "must be above zero and no more than backoff_max",
            ));
        }
        Ok(())
    }
}

/// Checks every rule (`key` paths as `inbound_rule[N].field`); `devices` are the devices'
/// names.
pub(super) fn check_rules(
    rules: &[InboundRuleConfig],
    devices: &HashSet<&str>,
) -> Result<(), ConfigError> {
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
        if let Some(d) = &r.device {
            if !devices.contains(d.as_str()) {
                return Err(ConfigError::new(
                    key("device"),
                    format!("no device is named \"{d}\""),
                ));
            }
        }
        if r.users.is_empty() && r.email.is_empty() && r.webhook.is_none() && r.reply.is_none() {
            return Err(ConfigError::new(
                format!("inbound_rule[{i}]"),
                "has no action: give users, email, webhook or reply",
            ));
        }
    }
    Ok(())
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

    #[test]
    fn bad_rules_are_named() {
        let bad = |r: InboundRuleConfig| check_rules(&[r], &HashSet::new()).unwrap_err().key;
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
    fn a_rule_names_only_configured_devices() {
        let r = rule(|r| r.device = Some("modem9".into()));
        let e = check_rules(std::slice::from_ref(&r), &HashSet::new()).unwrap_err();
        assert_eq!(e.key, "inbound_rule[0].device");
        assert!(check_rules(&[r], &HashSet::from(["modem9"])).is_ok());
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
