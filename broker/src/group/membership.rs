//! Membership and rebalances, Kafka's classic protocol: a group is Empty, PreparingRebalance
//! (members (re)join; it completes when all have, or at the rebalance deadline), Completing-
//! Rebalance (the leader computes the assignment; the others wait in SyncGroup), or Stable.
//!
//! Timers: a member that stops heartbeating for its session timeout is removed (not while it
//! waits in JoinGroup or SyncGroup: the rebalance has its own deadline); a new group waits
//! `group.initial.rebalance.delay.ms` (extended while members keep arriving, up to the
//! rebalance timeout) before its first rebalance completes; a new member told to rejoin with
//! its id (MEMBER_ID_REQUIRED) is forgotten if it does not within its session timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::records::Entry;
use super::state::{Group, Member, State};
use super::{
    Actor, DescribedGroup, DescribedMember, JoinRequest, JoinResponse, ListedGroup, MemberRef,
    Pending, SyncRequest, SyncResponse,
};
use crate::protocol::error;

fn reject(error: i16, member_id: &str) -> JoinResponse {
    JoinResponse {
        error,
        generation: -1,
        member_id: member_id.to_string(),
        ..Default::default()
    }
}

impl Actor {
    pub(super) async fn join(&mut self, req: JoinRequest, reply: oneshot::Sender<JoinResponse>) {
        if req.group_id.is_empty() {
            let _ = reply.send(reject(error::INVALID_GROUP_ID, &req.member_id));
            return;
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            let _ = reply.send(reject(error::INVALID_SESSION_TIMEOUT, &req.member_id));
            return;
        }
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                let _ = reply.send(reject(error::UNKNOWN_MEMBER_ID, &req.member_id));
                return;
            }
            self.groups
                .insert(req.group_id.clone(), super::Group::new(&req.group_id));
        }
        if let Some(code) = self.classic_join_to_consumer_group(&req.group_id).await {
            let _ = reply.send(reject(code, &req.member_id));
            return;
        }
        let now = self.now();
        let new_id = req
            .member_id
            .is_empty()
            .then(|| self.new_member_id(&req.client_id));
        let initial_delay = self.config.initial_rebalance_delay;
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return;
        };
        if !group.supports(&req.protocol_type, &req.protocols) {
            let _ = reply.send(reject(error::INCONSISTENT_GROUP_PROTOCOL, &req.member_id));
            return;
        }
        let member_id = match new_id {
            Some(new_id) => {
                // A static member coming back under a new id takes its place.
                let previous = req
                    .group_instance_id
                    .as_ref()
                    .and_then(|i| group.statics.get(i).cloned());
                if let Some(old) = previous {
                    rejoin_static(group, &old, &new_id, &req, reply, now, initial_delay);
                    return;
                }
                if req.require_known_member_id && req.group_instance_id.is_none() {
                    group.pending.insert(
                        new_id.clone(),
                        now + Duration::from_millis(req.session_timeout_ms as u64),
                    );
                    let _ = reply.send(reject(error::MEMBER_ID_REQUIRED, &new_id));
                    return;
                }
                add_member(group, new_id.clone(), &req, reply, now);
                prepare_or_complete(group, now, initial_delay);
                new_id
            }
            None => {
                let id = req.member_id.clone();
                if group.pending.remove(&id).is_some() {
                    add_member(group, id.clone(), &req, reply, now);
                    prepare_or_complete(group, now, initial_delay);
                } else if group.fenced(&id, req.group_instance_id.as_deref()) {
                    let _ = reply.send(reject(error::FENCED_INSTANCE_ID, &id));
                    return;
                } else if !group.members.contains_key(&id) {
                    let _ = reply.send(reject(error::UNKNOWN_MEMBER_ID, &id));
                    return;
                } else {
                    current_member_join(group, &id, &req, reply, now, initial_delay);
                }
                id
            }
        };
        tracing::debug!(group = %req.group_id, member = %member_id, state = group.state.name(), "join");
        self.maybe_complete_join(&req.group_id).await;
    }

    pub(super) async fn sync(&mut self, req: SyncRequest, reply: oneshot::Sender<SyncResponse>) {
        let fail = |code: i16| SyncResponse {
            error: code,
            ..Default::default()
        };
        let now = self.now();
        let now_ms = self.clock.wall_ms();
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            let _ = reply.send(fail(error::UNKNOWN_MEMBER_ID));
            return;
        };
        if group.fenced(&req.member_id, req.group_instance_id.as_deref()) {
            let _ = reply.send(fail(error::FENCED_INSTANCE_ID));
            return;
        }
        if !group.members.contains_key(&req.member_id) {
            let _ = reply.send(fail(error::UNKNOWN_MEMBER_ID));
            return;
        }
        if req.generation != group.generation {
            let _ = reply.send(fail(error::ILLEGAL_GENERATION));
            return;
        }
        let mismatch =
            |ours: &Option<String>, theirs: &Option<String>| theirs.is_some() && ours != theirs;
        if mismatch(&group.protocol_type, &req.protocol_type)
            || mismatch(&group.protocol, &req.protocol_name)
        {
            let _ = reply.send(fail(error::INCONSISTENT_GROUP_PROTOCOL));
            return;
        }
        match group.state {
            State::Empty => {
                let _ = reply.send(fail(error::UNKNOWN_MEMBER_ID));
            }
            State::PreparingRebalance => {
                let _ = reply.send(fail(error::REBALANCE_IN_PROGRESS));
            }
            State::Stable => {
                let (protocol_type, protocol) =
                    (group.protocol_type.clone(), group.protocol.clone());
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    m.session_deadline = now + m.session_timeout;
                    let _ = reply.send(SyncResponse {
                        error: error::NONE,
                        protocol_type,
                        protocol_name: protocol,
                        assignment: m.assignment.clone(),
                    });
                }
            }
            State::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    m.awaiting_sync = Some(reply);
                    m.session_deadline = now + m.session_timeout;
                }
                let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
                if is_leader && group.pending_assignment.is_none() {
                    // Every member gets what the leader gave it (nothing, if it was left out).
                    let mut assignment: BTreeMap<String, Bytes> = group
                        .members
                        .keys()
                        .map(|id| (id.clone(), Bytes::new()))
                        .collect();
                    for (id, a) in req.assignments {
                        if let Some(slot) = assignment.get_mut(&id) {
                            *slot = a;
                        }
                    }
                    group.pending_assignment = Some(assignment.clone());
                    let mut value = group.value(now_ms);
                    for m in &mut value.members {
                        m.assignment = assignment.get(&m.member_id).cloned().unwrap_or_default();
                    }
                    let (group_id, generation) = (group.id.clone(), group.generation);
                    let entry = Entry::Group {
                        group: group_id.clone(),
                        value: Some(value),
                    };
                    self.write(
                        &group_id,
                        vec![entry],
                        Pending::Assignment {
                            group: group_id.clone(),
                            generation,
                        },
                    )
                    .await;
                }
            }
        }
    }

    /// The leader's assignment is durable (or failed): members get theirs, or rejoin.
    pub(super) fn assignment_written(
        &mut self,
        group_id: &str,
        generation: i32,
        result: Result<(), i16>,
    ) {
        let now = self.now();
        let initial_delay = self.config.initial_rebalance_delay;
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        // The write of an older generation's assignment: the group has moved on.
        if group.generation != generation || group.state != State::CompletingRebalance {
            return;
        }
        let Some(assignment) = group.pending_assignment.take() else {
            return;
        };
        match result {
            Ok(()) => {
                let (protocol_type, protocol) =
                    (group.protocol_type.clone(), group.protocol.clone());
                for m in group.members.values_mut() {
                    m.assignment = assignment.get(&m.id).cloned().unwrap_or_default();
                    if let Some(r) = m.awaiting_sync.take() {
                        let _ = r.send(SyncResponse {
                            error: error::NONE,
                            protocol_type: protocol_type.clone(),
                            protocol_name: protocol.clone(),
                            assignment: m.assignment.clone(),
                        });
                    }
                    m.session_deadline = now + m.session_timeout;
                }
                group.state = State::Stable;
                tracing::info!(group = %group.id, generation, members = group.members.len(), "group is stable");
            }
            Err(code) => {
                for m in group.members.values_mut() {
                    m.assignment = Bytes::new();
                    if let Some(r) = m.awaiting_sync.take() {
                        let _ = r.send(SyncResponse {
                            error: code,
                            ..Default::default()
                        });
                    }
                }
                prepare_rebalance(group, now, initial_delay);
            }
        }
    }

    pub(super) fn heartbeat(&mut self, group_id: &str, generation: i32, member: &MemberRef) -> i16 {
        let now = self.now();
        let Some(group) = self.groups.get_mut(group_id) else {
            return error::UNKNOWN_MEMBER_ID;
        };
        if group.fenced(&member.member_id, member.group_instance_id.as_deref()) {
            return error::FENCED_INSTANCE_ID;
        }
        let state = group.state;
        let current = group.generation;
        let Some(m) = group.members.get_mut(&member.member_id) else {
            return error::UNKNOWN_MEMBER_ID;
        };
        if generation != current {
            return error::ILLEGAL_GENERATION;
        }
        m.session_deadline = now + m.session_timeout;
        match state {
            State::Empty => error::UNKNOWN_MEMBER_ID,
            State::PreparingRebalance => error::REBALANCE_IN_PROGRESS,
            State::CompletingRebalance | State::Stable => error::NONE,
        }
    }

    /// Members leave (LeaveGroup); one code each.
    pub(super) async fn leave(&mut self, group_id: &str, members: &[MemberRef]) -> Vec<i16> {
        let now = self.now();
        let initial_delay = self.config.initial_rebalance_delay;
        let Some(group) = self.groups.get_mut(group_id) else {
            return vec![error::UNKNOWN_MEMBER_ID; members.len()];
        };
        let mut codes = Vec::with_capacity(members.len());
        let mut left = false;
        for who in members {
            // v3+: a static member may leave by its instance id alone.
            let id = if who.member_id.is_empty() {
                who.group_instance_id
                    .as_ref()
                    .and_then(|i| group.statics.get(i).cloned())
                    .unwrap_or_default()
            } else {
                who.member_id.clone()
            };
            if group.pending.remove(&id).is_some() {
                codes.push(error::NONE);
                left = true;
            } else if group.fenced(&id, who.group_instance_id.as_deref()) {
                codes.push(error::FENCED_INSTANCE_ID);
            } else if let Some(m) = group.remove_member(&id) {
                fail_waiters(m);
                codes.push(error::NONE);
                left = true;
            } else {
                codes.push(error::UNKNOWN_MEMBER_ID);
            }
        }
        if left {
            tracing::info!(group = %group_id, "members left");
            member_gone(group, now, initial_delay);
            self.maybe_complete_join(group_id).await;
        }
        codes
    }

    /// Timers: sessions, members that were to rejoin, join deadlines.
    pub(super) async fn expire(&mut self) {
        let now = self.now();
        let initial_delay = self.config.initial_rebalance_delay;
        let due: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for group_id in due {
            let Some(group) = self.groups.get_mut(&group_id) else {
                continue;
            };
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| m.expired(now))
                .map(|m| m.id.clone())
                .collect();
            for id in &expired {
                tracing::info!(group = %group_id, member = %id, "member session expired");
                if let Some(m) = group.remove_member(id) {
                    fail_waiters(m);
                }
            }
            let before = group.pending.len();
            group.pending.retain(|_, until| *until > now);
            if !expired.is_empty() || group.pending.len() != before {
                member_gone(group, now, initial_delay);
            }
            if group.join_deadline.is_some_and(|d| d <= now) {
                match group.initial_until {
                    // New members keep coming: wait one delay more, up to the limit.
                    Some(limit) if group.member_added && now < limit => {
                        group.member_added = false;
                        group.join_deadline = Some((now + initial_delay).min(limit));
                    }
                    _ => {
                        group.initial_until = None;
                        group.join_deadline = None;
                        self.complete_join(&group_id).await;
                        continue;
                    }
                }
            }
            self.maybe_complete_join(&group_id).await;
        }
    }

    /// Complete the join phase if every member has rejoined (and no first-rebalance delay
    /// is running).
    async fn maybe_complete_join(&mut self, group_id: &str) {
        let ready = self.groups.get(group_id).is_some_and(|g| {
            g.state == State::PreparingRebalance && g.initial_until.is_none() && g.all_joined()
        });
        if ready {
            self.complete_join(group_id).await;
        }
    }

    /// End the join phase: members that did not rejoin go (static ones stay, until their
    /// session ends), the next generation begins, and every joined member gets its answer.
    async fn complete_join(&mut self, group_id: &str) {
        let now = self.now();
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.state != State::PreparingRebalance {
            return;
        }
        group.join_deadline = None;
        group.initial_until = None;
        let gone: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %group_id, member = %id, "member did not rejoin in time");
            group.remove_member(&id);
        }
        group.generation += 1;
        if group.generation > 1 && !group.members.is_empty() {
            crate::coverage::reached(crate::coverage::Event::GroupRebalanced);
        }
        if group.members.values().all(|m| m.awaiting_join.is_none()) {
            // Nobody to answer: the group is empty now (static members that did not rejoin
            // are dropped too, as there is no rebalance to keep them for).
            let ids: Vec<String> = group.members.keys().cloned().collect();
            for id in ids {
                group.remove_member(&id);
            }
            group.state = State::Empty;
            group.protocol = None;
            group.leader = None;
            tracing::info!(group = %group_id, generation = group.generation, "group is empty");
            group.empty_since_ms = self.clock.wall_ms();
            let entry = Entry::Group {
                group: group_id.to_string(),
                value: Some(group.value(group.empty_since_ms)),
            };
            self.write(group_id, vec![entry], Pending::GroupState).await;
            return;
        }
        group.protocol = group.select_protocol();
        let leader_rejoined = group
            .leader
            .as_ref()
            .and_then(|l| group.members.get(l))
            .is_some_and(|m| m.awaiting_join.is_some());
        if !leader_rejoined {
            group.leader = group
                .members
                .values()
                .filter(|m| m.awaiting_join.is_some())
                .min_by_key(|m| m.joined)
                .map(|m| m.id.clone());
        }
        group.state = State::CompletingRebalance;
        let answers: Vec<(String, JoinResponse)> = group
            .members
            .keys()
            .map(|id| (id.clone(), group.join_response(id)))
            .collect();
        for (id, answer) in answers {
            if let Some(m) = group.members.get_mut(&id) {
                m.session_deadline = now + m.session_timeout;
                if let Some(r) = m.awaiting_join.take() {
                    let _ = r.send(answer);
                }
            }
        }
        tracing::info!(group = %group_id, generation = group.generation, members = group.members.len(), protocol = ?group.protocol, "rebalance: join complete");
    }

    pub(super) fn list(&self) -> Vec<ListedGroup> {
        self.groups
            .values()
            .map(|g| match &g.consumer {
                Some(c) => ListedGroup {
                    group_id: g.id.clone(),
                    protocol_type: "consumer".into(),
                    state: c.state(),
                    consumer_protocol: true,
                },
                None => ListedGroup {
                    group_id: g.id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    state: g.state.name(),
                    consumer_protocol: false,
                },
            })
            .collect()
    }

    /// A classic JoinGroup to a group of the consumer protocol: refused while the group has
    /// members (a group of both protocols at once is not served); an empty one becomes a
    /// classic group again (its consumer records deleted).
    async fn classic_join_to_consumer_group(&mut self, group_id: &str) -> Option<i16> {
        let g = self.groups.get_mut(group_id)?;
        let c = g.consumer.as_ref()?;
        if !c.members.is_empty() {
            return Some(error::INCONSISTENT_GROUP_PROTOCOL);
        }
        g.consumer = None;
        let entries = super::consumer::tombstones(group_id);
        self.write(group_id, entries, Pending::GroupState).await;
        None
    }

    pub(super) fn describe(&self, group_id: &str) -> DescribedGroup {
        // A consumer-protocol group is no classic group: DescribeGroups does not know it.
        let Some(g) = self.groups.get(group_id).filter(|g| g.consumer.is_none()) else {
            return DescribedGroup {
                group_id: group_id.to_string(),
                error: error::NONE,
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            };
        };
        let stable = g.state == State::Stable;
        DescribedGroup {
            group_id: group_id.to_string(),
            error: error::NONE,
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                g.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| DescribedMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    // As Kafka: metadata and assignment only once the group is stable.
                    metadata: if stable {
                        m.metadata(g.protocol.as_deref())
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }
}

/// Add a member that waits for the join phase to end.
fn add_member(
    group: &mut Group,
    id: String,
    req: &JoinRequest,
    reply: oneshot::Sender<JoinResponse>,
    now: Instant,
) {
    if group.members.is_empty() {
        group.protocol_type = Some(req.protocol_type.clone());
    }
    if let Some(i) = &req.group_instance_id {
        group.statics.insert(i.clone(), id.clone());
    }
    let joined = group.next_join;
    group.next_join += 1;
    let session_timeout = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    group.members.insert(
        id.clone(),
        Member {
            id,
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout,
            rebalance_timeout: Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64),
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some(reply),
            awaiting_sync: None,
            session_deadline: now + session_timeout,
            joined,
        },
    );
    group.member_added = true;
}

