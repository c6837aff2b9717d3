//! Entries committed: the high watermark moves to the last of them, a committed log-start
//! mark moves this replica's log start, the producers' state keeps what is committed, and the
//! `acks=all` proposals waiting for it are answered.
//!
//! Invariant: entries take effect only once committed, in order.

use super::*;

/// Entries through `commit` are committed: the high watermark moves there, and the proposals
/// waiting for it are answered.
pub(super) fn apply(g: &mut Group, commit: u64, store: &Arc<Store>) {
    let storage = g.raw.store();
    if let Some(hw) = storage.end_offset(commit) {
        if g.view.partition.set_committed_offset(hw) {
            store.published();
        }
    }
    if let Some(to) = g.view.partition.take_due_log_start() {
        crate::coverage::reached(crate::coverage::Event::LogStartMarkApplied);
        // A committed log-start mark: this replica moves its log start there (the admin
        // lane's DeleteRecords, durable before visible), away from the loop.
        let (store, partition) = (store.clone(), g.view.partition.clone());
        tokio::spawn(async move {
            if let Err(e) = store.delete_records(partition.clone(), to).await {
                tracing::warn!(topic = %partition.topic, partition = partition.index, to, error = %e, "cannot move the log start to a committed mark yet; tried again at the next commit");
                partition.log_start_not_moved(to);
            }
        });
    }
    g.producers.committed(commit);
    let hw = g.view.partition.high_watermark();
    let log_start = g.view.partition.log_start_offset();
    let mut kept = VecDeque::with_capacity(g.waiters.len());
    for w in g.waiters.drain(..) {
        if w.refusal.is_some() {
            kept.push_back(w);
            continue;
        }
        if let Some((base_offset, end)) = w.duplicate {
            if hw >= end {
                let _ = w.reply.send(Ok(Appended {
                    base_offset,
                    log_start_offset: log_start,
                    log_append_time_ms: -1,
                }));
            } else {
                kept.push_back(w);
            }
            continue;
        }
        if w.acks == -1 && w.last_index <= commit && w.min_insync == 0 {
            let a = answer(storage, &w, log_start);
            let _ = w.reply.send(a);
        } else {
            kept.push_back(w);
        }
    }
    g.waiters = kept;
    storage.compact(commit);
}
