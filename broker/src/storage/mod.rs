//! A data directory: its topic [`catalog`](crate::storage::catalog), its partition logs ([`log`]), the
//! disk operations on it with their deadlines and health ([`io`]), the group-commit
//! [`pipeline`] — the one task that appends to partition logs — and the [`admin`] lane beside
//! it — the one task that creates and removes topics, partitions and closed segments and writes
//! their metadata (retention too). [`Store`] is the directory as request handlers see it:
//! topics to look up, appends and admin commands to queue, commits to wait for.
//!
//! Architecture invariants: only the pipeline writes a partition's active segment and rolls
//! it; only the admin lane writes topic metadata and removes topics, partitions and closed
//! segments, and it removes a topic's files only after the pipeline retired its partitions;
//! the pipeline holds the directory's lock and ends after the lane.

mod admin;
mod board;
pub mod catalog;
mod cleaner;
mod commands;
pub mod format;
pub mod gate;
pub mod io;
pub mod log;
mod node_meta;
mod owner;
mod pipeline;
pub mod producer_ids;
mod raft_cuts;
pub mod raft_states;
mod raft_writes;
mod retention;
mod round;
mod settle;
pub mod small_file;
mod zeros;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_backend::Env;
use tokio::sync::{mpsc, oneshot, watch};

pub use io::{Health, Io, StorageError};

use crate::batch::BatchHeader;
use crate::broker_configs::DynamicConfigs;
use crate::config::Config;
use crate::memory::Reservation;
use crate::metrics::Metrics;
use crate::security::SecurityMetadata;
use crate::topic_config::{self, Overrides};
use admin::{AdminCommand, AdminLane};
use catalog::{check_topic_name, Catalog, Topic, TopicError};
pub use commands::{
    Append, AppendError, Appended, RaftEntry, RaftReset, RaftWrite, RaftWritten, ResetPrefix,
};
pub(crate) use commands::{Command, Reply, Waiter};
use log::{LogConfig, Partition};
use pipeline::Pipeline;
pub use round::{ROUND_APPENDS_MAX, ROUND_PARTITIONS_MAX};

/// Queue a command on the pipeline, waiting for a slot (counted in the queue depth gauge).
pub(super) async fn queue(
    shared: &Shared,
    tx: &mpsc::Sender<Command>,
    cmd: Command,
) -> Result<(), StorageError> {
    crate::coverage::reached_when(crate::coverage::Event::AppendQueueFull, || {
        tx.capacity() == 0
    });
    // Reserve first: a producer that gives up while waiting leaves the gauge exact.
    let permit = tx
        .reserve()
        .await
        .map_err(|_| StorageError::DirFailed("the commit pipeline has stopped".into()))?;
    let depth = shared.metrics.append_queue_depth.inc_by(1);
    Metrics::peak(&shared.metrics.append_queue_depth_peak, depth + 1);
    permit.send(cmd);
    Ok(())
}

/// The longest anything waits for the admin lane's answer (a request may ask for less).
const ADMIN_ANSWER_LIMIT: Duration = Duration::from_secs(60);