/// A known member joins again.
fn current_member_join(
    group: &mut Group,
    id: &str,
    req: &JoinRequest,
    reply: oneshot::Sender<JoinResponse>,
    now: Instant,
    initial_delay: Duration,
) {
    let is_leader = group.leader.as_deref() == Some(id);
    let state = group.state;
    let Some(m) = group.members.get_mut(id) else {
        return;
    };
    let same = m.protocols == req.protocols;
    m.session_deadline = now + Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    match state {
        State::PreparingRebalance => {
            update_member(m, req);
            // A second JoinGroup replaces the first (whose answer the client no longer waits for).
            m.awaiting_join = Some(reply);
        }
        // It lost the answer to its join: the same answer again.
        State::CompletingRebalance if same => {
            let _ = reply.send(group.join_response(id));
        }
        State::Stable if same && !is_leader => {
            let _ = reply.send(group.join_response(id));
        }
        State::CompletingRebalance | State::Stable => {
            update_member(m, req);
            m.awaiting_join = Some(reply);
            prepare_rebalance(group, now, initial_delay);
        }
        State::Empty => {
            let _ = reply.send(reject(error::UNKNOWN_MEMBER_ID, id));
        }
    }
}

fn update_member(m: &mut Member, req: &JoinRequest) {
    m.protocols = req.protocols.clone();
    m.session_timeout = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    m.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64);
    m.client_id = req.client_id.clone();
    m.client_host = req.client_host.clone();
}

