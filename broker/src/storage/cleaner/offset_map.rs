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

pub struct OffsetMap {
    /// 0: an empty slot (a key whose hash is 0 is stored as 1).
    hashes: Vec<u128>,
    offsets: Vec<i64>,
    used: usize,
    capacity: usize,
}

impl OffsetMap {
    /// A map of `budget` bytes (at least one slot).
    pub fn with_budget(budget: u64) -> OffsetMap {
        let slots = usize::try_from((budget / SLOT_BYTES).max(2)).unwrap_or(usize::MAX >> 8);
        OffsetMap {
            hashes: vec![0; slots],
            offsets: vec![0; slots],
            used: 0,
            capacity: ((slots as f64 * LOAD_FACTOR) as usize).max(1),
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
        let at = self.slot(hash);
        if self.hashes[at] == 0 {
            debug_assert!(self.used < self.capacity, "the caller checks full_for");
            self.hashes[at] = hash;
            self.used += 1;
        }
        self.offsets[at] = offset;
    }

    /// The offset of `key`'s latest record, if it is in the map.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let hash = hash(key);
        let at = self.slot(hash);
        (self.hashes[at] == hash).then(|| self.offsets[at])
    }

    /// The slot that holds `hash`, or the empty one where it would go (linear probing; the
    /// load factor keeps an empty slot).
    fn slot(&self, hash: u128) -> usize {
        let n = self.hashes.len();
        let mut at = (hash % n as u128) as usize;
        loop {
            let h = self.hashes[at];
            if h == 0 || h == hash {
                return at;
            }
            at = (at + 1) % n;
        }
    }
}

fn hash(key: &[u8]) -> u128 {
    twox_hash::XxHash3_128::oneshot(key).max(1)
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
}
