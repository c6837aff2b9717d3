//! The group coordinator on madsim's disk and clock, busy: a member joins a group and goes
//! silent while other requests arrive every quarter of a millisecond (ListGroups from four
//! clients, ~4,000 a second for 5 simulated seconds: ~20,000 requests). Its session (1 s)
//! must expire all the same. A coordinator that met its deadlines only in its timer's branch
//! of a `select!`, a timer made anew at every turn (never less than a millisecond, as
//! tokio's), lost every race against the queue of requests and expired no session while they
//! came: a consumer that died kept its partitions.
//!
//! And a consumer group's write that fails (the disk full): what it carried is not served from
//! memory afterwards. Data: one topic of 4 partitions, two members, a few records.
#![cfg(madsim)]

use std::sync::Arc;
use std::time::Duration;

use broker::config::Config;
use broker::group::{
    ConsumerHeartbeat, Coordinator, DescribedConsumerGroup, GroupConfig, JoinRequest, SyncRequest,
};
use broker::metrics::Metrics;
use broker::storage::Store;
use bytes::Bytes;
use io_backend::EnvRng;
use madsim::runtime::{Handle, Runtime};
use sim::run::test_node;
use sim::world::clock::SimClock;
use sim::world::cluster::NodeStarts;
use sim::world::disk::SimDisk;

#[test]
fn a_silent_members_session_expires_while_other_requests_stream_in() {
    let rt = Runtime::with_seed_and_config(3, madsim::Config::default());
    let (state, members) = rt.block_on(async {
        let handle = Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        test_node(&handle, 1, "10.80.0.1".parse().unwrap(), move |env| {
            let tx = tx.clone();
            async move {
                let config = Config {
                    data_dir: "/data".into(),
                    ..Config::default()
                };
                let store = Store::open(env.clone(), &config, Arc::new(Metrics::default()))
                    .await
                    .expect("open the store");
                let settings = GroupConfig {
                    initial_rebalance_delay: Duration::ZERO,
                    min_session_timeout_ms: 100,
                    ..GroupConfig::from_config(&config)
                };
                let coordinator =
                    Coordinator::start(store, env.clock.clone(), EnvRng::seeded(3), settings, None);
                let joined = coordinator
                    .join(JoinRequest {
                        group_id: "silent".into(),
                        member_id: String::new(),
                        group_instance_id: None,
                        require_known_member_id: false,
                        client_id: "c".into(),
                        client_host: "/10.80.0.1".into(),
                        session_timeout_ms: 1_000,
                        rebalance_timeout_ms: 1_000,
                        protocol_type: "consumer".into(),
                        protocols: vec![("range".into(), Bytes::new())],
                    })
                    .await;
                assert_eq!(joined.error, 0, "joined");
                let synced = coordinator
                    .sync(SyncRequest {
                        group_id: "silent".into(),
                        generation: joined.generation,
                        member_id: joined.member_id.clone(),
                        group_instance_id: None,
                        protocol_type: Some("consumer".into()),
                        protocol_name: Some("range".into()),
                        assignments: vec![(joined.member_id.clone(), Bytes::new())],
                    })
                    .await;
                assert_eq!(synced.error, 0, "synced");
                // Four clients a quarter of a millisecond apart: a request every 250 µs.
                let client = |phase: u64| {
                    let coordinator = coordinator.clone();
                    async move {
                        tokio::time::sleep(Duration::from_micros(1_000 + 250 * phase)).await;
                        let until = tokio::time::Instant::now() + Duration::from_secs(5);
                        while tokio::time::Instant::now() < until {
                            coordinator.list().await;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                };
                // Looked at while the requests still come: once they stop, any loop expires
                // the session.
                let look = async {
                    tokio::time::sleep(Duration::from_micros(4_000_125)).await;
                    let described = coordinator.describe(vec!["silent".into()]).await;
                    let g = &described[0];
                    (g.state, g.members.len())
                };
                let (_, outcome) =
                    tokio::join!(futures::future::join_all((0..4).map(client)), look);
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(outcome);
                }
                std::future::pending::<()>().await
            }
        });
        rx.await.expect("the node reports")
    });
    assert_eq!(
        (state, members),
        ("Empty", 0),
        "a member silent for 4 s with a session of 1 s is still in its group"
    );
}

/// The group as `coordinator` describes it: its epoch and each member's id and epoch.
fn seen(d: &[DescribedConsumerGroup]) -> (i32, Vec<(String, i32)>) {
    let g = &d[0];
    let members = g
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.member_epoch))
        .collect();
    (g.epoch, members)
}

