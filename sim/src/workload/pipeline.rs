//! The transactional workload's consume-transform-produce pipeline
//! (`[workload.transactions.pipeline]`): worker `w` (transactional id `pipe-<w>`) reads its
//! input partitions at `read_committed` from its group's committed offsets and moves each
//! value it reads, under a name of its own ([`pipeline_output`]), to an output partition of the
//! same topic,
//! committing its new input offsets inside the same transaction — AddPartitionsToTxn,
//! AddOffsetsToTxn, the writes, TxnOffsetCommit, EndTxn — as Kafka Streams at `exactly_once_v2`
//! does. With more than one instance a worker has zombies: instances of one transactional id
//! running at once, each InitProducerId fencing the instance before it, whose calls still in
//! flight must then be refused; with `stall_every`, an instance stops now and then just before
//! its commit, so that its commit comes after the other instance took over.
//!
//! Each transaction is recorded as the producers' are ([`TxnOp`]: its outputs are the
//! writes), so the transactional checker judges the output as it judges the input; once
//! producing ends each worker records its group's committed offsets ([`PipelineOffsets`]) for
//! the pipeline's exactly-once check ([`crate::checks::pipeline`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::txn::{ensure_topic, settings, Producer};
use crate::history::txn::pipeline_output;
use crate::history::{Op, PipelineOffsets, TxnOp, TxnOutcome};
use crate::scenario::{Pipeline, TxnWorkload};
use crate::workload::client::routing::leadership_code;
use crate::workload::client::ClientError;
use crate::workload::{value, wait_ready, World, DRAIN_MAX, RETRY_BACKOFF};

/// PRODUCER_FENCED and INVALID_PRODUCER_EPOCH: another instance took the transactional id.
fn fenced(e: &ClientError) -> bool {
    matches!(e, ClientError::Kafka(90 | 47))
}

/// Worker `worker`: its instances until the workload's end, then its committed offsets.
pub async fn work(world: Arc<World>, worker: usize) {
    if !wait_ready(&world).await {
        return;
    }
    let t = settings(&world);
    let pipe = t.pipeline.clone().expect("a pipeline");
    ensure_topic(&world, &t).await;
    let instances = (0..pipe.instances.max(1)).map(|k| run_instance(&world, &t, &pipe, worker, k));
    futures::future::join_all(instances).await;
    record_offsets(&world, &t, &pipe, worker).await;
}

/// The input partitions of `worker`.
fn inputs(t: &TxnWorkload, pipe: &Pipeline, worker: usize) -> Vec<i32> {
    let read = if pipe.feedback {
        t.all_partitions()
    } else {
        t.partitions
    };
    (0..read)
        .filter(|p| *p as usize % pipe.workers.max(1) == worker)
        .collect()
}

/// One instance of a worker, until the workload's end.
async fn run_instance(world: &World, t: &TxnWorkload, pipe: &Pipeline, worker: usize, k: usize) {
    let index = t.producers + worker * pipe.instances.max(1) + k;
    let mut p = Producer::new(index, format!("pipe-{worker}"));
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let mut n = 0u64;
    // A zombie starts later, as an instance thought dead comes back.
    tokio::time::sleep(Duration::from_secs(3 * k as u64)).await;
    while Instant::now() < world.end {
        if p.ids.is_none() {
            match start(world, t, pipe, &mut p, worker).await {
                Ok(at) => positions = at,
                Err(e) => {
                    p.start_over();
                    let pause = if fenced(&e) { 1 + 2 * k as u64 } else { 0 };
                    tokio::time::sleep(Duration::from_millis(500 + 1_000 * pause)).await;
                    continue;
                }
            }
        }
        let turn = n as usize;
        let read = read_inputs(world, t, &mut p, &mut positions, (pipe.batch, turn)).await;
        if read.is_empty() {
            tokio::time::sleep(Duration::from_millis(t.poll_interval_ms)).await;
            continue;
        }
        n += 1;
        if let Err(e) = move_once(world, t, pipe, &mut p, (worker, k, n), &read).await {
            p.start_over();
            if fenced(&e) {
                tokio::time::sleep(Duration::from_secs(1 + 2 * k as u64)).await;
            }
        }
    }
}

