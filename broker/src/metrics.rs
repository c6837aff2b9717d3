//! Counters and gauges, rendered in the Prometheus text format, and the disk wrapper that
//! counts every write and sync (so a test can prove an idle broker does no disk work).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use io_backend::{Disk, DiskFile, DiskResult, OpenMode};

/// Upper bounds (seconds) of the sync latency histogram buckets.
const SYNC_BUCKETS_S: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0,
];
/// API keys counted per key; larger keys are counted under "other".
const API_SLOTS: usize = 128;

/// Why a produced batch was refused or not confirmed (`stillwater_appends_refused_total`).
/// Backpressure is not among them: a full append queue makes a produce wait, never fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The data directory was failed when the batch arrived (nothing written).
    DirectoryFailed,
    /// The write failed or the disk stalled past its deadline (nothing written).
    WriteFailed,
    /// Written, but the sync failed or missed its deadline (it may be in the log).
    SyncUnconfirmed,
    /// The partition's topic was deleted while the batch waited.
    PartitionDeleted,
    /// An idempotent producer's batch out of sequence or from a fenced epoch.
    ProducerState,
    /// No answer from the pipeline within the request's timeout.
    TimedOut,
    /// No place in the append queue within the request's timeout (nothing written).
    QueueWaitTimedOut,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::DirectoryFailed,
        Refusal::WriteFailed,
        Refusal::SyncUnconfirmed,
        Refusal::PartitionDeleted,
        Refusal::ProducerState,
        Refusal::TimedOut,
        Refusal::QueueWaitTimedOut,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::DirectoryFailed => "directory_failed",
            Refusal::WriteFailed => "write_failed",
            Refusal::SyncUnconfirmed => "sync_unconfirmed",
            Refusal::PartitionDeleted => "partition_deleted",
            Refusal::ProducerState => "producer_state",
            Refusal::TimedOut => "timed_out",
            Refusal::QueueWaitTimedOut => "queue_wait_timed_out",
        }
    }
}

