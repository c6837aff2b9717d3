//! The transport between brokers, over real TCP: one connection per pair, coalesced frames,
//! bounded queues, reconnection, and refusal of whatever is not a configured peer.
#![cfg(not(madsim))] // These run the real network; the simulator has its own tests.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use broker::replication::transport::{Delivery, Inbox, NodeId, Transport, TransportSettings};
use bytes::Bytes;
use io_backend::{blocking::BlockingDisk, Env, EnvRng, Net, SystemClock, TcpNet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env(seed: u64) -> Env {
    Env {
        disk: Arc::new(BlockingDisk::new(1)),
        net: Arc::new(TcpNet),
        clock: Arc::new(SystemClock),
        rng: EnvRng::seeded(seed),
    }
}

fn settings() -> TransportSettings {
    TransportSettings {
        queue_messages_max: 64,
        io_timeout: Duration::from_millis(1000),
        keepalive: Duration::from_millis(200),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..TransportSettings::default()
    }
}

/// Bind every node's listener first (port 0), then start each with the others' addresses.
async fn cluster(
    ids: &[NodeId],
    settings: TransportSettings,
) -> Vec<(Transport, Inbox, SocketAddr)> {
    let mut listeners = Vec::new();
    for _ in ids {
        listeners.push(TcpNet.listen("127.0.0.1:0".parse().unwrap()).await.unwrap());
    }
    let addresses: BTreeMap<NodeId, SocketAddr> = ids
        .iter()
        .zip(&listeners)
        .map(|(id, l)| (*id, l.local_addr().unwrap()))
        .collect();
    ids.iter()
        .zip(listeners)
        .map(|(id, listener)| {
            let address = addresses[id];
            let (t, inbox) =
                Transport::start(env(*id), *id, listener, addresses.clone(), settings.clone());
            (t, inbox, address)
        })
        .collect()
}

async fn receive(inbox: &mut Inbox, want: usize) -> Vec<(NodeId, Bytes)> {
    let mut got = Vec::new();
    while got.len() < want {
        let delivery = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
            .await
            .expect("messages arrive within 10 s")
            .expect("transport running");
        got.extend(delivery.messages.into_iter().map(|m| (delivery.from, m)));
    }
    got
}

/// Send node 1's messages to node 2 every 50 ms, as Raft's heartbeats would, until one arrives.
async fn send_until_heard(one: &Transport, inbox_two: &mut Inbox, what: &str) -> Delivery {
    for n in 0..500 {
        one.send(2, message(1, 2, n));
        one.flush();
        if let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(50), inbox_two.recv()).await
        {
            return delivery;
        }
    }
    panic!("node 1 never reached {what}");
}

