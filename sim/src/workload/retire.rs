//! Brokers retired while the workload runs (scenarios with `[[workload.retire]]`), the way an
//! operator retires one: at its time the admin moves every partition with a replica on the
//! broker (internal topics too) to the live broker holding fewest
//! (AlterPartitionReassignments, one per partition), waits until no move is in progress, stops
//! the broker for good ([`crate::world::cluster::Cluster::retire`]), unregisters it
//! (UnregisterBroker) and waits until the controller quorum names it no more
//! (DescribeQuorum). Each retirement is recorded as one admin operation — with the reason when
//! it did not end within the liveness deadline (checker `retire-unfinished`).
//!
//! Data: a handful of requests per retirement; the partitions moved carry the workload's
//! records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::client::Client;
use super::{take_or_connect, wait_ready, World};
use crate::history::{Admin, Op};

/// Kafka's BROKER_ID_NOT_REGISTERED: an earlier attempt went through.
const BROKER_ID_NOT_REGISTERED: i16 = 102;

pub async fn retirer(world: Arc<World>) {
    let plan = world.scenario.workload.retire.clone();
    if plan.is_empty() || !wait_ready(&world).await {
        return;
    }
    let mut conn: Option<Client> = None;
    let mut retired: Vec<i32> = Vec::new();
    for step in plan {
        tokio::time::sleep_until(world.start + Duration::from_secs(step.at_s)).await;
        let node = step.node as i32;
        let invoked_s = world.now_s();
        let deadline =
            Instant::now() + Duration::from_secs(world.scenario.expect.liveness_deadline_s * 2);
        let mut stage = Stage::Move;
        let mut last = String::from("not begun");
        while stage != Stage::Done && Instant::now() < deadline {
            match step_once(&world, &mut conn, node, &retired, &mut stage).await {
                Ok(()) => {}
                Err(why) => {
                    last = why;
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let error = (stage != Stage::Done).then(|| format!("stuck at {stage:?}: {last}"));
        world.record(Op::Admin(Admin {
            what: format!("retire broker {node}"),
            invoked_s,
            completed_s: world.now_s(),
            error,
        }));
        retired.push(node);
    }
}

/// A request's answer, or why there is none.
fn answer<T>(
    r: Result<Result<T, super::client::ClientError>, tokio::time::error::Elapsed>,
) -> Result<T, String> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e}")),
        Err(_) => Err("no answer".to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Move,
    WaitMoves,
    Unregister,
    WaitQuorum,
    Done,
}

/// One step of a retirement, or why it could not be made now.
async fn step_once(
    world: &World,
    conn: &mut Option<Client>,
    node: i32,
    retired: &[i32],
    stage: &mut Stage,
) -> Result<(), String> {
    let c = take_or_connect(world, conn)
        .await
        .ok_or("no broker answered")?;
    let timeout = world.client_timeout();
    match *stage {
        Stage::Move => {
            let placement = answer(tokio::time::timeout(timeout, c.placement()).await)?;
            let mut load: BTreeMap<i32, usize> = placement
                .brokers
                .iter()
                .filter(|b| **b != node && !retired.contains(b))
                .map(|b| (*b, 0))
                .collect();
            for (_, _, replicas) in &placement.partitions {
                for r in replicas {
                    if let Some(n) = load.get_mut(r) {
                        *n += 1;
                    }
                }
            }
            for (topic, partition, replicas) in &placement.partitions {
                if !replicas.contains(&node) {
                    continue;
                }
                let Some((&to, _)) = load
                    .iter()
                    .filter(|(b, _)| !replicas.contains(b))
                    .min_by_key(|(_, n)| **n)
                else {
                    return Err(format!("no broker to move {topic}-{partition} to"));
                };
                *load.get_mut(&to).expect("a candidate") += 1;
                let target: Vec<i32> = replicas
                    .iter()
                    .map(|&b| if b == node { to } else { b })
                    .collect();
                let code = answer(
                    tokio::time::timeout(
                        timeout,
                        c.alter_reassignment(topic, *partition, Some(&target)),
                    )
                    .await,
                )?;
                if code != 0 {
                    return Err(format!("moving {topic}-{partition}: error code {code}"));
                }
            }
            *stage = Stage::WaitMoves;
            Ok(())
        }
        Stage::WaitMoves => {
            let left = answer(tokio::time::timeout(timeout, c.moves_in_progress()).await)?;
            if left > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(());
            }
            // Moved off, as far as the metadata said when asked; the broker goes for good.
            let placement = answer(tokio::time::timeout(timeout, c.placement()).await)?;
            if placement
                .partitions
                .iter()
                .any(|(_, _, r)| r.contains(&node))
            {
                *stage = Stage::Move;
                return Ok(());
            }
            world.retire(node as usize);
            *stage = Stage::Unregister;
            Ok(())
        }
        Stage::Unregister => {
            match answer(tokio::time::timeout(timeout, c.unregister_broker(node)).await)? {
                0 | BROKER_ID_NOT_REGISTERED => {
                    *stage = Stage::WaitQuorum;
                    Ok(())
                }
                code => Err(format!("UnregisterBroker: error code {code}")),
            }
        }
        Stage::WaitQuorum => {
            let (voters, observers) = answer(tokio::time::timeout(timeout, c.quorum()).await)?;
            if voters.contains(&node) || observers.contains(&node) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(());
            }
            *stage = Stage::Done;
            Ok(())
        }
        Stage::Done => Ok(()),
    }
}