/// Every figure the broker exports. Plain atomics: updating one never waits.
pub struct Metrics {
    requests: Vec<AtomicU64>,
    refused_appends: [AtomicU64; Refusal::ALL.len()],
    pub request_errors: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub produced_records: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub fetched_bytes: AtomicU64,
    pub commit_rounds: AtomicU64,
    pub commit_appends: AtomicU64,
    pub append_queue_depth: AtomicI64,
    pub failed_log_dirs: AtomicI64,
    pub connections: AtomicI64,
    pub connections_rejected: AtomicU64,
    pub malformed_requests: AtomicU64,
    pub disk_write_ops: AtomicU64,
    pub disk_write_bytes: AtomicU64,
    pub disk_sync_ops: AtomicU64,
    pub io_deadline_expired: AtomicU64,
    pub connections_rejected_per_ip: AtomicU64,
    pub response_write_timeouts: AtomicU64,
    pub memory_waits: AtomicU64,
    pub memory_budget_bytes: AtomicI64,
    pub memory_used_bytes: AtomicI64,
    /// Raft groups this node leads, follows, and leads with a replica not heard from lately.
    pub raft_leaders: AtomicI64,
    pub raft_followers: AtomicI64,
    pub raft_under_replicated: AtomicI64,
    /// Raft groups quiet (not ticking) on this node.
    pub raft_quiet: AtomicI64,
    /// The highest Raft term of any group on this node.
    pub raft_term_max: AtomicI64,
    /// Elections this node stood in, and leaderships it took.
    pub raft_elections: AtomicU64,
    pub raft_leaderships_taken: AtomicU64,
    /// Inter-broker messages sent, received and dropped (a full queue, an unknown peer).
    pub raft_messages_sent: AtomicU64,
    pub raft_messages_received: AtomicU64,
    pub raft_messages_dropped: AtomicU64,
    /// Bytes read from the log for followers behind the cache (catch-up), reads that failed,
    /// and reads under way and waiting for their turn in the budgets.
    pub catch_up_bytes: AtomicU64,
    pub catch_up_read_failures: AtomicU64,
    pub catch_up_reads_in_flight: AtomicI64,
    pub catch_up_reads_waiting: AtomicI64,
    /// Times the data directory was declared failed.
    pub log_dir_failures: AtomicU64,
    /// The most each bounded resource has held since the start, beside its bound: what a
    /// simulation checks on every seed ([`Metrics::bounds`]) and an operator can watch.
    pub append_queue_depth_peak: AtomicI64,
    pub append_queue_capacity: AtomicI64,
    pub catch_up_reads_in_flight_peak: AtomicI64,
    pub catch_up_reads_in_flight_max: AtomicI64,
    pub catch_up_follower_bytes_peak: AtomicI64,
    pub catch_up_follower_bytes_max: AtomicI64,
    pub raft_queue_bytes_peak: AtomicI64,
    pub raft_queue_bytes_max: AtomicI64,
    sync_buckets: [AtomicU64; SYNC_BUCKETS_S.len()],
    sync_count: AtomicU64,
    sync_sum_us: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: (0..=API_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            refused_appends: Default::default(),
            request_errors: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            produced_records: AtomicU64::new(0),
            produced_bytes: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            commit_rounds: AtomicU64::new(0),
            commit_appends: AtomicU64::new(0),
            append_queue_depth: AtomicI64::new(0),
            failed_log_dirs: AtomicI64::new(0),
            connections: AtomicI64::new(0),
            connections_rejected: AtomicU64::new(0),
            malformed_requests: AtomicU64::new(0),
            disk_write_ops: AtomicU64::new(0),
            disk_write_bytes: AtomicU64::new(0),
            disk_sync_ops: AtomicU64::new(0),
            io_deadline_expired: AtomicU64::new(0),
            connections_rejected_per_ip: AtomicU64::new(0),
            response_write_timeouts: AtomicU64::new(0),
            memory_waits: AtomicU64::new(0),
            memory_budget_bytes: AtomicI64::new(0),
            memory_used_bytes: AtomicI64::new(0),
            raft_leaders: AtomicI64::new(0),
            raft_followers: AtomicI64::new(0),
            raft_under_replicated: AtomicI64::new(0),
            raft_quiet: AtomicI64::new(0),
            raft_term_max: AtomicI64::new(0),
            raft_elections: AtomicU64::new(0),
            raft_leaderships_taken: AtomicU64::new(0),
            raft_messages_sent: AtomicU64::new(0),
            raft_messages_received: AtomicU64::new(0),
            raft_messages_dropped: AtomicU64::new(0),
            catch_up_bytes: AtomicU64::new(0),
            catch_up_read_failures: AtomicU64::new(0),
            catch_up_reads_in_flight: AtomicI64::new(0),
            catch_up_reads_waiting: AtomicI64::new(0),
            log_dir_failures: AtomicU64::new(0),
            append_queue_depth_peak: AtomicI64::new(0),
            append_queue_capacity: AtomicI64::new(0),
            catch_up_reads_in_flight_peak: AtomicI64::new(0),
            catch_up_reads_in_flight_max: AtomicI64::new(0),
            catch_up_follower_bytes_peak: AtomicI64::new(0),
            catch_up_follower_bytes_max: AtomicI64::new(0),
            raft_queue_bytes_peak: AtomicI64::new(0),
            raft_queue_bytes_max: AtomicI64::new(0),
            sync_buckets: Default::default(),
            sync_count: AtomicU64::new(0),
            sync_sum_us: AtomicU64::new(0),
        }
    }
}

/// A bounded resource's high-water mark and its bound ([`Metrics::bounds`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub name: &'static str,
    pub peak: i64,
    pub limit: i64,
}

