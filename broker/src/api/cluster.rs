//! The cluster as clients see it: DescribeCluster, DescribeLogDirs, DescribeQuorum,
//! ListConfigResources and UnregisterBroker (the controller quorum, and a retired broker forgotten:
//! [`crate::controller::membership`]), and the authorized-operations
//! fields (Metadata, DescribeCluster, DescribeGroups) as a broker without an authorizer fills
//! them (with one, `authorize` fills them from the ACLs).

use kafka_protocol::messages::{
    describe_cluster_response::DescribeClusterBroker,
    describe_log_dirs_response::{
        DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
    },
    list_config_resources_response::ConfigResource,
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    ListConfigResourcesRequest, ListConfigResourcesResponse, UnregisterBrokerRequest,
    UnregisterBrokerResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{name_of, topic_name, Broker};
use crate::protocol::error;
use crate::replication::transport::NodeId;

impl Broker {
    /// DescribeQuorum: the metadata log's Raft group (`__cluster_metadata-0`) as this broker
    /// knows it — its voters and observers, and (from its leader) how far each has the log,
    /// as a Raft index.
    pub(super) async fn describe_quorum(
        &self,
        req: DescribeQuorumRequest,
        version: i16,
    ) -> DescribeQuorumResponse {
        use kafka_protocol::messages::describe_quorum_response::{
            Listener, Node, PartitionData, ReplicaState, TopicData,
        };
        let mut resp = DescribeQuorumResponse::default();
        let refuse = |code: i16, message: &str| {
            DescribeQuorumResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message.to_string())))
        };
        let Some(cluster) = &self.cluster else {
            return refuse(
                error::INVALID_REQUEST,
                "a single node has no controller quorum (cluster_peers is empty)",
            );
        };
        let q = cluster.quorum_state().await;
        let replica = |(id, matched): &(NodeId, Option<u64>)| {
            ReplicaState::default()
                .with_replica_id(BrokerId(*id as i32))
                .with_log_end_offset(matched.map_or(-1, |m| m as i64))
                .with_last_fetch_timestamp(-1)
                .with_last_caught_up_timestamp(-1)
        };
        for topic in &req.topics {
            let mut t = TopicData::default().with_topic_name(topic.topic_name.clone());
            for p in &topic.partitions {
                let mut part = PartitionData::default().with_partition_index(p.partition_index);
                if name_of(&topic.topic_name) != crate::controller::METADATA_TOPIC
                    || p.partition_index != 0
                {
                    part.error_code = error::UNKNOWN_TOPIC_OR_PARTITION;
                } else {
                    part.leader_id = BrokerId(q.leader.map_or(-1, |l| l as i32));
                    part.leader_epoch = q.term.min(i32::MAX as u64) as i32;
                    part.high_watermark = q.high_watermark;
                    part.current_voters = q.voters.iter().map(replica).collect();
                    part.observers = q.observers.iter().map(replica).collect();
                }
                t.partitions.push(part);
            }
            resp.topics.push(t);
        }
        if version >= 2 {
            let md = cluster.metadata();
            for (id, _) in q.voters.iter().chain(&q.observers) {
                let Some(b) = md.brokers.get(id) else {
                    continue;
                };
                let listeners = b
                    .endpoints
                    .iter()
                    .map(|e| {
                        Listener::default()
                            .with_name(StrBytes::from_string(e.name.clone()))
                            .with_host(StrBytes::from_string(e.host.clone()))
                            .with_port(e.port as u16)
                    })
                    .collect();
                resp.nodes.push(
                    Node::default()
                        .with_node_id(BrokerId(*id as i32))
                        .with_listeners(listeners),
                );
            }
        }
        resp
    }

    /// UnregisterBroker: forget a retired broker (it holds no replica; it may be down).
    pub(super) async fn unregister_broker(
        &self,
        req: UnregisterBrokerRequest,
    ) -> UnregisterBrokerResponse {
        use crate::controller::state::MetadataError;
        use crate::controller::SubmitError;
        let answer = |code: i16, message: String| {
            UnregisterBrokerResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        };
        let Some(cluster) = &self.cluster else {
            return answer(
                error::BROKER_ID_NOT_REGISTERED,
                format!(
                    "a single node has no broker {} to unregister",
                    req.broker_id.0
                ),
            );
        };
        let id = req.broker_id.0;
        if id < 0 {
            return answer(
                error::BROKER_ID_NOT_REGISTERED,
                format!("no broker has id {id}"),
            );
        }
        let limit = std::time::Duration::from_secs(10);
        match cluster.unregister_broker(id as u64, limit).await {
            Ok(()) => UnregisterBrokerResponse::default(),
            Err(SubmitError::Failed(MetadataError::BrokerNotRegistered(_))) => answer(
                error::BROKER_ID_NOT_REGISTERED,
                format!("broker {id} is not registered"),
            ),
            Err(SubmitError::Failed(e)) => answer(error::INVALID_REQUEST, e.to_string()),
            Err(e @ SubmitError::TimedOut(_)) => answer(error::REQUEST_TIMED_OUT, e.to_string()),
            Err(e @ SubmitError::Stopped) => answer(error::NOT_CONTROLLER, e.to_string()),
        }
    }
}

