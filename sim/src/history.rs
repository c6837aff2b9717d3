//! What the simulated clients did and saw: every operation with when it was invoked, when it
//! completed, and how (ok, failed, unknown), in completion order. The checkers read only this
//! and the final read of every partition.

use std::collections::BTreeMap;

use bytes::Bytes;

pub mod probe;
pub mod txn;
pub use probe::Probe;
pub use txn::{PipelineOffsets, TxnDrained, TxnOp, TxnOutcome, TxnRead};

/// Kafka's REQUEST_TIMED_OUT: the broker could not confirm the write, which may be in the log.
pub const REQUEST_TIMED_OUT: i16 = 7;
/// Kafka's KAFKA_STORAGE_ERROR: this broker answers it only for appends it never wrote.
pub const KAFKA_STORAGE_ERROR: i16 = 56;

/// Error codes after which a write may still have happened (Kafka's indefinite answers).
pub fn indefinite_code(code: i16) -> bool {
    // NOT_ENOUGH_REPLICAS_AFTER_APPEND (20): written to the leader, not replicated enough.
    // NOT_LEADER_OR_FOLLOWER (6): in a cluster, a leader that lost its leadership after it took
    // the write answers it, and the write may still be committed by the next leader.
    matches!(code, REQUEST_TIMED_OUT | 20 | 6)
}

/// Error codes a Kafka producer retries.
pub fn retriable_code(code: i16) -> bool {
    // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT,
    // NETWORK_EXCEPTION, NOT_ENOUGH_REPLICAS(_AFTER_APPEND), KAFKA_STORAGE_ERROR.
    matches!(code, 3 | 5 | 6 | 7 | 13 | 19 | 20 | 56)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Acknowledged at this offset.
    Ok(i64),
    /// The broker answered with an error; `definite` when the write cannot have happened.
    Failed { code: i16, definite: bool },
    /// No answer (connection lost, client timeout, or acks=0): it may or may not have happened.
    Unknown,
}

impl SendOutcome {
    pub fn failed(code: i16) -> SendOutcome {
        SendOutcome::Failed {
            code,
            definite: !indefinite_code(code),
        }
    }

    /// The write cannot be in the log.
    pub fn definitely_failed(&self) -> bool {
        matches!(self, SendOutcome::Failed { definite: true, .. })
    }
}

/// An idempotent producer's batch: the producer id and epoch it wrote with, and its sequence
/// number in the partition (a retry keeps all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotence {
    pub producer_id: i64,
    pub epoch: i16,
    pub sequence: i32,
}

/// One produce attempt of one value (a retry is another attempt of the same value).
#[derive(Debug, Clone)]
pub struct Send {
    pub producer: usize,
    pub partition: i32,
    pub value: Bytes,
    /// Set for an idempotent producer: then a value is in the log at most once, whatever the
    /// retries.
    pub idempotence: Option<Idempotence>,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub acks: i16,
    /// The broker it was sent to: its index in the run's brokers (0 is `broker-1`);
    /// `usize::MAX` when not known (a twin run's librdkafka producer).
    pub broker: usize,
    pub invoked_s: f64,
    pub completed_s: f64,
    pub outcome: SendOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollResult {
    /// The records returned, `(offset, value)`, in the order the broker sent them.
    Records(Vec<(i64, Bytes)>),
    Failed(i16),
    Unknown,
}

/// One fetch of one partition by a consumer.
#[derive(Debug, Clone)]
pub struct Poll {
    pub consumer: usize,
    /// Changes when the consumer resets its position (offset out of range); within a session
    /// the consumer reads on from where it was.
    pub session: u32,
    pub partition: i32,
    /// The position the consumer fetched from.
    pub from_offset: i64,
    /// The broker it was sent to: its index in the run's brokers (0 is `broker-1`).
    pub broker: usize,
    pub invoked_s: f64,
    pub completed_s: f64,
    pub result: PollResult,
}

/// A topic administration call.
#[derive(Debug, Clone)]
pub struct Admin {
    pub what: String,
    pub invoked_s: f64,
    pub completed_s: f64,
    /// `None` when it succeeded.
    pub error: Option<String>,
}

/// How an OffsetCommit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Ok,
    /// The first error code of the answer (nothing of a refused commit counts).
    Failed(i16),
    /// No answer: it may have been taken.
    Unknown,
}

/// One OffsetCommit by a member of the consumer group.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The member (its incarnation: a member that crashes and comes back is another one).
    pub member: usize,
    pub member_id: String,
    pub generation: i32,
    /// `(partition, offset)`: the next offset to read.
    pub offsets: Vec<(i32, i64)>,
    pub invoked_s: f64,
    pub completed_s: f64,
    pub outcome: CommitOutcome,
}

