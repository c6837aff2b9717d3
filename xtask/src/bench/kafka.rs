//! A minimal Kafka client for the benchmarks: frame IO, version negotiation, request encoding and
//! response decoding with `kafka-protocol`, topic set-up (CreateTopics, Metadata, ListOffsets);
//! record batches are [`super::batches`]'s.
//!
//! It speaks to one broker over one connection with one request in flight, which is all a
//! benchmark needs and keeps the client's own CPU cost (it shares the machine with the broker)
//! small and predictable.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest,
    ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use super::batches::{
    encode_idempotent_batch, encode_record_batch, set_base_sequence, walk_batches,
};

/// The protocol versions the benchmarks speak, (lowest, highest); the newest the broker also
/// supports is used. All are non-flexible encodings (Produce v8, Fetch v11 against a current
/// broker).
pub const PRODUCE_VERSIONS: (i16, i16) = (3, 8);
pub const FETCH_VERSIONS: (i16, i16) = (4, 11);
pub const INIT_PRODUCER_ID_VERSIONS: (i16, i16) = (0, 1);
pub const METADATA_VERSIONS: (i16, i16) = (1, 8);
pub const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 4);
pub const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 5);

const CLIENT_ID: &str = "stillwater-xtask-bench";

/// Byte offset of the correlation id in an encoded request frame: after the 4-byte length prefix,
/// the 2-byte API key and the 2-byte API version. The same in every request header version.
const CORRELATION_ID_AT: usize = 8;

/// A connection's byte stream: TCP, or TLS over it.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// One connection to a broker: PLAINTEXT, or SASL_SSL when the benchmark's clients use it
/// ([`crate::secure::use_for_clients`]: TLS, then a SCRAM login before anything else).
pub struct Connection {
    stream: Box<dyn Stream>,
    addr: String,
    next_correlation_id: i32,
    /// Deadline for each response; a broker that stops answering fails the benchmark loudly.
    response_timeout: Duration,
    /// Bound on an incoming frame, so a corrupt length prefix cannot make us allocate gigabytes.
    frame_bytes_max: usize,
    /// Bytes read but not yet returned: a response usually arrives in one read, so one syscall.
    read_buf: BytesMut,
}

