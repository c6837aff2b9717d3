//! `cargo xtask kafka up | down | status`: Apache Kafka itself ([`VERSION`], KRaft, each node
//! broker and controller at once) on this machine, beside the broker, for the tests and
//! benchmarks that ask Kafka how it behaves.
//!
//! Kafka comes from Maven Central: `xtask/kafka/pom.xml` names it, Maven resolves it into the
//! local repository under the target directory (the Java tests' own), and xtask asks Maven for
//! its class path once (`<target>/kafka/<version>.classpath`); nothing is installed or built. A
//! run's folder (`./kafka-peer` by default) holds each node's configuration, data, log
//! (`node<N>/kafka.log`) and pid file; its nodes run in process groups of their own, so they
//! outlive the command, and `down` stops them by their pids (SIGTERM, SIGKILL after 30 s).
//!
//! Ports, apart from the broker's (9092–9100, 19092–19100): node N's PLAINTEXT listener on
//! 127.0.0.1:2909(1+N), its controller listener on 2919(1+N), its SASL_PLAINTEXT listener
//! (SCRAM-SHA-256 and -512, user [`SCRAM_USER`]) on 2929(1+N), its SSL listener on 2939(1+N)
//! and its SASL_SSL listener on 2949(1+N). TLS presents a certificate for localhost and
//! 127.0.0.1 signed by a CA of the run (`certs/ca.pem`; made as the local cluster's are). The
//! differential suite's own runs and the benchmarks' start higher (29600, 30100, 30600), so
//! that all may run at once. Topics and internal topics are made with Kafka's defaults,
//! replicated `min(3, nodes)` ways. A heap of [`HEAP`] per node suits this two-core machine.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::{repo_root, target_dir};

/// The Kafka release run (the pom's `kafka.version`).
pub const VERSION: &str = "4.4.0";
/// Each node's Java heap.
const HEAP: &str = "512m";
/// The SCRAM user made when the storage is formatted.
pub const SCRAM_USER: (&str, &str) = ("admin", "admin-secret");
/// How long a node may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The most nodes `up --nodes` makes.
const NODES_MAX: u16 = 3;

#[derive(Args, Debug)]
pub struct KafkaArgs {
    #[command(subcommand)]
    command: KafkaCommand,
}

#[derive(Subcommand, Debug)]
enum KafkaCommand {
    /// Resolve Kafka with Maven, format the storage of a new run and start its nodes.
    Up(UpArgs),
    /// Stop the run's nodes (SIGTERM, SIGKILL after 30 s).
    Down(Where),
    /// Say which nodes of the run are running.
    Status(Where),
}

#[derive(Args, Debug)]
struct Where {
    /// The run's folder: each node's configuration, data, log and pid file.
    #[arg(long, default_value = "kafka-peer")]
    dir: PathBuf,
}

#[derive(Args, Debug)]
struct UpArgs {
    #[command(flatten)]
    at: Where,
    /// Nodes: 1 or 3 (a run made before keeps its size).
    #[arg(long, default_value_t = 1)]
    nodes: u16,
}

pub fn run(args: &KafkaArgs) -> Result<()> {
    match &args.command {
        KafkaCommand::Up(u) => {
            let kafka = Kafka::up(&crate::cluster::resolve(&u.at.dir), u.nodes, BASE_PORT)?;
            println!(
                "xtask: Kafka {VERSION} runs: {} (SASL_PLAINTEXT with SCRAM user {}: {}; SSL: \
                 {}; SASL_SSL: {}; the certificates' CA: {}); stop it with `cargo xtask kafka \
                 down`",
                kafka.bootstrap,
                SCRAM_USER.0,
                kafka.sasl_bootstrap,
                kafka.ssl_bootstrap,
                kafka.sasl_ssl_bootstrap,
                kafka.ca.display()
            );
            Ok(())
        }
        KafkaCommand::Down(w) => {
            let dir = crate::cluster::resolve(&w.dir);
            if stop_all(&dir) == 0 {
                println!("xtask: no Kafka node of {} runs", dir.display());
            }
            Ok(())
        }
        KafkaCommand::Status(w) => {
            let dir = crate::cluster::resolve(&w.dir);
            for node in 1..=size_of(&dir).unwrap_or(0) {
                match running(&dir, node) {
                    Some(pid) => println!(
                        "node {node}: runs (pid {pid}) on 127.0.0.1:{}",
                        client_port(BASE_PORT, node)
                    ),
                    None => println!("node {node}: stopped"),
                }
            }
            Ok(())
        }
    }
}

