//! What the checkers may find: every kind of [`Finding`] (as scenario files name them in
//! `expect.outcome`) and how each is told.

use bytes::Bytes;

mod display;

/// Every kind of finding, as scenario files name them in `expect.outcome`.
pub const FINDING_KINDS: [&str; 51] = [
    "lost-write",
    "duplicate",
    "sequence-refused",
    "commit-regressed",
    "double-owner",
    "owned-twice",
    "flood-held",
    "replica-behind",
    "commit-mismatch",
    "group-unconsumed",
    "group-not-drained",
    "inconsistent-offset",
    "non-monotonic-send",
    "non-monotonic-poll",
    "poll-skip",
    "failed-write-read",
    "phantom-read",
    "unseen",
    "hung",
    "no-progress",
    "too-few-acknowledged",
    "refused",
    "slow",
    "replica-divergence",
    "offset-gap",
    "watermark-backwards",
    "two-leaders",
    "stale-committed-read",
    "bound-broken",
    "dir-failed",
    "leader-refuses",
    "served-unauthorized",
    "refused-authorized",
    "security-diverged",
    "security-unapplied",
    "membership-diverged",
    "move-unfinished",
    "retire-unfinished",
    "latest-lost",
    "stale-value",
    "resurrected",
    "scan-missed",
    "move-stalled",
    "metadata-diverged",
    "config-lost-update",
    "stop-stalled",
    "acks0-blackholed",
    "lock-order-inversion",
    "election-storm",
    "leaderless",
    "leadership-imbalance",
];

