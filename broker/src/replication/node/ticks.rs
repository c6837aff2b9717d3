//! Time and health: ticks of the groups that are not quiet, idle leaders quieting their
//! groups, the data directory failing and healing, links to peers going up and down, and the
//! status each group publishes.
//!
//! Invariant: a node whose directory failed steps down everywhere and takes no part in Raft
//! until it heals; a quiet group wakes when its leader's link goes down, so a dead leader is
//! still replaced.

use super::*;

/// A group without a leader for longer than this many (stretched) election timeouts is counted
/// as one whose elections do not conclude.
const LEADERLESS_ELECTION_TIMEOUTS: u64 = 5;
/// The least time between two warnings about leaderless groups.
const LEADERLESS_WARN_EVERY: Duration = Duration::from_secs(30);

impl Node {
    pub(super) async fn tick(&mut self) {
        self.ticks += 1;
        self.work += self.active.len() as u64;
        if self
            .ticks
            .is_multiple_of((self.settings.election_ticks as u64).max(1))
        {
            self.stretch.idle();
        }
        // Peers heard from within an election timeout: alive in Raft, not just connected (a
        // node whose disk failed keeps its connections and says nothing).
        let election_ticks = self.settings.election_ticks as u64;
        let rebalancing = self.settings.rebalance_ticks > 0;
        let live: BTreeSet<NodeId> = self
            .heard
            .iter()
            .filter(|_| rebalancing)
            .filter(|&(_, &at)| self.ticks - at <= election_ticks)
            .map(|(&p, _)| p)
            .filter(|p| self.link_state.get(p).copied().unwrap_or(false))
            .collect();
        let quiesce_ticks = self.settings.quiesce_ticks;
        let away_ticks = (super::prefix::FOLLOWER_AWAY_MAX.as_millis()
            / self.settings.tick.as_millis().max(1)) as u64;
        let mut going_quiet = Vec::new();
        let (mut transferring, mut due) = (0usize, Vec::new());
        for &group in &self.active {
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            if let Some(window) = g.first_term_quorum_check_at_tick.as_mut() {
                let raft = &mut g.raw.raft;
                let id = raft.id;
                let heard = raft
                    .prs()
                    .iter()
                    .any(|(&peer, pr)| peer != id && pr.recent_active);
                if !heard && self.ticks >= window.at && self.ticks < window.cap {
                    window.at = (self.ticks + window.longest).min(window.cap);
                }
                if raft.state != StateRole::Leader
                    || raft.raft_log.committed > 0
                    || self.ticks >= window.at
                {
                    raft.check_quorum = true;
                    g.first_term_quorum_check_at_tick = None;
                }
            }
            // A tick that changes nothing raft-rs would hand out (a follower counting towards
            // its timeout, a leader between heartbeats) needs no Ready: most groups' ticks.
            let mut wants_ready = g.raw.tick();
            wants_ready |= retry_stuck_snapshots(g, election_ticks as usize * 4);
            let (links, heard, now) = (&self.link_state, &self.heard, self.ticks);
            let near = |id| {
                links.get(&id).copied().unwrap_or(false)
                    || heard.get(&id).is_some_and(|&at| now - at <= away_ticks)
            };
            let cap = super::prefix::raft_start_cap(g, self.id, near);
            g.view.partition.set_raft_start_cap(cap);
            g.timer.settle(&mut g.raw);
            if g.raw.raft.leader_id == raft::INVALID_ID {
                self.leaderless_since.entry(group).or_insert(self.ticks);
            } else {
                self.leaderless_since.remove(&group);
            }
            if wants_ready {
                self.dirty.insert(group);
            }
            g.handing_back &= g.raw.raft.lead_transferee.is_some();
            transferring += usize::from(g.handing_back);
            // The cluster metadata's leader has no preferred broker (as in KRaft).
            if group != wire::CONTROLLER_GROUP
                && rebalance(g, self.id, &live, self.settings.rebalance_ticks)
            {
                due.push(group);
            }
            if idle_leader(g) {
                g.idle_ticks += 1;
                if g.idle_ticks >= quiesce_ticks {
                    going_quiet.push(group);
                }
            } else {
                g.idle_ticks = 0;
            }
        }
        let room = HAND_BACKS_MAX.saturating_sub(transferring);
        let started = due.len().min(room);
        for group in due.into_iter().take(room) {
            if let Some(g) = self.groups.get_mut(&group) {
                hand_back(g);
                self.dirty.insert(group);
            }
        }
        Metrics::peak(
            &self.metrics.hand_backs_peak,
            (transferring + started) as i64,
        );
        self.tick_prefixes();
        self.watch_leaderless();
        for group in going_quiet {
            // The last heartbeat carries the commit; the notice follows it on each connection.
            if let Some(g) = self.groups.get_mut(&group) {
                g.raw.ping();
            }
            self.handle_ready(group).await;
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            if !idle_leader(g) {
                continue;
            }
            let term = g.raw.raft.term;
            for f in g
                .view
                .members()
                .replicas()
                .into_iter()
                .filter(|&v| v != self.id)
            {
                self.transport.send(f, wire::quiesce(group, term));
            }
            g.quiet = true;
            g.idle_ticks = 0;
            self.active.remove(&group);
            self.dirty.insert(group);
        }
    }

