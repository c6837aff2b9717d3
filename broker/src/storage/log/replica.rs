//! What a replicated partition's log keeps for Raft (docs/design.md: "the partition log is the Raft
//! log"). Each Raft entry is one record batch: a produced batch, or Raft's own entry (the empty
//! entry a new leader appends) stored as a control batch of one record, which every client
//! skips. The batch's `partitionLeaderEpoch` holds the entry's term.
//!
//! Raft indexes count entries, Kafka offsets count records, and batches do not carry their Raft
//! index. What a log needs to answer Raft for any entry it holds, without keeping a word per
//! entry in memory, is kept in [`ReplicaMeta`] (the file `raft-log`, written by the commit
//! pipeline — the log's only writer — whenever it changes):
//! - the first Raft index of every segment (recorded when the segment's first entry is written),
//! - every term's first entry (index and offset), as Kafka's leader-epoch checkpoint,
//! - the entry just before the log's first one (Raft's snapshot point: a log reset to a
//!   leader's log start holds nothing before it).
//!
//! Recovery trusts the file for closed segments and derives the active segment's part from its
//! batches, so the file may lag what is durable in the active segment: it is written beside the
//! data, not before it, and only when what the batches cannot tell changes
//! ([`ReplicaMeta::durable_part`]). The first entry of a new segment writes it; a crash may
//! keep that entry and lose the file, which then tells nothing of the segment before either:
//! recovery derives that segment's part from its batches too. The Raft hard state (term, vote, commit) is kept apart
//! ([`super::hard_state`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The file of a partition's [`ReplicaMeta`].
pub const META_FILE: &str = "raft-log";
pub use super::hard_state::{HardStateRecord, HARD_STATE_FILE};

/// The first entry of a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    pub term: u64,
    pub index: u64,
    pub offset: i64,
}

