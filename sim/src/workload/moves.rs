//! Moving partitions (scenarios with `[workload.moves]`): an admin moves a partition of the
//! workload topic, drawn from the seed, to brokers drawn from the seed
//! (AlterPartitionReassignments), and now and then cancels the move soon after, while the
//! producers and consumers run and the faults strike; it stops `quiet_s` before producing
//! does and then waits until no move is in progress (ListPartitionReassignments). Each request
//! is recorded as an admin operation; what the brokers applied is judged by
//! [`crate::checks::moves`].
//!
//! Data: one small request every `interval_ms`; the partitions moved carry the workload's own
//! records (a new replica catches up on everything its partition holds).

use std::sync::Arc;
use std::time::Duration;

use io_backend::EnvRng;
use tokio::time::Instant;

use super::client::{Client, ClientError};
use super::{take_or_connect, wait_ready, World};
use crate::history::{Admin, Moving, Op};

/// How often the watcher of moves asks which partitions are moving.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Which partitions are moving, as an operator sees it (ListPartitionReassignments every
/// 250 ms), each stretch of time recorded ([`Moving`]): for the checker of what a move costs
/// in availability (`[expect] writes_during_moves_s`).
pub async fn watch(world: Arc<World>) {
    if !wait_ready(&world).await {
        return;
    }
    let topic = world.scenario.workload.topic.clone();
    let partitions = world.scenario.workload.partitions.max(1);
    let mut conn: Option<Client> = None;
    let mut since: std::collections::BTreeMap<i32, f64> = Default::default();
    let mut last_s = world.now_s();
    while Instant::now() < world.end {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(c) = take_or_connect(&world, &mut conn).await else {
            continue;
        };
        let listed =
            tokio::time::timeout(world.client_timeout(), c.reassigning(&topic, partitions)).await;
        let Ok(Ok(listed)) = listed else {
            conn = None;
            continue;
        };
        let now_s = world.now_s();
        last_s = now_s;
        for &p in &listed {
            since.entry(p).or_insert(now_s);
        }
        let over: Vec<i32> = since
            .keys()
            .copied()
            .filter(|p| !listed.contains(p))
            .collect();
        for partition in over {
            let from_s = since.remove(&partition).unwrap_or(now_s);
            world.record(Op::Moving(Moving {
                partition,
                from_s,
                to_s: now_s,
                ended: true,
            }));
        }
    }
    for (partition, from_s) in since {
        world.record(Op::Moving(Moving {
            partition,
            from_s,
            to_s: last_s,
            ended: false,
        }));
    }
}

/// A delay of about `ms` milliseconds (from half to one and a half of it).
fn about(rng: &EnvRng, ms: u64) -> Duration {
    Duration::from_millis(rng.range_u64(ms / 2, ms + ms / 2 + 1))
}

pub async fn mover(world: Arc<World>) {
    let Some(spec) = world.scenario.workload.moves.clone() else {
        return;
    };
    if !wait_ready(&world).await {
        return;
    }
    let rng = EnvRng::seeded(world.seed ^ 0x6d6f_7665);
    let topic = world.scenario.workload.topic.clone();
    let partitions = world.scenario.workload.partitions.max(1);
    let brokers = world.scenario.cluster.nodes as i32;
    let stop_at = world
        .end
        .checked_sub(Duration::from_secs(spec.quiet_s))
        .unwrap_or(world.start);
    let mut conn: Option<Client> = None;
    tokio::time::sleep_until(world.start + Duration::from_secs(spec.from_s)).await;
    while Instant::now() < stop_at {
        tokio::time::sleep(about(&rng, spec.interval_ms)).await;
        let partition = rng.range_u64(0, partitions as u64) as i32;
        let mut all: Vec<i32> = (1..=brokers).collect();
        let mut target = Vec::with_capacity(spec.replicas);
        while target.len() < spec.replicas && !all.is_empty() {
            let at = rng.range_u64(0, all.len() as u64) as usize;
            target.push(all.swap_remove(at));
        }
        let what = format!("move {topic}-{partition} to {target:?}");
        if !ask(&world, &mut conn, what, &topic, partition, Some(&target)).await {
            continue;
        }
        if rng.range_u64(0, 100) < spec.cancel_percent {
            tokio::time::sleep(about(&rng, spec.interval_ms / 3 + 1)).await;
            let what = format!("cancel the move of {topic}-{partition}");
            ask(&world, &mut conn, what, &topic, partition, None).await;
        }
    }
    // Wait until every move has ended (bounded by the run: the checker judges what did not).
    let deadline = Instant::now() + Duration::from_secs(world.scenario.expect.liveness_deadline_s);
    let invoked_s = world.now_s();
    let mut pending: Result<Vec<i32>, String> = Err("never asked".into());
    while Instant::now() < deadline {
        if let Some(c) = take_or_connect(&world, &mut conn).await {
            pending = match tokio::time::timeout(
                world.client_timeout(),
                c.reassigning(&topic, partitions),
            )
            .await
            {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => {
                    conn = None;
                    Err("no answer".into())
                }
            };
            if pending.as_ref().is_ok_and(|p| p.is_empty()) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    world.record(Op::Admin(Admin {
        what: "moves ended".into(),
        invoked_s,
        completed_s: world.now_s(),
        error: match pending {
            Ok(p) if p.is_empty() => None,
            Ok(p) => Some(format!("partitions {p:?} still moving")),
            Err(e) => Some(e),
        },
    }));
}

/// One AlterPartitionReassignments, recorded; whether the broker took it.
async fn ask(
    world: &World,
    conn: &mut Option<Client>,
    what: String,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
) -> bool {
    let Some(c) = take_or_connect(world, conn).await else {
        return false;
    };
    let invoked_s = world.now_s();
    let r = tokio::time::timeout(
        world.client_timeout(),
        c.alter_reassignment(topic, partition, target),
    )
    .await;
    let error = match &r {
        Ok(Ok(0)) => None,
        Ok(Ok(code)) => Some(format!("error code {code}")),
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer".into()),
    };
    if !matches!(r, Ok(Ok(_)) | Ok(Err(ClientError::Kafka(_)))) {
        *conn = None;
    }
    let taken = error.is_none();
    world.record(Op::Admin(Admin {
        what,
        invoked_s,
        completed_s: world.now_s(),
        error,
    }));
    taken
}
