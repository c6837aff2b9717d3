//! The transaction coordinator (Kafka's protocol, for clients whose EndTxn is at most v4):
//! InitProducerId with a transactional id, AddPartitionsToTxn (and its verification of a
//! partition before a producer's first transactional batch there, KIP-890's first part),
//! AddOffsetsToTxn, EndTxn, DescribeTransactions, ListTransactions, and the markers that end a
//! transaction on each of its partitions.
//!
//! One task ([`actor`]) owns every transactional id of this broker and takes requests in order
//! from a bounded queue. An id's rules are in [`metadata`] (pure functions: the next state, or
//! the error); its records, Kafka's schemas of `__transaction_state`, in [`records`]; the topic
//! and the load of it at start in [`log`]; the markers in [`markers`]. The partition side (open
//! transactions, markers checked, the last stable offset, aborted transactions) is in
//! `producer_state`, `txn_marker` and the storage.
//!
//! In a cluster the coordinator of an id is the leader of the id's partition of
//! `__transaction_state` ([`ownership`]): it reads the partition when it comes to lead it, its
//! coordinator epoch is the partition's Raft term, and it writes an id's state through the
//! partition's Raft group; markers go to each partition's leader, and partition leaders ask it
//! to verify a first transactional batch, by calls between brokers ([`peers`]).
//!
//! Architecture invariant: an id's new state is written to `__transaction_state` before any
//! request that caused it is answered and before any marker of a decision is sent; a
//! transaction's markers are written only after its decision is, and its completion only
//! after every marker is; while an id's state is being written (or its decision's markers
//! are), a producer's next call for it waits ([`parked`]) and is then served on the state as
//! written, or answered CONCURRENT_TRANSACTIONS.

mod actor;
mod log;
pub mod markers;
pub mod metadata;
mod ownership;
mod parked;
pub mod peers;
pub mod records;

use std::sync::Arc;
use std::time::Duration;

use io_backend::Clock;
use tokio::sync::{mpsc, oneshot};

use crate::controller::Controller;
use crate::group::Coordinator as Groups;
use crate::protocol::error;
use crate::storage::Store;
use metadata::{TopicPartition, TxnState};

/// The internal topic of the transactions' states.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Requests queued for the coordinator before callers wait.
const QUEUE: usize = 1024;

/// The partition of `__transaction_state` (of `partitions`) that holds `transactional_id`:
/// Kafka's, the same hash as a group's partition of the offsets topic.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::partition_for(transactional_id, partitions)
}

/// The coordinator's settings (Kafka's names in the comments).
#[derive(Debug, Clone, Copy)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`.
    pub partitions: i32,
    /// `transaction.state.log.replication.factor` (in a cluster: the cluster's default
    /// replication factor, as for the offsets topic).
    pub replication_factor: i32,
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_check_interval: Duration,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub expiry_check_interval: Duration,
    /// Transactions under way at once.
    pub open_max: usize,
    /// Partitions of one transaction.
    pub partitions_max: usize,
}

impl TxnConfig {
    pub fn from_config(config: &crate::config::Config) -> TxnConfig {
        TxnConfig {
            partitions: config.transaction_state_partitions,
            replication_factor: config.replication_factor(),
            max_timeout_ms: config.transaction_max_timeout_ms,
            id_expiration_ms: config.transactional_id_expiration_ms,
            abort_check_interval: Duration::from_millis(config.transaction_abort_check_interval_ms),
            expiry_check_interval: Duration::from_millis(
                config.transaction_expiry_check_interval_ms,
            ),
            open_max: config.transactions_open_max,
            partitions_max: config.transaction_partitions_max,
        }
    }
}

/// One id as DescribeTransactions tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedTxn {
    pub transactional_id: String,
    /// NONE, or TRANSACTIONAL_ID_NOT_FOUND.
    pub error: i16,
    pub state: &'static str,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<TopicPartition>,
}

impl DescribedTxn {
    /// An id described by its error alone.
    pub fn unknown(id: &str, error: i16) -> DescribedTxn {
        DescribedTxn {
            transactional_id: id.to_string(),
            error,
            state: "",
            timeout_ms: 0,
            start_ms: -1,
            producer_id: -1,
            producer_epoch: -1,
            partitions: Vec::new(),
        }
    }
}

/// One id as ListTransactions tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: &'static str,
}

/// Which ids ListTransactions asks for (an empty list: any).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub states: Vec<String>,
    pub producer_ids: Vec<i64>,
    /// v1: only transactions running longer than this (-1: any).
    pub duration_ms: i64,
    /// v2: only transactional ids this expression matches whole.
    pub id_pattern: Option<regex::Regex>,
}

