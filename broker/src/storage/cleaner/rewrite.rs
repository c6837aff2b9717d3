//! One stored batch as the cleaner leaves it: the records the cleaner keeps, in a batch that
//! keeps the original's offsets (base offset and last offset delta: a cleaned log has gaps in
//! its records, never in its batches), leader epoch, producer id, epoch and sequence, largest
//! timestamp and codec — recompressed with that codec. A batch whose every record goes stays
//! as an empty batch (its header alone, uncompressed): in a replicated log each batch is a
//! Raft entry, counted to find the others, and an idempotent producer's sequence is read from
//! it (on a single node the rewrite then merges runs of them, `pass.rs`). Control batches are
//! never changed.
//!
//! Tombstones follow KIP-534: the first time the cleaner keeps a tombstone of a batch, it sets
//! the batch's delete horizon (now plus `delete.retention.ms`) as its base timestamp, with the
//! record timestamps rewritten as deltas from it; once a later cleaning finds that horizon
//! passed, the tombstone may go.
//!
//! A transaction's marker goes the same way, as Kafka's cleaner removes it: once none of its
//! transaction's records is left (an abort's are removed at once, a commit's as later records
//! supersede them), the marker's batch gets its delete horizon; once a later cleaning finds it
//! passed, the batch stays as its header alone, and no longer a control batch: an empty
//! transactional batch of its producer, which opens no transaction for a scan of the log (no
//! record of its transaction is left to end) and which every client skips — some (kafka-python)
//! fail on a control batch without a record, which Kafka's cleaner never leaves (it removes the
//! batch, where this log keeps every batch's offsets covered). On a single node it is then
//! merged with the emptied batches around it like any other.

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchHeader, DELETE_HORIZON_ATTRIBUTE, HEADER_BYTES};
use crate::records::{self, StoredRecord};

/// What cleaning did to one batch.
pub(super) struct Cleaned {
    /// The new batch; `None`: the batch stays as it is.
    pub bytes: Option<Bytes>,
    /// Records removed.
    pub removed: u64,
}

