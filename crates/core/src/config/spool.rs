//! `[spool]`: the watched folder for CSV jobs.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Dur};

/// `[spool]`: a watched folder whose CSV files become jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Holds `incoming/`, `processing/`, `done/` and `failed/`.
    pub dir: String,
    /// The jobs' owner (a user name).
    pub user: String,
    /// The text for files without a sidecar that sets one (else their `body` column).
    pub template: Option<String>,
    /// The sender for files without a sidecar that sets one.
    pub from: Option<String>,
    /// How often `incoming/` is looked at.
    #[serde(default = "default_spool_poll")]
    pub poll_interval: Dur,
    /// A file is taken once its size and time have not changed for this long.
    #[serde(default = "default_spool_settle")]
    pub settle: Dur,
}

fn default_spool_poll() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_spool_settle() -> Dur {
    Dur(Duration::from_secs(2))
}

impl SpoolConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.dir.trim().is_empty() {
            return Err(ConfigError::new("spool.dir", "must name a folder"));
        }
        if self.user.trim().is_empty() {
            return Err(ConfigError::new(
                "spool.user",
                "must name the user who owns the folder's jobs",
            ));
        }
        if self.poll_interval.0 < Duration::from_millis(10) {
            return Err(ConfigError::new(
                "spool.poll_interval",
                "must be at least 10ms",
            ));
        }
        if let Some(t) = &self.template {
            if t.matches("{{").count() != t.matches("}}").count() {
                return Err(ConfigError::new(
                    "spool.template",
                    "has a \"{{\" without its \"}}\" (or the other way round)",
                ));
            }
        }
        Ok(())
    }
}