    /// Groups whose elections do not conclude are said so: counted in a metric, and a warning
    /// at most every [`LEADERLESS_WARN_EVERY`] naming how many, the longest without a leader
    /// and what this node's disk makes an election wait (a node that logged nothing while a
    /// thousand groups split their votes for ten minutes was the defect this answers).
    fn watch_leaderless(&mut self) {
        let election_ticks = self.settings.election_ticks as u64;
        if !self.ticks.is_multiple_of(election_ticks.max(1)) {
            return;
        }
        let groups = &self.groups;
        self.leaderless_since.retain(|group, _| {
            groups
                .get(group)
                .is_some_and(|g| g.raw.raft.leader_id == raft::INVALID_ID)
        });
        let bound_ticks =
            LEADERLESS_ELECTION_TIMEOUTS * (2 * election_ticks + 2 * self.stretch.ticks() as u64);
        let now = self.ticks;
        let stuck: Vec<(GroupId, u64)> = self
            .leaderless_since
            .iter()
            .filter(|&(_, &since)| now - since > bound_ticks)
            .map(|(&group, &since)| (group, now - since))
            .collect();
        self.metrics.raft_groups_leaderless.set(stuck.len() as i64);
        if stuck.is_empty() {
            return;
        }
        let tick_ms = self.settings.tick.as_millis().max(1) as u64;
        let every_ticks = LEADERLESS_WARN_EVERY.as_millis() as u64 / tick_ms;
        if self
            .leaderless_warned_at_tick
            .is_some_and(|at| now - at < every_ticks)
        {
            return;
        }
        self.leaderless_warned_at_tick = Some(now);
        let Some(&(longest, for_ticks)) = stuck.iter().max_by_key(|&&(g, t)| (t, g)) else {
            return;
        };
        let term = self.groups.get(&longest).map_or(0, |g| g.raw.raft.term);
        tracing::warn!(
            node = self.id,
            groups = stuck.len(),
            longest_group = longest,
            longest_for_ms = for_ticks * tick_ms,
            longest_term = term,
            raft_write_ms = self.stretch.round().as_secs_f64() * 1e3,
            election_stretch_ms = self.stretch.ticks() as u64 * tick_ms,
            "Raft groups have had no leader for longer than {LEADERLESS_ELECTION_TIMEOUTS} election timeouts: their elections do not conclude (a disk or host too slow for them, or no quorum of their replicas reachable)"
        );
    }

