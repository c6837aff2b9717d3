//! The log cleaner through the public `Store` API on the real disk: a compacted partition
//! keeps, for every key, its latest value at the offset it was written (or its tombstone until
//! `delete.retention.ms` after the cleaner first kept it), in batches that stay dense; within a
//! key map smaller than the keys (several passes); across a restart, with a cleaning's
//! leftovers (a half-written copy, a removed index) recovered.
//!
//! Volume: 3,000 to 6,000 records of ~20 bytes in 1 KiB segments (hundreds of segments) a test.
#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker::batch;
use broker::config::Config;
use broker::metrics::Metrics;
use broker::storage::log::Partition;
use broker::storage::Store;
use bytes::Bytes;
use common::{decode, encode, record, CODECS};
use io_backend::{blocking::BlockingDisk, Env, EnvRng, SystemClock, TcpNet};

fn env() -> Env {
    Env {
        disk: Arc::new(BlockingDisk::new(4)),
        net: Arc::new(TcpNet),
        clock: Arc::new(SystemClock),
        rng: EnvRng::seeded(3),
    }
}

async fn open(dir: &Path, map_bytes: u64) -> (Arc<Store>, Arc<Metrics>) {
    open_with(dir, map_bytes, true).await
}

/// The store with its cleaner off: what is on the disk stays as it is while a test looks.
async fn open_without_cleaner(dir: &Path) -> (Arc<Store>, Arc<Metrics>) {
    open_with(dir, 1 << 20, false).await
}

async fn open_with(dir: &Path, map_bytes: u64, cleaner: bool) -> (Arc<Store>, Arc<Metrics>) {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let config = Config {
        data_dir: dir.to_path_buf(),
        retention_check_interval_ms: 0,
        log_cleaner_enable: cleaner,
        log_cleaner_backoff_ms: 20,
        log_cleaner_dedupe_buffer_bytes: map_bytes,
        log_cleaner_io_max_bytes_per_second: 0,
        ..Config::default()
    };
    let metrics = Arc::new(Metrics::default());
    let store = Store::open(env(), &config, metrics.clone())
        .await
        .expect("open store");
    (store, metrics)
}

async fn close(store: Arc<Store>) {
    let closed = store.closed();
    drop(store);
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the store (and its cleaner) ends");
}

async fn compacted_topic(store: &Store, retention_ms: &str) -> Arc<Partition> {
    let overrides = broker::topic_config::check_all([
        ("cleanup.policy", Some("compact")),
        ("segment.bytes", Some("1024")),
        ("min.cleanable.dirty.ratio", Some("0.01")),
        ("delete.retention.ms", Some(retention_ms)),
    ])
    .unwrap();
    match store.topic("c") {
        Some(t) => t.partitions[0].clone(),
        None => store
            .create_topic("c", 1, overrides)
            .await
            .unwrap()
            .partitions[0]
            .clone(),
    }
}

/// What was written: offset → (key, value; `None` a tombstone).
type Written = BTreeMap<i64, (String, Option<String>)>;

/// Append `keys` records, one batch of `per_batch` at a time, the value naming `round`; the
/// keys in `deleted` get tombstones. Codecs vary by batch.
async fn write_round(
    store: &Store,
    p: &Arc<Partition>,
    keys: std::ops::Range<u32>,
    per_batch: u32,
    round: u32,
    deleted: &[u32],
    written: &mut Written,
) {
    let all: Vec<u32> = keys.collect();
    for (n, chunk) in all.chunks(per_batch as usize).enumerate() {
        let recs: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let key = format!("key-{k}");
                let value = (!deleted.contains(k)).then(|| format!("v{round}-{k}"));
                record(
                    i as i64,
                    1_700_000_000_000,
                    Some(key.as_bytes()),
                    value.as_deref().map(str::as_bytes),
                    &[],
                )
            })
            .collect();
        let b = encode(&recs, CODECS[n % CODECS.len()]);
        let headers = batch::validate_all(&b, 1 << 20).unwrap();
        let rx = store
            .append(p.clone(), b, headers, true, None)
            .await
            .expect("queued")
            .expect("a waiter");
        let base = rx.await.expect("answered").expect("appended").base_offset;
        for (i, k) in chunk.iter().enumerate() {
            let value = (!deleted.contains(k)).then(|| format!("v{round}-{k}"));
            written.insert(base + i as i64, (format!("key-{k}"), value));
        }
    }
}

