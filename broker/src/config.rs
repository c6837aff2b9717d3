//! Broker configuration: built-in defaults, then a TOML file, then `STILLWATER_*` environment
//! variables, then command-line flags (each later source wins). Unknown keys and bad values are
//! refused with a message that names them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use io_backend::IoEngine;

use crate::records::TimestampType;
use serde::{Deserialize, Serialize};

/// Everything the broker can be told. Defaults start one node on 127.0.0.1:9092 with `./data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This broker's id in Metadata responses.
    pub node_id: i32,
    /// Address the Kafka listener binds.
    pub listen: SocketAddr,
    /// `host:port` clients are told to connect to; defaults to `listen`.
    pub advertised_listener: Option<String>,
    /// Several listeners, Kafka's way: `NAME://host:port,…` (replaces `listen` and
    /// `advertised_listener`); empty: one PLAINTEXT listener on `listen`.
    pub listeners: String,
    /// `NAME:PROTOCOL,…` over Kafka's default (each protocol's name maps to itself).
    pub listener_security_protocol_map: String,
    /// `NAME://host:port,…`: what the clients of each listener are told; a listener not named
    /// here is advertised at the address it binds.
    pub advertised_listeners: String,
    /// TLS of the SSL listeners: the certificate chain and its private key (PEM files).
    pub ssl_certificate_location: String,
    pub ssl_key_location: String,
    /// Certificate authorities a client's certificate must chain to (PEM file).
    pub ssl_ca_location: String,
    /// Client certificates: `none`, `requested` or `required` (Kafka's `ssl.client.auth`).
    pub ssl_client_auth: String,
    /// A TLS handshake not done by then closes its connection.
    pub ssl_handshake_timeout_ms: u64,
    /// How often the certificate, key and CA files are read again; changed ones serve every new
    /// connection from then on (0: never).
    pub ssl_reload_interval_ms: u64,
    /// `PLAINTEXT` or `SSL`: the links between brokers (mutual TLS with the `ssl_*` files).
    pub inter_broker_security_protocol: String,
    /// The listener the brokers link on (Kafka's `inter.broker.listener.name`): one of
    /// `listeners`, PLAINTEXT or SSL (mutual TLS), served to the other brokers only, its port
    /// this broker's in `cluster_peers`. Empty: the brokers link on their `cluster_peers`
    /// address with `inter_broker_security_protocol`.
    pub inter_broker_listener_name: String,
    /// What the SASL listeners offer: `SCRAM-SHA-256`, `SCRAM-SHA-512`, `PLAIN` (checked
    /// against the users' SCRAM credentials), comma-separated.
    pub sasl_enabled_mechanisms: String,
    /// A SASL connection not authenticated by then is closed.
    pub sasl_authentication_timeout_ms: u64,
    /// A failed authentication is answered this long after it, then the connection closed
    /// (Kafka's `connection.failed.authentication.delay.ms`).
    pub connection_failed_authentication_delay_ms: u64,
    /// How long an authentication lasts: the client must authenticate again on its connection
    /// before then (KIP-368) or the connection is closed; 0: for the connection's life.
    pub connections_max_reauth_ms: u64,
    /// Check every request against the ACLs (Kafka's `authorizer.class.name`).
    pub authorizer_enabled: bool,
    /// Principals allowed everything, `User:admin;User:ops` (Kafka's `super.users`).
    pub super_users: String,
    /// With the authorizer on, a resource no ACL names is open to everyone.
    pub allow_everyone_if_no_acl_found: bool,
    /// SCRAM users made at start unless they exist (Kafka's `--add-scram`), e.g.
    /// `SCRAM-SHA-512=[name=admin,password=...]`, several separated by spaces.
    pub add_scram: String,
    /// The data directory (one commit pipeline per directory).
    pub data_dir: PathBuf,
    /// Disk engine: `blocking` (the default), `uring`, or `auto` (io_uring where it can be set
    /// up, else blocking). Blocking is the default because it was measured faster on the hosts
    /// this was built on: each write and sync went to io_uring's worker threads anyway (buffered
    /// writes to ext4, fsync), a hop more than the pool's (docs/benchmarks.md, "Disk engines").
    pub io_engine: String,
    /// Threads of the blocking disk pool (and of the uring engine's metadata pool).
    pub disk_threads: usize,
    /// Deadline of every disk operation; when it passes the data directory is declared failed.
    /// 0 switches deadlines off (the legacy behaviour that froze Node 1; for simulation only).
    pub io_deadline_ms: u64,
    /// Address of the Prometheus metrics endpoint; empty to disable.
    pub metrics_listen: String,
    /// Create unknown topics on Metadata and Produce (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (`num.partitions`).
    pub default_partitions: i32,
    /// Open client connections, at most.
    pub max_connections: usize,
    /// Open connections from one client address, at most (`max.connections.per.ip`).
    pub max_connections_per_ip: usize,
    /// Other limits for some addresses, as `address:count,…` (`max.connections.per.ip.overrides`).
    pub max_connections_per_ip_overrides: String,
    /// Bytes of requests being read or waiting for the log, and of responses not yet written,
    /// broker-wide (Kafka's `queued.max.request.bytes`, counting responses too). Past it,
    /// connections stop reading and Fetches wait before reading the disk; its last eighth is
    /// kept for small requests. At least 8/7 of `max_frame_bytes`.
    pub memory_budget_bytes: usize,
    /// A response write that makes no progress this long closes the connection.
    pub response_write_timeout_ms: u64,
    /// Largest request frame accepted (`socket.request.max.bytes`).
    pub max_frame_bytes: usize,
    /// Requests read from one connection before its responses are written.
    pub max_in_flight_per_connection: usize,
    /// Connections idle this long are closed (`connections.max.idle.ms`).
    pub idle_connection_timeout_ms: u64,
    /// Client quotas' rates are measured over this many windows (`quota.window.num`) …
    pub quota_window_num: u64,
    /// … of this many seconds each (`quota.window.size.seconds`).
    pub quota_window_size_seconds: u64,
    /// Appends queued for the commit pipeline before producers wait (backpressure).
    pub append_queue_capacity: usize,
    /// Largest record batch accepted (`message.max.bytes`); topics may set their own
    /// (`max.message.bytes`).
    pub max_message_bytes: usize,
    /// Whose timestamps records keep unless a topic says otherwise (`log.message.timestamp.type`):
    /// `CreateTime` (the producer's) or `LogAppendTime` (the broker's clock at append).
    pub message_timestamp_type: TimestampType,
    /// Bytes of log between two sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u64,
    /// Zeros written ahead of each active segment's end, so that most syncs overwrite blocks
    /// the file already has (no journal commit for a size change). 0 disables.
    pub preallocate_bytes: u64,
    /// Default topic settings; CreateTopics may override them per topic.
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    /// Idempotent producers that have not written to a partition for this long are forgotten
    /// there (`producer.id.expiration.ms`); one that comes back may then restart its sequence.
    pub producer_id_expiration_ms: i64,
    /// Partitions of `__consumer_offsets`, made when a group first needs it
    /// (`offsets.topic.num.partitions`).
    pub offsets_topic_partitions: i32,
    /// How long a new consumer group waits for more members before its first rebalance
    /// completes (`group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: u64,
    /// Bounds of a member's session timeout (`group.min.session.timeout.ms`,
    /// `group.max.session.timeout.ms`).
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// A consumer-protocol (KIP-848) member not heard from for this long is fenced
    /// (`group.consumer.session.timeout.ms`).
    pub group_consumer_session_timeout_ms: i32,
    /// How often consumer-protocol members are told to heartbeat
    /// (`group.consumer.heartbeat.interval.ms`).
    pub group_consumer_heartbeat_interval_ms: i32,
    /// Members a consumer-protocol group may have (`group.consumer.max.size`).
    pub group_consumer_max_size: i32,
    /// The offsets of a group without members expire this long after its last commit
    /// (`offsets.retention.minutes`, in ms).
    pub offsets_retention_ms: i64,
    /// How often expired offsets are looked for (`offsets.retention.check.interval.ms`).
    pub offsets_retention_check_interval_ms: u64,
    /// Records a partition of `__consumer_offsets` may hold past its live state (at least
    /// four times that state) before the live state is written again and the older records
    /// deleted: the topic's bound without log compaction.
    pub offsets_checkpoint_records: i64,
    /// Whether `__consumer_offsets` is also made with `cleanup.policy=compact`, as Kafka's is:
    /// the log cleaner keeps each key's latest record between checkpoints (measured with
    /// `cargo xtask bench offsets`: a lower peak size at the same commit latency). Applied
    /// when the topic is made, and on a single node at every start.
    pub offsets_topic_compacted: bool,
    /// Client telemetry (KIP-714): GetTelemetrySubscriptions and PushTelemetry listed in
    /// ApiVersions, and the metrics clients push shown on the metrics endpoint. Off, as in
    /// Kafka without a telemetry reporter: the APIs are still answered, pushes dropped.
    pub client_telemetry_enabled: bool,
    /// The largest metrics payload a client may push, compressed (`telemetry.max.bytes`).
    pub client_telemetry_max_bytes: i32,
    /// Most pushed metric values shown at once, over all clients; more are dropped and
    /// counted.
    pub client_telemetry_max_series: usize,
    /// `segment.bytes` of `__consumer_offsets` (`offsets.topic.segment.bytes`): what the
    /// cleaner may clean ends where the active segment begins. Applied as the compaction
    /// setting above.
    pub offsets_topic_segment_bytes: u64,
    /// Partitions of `__transaction_state`, made when a transactional id first needs it
    /// (`transaction.state.log.num.partitions`).
    pub transaction_state_partitions: i32,
    /// The longest `transaction.timeout.ms` a producer may ask for
    /// (`transaction.max.timeout.ms`).
    pub transaction_max_timeout_ms: i32,
    /// A transactional id unused this long with no transaction under way is forgotten
    /// (`transactional.id.expiration.ms`).
    pub transactional_id_expiration_ms: i64,
    /// How often transactions past their timeout are looked for and aborted
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    pub transaction_abort_check_interval_ms: u64,
    /// How often expired transactional ids are looked for
    /// (`transaction.remove.expired.transaction.cleanup.interval.ms`).
    pub transaction_expiry_check_interval_ms: u64,
    /// Transactions under way at once on this broker's coordinator: a producer that would open
    /// one more is refused (COORDINATOR_NOT_AVAILABLE, retried) until one ends.
    pub transactions_open_max: usize,
    /// Partitions (the offsets topic's among them) one transaction may write to.
    pub transaction_partitions_max: usize,
    /// How often retention is checked (`log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// Whether compacted topics are cleaned (`log.cleaner.enable`).
    pub log_cleaner_enable: bool,
    /// Memory of the cleaner's key map at most, 24 bytes a slot, filled to nine tenths
    /// (`log.cleaner.dedupe.buffer.size`; the map grows to it as keys come): a dirty section
    /// with more keys is cleaned in several passes.
    pub log_cleaner_dedupe_buffer_bytes: u64,
    /// Bytes per second the cleaner reads and writes at most
    /// (`log.cleaner.io.max.bytes.per.second`); 0: no limit.
    pub log_cleaner_io_max_bytes_per_second: u64,
    /// How long the cleaner waits when no log needs cleaning (`log.cleaner.backoff.ms`).
    pub log_cleaner_backoff_ms: u64,
    /// The cluster metadata log's segment size (`metadata.log.segment.bytes`): a snapshot of
    /// the metadata is taken where a segment begins.
    pub metadata_log_segment_bytes: u64,
    /// Bytes of metadata log after which the next segment boundary gets a snapshot, and the
    /// log below it is deleted (`metadata.log.max.record.bytes.between.snapshots`).
    pub metadata_snapshot_interval_bytes: u64,
    /// The controller quorum (KRaft's `controller.quorum.voters`): the brokers that vote on the
    /// cluster metadata, by id, with the address each serves the other brokers on:
    /// `1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093` (three or five), the same on every
    /// broker. A broker whose `node_id` is among them is a voter; any other broker joins the
    /// cluster through them and follows the metadata without voting (an observer; give it
    /// `inter_broker_listen`). Empty: a single node, nothing replicated.
    pub cluster_peers: String,
    /// Inter-broker addresses (`host:port,…`) of brokers a new broker asks to join the
    /// cluster through, any of its members; empty: the addresses in `cluster_peers` (needed
    /// once the brokers first listed there have been retired).
    pub cluster_join: String,
    /// The rack (or zone) this broker is in (Kafka's `broker.rack`): Metadata names it, and a
    /// new partition's replicas go to as many racks as they can. Empty: none.
    pub broker_rack: String,
    /// The feature levels a new cluster (its first broker to register) or a new single node
    /// starts at, `name=level,…`: every feature at its highest level but those named (Kafka's
    /// `kafka-storage format --feature`). An existing cluster or directory keeps its levels.
    pub initial_features: String,
    /// Address the inter-broker listener binds; defaults to this broker's address in
    /// `cluster_peers`. An observer (not in `cluster_peers`) also registers it as the address
    /// the others dial, so it must be one they can reach.
    pub inter_broker_listen: Option<SocketAddr>,
    /// Replicas of a topic created without saying (`default.replication.factor`); 0 means
    /// three, or every broker of a smaller cluster.
    pub default_replication_factor: i32,
    /// The Raft tick; elections and heartbeats are counted in ticks.
    pub raft_tick_ms: u64,
    /// Ticks a follower waits without hearing from its leader before it stands for election
    /// (the timeout is drawn from [n, 2n) ticks).
    pub raft_election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub raft_heartbeat_ticks: usize,
    /// A broker not heard from for this long is reported as gone in Metadata
    /// (`broker.session.timeout.ms`).
    pub broker_session_timeout_ms: u64,
    /// A partition's leadership goes back to its preferred replica (the first of its list)
    /// once that replica has been connected and caught up this long
    /// (`auto.leader.rebalance.enable`); 0 turns it off.
    pub leader_rebalance_ms: u64,
    /// Bytes a leader reads from its log for a follower behind its cache of recent entries in
    /// one read, and sends it in one append, at most (`replica.fetch.max.bytes`).
    pub replica_fetch_max_bytes: usize,
    /// Bytes of such reads under way to one follower, with what the inter-broker link still
    /// queues for it, at most (`replica.fetch.response.max.bytes`). Every read also takes its
    /// bytes from `memory_budget_bytes` until the follower's append is queued.
    pub replica_fetch_response_max_bytes: usize,
    /// Bytes per second a leader reads from its log for followers catching up, at most
    /// (`leader.replication.throttled.rate`, here for every catch-up read); 0: no limit. A
    /// follower that keeps up is sent recent entries from memory, never throttled. The
    /// default, 32 MiB/s per leading broker, leaves the produce path its disk and CPU time
    /// (`cargo xtask bench catchup` compares settings).
    pub leader_replication_throttled_rate: u64,
    /// Seed of the node's random generator (topic ids). 0 draws one from the wall clock.
    pub seed: u64,
    /// Async worker threads; 0 means one per CPU.
    pub worker_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_listener: None,
            listeners: String::new(),
            listener_security_protocol_map: String::new(),
            advertised_listeners: String::new(),
            ssl_certificate_location: String::new(),
            ssl_key_location: String::new(),
            ssl_ca_location: String::new(),
            ssl_client_auth: "none".into(),
            ssl_handshake_timeout_ms: 10_000,
            ssl_reload_interval_ms: 30_000,
            inter_broker_security_protocol: "PLAINTEXT".into(),
            inter_broker_listener_name: String::new(),
            sasl_enabled_mechanisms: "SCRAM-SHA-256,SCRAM-SHA-512".into(),
            sasl_authentication_timeout_ms: 30_000,
            connection_failed_authentication_delay_ms: 100,
            connections_max_reauth_ms: 0,
            add_scram: String::new(),
            authorizer_enabled: false,
            super_users: String::new(),
            allow_everyone_if_no_acl_found: false,
            data_dir: PathBuf::from("./data"),
            io_engine: "blocking".into(),
            disk_threads: 4,
            io_deadline_ms: 5_000,
            metrics_listen: "127.0.0.1:9644".into(),
            auto_create_topics: true,
            default_partitions: 1,
            max_connections: 1024,
            max_connections_per_ip: 512,
            max_connections_per_ip_overrides: String::new(),
            memory_budget_bytes: 256 << 20,
            response_write_timeout_ms: 30_000,
            max_frame_bytes: 100 * 1024 * 1024,
            max_in_flight_per_connection: 64,
            idle_connection_timeout_ms: 600_000,
            quota_window_num: 11,
            quota_window_size_seconds: 1,
            append_queue_capacity: 8192,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            index_interval_bytes: 4096,
            preallocate_bytes: 4 << 20,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            retention_check_interval_ms: 300_000,
            log_cleaner_enable: true,
            log_cleaner_dedupe_buffer_bytes: 64 << 20,
            log_cleaner_io_max_bytes_per_second: 64 << 20,
            log_cleaner_backoff_ms: 15_000,
            metadata_log_segment_bytes: 8 << 20,
            metadata_snapshot_interval_bytes: 16 << 20,
            producer_id_expiration_ms: 86_400_000,
            offsets_topic_partitions: 50,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_max_size: 1_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offsets_checkpoint_records: 10_000,
            offsets_topic_compacted: true,
            client_telemetry_enabled: false,
            client_telemetry_max_bytes: 1 << 20,
            client_telemetry_max_series: 10_000,
            offsets_topic_segment_bytes: 16 << 20,
            transaction_state_partitions: 50,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3600 * 1000,
            transaction_abort_check_interval_ms: 10_000,
            transaction_expiry_check_interval_ms: 3_600_000,
            transactions_open_max: 10_000,
            transaction_partitions_max: 10_000,
            cluster_peers: String::new(),
            cluster_join: String::new(),
            broker_rack: String::new(),
            initial_features: String::new(),
            inter_broker_listen: None,
            default_replication_factor: 0,
            raft_tick_ms: 100,
            raft_election_ticks: 10,
            raft_heartbeat_ticks: 2,
            broker_session_timeout_ms: 9_000,
            leader_rebalance_ms: 10_000,
            replica_fetch_max_bytes: 1 << 20,
            replica_fetch_response_max_bytes: 10 << 20,
            leader_replication_throttled_rate: 32 << 20,
            seed: 0,
            worker_threads: 0,
        }
    }
}

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("setting {key}: {message}")]
    Setting { key: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Where configuration comes from, lowest priority first.
#[derive(Debug, Default)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// `(key, value)` pairs from the environment, e.g. from `STILLWATER_DATA_DIR`.
    pub env: Vec<(String, String)>,
    /// `(key, value)` pairs from flags.
    pub flags: Vec<(String, String)>,
}