/// `batch` (stored, its CRC checked; `h` its header) without the records `keep` refuses
/// (`keep(record, offset)`); `horizon` is the delete horizon a batch gets when the first
/// tombstone of it is kept. Records decompress to at most `decompressed_max` bytes.
pub(super) fn clean_batch(
    batch: &[u8],
    h: &BatchHeader,
    decompressed_max: usize,
    horizon: i64,
    mut keep: impl FnMut(&StoredRecord<'_>, i64) -> bool,
) -> Result<Cleaned, String> {
    let unchanged = Cleaned {
        bytes: None,
        removed: 0,
    };
    if h.is_control() || h.record_count == 0 {
        return Ok(unchanged);
    }
    let codec = h.compression();
    let body = &batch[HEADER_BYTES..h.size];
    let plain;
    let stored: &[u8] = if codec == 0 {
        body
    } else {
        plain = records::decompress(codec, body, decompressed_max).map_err(|e| e.to_string())?;
        &plain
    };
    let all = records::stored_records(stored, h.record_count)?;
    let kept: Vec<&StoredRecord<'_>> = all
        .iter()
        .filter(|r| keep(r, h.base_offset + i64::from(r.offset_delta)))
        .collect();
    let set_horizon = h.delete_horizon().is_none() && kept.iter().any(|r| r.value.is_none());
    if kept.len() == all.len() && !set_horizon {
        return Ok(unchanged);
    }
    let base_timestamp = if set_horizon {
        horizon
    } else {
        h.first_timestamp
    };
    let mut out = BytesMut::with_capacity(stored.len());
    for r in &kept {
        let timestamp = h.first_timestamp.saturating_add(r.timestamp_delta);
        records::encode_record(&mut out, r, timestamp.saturating_sub(base_timestamp));
    }
    let (codec, body) = if kept.is_empty() || codec == 0 {
        (0, out.to_vec())
    } else {
        (codec, crate::compression::compress(codec, &out))
    };
    Ok(Cleaned {
        bytes: Some(batch::rebuild(
            batch,
            &body,
            codec,
            kept.len() as i32,
            base_timestamp,
            if set_horizon {
                DELETE_HORIZON_ATTRIBUTE
            } else {
                0
            },
        )),
        removed: (all.len() - kept.len()) as u64,
    })
}

/// A transaction marker's batch (stored, CRC checked; `h` its header) whose transaction has no
/// record left: it gets the delete horizon `horizon` if it has none, and once its horizon is at
/// or before `now_ms` becomes an empty transactional batch (no record, not a control batch).
pub(super) fn clean_marker(batch: &[u8], h: &BatchHeader, horizon: i64, now_ms: i64) -> Cleaned {
    match h.delete_horizon() {
        _ if h.record_count == 0 => Cleaned {
            bytes: None,
            removed: 0,
        },
        Some(at) if at <= now_ms => {
            let mut empty = batch::rebuild(batch, &[], 0, 0, h.first_timestamp, 0).to_vec();
            batch::clear_control(&mut empty);
            Cleaned {
                bytes: Some(empty.into()),
                removed: 1,
            }
        }
        Some(_) => Cleaned {
            bytes: None,
            removed: 0,
        },
        None => {
            // The record's timestamp delta is kept: the marker's time is not read back.
            Cleaned {
                bytes: Some(batch::rebuild(
                    batch,
                    &batch[HEADER_BYTES..h.size],
                    0,
                    h.record_count,
                    horizon,
                    DELETE_HORIZON_ATTRIBUTE,
                )),
                removed: 0,
            }
        }
    }
}

/// Which producers' transactions still have records, read in offset order through one
/// cleaning (from the log's first segment, so every transaction's batches are seen before its
/// marker).
#[derive(Default)]
pub(super) struct Transactions(std::collections::HashMap<i64, bool>);

impl Transactions {
    /// A transactional data batch `h` read, with records left in it or not.
    pub(super) fn data(&mut self, h: &BatchHeader, records_left: bool) {
        if h.is_transactional() && !h.is_control() && h.producer_id >= 0 {
            *self.0.entry(h.producer_id).or_default() |= records_left;
        }
    }

    /// Whether `h`, a transaction marker, ends a transaction with no record left (the next
    /// one of its producer starts after it).
    pub(super) fn ends_empty(&mut self, h: &BatchHeader) -> bool {
        h.is_control()
            && h.is_transactional()
            && h.producer_id >= 0
            && !self.0.remove(&h.producer_id).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    /// A batch at offset 100 of records (key, value) with timestamps 1000 + i.
    fn keyed_batch(records: &[(Option<&str>, Option<&str>)], codec: i16) -> Bytes {
        let mut recs = BytesMut::new();
        for (i, (k, v)) in records.iter().enumerate() {
            let r = StoredRecord {
                attributes: 0,
                timestamp_delta: i as i64,
                offset_delta: i as i32,
                key: k.map(str::as_bytes),
                value: v.map(str::as_bytes),
                headers: &[0],
            };
            records::encode_record(&mut recs, &r, i as i64);
        }
        let body = if codec == 0 {
            recs.to_vec()
        } else {
            crate::compression::compress(codec, &recs)
        };
        let mut b = BytesMut::new();
        b.put_i64(100);
        b.put_i32(0); // length, set by rebuild
        b.put_i32(7); // leader epoch
        b.put_i8(2);
        b.put_u32(0); // crc
        b.put_i16(0);
        b.put_i32(records.len() as i32 - 1);
        b.put_i64(1000);
        b.put_i64(1000 + records.len() as i64 - 1);
        b.put_i64(42); // producer id
        b.put_i16(1);
        b.put_i32(10);
        b.put_i32(records.len() as i32);
        batch::rebuild(&b, &body, codec, records.len() as i32, 1000, 0)
    }

    /// A record read back: offset, timestamp, key, value.
    type Read = (i64, i64, Option<String>, Option<String>);

    fn read(b: &[u8]) -> (BatchHeader, Vec<Read>) {
        let h = batch::validate_stored(b).expect("a valid stored batch");
        let plain = if h.compression() == 0 {
            b[HEADER_BYTES..].to_vec()
        } else {
            records::decompress(h.compression(), &b[HEADER_BYTES..], 1 << 20).unwrap()
        };
        let recs = records::stored_records(&plain, h.record_count)
            .unwrap()
            .iter()
            .map(|r| {
                let s = |x: Option<&[u8]>| x.map(|b| String::from_utf8(b.to_vec()).unwrap());
                (
                    h.base_offset + i64::from(r.offset_delta),
                    h.first_timestamp + r.timestamp_delta,
                    s(r.key),
                    s(r.value),
                )
            })
            .collect();
        (h, recs)
    }

    #[test]
    fn kept_records_keep_their_offsets_and_timestamps_in_every_codec() {
        for codec in 0..=4 {
            let b = keyed_batch(
                &[
                    (Some("a"), Some("1")),
                    (Some("b"), Some("2")),
                    (Some("a"), Some("3")),
                ],
                codec,
            );
            let h = batch::validate_stored(&b).unwrap();
            let c = clean_batch(&b, &h, 1 << 20, 0, |r, _| r.value != Some(b"1")).unwrap();
            assert_eq!(c.removed, 1);
            let (nh, recs) = read(&c.bytes.unwrap());
            assert_eq!(
                (nh.base_offset, nh.last_offset_delta),
                (100, 2),
                "offsets kept"
            );
            assert_eq!(nh.compression(), codec, "the codec kept");
            assert_eq!(
                (nh.producer_id, nh.producer_epoch, nh.base_sequence),
                (42, 1, 10)
            );
            assert_eq!((nh.partition_leader_epoch, nh.max_timestamp), (7, 1002));
            assert_eq!(
                recs,
                vec![
                    (101, 1001, Some("b".into()), Some("2".into())),
                    (102, 1002, Some("a".into()), Some("3".into()))
                ]
            );
        }
    }

    #[test]
    fn a_batch_with_nothing_left_stays_as_an_empty_batch_and_one_unchanged_is_not_rewritten() {
        let b = keyed_batch(&[(Some("a"), Some("1")), (None, Some("x"))], 4);
        let h = batch::validate_stored(&b).unwrap();
        let none = clean_batch(&b, &h, 1 << 20, 0, |_, _| true).unwrap();
        assert!(none.bytes.is_none());
        let gone = clean_batch(&b, &h, 1 << 20, 0, |_, _| false).unwrap();
        let empty = gone.bytes.unwrap();
        let (nh, recs) = read(&empty);
        assert!(recs.is_empty());
        assert_eq!(
            (nh.record_count, nh.next_offset(), nh.compression()),
            (0, 102, 0)
        );
        assert_eq!(empty.len(), HEADER_BYTES);
        // Valid as stored, never as produced.
        assert!(batch::validate(&empty).is_err());
    }

    #[test]
    fn a_kept_tombstone_sets_the_delete_horizon_once() {
        let b = keyed_batch(&[(Some("a"), None), (Some("b"), Some("2"))], 0);
        let h = batch::validate_stored(&b).unwrap();
        let c = clean_batch(&b, &h, 1 << 20, 50_000, |_, _| true).unwrap();
        let cleaned = c.bytes.expect("rewritten to carry its horizon");
        let (nh, recs) = read(&cleaned);
        assert_eq!(nh.delete_horizon(), Some(50_000));
        // Timestamps read back unchanged under the new base.
        assert_eq!(recs[0].1, 1000);
        assert_eq!(recs[1].1, 1001);
        // Cleaned again: the horizon stays, nothing changes.
        let again = clean_batch(&cleaned, &nh, 1 << 20, 90_000, |_, _| true).unwrap();
        assert!(again.bytes.is_none());
    }
}
