//! raft-rs's [`Storage`] over a replicated partition's log (docs/design.md: "the partition log is
//! the Raft log"). raft-rs asks synchronously; the log answers asynchronously. What this keeps
//! in memory so that every question raft-rs asks is answered at once:
//! - the *tail*: the base offset and term of every recent entry ([`OffsetTranslator`]) — every
//!   entry above the commit, which Raft may cut, and some below it; older terms come from the
//!   log's record of term starts ([`ReplicaMeta`](crate::storage::log::replica::ReplicaMeta));
//! - the *cache*: the data of the latest entries — all those handed to the commit pipeline and
//!   not yet durable (raft-rs reads them back once they leave its unstable log), and recent
//!   durable ones (a follower a little behind is sent them without a disk read), within a bound.
//!
//! Entries a lagging follower needs from further back are read from the log without holding
//! raft-rs up: `entries` answers `LogTemporarilyUnavailable` and asks the node's loop for the
//! read ([`PartitionStorage::take_fetches`]), which makes it within the catch-up budgets
//! ([`super::catch_up`]); once read, raft-rs is told (`on_entries_fetched`) and asks again.
//! One read per first index, however often raft-rs asks for it meanwhile (each heartbeat
//! answer of a lagging follower asks again): every ask used to become a read of its own, and
//! every failed read as many again. Committed entries are handed to the application without their data: the
//! application of a partition's entry is only that its records become visible (the high
//! watermark moves), so nothing needs reading. A follower behind the first entry the log still
//! holds (retention deleted the rest) is sent a snapshot: "start your log at this offset".
//!
//! Membership changes are the exception to "committed entries without their data": raft-rs
//! must see them whole (it will not campaign while one is committed and not applied, and the
//! application applies them), so their bytes are kept here too, from the log's record of them
//! ([`crate::storage::log::conf`]); a snapshot carries the membership the leader has applied.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError as RaftStorageError};

use super::conf;
use super::first_term::first_term;
pub use super::followers_cache::FollowersCache;
use super::offsets::OffsetTranslator;
use crate::storage::log::conf::ConfRecord;
use crate::storage::log::replica::HardStateRecord;
use crate::storage::log::Partition;

/// Bytes of durable entries' data kept for followers a little behind (per group), always.
const CACHE_BYTES_MAX: usize = 1 << 20;
/// Bytes of durable entries' data a group keeps at most because a connected follower has not
/// acknowledged them (within the broker-wide [`FollowersCache`] too).
const CACHE_HELD_BYTES_MAX: usize = 32 << 20;

/// Entries below the commit kept in the tail before it is compacted.
const TAIL_KEEP: u64 = 4096;
/// Reads waiting per group, at most (a group asks for one per follower at a time; more
/// come from followers whose progress moved meanwhile — the oldest go).
const READS_MAX: usize = 16;
/// raft-rs's asks kept per read, at most: equal asks are kept once, and an ask dropped is
/// made again at the follower's next heartbeat answer.
const CONTEXTS_MAX: usize = 8;

/// A read of entries from the log that raft-rs is waiting for.
struct Read {
    max_bytes: u64,
    /// What to hand back to raft-rs once the entries are there, each once.
    contexts: Vec<GetEntriesContext>,
    /// The node's loop took it ([`PartitionStorage::take_fetches`]).
    taken: bool,
}

/// raft-rs's storage for one replicated partition (see the module doc).
pub struct PartitionStorage {
    partition: Arc<Partition>,
    inner: Mutex<Inner>,
    followers_cache: Arc<FollowersCache>,
}

