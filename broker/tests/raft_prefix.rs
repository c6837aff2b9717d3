//! A replicated compacted log's Raft entries begin above its cleaned prefix: the start moves
//! over closed, committed segments as far as the replication layer lets it, the cleaner then
//! merges the prefix's emptied batches (so the log no longer keeps a header for every batch
//! ever written), a restart keeps it all, and a follower's reset takes a prefix it received
//! as files (finished by the next start if a crash interrupts it) and holds exactly the
//! leader's log below its entries, and the idempotent
//! producers whose last batches lie in it (the cleaner keeps those batches, emptied).
//!
//! Data: 1,200 one-record entries of ~90 B over 40 keys (~110 KB) in 1 KiB segments.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker::batch;
use broker::config::Config;
use broker::metrics::Metrics;
use broker::producer_state::ProducerStates;
use broker::storage::log::replica::{self, ReplicaMeta};
use broker::storage::log::{segment_name, Partition};
use broker::storage::small_file;
use broker::storage::{RaftEntry, RaftReset, ResetPrefix, Store};
use bytes::{Bytes, BytesMut};
use common::{close_store as close, encode, raft_write as write, record, Codec};
use io_backend::{blocking::BlockingDisk, Env, EnvRng, SystemClock, TcpNet};

fn env() -> Env {
    Env {
        disk: Arc::new(BlockingDisk::new(4)),
        net: Arc::new(TcpNet),
        clock: Arc::new(SystemClock),
        rng: EnvRng::seeded(5),
    }
}

async fn open(dir: &Path, cleaner: bool) -> (Arc<Store>, Arc<Partition>) {
    let config = Config {
        data_dir: dir.to_path_buf(),
        retention_check_interval_ms: 0,
        cluster_peers: "1@127.0.0.1:1".into(),
        log_cleaner_enable: cleaner,
        log_cleaner_backoff_ms: 20,
        log_cleaner_io_max_bytes_per_second: 0,
        ..Config::default()
    };
    let store = Store::open(env(), &config, Arc::new(Metrics::default()))
        .await
        .expect("open store");
    let overrides = broker::topic_config::check_all([
        ("cleanup.policy", Some("compact")),
        ("segment.bytes", Some("1024")),
        ("min.cleanable.dirty.ratio", Some("0.01")),
    ])
    .unwrap();
    let topic = match store.topic("t") {
        Some(t) => t,
        None => store.create_topic("t", 1, overrides).await.unwrap(),
    };
    let p = topic.partitions[0].clone();
    (store, p)
}

/// An idempotent producer that writes the first 300 entries, then stops.
const EARLY_PRODUCER: i64 = 7;

/// Entries `from..to`, each one record: of key `index % 40` up to entry 300, from
/// [`EARLY_PRODUCER`] (sequence `index - 1`), then of key `index % 20` from no producer (keys
/// 20 to 39 keep their values from the first 300 entries).
async fn write_entries(store: &Store, p: &Arc<Partition>, from: u64, to: u64) {
    let entries = (from..to)
        .map(|index| {
            let key = format!("key-{}", index % if index <= 300 { 40 } else { 20 });
            let value = format!("value of entry {index}");
            let mut r = record(
                0,
                1_700_000_000_000,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[],
            );
            if index <= 300 {
                r.producer_id = EARLY_PRODUCER;
                r.producer_epoch = 0;
                r.sequence = index as i32 - 1;
            }
            RaftEntry {
                index,
                term: 1,
                data: encode(&[r], Codec::None),
            }
        })
        .collect();
    write(store, p, |w| w.entries = entries).await;
}

/// The log's bytes from `from` up to `to` (whole batches), as read back.
async fn log_bytes(store: &Store, p: &Partition, from: i64, to: i64) -> Bytes {
    let mut out = BytesMut::new();
    let mut offset = from;
    while offset < to {
        let d = p.read_durable(store.io(), offset, 1 << 20).await.unwrap();
        assert!(
            !d.records.is_empty(),
            "the log ends at {offset}, before {to}"
        );
        for (at, h) in batch::scan(&d.records) {
            if h.base_offset >= to {
                return out.freeze();
            }
            out.extend_from_slice(&d.records[at..at + h.size]);
            offset = h.next_offset();
        }
    }
    out.freeze()
}

