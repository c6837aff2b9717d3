//! Checkers of the consumer group's history: every acknowledged write consumed by the group at
//! least once, committed offsets never going backwards, the final committed offsets where the
//! members read to (the end of each partition), and at most one owner of a partition in any
//! generation. Pure functions of the history, each tested on hand-written histories below.

use std::collections::{BTreeMap, BTreeSet};

use crate::checks::safety::acked_not_polled;
use crate::findings::Finding;
use crate::history::{CommitOutcome, FinalCommitted, FinalRead, Op, PollResult};

/// Every group check. `members_from` is the first consumer index that is a group member
/// (polls of lower indexes are the plain consumers'). `ends` holds each partition's high
/// watermark at the final read, where known. On a `compacted` topic the cleaner may remove a
/// record before the group reads it: every record consumed is not asked for.
pub fn check(
    history: &[Op],
    log: &FinalRead,
    ends: &BTreeMap<i32, i64>,
    committed: &FinalCommitted,
    partitions: i32,
    members_from: usize,
    compacted: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(double_owners(history));
    out.extend(owned_twice(history));
    out.extend(regressions(history));
    out.extend(stale_reads(history));
    let drained = final_commits(history, log, ends, committed, partitions, members_from);
    let not_drained: Vec<i32> = drained
        .iter()
        .filter(|f| matches!(f, Finding::CommitMismatch { committed, log_end, .. } if committed < log_end))
        .filter_map(|f| match f {
            Finding::CommitMismatch { partition, .. } => Some(*partition),
            _ => None,
        })
        .collect();
    if not_drained.is_empty() {
        out.extend(drained);
        if !compacted {
            out.extend(unconsumed(history, members_from));
        }
    } else {
        // The group stopped short: that is the finding (what it did not read follows from it).
        out.extend(drained.into_iter().filter(|f| {
            !matches!(f, Finding::CommitMismatch { committed, log_end, .. } if committed < log_end)
        }));
        out.push(Finding::GroupNotDrained {
            partitions: not_drained,
        });
    }
    out
}

/// A partition given to two members in one generation.
fn double_owners(history: &[Op]) -> Vec<Finding> {
    let mut owners: BTreeMap<(i32, i32), BTreeSet<String>> = BTreeMap::new();
    for op in history {
        if let Op::Assigned(a) = op {
            for p in &a.partitions {
                owners
                    .entry((a.generation, *p))
                    .or_default()
                    .insert(a.member_id.clone());
            }
        }
    }
    owners
        .into_iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|((generation, partition), members)| Finding::DoubleOwner {
            generation,
            partition,
            members: members.into_iter().collect(),
        })
        .collect()
}

/// A partition given to a member while another member of the same generation still owned it.
/// What a member owns is what it was last assigned, less what it gave up since (an eager
/// member gives up everything before it joins, a cooperative one what its new assignment
/// leaves out; a fenced, departed or crashed one everything). A member left out of the
/// generation may still own its partitions (a paused process the group expelled, a zombie):
/// the group cannot stop that, only fence it, so only members of the generation count.
///
/// A member of a generation is one that was given its assignment (SyncGroup answered), not one
/// whose JoinGroup was answered: a coordinator that loses its partition before it wrote a
/// generation's assignment hands that generation's number out again from the new coordinator
/// (Kafka's does the same), and the first one's members need not be the second one's.
fn owned_twice(history: &[Op]) -> Vec<Finding> {
    let members: BTreeSet<(i32, usize)> = history
        .iter()
        .filter_map(|op| match op {
            Op::Assigned(a) => Some((a.generation, a.member)),
            _ => None,
        })
        .collect();
    // Per member: its id, what it owns, and the generation it was last assigned in.
    let mut owns: BTreeMap<usize, (String, BTreeSet<i32>, i32)> = BTreeMap::new();
    let mut out = Vec::new();
    for op in history {
        match op {
            Op::Owns(o) => {
                let generation = owns.get(&o.member).map_or(-1, |(_, _, g)| *g);
                let set = o.partitions.iter().copied().collect();
                owns.insert(o.member, (o.member_id.clone(), set, generation));
            }
            Op::Assigned(a) => {
                let before = owns
                    .get(&a.member)
                    .map(|(_, s, _)| s.clone())
                    .unwrap_or_default();
                for p in a.partitions.iter().filter(|p| !before.contains(p)) {
                    // Given to both in this generation: a double owner (found above).
                    let holders = owns.iter().filter(|(m, (_, set, g))| {
                        **m != a.member
                            && set.contains(p)
                            && *g != a.generation
                            && members.contains(&(a.generation, **m))
                    });
                    for (_, (holder, _, _)) in holders {
                        out.push(Finding::OwnedTwice {
                            partition: *p,
                            generation: a.generation,
                            holder: holder.clone(),
                            taker: a.member_id.clone(),
                            at_s: a.at_s,
                        });
                    }
                }
                let set = a.partitions.iter().copied().collect();
                owns.insert(a.member, (a.member_id.clone(), set, a.generation));
            }
            _ => {}
        }
    }
    out
}

