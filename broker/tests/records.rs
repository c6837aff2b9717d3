//! Records inside produced batches: what every codec's valid batch looks like to the broker's
//! validation, each kind of poison a client can send with a valid CRC, and a fuzz of record
//! bodies (compressed and not) whose property is the one consumers need: whatever the broker
//! accepts, `kafka-protocol`'s decoder reads, record for record — also after a round trip
//! through the real server.
#![cfg(not(madsim))]

use broker::batch::{self, BatchError};
use broker::records::{self, Rules, TimestampType};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

mod common;
use common::{decode, encode, record, Client, Codec, CODECS};

const NOW_MS: i64 = 1_700_000_000_000;

fn rules() -> Rules {
    Rules {
        batch_bytes_max: 1 << 20,
        timestamp_type: TimestampType::CreateTime,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
        now_ms: NOW_MS,
        keys_required: false,
        transactional: false,
    }
}

/// A batch built by hand around `records` (the bytes after the header), with the codec
/// attribute and record count given and a correct CRC-32C: poison that passes every header
/// check.
fn raw_batch(attributes: i16, count: i32, records: &[u8]) -> Bytes {
    let mut after_crc = Vec::new();
    after_crc.extend_from_slice(&attributes.to_be_bytes());
    after_crc.extend_from_slice(&(count - 1).to_be_bytes());
    after_crc.extend_from_slice(&NOW_MS.to_be_bytes());
    after_crc.extend_from_slice(&NOW_MS.to_be_bytes());
    after_crc.extend_from_slice(&(-1i64).to_be_bytes());
    after_crc.extend_from_slice(&(-1i16).to_be_bytes());
    after_crc.extend_from_slice(&(-1i32).to_be_bytes());
    after_crc.extend_from_slice(&count.to_be_bytes());
    after_crc.extend_from_slice(records);
    let mut out = Vec::new();
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((4 + 1 + 4 + after_crc.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.push(2);
    out.extend_from_slice(&crc32c::crc32c(&after_crc).to_be_bytes());
    out.extend_from_slice(&after_crc);
    Bytes::from(out)
}

/// The records part (after the 61-byte header) of a batch `kafka-protocol` encoded.
fn records_of(batch: &Bytes) -> Bytes {
    batch.slice(batch::HEADER_BYTES..)
}

/// Recompute a batch's CRC after its records were changed.
fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn sample(n: i64) -> Vec<kafka_protocol::records::Record> {
    (0..n)
        .map(|i| {
            record(
                i,
                NOW_MS + i * 7,
                (i % 3 != 0).then_some(format!("key-{i}").as_bytes()),
                (i % 5 != 4)
                    .then_some(vec![b'v'; (i * 13 % 200) as usize])
                    .as_deref(),
                &[
                    ("trace", Some(b"abc")),
                    ("empty", Some(b"")),
                    ("null", None),
                ],
            )
        })
        .collect()
}

#[test]
fn valid_batches_of_every_codec_pass_and_report_their_largest_timestamp() {
    for codec in CODECS {
        let mut recs = sample(20);
        // The largest timestamp in the middle; the header's own field is not trusted.
        recs[7].timestamp = NOW_MS + 10_000;
        let b = encode(&recs, codec);
        let headers = records::validate_produce(&b, &rules())
            .unwrap_or_else(|e| panic!("{codec:?}: a valid batch was refused: {e}"));
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].record_count, 20);
        assert_eq!(headers[0].max_timestamp, NOW_MS + 10_000, "{codec:?}");
        assert_eq!(decode(b).unwrap().len(), 20, "{codec:?}");
    }
}

#[test]
fn duplicate_header_keys_which_kafka_allows_are_accepted() {
    let mut raw = Vec::new();
    // length, attributes, ts delta, offset delta, key -1, value 1 "v", 2 headers "h"="1","h"="2"
    let body = [0u8, 0, 0, 1, 2, b'v', 4, 2, b'h', 2, b'1', 2, b'h', 2, b'2'];
    raw.push((body.len() as u8) << 1);
    raw.extend_from_slice(&body);
    records::validate_produce(&raw_batch(0, 1, &raw), &rules()).unwrap();
}

