//! The security probes' requests ([`Probe`]): each built at a version the broker serves,
//! about the probes' topic, group or the cluster, and its answer reduced to what authorization
//! decided — every error code in it, or whether a listing named the probes' topic or group.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError};
use crate::history::probe::{
    ABSENT_BROKER, ABSENT_TOPIC, NOBODY, PROBE_GROUP, PROBE_TOPIC, PROBE_TXN,
};
use crate::history::Probe;

/// Kafka's CLUSTER_AUTHORIZATION_FAILED.
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

/// What a probe's answer says of authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// Every error code of the answer (top level, per resource, per partition).
    Codes(Vec<i16>),
    /// A listing: whether it named the probes' topic or group.
    Listed(bool),
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic() -> TopicName {
    TopicName(text(PROBE_TOPIC))
}

fn group() -> GroupId {
    GroupId(text(PROBE_GROUP))
}

/// The versions a probe is sent at: those the broker serves that the request can be written
/// in (a Metadata that must not create topics needs v4; a JoinGroup answered at once without
/// a member id, v4).
pub fn versions(probe: Probe) -> (i16, i16) {
    let (lo, hi) = broker::protocol::supported_range(probe.api()).unwrap_or((0, 0));
    let least = match probe {
        Probe::Metadata | Probe::MetadataListing | Probe::JoinGroup => 4,
        Probe::AddPartitionsToTxnBatched => 4,
        // Validate-only from v1 (a v0 update would change the level).
        Probe::UpdateFeatures => 1,
        _ => lo,
    };
    // A producer's AddPartitionsToTxn is v0–3; v4 on is the batched form. Produce and Fetch
    // name topics by id from v13 on, and a probe knows its topic by name only.
    let most = match probe {
        Probe::AddPartitionsToTxn => 3,
        Probe::Produce | Probe::Fetch => 12,
        _ => hi,
    };
    (lo.max(least), most.min(hi))
}

/// A config resource: the probes' topic, or the cluster's brokers (all of them: empty name).
fn config_resource(probe: Probe) -> (i8, StrBytes) {
    match probe {
        Probe::DescribeTopicConfigs
        | Probe::AlterTopicConfigs
        | Probe::IncrementalAlterTopicConfigs => (2, text(PROBE_TOPIC)),
        _ => (4, text("")),
    }
}

fn txn_id() -> TransactionalId {
    TransactionalId(text(PROBE_TXN))
}

/// The request of one of the transaction probes (ListTransactions for any other).
fn txn_request(probe: Probe) -> RequestKind {
    use Probe as P;
    use RequestKind as R;
    let added = || {
        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
            .with_name(topic())
            .with_partitions(vec![0])
    };
    match probe {
        P::AddPartitionsToTxn => R::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id())
                .with_v3_and_below_producer_id(ProducerId(1))
                .with_v3_and_below_topics(vec![added()]),
        ),
        P::AddPartitionsToTxnBatched => {
            let t = add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(1))
                .with_verify_only(true)
                .with_topics(vec![added()]);
            R::AddPartitionsToTxn(AddPartitionsToTxnRequest::default().with_transactions(vec![t]))
        }
        P::AddOffsetsToTxn => R::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(1))
                .with_group_id(group()),
        ),
        P::EndTxn => R::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(1)),
        ),
        P::TxnOffsetCommit => {
            let part = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                .with_committed_offset(0);
            let t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(topic())
                .with_partitions(vec![part]);
            R::TxnOffsetCommit(
                TxnOffsetCommitRequest::default()
                    .with_transactional_id(txn_id())
                    .with_group_id(group())
                    .with_producer_id(ProducerId(1))
                    .with_generation_id(-1)
                    .with_topics(vec![t]),
            )
        }
        P::WriteTxnMarkers => {
            let t = write_txn_markers_request::WritableTxnMarkerTopic::default()
                .with_name(topic())
                .with_partition_indexes(vec![99]);
            let m = write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(ProducerId(1))
                .with_topics(vec![t]);
            R::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![m]))
        }
        P::DescribeTransactions => R::DescribeTransactions(
            DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id()]),
        ),
        _ => R::ListTransactions(ListTransactionsRequest::default().with_duration_filter(-1)),
    }
}

