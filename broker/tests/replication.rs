//! Three nodes in one process, each with its own data directory, commit pipeline, transport
//! (real TCP on loopback) and multi-raft loop, replicating one partition: writes acknowledged
//! at acks=all are on every replica's log with the same bytes; the leader's node goes away and
//! another takes over; it comes back, catches up, and all logs agree again; an idle group goes
//! quiet and still fails over when its leader's node goes.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker::batch;
use broker::config::Config;
use broker::metrics::Metrics;
use broker::replication::node::{RaftSettings, ReplicaError, Replication};
use broker::replication::transport::{Transport, TransportSettings};
use broker::storage::log::Partition;
use broker::storage::Store;
use bytes::Bytes;
use common::gated::{Gate, GatedDisk};
use common::{idempotent_batch, make_batch};
use io_backend::{blocking::BlockingDisk, Env, EnvRng, Net, SystemClock, TcpNet};

const GROUP: u64 = 7;

fn env(seed: u64, gate: &Gate) -> Env {
    Env {
        disk: Arc::new(GatedDisk {
            inner: Arc::new(BlockingDisk::new(4)),
            gate: gate.clone(),
        }),
        net: Arc::new(TcpNet),
        clock: Arc::new(SystemClock),
        rng: EnvRng::seeded(seed),
    }
}

fn settings() -> RaftSettings {
    RaftSettings {
        tick: Duration::from_millis(20),
        election_ticks: 10,
        heartbeat_ticks: 2,
        quiesce_ticks: 20,
        // Off here (leadership stays where elections put it); on in the test of it.
        rebalance_ticks: 0,
        catch_up: Default::default(),
    }
}

struct TestNode {
    id: u64,
    /// Holds the node's syncs while closed.
    gate: Gate,
    store: Arc<Store>,
    replication: Replication,
    transport: Transport,
    partition: Arc<Partition>,
}

impl TestNode {
    async fn start(
        id: u64,
        dir: &Path,
        peers: &BTreeMap<u64, SocketAddr>,
        campaign: bool,
    ) -> TestNode {
        TestNode::start_with(id, dir, peers, campaign, &[]).await
    }

    /// With topic settings `overrides`; retention runs every 50 ms when there are any.
    async fn start_with(
        id: u64,
        dir: &Path,
        peers: &BTreeMap<u64, SocketAddr>,
        campaign: bool,
        overrides: &[(&str, &str)],
    ) -> TestNode {
        let node = TestNode::start_bare(id, dir, peers, overrides, settings()).await;
        node.join(peers, campaign).await;
        node
    }

    /// The node without its replica of the group (see [`TestNode::join`]).
    async fn start_bare(
        id: u64,
        dir: &Path,
        peers: &BTreeMap<u64, SocketAddr>,
        overrides: &[(&str, &str)],
        settings: RaftSettings,
    ) -> TestNode {
        let gate = Gate::new();
        let env = env(id, &gate);
        let config = Config {
            node_id: id as i32,
            io_deadline_ms: 1000,
            data_dir: dir.to_path_buf(),
            retention_check_interval_ms: if overrides.is_empty() { 0 } else { 50 },
            cluster_peers: peers
                .iter()
                .map(|(id, a)| format!("{id}@{a}"))
                .collect::<Vec<_>>()
                .join(","),
            ..Config::default()
        };
        let store = Store::open(env.clone(), &config, Arc::new(Metrics::default()))
            .await
            .expect("open store");
        let topic = match store.topic("t") {
            Some(t) => t,
            None => store
                .create_topic(
                    "t",
                    1,
                    overrides
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
                .await
                .expect("create topic"),
        };
        let partition = topic.partitions[0].clone();
        let listener = bind(&env, peers[&id]).await;
        let transport_settings = TransportSettings {
            io_timeout: Duration::from_millis(600),
            keepalive: Duration::from_millis(100),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            // Little queued for a peer that is away: it catches up through Raft, not from a
            // backlog of old messages.
            queue_messages_max: 16,
            holds_data: !store.created_here(),
            ..TransportSettings::default()
        };
        let (transport, inbox) =
            Transport::start(env.clone(), id, listener, peers.clone(), transport_settings);
        let memory = broker::memory::MemoryBudget::new(64 << 20, store.metrics().clone());
        let replication = Replication::start(
            env,
            id,
            store.clone(),
            transport.clone(),
            inbox,
            settings,
            memory,
        );
        TestNode {
            id,
            gate,
            store,
            replication,
            transport,
            partition,
        }
    }

    /// Start this node's replica of the group (every peer a voter); `campaign`: stand at once.
    async fn join(&self, peers: &BTreeMap<u64, SocketAddr>, campaign: bool) {
        self.join_as(GROUP, peers, campaign).await;
    }

    /// Start this node's replica of the partition as Raft group `group`.
    async fn join_as(&self, group: u64, peers: &BTreeMap<u64, SocketAddr>, campaign: bool) {
        self.join_group(group, peers.keys().copied().collect(), campaign)
            .await;
    }

    /// Start this node's replica of the partition as Raft group `group`, first made of
    /// `voters` (this node need not be one).
    async fn join_group(&self, group: u64, voters: Vec<u64>, campaign: bool) {
        self.replication
            .add_group(group, self.partition.clone(), voters, campaign, None)
            .await
            .expect("group added");
    }

    async fn stop(self) {
        self.transport.shutdown();
        let closed = self.store.closed();
        drop(self.replication);
        drop(self.partition);
        drop(self.store);
        tokio::time::timeout(Duration::from_secs(20), closed)
            .await
            .expect("the node's pipeline ends");
    }

    fn is_serving(&self) -> bool {
        self.replication
            .group(GROUP)
            .is_some_and(|g| g.status().serving)
    }
}

/// Three nodes, each with a directory of its own (kept as long as the first value lives), on
/// fresh addresses, node 1 standing for leader at once; `overrides` as for
/// [`TestNode::start_with`].
async fn start_three(
    overrides: &[(&str, &str)],
) -> (
    Vec<tempfile::TempDir>,
    BTreeMap<u64, SocketAddr>,
    Vec<TestNode>,
) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let peers = free_addresses().await;
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let dir = dirs[id as usize - 1].path();
        nodes.push(TestNode::start_with(id, dir, &peers, id == 1, overrides).await);
    }
    (dirs, peers, nodes)
}

/// Produce through `nodes` until retention has moved every one's log start past `offset`;
/// the offsets acknowledged.
async fn produce_until_log_starts_pass(nodes: &[&TestNode], offset: i64) -> Vec<i64> {
    let past = || {
        nodes
            .iter()
            .all(|n| n.partition.log_start_offset() > offset)
    };
    let mut acked = Vec::new();
    for _ in 0..200 {
        if past() {
            break;
        }
        acked.extend(produce(nodes, 5, 4).await);
    }
    assert!(
        past(),
        "retention never moved every log start past {offset}"
    );
    acked
}

/// One idempotent batch of `producer_id` (epoch 0) from `sequence`, proposed at acks=all on
/// `node`; its answer.
async fn send_idempotent(
    node: &TestNode,
    producer_id: i64,
    sequence: i32,
    records: i32,
) -> Result<broker::storage::Appended, ReplicaError> {
    let b = idempotent_batch(producer_id, 0, sequence, records);
    let rx = node
        .replication
        .propose(GROUP, vec![b], -1)
        .await?
        .expect("an answer");
    rx.await.map_err(|_| ReplicaError::Stopped)?
}

