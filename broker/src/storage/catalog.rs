//! The topic catalog: which topics exist, with their settings and partitions, and their
//! metadata files (`<data_dir>/.meta/<name>.topic`: the topic as JSON, then a CRC line).
//!
//! Architecture invariant: only the storage's admin lane changes the catalog and writes its files
//! (through [`write_topic`], [`undo_create`], [`delete_files`] and the `Catalog` methods that
//! change it); request handlers read it. A topic exists once its metadata file is durable —
//! written aside, synced, renamed, directory synced — after its partition directories.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::sync::RwLock;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::storage::log::{self, LogConfig, Partition};
use crate::storage::{small_file, Io, StorageError};
use crate::topic_config::{self, Overrides};

/// Where topic metadata files live, inside the data directory.
pub const META_DIR: &str = ".meta";
/// Partitions of a topic recovered at once (at start).
const RECOVERIES_IN_FLIGHT: usize = 8;
/// New partitions made at once by a creation (three disk operations each, one of them a sync:
/// several syncs in flight share the disk's work).
const CREATIONS_IN_FLIGHT: usize = 32;

/// A topic and its partitions. Never changed in place: the admin lane replaces it in the catalog
/// when its configs or partitions change (a handler holding the old one sees a consistent,
/// older topic).
pub struct Topic {
    pub name: String,
    pub id: u128,
    /// The configs set for this topic (Kafka keys), over the broker's defaults.
    pub overrides: Overrides,
    /// What the overrides and the broker's defaults make (the partitions' settings).
    pub config: LogConfig,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// Partition `index` as the wire names it (an `i32`; a negative or too large one is none).
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    name: String,
    id: String,
    partitions: i32,
    /// The topic's configs. Absent in files written before overrides were kept: those held the
    /// whole `config` instead, from which the overrides are worked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    overrides: Option<Overrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<LogConfig>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TopicError {
    #[error("topic already exists")]
    Exists,
    #[error("unknown topic")]
    Unknown,
    #[error("invalid topic name: {0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    OffsetOutOfRange(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The change was not done in time; it stays queued or under way and may still complete.
    #[error("not done within {0:?}; the change may still complete")]
    TimedOut(std::time::Duration),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// The cluster metadata cannot take changes now (no controller reachable).
    #[error("{0}")]
    NoController(String),
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

/// Partitions of one topic, at most.
pub const PARTITIONS_MAX: i32 = 10_000;

/// Whether `topic` may grow to `count` partitions (Kafka's rules and messages).
pub fn check_partition_growth(topic: &Topic, count: i32) -> Result<(), TopicError> {
    let now = topic.partitions.len() as i32;
    if count == now {
        return Err(TopicError::InvalidPartitions(format!(
            "topic already has {now} partitions"
        )));
    }
    if count < now {
        return Err(TopicError::InvalidPartitions(format!(
            "topic currently has {now} partitions, which is higher than the requested {count}"
        )));
    }
    if count > PARTITIONS_MAX {
        return Err(TopicError::InvalidPartitions(format!(
            "{count} partitions: a topic has at most {PARTITIONS_MAX}"
        )));
    }
    Ok(())
}

/// Kafka's rule: two topics whose names differ only in '.' against '_' would share metric
/// names, so the second is refused.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Topics the broker keeps for itself (committed offsets, group metadata): created by it when
/// first needed, marked internal in Metadata, never written, created or deleted by clients.
pub fn is_internal(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == METADATA_TOPIC
}

/// The group coordinator's internal topic: committed offsets and group metadata. Named here,
/// with every internal topic, because the catalog (below the coordinator) must know it.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The controller's internal topic: the cluster metadata log.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// The topics of a data directory, by name and by id.
pub struct Catalog {
    topics: RwLock<Topics>,
}

/// The catalog's maps: a topic's id names it (Fetch and Produce from v13 on name topics by id).
#[derive(Default)]
struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
    names_by_id: HashMap<u128, String>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::new(HashMap::new())
    }
}