/// A successful commit never lowers a partition's offset below one acknowledged before it was
/// sent. (Commits whose times overlap have no order: a pipelined commit's answer may be read
/// long after the broker took it — a member paused with answers unread.)
fn regressions(history: &[Op]) -> Vec<Finding> {
    let mut commits: Vec<_> = history
        .iter()
        .filter_map(|op| match op {
            Op::Commit(c) if c.outcome == CommitOutcome::Ok => Some(c),
            _ => None,
        })
        .collect();
    commits.sort_by(|a, b| a.completed_s.total_cmp(&b.completed_s));
    let mut out = Vec::new();
    for c in &commits {
        for &(partition, offset) in &c.offsets {
            let before = commits
                .iter()
                .take_while(|a| a.completed_s < c.invoked_s)
                .flat_map(|a| a.offsets.iter())
                .filter(|(p, _)| *p == partition)
                .map(|(_, o)| *o)
                .max();
            if let Some(previous) = before.filter(|p| offset < *p) {
                out.push(Finding::CommitRegressed {
                    partition,
                    previous,
                    offset,
                    member: c.member,
                    generation: c.generation,
                });
            }
        }
    }
    out
}

/// A read of the committed offsets sent after a commit was acknowledged answers at least what
/// that commit set (commits of a partition only go forward in this workload) — unless the
/// value read is another commit's that may have been applied after that one: a commit whose
/// answer never came (its request may reach the broker late, as a TCP segment held up by the
/// network does, and is then taken, as Kafka takes it), or one answered after the first was
/// sent.
fn stale_reads(history: &[Op]) -> Vec<Finding> {
    // (invoked, completed — None if unknown, partition, offset) of every commit not refused.
    let commits: Vec<(f64, Option<f64>, i32, i64)> = history
        .iter()
        .filter_map(|op| match op {
            Op::Commit(c) => match c.outcome {
                CommitOutcome::Ok => Some((c, Some(c.completed_s))),
                CommitOutcome::Unknown => Some((c, None)),
                CommitOutcome::Failed(_) => None,
            },
            _ => None,
        })
        .flat_map(|(c, done)| {
            c.offsets
                .iter()
                .map(move |&(p, o)| (c.invoked_s, done, p, o))
        })
        .collect();
    let mut out = Vec::new();
    for op in history {
        let Op::CommittedRead(r) = op else { continue };
        for &(partition, read) in &r.offsets {
            let newer_acknowledged = commits.iter().filter(|&&(_, done, p, o)| {
                p == partition && o > read && done.is_some_and(|d| d < r.invoked_s)
            });
            let unexplained = newer_acknowledged
                .filter(|&&(a_invoked, _, _, _)| {
                    !commits.iter().any(|&(invoked, done, p, o)| {
                        p == partition
                            && o == read
                            && invoked < r.completed_s
                            && done.is_none_or(|d| d > a_invoked)
                    })
                })
                .map(|&(_, _, _, o)| o)
                .max();
            if let Some(acknowledged) = unexplained {
                out.push(Finding::StaleCommittedRead {
                    partition,
                    read,
                    acknowledged,
                    member: r.member,
                    at_s: r.invoked_s,
                });
            }
        }
    }
    out
}

