//! The cluster of a run: its broker nodes — each with the disk and clock that outlive its
//! crashes and the metrics of each of its starts — and the client nodes, on madsim's network.
//!
//! Invariant: every node's randomness comes from the run's seed (mixed with the node's number and
//! its start count), so a seed builds the same cluster every time, and a restarted node draws
//! anew rather than repeating its first life.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use broker::config::{Config, Sources};
use io_backend::{Env, EnvRng, TcpNet};
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;

use crate::scenario::{broker_name, Fault, Scenario, BROKER_NODE, CLIENT_NODES};
use crate::world::clock::SimClock;
use crate::world::disk::SimDisk;

/// Simulated addresses inside madsim; nothing leaves the process.
pub(crate) const BROKER: &str = "10.77.0.1:9092";

/// The client nodes' addresses, in the order of [`CLIENT_NODES`], then the checker's.
pub(crate) const CLIENT_IPS: [&str; 4] = ["10.77.0.2", "10.77.0.3", "10.77.0.4", "10.77.0.5"];

/// Where a cluster's brokers live: broker `i` (from 1) at 10.77.1.i, clients on 9092, the
/// other brokers on 9093.
pub(crate) fn cluster_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 1, i as u8))
}

pub(crate) const INTER_BROKER_PORT: u16 = 9093;

/// The data directory on every node's disk.
pub(crate) const DATA_DIR: &str = "/data";

/// Where a node's TLS files are (outside the data directory: a lost disk keeps them, as a
/// machine's `/etc` outlives its data disk).
pub(crate) const TLS_DIR: &str = "/tls";

/// The simulator's TLS files (`sim/tls`, Ed25519: see its `make_certs.py`): the CA, every
/// broker's certificate, its key.
pub(crate) const TLS_FILES: [(&str, &str); 3] = [
    ("ca.pem", include_str!("../../tls/ca.pem")),
    ("broker.pem", include_str!("../../tls/broker.pem")),
    ("broker-key.pem", include_str!("../../tls/broker-key.pem")),
];

/// Put the TLS files on a node's disk (durably), unless they are there.
async fn install_tls_files(disk: &dyn io_backend::Disk) -> io_backend::DiskResult<()> {
    let dir = std::path::Path::new(TLS_DIR);
    disk.create_dir_all(dir).await?;
    for (name, text) in TLS_FILES {
        let path = dir.join(name);
        if disk.exists(&path).await? {
            continue;
        }
        let file = disk.open(&path, io_backend::OpenMode::Create).await?;
        file.write_all_and_sync(vec![(bytes::Bytes::from_static(text.as_bytes()), 0)])
            .await?;
    }
    disk.sync_dir(dir).await
}

/// The address clients use for broker `i` (from 1).
pub(crate) fn broker_addr(scenario: &Scenario, i: usize) -> SocketAddr {
    if scenario.clustered() {
        SocketAddr::new(cluster_ip(i), 9092)
    } else {
        BROKER.parse().expect("address")
    }
}

pub(crate) fn broker_config(scenario: &Scenario, node: usize) -> anyhow::Result<Config> {
    let mut flags = vec![
        (
            "listen".to_string(),
            broker_addr(scenario, node).to_string(),
        ),
        ("metrics_listen".to_string(), String::new()),
        ("data_dir".to_string(), DATA_DIR.to_string()),
        ("seed".to_string(), "1".to_string()),
        // The workload creates its topic (with its partitions) through CreateTopics.
        ("auto_create_topics".to_string(), "false".to_string()),
    ];
    if let Some(auth) = &scenario.auth {
        use crate::scenario::{SASL_PASSWORD, SASL_USER};
        let protocol = if auth.tls {
            "SASL_SSL"
        } else {
            "SASL_PLAINTEXT"
        };
        flags.push((
            "listeners".to_string(),
            format!("{protocol}://{}", broker_addr(scenario, node)),
        ));
        if auth.tls {
            for (key, file) in [
                ("ssl_certificate_location", TLS_FILES[1].0),
                ("ssl_key_location", TLS_FILES[2].0),
                ("ssl_ca_location", TLS_FILES[0].0),
            ] {
                flags.push((key.to_string(), format!("{TLS_DIR}/{file}")));
            }
            if scenario.clustered() {
                flags.push((
                    "inter_broker_security_protocol".to_string(),
                    "SSL".to_string(),
                ));
            }
        }
        flags.push((
            "sasl_enabled_mechanisms".to_string(),
            format!("{},SCRAM-SHA-512", auth.mechanism),
        ));
        flags.push((
            "add_scram".to_string(),
            format!("SCRAM-SHA-512=[name={SASL_USER},password={SASL_PASSWORD}]"),
        ));
        if auth.authorizer {
            flags.push(("authorizer_enabled".to_string(), "true".to_string()));
            flags.push(("super_users".to_string(), format!("User:{SASL_USER}")));
        }
    }
    if scenario.clustered() {
        let voters = scenario.cluster.voters();
        let peers = (1..=voters)
            .map(|i| format!("{i}@{}:{INTER_BROKER_PORT}", cluster_ip(i)))
            .collect::<Vec<_>>()
            .join(",");
        flags.push(("node_id".to_string(), node.to_string()));
        flags.push(("cluster_peers".to_string(), peers));
        if node > voters {
            // An observer: it joins, at an inter-broker address of its own.
            flags.push((
                "inter_broker_listen".to_string(),
                format!("{}:{INTER_BROKER_PORT}", cluster_ip(node)),
            ));
        }
    }
    // A consumer-protocol group's session timeout is the brokers' setting (the scenario's
    // own `[broker]` table may still say otherwise).
    if let Some(g) = scenario
        .workload
        .group
        .as_ref()
        .filter(|g| g.protocol == crate::scenario::CONSUMER)
    {
        flags.push((
            "group_consumer_session_timeout_ms".to_string(),
            g.session_timeout_ms.to_string(),
        ));
        flags.push((
            "group_consumer_heartbeat_interval_ms".to_string(),
            g.heartbeat_interval_ms.to_string(),
        ));
    }
    for (k, v) in &scenario.broker {
        let text = match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        flags.push((k.clone(), text));
    }
    Ok(Config::load(&Sources {
        file: None,
        env: Vec::new(),
        flags,
    })?)
}