impl Connection {
    pub async fn connect(addr: &str, response_timeout: Duration) -> Result<Self> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr}: no answer within 10 s"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream
            .set_nodelay(true)
            .with_context(|| format!("setting TCP_NODELAY on the connection to {addr}"))?;
        let security = crate::secure::for_clients();
        let stream: Box<dyn Stream> = match &security {
            None => Box::new(stream),
            Some(s) => {
                let name = rustls_pki_types::ServerName::try_from("localhost")
                    .map_err(|e| anyhow!("{e}"))?;
                let tls = tokio::time::timeout(
                    response_timeout,
                    tokio_rustls::TlsConnector::from(s.tls.clone()).connect(name, stream),
                )
                .await
                .map_err(|_| anyhow!("TLS with {addr}: no handshake within {response_timeout:?}"))?
                .with_context(|| format!("TLS with {addr}"))?;
                Box::new(tls)
            }
        };
        let mut connection = Self {
            stream,
            addr: addr.to_string(),
            next_correlation_id: 1,
            response_timeout,
            frame_bytes_max: 64 << 20,
            read_buf: BytesMut::with_capacity(64 * 1024),
        };
        if let Some(s) = security {
            connection
                .log_in(&s.user, &s.password)
                .await
                .with_context(|| format!("logging in to {addr} as {}", s.user))?;
        }
        Ok(connection)
    }

    /// SaslHandshake v1, then SCRAM-SHA-512's two SaslAuthenticate rounds (the server's
    /// signature checked), as librdkafka logs in.
    pub async fn log_in(&mut self, user: &str, password: &str) -> Result<()> {
        use kafka_protocol::messages::SaslHandshakeRequest;
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(crate::secure::MECHANISM.name()));
        let r = self.call(1, &handshake).await?;
        ensure!(
            r.error_code == 0,
            "SaslHandshake: {}",
            error_name(r.error_code)
        );
        let (first, last) = crate::secure::scram_messages(user, password)?;
        let server_first = self.sasl_round(first).await?;
        let server_first = std::str::from_utf8(&server_first)
            .map_err(|_| anyhow!("SCRAM: the server's first message is not UTF-8"))?;
        let (final_message, expected) = last(server_first)?;
        let server_final = self.sasl_round(final_message).await?;
        ensure!(
            server_final == expected.as_bytes(),
            "SCRAM: the server's signature is not the expected one"
        );
        Ok(())
    }

    /// One SaslAuthenticate round: the server's bytes.
    async fn sasl_round(&mut self, token: String) -> Result<Bytes> {
        use kafka_protocol::messages::SaslAuthenticateRequest;
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let r = self.call(2, &req).await?;
        ensure!(
            r.error_code == 0,
            "SaslAuthenticate: {} {:?}",
            error_name(r.error_code),
            r.error_message
        );
        Ok(r.auth_bytes)
    }

    pub fn set_frame_bytes_max(&mut self, frame_bytes_max: usize) {
        self.frame_bytes_max = frame_bytes_max;
    }

    pub fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        id
    }

    /// Sends one request and waits for its response.
    pub async fn call<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response> {
        let correlation_id = self.take_correlation_id();
        let frame = encode_request(request, version, correlation_id)?;
        self.write_frame(&frame).await?;
        let response = self.read_frame().await?;
        decode_response::<R>(response, version, correlation_id)
            .with_context(|| format!("decoding the {:?} v{version} response", api_name::<R>()))
    }

    pub async fn write_frame(&mut self, frame: &[u8]) -> Result<()> {
        self.stream
            .write_all(frame)
            .await
            .with_context(|| format!("sending a request to {}", self.addr))?;
        // Over TLS the records may wait in the session until flushed (a no-op on TCP).
        self.stream
            .flush()
            .await
            .with_context(|| format!("sending a request to {}", self.addr))
    }

    /// Reads one length-prefixed response frame (without its length prefix).
    pub async fn read_frame(&mut self) -> Result<Bytes> {
        let deadline = self.response_timeout;
        let addr = self.addr.clone();
        tokio::time::timeout(deadline, self.read_frame_unbounded())
            .await
            .map_err(|_| {
                anyhow!(
                    "no response from {addr} within {} s",
                    deadline.as_secs_f64()
                )
            })?
    }

    async fn read_frame_unbounded(&mut self) -> Result<Bytes> {
        loop {
            if self.read_buf.len() >= 4 {
                let length = i32::from_be_bytes([
                    self.read_buf[0],
                    self.read_buf[1],
                    self.read_buf[2],
                    self.read_buf[3],
                ]);
                let length = usize::try_from(length)
                    .ok()
                    .filter(|&length| length >= 4 && length <= self.frame_bytes_max)
                    .ok_or_else(|| {
                        anyhow!(
                            "{} sent a response frame of {length} bytes (expected 4..={})",
                            self.addr,
                            self.frame_bytes_max
                        )
                    })?;
                if self.read_buf.len() >= 4 + length {
                    let mut frame = self.read_buf.split_to(4 + length);
                    let _ = frame.split_to(4);
                    return Ok(frame.freeze());
                }
                self.read_buf.reserve(4 + length - self.read_buf.len());
            }
            let read = self
                .stream
                .read_buf(&mut self.read_buf)
                .await
                .with_context(|| format!("reading a response from {}", self.addr))?;
            if read == 0 {
                bail!("{} closed the connection mid-response", self.addr);
            }
        }
    }
}

/// Encodes a request as a complete frame: length prefix, header, body.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
) -> Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header
        .encode(&mut frame, R::header_version(version))
        .context("encoding a request header")?;
    request
        .encode(&mut frame, version)
        .with_context(|| format!("encoding a {:?} v{version} request", api_name::<R>()))?;
    let length = i32::try_from(frame.len() - 4).context("request frame larger than 2 GiB")?;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

/// Overwrites the correlation id of an already encoded request frame, so a pre-built frame can be
/// sent again without re-encoding it.
pub fn set_correlation_id(frame: &mut [u8], correlation_id: i32) {
    frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4].copy_from_slice(&correlation_id.to_be_bytes());
}

pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response> {
    let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
        .context("decoding the response header")?;
    ensure!(
        header.correlation_id == correlation_id,
        "response correlation id {} does not match request {}",
        header.correlation_id,
        correlation_id
    );
    let response = R::Response::decode(&mut frame, version)?;
    Ok(response)
}