impl Sources {
    /// Settings found in the process environment as `STILLWATER_<KEY>`. A `STILLWATER_*`
    /// variable that names no setting is an error, as an unknown key in the file is: a typo
    /// (`STILLWATER_DATADIR`) must not silently leave the broker on its defaults.
    /// `STILLWATER_LOG` and `STILLWATER_CONFIG` are the log filter and the file itself;
    /// `STILLWATER_LOCK_AUDIT` is a testing aid ([`crate::sync::audit`]).
    pub fn env_from_process() -> Result<Vec<(String, String)>, ConfigError> {
        Self::env_from(std::env::vars())
    }

    pub fn env_from(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let known = Config::keys();
        let mut settings = Vec::new();
        for (k, v) in vars {
            let Some(key) = k.strip_prefix("STILLWATER_").map(str::to_ascii_lowercase) else {
                continue;
            };
            if known.contains(&key) {
                settings.push((key, v));
            } else if key != "log" && key != "config" && key != "lock_audit" {
                return Err(ConfigError::Setting {
                    key: k,
                    message: "no setting has this name (environment variables are \
                              STILLWATER_ and a key in upper case, e.g. STILLWATER_DATA_DIR)"
                        .into(),
                });
            }
        }
        Ok(settings)
    }
}

impl Config {
    /// Every setting's key.
    pub fn keys() -> Vec<String> {
        // JSON keeps `None` fields (as null), which TOML would drop.
        match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Merge the sources over the defaults and check the result.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        if let Some(path) = &sources.file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            table = text.parse::<toml::Table>().map_err(|e| ConfigError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
            // Check the file alone first so its errors name the file.
            Config::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                ConfigError::File {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
        }
        for (key, value) in sources.env.iter().chain(&sources.flags) {
            let key = key.replace('-', "_");
            table.insert(key.clone(), setting_value(&key, value));
            Config::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                ConfigError::Setting {
                    key: key.clone(),
                    message: e.to_string(),
                }
            })?;
        }
        let config = Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// The levels a new cluster or single node starts at ([`crate::features::initial_levels`];
    /// checked when the configuration is).
    pub fn initial_features(&self) -> std::collections::BTreeMap<String, i16> {
        crate::features::initial_levels(&self.initial_features).unwrap_or_default()
    }

