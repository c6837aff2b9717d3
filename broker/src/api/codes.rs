//! What a failed append or disk operation tells clients (Kafka's error codes) and the
//! metrics (why an append was refused).

use crate::metrics::Refusal;
use crate::producer_state::ProducerError;
use crate::protocol::error;
use crate::storage::{AppendError, StorageError};

/// KAFKA_STORAGE_ERROR says the append was not written (a definite failure: retrying cannot
/// duplicate it); REQUEST_TIMED_OUT says it was written but not confirmed durable, as Kafka
/// answers a produce whose replication did not finish in time (indefinite: it may be in the
/// log). Both are retriable for clients.
pub(super) fn storage_code(e: &StorageError) -> i16 {
    if e.indefinite() {
        error::REQUEST_TIMED_OUT
    } else {
        error::KAFKA_STORAGE_ERROR
    }
}

/// The code of a failed append: a storage failure as above; a deleted partition; an
/// idempotent producer's batch out of sequence or from a fenced epoch; a batch outside its
/// producer's open transaction; a marker from a fenced coordinator.
pub(super) fn append_code(e: &AppendError) -> i16 {
    match e {
        AppendError::Storage(e) => storage_code(e),
        AppendError::PartitionGone { .. } => error::UNKNOWN_TOPIC_OR_PARTITION,
        AppendError::Producer(ProducerError::OutOfOrderSequence { .. }) => {
            error::OUT_OF_ORDER_SEQUENCE_NUMBER
        }
        AppendError::Producer(ProducerError::InvalidEpoch { .. }) => error::INVALID_PRODUCER_EPOCH,
        AppendError::Producer(
            ProducerError::InvalidTxnState { .. } | ProducerError::Unverified { .. },
        ) => error::INVALID_TXN_STATE,
        AppendError::Producer(ProducerError::CoordinatorFenced { .. }) => {
            error::TRANSACTION_COORDINATOR_FENCED
        }
    }
}

/// Why a storage failure refused an append, for the metrics.
pub(super) fn storage_refusal(e: &StorageError) -> Refusal {
    match e {
        StorageError::Unconfirmed(_) => Refusal::SyncUnconfirmed,
        StorageError::DirFailed(_) => Refusal::DirectoryFailed,
        _ => Refusal::WriteFailed,
    }
}

/// Why a failed append was refused, for the metrics.
pub(super) fn append_refusal(e: &AppendError) -> Refusal {
    match e {
        AppendError::Storage(e) => storage_refusal(e),
        AppendError::PartitionGone { .. } => Refusal::PartitionDeleted,
        AppendError::Producer(_) => Refusal::ProducerState,
    }
}
