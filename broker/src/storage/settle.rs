//! Settling an unsettled partition (a new replicated one, `log::create`): its segment and
//! directory synced, then a record in the data directory's file of hard states that its pieces
//! are done with ([`super::raft_states`]). Until then its entries are durable only as those
//! pieces; a round settles it before a write that would cut, reset or roll its log, or take
//! its pieces past [`raft_states::UNSETTLED_BYTES_MAX`].
//!
//! Invariant: a partition is marked settled (in memory, and by the record) only after its
//! segment and directory were synced; its pieces go from the file only with that record.

use std::sync::Arc;

use futures::future::join_all;

use super::board::Board;
use super::log::Partition;
use super::pipeline::Pipeline;
use super::raft_states;
use super::raft_writes::{key_of, roll_due};
use super::{AppendError, RaftWrite, RaftWritten};
use crate::batch::BatchHeader;

impl Pipeline {
    /// Settle unsettled partitions before a write that would do more than append a little to
    /// them (`settle_due`): each one's segment and directory synced, then a record in the file
    /// of hard states that its pieces are done with. False (every write answered) on a failure.
    pub(super) async fn settle(
        &mut self,
        partitions: &[Arc<Partition>],
        deadline: Option<(tokio::time::Instant, std::time::Duration)>,
        board: &Board<RaftWritten, AppendError>,
    ) -> bool {
        let io = self.io().clone();
        let syncs = partitions.iter().map(|p| async {
            let file = p.state().active().file.clone();
            let (data, dir) = futures::join!(io.sync_data(&file), io.sync_dir(&p.dir));
            data.and(dir)
        });
        let synced = self.within(deadline, board, false, join_all(syncs)).await;
        if !self.phase_passed(synced, board, false) {
            return false;
        }
        let changes = raft_states::Changes {
            settled: partitions.iter().map(|p| key_of(p)).collect(),
            ..Default::default()
        };
        let Some(staged) = self.raft_states.as_ref().and_then(|s| s.stage(changes)) else {
            return true;
        };
        let (written, late) = self.within(deadline, board, false, staged.write(&io)).await;
        let outcome = written.as_ref().map(|_| ()).map_err(Clone::clone);
        if let Some(states) = &mut self.raft_states {
            states.finish(staged, written.ok());
        }
        if !self.phase_passed((vec![outcome], late), board, false) {
            return false;
        }
        for p in partitions {
            if let Some(r) = p.state_mut().replica.as_mut() {
                r.unsettled = None;
            }
        }
        crate::coverage::reached(crate::coverage::Event::PartitionSettled);
        true
    }
}

/// Whether the write's partition must be settled first: it is unsettled and the write cuts or
/// resets its log, rolls its segment, or would take its pieces past
/// [`raft_states::UNSETTLED_BYTES_MAX`].
pub(super) fn settle_due(w: &RaftWrite, headers: &[BatchHeader], now_ms: i64) -> bool {
    let Some(recorded) = w
        .partition
        .state()
        .replica
        .as_ref()
        .and_then(|r| r.unsettled)
    else {
        return false;
    };
    let bytes: u64 = headers.iter().map(|h| h.size as u64).sum();
    w.reset.is_some()
        || w.truncate_from.is_some()
        || recorded + bytes > raft_states::UNSETTLED_BYTES_MAX
        || (!w.entries.is_empty() && roll_due(w, headers, now_ms))
}
