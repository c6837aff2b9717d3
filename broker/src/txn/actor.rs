//! The task that owns every transactional id of this broker: requests in order from the queue,
//! each id's state written before anyone is answered, the markers of a decision sent once it is
//! written and its completion written once they are, and the timers (transactions past their
//! timeout aborted, unused ids forgotten).

use std::collections::BTreeMap;
use std::sync::Arc;

use io_backend::Clock;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::markers::{MarkerWrite, Markers};
use super::metadata::{EndStep, InitStep, TopicPartition, TxnMetadata, TxnState, EPOCH_EXHAUSTED};
use super::{
    under_way, DescribedTxn, ListFilter, ListedTxn, Msg, TxnConfig, TRANSACTION_STATE_TOPIC,
};
use crate::controller::Controller;
use crate::protocol::error;
use crate::storage::Store;

/// What a state write does once it is durable (or failed).
pub(super) enum Then {
    /// Answer InitProducerId with the new producer id and epoch.
    Init(oneshot::Sender<Result<(i64, i16), i16>>),
    /// An open transaction was aborted at a bumped epoch for a new producer: answer
    /// CONCURRENT_TRANSACTIONS (the client retries) and send the abort's markers.
    InitAfterAbort(oneshot::Sender<Result<(i64, i16), i16>>),
    /// Answer AddPartitionsToTxn or AddOffsetsToTxn.
    Added(oneshot::Sender<i16>),
    /// Answer EndTxn, then send the decision's markers.
    Decided(oneshot::Sender<i16>),
    /// A transaction past its timeout was aborted: send the markers.
    TimedOut,
    /// Every marker of a decision was written: nothing waits.
    Completed,
    /// The id expired: it is forgotten.
    Expired,
}

/// A write of one id's state under way.
struct Writing {
    id: u64,
    /// The state written (`None`: a tombstone).
    next: Option<TxnMetadata>,
    then: Then,
}

/// One transactional id.
pub(super) struct Txn {
    pub(super) meta: TxnMetadata,
    writing: Option<Writing>,
}

impl Txn {
    pub(super) fn loaded(meta: TxnMetadata) -> Txn {
        Txn {
            meta,
            writing: None,
        }
    }
}

pub(super) struct Actor {
    pub(super) store: Arc<Store>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) config: TxnConfig,
    pub(super) markers: Arc<Markers>,
    /// In a cluster: the controller (the topic is made through it, and each of its partitions
    /// is written through its Raft group).
    pub(super) cluster: Option<Arc<Controller>>,
    /// The partitions of the topic whose ids this coordinator serves, with the term it read
    /// each in (its coordinator epoch): every one on a single node (`None`); in a cluster,
    /// those this broker leads and has read.
    pub(super) owned: Option<BTreeMap<i32, u64>>,
    pub(super) ids: BTreeMap<String, Txn>,
    /// Ids whose transaction is under way (Ongoing, or decided and not yet complete).
    pub(super) open: usize,
    rx: mpsc::Receiver<Msg>,
    /// For writes and markers to say when they are done (weak: the coordinator ends with its
    /// handle).
    pub(super) tx: mpsc::WeakSender<Msg>,
    next_write: u64,
    next_abort_check: Instant,
    next_expiry_check: Instant,
    /// Requests about ids that were busy (see [`Actor::busy`]), held until they settle.
    parked: super::parked::Parked,
}

