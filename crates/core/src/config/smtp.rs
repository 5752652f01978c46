//! `[smtp]`: the e-mail to SMS gateway.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{Bytes, ConfigError, Dur};

/// `[smtp]`: the e-mail to SMS gateway (docs/email.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Where the SMTP listener listens.
    pub listen: String,
    /// Mail to `DIGITS@domain` for these domains is one text to that number.
    pub domains: Vec<String>,
    /// Mail to these addresses is one text to each number in the Subject.
    pub addresses: Vec<String>,
    /// Envelope senders that may send without SMTP AUTH (`*@example.com`, `ops@example.com`).
    pub allowed_senders: Vec<String>,
    /// The largest e-mail taken (advertised as SIZE, RFC 1870).
    pub max_message_bytes: Bytes,
    /// Recipients (texts) one e-mail may have.
    pub max_recipients: usize,
    /// Connections served at once; more are answered 421 and closed.
    pub max_connections: usize,
    /// PEM certificate chain for STARTTLS; STARTTLS is offered only with `tls_key`.
    pub tls_cert: Option<String>,
    /// PEM private key for STARTTLS.
    pub tls_key: Option<String>,
    /// The user who owns texts from an allowed sender whose address is no user's `email`;
    /// without it such mail is refused.
    pub user: Option<String>,
    /// Cut a text that needs more than `[server] max_parts` parts instead of refusing it.
    pub truncate: bool,
    /// How long a client has for each command line, counted from the reply to the one
    /// before (RFC 5321 §4.5.3.2.7 suggests 5m): sending it a byte at a time does not help.
    pub command_timeout: Dur,
    /// How long a client has for a whole message, from the 354 reply to the final dot.
    pub data_timeout: Dur,
    /// How long one connection may last, however busy.
    pub session_timeout: Dur,
    /// Connections one client address may have open at once; more are answered 421.
    /// Addresses in `trusted_networks` are held only by `max_connections`.
    pub max_connections_per_client: usize,
    /// Client networks whose mail from `allowed_senders` is taken without AUTH (the company
    /// mail server that relays to textgate); from anywhere else, AUTH is required.
    pub trusted_networks: Vec<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: "127.0.0.1:2525".into(),
            domains: Vec::new(),
            addresses: Vec::new(),
            allowed_senders: Vec::new(),
            max_message_bytes: Bytes(10 << 20),
            max_recipients: 100,
            max_connections: 1000,
            tls_cert: None,
            tls_key: None,
            user: None,
            truncate: false,
            command_timeout: Dur(Duration::from_secs(300)),
            data_timeout: Dur(Duration::from_secs(600)),
            session_timeout: Dur(Duration::from_secs(3600)),
            max_connections_per_client: 20,
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

impl SmtpConfig {
    /// What the embedded defaults run: mail to `NUMBER@sms.localhost` on 127.0.0.1:2525, from
    /// authenticated senders only (AUTH is offered there because the address is loopback).
    pub fn embedded() -> SmtpConfig {
        SmtpConfig {
            domains: vec!["sms.localhost".into()],
            ..SmtpConfig::default()
        }
    }

    /// Checks every key; `[server]` is not consulted.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_addresses()?;
        self.check_limits()?;
        self.check_tls_and_user()
    }

    /// The listener's address, and the mail addresses the gateway takes and accepts from.
    fn check_addresses(&self) -> Result<(), ConfigError> {
        self.listen.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                "smtp.listen",
                format!(
                    "\"{}\" is not an address: write it like \"127.0.0.1:2525\"",
                    self.listen
                ),
            )
        })?;
        if self.domains.is_empty() && self.addresses.is_empty() {
            return Err(ConfigError::new(
                "smtp.domains",
                "neither domains nor addresses is set, so no mail could be taken: add a domain (mail to 15551234567@DOMAIN) or an address (numbers in the Subject)",
            ));
        }
        for (i, d) in self.domains.iter().enumerate() {
            if !is_domain(d) {
                return Err(ConfigError::new(
                    format!("smtp.domains[{i}]"),
                    format!("\"{d}\" is not a domain name: write it like \"sms.example.com\""),
                ));
            }
        }
        for (i, a) in self.addresses.iter().enumerate() {
            let ok = a
                .rsplit_once('@')
                .is_some_and(|(local, domain)| is_local_part(local) && is_domain(domain));
            if !ok {
                return Err(ConfigError::new(
                    format!("smtp.addresses[{i}]"),
                    format!(
                        "\"{a}\" is not an e-mail address: write it like \"textmsg@example.com\""
                    ),
                ));
            }
        }
        for (i, p) in self.allowed_senders.iter().enumerate() {
            let ok = p.rsplit_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.is_empty()
                    && !p
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || "<>,;".contains(c))
            });
            if !ok {
                return Err(ConfigError::new(
                    format!("smtp.allowed_senders[{i}]"),
                    format!("\"{p}\" is not a sender pattern: write an address, where * stands for any text, like \"*@example.com\" or \"alerts@example.com\""),
                ));
            }
        }
        Ok(())
    }

    /// Sizes, counts, trusted networks and deadlines.
    fn check_limits(&self) -> Result<(), ConfigError> {
        if self.max_message_bytes.0 < 1024 {
            return Err(ConfigError::new(
                "smtp.max_message_bytes",
                "must be at least 1KiB",
            ));
        }
        crate::net::parse_cidrs(&self.trusted_networks)
            .map_err(|e| ConfigError::new("smtp.trusted_networks", e))?;
        if self.max_connections_per_client == 0 {
            return Err(ConfigError::new(
                "smtp.max_connections_per_client",
                "must be at least 1",
            ));
        }
        if self.max_recipients == 0 {
            return Err(ConfigError::new(
                "smtp.max_recipients",
                "must be at least 1",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new(
                "smtp.max_connections",
                "must be at least 1",
            ));
        }
        for (key, d) in [
            ("command_timeout", self.command_timeout),
            ("data_timeout", self.data_timeout),
            ("session_timeout", self.session_timeout),
        ] {
            if d.0 < Duration::from_secs(1) {
                return Err(ConfigError::new(
                    format!("smtp.{key}"),
                    "must be at least 1s",
                ));
            }
        }
        Ok(())
    }

    /// STARTTLS's certificate and key, and the user who owns mail from senders who are no user.
    fn check_tls_and_user(&self) -> Result<(), ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "smtp.tls_key",
                    "is missing: STARTTLS needs both tls_cert and tls_key",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "smtp.tls_cert",
                    "is missing: STARTTLS needs both tls_cert and tls_key",
                ))
            }
            _ => {}
        }
        for (key, file) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            if let Some(f) = file {
                if !std::path::Path::new(f).is_file() {
                    return Err(ConfigError::new(
                        format!("smtp.{key}"),
                        format!("\"{f}\" is not a readable file"),
                    ));
                }
            }
        }
        if self.user.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new(
                "smtp.user",
                "is empty: give a user's name, or remove the key",
            ));
        }
        Ok(())
    }
}

/// A DNS name of letters, digits and hyphens in dot-separated labels (RFC 1035 §2.3.1).
fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A dot-atom local part (RFC 5322 §3.2.3); quoted local parts are not worth supporting here.
fn is_local_part(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 64
        && !l.starts_with('.')
        && !l.ends_with('.')
        && !l.contains("..")
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
}
