//! The requests the security probes send: one of every API the broker serves that Kafka's
//! authorizer checks, each about the probes' own topic, group or the cluster, made harmless
//! (validate-only, nothing to delete, a user or broker that does not exist) so that a probe
//! allowed to do it changes nothing the run depends on.

use kafka_protocol::messages::ApiKey;

/// The probes' topic (one partition).
pub const PROBE_TOPIC: &str = "secured";
/// The probes' group (no member stays in it).
pub const PROBE_GROUP: &str = "secured-group";
/// A topic nobody makes: the probes' CreateTopics only validate it, their DeleteTopics find
/// nothing.
pub const ABSENT_TOPIC: &str = "secured-new";
/// A user nobody logs in as: the probes' ACLs and credential deletions are about it.
pub const NOBODY: &str = "nobody";
/// A broker id no broker has.
pub const ABSENT_BROKER: i32 = 9999;
/// The probes' transactional id (no producer ever uses it: the probes' calls find it unknown).
pub const PROBE_TXN: &str = "secured-txn";

/// One kind of probe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    Produce,
    Fetch,
    ListOffsets,
    OffsetForLeaderEpoch,
    /// Metadata of the probes' topic by name.
    Metadata,
    /// Metadata of every topic: is the probes' topic listed?
    MetadataListing,
    /// DescribeTopicPartitions of the probes' topic by name.
    DescribeTopicPartitions,
    /// Validate-only, of a topic that never exists.
    CreateTopics,
    /// Of a topic that never exists.
    DeleteTopics,
    /// Without a transactional id (an idempotent producer's).
    InitProducerId,
    FindCoordinator,
    /// v4+ without a member id: answered MEMBER_ID_REQUIRED when allowed.
    JoinGroup,
    SyncGroup,
    Heartbeat,
    LeaveGroup,
    OffsetCommit,
    OffsetFetch,
    /// Is the probes' group listed?
    ListGroups,
    DescribeGroups,
    /// KIP-848's heartbeat of a member that is not there (at epoch 1: nothing is made).
    ConsumerGroupHeartbeat,
    ConsumerGroupDescribe,
    DeleteGroups,
    OffsetDelete,
    /// Validate-only.
    CreatePartitions,
    /// Before offset 0: nothing deleted.
    DeleteRecords,
    DescribeTopicConfigs,
    DescribeBrokerConfigs,
    /// Validate-only.
    AlterTopicConfigs,
    /// Validate-only.
    AlterBrokerConfigs,
    /// Validate-only.
    IncrementalAlterTopicConfigs,
    /// Validate-only.
    IncrementalAlterBrokerConfigs,
    DescribeLogDirs,
    /// Every type of resource.
    ListConfigResources,
    DescribeAcls,
    /// Of a principal nobody logs in as.
    CreateAcls,
    /// Of a principal nobody logs in as.
    DeleteAcls,
    /// Preferred, of the probes' topic (its one partition: moved at most back to its preferred
    /// replica).
    ElectLeaders,
    /// Cancels a reassignment of the probes' topic that never began.
    AlterPartitionReassignments,
    ListPartitionReassignments,
    /// Of a broker that does not exist.
    UnregisterBroker,
    DescribeQuorum,
    DescribeProducers,
    DescribeUserScramCredentials,
    /// Deletes a credential of a user that does not exist.
    AlterUserScramCredentials,
    /// Every client id's quotas.
    DescribeClientQuotas,
    /// A quota of a client id nobody uses, validate-only.
    AlterClientQuotas,
    /// group.version at the level it runs at, validate-only.
    UpdateFeatures,
    /// A producer's form (v0–3), of the probes' transactional id (unknown to its coordinator).
    AddPartitionsToTxn,
    /// The batched form a broker sends (v4), verify-only.
    AddPartitionsToTxnBatched,
    AddOffsetsToTxn,
    EndTxn,
    TxnOffsetCommit,
    /// To a partition the probes' topic does not have: nothing is written.
    WriteTxnMarkers,
    DescribeTransactions,
    /// Is the probes' transactional id listed? (It never is: it has no state.)
    ListTransactions,
}

impl Probe {
    /// Every probe.
    pub const ALL: [Probe; 55] = [
        Probe::Produce,
        Probe::Fetch,
        Probe::ListOffsets,
        Probe::OffsetForLeaderEpoch,
        Probe::Metadata,
        Probe::MetadataListing,
        Probe::DescribeTopicPartitions,
        Probe::CreateTopics,
        Probe::DeleteTopics,
        Probe::InitProducerId,
        Probe::FindCoordinator,
        Probe::JoinGroup,
        Probe::SyncGroup,
        Probe::Heartbeat,
        Probe::LeaveGroup,
        Probe::OffsetCommit,
        Probe::OffsetFetch,
        Probe::ListGroups,
        Probe::DescribeGroups,
        Probe::ConsumerGroupHeartbeat,
        Probe::ConsumerGroupDescribe,
        Probe::DeleteGroups,
        Probe::OffsetDelete,
        Probe::CreatePartitions,
        Probe::DeleteRecords,
        Probe::DescribeTopicConfigs,
        Probe::DescribeBrokerConfigs,
        Probe::AlterTopicConfigs,
        Probe::AlterBrokerConfigs,
        Probe::IncrementalAlterTopicConfigs,
        Probe::IncrementalAlterBrokerConfigs,
        Probe::DescribeLogDirs,
        Probe::ListConfigResources,
        Probe::DescribeAcls,
        Probe::CreateAcls,
        Probe::DeleteAcls,
        Probe::ElectLeaders,
        Probe::AlterPartitionReassignments,
        Probe::ListPartitionReassignments,
        Probe::UnregisterBroker,
        Probe::DescribeQuorum,
        Probe::DescribeProducers,
        Probe::DescribeUserScramCredentials,
        Probe::AlterUserScramCredentials,
        Probe::DescribeClientQuotas,
        Probe::AlterClientQuotas,
        Probe::UpdateFeatures,
        Probe::AddPartitionsToTxn,
        Probe::AddPartitionsToTxnBatched,
        Probe::AddOffsetsToTxn,
        Probe::EndTxn,
        Probe::TxnOffsetCommit,
        Probe::WriteTxnMarkers,
        Probe::DescribeTransactions,
        Probe::ListTransactions,
    ];