/// The Raft facts of a log that its batches do not tell by themselves (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMeta {
    /// Index and term of the entry just before the log's first entry; `(0, 0)` for a log that
    /// holds its group's first entry.
    pub prev: (u64, u64),
    /// The first Raft index of each segment that holds entries, by the segment's base offset
    /// (and of an empty segment a reset made).
    pub segments: BTreeMap<i64, u64>,
    /// Each term's first entry, in index order.
    pub epochs: Vec<Epoch>,
    /// Log-start marks ([`crate::batch::log_start_batch`]) the log holds and this replica has
    /// not yet moved its log start for: `(the mark's offset, the start it moves to)`, in
    /// offset order. Once the mark is committed the log start moves there (a crash in
    /// between finds the mark here, or in the active segment, and moves it again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_starts: Vec<(i64, i64)>,
    /// Where Raft's own entries lie, which take no Kafka offset ([`super::gaps`]).
    #[serde(default, skip_serializing_if = "super::gaps::Gaps::is_empty")]
    pub gaps: super::gaps::Gaps,
    /// The group's membership and the changes to it the log holds ([`super::conf`]).
    #[serde(default, skip_serializing_if = "super::conf::Confs::is_empty")]
    pub confs: super::conf::Confs,
    /// Where the Raft entries begin when the log keeps a cleaned prefix below them (a segment
    /// base; 0 or the first segment's base: the entries begin with the log). The prefix holds
    /// a compacted log's cleaned data, which Raft no longer hands out entry by entry: a
    /// follower behind it is sent it in chunks before a snapshot (`replication::node::prefix`), and
    /// the cleaner may merge its record-less batches as on a single node.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub raft_from: i64,
    /// Set only while a reset to a leader's snapshot with a prefix is under way: the bases of
    /// the received prefix files (`<base>.prefix`) that the reset renames into segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_bases: Vec<i64>,
    /// Written first by a reset of the log (to a leader's snapshot, or emptied when the
    /// replica is removed), and cleared once its files are made: a start that finds it set
    /// finishes the reset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resetting: bool,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl ReplicaMeta {
    /// The term of entry `index`, if the log holds it or it is the entry before the log.
    /// (The caller knows `index` is not past the log's last entry.)
    pub fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.prev.0 {
            return Some(self.prev.1);
        }
        if index < self.prev.0 {
            return None;
        }
        let at = self.epochs.partition_point(|e| e.index <= index);
        at.checked_sub(1).map(|i| self.epochs[i].term)
    }

    /// The latest known `(index, offset)` of an entry at or before `index`: where a scan for
    /// entry `index` may start (a segment's or a term's first entry).
    pub fn anchor_at_or_before(&self, index: u64) -> Option<(u64, i64)> {
        let segment = self
            .segments
            .iter()
            .filter(|(_, &first)| first <= index)
            .map(|(&base, &first)| (first, base))
            .next_back();
        let at = self.epochs.partition_point(|e| e.index <= index);
        let epoch = at
            .checked_sub(1)
            .map(|i| (self.epochs[i].index, self.epochs[i].offset));
        match (segment, epoch) {
            (Some(s), Some(e)) => Some(if e.0 > s.0 { e } else { s }),
            (s, e) => s.or(e),
        }
    }

    /// Record that entry `index` of `term` was written at `offset`, `position` bytes into the
    /// segment that starts at `segment_base`. Returns whether the record changed.
    pub fn note_entry(
        &mut self,
        index: u64,
        term: u64,
        offset: i64,
        segment_base: i64,
        position: u64,
    ) -> bool {
        let mut changed = false;
        if position == 0 && self.segments.get(&segment_base) != Some(&index) {
            self.segments.insert(segment_base, index);
            changed = true;
        }
        let last_term = self.epochs.last().map(|e| e.term);
        if last_term != Some(term) {
            self.epochs.push(Epoch {
                term,
                index,
                offset,
            });
            changed = true;
        }
        changed
    }

    /// The log start the committed marks (below `committed_offset`) move past `log_start` to,
    /// if any.
    pub fn due_log_start(&self, committed_offset: i64, log_start: i64) -> Option<i64> {
        self.log_starts
            .iter()
            .filter(|(at, _)| *at < committed_offset)
            .map(|(_, to)| *to)
            .max()
            .filter(|to| *to > log_start)
    }

    /// What of this record the log's batches cannot tell, `active_base` being the active
    /// segment's base: the record less what recovery derives from the active segment's batches
    /// (its terms, gaps, log-start marks and membership changes), and less the active
    /// segment's first index when it is the log's only segment and follows `prev` (recovery
    /// derives it so). Records with the same durable part recover the same from the same log,
    /// so the file is written only when this part changes: a new replica's first entries,
    /// and a new term's, cost no write of their own.
    pub fn durable_part(&self, active_base: i64) -> ReplicaMeta {
        let mut part = self.clone();
        let active_first = part.segments.get(&active_base).copied();
        if part.segments.len() == 1 && active_first == Some(part.prev.0 + 1) {
            part.segments.clear();
        }
        let active_first = active_first.unwrap_or(u64::MAX);
        part.epochs.retain(|e| e.index < active_first);
        part.log_starts.retain(|(at, _)| *at < active_base);
        part.gaps.truncate(active_base);
        part.confs.replace_from(active_base, std::iter::empty());
        part
    }

    /// Forget what describes entries from `index` (at `offset`) on: the log was cut there.
    pub fn truncate(&mut self, index: u64, offset: i64) {
        self.epochs.retain(|e| e.index < index);
        self.log_starts.retain(|(at, _)| *at < offset);
        self.gaps.truncate(offset);
        self.confs.truncate(index);
        // A segment cut at its base keeps its first index: the next entry written there is
        // `index` again.
        self.segments
            .retain(|&base, first| base < offset || *first == index);
    }

    /// The log now holds nothing before the segment at `first_base`: drop what describes only
    /// entries before the entry just before it (the first kept epoch still gives that entry's
    /// term).
    pub fn prune(&mut self, first_base: i64) {
        let entries_from = self.entries_from(first_base);
        self.segments.retain(|&base, _| base >= entries_from);
        self.gaps.prune(first_base);
        self.confs.prune(entries_from);
        let Some(&first_index) = self.segments.values().next() else {
            return;
        };
        let before = first_index.saturating_sub(1);
        let keep_from = self
            .epochs
            .partition_point(|e| e.index <= before)
            .saturating_sub(1);
        self.epochs.drain(..keep_from);
    }

    /// Where the Raft entries begin in a log whose first segment starts at `first_base`.
    pub fn entries_from(&self, first_base: i64) -> i64 {
        first_base.max(self.raft_from)
    }

    /// Kafka's OffsetForLeaderEpoch over this log (its leader-epoch cache): the largest term
    /// at or below `epoch` and the offset where the next term starts — `log_end` for the
    /// latest term; `None` for a term above every term the log holds (Kafka's UNDEFINED). A
    /// term older than the log's first gets itself and the first term's start.
    pub fn end_offset_for_epoch(&self, epoch: u64, log_end: i64) -> Option<(u64, i64)> {
        let latest = self.epochs.last()?;
        if epoch == latest.term {
            return Some((latest.term, log_end));
        }
        let higher = self.epochs.iter().find(|e| e.term > epoch)?;
        let floor = self
            .epochs
            .iter()
            .rev()
            .find(|e| e.term <= epoch)
            .map_or(epoch, |e| e.term);
        Some((floor, higher.offset))
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("plain data encodes")
    }

    pub fn decode(body: &str) -> Result<ReplicaMeta, String> {
        let meta: ReplicaMeta = serde_json::from_str(body).map_err(|e| e.to_string())?;
        let ordered = meta
            .epochs
            .windows(2)
            .all(|w| w[0].index < w[1].index && w[0].term < w[1].term && w[0].offset < w[1].offset);
        if !ordered {
            return Err("epochs out of order".into());
        }
        Ok(meta)
    }
}

