//! A small Kafka client for the workloads: it speaks the real wire protocol (encoded with
//! `kafka-protocol`) to the unchanged broker, over the simulated network or, in a twin run,
//! over real TCP through the links' proxies ([`route_through`]).

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    create_topics_request, fetch_request, list_offsets_request, produce_request, ApiKey, BrokerId,
    CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, InitProducerIdRequest,
    ListOffsetsRequest, ProduceRequest, ProducerId, RequestHeader, RequestKind, ResponseHeader,
    ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod access;
mod configs;
pub mod group;
mod membership;
pub mod probes;
mod reassign;
pub mod routing;
pub mod sasl;
pub mod txn;

thread_local! {
    /// Where this thread's clients really dial each broker address (a twin run's proxies of
    /// this client node's links); empty in simulation, where a node's address is its identity.
    static ROUTE: std::cell::RefCell<std::collections::BTreeMap<SocketAddr, SocketAddr>> =
        Default::default();
}

/// From now on, this thread's clients dial `route[addr]` for a broker at `addr` (the address
/// Metadata and the scenario name it by, still the one TLS checks).
pub fn route_through(route: std::collections::BTreeMap<SocketAddr, SocketAddr>) {
    ROUTE.with(|r| *r.borrow_mut() = route);
}

fn routed(addr: SocketAddr) -> SocketAddr {
    ROUTE.with(|r| r.borrow().get(&addr).copied().unwrap_or(addr))
}

/// The Produce version the clients speak.
pub const PRODUCE_VERSION: i16 = 8;
const INIT_PRODUCER_ID_VERSION: i16 = 4;
pub(crate) const FETCH_VERSION: i16 = 11;
const CREATE_TOPICS_VERSION: i16 = 4;
const DELETE_TOPICS_VERSION: i16 = 4;
const LIST_OFFSETS_VERSION: i16 = 5;
const METADATA_VERSION: i16 = 9;

/// What Metadata says of a topic: the brokers (id → address) and each partition's leader and
/// leader epoch (leader -1: none now).
#[derive(Debug, Clone, Default)]
pub struct TopicMetadata {
    pub brokers: Vec<(i32, SocketAddr)>,
    pub partitions: Vec<(i32, i32, i32)>,
}

/// Kafka's TOPIC_ALREADY_EXISTS.
pub const TOPIC_ALREADY_EXISTS: i16 = 36;

/// One partition's answer to a fetch: its records `(offset, value)` from the requested offset
/// on, the high watermark, and where the next fetch starts (after the last batch returned,
/// control batches included, which hold no records a client sees); or the error code.
pub type FetchedPartition = Result<(Vec<(i64, Bytes)>, i64, Option<i64>), i16>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    /// The broker answered with a Kafka error code.
    #[error("broker error code {0}")]
    Kafka(i16),
    /// JoinGroup v4+: join again with this member id.
    #[error("member id required: {0}")]
    MemberIdRequired(String),
}

/// A connection's byte stream: TCP, or TLS over it.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// One connection to a broker.
pub struct Client {
    stream: Box<dyn Stream>,
    read_buf: BytesMut,
    next_id: i32,
    /// The `timeout_ms` of produce and admin requests (Kafka's `request.timeout.ms`).
    pub request_timeout_ms: i32,
    /// The client id its requests name (what client quotas see).
    pub client_id: &'static str,
}

/// The client id of every simulated client but those that say otherwise.
pub const CLIENT_ID: &str = "sim-client";

/// The records of a fetched partition's batches that `keep` keeps (it sees every record, in
/// order, control records too), and where the next fetch starts: after the last batch, as
/// Kafka's clients do (a batch the cleaner emptied holds no record but still spans its
/// offsets).
pub(crate) fn records_of(
    data: Option<Bytes>,
    mut keep: impl FnMut(&Record) -> bool,
) -> Result<(Vec<Record>, Option<i64>), ClientError> {
    let mut data = data.unwrap_or_default();
    let mut kept = Vec::new();
    let mut next = None;
    while data.has_remaining() {
        let after = broker::batch::parse_header(&data).map(|h| h.next_offset());
        let set = RecordBatchDecoder::decode(&mut data)
            .map_err(|e| ClientError::Protocol(format!("decode records: {e:#}")))?;
        if let Some(last) = set.records.last() {
            next = Some(last.offset + 1);
        }
        if let Ok(after) = after {
            next = Some(next.map_or(after, |n: i64| n.max(after)));
        }
        kept.extend(set.records.into_iter().filter(|r| keep(r)));
    }
    Ok((kept, next))
}

