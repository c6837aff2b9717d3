//! OffsetForLeaderEpoch (KIP-101, KIP-320): where a leader epoch ends in the leader's log. A
//! consumer asks after a leadership change, with the epoch of the last record it read, to find
//! out whether the new leader's log still holds what it read (its position at or below the
//! answer) or was cut below it (log truncation). kafka-python and librdkafka ask it; a broker
//! that does not answer leaves them validating their position forever.
//!
//! An epoch is a Raft term (the term every batch carries in `partitionLeaderEpoch`, the epoch
//! Metadata names); versions 2–4 (Kafka 4 dropped 0 and 1; from 2 on a request carries the
//! epoch the client knows its leader by, checked as Fetch checks it). The log's record of each term's first entry
//! ([`ReplicaMeta::end_offset_for_epoch`](crate::storage::log::replica::ReplicaMeta)) is
//! Kafka's leader-epoch cache. A single node has one leader forever: epoch 0.

use kafka_protocol::messages::{
    offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult},
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use super::{name_of, Broker};
use crate::protocol::error;

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
const UNDEFINED: (i32, i64) = (-1, -1);

impl Broker {
    pub(super) async fn offset_for_leader_epoch(
        &self,
        req: OffsetForLeaderEpochRequest,
    ) -> OffsetForLeaderEpochResponse {
        let mut resp = OffsetForLeaderEpochResponse::default();
        for t in req.topics {
            let mut tr = OffsetForLeaderTopicResult::default();
            let topic = self.store.topic(name_of(&t.topic));
            tr.topic = t.topic;
            for p in t.partitions {
                let mut pr = EpochEndOffset::default();
                pr.partition = p.partition;
                (pr.leader_epoch, pr.end_offset) = UNDEFINED;
                let part = topic.as_ref().and_then(|t| t.partition(p.partition));
                let Some(part) = part else {
                    pr.error_code = error::UNKNOWN_TOPIC_OR_PARTITION;
                    tr.partitions.push(pr);
                    continue;
                };
                // Only the current leader knows where its log's epochs end; a deposed one back
                // from a pause would tell a consumer its log was cut.
                let checked = match self.serving(&part.topic, p.partition, p.current_leader_epoch) {
                    Ok(()) => self.confirm_leading(&part.topic, p.partition).await,
                    Err(not) => Err(not),
                };
                if let Err(not) = checked {
                    pr.error_code = not.code;
                    tr.partitions.push(pr);
                    continue;
                }
                if p.leader_epoch >= 0 {
                    let found = match &self.cluster {
                        None => {
                            (p.leader_epoch == 0).then(|| (0u64, part.state().log_end_offset()))
                        }
                        Some(cluster) => {
                            let term = cluster
                                .replication()
                                .replica(&part.topic, p.partition)
                                .map_or(0, |v| v.status().term);
                            let st = part.state();
                            let log_end = st.log_end_offset();
                            st.replica.as_ref().and_then(|r| {
                                let epoch = p.leader_epoch as u64;
                                let latest = r.meta.epochs.last().map_or(0, |e| e.term);
                                // The leader's own first entry of its term may not be durable
                                // yet; its term is still the latest.
                                if epoch == term && latest < term {
                                    Some((term, log_end))
                                } else {
                                    r.meta.end_offset_for_epoch(epoch, log_end)
                                }
                            })
                        }
                    };
                    if let Some((epoch, offset)) = found {
                        pr.leader_epoch = i32::try_from(epoch).unwrap_or(i32::MAX);
                        pr.end_offset = part.to_kafka(offset);
                    }
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        resp
    }
}