/// Bind a listener on `address`, retrying while the port is still held by a stopped node.
async fn bind(env: &Env, address: SocketAddr) -> Box<dyn io_backend::Listener> {
    for _ in 0..100 {
        if let Ok(l) = env.net.listen(address).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {address}");
}

/// Three free loopback addresses, on ports below the kernel's ephemeral range (32768 and up on
/// Linux): a node restarted on its address must find it free, and a port from that range may
/// meanwhile have become the local end of some connection (this process's or a concurrent
/// test's) or another test's `:0` listener.
async fn free_addresses() -> BTreeMap<u64, SocketAddr> {
    free_addresses_n(3).await
}

/// `n` free loopback addresses, as [`free_addresses`].
async fn free_addresses_n(n: usize) -> BTreeMap<u64, SocketAddr> {
    use std::hash::{BuildHasher, Hasher};
    let mut peers = BTreeMap::new();
    let mut attempt = 0u64;
    while peers.len() < n {
        attempt += 1;
        assert!(attempt < 10_000, "no free port below 32768");
        // A different sequence in every process and call: RandomState is seeded per process.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(attempt);
        let port = 20_000 + (h.finish() % 12_000) as u16;
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        if peers.values().any(|a| *a == address) {
            continue;
        }
        if TcpNet.listen(address).await.is_ok() {
            peers.insert(peers.len() as u64 + 1, address);
        }
    }
    peers
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Produce `n` batches of `records` records through whichever node leads, acks=all; the base
/// offsets acknowledged.
async fn produce(nodes: &[&TestNode], n: usize, records: i32) -> Vec<i64> {
    let mut offsets = Vec::new();
    let mut sent = 0;
    let mut attempts = 0;
    while sent < n {
        attempts += 1;
        assert!(attempts < 2000, "no leader took the writes");
        let Some(leader) = nodes.iter().find(|n| n.is_serving()) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let b = make_batch(records, 1_700_000_000_000, format!("v{sent}").as_bytes());
        match leader.replication.propose(GROUP, vec![b], -1).await {
            Ok(Some(rx)) => match tokio::time::timeout(Duration::from_secs(10), rx).await {
                Ok(Ok(Ok(appended))) => {
                    offsets.push(appended.base_offset);
                    sent += 1;
                }
                Ok(Ok(Err(ReplicaError::NotLeader { .. }))) | Ok(Err(_)) | Err(_) => {}
                Ok(Ok(Err(e))) => panic!("unexpected failure: {e}"),
            },
            Ok(None) => unreachable!("acks=all has an answer"),
            Err(ReplicaError::NotLeader { .. }) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    offsets
}

/// A replica's whole log, batch by batch (bytes), from its start to its durable end.
async fn log_of(node: &TestNode) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = node.partition.log_start_offset();
    loop {
        let d = node
            .partition
            .read_durable(node.store.io(), offset, 1 << 20)
            .await
            .expect("read");
        if d.records.is_empty() {
            return out;
        }
        for (at, h) in batch::scan(&d.records) {
            batch::validate(&d.records[at..at + h.size]).expect("valid batch");
            out.push(d.records.slice(at..at + h.size));
            offset = h.next_offset();
        }
    }
}

/// The end of a test: writes are still taken (five more), every replica agrees with what was
/// acknowledged, and the nodes stop.
async fn writes_go_on_and_logs_agree(nodes: Vec<TestNode>, mut acked: Vec<i64>) {
    let refs: Vec<&TestNode> = nodes.iter().collect();
    acked.extend(produce(&refs, 5, 1).await);
    logs_agree(&refs, &acked).await;
    for n in nodes {
        n.stop().await;
    }
}

/// Every replica holds the same batches up to the leader's high watermark, and every
/// acknowledged offset is a data batch there.
async fn logs_agree(nodes: &[&TestNode], acknowledged: &[i64]) {
    let hw = nodes
        .iter()
        .map(|n| n.partition.high_watermark())
        .max()
        .unwrap();
    let mut logs = Vec::new();
    for n in nodes {
        wait_for("the replica to catch up", || {
            n.partition.state().log_end_offset() >= hw
        })
        .await;
        logs.push(log_of(n).await);
    }
    let below = |log: &Vec<Bytes>| -> Vec<Bytes> {
        log.iter()
            .filter(|b| batch::parse_header(b).unwrap().base_offset < hw)
            .cloned()
            .collect()
    };
    let first = below(&logs[0]);
    for (n, log) in nodes.iter().zip(&logs).skip(1) {
        assert_eq!(below(log), first, "node {} disagrees below {hw}", n.id);
    }
    for &offset in acknowledged {
        let h = first
            .iter()
            .map(|b| batch::parse_header(b).unwrap())
            .find(|h| h.base_offset == offset)
            .unwrap_or_else(|| panic!("acknowledged offset {offset} is not a batch"));
        assert!(!h.is_control());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_are_on_every_replica_and_survive_the_leader() {
    let _turn = crate::common::turn::multi_node_turn();
    let (dirs, peers, mut nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_for("a leader", || refs.iter().any(|n| n.is_serving())).await;
    let mut acked = produce(&refs, 30, 3).await;
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "offsets grow: {acked:?}"
    );
    logs_agree(&refs, &acked).await;
    // The leader's node goes away; the others elect one of them and go on.
    let leader_at = nodes.iter().position(|n| n.is_serving()).unwrap();
    let old = nodes.remove(leader_at);
    let old_id = old.id;
    old.stop().await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    acked.extend(produce(&refs, 20, 2).await);
    logs_agree(&refs, &acked).await;
    // It comes back, catches up, and every log agrees.
    nodes.push(TestNode::start(old_id, dirs[old_id as usize - 1].path(), &peers, false).await);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    acked.extend(produce(&refs, 10, 1).await);
    logs_agree(&refs, &acked).await;
    // The consumer's view: the leader's high watermark covers every acknowledged write.
    let leader = refs.iter().find(|n| n.is_serving()).unwrap();
    assert!(leader.partition.high_watermark() > *acked.last().unwrap());
    for n in nodes {
        n.stop().await;
    }
}

/// A new partition's preferred leader stands at once, and its vote requests usually reach the
/// other replicas before the controller's record that makes them replicas is applied there:
/// they are held until it is, so the partition has a leader in milliseconds rather than after
/// an election timeout (here 10 s and more; the window below is 6 s, for a loaded host: under
/// the whole of nextest on two cores it once took 2.1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vote_requests_that_arrive_before_the_group_starts_are_answered_when_it_does() {
    let _turn = crate::common::turn::multi_node_turn();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let peers = free_addresses().await;
    let slow_elections = RaftSettings {
        election_ticks: 500,
        ..settings()
    };
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        nodes.push(
            TestNode::start_bare(
                id,
                dirs[id as usize - 1].path(),
                &peers,
                &[],
                slow_elections.clone(),
            )
            .await,
        );
    }
    wait_for("the nodes connected", || {
        nodes
            .iter()
            .all(|n| peers.keys().all(|&p| p == n.id || n.transport.connected(p)))
    })
    .await;
    nodes[0].join(&peers, true).await;
    // Its (pre-)vote requests reach nodes 2 and 3, which have no such group yet.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!nodes[0].is_serving(), "no majority yet");
    let started = std::time::Instant::now();
    nodes[1].join(&peers, false).await;
    nodes[2].join(&peers, false).await;
    // Its next election comes 10 s or more after the first, which was before `started`.
    while !nodes[0].is_serving() && started.elapsed() < Duration::from_secs(9) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        nodes[0].is_serving(),
        "node 1 leads within 9 s of the others starting the group (its next election comes \
         10 s or more after the first): {:?}",
        started.elapsed()
    );
    for n in nodes {
        n.stop().await;
    }
}

/// A new partition's first leader (the first of its replicas, named so by the controller's
/// record) leads term 1 at once, without an election — every other replica counts its vote
/// for term 1 as given — and sends nothing before its first write is durable (were it to crash
/// before, no replica would hold an entry of a term 1 it could lead again differently).
/// Elections are slow here (10 s and more), so a leader within them took none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_groups_first_leader_leads_term_one_without_an_election() {
    let _turn = crate::common::turn::multi_node_turn();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let peers = free_addresses().await;
    let slow_elections = RaftSettings {
        election_ticks: 500,
        ..settings()
    };
    let start = |id: u64| {
        TestNode::start_bare(
            id,
            dirs[id as usize - 1].path(),
            &peers,
            &[],
            slow_elections.clone(),
        )
    };
    // Each data directory made at a first start: at the next it is not new (a new one might
    // be a replaced disk that lost a write of the group, and then its replica campaigns).
    for id in 1..=3u64 {
        start(id).await.stop().await;
    }
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        nodes.push(start(id).await);
    }
    wait_for("the nodes connected", || {
        nodes
            .iter()
            .all(|n| peers.keys().all(|&p| p == n.id || n.transport.connected(p)))
    })
    .await;
    // Node 1's first write takes a while: each of its syncs waits 250 ms (a round of up to
    // three stays within the I/O deadline of 1 s).
    *nodes[0].gate.delay.lock().unwrap() = Duration::from_millis(250);
    nodes[0].join(&peers, true).await;
    nodes[1].join(&peers, false).await;
    nodes[2].join(&peers, false).await;
    let status = |n: &TestNode| n.replication.group(GROUP).map(|g| g.status());
    wait_for("node 1 leads", || {
        status(&nodes[0]).is_some_and(|s| s.is_leader)
    })
    .await;
    assert_eq!(status(&nodes[0]).unwrap().term, 1, "term 1, no election");
    tokio::time::sleep(Duration::from_millis(100)).await;
    for n in &nodes[1..] {
        let s = status(n).expect("the group runs");
        assert_eq!(
            (s.leader, n.partition.state().log_end_offset()),
            (None, 0),
            "node {} heard nothing of node 1's leadership before its first write",
            n.id
        );
    }
    *nodes[0].gate.delay.lock().unwrap() = Duration::ZERO;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_for("node 1 serves", || nodes[0].is_serving()).await;
    let acked = produce(&refs, 10, 2).await;
    logs_agree(&refs, &acked).await;
    for n in &nodes {
        let s = status(n).unwrap();
        assert_eq!((s.leader, s.term), (Some(1), 1), "node {}", n.id);
        let m = n.store.metrics();
        assert_eq!(
            m.raft_elections.get(),
            0,
            "node {} stood in no election",
            n.id
        );
        let first_terms = if n.id == 1 { 1 } else { 0 };
        assert_eq!(m.raft_first_terms_led.get(), first_terms, "node {}", n.id);
    }
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_group_goes_quiet_and_still_fails_over() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, mut nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let acked = produce(&refs, 5, 1).await;
    wait_quiet(&refs).await;
    let leader_at = nodes.iter().position(|n| n.is_serving()).unwrap();
    let old = nodes.remove(leader_at);
    old.stop().await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_for("a new leader after the quiet leader went", || {
        refs.iter().any(|n| n.is_serving())
    })
    .await;
    let more = produce(&refs, 3, 1).await;
    logs_agree(&refs, &[acked, more].concat()).await;
    for n in nodes {
        n.stop().await;
    }
}

