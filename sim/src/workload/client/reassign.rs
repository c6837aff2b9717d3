//! The simulated admin's partition reassignment requests: AlterPartitionReassignments (a move
//! to new replicas, or a cancellation) and ListPartitionReassignments.

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, ListPartitionReassignmentsRequest,
    RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError};

const ALTER_VERSION: i16 = 0;
const LIST_VERSION: i16 = 0;

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl Client {
    /// Move partition `partition` of `topic` to `replicas`, or cancel its move (`None`): the
    /// partition's error code (0: taken).
    pub async fn alter_reassignment(
        &mut self,
        topic: &str,
        partition: i32,
        replicas: Option<&[i32]>,
    ) -> Result<i16, ClientError> {
        let p = ReassignablePartition::default()
            .with_partition_index(partition)
            .with_replicas(replicas.map(|r| r.iter().map(|&id| BrokerId(id)).collect()));
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.request_timeout_ms)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![p])]);
        match self
            .call(
                ApiKey::AlterPartitionReassignments,
                ALTER_VERSION,
                RequestKind::AlterPartitionReassignments(req),
            )
            .await?
        {
            ResponseKind::AlterPartitionReassignments(r) if r.error_code != 0 => {
                Err(ClientError::Kafka(r.error_code))
            }
            ResponseKind::AlterPartitionReassignments(r) => r
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .map(|p| p.error_code)
                .ok_or_else(|| ClientError::Protocol("empty reassignment response".into())),
            other => Err(ClientError::Protocol(format!(
                "AlterPartitionReassignments: unexpected response {other:?}"
            ))),
        }
    }

    /// The partitions of `topic` whose move is in progress.
    pub async fn reassigning(
        &mut self,
        topic: &str,
        partitions: i32,
    ) -> Result<Vec<i32>, ClientError> {
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.request_timeout_ms)
            .with_topics(Some(vec![ListPartitionReassignmentsTopics::default()
                .with_name(topic_name(topic))
                .with_partition_indexes((0..partitions).collect())]));
        match self
            .call(
                ApiKey::ListPartitionReassignments,
                LIST_VERSION,
                RequestKind::ListPartitionReassignments(req),
            )
            .await?
        {
            ResponseKind::ListPartitionReassignments(r) if r.error_code != 0 => {
                Err(ClientError::Kafka(r.error_code))
            }
            ResponseKind::ListPartitionReassignments(r) => Ok(r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
                .collect()),
            other => Err(ClientError::Protocol(format!(
                "ListPartitionReassignments: unexpected response {other:?}"
            ))),
        }
    }
}
