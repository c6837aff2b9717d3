//! Kafka record batches (magic 2) as the log stores them: header parsing and validation.
//!
//! The broker validates the header and the CRC-32C of what a producer sent and writes the bytes
//! as they are (compressed or not), patching the base offset, which the CRC does not cover —
//! unless the topic asks for LogAppendTime ([`stamp_log_append_time`]) or for a codec other
//! than the batch's ([`crate::compression`]), which change the batch and redo its CRC.

mod control;

pub use control::{
    conf_change_batch, conf_change_of, leader_change_batch, log_start_batch, log_start_of,
};
pub(crate) use control::{control_record, ControlBatch};

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the fixed batch header (through the record count).
pub const HEADER_BYTES: usize = 61;
/// Bytes before the batch length field's end: base offset (8) + length (4).
pub const LOG_OVERHEAD: usize = 12;
/// The base offset: a batch's first 8 bytes, the one field the broker assigns (outside the CRC).
pub const BASE_OFFSET_LEN: usize = 8;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("truncated batch: {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    #[error("batch length {0} is invalid")]
    BadLength(i32),
    #[error("unsupported magic {0} (only record batch v2 is accepted)")]
    BadMagic(i8),
    #[error("CRC-32C mismatch: header says {stored:#010x}, data gives {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    BadCount { count: i32, last_offset_delta: i32 },
    #[error("empty batch")]
    Empty,
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("compression codec {0} is not defined (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)")]
    UnknownCodec(i16),
    #[error("the {codec} payload cannot be decompressed: {reason}")]
    Compression { codec: &'static str, reason: String },
    #[error("the {codec} payload decompresses to more than {limit} bytes")]
    DecompressedTooLarge { codec: &'static str, limit: usize },
    #[error("invalid records: {0}")]
    InvalidRecords(String),
    #[error("control batches are written by the broker, not by clients")]
    ControlBatch,
    #[error("a transactional batch needs the request's transactional id")]
    Transactional,
    /// Records refused one by one (Kafka's record errors): each by its index in the batch, with
    /// why. The produce response names every one, so that a client fails those records and
    /// knows the others were refused only for being in their batch.
    #[error("{}", RefusedRecords(.refused, .reasons))]
    RecordsRefused {
        /// Whether a timestamp outside the topic's window is among the reasons (the batch is
        /// then answered INVALID_TIMESTAMP, otherwise INVALID_RECORD, as Kafka does).
        timestamp: bool,
        /// The refused records' indexes in the batch; never empty.
        refused: Vec<i32>,
        /// Why, for the first [`REFUSED_REASONS_MAX`] of them (a batch of a million small
        /// records all refused must not cost a million messages).
        reasons: Vec<String>,
    },
}

/// How many refused records of a batch are told with why (the rest by their index alone).
pub const REFUSED_REASONS_MAX: usize = 32;

/// How [`BatchError::RecordsRefused`] reads: its first record and how many more.
struct RefusedRecords<'a>(&'a [i32], &'a [String]);

impl std::fmt::Display for RefusedRecords<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (Some(index), Some(why)) = (self.0.first(), self.1.first()) else {
            return write!(f, "{} records refused", self.0.len());
        };
        write!(f, "record {index}: {why}")?;
        match self.0.len() {
            1 => Ok(()),
            n => write!(f, " (and {} more records)", n - 1),
        }
    }
}

/// The fields of a batch header the broker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total bytes of the batch including the 12-byte log overhead.
    pub size: usize,
    pub last_offset_delta: i32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub record_count: i32,
    pub attributes: i16,
    /// The idempotent producer's id (-1 for none), its epoch, and the sequence number of the
    /// batch's first record.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The epoch of the leader that wrote the batch; in a cluster, the Raft term of its entry.
    pub partition_leader_epoch: i32,
}

