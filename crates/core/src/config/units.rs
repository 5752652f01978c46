//! The value formats of the file: durations (`30s`, `5m`) and sizes (`1MiB`), and the one
//! backoff every retry uses.

use std::time::Duration;

use serde::Deserialize;

/// The delay before attempt `attempt + 1`: doubling from `first`, capped at `max`, with ±20 %
/// jitter (`jitter` from 0 to 1) so that a burst of failures does not come back as a burst.
/// Device retries and webhook and e-mail retries all back off this way.
pub fn backoff(first: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let base = first.saturating_mul(1u32 << exp).min(max);
    // What `Duration::mul_f64` computes, saturating where it would panic (a base near
    // `Duration::MAX` times up to 1.2: the configuration takes any duration).
    Duration::try_from_secs_f64(base.as_secs_f64() * (0.8 + jitter.clamp(0.0, 1.0) * 0.4))
        .unwrap_or(Duration::MAX)
}

/// The longest duration the file takes.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// A duration written like `30s`, `5m`, `1h 30m`, `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let d = humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "\"{s}\" is not a duration ({e}): write it like \"30s\", \"5m\" or \"250ms\""
            ))
        })?;
        // Times are milliseconds in an i64 (about 292 million years): no setting needs more
        // than a century, and a longer one would overflow where it is added to a time.
        if d > MAX_DURATION {
            return Err(serde::de::Error::custom(format!(
                "\"{s}\" is longer than 100 years: no setting needs more"
            )));
        }
        Ok(Dur(d))
    }
}

/// A size written like `1MiB`, `512KiB`, `10MB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl Bytes {
    /// Parses `1MiB`, `1 MiB`, `500kB`, `1024`.
    pub fn parse(s: &str) -> Result<Bytes, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("\"{s}\" is not a size: write it like \"1MiB\" or \"512KiB\""))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "\"{s}\": unknown size unit \"{other}\" (use B, KiB, MiB, GiB, kB, MB or GB)"
                ))
            }
        };
        Ok(Bytes((value * mult as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Bytes(n)),
            Raw::S(s) => Bytes::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}
