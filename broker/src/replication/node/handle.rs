//! The node's handle: what the rest of the broker calls ([`Replication`]) — each call a command
//! into the loop's mailbox and, where it waits, an answer on a oneshot — and what it reads
//! without asking (each group's [`GroupView`], published by the loop).
//!
//! Invariant: nothing here touches a group's Raft state; only the loop does. A full mailbox
//! waits (a bounded queue of [`COMMAND_QUEUE`] commands), never drops a proposal.

use super::*;

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
    /// A membership change that cannot be made now: one is still being applied, or it does
    /// not follow the membership (entering a joint configuration from a joint one, leaving
    /// one that is not joint).
    #[error("membership change refused: {0}")]
    MembershipChange(String),
}

impl ReplicaError {
    /// Whether the write may still be in the log (and be committed).
    pub fn indefinite(&self) -> bool {
        match self {
            ReplicaError::NotLeader { .. }
            | ReplicaError::Stopped
            | ReplicaError::NotEnoughReplicasAfterAppend { .. } => true,
            ReplicaError::Storage(e) => e.indefinite(),
            ReplicaError::Unknown
            | ReplicaError::NotEnoughReplicas { .. }
            | ReplicaError::MembershipChange(_) => false,
        }
    }
}

/// What a proposal's sender waits on (nothing for acks=0).
pub type Acknowledgement = Option<oneshot::Receiver<Result<Appended, ReplicaError>>>;

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
    /// Its replicas, as this node last applied its membership.
    pub(super) members: Mutex<super::Members>,
    /// The replica that should lead when it can (the first of its assignment).
    pub(super) preferred: Mutex<Option<NodeId>>,
    pub(super) status: Mutex<Status>,
    /// Counted in the node's metrics (as a follower, until its status says otherwise).
    pub(super) counted: std::sync::atomic::AtomicBool,
}

impl GroupView {
    pub fn status(&self) -> Status {
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn set_status(&self, s: Status) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Its replicas, as this node last applied its membership.
    pub fn members(&self) -> super::Members {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_members(&self, m: super::Members) {
        *self.members.lock().unwrap_or_else(|p| p.into_inner()) = m;
    }

    /// The replica that should lead when it can.
    pub fn preferred(&self) -> Option<NodeId> {
        *self.preferred.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The replica that should lead from now on (the first of a new assignment).
    pub fn set_preferred(&self, preferred: Option<NodeId>) {
        *self.preferred.lock().unwrap_or_else(|p| p.into_inner()) = preferred;
    }
}

#[derive(Default)]
pub(super) struct Views {
    pub(super) by_group: HashMap<GroupId, Arc<GroupView>>,
    pub(super) by_partition: HashMap<(String, i32), Arc<GroupView>>,
}

/// The node's replication, as the rest of the broker uses it. Cheap to clone.
#[derive(Clone)]
pub struct Replication {
    pub(super) node_id: NodeId,
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) views: Arc<RwLock<Views>>,
    /// Told whenever a group's status changes.
    pub(super) feeds: super::feed::Feeds,
    /// Calls to and from other brokers.
    pub(super) calls: Arc<super::super::calls::Calls>,
}

/// Commands waiting for the loop, at most; senders wait beyond that.
pub(super) const COMMAND_QUEUE: usize = 4096;

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
        let calls = super::super::calls::Calls::new(transport.clone(), env.clock.clone());
        let views = Arc::new(RwLock::new("replication.views", Views::default()));
        let (changed, feeds) = super::feed::channel();
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
            super::super::storage::FollowersCache::new(settings.catch_up.followers_cache_bytes_max);
        metrics.catch_up_reads_in_flight_max.store(
            super::super::catch_up::READS_IN_FLIGHT_MAX as i64,
            Ordering::Relaxed,
        );
        metrics.catch_up_follower_bytes_max.store(
            settings.catch_up.follower_bytes_max as i64,
            Ordering::Relaxed,
        );
        metrics
            .raft_queue_bytes_max
            .store(transport.queue_bytes_max() as i64, Ordering::Relaxed);
        metrics
            .hand_backs_max
            .store(super::HAND_BACKS_MAX as i64, Ordering::Relaxed);
        let stretch = super::super::ElectionStretch::new(
            settings.tick,
            super::super::ElectionStretch::max_ticks(settings.election_ticks),
        );
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
            writes: Default::default(),
            fetches: Default::default(),
            prefix_io: Default::default(),
            prefix_reads: 0,
            prefix_groups: BTreeSet::new(),
            views: views.clone(),
            changed,
            links,
            link_state,
            health,
            metrics,
            stretch,
            work: 0,
            leaderless_since: HashMap::new(),
            leaderless_warned_at_tick: None,
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
            calls: calls.clone(),
        };
        tokio::spawn(node.run());
        Replication {
            node_id,
            tx,
            views,
            feeds,
            calls,
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Calls to and from the other brokers ([`super::super::calls`]).
    pub fn calls(&self) -> &Arc<super::super::calls::Calls> {
        &self.calls
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
        self.send_proposal(group, batches, acks, 1, false, None)
            .await
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
        self.send_proposal(group, batches, -1, min_insync, false, None)
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
        self.send_proposal(group, batches, 0, 1, true, None)
            .await
            .map(|_| ())
    }

    /// A producer's batches (`acks` 0, 1 or -1 with `min_insync`), carrying the partition's
    /// token of the transaction coordinator's confirmation when one of them may open its
    /// producer's transaction here (`PartitionState::txn_guard`): without a token that still
    /// holds, such a batch is refused (`ProducerError::Unverified`).
    pub async fn propose_produced(
        &self,
        group: GroupId,
        batches: Vec<Bytes>,
        acks: i16,
        min_insync: usize,
        txn_guard: Option<u64>,
    ) -> Result<Acknowledgement, ReplicaError> {
        self.send_proposal(group, batches, acks, min_insync, false, txn_guard)
            .await
    }

    pub(super) async fn send_proposal(
        &self,
        group: GroupId,
        batches: Vec<Bytes>,
        acks: i16,
        min_insync: usize,
        forward: bool,
        txn_guard: Option<u64>,
    ) -> Result<Acknowledgement, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Propose {
                group,
                proposal: Proposal {
                    batches,
                    acks,
                    min_insync,
                    forward,
                    txn_guard,
                },
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

    /// Propose a change of `group`'s membership through this replica, which must lead it:
    /// `Ok` once raft-rs took the proposal (NOT_LEADER when this replica does not lead, or a
    /// change is still being applied: one at a time). Whether and when it applies shows in
    /// the group's [`GroupView::members`]. A change that cannot follow the membership now
    /// is refused (MembershipChange), never taken and dropped.
    pub async fn change_members(
        &self,
        group: GroupId,
        change: raft::eraftpb::ConfChangeV2,
    ) -> Result<(), ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::ChangeMembers {
                group,
                change,
                reply,
            })
            .await
            .map_err(|_| ReplicaError::Stopped)?;
        rx.await.map_err(|_| ReplicaError::Stopped)?
    }

