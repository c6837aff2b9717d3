//! A replicated log cut back or reset, as a Raft write asks before its entries are written:
//! a follower's divergent suffix cut (Raft replaces it with its leader's entries), or the log
//! started afresh at a leader's snapshot (with a received cleaned prefix renamed in). Part of
//! a round of Raft writes ([`super::raft_writes`]).
//!
//! Invariant: a cut never reaches below the commit (nothing a consumer may have read goes),
//! and what the cut entries left in the partition's state — index entries, aborted
//! transactions, transactions awaiting their marker's commit — goes with them; a reset's
//! record is written first, marked `resetting`, so that a crash in the middle is finished at
//! the next start.

use std::collections::BTreeMap;
use std::sync::Arc;

use io_backend::OpenMode;

use super::log::replica::{self, ReplicaMeta};
use super::log::{self, Partition, Segment};
use super::pipeline::Pipeline;
use super::raft_writes::{remove_segment_files, replica_of};
use super::{small_file, RaftReset, RaftWrite, StorageError};

impl Pipeline {
    pub(super) async fn cut_or_reset(&self, w: &RaftWrite) -> Result<(), StorageError> {
        if let Some(reset) = &w.reset {
            return self
                .reset_log(&w.partition, reset.clone(), w.conf.clone())
                .await;
        }
        if let Some(from) = w.truncate_from {
            // The producers as of the cut, only when entries went: otherwise the state is the
            // one of the log's durable end already, and the Raft layer's (which may hold the
            // entries this write brings — a retry after a failed write, a cut of entries
            // still queued) would have them recorded twice: a marker found its transaction
            // closed already, and its abort never reached the aborted list.
            if self.cut_log(&w.partition, from).await? {
                if let Some(producers) = &w.producers_at_cut {
                    w.partition.state_mut().producers = producers.clone();
                }
            }
        }
        Ok(())
    }

    /// Cut a replicated log back so that entry `from` is the next one written (a follower's
    /// divergent suffix, which Raft replaces with its leader's entries): later segments
    /// removed, the segment holding `from` cut at it and synced, the directory synced. Raft
    /// never cuts committed entries, so nothing a consumer may have read goes. Whether
    /// anything was cut.
    async fn cut_log(&self, partition: &Arc<Partition>, from: u64) -> Result<bool, StorageError> {
        let io = self.io();
        let next_index = replica_of(partition)?.next_index;
        if from >= next_index {
            return Ok(false);
        }
        let at = partition
            .locate(io, from)
            .await?
            .ok_or_else(|| StorageError::Corrupt {
                path: partition.dir.clone(),
                reason: format!("Raft entry {from} is not in the log (next index {next_index})"),
            })?;
        let (file, later) = {
            let st = partition.state();
            let seg = st.segments.get(&at.segment_base).ok_or_else(|| {
                StorageError::DirFailed("a segment went away during a cut".into())
            })?;
            let later: Vec<i64> = st
                .segments
                .range(at.segment_base + 1..)
                .map(|(&b, _)| b)
                .collect();
            (seg.file.clone(), later)
        };
        for &base in &later {
            remove_segment_files(
                io,
                &partition.dir,
                base,
                &["log", "index", "timeindex", "txnindex", "snapshot"],
            )
            .await?;
        }
        crate::coverage::reached(crate::coverage::Event::DivergentSuffixCut);
        io.truncate(&file, at.position).await?;
        io.sync_data(&file).await?;
        if !later.is_empty() {
            // It takes entries again: the index files written when it was closed go stale.
            remove_segment_files(
                io,
                &partition.dir,
                at.segment_base,
                &["index", "timeindex", "txnindex"],
            )
            .await?;
        }
        io.sync_dir(&partition.dir).await?;
        let mut st = partition.state_mut();
        for base in &later {
            st.segments.remove(base);
        }
        if let Some(seg) = st.segments.get_mut(&at.segment_base) {
            seg.size = at.position;
            seg.allocated = at.position;
            seg.next_offset = at.offset;
            seg.entries.retain(|e| (e.position as u64) < at.position);
            seg.aborted.retain(|a| a.last_offset < at.offset);
        }
        let r = st
            .replica
            .as_mut()
            .expect("checked: a replicated partition");
        debug_assert!(r.committed_offset <= at.offset, "a cut below the commit");
        r.meta.truncate(from, at.offset);
        r.points.cut(from);
        r.unreplicated.retain(|t| t.last_offset < at.offset);
        r.meta_dirty = true;
        r.next_index = from;
        tracing::info!(topic = %partition.topic, partition = partition.index, from_index = from, from_offset = at.offset, "cut a divergent suffix off the log");
        Ok(true)
    }