/// A static member rejoins under a new member id (a restarted client): it takes the old
/// member's place. In a stable group with unchanged protocols there is no rebalance: it gets
/// the current generation (and then its assignment from SyncGroup).
fn rejoin_static(
    group: &mut Group,
    old: &str,
    new_id: &str,
    req: &JoinRequest,
    reply: oneshot::Sender<JoinResponse>,
    now: Instant,
    initial_delay: Duration,
) {
    let Some(mut m) = group.members.remove(old) else {
        return;
    };
    fail_waiters_fenced(&mut m);
    let same = m.protocols == req.protocols;
    m.id = new_id.to_string();
    m.session_deadline = now + Duration::from_millis(req.session_timeout_ms.max(0) as u64);
    if let Some(i) = &req.group_instance_id {
        group.statics.insert(i.clone(), new_id.to_string());
    }
    if group.leader.as_deref() == Some(old) {
        group.leader = Some(new_id.to_string());
    }
    let state = group.state;
    if state == State::Stable && same {
        group.members.insert(new_id.to_string(), m);
        let mut answer = group.join_response(new_id);
        // The leader need not assign again: nothing changed.
        answer.members.clear();
        let _ = reply.send(answer);
        return;
    }
    update_member(&mut m, req);
    m.awaiting_join = Some(reply);
    group.members.insert(new_id.to_string(), m);
    if state != State::PreparingRebalance {
        prepare_rebalance(group, now, initial_delay);
    }
}