struct Inner {
    hard_state: HardState,
    /// The membership after the changes applied through `conf_index`.
    conf_state: ConfState,
    conf_index: u64,
    /// The membership changes the log holds, by index, as the log keeps them
    /// ([`conf::encode_entry`]).
    confs: BTreeMap<u64, Bytes>,
    tail: OffsetTranslator,
    /// The tail's offsets are relative until a write says where they lie (a cut reached before
    /// the tail after a start).
    tail_unplaced: bool,
    /// Entries with data, contiguous, up to the log's last entry.
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    /// The lowest index a connected follower has not acknowledged (the leader's view; none
    /// otherwise): durable entries from it on are kept past the floor, within the bounds.
    needed_from: u64,
    /// What this group counts in the broker's [`FollowersCache`].
    held_accounted: usize,
    /// Entries below this index are durable.
    durable_next: u64,
    /// A snapshot taken in and not yet durable: `(index, term)` of its point.
    pending_reset: Option<(u64, u64)>,
    /// The reset that makes it durable, as written (a failed write is retried with it).
    reset_write: Option<crate::storage::RaftReset>,
    /// Reads raft-rs waits for, by their first index.
    reads: BTreeMap<u64, Read>,
    /// A finished read's entries while raft-rs is told of them ([`PartitionStorage::fetched`]
    /// to [`PartitionStorage::fetch_handed_over`]).
    fetched: Option<(u64, Vec<Entry>)>,
    /// The log's first index as of a version of the partition's state (raft-rs asks for it
    /// on nearly every call: reading it from the state each time took its lock each time).
    first_index: Cell<Option<(u64, u64)>>,
}

impl Drop for PartitionStorage {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        self.followers_cache.account(inner.held_accounted, 0);
    }
}

fn unavailable() -> raft::Error {
    raft::Error::Store(RaftStorageError::Unavailable)
}

fn compacted() -> raft::Error {
    raft::Error::Store(RaftStorageError::Compacted)
}

impl PartitionStorage {
    /// The storage of `partition` (replicated, just recovered) for a group first made of
    /// `voters` (its membership is the log's record's once a change was applied).
    /// `first_leader`: the replica named to lead the group's term 1 ([`first_term`]).
    pub fn open(
        partition: Arc<Partition>,
        voters: Vec<u64>,
        first_leader: Option<u64>,
        followers_cache: Arc<FollowersCache>,
    ) -> Result<Self, String> {
        let (tail, hard_state, next_index, confs, applied) = {
            let mut st = partition.state_mut();
            let end = st.log_end_offset();
            let r = st.replica.as_mut().ok_or_else(|| {
                format!("{}-{} is not replicated", partition.topic, partition.index)
            })?;
            let recovered = std::mem::take(&mut r.recovered_tail);
            let first = r.next_index - recovered.len() as u64;
            let mut tail =
                OffsetTranslator::new(first, recovered.first().map_or(end, |t| t.base_offset));
            for t in &recovered {
                tail.push(t.records, t.term);
            }
            if tail.log_end_offset() != end {
                return Err(format!(
                    "{}-{}: the recovered entries end at offset {} but the log at {end}",
                    partition.topic,
                    partition.index,
                    tail.log_end_offset()
                ));
            }
            let confs: BTreeMap<u64, Bytes> = r
                .meta
                .confs
                .entries
                .iter()
                .map(|e| (e.index, Bytes::from(e.change.clone())))
                .collect();
            (
                tail,
                r.hard_state,
                r.next_index,
                confs,
                r.meta.confs.applied.clone(),
            )
        };
        let (term, vote) = first_term(hard_state.term, hard_state.vote, first_leader);
        let hs = HardState {
            term,
            vote,
            commit: hard_state.commit,
            ..Default::default()
        };
        let (conf_state, conf_index) = match &applied {
            Some(r) => (conf::state(r), r.index),
            None => (
                ConfState {
                    voters,
                    ..Default::default()
                },
                0,
            ),
        };
        let storage = PartitionStorage {
            partition,
            inner: Mutex::new(
                "replication.storage",
                Inner {
                    hard_state: hs,
                    conf_state,
                    conf_index,
                    confs,
                    tail,
                    tail_unplaced: false,
                    cache: VecDeque::new(),
                    cache_bytes: 0,
                    needed_from: u64::MAX,
                    held_accounted: 0,
                    durable_next: next_index,
                    pending_reset: None,
                    reset_write: None,
                    reads: BTreeMap::new(),
                    fetched: None,
                    first_index: Cell::new(None),
                },
            ),
            followers_cache,
        };
        // Everything before the log's first entry was committed (retention and snapshots
        // take only committed entries), though the hard state on disk may say less: its
        // commit is written with the term and vote, not at every commit.
        {
            let mut inner = storage.lock();
            let before_first = storage.first_index_of(&inner) - 1;
            if inner.hard_state.commit < before_first {
                inner.hard_state.commit = before_first;
            }
        }
        Ok(storage)
    }

    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    #[track_caller]
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take entries a Ready hands over (not yet durable): they replace any entries from the
    /// first one's index on. Returns the index the log must be cut back to first, if any, and
    /// the entries as the log writes them.
    pub fn append(&self, entries: &[Entry]) -> (Option<u64>, Vec<crate::storage::RaftEntry>) {
        let mut inner = self.lock();
        let Some(first) = entries.first().map(|e| e.index) else {
            return (None, Vec::new());
        };
        let mut cut = None;
        if first < inner.tail.next_index() {
            if first < inner.tail.first_index() {
                // The cut reaches before what the tail describes (after a start): where it
                // lands is known once the log has made it.
                inner.tail = OffsetTranslator::new(first, 0);
                inner.tail_unplaced = true;
            } else {
                inner.tail.truncate_from(first);
            }
            inner.confs.split_off(&first);
            while inner.cache.back().is_some_and(|e| e.index >= first) {
                let e = inner.cache.pop_back().expect("checked");
                inner.cache_bytes -= e.data.len();
            }
            inner.durable_next = inner.durable_next.min(first);
            cut = Some(first);
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let logged = log_entry(e);
            if conf::is_change(e) {
                inner
                    .confs
                    .insert(e.index, Bytes::from(conf::encode_entry(e)));
            }
            let records = if e.data.is_empty() || conf::is_change(e) {
                1
            } else {
                crate::batch::parse_header(&e.data)
                    .map(|h| {
                        crate::coverage::reached_when(
                            crate::coverage::Event::CleanedEntriesReplicated,
                            || i64::from(h.record_count) <= i64::from(h.last_offset_delta),
                        );
                        (h.last_offset_delta as u32).saturating_add(1)
                    })
                    .unwrap_or(1)
            };
            inner.tail.push(records, e.term);
            if inner.cache.back().is_some_and(|c| c.index + 1 != e.index) {
                inner.cache.clear();
                inner.cache_bytes = 0;
            }
            inner.cache_bytes += e.data.len();
            inner.cache.push_back(e.clone());
            out.push(logged);
        }
        self.account(&mut inner);
        (cut, out)
    }

