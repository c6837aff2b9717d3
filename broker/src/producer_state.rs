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
//! The state is rebuilt after a restart from a snapshot taken when the active segment was
//! started (`<base offset>.snapshot`, CRC-checked) plus the batches of the active segment; a
//! missing or damaged snapshot means scanning every segment.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;

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
}

impl ProducerStates {
    /// Every producer known here: id, epoch, last sequence written, last write (wall ms); by id.
    pub fn describe(&self) -> Vec<(i64, i16, i32, i64)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|(id, e)| {
                let last = e.batches.back().map_or(-1, |b| b.last_seq);
                (*id, e.epoch, last, e.last_write_ms)
            })
            .collect();
        all.sort_unstable();
        all
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

    /// Check an idempotent batch against this state (a batch without a producer id is always
    /// appended).
    pub fn check(&self, h: &BatchHeader) -> Result<Verdict, ProducerError> {
        if h.producer_id < 0 {
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
        if h.producer_epoch == entry.epoch {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
            {
                return Ok(Verdict::Duplicate(*dup));
            }
            let newest = entry.batches.back().map(|b| b.last_seq);
            match newest {
                Some(l) if !follows(l, h.base_sequence) => {
                    return Err(ProducerError::OutOfOrderSequence {
                        producer_id: h.producer_id,
                        epoch: h.producer_epoch,
                        last: l,
                        got: h.base_sequence,
                    })
                }
                _ => {}
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
        Ok(Verdict::Append)
    }

    /// Record a batch written at `first_offset` (after [`ProducerStates::check`] said Append).
    pub fn record(&mut self, h: &BatchHeader, first_offset: i64, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self
            .entries
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_write_ms: now_ms,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            first_offset,
            last_offset: first_offset + h.last_offset_delta as i64,
        });
        while entry.batches.len() > BATCHES_RETAINED {
            entry.batches.pop_front();
        }
        entry.last_write_ms = entry.last_write_ms.max(now_ms);
    }

    /// Put a producer's entry back as it was (`None`: it was not known).
    pub fn restore(&mut self, producer_id: i64, entry: Option<ProducerEntry>) {
        match entry {
            Some(e) => {
                self.entries.insert(producer_id, e);
            }
            None => {
                self.entries.remove(&producer_id);
            }
        }
    }

    /// Record a batch and say what it changed (see [`Undo`]).
    pub fn record_with_undo(
        &mut self,
        h: &BatchHeader,
        first_offset: i64,
        now_ms: i64,
        undo: &mut Undo,
    ) {
        if h.producer_id >= 0 && !undo.iter().any(|(id, _)| *id == h.producer_id) {
            undo.push((h.producer_id, self.get(h.producer_id).cloned()));
        }
        self.record(h, first_offset, now_ms);
    }

    /// Take over the newer state of the producers in `other` (a commit round's changes).
    pub fn merge(&mut self, other: ProducerStates) {
        self.entries.extend(other.entries);
    }

    /// The entries of the producers `ids` names, to work on in a commit round.
    pub fn subset<'a>(&self, ids: impl IntoIterator<Item = &'a i64>) -> ProducerStates {
        ProducerStates {
            entries: ids
                .into_iter()
                .filter_map(|id| self.entries.get(id).map(|e| (*id, e.clone())))
                .collect(),
        }
    }

    /// Forget producers that have not written for `max_age_ms` (Kafka's
    /// `producer.id.expiration.ms`): a producer that comes back after that may start anywhere.
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now_ms.saturating_sub(e.last_write_ms) <= max_age_ms);
        before - self.entries.len()
    }

    /// The snapshot file's content: version, entries, CRC-32 of all that precedes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut ids: Vec<_> = self.entries.keys().copied().collect();
        ids.sort_unstable();
        let mut out = Vec::with_capacity(8 + ids.len() * 64);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let e = &self.entries[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_write_ms.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Read a snapshot written by [`ProducerStates::encode`]; why not, if it is damaged.
    pub fn decode(data: &[u8]) -> Result<ProducerStates, String> {
        let (body, crc) = data
            .split_last_chunk::<4>()
            .ok_or_else(|| "shorter than its checksum".to_string())?;
        let stored = u32::from_be_bytes(*crc);
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(format!(
                "checksum {stored:08x} does not match {computed:08x}"
            ));
        }
        let mut r = Reader(body);
        let version = r.u16()?;
        if version != SNAPSHOT_VERSION {
            return Err(format!("unknown snapshot version {version}"));
        }
        let count = r.u32()?;
        let mut entries = HashMap::new();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_write_ms = r.i64()?;
            let n = r.u8()? as usize;
            if n > BATCHES_RETAINED {
                return Err(format!("{n} batches for producer {id}"));
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            entries.insert(
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_write_ms,
                },
            );
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the last entry", r.0.len()));
        }
        Ok(ProducerStates { entries })
    }
}

