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
}

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A block of producer ids: `[start, end)`.
    ProducerIds(i64, i64),
    /// Each security change's outcome, in the record's order.
    Security(crate::security::Outcomes),
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
            } => {
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
                    },
                );
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
mod tests {
    use super::*;
    use crate::controller::records::id_text;

    fn registered(n: u64) -> ClusterMetadata {
        let mut m = ClusterMetadata::new();
        for id in 1..=n {
            m.apply(&MetadataRecord::RegisterBroker {
                id,
                host: "127.0.0.1".into(),
                port: 9090 + id as i32,
                incarnation: id * 10,
                listeners: vec![],
                rack: None,
                inter_broker: None,
            });
        }
        m
    }

    fn create(
        m: &mut ClusterMetadata,
        request: u64,
        name: &str,
        partitions: i32,
        rf: i32,
    ) -> Outcome {
        m.apply(&MetadataRecord::CreateTopic {
            request,
            name: name.into(),
            id: id_text(request as u128 + 1000),
            partitions,
            replication_factor: rf,
            assignments: None,
            overrides: Default::default(),
        });
        m.outcome(request).cloned().expect("an outcome")
    }

    #[test]
    fn topics_are_placed_on_live_brokers_with_preferred_leaders_taking_turns() {
        let mut m = registered(3);
        assert_eq!(create(&mut m, 1, "a", 3, 3), Outcome::Done);
        let t = &m.topics["a"];
        let leaders: BTreeSet<_> = t.partitions.iter().map(|p| p.replicas[0]).collect();
        assert_eq!(leaders.len(), 3, "{:?}", t.partitions);
        for p in &t.partitions {
            let distinct: BTreeSet<_> = p.replicas.iter().collect();
            assert_eq!(distinct.len(), 3);
        }
        let groups: Vec<_> = t.partitions.iter().map(|p| p.group).collect();
        assert_eq!(groups, vec![1, 2, 3]);
        assert_eq!(
            create(&mut m, 2, "a", 1, 1),
            Outcome::Failed(MetadataError::TopicExists)
        );
        assert!(matches!(
            create(&mut m, 3, "b", 1, 4),
            Outcome::Failed(MetadataError::InvalidReplicationFactor(_))
        ));
        assert!(matches!(create(&mut m, 4, "a_", 1, 1), Outcome::Done));
        assert!(matches!(
            create(&mut m, 5, "a.", 1, 1),
            Outcome::Failed(MetadataError::InvalidTopic(_))
        ));
        // A fenced broker takes no new replicas.
        m.apply(&MetadataRecord::FenceBroker {
            id: 2,
            incarnation: 20,
        });
        assert!(matches!(
            create(&mut m, 6, "c", 1, 3),
            Outcome::Failed(MetadataError::InvalidReplicationFactor(_))
        ));
        assert_eq!(create(&mut m, 7, "c", 4, 2), Outcome::Done);
        assert!(m.topics["c"]
            .partitions
            .iter()
            .all(|p| !p.replicas.contains(&2)));
    }

    /// Two incremental config changes made from the same configs (through two brokers whose
    /// replicas had not applied each other's): the second is refused, not applied over the
    /// first, and made again from the newer configs it applies.
    #[test]
    fn an_incremental_config_change_made_from_replaced_configs_is_refused() {
        let mut m = registered(3);
        create(&mut m, 1, "t", 1, 3);
        let base = m.topics["t"].overrides.clone();
        let with = |k: &str, v: &str, from: &Overrides| {
            let mut o = from.clone();
            o.insert(k.to_string(), v.to_string());
            o
        };
        let alter = |m: &mut ClusterMetadata, request, overrides, base| {
            m.apply(&MetadataRecord::AlterTopicConfig {
                request,
                name: "t".into(),
                overrides,
                base,
            });
            m.outcome(request).cloned()
        };
        let first = with("retention.ms", "3600000", &base);
        assert_eq!(
            alter(&mut m, 2, first.clone(), Some(base.clone())),
            Some(Outcome::Done)
        );
        let second = with("min.insync.replicas", "2", &base);
        assert_eq!(
            alter(&mut m, 3, second, Some(base.clone())),
            Some(Outcome::Failed(MetadataError::ConfigsChanged))
        );
        assert_eq!(m.topics["t"].overrides, first, "the first change stands");
        let again = with("min.insync.replicas", "2", &first);
        assert_eq!(
            alter(&mut m, 4, again.clone(), Some(first)),
            Some(Outcome::Done)
        );
        assert_eq!(m.topics["t"].overrides.len(), 2);
        // A whole replacement (AlterConfigs) has no base: it replaces whatever is there.
        assert_eq!(alter(&mut m, 5, base.clone(), None), Some(Outcome::Done));
        assert_eq!(m.topics["t"].overrides, base);
    }