/// Start a rebalance, or (already in one) see whether it can complete.
fn prepare_or_complete(group: &mut Group, now: Instant, initial_delay: Duration) {
    if group.state != State::PreparingRebalance {
        prepare_rebalance(group, now, initial_delay);
    }
}

/// A member left or expired: the group rebalances (or an ongoing rebalance may complete now).
fn member_gone(group: &mut Group, now: Instant, initial_delay: Duration) {
    match group.state {
        State::Stable | State::CompletingRebalance => prepare_rebalance(group, now, initial_delay),
        State::PreparingRebalance | State::Empty => {}
    }
}

/// Enter PreparingRebalance: members must rejoin by the rebalance deadline. A group that was
/// empty first waits `group.initial.rebalance.delay.ms` for more members.
pub(super) fn prepare_rebalance(group: &mut Group, now: Instant, initial_delay: Duration) {
    if group.state == State::CompletingRebalance {
        // The assignment being made is void: waiting SyncGroups rejoin.
        group.pending_assignment = None;
        for m in group.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(r) = m.awaiting_sync.take() {
                let _ = r.send(SyncResponse {
                    error: error::REBALANCE_IN_PROGRESS,
                    ..Default::default()
                });
            }
        }
    }
    let was_empty = group.state == State::Empty;
    group.state = State::PreparingRebalance;
    let timeout = group.rebalance_timeout();
    if was_empty && !initial_delay.is_zero() {
        let limit = now + timeout;
        group.initial_until = Some(limit);
        group.member_added = false;
        group.join_deadline = Some((now + initial_delay).min(limit));
    } else {
        group.initial_until = None;
        group.join_deadline = Some(now + timeout);
    }
}

/// A member that is removed: whatever it waits for ends with UNKNOWN_MEMBER_ID.
fn fail_waiters(mut m: Member) {
    if let Some(r) = m.awaiting_join.take() {
        let _ = r.send(reject(error::UNKNOWN_MEMBER_ID, &m.id));
    }
    if let Some(r) = m.awaiting_sync.take() {
        let _ = r.send(SyncResponse {
            error: error::UNKNOWN_MEMBER_ID,
            ..Default::default()
        });
    }
}

/// A static member replaced by a new incarnation: the old one's waits end FENCED_INSTANCE_ID.
fn fail_waiters_fenced(m: &mut Member) {
    if let Some(r) = m.awaiting_join.take() {
        let _ = r.send(reject(error::FENCED_INSTANCE_ID, &m.id));
    }
    if let Some(r) = m.awaiting_sync.take() {
        let _ = r.send(SyncResponse {
            error: error::FENCED_INSTANCE_ID,
            ..Default::default()
        });
    }
}
