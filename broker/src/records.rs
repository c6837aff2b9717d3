//! What is inside a produced batch: every record checked before the batch is stored, as Kafka's
//! `LogValidator` does.
//!
//! A batch whose header and CRC-32C are valid can still hold records no consumer can read: a
//! payload that is not valid for its codec, an undefined codec, a record whose length runs
//! past the batch, garbage where a record should be. Stored, such a batch stops every consumer
//! at its offset for good (librdkafka loops on the decompression error, the Java client and
//! kafka-python raise). So each produced batch is decompressed (within a bound) and each record
//! walked — lengths, offset and timestamp deltas, key, value and header counts — and a batch
//! that fails is refused with nothing of it stored.
//!
//! Why not `kafka_protocol::records::RecordBatchDecoder`: it is a client's decoder and trusts
//! its input. Its decompressors have no output bound (a 1 MB zstd batch can expand to tens of
//! gigabytes); it does not check that a record's fields fill exactly the length the record
//! declares, nor that nothing follows the last record; it keeps record headers in a map, so
//! duplicate header keys (which Kafka allows) disappear; it pre-allocates from the record and
//! header counts read off the wire; and it adds timestamp and offset deltas without overflow
//! checks. The walk below follows Kafka's `DefaultRecord.readFrom` instead, on bytes that the
//! codec crates (`flate2`, `snap`, `lz4_flex`, `ruzstd`: no codec is written here) decompress
//! under a limit. Tests cross-check it against `kafka-protocol`'s decoder.

use std::io::Read;

use crate::batch::{self, BatchError, BatchHeader, HEADER_BYTES};

/// Attribute bits of a record batch (v2).
const CODEC_MASK: i16 = 0x07;

/// The smallest record: length, attributes, timestamp delta, offset delta, key length, value
/// length and header count, one byte each.
const RECORD_BYTES_MIN: usize = 7;

/// Batches decompress to at most this many bytes, or this many times the largest batch
/// accepted, whichever is more — never more than the cap. Kafka sets no bound; without one, a
/// batch of a few megabytes built to expand (zstd reaches ratios past 10,000:1) would take the
/// broker's memory.
pub const DECOMPRESSED_BYTES_MIN_LIMIT: usize = 64 << 20;
pub const DECOMPRESSED_LIMIT_FACTOR: usize = 4;
pub const DECOMPRESSED_BYTES_CAP: usize = 1 << 30;

/// Which timestamp a topic keeps (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum TimestampType {
    /// The producer's timestamps, as sent.
    #[default]
    CreateTime,
    /// The broker's clock when the batch is appended (set on every batch it stores).
    LogAppendTime,
}

/// What a partition accepts: its topic's settings and the time of the request.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Largest batch, as sent (compressed) — `max.message.bytes`.
    pub batch_bytes_max: usize,
    pub timestamp_type: TimestampType,
    /// With CreateTime: how far a record's timestamp may lie before / after `now_ms`
    /// (`message.timestamp.before.max.ms` / `.after.max.ms`).
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    pub now_ms: i64,
    /// Every record must have a key (a compacted topic: the cleaner keeps the latest record of
    /// each key, and a record without one has none to keep it by).
    pub keys_required: bool,
    /// Transactional batches are taken: the request names a transactional id, and the broker
    /// serves transactions.
    pub transactional: bool,
}

impl Rules {
    pub fn decompressed_bytes_max(&self) -> usize {
        DECOMPRESSED_BYTES_MIN_LIMIT
            .max(
                self.batch_bytes_max
                    .saturating_mul(DECOMPRESSED_LIMIT_FACTOR),
            )
            .min(DECOMPRESSED_BYTES_CAP)
    }
}

/// Validate every batch of a produce payload and every record in it. The headers returned
/// carry the batches' true largest record timestamps (the header's own field is the
/// producer's word for it, and the time index and retention must not trust it).
pub fn validate_produce(payload: &[u8], rules: &Rules) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = batch::validate_all(payload, rules.batch_bytes_max)?;
    let mut pos = 0;
    for h in &mut headers {
        if h.base_offset != 0 {
            // As Kafka: offsets are the broker's to give, and a producer's batch starts at 0.
            return Err(BatchError::InvalidRecords(format!(
                "the batch's base offset is {}: a producer's batch starts at 0",
                h.base_offset
            )));
        }
        h.max_timestamp = validate_records(&payload[pos..pos + h.size], h, rules)?;
        pos += h.size;
    }
    Ok(headers)
}