fn api_name<R: Request>() -> String {
    ApiKey::try_from(R::KEY)
        .map(|key| format!("{key:?}"))
        .unwrap_or_else(|_| format!("api key {}", R::KEY))
}

/// A Kafka error code as `Name (code)`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "none (0)".to_string(),
        Some(ResponseError::Unknown(code)) => format!("unknown error ({code})"),
        Some(error) => format!("{error} ({code})"),
    }
}

pub const TOPIC_ALREADY_EXISTS: i16 = 36;

/// The API versions one broker supports, from ApiVersions.
#[derive(Clone)]
pub struct ApiVersions {
    ranges: HashMap<i16, (i16, i16)>,
}

impl ApiVersions {
    /// Asks the broker; v0 of the request is the one every broker answers.
    pub async fn fetch(connection: &mut Connection) -> Result<Self> {
        let response = connection
            .call(0, &ApiVersionsRequest::default())
            .await
            .context("ApiVersions")?;
        if response.error_code != 0 {
            bail!("ApiVersions failed: {}", error_name(response.error_code));
        }
        let ranges = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, (api.min_version, api.max_version)))
            .collect();
        Ok(Self { ranges })
    }

    pub fn supports(&self, api: ApiKey) -> bool {
        self.ranges.contains_key(&(api as i16))
    }

    /// The highest version both we (`lowest..=highest`) and the broker support.
    pub fn pick(&self, api: ApiKey, lowest: i16, highest: i16) -> Result<i16> {
        let (broker_min, broker_max) = *self
            .ranges
            .get(&(api as i16))
            .ok_or_else(|| anyhow!("the broker does not support {api:?} (not in ApiVersions)"))?;
        let version = highest.min(broker_max);
        if version < lowest.max(broker_min) {
            bail!(
                "no common {api:?} version: the broker supports v{broker_min}..=v{broker_max}, \
                 the benchmark v{lowest}..=v{highest}"
            );
        }
        Ok(version)
    }
}

/// Makes sure `topic` exists with a leader for every partition and returns its partition count.
/// A producer id for an idempotent producer (epoch 0).
pub async fn init_producer_id(connection: &mut Connection, version: i16) -> Result<i64> {
    use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
    // No transactional id (the default is an empty one, which is refused as Kafka does).
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = connection.call(version, &request).await?;
    ensure!(
        response.error_code == 0,
        "InitProducerId failed: {}",
        error_name(response.error_code)
    );
    Ok(response.producer_id.0)
}