/// What the checkers found.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A write that was acknowledged (or that a consumer read) is not in the log.
    LostWrite {
        partition: i32,
        value: Bytes,
        /// How it was known: "acknowledged at offset N" or "polled at offset N".
        seen: String,
    },
    /// A value stored at more offsets than its producer sent it (retries allowed for).
    Duplicate {
        partition: i32,
        value: Bytes,
        offsets: Vec<i64>,
        attempts: usize,
    },
    /// Observers disagree on an offset: the value acknowledged, polled or read back there.
    InconsistentOffset {
        partition: i32,
        offset: i64,
        seen: Vec<String>,
    },
    /// A producer's acknowledged offsets in a partition went backwards (or repeated).
    NonMonotonicSend {
        producer: usize,
        partition: i32,
        previous: i64,
        offset: i64,
    },
    /// A consumer's polled offsets in a partition went backwards (or repeated) within a session.
    NonMonotonicPoll {
        consumer: usize,
        partition: i32,
        previous: i64,
        offset: i64,
    },
    /// A consumer read past offsets that are in the log without returning them.
    PollSkip {
        consumer: usize,
        partition: i32,
        from: i64,
        to: i64,
        skipped: Vec<i64>,
    },
    /// A write every attempt of which definitely failed was read.
    FailedWriteRead {
        partition: i32,
        value: Bytes,
        offset: i64,
        codes: Vec<i16>,
    },
    /// A value no producer sent was read (corruption).
    PhantomRead {
        partition: i32,
        value: Bytes,
        offset: i64,
    },
    /// Acknowledged writes no consumer polled, although the consumers read to the end.
    Unseen {
        partition: i32,
        count: usize,
        first: Vec<Bytes>,
    },
    /// A request waited longer than the response deadline for any answer (liveness).
    Hung {
        node: String,
        at_s: f64,
        waited_s: u64,
        stuck: Stuck,
    },
    /// After the faults healed, a partition took (or served) no write in time (liveness).
    NoProgress {
        partition: i32,
        what: &'static str,
        healed_s: u64,
        deadline_s: u64,
        /// What the node was stuck on when the deadline passed.
        stuck: Stuck,
    },
    /// Produce requests were refused where the scenario allows none.
    Refused { count: usize, first_code: i16 },
    /// The run acknowledged fewer records than the scenario's floor.
    TooFewAcknowledged { acknowledged: usize, floor: usize },
    /// A performance figure (latency, throughput, batching) broke the scenario's bound.
    Slow {
        figure: String,
        value: f64,
        bound: String,
    },
    /// An idempotent producer's batch was refused as out of sequence although the batch before
    /// it (or none: a new producer id) was acknowledged: the broker lost producer state.
    SequenceRefused {
        producer: usize,
        partition: i32,
        producer_id: i64,
        sequence: i32,
    },
    /// A committed offset of a partition went backwards.
    CommitRegressed {
        partition: i32,
        previous: i64,
        offset: i64,
        member: usize,
        generation: i32,
    },
    /// The group answered a committed offset older than one it had acknowledged before the
    /// read was sent (OffsetFetch behind an acknowledged OffsetCommit).
    StaleCommittedRead {
        partition: i32,
        read: i64,
        acknowledged: i64,
        member: usize,
        at_s: f64,
    },
    /// Two members were given the same partition in one generation.
    DoubleOwner {
        generation: i32,
        partition: i32,
        members: Vec<String>,
    },
    /// A member was given a partition while another member of the same generation still owned
    /// it (the cooperative protocol moves a partition only after its owner gave it up).
    OwnedTwice {
        partition: i32,
        generation: i32,
        holder: String,
        taker: String,
        at_s: f64,
    },
    /// After the run settled, a replica's log ends before what was read back.
    ReplicaBehind {
        partition: i32,
        node: String,
        end: i64,
        wanted: i64,
    },
    /// A stranger's flood of a broker's port broke one of its connection bounds.
    FloodHeld {
        broker: usize,
        port: &'static str,
        at_s: f64,
        why: String,
    },
    /// A tenant over its quota was not held near it ([`crate::checks::quota`]).
    QuotaNotHeld { why: String },
    /// After the run, the group's committed offset of a partition is not where its members
    /// read to (the end of the partition: the group drained).
    CommitMismatch {
        partition: i32,
        committed: i64,
        processed: i64,
        log_end: i64,
    },
    /// Acknowledged writes no member of the group polled, although the group drained.
    GroupUnconsumed {
        partition: i32,
        count: usize,
        first: Vec<Bytes>,
    },
    /// The group did not read and commit every partition to its end within the drain time
    /// (liveness).
    GroupNotDrained { partitions: Vec<i32> },
    /// Two replicas hold different batches at an offset below the high watermark.
    ReplicaDivergence {
        partition: i32,
        offset: i64,
        nodes: Vec<String>,
    },
    /// The log read back skips Kafka offsets it could read: a record at `found` follows the
    /// one before `expected` (offsets are dense without compaction or transactions, through
    /// elections too).
    OffsetGap {
        partition: i32,
        expected: i64,
        found: i64,
    },
    /// A consumer was told a high watermark below one another was told before it asked.
    WatermarkBackwards {
        partition: i32,
        before: i64,
        after: i64,
        at_s: f64,
    },
    /// Metadata named two leaders of a partition in one leader epoch (Raft term).
    TwoLeaders {
        partition: i32,
        epoch: i32,
        leaders: Vec<i32>,
    },
    /// A broker held more of a bounded resource than its bound (its memory: bytes of the
    /// reads it made, catch-up under way; its queues).
    BoundBroken {
        node: String,
        bound: String,
        peak: i64,
        limit: i64,
    },
    /// A broker's data directory was declared failed in a run whose disks had no fault that
    /// could make it (so its own load did: catch-up reads crowding out its writes).
    DirFailed { node: String, times: u64 },
    /// More elections in a stretch of the run than its faults explain
    /// ([`crate::checks::elections`]): elections that do not conclude.
    ElectionStorm {
        from_s: f64,
        to_s: f64,
        elections: u64,
        bound: u64,
    },
    /// A broker counted Raft groups without a leader while no fault was in force or settling.
    Leaderless {
        node: String,
        at_s: f64,
        groups: i64,
    },
    /// At the end of a run that had settled, a broker led far more groups than its share.
    LeadershipImbalance {
        node: String,
        leaders: i64,
        share: f64,
    },
    /// A broker named itself a partition's leader in Metadata long after it had refused a
    /// produce to it as not its leader, acknowledging none in between: a client that reaches
    /// only it loops metadata → produce → refusal.
    /// Two of the broker's locks taken in both orders (`broker::sync`): a deadlock waiting for
    /// two tasks or threads to meet there. Each order with where its locks were taken.
    LockOrderInversion {
        first: String,
        second: String,
        first_at: String,
        second_at: String,
    },
    LeaderRefuses {
        broker: i32,
        partition: i32,
        epoch: i32,
        refused_at_s: f64,
        named_at_s: f64,
    },
    /// A login or request was allowed although the users and ACLs allowed it at no point of
    /// the metadata log its broker may have decided at.
    ServedUnauthorized(Decision),
    /// A login or request was refused although the users and ACLs allowed it at every point
    /// of the metadata log its broker may have decided at.
    RefusedAuthorized(Decision),
    /// Brokers disagree on the security changes of the metadata log (or one published a point
    /// of it without a change below).
    SecurityDiverged { offset: i64, what: String },
    /// A broker never applied a security change another had applied by the time the faults
    /// had healed long enough.
    SecurityUnapplied {
        broker: String,
        furthest: i64,
        change: i64,
        settled_s: f64,
    },
    /// Two replicas of a group applied different memberships at the same index of its log.
    MembershipDiverged {
        group: u64,
        index: u64,
        nodes: Vec<u64>,
        members: Vec<String>,
    },
    /// A move of a partition's replicas did not end, or ended elsewhere than its target.
    MoveUnfinished {
        group: u64,
        epoch: i64,
        target: Vec<u64>,
        why: String,
    },
    /// A broker the workload retired was not moved off, unregistered and let go by the quorum
    /// within the deadline.
    RetireUnfinished { what: String, why: String },
    /// After the run a broker's metadata lists a topic the admin client was told is deleted,
    /// or misses one it was told is created.
    MetadataDiverged {
        broker: String,
        topic: String,
        /// Whether it should exist.
        expected: bool,
    },
    /// An anomaly of the transactional workload ([`crate::checks::txn`]), seen by a
    /// `read_committed` reader.
    Txn {
        anomaly: TxnAnomaly,
        reader: usize,
        detail: String,
    },
    /// Once the cluster was healthy, none of an acks=0 producer's sends to a partition reached
    /// its log.
    Acks0Blackholed {
        producer: usize,
        partition: i32,
        sent: usize,
        /// Where the first of them went.
        broker: String,
        since_s: f64,
    },
    /// While a broker stopped as planned (SIGTERM), a partition went longer than `bound_s`
    /// without an acknowledged write.
    StopStalled {
        stop: String,
        node: String,
        partition: i32,
        gap_s: f64,
        since_s: f64,
        bound_s: f64,
    },
    /// While a link was cut, a partition went longer than `bound_s` without an acknowledged
    /// write (`[expect] writes_resume_s`).
    CutStalled {
        cut: String,
        partition: i32,
        gap_s: f64,
        since_s: f64,
        bound_s: f64,
    },
    /// While a partition was moving, no acknowledged write for longer than the bound
    /// (`[expect] writes_during_moves_s`), and no fault explains it.
    MoveStalled {
        partition: i32,
        /// The move, as ListPartitionReassignments listed it.
        moving: (f64, f64),
        gap_s: f64,
        since_s: f64,
        bound_s: f64,
    },
    /// After the run a broker describes a topic's config key with a value no acknowledged
    /// change left there: an update was lost.
    ConfigLost {
        broker: String,
        /// When it was asked (`None`: after the run).
        at_s: Option<f64>,
        topic: String,
        key: String,
        /// What the broker described (`None`: the key was missing).
        found: Option<String>,
        /// The last acknowledged change to the key.
        acknowledged: String,
    },
    /// A compacted partition read from its start does not give a key's latest acknowledged
    /// record (or a later one of the key).
    NotLatest {
        how: NotLatest,
        partition: i32,
        key: String,
        /// The key's latest acknowledged record: its offset and name.
        acked: (i64, String),
        /// The key's latest record the read found, if any.
        read: Option<(i64, String)>,
    },
    /// A far-behind reader's read of a compacted partition from its start went past a key's
    /// latest record without it: a value (always owed) or a tombstone before its horizon.
    ScanMissed {
        reader: usize,
        partition: i32,
        /// When the read began.
        started_s: f64,
        key: String,
        /// The key's latest record below where the read stopped: its offset and name.
        latest: (i64, String),
        /// When the read went past it.
        read_at_s: f64,
        /// A tombstone's horizon: when it could have expired at the earliest.
        horizon_s: Option<f64>,
    },
}