/// `rounds` rounds over `keys` keys; the keys in `deleted` get tombstones in the last.
async fn write_rounds(
    store: &Store,
    p: &Arc<Partition>,
    keys: u32,
    per_batch: u32,
    rounds: u32,
    deleted: std::ops::Range<u32>,
) -> Written {
    let mut written = Written::new();
    for round in 0..rounds {
        let gone: Vec<u32> = if round + 1 == rounds {
            deleted.clone().collect()
        } else {
            Vec::new()
        };
        write_round(store, p, 0..keys, per_batch, round, &gone, &mut written).await;
    }
    written
}

/// Every record the partition serves from offset 0: (offset, key, value), and whether its
/// batches are dense (each starting where the one before ended).
async fn read_all(store: &Store, p: &Partition) -> (Vec<(i64, String, Option<String>)>, bool) {
    let mut out = Vec::new();
    let mut dense = true;
    let mut offset = 0;
    loop {
        let d = p.read(store.io(), offset, 1 << 20).await.expect("read");
        if d.records.is_empty() {
            return (out, dense);
        }
        for (at, h) in batch::scan(&d.records) {
            dense &= h.base_offset == offset || offset == 0 && out.is_empty();
            offset = h.next_offset();
            let one = d.records.slice(at..at + h.size);
            for r in decode(one).expect("a consumer can read every cleaned batch") {
                let s = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                out.push((r.offset, s(r.key).unwrap(), s(r.value)));
            }
        }
    }
}

/// The checks of Kafka's guarantee, on what is read after cleaning settled: every record read
/// is the one written at its offset; every key's latest record is there; below the active
/// segment no key has a superseded record left. Returns how many records were read.
async fn check_compacted(store: &Store, p: &Partition, written: &Written) -> usize {
    let (read, dense) = read_all(store, p).await;
    assert!(dense, "the batches stay dense");
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (&offset, (key, _)) in written {
        latest.insert(key, offset);
    }
    for (offset, key, value) in &read {
        assert_eq!(
            written.get(offset),
            Some(&(key.clone(), value.clone())),
            "the record at {offset} is the one written there"
        );
    }
    let offsets: Vec<i64> = read.iter().map(|r| r.0).collect();
    for (key, offset) in &latest {
        let (_, value) = &written[offset];
        assert!(
            value.is_none() || offsets.binary_search(offset).is_ok(),
            "{key}'s latest value (offset {offset}) was removed"
        );
    }
    read.len()
}

/// The records below the active segment that a later record below it supersedes (the
/// cleaner never takes the active segment, so what only it supersedes stays).
async fn superseded(store: &Store, p: &Partition, written: &Written) -> Vec<i64> {
    let active = p.state().active().base_offset;
    let (read, _) = read_all(store, p).await;
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (&offset, (key, _)) in written.range(..active) {
        latest.insert(key, offset);
    }
    read.iter()
        .filter(|(o, k, _)| *o < active && latest[k.as_str()] > *o)
        .map(|r| r.0)
        .collect()
}

/// Close the store and open it again: it reads what it read before, and takes round `round`
/// over the first ten keys (`per_batch` a batch) after it, compacted as ever.
async fn reopened_reads_the_same(
    dir: &Path,
    store: Arc<Store>,
    p: Arc<Partition>,
    written: &mut Written,
    per_batch: u32,
    round: u32,
) {
    let before = read_all(&store, &p).await.0;
    drop(p);
    close(store).await;
    let (store, _) = open(dir, 1 << 20).await;
    let p = compacted_topic(&store, "0").await;
    assert_eq!(read_all(&store, &p).await.0, before);
    write_round(&store, &p, 0..10, per_batch, round, &[], written).await;
    check_compacted(&store, &p, written).await;
    drop(p);
    close(store).await;
}

