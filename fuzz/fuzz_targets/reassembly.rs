//! The reassembler against a model of what its docs promise: fragments (few senders and
//! references, so that keys collide), time steps and expire calls in any order.
//!
//! Checked:
//! - nothing given is lost: every fragment not answered `Duplicate` comes back in exactly
//!   one `Assembled` (complete, evicted or expired; a final expire far in the future flushes
//!   what is left), at its part number, with the others of its set in part order;
//! - `missing` lists exactly the part numbers never received, ascending; `parts` counts the
//!   ones received;
//! - a part already pending is `Duplicate`; `Duplicate` for a part not pending only when the
//!   same key was handed out within the timeout with the same bytes at that part;
//! - at most `max_pending` sets are pending, holding exactly the bytes the model holds, never
//!   more than the byte budget; evictions hand back the oldest sets first; `expire` hands back
//!   only due sets, oldest first, and `next_deadline` is the earliest first-seen time plus
//!   the timeout.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use textgate_drivers::smpp::reassembly::{Assembled, Fragment, PartKey, Pushed, Reassembler};

#[derive(Debug, Arbitrary)]
enum Op {
    Push {
        from: u8,
        reference: u8,
        total: u8,
        seq: u8,
        data_coding: u8,
        payload: Vec<u8>,
    },
    /// Advance the clock by this many milliseconds.
    Wait(u16),
    Expire,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Timeout in milliseconds (at least 1).
    timeout: u16,
    max_pending: u8,
    /// The byte budget in units of 16 bytes, or none.
    budget: Option<u8>,
    ops: Vec<Op>,
}

/// A set pending in the model.
struct Set {
    first_seen: Instant,
    data_coding: u8,
    parts: Vec<Option<Vec<u8>>>,
}

struct Model {
    timeout: Duration,
    pending: HashMap<PartKey, Set>,
    /// The parts of the last set handed out under each key, and when.
    finished: HashMap<PartKey, (Instant, Vec<Option<Vec<u8>>>)>,
}

impl Model {
    /// Checks an `Assembled` for a set that was pending, and moves it to `finished`.
    fn take(&mut self, a: &Assembled, now: Instant) {
        let set = self
            .pending
            .remove(&a.key)
            .unwrap_or_else(|| panic!("an Assembled for a key that was not pending: {:?}", a.key));
        let expected: Vec<u8> = set.parts.iter().flatten().flatten().copied().collect();
        assert_eq!(
            a.payload, expected,
            "payload is the parts received, in part order"
        );
        let missing: Vec<u8> = set
            .parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_none())
            .map(|(i, _)| (i + 1) as u8)
            .collect();
        assert_eq!(a.missing, missing, "missing part numbers");
        let received = set.parts.iter().filter(|p| p.is_some()).count();
        assert_eq!(
            usize::from(a.parts),
            received,
            "parts counts the parts received"
        );
        assert_eq!(
            a.data_coding, set.data_coding,
            "data_coding of the first part"
        );
        assert_eq!(a.is_complete(), received == set.parts.len());
        self.finished.insert(a.key.clone(), (now, set.parts));
    }
}

