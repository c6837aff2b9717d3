//! Checkers over a run's history and final read: safety (the Jepsen Kafka anomaly classes) and
//! liveness (after the faults heal, every partition takes and serves writes again).
//!
//! Pure functions of the history, so each is tested on hand-written histories below.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;

use crate::history::{FinalRead, Op, Poll, PollResult, ReadGaps, Send, SendOutcome};

/// Every kind of finding, as scenario files name them in `expect.outcome`.
pub const FINDING_KINDS: [&str; 26] = [
    "lost-write",
    "duplicate",
    "sequence-refused",
    "commit-regressed",
    "double-owner",
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
    "refused",
    "slow",
    "replica-divergence",
    "watermark-backwards",
    "two-leaders",
    "stale-committed-read",
    "bound-broken",
    "dir-failed",
    "leader-refuses",
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
    /// A broker named itself a partition's leader in Metadata long after it had refused a
    /// produce to it as not its leader, acknowledging none in between: a client that reaches
    /// only it loops metadata → produce → refusal.
    LeaderRefuses {
        broker: i32,
        partition: i32,
        epoch: i32,
        refused_at_s: f64,
        named_at_s: f64,
    },
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
            Finding::Slow { .. } => "slow",
            Finding::SequenceRefused { .. } => "sequence-refused",
            Finding::CommitRegressed { .. } => "commit-regressed",
            Finding::StaleCommittedRead { .. } => "stale-committed-read",
            Finding::DoubleOwner { .. } => "double-owner",
            Finding::CommitMismatch { .. } => "commit-mismatch",
            Finding::GroupUnconsumed { .. } => "group-unconsumed",
            Finding::GroupNotDrained { .. } => "group-not-drained",
            Finding::ReplicaDivergence { .. } => "replica-divergence",
            Finding::WatermarkBackwards { .. } => "watermark-backwards",
            Finding::TwoLeaders { .. } => "two-leaders",
            Finding::BoundBroken { .. } => "bound-broken",
            Finding::DirFailed { .. } => "dir-failed",
            Finding::LeaderRefuses { .. } => "leader-refuses",
        }
    }

    pub fn is_liveness(&self) -> bool {
        matches!(
            self,
            Finding::Hung { .. } | Finding::NoProgress { .. } | Finding::GroupNotDrained { .. }
        )
    }
}

fn short(v: &Bytes) -> String {
    crate::history::value_name(v)
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::LostWrite {
                partition,
                value,
                seen,
            } => write!(
                f,
                "lost write: {:?} ({seen} in partition {partition}) is not in the log",
                short(value)
            ),
            Finding::Duplicate {
                partition,
                value,
                offsets,
                attempts,
            } => write!(
                f,
                "duplicate: {:?} is at offsets {offsets:?} of partition {partition} but could have \
                 been written {attempts} time(s)",
                short(value)
            ),
            Finding::InconsistentOffset {
                partition,
                offset,
                seen,
            } => write!(
                f,
                "inconsistent offset {partition}/{offset}: {}",
                seen.join("; ")
            ),
            Finding::NonMonotonicSend {
                producer,
                partition,
                previous,
                offset,
            } => write!(
                f,
                "non-monotonic send: producer {producer} was acknowledged offset {offset} in \
                 partition {partition} after offset {previous}"
            ),
            Finding::NonMonotonicPoll {
                consumer,
                partition,
                previous,
                offset,
            } => write!(
                f,
                "non-monotonic poll: consumer {consumer} read offset {offset} of partition \
                 {partition} after offset {previous}"
            ),
            Finding::PollSkip {
                consumer,
                partition,
                from,
                to,
                skipped,
            } => write!(
                f,
                "poll skip: consumer {consumer} went from offset {from} to {to} in partition \
                 {partition}, skipping {} record(s) in the log (first: {:?})",
                skipped.len(),
                &skipped[..skipped.len().min(5)]
            ),
            Finding::FailedWriteRead {
                partition,
                value,
                offset,
                codes,
            } => write!(
                f,
                "read of a failed write: {:?} at {partition}/{offset}, although every attempt \
                 definitely failed (error codes {codes:?})",
                short(value)
            ),
            Finding::PhantomRead {
                partition,
                value,
                offset,
            } => write!(
                f,
                "phantom read: {:?} at {partition}/{offset} was never sent",
                short(value)
            ),
            Finding::Unseen {
                partition,
                count,
                first,
            } => write!(
                f,
                "unseen: {count} acknowledged write(s) in partition {partition} were never \
                 polled by a consumer (first: {:?})",
                first.iter().map(short).collect::<Vec<_>>()
            ),
            Finding::Hung {
                node,
                at_s,
                waited_s,
                stuck,
            } => write!(
                f,
                "liveness: node {node} did not answer a produce for {waited_s} s (at t={at_s:.1} s); \
                 {stuck}"
            ),
            Finding::NoProgress {
                partition,
                what,
                healed_s,
                deadline_s,
                stuck,
            } => write!(
                f,
                "liveness: partition {partition} {what} within {deadline_s} s after the faults \
                 healed at t={healed_s} s; then: {stuck}"
            ),
            Finding::Refused { count, first_code } => write!(
                f,
                "{count} produce request(s) refused (first error code {first_code}) although \
                 nothing justified a refusal"
            ),
            Finding::Slow {
                figure,
                value,
                bound,
            } => write!(
                f,
                "slow: {figure} was {value:.2}, outside the scenario's bound {bound} (measured \
                 outside fault windows)"
            ),
            Finding::SequenceRefused {
                producer,
                partition,
                producer_id,
                sequence,
            } => write!(
                f,
                "sequence refused: producer {producer} (id {producer_id}) sent sequence {sequence} \
                 to partition {partition} right after the one before was acknowledged, and was \
                 told OUT_OF_ORDER_SEQUENCE_NUMBER"
            ),
            Finding::CommitRegressed {
                partition,
                previous,
                offset,
                member,
                generation,
            } => write!(
                f,
                "committed offset went backwards: partition {partition} from {previous} to \
                 {offset} (member {member}, generation {generation})"
            ),
            Finding::StaleCommittedRead {
                partition,
                read,
                acknowledged,
                member,
                at_s,
            } => write!(
                f,
                "stale committed offset: member {member} read {read} for partition {partition} \
                 at {at_s:.3} s, after {acknowledged} was acknowledged"
            ),
            Finding::DoubleOwner {
                generation,
                partition,
                members,
            } => write!(
                f,
                "double owner: partition {partition} was given to {members:?} in generation \
                 {generation}"
            ),
            Finding::CommitMismatch {
                partition,
                committed,
                processed,
                log_end,
            } => write!(
                f,
                "commit mismatch: the group committed {committed} for partition {partition}, \
                 its members read to {processed}, the log ends at {log_end}"
            ),
            Finding::GroupUnconsumed {
                partition,
                count,
                first,
            } => write!(
                f,
                "group unconsumed: {count} acknowledged write(s) in partition {partition} were \
                 never polled by a member of the group (first: {:?})",
                first.iter().map(short).collect::<Vec<_>>()
            ),
            Finding::GroupNotDrained { partitions } => write!(
                f,
                "liveness: the group did not read and commit partitions {partitions:?} to their \
                 end in time"
            ),
            Finding::ReplicaDivergence {
                partition,
                offset,
                nodes,
            } => write!(
                f,
                "replicas disagree: partition {partition} at offset {offset} below the high \
                 watermark differs between {}",
                nodes.join(" and ")
            ),
            Finding::WatermarkBackwards {
                partition,
                before,
                after,
                at_s,
            } => write!(
                f,
                "high watermark went back: partition {partition} was {before}, then {after} at \
                 t={at_s:.1} s"
            ),
            Finding::TwoLeaders {
                partition,
                epoch,
                leaders,
            } => write!(
                f,
                "two leaders in one epoch: partition {partition} epoch {epoch} led by {leaders:?}"
            ),
            Finding::BoundBroken {
                node,
                bound,
                peak,
                limit,
            } => write!(
                f,
                "bound broken: {node} held {peak} of {bound}, whose bound is {limit}"
            ),
            Finding::DirFailed { node, times } => write!(
                f,
                "data directory failed: {node}'s was declared failed {times} time(s) with no disk fault in the run"
            ),
            Finding::LeaderRefuses {
                broker,
                partition,
                epoch,
                refused_at_s,
                named_at_s,
            } => write!(
                f,
                "leader that refuses: broker {broker} refused a produce to partition {partition} as not its leader at t={refused_at_s:.1} s and acknowledged none there since, yet named itself its leader in epoch {epoch} at t={named_at_s:.1} s"
            ),
        }
    }
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