fn message(from: NodeId, to: NodeId, n: usize) -> Bytes {
    Bytes::from(format!("{from}->{to}#{n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pair_talks_both_ways_on_one_connection_in_order() {
    let _turn = crate::common::turn::multi_node_turn();
    // Room for all 100 messages to a peer even if its writer has not run yet.
    let roomy = TransportSettings {
        queue_messages_max: 1000,
        ..settings()
    };
    let mut nodes = cluster(&[1, 2, 3], roomy).await;
    let ids = [1u64, 2, 3];
    // The links come up by themselves.
    for _ in 0..500 {
        let up = nodes.iter().all(|(t, _, _)| {
            ids.iter()
                .filter(|&&p| p != t.node_id())
                .all(|&p| t.connected(p))
        });
        if up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Five ticks of twenty messages to each peer, one flush per tick.
    for tick in 0..5 {
        for (transport, _, _) in &nodes {
            let from = transport.node_id();
            for to in ids.iter().filter(|&&to| to != from) {
                for n in 0..20 {
                    assert!(transport.send(*to, message(from, *to, tick * 20 + n)));
                }
            }
            transport.flush();
        }
    }
    for (transport, inbox, _) in &mut nodes {
        let me = transport.node_id();
        let got = receive(inbox, 200).await;
        for from in ids.iter().filter(|&&from| from != me) {
            let theirs: Vec<Bytes> = got
                .iter()
                .filter(|(f, _)| f == from)
                .map(|(_, m)| m.clone())
                .collect();
            let expected: Vec<Bytes> = (0..100).map(|n| message(*from, me, n)).collect();
            assert_eq!(theirs, expected, "node {me} from node {from}");
        }
    }
    // One connection per pair: 1 dials 2 and 3, 2 dials 3; 2 accepts 1, 3 accepts 1 and 2.
    let dialled: Vec<u64> = nodes
        .iter()
        .map(|(t, _, _)| t.stats().connections_dialled.load(Ordering::Relaxed))
        .collect();
    let accepted: Vec<u64> = nodes
        .iter()
        .map(|(t, _, _)| t.stats().connections_accepted.load(Ordering::Relaxed))
        .collect();
    assert_eq!(dialled, vec![2, 1, 0]);
    assert_eq!(accepted, vec![0, 1, 2]);
    // Coalesced: 100 messages to a peer leave in far fewer frames than messages. A writer
    // counts a frame once its write returns, which may be after the peer has read it: wait
    // for the count (bounded), then check it.
    for (transport, _, _) in &nodes {
        let sent = || transport.stats().messages_sent.load(Ordering::Relaxed);
        for _ in 0..500 {
            if sent() >= 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sent(), 200);
        let frames = transport.stats().frames_sent.load(Ordering::Relaxed);
        assert!(frames <= 2 * 5 * 2, "{frames} frames for 200 messages");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_dialled_again() {
    let _turn = crate::common::turn::multi_node_turn();
    let mut nodes = cluster(&[1, 2], settings()).await;
    let (one, _, _) = &nodes[0];
    assert!(one.send(2, message(1, 2, 0)));
    one.flush();
    let got = receive(&mut nodes[1].1, 1).await;
    assert_eq!(got, vec![(1, message(1, 2, 0))]);

    // Node 2 goes away; node 1 keeps queueing (bounded) and redials.
    let (two, _, address_two) = nodes.pop().unwrap();
    two.shutdown();
    drop(two);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = TcpNet
        .listen(address_two)
        .await
        .expect("rebind node 2's address");
    let peers: BTreeMap<NodeId, SocketAddr> =
        [(1, nodes[0].2), (2, address_two)].into_iter().collect();
    let (two, mut inbox_two) = Transport::start(env(22), 2, listener, peers, settings());
    // Messages sent while the link is down may be lost with it (Raft resends).
    let arrived = send_until_heard(&nodes[0].0, &mut inbox_two, "the restarted node 2").await;
    let one = &nodes[0].0;
    assert_eq!(arrived.from, 1);
    assert!(one.stats().connections_dialled.load(Ordering::Relaxed) >= 2);
    assert!(one.stats().connections_lost.load(Ordering::Relaxed) >= 1);
    assert!(two.connected(1));
}

/// A proxy in front of a peer that is down accepts every connection and drops it at once (a twin
/// run's link proxy, a load balancer with no live backend): each such link is a failed dial, so
/// the redials back off to `backoff_max` rather than come every `backoff_min`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_accepts_and_drops_at_once_is_redialled_with_backoff() {
    let _turn = crate::common::turn::multi_node_turn();
    let dropper = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address_two = dropper.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = dropper.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            drop(conn);
        }
    });
    let listener = TcpNet.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address_one = listener.local_addr().unwrap();
    let peers = [(1, address_one), (2, address_two)].into_iter().collect();
    // Backoff from 20 ms to 200 ms: in 2 s, doubling from the start and capped, at most
    // about 2 + 2000/100 dials (each wait is at least half the backoff); starting over after
    // every drop it would be about 2000/15.
    let (one, _inbox) = Transport::start(env(1), 1, listener, peers, settings());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dials = accepted.load(Ordering::Relaxed);
    one.shutdown();
    assert!(dials >= 2, "node 1 dialled the address {dials} times");
    assert!(
        dials <= 30,
        "{dials} dials in 2 s: a link dropped at once started the backoff over"
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let _turn = crate::common::turn::multi_node_turn();
    // Node 2's address has nobody behind it.
    let nobody = TcpNet.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address_two = nobody.local_addr().unwrap();
    drop(nobody);
    let listener = TcpNet.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address_one = listener.local_addr().unwrap();
    let peers = [(1, address_one), (2, address_two)].into_iter().collect();
    let (one, _inbox) = Transport::start(env(1), 1, listener, peers, settings());
    let sent = (0..70).filter(|n| one.send(2, message(1, 2, *n))).count();
    assert_eq!(sent, 64, "the queue holds queue_messages_max");
    assert!(!one.send(9, message(1, 9, 0)), "node 9 is no peer");
    assert_eq!(one.stats().messages_dropped.load(Ordering::Relaxed), 7);
    assert!(!one.connected(2));
    // Oversized for a frame: refused at once.
    let huge = Bytes::from(vec![0u8; (16 << 20) + 1]);
    assert!(!one.send(2, huge));
}

/// A raw TCP peer: whatever it sends, node 2 must close the connection, and keep serving node 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_strangers_and_silence_are_cut_off_and_the_transport_goes_on() {
    let _turn = crate::common::turn::multi_node_turn();
    let mut nodes = cluster(&[1, 2], settings()).await;
    let address_two = nodes[1].2;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        out.extend_from_slice(body);
        out
    }
    // The cluster's fingerprint: its members as every one of them is configured.
    let members = format!("1@{};2@{};", nodes[0].2, nodes[1].2);
    let ours = crc32c::crc32c(members.as_bytes());
    let theirs = crc32c::crc32c(format!("1@127.0.0.1:1;2@{};", nodes[1].2).as_bytes());
    let in_cluster = |from: u64, to: u64, cluster: u32| -> Vec<u8> {
        let mut body = vec![0u8];
        body.extend_from_slice(b"SWIB");
        body.extend_from_slice(&2u16.to_be_bytes());
        body.extend_from_slice(&from.to_be_bytes());
        body.extend_from_slice(&to.to_be_bytes());
        body.extend_from_slice(&cluster.to_be_bytes());
        body
    };
    let hello = |from: u64, to: u64| in_cluster(from, to, ours);
    let mut version_1 = hello(1, 2);
    version_1[6] = 1;
    version_1.truncate(version_1.len() - 4);
    let mut bad_crc = frame(&hello(1, 2));
    bad_crc[5] ^= 0xff;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a frame of 4 GiB", vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
        ("a hello with a bad crc", bad_crc),
        ("a hello from a stranger", frame(&hello(9, 2))),
        (
            "a hello from node 1 of another cluster",
            frame(&in_cluster(1, 2, theirs)),
        ),
        ("a hello of version 1", frame(&version_1)),
        ("a hello for another node", frame(&hello(1, 3))),
        (
            "a hello from the node that should be dialled",
            frame(&hello(3, 2)),
        ),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        // A valid hello, then a frame whose message runs past its end.
        ("a malformed frame after the hello", {
            let mut bytes = frame(&hello(1, 2));
            bytes.extend(frame(&[1, 0, 0, 0, 1, 0, 0, 0, 200, 1, 2]));
            bytes
        }),
        // A valid hello, then silence: cut off after io_timeout.
        ("silence after the hello", frame(&hello(1, 2))),
        // Nothing at all: the hello's deadline.
        ("nothing", Vec::new()),
    ];
    for (what, bytes) in cases {
        let mut raw = TcpNet.connect(address_two).await.unwrap();
        raw.write_all(&bytes).await.unwrap();
        let mut sink = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "{what}: node 2 kept the connection open");
    }
    // Node 1's own connection still carries messages.
    let one = nodes[0].0.clone();
    let arrived = send_until_heard(&one, &mut nodes[1].1, "node 2").await;
    assert_eq!(arrived.from, 1);
}

