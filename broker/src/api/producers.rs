//! Producers: InitProducerId (a producer id; with a transactional id, the transaction
//! coordinator's id and epoch) and DescribeProducers
//! (what each partition knows of its producers, as `kafka-transactions describe-producers`
//! shows it).

use kafka_protocol::messages::{
    describe_producers_response::{PartitionResponse, ProducerState, TopicResponse},
    DescribeProducersRequest, DescribeProducersResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId,
};

use super::{name_of, storage_code, Broker};
use crate::protocol::error;

impl Broker {
    pub(super) async fn init_producer_id(
        &self,
        req: InitProducerIdRequest,
        version: i16,
    ) -> InitProducerIdResponse {
        let mut resp = InitProducerIdResponse::default();
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
        if req.transactional_id.as_ref().is_some_and(|t| t.is_empty()) {
            // An empty id is neither a transactional producer nor an idempotent one (Kafka's).
            resp.error_code = error::INVALID_REQUEST;
            return resp;
        }
        if let Some(id) = req.transactional_id.as_ref() {
            let Some(txns) = &self.txns else {
                resp.error_code = error::COORDINATOR_NOT_AVAILABLE;
                return resp;
            };
            // KIP-360 (v3+): a producer that names its id and epoch bumps its own epoch.
            let expected = (version >= 3 && req.producer_id.0 >= 0)
                .then_some((req.producer_id.0, req.producer_epoch));
            match txns
                .init_producer_id(id.to_string(), req.transaction_timeout_ms, expected)
                .await
            {
                Ok((producer_id, epoch)) => {
                    resp.producer_id = ProducerId(producer_id);
                    resp.producer_epoch = epoch;
                }
                Err(code) => resp.error_code = super::txn::fenced_as(code, version, 4),
            }
            return resp;
        }
        // As Kafka does for a producer without a transactional id: always a new id, epoch 0
        // (a producer asking to bump its epoch gets a new id instead).
        if let Some(cluster) = &self.cluster {
            match cluster
                .new_producer_id(std::time::Duration::from_secs(10))
                .await
            {
                Ok(id) => {
                    resp.producer_id = ProducerId(id);
                    resp.producer_epoch = 0;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot get a producer id from the cluster");
                    resp.error_code = error::COORDINATOR_NOT_AVAILABLE;
                }
            }
            return resp;
        }
        match self.store.new_producer_id().await {
            Ok(id) => {
                resp.producer_id = ProducerId(id);
                resp.producer_epoch = 0;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand out a producer id");
                resp.error_code = if e.transient() {
                    error::COORDINATOR_NOT_AVAILABLE
                } else {
                    storage_code(&e)
                };
            }
        }
        resp
    }

    pub(super) fn describe_producers(
        &self,
        req: DescribeProducersRequest,
    ) -> DescribeProducersResponse {
        let mut resp = DescribeProducersResponse::default();
        for t in req.topics {
            let topic = self.store.topic(name_of(&t.name));
            let mut tr = TopicResponse::default();
            tr.name = t.name;
            for index in t.partition_indexes {
                let mut pr = PartitionResponse::default();
                pr.partition_index = index;
                let part = topic.as_ref().and_then(|t| t.partition(index));
                match part {
                    None => pr.error_code = error::UNKNOWN_TOPIC_OR_PARTITION,
                    Some(p) => {
                        pr.active_producers = p
                            .state()
                            .producers
                            .describe()
                            .into_iter()
                            .map(|d| {
                                let mut ps = ProducerState::default();
                                ps.producer_id = ProducerId(d.producer_id);
                                ps.producer_epoch = d.epoch as i32;
                                ps.last_sequence = d.last_sequence;
                                ps.last_timestamp = d.last_write_ms;
                                ps.coordinator_epoch = d.coordinator_epoch;
                                ps.current_txn_start_offset = d.txn_start_offset;
                                ps
                            })
                            .collect();
                    }
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        resp
    }
}
