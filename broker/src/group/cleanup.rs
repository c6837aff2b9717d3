//! Keeping `__consumer_offsets` bounded.
//!
//! Every commit appends a record, so a partition of the offsets topic grows for as long as its
//! groups commit, and the coordinator reads all of it at every start. Kafka compacts the topic;
//! here the log cleaner compacts it too (`offsets_topic_compacted`), but a cleaned replicated
//! log keeps a 61-byte header per batch and every commit is a batch, so compaction alone would
//! still grow with every commit ever made in a cluster (a single node merges runs of emptied
//! batches, but keeps a file per segment). A partition is therefore also *checkpointed*: once it holds more than
//! `checkpoint_records` records past its log start (and four times what its last checkpoint
//! wrote), and no write to it is in flight, the coordinator appends its live state again —
//! every group's metadata and committed offsets on that partition, as its memory holds them —
//! and once that is durable moves the partition's log start to where the checkpoint begins
//! (DeleteRecords: whole segments below are deleted). Everything below the start is superseded
//! by the checkpoint, so a load that starts there finds the same state.
//!
//! Architecture invariant: a checkpoint starts only when no write to its partition is in
//! flight (each write's outcome is in memory by then), and only while none of the partition's
//! groups is between generations (their memory is what was last written) or has a
//! transaction's offsets pending (they are in no checkpoint); records appended after it land
//! after it. A checkpoint that fails deletes nothing.
//!
//! The offsets of a group without members expire `offsets_retention_ms` after its last commit
//! (or after it became empty, if later), as Kafka's `offsets.retention.minutes`: tombstones
//! are written and the group forgotten.

use std::sync::Arc;

use super::records::Entry;
use super::state::State;
use super::{partition_for, Actor, Msg, Pending, OFFSETS_TOPIC};

/// A batch of a checkpoint holds about this many bytes of records at most.
const CHECKPOINT_BATCH_BYTES: usize = 1 << 20;

/// One partition's checkpoints.
#[derive(Debug, Default)]
pub(super) struct Checkpoint {
    running: bool,
    /// Records the last one wrote.
    last_records: i64,
}