/// The cluster id clients are told.
pub(super) const CLUSTER_ID: &str = "stillwater";

/// What Kafka answers for authorized operations when the client asks and no authorizer is
/// configured: every operation the resource type has (bits by Kafka's `AclOperation` codes);
/// when the client does not ask, `i32::MIN`.
pub(super) mod operations {
    const READ: i32 = 1 << 3;
    const WRITE: i32 = 1 << 4;
    const CREATE: i32 = 1 << 5;
    const DELETE: i32 = 1 << 6;
    const ALTER: i32 = 1 << 7;
    const DESCRIBE: i32 = 1 << 8;
    const CLUSTER_ACTION: i32 = 1 << 9;
    const DESCRIBE_CONFIGS: i32 = 1 << 10;
    const ALTER_CONFIGS: i32 = 1 << 11;
    const IDEMPOTENT_WRITE: i32 = 1 << 12;
    const CREATE_TOKENS: i32 = 1 << 13;
    const DESCRIBE_TOKENS: i32 = 1 << 14;

    pub const TOPIC: i32 =
        READ | WRITE | CREATE | DELETE | ALTER | DESCRIBE | DESCRIBE_CONFIGS | ALTER_CONFIGS;
    pub const GROUP: i32 = READ | DESCRIBE | DELETE;
    pub const CLUSTER: i32 = CREATE
        | ALTER
        | DESCRIBE
        | CLUSTER_ACTION
        | DESCRIBE_CONFIGS
        | ALTER_CONFIGS
        | IDEMPOTENT_WRITE
        | CREATE_TOKENS
        | DESCRIBE_TOKENS;

    /// `ops` if the client asked, else Kafka's "not asked" value.
    pub fn if_asked(asked: bool, ops: i32) -> i32 {
        if asked {
            ops
        } else {
            i32::MIN
        }
    }
}

/// Kafka's config resource types, as ListConfigResources lists them.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_BROKER_LOGGER: i8 = 8;
const RESOURCE_CLIENT_METRICS: i8 = 16;
const RESOURCE_GROUP: i8 = 32;

/// DescribeCluster's endpoint types.
const BROKERS: i8 = 1;
const CONTROLLERS: i8 = 2;

impl Broker {
    pub(super) fn describe_cluster(
        &self,
        req: DescribeClusterRequest,
        version: i16,
        listener: Option<&str>,
    ) -> DescribeClusterResponse {
        let mut resp = DescribeClusterResponse::default();
        if version >= 1 && req.endpoint_type != BROKERS {
            let (code, msg) = if req.endpoint_type == CONTROLLERS {
                (
                    error::MISMATCHED_ENDPOINT_TYPE,
                    "this is a broker endpoint; the controller is not reachable separately"
                        .to_string(),
                )
            } else {
                (
                    error::UNSUPPORTED_ENDPOINT_TYPE,
                    format!("unknown endpoint type {}", req.endpoint_type),
                )
            };
            resp.error_code = code;
            resp.error_message = Some(StrBytes::from_string(msg));
            return resp;
        }
        for (id, host, port, rack) in self.live_brokers(listener) {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(id);
            b.host = StrBytes::from_string(host);
            b.port = port;
            b.rack = rack.map(StrBytes::from_string);
            resp.brokers.push(b);
        }
        resp.cluster_id = StrBytes::from_static_str(CLUSTER_ID);
        resp.controller_id = BrokerId(self.controller_id());
        resp.cluster_authorized_operations = operations::if_asked(
            req.include_cluster_authorized_operations,
            operations::CLUSTER,
        );
        resp
    }

