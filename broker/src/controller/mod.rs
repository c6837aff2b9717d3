//! The controller: the cluster metadata (brokers, topics, their partitions' replicas and Raft
//! groups, configs, leaders, producer id blocks) as a Raft state machine. Its log is the
//! internal partition `__cluster_metadata-0`, replicated by Raft group 0 over every broker of
//! `cluster_peers` (KRaft's design): every change — a topic created or deleted, partitions
//! added, configs altered, a broker registered or fenced, the leaders groups elected — is a
//! record proposed to that group, and every broker applies the committed records in order to
//! its own replica of the metadata ([`state::ClusterMetadata`]) and answers Metadata from it.
//!
//! Nothing is forwarded over a connection opened for it: a broker proposes through raft-rs,
//! which hands a follower's proposal to the leader over the long-lived inter-broker connection;
//! the broker then waits for its request's outcome to appear in its own replica. A broker's
//! local storage follows the metadata ([`replicas`]): topics made and removed, and a Raft group
//! started for every partition it is a replica of.
//!
//! Architecture invariants: the metadata changes only by applying committed records, in log
//! order, identically on every broker (no local clock, configuration or randomness in
//! [`state`]); a broker's local topics are created and removed only by [`replicas`], following
//! the metadata.

mod caught_up;
mod levels;
pub mod membership;
pub mod moves;
mod placement;
mod reassign;
pub mod records;
mod replicas;
mod requests;
pub mod snapshot;
pub mod state;

pub use caught_up::SecurityPublished;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::sync::RwLock;
use std::time::Duration;

use io_backend::Env;
use tokio::sync::watch;

use crate::config::{Config, Endpoint, DEFAULT_LISTENER};
use crate::replication::node::{ReplicaError, Replication};
use crate::replication::transport::{NodeId, Transport};
use crate::replication::wire::GroupId;
use crate::storage::log::Partition;
use crate::storage::Store;
use records::MetadataRecord;
use state::{ClusterMetadata, MetadataError, Outcome};

pub use crate::storage::catalog::METADATA_TOPIC;
/// The metadata's Raft group.
pub const METADATA_GROUP: GroupId = crate::replication::wire::CONTROLLER_GROUP;
/// How often a proposal whose effect has not shown is made again (it may have been lost with
/// a leader change; a request's first outcome is the one kept).
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Why a request to change the metadata did not come to an outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// No outcome within the time allowed: the change may still be applied.
    #[error("the cluster metadata did not take the change within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Failed(#[from] MetadataError),
    #[error("the controller has stopped")]
    Stopped,
}

/// This broker's side of the controller.
pub struct Controller {
    node_id: NodeId,
    env: Env,
    store: Arc<Store>,
    replication: Replication,
    transport: Transport,
    partition: Arc<Partition>,
    state: RwLock<Arc<ClusterMetadata>>,
    version: watch::Sender<u64>,
    /// The metadata log's offset up to which records are applied (and published).
    applied: watch::Sender<i64>,
    /// This broker's replica of the metadata has caught up with the cluster's since it
    /// started ([`caught_up`]).
    caught_up: watch::Sender<bool>,
    /// Bumped after every pass that brought the local storage in line with the metadata.
    reconciled: watch::Sender<u64>,
    /// Producer ids this broker may hand out without asking: `[next, end)`.
    producer_ids: crate::sync::Mutex<(i64, i64)>,
    /// Which start of this broker registered (a restarted broker registers anew).
    incarnation: u64,
    /// This broker's address on each listener (the first is also the record's `host:port`).
    endpoints: Vec<Endpoint>,
    /// Its `broker_rack`, registered with it.
    rack: Option<String>,
    /// The levels a new cluster starts at if this broker registers first (`initial_features`).
    initial_features: std::collections::BTreeMap<String, i16>,
    session_timeout: Duration,
    /// The controller's voters (`cluster_peers`) and their inter-broker addresses.
    voters: std::collections::BTreeMap<NodeId, std::net::SocketAddr>,
    /// Where the others link with this broker, registered ([`membership`]).
    inter_broker: Option<String>,
    /// Brokers a broker outside the metadata's group asks to propose its registration.
    join_addresses: Vec<std::net::SocketAddr>,
    /// Bytes of metadata log between two snapshots ([`snapshot`]).
    snapshot_interval_bytes: u64,
    /// What [`Controller::cut_off`] last found (it logs when that changes).
    cut_off_said: AtomicBool,
}