/// How a run's nodes are launched: each node's Java heap and settings beyond the run's own.
#[derive(Clone, Debug)]
pub struct Launch {
    /// `-Xms` and `-Xmx`: [`HEAP`] for the tests; Kafka's start script gives 1 GB.
    pub heap: String,
    /// More `key=value` lines for each node's `server.properties` (later lines win).
    pub settings: Vec<String>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            heap: HEAP.to_string(),
            settings: Vec::new(),
        }
    }
}

/// A running Kafka of `nodes` nodes in `dir`.
pub struct Kafka {
    pub dir: PathBuf,
    pub nodes: u16,
    /// The PLAINTEXT listeners, `host:port,…`.
    pub bootstrap: String,
    /// The SASL_PLAINTEXT listeners (SCRAM, [`SCRAM_USER`]).
    pub sasl_bootstrap: String,
    /// The SSL listeners.
    pub ssl_bootstrap: String,
    /// The SASL_SSL listeners (SCRAM, [`SCRAM_USER`]).
    pub sasl_ssl_bootstrap: String,
    /// The CA that signed the nodes' certificate (PEM).
    pub ca: PathBuf,
}

impl Kafka {
    /// Start the nodes of the run in `dir` (formatting its storage first if it is new) and wait
    /// until each serves; nodes already running are left as they are.
    pub fn up(dir: &Path, nodes: u16, base: u16) -> Result<Kafka> {
        Kafka::up_with(dir, nodes, base, &Launch::default())
    }

    /// [`Kafka::up`], its nodes launched as `launch` says.
    pub fn up_with(dir: &Path, nodes: u16, base: u16, launch: &Launch) -> Result<Kafka> {
        if !(1..=NODES_MAX).contains(&nodes) {
            bail!("--nodes {nodes}: Kafka runs here with 1 to {NODES_MAX} nodes");
        }
        let nodes = match size_of(dir) {
            Some(made) if made != nodes => bail!(
                "the Kafka run in {} has {made} nodes; `cargo xtask kafka down` and remove the \
                 folder to make one of {nodes}",
                dir.display()
            ),
            _ => nodes,
        };
        let classpath = format!("{}:{}", classpath()?, witness()?.display());
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("nodes"), format!("{nodes}\n"))?;
        let cluster_id = cluster_id(dir)?;
        let tls = keystore(dir)?;
        let mut started = Vec::new();
        for node in 1..=nodes {
            if let Some(pid) = running(dir, node) {
                println!("xtask: Kafka node {node} already runs (pid {pid})");
                continue;
            }
            let config = write_config(dir, node, nodes, base, &tls, &launch.settings)?;
            if !node_dir(dir, node)
                .join("data")
                .join("meta.properties")
                .is_file()
            {
                format(&classpath, &config, &cluster_id, dir, node)?;
            }
            started.push((node, start(&classpath, &launch.heap, &config, dir, node)?));
        }
        for (node, log_from) in started {
            wait_started(dir, node, base, log_from)?;
        }
        let listeners = |port: fn(u16, u16) -> u16| {
            (1..=nodes)
                .map(|n| format!("127.0.0.1:{}", port(base, n)))
                .collect::<Vec<_>>()
                .join(",")
        };
        Ok(Kafka {
            dir: dir.to_path_buf(),
            nodes,
            bootstrap: listeners(client_port),
            sasl_bootstrap: listeners(sasl_port),
            ssl_bootstrap: listeners(ssl_port),
            sasl_ssl_bootstrap: listeners(sasl_ssl_port),
            ca: tls.ca,
        })
    }

    /// The pids of the nodes that run.
    pub fn pids(&self) -> Vec<u32> {
        (1..=self.nodes)
            .filter_map(|node| running(&self.dir, node))
            .collect()
    }

    /// Stop every node (SIGTERM, SIGKILL after 30 s).
    pub fn down(&self) {
        stop_all(&self.dir);
    }
}

