//! The log and the commit pipeline through the public `Store` API, on the real blocking disk
//! with a fault-injecting wrapper (stalled or slow syncs).
#![cfg(not(madsim))] // These run the real disk and network; the simulator has its own tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use broker::batch;
use broker::config::Config;
use broker::metrics::Metrics;
use broker::storage::log::ReadError;
use broker::storage::Store;
use broker::storage::{AppendError, Appended, StorageError};
use broker::topic_config::overrides_between;
use bytes::Bytes;
use io_backend::{blocking::BlockingDisk, Env, EnvRng, SystemClock, TcpNet};

mod common;
use common::gated::{Gate, GatedDisk};
use common::{idempotent_batch, make_batch};

fn env_with(gate: &Gate) -> Env {
    Env {
        disk: Arc::new(GatedDisk {
            inner: Arc::new(BlockingDisk::new(4)),
            gate: gate.clone(),
        }),
        net: Arc::new(TcpNet),
        clock: Arc::new(SystemClock),
        rng: EnvRng::seeded(7),
    }
}

fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        retention_check_interval_ms: 0,
        ..Config::default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn append(store: &Store, topic: &str, b: Bytes) -> Result<i64, AppendError> {
    let t = store.topic(topic).expect("topic");
    let headers = batch::validate_all(&b, 1 << 20).expect("valid batch");
    let rx = store
        .append(t.partitions[0].clone(), b, headers, true, None)
        .await?;
    let res = tokio::time::timeout(Duration::from_secs(20), rx.expect("waiter"))
        .await
        .expect("an append must be answered, never hang")
        .expect("pipeline alive")?;
    Ok(res.base_offset)
}

async fn open_store(
    dir: &Path,
    gate: &Gate,
    tweak: impl FnOnce(&mut Config),
) -> (Arc<Store>, Arc<Metrics>) {
    let mut c = config(dir);
    tweak(&mut c);
    let metrics = Arc::new(Metrics::default());
    let store = Store::open(env_with(gate), &c, metrics.clone())
        .await
        .expect("open store");
    (store, metrics)
}

/// A store with one topic `t` of one partition.
async fn store_with_t(dir: &Path, gate: &Gate, tweak: impl FnOnce(&mut Config)) -> Arc<Store> {
    let (store, _) = open_store(dir, gate, tweak).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    store
}

/// A whole broker (TCP on a free port) on the gated disk, with disk deadlines off so that what
/// the gate holds stays held.
async fn start_gated(
    dir: &Path,
    gate: &Gate,
    tweak: impl FnOnce(&mut Config),
) -> broker::server::Running {
    let mut c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: String::new(),
        io_deadline_ms: 0,
        ..config(dir)
    };
    tweak(&mut c);
    broker::server::start(env_with(gate), c).await.unwrap()
}

/// Drop a store and wait until its pipeline has ended and released the directory's lock, so
/// the directory can be opened again (a restart inside this process).
async fn close(store: Arc<Store>) {
    let closed = store.closed();
    drop(store);
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the pipeline ends once its store is dropped");
}

/// Wait until a failed directory has healed.
async fn healed(store: &Store) {
    for _ in 0..500 {
        if store.io().health.check().is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the directory did not heal");
}

/// Every offset below `end` reads back as the batch that starts at it (through the indexes).
async fn every_offset_reads_back(store: &Store, p: &broker::storage::log::Partition, end: i64) {
    for off in 0..end {
        let d = p.read(store.io(), off, 1).await.unwrap();
        assert_eq!(batch::validate(&d.records).unwrap().base_offset, off);
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_dense_and_reads_return_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let mut expected = Vec::new();
    let mut next = 0;
    for i in 0..50 {
        let b = make_batch(1 + i % 3, 1000 + i as i64, format!("v{i}").as_bytes());
        let off = append(&store, "t", b.clone()).await.unwrap();
        assert_eq!(off, next, "offsets are assigned densely");
        next += (1 + i % 3) as i64;
        expected.push((off, b));
    }
    let p = store.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.high_watermark(), next);
    for (off, b) in &expected {
        let data = p.read(store.io(), *off, 1).await.unwrap();
        let h = batch::validate(&data.records).unwrap();
        assert_eq!(h.base_offset, *off);
        assert_eq!(
            &data.records[12..],
            &b[12..],
            "stored as produced, base offset patched"
        );
    }
    assert!(matches!(
        p.read(store.io(), next + 1, 100).await,
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    assert!(p
        .read(store.io(), next, 100)
        .await
        .unwrap()
        .records
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_write_commits_at_once_and_a_crowd_shares_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, metrics) = open_store(dir.path(), &gate, |_| {}).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    append(&store, "t", make_batch(1, 1, b"x")).await.unwrap();
    assert_eq!(metrics.commit_rounds.get(), 1, "one write, one round");
    // Slow syncs: while one is in flight, the others gather into the next round.
    *gate.delay.lock().unwrap() = Duration::from_millis(50);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            append(&s, "t", make_batch(1, i, b"y")).await
        }));
    }
    let mut offsets = Vec::new();
    for t in tasks {
        offsets.push(t.await.unwrap().unwrap());
    }
    offsets.sort();
    assert_eq!(offsets, (1..=200).collect::<Vec<i64>>());
    let rounds = metrics.commit_rounds.get() - 1;
    assert!(
        rounds < 50,
        "200 appends took {rounds} commit rounds: no group commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sync_fails_the_directory_within_the_deadline_then_heals() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, metrics) = open_store(dir.path(), &gate, |c| c.io_deadline_ms = 1000).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    assert_eq!(
        append(&store, "t", make_batch(2, 1, b"ok")).await.unwrap(),
        0
    );
    gate.close();
    let err = append(&store, "t", make_batch(1, 2, b"stalls"))
        .await
        .unwrap_err();
    // Its bytes were written before the sync stalled: the failure is indefinite.
    assert!(
        matches!(&err, AppendError::Storage(StorageError::Unconfirmed(cause)) if matches!(**cause, StorageError::Stalled { .. })),
        "got {err}"
    );
    assert!(err.indefinite());
    assert!(
        err.to_string().contains("sync_data") && err.to_string().contains(".log"),
        "names op and file: {err}"
    );
    assert_eq!(metrics.failed_log_dirs.get(), 1);
    // Later produce requests fail at once with a retriable error instead of queueing.
    let err = append(&store, "t", make_batch(1, 3, b"refused"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Storage(StorageError::DirFailed(_))),
        "got {err}"
    );
    assert!(!err.indefinite(), "refused before anything was written");
    let failure = store.io().health.failure().expect("failure recorded");
    assert!(failure.path.unwrap().to_string_lossy().ends_with(".log"));
    // The stall ends: the directory heals and accepts writes again, continuing after what was
    // acknowledged.
    gate.open();
    let mut healed = false;
    for _ in 0..100 {
        if store.io().health.failure().is_none() {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healed, "the directory did not heal after the stall ended");
    assert_eq!(metrics.failed_log_dirs.get(), 0);
    assert_eq!(
        append(&store, "t", make_batch(1, 4, b"after"))
            .await
            .unwrap(),
        2
    );
    let p = store.topic("t").unwrap().partitions[0].clone();
    let data = p.read(store.io(), 2, 1 << 20).await.unwrap();
    assert!(data.records.windows(5).any(|w| w == b"after"));
    assert!(
        !data.records.windows(6).any(|w| w == b"stalls"),
        "the failed write is gone"
    );
}