impl Catalog {
    pub fn new(topics: HashMap<String, Arc<Topic>>) -> Catalog {
        let names_by_id = topics.values().map(|t| (t.id, t.name.clone())).collect();
        Catalog {
            topics: RwLock::new(
                "storage.catalog",
                Topics {
                    by_name: topics,
                    names_by_id,
                },
            ),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read().by_name.get(name).cloned()
    }

    /// The topic whose id is `id` (a topic re-created under the same name has a new id).
    pub fn get_by_id(&self, id: u128) -> Option<Arc<Topic>> {
        let topics = self.read();
        let name = topics.names_by_id.get(&id)?;
        topics.by_name.get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.read().by_name.contains_key(name)
    }

    /// Whether a new topic may take `name`: not taken, and no topic's name collides with it.
    pub fn check_new(&self, name: &str) -> Result<(), TopicError> {
        let topics = self.read();
        if topics.by_name.contains_key(name) {
            return Err(TopicError::Exists);
        }
        let key = collision_key(name);
        if let Some(other) = topics.by_name.keys().find(|t| collision_key(t) == key) {
            return Err(TopicError::InvalidName(format!(
                "topic {name:?} collides with existing topic {other:?} ('.' and '_' are the same in metric names)"
            )));
        }
        Ok(())
    }

    /// All topics, sorted by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.read().by_name.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// For the admin lane, once the topic's files are durable (also to replace a topic
    /// whose configs or partitions changed).
    pub(crate) fn insert(&self, topic: Arc<Topic>) {
        let mut topics = self.write();
        topics.names_by_id.insert(topic.id, topic.name.clone());
        if let Some(old) = topics.by_name.insert(topic.name.clone(), topic.clone()) {
            if old.id != topic.id {
                topics.names_by_id.remove(&old.id);
            }
        }
    }

    /// For the admin lane, as it deletes the topic.
    pub(crate) fn remove(&self, name: &str) -> Option<Arc<Topic>> {
        let mut topics = self.write();
        let old = topics.by_name.remove(name)?;
        topics.names_by_id.remove(&old.id);
        Some(old)
    }

    #[track_caller]
    fn read(&self) -> crate::sync::RwLockReadGuard<'_, Topics> {
        // A poisoned lock only means a panic elsewhere; the maps themselves are whole.
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    #[track_caller]
    fn write(&self) -> crate::sync::RwLockWriteGuard<'_, Topics> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Load every topic of the data directory: its metadata file (checked), its configs (resolved
/// over `defaults`), its partitions (recovered); then remove what interrupted creations and
/// deletions left behind.
pub async fn load(
    io: &Io,
    data_dir: &Path,
    defaults: LogConfig,
    replicated: bool,
    raft_states: &super::raft_states::Recovered,
) -> Result<HashMap<String, Arc<Topic>>, StorageError> {
    let meta_dir = data_dir.join(META_DIR);
    let names = io.list(&meta_dir).await?;
    let mut topics = HashMap::new();
    for name in names {
        let path = meta_dir.join(&name);
        if name.ends_with(".tmp") {
            // A change of topic metadata that did not finish: its file never became real.
            io.remove_file(&path).await?;
            continue;
        }
        if !name.ends_with(".topic") {
            continue;
        }
        let meta = read_meta(io, &path).await?;
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.clone(),
            reason,
        };
        let overrides = match (meta.overrides, &meta.config) {
            (Some(o), _) => o,
            (None, Some(old)) => topic_config::overrides_between(&defaults, old),
            (None, None) => return Err(corrupt("neither overrides nor config".into())),
        };
        let config = topic_config::resolve(defaults, &overrides)
            .map_err(|e| corrupt(format!("topic config: {e}")))?;
        let id = u128::from_str_radix(&meta.id, 16)
            .map_err(|_| corrupt(format!("topic id {:?} is not 32 hex digits", meta.id)))?;
        // The partitions recover together, a bounded number at a time: one after another, a
        // topic of many partitions with many segments each took minutes on a slow disk.
        let recoveries: Vec<_> = (0..meta.partitions)
            .map(|p| {
                let dir = data_dir.join(format!("{}-{p}", meta.name));
                let name = meta.name.clone();
                let hard_state = raft_states.states.get(&(id, p)).copied();
                let pieces = raft_states.pieces.get(&(id, p)).map(Vec::as_slice);
                async move {
                    let of = log::Naming {
                        topic: &name,
                        topic_id: id,
                        index: p,
                    };
                    if let Some(pieces) = pieces {
                        log::restore_pieces(io, &dir, pieces).await?;
                    }
                    let partition =
                        log::recover(io, &dir, of, config, replicated, hard_state).await?;
                    let unsettled = log::unsettled_after_start(&partition, pieces);
                    if let Some(r) = partition.state_mut().replica.as_mut() {
                        r.unsettled = unsettled;
                    }
                    Ok::<_, StorageError>(Arc::new(partition))
                }
            })
            .collect();
        let partitions: Vec<Arc<Partition>> = futures::stream::iter(recoveries)
            .buffered(RECOVERIES_IN_FLIGHT)
            .try_collect()
            .await?;
        tracing::info!(topic = %meta.name, partitions = meta.partitions, "recovered topic");
        topics.insert(
            meta.name.clone(),
            Arc::new(Topic {
                name: meta.name,
                id,
                overrides,
                config,
                partitions,
            }),
        );
    }
    remove_stray_partitions(io, data_dir, &topics).await?;
    Ok(topics)
}

/// A topic to create.
pub struct NewTopic<'a> {
    pub name: &'a str,
    pub partitions: i32,
    pub overrides: Overrides,
    pub config: LogConfig,
    pub id: u128,
}