/// The first client port of a run made by `cargo xtask kafka up`.
pub const BASE_PORT: u16 = 29092;
/// The first client port of the differential suite's single-node run and of its three-node
/// run (so that all may run at once; a run spans 403 ports).
const DIFFERENTIAL_BASE_PORT: u16 = 29600;
const DIFFERENTIAL_CLUSTER_BASE_PORT: u16 = 30100;

/// Node `node`'s ports in a run whose first client port is `base`: its client listener, its
/// controller listener (100 above) and its SASL listener (200 above).
fn client_port(base: u16, node: u16) -> u16 {
    base + node - 1
}

fn controller_port(base: u16, node: u16) -> u16 {
    base + 100 + node - 1
}

fn sasl_port(base: u16, node: u16) -> u16 {
    base + 200 + node - 1
}

fn ssl_port(base: u16, node: u16) -> u16 {
    base + 300 + node - 1
}

fn sasl_ssl_port(base: u16, node: u16) -> u16 {
    base + 400 + node - 1
}

/// The TLS files of a run.
struct Tls {
    /// The CA clients trust.
    ca: PathBuf,
    /// The nodes' private key and certificate chain in one PEM file (Kafka's PEM key store).
    keystore: PathBuf,
}

/// The run's certificate (made first, with [`crate::secure::certificates`]) and its key store.
fn keystore(dir: &Path) -> Result<Tls> {
    let certs = crate::secure::certificates(&dir.join("certs"))?;
    let keystore = dir.join("certs").join("keystore.pem");
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    std::fs::write(
        &keystore,
        read(&certs.key)? + &read(&certs.cert)? + &read(&certs.ca)?,
    )?;
    Ok(Tls {
        ca: certs.ca,
        keystore,
    })
}

fn node_dir(dir: &Path, node: u16) -> PathBuf {
    dir.join(format!("node{node}"))
}

fn pid_file(dir: &Path, node: u16) -> PathBuf {
    node_dir(dir, node).join("kafka.pid")
}

fn log_file(dir: &Path, node: u16) -> PathBuf {
    node_dir(dir, node).join("kafka.log")
}

