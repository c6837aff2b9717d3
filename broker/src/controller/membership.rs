//! Brokers joining and leaving the cluster at run time (KRaft's observers).
//!
//! The controller's quorum is fixed: the brokers of `cluster_peers` vote on the metadata. Any
//! other broker is an observer: it starts with the quorum's addresses only and
//! - **joins** by asking a voter to propose its registration (a transport `JOIN`: raft-rs drops
//!   a proposal from a node that knows no leader, and a new broker knows none), again until its
//!   own replica of the metadata shows it registered;
//! - is then made a **learner** of the metadata's group by the active controller, and receives
//!   the metadata log from its start, as a voter that lost its disk would;
//! - is **linked** with by every broker at the inter-broker address it registered (each keeps
//!   its transport's peers as its metadata names them);
//! - takes new partitions at once (placement counts every live broker) and existing ones only
//!   when a reassignment moves them to it.
//!
//! A broker leaves by having its replicas moved away, then **unregistering** (UnregisterBroker,
//! Kafka's API 64): refused while a partition or a move names it, or while it is a voter; it
//! works while the broker is down. Its learner is removed from the metadata's group and every
//! broker drops its link. A broker that is still running registers again, as in Kafka: stop it
//! first.
//!
//! Invariants: only the active controller changes the metadata group's membership, one change
//! at a time, and only learners (the voters are the configuration's); a registration arriving by
//! `JOIN` is proposed only if it is one `RegisterBroker` of the node that sent it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{ConfChangeTransition, ConfChangeType, ConfChangeV2};

use super::reassign::change;
use super::records::{self, MetadataRecord};
use super::state::{ClusterMetadata, MetadataError};
use super::{Controller, SubmitError, METADATA_GROUP};
use crate::replication::node::{Members, Progress};
use crate::replication::transport::NodeId;

/// The controller quorum as DescribeQuorum tells it ([`Controller::quorum_state`]).
#[derive(Debug, Clone)]
pub struct QuorumState {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub high_watermark: i64,
    pub voters: Vec<(NodeId, Option<u64>)>,
    pub observers: Vec<(NodeId, Option<u64>)>,
}

/// How often the active controller looks at the metadata group's learners.
const PASS_EVERY: Duration = Duration::from_millis(200);

impl ClusterMetadata {
    /// Forget broker `id`: refused while a partition's replicas (or a move's) name it.
    pub(super) fn unregister_broker(&mut self, id: NodeId) -> Result<(), MetadataError> {
        if !self.brokers.contains_key(&id) {
            return Err(MetadataError::BrokerNotRegistered(id));
        }
        let holding: Vec<String> = self
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().enumerate().map(move |(i, p)| (t, i, p)))
            .filter(|(_, _, p)| {
                p.replicas.contains(&id)
                    || p.moving
                        .as_ref()
                        .is_some_and(|m| m.original.contains(&id) || m.target.contains(&id))
            })
            .map(|(t, i, _)| format!("{}-{i}", t.name))
            .take(5)
            .collect();
        if !holding.is_empty() {
            return Err(MetadataError::BrokerHoldsReplicas(format!(
                "broker {id} still holds replicas (of {}): move them away first (AlterPartitionReassignments)",
                holding.join(", ")
            )));
        }
        self.brokers.remove(&id);
        self.broker_configs.remove(&id);
        self.retired.insert(id);
        Ok(())
    }
}

/// Where to reach each broker this one links with: every configured voter that has not
/// retired, every member of the metadata's group (`members`) and every broker the metadata
/// names — at the address it registered, else at its entry in the configured voters.
pub fn peer_addresses(
    configured: &BTreeMap<NodeId, SocketAddr>,
    members: &[NodeId],
    md: &ClusterMetadata,
) -> BTreeMap<NodeId, SocketAddr> {
    let registered = |id: NodeId| {
        md.brokers
            .get(&id)
            .and_then(|b| b.inter_broker.as_deref())
            .and_then(|a| a.parse().ok())
    };
    let configured_ids = configured.keys().filter(|id| !md.retired.contains(id));
    members
        .iter()
        .chain(configured_ids)
        .copied()
        .chain(md.brokers.keys().copied())
        .filter_map(|id| Some((id, registered(id).or_else(|| configured.get(&id).copied())?)))
        .collect()
}