/// Check the records of one batch whose header and CRC were validated; the largest record
/// timestamp.
pub fn validate_records(batch: &[u8], h: &BatchHeader, rules: &Rules) -> Result<i64, BatchError> {
    if h.is_control() {
        return Err(BatchError::ControlBatch);
    }
    if h.is_transactional() && !rules.transactional {
        return Err(BatchError::Transactional);
    }
    if h.producer_id >= 0 && (h.producer_epoch < 0 || h.base_sequence < 0) {
        return Err(BatchError::InvalidRecords(format!(
            "producer {} has epoch {} and base sequence {}: an idempotent batch needs both",
            h.producer_id, h.producer_epoch, h.base_sequence
        )));
    }
    let body = &batch[HEADER_BYTES..];
    let codec = h.attributes & CODEC_MASK;
    let count = h.record_count as usize;
    let decompressed;
    let records: &[u8] = match codec {
        0 => body,
        1..=4 => {
            decompressed = decompress(codec, body, rules.decompressed_bytes_max())?;
            &decompressed
        }
        other => return Err(BatchError::UnknownCodec(other)),
    };
    if count > records.len() / RECORD_BYTES_MIN {
        return Err(BatchError::InvalidRecords(format!(
            "{count} records cannot fit in {} bytes",
            records.len()
        )));
    }
    walk(records, h, rules)
}

/// Decompress a batch's records with `codec` (1 gzip, 2 snappy, 3 lz4, 4 zstd), refusing
/// output past `limit` bytes.
pub fn decompress(codec: i16, data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let name = codec_name(codec);
    let bad = |e: &dyn std::fmt::Display| BatchError::Compression {
        codec: name,
        reason: e.to_string(),
    };
    let mut out = Vec::new();
    match codec {
        1 => read_limited(flate2::read::MultiGzDecoder::new(data), limit, &mut out)
            .map_err(|e| bad(&e))?,
        2 => snappy(data, limit, &mut out)?,
        3 => read_limited(lz4_flex::frame::FrameDecoder::new(data), limit, &mut out)
            .map_err(|e| bad(&e))?,
        4 => {
            // One frame after another until the input is used up (Java's reader does the same).
            let mut input = data;
            while !input.is_empty() && out.len() <= limit {
                let frame =
                    ruzstd::decoding::StreamingDecoder::new(&mut input).map_err(|e| bad(&e))?;
                read_limited(frame, limit, &mut out).map_err(|e| bad(&e))?;
            }
        }
        other => return Err(BatchError::UnknownCodec(other)),
    }
    if out.len() > limit {
        return Err(BatchError::DecompressedTooLarge { codec: name, limit });
    }
    if out.is_empty() {
        return Err(bad(&"no data"));
    }
    Ok(out)
}