/// The environment of each start of one broker node. Every start is a new incarnation with a
/// generator of its own (the run's seed mixed with the start count): seeded alike every time,
/// a restarted node would draw the same ids (topic ids, …) and choices as before its crash.
pub struct NodeStarts {
    seed: u64,
    starts: std::sync::atomic::AtomicU64,
}

impl NodeStarts {
    pub fn new(seed: u64) -> NodeStarts {
        NodeStarts {
            seed,
            starts: Default::default(),
        }
    }

    /// The environment of the next start: the node's disk and clock (which outlive it), TCP,
    /// and this incarnation's generator (the first start's is seeded with the run's seed).
    pub fn next_env(&self, disk: &SimDisk, clock: Arc<SimClock>) -> Env {
        let incarnation = self
            .starts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Env {
            disk: Arc::new(disk.clone()),
            net: Arc::new(TcpNet),
            clock: Arc::new(clock.incarnation()),
            rng: EnvRng::seeded(self.seed ^ incarnation.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        }
    }
}

/// A node of a test of its own (outside a scenario): `broker-{id}` at `ip`, with a disk and a
/// clock that outlive its restarts; `init` runs at every start with that start's environment.
pub fn test_node<F, Fut>(handle: &Handle, id: u64, ip: IpAddr, init: F) -> NodeHandle
where
    F: Fn(Env) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let starts = NodeStarts::new(id);
    let disk = SimDisk::new(id);
    handle
        .create_node()
        .name(format!("broker-{id}"))
        .ip(ip)
        .init(move || init(starts.next_env(&disk, Arc::new(SimClock::new()))))
        .build()
}

/// One broker of a run: its madsim node, and the disk and clock that outlive its crashes.
pub(crate) struct BrokerNode {
    pub(crate) name: String,
    pub(crate) id: NodeId,
    pub(crate) disk: SimDisk,
    pub(crate) clock: Arc<SimClock>,
    /// Each start's metrics (its bounds' high-water marks outlive it).
    pub(crate) metrics: Metered,
    /// Retired: stopped for good (a fault's restart starts nothing).
    retired: Arc<std::sync::atomic::AtomicBool>,
    /// A planned stop: the running broker shuts down gracefully when told
    /// ([`BrokerNode::stop_gracefully`]).
    stop: Arc<tokio::sync::Notify>,
    /// Told when a graceful shutdown has ended.
    shut_down: Arc<tokio::sync::Notify>,
}

impl BrokerNode {
    /// Stopped for good by the workload.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The metrics of each start of a broker node.
pub(crate) type Metered = Arc<std::sync::Mutex<Vec<Arc<broker::metrics::Metrics>>>>;

/// The simulated machines of a run.
pub(crate) struct Cluster {
    pub(crate) handle: Handle,
    pub(crate) brokers: Vec<BrokerNode>,
    pub(crate) nodes: BTreeMap<String, NodeId>,
}

impl Cluster {
    /// Stop broker `node` (from 1) for good: a broker the workload retired.
    pub(crate) fn retire(&self, node: usize) {
        if let Some(b) = self.brokers.get(node.wrapping_sub(1)) {
            b.retired.store(true, std::sync::atomic::Ordering::Relaxed);
            self.handle.kill(b.id);
            tracing::info!(node = %b.name, "retired: stopped for good");
        }
    }

    pub(crate) fn id(&self, name: &str) -> Option<NodeId> {
        self.nodes.get(name).copied()
    }