impl Controller {
    /// Open the metadata log, start its Raft group and the tasks that keep this broker's
    /// replica of the metadata, its registration and its storage current.
    pub async fn start(
        env: Env,
        config: &Config,
        store: Arc<Store>,
        replication: Replication,
        transport: Transport,
    ) -> Result<Arc<Controller>, String> {
        // Never deleted by retention: only below a snapshot of the metadata ([`snapshot`]),
        // which is taken where a segment begins.
        let overrides: crate::topic_config::Overrides = [
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
            (
                "segment.bytes".to_string(),
                config.metadata_log_segment_bytes.to_string(),
            ),
        ]
        .into();
        let topic = match store.topic(METADATA_TOPIC) {
            Some(t) if t.overrides == overrides => t,
            Some(_) => store
                .alter_topic_config(METADATA_TOPIC, overrides)
                .await
                .map_err(|e| format!("cannot set the metadata log's segment size: {e}"))?,
            None => store
                .create_topic(METADATA_TOPIC, 1, overrides)
                .await
                .map_err(|e| format!("cannot create the metadata log: {e}"))?,
        };
        let partition = topic.partitions[0].clone();
        let configured = config.peers();
        let voters: Vec<NodeId> = configured.keys().copied().collect();
        // A new cluster's first controller is its lowest node: it stands for election at once
        // rather than after a randomised timeout (it gets there first, and the cluster is up an
        // election timeout sooner). A node that has voted before waits as Raft has it.
        let never_voted = partition
            .state()
            .replica
            .as_ref()
            .is_some_and(|r| r.hard_state.term == 0);
        let first = voters.first() == Some(&(config.node_id as NodeId));
        replication
            .add_group(
                METADATA_GROUP,
                partition.clone(),
                voters,
                never_voted && first,
                None,
            )
            .await
            .map_err(|e| format!("cannot start the metadata's Raft group: {e}"))?;
        let controller = Arc::new(Controller {
            node_id: config.node_id as NodeId,
            incarnation: env.rng.next_u64(),
            env,
            store,
            replication,
            transport,
            partition,
            state: RwLock::new("controller.metadata", Arc::new(ClusterMetadata::new())),
            version: watch::channel(0).0,
            applied: watch::channel(0).0,
            caught_up: watch::channel(false).0,
            reconciled: watch::channel(0).0,
            producer_ids: crate::sync::Mutex::new("controller.producer_ids", (0, 0)),
            endpoints: config.advertised_endpoints(),
            rack: config.rack(),
            initial_features: config.initial_features(),
            session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
            inter_broker: configured
                .get(&(config.node_id as NodeId))
                .copied()
                .or_else(|| config.inter_broker_address())
                .map(|a| a.to_string()),
            join_addresses: config.join_addresses(),
            voters: configured,
            snapshot_interval_bytes: config.metadata_snapshot_interval_bytes,
            cut_off_said: AtomicBool::new(false),
        });
        tokio::spawn(controller.clone().apply_loop());
        tokio::spawn(controller.clone().register_loop());
        tokio::spawn(controller.clone().report_leaders());
        tokio::spawn(controller.clone().fence_loop());
        tokio::spawn(controller.clone().reconcile_loop());
        tokio::spawn(controller.clone().catch_up_loop());
        tokio::spawn(controller.clone().reassign_loop());
        tokio::spawn(controller.clone().peers_loop());
        tokio::spawn(controller.clone().join_serve_loop());
        tokio::spawn(controller.clone().quorum_loop());
        tokio::spawn(controller.clone().format_loop());
        Ok(controller)
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Stop talking to the other brokers (the node is shutting down).
    pub fn shutdown(&self) {
        self.transport.shutdown();
    }

    pub fn replication(&self) -> &Replication {
        &self.replication
    }

    /// This broker's replica of the metadata, as of the last record it applied.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes whenever records were applied.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// This broker's copy of topic `name` as the metadata has it, waiting at most `limit` for
    /// it to be made (the metadata may have it before the copy is made here).
    pub async fn local_topic(
        &self,
        name: &str,
        limit: Duration,
    ) -> Option<Arc<crate::storage::catalog::Topic>> {
        let local = || {
            let md = self.metadata();
            let t = md.topics.get(name)?;
            self.store.topic(name).filter(|l| l.id == t.id)
        };
        self.reconciled_until(|| local().is_some(), limit).await;
        local()
    }

    /// Wait, at most `limit`, until this broker's storage has taken the configs the metadata
    /// has now — topic `topic`'s, or (`None`) the dynamic broker configs. The storage follows
    /// the metadata a moment after this broker applies it (`reconcile`): a change acknowledged
    /// without this wait could still be described, and enforced, as it was before (found by a
    /// twin run: a DescribeConfigs right after the acknowledgement, through the same broker).
    pub async fn configs_taken(&self, topic: Option<&str>, limit: Duration) {
        let taken = || {
            let md = self.metadata();
            match topic {
                Some(name) => match (md.topics.get(name), self.store.topic(name)) {
                    (Some(t), Some(l)) if l.id == t.id => l.overrides == t.overrides,
                    _ => true,
                },
                None => md.dynamic_configs_of(self.node_id) == self.store.dynamic_configs(),
            }
        };
        self.reconciled_until(taken, limit).await
    }

    /// Wait, at most `limit`, until `done` holds, looking again after each reconcile pass.
    async fn reconciled_until(&self, done: impl Fn() -> bool, limit: Duration) {
        let mut reconciled = self.reconciled.subscribe();
        let _ = self
            .env
            .clock
            .timeout(limit, async {
                while !done() {
                    if reconciled.changed().await.is_err() {
                        return;
                    }
                }
            })
            .await;
    }

    /// A producer id no broker of the cluster hands out again (InitProducerId).
    pub async fn new_producer_id(
        &self,
        limit: Duration,
    ) -> Result<i64, crate::storage::catalog::TopicError> {
        let take = |ids: &mut (i64, i64)| {
            (ids.0 < ids.1).then(|| {
                ids.0 += 1;
                ids.0 - 1
            })
        };
        let lock = || self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = take(&mut lock()) {
            return Ok(id);
        }
        let (start, end) = self.producer_ids(limit).await?;
        let mut ids = lock();
        if start >= ids.1 {
            *ids = (start, end);
        }
        take(&mut ids).ok_or_else(|| {
            crate::storage::catalog::TopicError::NoController("no producer id left".into())
        })
    }

    /// The broker that leads the metadata's group (the active controller), if known here.
    pub fn leader(&self) -> Option<NodeId> {
        self.replication
            .group(METADATA_GROUP)
            .and_then(|g| g.status().leader)
    }

    /// The metadata's leader as clients are told it: `None` while it is unknown here, or known
    /// only as a broker this one has lost its link to (killed, or cut off). Named for the
    /// election timeout this broker's replica takes to notice, it had admin clients
    /// (kafka-python's) fail their calls against a dead broker; any broker takes admin
    /// requests and forwards them.
    pub fn reachable_leader(&self) -> Option<NodeId> {
        self.leader()
            .filter(|&l| l == self.node_id || self.transport.connected(l))
    }

    /// This broker is cut off from the metadata's quorum: it is linked to too few of the
    /// metadata's voters (itself counted when it is one) to make a majority. Its view of the
    /// cluster is then as old as the cut, and the leaders it knew have moved (or are moving)
    /// to the other side; a broker in a healthy election still reaches a majority. Its links
    /// tell at once (a link silent for the transport's I/O timeout is dropped), where its
    /// replica of the metadata learns it only an election timeout later: in simulation,
    /// clients waited 5.1 s for that. The active controller fences such a broker after the
    /// session timeout, as Kafka's does.
    pub fn cut_off(&self) -> bool {
        let Some(group) = self.replication.group(METADATA_GROUP) else {
            return false;
        };
        let voters = group.members();
        let cut_off = !voters.quorum_reachable(self.node_id, |v| self.transport.connected(v));
        if self.cut_off_said.swap(cut_off, Ordering::Relaxed) != cut_off {
            if cut_off {
                tracing::warn!(voters = ?voters.voters, "cut off from the cluster metadata's quorum: Metadata answers leave this broker out, so clients ask the others");
            } else {
                tracing::info!("the cluster metadata's quorum is reachable again");
            }
        }
        cut_off
    }

    /// A fresh request id (from the node's generator).
    pub fn request_id(&self) -> u64 {
        self.env.rng.next_u64()
    }

    /// Propose `record` through whichever broker leads the metadata, without waiting for it
    /// to land (the caller's loop proposes it again if it does not).
    pub(super) async fn propose_once(&self, record: &MetadataRecord) {
        let batch = record.encode(self.env.clock.wall_ms());
        let _ = self
            .replication
            .propose_anywhere(METADATA_GROUP, vec![batch])
            .await;
    }

    /// Propose `record` (made for request `request`) and wait, at most `limit`, for its outcome
    /// in this broker's replica of the metadata. Proposed again while it does not show.
    pub async fn submit(
        &self,
        record: MetadataRecord,
        request: u64,
        limit: Duration,
    ) -> Result<Outcome, SubmitError> {
        let clock = self.env.clock.clone();
        let deadline = clock.now() + limit;
        let mut changes = self.changes();
        let mut groups = self.replication.changes();
        let batch = record.encode(clock.wall_ms());
        loop {
            if let Some(o) = self.metadata().outcome(request) {
                return match o {
                    Outcome::Failed(e) => Err(SubmitError::Failed(e.clone())),
                    o => Ok(o.clone()),
                };
            }
            let now = clock.now();
            if now >= deadline {
                return Err(SubmitError::TimedOut(limit));
            }
            let proposed = match self
                .replication
                .propose_anywhere(METADATA_GROUP, vec![batch.clone()])
                .await
            {
                Ok(()) => true,
                // (Not-enough-replicas refusals are for acks=all; a forwarded proposal has none.)
                Err(
                    ReplicaError::NotLeader { .. }
                    | ReplicaError::Storage(_)
                    | ReplicaError::NotEnoughReplicas { .. }
                    | ReplicaError::NotEnoughReplicasAfterAppend { .. }
                    | ReplicaError::MembershipChange(_),
                ) => false,
                Err(ReplicaError::Unknown) | Err(ReplicaError::Stopped) => {
                    return Err(SubmitError::Stopped)
                }
            };
            let again = (deadline - now).min(RETRY_EVERY);
            let retry = clock.sleep(again);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return Err(SubmitError::Stopped);
                        }
                        if self.metadata().outcome(request).is_some() {
                            break;
                        }
                    }
                    // No leader took it: try again as soon as one is known.
                    _ = groups.changed(), if !proposed => {
                        if self.leader().is_some() {
                            break;
                        }
                    }
                    _ = &mut retry => break,
                }
            }
        }
    }

    /// Apply committed records as the metadata log's high watermark moves: from the newest
    /// snapshot of the metadata on, taking a snapshot where one is due ([`snapshot`]).
    async fn apply_loop(self: Arc<Self>) {
        let mut commits = self.store.commits();
        let io = self.store.io().clone();
        let mut applied = self.partition.log_start_offset();
        let mut snapshot_at = applied;
        let mut told_replaced = false;
        if let Some(at) = self.load_snapshot(applied).await {
            (applied, snapshot_at) = (at, at);
            told_replaced = self.tell_replaced_if(self.registered_before());
        }
        let mut observed = caught_up::Observed::default();
        loop {
            let hw = self.partition.high_watermark();
            // Records are applied up to where a snapshot is due, if one is.
            let due = self.snapshot_due(applied, snapshot_at, hw);
            let limit = due.unwrap_or(hw);
            let mut state: Option<ClusterMetadata> = None;
            while applied < limit {
                let mut data = match self.partition.read(&io, applied, 1 << 20).await {
                    Ok(d) if !d.records.is_empty() => d.records,
                    Ok(_) => break,
                    Err(crate::storage::log::ReadError::OffsetOutOfRange { log_start, .. })
                        if applied < log_start =>
                    {
                        // The log was reset to a leader's snapshot, whose state came with it.
                        if let Some(at) = self.load_snapshot(log_start).await {
                            crate::coverage::reached(
                                crate::coverage::Event::MetadataSnapshotInstalled,
                            );
                            if !told_replaced {
                                told_replaced = self.tell_replaced_if(self.registered_before());
                            }
                            (applied, snapshot_at) = (at, at);
                            state = None;
                        } else {
                            self.env.clock.sleep(Duration::from_millis(200)).await;
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, offset = applied, "cannot read the cluster metadata log; trying again");
                        self.env.clock.sleep(Duration::from_millis(200)).await;
                        break;
                    }
                };
                let cut = crate::batch::scan(&data)
                    .find(|(_, h)| h.base_offset >= limit)
                    .map(|(at, _)| at);
                if let Some(cut) = cut {
                    data.truncate(cut);
                }
                let mut end = applied;
                for (_, h) in crate::batch::scan(&data) {
                    end = h.next_offset();
                }
                if end <= applied {
                    break;
                }
                let s = state.get_or_insert_with(|| (*self.metadata()).clone());
                for (next, record) in records::decode_batches(data) {
                    if next > applied {
                        if !told_replaced {
                            told_replaced = self.tell_replaced(&record);
                        }
                        if crate::observe::ON {
                            observed.note(next, &record, s);
                        }
                        s.applying_end = next;
                        s.apply(&record);
                    }
                }
                applied = end;
            }
            if due == Some(applied) {
                let s = state.get_or_insert_with(|| (*self.metadata()).clone());
                // A snapshot that failed is left for the next boundary.
                self.take_snapshot(applied, s).await;
                snapshot_at = applied;
            }
            if let Some(s) = state {
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
                self.applied.send_replace(applied);
                self.version.send_modify(|v| *v += 1);
                crate::observe::emit(|| {
                    observed.published(self.node_id, self.incarnation, applied)
                });
            }
            if applied >= hw && commits.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether `record` shows that this broker was a member before its data directory was new
    /// (an earlier start registered it): its disk was replaced or emptied, and what its
    /// replicas had acknowledged is gone — said once, as a warning (a node that joins a
    /// cluster being formed has no such registration).
    fn tell_replaced(&self, record: &MetadataRecord) -> bool {
        let earlier = matches!(record, MetadataRecord::RegisterBroker { id, incarnation, .. }
            if *id == self.node_id && *incarnation != self.incarnation);
        self.tell_replaced_if(earlier)
    }

    /// [`Controller::tell_replaced`] for a registration found in a snapshot of the metadata
    /// rather than in a record.
    fn tell_replaced_if(&self, earlier: bool) -> bool {
        if earlier && self.store.created_here() {
            crate::coverage::reached(crate::coverage::Event::ReplacedDirectoryRecognised);
            tracing::warn!(
                node = self.node_id,
                "this node was a member of the cluster before, but its data directory is new (replaced or emptied): what its replicas acknowledged is gone; each replica votes in no election until it has caught up with its leader"
            );
        }
        earlier
    }

    /// Register this broker (at start, and again whenever the metadata has it fenced).
    async fn register_loop(self: Arc<Self>) {
        let mut changes = self.changes();
        let mut groups = self.replication.changes();
        let (host, port) = self
            .endpoints
            .first()
            .map(|e| (e.host.clone(), e.port))
            .unwrap_or_default();
        // One PLAINTEXT listener is what a record without listeners means (the format every
        // broker wrote before listeners had names, kept for it).
        let default_only = self.endpoints.len() == 1 && self.endpoints[0].name == DEFAULT_LISTENER;
        let listeners = if default_only {
            Vec::new()
        } else {
            self.endpoints.clone()
        };
        let mut turn = 0;
        loop {
            let registered = self.metadata().brokers.get(&self.node_id).is_some_and(|b| {
                b.incarnation == self.incarnation
                    && !b.fenced
                    && b.host == host
                    && b.port == port
                    && b.endpoints == self.endpoints
                    && b.rack == self.rack
                    && b.inter_broker == self.inter_broker
                    && b.features == crate::features::supported()
            });
            if !registered {
                let record = MetadataRecord::RegisterBroker {
                    id: self.node_id,
                    host: host.clone(),
                    port,
                    incarnation: self.incarnation,
                    listeners: listeners.clone(),
                    rack: self.rack.clone(),
                    inter_broker: self.inter_broker.clone(),
                    features: Some(crate::features::supported()),
                    bootstrap: Some(self.initial_features.clone()),
                };
                if self.must_join() {
                    self.join_through(&record, turn).await;
                    turn += 1;
                } else {
                    self.propose_once(&record).await;
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    r = groups.changed() => if r.is_err() { return },
                    _ = self.env.clock.sleep(RETRY_EVERY) => {}
                }
                continue;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Tell the metadata which groups this broker leads (once each serves), so that every
    /// broker — replicas or not — can name partitions' leaders in Metadata.
    ///
    /// Looks at the groups whose status changed and at those it last found stale; at every
    /// group only when the metadata changed (a record may have named another leader) — with
    /// thousands of groups, a look at all of them per status change would cost the square of
    /// the groups while they elect.
    ///
    /// A leadership proposed is not proposed again before `RETRY_EVERY` has passed: this
    /// broker applies its own record a while after the proposal returns, and every record
    /// applied meanwhile (other brokers' leaderships, while thousands of groups fail over)
    /// would otherwise send it again — one failover once wrote the same leadership 180 times.
    async fn report_leaders(self: Arc<Self>) {
        let clock = self.env.clock.clone();
        let mut changes = self.changes();
        let mut groups = self.replication.changes();
        let feed = self.replication.status_feed();
        let mut look_at_all = true;
        let mut stale_before: Vec<GroupId> = Vec::new();
        let mut proposed: HashMap<GroupId, (u64, tokio::time::Instant)> = HashMap::new();
        loop {
            let md = self.metadata();
            let views = if look_at_all {
                feed.take();
                self.replication.groups()
            } else {
                let mut ids = feed.take();
                ids.extend(stale_before.drain(..));
                ids.into_iter()
                    .filter_map(|g| self.replication.group(g))
                    .collect()
            };
            look_at_all = false;
            let stale: Vec<(GroupId, NodeId, u64)> = views
                .iter()
                .filter(|g| g.group != METADATA_GROUP)
                .filter_map(|g| {
                    let s = g.status();
                    s.serving.then_some((g.group, self.node_id, s.term))
                })
                .filter(|(group, leader, term)| {
                    md.groups
                        .get(group)
                        .and_then(|(t, i)| md.partition(t, *i))
                        .is_some_and(|p| p.leader != Some(*leader) || p.leader_term < *term)
                })
                .collect();
            stale_before = stale.iter().map(|(g, _, _)| *g).collect();
            let now = clock.now();
            proposed.retain(|_, &mut (_, at)| now.saturating_duration_since(at) < RETRY_EVERY);
            let due: Vec<(GroupId, NodeId, u64)> = stale
                .iter()
                .filter(|(group, _, term)| proposed.get(group).is_none_or(|(t, _)| t != term))
                .copied()
                .collect();
            if !stale.is_empty() {
                if !due.is_empty() {
                    proposed.extend(due.iter().map(|&(group, _, term)| (group, (term, now))));
                    self.propose_once(&MetadataRecord::Leaders { leaders: due })
                        .await;
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return } else { look_at_all = true },
                    r = groups.changed() => if r.is_err() { return },
                    _ = self.env.clock.sleep(RETRY_EVERY) => {}
                }
            } else {
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return } else { look_at_all = true },
                    r = groups.changed() => if r.is_err() { return },
                }
            }
        }
    }

    /// On the active controller: fence a registered broker that has been unreachable for
    /// longer than the session timeout (it registers again when it is back).
    async fn fence_loop(self: Arc<Self>) {
        let clock = self.env.clock.clone();
        let mut links = self.transport.link_changes();
        let mut groups = self.replication.changes();
        let mut changes = self.changes();
        let mut down_since: HashMap<NodeId, tokio::time::Instant> = HashMap::new();
        // A fence proposed, again only after `RETRY_EVERY`: the loop turns at every change of
        // a link, a group or the metadata, far more often than its record comes back applied
        // (fifteen proposals of one fence in 85 ms were seen in simulation).
        let mut proposed: HashMap<(NodeId, u64), tokio::time::Instant> = HashMap::new();
        loop {
            let now = clock.now();
            for peer in self.transport.peers() {
                if self.transport.connected(peer) {
                    down_since.remove(&peer);
                } else {
                    down_since.entry(peer).or_insert(now);
                }
            }
            let leading = self
                .replication
                .group(METADATA_GROUP)
                .is_some_and(|g| g.status().serving);
            let mut next_check: Option<tokio::time::Instant> = None;
            if leading {
                let md = self.metadata();
                let mut fence = Vec::new();
                for (&peer, &since) in &down_since {
                    let Some(b) = md.brokers.get(&peer).filter(|b| !b.fenced) else {
                        continue;
                    };
                    let due = since + self.session_timeout;
                    if now >= due {
                        let again = proposed
                            .get(&(peer, b.incarnation))
                            .is_none_or(|&at| now >= at + RETRY_EVERY);
                        if again {
                            proposed.insert((peer, b.incarnation), now);
                            fence.push(MetadataRecord::FenceBroker {
                                id: peer,
                                incarnation: b.incarnation,
                            });
                        }
                        next_check = Some(
                            next_check.map_or(now + RETRY_EVERY, |n| n.min(now + RETRY_EVERY)),
                        );
                    } else {
                        next_check = Some(next_check.map_or(due, |n| n.min(due)));
                    }
                }
                proposed.retain(|(peer, _), _| down_since.contains_key(peer));
                for record in fence {
                    tracing::warn!(broker = ?record, "fencing a broker not heard from for the session timeout");
                    self.propose_once(&record).await;
                }
            }
            let wait = next_check.map(|at| at.saturating_duration_since(clock.now()));
            tokio::select! {
                r = links.changed() => if r.is_err() { return },
                r = groups.changed() => if r.is_err() { return },
                r = changes.changed() => if r.is_err() { return },
                _ = clock.sleep(wait.unwrap_or_default()), if wait.is_some() => {}
            }
        }
    }
}