    /// Dynamic broker configs live in the metadata: the cluster-wide default for every
    /// broker, a broker's own for it alone; an incremental change from replaced configs is
    /// refused as a topic's is.
    #[test]
    fn broker_configs_are_the_cluster_defaults_under_each_brokers_own() {
        let mut m = registered(3);
        let set = |k: &str, v: &str| Overrides::from([(k.to_string(), v.to_string())]);
        m.apply(&MetadataRecord::AlterBrokerConfigs {
            request: 1,
            node: None,
            configs: set("log.retention.ms", "3600000"),
            base: Some(Overrides::new()),
        });
        m.apply(&MetadataRecord::AlterBrokerConfigs {
            request: 2,
            node: Some(2),
            configs: set("log.retention.ms", "60000"),
            base: None,
        });
        assert_eq!(m.outcome(2), Some(&Outcome::Done));
        for n in [1, 3] {
            let d = m.dynamic_configs_of(n);
            assert_eq!((d.cluster.len(), d.node.len()), (1, 0), "broker {n}");
        }
        assert_eq!(m.dynamic_configs_of(2).node["log.retention.ms"], "60000");
        m.apply(&MetadataRecord::AlterBrokerConfigs {
            request: 3,
            node: None,
            configs: set("log.retention.bytes", "1000"),
            base: Some(Overrides::new()),
        });
        assert_eq!(
            m.outcome(3),
            Some(&Outcome::Failed(MetadataError::ConfigsChanged))
        );
        assert_eq!(m.cluster_configs, set("log.retention.ms", "3600000"));
    }

    #[test]
    fn a_broker_that_starts_again_leads_nothing_until_it_reports_again() {
        let mut m = registered(3);
        create(&mut m, 1, "t", 2, 3);
        let p0 = m.topics["t"].partitions[0].clone();
        let p1 = m.topics["t"].partitions[1].clone();
        m.apply(&MetadataRecord::Leaders {
            leaders: vec![(p0.group, 2, 4), (p1.group, 3, 4)],
        });
        // The same incarnation registering again (its fence lifted) keeps what it leads.
        m.apply(&MetadataRecord::RegisterBroker {
            id: 2,
            host: "127.0.0.1".into(),
            port: 9092,
            incarnation: 20,
            listeners: vec![],
            rack: None,
            inter_broker: None,
        });
        assert_eq!(m.partition("t", 0).unwrap().leader, Some(2));
        // A new start of broker 2 (a restart, an emptied directory) leads nothing yet.
        m.apply(&MetadataRecord::RegisterBroker {
            id: 2,
            host: "127.0.0.1".into(),
            port: 9092,
            incarnation: 21,
            listeners: vec![],
            rack: None,
            inter_broker: None,
        });
        assert_eq!(m.partition("t", 0).unwrap().leader, None);
        assert_eq!(m.partition("t", 0).unwrap().leader_term, 4);
        assert_eq!(m.partition("t", 1).unwrap().leader, Some(3));
        // Its report in the same term is taken again.
        m.apply(&MetadataRecord::Leaders {
            leaders: vec![(p0.group, 2, 4)],
        });
        assert_eq!(m.partition("t", 0).unwrap().leader, Some(2));
    }

    #[test]
    fn outcomes_leaders_deletions_and_growth() {
        let mut m = registered(3);
        create(&mut m, 1, "t", 2, 2);
        // A request proposed twice keeps its first outcome.
        create(&mut m, 1, "t", 2, 2);
        assert_eq!(m.outcome(1), Some(&Outcome::Done));
        let p0 = m.topics["t"].partitions[0].clone();
        let other = *p0.replicas.last().unwrap();
        m.apply(&MetadataRecord::Leaders {
            leaders: vec![(p0.group, other, 3)],
        });
        assert_eq!(m.partition("t", 0).unwrap().leader, Some(other));
        // An older term, or a node that is not a replica, does not move it.
        m.apply(&MetadataRecord::Leaders {
            leaders: vec![(p0.group, p0.replicas[0], 2)],
        });
        assert_eq!(m.partition("t", 0).unwrap().leader, Some(other));
        m.apply(&MetadataRecord::CreatePartitions {
            request: 2,
            name: "t".into(),
            count: 4,
            assignments: None,
        });
        assert_eq!(m.outcome(2), Some(&Outcome::Done));
        assert_eq!(m.topics["t"].partitions.len(), 4);
        assert!(m.topics["t"]
            .partitions
            .iter()
            .all(|p| p.replicas.len() == 2));
        let id = m.topics["t"].id;
        m.apply(&MetadataRecord::DeleteTopic {
            request: 3,
            name: "t".into(),
        });
        assert!(m.topics.is_empty() && m.groups.is_empty());
        assert!(m.deleted.contains(&id));
        m.apply(&MetadataRecord::AllocateProducerIds { request: 4 });
        m.apply(&MetadataRecord::AllocateProducerIds { request: 5 });
        assert_eq!(m.outcome(4), Some(&Outcome::ProducerIds(0, 1000)));
        assert_eq!(m.outcome(5), Some(&Outcome::ProducerIds(1000, 2000)));
    }

    #[test]
    fn a_security_change_proposed_again_does_not_undo_a_later_one() {
        use crate::security::scram::{Credential, Mechanism};
        use crate::security::SecurityChange;
        let set = |request, pw: &str| MetadataRecord::AlterSecurity {
            request,
            changes: vec![SecurityChange::SetCredential {
                user: "u".into(),
                credential: Credential::derive(Mechanism::Sha256, pw.as_bytes(), vec![1; 16], 4096)
                    .unwrap(),
            }],
        };
        let mut m = ClusterMetadata::new();
        m.apply(&set(1, "one"));
        m.apply(&set(2, "two"));
        m.apply(&set(1, "one"));
        let c = m.security.credential("u", Mechanism::Sha256).unwrap();
        assert!(c.verify_password(b"two"));
        assert_eq!(
            m.outcome(1),
            Some(&Outcome::Security(vec![Ok(crate::security::Applied::Done)]))
        );
    }
}
