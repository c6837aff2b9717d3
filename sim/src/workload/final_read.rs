//! The end of a run's workload: waiting until the log stops growing (acks=0 produces may still
//! wait in a broker's queue), then reading every partition back from the start — the final
//! read the checkers hold the history against, with the offsets no broker could serve.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{CORRUPT_MESSAGE, OFFSET_OUT_OF_RANGE};
use crate::history::{FinalRead, ReadGaps, Unreadable, KAFKA_STORAGE_ERROR};
use crate::workload::client::routing::{leadership_code, Directory};
use crate::workload::client::{Client, ClientError};

/// Every partition's records, by offset, read with a fresh client after the run.
/// How long the log must stop growing before producing counts as over, and the longest wait.
const QUIET: Duration = Duration::from_secs(1);

const QUIESCE_MAX: Duration = Duration::from_secs(30);

/// Wait until every partition's end stays put for [`QUIET`] (at most [`QUIESCE_MAX`]): once
/// the producers are done, unacknowledged produces may still be on their way into the log, and
/// "the end" that consumers and the group must reach is only known after them.
pub async fn quiesce(directory: Arc<Directory>, topic: String, partitions: i32) {
    let until = Instant::now() + QUIESCE_MAX;
    let mut last: Option<Vec<i64>> = None;
    while Instant::now() < until {
        let ends = async {
            let mut ends = Vec::new();
            for p in 0..partitions {
                let addr = directory.leader(&topic, p).await?;
                let end = async { Client::connect(addr).await?.log_end(&topic, p).await }.await;
                match end {
                    Ok(e) => ends.push(e),
                    Err(_) => {
                        directory.forget(&topic, p);
                        return None;
                    }
                }
            }
            Some(ends)
        };
        let ends = tokio::time::timeout(QUIET * 5, ends).await.ok().flatten();
        if ends.is_some() && ends == last {
            return;
        }
        last = ends;
        tokio::time::sleep(QUIET).await;
    }
}

pub async fn read_back(
    directory: Arc<Directory>,
    topic: &str,
    partitions: i32,
) -> (FinalRead, ReadGaps) {
    let mut out = FinalRead::new();
    let mut gaps = ReadGaps::default();
    for p in 0..partitions {
        let (records, unreadable, log_start, log_end) = read_partition(&directory, topic, p).await;
        out.insert(p, records);
        gaps.unreadable.extend(unreadable);
        gaps.log_start.insert(p, log_start);
        if let Some(end) = log_end {
            gaps.log_end.insert(p, end);
        }
    }
    (out, gaps)
}

/// Failed reads at one offset before the final read calls it unreadable and reads on after it.
const UNREADABLE_AFTER: u32 = 3;

/// Offsets the final read steps over, one by one, in all: damage is a few batches, not a log.
const UNREADABLE_MAX: i64 = 20_000;

/// Read a partition from its log start to its high watermark. Where the broker keeps answering
/// an error at one offset (damaged data), step over it and read on, and say which offsets
/// could not be read — so a lost-write finding names exactly the missing records, not the
/// whole partition. Also says the high watermark it read to (none if it gave up first).
async fn read_partition(
    directory: &Directory,
    topic: &str,
    partition: i32,
) -> (Vec<(i64, Bytes)>, Vec<Unreadable>, i64, Option<i64>) {
    let mut log_start = 0;
    let mut out = Vec::new();
    let mut gaps: Vec<Unreadable> = Vec::new();
    let mut next = 0;
    let mut failures = 0u32;
    let mut stepped = 0i64;
    for _ in 0..50 {
        let Some(addr) = directory.leader(topic, partition).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let Ok(mut c) = Client::connect(addr).await else {
            directory.forget(topic, partition);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        loop {
            // Inside a damaged range, one failure is enough to step on.
            let in_gap = gaps.last().is_some_and(|g| g.to == next);
            match c.fetch(topic, partition, next, 0).await {
                Ok((records, hw, after)) => {
                    if next >= hw {
                        return (out, gaps, log_start, Some(hw));
                    }
                    match after.filter(|a| *a > next) {
                        Some(after) => {
                            next = after;
                            failures = 0;
                            out.extend(records);
                            continue;
                        }
                        // Nothing where data should be: try again.
                        None => failures += 1,
                    }
                }
                Err(ClientError::Kafka(OFFSET_OUT_OF_RANGE)) => {
                    // Below the log start (retention, DeleteRecords): read from there.
                    match c.log_start(topic, partition).await {
                        Ok(start) if start > next => {
                            (next, log_start) = (start, start);
                            continue;
                        }
                        Ok(_) => failures += 1,
                        Err(_) => break,
                    }
                }
                Err(ClientError::Kafka(code)) if leadership_code(code) => {
                    // Leadership moved: read on from the new leader.
                    directory.forget(topic, partition);
                    break;
                }
                Err(ClientError::Kafka(code)) => {
                    failures += 1;
                    // Only damaged data is read around; any other error (the partition is
                    // unknown, …) is retried and then given up on, reading nothing more.
                    let damaged = matches!(code, KAFKA_STORAGE_ERROR | CORRUPT_MESSAGE);
                    if damaged
                        && (in_gap || failures >= UNREADABLE_AFTER)
                        && stepped < UNREADABLE_MAX
                    {
                        match gaps.last_mut() {
                            Some(g) if g.to == next && g.code == code => g.to += 1,
                            _ => gaps.push(Unreadable {
                                partition,
                                from: next,
                                to: next + 1,
                                code,
                            }),
                        }
                        next += 1;
                        stepped += 1;
                        failures = 0;
                        continue;
                    }
                }
                Err(_) => break, // The connection: a new one.
            }
            if failures > UNREADABLE_AFTER {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    (out, gaps, log_start, None)
}

/// Which of `names` each broker's Metadata lists after the run (`None` for a broker that did
/// not answer): the cluster metadata each holds, for the check that it is what the admin client
/// was told ([`crate::checks::metadata`]).
pub async fn read_topics(
    directory: Arc<Directory>,
    names: Vec<String>,
) -> Vec<Option<std::collections::BTreeMap<String, bool>>> {
    let mut out = Vec::new();
    for &addr in directory.brokers() {
        let listed = async {
            let mut c = Client::connect(addr).await.ok()?;
            let mut listed = std::collections::BTreeMap::new();
            for name in &names {
                let md = c.metadata(name).await.ok()?;
                listed.insert(name.clone(), !md.partitions.is_empty());
            }
            Some(listed)
        };
        out.push(
            tokio::time::timeout(QUIESCE_MAX, listed)
                .await
                .ok()
                .flatten(),
        );
    }
    out
}
