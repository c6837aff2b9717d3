//! The producer state's rules, transactions and snapshots.

use super::*;

/// A data batch's header (the other tests of idempotence use it too).
pub(crate) fn batch(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
    BatchHeader {
        base_offset: 0,
        size: 100,
        last_offset_delta: records - 1,
        first_timestamp: 0,
        max_timestamp: 0,
        record_count: records,
        attributes: 0,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        partition_leader_epoch: 0,
    }
}

/// Check and, if it is to be appended, record at `offset`.
fn append(s: &mut ProducerStates, h: &BatchHeader, offset: i64) -> Result<Verdict, ProducerError> {
    let v = s.check(h)?;
    if v == Verdict::Append {
        s.record(h, offset, 0);
    }
    Ok(v)
}

#[test]
fn sequences_continue_retries_are_duplicates_and_gaps_are_refused() {
    let mut s = ProducerStates::default();
    assert_eq!(append(&mut s, &batch(7, 0, 0, 3), 100), Ok(Verdict::Append));
    assert_eq!(append(&mut s, &batch(7, 0, 3, 2), 103), Ok(Verdict::Append));
    // The first batch again: answered with its offsets.
    let dup = append(&mut s, &batch(7, 0, 0, 3), 999).unwrap();
    assert_eq!(
        dup,
        Verdict::Duplicate(BatchMeta {
            first_seq: 0,
            last_seq: 2,
            first_offset: 100,
            last_offset: 102
        })
    );
    // A gap.
    assert!(matches!(
        append(&mut s, &batch(7, 0, 6, 1), 105),
        Err(ProducerError::OutOfOrderSequence {
            last: 4,
            got: 6,
            ..
        })
    ));
    // Non-idempotent batches are never checked.
    assert_eq!(
        append(&mut s, &batch(-1, -1, -1, 1), 105),
        Ok(Verdict::Append)
    );
}

#[test]
fn only_five_batches_are_remembered() {
    let mut s = ProducerStates::default();
    for i in 0..7 {
        append(&mut s, &batch(1, 0, i, 1), i as i64).unwrap();
    }
    assert_eq!(s.get(1).unwrap().batches.len(), BATCHES_RETAINED);
    // Batch 1 is forgotten: a retry of it is now out of order, not a duplicate.
    assert!(append(&mut s, &batch(1, 0, 1, 1), 9).is_err());
    assert!(matches!(
        append(&mut s, &batch(1, 0, 2, 1), 9),
        Ok(Verdict::Duplicate(_))
    ));
}

#[test]
fn epochs_fence_and_restart_the_sequence() {
    let mut s = ProducerStates::default();
    append(&mut s, &batch(1, 3, 0, 1), 0).unwrap();
    assert!(matches!(
        append(&mut s, &batch(1, 2, 1, 1), 1),
        Err(ProducerError::InvalidEpoch {
            current: 3,
            got: 2,
            ..
        })
    ));
    assert!(
        append(&mut s, &batch(1, 4, 5, 1), 1).is_err(),
        "a new epoch starts at 0"
    );
    assert_eq!(append(&mut s, &batch(1, 4, 0, 1), 1), Ok(Verdict::Append));
    // An unknown producer may start anywhere (its state may have expired).
    assert_eq!(append(&mut s, &batch(2, 0, 40, 1), 2), Ok(Verdict::Append));
}

#[test]
fn sequences_wrap_after_the_largest() {
    let mut s = ProducerStates::default();
    append(&mut s, &batch(1, 0, i32::MAX - 1, 2), 0).unwrap();
    assert_eq!(s.get(1).unwrap().batches[0].last_seq, i32::MAX);
    assert_eq!(append(&mut s, &batch(1, 0, 0, 1), 2), Ok(Verdict::Append));
    // A batch that crosses the wrap.
    let mut s = ProducerStates::default();
    append(&mut s, &batch(1, 0, i32::MAX, 3), 0).unwrap();
    assert_eq!(s.get(1).unwrap().batches[0].last_seq, 1);
    assert_eq!(append(&mut s, &batch(1, 0, 2, 1), 3), Ok(Verdict::Append));
}

