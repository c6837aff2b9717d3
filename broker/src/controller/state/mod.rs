//! The cluster metadata as every broker holds it: brokers, topics, their partitions' replica
//! sets and Raft groups, leaders as elected, producer id blocks. [`ClusterMetadata::apply`]
//! takes records in log order and decides from the record and the state alone — the same on
//! every replica — including what a request's outcome is (a topic that exists, a replication
//! factor larger than the live brokers), which the broker that proposed it waits for.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::records::{parse_id, MetadataRecord};
use crate::config::{Endpoint, DEFAULT_LISTENER};
use crate::replication::transport::NodeId;
use crate::replication::wire::GroupId;
use crate::security::SecurityMetadata;
use crate::storage::catalog::{check_topic_name, PARTITIONS_MAX};
use crate::topic_config::Overrides;

/// A broker as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: NodeId,
    pub host: String,
    pub port: i32,
    /// Its address on each of its listeners (the first at `host:port`).
    pub endpoints: Vec<Endpoint>,
    pub incarnation: u64,
    /// Not heard from for longer than the session timeout: left out of Metadata and of new
    /// placements until it registers again.
    pub fenced: bool,
    /// Its `broker_rack`.
    pub rack: Option<String>,
    /// Where the other brokers link with it (`None`: at its `cluster_peers` entry).
    pub inter_broker: Option<String>,
    /// The feature levels it supports.
    #[serde(default = "crate::features::supported_before_ranges")]
    pub features: Vec<crate::features::Range>,
}

impl BrokerInfo {
    /// Where clients of `listener` reach this broker (`None`: its first listener); `None`
    /// when it has no such listener (a client of that listener is not told of it, as Kafka).
    pub fn address_on(&self, listener: Option<&str>) -> Option<(String, i32)> {
        let e = match listener {
            Some(name) => self.endpoints.iter().find(|e| e.name == name)?,
            None => self.endpoints.first()?,
        };
        Some((e.host.clone(), e.port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub group: GroupId,
    /// The replicas, the preferred leader first (during a move: every broker that may hold
    /// it, the target first — [`super::moves`]).
    pub replicas: Vec<NodeId>,
    /// The voters its Raft group was made with (every replica starts from them).
    pub initial: Vec<NodeId>,
    /// A move of its replicas in progress.
    pub moving: Option<super::moves::Move>,
    /// The leader its group last reported, and in which term.
    pub leader: Option<NodeId>,
    pub leader_term: u64,
    /// The metadata log's offset after the record that made the partition.
    pub made_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: u128,
    pub overrides: Overrides,
    pub partitions: Vec<PartitionInfo>,
}

/// Why a request recorded in the log had no effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("topic already exists")]
    TopicExists,
    #[error("unknown topic")]
    UnknownTopic,
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// An incremental config change made from configs another change has replaced since.
    #[error("the topic's configs changed since the change was made")]
    ConfigsChanged,
    #[error("no reassignment of the partition is in progress")]
    NoReassignmentInProgress,
    #[error("broker {0} is not registered")]
    BrokerNotRegistered(NodeId),
    /// A broker still named by a partition's replicas (or a move's) is not unregistered.
    #[error("{0}")]
    BrokerHoldsReplicas(String),
    /// A feature update refused (Kafka's INVALID_UPDATE_VERSION).
    #[error("{0}")]
    FeatureRefused(crate::features::Refused),
}

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A block of producer ids: `[start, end)`.
    ProducerIds(i64, i64),
    /// Each security change's outcome, in the record's order.
    Security(crate::security::Outcomes),
    /// Each client-quota alteration's outcome, in the record's order.
    ClientQuotas(Vec<Result<(), crate::quota::Refused>>),
    /// Each partition's reassignment refused, or not, in the record's order.
    Reassignments(super::moves::MoveOutcomes),
    Failed(MetadataError),
}

/// Outcomes kept for proposers to find, at most (the oldest are forgotten).
const OUTCOMES_MAX: usize = 4096;
/// Producer ids handed to a broker at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// The cluster metadata (see the module doc). A snapshot of it ([`super::snapshot`]) is all of
/// it but the outcomes kept for proposers and the record being applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    /// Brokers unregistered (retired) and not registered again since: the controller quorum
    /// lets them go ([`super::membership`]).
    pub retired: BTreeSet<NodeId>,
    pub topics: BTreeMap<String, TopicInfo>,
    /// Ids of deleted topics: a broker that still holds one removes it.
    pub deleted: BTreeSet<u128>,
    /// Partition groups: their topic and index.
    pub groups: BTreeMap<GroupId, (String, i32)>,
    /// The group id the next partition gets (0 is the metadata's own).
    pub next_group: GroupId,
    /// The first producer id not handed out.
    pub next_producer_id: i64,
    /// The metadata log's offset after the record being applied (set by whoever applies).
    #[serde(skip)]
    pub applying_end: i64,
    /// Dynamic broker configs (Kafka broker keys): the cluster-wide default, and each
    /// broker's own.
    pub cluster_configs: Overrides,
    pub broker_configs: BTreeMap<NodeId, Overrides>,
    /// Users' credentials and the ACLs (shared: records that do not change it do not copy it).
    pub security: Arc<SecurityMetadata>,
    /// Client-metrics subscriptions (KIP-714), by name: each one's configs, never empty
    /// (shared as `security`).
    #[serde(default)]
    pub client_metrics: Arc<BTreeMap<String, Overrides>>,
    /// The client quotas (shared as `security`).
    #[serde(default)]
    pub client_quotas: Arc<crate::quota::ClientQuotas>,
    /// The finalized feature levels; the epoch is the metadata offset after their last change.
    #[serde(default)]
    pub features: crate::features::Finalized,
    #[serde(skip)]
    outcomes: VecDeque<(u64, Outcome)>,
}

