//! The safety and liveness checkers on hand-written histories.

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
    h.push(idem(send_attempt(0, 0, "x", 1, 3.0, SendOutcome::Ok(2)), 1));
    h.push(idem(send_attempt(0, 0, "y", 2, 3.2, SendOutcome::Ok(3)), 0));
    l.get_mut(&0).unwrap().extend([(2, v("x")), (3, v("y"))]);
    h.push(poll(0, 0, 2, 3.5, &[(2, "x"), (3, "y")]));
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

#[test]
fn a_partition_written_seldom_is_judged_by_its_first_write_after_the_deadline() {
    // Faults healed at t=10 s, deadline 5 s: partition 0's one message in the window was
    // refused on every attempt (a leadership handed over), the next came after the deadline.
    let refused = |attempt, t| send_attempt(0, 0, "a", attempt, t, SendOutcome::failed(6));
    let mut h = vec![refused(1, 11.0), refused(2, 11.1), refused(3, 11.2)];
    let none = Stuck::default();
    let after = |attempt, t, outcome| send_attempt(1, 0, "b", attempt, t, outcome);
    // Acknowledged on its second attempt: the partition was writable once the deadline passed.
    let mut ok = h.clone();
    ok.push(after(1, 16.0, SendOutcome::failed(6)));
    ok.push(after(2, 16.1, SendOutcome::Ok(0)));
    assert!(progress_after_heal(&ok, 1, (10, 5), 30, false, &none).is_empty());
    // A later message's success does not excuse the first one after the deadline.
    h.push(after(1, 16.0, SendOutcome::failed(6)));
    h.push(send(0, 0, "c", 20.0, SendOutcome::Ok(0)));
    let f = progress_after_heal(&h, 1, (10, 5), 30, false, &none);
    assert_eq!(kinds(&f), ["no-progress"], "{f:?}");
    // Nothing sent after the deadline: an acknowledged write after the heal is enough (this
    // one is answered just past the deadline).
    let early = vec![
        refused(1, 11.0),
        send(0, 0, "d", 14.995, SendOutcome::Ok(0)),
    ];
    assert!(progress_after_heal(&early, 1, (10, 5), 30, false, &none).is_empty());
    let never = vec![refused(1, 11.0)];
    assert_eq!(
        kinds(&progress_after_heal(&never, 1, (10, 5), 30, false, &none)),
        ["no-progress"]
    );
}

#[test]
fn a_log_read_back_that_skips_an_offset_is_found_unless_it_was_damaged_or_deleted() {
    use crate::history::{ReadGaps, Unreadable};
    let l = log(&[
        (0, 0, "a"),
        (0, 1, "b"),
        (0, 3, "c"),
        (1, 5, "d"),
        (1, 6, "e"),
    ]);
    let gaps = |unreadable: Vec<Unreadable>| ReadGaps {
        unreadable,
        log_start: [(0, 0), (1, 5)].into_iter().collect(),
        ..ReadGaps::default()
    };
    let f = offset_gaps(&l, &gaps(Vec::new()));
    assert_eq!(kinds(&f), ["offset-gap"], "{f:?}");
    assert!(
        f[0].to_string().contains("offset 3 where 2 was next"),
        "{f:?}"
    );
    let damaged = Unreadable {
        partition: 0,
        from: 2,
        to: 3,
        code: 56,
    };
    assert!(offset_gaps(&l, &gaps(vec![damaged])).is_empty());
}
