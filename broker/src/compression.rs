//! A topic's `compression.type`, as Kafka's `LogValidator` applies it: `producer` stores each
//! batch as it was sent; a codec (`gzip`, `snappy`, `lz4`, `zstd`) or `uncompressed` makes the
//! broker rewrite every produced batch whose codec differs — its records decompressed (within
//! the bound validation uses), compressed again with the topic's codec, and the batch rebuilt
//! around them: its offset delta, timestamps, partition leader epoch, producer id, epoch and
//! sequence kept, the codec bits and the length changed, the CRC-32C computed again. Batches
//! already in the topic's codec are kept byte for byte.
//!
//! The codecs are the crates validation reads with (no codec is written here): `flate2` (gzip
//! at its default level, Kafka's `compression.gzip.level=-1`), `snap` (in xerial's framing, as
//! Kafka's Java producer and broker write snappy; every client reads it), `lz4_flex` (the LZ4
//! frame format with 64 KiB independent blocks, as Kafka's), `ruzstd` (its fastest level,
//! about zstd level 1: the pure-Rust encoder has no other yet).
//!
//! The work is done in the produce request's task, before the append is queued, so the commit
//! pipeline (the log's only writer) never compresses.

use std::io::Write;

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchError, BatchHeader, HEADER_BYTES, LOG_OVERHEAD};
use crate::records;