#[test]
fn snapshots_round_trip_and_damage_is_detected() {
    let mut s = ProducerStates::default();
    for pid in 0..20 {
        for i in 0..(pid % 7) as i32 {
            s.record(&batch(pid, 1, i * 2, 2), pid * 100 + i as i64, 1_000 + pid);
        }
    }
    let data = s.encode();
    assert_eq!(ProducerStates::decode(&data), Ok(s.clone()));
    for at in [0, 5, data.len() / 2, data.len() - 1] {
        let mut bad = data.clone();
        bad[at] ^= 0x20;
        assert!(ProducerStates::decode(&bad).is_err(), "flip at {at}");
    }
    assert!(ProducerStates::decode(&data[..data.len() - 3]).is_err());
    // Expiry by the last write.
    assert_eq!(s.expire(1_010, 5), 4);
    assert!(s.get(19).is_some() && s.get(4).is_none());
}

fn transactional(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
    BatchHeader {
        attributes: crate::batch::TRANSACTIONAL_ATTRIBUTE,
        ..batch(pid, epoch, seq, records)
    }
}

fn marker(pid: i64, epoch: i16) -> BatchHeader {
    BatchHeader {
        attributes: crate::batch::TRANSACTIONAL_ATTRIBUTE | crate::batch::CONTROL_ATTRIBUTE,
        base_sequence: -1,
        ..batch(pid, epoch, -1, 1)
    }
}

fn ends(commit: bool, coordinator_epoch: i32) -> Marker {
    Marker {
        commit,
        coordinator_epoch,
    }
}

#[test]
fn a_transaction_opens_at_its_first_batch_and_its_marker_closes_it() {
    let mut s = ProducerStates::default();
    assert_eq!(s.first_unstable_offset(), None);
    append(&mut s, &batch(9, 0, 0, 1), 5).unwrap(); // another, not transactional
    append(&mut s, &transactional(1, 0, 0, 2), 10).unwrap();
    append(&mut s, &transactional(2, 3, 0, 1), 12).unwrap();
    append(&mut s, &transactional(1, 0, 2, 2), 13).unwrap();
    assert_eq!(s.get(1).unwrap().txn_first_offset, Some(10));
    assert_eq!(s.first_unstable_offset(), Some(10));

    // Outside its open transaction, the producer is refused; a retry is still a duplicate.
    assert_eq!(
        append(&mut s, &batch(1, 0, 4, 1), 15),
        Err(ProducerError::InvalidTxnState {
            producer_id: 1,
            txn_first_offset: 10
        })
    );
    assert!(matches!(
        append(&mut s, &transactional(1, 0, 2, 2), 15),
        Ok(Verdict::Duplicate(_))
    ));

    // Producer 1 commits at 15: producer 2's transaction, from 12, is what stays unstable.
    assert_eq!(s.check_marker(&marker(1, 0), &ends(true, 4)), Ok(()));
    let done = s.record_marker(&marker(1, 0), &ends(true, 4), 15, 0);
    assert_eq!(
        done,
        Some(CompletedTxn {
            producer_id: 1,
            first_offset: 10,
            last_offset: 15,
            aborted: false
        })
    );
    assert_eq!(s.first_unstable_offset(), Some(12));
    // The sequence goes on after the marker, and the next batch outside a transaction is
    // taken.
    assert_eq!(append(&mut s, &batch(1, 0, 4, 1), 16), Ok(Verdict::Append));

    // Producer 2 aborts; nothing is unstable any more.
    let done = s.record_marker(&marker(2, 3), &ends(false, 4), 17, 0);
    assert_eq!(done.map(|t| (t.first_offset, t.aborted)), Some((12, true)));
    assert_eq!(s.first_unstable_offset(), None);
    // A second marker (a coordinator's retry) closes nothing.
    assert_eq!(s.record_marker(&marker(2, 3), &ends(false, 4), 18, 0), None);

    let described = s.describe();
    let p2 = described.iter().find(|d| d.producer_id == 2).unwrap();
    assert_eq!((p2.coordinator_epoch, p2.txn_start_offset), (4, -1));
}

