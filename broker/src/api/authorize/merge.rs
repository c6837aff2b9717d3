//! What was refused, put back into a response with its error; what may not be seen, hidden;
//! authorized operations filled in. Only fields the request's version has are set (the
//! encoder refuses a response with a field its version lacks).

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{text, Access, Parts, Refused};
use crate::api::{name_of, topic_name};
use crate::protocol::error;
use crate::security::acl::{op, resource, CLUSTER_NAME};

impl Refused {
    /// Put what was refused back into `body`, and hide what the principal may not see.
    pub(in crate::api) fn merge(&self, body: &mut ResponseKind) {
        let access = &self.access;
        if !access.on() {
            return;
        }
        let group_code = error::GROUP_AUTHORIZATION_FAILED;
        match body {
            ResponseKind::Metadata(m) => self.metadata(m),
            ResponseKind::DescribeTopicPartitions(d) => self.topic_partitions(d),
            ResponseKind::DescribeCluster(d) => {
                if d.cluster_authorized_operations != i32::MIN {
                    d.cluster_authorized_operations =
                        access.operations(resource::CLUSTER, CLUSTER_NAME);
                }
            }
            ResponseKind::DescribeGroups(d) => {
                for g in &mut d.groups {
                    if g.authorized_operations != i32::MIN {
                        g.authorized_operations =
                            access.operations(resource::GROUP, g.group_id.as_str());
                    }
                }
                for n in self.refused_names() {
                    d.groups.push(
                        describe_groups_response::DescribedGroup::default()
                            .with_group_id(GroupId(text(n)))
                            .with_error_code(group_code),
                    );
                }
            }
            ResponseKind::ConsumerGroupDescribe(d) => {
                for g in &mut d.groups {
                    if g.authorized_operations != i32::MIN {
                        g.authorized_operations =
                            access.operations(resource::GROUP, g.group_id.as_str());
                    }
                }
                for n in self.refused_names() {
                    d.groups.push(
                        consumer_group_describe_response::DescribedGroup::default()
                            .with_group_id(GroupId(text(n)))
                            .with_error_code(group_code),
                    );
                }
            }
            ResponseKind::ListGroups(l) => {
                if !access.cluster(op::DESCRIBE) {
                    l.groups
                        .retain(|g| access.group(op::DESCRIBE, g.group_id.as_str()));
                }
            }
            ResponseKind::DescribeTransactions(d) => {
                for n in self.refused_names() {
                    d.transaction_states.push(
                        describe_transactions_response::TransactionState::default()
                            .with_transactional_id(TransactionalId(text(n)))
                            .with_error_code(error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
                    );
                }
            }
            ResponseKind::ListTransactions(l) => {
                l.transaction_states.retain(|t| {
                    access.allows(
                        op::DESCRIBE,
                        resource::TRANSACTIONAL_ID,
                        t.transactional_id.as_str(),
                    )
                });
            }
            ResponseKind::DeleteGroups(d) => {
                for n in self.refused_names() {
                    d.results.push(
                        delete_groups_response::DeletableGroupResult::default()
                            .with_group_id(GroupId(text(n)))
                            .with_error_code(group_code),
                    );
                }
            }
            ResponseKind::FindCoordinator(f) => {
                for n in self.refused_names() {
                    f.coordinators.push(
                        find_coordinator_response::Coordinator::default()
                            .with_key(text(n))
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(group_code),
                    );
                }
            }
            ResponseKind::OffsetFetch(o) => {
                // Offsets of topics the principal may not describe are not listed.
                o.topics
                    .retain(|t| access.topic(op::DESCRIBE, name_of(&t.name)));
                for g in &mut o.groups {
                    g.topics
                        .retain(|t| access.topic(op::DESCRIBE, name_of(&t.name)));
                }
                for n in self.refused_names() {
                    o.groups.push(
                        offset_fetch_response::OffsetFetchResponseGroup::default()
                            .with_group_id(GroupId(text(n)))
                            .with_error_code(group_code),
                    );
                }
                if let Parts::Topics(refused) = &self.parts {
                    offset_fetch_topics(
                        o,
                        refused,
                        error::TOPIC_AUTHORIZATION_FAILED,
                        self.version,
                    );
                }
            }
            ResponseKind::DescribeConfigs(d) => {
                for (rt, name, code) in self.resources() {
                    d.results.push(
                        describe_configs_response::DescribeConfigsResult::default()
                            .with_resource_type(*rt)
                            .with_resource_name(text(name))
                            .with_error_code(*code),
                    );
                }
            }
            ResponseKind::AlterConfigs(a) => {
                for (rt, name, code) in self.resources() {
                    a.responses.push(
                        alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(*rt)
                            .with_resource_name(text(name))
                            .with_error_code(*code),
                    );
                }
            }
            ResponseKind::IncrementalAlterConfigs(a) => {
                for (rt, name, code) in self.resources() {
                    a.responses.push(
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(*rt)
                            .with_resource_name(text(name))
                            .with_error_code(*code),
                    );
                }
            }
            body => {
                if let Parts::Topics(refused) = &self.parts {
                    topics(
                        body,
                        refused,
                        error::TOPIC_AUTHORIZATION_FAILED,
                        self.version,
                    );
                }
            }
        }
    }

    fn refused_names(&self) -> &[String] {
        match &self.parts {
            Parts::Names(n) => n,
            _ => &[],
        }
    }

    fn resources(&self) -> &[(i8, String, i16)] {
        match &self.parts {
            Parts::Resources(r) => r,
            _ => &[],
        }
    }

    /// Metadata: topics the principal may not describe hidden from a listing and, when asked
    /// by name, answered TOPIC_AUTHORIZATION_FAILED; authorized operations filled in.
    fn metadata(&self, m: &mut MetadataResponse) {
        let access: &Access = &self.access;
        m.topics.retain(|t| {
            t.name
                .as_ref()
                .is_none_or(|n| access.topic(op::DESCRIBE, name_of(n)))
        });
        for t in &mut m.topics {
            if t.topic_authorized_operations != i32::MIN {
                let name = t.name.as_ref().map_or("", name_of);
                t.topic_authorized_operations = access.operations(resource::TOPIC, name);
            }
        }
        if let Parts::Topics(refused) = &self.parts {
            for (name, _) in refused {
                m.topics.push(
                    metadata_response::MetadataResponseTopic::default()
                        .with_name(Some(topic_name(name)))
                        .with_error_code(error::TOPIC_AUTHORIZATION_FAILED),
                );
            }
        }
        if m.cluster_authorized_operations != i32::MIN {
            m.cluster_authorized_operations = access.operations(resource::CLUSTER, CLUSTER_NAME);
        }
    }
}

impl Refused {
    /// DescribeTopicPartitions: as Metadata — topics the principal may not describe hidden
    /// from a listing and, asked by name, answered TOPIC_AUTHORIZATION_FAILED (in name order
    /// with the others); authorized operations filled in.
    fn topic_partitions(&self, d: &mut DescribeTopicPartitionsResponse) {
        let access: &Access = &self.access;
        d.topics.retain(|t| {
            t.name
                .as_ref()
                .is_none_or(|n| access.topic(op::DESCRIBE, name_of(n)))
        });
        for t in &mut d.topics {
            let name = t.name.as_ref().map_or("", name_of);
            t.topic_authorized_operations = access.operations(resource::TOPIC, name);
        }
        if let Parts::Topics(refused) = &self.parts {
            for (name, _) in refused {
                d.topics.push(
                    describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(topic_name(name)))
                        .with_error_code(error::TOPIC_AUTHORIZATION_FAILED),
                );
            }
            d.topics.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
}

/// Refused topics into OffsetFetch: the topics list before v8, the (one) group's after.
fn offset_fetch_topics(
    r: &mut OffsetFetchResponse,
    refused: &[(String, Vec<i32>)],
    code: i16,
    version: i16,
) {
    for (name, partitions) in refused {
        if version < 8 {
            r.topics.push(
                offset_fetch_response::OffsetFetchResponseTopic::default()
                    .with_name(topic_name(name))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                offset_fetch_response::OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
            );
        } else if let Some(g) = r.groups.first_mut() {
            g.topics.push(
                offset_fetch_response::OffsetFetchResponseTopics::default()
                    .with_name(topic_name(name))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                offset_fetch_response::OffsetFetchResponsePartitions::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_metadata(Some(StrBytes::from_static_str("")))
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
            );
        }
    }
}

/// Refused topics into a response of a per-topic kind, each partition with `code`.
pub(super) fn topics(
    body: &mut ResponseKind,
    refused: &[(String, Vec<i32>)],
    code: i16,
    version: i16,
) {
    if let ResponseKind::OffsetFetch(r) = body {
        return offset_fetch_topics(r, refused, code, version);
    }
    for (name, partitions) in refused {
        let n = topic_name(name);
        match body {
            ResponseKind::Produce(r) => r.responses.push(
                produce_response::TopicProduceResponse::default()
                    .with_name(n)
                    .with_partition_responses(
                        partitions
                            .iter()
                            .map(|p| {
                                produce_response::PartitionProduceResponse::default()
                                    .with_index(*p)
                                    .with_error_code(code)
                                    .with_base_offset(-1)
                            })
                            .collect(),
                    ),
            ),
            ResponseKind::Fetch(r) => r.responses.push(
                fetch_response::FetchableTopicResponse::default()
                    .with_topic(n)
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                fetch_response::PartitionData::default()
                                    .with_partition_index(*p)
                                    .with_error_code(code)
                                    .with_high_watermark(-1)
                                    .with_last_stable_offset(-1)
                            })
                            .collect(),
                    ),
            ),
            ResponseKind::ListOffsets(r) => r.topics.push(
                list_offsets_response::ListOffsetsTopicResponse::default()
                    .with_name(n)
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                list_offsets_response::ListOffsetsPartitionResponse::default()
                                    .with_partition_index(*p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
            ),
            ResponseKind::OffsetForLeaderEpoch(r) => r.topics.push(
                offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                    .with_topic(n)
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                offset_for_leader_epoch_response::EpochEndOffset::default()
                                    .with_partition(*p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
            ),
            ResponseKind::DescribeProducers(r) => r.topics.push(
                describe_producers_response::TopicResponse::default()
                    .with_name(n)
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                describe_producers_response::PartitionResponse::default()
                                    .with_partition_index(*p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
            ),
            ResponseKind::DeleteRecords(r) => r.topics.push(
                delete_records_response::DeleteRecordsTopicResult::default()
                    .with_name(n)
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                delete_records_response::DeleteRecordsPartitionResult::default()
                                    .with_partition_index(*p)
                                    .with_error_code(code)
                                    .with_low_watermark(-1)
                            })
                            .collect(),
                    ),
            ),
            ResponseKind::CreatePartitions(r) => r.results.push(
                create_partitions_response::CreatePartitionsTopicResult::default()
                    .with_name(n)
                    .with_error_code(code),
            ),
            ResponseKind::CreateTopics(r) => r.topics.push(
                create_topics_response::CreatableTopicResult::default()
                    .with_name(n)
                    .with_error_code(code),
            ),
            ResponseKind::DeleteTopics(r) => r.responses.push(
                delete_topics_response::DeletableTopicResult::default()
                    .with_name(Some(n))
                    .with_error_code(code),
            ),
            ResponseKind::OffsetCommit(r) => r.topics.push(
                offset_commit_response::OffsetCommitResponseTopic::default()
                    .with_name(n)
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                offset_commit_response::OffsetCommitResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
            ),
            ResponseKind::OffsetDelete(r) => r.topics.push(
                offset_delete_response::OffsetDeleteResponseTopic::default()
                    .with_name(n)
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                offset_delete_response::OffsetDeleteResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
            ),
            _ => {}
        }
    }
}
