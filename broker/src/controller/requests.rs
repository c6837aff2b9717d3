//! What request handlers ask of the cluster metadata: topics created, deleted, grown and
//! reconfigured, producer id blocks — each a record proposed and waited for (at most the
//! request's time), its outcome told in the storage's terms ([`TopicError`]).

use std::time::Duration;

use super::records::{id_text, MetadataRecord};
use super::state::{MetadataError, Outcome};
use super::{Controller, SubmitError};
use crate::replication::transport::NodeId;
use crate::storage::catalog::TopicError;
use crate::topic_config::Overrides;

fn topic_error(e: SubmitError) -> TopicError {
    match e {
        SubmitError::TimedOut(limit) => TopicError::TimedOut(limit),
        SubmitError::Stopped => TopicError::NoController("the controller has stopped".into()),
        SubmitError::Failed(e) => match e {
            MetadataError::TopicExists => TopicError::Exists,
            MetadataError::UnknownTopic => TopicError::Unknown,
            MetadataError::InvalidTopic(m) => TopicError::InvalidName(m),
            MetadataError::InvalidPartitions(m) => TopicError::InvalidPartitions(m),
            MetadataError::InvalidReplicationFactor(m) => TopicError::InvalidReplicationFactor(m),
            MetadataError::InvalidReplicaAssignment(m) => TopicError::InvalidReplicaAssignment(m),
            MetadataError::ConfigsChanged => {
                TopicError::NoController("the topic's configs changed meanwhile".into())
            }
            MetadataError::NoReassignmentInProgress => {
                TopicError::NoController("no reassignment is in progress".into())
            }
            e @ (MetadataError::BrokerNotRegistered(_)
            | MetadataError::BrokerHoldsReplicas(_)
            | MetadataError::FeatureRefused(_)) => TopicError::NoController(e.to_string()),
        },
    }
}

