//! The checks a configuration must pass before a broker starts with it: each setting within
//! its range, settings that must agree with each other, and a cluster's settings (peers, node
//! id, replication) consistent — so a bad value stops the start with the key's name instead of
//! misbehaving later.

use super::*;

impl Config {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.io_engine.parse::<IoEngine>().is_err() {
            return bad(format!(
                "io_engine = {:?}: expected uring, blocking or auto",
                self.io_engine
            ));
        }
        // Every count and size has a range: a value outside it is a typo or a trap (a
        // hundred thousand worker threads, a frame larger than the memory budget).
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ranges: [(&str, u64, u64, u64); 18] = [
            (
                "default_partitions",
                self.default_partitions.max(0) as u64,
                1,
                10_000,
            ),
            ("disk_threads", self.disk_threads as u64, 1, 256),
            (
                "worker_threads",
                self.worker_threads as u64,
                0,
                (cpus * 4).max(64) as u64,
            ),
            ("max_connections", self.max_connections as u64, 1, 1_000_000),
            (
                "max_connections_per_ip",
                self.max_connections_per_ip as u64,
                1,
                1_000_000,
            ),
            (
                "max_in_flight_per_connection",
                self.max_in_flight_per_connection as u64,
                1,
                1024,
            ),
            (
                "append_queue_capacity",
                self.append_queue_capacity as u64,
                1,
                1 << 20,
            ),
            (
                "max_frame_bytes",
                self.max_frame_bytes as u64,
                1024,
                i32::MAX as u64,
            ),
            (
                "max_message_bytes",
                self.max_message_bytes as u64,
                1024,
                i32::MAX as u64,
            ),
            (
                "memory_budget_bytes",
                self.memory_budget_bytes as u64,
                1 << 20,
                1 << 40,
            ),
            ("segment_bytes", self.segment_bytes, 1024, i32::MAX as u64),
            ("preallocate_bytes", self.preallocate_bytes, 0, 1 << 30),
            (
                "index_interval_bytes",
                self.index_interval_bytes,
                0,
                i32::MAX as u64,
            ),
            (
                "idle_connection_timeout_ms",
                self.idle_connection_timeout_ms,
                1_000,
                7 * 86_400_000,
            ),
            (
                "response_write_timeout_ms",
                self.response_write_timeout_ms,
                100,
                3_600_000,
            ),
            ("io_deadline_ms", self.io_deadline_ms, 0, 3_600_000),
            ("quota_window_num", self.quota_window_num, 2, 1000),
            (
                "quota_window_size_seconds",
                self.quota_window_size_seconds,
                1,
                3600,
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return bad(format!("{key} = {value} is out of range ({min}..={max})"));
            }
        }
        if self.default_partitions < 1 {
            return bad("default_partitions must be at least 1".into());
        }
        // A frame is taken from the budget whole, from the part large takings may use (all
        // but the eighth kept for small requests).
        if self.memory_budget_bytes - self.memory_budget_bytes / 8 < self.max_frame_bytes + 4 {
            return bad(format!(
                "memory_budget_bytes = {} is too small for max_frame_bytes = {}: a frame of the largest size could never be read (the budget must be at least 8/7 of it)",
                self.memory_budget_bytes, self.max_frame_bytes
            ));
        }
        if self.max_message_bytes > self.max_frame_bytes {
            return bad(format!(
                "max_message_bytes = {} is larger than max_frame_bytes = {}: no request could carry such a batch",
                self.max_message_bytes, self.max_frame_bytes
            ));
        }
        if !(1..=1000).contains(&self.transaction_state_partitions)
            || self.transaction_max_timeout_ms < 1
            || self.transactional_id_expiration_ms < 1
            || !(10..=86_400_000).contains(&self.transaction_abort_check_interval_ms)
            || !(10..=86_400_000).contains(&self.transaction_expiry_check_interval_ms)
            || !(1..=1_000_000).contains(&self.transactions_open_max)
            || !(1..=1_000_000).contains(&self.transaction_partitions_max)
        {
            return bad("transaction_state_partitions must be 1 to 1000, transaction_max_timeout_ms and transactional_id_expiration_ms at least 1, the transaction check intervals 10 to 86400000 ms, transactions_open_max and transaction_partitions_max 1 to 1000000".into());
        }
        if !(1..=1000).contains(&self.offsets_topic_partitions) {
            return bad(format!(
                "offsets_topic_partitions = {} is out of range (1..=1000)",
                self.offsets_topic_partitions
            ));
        }
        if self.group_initial_rebalance_delay_ms > 600_000
            || self.group_min_session_timeout_ms < 1
            || self.group_min_session_timeout_ms > self.group_max_session_timeout_ms
        {
            return bad("group_initial_rebalance_delay_ms must be at most 600000, and 1 <= group_min_session_timeout_ms <= group_max_session_timeout_ms".into());
        }
        if !(1..=3_600_000).contains(&self.group_consumer_session_timeout_ms)
            || !(1..=3_600_000).contains(&self.group_consumer_heartbeat_interval_ms)
            || self.group_consumer_heartbeat_interval_ms >= self.group_consumer_session_timeout_ms
            || !(1..=100_000).contains(&self.group_consumer_max_size)
        {
            return bad(format!(
                "group_consumer_heartbeat_interval_ms ({}) must be below group_consumer_session_timeout_ms ({}), both within 1..=3600000, and group_consumer_max_size ({}) within 1..=100000",
                self.group_consumer_heartbeat_interval_ms,
                self.group_consumer_session_timeout_ms,
                self.group_consumer_max_size
            ));
        }
        if !(1..=64 << 20).contains(&self.client_telemetry_max_bytes)
            || !(1..=10_000_000).contains(&self.client_telemetry_max_series)
        {
            return bad(format!(
                "client_telemetry_max_bytes ({}) must be within 1..=67108864 and client_telemetry_max_series ({}) within 1..=10000000",
                self.client_telemetry_max_bytes, self.client_telemetry_max_series
            ));
        }
        if self.offsets_retention_ms < 1
            || !(10..=86_400_000).contains(&self.offsets_retention_check_interval_ms)
            || !(100..=100_000_000).contains(&self.offsets_checkpoint_records)
        {
            return bad("offsets_retention_ms must be at least 1, offsets_retention_check_interval_ms from 10 to 86400000, offsets_checkpoint_records from 100 to 100000000".into());
        }
        if !((16 << 10)..=(1 << 30)).contains(&self.offsets_topic_segment_bytes) {
            return bad(format!(
                "offsets_topic_segment_bytes = {} must be from 16 KiB to 1 GiB",
                self.offsets_topic_segment_bytes
            ));
        }
        if !((16 << 10)..=(1 << 30)).contains(&self.metadata_log_segment_bytes)
            || self.metadata_snapshot_interval_bytes < 1024
        {
            return bad(format!(
                "metadata_log_segment_bytes = {} must be from 16 KiB to 1 GiB, and metadata_snapshot_interval_bytes = {} at least 1024",
                self.metadata_log_segment_bytes, self.metadata_snapshot_interval_bytes
            ));
        }
        if !((1 << 20)..=(1 << 40)).contains(&self.log_cleaner_dedupe_buffer_bytes)
            || self.log_cleaner_backoff_ms == 0
        {
            return bad(format!(
                "log_cleaner_dedupe_buffer_bytes = {} must be from 1 MiB to 1 TiB, and log_cleaner_backoff_ms at least 1",
                self.log_cleaner_dedupe_buffer_bytes
            ));
        }
        let rack = self.broker_rack.as_str();
        if rack.len() > 255 || rack.trim() != rack || rack.chars().any(char::is_control) {
            return bad(format!(
                "broker_rack = {rack:?}: at most 255 characters, no control characters, no spaces around it"
            ));
        }
        if let Err(why) = crate::features::initial_levels(&self.initial_features) {
            return bad(format!(
                "initial_features = {:?}: {why}",
                self.initial_features
            ));
        }
        if self.producer_id_expiration_ms < 1 {
            return bad("producer_id_expiration_ms must be at least 1".into());
        }
        if self.segment_ms < 1 || self.retention_ms < -1 || self.retention_bytes < -1 {
            return bad(
                "segment_ms must be at least 1, retention_ms and retention_bytes at least -1"
                    .into(),
            );
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return bad(format!(
                "metrics_listen = {:?} is not an address",
                self.metrics_listen
            ));
        }
        self.listener_specs().map_err(ConfigError::Invalid)?;
        self.inter_broker_listener().map_err(ConfigError::Invalid)?;
        self.tls_settings().map_err(ConfigError::Invalid)?;
        self.sasl_settings().map_err(ConfigError::Invalid)?;
        self.add_scram_users().map_err(ConfigError::Invalid)?;
        self.authorizer_settings().map_err(ConfigError::Invalid)?;
        parse_overrides(&self.max_connections_per_ip_overrides)
            .map_err(|e| ConfigError::Invalid(format!("max_connections_per_ip_overrides: {e}")))?;
        self.check_cluster()?;
        Ok(())
    }

    fn check_cluster(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let peers = parse_peers(&self.cluster_peers)
            .map_err(|e| ConfigError::Invalid(format!("cluster_peers: {e}")))?;
        if peers.is_empty() {
            if self.inter_broker_listen.is_some() {
                return bad("inter_broker_listen is set but cluster_peers is empty: a single node has no inter-broker listener".into());
            }
            return Ok(());
        }
        if self.node_id < 0 {
            return bad(format!("node_id = {} is negative", self.node_id));
        }
        for a in self
            .cluster_join
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            if a.parse::<std::net::SocketAddr>().is_err() {
                return bad(format!(
                    "cluster_join: {a:?} is not an ip:port (the inter-broker address of a broker of the cluster)"
                ));
            }
        }
        if !peers.contains_key(&(self.node_id as u64)) {
            // Not a voter: it joins the cluster and follows the metadata as an observer, and
            // the others dial it at the address it registers.
            match self.inter_broker_address() {
                Some(a) if !a.ip().is_unspecified() && a.port() != 0 => {}
                _ => {
                    return bad(format!(
                        "node_id = {} is not one of the controller's voters in cluster_peers ({}), so it joins the cluster as an observer and needs an inter-broker address the others can dial: set inter_broker_listen (e.g. \"10.0.0.4:9093\", not 0.0.0.0) or name an inter-broker listener",
                        self.node_id, self.cluster_peers
                    ))
                }
            }
        }
        if self.default_replication_factor < 0 {
            return bad(format!(
                "default_replication_factor = {} is out of range (0: three, or all of a smaller cluster)",
                self.default_replication_factor,
            ));
        }
        if !(1..=60_000).contains(&self.raft_tick_ms)
            || !(2..=1000).contains(&self.raft_election_ticks)
            || !(1..=1000).contains(&self.raft_heartbeat_ticks)
            || self.raft_heartbeat_ticks >= self.raft_election_ticks
        {
            return bad("raft_tick_ms must be from 1 to 60000, raft_election_ticks from 2 to 1000, raft_heartbeat_ticks from 1 to below raft_election_ticks".into());
        }
        if self.leader_rebalance_ms > 86_400_000 {
            return bad(format!(
                "leader_rebalance_ms = {} is out of range (0..=86400000; 0: off)",
                self.leader_rebalance_ms
            ));
        }
        if !(1024..=self.max_frame_bytes.min(64 << 20)).contains(&self.replica_fetch_max_bytes)
            || self.replica_fetch_response_max_bytes < self.replica_fetch_max_bytes
            || self.replica_fetch_response_max_bytes > 1 << 30
        {
            return bad(format!(
                "replica_fetch_max_bytes = {} must be from 1024 to max_frame_bytes (at most 64 MiB), and replica_fetch_response_max_bytes = {} from it to 1 GiB",
                self.replica_fetch_max_bytes, self.replica_fetch_response_max_bytes
            ));
        }
        if self.replica_fetch_max_bytes > self.memory_budget_bytes / 4 {
            return bad(format!(
                "replica_fetch_max_bytes = {} is more than a quarter of memory_budget_bytes = {}: catch-up reads take their bytes from the budget",
                self.replica_fetch_max_bytes, self.memory_budget_bytes
            ));
        }
        if self.leader_replication_throttled_rate != 0
            && self.leader_replication_throttled_rate < self.replica_fetch_max_bytes as u64
        {
            return bad(format!(
                "leader_replication_throttled_rate = {} is below replica_fetch_max_bytes = {} (0: no limit)",
                self.leader_replication_throttled_rate, self.replica_fetch_max_bytes
            ));
        }
        if !(100..=3_600_000).contains(&self.broker_session_timeout_ms) {
            return bad(format!(
                "broker_session_timeout_ms = {} is out of range (100..=3600000)",
                self.broker_session_timeout_ms
            ));
        }
        Ok(())
    }
}
