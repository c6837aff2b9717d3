//! Scenario files (`scenarios/*.toml`): the broker's settings, the workload, the faults (a
//! schedule, a random mix drawn from the seed, or both), and the expected outcome.
//!
//! ```toml
//! name = "example"
//! duration_s = 120                 # simulated seconds of workload
//! [broker]                         # broker settings over the defaults
//! io_deadline_ms = 5000
//! [disk]                           # the disk's speed outside faults (default: instant)
//! latency_ms = [1, 4]
//! [workload]
//! producers = 4                    # each with one request in flight
//! acks = [1, -1, 0]                # producer i uses acks[i % 3] (or one value for all)
//! partitions = 3                   # the topic is created through CreateTopics first
//! retries = 2                      # resend after a retriable error or an unknown outcome
//! consumers = 2                    # each assigned every partition
//! [[faults]]
//! kind = "partition"               # see `Fault` for every kind
//! at_s = 30
//! for_s = 10
//! link = ["producers", "broker-1"]
//! one_way = true
//! [random_faults]                  # a swarm drawn from the seed
//! rate_per_min = 2
//! kinds = ["crash", "fsync-stall", "partition"]
//! [expect]
//! outcome = "pass"                 # or "liveness-failure", or a finding's name ("lost-write", …)
//! response_deadline_s = 10
//! liveness_deadline_s = 30
//! ```

use std::path::Path;

use serde::Deserialize;

pub mod config_draw;
mod configs;
mod cpu;
mod faults;
mod random_faults;
mod tenant;
mod twin;
mod txn;
mod validate;

pub use configs::ConfigsWorkload;
pub use cpu::CpuSpec;
pub use faults::{last_heal_s, Fault, FloodPort, FloodSend, STOP_GRACE};
pub use random_faults::{RandomFaults, RANDOM_KINDS};
pub use tenant::Tenant;
pub use twin::TwinSpec;
pub use txn::{Pipeline, TxnWorkload};

/// The broker node's name in scenarios, reports and partitions (the first broker of a cluster).
pub const BROKER_NODE: &str = "broker-1";

/// The name of broker `i` (from 1) of a cluster.
pub fn broker_name(i: usize) -> String {
    format!("broker-{i}")
}

/// Whether `name` names a broker node.
pub fn is_broker(name: &str) -> bool {
    name.strip_prefix("broker-")
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n >= 1)
}
/// The client nodes: producers, consumers and the admin client each live on their own node, so
/// a scenario can cut one of them off from the broker and not the others.
pub const CLIENT_NODES: [&str; 3] = ["producers", "consumers", "admin"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Simulated seconds of workload.
    pub duration_s: u64,
    /// At most this many seeds of this scenario in a quick sweep (`sim sweep --quick`, CI's):
    /// for scenarios whose seeds cost many CPU seconds (hours simulated, hundreds of MB
    /// written). Full sweeps run every seed asked for.
    #[serde(default)]
    pub quick_sweep_seeds: Option<usize>,
    /// Broker settings over the defaults (keys as in the broker's configuration).
    #[serde(default)]
    pub broker: toml::Table,
    /// The simulated disk's latency model outside fault windows.
    #[serde(default)]
    pub disk: DiskModel,
    /// The brokers' processors: without it, work costs no simulated time.
    #[serde(default)]
    pub cpu: Option<CpuSpec>,
    pub workload: Workload,
    /// How many brokers: one (the default), or a cluster of `nodes` (`cluster_peers` set for
    /// each, every topic replicated on three of them, or all of a smaller cluster).
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// Clients authenticate with SASL: the brokers' one listener is SASL_PLAINTEXT, its user
    /// made at start (`add_scram`).
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Faults drawn at random from the seed, on top of `faults`.
    #[serde(default)]
    pub random_faults: Option<RandomFaults>,
    /// Delays at the broker's fault points (`fault_point!`), for the whole run.
    #[serde(default)]
    pub fault_points: Option<FaultPoints>,
    /// Settings of the broker, the workload and the disk drawn from the seed
    /// ([`crate::scenario::config_draw`]).
    #[serde(default)]
    pub random_config: Option<crate::scenario::config_draw::RandomConfig>,
    /// How its twin runs on real processes are compared with its simulated seeds.
    #[serde(default)]
    pub twin: TwinSpec,
    pub expect: Expect,
    /// The file as read (a random configuration is drawn into it).
    #[serde(skip)]
    pub raw: toml::Table,
}

