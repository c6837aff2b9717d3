//! The group side of the simulated client: Kafka's classic consumer-group protocol
//! (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch),
//! with subscriptions and assignments in Kafka's consumer protocol encoding, as a Java or
//! librdkafka consumer sends them; and KIP-848's ConsumerGroupHeartbeat, with commits at a
//! member epoch (OffsetCommit v9).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    consumer_group_heartbeat_request, consumer_protocol_assignment, consumer_protocol_subscription,
    join_group_request, leave_group_request, offset_commit_request, offset_fetch_request,
    sync_group_request, ApiKey, ConsumerGroupHeartbeatRequest, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, RequestKind, ResponseKind, SyncGroupRequest,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{Client, ClientError};

const JOIN_VERSION: i16 = 9;
const SYNC_VERSION: i16 = 5;
const HEARTBEAT_VERSION: i16 = 4;
const LEAVE_VERSION: i16 = 5;
const COMMIT_VERSION: i16 = 8;
/// OffsetCommit from v9 carries a consumer-protocol member's epoch (KIP-848 requires it).
const COMMIT_VERSION_EPOCHS: i16 = 9;
/// ConsumerGroupHeartbeat v1: the member names itself (KIP-848's client-made member ids).
const CONSUMER_HEARTBEAT_VERSION: i16 = 1;
const FETCH_OFFSETS_VERSION: i16 = 8;
/// The consumer protocol's version in assignments.
const ASSIGNMENT_VERSION: i16 = 1;
/// The consumer protocol's version in subscriptions: v2 carries the partitions a member owns
/// and the generation it owned them in (what the cooperative protocol's leader needs).
const SUBSCRIPTION_VERSION: i16 = 2;

/// Kafka's MEMBER_ID_REQUIRED: join again with the id in the answer.
pub const MEMBER_ID_REQUIRED: i16 = 79;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The OffsetCommit version a member commits at: one that carries member epochs for a
/// consumer-protocol member.
pub fn commit_version(member_epochs: bool) -> i16 {
    if member_epochs {
        COMMIT_VERSION_EPOCHS
    } else {
        COMMIT_VERSION
    }
}

/// What a ConsumerGroupHeartbeat answered.
#[derive(Debug, Clone)]
pub struct Beat {
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when the answer carries one: partitions by topic id.
    pub assignment: Option<Vec<(uuid::Uuid, Vec<i32>)>>,
}

/// A member joining (member epoch 0): what it subscribes to and how.
pub struct Join<'a> {
    pub topics: &'a [String],
    pub assignor: &'a str,
    pub rebalance_timeout_ms: i32,
}

/// What JoinGroup answered.
#[derive(Debug, Clone)]
pub struct Joined {
    pub generation: i32,
    pub member_id: String,
    pub leader: String,
    /// For the leader: every member and its subscription.
    pub members: Vec<(String, Subscription)>,
}

/// A member's subscription, as the consumer protocol carries it in JoinGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub topics: Vec<String>,
    /// The partitions of `topics[0]`'s topic the member owns as it joins (v1+).
    pub owned: Vec<i32>,
    /// The generation it owned them in (v2+; -1: none).
    pub generation: i32,
}

/// A subscription to `topics`, owning `owned` partitions of the first one since `generation`,
/// in the consumer protocol.
pub fn subscription(topics: &[String], owned: &[i32], generation: i32) -> Bytes {
    let mut sub = ConsumerProtocolSubscription::default();
    sub.topics = topics.iter().map(|t| s(t)).collect();
    if let (Some(topic), false) = (topics.first(), owned.is_empty()) {
        let mut tp = consumer_protocol_subscription::TopicPartition::default();
        tp.topic = TopicName(s(topic));
        tp.partitions = owned.to_vec();
        sub.owned_partitions = vec![tp];
    }
    sub.generation_id = generation;
    encode_versioned(&sub, SUBSCRIPTION_VERSION)
}