/// Create a topic's files: its partition directories first, then its metadata file — the
/// commit point. On an error the caller removes what was made ([`undo_create`]).
pub async fn write_topic(
    io: &Io,
    data_dir: &Path,
    new: NewTopic<'_>,
    replicated: bool,
) -> Result<Arc<Topic>, TopicError> {
    let NewTopic {
        name,
        partitions,
        overrides,
        config,
        id,
    } = new;
    let of = log::Naming {
        topic: name,
        topic_id: id,
        index: 0,
    };
    let parts = create_partitions(io, data_dir, of, 0..partitions, config, replicated).await?;
    let topic = Topic {
        name: name.to_string(),
        id,
        overrides,
        config,
        partitions: parts,
    };
    write_meta(io, data_dir, &topic).await?;
    Ok(Arc::new(topic))
}

/// Make empty partition directories `range` of a topic (`topic`'s index is not used; a leftover directory, from a creation
/// that crashed before its metadata file, is stale and replaced), the data directory synced.
/// They belong to the topic once its metadata file counts them.
pub async fn create_partitions(
    io: &Io,
    data_dir: &Path,
    topic: log::Naming<'_>,
    range: std::ops::Range<i32>,
    config: LogConfig,
    replicated: bool,
) -> Result<Vec<Arc<Partition>>, StorageError> {
    let name = topic.topic;
    // Made together, a bounded number at a time: one after another, a topic of many
    // partitions took seconds on a slow disk. Each is a directory, a file and a sync
    // (`log::create`), so many can be in flight.
    let made = range.map(|p| async move {
        let dir = data_dir.join(format!("{name}-{p}"));
        if io.exists(&dir).await? {
            io.remove_dir_all(&dir).await?;
        }
        let of = log::Naming { index: p, ..topic };
        log::create(io, &dir, of, config, replicated)
            .await
            .map(Arc::new)
    });
    let parts: Vec<Arc<Partition>> = futures::stream::iter(made)
        .buffered(CREATIONS_IN_FLIGHT)
        .try_collect()
        .await?;
    io.sync_dir(data_dir).await?;
    Ok(parts)
}

/// Write a topic's metadata file durably: written aside, synced, renamed over the old one,
/// the directory synced. Before it returns, a crash leaves the old file (or none).
pub async fn write_meta(io: &Io, data_dir: &Path, topic: &Topic) -> Result<(), TopicError> {
    let meta = TopicMeta {
        name: topic.name.clone(),
        id: format!("{:032x}", topic.id),
        partitions: topic.partitions.len() as i32,
        overrides: Some(topic.overrides.clone()),
        config: None,
    };
    let body =
        serde_json::to_string(&meta).map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
    let file = format!("{}.topic", topic.name);
    small_file::write(io, &data_dir.join(META_DIR), &file, &body).await?;
    Ok(())
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
    remove_partitions(io, data_dir, name, 0..partitions).await
}

/// Remove partition directories `range` of topic `name` (those that exist).
pub async fn remove_partitions(
    io: &Io,
    data_dir: &Path,
    name: &str,
    range: std::ops::Range<i32>,
) -> Result<(), StorageError> {
    for p in range {
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

/// A topic's metadata file, checked against its CRC.
async fn read_meta(io: &Io, path: &Path) -> Result<TopicMeta, StorageError> {
    small_file::read(io, path, |body| {
        serde_json::from_str(body).map_err(|e| e.to_string())
    })
    .await?
    .ok_or_else(|| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason: "the file is gone".into(),
    })
}