impl Actor {
    pub(super) fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        config: TxnConfig,
        markers: Arc<Markers>,
        rx: mpsc::Receiver<Msg>,
        tx: mpsc::WeakSender<Msg>,
    ) -> Actor {
        let now = clock.now();
        let cluster = markers.cluster.clone();
        Actor {
            store,
            clock,
            config,
            owned: cluster.as_ref().map(|_| BTreeMap::new()),
            cluster,
            markers,
            ids: BTreeMap::new(),
            open: 0,
            rx,
            tx,
            next_write: 0,
            next_abort_check: now + config.abort_check_interval,
            next_expiry_check: now + config.expiry_check_interval,
            parked: Default::default(),
        }
    }

    /// Whether a request about `id` must wait: its last change is being written, or its
    /// decision's markers are.
    fn busy(&self, id: &str) -> bool {
        busy_in(&self.ids, id)
    }

    pub(super) async fn run(mut self) {
        let mut leaders = self.cluster.as_ref().map(|c| c.replication().changes());
        if self.cluster.is_none() {
            self.load().await;
            self.count_open();
            // Decisions whose markers a crash interrupted: sent again (a marker written twice
            // is harmless).
            self.resume_markers(|_| true);
        } else {
            self.ownership().await;
        }
        loop {
            let wake = self.next_abort_check.min(self.next_expiry_check).min(
                self.parked
                    .next_deadline()
                    .unwrap_or(self.next_expiry_check),
            );
            let wait = wake.saturating_duration_since(self.clock.now());
            let leadership = async {
                match leaders.as_mut() {
                    Some(l) => l.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let msg = tokio::select! {
                m = self.rx.recv() => m,
                changed = leadership => {
                    if changed {
                        self.ownership().await;
                        self.release_parked().await;
                    }
                    continue;
                }
                _ = self.clock.sleep(wait) => {
                    self.timers().await;
                    continue;
                }
            };
            let Some(msg) = msg else { return };
            self.handle(msg).await;
            self.release_parked().await;
            if self.clock.now() >= wake {
                self.timers().await;
            }
        }
    }

    /// What waited for an id that has settled (or is no longer served here) now goes on, in
    /// arrival order.
    async fn release_parked(&mut self) {
        while let Some(m) = {
            let ids = &self.ids;
            self.parked.take_settled(|id| busy_in(ids, id))
        } {
            self.handle(m).await;
        }
    }

    /// Count the transactions under way (for their bound).
    pub(super) fn count_open(&mut self) {
        self.open = self
            .ids
            .values()
            .filter(|t| under_way(t.meta.state))
            .count();
    }

    /// Send the markers of every decided transaction of the ids `which` says (after a load: a
    /// crash, or the previous coordinator's loss of the partition, may have interrupted them).
    pub(super) fn resume_markers(&self, which: impl Fn(&str) -> bool) {
        let decided: Vec<String> = self
            .ids
            .iter()
            .filter(|(id, t)| is_decided(t.meta.state) && which(id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in decided {
            self.send_markers(&id);
        }
    }

    async fn handle(&mut self, msg: Msg) {
        // In a cluster, a request about an id of a partition not served here is answered
        // with where to go (or to retry).
        let Some(msg) = self.elsewhere(msg) else {
            return;
        };
        // A producer's call about a busy id waits for it (a client told
        // CONCURRENT_TRANSACTIONS backs off, librdkafka for 100 ms: the next transaction's
        // first write would wait that long after every commit).
        let msg = match super::parked::waits_for(&msg).filter(|id| self.busy(id)) {
            Some(id) => {
                let id = id.to_string();
                let until = self.clock.now() + super::parked::WAIT_MAX;
                if let Some(refused) = self.parked.park(id, msg, until) {
                    super::parked::refuse(refused, error::CONCURRENT_TRANSACTIONS);
                }
                return;
            }
            None => msg,
        };
        match msg {
            Msg::Init {
                id,
                timeout_ms,
                expected,
                reply,
            } => self.init(id, timeout_ms, expected, reply).await,
            Msg::Add {
                id,
                producer_id,
                epoch,
                partitions,
                verify_only,
                reply,
            } => {
                if verify_only {
                    let _ = reply.send(self.verify(&id, producer_id, epoch, &partitions));
                } else {
                    self.add(id, producer_id, epoch, partitions, reply).await;
                }
            }
            Msg::End {
                id,
                producer_id,
                epoch,
                commit,
                reply,
            } => self.end(id, producer_id, epoch, commit, reply).await,
            Msg::Describe(ids, reply) => {
                let _ = reply.send(ids.iter().map(|id| self.describe(id)).collect());
            }
            Msg::List(filter, reply) => {
                let _ = reply.send(self.list(&filter));
            }
            Msg::Written { id, write, outcome } => self.written(&id, write, outcome),
            Msg::MarkersDone {
                id,
                producer_id,
                epoch,
            } => self.markers_done(&id, producer_id, epoch).await,
            Msg::MakeTopic => {
                if let Err(code) = self.topic().await {
                    tracing::warn!(code, "could not make {TRANSACTION_STATE_TOPIC}; an id's first write will try again");
                }
            }
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.wall_ms()
    }

    /// The id's state, unless a write of it is under way (CONCURRENT_TRANSACTIONS).
    fn settled(&self, id: &str) -> Result<Option<&TxnMetadata>, i16> {
        match self.ids.get(id) {
            Some(t) if t.writing.is_some() => Err(error::CONCURRENT_TRANSACTIONS),
            Some(t) => Ok(Some(&t.meta)),
            None => Ok(None),
        }
    }

    /// The id's settled state, or what a producer's call about it gets: CONCURRENT_TRANSACTIONS
    /// while it is being written, INVALID_PRODUCER_ID_MAPPING when it is not known.
    fn known(&self, id: &str) -> Result<&TxnMetadata, i16> {
        self.settled(id)?.ok_or(error::INVALID_PRODUCER_ID_MAPPING)
    }

    async fn init(
        &mut self,
        id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        reply: oneshot::Sender<Result<(i64, i16), i16>>,
    ) {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            let _ = reply.send(Err(error::INVALID_TRANSACTION_TIMEOUT));
            return;
        }
        let now = self.now_ms();
        let meta = match self.settled(&id) {
            Err(code) => {
                let _ = reply.send(Err(code));
                return;
            }
            Ok(Some(meta)) => meta.clone(),
            Ok(None) => match self.new_producer_id().await {
                Ok(pid) => TxnMetadata::new(pid, timeout_ms, now),
                Err(code) => {
                    let _ = reply.send(Err(code));
                    return;
                }
            },
        };
        // The epochs of this producer id are used up: the next one is a new id.
        let fresh = if meta.producer_epoch >= EPOCH_EXHAUSTED && meta.state.may_expire() {
            match self.new_producer_id().await {
                Ok(pid) => pid,
                Err(code) => {
                    let _ = reply.send(Err(code));
                    return;
                }
            }
        } else {
            -1
        };
        match meta.init_producer_id(expected, timeout_ms, now, || fresh) {
            Err(code) => {
                let _ = reply.send(Err(code));
            }
            Ok(InitStep::Answer { producer_id, epoch }) => {
                let _ = reply.send(Ok((producer_id, epoch)));
            }
            Ok(InitStep::Write(next)) => {
                self.ids
                    .entry(id.clone())
                    .or_insert_with(|| Txn::loaded(meta));
                self.write(&id, Some(next), Then::Init(reply)).await;
            }
            Ok(InitStep::AbortFirst(next)) => {
                self.write(&id, Some(next), Then::InitAfterAbort(reply))
                    .await;
            }
        }
    }

    async fn new_producer_id(&self) -> Result<i64, i16> {
        if let Some(cluster) = &self.cluster {
            return cluster
                .new_producer_id(std::time::Duration::from_secs(10))
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "cannot get a producer id from the cluster");
                    error::COORDINATOR_NOT_AVAILABLE
                });
        }
        self.store.new_producer_id().await.map_err(|e| {
            tracing::warn!(error = %e, "cannot hand out a producer id");
            error::COORDINATOR_NOT_AVAILABLE
        })
    }

    /// Whether every one of `partitions` is in the producer's transaction (a partition
    /// leader's check before the producer's first transactional batch there).
    fn verify(&self, id: &str, producer_id: i64, epoch: i16, partitions: &[TopicPartition]) -> i16 {
        let meta = match self.ids.get(id) {
            Some(t) => &t.meta,
            None => return error::INVALID_PRODUCER_ID_MAPPING,
        };
        if meta.producer_id != producer_id {
            return error::INVALID_PRODUCER_ID_MAPPING;
        }
        if meta.producer_epoch != epoch {
            return error::INVALID_PRODUCER_EPOCH;
        }
        let added = meta.state == TxnState::Ongoing
            && partitions.iter().all(|p| meta.partitions.contains(p));
        if added {
            error::NONE
        } else {
            error::INVALID_TXN_STATE
        }
    }

    async fn add(
        &mut self,
        id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<TopicPartition>,
        reply: oneshot::Sender<i16>,
    ) {
        let meta = match self.known(&id) {
            Ok(meta) => meta,
            Err(code) => {
                let _ = reply.send(code);
                return;
            }
        };
        let opens = !under_way(meta.state);
        match meta.add_partitions(producer_id, epoch, partitions, self.now_ms()) {
            Err(code) => {
                let _ = reply.send(code);
            }
            Ok(None) => {
                let _ = reply.send(error::NONE);
            }
            Ok(Some(next)) => {
                if next.partitions.len() > self.config.partitions_max {
                    tracing::warn!(transactional_id = %id, partitions = next.partitions.len(), limit = self.config.partitions_max, "refusing partitions past the bound of one transaction");
                    let _ = reply.send(error::INVALID_REQUEST);
                    return;
                }
                if opens && self.open >= self.config.open_max {
                    tracing::warn!(transactional_id = %id, limit = self.config.open_max, "refusing a transaction past the bound of transactions under way");
                    let _ = reply.send(error::COORDINATOR_NOT_AVAILABLE);
                    return;
                }
                self.write(&id, Some(next), Then::Added(reply)).await;
            }
        }
    }

    async fn end(
        &mut self,
        id: String,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        reply: oneshot::Sender<i16>,
    ) {
        let meta = match self.known(&id) {
            Ok(meta) => meta,
            Err(code) => {
                let _ = reply.send(code);
                return;
            }
        };
        match meta.end_txn(producer_id, epoch, commit, self.now_ms()) {
            Err(code) => {
                let _ = reply.send(code);
            }
            Ok(EndStep::Done) => {
                let _ = reply.send(error::NONE);
            }
            Ok(EndStep::Write(next)) => self.write(&id, Some(next), Then::Decided(reply)).await,
        }
    }

    pub(super) fn describe(&self, id: &str) -> DescribedTxn {
        match self.ids.get(id) {
            None => DescribedTxn::unknown(id, error::TRANSACTIONAL_ID_NOT_FOUND),
            Some(t) => DescribedTxn {
                transactional_id: id.to_string(),
                error: error::NONE,
                state: t.meta.state.name(),
                timeout_ms: t.meta.timeout_ms,
                start_ms: t.meta.start_ms,
                producer_id: t.meta.producer_id,
                producer_epoch: t.meta.producer_epoch,
                partitions: t.meta.partitions.iter().cloned().collect(),
            },
        }
    }

    fn list(&self, filter: &ListFilter) -> Vec<ListedTxn> {
        let now = self.now_ms();
        self.ids
            .iter()
            // An id whose first write has not happened yet is not known to anyone.
            .filter(|(_, t)| t.meta.producer_epoch >= 0)
            .filter(|(_, t)| {
                (filter.states.is_empty() || filter.states.iter().any(|s| s == t.meta.state.name()))
                    && (filter.producer_ids.is_empty()
                        || filter.producer_ids.contains(&t.meta.producer_id))
                    && (filter.duration_ms < 0
                        || now.saturating_sub(t.meta.start_ms) >= filter.duration_ms)
            })
            .filter(|(id, _)| filter.id_pattern.as_ref().is_none_or(|p| p.is_match(id)))
            .map(|(id, t)| ListedTxn {
                transactional_id: id.clone(),
                producer_id: t.meta.producer_id,
                state: t.meta.state.name(),
            })
            .collect()
    }

    /// Write `next` as the id's state (`None`: forget it); `then` once it is durable.
    pub(super) async fn write(&mut self, id: &str, next: Option<TxnMetadata>, then: Then) {
        let write = self.next_write;
        self.next_write += 1;
        let Some(t) = self.ids.get_mut(id) else {
            return;
        };
        t.writing = Some(Writing {
            id: write,
            next: next.clone(),
            then,
        });
        if next.as_ref().is_some_and(|n| is_decided(n.state)) {
            // A decision not yet written: none of its markers may have left this broker (a
            // crash here leaves the transaction open, to be ended again by its producer or
            // aborted by its timeout).
            crate::fault_point!("txn.decision_write");
        }
        match self.append(id, next).await {
            Ok(appending) => {
                let Some(tx) = self.tx.upgrade() else { return };
                let id = id.to_string();
                tokio::spawn(async move {
                    let outcome = appending.outcome().await;
                    let _ = tx.send(Msg::Written { id, write, outcome }).await;
                });
            }
            Err(code) => self.written(id, write, Err(code)),
        }
    }

    /// A state write finished: the state becomes the one written, and what waited goes on;
    /// or the state stays as it was, and the waiter gets the code.
    fn written(&mut self, id: &str, write: u64, outcome: Result<(), i16>) {
        let Some(t) = self.ids.get_mut(id) else {
            return;
        };
        if t.writing.as_ref().is_none_or(|w| w.id != write) {
            return;
        }
        let Writing { next, then, .. } = t.writing.take().expect("checked");
        if let Err(code) = outcome {
            tracing::warn!(transactional_id = %id, code, "a transaction's state was not written");
            if t.meta.producer_epoch < 0 {
                // A new id whose first state never made it: not known.
                self.ids.remove(id);
            }
            match then {
                Then::Init(reply) | Then::InitAfterAbort(reply) => {
                    let _ = reply.send(Err(code));
                }
                Then::Added(reply) | Then::Decided(reply) => {
                    let _ = reply.send(code);
                }
                // The next check tries again.
                Then::TimedOut | Then::Expired => {}
                // The markers are written; the completion is tried again after a while.
                Then::Completed => self.retry_completion(id),
            }
            return;
        }
        let was = t.meta.state;
        match next {
            Some(next) => t.meta = next,
            None => {
                self.ids.remove(id);
            }
        }
        let now = self.ids.get(id).map(|t| t.meta.state);
        match (under_way(was), now.is_some_and(under_way)) {
            (false, true) => self.open += 1,
            (true, false) => self.open = self.open.saturating_sub(1),
            _ => {}
        }
        match then {
            Then::Init(reply) => {
                let meta = &self.ids[id].meta;
                let _ = reply.send(Ok((meta.producer_id, meta.producer_epoch)));
            }
            Then::InitAfterAbort(reply) => {
                let _ = reply.send(Err(error::CONCURRENT_TRANSACTIONS));
                self.send_markers(id);
            }
            Then::Added(reply) => {
                let _ = reply.send(error::NONE);
            }
            Then::Decided(reply) => {
                let _ = reply.send(error::NONE);
                self.send_markers(id);
            }
            Then::TimedOut => {
                crate::coverage::reached(crate::coverage::Event::TxnTimedOut);
                self.send_markers(id);
            }
            Then::Completed | Then::Expired => {}
        }
    }

    /// Send the markers of the id's decision (written already); the completion follows.
    fn send_markers(&self, id: &str) {
        let Some(t) = self.ids.get(id) else { return };
        let meta = &t.meta;
        // One coordinator on a single node, whose epoch never changes; in a cluster, the term
        // in which this broker read the id's partition.
        let index = super::partition_for(id, self.config.partitions);
        let term = match &self.owned {
            None => 0,
            Some(owned) => match owned.get(&index) {
                Some(&term) => term,
                None => return,
            },
        };
        let write = MarkerWrite {
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            commit: meta.state == TxnState::PrepareCommit,
            coordinator_epoch: i32::try_from(term).unwrap_or(i32::MAX),
            partitions: meta.partitions.iter().cloned().collect(),
        };
        let Some(tx) = self.tx.upgrade() else { return };
        let markers = self.markers.clone();
        let cluster = self.cluster.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            // In a cluster, written while this broker still leads the id's partition in the
            // same term; its successor writes them otherwise.
            let still_coordinator = || {
                cluster.as_ref().is_none_or(|c| {
                    c.replication()
                        .replica(TRANSACTION_STATE_TOPIC, index)
                        .is_some_and(|v| {
                            let s = v.status();
                            s.is_leader && s.term == term
                        })
                })
            };
            if !markers.write_until_done(&write, still_coordinator).await {
                return;
            }
            let _ = tx
                .send(Msg::MarkersDone {
                    id,
                    producer_id: write.producer_id,
                    epoch: write.producer_epoch,
                })
                .await;
        });
    }

    /// After a failed write of a completion: the markers are done, so say so again later.
    fn retry_completion(&self, id: &str) {
        let Some(t) = self.ids.get(id) else { return };
        let Some(tx) = self.tx.upgrade() else { return };
        let (id, producer_id, epoch) = (id.to_string(), t.meta.producer_id, t.meta.producer_epoch);
        let clock = self.clock.clone();
        tokio::spawn(async move {
            clock.sleep(std::time::Duration::from_secs(1)).await;
            let _ = tx
                .send(Msg::MarkersDone {
                    id,
                    producer_id,
                    epoch,
                })
                .await;
        });
    }

    async fn markers_done(&mut self, id: &str, producer_id: i64, epoch: i16) {
        let Some(t) = self.ids.get(id) else { return };
        let same = t.meta.producer_id == producer_id && t.meta.producer_epoch == epoch;
        if !same || !is_decided(t.meta.state) || t.writing.is_some() {
            return;
        }
        let next = t.meta.complete(self.now_ms());
        self.write(id, Some(next), Then::Completed).await;
    }

    /// Transactions past their timeout aborted; ids unused for the expiration forgotten;
    /// requests that waited too long for a busy id answered CONCURRENT_TRANSACTIONS.
    async fn timers(&mut self) {
        let now = self.clock.now();
        for late in self.parked.take_late(now) {
            super::parked::refuse(late, error::CONCURRENT_TRANSACTIONS);
        }
        let wall = self.now_ms();
        if now >= self.next_abort_check {
            self.next_abort_check = now + self.config.abort_check_interval;
            let late: Vec<(String, TxnMetadata)> = self
                .ids
                .iter()
                .filter(|(_, t)| t.writing.is_none())
                .filter_map(|(id, t)| Some((id.clone(), t.meta.timed_out(wall)?)))
                .collect();
            for (id, next) in late {
                tracing::info!(transactional_id = %id, producer_id = next.producer_id, "aborting a transaction past its timeout");
                self.write(&id, Some(next), Then::TimedOut).await;
            }
        }
        if now >= self.next_expiry_check {
            self.next_expiry_check = now + self.config.expiry_check_interval;
            let expired: Vec<String> = self
                .ids
                .iter()
                .filter(|(_, t)| {
                    t.writing.is_none() && t.meta.expired(wall, self.config.id_expiration_ms)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                self.write(&id, None, Then::Expired).await;
            }
        }
    }
}

fn busy_in(ids: &BTreeMap<String, Txn>, id: &str) -> bool {
    ids.get(id)
        .is_some_and(|t| t.writing.is_some() || is_decided(t.meta.state))
}

fn is_decided(state: TxnState) -> bool {
    matches!(state, TxnState::PrepareCommit | TxnState::PrepareAbort)
}