/// One entry as recovery found it in the active segment: its base offset, records and term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailEntry {
    pub base_offset: i64,
    pub records: u32,
    pub term: u64,
}

impl ReplicaState {
    /// Whether `meta`, with the active segment at `active_base`, must be written: it tells
    /// more than the file and the active segment's batches do.
    pub fn meta_write_due(&self, meta: &ReplicaMeta, active_base: i64) -> bool {
        self.meta_dirty
            || !self.meta_written.as_ref().is_some_and(|(base, written)| {
                *base == active_base && *written == meta.durable_part(active_base)
            })
    }

    /// `meta` is the file's now (or the file tells as much of it), with the active segment at
    /// `active_base`.
    pub fn meta_is_written(&mut self, meta: &ReplicaMeta, active_base: i64) {
        self.meta_written = Some((active_base, meta.durable_part(active_base)));
        self.meta_dirty = false;
    }
}

/// What a replicated partition holds for Raft besides its batches.
#[derive(Debug, Clone, Default)]
pub struct ReplicaState {
    pub meta: ReplicaMeta,
    /// Whether `meta` holds more than the file says (the next Raft write writes it).
    pub meta_dirty: bool,
    /// The active segment's base when the file was last written or read, and the file's
    /// [`ReplicaMeta::durable_part`] then (`None`: unknown, the next Raft write writes it).
    pub meta_written: Option<(i64, ReplicaMeta)>,
    /// The Kafka offset below which entries are committed (the high watermark): readers stop
    /// there. Set as Raft commits; after a start, the log start until the node learns more.
    pub committed_offset: i64,
    /// The hard state last made durable.
    pub hard_state: HardStateRecord,
    /// The Raft index the next entry takes.
    pub next_index: u64,
    /// The last entries of the log (at most [`TAIL_ENTRIES_MAX`]), as recovery found them;
    /// taken by the replication layer when it opens the group.
    pub recovered_tail: Vec<TailEntry>,
    /// What each of the last entries (at most [`UNDO_ENTRIES_MAX`]) changed in the producers'
    /// state, by Raft index, and the index from which every entry's change is there (taken
    /// with the tail).
    pub recovered_undo: Vec<(u64, crate::producer_state::Undo)>,
    pub undo_from: u64,
    /// The log start a committed mark asked for and the admin lane has not yet made
    /// (0: none).
    pub log_start_asked: i64,
    /// Where entries start, besides the record's anchors: what makes finding an entry in a
    /// long segment cheap.
    pub points: IndexPoints,
    /// `Some(bytes)` while the partition is unsettled: its directory and first segment made
    /// without a sync, its entries durable only as pieces of the data directory's file of
    /// hard states (`bytes` of them there; `storage::raft_states`).
    pub unsettled: Option<u64>,
    /// Transactions whose marker is in the log and not yet known committed (Kafka's
    /// "unreplicated transactions"): each keeps the last stable offset at its first offset
    /// until the high watermark passes its marker, since a cut may still take the marker.
    /// (After a start it holds only markers written since: the high watermark there starts
    /// at the log start and moves only as far as this node learns Raft committed.)
    pub unreplicated: Vec<crate::producer_state::CompletedTxn>,
}

