//! The group-commit pipeline and the store it serves: one per data directory.
//!
//! One task owns every file of the directory. Request handlers queue appends on a bounded
//! channel (backpressure means "queue full", never "lock busy"). The task takes everything
//! queued, writes it (one write per partition, all partitions in flight together), syncs every
//! file it wrote (the syncs in flight together), makes the data visible, then answers the
//! waiters. While it waits for a sync, the next batch gathers in the queue; when nothing is
//! queued it sleeps, so an idle broker does no disk work and a lone write is committed at once.
//!
//! Every disk operation has a deadline ([`Io::run`]). When one passes, the directory is declared
//! failed: the round's waiters and every later append get a retriable error at once, and the
//! directory heals — active segments cut back to what was committed, then synced — after the
//! stalled operations end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use io_backend::{Env, OpenMode};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::batch::{self, BatchHeader};
use crate::config::Config;
use crate::io::{Health, Io, StorageError};
use crate::log::{self, index::IndexEntry, LogConfig, Partition, Segment};
use crate::memory::Reservation;
use crate::metrics::Metrics;
use crate::records::TimestampType;

/// Appends taken into one commit round at most (the rest wait for the next round).
pub const ROUND_APPENDS_MAX: usize = 4096;
const ROUND_BYTES_MAX: usize = 32 << 20;
/// Records taken into one round at most: what one round appends to a partition must fit the
/// relative offsets of one segment (a fresh one, if the active segment has no room left).
const ROUND_RECORDS_MAX: i64 = log::RELATIVE_OFFSET_MAX / 2;
const META_DIR: &str = ".meta";

/// A topic and its partitions.
pub struct Topic {
    pub name: String,
    pub id: u128,
    pub config: LogConfig,
    pub partitions: Vec<Arc<Partition>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    name: String,
    id: String,
    partitions: i32,
    config: LogConfig,
}

