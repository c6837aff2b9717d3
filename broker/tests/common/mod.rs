//! Helpers shared by the broker's integration tests: batches encoded by `kafka-protocol` (an
//! encoder this project did not write, so the broker's parsing is checked against it) in every
//! codec, its decoder as an oracle for what consumers can read, and an in-process broker with a
//! wire client.
#![allow(dead_code)] // Each test crate uses its own share of these.

pub mod gated;
pub mod turn;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::config::Config;
use broker::protocol::error;
use broker::server;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use io_backend::{blocking::BlockingDisk, Env, EnvRng, SystemClock, TcpNet};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An uncompressed record batch of `count` records with the same timestamp and value, encoded by
/// `kafka-protocol` (an encoder this project did not write, so the broker's parsing is checked
/// against it).
/// How many segment files (`*.log`) a partition's directory holds.
#[allow(dead_code)]
pub fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

/// Drop a store and one of its partitions, and wait until its pipeline has ended.
pub async fn close_store(
    store: Arc<broker::storage::Store>,
    p: Arc<broker::storage::log::Partition>,
) {
    let closed = store.closed();
    drop(p);
    drop(store);
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the pipeline ends");
}

/// One Raft write to a replicated partition through the commit pipeline (`w` fills it in),
/// answered once durable.
pub async fn raft_write(
    store: &broker::storage::Store,
    p: &Arc<broker::storage::log::Partition>,
    w: impl FnOnce(&mut broker::storage::RaftWrite),
) -> broker::storage::RaftWritten {
    let mut write = broker::storage::RaftWrite {
        partition: p.clone(),
        reset: None,
        truncate_from: None,
        producers_at_cut: None,
        entries: Vec::new(),
        hard_state: None,
        conf: None,
    };
    w(&mut write);
    let rx = store.raft_write(write).await.expect("queued");
    tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("answered")
        .expect("pipeline alive")
        .expect("written")
}

pub fn make_batch(count: i32, timestamp: i64, value: &[u8]) -> Bytes {
    let records: Vec<Record> = (0..count as i64)
        .map(|i| record(i, timestamp, Some(b"k"), Some(value), &[]))
        .collect();
    encode(&records, Codec::None)
}

/// A batch of `count` records from idempotent producer `producer_id` at `epoch`, its first
/// record's sequence number `sequence`.
pub fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, count: i32) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            producer_id,
            producer_epoch: epoch,
            sequence: sequence + i,
            ..record(i as i64, 1_700_000_000_000, None, Some(b"idempotent"), &[])
        })
        .collect();
    encode(&records, Codec::None)
}

/// A batch of `count` records of transactional producer `producer_id` at `epoch` (its first
/// record's sequence number `sequence`), each with a value of `value_bytes` bytes.
pub fn transactional_batch(
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    count: i32,
    value_bytes: usize,
) -> Bytes {
    let value = vec![b't'; value_bytes];
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            producer_id,
            producer_epoch: epoch,
            sequence: sequence + i,
            transactional: true,
            ..record(i as i64, 1_700_000_000_000, Some(b"k"), Some(&value), &[])
        })
        .collect();
    encode(&records, Codec::None)
}

/// A record for [`encode`]: offset (its index in the batch), timestamp, key, value, headers.
pub fn record(
    offset: i64,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> Record {
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        // A non-idempotent batch: the encoder wants sequence = offset - 1 (docs/design.md, "Pitfalls").
        sequence: offset as i32 - 1,
        timestamp,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    StrBytes::from_string(k.to_string()),
                    v.map(Bytes::copy_from_slice),
                )
            })
            .collect(),
        delete_horizon: false,
    }
}

/// How a test batch is compressed: Kafka's codecs, and snappy in both framings clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    /// One raw snappy block, as librdkafka writes it.
    SnappyRaw,
    /// xerial's framing, as the Java producer writes it.
    SnappyXerial,
    Lz4,
    Zstd,
}

pub const CODECS: [Codec; 6] = [
    Codec::None,
    Codec::Gzip,
    Codec::SnappyRaw,
    Codec::SnappyXerial,
    Codec::Lz4,
    Codec::Zstd,
];

impl Codec {
    fn kafka(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::SnappyRaw | Codec::SnappyXerial => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }

    /// Compress `data` with the codec crates (pure Rust, as the broker's decoders).
    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Codec::None => data.to_vec(),
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Codec::SnappyRaw => snap::raw::Encoder::new().compress_vec(data).unwrap(),
            Codec::SnappyXerial => {
                let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
                for chunk in data.chunks(32 * 1024) {
                    let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                    out.extend_from_slice(&block);
                }
                out
            }
            Codec::Lz4 => {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Codec::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
        }
    }
}