    /// This broker's rack, if `broker_rack` names one.
    pub fn rack(&self) -> Option<String> {
        Some(self.broker_rack.clone()).filter(|r| !r.is_empty())
    }

    /// Whether this broker is a node of a cluster (its partitions replicated).
    pub fn clustered(&self) -> bool {
        !self.cluster_peers.trim().is_empty()
    }

    /// The cluster's brokers and their inter-broker addresses (empty on a single node).
    pub fn peers(&self) -> std::collections::BTreeMap<u64, SocketAddr> {
        parse_peers(&self.cluster_peers).unwrap_or_default()
    }

    /// The address the inter-broker listener binds: the named inter-broker listener's, else
    /// `inter_broker_listen`, else this broker's in `cluster_peers`.
    pub fn inter_broker_address(&self) -> Option<SocketAddr> {
        if let Ok(Some(spec)) = self.inter_broker_listener() {
            return Some(spec.bind);
        }
        self.inter_broker_listen
            .or_else(|| self.peers().get(&(self.node_id as u64)).copied())
    }

    /// Where a broker outside the cluster asks to join: `cluster_join`, else the voters'
    /// addresses.
    pub fn join_addresses(&self) -> Vec<SocketAddr> {
        let listed: Vec<SocketAddr> = self
            .cluster_join
            .split(',')
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        if listed.is_empty() {
            self.peers().into_values().collect()
        } else {
            listed
        }
    }