    /// A write the log made durable: everything below `next_index`, which the log says ends at
    /// `next_offset`.
    pub fn written(&self, next_index: u64, next_offset: i64) {
        let mut inner = self.lock();
        if inner.tail_unplaced {
            if let Some(end) = inner.tail.end_offset(next_index - 1) {
                inner.tail.shift(next_offset - end);
                inner.tail_unplaced = false;
            }
        }
        inner.durable_next = inner.durable_next.max(next_index);
        if inner
            .pending_reset
            .is_some_and(|(index, _)| index < next_index)
        {
            inner.pending_reset = None;
            inner.reset_write = None;
        }
        self.evict(&mut inner);
    }

    /// The leader's view of its followers: the lowest index an active one has not
    /// acknowledged (`u64::MAX` when none, or when this replica does not lead).
    pub fn keep_for_followers(&self, needed_from: u64) {
        let mut inner = self.lock();
        if inner.needed_from != needed_from {
            inner.needed_from = needed_from;
            self.evict(&mut inner);
        }
    }

    /// Drop durable entries past the floor that no connected follower needs, or that the
    /// group's or the broker's bound has no room for; then account what is held.
    fn evict(&self, inner: &mut Inner) {
        while inner.cache_bytes > CACHE_BYTES_MAX {
            let Some(front) = inner.cache.front() else {
                break;
            };
            if front.index >= inner.durable_next {
                // raft-rs reads entries back from here until they are durable.
                break;
            }
            let needed = front.index >= inner.needed_from
                && inner.cache_bytes <= CACHE_BYTES_MAX + CACHE_HELD_BYTES_MAX
                && !self.followers_cache.full();
            if needed {
                break;
            }
            let e = inner.cache.pop_front().expect("checked");
            inner.cache_bytes -= e.data.len();
        }
        self.account(inner);
    }

    /// Bring the broker-wide count up to date with this group's cache.
    fn account(&self, inner: &mut Inner) {
        let held = inner.cache_bytes.saturating_sub(CACHE_BYTES_MAX);
        if held != inner.held_accounted {
            self.followers_cache.account(inner.held_accounted, held);
            inner.held_accounted = held;
        }
    }

