//! The node's multi-raft loop (DESIGN.md, "multi-raft as TiKV does it"): one task drives every
//! Raft group this node is a replica of — the cluster metadata's and each partition's.
//!
//! What it does, and why:
//! - **one task, all groups**: inbound messages, proposals, ticks, finished writes and reads
//!   all arrive at one `select!`; the groups they touch are marked, then each marked group's
//!   `Ready` is handled, then the transport is flushed once — every group's messages to a peer
//!   leave in one frame.
//! - **raft-rs's async-ready API**: a leader sends its appends before its own write (raft
//!   thesis 10.2.1); entries and hard state go to the commit pipeline as one [`RaftWrite`] per
//!   group at a time (what later Readies bring waits and goes as the next one: group commit);
//!   messages that depend on persistence (`persisted_messages`: votes, append acknowledgements)
//!   wait until every Ready up to theirs is durable. No task ever waits on the disk inside the
//!   loop: a write is a future the loop polls.
//! - **quiet idle groups**: a leader whose group has nothing to do for a while tells its
//!   followers ([`wire::quiesce`]) and the group stops ticking everywhere — no heartbeats, no
//!   elections, no disk work. It wakes on a proposal, on any message for it, or when the
//!   connection to its leader goes down (the peer's silence), so a dead leader is still
//!   replaced.
//! - **acknowledgements**: `acks=1` is answered once the leader's own write of the batch is
//!   durable, `acks=all` once Raft committed it (a majority has it durably) and, where the
//!   topic's `min.insync.replicas` asks for more copies than a majority, once that many
//!   replicas (the leader's own write counted) have it durably; with fewer replicas in sync
//!   (this one and the voters connected to it) it is refused before it is written
//!   (NOT_ENOUGH_REPLICAS), or, when they drop out while it waits, answered
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND (written, so indefinite), as Kafka does. A leader that loses
//!   its leadership answers what it had not answered with NOT_LEADER_OR_FOLLOWER (the write may
//!   still commit under the next leader: the failure is indefinite, as in Kafka).
//! - **the high watermark** is the end offset of the committed entry; it moves only forward,
//!   and a new leader serves reads only once an entry of its own term is committed (so a
//!   consumer never sees it go back).
//!
//! Architecture invariant: only this loop writes a replicated partition's log, through the
//! commit pipeline; nothing here reads the system clock, draws from `thread_rng` or blocks.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use io_backend::Env;
use raft::eraftpb::{Entry, Message, MessageType};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot, watch};

use super::catch_up::{self, CatchUp, CatchUpSettings, Started, Verdict};
use super::gate::Gate;
use super::idempotence::{Checked, Producers};
use super::logger::raft_logger;
use super::storage::{read_entries, snapshot_offset, PartitionStorage};
use super::transport::{Inbox, NodeId, Transport};
use super::wire::{self, GroupId, Inbound};
use super::ElectionTimer;
use crate::memory::MemoryBudget;
use crate::metrics::Metrics;
use crate::storage::log::Partition;
use crate::storage::{AppendError, Appended, RaftReset, RaftWrite, RaftWritten, Store};
use crate::throttle::LogThrottle;
use std::sync::atomic::Ordering;

/// How the node's Raft groups run.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Ticks a leader's group stays idle before it goes quiet.
    pub quiesce_ticks: usize,
    /// Ticks the preferred replica (the first of the group's list) must have been connected and
    /// caught up before a leader hands the leadership back to it; 0: never.
    pub rebalance_ticks: usize,
    /// The budgets of reads for followers behind the cache of recent entries.
    pub catch_up: CatchUpSettings,
}

impl RaftSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        RaftSettings {
            tick: Duration::from_millis(config.raft_tick_ms),
            election_ticks: config.raft_election_ticks,
            heartbeat_ticks: config.raft_heartbeat_ticks,
            quiesce_ticks: config.raft_election_ticks * 2,
            rebalance_ticks: match config.leader_rebalance_ms {
                0 => 0,
                ms => ms.div_ceil(config.raft_tick_ms.max(1)).max(1) as usize,
            },
            catch_up: CatchUpSettings {
                read_bytes_max: config.replica_fetch_max_bytes as u64,
                follower_bytes_max: config.replica_fetch_response_max_bytes as u64,
                rate_bytes_per_s: config.leader_replication_throttled_rate,
                followers_cache_bytes_max: config.memory_budget_bytes as u64 / 4,
            },
        }
    }
}

/// Why a proposal was not taken, or not acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicaError {
    /// This node does not lead the group: `leader` does (if known), in `term`.
    #[error("not the leader (leader {leader:?}, term {term})")]
    NotLeader { leader: Option<NodeId>, term: u64 },
    /// The log could not take the write here.
    #[error(transparent)]
    Storage(#[from] AppendError),
    /// The group is not (or no longer) on this node.
    #[error("no such replica on this node")]
    Unknown,
    #[error("the replication loop has stopped")]
    Stopped,
    /// `acks=all` with `min.insync.replicas` above the replicas in sync (this one and the
    /// voters connected to it): refused before anything is written.
    #[error("min.insync.replicas={required} but {in_sync} replicas are in sync")]
    NotEnoughReplicas { in_sync: usize, required: usize },
    /// Written, but replicas went out of sync before `required` of them had it durably.
    #[error("written, but only {in_sync} replicas are in sync of the {required} min.insync.replicas asks for")]
    NotEnoughReplicasAfterAppend { in_sync: usize, required: usize },
}

impl ReplicaError {
    /// Whether the write may still be in the log (and be committed).
    pub fn indefinite(&self) -> bool {
        match self {
            ReplicaError::NotLeader { .. }
            | ReplicaError::Stopped
            | ReplicaError::NotEnoughReplicasAfterAppend { .. } => true,
            ReplicaError::Storage(e) => e.indefinite(),
            ReplicaError::Unknown | ReplicaError::NotEnoughReplicas { .. } => false,
        }
    }
}

type Answer = oneshot::Sender<Result<Appended, ReplicaError>>;
/// What a proposal's sender waits on (nothing for acks=0).
pub type Acknowledgement = Option<oneshot::Receiver<Result<Appended, ReplicaError>>>;

enum Command {
    Propose {
        group: GroupId,
        batches: Vec<Bytes>,
        acks: i16,
        /// Replicas that must hold an `acks=-1` proposal durably (`min.insync.replicas`).
        min_insync: usize,
        forward: bool,
        reply: oneshot::Sender<Result<Acknowledgement, ReplicaError>>,
    },
    AddGroup {
        group: GroupId,
        partition: Arc<Partition>,
        voters: Vec<NodeId>,
        campaign: bool,
        made_at: Option<i64>,
    },
    RemoveGroup {
        group: GroupId,
    },
    Confirm {
        group: GroupId,
        reply: oneshot::Sender<bool>,
    },
    Transfer {
        group: GroupId,
        to: NodeId,
    },
    HandOver,
}

/// A group as request handlers see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// The leader this replica knows of.
    pub leader: Option<NodeId>,
    pub term: u64,
    /// This replica leads.
    pub is_leader: bool,
    /// This replica leads and an entry of its term is committed: its high watermark is the
    /// group's, and it serves reads.
    pub serving: bool,
    /// This replica leads and a replica has not been heard from in the last election timeout.
    pub under_replicated: bool,
    /// The group is quiet here.
    pub quiet: bool,
}

/// One group on this node, for request handlers.
pub struct GroupView {
    pub group: GroupId,
    pub partition: Arc<Partition>,
    pub voters: Vec<NodeId>,
    status: Mutex<Status>,
    /// Counted in the node's metrics (as a follower, until its status says otherwise).
    counted: std::sync::atomic::AtomicBool,
}