impl BatchHeader {
    /// Whether this is a control batch (written by the broker; clients skip it).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_ATTRIBUTE != 0
    }

    /// Whether the batch belongs to a transaction (its data, or the marker that ends it).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_ATTRIBUTE != 0
    }

    /// Whether this is one of Raft's own entries that take no Kafka offset
    /// ([`OWN_ENTRY_ATTRIBUTE`]): a replicated log holds it, no client is ever served it.
    pub fn takes_no_offset(&self) -> bool {
        self.is_control() && self.attributes & OWN_ENTRY_ATTRIBUTE != 0
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }
}

/// Parse the header at the start of `buf` without checking the CRC. Needs `HEADER_BYTES`.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < HEADER_BYTES {
        return Err(BatchError::Truncated {
            have: buf.len(),
            need: HEADER_BYTES,
        });
    }
    let mut b = buf;
    let base_offset = b.get_i64();
    let length = b.get_i32();
    if length < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
        return Err(BatchError::BadLength(length));
    }
    let partition_leader_epoch = b.get_i32();
    let magic = b.get_i8();
    if magic != 2 {
        return Err(BatchError::BadMagic(magic));
    }
    let _crc = b.get_u32();
    let attributes = b.get_i16();
    let last_offset_delta = b.get_i32();
    let first_timestamp = b.get_i64();
    let max_timestamp = b.get_i64();
    let producer_id = b.get_i64();
    let producer_epoch = b.get_i16();
    let base_sequence = b.get_i32();
    let record_count = b.get_i32();
    Ok(BatchHeader {
        base_offset,
        size: LOG_OVERHEAD + length as usize,
        last_offset_delta,
        first_timestamp,
        max_timestamp,
        record_count,
        attributes,
        producer_id,
        producer_epoch,
        base_sequence,
        partition_leader_epoch,
    })
}

/// The attribute bit of a control batch.
pub const CONTROL_ATTRIBUTE: i16 = 0x20;
/// The attribute bit of a transaction's batches (its data and its marker).
pub const TRANSACTIONAL_ATTRIBUTE: i16 = 0x10;
/// An attribute bit Kafka leaves unused, set (with [`CONTROL_ATTRIBUTE`]) on the batches of
/// Raft's own entries (a new leader's empty entry, a log-start mark): such a batch holds a log
/// offset but no Kafka offset, and is never served (`storage::log::gaps`). Batches written
/// before it existed lack it and keep the Kafka offset they took. Clients cannot write it:
/// produced control batches are refused.
pub const OWN_ENTRY_ATTRIBUTE: i16 = 0x4000;
/// Where the partition leader epoch lies (outside the CRC, as the base offset).
const LEADER_EPOCH_OFFSET: usize = 12;

/// Set a stored batch's partition leader epoch (not covered by its CRC).
pub fn set_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_OFFSET..LEADER_EPOCH_OFFSET + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// A v2 batch around `body`, its part from the attributes on (what the CRC covers): base
/// offset 0, its length, leader epoch 0, magic 2, the CRC-32C of `body`.
pub(crate) fn framed(body: &[u8]) -> Bytes {
    use bytes::BufMut;
    let mut out = BytesMut::with_capacity(LOG_OVERHEAD + 9 + body.len());
    out.put_i64(0);
    out.put_i32((4 + 1 + 4 + body.len()) as i32);
    out.put_i32(0);
    out.put_i8(2);
    out.put_u32(crc32c::crc32c(body));
    out.extend_from_slice(body);
    out.freeze()
}

/// A zig-zag varint (Kafka's record fields).
pub(crate) fn put_zigzag(buf: &mut BytesMut, v: i64) {
    use bytes::BufMut;
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

/// Parse and fully validate the batch at the start of `buf` (header, size, CRC-32C, count), as
/// a producer must send it: records at every offset it spans.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = checksummed(buf)?;
    if h.record_count <= 0 {
        return Err(BatchError::Empty);
    }
    if h.last_offset_delta < 0 || h.record_count != h.last_offset_delta + 1 {
        return Err(BatchError::BadCount {
            count: h.record_count,
            last_offset_delta: h.last_offset_delta,
        });
    }
    Ok(h)
}

