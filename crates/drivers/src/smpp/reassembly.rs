//! Reassembly of concatenated inbound texts. The parts of one message carry the same
//! reference, the part count and their own number, either in a user data header
//! (3GPP TS 23.040 §9.2.3.24.1 with an 8-bit reference, §9.2.3.24.8 with a 16-bit one;
//! `esm_class` bit 6, UDHI, SMPP 3.4 §5.2.12) or in the SMPP TLVs `sar_msg_ref_num`,
//! `sar_total_segments` and `sar_segment_seqnum` (§5.3.2.22-24). The driver turns either
//! into a [`Fragment`]; [`Reassembler`] puts the parts together.
//!
//! Parts are joined as bytes, before decoding: a sender may split a UTF-16 surrogate pair
//! or a GSM escape sequence across two parts, and only the joined bytes decode right.
//!
//! The reassembler is pure: the caller passes the time in, and calls
//! [`Reassembler::expire`] now and then (at [`Reassembler::next_deadline`]). Nothing it
//! was given is dropped: a set that does not complete in time, or that has to make room
//! for a newer one, is handed back as a partial [`Assembled`] with its missing part numbers.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use textgate_core::encoding::udh;

/// What identifies the parts of one message: sender, recipient, reference and part count
/// (TS 23.040 §9.2.3.24.1: the reference is only unique per sender, and a part count that
/// differs means another message).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartKey {
    /// `source_addr`, as received.
    pub from: String,
    /// `destination_addr`, as received.
    pub to: String,
    /// The concatenation reference (an 8-bit one widened).
    pub reference: u16,
    /// How many parts the message has.
    pub total: u8,
}

/// One part of a concatenated message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Which message it belongs to.
    pub key: PartKey,
    /// Its number, from 1 to `key.total`.
    pub seq: u8,
    /// Its `data_coding` (SMPP 3.4 §5.2.19).
    pub data_coding: u8,
    /// Its user data, WITHOUT the user data header.
    pub payload: Vec<u8>,
}

/// A message put back together, completely or (on expiry or eviction) partly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// Which message.
    pub key: PartKey,
    /// The `data_coding` of the first part that arrived; parts of one message share it.
    pub data_coding: u8,
    /// The parts received, concatenated in part order.
    pub payload: Vec<u8>,
    /// How many parts `payload` holds (`key.total` when complete).
    pub parts: u8,
    /// The numbers of the parts that never came, ascending; empty when complete.
    pub missing: Vec<u8>,
}

impl Assembled {
    /// Whether every part is there.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// What became of a pushed fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Stored; its message still lacks parts.
    Incomplete,
    /// This part was already received (it is pending, or its message was completed, expired
    /// or evicted within the timeout with the same bytes in this part); nothing was stored.
    /// The driver acknowledges it and stores nothing (docs/architecture.md: duplicate deliveries of
    /// the same part are recognised).
    Duplicate,
    /// The fragment completed its message (or was not really a part: see
    /// [`Reassembler::push`]).
    Complete(Assembled),
}

/// The result of [`Reassembler::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an evicted partial message must be delivered, not dropped"]
pub struct PushOutcome {
    /// What became of the fragment.
    pub pushed: Pushed,
    /// Partial messages pending longest, handed back to make room (when `max_pending` sets
    /// were pending, or the parts held passed the byte budget); deliver them as
    /// [`Reassembler::expire`]'s. May include the fragment's own set.
    pub evicted: Vec<Assembled>,
}

/// A message whose parts are arriving.
#[derive(Debug)]
struct Pending {
    first_seen: Instant,
    /// The bytes of the parts held.
    bytes: usize,
    data_coding: u8,
    /// Index `seq - 1`; `key.total` slots.
    parts: Vec<Option<Vec<u8>>>,
    received: u8,
}

/// A message recently handed out, remembered for duplicate detection: the hash of each
/// part's bytes (index `seq - 1`), `None` for parts that never came.
#[derive(Debug)]
struct Recent {
    at: Instant,
    hashes: Vec<Option<u64>>,
}