/// A Produce request (without its acks and timeout) of `records` as one uncompressed batch.
pub(crate) fn produce_of(
    topic: &str,
    partition: i32,
    records: &[Record],
) -> Result<ProduceRequest, ClientError> {
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| ClientError::Protocol(format!("encode batch: {e:#}")))?;
    let mut p = produce_request::PartitionProduceData::default();
    p.index = partition;
    p.records = Some(batch.freeze());
    let mut t = produce_request::TopicProduceData::default();
    t.name = topic_name(topic);
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.topic_data = vec![t];
    Ok(req)
}

/// A consumer's Fetch of `topic`'s partitions, each from its own offset (1 MiB at most each and
/// in all), at `read_uncommitted`.
pub(crate) fn fetch_request(
    topic: &str,
    positions: &[(i32, i64)],
    max_wait_ms: i32,
) -> FetchRequest {
    let mut t = fetch_request::FetchTopic::default();
    t.topic = topic_name(topic);
    t.partitions = positions
        .iter()
        .map(|&(partition, offset)| {
            let mut p = fetch_request::FetchPartition::default();
            p.partition = partition;
            p.fetch_offset = offset;
            p.partition_max_bytes = 1 << 20;
            p
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = 1;
    req.max_bytes = 1 << 20;
    req.topics = vec![t];
    req
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

impl Client {
    /// Connect, and log in when the run's scenario asks for SASL ([`sasl`]).
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        Client::connect_as(addr, sasl::current().as_ref()).await
    }

    /// Connect, and log in as `login` if there is one.
    pub async fn connect_as(
        addr: SocketAddr,
        login: Option<&sasl::Login>,
    ) -> Result<Client, ClientError> {
        let tcp = TcpStream::connect(routed(addr)).await?;
        let stream: Box<dyn Stream> = match sasl::tls() {
            None => Box::new(tcp),
            Some(config) => {
                let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
                Box::new(
                    tokio_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await?,
                )
            }
        };
        let mut client = Client {
            stream,
            read_buf: BytesMut::new(),
            next_id: 1,
            request_timeout_ms: 30_000,
            client_id: CLIENT_ID,
        };
        if let Some(login) = login {
            client.log_in(login).await?;
        }
        Ok(client)
    }

    /// Send one request and wait for its response.
    pub async fn call(
        &mut self,
        api: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind, ClientError> {
        let correlation_id = self.send(api, version, body).await?;
        self.receive(api, version, correlation_id).await
    }

    /// Write one request; its correlation id.
    async fn send(
        &mut self,
        api: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<i32, ClientError> {
        let correlation_id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(StrBytes::from_static_str(self.client_id));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let encoded = header
            .encode(&mut buf, api.request_header_version(version))
            .and_then(|_| body.encode(&mut buf, version));
        encoded.map_err(|e| ClientError::Protocol(format!("encode {api:?}: {e:#}")))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await?;
        self.stream.flush().await?;
        Ok(correlation_id)
    }

    async fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        loop {
            if self.read_buf.len() >= 4 {
                let len = (&self.read_buf[..4]).get_i32();
                if !(0..=64 << 20).contains(&len) {
                    return Err(ClientError::Protocol(format!(
                        "response frame of {len} bytes"
                    )));
                }
                let len = len as usize;
                if self.read_buf.len() >= 4 + len {
                    let mut frame = self.read_buf.split_to(4 + len);
                    frame.advance(4);
                    return Ok(frame.freeze());
                }
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Produce `values` as one uncompressed batch; the base offset on success (-1 with acks=0,
    /// where the broker does not answer).
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        timestamp: i64,
        values: &[Bytes],
    ) -> Result<i64, ClientError> {
        let req = self.produce_request(topic, partition, acks, timestamp, values, None)?;
        if acks == 0 {
            if self.closed_by_peer() {
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the broker closed the connection",
                )));
            }
            self.send(ApiKey::Produce, PRODUCE_VERSION, RequestKind::Produce(req))
                .await?;
            return Ok(-1);
        }
        let resp = self
            .call(ApiKey::Produce, PRODUCE_VERSION, RequestKind::Produce(req))
            .await?;
        produce_answer(resp)
    }

    /// A Produce request of `values` as one uncompressed batch, from an idempotent producer
    /// `(producer id, epoch, base sequence)` when given.
    /// Whether the broker has closed this connection (or it broke), as a real client's reader
    /// notices at once — the only sign an acks=0 producer gets that its produce was refused.
    /// Whatever bytes are waiting stay for the next answer.
    pub fn closed_by_peer(&mut self) -> bool {
        use futures::FutureExt;
        let mut buf = [0u8; 1024];
        match self.stream.read(&mut buf).now_or_never() {
            None => false,
            Some(Ok(0)) | Some(Err(_)) => true,
            Some(Ok(n)) => {
                self.read_buf.extend_from_slice(&buf[..n]);
                false
            }
        }
    }

    pub fn produce_request(
        &self,
        topic: &str,
        partition: i32,
        acks: i16,
        timestamp: i64,
        values: &[Bytes],
        idempotence: Option<(i64, i16, i32)>,
    ) -> Result<ProduceRequest, ClientError> {
        let mut req = Client::produce_body(topic, partition, timestamp, values, idempotence)?;
        req.acks = acks;
        req.timeout_ms = self.request_timeout_ms;
        Ok(req)
    }

    /// A Produce request of `values` without its acks and timeout (acks=-1 unless set).
    pub fn produce_body(
        topic: &str,
        partition: i32,
        timestamp: i64,
        values: &[Bytes],
        idempotence: Option<(i64, i16, i32)>,
    ) -> Result<ProduceRequest, ClientError> {
        let (producer_id, producer_epoch, base_sequence) = idempotence.unwrap_or((-1, -1, -1));
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let name = crate::history::value_name(v);
                let keyed = crate::workload::keyed::parse(&name);
                let mut headers = kafka_protocol::indexmap::IndexMap::new();
                if keyed.is_some_and(|(_, tombstone)| tombstone) {
                    headers.insert(
                        StrBytes::from_static_str(crate::workload::keyed::NAME_HEADER),
                        Some(v.clone()),
                    );
                }
                Record {
                    transactional: false,
                    control: false,
                    partition_leader_epoch: 0,
                    producer_id,
                    producer_epoch,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    // The encoder takes the batch's base sequence from the first record's (the
                    // record's own minus its offset for a non-idempotent batch: -1).
                    sequence: if idempotence.is_some() {
                        base_sequence + i as i32
                    } else {
                        i as i32 - 1
                    },
                    timestamp,
                    key: keyed.map(|(key, _)| Bytes::from(key.to_string())),
                    value: match keyed {
                        Some((_, true)) => None,
                        _ => Some(v.clone()),
                    },
                    headers,
                    delete_horizon: false,
                }
            })
            .collect();
        produce_of(topic, partition, &records)
    }

    /// Write a request without waiting for its answer (answers come in request order: read
    /// them with [`Client::receive`]); its correlation id.
    pub async fn send_request(
        &mut self,
        api: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Result<i32, ClientError> {
        self.send(api, version, body).await
    }

    /// Read the answer to request `correlation_id` (the oldest not yet read).
    pub async fn receive(
        &mut self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<ResponseKind, ClientError> {
        let mut frame = self.read_frame().await?;
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .map_err(|e| ClientError::Protocol(format!("response header: {e:#}")))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Protocol(format!(
                "correlation id {} for request {correlation_id}",
                header.correlation_id
            )));
        }
        ResponseKind::decode(api, &mut frame, version)
            .map_err(|e| ClientError::Protocol(format!("decode {api:?} response: {e:#}")))
    }

    /// A producer id and epoch for an idempotent producer (InitProducerId).
    pub async fn init_producer_id(&mut self) -> Result<(i64, i16), ClientError> {
        self.init_producer(None, 60_000).await
    }

    /// InitProducerId, with a transactional id when given: the producer id and its epoch.
    pub async fn init_producer(
        &mut self,
        transactional_id: Option<&str>,
        timeout_ms: i32,
    ) -> Result<(i64, i16), ClientError> {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = transactional_id
            .map(|id| kafka_protocol::messages::TransactionalId(StrBytes::from_string(id.into())));
        req.transaction_timeout_ms = timeout_ms;
        req.producer_id = ProducerId(-1);
        req.producer_epoch = -1;
        match self
            .call(
                ApiKey::InitProducerId,
                INIT_PRODUCER_ID_VERSION,
                RequestKind::InitProducerId(req),
            )
            .await?
        {
            ResponseKind::InitProducerId(r) if r.error_code == 0 => {
                Ok((r.producer_id.0, r.producer_epoch))
            }
            ResponseKind::InitProducerId(r) => Err(ClientError::Kafka(r.error_code)),
            other => Err(ClientError::Protocol(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// Fetch from `offset`: the records `(offset, value)` and the high watermark.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<(Vec<(i64, Bytes)>, i64, Option<i64>), ClientError> {
        let mut answers = self
            .fetch_many(topic, &[(partition, offset)], max_wait_ms)
            .await?;
        match answers.pop() {
            Some((_, Ok(r))) => Ok(r),
            Some((_, Err(code))) => Err(ClientError::Kafka(code)),
            None => Err(ClientError::Protocol("empty fetch response".into())),
        }
    }

    /// Fetch several partitions of a topic in one request, each from its own offset.
    pub async fn fetch_many(
        &mut self,
        topic: &str,
        positions: &[(i32, i64)],
        max_wait_ms: i32,
    ) -> Result<Vec<(i32, FetchedPartition)>, ClientError> {
        let req = fetch_request(topic, positions, max_wait_ms);
        let resp = match self
            .call(ApiKey::Fetch, FETCH_VERSION, RequestKind::Fetch(req))
            .await?
        {
            ResponseKind::Fetch(r) => r,
            other => {
                return Err(ClientError::Protocol(format!(
                    "unexpected response {other:?}"
                )))
            }
        };
        let mut out = Vec::new();
        for pd in resp.responses.iter().flat_map(|t| t.partitions.iter()) {
            if pd.error_code != 0 {
                out.push((pd.partition_index, Err(pd.error_code)));
                continue;
            }
            let from = positions
                .iter()
                .find(|(p, _)| *p == pd.partition_index)
                .map(|(_, o)| *o)
                .unwrap_or(0);
            // A fetch returns whole batches: skip records before the requested offset, and
            // control records (a cluster's leader changes), as every client does.
            let (kept, next) = records_of(pd.records.clone(), |r| r.offset >= from && !r.control)?;
            let records = kept
                .into_iter()
                .map(|r| (r.offset, read_value(r)))
                .collect();
            out.push((pd.partition_index, Ok((records, pd.high_watermark, next))));
        }
        Ok(out)
    }

    /// Create a topic (CreateTopics); a Kafka error code if the broker refuses, e.g.
    /// [`TOPIC_ALREADY_EXISTS`].
    pub async fn create_topic(&mut self, name: &str, partitions: i32) -> Result<(), ClientError> {
        self.create_topic_with(name, partitions, &[]).await
    }

    /// Create a topic with these configuration overrides.
    pub async fn create_topic_with(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
    ) -> Result<(), ClientError> {
        let mut t = create_topics_request::CreatableTopic::default();
        t.name = topic_name(name);
        t.num_partitions = partitions;
        t.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = create_topics_request::CreatableTopicConfig::default();
                c.name = StrBytes::from_string(k.clone());
                c.value = Some(StrBytes::from_string(v.clone()));
                c
            })
            .collect();
        // The broker's default: one replica on a single node, three in a cluster.
        t.replication_factor = -1;
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = self.request_timeout_ms;
        match self
            .call(
                ApiKey::CreateTopics,
                CREATE_TOPICS_VERSION,
                RequestKind::CreateTopics(req),
            )
            .await?
        {
            ResponseKind::CreateTopics(r) => match r.topics.first() {
                Some(t) if t.error_code == 0 => Ok(()),
                Some(t) => Err(ClientError::Kafka(t.error_code)),
                None => Err(ClientError::Protocol("empty CreateTopics response".into())),
            },
            other => Err(ClientError::Protocol(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// A partition's log start offset (ListOffsets for the earliest offset).
    pub async fn log_start(&mut self, topic: &str, partition: i32) -> Result<i64, ClientError> {
        self.list_offset(topic, partition, -2).await
    }

    /// A partition's end (ListOffsets for the latest offset: the high watermark).
    pub async fn log_end(&mut self, topic: &str, partition: i32) -> Result<i64, ClientError> {
        self.list_offset(topic, partition, -1).await
    }

    async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let mut p = list_offsets_request::ListOffsetsPartition::default();
        p.partition_index = partition;
        p.timestamp = timestamp;
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = topic_name(topic);
        t.partitions = vec![p];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics = vec![t];
        match self
            .call(
                ApiKey::ListOffsets,
                LIST_OFFSETS_VERSION,
                RequestKind::ListOffsets(req),
            )
            .await?
        {
            ResponseKind::ListOffsets(r) => {
                match r.topics.first().and_then(|t| t.partitions.first()) {
                    Some(p) if p.error_code == 0 => Ok(p.offset),
                    Some(p) => Err(ClientError::Kafka(p.error_code)),
                    None => Err(ClientError::Protocol("empty ListOffsets response".into())),
                }
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// The brokers and `topic`'s partitions' leaders (Metadata, no auto-creation).
    pub async fn metadata(&mut self, topic: &str) -> Result<TopicMetadata, ClientError> {
        use kafka_protocol::messages::{metadata_request::MetadataRequestTopic, MetadataRequest};
        let mut t = MetadataRequestTopic::default();
        t.name = Some(topic_name(topic));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![t]);
        req.allow_auto_topic_creation = false;
        match self
            .call(
                ApiKey::Metadata,
                METADATA_VERSION,
                RequestKind::Metadata(req),
            )
            .await?
        {
            ResponseKind::Metadata(r) => {
                let brokers = r
                    .brokers
                    .iter()
                    .filter_map(|b| {
                        let ip: std::net::IpAddr = b.host.parse().ok()?;
                        Some((b.node_id.0, SocketAddr::new(ip, b.port as u16)))
                    })
                    .collect();
                let partitions = r
                    .topics
                    .iter()
                    .filter(|t| t.error_code == 0)
                    .flat_map(|t| t.partitions.iter())
                    .map(|p| (p.partition_index, p.leader_id.0, p.leader_epoch))
                    .collect();
                Ok(TopicMetadata {
                    brokers,
                    partitions,
                })
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected response {other:?}"
            ))),
        }
    }

    /// Delete a topic (DeleteTopics).
    pub async fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        let mut req = DeleteTopicsRequest::default();
        req.topic_names = vec![topic_name(name)];
        req.timeout_ms = self.request_timeout_ms;
        match self
            .call(
                ApiKey::DeleteTopics,
                DELETE_TOPICS_VERSION,
                RequestKind::DeleteTopics(req),
            )
            .await?
        {
            ResponseKind::DeleteTopics(r) => match r.responses.first() {
                Some(t) if t.error_code == 0 => Ok(()),
                Some(t) => Err(ClientError::Kafka(t.error_code)),
                None => Err(ClientError::Protocol("empty DeleteTopics response".into())),
            },
            other => Err(ClientError::Protocol(format!(
                "unexpected response {other:?}"
            ))),
        }
    }
}

/// A Produce answer of one partition: its base offset, or its error code.
/// What a read record stands for: its value; a tombstone's name (its `name` header); and a
/// keyed record whose key is not its name's, named so that no send matches it.
fn read_value(r: Record) -> Bytes {
    let value = r.value.unwrap_or_else(|| {
        r.headers
            .iter()
            .find(|(k, _)| k.as_str() == crate::workload::keyed::NAME_HEADER)
            .and_then(|(_, v)| v.clone())
            .unwrap_or_default()
    });
    let name = crate::history::value_name(&value);
    match crate::workload::keyed::parse(&name) {
        Some((key, _)) if r.key.as_deref() != Some(key.as_bytes()) => {
            Bytes::from(format!("{name} read with key {:?}", r.key))
        }
        _ => value,
    }
}

/// A batch of one record, `value` at `offset`, as a producer without idempotence encodes it.
pub fn one_record_batch(offset: i64, timestamp: i64, value: Bytes) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key: None,
        value: Some(value),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut batch = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut batch, [&record], &options).expect("a record encodes");
    batch.freeze()
}

pub fn produce_answer(resp: ResponseKind) -> Result<i64, ClientError> {
    match resp {
        ResponseKind::Produce(r) => {
            let p = r
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .ok_or_else(|| ClientError::Protocol("empty produce response".into()))?;
            if p.error_code != 0 {
                return Err(ClientError::Kafka(p.error_code));
            }
            Ok(p.base_offset)
        }
        other => Err(ClientError::Protocol(format!(
            "unexpected response {other:?}"
        ))),
    }
}
