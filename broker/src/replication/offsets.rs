//! Raft indexes and Kafka offsets (docs/design.md: "the partition log is the Raft log").
//!
//! A partition's Raft log is its Kafka log: each Raft entry is one record batch. Raft indexes
//! are dense and count entries — produced batches and Raft's own entries (the empty entry a
//! new leader appends, configuration changes), which the log stores as control batches of one
//! record, so consumers skip them. Kafka offsets are dense too, but count records. The
//! [`OffsetTranslator`] maps one onto the other for a window of the log: the entries Raft may
//! still need (to send to a follower, to compare terms, to truncate a divergent suffix).
//! Entries before the window are Raft-compacted: a follower that needs them is sent a snapshot
//! (the leader's log from its start), never stalled.
//!
//! The high watermark a consumer sees is the end offset of the committed entry:
//! [`OffsetTranslator::end_offset`] of Raft's commit index.

use std::collections::VecDeque;

/// The Kafka base offset of every entry in a window of Raft indexes.
///
/// Invariants (checked by [`OffsetTranslator::check`] in tests): bases strictly increase, each
/// entry covers at least one offset, and the window's end offset is past its last base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetTranslator {
    /// Raft index of `bases[0]` (or of the next entry, when the window is empty).
    first_index: u64,
    /// Kafka base offset and Raft term of each entry, from `first_index` on.
    bases: VecDeque<i64>,
    terms: VecDeque<u64>,
    /// Kafka offset after the last entry's last record (the log end offset).
    end_offset: i64,
}

impl OffsetTranslator {
    /// An empty window: the next entry will be Raft index `next_index` and start at Kafka
    /// offset `next_offset` (after a snapshot, or `1` and the log start for a new log).
    pub fn new(next_index: u64, next_offset: i64) -> Self {
        OffsetTranslator {
            first_index: next_index,
            bases: VecDeque::new(),
            terms: VecDeque::new(),
            end_offset: next_offset,
        }
    }

    /// Append an entry of `records` records (a batch's record count; 1 for Raft's own entries)
    /// and term `term`. Returns its Raft index and Kafka base offset.
    pub fn push(&mut self, records: u32, term: u64) -> (u64, i64) {
        debug_assert!(records > 0, "an entry covers at least one offset");
        let index = self.next_index();
        let base = self.end_offset;
        self.bases.push_back(base);
        self.terms.push_back(term);
        self.end_offset = base + i64::from(records.max(1));
        (index, base)
    }

    /// The term of entry `index`, if it is in the window.
    pub fn term(&self, index: u64) -> Option<u64> {
        let at = index.checked_sub(self.first_index)?;
        self.terms.get(usize::try_from(at).ok()?).copied()
    }

    /// Raft index of the first entry in the window (`next_index()` when it is empty).
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Raft index of the last entry, or `first_index - 1` when the window is empty.
    pub fn last_index(&self) -> u64 {
        self.first_index + self.bases.len() as u64 - 1
    }

