//! A twin run: a scenario on real broker processes on this machine — the release binary, real
//! TCP through a proxy on every link, real time, real faults — with the simulator's own
//! workload and checkers, so that a scenario's verdict in simulation can be held against its
//! verdict in reality (`cargo xtask sim real`, `docs/simulation.md`).
//!
//! - [`procs`]: the broker processes, and the signals that crash and pause them;
//! - [`proxy`]: the links between nodes, and the partitions and latency struck on them;
//! - [`loss`]: real packet loss on the proxies' links (the kernel's packet filter);
//! - [`clock`]: each broker's wall clock, skewed and drifted for real (libfaketime);
//! - [`disk`]: the fault filesystem under each broker's data directory;
//! - [`faults`]: which faults this world can strike and striking them on the wall clock;
//! - [`rdkafka`]: real librdkafka producers joining the workload (optional);
//! - [`command`]: the `sim real` command.
//!
//! Invariant: the workload, the history, the checkers and the report are the simulator's own
//! (the same code built for real tokio); what differs is only the world — and a fault this
//! world cannot make real stops the run before it starts, with the reason, rather than run the
//! scenario without it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::checks::bounds::NodeBounds;
use crate::history::Logged;
use crate::outcome::{Observed, RunReport};
use crate::scenario::{broker_name, Fault, Scenario, BROKER_NODE, CLIENT_NODES};
use crate::workload::{self, ClientNodes, Role, World};

pub mod clock;
pub mod command;
pub mod disk;
pub mod faults;
pub mod logs;
pub mod loss;
pub mod procs;
pub mod proxy;
pub mod rdkafka;

use procs::{free_port, BrokerProc};
use proxy::{Dialler, Links};

/// How a broker's disk is struck: the fault filesystem under its data directory.
pub trait DiskFaults: Send + Sync {
    /// Every write not yet synced is lost (with a seed: one file keeps a torn part of it).
    fn crash(&self, torn: Option<u64>);
    /// Every sync that starts within `d` from now ends only then.
    fn stall_syncs_for(&self, d: Duration);
    /// The next `count` syncs fail with EIO (and drop the file's unsynced data).
    fn fail_syncs(&self, count: u32);
    /// Writes that grow a file fail with ENOSPC while on.
    fn full(&self, on: bool);
    /// The syncs under way, with when each started.
    fn syncs_in_flight(&self) -> Vec<(PathBuf, std::time::Instant)>;
    /// The 99th percentile of the syncs served without a stall: the backing disk's own time.
    fn sync_p99(&self) -> Option<Duration>;
    /// Every read, write and sync waits a draw from `latency` (`spike`: per million, that
    /// long instead), from `seed`; `None, None`: fast again.
    fn slow(
        &self,
        latency: Option<(Duration, Duration)>,
        spike: Option<(u32, Duration)>,
        seed: u64,
    );
    /// Run `f` once when the next write arrives, before it is served (`None`: forget it).
    fn before_next_write(&self, f: Option<Box<dyn FnOnce() + Send>>);
    /// Lift every fault (held syncs go ahead).
    fn clear(&self);
}

/// The machines of a twin run.
pub struct Machines {
    pub brokers: Vec<Arc<BrokerProc>>,
    /// Each broker's fault filesystem (`None`: a plain directory, no disk faults).
    pub disks: Vec<Option<Arc<dyn DiskFaults>>>,
    pub links: Arc<Links>,
    /// The run's packet loss (only when a fault loses packets).
    pub loss: Option<loss::Loss>,
    /// Each broker's faked wall clock (only when a fault skews or drifts a clock).
    pub clocks: Vec<Option<Arc<clock::FakeClock>>>,
    /// Each broker's inter-broker listener (its peers reach it through their proxies).
    pub inter_broker: Vec<SocketAddr>,
}

impl Machines {
    /// The broker a node-scoped fault strikes (`broker-1` when it names none).
    pub fn broker(&self, fault: &Fault) -> &Arc<BrokerProc> {
        &self.brokers[self.index(fault)]
    }

    /// The faked clock of the broker a node-scoped fault strikes.
    pub fn clock(&self, fault: &Fault) -> Option<&Arc<clock::FakeClock>> {
        self.clocks.get(self.index(fault))?.as_ref()
    }