const SNAPSHOT_VERSION: u16 = 1;

/// Big-endian fields off the front of a snapshot.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| "cut short".to_string())?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            size: 100,
            last_offset_delta: records - 1,
            first_timestamp: 0,
            max_timestamp: 0,
            record_count: records,
            attributes: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            partition_leader_epoch: 0,
        }
    }

    /// Check and, if it is to be appended, record at `offset`.
    fn append(
        s: &mut ProducerStates,
        h: &BatchHeader,
        offset: i64,
    ) -> Result<Verdict, ProducerError> {
        let v = s.check(h)?;
        if v == Verdict::Append {
            s.record(h, offset, 0);
        }
        Ok(v)
    }

    #[test]
    fn sequences_continue_retries_are_duplicates_and_gaps_are_refused() {
        let mut s = ProducerStates::default();
        assert_eq!(append(&mut s, &batch(7, 0, 0, 3), 100), Ok(Verdict::Append));
        assert_eq!(append(&mut s, &batch(7, 0, 3, 2), 103), Ok(Verdict::Append));
        // The first batch again: answered with its offsets.
        let dup = append(&mut s, &batch(7, 0, 0, 3), 999).unwrap();
        assert_eq!(
            dup,
            Verdict::Duplicate(BatchMeta {
                first_seq: 0,
                last_seq: 2,
                first_offset: 100,
                last_offset: 102
            })
        );
        // A gap.
        assert!(matches!(
            append(&mut s, &batch(7, 0, 6, 1), 105),
            Err(ProducerError::OutOfOrderSequence {
                last: 4,
                got: 6,
                ..
            })
        ));
        // Non-idempotent batches are never checked.
        assert_eq!(
            append(&mut s, &batch(-1, -1, -1, 1), 105),
            Ok(Verdict::Append)
        );
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            append(&mut s, &batch(1, 0, i, 1), i as i64).unwrap();
        }
        assert_eq!(s.get(1).unwrap().batches.len(), BATCHES_RETAINED);
        // Batch 1 is forgotten: a retry of it is now out of order, not a duplicate.
        assert!(append(&mut s, &batch(1, 0, 1, 1), 9).is_err());
        assert!(matches!(
            append(&mut s, &batch(1, 0, 2, 1), 9),
            Ok(Verdict::Duplicate(_))
        ));
    }

    #[test]
    fn epochs_fence_and_restart_the_sequence() {
        let mut s = ProducerStates::default();
        append(&mut s, &batch(1, 3, 0, 1), 0).unwrap();
        assert!(matches!(
            append(&mut s, &batch(1, 2, 1, 1), 1),
            Err(ProducerError::InvalidEpoch {
                current: 3,
                got: 2,
                ..
            })
        ));
        assert!(
            append(&mut s, &batch(1, 4, 5, 1), 1).is_err(),
            "a new epoch starts at 0"
        );
        assert_eq!(append(&mut s, &batch(1, 4, 0, 1), 1), Ok(Verdict::Append));
        // An unknown producer may start anywhere (its state may have expired).
        assert_eq!(append(&mut s, &batch(2, 0, 40, 1), 2), Ok(Verdict::Append));
    }

    #[test]
    fn sequences_wrap_after_the_largest() {
        let mut s = ProducerStates::default();
        append(&mut s, &batch(1, 0, i32::MAX - 1, 2), 0).unwrap();
        assert_eq!(s.get(1).unwrap().batches[0].last_seq, i32::MAX);
        assert_eq!(append(&mut s, &batch(1, 0, 0, 1), 2), Ok(Verdict::Append));
        // A batch that crosses the wrap.
        let mut s = ProducerStates::default();
        append(&mut s, &batch(1, 0, i32::MAX, 3), 0).unwrap();
        assert_eq!(s.get(1).unwrap().batches[0].last_seq, 1);
        assert_eq!(append(&mut s, &batch(1, 0, 2, 1), 3), Ok(Verdict::Append));
    }

    #[test]
    fn snapshots_round_trip_and_damage_is_detected() {
        let mut s = ProducerStates::default();
        for pid in 0..20 {
            for i in 0..(pid % 7) as i32 {
                s.record(&batch(pid, 1, i * 2, 2), pid * 100 + i as i64, 1_000 + pid);
            }
        }
        let data = s.encode();
        assert_eq!(ProducerStates::decode(&data), Ok(s.clone()));
        for at in [0, 5, data.len() / 2, data.len() - 1] {
            let mut bad = data.clone();
            bad[at] ^= 0x20;
            assert!(ProducerStates::decode(&bad).is_err(), "flip at {at}");
        }
        assert!(ProducerStates::decode(&data[..data.len() - 3]).is_err());
        // Expiry by the last write.
        assert_eq!(s.expire(1_010, 5), 4);
        assert!(s.get(19).is_some() && s.get(4).is_none());
    }
}
