//! ConsumerGroupHeartbeat and ConsumerGroupDescribe in the coordinator's task, and the timers
//! of consumer-protocol members (sessions, revocations), as Kafka's group coordinator does
//! them: the request checked, the group and member found (or made, or fenced), the member's
//! metadata taken, the group's epoch bumped when its subscriptions or their topics changed, a
//! new target assignment made when the epoch moved past it, the member reconciled one step,
//! the records written — and the answer sent once they are durable.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::oneshot;

use super::assign::{assign, Subscriptions, ASSIGNORS};
use super::reconcile;
use super::records::{ConsumerEntry, GroupEpoch};
use super::{
    count, rebalance_timeout, ConsumerGroup, Member, MemberState, TopicPartitions, Topics,
    LEFT_STATIC,
};
use crate::group::records::Entry;
use crate::group::state::Group;
use crate::group::{Actor, Pending};
use crate::protocol::error;

/// A ConsumerGroupHeartbeat as the coordinator takes it (Kafka's fields).
#[derive(Debug, Clone, Default)]
pub struct ConsumerHeartbeat {
    pub version: i16,
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub topic_partitions: Option<TopicPartitions>,
    pub client_id: String,
    pub client_host: String,
}

/// Its answer.
#[derive(Debug, Clone, Default)]
pub struct ConsumerHeartbeatResponse {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    pub assignment: Option<TopicPartitions>,
}

