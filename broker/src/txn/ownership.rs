//! In a cluster, which transactional ids this coordinator serves: those of the partitions of
//! `__transaction_state` this broker leads, each read from its log when this broker comes to
//! lead it (its coordinator epoch is the term it read it in) and let go when it stops; and what
//! a request about any other id gets.
//!
//! Invariant: a request about an id is handled only by the coordinator that leads the id's
//! partition and has read it in its current term; a coordinator that stops leading a partition
//! (or leads it again in a newer term) drops what it knew of its ids, so it never answers from
//! a state another coordinator may have changed since.

use std::collections::{BTreeMap, BTreeSet};

use super::actor::Actor;
use super::{partition_for, DescribedTxn, Msg, TRANSACTION_STATE_TOPIC};
use crate::protocol::error;

impl Actor {
    /// Why this coordinator does not serve `id`, in the code clients act on: its partition is
    /// led here but not read yet (or the topic is being made): COORDINATOR_LOAD_IN_PROGRESS;
    /// nobody leads it now (an election): COORDINATOR_NOT_AVAILABLE; another broker leads it:
    /// NOT_COORDINATOR.
    fn not_here(&self, id: &str) -> i16 {
        let Some(cluster) = &self.cluster else {
            return error::NOT_COORDINATOR;
        };
        let index = partition_for(id, self.config.partitions);
        let status = match cluster
            .replication()
            .replica(TRANSACTION_STATE_TOPIC, index)
        {
            Some(view) => view.status(),
            None if !cluster
                .metadata()
                .topics
                .contains_key(TRANSACTION_STATE_TOPIC) =>
            {
                return error::COORDINATOR_LOAD_IN_PROGRESS
            }
            None => return error::NOT_COORDINATOR,
        };
        if status.is_leader {
            error::COORDINATOR_LOAD_IN_PROGRESS
        } else if status.leader.is_none() {
            error::COORDINATOR_NOT_AVAILABLE
        } else {
            error::NOT_COORDINATOR
        }
    }

    /// Whether this coordinator serves `id`.
    fn owns(&self, id: &str) -> bool {
        match &self.owned {
            None => true,
            Some(owned) => owned.contains_key(&partition_for(id, self.config.partitions)),
        }
    }

    /// Answer a request about an id this coordinator does not serve ([`Actor::not_here`]); the
    /// request back otherwise.
    pub(super) fn elsewhere(&self, msg: Msg) -> Option<Msg> {
        if self.owned.is_none() {
            return Some(msg);
        }
        match msg {
            Msg::Init { id, reply, .. } if !self.owns(&id) => {
                let _ = reply.send(Err(self.not_here(&id)));
            }
            Msg::Add { id, reply, .. } | Msg::End { id, reply, .. } if !self.owns(&id) => {
                let _ = reply.send(self.not_here(&id));
            }
            Msg::Describe(ids, reply) if ids.iter().any(|id| !self.owns(id)) => {
                let described = ids
                    .iter()
                    .map(|id| {
                        if self.owns(id) {
                            self.describe(id)
                        } else {
                            DescribedTxn::unknown(id, self.not_here(id))
                        }
                    })
                    .collect();
                let _ = reply.send(described);
            }
            other => return Some(other),
        }
        None
    }

    /// In a cluster: take over the ids of the topic's partitions this broker now leads (read
    /// from their logs, their decided transactions' markers sent again), and let go of those it
    /// no longer leads or leads in a newer term.
    pub(super) async fn ownership(&mut self) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let now: BTreeMap<i32, u64> = (0..self.config.partitions)
            .filter_map(|p| {
                let view = cluster.replication().replica(TRANSACTION_STATE_TOPIC, p)?;
                let s = view.status();
                s.serving.then_some((p, s.term))
            })
            .collect();
        let before = self.owned.clone().unwrap_or_default();
        if now == before {
            return;
        }
        let parts = self.config.partitions;
        let lost: BTreeSet<i32> = before
            .iter()
            .filter(|(p, term)| now.get(p) != Some(term))
            .map(|(p, _)| *p)
            .collect();
        let gained: BTreeSet<i32> = now
            .iter()
            .filter(|(p, term)| before.get(p) != Some(term))
            .map(|(p, _)| *p)
            .collect();
        if !lost.is_empty() {
            self.ids
                .retain(|id, _| !lost.contains(&partition_for(id, parts)));
            for p in &lost {
                tracing::info!(
                    partition = p,
                    "no longer the coordinator of this partition's transactional ids"
                );
            }
        }
        // Served from here on only once read.
        self.owned = Some(
            before
                .into_iter()
                .filter(|(p, _)| !lost.contains(p))
                .collect(),
        );
        for &index in &gained {
            let Some(p) = self
                .store
                .topic(TRANSACTION_STATE_TOPIC)
                .and_then(|t| t.partition(index).cloned())
            else {
                continue;
            };
            let records = self.load_partition(&p).await;
            if let Some(owned) = &mut self.owned {
                owned.insert(index, now[&index]);
            }
            tracing::info!(
                partition = index,
                term = now[&index],
                records,
                "took over this partition's transactional ids"
            );
        }
        self.count_open();
        self.resume_markers(|id| gained.contains(&partition_for(id, parts)));
    }
}
