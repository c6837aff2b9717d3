//! The coordinator's settings, built from the broker's configuration by the group layer itself
//! (the settings layer below knows nothing of groups).

use std::time::Duration;

/// The coordinator's settings (Kafka's names in the comments).
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`.
    pub offsets_partitions: i32,
    /// `offsets.topic.replication.factor`: in a cluster, the default replication factor (the
    /// topic is made only once that many brokers are live, as Kafka does — made with fewer,
    /// it would keep fewer copies of every group's offsets for good).
    pub offsets_replication: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes` (in ms): the offsets of a group without members expire
    /// this long after its last commit (or after it became empty, if later).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval: Duration,
    /// Records a partition of the offsets topic may hold past its live state (and at least
    /// four times that state) before its live state is written again and the rest deleted.
    pub checkpoint_records: i64,
    /// The offsets topic is compacted too (`offsets_topic_compacted`).
    pub compacted: bool,
    /// `offsets.topic.segment.bytes`.
    pub segment_bytes: u64,
    /// `group.consumer.session.timeout.ms`: a consumer-protocol member not heard from for
    /// this long is fenced.
    pub consumer_session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`: how often consumer-protocol members heartbeat.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`: members of a consumer-protocol group.
    pub consumer_max_size: usize,
}

impl GroupConfig {
    /// The settings the broker's configuration gives the coordinator.
    pub fn from_config(config: &crate::config::Config) -> GroupConfig {
        GroupConfig {
            offsets_partitions: config.offsets_topic_partitions,
            offsets_replication: config.replication_factor(),
            initial_rebalance_delay: Duration::from_millis(config.group_initial_rebalance_delay_ms),
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: config.offsets_retention_ms,
            offsets_retention_check_interval: Duration::from_millis(
                config.offsets_retention_check_interval_ms,
            ),
            checkpoint_records: config.offsets_checkpoint_records,
            compacted: config.offsets_topic_compacted,
            segment_bytes: config.offsets_topic_segment_bytes,
            consumer_session_timeout: Duration::from_millis(
                config.group_consumer_session_timeout_ms as u64,
            ),
            consumer_heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
            consumer_max_size: config.group_consumer_max_size as usize,
        }
    }
}