/// What the checkers need to know besides the history.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The consumers read every partition to its end after the workload: an acknowledged write
    /// none of them polled is `unseen`.
    pub consumers_drained: bool,
    /// What the final read could not read (damaged ranges; below the log start).
    pub gaps: ReadGaps,
    /// A replicated cluster: an acks=1 acknowledgement says only that the leader wrote the
    /// batch, and a leader that loses its leadership before the batch commits loses it (its
    /// suffix is cut and the offset reused). Such an acknowledgement is checked as an unknown
    /// outcome; acks=all ones and everything a consumer polled (below the high watermark) keep
    /// every check.
    pub leader_acks_weak: bool,
}

/// Counts the report shows beside the findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Values stored more than once, each allowed by the producer's retries.
    pub retry_duplicates: usize,
    /// Records read back after the run.
    pub records: usize,
    /// Records consumers polled (with repeats).
    pub polled: usize,
}

/// Every safety check over the history and the final read.
pub fn safety(history: &[Op], log: &FinalRead, opts: &Options) -> (Vec<Finding>, Stats) {
    let weakened: Vec<Send> = history
        .iter()
        .filter_map(|o| match o {
            Op::Send(s) if opts.leader_acks_weak && s.acks == 1 => Some(Send {
                outcome: match s.outcome {
                    SendOutcome::Ok(_) => SendOutcome::Unknown,
                    ref other => other.clone(),
                },
                ..s.clone()
            }),
            _ => None,
        })
        .collect();
    let sends: Vec<&Send> = history
        .iter()
        .filter_map(|o| match o {
            Op::Send(s) if !(opts.leader_acks_weak && s.acks == 1) => Some(s),
            _ => None,
        })
        .chain(weakened.iter())
        .collect();
    let polls: Vec<&Poll> = history
        .iter()
        .filter_map(|o| match o {
            Op::Poll(p) => Some(p),
            _ => None,
        })
        .collect();
    let mut findings = Vec::new();
    let mut stats = Stats {
        records: log.values().map(Vec::len).sum(),
        ..Stats::default()
    };

    // Where each value is in the final log, and which offsets the log has.
    let mut log_at: HashMap<(i32, &Bytes), Vec<i64>> = HashMap::new();
    let mut log_offsets: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for (p, records) in log {
        for (o, v) in records {
            log_at.entry((*p, v)).or_default().push(*o);
            log_offsets.entry(*p).or_default().insert(*o);
        }
    }
    let attempts = attempts_by_value(&sends);

    findings.extend(inconsistent_offsets(&sends, &polls, log));
    findings.extend(lost_writes(&sends, &polls, &log_at, &opts.gaps));
    let (dups, retry_dups) = duplicates(&log_at, &attempts);
    findings.extend(dups);
    stats.retry_duplicates = retry_dups;
    findings.extend(failed_and_phantom_reads(&polls, log, &attempts));
    findings.extend(non_monotonic_sends(&sends));
    findings.extend(idempotent_order(&sends));
    findings.extend(sequences_refused(&sends));
    findings.extend(poll_order(&polls, &log_offsets));
    stats.polled = polls
        .iter()
        .map(|p| match &p.result {
            PollResult::Records(r) => r.len(),
            _ => 0,
        })
        .sum();
    if opts.consumers_drained {
        findings.extend(unseen(&sends, &polls));
    }
    (findings, stats)
}