/// What handlers and the pipeline share.
pub(crate) struct Shared {
    pub(crate) catalog: Catalog,
    pub(crate) io: Io,
    pub(crate) data_dir: PathBuf,
    pub(crate) commits: watch::Sender<u64>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) env: Env,
    /// Producers idle this long are forgotten (`producer_id_expiration_ms`).
    pub(crate) producer_expiration_ms: i64,
    /// The broker's static topic settings (config file, environment, flags).
    pub(crate) static_defaults: LogConfig,
    /// The dynamic broker configs and the topic defaults they make over the static ones (what
    /// every topic's overrides resolve over). Changed only by the admin lane, together.
    pub(crate) dynamic: crate::sync::RwLock<(DynamicConfigs, LogConfig)>,
    /// A single node's security metadata (a cluster's is in its metadata log). Changed only
    /// by the admin lane, once durable.
    pub(crate) security: crate::sync::RwLock<Arc<SecurityMetadata>>,
    /// A single node's client-metrics subscriptions by name (a cluster's are in its metadata
    /// log). Changed only by the admin lane, once durable.
    pub(crate) client_metrics:
        crate::sync::RwLock<Arc<std::collections::BTreeMap<String, Overrides>>>,
    /// A single node's client quotas (a cluster's are in its metadata log). Changed only by
    /// the admin lane, once durable.
    pub(crate) client_quotas: crate::sync::RwLock<Arc<crate::quota::ClientQuotas>>,
    /// A single node's finalized feature levels (a cluster's are in its metadata log).
    /// Changed only by the admin lane, once durable.
    pub(crate) features: crate::sync::RwLock<Arc<crate::features::Finalized>>,
    /// Whether this directory's partitions are replicated (a cluster node): their logs are
    /// Raft logs, written through [`Store::raft_write`] only.
    pub(crate) replicated: bool,
    /// The directory was new at this start (no owner record): whatever this node held in it
    /// before — if it ever ran — is gone.
    created_here: bool,
    /// Lines about running out of open files, rate-limited (every open of a round fails then).
    out_of_files: crate::throttle::LogThrottle,
}

impl Shared {
    /// Declare the directory failed if `err` is the disk's (an operation failed or passed its
    /// deadline); it heals as after a failed append.
    ///
    /// Running out of open files is the process's limit, not the disk's: the operation fails
    /// (before it did anything: only opening a file or directory takes one) and the directory
    /// keeps serving what it has open.
    pub(crate) fn fail_on(&self, err: &StorageError) {
        let (op, path) = match err {
            StorageError::Disk(d) if is_out_of_files(d) => {
                self.metrics.open_files_exhausted.inc();
                if let Some(suppressed) = self.out_of_files.admit(self.env.clock.now()) {
                    tracing::error!(error = %d, suppressed, "out of open files: the operation failed, the directory goes on (raise the open-file limit: every segment of every partition holds a file)");
                }
                return;
            }
            StorageError::Disk(d) => (d.op, d.path.clone()),
            StorageError::Stalled { op, path, .. } => (*op, path.clone()),
            _ => return,
        };
        self.io
            .health
            .fail(err.to_string(), Some(op), Some(path), self.env.clock.now());
    }

    /// The defaults every topic's overrides resolve over now.
    pub(crate) fn defaults(&self) -> LogConfig {
        self.dynamic.read().expect("not poisoned").1
    }
}

