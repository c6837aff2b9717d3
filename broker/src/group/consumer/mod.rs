//! Consumer groups of the consumer protocol (KIP-848): the broker computes the assignment.
//!
//! A group has an epoch, bumped whenever what the assignment depends on changes (a member
//! joins, leaves or changes its subscription; a subscribed topic gains partitions, is made or
//! deleted). A bumped epoch makes a new *target assignment* (the assignor's answer for every
//! member, `assign.rs`), and each member is moved towards its target one heartbeat at a time
//! (`reconcile.rs`): partitions it must give up are revoked first, and it keeps its epoch until
//! it says they are gone; only then does it take the target's epoch and the partitions no
//! other member still holds. A partition therefore never has two owners at once. Members and
//! assignments are records of `__consumer_offsets` (`records.rs`) written before the answer
//! that depends on them; the requests are handled in `heartbeat.rs`.
//!
//! Invariant: a partition is in the assigned or revoking set of at most one member; a member's
//! epoch is at most the group's target assignment epoch, which is at most the group's epoch.

mod assign;
mod heartbeat;
mod reconcile;
pub mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

pub use assign::ASSIGNORS;
pub use heartbeat::{
    ConsumerHeartbeat, ConsumerHeartbeatResponse, DescribedConsumerGroup, DescribedConsumerMember,
};

/// Partitions by topic id.
pub type TopicPartitions = BTreeMap<u128, BTreeSet<i32>>;

/// The topics a group may subscribe to: name → (id, partitions).
pub(in crate::group) type Topics = BTreeMap<String, (u128, i32)>;

/// A member's place in its reconciliation (Kafka's `MemberState` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(i8)]
pub enum MemberState {
    #[default]
    Stable = 0,
    /// It must give up partitions first (and keeps its epoch until it has).
    UnrevokedPartitions = 1,
    /// It is at the target's epoch but waits for partitions another member still holds.
    UnreleasedPartitions = 2,
    Unknown = 127,
}

impl MemberState {
    pub fn from_i8(v: i8) -> MemberState {
        match v {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Unknown,
        }
    }
}

/// What a member told about itself (its metadata record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_names: Vec<String>,
    pub subscribed_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

/// A member's current assignment (its record): its epoch, the partitions it owns and those it
/// must give up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentAssignment {
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub assigned: TopicPartitions,
    pub revoking: TopicPartitions,
}

/// The epoch of a static member that left for a while: its assignment waits for its return
/// until its session ends.
pub(super) const LEFT_STATIC: i32 = -2;

pub(super) struct Member {
    pub(super) id: String,
    pub(super) meta: MemberMetadata,
    pub(super) current: CurrentAssignment,
    pub(super) session_deadline: Instant,
    /// While it has partitions to revoke: when it is fenced if it has not.
    pub(super) revocation_deadline: Option<Instant>,
    /// Its regular expression compiled (not kept in the log).
    pub(super) regex: Option<regex::Regex>,
}

impl Member {
    pub(super) fn new(id: &str, now: Instant) -> Member {
        Member {
            id: id.to_string(),
            meta: MemberMetadata::default(),
            current: CurrentAssignment::default(),
            session_deadline: now,
            revocation_deadline: None,
            regex: None,
        }
    }

