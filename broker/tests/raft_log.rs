//! A replicated partition's log is its Raft log: entries written through the commit pipeline
//! (offsets dense from the log's end, the term in each batch's leader epoch, Raft's own entries
//! as control batches), the high watermark below the durable end, divergent suffixes cut (also
//! back into an earlier segment), a reset to a leader's snapshot, Raft's own entries taking no
//! Kafka offset, and all of it as it was after a restart.

mod common;

use std::path::Path;
use std::sync::Arc;

use broker::batch;
use broker::config::Config;
use broker::metrics::Metrics;
use broker::storage::log::gaps::KafkaOffsets;
use broker::storage::log::replica::{Epoch, HardStateRecord, ReplicaMeta};
use broker::storage::log::{Isolation, Partition, ReadError};
use broker::storage::{RaftEntry, RaftReset, RaftWrite, RaftWritten, Store};
use bytes::Bytes;
use common::{close_store as close, make_batch, raft_write as write};
use io_backend::{blocking::BlockingDisk, Env, EnvRng, SystemClock, TcpNet};

fn env() -> Env {
    Env {
        disk: Arc::new(BlockingDisk::new(4)),
        net: Arc::new(TcpNet),
        clock: Arc::new(SystemClock),
        rng: EnvRng::seeded(11),
    }
}

fn config(dir: &Path, segment_bytes: u64) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        retention_check_interval_ms: 0,
        cluster_peers: "1@127.0.0.1:1".into(),
        segment_bytes,
        ..Config::default()
    }
}

async fn open(dir: &Path, segment_bytes: u64) -> (Arc<Store>, Arc<Partition>) {
    let store = Store::open(
        env(),
        &config(dir, segment_bytes),
        Arc::new(Metrics::default()),
    )
    .await
    .expect("open store");
    let topic = match store.topic("t") {
        Some(t) => t,
        None => store
            .create_topic("t", 1, Default::default())
            .await
            .expect("create topic"),
    };
    let p = topic.partitions[0].clone();
    (store, p)
}

fn entry(index: u64, term: u64, records: i32) -> RaftEntry {
    RaftEntry {
        index,
        term,
        data: if records == 0 {
            Bytes::new()
        } else {
            make_batch(records, 1_700_000_000_000, b"value")
        },
    }
}

