//! Counters and gauges, exported in the Prometheus / OpenMetrics text format through
//! `prometheus-client`, and the disk wrapper that counts every write and sync (so a test can
//! prove an idle broker does no disk work).
//!
//! Every figure is an atomic behind a `prometheus-client` metric, registered once when
//! [`Metrics`] is made: updating one never waits (the per-API request counters take a read lock
//! of their family's map, a write lock only the first time an API is seen). The high-water
//! marks of bounded resources are plain atomics, exported beside their bounds by
//! [`Metrics::render`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

mod counting;
pub mod software;
pub use counting::CountingDisk;

/// Upper bounds (seconds) of the sync latency histogram buckets.
const SYNC_BUCKETS_S: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0,
];
/// API keys counted per key; larger keys are counted under "other".
const API_SLOTS: i16 = 128;

/// Why a produced batch was refused or not confirmed (`stillwater_appends_refused_total`).
/// Backpressure is not among them: a full append queue makes a produce wait, never fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl EncodeLabelValue for Refusal {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.label(), encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: Refusal,
}

/// A Kafka API by its key, named as `kafka-protocol` names it (`other` past [`API_SLOTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ApiName(i16);

impl EncodeLabelValue for ApiName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        if self.0 >= API_SLOTS {
            return encoder.write_str("other");
        }
        match kafka_protocol::messages::ApiKey::try_from(self.0) {
            Ok(k) => write!(encoder, "{k:?}"),
            Err(_) => write!(encoder, "unknown_{}", self.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiLabel {
    api: ApiName,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BoundLabel {
    bound: &'static str,
}

/// Every figure the broker exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<ApiLabel, Counter>,
    refused_appends: Family<ReasonLabel, Counter>,
    /// Open connections by client software ([`software`]).
    pub client_software: software::ClientSoftware,
    pub request_errors: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub produced_records: Counter,
    pub produced_bytes: Counter,
    pub fetched_bytes: Counter,
    pub commit_rounds: Counter,
    pub commit_appends: Counter,
    /// Cleanings of compacted logs, the records they removed and the bytes they freed.
    pub cleaner_runs: Counter,
    pub cleaner_records_removed: Counter,
    pub cleaner_bytes_freed: Counter,
    pub append_queue_depth: Gauge,
    pub failed_log_dirs: Gauge,
    pub connections: Gauge,
    pub connections_rejected: Counter,
    pub tls_handshakes_failed: Counter,
    pub sasl_authentications: Counter,
    pub sasl_authentications_failed: Counter,
    pub malformed_requests: Counter,
    pub disk_write_ops: Counter,
    pub disk_write_bytes: Counter,
    pub disk_sync_ops: Counter,
    pub io_deadline_expired: Counter,
    pub open_files_exhausted: Counter,
    pub connections_rejected_per_ip: Counter,
    pub response_write_timeouts: Counter,
    pub memory_waits: Counter,
    pub memory_budget_bytes: Gauge,
    pub memory_used_bytes: Gauge,
    /// Raft groups this node leads, follows, and leads with a replica not heard from lately.
    pub raft_leaders: Gauge,
    pub raft_followers: Gauge,
    pub raft_under_replicated: Gauge,
    /// Raft groups quiet (not ticking) on this node.
    pub raft_quiet: Gauge,
    /// The highest Raft term of any group on this node.
    pub raft_term_max: Gauge,
    /// Elections this node stood in, and leaderships it took.
    pub raft_elections: Counter,
    pub raft_leaderships_taken: Counter,
    /// New partitions whose first term this node led without an election (the controller
    /// named it their first leader).
    pub raft_first_terms_led: Counter,
    /// Raft groups on this node that have had no leader for longer than a few election
    /// timeouts (elections that do not conclude: a disk or host too slow for them, or no
    /// quorum reachable).
    pub raft_groups_leaderless: Gauge,
    /// Inter-broker messages sent, received and dropped (a full queue, an unknown peer).
    pub raft_messages_sent: Counter,
    pub raft_messages_received: Counter,
    pub raft_messages_dropped: Counter,
    /// Connections to the inter-broker port closed before their hello was read (past its
    /// bounds on unidentified connections, a failed handshake, a refused hello).
    pub inter_broker_connections_refused: Counter,
    /// Bytes read from the log for followers behind the cache (catch-up), reads that failed,
    /// and reads under way and waiting for their turn in the budgets.
    pub catch_up_bytes: Counter,
    pub catch_up_read_failures: Counter,
    pub catch_up_reads_in_flight: Gauge,
    pub catch_up_reads_waiting: Gauge,
    /// Times the data directory was declared failed.
    pub log_dir_failures: Counter,
    /// The most each bounded resource has held since the start, beside its bound: what a
    /// simulation checks on every seed ([`Metrics::bounds`]) and an operator can watch
    /// (`stillwater_bound_peak`, `stillwater_bound_limit`).
    pub append_queue_depth_peak: AtomicI64,
    pub append_queue_capacity: AtomicI64,
    /// Commands taken out of the append queue and carried to a later round (their bound is
    /// the pipeline's, `ROUND_APPENDS_MAX`).
    pub round_carried_peak: AtomicI64,
    pub round_carried_max: AtomicI64,
    pub catch_up_reads_in_flight_peak: AtomicI64,
    pub catch_up_reads_in_flight_max: AtomicI64,
    pub catch_up_follower_bytes_peak: AtomicI64,
    pub catch_up_follower_bytes_max: AtomicI64,
    pub raft_queue_bytes_peak: AtomicI64,
    pub raft_queue_bytes_max: AtomicI64,
    pub hand_backs_peak: AtomicI64,
    pub hand_backs_max: AtomicI64,
    bound_peaks: Family<BoundLabel, Gauge>,
    bound_limits: Family<BoundLabel, Gauge>,
    sync_latency: Histogram,
}

/// A counter registered under `stillwater_<name>_total`.
fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    registry.register(name, help, c.clone());
    c
}

/// A gauge registered under `stillwater_<name>`.
fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("stillwater");
        let refused_appends = Family::<ReasonLabel, Counter>::default();
        r.register(
            "appends_refused",
            "Produced batches refused or not confirmed, by why (a full append queue makes a \
             produce wait, never refuses it)",
            refused_appends.clone(),
        );
        for reason in Refusal::ALL {
            // Every reason is exported from the start, at 0.
            let _ = refused_appends.get_or_create(&ReasonLabel { reason });
        }
        let requests = Family::<ApiLabel, Counter>::default();
        r.register(
            "requests",
            "Kafka requests received, by API",
            requests.clone(),
        );
        let bound_peaks = Family::<BoundLabel, Gauge>::default();
        r.register(
            "bound_peak",
            "The most a bounded resource has held since the start, beside its bound \
             (stillwater_bound_limit)",
            bound_peaks.clone(),
        );
        let bound_limits = Family::<BoundLabel, Gauge>::default();
        r.register(
            "bound_limit",
            "The bound of each resource in stillwater_bound_peak (0: not in use)",
            bound_limits.clone(),
        );
        r.register(
            "build",
            "This broker's version (always 1; the version is the label)",
            prometheus_client::metrics::info::Info::new(vec![(
                "version",
                env!("CARGO_PKG_VERSION"),
            )]),
        );
        let client_software = software::ClientSoftware::register(&mut r);
        let sync_latency = Histogram::new(SYNC_BUCKETS_S);
        r.register(
            "sync_latency_seconds",
            "Latency of a commit round's write + fdatasync",
            sync_latency.clone(),
        );
        Metrics {
            client_software,
            request_errors: counter(
                &mut r,
                "request_errors",
                "Requests answered with an error or dropped",
            ),
            bytes_in: counter(&mut r, "network_bytes_in", "Bytes of request frames read"),
            bytes_out: counter(
                &mut r,
                "network_bytes_out",
                "Bytes of response frames written",
            ),
            produced_records: counter(
                &mut r,
                "produced_records",
                "Records appended to partition logs",
            ),
            produced_bytes: counter(&mut r, "produced_bytes", "Record batch bytes appended"),
            fetched_bytes: counter(
                &mut r,
                "fetched_bytes",
                "Record batch bytes returned by Fetch",
            ),
            commit_rounds: counter(
                &mut r,
                "commit_rounds",
                "Group-commit rounds (write + sync of a batch of appends)",
            ),
            commit_appends: counter(
                &mut r,
                "commit_appends",
                "Appends committed; divided by rounds gives the commit batch size",
            ),
            cleaner_runs: counter(
                &mut r,
                "cleaner_runs",
                "Cleanings of compacted partitions by the log cleaner",
            ),
            cleaner_records_removed: counter(
                &mut r,
                "cleaner_records_removed",
                "Records the log cleaner removed (superseded by a later record of their key, tombstones past delete.retention.ms, records without a key)",
            ),
            cleaner_bytes_freed: counter(
                &mut r,
                "cleaner_bytes_freed",
                "Bytes of log the log cleaner freed",
            ),
            connections_rejected: counter(
                &mut r,
                "connections_rejected",
                "Connections refused at the connection limit",
            ),
            tls_handshakes_failed: counter(
                &mut r,
                "tls_handshakes_failed",
                "TLS handshakes on the SSL listeners that failed or did not finish in time",
            ),
            sasl_authentications: counter(
                &mut r,
                "sasl_authentications",
                "SASL authentications (and re-authentications) that succeeded",
            ),
            sasl_authentications_failed: counter(
                &mut r,
                "sasl_authentications_failed",
                "SASL authentications refused (wrong credentials, bad messages, timeouts)",
            ),
            malformed_requests: counter(
                &mut r,
                "malformed_requests",
                "Frames that could not be decoded",
            ),
            disk_write_ops: counter(&mut r, "disk_write_ops", "Disk write operations issued"),
            disk_write_bytes: counter(&mut r, "disk_write_bytes", "Bytes written to disk"),
            disk_sync_ops: counter(
                &mut r,
                "disk_sync_ops",
                "fdatasync / directory sync operations issued",
            ),
            io_deadline_expired: counter(
                &mut r,
                "io_deadline_expired",
                "Disk operations that missed their deadline",
            ),
            open_files_exhausted: counter(
                &mut r,
                "open_files_exhausted",
                "Disk operations that failed for want of file descriptors (the directory stays healthy)",
            ),
            connections_rejected_per_ip: counter(
                &mut r,
                "connections_rejected_per_ip",
                "Connections refused at the limit per client address",
            ),
            response_write_timeouts: counter(
                &mut r,
                "response_write_timeouts",
                "Connections closed because a response write made no progress in time",
            ),
            memory_waits: counter(
                &mut r,
                "memory_waits",
                "Times a connection waited for the memory budget (stopped reading, or a Fetch \
                 waited to read)",
            ),
            raft_elections: counter(
                &mut r,
                "raft_elections",
                "Elections this node stood in (in a cluster)",
            ),
            raft_leaderships_taken: counter(
                &mut r,
                "raft_leaderships_taken",
                "Times this node became a Raft group's leader",
            ),
            raft_first_terms_led: counter(
                &mut r,
                "raft_first_terms_led",
                "New partitions whose first term this node led without an election (named \
                 their first leader by the controller)",
            ),
            raft_groups_leaderless: gauge(
                &mut r,
                "raft_groups_leaderless",
                "Raft groups on this node without a leader for longer than five election \
                 timeouts",
            ),
            raft_messages_sent: counter(
                &mut r,
                "raft_messages_sent",
                "Raft messages queued for other brokers",
            ),
            raft_messages_received: counter(
                &mut r,
                "raft_messages_received",
                "Raft messages received from other brokers",
            ),
            raft_messages_dropped: counter(
                &mut r,
                "raft_messages_dropped",
                "Raft messages dropped: a peer's queue full, or an unknown peer (Raft sends \
                 again)",
            ),
            inter_broker_connections_refused: counter(
                &mut r,
                "inter_broker_connections_refused",
                "Connections to the inter-broker port closed before the caller was identified: \
                 past the bounds on such connections, a failed TLS handshake, a refused or late \
                 hello",
            ),
            catch_up_bytes: counter(
                &mut r,
                "replica_catch_up_bytes",
                "Bytes read from the log for followers behind the leader's cache of recent \
                 entries",
            ),
            log_dir_failures: counter(
                &mut r,
                "log_dir_failures",
                "Times the data directory was declared failed (a disk operation past its \
                 deadline, EIO, a full disk)",
            ),
            catch_up_read_failures: counter(
                &mut r,
                "replica_catch_up_read_failures",
                "Catch-up reads that failed or missed their deadline (each made again after a \
                 backoff)",
            ),
            append_queue_depth: gauge(
                &mut r,
                "append_queue_depth",
                "Appends waiting for the commit pipeline",
            ),
            failed_log_dirs: gauge(
                &mut r,
                "failed_log_dirs",
                "Data directories declared failed",
            ),
            connections: gauge(&mut r, "connections", "Open client connections"),
            memory_budget_bytes: gauge(
                &mut r,
                "memory_budget_bytes",
                "The memory budget for request and response bytes (memory_budget_bytes)",
            ),
            memory_used_bytes: gauge(
                &mut r,
                "memory_used_bytes",
                "Request and response bytes held against the memory budget now",
            ),
            raft_leaders: gauge(
                &mut r,
                "raft_leaders",
                "Raft groups (partitions, the cluster metadata) this node leads",
            ),
            raft_followers: gauge(
                &mut r,
                "raft_followers",
                "Raft groups this node is a follower (or candidate) of",
            ),
            raft_under_replicated: gauge(
                &mut r,
                "raft_under_replicated",
                "Groups this node leads with a replica not heard from in the last election \
                 timeout (Kafka's under-replicated partitions)",
            ),
            raft_quiet: gauge(
                &mut r,
                "raft_quiet_groups",
                "Raft groups that are quiet here: idle, no ticks, no heartbeats",
            ),
            raft_term_max: gauge(
                &mut r,
                "raft_term_max",
                "The highest Raft term of any group on this node (a rise is an election)",
            ),
            catch_up_reads_in_flight: gauge(
                &mut r,
                "replica_catch_up_reads_in_flight",
                "Catch-up reads for followers under way",
            ),
            catch_up_reads_waiting: gauge(
                &mut r,
                "replica_catch_up_reads_waiting",
                "Catch-up reads waiting for their turn (budgets, rate, a failed read's backoff)",
            ),
            append_queue_depth_peak: AtomicI64::new(0),
            append_queue_capacity: AtomicI64::new(0),
            round_carried_peak: AtomicI64::new(0),
            round_carried_max: AtomicI64::new(0),
            catch_up_reads_in_flight_peak: AtomicI64::new(0),
            catch_up_reads_in_flight_max: AtomicI64::new(0),
            catch_up_follower_bytes_peak: AtomicI64::new(0),
            catch_up_follower_bytes_max: AtomicI64::new(0),
            raft_queue_bytes_peak: AtomicI64::new(0),
            raft_queue_bytes_max: AtomicI64::new(0),
            hand_backs_peak: AtomicI64::new(0),
            hand_backs_max: AtomicI64::new(0),
            registry: r,
            requests,
            refused_appends,
            bound_peaks,
            bound_limits,
            sync_latency,
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

impl Metrics {
    pub fn request(&self, api_key: i16) {
        let api = ApiName(api_key.clamp(0, API_SLOTS));
        self.requests.get_or_create(&ApiLabel { api }).inc();
    }

    pub fn inc(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    pub fn observe_sync(&self, took: Duration) {
        self.sync_latency.observe(took.as_secs_f64());
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
                name: "appends carried to a later commit round",
                peak: get(&self.round_carried_peak),
                limit: get(&self.round_carried_max),
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
            Bound {
                name: "leaderships handed back to preferred replicas at once",
                peak: get(&self.hand_backs_peak),
                limit: get(&self.hand_backs_max),
            },
        ]
    }

    /// Raise a high-water mark to `value`.
    pub fn peak(mark: &AtomicI64, value: i64) {
        mark.fetch_max(value, Ordering::Relaxed);
    }

    /// Count a produced batch refused (or not confirmed) for `why`.
    pub fn refused_append(&self, why: Refusal) {
        self.refused_appends
            .get_or_create(&ReasonLabel { reason: why })
            .inc();
    }

    /// Produced batches refused for `why` so far.
    pub fn refused_appends(&self, why: Refusal) -> u64 {
        self.refused_appends
            .get_or_create(&ReasonLabel { reason: why })
            .get()
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        self.render_with(&Registry::default())
    }

    /// [`render`](Self::render) with another module's metrics, `extra`, before the end.
    pub fn render_with(&self, extra: &Registry) -> String {
        for b in self.bounds() {
            let label = BoundLabel { bound: b.name };
            self.bound_peaks.get_or_create(&label).set(b.peak);
            self.bound_limits.get_or_create(&label).set(b.limit);
        }
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let _ = encode_registry(&mut out, &self.registry).and(encode_registry(&mut out, extra));
        let _ = encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample name the exposition had before it went through `prometheus-client`:
    /// dashboards and alerts keep working.
    const NAMES: &[&str] = &[
        "stillwater_appends_refused_total{reason=\"directory_failed\"} 0",
        "stillwater_appends_refused_total{reason=\"queue_wait_timed_out\"} 0",
        "stillwater_requests_total{api=\"Produce\"} 2",
        "stillwater_requests_total{api=\"other\"} 1",
        "stillwater_request_errors_total 0",
        "stillwater_network_bytes_in_total 7",
        "stillwater_network_bytes_out_total 0",
        "stillwater_produced_records_total 0",
        "stillwater_produced_bytes_total 0",
        "stillwater_fetched_bytes_total 0",
        "stillwater_commit_rounds_total 0",
        "stillwater_commit_appends_total 0",
        "stillwater_cleaner_runs_total 0",
        "stillwater_cleaner_records_removed_total 0",
        "stillwater_cleaner_bytes_freed_total 0",
        "stillwater_connections_rejected_total 0",
        "stillwater_tls_handshakes_failed_total 0",
        "stillwater_sasl_authentications_total 0",
        "stillwater_sasl_authentications_failed_total 0",
        "stillwater_malformed_requests_total 0",
        "stillwater_disk_write_ops_total 0",
        "stillwater_disk_write_bytes_total 0",
        "stillwater_disk_sync_ops_total 0",
        "stillwater_io_deadline_expired_total 0",
        "stillwater_open_files_exhausted_total 0",
        "stillwater_connections_rejected_per_ip_total 0",
        "stillwater_response_write_timeouts_total 0",
        "stillwater_memory_waits_total 0",
        "stillwater_raft_elections_total 0",
        "stillwater_raft_leaderships_taken_total 0",
        "stillwater_raft_first_terms_led_total 0",
        "stillwater_raft_groups_leaderless 0",
        "stillwater_raft_messages_sent_total 0",
        "stillwater_raft_messages_received_total 0",
        "stillwater_raft_messages_dropped_total 0",
        "stillwater_inter_broker_connections_refused_total 0",
        "stillwater_replica_catch_up_bytes_total 0",
        "stillwater_log_dir_failures_total 0",
        "stillwater_replica_catch_up_read_failures_total 0",
        "stillwater_append_queue_depth -1",
        "stillwater_failed_log_dirs 0",
        "stillwater_connections 3",
        "stillwater_memory_budget_bytes 0",
        "stillwater_memory_used_bytes 0",
        "stillwater_raft_leaders 0",
        "stillwater_raft_followers 0",
        "stillwater_raft_under_replicated 0",
        "stillwater_raft_quiet_groups 0",
        "stillwater_raft_term_max 0",
        "stillwater_replica_catch_up_reads_in_flight 0",
        "stillwater_replica_catch_up_reads_waiting 0",
        "stillwater_bound_peak{bound=\"append queue (append_queue_capacity)\"} 5",
        "stillwater_bound_limit{bound=\"append queue (append_queue_capacity)\"} 64",
        "stillwater_bound_limit{bound=\"catch-up reads in flight\"} 0",
        "stillwater_sync_latency_seconds_count 2",
        "stillwater_sync_latency_seconds_bucket{le=\"0.001\"} 1",
    ];

    #[test]
    fn the_exposition_keeps_every_name_label_and_value() {
        let m = Metrics::default();
        m.request(0);
        m.request(0);
        m.request(1000);
        Metrics::inc(&m.bytes_in, 7);
        m.connections.set(3);
        m.append_queue_depth.dec();
        Metrics::peak(&m.append_queue_depth_peak, 5);
        m.append_queue_capacity.store(64, Ordering::Relaxed);
        m.observe_sync(Duration::from_micros(500));
        m.observe_sync(Duration::from_millis(20));
        let text = m.render();
        let lines: Vec<&str> = text.lines().collect();
        for want in NAMES {
            assert!(lines.contains(want), "no line {want:?} in\n{text}");
        }
        // Every line is a comment or a sample `name{labels} value`.
        for line in &lines {
            let ok = line.starts_with('#')
                || line.rsplit_once(' ').is_some_and(|(name, v)| {
                    name.starts_with("stillwater_") && v.parse::<f64>().is_ok()
                });
            assert!(ok, "not a sample: {line:?}");
        }
        assert!(text.contains("# TYPE stillwater_sync_latency_seconds histogram"));
        assert!(text.ends_with("# EOF\n"));
    }
}