/// A committed append.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// The time the batches were stamped with under LogAppendTime; -1 otherwise.
    pub log_append_time_ms: i64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TopicError {
    #[error("topic already exists")]
    Exists,
    #[error("unknown topic")]
    Unknown,
    #[error("invalid topic name: {0}")]
    InvalidName(String),
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

type Reply<T> = oneshot::Sender<T>;
/// Where an append's outcome goes; `None` for acks=0.
type Waiter = Option<Reply<Result<Appended, StorageError>>>;

pub struct Append {
    partition: Arc<Partition>,
    payload: Bytes,
    headers: Vec<BatchHeader>,
    /// `None` for acks=0: nobody waits.
    reply: Waiter,
    /// The memory budget the payload holds, given back when the append is dropped.
    _memory: Option<Arc<Reservation>>,
}

enum Command {
    Append(Append),
    CreateTopic {
        name: String,
        partitions: i32,
        config: LogConfig,
        reply: Reply<Result<Arc<Topic>, TopicError>>,
    },
    DeleteTopic {
        name: String,
        reply: Reply<Result<(), TopicError>>,
    },
    Retention,
}

/// What handlers and the pipeline share.
struct Shared {
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    io: Io,
    data_dir: PathBuf,
    commits: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    env: Env,
}

/// The data directory as request handlers see it.
pub struct Store {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    pub defaults: LogConfig,
    /// Closed when the pipeline has ended (and released the directory's lock).
    pipeline_alive: watch::Receiver<()>,
}

/// Kafka's rule for topic names.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "the name is {} characters long; at most 249 are allowed",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not allowed"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the character {c:?} is not allowed (only ASCII letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
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
        };
        let data_dir = config.data_dir.clone();
        let meta_dir = data_dir.join(META_DIR);
        io.create_dir_all(&meta_dir).await?;
        // Before anything is read or written: one broker per directory.
        let holder = format!(
            "broker node {} listening on {}",
            config.node_id, config.listen
        );
        let dir_lock = io.lock_dir(&data_dir, &holder).await?;
        let names = io.list(&meta_dir).await?;
        let mut topics = HashMap::new();
        for name in names {
            let path = meta_dir.join(&name);
            if name.ends_with(".tmp") {
                // A topic creation that did not finish: its meta file never became real.
                io.remove_file(&path).await?;
                continue;
            }
            if !name.ends_with(".topic") {
                continue;
            }
            let meta = read_meta(&io, &path).await?;
            let mut partitions = Vec::new();
            for p in 0..meta.partitions {
                let dir = data_dir.join(format!("{}-{p}", meta.name));
                let part = log::recover(&io, &dir, &meta.name, p, meta.config).await?;
                partitions.push(Arc::new(part));
            }
            let id = u128::from_str_radix(&meta.id, 16).map_err(|_| StorageError::Corrupt {
                path: path.clone(),
                reason: format!("topic id {:?} is not 32 hex digits", meta.id),
            })?;
            tracing::info!(topic = %meta.name, partitions = meta.partitions, "recovered topic");
            topics.insert(
                meta.name.clone(),
                Arc::new(Topic {
                    name: meta.name,
                    id,
                    config: meta.config,
                    partitions,
                }),
            );
        }
        remove_stray_partitions(&io, &data_dir, &topics).await?;
        let (tx, rx) = mpsc::channel(config.append_queue_capacity);
        let (commits, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            topics: RwLock::new(topics),
            io,
            data_dir,
            commits,
            metrics,
            env,
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
        };
        tokio::spawn(pipeline.run());
        let store = Arc::new(Store {
            shared,
            tx,
            defaults: config.topic_defaults(),
            pipeline_alive: alive_rx,
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

    /// Resolves once the commit pipeline has ended — after every handle of the store is gone
    /// and the last round finished — and the data directory's lock is released, so the
    /// directory may be opened again (a restart inside one process, as tests do).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut alive = self.pipeline_alive.clone();
        async move { while alive.changed().await.is_ok() {} }
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.shared
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self
            .shared
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Wakes whenever a commit round made new data visible (for Fetch long-polls).
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.shared.commits.subscribe()
    }

    async fn send(&self, cmd: Command) -> Result<(), StorageError> {
        // Reserve first: a producer that gives up while waiting leaves the gauge exact.
        let permit = self
            .tx
            .reserve()
            .await
            .map_err(|_| StorageError::DirFailed("the commit pipeline has stopped".into()))?;
        self.shared
            .metrics
            .append_queue_depth
            .fetch_add(1, Ordering::Relaxed);
        permit.send(cmd);
        Ok(())
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
    ) -> Result<Option<oneshot::Receiver<Result<Appended, StorageError>>>, StorageError> {
        self.shared.io.health.check()?;
        let (reply, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.send(Command::Append(Append {
            partition,
            payload,
            headers,
            reply,
            _memory: memory,
        }))
        .await?;
        Ok(rx)
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        config: LogConfig,
    ) -> Result<Arc<Topic>, TopicError> {
        check_topic_name(name).map_err(TopicError::InvalidName)?;
        if !(1..=10_000).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(partitions));
        }
        if self.topic(name).is_some() {
            return Err(TopicError::Exists);
        }
        self.ask(|reply| Command::CreateTopic {
            name: name.to_string(),
            partitions,
            config,
            reply,
        })
        .await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        if self.topic(name).is_none() {
            return Err(TopicError::Unknown);
        }
        self.ask(|reply| Command::DeleteTopic {
            name: name.to_string(),
            reply,
        })
        .await
    }

    /// Send an admin command to the pipeline and wait for its answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(Reply<Result<T, TopicError>>) -> Command,
    ) -> Result<T, TopicError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| {
            TopicError::Storage(StorageError::DirFailed(
                "the commit pipeline has stopped".into(),
            ))
        })?
    }

    /// Ask the pipeline to apply retention now (normally done by a timer).
    pub fn check_retention(&self) {
        self.shared
            .metrics
            .append_queue_depth
            .fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(Command::Retention).is_err() {
            self.shared
                .metrics
                .append_queue_depth
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Remove the partition directories no topic owns: left by a CreateTopics that failed or
/// crashed before its metadata file was written, or a DeleteTopics that crashed after removing
/// it. Left alone they would be taken over by the next topic of that name.
async fn remove_stray_partitions(
    io: &Io,
    data_dir: &Path,
    topics: &HashMap<String, Arc<Topic>>,
) -> Result<(), StorageError> {
    let mut removed = false;
    for name in io.list(data_dir).await? {
        let Some((topic, index)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        if check_topic_name(topic).is_err() || name.starts_with('.') {
            continue;
        }
        if topics
            .get(topic)
            .is_some_and(|t| index < t.partitions.len())
        {
            continue;
        }
        tracing::warn!(dir = %data_dir.join(&name).display(), "removing a partition directory that no topic owns (left by an interrupted topic creation or deletion)");
        io.remove_dir_all(&data_dir.join(&name)).await?;
        removed = true;
    }
    if removed {
        io.sync_dir(data_dir).await?;
    }
    Ok(())
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

/// A topic's metadata file, checked against its CRC; read again before it is called corrupt (a
/// misread must not stop the node from starting).
async fn read_meta(io: &Io, path: &Path) -> Result<TopicMeta, StorageError> {
    let mut attempt = 1;
    loop {
        match read_meta_once(io, path).await {
            Err(StorageError::Corrupt { reason, .. }) if attempt < log::READ_ATTEMPTS => {
                tracing::warn!(file = %path.display(), %reason, "topic metadata failed its checks; reading again");
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn read_meta_once(io: &Io, path: &Path) -> Result<TopicMeta, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let data = log::read_whole(io, path)
        .await?
        .ok_or_else(|| corrupt("the file is gone".into()))?;
    let text = std::str::from_utf8(&data).map_err(|e| corrupt(e.to_string()))?;
    let (body, crc_line) = text
        .trim_end()
        .rsplit_once('\n')
        .ok_or_else(|| corrupt("no checksum line".into()))?;
    let stored = crc_line
        .strip_prefix("crc32=")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| corrupt(format!("bad checksum line {crc_line:?}")))?;
    let computed = crc32fast::hash(body.as_bytes());
    if stored != computed {
        return Err(corrupt(format!(
            "checksum {stored:08x} does not match {computed:08x}"
        )));
    }
    serde_json::from_str(body).map_err(|e| corrupt(e.to_string()))
}

/// One partition's share of a commit round.
struct Planned {
    partition: Arc<Partition>,
    file: Arc<dyn io_backend::DiskFile>,
    segment_base: i64,
    position: u64,
    data: Bytes,
    /// Zeros to write ahead of the data `(offset, len)`, and the file's written length after.
    zero_fill: Option<(u64, usize)>,
    allocated: u64,
    next_offset: i64,
    entries: Vec<IndexEntry>,
    max_timestamp: i64,
    records: u64,
    waiters: Vec<(Waiter, i64)>,
    /// What the batches were stamped with under LogAppendTime; -1 otherwise.
    log_append_time_ms: i64,
}

struct Pipeline {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Command>,
    heal_tx: mpsc::Sender<()>,
    heal_rx: mpsc::Receiver<()>,
    healing: bool,
    /// The data directory's lock: held by the log's only writer for as long as it runs.
    _dir_lock: io_backend::DirLock,
    /// Dropped with the pipeline, which tells [`Store::closed`].
    _alive: watch::Sender<()>,
}

impl Pipeline {
    fn io(&self) -> &Io {
        &self.shared.io
    }

    async fn run(mut self) {
        loop {
            let first = tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => return,
                },
                _ = self.shared.io.health.failed_signal.notified(), if !self.healing => {
                    self.start_healing();
                    continue;
                }
                Some(()) = self.heal_rx.recv() => {
                    self.heal().await;
                    continue;
                }
            };
            let mut taken = vec![first];
            let mut bytes = 0usize;
            let mut records = 0i64;
            while taken.len() < ROUND_APPENDS_MAX
                && bytes < ROUND_BYTES_MAX
                && records < ROUND_RECORDS_MAX
            {
                match self.rx.try_recv() {
                    Ok(cmd) => {
                        if let Command::Append(a) = &cmd {
                            bytes += a.payload.len();
                            records += batch::record_count(&a.headers);
                        }
                        taken.push(cmd)
                    }
                    Err(_) => break,
                }
            }
            self.shared
                .metrics
                .append_queue_depth
                .fetch_sub(taken.len() as i64, Ordering::Relaxed);
            let mut appends = Vec::new();
            for cmd in taken {
                match cmd {
                    Command::Append(a) => appends.push(a),
                    admin => {
                        // Keep order: appends queued before an admin command commit first.
                        self.commit(std::mem::take(&mut appends)).await;
                        self.admin(admin).await;
                    }
                }
            }
            self.commit(appends).await;
        }
    }

    /// Wait (off the pipeline) for stalled operations to end, then heal.
    fn start_healing(&mut self) {
        self.healing = true;
        let shared = self.shared.clone();
        let heal_tx = self.heal_tx.clone();
        tokio::spawn(async move {
            shared.io.health.stalled_operations_ended().await;
            let _ = heal_tx.send(()).await;
        });
    }

    /// Cut every active segment back to its committed size and sync it; then accept writes.
    async fn heal(&mut self) {
        let topics: Vec<Arc<Topic>> = self
            .shared
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut result = Ok(());
        'all: for t in &topics {
            for p in &t.partitions {
                let (file, size) = {
                    let st = p.state();
                    (st.active().file.clone(), st.active().size)
                };
                let synced = match self.io().truncate(&file, size).await {
                    Ok(()) => self.io().sync_data(&file).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = synced {
                    result = Err(e);
                    break 'all;
                }
                let mut st = p.state_mut();
                let seg = st.active_mut();
                seg.allocated = seg.size;
            }
        }
        match result {
            Ok(()) => {
                self.healing = false;
                self.shared.io.health.heal();
            }
            Err(e) => {
                tracing::warn!(error = %e, "data directory could not heal yet; retrying");
                let heal_tx = self.heal_tx.clone();
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    shared.io.health.stalled_operations_ended().await;
                    shared.env.clock.sleep(Duration::from_secs(1)).await;
                    let _ = heal_tx.send(()).await;
                });
            }
        }
    }

    fn fail(&self, err: &StorageError) {
        let (op, path) = match err {
            StorageError::Disk(d) => (Some(d.op), Some(d.path.clone())),
            StorageError::Stalled { op, path, .. } => (Some(*op), Some(path.clone())),
            _ => (None, None),
        };
        self.shared
            .io
            .health
            .fail(err.to_string(), op, path, self.shared.env.clock.now());
    }

    async fn commit(&mut self, appends: Vec<Append>) {
        if appends.is_empty() {
            return;
        }
        if let Err(e) = self.shared.io.health.check() {
            answer_all(appends.into_iter().map(|a| a.reply), &e);
            return;
        }
        // Group by partition, keeping each partition's arrival order.
        let mut order: Vec<Arc<Partition>> = Vec::new();
        let mut groups: HashMap<usize, Vec<Append>> = HashMap::new();
        for a in appends {
            let key = Arc::as_ptr(&a.partition) as usize;
            let g = groups.entry(key).or_default();
            if g.is_empty() {
                order.push(a.partition.clone());
            }
            g.push(a);
        }
        let mut plans = Vec::with_capacity(order.len());
        for partition in order {
            let group = groups
                .remove(&(Arc::as_ptr(&partition) as usize))
                .unwrap_or_default();
            match self.plan(&partition, group).await {
                Ok(p) => plans.push(p),
                // Only this partition's appends fail; the directory is fine.
                Err((e @ StorageError::PartitionGone { .. }, waiters)) => {
                    answer_all(waiters, &e);
                }
                Err((e, waiters)) => {
                    self.fail(&e);
                    answer_all(waiters, &e);
                    answer_all(
                        plans
                            .into_iter()
                            .flat_map(|p: Planned| p.waiters.into_iter().map(|w| w.0)),
                        &e,
                    );
                    return;
                }
            }
        }
        // Per file: its writes, then its sync, as one operation; all files in flight together.
        let io = self.io().clone();
        crate::fault_point!("commit.before_sync");
        let started = self.shared.env.clock.now();
        let rounds = plans.iter().map(|p| {
            let mut writes = vec![(p.data.clone(), p.position)];
            if let Some((at, len)) = p.zero_fill {
                writes.push((Bytes::from(vec![0u8; len]), at));
            }
            io.write_all_and_sync(&p.file, writes)
        });
        let outcome: Result<(), StorageError> = join_all(rounds).await.into_iter().collect();
        self.shared
            .metrics
            .observe_sync(self.shared.env.clock.now() - started);
        crate::fault_point!("commit.after_sync");
        if let Err(e) = outcome {
            self.fail(&e);
            // The bytes went to the disk: their fate is unknown to the waiters (indefinite).
            answer_all(
                plans
                    .into_iter()
                    .flat_map(|p| p.waiters.into_iter().map(|w| w.0)),
                &StorageError::Unconfirmed(Box::new(e)),
            );
            return;
        }
        // Just before the partitions' state is updated (the lock is taken below, never across
        // this pause).
        crate::fault_point!("partition.publish");
        let now_ms = self.shared.env.clock.wall_ms();
        let mut appended = 0u64;
        let mut answers = Vec::with_capacity(plans.len());
        for p in plans {
            let log_start_offset = {
                let mut st = p.partition.state_mut();
                let seg = st.active_mut();
                // The pipeline is the only writer: nothing moved since the plan.
                assert_eq!(
                    seg.base_offset, p.segment_base,
                    "active segment changed under the pipeline"
                );
                assert_eq!(
                    seg.size, p.position,
                    "segment size changed under the pipeline"
                );
                seg.size += p.data.len() as u64;
                seg.allocated = seg.allocated.max(p.allocated);
                seg.next_offset = p.next_offset;
                seg.entries.extend_from_slice(&p.entries);
                seg.max_timestamp = seg.max_timestamp.max(p.max_timestamp);
                seg.roll_base_ms.get_or_insert(now_ms);
                st.log_start_offset
            };
            Metrics::inc(&self.shared.metrics.produced_records, p.records);
            Metrics::inc(&self.shared.metrics.produced_bytes, p.data.len() as u64);
            appended += p.waiters.len() as u64;
            answers.push((p.waiters, log_start_offset, p.log_append_time_ms));
        }
        // Count and publish before answering, so whoever hears back sees the round counted.
        Metrics::inc(&self.shared.metrics.commit_rounds, 1);
        Metrics::inc(&self.shared.metrics.commit_appends, appended);
        self.shared.commits.send_modify(|g| *g += 1);
        for (waiters, log_start_offset, log_append_time_ms) in answers {
            for (reply, base_offset) in waiters {
                if let Some(r) = reply {
                    let _ = r.send(Ok(Appended {
                        base_offset,
                        log_start_offset,
                        log_append_time_ms,
                    }));
                }
            }
        }
    }

    /// Assign offsets and lay out one partition's appends of this round (rolling first if due).
    async fn plan(
        &mut self,
        partition: &Arc<Partition>,
        group: Vec<Append>,
    ) -> Result<
        Planned,
        (
            StorageError,
            Vec<Option<Reply<Result<Appended, StorageError>>>>,
        ),
    > {
        if partition.is_deleted() {
            let gone = StorageError::PartitionGone {
                topic: partition.topic.clone(),
                partition: partition.index,
            };
            return Err((gone, group.into_iter().map(|a| a.reply).collect()));
        }
        let bytes: usize = group.iter().map(|a| a.payload.len()).sum();
        let records: i64 = group.iter().map(|a| batch::record_count(&a.headers)).sum();
        let now_ms = self.shared.env.clock.wall_ms();
        let roll_due =
            partition
                .state()
                .active()
                .roll_due(bytes as u64, records, now_ms, &partition.config);
        if roll_due {
            if let Err(e) = self.roll(partition).await {
                return Err((e, group.into_iter().map(|a| a.reply).collect()));
            }
        }
        let st = partition.state();
        let seg = st.active();
        let interval = partition.config.index_interval_bytes;
        let log_append_time = partition.config.timestamp_type == TimestampType::LogAppendTime;
        let mut last_entry = seg.entries.last().map(|e| e.position as u64);
        let mut max_ts = seg.max_timestamp;
        let mut next = seg.next_offset;
        let mut data = BytesMut::with_capacity(bytes);
        let mut entries = Vec::new();
        let mut records = 0u64;
        let mut waiters = Vec::with_capacity(group.len());
        for a in group {
            let base_offset = next;
            let mut from = 0usize;
            for h in &a.headers {
                let pos = seg.size + data.len() as u64;
                if last_entry.is_none_or(|l| pos - l >= interval) {
                    entries.push(IndexEntry {
                        relative_offset: (next - seg.base_offset) as u32,
                        position: pos as u32,
                        prefix_max_timestamp: max_ts,
                    });
                    last_entry = Some(pos);
                }
                let one = &a.payload[from..from + h.size];
                let start = data.len();
                next = batch::assign_offsets(one, std::slice::from_ref(h), next, &mut data);
                if log_append_time {
                    batch::stamp_log_append_time(&mut data[start..], now_ms);
                    max_ts = max_ts.max(now_ms);
                } else {
                    max_ts = max_ts.max(h.max_timestamp);
                }
                from += h.size;
            }
            records += batch::record_count(&a.headers) as u64;
            waiters.push((a.reply, base_offset));
        }
        let end = seg.size + data.len() as u64;
        let ahead = partition.config.preallocate_bytes;
        let (zero_fill, allocated) = if ahead > 0 && end > seg.allocated {
            let from = seg.allocated.max(end);
            let to = (end + ahead).min(partition.config.segment_bytes.max(end));
            (
                (to > from).then(|| (from, (to - from) as usize)),
                to.max(end),
            )
        } else {
            (None, seg.allocated.max(end))
        };
        Ok(Planned {
            partition: partition.clone(),
            file: seg.file.clone(),
            segment_base: seg.base_offset,
            position: seg.size,
            zero_fill,
            allocated,
            data: data.freeze(),
            next_offset: next,
            entries,
            max_timestamp: max_ts,
            records,
            waiters,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
        })
    }

    /// Close the active segment (write and sync its index) and start a new one.
    async fn roll(&mut self, partition: &Arc<Partition>) -> Result<(), StorageError> {
        let closing: Segment = partition.state().active().clone();
        if closing.allocated > closing.size {
            // A closed segment holds exactly its data: cut the zeros written ahead.
            self.io().truncate(&closing.file, closing.size).await?;
            self.io().sync_data(&closing.file).await?;
        }
        log::write_index(self.io(), &partition.dir, &closing).await?;
        let base = closing.next_offset;
        let path = partition.dir.join(log::segment_name(base, "log"));
        let file = self.io().open(&path, OpenMode::Create).await?;
        self.io().sync_dir(&partition.dir).await?;
        partition
            .state_mut()
            .segments
            .insert(base, Segment::empty(base, file));
        tracing::debug!(topic = %partition.topic, partition = partition.index, base_offset = base, "rolled segment");
        Ok(())
    }

    async fn admin(&mut self, cmd: Command) {
        match cmd {
            Command::Append(a) => self.commit(vec![a]).await,
            Command::CreateTopic {
                name,
                partitions,
                config,
                reply,
            } => {
                let r = match self.shared.io.health.check() {
                    Err(e) => Err(e.into()),
                    Ok(()) => self.create_topic(&name, partitions, config).await,
                };
                if let Err(TopicError::Storage(e)) = &r {
                    if matches!(e, StorageError::Disk(_) | StorageError::Stalled { .. }) {
                        self.fail(e);
                    }
                }
                let _ = reply.send(r);
            }
            Command::DeleteTopic { name, reply } => {
                let r = match self.shared.io.health.check() {
                    Err(e) => Err(e.into()),
                    Ok(()) => self.delete_topic(&name).await,
                };
                let _ = reply.send(r);
            }
            Command::Retention => {
                if self.shared.io.health.check().is_ok() {
                    self.retention().await;
                }
            }
        }
    }

    /// Create a topic whole or not at all: its partition directories first, then its metadata
    /// file (written aside, synced, renamed, directory synced) — the commit point. A failure
    /// before that point removes what was made; what a crash leaves is removed at the next
    /// start ([`remove_stray_partitions`]).
    async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        config: LogConfig,
    ) -> Result<Arc<Topic>, TopicError> {
        if self
            .shared
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
        {
            return Err(TopicError::Exists);
        }
        let created = self.create_topic_files(name, partitions, config).await;
        if let Err(e) = &created {
            tracing::warn!(topic = name, error = %e, "topic creation failed; removing what it made");
            if let Err(undo) = self.undo_create_topic(name, partitions).await {
                tracing::warn!(topic = name, error = %undo, "could not remove a failed topic's files; they are removed at the next start");
            }
        }
        created
    }

    /// Remove what a failed creation of `name` made: its metadata file (if the rename happened
    /// and only the directory sync failed) and its partition directories.
    async fn undo_create_topic(&self, name: &str, partitions: i32) -> Result<(), StorageError> {
        let io = self.io();
        let data_dir = &self.shared.data_dir;
        let meta_dir = data_dir.join(META_DIR);
        for file in [format!("{name}.topic"), format!("{name}.topic.tmp")] {
            let path = meta_dir.join(file);
            if io.exists(&path).await? {
                io.remove_file(&path).await?;
            }
        }
        io.sync_dir(&meta_dir).await?;
        for p in 0..partitions {
            let dir = data_dir.join(format!("{name}-{p}"));
            if io.exists(&dir).await? {
                io.remove_dir_all(&dir).await?;
            }
        }
        io.sync_dir(data_dir).await
    }

    async fn create_topic_files(
        &mut self,
        name: &str,
        partitions: i32,
        config: LogConfig,
    ) -> Result<Arc<Topic>, TopicError> {
        let io = self.io().clone();
        let data_dir = self.shared.data_dir.clone();
        let mut parts = Vec::new();
        for p in 0..partitions {
            let dir = data_dir.join(format!("{name}-{p}"));
            // A leftover directory (a creation that crashed before its meta file) is stale.
            if io.exists(&dir).await? {
                io.remove_dir_all(&dir).await?;
            }
            parts.push(Arc::new(log::recover(&io, &dir, name, p, config).await?));
        }
        io.sync_dir(&data_dir).await?;
        let hi = self.shared.env.rng.next_u64() as u128;
        let lo = self.shared.env.rng.next_u64() as u128;
        let id = (hi << 64) | lo;
        let meta = TopicMeta {
            name: name.to_string(),
            id: format!("{id:032x}"),
            partitions,
            config,
        };
        let body =
            serde_json::to_string(&meta).map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
        let text = format!("{body}\ncrc32={:08x}\n", crc32fast::hash(body.as_bytes()));
        let meta_dir = data_dir.join(META_DIR);
        let tmp = meta_dir.join(format!("{name}.topic.tmp"));
        let path = meta_dir.join(format!("{name}.topic"));
        let f = io.open(&tmp, OpenMode::Truncate).await?;
        io.write_at(&f, Bytes::from(text), 0).await?;
        io.sync_data(&f).await?;
        io.rename(&tmp, &path).await?;
        io.sync_dir(&meta_dir).await?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            config,
            partitions: parts,
        });
        self.shared
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    async fn delete_topic(&mut self, name: &str) -> Result<(), TopicError> {
        let topic = self
            .shared
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or(TopicError::Unknown)?;
        // Appends queued behind this command still hold the partitions: they are refused.
        for p in &topic.partitions {
            p.mark_deleted();
        }
        let io = self.io().clone();
        let data_dir = self.shared.data_dir.clone();
        let meta_dir = data_dir.join(META_DIR);
        let path = meta_dir.join(format!("{name}.topic"));
        io.remove_file(&path).await?;
        io.sync_dir(&meta_dir).await?;
        for p in &topic.partitions {
            io.remove_dir_all(&p.dir).await?;
        }
        io.sync_dir(&data_dir).await?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Delete whole closed segments past `retention.bytes` or `retention.ms` (Kafka semantics:
    /// the oldest first, never the active segment). Each deletion is made durable (the
    /// partition directory synced) before the log start moves past the segment, one segment at
    /// a time: after a crash a deleted segment never comes back, so the log start offset a
    /// client was told never moves backwards.
    async fn retention(&mut self) {
        let now_ms = self.shared.env.clock.wall_ms();
        let topics: Vec<Arc<Topic>> = self
            .shared
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for t in topics {
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
    async fn delete_segment(&self, p: &Partition, seg: &Segment) -> Result<(), StorageError> {
        tracing::info!(topic = %p.topic, partition = p.index, base_offset = seg.base_offset, "retention deletes segment");
        self.io()
            .remove_file(&p.dir.join(log::segment_name(seg.base_offset, "log")))
            .await?;
        self.io().sync_dir(&p.dir).await?;
        {
            let mut st = p.state_mut();
            st.segments.remove(&seg.base_offset);
            if let Some(first) = st.segments.keys().next().copied() {
                st.log_start_offset = st.log_start_offset.max(first);
            }
        }
        for ext in ["index", "timeindex"] {
            let path = p.dir.join(log::segment_name(seg.base_offset, ext));
            if let Err(e) = self.io().remove_file(&path).await {
                tracing::warn!(file = %path.display(), error = %e, "could not delete an index file");
            }
        }
        Ok(())
    }
}

/// The closed segments of `p` that retention deletes now, oldest first.
fn retention_doomed(p: &Partition, now_ms: i64) -> Vec<Segment> {
    let st = p.state();
    let mut total = st.size_bytes() as i64;
    let closed = st.segments.len().saturating_sub(1);
    let mut doomed = Vec::new();
    for seg in st.segments.values().take(closed) {
        let by_size =
            p.config.retention_bytes >= 0 && total - seg.size as i64 >= p.config.retention_bytes;
        let by_time = p.config.retention_ms >= 0
            && seg.max_timestamp >= 0
            && now_ms - seg.max_timestamp > p.config.retention_ms;
        if !(by_size || by_time) {
            break;
        }
        total -= seg.size as i64;
        doomed.push(seg.clone());
    }
    doomed
}

fn answer_all(
    replies: impl IntoIterator<Item = Option<Reply<Result<Appended, StorageError>>>>,
    err: &StorageError,
) {
    for r in replies.into_iter().flatten() {
        let _ = r.send(Err(err.clone()));
    }
}
