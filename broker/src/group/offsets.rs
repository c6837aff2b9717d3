//! Committed offsets: OffsetCommit (answered once the offsets are durable), OffsetFetch,
//! OffsetDelete, and DeleteGroups. A commit with no generation and no member id is a
//! "simple" consumer's (manual assignment with a `group.id`): accepted while the group has no
//! members, as Kafka does.

use std::collections::BTreeSet;

use tokio::sync::oneshot;

use super::records::{Entry, OffsetValue};
use super::state::{Group, State};
use super::{Actor, CommitRequest, Committed, Pending};

/// One offset of a commit: (topic, partition, offset, leader epoch, metadata).
pub(super) type OffsetCommit = (String, i32, i64, i32, Option<String>);

/// A commit's offsets checked ([`Actor::take_offsets`]).
pub(super) struct Taken {
    pub(super) codes: Vec<i16>,
    pub(super) accepted: Vec<(String, i32, OffsetValue)>,
    pub(super) entries: Vec<Entry>,
}
use crate::protocol::error;

impl Actor {
    pub(super) async fn commit(
        &mut self,
        req: CommitRequest,
        reply: oneshot::Sender<Result<Vec<i16>, i16>>,
    ) {
        if req.group_id.is_empty() {
            let _ = reply.send(Err(error::INVALID_GROUP_ID));
            return;
        }
        let now = self.now();
        // Generation -1: a commit from outside group management (an admin client, a consumer
        // that assigns itself), taken by a group that does not exist yet or is empty, whatever
        // member id it names (Kafka's rule; librdkafka's KIP-848 consumer names one).
        let simple = req.generation < 0;
        // What a consumer-protocol member's commit is checked against (topic ids).
        let topics = if self
            .groups
            .get(&req.group_id)
            .is_some_and(|g| g.consumer.is_some())
        {
            self.topics_now()
        } else {
            Default::default()
        };
        match self.groups.get_mut(&req.group_id) {
            None if simple => {
                self.groups
                    .insert(req.group_id.clone(), Group::new(&req.group_id));
            }
            None => {
                let _ = reply.send(Err(req.unknown_group));
                return;
            }
            Some(g) if g.consumer.is_some() => {
                if let Err(code) = g.consumer_commit(&req, false, &topics) {
                    let _ = reply.send(Err(code));
                    return;
                }
            }
            Some(g) if simple && g.state == State::Empty => {}
            Some(g) => {
                let refused = if g.state == State::CompletingRebalance {
                    Some(error::REBALANCE_IN_PROGRESS)
                } else if !g.members.contains_key(&req.member_id) {
                    Some(error::UNKNOWN_MEMBER_ID)
                } else if req.generation != g.generation {
                    Some(error::ILLEGAL_GENERATION)
                } else {
                    None
                };
                // A commit counts as a heartbeat.
                if let Some(m) = g.members.get_mut(&req.member_id) {
                    m.heard_from(now);
                }
                if let Some(code) = refused {
                    let _ = reply.send(Err(code));
                    return;
                }
            }
        }
        let Taken {
            codes,
            accepted,
            entries,
        } = self.take_offsets(&req.group_id, req.offsets);
        if accepted.is_empty() {
            let _ = reply.send(Ok(codes));
            return;
        }
        let group_id = req.group_id.clone();
        self.write(
            &group_id,
            entries,
            Pending::Offsets {
                group: group_id.clone(),
                offsets: accepted,
                reply,
                codes,
            },
        )
        .await;
    }

