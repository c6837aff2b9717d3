//! The transaction coordinator (Kafka's protocol, for clients whose EndTxn is at most v4):
//! InitProducerId with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, and
//! the markers that end a transaction on each of its partitions.
//!
//! So far this holds the coordinator's rules ([`metadata`]: one id's state and how each
//! request moves it) and its records ([`records`]: Kafka's schemas of `__transaction_state`);
//! the partition side (open transactions, markers, the last stable offset) is in
//! `producer_state` and `txn_marker`.
//!
//! Architecture invariant: an id's new state is written to `__transaction_state` before any
//! request that caused it is answered and before any marker of a decision is sent; a
//! transaction's markers are written only after its decision is.

pub mod metadata;
pub mod records;

/// The internal topic of the transactions' states.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// The partition of `__transaction_state` (of `partitions`) that holds `transactional_id`:
/// Kafka's, the same hash as a group's partition of the offsets topic.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::partition_for(transactional_id, partitions)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_hash_to_kafkas_partitions() {
        // Java: "my-txn".hashCode() is -1061187895; Math.abs of it % 50, and a hash of i32::MIN maps to 0.
        assert_eq!(super::partition_for("my-txn", 50), 1_061_187_895 % 50);
        assert_eq!(super::partition_for("polygenelubricants", 50), 0);
    }
}