/// Puts concatenated messages together, in bounded memory: at most `max_pending` sets
/// pending, holding at most `max_bytes` of parts together (each set at most 255 parts),
/// and as many recently finished sets remembered (as hashes) to recognise duplicates. A
/// peer that sends first parts and never the rest gets its oldest sets handed back as
/// partial texts, not more memory.
#[derive(Debug)]
pub struct Reassembler {
    timeout: Duration,
    max_pending: usize,
    max_bytes: usize,
    bytes: usize,
    pending: HashMap<PartKey, Pending>,
    recent: HashMap<PartKey, Recent>,
    /// `recent`'s keys in the order they were remembered; an entry whose time differs from
    /// the map's is stale (the key was remembered again) and is skipped.
    recent_order: VecDeque<(PartKey, Instant)>,
}

impl Reassembler {
    /// A reassembler that gives up waiting for a message's missing parts `timeout` after
    /// its first part arrived, and holds at most `max_pending` incomplete messages (taken as
    /// 1 if 0).
    pub fn new(timeout: Duration, max_pending: usize) -> Self {
        Reassembler {
            timeout,
            max_pending: max_pending.max(1),
            max_bytes: usize::MAX,
            bytes: 0,
            pending: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
        }
    }

    /// Holds at most `max_bytes` of parts; past that the sets pending longest are handed
    /// back partial.
    pub fn with_byte_budget(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(1);
        self
    }

