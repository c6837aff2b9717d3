//! Raft messages between brokers: each is `u64 group id` then the message in raft-rs's own
//! protobuf encoding, one transport message each (the transport coalesces them per peer and
//! per tick into one frame). A message that does not decode is dropped and logged by the
//! receiver, which goes on with the rest of the frame: Raft treats it as lost.
//!
//! Besides Raft's messages, a leader tells its followers that a group goes quiet
//! ([`quiesce`]): the group id with its top bit set, then the leader's term. An idle group then
//! stops ticking on every node (no heartbeats, no elections) until a write, a message or the
//! loss of its leader wakes it.

use bytes::{BufMut, Bytes, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::Message;

/// A Raft group's id on the cluster: the controller's is [`CONTROLLER_GROUP`]; a partition's
/// is given by the controller when it creates the partition.
pub type GroupId = u64;

/// The cluster metadata's group.
pub const CONTROLLER_GROUP: GroupId = 0;

/// The top bit of a group id on the wire marks a quiesce notice.
const QUIESCE_FLAG: u64 = 1 << 63;
/// The next bit marks a message of a cleaned prefix's transfer ([`PrefixMsg`]).
const PREFIX_FLAG: u64 = 1 << 62;

/// A cleaned prefix's transfer (`node::prefix`): a leader's chunk of it, or a follower's
/// answer saying how much of it it holds. `id` is the snapshot's `(index, term)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixMsg {
    Chunk {
        id: (u64, u64),
        start: i64,
        end: i64,
        offset: i64,
        batches: Bytes,
    },
    Held {
        id: (u64, u64),
        start: i64,
        end: i64,
        next: i64,
    },
}

/// Encode a prefix transfer's message for `group`.
pub fn prefix(group: GroupId, msg: &PrefixMsg) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u64(group | PREFIX_FLAG);
    match msg {
        PrefixMsg::Chunk {
            id,
            start,
            end,
            offset,
            batches,
        } => {
            out.reserve(41 + batches.len());
            out.put_u8(0);
            out.put_u64(id.0);
            out.put_u64(id.1);
            out.put_i64(*start);
            out.put_i64(*end);
            out.put_i64(*offset);
            out.put_slice(batches);
        }
        PrefixMsg::Held {
            id,
            start,
            end,
            next,
        } => {
            out.put_u8(1);
            out.put_u64(id.0);
            out.put_u64(id.1);
            out.put_i64(*start);
            out.put_i64(*end);
            out.put_i64(*next);
        }
    }
    out.freeze()
}

fn decode_prefix(bytes: &[u8]) -> Option<PrefixMsg> {
    let word = |n: usize| {
        let at = 1 + n * 8;
        bytes
            .get(at..at + 8)
            .map(|w| u64::from_be_bytes(w.try_into().expect("8 bytes")))
    };
    let id = (word(0)?, word(1)?);
    let (start, end, last) = (word(2)? as i64, word(3)? as i64, word(4)? as i64);
    match bytes.first()? {
        0 => Some(PrefixMsg::Chunk {
            id,
            start,
            end,
            offset: last,
            batches: Bytes::copy_from_slice(&bytes[41..]),
        }),
        1 if bytes.len() == 41 => Some(PrefixMsg::Held {
            id,
            start,
            end,
            next: last,
        }),
        _ => None,
    }
}

/// What a peer sent for a group.
#[derive(Debug)]
pub enum Inbound {
    Raft(GroupId, Message),
    /// The group's leader in `term` goes quiet.
    Quiesce {
        group: GroupId,
        term: u64,
    },
    Prefix(GroupId, PrefixMsg),
    /// A call between brokers, or its answer ([`super::calls`]).
    Call(super::calls::Message),
}

/// A leader's notice that `group` goes quiet in `term`.
pub fn quiesce(group: GroupId, term: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(16);
    out.put_u64(group | QUIESCE_FLAG);
    out.put_u64(term);
    out.freeze()
}

