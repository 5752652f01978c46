//! A small in-memory map of recent positive answers that expire after a while: verified API
//! keys, SMTP credentials, the users of e-mail senders. It lets hot paths (thousands of sends
//! a second) skip a database read or a deliberately slow password hash, at the price of a
//! change (a revoked key, a new password) taking up to the time to live to apply.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Answers by key, each kept for a time to live.
pub struct Recent<V> {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<String, (V, Instant)>>,
}

impl<V: Clone> Recent<V> {
    /// Entries live `ttl`; when `max_entries` are held, expired ones are dropped first.
    pub fn new(ttl: Duration, max_entries: usize) -> Recent<V> {
        Recent {
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `key`, if it is young enough.
    pub fn get(&self, key: &str) -> Option<V> {
        let map = self.entries.lock().ok()?;
        let (v, at) = map.get(key)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    /// Forgets every answer for which `keep` says no (a revoked key's, a changed user's).
    pub fn retain(&self, keep: impl Fn(&V) -> bool) {
        if let Ok(mut map) = self.entries.lock() {
            map.retain(|_, (v, _)| keep(v));
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.lock() {
            map.clear();
        }
    }

    /// Remembers an answer.
    pub fn put(&self, key: String, value: V) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= self.max_entries {
                let ttl = self.ttl;
                map.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            map.insert(key, (value, Instant::now()));
        }
    }
}

impl<V: Clone> Default for Recent<V> {
    /// A minute, and at most 10,000 entries before expired ones are swept.
    fn default() -> Recent<V> {
        Recent::new(Duration::from_secs(60), 10_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_sweep() {
        let c = Recent::new(Duration::from_millis(30), 2);
        c.put("a".into(), 1);
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.get("b"), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get("a"), None, "expired");
        c.put("b".into(), 2);
        c.put("c".into(), 3);
        // Full: the expired "a" is swept before "c" goes in.
        assert_eq!(c.entries.lock().unwrap().len(), 2);
        assert_eq!((c.get("b"), c.get("c")), (Some(2), Some(3)));
    }
}