/// InitProducerId (fencing the other instances and aborting what they left open), then the
/// group's committed offsets of the worker's inputs: where it reads from.
async fn start(
    world: &World,
    t: &TxnWorkload,
    pipe: &Pipeline,
    p: &mut Producer,
    worker: usize,
) -> Result<BTreeMap<i32, i64>, ClientError> {
    let (id, timeout_ms) = (p.id.clone(), t.timeout_ms);
    let ids = p
        .ask(world, |c| {
            let id = id.clone();
            Box::pin(async move { c.init_producer(Some(&id), timeout_ms).await })
        })
        .await?;
    p.ids = Some(ids);
    let committed = committed_offsets(world, t, pipe, p, worker).await?;
    Ok(committed.into_iter().map(|(q, o)| (q, o.max(0))).collect())
}

/// The group's committed offsets of `worker`'s inputs, asked with `require_stable` (-1: none).
async fn committed_offsets(
    world: &World,
    t: &TxnWorkload,
    pipe: &Pipeline,
    p: &mut Producer,
    worker: usize,
) -> Result<Vec<(i32, i64)>, ClientError> {
    let (group, topic, parts) = (pipe.group.clone(), t.topic.clone(), inputs(t, pipe, worker));
    p.ask_group(world, &pipe.group, |c| {
        let (group, topic, parts) = (group.clone(), topic.clone(), parts.clone());
        Box::pin(async move { c.committed_offsets(&group, &topic, &parts).await })
    })
    .await
}

