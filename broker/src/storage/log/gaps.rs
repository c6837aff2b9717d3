//! Kafka offsets over a replicated log whose Raft entries are not all records.
//!
//! A replicated partition's log stores every Raft entry as one batch at its own *log offset*:
//! produced batches, and Raft's own entries (a new leader's empty entry, a log-start mark),
//! stored as control batches of one record marked [`crate::batch::OWN_ENTRY_ATTRIBUTE`]. Kafka
//! never spends an offset on a leader change, so those batches take no *Kafka offset*: they are
//! gaps, and a record's Kafka offset is its log offset less the gaps before it. Inside the
//! broker (the log, Raft, the group coordinator's and the controller's own reads) offsets are
//! log offsets; the handlers translate what a client sends and sees (`api::offsets`), and a
//! Fetch is served its batches with Kafka base offsets (outside the CRC) and without the gaps.
//!
//! Whether a batch is a gap is in its bytes, which are the same on every replica, so every
//! replica translates alike, after recovery (the active segment's gaps are found again by its
//! scan), and after a snapshot (which carries how many gaps lie before its log start). Batches
//! written before the attribute existed lack it and keep the Kafka offset they took, so an
//! existing data directory reads as it did.
//!
//! A non-replicated log has no gaps: both offsets are the same.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::{FetchData, Partition, PartitionState, ReadError};
use crate::batch;
use crate::storage::Io;

/// The gaps of a log: how many lie before the part it describes, and where each later one is.
///
/// Invariant: `at` increases strictly. Translations are exact for offsets at or after the
/// first segment's base when [`Gaps::prune`] was last called.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gaps {
    /// Gaps before the first offset the log still describes.
    #[serde(default)]
    pub before: i64,
    /// Log offsets of the later gaps, in increasing order.
    #[serde(default)]
    pub at: Vec<i64>,
}

impl Gaps {
    /// No gaps at all: Kafka offsets are log offsets.
    pub fn is_empty(&self) -> bool {
        self.before == 0 && self.at.is_empty()
    }

    /// A gap at log offset `log`, after every gap known so far.
    pub fn push(&mut self, log: i64) {
        debug_assert!(self.at.last().is_none_or(|&g| g < log), "gaps in order");
        self.at.push(log);
    }

    /// Forget the gaps from log offset `from` on (the log was cut there).
    pub fn truncate(&mut self, from: i64) {
        let keep = self.at.partition_point(|&g| g < from);
        self.at.truncate(keep);
    }

    /// The log holds nothing before `first_base` any more: count the gaps before it.
    pub fn prune(&mut self, first_base: i64) {
        let drop = self.at.partition_point(|&g| g < first_base);
        self.before += drop as i64;
        self.at.drain(..drop);
    }

    /// What translates offsets from log offset `log` on: the gaps before it, and those at or
    /// after it.
    pub fn from(&self, log: i64) -> (i64, Vec<i64>) {
        let at = self.at.partition_point(|&g| g < log);
        (self.before + at as i64, self.at[at..].to_vec())
    }

    /// Whether offsets from log offset `log` on still translate as `then` (taken by
    /// [`Gaps::from`]) said: the same gaps before it, and those after it kept (new ones may
    /// follow them, where the log grew). A log cut or reset since then does not.
    pub fn still(&self, log: i64, then: &(i64, Vec<i64>)) -> bool {
        let at = self.at.partition_point(|&g| g < log);
        self.before + at as i64 == then.0 && self.at[at..].starts_with(&then.1)
    }

    /// Gaps before log offset `log`.
    pub fn before(&self, log: i64) -> i64 {
        self.before + self.at.partition_point(|&g| g < log) as i64
    }

    /// The Kafka offset of log offset `log`: of the record there, or for a gap (and for the
    /// log's end) of the next record to come.
    pub fn to_kafka(&self, log: i64) -> i64 {
        log - self.before(log)
    }

    /// The log offset of the record at Kafka offset `kafka`: the first log offset past every
    /// gap whose Kafka offset (the next record's) is at or before `kafka`.
    pub fn to_log(&self, kafka: i64) -> i64 {
        // A gap's Kafka offset is `at[i] - before - i`, which never decreases with `i`: the
        // gaps at or before `kafka` are a prefix, found by bisection.
        let (mut low, mut high) = (0usize, self.at.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.at[mid] - self.before - mid as i64 <= kafka {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        kafka + self.before + low as i64
    }
}

/// A replicated partition's offsets as a client sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaOffsets {
    pub log_start: i64,
    pub high_watermark: i64,
    pub last_stable: i64,
    pub log_end: i64,
}

impl Partition {
    /// Translate with this log's gaps (none on a single node).
    fn translated<R>(&self, f: impl FnOnce(&Gaps, &PartitionState) -> R) -> R {
        let st = self.state();
        match st.replica.as_ref() {
            Some(r) => f(&r.meta.gaps, &st),
            None => f(&Gaps::default(), &st),
        }
    }

