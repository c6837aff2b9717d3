//! The consumer-group coordinator, classic protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups,
//! OffsetDelete), as Kafka's `GroupCoordinator` does it.
//!
//! One task ([`Actor`]) owns every group and takes requests in order from a bounded queue.
//! Timers — member sessions, the rebalance deadline, `group.initial.rebalance.delay.ms`, members
//! waiting to rejoin with the id they were given — run on the node's clock. The broker passes
//! member metadata and assignments through untouched, so every assignor works.
//!
//! Groups and committed offsets are records in the internal topic `__consumer_offsets`
//! ([`records`], Kafka's schemas), written through the same store and commit pipeline as
//! user data: a group's partition of it is `abs(java_hash(group id)) % partitions`, as Kafka's.
//! A response that depends on a write (a committed offset, a completed rebalance) is sent only
//! once the write is durable. The coordinator loads the topic when it starts, so groups and
//! offsets survive restarts (members keep their generation and go on heartbeating).
//!
//! Architecture invariant: the coordinator sits beside the commit pipeline, not inside it — it
//! appends to and reads its partitions through the [`Store`] like any client of the log.

mod cleanup;
mod consumer;
mod held;
mod log;
mod membership;
mod offsets;
mod ownership;
pub mod records;
mod requests;
mod settings;
mod state;
mod txn_offsets;

pub use consumer::records::ConsumerEntry;
pub use consumer::{
    ConsumerHeartbeat, ConsumerHeartbeatResponse, DescribedConsumerGroup, DescribedConsumerMember,
    TopicPartitions, ASSIGNORS,
};
use log::{ensure_offsets_topic, InFlight, Pending};
pub use requests::*;
pub use settings::GroupConfig;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_backend::{Clock, EnvRng};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::batch;
use crate::controller::Controller;
use crate::protocol::error;
use crate::replication::node::ReplicaError;
use crate::storage::catalog::TopicError;
use crate::storage::{AppendError, Appended, Store};
use records::{Entry, OffsetValue};
use state::Group;

pub use crate::storage::catalog::OFFSETS_TOPIC;

/// Requests queued for the coordinator before callers wait.
const QUEUE: usize = 1024;

/// A request in the coordinator's queue, with where to answer it.
enum Msg {
    Join(JoinRequest, oneshot::Sender<JoinResponse>),
    Sync(SyncRequest, oneshot::Sender<SyncResponse>),
    Heartbeat(String, i32, MemberRef, oneshot::Sender<i16>),
    Leave(String, Vec<MemberRef>, oneshot::Sender<Vec<i16>>),
    Commit(CommitRequest, oneshot::Sender<Result<Vec<i16>, i16>>),
    /// The group, the partitions asked for (all: `None`), how they are asked.
    Fetch(
        String,
        Option<Vec<(String, Vec<i32>)>>,
        FetchAsked,
        oneshot::Sender<Result<Vec<Committed>, i16>>,
    ),
    /// TxnOffsetCommit: a transaction's offsets, committed only with it.
    TxnCommit(TxnCommitRequest, oneshot::Sender<Result<Vec<i16>, i16>>),
    /// A transaction's marker was written to a partition of the offsets topic: its offsets
    /// there are committed (or dropped).
    TxnCompleted(i32, i64, bool, oneshot::Sender<()>),
    /// ConsumerGroupHeartbeat (KIP-848's protocol).
    ConsumerHeartbeat(
        ConsumerHeartbeat,
        oneshot::Sender<ConsumerHeartbeatResponse>,
    ),
    ConsumerDescribe(Vec<String>, oneshot::Sender<Vec<DescribedConsumerGroup>>),
    List(oneshot::Sender<Vec<ListedGroup>>),
    Describe(Vec<String>, oneshot::Sender<Vec<DescribedGroup>>),
    DeleteGroups(Vec<String>, oneshot::Sender<Vec<i16>>),
    DeleteOffsets(
        String,
        Vec<(String, i32)>,
        oneshot::Sender<Result<Vec<i16>, i16>>,
    ),
    /// A write the coordinator started is durable (or failed).
    /// A write to a partition of the offsets topic finished (its partition, its id).
    Written(i32, u64, Result<(), i16>),
    /// A checkpoint of a partition of the offsets topic finished: the records it wrote, or
    /// why it did not.
    Checkpointed(i32, Result<i64, String>),
    /// A client looked for a group's coordinator: make the offsets topic if it is not there
    /// (a single node; a cluster's is made by [`Coordinator::coordinator_of`]).
    MakeOffsetsTopic,
}

