//! Topic configs as Kafka names them. Every key Kafka defines for a topic is in [`KEYS`], each
//! either honoured (it changes what the log does), satisfied by construction (`flush.*`: every
//! batch is synced before it is acknowledged), or accepted only at Kafka's default value; any
//! other key or value is refused with the key's name (INVALID_CONFIG). Nothing is accepted and
//! then ignored.
//!
//! A topic's configuration is its *overrides* (the keys set by CreateTopics or AlterConfigs,
//! kept in its metadata file) over the broker's defaults, resolved into a
//! [`LogConfig`] by [`resolve`] — again whenever the node
//! starts, so a topic without an override follows the broker's setting, as in Kafka.

use std::collections::BTreeMap;

use crate::compression::TopicCompression;
use crate::records::TimestampType;
use serde::{Deserialize, Serialize};

/// Per-topic log settings, with Kafka's meaning (`segment.bytes`, `retention.ms`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// -1: keep forever.
    pub retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    pub index_interval_bytes: u64,
    /// Zeros written ahead of the active segment's end (0: none).
    #[serde(default)]
    pub preallocate_bytes: u64,
    /// Largest batch accepted, as sent (`max.message.bytes`).
    #[serde(default = "kafka_max_message_bytes")]
    pub max_message_bytes: u64,
    /// Whose timestamps the records keep (`message.timestamp.type`).
    #[serde(default)]
    pub timestamp_type: TimestampType,
    /// With CreateTime, how far before / after the broker's clock a record's timestamp may lie
    /// (`message.timestamp.before.max.ms` / `message.timestamp.after.max.ms`).
    #[serde(default = "unlimited_ms")]
    pub timestamp_before_max_ms: i64,
    #[serde(default = "unlimited_ms")]
    pub timestamp_after_max_ms: i64,
    /// Replicas that must have an `acks=all` write (`min.insync.replicas`); above the
    /// partition's replicas it asks for all of them (on a single node, this broker), as
    /// Kafka's effective minimum does.
    #[serde(default = "one")]
    pub min_insync_replicas: i32,
    /// The codec batches are stored with (`compression.type`).
    #[serde(default)]
    pub compression: TopicCompression,
    /// How old records go (`cleanup.policy`): whole segments by retention, and/or every record
    /// but the latest of its key by the cleaner.
    #[serde(default)]
    pub cleanup: CleanupPolicy,
    /// The part of a compacted log not cleaned yet, above which the cleaner takes it
    /// (`min.cleanable.dirty.ratio`).
    #[serde(default)]
    pub min_cleanable_dirty_ratio: Ratio,
    /// How long a record stays uncleaned at least / at most (`min.compaction.lag.ms`,
    /// `max.compaction.lag.ms`).
    #[serde(default)]
    pub min_compaction_lag_ms: i64,
    #[serde(default = "unlimited_ms")]
    pub max_compaction_lag_ms: i64,
    /// How long a tombstone stays after the cleaner first saw it (`delete.retention.ms`).
    #[serde(default = "kafka_delete_retention_ms")]
    pub delete_retention_ms: i64,
}

/// `cleanup.policy`: `delete`, `compact`, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy {
            delete: true,
            compact: false,
        }
    }
}

impl CleanupPolicy {
    /// From a checked value (`check` refused anything else).
    pub fn parse(value: &str) -> CleanupPolicy {
        let has = |p: &str| value.split(',').any(|v| v.trim() == p);
        CleanupPolicy {
            delete: has("delete"),
            compact: has("compact"),
        }
    }