    /// The Kafka offset of log offset `log`.
    pub fn to_kafka(&self, log: i64) -> i64 {
        self.translated(|g, _| g.to_kafka(log))
    }

    /// The log offset of Kafka offset `kafka`: a committed record's; the high watermark for
    /// the Kafka high watermark; outside the log (below its start, past its high watermark),
    /// as far outside in log offsets, so that a read there says so.
    pub fn to_log(&self, kafka: i64) -> i64 {
        self.translated(|g, st| log_of(g, st, kafka))
    }

    /// The log start, high watermark, last stable offset and log end in Kafka offsets.
    pub fn kafka_offsets(&self) -> KafkaOffsets {
        self.translated(|g, st| KafkaOffsets {
            log_start: g.to_kafka(st.log_start_offset),
            high_watermark: g.to_kafka(st.high_watermark()),
            last_stable: g.to_kafka(st.last_stable_offset()),
            log_end: g.to_kafka(st.log_end_offset()),
        })
    }

    /// [`Partition::read_isolated`] in Kafka offsets: from the batch holding Kafka offset
    /// `offset`, the batches as a client is served them (base offsets in Kafka offsets, Raft's
    /// own entries left out), with the high watermark and log start in Kafka offsets. `None`
    /// when the log was cut or reset while it was read (a replica moved away and emptied, say):
    /// what was read no longer translates, and a client must not get it at offsets of another
    /// log (the caller answers a retriable error).
    pub async fn read_kafka(
        &self,
        io: &Io,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
        isolation: super::Isolation,
    ) -> Result<Option<FetchData>, ReadError> {
        let (from, then) = self.translated(|g, st| {
            let from = log_of(g, st, offset);
            (from, g.from(from))
        });
        match self
            .read_isolated(io, from, max_bytes, at_least_one, isolation)
            .await
        {
            Ok(data) => Ok(self.translated(|g, _| {
                g.still(from, &then).then(|| FetchData {
                    records: served(data.records, g),
                    high_watermark: g.to_kafka(data.high_watermark),
                    log_start_offset: g.to_kafka(data.log_start_offset),
                    last_stable_offset: g.to_kafka(data.last_stable_offset),
                    aborted: data
                        .aborted
                        .iter()
                        .map(|&(producer, first)| (producer, g.to_kafka(first)))
                        .collect(),
                })
            })),
            Err(ReadError::OffsetOutOfRange {
                log_start,
                high_watermark,
                ..
            }) => Err(self.translated(|g, _| ReadError::OffsetOutOfRange {
                offset,
                log_start: g.to_kafka(log_start),
                high_watermark: g.to_kafka(high_watermark),
            })),
            Err(e) => Err(e),
        }
    }
}

/// The log offset of Kafka offset `kafka` ([`Partition::to_log`]).
fn log_of(g: &Gaps, st: &PartitionState, kafka: i64) -> i64 {
    let (hw, start) = (st.high_watermark(), st.log_start_offset);
    let (k_hw, k_start) = (g.to_kafka(hw), g.to_kafka(start));
    if kafka >= k_hw {
        hw + (kafka - k_hw)
    } else if kafka < k_start {
        start - (k_start - kafka)
    } else {
        g.to_log(kafka)
    }
}

/// Batches read from a log as a client is served them: Raft's own entries left out, every base
/// offset a Kafka offset (the base offset is outside the CRC). Without gaps, the bytes as read;
/// with them, patched where they lie when nothing else holds the read's buffer, else in a copy.
pub fn served(records: Bytes, gaps: &Gaps) -> Bytes {
    if gaps.is_empty() {
        return records;
    }
    let mut buf = records
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    // Batches kept move down over those left out: `write` never passes `read`.
    let (mut read, mut write) = (0usize, 0usize);
    while read < buf.len() {
        let Ok(h) = batch::parse_header(&buf[read..]) else {
            // Whole batches are read; anything else is passed on as it is.
            let len = buf.len() - read;
            buf.copy_within(read.., write);
            write += len;
            break;
        };
        let end = (read + h.size).min(buf.len());
        if !h.takes_no_offset() {
            if read != write {
                buf.copy_within(read..end, write);
            }
            let base = gaps.to_kafka(h.base_offset);
            buf[write..write + batch::BASE_OFFSET_LEN].copy_from_slice(&base.to_be_bytes());
            write += end - read;
        }
        read = end;
    }
    buf.truncate(write);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious model: a log of entries, each a gap or a batch of records.
    fn model(entries: &[Option<u32>]) -> (Gaps, Vec<(i64, i64)>) {
        let mut gaps = Gaps::default();
        let (mut log, mut kafka) = (0i64, 0i64);
        let mut records = Vec::new(); // (log offset, Kafka offset) of every record
        for e in entries {
            match e {
                None => {
                    gaps.push(log);
                    log += 1;
                }
                Some(n) => {
                    for _ in 0..*n {
                        records.push((log, kafka));
                        log += 1;
                        kafka += 1;
                    }
                }
            }
        }
        (gaps, records)
    }

    proptest! {
        #[test]
        fn every_record_translates_both_ways(
            entries in proptest::collection::vec(proptest::option::weighted(0.7, 1u32..5), 0..60),
            prune_at in 0usize..60,
        ) {
            let (mut gaps, records) = model(&entries);
            // Pruning before some record keeps every later translation.
            let first = records.get(prune_at.min(records.len().saturating_sub(1))).map_or(0, |r| r.0);
            gaps.prune(first);
            for &(log, kafka) in records.iter().filter(|r| r.0 >= first) {
                prop_assert_eq!(gaps.to_kafka(log), kafka);
                prop_assert_eq!(gaps.to_log(kafka), log);
                prop_assert!(gaps.at.binary_search(&log).is_err(), "a record is no gap");
            }
            // The end of the log translates to the next record to come.
            let end_log = entries.iter().map(|e| e.map_or(1, i64::from)).sum::<i64>();
            let end_kafka = records.len() as i64;
            prop_assert_eq!(gaps.to_kafka(end_log), end_kafka);
            prop_assert_eq!(gaps.to_log(end_kafka), end_log, "past the trailing gaps");
        }
    }

    #[test]
    fn elections_take_no_offset() {
        // A new leader's entry, 3 records, two elections, 2 records.
        let (mut gaps, records) = model(&[None, Some(3), None, None, Some(2)]);
        assert_eq!(
            records,
            vec![(1, 0), (2, 1), (3, 2), (6, 3), (7, 4)],
            "dense from 0 across elections"
        );
        assert_eq!(gaps.to_kafka(0), 0, "the first gap's next record is 0");
        assert_eq!(gaps.to_kafka(4), 3);
        assert_eq!(gaps.to_kafka(8), 5, "the log end");
        assert_eq!(gaps.to_log(0), 1);
        assert_eq!(gaps.to_log(3), 6);
        assert_eq!(gaps.to_log(5), 8);
        assert_eq!(gaps.at, vec![0, 4, 5]);
        gaps.truncate(5);
        assert_eq!(gaps.at, vec![0, 4]);
        gaps.prune(2);
        assert_eq!((gaps.before, gaps.at.clone()), (1, vec![4]));
        assert_eq!(gaps.to_kafka(2), 1);
        assert_eq!(gaps.to_log(3), 5);
    }

    #[test]
    fn a_read_translates_only_while_the_gaps_it_began_with_still_hold() {
        let mut gaps = Gaps {
            before: 2,
            at: vec![3, 8, 12],
        };
        let then = gaps.from(8);
        assert_eq!(then, (3, vec![8, 12]));
        gaps.push(20);
        assert!(gaps.still(8, &then), "the log grew: new gaps follow");
        gaps.prune(5);
        assert!(gaps.still(8, &then), "retention below the read");
        let mut cut = gaps.clone();
        cut.truncate(10);
        assert!(!cut.still(8, &then), "the log was cut inside the read");
        assert!(
            !Gaps::default().still(8, &then),
            "the log was reset (emptied, or to a leader's snapshot)"
        );
    }

    #[test]
    fn a_read_is_served_without_own_entries_and_with_kafka_offsets_shared_or_not() {
        use crate::batch::tests::make_batch;
        // Log offsets: own entry 0, 3 records at 1, own entry 4, 2 records at 5.
        let at = |mut b: BytesMut, base: i64| {
            b[..8].copy_from_slice(&base.to_be_bytes());
            b
        };
        let mut log = BytesMut::new();
        log.extend_from_slice(&at(BytesMut::from(&batch::leader_change_batch()[..]), 0));
        log.extend_from_slice(&at(BytesMut::from(&make_batch(3, 0, 8)[..]), 1));
        log.extend_from_slice(&at(BytesMut::from(&batch::leader_change_batch()[..]), 4));
        log.extend_from_slice(&at(BytesMut::from(&make_batch(2, 0, 8)[..]), 5));
        let log = log.freeze();
        let gaps = Gaps {
            before: 0,
            at: vec![0, 4],
        };
        let seen = |b: &Bytes| -> Vec<(i64, i32)> {
            batch::scan(b)
                .map(|(at, h)| {
                    batch::validate(&b[at..at + h.size]).expect("a served batch is valid");
                    (h.base_offset, h.record_count)
                })
                .collect()
        };
        let shared = log.clone(); // held: the read's buffer is copied
        let copied = served(log.clone(), &gaps);
        drop(shared);
        let in_place = served(log, &gaps); // the only holder: patched where it lies
        assert_eq!(seen(&copied), vec![(0, 3), (3, 2)]);
        assert_eq!(copied, in_place);
    }
}