    /// The API it is a request of.
    pub fn api(self) -> ApiKey {
        use Probe as P;
        match self {
            P::Produce => ApiKey::Produce,
            P::Fetch => ApiKey::Fetch,
            P::ListOffsets => ApiKey::ListOffsets,
            P::OffsetForLeaderEpoch => ApiKey::OffsetForLeaderEpoch,
            P::Metadata | P::MetadataListing => ApiKey::Metadata,
            P::DescribeTopicPartitions => ApiKey::DescribeTopicPartitions,
            P::CreateTopics => ApiKey::CreateTopics,
            P::DeleteTopics => ApiKey::DeleteTopics,
            P::InitProducerId => ApiKey::InitProducerId,
            P::FindCoordinator => ApiKey::FindCoordinator,
            P::JoinGroup => ApiKey::JoinGroup,
            P::SyncGroup => ApiKey::SyncGroup,
            P::Heartbeat => ApiKey::Heartbeat,
            P::LeaveGroup => ApiKey::LeaveGroup,
            P::OffsetCommit => ApiKey::OffsetCommit,
            P::OffsetFetch => ApiKey::OffsetFetch,
            P::ListGroups => ApiKey::ListGroups,
            P::DescribeGroups => ApiKey::DescribeGroups,
            P::ConsumerGroupHeartbeat => ApiKey::ConsumerGroupHeartbeat,
            P::ConsumerGroupDescribe => ApiKey::ConsumerGroupDescribe,
            P::DeleteGroups => ApiKey::DeleteGroups,
            P::OffsetDelete => ApiKey::OffsetDelete,
            P::CreatePartitions => ApiKey::CreatePartitions,
            P::DeleteRecords => ApiKey::DeleteRecords,
            P::DescribeTopicConfigs | P::DescribeBrokerConfigs => ApiKey::DescribeConfigs,
            P::AlterTopicConfigs | P::AlterBrokerConfigs => ApiKey::AlterConfigs,
            P::IncrementalAlterTopicConfigs | P::IncrementalAlterBrokerConfigs => {
                ApiKey::IncrementalAlterConfigs
            }
            P::DescribeLogDirs => ApiKey::DescribeLogDirs,
            P::ListConfigResources => ApiKey::ListConfigResources,
            P::DescribeAcls => ApiKey::DescribeAcls,
            P::CreateAcls => ApiKey::CreateAcls,
            P::DeleteAcls => ApiKey::DeleteAcls,
            P::ElectLeaders => ApiKey::ElectLeaders,
            P::AlterPartitionReassignments => ApiKey::AlterPartitionReassignments,
            P::ListPartitionReassignments => ApiKey::ListPartitionReassignments,
            P::UnregisterBroker => ApiKey::UnregisterBroker,
            P::DescribeQuorum => ApiKey::DescribeQuorum,
            P::DescribeProducers => ApiKey::DescribeProducers,
            P::DescribeUserScramCredentials => ApiKey::DescribeUserScramCredentials,
            P::AlterUserScramCredentials => ApiKey::AlterUserScramCredentials,
            P::DescribeClientQuotas => ApiKey::DescribeClientQuotas,
            P::AlterClientQuotas => ApiKey::AlterClientQuotas,
            P::UpdateFeatures => ApiKey::UpdateFeatures,
            P::AddPartitionsToTxn | P::AddPartitionsToTxnBatched => ApiKey::AddPartitionsToTxn,
            P::AddOffsetsToTxn => ApiKey::AddOffsetsToTxn,
            P::EndTxn => ApiKey::EndTxn,
            P::TxnOffsetCommit => ApiKey::TxnOffsetCommit,
            P::WriteTxnMarkers => ApiKey::WriteTxnMarkers,
            P::DescribeTransactions => ApiKey::DescribeTransactions,
            P::ListTransactions => ApiKey::ListTransactions,
        }
    }

    /// Whether it asks for a listing: allowed when the probes' topic or group is in the answer,
    /// and nothing is known when it is not (it may not exist, or not be known to that broker
    /// yet).
    pub fn is_listing(self) -> bool {
        matches!(
            self,
            Probe::MetadataListing | Probe::ListGroups | Probe::ListTransactions
        )
    }
}
