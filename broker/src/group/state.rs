//! A group and its members: the group's state (Empty, PreparingRebalance,
//! CompletingRebalance, Stable, Dead), its generation, leader and protocol, and each member's
//! metadata, assignment and deadlines — what the rebalance protocol ([`super::membership`])
//! moves between states.
//!
//! Invariant: the generation only grows; a member belongs to one group; the protocol chosen is
//! one every member supports.

use std::collections::BTreeSet;

use super::records::{GroupValue, MemberValue, OffsetValue};
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub(super) fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    /// Protocols it supports, in its order of preference, with its metadata for each.
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) awaiting_join: Option<oneshot::Sender<JoinResponse>>,
    pub(super) awaiting_sync: Option<oneshot::Sender<SyncResponse>>,
    pub(super) session_deadline: Instant,
    /// When it first joined, for choosing a leader (the earliest that rejoined).
    pub(super) joined: u64,
}

impl Member {
    pub(super) fn metadata(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| Some(name.as_str()) == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// A heartbeat (or a commit) from it: its session starts again.
    pub(super) fn heard_from(&mut self, now: Instant) {
        self.session_deadline = now + self.session_timeout;
    }

    /// Kafka keeps a member that waits in a rebalance alive: the rebalance has its deadline.
    pub(super) fn expired(&self, now: Instant) -> bool {
        self.awaiting_join.is_none() && self.awaiting_sync.is_none() && now >= self.session_deadline
    }
}

pub(super) struct Group {
    pub(super) id: String,
    pub(super) state: State,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) generation: i32,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Static members: instance id → member id.
    pub(super) statics: BTreeMap<String, String>,
    /// New members told to rejoin with their id, until when they may.
    pub(super) pending: BTreeMap<String, Instant>,
    /// PreparingRebalance: when the join phase ends at the latest.
    pub(super) join_deadline: Option<Instant>,
    /// A new group's first rebalance: members keep arriving; it may wait until this.
    pub(super) initial_until: Option<Instant>,
    pub(super) member_added: bool,
    /// The leader's assignment being written (CompletingRebalance).
    pub(super) pending_assignment: Option<BTreeMap<String, Bytes>>,
    pub(super) next_join: u64,
    /// Committed offsets by (topic, partition).
    pub(super) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Offsets of transactions not yet decided, by producer id: committed by the
    /// transaction's commit marker, dropped by its abort marker.
    pub(super) pending_txn: BTreeMap<i64, BTreeMap<(String, i32), OffsetValue>>,
    /// When the group last became empty (wall ms; 0 if never known): its offsets expire
    /// counting from this or from their commit, whichever is later.
    pub(super) empty_since_ms: i64,
    /// A consumer group of the consumer protocol (KIP-848): its members and assignments.
    /// Then the classic part has no members.
    pub(super) consumer: Option<Box<super::consumer::ConsumerGroup>>,
}

impl Group {
    pub(super) fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: State::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            statics: BTreeMap::new(),
            pending: BTreeMap::new(),
            join_deadline: None,
            initial_until: None,
            member_added: false,
            pending_assignment: None,
            next_join: 0,
            offsets: BTreeMap::new(),
            pending_txn: BTreeMap::new(),
            empty_since_ms: 0,
            consumer: None,
        }
    }

    /// Forget the classic protocol's state (its metadata record was deleted, or the group
    /// becomes a consumer group); the offsets stay.
    pub(super) fn reset_classic(&mut self) {
        let mut fresh = Group::new(&self.id);
        fresh.offsets = std::mem::take(&mut self.offsets);
        fresh.pending_txn = std::mem::take(&mut self.pending_txn);
        fresh.empty_since_ms = self.empty_since_ms;
        fresh.consumer = self.consumer.take();
        *self = fresh;
    }

    /// Take a record of a consumer group (load).
    pub(super) fn replay(&mut self, e: super::consumer::records::ConsumerEntry) {
        use super::consumer::records::ConsumerEntry;
        if let ConsumerEntry::Group { value: None, .. } = e {
            self.consumer = None;
            return;
        }
        self.consumer.get_or_insert_with(Box::default).replay(e);
    }

    /// Take a group metadata record (load).
    pub(super) fn restore(&mut self, v: GroupValue) {
        self.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        self.generation = v.generation;
        if v.members.is_empty() {
            self.empty_since_ms = v.state_ms;
        }
        self.protocol = v.protocol;
        self.leader = v.leader;
        self.members.clear();
        self.statics.clear();
        for (i, m) in v.members.into_iter().enumerate() {
            if let Some(instance) = &m.group_instance_id {
                self.statics.insert(instance.clone(), m.member_id.clone());
            }
            let protocols = self
                .protocol
                .clone()
                .map(|p| vec![(p, m.subscription.clone())])
                .unwrap_or_default();
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: Duration::from_millis(m.session_timeout_ms.max(0) as u64),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocols,
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    session_deadline: Instant::now(),
                    joined: i as u64,
                },
            );
        }
        self.next_join = self.members.len() as u64;
    }

    /// After the load: members are Stable and get a whole session to heartbeat again.
    pub(super) fn loaded(&mut self, now: Instant, consumer_session: Duration) {
        if let Some(c) = self.consumer.as_mut() {
            c.loaded(now, consumer_session);
        }
        self.state = if self.members.is_empty() {
            State::Empty
        } else {
            State::Stable
        };
        for m in self.members.values_mut() {
            m.session_deadline = now + m.session_timeout;
        }
    }

    /// An empty group with nothing committed holds nothing: it can go.
    pub(super) fn is_dead(&self) -> bool {
        self.state == State::Empty
            && self.members.is_empty()
            && self.offsets.is_empty()
            && self.consumer.is_none()
    }

    /// No member of either protocol.
    pub(super) fn has_no_members(&self) -> bool {
        self.members.is_empty() && self.consumer.as_ref().is_none_or(|c| c.members.is_empty())
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .map(|m| m.session_deadline);
        sessions
            .chain(self.pending.values().copied())
            .chain(self.join_deadline)
            .chain(self.consumer.as_ref().and_then(|c| c.next_deadline()))
            .min()
    }

    /// The protocol type and some protocol are ones the group's members all speak.
    pub(super) fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == name))
            })
    }

    /// Kafka's vote: each member votes for its most preferred protocol all members support.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let common: BTreeSet<&str> = self
            .members
            .values()
            .map(|m| {
                m.protocols
                    .iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<BTreeSet<_>>()
            })
            .reduce(|a, b| a.intersection(&b).copied().collect())
            .unwrap_or_default();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m
                .protocols
                .iter()
                .find(|(p, _)| common.contains(p.as_str()))
            {
                *votes.entry(p.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(p, _)| p.to_string())
    }

    pub(super) fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    pub(super) fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// The static instance id `instance` belongs to another member: this one is fenced.
    pub(super) fn fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        instance
            .and_then(|i| self.statics.get(i))
            .is_some_and(|owner| owner != member_id)
    }

    pub(super) fn join_response(&self, member_id: &str) -> JoinResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResponse {
            error: error::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.metadata(self.protocol.as_deref()),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The metadata record of the group as it is now.
    pub(super) fn value(&self, now_ms: i64) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_ms: now_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: m.metadata(self.protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let m = self.members.remove(member_id)?;
        if let Some(i) = &m.instance_id {
            if self.statics.get(i).is_some_and(|owner| owner == member_id) {
                self.statics.remove(i);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        Some(m)
    }
}