type Attempts<'a> = HashMap<(i32, &'a Bytes), Vec<&'a Send>>;

fn attempts_by_value<'a>(sends: &[&'a Send]) -> Attempts<'a> {
    let mut m: Attempts<'a> = HashMap::new();
    for s in sends {
        m.entry((s.partition, &s.value)).or_default().push(s);
    }
    m
}

/// An offset observed with two values (by an acknowledgement, a poll, or the final read).
fn inconsistent_offsets(sends: &[&Send], polls: &[&Poll], log: &FinalRead) -> Vec<Finding> {
    let mut seen: BTreeMap<(i32, i64), Vec<(Bytes, String)>> = BTreeMap::new();
    let mut note = |p: i32, o: i64, v: &Bytes, who: String| {
        let e = seen.entry((p, o)).or_default();
        if !e.iter().any(|(x, _)| x == v) {
            e.push((v.clone(), who));
        }
    };
    for (p, records) in log {
        for (o, v) in records {
            note(*p, *o, v, "read back".into());
        }
    }
    for poll in polls {
        if let PollResult::Records(r) = &poll.result {
            for (o, v) in r {
                note(
                    poll.partition,
                    *o,
                    v,
                    format!("polled by consumer {}", poll.consumer),
                );
            }
        }
    }
    for s in sends {
        if let SendOutcome::Ok(o) = s.outcome {
            note(
                s.partition,
                o,
                &s.value,
                format!("acknowledged to producer {}", s.producer),
            );
        }
    }
    seen.into_iter()
        .filter(|(_, vs)| vs.len() > 1)
        .map(|((partition, offset), vs)| Finding::InconsistentOffset {
            partition,
            offset,
            seen: vs
                .into_iter()
                .map(|(v, who)| format!("{:?} {who}", short(&v)))
                .collect(),
        })
        .collect()
}

/// Acknowledged or polled values that are not in the final log at all: each one named (the
/// final read reads around damaged batches, so only what is really missing is). Offsets below
/// the final log start were deleted by retention, not lost.
fn lost_writes(
    sends: &[&Send],
    polls: &[&Poll],
    log_at: &HashMap<(i32, &Bytes), Vec<i64>>,
    gaps: &ReadGaps,
) -> Vec<Finding> {
    let mut reported: HashSet<(i32, &Bytes)> = HashSet::new();
    let mut out = Vec::new();
    let seen = |how: &str, partition: i32, o: i64| {
        match gaps.unreadable_at(partition, o) {
        Some(u) => format!(
            "{how} at offset {o}, which the final read could not read: offsets {}..{} answered error {}",
            u.from, u.to, u.code
        ),
        None => format!("{how} at offset {o}"),
    }
    };
    let acked = sends.iter().filter_map(|s| match s.outcome {
        SendOutcome::Ok(o) => Some((s.partition, o, &s.value, "acknowledged")),
        _ => None,
    });
    let polled = polls.iter().flat_map(|poll| match &poll.result {
        PollResult::Records(r) => r
            .iter()
            .map(|(o, v)| (poll.partition, *o, v, "polled"))
            .collect(),
        _ => Vec::new(),
    });
    for (partition, o, value, how) in acked.chain(polled) {
        let key = (partition, value);
        if log_at.contains_key(&key) || gaps.below_log_start(partition, o) || !reported.insert(key)
        {
            continue;
        }
        out.push(Finding::LostWrite {
            partition,
            value: value.clone(),
            seen: seen(how, partition, o),
        });
    }
    out
}

/// Values at more offsets than attempts that may have written them. Returns the findings and
/// the number of duplicates the retries explain.
fn duplicates(
    log_at: &HashMap<(i32, &Bytes), Vec<i64>>,
    attempts: &Attempts<'_>,
) -> (Vec<Finding>, usize) {
    let mut out = Vec::new();
    let mut allowed = 0;
    let mut keys: Vec<_> = log_at.iter().filter(|(_, o)| o.len() > 1).collect();
    keys.sort_by_key(|((p, _), offsets)| (*p, offsets[0]));
    for ((partition, value), offsets) in keys {
        let sent = attempts.get(&(*partition, *value));
        let mut possible = sent
            .map(|a| a.iter().filter(|s| !s.outcome.definitely_failed()).count())
            .unwrap_or(0);
        // An idempotent producer's retries never write twice: none is explained by them.
        if sent.is_some_and(|a| a.iter().any(|s| s.idempotence.is_some())) {
            possible = possible.min(1);
        }
        if possible >= offsets.len() {
            allowed += 1;
        } else if possible > 0 {
            out.push(Finding::Duplicate {
                partition: *partition,
                value: (*value).clone(),
                offsets: offsets.clone(),
                attempts: possible,
            });
        }
        // possible == 0: a failed or phantom read, reported there.
    }
    (out, allowed)
}

