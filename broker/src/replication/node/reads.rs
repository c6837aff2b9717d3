//! Catch-up reads: entries a follower needs that the leader no longer keeps in memory, read
//! from the log within the budgets of [`super::super::catch_up`] and the broker's memory.
//!
//! Invariant: at most the catch-up bound of reads in flight, each holding its bytes of the
//! memory budget until raft-rs has the entries; a failed read is made again after a backoff.

use super::*;

impl Node {
    /// The reads raft-rs asked for: they wait their turn in the catch-up budgets.
    pub(super) fn start_fetches(&mut self, group: GroupId) {
        let Some(g) = self.groups.get(&group) else {
            return;
        };
        for (low, max_bytes) in g.raw.store().take_fetches() {
            self.catch_up.want(group, low, max_bytes);
        }
    }

    /// Start the catch-up reads the budgets allow now; drop those nobody waits for.
    pub(super) fn start_reads(&mut self) {
        let followers = FollowerView {
            me: self.id,
            groups: &self.groups,
            transport: &self.transport,
            stepped_down: self.stepped_down,
        };
        let verdicts = self.catch_up.next(self.env.clock.now(), &followers);
        Metrics::peak(
            &self.metrics.catch_up_reads_in_flight_peak,
            self.catch_up.in_flight() as i64,
        );
        Metrics::peak(
            &self.metrics.catch_up_follower_bytes_peak,
            self.catch_up.follower_bytes_peak() as i64,
        );
        for verdict in verdicts {
            let read = match verdict {
                Verdict::Abandon(w) => {
                    if let Some(g) = self.groups.get(&w.group) {
                        g.raw.store().abandon_fetch(w.low);
                    }
                    continue;
                }
                Verdict::Start(read) => read,
            };
            let Some(g) = self.groups.get(&read.group) else {
                continue;
            };
            let known = g.raw.store().base_offset(read.low);
            let partition = g.view.partition.clone();
            let io = self.store.io().clone();
            let memory = self.memory.clone();
            self.fetches.push(Box::pin(async move {
                // Taken before the read, given back once raft-rs has what it brought.
                let held = memory.acquire(read.max_bytes as usize).await;
                let outcome = read_entries(&partition, &io, read.low, known, read.max_bytes)
                    .await
                    .map(|entries| {
                        let bytes = entries.iter().map(|e| e.data.len() as u64).sum();
                        (entries, bytes)
                    });
                (read, outcome, held)
            }));
        }
        self.metrics
            .catch_up_reads_in_flight
            .set(self.catch_up.in_flight() as i64);
        self.metrics
            .catch_up_reads_waiting
            .set(self.catch_up.waiting() as i64);
    }

    pub(super) fn fetch_done(&mut self, (read, outcome, held): FetchDone) {
        let now = self.env.clock.now();
        let group = read.group;
        match outcome {
            Ok((entries, bytes)) => {
                self.catch_up.done(now, read, Ok(bytes));
                Metrics::inc(&self.metrics.catch_up_bytes, bytes);
                let Some(g) = self.groups.get_mut(&group) else {
                    return;
                };
                let contexts = g.raw.store().fetched(read.low, entries);
                for context in contexts {
                    g.raw.on_entries_fetched(context);
                }
                g.raw.store().fetch_handed_over();
                self.dirty.insert(group);
            }
            Err(e) => {
                let attempts = self.catch_up.done(now, read, Err(()));
                if matches!(e, crate::storage::StorageError::Stalled { .. }) {
                    crate::coverage::reached(crate::coverage::Event::CatchUpReadStalled);
                }
                Metrics::inc(&self.metrics.catch_up_read_failures, 1);
                if let Some(suppressed) = self.read_warnings.admit(now) {
                    tracing::warn!(
                        group,
                        low = read.low,
                        follower = read.follower,
                        attempts,
                        suppressed,
                        error = %e,
                        "cannot read Raft entries for a follower; trying again after a backoff"
                    );
                }
            }
        }
        drop(held);
    }
}

/// What the catch-up scheduler asks of the node: who still waits for a read, and how much the
/// transport holds for them.
pub(super) struct FollowerView<'a> {
    pub(super) me: NodeId,
    pub(super) groups: &'a HashMap<GroupId, Group>,
    pub(super) transport: &'a Transport,
    pub(super) stepped_down: bool,
}

impl catch_up::Followers for FollowerView<'_> {
    fn waiting_at(&self, group: GroupId, low: u64) -> Option<NodeId> {
        let g = self.groups.get(&group)?;
        if self.stepped_down || g.raw.raft.state != StateRole::Leader {
            return None;
        }
        g.raw
            .raft
            .prs()
            .iter()
            .find(|(&id, pr)| id != self.me && pr.next_idx == low)
            .map(|(&id, _)| id)
    }

    fn queued_bytes(&self, follower: NodeId) -> u64 {
        self.transport.queued_bytes(follower) as u64
    }
}
