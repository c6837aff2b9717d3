//! Client quotas applied to one request: what it used (its bytes produced — as it arrives —
//! or fetched, its handling time) recorded against its client's quotas, and the throttle time its response
//! carries (`throttle_time_ms`) — the connection then reads nothing more from the client until
//! it ends (KIP-219). Kafka's rules: a produce counts its request's size, a fetch its
//! response's; every request counts its handling time, but an acks=0 produce; the throttle is
//! the larger of the two.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use io_backend::Clock;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::protocol::error;
use crate::quota::cost::Cost;
use crate::quota::meter::Exhausted;
use crate::quota::{Client, ClientQuotas, Meters, QuotaKey};

/// One request's account with the quotas in force when it arrived.
pub(super) struct Metering {
    pub quotas: Arc<ClientQuotas>,
    pub meters: Arc<Meters>,
    pub clock: Arc<dyn Clock>,
    pub user: String,
    pub client_id: String,
    /// The request's size (header and body, as Kafka counts it).
    pub request_bytes: usize,
    /// The time its handling ran.
    pub cost: Arc<Cost>,
    /// The throttle its partitions created or deleted earned (ms).
    pub mutations_throttle: AtomicU64,
    /// A produce's: its bytes are counted as it arrives (ms).
    pub produce_throttle: AtomicU64,
}

/// Kafka's measure of handling time: percent of one thread for a second.
const NANOS_TO_PERCENT_SECONDS: f64 = 100.0 / 1e9;

impl Metering {
    /// The account of a request of `client_id` on `session`, whose frame is `frame`.
    pub fn new(
        broker: &super::Broker,
        quotas: Arc<ClientQuotas>,
        session: &super::Session,
        client_id: String,
        frame: &crate::memory::Reservation,
        cost: &Arc<Cost>,
    ) -> Metering {
        Metering {
            quotas,
            meters: broker.quota_meters.clone(),
            clock: broker.clock.clone(),
            user: session.principal.name.clone(),
            client_id,
            // Kafka counts the header and the body, not the length before them.
            request_bytes: frame.bytes().saturating_sub(4),
            cost: cost.clone(),
            mutations_throttle: AtomicU64::new(0),
            produce_throttle: AtomicU64::new(0),
        }
    }

    fn client(&self) -> Client<'_> {
        Client {
            user: &self.user,
            client_id: &self.client_id,
        }
    }

    fn record(&self, key: QuotaKey, amount: f64) -> Duration {
        self.meters
            .record(&self.quotas, key, self.client(), amount, self.clock.now())
    }

    /// Count a produce request's bytes as it arrives (so that the requests pipelined behind
    /// it see them): its throttle time, which its response will carry.
    pub fn record_produce(&self) -> Duration {
        let t = self.record(QuotaKey::ProducerByteRate, self.request_bytes as f64);
        let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        self.produce_throttle.store(ms, Ordering::Relaxed);
        t
    }

    fn produced(&self) -> Duration {
        Duration::from_millis(self.produce_throttle.load(Ordering::Relaxed))
    }

    /// The most a fetch may return under the client's consumer quota: one window's share
    /// (`None`: no quota). As in Kafka, a fetch still returns its first batch whatever its
    /// size.
    pub fn fetch_limit(&self) -> Option<i32> {
        self.meters
            .window_limit(&self.quotas, QuotaKey::ConsumerByteRate, self.client())
            .map(|b| b.clamp(1.0, i32::MAX as f64) as i32)
    }

    /// Record what the request used, and the client's throttle time for it.
    ///
    /// A throttled fetch is answered with its records, and the pause follows. (Kafka answers
    /// it empty and does not count it: the client fetches the same records again after its
    /// pause — the broker read them twice, and librdkafka, told nothing for its partitions,
    /// waited its fetch backoff as well, reading 0.88 of its quota.) What a fetch returns is
    /// bounded by one window's share of the quota ([`Metering::fetch_limit`]), so no answer
    /// runs far past it.
    pub fn throttle(&self, api: ApiKey, version: i16, body: &ResponseKind) -> Duration {
        let time = self.cost.spent().as_nanos() as f64 * NANOS_TO_PERCENT_SECONDS;
        let handling = self.record(QuotaKey::RequestPercentage, time);
        let bandwidth = match (api, body) {
            (ApiKey::Produce, _) => self.produced(),
            (ApiKey::Fetch, ResponseKind::Fetch(r)) => {
                let size = r.compute_size(version).unwrap_or(0);
                self.record(QuotaKey::ConsumerByteRate, size as f64)
            }
            _ => Duration::ZERO,
        };
        let mutations = Duration::from_millis(self.mutations_throttle.load(Ordering::Relaxed));
        handling.max(bandwidth).max(mutations)
    }

    /// An acks=0 produce: its bytes count (as it arrived), its handling time does not (no
    /// response).
    pub fn throttle_unanswered(&self) -> Duration {
        self.produced()
    }
}

