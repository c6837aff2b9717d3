//! The records of a consumer group of the consumer protocol in `__consumer_offsets`, in
//! Kafka's own schemas (keys of versions 3, 5, 6, 7 and 8; values of version 0, Kafka's
//! flexible encoding): the group's epoch, each member's metadata, the target assignment's
//! epoch, each member's target and each member's current assignment. A record without a value
//! (a tombstone) deletes what its key names. The partition metadata (key 4) and resolved
//! regular expressions (key 16), which Kafka writes too, are worked out again at load and
//! skipped.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CurrentAssignment, MemberMetadata, MemberState, TopicPartitions};
use crate::schema::{
    put_compact_len, put_compact_opt_str, put_compact_str, put_no_tags, put_str, put_uvarint,
    Reader,
};

/// The group's metadata record: its epoch and the hash of its subscribed topics' metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupEpoch {
    pub epoch: i32,
    pub metadata_hash: i64,
}

/// One record of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerEntry {
    Group {
        group: String,
        value: Option<GroupEpoch>,
    },
    Member {
        group: String,
        member: String,
        value: Option<MemberMetadata>,
    },
    TargetEpoch {
        group: String,
        value: Option<i32>,
    },
    Target {
        group: String,
        member: String,
        value: Option<TopicPartitions>,
    },
    Current {
        group: String,
        member: String,
        value: Option<CurrentAssignment>,
    },
}

/// The key versions of the records above.
pub const KEYS: [i16; 5] = [3, 5, 6, 7, 8];

fn put_partitions(b: &mut BytesMut, tp: &TopicPartitions) {
    put_compact_len(b, tp.len());
    for (id, parts) in tp {
        b.put_u128(*id);
        put_compact_len(b, parts.len());
        for p in parts {
            b.put_i32(*p);
        }
        put_no_tags(b);
    }
}

fn read_partitions(r: &mut Reader) -> Result<TopicPartitions, String> {
    let n = r.compact_len()?;
    let mut tp = TopicPartitions::new();
    for _ in 0..n {
        let id = r.uuid()?;
        let m = r.compact_len()?;
        let parts = tp.entry(id).or_default();
        for _ in 0..m {
            parts.insert(r.i32()?);
        }
        r.skip_tags()?;
    }
    Ok(tp)
}

impl ConsumerEntry {
    pub fn group(&self) -> &str {
        match self {
            ConsumerEntry::Group { group, .. }
            | ConsumerEntry::Member { group, .. }
            | ConsumerEntry::TargetEpoch { group, .. }
            | ConsumerEntry::Target { group, .. }
            | ConsumerEntry::Current { group, .. } => group,
        }
    }

    /// The record's key and value bytes.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        let mut value = BytesMut::new();
        value.put_i16(0);
        let has_value = match self {
            ConsumerEntry::Group { group, value: v } => {
                key.put_i16(3);
                put_str(&mut key, group);
                v.inspect(|g| {
                    value.put_i32(g.epoch);
                    // Tagged field 0: the metadata hash.
                    put_uvarint(&mut value, 1);
                    put_uvarint(&mut value, 0);
                    put_uvarint(&mut value, 8);
                    value.put_i64(g.metadata_hash);
                })
                .is_some()
            }
            ConsumerEntry::Member {
                group,
                member,
                value: v,
            } => {
                key.put_i16(5);
                put_str(&mut key, group);
                put_str(&mut key, member);
                v.as_ref()
                    .inspect(|m| {
                        put_compact_opt_str(&mut value, m.instance_id.as_deref());
                        put_compact_opt_str(&mut value, m.rack_id.as_deref());
                        put_compact_str(&mut value, &m.client_id);
                        put_compact_str(&mut value, &m.client_host);
                        put_compact_len(&mut value, m.subscribed_names.len());
                        for t in &m.subscribed_names {
                            put_compact_str(&mut value, t);
                        }
                        put_compact_opt_str(&mut value, m.subscribed_regex.as_deref());
                        value.put_i32(m.rebalance_timeout_ms);
                        put_compact_opt_str(&mut value, m.server_assignor.as_deref());
                        put_no_tags(&mut value);
                    })
                    .is_some()
            }
            ConsumerEntry::TargetEpoch { group, value: v } => {
                key.put_i16(6);
                put_str(&mut key, group);
                v.inspect(|e| {
                    value.put_i32(*e);
                    put_no_tags(&mut value);
                })
                .is_some()
            }
            ConsumerEntry::Target {
                group,
                member,
                value: v,
            } => {
                key.put_i16(7);
                put_str(&mut key, group);
                put_str(&mut key, member);
                v.as_ref()
                    .inspect(|tp| {
                        put_partitions(&mut value, tp);
                        put_no_tags(&mut value);
                    })
                    .is_some()
            }
            ConsumerEntry::Current {
                group,
                member,
                value: v,
            } => {
                key.put_i16(8);
                put_str(&mut key, group);
                put_str(&mut key, member);
                v.as_ref()
                    .inspect(|c| {
                        value.put_i32(c.epoch);
                        value.put_i32(c.previous_epoch);
                        value.put_i8(c.state as i8);
                        put_partitions(&mut value, &c.assigned);
                        put_partitions(&mut value, &c.revoking);
                        put_no_tags(&mut value);
                    })
                    .is_some()
            }
        };
        (key.freeze(), has_value.then(|| value.freeze()))
    }

    /// Read a record whose key is of `version` (one of [`KEYS`]); `k` is the key after its
    /// version.
    pub fn decode(version: i16, k: &mut Reader, value: Option<&[u8]>) -> Result<Self, String> {
        let group = k.string()?;
        let member = if matches!(version, 5 | 7 | 8) {
            k.string()?
        } else {
            String::new()
        };
        let mut v = value.map(Reader);
        if let Some(r) = v.as_mut() {
            let value_version = r.i16()?;
            if value_version != 0 {
                return Err(format!("value version {value_version} of key {version}"));
            }
        }
        Ok(match version {
            3 => ConsumerEntry::Group {
                group,
                value: v.map(|mut r| read_group(&mut r)).transpose()?,
            },
            5 => ConsumerEntry::Member {
                group,
                member,
                value: v.map(|mut r| read_member(&mut r)).transpose()?,
            },
            6 => ConsumerEntry::TargetEpoch {
                group,
                value: v.map(|mut r| r.i32()).transpose()?,
            },
            7 => ConsumerEntry::Target {
                group,
                member,
                value: v.map(|mut r| read_partitions(&mut r)).transpose()?,
            },
            8 => ConsumerEntry::Current {
                group,
                member,
                value: v.map(|mut r| read_current(&mut r)).transpose()?,
            },
            _ => return Err(format!("key version {version}")),
        })
    }
}