    /// Whether this broker votes on the cluster metadata (one of `cluster_peers`).
    pub fn voter(&self) -> bool {
        self.peers().contains_key(&(self.node_id as u64))
    }

    /// Replicas of a topic created without a replication factor, in a cluster of `brokers`.
    pub fn replication_factor_of(&self, brokers: usize) -> i32 {
        let brokers = brokers.max(1) as i32;
        match self.default_replication_factor {
            0 => brokers.min(3),
            n => n,
        }
    }

    /// Replicas of a topic created without a replication factor, counting the voters only
    /// (before the metadata says how many brokers there are).
    pub fn replication_factor(&self) -> i32 {
        let brokers = self.peers().len().max(1) as i32;
        match self.default_replication_factor {
            0 => brokers.min(3),
            n => n,
        }
    }

    /// How many connections `ip` may have open.
    pub fn max_connections_for(&self, ip: std::net::IpAddr) -> usize {
        parse_overrides(&self.max_connections_per_ip_overrides)
            .ok()
            .and_then(|o| o.into_iter().find(|(a, _)| *a == ip).map(|(_, n)| n))
            .unwrap_or(self.max_connections_per_ip)
    }

    pub fn engine(&self) -> IoEngine {
        self.io_engine.parse().unwrap_or_default()
    }

