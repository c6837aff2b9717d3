//! The transactional workload, on a topic of its own: producers running one transaction after
//! another as Kafka's Java producer does (InitProducerId with their transactional id,
//! AddPartitionsToTxn, one idempotent transactional batch per partition, EndTxn — commit, or
//! on purpose every `abort_every`-th time abort), and readers at `read_committed` polling every
//! partition from its start, then reading on after producing ends until they reach every
//! partition's last stable offset. Every transaction and every read is recorded
//! ([`crate::history::txn`]) for the transactional checker ([`crate::checks::txn`]).
//!
//! A producer that cannot finish a transaction (a write or AddPartitionsToTxn that fails for
//! good, its coordinator gone past its patience) gives it up before asking to commit and starts
//! over with InitProducerId, which aborts it: the transaction is known aborted. Only a commit
//! asked for without a definite answer leaves a transaction's outcome unknown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::history::{Op, TxnDrained, TxnOp, TxnOutcome, TxnRead};
use crate::scenario::TxnWorkload;
use crate::workload::client::routing::leadership_code;
use crate::workload::client::{Client, ClientError, TOPIC_ALREADY_EXISTS};
use crate::workload::{value, wait_ready, wall_ms, World, DRAIN_MAX, RETRY_BACKOFF};

/// Kafka's codes a transactional producer retries its call on (at the same coordinator, or
/// after finding it again): COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
/// NOT_COORDINATOR, CONCURRENT_TRANSACTIONS, REQUEST_TIMED_OUT.
fn coordinator_retriable(code: i16) -> bool {
    matches!(code, 14 | 15 | 16 | 51 | 7)
}

/// Attempts at one call before the transaction is given up.
const ATTEMPTS: u32 = 20;

pub(super) fn settings(world: &World) -> TxnWorkload {
    world
        .scenario
        .workload
        .transactions
        .clone()
        .expect("a transactional workload")
}