    /// The bytes of the parts held.
    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }

    /// Adds one part.
    ///
    /// - A part number out of range (0, or above the total) or a total of 0 is not a valid
    ///   concatenation; TS 23.040 §9.2.3.24.1 says a receiver ignores such an element, so
    ///   the fragment is a text of its own: `Complete` at once, one part.
    /// - A total of 1 completes at once too.
    /// - A part already held is `Duplicate` and not stored again (the first copy is kept,
    ///   even if the bytes differ); so is a part of a message handed out within the timeout
    ///   with the same bytes. Different bytes under a recently finished key mean the
    ///   sender reused the reference: a new message.
    /// - A new set when `max_pending` sets are pending first evicts the set pending longest,
    ///   returned in [`PushOutcome::evicted`]; so do parts past the byte budget, until what
    ///   is held fits again (the fragment's own set last).
    pub fn push(&mut self, frag: Fragment, now: Instant) -> PushOutcome {
        let Fragment {
            key,
            seq,
            data_coding,
            payload,
        } = frag;
        let outcome = |pushed| PushOutcome {
            pushed,
            evicted: Vec::new(),
        };
        if key.total == 0 || seq == 0 || seq > key.total {
            return outcome(Pushed::Complete(Assembled {
                key,
                data_coding,
                payload,
                parts: 1,
                missing: Vec::new(),
            }));
        }
        let index = usize::from(seq - 1);

        if let Some(set) = self.pending.get_mut(&key) {
            let Some(slot) = set.parts.get_mut(index) else {
                // Unreachable: a set has `total` slots and `seq <= total`.
                return outcome(Pushed::Duplicate);
            };
            if slot.is_some() {
                return outcome(Pushed::Duplicate);
            }
            let len = payload.len();
            *slot = Some(payload);
            set.received = set.received.saturating_add(1);
            set.bytes += len;
            self.bytes += len;
            if set.received < key.total {
                return PushOutcome {
                    pushed: Pushed::Incomplete,
                    evicted: self.make_room(now),
                };
            }
            let Some((key, set)) = self.pending.remove_entry(&key) else {
                return outcome(Pushed::Incomplete);
            };
            return outcome(Pushed::Complete(self.finish(key, set, now)));
        }

        self.forget_old(now);
        if let Some(recent) = self.recent.get(&key) {
            if recent.hashes.get(index).copied().flatten() == Some(hash(&payload)) {
                return outcome(Pushed::Duplicate);
            }
            // Same key, new bytes: the reference was reused; this is another message.
            self.recent.remove(&key);
        }

        let mut parts = vec![None; usize::from(key.total)];
        let len = payload.len();
        if let Some(slot) = parts.get_mut(index) {
            *slot = Some(payload);
        }
        let set = Pending {
            first_seen: now,
            bytes: len,
            data_coding,
            parts,
            received: 1,
        };
        if key.total == 1 {
            // Never held: nothing to count off.
            let set = Pending { bytes: 0, ..set };
            return outcome(Pushed::Complete(self.finish(key, set, now)));
        }
        let mut evicted = Vec::new();
        if self.pending.len() >= self.max_pending {
            evicted.extend(self.evict_oldest(now));
        }
        self.bytes += len;
        self.pending.insert(key, set);
        evicted.extend(self.make_room(now));
        PushOutcome {
            pushed: Pushed::Incomplete,
            evicted,
        }
    }

    /// Hands back the sets pending longest until the parts held fit the byte budget.
    fn make_room(&mut self, now: Instant) -> Vec<Assembled> {
        let mut out = Vec::new();
        while self.bytes > self.max_bytes {
            match self.evict_oldest(now) {
                Some(a) => out.push(a),
                None => break,
            }
        }
        out
    }

    fn evict_oldest(&mut self, now: Instant) -> Option<Assembled> {
        let oldest = self.oldest()?;
        let (k, s) = self.pending.remove_entry(&oldest)?;
        Some(self.finish(k, s, now))
    }

    /// Hands back, oldest first, every set whose first part arrived `timeout` or more before
    /// `now`, with what it has (`missing` non-empty). Nothing is dropped.
    pub fn expire(&mut self, now: Instant) -> Vec<Assembled> {
        let mut due: Vec<(Instant, PartKey)> = self
            .pending
            .iter()
            .filter(|(_, set)| now.saturating_duration_since(set.first_seen) >= self.timeout)
            .map(|(key, set)| (set.first_seen, key.clone()))
            .collect();
        due.sort_by_key(|(first_seen, _)| *first_seen);
        let mut out = Vec::with_capacity(due.len());
        for (_, key) in due {
            if let Some((key, set)) = self.pending.remove_entry(&key) {
                out.push(self.finish(key, set, now));
            }
        }
        self.forget_old(now);
        out
    }

    /// How many incomplete messages are held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// When the next pending set falls due for [`Reassembler::expire`], if any is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|set| set.first_seen)
            .min()
            .map(|first| first.checked_add(self.timeout).unwrap_or(first))
    }

    /// The key of the set pending longest.
    fn oldest(&self) -> Option<PartKey> {
        self.pending
            .iter()
            .min_by_key(|(_, set)| set.first_seen)
            .map(|(key, _)| key.clone())
    }

    /// Builds the message of a set taken out of `pending`, and remembers its parts for
    /// duplicate detection.
    fn finish(&mut self, key: PartKey, set: Pending, now: Instant) -> Assembled {
        self.bytes -= set.bytes;
        let hashes = set.parts.iter().map(|p| p.as_deref().map(hash)).collect();
        let mut payload = Vec::new();
        let mut missing = Vec::new();
        for (n, part) in set.parts.into_iter().enumerate() {
            match part {
                Some(bytes) => payload.extend_from_slice(&bytes),
                // n < total <= 255, so n + 1 fits a u8.
                None => missing.push(u8::try_from(n + 1).unwrap_or(u8::MAX)),
            }
        }
        self.remember(key.clone(), hashes, now);
        Assembled {
            key,
            data_coding: set.data_coding,
            payload,
            parts: set.received,
            missing,
        }
    }

    fn remember(&mut self, key: PartKey, hashes: Vec<Option<u64>>, now: Instant) {
        self.recent_order.push_back((key.clone(), now));
        self.recent.insert(key, Recent { at: now, hashes });
        // Bounded like `pending`; the order queue may hold stale entries, at most as many
        // again as live ones.
        while self.recent.len() > self.max_pending || self.recent_order.len() > 2 * self.max_pending
        {
            if !self.pop_recent() {
                break;
            }
        }
    }

    /// Forgets finished sets older than the timeout: a duplicate later than that is taken
    /// as new.
    fn forget_old(&mut self, now: Instant) {
        while let Some((_, at)) = self.recent_order.front() {
            if now.saturating_duration_since(*at) < self.timeout {
                break;
            }
            self.pop_recent();
        }
    }

    /// Drops the oldest entry of `recent_order`, and its `recent` entry unless stale.
    fn pop_recent(&mut self) -> bool {
        let Some((key, at)) = self.recent_order.pop_front() else {
            return false;
        };
        if self.recent.get(&key).is_some_and(|r| r.at == at) {
            self.recent.remove(&key);
        }
        true
    }
}