/// The coordinator as request handlers see it.
pub struct Coordinator {
    tx: mpsc::Sender<Msg>,
    pub config: GroupConfig,
    cluster: Option<Arc<Controller>>,
    /// A creation of the offsets topic is under way (in a cluster), or was asked for (on a
    /// single node, once).
    creating: Arc<std::sync::atomic::AtomicBool>,
}

impl Msg {
    /// The one group a request is about (requests about several, or none, are never held).
    fn group(&self) -> Option<&str> {
        match self {
            Msg::Join(req, _) => Some(&req.group_id),
            Msg::Sync(req, _) => Some(&req.group_id),
            Msg::Commit(req, _) => Some(&req.group_id),
            Msg::TxnCommit(req, _) => Some(&req.commit.group_id),
            Msg::ConsumerHeartbeat(req, _) => Some(&req.group_id),
            Msg::Heartbeat(group, ..)
            | Msg::Leave(group, ..)
            | Msg::Fetch(group, ..)
            | Msg::DeleteOffsets(group, ..) => Some(group),
            _ => None,
        }
    }
}

/// How an OffsetFetch asks: whether offsets a transaction has pending are an error
/// (`require_stable`), and the member asking (v9), if it names one.
struct FetchAsked {
    require_stable: bool,
    member: Option<(String, i32)>,
}

/// What the coordinator answers when it has stopped (it never should while the node runs).
const GONE: i16 = error::COORDINATOR_NOT_AVAILABLE;
/// What it answers for a group whose partition of the offsets topic another broker leads.
const ELSEWHERE: i16 = error::NOT_COORDINATOR;

