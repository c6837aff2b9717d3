//! Wiring: the Kafka listener, its connection limits (in all, and per client address), one
//! task per connection ([`connection`]), the metrics endpoint, shutdown.

mod connection;
mod http;
mod sasl;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::sync::Mutex;
use std::time::Duration;

use io_backend::{Clock, Env, Listener};
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use crate::api::{count_connection, Broker};
use crate::config::Config;
use crate::conn_limit::PerAddress;
use crate::group::Coordinator;
use crate::memory::MemoryBudget;
use crate::metrics::{CountingDisk, Metrics};
use crate::storage::Store;

/// How long shutdown waits for open requests to finish.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A started broker node.
pub struct Running {
    /// The first listener's address.
    pub kafka_addr: SocketAddr,
    /// Every listener's name and address, in the order configured.
    pub listener_addrs: Vec<(String, SocketAddr)>,
    pub metrics_addr: Option<SocketAddr>,
    pub broker: Arc<Broker>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop accepting, let open requests finish (bounded), and return.
    pub async fn shutdown(self) {
        if let Some(cluster) = &self.broker.cluster {
            // Kafka's controlled shutdown: the leaderships go first, while this broker still
            // answers (NOT_LEADER_OR_FOLLOWER, and the clients move at once).
            let clock = self.broker.clock.clone();
            cluster
                .replication()
                .hand_over(&clock, Duration::from_secs(5))
                .await;
        }
        let _ = self.stop.send(true);
        let _ = self.done.await;
        if let Some(cluster) = &self.broker.cluster {
            cluster.shutdown();
        }
    }

    /// Resolves when the node has stopped.
    pub fn stopped(&mut self) -> &mut tokio::task::JoinHandle<()> {
        &mut self.done
    }
}

/// Open the data directory, bind the listeners and start serving.
pub async fn start(env: Env, config: Config) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::default());
    let env = Env {
        disk: CountingDisk::wrap(env.disk.clone(), metrics.clone()),
        ..env
    };
    tracing::info!(data_dir = %config.data_dir.display(), engine = env.disk.engine(), "opening data directory");
    let store = open_store(&env, &config, &metrics).await?;
    let specs = config
        .listener_specs()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = match config.tls_settings().map_err(|e| anyhow::anyhow!("{e}"))? {
        Some(settings) => {
            let random = crate::security::random::SecureRandom::new(&env.rng);
            let load = crate::security::tls::Tls::load(env.disk.clone(), settings, random);
            let loaded = env
                .clock
                .timeout(crate::security::tls::FILES_DEADLINE, load)
                .await
                .map_err(|_| anyhow::anyhow!("TLS: the PEM files could not be read in time"))?;
            Some(loaded.map_err(|e| anyhow::anyhow!("TLS: {e}"))?)
        }
        None => None,
    };
    let sasl_settings = config.sasl_settings().map_err(|e| anyhow::anyhow!("{e}"))?;
    let bootstrap = bootstrap_users(&config, &env)?;
    // Made only for SASL listeners: its secret is drawn from the generator (a broker without
    // one draws nothing, and its simulated runs stay as they were).
    let sasl_context = specs.iter().any(|s| s.protocol.uses_sasl()).then(|| {
        let random = crate::security::random::SecureRandom::new(&env.rng);
        sasl::SaslContext::new(sasl_settings, random)
    });
    let mut listeners = Vec::with_capacity(specs.len());
    let mut listener_addrs = Vec::with_capacity(specs.len());
    for spec in specs {
        let listener = env.net.listen(spec.bind).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} (listener {}): {e}",
                spec.bind,
                spec.name
            )
        })?;
        listener_addrs.push((spec.name.clone(), listener.local_addr()?));
        let secured = spec.protocol.uses_tls().then(|| tls.clone()).flatten();
        listeners.push(Listening {
            name: Arc::from(spec.name),
            listener,
            tls: secured,
            sasl: sasl_context.clone().filter(|_| spec.protocol.uses_sasl()),
        });
    }
    let kafka_addr = listener_addrs
        .first()
        .map(|(_, a)| *a)
        .ok_or_else(|| anyhow::anyhow!("no listener"))?;
    let mut config = config;
    // Listening on a port the system chose: clients are told that port.
    config.advertise_bound(&listener_addrs);
    let memory = MemoryBudget::new(config.memory_budget_bytes, metrics.clone());
    let cluster = if config.clustered() {
        Some(start_cluster(&env, &config, &store, &memory, tls.clone()).await?)
    } else {
        None
    };
    let groups = Coordinator::start(
        store.clone(),
        env.clock.clone(),
        env.rng.clone(),
        crate::group::GroupConfig::from_config(&config),
        cluster.clone(),
    );
    let txns = Some(crate::txn::TxnCoordinator::start(
        store.clone(),
        env.clock.clone(),
        crate::txn::TxnConfig::from_config(&config),
        groups.clone(),
        cluster.clone(),
    ));
    let broker = Arc::new(Broker {
        groups,
        txns,
        memory,
        config: config.clone(),
        store,
        metrics: metrics.clone(),
        clock: env.clock.clone(),
        throttles: Default::default(),
        cluster,
        telemetry: crate::telemetry::ClientTelemetry::new(
            crate::telemetry::TelemetryConfig::from_config(&config),
            env.clock.clone(),
            env.rng.clone(),
        ),
        authorizer: config
            .authorizer_settings()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .map(Arc::new),
        quota_meters: Arc::new(crate::quota::Meters::new(crate::quota::Windows::of(
            &config,
        ))),
    });
    add_bootstrap_users(&broker, bootstrap, &env).await?;
    let (stop, stop_rx) = watch::channel(false);
    let metrics_addr = if config.metrics_listen.is_empty() {
        None
    } else {
        let addr: SocketAddr = config.metrics_listen.parse()?;
        let l = env
            .net
            .listen(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
        let bound = l.local_addr()?;
        let endpoints = http::Endpoints {
            metrics: metrics.clone(),
            broker: broker.clone(),
            extra: Arc::new({
                let mut r = crate::telemetry::registry(&broker.telemetry);
                let quotas_of = broker.clone();
                r.register_collector(Box::new(crate::quota::metrics::QuotaMetrics {
                    meters: broker.quota_meters.clone(),
                    quotas: Box::new(move || quotas_of.client_quotas()),
                    clock: env.clock.clone(),
                }));
                r
            }),
        };
        tokio::spawn(http::serve(
            l,
            endpoints,
            env.clock.clone(),
            stop_rx.clone(),
        ));
        Some(bound)
    };
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().reload_loop(env.clock.clone(), stop_rx.clone()));
    }
    tracing::info!(listeners = ?listener_addrs, ?metrics_addr, node_id = config.node_id, version = crate::storage::format::software_version(), "broker serving");
    let done = tokio::spawn(accept_loop(
        listeners,
        broker.clone(),
        env.clock.clone(),
        stop_rx,
    ));
    Ok(Running {
        kafka_addr,
        listener_addrs,
        metrics_addr,
        broker,
        stop,
        done,
    })
}

