//! `[quotas]`: how many texts a user may send, by default (docs/configuration.md). An
//! administrator can give a user limits of their own; administrators have none.

use serde::Deserialize;

use super::ConfigError;

/// `[quotas]`: the limits of every user who has none of their own; 0 = no limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    /// Texts (one per recipient) accepted per UTC day.
    pub texts_per_day: u64,
    /// Texts accepted per UTC month.
    pub texts_per_month: u64,
    /// Texts accepted per second, on each node, through the API, the web UI and e-mail
    /// (bulk jobs are paced by their own `rate`).
    pub texts_per_second: u64,
}

/// The most any limit can be: far above what a gateway sends, low enough that sums of them
/// never overflow.
pub const MAX_QUOTA: u64 = 1_000_000_000_000;

impl QuotasConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("texts_per_day", self.texts_per_day),
            ("texts_per_month", self.texts_per_month),
            ("texts_per_second", self.texts_per_second),
        ] {
            if v > MAX_QUOTA {
                return Err(ConfigError::new(
                    format!("quotas.{key}"),
                    format!("at most {MAX_QUOTA} (0 = no limit)"),
                ));
            }
        }
        Ok(())
    }
}
