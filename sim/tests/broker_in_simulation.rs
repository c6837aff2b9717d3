//! The unchanged broker inside madsim: a broker node on the simulated disk, network and clock,
//! a client node on the real wire protocol. Addresses are simulated inside the process; nothing
//! leaves it.
#![cfg(madsim)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::config::Config;
use bytes::Bytes;
use io_backend::{Env, EnvRng, TcpNet};
use madsim::runtime::{Handle, Runtime};
use sim::run::NodeStarts;
use sim::workload::client::{Client, ClientError};
use sim::world::clock::SimClock;
use sim::world::disk::{Crash, Faults, SimDisk};

const BROKER: &str = "10.77.0.1:9092";

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("STILLWATER_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_test_writer()
        .try_init();
}

fn broker_addr() -> SocketAddr {
    BROKER.parse().unwrap()
}

/// Start a broker node whose disk outlives the node (kept by the caller).
fn broker_node(
    handle: &Handle,
    disk: &SimDisk,
    tweak: fn(&mut Config),
) -> madsim::runtime::NodeHandle {
    let disk = disk.clone();
    let starts = NodeStarts::new(1);
    handle
        .create_node()
        .name("broker-1")
        .ip(broker_addr().ip())
        .init(move || {
            let env = starts.next_env(&disk, Arc::new(SimClock::new()));
            async move {
                let mut config = Config {
                    listen: broker_addr(),
                    metrics_listen: String::new(),
                    data_dir: "/data".into(),
                    seed: 1,
                    ..Config::default()
                };
                tweak(&mut config);
                let mut running = broker::server::start(env, config)
                    .await
                    .expect("broker starts");
                let _ = running.stopped().await;
            }
        })
        .build()
}

/// A node for clients, beside the broker.
fn client_node(handle: &Handle, name: &str, ip: &str) -> madsim::runtime::NodeHandle {
    handle
        .create_node()
        .name(name)
        .ip(ip.parse().unwrap())
        .build()
}

async fn connect() -> Client {
    connect_within(Duration::from_secs(10)).await
}

async fn connect_within(limit: Duration) -> Client {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if let Ok(c) = Client::connect(broker_addr()).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the broker never accepted a connection");
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("value-{i}"))
}

#[test]
fn produce_and_fetch_through_the_unchanged_broker() {
    logs();
    let rt = Runtime::with_seed_and_config(1, madsim::Config::default());
    rt.block_on(async {
        let handle = Handle::current();
        let disk = SimDisk::new(1);
        let _node = broker_node(&handle, &disk, |_| {});
        let client = client_node(&handle, "client", "10.77.0.2");
        client
            .spawn(async move {
                let mut c = connect().await;
                for i in 0..50 {
                    let off = c
                        .produce("t", 0, 1, 1_000 + i as i64, &[value(i)])
                        .await
                        .unwrap();
                    assert_eq!(off, i as i64);
                }
                let (records, hw, _) = c.fetch("t", 0, 0, 100).await.unwrap();
                assert_eq!(hw, 50);
                let values: Vec<Bytes> = records.into_iter().map(|(_, v)| v).collect();
                assert_eq!(values, (0..50).map(value).collect::<Vec<_>>());
            })
            .await
            .unwrap();
    });
}

#[test]
fn acknowledged_writes_survive_a_crash_that_loses_unsynced_data() {
    for seed in 1..=5u64 {
        let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(async move {
            let handle = Handle::current();
            let disk = SimDisk::new(seed);
            let node = broker_node(&handle, &disk, |_| {});
            let client = client_node(&handle, "client", "10.77.0.2");
            let acked = client
                .spawn(async move {
                    let mut c = connect().await;
                    let mut acked = Vec::new();
                    for i in 0..30 {
                        let off = c.produce("t", 0, 1, 1, &[value(i)]).await.unwrap();
                        acked.push((off, value(i)));
                    }
                    acked
                })
                .await
                .unwrap();
            // Kill the node and lose (or tear) everything not synced; restart it.
            handle.kill(node.id());
            disk.crash(if seed % 2 == 0 {
                Crash::Torn
            } else {
                Crash::DropUnsynced
            });
            handle.restart(node.id());
            let client = client_node(&handle, "reader", "10.77.0.3");
            client
                .spawn(async move {
                    let mut c = connect().await;
                    let (records, hw, _) = c.fetch("t", 0, 0, 100).await.unwrap();
                    assert!(hw >= acked.len() as i64, "seed {seed}: high watermark {hw}");
                    for (off, v) in &acked {
                        assert_eq!(
                            records.get(*off as usize),
                            Some(&(*off, v.clone())),
                            "seed {seed}: offset {off}"
                        );
                    }
                })
                .await
                .unwrap();
        });
    }
}