/// The partitions a member was given for a generation (SyncGroup's answer).
#[derive(Debug, Clone)]
pub struct Assigned {
    pub member: usize,
    pub member_id: String,
    pub generation: i32,
    pub partitions: Vec<i32>,
    pub at_s: f64,
}

/// A member's JoinGroup answered: it is a member of `generation`, and it told the group it owned
/// `owned` as it joined (nothing, with an eager protocol).
#[derive(Debug, Clone)]
pub struct Joined {
    pub member: usize,
    pub member_id: String,
    pub generation: i32,
    pub owned: Vec<i32>,
    pub at_s: f64,
}

/// What a member owns changed other than by an assignment: it gave partitions up (before an
/// eager rejoin, when fenced, when it left) or its process ended (a crash). `partitions`: what
/// it still owns.
#[derive(Debug, Clone)]
pub struct Owns {
    pub member: usize,
    pub member_id: String,
    pub partitions: Vec<i32>,
    pub at_s: f64,
}

/// The port a `flood` fault strikes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FloodPort {
    /// The Kafka listener clients use.
    Client,
    /// The port the brokers link to each other on.
    #[default]
    InterBroker,
}

/// What each connection of a `flood` fault sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FloodSend {
    /// Bytes no Kafka frame nor transport hello starts with.
    Garbage,
    /// Nothing: an idle connection.
    #[default]
    Nothing,
    /// The first bytes of a frame, then nothing.
    Half,
}

/// What a stranger's flood of a broker's port saw (`flood` faults): how many connections it
/// opened, how many the broker closed within a second, how many it held at most at once for
/// longer, and the longest it held one.
#[derive(Debug, Clone)]
pub struct FloodSeen {
    /// The broker's index (from 0).
    pub broker: usize,
    pub port: FloodPort,
    pub send: FloodSend,
    pub at_s: f64,
    pub until_s: f64,
    /// Connections made (the rest were refused by the system or timed out connecting).
    pub opened: u32,
    /// Of those, closed by the broker within a second.
    pub closed_at_once: u32,
    /// The most connections held open at once for more than a second.
    pub held_max: u32,
    /// The longest a connection stayed open (the window's length: open when it ended).
    pub longest_held_s: f64,
}

/// A member's read of the group's committed offsets (OffsetFetch): at a join, to start from
/// them, and after its own commits were answered.
#[derive(Debug, Clone)]
pub struct CommittedRead {
    pub member: usize,
    /// `(partition, offset)`; -1: nothing committed.
    pub offsets: Vec<(i32, i64)>,
    pub invoked_s: f64,
    pub completed_s: f64,
}

/// Something a member of the group did or had done to it (joined, crashed, paused, left).
#[derive(Debug, Clone)]
pub struct MemberEvent {
    pub member: usize,
    pub at_s: f64,
    pub what: String,
}

/// What a client asked that needs authentication or authorization, as the security checker
/// judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessKind {
    /// A SASL login with this password.
    Login { password: String },
    /// A request of the probes' topic, group or of the cluster, at this version.
    Request { probe: Probe, version: i16 },
}

/// How the broker decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessOutcome {
    /// Logged in; or the request passed authorization (whatever else its answer said).
    Allowed,
    /// Refused with this authentication or authorization error code.
    Refused(i16),
    /// No answer: nobody knows.
    Unknown,
}

/// One request of a security probe: a user logging in, or asking something of a topic.
#[derive(Debug, Clone)]
pub struct Access {
    pub user: String,
    pub kind: AccessKind,
    /// The broker it was sent to: its index in the run's brokers (0 is `broker-1`).
    pub broker: usize,
    pub invoked_s: f64,
    pub completed_s: f64,
    pub outcome: AccessOutcome,
}

/// A broker published its replica of the security metadata (what the broker tells the
/// simulator: `broker::controller::SecurityPublished`), at `at_s` of the run.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Its index in the run's brokers (0 is `broker-1`).
    pub broker: usize,
    /// Which start of the broker published it.
    pub incarnation: u64,
    pub at_s: f64,
    /// The metadata log's offset it had applied up to.
    pub position: i64,
    /// The security changes applied since its last publication, each with the offset after
    /// its record.
    pub changes: Vec<(i64, Vec<broker::security::SecurityChange>)>,
}

