//! The multi-raft loop on madsim's disk, network and clock, three nodes:
//! - a leader whose loop always has work waiting (one partition). Proposals arrive every
//!   quarter of a millisecond while it leads (acks=0, ~4,000 a second: ~20,000 one-record
//!   batches in the first 5 simulated seconds), and then both followers are killed. The leader
//!   must count time all the same: check-quorum runs on ticks, and a leader that never ticks
//!   sends no heartbeats and, cut off, never steps down. A loop whose tick was only one branch
//!   of its `select!`, a timer made anew at every turn (never less than a millisecond, as
//!   tokio's), lost every race against the proposals and led on for as long as they came.
//! - a thousand partitions whose writes a commit round makes durable together, heard by a loop
//!   whose every turn costs processor time (below).
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
use bytes::Bytes;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use sim::run::test_node;

const GROUP: u64 = 0;

/// (simulated ms since the start, whether node 1 leads and serves), sampled by node 1.
type Leading = Arc<Mutex<Vec<(u64, bool)>>>;

fn address(id: NodeId) -> SocketAddr {
    format!("10.79.0.{id}:19093").parse().unwrap()
}

/// A record batch of one record, as a client encodes it.
fn batch() -> Bytes {
    sim::workload::client::one_record_batch(0, 1_700_000_000_000, Bytes::from_static(b"stream"))
}

/// What node 1 does once its groups are added (the others only serve).
type Driver = Arc<dyn Fn(Replication) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Node `id` of three, replicating `groups` partitions of one topic (groups 0.., node 1
/// their first leader) on madsim's disk, network and clock; node 1 then runs `drive`.
fn node(handle: &Handle, id: NodeId, groups: u64, drive: Driver) -> NodeHandle {
    test_node(handle, id, address(id).ip(), move |env| {
        let drive = drive.clone();
        async move {
            let peers: BTreeMap<NodeId, SocketAddr> = (1..=3).map(|p| (p, address(p))).collect();
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
                .create_topic("t", groups as i32, Default::default())
                .await
                .expect("create the topic");
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
            for (group, partition) in (0..groups).zip(topic.partitions.iter()) {
                replication
                    .add_group(group, partition.clone(), vec![1, 2, 3], id == 1, None)
                    .await
                    .expect("group added");
            }
            if id != 1 {
                return std::future::pending::<()>().await;
            }
            drive(replication).await;
        }
    })
}

fn serving(r: &Replication, group: u64) -> bool {
    r.group(group).is_some_and(|g| g.status().serving)
}

#[test]
fn a_leader_busy_with_a_stream_of_proposals_still_steps_down_when_cut_off() {
    let rt = Runtime::with_seed_and_config(5, madsim::Config::default());
    let samples = rt.block_on(async {
        let handle = Handle::current();
        let leading: Leading = Arc::default();
        let start = tokio::time::Instant::now();
        let sampled = leading.clone();
        let drive: Driver = Arc::new(move |replication| {
            let leading = sampled.clone();
            Box::pin(async move {
                // Four proposers a quarter of a millisecond apart (a timer waits a
                // millisecond at least): one arrives every 250 µs.
                let proposer = |phase: u64| {
                    let replication = replication.clone();
                    async move {
                        tokio::time::sleep(Duration::from_micros(1_000 + 250 * phase)).await;
                        loop {
                            if serving(&replication, GROUP) {
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
                        leading
                            .lock()
                            .unwrap()
                            .push((at, serving(&replication, GROUP)));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                };
                tokio::join!(proposing, sampling);
            })
        });
        let nodes: Vec<NodeHandle> = (1..=3)
            .map(|id| node(&handle, id, 1, drive.clone()))
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

/// Groups of the second test: a topic of a thousand partitions.
const MANY: u64 = 1_000;

/// A wave of proposals, one to each of the thousand groups at once (acks=-1: 1,000 one-record
/// batches of ~75 bytes, five waves), while every turn of a node's Raft loop costs half a
/// millisecond of processor time besides 10 µs per step. A commit round makes the writes of
/// hundreds of groups durable together; a loop that heard one finished write per turn took as
/// many turns to hear a round. Here that loop did not even get all thousand groups led within
/// the minute; in the `many-partitions` scenario votes and new leaders' first entries waited
/// seconds for it and elections timed out on an idle disk.
#[test]
fn a_commit_round_of_many_groups_is_heard_at_once() {
    let rt = Runtime::with_seed_and_config(11, madsim::Config::default());
    let waves: Vec<u64> = rt.block_on(async {
        broker::fault::set_cpu_hook(Some(|kind: &'static str, units: u64| {
            (kind == "raft").then(|| Duration::from_micros(500 + 10 * units))
        }));
        let handle = Handle::current();
        let start = tokio::time::Instant::now();
        let waves: Arc<Mutex<Vec<u64>>> = Arc::default();
        let measured = waves.clone();
        let drive: Driver = Arc::new(move |replication| {
            let waves = measured.clone();
            Box::pin(async move {
                while !(0..MANY).all(|g| serving(&replication, g)) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                eprintln!(
                    "all {MANY} groups served by node 1 at {:?} (simulated)",
                    tokio::time::Instant::now() - start
                );
                for _ in 0..5 {
                    let started = tokio::time::Instant::now();
                    let answers = futures::future::join_all((0..MANY).map(|g| {
                        let replication = replication.clone();
                        async move {
                            let ack = replication.propose(g, vec![batch()], -1).await;
                            match ack {
                                Ok(Some(rx)) => rx.await.is_ok_and(|r| r.is_ok()),
                                _ => false,
                            }
                        }
                    }))
                    .await;
                    assert!(answers.iter().all(|&ok| ok), "a proposal failed");
                    waves
                        .lock()
                        .unwrap()
                        .push(started.elapsed().as_millis() as u64);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        let _nodes: Vec<NodeHandle> = (1..=3)
            .map(|id| node(&handle, id, MANY, drive.clone()))
            .collect();
        for _ in 0..600 {
            if waves.lock().unwrap().len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let waves = waves.lock().unwrap().clone();
        broker::fault::set_cpu_hook(None::<fn(&'static str, u64) -> Option<Duration>>);
        waves
    });
    eprintln!("waves of {MANY} proposals answered in {waves:?} ms (simulated)");
    assert_eq!(
        waves.len(),
        5,
        "not every wave was answered within a minute (or the groups were not all led): {waves:?}"
    );
    assert!(
        waves.iter().all(|&ms| ms < 250),
        "a wave of {MANY} proposals took {waves:?} ms"
    );
}