impl ClusterMetadata {
    pub fn new() -> Self {
        ClusterMetadata {
            next_group: 1,
            ..ClusterMetadata::default()
        }
    }

    /// The outcome of request `request`, once its record was applied.
    pub fn outcome(&self, request: u64) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|(r, _)| *r == request)
            .map(|(_, o)| o)
    }

    /// Brokers that are not fenced, by id.
    pub fn live_brokers(&self) -> Vec<NodeId> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<&PartitionInfo> {
        self.topics
            .get(topic)
            .and_then(|t| t.partitions.get(usize::try_from(index).ok()?))
    }

    /// Broker `node`'s dynamic configs: its own over the cluster-wide default.
    pub fn dynamic_configs_of(&self, node: NodeId) -> crate::broker_configs::DynamicConfigs {
        crate::broker_configs::DynamicConfigs {
            node: self.broker_configs.get(&node).cloned().unwrap_or_default(),
            cluster: self.cluster_configs.clone(),
        }
    }

    /// Finalize `updates` if every registered broker supports them, all or none.
    fn update_features(&mut self, updates: &[crate::features::Update]) -> Outcome {
        let brokers: Vec<(i32, &[crate::features::Range])> = self
            .brokers
            .values()
            .map(|b| (b.id as i32, b.features.as_slice()))
            .collect();
        if let Err(e) = crate::features::check_recorded(&self.features, updates, &brokers) {
            return Outcome::Failed(MetadataError::FeatureRefused(e));
        }
        for u in updates {
            self.features.set(&u.name, u.level, self.applying_end);
        }
        Outcome::Done
    }

    /// A new cluster starts at the levels its first registered broker asks for (within its
    /// own ranges): a metadata that never held a broker, a topic or a level. A cluster formed
    /// by brokers of a version before levels, whose registrations ask for none, stays at the
    /// unrecorded levels until an operator raises them.
    fn bootstrap_features(
        &mut self,
        id: NodeId,
        levels: &BTreeMap<String, i16>,
        ranges: &[crate::features::Range],
    ) {
        let pristine = self.brokers.is_empty()
            && self.retired.is_empty()
            && self.topics.is_empty()
            && self.features == crate::features::Finalized::default();
        if !pristine {
            return;
        }
        let updates: Vec<crate::features::Update> = levels
            .iter()
            .map(|(name, &level)| crate::features::Update {
                name: name.clone(),
                level,
                upgrade: crate::features::UpgradeType::UnsafeDowngrade,
            })
            .collect();
        match crate::features::check_recorded(&self.features, &updates, &[(id as i32, ranges)]) {
            Ok(()) => {
                for u in &updates {
                    self.features.set(&u.name, u.level, self.applying_end);
                }
            }
            Err(e) => {
                tracing::warn!(broker = id, error = %e, "the new cluster's first levels are refused")
            }
        }
    }

    /// Apply one record (in log order).
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker {
                id,
                host,
                port,
                incarnation,
                listeners,
                rack,
                inter_broker,
                features,
                bootstrap,
            } => {
                if let (Some(levels), Some(ranges)) = (bootstrap, features) {
                    self.bootstrap_features(*id, levels, ranges);
                }
                let features = features
                    .clone()
                    .unwrap_or_else(crate::features::supported_before_ranges);
                if self.features.unsupported_by(&features).is_some() {
                    // It cannot run at the cluster's levels: it gets nothing, and stops when
                    // it sees so itself.
                    return;
                }
                let restarted = self
                    .brokers
                    .get(id)
                    .is_some_and(|b| b.incarnation != *incarnation);
                if restarted {
                    // A broker that starts again leads nothing until its groups elect it (and it
                    // reports them again): the leaderships recorded of its earlier run are not
                    // its. Their terms stay, so a report in the same term is taken.
                    for p in self
                        .topics
                        .values_mut()
                        .flat_map(|t| t.partitions.iter_mut())
                    {
                        if p.leader == Some(*id) {
                            p.leader = None;
                        }
                    }
                }
                self.retired.remove(id);
                self.brokers.insert(
                    *id,
                    BrokerInfo {
                        id: *id,
                        host: host.clone(),
                        port: *port,
                        endpoints: if listeners.is_empty() {
                            vec![Endpoint {
                                name: DEFAULT_LISTENER.into(),
                                host: host.clone(),
                                port: *port,
                            }]
                        } else {
                            listeners.clone()
                        },
                        incarnation: *incarnation,
                        fenced: false,
                        rack: rack.clone(),
                        inter_broker: inter_broker.clone(),
                        features,
                    },
                );
            }
            MetadataRecord::UpdateFeatures { request, updates } => {
                // Proposed again after it landed: what it did stands.
                if self.outcome(*request).is_none() {
                    let outcome = self.update_features(updates);
                    self.record(*request, outcome);
                }
            }
            MetadataRecord::UnregisterBroker { request, id } => {
                let outcome = match self.unregister_broker(*id) {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Failed(e),
                };
                self.record(*request, outcome);
            }
            MetadataRecord::FenceBroker { id, incarnation } => {
                if let Some(b) = self.brokers.get_mut(id) {
                    if b.incarnation == *incarnation {
                        b.fenced = true;
                    }
                }
            }
            MetadataRecord::CreateTopic {
                request,
                name,
                id,
                partitions,
                replication_factor,
                assignments,
                overrides,
            } => {
                let outcome = self.create_topic(
                    name,
                    id,
                    *partitions,
                    *replication_factor,
                    assignments.as_deref(),
                    overrides,
                );
                self.record(*request, outcome);
            }
            MetadataRecord::DeleteTopic { request, name } => {
                let outcome = match self.topics.remove(name) {
                    None => Outcome::Failed(MetadataError::UnknownTopic),
                    Some(t) => {
                        for p in &t.partitions {
                            self.groups.remove(&p.group);
                        }
                        self.deleted.insert(t.id);
                        Outcome::Done
                    }
                };
                self.record(*request, outcome);
            }
            MetadataRecord::CreatePartitions {
                request,
                name,
                count,
                assignments,
            } => {
                let outcome = self.create_partitions(name, *count, assignments.as_deref());
                self.record(*request, outcome);
            }
            MetadataRecord::AlterTopicConfig {
                request,
                name,
                overrides,
                base,
            } => {
                let outcome = match self.topics.get_mut(name) {
                    None => Outcome::Failed(MetadataError::UnknownTopic),
                    Some(t) if base.as_ref().is_some_and(|b| *b != t.overrides) => {
                        Outcome::Failed(MetadataError::ConfigsChanged)
                    }
                    Some(t) => {
                        t.overrides = overrides.clone();
                        Outcome::Done
                    }
                };
                self.record(*request, outcome);
            }
            MetadataRecord::AlterBrokerConfigs {
                request,
                node,
                configs,
                base,
            } => {
                let current = match node {
                    None => &mut self.cluster_configs,
                    Some(n) => self.broker_configs.entry(*n).or_default(),
                };
                let outcome = if base.as_ref().is_some_and(|b| b != current) {
                    Outcome::Failed(MetadataError::ConfigsChanged)
                } else {
                    *current = configs.clone();
                    Outcome::Done
                };
                self.record(*request, outcome);
            }
            MetadataRecord::AlterClientMetrics {
                request,
                name,
                configs,
                base,
            } => {
                let current = self.client_metrics.get(name).cloned().unwrap_or_default();
                let outcome = if base.as_ref().is_some_and(|b| *b != current) {
                    Outcome::Failed(MetadataError::ConfigsChanged)
                } else {
                    let all = Arc::make_mut(&mut self.client_metrics);
                    if configs.is_empty() {
                        all.remove(name);
                    } else {
                        all.insert(name.clone(), configs.clone());
                    }
                    Outcome::Done
                };
                self.record(*request, outcome);
            }
            MetadataRecord::Leaders { leaders } => {
                for &(group, leader, term) in leaders {
                    let Some((topic, index)) = self.groups.get(&group).cloned() else {
                        continue;
                    };
                    let Some(p) = self
                        .topics
                        .get_mut(&topic)
                        .and_then(|t| t.partitions.get_mut(index as usize))
                    else {
                        continue;
                    };
                    if term >= p.leader_term && p.replicas.contains(&leader) {
                        p.leader = Some(leader);
                        p.leader_term = term;
                    }
                }
            }
            MetadataRecord::AllocateProducerIds { request } => {
                let start = self.next_producer_id;
                self.next_producer_id += PRODUCER_ID_BLOCK;
                self.record(*request, Outcome::ProducerIds(start, self.next_producer_id));
            }
            MetadataRecord::AlterSecurity { request, changes } => {
                // Proposed again after it landed: what it did stands (a credential set again
                // would undo a later change).
                if self.outcome(*request).is_some() {
                    return;
                }
                let security = Arc::make_mut(&mut self.security);
                let outcomes = changes.iter().map(|c| security.apply(c)).collect();
                self.record(*request, Outcome::Security(outcomes));
            }
            MetadataRecord::AlterClientQuotas {
                request,
                alterations,
            } => {
                // Proposed again after it landed: what it did stands.
                if self.outcome(*request).is_some() {
                    return;
                }
                let quotas = Arc::make_mut(&mut self.client_quotas);
                let outcomes = alterations.iter().map(|a| quotas.apply(a)).collect();
                self.record(*request, Outcome::ClientQuotas(outcomes));
            }
            MetadataRecord::AlterPartitionReassignments { request, moves } => {
                // Proposed again after it landed: what it did stands.
                if self.outcome(*request).is_none() {
                    let outcome = self.alter_reassignments(moves);
                    self.record(*request, outcome);
                }
            }
            MetadataRecord::ReassignmentDone { group, epoch } => {
                self.reassignment_done(*group, *epoch);
            }
        }
    }

    /// Keep a request's first outcome (a request proposed again after its first landed finds
    /// what the first did).
    fn record(&mut self, request: u64, outcome: Outcome) {
        if self.outcome(request).is_some() {
            return;
        }
        if self.outcomes.len() == OUTCOMES_MAX {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back((request, outcome));
    }

    fn create_topic(
        &mut self,
        name: &str,
        id: &str,
        partitions: i32,
        replication_factor: i32,
        assignments: Option<&[Vec<NodeId>]>,
        overrides: &Overrides,
    ) -> Outcome {
        if self.topics.contains_key(name) {
            return Outcome::Failed(MetadataError::TopicExists);
        }
        if let Err(why) = check_topic_name(name) {
            return Outcome::Failed(MetadataError::InvalidTopic(why));
        }
        let key = name.replace('.', "_");
        if let Some(other) = self.topics.keys().find(|t| t.replace('.', "_") == key) {
            return Outcome::Failed(MetadataError::InvalidTopic(format!(
                "topic {name:?} collides with existing topic {other:?} ('.' and '_' are the same in metric names)"
            )));
        }
        let Some(id) = parse_id(id) else {
            return Outcome::Failed(MetadataError::InvalidTopic(format!("bad topic id {id:?}")));
        };
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Outcome::Failed(MetadataError::InvalidPartitions(format!(
                "{partitions} partitions: a topic has from 1 to {PARTITIONS_MAX}"
            )));
        }
        let placed = match self.place(0, partitions, replication_factor, assignments) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e),
        };
        let mut list = Vec::with_capacity(placed.len());
        for (index, replicas) in placed.into_iter().enumerate() {
            let group = self.next_group;
            self.next_group += 1;
            self.groups.insert(group, (name.to_string(), index as i32));
            list.push(PartitionInfo {
                group,
                initial: replicas.clone(),
                moving: None,
                replicas,
                leader: None,
                leader_term: 0,
                made_at: self.applying_end,
            });
        }
        self.topics.insert(
            name.to_string(),
            TopicInfo {
                name: name.to_string(),
                id,
                overrides: overrides.clone(),
                partitions: list,
            },
        );
        Outcome::Done
    }

    fn create_partitions(
        &mut self,
        name: &str,
        count: i32,
        assignments: Option<&[Vec<NodeId>]>,
    ) -> Outcome {
        let Some(topic) = self.topics.get(name) else {
            return Outcome::Failed(MetadataError::UnknownTopic);
        };
        let now = topic.partitions.len() as i32;
        if count <= now || count > PARTITIONS_MAX {
            return Outcome::Failed(MetadataError::InvalidPartitions(format!(
                "topic has {now} partitions; cannot have {count}"
            )));
        }
        let rf = topic.partitions[0].replicas.len() as i32;
        let placed = match self.place(now, count - now, rf, assignments) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e),
        };
        let mut added = Vec::new();
        for (i, replicas) in placed.into_iter().enumerate() {
            let group = self.next_group;
            self.next_group += 1;
            self.groups
                .insert(group, (name.to_string(), now + i as i32));
            added.push(PartitionInfo {
                group,
                initial: replicas.clone(),
                moving: None,
                replicas,
                leader: None,
                leader_term: 0,
                made_at: self.applying_end,
            });
        }
        if let Some(t) = self.topics.get_mut(name) {
            t.partitions.extend(added);
        }
        Outcome::Done
    }
}

#[cfg(test)]
mod tests;