    /// The Raft index the next entry will get.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.bases.len() as u64
    }

    /// Kafka offset after the last entry (the log end offset).
    pub fn log_end_offset(&self) -> i64 {
        self.end_offset
    }

    /// Kafka base offset of entry `index`, if it is in the window.
    pub fn base_offset(&self, index: u64) -> Option<i64> {
        let at = index.checked_sub(self.first_index)?;
        self.bases.get(usize::try_from(at).ok()?).copied()
    }

    /// Kafka offset after entry `index`'s last record: the high watermark when `index` is the
    /// commit index. `first_index - 1` (just before the window) gives the window's start.
    pub fn end_offset(&self, index: u64) -> Option<i64> {
        if index + 1 == self.first_index {
            return Some(self.bases.front().copied().unwrap_or(self.end_offset));
        }
        let at = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        match at.cmp(&(self.bases.len().checked_sub(1)?)) {
            std::cmp::Ordering::Less => self.bases.get(at + 1).copied(),
            std::cmp::Ordering::Equal => Some(self.end_offset),
            std::cmp::Ordering::Greater => None,
        }
    }

    /// Raft index of the entry holding Kafka offset `offset`, if it is in the window.
    pub fn index_of(&self, offset: i64) -> Option<u64> {
        if offset >= self.end_offset || self.bases.front().is_none_or(|&first| offset < first) {
            return None;
        }
        // The last entry whose base is at or before `offset`.
        let at = self.bases.partition_point(|&base| base <= offset) - 1;
        Some(self.first_index + at as u64)
    }

    /// Forget entries from `index` on (a follower's divergent suffix, cut before the leader's
    /// entries are appended). Returns the Kafka offset the log must be cut back to.
    pub fn truncate_from(&mut self, index: u64) -> i64 {
        if index <= self.first_index {
            if let Some(&first) = self.bases.front() {
                self.end_offset = first;
            }
            self.bases.clear();
            self.terms.clear();
            // Entries before the window are committed and never truncated; the window simply
            // restarts where it began.
            return self.end_offset;
        }
        let keep = usize::try_from(index - self.first_index).unwrap_or(usize::MAX);
        if keep < self.bases.len() {
            self.end_offset = self.bases[keep];
            self.bases.truncate(keep);
            self.terms.truncate(keep);
        }
        self.end_offset
    }

    /// Forget entries before `index` (they are committed and need not be sent to followers any
    /// more); the window keeps its end.
    pub fn compact_to(&mut self, index: u64) {
        let drop = index
            .saturating_sub(self.first_index)
            .min(self.bases.len() as u64);
        self.bases.drain(..drop as usize);
        self.terms.drain(..drop as usize);
        self.first_index += drop;
    }

    /// Move every offset by `delta`: the window was started at an offset not known then (a cut
    /// reaching before it) and the log has since said where it really lies.
    pub fn shift(&mut self, delta: i64) {
        for base in &mut self.bases {
            *base += delta;
        }
        self.end_offset += delta;
    }

    /// Entries in the window (the caller bounds it with [`compact_to`](Self::compact_to)).
    pub fn len(&self) -> usize {
        self.bases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    #[cfg(test)]
    fn check(&self) {
        assert_eq!(self.bases.len(), self.terms.len());
        let mut previous = None;
        for &base in &self.bases {
            if let Some(p) = previous {
                assert!(base > p, "bases must increase: {self:?}");
            }
            previous = Some(base);
        }
        if let Some(last) = previous {
            assert!(self.end_offset > last, "end past the last base: {self:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious model: every entry as (index, base, records).
    #[derive(Debug, Default)]
    struct Model {
        entries: Vec<(u64, i64, u32)>,
        next_index: u64,
        next_offset: i64,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u32),
        Truncate(u64),
        Compact(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1u32..500).prop_map(Op::Push),
            1 => (0u64..80).prop_map(Op::Truncate),
            1 => (0u64..80).prop_map(Op::Compact),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_the_model(start_index in 1u64..20, start_offset in 0i64..1000,
                                 ops in proptest::collection::vec(op(), 1..120)) {
            let mut t = OffsetTranslator::new(start_index, start_offset);
            let mut m = Model { next_index: start_index, next_offset: start_offset, ..Model::default() };
            let mut compacted_to = start_index;
            for op in ops {
                match op {
                    Op::Push(records) => {
                        let got = t.push(records, u64::from(records) % 7);
                        prop_assert_eq!(got, (m.next_index, m.next_offset));
                        m.entries.push((m.next_index, m.next_offset, records));
                        m.next_index += 1;
                        m.next_offset += i64::from(records);
                    }
                    Op::Truncate(at) => {
                        let at = at + start_index;
                        // Only what is in the window can be cut.
                        let at = at.max(compacted_to);
                        let expected = m.entries.iter().find(|e| e.0 >= at).map_or(m.next_offset, |e| e.1);
                        let cut = t.truncate_from(at);
                        m.entries.retain(|&(i, _, _)| i < at);
                        m.next_index = m.next_index.min(at);
                        m.next_offset = expected;
                        prop_assert_eq!(cut, m.next_offset);
                    }
                    Op::Compact(to) => {
                        let to = (to + start_index).min(m.next_index);
                        t.compact_to(to);
                        compacted_to = compacted_to.max(to);
                    }
                }
                t.check();
                prop_assert_eq!(t.next_index(), m.next_index);
                prop_assert_eq!(t.log_end_offset(), m.next_offset);
                for &(index, base, records) in &m.entries {
                    if index < compacted_to {
                        prop_assert_eq!(t.base_offset(index), None);
                        continue;
                    }
                    prop_assert_eq!(t.base_offset(index), Some(base));
                    prop_assert_eq!(t.term(index), Some(u64::from(records) % 7));
                    prop_assert_eq!(t.end_offset(index), Some(base + i64::from(records)));
                    for offset in [base, base + i64::from(records) - 1] {
                        prop_assert_eq!(t.index_of(offset), Some(index));
                    }
                }
                prop_assert_eq!(t.index_of(m.next_offset), None);
                prop_assert_eq!(t.base_offset(m.next_index), None);
            }
        }
    }

    #[test]
    fn the_high_watermark_is_the_end_of_the_committed_entry() {
        // A new leader's empty entry (1 offset, a control batch), then batches of 3 and 5.
        let mut t = OffsetTranslator::new(1, 0);
        assert_eq!(t.push(1, 1), (1, 0));
        assert_eq!(t.push(3, 1), (2, 1));
        assert_eq!(t.push(5, 1), (3, 4));
        assert_eq!(
            t.end_offset(0),
            Some(0),
            "nothing committed: high watermark 0"
        );
        assert_eq!(t.end_offset(1), Some(1));
        assert_eq!(t.end_offset(2), Some(4));
        assert_eq!(t.end_offset(3), Some(9));
        assert_eq!(t.end_offset(4), None);
        assert_eq!(t.index_of(5), Some(3));
        // A divergent suffix from index 3 is cut back to offset 4.
        assert_eq!(t.truncate_from(3), 4);
        assert_eq!(t.push(2, 2), (3, 4));
        assert_eq!(t.term(3), Some(2));
        assert_eq!(t.log_end_offset(), 6);
        t.compact_to(3);
        assert_eq!(t.first_index(), 3);
        assert_eq!(
            t.end_offset(2),
            Some(4),
            "just before the window: its start"
        );
        assert_eq!(t.base_offset(2), None);
    }
}
