//! `[auth]`: how failed sign-ins are limited.

use serde::Deserialize;

use super::{ConfigError, Dur};

/// `[auth]`: failed sign-ins counted per user name and per client address across
/// connections, and the passwords hashed at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Failures of one user name within `window` that lock the name out.
    pub max_failures_per_user: u32,
    /// Failures from one client address within `window` that lock the address out.
    pub max_failures_per_address: u32,
    /// The period failures are counted over.
    pub window: Dur,
    /// How long a lock-out lasts.
    pub lockout: Dur,
    /// Passwords checked at once (each argon2 check takes about 19 MiB and a core for tens
    /// of milliseconds); 0 = the number of CPU cores. More wait their turn.
    pub max_concurrent_hashes: usize,
    /// A web UI session unused this long ends.
    pub session_idle: Dur,
    /// A web UI session ends this long after sign-in, however much it is used.
    pub session_lifetime: Dur,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        let p = crate::signin::Policy::default();
        AuthConfig {
            max_failures_per_user: p.per_user,
            max_failures_per_address: p.per_address,
            window: Dur(p.window),
            lockout: Dur(p.lockout),
            max_concurrent_hashes: 0,
            session_idle: Dur(std::time::Duration::from_secs(30 * 60)),
            session_lifetime: Dur(std::time::Duration::from_secs(12 * 3600)),
        }
    }
}

impl AuthConfig {
    /// The limiter's policy.
    pub fn policy(&self) -> crate::signin::Policy {
        crate::signin::Policy {
            per_user: self.max_failures_per_user,
            per_address: self.max_failures_per_address,
            window: self.window.0,
            lockout: self.lockout.0,
        }
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.max_failures_per_user == 0 || self.max_failures_per_address == 0 {
            return Err(ConfigError::new(
                "auth.max_failures_per_user",
                "the failure limits must be at least 1",
            ));
        }
        if self.window.0.is_zero() {
            return Err(ConfigError::new("auth.window", "must be above zero"));
        }
        if self.session_idle.0 < std::time::Duration::from_secs(1) {
            return Err(ConfigError::new("auth.session_idle", "must be at least 1s"));
        }
        if self.session_lifetime.0 < self.session_idle.0 {
            return Err(ConfigError::new(
                "auth.session_lifetime",
                "must be at least auth.session_idle",
            ));
        }
        Ok(())
    }
}