/// Strangers that connect and say nothing (200 here, all from one address) keep a bounded
/// number of connections open: the rest are closed at once and counted, and the cluster's own
/// link goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_is_held_to_the_bound_on_unidentified_ones() {
    let _turn = crate::common::turn::multi_node_turn();
    let mut nodes = cluster(&[1, 2], settings()).await;
    let one = nodes[0].0.clone();
    send_until_heard(&one, &mut nodes[1].1, "node 2").await;
    let address_two = nodes[1].2;
    let flood = 200;
    let mut idle = Vec::new();
    for _ in 0..flood {
        idle.push(TcpNet.connect(address_two).await.unwrap());
    }
    // A connection closed by the port reads its end at once; one held waits for its hello's
    // deadline (1 s here).
    let mut held = 0;
    for mut conn in idle {
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_millis(300), conn.read_to_end(&mut sink));
        if read.await.is_err() {
            held += 1;
        }
    }
    assert!(
        held <= broker::replication::transport::UNIDENTIFIED_PER_ADDRESS_MAX,
        "{held} idle connections from one address were held open"
    );
    let refused = nodes[1]
        .0
        .stats()
        .connections_refused
        .load(Ordering::Relaxed);
    assert!(
        refused >= (flood - broker::replication::transport::UNIDENTIFIED_PER_ADDRESS_MAX) as u64,
        "{refused} refusals counted"
    );
    let arrived = send_until_heard(&one, &mut nodes[1].1, "node 2").await;
    assert_eq!(arrived.from, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_message_a_frame_holds_arrives_and_one_byte_more_is_refused() {
    let _turn = crate::common::turn::multi_node_turn();
    let small_frames = TransportSettings {
        frame_bytes_max: 1024,
        ..settings()
    };
    let mut nodes = cluster(&[1, 2], small_frames).await;
    let one = nodes[0].0.clone();
    // 8 bytes of frame header, a kind byte, a count and the message's length: 17.
    assert!(!one.send(2, Bytes::from(vec![7u8; 1024 - 16])));
    let largest = Bytes::from(vec![7u8; 1024 - 17]);
    let mut heard = None;
    for _ in 0..500 {
        assert!(one.send(2, largest.clone()));
        one.flush();
        if let Ok(Some(d)) =
            tokio::time::timeout(Duration::from_millis(50), nodes[1].1.recv()).await
        {
            heard = Some(d);
            break;
        }
    }
    let heard = heard.expect("the largest message arrives");
    assert!(heard.messages.iter().all(|m| *m == largest));
    // Two of them never share a frame over the limit: each arrives whole.
    assert!(one.send(2, largest.clone()) && one.send(2, largest.clone()));
    one.flush();
    let mut got = 0;
    while got < 2 {
        let d = tokio::time::timeout(Duration::from_secs(10), nodes[1].1.recv())
            .await
            .expect("arrives")
            .expect("running");
        got += d.messages.iter().filter(|m| **m == largest).count();
    }
}

/// Two clusters whose node ids collide (two test clusters on one host, a broker left over
/// from an earlier cluster on the same addresses): a node 1 configured with other members
/// dials node 2 and is refused — nothing it sends arrives — while node 2's own node 1 is heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused_however_its_ids_match() {
    let _turn = crate::common::turn::multi_node_turn();
    let mut nodes = cluster(&[1, 2], settings()).await;
    let listener = TcpNet.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let stranger_address = listener.local_addr().unwrap();
    let members: BTreeMap<NodeId, SocketAddr> = [(1, stranger_address), (2, nodes[1].2)]
        .into_iter()
        .collect();
    let (stranger, _inbox) = Transport::start(env(91), 1, listener, members, settings());
    let no_stranger = |d: &Delivery| {
        assert!(
            d.messages.iter().all(|m| !m.starts_with(b"stranger")),
            "a message of the other cluster's node 1 arrived"
        )
    };
    for n in 0..40 {
        stranger.send(2, Bytes::from(format!("stranger#{n}")));
        stranger.flush();
        if let Ok(Some(d)) =
            tokio::time::timeout(Duration::from_millis(25), nodes[1].1.recv()).await
        {
            no_stranger(&d);
        }
    }
    let stats = stranger.stats();
    assert!(
        stats.connections_dialled.load(Ordering::Relaxed) >= 1
            && stats.connections_lost.load(Ordering::Relaxed) >= 1,
        "the stranger reached node 2's listener and was cut off"
    );
    // Node 2's own node 1 is heard, and only it.
    let one = nodes[0].0.clone();
    let arrived = send_until_heard(&one, &mut nodes[1].1, "node 2").await;
    no_stranger(&arrived);
    while let Ok(Some(d)) =
        tokio::time::timeout(Duration::from_millis(100), nodes[1].1.recv()).await
    {
        no_stranger(&d);
    }
    stranger.shutdown();
}