/// Reads of values whose every attempt definitely failed, and of values never sent.
fn failed_and_phantom_reads(
    polls: &[&Poll],
    log: &FinalRead,
    attempts: &Attempts<'_>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut reported: HashSet<(i32, Bytes)> = HashSet::new();
    let polled = polls.iter().flat_map(|p| match &p.result {
        PollResult::Records(r) => r.iter().map(|(o, v)| (p.partition, *o, v)).collect(),
        _ => Vec::new(),
    });
    let read_back = log
        .iter()
        .flat_map(|(p, r)| r.iter().map(move |(o, v)| (*p, *o, v)));
    for (partition, offset, value) in read_back.chain(polled) {
        if reported.contains(&(partition, value.clone())) {
            continue;
        }
        let finding = match attempts.get(&(partition, value)) {
            None => Finding::PhantomRead {
                partition,
                value: value.clone(),
                offset,
            },
            Some(a) if a.iter().all(|s| s.outcome.definitely_failed()) => {
                Finding::FailedWriteRead {
                    partition,
                    value: value.clone(),
                    offset,
                    codes: a
                        .iter()
                        .filter_map(|s| match s.outcome {
                            SendOutcome::Failed { code, .. } => Some(code),
                            _ => None,
                        })
                        .collect(),
                }
            }
            Some(_) => continue,
        };
        reported.insert((partition, value.clone()));
        out.push(finding);
    }
    out
}

/// One producer has one request in flight: its acknowledged offsets in a partition increase.
fn non_monotonic_sends(sends: &[&Send]) -> Vec<Finding> {
    let mut last: HashMap<(usize, i32), i64> = HashMap::new();
    let mut out = Vec::new();
    let mut ordered: Vec<&&Send> = sends.iter().collect();
    ordered.sort_by(|a, b| a.invoked_s.total_cmp(&b.invoked_s));
    for s in ordered {
        if let SendOutcome::Ok(o) = s.outcome {
            if let Some(&prev) = last.get(&(s.producer, s.partition)) {
                if o <= prev {
                    out.push(Finding::NonMonotonicSend {
                        producer: s.producer,
                        partition: s.partition,
                        previous: prev,
                        offset: o,
                    });
                }
            }
            last.insert((s.producer, s.partition), o);
        }
    }
    out
}

/// An idempotent producer's acknowledged batches of a partition are in the log in the order of
/// their sequence numbers, whatever order the retries came in.
fn idempotent_order(sends: &[&Send]) -> Vec<Finding> {
    /// (producer id, epoch, partition) → (sequence, offset, producer slot) of each acked batch.
    type Acked = BTreeMap<(i64, i16, i32), Vec<(i32, i64, usize)>>;
    let mut acked: Acked = BTreeMap::new();
    for s in sends {
        if let (Some(i), SendOutcome::Ok(o)) = (s.idempotence, &s.outcome) {
            acked
                .entry((i.producer_id, i.epoch, s.partition))
                .or_default()
                .push((i.sequence, *o, s.producer));
        }
    }
    let mut out = Vec::new();
    for ((_, _, partition), mut batches) in acked {
        batches.sort();
        batches.dedup();
        for w in batches.windows(2) {
            let ((s1, o1, _), (s2, o2, producer)) = (w[0], w[1]);
            if s2 > s1 && o2 <= o1 {
                out.push(Finding::NonMonotonicSend {
                    producer,
                    partition,
                    previous: o1,
                    offset: o2,
                });
            }
        }
    }
    out
}

/// OUT_OF_ORDER_SEQUENCE_NUMBER for a batch whose predecessor (of the same producer id, epoch
/// and partition) was acknowledged before it was sent — or for the first batch of a producer id
/// on a partition when no later batch of it can have got there first (a broker takes any
/// sequence from a producer it does not know, as Kafka's does).
fn sequences_refused(sends: &[&Send]) -> Vec<Finding> {
    const OUT_OF_ORDER: i16 = 45;
    let mut out = Vec::new();
    for s in sends {
        let (
            Some(i),
            SendOutcome::Failed {
                code: OUT_OF_ORDER, ..
            },
        ) = (s.idempotence, &s.outcome)
        else {
            continue;
        };
        let same = |o: &&&Send, pred: &dyn Fn(i32) -> bool| {
            o.partition == s.partition
                && o.idempotence.is_some_and(|p| {
                    p.producer_id == i.producer_id && p.epoch == i.epoch && pred(p.sequence)
                })
        };
        let refused_wrongly = if i.sequence == 0 {
            !sends.iter().any(|o| {
                same(&o, &|seq| seq > 0)
                    && o.invoked_s < s.invoked_s
                    && !o.outcome.definitely_failed()
            })
        } else {
            sends.iter().any(|o| {
                same(&o, &|seq| seq == i.sequence - 1)
                    && matches!(o.outcome, SendOutcome::Ok(_))
                    && o.completed_s <= s.invoked_s
            })
        };
        if refused_wrongly {
            out.push(Finding::SequenceRefused {
                producer: s.producer,
                partition: s.partition,
                producer_id: i.producer_id,
                sequence: i.sequence,
            });
        }
    }
    out
}