impl Controller {
    /// Create a topic; answers its id once every partition has a leader (or, if that takes
    /// longer than `limit`, once the topic exists: clients find the leaders through Metadata).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        assignments: Option<Vec<Vec<NodeId>>>,
        overrides: Overrides,
        limit: Duration,
    ) -> Result<u128, TopicError> {
        let clock = self.env.clock.clone();
        let started = clock.now();
        let id = (u128::from(self.env.rng.next_u64()) << 64) | u128::from(self.env.rng.next_u64());
        let request = self.request_id();
        let record = MetadataRecord::CreateTopic {
            request,
            name: name.to_string(),
            id: id_text(id),
            partitions,
            replication_factor,
            assignments,
            overrides,
        };
        self.submit(record, request, limit)
            .await
            .map_err(topic_error)?;
        let left = limit.saturating_sub(clock.now() - started);
        self.wait_for_leaders(name, left).await;
        Ok(self.metadata().topics.get(name).map_or(id, |t| t.id))
    }

    /// Wait, at most `limit`, until every partition of `topic` has a leader that serves.
    pub async fn wait_for_leaders(&self, topic: &str, limit: Duration) {
        let clock = self.env.clock.clone();
        let mut changes = self.changes();
        let all_led = || {
            let md = self.metadata();
            md.topics.get(topic).is_none_or(|t| {
                t.partitions.iter().all(|p| {
                    p.leader
                        .is_some_and(|l| md.brokers.get(&l).is_some_and(|b| !b.fenced))
                })
            })
        };
        let _ = clock
            .timeout(limit, async {
                while !all_led() {
                    if changes.changed().await.is_err() {
                        return;
                    }
                }
            })
            .await;
    }

    pub async fn delete_topic(&self, name: &str, limit: Duration) -> Result<(), TopicError> {
        let request = self.request_id();
        let record = MetadataRecord::DeleteTopic {
            request,
            name: name.to_string(),
        };
        self.submit(record, request, limit)
            .await
            .map(|_| ())
            .map_err(topic_error)
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<NodeId>>>,
        limit: Duration,
    ) -> Result<(), TopicError> {
        let clock = self.env.clock.clone();
        let started = clock.now();
        let request = self.request_id();
        let record = MetadataRecord::CreatePartitions {
            request,
            name: name.to_string(),
            count,
            assignments,
        };
        self.submit(record, request, limit)
            .await
            .map_err(topic_error)?;
        let left = limit.saturating_sub(clock.now() - started);
        self.wait_for_leaders(name, left).await;
        Ok(())
    }

    pub async fn alter_topic_config(
        &self,
        name: &str,
        overrides: Overrides,
        limit: Duration,
    ) -> Result<(), TopicError> {
        let request = self.request_id();
        let record = MetadataRecord::AlterTopicConfig {
            request,
            name: name.to_string(),
            overrides,
            base: None,
        };
        self.submit(record, request, limit)
            .await
            .map(|_| ())
            .map_err(topic_error)
    }

    /// Change a topic's configs by `change`, made from its configs as this broker's replica
    /// of the metadata has them and applied only if they are still those when the record is
    /// applied; otherwise made again from the newer ones (this replica has applied the one
    /// in between by then). So incremental changes sent through different brokers — whose
    /// replicas may not yet have applied each other's — never undo one another, as they would
    /// if each replaced the configs with what it made from an older copy.
    pub async fn update_topic_config<E>(
        &self,
        name: &str,
        change: impl Fn(&Overrides) -> Result<Overrides, E>,
        limit: Duration,
    ) -> Result<Result<(), TopicError>, E> {
        self.update_configs(
            |md| md.topics.get(name).map(|t| t.overrides.clone()),
            |request, overrides, base| MetadataRecord::AlterTopicConfig {
                request,
                name: name.to_string(),
                overrides,
                base: Some(base),
            },
            change,
            limit,
        )
        .await
    }

    /// Replace the dynamic configs of broker `node` (`None`: the cluster-wide default).
    pub async fn alter_broker_configs(
        &self,
        node: Option<NodeId>,
        configs: Overrides,
        limit: Duration,
    ) -> Result<(), TopicError> {
        let request = self.request_id();
        let record = MetadataRecord::AlterBrokerConfigs {
            request,
            node,
            configs,
            base: None,
        };
        self.submit(record, request, limit)
            .await
            .map(|_| ())
            .map_err(topic_error)
    }

    /// [`Controller::update_topic_config`] for the dynamic configs of broker `node` (`None`:
    /// the cluster-wide default).
    pub async fn update_broker_configs<E>(
        &self,
        node: Option<NodeId>,
        change: impl Fn(&Overrides) -> Result<Overrides, E>,
        limit: Duration,
    ) -> Result<Result<(), TopicError>, E> {
        self.update_configs(
            |md| {
                Some(match node {
                    None => md.cluster_configs.clone(),
                    Some(n) => md.broker_configs.get(&n).cloned().unwrap_or_default(),
                })
            },
            |request, configs, base| MetadataRecord::AlterBrokerConfigs {
                request,
                node,
                configs,
                base: Some(base),
            },
            change,
            limit,
        )
        .await
    }

    /// [`Controller::update_topic_config`] for client-metrics subscription `name` (empty
    /// configs: none; an empty result removes it).
    pub async fn update_client_metrics<E>(
        &self,
        name: &str,
        change: impl Fn(&Overrides) -> Result<Overrides, E>,
        limit: Duration,
    ) -> Result<Result<(), TopicError>, E> {
        self.update_configs(
            |md| Some(md.client_metrics.get(name).cloned().unwrap_or_default()),
            |request, configs, base| MetadataRecord::AlterClientMetrics {
                request,
                name: name.to_string(),
                configs,
                base: Some(base),
            },
            change,
            limit,
        )
        .await
    }

    /// A compare-and-set of some configs in the metadata: `current` reads them (`None`: the
    /// topic is unknown), `record` makes the change from them, tried again while another
    /// change lands first.
    async fn update_configs<E>(
        &self,
        current: impl Fn(&super::state::ClusterMetadata) -> Option<Overrides>,
        record: impl Fn(u64, Overrides, Overrides) -> MetadataRecord,
        change: impl Fn(&Overrides) -> Result<Overrides, E>,
        limit: Duration,
    ) -> Result<Result<(), TopicError>, E> {
        let clock = self.env.clock.clone();
        let deadline = clock.now() + limit;
        loop {
            let Some(base) = current(&self.metadata()) else {
                return Ok(Err(TopicError::Unknown));
            };
            let changed = change(&base)?;
            let request = self.request_id();
            let left = deadline.saturating_duration_since(clock.now());
            match self
                .submit(record(request, changed, base), request, left)
                .await
            {
                Err(SubmitError::Failed(MetadataError::ConfigsChanged)) => {}
                other => return Ok(other.map(|_| ()).map_err(topic_error)),
            }
        }
    }

    /// A block of producer ids no other broker of the cluster hands out: `[start, end)`.
    pub async fn producer_ids(&self, limit: Duration) -> Result<(i64, i64), TopicError> {
        let request = self.request_id();
        let record = MetadataRecord::AllocateProducerIds { request };
        match self.submit(record, request, limit).await {
            Ok(Outcome::ProducerIds(start, end)) => Ok((start, end)),
            Ok(other) => Err(TopicError::NoController(format!(
                "unexpected outcome {other:?} for a producer id block"
            ))),
            Err(e) => Err(topic_error(e)),
        }
    }
}