    /// The data directory failed (an I/O deadline passed, EIO) or healed. Failed: hand every
    /// group this node leads to a follower that has all of its log (at once, rather than after
    /// an election timeout), step down everywhere, answer what waited with
    /// NOT_LEADER_OR_FOLLOWER, and go silent. Healed: take part again, as a follower.
    pub(super) async fn health_changed(&mut self, failed: bool) {
        if failed == self.stepped_down {
            return;
        }
        if failed {
            let mut led = 0;
            let ids: Vec<GroupId> = self.groups.keys().copied().collect();
            for &group in &ids {
                let Some(g) = self.groups.get_mut(&group) else {
                    continue;
                };
                if g.raw.raft.state != StateRole::Leader {
                    continue;
                }
                led += 1;
                let last = g.raw.raft.raft_log.last_index();
                let me = self.id;
                let heir = g
                    .raw
                    .raft
                    .prs()
                    .iter()
                    .filter(|(id, p)| **id != me && p.matched == last && p.recent_active)
                    .map(|(id, _)| *id)
                    .min();
                if let Some(heir) = heir {
                    crate::coverage::reached(crate::coverage::Event::LeadershipHandedOver);
                    g.raw.transfer_leader(heir);
                    g.timer.settle(&mut g.raw);
                }
                // The hand-over's message leaves now, before the node goes silent.
                self.handle_ready(group).await;
            }
            self.transport.flush();
            self.stepped_down = true;
            for &group in &ids {
                let Some(g) = self.groups.get_mut(&group) else {
                    continue;
                };
                let term = g.raw.raft.term;
                if g.raw.raft.state != StateRole::Follower || g.raw.raft.leader_id == self.id {
                    g.raw.raft.become_follower(term, raft::INVALID_ID);
                }
                for w in g.waiters.drain(..) {
                    let _ = w
                        .reply
                        .send(Err(ReplicaError::NotLeader { leader: None, term }));
                }
                for p in g.gate.take_all() {
                    if let Some(a) = p.answer {
                        let _ = a.send(Err(ReplicaError::NotLeader { leader: None, term }));
                    }
                }
                self.dirty.insert(group);
            }
            tracing::error!(node = self.id, led, groups = ids.len(), "data directory failed: stepped down from every group and takes no part in Raft until it heals");
        } else {
            self.stepped_down = false;
            for (&group, g) in self.groups.iter_mut() {
                g.quiet = false;
                g.idle_ticks = 0;
                self.active.insert(group);
                self.dirty.insert(group);
                release_held(g, group, &self.transport);
            }
            tracing::warn!(
                node = self.id,
                "data directory healed: taking part in Raft again, as a follower"
            );
        }
    }

    pub(super) fn links_changed(&mut self) {
        let now: HashMap<NodeId, bool> = self
            .transport
            .peers()
            .into_iter()
            .map(|p| (p, self.transport.connected(p)))
            .collect();
        let lost: Vec<NodeId> = now
            .iter()
            .filter(|(p, &up)| !up && self.link_state.get(p).copied().unwrap_or(true))
            .map(|(&p, _)| p)
            .collect();
        let found: Vec<NodeId> = now
            .iter()
            .filter(|(p, &up)| up && !self.link_state.get(p).copied().unwrap_or(false))
            .map(|(&p, _)| p)
            .collect();
        self.link_state = now;
        for (&group, g) in self.groups.iter_mut() {
            if g.copies_awaited && !lost.is_empty() {
                // Replicas it waits for may have dropped out of sync.
                self.dirty.insert(group);
            }
            if !g.quiet {
                continue;
            }
            let raft = &g.raw.raft;
            // A quiet follower whose leader went silent wakes (and elects another if it must);
            // a quiet leader wakes to tell a peer that came back who leads, and when it can no
            // longer reach a quorum, to step down (check-quorum counts only ticking groups: a
            // cut-off leader of the quiet cluster metadata stayed leader until a proposal woke
            // it, 14 s into a cut in simulation, and its broker went on answering clients as
            // if its view of the cluster were current).
            let leader_lost = lost.contains(&raft.leader_id);
            let leading = raft.state == StateRole::Leader;
            let members = g.view.members();
            let member_found = leading && found.iter().any(|&p| members.is_replica(p));
            let quorum_lost = leading
                && lost.iter().any(|&p| members.is_replica(p))
                && !members.quorum_reachable(self.id, |p| {
                    self.link_state.get(&p).copied().unwrap_or(false)
                });
            if leader_lost || member_found || quorum_lost {
                crate::coverage::reached(crate::coverage::Event::QuietGroupWokenByLink);
                g.quiet = false;
                self.active.insert(group);
                self.dirty.insert(group);
            }
            if quorum_lost {
                // What it heard before going quiet is not news of them now: the next check
                // of the quorum (within an election timeout) finds them gone.
                for &p in &lost {
                    if let Some(pr) = g.raw.raft.mut_prs().get_mut(p) {
                        pr.recent_active = false;
                    }
                }
            }
        }
    }
}

