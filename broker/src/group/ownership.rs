//! In a cluster, which groups this coordinator serves: those of the offsets topic's partitions
//! this broker leads, taken over (read from their logs) when it comes to lead one and let go
//! when it stops; and what a request about any other group gets.
//!
//! Invariant: a request about a group is handled only by the coordinator that owns the group's
//! partition of the offsets topic and has read it; any other answers with the code that tells
//! the client where to go or to retry.

use super::*;

/// How long after a failed read of a partition of the offsets topic it is read again.
const REREAD_RETRY: Duration = Duration::from_secs(1);

impl Actor {
    /// Why this coordinator does not serve `group`, in the code clients act on: its partition
    /// of the offsets topic is led here but its groups are not read yet (or the offsets topic
    /// is being made): COORDINATOR_LOAD_IN_PROGRESS, which clients retry within the call, as
    /// Kafka answers while it loads; nobody leads it now (an election): COORDINATOR_NOT_AVAILABLE;
    /// another broker leads it: NOT_COORDINATOR. Found black-box: the first synchronous commit
    /// on a fresh cluster got NOT_COORDINATOR from the partition's new leader before it had
    /// taken the groups over, and confluent-kafka raised it to the application.
    pub(super) fn not_here(&self, group: &str) -> i16 {
        let partition = partition_for(group, self.config.offsets_partitions);
        if self.reread.contains(&partition) {
            return error::COORDINATOR_LOAD_IN_PROGRESS;
        }
        let Some(cluster) = &self.cluster else {
            return ELSEWHERE;
        };
        let status = match cluster.replication().replica(OFFSETS_TOPIC, partition) {
            Some(view) => view.status(),
            None if !cluster.metadata().topics.contains_key(OFFSETS_TOPIC) => {
                return error::COORDINATOR_LOAD_IN_PROGRESS
            }
            None => return ELSEWHERE,
        };
        if status.is_leader {
            error::COORDINATOR_LOAD_IN_PROGRESS
        } else if status.leader.is_none() {
            error::COORDINATOR_NOT_AVAILABLE
        } else {
            ELSEWHERE
        }
    }

    /// Whether this coordinator serves `group` (its partition of the offsets topic is led here).
    pub(super) fn owns(&self, group: &str) -> bool {
        let partition = partition_for(group, self.config.offsets_partitions);
        !self.reread.contains(&partition)
            && self.owned.as_ref().is_none_or(|o| o.contains(&partition))
    }

    /// Partition `index` of the offsets topic could not be read: what was read of it is
    /// dropped, and it is read again in a while ([`Actor::reread_failed`]); its groups'
    /// requests wait meanwhile. (Served from what was read, a group would start over at an
    /// epoch it has handed out before.)
    pub(super) fn unread(&mut self, index: i32) {
        let parts = self.config.offsets_partitions;
        self.groups
            .retain(|id, _| partition_for(id, parts) != index);
        self.reread.insert(index);
        self.reread_retry = Some(self.now() + REREAD_RETRY);
    }

    /// The partitions a write to failed, whose writes in flight are all in: their groups are
    /// read again from the log. A failed write leaves the state in memory ahead of the log
    /// (the changes it carried, and any made on top of them since, which were answered with
    /// the failure too); served from memory, a change the log never got would be handed out
    /// (a consumer group's epoch given again after a restart, with other partitions, to other
    /// members). Requests about those groups wait meanwhile, as while a partition is taken
    /// over, and are handled once it is read.
    pub(super) async fn reread_failed(&mut self) {
        if self.reread_retry.is_some_and(|at| self.now() < at) {
            return;
        }
        self.reread_retry = None;
        let due: Vec<i32> = self
            .reread
            .iter()
            .copied()
            .filter(|p| self.writes_in_flight(*p) == 0)
            .collect();
        if due.is_empty() {
            return;
        }
        let parts = self.config.offsets_partitions;
        for index in due {
            tracing::warn!(
                partition = index,
                "a write to {OFFSETS_TOPIC} failed: its groups are read again from the log"
            );
            self.groups
                .retain(|id, _| partition_for(id, parts) != index);
            let served = self.owned.as_ref().is_none_or(|o| o.contains(&index));
            let partition = self
                .store
                .topic(OFFSETS_TOPIC)
                .and_then(|t| t.partition(index).cloned());
            if let Some(p) = partition.filter(|_| served) {
                if self.load_partition(&p).await.is_none() {
                    self.unread(index);
                    continue;
                }
            }
            let now = self.now();
            let this = |id: &str| partition_for(id, parts) == index;
            for (_, g) in self.groups.iter_mut().filter(|(id, _)| this(id)) {
                g.loaded(now, self.config.consumer_session_timeout);
            }
            self.groups.retain(|id, g| !(this(id) && g.is_dead()));
            self.reread.remove(&index);
        }
        self.release().await;
    }

