//! Helpers shared by the broker's integration tests.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// An uncompressed record batch of `count` records with the same timestamp and value, encoded by
/// `kafka-protocol` (an encoder this project did not write, so the broker's parsing is checked
/// against it).
pub fn make_batch(count: i32, timestamp: i64, value: &[u8]) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // A non-idempotent batch: the encoder wants sequence = offset - 1 (DESIGN.md).
            sequence: i - 1,
            timestamp,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode a record batch");
    buf.freeze()
}