impl GroupView {
    pub fn status(&self) -> Status {
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_status(&self, s: Status) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

#[derive(Default)]
struct Views {
    by_group: HashMap<GroupId, Arc<GroupView>>,
    by_partition: HashMap<(String, i32), Arc<GroupView>>,
}

/// The node's replication, as the rest of the broker uses it. Cheap to clone.
#[derive(Clone)]
pub struct Replication {
    node_id: NodeId,
    tx: mpsc::Sender<Command>,
    views: Arc<RwLock<Views>>,
    /// Bumped whenever a group's status changes.
    changes: watch::Receiver<u64>,
}

/// Commands waiting for the loop, at most; senders wait beyond that.
const COMMAND_QUEUE: usize = 4096;

impl Replication {
    /// Start the loop for node `node_id` over `store`, talking to its peers through `transport`.
    pub fn start(
        env: Env,
        node_id: NodeId,
        store: Arc<Store>,
        transport: Transport,
        inbox: Inbox,
        settings: RaftSettings,
        memory: Arc<MemoryBudget>,
    ) -> Replication {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let views = Arc::new(RwLock::new(Views::default()));
        let (changed, changes) = watch::channel(0);
        let links = transport.link_changes();
        let link_state = transport
            .peers()
            .into_iter()
            .map(|p| (p, transport.connected(p)))
            .collect();
        let health = store.io().health.watch();
        let metrics = store.metrics().clone();
        let store_fresh = store.created_here();
        let catch_up = CatchUp::new(settings.catch_up);
        let followers_cache =
            super::storage::FollowersCache::new(settings.catch_up.followers_cache_bytes_max);
        metrics.catch_up_reads_in_flight_max.store(
            super::catch_up::READS_IN_FLIGHT_MAX as i64,
            Ordering::Relaxed,
        );
        metrics.catch_up_follower_bytes_max.store(
            settings.catch_up.follower_bytes_max as i64,
            Ordering::Relaxed,
        );
        metrics
            .raft_queue_bytes_max
            .store(transport.queue_bytes_max() as i64, Ordering::Relaxed);
        let node = Node {
            id: node_id,
            env,
            store,
            transport,
            inbox,
            settings,
            commands: rx,
            groups: HashMap::new(),
            active: BTreeSet::new(),
            dirty: BTreeSet::new(),
            writes: FuturesUnordered::new(),
            fetches: FuturesUnordered::new(),
            views: views.clone(),
            changed,
            links,
            link_state,
            health,
            metrics,
            stepped_down: false,
            reads: 0,
            turn: 0,
            ticks: 0,
            heard: HashMap::new(),
            early: HashMap::new(),
            logger: raft_logger(slog::o!("node" => node_id)),
            fresh: store_fresh,
            joined: false,
            holds_data: !store_fresh,
            metadata_caught_up_at: None,
            catch_up,
            followers_cache,
            memory,
            read_warnings: LogThrottle::default(),
        };
        tokio::spawn(node.run());
        Replication {
            node_id,
            tx,
            views,
            changes,
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Propose `batches` (validated record batches) to `group`, which this node must lead. With
    /// `acks` 0 nothing is returned to wait for; otherwise the receiver answers with the first
    /// batch's offset once the batches are durable here (`acks=1`) or committed (`acks=-1`).
    pub async fn propose(
        &self,
        group: GroupId,
        batches: Vec<Bytes>,
        acks: i16,
    ) -> Result<Acknowledgement, ReplicaError> {
        self.send_proposal(group, batches, acks, 1, false).await
    }

    /// [`Replication::propose`] at `acks=-1` for a topic whose `min.insync.replicas` is
    /// `min_insync`: refused (NOT_ENOUGH_REPLICAS) while fewer replicas are in sync, and
    /// answered once committed and durable on at least that many replicas.
    pub async fn propose_min_insync(
        &self,
        group: GroupId,
        batches: Vec<Bytes>,
        min_insync: usize,
    ) -> Result<Acknowledgement, ReplicaError> {
        self.send_proposal(group, batches, -1, min_insync, false)
            .await
    }

    /// Propose `batches` to `group` through its leader, wherever it is (over the long-lived
    /// connection to it: raft-rs forwards a follower's proposal). Nothing tells whether it
    /// lands: the caller watches for its effect (the cluster metadata's requests).
    pub async fn propose_anywhere(
        &self,
        group: GroupId,
        batches: Vec<Bytes>,
    ) -> Result<(), ReplicaError> {
        self.send_proposal(group, batches, 0, 1, true)
            .await
            .map(|_| ())
    }

    async fn send_proposal(
        &self,
        group: GroupId,
        batches: Vec<Bytes>,
        acks: i16,
        min_insync: usize,
        forward: bool,
    ) -> Result<Acknowledgement, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Propose {
                group,
                batches,
                acks,
                min_insync,
                forward,
                reply,
            })
            .await
            .map_err(|_| ReplicaError::Stopped)?;
        rx.await.map_err(|_| ReplicaError::Stopped)?
    }

    /// Hand every leadership this node holds to another replica (a graceful stop), and wait
    /// until it leads nothing or `limit` passes.
    pub async fn hand_over(&self, clock: &Arc<dyn io_backend::Clock>, limit: Duration) {
        if self.tx.send(Command::HandOver).await.is_err() {
            return;
        }
        let deadline = clock.now() + limit;
        let mut changes = self.changes();
        loop {
            if !self.groups().iter().any(|g| g.status().is_leader) {
                return;
            }
            let left = deadline.saturating_duration_since(clock.now());
            if left.is_zero() {
                return;
            }
            let _ = clock.timeout(left, changes.changed()).await;
        }
    }

    /// Ask `group`'s leader to hand its leadership to `to` (Kafka's preferred leader election
    /// on request); nothing says whether it did — watch the group's status.
    pub async fn transfer_leader(&self, group: GroupId, to: NodeId) -> Result<(), ReplicaError> {
        self.tx
            .send(Command::Transfer { group, to })
            .await
            .map_err(|_| ReplicaError::Stopped)
    }

    /// Whether this replica still leads `group`, confirmed by a quorum (a Raft read index):
    /// `false` when it does not, or cannot tell (not yet a leader with an entry of its term
    /// committed, too many asking, the group gone). For an answer a stale leader must not give
    /// — a replica back from a pause still thinks it leads, with a log short of the group's.
    pub async fn confirm_leading(&self, group: GroupId) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Command::Confirm { group, reply })
            .await
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Start replicating `partition` as group `group` of `voters` (this node among them). With
    /// `campaign`, this replica stands for election at once (the preferred leader of a new
    /// partition: no election timeout to wait for).
    pub async fn add_group(
        &self,
        group: GroupId,
        partition: Arc<Partition>,
        voters: Vec<NodeId>,
        campaign: bool,
        made_at: Option<i64>,
    ) -> Result<(), ReplicaError> {
        self.tx
            .send(Command::AddGroup {
                group,
                partition,
                voters,
                campaign,
                made_at,
            })
            .await
            .map_err(|_| ReplicaError::Stopped)
    }

    /// Stop replicating `group` here (its partition is deleted).
    pub async fn remove_group(&self, group: GroupId) -> Result<(), ReplicaError> {
        self.tx
            .send(Command::RemoveGroup { group })
            .await
            .map_err(|_| ReplicaError::Stopped)
    }

    pub fn group(&self, group: GroupId) -> Option<Arc<GroupView>> {
        self.read_views().by_group.get(&group).cloned()
    }

    /// The group of partition `index` of `topic`, if this node is one of its replicas.
    pub fn replica(&self, topic: &str, index: i32) -> Option<Arc<GroupView>> {
        self.read_views()
            .by_partition
            .get(&(topic.to_string(), index))
            .cloned()
    }

    /// Every group on this node.
    pub fn groups(&self) -> Vec<Arc<GroupView>> {
        self.read_views().by_group.values().cloned().collect()
    }

    /// Changes whenever any group's status changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    fn read_views(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        self.views.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// A proposal waiting for its acknowledgement.
struct Waiter {
    first_index: u64,
    last_index: u64,
    term: u64,
    /// 1: answered once durable here; -1: once committed.
    acks: i16,
    /// Replicas that must hold it durably before an `acks=-1` answer, beyond the commit's
    /// majority (`min.insync.replicas`; at most a majority: the commit is enough).
    min_insync: usize,
    /// A retry of batches already in the log at these offsets `[base, end)`: answered with
    /// them once the high watermark passes `end` (no entry of its own).
    duplicate: Option<(i64, i64)>,
    /// A refusal of an idempotent batch (its sequence or producer unknown to this log) held
    /// until a read index (this read's context) confirms that this node still led in `term`:
    /// a leader cut off, or just back from a pause, holds a stale producer state, and only
    /// the cluster's leader may tell a producer that its sequence is out of order. Losing the
    /// leadership first answers NOT_LEADER_OR_FOLLOWER, and the producer retries elsewhere.
    refusal: Option<(u64, crate::producer_state::ProducerError)>,
    reply: Answer,
}

/// Refusals waiting for their read index in one group, at most (past it they are answered at
/// once).
const REFUSALS_MAX: usize = 256;

/// What the next write of a group will carry (Readies gather here while one is in flight).
#[derive(Default)]
struct NextWrite {
    reset: Option<RaftReset>,
    truncate_from: Option<u64>,
    producers_at_cut: Option<crate::producer_state::ProducerStates>,
    entries: Vec<crate::storage::RaftEntry>,
    hard_state: Option<crate::storage::log::replica::HardStateRecord>,
    /// The last Ready it covers.
    number: u64,
}

impl NextWrite {
    fn is_empty(&self) -> bool {
        self.reset.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
    }
}

struct Group {
    raw: RawNode<PartitionStorage>,
    timer: ElectionTimer,
    view: Arc<GroupView>,
    /// The Ready number of the write in flight.
    in_flight: Option<u64>,
    next: NextWrite,
    /// Readies whose persistence is not yet confirmed, with the messages that wait for it.
    held: VecDeque<(u64, Vec<Message>)>,
    /// Every Ready up to this one is durable.
    persisted: u64,
    waiters: VecDeque<Waiter>,
    /// Some waiter needs more durable copies than the commit's majority
    /// ([`answer_copies`] looks at every Ready until none does).
    copies_awaited: bool,
    /// Leadership confirmations asked for ([`Replication::confirm_leading`]): the read index's
    /// context, the term asked in, where to answer. At most [`CONFIRMS_MAX`]; dropped (answered
    /// `false`) when the replica stops leading in that term.
    confirms: Vec<(u64, u64, oneshot::Sender<bool>)>,
    /// The idempotent producers as of the end of the log.
    producers: Producers,
    quiet: bool,
    idle_ticks: usize,
    /// The term and vote of the hard state last handed to a write: the hard state is written
    /// when they change (raft-rs's `must_sync` also asks for it whenever a Ready with entries
    /// moves the commit, which would cost a small file's syncs and rename per round; the
    /// commit needs no durability, Raft learns it again).
    vote_written: (u64, u64),
    /// Proposals waiting for an earlier round of this leader's to commit ([`super::gate`]).
    gate: Gate<HeldProposal>,
    /// Ticks this leader has seen its preferred replica (another node) connected and caught up
    /// in a row; at `rebalance_ticks` the leadership goes back to it.
    preferred_ready: usize,
    recovery: Recovery,
}

/// Whether a replica may lack entries it once acknowledged, and what it must hold before it
/// votes again. Raft's safety rests on a replica never forgetting what it acknowledged or
/// whom it voted for: one whose data directory was emptied (a replaced disk) or restored from
/// an older copy could otherwise vote a candidate without the committed entries it had helped
/// commit into leadership, and those entries would be lost. Such a replica withholds its vote
/// grants (the candidate sees no answer, as if it were lost) until it holds everything a
/// leader of the group named as committed in an append; it follows, replicates and
/// acknowledges meanwhile, so it catches up as any follower does. One candidate it may vote
/// for: the last leader it heard, whose log holds everything committed before its leadership
/// (what this replica forgot included) — without that, a leader that lost its quorum while
/// this replica was away could never be elected again with it. Known when the node's data
/// directory is new while a peer holds Raft data (the peer's transport `STATUS`, which comes
/// before its messages), or when a leader's heartbeat names a commit past this replica's log
/// (raft-rs would panic on it: it holds its followers to what they acknowledged).
#[derive(Debug, Default)]
struct Recovery {
    /// Vote grants are withheld.
    withholding: bool,
    /// The replica has held everything a leader named as committed in an append (or never
    /// had reason to doubt it).
    caught_up: bool,
    /// What it must hold before it votes again (see `step`).
    leader_commit: u64,
    /// An append from a leader has named its commit (a heartbeat names only what the leader
    /// thinks this replica has).
    heard_append: bool,
    /// The last leader heard.
    leader: Option<NodeId>,
    /// A leader's heartbeat proved the loss: it named a commit past this replica's log.
    lost: bool,
}

/// A proposal the gate holds: its batches, acks and where it is answered (none for acks=0).
struct HeldProposal {
    batches: Vec<Bytes>,
    acks: i16,
    min_insync: usize,
    answer: Option<Answer>,
}

type WriteDone = (GroupId, u64, Result<RaftWritten, AppendError>);
/// A catch-up read's end: the read, what it brought (entries and their bytes), and the memory
/// it holds until raft-rs has the entries.
type FetchDone = (
    Started,
    Result<(Vec<Entry>, u64), crate::storage::StorageError>,
    crate::memory::Reservation,
);

struct Node {
    id: NodeId,
    env: Env,
    store: Arc<Store>,
    transport: Transport,
    inbox: Inbox,
    settings: RaftSettings,
    commands: mpsc::Receiver<Command>,
    groups: HashMap<GroupId, Group>,
    /// Groups that tick (not quiet).
    active: BTreeSet<GroupId>,
    /// Groups touched since their Ready was last handled.
    dirty: BTreeSet<GroupId>,
    writes: FuturesUnordered<Pin<Box<dyn Future<Output = WriteDone> + Send>>>,
    fetches: FuturesUnordered<Pin<Box<dyn Future<Output = FetchDone> + Send>>>,
    views: Arc<RwLock<Views>>,
    changed: watch::Sender<u64>,
    links: watch::Receiver<u64>,
    link_state: HashMap<NodeId, bool>,
    /// The data directory's health (`true`: failed).
    health: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    /// The data directory failed: this node has stepped down everywhere and takes no part in
    /// Raft (no messages in or out, no ticks, no votes) until it heals — to the others it is
    /// as if it had crashed, so they elect leaders among themselves.
    stepped_down: bool,
    /// Read indexes asked so far (each one's context).
    reads: u64,
    /// Turns of the loop so far: the proposals of one turn make one round (see the gate).
    turn: u64,
    /// Ticks so far, and the tick at which each peer was last heard from.
    ticks: u64,
    heard: HashMap<NodeId, u64>,
    /// Raft messages for groups not (yet) started here, held until the controller's record
    /// that makes this node a replica is applied: a new partition's preferred leader campaigns
    /// at once, and its vote requests often arrive first. Bounded, and dropped once older than
    /// an election timeout (the sender retries by then).
    early: HashMap<GroupId, Vec<(tokio::time::Instant, Message)>>,
    logger: slog::Logger,
    /// The data directory was new at this start: whatever this node acknowledged before (if it
    /// ever ran) is gone — see [`Recovery`].
    fresh: bool,
    /// Fresh, and a peer that holds Raft data has been heard: this node joins an existing
    /// cluster, and its groups withhold their votes until they have caught up.
    joined: bool,
    /// What the transport tells peers: this node holds Raft data — its directory is not new,
    /// it has written entries, or a leader told it of committed ones (a vote alone is not
    /// data: at a first start every node votes before anything is written).
    holds_data: bool,
    /// Fresh: the metadata log's offset after what its leader had committed when this node's
    /// replica of it first caught up — partitions made by later records are new.
    metadata_caught_up_at: Option<i64>,
    /// Reads of old entries for followers, within their budgets ([`catch_up`]).
    catch_up: CatchUp,
    /// Durable entries kept in memory for connected followers, all groups together.
    followers_cache: Arc<super::storage::FollowersCache>,
    /// The broker's memory budget: a catch-up read takes its bytes before it is made.
    memory: Arc<MemoryBudget>,
    /// Failed catch-up reads' log lines.
    read_warnings: LogThrottle,
}

/// Groups with early messages held, at most; and messages held per group.
const EARLY_GROUPS_MAX: usize = 1024;
const EARLY_PER_GROUP_MAX: usize = 16;

/// Leadership confirmations waiting per group, at most.
const CONFIRMS_MAX: usize = 256;

/// Inputs handled before the Readies of what they touched are: a burst is taken together.
const BURST_MAX: usize = 256;
/// Passes over the groups' Readies per turn of the loop, at most.
const READY_PASSES: usize = 4;

impl Node {
    async fn run(mut self) {
        let clock = self.env.clock.clone();
        let mut next_tick = clock.now() + self.settings.tick;
        loop {
            let wait = next_tick.saturating_duration_since(clock.now());
            let ticking = !self.active.is_empty();
            let catch_up_wait = self
                .catch_up
                .wake_at(clock.now())
                .map(|at| at.saturating_duration_since(clock.now()));
            self.turn += 1;
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                delivery = self.inbox.recv() => match delivery {
                    Some(d) => self.deliver(d.from, d.messages),
                    None => break,
                },
                Some(done) = self.writes.next() => self.write_done(done).await,
                Some(done) = self.fetches.next() => self.fetch_done(done),
                changed = self.links.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.links_changed();
                }
                changed = self.health.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let failed = *self.health.borrow_and_update();
                    self.health_changed(failed).await;
                }
                _ = clock.sleep(wait), if ticking && !self.stepped_down => {
                    self.tick().await;
                    next_tick = clock.now() + self.settings.tick;
                }
                // A catch-up read may start (a backoff ended, the rate allows more): below.
                _ = clock.sleep(catch_up_wait.unwrap_or_default()), if catch_up_wait.is_some() => {}
            }
            if !ticking {
                next_tick = clock.now() + self.settings.tick;
            }
            // Whatever else is there already joins this round.
            for _ in 0..BURST_MAX {
                match self.commands.try_recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(_) => break,
                }
            }
            // Advancing a Ready may make another (a leader's commit after its own write):
            // handled now, a bounded number of passes.
            for _ in 0..READY_PASSES {
                if self.dirty.is_empty() {
                    break;
                }
                self.handle_readies().await;
            }
            self.start_reads();
            self.transport.flush();
            let stats = self.transport.stats();
            let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            self.metrics
                .raft_messages_sent
                .store(load(&stats.messages_sent), Ordering::Relaxed);
            self.metrics
                .raft_messages_received
                .store(load(&stats.messages_received), Ordering::Relaxed);
            self.metrics
                .raft_messages_dropped
                .store(load(&stats.messages_dropped), Ordering::Relaxed);
            Metrics::peak(
                &self.metrics.raft_queue_bytes_peak,
                load(&stats.queue_bytes_peak) as i64,
            );
        }
        tracing::info!(node = self.id, "replication loop stopped");
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Propose {
                group,
                batches,
                acks,
                min_insync,
                forward,
                reply,
            } => {
                if !forward && !self.stepped_down {
                    if let Some(g) = self.groups.get_mut(&group) {
                        let raft = &g.raw.raft;
                        if raft.state == StateRole::Leader
                            && !batches.is_empty()
                            && g.gate.must_wait(raft.raft_log.committed)
                        {
                            // The sender has its acknowledgement at once (a request handler
                            // or the group coordinator goes on); the answer comes through it.
                            let answer = if acks == 0 {
                                let _ = reply.send(Ok(None));
                                None
                            } else {
                                let (tx, rx) = oneshot::channel();
                                let _ = reply.send(Ok(Some(rx)));
                                Some(tx)
                            };
                            let full = g.gate.is_full();
                            g.gate.hold(HeldProposal {
                                batches,
                                acks,
                                min_insync,
                                answer,
                            });
                            if full {
                                let held = g.gate.take_all();
                                self.propose_held(group, held);
                            }
                            return;
                        }
                    }
                }
                let r = self.propose(group, batches, acks, min_insync, forward);
                let _ = reply.send(r);
                self.note_round(group);
            }
            Command::AddGroup {
                group,
                partition,
                voters,
                campaign,
                made_at,
            } => self.add_group(group, partition, voters, campaign, made_at),
            Command::RemoveGroup { group } => self.remove_group(group),
            Command::Confirm { group, reply } => self.confirm(group, reply),
            Command::Transfer { group, to } => self.transfer(group, to),
            Command::HandOver => self.hand_over(),
        }
    }

    /// Ask the group's leader — this replica, or the one it follows (raft-rs forwards the
    /// request over the long-lived connection) — to hand its leadership to `to`.
    fn transfer(&mut self, group: GroupId, to: NodeId) {
        if self.stepped_down {
            return;
        }
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        wake(g, &mut self.active, group);
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgTransferLeader);
        m.from = to;
        m.to = self.id;
        let _ = g.raw.step(m);
        g.timer.settle(&mut g.raw);
        self.dirty.insert(group);
    }

    /// Before a graceful stop (Kafka's controlled shutdown): ask every group this node leads
    /// to hand its leadership to the follower furthest along (raft-rs brings it up to date
    /// first, refusing proposals meanwhile), so clients move at once instead of after an
    /// election timeout.
    fn hand_over(&mut self) {
        if self.stepped_down {
            return;
        }
        let me = self.id;
        let mut asked = 0;
        for (&group, g) in self.groups.iter_mut() {
            let raft = &g.raw.raft;
            if raft.state != StateRole::Leader {
                continue;
            }
            let heir = raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != me && self.link_state.get(id).copied().unwrap_or(false))
                .max_by_key(|(id, p)| (p.matched, std::cmp::Reverse(**id)))
                .map(|(id, _)| *id);
            if let Some(heir) = heir {
                wake(g, &mut self.active, group);
                g.raw.transfer_leader(heir);
                g.timer.settle(&mut g.raw);
                self.dirty.insert(group);
                asked += 1;
            }
        }
        tracing::info!(
            node = self.id,
            leaderships = asked,
            "handing leaderships over before stopping"
        );
    }

    fn confirm(&mut self, group: GroupId, reply: oneshot::Sender<bool>) {
        let Some(g) = self.groups.get_mut(&group) else {
            let _ = reply.send(false);
            return;
        };
        let raft = &g.raw.raft;
        // raft-rs drops read indexes until an entry of the leader's term commits.
        if self.stepped_down
            || raft.state != StateRole::Leader
            || !raft.commit_to_current_term()
            || g.confirms.len() >= CONFIRMS_MAX
        {
            let _ = reply.send(false);
            return;
        }
        let term = raft.term;
        wake(g, &mut self.active, group);
        self.reads += 1;
        let ctx = self.reads;
        g.raw.read_index(ctx.to_be_bytes().to_vec());
        g.confirms.push((ctx, term, reply));
        self.dirty.insert(group);
    }

    fn add_group(
        &mut self,
        group: GroupId,
        partition: Arc<Partition>,
        voters: Vec<NodeId>,
        campaign: bool,
        made_at: Option<i64>,
    ) {
        if self.groups.contains_key(&group) {
            return;
        }
        let storage = match PartitionStorage::open(
            partition.clone(),
            voters.clone(),
            self.followers_cache.clone(),
        ) {
            Ok(s) => s,
            Err(why) => {
                tracing::error!(group, %why, "cannot open the group's log for Raft");
                return;
            }
        };
        let (applied, vote_written) = raft::Storage::initial_state(&storage)
            .map(|s| (s.hard_state.commit, (s.hard_state.term, s.hard_state.vote)))
            .unwrap_or((0, (0, 0)));
        let producers = {
            let last = raft::Storage::last_index(&storage).unwrap_or(0);
            let mut st = partition.state_mut();
            let state = st.producers.clone();
            let (undo, undo_from) = st.replica.as_mut().map_or((Vec::new(), last + 1), |r| {
                (std::mem::take(&mut r.recovered_undo), r.undo_from)
            });
            Producers::open(state, last, undo, undo_from)
        };
        let config = raft::Config {
            id: self.id,
            election_tick: self.settings.election_ticks,
            heartbeat_tick: self.settings.heartbeat_ticks,
            applied,
            max_size_per_msg: self.settings.catch_up.read_bytes_max,
            // Few appends in flight per follower: what a leader proposes while they are out
            // goes in the next one, together (TiKV's setting is of this order too).
            max_inflight_msgs: 4,
            // A partition's followers learn the commit with the next append or heartbeat
            // rather than from an append of its own (their high watermark serves no reader;
            // the leader's does). The cluster metadata's followers are told at once: each
            // broker acts on what it applies (a new partition's replicas start, its preferred
            // leader campaigns), and a heartbeat away is 2 ticks — it made topic creation take
            // 200 ms instead of 50.
            skip_bcast_commit: group != wire::CONTROLLER_GROUP,
            // A Ready's appends to one follower merged into one message.
            batch_append: true,
            check_quorum: true,
            pre_vote: true,
            max_committed_size_per_ready: 64 << 10,
            ..Default::default()
        };
        let logger = self.logger.new(slog::o!("group" => group));
        let mut raw = match RawNode::new(&config, storage, &logger) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(group, error = %e, "cannot start the group's Raft node");
                return;
            }
        };
        let mut timer = ElectionTimer::new(self.env.rng.clone(), &config);
        timer.settle(&mut raw);
        if campaign && voters.contains(&self.id) {
            let _ = raw.campaign();
            timer.settle(&mut raw);
        }
        let view = Arc::new(GroupView {
            group,
            partition: partition.clone(),
            voters,
            status: Mutex::new(Status::default()),
            counted: Default::default(),
        });
        {
            let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
            views.by_group.insert(group, view.clone());
            views
                .by_partition
                .insert((partition.topic.clone(), partition.index), view.clone());
        }
        // A partition made by a metadata record committed after this node caught up with the
        // cluster metadata holds nothing it could have acknowledged before this start.
        let caught_up = !self.fresh
            || made_at
                .zip(self.metadata_caught_up_at)
                .is_some_and(|(made, caught)| made > caught);
        self.groups.insert(
            group,
            Group {
                raw,
                timer,
                view,
                in_flight: None,
                next: NextWrite::default(),
                held: VecDeque::new(),
                persisted: 0,
                waiters: VecDeque::new(),
                copies_awaited: false,
                confirms: Vec::new(),
                producers,
                quiet: false,
                idle_ticks: 0,
                vote_written,
                gate: Gate::default(),
                preferred_ready: 0,
                recovery: Recovery {
                    withholding: self.joined && !caught_up,
                    caught_up,
                    ..Recovery::default()
                },
            },
        );
        self.active.insert(group);
        self.dirty.insert(group);
        tracing::debug!(node = self.id, group, topic = %partition.topic, partition = partition.index, "replica started");
        self.deliver_early(group);
    }

    fn remove_group(&mut self, group: GroupId) {
        let Some(mut g) = self.groups.remove(&group) else {
            return;
        };
        if g.view.counted.load(Ordering::Relaxed) {
            let s = g.view.status();
            let m = &self.metrics;
            let flag = |on: bool| i64::from(on);
            m.raft_leaders
                .fetch_sub(flag(s.is_leader), Ordering::Relaxed);
            m.raft_followers
                .fetch_sub(flag(!s.is_leader), Ordering::Relaxed);
            m.raft_under_replicated
                .fetch_sub(flag(s.under_replicated), Ordering::Relaxed);
            m.raft_quiet.fetch_sub(flag(s.quiet), Ordering::Relaxed);
        }
        self.active.remove(&group);
        self.dirty.remove(&group);
        for w in g.waiters.drain(..) {
            let _ = w.reply.send(Err(ReplicaError::Unknown));
        }
        for p in g.gate.take_all() {
            if let Some(a) = p.answer {
                let _ = a.send(Err(ReplicaError::Unknown));
            }
        }
        let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
        views.by_group.remove(&group);
        let key = (g.view.partition.topic.clone(), g.view.partition.index);
        if views
            .by_partition
            .get(&key)
            .is_some_and(|v| v.group == group)
        {
            views.by_partition.remove(&key);
        }
    }

    fn propose(
        &mut self,
        group: GroupId,
        batches: Vec<Bytes>,
        acks: i16,
        min_insync: usize,
        forward: bool,
    ) -> Result<Acknowledgement, ReplicaError> {
        let (tx, rx) = oneshot::channel();
        let mut answer = Some(tx);
        self.propose_into(group, batches, acks, min_insync, forward, &mut answer)?;
        Ok(answer.is_none().then_some(rx))
    }

    /// Propose, answering through `answer` (taken when the proposal will be answered there;
    /// left when nothing will be: acks=0, a forwarded proposal).
    fn propose_into(
        &mut self,
        group: GroupId,
        batches: Vec<Bytes>,
        acks: i16,
        min_insync: usize,
        forward: bool,
        answer: &mut Option<Answer>,
    ) -> Result<(), ReplicaError> {
        let id = self.id;
        if self.stepped_down {
            return Err(ReplicaError::NotLeader {
                leader: None,
                term: 0,
            });
        }
        let g = self.groups.get_mut(&group).ok_or(ReplicaError::Unknown)?;
        wake(g, &mut self.active, group);
        let raft = &g.raw.raft;
        if forward && raft.state == StateRole::Follower && raft.leader_id != 0 {
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgPropose);
            m.from = id;
            m.entries = batches
                .into_iter()
                .map(|data| Entry {
                    data,
                    ..Default::default()
                })
                .collect::<Vec<_>>()
                .into();
            let stepped = g.raw.step(m);
            g.timer.settle(&mut g.raw);
            self.dirty.insert(group);
            return stepped.map_err(|_| ReplicaError::NotLeader {
                leader: None,
                term: g.raw.raft.term,
            });
        }
        if raft.state != StateRole::Leader {
            let leader = (raft.leader_id != 0).then_some(raft.leader_id);
            return Err(ReplicaError::NotLeader {
                leader,
                term: raft.term,
            });
        }
        let term = raft.term;
        // Copies the commit does not already promise (a majority has every committed entry).
        let min_insync = if acks == -1 && min_insync > majority(&g.view.voters) {
            let in_sync = in_sync(g, self.id, &self.link_state);
            if in_sync < min_insync {
                return Err(ReplicaError::NotEnoughReplicas {
                    in_sync,
                    required: min_insync,
                });
            }
            g.copies_awaited = true;
            min_insync
        } else {
            0
        };
        let count = batches.len() as u64;
        let now_ms = self.env.clock.wall_ms();
        let headers: Vec<crate::batch::BatchHeader> = batches
            .iter()
            .filter_map(|b| crate::batch::parse_header(b).ok())
            .collect();
        if headers.len() != batches.len() {
            return Err(ReplicaError::Storage(AppendError::Storage(
                crate::storage::StorageError::Corrupt {
                    path: g.view.partition.dir.clone(),
                    reason: "a proposed batch does not parse".into(),
                },
            )));
        }
        // Offsets as they will be written: after everything raft-rs holds.
        let first_offset = next_offset(g);
        match g.producers.check(&headers, first_offset, now_ms) {
            Err(e) => {
                let waiting = g.waiters.iter().filter(|w| w.refusal.is_some()).count();
                if acks == 0 || waiting >= REFUSALS_MAX {
                    return Err(ReplicaError::Storage(AppendError::Producer(e)));
                }
                if !g.raw.raft.commit_to_current_term() {
                    // Not yet a leader that can confirm itself (raft-rs drops read indexes
                    // until an entry of its term commits): the producer asks again.
                    return Err(ReplicaError::NotLeader { leader: None, term });
                }
                let Some(reply) = answer.take() else {
                    return Err(ReplicaError::Storage(AppendError::Producer(e)));
                };
                self.reads += 1;
                let ctx = self.reads;
                g.raw.read_index(ctx.to_be_bytes().to_vec());
                self.dirty.insert(group);
                g.waiters.push_back(Waiter {
                    first_index: 0,
                    last_index: 0,
                    term,
                    acks,
                    min_insync: 0,
                    duplicate: None,
                    refusal: Some((ctx, e)),
                    reply,
                });
                return Ok(());
            }
            Ok(Checked::Duplicate(b)) => {
                crate::coverage::reached(crate::coverage::Event::DuplicateBatchAnswered);
                if acks == 0 {
                    return Ok(());
                }
                let Some(reply) = answer.take() else {
                    return Ok(());
                };
                let waiter = Waiter {
                    first_index: 0,
                    last_index: 0,
                    term,
                    acks,
                    min_insync: 0,
                    duplicate: Some((b.first_offset, b.last_offset + 1)),
                    refusal: None,
                    reply,
                };
                if acks == 1 || g.view.partition.high_watermark() > b.last_offset {
                    let _ = waiter.reply.send(Ok(Appended {
                        base_offset: b.first_offset,
                        log_start_offset: g.view.partition.log_start_offset(),
                        log_append_time_ms: -1,
                    }));
                } else {
                    g.waiters.push_back(waiter);
                }
                return Ok(());
            }
            Ok(Checked::Append) => {}
        }
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = id;
        m.entries = batches
            .into_iter()
            .map(|data| Entry {
                data,
                ..Default::default()
            })
            .collect::<Vec<_>>()
            .into();
        let stepped = g.raw.step(m);
        g.timer.settle(&mut g.raw);
        if stepped.is_err() || g.raw.raft.state != StateRole::Leader || g.raw.raft.term != term {
            return Err(ReplicaError::NotLeader {
                leader: None,
                term: g.raw.raft.term,
            });
        }
        let last_index = g.raw.raft.raft_log.last_index();
        let mut offset = first_offset;
        for (i, h) in headers.iter().enumerate() {
            let index = last_index + 1 - count + i as u64;
            g.producers
                .record(index, std::slice::from_ref(h), offset, now_ms);
            offset += h.last_offset_delta as i64 + 1;
        }
        g.idle_ticks = 0;
        self.dirty.insert(group);
        if acks == 0 || count == 0 {
            return Ok(());
        }
        let Some(reply) = answer.take() else {
            return Ok(());
        };
        g.waiters.push_back(Waiter {
            first_index: last_index + 1 - count,
            last_index,
            term,
            acks,
            min_insync,
            duplicate: None,
            refusal: None,
            reply,
        });
        Ok(())
    }

    /// This turn's proposals took the group's log this far: one round for the gate.
    fn note_round(&mut self, group: GroupId) {
        let turn = self.turn;
        if let Some(g) = self.groups.get_mut(&group) {
            let log = &g.raw.raft.raft_log;
            let (last, committed) = (log.last_index(), log.committed);
            g.gate.proposed(turn, last, committed);
        }
    }

    /// Let through what the group's gate may release now (a round committed, or this replica
    /// no longer leads: then they are refused as any proposal to a follower is).
    fn release_gate(&mut self, group: GroupId) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if g.gate.is_empty() {
            return;
        }
        let leader = g.raw.raft.state == StateRole::Leader && !self.stepped_down;
        let held = g.gate.release(g.raw.raft.raft_log.committed, leader);
        if !held.is_empty() && !leader {
            crate::coverage::reached(crate::coverage::Event::HeldProposalsRefused);
        } else if held.len() > 1 {
            crate::coverage::reached(crate::coverage::Event::ProposalsReleasedTogether);
        }
        self.propose_held(group, held);
    }

    /// Propose held proposals, in order, as one round.
    fn propose_held(&mut self, group: GroupId, held: VecDeque<HeldProposal>) {
        if held.is_empty() {
            return;
        }
        for p in held {
            let mut answer = p.answer;
            if let Err(e) =
                self.propose_into(group, p.batches, p.acks, p.min_insync, false, &mut answer)
            {
                if let Some(a) = answer {
                    let _ = a.send(Err(e));
                }
            }
        }
        self.note_round(group);
    }

    fn deliver(&mut self, from: NodeId, messages: Vec<Bytes>) {
        if self.stepped_down {
            return;
        }
        self.heard.insert(from, self.ticks);
        // (A node that started with the cluster and has followed its metadata since holds
        // everything it acknowledged: a peer that restarts with data later changes nothing.)
        if self.fresh
            && !self.joined
            && self.metadata_caught_up_at.is_none()
            && self.transport.peer_holds_data(from)
        {
            // Also what a node that starts with a cluster being formed sees, when a peer was
            // elected first: only the metadata tells a replaced disk apart (the controller
            // warns when it finds an earlier registration of this node).
            self.joined = true;
            tracing::info!(
                node = self.id,
                peer = from,
                "this node's data directory is new and node {from} holds Raft data: in each group this node votes in no election until it has caught up with the group's leader (were its disk replaced, its vote must not count what it forgot)"
            );
            for g in self.groups.values_mut() {
                if !g.recovery.caught_up {
                    g.recovery.withholding = true;
                }
            }
        }
        for bytes in messages {
            match wire::decode_inbound(&bytes) {
                Ok(Inbound::Raft(group, m)) => {
                    // raft-rs forwards a proposal, a leadership transfer or a read index
                    // to the leader keeping its origin as the sender (a transfer's is the
                    // replica to take over): such a message may come through another voter.
                    let forwarded = matches!(
                        m.get_msg_type(),
                        MessageType::MsgPropose
                            | MessageType::MsgTransferLeader
                            | MessageType::MsgReadIndex
                    ) && self
                        .groups
                        .get(&group)
                        .is_some_and(|g| g.view.voters.contains(&m.from));
                    if m.from != from && !forwarded {
                        tracing::warn!(
                            group,
                            peer = from,
                            claimed = m.from,
                            "dropping a Raft message whose sender is not its peer"
                        );
                        continue;
                    }
                    if self.groups.contains_key(&group) {
                        self.step(group, m);
                    } else {
                        self.hold_early(group, m);
                    }
                }
                Ok(Inbound::Quiesce { group, term }) => {
                    let Some(g) = self.groups.get_mut(&group) else {
                        continue;
                    };
                    let raft = &g.raw.raft;
                    if raft.term == term
                        && raft.leader_id == from
                        && raft.state == StateRole::Follower
                        && raft.raft_log.committed == raft.raft_log.last_index()
                        && g.in_flight.is_none()
                        && g.next.is_empty()
                    {
                        g.quiet = true;
                        self.active.remove(&group);
                        self.dirty.insert(group);
                    }
                }
                Err(e) => {
                    tracing::warn!(peer = from, error = %e, "dropping an undecodable Raft message");
                }
            }
        }
    }

    /// Step a message from a peer into `group`, a replica here.
    fn step(&mut self, group: GroupId, mut m: Message) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let kind = m.get_msg_type();
        if matches!(kind, MessageType::MsgAppend | MessageType::MsgHeartbeat)
            && m.term >= g.raw.raft.term
        {
            let r = &mut g.recovery;
            r.leader = Some(m.from);
            // What this replica must hold: what was committed when it first heard a leader's
            // append, and what a leader's heartbeat says it acknowledged (the leader's view of
            // it; after a loss, stale until the leader probes it again). Not the commits of
            // later appends: under load a follower is always a little short of those, and
            // what it acknowledges from then on it keeps.
            if kind == MessageType::MsgHeartbeat || !r.heard_append {
                r.leader_commit = r.leader_commit.max(m.commit);
            }
            if m.commit > 0 && !self.holds_data {
                // A leader has committed entries: this cluster holds data, whether or not this
                // node has written any yet. Peers that connect from now on are told so.
                self.holds_data = true;
                self.transport.set_holds_data(true);
            }
            r.heard_append |= kind == MessageType::MsgAppend;
            let last = g.raw.raft.raft_log.last_index();
            if kind == MessageType::MsgHeartbeat && m.commit > last {
                if !r.withholding {
                    tracing::warn!(
                        node = self.id,
                        group,
                        commit = m.commit,
                        last,
                        "the leader's commit is past this replica's log: it lost entries it had acknowledged (its data directory emptied, or restored from an older copy); it votes in no election of this group until it has caught up"
                    );
                }
                r.withholding = true;
                r.lost = true;
                r.caught_up = false;
                m.commit = last;
                // Tell the leader where this log ends (an append refused there): it believes
                // this replica holds what it acknowledged and would send it nothing more.
                let mut refusal = Message::default();
                refusal.set_msg_type(MessageType::MsgAppendResponse);
                refusal.to = m.from;
                refusal.from = self.id;
                refusal.term = m.term;
                refusal.reject = true;
                refusal.index = last;
                refusal.reject_hint = last;
                send(&self.transport, group, &refusal);
            }
        }
        if kind == MessageType::MsgAppendResponse
            && m.reject
            && g.raw.raft.state == StateRole::Leader
            && m.term == g.raw.raft.term
        {
            // A follower that refuses an append because its log ends below what it had
            // acknowledged lost entries (see `Recovery`): raft-rs takes such a refusal for a
            // stale one and would go on sending from past its log's end for ever. Probe it
            // again from where its log ends. (A refusal that was only stale costs a probe.)
            if let Some(pr) = g.raw.raft.mut_prs().get_mut(m.from) {
                if m.reject_hint < pr.matched {
                    tracing::info!(node = self.id, group, follower = m.from, acknowledged = pr.matched, log_end = m.reject_hint, "a follower's log ends below what it acknowledged: probing it again from its end");
                    pr.matched = m.reject_hint;
                    pr.become_probe();
                }
            }
        }
        // Heartbeats of a quiet group's own leader, and their answers, change nothing that
        // needs a tick: everything else wakes it.
        let routine = match kind {
            MessageType::MsgHeartbeatResponse => true,
            MessageType::MsgHeartbeat => {
                m.term == g.raw.raft.term && m.from == g.raw.raft.leader_id
            }
            _ => false,
        };
        if !routine {
            wake(g, &mut self.active, group);
        }
        let _ = g.raw.step(m);
        g.timer.settle(&mut g.raw);
        self.dirty.insert(group);
    }

    /// The age past which a held early message is dropped.
    fn early_max_age(&self) -> Duration {
        self.settings.tick * self.settings.election_ticks as u32
    }

    /// Keep a message for a group not started here, within the bounds.
    fn hold_early(&mut self, group: GroupId, m: Message) {
        let now = self.env.clock.now();
        let max_age = self.early_max_age();
        if !self.early.contains_key(&group) && self.early.len() >= EARLY_GROUPS_MAX {
            self.early.retain(|_, held| {
                held.retain(|(at, _)| now.saturating_duration_since(*at) < max_age);
                !held.is_empty()
            });
            if self.early.len() >= EARLY_GROUPS_MAX {
                return;
            }
        }
        let held = self.early.entry(group).or_default();
        held.retain(|(at, _)| now.saturating_duration_since(*at) < max_age);
        if held.len() < EARLY_PER_GROUP_MAX {
            held.push((now, m));
        }
    }

    /// A group just started: step what its peers sent before it was, if still recent.
    fn deliver_early(&mut self, group: GroupId) {
        let Some(held) = self.early.remove(&group) else {
            return;
        };
        let now = self.env.clock.now();
        let max_age = self.early_max_age();
        for (at, m) in held {
            if now.saturating_duration_since(at) < max_age {
                self.step(group, m);
            }
        }
    }

    async fn tick(&mut self) {
        self.ticks += 1;
        // Peers heard from within an election timeout: alive in Raft, not just connected (a
        // node whose disk failed keeps its connections and says nothing).
        let election_ticks = self.settings.election_ticks as u64;
        let rebalancing = self.settings.rebalance_ticks > 0;
        let live: BTreeSet<NodeId> = self
            .heard
            .iter()
            .filter(|_| rebalancing)
            .filter(|&(_, &at)| self.ticks - at <= election_ticks)
            .map(|(&p, _)| p)
            .filter(|p| self.link_state.get(p).copied().unwrap_or(false))
            .collect();
        let quiesce_ticks = self.settings.quiesce_ticks;
        let mut going_quiet = Vec::new();
        for &group in &self.active {
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            g.raw.tick();
            g.timer.settle(&mut g.raw);
            self.dirty.insert(group);
            if group != wire::CONTROLLER_GROUP {
                // The cluster metadata's leader has no preferred broker (as in KRaft).
                rebalance(g, self.id, &live, self.settings.rebalance_ticks);
            }
            if idle_leader(g) {
                g.idle_ticks += 1;
                if g.idle_ticks >= quiesce_ticks {
                    going_quiet.push(group);
                }
            } else {
                g.idle_ticks = 0;
            }
        }
        for group in going_quiet {
            // The last heartbeat carries the commit; the notice follows it on each connection.
            if let Some(g) = self.groups.get_mut(&group) {
                g.raw.ping();
            }
            self.handle_ready(group).await;
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            if !idle_leader(g) {
                continue;
            }
            let term = g.raw.raft.term;
            for &f in g.view.voters.iter().filter(|&&v| v != self.id) {
                self.transport.send(f, wire::quiesce(group, term));
            }
            g.quiet = true;
            g.idle_ticks = 0;
            self.active.remove(&group);
            self.dirty.insert(group);
        }
    }

    /// The data directory failed (an I/O deadline passed, EIO) or healed. Failed: hand every
    /// group this node leads to a follower that has all of its log (at once, rather than after
    /// an election timeout), step down everywhere, answer what waited with
    /// NOT_LEADER_OR_FOLLOWER, and go silent. Healed: take part again, as a follower.
    async fn health_changed(&mut self, failed: bool) {
        if failed == self.stepped_down {
            return;
        }
        if failed {
            let mut led = 0;
            let ids: Vec<GroupId> = self.groups.keys().copied().collect();
            for &group in &ids {
                let Some(g) = self.groups.get_mut(&group) else {
                    continue;
                };
                if g.raw.raft.state != StateRole::Leader {
                    continue;
                }
                led += 1;
                let last = g.raw.raft.raft_log.last_index();
                let me = self.id;
                let heir = g
                    .raw
                    .raft
                    .prs()
                    .iter()
                    .filter(|(id, p)| **id != me && p.matched == last && p.recent_active)
                    .map(|(id, _)| *id)
                    .min();
                if let Some(heir) = heir {
                    crate::coverage::reached(crate::coverage::Event::LeadershipHandedOver);
                    g.raw.transfer_leader(heir);
                    g.timer.settle(&mut g.raw);
                }
                // The hand-over's message leaves now, before the node goes silent.
                self.handle_ready(group).await;
            }
            self.transport.flush();
            self.stepped_down = true;
            for &group in &ids {
                let Some(g) = self.groups.get_mut(&group) else {
                    continue;
                };
                let term = g.raw.raft.term;
                if g.raw.raft.state != StateRole::Follower || g.raw.raft.leader_id == self.id {
                    g.raw.raft.become_follower(term, raft::INVALID_ID);
                }
                for w in g.waiters.drain(..) {
                    let _ = w
                        .reply
                        .send(Err(ReplicaError::NotLeader { leader: None, term }));
                }
                for p in g.gate.take_all() {
                    if let Some(a) = p.answer {
                        let _ = a.send(Err(ReplicaError::NotLeader { leader: None, term }));
                    }
                }
                self.dirty.insert(group);
            }
            tracing::error!(node = self.id, led, groups = ids.len(), "data directory failed: stepped down from every group and takes no part in Raft until it heals");
        } else {
            self.stepped_down = false;
            for (&group, g) in self.groups.iter_mut() {
                g.quiet = false;
                g.idle_ticks = 0;
                self.active.insert(group);
                self.dirty.insert(group);
                release_held(g, group, &self.transport);
            }
            tracing::warn!(
                node = self.id,
                "data directory healed: taking part in Raft again, as a follower"
            );
        }
    }

    fn links_changed(&mut self) {
        let now: HashMap<NodeId, bool> = self
            .transport
            .peers()
            .into_iter()
            .map(|p| (p, self.transport.connected(p)))
            .collect();
        let lost: Vec<NodeId> = now
            .iter()
            .filter(|(p, &up)| !up && self.link_state.get(p).copied().unwrap_or(true))
            .map(|(&p, _)| p)
            .collect();
        let found: Vec<NodeId> = now
            .iter()
            .filter(|(p, &up)| up && !self.link_state.get(p).copied().unwrap_or(false))
            .map(|(&p, _)| p)
            .collect();
        self.link_state = now;
        for (&group, g) in self.groups.iter_mut() {
            if g.copies_awaited && !lost.is_empty() {
                // Replicas it waits for may have dropped out of sync.
                self.dirty.insert(group);
            }
            if !g.quiet {
                continue;
            }
            let raft = &g.raw.raft;
            // A quiet follower whose leader went silent wakes (and elects another if it must);
            // a quiet leader wakes to tell a peer that came back who leads.
            let leader_lost = lost.contains(&raft.leader_id);
            let member_found =
                raft.state == StateRole::Leader && found.iter().any(|p| g.view.voters.contains(p));
            if leader_lost || member_found {
                crate::coverage::reached(crate::coverage::Event::QuietGroupWokenByLink);
                g.quiet = false;
                self.active.insert(group);
                self.dirty.insert(group);
            }
        }
    }

    async fn handle_readies(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for group in dirty {
            self.handle_ready(group).await;
            self.start_fetches(group);
        }
    }

    async fn handle_ready(&mut self, group: GroupId) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if g.copies_awaited {
            answer_copies(g, self.id, &self.link_state);
        }
        let r = &mut g.recovery;
        // A leader whose term has committed an entry holds everything committed (Raft's
        // leader completeness); a follower once it holds what a leader's append named.
        let leads = g.raw.raft.state == StateRole::Leader && g.raw.raft.commit_to_current_term();
        let holds = r.heard_append && g.raw.raft.raft_log.persisted >= r.leader_commit;
        if !r.caught_up && (leads || holds) {
            r.caught_up = true;
            if r.withholding {
                r.withholding = false;
                if std::mem::take(&mut r.lost) {
                    crate::coverage::reached(crate::coverage::Event::LostReplicaCaughtUp);
                }
                tracing::info!(
                    node = self.id,
                    group,
                    commit = r.leader_commit,
                    "caught up with the leader: this replica votes again"
                );
            }
            if group == wire::CONTROLLER_GROUP && self.metadata_caught_up_at.is_none() {
                let commit = r.leader_commit.max(g.raw.raft.raft_log.committed);
                self.metadata_caught_up_at = g.raw.store().end_offset(commit);
            }
        }
        // What the connected followers have not acknowledged stays in memory (within bounds).
        // (Not raft-rs's `recent_active`: check_quorum clears it every election timeout, and
        // until each follower's next answer the cache was cut back to its floor.)
        let needed_from = if g.raw.raft.state == StateRole::Leader {
            let me = self.id;
            let links = &self.link_state;
            g.raw
                .raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != me && links.get(id).copied().unwrap_or(false))
                .map(|(_, p)| p.matched + 1)
                .min()
                .unwrap_or(u64::MAX)
        } else {
            u64::MAX
        };
        g.raw.store().keep_for_followers(needed_from);
        if !g.confirms.is_empty() {
            // raft-rs forgets its read indexes when it stops leading: so do they.
            let (leading, term) = (g.raw.raft.state == StateRole::Leader, g.raw.raft.term);
            g.confirms
                .retain(|(_, asked_in, _)| leading && *asked_in == term);
        }
        if !g.raw.has_ready() {
            update_status(g, &self.changed, &self.metrics);
            return;
        }
        let mut rd = g.raw.ready();
        let number = rd.number();
        if let Some(ss) = rd.ss() {
            if matches!(
                ss.raft_state,
                StateRole::Candidate | StateRole::PreCandidate
            ) {
                Metrics::inc(&self.metrics.raft_elections, 1);
            }
        }
        if rd.ss().is_some() {
            let raft = &g.raw.raft;
            if raft.state != StateRole::Leader && !g.waiters.is_empty() {
                let leader = (raft.leader_id != 0).then_some(raft.leader_id);
                let term = raft.term;
                for w in g.waiters.drain(..) {
                    let _ = w.reply.send(Err(ReplicaError::NotLeader { leader, term }));
                }
            }
        }
        if !rd.read_states().is_empty() {
            let raft = &g.raw.raft;
            let leading = raft.state == StateRole::Leader;
            let term = raft.term;
            for rs in rd.read_states() {
                let Ok(ctx) = <[u8; 8]>::try_from(&rs.request_ctx[..]).map(u64::from_be_bytes)
                else {
                    continue;
                };
                if let Some(at) = g.confirms.iter().position(|(c, _, _)| *c == ctx) {
                    let (_, asked_in, reply) = g.confirms.swap_remove(at);
                    let _ = reply.send(leading && term == asked_in);
                    continue;
                }
                let Some(at) = g
                    .waiters
                    .iter()
                    .position(|w| w.refusal.as_ref().is_some_and(|(c, _)| *c == ctx))
                else {
                    continue;
                };
                let w = g.waiters.remove(at).expect("found just now");
                let (_, e) = w.refusal.expect("a refusal");
                let _ = w.reply.send(if leading && term == w.term {
                    Err(ReplicaError::Storage(AppendError::Producer(e)))
                } else {
                    Err(ReplicaError::NotLeader { leader: None, term })
                });
            }
        }
        for m in rd.take_messages() {
            if !self.stepped_down && !withheld(g, &m) {
                send(&self.transport, group, &m);
            }
        }
        let storage = g.raw.store();
        if !rd.snapshot().is_empty() {
            let meta = rd.snapshot().get_metadata();
            let (index, term) = (meta.index, meta.term);
            let offset = snapshot_offset(rd.snapshot()).unwrap_or(0);
            storage.take_snapshot(index, term, offset);
            g.next = NextWrite {
                reset: Some(RaftReset {
                    index,
                    term,
                    offset,
                }),
                ..NextWrite::default()
            };
        }
        let entries = rd.take_entries();
        if !entries.is_empty() {
            let (cut, written) = storage.append(&entries);
            if let Some(from) = cut {
                if !g.producers.truncate(from) {
                    tracing::warn!(group, from, "a cut reaches before the producers' undo records (after a start): idempotent producers' retries of the cut batches may not be recognised");
                }
                g.next.producers_at_cut = Some(g.producers.state().clone());
                // Entries queued and not yet written from `from` on never reach the log; the
                // log itself is cut there only if what it holds (or is writing) goes that far.
                g.next.entries.retain(|e| e.index < from);
                let queued_from = g.next.entries.first().map(|e| e.index);
                if queued_from.is_none_or(|q| from < q) {
                    g.next.truncate_from = Some(g.next.truncate_from.map_or(from, |t| t.min(from)));
                }
            }
            let now_ms = self.env.clock.wall_ms();
            for e in &written {
                if e.index <= g.producers.recorded_through() || e.data.is_empty() {
                    continue;
                }
                let (Ok(h), Some(base)) = (
                    crate::batch::parse_header(&e.data),
                    storage.base_offset(e.index),
                ) else {
                    continue;
                };
                g.producers.record(e.index, &[h], base, now_ms);
            }
            g.next.entries.extend(written);
        }
        if let Some(hs) = rd.hs() {
            let record = storage.set_hard_state(hs);
            if (hs.term, hs.vote) != g.vote_written || g.next.hard_state.is_some() {
                g.vote_written = (hs.term, hs.vote);
                g.next.hard_state = Some(record);
            }
        }
        let persisted_messages = rd.take_persisted_messages();
        let committed = rd.take_committed_entries();
        let new_work = !entries.is_empty() || !rd.snapshot().is_empty() || rd.must_sync();
        if new_work {
            g.next.number = number;
        }
        g.held.push_back((number, persisted_messages));
        g.raw.advance_append_async(rd);
        if g.next.is_empty() && g.in_flight.is_none() && !self.stepped_down {
            // Nothing of this Ready (nor before it) waits for the disk.
            persist_held(g, group, &self.transport);
        }
        if let Some(last) = committed.last() {
            let last = last.index;
            crate::fault_point!("raft.before_apply");
            let Some(g) = self.groups.get_mut(&group) else {
                return;
            };
            apply(g, last, &self.store);
            g.raw.advance_apply_to(last);
            if g.copies_awaited {
                answer_copies(g, self.id, &self.link_state);
            }
        }
        if let Some(g) = self.groups.get(&group) {
            update_status(g, &self.changed, &self.metrics);
        }
        self.release_gate(group);
        if self
            .groups
            .get(&group)
            .is_some_and(|g| g.in_flight.is_none() && !g.next.is_empty())
        {
            crate::fault_point!("raft.before_persist");
        }
        self.start_write(group);
        // What advancing produced (messages, commits) is handled at the next pass.
        if self.groups.get(&group).is_some_and(|g| g.raw.has_ready()) {
            self.dirty.insert(group);
        }
    }

    /// Hand a group's gathered write to the commit pipeline, if none is in flight.
    fn start_write(&mut self, group: GroupId) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if g.in_flight.is_some() || g.next.is_empty() {
            return;
        }
        let next = std::mem::take(&mut g.next);
        let number = next.number;
        g.in_flight = Some(number);
        let write = RaftWrite {
            partition: g.view.partition.clone(),
            reset: next.reset,
            truncate_from: next.truncate_from,
            producers_at_cut: next.producers_at_cut,
            entries: next.entries,
            hard_state: next.hard_state,
        };
        let store = self.store.clone();
        self.writes.push(Box::pin(async move {
            let result = match store.raft_write(write).await {
                Ok(rx) => match rx.await {
                    Ok(r) => r,
                    Err(_) => Err(AppendError::Storage(
                        crate::storage::StorageError::DirFailed(
                            "the commit pipeline has stopped".into(),
                        ),
                    )),
                },
                Err(e) => Err(AppendError::Storage(e)),
            };
            (group, number, result)
        }));
    }

    async fn write_done(&mut self, (group, number, result): WriteDone) {
        if !self.groups.contains_key(&group) {
            return;
        }
        if result.is_ok() {
            // Durable, and nothing that depends on it sent yet.
            crate::fault_point!("raft.after_persist");
        }
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        g.in_flight = None;
        if result.as_ref().is_ok_and(|w| w.next_index > 1) && !self.holds_data {
            // Entries written: peers are told before anything else this node sends them.
            self.holds_data = true;
            self.transport.set_holds_data(true);
        }
        match result {
            Ok(written) => {
                g.raw
                    .store()
                    .written(written.next_index, written.next_offset);
                g.raw.on_persist_ready(number);
                g.persisted = number;
                if self.stepped_down {
                    // Nothing leaves while stepped down; what was held goes once healed.
                } else if g.next.is_empty() {
                    // The Readies after it had nothing to write: durable too.
                    persist_held(g, group, &self.transport);
                } else {
                    release_held(g, group, &self.transport);
                }
                answer_durable(g, written.next_index);
                self.dirty.insert(group);
                self.start_write(group);
            }
            Err(e) => {
                // Not durable: nothing that depends on it leaves, and the same Ready is
                // written again once the directory is healthy again.
                tracing::warn!(node = self.id, group, error = %e, "a Raft write failed; it is retried once the data directory heals");
                let _ = e;
                // The entries are in the storage's cache; rebuild the write from raft-rs's
                // view: everything from the durable end on.
                self.retry_write(group, number);
            }
        }
    }

    /// Write again what a failed write carried (after the directory heals, as the pipeline
    /// refuses writes until then).
    fn retry_write(&mut self, group: GroupId, number: u64) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let clock = self.env.clock.clone();
        let store = self.store.clone();
        let partition = g.view.partition.clone();
        // Rebuild from the log's durable end: the entries raft-rs holds past it, all of them
        // (the cache has every entry not yet durable), and the hard state as it is now.
        let durable_next = partition
            .state()
            .replica
            .as_ref()
            .map_or(1, |r| r.next_index)
            .min(g.raw.store().durable_next());
        let last = g.raw.raft.raft_log.last_index();
        let entries = g
            .raw
            .store()
            .cached_from(durable_next, last)
            .unwrap_or_default();
        let hs = g.raw.raft.hard_state();
        g.vote_written = (hs.term, hs.vote);
        let hard_state = Some(crate::storage::log::replica::HardStateRecord {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        });
        let mut merged = std::mem::take(&mut g.next);
        // The retry covers everything up to the newest Ready gathered since.
        let covered = number.max(merged.number);
        merged.entries = entries;
        merged.truncate_from = Some(durable_next);
        merged.hard_state = hard_state;
        merged.number = covered;
        g.in_flight = Some(covered);
        let write = RaftWrite {
            partition,
            reset: merged.reset,
            truncate_from: merged.truncate_from,
            producers_at_cut: Some(g.producers.state().clone()),
            entries: merged.entries,
            hard_state: merged.hard_state,
        };
        self.writes.push(Box::pin(async move {
            // Wait for the directory to be healthy (bounded: the pipeline answers within the
            // I/O deadline, and a failed directory heals or stays failed).
            loop {
                if store.io().health.check().is_ok() {
                    break;
                }
                clock.sleep(Duration::from_millis(100)).await;
            }
            let result = match store.raft_write(write).await {
                Ok(rx) => rx.await.unwrap_or_else(|_| {
                    Err(AppendError::Storage(
                        crate::storage::StorageError::DirFailed(
                            "the commit pipeline has stopped".into(),
                        ),
                    ))
                }),
                Err(e) => Err(AppendError::Storage(e)),
            };
            (group, covered, result)
        }));
    }

    /// The reads raft-rs asked for: they wait their turn in the catch-up budgets.
    fn start_fetches(&mut self, group: GroupId) {
        let Some(g) = self.groups.get(&group) else {
            return;
        };
        for (low, max_bytes) in g.raw.store().take_fetches() {
            self.catch_up.want(group, low, max_bytes);
        }
    }

    /// Start the catch-up reads the budgets allow now; drop those nobody waits for.
    fn start_reads(&mut self) {
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
            .store(self.catch_up.in_flight() as i64, Ordering::Relaxed);
        self.metrics
            .catch_up_reads_waiting
            .store(self.catch_up.waiting() as i64, Ordering::Relaxed);
    }

    fn fetch_done(&mut self, (read, outcome, held): FetchDone) {
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
struct FollowerView<'a> {
    me: NodeId,
    groups: &'a HashMap<GroupId, Group>,
    transport: &'a Transport,
    stepped_down: bool,
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

/// The Kafka offset after every entry raft-rs holds for the group (its storage's and those
/// not yet handed to it): where the next proposal's batches will be written.
fn next_offset(g: &Group) -> i64 {
    let storage = g.raw.store();
    let last_stored = raft::Storage::last_index(storage).unwrap_or(0);
    let stored_end = storage
        .end_offset(last_stored)
        .unwrap_or_else(|| g.view.partition.state().log_end_offset());
    let unstable: i64 = g
        .raw
        .raft
        .raft_log
        .unstable_entries()
        .iter()
        .map(|e| {
            if e.data.is_empty() {
                1
            } else {
                crate::batch::parse_header(&e.data).map_or(1, |h| h.last_offset_delta as i64 + 1)
            }
        })
        .sum();
    stored_end + unstable
}

/// A quiet group ticks again. (Its idleness is judged at each tick: heartbeats and their
/// answers do not count against it.)
fn wake(g: &mut Group, active: &mut BTreeSet<GroupId>, group: GroupId) {
    if g.quiet {
        g.quiet = false;
        g.idle_ticks = 0;
        active.insert(group);
    }
}

/// Kafka's preferred leader election (`auto.leader.rebalance.enable`): a leader that is not
/// its group's preferred replica (the first of the list the controller placed, which takes
/// turns across the brokers) hands the leadership back once that replica has been connected
/// and has had everything committed for `rebalance_ticks` ticks in a row, and has been heard
/// from within an election timeout (a broker whose disk failed stays connected, silent) — so
/// a broker restarted after a crash gets its share of leaderships back.
/// raft-rs's transfer sends the replica `MsgTimeoutNow` and refuses proposals meanwhile (the
/// producers are told NOT_LEADER_OR_FOLLOWER and follow the new leader).
fn rebalance(g: &mut Group, me: NodeId, live: &BTreeSet<NodeId>, ticks: usize) {
    // Live: connected and heard from within an election timeout (raft-rs's `recent_active` is
    // cleared at every quorum check, which would restart the count each election timeout).
    let raft = &g.raw.raft;
    let Some(&preferred) = g.view.voters.first() else {
        return;
    };
    // In sync: it has everything committed (under load it is always a few entries short of
    // the leader's last; raft-rs's transfer sends those before it hands over).
    let committed = raft.raft_log.committed;
    let ready = ticks > 0
        && raft.state == StateRole::Leader
        && preferred != me
        && raft.lead_transferee.is_none()
        && live.contains(&preferred)
        && raft
            .prs()
            .get(preferred)
            .is_some_and(|p| p.matched >= committed);
    if !ready {
        g.preferred_ready = 0;
        return;
    }
    g.preferred_ready += 1;
    if g.preferred_ready >= ticks {
        g.preferred_ready = 0;
        crate::coverage::reached(crate::coverage::Event::LeadershipReturnedToPreferred);
        g.raw.transfer_leader(preferred);
        g.timer.settle(&mut g.raw);
    }
}

/// A leader with nothing to do: everything committed and on every follower, nothing waiting.
fn idle_leader(g: &Group) -> bool {
    let raft = &g.raw.raft;
    if raft.state != StateRole::Leader
        || !g.waiters.is_empty()
        || g.in_flight.is_some()
        || !g.next.is_empty()
        || !g.held.is_empty()
        || !g.gate.is_empty()
        || g.preferred_ready > 0
    {
        return false;
    }
    let last = raft.raft_log.last_index();
    raft.raft_log.committed == last && raft.prs().iter().all(|(_, p)| p.matched == last)
}

fn send(transport: &Transport, group: GroupId, m: &Message) {
    match wire::encode(group, m) {
        Ok(bytes) => {
            transport.send(m.to, bytes);
        }
        Err(e) => tracing::warn!(group, error = %e, "cannot encode a Raft message; dropped"),
    }
}

/// A vote granted by a replica that withholds its votes ([`Recovery`]).
fn withheld(g: &Group, m: &Message) -> bool {
    let withheld = g.recovery.withholding
        && !m.reject
        && g.recovery.leader != Some(m.to)
        && matches!(
            m.get_msg_type(),
            MessageType::MsgRequestVoteResponse | MessageType::MsgRequestPreVoteResponse
        );
    if withheld {
        crate::coverage::reached(crate::coverage::Event::VoteWithheld);
    }
    withheld
}

/// Every Ready gathered so far is durable (nothing of them waits for a write).
fn persist_held(g: &mut Group, group: GroupId, transport: &Transport) {
    if let Some(&(last, _)) = g.held.back() {
        if last > g.persisted {
            g.raw.on_persist_ready(last);
            g.persisted = last;
        }
    }
    release_held(g, group, transport);
}

/// Send the messages of every Ready up to the persisted one.
fn release_held(g: &mut Group, group: GroupId, transport: &Transport) {
    while g.held.front().is_some_and(|(n, _)| *n <= g.persisted) {
        let (_, messages) = g.held.pop_front().expect("checked");
        for m in messages.iter().filter(|m| !withheld(g, m)) {
            send(transport, group, m);
        }
    }
}

/// Entries through `commit` are committed: the high watermark moves there, and the proposals
/// waiting for it are answered.
fn apply(g: &mut Group, commit: u64, store: &Arc<Store>) {
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

/// A majority of `voters`.
fn majority(voters: &[NodeId]) -> usize {
    voters.len() / 2 + 1
}

/// Replicas of the group in sync for `min.insync.replicas`: this one, the leader, and every
/// other voter it is connected to (a broker that crashed or was cut off drops out at once; one
/// paused keeps its connection until the transport's silence timeout, and what waits for it
/// waits until then or its request's timeout).
fn in_sync(g: &Group, me: NodeId, links: &HashMap<NodeId, bool>) -> usize {
    g.view
        .voters
        .iter()
        .filter(|&&v| v == me || links.get(&v).copied().unwrap_or(false))
        .count()
}

/// `acks=-1` proposals that asked for more durable copies than a majority: answered once
/// committed and held durably by `min_insync` replicas (the leader's progress counts its own
/// persisted entries), refused with NOT_ENOUGH_REPLICAS_AFTER_APPEND once fewer replicas than
/// that are in sync.
fn answer_copies(g: &mut Group, me: NodeId, links: &HashMap<NodeId, bool>) {
    let waiters = std::mem::take(&mut g.waiters);
    let raft = &g.raw.raft;
    let commit = raft.raft_log.committed;
    let in_sync = in_sync(g, me, links);
    let copies = |index: u64| {
        raft.prs()
            .iter()
            .filter(|(id, p)| g.view.voters.contains(id) && p.matched >= index)
            .count()
    };
    let storage = g.raw.store();
    let log_start = g.view.partition.log_start_offset();
    let mut kept = VecDeque::with_capacity(waiters.len());
    let mut awaited = false;
    for w in waiters {
        if w.min_insync == 0 {
            kept.push_back(w);
            continue;
        }
        if w.last_index <= commit && copies(w.last_index) >= w.min_insync {
            let a = answer(storage, &w, log_start);
            let _ = w.reply.send(a);
        } else if in_sync < w.min_insync {
            let _ = w
                .reply
                .send(Err(ReplicaError::NotEnoughReplicasAfterAppend {
                    in_sync,
                    required: w.min_insync,
                }));
        } else {
            awaited = true;
            kept.push_back(w);
        }
    }
    g.waiters = kept;
    g.copies_awaited = awaited;
}

/// Entries below `next_index` are durable here: `acks=1` proposals among them are answered.
fn answer_durable(g: &mut Group, next_index: u64) {
    let storage = g.raw.store();
    let log_start = g.view.partition.log_start_offset();
    let mut kept = VecDeque::with_capacity(g.waiters.len());
    for w in g.waiters.drain(..) {
        if w.acks == 1 && w.duplicate.is_none() && w.refusal.is_none() && w.last_index < next_index
        {
            let a = answer(storage, &w, log_start);
            let _ = w.reply.send(a);
        } else {
            kept.push_back(w);
        }
    }
    g.waiters = kept;
}

fn answer(
    storage: &PartitionStorage,
    w: &Waiter,
    log_start_offset: i64,
) -> Result<Appended, ReplicaError> {
    // The entries answered for must still be the proposal's (of its term).
    match (
        raft::Storage::term(storage, w.last_index),
        storage.base_offset(w.first_index),
    ) {
        (Ok(term), Some(base_offset)) if term == w.term => Ok(Appended {
            base_offset,
            log_start_offset,
            log_append_time_ms: -1,
        }),
        _ => Err(ReplicaError::NotLeader {
            leader: None,
            term: w.term,
        }),
    }
}

/// A leader serves (reads, the group coordinator's load) once an entry of its own term is not
/// only committed but applied: the high watermark moves on apply, and raft-rs may know of the
/// commit (a majority of followers acknowledged) before its own write of the entry is durable
/// and the entries are handed out to apply — serving then would show the previous leader's
/// readers a high watermark gone back, and a coordinator taking over would load its groups'
/// offsets from a log end short of commits the previous one acknowledged. (Reasoned from
/// raft-rs's async-ready API, not shown by a failing seed: seed 21 of
/// `cluster-failover-clients` was the stale leader's out-of-range answer, `confirm_leading`.)
fn serves(raft: &raft::Raft<PartitionStorage>) -> bool {
    let log = &raft.raft_log;
    raft.commit_to_current_term()
        && (log.applied >= log.committed || log.term(log.applied).is_ok_and(|t| t == raft.term))
}

fn update_status(g: &Group, changed: &watch::Sender<u64>, metrics: &Metrics) {
    let raft = &g.raw.raft;
    let is_leader = raft.state == StateRole::Leader;
    let me = raft.id;
    let status = Status {
        leader: (raft.leader_id != 0).then_some(raft.leader_id),
        term: raft.term,
        is_leader,
        serving: is_leader && serves(raft),
        under_replicated: is_leader
            && raft
                .prs()
                .iter()
                .any(|(id, p)| *id != me && !p.recent_active),
        quiet: g.quiet,
    };
    let before = g.view.status();
    if before == status {
        return;
    }
    let flag = |on: bool| i64::from(on);
    // A view starts as a follower's (Status::default): count it once, then move it.
    let counted = g
        .view
        .counted
        .swap(true, std::sync::atomic::Ordering::Relaxed);
    if !counted {
        metrics.raft_followers.fetch_add(1, Ordering::Relaxed);
    }
    let leader_delta = flag(status.is_leader) - flag(before.is_leader);
    metrics
        .raft_leaders
        .fetch_add(leader_delta, Ordering::Relaxed);
    metrics
        .raft_followers
        .fetch_sub(leader_delta, Ordering::Relaxed);
    metrics.raft_under_replicated.fetch_add(
        flag(status.under_replicated) - flag(before.under_replicated),
        Ordering::Relaxed,
    );
    metrics
        .raft_quiet
        .fetch_add(flag(status.quiet) - flag(before.quiet), Ordering::Relaxed);
    metrics
        .raft_term_max
        .fetch_max(status.term as i64, Ordering::Relaxed);
    if status.is_leader && !before.is_leader {
        Metrics::inc(&metrics.raft_leaderships_taken, 1);
    }
    if status.is_leader != before.is_leader {
        let p = &g.view.partition;
        if status.is_leader {
            tracing::info!(topic = %p.topic, partition = p.index, term = status.term, "leading");
        } else {
            tracing::info!(topic = %p.topic, partition = p.index, term = status.term, leader = ?status.leader, "no longer leading");
        }
    }
    g.view.set_status(status);
    changed.send_modify(|n| *n += 1);
}
