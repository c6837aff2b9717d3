//! The coordinator's log: `__transaction_state`, made on first use (compacted, as Kafka's), an
//! id's state appended to its partition (through its Raft group in a cluster), and the load of
//! every partition at start (in a cluster, of each partition as this broker comes to lead it).
//!
//! Invariant: what is loaded is applied in log order, so an id's state is its last record's.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::actor::{Actor, Txn};
use super::metadata::TxnMetadata;
use super::records::TxnRecord;
use super::{partition_for, GONE, TRANSACTION_STATE_TOPIC};
use crate::batch;
use crate::protocol::error;
use crate::replication::node::ReplicaError;
use crate::storage::catalog::{Topic, TopicError};
use crate::storage::{AppendError, Appended};

/// A write to the topic under way: through the local pipeline, or (in a cluster) the
/// partition's Raft group.
pub(super) enum Appending {
    Local(oneshot::Receiver<Result<Appended, AppendError>>),
    Replicated(oneshot::Receiver<Result<Appended, ReplicaError>>),
}

impl Appending {
    /// Once durable (committed, in a cluster); or the code to answer (the client finds the
    /// coordinator again and retries).
    pub(super) async fn outcome(self) -> Result<(), i16> {
        let written = match self {
            Appending::Local(rx) => matches!(rx.await, Ok(Ok(_))),
            Appending::Replicated(rx) => match rx.await {
                Ok(Ok(_)) => true,
                Ok(Err(ReplicaError::NotLeader { .. } | ReplicaError::Unknown)) => {
                    return Err(error::NOT_COORDINATOR)
                }
                _ => false,
            },
        };
        if written {
            Ok(())
        } else {
            Err(GONE)
        }
    }
}

/// The topic's configs: compacted (an id's last record is its state), kept otherwise.
pub(super) fn topic_overrides() -> crate::topic_config::Overrides {
    [
        ("cleanup.policy", "compact"),
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("segment.bytes", "16777216"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Actor {
    /// The topic, made on first use (as Kafka does).
    pub(super) async fn topic(&self) -> Result<Arc<Topic>, i16> {
        if let Some(t) = self.store.topic(TRANSACTION_STATE_TOPIC) {
            return Ok(t);
        }
        match self
            .store
            .create_topic(
                TRANSACTION_STATE_TOPIC,
                self.config.partitions,
                topic_overrides(),
            )
            .await
        {
            Ok(t) => {
                tracing::info!(
                    partitions = self.config.partitions,
                    "created {TRANSACTION_STATE_TOPIC}"
                );
                Ok(t)
            }
            Err(TopicError::Exists) => self.store.topic(TRANSACTION_STATE_TOPIC).ok_or(GONE),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create {TRANSACTION_STATE_TOPIC}");
                Err(GONE)
            }
        }
    }

    /// Append the id's state (`None`: a tombstone) to its partition.
    pub(super) async fn append(
        &self,
        id: &str,
        next: Option<TxnMetadata>,
    ) -> Result<Appending, i16> {
        let topic = match &self.cluster {
            // In a cluster the topic is made by the first FindCoordinator, and an id is
            // served only from a partition of it this broker leads.
            Some(_) => self
                .store
                .topic(TRANSACTION_STATE_TOPIC)
                .ok_or(error::NOT_COORDINATOR)?,
            None => self.topic().await?,
        };
        let index = partition_for(id, self.config.partitions);
        let partition = topic.partition(index).cloned().ok_or(GONE)?;
        let record = TxnRecord {
            transactional_id: id.to_string(),
            value: next,
        };
        let payload = crate::schema::internal_batch(&[record.encode()], self.clock.wall_ms(), None);
        let headers = batch::validate_all(&payload, usize::MAX).map_err(|_| GONE)?;
        if let Some(cluster) = &self.cluster {
            let view = cluster
                .replication()
                .replica(TRANSACTION_STATE_TOPIC, index)
                .ok_or(error::NOT_COORDINATOR)?;
            return match cluster
                .replication()
                .propose(view.group, vec![payload], -1)
                .await
            {
                Ok(Some(rx)) => Ok(Appending::Replicated(rx)),
                Ok(None) => Err(GONE),
                Err(ReplicaError::NotLeader { .. } | ReplicaError::Unknown) => {
                    Err(error::NOT_COORDINATOR)
                }
                Err(_) => Err(GONE),
            };
        }
        match self
            .store
            .append(partition, payload, headers, true, None)
            .await
        {
            Ok(Some(rx)) => Ok(Appending::Local(rx)),
            Ok(None) | Err(_) => Err(GONE),
        }
    }

    /// Read the topic, if it exists, into the ids' states.
    pub(super) async fn load(&mut self) {
        let Some(topic) = self.store.topic(TRANSACTION_STATE_TOPIC) else {
            return;
        };
        let mut records = 0u64;
        for p in &topic.partitions {
            records += self.load_partition(p).await;
        }
        tracing::info!(ids = self.ids.len(), records, "loaded transactional ids");
    }

    /// Read one partition into the ids' states; the records read.
    pub(super) async fn load_partition(&mut self, p: &crate::storage::log::Partition) -> u64 {
        let io = self.store.io().clone();
        let mut records = 0u64;
        let start = p.log_start_offset();
        let end = p.high_watermark();
        let mut offset = start;
        while offset < end {
            let mut buf = match p.read(&io, offset, 1 << 20).await {
                Ok(d) if !d.records.is_empty() => d.records,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(partition = p.index, error = %e, "cannot read {TRANSACTION_STATE_TOPIC}; its ids start unknown");
                    break;
                }
            };
            while !buf.is_empty() {
                // A batch the cleaner emptied still spans its offsets.
                let after = batch::parse_header(&buf).map(|h| h.next_offset());
                let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf) else {
                    tracing::error!(
                        partition = p.index,
                        offset,
                        "undecodable batch in {TRANSACTION_STATE_TOPIC}"
                    );
                    return records;
                };
                for r in set.records {
                    offset = r.offset + 1;
                    if r.offset < start || r.control {
                        continue;
                    }
                    records += 1;
                    let Some(key) = r.key.as_deref() else {
                        continue;
                    };
                    match TxnRecord::decode(key, r.value.as_deref()) {
                        Ok(Some(rec)) => match rec.value {
                            Some(meta) => {
                                self.ids.insert(rec.transactional_id, Txn::loaded(meta));
                            }
                            None => {
                                self.ids.remove(&rec.transactional_id);
                            }
                        },
                        Ok(None) => {}
                        Err(why) => {
                            tracing::warn!(partition = p.index, offset = r.offset, %why, "skipping a damaged record of {TRANSACTION_STATE_TOPIC}")
                        }
                    }
                }
                if let Ok(after) = after {
                    offset = offset.max(after);
                }
            }
        }
        records
    }
}