/// The brokers of a run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(default = "one_usize")]
    pub nodes: usize,
    /// The controller quorum's voters, brokers 1..=voters (`cluster_peers`); the others are
    /// observers, which join the cluster (default: every broker votes).
    #[serde(default)]
    pub voters: Option<usize>,
    /// Brokers that start later than the run and join the cluster then.
    #[serde(default)]
    pub joining: Vec<JoinSpec>,
}

/// Broker `node` starts `at_s` into the run (and joins the cluster).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinSpec {
    pub node: usize,
    pub at_s: u64,
}

impl ClusterSpec {
    /// How many brokers vote on the metadata.
    pub fn voters(&self) -> usize {
        self.voters
            .unwrap_or(self.nodes)
            .clamp(1, self.nodes.max(1))
    }

    /// When broker `node` (from 1) starts, if later than the run.
    pub fn joins_at_s(&self, node: usize) -> Option<u64> {
        self.joining.iter().find(|j| j.node == node).map(|j| j.at_s)
    }
}

/// How the clients authenticate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// `SCRAM-SHA-256`, `SCRAM-SHA-512` or `PLAIN`.
    pub mechanism: String,
    /// Requests are checked against the ACLs (`authorizer_enabled`); the run's user is a
    /// super user, so the workload's own clients may do everything.
    #[serde(default)]
    pub authorizer: bool,
    /// The listener is SASL_SSL and, in a cluster, the brokers are linked by mutual TLS: every
    /// client and broker connection is a TLS session over the simulated network, its
    /// randomness from the seed (`broker::security::crypto`; the certificates are `sim/tls`).
    #[serde(default)]
    pub tls: bool,
    /// Users and ACLs changed through the admin API during the run, while probes log in as
    /// those users and use a topic of their own ([`crate::workload::security`]).
    #[serde(default)]
    pub churn: Option<Churn>,
}

/// How the security metadata changes during a run, and how often the probes act.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// The admin changes a credential or an ACL about this often (drawn within ±50 %).
    pub change_interval_ms: u64,
    /// Each probe user sends a request (or logs in again) about this often (±50 %).
    pub probe_interval_ms: u64,
}

/// The most partitions a workload topic may have (the simulator's cost grows with them: see
/// docs/simulation.md, "Many partitions").
pub const MAX_PARTITIONS: i32 = 20_000;

/// The user every simulated client authenticates as.
pub const SASL_USER: &str = "sim-user";
pub const SASL_PASSWORD: &str = "sim-password";

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 1,
            voters: None,
            joining: Vec::new(),
        }
    }
}

impl Scenario {
    /// Whether a data directory may be declared failed for the disk's sake in a run with these
    /// faults: a fault that strikes the disk, or a disk whose normal latency nears the I/O
    /// deadline.
    pub fn disk_can_fail(&self, faults: &[Fault]) -> bool {
        faults.iter().any(Fault::strikes_disk)
            || self.disk.latency_ms.is_some_and(|[_, hi]| hi >= 1_000)
    }

    /// The broker nodes' names.
    pub fn brokers(&self) -> Vec<String> {
        (1..=self.cluster.nodes.max(1)).map(broker_name).collect()
    }

    pub fn clustered(&self) -> bool {
        self.cluster.nodes > 1
    }
}

/// The disk's normal speed: every operation (write, sync, read, …) takes between `latency_ms[0]`
/// and `latency_ms[1]` milliseconds, drawn uniformly from the seed. Without it, operations take
/// no simulated time (and a crash can never land between a write and its sync). A `slow-disk`
/// fault replaces it for its window.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskModel {
    #[serde(default)]
    pub latency_ms: Option<[u64; 2]>,
    /// Megabytes per second the disk moves, shared by the reads and syncs in flight: each
    /// waits for the bytes in flight before it (a disk whose reads slow down under load).
    #[serde(default)]
    pub bandwidth_mb_s: Option<u64>,
    /// Operations the device serves at once (syncs and reads; the others wait in line, inside
    /// the broker's deadlines): a disk that a burst of syncs saturates. Without it, every
    /// operation is served at once.
    #[serde(default)]
    pub queue_depth: Option<usize>,
}