/// The topic made (by whichever producer or reader gets there first).
pub(super) async fn ensure_topic(world: &World, t: &TxnWorkload) {
    loop {
        if let Some(mut c) = world.connect().await {
            let made = tokio::time::timeout(
                Duration::from_secs(15),
                c.create_topic_with(
                    &t.topic,
                    t.all_partitions(),
                    &t.compacted
                        .as_ref()
                        .map(|c| c.topic_configs())
                        .unwrap_or_default(),
                ),
            )
            .await;
            match made {
                Ok(Ok(())) | Ok(Err(ClientError::Kafka(TOPIC_ALREADY_EXISTS))) => return,
                _ => {}
            }
        }
        if Instant::now() >= world.end {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One producer's state between transactions.
pub(super) struct Producer {
    pub index: usize,
    pub id: String,
    pub ids: Option<(i64, i16)>,
    sequences: BTreeMap<i32, i32>,
    coordinator: Option<Client>,
    group_coordinator: Option<Client>,
    pub conns: crate::workload::client::routing::Conns,
}

impl Producer {
    /// Producer `index` of transactional id `id`, not initialised yet.
    pub fn new(index: usize, id: String) -> Self {
        Producer {
            index,
            id,
            ids: None,
            sequences: BTreeMap::new(),
            coordinator: None,
            group_coordinator: None,
            conns: Default::default(),
        }
    }

    /// Call the transaction coordinator until `call` answers or fails for good; the last
    /// error.
    pub async fn ask<T>(
        &mut self,
        world: &World,
        call: impl for<'c> FnMut(&'c mut Client) -> BoxFuture<'c, Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        ask_coordinator(world, &mut self.coordinator, &self.id, 1, call).await
    }

    /// Call `group`'s coordinator as [`Producer::ask`] calls the transaction coordinator.
    pub async fn ask_group<T>(
        &mut self,
        world: &World,
        group: &str,
        call: impl for<'c> FnMut(&'c mut Client) -> BoxFuture<'c, Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        ask_coordinator(world, &mut self.group_coordinator, group, 0, call).await
    }

    /// Write `value` to `partition` in the open transaction: Ok once acknowledged; Err when it
    /// failed for good or its outcome stayed unknown.
    pub async fn write(
        &mut self,
        world: &World,
        topic: &str,
        partition: i32,
        (key, value): (bytes::Bytes, bytes::Bytes),
    ) -> Result<(), ()> {
        let (pid, epoch) = self.ids.ok_or(())?;
        let sequence = *self.sequences.get(&partition).unwrap_or(&0);
        for _ in 0..ATTEMPTS {
            let Some(addr) = world.directory.leader(topic, partition).await else {
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            };
            let timeout_ms =
                i32::try_from(world.scenario.workload.request_timeout_ms).unwrap_or(i32::MAX);
            let Some(c) = self.conns.get(addr, timeout_ms).await else {
                world.directory.forget(topic, partition);
                continue;
            };
            let sent = c.produce_transactional(
                &self.id,
                topic,
                partition,
                wall_ms(),
                (key.clone(), value.clone()),
                (pid, epoch, sequence),
            );
            match tokio::time::timeout(world.client_timeout(), sent).await {
                Ok(Ok(_)) => {
                    self.sequences.insert(partition, sequence.wrapping_add(1));
                    return Ok(());
                }
                Ok(Err(ClientError::Kafka(code))) if leadership_code(code) => {
                    world.directory.forget(topic, partition);
                }
                // Retriable: NOT_ENOUGH_REPLICAS(_AFTER_APPEND), REQUEST_TIMED_OUT,
                // KAFKA_STORAGE_ERROR, CONCURRENT_TRANSACTIONS (the coordinator was busy with a
                // verification).
                Ok(Err(ClientError::Kafka(19 | 20 | 7 | 56 | 51))) => {}
                Ok(Err(ClientError::Kafka(_))) => return Err(()),
                Ok(Err(_)) | Err(_) => {
                    self.conns.drop_conn(addr);
                    world.directory.forget(topic, partition);
                }
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
        Err(())
    }

    /// Start over: the next transaction begins with InitProducerId (which aborts any open
    /// one, and restarts the sequences at a new epoch).
    pub fn start_over(&mut self) {
        self.ids = None;
        self.sequences.clear();
        self.coordinator = None;
    }
}

/// Call the coordinator of `key` (key type 0: a group; 1: a transactional id), on the
/// connection kept in `slot`, until `call` answers or fails for good; the last error.
async fn ask_coordinator<T>(
    world: &World,
    slot: &mut Option<Client>,
    key: &str,
    key_type: i8,
    mut call: impl for<'c> FnMut(&'c mut Client) -> BoxFuture<'c, Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let mut last = ClientError::Kafka(15);
    for _ in 0..ATTEMPTS {
        if slot.is_none() {
            *slot = world.coordinator_of(key, key_type).await;
        }
        let Some(c) = slot.as_mut() else {
            continue;
        };
        match tokio::time::timeout(world.client_timeout(), call(c)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(ClientError::Kafka(code))) if coordinator_retriable(code) => {
                last = ClientError::Kafka(code);
                if code != 51 && code != 14 {
                    *slot = None;
                }
            }
            Ok(Err(e @ ClientError::Kafka(_))) => return Err(e),
            Ok(Err(e)) => {
                last = e;
                *slot = None;
            }
            Err(_) => {
                last = ClientError::Kafka(7);
                *slot = None;
            }
        }
        tokio::time::sleep(RETRY_BACKOFF).await;
    }
    Err(last)
}

/// Transactional producer `index` until the workload's end.
pub async fn produce(world: Arc<World>, index: usize) {
    if !wait_ready(&world).await {
        return;
    }
    let t = settings(&world);
    ensure_topic(&world, &t).await;
    let mut p = Producer::new(index, format!("txn-{index}"));
    let mut n = 0u64;
    while Instant::now() < world.end {
        if p.ids.is_none() {
            let (id, timeout_ms) = (p.id.clone(), t.timeout_ms);
            match p
                .ask(&world, |c| {
                    let id = id.clone();
                    Box::pin(async move { c.init_producer(Some(&id), timeout_ms).await })
                })
                .await
            {
                Ok(ids) => p.ids = Some(ids),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        n += 1;
        run_one(&world, &t, &mut p, n).await;
        tokio::time::sleep(Duration::from_millis(t.interval_ms)).await;
    }
}

/// Transaction `n` of producer `p`, recorded.
async fn run_one(world: &World, t: &TxnWorkload, p: &mut Producer, n: u64) {
    let ids = p.ids.expect("initialised");
    let parts: Vec<i32> = (0..t.partitions_per_txn.min(t.partitions as usize))
        .map(|k| ((p.index as u64 * 7 + n * 3 + k as u64) % t.partitions as u64) as i32)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let invoked_s = world.now_s();
    let mut writes = Vec::new();
    let id = p.id.clone();
    let topic = t.topic.clone();
    let added = {
        let parts = parts.clone();
        p.ask(world, |c| {
            let (id, topic, parts) = (id.clone(), topic.clone(), parts.clone());
            Box::pin(async move { c.add_partitions_to_txn(&id, ids, &topic, &parts).await })
        })
        .await
    };
    let mut written = added.is_ok();
    if written {
        for &partition in &parts {
            let name = format!("x{}-{n}-{partition}", p.index);
            writes.push((partition, name.clone()));
            let record = (name.clone().into(), value(&name, t.value_bytes));
            if p.write(world, &t.topic, partition, record).await.is_err() {
                written = false;
                break;
            }
        }
    }
    let aborted_on_purpose = t.abort_every > 0 && n.is_multiple_of(t.abort_every);
    let commit = written && !aborted_on_purpose;
    let mut end_invoked_s = None;
    let outcome = if !written {
        // Given up before a commit was asked for: the next InitProducerId aborts it.
        p.start_over();
        TxnOutcome::Aborted
    } else {
        end_invoked_s = Some(world.now_s());
        let ended = p
            .ask(world, |c| {
                let id = id.clone();
                Box::pin(async move { c.end_txn(&id, ids, commit).await })
            })
            .await;
        match (ended, commit) {
            (Ok(()), true) => TxnOutcome::Committed,
            (Ok(()), false) => TxnOutcome::Aborted,
            (Err(_), true) => {
                p.start_over();
                TxnOutcome::Unknown
            }
            (Err(_), false) => {
                p.start_over();
                TxnOutcome::Aborted
            }
        }
    };
    world.record(Op::Txn(TxnOp {
        producer: p.index,
        n,
        writes,
        reads: Vec::new(),
        invoked_s,
        end_invoked_s,
        completed_s: world.now_s(),
        outcome,
    }));
}

/// Reader `reader` at `read_committed`: every partition from its start, until it has read up
/// to every partition's last stable offset after producing ended (within [`DRAIN_MAX`]).
pub async fn read(world: Arc<World>, reader: usize) {
    if !wait_ready(&world).await {
        return;
    }
    let t = settings(&world);
    ensure_topic(&world, &t).await;
    let mut positions: BTreeMap<i32, i64> = (0..t.all_partitions()).map(|p| (p, 0)).collect();
    let mut stable: BTreeMap<i32, i64> = BTreeMap::new();
    let mut conns = crate::workload::client::routing::Conns::default();
    let mut over = world.producing_over.subscribe();
    let mut drain_until: Option<Instant> = None;
    loop {
        if drain_until.is_none() && *over.borrow_and_update() {
            drain_until = Some(Instant::now() + DRAIN_MAX);
            stable.clear();
        }
        if let Some(until) = drain_until {
            let caught_up = positions
                .iter()
                .all(|(p, pos)| stable.get(p).is_some_and(|lso| pos >= lso));
            if caught_up || Instant::now() >= until {
                world.record(Op::TxnDrained(TxnDrained {
                    reader,
                    at_s: world.now_s(),
                    complete: caught_up,
                }));
                return;
            }
        }
        for (&partition, position) in positions.iter_mut() {
            let Some(addr) = world.directory.leader(&t.topic, partition).await else {
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            };
            let timeout_ms =
                i32::try_from(world.scenario.workload.request_timeout_ms).unwrap_or(i32::MAX);
            let Some(c) = conns.get(addr, timeout_ms).await else {
                world.directory.forget(&t.topic, partition);
                continue;
            };
            let invoked_s = world.now_s();
            let fetched = tokio::time::timeout(
                world.client_timeout(),
                c.fetch_committed(&t.topic, &[(partition, *position)], 50),
            )
            .await;
            let answer = match fetched {
                Ok(Ok(mut a)) => a.pop().map(|(_, r)| r),
                Ok(Err(_)) | Err(_) => {
                    conns.drop_conn(addr);
                    world.directory.forget(&t.topic, partition);
                    None
                }
            };
            match answer {
                Some(Ok((records, _hw, lso, next))) => {
                    let from = *position;
                    if let Some(next) = next {
                        *position = (*position).max(next);
                    }
                    stable.insert(partition, lso);
                    world.record(Op::TxnRead(TxnRead {
                        reader,
                        partition,
                        from,
                        records: records
                            .iter()
                            .map(|(o, v)| (*o, crate::history::value_name(v)))
                            .collect(),
                        last_stable: lso,
                        invoked_s,
                        completed_s: world.now_s(),
                    }));
                }
                Some(Err(code)) if leadership_code(code) => {
                    world.directory.forget(&t.topic, partition);
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(t.poll_interval_ms)).await;
    }
}