/// After the run the group's committed offset of each partition is the end of the partition,
/// and its members read every record of it. The end is anywhere from the last data record to
/// the high watermark at the final read: control batches (a new Raft leader's own entry) may
/// follow the data, before or after the members' last commit, and a consumer's position, hence
/// what it commits, moves over them as Kafka's does.
fn final_commits(
    history: &[Op],
    log: &FinalRead,
    ends: &BTreeMap<i32, i64>,
    committed: &FinalCommitted,
    partitions: i32,
    members_from: usize,
) -> Vec<Finding> {
    let mut processed: BTreeMap<i32, i64> = BTreeMap::new();
    for op in history {
        if let Op::Poll(p) = op {
            if p.consumer < members_from {
                continue;
            }
            if let PollResult::Records(r) = &p.result {
                if let Some((last, _)) = r.last() {
                    let e = processed.entry(p.partition).or_insert(0);
                    *e = (*e).max(last + 1);
                }
            }
        }
    }
    let mut out = Vec::new();
    for partition in 0..partitions {
        let data_end = log
            .get(&partition)
            .and_then(|r| r.last())
            .map_or(0, |(o, _)| o + 1);
        let log_end = ends
            .get(&partition)
            .copied()
            .unwrap_or(data_end)
            .max(data_end);
        let processed = processed.get(&partition).copied().unwrap_or(0);
        // Nothing committed reads as the start of an empty partition.
        let committed = committed.get(&partition).copied().unwrap_or(-1).max(0);
        // Offsets from the last data record to the end hold only control batches: a commit
        // anywhere among them is at the end (a leadership change after the members' last
        // commit appends one more).
        if !(data_end..=log_end).contains(&committed) || processed != data_end {
            out.push(Finding::CommitMismatch {
                partition,
                committed,
                processed,
                log_end,
            });
        }
    }
    out
}

