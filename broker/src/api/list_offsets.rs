//! ListOffsets: the earliest and latest offsets, and the first offset at or after a time.

use kafka_protocol::messages::{
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    ListOffsetsRequest, ListOffsetsResponse,
};

use super::{name_of, storage_code, Broker};
use crate::protocol::error;

impl Broker {
    pub(super) async fn list_offsets(&self, req: ListOffsetsRequest) -> ListOffsetsResponse {
        let mut resp = ListOffsetsResponse::default();
        for t in req.topics {
            let mut tr = ListOffsetsTopicResponse::default();
            let topic = self.store.topic(name_of(&t.name));
            tr.name = t.name;
            for p in t.partitions {
                let mut pr = ListOffsetsPartitionResponse::default();
                pr.partition_index = p.partition_index;
                pr.timestamp = -1;
                pr.offset = -1;
                let part = topic.as_ref().and_then(|t| {
                    usize::try_from(p.partition_index)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                });
                match (part, p.timestamp) {
                    (None, _) => pr.error_code = error::UNKNOWN_TOPIC_OR_PARTITION,
                    (Some(part), -1) => pr.offset = part.high_watermark(),
                    (Some(part), -2) => pr.offset = part.log_start_offset(),
                    (Some(part), ts) if ts >= 0 => {
                        match part.offset_for_timestamp(self.store.io(), ts).await {
                            Ok(Some((offset, found_ts))) => {
                                pr.offset = offset;
                                pr.timestamp = found_ts;
                            }
                            Ok(None) => {}
                            Err(e) => pr.error_code = storage_code(&e),
                        }
                    }
                    (Some(_), _) => pr.error_code = error::UNSUPPORTED_VERSION,
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        resp
    }
}