/// How many nodes the run in `dir` was made with.
fn size_of(dir: &Path) -> Option<u16> {
    std::fs::read_to_string(dir.join("nodes"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pid of node `node`'s Kafka, if it runs.
pub fn running(dir: &Path, node: u16) -> Option<u32> {
    crate::cluster::running_from(&pid_file(dir, node))
}

/// Stop every running node of the run in `dir` at once (SIGTERM to each, then SIGKILL to any
/// that still runs after 30 s: the last node of a three-node run stopped alone would wait for
/// a controller quorum that is gone); how many ran.
pub fn stop_all(dir: &Path) -> usize {
    let nodes: Vec<(u16, u32)> = (1..=size_of(dir).unwrap_or(0))
        .filter_map(|node| Some((node, running(dir, node)?)))
        .collect();
    let stopped: Vec<(u16, u32, bool)> = std::thread::scope(|s| {
        let stopping: Vec<_> = nodes
            .iter()
            .map(|&(node, pid)| {
                s.spawn(move || {
                    let gentle = crate::cluster::terminate(pid, Duration::from_secs(30));
                    (node, pid, gentle)
                })
            })
            .collect();
        stopping
            .into_iter()
            .map(|t| t.join().expect("a stopping thread does not panic"))
            .collect()
    });
    for &(node, pid, gentle) in &stopped {
        if gentle {
            println!("xtask: Kafka node {node} (pid {pid}) stopped");
        } else {
            println!("xtask: Kafka node {node} (pid {pid}) did not stop within 30 s: killed");
        }
        let _ = std::fs::remove_file(pid_file(dir, node));
    }
    stopped.len()
}

/// Kafka's class path, asked of Maven once per version (`dependency:build-classpath` on
/// `xtask/kafka/pom.xml`, into the target directory's local repository).
pub fn classpath() -> Result<String> {
    let file = target_dir()
        .join("kafka")
        .join(format!("{VERSION}.classpath"));
    if let Ok(cp) = std::fs::read_to_string(&file) {
        if cp.split(':').all(|jar| Path::new(jar).is_file()) && !cp.trim().is_empty() {
            return Ok(cp.trim().to_string());
        }
    }
    if let Some(why) = crate::test::ensure_package("mvn", "-v", "maven", "Kafka cannot run") {
        bail!("{why}");
    }
    std::fs::create_dir_all(file.parent().expect("in the target directory"))?;
    let mut resolve = Command::new("mvn");
    resolve
        .args(["-B", "-ntp", "-q", "-f"])
        .arg(repo_root().join("xtask/kafka/pom.xml"))
        .arg("dependency:build-classpath")
        .arg(format!("-Dkafka.version={VERSION}"))
        .arg(format!("-Dmdep.outputFile={}", file.display()))
        .arg(format!(
            "-Dmaven.repo.local={}",
            target_dir().join("m2").display()
        ));
    crate::test::step(
        &format!("Apache Kafka {VERSION} (Maven: xtask/kafka/pom.xml)"),
        resolve,
    )?;
    Ok(std::fs::read_to_string(&file)?.trim().to_string())
}

/// The folder of the telemetry witness's class (`xtask/kafka/witness`: a metrics reporter
/// that makes Kafka serve client telemetry, KIP-714, as it does only with a reporter that
/// receives clients' metrics), compiled against Kafka's class path when its source is newer.
fn witness() -> Result<PathBuf> {
    let source = repo_root().join("xtask/kafka/witness/TelemetryWitness.java");
    let out = target_dir()
        .join("kafka")
        .join(format!("witness-{VERSION}"));
    let class = out.join("dev/stillwater/witness/TelemetryWitness.class");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&class).is_some() && modified(&class) >= modified(&source) {
        return Ok(out);
    }
    std::fs::create_dir_all(&out)?;
    let mut javac = Command::new("javac");
    javac
        .arg("-d")
        .arg(&out)
        .arg("-cp")
        .arg(classpath()?)
        .arg(&source);
    crate::test::step("compile Kafka's telemetry witness (javac)", javac)?;
    Ok(out)
}

/// The run's cluster id, made once (22 characters of base64url, as Kafka's).
fn cluster_id(dir: &Path) -> Result<String> {
    let file = dir.join("cluster.id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        return Ok(id.trim().to_string());
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // As Kafka's own ids, never one that starts with '-' (a command line would read it as an
    // option: one in 64 did, and `kafka-storage format -t` refused it).
    loop {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .context("reading /dev/urandom")?;
        let mut bits = u128::from_be_bytes(bytes);
        let mut id = String::new();
        for _ in 0..22 {
            id.push(ALPHABET[(bits >> 122) as usize] as char);
            bits <<= 6;
        }
        if !id.starts_with('-') {
            std::fs::write(&file, &id)?;
            return Ok(id);
        }
    }
}

/// Node `node`'s `server.properties`, written (again) into its folder.
fn write_config(
    dir: &Path,
    node: u16,
    nodes: u16,
    base: u16,
    tls: &Tls,
    settings: &[String],
) -> Result<PathBuf> {
    let node_dir = node_dir(dir, node);
    std::fs::create_dir_all(&node_dir)?;
    let voters = (1..=nodes)
        .map(|n| format!("{n}@127.0.0.1:{}", controller_port(base, n)))
        .collect::<Vec<_>>()
        .join(",");
    let replicas = nodes.min(3);
    let config = format!(
        "# Written by cargo xtask kafka up.\n\
         process.roles=broker,controller\n\
         node.id={node}\n\
         controller.quorum.voters={voters}\n\
         listeners=PLAINTEXT://127.0.0.1:{client},SASL_PLAINTEXT://127.0.0.1:{sasl},SSL://127.0.0.1:{ssl},SASL_SSL://127.0.0.1:{sasl_ssl},CONTROLLER://127.0.0.1:{controller}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:{client},SASL_PLAINTEXT://127.0.0.1:{sasl},SSL://127.0.0.1:{ssl},SASL_SSL://127.0.0.1:{sasl_ssl}\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT\n\
         controller.listener.names=CONTROLLER\n\
         inter.broker.listener.name=PLAINTEXT\n\
         sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512\n\
         listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
         listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
         listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
         listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
         ssl.keystore.type=PEM\n\
         ssl.keystore.location={keystore}\n\
         ssl.truststore.type=PEM\n\
         ssl.truststore.location={ca}\n\
         log.dirs={data}\n\
         offsets.topic.replication.factor={replicas}\n\
         transaction.state.log.replication.factor={replicas}\n\
         transaction.state.log.min.isr={min_isr}\n\
         share.coordinator.state.topic.replication.factor={replicas}\n\
         share.coordinator.state.topic.min.isr={min_isr}\n\
         default.replication.factor={replicas}\n\
         metric.reporters=dev.stillwater.witness.TelemetryWitness\n",
        client = client_port(base, node),
        sasl = sasl_port(base, node),
        ssl = ssl_port(base, node),
        sasl_ssl = sasl_ssl_port(base, node),
        keystore = tls.keystore.display(),
        ca = tls.ca.display(),
        controller = controller_port(base, node),
        data = node_dir.join("data").display(),
        min_isr = replicas.min(2),
    );
    let config = settings
        .iter()
        .fold(config, |config, line| config + line + "\n");
    let path = node_dir.join("server.properties");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// A Java command on Kafka's class path with a heap of `heap` and the garbage collector's
/// settings Kafka's start scripts give, its logging to standard output.
fn java(classpath: &str, heap: &str, dir: &Path) -> Command {
    java_logging(classpath, heap, dir, "log4j2.properties")
}

/// One of Kafka's command-line tools (`class`, e.g. `org.apache.kafka.tools.TopicCommand`)
/// with a heap of `heap`, its logging (warnings) to standard error.
pub fn tool(classpath: &str, heap: &str, class: &str) -> Command {
    let mut command = java_logging(classpath, heap, &repo_root(), "log4j2-tools.properties");
    command.arg(class).stdin(Stdio::null());
    command
}

fn java_logging(classpath: &str, heap: &str, dir: &Path, logging: &str) -> Command {
    let mut command = Command::new("java");
    command
        .arg(format!("-Xmx{heap}"))
        .arg(format!("-Xms{heap}"))
        .args([
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
        ])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            repo_root().join("xtask/kafka").join(logging).display()
        ))
        .arg("-cp")
        .arg(classpath)
        .current_dir(dir);
    command
}

/// Format node `node`'s storage (`kafka-storage.sh format`) with the SCRAM user.
fn format(classpath: &str, config: &Path, cluster_id: &str, dir: &Path, node: u16) -> Result<()> {
    let (user, password) = SCRAM_USER;
    let mut format = java(classpath, HEAP, dir);
    format
        .arg("kafka.tools.StorageTool")
        .args(["format", &format!("--cluster-id={cluster_id}"), "-c"])
        .arg(config)
        .args([
            "--add-scram",
            &format!("SCRAM-SHA-256=[name={user},password=\"{password}\"]"),
        ])
        .args([
            "--add-scram",
            &format!("SCRAM-SHA-512=[name={user},password=\"{password}\"]"),
        ])
        .stdout(Stdio::null());
    crate::test::step(&format!("format Kafka node {node}'s storage"), format)
}

/// Start node `node` in a process group of its own, its output to its log; the log's length
/// before it started.
fn start(classpath: &str, heap: &str, config: &Path, dir: &Path, node: u16) -> Result<u64> {
    let log_path = log_file(dir, node);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let from = log.metadata()?.len();
    let mut command = java(classpath, heap, dir);
    command
        .arg("kafka.Kafka")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .context("starting java (is a JDK 17 or newer installed?)")?;
    std::fs::write(pid_file(dir, node), format!("{}\n", child.id()))?;
    println!(
        "xtask: Kafka node {node} started (pid {}), log {}",
        child.id(),
        log_path.display()
    );
    Ok(from)
}

/// Wait until node `node` says it has started and takes connections.
fn wait_started(dir: &Path, node: u16, base: u16, log_from: u64) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let log_path = log_file(dir, node);
    loop {
        if running(dir, node).is_none() {
            bail!(
                "Kafka node {node} exited while starting: see {}",
                log_path.display()
            );
        }
        let started = std::fs::File::open(&log_path).ok().is_some_and(|f| {
            let mut reader = BufReader::new(f);
            let _ = std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(log_from));
            reader
                .lines()
                .map_while(Result::ok)
                .any(|l| l.contains("Kafka Server started"))
        });
        if started && TcpStream::connect(("127.0.0.1", client_port(base, node))).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "Kafka node {node} did not start within {} s: see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `cargo xtask differential`: the differential suite (`tests/integration/test_differential.py`)
/// against a fresh single-node Kafka and a fresh three-node one (in
/// `<target>/kafka-differential` and `…-cluster`, stopped after) and brokers of `broker_bin`
/// the suite starts.
pub fn differential(python: &Path, broker_bin: &Path) -> Result<()> {
    let fresh = |name: &str, nodes: u16, base: u16| -> Result<Kafka> {
        let dir = target_dir().join(name);
        stop_all(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        Kafka::up(&dir, nodes, base)
    };
    let kafka = fresh("kafka-differential", 1, DIFFERENTIAL_BASE_PORT)?;
    let cluster = match fresh(
        "kafka-differential-cluster",
        3,
        DIFFERENTIAL_CLUSTER_BASE_PORT,
    ) {
        Ok(cluster) => cluster,
        Err(e) => {
            kafka.down();
            return Err(e);
        }
    };
    let certs = kafka
        .ca
        .parent()
        .expect("the CA is in the run's certs folder");
    let mut pytest = Command::new(python);
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg("tests/integration/test_differential.py")
        .current_dir(repo_root())
        .env("STILLWATER_BROKER_BIN", broker_bin)
        .env("STILLWATER_KAFKA_BOOTSTRAP", &kafka.bootstrap)
        .env("STILLWATER_KAFKA_SASL_BOOTSTRAP", &kafka.sasl_bootstrap)
        .env("STILLWATER_KAFKA_SSL_BOOTSTRAP", &kafka.ssl_bootstrap)
        .env(
            "STILLWATER_KAFKA_SASL_SSL_BOOTSTRAP",
            &kafka.sasl_ssl_bootstrap,
        )
        .env("STILLWATER_KAFKA_CERTS", certs)
        .env("STILLWATER_KAFKA_CLUSTER_BOOTSTRAP", &cluster.bootstrap);
    let outcome = crate::test::step(
        &format!(
            "differential tests against Kafka {VERSION} in {} (one node) and {} (three)",
            kafka.dir.display(),
            cluster.dir.display()
        ),
        pytest,
    );
    kafka.down();
    cluster.down();
    outcome
}

#[derive(Args, Debug)]
pub struct DifferentialArgs {
    /// The broker binary (default: the release build, built first).
    #[arg(long)]
    broker_bin: Option<PathBuf>,
}

pub fn run_differential(args: &DifferentialArgs) -> Result<()> {
    let broker_bin = match &args.broker_bin {
        Some(b) => b.clone(),
        None => crate::cluster::release_broker()?,
    };
    let python = crate::test::python_env(&repo_root().join("tests/integration/requirements.txt"))?;
    differential(&python, &broker_bin)
}