impl DiskModel {
    /// The latency range, if the disk has one.
    pub fn latency(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        self.latency_ms.map(|[lo, hi]| {
            (
                std::time::Duration::from_millis(lo),
                std::time::Duration::from_millis(hi),
            )
        })
    }
}

/// Each time the broker passes a fault point, it pauses with this chance, for a time drawn up to
/// `max_delay_ms`: lock contention and unusual interleavings on demand.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPoints {
    pub chance_percent: u32,
    pub max_delay_ms: u64,
}

/// One setting for every producer, or a list the producers take in turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerProducer {
    One(bool),
    Each(Vec<bool>),
}

impl Default for PerProducer {
    fn default() -> Self {
        PerProducer::One(false)
    }
}

impl PerProducer {
    pub fn for_producer(&self, producer: usize) -> bool {
        match self {
            PerProducer::One(b) => *b,
            PerProducer::Each(v) if v.is_empty() => false,
            PerProducer::Each(v) => v[producer % v.len()],
        }
    }
}

/// One acks setting for every producer, or a list the producers take in turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Acks {
    One(i16),
    Each(Vec<i16>),
}

impl Acks {
    pub fn for_producer(&self, producer: usize) -> i16 {
        match self {
            Acks::One(a) => *a,
            Acks::Each(v) if v.is_empty() => 1,
            Acks::Each(v) => v[producer % v.len()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub producers: usize,
    /// 0 (no answer), 1 or -1 (all); a list is taken in turn by the producers.
    pub acks: Acks,
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Partitions of the workload topic, created through CreateTopics before producing.
    #[serde(default = "one_i32")]
    pub partitions: i32,
    /// Pause between one producer's messages.
    pub interval_ms: u64,
    /// Each value is padded to this many bytes (0: as short as its name, `p<producer>-<n>`).
    #[serde(default)]
    pub value_bytes: usize,
    /// Times a producer sends a value again after a retriable error or an unknown outcome (the
    /// producer is not idempotent, so a retry may duplicate: the checker allows exactly those).
    #[serde(default)]
    pub retries: u32,
    /// The client's deadline for an answer (Kafka's `request.timeout.ms`): past it the outcome is
    /// unknown and the connection is closed.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Consumers, each assigned every partition, polling from the earliest offset.
    #[serde(default)]
    pub consumers: usize,
    /// A consumer's Fetch `max_wait_ms`.
    #[serde(default = "default_poll_wait_ms")]
    pub poll_max_wait_ms: u64,
    /// When above 0, the admin client creates and deletes a scratch topic this often.
    #[serde(default)]
    pub admin_interval_s: u64,
    /// When above 0, every so many scratch topics one is kept (never deleted): topics that
    /// must outlive snapshots of the metadata and restarts.
    #[serde(default)]
    pub admin_keep_every: u64,
    /// Idempotent producers (InitProducerId, sequence numbers; acks must be -1): a value is then
    /// in the log at most once whatever the retries — any duplicate is a finding. A list is
    /// taken in turn by the producers.
    #[serde(default)]
    pub idempotent: PerProducer,
    /// Requests an idempotent producer keeps in flight on its connection (Kafka's
    /// `max.in.flight.requests.per.connection`, at most 5); the others have one.
    #[serde(default = "one_usize")]
    pub max_in_flight: usize,
    /// A consumer group reading the topic (beside the `consumers`, which read by assignment).
    #[serde(default)]
    pub group: Option<GroupWorkload>,
    /// An admin moving the topic's partitions between the brokers (a cluster only).
    #[serde(default)]
    pub moves: Option<MovesWorkload>,
    /// Each plain producer keeps its own metadata, as a real client does, rather than the
    /// run's shared one: it asks for a leader again only after a leadership error or a broken
    /// or closed connection.
    #[serde(default)]
    pub own_metadata: bool,
    /// An admin changing a topic's configuration through each broker in turn.
    #[serde(default)]
    pub configs: Option<ConfigsWorkload>,
    /// Brokers the admin retires, in order ([`crate::workload::retire`]).
    #[serde(default)]
    pub retire: Vec<RetireSpec>,
    /// The topic is compacted and every record has a key ([`crate::workload::keyed`]); the
    /// compaction checker replaces the checks that every acknowledged record stays.
    #[serde(default)]
    pub compacted: Option<Compacted>,
    /// A transactional workload on a topic of its own ([`crate::workload::txn`]).
    #[serde(default)]
    pub transactions: Option<TxnWorkload>,
    /// A tenant over its quota beside the producers ([`crate::workload::tenant`]).
    #[serde(default)]
    pub tenant: Option<Tenant>,
}

/// A compacted workload topic: `keys` keys written again and again, every `tombstone_every`-th
/// message of a producer a tombstone; the topic's settings are made for cleaning to happen
/// often in a short run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compacted {
    /// Keys of the plain workload's producers (a transactional topic's values have keys of
    /// their own).
    #[serde(default = "one_key")]
    pub keys: u32,
    /// 0: no tombstones.
    #[serde(default)]
    pub tombstone_every: u64,
    /// After this many messages a producer moves on to a new set of `keys` keys (0: never):
    /// keys that are no longer written, whose last record stays — and whose tombstones expire.
    #[serde(default)]
    pub key_lifetime: u64,
    /// The topic's `segment.bytes`: only closed segments are cleaned.
    #[serde(default = "default_compacted_segment_bytes")]
    pub segment_bytes: u64,
    /// The topic's `delete.retention.ms`: how long a cleaned tombstone stays.
    #[serde(default = "default_delete_retention_ms")]
    pub delete_retention_ms: u64,
    /// The topic's `min.cleanable.dirty.ratio`.
    #[serde(default = "default_dirty_ratio")]
    pub min_cleanable_dirty_ratio: f64,
    /// Readers that fall far behind: each reads every partition from its start, stops for a
    /// time drawn from `far_behind_pause_ms`, and reads from the start again, until producing
    /// is over (the readers `delete.retention.ms` is for; judged by `checks/scans.rs`).
    #[serde(default)]
    pub far_behind_readers: u32,
    /// How long a far-behind reader stops between reads: `[min, max]` ms.
    #[serde(default = "default_far_behind_pause_ms")]
    pub far_behind_pause_ms: [u64; 2],
}

impl Default for Compacted {
    fn default() -> Self {
        Compacted {
            keys: 1,
            tombstone_every: 0,
            key_lifetime: 0,
            segment_bytes: default_compacted_segment_bytes(),
            delete_retention_ms: default_delete_retention_ms(),
            min_cleanable_dirty_ratio: default_dirty_ratio(),
            far_behind_readers: 0,
            far_behind_pause_ms: default_far_behind_pause_ms(),
        }
    }
}

impl Compacted {
    /// The topic's configuration overrides.
    pub fn topic_configs(&self) -> Vec<(String, String)> {
        vec![
            ("cleanup.policy".into(), "compact".into()),
            ("segment.bytes".into(), self.segment_bytes.to_string()),
            (
                "delete.retention.ms".into(),
                self.delete_retention_ms.to_string(),
            ),
            (
                "min.cleanable.dirty.ratio".into(),
                self.min_cleanable_dirty_ratio.to_string(),
            ),
        ]
    }
}

fn one_key() -> u32 {
    1
}

fn default_compacted_segment_bytes() -> u64 {
    16 * 1024
}

fn default_delete_retention_ms() -> u64 {
    5_000
}

fn default_dirty_ratio() -> f64 {
    0.1
}

fn default_far_behind_pause_ms() -> [u64; 2] {
    [10_000, 30_000]
}

/// Retire broker `node` from `at_s` into the run: its partitions moved away, then stopped for
/// good and unregistered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireSpec {
    pub node: usize,
    pub at_s: u64,
}

/// Partition reassignment while the workload runs: about every `interval_ms` the admin moves a
/// partition drawn from the seed to `replicas` brokers drawn from the seed
/// (AlterPartitionReassignments), and cancels it `cancel_percent` of the time soon after;
/// moving stops `quiet_s` before producing does, so that the last moves can end.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovesWorkload {
    pub interval_ms: u64,
    #[serde(default)]
    pub cancel_percent: u64,
    #[serde(default = "default_move_replicas")]
    pub replicas: usize,
    #[serde(default = "default_moves_quiet_s")]
    pub quiet_s: u64,
    /// No move before this second of the run (the partitions have data to move by then).
    #[serde(default)]
    pub from_s: u64,
}