/// Every batch from `offset` to the durable end: (base offset, records, epoch, control).
async fn batches(store: &Store, p: &Partition, from: i64) -> Vec<(i64, i64, i32, bool)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let d = p.read_durable(store.io(), offset, 1 << 20).await.unwrap();
        if d.records.is_empty() {
            return out;
        }
        for (at, h) in batch::scan(&d.records) {
            batch::validate(&d.records[at..at + h.size]).expect("every stored batch is valid");
            out.push((
                h.base_offset,
                h.last_offset_delta as i64 + 1,
                h.partition_leader_epoch,
                h.is_control(),
            ));
            offset = h.next_offset();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_entries_are_the_partition_log_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    // A new leader's own entry, then batches of 3 and 2 records, all of term 1.
    let w = write(&store, &p, |w| {
        w.entries = vec![entry(1, 1, 0), entry(2, 1, 3), entry(3, 1, 2)];
        w.hard_state = Some(HardStateRecord {
            term: 1,
            vote: 1,
            commit: 0,
        });
    })
    .await;
    assert_eq!(
        w,
        RaftWritten {
            next_index: 4,
            next_offset: 6
        }
    );
    assert_eq!(
        batches(&store, &p, 0).await,
        vec![(0, 1, 1, true), (1, 3, 1, false), (4, 2, 1, false)]
    );
    // Nothing is committed: consumers see nothing, and the high watermark is 0.
    assert_eq!(p.high_watermark(), 0);
    assert!(p
        .read(store.io(), 0, 1 << 20)
        .await
        .unwrap()
        .records
        .is_empty());
    // Committed through the second entry: consumers see up to offset 4, not the third batch.
    assert!(p.set_committed_offset(4));
    assert_eq!(p.high_watermark(), 4);
    let seen = p.read(store.io(), 0, 1 << 20).await.unwrap().records;
    assert_eq!(batch::scan(&seen).count(), 2);
    assert!(
        p.read(store.io(), 5, 1 << 20).await.is_err(),
        "past the high watermark"
    );
    // A leader of term 2 replaces entry 3 on: the cut, then its entries.
    let w = write(&store, &p, |w| {
        w.truncate_from = Some(3);
        w.entries = vec![entry(3, 2, 1), entry(4, 2, 0)];
        w.hard_state = Some(HardStateRecord {
            term: 2,
            vote: 2,
            commit: 2,
        });
    })
    .await;
    assert_eq!(
        w,
        RaftWritten {
            next_index: 5,
            next_offset: 6
        }
    );
    let expected = vec![
        (0, 1, 1, true),
        (1, 3, 1, false),
        (4, 1, 2, false),
        (5, 1, 2, true),
    ];
    assert_eq!(batches(&store, &p, 0).await, expected);
    let epochs = vec![
        Epoch {
            term: 1,
            index: 1,
            offset: 0,
        },
        Epoch {
            term: 2,
            index: 3,
            offset: 4,
        },
    ];
    assert_eq!(p.state().replica.as_ref().unwrap().meta.epochs, epochs);
    for (index, offset) in [(1, 0), (2, 1), (3, 4), (4, 5), (5, 6)] {
        let at = p.locate(store.io(), index).await.unwrap().unwrap();
        assert_eq!(at.offset, offset, "entry {index}");
    }
    close(store, p).await;

    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(batches(&store, &p, 0).await, expected);
    {
        let st = p.state();
        let r = st.replica.as_ref().unwrap();
        assert_eq!(r.next_index, 5);
        assert_eq!(r.meta.epochs, epochs);
        assert_eq!(
            r.hard_state,
            HardStateRecord {
                term: 2,
                vote: 2,
                commit: 2
            }
        );
        let tail: Vec<(i64, u32, u64)> = r
            .recovered_tail
            .iter()
            .map(|t| (t.base_offset, t.records, t.term))
            .collect();
        assert_eq!(tail, vec![(0, 1, 1), (1, 3, 1), (4, 1, 2), (5, 1, 2)]);
        assert_eq!(
            st.high_watermark(),
            0,
            "nothing known committed after a start"
        );
    }
    // A leader whose log starts past this one's end: the log starts afresh at its offset.
    let w = write(&store, &p, |w| {
        w.reset = Some(RaftReset {
            index: 20,
            term: 3,
            offset: 50,
            gaps_before: 0,
            prefix: None,
        });
        w.entries = vec![entry(21, 3, 2)];
    })
    .await;
    assert_eq!(
        w,
        RaftWritten {
            next_index: 22,
            next_offset: 52
        }
    );
    assert_eq!(p.log_start_offset(), 50);
    close(store, p).await;
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(p.log_start_offset(), 50);
    assert_eq!(batches(&store, &p, 50).await, vec![(50, 2, 3, false)]);
    {
        let st = p.state();
        let r = st.replica.as_ref().unwrap();
        assert_eq!((r.next_index, r.meta.prev), (22, (20, 3)));
        assert_eq!(r.meta.term_of(20), Some(3));
    }
    close(store, p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_reaches_back_into_an_earlier_segment_and_entries_are_found_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: a few entries each.
    let (store, p) = open(dir.path(), 1024).await;
    let mut offsets = vec![0i64; 41];
    let mut next = 0;
    for index in 1..=40u64 {
        let term = 1 + index / 15;
        offsets[index as usize] = next;
        let records = 1 + (index % 3) as i32;
        write(&store, &p, |w| {
            w.entries = vec![entry(index, term, records)]
        })
        .await;
        next += records as i64;
    }
    let segments = p.state().segments.len();
    assert!(segments >= 4, "rolled into {segments} segments");
    for index in 1..=40u64 {
        let at = p.locate(store.io(), index).await.unwrap().unwrap();
        assert_eq!(at.offset, offsets[index as usize], "entry {index}");
    }
    // Cut back to entry 12, which lies in an earlier segment than the active one.
    let cut_at = offsets[12];
    assert!(cut_at < p.state().active().base_offset);
    let w = write(&store, &p, |w| {
        w.truncate_from = Some(12);
        w.entries = vec![entry(12, 9, 1)];
    })
    .await;
    assert_eq!(
        w,
        RaftWritten {
            next_index: 13,
            next_offset: cut_at + 1
        }
    );
    let all = batches(&store, &p, 0).await;
    assert_eq!(all.len(), 12);
    assert_eq!(all.last(), Some(&(cut_at, 1, 9, false)));
    close(store, p).await;
    let (store, p) = open(dir.path(), 1024).await;
    assert_eq!(batches(&store, &p, 0).await, all);
    assert_eq!(p.state().replica.as_ref().unwrap().next_index, 13);
    // And the log goes on from there, through rolls, after the restart.
    for index in 13..=30u64 {
        write(&store, &p, |w| w.entries = vec![entry(index, 9, 2)]).await;
    }
    for index in 13..=30u64 {
        let at = p.locate(store.io(), index).await.unwrap().unwrap();
        assert_eq!(
            at.offset,
            cut_at + 1 + 2 * (index as i64 - 13),
            "entry {index}"
        );
    }
    close(store, p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_whose_first_entry_never_came_is_removed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    write(&store, &p, |w| {
        w.entries = vec![entry(1, 1, 0), entry(2, 1, 4)];
    })
    .await;
    let part_dir = p.dir.clone();
    close(store, p).await;
    // As a roll leaves it when the node stops before the new segment's first entry is written.
    std::fs::write(part_dir.join(format!("{:020}.log", 5)), b"").unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(p.state().segments.len(), 1);
    assert_eq!(p.state().replica.as_ref().unwrap().next_index, 3);
    let w = write(&store, &p, |w| w.entries = vec![entry(3, 1, 1)]).await;
    assert_eq!(
        w,
        RaftWritten {
            next_index: 4,
            next_offset: 6
        }
    );
    close(store, p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_do_not_follow_the_log_are_refused_and_the_directory_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    write(&store, &p, |w| w.entries = vec![entry(1, 1, 0)]).await;
    for bad in [vec![entry(3, 1, 1)], vec![entry(2, 1, 1), entry(4, 1, 1)]] {
        let rx = store
            .raft_write(RaftWrite {
                partition: p.clone(),
                reset: None,
                truncate_from: None,
                producers_at_cut: None,
                entries: bad,
                hard_state: None,
                conf: None,
            })
            .await
            .unwrap();
        let err = rx.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("do not follow"), "{err}");
    }
    let garbage = RaftEntry {
        index: 2,
        term: 1,
        data: Bytes::from_static(b"not a batch"),
    };
    let rx = store
        .raft_write(RaftWrite {
            partition: p.clone(),
            reset: None,
            truncate_from: None,
            producers_at_cut: None,
            entries: vec![garbage],
            hard_state: None,
            conf: None,
        })
        .await
        .unwrap();
    assert!(rx.await.unwrap().is_err());
    assert!(store.io().health.check().is_ok());
    let w = write(&store, &p, |w| w.entries = vec![entry(2, 1, 1)]).await;
    assert_eq!(w.next_index, 3);
    close(store, p).await;
}

/// What a client sees of `p` from Kafka offset `from` to the high watermark, fetching as a
/// consumer does (a read stops at a segment's end): (base offset, records) of every batch but
/// the control batches clients skip.
async fn served(store: &Store, p: &Partition, from: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let d = p
            .read_kafka(
                store.io(),
                offset,
                1 << 20,
                true,
                Isolation::ReadUncommitted,
            )
            .await
            .unwrap()
            .expect("nothing changes the log while it is read");
        if offset >= d.high_watermark {
            return out;
        }
        for (at, h) in batch::scan(&d.records) {
            batch::validate(&d.records[at..at + h.size]).expect("a served batch is valid");
            assert!(!h.takes_no_offset(), "Raft's own entries are never served");
            offset = h.next_offset();
            if !h.is_control() {
                out.push((h.base_offset, h.last_offset_delta as i64 + 1));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_own_entries_take_no_kafka_offset_across_segments_a_cut_a_restart_and_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: every write after the first rolls, so both the Raft record's gaps (closed
    // segments) and the active segment's scan are used after a restart.
    let (store, p) = open(dir.path(), 100).await;
    // Term 1: its leader's entry, 3 records; term 2: its leader's entry, 2 records.
    for e in [
        entry(1, 1, 0),
        entry(2, 1, 3),
        entry(3, 2, 0),
        entry(4, 2, 2),
    ] {
        write(&store, &p, |w| w.entries = vec![e]).await;
    }
    // Committed through term 2's own entry (log offset 4): records 0..3.
    assert!(p.set_committed_offset(5));
    assert_eq!(
        p.kafka_offsets(),
        KafkaOffsets {
            log_start: 0,
            high_watermark: 3,
            last_stable: 3,
            log_end: 5
        },
        "dense from 0 across an election"
    );
    assert_eq!(served(&store, &p, 0).await, vec![(0, 3)]);
    assert_eq!(served(&store, &p, 2).await, vec![(0, 3)]);
    assert_eq!(served(&store, &p, 3).await, vec![], "at the high watermark");
    match p
        .read_kafka(store.io(), 4, 1 << 20, true, Isolation::ReadUncommitted)
        .await
    {
        Err(ReadError::OffsetOutOfRange {
            offset: 4,
            log_start: 0,
            high_watermark: 3,
        }) => {}
        other => panic!("past the end: {other:?}"),
    }
    assert_eq!((p.to_log(2), p.to_kafka(3)), (3, 2));
    assert_eq!(p.to_log(3), 5, "the high watermark");
    // Term 3 cuts the last batch and starts with its own entry: no record lost a Kafka offset.
    write(&store, &p, |w| {
        w.truncate_from = Some(4);
        w.entries = vec![entry(4, 3, 0), entry(5, 3, 1)];
    })
    .await;
    let gaps = p.state().replica.as_ref().unwrap().meta.gaps.clone();
    assert_eq!(gaps.at, vec![0, 4, 5]);
    assert!(p.set_committed_offset(7));
    assert_eq!(served(&store, &p, 0).await, vec![(0, 3), (3, 1)]);
    assert_eq!((p.to_log(3), p.to_kafka(6)), (6, 3));
    close(store, p).await;

    let (store, p) = open(dir.path(), 100).await;
    assert_eq!(p.state().replica.as_ref().unwrap().meta.gaps, gaps);
    assert!(p.set_committed_offset(7));
    assert_eq!(served(&store, &p, 0).await, vec![(0, 3), (3, 1)]);
    assert_eq!(p.kafka_offsets().high_watermark, 4);
    // A leader's snapshot: its log starts at log offset 50, with 7 of Raft's own entries
    // before it; Kafka offsets go on from 43.
    write(&store, &p, |w| {
        w.reset = Some(RaftReset {
            index: 20,
            term: 5,
            offset: 50,
            gaps_before: 7,
            prefix: None,
        });
        w.entries = vec![entry(21, 5, 0), entry(22, 5, 2)];
    })
    .await;
    assert!(p.set_committed_offset(53));
    let expected = KafkaOffsets {
        log_start: 43,
        high_watermark: 45,
        last_stable: 45,
        log_end: 45,
    };
    assert_eq!(p.kafka_offsets(), expected);
    assert_eq!(served(&store, &p, 43).await, vec![(43, 2)]);
    close(store, p).await;
    let (store, p) = open(dir.path(), 100).await;
    assert!(p.set_committed_offset(53));
    assert_eq!(p.kafka_offsets(), expected, "after a restart");
    assert_eq!(served(&store, &p, 44).await, vec![(43, 2)]);
    close(store, p).await;
}

/// A leader-change batch as brokers wrote it before Raft's own entries took no Kafka offset:
/// without `OWN_ENTRY_ATTRIBUTE` (its CRC redone).
fn old_leader_change_batch() -> Bytes {
    let mut b = batch::leader_change_batch().to_vec();
    let attributes = i16::from_be_bytes([b[21], b[22]]) & !batch::OWN_ENTRY_ATTRIBUTE;
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_logs_own_entries_keep_their_offsets_and_reach_a_follower_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    // An existing log: its first leader's entry took offset 0; then a record and a new
    // leader's entry written now (no Kafka offset).
    let old = RaftEntry {
        index: 1,
        term: 1,
        data: old_leader_change_batch(),
    };
    write(&store, &p, |w| {
        w.entries = vec![old, entry(2, 1, 2), entry(3, 2, 0), entry(4, 2, 1)];
    })
    .await;
    assert!(p.set_committed_offset(5));
    assert_eq!(p.state().replica.as_ref().unwrap().meta.gaps.at, vec![3]);
    assert_eq!(
        served(&store, &p, 0).await,
        vec![(1, 2), (3, 1)],
        "the old entry keeps offset 0 (clients skip it, a control batch); the new one takes none"
    );
    assert_eq!(p.kafka_offsets().high_watermark, 4);
    // A follower is sent the old entry's bytes (it must store the same batch, taking the same
    // offset) and the new one as an empty entry (it writes the same own batch).
    let entries = broker::replication::entries::read_entries(&p, store.io(), 1, None, 1 << 20)
        .await
        .unwrap();
    let sizes: Vec<bool> = entries.iter().map(|e| e.data.is_empty()).collect();
    assert_eq!(sizes, vec![false, false, true, false]);
    let h = batch::parse_header(&entries[0].data).unwrap();
    assert!(h.is_control() && !h.takes_no_offset());
    close(store, p).await;
}

fn conf_entry(index: u64, term: u64, change: &[u8]) -> RaftEntry {
    RaftEntry {
        index,
        term,
        data: batch::conf_change_batch(change),
    }
}

fn conf_indexes(p: &Partition) -> Vec<u64> {
    let st = p.state();
    let r = st.replica.as_ref().unwrap();
    r.meta.confs.entries.iter().map(|e| e.index).collect()
}

/// Membership changes are stored as the broker's own control batches (no Kafka offset), and
/// the log's record keeps them — written beside the data, found again in the active segment
/// after a restart even when the record lags, forgotten by a cut, kept past the log start
/// until the recorded membership includes them, and replaced by a snapshot's membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_are_kept_by_the_log_across_a_cut_a_restart_and_a_snapshot() {
    use broker::storage::log::conf::ConfRecord;
    let dir = tempfile::tempdir().unwrap();
    // Segments of about two batches.
    let (store, p) = open(dir.path(), 200).await;
    write(&store, &p, |w| {
        w.entries = vec![
            entry(1, 1, 0),
            entry(2, 1, 2),
            conf_entry(3, 1, b"add learner 4"),
            entry(4, 1, 2),
            conf_entry(5, 1, b"joint"),
        ];
    })
    .await;
    assert_eq!(conf_indexes(&p), vec![3, 5]);
    // Two records: the changes and the leader's entry took no Kafka offset.
    assert_eq!(p.to_kafka(p.state().log_end_offset()), 4);
    // A cut forgets the change it removed; a new one at the same index is kept.
    write(&store, &p, |w| {
        w.truncate_from = Some(5);
        w.entries = vec![conf_entry(5, 2, b"other"), entry(6, 2, 1)];
    })
    .await;
    assert_eq!(conf_indexes(&p), vec![3, 5]);
    let change_at = |p: &Partition, index: u64| {
        let st = p.state();
        let r = st.replica.as_ref().unwrap();
        r.meta
            .confs
            .entries
            .iter()
            .find(|e| e.index == index)
            .unwrap()
            .change
            .clone()
    };
    assert_eq!(change_at(&p, 5), b"other");
    close(store, p).await;
    let (store, p) = open(dir.path(), 200).await;
    assert_eq!(conf_indexes(&p), vec![3, 5], "after a restart");
    assert_eq!(change_at(&p, 5), b"other");
    // The membership applied through 3 is recorded: the change at 3 goes once the log no
    // longer holds it; the one at 5 stays whatever retention removed.
    let applied = ConfRecord {
        index: 3,
        voters: vec![1, 2, 3],
        learners: vec![4],
        ..Default::default()
    };
    write(&store, &p, |w| {
        w.entries = vec![entry(7, 2, 1)];
        w.conf = Some(applied.clone());
    })
    .await;
    let end = p.state().log_end_offset();
    assert!(p.set_committed_offset(end));
    store
        .delete_records(p.clone(), end)
        .await
        .expect("log start moved");
    write(&store, &p, |w| w.entries = vec![entry(8, 2, 1)]).await;
    assert_eq!(conf_indexes(&p), vec![5], "applied and gone from the log");
    close(store, p).await;
    let (store, p) = open(dir.path(), 200).await;
    assert_eq!(conf_indexes(&p), vec![5]);
    assert_eq!(
        p.state().replica.as_ref().unwrap().meta.confs.applied,
        Some(applied)
    );
    // A reset to a leader's snapshot takes the leader's membership, and no changes.
    let theirs = ConfRecord {
        index: 20,
        voters: vec![2, 3, 4],
        ..Default::default()
    };
    write(&store, &p, |w| {
        w.reset = Some(RaftReset {
            index: 15,
            term: 3,
            offset: 40,
            gaps_before: 6,
            prefix: None,
        });
        w.conf = Some(theirs.clone());
    })
    .await;
    close(store, p).await;
    let (store, p) = open(dir.path(), 200).await;
    let confs = p.state().replica.as_ref().unwrap().meta.confs.clone();
    assert!(confs.entries.is_empty());
    assert_eq!(confs.applied, Some(theirs));
    close(store, p).await;
}

/// A replica moved away has its log emptied by a reset that carries its hard state with the
/// commit at 0; when that hard state is not written (the directory failed just after the
/// reset), the commit recorded before must not outlive the log it counted: the replica added
/// back later (or restarted) starts Raft from its log's end, where raft-rs would refuse to
/// start on a commit past the last entry. Found by `reassign-under-faults` seed 249.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_log_whose_hard_state_was_not_written_starts_raft_from_its_end() {
    use broker::replication::storage::{FollowersCache, PartitionStorage};
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    write(&store, &p, |w| {
        w.entries = (1..=5).map(|i| entry(i, 1, 2)).collect();
        w.hard_state = Some(HardStateRecord {
            term: 1,
            vote: 1,
            commit: 5,
        });
    })
    .await;
    // The reset alone, as if its hard state's write had failed after it.
    write(&store, &p, |w| {
        w.reset = Some(RaftReset {
            index: 0,
            term: 0,
            offset: 0,
            gaps_before: 0,
            prefix: None,
        })
    })
    .await;
    let recorded = p.state().replica.as_ref().unwrap().hard_state;
    assert_eq!((recorded.term, recorded.commit), (1, 0), "in memory");
    let start_raft = |p: &Arc<Partition>| {
        let storage =
            PartitionStorage::open(p.clone(), vec![1], None, FollowersCache::new(1 << 20))
                .expect("the log opens for Raft");
        let state = raft::Storage::initial_state(&storage).unwrap();
        assert_eq!(state.hard_state.commit, 0);
        assert_eq!(state.hard_state.term, 1, "the term stays");
        let config = raft::Config {
            id: 1,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        raft::RawNode::new(&config, storage, &logger).expect("raft starts");
    };
    start_raft(&p);
    // On disk the hard state still says commit 5 over an empty log: after a restart too.
    close(store, p).await;
    let (store, p) = open(dir.path(), 1 << 30).await;
    start_raft(&p);
    close(store, p).await;
}

fn hs(term: u64, vote: u64, commit: u64) -> HardStateRecord {
    HardStateRecord { term, vote, commit }
}

fn hard_state_of(p: &Partition) -> HardStateRecord {
    p.state().replica.as_ref().expect("replicated").hard_state
}

/// The hard states of all partitions are one file of the data directory (`raft-states`): the
/// newest one written is what a start reads, also after a torn frame at the file's end; a topic
/// made again under a deleted one's name starts with no term; and a partition the file has no
/// record of reads the `raft-state` file an older version wrote in its directory. A new
/// replica's first entries write no Raft record (`raft-log`) of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_states_are_one_file_read_back_by_topic_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    write(&store, &p, |w| {
        w.entries = vec![entry(1, 1, 0), entry(2, 1, 2)];
        w.hard_state = Some(hs(1, 1, 0));
    })
    .await;
    assert!(
        !p.dir.join("raft-log").exists(),
        "a new log's first entries are told by its batches"
    );
    write(&store, &p, |w| w.hard_state = Some(hs(2, 3, 2))).await;
    close(store, p).await;
    let file = dir.path().join("raft-states");
    // A frame a crash tore: garbage at the end of the file.
    let mut data = std::fs::read(&file).unwrap();
    data.extend_from_slice(&[0, 0, 0, 44, 1, 2, 3]);
    std::fs::write(&file, &data).unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(hard_state_of(&p), hs(2, 3, 2));
    // Each round that changes a hard state appends one frame of one record (8 + 45 bytes); one
    // that changes none appends nothing.
    let len = std::fs::metadata(&file).unwrap().len();
    for term in 3..103u64 {
        write(&store, &p, |w| w.hard_state = Some(hs(term, 1, 2))).await;
    }
    write(&store, &p, |w| w.hard_state = Some(hs(102, 1, 2))).await;
    assert_eq!(std::fs::metadata(&file).unwrap().len(), len + 100 * 53);
    close(store, p).await;
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(hard_state_of(&p), hs(102, 1, 2));
    // Deleted and made again: the old topic's term is not the new one's.
    drop(p);
    store.delete_topic("t").await.unwrap();
    let t = store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let p = t.partitions[0].clone();
    assert_eq!(hard_state_of(&p), HardStateRecord::default());
    close(store, p).await;
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(hard_state_of(&p), HardStateRecord::default());
    let partition_dir = p.dir.clone();
    close(store, p).await;
    // A directory from before the file: each partition's own file.
    std::fs::remove_file(&file).unwrap();
    let body = "term=5 vote=2 commit=0";
    let text = format!("{body}\ncrc32={:08x}\n", crc32fast::hash(body.as_bytes()));
    std::fs::write(partition_dir.join("raft-state"), text).unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(hard_state_of(&p), hs(5, 2, 0));
    close(store, p).await;
}

