//! The coordinator's rules, request by request, against Kafka's tables.

use super::*;

const NOW: i64 = 1_000_000;

fn written(step: Result<InitStep, i16>) -> TxnMetadata {
    match step {
        Ok(InitStep::Write(m)) => m,
        other => panic!("expected a write, got {other:?}"),
    }
}

/// An id after its first InitProducerId: producer 7, epoch 0, Empty.
fn started() -> TxnMetadata {
    let m = TxnMetadata::new(7, 60_000, NOW);
    written(m.init_producer_id(None, 60_000, NOW, || panic!("no new id")))
}

fn ongoing() -> TxnMetadata {
    started()
        .add_partitions(7, 0, [("t".to_string(), 0)], NOW + 10)
        .unwrap()
        .unwrap()
}

#[test]
fn states_have_kafkas_ids_names_and_transitions() {
    let names: Vec<_> = (0..6)
        .map(|i| TxnState::from_id(i).unwrap().name())
        .collect();
    assert_eq!(
        names,
        [
            "Empty",
            "Ongoing",
            "PrepareCommit",
            "PrepareAbort",
            "CompleteCommit",
            "CompleteAbort"
        ]
    );
    assert_eq!(TxnState::from_id(6), None, "Dead is never written");
    assert_eq!(TxnState::from_id(-1), None);
    for s in STATES {
        assert_eq!(TxnState::from_name(s.name()), Some(s));
        assert_eq!(TxnState::from_id(s.id()), Some(s));
    }
    use TxnState::*;
    assert!(PrepareCommit.may_follow(Ongoing) && !PrepareCommit.may_follow(Empty));
    assert!(Ongoing.may_follow(CompleteAbort) && !Ongoing.may_follow(PrepareAbort));
    assert!(CompleteAbort.may_follow(PrepareAbort) && !CompleteAbort.may_follow(Ongoing));
}

#[test]
fn a_transaction_runs_from_empty_through_commit_and_back() {
    let m = started();
    assert_eq!(
        (m.producer_id, m.producer_epoch, m.state),
        (7, 0, TxnState::Empty)
    );

    let m = m
        .add_partitions(7, 0, [("t".into(), 0), ("t".into(), 1)], NOW + 10)
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.state, m.start_ms, m.partitions.len()),
        (TxnState::Ongoing, NOW + 10, 2)
    );
    // The same partitions again: nothing to write. A new one keeps the start time.
    assert_eq!(
        m.add_partitions(7, 0, [("t".into(), 1)], NOW + 20),
        Ok(None)
    );
    let m = m
        .add_partitions(7, 0, [("u".into(), 0)], NOW + 20)
        .unwrap()
        .unwrap();
    assert_eq!((m.start_ms, m.partitions.len()), (NOW + 10, 3));

    let EndStep::Write(prepared) = m.end_txn(7, 0, true, NOW + 30).unwrap() else {
        panic!("a decision to write");
    };
    assert_eq!(prepared.state, TxnState::PrepareCommit);
    assert_eq!(prepared.partitions.len(), 3, "the markers still to write");
    // While the markers go out: the client's retry waits, an abort is refused, so is a new
    // partition.
    assert_eq!(
        prepared.end_txn(7, 0, true, NOW + 31),
        Err(error::CONCURRENT_TRANSACTIONS)
    );
    assert_eq!(
        prepared.end_txn(7, 0, false, NOW + 31),
        Err(error::INVALID_TXN_STATE)
    );
    assert_eq!(
        prepared.add_partitions(7, 0, [("v".into(), 0)], NOW + 31),
        Err(error::CONCURRENT_TRANSACTIONS)
    );

    let done = prepared.complete(NOW + 40);
    assert_eq!(
        (done.state, done.partitions.len()),
        (TxnState::CompleteCommit, 0)
    );
    assert_eq!(
        done.end_txn(7, 0, true, NOW + 41),
        Ok(EndStep::Done),
        "a retry"
    );
    assert_eq!(
        done.end_txn(7, 0, false, NOW + 41),
        Err(error::INVALID_TXN_STATE)
    );
    // The next transaction, at the same epoch.
    let next = done
        .add_partitions(7, 0, [("t".into(), 0)], NOW + 50)
        .unwrap()
        .unwrap();
    assert_eq!(
        (next.state, next.start_ms, next.producer_epoch),
        (TxnState::Ongoing, NOW + 50, 0)
    );
}

#[test]
fn requests_from_another_producer_or_epoch_are_refused() {
    let m = ongoing();
    assert_eq!(
        m.add_partitions(8, 0, [("t".into(), 2)], NOW),
        Err(error::INVALID_PRODUCER_ID_MAPPING)
    );
    assert_eq!(
        m.add_partitions(7, 1, [("t".into(), 2)], NOW),
        Err(error::PRODUCER_FENCED)
    );
    assert_eq!(m.end_txn(7, -1, true, NOW), Err(error::PRODUCER_FENCED));
    assert_eq!(
        started().end_txn(7, 0, true, NOW),
        Err(error::INVALID_TXN_STATE)
    );
    assert_eq!(
        started().end_txn(7, 0, false, NOW),
        Err(error::INVALID_TXN_STATE)
    );
}

