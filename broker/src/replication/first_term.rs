//! A new partition's first term: led by the replica the controller named, without an
//! election.
//!
//! Invariant: a replica's first term and vote come from what it wrote, or, when it wrote no
//! term, from the metadata's record of the group (the same at every start).

/// The term and vote a replica starts with, from those it wrote (`term`, `vote`) and the first
/// leader the controller named for its group.
///
/// A new partition's first term needs no election: the controller named its first leader in
/// the record that made the partition, which every replica applies before it starts the group
/// — a vote cast in the metadata log, durable there, for term 1. So a replica that has written
/// no term yet (term 0: it never voted, nor heard of a leader) starts as having voted for that
/// leader in term 1, without writing it: the metadata gives it the same vote at every start.
/// No replica can then grant a vote in term 1 to anyone else, so the named leader is the only
/// one term 1 can have (it starts leading there: `Node::add_group`). A replica that wrote a
/// term keeps what it wrote; giving a never-cast vote to a replica is always safe, as it only
/// takes away a vote it could have given.
pub fn first_term(term: u64, vote: u64, first_leader: Option<u64>) -> (u64, u64) {
    match first_leader {
        Some(leader) if term == 0 => (1, leader),
        _ => (term, vote),
    }
}
