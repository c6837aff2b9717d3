//! A partition's side of transactions, through the store: transactional batches and their
//! markers written by the commit pipeline, the last stable offset, `read_committed` reads and
//! the aborted transactions they name, the aborted-transaction index written at a roll, and all
//! of it found again after a restart — from the index files, or rebuilt when they are damaged.
//!
//! Data volume: a few dozen batches of up to 300 bytes per test, over segments of 1 KiB so
//! that transactions span segments and their markers land in later ones.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker::batch;
use broker::config::Config;
use broker::metrics::Metrics;
use broker::producer_state::ProducerError;
use broker::storage::log::{Isolation, Partition};
use broker::storage::{AppendError, Store};
use broker::txn_marker::Marker;
use bytes::Bytes;
use io_backend::{blocking::BlockingDisk, Env, EnvRng, SystemClock, TcpNet};

mod common;
use common::{idempotent_batch, make_batch, transactional_batch};

async fn open(dir: &Path) -> Arc<Store> {
    let env = Env {
        disk: Arc::new(BlockingDisk::new(4)),
        net: Arc::new(TcpNet),
        clock: Arc::new(SystemClock),
        rng: EnvRng::seeded(7),
    };
    let config = Config {
        data_dir: dir.to_path_buf(),
        retention_check_interval_ms: 0,
        segment_bytes: 1024,
        ..Config::default()
    };
    let store = Store::open(env, &config, Arc::new(Metrics::default()))
        .await
        .expect("open store");
    if store.topic("t").is_none() {
        store
            .create_topic("t", 1, Default::default())
            .await
            .unwrap();
    }
    store
}

async fn close(store: Arc<Store>) {
    let closed = store.closed();
    drop(store);
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the pipeline ends once its store is dropped");
}

fn partition(store: &Store) -> Arc<Partition> {
    store.topic("t").unwrap().partitions[0].clone()
}

/// Append `b`; a transactional producer's batch carries the partition's token of the
/// coordinator's confirmation, as the produce handler's do once the coordinator confirmed.
async fn append(store: &Store, b: Bytes) -> Result<i64, AppendError> {
    let headers = batch::validate_all(&b, 1 << 20).expect("valid batch");
    let h = headers[0];
    let guard = (h.is_transactional() && !h.is_control())
        .then(|| partition(store).state_mut().txn_guard(h.producer_id));
    append_with(store, b, guard).await
}

async fn append_with(store: &Store, b: Bytes, guard: Option<u64>) -> Result<i64, AppendError> {
    let headers = batch::validate_all(&b, 1 << 20).expect("valid batch");
    let rx = store
        .append_guarded(partition(store), b, headers, true, None, guard)
        .await?;
    let res = tokio::time::timeout(Duration::from_secs(20), rx.expect("waiter"))
        .await
        .expect("an append must be answered")
        .expect("pipeline alive")?;
    Ok(res.base_offset)
}

fn marker(producer_id: i64, epoch: i16, commit: bool) -> Bytes {
    Marker {
        commit,
        coordinator_epoch: 0,
    }
    .encode(producer_id, epoch, 1_700_000_000_000)
}

/// A `read_committed` read of the whole partition from `from`, batch by batch: the base
/// offsets of the batches it returns, the aborted transactions it names, and the last stable
/// offset.
async fn read_committed(store: &Store, from: i64) -> (Vec<i64>, Vec<(i64, i64)>, i64) {
    let p = partition(store);
    let mut bases = Vec::new();
    let mut aborted = Vec::new();
    let mut at = from;
    loop {
        let data = p
            .read_isolated(store.io(), at, 1 << 20, true, Isolation::ReadCommitted)
            .await
            .unwrap();
        let Some((_, last)) = batch::scan(&data.records).last() else {
            return (bases, aborted, data.last_stable_offset);
        };
        bases.extend(batch::scan(&data.records).map(|(_, h)| h.base_offset));
        for a in data.aborted {
            if !aborted.contains(&a) {
                aborted.push(a);
            }
        }
        at = last.next_offset();
    }
}

