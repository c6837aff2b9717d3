//! Retention: whole closed segments past `retention.bytes` or `retention.ms`, or below the log
//! start that DeleteRecords set, are deleted, the oldest first, never the active one — by the admin lane, as a command on its queue.

use super::admin::AdminLane;
use super::log::{self, Partition, Segment};
use super::StorageError;

impl AdminLane {
    /// Delete whole closed segments past `retention.bytes` or `retention.ms` (Kafka semantics:
    /// the oldest first, never the active segment). Each deletion is made durable (the
    /// partition directory synced) before the log start moves past the segment, one segment at
    /// a time: after a crash a deleted segment never comes back, so the log start offset a
    /// client was told never moves backwards.
    pub(super) async fn retention(&mut self) {
        let now_ms = self.shared.env.clock.wall_ms();
        let expiration_ms = self.shared.producer_expiration_ms;
        for t in self.shared.catalog.all() {
            for p in &t.partitions {
                let forgotten = p.state_mut().producers.expire(now_ms, expiration_ms);
                if forgotten > 0 {
                    tracing::debug!(topic = %p.topic, partition = p.index, forgotten, "forgot idle producers");
                }
            }
            for p in &t.partitions {
                for seg in retention_doomed(p, now_ms) {
                    if let Err(e) = self.delete_segment(p, &seg).await {
                        tracing::warn!(topic = %p.topic, partition = p.index, base_offset = seg.base_offset, error = %e, "could not delete a segment; retention tries again later");
                        break;
                    }
                }
            }
        }
    }

    /// Delete one closed segment for retention: its log file (then the directory synced), then
    /// the log start moves past it, then its index files (an index without its log is removed
    /// by recovery if a crash comes first).
    pub(super) async fn delete_segment(
        &self,
        p: &Partition,
        seg: &Segment,
    ) -> Result<(), StorageError> {
        let _files = p.lock_files().await;
        if !p.holds(seg) {
            // A reset of the log (a leader's snapshot, the replica moved away) removed it
            // meanwhile; a segment of the same name now is the reset's, not this one.
            return Ok(());
        }
        tracing::info!(topic = %p.topic, partition = p.index, base_offset = seg.base_offset, "retention deletes segment");
        crate::coverage::reached(crate::coverage::Event::RetentionDeletedSegment);
        self.io()
            .remove_file_if_present(&p.dir.join(log::segment_name(seg.base_offset, "log")))
            .await?;
        self.io().sync_dir(&p.dir).await?;
        {
            let mut st = p.state_mut();
            st.segments.remove(&seg.base_offset);
            if let Some(first) = st.segments.keys().next().copied() {
                st.log_start_offset = st.log_start_offset.max(first);
            }
        }
        for ext in ["index", "timeindex", "txnindex"] {
            let path = p.dir.join(log::segment_name(seg.base_offset, ext));
            if let Err(e) = self.io().remove_file_if_present(&path).await {
                tracing::warn!(file = %path.display(), error = %e, "could not delete an index file");
            }
        }
        Ok(())
    }
}

/// The closed segments of `p` that retention deletes now, oldest first.
fn retention_doomed(p: &Partition, now_ms: i64) -> Vec<Segment> {
    let config = p.config();
    let st = p.state();
    let mut total = st.size_bytes() as i64;
    let closed = st.segments.len().saturating_sub(1);
    let mut doomed = Vec::new();
    // A replicated log keeps what is not committed: Raft may still need it (or cut it).
    let committed = st.replica.as_ref().map_or(i64::MAX, |r| r.committed_offset);
    for seg in st.segments.values().take(closed) {
        if seg.next_offset > committed {
            break;
        }
        // Below the log start DeleteRecords set: no record of it can be read.
        let deleted = seg.next_offset <= st.log_start_offset;
        // Retention by size and age is the `delete` policy's; a compacted-only topic keeps
        // its segments for the cleaner.
        let by_size = config.cleanup.delete
            && config.retention_bytes >= 0
            && total - seg.size as i64 >= config.retention_bytes;
        let by_time = config.cleanup.delete
            && config.retention_ms >= 0
            && seg.max_timestamp >= 0
            && now_ms - seg.max_timestamp > config.retention_ms;
        if !(deleted || by_size || by_time) {
            break;
        }
        total -= seg.size as i64;
        doomed.push(seg.clone());
    }
    doomed
}

/// The closed segments of `p` wholly below its log start, oldest first.
pub(super) fn below_log_start(p: &Partition) -> Vec<Segment> {
    let st = p.state();
    let closed = st.segments.len().saturating_sub(1);
    st.segments
        .values()
        .take(closed)
        .take_while(|s| s.next_offset <= st.log_start_offset)
        .cloned()
        .collect()
}
