//! Checkers over a run's history and final read: safety (the Jepsen Kafka anomaly classes) and
//! liveness (after the faults heal, every partition takes and serves writes again).
//!
//! Pure functions of the history, so each is tested on hand-written histories (`tests.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;

use crate::checks::compaction::Removable;
use crate::findings::{short, Finding, Stuck};
use crate::history::{FinalRead, Op, Poll, PollResult, ReadGaps, Send, SendOutcome};

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
    /// The topic is compacted: the cleaner removes records, so the checks that every
    /// acknowledged record stays (`lost-write`, `offset-gap`, `unseen`) give way to
    /// [`crate::checks::compaction`]'s.
    pub compacted: Option<Compacted>,
}

/// What the checkers know of a compacted topic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compacted {
    /// `delete.retention.ms`, in seconds: a cleaner may remove a tombstone this long after it
    /// was written, not sooner.
    pub tombstone_retention_s: f64,
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
    if opts.compacted.is_some() {
        findings.extend(crate::checks::compaction::latest_per_key(
            &sends, log, &opts.gaps,
        ));
    } else {
        findings.extend(lost_writes(&sends, &polls, &log_at, &opts.gaps));
        findings.extend(offset_gaps(log, &opts.gaps));
    }
    let (dups, retry_dups) = duplicates(&log_at, &attempts);
    findings.extend(dups);
    stats.retry_duplicates = retry_dups;
    findings.extend(failed_and_phantom_reads(&polls, log, &attempts));
    findings.extend(non_monotonic_sends(&sends));
    findings.extend(idempotent_order(&sends));
    findings.extend(sequences_refused(&sends));
    // On a compacted topic replicas clean on their own: a record the replica a consumer read
    // from had cleaned away may still be in the log read back.
    let removable = match opts.compacted {
        Some(c) => Removable::new(log, &sends, c.tombstone_retention_s),
        None => Removable::default(),
    };
    findings.extend(poll_order(&polls, &log_offsets, &removable));
    stats.polled = polls
        .iter()
        .map(|p| match &p.result {
            PollResult::Records(r) => r.len(),
            _ => 0,
        })
        .sum();
    if opts.consumers_drained && opts.compacted.is_none() {
        findings.extend(unseen(&sends, &polls));
    }
    (findings, stats)
}

/// The final read, from each partition's log start, finds every Kafka offset taken: nothing
/// here compacts or writes transaction markers, and Raft's own entries take no offset. Only a
/// damaged range the read stepped over may be missing (one finding per partition).
fn offset_gaps(log: &FinalRead, gaps: &ReadGaps) -> Vec<Finding> {
    let mut out = Vec::new();
    for (&partition, records) in log {
        let mut expected = gaps.log_start.get(&partition).copied().unwrap_or(0);
        for &(offset, _) in records {
            if offset > expected && gaps.unreadable_at(partition, expected).is_none() {
                out.push(Finding::OffsetGap {
                    partition,
                    expected,
                    found: offset,
                });
                break;
            }
            expected = expected.max(offset + 1);
        }
    }
    out
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
fn poll_order(
    polls: &[&Poll],
    log_offsets: &BTreeMap<i32, BTreeSet<i64>>,
    removable: &Removable,
) -> Vec<Finding> {
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
                let skipped: Vec<i64> = offsets
                    .range(expect_from..*o)
                    .copied()
                    .filter(|s| !removable.may_lack(poll.partition, *s, poll.completed_s))
                    .collect();
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
///
/// A partition the workload wrote too seldom to say (thousands of partitions: one message
/// each every few seconds, whose retries may all fall in the second of a leadership's
/// hand-over) is judged by the first message sent to it once the deadline has passed: that one
/// must be acknowledged. A partition still unwritable then fails, as one with no
/// acknowledged write after the heal at all does.
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
    let mut sends: HashMap<i32, Vec<&Send>> = HashMap::new();
    for op in history {
        if let Op::Send(s) = op {
            sends.entry(s.partition).or_default().push(s);
        }
    }
    let acked = |s: &&&Send| matches!(s.outcome, SendOutcome::Ok(_));
    let none = Vec::new();
    for partition in 0..partitions {
        let to_it = || sends.get(&partition).unwrap_or(&none).iter();
        let wrote = to_it().filter(acked).any(|s| within(s.completed_s))
            || match to_it()
                .filter(|s| s.attempt == 1 && s.invoked_s >= by)
                .min_by(|a, b| a.invoked_s.total_cmp(&b.invoked_s))
            {
                // The first message after the deadline, over all its attempts.
                Some(first) => to_it()
                    .filter(acked)
                    .any(|s| s.producer == first.producer && s.value == first.value),
                None => to_it().filter(acked).any(|s| s.completed_s >= from),
            };
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
mod tests;