#[test]
fn markers_of_old_epochs_and_old_coordinators_are_fenced() {
    let mut s = ProducerStates::default();
    append(&mut s, &transactional(1, 5, 0, 1), 0).unwrap();
    s.record_marker(&marker(1, 5), &ends(true, 7), 1, 0);
    assert!(matches!(
        s.check_marker(&marker(1, 4), &ends(false, 7)),
        Err(ProducerError::InvalidEpoch {
            current: 5,
            got: 4,
            ..
        })
    ));
    assert!(matches!(
        s.check_marker(&marker(1, 5), &ends(false, 6)),
        Err(ProducerError::CoordinatorFenced {
            current: 7,
            got: 6,
            ..
        })
    ));
    // A producer unknown here: its marker is taken (an admin's abort of a hanging
    // transaction whose producer expired) and closes nothing.
    assert_eq!(s.check_marker(&marker(3, 0), &ends(false, 0)), Ok(()));

    // A coordinator fences producer 1 mid-transaction: the abort comes at epoch 6; the
    // zombie's batches at 5 are refused, and epoch 6 starts its sequence at 0.
    append(&mut s, &transactional(1, 5, 1, 1), 2).unwrap();
    let done = s.record_marker(&marker(1, 6), &ends(false, 7), 3, 0);
    assert_eq!(done.map(|t| (t.first_offset, t.last_offset)), Some((2, 3)));
    assert!(matches!(
        append(&mut s, &transactional(1, 5, 2, 1), 4),
        Err(ProducerError::InvalidEpoch { .. })
    ));
    assert!(
        append(&mut s, &transactional(1, 6, 3, 1), 4).is_err(),
        "epoch 6 starts at 0"
    );
    assert_eq!(
        append(&mut s, &transactional(1, 6, 0, 1), 4),
        Ok(Verdict::Append)
    );
}

#[test]
fn producers_with_an_open_transaction_never_expire_and_snapshots_keep_it() {
    let mut s = ProducerStates::default();
    s.record(&transactional(1, 0, 0, 1), 40, 1_000);
    s.record(&batch(2, 0, 0, 1), 41, 1_000);
    s.record_marker(&marker(3, 2), &ends(true, 9), 42, 1_000);
    let data = s.encode();
    let back = ProducerStates::decode(&data).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.get(1).unwrap().txn_first_offset, Some(40));
    assert_eq!(back.get(3).unwrap().coordinator_epoch, 9);

    assert_eq!(s.expire(1_000_000, 10), 2);
    assert_eq!(s.first_unstable_offset(), Some(40));
    assert!(s.get(1).is_some());
}

#[test]
fn the_earliest_open_transaction_stays_known_through_rounds_and_undos() {
    let mut s = ProducerStates::default();
    s.record(&transactional(1, 0, 0, 1), 10, 0);
    s.record(&transactional(2, 0, 0, 1), 20, 0);
    // A commit round works on a subset and merges it back: producer 1 commits, 3 opens.
    let mut round = s.subset(&[1, 3]);
    assert_eq!(round.first_unstable_offset(), Some(10));
    round.record_marker(&marker(1, 0), &ends(true, 0), 30, 0);
    round.record(&transactional(3, 0, 0, 1), 31, 0);
    s.merge(round);
    assert_eq!(s.first_unstable_offset(), Some(20));
    // A cut log rolls producer 2's abort back: its transaction is open again.
    let mut undo = Vec::new();
    let abort = Marker {
        commit: false,
        coordinator_epoch: 0,
    };
    let bytes = abort.encode(2, 0, 0);
    let done = s.record_batch_with_undo(&marker(2, 0), &bytes, 32, 0, &mut undo);
    assert_eq!(done.map(|t| (t.first_offset, t.aborted)), Some((20, true)));
    assert_eq!(s.first_unstable_offset(), Some(31));
    for (id, entry) in undo {
        s.restore(id, entry);
    }
    assert_eq!(s.first_unstable_offset(), Some(20));
    // What the index says is what the entries say, after a snapshot too.
    let back = ProducerStates::decode(&s.encode()).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.first_unstable_offset(), Some(20));
}

