//! Idempotence: what each idempotent producer last wrote to a partition, so that a retried batch
//! is answered with its original offset instead of being written twice, a gap in its sequence
//! numbers is refused, and a producer fenced by a newer epoch is refused.
//!
//! Kafka's rules (`ProducerStateManager`): per producer id, the epoch and the last five batches'
//! sequence ranges and offsets. A batch of the current epoch must continue the last sequence
//! (wrapping after `i32::MAX`); one of a newer epoch must start at 0 (unless the producer had no
//! batch yet); one of an older epoch is fenced; a producer the partition has never seen (or
//! whose state expired) may start anywhere. A batch whose sequence range equals one of the five
//! retained is a duplicate.
//!
//! Architecture invariant: only the commit pipeline changes a partition's producer state, and a
//! batch enters it only once the sync that makes it durable has succeeded — a retry of a write
//! whose sync failed is written again, never answered with an offset that was cut.
//!
//! Transactions (Kafka's `ProducerAppendInfo`): a producer's first transactional batch on a
//! partition opens its transaction there, and the marker that ends it
//! ([`crate::txn_marker`]) closes it, giving the [`CompletedTxn`] (an aborted one goes to the
//! partition's aborted-transaction index). While a transaction is open, the producer's batches
//! outside it are refused (INVALID_TXN_STATE), the partition's last stable offset stays at or
//! before its first offset ([`ProducerStates::first_unstable_offset`]), and the producer never
//! expires. A marker from a coordinator older than the last one seen is fenced.
//!
//! The state is rebuilt after a restart from a snapshot taken when the active segment was
//! started (`<base offset>.snapshot`, CRC-checked) plus the batches of the active segment; a
//! missing or damaged snapshot means scanning every segment.

mod snapshot;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::txn_marker::Marker;

/// Batches retained per producer for duplicate detection (Kafka's, and the most a client
/// keeps in flight: `max.in.flight.requests.per.connection` ≤ 5 with idempotence).
pub const BATCHES_RETAINED: usize = 5;

/// One batch of an idempotent producer, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// What a partition knows of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// The newest last.
    pub batches: VecDeque<BatchMeta>,
    /// When the producer last wrote here (the broker's wall clock), for expiry.
    pub last_write_ms: i64,
    /// The first offset of the producer's transaction open on this partition: its first
    /// transactional batch since its last marker (`None`: no transaction is open here).
    pub txn_first_offset: Option<i64>,
    /// The coordinator epoch of the last marker written for the producer here (-1: none).
    pub coordinator_epoch: i32,
}

/// A transaction a marker ended on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    /// Its first batch's first offset.
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
}

/// One producer as DescribeProducers tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescribedProducer {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence written (-1: none in this epoch).
    pub last_sequence: i32,
    pub last_write_ms: i64,
    /// -1: no marker seen.
    pub coordinator_epoch: i32,
    /// -1: no transaction open here.
    pub txn_start_offset: i64,
}

/// Why an idempotent batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("producer {producer_id}: sequence {got} does not follow {last} (epoch {epoch})")]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        last: i32,
        got: i32,
    },
    #[error("producer {producer_id}: epoch {got} is older than the current {current} (fenced)")]
    InvalidEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    #[error(
        "producer {producer_id}: a batch outside its transaction, open here since offset {txn_first_offset}"
    )]
    InvalidTxnState {
        producer_id: i64,
        txn_first_offset: i64,
    },
    #[error(
        "producer {producer_id}: a first transactional batch here that the transaction coordinator did not confirm (the partition is not in its transaction, or the transaction ended)"
    )]
    Unverified { producer_id: i64 },
    #[error(
        "producer {producer_id}: a marker of coordinator epoch {got}, older than the {current} seen"
    )]
    CoordinatorFenced {
        producer_id: i64,
        current: i32,
        got: i32,
    },
}

/// What to do with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not idempotent, or the next batch of its producer: write it.
    Append,
    /// A retry of this batch, already written: answer with its offsets, write nothing.
    Duplicate(BatchMeta),
}

