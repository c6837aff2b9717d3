//! Transaction markers: the control batch a partition's leader writes to end a producer's
//! transaction there (Kafka's end-transaction marker). Its attributes say transactional and
//! control; its producer id and epoch are the transaction's; its one record's key is the control
//! record key (version 0, type 0 for an abort, 1 for a commit) and its value the marker (version
//! 0, then the epoch of the transaction coordinator that decided it, `EndTxnMarker`).
//!
//! A consumer never sees the marker as a record: it reads it to learn that the producer's
//! records before it, in this partition, were committed or aborted. Clients never send one (a
//! produced control batch is refused); only the broker writes them.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::EndTxnMarker;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::batch::{self, BatchHeader, ControlBatch, TRANSACTIONAL_ATTRIBUTE};

/// The control record type of an abort marker.
pub const ABORT: i16 = 0;
/// The control record type of a commit marker.
pub const COMMIT: i16 = 1;

/// What a marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Whether the transaction committed (otherwise it aborted).
    pub commit: bool,
    /// The epoch of the coordinator that decided it (its partition of the transaction log's
    /// leader epoch): a marker from an older coordinator than the last one seen is fenced.
    pub coordinator_epoch: i32,
}

/// Whether the control record key `key` (version, type) is a commit marker's (`Some(true)`)
/// or an abort marker's (`Some(false)`); `None` for any other control record.
pub fn commit_of_key(key: &[u8]) -> Option<bool> {
    let control_type = i16::from_be_bytes(key.get(2..4)?.try_into().ok()?);
    match control_type {
        COMMIT => Some(true),
        ABORT => Some(false),
        _ => None,
    }
}

impl Marker {
    /// The marker's batch for the producer `producer_id` at `producer_epoch`, stamped `now_ms`,
    /// at base offset 0 (the offset and leader epoch are set when it is written).
    pub fn encode(&self, producer_id: i64, producer_epoch: i16, now_ms: i64) -> Bytes {
        let mut value = BytesMut::with_capacity(6);
        value.put_i16(0);
        EndTxnMarker::default()
            .with_coordinator_epoch(self.coordinator_epoch)
            .encode(&mut value, 0)
            .expect("an EndTxnMarker of version 0 encodes");
        ControlBatch {
            attributes: TRANSACTIONAL_ATTRIBUTE,
            producer_id,
            producer_epoch,
            timestamp_ms: now_ms,
            control_type: if self.commit { COMMIT } else { ABORT },
            value: Some(&value),
        }
        .encode()
    }

    /// The marker of the batch at the start of `batch` (whose header is `h`): `None` unless it
    /// is a transactional control batch of an abort or a commit whose value reads. A newer
    /// version of the value is read by its first fields, as Kafka's readers do.
    pub fn decode(h: &BatchHeader, batch: &[u8]) -> Option<Marker> {
        if !(h.is_control() && h.is_transactional()) {
            return None;
        }
        let (control_type, value) = batch::control_record(batch)?;
        let commit = match control_type {
            COMMIT => true,
            ABORT => false,
            _ => return None,
        };
        let mut value = Bytes::copy_from_slice(value?);
        let version = i16::from_be_bytes(value.get(..2)?.try_into().ok()?);
        if version < 0 {
            return None;
        }
        let _ = bytes::Buf::get_i16(&mut value);
        let m = EndTxnMarker::decode(&mut value, 0).ok()?;
        Some(Marker {
            commit,
            coordinator_epoch: m.coordinator_epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn a_marker_is_what_kafkas_decoder_reads_as_one() {
        for commit in [true, false] {
            let m = Marker {
                commit,
                coordinator_epoch: 17,
            };
            let bytes = m.encode(4_000_000_001, 9, 1_700_000_000_123);
            let h = batch::validate(&bytes).expect("a valid batch");
            assert!(h.is_control() && h.is_transactional() && !h.takes_no_offset());
            assert_eq!((h.producer_id, h.producer_epoch), (4_000_000_001, 9));
            assert_eq!(Marker::decode(&h, &bytes), Some(m));

            let set = RecordBatchDecoder::decode(&mut bytes.clone()).expect("decodes");
            let [r] = &set.records[..] else {
                panic!("one record, got {}", set.records.len());
            };
            assert!(r.control && r.transactional);
            assert_eq!((r.producer_id, r.producer_epoch), (4_000_000_001, 9));
            assert_eq!(r.timestamp, 1_700_000_000_123);
            let key = r.key.as_ref().expect("a key");
            assert_eq!(&key[..], &[0, 0, 0, commit as u8]);
            let value = r.value.as_ref().expect("a value");
            assert_eq!(&value[..], &[0, 0, 0, 0, 0, 17]);
        }
    }

    /// What Kafka 4.4's `MemoryRecords.withEndTransactionMarker(0, 1700000000123, 0,
    /// 4000000001, 9, marker(type, 17))` writes, byte for byte.
    #[test]
    fn a_marker_is_the_bytes_kafka_writes() {
        let kafka = [
            (true, "0000000000000000000000420000000002a600e2440030000000000000018bcfe5687b0000018bcfe5687b00000000ee6b28010009ffffffff000000012000000008000000010c00000000001100"),
            (false, "0000000000000000000000420000000002523e340c0030000000000000018bcfe5687b0000018bcfe5687b00000000ee6b28010009ffffffff000000012000000008000000000c00000000001100"),
        ];
        for (commit, hex) in kafka {
            let ours = Marker {
                commit,
                coordinator_epoch: 17,
            }
            .encode(4_000_000_001, 9, 1_700_000_000_123);
            let ours: String = ours.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(ours, hex, "commit {commit}");
        }
    }

    #[test]
    fn other_batches_are_not_markers() {
        let own = batch::leader_change_batch();
        let h = batch::validate(&own).unwrap();
        assert_eq!(Marker::decode(&h, &own), None, "control, not transactional");

        // A transactional control batch of another type (KRaft's leader change).
        let other = ControlBatch {
            attributes: TRANSACTIONAL_ATTRIBUTE,
            producer_id: 1,
            producer_epoch: 0,
            timestamp_ms: 0,
            control_type: 2,
            value: Some(&[0, 0, 0, 0, 0, 1]),
        }
        .encode();
        let h = batch::validate(&other).unwrap();
        assert_eq!(Marker::decode(&h, &other), None);

        // A value cut short, and one of a newer version with more after it.
        for (value, read) in [
            (&[0u8, 0, 0, 0, 1][..], None),
            (
                &[0u8, 1, 0, 0, 0, 3, 9, 9][..],
                Some(Marker {
                    commit: true,
                    coordinator_epoch: 3,
                }),
            ),
        ] {
            let b = ControlBatch {
                attributes: TRANSACTIONAL_ATTRIBUTE,
                producer_id: 1,
                producer_epoch: 0,
                timestamp_ms: 0,
                control_type: COMMIT,
                value: Some(value),
            }
            .encode();
            let h = batch::validate(&b).unwrap();
            assert_eq!(Marker::decode(&h, &b), read, "value {value:?}");
        }
    }
}
