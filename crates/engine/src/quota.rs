//! Quotas: how many texts a user may send per UTC day, per UTC month and per second
//! (docs/operations.md#quotas). The day's and month's counts are kept in the store, counted
//! as texts are accepted, so every node sees the same; the rate is a token bucket on each
//! node. Administrators have no limits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use textgate_core::clock::{format_rfc3339, Millis};
use textgate_core::config::quotas::MAX_QUOTA;
use textgate_core::config::QuotasConfig;
use textgate_store::{Id, Quota, Role, Store};

/// A user's limits, resolved: `None` = none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Texts per UTC day.
    pub daily: Option<i64>,
    /// Texts per UTC month.
    pub monthly: Option<i64>,
    /// Texts per second (on each node).
    pub rate: Option<i64>,
}

impl Limits {
    /// Whether texts are counted in the store: only against a day's or a month's limit.
    pub fn counted(&self) -> bool {
        self.daily.is_some() || self.monthly.is_some()
    }
}

/// Why texts were refused, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `day`, `month` or `second`.
    pub period: &'static str,
    /// The limit.
    pub limit: i64,
    /// Texts counted in the period already.
    pub used: i64,
    /// When the period ends (ms since the epoch).
    pub resets_at: Millis,
    /// What was asked for.
    pub asked: i64,
}

impl Refused {
    /// Seconds until it makes sense to try again (at least 1).
    pub fn retry_after(&self, now: Millis) -> u64 {
        (((self.resets_at - now).max(0) + 999) / 1000).max(1) as u64
    }

    /// What a person reads: which limit, how much of it is used, when it resets.
    pub fn message(&self) -> String {
        match self.period {
            "second" => format!(
                "the limit of {} texts a second is reached: send more slowly, or ask an administrator for a higher limit",
                self.limit
            ),
            p => format!(
                "the {} limit of {} texts is reached ({} used, {} more asked for); it resets at {}: ask an administrator for a higher limit",
                if p == "day" { "daily" } else { "monthly" },
                self.limit,
                self.used,
                self.asked,
                format_rfc3339(self.resets_at)
            ),
        }
    }
}

/// A user's limits and what they have used of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Their limits (`None`: an administrator, who has none).
    pub limits: Option<Limits>,
    /// Texts counted today (UTC).
    pub today: i64,
    /// Texts counted this month (UTC).
    pub this_month: i64,
}

impl Usage {
    /// As a person reads it: `12 of 1000 today, 40 this month, at most 5 a second`.
    pub fn describe(&self) -> String {
        let Some(l) = &self.limits else {
            return "no limits (administrator)".to_string();
        };
        if !l.counted() {
            return match l.rate {
                Some(r) => format!("no daily or monthly limit; at most {r} a second"),
                None => "no limits".to_string(),
            };
        }
        let of = |used: i64, limit: Option<i64>, when: &str| match limit {
            Some(l) => format!("{used} of {l} {when}"),
            None => format!("{used} {when} (no limit)"),
        };
        let mut s = format!(
            "{}, {}",
            of(self.today, l.daily, "today"),
            of(self.this_month, l.monthly, "this month")
        );
        if let Some(r) = l.rate {
            s += &format!(", at most {r} a second");
        }
        s
    }
}

/// A limit typed in a form: empty is `None` (the default), else a whole number from 0 (no
/// limit) to [`MAX_QUOTA`].
pub fn parse_limit(what: &str, s: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(v) if (0..=MAX_QUOTA as i64).contains(&v) => Ok(Some(v)),
        _ => Err(format!(
            "{what}: \"{s}\" is not a number from 0 (no limit) to {MAX_QUOTA}; leave it empty for the default"
        )),
    }
}

/// A user's token bucket: tokens and when it was last filled.
type Bucket = (f64, Instant);

/// The `[quotas]` defaults and this node's rate buckets.
pub struct Quotas {
    defaults: QuotasConfig,
    buckets: Mutex<HashMap<Id, Bucket>>,
}

/// A limit as configured (`0`: none) as a limit (`None`: none).
fn limit(own: Option<i64>, default: u64) -> Option<i64> {
    match own {
        Some(v) => Some(v),
        None => Some(default as i64),
    }
    .filter(|v| *v > 0)
}

