//! The simulated admin's requests about the cluster's brokers: every partition's replicas
//! (Metadata of every topic), UnregisterBroker, DescribeQuorum, and ListPartitionReassignments
//! of every topic.

use kafka_protocol::messages::{
    describe_quorum_request::{PartitionData, TopicData},
    ApiKey, BrokerId, DescribeQuorumRequest, ListPartitionReassignmentsRequest, MetadataRequest,
    RequestKind, ResponseKind, TopicName, UnregisterBrokerRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError};

/// Every partition of every topic (internal ones too) with its replicas, and the brokers
/// Metadata names.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub brokers: Vec<i32>,
    /// (topic, partition, replicas)
    pub partitions: Vec<(String, i32, Vec<i32>)>,
}

fn unexpected(what: &str, other: ResponseKind) -> ClientError {
    ClientError::Protocol(format!("{what}: unexpected response {other:?}"))
}

impl Client {
    pub async fn placement(&mut self) -> Result<Placement, ClientError> {
        let req = MetadataRequest::default().with_topics(None);
        match self
            .call(ApiKey::Metadata, 9, RequestKind::Metadata(req))
            .await?
        {
            ResponseKind::Metadata(r) => Ok(Placement {
                brokers: r.brokers.iter().map(|b| b.node_id.0).collect(),
                partitions: r
                    .topics
                    .iter()
                    .filter(|t| t.error_code == 0)
                    .filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t)))
                    .flat_map(|(name, t)| {
                        t.partitions.iter().map(move |p| {
                            (
                                name.clone(),
                                p.partition_index,
                                p.replica_nodes.iter().map(|b| b.0).collect(),
                            )
                        })
                    })
                    .collect(),
            }),
            other => Err(unexpected("Metadata", other)),
        }
    }

    /// UnregisterBroker: the error code (0: unregistered).
    pub async fn unregister_broker(&mut self, id: i32) -> Result<i16, ClientError> {
        let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
        match self
            .call(
                ApiKey::UnregisterBroker,
                0,
                RequestKind::UnregisterBroker(req),
            )
            .await?
        {
            ResponseKind::UnregisterBroker(r) => Ok(r.error_code),
            other => Err(unexpected("UnregisterBroker", other)),
        }
    }

    /// The controller quorum's voters and observers (DescribeQuorum).
    pub async fn quorum(&mut self) -> Result<(Vec<i32>, Vec<i32>), ClientError> {
        let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default()])]);
        match self
            .call(ApiKey::DescribeQuorum, 1, RequestKind::DescribeQuorum(req))
            .await?
        {
            ResponseKind::DescribeQuorum(r) if r.error_code != 0 => {
                Err(ClientError::Kafka(r.error_code))
            }
            ResponseKind::DescribeQuorum(r) => {
                let p = r
                    .topics
                    .first()
                    .and_then(|t| t.partitions.first())
                    .ok_or_else(|| ClientError::Protocol("DescribeQuorum: no partition".into()))?;
                let ids =
                    |rs: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
                        rs.iter().map(|r| r.replica_id.0).collect()
                    };
                Ok((ids(&p.current_voters), ids(&p.observers)))
            }
            other => Err(unexpected("DescribeQuorum", other)),
        }
    }

    /// How many partitions (of every topic) are being moved.
    pub async fn moves_in_progress(&mut self) -> Result<usize, ClientError> {
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.request_timeout_ms)
            .with_topics(None);
        match self
            .call(
                ApiKey::ListPartitionReassignments,
                0,
                RequestKind::ListPartitionReassignments(req),
            )
            .await?
        {
            ResponseKind::ListPartitionReassignments(r) if r.error_code != 0 => {
                Err(ClientError::Kafka(r.error_code))
            }
            ResponseKind::ListPartitionReassignments(r) => {
                Ok(r.topics.iter().map(|t| t.partitions.len()).sum())
            }
            other => Err(unexpected("ListPartitionReassignments", other)),
        }
    }
}