/// Each way a client can poison a partition with a valid CRC, and the refusal it gets.
#[test]
fn every_kind_of_poison_is_refused() {
    let good = encode(&sample(3), Codec::None);
    let good_records = records_of(&good);
    let gzip_of_garbage = Codec::Gzip.compress(b"this is not a record at all, just words");
    let mut length_past_end = good_records.to_vec();
    // zig-zag 1,048,575: far more than the records hold.
    length_past_end[..3].copy_from_slice(&[0xfe, 0xff, 0x7f]);
    let mut trailing = good_records.to_vec();
    trailing.extend_from_slice(b"tail");
    let mut wrong_delta = good_records.to_vec();
    wrong_delta[3] = 2 << 1; // the first record's offset delta: 2 instead of 0
    let huge_varint = [0x80u8, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0, 0, 0, 0, 0];
    type Expected = fn(&BatchError) -> bool;
    let cases: Vec<(&str, Bytes, Expected)> = vec![
        (
            "gzip codec around non-gzip bytes",
            raw_batch(1, 3, b"definitely not gzip"),
            |e| matches!(e, BatchError::Compression { codec: "gzip", .. }),
        ),
        (
            "snappy codec around non-snappy bytes",
            raw_batch(2, 3, &[0xff; 40]),
            |e| {
                matches!(
                    e,
                    BatchError::Compression {
                        codec: "snappy",
                        ..
                    }
                )
            },
        ),
        (
            "lz4 codec around non-lz4 bytes",
            raw_batch(3, 3, b"definitely not lz4"),
            |e| matches!(e, BatchError::Compression { codec: "lz4", .. }),
        ),
        (
            "zstd codec around non-zstd bytes",
            raw_batch(4, 3, b"definitely not zstd"),
            |e| matches!(e, BatchError::Compression { codec: "zstd", .. }),
        ),
        ("codec 5", raw_batch(5, 3, &good_records), |e| {
            matches!(e, BatchError::UnknownCodec(5))
        }),
        ("codec 7", raw_batch(7, 3, &good_records), |e| {
            matches!(e, BatchError::UnknownCodec(7))
        }),
        ("garbage record bodies", raw_batch(0, 3, &[0x13; 64]), |e| {
            matches!(e, BatchError::InvalidRecords(_))
        }),
        (
            "a record length past the batch end",
            raw_batch(0, 3, &length_past_end),
            |e| matches!(e, BatchError::InvalidRecords(m) if m.contains("runs past")),
        ),
        (
            "valid gzip around garbage",
            raw_batch(1, 3, &gzip_of_garbage),
            |e| matches!(e, BatchError::InvalidRecords(_)),
        ),
        (
            "a control batch from a client",
            raw_batch(0x20, 3, &good_records),
            |e| matches!(e, BatchError::ControlBatch),
        ),
        (
            "a transactional batch without a coordinator",
            raw_batch(0x10, 3, &good_records),
            |e| matches!(e, BatchError::Transactional),
        ),
        (
            "more records declared than present",
            raw_batch(0, 4, &good_records),
            |e| matches!(e, BatchError::InvalidRecords(_)),
        ),
        (
            "bytes after the last record",
            raw_batch(0, 3, &trailing),
            |e| matches!(e, BatchError::InvalidRecords(m) if m.contains("after the last")),
        ),
        (
            "an offset delta out of order",
            raw_batch(0, 3, &wrong_delta),
            |e| matches!(e, BatchError::InvalidRecords(m) if m.contains("offset delta")),
        ),
        (
            "a varint longer than 32 bits",
            raw_batch(0, 1, &huge_varint),
            |e| matches!(e, BatchError::InvalidRecords(m) if m.contains("varint")),
        ),
        (
            "two billion records claimed",
            raw_batch(0, i32::MAX, &good_records),
            |e| matches!(e, BatchError::InvalidRecords(m) if m.contains("cannot fit")),
        ),
    ];
    for (name, batch, expected) in cases {
        batch::validate(&batch).unwrap_or_else(|e| panic!("{name}: header must be valid: {e}"));
        match records::validate_produce(&batch, &rules()) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => assert!(expected(&e), "{name}: refused with the wrong reason: {e}"),
        }
    }
}

#[test]
fn record_level_faults_inside_a_valid_record_are_refused() {
    // One record: length 8; attributes, ts delta 0, offset delta 0, key -1, value 1 "v", then
    // a header count and bytes that do not fit the declared length.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "bytes left inside a record",
            vec![16, 0, 0, 0, 1, 2, b'v', 0, 9],
        ),
        ("negative header count", vec![14, 0, 0, 0, 1, 2, b'v', 1]),
        ("negative key length", vec![14, 0, 0, 0, 5, 2, b'v', 0]),
        ("header key of -1", vec![18, 0, 0, 0, 1, 2, b'v', 2, 1, 0]),
        (
            "non-UTF-8 header key",
            vec![20, 0, 0, 0, 1, 2, b'v', 2, 2, 0xff, 0],
        ),
        ("record length negative", vec![1, 0, 0, 0, 1, 2, b'v', 0]),
    ];
    for (name, raw) in cases {
        let b = raw_batch(0, 1, &raw);
        assert!(
            matches!(
                records::validate_produce(&b, &rules()),
                Err(BatchError::InvalidRecords(_))
            ),
            "{name}: not refused as invalid records"
        );
    }
}