/// Within a consumer's session, polled offsets of a partition increase, and nothing between the
/// consumer's position and what it got back is in the log.
fn poll_order(polls: &[&Poll], log_offsets: &BTreeMap<i32, BTreeSet<i64>>) -> Vec<Finding> {
    let empty = BTreeSet::new();
    let mut last: HashMap<(usize, u32, i32), i64> = HashMap::new();
    let mut out = Vec::new();
    for poll in polls {
        let PollResult::Records(records) = &poll.result else {
            continue;
        };
        let key = (poll.consumer, poll.session, poll.partition);
        let offsets = log_offsets.get(&poll.partition).unwrap_or(&empty);
        let mut expect_from = poll.from_offset;
        for (o, _) in records {
            if let Some(&prev) = last.get(&key) {
                if *o <= prev {
                    out.push(Finding::NonMonotonicPoll {
                        consumer: poll.consumer,
                        partition: poll.partition,
                        previous: prev,
                        offset: *o,
                    });
                    continue;
                }
            }
            if *o > expect_from {
                let skipped: Vec<i64> = offsets.range(expect_from..*o).copied().collect();
                if !skipped.is_empty() {
                    out.push(Finding::PollSkip {
                        consumer: poll.consumer,
                        partition: poll.partition,
                        from: expect_from,
                        to: *o,
                        skipped,
                    });
                }
            }
            last.insert(key, *o);
            expect_from = o + 1;
        }
    }
    out
}

/// Acknowledged writes that no consumer polled.
fn unseen(sends: &[&Send], polls: &[&Poll]) -> Vec<Finding> {
    acked_not_polled(sends.iter().copied(), polls.iter().copied())
        .into_iter()
        .map(|(partition, count, first)| Finding::Unseen {
            partition,
            count,
            first,
        })
        .collect()
}

/// Per partition, the acknowledged writes of `sends` that none of `polls` returned, each value
/// once: `(partition, how many, the first five)`.
pub(crate) fn acked_not_polled<'a>(
    sends: impl Iterator<Item = &'a Send>,
    polls: impl Iterator<Item = &'a Poll>,
) -> Vec<(i32, usize, Vec<Bytes>)> {
    let mut polled: HashSet<(i32, &Bytes)> = HashSet::new();
    for p in polls {
        if let PollResult::Records(r) = &p.result {
            polled.extend(r.iter().map(|(_, v)| (p.partition, v)));
        }
    }
    let mut missing: BTreeMap<i32, Vec<Bytes>> = BTreeMap::new();
    let mut counted: HashSet<(i32, &Bytes)> = HashSet::new();
    for s in sends {
        let key = (s.partition, &s.value);
        if matches!(s.outcome, SendOutcome::Ok(_)) && !polled.contains(&key) && counted.insert(key)
        {
            missing
                .entry(s.partition)
                .or_default()
                .push(s.value.clone());
        }
    }
    missing
        .into_iter()
        .map(|(partition, values)| {
            let count = values.len();
            (partition, count, values.into_iter().take(5).collect())
        })
        .collect()
}

/// After the faults heal at `healed_s`, every partition must take an acknowledged write — and,
/// with consumers, serve one to a poll — within `deadline_s`. Checked only when the workload
/// runs that long after the heal; `stuck` is what the node was stuck on at the deadline.
pub fn progress_after_heal(
    history: &[Op],
    partitions: i32,
    (healed_s, deadline_s): (u64, u64),
    workload_end_s: u64,
    consumers: bool,
    stuck: &Stuck,
) -> Vec<Finding> {
    if healed_s + deadline_s >= workload_end_s {
        return Vec::new();
    }
    let (from, by) = (healed_s as f64, (healed_s + deadline_s) as f64);
    let within = |t: f64| t >= from && t <= by;
    let mut out = Vec::new();
    for partition in 0..partitions {
        let wrote = history.iter().any(|op| {
            matches!(op, Op::Send(s) if s.partition == partition
                && matches!(s.outcome, SendOutcome::Ok(_)) && within(s.completed_s))
        });
        if !wrote {
            out.push(Finding::NoProgress {
                partition,
                what: "took no acknowledged write",
                healed_s,
                deadline_s,
                stuck: stuck.clone(),
            });
        }
        let served = history.iter().any(|op| {
            matches!(op, Op::Poll(p) if p.partition == partition && within(p.completed_s)
                && matches!(&p.result, PollResult::Records(r) if !r.is_empty()))
        });
        if consumers && !served {
            out.push(Finding::NoProgress {
                partition,
                what: "served no record to a consumer",
                healed_s,
                deadline_s,
                stuck: stuck.clone(),
            });
        }
    }
    out
}