/// The request of `probe` at `version`.
pub fn request(probe: Probe, version: i16) -> Result<RequestKind, ClientError> {
    use Probe as P;
    use RequestKind as R;
    Ok(match probe {
        P::AddPartitionsToTxn
        | P::AddPartitionsToTxnBatched
        | P::AddOffsetsToTxn
        | P::EndTxn
        | P::TxnOffsetCommit
        | P::WriteTxnMarkers
        | P::DescribeTransactions
        | P::ListTransactions => txn_request(probe),
        P::Produce => {
            let value = Bytes::from_static(b"probe");
            let mut r = Client::produce_body(PROBE_TOPIC, 0, 0, &[value], None)?;
            r.acks = 1;
            r.timeout_ms = 5_000;
            R::Produce(r)
        }
        P::Fetch => {
            let part = fetch_request::FetchPartition::default().with_partition(0);
            let t = fetch_request::FetchTopic::default()
                .with_topic(topic())
                .with_partitions(vec![part]);
            R::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_topics(vec![t]),
            )
        }
        P::ListOffsets => {
            let part = list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1);
            let t = list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic())
                .with_partitions(vec![part]);
            R::ListOffsets(ListOffsetsRequest::default().with_topics(vec![t]))
        }
        P::OffsetForLeaderEpoch => {
            let part = offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                .with_leader_epoch(0);
            let t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic())
                .with_partitions(vec![part]);
            R::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_topics(vec![t]))
        }
        P::Metadata | P::MetadataListing => {
            let topics = (probe == P::Metadata).then(|| {
                vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic()))]
            });
            R::Metadata(
                MetadataRequest::default()
                    .with_topics(topics)
                    .with_allow_auto_topic_creation(false),
            )
        }
        P::DescribeTopicPartitions => R::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default().with_name(topic()),
                ])
                .with_response_partition_limit(100),
        ),
        P::CreateTopics => {
            let t = create_topics_request::CreatableTopic::default()
                .with_name(TopicName(text(ABSENT_TOPIC)))
                .with_num_partitions(1)
                .with_replication_factor(1);
            R::CreateTopics(
                CreateTopicsRequest::default()
                    .with_topics(vec![t])
                    .with_timeout_ms(5_000)
                    .with_validate_only(true),
            )
        }
        P::DeleteTopics => {
            let name = TopicName(text(ABSENT_TOPIC));
            let mut r = DeleteTopicsRequest::default().with_timeout_ms(5_000);
            if version >= 6 {
                r.topics =
                    vec![delete_topics_request::DeleteTopicState::default().with_name(Some(name))];
            } else {
                r.topic_names = vec![name];
            }
            R::DeleteTopics(r)
        }
        // The default is an empty transactional id, which Kafka authorizes as one.
        P::InitProducerId => R::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        ),
        P::FindCoordinator => {
            let mut r = FindCoordinatorRequest::default();
            if version >= 4 {
                r.coordinator_keys = vec![text(PROBE_GROUP)];
            } else {
                r.key = text(PROBE_GROUP);
            }
            R::FindCoordinator(r)
        }
        P::JoinGroup => {
            let protocol = join_group_request::JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::new());
            R::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(group())
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_protocol_type(text("consumer"))
                    .with_protocols(vec![protocol]),
            )
        }
        P::SyncGroup => R::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(group())
                .with_generation_id(1)
                .with_member_id(text(NOBODY)),
        ),
        P::Heartbeat => R::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(group())
                .with_generation_id(1)
                .with_member_id(text(NOBODY)),
        ),
        P::LeaveGroup => {
            let mut r = LeaveGroupRequest::default().with_group_id(group());
            if version >= 3 {
                r.members = vec![
                    leave_group_request::MemberIdentity::default().with_member_id(text(NOBODY))
                ];
            } else {
                r.member_id = text(NOBODY);
            }
            R::LeaveGroup(r)
        }
        P::OffsetCommit => {
            let part = offset_commit_request::OffsetCommitRequestPartition::default()
                .with_committed_offset(0);
            let t = offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic())
                .with_partitions(vec![part]);
            R::OffsetCommit(
                OffsetCommitRequest::default()
                    .with_group_id(group())
                    .with_topics(vec![t]),
            )
        }
        P::OffsetFetch => {
            let mut r = OffsetFetchRequest::default();
            if version >= 8 {
                let t = offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(topic())
                    .with_partition_indexes(vec![0]);
                r.groups = vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group())
                    .with_topics(Some(vec![t]))];
            } else {
                let t = offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic())
                    .with_partition_indexes(vec![0]);
                r.group_id = group();
                r.topics = Some(vec![t]);
            }
            R::OffsetFetch(r)
        }
        P::ListGroups => R::ListGroups(ListGroupsRequest::default()),
        P::ConsumerGroupHeartbeat => R::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group())
                .with_member_id(text(NOBODY))
                .with_member_epoch(1),
        ),
        P::ConsumerGroupDescribe => R::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![group()]),
        ),
        P::DescribeGroups => {
            R::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group()]))
        }
        P::DeleteGroups => {
            R::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![group()]))
        }
        P::OffsetDelete => {
            let part = offset_delete_request::OffsetDeleteRequestPartition::default()
                .with_partition_index(0);
            let t = offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(topic())
                .with_partitions(vec![part]);
            R::OffsetDelete(
                OffsetDeleteRequest::default()
                    .with_group_id(group())
                    .with_topics(vec![t]),
            )
        }
        P::CreatePartitions => {
            let t = create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic())
                .with_count(2);
            R::CreatePartitions(
                CreatePartitionsRequest::default()
                    .with_topics(vec![t])
                    .with_timeout_ms(5_000)
                    .with_validate_only(true),
            )
        }
        P::DeleteRecords => {
            let part = delete_records_request::DeleteRecordsPartition::default().with_offset(0);
            let t = delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic())
                .with_partitions(vec![part]);
            R::DeleteRecords(
                DeleteRecordsRequest::default()
                    .with_topics(vec![t])
                    .with_timeout_ms(5_000),
            )
        }
        P::DescribeTopicConfigs | P::DescribeBrokerConfigs => {
            let (rt, name) = config_resource(probe);
            let res = describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(rt)
                .with_resource_name(name);
            R::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![res]))
        }
        P::AlterTopicConfigs | P::AlterBrokerConfigs => {
            let (rt, name) = config_resource(probe);
            let config = alter_configs_request::AlterableConfig::default()
                .with_name(text("retention.ms"))
                .with_value(Some(text("3600000")));
            let res = alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(rt)
                .with_resource_name(name)
                .with_configs(vec![config]);
            R::AlterConfigs(
                AlterConfigsRequest::default()
                    .with_resources(vec![res])
                    .with_validate_only(true),
            )
        }
        P::IncrementalAlterTopicConfigs | P::IncrementalAlterBrokerConfigs => {
            let (rt, name) = config_resource(probe);
            let config = incremental_alter_configs_request::AlterableConfig::default()
                .with_name(text("retention.ms"))
                .with_value(Some(text("3600000")));
            let res = incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(rt)
                .with_resource_name(name)
                .with_configs(vec![config]);
            R::IncrementalAlterConfigs(
                IncrementalAlterConfigsRequest::default()
                    .with_resources(vec![res])
                    .with_validate_only(true),
            )
        }
        P::DescribeLogDirs => {
            R::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None))
        }
        P::ListConfigResources => R::ListConfigResources(ListConfigResourcesRequest::default()),
        P::DescribeAcls => R::DescribeAcls(
            DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        ),
        P::CreateAcls => {
            let creation = create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(text(ABSENT_TOPIC))
                .with_resource_pattern_type(3)
                .with_principal(text(&format!("User:{NOBODY}")))
                .with_host(text("*"))
                .with_operation(3)
                .with_permission_type(3);
            R::CreateAcls(CreateAclsRequest::default().with_creations(vec![creation]))
        }
        P::DeleteAcls => {
            let filter = delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_principal_filter(Some(text(&format!("User:{NOBODY}"))))
                .with_operation(1)
                .with_permission_type(1);
            R::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![filter]))
        }
        P::ElectLeaders => {
            let t = elect_leaders_request::TopicPartitions::default()
                .with_topic(topic())
                .with_partitions(vec![0]);
            R::ElectLeaders(
                ElectLeadersRequest::default()
                    .with_topic_partitions(Some(vec![t]))
                    .with_timeout_ms(5_000),
            )
        }
        P::AlterPartitionReassignments => {
            let part = alter_partition_reassignments_request::ReassignablePartition::default()
                .with_replicas(None);
            let t = alter_partition_reassignments_request::ReassignableTopic::default()
                .with_name(topic())
                .with_partitions(vec![part]);
            R::AlterPartitionReassignments(
                AlterPartitionReassignmentsRequest::default()
                    .with_topics(vec![t])
                    .with_timeout_ms(5_000),
            )
        }
        P::ListPartitionReassignments => R::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default().with_timeout_ms(5_000),
        ),
        P::UnregisterBroker => R::UnregisterBroker(
            UnregisterBrokerRequest::default().with_broker_id(BrokerId(ABSENT_BROKER)),
        ),
        P::DescribeQuorum => {
            let part = describe_quorum_request::PartitionData::default();
            let t = describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(text("__cluster_metadata")))
                .with_partitions(vec![part]);
            R::DescribeQuorum(DescribeQuorumRequest::default().with_topics(vec![t]))
        }
        P::DescribeProducers => {
            let t = describe_producers_request::TopicRequest::default()
                .with_name(topic())
                .with_partition_indexes(vec![0]);
            R::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![t]))
        }
        P::DescribeUserScramCredentials => {
            R::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default())
        }
        P::AlterUserScramCredentials => {
            let deletion = alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                .with_name(text(NOBODY))
                .with_mechanism(2);
            R::AlterUserScramCredentials(
                AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]),
            )
        }
        P::DescribeClientQuotas => {
            let any_client = describe_client_quotas_request::ComponentData::default()
                .with_entity_type(text("client-id"))
                .with_match_type(2)
                .with_match(None);
            R::DescribeClientQuotas(
                DescribeClientQuotasRequest::default().with_components(vec![any_client]),
            )
        }
        P::AlterClientQuotas => {
            use alter_client_quotas_request::{EntityData, EntryData, OpData};
            let entry = EntryData::default()
                .with_entity(vec![EntityData::default()
                    .with_entity_type(text("client-id"))
                    .with_entity_name(Some(text(NOBODY)))])
                .with_ops(vec![OpData::default()
                    .with_key(text("producer_byte_rate"))
                    .with_value(1000.0)]);
            R::AlterClientQuotas(
                AlterClientQuotasRequest::default()
                    .with_entries(vec![entry])
                    .with_validate_only(true),
            )
        }
        P::UpdateFeatures => {
            let update = update_features_request::FeatureUpdateKey::default()
                .with_feature(text("group.version"))
                .with_max_version_level(1)
                .with_upgrade_type(1);
            R::UpdateFeatures(
                UpdateFeaturesRequest::default()
                    .with_timeout_ms(30_000)
                    .with_feature_updates(vec![update])
                    .with_validate_only(true),
            )
        }
    })
}