    /// The broker a node-scoped fault strikes (`broker-1` when it names none).
    pub(crate) fn broker(&self, fault: &Fault) -> &BrokerNode {
        let name = fault.node().unwrap_or(BROKER_NODE);
        self.brokers
            .iter()
            .find(|b| b.name == name)
            .unwrap_or(&self.brokers[0])
    }
}

impl Cluster {
    /// Start one broker node per configuration (node `i + 1` for `configs[i]`) and the client
    /// nodes (`CLIENT_NODES`, then the checker's), on the runtime of `handle`.
    pub(crate) fn start(
        handle: &Handle,
        scenario: &Scenario,
        seed: u64,
        configs: Vec<Config>,
    ) -> (Cluster, Vec<NodeHandle>) {
        let brokers: Vec<BrokerNode> = configs
            .into_iter()
            .enumerate()
            .map(|(i, config)| BrokerNode::start(handle, scenario, seed, i + 1, config))
            .collect();
        let mut nodes = BTreeMap::new();
        for b in &brokers {
            nodes.insert(b.name.clone(), b.id);
        }
        let mut client_nodes = Vec::new();
        for (name, ip) in CLIENT_NODES.iter().chain(&["checker"]).zip(CLIENT_IPS) {
            let ip: IpAddr = ip.parse().expect("address");
            let node = handle.create_node().name(*name).ip(ip).build();
            nodes.insert(name.to_string(), node.id());
            client_nodes.push(node);
        }
        let cluster = Cluster {
            handle: handle.clone(),
            brokers,
            nodes,
        };
        (cluster, client_nodes)
    }
}

impl BrokerNode {
    /// Broker `node` (from 1): its disk (with the scenario's latency and bandwidth), its clock,
    /// and a madsim node that starts the broker with `config` at every (re)start.
    fn start(
        handle: &Handle,
        scenario: &Scenario,
        seed: u64,
        node: usize,
        config: Config,
    ) -> BrokerNode {
        // The first broker's disk and generator are seeded as a single node's always were; the
        // others' from the seed and their number.
        let mix = (node as u64 - 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
        let disk = SimDisk::new(seed ^ mix);
        let mut f = disk.faults();
        f.latency = scenario.disk.latency();
        f.bandwidth_bytes_per_s = scenario.disk.bandwidth_mb_s.map(|mb| mb << 20);
        f.queue_depth = scenario.disk.queue_depth;
        disk.set_faults(f);
        let clock = Arc::new(SimClock::new());
        let addr = broker_addr(scenario, node);
        let name = broker_name(node);
        let metrics = Metered::default();
        let retired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop: Arc<tokio::sync::Notify> = Arc::default();
        let shut_down: Arc<tokio::sync::Notify> = Arc::default();
        // A broker that joins later starts then (a fault's restart before that waits too).
        let joins_at = scenario
            .cluster
            .joins_at_s(node)
            .map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs(s));
        let id = {
            let (disk, clock, metered) = (disk.clone(), clock.clone(), metrics.clone());
            let retired = retired.clone();
            let (stop, shut_down) = (stop.clone(), shut_down.clone());
            let starts = NodeStarts::new(seed ^ mix);
            handle
                .create_node()
                .name(name.clone())
                .ip(addr.ip())
                .init(move || {
                    let env = starts.next_env(&disk, clock.clone());
                    let config = config.clone();
                    let metered = metered.clone();
                    let retired = retired.clone();
                    let (stop, shut_down) = (stop.clone(), shut_down.clone());
                    async move {
                        if let Some(at) = joins_at {
                            tokio::time::sleep_until(at).await;
                        }
                        if retired.load(std::sync::atomic::Ordering::Relaxed) {
                            return;
                        }
                        if config.tls_settings().ok().flatten().is_some() {
                            if let Err(e) = install_tls_files(env.disk.as_ref()).await {
                                tracing::error!("cannot write the TLS files: {e}");
                            }
                        }
                        match broker::server::start(env, config).await {
                            Ok(mut running) => {
                                metered
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(running.broker.metrics.clone());
                                let asked = tokio::select! {
                                    _ = running.stopped() => false,
                                    _ = stop.notified() => true,
                                };
                                if asked {
                                    running.shutdown().await;
                                    shut_down.notify_waiters();
                                }
                            }
                            Err(e) => tracing::error!("broker failed to start: {e:#}"),
                        }
                    }
                })
                .build()
                .id()
        };
        BrokerNode {
            name,
            id,
            disk,
            clock,
            metrics,
            retired,
            stop,
            shut_down,
        }
    }

    /// Shut the running broker down as SIGTERM does (`Running::shutdown`) and wait for it, at
    /// most `grace`: whether it ended in time. The node is still to be killed (its process
    /// exits), and nothing is lost: what it wrote stays on the disk, synced or not.
    pub(crate) async fn stop_gracefully(&self, grace: std::time::Duration) -> bool {
        let ended = self.shut_down.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        self.stop.notify_waiters();
        tokio::time::timeout(grace, ended).await.is_ok()
    }
}
