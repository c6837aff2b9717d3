//! Fetch: read committed batches, long-polling for `min_bytes`, within the memory budget.

use bytes::Bytes;
use kafka_protocol::messages::{
    fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData},
    FetchRequest, FetchResponse,
};

use super::{name_of, storage_code, Broker};
use crate::metrics::Metrics;
use crate::protocol::error;
use std::time::Duration;

use crate::memory::Reservation;
use crate::storage::log::{Isolation, ReadError};

/// Most record bytes one Fetch response carries, whatever the client asks (Kafka's
/// `fetch.max.bytes` default is 55 MB).
const FETCH_BYTES_MAX: usize = 64 << 20;

/// Longest a Fetch may long-poll, whatever the client asks.
const FETCH_WAIT_MAX: Duration = Duration::from_secs(30);

/// Shortest a Fetch waits for memory before it answers without records.
const FETCH_MEMORY_WAIT_MIN: Duration = Duration::from_millis(100);

impl Broker {
    /// A Fetch, long-polling up to `max_wait_ms` for `min_bytes`. Each read first takes from
    /// the memory budget the most it can return (and gives back what it did not use), so a
    /// Fetch waits for memory before it reads rather than after; the records it returns hold
    /// their share until the response is written.
    pub(super) async fn fetch(
        &self,
        req: FetchRequest,
        version: i16,
    ) -> (FetchResponse, Reservation) {
        let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MAX);
        let deadline = self.clock.now() + wait;
        let mut commits = self.store.commits();
        let mut woken = false;
        loop {
            commits.borrow_and_update();
            // Wait for memory no longer than the poll may last (at least a little): a Fetch
            // that cannot have it answers with no records, which a client takes as "nothing
            // yet" and asks again. Waiting on could deadlock a connection whose own requests
            // behind this Fetch hold the memory (their responses are written after it).
            let memory_wait = deadline
                .saturating_duration_since(self.clock.now())
                .max(FETCH_MEMORY_WAIT_MIN);
            let want = self.fetch_bytes_max(&req);
            let (mut held, records_allowed) = match self
                .clock
                .timeout(memory_wait, self.memory.acquire(want))
                .await
            {
                Ok(held) => (held, true),
                Err(_) => (Reservation::none(&self.memory), false),
            };
            let (resp, bytes, errors) = self.fetch_once(&req, version, records_allowed).await;
            if !records_allowed {
                return (resp, held);
            }
            held.resize(bytes);
            let now = self.clock.now();
            if bytes >= req.min_bytes.max(0) as usize || errors || now >= deadline {
                if woken && bytes > 0 {
                    crate::coverage::reached(crate::coverage::Event::LongPollWokenByCommit);
                }
                Metrics::inc(&self.metrics.fetched_bytes, bytes as u64);
                return (resp, held);
            }
            drop((resp, held));
            // Long-poll: sleep until a commit makes new data visible or the wait is over.
            woken = self
                .clock
                .timeout(deadline - now, commits.changed())
                .await
                .is_ok_and(|changed| changed.is_ok());
        }
    }

    /// The most record bytes a read for `req` can return now: per partition what its log holds
    /// from the fetch offset, at most `partition_max_bytes`; in all at most `max_bytes` (one
    /// batch larger than the limits, KIP-74, is charged when it is read).
    fn fetch_bytes_max(&self, req: &FetchRequest) -> usize {
        let max_total = (req.max_bytes.max(0) as usize).min(FETCH_BYTES_MAX);
        let mut total = 0usize;
        for t in &req.topics {
            let Some(topic) = self.store.topic(name_of(&t.topic)) else {
                continue;
            };
            for p in &t.partitions {
                let part = topic.partition(p.partition);
                if let Some(part) = part {
                    let readable = part.bytes_from(part.to_log(p.fetch_offset)) as usize;
                    total += readable.min(p.partition_max_bytes.max(0) as usize);
                }
            }
        }
        total.min(max_total)
    }

    /// Read every requested partition once (offsets only, no records, unless `records_allowed`).
    async fn fetch_once(
        &self,
        req: &FetchRequest,
        version: i16,
        records_allowed: bool,
    ) -> (FetchResponse, usize, bool) {
        let mut resp = FetchResponse::default();
        let mut total = 0usize;
        let mut errors = false;
        let max_total = (req.max_bytes.max(0) as usize).min(FETCH_BYTES_MAX);
        // read_committed from v4 on (KIP-98).
        let isolation = if version >= 4 {
            Isolation::from_level(req.isolation_level)
        } else {
            Isolation::ReadUncommitted
        };
        for t in &req.topics {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = t.topic.clone();
            tr.topic_id = t.topic_id;
            let topic = self.store.topic(name_of(&t.topic));
            for p in &t.partitions {
                let mut pd = PartitionData::default();
                pd.partition_index = p.partition;
                pd.records = Some(Bytes::new());
                // Kafka's answer for a partition in error: no watermarks (-1), and aborted
                // transactions only for read_committed (null otherwise).
                pd.high_watermark = -1;
                pd.last_stable_offset = -1;
                pd.log_start_offset = -1;
                pd.aborted_transactions = None;
                let partition = topic.as_ref().and_then(|t| t.partition(p.partition));
                let epoch = if version >= 9 {
                    p.current_leader_epoch
                } else {
                    -1
                };
                let not_served =
                    partition.and_then(|part| self.serving(&part.topic, p.partition, epoch).err());
                match partition {
                    None if version >= super::topic_ids::FETCH_BY_ID && topic.is_none() => {
                        // Named by an id no topic has (a deleted topic's, say).
                        pd.error_code = error::UNKNOWN_TOPIC_ID;
                        pd.aborted_transactions = Some(Vec::new());
                    }
                    None if self.knows_partition(name_of(&t.topic), p.partition) => {
                        // In a cluster: a partition this broker holds no replica of.
                        let not = self.refusal(
                            name_of(&t.topic),
                            p.partition,
                            error::NOT_LEADER_OR_FOLLOWER,
                        );
                        not_served_here(&mut pd, &not, version);
                    }
                    None => {
                        pd.error_code = error::UNKNOWN_TOPIC_OR_PARTITION;
                        // Kafka's answer for it carries an empty list, not none.
                        pd.aborted_transactions = Some(Vec::new());
                    }
                    Some(_) if not_served.is_some() => {
                        not_served_here(&mut pd, &not_served.expect("checked"), version);
                    }
                    Some(part) => {
                        // KIP-74: the first batch is returned even if it exceeds the limits
                        // (a limit of 0 bytes included, as Kafka).
                        let room = if total == 0 {
                            (p.partition_max_bytes.max(1) as usize).min(max_total.max(1))
                        } else {
                            (p.partition_max_bytes.max(0) as usize)
                                .min(max_total.saturating_sub(total))
                        };
                        if room == 0 || !records_allowed {
                            let offsets = part.kafka_offsets();
                            pd.high_watermark = offsets.high_watermark;
                            pd.last_stable_offset = offsets.last_stable;
                            if version >= 5 {
                                pd.log_start_offset = offsets.log_start;
                            }
                        } else {
                            // Only the response's first batch may exceed the limits.
                            let first = total == 0;
                            match part
                                .read_kafka(self.store.io(), p.fetch_offset, room, first, isolation)
                                .await
                            {
                                Ok(None) => {
                                    // The log was cut or reset under the read (this replica
                                    // moved away): nothing of it is served.
                                    pd.error_code = error::NOT_LEADER_OR_FOLLOWER;
                                    pd.high_watermark = -1;
                                    pd.last_stable_offset = -1;
                                }
                                Ok(Some(data)) => {
                                    total += data.records.len();
                                    pd.high_watermark = data.high_watermark;
                                    pd.last_stable_offset = data.last_stable_offset;
                                    if isolation == Isolation::ReadCommitted && version >= 4 {
                                        pd.aborted_transactions =
                                            Some(aborted_transactions(&data.aborted));
                                    }
                                    if version >= 5 {
                                        pd.log_start_offset = data.log_start_offset;
                                    }
                                    pd.records = Some(data.records);
                                }
                                Err(ReadError::OffsetOutOfRange { high_watermark, .. }) => {
                                    // Past the end of a log that may be a stale leader's:
                                    // said only once a quorum confirms this broker leads.
                                    let stale = if p.fetch_offset > high_watermark {
                                        self.confirm_leading(&part.topic, p.partition).await.err()
                                    } else {
                                        None
                                    };
                                    if let Some(not) = stale {
                                        not_served_here(&mut pd, &not, version);
                                    } else {
                                        // Kafka answers it without watermarks.
                                        pd.error_code = error::OFFSET_OUT_OF_RANGE;
                                    }
                                }
                                Err(ReadError::Storage(e)) => {
                                    tracing::warn!(topic = %part.topic, partition = part.index, error = %e, "fetch read failed");
                                    pd.error_code = storage_code(&e);
                                }
                            }
                        }
                    }
                }
                errors |= pd.error_code != error::NONE;
                tr.partitions.push(pd);
            }
            resp.responses.push(tr);
        }
        (resp, total, errors)
    }
}

impl Broker {
    /// Whether the cluster's metadata has partition `index` of `topic` (never on one node,
    /// where the store has every partition there is).
    fn knows_partition(&self, topic: &str, index: i32) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.metadata().partition(topic, index).is_some())
    }
}

/// A read_committed answer's aborted transactions, as Kafka lists them.
fn aborted_transactions(aborted: &[(i64, i64)]) -> Vec<AbortedTransaction> {
    aborted
        .iter()
        .map(|&(producer, first)| {
            let mut a = AbortedTransaction::default();
            a.producer_id = kafka_protocol::messages::ProducerId(producer);
            a.first_offset = first;
            a
        })
        .collect()
}

/// A partition this broker does not serve: the error, no offsets, and (v12+) the leader it
/// knows of, so the client moves to it at once.
fn not_served_here(pd: &mut PartitionData, not: &super::NotServing, version: i16) {
    pd.error_code = not.code;
    pd.high_watermark = -1;
    pd.last_stable_offset = -1;
    if version >= 12 {
        pd.current_leader.leader_id = kafka_protocol::messages::BrokerId(not.leader);
        pd.current_leader.leader_epoch = not.epoch;
    }
}