fn read_group(r: &mut Reader) -> Result<GroupEpoch, String> {
    let epoch = r.i32()?;
    let mut metadata_hash = 0;
    let tags = r.uvarint()?;
    for _ in 0..tags {
        let tag = r.uvarint()?;
        let len = r.uvarint()? as usize;
        let body = r.take(len)?;
        if tag == 0 && len == 8 {
            metadata_hash = i64::from_be_bytes(body.try_into().unwrap_or([0; 8]));
        }
    }
    Ok(GroupEpoch {
        epoch,
        metadata_hash,
    })
}

fn read_member(r: &mut Reader) -> Result<MemberMetadata, String> {
    let instance_id = r.compact_opt_string()?;
    let rack_id = r.compact_opt_string()?;
    let client_id = r.compact_string()?;
    let client_host = r.compact_string()?;
    let n = r.compact_len()?;
    let mut subscribed_names = Vec::with_capacity(n);
    for _ in 0..n {
        subscribed_names.push(r.compact_string()?);
    }
    Ok(MemberMetadata {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed_names,
        subscribed_regex: r.compact_opt_string()?,
        rebalance_timeout_ms: r.i32()?,
        server_assignor: r.compact_opt_string()?,
    })
}

fn read_current(r: &mut Reader) -> Result<CurrentAssignment, String> {
    Ok(CurrentAssignment {
        epoch: r.i32()?,
        previous_epoch: r.i32()?,
        state: MemberState::from_i8(r.i8()?),
        assigned: read_partitions(r)?,
        revoking: read_partitions(r)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::Entry;

    #[test]
    fn consumer_records_round_trip_through_the_topics_decoder() {
        let tp: TopicPartitions = [(7u128, [0, 2].into()), (9, [1].into())].into();
        let entries = [
            ConsumerEntry::Group {
                group: "g".into(),
                value: Some(GroupEpoch {
                    epoch: 4,
                    metadata_hash: -12345,
                }),
            },
            ConsumerEntry::Member {
                group: "g".into(),
                member: "m".into(),
                value: Some(MemberMetadata {
                    instance_id: Some("i".into()),
                    rack_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    subscribed_names: vec!["a".into(), "b".into()],
                    subscribed_regex: Some("t.*".into()),
                    rebalance_timeout_ms: 300_000,
                    server_assignor: Some("range".into()),
                }),
            },
            ConsumerEntry::TargetEpoch {
                group: "g".into(),
                value: Some(4),
            },
            ConsumerEntry::Target {
                group: "g".into(),
                member: "m".into(),
                value: Some(tp.clone()),
            },
            ConsumerEntry::Current {
                group: "g".into(),
                member: "m".into(),
                value: Some(CurrentAssignment {
                    epoch: 4,
                    previous_epoch: 3,
                    state: MemberState::UnrevokedPartitions,
                    assigned: tp.clone(),
                    revoking: [(9u128, [5].into())].into(),
                }),
            },
            ConsumerEntry::Current {
                group: "g".into(),
                member: "m".into(),
                value: None,
            },
        ];
        for e in entries {
            let (k, v) = e.encode();
            assert_eq!(
                Entry::decode(&k, v.as_deref()),
                Ok(Some(Entry::Consumer(e.clone())))
            );
        }
    }
}