/// Acknowledged writes no member of the group polled.
fn unconsumed(history: &[Op], members_from: usize) -> Vec<Finding> {
    let sends = history.iter().filter_map(|op| match op {
        Op::Send(s) => Some(s),
        _ => None,
    });
    let member_polls = history.iter().filter_map(|op| match op {
        Op::Poll(p) if p.consumer >= members_from => Some(p),
        _ => None,
    });
    acked_not_polled(sends, member_polls)
        .into_iter()
        .map(|(partition, count, first)| Finding::GroupUnconsumed {
            partition,
            count,
            first,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Assigned, Commit, CommittedRead, Poll, Send, SendOutcome};
    use bytes::Bytes;

    fn v(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn sent(partition: i32, value: &str, offset: i64) -> Op {
        Op::Send(Send {
            broker: 0,
            producer: 0,
            partition,
            value: v(value),
            idempotence: None,
            attempt: 1,
            acks: -1,
            invoked_s: 1.0,
            completed_s: 1.1,
            outcome: SendOutcome::Ok(offset),
        })
    }

    fn polled(consumer: usize, partition: i32, records: &[(i64, &str)]) -> Op {
        Op::Poll(Poll {
            broker: 0,
            consumer,
            session: 1,
            partition,
            from_offset: records[0].0,
            invoked_s: 2.0,
            completed_s: 2.1,
            result: PollResult::Records(records.iter().map(|(o, s)| (*o, v(s))).collect()),
        })
    }

    fn commit(member: usize, generation: i32, t: f64, offsets: &[(i32, i64)]) -> Op {
        Op::Commit(Commit {
            member,
            member_id: format!("m{member}"),
            generation,
            offsets: offsets.to_vec(),
            invoked_s: t,
            completed_s: t + 0.1,
            outcome: CommitOutcome::Ok,
        })
    }

    fn assigned(member: usize, generation: i32, partitions: &[i32]) -> Op {
        Op::Assigned(Assigned {
            member,
            member_id: format!("m{member}"),
            generation,
            partitions: partitions.to_vec(),
            at_s: 0.5,
        })
    }

    /// Two partitions, a group of two members (consumer indexes 1 and 2) that read and
    /// committed everything.
    fn clean() -> (Vec<Op>, FinalRead, FinalCommitted) {
        let h = vec![
            assigned(1, 1, &[0]),
            assigned(2, 1, &[1]),
            sent(0, "a", 0),
            sent(0, "b", 1),
            sent(1, "c", 0),
            polled(1, 0, &[(0, "a"), (1, "b")]),
            polled(2, 1, &[(0, "c")]),
            commit(1, 1, 3.0, &[(0, 2)]),
            commit(2, 1, 3.0, &[(1, 1)]),
        ];
        let mut log = FinalRead::new();
        log.insert(0, vec![(0, v("a")), (1, v("b"))]);
        log.insert(1, vec![(0, v("c"))]);
        let committed = [(0, 2), (1, 1)].into_iter().collect();
        (h, log, committed)
    }

    #[test]
    fn a_clean_group_history_passes() {
        let (h, log, committed) = clean();
        assert_eq!(
            check(&h, &log, &BTreeMap::new(), &committed, 2, 1, false),
            vec![]
        );
    }

    #[test]
    fn a_partition_owned_twice_in_a_generation_is_found() {
        let (mut h, log, committed) = clean();
        h.push(assigned(3, 1, &[1]));
        let f = check(&h, &log, &BTreeMap::new(), &committed, 2, 1, false);
        assert!(
            matches!(
                &f[..],
                [Finding::DoubleOwner {
                    generation: 1,
                    partition: 1,
                    ..
                }]
            ),
            "{f:?}"
        );
        // In another generation it is a new owner, not a second one.
        let (mut h, log, committed) = clean();
        h.push(assigned(3, 2, &[1]));
        assert_eq!(
            check(&h, &log, &BTreeMap::new(), &committed, 2, 1, false),
            vec![]
        );
    }

    fn joined(member: usize, generation: i32, owned: &[i32]) -> Op {
        Op::Joined(crate::history::Joined {
            member,
            member_id: format!("m{member}"),
            generation,
            owned: owned.to_vec(),
            at_s: 0.4,
        })
    }

    fn owns(member: usize, partitions: &[i32]) -> Op {
        Op::Owns(crate::history::Owns {
            member,
            member_id: format!("m{member}"),
            partitions: partitions.to_vec(),
            at_s: 0.6,
        })
    }

    #[test]
    fn a_partition_moves_only_after_its_owner_gave_it_up() {
        // m1 owns both; m2 joins. Generation 2 leaves partition 1 to nobody while m1 gives it
        // up; generation 3 gives it to m2.
        let cooperative = vec![
            joined(1, 1, &[]),
            assigned(1, 1, &[0, 1]),
            joined(1, 2, &[0, 1]),
            joined(2, 2, &[]),
            assigned(1, 2, &[0]),
            assigned(2, 2, &[]),
            joined(1, 3, &[0]),
            joined(2, 3, &[]),
            assigned(1, 3, &[0]),
            assigned(2, 3, &[1]),
        ];
        assert_eq!(owned_twice(&cooperative), vec![]);
        // Given to m2 in the generation where m1, a member, still owns it.
        let mut wrong = cooperative[..4].to_vec();
        wrong.extend([assigned(2, 2, &[1]), assigned(1, 2, &[0])]);
        let f = owned_twice(&wrong);
        assert!(
            matches!(&f[..], [Finding::OwnedTwice { partition: 1, generation: 2, holder, taker, .. }]
                if holder == "m1" && taker == "m2"),
            "{f:?}"
        );
        // Eager: m1 gave everything up before it joined generation 2.
        let eager = vec![
            assigned(1, 1, &[0, 1]),
            owns(1, &[]),
            joined(1, 2, &[]),
            joined(2, 2, &[]),
            assigned(2, 2, &[1]),
            assigned(1, 2, &[0]),
        ];
        assert_eq!(owned_twice(&eager), vec![]);
        // A member the group expelled (it did not join generation 2) may still believe it
        // owns its partitions: not the group's doing.
        let zombie = vec![
            assigned(1, 1, &[0, 1]),
            joined(2, 2, &[]),
            assigned(2, 2, &[0, 1]),
        ];
        assert_eq!(owned_twice(&zombie), vec![]);
        // m1 joined a generation 2 whose coordinator lost the group before writing it; the
        // next coordinator's generation 2 went on without m1: m1 is not of that generation.
        let reissued = vec![
            assigned(1, 1, &[0, 1]),
            joined(1, 2, &[0, 1]),
            joined(2, 2, &[]),
            assigned(2, 2, &[0, 1]),
        ];
        assert_eq!(owned_twice(&reissued), vec![]);
    }

    #[test]
    fn a_commit_that_goes_backwards_is_found() {
        let (mut h, log, committed) = clean();
        h.push(commit(2, 2, 4.0, &[(0, 1)]));
        let f = check(&h, &log, &BTreeMap::new(), &committed, 2, 1, false);
        assert!(
            matches!(
                &f[..],
                [Finding::CommitRegressed {
                    partition: 0,
                    previous: 2,
                    offset: 1,
                    ..
                }]
            ),
            "{f:?}"
        );
        // One sent before the other was answered may land either side of it.
        let (mut h, _, _) = clean();
        h.push(commit(2, 1, 3.05, &[(0, 1)]));
        assert!(regressions(&h).is_empty());
        // A failed commit does not count.
        let (mut h, log, committed) = clean();
        if let Op::Commit(mut c) = commit(2, 2, 4.0, &[(0, 1)]) {
            c.outcome = CommitOutcome::Failed(22);
            h.push(Op::Commit(c));
        }
        assert_eq!(
            check(&h, &log, &BTreeMap::new(), &committed, 2, 1, false),
            vec![]
        );
    }

    #[test]
    fn a_read_behind_an_acknowledged_commit_is_stale() {
        let read = |invoked_s: f64, offsets: &[(i32, i64)]| {
            Op::CommittedRead(CommittedRead {
                member: 1,
                offsets: offsets.to_vec(),
                invoked_s,
                completed_s: invoked_s + 0.1,
            })
        };
        let (mut h, log, committed) = clean();
        // Up to date, and a read sent before the commit was answered: both fine.
        h.push(read(3.0, &[(0, 2)]));
        h.push(read(0.05, &[(0, -1)]));
        assert_eq!(
            check(&h, &log, &BTreeMap::new(), &committed, 2, 1, false),
            vec![]
        );
        h.push(read(3.5, &[(0, 1), (1, 2)]));
        // A commit of the value read whose answer never came may have landed last.
        let mut late = h.clone();
        if let Op::Commit(mut c) = commit(1, 1, 2.0, &[(0, 1)]) {
            c.outcome = CommitOutcome::Unknown;
            late.push(Op::Commit(c));
        }
        assert_eq!(
            check(&late, &log, &BTreeMap::new(), &committed, 2, 1, false),
            vec![]
        );
        let f = check(&h, &log, &BTreeMap::new(), &committed, 2, 1, false);
        assert!(
            matches!(
                &f[..],
                [Finding::StaleCommittedRead {
                    partition: 0,
                    read: 1,
                    acknowledged: 2,
                    member: 1,
                    ..
                }]
            ),
            "{f:?}"
        );
    }

    #[test]
    fn final_offsets_must_be_where_the_members_read_to() {
        // Committed beyond what was read: records were skipped.
        let (h, log, _) = clean();
        let committed = [(0, 2), (1, 5)].into_iter().collect();
        let f = check(&h, &log, &BTreeMap::new(), &committed, 2, 1, false);
        assert!(
            matches!(
                &f[..],
                [Finding::CommitMismatch {
                    partition: 1,
                    committed: 5,
                    ..
                }]
            ),
            "{f:?}"
        );
        // Short of the end: the group did not drain (and nothing else is said of it).
        let (h, log, _) = clean();
        let committed = [(0, 1), (1, 1)].into_iter().collect();
        let f = check(&h, &log, &BTreeMap::new(), &committed, 2, 1, false);
        assert!(
            matches!(&f[..], [Finding::GroupNotDrained { partitions }] if partitions == &vec![0]),
            "{f:?}"
        );
    }

    #[test]
    fn a_commit_past_control_batches_at_the_end_is_the_end() {
        // Partition 0's high watermark is 4: control batches (new leaders' own entries) at 2
        // and 3 follow "b" (1).
        let (h, log, _) = clean();
        let ends: BTreeMap<i32, i64> = [(0, 4), (1, 1)].into_iter().collect();
        for at in [2, 3, 4] {
            let committed: FinalCommitted = [(0, at), (1, 1)].into_iter().collect();
            assert_eq!(
                check(&h, &log, &ends, &committed, 2, 1, false),
                vec![],
                "{at}"
            );
        }
        // Short of the last data record: not drained; past the end: a mismatch.
        let committed: FinalCommitted = [(0, 1), (1, 1)].into_iter().collect();
        let f = check(&h, &log, &ends, &committed, 2, 1, false);
        assert!(
            matches!(&f[..], [Finding::GroupNotDrained { partitions }] if partitions == &vec![0]),
            "{f:?}"
        );
        let committed: FinalCommitted = [(0, 5), (1, 1)].into_iter().collect();
        let f = check(&h, &log, &ends, &committed, 2, 1, false);
        assert!(
            matches!(
                &f[..],
                [Finding::CommitMismatch {
                    partition: 0,
                    committed: 5,
                    ..
                }]
            ),
            "{f:?}"
        );
        // At the end, but a data record its members never polled: a mismatch.
        let (mut h, _, _) = clean();
        h.retain(|op| !matches!(op, Op::Poll(p) if p.partition == 0));
        h.push(polled(1, 0, &[(0, "a")]));
        let committed: FinalCommitted = [(0, 4), (1, 1)].into_iter().collect();
        let f = check(&h, &log, &ends, &committed, 2, 1, false);
        assert!(
            f.iter().any(|f| matches!(
                f,
                Finding::CommitMismatch {
                    partition: 0,
                    committed: 4,
                    processed: 1,
                    log_end: 4
                }
            )),
            "{f:?}"
        );
    }

    #[test]
    fn a_write_only_the_plain_consumers_read_is_unconsumed_by_the_group() {
        let (mut h, mut log, committed) = clean();
        h.push(sent(1, "d", 1));
        log.get_mut(&1).unwrap().push((1, v("d")));
        // Polled by consumer 0 (a plain consumer), and the group committed past it anyway.
        h.push(polled(0, 1, &[(1, "d")]));
        h.push(polled(2, 1, &[(0, "c")]));
        let committed2: FinalCommitted = [(0, 2), (1, 2)].into_iter().collect();
        let _ = committed;
        let f = check(&h, &log, &BTreeMap::new(), &committed2, 2, 1, false);
        assert!(
            f.iter().any(|f| matches!(
                f,
                Finding::GroupUnconsumed {
                    partition: 1,
                    count: 1,
                    ..
                }
            )),
            "{f:?}"
        );
        // On a compacted topic the cleaner may remove a record before the group reads it.
        let f = check(&h, &log, &BTreeMap::new(), &committed2, 2, 1, true);
        assert!(
            !f.iter()
                .any(|f| matches!(f, Finding::GroupUnconsumed { .. })),
            "{f:?}"
        );
    }
}