#[test]
fn a_new_producer_fences_the_old_and_aborts_its_open_transaction_first() {
    let m = ongoing();
    let step = m.init_producer_id(None, 30_000, NOW + 100, || panic!("no new id"));
    let Ok(InitStep::AbortFirst(abort)) = step else {
        panic!("abort first, got {step:?}");
    };
    assert_eq!(
        (abort.state, abort.producer_epoch),
        (TxnState::PrepareAbort, 1)
    );
    assert_eq!(
        abort.partitions, m.partitions,
        "markers go to its partitions"
    );
    // The old producer is fenced from now on.
    assert_eq!(abort.end_txn(7, 0, true, NOW), Err(error::PRODUCER_FENCED));
    // While the markers are written the new producer's retry waits …
    assert_eq!(
        abort
            .init_producer_id(None, 30_000, NOW + 101, || panic!())
            .unwrap_err(),
        error::CONCURRENT_TRANSACTIONS
    );
    // … and then gets the epoch after the fence, with its own timeout.
    let fresh = written(abort.complete(NOW + 102).init_producer_id(
        None,
        30_000,
        NOW + 103,
        || panic!(),
    ));
    assert_eq!(
        (fresh.producer_epoch, fresh.state, fresh.timeout_ms),
        (2, TxnState::Empty, 30_000)
    );
    assert!(fresh.partitions.is_empty() && fresh.start_ms == -1);
}

#[test]
fn a_producer_bumping_its_own_epoch_may_retry_and_strangers_are_fenced() {
    let m = started(); // epoch 0
                       // KIP-360: the producer names its id and epoch after an abortable error.
    let bumped = written(m.init_producer_id(Some((7, 0)), 60_000, NOW, || panic!()));
    assert_eq!((bumped.producer_epoch, bumped.last_producer_epoch), (1, 0));
    // Its retry (the answer was lost) is answered with the epoch it got.
    assert_eq!(
        bumped.init_producer_id(Some((7, 0)), 60_000, NOW, || panic!()),
        Ok(InitStep::Answer {
            producer_id: 7,
            epoch: 1
        })
    );
    // An older epoch, or another producer id, is fenced.
    let again = written(bumped.init_producer_id(Some((7, 1)), 60_000, NOW, || panic!()));
    assert_eq!(
        again.init_producer_id(Some((7, 0)), 60_000, NOW, || panic!()),
        Err(error::PRODUCER_FENCED)
    );
    assert_eq!(
        again.init_producer_id(Some((99, 2)), 60_000, NOW, || panic!()),
        Err(error::PRODUCER_FENCED)
    );
    // An id never used takes any expected pair (the producer's state was lost).
    let fresh = TxnMetadata::new(5, 60_000, NOW);
    let m = written(fresh.init_producer_id(Some((3, 9)), 60_000, NOW, || panic!()));
    assert_eq!((m.producer_id, m.producer_epoch), (5, 0));
}

#[test]
fn used_up_epochs_give_a_new_producer_id_and_its_retry_is_recognised() {
    let mut m = started();
    m.producer_epoch = EPOCH_EXHAUSTED;
    let rotated = written(m.init_producer_id(Some((7, EPOCH_EXHAUSTED)), 60_000, NOW, || 8));
    assert_eq!((rotated.producer_id, rotated.producer_epoch), (8, 0));
    assert_eq!(rotated.prev_producer_id, 7);
    // The retry names the old id at its last epoch.
    assert_eq!(
        rotated.init_producer_id(Some((7, EPOCH_EXHAUSTED)), 60_000, NOW, || panic!()),
        Ok(InitStep::Answer {
            producer_id: 8,
            epoch: 0
        })
    );
    // Without an expected pair: a new id too, and no retry to recognise.
    let rotated = written(m.init_producer_id(None, 60_000, NOW, || 9));
    assert_eq!(
        (
            rotated.producer_id,
            rotated.producer_epoch,
            rotated.last_producer_epoch
        ),
        (9, 0, -1)
    );
    // An open transaction at the last epoch can still be fenced (i16::MAX is kept for it).
    let mut open = ongoing();
    open.producer_epoch = EPOCH_EXHAUSTED;
    let Ok(InitStep::AbortFirst(abort)) = open.init_producer_id(None, 1, NOW, || panic!()) else {
        panic!("abort first");
    };
    assert_eq!(abort.producer_epoch, i16::MAX);
}

#[test]
fn transactions_time_out_and_idle_ids_expire() {
    let m = ongoing(); // started at NOW + 10, 60 s timeout
    assert_eq!(m.timed_out(NOW + 10 + 60_000), None);
    let abort = m.timed_out(NOW + 10 + 60_001).expect("timed out");
    assert_eq!(
        (abort.state, abort.producer_epoch),
        (TxnState::PrepareAbort, 1)
    );
    assert_eq!(started().timed_out(i64::MAX), None, "nothing under way");

    let week = 7 * 24 * 3_600_000;
    assert!(
        !m.expired(NOW + 10 + 2 * week, week),
        "a transaction is under way"
    );
    let done = abort.complete(NOW + 70_000);
    assert!(!done.expired(NOW + 70_000 + week - 1, week));
    assert!(done.expired(NOW + 70_000 + week, week));
}