/// A topic request's partitions created or deleted, taken one topic at a time from its client's
/// `controller_mutation_rate` (KIP-599). On the versions that can say so (CreateTopics v6+,
/// CreatePartitions v3+, DeleteTopics v5+: `strict`), a topic asked for while the client's
/// bucket is empty is refused THROTTLING_QUOTA_EXCEEDED and the others go on; on older ones
/// every topic is taken and only the throttle time tells.
pub(super) struct Mutations {
    metering: Option<Arc<Metering>>,
    strict: bool,
}

/// Kafka's words for a topic refused by the mutation quota.
const EXHAUSTED: &str = "The throttling quota has been exceeded.";

impl Mutations {
    pub fn new(metering: Option<Arc<Metering>>, strict: bool) -> Mutations {
        Mutations { metering, strict }
    }

    /// Take `permits` partitions for one topic's change.
    pub fn take(&self, permits: i32) -> Result<(), (i16, String)> {
        let Some(m) = &self.metering else {
            return Ok(());
        };
        let taken = m.meters.take_mutations(
            &m.quotas,
            m.client(),
            f64::from(permits.max(0)),
            self.strict,
            m.clock.now(),
        );
        let (throttle, outcome) = match taken {
            Ok(t) => (t, Ok(())),
            Err(Exhausted(t)) => (
                t,
                Err((error::THROTTLING_QUOTA_EXCEEDED, EXHAUSTED.to_string())),
            ),
        };
        let ms = u64::try_from(throttle.as_millis()).unwrap_or(u64::MAX);
        m.mutations_throttle.fetch_max(ms, Ordering::Relaxed);
        outcome
    }

    /// Give back what [`Mutations::take`] took for a change that was refused for another
    /// reason (Kafka charges only the changes it makes).
    pub fn give_back(&self, permits: i32) {
        if let Some(m) = &self.metering {
            m.meters.give_back_mutations(
                &m.quotas,
                m.client(),
                f64::from(permits.max(0)),
                m.clock.now(),
            );
        }
    }
}

/// Put `ms` into the response's `throttle_time_ms` (the larger of it and what is there);
/// `false` for a response without one.
pub(super) fn set_throttle(body: &mut ResponseKind, ms: i32) -> bool {
    macro_rules! each {
        ($($v:ident),* $(,)?) => {
            match body {
                $(ResponseKind::$v(r) => {
                    r.throttle_time_ms = r.throttle_time_ms.max(ms);
                    true
                })*
                _ => false,
            }
        };
    }
    each!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        OffsetForLeaderEpoch,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        DescribeLogDirs,
        CreatePartitions,
        DeleteGroups,
        ElectLeaders,
        IncrementalAlterConfigs,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        OffsetDelete,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeCluster,
        DescribeProducers,
        DescribeTransactions,
        ListTransactions,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        GetTelemetrySubscriptions,
        PushTelemetry,
        DescribeTopicPartitions,
        UnregisterBroker,
        ListConfigResources,
    )
}
