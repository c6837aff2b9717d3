//! The cleaner's key map (Kafka's `SkimpyOffsetMap`): the 128-bit hash of a key (xxHash3)
//! → the offset of the key's latest record, in a fixed budget of memory (24 bytes a slot,
//! filled to nine tenths at most). A dirty section with more keys than the map holds is
//! cleaned in several passes, each up to where the map filled.
//!
//! Two keys of one hash would make the cleaner drop the older one's latest value: with 128
//! bits that takes about 2^64 keys (Kafka keeps 16 bytes of MD5 for the same reason).

/// Bytes a slot takes: the hash and the offset.
pub const SLOT_BYTES: u64 = 24;
/// The part of the slots a map fills at most (open addressing slows down past it).
const LOAD_FACTOR: f64 = 0.9;
/// Slots a map starts with; it doubles when half full, up to its budget. A map of the budget
/// from the start touches a few keys over hundreds of MiB: every probe a cache and TLB miss
/// (it was a fifth of the broker's CPU under a keyed load of 10 k keys), and each pass zeroed
/// the whole budget.
const FIRST_SLOTS: usize = 1 << 12;

/// A key's hash and the offset of its latest record; an empty slot has hash 0.
#[derive(Clone, Copy, Default)]
struct Slot {
    hash: (u64, u64),
    offset: i64,
}

pub struct OffsetMap {
    /// Open addressing; a key whose hash is 0 is stored as 1, so 0 marks an empty slot.
    slots: Vec<Slot>,
    used: usize,
    /// Slots the budget allows.
    max_slots: usize,
    capacity: usize,
}

impl OffsetMap {
    /// A map of at most `budget` bytes (at least two slots).
    pub fn with_budget(budget: u64) -> OffsetMap {
        let max_slots = usize::try_from((budget / SLOT_BYTES).max(2)).unwrap_or(usize::MAX >> 8);
        OffsetMap {
            slots: vec![Slot::default(); FIRST_SLOTS.min(max_slots)],
            used: 0,
            max_slots,
            capacity: ((max_slots as f64 * LOAD_FACTOR) as usize).max(1),
        }
    }

    /// Keys it holds.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Keys it can hold at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether `more` new keys may not fit.
    pub fn full_for(&self, more: usize) -> bool {
        self.used.saturating_add(more) > self.capacity
    }

    /// Record `offset` as `key`'s latest (offsets come in increasing order).
    pub fn put(&mut self, key: &[u8], offset: i64) {
        let hash = hash(key);
        let mut at = self.slot(hash);
        if self.slots[at].hash == (0, 0) {
            debug_assert!(self.used < self.capacity, "the caller checks full_for");
            if self.used >= self.slots.len() / 2 && self.slots.len() < self.max_slots {
                self.grow();
                at = self.slot(hash);
            }
            self.slots[at].hash = hash;
            self.used += 1;
        }
        self.slots[at].offset = offset;
    }

    /// The offset of `key`'s latest record, if it is in the map.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let hash = hash(key);
        let slot = self.slots[self.slot(hash)];
        (slot.hash == hash).then_some(slot.offset)
    }

    /// Twice the slots (at most the budget's), every key placed again.
    fn grow(&mut self) {
        let n = (self.slots.len() * 2).min(self.max_slots);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); n]);
        for s in old.into_iter().filter(|s| s.hash != (0, 0)) {
            let at = self.slot(s.hash);
            self.slots[at] = s;
        }
    }

    /// The slot that holds `hash`, or the empty one where it would go (linear probing from
    /// the hash's place in the table, by multiplication rather than a division; the load
    /// factor keeps an empty slot).
    fn slot(&self, hash: (u64, u64)) -> usize {
        let n = self.slots.len();
        let mut at = ((u128::from(hash.0) * n as u128) >> 64) as usize;
        loop {
            let h = self.slots[at].hash;
            if h == (0, 0) || h == hash {
                return at;
            }
            at += 1;
            if at == n {
                at = 0;
            }
        }
    }
}

fn hash(key: &[u8]) -> (u64, u64) {
    let h = twox_hash::XxHash3_128::oneshot(key).max(1);
    ((h >> 64) as u64, h as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_offset_of_each_key_is_kept_within_the_budget() {
        let mut m = OffsetMap::with_budget(24 * 100);
        assert_eq!(m.capacity(), 90);
        for round in 0..3i64 {
            for k in 0..90u32 {
                assert!(!m.full_for(if round == 0 { 1 } else { 0 }));
                m.put(&k.to_be_bytes(), round * 100 + i64::from(k));
            }
        }
        assert_eq!(m.len(), 90);
        assert!(m.full_for(1), "a 91st key does not fit");
        for k in 0..90u32 {
            assert_eq!(m.get(&k.to_be_bytes()), Some(200 + i64::from(k)));
        }
        assert_eq!(m.get(b"absent"), None);
        assert_eq!(m.get(b""), None);
        let mut e = OffsetMap::with_budget(240);
        e.put(b"", 7);
        assert_eq!(e.get(b""), Some(7), "the empty key is a key");
    }

    #[test]
    fn a_map_grows_from_a_few_slots_to_its_budget_keeping_every_key() {
        let budget = 24 * 100_000;
        let mut m = OffsetMap::with_budget(budget);
        assert_eq!(m.slots.len(), FIRST_SLOTS);
        assert_eq!(m.capacity(), 90_000);
        for k in 0..90_000u32 {
            assert!(!m.full_for(1), "{k}");
            m.put(&k.to_be_bytes(), i64::from(k));
        }
        assert!(m.full_for(1));
        assert_eq!(m.slots.len(), 100_000, "grown to the budget, not past it");
        for k in 0..90_000u32 {
            assert_eq!(m.get(&k.to_be_bytes()), Some(i64::from(k)));
        }
        // A few keys keep it small.
        let mut few = OffsetMap::with_budget(budget);
        for round in 0..10i64 {
            for k in 0..1_000u32 {
                few.put(&k.to_be_bytes(), round);
            }
        }
        assert_eq!((few.len(), few.slots.len()), (1_000, FIRST_SLOTS));
    }
}