fn unsettled(p: &Partition) -> Option<u64> {
    p.state().replica.as_ref().expect("replicated").unsettled
}

/// A new partition is made without a sync of its own, and its first entries are kept as pieces
/// of the data directory's file of hard states, beside its segment: a crash that loses the
/// unsynced segment (or the partition's directory's entries) loses none of them — a start
/// writes them again. Past 2 KiB of pieces, or at a roll, it is settled (its segment and
/// directory synced), and its pieces go from the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_partitions_first_entries_survive_the_loss_of_its_unsynced_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(unsettled(&p), Some(0), "a new partition is unsettled");
    write(&store, &p, |w| {
        w.entries = vec![entry(1, 1, 0), entry(2, 1, 2)];
        w.hard_state = Some(hs(1, 1, 0));
    })
    .await;
    write(&store, &p, |w| w.entries = vec![entry(3, 1, 3)]).await;
    let written = batches(&store, &p, 0).await;
    assert_eq!(written.len(), 3);
    let recorded = unsettled(&p).expect("still unsettled");
    assert!(recorded > 0);
    let segment = p.dir.join("00000000000000000000.log");
    let partition_dir = p.dir.clone();
    close(store, p).await;
    // The segment's data lost.
    std::fs::write(&segment, b"").unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(batches(&store, &p, 0).await, written);
    assert_eq!(unsettled(&p), Some(recorded));
    close(store, p).await;
    // The segment's name lost, then the directory's.
    std::fs::remove_file(&segment).unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(batches(&store, &p, 0).await, written);
    close(store, p).await;
    std::fs::remove_dir_all(&partition_dir).unwrap();
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(batches(&store, &p, 0).await, written);
    assert_eq!(hard_state_of(&p), hs(1, 1, 0));
    // Entries past the bound: settled first, the pieces gone from the file.
    let file = dir.path().join("raft-states");
    let with_pieces = std::fs::metadata(&file).unwrap().len();
    let mut index = 4;
    while unsettled(&p).is_some() {
        write(&store, &p, |w| w.entries = vec![entry(index, 1, 20)]).await;
        index += 1;
        assert!(index < 100, "never settled");
    }
    let all = batches(&store, &p, 0).await;
    close(store, p).await;
    let (store, p) = open(dir.path(), 1 << 30).await;
    assert_eq!(
        unsettled(&p),
        None,
        "a settled partition with entries stays settled"
    );
    assert_eq!(batches(&store, &p, 0).await, all);
    assert!(std::fs::metadata(&file).unwrap().len() < with_pieces);
    close(store, p).await;
}