/// Wait until no Raft messages flow for a while (only the transport's keepalives).
async fn wait_quiet(nodes: &[&TestNode]) {
    let sent = || -> u64 {
        nodes
            .iter()
            .map(|n| {
                n.transport
                    .stats()
                    .messages_sent
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    };
    for _ in 0..100 {
        let before = sent();
        tokio::time::sleep(Duration::from_millis(300)).await;
        if sent() == before {
            return;
        }
    }
    panic!("the idle group kept sending messages");
}

/// A quiet leader that loses its links to both followers steps down within an election timeout
/// or two, as a ticking one does by its quorum check: found in simulation, a cut-off leader of
/// the quiet cluster metadata stayed leader until a proposal woke it, 14 s into the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_leader_cut_off_from_its_followers_steps_down() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, mut nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    produce(&refs, 5, 1).await;
    wait_quiet(&refs).await;
    let leader = nodes.remove(nodes.iter().position(|n| n.is_serving()).unwrap());
    for n in nodes {
        n.stop().await;
    }
    wait_for("the quiet leader, alone, to step down", || {
        leader
            .replication
            .group(GROUP)
            .is_some_and(|g| !g.status().is_leader)
    })
    .await;
    leader.stop().await;
}

/// A burst far larger than what a leader keeps of recent entries for any follower (1 MiB),
/// proposed faster than the followers acknowledge (raft-rs keeps four appends in flight per
/// follower), as one librdkafka producer with its requests in flight sends: the in-sync
/// followers are sent all of it from memory — nothing is read back from the log through the
/// throttled catch-up reads (that read 167 MB for 102 MB produced and held a three-node
/// cluster to 21 MB/s). Data: 40 batches of 512 KiB (20 MiB) per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sync_followers_are_sent_a_burst_from_memory_not_from_the_log() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, nodes) = start_three(&[]).await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    let end = produce(&all, 1, 1).await[0] + 1;
    // Every follower in sync first (one that has not connected yet is rightly served from
    // the log when it does).
    wait_for("every replica holding the first write", || {
        all.iter()
            .all(|n| n.partition.state().log_end_offset() >= end)
    })
    .await;
    let leader = nodes.iter().find(|n| n.is_serving()).expect("a leader");
    let value = vec![b'x'; 512 << 10];
    let mut waiting = Vec::new();
    for i in 0..40 {
        let b = make_batch(1, 1_700_000_000_000 + i, &value);
        match leader.replication.propose(GROUP, vec![b], -1).await {
            Ok(Some(rx)) => waiting.push(rx),
            other => panic!("the leader refused batch {i}: {:?}", other.map(|_| ())),
        }
    }
    for (i, rx) in waiting.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(Ok(_))) => {}
            other => panic!(
                "batch {i} not acknowledged: {:?}",
                other.map(|r| r.map(|x| x.map(|_| ())))
            ),
        }
    }
    let read_back = leader.store.metrics().catch_up_bytes.get();
    assert_eq!(
        read_back, 0,
        "the leader read {read_back} bytes back from its log for in-sync followers"
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_back_after_a_while_catches_up_with_a_quiet_leader() {
    let _turn = crate::common::turn::multi_node_turn();
    let (dirs, peers, mut nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut acked = produce(&refs, 3, 1).await;
    // A follower goes; the others go on, then go quiet.
    let follower_at = nodes.iter().position(|n| !n.is_serving()).unwrap();
    let gone = nodes.remove(follower_at);
    let gone_id = gone.id;
    gone.stop().await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    acked.extend(produce(&refs, 5, 2).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // It comes back: its group starts a little after its transport is up (as a broker's do,
    // once it has read the cluster metadata).
    nodes.push(TestNode::start(gone_id, dirs[gone_id as usize - 1].path(), &peers, false).await);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let back = refs.iter().find(|n| n.id == gone_id).unwrap();
    let target = refs
        .iter()
        .map(|n| n.partition.high_watermark())
        .max()
        .unwrap();
    wait_for("the returning follower to catch up", || {
        back.partition.state().log_end_offset() >= target
    })
    .await;
    logs_agree(&refs, &acked).await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leaders_log_start_starts_afresh_from_its_snapshot() {
    let _turn = crate::common::turn::multi_node_turn();
    // Small segments, and retention that keeps about two of them.
    let small = [("segment.bytes", "1024"), ("retention.bytes", "2048")];
    let (dirs, peers, mut nodes) = start_three(&small).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut acked = produce(&refs, 3, 1).await;
    // A follower goes; the others write on until their retention has deleted what it lacks.
    let follower_at = nodes.iter().position(|n| !n.is_serving()).unwrap();
    let gone = nodes.remove(follower_at);
    let (gone_id, gone_log) = (gone.id, gone.partition.clone());
    gone.stop().await;
    // Its end once stopped (writes in flight may have landed while it stopped).
    let gone_end = gone_log.state().log_end_offset();
    drop(gone_log);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    acked.extend(produce_until_log_starts_pass(&refs, gone_end).await);
    let start = |n: &TestNode| n.partition.log_start_offset();
    // Messages the leader sent the follower while it was away wait in the transport's queue
    // (bounded) and arrive when it is back; an append among them may hold entries retention
    // has deleted since, and bring the follower past the gap without a snapshot. Appends made
    // after the leader's log start passed the follower's end can carry nothing older than
    // that start: go on until retention has passed everything the leaders held then.
    let bridged = refs
        .iter()
        .map(|n| n.partition.state().log_end_offset())
        .max()
        .unwrap();
    acked.extend(produce_until_log_starts_pass(&refs, bridged).await);
    // It comes back behind every log start: it must take a snapshot, not stall.
    let dir = dirs[gone_id as usize - 1].path();
    nodes.push(TestNode::start_with(gone_id, dir, &peers, false, &small).await);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let back = refs.iter().find(|n| n.id == gone_id).unwrap();
    acked.extend(produce(&refs, 3, 1).await);
    let target = refs
        .iter()
        .map(|n| n.partition.high_watermark())
        .max()
        .unwrap();
    wait_for("the returning follower to catch up", || {
        back.partition.state().log_end_offset() >= target
    })
    .await;
    assert!(
        start(back) > gone_end,
        "its log starts at the leader's snapshot, not at its old end {gone_end}"
    );
    // Where the replicas' logs overlap below the high watermark, they hold the same batches,
    // and every acknowledged write still held is there.
    let mut logs = Vec::new();
    for n in &refs {
        logs.push(log_of(n).await);
    }
    let from = refs.iter().map(|n| start(n)).max().unwrap();
    let window = |log: &Vec<Bytes>| -> Vec<Bytes> {
        log.iter()
            .filter(|b| (from..target).contains(&batch::parse_header(b).unwrap().base_offset))
            .cloned()
            .collect()
    };
    let first = window(&logs[0]);
    assert!(!first.is_empty());
    for (n, log) in refs.iter().zip(&logs).skip(1) {
        assert_eq!(
            window(log),
            first,
            "node {} disagrees in {from}..{target}",
            n.id
        );
    }
    for &offset in acked.iter().filter(|o| **o >= from) {
        assert!(
            first
                .iter()
                .any(|b| batch::parse_header(b).unwrap().base_offset == offset),
            "acknowledged offset {offset} is missing"
        );
    }
    // Every node restarts with a log that begins past its first entries (retention took them,
    // or a snapshot did) and a hard state that may say less was committed: each comes back and
    // the partition takes writes.
    for _ in 0..3 {
        let n = nodes.remove(0);
        let id = n.id;
        n.stop().await;
        let dir = dirs[id as usize - 1].path();
        nodes.push(TestNode::start_with(id, dir, &peers, false, &small).await);
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let more = produce(&refs, 3, 1).await;
    let hw = more.last().unwrap() + 1;
    for n in &refs {
        wait_for("every replica to have the last write", || {
            n.partition.state().log_end_offset() >= hw
        })
        .await;
    }
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_is_answered_with_its_offset_also_by_a_new_leader() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, mut nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_for("a leader", || refs.iter().any(|n| n.is_serving())).await;
    let leader = refs.iter().find(|n| n.is_serving()).unwrap();
    let first = send_idempotent(leader, 4242, 0, 2)
        .await
        .expect("written")
        .base_offset;
    let second = send_idempotent(leader, 4242, 2, 2)
        .await
        .expect("written")
        .base_offset;
    // A retry of the first: its offset, nothing written.
    assert_eq!(
        send_idempotent(leader, 4242, 0, 2)
            .await
            .expect("answered")
            .base_offset,
        first
    );
    // A gap is refused.
    assert!(matches!(
        send_idempotent(leader, 4242, 9, 2).await,
        Err(ReplicaError::Storage(
            broker::storage::AppendError::Producer(_)
        ))
    ));
    let end = leader.partition.state().log_end_offset();
    // Every replica holds the writes before the leader goes: a replica of a new directory that
    // has received nothing yet (it started its group after the leader's first appends) votes
    // in no election until it has caught up — it cannot tell itself from a replaced disk — so
    // without it the two left could elect nobody (seen: 5 runs of 8, this test's race).
    wait_for("every replica holding the writes", || {
        refs.iter()
            .all(|n| n.partition.state().log_end_offset() >= end)
    })
    .await;
    // The leader goes; the new one knows the producer: the retry of the second is a
    // duplicate there too, and the producer goes on where it was.
    let leader_at = nodes.iter().position(|n| n.is_serving()).unwrap();
    let old = nodes.remove(leader_at);
    old.stop().await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_for("a new leader", || refs.iter().any(|n| n.is_serving())).await;
    let leader = refs.iter().find(|n| n.is_serving()).unwrap();
    assert_eq!(
        send_idempotent(leader, 4242, 2, 2)
            .await
            .expect("answered")
            .base_offset,
        second
    );
    let third = send_idempotent(leader, 4242, 4, 2)
        .await
        .expect("written")
        .base_offset;
    assert!(third >= end);
    let data_batches: Vec<_> = log_of(leader)
        .await
        .into_iter()
        .map(|b| batch::parse_header(&b).unwrap())
        .filter(|h| !h.is_control())
        .map(|h| (h.base_offset, h.base_sequence))
        .collect();
    assert_eq!(data_batches, vec![(first, 0), (second, 2), (third, 4)]);
    for n in nodes {
        n.stop().await;
    }
}

/// A leader cut off from the others (or just back from a pause) holds a producer state the
/// cluster may have moved past: a sequence it does not expect is refused only once a read
/// index confirms it still leads; cut off, it loses the leadership first and answers
/// NOT_LEADER_OR_FOLLOWER, so the producer goes to the real leader instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_refuses_no_sequence_it_cannot_confirm() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_for("a leader", || refs.iter().any(|n| n.is_serving())).await;
    let leader = *refs.iter().find(|n| n.is_serving()).unwrap();
    send_idempotent(leader, 4343, 0, 1).await.expect("written");
    // Connected, the leader confirms itself and refuses a gap.
    assert!(matches!(
        send_idempotent(leader, 4343, 5, 1).await,
        Err(ReplicaError::Storage(
            broker::storage::AppendError::Producer(_)
        ))
    ));
    // Cut off, it still believes it leads; the same gap is not refused but sent elsewhere.
    leader.transport.shutdown();
    assert!(leader.is_serving(), "still leading when the batch arrives");
    let answer = send_idempotent(leader, 4343, 5, 1).await;
    assert!(
        matches!(answer, Err(ReplicaError::NotLeader { .. })),
        "a cut-off leader answered {answer:?}"
    );
    for n in nodes {
        n.stop().await;
    }
}

/// A leader confirms through a quorum that it still leads before an answer only a current
/// leader may give (a fetch past its log's end is out of range): a follower does not, and a
/// leader cut off — which still believes it leads, as one back from a pause does — does not
/// either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_leader_a_quorum_still_follows_confirms_its_leadership() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    produce(&refs, 3, 1).await;
    let leader = *refs.iter().find(|n| n.is_serving()).unwrap();
    assert!(leader.replication.confirm_leading(GROUP).await);
    let follower = *refs.iter().find(|n| n.id != leader.id).unwrap();
    assert!(!follower.replication.confirm_leading(GROUP).await);
    leader.transport.shutdown();
    assert!(leader.is_serving(), "still leading when asked");
    let confirmed = tokio::time::timeout(
        Duration::from_secs(10),
        leader.replication.confirm_leading(GROUP),
    )
    .await
    .expect("answered once it steps down");
    assert!(!confirmed, "a cut-off leader confirmed itself");
    for n in nodes {
        n.stop().await;
    }
}

/// A replica that waits for the group's commit as its leader has it holds, once answered,
/// everything committed before it asked — on the leader and on a follower (through the
/// leader); a replica that cannot reach a leader is not answered (how a restarted broker knows
/// its metadata has caught up: `Controller::caught_up`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_commit_is_answered_once_a_replica_has_applied_that_far() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    produce(&refs, 5, 2).await;
    let leader = *refs.iter().find(|n| n.is_serving()).unwrap();
    let committed = leader.partition.high_watermark();
    for n in &refs {
        // `None` while this replica knows no leader yet (asked again, as the controller does).
        let mut hw = None;
        for _ in 0..100 {
            hw = tokio::time::timeout(Duration::from_secs(1), n.replication.leader_commit(GROUP))
                .await
                .ok()
                .and_then(|r| r.expect("the node runs"));
            if hw.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let hw = hw.expect("answered within 10 s");
        assert!(hw >= committed, "node {}: {hw} < {committed}", n.id);
        assert!(n.partition.high_watermark() >= hw, "node {}", n.id);
    }
    // Cut off from the others, a follower gets no answer from a leader.
    let follower = *refs.iter().find(|n| n.id != leader.id).unwrap();
    follower.transport.shutdown();
    let cut_off = tokio::time::timeout(
        Duration::from_secs(3),
        follower.replication.leader_commit(GROUP),
    )
    .await;
    assert!(
        !matches!(cut_off, Ok(Ok(Some(_)))),
        "a cut-off follower was told a commit: {cut_off:?}"
    );
    for n in nodes {
        n.stop().await;
    }
}

/// The incident this project exists for, on three nodes: the leader's fsync stalls. Its
/// directory fails at the I/O deadline, it hands its leadership over and goes silent; writes go
/// on through the others; when the stall ends it heals, rejoins as a follower and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_disk_stalls_steps_down_and_rejoins_after_the_stall() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut acked = produce(&refs, 10, 2).await;
    let stalled = refs.iter().find(|n| n.is_serving()).unwrap();
    stalled.gate.close();
    let started = std::time::Instant::now();
    // Its next write stalls; the deadline fails its directory; leadership moves.
    let _ = stalled
        .replication
        .propose(GROUP, vec![make_batch(1, 1_700_000_000_000, b"stuck")], -1)
        .await;
    wait_for("another node to lead", || {
        refs.iter().any(|n| n.id != stalled.id && n.is_serving())
    })
    .await;
    let moved_after = started.elapsed();
    assert!(
        stalled.store.io().health.check().is_err(),
        "the stalled node's directory is failed"
    );
    assert!(!stalled.is_serving());
    let others: Vec<&TestNode> = refs
        .iter()
        .copied()
        .filter(|n| n.id != stalled.id)
        .collect();
    acked.extend(produce(&others, 10, 3).await);
    // The stall ends: the node heals and catches up as a follower.
    stalled.gate.open();
    wait_for("the stalled node to heal", || {
        stalled.store.io().health.check().is_ok()
    })
    .await;
    let target = others
        .iter()
        .map(|n| n.partition.high_watermark())
        .max()
        .unwrap();
    wait_for("the healed node to catch up", || {
        stalled.partition.state().log_end_offset() >= target
    })
    .await;
    assert!(!stalled.is_serving(), "it rejoined as a follower");
    logs_agree(&refs, &acked).await;
    eprintln!("leadership moved {moved_after:?} after the stall began (I/O deadline 1 s)");
    for n in nodes {
        n.stop().await;
    }
}

/// A leader cut off from both followers steps down (check-quorum) while proposals stream in.
/// Each proposal's offset was counted by a pass over the entries raft-rs held that were not
/// durable yet; under the stream that backlog grew, each pass with it, the loop's turns took
/// seconds, and the leader led on for 12-16 s instead of a few hundred milliseconds. (The
/// loop's ticks under a stream of work are checked in simulation, where arrivals can be
/// spaced finer than a timer's resolution: `raft_loop_in_simulation`.) Volume: eight
/// producers sending one-record batches at acks=0 as fast as the leader takes them (tens of
/// thousands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_busy_with_a_stream_of_proposals_still_steps_down_when_cut_off() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, mut nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    produce(&refs, 2, 1).await;
    let at = nodes.iter().position(|n| n.is_serving()).unwrap();
    let leader = nodes.remove(at);
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..8)
        .map(|_| {
            let (replication, stop) = (leader.replication.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let b = make_batch(1, 1_700_000_000_000, b"stream");
                    let _ = replication.propose(GROUP, vec![b], 0).await;
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in nodes {
        n.stop().await;
    }
    let cut = std::time::Instant::now();
    // An election timeout is 200-400 ms here (2 s at most, stretched by a slow disk); the bound
    // leaves room for a loaded host.
    while leader.is_serving() && cut.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let led_for = cut.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for p in producers {
        sent += p.await.unwrap();
    }
    assert!(
        !leader.is_serving(),
        "cut off from both followers while {sent} proposals streamed in, the leader still led after {led_for:?}"
    );
    eprintln!("stepped down {led_for:?} after its followers went ({sent} proposals streamed in)");
    leader.stop().await;
}

/// The hard state (term, vote, commit) is written when the term or the vote changes, not at
/// every round that moves the commit: raft-rs asks for it with every Ready that has entries.
/// The hard states of all the node's partitions are one file of its data directory
/// (`raft-states`), which steady appends leave as it is — once the partition is settled: a
/// new partition's first entries are kept there too, up to a bound, and then it settles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_appends_leave_the_hard_state_file_alone() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let unsettled = |n: &TestNode| n.partition.state().replica.as_ref().unwrap().unsettled;
    let mut acked = produce(&refs, 3, 1).await;
    assert!(
        refs.iter().any(|n| unsettled(n).is_some_and(|b| b > 0)),
        "a new partition's first entries were not kept as pieces"
    );
    // ~70 bytes an entry: past the bound of pieces on every replica.
    acked.extend(produce(&refs, 40, 1).await);
    wait_for("every replica to settle", || {
        refs.iter().all(|n| unsettled(n).is_none())
    })
    .await;
    let caught_up = |refs: &[&TestNode]| {
        let end = refs
            .iter()
            .map(|n| n.partition.high_watermark())
            .max()
            .unwrap();
        refs.iter()
            .all(|n| n.partition.state().log_end_offset() >= end)
    };
    wait_for("every replica to have the writes", || caught_up(&refs)).await;
    let read_all = || {
        refs.iter()
            .map(|n| {
                let data_dir = n.partition.dir.parent().expect("in a data directory");
                std::fs::read(data_dir.join("raft-states")).expect("the hard states")
            })
            .collect::<Vec<_>>()
    };
    let before = read_all();
    acked.extend(produce(&refs, 30, 1).await);
    wait_for("every replica to have the writes", || caught_up(&refs)).await;
    assert_eq!(
        read_all(),
        before,
        "30 acknowledged rounds in one term rewrote a hard state"
    );
    logs_agree(&refs, &acked).await;
    for n in nodes {
        n.stop().await;
    }
}

/// While a leader has two rounds of proposals uncommitted, later proposals wait at its gate
/// (to go to Raft together, as one round) instead of entering its log one by one; a leader
/// cut off from the others never commits, loses the leadership, and refuses what waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_behind_two_uncommitted_rounds_wait_and_a_deposed_leader_refuses_them() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    produce(&refs, 2, 1).await;
    let leader = *refs.iter().find(|n| n.is_serving()).unwrap();
    let end_before = leader.partition.state().log_end_offset();
    leader.transport.shutdown();
    let mut answers = Vec::new();
    for i in 0..5 {
        let replication = leader.replication.clone();
        answers.push(tokio::spawn(async move {
            let b = make_batch(1, 1_700_000_000_000, format!("held{i}").as_bytes());
            match replication.propose(GROUP, vec![b], -1).await {
                Ok(Some(rx)) => tokio::time::timeout(Duration::from_secs(10), rx)
                    .await
                    .expect("answered")
                    .unwrap_or(Err(ReplicaError::Stopped)),
                Ok(None) => unreachable!("acks=all has an answer"),
                Err(e) => Err(e),
            }
        }));
        // Each in a turn of its own: a round each, were none held.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for a in answers {
        let answer = a.await.unwrap();
        assert!(
            matches!(answer, Err(ReplicaError::NotLeader { .. })),
            "a cut-off leader answered {answer:?}"
        );
    }
    assert!(!leader.is_serving());
    let end_after = leader.partition.state().log_end_offset();
    assert_eq!(
        end_after - end_before,
        2,
        "only the first two rounds entered the log; the three held proposals did not"
    );
    for n in nodes {
        n.stop().await;
    }
}

/// Kafka's preferred leader election: the replica first in the group's list (here node 1)
/// leads; it goes away and another takes over; back and caught up, it gets the leadership
/// back after `rebalance_ticks` (rather than leaving it on the others for good), and nothing
/// acknowledged on the way is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_preferred_replica_gets_its_leadership_back() {
    let _turn = crate::common::turn::multi_node_turn();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let peers = free_addresses().await;
    let rebalancing = RaftSettings {
        rebalance_ticks: 10,
        ..settings()
    };
    let start = |id: u64| {
        let (dir, peers, rebalancing) = (dirs[id as usize - 1].path(), &peers, rebalancing.clone());
        async move {
            let node = TestNode::start_bare(id, dir, peers, &[], rebalancing).await;
            node.join(peers, id == 1).await;
            node
        }
    };
    let mut nodes = vec![start(1).await, start(2).await, start(3).await];
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut acked = produce(&refs, 5, 1).await;
    wait_for("node 1 to lead", || nodes[0].is_serving()).await;
    // Every replica holds the writes before node 1 goes (a replica that has received nothing
    // withholds its vote: see an_idempotent_retry_is_answered_with_its_offset_also_by_a_new_leader).
    let end = nodes[0].partition.state().log_end_offset();
    wait_for("every replica holding the writes", || {
        refs.iter()
            .all(|n| n.partition.state().log_end_offset() >= end)
    })
    .await;
    nodes.remove(0).stop().await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    acked.extend(produce(&refs, 5, 1).await);
    assert!(!nodes.iter().any(|n| n.id == 1));
    nodes.insert(0, start(1).await);
    wait_for("node 1, back and caught up, to lead again", || {
        nodes[0].is_serving()
    })
    .await;
    writes_go_on_and_logs_agree(nodes, acked).await;
}

