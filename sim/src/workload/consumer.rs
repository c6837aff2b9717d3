//! The consumers of a run: each assigned every partition, reading from the earliest offset,
//! one fetch to each leader in turn, every poll recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::{lock, wait_ready, World, DRAIN_MAX, OFFSET_OUT_OF_RANGE, RETRY_BACKOFF};
use crate::history::{Op, Poll, PollResult};
use crate::workload::client::routing::{leadership_code, Conns};
use crate::workload::client::{Client, FetchedPartition};

/// One consumer, assigned every partition, reading from the earliest offset; once producing is
/// over it reads on until it has reached every partition's high watermark (bounded).
pub async fn consume(world: Arc<World>, consumer: usize) {
    if !wait_ready(&world).await {
        return;
    }
    let w = &world.scenario.workload;
    let mut positions: BTreeMap<i32, i64> = (0..w.partitions).map(|p| (p, 0)).collect();
    let mut high_watermarks: BTreeMap<i32, i64> = BTreeMap::new();
    let mut session = 0u32;
    let mut conns = Conns::default();
    let mut over = world.producing_over.subscribe();
    let mut drain_until: Option<Instant> = None;
    let mut turn = 0usize;
    loop {
        if drain_until.is_none() && *over.borrow_and_update() {
            drain_until = Some(Instant::now() + DRAIN_MAX);
            // Only high watermarks seen after producing ended count as the end.
            high_watermarks.clear();
        }
        if let Some(until) = drain_until {
            let caught_up = positions
                .iter()
                .all(|(p, pos)| high_watermarks.get(p).is_some_and(|hw| pos >= hw));
            if caught_up || Instant::now() >= until {
                return;
            }
        }
        // The partitions by their leaders: one fetch to each (all of them to the one broker).
        // Leaders as known; the metadata asked for once a turn if any is unknown, and one
        // backoff a turn however many partitions have no leader now (one each would stall the
        // consumer for minutes on thousands of partitions).
        let known = |by_leader: &mut BTreeMap<SocketAddr, Vec<(i32, i64)>>| {
            by_leader.clear();
            let mut leaderless = false;
            for (&p, &o) in &positions {
                match world.directory.known_leader(&w.topic, p) {
                    Some(addr) => by_leader.entry(addr).or_default().push((p, o)),
                    None => leaderless = true,
                }
            }
            leaderless
        };
        let mut by_leader: BTreeMap<SocketAddr, Vec<(i32, i64)>> = BTreeMap::new();
        if known(&mut by_leader) {
            world.directory.refresh(&w.topic).await;
            if known(&mut by_leader) {
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
        turn += 1;
        for (leader, mut asked) in by_leader {
            // A fetch's answer is filled in the order asked, up to its size limit: the order
            // turns each time, as Kafka's consumers turn theirs, so that on thousands of
            // partitions the last ones are not left behind the first ones' backlog.
            let len = asked.len().max(1);
            asked.rotate_left((turn * 7919) % len);
            let Some(c) = conns.get(leader, world.request_timeout_ms()).await else {
                for (p, _) in &asked {
                    world.directory.forget(&w.topic, *p);
                }
                continue;
            };
            poll_leader(
                &world,
                world.broker_index(leader),
                (consumer, session),
                c,
                &asked,
                &mut positions,
                &mut high_watermarks,
            )
            .await
            .map_or_else(
                || {
                    conns.drop_conn(leader);
                    for (p, _) in &asked {
                        world.directory.forget(&w.topic, *p);
                    }
                },
                |restarted| session += restarted,
            );
        }
    }
}

/// One fetch of `asked` from their leader, recorded: `None` when the connection broke,
/// otherwise how many partitions started over from offset 0 (a new session).
async fn poll_leader(
    world: &World,
    broker: usize,
    (consumer, session): (usize, u32),
    c: &mut Client,
    asked: &[(i32, i64)],
    positions: &mut BTreeMap<i32, i64>,
    high_watermarks: &mut BTreeMap<i32, i64>,
) -> Option<u32> {
    let w = &world.scenario.workload;
    let invoked_s = world.now_s();
    let wait_ms = i32::try_from(w.poll_max_wait_ms).unwrap_or(i32::MAX);
    let answer = tokio::time::timeout(
        world.client_timeout(),
        c.fetch_many(&w.topic, asked, wait_ms),
    )
    .await;
    let (answers, broken): (Vec<(i32, Option<FetchedPartition>)>, bool) = match answer {
        Ok(Ok(a)) => (a.into_iter().map(|(p, r)| (p, Some(r))).collect(), false),
        Ok(Err(_)) | Err(_) => (asked.iter().map(|(p, _)| (*p, None)).collect(), true),
    };
    let completed_s = world.now_s();
    let mut restarted = 0;
    for (partition, r) in answers {
        let Some(&from_offset) = positions.get(&partition) else {
            continue;
        };
        let result = match r {
            Some(Ok((records, hw, next))) => {
                high_watermarks.insert(partition, hw);
                if world.scenario.clustered() {
                    lock(&world.watermarks).push(crate::history::Watermark {
                        partition,
                        invoked_s,
                        completed_s,
                        value: hw,
                    });
                }
                if let Some(next) = next.filter(|n| *n > from_offset) {
                    positions.insert(partition, next);
                }
                if records.is_empty() {
                    continue; // Nothing to check in an empty poll.
                }
                PollResult::Records(records)
            }
            Some(Err(code)) => {
                if code == OFFSET_OUT_OF_RANGE {
                    positions.insert(partition, 0);
                    restarted += 1;
                }
                if leadership_code(code) {
                    world.directory.forget(&w.topic, partition);
                }
                PollResult::Failed(code)
            }
            None => PollResult::Unknown,
        };
        let failed = !matches!(result, PollResult::Records(_));
        world.record(Op::Poll(Poll {
            broker,
            consumer,
            session: session + restarted,
            partition,
            from_offset,
            invoked_s,
            completed_s,
            result,
        }));
        if failed {
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }
    (!broken).then_some(restarted)
}