/// A broker outside the configured ones: it asks to join (a `JOIN` the layer above answers),
/// dials the configured broker with a larger id telling its address (admitted provisionally),
/// and is dialled by the one with a smaller id once that one is told its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outside_the_configuration_joins_and_links_both_ways() {
    let _turn = crate::common::turn::multi_node_turn();
    // Configured: nodes 1 and 5. Node 3 joins.
    let mut nodes = cluster(&[1, 5], settings()).await;
    let (five, mut inbox_five, five_at) = nodes.pop().unwrap();
    let (one, mut inbox_one, one_at) = nodes.pop().unwrap();
    let configured: BTreeMap<NodeId, SocketAddr> = [(1, one_at), (5, five_at)].into();
    let listener = TcpNet.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let three_at = listener.local_addr().unwrap();
    let (three, mut inbox_three) = Transport::start(
        env(3),
        3,
        listener,
        configured.clone(),
        TransportSettings {
            advertised: Some(three_at),
            ..settings()
        },
    );
    // The join: node 1 is asked; its layer above answers.
    let mut joins = one.take_joins().expect("taken once");
    assert!(one.take_joins().is_none());
    let answer = tokio::spawn(async move {
        let j = joins.recv().await.unwrap();
        let seen = (j.from, j.registration.clone());
        j.reply.send(Ok(())).unwrap();
        let refused = joins.recv().await.unwrap();
        refused.reply.send(Err("not this time".into())).unwrap();
        seen
    });
    three
        .join(one_at, Bytes::from_static(b"register me"))
        .await
        .unwrap();
    let refusal = three.join(one_at, Bytes::from_static(b"again")).await;
    assert!(refusal.unwrap_err().contains("not this time"));
    assert_eq!(
        answer.await.unwrap(),
        (3, Bytes::from_static(b"register me"))
    );
    // Node 3 dials node 5 (the larger id) with its address: 5 does not know it, admits it.
    three.send(5, message(3, 5, 0));
    three.flush();
    let got = receive(&mut inbox_five, 1).await;
    assert_eq!(got, vec![(3, message(3, 5, 0))]);
    assert!(five.peers().contains(&3), "admitted on its hello");
    five.send(3, message(5, 3, 0));
    five.flush();
    assert_eq!(
        receive(&mut inbox_three, 1).await,
        vec![(5, message(5, 3, 0))]
    );
    // Node 1 learns node 3's address (from the metadata) and dials it.
    assert!(!one.send(3, message(1, 3, 0)), "unknown yet: dropped");
    let mut with_three = configured.clone();
    with_three.insert(3, three_at);
    one.set_peers(with_three.clone());
    let mut heard = false;
    for n in 0..200 {
        one.send(3, message(1, 3, n));
        one.flush();
        if let Ok(Some(d)) =
            tokio::time::timeout(Duration::from_millis(50), inbox_three.recv()).await
        {
            assert_eq!(d.from, 1);
            heard = true;
            break;
        }
    }
    assert!(heard, "node 1 never reached node 3");
    three.send(1, message(3, 1, 0));
    three.flush();
    assert_eq!(receive(&mut inbox_one, 1).await[0].0, 3);
    // Node 3 retires: node 1 drops it, and a message for it is dropped.
    one.set_peers(configured);
    assert!(!one.peers().contains(&3));
    assert!(!one.send(3, message(1, 3, 999)));
    for t in [one, three, five] {
        t.shutdown();
    }
}
