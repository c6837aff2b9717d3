//! The broker's settings as a Kafka broker describes them (DescribeConfigs on a broker, and a
//! topic's static-broker synonyms), by Kafka's names.

use super::Config;

impl Config {
    /// This broker's own setting behind a topic config key, when it has one (DescribeConfigs
    /// tells it as the topic's `STATIC_BROKER_CONFIG` synonym).
    pub fn topic_default_of(&self, topic_key: &str) -> Option<String> {
        Some(match topic_key {
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => {
                crate::topic_config::timestamp_type_name(self.message_timestamp_type).to_string()
            }
            _ => return None,
        })
    }

    /// The settings a Kafka broker would describe, by Kafka's names, with their values here
    /// and the Stillwater setting each comes from: `(name, value, type, doc)`. All are static
    /// (set in the config file, environment or flags).
    pub fn kafka_broker_configs(
        &self,
    ) -> Vec<(&'static str, String, crate::topic_config::Type, String)> {
        use crate::topic_config::Type::{Boolean, Int, Long, Short, String as Str};
        let (listeners, advertised, protocols) = self.kafka_listener_settings();
        let from = |key: &str| format!("Stillwater setting {key}.");
        vec![
            (
                "advertised.listeners",
                advertised,
                Str,
                from("advertised_listeners (or advertised_listener)"),
            ),
            (
                "auto.create.topics.enable",
                self.auto_create_topics.to_string(),
                Boolean,
                from("auto_create_topics"),
            ),
            ("broker.id", self.node_id.to_string(), Int, from("node_id")),
            (
                "quota.window.num",
                self.quota_window_num.to_string(),
                Int,
                from("quota_window_num"),
            ),
            (
                "quota.window.size.seconds",
                self.quota_window_size_seconds.to_string(),
                Int,
                from("quota_window_size_seconds"),
            ),
            (
                "connections.max.idle.ms",
                self.idle_connection_timeout_ms.to_string(),
                Long,
                from("idle_connection_timeout_ms"),
            ),
            if self.clustered() {
                (
                    "default.replication.factor",
                    self.replication_factor().to_string(),
                    Int,
                    from("default_replication_factor"),
                )
            } else {
                (
                    "default.replication.factor",
                    "1".into(),
                    Int,
                    "One node: every partition has one replica.".into(),
                )
            },
            (
                "group.consumer.heartbeat.interval.ms",
                self.group_consumer_heartbeat_interval_ms.to_string(),
                Int,
                from("group_consumer_heartbeat_interval_ms"),
            ),
            (
                "group.consumer.max.size",
                self.group_consumer_max_size.to_string(),
                Int,
                from("group_consumer_max_size"),
            ),
            (
                "group.consumer.session.timeout.ms",
                self.group_consumer_session_timeout_ms.to_string(),
                Int,
                from("group_consumer_session_timeout_ms"),
            ),
            (
                "group.initial.rebalance.delay.ms",
                self.group_initial_rebalance_delay_ms.to_string(),
                Int,
                from("group_initial_rebalance_delay_ms"),
            ),
            (
                "group.max.session.timeout.ms",
                self.group_max_session_timeout_ms.to_string(),
                Int,
                from("group_max_session_timeout_ms"),
            ),
            (
                "group.min.session.timeout.ms",
                self.group_min_session_timeout_ms.to_string(),
                Int,
                from("group_min_session_timeout_ms"),
            ),
            (
                "listeners",
                listeners,
                Str,
                from("listeners (or listen)"),
            ),
            (
                "listener.security.protocol.map",
                protocols,
                Str,
                from("listener_security_protocol_map"),
            ),
            (
                "leader.replication.throttled.rate",
                match self.leader_replication_throttled_rate {
                    0 => i64::MAX.to_string(),
                    rate => rate.to_string(),
                },
                Long,
                from("leader_replication_throttled_rate"),
            ),
            (
                "log.cleaner.backoff.ms",
                self.log_cleaner_backoff_ms.to_string(),
                Long,
                from("log_cleaner_backoff_ms"),
            ),
            (
                "offsets.topic.segment.bytes",
                self.offsets_topic_segment_bytes.to_string(),
                crate::topic_config::Type::Int,
                from("offsets_topic_segment_bytes"),
            ),
            (
                "metadata.log.segment.bytes",
                self.metadata_log_segment_bytes.to_string(),
                crate::topic_config::Type::Int,
                from("metadata_log_segment_bytes"),
            ),
            (
                "metadata.log.max.record.bytes.between.snapshots",
                self.metadata_snapshot_interval_bytes.to_string(),
                Long,
                from("metadata_snapshot_interval_bytes"),
            ),
            (
                "log.cleaner.dedupe.buffer.size",
                self.log_cleaner_dedupe_buffer_bytes.to_string(),
                Long,
                from("log_cleaner_dedupe_buffer_bytes"),
            ),
            (
                "log.cleaner.enable",
                self.log_cleaner_enable.to_string(),
                Boolean,
                from("log_cleaner_enable"),
            ),
            (
                "log.cleaner.io.max.bytes.per.second",
                match self.log_cleaner_io_max_bytes_per_second {
                    0 => f64::MAX.to_string(),
                    rate => rate.to_string(),
                },
                crate::topic_config::Type::Double,
                from("log_cleaner_io_max_bytes_per_second"),
            ),
            (
                "log.dirs",
                self.data_dir.display().to_string(),
                Str,
                from("data_dir"),
            ),
            (
                "log.flush.interval.messages",
                "1".into(),
                Long,
                "Every batch is synced before it is acknowledged.".into(),
            ),
            (
                "log.index.interval.bytes",
                self.index_interval_bytes.to_string(),
                Int,
                from("index_interval_bytes"),
            ),
            (
                "log.message.timestamp.type",
                crate::topic_config::timestamp_type_name(self.message_timestamp_type).into(),
                Str,
                from("message_timestamp_type"),
            ),
            (
                "log.retention.bytes",
                self.retention_bytes.to_string(),
                Long,
                from("retention_bytes"),
            ),
            (
                "log.retention.check.interval.ms",
                self.retention_check_interval_ms.to_string(),
                Long,
                from("retention_check_interval_ms"),
            ),
            (
                "log.retention.ms",
                self.retention_ms.to_string(),
                Long,
                from("retention_ms"),
            ),
            (
                "log.roll.ms",
                self.segment_ms.to_string(),
                Long,
                from("segment_ms"),
            ),
            (
                "log.segment.bytes",
                self.segment_bytes.to_string(),
                Int,
                from("segment_bytes"),
            ),
            (
                "max.connections",
                self.max_connections.to_string(),
                Int,
                from("max_connections"),
            ),
            (
                "max.connections.per.ip",
                self.max_connections_per_ip.to_string(),
                Int,
                from("max_connections_per_ip"),
            ),
            (
                "max.connections.per.ip.overrides",
                self.max_connections_per_ip_overrides.clone(),
                Str,
                from("max_connections_per_ip_overrides"),
            ),
            (
                "message.max.bytes",
                self.max_message_bytes.to_string(),
                Int,
                from("max_message_bytes"),
            ),
            (
                "min.insync.replicas",
                "1".into(),
                Int,
                "Topics may set min.insync.replicas.".into(),
            ),
            ("node.id", self.node_id.to_string(), Int, from("node_id")),
            (
                "num.partitions",
                self.default_partitions.to_string(),
                Int,
                from("default_partitions"),
            ),
            (
                "offsets.topic.num.partitions",
                self.offsets_topic_partitions.to_string(),
                Int,
                from("offsets_topic_partitions"),
            ),
            (
                "offsets.topic.replication.factor",
                self.replication_factor().to_string(),
                Short,
                "The default replication factor (default_replication_factor; one node: one replica).".into(),
            ),
            (
                "transaction.state.log.num.partitions",
                self.transaction_state_partitions.to_string(),
                Int,
                from("transaction_state_partitions"),
            ),
            (
                "transaction.max.timeout.ms",
                self.transaction_max_timeout_ms.to_string(),
                Int,
                from("transaction_max_timeout_ms"),
            ),
            (
                "transactional.id.expiration.ms",
                self.transactional_id_expiration_ms.to_string(),
                Int,
                from("transactional_id_expiration_ms"),
            ),
            (
                "producer.id.expiration.ms",
                self.producer_id_expiration_ms.to_string(),
                Int,
                from("producer_id_expiration_ms"),
            ),
            (
                "queued.max.request.bytes",
                self.memory_budget_bytes.to_string(),
                Long,
                from("memory_budget_bytes"),
            ),
            (
                "replica.fetch.max.bytes",
                self.replica_fetch_max_bytes.to_string(),
                Int,
                from("replica_fetch_max_bytes"),
            ),
            (
                "replica.fetch.response.max.bytes",
                self.replica_fetch_response_max_bytes.to_string(),
                Int,
                from("replica_fetch_response_max_bytes"),
            ),
            (
                "socket.request.max.bytes",
                self.max_frame_bytes.to_string(),
                Int,
                from("max_frame_bytes"),
            ),
        ]
    }
}