    /// The topics it subscribes to among `topics`: by name, and by its regular expression
    /// (its matches in `matches`, [`ConsumerGroup::regex_matches`]).
    pub(super) fn subscribed<'t>(
        &self,
        topics: &'t Topics,
        matches: &BTreeMap<&str, BTreeSet<&'t str>>,
    ) -> BTreeSet<&'t str> {
        let mut out: BTreeSet<&str> = self
            .meta
            .subscribed_names
            .iter()
            .filter_map(|n| topics.get_key_value(n.as_str()).map(|(k, _)| k.as_str()))
            .collect();
        if let Some(m) = self
            .meta
            .subscribed_regex
            .as_deref()
            .and_then(|r| matches.get(r))
        {
            out.extend(m.iter().copied());
        }
        out
    }

    /// Compile its regular expression, which must match a whole topic name (RE2's syntax, as
    /// Kafka's clients send).
    pub(super) fn compile(regex: &str) -> Result<regex::Regex, String> {
        regex::RegexBuilder::new(&format!("^(?:{regex})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// A consumer group's own state (its offsets are the group's, beside it).
#[derive(Default)]
pub(super) struct ConsumerGroup {
    pub(super) epoch: i32,
    /// The hash of the subscribed topics' metadata when the epoch was last bumped.
    pub(super) metadata_hash: i64,
    pub(super) assignment_epoch: i32,
    pub(super) targets: BTreeMap<String, TopicPartitions>,
    pub(super) members: BTreeMap<String, Member>,
    /// Regular expressions a member brought in that no other member had, not resolved yet:
    /// they match nothing until the group's next heartbeat resolves them. Kafka resolves a new
    /// expression in the background, so the heartbeat that brings it in is answered with the
    /// topics named by the subscription alone and the expression's topics come with a later
    /// epoch; clients (librdkafka's tests among them) count on that order.
    pub(super) unresolved: BTreeSet<String>,
}

impl ConsumerGroup {
    /// Kafka's names of a consumer group's states.
    pub(super) fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.current.epoch != self.assignment_epoch || m.current.state != MemberState::Stable
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The member whose static instance id is `instance`.
    pub(super) fn static_member(&self, instance: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.meta.instance_id.as_deref() == Some(instance))
    }

    /// The topics each distinct regular expression of its members matches (internal topics
    /// never match one, as in Kafka): each expression is run once over the topics, however
    /// many members share it.
    pub(super) fn regex_matches<'t>(
        &self,
        topics: &'t Topics,
    ) -> BTreeMap<&str, BTreeSet<&'t str>> {
        let mut regexes: BTreeMap<&str, &regex::Regex> = BTreeMap::new();
        for m in self.members.values() {
            if let (Some(text), Some(re)) = (m.meta.subscribed_regex.as_deref(), &m.regex) {
                if !self.unresolved.contains(text) {
                    regexes.insert(text, re);
                }
            }
        }
        regexes
            .into_iter()
            .map(|(text, re)| {
                let matched = topics
                    .keys()
                    .filter(|t| !crate::storage::catalog::is_internal(t) && re.is_match(t))
                    .map(String::as_str)
                    .collect();
                (text, matched)
            })
            .collect()
    }

    /// Every topic some member subscribes to.
    pub(super) fn subscribed<'t>(
        &self,
        topics: &'t Topics,
        matches: &BTreeMap<&str, BTreeSet<&'t str>>,
    ) -> BTreeSet<&'t str> {
        let mut out = BTreeSet::new();
        for m in self.members.values() {
            out.extend(
                m.meta
                    .subscribed_names
                    .iter()
                    .filter_map(|n| topics.get_key_value(n.as_str()).map(|(k, _)| k.as_str())),
            );
        }
        for matched in matches.values() {
            out.extend(matched.iter().copied());
        }
        out
    }

    /// A hash of the subscribed topics' ids and partition counts: when it changes, the
    /// assignment must be made again.
    pub(super) fn hash_of(&self, topics: &Topics) -> i64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        let matches = self.regex_matches(topics);
        for name in self.subscribed(topics, &matches) {
            let (id, parts) = topics[name];
            eat(name.as_bytes());
            eat(&id.to_be_bytes());
            eat(&parts.to_be_bytes());
        }
        h as i64
    }

    /// Who holds each partition now (assigned or revoking).
    pub(super) fn owners(&self) -> BTreeMap<(u128, i32), &str> {
        let mut out = BTreeMap::new();
        for m in self.members.values() {
            for set in [&m.current.assigned, &m.current.revoking] {
                for (t, ps) in set {
                    for p in ps {
                        out.insert((*t, *p), m.id.as_str());
                    }
                }
            }
        }
        out
    }

    /// The server assignor the members prefer most (ties: by name), or the first served.
    pub(super) fn assignor(&self) -> &'static str {
        let mut votes: BTreeMap<&'static str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.meta.server_assignor.as_deref() {
                if let Some(known) = ASSIGNORS.iter().find(|k| **k == a) {
                    *votes.entry(known).or_default() += 1;
                }
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        votes
            .into_iter()
            .find(|(_, n)| *n == best && best > 0)
            .map_or(ASSIGNORS[0], |(a, _)| a)
    }

    /// Take one of its records (load).
    pub(super) fn replay(&mut self, e: records::ConsumerEntry) {
        use records::ConsumerEntry as E;
        let placeholder = || Member::new("", Instant::now());
        match e {
            E::Group { value, .. } => {
                if let Some(v) = value {
                    self.epoch = v.epoch;
                    self.metadata_hash = v.metadata_hash;
                }
            }
            E::TargetEpoch { value, .. } => self.assignment_epoch = value.unwrap_or(0),
            E::Member { member, value, .. } => match value {
                Some(meta) => {
                    let m = self
                        .members
                        .entry(member.clone())
                        .or_insert_with(placeholder);
                    m.id = member;
                    m.meta = meta;
                }
                None => {
                    self.members.remove(&member);
                }
            },
            E::Target { member, value, .. } => match value {
                Some(t) => {
                    self.targets.insert(member, t);
                }
                None => {
                    self.targets.remove(&member);
                }
            },
            E::Current { member, value, .. } => match value {
                Some(c) => {
                    let m = self
                        .members
                        .entry(member.clone())
                        .or_insert_with(placeholder);
                    m.id = member;
                    m.current = c;
                }
                None => {
                    if let Some(m) = self.members.get_mut(&member) {
                        m.current = CurrentAssignment::default();
                    }
                }
            },
        }
    }

    /// Its live records, for a checkpoint of the offsets topic.
    pub(super) fn entries(&self, gid: &str) -> Vec<super::records::Entry> {
        use records::{ConsumerEntry as E, GroupEpoch};
        let group = || gid.to_string();
        let mut out = vec![E::Group {
            group: group(),
            value: Some(GroupEpoch {
                epoch: self.epoch,
                metadata_hash: self.metadata_hash,
            }),
        }];
        for m in self.members.values() {
            out.push(E::Member {
                group: group(),
                member: m.id.clone(),
                value: Some(m.meta.clone()),
            });
        }
        for (m, t) in &self.targets {
            out.push(E::Target {
                group: group(),
                member: m.clone(),
                value: Some(t.clone()),
            });
        }
        out.push(E::TargetEpoch {
            group: group(),
            value: Some(self.assignment_epoch),
        });
        for m in self.members.values() {
            out.push(E::Current {
                group: group(),
                member: m.id.clone(),
                value: Some(m.current.clone()),
            });
        }
        out.into_iter()
            .map(super::records::Entry::Consumer)
            .collect()
    }

    /// The earliest timer of its members.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.members
            .values()
            .flat_map(|m| [Some(m.session_deadline), m.revocation_deadline])
            .flatten()
            .min()
    }

    /// After the load: every member gets a whole session (and a member revoking its
    /// rebalance timeout) from now.
    pub(super) fn loaded(&mut self, now: Instant, session: Duration) {
        for m in self.members.values_mut() {
            m.session_deadline = now + session;
            m.regex = m
                .meta
                .subscribed_regex
                .as_deref()
                .and_then(|r| Member::compile(r).ok());
            m.revocation_deadline = (m.current.state == MemberState::UnrevokedPartitions)
                .then(|| now + rebalance_timeout(&m.meta));
        }
    }
}