/// A request in the coordinator's queue, with where to answer it.
enum Msg {
    Init {
        id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        reply: oneshot::Sender<Result<(i64, i16), i16>>,
    },
    Add {
        id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<TopicPartition>,
        /// Only say whether they are in the transaction (a leader's check before a first
        /// transactional batch); write nothing.
        verify_only: bool,
        reply: oneshot::Sender<i16>,
    },
    End {
        id: String,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        reply: oneshot::Sender<i16>,
    },
    Describe(Vec<String>, oneshot::Sender<Vec<DescribedTxn>>),
    List(ListFilter, oneshot::Sender<Vec<ListedTxn>>),
    /// A state write finished.
    Written {
        id: String,
        write: u64,
        outcome: Result<(), i16>,
    },
    /// Every marker of the decision `(producer id, epoch)` of `id` is written.
    MarkersDone {
        id: String,
        producer_id: i64,
        epoch: i16,
    },
    /// A client looked for a transaction's coordinator: make the topic if it is not there.
    MakeTopic,
}

/// What the coordinator answers when it has stopped (it never should while the node runs).
const GONE: i16 = error::COORDINATOR_NOT_AVAILABLE;

/// The coordinator as request handlers see it.
pub struct TxnCoordinator {
    tx: mpsc::Sender<Msg>,
    pub config: TxnConfig,
    /// When the topic was last asked for (FindCoordinator), by the wall clock in ms.
    topic_asked_ms: Arc<std::sync::atomic::AtomicI64>,
    cluster: Option<Arc<Controller>>,
    markers: Arc<markers::Markers>,
    clock: Arc<dyn Clock>,
}