impl Controller {
    /// What DescribeQuorum tells: the metadata group's leader and term, its high watermark,
    /// its voters and its observers (learners), each with the last Raft index known to match
    /// the leader's log when this broker leads (else `None`).
    pub async fn quorum_state(&self) -> QuorumState {
        let members = self.quorum();
        let status = self
            .replication
            .group(METADATA_GROUP)
            .map(|g| g.status())
            .unwrap_or_default();
        let progress = self
            .replication
            .progress(METADATA_GROUP)
            .await
            .unwrap_or_default();
        let matched = |id: NodeId| {
            if status.serving && id == self.node_id {
                return Some(progress.committed);
            }
            progress
                .matched
                .iter()
                .find(|(r, _, _)| *r == id)
                .map(|&(_, m, _)| m)
        };
        QuorumState {
            leader: status.leader,
            term: status.term,
            high_watermark: self.partition.high_watermark(),
            voters: members
                .all_voters()
                .into_iter()
                .map(|id| (id, matched(id)))
                .collect(),
            observers: members
                .learners
                .iter()
                .chain(&members.learners_next)
                .map(|&id| (id, matched(id)))
                .collect(),
        }
    }

    /// The metadata group's membership as this broker last applied it (at first, the
    /// configured voters).
    pub fn quorum(&self) -> Members {
        self.replication
            .group(METADATA_GROUP)
            .map(|g| g.members())
            .unwrap_or_default()
    }

    /// Unregister broker `id` (UnregisterBroker): refused for a broker that still holds
    /// replicas, and for a voter when fewer brokers than the quorum's size would be left (a
    /// voter leaving is replaced by another broker).
    pub async fn unregister_broker(&self, id: NodeId, limit: Duration) -> Result<(), SubmitError> {
        let others = self.metadata().brokers.keys().filter(|&&b| b != id).count();
        if self.quorum().all_voters().contains(&id) && others < self.voters.len() {
            return Err(SubmitError::Failed(MetadataError::BrokerHoldsReplicas(format!(
                "broker {id} is a voter of the controller quorum, and only {others} other brokers are registered: add a broker first (the quorum keeps {} voters)",
                self.voters.len()
            ))));
        }
        let request = self.request_id();
        let record = MetadataRecord::UnregisterBroker { request, id };
        self.submit(record, request, limit).await.map(|_| ())
    }