impl ConsumerHeartbeatResponse {
    pub fn refused(error: i16, message: impl Into<String>) -> Self {
        ConsumerHeartbeatResponse {
            error,
            message: Some(message.into()),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DescribedConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub assignment: TopicPartitions,
    pub target_assignment: TopicPartitions,
}

#[derive(Debug, Clone, Default)]
pub struct DescribedConsumerGroup {
    pub group_id: String,
    pub error: i16,
    pub message: Option<String>,
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<DescribedConsumerMember>,
}

type Reply = oneshot::Sender<ConsumerHeartbeatResponse>;
type Refusal = (i16, String);

fn invalid(message: &str) -> Refusal {
    (error::INVALID_REQUEST, message.to_string())
}

/// Kafka's checks of a heartbeat before it looks at the group.
fn check(req: &ConsumerHeartbeat) -> Result<(), Refusal> {
    let empty = |s: &Option<String>| s.as_deref().is_some_and(str::is_empty);
    if req.group_id.is_empty() {
        return Err(invalid("GroupId can't be empty."));
    }
    if empty(&req.instance_id) {
        return Err(invalid("InstanceId can't be empty."));
    }
    if empty(&req.rack_id) {
        return Err(invalid("RackId can't be empty."));
    }
    if (req.version >= 1 || req.member_epoch != 0) && req.member_id.is_empty() {
        return Err(invalid("MemberId can't be empty."));
    }
    if req.member_epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return Err(invalid(
                "RebalanceTimeoutMs must be provided in first request.",
            ));
        }
        if req
            .topic_partitions
            .as_ref()
            .is_none_or(|tp| !tp.is_empty())
        {
            return Err(invalid("TopicPartitions must be empty when (re-)joining."));
        }
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return Err(invalid(
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            ));
        }
    } else if req.member_epoch == LEFT_STATIC {
        if req.instance_id.is_none() {
            return Err(invalid("InstanceId can't be null."));
        }
    } else if req.member_epoch < LEFT_STATIC {
        return Err(invalid("MemberEpoch is invalid."));
    }
    // Checked here, before anything changes (a join refused later would leave its member).
    if let Some(re) = req
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        if let Err(why) = Member::compile(re) {
            return Err((
                error::INVALID_REGULAR_EXPRESSION,
                format!("SubscribedTopicRegex is invalid: {why}"),
            ));
        }
    }
    if let Some(a) = &req.server_assignor {
        if !ASSIGNORS.contains(&a.as_str()) {
            return Err((
                error::UNSUPPORTED_ASSIGNOR,
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: {}.",
                    ASSIGNORS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn is_subset(a: &TopicPartitions, b: &TopicPartitions) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|bs| ps.is_subset(bs)))
}

impl Actor {
    /// The topics a group may subscribe to, as this broker knows them now.
    pub(in crate::group) fn topics_now(&self) -> Topics {
        match &self.cluster {
            Some(c) => c
                .metadata()
                .topics
                .values()
                .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
                .collect(),
            None => self
                .store
                .topics()
                .iter()
                .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
                .collect(),
        }
    }

    pub(in crate::group) async fn consumer_heartbeat(
        &mut self,
        req: ConsumerHeartbeat,
        reply: Reply,
    ) {
        match self.heartbeat_consumer(req) {
            Err((code, message)) => {
                let _ = reply.send(ConsumerHeartbeatResponse::refused(code, message));
            }
            Ok((group, entries, response)) => {
                self.answer_after(&group, entries, Pending::Consumer(reply, response))
                    .await
            }
        }
    }

    /// Write `entries` (if any) and finish `pending` once they, and every write before them
    /// to the group's partition, are durable.
    pub(in crate::group) async fn answer_after(
        &mut self,
        group: &str,
        entries: Vec<Entry>,
        pending: Pending,
    ) {
        if !entries.is_empty() {
            return self.write(group, entries, pending).await;
        }
        let partition = crate::group::partition_for(group, self.config.offsets_partitions);
        match self.writes.get_mut(&partition) {
            Some(queue) if !queue.is_empty() => {
                let id = self.next_write;
                self.next_write += 1;
                queue.push_back(crate::group::InFlight {
                    id,
                    pending,
                    outcome: Some(Ok(())),
                });
            }
            _ => self.written(pending, Ok(())),
        }
    }

    /// The heartbeat's effect: the group, the records to write and the answer to send once
    /// they are durable; or a refusal.
    fn heartbeat_consumer(
        &mut self,
        mut req: ConsumerHeartbeat,
    ) -> Result<(String, Vec<Entry>, ConsumerHeartbeatResponse), Refusal> {
        check(&req)?;
        let now = self.now();
        let topics = self.topics_now();
        let config = self.config;
        let mut entries = Vec::new();
        let gid = req.group_id.clone();
        if req.member_epoch == 0 && req.member_id.is_empty() {
            // Version 0: the coordinator names a new member.
            req.member_id = self.new_member_id(&req.client_id);
        }
        let not_found = || {
            (
                error::GROUP_ID_NOT_FOUND,
                format!("Group {gid} is not a consumer group."),
            )
        };
        let group = match self.groups.get_mut(&gid) {
            None if req.member_epoch != 0 => return Err(not_found()),
            None => self
                .groups
                .entry(gid.clone())
                .or_insert_with(|| Group::new(&gid)),
            Some(g) => g,
        };
        if group.consumer.is_none() {
            // A classic group becomes a consumer group only while it has no members.
            if !group.members.is_empty() || req.member_epoch != 0 {
                return Err(not_found());
            }
            if group.generation > 0 || group.protocol_type.is_some() {
                entries.push(Entry::Group {
                    group: gid.clone(),
                    value: None,
                });
            }
            group.reset_classic();
            // Kafka 4.4 starts a group at epoch 1: its first member joins at 2.
            group.consumer = Some(Box::new(ConsumerGroup {
                epoch: 1,
                ..Default::default()
            }));
        }
        let cg = group.consumer.as_mut().expect("a consumer group");
        // Expressions brought in by earlier heartbeats are resolved now.
        cg.unresolved.clear();
        let mut bump = false;
        let member_id = req.member_id.clone();
        match req.member_epoch {
            0 => {
                let replaced = req
                    .instance_id
                    .as_deref()
                    .and_then(|i| cg.static_member(i))
                    .filter(|old| old.id != member_id)
                    .map(|old| (old.id.clone(), old.current.epoch));
                match replaced {
                    Some((old, epoch)) if epoch != LEFT_STATIC => {
                        return Err((
                            error::UNRELEASED_INSTANCE_ID,
                            format!(
                                "Static member {old} with instance id {} is not released.",
                                req.instance_id.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                    Some((old, _)) => {
                        // The static member is back under a new id: it takes its assignment.
                        let mut m = cg.members.remove(&old).expect("the static member");
                        let target = cg.targets.remove(&old);
                        entries.extend(member_tombstones(&gid, &old));
                        m.id = member_id.clone();
                        m.current.epoch = m.current.previous_epoch.max(0);
                        // Its records under the new id (the metadata record is written
                        // whole even where nothing in it changes).
                        entries.push(Entry::Consumer(ConsumerEntry::Member {
                            group: gid.clone(),
                            member: member_id.clone(),
                            value: Some(m.meta.clone()),
                        }));
                        entries.push(Entry::Consumer(ConsumerEntry::Current {
                            group: gid.clone(),
                            member: member_id.clone(),
                            value: Some(m.current.clone()),
                        }));
                        if let Some(t) = target {
                            entries.push(Entry::Consumer(ConsumerEntry::Target {
                                group: gid.clone(),
                                member: member_id.clone(),
                                value: Some(t.clone()),
                            }));
                            cg.targets.insert(member_id.clone(), t);
                        }
                        cg.members.insert(member_id.clone(), m);
                    }
                    None if !cg.members.contains_key(&member_id) => {
                        if cg.members.len() >= config.consumer_max_size {
                            return Err((
                                error::GROUP_MAX_SIZE_REACHED,
                                format!(
                                    "The consumer group has reached its maximum capacity of {} members.",
                                    config.consumer_max_size
                                ),
                            ));
                        }
                        cg.members
                            .insert(member_id.clone(), Member::new(&member_id, now));
                        bump = true;
                    }
                    None => {}
                }
            }
            epoch => {
                let Some(m) = cg.members.get(&member_id) else {
                    return Err((
                        error::UNKNOWN_MEMBER_ID,
                        format!("Member {member_id} is not a member of group {gid}."),
                    ));
                };
                if req.instance_id.is_some() && m.meta.instance_id != req.instance_id {
                    return Err((
                        error::FENCED_INSTANCE_ID,
                        format!("Member {member_id} has another instance id."),
                    ));
                }
                if epoch == -1 || epoch == LEFT_STATIC {
                    return Ok(self.consumer_leave(&gid, &member_id, epoch, entries));
                }
                let c = &m.current;
                let fenced = epoch > c.epoch
                    || (epoch < c.epoch
                        && (epoch != c.previous_epoch
                            || !req
                                .topic_partitions
                                .as_ref()
                                .is_some_and(|tp| is_subset(tp, &c.assigned))));
                if fenced {
                    return Err((
                        error::FENCED_MEMBER_EPOCH,
                        format!(
                            "The consumer group member has a smaller member epoch ({epoch}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                            c.epoch
                        ),
                    ));
                }
            }
        }
        // An expression no member has yet is resolved at the group's next heartbeat.
        let new_regex = req
            .subscribed_topic_regex
            .as_ref()
            .filter(|r| !r.is_empty())
            .filter(|r| {
                !cg.members
                    .values()
                    .any(|o| o.meta.subscribed_regex.as_ref() == Some(*r))
            })
            .cloned();
        // The member's metadata.
        let m = cg.members.get_mut(&member_id).expect("the member");
        let before = m.meta.clone();
        let meta = &mut m.meta;
        if req.instance_id.is_some() {
            meta.instance_id = req.instance_id.clone();
        }
        if req.rack_id.is_some() {
            meta.rack_id = req.rack_id.clone();
        }
        meta.client_id = req.client_id.clone();
        meta.client_host = req.client_host.clone();
        if req.rebalance_timeout_ms > 0 {
            meta.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(names) = &req.subscribed_topic_names {
            let set: BTreeSet<&String> = names.iter().collect();
            meta.subscribed_names = set.into_iter().cloned().collect();
        }
        if let Some(re) = &req.subscribed_topic_regex {
            let re = (!re.is_empty()).then(|| re.clone());
            if re != meta.subscribed_regex {
                // Compiled once by `check` already.
                m.regex = re.as_deref().and_then(|r| Member::compile(r).ok());
                m.meta.subscribed_regex = re;
                cg.unresolved.extend(new_regex);
            }
        }
        if req.server_assignor.is_some() {
            m.meta.server_assignor = req.server_assignor.clone();
        }
        if m.meta != before {
            bump |= m.meta.subscribed_names != before.subscribed_names
                || m.meta.subscribed_regex != before.subscribed_regex;
            entries.push(Entry::Consumer(ConsumerEntry::Member {
                group: gid.clone(),
                member: member_id.clone(),
                value: Some(m.meta.clone()),
            }));
        }
        m.session_deadline = now + config.consumer_session_timeout;
        // The subscribed topics changed (made, deleted, grown) or the subscriptions did.
        let hash = cg.hash_of(&topics);
        if bump || hash != cg.metadata_hash {
            cg.epoch += 1;
            cg.metadata_hash = hash;
            entries.push(Entry::Consumer(ConsumerEntry::Group {
                group: gid.clone(),
                value: Some(GroupEpoch {
                    epoch: cg.epoch,
                    metadata_hash: hash,
                }),
            }));
        }
        if cg.epoch > cg.assignment_epoch {
            entries.extend(new_target(&gid, cg, &topics));
        }
        // One step of the member towards its target.
        let owners = cg.owners();
        let target = cg.targets.get(&member_id).cloned().unwrap_or_default();
        let m = cg.members.get(&member_id).expect("the member");
        let held = |t: u128, p: i32| owners.get(&(t, p)).is_some_and(|o| *o != member_id);
        let next = reconcile::next(
            &m.current,
            cg.assignment_epoch,
            &target,
            held,
            req.topic_partitions.as_ref(),
        );
        let changed = next != m.current;
        let m = cg.members.get_mut(&member_id).expect("the member");
        if changed {
            m.revocation_deadline = (next.state == MemberState::UnrevokedPartitions).then(|| {
                m.revocation_deadline
                    .unwrap_or(now + rebalance_timeout(&m.meta))
            });
            m.current = next;
            entries.push(Entry::Consumer(ConsumerEntry::Current {
                group: gid.clone(),
                member: member_id.clone(),
                value: Some(m.current.clone()),
            }));
        }
        let full = req.rebalance_timeout_ms != -1
            && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
            && req.topic_partitions.is_some();
        let response = ConsumerHeartbeatResponse {
            error: error::NONE,
            message: None,
            member_id: Some(member_id),
            member_epoch: m.current.epoch,
            heartbeat_interval_ms: config.consumer_heartbeat_interval_ms,
            assignment: (changed || full || req.member_epoch == 0)
                .then(|| m.current.assigned.clone()),
        };
        Ok((gid, entries, response))
    }

    /// A member leaves: for good (epoch -1), or a static member for a while (-2, its
    /// assignment kept for it until its session ends).
    fn consumer_leave(
        &mut self,
        gid: &str,
        member_id: &str,
        epoch: i32,
        mut entries: Vec<Entry>,
    ) -> (String, Vec<Entry>, ConsumerHeartbeatResponse) {
        let wall = self.clock.wall_ms();
        let group = self.groups.get_mut(gid).expect("the group");
        let cg = group.consumer.as_mut().expect("a consumer group");
        if epoch == LEFT_STATIC {
            if let Some(m) = cg.members.get_mut(member_id) {
                m.current.previous_epoch = m.current.epoch;
                m.current.epoch = LEFT_STATIC;
                m.revocation_deadline = None;
                entries.push(Entry::Consumer(ConsumerEntry::Current {
                    group: gid.to_string(),
                    member: member_id.to_string(),
                    value: Some(m.current.clone()),
                }));
            }
        } else {
            entries.extend(remove_member(gid, cg, member_id));
        }
        if cg.members.is_empty() {
            group.empty_since_ms = wall;
        }
        let response = ConsumerHeartbeatResponse {
            member_id: Some(member_id.to_string()),
            member_epoch: epoch,
            ..Default::default()
        };
        (gid.to_string(), entries, response)
    }

    /// Members whose session ended, or who did not revoke within their rebalance timeout,
    /// are fenced (removed, the group's epoch bumped).
    pub(in crate::group) async fn expire_consumers(&mut self) {
        let now = self.now();
        let wall = self.clock.wall_ms();
        let mut writes = Vec::new();
        for (gid, g) in self.groups.iter_mut() {
            let Some(cg) = g.consumer.as_mut() else {
                continue;
            };
            let due: Vec<String> = cg
                .members
                .values()
                .filter(|m| {
                    m.session_deadline <= now || m.revocation_deadline.is_some_and(|d| d <= now)
                })
                .map(|m| m.id.clone())
                .collect();
            if due.is_empty() {
                continue;
            }
            let mut entries = Vec::new();
            for id in due {
                tracing::info!(group = %gid, member = %id, "consumer member fenced: its session or rebalance timeout expired");
                entries.extend(remove_member(gid, cg, &id));
            }
            if cg.members.is_empty() {
                g.empty_since_ms = wall;
            }
            writes.push((gid.clone(), entries));
        }
        for (gid, entries) in writes {
            self.write(&gid, entries, Pending::GroupState).await;
        }
    }

    /// OffsetFetch v9 by a member of a consumer-protocol group: it must be there, at its
    /// epoch (Kafka's UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH); other groups are not checked.
    pub(in crate::group) fn consumer_fetch_check(
        &self,
        gid: &str,
        asked: &crate::group::FetchAsked,
    ) -> Result<(), i16> {
        let Some((member, epoch)) = &asked.member else {
            return Ok(());
        };
        let Some(cg) = self.groups.get(gid).and_then(|g| g.consumer.as_ref()) else {
            return Ok(());
        };
        let m = cg.members.get(member).ok_or(error::UNKNOWN_MEMBER_ID)?;
        if *epoch != m.current.epoch {
            return Err(error::STALE_MEMBER_EPOCH);
        }
        Ok(())
    }

    pub(in crate::group) fn consumer_describe(&self, gid: &str) -> DescribedConsumerGroup {
        let cg = self.groups.get(gid).and_then(|g| g.consumer.as_ref());
        let Some(cg) = cg else {
            let exists = self.groups.contains_key(gid);
            return DescribedConsumerGroup {
                group_id: gid.to_string(),
                error: error::GROUP_ID_NOT_FOUND,
                message: Some(if exists {
                    format!("Group {gid} is not a consumer group.")
                } else {
                    format!("Group {gid} not found.")
                }),
                state: "",
                ..Default::default()
            };
        };
        DescribedConsumerGroup {
            group_id: gid.to_string(),
            error: error::NONE,
            message: None,
            state: cg.state(),
            epoch: cg.epoch,
            assignment_epoch: cg.assignment_epoch,
            assignor: cg.assignor(),
            members: cg
                .members
                .values()
                .map(|m| DescribedConsumerMember {
                    member_id: m.id.clone(),
                    instance_id: m.meta.instance_id.clone(),
                    rack_id: m.meta.rack_id.clone(),
                    member_epoch: m.current.epoch,
                    client_id: m.meta.client_id.clone(),
                    client_host: m.meta.client_host.clone(),
                    subscribed_topic_names: m.meta.subscribed_names.clone(),
                    subscribed_topic_regex: m.meta.subscribed_regex.clone(),
                    assignment: m.current.assigned.clone(),
                    target_assignment: cg.targets.get(&m.id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// The tombstones of a member's records (current assignment, target, metadata: Kafka's
/// order).
fn member_tombstones(gid: &str, member: &str) -> [Entry; 3] {
    let (group, member) = (gid.to_string(), member.to_string());
    [
        Entry::Consumer(ConsumerEntry::Current {
            group: group.clone(),
            member: member.clone(),
            value: None,
        }),
        Entry::Consumer(ConsumerEntry::Target {
            group: group.clone(),
            member: member.clone(),
            value: None,
        }),
        Entry::Consumer(ConsumerEntry::Member {
            group,
            member,
            value: None,
        }),
    ]
}

/// Remove member `id`: its records' tombstones and the group's new epoch.
fn remove_member(gid: &str, cg: &mut ConsumerGroup, id: &str) -> Vec<Entry> {
    cg.members.remove(id);
    cg.targets.remove(id);
    cg.epoch += 1;
    let mut entries = member_tombstones(gid, id).to_vec();
    entries.push(Entry::Consumer(ConsumerEntry::Group {
        group: gid.to_string(),
        value: Some(GroupEpoch {
            epoch: cg.epoch,
            metadata_hash: cg.metadata_hash,
        }),
    }));
    entries
}

/// A new target assignment at the group's epoch: the records of the members' targets that
/// changed, and of the target's epoch.
fn new_target(gid: &str, cg: &mut ConsumerGroup, topics: &Topics) -> Vec<Entry> {
    let (subscriptions, partitions) = {
        let matches = cg.regex_matches(topics);
        let subscriptions: Subscriptions = cg
            .members
            .values()
            .map(|m| {
                let subscribed = m.subscribed(topics, &matches);
                (
                    m.id.clone(),
                    subscribed.iter().map(|t| topics[*t].0).collect(),
                )
            })
            .collect();
        let partitions: BTreeMap<u128, i32> = cg
            .subscribed(topics, &matches)
            .iter()
            .map(|t| topics[*t])
            .collect();
        (subscriptions, partitions)
    };
    let targets = assign(cg.assignor(), &subscriptions, &partitions, &cg.targets);
    let mut entries = Vec::new();
    for (m, t) in &targets {
        if cg.targets.get(m) != Some(t) {
            entries.push(Entry::Consumer(ConsumerEntry::Target {
                group: gid.to_string(),
                member: m.clone(),
                value: Some(t.clone()),
            }));
        }
    }
    tracing::debug!(group = %gid, epoch = cg.epoch, members = targets.len(), partitions = targets.values().map(count).sum::<usize>(), "new target assignment");
    cg.targets = targets;
    cg.assignment_epoch = cg.epoch;
    entries.push(Entry::Consumer(ConsumerEntry::TargetEpoch {
        group: gid.to_string(),
        value: Some(cg.epoch),
    }));
    entries
}
