//! InitProducerId: a producer id for an idempotent producer. Transactions are not supported:
//! a transactional id gets a fatal error at once rather than a coordinator that never answers.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{storage_code, Broker};
use crate::protocol::error;

impl Broker {
    pub(super) async fn init_producer_id(
        &self,
        req: InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        let mut resp = InitProducerIdResponse::default();
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
        if req.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
            // No transaction coordinator. The code is one every client treats as fatal for
            // a transactional producer (an answer that could be retried would hang it).
            resp.error_code = error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
            return resp;
        }
        // As Kafka does for a producer without a transactional id: always a new id, epoch 0
        // (a producer asking to bump its epoch gets a new id instead).
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
}