fn files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("t-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_stops_at_the_first_open_transaction_and_names_the_aborted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let p = partition(&store);
    assert_eq!(append(&store, make_batch(1, 1, b"plain")).await.unwrap(), 0);
    assert_eq!(
        append(&store, transactional_batch(1, 0, 0, 2, 10))
            .await
            .unwrap(),
        1
    );
    assert_eq!(append(&store, make_batch(1, 1, b"plain")).await.unwrap(), 3);
    assert_eq!(
        append(&store, transactional_batch(2, 0, 0, 1, 10))
            .await
            .unwrap(),
        4
    );
    assert_eq!(p.state().last_stable_offset(), 1);
    assert_eq!(p.high_watermark(), 5);
    // read_uncommitted sees everything; read_committed stops before producer 1's transaction.
    let all = p.read(store.io(), 0, 1 << 20).await.unwrap();
    assert_eq!(batch::scan(&all.records).count(), 4);
    assert_eq!(read_committed(&store, 0).await, (vec![0], vec![], 1));
    // Between the last stable offset and the high watermark there is nothing yet, and no error.
    let waiting = p
        .read_isolated(store.io(), 3, 1 << 20, true, Isolation::ReadCommitted)
        .await
        .unwrap();
    assert!(waiting.records.is_empty());

    // Producer 1 may not write outside its transaction while it is open.
    let outside = append(&store, idempotent_batch(1, 0, 2, 1)).await;
    assert!(
        matches!(
            outside,
            Err(AppendError::Producer(ProducerError::InvalidTxnState { .. }))
        ),
        "{outside:?}"
    );

    // Producer 1 aborts: producer 2's transaction holds the last stable offset at 4.
    assert_eq!(append(&store, marker(1, 0, false)).await.unwrap(), 5);
    assert_eq!(
        read_committed(&store, 0).await,
        (vec![0, 1, 3], vec![(1, 1)], 4)
    );
    // Producer 2 commits: everything is stable.
    assert_eq!(append(&store, marker(2, 0, true)).await.unwrap(), 6);
    assert_eq!(
        read_committed(&store, 0).await,
        (vec![0, 1, 3, 4, 5, 6], vec![(1, 1)], 7)
    );
    // A read from past the abort marker names nothing: the consumer would drop producer 1's
    // later records.
    assert_eq!(read_committed(&store, 6).await, (vec![6], vec![], 7));
    // The marker is a write of its own: a repeated one is taken and closes nothing.
    assert_eq!(append(&store, marker(1, 0, false)).await.unwrap(), 7);
    assert_eq!(p.state().active().aborted.len(), 1);
    // An older epoch's marker is fenced.
    assert_eq!(
        append(&store, transactional_batch(1, 1, 0, 1, 10))
            .await
            .unwrap(),
        8
    );
    let stale = append(&store, marker(1, 0, true)).await;
    assert!(
        matches!(
            stale,
            Err(AppendError::Producer(ProducerError::InvalidEpoch { .. }))
        ),
        "{stale:?}"
    );
    close(store).await;
}