fn default_move_replicas() -> usize {
    3
}

fn default_moves_quiet_s() -> u64 {
    20
}

/// A consumer group of `members` reading the workload topic: the classic protocol with the
/// range assignor computed by the leader (or KIP-848's, `protocol`), offsets committed every `commit_interval_ms` and when
/// a rebalance begins. Members crash (and come back as new members), pause past their session
/// timeout, and leave (and come back), `member_faults_per_min` in all, drawn from the seed,
/// while producing lasts; then the group reads to the end and commits it. With
/// `async_commits`, commits are pipelined.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupWorkload {
    pub members: usize,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    #[serde(default = "default_session_timeout_ms")]
    pub rebalance_timeout_ms: u64,
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_interval_ms: u64,
    #[serde(default = "default_heartbeat_ms")]
    pub commit_interval_ms: u64,
    #[serde(default)]
    pub member_faults_per_min: f64,
    /// 0: commits are synchronous (sent, then waited for). Otherwise each poll that moved the
    /// positions sends a commit without waiting for its answer, up to this many in flight on
    /// the member's connection (librdkafka's and the Java client's asynchronous commits); at
    /// every commit interval the member waits for them and reads the group's committed
    /// offsets back.
    #[serde(default)]
    pub async_commits: usize,
    /// The assignor members join with, as the Java client's `partition.assignment.strategy`:
    /// "range" (eager: members give up everything before a rebalance) or "cooperative-sticky"
    /// (members keep what they own; a partition moves only after its owner gave it up).
    #[serde(default = "default_assignor")]
    pub assignor: String,
    /// The group protocol: "classic" (JoinGroup and SyncGroup, the leader member assigns) or
    /// "consumer" (KIP-848: ConsumerGroupHeartbeat, the broker assigns with `assignor`, which
    /// is then "uniform" or "range", and members give partitions up before others get them).
    /// With "consumer" the brokers' `group_consumer_session_timeout_ms` is the workload's
    /// `session_timeout_ms`, and members commit at their member epoch.
    #[serde(default = "default_group_protocol")]
    pub protocol: String,
}

