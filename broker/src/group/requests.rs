//! What callers ask of the coordinator and what they get: Kafka's fields, without the wire
//! format (the API layer translates).

use bytes::Bytes;

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// JoinGroup v4+: a new member first gets an id (MEMBER_ID_REQUIRED) and joins with it.
    pub require_known_member_id: bool,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, Default)]
pub struct JoinResponse {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member, its instance id and its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct MemberRef {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// (topic, partition, offset, leader epoch, metadata)
    pub offsets: Vec<(String, i32, i64, i32, Option<String>)>,
    /// The answer to a member's commit to a group that does not exist: ILLEGAL_GENERATION,
    /// or GROUP_ID_NOT_FOUND from OffsetCommit v9 on (as Kafka 4).
    pub unknown_group: i16,
    /// The request's version can carry a consumer-protocol member's epoch (OffsetCommit v9+):
    /// a member of a consumer-protocol group must commit with one.
    pub member_epoch_commit: bool,
}

/// TxnOffsetCommit: the commit (the member and generation are checked as KIP-447 says, when
/// given), for the transaction of this producer.
#[derive(Debug, Clone)]
pub struct TxnCommitRequest {
    pub commit: CommitRequest,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// A committed offset as OffsetFetch answers it (-1 and no metadata when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub error: i16,
}

#[derive(Debug, Clone)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// A group of the consumer protocol (KIP-848; ListGroups' type "consumer").
    pub consumer_protocol: bool,
}

#[derive(Debug, Clone)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct DescribedGroup {
    pub group_id: String,
    pub error: i16,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}