    /// The hard state raft-rs now has (made durable by the next write when its term or vote
    /// changed).
    pub fn set_hard_state(&self, hs: &HardState) -> HardStateRecord {
        let mut inner = self.lock();
        inner.hard_state = hs.clone();
        HardStateRecord {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        }
    }

    /// A snapshot raft-rs took in: the log starts afresh after `reset.index` at `reset.offset`,
    /// with the leader's membership `conf`.
    pub fn take_snapshot(&self, reset: crate::storage::RaftReset, conf: &ConfRecord) {
        let (index, term, offset) = (reset.index, reset.term, reset.offset);
        let mut inner = self.lock();
        inner.confs.clear();
        inner.conf_state = conf::state(conf);
        inner.conf_index = conf.index;
        inner.tail = OffsetTranslator::new(index + 1, offset);
        inner.tail_unplaced = false;
        inner.cache.clear();
        inner.cache_bytes = 0;
        self.account(&mut inner);
        inner.fetched = None;
        inner.reads.clear();
        inner.durable_next = index + 1;
        inner.pending_reset = Some((index, term));
        inner.reset_write = Some(reset);
        inner.hard_state.commit = inner.hard_state.commit.max(index);
    }

    /// The Kafka offset after entry `index`: the high watermark when `index` is the commit.
    /// `None` when the tail does not describe it (an old entry, or not placed yet).
    pub fn end_offset(&self, index: u64) -> Option<i64> {
        let inner = self.lock();
        if inner.tail_unplaced {
            return None;
        }
        inner.tail.end_offset(index)
    }

    /// The base offset of entry `index`, if the tail describes it.
    pub fn base_offset(&self, index: u64) -> Option<i64> {
        let inner = self.lock();
        if inner.tail_unplaced {
            return None;
        }
        inner.tail.base_offset(index)
    }

    /// Forget the tail's entries well below `commit` (they are found through the log's record
    /// when asked for).
    pub fn compact(&self, commit: u64) {
        let mut inner = self.lock();
        if inner.tail.len() as u64 > 2 * TAIL_KEEP && !inner.tail_unplaced {
            let to = commit.min(inner.durable_next).saturating_sub(TAIL_KEEP);
            inner.tail.compact_to(to);
        }
    }

    /// Reads raft-rs asked for that the loop has not taken yet: `(first index, bytes at most)`.
    pub fn take_fetches(&self) -> Vec<(u64, u64)> {
        let mut inner = self.lock();
        inner
            .reads
            .iter_mut()
            .filter(|(_, r)| !r.taken)
            .map(|(&low, r)| {
                r.taken = true;
                (low, r.max_bytes)
            })
            .collect()
    }

    /// The read from `low` is given up (raft-rs no longer needs it, or it failed): raft-rs asks
    /// again when it needs it.
    pub fn abandon_fetch(&self, low: u64) {
        self.lock().reads.remove(&low);
    }

    /// Entries read from `low` on: the asks to hand back to raft-rs, which takes the entries
    /// from here as it is told; then [`PartitionStorage::fetch_handed_over`].
    pub fn fetched(&self, low: u64, entries: Vec<Entry>) -> Vec<GetEntriesContext> {
        let mut inner = self.lock();
        let contexts = inner.reads.remove(&low).map(|r| r.contexts);
        if entries.is_empty() {
            return Vec::new();
        }
        inner.fetched = Some((low, entries));
        contexts.unwrap_or_default()
    }

    /// raft-rs has been told of the last read: its entries are not kept (a follower that needs
    /// them again is read for again).
    pub fn fetch_handed_over(&self) {
        self.lock().fetched = None;
    }

    /// Where entry `index` lies, if the tail knows: its base offset.
    pub fn tail_covers(&self, index: u64) -> bool {
        let inner = self.lock();
        !inner.tail_unplaced && inner.tail.base_offset(index).is_some()
    }

