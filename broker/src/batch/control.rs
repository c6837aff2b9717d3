//! Control batches of one record: the transaction markers' frame, and the broker's own Raft
//! entries (a new leader's empty entry, a log-start mark, a membership change), which are
//! stored as control batches of a leader-change record marked [`OWN_ENTRY_ATTRIBUTE`] — they
//! take no Kafka offset and no client is ever served one.

use bytes::{Bytes, BytesMut};

use super::{framed, parse_header, put_zigzag, CONTROL_ATTRIBUTE, OWN_ENTRY_ATTRIBUTE};

/// Kafka's control record type for a leader change (KRaft writes one when a leader is elected).
const LEADER_CHANGE_CONTROL_TYPE: i16 = 2;

/// The batch a Raft entry of the broker's own (a new leader's empty entry) is stored as: a
/// control batch of one leader-change record, with no timestamp, so that every replica writes
/// the same bytes for it, marked [`OWN_ENTRY_ATTRIBUTE`] (it takes no Kafka offset and is
/// never served). Its base offset and epoch are set when it is written.
pub fn leader_change_batch() -> Bytes {
    control_batch(None)
}

/// What a log-start mark's control record holds: this, then the new log start (`i64`).
const LOG_START_MAGIC: &[u8; 4] = b"SWLS";

/// The Raft entry that moves a replicated log's start (DeleteRecords): a control batch like
/// [`leader_change_batch`]'s (taking no Kafka offset, never served), whose record's value
/// is [`LOG_START_MAGIC`] and the new start. Every replica moves its log start there once the
/// entry is committed.
pub fn log_start_batch(log_start: i64) -> Bytes {
    let mut value = LOG_START_MAGIC.to_vec();
    value.extend_from_slice(&log_start.to_be_bytes());
    control_batch(Some(&value))
}

/// The log start a [`log_start_batch`] (at the start of `batch`) moves to; `None` for any
/// other batch.
pub fn log_start_of(batch: &[u8]) -> Option<i64> {
    let start = own_value(batch, LOG_START_MAGIC)?;
    (start.len() == 8).then(|| i64::from_be_bytes(start.try_into().expect("8 bytes")))
}

/// What a membership change's control record holds: this, then the change (raft-rs's
/// `ConfChangeV2`, encoded; empty for leaving a joint configuration).
const CONF_CHANGE_MAGIC: &[u8; 4] = b"SWCC";

/// The Raft entry that changes a group's membership, stored as a control batch like
/// [`leader_change_batch`]'s (taking no Kafka offset, never served), whose record's value is
/// [`CONF_CHANGE_MAGIC`] and the encoded change. The storage layer keeps it as bytes; the
/// replication layer gives it meaning.
pub fn conf_change_batch(change: &[u8]) -> Bytes {
    let mut value = CONF_CHANGE_MAGIC.to_vec();
    value.extend_from_slice(change);
    control_batch(Some(&value))
}

/// The encoded change a [`conf_change_batch`] (at the start of `batch`) holds; `None` for any
/// other batch.
pub fn conf_change_of(batch: &[u8]) -> Option<&[u8]> {
    own_value(batch, CONF_CHANGE_MAGIC)
}

/// The value after `magic` of the one record of one of the broker's own control batches.
fn own_value<'a>(batch: &'a [u8], magic: &[u8; 4]) -> Option<&'a [u8]> {
    let (_, value) = control_record(batch)?;
    let (found, rest) = value?.split_at_checked(magic.len())?;
    (found == magic).then_some(rest)
}

/// Where a v2 batch's records begin.
const RECORDS_OFFSET: usize = 61;

fn read_zigzag(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// A control batch of one leader-change record with `value`, marked [`OWN_ENTRY_ATTRIBUTE`].
fn control_batch(value: Option<&[u8]>) -> Bytes {
    ControlBatch {
        attributes: CONTROL_ATTRIBUTE | OWN_ENTRY_ATTRIBUTE,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_ms: -1,
        control_type: LEADER_CHANGE_CONTROL_TYPE,
        value,
    }
    .encode()
}

/// A control batch of one record: its attributes (with [`CONTROL_ATTRIBUTE`]), producer, time
/// (`-1`: none), the record's control type (its key: version 0, type) and value.
pub(crate) struct ControlBatch<'a> {
    pub attributes: i16,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timestamp_ms: i64,
    pub control_type: i16,
    pub value: Option<&'a [u8]>,
}

impl ControlBatch<'_> {
    /// The batch's bytes, at base offset 0 and leader epoch 0 (set when it is written).
    pub(crate) fn encode(&self) -> Bytes {
        use bytes::BufMut;
        let mut record = BytesMut::new();
        record.put_i8(0); // attributes
        put_zigzag(&mut record, 0); // timestamp delta
        put_zigzag(&mut record, 0); // offset delta
        let key = [
            0,
            0,
            (self.control_type >> 8) as u8,
            self.control_type as u8,
        ];
        put_zigzag(&mut record, key.len() as i64);
        record.put_slice(&key);
        match self.value {
            None => put_zigzag(&mut record, -1),
            Some(v) => {
                put_zigzag(&mut record, v.len() as i64);
                record.put_slice(v);
            }
        }
        put_zigzag(&mut record, 0); // headers
        let mut body = BytesMut::new(); // the CRC'd part, from the attributes on
        body.put_i16(self.attributes | CONTROL_ATTRIBUTE);
        body.put_i32(0); // last offset delta
        body.put_i64(self.timestamp_ms); // first timestamp
        body.put_i64(self.timestamp_ms); // max timestamp
        body.put_i64(self.producer_id);
        body.put_i16(self.producer_epoch);
        body.put_i32(-1); // base sequence
        body.put_i32(1); // records
        put_zigzag(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
        framed(&body)
    }
}

/// The control type (the key's second field) and value of the one record of the control batch
/// at the start of `batch`; `None` for any other batch, or one cut short.
pub(crate) fn control_record(batch: &[u8]) -> Option<(i16, Option<&[u8]>)> {
    let h = parse_header(batch).ok()?;
    if !h.is_control() || h.record_count != 1 || batch.len() < h.size {
        return None;
    }
    // The one record: length, attributes, timestamp delta, offset delta, key, value.
    let mut at = RECORDS_OFFSET;
    let body = &batch[..h.size];
    let _len = read_zigzag(body, &mut at)?;
    at += 1; // attributes
    read_zigzag(body, &mut at)?;
    read_zigzag(body, &mut at)?;
    let key_len = usize::try_from(read_zigzag(body, &mut at)?).ok()?;
    let key = body.get(at..at + key_len)?;
    at += key_len;
    let control_type = i16::from_be_bytes(key.get(2..4)?.try_into().ok()?);
    let value = match read_zigzag(body, &mut at)? {
        -1 => None,
        n => Some(body.get(at..at + usize::try_from(n).ok()?)?),
    };
    Some((control_type, value))
}