/// What `resp`, the answer to `probe` at `version`, says of authorization.
pub fn answer(probe: Probe, version: i16, resp: &ResponseKind) -> ProbeAnswer {
    use ResponseKind as K;
    let mut codes = Vec::new();
    let mut c = |code: i16| codes.push(code);
    match resp {
        K::Metadata(r) if probe == Probe::MetadataListing => {
            let listed = r.topics.iter().any(|t| {
                t.error_code == 0 && t.name.as_ref().is_some_and(|n| n.0.as_str() == PROBE_TOPIC)
            });
            return ProbeAnswer::Listed(listed);
        }
        K::ListGroups(r) => {
            let listed = r
                .groups
                .iter()
                .any(|g| g.group_id.0.as_str() == PROBE_GROUP);
            return ProbeAnswer::Listed(listed);
        }
        K::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| c(p.error_code)),
        K::Fetch(r) => {
            c(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| c(p.error_code));
        }
        K::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        K::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        K::Metadata(r) => r.topics.iter().for_each(|t| c(t.error_code)),
        K::DescribeTopicPartitions(r) => r.topics.iter().for_each(|t| c(t.error_code)),
        K::CreateTopics(r) => r.topics.iter().for_each(|t| c(t.error_code)),
        K::DeleteTopics(r) => r.responses.iter().for_each(|t| c(t.error_code)),
        K::InitProducerId(r) => c(r.error_code),
        K::FindCoordinator(r) => {
            c(r.error_code);
            r.coordinators.iter().for_each(|k| c(k.error_code));
        }
        K::JoinGroup(r) => c(r.error_code),
        K::SyncGroup(r) => c(r.error_code),
        K::Heartbeat(r) => c(r.error_code),
        K::LeaveGroup(r) => {
            c(r.error_code);
            r.members.iter().for_each(|m| c(m.error_code));
        }
        K::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        K::OffsetFetch(r) => {
            c(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| c(p.error_code));
            for g in &r.groups {
                c(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| c(p.error_code));
            }
        }
        K::DescribeGroups(r) => r.groups.iter().for_each(|g| c(g.error_code)),
        K::ConsumerGroupHeartbeat(r) => c(r.error_code),
        K::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| c(g.error_code)),
        K::DeleteGroups(r) => r.results.iter().for_each(|g| c(g.error_code)),
        K::OffsetDelete(r) => {
            c(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| c(p.error_code));
        }
        K::CreatePartitions(r) => r.results.iter().for_each(|t| c(t.error_code)),
        K::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        K::DescribeConfigs(r) => r.results.iter().for_each(|x| c(x.error_code)),
        K::AlterConfigs(r) => r.responses.iter().for_each(|x| c(x.error_code)),
        K::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|x| c(x.error_code)),
        K::DescribeLogDirs(r) => {
            c(r.error_code);
            r.results.iter().for_each(|d| c(d.error_code));
            // Before v3 a refusal has no code: nothing is described (a broker always has a
            // data directory to describe).
            if version < 3 && r.results.is_empty() {
                c(CLUSTER_AUTHORIZATION_FAILED);
            }
        }
        K::DescribeAcls(r) => c(r.error_code),
        K::ListConfigResources(r) => c(r.error_code),
        K::CreateAcls(r) => r.results.iter().for_each(|x| c(x.error_code)),
        K::DeleteAcls(r) => r.filter_results.iter().for_each(|x| c(x.error_code)),
        K::ElectLeaders(r) => {
            c(r.error_code);
            r.replica_election_results
                .iter()
                .flat_map(|t| &t.partition_result)
                .for_each(|p| c(p.error_code));
        }
        K::AlterPartitionReassignments(r) => {
            c(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| c(p.error_code));
        }
        K::ListPartitionReassignments(r) => c(r.error_code),
        K::UnregisterBroker(r) => c(r.error_code),
        K::DescribeQuorum(r) => {
            c(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| c(p.error_code));
        }
        K::DescribeProducers(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        K::DescribeUserScramCredentials(r) => {
            c(r.error_code);
            r.results.iter().for_each(|x| c(x.error_code));
        }
        K::AlterUserScramCredentials(r) => r.results.iter().for_each(|x| c(x.error_code)),
        K::DescribeClientQuotas(r) => c(r.error_code),
        K::AlterClientQuotas(r) => r.entries.iter().for_each(|x| c(x.error_code)),
        K::UpdateFeatures(r) => c(r.error_code),
        K::ListTransactions(r) => {
            let listed = r
                .transaction_states
                .iter()
                .any(|t| t.transactional_id.0.as_str() == PROBE_TXN);
            return ProbeAnswer::Listed(listed);
        }
        K::AddPartitionsToTxn(r) => {
            c(r.error_code);
            r.results_by_topic_v3_and_below
                .iter()
                .chain(
                    r.results_by_transaction
                        .iter()
                        .flat_map(|t| &t.topic_results),
                )
                .flat_map(|t| &t.results_by_partition)
                .for_each(|p| c(p.partition_error_code));
        }
        K::AddOffsetsToTxn(r) => c(r.error_code),
        K::EndTxn(r) => c(r.error_code),
        K::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        K::WriteTxnMarkers(r) => r
            .markers
            .iter()
            .flat_map(|m| &m.topics)
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        K::DescribeTransactions(r) => r.transaction_states.iter().for_each(|t| c(t.error_code)),
        _ => {}
    }
    ProbeAnswer::Codes(codes)
}