/// Swarm seeds 741 and 806: a topic creation on a slow disk (dozens of operations) ran on the
/// commit pipeline and held every produce queued behind it for seconds. Admin work now runs
/// beside the pipeline: a creation stuck in a directory sync leaves appends flowing, and a
/// deletion queued behind it waits its turn, then refuses what is queued behind it.
/// One append to each of `partitions` new partitions, all queued while the device is held,
/// then served by a device whose syncs take `sync` each, one after another (1 s I/O deadline).
/// Every append must succeed and the directory must stay healthy; answers the store and the
/// commit rounds the appends took (with the directory, which must outlive the store).
async fn appends_on_a_device(
    topic: &str,
    partitions: i32,
    sync: Duration,
) -> (tempfile::TempDir, Arc<Store>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, metrics) = open_store(dir.path(), &gate, |c| c.io_deadline_ms = 1000).await;
    store
        .create_topic(topic, partitions, Default::default())
        .await
        .unwrap();
    let t = store.topic(topic).unwrap();
    // The first round's sync holds the device while the other appends queue.
    gate.close();
    let mut waiting = Vec::new();
    for (i, p) in t.partitions.iter().enumerate() {
        let b = make_batch(1, i as i64, topic.as_bytes());
        let headers = batch::validate_all(&b, 1 << 20).unwrap();
        let rx = store.append(p.clone(), b, headers, true, None).await;
        waiting.push(rx.unwrap().expect("a waiter"));
    }
    *gate.device_sync.lock().unwrap() = sync;
    let rounds_before = metrics.commit_rounds.get();
    gate.open();
    for rx in waiting {
        let appended = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("answered")
            .expect("pipeline alive");
        assert_eq!(appended.expect("appended").base_offset, 0);
    }
    assert_eq!(
        metrics.log_dir_failures.get(),
        0,
        "a working device was declared failed"
    );
    assert!(store.io().health.failure().is_none());
    (dir, store, metrics.commit_rounds.get() - rounds_before)
}

/// A busy disk is not a failed one. Appends to 400 partitions queued at once, on a disk whose
/// syncs take 5 ms each one after another, are 2 s of syncs: as one round they outlasted a 1 s
/// deadline and the directory was declared failed (three brokers creating a 300-partition
/// topic on one host did so). A round takes at most `ROUND_PARTITIONS_MAX` partitions, each
/// round well within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_to_many_partitions_at_once_on_a_busy_disk_keep_the_directory_healthy() {
    let (_dir, _, rounds) = appends_on_a_device("wide", 400, Duration::from_millis(5)).await;
    assert!(
        rounds as usize >= 400 / broker::storage::ROUND_PARTITIONS_MAX,
        "{rounds} rounds for 400 partitions"
    );
}

/// A device that serves one sync at a time at 60 ms: 40 partitions' syncs in one round (2.4 s)
/// would outlast the 1 s deadline, though the disk works. The directory's queue of device
/// operations lets only its width in at once (grown to about a dozen by the creation's fast
/// syncs); the syncs that waited behind others took more than a sixteenth of the deadline, so
/// it narrows, rounds write fewer partitions, and none misses the deadline (`storage::gate`).
/// (A width grown on a fast device and a device suddenly 50 times slower can still overshoot
/// once: the width learns from operations that ended.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_slower_than_a_round_allows_gets_narrower_rounds_not_a_failed_directory() {
    let (_dir, store, rounds) = appends_on_a_device("narrow", 40, Duration::from_millis(60)).await;
    assert!(store.io().gate.width() < broker::storage::gate::START_WIDTH);
    assert!(rounds >= 10, "{rounds} rounds for 40 partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_topic_creation_never_holds_appends() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |c| c.io_deadline_ms = 60_000).await;
    for t in ["t", "doomed"] {
        store.create_topic(t, 1, Default::default()).await.unwrap();
    }
    gate.hold_sync_dir.send_replace(Some(".meta".into()));
    let creating = tokio::spawn({
        let store = store.clone();
        async move { store.create_topic("slow", 3, Default::default()).await }
    });
    while gate.held.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The creation waits on its metadata file's directory sync; appends commit meanwhile.
    for i in 0..3 {
        let off = append(&store, "t", make_batch(1, 1, b"flows"))
            .await
            .unwrap();
        assert_eq!(off, i);
    }
    assert!(!creating.is_finished(), "the creation should still be held");
    // A deletion waits behind the creation (one admin command at a time, in order).
    let deleting = tokio::spawn({
        let store = store.clone();
        async move { store.delete_topic("doomed").await }
    });
    append(&store, "doomed", make_batch(1, 1, b"before"))
        .await
        .unwrap();
    assert!(
        !deleting.is_finished(),
        "the deletion should wait for the creation"
    );
    gate.hold_sync_dir.send_replace(None);
    let slow = creating.await.unwrap().unwrap();
    assert_eq!(slow.partitions.len(), 3);
    deleting.await.unwrap().unwrap();
    assert!(store.topic("doomed").is_none());
    assert!(!dir.path().join("doomed-0").exists());
    for p in 0..3 {
        assert!(dir.path().join(format!("slow-{p}")).exists());
    }
    append(&store, "slow", make_batch(1, 1, b"new"))
        .await
        .unwrap();
    // All of it durable: a restart finds the new topic and not the deleted one.
    close(store).await;
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    assert!(store.topic("doomed").is_none());
    assert_eq!(store.topic("slow").unwrap().partitions.len(), 3);
    every_offset_reads_back(&store, &store.topic("t").unwrap().partitions[0], 3).await;
}

