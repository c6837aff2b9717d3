//! The failure half of `cargo xtask bench partitions`: the broker leading the most partitions of
//! the topic is SIGKILLed, and timed until Metadata (from the brokers left) names another leader
//! for every partition it led; then it is started again (the same binary) and timed until it
//! answers Metadata with a leader for every partition (it recovered its partitions and serves),
//! and until it leads as many partitions as before (the leaderships returned to their preferred
//! replicas). The elections of each half are counted on the brokers that ran through it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::time::Instant;

use super::kafka::{self, Connection};
use super::stats::{self, MetricsSample};
use crate::cluster;

/// How long each wait of the failure half may take before the run says it did not happen.
const WAIT_MAX: Duration = Duration::from_secs(180);
const POLL_EVERY: Duration = Duration::from_millis(100);
const ELECTIONS: &str = "stillwater_raft_elections_total";

/// What the failure half measured.
pub struct Failover {
    pub node: u16,
    /// Partitions the killed broker led.
    pub led: usize,
    /// From the kill until no partition was led by it and every one had a leader; `Err`: not
    /// within [`WAIT_MAX`] (then how many still were not).
    pub moved: std::result::Result<Duration, usize>,
    pub moved_elections: f64,
    /// From the start until it answered Metadata naming a leader for every partition.
    pub serving: Option<Duration>,
    /// From the start until it led as many partitions as before (`Err`: how many it led after
    /// [`WAIT_MAX`]).
    pub led_again: std::result::Result<Duration, usize>,
    pub restart_elections: f64,
    pub rss_bytes: u64,
}

/// Kill the broker that leads the most of `topic`'s `count` partitions, then start it again.
pub async fn kill_and_restart(
    dir: &Path,
    metadata_version: i16,
    topic: &str,
    count: i32,
    timeout: Duration,
) -> Result<Failover> {
    let leaders = super::failover::any_metadata(dir, metadata_version, topic, timeout).await?;
    let mut by_node = std::collections::BTreeMap::<i32, usize>::new();
    for (id, _) in leaders.partitions.iter().flatten() {
        *by_node.entry(*id).or_default() += 1;
    }
    let (&leader_id, &led) = by_node
        .iter()
        .max_by_key(|(_, &n)| n)
        .ok_or_else(|| anyhow!("no partition of {topic} has a leader"))?;
    let node = u16::try_from(leader_id).context("a broker id that is no node of the cluster")?;
    let pid = cluster::running(dir, node).ok_or_else(|| anyhow!("node {node} does not run"))?;
    let binary: PathBuf = std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("the binary of node {node} (pid {pid})"))?;
    let others: Vec<u16> = (1..=cluster::NODES).filter(|&n| n != node).collect();
    let before = scrape(&others).await?;
    kill(pid)?;
    let killed = Instant::now();
    println!("xtask: {topic}: killed node {node} (pid {pid}), leader of {led} partitions");
    let moved = wait(killed, || async {
        let l = super::failover::any_metadata(dir, metadata_version, topic, timeout).await?;
        Ok(l.partitions
            .iter()
            .filter(|p| p.as_ref().is_none_or(|(id, _)| *id == leader_id))
            .count())
    })
    .await?;
    let moved_elections = elections(&before, &scrape(&others).await?);
    let before = scrape(&others).await?;
    let new_pid = cluster::start_node(dir, node, &binary)?;
    let started = Instant::now();
    let addr = format!("127.0.0.1:{}", cluster::client_port(node));
    let serving = wait(started, || async {
        let mut c = Connection::connect(&addr, timeout).await?;
        let l = kafka::leaders(&mut c, metadata_version, topic).await?;
        let unled = l.partitions.iter().filter(|p| p.is_none()).count();
        Ok(unled + (count as usize).saturating_sub(l.partitions.len()))
    })
    .await?
    .ok();
    let led_again = wait(started, || async {
        let l = super::failover::any_metadata(dir, metadata_version, topic, timeout).await?;
        let now = l
            .partitions
            .iter()
            .flatten()
            .filter(|(id, _)| *id == leader_id);
        Ok(led.saturating_sub(now.count()))
    })
    .await?
    .map_err(|short| led - short);
    // The restarted broker's counters began at its start.
    let own = scrape(&[node]).await?;
    let restart_elections =
        elections(&before, &scrape(&others).await?) + own[0].get(ELECTIONS).copied().unwrap_or(0.0);
    Ok(Failover {
        node,
        led,
        moved,
        moved_elections,
        serving,
        led_again,
        restart_elections,
        rss_bytes: stats::rss_bytes(new_pid),
    })
}

/// Poll `left` (how many partitions are not yet as wanted) until it is 0: the time from `from`,
/// or `Err(left)` after [`WAIT_MAX`]. A failed poll (a broker not answering yet) polls again.
async fn wait<F, Fut>(from: Instant, mut left: F) -> Result<std::result::Result<Duration, usize>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let mut last = usize::MAX;
    loop {
        match left().await {
            Ok(0) => return Ok(Ok(from.elapsed())),
            Ok(n) => last = n,
            Err(_) => {}
        }
        if from.elapsed() >= WAIT_MAX {
            return Ok(Err(last));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn kill(pid: u32) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .context("kill -KILL")?;
    if !status.success() {
        bail!("kill -KILL {pid} failed");
    }
    Ok(())
}

async fn scrape(nodes: &[u16]) -> Result<Vec<MetricsSample>> {
    let mut out = Vec::new();
    for &n in nodes {
        let addr = format!("127.0.0.1:{}", cluster::metrics_port(n));
        out.push(stats::scrape_metrics(&addr).await?);
    }
    Ok(out)
}

fn elections(before: &[MetricsSample], after: &[MetricsSample]) -> f64 {
    before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| stats::metric_delta(b, a, ELECTIONS))
        .sum()
}