#[test]
fn a_node_restarted_while_its_disk_stalls_starts_once_the_stall_ends() {
    logs();
    let rt = Runtime::with_seed_and_config(3, madsim::Config::default());
    rt.block_on(async {
        let handle = Handle::current();
        let disk = SimDisk::new(3);
        let node = broker_node(&handle, &disk, |c| c.io_deadline_ms = 5_000);
        let client = client_node(&handle, "client", "10.77.0.2");
        let acked = client
            .spawn(async move {
                let mut c = connect().await;
                let mut acked = Vec::new();
                for i in 0..10 {
                    acked.push(c.produce("t", 0, 1, 1, &[value(i)]).await.unwrap());
                }
                acked
            })
            .await
            .unwrap();
        // The node dies; it restarts while every fsync stalls for two minutes, so recovery
        // misses its I/O deadline. It must keep trying, not give up for good.
        handle.kill(node.id());
        disk.crash(Crash::Torn);
        let stall_end = tokio::time::Instant::now() + Duration::from_secs(120);
        disk.set_faults(Faults {
            sync_stall_until: Some(stall_end),
            ..Faults::default()
        });
        handle.restart(node.id());
        let reader = client_node(&handle, "reader", "10.77.0.3");
        reader
            .spawn(async move {
                // The node comes up: every acknowledged write is there.
                let mut c = connect_within(Duration::from_secs(300)).await;
                let (records, _, _) = c.fetch("t", 0, 0, 100).await.unwrap();
                let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
                assert_eq!(offsets, acked, "every acknowledged write is there");
                // And it takes writes again once the stall is over, not before.
                let mut written_at = None;
                for _ in 0..300 {
                    if c.produce("t", 0, 1, 1, &[value(99)]).await.is_ok() {
                        written_at = Some(tokio::time::Instant::now());
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let written_at = written_at.expect("the node never took a write again");
                assert!(
                    written_at >= stall_end,
                    "a write cannot be synced while syncs stall"
                );
                assert!(
                    written_at - stall_end <= Duration::from_secs(35),
                    "took a write {:?} after the stall ended",
                    written_at - stall_end
                );
            })
            .await
            .unwrap();
    });
}

#[test]
fn a_stalled_fsync_gets_retriable_errors_within_the_deadline_and_the_node_recovers() {
    let rt = Runtime::with_seed_and_config(7, madsim::Config::default());
    rt.block_on(async {
        let handle = Handle::current();
        let disk = SimDisk::new(7);
        let _node = broker_node(&handle, &disk, |c| c.io_deadline_ms = 5_000);
        let client = client_node(&handle, "client", "10.77.0.2");
        let sim_disk = disk.clone();
        client
            .spawn(async move {
                let mut c = connect().await;
                assert_eq!(c.produce("t", 0, 1, 1, &[value(0)]).await.unwrap(), 0);
                // The founding incident: an fsync that stalls for 3 h 40 min.
                let stall = Duration::from_secs(3 * 3600 + 40 * 60);
                let start = tokio::time::Instant::now();
                sim_disk.set_faults(Faults {
                    sync_stall_until: Some(start + stall),
                    ..Faults::default()
                });
                // Its bytes were written but the sync stalled: an indefinite, retriable answer
                // (REQUEST_TIMED_OUT), within the deadline.
                let err = c.produce("t", 0, 1, 1, &[value(1)]).await.unwrap_err();
                assert!(matches!(err, ClientError::Kafka(7)), "got {err}");
                let waited = tokio::time::Instant::now() - start;
                assert!(
                    waited <= Duration::from_secs(6),
                    "answered after {waited:?}"
                );
                assert!(
                    !sim_disk.syncs_in_flight().is_empty(),
                    "the stalled fsync is visible"
                );
                // While stalled: immediate, definite retriable errors (KAFKA_STORAGE_ERROR:
                // not written), not hangs.
                let t = tokio::time::Instant::now();
                let err = c.produce("t", 0, 1, 1, &[value(2)]).await.unwrap_err();
                assert!(matches!(err, ClientError::Kafka(56)), "got {err}");
                assert!(tokio::time::Instant::now() - t < Duration::from_secs(1));
                // After the stall ends the node serves again; acknowledged data is intact.
                tokio::time::sleep_until(start + stall + Duration::from_secs(5)).await;
                sim_disk.set_faults(Faults::default());
                // The broker closed the idle connection during the hours of stall: reconnect.
                let mut c = connect().await;
                let mut next = None;
                for _ in 0..60 {
                    match c.produce("t", 0, 1, 1, &[value(3)]).await {
                        Ok(off) => {
                            next = Some(off);
                            break;
                        }
                        Err(ClientError::Kafka(56)) => {
                            tokio::time::sleep(Duration::from_secs(1)).await
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                let off = next.expect("the node never served again after the stall");
                let (records, _, _) = c.fetch("t", 0, 0, 100).await.unwrap();
                assert_eq!(records[0], (0, value(0)));
                assert_eq!(records.last(), Some(&(off, value(3))));
            })
            .await
            .unwrap();
    });
}

#[test]
fn without_io_deadlines_the_stalled_fsync_freezes_the_node() {
    logs();
    let rt = Runtime::with_seed_and_config(7, madsim::Config::default());
    rt.block_on(async {
        let handle = Handle::current();
        let disk = SimDisk::new(7);
        // The legacy configuration: no deadline on disk operations.
        let _node = broker_node(&handle, &disk, |c| c.io_deadline_ms = 0);
        let client = client_node(&handle, "client", "10.77.0.2");
        let sim_disk = disk.clone();
        client
            .spawn(async move {
                let mut c = connect().await;
                assert_eq!(c.produce("t", 0, 1, 1, &[value(0)]).await.unwrap(), 0);
                let start = tokio::time::Instant::now();
                sim_disk.set_faults(Faults {
                    sync_stall_until: Some(start + Duration::from_secs(3 * 3600 + 40 * 60)),
                    ..Faults::default()
                });
                // For an hour, no produce succeeds: each waits out its request timeout behind
                // the stalled fsync (REQUEST_TIMED_OUT), none is refused quickly and retriably.
                let hour = Duration::from_secs(3600);
                while tokio::time::Instant::now() - start < hour {
                    let t = tokio::time::Instant::now();
                    let r = c.produce("t", 0, 1, 1, &[value(1)]).await;
                    assert!(matches!(r, Err(ClientError::Kafka(7))), "got {r:?}");
                    assert!(tokio::time::Instant::now() - t >= Duration::from_secs(30));
                }
                let stuck = sim_disk.syncs_in_flight();
                assert_eq!(stuck.len(), 1, "exactly the one stalled fsync: {stuck:?}");
                assert!(
                    stuck[0].path.ends_with("t-0/00000000000000000000.log"),
                    "{stuck:?}"
                );
                assert!(tokio::time::Instant::now() - stuck[0].since >= hour);
            })
            .await
            .unwrap();
    });
}

/// Kafka's `.lock`: a second broker on a data directory in use is refused before it reads or
/// writes anything, naming the holder; once the holder is gone (its node crashed), it starts.
#[test]
fn a_second_broker_on_a_directory_in_use_is_refused() {
    logs();
    let rt = Runtime::with_seed_and_config(5, madsim::Config::default());
    rt.block_on(async {
        let handle = Handle::current();
        let disk = SimDisk::new(5);
        let first = broker_node(&handle, &disk, |_| {});
        let client = client_node(&handle, "client", "10.77.0.2");
        client
            .spawn(async move {
                let mut c = connect().await;
                assert_eq!(c.produce("t", 0, 1, 1, &[value(0)]).await.unwrap(), 0);
            })
            .await
            .unwrap();
        // A second node, same disk, same directory: refused.
        let start_second = |disk: SimDisk| async move {
            let env = Env {
                disk: Arc::new(disk),
                net: Arc::new(TcpNet),
                clock: Arc::new(SimClock::new()),
                rng: EnvRng::seeded(2),
            };
            let config = Config {
                node_id: 2,
                listen: "10.77.0.9:9092".parse().unwrap(),
                metrics_listen: String::new(),
                data_dir: "/data".into(),
                ..Config::default()
            };
            broker::server::start(env, config).await.map(|_| ())
        };
        let second = handle
            .create_node()
            .name("broker-2")
            .ip("10.77.0.9".parse().unwrap())
            .build();
        let refused = second.spawn(start_second(disk.clone())).await.unwrap();
        let err = refused.expect_err("two brokers on one data directory");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("/data") && msg.contains("in use") && msg.contains("broker node 1"),
            "{msg}"
        );
        // The first broker is untouched.
        client
            .spawn(async move {
                let mut c = connect().await;
                assert_eq!(c.produce("t", 0, 1, 1, &[value(1)]).await.unwrap(), 1);
            })
            .await
            .unwrap();
        // The holder dies: the lock goes with its process, and the second broker starts.
        handle.kill(first.id());
        disk.crash(Crash::DropUnsynced);
        second
            .spawn(start_second(disk.clone()))
            .await
            .unwrap()
            .expect("the directory is free once its holder is gone");
    });
}

/// A restarted node is a new incarnation: its random draws (here: topic ids) differ from the
/// ones it made before the crash, so a topic created after a restart never takes the id of one
/// created before it.
#[test]
fn a_restarted_node_draws_new_ids() {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestKind, ResponseKind};
    async fn topic_ids(c: &mut Client) -> Vec<(String, String)> {
        let mut all = MetadataRequest::default();
        all.topics = None;
        let ResponseKind::Metadata(m) = c
            .call(ApiKey::Metadata, 12, RequestKind::Metadata(all))
            .await
            .unwrap()
        else {
            panic!("not a Metadata response");
        };
        m.topics
            .iter()
            .map(|t| (t.name.as_ref().unwrap().to_string(), t.topic_id.to_string()))
            .collect()
    }
    let rt = Runtime::with_seed_and_config(9, madsim::Config::default());
    rt.block_on(async {
        let handle = Handle::current();
        let disk = SimDisk::new(9);
        let node = broker_node(&handle, &disk, |_| {});
        let client = client_node(&handle, "client", "10.77.0.2");
        client
            .spawn(async move {
                let mut c = connect().await;
                c.create_topic("before", 1).await.unwrap();
            })
            .await
            .unwrap();
        handle.kill(node.id());
        disk.crash(Crash::DropUnsynced);
        handle.restart(node.id());
        let ids = client
            .spawn(async move {
                let mut c = connect().await;
                c.create_topic("after", 1).await.unwrap();
                topic_ids(&mut c).await
            })
            .await
            .unwrap();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert_ne!(
            ids[0].1, ids[1].1,
            "a restarted node repeated a topic id: {ids:?}"
        );
    });
}

/// Retention's deletions are durable before the log start moves past them: after a crash that
/// loses everything unsynced, no deleted segment returns and the log start offset a client
/// was told does not move backwards.
#[test]
fn a_crash_after_retention_does_not_move_the_log_start_backwards() {
    use kafka_protocol::messages::{
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
        ApiKey, ListOffsetsRequest, RequestKind, ResponseKind, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    async fn log_start(c: &mut Client) -> i64 {
        let mut p = ListOffsetsPartition::default();
        p.timestamp = -2; // earliest
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partitions = vec![p];
        let mut req = ListOffsetsRequest::default();
        req.topics = vec![t];
        let ResponseKind::ListOffsets(r) = c
            .call(ApiKey::ListOffsets, 6, RequestKind::ListOffsets(req))
            .await
            .unwrap()
        else {
            panic!("not a ListOffsets response");
        };
        r.topics[0].partitions[0].offset
    }
    for seed in 1..=4u64 {
        let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(async move {
            let handle = Handle::current();
            let disk = SimDisk::new(seed);
            let node = broker_node(&handle, &disk, |c| {
                c.segment_bytes = 1024;
                c.retention_bytes = 2048;
                c.retention_check_interval_ms = 500;
            });
            let client = client_node(&handle, "client", "10.77.0.2");
            let before = client
                .spawn(async move {
                    let mut c = connect().await;
                    for i in 0..60 {
                        let v = Bytes::from(format!("{i:0>200}"));
                        c.produce("t", 0, 1, 1, &[v]).await.unwrap();
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    log_start(&mut c).await
                })
                .await
                .unwrap();
            assert!(before > 0, "seed {seed}: retention deleted nothing");
            handle.kill(node.id());
            disk.crash(Crash::DropUnsynced);
            handle.restart(node.id());
            let after = client
                .spawn(async move { log_start(&mut connect().await).await })
                .await
                .unwrap();
            assert!(
                after >= before,
                "seed {seed}: the log start went back from {before} to {after}"
            );
        });
    }
}