/// One batch of `records` (offsets 0.., consecutive), encoded by `kafka-protocol`.
pub fn encode(records: &[Record], codec: Codec) -> Bytes {
    let mut buf = BytesMut::new();
    let compress = move |plain: &mut BytesMut, out: &mut BytesMut, _: Compression| {
        out.put_slice(&codec.compress(plain));
        Ok(())
    };
    RecordBatchEncoder::encode_with_custom_compression(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: codec.kafka(),
        },
        Some(compress),
    )
    .expect("encode a record batch");
    buf.freeze()
}

/// `kafka-protocol`'s decoder over whole batches — the oracle for "a consumer can read this".
pub fn decode(mut batches: Bytes) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    while batches.has_remaining() {
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut batches,
            Some(|data: &mut Bytes, c: Compression| {
                let codec = match c {
                    Compression::None => return Ok(data.clone()),
                    Compression::Gzip => 1,
                    Compression::Snappy => 2,
                    Compression::Lz4 => 3,
                    Compression::Zstd => 4,
                };
                broker::records::decompress(codec, data, 1 << 30)
                    .map(Bytes::from)
                    .map_err(anyhow::Error::from)
            }),
        )?;
        out.extend(set.records);
    }
    Ok(out)
}

/// The admin APIs whose every version `tests/admin.rs` serves (`tests/wire.rs` the rest).
/// The partition of an internal topic of `partitions` that holds `key` (Kafka's hash).
pub fn partition_of(key: &str, partitions: i32) -> i32 {
    broker::group::partition_for(key, partitions)
}

/// The transaction APIs (tests/wire_txn.rs).
pub const TXN_APIS: &[ApiKey] = &[
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::WriteTxnMarkers,
    ApiKey::DescribeTransactions,
    ApiKey::ListTransactions,
];

pub const ADMIN_APIS: &[ApiKey] = &[
    ApiKey::CreatePartitions,
    ApiKey::DeleteRecords,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeCluster,
    ApiKey::DescribeLogDirs,
    ApiKey::DescribeAcls,
    ApiKey::CreateAcls,
    ApiKey::DeleteAcls,
    ApiKey::ElectLeaders,
    ApiKey::DescribeProducers,
];

pub async fn start(dir: &std::path::Path) -> server::Running {
    start_with(dir, |_| {}).await
}

/// An in-process broker on the blocking disk, real TCP on a free port, no metrics endpoint.
pub async fn start_with(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> server::Running {
    let env = Env {
        disk: Arc::new(BlockingDisk::new(2)),
        net: Arc::new(TcpNet),
        clock: Arc::new(SystemClock),
        rng: EnvRng::seeded(1),
    };
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: String::new(),
        ..Config::default()
    };
    tweak(&mut config);
    server::start(env, config).await.unwrap()
}

/// Shut `running` down, wait for its store to close, and start a broker on `dir` again.
pub async fn restart(
    running: server::Running,
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut Config),
) -> server::Running {
    let closed = running.broker.store.closed();
    running.shutdown().await;
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the store closes after shutdown");
    start_with(dir, tweak).await
}

/// One request as a whole frame (length prefix, header, body), correlation id `id`.
pub fn request_frame(api: ApiKey, version: i16, id: i32, body: RequestKind) -> Bytes {
    let mut h = RequestHeader::default();
    h.request_api_key = api as i16;
    h.request_api_version = version;
    h.correlation_id = id;
    h.client_id = Some(StrBytes::from_static_str("wire-test"));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    h.encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// A Kafka client on the wire protocol, one request at a time.
pub struct Client {
    pub stream: TcpStream,
    next_id: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_id: 1,
        }
    }

    /// Send one request and return its decoded response (which must use every byte).
    pub async fn call(&mut self, api: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let id = self.send(api, version, body).await;
        self.receive(api, version, id).await
    }

    /// Send one request without waiting for its answer; its correlation id.
    pub async fn send(&mut self, api: ApiKey, version: i16, body: RequestKind) -> i32 {
        self.next_id += 1;
        let frame = request_frame(api, version, self.next_id, body);
        self.stream.write_all(&frame).await.unwrap();
        self.next_id
    }

    /// The answer to the request sent as `id` (answers come in the order of the requests).
    pub async fn receive(&mut self, api: ApiKey, version: i16, id: i32) -> ResponseKind {
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(&mut len))
            .await
            .unwrap_or_else(|_| panic!("{api:?} v{version}: no response"))
            .unwrap_or_else(|e| panic!("{api:?} v{version}: connection closed: {e}"));
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut frame).await.unwrap();
        let mut frame = Bytes::from(frame);
        let header =
            ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, id);
        let resp = ResponseKind::decode(api, &mut frame, version)
            .unwrap_or_else(|e| panic!("{api:?} v{version}: response does not decode: {e:#}"));
        assert!(
            !frame.has_remaining(),
            "{api:?} v{version}: {} trailing bytes",
            frame.remaining()
        );
        resp
    }

    /// Produce `records` (whole batches) to one partition with acks=all; the partition's error
    /// code and base offset.
    pub async fn produce(&mut self, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
        self.produce_within(topic, partition, records, 10_000).await
    }

    /// [`Client::produce`] with the request's `timeout_ms`.
    pub async fn produce_within(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        timeout_ms: i32,
    ) -> (i16, i64) {
        let mut p = produce_request::PartitionProduceData::default();
        p.index = partition;
        p.records = Some(records);
        let mut t = produce_request::TopicProduceData::default();
        t.name = TopicName(StrBytes::from_string(topic.to_string()));
        t.partition_data = vec![p];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = timeout_ms;
        req.topic_data = vec![t];
        match self
            .call(ApiKey::Produce, 9, RequestKind::Produce(req))
            .await
        {
            ResponseKind::Produce(r) => {
                let p = &r.responses[0].partition_responses[0];
                (p.error_code, p.base_offset)
            }
            other => panic!("not a produce response: {other:?}"),
        }
    }

    /// Fetch one partition from `offset` (no waiting): its records and high watermark.
    pub async fn fetch(&mut self, topic: &str, partition: i32, offset: i64) -> (Bytes, i64) {
        let mut p = fetch_request::FetchPartition::default();
        p.partition = partition;
        p.fetch_offset = offset;
        p.partition_max_bytes = 64 << 20;
        let mut t = fetch_request::FetchTopic::default();
        t.topic = TopicName(StrBytes::from_string(topic.to_string()));
        t.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.max_wait_ms = 0;
        req.max_bytes = 64 << 20;
        req.topics = vec![t];
        match self.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)).await {
            ResponseKind::Fetch(r) => {
                let p = &r.responses[0].partitions[0];
                assert_eq!(p.error_code, 0, "fetch error");
                (p.records.clone().unwrap_or_default(), p.high_watermark)
            }
            other => panic!("not a fetch response: {other:?}"),
        }
    }
}