/// Produce requests that got an error where the scenario allows none.
pub fn refusals(history: &[Op]) -> Option<Finding> {
    let codes: Vec<i16> = history
        .iter()
        .filter_map(|op| match op {
            Op::Send(Send {
                broker: 0,
                outcome: SendOutcome::Failed { code, .. },
                ..
            }) => Some(*code),
            _ => None,
        })
        .collect();
    codes.first().map(|&first_code| Finding::Refused {
        count: codes.len(),
        first_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn send(producer: usize, partition: i32, value: &str, t: f64, outcome: SendOutcome) -> Op {
        send_attempt(producer, partition, value, 1, t, outcome)
    }

    fn send_attempt(
        producer: usize,
        partition: i32,
        value: &str,
        attempt: u32,
        t: f64,
        outcome: SendOutcome,
    ) -> Op {
        Op::Send(Send {
            broker: 0,
            producer,
            partition,
            value: v(value),
            idempotence: None,
            attempt,
            acks: 1,
            invoked_s: t,
            completed_s: t + 0.01,
            outcome,
        })
    }

    fn poll(consumer: usize, partition: i32, from: i64, t: f64, records: &[(i64, &str)]) -> Op {
        Op::Poll(Poll {
            broker: 0,
            consumer,
            session: 0,
            partition,
            from_offset: from,
            invoked_s: t,
            completed_s: t + 0.01,
            result: PollResult::Records(records.iter().map(|(o, s)| (*o, v(s))).collect()),
        })
    }

    fn log(records: &[(i32, i64, &str)]) -> FinalRead {
        let mut l = FinalRead::new();
        for (p, o, s) in records {
            l.entry(*p).or_default().push((*o, v(s)));
        }
        l
    }

    /// A clean history: two producers, two partitions, one consumer that read everything.
    fn clean() -> (Vec<Op>, FinalRead) {
        let h = vec![
            send(0, 0, "a", 1.0, SendOutcome::Ok(0)),
            send(1, 1, "b", 1.1, SendOutcome::Ok(0)),
            send(0, 0, "c", 1.2, SendOutcome::Ok(1)),
            send(1, 1, "d", 1.3, SendOutcome::failed(56)),
            send(1, 1, "e", 1.4, SendOutcome::Ok(1)),
            poll(0, 0, 0, 2.0, &[(0, "a"), (1, "c")]),
            poll(0, 1, 0, 2.1, &[(0, "b")]),
            poll(0, 1, 1, 2.2, &[(1, "e")]),
        ];
        let l = log(&[(0, 0, "a"), (0, 1, "c"), (1, 0, "b"), (1, 1, "e")]);
        (h, l)
    }

    fn drained() -> Options {
        Options {
            consumers_drained: true,
            ..Options::default()
        }
    }

    fn check(h: &[Op], l: &FinalRead) -> Vec<Finding> {
        safety(h, l, &drained()).0
    }

    fn kinds(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(Finding::kind).collect()
    }

    #[test]
    fn a_clean_history_has_no_findings() {
        let (h, l) = clean();
        let (f, stats) = safety(&h, &l, &drained());
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(stats.records, 4);
        assert_eq!(stats.polled, 4);
        assert!(progress_after_heal(&h, 2, (0, 3), 10, true, &Stuck::default()).is_empty());
        assert_eq!(
            refusals(&h),
            Some(Finding::Refused {
                count: 1,
                first_code: 56
            })
        );
    }

    #[test]
    fn an_acknowledged_write_missing_from_the_log_is_lost() {
        let (mut h, l) = clean();
        h.push(send(0, 0, "x", 3.0, SendOutcome::Ok(2)));
        let f = safety(&h, &l, &Options::default()).0;
        assert_eq!(kinds(&f), ["lost-write"], "{f:?}");
        assert!(f[0].to_string().contains("\"x\""));
    }

    #[test]
    fn a_leaders_acknowledgement_in_a_cluster_is_not_durable_but_acks_all_and_polls_are() {
        let weak = Options {
            leader_acks_weak: true,
            ..Options::default()
        };
        // acks=1: lost, and its offset reused by another value after a leader change.
        let (mut h, l) = clean();
        h.push(send(0, 0, "x", 3.0, SendOutcome::Ok(1)));
        assert!(safety(&h, &l, &weak).0.is_empty());
        assert_eq!(
            kinds(&safety(&h, &l, &Options::default()).0),
            ["inconsistent-offset", "lost-write", "non-monotonic-send"]
        );
        // acks=all: the same loss is still one.
        let (mut h, l) = clean();
        let mut s = send(0, 0, "x", 3.0, SendOutcome::Ok(2));
        if let Op::Send(s) = &mut s {
            s.acks = -1;
        }
        h.push(s);
        assert_eq!(kinds(&safety(&h, &l, &weak).0), ["lost-write"]);
        // A value a consumer polled (below the high watermark) must stay too.
        let (mut h, l) = clean();
        h.push(send(0, 0, "y", 3.0, SendOutcome::Ok(2)));
        h.push(poll(0, 0, 2, 3.5, &[(2, "y")]));
        assert_eq!(kinds(&safety(&h, &l, &weak).0), ["lost-write"]);
    }

    #[test]
    fn lost_writes_name_the_missing_records_around_an_unreadable_range_and_not_the_retained() {
        use crate::history::{ReadGaps, Unreadable};
        let (mut h, l) = clean();
        // Offsets 2 and 3 of partition 0 are unreadable (damaged); 4 was read; offset 0 of
        // partition 1 was deleted by retention before the final read.
        h.push(send(0, 0, "x", 3.0, SendOutcome::Ok(2)));
        h.push(send(0, 0, "y", 3.1, SendOutcome::Ok(3)));
        h.push(send(0, 0, "w", 3.2, SendOutcome::Ok(4)));
        let mut l = l;
        l.get_mut(&0).unwrap().push((4, v("w")));
        l.get_mut(&1).unwrap().retain(|(o, _)| *o > 0);
        let opts = Options {
            gaps: ReadGaps {
                unreadable: vec![Unreadable {
                    partition: 0,
                    from: 2,
                    to: 4,
                    code: 56,
                }],
                log_start: [(1, 1)].into_iter().collect(),
                ..ReadGaps::default()
            },
            ..Options::default()
        };
        let f = safety(&h, &l, &opts).0;
        let text: Vec<String> = f.iter().map(|f| f.to_string()).collect();
        assert_eq!(kinds(&f), ["lost-write", "lost-write"], "{text:?}");
        assert!(text[0].contains("\"x\"") && text[0].contains("offsets 2..4 answered error 56"));
        assert!(text[1].contains("\"y\""), "{text:?}");
    }

    #[test]
    fn a_polled_value_missing_from_the_log_is_lost() {
        let (mut h, l) = clean();
        h.push(send(0, 0, "x", 3.0, SendOutcome::Unknown));
        h.push(poll(0, 0, 2, 3.5, &[(2, "x")]));
        let f = check(&h, &l);
        assert_eq!(kinds(&f), ["lost-write"], "{f:?}");
        assert!(f[0].to_string().contains("polled at offset 2"));
    }

    #[test]
    fn two_values_at_one_offset_are_inconsistent() {
        let (mut h, l) = clean();
        // Acknowledged at offset 1, where the log (and the consumer) has "c"; "z" is elsewhere.
        h.push(send(1, 0, "z", 3.0, SendOutcome::Ok(1)));
        let mut l = l;
        l.get_mut(&0).unwrap().push((2, v("z")));
        h.push(poll(0, 0, 2, 3.5, &[(2, "z")]));
        let f = check(&h, &l);
        assert_eq!(kinds(&f), ["inconsistent-offset"], "{f:?}");
        assert!(f[0].to_string().contains("inconsistent offset 0/1"));
    }

    #[test]
    fn a_value_stored_twice_without_a_retry_is_a_duplicate() {
        let (mut h, mut l) = clean();
        h.push(send(0, 0, "x", 3.0, SendOutcome::Ok(2)));
        l.get_mut(&0).unwrap().extend([(2, v("x")), (3, v("x"))]);
        h.push(poll(0, 0, 2, 3.5, &[(2, "x"), (3, "x")]));
        let f = check(&h, &l);
        assert_eq!(kinds(&f), ["duplicate"], "{f:?}");
    }

    #[test]
    fn a_retry_after_an_unknown_outcome_may_duplicate() {
        let (mut h, mut l) = clean();
        h.push(send_attempt(0, 0, "x", 1, 3.0, SendOutcome::Unknown));
        h.push(send_attempt(0, 0, "x", 2, 3.2, SendOutcome::Ok(3)));
        l.get_mut(&0).unwrap().extend([(2, v("x")), (3, v("x"))]);
        h.push(poll(0, 0, 2, 3.5, &[(2, "x"), (3, "x")]));
        let (f, stats) = safety(&h, &l, &drained());
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(stats.retry_duplicates, 1);
        // The same retry after a definite failure cannot explain a second copy.
        let (mut h2, l2) = (h.clone(), l.clone());
        for op in &mut h2 {
            if let Op::Send(s) = op {
                if s.value == v("x") && s.attempt == 1 {
                    s.outcome = SendOutcome::failed(56);
                }
            }
        }
        assert_eq!(kinds(&check(&h2, &l2)), ["duplicate"]);
    }

    /// The attempts of an idempotent producer (id 7, epoch 0).
    fn idem(op: Op, sequence: i32) -> Op {
        match op {
            Op::Send(mut s) => {
                s.idempotence = Some(crate::history::Idempotence {
                    producer_id: 7,
                    epoch: 0,
                    sequence,
                });
                s.acks = -1;
                Op::Send(s)
            }
            other => other,
        }
    }

    #[test]
    fn an_idempotent_producers_retry_explains_no_duplicate() {
        let (mut h, mut l) = clean();
        h.push(idem(
            send_attempt(0, 0, "x", 1, 3.0, SendOutcome::Unknown),
            0,
        ));
        h.push(idem(send_attempt(0, 0, "x", 2, 3.2, SendOutcome::Ok(3)), 0));
        l.get_mut(&0).unwrap().extend([(2, v("x")), (3, v("x"))]);
        h.push(poll(0, 0, 2, 3.5, &[(2, "x"), (3, "x")]));
        let (f, stats) = safety(&h, &l, &drained());
        assert_eq!(kinds(&f), ["duplicate"], "{f:?}");
        assert_eq!(stats.retry_duplicates, 0);
    }

    #[test]
    fn idempotent_batches_in_the_log_out_of_sequence_order_are_non_monotonic() {
        let (mut h, mut l) = clean();
        // Sequence 1 was acknowledged at an offset below sequence 0's.
        h.push(idem(send_attempt(0, 0, "x", 1, 3.0, SendOutcome::Ok(3)), 1));
        h.push(idem(send_attempt(0, 0, "y", 2, 3.2, SendOutcome::Ok(4)), 0));
        l.get_mut(&0).unwrap().extend([(3, v("x")), (4, v("y"))]);
        h.push(poll(0, 0, 2, 3.5, &[(3, "x"), (4, "y")]));
        let f = check(&h, &l);
        assert_eq!(kinds(&f), ["non-monotonic-send"], "{f:?}");
    }

    #[test]
    fn a_sequence_refused_right_after_its_predecessor_was_acknowledged_is_found() {
        let (mut h, mut l) = clean();
        h.push(idem(send_attempt(0, 0, "x", 1, 3.0, SendOutcome::Ok(2)), 0));
        h.push(idem(
            send_attempt(0, 0, "y", 1, 3.2, SendOutcome::failed(45)),
            1,
        ));
        l.get_mut(&0).unwrap().push((2, v("x")));
        h.push(poll(0, 0, 2, 3.5, &[(2, "x")]));
        assert_eq!(kinds(&check(&h, &l)), ["sequence-refused"]);
        // The first sequence of a producer id is refused only if nothing later got there first.
        let (mut h, l) = clean();
        h.push(idem(
            send_attempt(0, 0, "x", 1, 3.0, SendOutcome::failed(45)),
            0,
        ));
        assert_eq!(kinds(&check(&h, &l)), ["sequence-refused"]);
        let (mut h, l) = clean();
        h.push(idem(
            send_attempt(0, 0, "y", 1, 2.9, SendOutcome::Unknown),
            1,
        ));
        h.push(idem(
            send_attempt(0, 0, "x", 1, 3.0, SendOutcome::failed(45)),
            0,
        ));
        assert!(check(&h, &l).is_empty());
    }

    #[test]
    fn an_acknowledged_offset_going_backwards_is_non_monotonic() {
        // Producer 0 sent "a" then "b" (one in flight), yet "b" got the lower offset.
        let h = vec![
            send(0, 0, "a", 1.0, SendOutcome::Ok(1)),
            send(0, 0, "b", 2.0, SendOutcome::Ok(0)),
            poll(0, 0, 0, 3.0, &[(0, "b"), (1, "a")]),
        ];
        let l = log(&[(0, 0, "b"), (0, 1, "a")]);
        let f = check(&h, &l);
        assert_eq!(kinds(&f), ["non-monotonic-send"], "{f:?}");
    }

    #[test]
    fn a_poll_going_backwards_is_non_monotonic() {
        let (mut h, l) = clean();
        h.push(poll(0, 0, 0, 3.0, &[(0, "a")]));
        let f = check(&h, &l);
        assert_eq!(kinds(&f), ["non-monotonic-poll"], "{f:?}");
        // A new session (a reset position) may read again.
        if let Some(Op::Poll(p)) = h.last_mut() {
            p.session = 1;
        }
        assert!(check(&h, &l).is_empty());
    }

    #[test]
    fn a_poll_past_records_in_the_log_is_a_skip() {
        let (mut h, l) = clean();
        h.retain(|op| !matches!(op, Op::Poll(p) if p.partition == 0));
        h.push(poll(0, 0, 0, 3.0, &[(0, "a")]));
        h.push(poll(0, 0, 1, 3.1, &[]));
        let mut l2 = l.clone();
        l2.get_mut(&0).unwrap().push((2, v("f")));
        h.push(send(0, 0, "f", 3.05, SendOutcome::Ok(2)));
        // The consumer asked from 1 and got 2: offset 1 ("c") was skipped.
        h.push(poll(0, 0, 1, 3.2, &[(2, "f")]));
        let f = safety(&h, &l2, &Options::default()).0;
        assert_eq!(kinds(&f), ["poll-skip"], "{f:?}");
        assert!(f[0].to_string().contains("skipping 1 record"));
    }

    #[test]
    fn reading_a_definitely_failed_write_is_found() {
        let (h, mut l) = clean();
        // "d" got KAFKA_STORAGE_ERROR (not written), yet it is in the log.
        l.get_mut(&1).unwrap().push((2, v("d")));
        let f = safety(&h, &l, &Options::default()).0;
        assert_eq!(kinds(&f), ["failed-write-read"], "{f:?}");
        // After an indefinite error (REQUEST_TIMED_OUT) the write may be there.
        let mut h2 = h.clone();
        for op in &mut h2 {
            if let Op::Send(s) = op {
                if s.value == v("d") {
                    s.outcome = SendOutcome::failed(7);
                }
            }
        }
        assert!(safety(&h2, &l, &Options::default()).0.is_empty());
    }

    #[test]
    fn a_value_never_sent_is_a_phantom() {
        let (h, mut l) = clean();
        l.get_mut(&0).unwrap().push((2, v("garbage")));
        let f = safety(&h, &l, &Options::default()).0;
        assert_eq!(kinds(&f), ["phantom-read"], "{f:?}");
    }

    #[test]
    fn an_acknowledged_write_no_consumer_polled_is_unseen() {
        let (mut h, l) = clean();
        h.retain(|op| !matches!(op, Op::Poll(p) if p.partition == 1 && p.from_offset == 1));
        let f = check(&h, &l);
        assert_eq!(kinds(&f), ["unseen"], "{f:?}");
        assert!(f[0].to_string().contains("1 acknowledged write"));
        // Only when the consumers were to read to the end.
        assert!(safety(&h, &l, &Options::default()).0.is_empty());
    }

    #[test]
    fn a_partition_without_writes_after_the_heal_makes_no_progress() {
        let (h, _) = clean();
        // Faults healed at t=1 s: partition 0 took "c" at 1.21 s, partition 1 "e" at 1.41 s;
        // the consumer read both by 2.21 s.
        let none = Stuck::default();
        assert!(progress_after_heal(&h, 2, (1, 2), 10, true, &none).is_empty());
        // A third partition got nothing; the finding says what the node was stuck on.
        let stuck = Stuck {
            pending: vec!["sync_data /data/t-2/0.log since t=0.5 s".into()],
            requests_waiting: 3,
        };
        let f = progress_after_heal(&h, 3, (1, 2), 10, true, &stuck);
        assert_eq!(kinds(&f), ["no-progress", "no-progress"], "{f:?}");
        let text = f[0].to_string();
        assert!(
            text.contains("partition 2 took no acknowledged write"),
            "{text}"
        );
        assert!(
            text.contains("sync_data /data/t-2/0.log since t=0.5 s; 3 produce request(s) waiting"),
            "{text}"
        );
        // Nothing to check when the workload ends before the deadline.
        assert!(progress_after_heal(&h, 3, (1, 20), 10, true, &none).is_empty());
    }
}
