//! A latency histogram with fixed buckets, for `/metrics` (the Prometheus text format's
//! `_bucket`, `_sum` and `_count`, in seconds).
//!
//! Observing is two relaxed atomic adds (the bucket, the sum) and no lock: the accept path
//! takes one per request, and sends about 30 µs a message in the benchmark. A scrape reads
//! the atomics one by one, so it may see a sample in its bucket and not yet in the sum; the
//! next scrape agrees again, which is all rates and quantiles need.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets for `POST /api/v1/messages`, from the request to its `202`: one commit of a
/// batched write (about 1 ms on SQLite) up to a store that has stopped answering.
pub const ACCEPT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for a device's answer to a submit: a loopback answers at once, an SMSC in
/// milliseconds, a GSM modem in seconds, and a port server's device may take a minute.
pub const SUBMIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets for a delivery receipt's delay after its submit: seconds on a good route, hours
/// for a phone that was off (a receipt comes at most within the message's validity).
pub const RECEIPT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// Samples counted into fixed buckets, with their sum.
pub struct Histogram {
    /// The upper bounds, in microseconds, ascending.
    bounds: Vec<u64>,
    /// The upper bounds as written in `le`, in seconds.
    seconds: &'static [f64],
    /// Samples per bucket, not cumulative; the last is above every bound (`+Inf`).
    counts: Vec<AtomicU64>,
    /// The sum of the samples, in microseconds (an integer, so that one add suffices).
    sum_us: AtomicU64,
}

/// A histogram as read for one scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `(le, samples ≤ le)`, cumulative, ending with `(f64::INFINITY, count)`.
    pub buckets: Vec<(f64, u64)>,
    /// Every sample.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// A histogram with these upper bounds, in seconds, ascending.
    pub fn new(seconds: &'static [f64]) -> Histogram {
        debug_assert!(seconds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds: seconds.iter().map(|s| (s * 1e6).round() as u64).collect(),
            seconds,
            counts: (0..=seconds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Counts one sample.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // A dozen bounds: a scan is as fast as a binary search, and simpler.
        let i = self
            .bounds
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Counts one sample given in milliseconds (the store's clock); a negative one (clocks
    /// of two nodes that disagree) counts as zero.
    pub fn observe_ms(&self, ms: i64) {
        self.observe(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    }

    /// The buckets, cumulative, the count and the sum.
    pub fn snapshot(&self) -> Snapshot {
        let mut buckets = Vec::with_capacity(self.counts.len());
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let le = self.seconds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((le, total));
        }
        Snapshot {
            buckets,
            count: total,
            sum: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_fall_in_the_first_bucket_that_holds_them_and_buckets_are_cumulative() {
        let h = Histogram::new(&[0.001, 0.01, 1.0]);
        h.observe(Duration::from_micros(1000)); // on a bound: in it (`le` is ≤)
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        h.observe_ms(-20);
        let s = h.snapshot();
        assert_eq!(
            s.buckets,
            vec![(0.001, 2), (0.01, 4), (1.0, 4), (f64::INFINITY, 5)]
        );
        assert_eq!(s.count, 5);
        assert!((s.sum - 3.011).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn the_bucket_sets_ascend() {
        for b in [ACCEPT_BUCKETS, SUBMIT_BUCKETS, RECEIPT_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
            let _ = Histogram::new(b);
        }
    }
}