/// The assignors a group workload may name: eager range, cooperative sticky.
pub const RANGE: &str = "range";
pub const COOPERATIVE_STICKY: &str = "cooperative-sticky";
/// The group protocols: the classic one, KIP-848's.
pub const CLASSIC: &str = "classic";
pub const CONSUMER: &str = "consumer";
/// The broker's assignors of the consumer protocol.
pub const SERVER_ASSIGNORS: &[&str] = &["uniform", "range"];

fn default_group_protocol() -> String {
    CLASSIC.into()
}

fn default_assignor() -> String {
    RANGE.into()
}

fn default_group_id() -> String {
    "sim-group".into()
}
fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_heartbeat_ms() -> u64 {
    1_000
}
fn one_usize() -> usize {
    1
}

fn default_topic() -> String {
    "workload".into()
}
fn one_i32() -> i32 {
    1
}
fn one() -> u64 {
    1
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_poll_wait_ms() -> u64 {
    500
}

/// What a run is expected to end as: a pass, a liveness failure, or findings of one named kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum Expected {
    Pass,
    LivenessFailure,
    /// Every finding is of this kind (e.g. `lost-write`), and there is at least one.
    Finding(String),
}

impl From<String> for Expected {
    fn from(s: String) -> Expected {
        match s.as_str() {
            "pass" => Expected::Pass,
            "liveness-failure" => Expected::LivenessFailure,
            _ => Expected::Finding(s),
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Pass => f.write_str("pass"),
            Expected::LivenessFailure => f.write_str("liveness-failure"),
            Expected::Finding(k) => f.write_str(k),
        }
    }
}

