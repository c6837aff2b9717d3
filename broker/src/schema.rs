//! Kafka's fixed-width schema types (big-endian integers, strings and bytes behind an int16
//! or int32 length, -1 for null), as the records of the internal topics (`__consumer_offsets`,
//! `__transaction_state`) are written in Kafka's own schemas.

use bytes::{BufMut, Bytes, BytesMut};

/// The producer a batch of an internal topic is written for (a transaction's offsets): its id
/// and epoch, and the batch is transactional, without a sequence (the broker writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenFor {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// One record batch of an internal topic's records (keys and values in Kafka's schemas; a
/// `None` value is a tombstone), stamped `now_ms`; transactional when written `for_producer`.
pub fn internal_batch(
    records: &[(Bytes, Option<Bytes>)],
    now_ms: i64,
    for_producer: Option<WrittenFor>,
) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let (producer_id, producer_epoch) =
        for_producer.map_or((-1, -1), |p| (p.producer_id, p.producer_epoch));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: for_producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // No sequence: the encoder wants sequence = offset - 1 (one batch, base -1).
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    // Encoding our own records, uncompressed, cannot fail; an empty batch is not written.
    let _ = RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    );
    buf.freeze()
}

/// A string behind its int16 length.
pub fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

/// A nullable string (length -1 for null).
pub fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

/// Bytes behind their int32 length.
pub fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

/// An unsigned varint (the lengths of Kafka's flexible versions).
pub fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

/// A nullable string of a flexible version: its length plus one as a varint (0 for null).
pub fn put_compact_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            put_uvarint(b, s.len() as u32 + 1);
            b.put_slice(s.as_bytes());
        }
        None => put_uvarint(b, 0),
    }
}

/// A string of a flexible version.
pub fn put_compact_str(b: &mut BytesMut, s: &str) {
    put_compact_opt_str(b, Some(s));
}

/// The length of an array of a flexible version (its length plus one).
pub fn put_compact_len(b: &mut BytesMut, n: usize) {
    put_uvarint(b, n as u32 + 1);
}

/// An empty section of tagged fields.
pub fn put_no_tags(b: &mut BytesMut) {
    put_uvarint(b, 0);
}

/// Big-endian fields off the front of a key or value.
pub struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    pub fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if n > self.0.len() {
            return Err(format!("{n} bytes wanted, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub fn i8(&mut self) -> Result<i8, String> {
        Ok(self.take(1)?[0] as i8)
    }
    pub fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().unwrap_or([0; 2]),
        ))
    }
    pub fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    pub fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    pub fn opt_string(&mut self) -> Result<Option<String>, String> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let s = self.take(n as usize)?;
        String::from_utf8(s.to_vec())
            .map(Some)
            .map_err(|e| e.to_string())
    }
    pub fn string(&mut self) -> Result<String, String> {
        self.opt_string()?
            .ok_or_else(|| "a null string".to_string())
    }
    pub fn uvarint(&mut self) -> Result<u32, String> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            v |= u32::from(byte & 0x7f)
                .checked_shl(shift)
                .ok_or("a varint too long")?;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint too long".into())
    }
    /// A nullable string of a flexible version.
    pub fn compact_opt_string(&mut self) -> Result<Option<String>, String> {
        let n = self.uvarint()?;
        if n == 0 {
            return Ok(None);
        }
        let s = self.take(n as usize - 1)?;
        String::from_utf8(s.to_vec())
            .map(Some)
            .map_err(|e| e.to_string())
    }
    pub fn compact_string(&mut self) -> Result<String, String> {
        self.compact_opt_string()?
            .ok_or_else(|| "a null string".to_string())
    }
    /// The length of an array of a flexible version, no longer than what is left could hold.
    pub fn compact_len(&mut self) -> Result<usize, String> {
        let n = self.uvarint()?;
        if n == 0 {
            return Err("a null array".into());
        }
        let n = n as usize - 1;
        if n > self.0.len() {
            return Err(format!("an array of {n} in {} bytes", self.0.len()));
        }
        Ok(n)
    }
    pub fn uuid(&mut self) -> Result<u128, String> {
        Ok(u128::from_be_bytes(
            self.take(16)?.try_into().unwrap_or([0; 16]),
        ))
    }
    /// Skip a section of tagged fields (none this broker reads).
    pub fn skip_tags(&mut self) -> Result<(), String> {
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let len = self.uvarint()?;
            self.take(len as usize)?;
        }
        Ok(())
    }
    pub fn bytes(&mut self) -> Result<Bytes, String> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(n as usize)?))
    }
}