/// An unsettled partition whose segment rolls is settled first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsettled_partition_settles_before_a_roll() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 150 bytes: the second entry (~90 bytes each) rolls.
    let (store, p) = open(dir.path(), 150).await;
    write(&store, &p, |w| w.entries = vec![entry(1, 1, 2)]).await;
    assert!(unsettled(&p).is_some());
    write(&store, &p, |w| w.entries = vec![entry(2, 1, 2)]).await;
    assert_eq!(unsettled(&p), None);
    assert!(p.state().segments.len() >= 2, "the segment rolled");
    let all = batches(&store, &p, 0).await;
    close(store, p).await;
    let (store, p) = open(dir.path(), 150).await;
    assert_eq!(batches(&store, &p, 0).await, all);
    close(store, p).await;
}

/// The first entry written into a new segment writes the log's record (`raft-log`) beside it,
/// not before it: a crash may keep the entry and lose the record, which then says nothing of
/// the segment before — the active one when it was last written, whose terms, Raft's own
/// entries and membership changes only its batches told. A start finds them there again.
/// (Found by the simulator: a follower rolled, crashed in between, and after its start raft-rs
/// asked for the terms of committed entries the record no longer had.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_lost_at_a_roll_is_found_again_from_the_segment_before() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of about ten entries; a term every seven, an own entry every five, and a
    // membership change in the segment that the lost record leaves untold.
    let (store, p) = open(dir.path(), 1024).await;
    let record_file = p.dir.join("raft-log");
    let mut rolls = 0;
    let mut index = 1u64;
    let mut changed = false;
    let lost_at = loop {
        let term = 1 + index / 7;
        let saved = std::fs::read(&record_file).ok();
        let base = p.state().active().base_offset;
        let e = match index {
            _ if rolls == 4 && !changed && index % 5 == 2 => {
                changed = true;
                conf_entry(index, term, b"add learner 4")
            }
            _ if index.is_multiple_of(5) => entry(index, term, 0),
            _ => entry(index, term, 2),
        };
        write(&store, &p, |w| {
            w.entries = vec![e];
            w.hard_state = Some(hs(term, 1, index - 1));
        })
        .await;
        index += 1;
        if p.state().active().base_offset != base {
            rolls += 1;
            if rolls == 5 {
                break saved;
            }
        }
        assert!(index < 200, "never rolled");
    };
    let before = p.state().replica.as_ref().unwrap().meta.clone();
    let all = batches(&store, &p, 0).await;
    assert!(!before.confs.entries.is_empty() && !before.gaps.at.is_empty());
    close(store, p).await;
    // The record as it was before the write into the new segment.
    match lost_at {
        Some(bytes) => std::fs::write(&record_file, bytes).unwrap(),
        None => std::fs::remove_file(&record_file).unwrap(),
    }
    // `broker verify` tells the lag (a start repairs it), and no damage.
    let report = broker::tools::verify::verify(dir.path()).unwrap();
    assert_eq!(report.damaged, 0, "{:?}", report.lines);
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("names no first entry")),
        "{:?}",
        report.lines
    );
    for start in ["after the loss", "after the record was repaired"] {
        let (store, p) = open(dir.path(), 1024).await;
        let meta = p.state().replica.as_ref().unwrap().meta.clone();
        assert_eq!(meta, before, "{start}");
        for i in 1..index {
            assert_eq!(meta.term_of(i), Some(1 + i / 7), "entry {i} {start}");
        }
        assert_eq!(batches(&store, &p, 0).await, all);
        close(store, p).await;
    }
    let report = broker::tools::verify::verify(dir.path()).unwrap();
    assert_eq!(
        (report.damaged, report.warnings),
        (0, 0),
        "{:?}",
        report.lines
    );
    // A record whose terms the batches contradict is damage, named.
    let data = std::fs::read(&record_file).unwrap();
    let (format, body) = broker::storage::small_file::check_versioned(&data).unwrap();
    let mut meta = ReplicaMeta::decode(body).unwrap();
    meta.epochs[2].index += 1;
    std::fs::write(
        &record_file,
        broker::storage::small_file::text(format, &meta.encode()),
    )
    .unwrap();
    let report = broker::tools::verify::verify(dir.path()).unwrap();
    assert_eq!(report.damaged, 1, "{:?}", report.lines);
    assert!(
        report.lines[0].contains("raft-log: says entry 14 is of term 2")
            && report.lines[0].contains("says term 3"),
        "{:?}",
        report.lines
    );
}