/// How a compacted partition's read fails a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLatest {
    /// No record of the key at all, and no tombstone can explain it.
    Lost,
    /// An older value of the key instead of its latest acknowledged one.
    Stale,
    /// An older value of the key, when its latest acknowledged record is a tombstone: the key
    /// came back after it was deleted.
    Resurrected,
}

/// A login or request of a security probe, and the points of the metadata log (offsets) its
/// broker may have decided it at.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub user: String,
    pub what: String,
    /// Its index in the run's brokers (0 is `broker-1`).
    pub broker: usize,
    pub invoked_s: f64,
    pub completed_s: f64,
    pub from: i64,
    pub to: i64,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) at broker-{} between t={:.3} and {:.3} s, when it had applied the metadata log to offsets {}..={}",
            self.what,
            self.user,
            self.broker + 1,
            self.invoked_s,
            self.completed_s,
            self.from,
            self.to
        )
    }
}

impl Finding {
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::LostWrite { .. } => "lost-write",
            Finding::Duplicate { .. } => "duplicate",
            Finding::InconsistentOffset { .. } => "inconsistent-offset",
            Finding::NonMonotonicSend { .. } => "non-monotonic-send",
            Finding::NonMonotonicPoll { .. } => "non-monotonic-poll",
            Finding::PollSkip { .. } => "poll-skip",
            Finding::FailedWriteRead { .. } => "failed-write-read",
            Finding::PhantomRead { .. } => "phantom-read",
            Finding::Unseen { .. } => "unseen",
            Finding::Hung { .. } => "hung",
            Finding::NoProgress { .. } => "no-progress",
            Finding::Refused { .. } => "refused",
            Finding::TooFewAcknowledged { .. } => "too-few-acknowledged",
            Finding::Slow { .. } => "slow",
            Finding::SequenceRefused { .. } => "sequence-refused",
            Finding::CommitRegressed { .. } => "commit-regressed",
            Finding::StaleCommittedRead { .. } => "stale-committed-read",
            Finding::DoubleOwner { .. } => "double-owner",
            Finding::OwnedTwice { .. } => "owned-twice",
            Finding::FloodHeld { .. } => "flood-held",
            Finding::QuotaNotHeld { .. } => "quota-not-held",
            Finding::ReplicaBehind { .. } => "replica-behind",
            Finding::CommitMismatch { .. } => "commit-mismatch",
            Finding::GroupUnconsumed { .. } => "group-unconsumed",
            Finding::GroupNotDrained { .. } => "group-not-drained",
            Finding::ReplicaDivergence { .. } => "replica-divergence",
            Finding::OffsetGap { .. } => "offset-gap",
            Finding::WatermarkBackwards { .. } => "watermark-backwards",
            Finding::TwoLeaders { .. } => "two-leaders",
            Finding::BoundBroken { .. } => "bound-broken",
            Finding::DirFailed { .. } => "dir-failed",
            Finding::ElectionStorm { .. } => "election-storm",
            Finding::Leaderless { .. } => "leaderless",
            Finding::LeadershipImbalance { .. } => "leadership-imbalance",
            Finding::LeaderRefuses { .. } => "leader-refuses",
            Finding::LockOrderInversion { .. } => "lock-order-inversion",
            Finding::ServedUnauthorized(_) => "served-unauthorized",
            Finding::RefusedAuthorized(_) => "refused-authorized",
            Finding::SecurityDiverged { .. } => "security-diverged",
            Finding::SecurityUnapplied { .. } => "security-unapplied",
            Finding::MembershipDiverged { .. } => "membership-diverged",
            Finding::MoveUnfinished { .. } => "move-unfinished",
            Finding::RetireUnfinished { .. } => "retire-unfinished",
            Finding::MetadataDiverged { .. } => "metadata-diverged",
            Finding::ConfigLost { .. } => "config-lost-update",
            Finding::StopStalled { .. } => "stop-stalled",
            Finding::CutStalled { .. } => "cut-stalled",
            Finding::MoveStalled { .. } => "move-stalled",
            Finding::Acks0Blackholed { .. } => "acks0-blackholed",
            Finding::Txn { anomaly, .. } => anomaly.kind(),
            Finding::NotLatest { how, .. } => match how {
                NotLatest::Lost => "latest-lost",
                NotLatest::Stale => "stale-value",
                NotLatest::Resurrected => "resurrected",
            },
            Finding::ScanMissed { .. } => "scan-missed",
        }
    }

    pub fn is_liveness(&self) -> bool {
        matches!(
            self,
            Finding::Hung { .. }
                | Finding::NoProgress { .. }
                | Finding::TooFewAcknowledged { .. }
                | Finding::GroupNotDrained { .. }
                | Finding::MoveUnfinished { .. }
                | Finding::RetireUnfinished { .. }
        )
    }
}

