//! The topic catalog: which topics exist, with their settings and partitions, and their
//! metadata files (`<data_dir>/.meta/<name>.topic`: the topic as JSON, then a CRC line).
//!
//! Architecture invariant: only the commit pipeline changes the catalog and writes its files
//! (through [`write_topic`], [`undo_create`], [`delete_files`] and the `Catalog` methods that
//! change it); request handlers read it. A topic exists once its metadata file is durable —
//! written aside, synced, renamed, directory synced — after its partition directories.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use io_backend::OpenMode;
use serde::{Deserialize, Serialize};

use crate::records::TimestampType;
use crate::storage::log::{self, LogConfig, Partition};
use crate::storage::{Io, StorageError};

/// Where topic metadata files live, inside the data directory.
pub const META_DIR: &str = ".meta";

/// A topic and its partitions.
pub struct Topic {
    pub name: String,
    pub id: u128,
    pub config: LogConfig,
    pub partitions: Vec<Arc<Partition>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    name: String,
    id: String,
    partitions: i32,
    config: LogConfig,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TopicError {
    #[error("topic already exists")]
    Exists,
    #[error("unknown topic")]
    Unknown,
    #[error("invalid topic name: {0}")]
    InvalidName(String),
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Kafka's rule for topic names.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "the name is {} characters long; at most 249 are allowed",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not allowed"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the character {c:?} is not allowed (only ASCII letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// Topics the broker keeps for itself (committed offsets, group metadata): created by it when
/// first needed, marked internal in Metadata, never written, created or deleted by clients.
pub fn is_internal(name: &str) -> bool {
    name == crate::group::OFFSETS_TOPIC
}

/// The topics of a data directory, by name.
#[derive(Default)]
pub struct Catalog {
    topics: RwLock<HashMap<String, Arc<Topic>>>,
}

impl Catalog {
    pub fn new(topics: HashMap<String, Arc<Topic>>) -> Catalog {
        Catalog {
            topics: RwLock::new(topics),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read().get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// All topics, sorted by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// For the commit pipeline, once the topic's files are durable.
    pub(crate) fn insert(&self, topic: Arc<Topic>) {
        self.write().insert(topic.name.clone(), topic);
    }

    /// For the commit pipeline, as it deletes the topic.
    pub(crate) fn remove(&self, name: &str) -> Option<Arc<Topic>> {
        self.write().remove(name)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Topic>>> {
        // A poisoned lock only means a panic elsewhere; the map itself is whole.
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Load every topic of the data directory: its metadata file (checked), its partitions
/// (recovered); then remove what interrupted creations and deletions left behind.
pub async fn load(io: &Io, data_dir: &Path) -> Result<HashMap<String, Arc<Topic>>, StorageError> {
    let meta_dir = data_dir.join(META_DIR);
    let names = io.list(&meta_dir).await?;
    let mut topics = HashMap::new();
    for name in names {
        let path = meta_dir.join(&name);
        if name.ends_with(".tmp") {
            // A topic creation that did not finish: its meta file never became real.
            io.remove_file(&path).await?;
            continue;
        }
        if !name.ends_with(".topic") {
            continue;
        }
        let meta = read_meta(io, &path).await?;
        let mut partitions = Vec::new();
        for p in 0..meta.partitions {
            let dir = data_dir.join(format!("{}-{p}", meta.name));
            let part = log::recover(io, &dir, &meta.name, p, meta.config).await?;
            partitions.push(Arc::new(part));
        }
        let id = u128::from_str_radix(&meta.id, 16).map_err(|_| StorageError::Corrupt {
            path: path.clone(),
            reason: format!("topic id {:?} is not 32 hex digits", meta.id),
        })?;
        tracing::info!(topic = %meta.name, partitions = meta.partitions, "recovered topic");
        topics.insert(
            meta.name.clone(),
            Arc::new(Topic {
                name: meta.name,
                id,
                config: meta.config,
                partitions,
            }),
        );
    }
    remove_stray_partitions(io, data_dir, &topics).await?;
    Ok(topics)
}

/// Create a topic's files: its partition directories first, then its metadata file — the
/// commit point. On an error the caller removes what was made ([`undo_create`]).
pub async fn write_topic(
    io: &Io,
    data_dir: &Path,
    name: &str,
    partitions: i32,
    config: LogConfig,
    id: u128,
) -> Result<Arc<Topic>, TopicError> {
    let mut parts = Vec::new();
    for p in 0..partitions {
        let dir = data_dir.join(format!("{name}-{p}"));
        // A leftover directory (a creation that crashed before its meta file) is stale.
        if io.exists(&dir).await? {
            io.remove_dir_all(&dir).await?;
        }
        parts.push(Arc::new(log::recover(io, &dir, name, p, config).await?));
    }
    io.sync_dir(data_dir).await?;
    let meta = TopicMeta {
        name: name.to_string(),
        id: format!("{id:032x}"),
        partitions,
        config,
    };
    let body =
        serde_json::to_string(&meta).map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
    let text = format!("{body}\ncrc32={:08x}\n", crc32fast::hash(body.as_bytes()));
    let meta_dir = data_dir.join(META_DIR);
    let tmp = meta_dir.join(format!("{name}.topic.tmp"));
    let path = meta_dir.join(format!("{name}.topic"));
    let f = io.open(&tmp, OpenMode::Truncate).await?;
    io.write_at(&f, Bytes::from(text), 0).await?;
    io.sync_data(&f).await?;
    io.rename(&tmp, &path).await?;
    io.sync_dir(&meta_dir).await?;
    Ok(Arc::new(Topic {
        name: name.to_string(),
        id,
        config,
        partitions: parts,
    }))
}

/// Remove what a failed creation of `name` made: its metadata file (if the rename happened
/// and only the directory sync failed) and its partition directories.
pub async fn undo_create(
    io: &Io,
    data_dir: &Path,
    name: &str,
    partitions: i32,
) -> Result<(), StorageError> {
    let meta_dir = data_dir.join(META_DIR);
    for file in [format!("{name}.topic"), format!("{name}.topic.tmp")] {
        let path = meta_dir.join(file);
        if io.exists(&path).await? {
            io.remove_file(&path).await?;
        }
    }
    io.sync_dir(&meta_dir).await?;
    for p in 0..partitions {
        let dir = data_dir.join(format!("{name}-{p}"));
        if io.exists(&dir).await? {
            io.remove_dir_all(&dir).await?;
        }
    }
    io.sync_dir(data_dir).await
}

/// Delete a topic's files: the metadata file first (durably: the topic is gone from then on),
/// then its partition directories (what a crash leaves of them is removed at the next start).
pub async fn delete_files(io: &Io, data_dir: &Path, topic: &Topic) -> Result<(), StorageError> {
    let meta_dir = data_dir.join(META_DIR);
    io.remove_file(&meta_dir.join(format!("{}.topic", topic.name)))
        .await?;
    io.sync_dir(&meta_dir).await?;
    for p in &topic.partitions {
        io.remove_dir_all(&p.dir).await?;
    }
    io.sync_dir(data_dir).await
}

/// Remove the partition directories no topic owns: left by a CreateTopics that failed or
/// crashed before its metadata file was written, or a DeleteTopics that crashed after removing
/// it. Left alone they would be taken over by the next topic of that name.
async fn remove_stray_partitions(
    io: &Io,
    data_dir: &Path,
    topics: &HashMap<String, Arc<Topic>>,
) -> Result<(), StorageError> {
    let mut removed = false;
    for name in io.list(data_dir).await? {
        let Some((topic, index)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        if check_topic_name(topic).is_err() || name.starts_with('.') {
            continue;
        }
        if topics
            .get(topic)
            .is_some_and(|t| index < t.partitions.len())
        {
            continue;
        }
        tracing::warn!(dir = %data_dir.join(&name).display(), "removing a partition directory that no topic owns (left by an interrupted topic creation or deletion)");
        io.remove_dir_all(&data_dir.join(&name)).await?;
        removed = true;
    }
    if removed {
        io.sync_dir(data_dir).await?;
    }
    Ok(())
}

/// A topic's metadata file, checked against its CRC; read again before it is called corrupt (a
/// misread must not stop the node from starting).
async fn read_meta(io: &Io, path: &Path) -> Result<TopicMeta, StorageError> {
    let mut attempt = 1;
    loop {
        match read_meta_once(io, path).await {
            Err(StorageError::Corrupt { reason, .. }) if attempt < log::READ_ATTEMPTS => {
                tracing::warn!(file = %path.display(), %reason, "topic metadata failed its checks; reading again");
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn read_meta_once(io: &Io, path: &Path) -> Result<TopicMeta, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let data = log::read_whole(io, path)
        .await?
        .ok_or_else(|| corrupt("the file is gone".into()))?;
    let text = std::str::from_utf8(&data).map_err(|e| corrupt(e.to_string()))?;
    let (body, crc_line) = text
        .trim_end()
        .rsplit_once('\n')
        .ok_or_else(|| corrupt("no checksum line".into()))?;
    let stored = crc_line
        .strip_prefix("crc32=")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| corrupt(format!("bad checksum line {crc_line:?}")))?;
    let computed = crc32fast::hash(body.as_bytes());
    if stored != computed {
        return Err(corrupt(format!(
            "checksum {stored:08x} does not match {computed:08x}"
        )));
    }
    serde_json::from_str(body).map_err(|e| corrupt(e.to_string()))
}

/// Topic settings from CreateTopics configs over the broker's defaults. A config that is
/// accepted is honoured; one the broker does not support is refused by name (INVALID_CONFIG),
/// never silently ignored.
pub fn topic_config(
    defaults: LogConfig,
    configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
) -> Result<LogConfig, String> {
    let mut c = defaults;
    for kv in configs {
        let key = kv.name.as_str();
        let Some(value) = kv.value.as_ref().map(|v| v.as_str()) else {
            return Err(format!("{key}: a null value is not allowed"));
        };
        let num = |min: i64, max: i64| -> Result<i64, String> {
            let n = value
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("{key}={value:?} is not a number"))?;
            if !(min..=max).contains(&n) {
                return Err(format!("{key}={n} must be between {min} and {max}"));
            }
            Ok(n)
        };
        match key {
            "retention.ms" => c.retention_ms = num(-1, i64::MAX)?,
            "retention.bytes" => c.retention_bytes = num(-1, i64::MAX)?,
            "segment.ms" => c.segment_ms = num(1, i64::MAX)?,
            // Index positions are 32-bit.
            "segment.bytes" => c.segment_bytes = num(1024, i32::MAX as i64)? as u64,
            "index.interval.bytes" => c.index_interval_bytes = num(0, i32::MAX as i64)? as u64,
            "max.message.bytes" => c.max_message_bytes = num(0, i32::MAX as i64)? as u64,
            "message.timestamp.type" => {
                c.timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    other => {
                        return Err(format!(
                            "message.timestamp.type={other:?}: expected CreateTime or LogAppendTime"
                        ))
                    }
                }
            }
            "message.timestamp.before.max.ms" => c.timestamp_before_max_ms = num(0, i64::MAX)?,
            "message.timestamp.after.max.ms" => c.timestamp_after_max_ms = num(0, i64::MAX)?,
            // Before Kafka 3.6 one setting bounded both sides.
            "message.timestamp.difference.max.ms" => {
                let n = num(0, i64::MAX)?;
                c.timestamp_before_max_ms = n;
                c.timestamp_after_max_ms = n;
            }
            "min.insync.replicas" => c.min_insync_replicas = num(1, i32::MAX as i64)? as i32,
            "cleanup.policy" if value == "delete" => {}
            "cleanup.policy" => {
                return Err(format!(
                "cleanup.policy={value} is not supported (only delete: there is no log compaction)"
            ))
            }
            // Batches are stored as produced, never recompressed.
            "compression.type" if value == "producer" => {}
            "compression.type" => {
                return Err(format!(
                    "compression.type={value} is not supported (only producer: batches are \
                     stored as the producer compressed them)"
                ))
            }
            other => return Err(format!("topic config {other} is not supported")),
        }
    }
    Ok(c)
}
