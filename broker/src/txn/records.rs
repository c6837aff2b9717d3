//! The records of `__transaction_state`, in Kafka's own schemas (so Kafka's tools can read the
//! topic): keyed by the transactional id (key version 0, `TransactionLogKey`), the value is the
//! id's whole state after a transition (`TransactionLogValue` version 0: producer id and epoch,
//! timeout, state, partitions, last update and start times); a record without a value (a
//! tombstone) means the id expired. The topic is compacted: the last record of an id is its
//! state.
//!
//! What the value does not hold, Kafka's neither: the producer's previous epoch (kept in memory
//! only, for a retried InitProducerId) is unknown after a reload.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use super::metadata::{TxnMetadata, TxnState};
use crate::schema::{put_str, Reader};

/// The value version this broker writes (and the only one it reads).
const VALUE_VERSION: i16 = 0;

/// One record of the topic: an id and its state (`None`: expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub value: Option<TxnMetadata>,
}

impl TxnRecord {
    /// The record's key and value bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        key.put_i16(0);
        put_str(&mut key, &self.transactional_id);
        let value = self.value.as_ref().map(|m| {
            let mut b = BytesMut::new();
            b.put_i16(VALUE_VERSION);
            b.put_i64(m.producer_id);
            b.put_i16(m.producer_epoch);
            b.put_i32(m.timeout_ms);
            b.put_i8(m.state.id());
            if m.state == TxnState::Empty {
                b.put_i32(-1); // Kafka writes no partitions for an empty transaction
            } else {
                let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
                for (topic, partition) in &m.partitions {
                    match topics.last_mut() {
                        Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
                        _ => topics.push((topic, vec![*partition])),
                    }
                }
                b.put_i32(topics.len() as i32);
                for (topic, partitions) in topics {
                    put_str(&mut b, topic);
                    b.put_i32(partitions.len() as i32);
                    for p in partitions {
                        b.put_i32(p);
                    }
                }
            }
            b.put_i64(m.last_update_ms);
            b.put_i64(m.start_ms);
            b.freeze()
        });
        (key.freeze(), value)
    }

    /// Read one record; `None` for a key version this broker does not know (skipped, as
    /// Kafka does). A damaged record is an error, not a panic.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<TxnRecord>, String> {
        let mut k = Reader(key);
        if k.i16()? != 0 {
            return Ok(None);
        }
        let transactional_id = k.string()?;
        let value = value.map(decode_value).transpose()?;
        Ok(Some(TxnRecord {
            transactional_id,
            value,
        }))
    }
}

fn decode_value(v: &[u8]) -> Result<TxnMetadata, String> {
    let mut r = Reader(v);
    let version = r.i16()?;
    if version != VALUE_VERSION {
        return Err(format!(
            "transaction state value version {version} is not known"
        ));
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let id = r.i8()?;
    let state = TxnState::from_id(id).ok_or_else(|| format!("unknown state {id}"))?;
    let mut partitions = BTreeSet::new();
    let topics = r.i32()?;
    if topics > 0 && topics as usize > v.len() {
        return Err(format!("{topics} topics"));
    }
    for _ in 0..topics.max(0) {
        let topic = r.string()?;
        let n = r.i32()?;
        if n < 0 || n as usize > v.len() {
            return Err(format!("{n} partitions of {topic}"));
        }
        for _ in 0..n {
            partitions.insert((topic.clone(), r.i32()?));
        }
    }
    if state == TxnState::Empty {
        partitions.clear();
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    Ok(TxnMetadata {
        producer_id,
        prev_producer_id: -1,
        producer_epoch,
        last_producer_epoch: -1,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(state: TxnState, partitions: &[(&str, i32)]) -> TxnMetadata {
        TxnMetadata {
            producer_id: 4_000,
            prev_producer_id: -1,
            producer_epoch: 12,
            last_producer_epoch: -1,
            timeout_ms: 60_000,
            state,
            partitions: partitions
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect(),
            start_ms: 1_700_000_000_000,
            last_update_ms: 1_700_000_000_500,
        }
    }

    #[test]
    fn records_round_trip_and_tombstones_have_no_value() {
        for record in [
            TxnRecord {
                transactional_id: "app-1".into(),
                value: Some(meta(
                    TxnState::Ongoing,
                    &[("orders", 0), ("orders", 7), ("__consumer_offsets", 12)],
                )),
            },
            TxnRecord {
                transactional_id: "app-1".into(),
                value: Some(meta(TxnState::PrepareCommit, &[("a", 1)])),
            },
            TxnRecord {
                transactional_id: "ünïcode-id".into(),
                value: Some(meta(TxnState::Empty, &[])),
            },
            TxnRecord {
                transactional_id: "gone".into(),
                value: None,
            },
        ] {
            let (k, v) = record.encode();
            assert_eq!(TxnRecord::decode(&k, v.as_deref()), Ok(Some(record)));
        }
    }

    /// The expected bytes are what Kafka 4.4's own `TransactionLogKey` and `TransactionLogValue`
    /// (version 0) write for the same fields.
    #[test]
    fn the_bytes_are_kafkas() {
        let (k, v) = TxnRecord {
            transactional_id: "t".into(),
            value: Some(meta(TxnState::CompleteCommit, &[("x", 2), ("x", 3)])),
        }
        .encode();
        assert_eq!(&k[..], &[0, 0, 0, 1, b't']);
        let v = v.unwrap();
        let mut expect = vec![0, 0]; // version 0
        expect.extend_from_slice(&4_000i64.to_be_bytes());
        expect.extend_from_slice(&12i16.to_be_bytes());
        expect.extend_from_slice(&60_000i32.to_be_bytes());
        expect.push(4); // CompleteCommit
        expect.extend_from_slice(&1i32.to_be_bytes()); // one topic
        expect.extend_from_slice(&[0, 1, b'x']);
        expect.extend_from_slice(&2i32.to_be_bytes());
        expect.extend_from_slice(&2i32.to_be_bytes());
        expect.extend_from_slice(&3i32.to_be_bytes());
        expect.extend_from_slice(&1_700_000_000_500i64.to_be_bytes());
        expect.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        assert_eq!(&v[..], &expect[..]);
    }

    #[test]
    fn unknown_and_damaged_records() {
        assert_eq!(TxnRecord::decode(&[0, 1, 0, 0], None), Ok(None));
        assert!(TxnRecord::decode(&[0, 0, 0, 9, b'a'], None).is_err());
        let (k, v) = TxnRecord {
            transactional_id: "t".into(),
            value: Some(meta(TxnState::Ongoing, &[("x", 1)])),
        }
        .encode();
        let v = v.unwrap();
        for cut in [1, 10, 15, v.len() - 1] {
            assert!(TxnRecord::decode(&k, Some(&v[..cut])).is_err(), "cut {cut}");
        }
        let mut bad_state = v.to_vec();
        bad_state[2 + 8 + 2 + 4] = 9;
        assert!(TxnRecord::decode(&k, Some(&bad_state)).is_err());
        let mut newer = v.to_vec();
        newer[1] = 1;
        assert!(TxnRecord::decode(&k, Some(&newer)).is_err());
    }
}
