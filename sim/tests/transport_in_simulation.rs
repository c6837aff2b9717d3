//! The transport between brokers on madsim's network: three nodes that send each other a
//! message every 100 ms; a link cut both ways, a node cut off and a node killed and restarted
//! must each be survived: the links come back by themselves once the fault ends. (Whether a
//! seed replays the same is checked across processes by `sim check`; two runs inside one
//! process number madsim's tasks differently.)
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::replication::transport::{NodeId, Transport, TransportSettings};
use bytes::Bytes;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use sim::run::test_node;

/// (receiver, sender, the sender's counter, simulated ms since the start) for every message.
type Log = Arc<Mutex<Vec<(NodeId, NodeId, u64, u64)>>>;

fn address(id: NodeId) -> SocketAddr {
    format!("10.78.0.{id}:19092").parse().unwrap()
}

fn node(handle: &Handle, id: NodeId, log: Log, start: tokio::time::Instant) -> NodeHandle {
    test_node(handle, id, address(id).ip(), move |env| {
        let log = log.clone();
        async move {
            let listener = env.net.listen(address(id)).await.expect("listen");
            let peers: BTreeMap<NodeId, SocketAddr> = (1..=3).map(|p| (p, address(p))).collect();
            let settings = TransportSettings {
                io_timeout: Duration::from_secs(2),
                keepalive: Duration::from_millis(300),
                ..TransportSettings::default()
            };
            let (transport, mut inbox) = Transport::start(env, id, listener, peers, settings);
            let receiving = async {
                while let Some(delivery) = inbox.recv().await {
                    for message in delivery.messages {
                        let counter = u64::from_be_bytes(message[..8].try_into().unwrap());
                        let at = start.elapsed().as_millis() as u64;
                        log.lock().unwrap().push((id, delivery.from, counter, at));
                    }
                }
            };
            let sending = async {
                for counter in 0u64.. {
                    for peer in (1..=3).filter(|&p| p != id) {
                        transport.send(peer, Bytes::copy_from_slice(&counter.to_be_bytes()));
                    }
                    transport.flush();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::join!(receiving, sending);
        }
    })
}

/// The last message `to` had from `from` by `until_ms`.
fn last_heard(log: &Log, to: NodeId, from: NodeId, until_ms: u64) -> Option<u64> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|&&(t, f, _, at)| t == to && f == from && at <= until_ms)
        .map(|&(_, _, _, at)| at)
        .max()
}

fn run(seed: u64) -> Vec<(NodeId, NodeId, u64, u64)> {
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.block_on(async {
        let handle = Handle::current();
        let log: Log = Arc::default();
        let start = tokio::time::Instant::now();
        let nodes: Vec<NodeHandle> = (1..=3)
            .map(|id| node(&handle, id, log.clone(), start))
            .collect();
        let net = NetSim::current();
        let sleep_until = |ms: u64| tokio::time::sleep_until(start + Duration::from_millis(ms));

        // 0–5 s: everyone talks to everyone.
        sleep_until(5_000).await;
        for (to, from) in [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)] {
            let heard = last_heard(&log, to, from, 5_000).expect("link up");
            assert!(
                heard >= 4_500,
                "node {to} heard node {from} last at {heard} ms"
            );
        }

        // 5–15 s: the link 1–2 cut both ways; 1–3 and 2–3 go on.
        net.clog_link(nodes[0].id(), nodes[1].id());
        net.clog_link(nodes[1].id(), nodes[0].id());
        sleep_until(15_000).await;
        assert!(last_heard(&log, 2, 1, 15_000).unwrap() < 5_500);
        assert!(last_heard(&log, 3, 1, 15_000).unwrap() >= 14_500);
        assert!(last_heard(&log, 3, 2, 15_000).unwrap() >= 14_500);
        net.unclog_link(nodes[0].id(), nodes[1].id());
        net.unclog_link(nodes[1].id(), nodes[0].id());

        // Healed: within the timeout and a few backoffs, 1 and 2 talk again.
        sleep_until(25_000).await;
        assert!(
            last_heard(&log, 2, 1, 25_000).unwrap() >= 24_500,
            "1→2 not back"
        );
        assert!(
            last_heard(&log, 1, 2, 25_000).unwrap() >= 24_500,
            "2→1 not back"
        );

        // 25–30 s: node 3 killed; 30 s: restarted (a fresh transport, same address).
        handle.kill(nodes[2].id());
        sleep_until(30_000).await;
        handle.restart(nodes[2].id());
        sleep_until(40_000).await;
        for (to, from) in [(1, 3), (3, 1), (2, 3), (3, 2), (1, 2)] {
            let heard = last_heard(&log, to, from, 40_000).unwrap();
            assert!(
                heard >= 39_500,
                "after the restart node {to} heard node {from} last at {heard} ms"
            );
        }
        let log = log.lock().unwrap().clone();
        log
    })
}

#[test]
fn links_survive_cuts_and_restarts() {
    let log = run(11);
    assert!(log.len() > 1000, "{} messages", log.len());
    // Per link, a message is delivered at most once and in the order it was sent.
    for to in 1..=3 {
        for from in (1..=3).filter(|&f| f != to) {
            let counters: Vec<u64> = log
                .iter()
                .filter(|&&(t, f, _, _)| t == to && f == from)
                .map(|&(_, _, c, _)| c)
                .collect();
            // Node 3 restarted at 30 s: its counter starts again from 0 there.
            let restart = counters.windows(2).position(|w| w[1] < w[0]);
            let runs: Vec<&[u64]> = match restart {
                Some(i) if from == 3 => vec![&counters[..=i], &counters[i + 1..]],
                _ => vec![&counters[..]],
            };
            for run in runs {
                assert!(
                    run.windows(2).all(|w| w[0] < w[1]),
                    "{from}->{to}: out of order or repeated"
                );
            }
        }
    }
}