fn hash(bytes: &[u8]) -> u64 {
    // SipHash with fixed keys: stable within the process, which is all this needs.
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// A concatenation element's `(reference, total, seq)`: the reference widened to 16 bits,
/// the part count, and this part's number from 1.
pub type ConcatInfo = (u16, u8, u8);

/// Splits a `short_message` sent with UDHI (`esm_class & 0x40`, SMPP 3.4 §5.2.12) into its
/// concatenation info `(reference, total, seq)`, if the header has a valid concatenation
/// element, and the user data after the header. Errors when the header's lengths do not
/// add up (the text cannot be located then).
///
/// In SMPP the header is octets at the start of `short_message` whatever the alphabet, and
/// GSM 7-bit text follows it UNPACKED, one septet per octet. The fill bits of TS 23.040
/// §9.2.3.24 exist only to align packed septets after the header on the air interface; the
/// SMSC adds or removes them when it packs or unpacks, so here the text starts right after
/// the header's last octet.
pub fn split_udh(short_message: &[u8]) -> Result<(Option<ConcatInfo>, Vec<u8>), String> {
    let header = udh::parse(short_message).map_err(|e| e.to_string())?;
    let concat = header
        .concat
        .map(|c| (c.reference.value(), c.total, c.sequence));
    let payload = short_message.get(header.len..).unwrap_or_default().to_vec();
    Ok((concat, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::text::{decode, Decoded, DefaultAlphabet};
    use proptest::prelude::*;
    use textgate_core::encoding::{gsm7, ucs2};

    const T: Duration = Duration::from_secs(60);

    fn key(reference: u16, total: u8) -> PartKey {
        PartKey {
            from: "+15550001".into(),
            to: "12345".into(),
            reference,
            total,
        }
    }

    fn frag(key: &PartKey, seq: u8, payload: &[u8]) -> Fragment {
        Fragment {
            key: key.clone(),
            seq,
            data_coding: 0,
            payload: payload.to_vec(),
        }
    }

    fn pushed(r: &mut Reassembler, f: Fragment, now: Instant) -> Pushed {
        let out = r.push(f, now);
        assert_eq!(out.evicted, vec![]);
        out.pushed
    }

    fn complete(p: Pushed) -> Assembled {
        match p {
            Pushed::Complete(a) => a,
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    #[test]
    fn in_order() {
        let mut r = Reassembler::new(T, 10);
        let now = Instant::now();
        let k = key(7, 3);
        assert_eq!(pushed(&mut r, frag(&k, 1, b"Hel"), now), Pushed::Incomplete);
        assert_eq!(pushed(&mut r, frag(&k, 2, b"lo "), now), Pushed::Incomplete);
        assert_eq!(r.pending(), 1);
        let a = complete(pushed(&mut r, frag(&k, 3, b"you"), now));
        assert_eq!(a.payload, b"Hello you");
        assert!(a.is_complete());
        assert_eq!((a.parts, a.missing.len(), a.key), (3, 0, k));
        assert_eq!(r.pending(), 0);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn out_of_order_with_duplicates() {
        let mut r = Reassembler::new(T, 10);
        let now = Instant::now();
        let k = key(300, 3);
        assert_eq!(pushed(&mut r, frag(&k, 3, b"C"), now), Pushed::Incomplete);
        assert_eq!(pushed(&mut r, frag(&k, 3, b"C"), now), Pushed::Duplicate);
        // A second copy with other bytes is still a duplicate: the first copy stays.
        assert_eq!(pushed(&mut r, frag(&k, 3, b"X"), now), Pushed::Duplicate);
        assert_eq!(pushed(&mut r, frag(&k, 1, b"A"), now), Pushed::Incomplete);
        let a = complete(pushed(&mut r, frag(&k, 2, b"B"), now));
        assert_eq!(a.payload, b"ABC");
    }

    #[test]
    fn duplicates_after_completion_are_recognised_within_the_timeout() {
        let mut r = Reassembler::new(T, 10);
        let t0 = Instant::now();
        let k = key(1, 2);
        let _ = pushed(&mut r, frag(&k, 1, b"A"), t0);
        let _ = complete(pushed(&mut r, frag(&k, 2, b"B"), t0));
        // The SMSC re-delivers part 1 (its deliver_sm_resp was lost).
        assert_eq!(
            pushed(&mut r, frag(&k, 1, b"A"), t0 + T / 2),
            Pushed::Duplicate
        );
        assert_eq!(r.pending(), 0);
        // The reference is reused for another message: new bytes, a new set.
        assert_eq!(
            pushed(&mut r, frag(&k, 1, b"Z"), t0 + T / 2),
            Pushed::Incomplete
        );
        let a = complete(pushed(&mut r, frag(&k, 2, b"Y"), t0 + T / 2));
        assert_eq!(a.payload, b"ZY");
    }

    #[test]
    fn duplicates_after_the_timeout_are_new() {
        let mut r = Reassembler::new(T, 10);
        let t0 = Instant::now();
        let k = key(1, 2);
        let _ = pushed(&mut r, frag(&k, 1, b"A"), t0);
        let _ = complete(pushed(&mut r, frag(&k, 2, b"B"), t0));
        assert_eq!(
            pushed(&mut r, frag(&k, 1, b"A"), t0 + T),
            Pushed::Incomplete
        );
    }

    #[test]
    fn parts_past_the_byte_budget_hand_back_the_oldest_sets_whole() {
        let mut r = Reassembler::new(Duration::from_secs(60), 1000).with_byte_budget(1000);
        let t0 = Instant::now();
        let mut handed = Vec::new();
        for i in 0..30u16 {
            let now = t0 + Duration::from_millis(u64::from(i));
            let k = PartKey {
                from: format!("+1{i}"),
                ..key(i, 2)
            };
            let out = r.push(frag(&k, 1, &[b'a'; 100]), now);
            assert_eq!(out.pushed, Pushed::Incomplete);
            handed.extend(out.evicted);
            assert!(r.pending_bytes() <= 1000, "{}", r.pending_bytes());
        }
        assert_eq!(handed.len(), 20, "ten sets of 100 bytes fit");
        assert!(handed
            .iter()
            .all(|a| a.payload.len() == 100 && a.missing == vec![2]));
        // Oldest first.
        assert_eq!(handed[0].key.from, "+10");
        // One part larger than the whole budget: its own set is handed back at once.
        let big = PartKey {
            from: "+1big".into(),
            ..key(99, 2)
        };
        let out = r.push(frag(&big, 1, &[b'b'; 2000]), t0);
        assert!(out.evicted.iter().any(|a| a.key.from == "+1big"));
        assert!(r.pending_bytes() <= 1000);
        let held = r.pending();
        let rest = r.expire(t0 + Duration::from_secs(61));
        assert_eq!((rest.len(), r.pending()), (held, 0));
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn single_part_and_out_of_range_numbers_are_whole_texts() {
        let mut r = Reassembler::new(T, 10);
        let now = Instant::now();
        let a = complete(pushed(&mut r, frag(&key(5, 1), 1, b"solo"), now));
        assert_eq!((a.payload.as_slice(), a.parts), (&b"solo"[..], 1));
        // The same single part again is a duplicate.
        assert_eq!(
            pushed(&mut r, frag(&key(5, 1), 1, b"solo"), now),
            Pushed::Duplicate
        );
        for (total, seq) in [(3, 0), (3, 4), (0, 0), (0, 1), (2, 255)] {
            let a = complete(pushed(&mut r, frag(&key(9, total), seq, b"odd"), now));
            assert_eq!((a.payload.as_slice(), a.parts), (&b"odd"[..], 1));
            assert!(a.missing.is_empty());
        }
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn sets_are_kept_apart() {
        let mut r = Reassembler::new(T, 10);
        let now = Instant::now();
        let a = key(1, 2);
        let mut b = a.clone();
        b.from = "+15550002".into();
        let mut c = a.clone();
        c.total = 3;
        let mut d = a.clone();
        d.to = "other".into();
        for k in [&a, &b, &c, &d] {
            assert_eq!(pushed(&mut r, frag(k, 1, b"x"), now), Pushed::Incomplete);
        }
        assert_eq!(r.pending(), 4);
        let done = complete(pushed(&mut r, frag(&b, 2, b"y"), now));
        assert_eq!((done.key, done.payload), (b, b"xy".to_vec()));
    }

    #[test]
    fn expiry_returns_partial_messages_oldest_first() {
        let mut r = Reassembler::new(T, 10);
        let t0 = Instant::now();
        let k1 = key(1, 3);
        let k2 = key(2, 2);
        let _ = pushed(&mut r, frag(&k1, 2, b"B"), t0);
        let _ = pushed(&mut r, frag(&k2, 2, b"b"), t0 + Duration::from_secs(10));
        let _ = pushed(&mut r, frag(&k1, 3, b"C"), t0 + Duration::from_secs(20));
        assert_eq!(r.next_deadline(), Some(t0 + T));
        assert!(r.expire(t0 + T - Duration::from_millis(1)).is_empty());
        let out = r.expire(t0 + T + Duration::from_secs(10));
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].key.clone(), out[0].payload.clone()),
            (k1, b"BC".to_vec())
        );
        assert_eq!((out[0].parts, out[0].missing.clone()), (2, vec![1]));
        assert!(!out[0].is_complete());
        assert_eq!(
            (out[1].payload.clone(), out[1].missing.clone()),
            (b"b".to_vec(), vec![1])
        );
        assert_eq!(r.pending(), 0);
        // Time running backwards (a caller's mistake) is not a panic.
        assert!(r.expire(t0 - Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn a_late_part_after_expiry_is_not_lost() {
        let mut r = Reassembler::new(T, 10);
        let t0 = Instant::now();
        let k = key(4, 2);
        let _ = pushed(&mut r, frag(&k, 1, b"A"), t0);
        assert_eq!(r.expire(t0 + T).len(), 1);
        // Part 1 again: already handed out; part 2: new, held, expires on its own.
        assert_eq!(pushed(&mut r, frag(&k, 1, b"A"), t0 + T), Pushed::Duplicate);
        assert_eq!(
            pushed(&mut r, frag(&k, 2, b"B"), t0 + T),
            Pushed::Incomplete
        );
        let out = r.expire(t0 + 2 * T);
        assert_eq!(
            (out[0].payload.clone(), out[0].missing.clone()),
            (b"B".to_vec(), vec![1])
        );
    }

    #[test]
    fn full_reassembler_evicts_the_oldest_set() {
        let mut r = Reassembler::new(T, 2);
        let t0 = Instant::now();
        let (k1, k2, k3) = (key(1, 2), key(2, 2), key(3, 2));
        let _ = pushed(&mut r, frag(&k2, 1, b"2"), t0 + Duration::from_secs(1));
        let _ = pushed(&mut r, frag(&k1, 1, b"1"), t0);
        // A part of a pending set needs no room.
        let _ = pushed(&mut r, frag(&k1, 1, b"1"), t0);
        let out = r.push(frag(&k3, 1, b"3"), t0 + Duration::from_secs(2));
        assert_eq!(out.pushed, Pushed::Incomplete);
        let evicted = out.evicted.into_iter().next().unwrap();
        assert_eq!((evicted.key, evicted.payload), (k1, b"1".to_vec()));
        assert_eq!(evicted.missing, vec![2]);
        assert_eq!(r.pending(), 2);
        // Completing a set needs no room either.
        let done = complete(pushed(&mut r, frag(&k2, 2, b"x"), t0));
        assert_eq!(done.payload, b"2x");
    }

    #[test]
    fn zero_max_pending_holds_one() {
        let mut r = Reassembler::new(T, 0);
        let now = Instant::now();
        assert_eq!(
            pushed(&mut r, frag(&key(1, 2), 1, b"a"), now),
            Pushed::Incomplete
        );
        let out = r.push(frag(&key(2, 2), 1, b"b"), now);
        assert_eq!(out.pushed, Pushed::Incomplete);
        assert_eq!(
            out.evicted
                .into_iter()
                .map(|a| a.payload)
                .collect::<Vec<_>>(),
            vec![b"a".to_vec()]
        );
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn memory_stays_bounded() {
        let mut r = Reassembler::new(T, 8);
        let t0 = Instant::now();
        let mut evicted = 0;
        for i in 0..2000u16 {
            let k = key(i, 2);
            let out = r.push(frag(&k, 1, b"p"), t0);
            evicted += out.evicted.len();
            if i % 3 == 0 {
                let _ = r.push(frag(&k, 2, b"q"), t0);
            }
            assert!(r.pending() <= 8);
            assert!(r.recent.len() <= 8);
            assert!(r.recent_order.len() <= 16);
        }
        assert!(evicted > 0);
    }

    #[test]
    fn surrogate_pair_split_across_parts_decodes_after_joining() {
        // "a😀" is 00 61 D8 3D DE 00; the sender split after the high surrogate.
        let bytes = ucs2::encode("a😀");
        let mut r = Reassembler::new(T, 4);
        let now = Instant::now();
        let k = key(9, 2);
        let mut f2 = frag(&k, 2, &bytes[4..]);
        f2.data_coding = 0x08;
        let mut f1 = frag(&k, 1, &bytes[..4]);
        f1.data_coding = 0x08;
        let _ = pushed(&mut r, f2, now);
        let a = complete(pushed(&mut r, f1, now));
        assert_eq!(a.data_coding, 0x08);
        assert_eq!(
            decode(a.data_coding, &a.payload, DefaultAlphabet::Gsm7),
            Decoded::Text {
                text: "a😀".into(),
                encoding: "ucs2"
            }
        );
    }

    #[test]
    fn split_udh_with_8_and_16_bit_references() {
        let septets = gsm7::encode("Hi €").unwrap();
        let mut sm = vec![0x05, 0x00, 0x03, 0x2A, 0x02, 0x01];
        sm.extend_from_slice(&septets);
        assert_eq!(split_udh(&sm), Ok((Some((0x2A, 2, 1)), septets.clone())));
        let mut sm = vec![0x06, 0x08, 0x04, 0xBE, 0xEF, 0x03, 0x03];
        sm.extend_from_slice(b"\x00\x41");
        assert_eq!(
            split_udh(&sm),
            Ok((Some((0xBEEF, 3, 3)), b"\x00\x41".to_vec()))
        );
    }

    #[test]
    fn split_udh_without_concatenation() {
        // Application port addressing only (IEI 0x05): a header, but a whole message.
        let sm = [0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0xAA];
        assert_eq!(split_udh(&sm), Ok((None, vec![0xAA])));
        // An out-of-range concatenation element is ignored (TS 23.040 §9.2.3.24.1).
        let sm = [0x05, 0x00, 0x03, 0x01, 0x02, 0x03, b'x'];
        assert_eq!(split_udh(&sm), Ok((None, b"x".to_vec())));
        // A header and no text.
        assert_eq!(split_udh(&[0x00]), Ok((None, vec![])));
    }

    #[test]
    fn split_udh_errors() {
        assert!(split_udh(&[]).is_err());
        let err = split_udh(&[0x05, 0x00, 0x03]).unwrap_err();
        assert!(err.contains("5 octets"), "{err}");
        assert!(split_udh(&[0x04, 0x00, 0x02, 0x01, 0x02]).is_err());
    }

    proptest! {
        #[test]
        fn split_udh_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((_, payload)) = split_udh(&bytes) {
                prop_assert!(bytes.ends_with(&payload));
            }
        }

        #[test]
        fn split_udh_finds_what_was_built(
            reference in any::<u16>(), wide in any::<bool>(), total in 1u8..=255,
            seq_pick in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..140),
        ) {
            let seq = seq_pick % total + 1;
            let r = if wide { udh::ConcatRef::Bits16(reference) } else { udh::ConcatRef::Bits8(reference as u8) };
            let c = udh::Concat::new(r, total, seq).unwrap();
            let mut sm = c.header();
            sm.extend_from_slice(&payload);
            prop_assert_eq!(split_udh(&sm), Ok((Some((r.value(), total, seq)), payload)));
        }

        #[test]
        fn any_order_with_duplicates_gives_the_message(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 2..12),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
            shuffle_seed in any::<u64>(),
        ) {
            let total = parts.len() as u8;
            let k = key(77, total);
            // Every part once, in a shuffled order, with extra copies mixed in.
            let mut seqs: Vec<u8> = (1..=total).collect();
            let mut rng = fastrand::Rng::with_seed(shuffle_seed);
            rng.shuffle(&mut seqs);
            for ix in &order {
                let at = rng.usize(..=seqs.len());
                seqs.insert(at, ix.index(parts.len()) as u8 + 1);
            }
            let mut r = Reassembler::new(T, 4);
            let now = Instant::now();
            let mut done = None;
            let mut seen = std::collections::HashSet::new();
            for seq in seqs {
                let out = r.push(frag(&k, seq, &parts[usize::from(seq - 1)]), now);
                prop_assert_eq!(out.evicted, vec![]);
                match out.pushed {
                    Pushed::Incomplete => prop_assert!(seen.insert(seq) && seen.len() < parts.len()),
                    Pushed::Duplicate => prop_assert!(seen.contains(&seq)),
                    Pushed::Complete(a) => {
                        prop_assert!(seen.insert(seq) && seen.len() == parts.len());
                        prop_assert!(done.replace(a).is_none());
                    }
                }
            }
            let a = done.unwrap();
            prop_assert_eq!(a.payload, parts.concat());
            prop_assert_eq!((a.parts, a.missing.len()), (total, 0));
            prop_assert_eq!(r.pending(), 0);
        }

        #[test]
        fn expiry_gives_what_arrived_and_names_the_rest(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..10), 2..10),
            arrived in proptest::collection::vec(any::<bool>(), 10),
        ) {
            let total = parts.len() as u8;
            let k = key(5, total);
            let mut r = Reassembler::new(T, 4);
            let t0 = Instant::now();
            let mut got: Vec<u8> = (1..=total).filter(|&s| arrived[usize::from(s - 1)]).collect();
            if got.len() == parts.len() {
                got.pop();
            }
            for &seq in got.iter().rev() {
                prop_assert_eq!(r.push(frag(&k, seq, &parts[usize::from(seq - 1)]), t0).pushed, Pushed::Incomplete);
            }
            let out = r.expire(t0 + T);
            if got.is_empty() {
                prop_assert!(out.is_empty());
            } else {
                prop_assert_eq!(out.len(), 1);
                let a = &out[0];
                let want: Vec<u8> = got.iter().flat_map(|&s| parts[usize::from(s - 1)].clone()).collect();
                let missing: Vec<u8> = (1..=total).filter(|s| !got.contains(s)).collect();
                prop_assert_eq!(&a.payload, &want);
                prop_assert_eq!(&a.missing, &missing);
                prop_assert_eq!(usize::from(a.parts), got.len());
            }
            prop_assert_eq!(r.pending(), 0);
        }
    }
}