/// A deleted topic's partitions are retired in the pipeline's queue order: an append queued
/// before the deletion commits, one queued behind it is refused (nothing written), and no
/// write of theirs is in flight when their files are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_queued_behind_a_deletion_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |c| c.io_deadline_ms = 60_000).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let p = store.topic("t").unwrap().partitions[0].clone();
    let b = make_batch(1, 1, b"x");
    let h = batch::validate_all(&b, 1 << 20).unwrap();
    // Syncs stall: the first append's round holds the pipeline, the next gathers in the queue.
    gate.close();
    let first = store
        .append(p.clone(), b.clone(), h.clone(), true, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = store
        .append(p.clone(), b.clone(), h.clone(), true, None)
        .await
        .unwrap();
    let deleting = tokio::spawn({
        let store = store.clone();
        async move { store.delete_topic("t").await }
    });
    // The deletion takes the topic out of the catalog at once, then queues the retirement.
    while store.topic("t").is_some() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let behind = store.append(p.clone(), b, h, true, None).await.unwrap();
    gate.open();
    for rx in [first, before] {
        rx.unwrap()
            .await
            .unwrap()
            .expect("queued before the deletion: committed");
    }
    match behind.unwrap().await.unwrap() {
        Err(AppendError::PartitionGone { .. }) => {}
        other => panic!("an append queued behind the deletion must be refused: {other:?}"),
    }
    deleting.await.unwrap().unwrap();
    assert!(!dir.path().join("t-0").exists());
}

/// Swarm seed 807: a round is several disk operations one after another (a roll's syncs, then
/// the round's write and sync), each within the I/O deadline, and on a slow disk their sum went
/// far past it with no produce answered. The round's waiters are answered by the deadline: the
/// directory fails (a retriable error), the round publishes nothing, and the directory heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_round_is_answered_within_the_io_deadline_whatever_its_operations_take() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |c| {
        c.io_deadline_ms = 1_500;
        c.segment_bytes = 4096;
    })
    .await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let value = vec![b'v'; 1500];
    for i in 0..2 {
        assert_eq!(
            append(&store, "t", make_batch(1, 1, &value)).await.unwrap(),
            i
        );
    }
    // Every sync now takes 1 s (each within the 1.5 s deadline); the next append rolls the
    // segment (its index and snapshot synced) and then syncs its own write: 2 s in all.
    *gate.delay.lock().unwrap() = Duration::from_millis(1_000);
    let err = append(&store, "t", make_batch(1, 1, &value))
        .await
        .unwrap_err();
    assert!(err.indefinite(), "bytes may be written: {err}");
    assert!(
        err.to_string()
            .contains("did not finish within the I/O deadline"),
        "{err}"
    );
    *gate.delay.lock().unwrap() = Duration::ZERO;
    healed(&store).await;
    // Nothing of the late round was published: the next append takes its offset.
    assert_eq!(
        append(&store, "t", make_batch(1, 1, &value)).await.unwrap(),
        2
    );
    let p = store.topic("t").unwrap().partitions[0].clone();
    every_offset_reads_back(&store, &p, 3).await;
    close(store).await;
    let (store, _) = open_store(dir.path(), &gate, |c| c.segment_bytes = 4096).await;
    let p = store.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.high_watermark(), 3);
    every_offset_reads_back(&store, &p, 3).await;
}