/// Creates it with CreateTopics when the broker has that API (an existing topic is fine), else
/// relies on auto-creation through Metadata.
pub async fn prepare_topic(
    connection: &mut Connection,
    versions: &ApiVersions,
    topic: &str,
    partitions: i32,
    replication_factor: Option<i16>,
) -> Result<i32> {
    let topic_name = || TopicName(StrBytes::from_string(topic.to_string()));
    if versions.supports(ApiKey::CreateTopics) {
        let version = versions.pick(
            ApiKey::CreateTopics,
            CREATE_TOPICS_VERSIONS.0,
            CREATE_TOPICS_VERSIONS.1,
        )?;
        // -1 (the broker's default) exists from v4 on.
        let replication_factor = replication_factor.unwrap_or(if version >= 4 { -1 } else { 1 });
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name())
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)]);
        let response = connection
            .call(version, &request)
            .await
            .context("CreateTopics")?;
        for result in &response.topics {
            if result.error_code != 0 && result.error_code != TOPIC_ALREADY_EXISTS {
                bail!(
                    "creating topic {topic}: {}{}",
                    error_name(result.error_code),
                    result
                        .error_message
                        .as_ref()
                        .map(|message| format!(": {}", message.as_str()))
                        .unwrap_or_default()
                );
            }
        }
    }

    let version = versions.pick(ApiKey::Metadata, METADATA_VERSIONS.0, METADATA_VERSIONS.1)?;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name()))
        ]))
        .with_allow_auto_topic_creation(true);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last_problem;
    loop {
        let response = connection
            .call(version, &request)
            .await
            .context("Metadata")?;
        let found = response.topics.iter().find(|candidate| {
            candidate
                .name
                .as_ref()
                .is_some_and(|name| name.0.as_str() == topic)
        });
        last_problem = match found {
            None => "not in the Metadata response".to_string(),
            Some(found) if found.error_code != 0 => error_name(found.error_code),
            Some(found) if found.partitions.is_empty() => "no partitions".to_string(),
            Some(found) => match found
                .partitions
                .iter()
                .find(|partition| partition.error_code != 0 || partition.leader_id.0 < 0)
            {
                Some(partition) => format!(
                    "partition {} has no leader ({})",
                    partition.partition_index,
                    error_name(partition.error_code)
                ),
                None => {
                    let count =
                        i32::try_from(found.partitions.len()).context("absurd partition count")?;
                    if count < partitions {
                        println!(
                            "xtask: topic {topic} already exists with {count} partitions \
                             (asked for {partitions}); using {count}"
                        );
                    }
                    return Ok(count);
                }
            },
        };
        if Instant::now() >= deadline {
            bail!("topic {topic} is not ready after 15 s: {last_problem}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where a topic's partitions are led, as Metadata says: per partition (in order) the leader's
/// broker id and `host:port` (`None` while it has no leader), and how many brokers the
/// cluster has.
pub struct Leaders {
    pub partitions: Vec<Option<(i32, String)>>,
    pub brokers: usize,
}

impl Leaders {
    /// Partition `p`'s leader's address, or `fallback` on a single broker (whose advertised
    /// address may not be the one the benchmark reached it by).
    pub fn addr_of(&self, p: i32, fallback: &str) -> Option<String> {
        if self.brokers <= 1 {
            return Some(fallback.to_string());
        }
        self.partitions
            .get(usize::try_from(p).ok()?)?
            .as_ref()
            .map(|(_, addr)| addr.clone())
    }
}

pub async fn leaders(connection: &mut Connection, version: i16, topic: &str) -> Result<Leaders> {
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
    let response = connection
        .call(version, &request)
        .await
        .context("Metadata")?;
    let hosts: HashMap<i32, String> = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let found = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| anyhow!("topic {topic} is not in the Metadata response"))?;
    let mut partitions: Vec<_> = found.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition_index);
    Ok(Leaders {
        partitions: partitions
            .iter()
            .map(|p| {
                let id = p.leader_id.0;
                (p.error_code == 0 && id >= 0)
                    .then(|| hosts.get(&id).map(|addr| (id, addr.clone())))
                    .flatten()
            })
            .collect(),
        brokers: hosts.len(),
    })
}

/// CreateTopics of one topic (`replication_factor` -1: the broker's default), the broker
/// waiting up to `timeout_ms`; an error code in the answer is an error.
pub async fn create_topic(
    connection: &mut Connection,
    version: i16,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    timeout_ms: i32,
) -> Result<()> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)]);
    let response = connection
        .call(version, &request)
        .await
        .context("CreateTopics")?;
    if let Some(bad) = response.topics.iter().find(|t| t.error_code != 0) {
        bail!("creating {name}: {}", error_name(bad.error_code));
    }
    Ok(())
}