    pub fn name(&self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// A ratio from 0 to 1, kept in millionths (so that a config compares exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ratio(pub u32);

impl Ratio {
    pub fn of(value: f64) -> Ratio {
        Ratio((value.clamp(0.0, 1.0) * 1e6).round() as u32)
    }

    pub fn get(&self) -> f64 {
        f64::from(self.0) / 1e6
    }
}

impl Default for Ratio {
    /// Kafka's `min.cleanable.dirty.ratio`.
    fn default() -> Self {
        Ratio(500_000)
    }
}

fn kafka_delete_retention_ms() -> i64 {
    86_400_000
}

fn kafka_max_message_bytes() -> u64 {
    1_048_588
}

fn unlimited_ms() -> i64 {
    i64::MAX
}

fn one() -> i32 {
    1
}

/// A topic's overrides: Kafka key → value, as checked and normalised by [`check`].
pub type Overrides = BTreeMap<String, String>;

/// What the broker does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Honoured: any valid value.
    Honoured,
    /// Any valid value is met by how the broker works, whatever it is (the key's doc says how):
    /// every batch is synced before it is acknowledged; a removed segment's file stays open
    /// for every read still on it.
    MetAnyway,
    /// Only Kafka's default is accepted (the feature does not exist here); `why` says so.
    DefaultOnly(&'static str),
    /// Any valid value is accepted, kept and described, and has no effect — as in Kafka, where
    /// it acts only with a feature whose switch is refused here (`why`: compaction, tiered
    /// storage), so a topic Kafka would accept is accepted and behaves as Kafka's would.
    InertAsInKafka(&'static str),
}

/// Kafka's config types (DescribeConfigs v3+ `config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic config key.
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub kafka_default: &'static str,
    pub ty: Type,
    /// The smallest value allowed (numbers), as Kafka validates.
    pub min: i64,
    pub support: Support,
    /// Kafka's broker-level setting that supplies the default (DescribeConfigs synonyms).
    pub broker_key: Option<&'static str>,
    pub doc: &'static str,
}

const NO_TIERED: &str = "there is no tiered storage";
const TIERED_ONLY: &str =
    "it applies with tiered storage only, and remote.storage.enable=true is refused";
const NO_REPLICATION: &str = "each partition has one replica";

const fn key(
    name: &'static str,
    kafka_default: &'static str,
    ty: Type,
    min: i64,
    support: Support,
    broker_key: Option<&'static str>,
    doc: &'static str,
) -> Key {
    Key {
        name,
        kafka_default,
        ty,
        min,
        support,
        broker_key,
        doc,
    }
}

use Support::{DefaultOnly, Honoured, InertAsInKafka, MetAnyway};

/// Every topic config Kafka (3.9) defines, sorted by name.
pub const KEYS: &[Key] = &[
    key("cleanup.policy", "delete", Type::List, 0, Honoured, Some("log.cleanup.policy"),
        "How old records are removed: delete (whole segments, by retention.ms and retention.bytes), compact (every record but the latest of its key, by the log cleaner), or compact,delete (both)."),
    key("compression.gzip.level", "-1", Type::Int, -1, DefaultOnly("the broker recompresses with gzip's default level"), Some("compression.gzip.level"),
        "The level of gzip compression when the broker recompresses: gzip's default (6)."),
    key("compression.lz4.level", "9", Type::Int, 1, DefaultOnly("the broker's lz4 encoder has no levels"), Some("compression.lz4.level"),
        "The level of lz4 compression when the broker recompresses: the lz4 encoder's only one."),
    key("compression.type", "producer", Type::String, 0, Honoured, Some("compression.type"),
        "producer: batches are stored as the producer compressed them. uncompressed, gzip, snappy, lz4, zstd: every batch in another codec is recompressed with this one before it is stored."),
    key("compression.zstd.level", "3", Type::Int, -131072, DefaultOnly("the broker recompresses with zstd at its fastest level (about 1)"), Some("compression.zstd.level"),
        "The level of zstd compression when the broker recompresses: the pure-Rust encoder's fastest (about level 1)."),
    key("delete.retention.ms", "86400000", Type::Long, 0, Honoured, Some("log.cleaner.delete.retention.ms"),
        "How long a tombstone (a record with a key and no value) is kept in a compacted topic after the cleaner first passed it."),
    key("file.delete.delay.ms", "60000", Type::Long, 0, MetAnyway, Some("log.segment.delete.delay.ms"),
        "How long a deleted segment's file is kept for the reads still on it. Any value is met: a read holds the segment's file open, and the file goes when the last read on it ends."),
    key("flush.messages", "9223372036854775807", Type::Long, 1, MetAnyway, Some("log.flush.interval.messages"),
        "Messages between forced fsyncs. Any value is met: every batch is synced before it is acknowledged."),
    key("flush.ms", "9223372036854775807", Type::Long, 0, MetAnyway, Some("log.flush.interval.ms"),
        "Time between forced fsyncs. Any value is met: every batch is synced before it is acknowledged."),
    key("follower.replication.throttled.replicas", "", Type::List, 0, DefaultOnly(NO_REPLICATION), Some("follower.replication.throttled.replicas"),
        "Replicas whose replication is throttled on the follower side."),
    key("index.interval.bytes", "4096", Type::Int, 0, Honoured, Some("log.index.interval.bytes"),
        "Bytes of log between two offset index entries."),
    key("leader.replication.throttled.replicas", "", Type::List, 0, DefaultOnly(NO_REPLICATION), Some("leader.replication.throttled.replicas"),
        "Replicas whose replication is throttled on the leader side."),
    key("local.retention.bytes", "-2", Type::Long, -2, InertAsInKafka(TIERED_ONLY), Some("log.local.retention.bytes"),
        "Bytes kept locally when tiered storage is on."),
    key("local.retention.ms", "-2", Type::Long, -2, InertAsInKafka(TIERED_ONLY), Some("log.local.retention.ms"),
        "Time kept locally when tiered storage is on."),
    key("max.compaction.lag.ms", "9223372036854775807", Type::Long, 1, Honoured, Some("log.cleaner.max.compaction.lag.ms"),
        "Longest time a record of a compacted topic stays uncleaned: past it the log is cleaned whatever its dirty ratio (the active segment rolls for it)."),
    key("max.message.bytes", "1048588", Type::Int, 0, Honoured, Some("message.max.bytes"),
        "Largest record batch accepted, as sent (compressed)."),
    key("message.downconversion.enable", "true", Type::Boolean, 0, DefaultOnly("fetches older than v4 are not served, so nothing is down-converted"), Some("log.message.downconversion.enable"),
        "Whether old fetchers get down-converted batches."),
    key("message.format.version", "3.0-IV1", Type::String, 0, InertAsInKafka("Kafka 3.0 and later ignore it too: batches are stored in format v2"), Some("log.message.format.version"),
        "The message format; ignored by Kafka since 3.0."),
    key("message.timestamp.after.max.ms", "9223372036854775807", Type::Long, 0, Honoured, Some("log.message.timestamp.after.max.ms"),
        "With CreateTime: how far after the broker's clock a record's timestamp may lie."),
    key("message.timestamp.before.max.ms", "9223372036854775807", Type::Long, 0, Honoured, Some("log.message.timestamp.before.max.ms"),
        "With CreateTime: how far before the broker's clock a record's timestamp may lie."),
    key("message.timestamp.difference.max.ms", "9223372036854775807", Type::Long, 0, Honoured, Some("log.message.timestamp.difference.max.ms"),
        "Deprecated: bounds both sides at once (before.max.ms and after.max.ms, when those are not set)."),
    key("message.timestamp.type", "CreateTime", Type::String, 0, Honoured, Some("log.message.timestamp.type"),
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock."),
    key("min.cleanable.dirty.ratio", "0.5", Type::Double, 0, Honoured, Some("log.cleaner.min.cleanable.ratio"),
        "The part of a compacted log not yet cleaned (by bytes) above which the cleaner cleans it."),
    key("min.compaction.lag.ms", "0", Type::Long, 0, Honoured, Some("log.cleaner.min.compaction.lag.ms"),
        "Shortest time a record of a compacted topic stays uncleaned (every value stays readable that long)."),
    key("min.insync.replicas", "1", Type::Int, 1, Honoured, Some("min.insync.replicas"),
        "Replicas that must hold an acks=all write durably before it is answered (at least a majority in a cluster); with fewer in sync, acks=all is refused (NOT_ENOUGH_REPLICAS); above the partition's replicas, all of them."),
    key("preallocate", "false", Type::Boolean, 0, DefaultOnly("the broker writes zeros ahead of the active segment by its own setting (preallocate_bytes)"), Some("log.preallocate"),
        "Whether a new segment's file is allocated whole."),
    key("remote.log.copy.disable", "false", Type::Boolean, 0, DefaultOnly(NO_TIERED), None,
        "Whether copying to tiered storage stops."),
    key("remote.log.delete.on.disable", "false", Type::Boolean, 0, DefaultOnly(NO_TIERED), None,
        "Whether tiered data is deleted when tiering is switched off."),
    key("remote.storage.enable", "false", Type::Boolean, 0, DefaultOnly(NO_TIERED), None,
        "Whether the topic uses tiered storage."),
    key("retention.bytes", "-1", Type::Long, -1, Honoured, Some("log.retention.bytes"),
        "Bytes a partition keeps before its oldest closed segments are deleted; -1: no limit."),
    key("retention.ms", "604800000", Type::Long, -1, Honoured, Some("log.retention.ms"),
        "How long a closed segment is kept after its newest record's timestamp; -1: forever."),
    key("segment.bytes", "1073741824", Type::Int, 1024, Honoured, Some("log.segment.bytes"),
        "Size at which the active segment is closed and a new one started."),
    key("segment.index.bytes", "10485760", Type::Int, 4, DefaultOnly("the offset index is kept in memory and written whole when a segment closes"), Some("log.index.size.max.bytes"),
        "Size of a segment's preallocated index file."),
    key("segment.jitter.ms", "0", Type::Long, 0, DefaultOnly("segments roll at segment.ms exactly"), Some("log.roll.jitter.ms"),
        "Random jitter subtracted from segment.ms."),
    key("segment.ms", "604800000", Type::Long, 1, Honoured, Some("log.roll.ms"),
        "Age at which the active segment is closed, counted from its first batch."),
    key("unclean.leader.election.enable", "false", Type::Boolean, 0, DefaultOnly(NO_REPLICATION), Some("unclean.leader.election.enable"),
        "Whether an out-of-sync replica may become leader."),
];

pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Why a config was refused: the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Check one key and value, returning the value in normal form (numbers without spaces or
/// leading zeros, booleans in lower case, lists trimmed and comma-joined).
pub fn check(name: &str, value: Option<&str>) -> Result<String, ConfigError> {
    let bad = |m: String| Err(ConfigError(m));
    let Some(key) = find(name) else {
        return bad(format!("unknown topic config name: {name}"));
    };
    let Some(value) = value else {
        return bad(format!("{name}: a null value is not allowed"));
    };
    let value = value.trim();
    let normal = match key.ty {
        Type::Short | Type::Int | Type::Long => {
            let Ok(n) = value.parse::<i64>() else {
                return bad(format!("{name}={value:?} is not a whole number"));
            };
            let max = match key.ty {
                Type::Short => i16::MAX as i64,
                Type::Int => i32::MAX as i64,
                _ => i64::MAX,
            };
            if n < key.min || n > max {
                return bad(format!(
                    "{name}={n} is out of range: it must be between {} and {max}",
                    key.min
                ));
            }
            n.to_string()
        }
        Type::Boolean => match value.to_ascii_lowercase().as_str() {
            b @ ("true" | "false") => b.to_string(),
            _ => return bad(format!("{name}={value:?}: expected true or false")),
        },
        Type::Double => match value.parse::<f64>() {
            Ok(d) if (0.0..=1.0).contains(&d) => value.to_string(),
            _ => return bad(format!("{name}={value:?}: expected a number from 0 to 1")),
        },
        Type::List => value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(","),
        Type::String => value.to_string(),
    };
    match (name, normal.as_str()) {
        ("cleanup.policy", policy) => {
            let parts: Vec<&str> = policy.split(',').collect();
            let known = parts.iter().all(|p| matches!(*p, "delete" | "compact"));
            let once = parts.len()
                == parts
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
            if policy.is_empty() || !known || !once {
                return bad(format!(
                    "cleanup.policy={policy:?}: expected delete, compact or compact,delete"
                ));
            }
        }
        ("compression.type", c) if TopicCompression::parse(c).is_some() => {}
        ("compression.type", other) => {
            return bad(format!(
                "compression.type={other:?}: expected producer, uncompressed, gzip, snappy, lz4 \
                 or zstd"
            ))
        }
        ("message.timestamp.type", "CreateTime" | "LogAppendTime") => {}
        ("message.timestamp.type", other) => {
            return bad(format!(
                "message.timestamp.type={other:?}: expected CreateTime or LogAppendTime"
            ))
        }
        ("message.format.version", v) if !is_kafka_version(v) => {
            return bad(format!(
                "message.format.version={v:?}: expected a Kafka version such as 2.8 or 3.0-IV1"
            ))
        }
        _ => {}
    }
    if let DefaultOnly(why) = key.support {
        if !same_value(key, &normal) {
            return bad(format!(
                "{name}={normal} is not supported ({why}); only Kafka's default, {name}={}, is accepted",
                if key.kafka_default.is_empty() { "\"\"" } else { key.kafka_default }
            ));
        }
    }
    Ok(normal)
}

/// A Kafka version as `message.format.version` takes one: `0.10.0`, `2.8`, `3.0-IV1`.
fn is_kafka_version(v: &str) -> bool {
    let (numbers, iv) = v.split_once("-IV").unwrap_or((v, "0"));
    let parts: Vec<&str> = numbers.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .chain(std::iter::once(&iv))
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn same_value(key: &Key, normal: &str) -> bool {
    match key.ty {
        Type::Double => normal.parse::<f64>().ok() == key.kafka_default.parse::<f64>().ok(),
        _ => normal == key.kafka_default,
    }
}

/// Check a whole set of overrides (each key once).
pub fn check_all<'a>(
    pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<Overrides, ConfigError> {
    let mut out = Overrides::new();
    for (name, value) in pairs {
        let normal = check(name, value)?;
        if out.insert(name.to_string(), normal).is_some() {
            return Err(ConfigError(format!("{name} is given more than once")));
        }
    }
    Ok(out)
}

/// The log settings of a topic with these overrides over the broker's defaults.
pub fn resolve(defaults: LogConfig, overrides: &Overrides) -> Result<LogConfig, ConfigError> {
    let mut c = defaults;
    let num = |name: &str| -> Result<Option<i64>, ConfigError> {
        overrides
            .get(name)
            .map(|v| {
                check(name, Some(v))?
                    .parse::<i64>()
                    .map_err(|_| ConfigError(format!("{name}={v:?} is not a whole number")))
            })
            .transpose()
    };
    // Every override is checked, whatever it does.
    for (k, v) in overrides {
        check(k, Some(v))?;
    }
    if let Some(n) = num("retention.ms")? {
        c.retention_ms = n;
    }
    if let Some(n) = num("retention.bytes")? {
        c.retention_bytes = n;
    }
    if let Some(n) = num("segment.ms")? {
        c.segment_ms = n;
    }
    if let Some(n) = num("segment.bytes")? {
        c.segment_bytes = n as u64;
    }
    if let Some(n) = num("index.interval.bytes")? {
        c.index_interval_bytes = n as u64;
    }
    if let Some(n) = num("max.message.bytes")? {
        c.max_message_bytes = n as u64;
    }
    if let Some(n) = num("min.insync.replicas")? {
        c.min_insync_replicas = n as i32;
    }
    // The old setting first: the newer ones, when set, win.
    if let Some(n) = num("message.timestamp.difference.max.ms")? {
        c.timestamp_before_max_ms = n;
        c.timestamp_after_max_ms = n;
    }
    if let Some(n) = num("message.timestamp.before.max.ms")? {
        c.timestamp_before_max_ms = n;
    }
    if let Some(n) = num("message.timestamp.after.max.ms")? {
        c.timestamp_after_max_ms = n;
    }
    if let Some(p) = overrides.get("cleanup.policy") {
        c.cleanup = CleanupPolicy::parse(p);
    }
    if let Some(r) = overrides.get("min.cleanable.dirty.ratio") {
        c.min_cleanable_dirty_ratio = Ratio::of(r.parse::<f64>().unwrap_or(0.5));
    }
    if let Some(n) = num("min.compaction.lag.ms")? {
        c.min_compaction_lag_ms = n;
    }
    if let Some(n) = num("max.compaction.lag.ms")? {
        c.max_compaction_lag_ms = n;
    }
    if let Some(n) = num("delete.retention.ms")? {
        c.delete_retention_ms = n;
    }
    if c.min_compaction_lag_ms > c.max_compaction_lag_ms {
        return Err(ConfigError(format!(
            "min.compaction.lag.ms={} is above max.compaction.lag.ms={}",
            c.min_compaction_lag_ms, c.max_compaction_lag_ms
        )));
    }
    if let Some(t) = overrides.get("compression.type") {
        c.compression = TopicCompression::parse(t).unwrap_or_default();
    }
    if let Some(t) = overrides.get("message.timestamp.type") {
        c.timestamp_type = match t.as_str() {
            "LogAppendTime" => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        };
    }
    Ok(c)
}

/// The overrides that make `defaults` into `config` (for a topic written before overrides
/// were kept, and for callers that give settings as a [`LogConfig`]).
pub fn overrides_between(defaults: &LogConfig, config: &LogConfig) -> Overrides {
    let mut o = Overrides::new();
    let mut put = |name: &str, differs: bool, value: String| {
        if differs {
            o.insert(name.to_string(), value);
        }
    };
    put(
        "retention.ms",
        config.retention_ms != defaults.retention_ms,
        config.retention_ms.to_string(),
    );
    put(
        "retention.bytes",
        config.retention_bytes != defaults.retention_bytes,
        config.retention_bytes.to_string(),
    );
    put(
        "segment.ms",
        config.segment_ms != defaults.segment_ms,
        config.segment_ms.to_string(),
    );
    put(
        "segment.bytes",
        config.segment_bytes != defaults.segment_bytes,
        config.segment_bytes.to_string(),
    );
    put(
        "index.interval.bytes",
        config.index_interval_bytes != defaults.index_interval_bytes,
        config.index_interval_bytes.to_string(),
    );
    put(
        "max.message.bytes",
        config.max_message_bytes != defaults.max_message_bytes,
        config.max_message_bytes.to_string(),
    );
    put(
        "min.insync.replicas",
        config.min_insync_replicas != defaults.min_insync_replicas,
        config.min_insync_replicas.to_string(),
    );
    put(
        "message.timestamp.before.max.ms",
        config.timestamp_before_max_ms != defaults.timestamp_before_max_ms,
        config.timestamp_before_max_ms.to_string(),
    );
    put(
        "message.timestamp.after.max.ms",
        config.timestamp_after_max_ms != defaults.timestamp_after_max_ms,
        config.timestamp_after_max_ms.to_string(),
    );
    put(
        "message.timestamp.type",
        config.timestamp_type != defaults.timestamp_type,
        timestamp_type_name(config.timestamp_type).to_string(),
    );
    put(
        "compression.type",
        config.compression != defaults.compression,
        config.compression.name().to_string(),
    );
    put(
        "cleanup.policy",
        config.cleanup != defaults.cleanup,
        config.cleanup.name().to_string(),
    );
    put(
        "min.cleanable.dirty.ratio",
        config.min_cleanable_dirty_ratio != defaults.min_cleanable_dirty_ratio,
        config.min_cleanable_dirty_ratio.get().to_string(),
    );
    put(
        "min.compaction.lag.ms",
        config.min_compaction_lag_ms != defaults.min_compaction_lag_ms,
        config.min_compaction_lag_ms.to_string(),
    );
    put(
        "max.compaction.lag.ms",
        config.max_compaction_lag_ms != defaults.max_compaction_lag_ms,
        config.max_compaction_lag_ms.to_string(),
    );
    put(
        "delete.retention.ms",
        config.delete_retention_ms != defaults.delete_retention_ms,
        config.delete_retention_ms.to_string(),
    );
    o
}

pub fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

/// Where a described value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    DynamicTopic = 1,
    /// Set at run time for this broker.
    DynamicBroker = 2,
    /// Set at run time as the cluster-wide default.
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
    /// A client-metrics subscription's own setting (not a topic's: Kafka's sources are one
    /// list).
    ClientMetrics = 7,
}

/// One config as DescribeConfigs tells it: the value in force and where it comes from, most
/// specific first (the value's own source is the first synonym's).
#[derive(Debug, Clone)]
pub struct Described {
    pub key: &'static Key,
    pub value: String,
    /// Where the value in force comes from.
    pub source: Source,
    /// The synonyms Kafka lists: a default only where a broker setting of the key has one.
    pub synonyms: Vec<(&'static str, String, Source)>,
}

/// Broker settings under which Kafka lists no default synonym: those whose default is null
/// (the value comes from another: the `.hours` form, the flush scheduler), and the throttled
/// replica lists (a broker's throttles are rates, not these lists).
const NULL_BROKER_DEFAULTS: &[&str] = &[
    "log.retention.ms",
    "log.roll.ms",
    "log.roll.jitter.ms",
    "log.flush.interval.ms",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
];

/// Every key of a topic with these overrides, over a broker whose dynamic defaults of a key
/// (by its Kafka broker name, most specific first) are `dynamic` and whose static setting is
/// `broker_value`.
pub fn describe(
    config: &LogConfig,
    overrides: &Overrides,
    dynamic: impl Fn(&Key) -> Vec<(String, Source)>,
    broker_value: impl Fn(&Key) -> Option<String>,
) -> Vec<Described> {
    KEYS.iter()
        .map(|key| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(key.name) {
                synonyms.push((key.name, v.clone(), Source::DynamicTopic));
            }
            let broker_name = key.broker_key.unwrap_or(key.name);
            for (v, source) in dynamic(key) {
                synonyms.push((broker_name, v, source));
            }
            if let Some(v) = broker_value(key).filter(|v| !same_value(key, v)) {
                synonyms.push((broker_name, v, Source::StaticBroker));
            }
            let (set, source) = synonyms
                .first()
                .map_or((key.kafka_default.to_string(), Source::Default), |s| {
                    (s.1.clone(), s.2)
                });
            if key.broker_key.is_some() && !NULL_BROKER_DEFAULTS.contains(&broker_name) {
                synonyms.push((broker_name, key.kafka_default.to_string(), Source::Default));
            }
            // Settings that interact (difference.max.ms under before/after) are told as the
            // log has them.
            let value = in_force(key.name, config).unwrap_or(set);
            Described {
                key,
                value,
                source,
                synonyms,
            }
        })
        .collect()
}

/// A honoured setting's value as the log has it.
fn in_force(name: &str, c: &LogConfig) -> Option<String> {
    Some(match name {
        "retention.ms" => c.retention_ms.to_string(),
        "retention.bytes" => c.retention_bytes.to_string(),
        "segment.ms" => c.segment_ms.to_string(),
        "segment.bytes" => c.segment_bytes.to_string(),
        "index.interval.bytes" => c.index_interval_bytes.to_string(),
        "max.message.bytes" => c.max_message_bytes.to_string(),
        "min.insync.replicas" => c.min_insync_replicas.to_string(),
        "message.timestamp.before.max.ms" => c.timestamp_before_max_ms.to_string(),
        "message.timestamp.after.max.ms" => c.timestamp_after_max_ms.to_string(),
        "message.timestamp.type" => timestamp_type_name(c.timestamp_type).to_string(),
        "compression.type" => c.compression.name().to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