impl Publication {
    /// One line of the trace (the changes by offset and kind).
    pub fn trace_line(&self) -> String {
        let changes: Vec<String> = self
            .changes
            .iter()
            .map(|(offset, changes)| format!("{offset}:{changes:?}"))
            .collect();
        format!(
            "{:.6} published b{} #{:x} at {} {}",
            self.at_s,
            self.broker + 1,
            self.incarnation,
            self.position,
            changes.join(" ")
        )
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    Send(Send),
    Access(Access),
    Poll(Poll),
    Admin(Admin),
    Commit(Commit),
    Assigned(Assigned),
    Joined(Joined),
    Owns(Owns),
    CommittedRead(CommittedRead),
    Flood(FloodSeen),
    Member(MemberEvent),
    Scan(Scan),
    Moving(Moving),
    /// A transaction of the transactional workload.
    Txn(TxnOp),
    /// A read of a `read_committed` reader of the transactional workload.
    TxnRead(TxnRead),
    TxnDrained(TxnDrained),
    /// A pipeline worker's committed input offsets after producing ended.
    PipelineOffsets(PipelineOffsets),
}

/// A partition ListPartitionReassignments listed as moving, from the first answer that listed it
/// to the first that did not (or the last asked, when the run ended first).
#[derive(Debug, Clone)]
pub struct Moving {
    pub partition: i32,
    pub from_s: f64,
    pub to_s: f64,
    /// Whether an answer said it was over.
    pub ended: bool,
}

/// A far-behind reader's read of one partition from its start (a compacted topic), up to the
/// high watermark of its first answer.
#[derive(Debug, Clone)]
pub struct Scan {
    pub reader: usize,
    pub partition: i32,
    pub started_s: f64,
    /// The high watermark of the first answer: the scan reads up to it.
    pub end: i64,
    /// Each answer: the offset asked from, the next one after what it returned, when it came.
    pub spans: Vec<(i64, i64, f64)>,
    /// The records read, by name.
    pub records: Vec<(i64, String)>,
    /// Whether it read up to `end` (not cut short by the run's end or an error).
    pub completed: bool,
}

impl Scan {
    /// When the scan read past `offset`: the answer that covered it.
    pub fn read_at(&self, offset: i64) -> Option<f64> {
        self.spans
            .iter()
            .find(|(from, to, _)| (*from..*to).contains(&offset))
            .map(|(_, _, at)| *at)
    }
}

/// A value's name, its padding left out (values are `name|....`).
pub fn value_name(v: &Bytes) -> String {
    let name = v.split(|&b| b == b'|').next().unwrap_or(v);
    String::from_utf8_lossy(name).into_owned()
}

impl Op {
    /// One line of the trace: what two runs of the same seed must agree on.
    pub fn trace_line(&self) -> String {
        match self {
            Op::Send(s) => format!(
                "{:.6} {:.6} send p{} b{} {}/{} {:?} acks={} #{} {:?}{}",
                s.invoked_s,
                s.completed_s,
                s.producer,
                s.broker.wrapping_add(1),
                s.partition,
                s.value.len(),
                value_name(&s.value),
                s.acks,
                s.attempt,
                s.outcome,
                s.idempotence
                    .map(|i| format!(
                        " pid={} epoch={} seq={}",
                        i.producer_id, i.epoch, i.sequence
                    ))
                    .unwrap_or_default()
            ),
            Op::Poll(p) => {
                let what = match &p.result {
                    PollResult::Records(r) => match (r.first(), r.last()) {
                        (Some(a), Some(b)) => format!("{} records {}..={}", r.len(), a.0, b.0),
                        _ => "0 records".into(),
                    },
                    other => format!("{other:?}"),
                };
                format!(
                    "{:.6} {:.6} poll c{}/{} b{} {} from {} {what}",
                    p.invoked_s,
                    p.completed_s,
                    p.consumer,
                    p.session,
                    p.broker + 1,
                    p.partition,
                    p.from_offset
                )
            }
            Op::Admin(a) => format!(
                "{:.6} {:.6} admin {} {:?}",
                a.invoked_s, a.completed_s, a.what, a.error
            ),
            Op::Commit(c) => format!(
                "{:.6} {:.6} commit m{} {} gen {} {:?} {:?}",
                c.invoked_s,
                c.completed_s,
                c.member,
                c.member_id,
                c.generation,
                c.offsets,
                c.outcome
            ),
            Op::Assigned(a) => format!(
                "{:.6} assigned m{} {} gen {} {:?}",
                a.at_s, a.member, a.member_id, a.generation, a.partitions
            ),
            Op::Joined(j) => format!(
                "{:.6} joined m{} {} gen {} owning {:?}",
                j.at_s, j.member, j.member_id, j.generation, j.owned
            ),
            Op::Flood(f) => format!(
                "{:.6} {:.6} flood b{} {:?} {:?} opened {} closed-at-once {} held-max {} longest {:.3}",
                f.at_s,
                f.until_s,
                f.broker + 1,
                f.port,
                f.send,
                f.opened,
                f.closed_at_once,
                f.held_max,
                f.longest_held_s
            ),
            Op::Owns(o) => format!(
                "{:.6} owns m{} {} {:?}",
                o.at_s, o.member, o.member_id, o.partitions
            ),
            Op::CommittedRead(r) => format!(
                "{:.6} {:.6} committed-read m{} {:?}",
                r.invoked_s, r.completed_s, r.member, r.offsets
            ),
            Op::Member(m) => format!("{:.6} member m{} {}", m.at_s, m.member, m.what),
            Op::Moving(m) => format!(
                "{:.6} {:.6} moving {} ended {}",
                m.from_s, m.to_s, m.partition, m.ended
            ),
            Op::Txn(t) => format!(
                "{:.6} {:.6} txn p{} #{} {:?} writes {:?}",
                t.invoked_s, t.completed_s, t.producer, t.n, t.outcome, t.writes
            ),
            Op::TxnRead(r) => format!(
                "{:.6} {:.6} txn-read r{} {} from {} lso {} records {}",
                r.invoked_s,
                r.completed_s,
                r.reader,
                r.partition,
                r.from,
                r.last_stable,
                r.records.len()
            ),
            Op::TxnDrained(d) => format!(
                "{:.6} txn-drained r{} {}",
                d.at_s, d.reader, d.complete
            ),
            Op::PipelineOffsets(o) => format!(
                "{:.6} pipeline-offsets w{} {:?}",
                o.at_s, o.worker, o.offsets
            ),
            Op::Scan(s) => format!(
                "{:.6} scan r{} {} to {} {} spans {} records {}",
                s.started_s,
                s.reader,
                s.partition,
                s.end,
                s.completed,
                s.spans.len(),
                s.records.len()
            ),
            Op::Access(a) => format!(
                "{:.6} {:.6} access {} b{} {:?} {:?}",
                a.invoked_s,
                a.completed_s,
                a.user,
                a.broker + 1,
                a.kind,
                a.outcome
            ),
        }
    }
}

/// Every partition's records after the run, read back by a fresh client: `(offset, value)`.
pub type FinalRead = BTreeMap<i32, Vec<(i64, Bytes)>>;

/// Offsets `[from, to)` of a partition the final read could not read (the broker answered
/// `code` every time): it read around them, so what is missing is named exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
    pub code: i16,
}