    /// Keep the transport's peers as the metadata names them.
    pub(super) async fn peers_loop(self: Arc<Self>) {
        let mut changes = self.changes();
        let mut groups = self.replication.changes();
        loop {
            let members = self.quorum().replicas();
            let peers = peer_addresses(&self.voters, &members, &self.metadata());
            self.transport.set_peers(peers);
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                r = groups.changed() => if r.is_err() { return },
            }
        }
    }

    /// Whether this broker must ask another to propose its registration: it is not a member
    /// of the metadata's group (a broker that never joined, or was unregistered), or knows no
    /// leader of it.
    pub(super) fn must_join(&self) -> bool {
        self.leader().is_none() && !self.quorum().is_replica(self.node_id)
    }

    /// Ask a member (of `cluster_join`, else a configured voter) to propose `record` (this
    /// broker's registration): a broker that knows no leader of the metadata's group cannot
    /// propose through Raft. They are asked in turn, one per call.
    pub(super) async fn join_through(&self, record: &MetadataRecord, turn: usize) {
        let own = self.voters.get(&self.node_id);
        let members: Vec<SocketAddr> = self
            .join_addresses
            .iter()
            .filter(|a| Some(*a) != own)
            .copied()
            .collect();
        if members.is_empty() {
            return;
        }
        let address = members[turn % members.len()];
        let batch = record.encode(self.env.clock.wall_ms());
        match self.transport.join(address, batch).await {
            Ok(()) => tracing::info!(%address, "asked to join the cluster"),
            Err(why) => tracing::info!(%address, %why, "request to join not taken; asking again"),
        }
    }

    /// Serve the requests to join that reach this broker: propose each registration (only a
    /// `RegisterBroker` of the node that sent it) through the metadata's leader.
    pub(super) async fn join_serve_loop(self: Arc<Self>) {
        let Some(mut joins) = self.transport.take_joins() else {
            return;
        };
        while let Some(join) = joins.recv().await {
            let records: Vec<MetadataRecord> = records::decode_batches(join.registration.clone())
                .into_iter()
                .map(|(_, r)| r)
                .collect();
            let outcome = match records.as_slice() {
                [MetadataRecord::RegisterBroker { id, .. }] if *id == join.from => self
                    .replication
                    .propose_anywhere(METADATA_GROUP, vec![join.registration])
                    .await
                    .map_err(|e| format!("not proposed ({e}); ask again")),
                _ => Err(format!(
                    "a request to join must carry node {}'s registration and nothing else",
                    join.from
                )),
            };
            if outcome.is_ok() {
                crate::coverage::reached(crate::coverage::Event::BrokerJoined);
                tracing::info!(
                    node = join.from,
                    "proposed the registration of a joining broker"
                );
            }
            let _ = join.reply.send(outcome);
        }
    }

    /// On the active controller: keep the metadata group's membership as the registrations
    /// say ([`quorum_step`]), one change at a time.
    pub(super) async fn quorum_loop(self: Arc<Self>) {
        let clock = self.env.clock.clone();
        let mut changes = self.changes();
        loop {
            let view = self.replication.group(METADATA_GROUP);
            if let Some(view) = view.filter(|v| v.status().serving) {
                let md = self.metadata();
                let registered: Vec<NodeId> = md.brokers.keys().copied().collect();
                let retired: Vec<NodeId> = md.retired.iter().copied().collect();
                if let Some(progress) = self.replication.progress(METADATA_GROUP).await {
                    let step = quorum_step(
                        &view.members(),
                        &progress,
                        &registered,
                        &retired,
                        self.voters.len(),
                    );
                    if let Some(cc) = step {
                        let replaces = cc.changes.iter().any(|c| {
                            c.get_change_type() == ConfChangeType::RemoveNode
                                && view.members().voters.contains(&c.node_id)
                        });
                        if replaces {
                            crate::coverage::reached(crate::coverage::Event::RetiredVoterReplaced);
                        }
                        tracing::info!(change = ?cc, "changing the controller quorum's members");
                        if let Err(e) = self.replication.change_members(METADATA_GROUP, cc).await {
                            tracing::debug!(error = %e, "quorum change not proposed; tried again");
                        }
                    }
                }
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = clock.sleep(PASS_EVERY) => {}
            }
        }
    }
}

