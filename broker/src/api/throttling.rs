//! Client quotas applied to one request: what it used (its bytes produced or fetched, its
//! handling time) recorded against its client's quotas, and the throttle time its response
//! carries (`throttle_time_ms`) — the connection then reads nothing more from the client until
//! it ends (KIP-219). Kafka's rules: a produce counts its request's size, a fetch its
//! response's; every request counts its handling time, but an acks=0 produce; the throttle is
//! the larger of the two.

use std::sync::Arc;
use std::time::Duration;

use io_backend::Clock;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::quota::cost::Cost;
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
}

/// Kafka's measure of handling time: percent of one thread for a second.
const NANOS_TO_PERCENT_SECONDS: f64 = 100.0 / 1e9;

impl Metering {
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
            (ApiKey::Produce, _) => {
                self.record(QuotaKey::ProducerByteRate, self.request_bytes as f64)
            }
            (ApiKey::Fetch, ResponseKind::Fetch(r)) => {
                let size = r.compute_size(version).unwrap_or(0);
                self.record(QuotaKey::ConsumerByteRate, size as f64)
            }
            _ => Duration::ZERO,
        };
        handling.max(bandwidth)
    }

    /// An acks=0 produce: its bytes count, its handling time does not (no response).
    pub fn throttle_unanswered(&self) -> Duration {
        self.record(QuotaKey::ProducerByteRate, self.request_bytes as f64)
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