/// The users of `add_scram`, as changes that make each unless it exists.
fn bootstrap_users(
    config: &Config,
    env: &Env,
) -> anyhow::Result<Vec<crate::security::SecurityChange>> {
    let users = config
        .add_scram_users()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    users
        .iter()
        .map(|user| {
            let salt = || crate::security::random::SecureRandom::new(&env.rng).bytes(16);
            crate::security::metadata::bootstrap_change(user, salt)
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect()
}

/// Make the `add_scram` users that do not exist yet: on a single node before it serves; in a
/// cluster through the metadata log, tried again until the controller takes it (a broker
/// starting alone waits for its quorum).
async fn add_bootstrap_users(
    broker: &Arc<Broker>,
    changes: Vec<crate::security::SecurityChange>,
    env: &Env,
) -> anyhow::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let users: Vec<String> = changes
        .iter()
        .filter_map(|c| c.user())
        .map(String::from)
        .collect();
    let Some(cluster) = broker.cluster.clone() else {
        let outcomes = broker
            .store
            .alter_security(changes)
            .await
            .map_err(|e| anyhow::anyhow!("add_scram: {e}"))?;
        if let Some(Err(e)) = outcomes.into_iter().find(Result::is_err) {
            anyhow::bail!("add_scram: {e}");
        }
        tracing::info!(?users, "add_scram: users made unless they existed");
        return Ok(());
    };
    let clock = env.clock.clone();
    tokio::spawn(async move {
        // Ten minutes of trying, at most: a broker that has not reached its quorum by then
        // says so (and its users are made by the next start, or by the admin API).
        for _ in 0..60 {
            match cluster
                .alter_security(changes.clone(), Duration::from_secs(10))
                .await
            {
                Ok(outcomes) => {
                    match outcomes.into_iter().find(Result::is_err) {
                        Some(Err(e)) => tracing::error!(error = %e, "add_scram refused"),
                        _ => tracing::info!(?users, "add_scram: users made unless they existed"),
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "add_scram: the controller did not take it yet");
                    clock.sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tracing::error!(
            ?users,
            "add_scram: the controller did not take the users in ten minutes"
        );
    });
    Ok(())
}

/// A cluster node's replication: the inter-broker listener and transport, the multi-raft loop
/// and the controller (which starts the metadata's group and, following the metadata, every
/// partition's).
async fn start_cluster(
    env: &Env,
    config: &Config,
    store: &Arc<Store>,
    memory: &Arc<MemoryBudget>,
    tls: Option<Arc<crate::security::tls::Tls>>,
) -> anyhow::Result<Arc<crate::controller::Controller>> {
    use crate::replication::{node, transport};
    let address = config
        .inter_broker_address()
        .ok_or_else(|| anyhow::anyhow!("no inter-broker address for node {}", config.node_id))?;
    let listener = env
        .net
        .listen(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for other brokers on {address}: {e}"))?;
    let node_id = config.node_id as transport::NodeId;
    let (transport, inbox) = transport::Transport::start(
        env.clone(),
        node_id,
        listener,
        config.peers(),
        transport::TransportSettings {
            holds_data: !store.created_here(),
            tls: tls.filter(|t| t.inter_broker().is_some()),
            // A broker outside the voters tells its address in its hellos: a peer that has not
            // caught up with the metadata since it joined does not know it yet.
            advertised: (!config.voter()).then_some(address),
            refused_counter: Some(store.metrics().inter_broker_connections_refused.clone()),
            ..transport::TransportSettings::default()
        },
    );
    let replication = node::Replication::start(
        env.clone(),
        node_id,
        store.clone(),
        transport.clone(),
        inbox,
        node::RaftSettings::from_config(config),
        memory.clone(),
    );
    tracing::info!(node_id, %address, peers = %config.cluster_peers, "cluster node: inter-broker listener up");
    crate::controller::Controller::start(env.clone(), config, store.clone(), replication, transport)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the controller: {e}"))
}

/// Open (and recover) the data directory. A disk that stalls or fails while the node starts may
/// recover — a stalled fsync ends, a full disk gets space — so a transient failure is retried
/// with a growing pause (each attempt logged), as it would be while serving; corrupt data or a
/// misconfigured directory stops the start with the reason.
async fn open_store(
    env: &Env,
    config: &Config,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<Store>> {
    const PAUSE_MAX: Duration = Duration::from_secs(30);
    let mut pause = Duration::from_millis(500);
    loop {
        match Store::open(env.clone(), config, metrics.clone()).await {
            Ok(store) => return Ok(store),
            Err(e) if e.transient() => {
                tracing::warn!(data_dir = %config.data_dir.display(), error = %e, retry_in = ?pause, "cannot open the data directory yet");
                env.clock.sleep(pause).await;
                pause = (pause * 2).min(PAUSE_MAX);
            }
            Err(e) => {
                let what = format!("cannot open data directory {}", config.data_dir.display());
                return Err(anyhow::Error::new(e).context(what));
            }
        }
    }
}

/// Run until `signal` resolves, then shut down gracefully; `serving` is called once the
/// broker serves (its listeners bound, its data directory recovered: a service manager is told
/// it is ready) and `stopping` when it begins to stop.
pub async fn run_until(
    env: Env,
    config: Config,
    signal: impl Future<Output = ()>,
    serving: impl FnOnce(),
    stopping: impl FnOnce(),
) -> anyhow::Result<()> {
    tokio::pin!(signal);
    // A signal while the node is still starting (recovering, or waiting for its disk) stops it.
    let mut running = tokio::select! {
        started = start(env, config) => started?,
        _ = &mut signal => {
            tracing::info!("shutting down before the node started");
            return Ok(());
        }
    };
    serving();
    let cluster = running.broker.cluster.clone();
    let unsupported = async move {
        match cluster {
            Some(c) => c.unsupported().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = signal => {
            tracing::info!("shutting down");
            stopping();
            running.shutdown().await;
        }
        u = unsupported => {
            tracing::error!("{u}; stopping");
            stopping();
            running.shutdown().await;
            return Err(u.into());
        }
        _ = running.stopped() => {}
    }
    Ok(())
}

/// A bound listener: its name, its socket, its TLS (SSL, SASL_SSL) and its SASL (SASL_*).
struct Listening {
    name: Arc<str>,
    listener: Box<dyn Listener>,
    tls: Option<Arc<crate::security::tls::Tls>>,
    sasl: Option<Arc<sasl::SaslContext>>,
}

async fn accept_loop(
    listeners: Vec<Listening>,
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
) {
    let max = broker.config.max_connections;
    // The limits hold for the connections of every listener together.
    let limits = Limits {
        slots: Arc::new(Semaphore::new(max)),
        per_address: Arc::new(PerAddress::new("server.per_address")),
        churn: Arc::new(Churn::default()),
    };
    let loops = listeners
        .into_iter()
        .map(|l| accept_on(l, &broker, &clock, stop.clone(), &limits));
    futures::future::join_all(loops).await;
    // Drain: wait (bounded) for open connections to finish their requests.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = clock
        .timeout(DRAIN_TIME, limits.slots.acquire_many(all))
        .await;
}

/// The broker's connection limits, shared by its listeners.
struct Limits {
    slots: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    churn: Arc<Churn>,
}

/// Accept on one listener until the broker stops.
async fn accept_on(
    Listening {
        name,
        listener,
        tls,
        sasl,
    }: Listening,
    broker: &Arc<Broker>,
    clock: &Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    limits: &Limits,
) {
    let max = broker.config.max_connections;
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        let (conn, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                // Out of file descriptors and the like: do not spin.
                clock.sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let address_limit = broker.config.max_connections_for(peer.ip());
        let Some(address_slot) = limits.per_address.take(peer.ip(), address_limit) else {
            Metrics::inc(&broker.metrics.connections_rejected_per_ip, 1);
            if let Some(suppressed) = broker.throttles.refused.admit(clock.now()) {
                tracing::warn!(%peer, limit = address_limit, suppressed, "connection limit per client address reached; closing the new connection");
            }
            drop(conn);
            continue;
        };
        #[expect(
            clippy::disallowed_methods,
            reason = "max_connections: a connection past the limit is closed at once, as Kafka does"
        )]
        let slot = limits.slots.clone().try_acquire_owned();
        let Ok(permit) = slot else {
            Metrics::inc(&broker.metrics.connections_rejected, 1);
            if let Some(suppressed) = broker.throttles.refused.admit(clock.now()) {
                tracing::warn!(%peer, max, suppressed, "connection limit reached; closing the new connection");
            }
            drop(conn);
            continue;
        };
        if let Some(delay) = broker.connection_throttle(peer.ip()) {
            // Over its address's connection_creation_rate: closed unread after the delay,
            // holding its slots until then (as Kafka's delayed close).
            if let Some(suppressed) = broker.throttles.refused.admit(clock.now()) {
                tracing::info!(%peer, delay_ms = delay.as_millis() as u64, suppressed, "connection over its address's connection_creation_rate; closing it after the delay");
            }
            let clock = clock.clone();
            tokio::spawn(async move {
                clock.sleep(delay).await;
                drop((conn, address_slot, permit));
            });
            continue;
        }
        let b = broker.clone();
        let stop_conn = stop.clone();
        // At debug level: an enabled span per connection costs about 400 bytes of the log
        // registry while it lives (every line about a connection names its peer anyway).
        let span = tracing::debug_span!("conn", %peer, listener = %name);
        let churn = limits.churn.clone();
        let listener_name = name.clone();
        let (tls, sasl, clock) = (tls.clone(), sasl.clone(), clock.clone());
        churn.opened();
        tokio::spawn(
            async move {
                count_connection(&b.metrics, 1);
                let conn = match &tls {
                    None => Some((conn, None)),
                    Some(tls) => match crate::security::tls::handshake(tls, conn, &clock).await {
                        Ok(secured) => Some(secured),
                        Err(e) => {
                            Metrics::inc(&b.metrics.tls_handshakes_failed, 1);
                            if let Some(suppressed) = b.throttles.tls.admit(clock.now()) {
                                tracing::warn!(%peer, listener = %listener_name, error = %e, suppressed, "closing connection");
                            }
                            None
                        }
                    },
                };
                if let Some((conn, principal)) = conn {
                    let who = connection::Who {
                        peer,
                        listener: listener_name,
                        certificate: principal,
                    };
                    connection::serve(b.clone(), conn, who, sasl, stop_conn).await;
                }
                count_connection(&b.metrics, -1);
                drop(address_slot);
                drop(permit);
                churn.closed();
            }
            .instrument(span),
        );
    }
}

/// Open connections, to give memory back to the system after a burst of them: when the number
/// open falls to a quarter of its peak since the last time (a peak of at least
/// [`Churn::BURST`]), the allocator's free pages are released.
struct Churn {
    state: Mutex<(usize, usize)>, // (open now, peak)
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            state: Mutex::new("server.churn", (0, 0)),
        }
    }
}

impl Churn {
    const BURST: usize = 256;

    fn opened(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.1 = s.1.max(s.0);
    }

    fn closed(&self) {
        let release = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.0 = s.0.saturating_sub(1);
            let release = s.1 >= Self::BURST && s.0 <= s.1 / 4;
            if release {
                s.1 = s.0;
            }
            release
        };
        if release {
            crate::alloc::release_free_memory();
        }
    }
}
