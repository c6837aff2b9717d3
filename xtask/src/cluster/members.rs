//! `cargo xtask cluster add` and `cluster remove ID`: a local cluster that grows and shrinks
//! while it runs. The brokers of the cluster as made (`up --nodes N`, ids 1..=N) are the
//! controller quorum's voters named by every broker's `cluster_peers`; the folder's `members`
//! file lists the brokers it has now.
//! - `add` starts the next id (inter-broker address of its own) and waits until Metadata
//!   names it; it takes new partitions at once, existing ones when moved.
//! - `remove ID` retires a broker the way an operator would with Kafka's tools: every
//!   partition with a replica on it (internal topics too) is moved to the broker that holds
//!   fewest (AlterPartitionReassignments), the moves are waited for (ListPartitionReassignments),
//!   the broker is stopped, unregistered (UnregisterBroker), and the controller quorum is waited
//!   for until it no longer names it (DescribeQuorum: a retired voter is replaced by another
//!   broker).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::{
    alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic},
    describe_quorum_request::{PartitionData, TopicData},
    AlterPartitionReassignmentsRequest, BrokerId, DescribeQuorumRequest,
    ListPartitionReassignmentsRequest, MetadataRequest, TopicName, UnregisterBrokerRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{client_port, size_of, start_node, stop_node, Where};
use crate::bench::kafka::{error_name, Connection};

/// The highest broker id a local cluster takes (its ports stay below 9112 and 19112).
pub const ID_MAX: u16 = 20;

fn members_file(dir: &Path) -> std::path::PathBuf {
    dir.join("members")
}

/// The brokers the cluster in `dir` has now: the `members` file, else 1..=its size.
pub fn members(dir: &Path) -> Vec<u16> {
    let listed: Vec<u16> = std::fs::read_to_string(members_file(dir))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .filter(|n| (1..=ID_MAX).contains(n))
        .collect();
    if listed.is_empty() {
        (1..=size_of(dir)).collect()
    } else {
        listed
    }
}

fn set_members(dir: &Path, members: &[u16]) -> Result<()> {
    let text: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    std::fs::write(members_file(dir), text.join(" ") + "\n")
        .with_context(|| format!("writing {}", members_file(dir).display()))
}

