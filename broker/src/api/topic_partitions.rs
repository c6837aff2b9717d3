//! DescribeTopicPartitions (KIP-966): the topics asked for (or all), in name order, and their
//! partitions, a page at a time — at most `response_partition_limit` partitions per answer,
//! and a cursor (topic, partition) where the next page starts. Kafka 4's admin client describes
//! topics with it. The partitions are Metadata's (the same leaders, replicas and epochs); no
//! topic is ever created by it.

use kafka_protocol::messages::{
    describe_topic_partitions_response::{
        Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
    },
    metadata_request::MetadataRequestTopic,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest,
};

use super::cluster::operations;
use super::{name_of, Broker};
use crate::protocol::error;

/// The most partitions one answer carries, whatever the client asks (Kafka's
/// `max.request.partition.size.limit` default).
const PARTITIONS_MAX: i32 = 2000;

/// The Metadata version whose answer is turned into this one.
const METADATA_VERSION: i16 = 12;

impl Broker {
    pub(super) async fn describe_topic_partitions(
        &self,
        req: DescribeTopicPartitionsRequest,
        listener: Option<&str>,
    ) -> DescribeTopicPartitionsResponse {
        let limit = req.response_partition_limit.clamp(1, PARTITIONS_MAX) as usize;
        // A cursor must name one of the topics asked for, and a partition index: otherwise
        // every topic asked for is answered INVALID_REQUEST (Kafka's).
        if let Some(c) = &req.cursor {
            let asked_for =
                req.topics.is_empty() || req.topics.iter().any(|t| t.name == c.topic_name);
            if !asked_for || c.partition_index < 0 {
                let mut names: Vec<_> = req.topics.into_iter().map(|t| t.name).collect();
                names.sort();
                let mut resp = DescribeTopicPartitionsResponse::default();
                resp.topics = names
                    .into_iter()
                    .map(|name| {
                        DescribeTopicPartitionsResponseTopic::default()
                            .with_error_code(error::INVALID_REQUEST)
                            .with_name(Some(name))
                            .with_topic_authorized_operations(i32::MIN)
                    })
                    .collect();
                return resp;
            }
        }
        let asked = (!req.topics.is_empty()).then(|| {
            req.topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(t.name.clone())))
                .collect()
        });
        let metadata = MetadataRequest::default()
            .with_topics(asked)
            .with_allow_auto_topic_creation(false)
            .with_include_topic_authorized_operations(true);
        let mut topics = self
            .metadata(metadata, METADATA_VERSION, listener)
            .await
            .topics;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics.dedup_by(|a, b| a.name == b.name);
        let (from_topic, from_partition) = match &req.cursor {
            Some(c) => (name_of(&c.topic_name).to_string(), c.partition_index),
            None => (String::new(), 0),
        };
        let mut resp = DescribeTopicPartitionsResponse::default();
        let mut left = limit;
        for t in topics {
            let name = t.name.as_ref().map_or("", name_of).to_string();
            if name < from_topic {
                continue;
            }
            let first = if name == from_topic {
                from_partition
            } else {
                0
            };
            if left == 0 {
                resp.next_cursor = Some(cursor(t.name.clone(), 0));
                break;
            }
            let mut dt = DescribeTopicPartitionsResponseTopic::default();
            dt.error_code = t.error_code;
            dt.name = t.name.clone();
            dt.topic_id = t.topic_id;
            dt.is_internal = t.is_internal;
            // Kafka names the operations even of a topic that does not exist.
            dt.topic_authorized_operations = operations::if_asked(true, operations::TOPIC);
            let mut partitions: Vec<_> = t
                .partitions
                .into_iter()
                .filter(|p| p.partition_index >= first)
                .collect();
            partitions.sort_by_key(|p| p.partition_index);
            let more = partitions.len() > left;
            for p in partitions.into_iter().take(left) {
                left -= 1;
                dt.partitions.push(
                    DescribeTopicPartitionsResponsePartition::default()
                        .with_error_code(p.error_code)
                        .with_partition_index(p.partition_index)
                        .with_leader_id(p.leader_id)
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(p.replica_nodes)
                        .with_isr_nodes(p.isr_nodes)
                        .with_eligible_leader_replicas(Some(Vec::new()))
                        .with_last_known_elr(Some(Vec::new()))
                        .with_offline_replicas(p.offline_replicas),
                );
            }
            let next = dt.partitions.last().map(|p| p.partition_index + 1);
            resp.topics.push(dt);
            if more {
                resp.next_cursor = Some(cursor(t.name, next.unwrap_or(first)));
                break;
            }
        }
        resp
    }
}

fn cursor(topic: Option<kafka_protocol::messages::TopicName>, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(topic.unwrap_or_default())
        .with_partition_index(partition)
}
