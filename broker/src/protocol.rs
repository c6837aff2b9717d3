//! Kafka framing and request decoding (with the `kafka-protocol` crate), version negotiation,
//! and response encoding.

mod versions;
pub use versions::{api_versions, api_versions_unsupported, software_ok};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

/// The APIs this broker serves and the versions it speaks. Every advertised version is one the
/// broker handles (failure mode 24: advertising a version and then refusing it).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::ListConfigResources, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::UpdateFeatures, 0, 2),
    (ApiKey::GetTelemetrySubscriptions, 0, 0),
    (ApiKey::PushTelemetry, 0, 0),
];

/// The APIs of client telemetry (KIP-714): served always, listed in ApiVersions only when
/// client telemetry is enabled (as Kafka lists them only with a telemetry reporter).
pub const TELEMETRY_APIS: [ApiKey; 2] = [ApiKey::GetTelemetrySubscriptions, ApiKey::PushTelemetry];

pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// Kafka error codes used by the broker.
pub mod error {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const TRANSACTION_ABORTABLE: i16 = 120;
    pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    pub const BROKER_ID_NOT_REGISTERED: i16 = 102;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const SECURITY_DISABLED: i16 = 54;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const PRODUCER_FENCED: i16 = 90;
    pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const MISMATCHED_ENDPOINT_TYPE: i16 = 114;
    pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
    pub const INVALID_RECORD: i16 = 87;
    pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
    pub const THROTTLING_QUOTA_EXCEEDED: i16 = 89;
    pub const UNKNOWN_SUBSCRIPTION_ID: i16 = 117;
    pub const TELEMETRY_TOO_LARGE: i16 = 118;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    pub const RESOURCE_NOT_FOUND: i16 = 91;
    pub const DUPLICATE_RESOURCE: i16 = 92;
    pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
}

/// Why a frame could not be turned into a request. Each closes the connection with a log line.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    Short(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("{api:?} v{version} is not supported (supported: v{min}..=v{max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// A decoded request.
pub struct Request {
    pub api: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub body: RequestKind,
    /// The client's address (set by the connection).
    pub peer: Option<std::net::SocketAddr>,
    /// The name of the listener the client connected to (set by the connection): brokers
    /// are named to it by their addresses on that listener.
    pub listener: Option<std::sync::Arc<str>>,
    /// The client's software name and version, from its ApiVersions request (v3+) on this
    /// connection (set by the connection).
    pub software: Option<std::sync::Arc<(String, String)>>,
}

/// What to do with a frame whose header could be read.
pub enum Decoded {
    Request(Box<Request>),
    /// ApiVersions at a version we do not speak: answer in the v0 format with
    /// UNSUPPORTED_VERSION, as clients expect, and keep the connection.
    ApiVersionsUnsupported {
        correlation_id: i32,
    },
}

/// Decode one frame (without its length prefix).
pub fn decode(frame: Bytes) -> Result<Decoded, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::Short(frame.len()));
    }
    let key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let api = ApiKey::try_from(key).map_err(|_| DecodeError::UnknownApi(key))?;
    let Some((min, max)) = supported_range(api) else {
        return Err(DecodeError::UnknownApi(key));
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            return Ok(Decoded::ApiVersionsUnsupported { correlation_id });
        }
        return Err(DecodeError::UnsupportedVersion {
            api,
            version,
            min,
            max,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api,
        version,
        reason,
    };
    let mut buf = StrictVarints::new(frame);
    let header = RequestHeader::decode(&mut buf, api.request_header_version(version))
        .map_err(|e| malformed(format!("header: {e:#}")))?;
    let body = decode_body(api, &mut buf, version).map_err(|e| malformed(format!("{e:#}")))?;
    if buf.too_long {
        return Err(malformed(
            "an unsigned varint is longer than 32 bits".into(),
        ));
    }
    Ok(Decoded::Request(Box::new(Request {
        api,
        version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        body,
        peer: None,
        listener: None,
        software: None,
    })))
}