    fn first_index_of(&self, inner: &Inner) -> u64 {
        if let Some((index, _)) = inner.pending_reset {
            return index + 1;
        }
        let version = self.partition.state_version();
        if let Some((at, first)) = inner.first_index.get() {
            if at == version {
                return first;
            }
        }
        let st = self.partition.state();
        let first = match st.replica.as_ref() {
            None => 1,
            Some(r) => {
                let first_base = r
                    .meta
                    .entries_from(st.segments.keys().next().copied().unwrap_or(0));
                r.meta
                    .segments
                    .get(&first_base)
                    .copied()
                    .unwrap_or(r.meta.prev.0 + 1)
            }
        };
        inner.first_index.set(Some((version, first)));
        first
    }

    fn term_of(&self, inner: &Inner, index: u64) -> raft::Result<u64> {
        if let Some(term) = inner.tail.term(index) {
            return Ok(term);
        }
        if let Some((at, term)) = inner.pending_reset {
            return if index == at {
                Ok(term)
            } else if index < at {
                Err(compacted())
            } else {
                Err(unavailable())
            };
        }
        if index >= inner.tail.next_index() {
            return Err(unavailable());
        }
        let first = self.first_index_of(inner);
        if index + 1 < first {
            return Err(compacted());
        }
        let st = self.partition.state();
        st.replica
            .as_ref()
            .and_then(|r| r.meta.term_of(index))
            .ok_or_else(unavailable)
    }
}