/// A scenario's bounds (`[expect.performance]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Performance {
    /// The median acknowledgement latency is at most this many commit rounds of the model.
    pub p50_rounds: f64,
    /// The 99th percentile is at most this many rounds.
    pub p99_rounds: f64,
    /// Acknowledged produces a second are at least this share of what the producers offer
    /// when every answer takes the p50 bound (each producer waits for its answer, then for
    /// `interval_ms`).
    pub throughput_share: f64,
    /// Appends (acknowledged, and acks 0) per segment sync (group commit) are at least this;
    /// 0: not checked (at a light load every append has a sync of its own).
    #[serde(default)]
    pub appends_per_sync: f64,
}

impl Performance {
    pub fn validate(&self) -> Result<(), String> {
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        let all_ok = ok(self.p50_rounds)
            && ok(self.p99_rounds)
            && ok(self.appends_per_sync)
            && (0.0..=1.0).contains(&self.throughput_share);
        if !all_ok {
            return Err(
                "expect.performance: bounds must be finite and not negative, \
                        throughput_share within [0, 1]"
                    .into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub outcome: Expected,
    /// Longest a produce may wait for any answer (success or error) while the broker answers
    /// no produce at all before it counts as hung (a freeze); a broker that goes on answering
    /// others must still answer each produce within the request's timeout. Waits while the
    /// network or the process is faulty do not count.
    pub response_deadline_s: u64,
    /// After the last fault heals, every partition must accept a write (and serve one to the
    /// consumers) within this time.
    pub liveness_deadline_s: u64,
    /// No produce may be refused: without disk faults nothing justifies a refusal, and a full
    /// append queue makes a produce wait (a refusal would be contention mistaken for
    /// backpressure — failure mode of the legacy system).
    #[serde(default)]
    pub no_refusals: bool,
    /// Latency, throughput and batching bounds, checked on every seed outside fault windows.
    #[serde(default)]
    pub performance: Option<Performance>,
    /// The run must acknowledge at least this many records (0: not checked): progress a run
    /// without faults is held to (the checks after a heal need a fault), for scenarios whose
    /// load is their fault (overload), where the model's latency bounds do not apply.
    #[serde(default)]
    pub min_acknowledged: usize,
    /// While a link is cut, every partition written before takes an acknowledged write again
    /// within this many seconds of the cut and of each write before (not checked unless set):
    /// for cuts that leave a majority the clients reach.
    #[serde(default)]
    pub writes_resume_s: Option<f64>,
    /// While a partition is listed as moving (ListPartitionReassignments, asked every 250 ms), it
    /// takes an acknowledged write within this many seconds of the move's start and of each
    /// write before, unless a fault explains the wait (not checked unless set; needs
    /// `[workload.moves]`).
    #[serde(default)]
    pub writes_during_moves_s: Option<f64>,
    /// In a cluster: once the run has settled, every replica holds its partition's log up to
    /// what was read back (not checked unless set: some scenarios end with a replica down).
    #[serde(default)]
    pub caught_up: bool,
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read scenario {}: {e}", path.display()))?;
        let raw: toml::Table = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("scenario {}: {e}", path.display()))?;
        Scenario::from_table(raw).map_err(|e| anyhow::anyhow!("scenario {}: {e}", path.display()))
    }

    fn from_table(raw: toml::Table) -> Result<Scenario, String> {
        let mut scenario: Scenario = toml::Value::Table(raw.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        scenario.validate()?;
        if let Some(r) = &scenario.random_config {
            r.check()?;
        }
        scenario.raw = raw;
        Ok(scenario)
    }

    /// The scenario as `seed` runs it: with a `[random_config]`, its settings drawn from the
    /// seed (redrawn while a draw breaks a rule), and what was drawn (`section.key`, value).
    pub fn for_seed(&self, seed: u64) -> anyhow::Result<(Scenario, Vec<(String, String)>)> {
        let Some(config) = &self.random_config else {
            return Ok((self.clone(), Vec::new()));
        };
        crate::scenario::config_draw::draw_until(config, &self.raw, seed, Scenario::from_table)
            .map_err(|e| anyhow::anyhow!("scenario {}: {e}", self.name))
    }

    /// The scheduled faults and this seed's random draw, in time order.
    pub fn faults_for(&self, seed: u64) -> Vec<Fault> {
        let mut all = self.faults.clone();
        if let Some(r) = &self.random_faults {
            all.extend(r.draw(seed, self.duration_s, self.cluster.nodes));
        }
        all.sort_by_key(Fault::at_s);
        all
    }
}