/// A request body of one of the [`SUPPORTED`] APIs.
fn decode_body(api: ApiKey, buf: &mut StrictVarints, version: i16) -> anyhow::Result<RequestKind> {
    use kafka_protocol::messages::*;
    Ok(match api {
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::decode(buf, version)?),
        ApiKey::Fetch => RequestKind::Fetch(FetchRequest::decode(buf, version)?),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::decode(buf, version)?),
        ApiKey::OffsetForLeaderEpoch => {
            RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::decode(buf, version)?)
        }
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::decode(buf, version)?),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::decode(buf, version)?,
        ),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::decode(buf, version)?),
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::decode(buf, version)?)
        }
        ApiKey::DeleteTopics => {
            RequestKind::DeleteTopics(DeleteTopicsRequest::decode(buf, version)?)
        }
        ApiKey::InitProducerId => {
            RequestKind::InitProducerId(InitProducerIdRequest::decode(buf, version)?)
        }
        ApiKey::FindCoordinator => {
            RequestKind::FindCoordinator(FindCoordinatorRequest::decode(buf, version)?)
        }
        ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::decode(buf, version)?),
        ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::decode(buf, version)?),
        ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::decode(buf, version)?),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::decode(buf, version)?),
        ApiKey::OffsetCommit => {
            RequestKind::OffsetCommit(OffsetCommitRequest::decode(buf, version)?)
        }
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::decode(buf, version)?),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::decode(buf, version)?),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::decode(buf, version)?,
        ),
        ApiKey::ConsumerGroupDescribe => {
            RequestKind::ConsumerGroupDescribe(ConsumerGroupDescribeRequest::decode(buf, version)?)
        }
        ApiKey::DescribeGroups => {
            RequestKind::DescribeGroups(DescribeGroupsRequest::decode(buf, version)?)
        }
        ApiKey::DeleteGroups => {
            RequestKind::DeleteGroups(DeleteGroupsRequest::decode(buf, version)?)
        }
        ApiKey::OffsetDelete => {
            RequestKind::OffsetDelete(OffsetDeleteRequest::decode(buf, version)?)
        }
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::decode(buf, version)?)
        }
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::decode(buf, version)?)
        }
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::decode(buf, version)?)
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::decode(buf, version)?)
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::decode(buf, version)?,
        ),
        ApiKey::DescribeCluster => {
            RequestKind::DescribeCluster(DescribeClusterRequest::decode(buf, version)?)
        }
        ApiKey::ListConfigResources => {
            RequestKind::ListConfigResources(ListConfigResourcesRequest::decode(buf, version)?)
        }
        ApiKey::GetTelemetrySubscriptions => RequestKind::GetTelemetrySubscriptions(
            GetTelemetrySubscriptionsRequest::decode(buf, version)?,
        ),
        ApiKey::PushTelemetry => {
            RequestKind::PushTelemetry(PushTelemetryRequest::decode(buf, version)?)
        }
        ApiKey::DescribeLogDirs => {
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::decode(buf, version)?)
        }
        ApiKey::DescribeAcls => {
            RequestKind::DescribeAcls(DescribeAclsRequest::decode(buf, version)?)
        }
        ApiKey::CreateAcls => RequestKind::CreateAcls(CreateAclsRequest::decode(buf, version)?),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(DeleteAclsRequest::decode(buf, version)?),
        ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::decode(buf, version)?,
        ),
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::decode(buf, version)?,
        ),
        ApiKey::UnregisterBroker => {
            RequestKind::UnregisterBroker(UnregisterBrokerRequest::decode(buf, version)?)
        }
        ApiKey::DescribeQuorum => {
            RequestKind::DescribeQuorum(DescribeQuorumRequest::decode(buf, version)?)
        }
        ApiKey::ElectLeaders => {
            RequestKind::ElectLeaders(ElectLeadersRequest::decode(buf, version)?)
        }
        ApiKey::DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::decode(buf, version)?)
        }
        ApiKey::AddPartitionsToTxn => {
            RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::decode(buf, version)?)
        }
        ApiKey::AddOffsetsToTxn => {
            RequestKind::AddOffsetsToTxn(AddOffsetsToTxnRequest::decode(buf, version)?)
        }
        ApiKey::EndTxn => RequestKind::EndTxn(EndTxnRequest::decode(buf, version)?),
        ApiKey::TxnOffsetCommit => {
            RequestKind::TxnOffsetCommit(TxnOffsetCommitRequest::decode(buf, version)?)
        }
        ApiKey::WriteTxnMarkers => {
            RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::decode(buf, version)?)
        }
        ApiKey::DescribeTransactions => {
            RequestKind::DescribeTransactions(DescribeTransactionsRequest::decode(buf, version)?)
        }
        ApiKey::ListTransactions => {
            RequestKind::ListTransactions(ListTransactionsRequest::decode(buf, version)?)
        }
        ApiKey::SaslHandshake => {
            RequestKind::SaslHandshake(SaslHandshakeRequest::decode(buf, version)?)
        }
        ApiKey::SaslAuthenticate => {
            RequestKind::SaslAuthenticate(SaslAuthenticateRequest::decode(buf, version)?)
        }
        ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsRequest::decode(buf, version)?,
        ),
        ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::decode(buf, version)?,
        ),
        ApiKey::DescribeClientQuotas => {
            RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::decode(buf, version)?)
        }
        ApiKey::AlterClientQuotas => {
            RequestKind::AlterClientQuotas(AlterClientQuotasRequest::decode(buf, version)?)
        }
        ApiKey::UpdateFeatures => {
            RequestKind::UpdateFeatures(UpdateFeaturesRequest::decode(buf, version)?)
        }
        other => anyhow::bail!("{other:?} has no decoder"),
    })
}