    /// `None` when deadlines are off.
    pub fn io_deadline(&self) -> Option<Duration> {
        (self.io_deadline_ms > 0).then(|| Duration::from_millis(self.io_deadline_ms))
    }

    /// Host and port of the first listener, as its clients are told (the address a broker
    /// registers with, beside every listener's).
    pub fn advertised(&self) -> (String, i32) {
        match self.advertised_endpoints().into_iter().next() {
            Some(e) => (e.host, e.port),
            None => (self.listen.ip().to_string(), self.listen.port() as i32),
        }
    }

    pub fn topic_defaults(&self) -> crate::topic_config::LogConfig {
        crate::topic_config::LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            index_interval_bytes: self.index_interval_bytes,
            preallocate_bytes: self.preallocate_bytes,
            max_message_bytes: self.max_message_bytes as u64,
            timestamp_type: self.message_timestamp_type,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            min_insync_replicas: 1,
            compression: Default::default(),
            cleanup: Default::default(),
            min_cleanable_dirty_ratio: Default::default(),
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 86_400_000,
        }
    }
}

/// A setting's text as a TOML value: numbers and booleans as such, everything else a string.
fn setting_value(key: &str, text: &str) -> toml::Value {
    let is_text_key = matches!(
        key,
        "listen"
            | "advertised_listener"
            | "listeners"
            | "listener_security_protocol_map"
            | "advertised_listeners"
            | "ssl_certificate_location"
            | "ssl_key_location"
            | "ssl_ca_location"
            | "ssl_client_auth"
            | "inter_broker_security_protocol"
            | "inter_broker_listener_name"
            | "cluster_join"
            | "sasl_enabled_mechanisms"
            | "add_scram"
            | "super_users"
            | "data_dir"
            | "io_engine"
            | "metrics_listen"
            | "message_timestamp_type"
            | "max_connections_per_ip_overrides"
    );
    if !is_text_key {
        if let Ok(v) = text.parse::<i64>() {
            return toml::Value::Integer(v);
        }
        if let Ok(v) = text.parse::<bool>() {
            return toml::Value::Boolean(v);
        }
    }
    toml::Value::String(text.to_string())
}

mod check;
mod describe;
mod listeners;
mod origins;
pub use origins::Origin;
mod parse;
mod security;
pub use listeners::{
    ClientAuth, Endpoint, ListenerSpec, SecurityProtocol, TlsSettings, DEFAULT_LISTENER,
};
use parse::{parse_host_port, parse_overrides, parse_peers};
pub use security::{AuthorizerSettings, SaslMechanism, SaslSettings, ScramSecret, ScramUser};
#[cfg(test)]
mod tests;
