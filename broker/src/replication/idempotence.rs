//! Idempotent producers on a replicated partition. A leader checks each idempotent batch
//! before it proposes it (a retry is answered with the offset of the batch already in the log,
//! a gap or a fenced epoch is refused), against the producers' state *of its whole log* —
//! entries not yet committed included, as Kafka's leader does — so a producer's batches in
//! flight follow each other. Every replica keeps that state as entries enter its log; a
//! follower whose uncommitted suffix is cut (a new leader's log disagrees) rolls the state back
//! with the undo records kept for every entry above the commit. A new leader thus holds the
//! state of everything it may commit, and a retry sent to it after a leader change is
//! recognised rather than written twice.
//!
//! The state of the durable log (for the snapshots a roll writes, and recovery) is the
//! pipeline's, in the partition's state; this one runs ahead of it by what is in flight.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::batch::BatchHeader;
pub use crate::producer_state::Undo;
use crate::producer_state::{BatchMeta, ProducerError, ProducerStates, Verdict};

/// What the check of a proposal's batches says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Write them.
    Append,
    /// A retry of a batch already in the log: answer with its offsets, write nothing.
    Duplicate(BatchMeta),
}

/// The producers of a replicated partition as of the end of its log (see the module doc).
#[derive(Debug, Default)]
pub struct Producers {
    state: ProducerStates,
    /// Undo records of the entries above the commit, by index (in order).
    undo: VecDeque<(u64, Undo)>,
    /// Every entry from this index on that changed the state has its undo record.
    undo_from: u64,
    /// Entries up to this index are in `state`.
    recorded_through: u64,
}

impl Producers {
    /// The state of a log whose last entry is `last_index`, with the undo records recovery kept
    /// for its entries from `undo_from` on.
    pub fn open(
        state: ProducerStates,
        last_index: u64,
        undo: Vec<(u64, Undo)>,
        undo_from: u64,
    ) -> Self {
        Producers {
            state,
            undo: undo.into(),
            undo_from,
            recorded_through: last_index,
        }
    }

    pub fn state(&self) -> &ProducerStates {
        &self.state
    }

    pub fn recorded_through(&self) -> u64 {
        self.recorded_through
    }

    /// Check a proposal's batches (`headers` of `batches`: data, or transaction markers) as if
    /// written from `first_offset` on. A producer's batch that would open its transaction here
    /// is refused unless `may_open` says the coordinator confirmed it (KIP-890's first part).
    pub fn check(
        &self,
        headers: &[BatchHeader],
        batches: &[Bytes],
        first_offset: i64,
        now_ms: i64,
        may_open: impl Fn(i64) -> bool,
    ) -> Result<Checked, ProducerError> {
        let mut scratch = self.state.subset(headers.iter().map(|h| &h.producer_id));
        let mut offset = first_offset;
        for (h, b) in headers.iter().zip(batches) {
            if scratch.would_open(h) && !may_open(h.producer_id) {
                return Err(ProducerError::Unverified {
                    producer_id: h.producer_id,
                });
            }
            match scratch.check_batch(h, b)? {
                Verdict::Duplicate(b) => return Ok(Checked::Duplicate(b)),
                Verdict::Append => {
                    scratch.record_batch(h, b, offset, now_ms);
                }
            }
            offset += h.last_offset_delta as i64 + 1;
        }
        Ok(Checked::Append)
    }

    /// Entry `index`, the batch `batch` (`h` its header) at `first_offset`, entered the log.
    pub fn record(
        &mut self,
        index: u64,
        h: &BatchHeader,
        batch: &[u8],
        first_offset: i64,
        now_ms: i64,
    ) {
        if index <= self.recorded_through {
            return;
        }
        self.recorded_through = index;
        let mut undo = Undo::new();
        self.state
            .record_batch_with_undo(h, batch, first_offset, now_ms, &mut undo);
        if !undo.is_empty() {
            self.undo.push_back((index, undo));
        }
    }

    /// The log was cut before entry `from`: roll back what its entries from there did. False
    /// when the undo records do not reach back that far (after a start, a cut deeper than
    /// recovery kept records for): the state then keeps what it had, which may remember a
    /// batch that is gone.
    pub fn truncate(&mut self, from: u64) -> bool {
        if from > self.recorded_through {
            return true;
        }
        let covered = from >= self.undo_from;
        while self.undo.back().is_some_and(|(i, _)| *i >= from) {
            let (_, undo) = self.undo.pop_back().expect("checked");
            for (id, before) in undo.into_iter().rev() {
                self.state.restore(id, before);
            }
        }
        self.recorded_through = from - 1;
        covered
    }