/// A member joins while the disk is full: its join's records are not written, and it is told
/// so. What that join changed must not be served afterwards: joining again once the disk has
/// room, it is answered from what the log holds, and a coordinator that reads the log anew (a
/// restart) finds the group as the first one described it. Served from memory, the failed
/// join's epoch was handed out with no record of it, and given again after a restart, with
/// other partitions, to other members (the simulator's swarm found two owners of one
/// partition in one epoch that way).
#[test]
fn a_consumer_group_change_whose_write_failed_is_not_served() {
    let rt = Runtime::with_seed_and_config(5, madsim::Config::default());
    let disk = SimDisk::new(5);
    let (before, after) = rt.block_on(async move {
        let handle = Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        let starts = Arc::new(NodeStarts::new(5));
        let node_disk = disk.clone();
        handle
            .create_node()
            .name("broker-1")
            .ip("10.80.0.2".parse().unwrap())
            .init(move || {
                let env = starts.next_env(&node_disk, Arc::new(SimClock::new()));
                let (tx, disk) = (tx.clone(), node_disk.clone());
                async move {
                    let config = Config {
                        data_dir: "/data".into(),
                        preallocate_bytes: 0,
                        ..Config::default()
                    };
                    let store = Store::open(env.clone(), &config, Arc::new(Metrics::default()))
                        .await
                        .expect("open the store");
                    store
                        .create_topic("t", 4, Default::default())
                        .await
                        .expect("the topic");
                    let settings = GroupConfig::from_config(&config);
                    let start = || {
                        Coordinator::start(
                            store.clone(),
                            env.clock.clone(),
                            EnvRng::seeded(5),
                            settings,
                            None,
                        )
                    };
                    let coordinator = start();
                    let join = |member: &str| ConsumerHeartbeat {
                        version: 1,
                        group_id: "g".into(),
                        member_id: member.into(),
                        member_epoch: 0,
                        rebalance_timeout_ms: 30_000,
                        subscribed_topic_names: Some(vec!["t".into()]),
                        topic_partitions: Some(Default::default()),
                        ..Default::default()
                    };
                    let first = coordinator.consumer_heartbeat(join("m1")).await;
                    assert_eq!(first.error, 0, "{first:?}");
                    // The disk full: the second member's join cannot be written.
                    let mut full = disk.faults();
                    full.capacity_bytes = Some(disk.used_bytes());
                    disk.set_faults(full);
                    let refused = coordinator.consumer_heartbeat(join("m2")).await;
                    assert_ne!(refused.error, 0, "written on a full disk: {refused:?}");
                    let mut room = disk.faults();
                    room.capacity_bytes = None;
                    disk.set_faults(room);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let again = coordinator.consumer_heartbeat(join("m2")).await;
                    assert_eq!(again.error, 0, "{again:?}");
                    let before = seen(&coordinator.consumer_describe(vec!["g".into()]).await);
                    // A coordinator that reads the log anew.
                    let fresh = start();
                    let after = seen(&fresh.consumer_describe(vec!["g".into()]).await);
                    if let Some(tx) = tx.lock().unwrap().take() {
                        let _ = tx.send((before, after));
                    }
                    std::future::pending::<()>().await
                }
            })
            .build();
        rx.await.expect("the node reports")
    });
    assert_eq!(
        before, after,
        "the group in memory differs from its log after a failed write"
    );
    assert_eq!(before.1.len(), 2, "both members in: {before:?}");
}