fn codec_name(codec: i16) -> &'static str {
    match codec {
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// Append what `reader` yields to `out`, stopping one byte past `limit` (the caller refuses).
fn read_limited(reader: impl Read, limit: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let room = (limit + 1).saturating_sub(out.len()) as u64;
    reader.take(room).read_to_end(out)?;
    Ok(())
}

/// Kafka's Java producer writes snappy in xerial's framing (a header, then length-prefixed
/// raw blocks); librdkafka writes one raw block. Both are read.
fn snappy(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER_BYTES: usize = 16;
    let bad = |reason: String| BatchError::Compression {
        codec: "snappy",
        reason,
    };
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let len = snap::raw::decompress_len(raw).map_err(|e| bad(e.to_string()))?;
        if out.len() + len > limit {
            return Err(BatchError::DecompressedTooLarge {
                codec: "snappy",
                limit,
            });
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut out[start..])
            .map_err(|e| bad(e.to_string()))?;
        Ok(())
    };
    if !data.starts_with(XERIAL_MAGIC) {
        return block(data, out);
    }
    let mut rest = data
        .get(XERIAL_HEADER_BYTES..)
        .ok_or_else(|| bad("xerial header cut short".into()))?;
    while !rest.is_empty() {
        let (len, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("xerial block length cut short".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        let raw = after
            .get(..len)
            .ok_or_else(|| bad(format!("xerial block of {len} bytes runs past the batch")))?;
        block(raw, out)?;
        rest = &after[len..];
    }
    Ok(())
}

/// Walk the records (`DefaultRecord.readFrom`): each one's length, attributes, timestamp delta,
/// offset delta (the record's index in the batch), key, value and headers, filling exactly the
/// length it declares; nothing after the last. Returns the largest record timestamp. A record
/// that is well formed but not acceptable (no key on a compacted topic, a timestamp outside the
/// topic's window) does not stop the walk: every such record is named, as Kafka's
/// `LogValidator` does.
fn walk(records: &[u8], h: &BatchHeader, rules: &Rules) -> Result<i64, BatchError> {
    let mut cur = Cursor { buf: records };
    let mut max_ts = i64::MIN;
    let mut refused = Vec::new();
    let mut reasons = Vec::new();
    let mut timestamp_refused = false;
    let mut refuse = |index: i32, why: &dyn Fn() -> String| {
        refused.push(index);
        if reasons.len() < batch::REFUSED_REASONS_MAX {
            reasons.push(why());
        }
    };
    for index in 0..h.record_count {
        let bad = |why: String| BatchError::InvalidRecords(format!("record {index}: {why}"));
        let len = cur.varint().map_err(&bad)?;
        let len = usize::try_from(len).map_err(|_| bad(format!("negative length {len}")))?;
        let mut r = Cursor {
            buf: cur.take(len).map_err(|_| {
                bad(format!(
                    "length {len} runs past the end of the batch ({} bytes left)",
                    cur.buf.len()
                ))
            })?,
        };
        let _attributes = r.take(1).map_err(&bad)?;
        let ts_delta = r.varlong().map_err(&bad)?;
        let offset_delta = r.varint().map_err(&bad)?;
        if offset_delta != index {
            return Err(bad(format!(
                "offset delta {offset_delta}, expected {index}"
            )));
        }
        let key = r.bytes("key", -1).map_err(&bad)?;
        if key.is_none() && rules.keys_required {
            refuse(index, &|| {
                "no key: a compacted topic cannot accept a record without a key".to_string()
            });
        }
        r.bytes("value", -1).map_err(&bad)?;
        let headers = r.varint().map_err(&bad)?;
        if headers < 0 {
            return Err(bad(format!("negative header count {headers}")));
        }
        for n in 0..headers {
            let key = r
                .bytes("header key", 0)
                .map_err(|e| bad(format!("header {n}: {e}")))?;
            // Header keys are strings: kafka-python fails on one that is not UTF-8.
            if std::str::from_utf8(key.unwrap_or_default()).is_err() {
                return Err(bad(format!("header {n}: the key is not UTF-8")));
            }
            r.bytes("header value", -1)
                .map_err(|e| bad(format!("header {n}: {e}")))?;
        }
        if !r.buf.is_empty() {
            return Err(bad(format!(
                "{} bytes left after its last field (length {len})",
                r.buf.len()
            )));
        }
        let ts = h
            .first_timestamp
            .checked_add(ts_delta)
            .ok_or_else(|| bad(format!("timestamp delta {ts_delta} overflows")))?;
        if let Err(why) = check_timestamp(ts, rules) {
            timestamp_refused = true;
            refuse(index, &|| why.clone());
        }
        max_ts = max_ts.max(ts);
    }
    if !cur.buf.is_empty() {
        return Err(BatchError::InvalidRecords(format!(
            "{} bytes after the last of the {} records the batch declares",
            cur.buf.len(),
            h.record_count
        )));
    }
    if !refused.is_empty() {
        return Err(BatchError::RecordsRefused {
            timestamp: timestamp_refused,
            refused,
            reasons,
        });
    }
    Ok(max_ts)
}

/// One record of a stored batch as the log cleaner reads it (Kafka's `DefaultRecord`): its
/// fields borrowed from the batch's (decompressed) records.
#[derive(Debug, Clone, Copy)]
pub struct StoredRecord<'a> {
    pub attributes: u8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
    /// The header count and the headers, as they are.
    pub headers: &'a [u8],
}

/// The `count` records of a stored batch's records (decompressed). A stored batch was checked
/// record by record when it was produced; this reads it again without trusting it (a record
/// that does not parse is an error, never a guess).
pub fn stored_records(records: &[u8], count: i32) -> Result<Vec<StoredRecord<'_>>, String> {
    let mut cur = Cursor { buf: records };
    let mut out = Vec::with_capacity(
        usize::try_from(count)
            .unwrap_or(0)
            .min(records.len() / RECORD_BYTES_MIN + 1),
    );
    for index in 0..count {
        let bad = |why: String| format!("record {index}: {why}");
        let len = cur.varint().map_err(&bad)?;
        let len = usize::try_from(len).map_err(|_| bad(format!("negative length {len}")))?;
        let mut r = Cursor {
            buf: cur.take(len).map_err(&bad)?,
        };
        let attributes = r.take(1).map_err(&bad)?[0];
        let timestamp_delta = r.varlong().map_err(&bad)?;
        let offset_delta = r.varint().map_err(&bad)?;
        let key = r.bytes("key", -1).map_err(&bad)?;
        let value = r.bytes("value", -1).map_err(&bad)?;
        out.push(StoredRecord {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers: r.buf,
        });
    }
    Ok(out)
}

