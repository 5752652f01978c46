//! `[mailer]`: texts to e-mail through a relay.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Dur, WebhooksConfig};

/// `[mailer]`: texts to e-mail (inbound rules' `email`, replies to texts that came from
/// e-mail, failure notices) through the company's relay.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailerConfig {
    /// `smtp://host:port` (STARTTLS when the relay offers it), `smtp+starttls://host:port`
    /// (STARTTLS required) or `smtps://host:port` (TLS from the first byte).
    pub relay: String,
    /// The envelope sender of every e-mail, and the sender of notices.
    pub from: String,
    /// SMTP AUTH user at the relay.
    pub username: Option<String>,
    /// SMTP AUTH password (`TEXTGATE_MAILER_PASSWORD` overrides it).
    pub password: Option<String>,
    /// How long one e-mail may take.
    #[serde(default = "mailer_timeout")]
    pub timeout: Dur,
    /// Tell the sender of an e-mail when a text made from it finally fails.
    #[serde(default = "super::devices::yes")]
    pub failure_notices: bool,
    /// The first retry delay while the relay refuses or is down; doubles each attempt.
    #[serde(default = "mailer_backoff")]
    pub backoff: Dur,
    /// The longest retry delay.
    #[serde(default = "mailer_backoff_max")]
    pub backoff_max: Dur,
    /// An e-mail is retried this long, then kept as a dead letter.
    #[serde(default = "mailer_retry_for")]
    pub retry_for: Dur,
    /// E-mails in flight at once.
    #[serde(default = "mailer_concurrency")]
    pub concurrency: usize,
}

fn mailer_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn mailer_backoff() -> Dur {
    Dur(Duration::from_secs(10))
}
fn mailer_backoff_max() -> Dur {
    Dur(Duration::from_secs(1800))
}
fn mailer_retry_for() -> Dur {
    Dur(Duration::from_secs(3 * 24 * 3600))
}
fn mailer_concurrency() -> usize {
    8
}

/// How the mailer reaches its relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// STARTTLS when offered, plain otherwise (`smtp://`).
    Opportunistic,
    /// STARTTLS or fail (`smtp+starttls://`).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Wrapper,
}

impl MailerConfig {
    /// The relay's TLS mode, host and port.
    pub fn relay_parts(&self) -> Result<(RelayTls, String, u16), ConfigError> {
        let bad = || {
            ConfigError::new(
                "mailer.relay",
                format!(
                    "\"{}\" is not a relay URL: write it like \"smtp://mail.example.com:25\", \"smtp+starttls://mail.example.com:587\" or \"smtps://mail.example.com:465\"",
                    self.relay
                ),
            )
        };
        let (scheme, rest) = self.relay.split_once("://").ok_or_else(bad)?;
        let (tls, default_port) = match scheme {
            "smtp" => (RelayTls::Opportunistic, 25),
            "smtp+starttls" => (RelayTls::StartTls, 587),
            "smtps" => (RelayTls::Wrapper, 465),
            _ => return Err(bad()),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (rest, default_port),
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(bad());
        }
        Ok((tls, host.to_string(), port))
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        self.relay_parts()?;
        let f = &self.from;
        if !f.contains('@')
            || f.contains(char::is_whitespace)
            || f.starts_with('@')
            || f.ends_with('@')
        {
            return Err(ConfigError::new(
                "mailer.from",
                format!("\"{f}\" is not an e-mail address"),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(ConfigError::new(
                "mailer.password",
                "username and password go together: give both (the password may come from TEXTGATE_MAILER_PASSWORD) or neither",
            ));
        }
        // smtp:// uses STARTTLS only when the relay offers it, and anyone on the path can
        // strip the offer: the password would then go in the clear.
        if self.username.is_some() && self.relay_parts()?.0 == RelayTls::Opportunistic {
            return Err(ConfigError::new(
                "mailer.relay",
                "a username and password are set, but smtp:// does not require TLS, so they could be sent in the clear: use smtp+starttls:// (port 587) or smtps:// (port 465)",
            ));
        }
        if self.concurrency == 0 {
            return Err(ConfigError::new("mailer.concurrency", "must be at least 1"));
        }
        if self.timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError::new("mailer.timeout", "must be at least 1s"));
        }
        if self.backoff.0.is_zero() || self.backoff.0 > self.backoff_max.0 {
            return Err(ConfigError::new(
                "mailer.backoff",
                "must be above zero and no more than backoff_max",
            ));
        }
        Ok(())
    }

    /// The retry settings in the form the delivery loop takes.
    pub fn delivery_policy(&self) -> WebhooksConfig {
        WebhooksConfig {
            timeout: self.timeout,
            backoff: self.backoff,
            backoff_max: self.backoff_max,
            retry_for: self.retry_for,
            concurrency: self.concurrency,
            // Failure notices go to each user's own address: one relay serves all of them.
            per_owner_concurrency: self.concurrency,
        }
    }
}