/// A produce's timeout covers its wait for a place in the append queue (swarm seeds 741 and
/// 1923: a queue of 2 or 3 slots on a slow disk kept requests waiting for a place past 10 s):
/// with the queue full and the pipeline stuck, it is answered REQUEST_TIMED_OUT in time, and
/// nothing of it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_waiting_for_a_place_in_the_queue_is_answered_within_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let broker = start_gated(dir.path(), &gate, |c| c.append_queue_capacity = 1).await;
    let addr = broker.kafka_addr;
    let mut c = common::Client::connect(addr).await;
    assert_eq!(c.produce("t", 0, make_batch(1, 1, b"first")).await, (0, 0));
    gate.close();
    // One append stuck in its round's sync, one in the queue's only slot.
    let mut held = Vec::new();
    for v in [&b"stuck"[..], b"queued"] {
        let mut c = common::Client::connect(addr).await;
        held.push(tokio::spawn(async move {
            c.produce_within("t", 0, make_batch(1, 1, v), 60_000).await
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, _) = c
        .produce_within("t", 0, make_batch(1, 1, b"late"), 300)
        .await;
    assert_eq!(code, 7, "REQUEST_TIMED_OUT while the queue stays full");
    gate.open();
    let offsets: Vec<_> = futures::future::join_all(held)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(offsets, [(0, 1), (0, 2)]);
    // The timed-out batch was never written: the next offset follows the two held ones.
    assert_eq!(c.produce("t", 0, make_batch(1, 1, b"after")).await, (0, 3));
}

/// An admin request is answered within its `timeout_ms` however long the admin lane takes (here
/// a creation held in a directory sync, with disk deadlines off): REQUEST_TIMED_OUT, and the
/// change — already queued — still completes, as in Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_request_is_answered_within_its_timeout_while_the_lane_is_stuck() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, RequestKind, ResponseKind};
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let broker = start_gated(dir.path(), &gate, |_| {}).await;
    let mut c = common::Client::connect(broker.kafka_addr).await;
    let create = |name: &str, timeout_ms: i32| {
        let mut t = CreatableTopic::default();
        t.name = kafka_protocol::protocol::StrBytes::from_string(name.to_string()).into();
        t.num_partitions = 2;
        t.replication_factor = 1;
        let mut req = CreateTopicsRequest::default();
        req.topics.push(t);
        req.timeout_ms = timeout_ms;
        RequestKind::CreateTopics(req)
    };
    let code_of = |r: ResponseKind| match r {
        ResponseKind::CreateTopics(r) => r.topics[0].error_code,
        other => panic!("not a CreateTopics response: {other:?}"),
    };
    gate.hold_sync_dir.send_replace(Some(".meta".into()));
    let asked = std::time::Instant::now();
    let code = code_of(c.call(ApiKey::CreateTopics, 5, create("held", 500)).await);
    assert_eq!(code, 7, "REQUEST_TIMED_OUT while the creation is held");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "answered after {:?}",
        asked.elapsed()
    );
    assert!(
        gate.held.load(Ordering::SeqCst) > 0,
        "the creation is under way"
    );
    gate.hold_sync_dir.send_replace(None);
    // The creation goes on and completes; asking again finds it.
    let mut code = 7;
    for _ in 0..200 {
        code = code_of(c.call(ApiKey::CreateTopics, 5, create("held", 5_000)).await);
        if code != 7 {
            break;
        }
    }
    assert_eq!(
        code, 36,
        "TOPIC_ALREADY_EXISTS once the held creation completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_append_queue_is_bounded_and_full_means_wait() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    // No deadline here, so the stalled sync holds the pipeline and the queue fills.
    let (store, metrics) = open_store(dir.path(), &gate, |c| {
        c.io_deadline_ms = 0;
        c.append_queue_capacity = 4;
    })
    .await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let p = store.topic("t").unwrap().partitions[0].clone();
    gate.close();
    let b = make_batch(1, 1, b"q");
    let h = batch::validate_all(&b, 1 << 20).unwrap();
    // The pipeline takes appends while the first sync stalls, up to its bound on written-but-
    // unsynced data; then the queue fills, and a full queue makes the producer wait.
    let bound = 2 * broker::storage::ROUND_APPENDS_MAX + 4 + 1;
    let mut waiting = Vec::new();
    let mut blocked = false;
    for _ in 0..bound + 1 {
        match tokio::time::timeout(
            Duration::from_millis(500),
            store.append(p.clone(), b.clone(), h.clone(), true, None),
        )
        .await
        {
            Ok(rx) => waiting.push(rx.unwrap()),
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(
        blocked,
        "{} appends were accepted with a stalled disk: no bound",
        waiting.len()
    );
    assert!(waiting.len() >= 4, "blocked before the queue was full");
    assert_eq!(metrics.append_queue_depth.get(), 4);
    gate.open();
    for rx in waiting {
        tokio::time::timeout(Duration::from_secs(10), rx.unwrap())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_cuts_a_torn_or_corrupt_tail_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let good_len = {
        let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
        store
            .create_topic("t", 1, Default::default())
            .await
            .unwrap();
        // 10 batches of 8 KiB: past the 64 KiB from which zeros are written ahead.
        for i in 0..10 {
            append(&store, "t", make_batch(2, now_ms() + i, &[b'k'; 4096]))
                .await
                .unwrap();
        }
        let p = store.topic("t").unwrap().partitions[0].clone();
        let size = p.state().active().size;
        close(store).await;
        size
    };
    let seg = segment_files(&dir.path().join("t-0")).pop().unwrap();
    assert!(
        std::fs::metadata(&seg).unwrap().len() > good_len,
        "zeros are written ahead of the data"
    );
    // A torn write: half of a batch right after the good data (over the zeros written ahead).
    let torn = make_batch(3, 99, b"torn");
    let mut data = std::fs::read(&seg).unwrap();
    let at = good_len as usize;
    data[at..at + torn.len() / 2].copy_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&seg, &data).unwrap();
    let next = make_batch(1, now_ms(), b"next");
    {
        let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
        let p = store.topic("t").unwrap().partitions[0].clone();
        assert_eq!(p.high_watermark(), 20);
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            good_len,
            "torn tail (and the zeros after it) truncated"
        );
        assert_eq!(append(&store, "t", next.clone()).await.unwrap(), 20);
        close(store).await;
    }
    assert_eq!(
        segment_files(&dir.path().join("t-0")),
        vec![seg.clone()],
        "no roll expected"
    );
    // A flipped bit inside the last batch: that batch goes, the ones before stay.
    let mut data = std::fs::read(&seg).unwrap();
    data[good_len as usize + next.len() - 3] ^= 0x10;
    std::fs::write(&seg, &data).unwrap();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    let p = store.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.high_watermark(), 20);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
    // Without preallocation the file ends where the data ends.
    close(store).await;
    let (store, _) = open_store(dir.path(), &gate, |c| c.preallocate_bytes = 0).await;
    let mut cfg = store.defaults();
    cfg.preallocate_bytes = 0;
    store
        .create_topic("plain", 1, overrides_between(&store.defaults(), &cfg))
        .await
        .unwrap();
    append(&store, "plain", next.clone()).await.unwrap();
    let plain = segment_files(&dir.path().join("plain-0")).pop().unwrap();
    assert_eq!(std::fs::metadata(&plain).unwrap().len(), next.len() as u64);
}

/// Zeros are written ahead only by rounds that append little: a round of a large batch (as an
/// idempotent librdkafka producer sends, one per round) writes its data alone; a small append
/// after it writes zeros ahead again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_small_rounds_write_zeros_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let big = make_batch(1, now_ms(), &vec![b'x'; 300 << 10]);
    assert_eq!(append(&store, "t", big.clone()).await.unwrap(), 0);
    let seg = segment_files(&dir.path().join("t-0")).pop().unwrap();
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        big.len() as u64,
        "a round of 300 KiB writes no zeros ahead"
    );
    let small = make_batch(1, now_ms(), b"small");
    assert_eq!(append(&store, "t", small.clone()).await.unwrap(), 1);
    let len = std::fs::metadata(&seg).unwrap().len();
    assert_eq!(
        len,
        2 * (big.len() + small.len()) as u64,
        "a small round writes zeros ahead, as much as the segment holds (under 4 MiB)"
    );
    let p = store.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.high_watermark(), 2);
    close(store).await;
    // What was written reads back after a restart (the zeros are not data).
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    let p = store.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.high_watermark(), 2);
    let read = p.read(store.io(), 1, 1 << 20).await.unwrap();
    assert_eq!(&read.records[12..], &small[12..]);
}

/// The zeros go ahead a step of at most 1 MiB in one round, however much the segment holds: a
/// round that wrote `preallocate_bytes` (4 MiB) of zeros for each partition took longer than the
/// I/O deadline on a slow disk, again after each heal. Data: 3 MiB in 24 appends of 128 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeros_ahead_go_a_mebibyte_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let store = store_with_t(dir.path(), &gate, |_| {}).await;
    let batch = make_batch(1, now_ms(), &vec![b'z'; 128 << 10]);
    let seg_dir = dir.path().join("t-0");
    let (mut data, mut most_ahead, mut filled) = (0u64, 0u64, 0);
    for i in 0..24 {
        assert_eq!(append(&store, "t", batch.clone()).await.unwrap(), i);
        data += batch.len() as u64;
        let seg = segment_files(&seg_dir).pop().unwrap();
        let ahead = std::fs::metadata(&seg).unwrap().len() - data;
        if ahead > most_ahead {
            filled += 1;
        }
        most_ahead = most_ahead.max(ahead);
        assert!(
            ahead <= 1 << 20,
            "{ahead} bytes of zeros ahead after {data} of data"
        );
    }
    assert!(
        most_ahead > 512 << 10,
        "zeros were written ahead ({most_ahead})"
    );
    assert!(
        filled >= 2,
        "the zeros went ahead more than once ({filled})"
    );
    close(store).await;
}