/// AlterClientQuotas: `quotas` (key, value) for every client id (the default client-id
/// entity); a refused one is an error.
pub async fn set_default_client_quotas(
    connection: &mut Connection,
    versions: &ApiVersions,
    quotas: &[(String, f64)],
) -> Result<()> {
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use kafka_protocol::messages::AlterClientQuotasRequest;
    let version = versions.pick(ApiKey::AlterClientQuotas, 0, 1)?;
    let request = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
        .with_entity(vec![EntityData::default()
            .with_entity_type(StrBytes::from_static_str("client-id"))
            .with_entity_name(None)])
        .with_ops(
            quotas
                .iter()
                .map(|(k, v)| {
                    OpData::default()
                        .with_key(StrBytes::from_string(k.clone()))
                        .with_value(*v)
                })
                .collect(),
        )]);
    let response = connection
        .call(version, &request)
        .await
        .context("AlterClientQuotas")?;
    if let Some(bad) = response.entries.iter().find(|e| e.error_code != 0) {
        bail!(
            "setting client quotas: {} {}",
            error_name(bad.error_code),
            bad.error_message.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// DeleteTopics (v1..=4), waiting up to 30 s; errors are the caller's to ignore or not.
pub async fn delete_topics(
    connection: &mut Connection,
    versions: &ApiVersions,
    topics: &[String],
) -> Result<()> {
    use kafka_protocol::messages::DeleteTopicsRequest;
    let version = versions.pick(ApiKey::DeleteTopics, 1, 4)?;
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(
            topics
                .iter()
                .map(|t| TopicName(StrBytes::from_string(t.clone())))
                .collect(),
        );
    let response = connection
        .call(version, &request)
        .await
        .context("DeleteTopics")?;
    if let Some(bad) = response.responses.iter().find(|r| r.error_code != 0) {
        bail!("deleting topics: {}", error_name(bad.error_code));
    }
    Ok(())
}

/// One Produce of `batch` to `partition`: the base offset, or the partition's error code.
/// An error of the outer result means the connection is unusable.
pub async fn produce_one(
    connection: &mut Connection,
    version: i16,
    topic: &str,
    partition: i32,
    acks: i16,
    batch: Bytes,
) -> Result<std::result::Result<i64, i16>> {
    let answers = produce_each(connection, version, topic, &[partition], acks, batch).await?;
    Ok(answers[0].1)
}

/// One Produce request of `batch` to each of `partitions` of `topic` (as a client sends one
/// request per broker for every partition it leads): each partition's base offset or error,
/// in the order asked.
pub async fn produce_each(
    connection: &mut Connection,
    version: i16,
    topic: &str,
    partitions: &[i32],
    acks: i16,
    batch: Bytes,
) -> Result<Vec<(i32, std::result::Result<i64, i16>)>> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(
                partitions
                    .iter()
                    .map(|&p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(batch.clone()))
                    })
                    .collect(),
            )]);
    let response = connection.call(version, &request).await?;
    let answers: HashMap<i32, (i16, i64)> = response
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| (p.index, (p.error_code, p.base_offset)))
        .collect();
    partitions
        .iter()
        .map(|&p| match answers.get(&p) {
            Some(&(0, offset)) => Ok((p, Ok(offset))),
            Some(&(code, _)) => Ok((p, Err(code))),
            None => Err(anyhow!("the Produce response has no partition {p}")),
        })
        .collect()
}

/// ListOffsets for every partition: `timestamp` -1 gives the end offset, -2 the log start.
pub async fn list_offsets(
    connection: &mut Connection,
    versions: &ApiVersions,
    topic: &str,
    partitions: i32,
    timestamp: i64,
) -> Result<Vec<i64>> {
    let version = versions.pick(
        ApiKey::ListOffsets,
        LIST_OFFSETS_VERSIONS.0,
        LIST_OFFSETS_VERSIONS.1,
    )?;
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                (0..partitions)
                    .map(|partition| {
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response = connection
        .call(version, &request)
        .await
        .context("ListOffsets")?;
    let mut offsets = vec![None; partitions as usize];
    for partition in response
        .topics
        .iter()
        .filter(|candidate| candidate.name.0.as_str() == topic)
        .flat_map(|candidate| candidate.partitions.iter())
    {
        if partition.error_code != 0 {
            bail!(
                "ListOffsets for {topic}-{}: {}",
                partition.partition_index,
                error_name(partition.error_code)
            );
        }
        if let Some(slot) = usize::try_from(partition.partition_index)
            .ok()
            .and_then(|index| offsets.get_mut(index))
        {
            *slot = Some(partition.offset);
        }
    }
    offsets
        .into_iter()
        .enumerate()
        .map(|(index, offset)| {
            offset.ok_or_else(|| anyhow!("ListOffsets returned nothing for {topic}-{index}"))
        })
        .collect()
}

/// Builds a complete Produce request frame for one partition; the correlation id is patched in
/// with [`set_correlation_id`] before each send.
pub fn produce_frame(
    version: i16,
    topic: &str,
    partition: i32,
    acks: i16,
    timeout_ms: i32,
    batch: Bytes,
) -> Result<BytesMut> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TopicName;
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    encode_request(&request, version, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_id_patch_matches_the_header() -> Result<()> {
        let mut frame = produce_frame(8, "t", 0, 1, 1000, encode_record_batch(1, 1, 1)?)?;
        set_correlation_id(&mut frame, 0x0102_0304);
        let mut body = frame.freeze().slice(4..);
        let header = RequestHeader::decode(&mut body, ProduceRequest::header_version(8))?;
        assert_eq!(header.correlation_id, 0x0102_0304);
        assert_eq!(header.request_api_key, ApiKey::Produce as i16);
        let request = ProduceRequest::decode(&mut body, 8)?;
        assert_eq!(request.acks, 1);
        Ok(())
    }
}