    /// How far `group`'s replicas are, if this replica leads it.
    pub async fn progress(&self, group: GroupId) -> Option<super::Progress> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Progress { group, reply })
            .await
            .ok()?;
        rx.await.ok().flatten()
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

    /// The group's commit as its leader has it now (a Raft read index, through the leader this
    /// replica follows), as this replica's high watermark once it has applied that far: a
    /// replica that waits for it holds everything committed before it asked. `Ok(None)` when
    /// it cannot be told now (no leader known, the leader not ready, too many asking): ask
    /// again later. The caller bounds the wait: an ask a deposed leader never answers waits
    /// for ever.
    pub async fn leader_commit(&self, group: GroupId) -> Result<Option<i64>, ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::AskCommit { group, reply })
            .await
            .map_err(|_| ReplicaError::Stopped)?;
        rx.await.map_err(|_| ReplicaError::Stopped)
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
        self.send_add_group(group, partition, voters, campaign, made_at, false)
            .await
    }

    /// Start a replica of `partition` that a move of its replicas adds to group `group`
    /// (first made of `voters`). While its log holds nothing it grants no vote until it has
    /// caught up with the group's leader: it starts from the group's first membership, which
    /// a candidate still on an old membership (back from a partition) would count its vote
    /// in, against the voters the group has now.
    pub async fn add_moved_group(
        &self,
        group: GroupId,
        partition: Arc<Partition>,
        voters: Vec<NodeId>,
        made_at: Option<i64>,
    ) -> Result<(), ReplicaError> {
        self.send_add_group(group, partition, voters, false, made_at, true)
            .await
    }

    async fn send_add_group(
        &self,
        group: GroupId,
        partition: Arc<Partition>,
        voters: Vec<NodeId>,
        campaign: bool,
        made_at: Option<i64>,
        moved_in: bool,
    ) -> Result<(), ReplicaError> {
        self.tx
            .send(Command::AddGroup {
                group,
                partition,
                voters,
                campaign,
                made_at,
                moved_in,
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
        self.feeds.counter()
    }

    /// The groups whose status changes from now on, each kept until taken: for a reader that
    /// looks at what changed rather than at every group.
    pub fn status_feed(&self) -> super::feed::StatusFeed {
        self.feeds.open()
    }

    #[track_caller]
    pub(super) fn read_views(&self) -> crate::sync::RwLockReadGuard<'_, Views> {
        self.views.read().unwrap_or_else(|p| p.into_inner())
    }
}