/// Write transactions that span segments: producer 1 aborts every third, producer 2 commits
/// every one, with plain padding between. What a read_committed reader from `from` sees.
async fn write_spanning_transactions(store: &Store) -> i64 {
    let (mut seq1, mut seq2) = (0, 0);
    for round in 0..12 {
        append(store, transactional_batch(1, 0, seq1, 2, 120))
            .await
            .unwrap();
        seq1 += 2;
        append(store, make_batch(1, 1, &[b'x'; 300])).await.unwrap();
        append(store, transactional_batch(2, 0, seq2, 1, 120))
            .await
            .unwrap();
        seq2 += 1;
        append(store, marker(2, 0, true)).await.unwrap();
        append(store, make_batch(1, 1, &[b'y'; 300])).await.unwrap();
        append(store, marker(1, 0, round % 3 != 0)).await.unwrap();
    }
    // One left open at the end.
    append(store, transactional_batch(1, 0, seq1, 1, 10))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transactions_survive_rolls_and_restarts_and_damaged_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let open_at = write_spanning_transactions(&store).await;
    let before = read_committed(&store, 0).await;
    assert_eq!(
        before.2, open_at,
        "the open transaction holds the last stable offset"
    );
    assert_eq!(
        before.1.len(),
        4,
        "four aborted transactions: {:?}",
        before.1
    );
    // Reads from every offset name the same aborts the whole read does, from there on.
    let mut from_each = Vec::new();
    for from in 0..open_at {
        from_each.push(read_committed(&store, from).await);
    }
    close(store).await;
    let txn_files = files(dir.path(), "txnindex");
    assert!(
        !txn_files.is_empty() && txn_files.len() < files(dir.path(), "log").len(),
        "closed segments with aborts have their file, others none: {txn_files:?}"
    );

    let check = |what: &'static str| {
        let from_each = from_each.clone();
        let before = before.clone();
        let dir = dir.path().to_path_buf();
        async move {
            let store = open(&dir).await;
            assert_eq!(read_committed(&store, 0).await, before, "{what}");
            for (from, seen) in from_each.iter().enumerate() {
                assert_eq!(
                    &read_committed(&store, from as i64).await,
                    seen,
                    "{what}: from {from}"
                );
            }
            close(store).await;
        }
    };
    check("after a restart").await;

    // A damaged file is rebuilt from the segments, and put right.
    let damaged = &txn_files[0];
    let mut bytes = std::fs::read(damaged).unwrap();
    bytes[3] ^= 0x10;
    std::fs::write(damaged, &bytes).unwrap();
    check("after a damaged file").await;
    assert_ne!(
        std::fs::read(damaged).unwrap(),
        bytes,
        "the file was written again"
    );

    // A lost file beside a lost offset index (abort markers in the segment): rebuilt too.
    let base = damaged.file_stem().unwrap().to_str().unwrap().to_string();
    std::fs::remove_file(damaged).unwrap();
    std::fs::remove_file(dir.path().join("t-0").join(format!("{base}.index"))).unwrap();
    check("after a lost index and file").await;
    assert!(damaged.exists());

    // Without any producer snapshot, every segment is read: the same again.
    for s in files(dir.path(), "snapshot") {
        std::fs::remove_file(s).unwrap();
    }
    check("without a producer snapshot").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_transactional_batch_needs_the_coordinators_confirmation_and_a_marker_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let unconfirmed = append_with(&store, transactional_batch(1, 0, 0, 1, 10), None).await;
    assert!(
        matches!(
            unconfirmed,
            Err(AppendError::Producer(ProducerError::Unverified { .. }))
        ),
        "{unconfirmed:?}"
    );
    // Confirmed: every append that asked before the transaction opened gets the same token.
    let token = partition(&store).state_mut().txn_guard(1);
    assert_eq!(partition(&store).state_mut().txn_guard(1), token);
    assert_eq!(
        append_with(&store, transactional_batch(1, 0, 0, 1, 10), Some(token))
            .await
            .unwrap(),
        0
    );
    // Inside the open transaction no token is needed.
    assert_eq!(
        append_with(&store, transactional_batch(1, 0, 1, 1, 10), None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(append(&store, marker(1, 0, true)).await.unwrap(), 2);
    // A batch late from the ended transaction, with the token it was confirmed with, does not
    // open a transaction nobody would end.
    let late = append_with(&store, transactional_batch(1, 0, 2, 1, 10), Some(token)).await;
    assert!(
        matches!(
            late,
            Err(AppendError::Producer(ProducerError::Unverified { .. }))
        ),
        "{late:?}"
    );
    assert_eq!(partition(&store).state().last_stable_offset(), 3);
    // A marker for a transaction that never wrote here takes the token away too.
    let token = partition(&store).state_mut().txn_guard(1);
    assert_eq!(append(&store, marker(1, 0, false)).await.unwrap(), 3);
    let late = append_with(&store, transactional_batch(1, 0, 2, 1, 10), Some(token)).await;
    assert!(late.is_err(), "{late:?}");
    close(store).await;
}

/// A compacted topic written by transactions, one committed and one aborted after it over the
/// same keys: the cleaner removes the aborted records whatever their keys, and the committed
/// values stay each key's latest — an aborted write never hides a committed one. Data volume:
/// A store with the cleaner on quickly, and topic `t` compacted in segments of 2 KiB with
/// this `delete.retention.ms`.
async fn open_compacted(dir: &Path, delete_retention_ms: i64) -> Arc<Store> {
    let env = Env {
        disk: Arc::new(BlockingDisk::new(4)),
        net: Arc::new(TcpNet),
        clock: Arc::new(SystemClock),
        rng: EnvRng::seeded(7),
    };
    let config = Config {
        data_dir: dir.to_path_buf(),
        retention_check_interval_ms: 0,
        log_cleaner_backoff_ms: 20,
        log_cleaner_io_max_bytes_per_second: 0,
        ..Config::default()
    };
    let store = Store::open(env, &config, Arc::new(Metrics::default()))
        .await
        .unwrap();
    if store.topic("t").is_none() {
        let retention = delete_retention_ms.to_string();
        let overrides = broker::topic_config::check_all([
            ("cleanup.policy", Some("compact")),
            ("segment.bytes", Some("2048")),
            ("min.cleanable.dirty.ratio", Some("0.01")),
            ("delete.retention.ms", Some(retention.as_str())),
        ])
        .unwrap();
        store.create_topic("t", 1, overrides).await.unwrap();
    }
    store
}

/// A transactional batch of producer `pid` (epoch 0, first sequence `seq`): one record per
/// key `key-<k>` of `keys`, valued `<tag>-<k>`.
fn keyed(pid: i64, seq: i32, keys: std::ops::Range<i32>, tag: &str) -> Bytes {
    let records: Vec<_> = keys
        .clone()
        .enumerate()
        .map(|(i, k)| kafka_protocol::records::Record {
            producer_id: pid,
            producer_epoch: 0,
            sequence: seq + i as i32,
            transactional: true,
            ..common::record(
                i as i64,
                1_700_000_000_000,
                Some(format!("key-{k}").as_bytes()),
                Some(format!("{tag}-{k}").as_bytes()),
                &[],
            )
        })
        .collect();
    common::encode(&records, common::Codec::None)
}

/// A plain record of 300 bytes under key `pad-<i>`: what closes segments.
fn pad(i: u32) -> Bytes {
    common::encode(
        &[common::record(
            0,
            1_700_000_000_000,
            Some(format!("pad-{i}").as_bytes()),
            Some(&[b'p'; 300]),
            &[],
        )],
        common::Codec::None,
    )
}

/// The latest value of every key the partition serves at `level`, read from its start.
async fn latest_values(
    store: &Store,
    level: Isolation,
) -> std::collections::BTreeMap<String, String> {
    let p = partition(store);
    let mut latest = std::collections::BTreeMap::new();
    let mut at = 0;
    loop {
        let d = p
            .read_isolated(store.io(), at, 1 << 20, true, level)
            .await
            .unwrap();
        let Some((_, last)) = batch::scan(&d.records).last() else {
            return latest;
        };
        at = last.next_offset();
        let mut buf = d.records.clone();
        while !buf.is_empty() {
            let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
            for r in set.records.into_iter().filter(|r| !r.control) {
                let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                latest.insert(key, value);
            }
        }
    }
}

/// 60 keys written twice in transactions of 10, then 40 plain records of 300 bytes to close
/// the segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleaner_removes_aborted_records_and_keeps_the_committed_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_compacted(dir.path(), 86_400_000).await;
    for (pid, tag, commit) in [(1, "committed", true), (2, "aborted", false)] {
        for chunk in 0..6 {
            let keys = chunk * 10..chunk * 10 + 10;
            append(&store, keyed(pid, chunk * 10, keys, tag))
                .await
                .unwrap();
        }
        append(&store, marker(pid, 0, commit)).await.unwrap();
    }
    for i in 0..40 {
        append(&store, pad(i)).await.unwrap();
    }
    // Until the cleaner has taken the aborted records out.
    let mut cleaned = false;
    for _ in 0..500 {
        let everything = latest_values(&store, Isolation::ReadUncommitted).await;
        if everything.values().all(|v| !v.starts_with("aborted")) {
            cleaned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cleaned, "the cleaner did not remove the aborted records");
    for level in [Isolation::ReadUncommitted, Isolation::ReadCommitted] {
        let latest = latest_values(&store, level).await;
        for k in 0..60 {
            assert_eq!(
                latest.get(&format!("key-{k}")).map(String::as_str),
                Some(format!("committed-{k}").as_str()),
                "{level:?}: key-{k}"
            );
        }
    }
    close(store).await;
}

/// Queue `b` (with the confirmation's token `guard`) without waiting for it: its answer.
async fn queue(
    store: &Store,
    b: Bytes,
    guard: Option<u64>,
) -> tokio::sync::oneshot::Receiver<Result<broker::storage::Appended, AppendError>> {
    let headers = batch::validate_all(&b, 1 << 20).unwrap();
    store
        .append_guarded(partition(store), b, headers, true, None, guard)
        .await
        .unwrap()
        .unwrap()
}

/// A marker and a late batch of its producer in one commit round: the marker ends the
/// confirmation at once, so the late batch — confirmed before the marker, appended after it —
/// cannot open a transaction nobody would end. The round is made by holding the disk's syncs
/// while a first write waits, so that both queue behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_batch_behind_its_producers_marker_in_one_round_is_refused() {
    use common::gated::{Gate, GatedDisk};
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let env = Env {
        disk: Arc::new(GatedDisk {
            inner: Arc::new(BlockingDisk::new(4)),
            gate: gate.clone(),
        }),
        net: Arc::new(TcpNet),
        clock: Arc::new(SystemClock),
        rng: EnvRng::seeded(7),
    };
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        retention_check_interval_ms: 0,
        io_deadline_ms: 0,
        ..Config::default()
    };
    let store = Store::open(env, &config, Arc::new(Metrics::default()))
        .await
        .unwrap();
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let token = partition(&store).state_mut().txn_guard(1);
    let first = append_with(&store, transactional_batch(1, 0, 0, 1, 8), Some(token)).await;
    assert_eq!(first.unwrap(), 0);
    gate.close();
    let held = queue(&store, make_batch(1, 1, b"holds the round"), None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let marker_rx = queue(&store, marker(1, 0, true), None).await;
    let late_rx = queue(&store, transactional_batch(1, 0, 1, 1, 8), Some(token)).await;
    gate.open();
    let wait = |rx: tokio::sync::oneshot::Receiver<
        Result<broker::storage::Appended, AppendError>,
    >| async move {
        tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("answered")
            .expect("pipeline alive")
    };
    assert!(wait(held).await.is_ok());
    assert_eq!(wait(marker_rx).await.unwrap().base_offset, 2);
    let late = wait(late_rx).await;
    assert!(
        matches!(
            late,
            Err(AppendError::Producer(ProducerError::Unverified { .. }))
        ),
        "{late:?}"
    );
    let p = partition(&store);
    let (lso, hw) = {
        let st = p.state();
        (st.last_stable_offset(), st.high_watermark())
    };
    assert_eq!(lso, hw, "nothing left open");
    close(store).await;
}

