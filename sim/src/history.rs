//! What the simulated clients did and saw: every operation with when it was invoked, when it
//! completed, and how (ok, failed, unknown), in completion order. The checkers read only this
//! and the final read of every partition.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Kafka's REQUEST_TIMED_OUT: the broker could not confirm the write, which may be in the log.
pub const REQUEST_TIMED_OUT: i16 = 7;
/// Kafka's KAFKA_STORAGE_ERROR: this broker answers it only for appends it never wrote.
pub const KAFKA_STORAGE_ERROR: i16 = 56;

/// Error codes after which a write may still have happened (Kafka's indefinite answers).
pub fn indefinite_code(code: i16) -> bool {
    // NOT_ENOUGH_REPLICAS_AFTER_APPEND (20): written to the leader, not replicated enough.
    matches!(code, REQUEST_TIMED_OUT | 20)
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

/// One produce attempt of one value (a retry is another attempt of the same value).
#[derive(Debug, Clone)]
pub struct Send {
    pub producer: usize,
    pub partition: i32,
    pub value: Bytes,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub acks: i16,
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

#[derive(Debug, Clone)]
pub enum Op {
    Send(Send),
    Poll(Poll),
    Admin(Admin),
}

impl Op {
    /// One line of the trace: what two runs of the same seed must agree on.
    pub fn trace_line(&self) -> String {
        match self {
            Op::Send(s) => format!(
                "{:.6} {:.6} send p{} {}/{} {:?} acks={} #{} {:?}",
                s.invoked_s,
                s.completed_s,
                s.producer,
                s.partition,
                s.value.len(),
                s.value,
                s.acks,
                s.attempt,
                s.outcome
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
                    "{:.6} {:.6} poll c{}/{} {} from {} {what}",
                    p.invoked_s, p.completed_s, p.consumer, p.session, p.partition, p.from_offset
                )
            }
            Op::Admin(a) => format!(
                "{:.6} {:.6} admin {} {:?}",
                a.invoked_s, a.completed_s, a.what, a.error
            ),
        }
    }
}

/// Every partition's records after the run, read back by a fresh client: `(offset, value)`.
pub type FinalRead = BTreeMap<i32, Vec<(i64, Bytes)>>;