impl Client {
    /// Send `probe` at `version`; what its answer says of authorization.
    pub async fn probe(&mut self, probe: Probe, version: i16) -> Result<ProbeAnswer, ClientError> {
        let body = request(probe, version)?;
        let resp = self.call(probe.api(), version, body).await?;
        Ok(answer(probe, version, &resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every probe can be written at every version it is sent at, and the broker's decoder
    /// reads it back as the request it is (a probe that cannot be sent would leave its API
    /// unprobed without a word).
    #[test]
    fn every_probe_is_written_at_each_of_its_versions() {
        use bytes::BytesMut;
        for probe in Probe::ALL {
            let (lo, hi) = versions(probe);
            assert!(lo <= hi, "{probe:?}: no version to send it at");
            for version in lo..=hi {
                let body = request(probe, version).unwrap();
                let mut buf = BytesMut::new();
                body.encode(&mut buf, version)
                    .unwrap_or_else(|e| panic!("{probe:?} v{version}: {e:#}"));
                let back = RequestKind::decode(probe.api(), &mut buf.freeze(), version);
                assert!(back.is_ok(), "{probe:?} v{version}: not read back");
            }
        }
    }

    /// Every API the broker serves is probed, but those Kafka's authorizer does not check.
    #[test]
    fn every_served_api_is_probed() {
        let unchecked = [
            ApiKey::ApiVersions,
            ApiKey::SaslHandshake,
            ApiKey::SaslAuthenticate,
            // Answered to anyone; only its authorized-operations field depends on the ACLs.
            ApiKey::DescribeCluster,
            // Client telemetry: any client may ask what to push and push it, as in Kafka.
            ApiKey::GetTelemetrySubscriptions,
            ApiKey::PushTelemetry,
        ];
        for (api, _, _) in broker::protocol::SUPPORTED {
            let probed = Probe::ALL.iter().any(|p| p.api() == *api);
            assert!(
                probed || unchecked.contains(api),
                "{api:?} is served and no probe asks it"
            );
        }
    }
}
