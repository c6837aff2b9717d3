//! Membership changes between raft-rs's types and what the log keeps of them
//! ([`crate::storage::log::conf`]): a change entry's bytes in the log are its entry type (one
//! byte) and raft-rs's encoding of the change; a membership is a [`ConfRecord`].

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeSingle, ConfChangeV2, ConfState, Entry, EntryType};

use crate::storage::log::conf::ConfRecord;

/// Whether a Raft entry is a membership change (either of raft-rs's kinds).
pub fn is_change(e: &Entry) -> bool {
    matches!(
        e.get_entry_type(),
        EntryType::EntryConfChange | EntryType::EntryConfChangeV2
    )
}

/// What the log keeps of a membership change entry.
pub fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + e.data.len());
    out.push(e.get_entry_type() as u8);
    out.extend_from_slice(&e.data);
    out
}

/// The membership change entry `index` of `term` whose log bytes are `kept`; `None` for bytes
/// no change was written as.
pub fn decode_entry(index: u64, term: u64, kept: &[u8]) -> Option<Entry> {
    let (&ty, data) = kept.split_first()?;
    let entry_type = match ty {
        t if t == EntryType::EntryConfChange as u8 => EntryType::EntryConfChange,
        t if t == EntryType::EntryConfChangeV2 as u8 => EntryType::EntryConfChangeV2,
        _ => return None,
    };
    Some(Entry {
        entry_type,
        index,
        term,
        data: Bytes::copy_from_slice(data),
        ..Default::default()
    })
}

/// The change a membership change entry makes, as raft-rs applies it.
pub fn change_of(e: &Entry) -> Result<ConfChangeV2, String> {
    match e.get_entry_type() {
        EntryType::EntryConfChangeV2 => {
            ConfChangeV2::parse_from_bytes(&e.data).map_err(|err| err.to_string())
        }
        EntryType::EntryConfChange => {
            let cc = ConfChange::parse_from_bytes(&e.data).map_err(|err| err.to_string())?;
            let mut single = ConfChangeSingle::default();
            single.set_change_type(cc.get_change_type());
            single.node_id = cc.node_id;
            let mut v2 = ConfChangeV2::default();
            v2.changes.push(single);
            Ok(v2)
        }
        EntryType::EntryNormal => Err("not a membership change".into()),
    }
}

/// The membership after the changes through `index`.
/// (Each list in id order: raft-rs keeps sets, whose order differs between replicas.)
pub fn record(index: u64, cs: &ConfState) -> ConfRecord {
    let sorted = |ids: &[u64]| {
        let mut v = ids.to_vec();
        v.sort_unstable();
        v
    };
    ConfRecord {
        index,
        voters: sorted(&cs.voters),
        learners: sorted(&cs.learners),
        voters_outgoing: sorted(&cs.voters_outgoing),
        learners_next: sorted(&cs.learners_next),
        auto_leave: cs.auto_leave,
    }
}

/// raft-rs's view of a recorded membership.
pub fn state(r: &ConfRecord) -> ConfState {
    ConfState {
        voters: r.voters.clone(),
        learners: r.learners.clone(),
        voters_outgoing: r.voters_outgoing.clone(),
        learners_next: r.learners_next.clone(),
        auto_leave: r.auto_leave,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType};

    #[test]
    fn a_change_entry_comes_back_from_its_log_bytes_as_raft_rs_wrote_it() {
        let mut cc = ConfChangeV2::default();
        cc.set_transition(ConfChangeTransition::Explicit);
        let mut add = ConfChangeSingle::default();
        add.set_change_type(ConfChangeType::AddLearnerNode);
        add.node_id = 4;
        cc.changes.push(add);
        let e = Entry {
            entry_type: EntryType::EntryConfChangeV2,
            index: 7,
            term: 3,
            data: cc.write_to_bytes().unwrap().into(),
            ..Default::default()
        };
        let back = decode_entry(7, 3, &encode_entry(&e)).expect("decodes");
        assert_eq!(back, e);
        assert_eq!(change_of(&back).unwrap(), cc);
        // Leaving a joint configuration is an empty change.
        let leave = Entry {
            entry_type: EntryType::EntryConfChangeV2,
            ..Default::default()
        };
        let back = decode_entry(9, 3, &encode_entry(&leave)).unwrap();
        assert!(change_of(&back).unwrap().leave_joint());
        assert_eq!(decode_entry(1, 1, &[]), None);
        assert_eq!(decode_entry(1, 1, &[EntryType::EntryNormal as u8]), None);
        let cs = ConfState {
            voters: vec![1, 2],
            learners: vec![4],
            voters_outgoing: vec![1, 2, 3],
            ..Default::default()
        };
        assert_eq!(state(&record(5, &cs)), cs);
    }
}
