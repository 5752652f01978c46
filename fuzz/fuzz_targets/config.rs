//! The configuration file: `Config::parse` (TOML, then the environment, here none) and
//! `Config::check` on arbitrary UTF-8 text, and what the server derives from a checked
//! configuration (retry delays, device settings, relay parts, the default country).
#![no_main]

use libfuzzer_sys::fuzz_target;
use textgate_core::config::{backoff, Config};

/// Attempts the retry loops reach, and the ends of the jitter range.
const ATTEMPTS: [u32; 6] = [0, 1, 2, 20, 31, u32::MAX];
const JITTER: [f64; 2] = [0.0, 1.0];

fuzz_target!(|text: &str| {
    let Ok(cfg) = Config::parse(text, &|_| None) else {
        return;
    };
    if cfg.check().is_err() {
        return;
    }
    let _ = cfg.default_country();
    // The retry delays the checked settings give (device retries, webhooks, e-mail).
    let s = &cfg.server;
    for attempt in ATTEMPTS {
        for jitter in JITTER {
            let _ = backoff(s.retry_backoff.0, s.retry_backoff_max.0, attempt, jitter);
            let _ = cfg.webhooks.retry_delay(attempt, jitter);
            if let Some(m) = &cfg.mailer {
                let _ = m.delivery_policy().retry_delay(attempt, jitter);
            }
        }
    }
    for d in &cfg.devices {
        let _ = d.settings();
    }
    if let Some(m) = &cfg.mailer {
        let _ = m.relay_parts();
        let _ = m.delivery_policy();
    }
});