/// Append `r` to `out` with its timestamp delta set to `timestamp_delta` (the same record
/// under another base timestamp).
pub fn encode_record(out: &mut bytes::BytesMut, r: &StoredRecord<'_>, timestamp_delta: i64) {
    let mut body = bytes::BytesMut::with_capacity(
        24 + r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len) + r.headers.len(),
    );
    body.extend_from_slice(&[r.attributes]);
    batch::put_zigzag(&mut body, timestamp_delta);
    batch::put_zigzag(&mut body, i64::from(r.offset_delta));
    for field in [r.key, r.value] {
        match field {
            None => batch::put_zigzag(&mut body, -1),
            Some(b) => {
                batch::put_zigzag(&mut body, b.len() as i64);
                body.extend_from_slice(b);
            }
        }
    }
    body.extend_from_slice(r.headers);
    batch::put_zigzag(out, body.len() as i64);
    out.extend_from_slice(&body);
}

/// `message.timestamp.before.max.ms` / `after.max.ms`: with CreateTime, a record's timestamp
/// (unless it has none, -1) must lie within the window around the broker's clock.
fn check_timestamp(ts: i64, rules: &Rules) -> Result<(), String> {
    if rules.timestamp_type != TimestampType::CreateTime || ts == -1 {
        return Ok(());
    }
    let before = rules.now_ms.saturating_sub(ts);
    let after = ts.saturating_sub(rules.now_ms);
    if before > rules.timestamp_before_max_ms || after > rules.timestamp_after_max_ms {
        return Err(format!(
            "timestamp {ts} is {} ms from the broker's clock ({}); the topic accepts {} ms \
             before and {} ms after",
            if before > 0 { before } else { after },
            rules.now_ms,
            rules.timestamp_before_max_ms,
            rules.timestamp_after_max_ms
        ));
    }
    Ok(())
}

/// Reads the primitive fields of a record (Kafka's zig-zag varints and length-prefixed bytes).
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!("{n} bytes wanted, {} left", self.buf.len()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// An unsigned varint of at most `max_bytes` bytes whose value fits `bits` bits.
    fn unsigned(&mut self, max_bytes: usize, bits: u32) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let b = *self
                .buf
                .get(i)
                .ok_or_else(|| "varint cut short".to_string())?;
            let shift = 7 * i as u32;
            value |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                if shift + 7 > bits && (b as u64) >> (bits - shift) != 0 {
                    break; // Bits past the value's width: refused below, never truncated.
                }
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(format!("varint longer than {bits} bits"))
    }

    fn varint(&mut self) -> Result<i32, String> {
        let z = self.unsigned(5, 32)? as u32;
        Ok((z >> 1) as i32 ^ -((z & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, String> {
        let z = self.unsigned(10, 64)?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    /// A length (at least `min`; -1 means null) and that many bytes.
    fn bytes(&mut self, what: &str, min: i32) -> Result<Option<&'a [u8]>, String> {
        let len = self.varint()?;
        if len < min {
            return Err(format!("{what} length {len}"));
        }
        if len < 0 {
            return Ok(None);
        }
        self.take(len as usize)
            .map(Some)
            .map_err(|_| format!("{what} of {len} bytes runs past the record"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_past_their_width_are_refused_not_truncated() {
        // 2^35 as an unsigned varint: six bytes. Read as 32 bits it would be 0.
        let mut c = Cursor {
            buf: &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        };
        assert!(c.varint().is_err());
        // Five bytes whose last carries bits past 32.
        let mut c = Cursor {
            buf: &[0xff, 0xff, 0xff, 0xff, 0x1f],
        };
        assert!(c.varint().is_err());
        // The largest 32-bit value is fine: zig-zag 0xffff_ffff is i32::MIN.
        let mut c = Cursor {
            buf: &[0xff, 0xff, 0xff, 0xff, 0x0f],
        };
        assert_eq!(c.varint(), Ok(i32::MIN));
        let mut c = Cursor {
            buf: &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        };
        assert_eq!(c.varlong(), Ok(i64::MAX));
        let mut c = Cursor {
            buf: &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03],
        };
        assert!(c.varlong().is_err());
    }
}
