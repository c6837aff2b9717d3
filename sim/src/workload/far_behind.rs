//! Readers that fall far behind on a compacted topic (`far_behind_readers`): each stops for a
//! while — longer than `delete.retention.ms`, at times — then reads every partition from its
//! start up to the high watermark it finds, as a consumer that was away does, or one rebuilding
//! a table from a changelog. Each read is recorded whole ([`Scan`]): what it read and when it
//! passed each offset, for the checker of what such a reader is owed (`checks/scans.rs`: every
//! key's latest value, and its tombstone until the tombstone's horizon).
//!
//! Data: each read is the partition's cleaned log, a few hundred KB to a few MB; names are
//! recorded, not values.

use std::sync::Arc;
use std::time::Duration;

use io_backend::EnvRng;
use tokio::time::Instant;

use super::client::routing::{leadership_code, Conns};
use super::{wait_ready, World, RETRY_BACKOFF};
use crate::history::{value_name, Op, Scan};

/// A read from the start given up on past this (a partition without a leader for long).
const SCAN_MAX: Duration = Duration::from_secs(30);

/// One far-behind reader, until producing is over.
pub async fn read_from_start(world: Arc<World>, reader: usize) {
    let Some(c) = world.scenario.workload.compacted.clone() else {
        return;
    };
    if !wait_ready(&world).await {
        return;
    }
    let rng = EnvRng::seeded(world.seed ^ (0xFA2B_E400 + reader as u64));
    let mut over = world.producing_over.subscribe();
    let mut conns = Conns::default();
    loop {
        let [lo, hi] = c.far_behind_pause_ms;
        let pause = Duration::from_millis(rng.range_u64(lo, hi + 1));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = over.wait_for(|o| *o) => return,
        }
        for partition in 0..world.scenario.workload.partitions {
            if *over.borrow() {
                return;
            }
            let scan = scan(&world, &mut conns, reader, partition).await;
            world.record(Op::Scan(scan));
        }
    }
}

/// Read `partition` from offset 0 up to the high watermark of the first answer.
async fn scan(world: &World, conns: &mut Conns, reader: usize, partition: i32) -> Scan {
    let topic = world.scenario.workload.topic.clone();
    let mut s = Scan {
        reader,
        partition,
        started_s: world.now_s(),
        end: -1,
        spans: Vec::new(),
        records: Vec::new(),
        completed: false,
    };
    let mut next = 0;
    let give_up = Instant::now() + SCAN_MAX;
    while Instant::now() < give_up {
        let Some(leader) = world.directory.leader(&topic, partition).await else {
            tokio::time::sleep(RETRY_BACKOFF).await;
            continue;
        };
        let Some(c) = conns.get(leader, world.request_timeout_ms()).await else {
            world.directory.forget(&topic, partition);
            tokio::time::sleep(RETRY_BACKOFF).await;
            continue;
        };
        let answer = tokio::time::timeout(
            world.client_timeout(),
            c.fetch_many(&topic, &[(partition, next)], 0),
        )
        .await;
        let completed_s = world.now_s();
        match answer {
            Ok(Ok(mut answers)) => match answers.pop().map(|(_, r)| r) {
                Some(Ok((records, hw, after))) => {
                    if s.end < 0 {
                        s.end = hw;
                    }
                    let to = after.filter(|a| *a > next).unwrap_or(next);
                    s.spans.push((next, to, completed_s));
                    s.records
                        .extend(records.iter().map(|(o, v)| (*o, value_name(v))));
                    let stuck = to == next;
                    next = to;
                    if next >= s.end {
                        s.completed = true;
                        return s;
                    }
                    if stuck {
                        tokio::time::sleep(RETRY_BACKOFF).await;
                    }
                }
                Some(Err(code)) => {
                    if leadership_code(code) {
                        world.directory.forget(&topic, partition);
                    }
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                None => tokio::time::sleep(RETRY_BACKOFF).await,
            },
            Ok(Err(_)) | Err(_) => {
                conns.drop_conn(leader);
                world.directory.forget(&topic, partition);
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
    }
    s
}