    /// The fault filesystem of the broker a node-scoped fault strikes.
    pub fn disk(&self, fault: &Fault) -> Option<&Arc<dyn DiskFaults>> {
        self.disks.get(self.index(fault))?.as_ref()
    }

    fn index(&self, fault: &Fault) -> usize {
        let name = fault.node().unwrap_or(BROKER_NODE);
        self.brokers
            .iter()
            .position(|b| b.name == name)
            .unwrap_or(0)
    }
}

/// Where a twin run finds its broker and keeps its files.
#[derive(Debug, Clone)]
pub struct Options {
    /// The broker binary (a release build).
    pub broker_bin: PathBuf,
    /// Where each run's data directories and broker logs go.
    pub work_dir: PathBuf,
    /// Real librdkafka producers joining the workload's (none: only the simulator's clients).
    pub librdkafka: Option<rdkafka::Librdkafka>,
}

/// A twin run's result: the report, or why this world cannot run the scenario.
pub enum Twin {
    /// The run's report, and its brokers' log lines placed on its time axis.
    Ran(Box<RunReport>, Logged),
    Skipped(String),
}

/// Run the scenario once on real processes, with the faults (and random settings) of `seed`.
pub fn run(scenario: &Scenario, seed: u64, opts: &Options) -> anyhow::Result<Twin> {
    let (scenario, drawn) = scenario.for_seed(seed)?;
    let faults = scenario.faults_for(seed);
    if let Some(why) = faults::unsupported(&scenario, &faults) {
        return Ok(Twin::Skipped(why));
    }
    if let Some(why) = opts
        .librdkafka
        .as_ref()
        .filter(|l| l.producers > 0)
        .and_then(|_| rdkafka::unsupported(&scenario))
    {
        return Ok(Twin::Skipped(format!("--librdkafka-producers: {why}")));
    }
    if faults.iter().any(|f| matches!(f, Fault::ClockDrift { .. })) {
        eprintln!(
            "sim real: a clock drift moves the broker's wall clock for real (libfaketime); its \
             timers, which the simulated drift also slows, keep real time"
        );
    }
    if scenario.fault_points.is_some() {
        // What they stand for — a task delayed at some step — real threads do on their own.
        eprintln!(
            "sim real: [fault_points] are simulation only (delays at points inside the broker); \
             this run goes on without them"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let wall = std::time::Instant::now();
    let observed = rt.block_on(twin(scenario.clone(), seed, faults.clone(), opts))?;
    rt.shutdown_timeout(Duration::from_secs(5));
    let logged = observed.started_at.map_or_else(Logged::default, |at| {
        logs::read(
            &opts.work_dir.join(format!("{}-seed{seed}", scenario.name)),
            &observed.brokers,
            at,
        )
    });
    let mut report = crate::outcome::report(
        &scenario,
        seed,
        faults,
        observed,
        wall.elapsed().as_secs_f64(),
        Vec::new(),
        true,
    );
    let mut trace: Vec<String> = drawn
        .iter()
        .map(|(k, v)| format!("config {k} = {v}"))
        .collect();
    trace.append(&mut report.trace);
    report.trace = trace;
    report.config = drawn;
    Ok(Twin::Ran(Box::new(report), logged))
}

/// A listener on a free port of 127.0.0.1.
async fn listen() -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind("127.0.0.1:0").await
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The broker's flags for node `i` (from 1) of the scenario.
fn broker_args(
    sc: &Scenario,
    i: usize,
    client: SocketAddr,
    metrics: SocketAddr,
    data_dir: &Path,
    peers: &str,
    inter_broker: SocketAddr,
) -> Vec<String> {
    let mut args = vec![
        "--listen".to_string(),
        client.to_string(),
        "--metrics-listen".into(),
        metrics.to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--set".into(),
        "auto_create_topics=false".into(),
    ];
    if sc.clustered() {
        args.extend([
            "--node-id".into(),
            i.to_string(),
            "--set".into(),
            format!("cluster_peers={peers}"),
            "--set".into(),
            format!("inter_broker_listen={inter_broker}"),
        ]);
    }
    for (k, v) in &sc.broker {
        let text = match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        args.extend(["--set".into(), format!("{k}={text}")]);
    }
    args
}

/// Wait until `addr` accepts connections, up to `within`.
async fn accepting(addr: SocketAddr, within: Duration) -> bool {
    let give_up = Instant::now() + within;
    while Instant::now() < give_up {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The client nodes of a twin run: a thread each, with a runtime of its own and its links'
/// proxies ([`crate::workload::client::route_through`]).
struct RealNodes {
    handles: Vec<tokio::runtime::Handle>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl RealNodes {
    /// One thread per role, its clients dialling `routes[role]` for each broker address.
    fn start(routes: Vec<BTreeMap<SocketAddr, SocketAddr>>) -> anyhow::Result<RealNodes> {
        let mut nodes = RealNodes {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for (i, route) in routes.into_iter().enumerate() {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("client-node-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!("cannot start a client node's runtime: {e}");
                            return;
                        }
                    };
                    crate::workload::client::route_through(route);
                    let _ = handle_tx.send(rt.handle().clone());
                    rt.block_on(async move {
                        let _ = stop_rx.await;
                    });
                })?;
            nodes.handles.push(
                handle_rx
                    .recv()
                    .context("a client node's thread ended at its start")?,
            );
            nodes.stops.push(stop_tx);
            nodes.threads.push(thread);
        }
        Ok(nodes)
    }

    fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl ClientNodes for RealNodes {
    fn spawn<F>(&self, role: Role, f: F) -> BoxFuture<'static, Option<F::Output>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = self.handles[role as usize].spawn(f);
        Box::pin(async move { task.await.ok() })
    }
}

/// The twin run itself: the proxies, the brokers, the client nodes, the fault schedule, the
/// workload and the final read; then everything the checkers need.
async fn twin(
    sc: Scenario,
    seed: u64,
    faults: Vec<Fault>,
    opts: &Options,
) -> anyhow::Result<Observed> {
    let dir = opts.work_dir.join(format!("{}-seed{seed}", sc.name));
    let n = sc.cluster.nodes.max(1);
    // A run killed before it could unmount leaves its mounts behind, their files unreachable.
    for i in 1..=n {
        let data = dir.join(broker_name(i)).join("data");
        if let Ok(c) = std::ffi::CString::new(data.as_os_str().as_encoded_bytes()) {
            // SAFETY: umount2(2) on a NUL-terminated path; failure (not a mount) is ignored.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let links = Links::new(seed);
    // Every broker's listeners: clients, the others (behind the peer proxy), metrics.
    let mut client_addrs = Vec::new();
    let mut peer_proxies = Vec::new();
    // Every proxy's port: where packets are lost, when they are.
    let mut proxy_ports = Vec::new();
    for _ in 0..n {
        client_addrs.push(loopback(free_port()?));
        let l = listen().await?;
        proxy_ports.push(l.local_addr()?.port());
        peer_proxies.push(l);
    }
    let peers = peer_proxies
        .iter()
        .enumerate()
        .map(|(i, l)| Ok(format!("{}@{}", i + 1, l.local_addr()?)))
        .collect::<std::io::Result<Vec<_>>>()?
        .join(",");
    let mut brokers = Vec::new();
    let mut mounts = Vec::new();
    let mut clocks = Vec::new();
    let faked = faults
        .iter()
        .any(|f| matches!(f, Fault::ClockSkew { .. } | Fault::ClockDrift { .. }));
    let mut inter_broker_addrs = Vec::new();
    for (i, proxy) in peer_proxies.into_iter().enumerate() {
        let name = broker_name(i + 1);
        let inter_broker = loopback(free_port()?);
        inter_broker_addrs.push(inter_broker);
        let metrics = loopback(free_port()?);
        let data_dir = dir.join(&name).join("data");
        mounts.push(Arc::new(disk::mount(
            &dir.join(&name).join("durable"),
            &data_dir,
        )?));
        tokio::spawn(proxy::serve(
            proxy,
            Dialler::Broker(|id| broker_name(id as usize)),
            name.clone(),
            inter_broker,
            links.clone(),
        ));
        let args = broker_args(
            &sc,
            i + 1,
            client_addrs[i],
            metrics,
            &data_dir,
            &peers,
            inter_broker,
        );
        let clock = if faked {
            Some(
                clock::FakeClock::new(dir.join(format!("{name}.faketime")))
                    .map_err(anyhow::Error::msg)?,
            )
        } else {
            None
        };
        brokers.push(Arc::new(
            BrokerProc::new(
                name.clone(),
                opts.broker_bin.clone(),
                args,
                client_addrs[i],
                metrics,
                data_dir,
                dir.join(format!("{name}.log")),
            )
            .with_env(clock.as_ref().map(|c| c.env()).unwrap_or_default()),
        ));
        clocks.push(clock);
    }
    // Each client node's links to each broker.
    let mut routes = Vec::new();
    for role in CLIENT_NODES {
        let mut route = BTreeMap::new();
        for (i, addr) in client_addrs.iter().enumerate() {
            let l = listen().await?;
            route.insert(*addr, l.local_addr()?);
            proxy_ports.push(l.local_addr()?.port());
            tokio::spawn(proxy::serve(
                l,
                Dialler::Node(role.to_string()),
                broker_name(i + 1),
                *addr,
                links.clone(),
            ));
        }
        routes.push(route);
    }
    routes.push(BTreeMap::new()); // the checker dials the brokers directly
    for b in &brokers {
        b.start()
            .with_context(|| format!("cannot start {}", opts.broker_bin.display()))?;
    }
    for b in &brokers {
        if !accepting(b.client_addr, Duration::from_secs(30)).await {
            anyhow::bail!(
                "{} did not listen on {} within 30 s ({}); the end of {}:\n{}",
                b.name,
                b.client_addr,
                if b.running() {
                    "still running"
                } else {
                    "its process has exited"
                },
                b.log_path().display(),
                procs::log_tail(b.log_path(), 20)
            );
        }
    }
    let machines = Arc::new(Machines {
        brokers,
        disks: mounts
            .iter()
            .map(|m| Some(m.clone() as Arc<dyn DiskFaults>))
            .collect(),
        links,
        clocks,
        inter_broker: inter_broker_addrs,
        loss: if faults.iter().any(|f| matches!(f, Fault::PacketLoss { .. })) {
            Some(loss::Loss::install(&proxy_ports).map_err(anyhow::Error::msg)?)
        } else {
            None
        },
    });
    let nodes = RealNodes::start(routes)?;
    let librdkafka = opts.librdkafka.as_ref().map(|l| (l, dir.as_path()));
    let mut observed =
        drive_and_observe(&sc, seed, faults, machines.clone(), &nodes, librdkafka).await;
    // This machine's disk, as the brokers met it: the performance bounds' commit round takes
    // it when it is slower than the model's.
    observed.disk_sync_p99_ms = machines
        .disks
        .iter()
        .flatten()
        .filter_map(|d| d.sync_p99())
        .map(|d| d.as_secs_f64() * 1000.0)
        .reduce(f64::max);
    nodes.stop();
    // A broker blocked in a held sync could not exit.
    for d in machines.disks.iter().flatten() {
        d.clear();
    }
    for b in &machines.brokers {
        b.stop(Duration::from_secs(10));
        observed.locks.merge(b.lock_use());
    }
    // Unmounted when the last handle goes (the fault schedule may still hold one).
    drop(machines);
    for m in mounts {
        if let Ok(m) = Arc::try_unwrap(m) {
            if let Err(e) = m.unmount() {
                tracing::warn!("{e}");
            }
        }
    }
    Ok(observed)
}

async fn drive_and_observe(
    sc: &Scenario,
    seed: u64,
    faults: Vec<Fault>,
    machines: Arc<Machines>,
    nodes: &RealNodes,
    librdkafka: Option<(&rdkafka::Librdkafka, &Path)>,
) -> Observed {
    let addrs: Vec<SocketAddr> = machines.brokers.iter().map(|b| b.client_addr).collect();
    let syncs_in_flight: workload::SyncsInFlight = {
        let m = machines.clone();
        Box::new(move || {
            let (now, now_tokio) = (std::time::Instant::now(), Instant::now());
            m.brokers
                .iter()
                .zip(&m.disks)
                .filter_map(|(b, d)| Some((b, d.as_ref()?)))
                .flat_map(|(b, d)| {
                    d.syncs_in_flight().into_iter().map(move |(path, since)| {
                        (b.name.clone(), path, now_tokio - now.duration_since(since))
                    })
                })
                .collect()
        })
    };
    let retire = {
        let m = machines.clone();
        Box::new(move |node: usize| {
            if let Some(b) = m.brokers.get(node.wrapping_sub(1)) {
                b.retire();
            }
        })
    };
    let world = World::new(
        sc.clone(),
        seed,
        addrs,
        machines.inter_broker.clone(),
        faults.clone(),
        syncs_in_flight,
        retire,
    );
    let start = world.start;
    let started_at = std::time::SystemTime::now() - start.elapsed();
    let fault_log = faults::schedule(faults, machines.clone(), start, seed);
    let stuck_at_deadline = world.watch_stuck();
    let scraper = tokio::spawn(scrape_failures(machines.clone()));
    let librdkafka: Vec<BoxFuture<'static, ()>> = match librdkafka {
        Some((l, dir)) => (0..l.producers)
            .map(|i| {
                let f = rdkafka::produce(world.clone(), i, l.clone(), dir.to_path_buf());
                Box::pin(f) as BoxFuture<'static, ()>
            })
            .collect(),
        None => Vec::new(),
    };
    let ((final_read, gaps), final_committed) =
        workload::drive(sc, &world, nodes, librdkafka).await;
    let simulated_s = (Instant::now() - start).as_secs_f64();
    scraper.abort();
    scrape_once(&machines).await;
    let (history, hang) = world.take();
    let mut replica_logs = BTreeMap::new();
    if sc.clustered() {
        let disk = io_backend::blocking::BlockingDisk::new(2);
        for b in &machines.brokers {
            let logs = crate::checks::replicas::read_logs(
                &disk,
                &b.data_dir,
                &sc.workload.topic,
                sc.workload.partitions,
            )
            .await;
            replica_logs.insert(b.name.clone(), logs);
        }
    }
    let (named, leader_changes) = crate::outcome::metadata_named(&world);
    let node_bounds = machines
        .brokers
        .iter()
        .map(|b| NodeBounds {
            node: b.name.clone(),
            starts: procs_failures(b)
                .into_iter()
                .map(|f| (Vec::new(), f))
                .collect(),
            disk_reads_peak: 0,
            memory_budget: u64::MAX,
        })
        .collect();
    let stuck_at_deadline = workload::stuck_seen(stuck_at_deadline).await;
    let fault_log = std::mem::take(&mut *fault_log.lock().unwrap_or_else(|p| p.into_inner()));
    let watermarks = std::mem::take(&mut *workload::lock(&world.watermarks));
    let final_topics = std::mem::take(&mut *workload::lock(&world.final_topics));
    let final_configs = std::mem::take(&mut *workload::lock(&world.final_configs));
    Observed {
        final_topics,
        final_configs,
        history,
        hang,
        simulated_s,
        final_read,
        gaps,
        final_committed,
        fault_log,
        stuck_at_deadline,
        replica_logs,
        leaderships: world.directory.leaderships(),
        named,
        watermarks,
        brokers: machines.brokers.iter().map(|b| b.name.clone()).collect(),
        leader_changes,
        node_bounds,
        raft_samples: Vec::new(),
        started_at: Some(started_at),
        ..Observed::default()
    }
}

fn procs_failures(b: &BrokerProc) -> Vec<u64> {
    b.log_dir_failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// The name of the counter of failed data directories on a broker's Prometheus endpoint.
const LOG_DIR_FAILURES: &str = "stillwater_log_dir_failures_total";

/// Every second, each running broker's count of failed data directories (for this start).
async fn scrape_failures(m: Arc<Machines>) {
    loop {
        scrape_once(&m).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn scrape_once(m: &Machines) {
    for b in &m.brokers {
        if let Some(v) = procs::scrape(b.metrics_addr, LOG_DIR_FAILURES).await {
            if let Some(last) = b
                .log_dir_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_mut()
            {
                *last = (*last).max(v as u64);
            }
        }
    }
}