/// The header of the batch holding `offset` as the partition serves it.
async fn batch_at(store: &Store, offset: i64) -> batch::BatchHeader {
    let d = partition(store)
        .read_isolated(
            store.io(),
            offset,
            1 << 20,
            true,
            Isolation::ReadUncommitted,
        )
        .await
        .unwrap();
    let found = batch::scan(&d.records)
        .map(|(_, h)| h)
        .find(|h| h.base_offset <= offset && offset < h.next_offset());
    found.expect("every offset stays in a batch")
}

/// Three transactions of two batches on keys 0..20: producer 1's committed, producer 2's
/// aborted, producer 3's committed (superseding producer 1's); then plain records of 300 bytes
/// (their keys all different) until the cleaner has emptied the first two markers — ~100 KB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_of_transactions_with_nothing_left_are_emptied_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_compacted(dir.path(), 300).await;
    let mut markers = Vec::new();
    for (pid, tag, commit) in [(1, "first", true), (2, "aborted", false), (3, "last", true)] {
        for chunk in 0..2 {
            let keys = chunk * 10..chunk * 10 + 10;
            append(&store, keyed(pid, chunk * 10, keys, tag))
                .await
                .unwrap();
        }
        markers.push(append(&store, marker(pid, 0, commit)).await.unwrap());
    }
    let (_, aborted, _) = read_committed(&store, 0).await;
    assert_eq!(aborted.len(), 1, "producer 2's transaction is named");
    let mut emptied = false;
    for i in 0..1_000 {
        append(&store, pad(i)).await.unwrap();
        let mut counts = Vec::new();
        for &m in &markers {
            counts.push(batch_at(&store, m).await.record_count);
        }
        if counts == [0, 0, 1] {
            emptied = true;
            break;
        }
        assert_eq!(counts[2], 1, "a marker whose records stay keeps its record");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(emptied, "the cleaner did not empty the markers");
    emptied_markers_end_their_transactions(&store, &markers, "cleaned").await;
    close(store).await;
    // The producer snapshots and the aborted-transaction indexes gone: both are rebuilt from
    // the log, where the emptied markers still end their transactions.
    for ext in ["snapshot", "txnindex"] {
        for f in files(dir.path(), ext) {
            if f.file_stem()
                .unwrap()
                .to_string_lossy()
                .parse::<u64>()
                .is_ok()
            {
                std::fs::remove_file(f).unwrap();
            }
        }
    }
    let store = open_compacted(dir.path(), 300).await;
    emptied_markers_end_their_transactions(&store, &markers, "rebuilt").await;
    close(store).await;
}

/// The first two `markers` are emptied batches (no control batch, no record); no aborted
/// transaction is named, nothing holds the last stable offset back, and every key's latest
/// value is the last transaction's.
async fn emptied_markers_end_their_transactions(store: &Store, markers: &[i64], when: &str) {
    for &m in &markers[..2] {
        let h = batch_at(store, m).await;
        assert!(!h.is_control() && h.record_count == 0, "{when}: {h:?}");
    }
    let (_, aborted, lso) = read_committed(store, 0).await;
    assert_eq!(aborted, [], "{when}");
    assert_eq!(
        lso,
        partition(store).high_watermark(),
        "{when}: nothing held open"
    );
    let latest = latest_values(store, Isolation::ReadCommitted).await;
    for k in 0..20 {
        assert_eq!(latest[&format!("key-{k}")], format!("last-{k}"), "{when}");
    }
}