impl Controller {
    /// Apply security changes through the metadata log: each change's outcome once the record
    /// is applied here.
    pub async fn alter_security(
        &self,
        changes: Vec<crate::security::SecurityChange>,
        limit: Duration,
    ) -> Result<crate::security::Outcomes, TopicError> {
        let request = self.request_id();
        let record = MetadataRecord::AlterSecurity { request, changes };
        match self.submit(record, request, limit).await {
            Ok(Outcome::Security(outcomes)) => Ok(outcomes),
            Ok(other) => Err(TopicError::NoController(format!(
                "unexpected outcome {other:?} for a security change"
            ))),
            Err(e) => Err(topic_error(e)),
        }
    }

    /// Apply client-quota alterations through the metadata log: each one's outcome once the
    /// record is applied here.
    pub async fn alter_client_quotas(
        &self,
        alterations: Vec<crate::quota::Alteration>,
        limit: Duration,
    ) -> Result<Vec<Result<(), crate::quota::Refused>>, TopicError> {
        let request = self.request_id();
        let record = MetadataRecord::AlterClientQuotas {
            request,
            alterations,
        };
        match self.submit(record, request, limit).await {
            Ok(Outcome::ClientQuotas(outcomes)) => Ok(outcomes),
            Ok(other) => Err(TopicError::NoController(format!(
                "unexpected outcome {other:?} for a client-quota change"
            ))),
            Err(e) => Err(topic_error(e)),
        }
    }

    /// Finalize feature levels through the metadata log (all or none), once the record is
    /// applied here.
    pub async fn update_features(
        &self,
        updates: Vec<crate::features::Update>,
        limit: Duration,
    ) -> Result<(), SubmitError> {
        let request = self.request_id();
        let record = MetadataRecord::UpdateFeatures { request, updates };
        match self.submit(record, request, limit).await? {
            Outcome::Done => Ok(()),
            other => Err(SubmitError::Failed(
                MetadataError::InvalidReplicaAssignment(format!(
                    "unexpected outcome {other:?} for a feature update"
                )),
            )),
        }
    }

    /// Start, replace or cancel partitions' moves (AlterPartitionReassignments): each
    /// partition's refusal, in `moves`' order, once the record is applied.
    pub async fn alter_reassignments(
        &self,
        moves: Vec<super::records::Reassignment>,
        limit: Duration,
    ) -> Result<super::moves::MoveOutcomes, SubmitError> {
        let request = self.request_id();
        let record = MetadataRecord::AlterPartitionReassignments { request, moves };
        match self.submit(record, request, limit).await? {
            Outcome::Reassignments(outcomes) => Ok(outcomes),
            other => Err(SubmitError::Failed(
                MetadataError::InvalidReplicaAssignment(format!("unexpected outcome {other:?}")),
            )),
        }
    }
}