/// Known starts of entries (`index → offset`) between the anchors of [`ReplicaMeta`], in
/// memory only. Without them, finding entry `index` scans its segment from the segment's or
/// term's first entry: a follower caught up from far behind asks for each next megabyte in
/// turn, and every one of those scans read the segment again from its start (a 45 MB segment
/// of 1-record batches: 45 reads of 1 MiB per megabyte sent, reads that then missed their
/// deadline under load). Points are added about every [`IndexPoints::SPACING_BYTES`] written,
/// wherever a scan or a read for a follower passes, and are dropped from any cut on; a point
/// found by a reader is taken only if no cut or reset happened since it started
/// ([`IndexPoints::generation`]), since it describes the log as it was read.
#[derive(Debug, Clone, Default)]
pub struct IndexPoints {
    points: BTreeMap<u64, i64>,
    /// Bumped by every cut and reset.
    generation: u64,
    /// Bytes the writer wrote since it last added a point.
    written_since: u64,
}

impl IndexPoints {
    /// Bytes of log between two points the writer adds, at least.
    pub const SPACING_BYTES: u64 = 1 << 20;
    /// Points kept per log, at most; past it every other point goes (the spacing doubles).
    pub const MAX: usize = 1024;

    /// Changes whenever a cut or reset may have made earlier findings wrong.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The latest known point at or before `index`.
    pub fn at_or_before(&self, index: u64) -> Option<(u64, i64)> {
        self.points
            .range(..=index)
            .next_back()
            .map(|(&i, &o)| (i, o))
    }

    /// Entry `index` starts at `offset`, as found by a reader that started at `generation`.
    pub fn note(&mut self, generation: u64, index: u64, offset: i64) {
        if generation == self.generation {
            self.insert(index, offset);
        }
    }

    /// The writer wrote `bytes` of entries from `index` (at `offset`) on.
    pub fn note_written(&mut self, index: u64, offset: i64, bytes: u64) {
        if self.written_since >= Self::SPACING_BYTES || self.points.is_empty() {
            self.insert(index, offset);
            self.written_since = 0;
        }
        self.written_since += bytes;
    }

    /// The log was cut so that `from` is its next entry.
    pub fn cut(&mut self, from: u64) {
        self.generation += 1;
        self.points.split_off(&from);
    }

    /// The log was reset: nothing known holds.
    pub fn clear(&mut self) {
        self.generation += 1;
        self.points.clear();
        self.written_since = 0;
    }

    fn insert(&mut self, index: u64, offset: i64) {
        self.points.insert(index, offset);
        if self.points.len() > Self::MAX {
            let last = self.points.keys().next_back().copied();
            let mut keep = false;
            self.points.retain(|i, _| {
                keep = !keep;
                keep || Some(*i) == last
            });
        }
    }
}

/// Entries whose producer changes recovery keeps (a follower's uncommitted suffix is far
/// shorter).
pub const UNDO_ENTRIES_MAX: u64 = 4096;

/// Entries recovery describes one by one, at most (the rest are found through [`ReplicaMeta`]).
pub const TAIL_ENTRIES_MAX: usize = 1 << 16;

/// Where an entry of a replicated log lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    pub segment_base: i64,
    pub position: u64,
    pub offset: i64,
}

impl super::Partition {
    /// Whether this replicated log holds anything: entries, or a Raft record of a group it
    /// was in (a term and vote alone are not data: they are kept when a replica is emptied).
    pub fn holds_data(&self) -> bool {
        let st = self.state();
        st.log_end_offset() > 0
            || st.segments.len() > 1
            || st
                .replica
                .as_ref()
                .is_some_and(|r| r.meta.prev != (0, 0) || !r.meta.confs.is_empty())
    }

    /// Raise a replicated partition's high watermark to `offset` (Raft committed up to there).
    /// Never lowers it. Returns whether it moved.
    /// The log start committed marks move this log to, when it is past both the log start and
    /// what was asked already (then it counts as asked: see [`Partition::log_start_not_moved`]).
    pub fn take_due_log_start(&self) -> Option<i64> {
        let mut st = self.state_mut();
        let start = st.log_start_offset;
        let r = st.replica.as_mut()?;
        let due = r
            .meta
            .due_log_start(r.committed_offset, start.max(r.log_start_asked))?;
        r.log_start_asked = due;
        Some(due)
    }