/// An assignment of `partitions` of `topic`, in the consumer protocol.
pub fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let mut a = ConsumerProtocolAssignment::default();
    if !partitions.is_empty() {
        let mut tp = consumer_protocol_assignment::TopicPartition::default();
        tp.topic = TopicName(s(topic));
        tp.partitions = partitions.to_vec();
        a.assigned_partitions = vec![tp];
    }
    encode_versioned(&a, ASSIGNMENT_VERSION)
}

/// The partitions of `topic` in an assignment (none for an empty or unreadable one).
pub fn assigned(topic: &str, data: &Bytes) -> Result<Vec<i32>, ClientError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = data.clone();
    let version = read_version(&mut buf)?;
    let a = ConsumerProtocolAssignment::decode(&mut buf, version)
        .map_err(|e| ClientError::Protocol(format!("assignment: {e:#}")))?;
    Ok(a.assigned_partitions
        .iter()
        .filter(|tp| tp.topic.0.as_str() == topic)
        .flat_map(|tp| tp.partitions.iter().copied())
        .collect())
}

fn subscribed(data: &Bytes) -> Result<Subscription, ClientError> {
    let mut buf = data.clone();
    let version = read_version(&mut buf)?;
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version)
        .map_err(|e| ClientError::Protocol(format!("subscription: {e:#}")))?;
    let topics: Vec<String> = sub.topics.iter().map(|t| t.to_string()).collect();
    let owned = sub
        .owned_partitions
        .iter()
        .filter(|tp| topics.first().is_some_and(|t| tp.topic.0.as_str() == t))
        .flat_map(|tp| tp.partitions.iter().copied())
        .collect();
    Ok(Subscription {
        topics,
        owned,
        generation: if version >= 2 { sub.generation_id } else { -1 },
    })
}

fn read_version(buf: &mut Bytes) -> Result<i16, ClientError> {
    if buf.len() < 2 {
        return Err(ClientError::Protocol(
            "consumer protocol data too short".into(),
        ));
    }
    let v = i16::from_be_bytes([buf[0], buf[1]]);
    bytes::Buf::advance(buf, 2);
    Ok(v.clamp(0, 3))
}

fn encode_versioned<T: Encodable>(m: &T, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Encoding a well-formed message of our own cannot fail.
    let _ = m.encode(&mut buf, version);
    buf.freeze()
}

fn unexpected(other: ResponseKind) -> ClientError {
    ClientError::Protocol(format!("unexpected response {other:?}"))
}