impl Storage for PartitionStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let inner = self.lock();
        Ok(RaftState::new(
            inner.hard_state.clone(),
            inner.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        let mut inner = self.lock();
        if low < self.first_index_of(&inner) {
            return Err(compacted());
        }
        if high > inner.tail.next_index() {
            return Err(unavailable());
        }
        if !context.can_async() {
            // Committed entries for the application, or a look for membership changes: the
            // index and term are all that is needed, but for the changes themselves.
            let mut out = Vec::with_capacity((high - low).min(4096) as usize);
            for index in low..high {
                let term = self.term_of(&inner, index)?;
                let change = inner
                    .confs
                    .get(&index)
                    .and_then(|kept| conf::decode_entry(index, term, kept));
                out.push(change.unwrap_or(Entry {
                    entry_type: EntryType::EntryNormal,
                    index,
                    term,
                    ..Default::default()
                }));
            }
            raft::util::limit_size(&mut out, max_size);
            return Ok(out);
        }
        let from_cache = inner.cache.front().is_some_and(|first| first.index <= low);
        let mut out: Vec<Entry> = if from_cache {
            let first = inner.cache.front().map_or(low, |e| e.index);
            inner
                .cache
                .iter()
                .skip((low - first) as usize)
                .take((high - low) as usize)
                .cloned()
                .collect()
        } else if let Some((_, got)) = inner.fetched.as_ref().filter(|(l, _)| *l == low) {
            crate::coverage::reached(crate::coverage::Event::EntriesReadFromLog);
            got.iter().take_while(|e| e.index < high).cloned().collect()
        } else {
            let max_bytes = max_size.unwrap_or(1 << 20).max(1);
            if !inner.reads.contains_key(&low) && inner.reads.len() >= READS_MAX {
                let oldest = inner.reads.iter().find(|(_, r)| !r.taken).map(|(&l, _)| l);
                match oldest {
                    Some(l) => {
                        inner.reads.remove(&l);
                    }
                    None => {
                        return Err(raft::Error::Store(
                            RaftStorageError::LogTemporarilyUnavailable,
                        ))
                    }
                }
            }
            let read = inner.reads.entry(low).or_insert_with(|| Read {
                max_bytes,
                contexts: Vec::new(),
                taken: false,
            });
            // Asks are equal when they name the same follower, term and mode (raft-rs's
            // context has no other way to compare them than its description).
            let ask = format!("{context:?}");
            if read.contexts.len() < CONTEXTS_MAX
                && !read.contexts.iter().any(|c| format!("{c:?}") == ask)
            {
                read.contexts.push(context);
            }
            return Err(raft::Error::Store(
                RaftStorageError::LogTemporarilyUnavailable,
            ));
        };
        raft::util::limit_size(&mut out, max_size);
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let inner = self.lock();
        self.term_of(&inner, idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        let inner = self.lock();
        Ok(self.first_index_of(&inner))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.lock().tail.next_index() - 1)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let inner = self.lock();
        let first = self.first_index_of(&inner);
        let index = first - 1;
        if request_index > index {
            return Err(raft::Error::Store(
                RaftStorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let term = self.term_of(&inner, index)?;
        let (offset, gaps_before, prefix) = {
            let st = self.partition.state();
            let first_base = st.segments.keys().next().copied().unwrap_or(0);
            match st.replica.as_ref() {
                None => (first_base, 0, None),
                Some(r) => {
                    // A compacted log's Raft entries may begin above its cleaned prefix,
                    // which the snapshot names and the follower is sent first.
                    let from = r.meta.entries_from(first_base);
                    let gaps = &r.meta.gaps;
                    let prefix = (from > first_base).then(|| super::entries::Prefix {
                        start: first_base,
                        end: from,
                        log_start: st.log_start_offset.clamp(first_base, from),
                        gaps_before: gaps.before(first_base),
                        gaps: gaps
                            .at
                            .iter()
                            .copied()
                            .filter(|g| (first_base..from).contains(g))
                            .collect(),
                    });
                    (from, gaps.before(from), prefix)
                }
            }
        };
        // A state machine's log (the cluster metadata's) starts where a snapshot of its state
        // is: the snapshot goes with it, or none is sent yet.
        let state = if self.partition.snapshots_carry_state() {
            match self.partition.state_snapshot() {
                Some((at, text)) if at == offset => Some(text),
                _ => {
                    return Err(raft::Error::Store(
                        RaftStorageError::SnapshotTemporarilyUnavailable,
                    ))
                }
            }
        } else {
            None
        };
        let data = super::entries::snapshot_data(
            offset,
            gaps_before,
            inner.conf_index,
            state.as_deref(),
            prefix.as_ref(),
        );
        Ok(Snapshot {
            data,
            metadata: Some(SnapshotMetadata {
                conf_state: Some(inner.conf_state.clone()).into(),
                index,
                term,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
    }
}

impl PartitionStorage {
    /// Entries below this index are durable.
    pub fn durable_next(&self) -> u64 {
        self.lock().durable_next
    }

    /// A leader's snapshot taken in whose reset of the log is not durable yet: a write that
    /// failed is made again with it (what follows it in the cache depends on it).
    pub fn unwritten_reset(&self) -> Option<crate::storage::RaftReset> {
        self.lock().reset_write.clone()
    }

    /// The cached entries from `from` through `last`, as the log writes them; `None` if the
    /// cache does not hold all of them.
    pub fn cached_from(&self, from: u64, last: u64) -> Option<Vec<crate::storage::RaftEntry>> {
        let inner = self.lock();
        if from > last {
            return Some(Vec::new());
        }
        let first = inner.cache.front()?.index;
        if from < first || inner.cache.back()?.index < last {
            return None;
        }
        Some(
            inner
                .cache
                .iter()
                .skip((from - first) as usize)
                .take_while(|e| e.index <= last)
                .map(log_entry)
                .collect(),
        )
    }

    /// The membership changes through `index` are applied: `conf` is the membership now
    /// (snapshots carry it).
    pub fn set_conf(&self, index: u64, conf: &ConfState) {
        let mut inner = self.lock();
        inner.conf_state = conf.clone();
        inner.conf_index = index;
    }

    /// The membership after the changes applied (`None` before any).
    pub fn conf_record(&self) -> Option<ConfRecord> {
        let inner = self.lock();
        (inner.conf_index > 0).then(|| conf::record(inner.conf_index, &inner.conf_state))
    }

    /// The index through which the membership includes every change (0: the first one).
    pub fn conf_index(&self) -> u64 {
        self.lock().conf_index
    }

    /// The first membership change the log holds that the membership does not include.
    pub fn first_unapplied_conf(&self) -> Option<u64> {
        let inner = self.lock();
        inner
            .confs
            .range(inner.conf_index + 1..)
            .next()
            .map(|(&i, _)| i)
    }
}

/// A Raft entry as the log writes it: a membership change becomes the broker's own control
/// batch holding it; other entries keep their data (Raft's own empty entry is made a batch by
/// the log).
fn log_entry(e: &Entry) -> crate::storage::RaftEntry {
    let data = if conf::is_change(e) {
        crate::batch::conf_change_batch(&conf::encode_entry(e))
    } else {
        e.data.clone()
    };
    crate::storage::RaftEntry {
        index: e.index,
        term: e.term,
        data,
    }
}