/// A leader's snapshot whose answer has not come back within `patience` ticks is reported
/// failed, so the replica is probed (and sent another) again: raft-rs keeps a replica it sent
/// a snapshot waiting until its answer arrives, and an answer lost with its connection (the
/// replica paused, a queue full) left a learner never caught up and its move never done.
/// True when one was reported (raft-rs then has a probe to send).
fn retry_stuck_snapshots(g: &mut Group, patience: usize) -> bool {
    if g.raw.raft.state != StateRole::Leader {
        g.snapshot_waits.clear();
        return false;
    }
    let waiting: Vec<NodeId> = g
        .raw
        .raft
        .prs()
        .iter()
        .filter(|(_, p)| p.state == raft::ProgressState::Snapshot)
        .map(|(&id, _)| id)
        .collect();
    g.snapshot_waits.retain(|id, _| waiting.contains(id));
    let mut reported = false;
    for id in waiting {
        let ticks = g.snapshot_waits.entry(id).or_insert(0);
        *ticks += 1;
        if *ticks > patience {
            tracing::info!(
                group = g.view.group,
                replica = id,
                "a snapshot's answer did not come: sent again"
            );
            g.snapshot_waits.remove(&id);
            g.raw.report_snapshot(id, raft::SnapshotStatus::Failure);
            reported = true;
        }
    }
    reported
}

/// A leader with nothing to do: everything committed and on every follower, nothing waiting.
pub(super) fn idle_leader(g: &Group) -> bool {
    let raft = &g.raw.raft;
    if raft.state != StateRole::Leader
        || raft.lead_transferee.is_some()
        || !g.waiters.is_empty()
        || g.in_flight.is_some()
        || !g.next.is_empty()
        || !g.held.is_empty()
        || !g.gate.is_empty()
        || g.preferred_ready > 0
    {
        return false;
    }
    let last = raft.raft_log.last_index();
    raft.raft_log.committed == last && raft.prs().iter().all(|(_, p)| p.matched == last)
}

/// A leader serves (reads, the group coordinator's load) once an entry of its own term is not
/// only committed but applied: the high watermark moves on apply, and raft-rs may know of the
/// commit (a majority of followers acknowledged) before its own write of the entry is durable
/// and the entries are handed out to apply — serving then would show the previous leader's
/// readers a high watermark gone back, and a coordinator taking over would load its groups'
/// offsets from a log end short of commits the previous one acknowledged. (Reasoned from
/// raft-rs's async-ready API, not shown by a failing seed: seed 21 of
/// `cluster-failover-clients` was the stale leader's out-of-range answer, `confirm_leading`.)
pub(super) fn serves(raft: &raft::Raft<PartitionStorage>) -> bool {
    let log = &raft.raft_log;
    raft.commit_to_current_term()
        && (log.applied >= log.committed || log.term(log.applied).is_ok_and(|t| t == raft.term))
}

pub(super) fn update_status(
    g: &mut Group,
    changed: &super::feed::StatusChanges,
    metrics: &Metrics,
) {
    let raft = &g.raw.raft;
    let is_leader = raft.state == StateRole::Leader;
    let me = raft.id;
    let status = Status {
        leader: (raft.leader_id != 0).then_some(raft.leader_id),
        term: raft.term,
        is_leader,
        serving: is_leader && serves(raft),
        under_replicated: is_leader
            && raft
                .prs()
                .iter()
                .any(|(id, p)| *id != me && !p.recent_active),
        quiet: g.quiet,
    };
    let before = g.published;
    if before == status {
        return;
    }
    let flag = |on: bool| i64::from(on);
    // A view starts as a follower's (Status::default): count it once, then move it.
    let counted = g
        .view
        .counted
        .swap(true, std::sync::atomic::Ordering::Relaxed);
    if !counted {
        metrics.raft_followers.inc_by(1);
    }
    let leader_delta = flag(status.is_leader) - flag(before.is_leader);
    metrics.raft_leaders.inc_by(leader_delta);
    metrics.raft_followers.dec_by(leader_delta);
    metrics
        .raft_under_replicated
        .inc_by(flag(status.under_replicated) - flag(before.under_replicated));
    metrics
        .raft_quiet
        .inc_by(flag(status.quiet) - flag(before.quiet));
    metrics
        .raft_term_max
        .inner()
        .fetch_max(status.term as i64, std::sync::atomic::Ordering::Relaxed);
    if status.is_leader && !before.is_leader {
        Metrics::inc(&metrics.raft_leaderships_taken, 1);
    }
    if status.is_leader != before.is_leader {
        let p = &g.view.partition;
        if status.is_leader {
            tracing::info!(topic = %p.topic, partition = p.index, term = status.term, "leading");
        } else {
            tracing::info!(topic = %p.topic, partition = p.index, term = status.term, leader = ?status.leader, "no longer leading");
        }
    }
    g.published = status;
    g.view.set_status(status);
    changed.changed(g.view.group);
}