impl super::state::Group {
    /// Whether a commit to this consumer-protocol group may go (Kafka's rules): one with no
    /// member epoch while the group has no members (an admin's or a simple consumer's); else
    /// the member's, through a version that carries member epochs, at its current epoch — or
    /// at its previous one for partitions it still holds (KIP-1251: a commit sent before the
    /// member heard of its new epoch), STALE_MEMBER_EPOCH otherwise (ILLEGAL_GENERATION for a
    /// transaction's, at its current epoch only).
    pub(super) fn consumer_commit(
        &self,
        req: &super::CommitRequest,
        transactional: bool,
        topics: &Topics,
    ) -> Result<(), i16> {
        use crate::protocol::error;
        let Some(c) = &self.consumer else {
            return Ok(());
        };
        if req.generation < 0 && c.members.is_empty() {
            return Ok(());
        }
        let m = c
            .members
            .get(&req.member_id)
            .ok_or(error::UNKNOWN_MEMBER_ID)?;
        if !transactional && !req.member_epoch_commit {
            return Err(error::UNSUPPORTED_VERSION);
        }
        if req.generation == m.current.epoch {
            return Ok(());
        }
        if transactional {
            return Err(error::ILLEGAL_GENERATION);
        }
        let holds = |topic: &str, p: i32| {
            topics.get(topic).is_some_and(|(id, _)| {
                [&m.current.assigned, &m.current.revoking]
                    .iter()
                    .any(|set| set.get(id).is_some_and(|ps| ps.contains(&p)))
            })
        };
        if req.generation >= 0
            && req.generation == m.current.previous_epoch
            && req.offsets.iter().all(|(t, p, ..)| holds(t, *p))
        {
            return Ok(());
        }
        tracing::debug!(group = %self.id, member = %req.member_id, epoch = req.generation, current = m.current.epoch, previous = m.current.previous_epoch, "commit refused: STALE_MEMBER_EPOCH");
        Err(error::STALE_MEMBER_EPOCH)
    }
}

/// The records that delete an empty consumer group's own state (its offsets stay).
pub(super) fn tombstones(group: &str) -> Vec<super::records::Entry> {
    use records::ConsumerEntry;
    [
        ConsumerEntry::TargetEpoch {
            group: group.to_string(),
            value: None,
        },
        ConsumerEntry::Group {
            group: group.to_string(),
            value: None,
        },
    ]
    .into_iter()
    .map(super::records::Entry::Consumer)
    .collect()
}

/// A member's rebalance timeout (a minute when it gave none).
pub(super) fn rebalance_timeout(meta: &MemberMetadata) -> Duration {
    Duration::from_millis(if meta.rebalance_timeout_ms > 0 {
        meta.rebalance_timeout_ms as u64
    } else {
        60_000
    })
}

/// The partitions of `tp` as the wire has them.
pub(super) fn count(tp: &TopicPartitions) -> usize {
    tp.values().map(BTreeSet::len).sum()
}