/// Join `group` as its only member with JoinGroup `version` (from v4 first getting a member
/// id); the member id and generation.
pub async fn join(c: &mut Client, group: &str, version: i16) -> (StrBytes, i32) {
    let mut member = StrBytes::default();
    for _ in 0..2 {
        let mut req = JoinGroupRequest::default();
        req.group_id = GroupId(StrBytes::from_string(group.to_string()));
        req.session_timeout_ms = 10_000;
        req.rebalance_timeout_ms = 10_000;
        req.member_id = member.clone();
        req.protocol_type = StrBytes::from_static_str("consumer");
        let mut p = join_group_request::JoinGroupRequestProtocol::default();
        p.name = StrBytes::from_static_str("range");
        p.metadata = Bytes::from_static(b"subscription");
        req.protocols = vec![p];
        let ResponseKind::JoinGroup(r) = c
            .call(ApiKey::JoinGroup, version, RequestKind::JoinGroup(req))
            .await
        else {
            panic!()
        };
        if r.error_code == error::MEMBER_ID_REQUIRED {
            member = r.member_id;
            continue;
        }
        assert_eq!(r.error_code, 0, "JoinGroup v{version}");
        assert_eq!(r.leader, r.member_id, "the only member leads");
        assert_eq!(r.members.len(), 1);
        return (r.member_id, r.generation_id);
    }
    panic!("JoinGroup v{version} did not let the member in");
}

/// Log `c` in with SCRAM-SHA-512 (SaslHandshake v1, two SaslAuthenticate v2 rounds, the
/// server's signature checked), as librdkafka does, with the password already `salted` (the
/// key derivation is slow in a debug build: done once by the caller, not within the broker's
/// authentication deadline).
pub async fn scram_login(c: &mut Client, user: &str, salted: &[u8]) {
    use broker::security::scram::{self, Mechanism};
    let ResponseKind::SaslHandshake(r) = c
        .call(
            ApiKey::SaslHandshake,
            1,
            RequestKind::SaslHandshake(
                SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512")),
            ),
        )
        .await
    else {
        panic!("SaslHandshake: another response");
    };
    assert_eq!(r.error_code, 0, "SaslHandshake");
    let nonce = "corpusclientnonce";
    let first = format!("n,,{}", scram::client_first_bare(user, nonce));
    let round = |token: String| {
        RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
        )
    };
    let ResponseKind::SaslAuthenticate(r) = c.call(ApiKey::SaslAuthenticate, 2, round(first)).await
    else {
        panic!("SaslAuthenticate: another response");
    };
    assert_eq!(r.error_code, 0, "SCRAM first: {:?}", r.error_message);
    let server_first = String::from_utf8(r.auth_bytes.to_vec()).unwrap();
    let (last, expected) = scram::client_final_salted(
        Mechanism::Sha512,
        user,
        |_, _| salted.to_vec(),
        nonce,
        &server_first,
    )
    .unwrap();
    let ResponseKind::SaslAuthenticate(r) = c.call(ApiKey::SaslAuthenticate, 2, round(last)).await
    else {
        panic!("SaslAuthenticate: another response");
    };
    assert_eq!(r.error_code, 0, "SCRAM final: {:?}", r.error_message);
    assert_eq!(r.auth_bytes, expected.as_bytes(), "the server's signature");
}
