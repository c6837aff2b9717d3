//! ListOffsets: the earliest and latest offsets, the first offset at or after a time, and the
//! record with the largest timestamp.

use kafka_protocol::messages::{
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    ListOffsetsRequest, ListOffsetsResponse,
};

use super::{name_of, storage_code, Broker};
use crate::protocol::error;

/// The special timestamps of ListOffsets.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// v7+: the record with the largest timestamp.
const MAX_TIMESTAMP: i64 = -3;
/// v8+: the earliest offset kept locally (no tiered storage here: the log start).
const EARLIEST_LOCAL: i64 = -4;
/// v9+: the latest offset in tiered storage (none here: not found, as Kafka without it).
const LATEST_TIERED: i64 = -5;

impl Broker {
    pub(super) async fn list_offsets(
        &self,
        req: ListOffsetsRequest,
        version: i16,
    ) -> ListOffsetsResponse {
        let mut resp = ListOffsetsResponse::default();
        for t in req.topics {
            let mut tr = ListOffsetsTopicResponse::default();
            let topic = self.store.topic(name_of(&t.name));
            tr.name = t.name;
            // A partition asked for twice is answered once, INVALID_REQUEST (Kafka's).
            let mut seen = std::collections::HashMap::new();
            for p in &t.partitions {
                *seen.entry(p.partition_index).or_insert(0usize) += 1;
            }
            for p in &t.partitions {
                let mut pr = ListOffsetsPartitionResponse::default();
                pr.partition_index = p.partition_index;
                pr.timestamp = -1;
                pr.offset = -1;
                // No epoch unless an offset is found (Kafka's).
                pr.leader_epoch = -1;
                match seen.get_mut(&p.partition_index) {
                    Some(n) if *n > 1 => {
                        *n = 0;
                        pr.error_code = error::INVALID_REQUEST;
                        tr.partitions.push(pr);
                        continue;
                    }
                    Some(0) => continue,
                    _ => {}
                }
                let part = topic.as_ref().and_then(|t| t.partition(p.partition_index));
                let Some(part) = part else {
                    pr.error_code = error::UNKNOWN_TOPIC_OR_PARTITION;
                    tr.partitions.push(pr);
                    continue;
                };
                let epoch = if version >= 4 {
                    p.current_leader_epoch
                } else {
                    -1
                };
                if let Err(not) = self.serving(&part.topic, p.partition_index, epoch) {
                    pr.error_code = not.code;
                    tr.partitions.push(pr);
                    continue;
                }
                // A single node has one leader, forever: epoch 0, as Metadata says.
                let leader_epoch = self
                    .partition_leader(&part.topic, p.partition_index)
                    .map_or(0, |(_, epoch)| epoch);
                // read_committed (v2+) sees only what is stable: its latest offset is the last
                // stable offset, and a time's offset at or past it is not found (Kafka's).
                let fetchable = if version >= 2 && req.isolation_level == 1 {
                    part.last_stable_offset()
                } else {
                    part.high_watermark()
                };
                // Found in log offsets, answered in Kafka offsets.
                let found = match p.timestamp {
                    LATEST => Ok(Some((fetchable, -1))),
                    EARLIEST => Ok(Some((part.log_start_offset(), -1))),
                    MAX_TIMESTAMP if version >= 7 => {
                        part.max_timestamp_offset(self.store.io()).await
                    }
                    EARLIEST_LOCAL if version >= 8 => Ok(Some((part.log_start_offset(), -1))),
                    LATEST_TIERED if version >= 9 => Ok(None),
                    ts if ts >= 0 => part.offset_for_timestamp(self.store.io(), ts).await,
                    _ => {
                        pr.error_code = error::UNSUPPORTED_VERSION;
                        Ok(None)
                    }
                };
                let found = found.map(|f| {
                    let by_time = p.timestamp >= 0 || p.timestamp == MAX_TIMESTAMP;
                    f.filter(|&(offset, _)| !by_time || offset < fetchable)
                });
                match found {
                    Ok(Some((offset, ts))) => {
                        pr.offset = part.to_kafka(offset);
                        pr.timestamp = ts;
                        if version >= 4 {
                            pr.leader_epoch = leader_epoch;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => pr.error_code = storage_code(&e),
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        resp
    }
}