/// Whether a disk operation failed for want of file descriptors (the process's or the
/// system's).
fn is_out_of_files(d: &io_backend::DiskError) -> bool {
    matches!(d.source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The data directory as request handlers see it.
pub struct Store {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    admin: mpsc::Sender<AdminCommand>,
    /// Closed when the pipeline has ended (and released the directory's lock).
    pipeline_alive: watch::Receiver<()>,
    /// The producer ids this store may hand out without asking the admin lane: `[next, end)`.
    producer_ids: crate::sync::Mutex<(i64, i64)>,
    /// Dropped with the store: the log cleaner then ends.
    _open: watch::Sender<()>,
}

impl Store {
    /// Open the data directory (recovering every partition) and start its commit pipeline.
    pub async fn open(
        env: Env,
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Store>, StorageError> {
        let io = Io {
            disk: env.disk.clone(),
            clock: env.clock.clone(),
            deadline: config.io_deadline(),
            health: Health::new(metrics.clone()),
            metrics: metrics.clone(),
            gate: Arc::new(gate::Gate::new(config.io_deadline())),
            format: Arc::new(format::UNMARKED.into()),
        };
        let data_dir = config.data_dir.clone();
        // Before anything is written: a directory of a later version is not this broker's.
        let marker = format::check(&io, &data_dir).await?;
        // A directory's entry is durable only once its parent is synced (POSIX): a data
        // directory made here, or its metadata directory, would otherwise vanish in a crash
        // with everything synced inside it.
        let created = !io.exists(&data_dir).await?;
        let meta_created = created || !io.exists(&data_dir.join(catalog::META_DIR)).await?;
        io.create_dir_all(&data_dir.join(catalog::META_DIR)).await?;
        if meta_created {
            io.sync_dir(&data_dir).await?;
        }
        if created {
            if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                io.sync_dir(parent).await?;
            }
        }
        // Before anything is read or written: one broker per directory.
        let holder = format!(
            "broker node {} listening on {}",
            config.node_id, config.listen
        );
        let dir_lock = io.lock_dir(&data_dir, &holder).await?;
        let created_here = owner::check_ownership(&io, &data_dir, config).await?;
        // A new single node starts at its initial levels (the newest unless configured).
        let initial = (created_here && !config.clustered()).then(|| config.initial_features());
        let initial_format = initial.as_ref().map(|levels| {
            let level = levels.get(crate::features::STILLWATER_VERSION).copied();
            level.map_or(format::READS, |l| {
                u16::try_from(l).unwrap_or(format::UNMARKED)
            })
        });
        let format = format::settle(&io, &data_dir, marker, initial_format).await?;
        let static_defaults = config.topic_defaults();
        let node_meta::NodeMeta {
            dynamic,
            defaults,
            security,
            client_metrics,
            client_quotas,
            features,
        } = node_meta::read(&io, &data_dir, static_defaults, format).await?;
        let features = match initial {
            Some(levels) => node_meta::start_features(&io, &data_dir, features, &levels).await?,
            None => features,
        };
        let replicated = config.clustered();
        let recovered = if replicated {
            raft_states::read(&io, &data_dir).await?
        } else {
            Default::default()
        };
        let topics = catalog::load(&io, &data_dir, defaults, replicated, &recovered).await?;
        let raft_states = if replicated {
            let partitions = topics.values().flat_map(|t| t.partitions.iter());
            let pieces = recovered.pieces;
            Some(raft_states::RaftStates::open(&io, &data_dir, partitions, pieces).await?)
        } else {
            None
        };
        let producer_ids_allocated = producer_ids::read_allocated(&io, &data_dir).await?;
        let (tx, rx) = mpsc::channel(config.append_queue_capacity);
        metrics
            .append_queue_capacity
            .store(config.append_queue_capacity as i64, Ordering::Relaxed);
        metrics
            .round_carried_max
            .store(round::ROUND_APPENDS_MAX as i64, Ordering::Relaxed);
        let (commits, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            catalog: Catalog::new(topics),
            io,
            data_dir,
            commits,
            metrics,
            env,
            producer_expiration_ms: config.producer_id_expiration_ms,
            static_defaults,
            dynamic: crate::sync::RwLock::new("storage.dynamic_configs", (dynamic, defaults)),
            security: crate::sync::RwLock::new("storage.security", Arc::new(security)),
            client_metrics: crate::sync::RwLock::new(
                "storage.client_metrics",
                Arc::new(client_metrics),
            ),
            client_quotas: crate::sync::RwLock::new(
                "storage.client_quotas",
                Arc::new(client_quotas),
            ),
            features: crate::sync::RwLock::new("storage.features", Arc::new(features)),
            replicated,
            created_here,
            out_of_files: Default::default(),
        });
        let (heal_tx, heal_rx) = mpsc::channel(1);
        let (alive, alive_rx) = watch::channel(());
        let pipeline = Pipeline {
            shared: shared.clone(),
            rx,
            heal_tx,
            heal_rx,
            healing: false,
            _dir_lock: dir_lock,
            _alive: alive,
            sync_failed: false,
            carried: Default::default(),
            pulled: 0,
            raft_states,
        };
        tokio::spawn(pipeline.run());
        let (admin, admin_rx) = mpsc::channel(admin::ADMIN_QUEUE_CAPACITY);
        let lane = AdminLane {
            shared: shared.clone(),
            rx: admin_rx,
            pipeline: tx.clone(),
            producer_ids_allocated,
        };
        tokio::spawn(lane.run());
        let (open, open_rx) = watch::channel(());
        if let Some(settings) = cleaner::CleanerSettings::of(config) {
            let cleaner = cleaner::Cleaner::new(shared.clone(), settings, open_rx, tx.clone());
            tokio::spawn(cleaner.run());
        }
        let store = Arc::new(Store {
            shared,
            tx,
            admin,
            pipeline_alive: alive_rx,
            producer_ids: crate::sync::Mutex::new("storage.producer_ids", (0, 0)),
            _open: open,
        });
        if config.retention_check_interval_ms > 0 {
            tokio::spawn(retention_ticker(
                Arc::downgrade(&store),
                Duration::from_millis(config.retention_check_interval_ms),
            ));
        }
        Ok(store)
    }

    pub fn io(&self) -> &Io {
        &self.shared.io
    }

    /// Whether the data directory was new when this store opened it (a first start, or a
    /// node whose directory was lost or emptied).
    pub fn created_here(&self) -> bool {
        self.shared.created_here
    }

    /// Resolves once the commit pipeline has ended — after every handle of the store is gone
    /// and the last round finished — and the data directory's lock is released, so the
    /// directory may be opened again (a restart inside one process, as tests do).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut alive = self.pipeline_alive.clone();
        async move { while alive.changed().await.is_ok() {} }
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.shared.catalog.get(name)
    }

    /// The topic whose id is `id`.
    pub fn topic_by_id(&self, id: u128) -> Option<Arc<Topic>> {
        self.shared.catalog.get_by_id(id)
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.shared.catalog.all()
    }

    /// Wakes whenever a commit round made new data visible (for Fetch long-polls).
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.shared.commits.subscribe()
    }

    /// Queue validated batches for a partition. With `wait`, the returned receiver answers once
    /// they are durable (or failed); the pipeline answers every waiter within the I/O deadline.
    /// `memory` is the budget the payload's bytes hold, given back when the pipeline is done
    /// with them (an acks=0 producer gets no answer to wait for, so the reply cannot hold it).
    pub async fn append(
        &self,
        partition: Arc<Partition>,
        payload: Bytes,
        headers: Vec<BatchHeader>,
        wait: bool,
        memory: Option<Arc<Reservation>>,
    ) -> Result<Option<oneshot::Receiver<Result<Appended, AppendError>>>, StorageError> {
        self.append_guarded(partition, payload, headers, wait, memory, None)
            .await
    }

    /// [`Store::append`] of a transactional producer's batches carrying the token of the
    /// coordinator's confirmation (`PartitionState::txn_guard`): without the token the
    /// partition holds, a batch that would open the producer's transaction is refused
    /// (INVALID_TXN_STATE).
    pub async fn append_guarded(
        &self,
        partition: Arc<Partition>,
        payload: Bytes,
        headers: Vec<BatchHeader>,
        wait: bool,
        memory: Option<Arc<Reservation>>,
        txn_guard: Option<u64>,
    ) -> Result<Option<oneshot::Receiver<Result<Appended, AppendError>>>, StorageError> {
        self.shared.io.health.check()?;
        let (reply, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let append = Command::Append(Append {
            partition,
            payload,
            headers,
            reply,
            memory,
            txn_guard,
        });
        queue(&self.shared, &self.tx, append).await?;
        Ok(rx)
    }

    /// Queue a Raft write for a replicated partition of this directory; the receiver answers
    /// once it is durable (or failed), within the I/O deadline. Waits for a queue slot as an
    /// append does (the caller bounds that wait).
    pub async fn raft_write(
        &self,
        write: RaftWrite,
    ) -> Result<oneshot::Receiver<Result<RaftWritten, AppendError>>, StorageError> {
        self.shared.io.health.check()?;
        let (tx, rx) = oneshot::channel();
        queue(&self.shared, &self.tx, Command::Raft(Box::new(write), tx)).await?;
        Ok(rx)
    }

    /// Empty a replicated partition's log (this broker's replica of it was moved away; its
    /// Raft group is gone from this node first): everything it held is removed — but its
    /// term and vote — as a reset to before the first entry through the pipeline, its only
    /// writer; a crash half-way is finished at the next start.
    pub async fn clear_replica(&self, partition: Arc<Partition>) -> Result<(), AppendError> {
        // The term and vote stay: a replica added again must not vote twice in a term.
        let kept = partition
            .state()
            .replica
            .as_ref()
            .map(|r| r.hard_state)
            .unwrap_or_default();
        let write = RaftWrite {
            partition,
            reset: Some(RaftReset {
                index: 0,
                term: 0,
                offset: 0,
                gaps_before: 0,
                prefix: None,
            }),
            truncate_from: None,
            producers_at_cut: None,
            entries: Vec::new(),
            hard_state: Some(log::replica::HardStateRecord { commit: 0, ..kept }),
            conf: None,
        };
        let rx = self.raft_write(write).await?;
        rx.await
            .map_err(|_| {
                AppendError::Storage(StorageError::DirFailed(
                    "the commit pipeline has stopped".into(),
                ))
            })?
            .map(|_| ())
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Whether this directory's partitions are replicated.
    pub fn replicated(&self) -> bool {
        self.shared.replicated
    }

    /// Wake the long polls: a replicated partition's high watermark moved.
    pub fn published(&self) {
        self.shared.commits.send_modify(|g| *g += 1);
    }

    /// Whether a topic `name` with `partitions` partitions could be created now (CreateTopics'
    /// validate-only answers from this; creation checks it again in the pipeline).
    pub fn check_new_topic(&self, name: &str, partitions: i32) -> Result<(), TopicError> {
        check_topic_name(name).map_err(TopicError::InvalidName)?;
        if !(1..=catalog::PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "{partitions} partitions: a topic has from 1 to {}",
                catalog::PARTITIONS_MAX
            )));
        }
        self.shared.catalog.check_new(name)
    }

    /// The settings a topic with these overrides would have.
    pub fn resolve(&self, overrides: &Overrides) -> Result<LogConfig, TopicError> {
        topic_config::resolve(self.shared.defaults(), overrides)
            .map_err(|e| TopicError::InvalidConfig(e.0))
    }

    /// The defaults every topic's overrides resolve over now (static settings under the
    /// dynamic broker configs).
    pub fn defaults(&self) -> LogConfig {
        self.shared.defaults()
    }

    /// Why the data directory is failed, if it is (produce refused until it heals).
    pub fn failure(&self) -> Option<io::Failure> {
        self.shared.io.health.failure()
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: Overrides,
    ) -> Result<Arc<Topic>, TopicError> {
        self.check_new_topic(name, partitions)?;
        self.resolve(&overrides)?;
        self.ask(|reply| AdminCommand::CreateTopic {
            name: name.to_string(),
            partitions,
            overrides,
            id: None,
            reply,
        })
        .await
    }

    /// Create this node's copy of a topic the cluster metadata holds (its id is the cluster's).
    pub async fn create_topic_with_id(
        &self,
        name: &str,
        partitions: i32,
        overrides: Overrides,
        id: u128,
    ) -> Result<Arc<Topic>, TopicError> {
        self.ask(|reply| AdminCommand::CreateTopic {
            name: name.to_string(),
            partitions,
            overrides,
            id: Some(id),
            reply,
        })
        .await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        if self.topic(name).is_none() {
            return Err(TopicError::Unknown);
        }
        self.ask(|reply| AdminCommand::DeleteTopic {
            name: name.to_string(),
            reply,
        })
        .await
    }

    /// Replace a topic's configs with `overrides` (durable before it answers).
    pub async fn alter_topic_config(
        &self,
        name: &str,
        overrides: Overrides,
    ) -> Result<Arc<Topic>, TopicError> {
        self.topic(name).ok_or(TopicError::Unknown)?;
        self.resolve(&overrides)?;
        self.ask(|reply| AdminCommand::AlterTopicConfig {
            name: name.to_string(),
            overrides,
            reply,
        })
        .await
    }

    /// Whether topic `name` could grow to `count` partitions now.
    pub fn check_new_partitions(&self, name: &str, count: i32) -> Result<Arc<Topic>, TopicError> {
        let topic = self.topic(name).ok_or(TopicError::Unknown)?;
        catalog::check_partition_growth(&topic, count)?;
        Ok(topic)
    }

    /// Grow topic `name` to `count` partitions (new ones empty; the old ones untouched).
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
    ) -> Result<Arc<Topic>, TopicError> {
        self.check_new_partitions(name, count)?;
        self.ask(|reply| AdminCommand::CreatePartitions {
            name: name.to_string(),
            count,
            reply,
        })
        .await
    }

    /// Delete the records of `partition` below `offset` (-1: all of them): its log start moves
    /// there, durably, and whole segments below it are removed. Answers the new log start.
    pub async fn delete_records(
        &self,
        partition: Arc<Partition>,
        offset: i64,
    ) -> Result<i64, TopicError> {
        self.shared.io.health.check()?;
        self.ask(|reply| AdminCommand::DeleteRecords {
            partition,
            offset,
            reply,
        })
        .await
    }

    /// A producer id never handed out before by this data directory (InitProducerId).
    pub async fn new_producer_id(&self) -> Result<i64, StorageError> {
        let take = |ids: &mut (i64, i64)| {
            (ids.0 < ids.1).then(|| {
                ids.0 += 1;
                ids.0 - 1
            })
        };
        if let Some(id) = take(&mut self.lock_producer_ids()) {
            return Ok(id);
        }
        let (reply, rx) = oneshot::channel();
        self.admin
            .send(AdminCommand::ReserveProducerIds { reply })
            .await
            .map_err(|_| StorageError::DirFailed("the admin lane has stopped".into()))?;
        let (start, end) = rx
            .await
            .map_err(|_| StorageError::DirFailed("the admin lane has stopped".into()))??;
        let mut ids = self.lock_producer_ids();
        if start >= ids.1 {
            *ids = (start, end);
        }
        take(&mut ids).ok_or_else(|| StorageError::DirFailed("no producer id left".into()))
    }

    #[track_caller]
    fn lock_producer_ids(&self) -> crate::sync::MutexGuard<'_, (i64, i64)> {
        self.producer_ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send an admin command to the admin lane and wait for its answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(Reply<Result<T, TopicError>>) -> AdminCommand,
    ) -> Result<T, TopicError> {
        let stopped =
            || TopicError::Storage(StorageError::DirFailed("the admin lane has stopped".into()));
        let (reply, rx) = oneshot::channel();
        let asked = async {
            self.admin.send(make(reply)).await.map_err(|_| stopped())?;
            rx.await.map_err(|_| stopped())?
        };
        // Every wait has a bound, also with disk deadlines off: past it the command, if it
        // was queued, still runs; only this caller stops waiting for it.
        self.shared
            .env
            .clock
            .timeout(ADMIN_ANSWER_LIMIT, asked)
            .await
            .unwrap_or(Err(TopicError::TimedOut(ADMIN_ANSWER_LIMIT)))
    }

    /// Ask the admin lane to apply retention now (normally done by a timer).
    pub fn check_retention(&self) {
        #[expect(
            clippy::disallowed_methods,
            reason = "a retention pass skipped while the admin queue is full is made at the next tick"
        )]
        let _ = self.admin.try_send(AdminCommand::Retention);
    }
}

async fn retention_ticker(store: std::sync::Weak<Store>, every: Duration) {
    let clock = match store.upgrade() {
        Some(s) => s.shared.env.clock.clone(),
        None => return,
    };
    loop {
        clock.sleep(every).await;
        match store.upgrade() {
            Some(s) => s.check_retention(),
            None => return,
        }
    }
}