impl Coordinator {
    /// Start the coordinator: it loads `__consumer_offsets` (if the topic exists) before it
    /// takes the first request.
    pub fn start(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        rng: EnvRng,
        config: GroupConfig,
        cluster: Option<Arc<Controller>>,
    ) -> Arc<Coordinator> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let owned = cluster.as_ref().map(|_| Default::default());
        let handle_cluster = cluster.clone();
        let actor = Actor {
            store,
            cluster,
            owned,
            clock: clock.clone(),
            rng,
            config,
            groups: BTreeMap::new(),
            rx,
            tx: tx.downgrade(),
            next_write: 0,
            writes: HashMap::new(),
            checkpoints: HashMap::new(),
            next_retention_check: clock.now() + config.offsets_retention_check_interval,
            held: held::Held::new(),
            reread: Default::default(),
            reread_retry: None,
        };
        tokio::spawn(actor.run());
        Arc::new(Coordinator {
            tx,
            config,
            cluster: handle_cluster,
            creating: Default::default(),
        })
    }

    /// On a single node: a client looks for a group's coordinator, so the offsets topic is
    /// made now if it is not there (Kafka makes it on the first FindCoordinator, and clients
    /// may look for it in Metadata from then on). Asked once; a group's first write makes it
    /// too.
    pub fn offsets_topic_wanted(&self) {
        if self.cluster.is_none()
            && !self
                .creating
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            // Only a hint, never waited for: with the coordinator's queue full it is dropped and
            // the next lookup asks again (a group's first write makes the topic anyway).
            #[allow(clippy::disallowed_methods)]
            if self.tx.try_send(Msg::MakeOffsetsTopic).is_err() {
                self.creating
                    .store(false, std::sync::atomic::Ordering::Release);
            }
        }
    }

    /// In a cluster: the broker that coordinates `group_id` (the leader of its partition of the
    /// offsets topic) as `(id, host, port)`; `None` while there is none (the topic is made on
    /// the first ask, as Kafka does).
    pub fn coordinator_of(
        &self,
        group_id: &str,
        listener: Option<&str>,
    ) -> Option<(i32, String, i32)> {
        let cluster = self.cluster.as_ref()?;
        let md = cluster.metadata();
        if !md.topics.contains_key(OFFSETS_TOPIC) {
            if !self
                .creating
                .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                let cluster = cluster.clone();
                let creating = self.creating.clone();
                let (partitions, rf, overrides) = (
                    self.config.offsets_partitions,
                    self.config.offsets_replication,
                    log::offsets_topic_overrides(&self.config),
                );
                tokio::spawn(async move {
                    let _ = ensure_offsets_topic(&cluster, partitions, rf, overrides).await;
                    creating.store(false, std::sync::atomic::Ordering::Release);
                });
            }
            return None;
        }
        let p = md.partition(OFFSETS_TOPIC, self.partition_for(group_id))?;
        // The leader as this broker knows it: its own replica's view when it is fresher.
        let mut leader = p.leader.map(|l| (l, p.leader_term));
        if let Some(view) = cluster
            .replication()
            .replica(OFFSETS_TOPIC, self.partition_for(group_id))
        {
            let s = view.status();
            if let Some(l) = s.leader.filter(|_| s.term >= p.leader_term) {
                leader = Some((l, s.term));
            }
        }
        let (id, _) = leader?;
        let b = md.brokers.get(&id).filter(|b| !b.fenced)?;
        let (host, port) = b.address_on(listener)?;
        Some((b.id as i32, host, port))
    }

    /// The partition of `__consumer_offsets` that holds `group_id` (Kafka's choice).
    pub fn partition_for(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.config.offsets_partitions)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Msg, gone: T) -> T {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(make(tx)).await.is_err() {
            return gone;
        }
        rx.await.unwrap_or(gone)
    }

    pub async fn join(&self, req: JoinRequest) -> JoinResponse {
        let gone = JoinResponse {
            error: GONE,
            ..Default::default()
        };
        self.ask(|tx| Msg::Join(req, tx), gone).await
    }

    pub async fn sync(&self, req: SyncRequest) -> SyncResponse {
        let gone = SyncResponse {
            error: GONE,
            ..Default::default()
        };
        self.ask(|tx| Msg::Sync(req, tx), gone).await
    }

    pub async fn heartbeat(&self, group_id: String, generation: i32, member: MemberRef) -> i16 {
        self.ask(|tx| Msg::Heartbeat(group_id, generation, member, tx), GONE)
            .await
    }

    /// One error code per member, in order.
    pub async fn leave(&self, group_id: String, members: Vec<MemberRef>) -> Vec<i16> {
        let n = members.len();
        self.ask(|tx| Msg::Leave(group_id, members, tx), vec![GONE; n])
            .await
    }

    /// One error code per offset, in order; or one for the whole request.
    /// Hand a commit to the coordinator now, and its answer later: the commits a connection
    /// pipelines reach the coordinator in the order they were sent (each request's handling
    /// is a future of its own, polled in no particular order), so the last one sent is the one
    /// that stays.
    pub async fn commit_in_order(
        &self,
        req: CommitRequest,
    ) -> impl std::future::Future<Output = Result<Vec<i16>, i16>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.send(Msg::Commit(req, tx)).await.is_ok();
        async move {
            if !sent {
                return Err(GONE);
            }
            rx.await.unwrap_or(Err(GONE))
        }
    }

    /// The group's committed offsets: of the partitions asked for, or all (`None`). With
    /// `require_stable`, a partition a transaction has an offset pending for is answered
    /// UNSTABLE_OFFSET_COMMIT (the consumer asks again).
    pub async fn fetch(
        &self,
        group_id: String,
        partitions: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Result<Vec<Committed>, i16> {
        self.fetch_as(group_id, partitions, require_stable, None)
            .await
    }

    /// [`Coordinator::fetch`] by `member` (OffsetFetch v9's member id and epoch, when it
    /// names one): in a consumer-protocol group the member must be there, at that epoch.
    pub async fn fetch_as(
        &self,
        group_id: String,
        partitions: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
        member: Option<(String, i32)>,
    ) -> Result<Vec<Committed>, i16> {
        let asked = FetchAsked {
            require_stable,
            member,
        };
        self.ask(|tx| Msg::Fetch(group_id, partitions, asked, tx), Err(GONE))
            .await
    }

    /// TxnOffsetCommit: one code per offset, in order; or one for the whole request. The
    /// offsets are written as the producer's transactional batch and stay pending (not what
    /// OffsetFetch answers) until the transaction's marker.
    pub async fn txn_offset_commit(&self, req: TxnCommitRequest) -> Result<Vec<i16>, i16> {
        self.ask(|tx| Msg::TxnCommit(req, tx), Err(GONE)).await
    }

    /// A marker of `producer_id`'s transaction was written to partition `partition` of the
    /// offsets topic: its pending offsets there become committed (`commit`) or are dropped.
    pub async fn txn_completed(&self, partition: i32, producer_id: i64, commit: bool) {
        self.ask(
            |tx| Msg::TxnCompleted(partition, producer_id, commit, tx),
            (),
        )
        .await
    }

    /// ConsumerGroupHeartbeat: the member's epoch and assignment, or why not.
    pub async fn consumer_heartbeat(&self, req: ConsumerHeartbeat) -> ConsumerHeartbeatResponse {
        let gone = ConsumerHeartbeatResponse::refused(GONE, "the coordinator is not available");
        self.ask(|tx| Msg::ConsumerHeartbeat(req, tx), gone).await
    }

    /// ConsumerGroupDescribe: each group asked for, in order.
    pub async fn consumer_describe(&self, group_ids: Vec<String>) -> Vec<DescribedConsumerGroup> {
        let gone = group_ids
            .iter()
            .map(|g| DescribedConsumerGroup {
                group_id: g.clone(),
                error: GONE,
                ..Default::default()
            })
            .collect();
        self.ask(|tx| Msg::ConsumerDescribe(group_ids, tx), gone)
            .await
    }

    pub async fn list(&self) -> Vec<ListedGroup> {
        self.ask(Msg::List, Vec::new()).await
    }

    pub async fn describe(&self, group_ids: Vec<String>) -> Vec<DescribedGroup> {
        let gone = group_ids
            .iter()
            .map(|g| DescribedGroup {
                group_id: g.clone(),
                error: GONE,
                state: "",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            })
            .collect();
        self.ask(|tx| Msg::Describe(group_ids, tx), gone).await
    }

    /// One error code per group, in order.
    pub async fn delete_groups(&self, group_ids: Vec<String>) -> Vec<i16> {
        let n = group_ids.len();
        self.ask(|tx| Msg::DeleteGroups(group_ids, tx), vec![GONE; n])
            .await
    }

    /// One error code per (topic, partition), in order; or one for the whole request.
    pub async fn delete_offsets(
        &self,
        group_id: String,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<i16>, i16> {
        self.ask(|tx| Msg::DeleteOffsets(group_id, partitions, tx), Err(GONE))
            .await
    }
}

/// Java's `String.hashCode`, which Kafka hashes group ids with.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Kafka's `Utils.abs(groupId.hashCode) % partitions`.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let h = java_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// The task that owns every group.
pub(crate) struct Actor {
    store: Arc<Store>,
    /// In a cluster: the controller (the offsets topic is made through it, and each of its
    /// partitions is written through its Raft group).
    cluster: Option<Arc<Controller>>,
    /// The partitions of the offsets topic whose groups this coordinator serves: all of them
    /// on a single node (`None`); in a cluster, those this broker leads.
    owned: Option<std::collections::BTreeSet<i32>>,
    clock: Arc<dyn Clock>,
    rng: EnvRng,
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    rx: mpsc::Receiver<Msg>,
    /// For writes to say when they are durable (weak: the coordinator ends with its handle).
    tx: mpsc::WeakSender<Msg>,
    next_write: u64,
    /// Writes not yet applied, per partition of the offsets topic, in the order they were made
    /// — their order in the log. Each write's outcome is awaited by a task of its own, so a
    /// later write's may arrive first (two writes made durable by one sync); it is applied only
    /// after every earlier write of its partition, so the in-memory state (what OffsetFetch
    /// answers) follows the log and never steps back to an older commit.
    writes: HashMap<i32, VecDeque<InFlight>>,
    /// Per partition of the offsets topic: its last checkpoint ([`cleanup`]).
    checkpoints: HashMap<i32, cleanup::Checkpoint>,
    /// When the offsets of empty groups are next checked for expiry.
    next_retention_check: Instant,
    /// Requests about groups whose coordinator is being settled ([`held`]); handled again at
    /// every change of leadership.
    held: held::Held<Msg>,
    /// Partitions of the offsets topic a write to failed: their groups are read again from the
    /// log once their writes in flight are in ([`ownership`]).
    reread: std::collections::BTreeSet<i32>,
    /// When a read of the log that failed is tried again (none is due otherwise: a re-read
    /// waits only for the writes in flight, whose outcomes wake the coordinator).
    reread_retry: Option<Instant>,
}

impl Actor {
    async fn run(mut self) {
        let mut leaders = self.cluster.as_ref().map(|c| c.replication().changes());
        if self.cluster.is_none() {
            self.load().await;
        } else {
            self.ownership().await;
        }
        loop {
            let wake = self.next_deadline();
            let leadership = async {
                match leaders.as_mut() {
                    Some(l) => l.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let msg = match wake {
                Some(at) => {
                    let wait = at.saturating_duration_since(self.clock.now());
                    tokio::select! {
                        m = self.rx.recv() => m,
                        changed = leadership => {
                            if changed {
                                self.ownership().await;
                                self.release().await;
                            }
                            continue;
                        }
                        _ = self.clock.sleep(wait) => {
                            self.timers().await;
                            self.reread_failed().await;
                            continue;
                        }
                    }
                }
                None => tokio::select! {
                    m = self.rx.recv() => m,
                    changed = leadership => {
                        if changed {
                            self.ownership().await;
                            self.release().await;
                        }
                        continue;
                    }
                },
            };
            let Some(msg) = msg else { return };
            self.handle(msg).await;
            // A deadline that passed is met after the request too: were it only the timer's
            // branch, a timer made anew at every turn would lose every race against a queue
            // that always holds a request, and a busy coordinator would expire no session.
            if wake.is_some_and(|at| self.clock.now() >= at) {
                self.timers().await;
            }
            self.reread_failed().await;
        }
    }

    /// What is due by the clock: held requests released, sessions and rebalances expired, the
    /// offsets of empty groups checked for expiry now and then.
    async fn timers(&mut self) {
        self.release().await;
        self.expire().await;
        self.expire_consumers().await;
        if self.now() >= self.next_retention_check {
            self.next_retention_check = self.now() + self.config.offsets_retention_check_interval;
            self.expire_offsets().await;
        }
    }

    async fn handle(&mut self, msg: Msg) {
        self.dispatch(msg, None).await
    }

    /// Handle `msg`; `until`: when a request held earlier must be answered.
    async fn dispatch(&mut self, msg: Msg, until: Option<Instant>) {
        let Some(msg) = self.hold(msg, until) else {
            return;
        };
        let msg = match self.elsewhere(msg) {
            Some(msg) => msg,
            None => return,
        };
        match msg {
            Msg::Join(req, reply) => self.join(req, reply).await,
            Msg::Sync(req, reply) => self.sync(req, reply).await,
            Msg::Heartbeat(group, generation, member, reply) => {
                let _ = reply.send(self.heartbeat(&group, generation, &member));
            }
            Msg::Leave(group, members, reply) => {
                let r = self.leave(&group, &members).await;
                let _ = reply.send(r);
            }
            Msg::Commit(req, reply) => self.commit(req, reply).await,
            Msg::Fetch(group, partitions, asked, reply) => {
                let answer = match self.consumer_fetch_check(&group, &asked) {
                    Ok(()) => self.fetch(&group, partitions, asked.require_stable),
                    Err(code) => Err(code),
                };
                let _ = reply.send(answer);
            }
            Msg::TxnCommit(req, reply) => self.txn_commit(req, reply).await,
            Msg::TxnCompleted(partition, producer_id, commit, reply) => {
                self.txn_completed(partition, producer_id, commit);
                let _ = reply.send(());
            }
            Msg::ConsumerHeartbeat(req, reply) => self.consumer_heartbeat(req, reply).await,
            Msg::ConsumerDescribe(ids, reply) => {
                let _ = reply.send(ids.iter().map(|g| self.consumer_describe(g)).collect());
            }
            Msg::List(reply) => {
                let _ = reply.send(self.list());
            }
            Msg::Describe(ids, reply) => {
                let _ = reply.send(ids.iter().map(|g| self.describe(g)).collect());
            }
            Msg::DeleteGroups(ids, reply) => self.delete_groups(ids, reply).await,
            Msg::DeleteOffsets(group, partitions, reply) => {
                self.delete_offsets(group, partitions, reply).await
            }
            Msg::Written(partition, id, result) => {
                let Some(queue) = self.writes.get_mut(&partition) else {
                    return;
                };
                if let Some(w) = queue.iter_mut().find(|w| w.id == id) {
                    w.outcome = Some(result);
                }
                let mut ready = Vec::new();
                while queue.front().is_some_and(|w| w.outcome.is_some()) {
                    ready.extend(queue.pop_front());
                }
                for w in ready {
                    let mut outcome = w.outcome.unwrap_or(Err(GONE));
                    if outcome.is_err() {
                        self.reread.insert(partition);
                    } else if self.reread.contains(&partition) {
                        // Made on top of a failed write: the state it answers from goes.
                        outcome = Err(error::COORDINATOR_NOT_AVAILABLE);
                    }
                    self.written(w.pending, outcome);
                }
                self.maybe_checkpoint(partition).await;
            }
            Msg::Checkpointed(partition, outcome) => self.checkpointed(partition, outcome),
            Msg::MakeOffsetsTopic => {
                if let Err(code) = self.offsets_topic().await {
                    tracing::warn!(
                        code,
                        "could not make {OFFSETS_TOPIC}; a group's first write will try again"
                    );
                }
            }
        }
    }

    /// Keep a request about a group whose coordinator is being settled here or being elected
    /// (COORDINATOR_LOAD_IN_PROGRESS or COORDINATOR_NOT_AVAILABLE) until the next change of
    /// leadership, at most until `until` ([`held`]): the request back when it is to be handled
    /// (or answered) now.
    fn hold(&mut self, msg: Msg, until: Option<Instant>) -> Option<Msg> {
        let Some(group) = msg.group() else {
            return Some(msg);
        };
        if (self.owned.is_none() && self.reread.is_empty()) || self.owns(group) {
            return Some(msg);
        }
        let code = self.not_here(group);
        if code != error::COORDINATOR_LOAD_IN_PROGRESS && code != error::COORDINATOR_NOT_AVAILABLE {
            return Some(msg);
        }
        let now = self.now();
        self.held.hold(msg, until, now)
    }

    /// Handle the held requests again: served if their coordinator is settled here now,
    /// answered if it is elsewhere or their time is up, held on otherwise.
    async fn release(&mut self) {
        for (until, msg) in self.held.take() {
            self.dispatch(msg, Some(until)).await;
        }
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// A new member id: the client id and a random part from the node's generator.
    fn new_member_id(&self, client_id: &str) -> String {
        let hi = self.rng.next_u64() as u128;
        let lo = self.rng.next_u64() as u128;
        format!("{client_id}-{}", uuid::Uuid::from_u128((hi << 64) | lo))
    }

    /// The next timer of any group, or the next check of expired offsets.
    fn next_deadline(&self) -> Option<Instant> {
        self.groups
            .values()
            .filter_map(Group::next_deadline)
            .chain(std::iter::once(self.next_retention_check))
            .chain(self.held.next_deadline())
            .chain(self.reread_retry)
            .min()
    }
}

#[cfg(test)]
mod tests;