/// The anomaly classes of the transactional checker ([`crate::checks::txn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxnAnomaly {
    AbortedRead,
    DirtyRead,
    LostWrite,
    Torn,
    Duplicate,
    NonMonotonic,
    Phantom,
    PipelineDuplicate,
    PipelineSkipped,
    PipelineOffsets,
    PipelineUncommittedInput,
    G1c,
}

impl TxnAnomaly {
    pub fn kind(self) -> &'static str {
        match self {
            TxnAnomaly::AbortedRead => "txn-aborted-read",
            TxnAnomaly::DirtyRead => "txn-dirty-read",
            TxnAnomaly::LostWrite => "txn-lost-write",
            TxnAnomaly::Torn => "txn-torn",
            TxnAnomaly::Duplicate => "txn-duplicate",
            TxnAnomaly::NonMonotonic => "txn-non-monotonic",
            TxnAnomaly::Phantom => "txn-phantom",
            TxnAnomaly::PipelineDuplicate => "pipeline-duplicate",
            TxnAnomaly::PipelineSkipped => "pipeline-skipped",
            TxnAnomaly::PipelineOffsets => "pipeline-inconsistent-offsets",
            TxnAnomaly::PipelineUncommittedInput => "pipeline-uncommitted-input",
            TxnAnomaly::G1c => "txn-g1c",
        }
    }

    /// What it means, for a finding's line.
    pub fn meaning(self) -> &'static str {
        match self {
            TxnAnomaly::AbortedRead => {
                "a read_committed reader got a write of an aborted transaction"
            }
            TxnAnomaly::DirtyRead => {
                "a read_committed reader got a write before its transaction asked to commit"
            }
            TxnAnomaly::LostWrite => "a committed transaction's write is missing",
            TxnAnomaly::Torn => "part of a transaction is visible and part is not",
            TxnAnomaly::Duplicate => "a transactional write was read at two offsets",
            TxnAnomaly::NonMonotonic => "a reader's reads of a partition went back",
            TxnAnomaly::Phantom => "a reader got a value no transaction wrote",
            TxnAnomaly::PipelineDuplicate => {
                "a pipeline's committed output holds one input value twice"
            }
            TxnAnomaly::PipelineSkipped => {
                "a pipeline committed offsets past an input value its committed output lacks"
            }
            TxnAnomaly::PipelineOffsets => {
                "a pipeline's output committed without the input offsets of its transaction"
            }
            TxnAnomaly::PipelineUncommittedInput => {
                "a pipeline's committed output was made from a value never committed"
            }
            TxnAnomaly::G1c => {
                "transactions read each other's writes in a cycle (circular information flow)"
            }
        }
    }
}

pub(crate) fn short(v: &Bytes) -> String {
    crate::history::value_name(v)
}

/// What a node was stuck on at some moment: its pending disk operations (which file, since
/// when) and how many produce requests were waiting for an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stuck {
    pub pending: Vec<String>,
    pub requests_waiting: usize,
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pending disk operations: {}; {} produce request(s) waiting",
            if self.pending.is_empty() {
                "none".to_string()
            } else {
                self.pending.join(", ")
            },
            self.requests_waiting
        )
    }
}