/// The cluster metadata's followers learn a commit at once, not with the leader's next
/// heartbeat: every broker acts on the records it applies (a new partition's replicas start
/// there, its preferred leader campaigns), and waiting for a heartbeat (2 ticks) made topic
/// creation take 200 ms instead of 50. A partition's followers may wait (their high watermark
/// serves no reader). The heartbeat here is 2 s apart; the followers must have applied well
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_followers_apply_a_commit_without_waiting_for_a_heartbeat() {
    let _turn = crate::common::turn::multi_node_turn();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let peers = free_addresses().await;
    // A heartbeat every 10 s; a follower that waited for one would take that long. The bound
    // below (3 s) leaves room for a loaded host without confusing the two.
    let slow_heartbeat = RaftSettings {
        heartbeat_ticks: 500,
        election_ticks: 1000,
        quiesce_ticks: 2000,
        ..settings()
    };
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let dir = dirs[id as usize - 1].path();
        let node = TestNode::start_bare(id, dir, &peers, &[], slow_heartbeat.clone()).await;
        node.join_as(broker::replication::wire::CONTROLLER_GROUP, &peers, id == 1)
            .await;
        nodes.push(node);
    }
    let leader = &nodes[0];
    wait_for("node 1 to lead", || {
        leader
            .replication
            .group(broker::replication::wire::CONTROLLER_GROUP)
            .is_some_and(|g| g.status().serving)
    })
    .await;
    for i in 0..5 {
        let b = make_batch(1, 1_700_000_000_000, format!("m{i}").as_bytes());
        let rx = leader
            .replication
            .propose(broker::replication::wire::CONTROLLER_GROUP, vec![b], -1)
            .await
            .expect("proposed")
            .expect("acks=all is answered");
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("committed in time")
            .expect("answered")
            .expect("committed");
        let hw = leader.partition.high_watermark();
        let asked = std::time::Instant::now();
        for n in &nodes[1..] {
            while n.partition.high_watermark() < hw {
                assert!(
                    asked.elapsed() < Duration::from_secs(3),
                    "node {} applied to {} of {hw} after {:?}: it waited for a heartbeat",
                    n.id,
                    n.partition.high_watermark(),
                    asked.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    for n in nodes {
        n.stop().await;
    }
}

/// `min.insync.replicas` above a majority is honoured: with 3 of 3, an `acks=all` write is
/// answered only once every replica has it durably (a follower whose syncs are held keeps it
/// waiting although a majority committed it), is answered NOT_ENOUGH_REPLICAS_AFTER_APPEND
/// when that follower drops out while it waits, and is refused before it is written
/// (NOT_ENOUGH_REPLICAS) while only two replicas are in sync; 2 of 3 still goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_insync_replicas_above_a_majority_waits_for_every_copy_it_asks_for() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, mut nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    produce(&refs, 2, 1).await;
    let leader_at = nodes.iter().position(|n| n.is_serving()).unwrap();
    // In sync: connected to the leader (a link may still be coming up after the start).
    wait_for("the leader's links to both followers", || {
        nodes
            .iter()
            .all(|n| n.id == nodes[leader_at].id || nodes[leader_at].transport.connected(n.id))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let propose = |node: &TestNode, min_insync: usize, value: &str| {
        let replication = node.replication.clone();
        let b = make_batch(1, 1_700_000_000_000, value.as_bytes());
        async move {
            match replication
                .propose_min_insync(GROUP, vec![b], min_insync)
                .await
            {
                Ok(Some(rx)) => Ok(rx),
                Ok(None) => unreachable!("acks=all has an answer"),
                Err(e) => Err(e),
            }
        }
    };
    // All three in sync: answered, and on every replica's disk by then.
    let rx = propose(&nodes[leader_at], 3, "all").await.expect("taken");
    let appended = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("answered")
        .expect("sent")
        .expect("acknowledged");
    for n in &nodes {
        assert!(
            n.partition.state().log_end_offset() > appended.base_offset,
            "node {} lacks the acknowledged write",
            n.id
        );
    }
    // A follower that cannot sync: a majority commits, and the answer still waits for it.
    let follower_at = (leader_at + 1) % 3;
    nodes[follower_at].gate.close();
    let rx = propose(&nodes[leader_at], 3, "waits").await.expect("taken");
    let hw_before = nodes[leader_at].partition.high_watermark();
    wait_for("the write to commit on a majority", || {
        nodes[leader_at].partition.high_watermark() > hw_before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rx = Box::pin(rx);
    assert!(
        futures::poll!(&mut rx).is_pending(),
        "answered before the third replica had the write"
    );
    // That follower drops out: the write is answered as written but short of its replicas.
    nodes[follower_at].transport.shutdown();
    let answer = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("answered once the follower is gone")
        .expect("sent");
    assert!(
        matches!(
            answer,
            Err(ReplicaError::NotEnoughReplicasAfterAppend {
                in_sync: 2,
                required: 3
            })
        ),
        "answered {answer:?}"
    );
    let gone = nodes.remove(follower_at);
    let gone_id = gone.id;
    gone.gate.open();
    gone.stop().await;
    // Two in sync: refused before anything is written; 2 of 3 goes on.
    let leader = nodes.iter().find(|n| n.is_serving()).expect("still leads");
    let end = leader.partition.state().log_end_offset();
    let refused = propose(leader, 3, "refused").await;
    assert!(
        matches!(
            refused,
            Err(ReplicaError::NotEnoughReplicas {
                in_sync: 2,
                required: 3
            })
        ),
        "node {gone_id} is gone, yet: {:?}",
        refused.map(|_| ())
    );
    assert_eq!(
        leader.partition.state().log_end_offset(),
        end,
        "nothing written"
    );
    let rx = propose(leader, 2, "two").await.expect("taken");
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("answered")
        .expect("sent")
        .expect("acknowledged by two replicas");
    for n in nodes {
        n.stop().await;
    }
}

/// A replica whose data directory is lost (a replaced disk) comes back empty: it must neither
/// crash (raft-rs panics on a leader's commit past its log) nor vote before it has caught up —
/// having forgotten what it acknowledged, its vote could make a leader of a replica without
/// entries it had helped commit. Here entries are committed by the leader and node A alone
/// (node B's disk stalls); A's directory is emptied and it restarts; the leader goes away and
/// B, back, stands for election with A: no leader may come of it. The old leader returns,
/// leads, A catches up, and every acknowledged write is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_data_directory_was_emptied_votes_only_once_caught_up() {
    let _turn = crate::common::turn::multi_node_turn();
    let (dirs, peers, mut nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut acked = produce(&refs, 5, 2).await;
    let leader_id = refs.iter().find(|n| n.is_serving()).unwrap().id;
    let (a_id, b_id) = {
        let mut others = refs.iter().map(|n| n.id).filter(|&id| id != leader_id);
        (others.next().unwrap(), others.next().unwrap())
    };
    let at = |nodes: &[TestNode], id: u64| nodes.iter().position(|n| n.id == id).unwrap();
    // B's disk stalls: what follows is committed by the leader and A alone.
    nodes[at(&nodes, b_id)].gate.close();
    let ab: Vec<&TestNode> = nodes.iter().filter(|n| n.id != b_id).collect();
    acked.extend(produce(&ab, 10, 3).await);
    // A loses its data directory and comes back empty.
    let a = nodes.remove(at(&nodes, a_id));
    a.stop().await;
    let emptied = tempfile::tempdir().unwrap();
    nodes.push(TestNode::start(a_id, emptied.path(), &peers, false).await);
    let leader = &nodes[at(&nodes, leader_id)];
    let end = leader.partition.state().log_end_offset();
    let a = &nodes[at(&nodes, a_id)];
    wait_for("A to follow the leader again", || {
        a.partition.state().log_end_offset() >= end
    })
    .await;
    // ...but here it is not given the time: a second A, emptied again, with the leader gone
    // and B back from its stall.
    let a = nodes.remove(at(&nodes, a_id));
    a.stop().await;
    let emptied_again = tempfile::tempdir().unwrap();
    let leader = nodes.remove(at(&nodes, leader_id));
    leader.stop().await;
    nodes.push(TestNode::start(a_id, emptied_again.path(), &peers, false).await);
    let b = &nodes[at(&nodes, b_id)];
    b.gate.open();
    wait_for("B to heal", || b.store.io().health.check().is_ok()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in &nodes {
        assert!(
            !n.is_serving(),
            "node {} leads with B's short log and an emptied A's vote: acknowledged writes are lost",
            n.id
        );
    }
    // The old leader returns: it leads (B votes for its longer log), A catches up.
    nodes.push(
        TestNode::start(
            leader_id,
            dirs[leader_id as usize - 1].path(),
            &peers,
            false,
        )
        .await,
    );
    writes_go_on_and_logs_agree(nodes, acked).await;
}

/// DeleteRecords in a cluster: the leader's log-start mark moves every replica's log start —
/// the follower up, and one that was away when it was written once it is back — and it stays
/// moved across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_start_moves_on_every_replica_also_one_that_was_away() {
    let _turn = crate::common::turn::multi_node_turn();
    let (dirs, peers, mut nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut acked = produce(&refs, 20, 2).await;
    let leader_id = refs.iter().find(|n| n.is_serving()).unwrap().id;
    let away_id = refs
        .iter()
        .map(|n| n.id)
        .find(|&id| id != leader_id)
        .unwrap();
    let away = nodes.remove(nodes.iter().position(|n| n.id == away_id).unwrap());
    away.stop().await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    acked.extend(produce(&refs, 10, 2).await);
    let leader = nodes.iter().find(|n| n.id == leader_id).unwrap();
    let target = acked[25];
    let start = leader
        .replication
        .delete_records(&leader.store, leader.partition.clone(), GROUP, target)
        .await
        .expect("moved");
    assert_eq!(start, target);
    assert_eq!(leader.partition.log_start_offset(), target);
    // Below the start already: answered with the start, nothing proposed.
    let again = leader
        .replication
        .delete_records(&leader.store, leader.partition.clone(), GROUP, 3)
        .await
        .expect("answered");
    assert_eq!(again, target);
    // Past the high watermark: refused.
    let past = leader.partition.high_watermark() + 1;
    assert!(leader
        .replication
        .delete_records(&leader.store, leader.partition.clone(), GROUP, past)
        .await
        .is_err());
    for n in &nodes {
        wait_for("every replica's log start to move", || {
            n.partition.log_start_offset() == target
        })
        .await;
    }
    nodes.push(TestNode::start(away_id, dirs[away_id as usize - 1].path(), &peers, false).await);
    let back = nodes.last().unwrap();
    wait_for("the returning replica's log start to move", || {
        back.partition.log_start_offset() == target
    })
    .await;
    // Durable: a replica restarted keeps it.
    let n = nodes.remove(0);
    let id = n.id;
    n.stop().await;
    nodes.push(TestNode::start(id, dirs[id as usize - 1].path(), &peers, false).await);
    assert_eq!(nodes.last().unwrap().partition.log_start_offset(), target);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    acked.extend(produce(&refs, 3, 1).await);
    let kept: Vec<i64> = acked.iter().copied().filter(|&o| o >= target).collect();
    logs_agree(&refs, &kept).await;
    for n in nodes {
        n.stop().await;
    }
}

/// A graceful stop hands every leadership over first (Kafka's controlled shutdown): the leader
/// asks, and another replica leads — before the old one has stopped or anyone waited an
/// election timeout — with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_hands_its_leadership_over_before_a_graceful_stop() {
    let _turn = crate::common::turn::multi_node_turn();
    let (_dirs, _peers, nodes) = start_three(&[]).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let mut acked = produce(&refs, 10, 2).await;
    let leader = *refs.iter().find(|n| n.is_serving()).unwrap();
    let clock: Arc<dyn io_backend::Clock> = Arc::new(SystemClock);
    let started = std::time::Instant::now();
    leader
        .replication
        .hand_over(&clock, Duration::from_secs(5))
        .await;
    let took = started.elapsed();
    assert!(
        !leader.replication.group(GROUP).unwrap().status().is_leader,
        "still leads after handing over"
    );
    wait_for("another replica to serve", || {
        refs.iter().any(|n| n.id != leader.id && n.is_serving())
    })
    .await;
    acked.extend(produce(&refs, 5, 1).await);
    logs_agree(&refs, &acked).await;
    eprintln!("handed over in {took:?} (election timeout 200-400 ms here)");
    for n in nodes {
        n.stop().await;
    }
}

mod membership {
    //! Membership changes: a learner added and caught up (from the log, or from a leader's
    //! snapshot), made a voter in place of another through a joint configuration, and the
    //! membership kept across restarts of every replica. Data volume: 60–200 small batches.

    use super::*;
    use broker::replication::node::Members;
    use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};

    fn change(transition: ConfChangeTransition, steps: &[(ConfChangeType, u64)]) -> ConfChangeV2 {
        let mut cc = ConfChangeV2::default();
        cc.set_transition(transition);
        for &(ty, id) in steps {
            let mut s = ConfChangeSingle::default();
            s.set_change_type(ty);
            s.node_id = id;
            cc.changes.push(s);
        }
        cc
    }

    /// Propose `cc` through whichever of `nodes` leads, until one takes it.
    async fn propose_change(nodes: &[&TestNode], cc: ConfChangeV2) {
        for _ in 0..500 {
            for n in nodes {
                if n.replication
                    .change_members(GROUP, cc.clone())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no leader took the membership change {cc:?}");
    }

    fn members(n: &TestNode) -> Members {
        n.replication.group(GROUP).expect("a replica").members()
    }

    fn sorted(mut v: Vec<u64>) -> Vec<u64> {
        v.sort_unstable();
        v
    }

    /// Nodes 1–3 replicate the group; node 4 runs with a replica that is not a member yet.
    async fn start_four(
        overrides: &[(&str, &str)],
    ) -> (
        Vec<tempfile::TempDir>,
        BTreeMap<u64, SocketAddr>,
        Vec<TestNode>,
    ) {
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let peers = free_addresses_n(4).await;
        let mut nodes = Vec::new();
        for id in 1..=4u64 {
            let dir = dirs[id as usize - 1].path();
            let n = TestNode::start_bare(id, dir, &peers, overrides, settings()).await;
            n.join_group(GROUP, vec![1, 2, 3], id == 1).await;
            wait_for("the replica", || n.replication.group(GROUP).is_some()).await;
            nodes.push(n);
        }
        (dirs, peers, nodes)
    }

    async fn restart(
        n: TestNode,
        dirs: &[tempfile::TempDir],
        peers: &BTreeMap<u64, SocketAddr>,
        overrides: &[(&str, &str)],
    ) -> TestNode {
        let id = n.id;
        n.stop().await;
        let dir = dirs[id as usize - 1].path();
        let n = TestNode::start_bare(id, dir, peers, overrides, settings()).await;
        n.join_group(GROUP, vec![1, 2, 3], false).await;
        wait_for("the replica", || n.replication.group(GROUP).is_some()).await;
        n
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_learner_catches_up_and_replaces_a_voter_through_a_joint_configuration() {
        let _turn = crate::common::turn::multi_node_turn();
        let (dirs, peers, mut nodes) = start_four(&[]).await;
        let refs: Vec<&TestNode> = nodes.iter().collect();
        let mut acked = produce(&refs[..3], 30, 3).await;
        assert_eq!(members(refs[3]).voters, vec![1, 2, 3]);
        assert!(!refs[3].is_serving());
        // Node 4 joins as a learner: it receives the log, it does not vote.
        use ConfChangeTransition::{Auto, Explicit};
        use ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
        propose_change(&refs, change(Auto, &[(AddLearnerNode, 4)])).await;
        for n in &refs {
            wait_for("every replica to apply the learner", || {
                members(n).learners == vec![4]
            })
            .await;
        }
        acked.extend(produce(&refs, 10, 1).await);
        let hw = refs
            .iter()
            .map(|n| n.partition.high_watermark())
            .max()
            .unwrap();
        wait_for("the learner to catch up", || {
            refs[3].partition.state().log_end_offset() >= hw
        })
        .await;
        // A follower (not the leader: a leader that removes itself must hand over first) is
        // replaced by node 4: both in one joint configuration, then the joint one is left.
        let leader = refs.iter().find(|n| n.is_serving()).unwrap().id;
        let out = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
        propose_change(&refs, change(Explicit, &[(AddNode, 4), (RemoveNode, out)])).await;
        for n in &refs {
            wait_for("the joint configuration", || members(n).joint()).await;
        }
        let joint = members(refs[0]);
        assert_eq!(sorted(joint.outgoing.clone()), vec![1, 2, 3]);
        assert_eq!(joint.all_voters(), vec![1, 2, 3, 4]);
        // Writes commit in the joint configuration (a majority of each).
        acked.extend(produce(&refs, 5, 1).await);
        propose_change(&refs, ConfChangeV2::default()).await;
        let want: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|&id| id != out).collect();
        for n in &refs {
            wait_for("the new configuration", || {
                let m = members(n);
                !m.joint() && sorted(m.voters.clone()) == want
            })
            .await;
        }
        // The replaced replica goes; the group goes on with node 4 voting.
        let gone = nodes.remove(nodes.iter().position(|n| n.id == out).unwrap());
        gone.stop().await;
        let refs: Vec<&TestNode> = nodes.iter().collect();
        acked.extend(produce(&refs, 10, 2).await);
        logs_agree(&refs, &acked).await;
        // Every replica restarts (all at once down, then up): the membership is what the
        // logs recorded, not what the group was first made of.
        let mut restarted = Vec::new();
        for n in nodes {
            restarted.push(restart(n, &dirs, &peers, &[]).await);
        }
        let refs: Vec<&TestNode> = restarted.iter().collect();
        for n in &refs {
            assert_eq!(
                sorted(members(n).voters),
                want,
                "node {} after a restart",
                n.id
            );
        }
        acked.extend(produce(&refs, 5, 1).await);
        logs_agree(&refs, &acked).await;
        // The changes took no Kafka offset: the log's records are dense.
        let leader = refs.iter().find(|n| n.is_serving()).unwrap();
        let end = leader.partition.high_watermark();
        assert_eq!(
            leader.partition.to_kafka(end),
            30 * 3 + 10 + 5 + 10 * 2 + 5,
            "Kafka offsets count records only"
        );
        for n in restarted {
            n.stop().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_learner_behind_the_leaders_log_start_starts_from_its_snapshot_with_the_membership() {
        let _turn = crate::common::turn::multi_node_turn();
        let small = [("segment.bytes", "1024"), ("retention.bytes", "2048")];
        let (dirs, peers, mut nodes) = start_four(&small).await;
        let refs: Vec<&TestNode> = nodes.iter().collect();
        let mut acked = produce_until_log_starts_pass(&refs[..3], 0).await;
        use ConfChangeTransition::{Auto, Explicit};
        use ConfChangeType::{AddLearnerNode, AddNode};
        propose_change(&refs, change(Auto, &[(AddLearnerNode, 4)])).await;
        wait_for("the learner to take a snapshot", || {
            refs[3].partition.log_start_offset() > 0 && members(refs[3]).learners == vec![4]
        })
        .await;
        acked.extend(produce(&refs, 5, 1).await);
        let hw = refs
            .iter()
            .map(|n| n.partition.high_watermark())
            .max()
            .unwrap();
        wait_for("the learner to catch up", || {
            refs[3].partition.state().log_end_offset() >= hw
        })
        .await;
        // Restarted right after its snapshot, it still knows it is a learner.
        let n4 = nodes.pop().unwrap();
        nodes.push(restart(n4, &dirs, &peers, &small).await);
        let refs: Vec<&TestNode> = nodes.iter().collect();
        assert_eq!(members(refs[3]).learners, vec![4]);
        // Promoted to a voter (a group of four).
        propose_change(&refs, change(Explicit, &[(AddNode, 4)])).await;
        // One change at a time: leaving is refused until the joint configuration applied.
        let leader = refs.iter().find(|n| n.is_serving()).unwrap();
        let early = leader
            .replication
            .change_members(GROUP, ConfChangeV2::default())
            .await;
        if !members(leader).joint() {
            assert!(
                matches!(early, Err(ReplicaError::MembershipChange(_))),
                "{early:?}"
            );
        }
        wait_for("the joint configuration", || members(leader).joint()).await;
        propose_change(&refs, ConfChangeV2::default()).await;
        for n in &refs {
            wait_for("four voters", || {
                let m = members(n);
                !m.joint() && sorted(m.voters.clone()) == vec![1, 2, 3, 4]
            })
            .await;
        }
        acked.extend(produce(&refs, 5, 1).await);
        let hw = refs
            .iter()
            .map(|n| n.partition.high_watermark())
            .max()
            .unwrap();
        for n in &refs {
            wait_for("every replica to have the last write", || {
                n.partition.state().log_end_offset() >= hw
            })
            .await;
        }
        // Every acknowledged write the leader's log still holds is on the learner too.
        let from = refs[3].partition.log_start_offset();
        let learner_log = log_of(refs[3]).await;
        for &offset in acked.iter().filter(|&&o| o >= from) {
            assert!(
                learner_log
                    .iter()
                    .any(|b| batch::parse_header(b).unwrap().base_offset == offset),
                "acknowledged offset {offset} is missing on the learner"
            );
        }
        for n in nodes {
            n.stop().await;
        }
    }
}