impl Actor {
    /// Checkpoint partition `index` of the offsets topic if it is due and may start now.
    pub(super) async fn maybe_checkpoint(&mut self, index: i32) {
        // Nor while its groups are to be read again (the state in memory may be ahead of the
        // log: a checkpoint would write it).
        let writing = self.writes_in_flight(index) > 0 || self.reread.contains(&index);
        let cp = self.checkpoints.entry(index).or_default();
        if cp.running || writing {
            return;
        }
        let threshold = self
            .config
            .checkpoint_records
            .max(cp.last_records.saturating_mul(4));
        let Some(partition) = self
            .store
            .topic(OFFSETS_TOPIC)
            .and_then(|t| t.partition(index).cloned())
        else {
            return;
        };
        let (start, end) = (partition.log_start_offset(), partition.high_watermark());
        if end - start <= threshold {
            return;
        }
        let parts = self.config.offsets_partitions;
        let mine = |id: &str| partition_for(id, parts) == index;
        // A transaction's pending offsets live only in their own batch (and the marker that
        // decides them): a checkpoint would delete it.
        if self.groups.values().any(|g| {
            mine(&g.id)
                && (matches!(
                    g.state,
                    State::PreparingRebalance | State::CompletingRebalance
                ) || !g.pending_txn.is_empty())
        }) {
            // Tried again after the partition's next write.
            return;
        }
        // The live state, as the last writes left it.
        let now_ms = self.clock.wall_ms();
        let mut entries = Vec::new();
        for g in self.groups.values().filter(|g| mine(&g.id)) {
            if g.generation > 0 || g.protocol_type.is_some() {
                let value = g.value(if g.members.is_empty() {
                    g.empty_since_ms
                } else {
                    now_ms
                });
                entries.push(Entry::Group {
                    group: g.id.clone(),
                    value: Some(value),
                });
            }
            if let Some(c) = &g.consumer {
                entries.extend(c.entries(&g.id));
            }
            for ((topic, p), v) in &g.offsets {
                entries.push(Entry::Offset {
                    group: g.id.clone(),
                    topic: topic.clone(),
                    partition: *p,
                    value: Some(v.clone()),
                });
            }
        }
        let records = entries.len() as i64;
        let mut waits = Vec::new();
        let mut batch = Vec::new();
        let mut bytes = 0;
        for e in entries {
            let (k, v) = e.encode();
            bytes += k.len() + v.as_ref().map_or(0, |v| v.len());
            batch.push(e);
            if bytes >= CHECKPOINT_BATCH_BYTES {
                match self.append(index, &std::mem::take(&mut batch)).await {
                    Ok(rx) => waits.push(rx),
                    Err(code) => {
                        tracing::warn!(
                            partition = index,
                            code,
                            "cannot checkpoint {OFFSETS_TOPIC}"
                        );
                        return;
                    }
                }
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            match self.append(index, &batch).await {
                Ok(rx) => waits.push(rx),
                Err(code) => {
                    tracing::warn!(partition = index, code, "cannot checkpoint {OFFSETS_TOPIC}");
                    return;
                }
            }
        }
        self.checkpoints.entry(index).or_default().running = true;
        let Some(tx) = self.tx.upgrade() else { return };
        let store = self.store.clone();
        // In a cluster the log start moves on every replica (a Raft entry: this coordinator
        // leads the partition).
        let replicated = self.cluster.as_ref().and_then(|c| {
            c.replication()
                .replica(OFFSETS_TOPIC, index)
                .map(|view| (c.replication().clone(), view.group))
        });
        tracing::info!(
            partition = index,
            records,
            superseded = end - start,
            "checkpointing {OFFSETS_TOPIC}"
        );
        tokio::spawn(async move {
            // Where the live state begins again: the first batch, or (nothing live) the end.
            let mut cut = end;
            let mut outcome = Ok(records);
            for (i, rx) in waits.into_iter().enumerate() {
                match rx.outcome().await {
                    Ok(appended) if i == 0 => cut = appended.base_offset,
                    Ok(_) => {}
                    Err(code) => outcome = Err(format!("the write failed with code {code}")),
                }
            }
            if outcome.is_ok() {
                let moved = match replicated {
                    None => store
                        .delete_records(Arc::clone(&partition), cut)
                        .await
                        .map_err(|e| e.to_string()),
                    Some((replication, group)) => replication
                        .delete_records(&store, Arc::clone(&partition), group, cut)
                        .await
                        .map_err(|e| e.to_string()),
                };
                if let Err(e) = moved {
                    outcome = Err(e);
                }
            }
            let _ = tx.send(Msg::Checkpointed(index, outcome)).await;
        });
    }

    pub(super) fn checkpointed(&mut self, index: i32, outcome: Result<i64, String>) {
        let cp = self.checkpoints.entry(index).or_default();
        cp.running = false;
        match outcome {
            Ok(records) => cp.last_records = records,
            Err(why) => {
                tracing::warn!(partition = index, %why, "checkpoint of {OFFSETS_TOPIC} failed; the partition keeps its records and tries again later")
            }
        }
    }

    /// Forget the offsets of groups that have had no members and no commit for
    /// `offsets_retention_ms`, with tombstones.
    pub(super) async fn expire_offsets(&mut self) {
        let now_ms = self.clock.wall_ms();
        let retention = self.config.offsets_retention_ms;
        let expired: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.state == State::Empty && g.has_no_members() && g.pending_txn.is_empty())
            .filter(|g| {
                let last = g
                    .offsets
                    .values()
                    .map(|v| v.commit_ms)
                    .max()
                    .unwrap_or(0)
                    .max(g.empty_since_ms);
                now_ms.saturating_sub(last) > retention
            })
            .map(|g| g.id.clone())
            .collect();
        for id in expired {
            let Some(g) = self.groups.remove(&id) else {
                continue;
            };
            let entries = super::offsets::tombstones(&g);
            tracing::info!(group = %id, offsets = g.offsets.len(), "offsets expired: the group had no members and no commit for offsets_retention_ms");
            self.write(&id, entries, Pending::Tombstones(None)).await;
        }
    }
}
