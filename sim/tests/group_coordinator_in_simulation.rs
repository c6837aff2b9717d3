//! The group coordinator on madsim's disk and clock, busy: a member joins a group and goes
//! silent while other requests arrive every quarter of a millisecond (ListGroups from four
//! clients, ~4,000 a second for 5 simulated seconds: ~20,000 requests). Its session (1 s)
//! must expire all the same. A coordinator that met its deadlines only in its timer's branch
//! of a `select!`, a timer made anew at every turn (never less than a millisecond, as
//! tokio's), lost every race against the queue of requests and expired no session while they
//! came: a consumer that died kept its partitions.
#![cfg(madsim)]

use std::sync::Arc;
use std::time::Duration;

use broker::config::Config;
use broker::group::{Coordinator, GroupConfig, JoinRequest, SyncRequest};
use broker::metrics::Metrics;
use broker::storage::Store;
use bytes::Bytes;
use io_backend::EnvRng;
use madsim::runtime::{Handle, Runtime};
use sim::run::test_node;

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