    /// The offsets of a commit checked (metadata size, the partition exists): each one's code,
    /// those accepted with their values, and the records to write for them.
    pub(super) fn take_offsets(&self, group: &str, offsets: Vec<OffsetCommit>) -> Taken {
        let now_ms = self.clock.wall_ms();
        let mut codes = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::new();
        for (topic, partition, offset, leader_epoch, metadata) in offsets {
            let metadata = metadata.unwrap_or_default();
            let exists = self
                .store
                .topic(&topic)
                .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len());
            codes.push(if metadata.len() > self.config.offset_metadata_max_bytes {
                error::OFFSET_METADATA_TOO_LARGE
            } else if !exists {
                error::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                accepted.push((
                    topic,
                    partition,
                    OffsetValue {
                        offset,
                        leader_epoch,
                        metadata,
                        commit_ms: now_ms,
                    },
                ));
                error::NONE
            });
        }
        let entries = accepted
            .iter()
            .map(|(topic, partition, value)| Entry::Offset {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
                value: Some(value.clone()),
            })
            .collect();
        Taken {
            codes,
            accepted,
            entries,
        }
    }

    /// Offsets are durable (or not): the cache takes them, and the committer hears — the codes
    /// fixed when the commit was taken, the write's outcome for the offsets accepted.
    pub(super) fn offsets_written(
        &mut self,
        group_id: &str,
        offsets: Vec<(String, i32, OffsetValue)>,
        reply: oneshot::Sender<Result<Vec<i16>, i16>>,
        codes: Vec<i16>,
        result: Result<(), i16>,
    ) {
        let codes = match result {
            Ok(()) => {
                let g = self
                    .groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(group_id));
                for (topic, partition, value) in offsets {
                    g.offsets.insert((topic, partition), value);
                }
                codes
            }
            Err(code) => codes
                .iter()
                .map(|c| if *c == error::NONE { code } else { *c })
                .collect(),
        };
        let _ = reply.send(Ok(codes));
    }

    pub(super) fn fetch(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Result<Vec<Committed>, i16> {
        if group_id.is_empty() {
            return Err(error::INVALID_GROUP_ID);
        }
        let group = self.groups.get(group_id);
        let committed = |topic: &str, partition: i32| {
            let key = (topic.to_string(), partition);
            let unstable = require_stable
                && group.is_some_and(|g| g.pending_txn.values().any(|p| p.contains_key(&key)));
            if unstable {
                // A transaction's offset is pending: the consumer asks again (Kafka's).
                return Committed {
                    topic: topic.to_string(),
                    partition,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: None,
                    error: error::UNSTABLE_OFFSET_COMMIT,
                };
            }
            let v = group.and_then(|g| g.offsets.get(&key));
            Committed {
                topic: topic.to_string(),
                partition,
                offset: v.map_or(-1, |v| v.offset),
                leader_epoch: v.map_or(-1, |v| v.leader_epoch),
                metadata: v.map(|v| v.metadata.clone()),
                error: error::NONE,
            }
        };
        Ok(match partitions {
            Some(asked) => asked
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t, *p)))
                .map(|(t, p)| committed(t, p))
                .collect(),
            None => group
                .map(|g| g.offsets.keys().map(|(t, p)| committed(t, *p)).collect())
                .unwrap_or_default(),
        })
    }

    pub(super) async fn delete_groups(
        &mut self,
        ids: Vec<String>,
        reply: oneshot::Sender<Vec<i16>>,
    ) {
        let mut codes = Vec::with_capacity(ids.len());
        let mut doomed = Vec::new();
        for id in &ids {
            codes.push(match self.groups.get(id) {
                None => error::GROUP_ID_NOT_FOUND,
                Some(g) if g.state != State::Empty || !g.has_no_members() => error::NON_EMPTY_GROUP,
                Some(_) => {
                    doomed.push(id.clone());
                    error::NONE
                }
            });
        }
        let mut reply = Some(reply);
        let last = doomed.len();
        for (i, id) in doomed.into_iter().enumerate() {
            let Some(g) = self.groups.remove(&id) else {
                continue;
            };
            let entries = tombstones(&g);
            tracing::info!(group = %id, "group deleted");
            // The answer goes with the last write: writes are applied in the order they are made.
            let answer = (i + 1 == last)
                .then(|| reply.take())
                .flatten()
                .map(|r| (r, codes.clone()));
            self.write(&id, entries, Pending::Tombstones(answer)).await;
        }
        if let Some(r) = reply {
            let _ = r.send(codes);
        }
    }

    pub(super) async fn delete_offsets(
        &mut self,
        group_id: String,
        partitions: Vec<(String, i32)>,
        reply: oneshot::Sender<Result<Vec<i16>, i16>>,
    ) {
        let Some(g) = self.groups.get_mut(&group_id) else {
            let _ = reply.send(Err(error::GROUP_ID_NOT_FOUND));
            return;
        };
        let subscribed = subscribed_topics(g);
        let mut codes = Vec::with_capacity(partitions.len());
        let mut entries = Vec::new();
        for (topic, partition) in partitions {
            let by_consumer = g.consumer.as_ref().is_some_and(|c| {
                c.members.values().any(|m| {
                    m.meta.subscribed_names.contains(&topic)
                        || m.regex.as_ref().is_some_and(|r| r.is_match(&topic))
                })
            });
            if subscribed.contains(&topic) || by_consumer {
                codes.push(error::GROUP_SUBSCRIBED_TO_TOPIC);
                continue;
            }
            g.offsets.remove(&(topic.clone(), partition));
            entries.push(Entry::Offset {
                group: group_id.clone(),
                topic,
                partition,
                value: None,
            });
            codes.push(error::NONE);
        }
        if entries.is_empty() {
            let _ = reply.send(Ok(codes));
            return;
        }
        self.write(&group_id, entries, Pending::DeletedOffsets(reply, codes))
            .await;
    }
}

/// The records that delete a group: its offsets' and its metadata's tombstones.
pub(super) fn tombstones(g: &Group) -> Vec<Entry> {
    let mut entries: Vec<Entry> = g
        .offsets
        .keys()
        .map(|(topic, partition)| Entry::Offset {
            group: g.id.clone(),
            topic: topic.clone(),
            partition: *partition,
            value: None,
        })
        .collect();
    if g.consumer.is_some() {
        entries.extend(super::consumer::tombstones(&g.id));
    } else {
        entries.push(Entry::Group {
            group: g.id.clone(),
            value: None,
        });
    }
    entries
}

/// The topics the members of a consumer group subscribe to (from their metadata in Kafka's
/// consumer protocol); none for a group without members or of another protocol type.
fn subscribed_topics(g: &Group) -> BTreeSet<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    if g.members.is_empty() || g.protocol_type.as_deref() != Some("consumer") {
        return BTreeSet::new();
    }
    let mut topics = BTreeSet::new();
    for m in g.members.values() {
        for (_, metadata) in &m.protocols {
            let mut buf = metadata.clone();
            if buf.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([buf[0], buf[1]]);
            let _ = bytes::Buf::get_i16(&mut buf);
            if let Ok(s) = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)) {
                topics.extend(s.topics.iter().map(|t| t.to_string()));
            }
        }
    }
    topics
}