fuzz_target!(|input: Input| {
    let timeout = Duration::from_millis(u64::from(input.timeout.max(1)));
    let max_pending = usize::from(input.max_pending % 8);
    let budget = input.budget.map(|b| usize::from(b).max(1) * 16);
    let mut r = Reassembler::new(timeout, max_pending);
    if let Some(b) = budget {
        r = r.with_byte_budget(b);
    }
    let start = Instant::now();
    let mut now = start;
    let mut model = Model {
        timeout,
        pending: HashMap::new(),
        finished: HashMap::new(),
    };
    let mut given = 0usize; // payload bytes not answered Duplicate
    let mut returned = 0usize; // payload bytes in every Assembled
    for op in input.ops {
        match op {
            Op::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
            Op::Expire => {
                let out = r.expire(now);
                let mut last = None;
                for a in &out {
                    let set = &model.pending[&a.key];
                    assert!(
                        now.saturating_duration_since(set.first_seen) >= model.timeout,
                        "expire handed back a set that was not due"
                    );
                    assert!(last <= Some(set.first_seen), "expire is oldest first");
                    last = Some(set.first_seen);
                    returned += a.payload.len();
                    model.take(a, now);
                }
                for set in model.pending.values() {
                    assert!(
                        now.saturating_duration_since(set.first_seen) < model.timeout,
                        "expire kept a set that was due"
                    );
                }
            }
            Op::Push {
                from,
                reference,
                total,
                seq,
                data_coding,
                payload,
            } => {
                let key = PartKey {
                    from: format!("+1555000{}", from % 3),
                    to: "12345".into(),
                    reference: u16::from(reference % 4),
                    total: total % 6,
                };
                let frag = Fragment {
                    key: key.clone(),
                    seq: seq % 7,
                    data_coding,
                    payload: payload.clone(),
                };
                let invalid = key.total == 0 || frag.seq == 0 || frag.seq > key.total;
                let index = usize::from(frag.seq).wrapping_sub(1);
                let out = r.push(frag, now);
                if invalid {
                    assert!(out.evicted.is_empty(), "an invalid part evicts nothing");
                    // Not a valid concatenation: a text of its own, at once.
                    match out.pushed {
                        Pushed::Complete(a) => {
                            assert_eq!(
                                (a.payload, a.parts, a.missing.len()),
                                (payload.clone(), 1, 0)
                            );
                        }
                        other => panic!("an invalid part gave {other:?}"),
                    }
                    given += payload.len();
                    returned += payload.len();
                    continue;
                }
                let held = model.pending.get(&key).map(|s| s.parts[index].is_some());
                if let Pushed::Duplicate = out.pushed {
                    assert!(out.evicted.is_empty(), "a duplicate evicts nothing");
                    match held {
                        Some(true) => {}
                        Some(false) => panic!("Duplicate for a part not yet received"),
                        None => {
                            let (at, parts) = model
                                .finished
                                .get(&key)
                                .expect("Duplicate for a key never handed out");
                            assert!(
                                now.saturating_duration_since(*at) < timeout,
                                "Duplicate after the timeout"
                            );
                            assert_eq!(
                                parts[index].as_deref(),
                                Some(&payload[..]),
                                "Duplicate with other bytes"
                            );
                        }
                    }
                    continue;
                }
                assert_ne!(held, Some(true), "a part already held was stored again");
                let new_set = held.is_none();
                if budget.is_none() && !out.evicted.is_empty() {
                    // Without a budget, only a new set evicts, and only when max_pending are
                    // pending.
                    assert!(new_set, "eviction only for a new set");
                    assert_eq!(out.evicted.len(), 1);
                    assert_eq!(
                        model.pending.len(),
                        max_pending.max(1),
                        "eviction only when full"
                    );
                }
                given += payload.len();
                let set = model.pending.entry(key.clone()).or_insert_with(|| Set {
                    first_seen: now,
                    data_coding,
                    parts: vec![None; usize::from(key.total)],
                });
                set.parts[index] = Some(payload);
                let complete = set.parts.iter().all(Option::is_some);
                for ev in &out.evicted {
                    let oldest = model.pending.values().map(|s| s.first_seen).min();
                    assert_eq!(
                        model.pending.get(&ev.key).map(|s| s.first_seen),
                        oldest,
                        "the oldest set is evicted"
                    );
                    returned += ev.payload.len();
                    model.take(ev, now);
                }
                match out.pushed {
                    Pushed::Complete(a) => {
                        assert!(complete, "Complete before every part came");
                        assert!(a.is_complete());
                        returned += a.payload.len();
                        model.take(&a, now);
                    }
                    Pushed::Incomplete => assert!(!complete, "Incomplete with every part there"),
                    Pushed::Duplicate => unreachable!(),
                }
            }
        }
        let held_bytes: usize = model
            .pending
            .values()
            .flat_map(|s| s.parts.iter().flatten())
            .map(Vec::len)
            .sum();
        assert_eq!(r.pending_bytes(), held_bytes, "bytes held");
        if let Some(b) = budget {
            assert!(r.pending_bytes() <= b, "more than the byte budget held");
        }
        assert_eq!(r.pending(), model.pending.len(), "pending count");
        assert!(
            r.pending() <= max_pending.max(1),
            "more than max_pending sets pending"
        );
        let earliest = model.pending.values().map(|s| s.first_seen).min();
        assert_eq!(
            r.next_deadline(),
            earliest.map(|t| t + timeout),
            "next_deadline"
        );
    }
    // Flush: everything still pending comes back.
    now += timeout;
    for a in r.expire(now) {
        returned += a.payload.len();
        model.take(&a, now);
    }
    assert!(model.pending.is_empty(), "sets never handed back");
    assert_eq!(r.pending(), 0);
    assert_eq!(given, returned, "bytes given and bytes handed back");
});
