//! `cargo xtask cluster up | down | status | add | remove ID`: a local cluster for people to
//! try — three release
//! brokers (or `up --nodes N`, up to 9) on 127.0.0.1:9092-9094 (inter-broker
//! 127.0.0.1:19092-19094, metrics 127.0.0.1:9644-9646, one further for each broker more), their
//! data and logs in one folder (`./cluster` by default, which remembers its size), each broker
//! in a process group of its own so it outlives the command (and a Ctrl-C in the terminal).
//! `up` waits until all are registered and prints how to use them; `down`
//! stops them cleanly (SIGTERM, then SIGKILL after 20 s). `up --secure` makes the production
//! configuration of the README's security section: SASL_SSL with SCRAM for clients (an admin
//! user with a fresh password, in `client.properties`), mutual TLS between the brokers,
//! the authorizer on, no PLAINTEXT listener (certificates from a CA of its own, in `certs/`);
//! a cluster once made secure stays so. `add` and `remove` grow and shrink it while it runs
//! ([`members`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::MetadataRequest;

use crate::bench::kafka::Connection;
use crate::{cargo, repo_root, target_dir};

mod members;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Build the release broker and start the cluster (a running one is left as it is).
    Up(UpArgs),
    /// Stop the cluster's brokers cleanly.
    Down(Where),
    /// Say which brokers of the cluster run.
    Status(Where),
    /// Start one broker more (the next id), which joins the running cluster.
    Add(Where),
    /// Retire broker ID: move its partitions away, stop it, unregister it.
    Remove(RemoveArgs),
}

#[derive(Args, Debug)]
struct RemoveArgs {
    #[command(flatten)]
    at: Where,
    /// The broker to retire.
    id: u16,
}

#[derive(Args, Debug)]
struct Where {
    /// The folder of the cluster's data and logs.
    #[arg(long, default_value = "cluster")]
    dir: PathBuf,
    /// A broker binary to run instead of building the release one.
    #[arg(long)]
    broker_bin: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct UpArgs {
    #[command(flatten)]
    at: Where,
    /// SASL_SSL with SCRAM for clients, mutual TLS between brokers, ACLs on, no PLAINTEXT
    /// listener (kept for a cluster made so before).
    #[arg(long)]
    secure: bool,
    /// How many brokers a new cluster has (1 to 9; a cluster made before keeps its size).
    #[arg(long)]
    nodes: Option<u16>,
    /// A broker setting for the brokers this command starts (`KEY=VALUE`, as the broker's
    /// own `--set`; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

/// The brokers of a cluster made without `--nodes` (and of the benchmarks' clusters).
pub const NODES: u16 = 3;
/// The most brokers `up --nodes` makes (their ports stay in 9092-9100 and 19092-19100).
const NODES_MAX: u16 = 9;

/// The file in a cluster's folder that says how many brokers it has.
fn size_file(dir: &Path) -> PathBuf {
    dir.join("nodes")
}

/// How many brokers the cluster in `dir` has: what `up --nodes` recorded, else [`NODES`].
pub fn size_of(dir: &Path) -> u16 {
    std::fs::read_to_string(size_file(dir))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| (1..=NODES_MAX).contains(n))
        .unwrap_or(NODES)
}

/// Record the size of a new cluster; a cluster made before keeps its own (growing one is
/// not `up`'s to do: its brokers all know the cluster's peers from their start).
fn settle_size(dir: &Path, asked: Option<u16>) -> Result<u16> {
    let made = dir.join("node1").exists();
    let size = size_of(dir);
    match asked {
        Some(n) if !(1..=NODES_MAX).contains(&n) => {
            bail!("--nodes {n}: a local cluster has 1 to {NODES_MAX} brokers")
        }
        Some(n) if made && n != size => bail!(
            "the cluster in {} has {size} brokers; remove the folder (after `cargo xtask cluster down`) to make one of {n}",
            dir.display()
        ),
        Some(n) => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(size_file(dir), format!("{n}\n"))?;
            Ok(n)
        }
        None => Ok(size),
    }
}