/// Wait until no superseded record is left below the active segment.
async fn settled(store: &Store, p: &Partition, written: &Written) {
    for _ in 0..400 {
        if superseded(store, p, written).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let segments: Vec<(i64, i64)> = p
        .state()
        .segments
        .values()
        .map(|s| (s.base_offset, s.next_offset))
        .collect();
    let left = superseded(store, p, written).await;
    panic!("the cleaner did not clean the partition within 20 s: superseded records at {left:?} under segments {segments:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_partition_keeps_every_keys_latest_value_at_its_offset_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, metrics) = open(dir.path(), 1 << 20).await;
    let p = compacted_topic(&store, "0").await;
    let mut written = write_rounds(&store, &p, 300, 7, 10, 0..50).await;
    settled(&store, &p, &written).await;
    let kept = check_compacted(&store, &p, &written).await;
    assert!(kept < 3000 / 2, "{kept} of 3000 records left");
    assert!(metrics.cleaner_runs.get() >= 1);
    assert!(metrics.cleaner_records_removed.get() > 0);
    // The tombstones got their horizon (delete.retention.ms=0: already passed); the next
    // cleaning, brought on by more writes, removes them.
    write_round(&store, &p, 100..300, 10, 10, &[], &mut written).await;
    settled(&store, &p, &written).await;
    let (read, _) = read_all(&store, &p).await;
    let active = p.state().active().base_offset;
    let tombstones = read
        .iter()
        .filter(|(o, _, v)| v.is_none() && *o < active)
        .count();
    assert_eq!(tombstones, 0, "tombstones past their retention are removed");
    check_compacted(&store, &p, &written).await;
    // After a restart: the same records, and writes go on after them.
    reopened_reads_the_same(dir.path(), store, p, &mut written, 10, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_stay_until_delete_retention_passes_and_a_tiny_key_map_cleans_in_passes() {
    let dir = tempfile::tempdir().unwrap();
    // 64 slots: 57 keys a pass, for 400 keys.
    let (store, metrics) = open(dir.path(), 24 * 64).await;
    let p = compacted_topic(&store, "3600000").await;
    let written = write_rounds(&store, &p, 400, 5, 6, 0..40).await;
    settled(&store, &p, &written).await;
    check_compacted(&store, &p, &written).await;
    assert!(
        metrics.cleaner_runs.get() >= 400 / 57,
        "{} cleanings for 400 keys in a map of 57",
        metrics.cleaner_runs.get()
    );
    // delete.retention.ms is an hour: every tombstone below the active segment is still read.
    let (read, _) = read_all(&store, &p).await;
    let active = p.state().active().base_offset;
    let tombstones = read
        .iter()
        .filter(|(o, _, v)| v.is_none() && *o < active)
        .count();
    let written_below = written
        .iter()
        .filter(|(o, (_, v))| v.is_none() && **o < active)
        .count();
    assert_eq!(tombstones, written_below);
    assert!(tombstones > 0);
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanings_leftovers_are_recovered_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), 1 << 20).await;
    let p = compacted_topic(&store, "0").await;
    let written = write_rounds(&store, &p, 100, 10, 5, 0..0).await;
    settled(&store, &p, &written).await;
    let before = read_all(&store, &p).await.0;
    let pdir = p.dir.clone();
    let first = *p.state().segments.keys().next().unwrap();
    drop(p);
    close(store).await;
    // As a crash mid-swap leaves them: a half-written copy, the index already removed.
    let name = |ext: &str| pdir.join(format!("{first:020}.{ext}"));
    std::fs::write(name("cleaned.tmp"), b"half a segment").unwrap();
    std::fs::remove_file(name("index")).unwrap();
    let (store, _) = open(dir.path(), 1 << 20).await;
    let p = compacted_topic(&store, "0").await;
    assert!(!name("cleaned.tmp").exists(), "the copy is removed");
    assert!(name("index").exists(), "the index is rebuilt");
    assert_eq!(read_all(&store, &p).await.0, before);
    check_compacted(&store, &p, &written).await;
    drop(p);
    close(store).await;
}

/// On a log that is not a Raft log, a run of record-less batches is written as one header:
/// one-record batches of a few keys, almost all emptied, leave about one header a segment, not
/// one for every batch ever written (which made a compacted log grow by 61 bytes a batch).
/// Volume: 2,000 one-record batches over 50 keys in 1 KiB segments (~160 segments).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_emptied_batches_become_one_header_and_the_log_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), 1 << 20).await;
    let p = compacted_topic(&store, "0").await;
    let written = write_rounds(&store, &p, 50, 1, 40, 0..0).await;
    settled(&store, &p, &written).await;
    // Once more, for the segments emptied by the last cleaning: their runs merge next time.
    let mut written = written;
    write_round(&store, &p, 0..50, 1, 40, &[], &mut written).await;
    settled(&store, &p, &written).await;
    let count = |p: &Partition| {
        let st = p.state();
        let active = st.active().base_offset;
        let segments = st.segments.len() - 1;
        (active, segments)
    };
    let (active, segments) = count(&p);
    let mut empty = 0;
    let mut full = 0;
    let mut offset = 0;
    while offset < active {
        let d = p.read(store.io(), offset, 1 << 20).await.expect("read");
        assert!(!d.records.is_empty(), "read nothing at {offset}");
        for (_, h) in batch::scan(&d.records) {
            if h.base_offset >= active {
                offset = active;
                break;
            }
            if h.record_count == 0 {
                empty += 1;
            } else {
                full += 1;
            }
            offset = h.next_offset();
        }
    }
    assert!(
        empty <= segments + full,
        "{empty} record-less batches in {segments} segments with {full} batches of records"
    );
    assert!(
        empty < 2000 / 4,
        "{empty} record-less batches of 2,000 written"
    );
    check_compacted(&store, &p, &written).await;
    // A restart reads the merged headers back, and writes go on after them.
    reopened_reads_the_same(dir.path(), store, p, &mut written, 1, 41).await;
}

/// The segments of the log, below the active one: (base, next offset, bytes).
fn closed_segments(p: &Partition) -> Vec<(i64, i64, u64)> {
    let st = p.state();
    let closed = st.segments.len() - 1;
    st.segments
        .values()
        .take(closed)
        .map(|s| (s.base_offset, s.next_offset, s.size))
        .collect()
}

/// Cleaned segments are merged (Kafka's grouping by `segment.bytes`): a compacted log keeps a
/// file per `segment.bytes` of what survives, not one per segment it ever rolled, and reads
/// the same after a restart. Volume: 3,600 records of ~20 bytes over 60 keys in 1 KiB
/// segments (~130 segments rolled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleaned_segments_are_merged_into_few_and_the_log_reads_the_same_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), 1 << 20).await;
    let p = compacted_topic(&store, "0").await;
    let mut written = write_rounds(&store, &p, 60, 10, 50, 0..0).await;
    settled(&store, &p, &written).await;
    // More writes bring more cleanings, each of which merges what the one before shrank.
    for round in 50..60 {
        write_round(&store, &p, 0..60, 10, round, &[], &mut written).await;
        settled(&store, &p, &written).await;
    }
    let closed = closed_segments(&p);
    let bytes: u64 = closed.iter().map(|s| s.2).sum();
    // ~130 KB were written in 1 KiB segments.
    assert!(written.len() >= 3600, "{} records", written.len());
    // Groups never exceed segment.bytes: at worst two groups per segment.bytes of data.
    assert!(
        (closed.len() as u64) <= 2 * bytes.div_ceil(1024) + 2,
        "{} closed segments hold {bytes} bytes: {closed:?}",
        closed.len()
    );
    for pair in closed.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "segments continue each other");
    }
    assert_eq!(
        common::segment_files(&p.dir),
        closed.len() + 1,
        "a merged segment's files are gone"
    );
    check_compacted(&store, &p, &written).await;
    reopened_reads_the_same(dir.path(), store, p, &mut written, 10, 61).await;
}