/// The next change of the metadata group's membership `m` (led by the caller, its replicas at
/// `progress`) toward what the `registered` and `retired` brokers call for, keeping `size`
/// voters:
/// 1. a joint configuration is left;
/// 2. a registered broker that is not a replica becomes a learner (an observer);
/// 3. a retired voter is replaced by caught-up registered learners — the lowest ids first,
///    waiting while one is still catching up — in one joint change; the voters grow back to
///    `size` the same way once a voter is missing;
/// 4. a retired learner is removed.
///
/// A voter that has not registered (yet: a cluster being formed) is kept: only an
/// unregistration lets a voter go.
///
/// `None`: nothing to change now.
pub fn quorum_step(
    m: &Members,
    progress: &Progress,
    registered: &[NodeId],
    retired: &[NodeId],
    size: usize,
) -> Option<ConfChangeV2> {
    use ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
    if m.joint() {
        return Some(ConfChangeV2::default());
    }
    if let Some(&missing) = registered.iter().find(|&&id| !m.is_replica(id)) {
        return Some(change(
            ConfChangeTransition::Auto,
            &[(AddLearnerNode, missing)],
        ));
    }
    let kept: Vec<NodeId> = m
        .voters
        .iter()
        .copied()
        .filter(|id| !retired.contains(id))
        .collect();
    let candidates: Vec<NodeId> = m
        .learners
        .iter()
        .copied()
        .filter(|id| registered.contains(id))
        .collect();
    let wanted = size.saturating_sub(kept.len());
    let ready: Vec<NodeId> = candidates
        .iter()
        .copied()
        .filter(|&id| progress.caught_up(id))
        .take(wanted)
        .collect();
    // A replacement still catching up is waited for rather than the quorum shrunk meanwhile.
    let waiting = ready.len() < wanted.min(candidates.len());
    let leaving: Vec<NodeId> = m
        .voters
        .iter()
        .copied()
        .filter(|id| retired.contains(id))
        .collect();
    let changes = !ready.is_empty() || !leaving.is_empty();
    if !waiting && changes && !kept.is_empty() {
        let steps: Vec<(ConfChangeType, NodeId)> = ready
            .iter()
            .map(|&id| (AddNode, id))
            .chain(leaving.iter().map(|&id| (RemoveNode, id)))
            .collect();
        return Some(change(ConfChangeTransition::Explicit, &steps));
    }
    let gone = m.learners.iter().find(|id| retired.contains(id))?;
    Some(change(ConfChangeTransition::Auto, &[(RemoveNode, *gone)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::reassign::tests::{members, progress};
    use crate::controller::records::id_text;
    use crate::controller::state::Outcome;

    fn kinds(cc: Option<ConfChangeV2>) -> Vec<(ConfChangeType, u64)> {
        cc.expect("a change")
            .changes
            .iter()
            .map(|c| (c.get_change_type(), c.node_id))
            .collect()
    }

    #[test]
    fn registered_brokers_become_observers_and_a_retired_voter_is_replaced_once_one_caught_up() {
        use ConfChangeType::*;
        let all = progress(&[1, 2, 3, 4, 5], &[]);
        // A cluster being formed: voter 3 has not registered yet; nothing to change.
        assert_eq!(
            quorum_step(&members(&[1, 2, 3], &[], &[]), &all, &[1, 2], &[], 3),
            None
        );
        // Broker 4 registers: an observer.
        assert_eq!(
            kinds(quorum_step(
                &members(&[1, 2, 3], &[], &[]),
                &all,
                &[1, 2, 3, 4],
                &[],
                3
            )),
            vec![(AddLearnerNode, 4)]
        );
        // Voter 1 retires while observer 4 is still catching up: wait for it.
        let m = members(&[1, 2, 3], &[], &[4]);
        let behind = progress(&[2, 3], &[4]);
        assert_eq!(quorum_step(&m, &behind, &[2, 3, 4], &[1], 3), None);
        // Caught up: one joint change swaps them, then the joint configuration is left.
        assert_eq!(
            kinds(quorum_step(&m, &all, &[2, 3, 4], &[1], 3)),
            vec![(AddNode, 4), (RemoveNode, 1)]
        );
        let joint = members(&[2, 3, 4], &[1, 2, 3], &[]);
        assert_eq!(
            kinds(quorum_step(&joint, &all, &[2, 3, 4], &[1], 3)),
            vec![]
        );
        // No observer to take its place: the quorum shrinks rather than keep a retired voter.
        assert_eq!(
            kinds(quorum_step(
                &members(&[2, 3, 4], &[], &[]),
                &all,
                &[3, 4],
                &[2],
                3
            )),
            vec![(RemoveNode, 2)]
        );
        // A retired observer is removed; a broker registering again is an observer again.
        assert_eq!(
            kinds(quorum_step(
                &members(&[2, 3, 4], &[], &[5]),
                &all,
                &[2, 3, 4],
                &[5],
                3
            )),
            vec![(RemoveNode, 5)]
        );
        // The quorum grows back to its size with a caught-up observer.
        assert_eq!(
            kinds(quorum_step(
                &members(&[3, 4], &[], &[5]),
                &all,
                &[3, 4, 5],
                &[2],
                3
            )),
            vec![(AddNode, 5)]
        );
    }

    fn cluster() -> ClusterMetadata {
        let mut m = ClusterMetadata::new();
        for id in 1..=4 {
            m.apply(&MetadataRecord::RegisterBroker {
                id,
                host: "h".into(),
                port: 9000 + id as i32,
                incarnation: 1,
                listeners: vec![],
                rack: None,
                inter_broker: (id == 4).then(|| "10.0.0.4:9093".into()),
                features: None,
                bootstrap: None,
            });
        }
        m.apply(&MetadataRecord::CreateTopic {
            request: 1,
            name: "t".into(),
            id: id_text(7),
            partitions: 1,
            replication_factor: 3,
            assignments: Some(vec![vec![1, 2, 3]]),
            overrides: Default::default(),
        });
        m
    }

    #[test]
    fn a_broker_that_holds_replicas_is_not_unregistered_and_one_that_holds_none_is() {
        let mut m = cluster();
        let unregister = |m: &mut ClusterMetadata, request, id| {
            m.apply(&MetadataRecord::UnregisterBroker { request, id });
            m.outcome(request).cloned()
        };
        assert!(matches!(
            unregister(&mut m, 10, 1),
            Some(Outcome::Failed(MetadataError::BrokerHoldsReplicas(_)))
        ));
        assert!(m.brokers.contains_key(&1));
        assert_eq!(
            unregister(&mut m, 11, 9),
            Some(Outcome::Failed(MetadataError::BrokerNotRegistered(9)))
        );
        assert_eq!(unregister(&mut m, 12, 4), Some(Outcome::Done));
        assert!(!m.brokers.contains_key(&4));
        assert!(m.retired.contains(&4));
        // Registered again: no longer retired.
        m.apply(&MetadataRecord::RegisterBroker {
            id: 4,
            host: "h".into(),
            port: 9004,
            incarnation: 2,
            listeners: vec![],
            rack: None,
            inter_broker: Some("10.0.0.4:9093".into()),
            features: None,
            bootstrap: None,
        });
        assert!(!m.retired.contains(&4));
    }

    #[test]
    fn peers_are_the_voters_configured_the_quorum_and_the_registered_brokers_less_the_retired() {
        let configured: BTreeMap<NodeId, SocketAddr> = [
            (1, "10.0.0.1:9093".parse().unwrap()),
            (2, "10.0.0.2:9093".parse().unwrap()),
            (3, "10.0.0.3:9093".parse().unwrap()),
        ]
        .into();
        let mut m = cluster();
        let ids = |p: BTreeMap<NodeId, SocketAddr>| p.into_keys().collect::<Vec<_>>();
        assert_eq!(
            ids(peer_addresses(&configured, &[1, 2, 3], &m)),
            vec![1, 2, 3, 4]
        );
        assert_eq!(
            peer_addresses(&configured, &[1, 2, 3], &m)[&4],
            "10.0.0.4:9093".parse::<SocketAddr>().unwrap()
        );
        // Broker 1 retires (its partition moved away first).
        m.topics.get_mut("t").unwrap().partitions[0].replicas = vec![2, 3, 4];
        m.apply(&MetadataRecord::UnregisterBroker { request: 5, id: 1 });
        assert_eq!(
            ids(peer_addresses(&configured, &[2, 3, 4], &m)),
            vec![2, 3, 4]
        );
    }
}