    /// Make a replicated log start afresh at `reset.offset`, after entry `reset.index` (a
    /// leader's snapshot: it no longer holds the entries this log lacks, which its retention
    /// deleted; or emptied, `reset` all zeros, when this replica is removed). The record goes
    /// first, marked `resetting`: a reset a crash interrupts is finished at the next start;
    /// the mark goes once the files are made.
    async fn reset_log(
        &self,
        partition: &Arc<Partition>,
        reset: RaftReset,
        conf: Option<log::conf::ConfRecord>,
    ) -> Result<(), StorageError> {
        if reset.index > 0 {
            crate::coverage::reached(crate::coverage::Event::LogResetToSnapshot);
        }
        let io = self.io();
        if reset.index > 0 && partition.snapshots_carry_state() {
            // The state the leader's snapshot carried goes to disk first: a log that starts
            // at the snapshot is never without the state below it.
            match partition.state_snapshot() {
                Some((at, packed)) if at == reset.offset => {
                    let corrupt = |reason| StorageError::Corrupt {
                        path: partition.dir.join(log::STATE_SNAPSHOT_FILE),
                        reason,
                    };
                    let text = small_file::unpack(&packed, log::STATE_SNAPSHOT_BYTES_MAX)
                        .map_err(corrupt)?;
                    let body = small_file::check(&text).map_err(corrupt)?;
                    small_file::write(io, &partition.dir, log::STATE_SNAPSHOT_FILE, body).await?;
                }
                _ => {
                    tracing::error!(topic = %partition.topic, offset = reset.offset, "a leader's snapshot of the cluster metadata came without the state: the log is reset, the metadata waits for a snapshot")
                }
            }
        }
        // Not while the admin lane deletes one of the segments: its removal would land on the
        // new segment of the same name.
        let _files = partition.lock_files().await;
        // A leader's cleaned prefix comes as files received beside the log: they become
        // the segments below the snapshot's point, the entries beginning there.
        let prefix = reset.prefix.as_ref();
        let prefix_bases = prefix.map(|p| p.bases.clone()).unwrap_or_default();
        let gaps = match prefix {
            Some(p) => log::gaps::Gaps {
                before: p.gaps_before,
                at: p.gaps.clone(),
            },
            None => log::gaps::Gaps {
                before: reset.gaps_before,
                at: Vec::new(),
            },
        };
        let meta = ReplicaMeta {
            prev: (reset.index, reset.term),
            segments: BTreeMap::from([(reset.offset, reset.index + 1)]),
            epochs: Vec::new(),
            log_starts: Vec::new(),
            gaps,
            confs: log::conf::Confs {
                entries: Vec::new(),
                applied: conf,
            },
            raft_from: if prefix.is_some() { reset.offset } else { 0 },
            prefix_bases: prefix_bases.clone(),
            resetting: true,
        };
        small_file::write(io, &partition.dir, replica::META_FILE, &meta.encode()).await?;
        let old: Vec<i64> = partition.state().segments.keys().copied().collect();
        for &base in &old {
            // A merge of cleaned segments whose swap a failed disk left half done goes too:
            // the next start would finish it over the new segment. A log a prefix file of
            // the same base replaces is renamed over, never removed (a retry of this reset
            // may find the prefix's file renamed already).
            let exts: &[&str] = if prefix_bases.contains(&base) {
                &["index", "timeindex", "txnindex", "snapshot", "swap"]
            } else {
                &["log", "index", "timeindex", "txnindex", "snapshot", "swap"]
            };
            remove_segment_files(io, &partition.dir, base, exts).await?;
        }
        log::rename_prefix_files(io, &partition.dir, &prefix_bases).await?;
        let path = partition.dir.join(log::segment_name(reset.offset, "log"));
        let file = io.open(&path, OpenMode::Create).await?;
        io.sync_dir(&partition.dir).await?;
        if let Some(p) = prefix {
            // The leader's log start: a start must not take an older one recorded here. (A
            // crash before this, the start finishing the reset records the prefix's start.)
            log::write_log_start(io, &partition.dir, p.log_start).await?;
        }
        let meta = ReplicaMeta {
            resetting: false,
            prefix_bases: Vec::new(),
            ..meta
        };
        small_file::write(io, &partition.dir, replica::META_FILE, &meta.encode()).await?;
        let mut segments = BTreeMap::new();
        let interval = partition.config().index_interval_bytes;
        for (i, &base) in prefix_bases.iter().enumerate() {
            let next_base = prefix_bases.get(i + 1).copied().unwrap_or(reset.offset);
            let seg = log::load_closed(io, &partition.dir, base, next_base, interval).await?;
            segments.insert(base, seg);
        }
        segments.insert(reset.offset, Segment::empty(reset.offset, file));
        if prefix.is_some() {
            crate::coverage::reached(crate::coverage::Event::PrefixInstalled);
        }
        let mut st = partition.state_mut();
        st.segments = segments;
        st.log_start_offset = prefix.map_or(reset.offset, |p| p.log_start);
        // The prefix's producers (a follower's state is of its whole log, as the leader's).
        st.producers = prefix.map(|p| p.producers.clone()).unwrap_or_default();
        let r = st
            .replica
            .as_mut()
            .expect("checked: a replicated partition");
        r.meta_is_written(&meta, reset.offset);
        r.meta = meta;
        r.points.clear();
        r.unreplicated.clear();
        r.next_index = reset.index + 1;
        r.committed_offset = reset.offset;
        // What the reset's own hard state says, should its write fail: nothing past the
        // reset's entry is in the log (Raft never sends a snapshot below the commit).
        r.hard_state.commit = r.hard_state.commit.min(reset.index);
        tracing::info!(topic = %partition.topic, partition = partition.index, index = reset.index, offset = reset.offset, prefix_start = reset.prefix.as_ref().map(|p| p.start), "reset the log to a leader's snapshot");
        Ok(())
    }
}