    /// The move to `to` asked by [`Partition::take_due_log_start`] failed: ask it again later.
    pub fn log_start_not_moved(&self, to: i64) {
        let mut st = self.state_mut();
        if let Some(r) = st.replica.as_mut().filter(|r| r.log_start_asked == to) {
            r.log_start_asked = 0;
        }
    }

    pub fn set_committed_offset(&self, offset: i64) -> bool {
        let mut st = self.state_mut();
        match st.replica.as_mut() {
            Some(r) if offset > r.committed_offset => {
                r.committed_offset = offset;
                true
            }
            _ => false,
        }
    }

    /// Find Raft entry `index` in this replicated log: from the nearest anchor at or before it
    /// (a segment's or a term's first entry, whose offset is known), through the segment's
    /// sparse index, then batch by batch. `index` equal to the next index gives the log's end.
    /// `None` when the log does not hold it (before its first entry, past its end).
    pub async fn locate(
        &self,
        io: &crate::storage::Io,
        index: u64,
    ) -> Result<Option<Located>, crate::storage::StorageError> {
        use super::index::lookup_offset;
        let (file, anchor, start, end, generation) = {
            let st = self.state();
            let Some(r) = st.replica.as_ref() else {
                return Ok(None);
            };
            if index == r.next_index {
                let active = st.active();
                return Ok(Some(Located {
                    segment_base: active.base_offset,
                    position: active.size,
                    offset: active.next_offset,
                }));
            }
            if index > r.next_index {
                return Ok(None);
            }
            let first_base = st.segments.keys().next().copied().unwrap_or(0);
            let point = r
                .points
                .at_or_before(index)
                .filter(|&(_, offset)| offset >= first_base);
            let anchor = match (r.meta.anchor_at_or_before(index), point) {
                (Some(a), Some(p)) => Some(if p.0 > a.0 { p } else { a }),
                (a, p) => a.or(p),
            };
            let Some((anchor_index, anchor_offset)) = anchor else {
                return Ok(None);
            };
            let Some((_, seg)) = st.segments.range(..=anchor_offset).next_back() else {
                return Ok(None);
            };
            if anchor_offset >= seg.next_offset {
                return Ok(None);
            }
            let rel = (anchor_offset - seg.base_offset) as u32;
            let (position, rel_base) = lookup_offset(&seg.entries, rel);
            (
                seg.file.clone(),
                (anchor_index, anchor_offset, seg.base_offset),
                (position as u64, seg.base_offset + rel_base as i64),
                seg.size,
                r.points.generation(),
            )
        };
        let (anchor_index, anchor_offset, segment_base) = anchor;
        let (mut pos, mut offset) = start;
        // Entries counted from the anchor once the scan reaches it.
        let mut at: Option<u64> = None;
        // The first entry of every chunk past the anchor: points for the next search.
        let mut passed = Vec::new();
        while pos < end {
            let chunk = io
                .read_at(&file, (end - pos).min(1 << 20) as usize, pos)
                .await?;
            if let Some(i) = at {
                passed.push((i, offset));
            }
            // Only headers matter here: a batch longer than the chunk is stepped over whole.
            let mut rel = 0usize;
            while let Some(Ok(h)) = chunk.get(rel..).map(crate::batch::parse_header) {
                if h.base_offset != offset {
                    return Err(crate::storage::StorageError::Corrupt {
                        path: file.path().to_path_buf(),
                        reason: format!(
                            "batch at {} starts at offset {} instead of {offset}",
                            pos + rel as u64,
                            h.base_offset
                        ),
                    });
                }
                if h.base_offset == anchor_offset {
                    at = Some(anchor_index);
                }
                if at == Some(index) {
                    passed.push((index, offset));
                    self.note_points(generation, &passed);
                    return Ok(Some(Located {
                        segment_base,
                        position: pos + rel as u64,
                        offset,
                    }));
                }
                if let Some(i) = at.as_mut() {
                    *i += 1;
                }
                offset = h.next_offset();
                rel += h.size;
            }
            if rel == 0 {
                return Err(crate::storage::StorageError::Corrupt {
                    path: file.path().to_path_buf(),
                    reason: format!("no batch header at {pos}"),
                });
            }
            pos += rel as u64;
        }
        self.note_points(generation, &passed);
        // The segment ends before the entry: it is the next segment's first one.
        let st = self.state();
        Ok(st
            .segments
            .range(segment_base + 1..)
            .next()
            .filter(|_| at == Some(index))
            .map(|(&base, _)| Located {
                segment_base: base,
                position: 0,
                offset: base,
            }))
    }

