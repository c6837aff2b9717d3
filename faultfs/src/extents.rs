//! The unsynced writes of one file: byte ranges held in memory until a sync writes them to the
//! backing file, or a crash drops them.
//!
//! Invariant: the extents never overlap, each is non-empty, and `bytes` is the sum of their
//! lengths. A later write replaces the bytes of an earlier one where they overlap, so what a
//! read sees is the backing file with every extent laid over it.

use std::collections::BTreeMap;

/// Dirty byte ranges of one file, keyed by offset.
#[derive(Debug, Default)]
pub(crate) struct Extents {
    map: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
}

fn end_of(start: u64, data: &[u8]) -> u64 {
    start + data.len() as u64
}

impl Extents {
    /// Bytes held (each byte once, however often it was written).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// One past the last dirty byte (0 when clean): the file is at least this long.
    pub(crate) fn end(&self) -> u64 {
        self.map
            .iter()
            .next_back()
            .map_or(0, |(&start, data)| end_of(start, data))
    }

    /// Record a write of `data` at `offset`. The caller has checked that `offset + data.len()`
    /// does not overflow.
    pub(crate) fn insert(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // An extent that contains `offset` or ends right at it grows in place: appends and
        // rewrites inside a dirty range then cost only the bytes written.
        let base = self
            .map
            .range(..=offset)
            .next_back()
            .filter(|&(&start, v)| end_of(start, v) >= offset)
            .map(|(&start, v)| (start, end_of(start, v)));
        match base {
            Some((start, old_end)) => {
                if end > old_end {
                    // Extents after the base start at or after its end: cutting them cannot
                    // touch the base.
                    self.cut(old_end, end);
                }
                if let Some(v) = self.map.get_mut(&start) {
                    let rel = (offset - start) as usize;
                    if rel + data.len() > v.len() {
                        self.bytes += (rel + data.len() - v.len()) as u64;
                        v.resize(rel + data.len(), 0);
                    }
                    v[rel..rel + data.len()].copy_from_slice(data);
                }
            }
            None => {
                self.cut(offset, end);
                self.map.insert(offset, data.to_vec());
                self.bytes += data.len() as u64;
            }
        }
    }

    /// Forget the dirty bytes in `[start, end)`, splitting the extents that straddle it.
    pub(crate) fn cut(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // Sorted and disjoint: the extents overlapping the range are the last ones starting
        // before `end`, back to the first that ends after `start`.
        let hit: Vec<u64> = self
            .map
            .range(..end)
            .rev()
            .take_while(|&(&s, v)| end_of(s, v) > start)
            .map(|(&s, _)| s)
            .collect();
        for s in hit {
            let Some(mut v) = self.map.remove(&s) else {
                continue;
            };
            let e = end_of(s, &v);
            self.bytes -= v.len() as u64;
            if e > end {
                let tail = v[(end - s) as usize..].to_vec();
                self.bytes += tail.len() as u64;
                self.map.insert(end, tail);
            }
            if s < start {
                v.truncate((start - s) as usize);
                self.bytes += v.len() as u64;
                self.map.insert(s, v);
            }
        }
    }

    /// Forget every dirty byte at or past `len` (the file was truncated to `len`).
    pub(crate) fn truncate(&mut self, len: u64) {
        self.cut(len, u64::MAX);
    }

    /// Lay the dirty bytes over `buf`, which holds the file's bytes from `offset` on.
    pub(crate) fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        let hits = self
            .map
            .range(..end)
            .rev()
            .take_while(|&(&s, v)| end_of(s, v) > offset);
        for (&s, v) in hits {
            let from = s.max(offset);
            let to = end_of(s, v).min(end);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&v[(from - s) as usize..(to - s) as usize]);
        }
    }

    /// Every extent, by offset.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.map.iter().map(|(&s, v)| (s, v.as_slice()))
    }

    /// The first `n` dirty bytes in offset order (what a torn write leaves of them).
    pub(crate) fn prefix(&self, n: u64) -> Vec<(u64, &[u8])> {
        let mut left = n;
        let mut out = Vec::new();
        for (s, v) in self.iter() {
            if left == 0 {
                break;
            }
            let take = (v.len() as u64).min(left);
            out.push((s, &v[..take as usize]));
            left -= take;
        }
        out
    }

    /// Drop everything; returns the bytes dropped.
    pub(crate) fn clear(&mut self) -> u64 {
        self.map.clear();
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::SplitMix64;

    /// The model: one optional byte per offset.
    fn model_apply(model: &mut Vec<Option<u8>>, offset: u64, data: &[u8]) {
        let end = offset as usize + data.len();
        if model.len() < end {
            model.resize(end, None);
        }
        for (i, b) in data.iter().enumerate() {
            model[offset as usize + i] = Some(*b);
        }
    }

    fn check(ext: &Extents, model: &[Option<u8>]) {
        let mut seen = vec![None; model.len().max(ext.end() as usize)];
        let mut prev_end = None;
        for (s, v) in ext.iter() {
            assert!(!v.is_empty(), "an empty extent at {s}");
            if let Some(pe) = prev_end {
                assert!(s >= pe, "extents overlap at {s}");
            }
            prev_end = Some(end_of(s, v));
            for (i, b) in v.iter().enumerate() {
                seen[s as usize + i] = Some(*b);
            }
        }
        let count = seen.iter().filter(|b| b.is_some()).count() as u64;
        assert_eq!(ext.bytes(), count, "byte count drifted");
        let mut want = model.to_vec();
        want.resize(seen.len(), None);
        assert_eq!(seen, want);
    }

    #[test]
    fn random_writes_cuts_and_overlays_match_a_byte_model() {
        for seed in 0..200 {
            let mut rng = SplitMix64::new(seed);
            let mut ext = Extents::default();
            let mut model: Vec<Option<u8>> = Vec::new();
            for step in 0..60 {
                let offset = rng.below(200);
                let len = rng.below(40) as usize;
                match rng.below(10) {
                    0 => {
                        ext.cut(offset, offset + len as u64);
                        for b in model.iter_mut().skip(offset as usize).take(len) {
                            *b = None;
                        }
                    }
                    1 => {
                        ext.truncate(offset);
                        model.truncate(offset as usize);
                    }
                    _ => {
                        let data: Vec<u8> = (0..len).map(|i| (step * 7 + i) as u8).collect();
                        ext.insert(offset, &data);
                        model_apply(&mut model, offset, &data);
                    }
                }
                check(&ext, &model);
                let mut buf = vec![0xEE; 64];
                let at = rng.below(200);
                ext.overlay(at, &mut buf);
                for (i, b) in buf.iter().enumerate() {
                    let want = model
                        .get(at as usize + i)
                        .copied()
                        .flatten()
                        .unwrap_or(0xEE);
                    assert_eq!(
                        *b,
                        want,
                        "seed {seed} step {step}: overlay at {}",
                        at as usize + i
                    );
                }
            }
        }
    }

    #[test]
    fn appends_grow_one_extent_and_prefix_takes_bytes_in_offset_order() {
        let mut ext = Extents::default();
        ext.insert(0, b"abc");
        ext.insert(3, b"def");
        ext.insert(10, b"xy");
        assert_eq!(ext.iter().count(), 2);
        assert_eq!(ext.bytes(), 8);
        assert_eq!(ext.end(), 12);
        let p = ext.prefix(7);
        assert_eq!(p, vec![(0, &b"abcdef"[..]), (10, &b"x"[..])]);
        assert_eq!(ext.clear(), 8);
        assert!(ext.is_empty());
    }
}