impl Bound {
    /// Whether the resource went past its bound.
    pub fn broken(&self) -> bool {
        self.limit > 0 && self.peak > self.limit
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub fn request(&self, api_key: i16) {
        let slot = (api_key.max(0) as usize).min(API_SLOTS);
        add(&self.requests[slot], 1);
    }

    pub fn inc(counter: &AtomicU64, n: u64) {
        add(counter, n)
    }

    pub fn observe_sync(&self, took: Duration) {
        let s = took.as_secs_f64();
        for (bound, bucket) in SYNC_BUCKETS_S.iter().zip(&self.sync_buckets) {
            if s <= *bound {
                add(bucket, 1);
            }
        }
        add(&self.sync_count, 1);
        add(&self.sync_sum_us, took.as_micros() as u64);
    }

    /// Every bounded resource's high-water mark beside its bound (`limit` 0: not in use here,
    /// e.g. catch-up on a single node).
    pub fn bounds(&self) -> Vec<Bound> {
        let get = |a: &AtomicI64| a.load(Ordering::Relaxed);
        vec![
            Bound {
                name: "append queue (append_queue_capacity)",
                peak: get(&self.append_queue_depth_peak),
                limit: get(&self.append_queue_capacity),
            },
            Bound {
                name: "catch-up reads in flight",
                peak: get(&self.catch_up_reads_in_flight_peak),
                limit: get(&self.catch_up_reads_in_flight_max),
            },
            Bound {
                name: "catch-up bytes under way per follower (replica_fetch_response_max_bytes)",
                peak: get(&self.catch_up_follower_bytes_peak),
                limit: get(&self.catch_up_follower_bytes_max),
            },
            Bound {
                name: "Raft messages queued per peer (bytes)",
                peak: get(&self.raft_queue_bytes_peak),
                limit: get(&self.raft_queue_bytes_max),
            },
        ]
    }

    /// Raise a high-water mark to `value`.
    pub fn peak(mark: &AtomicI64, value: i64) {
        mark.fetch_max(value, Ordering::Relaxed);
    }

    /// Count a produced batch refused (or not confirmed) for `why`.
    pub fn refused_append(&self, why: Refusal) {
        let i = Refusal::ALL.iter().position(|r| *r == why).unwrap_or(0);
        Metrics::inc(&self.refused_appends[i], 1);
    }

    /// Produced batches refused for `why` so far.
    pub fn refused_appends(&self, why: Refusal) -> u64 {
        let i = Refusal::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.refused_appends[i].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP stillwater_appends_refused_total Produced batches refused or not confirmed, \
             by why (a full append queue makes a produce wait, never refuses it)."
        );
        let _ = writeln!(out, "# TYPE stillwater_appends_refused_total counter");
        for (why, c) in Refusal::ALL.iter().zip(&self.refused_appends) {
            let _ = writeln!(
                out,
                "stillwater_appends_refused_total{{reason=\"{}\"}} {}",
                why.label(),
                get(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP stillwater_requests_total Kafka requests received, by API."
        );
        let _ = writeln!(out, "# TYPE stillwater_requests_total counter");
        for (key, c) in self.requests.iter().enumerate() {
            let n = get(c);
            if n == 0 {
                continue;
            }
            let name = if key == API_SLOTS {
                "other".to_string()
            } else {
                kafka_protocol::messages::ApiKey::try_from(key as i16)
                    .map(|k| format!("{k:?}"))
                    .unwrap_or_else(|_| format!("unknown_{key}"))
            };
            let _ = writeln!(out, "stillwater_requests_total{{api=\"{name}\"}} {n}");
        }
        let counters: [(&str, &str, &AtomicU64); 25] = [
            (
                "request_errors_total",
                "Requests answered with an error or dropped.",
                &self.request_errors,
            ),
            (
                "network_bytes_in_total",
                "Bytes of request frames read.",
                &self.bytes_in,
            ),
            (
                "network_bytes_out_total",
                "Bytes of response frames written.",
                &self.bytes_out,
            ),
            (
                "produced_records_total",
                "Records appended to partition logs.",
                &self.produced_records,
            ),
            (
                "produced_bytes_total",
                "Record batch bytes appended.",
                &self.produced_bytes,
            ),
            (
                "fetched_bytes_total",
                "Record batch bytes returned by Fetch.",
                &self.fetched_bytes,
            ),
            (
                "commit_rounds_total",
                "Group-commit rounds (write + sync of a batch of appends).",
                &self.commit_rounds,
            ),
            (
                "commit_appends_total",
                "Appends committed; divided by rounds gives the commit batch size.",
                &self.commit_appends,
            ),
            (
                "connections_rejected_total",
                "Connections refused at the connection limit.",
                &self.connections_rejected,
            ),
            (
                "malformed_requests_total",
                "Frames that could not be decoded.",
                &self.malformed_requests,
            ),
            (
                "disk_write_ops_total",
                "Disk write operations issued.",
                &self.disk_write_ops,
            ),
            (
                "disk_write_bytes_total",
                "Bytes written to disk.",
                &self.disk_write_bytes,
            ),
            (
                "disk_sync_ops_total",
                "fdatasync / directory sync operations issued.",
                &self.disk_sync_ops,
            ),
            (
                "io_deadline_expired_total",
                "Disk operations that missed their deadline.",
                &self.io_deadline_expired,
            ),
            (
                "connections_rejected_per_ip_total",
                "Connections refused at the limit per client address.",
                &self.connections_rejected_per_ip,
            ),
            (
                "response_write_timeouts_total",
                "Connections closed because a response write made no progress in time.",
                &self.response_write_timeouts,
            ),
            (
                "memory_waits_total",
                "Times a connection waited for the memory budget (stopped reading, or a Fetch waited to read).",
                &self.memory_waits,
            ),
            (
                "raft_elections_total",
                "Elections this node stood in (in a cluster).",
                &self.raft_elections,
            ),
            (
                "raft_leaderships_taken_total",
                "Times this node became a Raft group's leader.",
                &self.raft_leaderships_taken,
            ),
            (
                "raft_messages_sent_total",
                "Raft messages queued for other brokers.",
                &self.raft_messages_sent,
            ),
            (
                "raft_messages_received_total",
                "Raft messages received from other brokers.",
                &self.raft_messages_received,
            ),
            (
                "raft_messages_dropped_total",
                "Raft messages dropped: a peer's queue full, or an unknown peer (Raft sends again).",
                &self.raft_messages_dropped,
            ),
            (
                "replica_catch_up_bytes_total",
                "Bytes read from the log for followers behind the leader's cache of recent entries.",
                &self.catch_up_bytes,
            ),
            (
                "log_dir_failures_total",
                "Times the data directory was declared failed (a disk operation past its deadline, EIO, a full disk).",
                &self.log_dir_failures,
            ),
            (
                "replica_catch_up_read_failures_total",
                "Catch-up reads that failed or missed their deadline (each made again after a backoff).",
                &self.catch_up_read_failures,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP stillwater_{name} {help}");
            let _ = writeln!(out, "# TYPE stillwater_{name} counter");
            let _ = writeln!(out, "stillwater_{name} {}", get(c));
        }
        let gauges: [(&str, &str, &AtomicI64); 12] = [
            (
                "append_queue_depth",
                "Appends waiting for the commit pipeline.",
                &self.append_queue_depth,
            ),
            (
                "failed_log_dirs",
                "Data directories declared failed.",
                &self.failed_log_dirs,
            ),
            ("connections", "Open client connections.", &self.connections),
            (
                "memory_budget_bytes",
                "The memory budget for request and response bytes (memory_budget_bytes).",
                &self.memory_budget_bytes,
            ),
            (
                "memory_used_bytes",
                "Request and response bytes held against the memory budget now.",
                &self.memory_used_bytes,
            ),
            (
                "raft_leaders",
                "Raft groups (partitions, the cluster metadata) this node leads.",
                &self.raft_leaders,
            ),
            (
                "raft_followers",
                "Raft groups this node is a follower (or candidate) of.",
                &self.raft_followers,
            ),
            (
                "raft_under_replicated",
                "Groups this node leads with a replica not heard from in the last election timeout (Kafka's under-replicated partitions).",
                &self.raft_under_replicated,
            ),
            (
                "raft_quiet_groups",
                "Raft groups that are quiet here: idle, no ticks, no heartbeats.",
                &self.raft_quiet,
            ),
            (
                "raft_term_max",
                "The highest Raft term of any group on this node (a rise is an election).",
                &self.raft_term_max,
            ),
            (
                "replica_catch_up_reads_in_flight",
                "Catch-up reads for followers under way.",
                &self.catch_up_reads_in_flight,
            ),
            (
                "replica_catch_up_reads_waiting",
                "Catch-up reads waiting for their turn (budgets, rate, a failed read's backoff).",
                &self.catch_up_reads_waiting,
            ),
        ];
        for (name, help, g) in gauges {
            let _ = writeln!(out, "# HELP stillwater_{name} {help}");
            let _ = writeln!(out, "# TYPE stillwater_{name} gauge");
            let _ = writeln!(out, "stillwater_{name} {}", g.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP stillwater_bound_peak The most a bounded resource has held since the start, beside its bound (stillwater_bound_limit)."
        );
        let _ = writeln!(out, "# TYPE stillwater_bound_peak gauge");
        let bounds = self.bounds();
        for b in &bounds {
            let _ = writeln!(
                out,
                "stillwater_bound_peak{{bound=\"{}\"}} {}",
                b.name, b.peak
            );
        }
        let _ = writeln!(out, "# HELP stillwater_bound_limit The bound of each resource in stillwater_bound_peak (0: not in use).");
        let _ = writeln!(out, "# TYPE stillwater_bound_limit gauge");
        for b in &bounds {
            let _ = writeln!(
                out,
                "stillwater_bound_limit{{bound=\"{}\"}} {}",
                b.name, b.limit
            );
        }
        let _ = writeln!(
            out,
            "# HELP stillwater_sync_latency_seconds Latency of a commit round's write + fdatasync."
        );
        let _ = writeln!(out, "# TYPE stillwater_sync_latency_seconds histogram");
        for (bound, bucket) in SYNC_BUCKETS_S.iter().zip(&self.sync_buckets) {
            let _ = writeln!(
                out,
                "stillwater_sync_latency_seconds_bucket{{le=\"{bound}\"}} {}",
                get(bucket)
            );
        }
        let count = get(&self.sync_count);
        let _ = writeln!(
            out,
            "stillwater_sync_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "stillwater_sync_latency_seconds_sum {}",
            get(&self.sync_sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "stillwater_sync_latency_seconds_count {count}");
        out
    }
}

/// A [`Disk`] that counts writes and syncs into [`Metrics`].
pub struct CountingDisk {
    inner: Arc<dyn Disk>,
    metrics: Arc<Metrics>,
}

impl CountingDisk {
    pub fn wrap(inner: Arc<dyn Disk>, metrics: Arc<Metrics>) -> Arc<dyn Disk> {
        Arc::new(CountingDisk { inner, metrics })
    }
}

#[async_trait]
impl Disk for CountingDisk {
    async fn create_dir_all(&self, path: &Path) -> DiskResult<()> {
        add(&self.metrics.disk_write_ops, 1);
        self.inner.create_dir_all(path).await
    }
    async fn open(&self, path: &Path, mode: OpenMode) -> DiskResult<Arc<dyn DiskFile>> {
        let inner = self.inner.open(path, mode).await?;
        Ok(Arc::new(CountingFile {
            inner,
            metrics: self.metrics.clone(),
        }))
    }
    async fn list(&self, dir: &Path) -> DiskResult<Vec<String>> {
        self.inner.list(dir).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> DiskResult<()> {
        add(&self.metrics.disk_write_ops, 1);
        self.inner.rename(from, to).await
    }
    async fn remove_file(&self, path: &Path) -> DiskResult<()> {
        add(&self.metrics.disk_write_ops, 1);
        self.inner.remove_file(path).await
    }
    async fn remove_dir_all(&self, path: &Path) -> DiskResult<()> {
        add(&self.metrics.disk_write_ops, 1);
        self.inner.remove_dir_all(path).await
    }
    async fn sync_dir(&self, path: &Path) -> DiskResult<()> {
        add(&self.metrics.disk_sync_ops, 1);
        self.inner.sync_dir(path).await
    }
    async fn exists(&self, path: &Path) -> DiskResult<bool> {
        self.inner.exists(path).await
    }
    async fn lock_dir(&self, dir: &Path, holder: &str) -> DiskResult<io_backend::DirLock> {
        self.inner.lock_dir(dir, holder).await
    }
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }
}

struct CountingFile {
    inner: Arc<dyn DiskFile>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl DiskFile for CountingFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    async fn write_at(&self, data: Bytes, offset: u64) -> DiskResult<()> {
        add(&self.metrics.disk_write_ops, 1);
        add(&self.metrics.disk_write_bytes, data.len() as u64);
        self.inner.write_at(data, offset).await
    }
    async fn read_at(&self, len: usize, offset: u64) -> DiskResult<Bytes> {
        self.inner.read_at(len, offset).await
    }
    async fn sync_data(&self) -> DiskResult<()> {
        add(&self.metrics.disk_sync_ops, 1);
        self.inner.sync_data().await
    }
    async fn write_all_and_sync(&self, writes: Vec<(Bytes, u64)>) -> DiskResult<()> {
        add(&self.metrics.disk_write_ops, writes.len() as u64);
        let bytes: usize = writes.iter().map(|(d, _)| d.len()).sum();
        add(&self.metrics.disk_write_bytes, bytes as u64);
        add(&self.metrics.disk_sync_ops, 1);
        self.inner.write_all_and_sync(writes).await
    }
    async fn truncate(&self, len: u64) -> DiskResult<()> {
        add(&self.metrics.disk_write_ops, 1);
        self.inner.truncate(len).await
    }
    async fn len(&self) -> DiskResult<u64> {
        self.inner.len().await
    }
}