/// Kafka's `LogValidator` names every refused record of a batch, not only the first: a client
/// (librdkafka) fails exactly those and tells the others they were refused for their batch.
#[test]
fn every_keyless_record_and_bad_timestamp_of_a_batch_is_named() {
    let mut recs = sample(8); // records 0, 3 and 6 have no key
    recs[4].timestamp = NOW_MS + 60_000;
    let mut r = rules();
    r.keys_required = true;
    for codec in CODECS {
        let b = encode(&recs, codec);
        match records::validate_produce(&b, &r) {
            Err(BatchError::RecordsRefused {
                timestamp,
                refused,
                reasons,
            }) => {
                assert!(!timestamp, "{codec:?}");
                assert_eq!(refused, [0, 3, 6], "{codec:?}");
                assert_eq!(reasons.len(), 3);
                assert!(reasons[0].contains("no key"), "{reasons:?}");
            }
            other => panic!("{codec:?}: {other:?}"),
        }
        r.timestamp_after_max_ms = 30_000;
        match records::validate_produce(&b, &r) {
            Err(
                e @ BatchError::RecordsRefused {
                    timestamp: true, ..
                },
            ) => {
                let BatchError::RecordsRefused { refused, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(refused, &[0, 3, 4, 6], "{codec:?}");
                assert!(e.to_string().contains("and 3 more records"), "{e}");
            }
            other => panic!("{codec:?}: {other:?}"),
        }
        r.timestamp_after_max_ms = i64::MAX;
    }
    // Keys are not asked of a topic that is not compacted.
    records::validate_produce(&encode(&recs, Codec::None), &rules()).unwrap();
    // Every refused record is named; only the first ones are told with why (bounded memory).
    match records::validate_produce(&encode(&sample(300), Codec::None), &r) {
        Err(BatchError::RecordsRefused {
            refused, reasons, ..
        }) => {
            assert_eq!(refused.len(), 100);
            assert_eq!(reasons.len(), batch::REFUSED_REASONS_MAX);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn timestamps_that_overflow_or_leave_the_topics_window_are_refused() {
    let mut recs = sample(2);
    recs[1].timestamp = NOW_MS + 60_000;
    let b = encode(&recs, Codec::None);
    let mut r = rules();
    r.timestamp_after_max_ms = 30_000;
    assert!(matches!(
        records::validate_produce(&b, &r),
        Err(BatchError::RecordsRefused { timestamp: true, refused, .. }) if refused == [1]
    ));
    r.timestamp_after_max_ms = 60_000;
    records::validate_produce(&b, &r).unwrap();
    r.timestamp_before_max_ms = 0;
    let mut old = sample(1);
    old[0].timestamp = NOW_MS - 1;
    assert!(records::validate_produce(&encode(&old, Codec::None), &r).is_err());
    // With LogAppendTime the producer's timestamps do not matter.
    r.timestamp_type = TimestampType::LogAppendTime;
    records::validate_produce(&encode(&old, Codec::None), &r).unwrap();
    // A delta that overflows i64 from the batch's first timestamp.
    let overflow = [
        0x1e, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 1, 1, 0,
    ];
    assert!(matches!(
        records::validate_produce(&raw_batch(0, 1, &overflow), &rules()),
        Err(BatchError::InvalidRecords(m)) if m.contains("overflows")
    ));
}

#[test]
fn a_decompression_bomb_is_refused_within_its_bound() {
    // A zstd frame of run-length blocks: 128 KiB of zeros per 4 bytes, 1 GiB in all.
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
    let blocks = 8192;
    for i in 0..blocks {
        let last = (i == blocks - 1) as u32;
        let header = last | (1 << 1) | ((128 * 1024) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    let b = raw_batch(4, 1, &frame);
    assert!(b.len() < 64 * 1024, "a small batch: {} bytes", b.len());
    match records::validate_produce(&b, &rules()) {
        Err(BatchError::DecompressedTooLarge {
            codec: "zstd",
            limit,
        }) => {
            assert_eq!(limit, records::DECOMPRESSED_BYTES_MIN_LIMIT)
        }
        other => panic!("a 1 GiB zstd bomb: {other:?}"),
    }
}

#[test]
fn batches_above_the_topics_size_limit_are_refused() {
    let b = encode(&sample(20), Codec::None);
    let mut r = rules();
    r.batch_bytes_max = b.len() - 1;
    assert!(matches!(
        records::validate_produce(&b, &r),
        Err(BatchError::TooLarge { .. })
    ));
    r.batch_bytes_max = b.len();
    records::validate_produce(&b, &r).unwrap();
}

fn codec_strategy() -> impl Strategy<Value = Codec> {
    prop::sample::select(CODECS.to_vec())
}

/// Records with arbitrary keys, values and headers.
fn records_strategy() -> impl Strategy<Value = Vec<kafka_protocol::records::Record>> {
    let one = (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        proptest::collection::vec(
            (
                "[a-z]{0,6}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            ),
            0..4,
        ),
        -5_000i64..5_000,
    );
    proptest::collection::vec(one, 1..12).prop_map(|rs| {
        rs.into_iter()
            .enumerate()
            .map(|(i, (k, v, hs, dt))| {
                let hs: Vec<(&str, Option<&[u8]>)> =
                    hs.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                record(i as i64, NOW_MS + dt, k.as_deref(), v.as_deref(), &hs)
            })
            .collect()
    })
}

/// Damage the batch's records in place (compressed bytes for a compressed batch) and make the
/// CRC valid again, so that only the record validation stands between it and the log.
fn damage(batch: &Bytes, flips: &[(usize, u8)], cut: Option<usize>) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    let n = b.len() - batch::HEADER_BYTES;
    for (at, x) in flips {
        if n > 0 {
            b[batch::HEADER_BYTES + at % n] ^= x;
        }
    }
    if let Some(keep) = cut {
        let keep = batch::HEADER_BYTES + keep % (n + 1);
        b.truncate(keep);
        let len = (keep - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
    }
    fix_crc(&mut b);
    b.freeze()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Valid batches of every codec are accepted and read back record for record.
    #[test]
    fn generated_batches_are_accepted_and_decode(recs in records_strategy(), codec in codec_strategy()) {
        let b = encode(&recs, codec);
        let headers = records::validate_produce(&b, &rules());
        prop_assert!(headers.is_ok(), "{:?}: {:?}", codec, headers);
        let back = decode(b).unwrap();
        prop_assert_eq!(back.len(), recs.len());
        for (a, b) in back.iter().zip(&recs) {
            prop_assert_eq!(&a.key, &b.key);
            prop_assert_eq!(&a.value, &b.value);
            prop_assert_eq!(a.timestamp, b.timestamp);
        }
    }

    /// The fuzz of record bodies: damaged records (compressed and not) are refused or, if
    /// accepted, are records a consumer's decoder reads — never a panic, never a poison.
    #[test]
    fn damaged_records_are_refused_or_readable(
        recs in records_strategy(),
        codec in codec_strategy(),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let b = damage(&encode(&recs, codec), &flips, cut);
        if let Ok(headers) = records::validate_produce(&b, &rules()) {
            let decoded = decode(b.clone());
            prop_assert!(decoded.is_ok(), "{:?}: accepted but undecodable: {:?}", codec, decoded.err());
            prop_assert_eq!(decoded.unwrap().len(), headers[0].record_count as usize);
        }
    }
}

/// End to end through the real server: a mix of valid and damaged batches produced to one
/// partition; what the broker acknowledged is exactly what a fetch returns, and every fetched
/// batch decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_server_stores_a_consumer_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(dir.path()).await;
    let mut c = Client::connect(running.kafka_addr).await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let input = (
        records_strategy(),
        codec_strategy(),
        proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
        any::<bool>(),
    );
    let mut accepted = 0usize;
    let mut refused = 0usize;
    for _ in 0..150 {
        let (recs, codec, flips, damaged) = input.new_tree(&mut runner).unwrap().current();
        let good = encode(&recs, codec);
        let b = if damaged {
            damage(&good, &flips, None)
        } else {
            good
        };
        let (code, base) = c.produce("fuzzed", 0, b).await;
        if code == 0 {
            assert_eq!(base, accepted as i64, "dense offsets");
            accepted += recs.len();
        } else {
            assert!(
                code == broker::protocol::error::INVALID_RECORD
                    || code == broker::protocol::error::CORRUPT_MESSAGE,
                "refused with {code}"
            );
            refused += 1;
        }
    }
    assert!(
        refused > 10 && accepted > 100,
        "{refused} refused, {accepted} records accepted"
    );
    let mut offset = 0i64;
    let mut read = Vec::new();
    loop {
        let (data, hw) = c.fetch("fuzzed", 0, offset).await;
        assert_eq!(hw, accepted as i64);
        if data.is_empty() {
            break;
        }
        let recs = decode(data).expect("every stored batch decodes");
        offset = recs.last().unwrap().offset + 1;
        read.extend(recs);
    }
    assert_eq!(read.len(), accepted);
    for (i, r) in read.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
    }
    drop(c);
    running.shutdown().await;
}
