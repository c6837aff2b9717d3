//! The multi-raft loop on madsim's disk, network and clock: three nodes replicating one
//! partition, and a leader whose loop always has work waiting. Proposals arrive every quarter
//! of a millisecond while it leads (acks=0, ~4,000 a second: ~20,000 one-record batches in
//! the first 5 simulated seconds), and then both followers are killed. The leader must count
//! time all the same: check-quorum runs on ticks, and a leader that never ticks sends no
//! heartbeats and, cut off, never steps down. A loop whose tick was only one branch of its
//! `select!`, a timer made anew at every turn (never less than a millisecond, as tokio's),
//! lost every race against the proposals and led on for as long as they came.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::config::Config;
use broker::metrics::Metrics;
use broker::replication::node::{RaftSettings, Replication};
use broker::replication::transport::{NodeId, Transport, TransportSettings};
use broker::storage::Store;
use bytes::{Bytes, BytesMut};
use madsim::runtime::{Handle, NodeHandle, Runtime};
use sim::run::NodeStarts;
use sim::world::clock::SimClock;
use sim::world::disk::SimDisk;

const GROUP: u64 = 7;

/// (simulated ms since the start, whether node 1 leads and serves), sampled by node 1.
type Leading = Arc<Mutex<Vec<(u64, bool)>>>;

fn address(id: NodeId) -> SocketAddr {
    format!("10.79.0.{id}:19093").parse().unwrap()
}

/// A record batch of one record, as a client encodes it.
fn batch() -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from_static(b"stream")),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).expect("encode a record batch");
    buf.freeze()
}

fn node(handle: &Handle, id: NodeId, leading: Leading, start: tokio::time::Instant) -> NodeHandle {
    let starts = NodeStarts::new(id);
    let disk = SimDisk::new(id);
    handle
        .create_node()
        .name(format!("broker-{id}"))
        .ip(address(id).ip())
        .init(move || {
            let env = starts.next_env(&disk, Arc::new(SimClock::new()));
            let leading = leading.clone();
            async move {
                let peers: BTreeMap<NodeId, SocketAddr> =
                    (1..=3).map(|p| (p, address(p))).collect();
                let config = Config {
                    node_id: id as i32,
                    data_dir: "/data".into(),
                    cluster_peers: peers
                        .iter()
                        .map(|(id, a)| format!("{id}@{a}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    ..Config::default()
                };
                let store = Store::open(env.clone(), &config, Arc::new(Metrics::default()))
                    .await
                    .expect("open the store");
                let topic = store
                    .create_topic("t", 1, Default::default())
                    .await
                    .expect("create the topic");
                let partition = topic.partitions[0].clone();
                let listener = env.net.listen(address(id)).await.expect("listen");
                let (transport, inbox) = Transport::start(
                    env.clone(),
                    id,
                    listener,
                    peers.clone(),
                    TransportSettings::default(),
                );
                let settings = RaftSettings {
                    tick: Duration::from_millis(20),
                    election_ticks: 10,
                    heartbeat_ticks: 2,
                    quiesce_ticks: 20,
                    rebalance_ticks: 0,
                    catch_up: Default::default(),
                };
                let memory = broker::memory::MemoryBudget::new(64 << 20, store.metrics().clone());
                let replication: Replication =
                    Replication::start(env, id, store.clone(), transport, inbox, settings, memory);
                replication
                    .add_group(GROUP, partition, vec![1, 2, 3], id == 1, None)
                    .await
                    .expect("group added");
                if id != 1 {
                    return std::future::pending::<()>().await;
                }
                let serving = |r: &Replication| r.group(GROUP).is_some_and(|g| g.status().serving);
                // Four proposers a quarter of a millisecond apart (a timer waits a millisecond
                // at least): one arrives every 250 µs.
                let proposer = |phase: u64| {
                    let replication = replication.clone();
                    async move {
                        tokio::time::sleep(Duration::from_micros(1_000 + 250 * phase)).await;
                        loop {
                            if serving(&replication) {
                                let _ = replication.propose(GROUP, vec![batch()], 0).await;
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                };
                let proposing = futures::future::join_all((0..4).map(proposer));
                let sampling = async {
                    loop {
                        let at = start.elapsed().as_millis() as u64;
                        leading.lock().unwrap().push((at, serving(&replication)));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::join!(proposing, sampling);
            }
        })
        .build()
}

#[test]
fn a_leader_busy_with_a_stream_of_proposals_still_steps_down_when_cut_off() {
    let rt = Runtime::with_seed_and_config(5, madsim::Config::default());
    let samples = rt.block_on(async {
        let handle = Handle::current();
        let leading: Leading = Arc::default();
        let start = tokio::time::Instant::now();
        let nodes: Vec<NodeHandle> = (1..=3)
            .map(|id| node(&handle, id, leading.clone(), start))
            .collect();
        tokio::time::sleep_until(start + Duration::from_secs(5)).await;
        handle.kill(nodes[1].id());
        handle.kill(nodes[2].id());
        tokio::time::sleep_until(start + Duration::from_secs(25)).await;
        let samples = leading.lock().unwrap().clone();
        samples
    });
    let led_at_cut = samples
        .iter()
        .any(|&(at, l)| l && (4_000..5_000).contains(&at));
    assert!(
        led_at_cut,
        "node 1 did not lead before the cut: {samples:?}"
    );
    let last_led = samples
        .iter()
        .filter(|&&(_, l)| l)
        .map(|&(at, _)| at)
        .max()
        .unwrap();
    eprintln!(
        "node 1 led last at {last_led} ms, cut off at 5,000 ms ({} samples)",
        samples.len()
    );
    // Check-quorum: two election timeouts of ticks (200-400 ms each here, stretched by the
    // disk's pace up to 2 s), counted from the cut.
    assert!(
        last_led < 10_000,
        "cut off at 5 s while proposals streamed in, node 1 still led at {last_led} ms"
    );
}