/// Parse and check a batch as the log stores it (header, size, CRC-32C, count): besides what
/// a producer sends, a batch the log cleaner rewrote keeps the offsets it spans (its base and
/// last offset delta) with fewer records, or none when every one was removed.
pub fn validate_stored(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = checksummed(buf)?;
    if h.last_offset_delta < 0 || h.record_count < 0 || h.record_count > h.last_offset_delta + 1 {
        return Err(BatchError::BadCount {
            count: h.record_count,
            last_offset_delta: h.last_offset_delta,
        });
    }
    Ok(h)
}

/// The header of the batch at the start of `buf`, whose size fits `buf` and whose CRC-32C
/// is right.
fn checksummed(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_header(buf)?;
    if buf.len() < h.size {
        return Err(BatchError::Truncated {
            have: buf.len(),
            need: h.size,
        });
    }
    let stored = u32::from_be_bytes([
        buf[CRC_OFFSET],
        buf[CRC_OFFSET + 1],
        buf[CRC_OFFSET + 2],
        buf[CRC_OFFSET + 3],
    ]);
    let computed = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..h.size]);
    if stored != computed {
        return Err(BatchError::BadCrc { stored, computed });
    }
    debug_assert_eq!(buf[MAGIC_OFFSET], 2);
    Ok(h)
}

/// Validate every batch of a produce payload. Returns the headers; the payload must be made of
/// whole batches only and each must fit `batch_bytes_max`.
pub fn validate_all(
    payload: &[u8],
    batch_bytes_max: usize,
) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < payload.len() {
        let h = validate(&payload[pos..])?;
        if h.size > batch_bytes_max {
            return Err(BatchError::TooLarge {
                size: h.size,
                limit: batch_bytes_max,
            });
        }
        headers.push(h);
        pos += h.size;
    }
    if headers.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(headers)
}

/// Total record count of validated batches.
pub fn record_count(headers: &[BatchHeader]) -> i64 {
    headers.iter().map(|h| h.record_count as i64).sum()
}

/// Copy `payload` (whole validated batches) into `out`, giving the batches consecutive offsets
/// starting at `base_offset`. Returns the next offset after the last record.
pub fn assign_offsets(
    payload: &[u8],
    headers: &[BatchHeader],
    base_offset: i64,
    out: &mut BytesMut,
) -> i64 {
    let mut next = base_offset;
    let mut pos = 0;
    for h in headers {
        let start = out.len();
        out.extend_from_slice(&payload[pos..pos + h.size]);
        out[start..start + 8].copy_from_slice(&next.to_be_bytes());
        next += h.last_offset_delta as i64 + 1;
        pos += h.size;
    }
    next
}

/// Attribute bit of KIP-534: the batch's base timestamp is its delete horizon, the time after
/// which the log cleaner removes its tombstones (set when the cleaner first keeps one).
pub const DELETE_HORIZON_ATTRIBUTE: i16 = 0x40;
/// Where the base (first) timestamp and the record count lie.
const FIRST_TIMESTAMP_OFFSET: usize = 27;
const RECORD_COUNT_OFFSET: usize = 57;

impl BatchHeader {
    /// When the cleaner may remove this batch's tombstones (KIP-534), if it was set.
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_ATTRIBUTE != 0).then_some(self.first_timestamp)
    }
}