/// The frame as `kafka-protocol` reads it, watching its unsigned varints.
///
/// `kafka-protocol` 0.18 reads an unsigned varint (the lengths of flexible versions' compact
/// strings and arrays, tagged fields) as at most five bytes and drops the bits past 32, leaving
/// the rest of a longer one to be read as the next field: 2^35 reads as 0, and the request
/// parses as something the client did not send. Kafka refuses such a varint. The crate reads
/// varints one `try_get_u8` at a time (every other field goes through `advance`), so a run of
/// four continuation bytes followed by a fifth byte with bits past 32 (or a fifth continuation
/// byte) marks the frame `too_long`, and it is refused as malformed.
struct StrictVarints {
    inner: Bytes,
    /// Continuation bytes read one at a time in a row.
    run: u8,
    too_long: bool,
}

impl StrictVarints {
    fn new(inner: Bytes) -> Self {
        StrictVarints {
            inner,
            run: 0,
            too_long: false,
        }
    }

    fn saw(&mut self, b: u8) {
        if self.run >= 4 && b > 0x0f {
            self.too_long = true;
        }
        self.run = if b & 0x80 != 0 {
            self.run.saturating_add(1)
        } else {
            0
        };
    }
}

impl Buf for StrictVarints {
    fn remaining(&self) -> usize {
        self.inner.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.inner.chunk()
    }

    fn advance(&mut self, n: usize) {
        self.run = 0;
        self.inner.advance(n)
    }

    fn try_get_u8(&mut self) -> Result<u8, bytes::TryGetError> {
        let b = self.inner.try_get_u8()?;
        self.saw(b);
        Ok(b)
    }

    fn get_u8(&mut self) -> u8 {
        let b = self.inner.get_u8();
        self.saw(b);
        b
    }
}

impl kafka_protocol::protocol::buf::ByteBuf for StrictVarints {
    fn peek_bytes(&mut self, r: std::ops::Range<usize>) -> Bytes {
        self.inner.slice(r)
    }

    fn get_bytes(&mut self, size: usize) -> Bytes {
        self.run = 0;
        self.inner.split_to(size)
    }
}

