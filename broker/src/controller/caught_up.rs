//! Whether this broker's replica of the cluster metadata has caught up with the cluster's
//! since it started — Kafka's broker waits for the same before it opens its listeners: a
//! broker restarted, or back with an emptied disk, replays the metadata log from its start, and
//! a broker that just joined has not applied the others' registrations yet; until caught up it
//! would tell clients of no brokers or of topics from an older point of the log, and decide
//! who a client is and what it may do from an older point than it had already applied before
//! — refuse a user made since, or let a revoked ACL through again.
//!
//! Caught up means: this start's registration applied here, then applied as far as the
//! metadata group's leader had committed at some moment after that (a Raft read index, asked
//! of the leader through the metadata group, so a broker cut off from a quorum never counts as
//! caught up). From then on the metadata changes as records are applied, as everywhere in
//! Kafka.
//!
//! Also here: what the simulator is told each time the metadata is published
//! ([`SecurityPublished`]), for its checker of authorization against the metadata log.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::records::MetadataRecord;
use super::state::ClusterMetadata;
use super::{Controller, METADATA_GROUP};
use crate::replication::node::ReplicaError;
use crate::replication::transport::NodeId;
use crate::security::SecurityChange;

/// How long one ask for the leader's commit may take (a deposed leader never answers it).
const ASK_LIMIT: Duration = Duration::from_secs(1);
/// How long to wait before asking again when no leader could answer.
const ASK_AGAIN: Duration = Duration::from_millis(200);

impl Controller {
    /// True once this broker's replica of the metadata has caught up with the cluster's since
    /// it started (never false again).
    pub fn caught_up(&self) -> watch::Receiver<bool> {
        self.caught_up.subscribe()
    }

    /// Why this broker does not yet serve its partitions (`None`: it does) — what `/ready`
    /// answers: its replica of the metadata not caught up since it started (which includes
    /// its own registration), it fenced, or a partition it holds a replica of without a
    /// leader.
    pub fn not_ready(&self) -> Option<String> {
        if !*self.caught_up.borrow() {
            return Some("the cluster metadata is not caught up yet".into());
        }
        let md = self.metadata();
        match md.brokers.get(&self.node_id) {
            Some(b) if !b.fenced => {}
            _ => return Some("this broker is not registered, or fenced".into()),
        }
        let leaderless: Vec<String> = md
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.replicas.contains(&self.node_id) && p.leader.is_none())
                    .map(move |(i, _)| format!("{}-{i}", t.name))
            })
            .collect();
        leaderless.first().map(|first| {
            format!(
                "{} partition(s) with a replica here have no leader (e.g. {first})",
                leaderless.len()
            )
        })
    }

    pub(super) async fn catch_up_loop(self: Arc<Self>) {
        // First this start's own registration, applied here: a broker serves clients only
        // once it is in the metadata it serves (as Kafka's broker waits to be unfenced).
        let mut changes = self.changes();
        while self
            .metadata()
            .brokers
            .get(&self.node_id)
            .is_none_or(|b| b.incarnation != self.incarnation)
        {
            if changes.changed().await.is_err() {
                return;
            }
        }
        let clock = self.env.clock.clone();
        let target = loop {
            match clock
                .timeout(ASK_LIMIT, self.replication.leader_commit(METADATA_GROUP))
                .await
            {
                Ok(Ok(Some(commit))) => break commit,
                Ok(Err(ReplicaError::Stopped)) => return,
                _ => clock.sleep(ASK_AGAIN).await,
            }
        };
        let mut applied = self.applied.subscribe();
        if applied.wait_for(|a| *a >= target).await.is_err() {
            return;
        }
        self.caught_up.send_replace(true);
        tracing::info!(
            node = self.node_id,
            offset = target,
            "the cluster metadata is caught up: users and ACLs are served"
        );
    }
}

/// A broker published its replica of the metadata, applied up to `position` (the metadata
/// log's offset after the last record applied), having applied on the way the security
/// changes of `changes` — each with the offset after its record. Told to the simulator only.
#[derive(Debug, Clone)]
pub struct SecurityPublished {
    pub node: NodeId,
    /// Which start of the broker (a restarted broker applies the log again from its start).
    pub incarnation: u64,
    pub position: i64,
    pub changes: Vec<(i64, Vec<SecurityChange>)>,
}

/// The security changes applied since the last publication (gathered only where something
/// observes: see [`crate::observe::ON`]).
#[derive(Default)]
pub(super) struct Observed(Vec<(i64, Vec<SecurityChange>)>);

impl Observed {
    /// `record`, about to be applied to `state`, if it changes the security metadata (a
    /// request proposed again after it landed does not).
    pub(super) fn note(&mut self, next: i64, record: &MetadataRecord, state: &ClusterMetadata) {
        if let MetadataRecord::AlterSecurity { request, changes } = record {
            if state.outcome(*request).is_none() {
                self.0.push((next, changes.clone()));
            }
        }
    }

    pub(super) fn published(
        &mut self,
        node: NodeId,
        incarnation: u64,
        position: i64,
    ) -> SecurityPublished {
        SecurityPublished {
            node,
            incarnation,
            position,
            changes: std::mem::take(&mut self.0),
        }
    }
}