    /// ListConfigResources (KIP-1142; v0 is KIP-714's ListClientMetricsResources): the
    /// resources DescribeConfigs may be asked about, of the types asked (none named: every
    /// type the version has) — every topic, every client-metrics subscription (v0's only
    /// type), and every live broker as a broker and as its loggers. Groups' own configs do
    /// not exist on this broker, so none is listed. A type the version does not have:
    /// UNSUPPORTED_VERSION and nothing listed, as Kafka.
    pub(super) fn list_config_resources(
        &self,
        req: ListConfigResourcesRequest,
        version: i16,
    ) -> ListConfigResourcesResponse {
        let served: &[i8] = if version == 0 {
            &[RESOURCE_CLIENT_METRICS]
        } else {
            &[
                RESOURCE_TOPIC,
                RESOURCE_GROUP,
                RESOURCE_CLIENT_METRICS,
                RESOURCE_BROKER_LOGGER,
                RESOURCE_BROKER,
            ]
        };
        let asked = |t: &i8| req.resource_types.is_empty() || req.resource_types.contains(t);
        let mut resp = ListConfigResourcesResponse::default();
        if let Some(t) = req.resource_types.iter().find(|t| !served.contains(t)) {
            resp.error_code = error::UNSUPPORTED_VERSION;
            tracing::debug!(
                resource_type = t,
                version,
                "ListConfigResources of a type not served"
            );
            return resp;
        }
        let resource = |resource_type: i8, name: String| {
            let mut r = ConfigResource::default();
            r.resource_type = resource_type;
            r.resource_name = StrBytes::from_string(name);
            r
        };
        for &t in served.iter().filter(|t| asked(t)) {
            match t {
                RESOURCE_TOPIC => {
                    let mut names: Vec<String> = match &self.cluster {
                        None => self.store.topics().iter().map(|t| t.name.clone()).collect(),
                        Some(c) => c.metadata().topics.keys().cloned().collect(),
                    };
                    names.retain(|n| n != crate::controller::METADATA_TOPIC);
                    names.sort();
                    resp.config_resources
                        .extend(names.into_iter().map(|n| resource(t, n)));
                }
                RESOURCE_CLIENT_METRICS => {
                    resp.config_resources
                        .extend(self.client_metrics().keys().map(|n| resource(t, n.clone())));
                }
                RESOURCE_BROKER | RESOURCE_BROKER_LOGGER => {
                    let mut ids: Vec<i32> = match &self.cluster {
                        None => vec![self.config.node_id],
                        Some(c) => c
                            .metadata()
                            .brokers
                            .values()
                            .filter(|b| !b.fenced)
                            .map(|b| b.id as i32)
                            .collect(),
                    };
                    ids.sort_unstable();
                    resp.config_resources
                        .extend(ids.into_iter().map(|id| resource(t, id.to_string())));
                }
                _ => {}
            }
        }
        resp
    }

    /// The data directory, with the size of each partition asked for (all when `topics` is
    /// null; unknown topics and partitions are left out, as Kafka does).
    pub(super) fn describe_log_dirs(
        &self,
        req: DescribeLogDirsRequest,
        version: i16,
    ) -> DescribeLogDirsResponse {
        let mut resp = DescribeLogDirsResponse::default();
        let mut dir = DescribeLogDirsResult::default();
        dir.log_dir = StrBytes::from_string(self.config.data_dir.display().to_string());
        if self.store.io().health.check().is_err() {
            dir.error_code = error::KAFKA_STORAGE_ERROR;
        }
        if version >= 4 {
            // Not known here (the disk layer has no free-space query).
            dir.total_bytes = -1;
            dir.usable_bytes = -1;
        }
        let wanted: Vec<(
            std::sync::Arc<crate::storage::catalog::Topic>,
            Option<Vec<i32>>,
        )> = match req.topics {
            None => self.store.topics().into_iter().map(|t| (t, None)).collect(),
            Some(list) => list
                .into_iter()
                .filter_map(|t| Some((self.store.topic(name_of(&t.topic))?, Some(t.partitions))))
                .collect(),
        };
        for (topic, partitions) in wanted {
            let mut dt = DescribeLogDirsTopic::default();
            dt.name = topic_name(&topic.name);
            for p in &topic.partitions {
                if partitions.as_ref().is_some_and(|w| !w.contains(&p.index)) {
                    continue;
                }
                let mut dp = DescribeLogDirsPartition::default();
                dp.partition_index = p.index;
                dp.partition_size = p.state().size_bytes() as i64;
                dp.offset_lag = 0;
                dt.partitions.push(dp);
            }
            if !dt.partitions.is_empty() {
                dir.topics.push(dt);
            }
        }
        resp.results.push(dir);
        resp
    }
}