    /// Entries found to start at these offsets by a reader that started at `generation`
    /// ([`IndexPoints::note`]).
    pub fn note_points(&self, generation: u64, found: &[(u64, i64)]) {
        if found.is_empty() {
            return;
        }
        let mut st = self.state_mut();
        if let Some(r) = st.replica.as_mut() {
            for &(index, offset) in found {
                r.points.note(generation, index, offset);
            }
        }
    }

    /// The generation of this log's [`IndexPoints`] (0 for a log that is not replicated).
    pub fn points_generation(&self) -> u64 {
        self.state()
            .replica
            .as_ref()
            .map_or(0, |r| r.points.generation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ReplicaMeta {
        let mut m = ReplicaMeta::default();
        // Segment 0 starts with entry 1 (term 1); term 2 starts at entry 4 (offset 30);
        // segment 100 starts with entry 9 (term 2); term 5 at entry 12 (offset 140).
        assert!(m.note_entry(1, 1, 0, 0, 0));
        assert!(!m.note_entry(2, 1, 10, 0, 100));
        assert!(m.note_entry(4, 2, 30, 0, 300));
        assert!(m.note_entry(9, 2, 100, 100, 0));
        assert!(m.note_entry(12, 5, 140, 100, 500));
        m
    }

    #[test]
    fn a_log_start_mark_moves_the_start_once_committed_and_goes_with_a_cut() {
        let mut m = meta();
        m.log_starts = vec![(100, 40), (150, 90)];
        assert_eq!(
            m.due_log_start(100, 0),
            None,
            "the mark at 100 is not committed"
        );
        assert_eq!(m.due_log_start(101, 0), Some(40));
        assert_eq!(m.due_log_start(200, 0), Some(90));
        assert_eq!(m.due_log_start(200, 90), None, "moved already");
        m.truncate(12, 150);
        assert_eq!(
            m.log_starts,
            vec![(100, 40)],
            "a cut takes the marks it removed"
        );
        let back = ReplicaMeta::decode(&m.encode()).expect("decodes");
        assert_eq!(back, m);
        // A record written before marks existed reads as having none.
        let old = r#"{"prev":[0,0],"segments":{},"epochs":[]}"#;
        assert!(ReplicaMeta::decode(old).unwrap().log_starts.is_empty());
    }

    #[test]
    fn points_are_kept_sparse_dropped_from_a_cut_and_refused_from_a_reader_that_saw_an_older_log() {
        let mut p = IndexPoints::default();
        // The writer adds its first write's start, then one per SPACING_BYTES written.
        p.note_written(1, 0, 600 << 10);
        p.note_written(10, 900, 600 << 10);
        p.note_written(20, 1800, 600 << 10);
        assert_eq!(p.at_or_before(9), Some((1, 0)));
        assert_eq!(
            p.at_or_before(25),
            Some((20, 1800)),
            "1.2 MiB after the first point"
        );
        assert_eq!(
            p.at_or_before(15),
            Some((1, 0)),
            "600 KiB after it: no point"
        );
        // A reader that started before a cut has its findings refused.
        let seen = p.generation();
        p.cut(15);
        assert_eq!(p.at_or_before(25), Some((1, 0)));
        p.note(seen, 30, 2500);
        assert_eq!(p.at_or_before(30), Some((1, 0)));
        p.note(p.generation(), 12, 1100);
        assert_eq!(p.at_or_before(30), Some((12, 1100)));
        // Never more than MAX: every other point goes, the latest stays.
        for i in 0..(IndexPoints::MAX as u64 * 3) {
            p.note(p.generation(), 100 + i, 10_000 + i as i64);
        }
        assert!(p.points.len() <= IndexPoints::MAX);
        let last = 100 + IndexPoints::MAX as u64 * 3 - 1;
        assert_eq!(
            p.at_or_before(u64::MAX),
            Some((last, 10_000 + last as i64 - 100))
        );
        p.clear();
        assert_eq!(p.at_or_before(u64::MAX), None);
    }

    #[test]
    fn an_epoch_ends_where_the_next_term_the_log_holds_starts() {
        let m = meta();
        // Terms 1, 2, 5 start at offsets 0, 30, 140; the log ends at 170.
        assert_eq!(m.end_offset_for_epoch(1, 170), Some((1, 30)));
        assert_eq!(m.end_offset_for_epoch(2, 170), Some((2, 140)));
        // Terms 3 and 4 had no entries here: they end where term 2 did, as term 2.
        assert_eq!(m.end_offset_for_epoch(3, 170), Some((2, 140)));
        assert_eq!(m.end_offset_for_epoch(4, 170), Some((2, 140)));
        assert_eq!(m.end_offset_for_epoch(5, 170), Some((5, 170)));
        assert_eq!(m.end_offset_for_epoch(6, 170), None);
        assert_eq!(m.end_offset_for_epoch(0, 170), Some((0, 0)));
        assert_eq!(ReplicaMeta::default().end_offset_for_epoch(1, 0), None);
    }

    #[test]
    fn terms_and_anchors_are_found_for_any_entry() {
        let m = meta();
        assert_eq!(m.term_of(0), Some(0));
        assert_eq!(m.term_of(3), Some(1));
        assert_eq!(m.term_of(4), Some(2));
        assert_eq!(m.term_of(11), Some(2));
        assert_eq!(m.term_of(40), Some(5));
        assert_eq!(m.anchor_at_or_before(3), Some((1, 0)));
        assert_eq!(m.anchor_at_or_before(8), Some((4, 30)));
        assert_eq!(m.anchor_at_or_before(10), Some((9, 100)));
        assert_eq!(m.anchor_at_or_before(13), Some((12, 140)));
    }

    #[test]
    fn the_durable_part_leaves_out_what_the_active_segment_tells() {
        // A new log: its first entries and terms are all in its only segment.
        let mut m = ReplicaMeta::default();
        m.segments.insert(0, 1);
        assert!(m.note_entry(1, 1, 0, 0, 0), "its first term");
        m.gaps.push(0);
        assert!(m.note_entry(2, 2, 1, 0, 80));
        assert_eq!(m.durable_part(0), ReplicaMeta::default());
        let written = m.durable_part(0);
        // A roll: the closed segment's terms and gaps are no longer told by the active one.
        assert!(m.note_entry(3, 2, 5, 5, 0));
        let rolled = m.durable_part(5);
        assert_ne!(rolled, written);
        assert_eq!(rolled.epochs.len(), 2);
        assert_eq!(rolled.segments.len(), 2);
        assert_eq!(rolled.gaps.at, vec![0]);
        // A new term in the active segment changes nothing durable; applying a membership does.
        assert!(m.note_entry(4, 3, 6, 5, 90));
        assert_eq!(m.durable_part(5), rolled);
        m.confs
            .record_applied(&crate::storage::log::conf::ConfRecord {
                index: 3,
                ..Default::default()
            });
        assert_ne!(m.durable_part(5), rolled);
        // A snapshot's log: its only segment follows the snapshot's entry.
        let reset = ReplicaMeta {
            prev: (40, 3),
            segments: BTreeMap::from([(700, 41)]),
            ..Default::default()
        };
        assert_eq!(reset.durable_part(700).segments.len(), 0);
        assert_eq!(reset.durable_part(700).prev, (40, 3));
    }

    #[test]
    fn a_cut_forgets_what_it_removed_and_a_prune_keeps_the_term_before_the_log() {
        let mut m = meta();
        m.truncate(12, 140);
        assert_eq!(m.epochs.last().map(|e| e.term), Some(2));
        assert_eq!(m.segments.get(&100), Some(&9));
        m.truncate(9, 100);
        assert_eq!(m.segments.get(&100), Some(&9), "cut at its base: kept");
        m.truncate(6, 50);
        assert!(!m.segments.contains_key(&100));
        let mut m = meta();
        m.prune(100);
        assert_eq!(m.segments.keys().copied().collect::<Vec<_>>(), vec![100]);
        assert_eq!(m.term_of(8), Some(2), "the entry before the log");
        assert_eq!(m.epochs[0].term, 2);
    }

    #[test]
    fn files_round_trip_and_refuse_nonsense() {
        let m = meta();
        assert_eq!(ReplicaMeta::decode(&m.encode()), Ok(m.clone()));
        let mut bad = m;
        bad.epochs.swap(0, 1);
        assert!(ReplicaMeta::decode(&bad.encode()).is_err());
    }
}