    /// Entries through `commit` are committed: never cut, so their undo records go.
    pub fn committed(&mut self, commit: u64) {
        while self.undo.front().is_some_and(|(i, _)| *i <= commit) {
            self.undo.pop_front();
        }
        self.undo_from = self.undo_from.max(commit + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn_marker::Marker;

    fn batch(pid: i64, seq: i32, records: i32) -> BatchHeader {
        crate::producer_state::tests::batch(pid, 0, seq, records)
    }

    fn check(p: &Producers, h: BatchHeader, offset: i64) -> Result<Checked, ProducerError> {
        p.check(&[h], &[Bytes::new()], offset, 1, |_| false)
    }

    #[test]
    fn a_cut_rolls_back_and_a_retry_after_it_is_written_again() {
        let mut p = Producers::open(ProducerStates::default(), 0, Vec::new(), 1);
        assert_eq!(check(&p, batch(7, 0, 2), 0), Ok(Checked::Append));
        p.record(1, &batch(7, 0, 2), &[], 0, 1);
        p.record(2, &batch(7, 2, 2), &[], 2, 1);
        // In flight: the next one follows the uncommitted ones, a retry is a duplicate.
        assert_eq!(check(&p, batch(7, 4, 1), 4), Ok(Checked::Append));
        assert!(
            matches!(check(&p, batch(7, 2, 2), 4), Ok(Checked::Duplicate(b)) if b.first_offset == 2)
        );
        assert!(check(&p, batch(7, 9, 1), 4).is_err());
        p.committed(1);
        // Entry 2 is cut: its batch is no longer known, so its retry is written again.
        assert!(p.truncate(2));
        assert_eq!(check(&p, batch(7, 2, 2), 2), Ok(Checked::Append));
        assert_eq!(p.recorded_through(), 1);
        // After a start without undo records for the last entries, a cut among them is not
        // covered (the caller then knows the state may remember a batch that is gone).
        let mut q = Producers::open(p.state().clone(), 5, Vec::new(), 6);
        assert!(!q.truncate(4));
        assert!(q.truncate(6));
    }

    #[test]
    fn a_transaction_opens_only_when_confirmed_and_a_cut_marker_reopens_it() {
        let mut p = Producers::open(ProducerStates::default(), 0, Vec::new(), 1);
        let mut data = batch(7, 0, 2);
        data.attributes |= crate::batch::TRANSACTIONAL_ATTRIBUTE;
        // A first transactional batch the coordinator did not confirm is refused.
        assert_eq!(
            check(&p, data, 0),
            Err(ProducerError::Unverified { producer_id: 7 })
        );
        let confirmed = p.check(&[data], &[Bytes::new()], 0, 1, |pid| pid == 7);
        assert_eq!(confirmed, Ok(Checked::Append));
        p.record(1, &data, &[], 0, 1);
        assert_eq!(p.state().first_unstable_offset(), Some(0));
        // The next batch of the open transaction needs no confirmation.
        let mut next = batch(7, 2, 1);
        next.attributes |= crate::batch::TRANSACTIONAL_ATTRIBUTE;
        assert_eq!(check(&p, next, 2), Ok(Checked::Append));
        // Its marker closes it; a marker of an older coordinator is then fenced.
        let marker = |epoch| {
            let bytes = Marker {
                commit: true,
                coordinator_epoch: epoch,
            }
            .encode(7, 0, 1);
            (
                crate::batch::parse_header(&bytes).expect("a marker parses"),
                bytes,
            )
        };
        let (h, m) = marker(3);
        assert_eq!(
            p.check(&[h], std::slice::from_ref(&m), 2, 1, |_| false),
            Ok(Checked::Append)
        );
        p.record(2, &h, &m, 2, 1);
        assert_eq!(p.state().first_unstable_offset(), None);
        let (old, m2) = marker(2);
        assert!(matches!(
            p.check(&[old], &[m2], 3, 1, |_| false),
            Err(ProducerError::CoordinatorFenced { .. })
        ));
        // The marker cut (a new leader's log lacks it): the transaction is open again.
        assert!(p.truncate(2));
        assert_eq!(p.state().first_unstable_offset(), Some(0));
    }
}