impl Client {
    /// Join `group` with one assignment `protocol` ("range", "cooperative-sticky") and the
    /// member's `subscription` (one JoinGroup; MEMBER_ID_REQUIRED comes back as an error with
    /// the id to use in [`ClientError::MemberIdRequired`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn join_group(
        &mut self,
        group: &str,
        member_id: &str,
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
        protocol: &str,
        subscription: Bytes,
    ) -> Result<Joined, ClientError> {
        let mut req = JoinGroupRequest::default();
        req.group_id = GroupId(s(group));
        req.session_timeout_ms = session_timeout_ms;
        req.rebalance_timeout_ms = rebalance_timeout_ms;
        req.member_id = s(member_id);
        req.protocol_type = s("consumer");
        let mut p = join_group_request::JoinGroupRequestProtocol::default();
        p.name = s(protocol);
        p.metadata = subscription;
        req.protocols = vec![p];
        req.reason = Some(s("sim member joins"));
        match self
            .call(ApiKey::JoinGroup, JOIN_VERSION, RequestKind::JoinGroup(req))
            .await?
        {
            ResponseKind::JoinGroup(r) if r.error_code == MEMBER_ID_REQUIRED => {
                Err(ClientError::MemberIdRequired(r.member_id.to_string()))
            }
            ResponseKind::JoinGroup(r) if r.error_code != 0 => {
                Err(ClientError::Kafka(r.error_code))
            }
            ResponseKind::JoinGroup(r) => {
                let mut members = Vec::new();
                for m in &r.members {
                    members.push((m.member_id.to_string(), subscribed(&m.metadata)?));
                }
                Ok(Joined {
                    generation: r.generation_id,
                    member_id: r.member_id.to_string(),
                    leader: r.leader.to_string(),
                    members,
                })
            }
            other => Err(unexpected(other)),
        }
    }

    /// SyncGroup: the leader hands over `assignments`; every member gets its own.
    pub async fn sync_group(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        protocol: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Bytes, ClientError> {
        let mut req = SyncGroupRequest::default();
        req.group_id = GroupId(s(group));
        req.generation_id = generation;
        req.member_id = s(member_id);
        req.protocol_type = Some(s("consumer"));
        req.protocol_name = Some(s(protocol));
        req.assignments = assignments
            .into_iter()
            .map(|(m, a)| {
                let mut x = sync_group_request::SyncGroupRequestAssignment::default();
                x.member_id = s(&m);
                x.assignment = a;
                x
            })
            .collect();
        match self
            .call(ApiKey::SyncGroup, SYNC_VERSION, RequestKind::SyncGroup(req))
            .await?
        {
            ResponseKind::SyncGroup(r) if r.error_code == 0 => Ok(r.assignment),
            ResponseKind::SyncGroup(r) => Err(ClientError::Kafka(r.error_code)),
            other => Err(unexpected(other)),
        }
    }

    /// Heartbeat: 0, or the group's answer (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, …).
    pub async fn heartbeat(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<i16, ClientError> {
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(s(group));
        req.generation_id = generation;
        req.member_id = s(member_id);
        match self
            .call(
                ApiKey::Heartbeat,
                HEARTBEAT_VERSION,
                RequestKind::Heartbeat(req),
            )
            .await?
        {
            ResponseKind::Heartbeat(r) => Ok(r.error_code),
            other => Err(unexpected(other)),
        }
    }

    /// LeaveGroup for one member: its code.
    pub async fn leave_group(&mut self, group: &str, member_id: &str) -> Result<i16, ClientError> {
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(s(group));
        let mut m = leave_group_request::MemberIdentity::default();
        m.member_id = s(member_id);
        m.reason = Some(s("sim member leaves"));
        req.members = vec![m];
        match self
            .call(
                ApiKey::LeaveGroup,
                LEAVE_VERSION,
                RequestKind::LeaveGroup(req),
            )
            .await?
        {
            ResponseKind::LeaveGroup(r) if r.error_code != 0 => Ok(r.error_code),
            ResponseKind::LeaveGroup(r) => Ok(r.members.first().map_or(0, |m| m.error_code)),
            other => Err(unexpected(other)),
        }
    }

    /// A ConsumerGroupHeartbeat of `member_id` at `epoch` (0: joins with `join`; -1: leaves),
    /// saying it owns `owned` (by topic id; `None`: not said). A refusal is its error code.
    pub async fn consumer_heartbeat(
        &mut self,
        group: &str,
        member_id: &str,
        epoch: i32,
        join: Option<Join<'_>>,
        owned: Option<Vec<(uuid::Uuid, Vec<i32>)>>,
    ) -> Result<Beat, ClientError> {
        let mut req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member_id))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(-1);
        if let Some(j) = join {
            req.subscribed_topic_names = Some(j.topics.iter().map(|t| TopicName(s(t))).collect());
            req.server_assignor = Some(s(j.assignor));
            req.rebalance_timeout_ms = j.rebalance_timeout_ms;
        }
        req.topic_partitions = owned.map(|owned| {
            owned
                .into_iter()
                .map(|(id, partitions)| {
                    consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(partitions)
                })
                .collect()
        });
        match self
            .call(
                ApiKey::ConsumerGroupHeartbeat,
                CONSUMER_HEARTBEAT_VERSION,
                RequestKind::ConsumerGroupHeartbeat(req),
            )
            .await?
        {
            ResponseKind::ConsumerGroupHeartbeat(r) if r.error_code != 0 => {
                Err(ClientError::Kafka(r.error_code))
            }
            ResponseKind::ConsumerGroupHeartbeat(r) => Ok(Beat {
                member_epoch: r.member_epoch,
                heartbeat_interval_ms: r.heartbeat_interval_ms,
                assignment: r.assignment.map(|a| {
                    a.topic_partitions
                        .into_iter()
                        .map(|t| (t.topic_id, t.partitions))
                        .collect()
                }),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Commit `offsets` `(partition, offset)` of `topic` for a member of `generation` (or, with
    /// generation -1 and no member id, as a consumer without a group membership). One code per
    /// partition.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_offsets(
        &mut self,
        version: i16,
        group: &str,
        generation: i32,
        member_id: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<Vec<(i32, i16)>, ClientError> {
        let id = self
            .send_commit(version, group, generation, member_id, topic, offsets)
            .await?;
        self.commit_answer(version, id).await
    }

    /// Send a commit without waiting for its answer (as an asynchronous commit does); read the
    /// answer with [`Client::commit_answer`] before anything else on this connection.
    pub async fn send_commit(
        &mut self,
        version: i16,
        group: &str,
        generation: i32,
        member_id: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<i32, ClientError> {
        let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
        t.name = TopicName(s(topic));
        t.partitions = offsets
            .iter()
            .map(|&(p, o)| {
                let mut x = offset_commit_request::OffsetCommitRequestPartition::default();
                x.partition_index = p;
                x.committed_offset = o;
                x.committed_leader_epoch = -1;
                x
            })
            .collect();
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(s(group));
        req.generation_id_or_member_epoch = generation;
        req.member_id = s(member_id);
        req.topics = vec![t];
        self.send_request(
            ApiKey::OffsetCommit,
            version,
            RequestKind::OffsetCommit(req),
        )
        .await
    }

    /// The answer to the commit sent as `correlation_id`: one code per partition.
    pub async fn commit_answer(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> Result<Vec<(i32, i16)>, ClientError> {
        match self
            .receive(ApiKey::OffsetCommit, version, correlation_id)
            .await?
        {
            ResponseKind::OffsetCommit(r) => Ok(r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| (p.partition_index, p.error_code))
                .collect()),
            other => Err(unexpected(other)),
        }
    }

    /// The group's committed offsets of `partitions` of `topic` (-1: none).
    pub async fn committed_offsets(
        &mut self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64)>, ClientError> {
        let mut t = offset_fetch_request::OffsetFetchRequestTopics::default();
        t.name = TopicName(s(topic));
        t.partition_indexes = partitions.to_vec();
        let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
        g.group_id = GroupId(s(group));
        g.topics = Some(vec![t]);
        let mut req = OffsetFetchRequest::default();
        req.groups = vec![g];
        req.require_stable = true;
        match self
            .call(
                ApiKey::OffsetFetch,
                FETCH_OFFSETS_VERSION,
                RequestKind::OffsetFetch(req),
            )
            .await?
        {
            ResponseKind::OffsetFetch(r) => {
                let g = r
                    .groups
                    .first()
                    .ok_or_else(|| ClientError::Protocol("empty OffsetFetch answer".into()))?;
                if g.error_code != 0 {
                    return Err(ClientError::Kafka(g.error_code));
                }
                let mut out = Vec::new();
                for p in g.topics.iter().flat_map(|t| t.partitions.iter()) {
                    if p.error_code != 0 {
                        return Err(ClientError::Kafka(p.error_code));
                    }
                    out.push((p.partition_index, p.committed_offset));
                }
                Ok(out)
            }
            other => Err(unexpected(other)),
        }
    }
}
