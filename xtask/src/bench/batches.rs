//! Record batches for the benchmarks: encoding (magic 2, uncompressed, idempotent or not), the
//! base sequence patched in before a send, and walking the headers of fetched batches.

use anyhow::{anyhow, ensure, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
};

/// One uncompressed, non-idempotent record batch (magic 2) of `count` records of `value_bytes`.
pub fn encode_record_batch(count: usize, value_bytes: usize, timestamp_ms: i64) -> Result<Bytes> {
    encode_batch(count, value_bytes, timestamp_ms, None)
}

/// The same for an idempotent producer `(id, epoch)`, base sequence 0 (patched before each send
/// with [`set_base_sequence`]).
pub fn encode_idempotent_batch(
    count: usize,
    value_bytes: usize,
    timestamp_ms: i64,
    producer: (i64, i16),
) -> Result<Bytes> {
    encode_batch(count, value_bytes, timestamp_ms, Some(producer))
}

/// Record batch v2 offsets: base sequence int32 @53; the CRC @17 covers everything from the
/// attributes @21 on.
const BASE_SEQUENCE_AT: usize = 53;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;

/// Give the batch at `batch[..]` (a whole batch, e.g. the tail of a request frame) a new base
/// sequence, and its CRC again.
pub fn set_base_sequence(batch: &mut [u8], sequence: i32) {
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

fn encode_batch(
    count: usize,
    value_bytes: usize,
    timestamp_ms: i64,
    producer: Option<(i64, i16)>,
) -> Result<Bytes> {
    ensure!(count > 0, "a record batch needs at least one record");
    let value = Bytes::from(vec![b'x'; value_bytes]);
    let (producer_id, producer_epoch) = producer.unwrap_or((NO_PRODUCER_ID, NO_PRODUCER_EPOCH));
    let records: Vec<Record> = (0..count)
        .map(|offset_delta| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: offset_delta as i64,
            // The encoder starts a new batch whenever `offset - sequence` changes. Idempotent:
            // sequence = offset (base sequence 0). Otherwise `sequence = offset - 1`: the
            // batch's base sequence is -1 (no sequence). Either way one batch.
            sequence: offset_delta as i32 - i32::from(producer.is_none()),
            timestamp: timestamp_ms,
            key: None,
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .context("encoding a record batch")?;
    Ok(batch.freeze())
}

/// The header fields of one record batch (magic 2) that the fetch benchmark needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: i64,
    /// The whole batch including its 12-byte offset and length prefix.
    pub size_bytes: usize,
}

/// Record batch v2 layout: baseOffset int64 @0, batchLength int32 @8, partitionLeaderEpoch @12,
/// magic int8 @16, crc @17, attributes @21, lastOffsetDelta int32 @23, …, recordCount int32 @57.
const BATCH_HEADER_BYTES: usize = 61;

/// Walks the complete record batches in a fetch response's record set. A trailing partial batch
/// (the broker may cut the set at the size limit) is ignored, as Kafka clients do.
pub fn walk_batches(mut records: &[u8]) -> Result<Vec<BatchHeader>> {
    let mut batches = Vec::new();
    while records.len() >= 12 {
        let base_offset = (&records[0..8]).get_i64();
        let batch_length = (&records[8..12]).get_i32();
        let size_bytes = usize::try_from(batch_length)
            .ok()
            .and_then(|length| length.checked_add(12))
            .filter(|&size| size >= BATCH_HEADER_BYTES)
            .ok_or_else(|| {
                anyhow!("record batch at offset {base_offset} has a bad length {batch_length}")
            })?;
        if records.len() < size_bytes {
            break;
        }
        let magic = records[16];
        ensure!(
            magic == 2,
            "record batch at offset {base_offset} has magic {magic}, expected 2"
        );
        let last_offset_delta = (&records[23..27]).get_i32();
        let record_count = (&records[57..61]).get_i32();
        ensure!(
            last_offset_delta >= 0 && record_count >= 0,
            "record batch at offset {base_offset}: last offset delta {last_offset_delta}, \
             record count {record_count}"
        );
        batches.push(BatchHeader {
            base_offset,
            last_offset: base_offset + i64::from(last_offset_delta),
            record_count: i64::from(record_count),
            size_bytes,
        });
        records = &records[size_bytes..];
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_batch_is_one_batch_with_all_records() -> Result<()> {
        let batch = encode_record_batch(1000, 100, 1)?;
        let headers = walk_batches(&batch)?;
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].record_count, 1000);
        assert_eq!(headers[0].last_offset, 999);
        assert_eq!(headers[0].size_bytes, batch.len());
        // Non-idempotent: producer id -1 @43, epoch -1 @51, base sequence -1 @53.
        assert_eq!((&batch[43..51]).get_i64(), -1);
        assert_eq!((&batch[51..53]).get_i16(), -1);
        assert_eq!((&batch[53..57]).get_i32(), -1);
        Ok(())
    }

    #[test]
    fn walk_stops_at_a_partial_batch() -> Result<()> {
        let one = encode_record_batch(3, 10, 1)?;
        let mut two = BytesMut::new();
        two.extend_from_slice(&one);
        two.extend_from_slice(&one[..one.len() - 5]);
        let headers = walk_batches(&two)?;
        assert_eq!(headers.len(), 1);
        Ok(())
    }
}