/// Whether broker `node` is one of the controller's voters as configured (the cluster as
/// made); any other joins as an observer and needs an inter-broker address of its own.
pub fn configured_voter(dir: &Path, node: u16) -> bool {
    node <= size_of(dir)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A connection to a running member other than `except`.
async fn connect_other(dir: &Path, except: Option<u16>) -> Result<Connection> {
    let mut last = None;
    for node in members(dir) {
        if Some(node) == except || super::running(dir, node).is_none() {
            continue;
        }
        match Connection::connect(
            &format!("127.0.0.1:{}", client_port(node)),
            Duration::from_secs(30),
        )
        .await
        {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no other broker of the cluster runs")))
}

pub fn add(w: &Where) -> Result<()> {
    let dir = super::folder(w);
    let mut now = members(&dir);
    if !dir.join("node1").exists() {
        bail!(
            "no cluster in {}: `cargo xtask cluster up` first",
            dir.display()
        );
    }
    let id = now.iter().copied().max().unwrap_or(0) + 1;
    if id > ID_MAX {
        bail!("a local cluster's broker ids go up to {ID_MAX}");
    }
    let binary = match &w.broker_bin {
        Some(b) => b.clone(),
        None => super::release_broker()?,
    };
    start_node(&dir, id, &binary)?;
    now.push(id);
    set_members(&dir, &now)?;
    let brokers = runtime()?.block_on(super::wait_registered(&dir))?;
    println!(
        "\nBroker {id} joined: {brokers} brokers, it on 127.0.0.1:{} (log {}).\
         \nNew topics use it at once; move existing partitions to it with any admin client's\
         \nAlterPartitionReassignments (e.g. kafka-python's alter_partition_reassignments).\
         \nRetire a broker: cargo xtask cluster remove ID",
        client_port(id),
        dir.join(format!("node{id}")).join("broker.log").display()
    );
    Ok(())
}

pub fn remove(w: &Where, id: u16) -> Result<()> {
    let dir = super::folder(w);
    let now = members(&dir);
    if !now.contains(&id) {
        bail!("broker {id} is not one of the cluster's ({now:?})");
    }
    let rest: Vec<u16> = now.iter().copied().filter(|&n| n != id).collect();
    runtime()?.block_on(async {
        let mut c = connect_other(&dir, Some(id)).await?;
        let moved = move_off(&mut c, id, &rest).await?;
        println!("xtask: {moved} partitions moved off broker {id}");
        stop_node(&dir, id)?;
        let r = c
            .call(
                0,
                &UnregisterBrokerRequest::default().with_broker_id(BrokerId(id as i32)),
            )
            .await?;
        if r.error_code != 0 {
            bail!(
                "UnregisterBroker {id}: {} {}",
                error_name(r.error_code),
                r.error_message.map(|m| m.to_string()).unwrap_or_default()
            );
        }
        wait_quorum_without(&mut c, id).await
    })?;
    set_members(&dir, &rest)?;
    println!("xtask: broker {id} retired; the cluster is {rest:?}");
    Ok(())
}

/// Move every partition with a replica on `id` to the broker of `rest` holding fewest replicas
/// (and none of it), and wait for the moves to end. Returns how many partitions moved.
async fn move_off(c: &mut Connection, id: u16, rest: &[u16]) -> Result<usize> {
    let md = c
        .call(1, &MetadataRequest::default().with_topics(None))
        .await?;
    let mut load: BTreeMap<i32, usize> = rest.iter().map(|&n| (n as i32, 0)).collect();
    for t in &md.topics {
        for p in &t.partitions {
            for r in &p.replica_nodes {
                if let Some(n) = load.get_mut(&r.0) {
                    *n += 1;
                }
            }
        }
    }
    let mut topics = Vec::new();
    let mut moved = 0;
    for t in &md.topics {
        let Some(name) = &t.name else { continue };
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
            if !replicas.contains(&(id as i32)) {
                continue;
            }
            let Some((&to, _)) = load
                .iter()
                .filter(|(b, _)| !replicas.contains(b))
                .min_by_key(|(_, n)| **n)
            else {
                bail!(
                    "{}-{}: no other broker to move its replica on {id} to",
                    name.0,
                    p.partition_index
                );
            };
            *load.get_mut(&to).expect("a candidate") += 1;
            let target = replicas
                .iter()
                .map(|&b| BrokerId(if b == id as i32 { to } else { b }))
                .collect();
            partitions.push(
                ReassignablePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_replicas(Some(target)),
            );
            moved += 1;
        }
        if !partitions.is_empty() {
            topics.push(
                ReassignableTopic::default()
                    .with_name(name.clone())
                    .with_partitions(partitions),
            );
        }
    }
    if topics.is_empty() {
        return Ok(0);
    }
    let r = c
        .call(
            0,
            &AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(topics),
        )
        .await?;
    if r.error_code != 0 {
        bail!("AlterPartitionReassignments: {}", error_name(r.error_code));
    }
    for t in &r.responses {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "moving {}-{}: {} {}",
                    t.name.0,
                    p.partition_index,
                    error_name(p.error_code),
                    p.error_message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default()
                );
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1800);
    loop {
        let l = c
            .call(
                0,
                &ListPartitionReassignmentsRequest::default().with_timeout_ms(30_000),
            )
            .await?;
        let left: usize = l.topics.iter().map(|t| t.partitions.len()).sum();
        if left == 0 {
            return Ok(moved);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{left} moves off broker {id} still in progress after 30 min");
        }
        println!("xtask: {left} of {moved} moves in progress");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Wait until DescribeQuorum names `id` neither as a voter nor as an observer.
async fn wait_quorum_without(c: &mut Connection, id: u16) -> Result<()> {
    let ask = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default()])]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let q = c.call(0, &ask).await?;
        let p = q
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .context("DescribeQuorum named no partition")?;
        let named = p
            .current_voters
            .iter()
            .chain(&p.observers)
            .any(|r| r.replica_id.0 == id as i32);
        if !named {
            let voters: Vec<i32> = p.current_voters.iter().map(|r| r.replica_id.0).collect();
            println!("xtask: the controller quorum's voters are {voters:?}");
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the controller quorum still names broker {id} after 2 min");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