/// A merge of segments that a crash interrupted once its copy was the swap (`<base>.swap`,
/// some of the merged segments' files already removed) is finished at the next start: the
/// swap replaces every segment whose offsets it spans, and the log reads as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_a_crash_interrupted_after_its_swap_was_made_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path(), 1 << 20).await;
    let p = compacted_topic(&store, "0").await;
    let written = write_rounds(&store, &p, 300, 7, 3, 0..0).await;
    settled(&store, &p, &written).await;
    let pdir = p.dir.clone();
    drop(p);
    close(store).await;
    let (store, _) = open_without_cleaner(dir.path()).await;
    let p = compacted_topic(&store, "0").await;
    let before = read_all(&store, &p).await.0;
    let closed = closed_segments(&p);
    assert!(closed.len() >= 4, "{closed:?}");
    drop(p);
    close(store).await;
    // Segments 1..4 merged as a crash left them: the copy (their batches one after another)
    // named the swap, the second segment's log and the first's index already removed.
    let name = |base: i64, ext: &str| pdir.join(format!("{base:020}.{ext}"));
    let members: Vec<i64> = closed[1..4].iter().map(|s| s.0).collect();
    let merged: Vec<u8> = members
        .iter()
        .flat_map(|&b| std::fs::read(name(b, "log")).unwrap())
        .collect();
    std::fs::write(name(members[0], "swap"), &merged).unwrap();
    std::fs::remove_file(name(members[1], "log")).unwrap();
    std::fs::remove_file(name(members[0], "index")).unwrap();
    let (store, _) = open_without_cleaner(dir.path()).await;
    let p = compacted_topic(&store, "0").await;
    assert!(!name(members[0], "swap").exists(), "the swap is renamed in");
    assert!(
        !name(members[2], "log").exists(),
        "a merged segment is removed"
    );
    assert_eq!(
        std::fs::read(name(members[0], "log")).unwrap(),
        merged,
        "the swap is the segment"
    );
    let after = closed_segments(&p);
    assert_eq!(after.len(), closed.len() - 2, "{after:?}");
    assert_eq!(read_all(&store, &p).await.0, before);
    check_compacted(&store, &p, &written).await;
    drop(p);
    close(store).await;
}
