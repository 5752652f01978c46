//! `[retention]`: how long message texts and other records are kept.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Dur};

/// `[retention]`: how long what is kept. Message bodies are personal data: a key that is set
/// has what is older deleted (or, with `strip_bodies`, its text emptied) in small batches.
/// A key that is absent keeps everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Outbound messages that reached a final status, by when they were accepted.
    pub messages: Option<Dur>,
    /// Inbound texts, by when they were received.
    pub inbound: Option<Dur>,
    /// Webhook and e-mail deliveries that are done (delivered or dead letters).
    pub deliveries: Option<Dur>,
    /// Files in the watched folder's `done/` and `failed/` (and their reports).
    pub job_files: Option<Dur>,
    /// Keep old messages and inbound texts, with their text emptied, instead of deleting
    /// them (their numbers, statuses and times stay for statistics).
    pub strip_bodies: bool,
    /// How often a pass runs.
    pub interval: Dur,
    /// Rows per transaction: small, so that sending is never held up for long.
    pub batch: usize,
}

impl Default for RetentionConfig {
    fn default() -> RetentionConfig {
        RetentionConfig {
            messages: None,
            inbound: None,
            deliveries: None,
            job_files: None,
            strip_bodies: false,
            interval: Dur(Duration::from_secs(600)),
            batch: 500,
        }
    }
}

impl RetentionConfig {
    /// Whether anything is to be removed at all.
    pub fn any(&self) -> bool {
        self.messages.is_some()
            || self.inbound.is_some()
            || self.deliveries.is_some()
            || self.job_files.is_some()
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.batch == 0 || self.batch > 10_000 {
            return Err(ConfigError::new(
                "retention.batch",
                "must be from 1 to 10000",
            ));
        }
        if self.interval.0 < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "retention.interval",
                "must be at least 100ms",
            ));
        }
        for (key, d) in [
            ("messages", self.messages),
            ("inbound", self.inbound),
            ("deliveries", self.deliveries),
            ("job_files", self.job_files),
        ] {
            if d.is_some_and(|d| d.0 < Duration::from_secs(1)) {
                return Err(ConfigError::new(
                    format!("retention.{key}"),
                    "must be at least 1s (write it like \"90d\")",
                ));
            }
        }
        Ok(())
    }
}
