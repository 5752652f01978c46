//! Failed sign-ins counted across connections, per client address and per user name, with a
//! lock-out that expires (`[auth]`, docs/operations.md). Pure: the caller passes the time.
//!
//! A guesser who reconnects after every failure, or spreads guesses over many connections,
//! meets the same count; one who spreads them over many addresses still meets the count of
//! the name. A lock-out refuses further tries before any password is hashed, so it costs the
//! server nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Names and addresses tracked at most; past that, entries whose window has passed are
/// swept, and if none has, new ones are not tracked (the other map still counts).
const MAX_TRACKED: usize = 100_000;

/// How many failures lock what out, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures of one user name within `window` that lock the name out.
    pub per_user: u32,
    /// Failures from one address within `window` that lock the address out.
    pub per_address: u32,
    /// The period failures are counted over.
    pub window: Duration,
    /// How long a lock-out lasts.
    pub lockout: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            per_user: 10,
            per_address: 30,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

/// Why a sign-in is not even tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Until when, from now.
    pub retry_after: Duration,
}

/// The failure counts of one service (SMTP AUTH, the web sign-in).
#[derive(Debug, Default)]
pub struct Limiter {
    policy: Policy,
    by_address: Mutex<HashMap<IpAddr, Count>>,
    by_user: Mutex<HashMap<String, Count>>,
}

impl Limiter {
    /// A limiter with this policy.
    pub fn new(policy: Policy) -> Limiter {
        Limiter {
            policy,
            ..Limiter::default()
        }
    }

    /// `Err` while the address or the name is locked out.
    pub fn check(&self, addr: IpAddr, user: &str, now: Instant) -> Result<(), Locked> {
        let until = [
            locked(&self.by_address, &addr.to_canonical(), now),
            locked(&self.by_user, &key(user), now),
        ]
        .into_iter()
        .flatten()
        .max();
        match until {
            Some(t) => Err(Locked {
                retry_after: t.saturating_duration_since(now),
            }),
            None => Ok(()),
        }
    }

    /// Counts a failure of `user` from `addr`.
    pub fn failed(&self, addr: IpAddr, user: &str, now: Instant) {
        let p = self.policy;
        count(&self.by_address, addr.to_canonical(), p.per_address, p, now);
        count(&self.by_user, key(user), p.per_user, p, now);
    }

    /// A success clears the name's failures (the address keeps its own: one good password
    /// does not license guessing others).
    pub fn succeeded(&self, user: &str) {
        if let Ok(mut m) = self.by_user.lock() {
            m.remove(&key(user));
        }
    }
}

fn key(user: &str) -> String {
    user.trim().to_lowercase()
}

fn locked<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, Count>>,
    k: &K,
    now: Instant,
) -> Option<Instant> {
    let m = map.lock().ok()?;
    m.get(k)?.locked_until.filter(|t| *t > now)
}

fn count<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, Count>>,
    k: K,
    max: u32,
    p: Policy,
    now: Instant,
) {
    let Ok(mut m) = map.lock() else { return };
    if m.len() >= MAX_TRACKED && !m.contains_key(&k) {
        m.retain(|_, c| {
            now.duration_since(c.since) < p.window || c.locked_until.is_some_and(|t| t > now)
        });
        if m.len() >= MAX_TRACKED {
            return;
        }
    }
    let c = m.entry(k).or_insert(Count {
        failures: 0,
        since: now,
        locked_until: None,
    });
    if now.duration_since(c.since) >= p.window && c.locked_until.is_none_or(|t| t <= now) {
        *c = Count {
            failures: 0,
            since: now,
            locked_until: None,
        };
    }
    c.failures += 1;
    if c.failures >= max {
        c.locked_until = Some(now + p.lockout);
        // The count starts again when the lock-out ends.
        c.failures = 0;
        c.since = now + p.lockout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_name_is_locked_out_across_addresses_and_unlocked_later() {
        let l = Limiter::new(Policy {
            per_user: 3,
            per_address: 100,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
        });
        let t0 = Instant::now();
        for (i, a) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            assert!(l.check(ip(a), "Admin", t0).is_ok(), "try {i}");
            l.failed(ip(a), "admin", t0);
        }
        let e = l.check(ip("10.0.0.9"), "ADMIN ", t0).unwrap_err();
        assert_eq!(e.retry_after, Duration::from_secs(300));
        assert!(
            l.check(ip("10.0.0.9"), "bob", t0).is_ok(),
            "other names are not locked"
        );
        let later = t0 + Duration::from_secs(301);
        assert!(
            l.check(ip("10.0.0.9"), "admin", later).is_ok(),
            "the lock-out expires"
        );
    }

    #[test]
    fn an_address_is_locked_out_whatever_names_it_tries() {
        let l = Limiter::new(Policy {
            per_user: 100,
            per_address: 5,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        for i in 0..5 {
            l.failed(ip("::ffff:192.0.2.7"), &format!("user{i}"), t0);
        }
        assert!(
            l.check(ip("192.0.2.7"), "someone", t0).is_err(),
            "IPv4-mapped is the same"
        );
        assert!(l.check(ip("192.0.2.8"), "someone", t0).is_ok());
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten_and_success_clears_the_name() {
        let l = Limiter::new(Policy {
            per_user: 3,
            per_address: 100,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        l.failed(ip("10.0.0.1"), "a", t0);
        l.failed(ip("10.0.0.1"), "a", t0);
        let t1 = t0 + Duration::from_secs(61);
        l.failed(ip("10.0.0.1"), "a", t1);
        assert!(
            l.check(ip("10.0.0.1"), "a", t1).is_ok(),
            "the first two were too long ago"
        );
        l.failed(ip("10.0.0.1"), "a", t1);
        l.succeeded("a");
        l.failed(ip("10.0.0.1"), "a", t1);
        assert!(
            l.check(ip("10.0.0.1"), "a", t1).is_ok(),
            "a success starts the count again"
        );
    }
}