/// On a device measured slow, a read larger than a piece handed to the device (256 KiB) goes in
/// pieces and comes back whole and in order, and one past the end of the file comes back with
/// what there is. Data: a segment of ~700 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_read_comes_back_whole_from_its_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let store = store_with_t(dir.path(), &gate, |c| c.preallocate_bytes = 0).await;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let values: Vec<u8> = (0..600 << 10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    append(&store, "t", make_batch(1, now_ms(), &values))
        .await
        .unwrap();
    append(&store, "t", make_batch(1, now_ms(), &values[..100 << 10]))
        .await
        .unwrap();
    let seg = segment_files(&dir.path().join("t-0")).pop().unwrap();
    let want = std::fs::read(&seg).unwrap();
    assert!(want.len() > 2 * broker::storage::io::READ_PIECE_MAX);
    let io = store.io();
    let file = io.open(&seg, io_backend::OpenMode::ReadOnly).await.unwrap();
    // The last large read moved 1 MB/s: a read of 700 KiB would hold its place 0.7 s, past a
    // sixteenth of the deadline (5 s).
    let slow = || io.gate.read_took(1 << 20, Duration::from_secs(1));
    slow();
    assert!(io.gate.read_too_slow(want.len()));
    let whole = io.read_at(&file, want.len(), 0).await.unwrap();
    assert!(whole[..] == want[..], "the pieces make the file");
    assert!(
        !io.gate.read_too_slow(want.len()),
        "the pieces measured the disk fast"
    );
    slow();
    let past_end = io.read_at(&file, want.len() + 300_000, 1000).await.unwrap();
    assert!(
        past_end[..] == want[1000..],
        "a read past the end gets what there is"
    );
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_returns_the_batches_before_a_damaged_one_and_fails_only_at_it() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let mut starts = Vec::new();
    for i in 0..6 {
        let p = store.topic("t").unwrap().partitions[0].clone();
        starts.push(p.state().active().size);
        append(&store, "t", make_batch(2, now_ms() + i, b"value"))
            .await
            .unwrap();
    }
    let p = store.topic("t").unwrap().partitions[0].clone();
    // Damage the fourth batch (offsets 6 and 7) on the disk: a flipped bit in its records.
    let seg = segment_files(&dir.path().join("t-0")).pop().unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let at = starts[4] - 3;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    file.sync_all().unwrap();
    // From the start: the three good batches before the damage, not an error for all six.
    let data = p.read(store.io(), 0, 1 << 20).await.unwrap();
    let headers = batch::validate_all(&data.records, 1 << 20).unwrap();
    assert_eq!(
        headers.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![0, 2, 4]
    );
    assert_eq!(data.high_watermark, 12);
    // At the damaged batch: an error naming the corrupt data.
    for offset in [6, 7] {
        match p.read(store.io(), offset, 1 << 20).await {
            Err(ReadError::Storage(StorageError::Corrupt { .. })) => {}
            other => panic!("offset {offset}: expected corrupt data, got {other:?}"),
        }
    }
    // After it: readable again.
    let data = p.read(store.io(), 8, 1 << 20).await.unwrap();
    let headers = batch::validate_all(&data.records, 1 << 20).unwrap();
    assert_eq!(
        headers.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![8, 10]
    );
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_by_size_indexes_survive_restart_and_retention_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let tweak = |c: &mut Config| {
        c.segment_bytes = 4096;
        c.index_interval_bytes = 256;
    };
    let value = vec![b'z'; 200];
    {
        let (store, _) = open_store(dir.path(), &gate, tweak).await;
        store
            .create_topic("t", 1, Default::default())
            .await
            .unwrap();
        for i in 0..100 {
            append(&store, "t", make_batch(1, 1_000 + i, &value))
                .await
                .unwrap();
        }
        close(store).await;
    }
    let pdir = dir.path().join("t-0");
    let segments = segment_files(&pdir);
    assert!(
        segments.len() >= 5,
        "expected several segments, got {}",
        segments.len()
    );
    for s in &segments[..segments.len() - 1] {
        assert!(s.with_extension("index").exists() && s.with_extension("timeindex").exists());
    }
    let (store, _) = open_store(dir.path(), &gate, tweak).await;
    let p = store.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.high_watermark(), 100);
    // Every offset is found through the loaded indexes.
    every_offset_reads_back(&store, &p, 100).await;
    // Time lookups: first record with timestamp >= t.
    assert_eq!(
        p.offset_for_timestamp(store.io(), 1_042).await.unwrap(),
        Some((42, 1_042))
    );
    assert_eq!(
        p.offset_for_timestamp(store.io(), 0).await.unwrap(),
        Some((0, 1_000))
    );
    assert_eq!(
        p.offset_for_timestamp(store.io(), 5_000).await.unwrap(),
        None
    );
    close(store).await;
    // Size retention: keep about 8 KiB.
    let (store, _) = open_store(dir.path(), &gate, |c| {
        tweak(c);
        c.retention_bytes = 8192;
    })
    .await;
    // The topic keeps the settings it was created with; retention.bytes comes from CreateTopics.
    store.delete_topic("t").await.unwrap();
    assert!(!pdir.exists(), "deleted topic's directory is gone");
    let mut cfg = store.defaults();
    cfg.retention_bytes = 8192;
    cfg.retention_ms = -1;
    store
        .create_topic("r", 1, overrides_between(&store.defaults(), &cfg))
        .await
        .unwrap();
    for i in 0..100 {
        append(&store, "r", make_batch(1, 1_000 + i, &value))
            .await
            .unwrap();
    }
    let p = store.topic("r").unwrap().partitions[0].clone();
    let before = segment_files(&dir.path().join("r-0")).len();
    store.check_retention();
    let mut start = 0;
    for _ in 0..100 {
        start = p.log_start_offset();
        if start > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(start > 0, "retention did not move the log start");
    let mut after = segment_files(&dir.path().join("r-0"));
    for _ in 0..100 {
        if after.len() < before {
            break;
        }
        // The log start moves first; the files go right after.
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = segment_files(&dir.path().join("r-0"));
    }
    assert!(after.len() < before, "segments were not deleted");
    let sizes: Vec<(i64, u64)> = p
        .state()
        .segments
        .values()
        .map(|s| (s.base_offset, s.size))
        .collect();
    assert!(
        p.state().size_bytes() >= 8192 - 4096,
        "retention deleted too much: {sizes:?} (before: {before} files)"
    );
    assert!(matches!(
        p.read(store.io(), 0, 100).await,
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        batch::validate(&p.read(store.io(), start, 1).await.unwrap().records)
            .unwrap()
            .base_offset,
        start
    );
    // Time retention: everything older than 1 ms (the timestamps are from 1970).
    close(store).await;
    let (store, _) = open_store(dir.path(), &gate, tweak).await;
    store.delete_topic("r").await.unwrap();
    let mut cfg = store.defaults();
    cfg.retention_ms = 1;
    store
        .create_topic("old", 1, overrides_between(&store.defaults(), &cfg))
        .await
        .unwrap();
    for i in 0..60 {
        append(&store, "old", make_batch(1, 1_000 + i, &value))
            .await
            .unwrap();
    }
    store.check_retention();
    let p = store.topic("old").unwrap().partitions[0].clone();
    for _ in 0..100 {
        if p.state().segments.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        p.state().segments.len(),
        1,
        "only the active segment is kept"
    );
    assert_eq!(p.high_watermark(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    let mut cfg = store.defaults();
    cfg.segment_ms = 50;
    store
        .create_topic("aged", 1, overrides_between(&store.defaults(), &cfg))
        .await
        .unwrap();
    append(&store, "aged", make_batch(1, now_ms(), b"first"))
        .await
        .unwrap();
    append(&store, "aged", make_batch(1, now_ms(), b"same segment"))
        .await
        .unwrap();
    assert_eq!(segment_files(&dir.path().join("aged-0")).len(), 1);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        append(&store, "aged", make_batch(1, now_ms(), b"rolled"))
            .await
            .unwrap(),
        2
    );
    let files = segment_files(&dir.path().join("aged-0"));
    assert_eq!(files.len(), 2, "the old segment rolled: {files:?}");
    assert!(files[1].ends_with("00000000000000000002.log"));
    // The closed segment was cut to its data (no zeros written ahead remain).
    let p = store.topic("aged").unwrap().partitions[0].clone();
    let closed = p.state().segments.values().next().unwrap().size;
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_the_same_directory_is_refused_and_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (first, _) = open_store(dir.path(), &gate, |c| c.node_id = 7).await;
    first
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let refused = Store::open(env_with(&gate), &config(dir.path()), Arc::default()).await;
    let err = match refused {
        Ok(_) => panic!("a second store opened a directory that is in use"),
        Err(e) => e,
    };
    assert!(matches!(err, StorageError::InUse { .. }), "{err}");
    assert!(!err.transient(), "a held lock is not waited out");
    assert!(err.to_string().contains("broker node 7"), "{err}");
    // The first one is untouched and keeps working.
    assert_eq!(
        append(&first, "t", make_batch(1, 1, b"x")).await.unwrap(),
        0
    );
    close(first).await;
    let (second, _) = open_store(dir.path(), &gate, |_| {}).await;
    assert_eq!(
        append(&second, "t", make_batch(1, 1, b"y")).await.unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_queued_behind_a_topic_deletion_are_refused_and_the_directory_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |c| c.segment_bytes = 1024).await;
    store
        .create_topic("rolls", 1, Default::default())
        .await
        .unwrap();
    store
        .create_topic("stays", 1, Default::default())
        .await
        .unwrap();
    // "rolls" is past its segment size: its next append would open a new segment file.
    append(&store, "rolls", make_batch(1, 1, &[b'x'; 1100]))
        .await
        .unwrap();
    append(&store, "stays", make_batch(1, 1, b"small"))
        .await
        .unwrap();
    let old: Vec<_> = ["rolls", "stays"]
        .iter()
        .map(|t| store.topic(t).unwrap().partitions[0].clone())
        .collect();
    store.delete_topic("rolls").await.unwrap();
    store.delete_topic("stays").await.unwrap();
    for p in old {
        let b = make_batch(1, 1, b"late");
        let headers = batch::validate_all(&b, 1 << 20).unwrap();
        let rx = store
            .append(p.clone(), b, headers, true, None)
            .await
            .unwrap();
        let outcome = rx.unwrap().await.unwrap();
        assert!(
            matches!(outcome, Err(AppendError::PartitionGone { .. })),
            "{}: an append to a deleted partition: {outcome:?}",
            p.topic
        );
        assert!(
            !p.dir.exists(),
            "{}: the deleted directory came back",
            p.topic
        );
    }
    store
        .io()
        .health
        .check()
        .expect("the directory is not failed");
    store
        .create_topic("after", 1, Default::default())
        .await
        .unwrap();
    assert_eq!(
        append(&store, "after", make_batch(1, 1, b"ok"))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_past_its_deadline_fails_the_reader_not_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, metrics) = open_store(dir.path(), &gate, |c| c.io_deadline_ms = 300).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    append(&store, "t", make_batch(1, 1, b"x")).await.unwrap();
    let p = store.topic("t").unwrap().partitions[0].clone();
    gate.reads_open.send_replace(false);
    let read = p.read(store.io(), 0, 1 << 20).await;
    assert!(
        matches!(read, Err(ReadError::Storage(StorageError::Stalled { .. }))),
        "{read:?}"
    );
    assert_eq!(metrics.io_deadline_expired.get(), 1);
    store
        .io()
        .health
        .check()
        .expect("a slow read does not fail the directory");
    assert_eq!(
        append(&store, "t", make_batch(1, 1, b"y")).await.unwrap(),
        1
    );
    gate.reads_open.send_replace(true);
    assert_eq!(
        p.read(store.io(), 0, 1 << 20).await.unwrap().high_watermark,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_id_that_cannot_be_parsed_is_reported_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    close(store).await;
    let meta = dir.path().join(".meta").join("t.topic");
    let text = std::fs::read(&meta).unwrap();
    let (format, body) = broker::storage::small_file::check_versioned(&text).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(body).unwrap();
    json["id"] = "not-hex".into();
    let body = json.to_string();
    std::fs::write(&meta, broker::storage::small_file::text(format, &body)).unwrap();
    let err = match Store::open(env_with(&gate), &config(dir.path()), Arc::default()).await {
        Ok(_) => panic!("a topic with an unreadable id was loaded"),
        Err(e) => e,
    };
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("t.topic") && err.to_string().contains("not-hex"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_creation_that_fails_part_way_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    // The third partition's segment cannot be created.
    *gate.fail_open.lock().unwrap() = Some("half-2".into());
    assert!(store
        .create_topic("half", 3, Default::default())
        .await
        .is_err());
    *gate.fail_open.lock().unwrap() = None;
    for p in 0..3 {
        assert!(
            !dir.path().join(format!("half-{p}")).exists(),
            "half-{p} left behind"
        );
    }
    // A disk error fails the directory for a moment; it heals at once.
    healed(&store).await;
    // The metadata file is renamed into place but its directory sync fails: not created.
    *gate.fail_sync_dir.lock().unwrap() = Some((".meta".into(), 1));
    let Err(err) = store.create_topic("unsynced", 2, Default::default()).await else {
        panic!("created although its metadata directory was not synced");
    };
    assert!(err.to_string().contains("injected"), "{err}");
    healed(&store).await;
    assert!(store.topic("unsynced").is_none());
    assert!(!dir.path().join(".meta").join("unsynced.topic").exists());
    assert!(!dir.path().join("unsynced-0").exists());
    close(store).await;
    // What a crash in the middle leaves (directories without a metadata file) goes at start.
    std::fs::create_dir_all(dir.path().join("crashed-0")).unwrap();
    std::fs::write(
        dir.path()
            .join("crashed-0")
            .join("00000000000000000000.log"),
        b"x",
    )
    .unwrap();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    assert!(
        store.topics().is_empty(),
        "a failed creation came back as a topic"
    );
    assert!(
        !dir.path().join("crashed-0").exists(),
        "a stray partition directory stayed"
    );
    // The names are free again.
    store
        .create_topic("half", 3, Default::default())
        .await
        .unwrap();
    assert_eq!(
        append(&store, "half", make_batch(1, 1, b"x"))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producers_retries_are_answered_with_the_original_offset() {
    use broker::producer_state::ProducerError;
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let p = store.topic("t").unwrap().partitions[0].clone();
    assert_eq!(
        append(&store, "t", idempotent_batch(9, 0, 0, 3))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        append(&store, "t", make_batch(1, 1, b"plain"))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        append(&store, "t", idempotent_batch(9, 0, 3, 2))
            .await
            .unwrap(),
        4
    );
    // Retries of both batches: their offsets, nothing written.
    assert_eq!(
        append(&store, "t", idempotent_batch(9, 0, 0, 3))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        append(&store, "t", idempotent_batch(9, 0, 3, 2))
            .await
            .unwrap(),
        4
    );
    assert_eq!(p.high_watermark(), 6);
    // A gap, and an older epoch after a newer one.
    let gap = append(&store, "t", idempotent_batch(9, 0, 7, 1)).await;
    assert!(
        matches!(
            gap,
            Err(AppendError::Producer(ProducerError::OutOfOrderSequence {
                last: 4,
                got: 7,
                ..
            }))
        ),
        "{gap:?}"
    );
    assert_eq!(
        append(&store, "t", idempotent_batch(9, 1, 0, 1))
            .await
            .unwrap(),
        6
    );
    let fenced = append(&store, "t", idempotent_batch(9, 0, 5, 1)).await;
    assert!(
        matches!(
            fenced,
            Err(AppendError::Producer(ProducerError::InvalidEpoch { .. }))
        ),
        "{fenced:?}"
    );
    assert_eq!(p.high_watermark(), 7);
}

/// What an idempotent client pipelines (the Java client keeps five requests in flight per
/// partition): consecutive batches of one producer queued while a round syncs are committed
/// together in the next round — in order, offsets dense, a retry among them answered with the
/// original offset — not one round each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producers_pipelined_batches_share_a_round() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, metrics) = open_store(dir.path(), &gate, |_| {}).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    assert_eq!(
        append(&store, "t", idempotent_batch(9, 0, 0, 3))
            .await
            .unwrap(),
        0
    );
    // Slow syncs: the next append's round is still syncing when the five are queued.
    *gate.delay.lock().unwrap() = Duration::from_millis(200);
    let p = store.topic("t").unwrap().partitions[0].clone();
    // Queues the append and gives back the receiver of its answer (awaited later).
    #[allow(clippy::async_yields_async)]
    let queue = |b: Bytes| {
        let store = store.clone();
        let p = p.clone();
        async move {
            let headers = batch::validate_all(&b, 1 << 20).unwrap();
            store
                .append(p, b, headers, true, None)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let first = queue(idempotent_batch(9, 0, 3, 2)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut waiting = Vec::new();
    for (sequence, count) in [(5, 4), (9, 1), (10, 3), (13, 2), (15, 1)] {
        waiting.push(queue(idempotent_batch(9, 0, sequence, count)).await);
    }
    // A retry of the first of them, in the same round.
    waiting.push(queue(idempotent_batch(9, 0, 5, 4)).await);
    let answer = |rx: tokio::sync::oneshot::Receiver<Result<Appended, AppendError>>| async move {
        tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .base_offset
    };
    assert_eq!(answer(first).await, 3);
    let mut offsets = Vec::new();
    for rx in waiting {
        offsets.push(answer(rx).await);
    }
    assert_eq!(offsets, vec![5, 9, 10, 13, 15, 5]);
    assert_eq!(p.high_watermark(), 16);
    let rounds = metrics.commit_rounds.get();
    assert!(
        rounds <= 3,
        "{rounds} commit rounds in all (the first write, the one syncing, then the five): \
         the pipelined batches were not committed together"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_is_rebuilt_after_a_restart_from_snapshots_or_segments() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let tweak = |c: &mut Config| c.segment_bytes = 1024;
    let (store, _) = open_store(dir.path(), &gate, tweak).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    // Two producers; enough batches to roll several segments (each roll takes a snapshot).
    let mut offsets = Vec::new();
    for i in 0..40 {
        offsets.push(
            append(&store, "t", idempotent_batch(1, 0, i * 2, 2))
                .await
                .unwrap(),
        );
        append(&store, "t", make_batch(1, 1, &[b'x'; 100]))
            .await
            .unwrap();
    }
    append(&store, "t", idempotent_batch(2, 3, 0, 1))
        .await
        .unwrap();
    close(store).await;
    let pdir = dir.path().join("t-0");
    let snapshots = |d: &Path| {
        std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "snapshot")
            })
            .count()
    };
    assert_eq!(snapshots(&pdir), 1, "one snapshot: the active segment's");
    for round in ["from the snapshot", "from the segments"] {
        let (store, _) = open_store(dir.path(), &gate, tweak).await;
        let hw = store.topic("t").unwrap().partitions[0].high_watermark();
        // The last batches of producer 1 are still known: retries are duplicates.
        for i in 35..40 {
            let again = append(&store, "t", idempotent_batch(1, 0, i * 2, 2)).await;
            assert_eq!(again.unwrap(), offsets[i as usize], "{round}: batch {i}");
        }
        let gap = append(&store, "t", idempotent_batch(1, 0, 99, 1)).await;
        assert!(gap.is_err(), "{round}: a gap after a restart");
        let fenced = append(&store, "t", idempotent_batch(2, 2, 1, 1)).await;
        assert!(fenced.is_err(), "{round}: fenced: {fenced:?}");
        assert_eq!(store.topic("t").unwrap().partitions[0].high_watermark(), hw);
        close(store).await;
        // Next round: without the snapshot, the segments are read instead.
        for e in std::fs::read_dir(&pdir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "snapshot") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_batch_whose_sync_failed_is_written_again_not_taken_for_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |c| c.io_deadline_ms = 500).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    assert_eq!(
        append(&store, "t", idempotent_batch(4, 0, 0, 1))
            .await
            .unwrap(),
        0
    );
    gate.close();
    let lost = append(&store, "t", idempotent_batch(4, 0, 1, 1)).await;
    assert!(lost.unwrap_err().indefinite());
    gate.open();
    healed(&store).await;
    // Healing cut the unconfirmed batch: the retry must be written, at the next offset.
    assert_eq!(
        append(&store, "t", idempotent_batch(4, 0, 1, 1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        append(&store, "t", idempotent_batch(4, 0, 1, 1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.topic("t").unwrap().partitions[0].high_watermark(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_admin_changes_leave_the_topic_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    // Growing: the third new partition cannot be made — none of them stays.
    *gate.fail_open.lock().unwrap() = Some("t-3".into());
    assert!(store.create_partitions("t", 4).await.is_err());
    *gate.fail_open.lock().unwrap() = None;
    healed(&store).await;
    assert_eq!(store.topic("t").unwrap().partitions.len(), 1);
    for p in 1..4 {
        assert!(
            !dir.path().join(format!("t-{p}")).exists(),
            "t-{p} left behind"
        );
    }
    // Altering: the metadata file cannot be written — the old configs stay in force.
    let overrides: broker::topic_config::Overrides =
        [("retention.ms".to_string(), "1000".to_string())].into();
    *gate.fail_open.lock().unwrap() = Some("t.topic.tmp".into());
    assert!(store
        .alter_topic_config("t", overrides.clone())
        .await
        .is_err());
    *gate.fail_open.lock().unwrap() = None;
    healed(&store).await;
    let t = store.topic("t").unwrap();
    assert!(t.overrides.is_empty());
    assert_eq!(
        t.partitions[0].config().retention_ms,
        store.defaults().retention_ms
    );
    // Then both work, and a restart keeps them.
    store.alter_topic_config("t", overrides).await.unwrap();
    store.create_partitions("t", 3).await.unwrap();
    for i in 0..5 {
        append(&store, "t", make_batch(1, 1_000 + i, b"x"))
            .await
            .unwrap();
    }
    let p0 = store.topic("t").unwrap().partitions[0].clone();
    assert_eq!(store.delete_records(p0, 3).await.unwrap(), 3);
    close(store).await;
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    let t = store.topic("t").unwrap();
    assert_eq!(t.partitions.len(), 3);
    assert_eq!(t.config.retention_ms, 1000);
    assert_eq!(t.partitions[1].config().retention_ms, 1000);
    assert_eq!(t.partitions[0].log_start_offset(), 3);
    close(store).await;
    // A damaged log start record is reported and not used: the log starts at its first
    // segment again (records come back; none is lost).
    let record = dir.path().join("t-0").join("log-start-offset");
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replace("=3", "=4")).unwrap();
    let (store, _) = open_store(dir.path(), &gate, |_| {}).await;
    let t = store.topic("t").unwrap();
    assert_eq!(t.partitions[0].log_start_offset(), 0);
    assert_eq!(t.partitions[0].high_watermark(), 5);
}

/// A roll that fails after creating the next segment's file (here its directory sync fails)
/// must not leave that file behind: the active segment keeps taking appends past the failed
/// roll's base, and a leftover there would claim the same offsets after a restart (found by
/// the simulator's randomised swarm: a full disk during a roll, then a crash, and the broker
/// refused to start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_that_fails_part_way_leaves_no_segment_behind() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    let tweak = |c: &mut Config| c.segment_bytes = 4096;
    let value = vec![b'r'; 300];
    let (store, _) = open_store(dir.path(), &gate, tweak).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let pdir = dir.path().join("t-0");
    let mut next = 0;
    while segment_files(&pdir).len() < 2 {
        assert_eq!(
            append(&store, "t", make_batch(1, 1, &value)).await.unwrap(),
            next
        );
        next += 1;
    }
    let before = segment_files(&pdir);
    // The next roll creates its segment, then cannot sync the directory.
    *gate.fail_sync_dir.lock().unwrap() = Some(("t-0".into(), 1));
    let failed = loop {
        match append(&store, "t", make_batch(1, 1, &value)).await {
            Ok(offset) => {
                assert_eq!(offset, next);
                next += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(failed.to_string().contains("injected"), "{failed}");
    assert_eq!(
        segment_files(&pdir),
        before,
        "the failed roll's segment stayed"
    );
    healed(&store).await;
    // The appends go on, into the segment that could not be closed, and on through new rolls.
    for _ in 0..30 {
        assert_eq!(
            append(&store, "t", make_batch(1, 1, &value)).await.unwrap(),
            next
        );
        next += 1;
    }
    close(store).await;
    let (store, _) = open_store(dir.path(), &gate, tweak).await;
    let p = store.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.high_watermark(), next);
    every_offset_reads_back(&store, &p, next).await;
}

/// Recovery removes what a failed roll may still leave (its removal can fail too: the disk is
/// failing at the time): an empty segment whose base lies inside the segment before it, last
/// or not. An empty last segment that continues the one before is a fresh segment, and stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_removes_empty_segments_a_failed_roll_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::new();
    // No zeros written ahead: the fresh segment below is made by hand, with no roll to cut
    // them off the segment before it.
    let tweak = |c: &mut Config| {
        c.segment_bytes = 4096;
        c.preallocate_bytes = 0;
    };
    let value = vec![b'l'; 300];
    let (store, _) = open_store(dir.path(), &gate, tweak).await;
    store
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    for i in 0..40 {
        assert_eq!(
            append(&store, "t", make_batch(1, 1, &value)).await.unwrap(),
            i
        );
    }
    close(store).await;
    let pdir = dir.path().join("t-0");
    let segments = segment_files(&pdir);
    assert!(segments.len() >= 3, "{segments:?}");
    let base_of =
        |p: &PathBuf| -> i64 { p.file_stem().unwrap().to_string_lossy().parse().unwrap() };
    let last = base_of(segments.last().unwrap());
    let leftovers = [base_of(&segments[0]) + 1, last + 2];
    for base in leftovers {
        std::fs::write(pdir.join(format!("{base:020}.log")), b"").unwrap();
        std::fs::write(pdir.join(format!("{base:020}.snapshot")), b"stale").unwrap();
    }
    let (store, _) = open_store(dir.path(), &gate, tweak).await;
    let p = store.topic("t").unwrap().partitions[0].clone();
    assert_eq!(p.high_watermark(), 40);
    every_offset_reads_back(&store, &p, 40).await;
    assert_eq!(
        segment_files(&pdir),
        segments,
        "the leftovers are gone, nothing else"
    );
    for base in leftovers {
        assert!(!pdir.join(format!("{base:020}.snapshot")).exists());
    }
    assert_eq!(
        append(&store, "t", make_batch(1, 1, &value)).await.unwrap(),
        40
    );
    close(store).await;
    // A fresh empty segment (a roll, then a crash before its first write) is kept.
    let fresh = pdir.join("00000000000000000041.log");
    std::fs::write(&fresh, b"").unwrap();
    let (store, _) = open_store(dir.path(), &gate, tweak).await;
    assert!(fresh.exists());
    assert_eq!(
        append(&store, "t", make_batch(1, 1, &value)).await.unwrap(),
        41
    );
    assert_eq!(store.topic("t").unwrap().partitions[0].high_watermark(), 42);
}