/// Decode what [`encode`] or [`quiesce`] made.
pub fn decode_inbound(bytes: &[u8]) -> Result<Inbound, WireError> {
    if bytes.len() < 8 {
        return Err(WireError::Short(bytes.len()));
    }
    let word = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    if word & QUIESCE_FLAG != 0 {
        let group = word & !QUIESCE_FLAG;
        let term = bytes
            .get(8..16)
            .filter(|_| bytes.len() == 16)
            .map(|t| u64::from_be_bytes(t.try_into().expect("8 bytes")))
            .ok_or(WireError::Short(bytes.len()))?;
        return Ok(Inbound::Quiesce { group, term });
    }
    if word == super::calls::CALL_FLAG {
        return super::calls::decode(bytes)
            .map(Inbound::Call)
            .ok_or(WireError::Call(bytes.len()));
    }
    if word & PREFIX_FLAG != 0 {
        let group = word & !PREFIX_FLAG;
        return decode_prefix(&bytes[8..])
            .map(|m| Inbound::Prefix(group, m))
            .ok_or(WireError::Prefix {
                group,
                len: bytes.len(),
            });
    }
    decode(bytes).map(|(group, m)| Inbound::Raft(group, m))
}

/// Why an inbound Raft message was dropped.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("raft message of {0} bytes is too short for its group id")]
    Short(usize),
    #[error("raft message for group {group} cannot be encoded: {source}")]
    Encode {
        group: GroupId,
        source: protobuf::ProtobufError,
    },
    #[error("a call of {0} bytes between brokers does not decode")]
    Call(usize),
    #[error("prefix transfer message of {len} bytes for group {group} does not decode")]
    Prefix { group: GroupId, len: usize },
    #[error("raft message for group {group} does not decode: {source}")]
    Decode {
        group: GroupId,
        source: protobuf::ProtobufError,
    },
}

/// Encode `message` for `group`. Fails only for a message rust-protobuf cannot size (over
/// 2 GiB), which raft never builds (its appends are bounded by `max_size_per_msg`); the caller
/// drops it as lost.
pub fn encode(group: GroupId, message: &Message) -> Result<Bytes, WireError> {
    let body = message
        .write_to_bytes()
        .map_err(|source| WireError::Encode { group, source })?;
    let mut out = BytesMut::with_capacity(8 + body.len());
    out.put_u64(group);
    out.put_slice(&body);
    Ok(out.freeze())
}

/// Decode a message encoded by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<(GroupId, Message), WireError> {
    if bytes.len() < 8 {
        return Err(WireError::Short(bytes.len()));
    }
    let group = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    let message = Message::parse_from_bytes(&bytes[8..])
        .map_err(|source| WireError::Decode { group, source })?;
    Ok((group, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    #[test]
    fn a_prefix_transfers_messages_come_back_as_they_went() {
        let chunk = PrefixMsg::Chunk {
            id: (40, 3),
            start: 0,
            end: 900,
            offset: 120,
            batches: Bytes::from_static(b"batches"),
        };
        let held = PrefixMsg::Held {
            id: (40, 3),
            start: 0,
            end: 900,
            next: 300,
        };
        for m in [chunk, held] {
            match decode_inbound(&prefix(77, &m)).expect("decodes") {
                Inbound::Prefix(group, back) => assert_eq!((group, back), (77, m)),
                other => panic!("not a prefix message: {other:?}"),
            }
        }
        let mut cut = prefix(
            77,
            &PrefixMsg::Held {
                id: (1, 1),
                start: 0,
                end: 9,
                next: 3,
            },
        )
        .to_vec();
        cut.pop();
        assert!(decode_inbound(&cut).is_err(), "a short answer is refused");
    }

    #[test]
    fn a_message_comes_back_as_it_went() {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.from = 1;
        message.to = 3;
        message.term = 7;
        message.log_term = 6;
        message.index = 41;
        message.commit = 40;
        let entry = Entry {
            term: 7,
            index: 42,
            data: vec![1, 2, 3].into(),
            ..Default::default()
        };
        message.entries = vec![entry].into();
        let bytes = encode(12, &message).expect("encodes");
        let (group, back) = decode(&bytes).expect("decodes");
        assert_eq!(group, 12);
        assert_eq!(back, message);
    }

    #[test]
    fn a_quiesce_notice_comes_back_as_it_went() {
        match decode_inbound(&quiesce(42, 7)).expect("decodes") {
            Inbound::Quiesce { group, term } => assert_eq!((group, term), (42, 7)),
            other => panic!("got {other:?}"),
        }
        assert!(decode_inbound(&quiesce(42, 7)[..12]).is_err());
        match decode_inbound(&encode(42, &Message::default()).unwrap()).expect("decodes") {
            Inbound::Raft(group, _) => assert_eq!(group, 42),
            other => panic!("got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_refused_not_trusted() {
        assert!(matches!(decode(&[0, 1, 2]), Err(WireError::Short(3))));
        let mut bytes = encode(5, &Message::default()).expect("encodes").to_vec();
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            decode(&bytes),
            Err(WireError::Decode { group: 5, .. })
        ));
    }
}