/// Encode a response frame (length prefix, header, body).
pub fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut buf, api.response_header_version(version))?;
    body.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, ProduceRequest};
    use kafka_protocol::protocol::StrBytes;

    fn frame_of(api: ApiKey, version: i16, body: &RequestKind) -> Bytes {
        let mut buf = BytesMut::new();
        let mut h = RequestHeader::default();
        h.request_api_key = api as i16;
        h.request_api_version = version;
        h.correlation_id = 42;
        h.client_id = Some(StrBytes::from_static_str("t"));
        h.encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn every_supported_version_round_trips() {
        for &(api, lo, hi) in SUPPORTED {
            for v in lo..=hi {
                let body = sample(api);
                match decode(frame_of(api, v, &body)) {
                    Ok(Decoded::Request(r)) => {
                        assert_eq!((r.api, r.version, r.correlation_id), (api, v, 42));
                        assert_eq!(r.body, body, "{api:?} v{v}");
                    }
                    _ => panic!("{api:?} v{v} did not decode"),
                }
            }
        }
    }

    #[test]
    fn unsupported_versions_and_unknown_keys_are_refused() {
        let body = RequestKind::Metadata(MetadataRequest::default());
        let mut f = BytesMut::from(&frame_of(ApiKey::Metadata, 4, &body)[..]);
        f[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode(f.freeze()),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        let mut f = BytesMut::from(&frame_of(ApiKey::Metadata, 4, &body)[..]);
        f[0..2].copy_from_slice(&9999i16.to_be_bytes());
        assert!(matches!(
            decode(f.freeze()),
            Err(DecodeError::UnknownApi(9999))
        ));
        assert!(matches!(
            decode(Bytes::from_static(b"abc")),
            Err(DecodeError::Short(3))
        ));
    }

    #[test]
    fn api_versions_at_an_unknown_version_gets_the_v0_error_reply() {
        let mut f = BytesMut::new();
        f.put_i16(ApiKey::ApiVersions as i16);
        f.put_i16(77);
        f.put_i32(7);
        f.put_i16(-1);
        let Ok(Decoded::ApiVersionsUnsupported { correlation_id }) = decode(f.freeze()) else {
            panic!("expected the unsupported-version path");
        };
        let reply = api_versions_unsupported(correlation_id).unwrap();
        let mut b = &reply[4..];
        assert_eq!(b.get_i32(), 7);
        let resp = ApiVersionsResponse::decode(&mut b, 0).unwrap();
        assert_eq!(resp.error_code, error::UNSUPPORTED_VERSION);
        assert!(resp
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16));
    }

    proptest::proptest! {
        /// The fuzz target for request decoding: arbitrary bytes never panic.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = decode(Bytes::from(bytes));
        }

        /// Valid frames of every supported API and version, damaged at random, never panic.
        #[test]
        fn decoding_damaged_valid_frames_never_panics(
            which in 0usize..SUPPORTED.len(),
            version_pick in 0i16..20,
            flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..8),
            cut in 0usize..400,
        ) {
            let (api, lo, hi) = SUPPORTED[which];
            let v = lo + version_pick % (hi - lo + 1);
            let body = sample(api);
            let mut f = BytesMut::from(&frame_of(api, v, &body)[..]);
            for (at, x) in flips {
                let n = f.len();
                if n > 8 { f[8 + at % (n - 8)] ^= x; }
            }
            let n = f.len();
            let _ = decode(f.freeze().slice(..n.min(8 + cut)));
        }
    }

    fn sample(api: ApiKey) -> RequestKind {
        match api {
            ApiKey::Produce => RequestKind::Produce(ProduceRequest::default()),
            ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
            ApiKey::DescribeTopicPartitions => {
                RequestKind::DescribeTopicPartitions(Default::default())
            }
            ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
            ApiKey::Fetch => RequestKind::Fetch(Default::default()),
            ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
            ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(Default::default()),
            ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
            ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
            ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
            ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
            ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
            ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
            ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
            ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
            ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
            ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
            ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
            ApiKey::ConsumerGroupHeartbeat => {
                RequestKind::ConsumerGroupHeartbeat(Default::default())
            }
            ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(Default::default()),
            ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
            ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
            ApiKey::OffsetDelete => RequestKind::OffsetDelete(Default::default()),
            ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
            ApiKey::DeleteRecords => RequestKind::DeleteRecords(Default::default()),
            ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
            ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
            ApiKey::IncrementalAlterConfigs => {
                RequestKind::IncrementalAlterConfigs(Default::default())
            }
            ApiKey::DescribeCluster => RequestKind::DescribeCluster(Default::default()),
            ApiKey::ListConfigResources => RequestKind::ListConfigResources(Default::default()),
            ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(Default::default()),
            ApiKey::DescribeAcls => RequestKind::DescribeAcls(Default::default()),
            ApiKey::CreateAcls => RequestKind::CreateAcls(Default::default()),
            ApiKey::DeleteAcls => RequestKind::DeleteAcls(Default::default()),
            ApiKey::ElectLeaders => RequestKind::ElectLeaders(Default::default()),
            ApiKey::AlterPartitionReassignments => {
                RequestKind::AlterPartitionReassignments(Default::default())
            }
            ApiKey::ListPartitionReassignments => {
                RequestKind::ListPartitionReassignments(Default::default())
            }
            ApiKey::UnregisterBroker => RequestKind::UnregisterBroker(Default::default()),
            ApiKey::DescribeQuorum => RequestKind::DescribeQuorum(Default::default()),
            ApiKey::DescribeProducers => RequestKind::DescribeProducers(Default::default()),
            ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(Default::default()),
            ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(Default::default()),
            ApiKey::EndTxn => RequestKind::EndTxn(Default::default()),
            ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(Default::default()),
            ApiKey::WriteTxnMarkers => RequestKind::WriteTxnMarkers(Default::default()),
            ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(Default::default()),
            ApiKey::ListTransactions => RequestKind::ListTransactions(Default::default()),
            ApiKey::SaslHandshake => RequestKind::SaslHandshake(Default::default()),
            ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(Default::default()),
            ApiKey::DescribeUserScramCredentials => {
                RequestKind::DescribeUserScramCredentials(Default::default())
            }
            ApiKey::AlterUserScramCredentials => {
                RequestKind::AlterUserScramCredentials(Default::default())
            }
            ApiKey::DescribeClientQuotas => RequestKind::DescribeClientQuotas(Default::default()),
            ApiKey::AlterClientQuotas => RequestKind::AlterClientQuotas(Default::default()),
            ApiKey::UpdateFeatures => RequestKind::UpdateFeatures(Default::default()),
            ApiKey::GetTelemetrySubscriptions => {
                RequestKind::GetTelemetrySubscriptions(Default::default())
            }
            ApiKey::PushTelemetry => RequestKind::PushTelemetry(Default::default()),
            other => panic!("no sample for {other:?}"),
        }
    }

    #[test]
    fn an_unsigned_varint_past_32_bits_is_refused_not_truncated() {
        // Metadata v9 (flexible): the topics array's length is a compact (unsigned) varint.
        // 2^35 + 1 in six bytes would read as 1 (one topic) if truncated to 32 bits.
        let body = RequestKind::Metadata(MetadataRequest::default());
        let good = frame_of(ApiKey::Metadata, 9, &body);
        let header_len = {
            let mut b = good.clone();
            RequestHeader::decode(&mut b, ApiKey::Metadata.request_header_version(9)).unwrap();
            good.len() - b.len()
        };
        let mut f = BytesMut::from(&good[..header_len]);
        f.extend_from_slice(&[0x81, 0x80, 0x80, 0x80, 0x80, 0x01]); // topics: 2^35 + 1 → 2^35 topics
        f.extend_from_slice(&good[header_len + 1..]);
        match decode(f.freeze()) {
            Err(DecodeError::Malformed { reason, .. }) => {
                assert!(reason.contains("varint"), "{reason}")
            }
            Ok(_) => panic!("a 36-bit varint was read as something else"),
            Err(e) => panic!("refused for another reason: {e}"),
        }
        // The largest valid five-byte varint is not refused for its length (it may fail for
        // what it says: four billion topics do not fit the frame).
        let mut f = BytesMut::from(&good[..header_len]);
        f.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        f.extend_from_slice(&good[header_len + 1..]);
        if let Err(DecodeError::Malformed { reason, .. }) = decode(f.freeze()) {
            assert!(!reason.contains("varint is longer"), "{reason}");
        }
        // And a valid request still decodes.
        assert!(matches!(decode(good), Ok(Decoded::Request(_))));
    }

    #[test]
    fn truncated_bodies_are_malformed_not_panics() {
        let body = RequestKind::Metadata(MetadataRequest::default());
        let full = frame_of(ApiKey::Metadata, 9, &body);
        for cut in 8..full.len() {
            let _ = decode(full.slice(..cut));
        }
    }
}