/// Node `node`'s Kafka port (its broker id is `node`).
pub fn client_port(node: u16) -> u16 {
    9091 + node
}

fn peer_port(node: u16) -> u16 {
    19091 + node
}

pub fn metrics_port(node: u16) -> u16 {
    9643 + node
}

pub fn run(args: &ClusterArgs) -> Result<()> {
    match &args.command {
        ClusterCommand::Up(u) => up(&u.at, u.secure, u.nodes, &u.settings),
        ClusterCommand::Down(w) => down(w),
        ClusterCommand::Status(w) => status(w),
        ClusterCommand::Add(w) => members::add(w),
        ClusterCommand::Remove(r) => members::remove(&r.at, r.id),
    }
}

fn folder(w: &Where) -> PathBuf {
    resolve(&w.dir)
}

/// A cluster folder as given (relative to the repository).
pub fn resolve(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        repo_root().join(dir)
    }
}

fn pid_file(dir: &Path, node: u16) -> PathBuf {
    dir.join(format!("node{node}")).join("broker.pid")
}

/// The pid of a node's broker, if it runs.
pub fn running(dir: &Path, node: u16) -> Option<u32> {
    running_from(&pid_file(dir, node))
}

/// The pid a pid file names, if that process runs.
pub fn running_from(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    alive(pid).then_some(pid)
}