/// Where the entries begin, and the first index recorded there.
fn entries_start(p: &Partition) -> (i64, u64) {
    let st = p.state();
    let r = st.replica.as_ref().expect("replicated");
    let from = r.meta.raft_from;
    (from, r.meta.segments.get(&from).copied().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_logs_raft_entries_begin_above_its_cleaned_prefix_which_a_reset_takes_whole_across_a_crash(
) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (store, p) = open(dirs[0].path(), true).await;
    for first in (1..1200).step_by(40) {
        write_entries(&store, &p, first, first + 40).await;
    }
    // Nothing moves before the replication layer lets it.
    assert_eq!(entries_start(&p).0, 0);
    let end = p.state().log_end_offset();
    p.set_committed_offset(end);
    p.set_raft_start_cap(i64::MAX);
    write_entries(&store, &p, 1201, 1202).await;
    let (from, first_index) = entries_start(&p);
    assert!(from > end / 2, "the entries begin at {from} of {end}");
    assert_eq!(
        first_index,
        from as u64 + 1,
        "one offset per entry from index 1"
    );
    // Below it the cleaner merges the emptied batches: a few headers a segment, not one a
    // batch; above it every entry stays a batch. What it keeps there: the latest values of the
    // keys written early only.
    let early: Vec<_> = (20..40).map(|k| Bytes::from(format!("key-{k}"))).collect();
    let keys_in = |bytes: &Bytes| {
        let mut keys: Vec<_> = common::decode(bytes.clone())
            .unwrap()
            .into_iter()
            .map(|r| r.key.unwrap())
            .collect();
        keys.sort();
        keys
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let prefix = loop {
        let prefix = log_bytes(&store, &p, 0, from).await;
        let below = batch::scan(&prefix).count();
        let segments = p.state().segments.range(..from).count();
        let keys = keys_in(&prefix);
        if below <= 3 * segments + 20 && segments < (from / 10) as usize && keys == early {
            break prefix;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{below} batches in {segments} segments below {from}, keys {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The early producer's last batches are kept (emptied, as headers): the prefix alone
    // gives its state, as the log's writer knows it.
    let mut producers = ProducerStates::default();
    for (_, h) in batch::scan(&prefix) {
        producers.record(&h, h.base_offset, 0);
    }
    let writer = p.state().producers.get(EARLY_PRODUCER).cloned().unwrap();
    let rebuilt = producers.get(EARLY_PRODUCER).cloned().unwrap();
    assert_eq!(
        (rebuilt.epoch, &rebuilt.batches),
        (writer.epoch, &writer.batches)
    );
    assert_eq!(writer.batches.back().unwrap().last_seq, 299);
    close(store, p).await;

    // A restart keeps where the entries begin, and what lies below.
    let (store, p) = open(dirs[0].path(), false).await;
    assert_eq!(entries_start(&p), (from, first_index));
    assert_eq!(log_bytes(&store, &p, 0, from).await, prefix);

    // A follower's reset to a snapshot at `from` takes the prefix it received as a file.
    let (store2, p2) = open(dirs[1].path(), false).await;
    write_entries(&store2, &p2, 1, 30).await;
    std::fs::write(
        p2.dir.join(broker::storage::log::segment_name(0, "prefix")),
        &prefix,
    )
    .unwrap();
    let reset = RaftReset {
        index: first_index - 1,
        term: 1,
        offset: from,
        gaps_before: 0,
        prefix: Some(Box::new(ResetPrefix {
            start: 0,
            log_start: 0,
            gaps_before: 0,
            gaps: Vec::new(),
            bases: vec![0],
            producers: producers.clone(),
        })),
    };
    write(&store2, &p2, |w| w.reset = Some(reset)).await;
    let check = |p: &Partition| {
        assert_eq!(entries_start(p), (from, first_index));
        assert_eq!(p.log_start_offset(), 0);
        assert_eq!(p.state().log_end_offset(), from);
    };
    check(&p2);
    assert_eq!(log_bytes(&store2, &p2, 0, from).await, prefix);
    // The follower's producers are the prefix's (its 29 entries of its own are gone).
    assert_eq!(p2.state().producers, producers);
    close(store2, p2).await;
    let (store2, p2) = open(dirs[1].path(), false).await;
    check(&p2);
    let recovered = p2.state().producers.get(EARLY_PRODUCER).cloned().unwrap();
    assert_eq!(
        recovered.batches, rebuilt.batches,
        "recovered from the prefix"
    );
    assert_eq!(log_bytes(&store2, &p2, 0, from).await, prefix);
    assert_eq!(
        common::segment_files(&p2.dir),
        2,
        "the prefix and the active segment"
    );
    close(store2, p2).await;

    // A reset a crash interrupted (after its record was written, after the old segments
    // went, after the prefix was renamed in) is finished by the next start, to the same log.
    for crash in ["record written", "old segments removed", "prefix renamed"] {
        let dir = tempfile::tempdir().unwrap();
        let (store3, p3) = open(dir.path(), false).await;
        write_entries(&store3, &p3, 1, 30).await;
        let pdir = p3.dir.clone();
        close(store3, p3).await;
        let file = |base: i64, ext: &str| pdir.join(segment_name(base, ext));
        let meta = ReplicaMeta {
            prev: (first_index - 1, 1),
            segments: BTreeMap::from([(from, first_index)]),
            raft_from: from,
            prefix_bases: vec![0],
            resetting: true,
            ..ReplicaMeta::default()
        };
        std::fs::write(
            pdir.join(replica::META_FILE),
            small_file::text(1, &meta.encode()),
        )
        .unwrap();
        std::fs::write(file(0, "prefix"), &prefix).unwrap();
        if crash != "record written" {
            // The old log's files, but its first segment's log (the prefix's file of that
            // base is renamed over it).
            for e in std::fs::read_dir(&pdir).unwrap() {
                let path = e.unwrap().path();
                let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
                let old = ext.is_some_and(|e| {
                    ["log", "index", "timeindex", "snapshot"].contains(&e.as_str())
                });
                if old && path != file(0, "log") {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
        if crash == "prefix renamed" {
            std::fs::rename(file(0, "prefix"), file(0, "log")).unwrap();
            std::fs::File::create(file(from, "log")).unwrap();
        }
        let (store3, p3) = open(dir.path(), false).await;
        check(&p3);
        assert_eq!(log_bytes(&store3, &p3, 0, from).await, prefix, "{crash}");
        let recovered = p3.state().producers.get(EARLY_PRODUCER).cloned();
        assert_eq!(recovered.map(|e| e.batches), Some(rebuilt.batches.clone()));
        assert_eq!(common::segment_files(&p3.dir), 2, "{crash}");
        assert!(!file(0, "prefix").exists(), "{crash}");
        close(store3, p3).await;
    }
    close(store, p).await;
}