/// A stored batch rebuilt around other records (the log cleaner's): `original`'s header —
/// offsets, leader epoch, producer id, epoch and sequence, largest timestamp — with `count`
/// records in `body` (compressed with `codec`), the base timestamp `first_timestamp`, and
/// `set_attributes` added to its attributes; the length and CRC-32C computed again.
pub fn rebuild(
    original: &[u8],
    body: &[u8],
    codec: i16,
    count: i32,
    first_timestamp: i64,
    set_attributes: i16,
) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&original[..HEADER_BYTES]);
    out.extend_from_slice(body);
    let attributes =
        i16::from_be_bytes([original[ATTRIBUTES_OFFSET], original[ATTRIBUTES_OFFSET + 1]]);
    let attributes = (attributes & !0x7) | codec | set_attributes;
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    out[FIRST_TIMESTAMP_OFFSET..FIRST_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&first_timestamp.to_be_bytes());
    out[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&count.to_be_bytes());
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..LOG_OVERHEAD].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// One record-less batch standing for a run of them (the log cleaner's, on a log that is not
/// a Raft log): `first`'s header (its base offset, leader epoch, attributes, base timestamp)
/// spanning the offsets through `last_offset` with `max_timestamp` as its largest timestamp,
/// and no producer nor transaction (the run's producers' sequences are read from the producer
/// snapshots); the CRC-32C computed again. Every offset of the run stays covered, so the log has no gap
/// between batches and a consumer reads on past it, as past any emptied batch.
pub fn empty_span(first: &[u8], last_offset: i64, max_timestamp: i64) -> Bytes {
    let mut out = BytesMut::from(&first[..HEADER_BYTES]);
    let base = i64::from_be_bytes(first[..8].try_into().expect("8 bytes"));
    let delta = i32::try_from(last_offset - base).expect("a run spans at most i32::MAX offsets");
    out[8..LOG_OVERHEAD].copy_from_slice(&((HEADER_BYTES - LOG_OVERHEAD) as i32).to_be_bytes());
    out[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
        .copy_from_slice(&delta.to_be_bytes());
    out[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&max_timestamp.to_be_bytes());
    out[PRODUCER_ID_OFFSET..PRODUCER_ID_OFFSET + 8].copy_from_slice(&(-1i64).to_be_bytes());
    out[PRODUCER_ID_OFFSET + 8..PRODUCER_ID_OFFSET + 10].copy_from_slice(&(-1i16).to_be_bytes());
    out[PRODUCER_ID_OFFSET + 10..PRODUCER_ID_OFFSET + 14].copy_from_slice(&(-1i32).to_be_bytes());
    out[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&0i32.to_be_bytes());
    // No producer, so no transaction either.
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_OFFSET], out[ATTRIBUTES_OFFSET + 1]]);
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2]
        .copy_from_slice(&(attributes & !TRANSACTIONAL_ATTRIBUTE).to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// A record-less header spanning `[base, last_offset]`, made from `template` (a record-less
/// batch, typically one the log cleaner merged) as [`empty_span`] makes one: what is sent of a
/// merged header that straddles the edge of a range a follower asked for.
pub fn empty_range(template: &[u8], base: i64, last_offset: i64, max_timestamp: i64) -> Bytes {
    let mut first = BytesMut::from(&template[..HEADER_BYTES]);
    first[..8].copy_from_slice(&base.to_be_bytes());
    empty_span(&first, last_offset, max_timestamp)
}

/// Where the last offset delta (bytes 23..27) and the producer id, epoch and base sequence
/// (43..57) lie.
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const PRODUCER_ID_OFFSET: usize = 43;

/// Offset of the batch's first timestamp (bytes 27..35) and largest timestamp (35..43).
const MAX_TIMESTAMP_OFFSET: usize = 35;
/// Attribute bit: the batch's timestamps are the broker's append time.
const LOG_APPEND_TIME: i16 = 0x08;

/// Mark a stored batch (whole, offset assigned) as stamped with the broker's append time, as
/// Kafka does for `message.timestamp.type=LogAppendTime`: the attribute bit set and the largest
/// timestamp set to `now_ms` (consumers then give every record that time); the CRC-32C, which
/// covers both, computed again.
pub fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES_OFFSET], batch[ATTRIBUTES_OFFSET + 1]]);
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2]
        .copy_from_slice(&(attributes | LOG_APPEND_TIME).to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Clear a stored batch's control bit (a marker the log cleaner emptied: see
/// `storage::cleaner`); the CRC-32C computed again.
pub fn clear_control(batch: &mut [u8]) {
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES_OFFSET], batch[ATTRIBUTES_OFFSET + 1]]);
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2]
        .copy_from_slice(&(attributes & !CONTROL_ATTRIBUTE).to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Mark a rebuilt batch (its header copied, a new body after it) as compressed with `codec`
/// and `length` bytes long after the length field; the CRC-32C computed again.
pub fn rewrite_codec(batch: &mut [u8], codec: i16, length: i32) {
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES_OFFSET], batch[ATTRIBUTES_OFFSET + 1]]);
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2]
        .copy_from_slice(&((attributes & !0x7) | codec).to_be_bytes());
    batch[8..LOG_OVERHEAD].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterate over the complete batches at the start of `buf` (headers only, no CRC check), as