/// What the final read could not read: damaged ranges, and each partition's log start (below
/// it, records were deleted by retention or DeleteRecords, which is not a loss); and where it
/// ended: each partition's high watermark, which is past the last data record when control
/// batches (a new Raft leader's own entry) follow it.
#[derive(Debug, Clone, Default)]
pub struct ReadGaps {
    pub unreadable: Vec<Unreadable>,
    pub log_start: BTreeMap<i32, i64>,
    pub log_end: BTreeMap<i32, i64>,
}

impl ReadGaps {
    /// Whether `offset` of `partition` was deleted by retention before the final read.
    pub fn below_log_start(&self, partition: i32, offset: i64) -> bool {
        self.log_start.get(&partition).is_some_and(|&s| offset < s)
    }

    /// The damaged range holding `offset` of `partition`, if any.
    pub fn unreadable_at(&self, partition: i32, offset: i64) -> Option<&Unreadable> {
        self.unreadable
            .iter()
            .find(|u| u.partition == partition && (u.from..u.to).contains(&offset))
    }
}

/// The consumer group's committed offsets after the run, by partition (-1: none).
pub type FinalCommitted = BTreeMap<i32, i64>;

/// A high watermark a consumer was told, with when it asked and when it heard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermark {
    pub partition: i32,
    pub invoked_s: f64,
    pub completed_s: f64,
    pub value: i64,
}

/// What the brokers told of memberships and moves, as applied (`broker::observe`; in
/// simulation only).
#[derive(Debug, Clone, Default)]
pub struct MovesObserved {
    pub memberships: Vec<broker::replication::node::MembershipApplied>,
    pub moves: Vec<broker::controller::moves::MoveApplied>,
}

/// One line a broker logged during a run (its tracing event), kept for the explorable page:
/// when, on which node, and what.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogLine {
    /// Seconds into the run.
    pub at_s: f64,
    /// The node's name (`broker-1`, …).
    pub node: String,
    /// `ERROR`, `WARN`, `INFO`, …
    pub level: String,
    /// The module that logged it.
    pub target: String,
    pub message: String,
    /// Its fields, `(name, value)`, in the order logged.
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// A field's value, if the line has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The target of the broker's trace line for each frame of Raft messages it sends a peer (the
/// explorable page draws them).
pub const FRAMES_TARGET: &str = "broker::replication::frames";

/// The lines a run's brokers logged, up to a bound, and how many more there were.
#[derive(Debug, Clone, Default)]
pub struct Logged {
    pub lines: Vec<LogLine>,
    pub dropped: u64,
}