pub fn alive(pid: u32) -> bool {
    // A broker this very process started and that has exited is a zombie until reaped: not
    // alive. (std has no kill(pid, 0), and xtask no libc: /proc tells both.)
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The release broker, built first.
pub fn release_broker() -> Result<PathBuf> {
    println!("xtask: cargo build --release -p broker");
    let status = cargo()
        .args(["build", "--release", "-p", "broker", "--bin", "broker"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p broker failed ({status})");
    }
    Ok(target_dir().join("release").join("broker"))
}

fn up(w: &Where, secure: bool, nodes: Option<u16>, settings: &[String]) -> Result<()> {
    let dir = folder(w);
    settle_size(&dir, nodes)?;
    let binary = match &w.broker_bin {
        Some(b) => b.clone(),
        None => release_broker()?,
    };
    let security = security_of(&dir, secure)?;
    for node in members::members(&dir) {
        if let Some(pid) = running(&dir, node) {
            println!("xtask: node {node} already runs (pid {pid})");
            continue;
        }
        start_node_with(&dir, node, &binary, settings)?;
    }
    after_start(&dir, security.as_ref())
}

/// A secure cluster's certificates and admin client: made (`client.properties`, `certs/`) for
/// `--secure`, read back for a cluster made so before; `None` for a PLAINTEXT one.
fn security_of(dir: &Path, secure: bool) -> Result<Option<crate::secure::SaslSsl>> {
    let made = crate::secure::cluster_client(dir)?;
    if made.is_none() && !secure {
        return Ok(None);
    }
    if made.is_none()
        && members::members(dir)
            .iter()
            .any(|&n| running(dir, n).is_some())
    {
        bail!(
            "the cluster in {} runs without security: `cargo xtask cluster down` first",
            dir.display()
        );
    }
    let certs = crate::secure::certificates(&dir.join("certs"))?;
    let client = match made {
        Some(c) => c,
        None => {
            let c = crate::secure::SaslSsl::new(
                &certs.ca,
                crate::secure::ADMIN,
                &crate::secure::new_password()?,
            )?;
            let path = dir.join("client.properties");
            std::fs::create_dir_all(dir)?;
            std::fs::write(&path, c.properties())
                .with_context(|| format!("writing {}", path.display()))?;
            c
        }
    };
    crate::secure::use_for_clients(Some(client.clone()));
    Ok(Some(client))
}

/// Start node `node`'s broker in `dir/node<N>` (its own process group, output to its log) and
/// write its pid file; returns the pid.
pub fn start_node(dir: &Path, node: u16, binary: &Path) -> Result<u32> {
    start_node_with(dir, node, binary, &[])
}

/// [`start_node`] with more settings (`key=value`, each given as `--set key=value`); a secure
/// cluster's node gets its SASL_SSL listener, certificates, authorizer and admin user too.
pub fn start_node_with(dir: &Path, node: u16, binary: &Path, settings: &[String]) -> Result<u32> {
    let mut settings = settings.to_vec();
    if let Some(client) = crate::secure::cluster_client(dir)? {
        let certs = crate::secure::certificates(&dir.join("certs"))?;
        let addr = format!("127.0.0.1:{}", client_port(node));
        let mut secure = crate::secure::broker_settings(&certs, &addr, true);
        secure.push(format!(
            "add_scram={}",
            crate::secure::add_admin(&client.password)
        ));
        settings.splice(0..0, secure);
    }
    let peers = (1..=size_of(dir))
        .map(|n| format!("{n}@127.0.0.1:{}", peer_port(n)))
        .collect::<Vec<_>>()
        .join(",");
    let node_dir = dir.join(format!("node{node}"));
    std::fs::create_dir_all(&node_dir)
        .with_context(|| format!("creating {}", node_dir.display()))?;
    let log_path = node_dir.join("broker.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let log_err = log.try_clone()?;
    let mut command = Command::new(binary);
    command
        .args(["--node-id", &node.to_string()])
        .args(["--listen", &format!("127.0.0.1:{}", client_port(node))])
        .args([
            "--metrics-listen",
            &format!("127.0.0.1:{}", metrics_port(node)),
        ])
        .arg("--data-dir")
        .arg(node_dir.join("data"))
        .args(["--set", &format!("cluster_peers={peers}")])
        .args(
            (!members::configured_voter(dir, node))
                .then(|| {
                    // Joins through any broker the cluster has now (the first voters may
                    // have retired).
                    let join: Vec<String> = members::members(dir)
                        .into_iter()
                        .filter(|&m| m != node)
                        .map(|m| format!("127.0.0.1:{}", peer_port(m)))
                        .collect();
                    [
                        format!("inter_broker_listen=127.0.0.1:{}", peer_port(node)),
                        format!("cluster_join={}", join.join(",")),
                    ]
                })
                .into_iter()
                .flatten()
                .flat_map(|kv| ["--set".to_string(), kv]),
        )
        .args(settings.iter().flat_map(|kv| ["--set", kv.as_str()]))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // Its own process group: it outlives this command and a Ctrl-C in the terminal.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    std::fs::write(pid_file(dir, node), format!("{}\n", child.id()))?;
    println!(
        "xtask: node {node} started (pid {}), log {}",
        child.id(),
        log_path.display()
    );
    Ok(child.id())
}

fn after_start(dir: &Path, secure: Option<&crate::secure::SaslSsl>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let brokers = runtime.block_on(wait_registered(dir))?;
    let now = members::members(dir);
    if secure.is_some() {
        let bootstrap = now
            .iter()
            .map(|&n| format!("localhost:{}", client_port(n)))
            .collect::<Vec<_>>()
            .join(",");
        let properties = dir.join("client.properties");
        println!(
            "\nThe cluster is up, secured: {brokers} brokers, data and logs in {dir}.\
             \n  clients          SASL_SSL, SCRAM-SHA-512, as the super user {admin} ({props})\
             \n  between brokers  mutual TLS (certificates in {dir}/certs)\
             \n  authorizer       on; {admin} is its super user, every other user needs ACLs\
             \n  bootstrap        {bootstrap}\
             \n\nTry:\
             \n  kcat -F {props} -b {bootstrap} -L\
             \n  seq 1 100 | kcat -F {props} -b {bootstrap} -P -t demo -X topic.request.required.acks=-1\
             \n  kcat -F {props} -b {bootstrap} -G demo-group demo\
             \n\nUsers and ACLs: any client's AdminClient with the same settings (README, Security).\
             \nStop them all: cargo xtask cluster down",
            dir = dir.display(),
            admin = crate::secure::ADMIN,
            props = properties.display(),
        );
        return Ok(());
    }
    let bootstrap = now
        .iter()
        .map(|&n| format!("127.0.0.1:{}", client_port(n)))
        .collect::<Vec<_>>()
        .join(",");
    let others = now
        .iter()
        .skip(1)
        .map(|&n| format!(":{}", metrics_port(n)))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "\nThe cluster is up: {brokers} brokers, data and logs in {}.\n\
         \n  bootstrap servers   {bootstrap}\
         \n  metrics             http://127.0.0.1:{}/metrics (and {others})\
         \n\nTry:\
         \n  kcat -b {bootstrap} -L\
         \n  seq 1 100 | kcat -b {bootstrap} -P -t demo -X topic.request.required.acks=-1\
         \n  kcat -b {bootstrap} -G demo-group demo\
         \n\nTopics get three replicas (or one per broker, if fewer); a node can be killed (kill -9 $(cat {}/node2/broker.pid))\
         \nand started again with `cargo xtask cluster up`; the others go on.\
         \nStop them all: cargo xtask cluster down",
        dir.display(),
        metrics_port(now[0]),
        dir.display(),
    );
    Ok(())
}

/// Wait until a node's Metadata names every broker (they have registered with the controller).
pub async fn wait_registered(dir: &Path) -> Result<usize> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer yet");
    let now = members::members(dir);
    let size = now.len();
    while tokio::time::Instant::now() < deadline {
        for &node in &now {
            if running(dir, node).is_none() {
                bail!(
                    "node {node} exited; see {}",
                    dir.join(format!("node{node}")).join("broker.log").display()
                );
            }
        }
        let addr = format!("127.0.0.1:{}", client_port(now[0]));
        match Connection::connect(&addr, Duration::from_secs(2)).await {
            Ok(mut c) => match c.call(1, &MetadataRequest::default()).await {
                Ok(md) if md.brokers.len() == size => return Ok(md.brokers.len()),
                Ok(md) => last = format!("{} of {size} brokers registered", md.brokers.len()),
                Err(e) => last = format!("{e:#}"),
            },
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the cluster did not come up within 60 s: {last}")
}

fn down(w: &Where) -> Result<()> {
    let dir = folder(w);
    let mut stopped = 0;
    for node in members::members(&dir) {
        if stop_node(&dir, node)? {
            stopped += 1;
        }
    }
    if stopped == 0 {
        println!("xtask: no broker of {} runs", dir.display());
    }
    Ok(())
}

/// Stop node `node` cleanly (SIGTERM, then SIGKILL after 20 s); whether it ran.
pub fn stop_node(dir: &Path, node: u16) -> Result<bool> {
    let Some(pid) = running(dir, node) else {
        return Ok(false);
    };
    if terminate(pid, Duration::from_secs(20)) {
        println!("xtask: node {node} (pid {pid}) stopped");
    } else {
        println!("xtask: node {node} (pid {pid}) did not stop within 20 s of SIGTERM: killed");
    }
    let _ = std::fs::remove_file(pid_file(dir, node));
    Ok(true)
}

/// SIGTERM to `pid`, then SIGKILL if it still runs after `grace`; whether it stopped by itself.
pub fn terminate(pid: u32, grace: Duration) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = std::time::Instant::now() + grace;
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !alive(pid) {
        return true;
    }
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    false
}

fn status(w: &Where) -> Result<()> {
    let dir = folder(w);
    for node in members::members(&dir) {
        match running(&dir, node) {
            Some(pid) => println!(
                "node {node}: runs (pid {pid}) on 127.0.0.1:{}",
                client_port(node)
            ),
            None => println!("node {node}: stopped"),
        }
    }
    Ok(())
}