    /// In a cluster: take over the groups of the offsets topic's partitions this broker now
    /// leads (read from their logs), and let go of those it no longer does.
    pub(super) async fn ownership(&mut self) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let now: std::collections::BTreeSet<i32> = (0..self.config.offsets_partitions)
            .filter(|&p| {
                cluster
                    .replication()
                    .replica(OFFSETS_TOPIC, p)
                    .is_some_and(|v| v.status().serving)
            })
            .collect();
        let before = self.owned.clone().unwrap_or_default();
        if now == before {
            return;
        }
        let parts = self.config.offsets_partitions;
        for &lost in before.difference(&now) {
            self.groups.retain(|id, _| partition_for(id, parts) != lost);
            for w in self.writes.remove(&lost).unwrap_or_default() {
                self.written(w.pending, Err(ELSEWHERE));
            }
            tracing::info!(
                partition = lost,
                "no longer the coordinator of this partition's groups"
            );
        }
        self.owned = Some(now.clone());
        let gained: std::collections::BTreeSet<i32> = now.difference(&before).copied().collect();
        for &index in &gained {
            let Some(p) = self
                .store
                .topic(OFFSETS_TOPIC)
                .and_then(|t| t.partition(index).cloned())
            else {
                continue;
            };
            if self.load_partition(&p).await.is_none() {
                self.unread(index);
                continue;
            }
            tracing::info!(partition = index, "took over this partition's groups");
        }
        // Only the groups just read start afresh: the others are in the middle of their lives.
        let now_at = self.now();
        let taken = |id: &str| gained.contains(&partition_for(id, parts));
        for (_, g) in self.groups.iter_mut().filter(|(id, _)| taken(id)) {
            g.loaded(now_at, self.config.consumer_session_timeout);
        }
        self.groups.retain(|id, g| !(taken(id) && g.is_dead()));
    }

    /// Answer a request about a group this coordinator does not serve ([`Actor::not_here`]);
    /// the request back otherwise.
    pub(super) fn elsewhere(&self, msg: Msg) -> Option<Msg> {
        if self.owned.is_none() && self.reread.is_empty() {
            return Some(msg);
        }
        let here = |group: &str| self.owns(group);
        let code = |group: &str| self.not_here(group);
        match msg {
            Msg::Join(req, reply) if !here(&req.group_id) => {
                let _ = reply.send(JoinResponse {
                    error: code(&req.group_id),
                    ..Default::default()
                });
            }
            Msg::Sync(req, reply) if !here(&req.group_id) => {
                let _ = reply.send(SyncResponse {
                    error: code(&req.group_id),
                    ..Default::default()
                });
            }
            Msg::Heartbeat(group, _, _, reply) if !here(&group) => {
                let _ = reply.send(code(&group));
            }
            Msg::Leave(group, members, reply) if !here(&group) => {
                let _ = reply.send(vec![code(&group); members.len().max(1)]);
            }
            Msg::Commit(req, reply) if !here(&req.group_id) => {
                let _ = reply.send(Err(code(&req.group_id)));
            }
            Msg::Fetch(group, _, _, reply) if !here(&group) => {
                let _ = reply.send(Err(code(&group)));
            }
            Msg::TxnCommit(req, reply) if !here(&req.commit.group_id) => {
                let _ = reply.send(Err(code(&req.commit.group_id)));
            }
            Msg::DeleteOffsets(group, _, reply) if !here(&group) => {
                let _ = reply.send(Err(code(&group)));
            }
            Msg::Describe(ids, reply) if ids.iter().any(|g| !here(g)) => {
                let _ = reply.send(
                    ids.iter()
                        .map(|g| {
                            if here(g) {
                                self.describe(g)
                            } else {
                                DescribedGroup {
                                    group_id: g.clone(),
                                    error: code(g),
                                    state: "",
                                    protocol_type: String::new(),
                                    protocol: String::new(),
                                    members: Vec::new(),
                                }
                            }
                        })
                        .collect(),
                );
            }
            Msg::DeleteGroups(ids, reply) if ids.iter().any(|g| !here(g)) => {
                // Refused whole: those served elsewhere with why, the others NOT_COORDINATOR
                // (the client asks again, for them alone).
                let _ = reply.send(
                    ids.iter()
                        .map(|g| if here(g) { ELSEWHERE } else { code(g) })
                        .collect(),
                );
            }
            other => return Some(other),
        }
        None
    }
}