/// What `compression.type` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum TopicCompression {
    /// Batches as the producer compressed them.
    #[default]
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl TopicCompression {
    pub fn parse(s: &str) -> Option<TopicCompression> {
        Some(match s {
            "producer" => TopicCompression::Producer,
            "uncompressed" => TopicCompression::Uncompressed,
            "gzip" => TopicCompression::Gzip,
            "snappy" => TopicCompression::Snappy,
            "lz4" => TopicCompression::Lz4,
            "zstd" => TopicCompression::Zstd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TopicCompression::Producer => "producer",
            TopicCompression::Uncompressed => "uncompressed",
            TopicCompression::Gzip => "gzip",
            TopicCompression::Snappy => "snappy",
            TopicCompression::Lz4 => "lz4",
            TopicCompression::Zstd => "zstd",
        }
    }

    /// The codec id batches are stored with (`None`: the producer's).
    fn codec(self) -> Option<i16> {
        match self {
            TopicCompression::Producer => None,
            TopicCompression::Uncompressed => Some(0),
            TopicCompression::Gzip => Some(1),
            TopicCompression::Snappy => Some(2),
            TopicCompression::Lz4 => Some(3),
            TopicCompression::Zstd => Some(4),
        }
    }
}

/// `payload` (validated batches, described by `headers`) as the topic stores it: `None` when
/// every batch is kept as sent, or the rewritten payload and its headers (each keeping the
/// validated largest record timestamp). A rewritten batch larger than `batch_bytes_max` is
/// refused, as Kafka refuses one after recompression.
pub fn recompress(
    payload: &[u8],
    headers: &[BatchHeader],
    target: TopicCompression,
    batch_bytes_max: usize,
    decompressed_bytes_max: usize,
) -> Result<Option<(Bytes, Vec<BatchHeader>)>, BatchError> {
    let Some(codec) = target.codec() else {
        return Ok(None);
    };
    if headers.iter().all(|h| h.compression() == codec) {
        return Ok(None);
    }
    let mut out = BytesMut::with_capacity(payload.len());
    let mut rewritten = Vec::with_capacity(headers.len());
    let mut pos = 0;
    for h in headers {
        let one = &payload[pos..pos + h.size];
        pos += h.size;
        let start = out.len();
        if h.compression() == codec {
            out.extend_from_slice(one);
            rewritten.push(*h);
            continue;
        }
        let body = &one[HEADER_BYTES..];
        let plain;
        let records: &[u8] = match h.compression() {
            0 => body,
            from => {
                plain = records::decompress(from, body, decompressed_bytes_max)?;
                &plain
            }
        };
        let body = compress(codec, records);
        let size = HEADER_BYTES + body.len();
        if size > batch_bytes_max {
            return Err(BatchError::TooLarge {
                size,
                limit: batch_bytes_max,
            });
        }
        out.extend_from_slice(&one[..HEADER_BYTES]);
        out.extend_from_slice(&body);
        let length = i32::try_from(size - LOG_OVERHEAD).map_err(|_| BatchError::TooLarge {
            size,
            limit: batch_bytes_max,
        })?;
        batch::rewrite_codec(&mut out[start..], codec, length);
        let mut header = batch::parse_header(&out[start..])?;
        header.max_timestamp = h.max_timestamp;
        rewritten.push(header);
    }
    Ok(Some((out.freeze(), rewritten)))
}

/// Block size of snappy's xerial framing (Kafka's Java producer uses 32 KiB).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// `records` compressed with `codec` (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub(crate) fn compress(codec: i16, records: &[u8]) -> Vec<u8> {
    match codec {
        1 => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            // Writing to memory cannot fail.
            enc.write_all(records).expect("gzip into memory");
            enc.finish().expect("gzip into memory")
        }
        2 => {
            let mut out = Vec::with_capacity(records.len() / 2 + 16);
            out.extend_from_slice(b"\x82SNAPPY\x00");
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for block in records.chunks(XERIAL_BLOCK_BYTES) {
                let raw = enc
                    .compress_vec(block)
                    .expect("a block within snappy's limits");
                out.extend_from_slice(&(raw.len() as u32).to_be_bytes());
                out.extend_from_slice(&raw);
            }
            out
        }
        3 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(records).expect("lz4 into memory");
            enc.finish().expect("lz4 into memory")
        }
        4 => {
            ruzstd::encoding::compress_to_vec(records, ruzstd::encoding::CompressionLevel::Fastest)
        }
        _ => records.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{validate_produce, Rules, TimestampType};

    fn rules() -> Rules {
        Rules {
            batch_bytes_max: 1 << 20,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            now_ms: 0,
            keys_required: false,
            transactional: false,
        }
    }

    #[test]
    fn every_codec_round_trips_through_the_validator() {
        let plain = batch::tests::make_batch(50, 1_000, 300);
        let headers = validate_produce(&plain, &rules()).unwrap();
        let mut payload = plain.clone();
        let mut previous = headers.clone();
        for target in [
            TopicCompression::Gzip,
            TopicCompression::Snappy,
            TopicCompression::Lz4,
            TopicCompression::Zstd,
            TopicCompression::Uncompressed,
        ] {
            let (out, hs) = recompress(&payload, &previous, target, 1 << 20, 64 << 20)
                .unwrap()
                .expect("a batch in another codec is rewritten");
            assert_eq!(hs[0].compression(), target.codec().unwrap());
            assert_eq!(hs[0].max_timestamp, headers[0].max_timestamp);
            assert_eq!(hs[0].record_count, 50);
            // The rewritten batch is valid (CRC, records), and kept as is when asked again.
            let again = validate_produce(&out, &rules()).unwrap();
            assert_eq!(again[0].size, out.len());
            assert!(recompress(&out, &again, target, 1 << 20, 64 << 20)
                .unwrap()
                .is_none());
            payload = out;
            previous = hs;
        }
        // Back to uncompressed: the records are exactly the original ones.
        assert_eq!(payload[HEADER_BYTES..], plain[HEADER_BYTES..]);
        assert!(recompress(
            &plain,
            &headers,
            TopicCompression::Producer,
            1 << 20,
            64 << 20
        )
        .unwrap()
        .is_none());
    }

    #[test]
    fn a_batch_that_grows_past_the_limit_is_refused() {
        let b = batch::tests::make_batch(50, 0, 300);
        let hs = validate_produce(&b, &rules()).unwrap();
        let (gz, hs) = recompress(&b, &hs, TopicCompression::Gzip, 1 << 20, 1 << 20)
            .unwrap()
            .unwrap();
        assert!(gz.len() < b.len() / 10);
        let err = recompress(
            &gz,
            &hs,
            TopicCompression::Uncompressed,
            b.len() - 1,
            1 << 20,
        )
        .unwrap_err();
        assert!(matches!(err, BatchError::TooLarge { .. }), "{err}");
    }
}