impl Quotas {
    /// The defaults of `[quotas]`.
    pub fn new(defaults: QuotasConfig) -> Quotas {
        Quotas {
            defaults,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A user's limits: their own where they have them, else the defaults; `None` for
    /// administrators, who have none.
    pub fn limits(&self, role: Role, own: Quota) -> Option<Limits> {
        if role == Role::Admin {
            return None;
        }
        let d = &self.defaults;
        Some(Limits {
            daily: limit(own.daily, d.texts_per_day),
            monthly: limit(own.monthly, d.texts_per_month),
            rate: limit(own.rate, d.texts_per_second),
        })
    }

    /// A user's limits and what they have used of them.
    pub async fn usage(
        &self,
        store: &Store,
        user: &textgate_store::User,
        now: Millis,
    ) -> textgate_store::Result<Usage> {
        let (today, this_month) = store.quota_used(user.id, now).await?;
        Ok(Usage {
            limits: self.limits(user.role, user.quota),
            today,
            this_month,
        })
    }

    /// Counts `n` texts for a user against `limits` (all of them: the rate unless `paced`,
    /// which bulk jobs are by their own `rate`), or says which limit they would pass.
    /// Texts counted are given back with [`Quotas::give_back`] if they are not stored.
    pub async fn take(
        &self,
        store: &Store,
        user: Id,
        limits: &Limits,
        n: usize,
        now: Millis,
        paced: bool,
    ) -> textgate_store::Result<Result<(), Refused>> {
        let n = n as i64;
        if let (Some(rate), false) = (limits.rate, paced) {
            if let Err(wait) = self.take_tokens(user, rate, n) {
                return Ok(Err(Refused {
                    period: "second",
                    limit: rate,
                    used: rate,
                    resets_at: now + wait.as_millis() as Millis,
                    asked: n,
                }));
            }
        }
        // Without a day's or month's limit nothing is counted: the common user costs no
        // write (bench/run measured one at 7 µs a message).
        if !limits.counted() {
            return Ok(Ok(()));
        }
        let refused = store
            .take_quota(user, n, limits.daily, limits.monthly, now)
            .await?;
        let Some((which, used)) = refused else {
            return Ok(Ok(()));
        };
        if let (Some(rate), false) = (limits.rate, paced) {
            self.give_tokens(user, rate, n);
        }
        let (period, limit) = match which {
            0 => ("day", limits.daily),
            _ => ("month", limits.monthly),
        };
        Ok(Err(Refused {
            period,
            limit: limit.unwrap_or(0),
            used,
            resets_at: period_end(period, now),
            asked: n,
        }))
    }

    /// Gives back texts counted by [`Quotas::take`] at `now` that were not stored.
    pub async fn give_back(&self, store: &Store, user: Id, limits: &Limits, n: usize, now: Millis) {
        if let Some(rate) = limits.rate {
            self.give_tokens(user, rate, n as i64);
        }
        if !limits.counted() {
            return;
        }
        if let Err(e) = store.give_quota(user, n as i64, now).await {
            tracing::warn!(error = %e, user, "cannot give back quota; the user's count stays higher until the period ends");
        }
    }

    /// Takes `n` tokens from a bucket that holds a second's worth and fills at `rate` a
    /// second. A request larger than the bucket is let through when the bucket is full and
    /// leaves it in debt, so big requests are paced on average rather than never allowed.
    fn take_tokens(&self, user: Id, rate: i64, n: i64) -> Result<(), Duration> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let rate = rate as f64;
        let (tokens, at) = buckets.entry(user).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(rate);
        *at = now;
        let need = (n as f64).min(rate);
        if *tokens >= need {
            *tokens -= n as f64;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((need - *tokens) / rate))
        }
    }

    fn give_tokens(&self, user: Id, rate: i64, n: i64) {
        if let Ok(mut buckets) = self.buckets.lock() {
            if let Some((tokens, _)) = buckets.get_mut(&user) {
                *tokens = (*tokens + n as f64).min(rate as f64);
            }
        }
    }
}

/// When the UTC day or month of `now` ends.
fn period_end(period: &str, now: Millis) -> Millis {
    const DAY: Millis = 86_400_000;
    let next_day = (now.div_euclid(DAY) + 1) * DAY;
    if period == "day" {
        return next_day;
    }
    // The first day of the next month: step a day at a time from the day after now's.
    let month_of = |t: Millis| format_rfc3339(t)[..7].to_string();
    let this = month_of(now);
    let mut t = next_day;
    while month_of(t) == this {
        t += DAY;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_end_at_midnight_utc_and_the_first_of_the_month() {
        let now = 1_765_000_000_000; // 2025-12-06T05:46:40Z
        assert_eq!(
            format_rfc3339(period_end("day", now)),
            "2025-12-07T00:00:00Z"
        );
        assert_eq!(
            format_rfc3339(period_end("month", now)),
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn own_limits_win_zero_is_none_and_administrators_have_none() {
        let q = Quotas::new(QuotasConfig {
            texts_per_day: 100,
            texts_per_month: 0,
            texts_per_second: 5,
        });
        let own = Quota {
            daily: None,
            monthly: Some(1000),
            rate: Some(0),
        };
        assert_eq!(
            q.limits(Role::User, own),
            Some(Limits {
                daily: Some(100),
                monthly: Some(1000),
                rate: None
            })
        );
        assert_eq!(q.limits(Role::Admin, own), None);
    }

    #[test]
    fn the_rate_bucket_holds_a_second_and_lets_large_requests_through_in_debt() {
        let q = Quotas::new(QuotasConfig::default());
        for _ in 0..5 {
            assert!(q.take_tokens(1, 5, 1).is_ok());
        }
        let wait = q.take_tokens(1, 5, 1).unwrap_err();
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        // A request of 50 with a full bucket of 5 goes through and leaves a debt.
        assert!(q.take_tokens(2, 5, 50).is_ok());
        assert!(q.take_tokens(2, 5, 1).unwrap_err() > Duration::from_secs(8));
    }
}