/// `(position, header)`. Stops at the first incomplete or unparsable batch.
pub fn scan(buf: &Bytes) -> impl Iterator<Item = (usize, BatchHeader)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let h = parse_header(&buf[pos..]).ok()?;
        if pos + h.size > buf.len() {
            return None;
        }
        let at = pos;
        pos += h.size;
        Some((at, h))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BufMut;

    /// Build a minimal valid uncompressed batch of `count` records with `value_len`-byte values.
    pub fn make_batch(count: i32, timestamp: i64, value_len: usize) -> Bytes {
        let mut records = BytesMut::new();
        for i in 0..count {
            let mut rec = BytesMut::new();
            rec.put_i8(0); // attributes
            put_varint(&mut rec, 0); // timestamp delta
            put_varint(&mut rec, i as i64); // offset delta
            put_varint(&mut rec, -1); // key: null
            put_varint(&mut rec, value_len as i64);
            rec.put_bytes(b'v', value_len);
            put_varint(&mut rec, 0); // headers
            put_varint(&mut records, rec.len() as i64);
            records.extend_from_slice(&rec);
        }
        let mut body = BytesMut::new(); // from attributes on: the CRC'd part
        body.put_i16(0);
        body.put_i32(count - 1);
        body.put_i64(timestamp);
        body.put_i64(timestamp);
        body.put_i64(-1);
        body.put_i16(-1);
        body.put_i32(-1);
        body.put_i32(count);
        body.extend_from_slice(&records);
        super::framed(&body)
    }

    fn put_varint(buf: &mut BytesMut, v: i64) {
        super::put_zigzag(buf, v)
    }

    #[test]
    fn a_log_start_mark_is_a_control_batch_that_names_its_start() {
        for start in [0i64, 1, 4_000, i64::MAX] {
            let mut b = BytesMut::from(&log_start_batch(start)[..]);
            b[..8].copy_from_slice(&9i64.to_be_bytes());
            set_leader_epoch(&mut b, 3);
            let h = validate(&b).expect("valid");
            assert!(h.is_control() && h.takes_no_offset());
            assert_eq!(log_start_of(&b), Some(start));
            let mut buf = b.freeze();
            let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
                .expect("kafka-protocol decodes it");
            assert!(decoded.records[0].control);
        }
        assert_eq!(log_start_of(&leader_change_batch()), None);
        assert_eq!(log_start_of(&make_batch(1, 0, 12)), None);
    }

    #[test]
    fn a_membership_change_is_a_control_batch_that_carries_its_change_whole() {
        for change in [&b""[..], b"\x08\x01", &[0xffu8; 300][..]] {
            let mut b = BytesMut::from(&conf_change_batch(change)[..]);
            b[..8].copy_from_slice(&5i64.to_be_bytes());
            set_leader_epoch(&mut b, 2);
            let h = validate(&b).expect("valid");
            assert!(h.is_control() && h.takes_no_offset());
            assert_eq!(conf_change_of(&b), Some(change));
            assert_eq!(log_start_of(&b), None, "not a log-start mark");
            let mut buf = b.freeze();
            let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
                .expect("kafka-protocol decodes it");
            assert!(decoded.records[0].control);
        }
        assert_eq!(conf_change_of(&leader_change_batch()), None);
        assert_eq!(conf_change_of(&log_start_batch(7)), None);
        assert_eq!(conf_change_of(&make_batch(1, 0, 12)), None);
    }

    #[test]
    fn a_raft_entry_of_the_broker_is_a_valid_control_batch_every_client_skips() {
        let mut b = BytesMut::from(&leader_change_batch()[..]);
        b[..8].copy_from_slice(&41i64.to_be_bytes());
        set_leader_epoch(&mut b, 7);
        let h = validate(&b).expect("valid after its offset and epoch are set");
        assert!(h.is_control());
        assert!(
            h.takes_no_offset(),
            "Raft's own entry takes no Kafka offset"
        );
        let produced = validate(&make_batch(1, 0, 12)).expect("valid");
        assert!(!produced.takes_no_offset());
        assert_eq!(
            (h.base_offset, h.record_count, h.partition_leader_epoch),
            (41, 1, 7)
        );
        let mut buf = b.freeze();
        let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
            .expect("kafka-protocol decodes it");
        assert_eq!(decoded.records.len(), 1);
        assert!(decoded.records[0].control);
        assert_eq!(decoded.records[0].offset, 41);
    }

    #[test]
    fn valid_batch_passes_and_reports_its_header() {
        let b = make_batch(3, 1000, 10);
        let h = validate(&b).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.size, b.len());
        assert_eq!(h.max_timestamp, 1000);
    }

    #[test]
    fn flipped_byte_fails_the_crc() {
        let mut b = BytesMut::from(&make_batch(2, 5, 8)[..]);
        let last = b.len() - 1;
        b[last] ^= 0x40;
        assert!(matches!(validate(&b), Err(BatchError::BadCrc { .. })));
    }

    #[test]
    fn wrong_magic_truncation_and_count_are_refused() {
        let good = make_batch(2, 5, 8);
        let mut m = BytesMut::from(&good[..]);
        m[16] = 1;
        assert_eq!(validate(&m), Err(BatchError::BadMagic(1)));
        assert!(matches!(
            validate(&good[..40]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate(&good[..good.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        // Record count 5 with last offset delta 1, CRC recomputed so only the count is wrong.
        let mut c = BytesMut::from(&good[..]);
        c[57..61].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&c[21..]);
        c[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(validate(&c), Err(BatchError::BadCount { .. })));
    }

    #[test]
    fn offsets_are_assigned_densely_across_batches() {
        let a = make_batch(3, 1, 4);
        let b = make_batch(2, 2, 4);
        let mut payload = BytesMut::new();
        payload.extend_from_slice(&a);
        payload.extend_from_slice(&b);
        let headers = validate_all(&payload, 1 << 20).unwrap();
        let mut out = BytesMut::new();
        let next = assign_offsets(&payload, &headers, 100, &mut out);
        assert_eq!(next, 105);
        let out = out.freeze();
        let offs: Vec<i64> = scan(&out).map(|(_, h)| h.base_offset).collect();
        assert_eq!(offs, vec![100, 103]);
        // Patching the base offset keeps the CRC valid.
        for (pos, h) in scan(&out) {
            validate(&out[pos..pos + h.size]).unwrap();
        }
    }

    #[test]
    fn oversized_batches_are_refused() {
        let b = make_batch(1, 0, 100);
        assert!(matches!(
            validate_all(&b, 50),
            Err(BatchError::TooLarge { .. })
        ));
        assert_eq!(validate_all(&[], 50), Err(BatchError::Empty));
    }
}
