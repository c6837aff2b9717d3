//! The records of `__consumer_offsets`, in Kafka's own schemas (so Kafka's tools can read the
//! topic): a committed offset is keyed by (group, topic, partition), a group's metadata by the
//! group; a record without a value (a tombstone) deletes what its key names.
//!
//! Keys: version 0/1 `OffsetCommitKey { group, topic, partition }`, version 2
//! `GroupMetadataKey { group }`. Values: `OffsetCommitValue` version 3 `{ offset,
//! leader_epoch, metadata, commit_timestamp }` (versions 0–3 are read), `GroupMetadataValue`
//! version 3 `{ protocol_type, generation, protocol, leader, current_state_timestamp,
//! members[{ member_id, group_instance_id, client_id, client_host, rebalance_timeout,
//! session_timeout, subscription, assignment }] }` (versions 0–3 are read). The records of
//! consumer groups of the consumer protocol are in [`super::consumer::records`].

use bytes::{BufMut, Bytes, BytesMut};

use super::consumer::records::{ConsumerEntry, KEYS as CONSUMER_KEYS};
use crate::schema::{put_bytes, put_opt_str, put_str, Reader};

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: i64,
}

/// A member as a group's metadata record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's protocol (its subscription).
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group as its metadata record keeps it (after every completed rebalance).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_ms: i64,
    pub members: Vec<MemberValue>,
}

/// What one record of the topic says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        /// `None`: the offset was deleted.
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        /// `None`: the group was deleted.
        value: Option<GroupValue>,
    },
    /// A record of a consumer group of the consumer protocol (KIP-848).
    Consumer(ConsumerEntry),
}

impl Entry {
    /// The record's key and value bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            Entry::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                key.put_i16(1);
                put_str(&mut key, group);
                put_str(&mut key, topic);
                key.put_i32(*partition);
                let value = value.as_ref().map(|v| {
                    let mut b = BytesMut::new();
                    b.put_i16(3);
                    b.put_i64(v.offset);
                    b.put_i32(v.leader_epoch);
                    put_str(&mut b, &v.metadata);
                    b.put_i64(v.commit_ms);
                    b.freeze()
                });
                (key.freeze(), value)
            }
            Entry::Group { group, value } => {
                key.put_i16(2);
                put_str(&mut key, group);
                let value = value.as_ref().map(|g| {
                    let mut b = BytesMut::new();
                    b.put_i16(3);
                    put_str(&mut b, &g.protocol_type);
                    b.put_i32(g.generation);
                    put_opt_str(&mut b, g.protocol.as_deref());
                    put_opt_str(&mut b, g.leader.as_deref());
                    b.put_i64(g.state_ms);
                    b.put_i32(g.members.len() as i32);
                    for m in &g.members {
                        put_str(&mut b, &m.member_id);
                        put_opt_str(&mut b, m.group_instance_id.as_deref());
                        put_str(&mut b, &m.client_id);
                        put_str(&mut b, &m.client_host);
                        b.put_i32(m.rebalance_timeout_ms);
                        b.put_i32(m.session_timeout_ms);
                        put_bytes(&mut b, &m.subscription);
                        put_bytes(&mut b, &m.assignment);
                    }
                    b.freeze()
                });
                (key.freeze(), value)
            }
            Entry::Consumer(e) => e.encode(),
        }
    }

    /// The group the record is about.
    pub fn group(&self) -> &str {
        match self {
            Entry::Offset { group, .. } | Entry::Group { group, .. } => group,
            Entry::Consumer(e) => e.group(),
        }
    }

    /// Read one record; `None` for a key this broker does not know (skipped, as Kafka does).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Entry>, String> {
        let mut k = Reader(key);
        let version = k.i16()?;
        match version {
            0 | 1 => {
                let group = k.string()?;
                let topic = k.string()?;
                let partition = k.i32()?;
                let value = value
                    .map(|v| {
                        let mut r = Reader(v);
                        let version = r.i16()?;
                        let offset = r.i64()?;
                        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
                        let metadata = r.string()?;
                        let commit_ms = r.i64()?;
                        if version == 1 {
                            let _expire_ms = r.i64()?;
                        }
                        Ok::<_, String>(OffsetValue {
                            offset,
                            leader_epoch,
                            metadata,
                            commit_ms,
                        })
                    })
                    .transpose()?;
                Ok(Some(Entry::Offset {
                    group,
                    topic,
                    partition,
                    value,
                }))
            }
            2 => {
                let group = k.string()?;
                let value = value.map(decode_group).transpose()?;
                Ok(Some(Entry::Group { group, value }))
            }
            v if CONSUMER_KEYS.contains(&v) => {
                ConsumerEntry::decode(v, &mut k, value).map(|e| Some(Entry::Consumer(e)))
            }
            _ => Ok(None),
        }
    }
}

fn decode_group(v: &[u8]) -> Result<GroupValue, String> {
    let mut r = Reader(v);
    let version = r.i16()?;
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.opt_string()?;
    let leader = r.opt_string()?;
    let state_ms = if version >= 2 { r.i64()? } else { -1 };
    let n = r.i32()?;
    if n < 0 || n as usize > v.len() {
        return Err(format!("{n} members"));
    }
    let mut members = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 { r.opt_string()? } else { None };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_ms,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_tombstones_have_no_value() {
        let entries = [
            Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(OffsetValue {
                    offset: 42,
                    leader_epoch: -1,
                    metadata: "meta".into(),
                    commit_ms: 1_700_000_000_000,
                }),
            },
            Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: None,
            },
            Entry::Group {
                group: "g".into(),
                value: Some(GroupValue {
                    protocol_type: "consumer".into(),
                    generation: 7,
                    protocol: Some("range".into()),
                    leader: Some("m1".into()),
                    state_ms: 5,
                    members: vec![MemberValue {
                        member_id: "m1".into(),
                        group_instance_id: Some("static-1".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300_000,
                        session_timeout_ms: 45_000,
                        subscription: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"assign"),
                    }],
                }),
            },
            Entry::Group {
                group: "g".into(),
                value: None,
            },
        ];
        for e in entries {
            let (k, v) = e.encode();
            assert_eq!(Entry::decode(&k, v.as_deref()), Ok(Some(e.clone())));
        }
        // Another record kind is skipped; damage is an error, not a panic.
        assert_eq!(Entry::decode(&[0, 9, 1], None), Ok(None));
        assert!(Entry::decode(&[0, 1, 0, 50], None).is_err());
    }
}