/// What recording one entry changed: each producer's entry before it (`None`: not known), so
/// that a replicated log's cut can be rolled back.
pub type Undo = Vec<(i64, Option<ProducerEntry>)>;

/// The sequence number of a batch's last record.
pub fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap to 0 after i32::MAX, as Kafka's do.
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

fn follows(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (last == i32::MAX && next == 0)
}

/// The producers of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    entries: HashMap<i64, ProducerEntry>,
    /// The transactions open here, as (first offset, producer id): what every entry's
    /// `txn_first_offset` says, kept in order so the earliest is found at once.
    open: BTreeSet<(i64, i64)>,
}

impl ProducerStates {
    /// Every producer known here, by id.
    pub fn describe(&self) -> Vec<DescribedProducer> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|(id, e)| DescribedProducer {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_write_ms: e.last_write_ms,
                coordinator_epoch: e.coordinator_epoch,
                txn_start_offset: e.txn_first_offset.unwrap_or(-1),
            })
            .collect();
        all.sort_unstable_by_key(|p| p.producer_id);
        all
    }

    /// The first offset of the earliest transaction open on the partition (`None`: none is):
    /// no record at or after it is stable. (A walk over the producers, which expiry bounds.)
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open.first().map(|(first, _)| *first)
    }

    /// The states of `entries` (by producer id).
    fn from_entries(entries: HashMap<i64, ProducerEntry>) -> ProducerStates {
        let open = entries
            .iter()
            .filter_map(|(id, e)| Some((e.txn_first_offset?, *id)))
            .collect();
        ProducerStates { entries, open }
    }

    /// Keep `open` true to a change of one producer's open transaction.
    fn note_open(&mut self, producer_id: i64, was: Option<i64>, now: Option<i64>) {
        if was != now {
            if let Some(first) = was {
                self.open.remove(&(first, producer_id));
            }
            if let Some(first) = now {
                self.open.insert((first, producer_id));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    /// The first offsets of the batches kept for every producer (its last
    /// [`BATCHES_RETAINED`]): what a scan of the log finds a producer's sequence in.
    pub fn retained_batches(&self) -> std::collections::HashSet<i64> {
        self.entries
            .values()
            .flat_map(|e| e.batches.iter().map(|b| b.first_offset))
            .collect()
    }

    /// Check an idempotent data batch against this state (a batch without a producer id is
    /// always appended; a marker is checked by [`ProducerStates::check_marker`]). A batch
    /// without a base sequence is one the broker writes for a producer (a transaction's
    /// offsets, into the offsets topic): its epoch and transaction are checked, not its
    /// sequence.
    pub fn check(&self, h: &BatchHeader) -> Result<Verdict, ProducerError> {
        if h.producer_id < 0 || h.is_control() {
            return Ok(Verdict::Append);
        }
        let Some(entry) = self.entries.get(&h.producer_id) else {
            return Ok(Verdict::Append);
        };
        let last = last_seq(h);
        if h.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: h.producer_id,
                current: entry.epoch,
                got: h.producer_epoch,
            });
        }
        if h.base_sequence < 0 {
            // Written by the broker for the producer (a transaction's offsets): no sequence
            // to check, as Kafka checks none for a coordinator's appends.
        } else if h.producer_epoch == entry.epoch {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
            {
                return Ok(Verdict::Duplicate(*dup));
            }
            // No batch in this epoch: a marker started it, and the sequence starts at 0.
            let newest = entry.batches.back().map_or(-1, |b| b.last_seq);
            if !follows(newest, h.base_sequence) {
                return Err(ProducerError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    epoch: h.producer_epoch,
                    last: newest,
                    got: h.base_sequence,
                });
            }
        } else if h.base_sequence != 0 && !entry.batches.is_empty() {
            // A new epoch starts its sequence again.
            return Err(ProducerError::OutOfOrderSequence {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                last: -1,
                got: h.base_sequence,
            });
        }
        match entry.txn_first_offset {
            Some(first) if !h.is_transactional() => Err(ProducerError::InvalidTxnState {
                producer_id: h.producer_id,
                txn_first_offset: first,
            }),
            _ => Ok(Verdict::Append),
        }
    }

    /// Whether `h` would open its producer's transaction here: a transactional data batch of
    /// the producer's own (not one the broker writes for it) while none is open — the batch
    /// the coordinator must have confirmed (KIP-890's first part).
    pub fn would_open(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && h.base_sequence >= 0
            && self
                .get(h.producer_id)
                .is_none_or(|e| e.txn_first_offset.is_none())
    }

    /// Check a batch about to be written (`batch`: its bytes): a transaction marker by
    /// [`ProducerStates::check_marker`], any other by [`ProducerStates::check`].
    pub fn check_batch(&self, h: &BatchHeader, batch: &[u8]) -> Result<Verdict, ProducerError> {
        match Marker::decode(h, batch) {
            Some(m) => self.check_marker(h, &m).map(|()| Verdict::Append),
            None => self.check(h),
        }
    }

    /// Record a batch written at `first_offset` (`batch`: its bytes): a transaction marker
    /// closes its producer's transaction (giving it, if one was open); any other batch is
    /// recorded by [`ProducerStates::record`].
    pub fn record_batch(
        &mut self,
        h: &BatchHeader,
        batch: &[u8],
        first_offset: i64,
        now_ms: i64,
    ) -> Option<CompletedTxn> {
        match Marker::decode(h, batch) {
            Some(m) => self.record_marker(h, &m, first_offset, now_ms),
            None => {
                self.record(h, first_offset, now_ms);
                None
            }
        }
    }

    /// Check a transaction marker (`h` its batch's header) against this state: one for an
    /// older producer epoch than the current, or from an older coordinator than the last
    /// marker's, is refused. A marker for a producer unknown here is written (it closes no
    /// transaction).
    pub fn check_marker(&self, h: &BatchHeader, m: &Marker) -> Result<(), ProducerError> {
        let Some(entry) = self.entries.get(&h.producer_id) else {
            return Ok(());
        };
        if h.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: h.producer_id,
                current: entry.epoch,
                got: h.producer_epoch,
            });
        }
        if entry.coordinator_epoch > m.coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced {
                producer_id: h.producer_id,
                current: entry.coordinator_epoch,
                got: m.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Record a marker written at `offset` (after [`ProducerStates::check_marker`]): the
    /// producer's transaction here, if one was open, is completed. A marker of a newer epoch
    /// (a fenced producer's transaction aborted by its coordinator) starts the producer's
    /// sequence again.
    pub fn record_marker(
        &mut self,
        h: &BatchHeader,
        m: &Marker,
        offset: i64,
        now_ms: i64,
    ) -> Option<CompletedTxn> {
        let entry = self.entry(h, now_ms);
        entry.coordinator_epoch = m.coordinator_epoch;
        entry.last_write_ms = entry.last_write_ms.max(now_ms);
        let closed = entry.txn_first_offset.take();
        self.note_open(h.producer_id, closed, None);
        closed.map(|first_offset| CompletedTxn {
            producer_id: h.producer_id,
            first_offset,
            last_offset: offset,
            aborted: !m.commit,
        })
    }

    /// The producer's entry, made if it is new, at the batch's epoch (a new epoch forgets the
    /// last one's batches).
    fn entry(&mut self, h: &BatchHeader, now_ms: i64) -> &mut ProducerEntry {
        let entry = self
            .entries
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_write_ms: now_ms,
                txn_first_offset: None,
                coordinator_epoch: -1,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry
    }

    /// Record a batch written at `first_offset` (after [`ProducerStates::check`] said Append).
    pub fn record(&mut self, h: &BatchHeader, first_offset: i64, now_ms: i64) {
        // A control batch is no producer's data (a marker is recorded by `record_marker`).
        if h.producer_id < 0 || h.is_control() {
            return;
        }
        let entry = self.entry(h, now_ms);
        // A batch the cleaner emptied opens nothing: its transaction was decided before it
        // was cleaned, and once its records are all gone its marker may be emptied too (to an
        // empty transactional batch, which ends nothing).
        let opens = h.is_transactional() && h.record_count > 0 && entry.txn_first_offset.is_none();
        if opens {
            entry.txn_first_offset = Some(first_offset);
        }
        // A batch the broker wrote for the producer has no sequence to remember.
        if h.base_sequence >= 0 {
            entry.batches.push_back(BatchMeta {
                first_seq: h.base_sequence,
                last_seq: last_seq(h),
                first_offset,
                last_offset: first_offset + h.last_offset_delta as i64,
            });
        }
        while entry.batches.len() > BATCHES_RETAINED {
            entry.batches.pop_front();
        }
        entry.last_write_ms = entry.last_write_ms.max(now_ms);
        if opens {
            self.note_open(h.producer_id, None, Some(first_offset));
        }
    }

    /// Put a producer's entry back as it was (`None`: it was not known).
    pub fn restore(&mut self, producer_id: i64, entry: Option<ProducerEntry>) {
        let now = entry.as_ref().and_then(|e| e.txn_first_offset);
        let was = match entry {
            Some(e) => self.entries.insert(producer_id, e),
            None => self.entries.remove(&producer_id),
        };
        self.note_open(producer_id, was.and_then(|e| e.txn_first_offset), now);
    }

    /// Record a batch and say what it changed (see [`Undo`]).
    pub fn record_with_undo(
        &mut self,
        h: &BatchHeader,
        first_offset: i64,
        now_ms: i64,
        undo: &mut Undo,
    ) {
        self.note_undo(h.producer_id, undo);
        self.record(h, first_offset, now_ms);
    }

    /// Record a marker and say what it changed (see [`Undo`]).
    pub fn record_marker_with_undo(
        &mut self,
        h: &BatchHeader,
        m: &Marker,
        offset: i64,
        now_ms: i64,
        undo: &mut Undo,
    ) -> Option<CompletedTxn> {
        self.note_undo(h.producer_id, undo);
        self.record_marker(h, m, offset, now_ms)
    }

    /// Record a batch by its bytes ([`ProducerStates::record_batch`]) and say what it changed.
    pub fn record_batch_with_undo(
        &mut self,
        h: &BatchHeader,
        batch: &[u8],
        first_offset: i64,
        now_ms: i64,
        undo: &mut Undo,
    ) -> Option<CompletedTxn> {
        self.note_undo(h.producer_id, undo);
        self.record_batch(h, batch, first_offset, now_ms)
    }

    /// Keep the producer's entry as it is before its first change recorded in `undo`.
    fn note_undo(&self, producer_id: i64, undo: &mut Undo) {
        if producer_id >= 0 && !undo.iter().any(|(id, _)| *id == producer_id) {
            undo.push((producer_id, self.get(producer_id).cloned()));
        }
    }

    /// Take over the newer state of the producers in `other` (a commit round's changes).
    pub fn merge(&mut self, other: ProducerStates) {
        for (id, e) in other.entries {
            self.restore(id, Some(e));
        }
    }

    /// The entries of the producers `ids` names, to work on in a commit round.
    pub fn subset<'a>(&self, ids: impl IntoIterator<Item = &'a i64>) -> ProducerStates {
        ProducerStates::from_entries(
            ids.into_iter()
                .filter_map(|id| self.entries.get(id).map(|e| (*id, e.clone())))
                .collect(),
        )
    }

    /// Forget producers that have not written for `max_age_ms` (Kafka's
    /// `producer.id.expiration.ms`): a producer that comes back after that may start anywhere.
    /// A producer whose transaction is open here is kept until its marker.
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| {
            e.txn_first_offset.is_some() || now_ms.saturating_sub(e.last_write_ms) <= max_age_ms
        });
        before - self.entries.len()
    }
}