impl TxnCoordinator {
    /// Start the coordinator. On a single node it loads `__transaction_state` (if the topic
    /// exists) before it takes the first request, then resumes the markers of every decided
    /// transaction; in a cluster it does so for each partition of the topic it comes to lead,
    /// and serves the other brokers' calls.
    pub fn start(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        config: TxnConfig,
        groups: Arc<Groups>,
        cluster: Option<Arc<Controller>>,
    ) -> Arc<TxnCoordinator> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let markers = Arc::new(markers::Markers {
            store: store.clone(),
            groups,
            cluster: cluster.clone(),
            clock: clock.clone(),
        });
        let actor = actor::Actor::new(
            store,
            clock.clone(),
            config,
            markers.clone(),
            rx,
            tx.downgrade(),
        );
        tokio::spawn(actor.run());
        let coordinator = Arc::new(TxnCoordinator {
            tx,
            config,
            topic_asked_ms: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
            cluster: cluster.clone(),
            markers: markers.clone(),
            clock,
        });
        if let Some(cluster) = &cluster {
            peers::serve(cluster, markers, coordinator.clone());
        }
        coordinator
    }

    /// Where markers are written from this broker (WriteTxnMarkers).
    pub fn markers(&self) -> &markers::Markers {
        &self.markers
    }

    /// In a cluster: the broker that coordinates `id` (the leader of its partition of the
    /// topic) as `(id, host, port)`; `None` while there is none (the topic is made on the
    /// first ask, as Kafka does). On a single node: `None`.
    pub fn coordinator_of(&self, id: &str, listener: Option<&str>) -> Option<(i32, String, i32)> {
        let cluster = self.cluster.as_ref()?;
        let leader = self.coordinator_node(id)?;
        let md = cluster.metadata();
        let b = md.brokers.get(&leader).filter(|b| !b.fenced)?;
        let (host, port) = b.address_on(listener)?;
        Some((b.id as i32, host, port))
    }

    /// In a cluster: the node that leads `id`'s partition of the topic, as this broker knows
    /// it (the topic asked for when it is not there).
    fn coordinator_node(&self, id: &str) -> Option<u64> {
        let cluster = self.cluster.as_ref()?;
        let md = cluster.metadata();
        if !md.topics.contains_key(TRANSACTION_STATE_TOPIC) {
            drop(md);
            self.topic_wanted();
            return None;
        }
        let index = self.partition_for(id);
        let p = md.partition(TRANSACTION_STATE_TOPIC, index)?;
        let mut leader = p.leader.map(|l| (l, p.leader_term));
        if let Some(view) = cluster
            .replication()
            .replica(TRANSACTION_STATE_TOPIC, index)
        {
            let s = view.status();
            if let Some(l) = s.leader.filter(|_| s.term >= p.leader_term) {
                leader = Some((l, s.term));
            }
        }
        leader.map(|(l, _)| l)
    }

    /// KIP-890's first part, for a partition leader: whether `partitions` are in the
    /// transaction of `id`'s producer, asked of its coordinator wherever it is (NONE: they
    /// are); REQUEST_TIMED_OUT without an answer within `limit`.
    pub async fn verify(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<TopicPartition>,
        limit: Duration,
    ) -> i16 {
        if let Some(cluster) = &self.cluster {
            let Some(node) = self.coordinator_node(id) else {
                return error::COORDINATOR_NOT_AVAILABLE;
            };
            if node != cluster.replication().node_id() {
                return peers::verify_at(cluster, node, id, producer_id, epoch, &partitions, limit)
                    .await;
            }
        }
        let asked = self.add_partitions(id.to_string(), producer_id, epoch, partitions, true);
        self.clock
            .timeout(limit, asked)
            .await
            .unwrap_or(error::REQUEST_TIMED_OUT)
    }

    /// A client looks for a transaction's coordinator: the topic is made now if it is not
    /// there (asked once; an id's first write makes it too).
    pub fn topic_wanted(&self) {
        use std::sync::atomic::Ordering;
        let now = self.clock.wall_ms();
        let last = self.topic_asked_ms.load(Ordering::Acquire);
        // At most once a second (a creation that failed is asked for again).
        if now.saturating_sub(last) < 1000
            || self
                .topic_asked_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let Some(cluster) = self.cluster.clone() else {
            // Only a hint, never waited for: with the queue full it is dropped and the next
            // lookup asks again.
            #[allow(clippy::disallowed_methods)]
            let _ = self.tx.try_send(Msg::MakeTopic);
            return;
        };
        // In a cluster, through the controller, beside the coordinator's task (a creation
        // waits for the brokers; the coordinator goes on serving meanwhile).
        let (partitions, rf) = (self.config.partitions, self.config.replication_factor);
        tokio::spawn(async move {
            if cluster
                .metadata()
                .topics
                .contains_key(TRANSACTION_STATE_TOPIC)
            {
                return;
            }
            let limit = Duration::from_secs(10);
            match cluster
                .create_topic(
                    TRANSACTION_STATE_TOPIC,
                    partitions,
                    rf,
                    None,
                    log::topic_overrides(),
                    limit,
                )
                .await
            {
                Ok(_) => tracing::info!(partitions, "created {TRANSACTION_STATE_TOPIC}"),
                Err(crate::storage::catalog::TopicError::Exists) => {}
                Err(e) => tracing::warn!(error = %e, "cannot create {TRANSACTION_STATE_TOPIC} yet"),
            }
        });
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Msg, gone: T) -> T {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(make(tx)).await.is_err() {
            return gone;
        }
        rx.await.unwrap_or(gone)
    }

    /// InitProducerId with a transactional id: the producer id and its new epoch.
    pub async fn init_producer_id(
        &self,
        id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), i16> {
        self.ask(
            |reply| Msg::Init {
                id,
                timeout_ms,
                expected,
                reply,
            },
            Err(GONE),
        )
        .await
    }

    /// AddPartitionsToTxn (AddOffsetsToTxn with the group's partition of the offsets topic):
    /// one code for all of them. With `verify_only`, whether they are all in the producer's
    /// transaction already (INVALID_TXN_STATE if not), writing nothing.
    pub async fn add_partitions(
        &self,
        id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<TopicPartition>,
        verify_only: bool,
    ) -> i16 {
        self.ask(
            |reply| Msg::Add {
                id,
                producer_id,
                epoch,
                partitions,
                verify_only,
                reply,
            },
            GONE,
        )
        .await
    }

    /// EndTxn: answered once the decision is written; the markers follow.
    pub async fn end_txn(&self, id: String, producer_id: i64, epoch: i16, commit: bool) -> i16 {
        self.ask(
            |reply| Msg::End {
                id,
                producer_id,
                epoch,
                commit,
                reply,
            },
            GONE,
        )
        .await
    }

    pub async fn describe(&self, ids: Vec<String>) -> Vec<DescribedTxn> {
        let gone = ids
            .iter()
            .map(|id| DescribedTxn::unknown(id, GONE))
            .collect();
        self.ask(|reply| Msg::Describe(ids, reply), gone).await
    }

    pub async fn list(&self, filter: ListFilter) -> Result<Vec<ListedTxn>, i16> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::List(filter, tx)).await.is_err() {
            return Err(GONE);
        }
        rx.await.map_err(|_| GONE)
    }

    /// The partition of `__transaction_state` that holds `id`.
    pub fn partition_for(&self, id: &str) -> i32 {
        partition_for(id, self.config.partitions)
    }
}

/// Whether a state counts as a transaction under way (for the bound on open transactions).
fn under_way(state: TxnState) -> bool {
    matches!(
        state,
        TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
    )
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
