//! Requests about a busy transactional id (its last change being written, or its decision's
//! markers), held until it settles instead of answered CONCURRENT_TRANSACTIONS at once: a
//! client told that backs off (librdkafka for 100 ms), so every transaction begun right after a
//! commit would wait that long for its first partition. Bounded: at most [`PER_ID_MAX`] held
//! per id and [`TOTAL_MAX`] in all (more are answered CONCURRENT_TRANSACTIONS at once), each
//! for at most [`WAIT_MAX`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::Msg;

/// The longest a request waits for its id.
pub(super) const WAIT_MAX: Duration = Duration::from_secs(5);
/// Requests held for one id.
const PER_ID_MAX: usize = 8;
/// Requests held in all.
const TOTAL_MAX: usize = 4096;

#[derive(Default)]
pub(super) struct Parked {
    by_id: BTreeMap<String, VecDeque<(Instant, Msg)>>,
    total: usize,
}

/// The id a producer's call waits for when it is busy (InitProducerId, AddPartitionsToTxn and
/// AddOffsetsToTxn, EndTxn); `None` for any other request (a verification is answered at
/// once: the partition is in the transaction or not, whatever is being written).
pub(super) fn waits_for(msg: &Msg) -> Option<&str> {
    match msg {
        Msg::Init { id, .. } | Msg::End { id, .. } => Some(id),
        Msg::Add {
            id, verify_only, ..
        } if !verify_only => Some(id),
        _ => None,
    }
}

/// Answer a held request with `code`.
pub(super) fn refuse(msg: Msg, code: i16) {
    match msg {
        Msg::Init { reply, .. } => {
            let _ = reply.send(Err(code));
        }
        Msg::Add { reply, .. } | Msg::End { reply, .. } => {
            let _ = reply.send(code);
        }
        _ => {}
    }
}

impl Parked {
    /// Hold `msg` for `id` until `until`; the request back when there is no room.
    pub(super) fn park(&mut self, id: String, msg: Msg, until: Instant) -> Option<Msg> {
        let queue = self.by_id.entry(id).or_default();
        if queue.len() >= PER_ID_MAX || self.total >= TOTAL_MAX {
            return Some(msg);
        }
        queue.push_back((until, msg));
        self.total += 1;
        None
    }

    /// The first request held for an id that is no longer `busy`.
    pub(super) fn take_settled(&mut self, busy: impl Fn(&str) -> bool) -> Option<Msg> {
        let id = self
            .by_id
            .iter()
            .find(|(id, q)| !q.is_empty() && !busy(id))
            .map(|(id, _)| id.clone())?;
        let queue = self.by_id.get_mut(&id)?;
        let (_, msg) = queue.pop_front()?;
        if queue.is_empty() {
            self.by_id.remove(&id);
        }
        self.total -= 1;
        Some(msg)
    }

    /// The requests whose wait is over at `now`.
    pub(super) fn take_late(&mut self, now: Instant) -> Vec<Msg> {
        let mut late = Vec::new();
        for queue in self.by_id.values_mut() {
            while queue.front().is_some_and(|(until, _)| *until <= now) {
                late.extend(queue.pop_front().map(|(_, m)| m));
            }
        }
        self.by_id.retain(|_, q| !q.is_empty());
        self.total -= late.len();
        late
    }

    /// When the first held request's wait ends.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.by_id
            .values()
            .filter_map(|q| q.front())
            .map(|(until, _)| *until)
            .min()
    }
}