#[test]
fn batches_the_broker_writes_for_a_producer_have_no_sequence_to_check() {
    let mut s = ProducerStates::default();
    let offsets = |epoch| BatchHeader {
        base_sequence: -1,
        ..transactional(4, epoch, 0, 2)
    };
    // Two commits of offsets in one transaction: neither is taken for the other's retry.
    assert_eq!(append(&mut s, &offsets(1), 0), Ok(Verdict::Append));
    assert_eq!(append(&mut s, &offsets(1), 2), Ok(Verdict::Append));
    assert_eq!(s.get(4).unwrap().txn_first_offset, Some(0));
    assert!(s.get(4).unwrap().batches.is_empty());
    // An older epoch is still fenced.
    assert!(matches!(
        append(&mut s, &offsets(0), 4),
        Err(ProducerError::InvalidEpoch { .. })
    ));
}

#[test]
fn version_1_snapshots_are_still_read() {
    // Version 1: no transaction and no coordinator epoch per producer.
    let mut v1 = Vec::new();
    v1.extend_from_slice(&1u16.to_be_bytes());
    v1.extend_from_slice(&1u32.to_be_bytes());
    v1.extend_from_slice(&7i64.to_be_bytes());
    v1.extend_from_slice(&2i16.to_be_bytes());
    v1.extend_from_slice(&123i64.to_be_bytes());
    v1.push(1);
    for field in [0i32, 4] {
        v1.extend_from_slice(&field.to_be_bytes());
    }
    for offset in [100i64, 104] {
        v1.extend_from_slice(&offset.to_be_bytes());
    }
    let crc = crc32fast::hash(&v1);
    v1.extend_from_slice(&crc.to_be_bytes());
    let s = ProducerStates::decode(&v1).unwrap();
    let e = s.get(7).unwrap();
    assert_eq!((e.epoch, e.last_write_ms), (2, 123));
    assert_eq!((e.txn_first_offset, e.coordinator_epoch), (None, -1));
    assert_eq!(e.batches[0].last_offset, 104);
}

#[test]
fn batches_are_told_from_markers_by_their_bytes() {
    let marker_bytes = Marker {
        commit: false,
        coordinator_epoch: 3,
    }
    .encode(1, 0, 0);
    let m = crate::batch::validate(&marker_bytes).unwrap();
    let mut s = ProducerStates::default();
    let data = transactional(1, 0, 0, 2);
    assert_eq!(s.check_batch(&data, &[]), Ok(Verdict::Append));
    assert_eq!(s.record_batch(&data, &[], 10, 0), None);
    assert_eq!(s.check_batch(&m, &marker_bytes), Ok(Verdict::Append));
    let done = s.record_batch(&m, &marker_bytes, 12, 0).unwrap();
    assert_eq!(
        (done.first_offset, done.last_offset, done.aborted),
        (10, 12, true)
    );
    assert_eq!(s.get(1).unwrap().coordinator_epoch, 3);
    // The marker is no batch of the producer's sequence.
    assert_eq!(s.get(1).unwrap().batches.len(), 1);
    // A marker from an older coordinator, by its bytes.
    let old = Marker {
        commit: true,
        coordinator_epoch: 2,
    }
    .encode(1, 0, 0);
    let h = crate::batch::validate(&old).unwrap();
    assert!(matches!(
        s.check_batch(&h, &old),
        Err(ProducerError::CoordinatorFenced { .. })
    ));
}