/// Up to `batch` values of the worker's inputs from `positions`, at `read_committed`, the
/// partitions taken in turn from the `turn`-th:
/// (partition, offset, name). A partition read past records it does not take (markers,
/// aborted records) moves its position on.
async fn read_inputs(
    world: &World,
    t: &TxnWorkload,
    p: &mut Producer,
    positions: &mut BTreeMap<i32, i64>,
    (batch, turn): (usize, usize),
) -> Vec<(i32, i64, String)> {
    let mut out = Vec::new();
    let timeout_ms = i32::try_from(world.scenario.workload.request_timeout_ms).unwrap_or(i32::MAX);
    // Each read starts at the next partition, so that none waits behind the others.
    let mut order: Vec<i32> = positions.keys().copied().collect();
    let len = order.len().max(1);
    order.rotate_left(turn % len);
    for partition in order {
        if out.len() >= batch {
            break;
        }
        let position = positions.get_mut(&partition).expect("listed");
        let Some(addr) = world.directory.leader(&t.topic, partition).await else {
            continue;
        };
        let Some(c) = p.conns.get(addr, timeout_ms).await else {
            world.directory.forget(&t.topic, partition);
            continue;
        };
        let fetched = tokio::time::timeout(
            world.client_timeout(),
            c.fetch_committed(&t.topic, &[(partition, *position)], 0),
        )
        .await;
        match fetched.map(|r| r.map(|mut a| a.pop().map(|(_, r)| r))) {
            Ok(Ok(Some(Ok((records, _hw, _lso, next))))) => {
                let room = batch - out.len();
                if records.len() > room {
                    *position = records[room].0;
                } else if let Some(next) = next {
                    *position = (*position).max(next);
                }
                out.extend(
                    records
                        .iter()
                        .take(room)
                        .map(|(o, v)| (partition, *o, crate::history::value_name(v))),
                );
            }
            Ok(Ok(Some(Err(code)))) if leadership_code(code) => {
                world.directory.forget(&t.topic, partition);
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => {
                p.conns.drop_conn(addr);
                world.directory.forget(&t.topic, partition);
            }
        }
    }
    out
}

/// Move `read` in one transaction (`worker`, instance, `n`), recorded; an error when the
/// instance must start over (its transaction then aborted, or its commit unknown).
async fn move_once(
    world: &World,
    t: &TxnWorkload,
    pipe: &Pipeline,
    p: &mut Producer,
    (worker, k, n): (usize, usize, u64),
    read: &[(i32, i64, String)],
) -> Result<(), ClientError> {
    let ids = p.ids.expect("initialised");
    let invoked_s = world.now_s();
    let out_of = |partition: i32| t.partitions + partition % pipe.output_partitions.max(1);
    let writes: Vec<(i32, String)> = read
        .iter()
        .enumerate()
        .map(|(j, (q, _, _))| (out_of(*q), pipeline_output(worker, k, n, j)))
        .collect();
    let outputs: Vec<i32> = writes
        .iter()
        .map(|(q, _)| *q)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Where each input partition's reading goes on from once this commits.
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for (q, o, _) in read {
        offsets.insert(*q, o + 1);
    }
    let offsets: Vec<(i32, i64)> = offsets.into_iter().collect();
    let (id, topic, group) = (p.id.clone(), t.topic.clone(), pipe.group.clone());
    let mut end_invoked_s = None;
    let result: Result<(), ClientError> = async {
        p.ask(world, |c| {
            let (id, topic, outputs) = (id.clone(), topic.clone(), outputs.clone());
            Box::pin(async move { c.add_partitions_to_txn(&id, ids, &topic, &outputs).await })
        })
        .await?;
        p.ask(world, |c| {
            let (id, group) = (id.clone(), group.clone());
            Box::pin(async move { c.add_offsets_to_txn(&id, ids, &group).await })
        })
        .await?;
        for (partition, name) in &writes {
            let record = (name.clone().into(), value(name, t.value_bytes));
            if p.write(world, &t.topic, *partition, record).await.is_err() {
                return Err(ClientError::Kafka(-1));
            }
        }
        p.ask_group(world, &pipe.group, |c| {
            let (id, group, topic, offsets) =
                (id.clone(), group.clone(), topic.clone(), offsets.clone());
            Box::pin(async move {
                c.txn_offset_commit(&id, ids, &group, &topic, &offsets)
                    .await
            })
        })
        .await?;
        if pipe.stall_every > 0 && n.is_multiple_of(pipe.stall_every) {
            // A zombie in the making: the other instance may fence this one meanwhile.
            tokio::time::sleep(Duration::from_millis(pipe.stall_ms)).await;
        }
        end_invoked_s = Some(world.now_s());
        p.ask(world, |c| {
            let id = id.clone();
            Box::pin(async move { c.end_txn(&id, ids, true).await })
        })
        .await
    }
    .await;
    let outcome = match (&result, end_invoked_s) {
        (Ok(()), _) => TxnOutcome::Committed,
        (Err(_), None) => TxnOutcome::Aborted,
        (Err(_), Some(_)) => TxnOutcome::Unknown,
    };
    world.record(Op::Txn(TxnOp {
        producer: p.index,
        n,
        writes,
        reads: read.iter().map(|(_, _, name)| name.clone()).collect(),
        invoked_s,
        end_invoked_s,
        completed_s: world.now_s(),
        outcome,
    }));
    result
}

/// Once producing ended: the worker's committed offsets, asked until no transaction of it is
/// open (an abandoned one ends by its timeout) or [`DRAIN_MAX`] passed.
async fn record_offsets(world: &World, t: &TxnWorkload, pipe: &Pipeline, worker: usize) {
    let until = Instant::now() + DRAIN_MAX;
    let mut p = Producer::new(usize::MAX, format!("pipe-{worker}"));
    while Instant::now() < until {
        if let Ok(offsets) = committed_offsets(world, t, pipe, &mut p, worker).await {
            world.record(Op::PipelineOffsets(PipelineOffsets {
                worker,
                offsets,
                at_s: world.now_s(),
            }));
            return;
        }
        tokio::time::sleep(RETRY_BACKOFF).await;
    }
}
