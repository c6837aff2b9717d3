//! The admin lane: topics created and deleted, their configs replaced, their partitions
//! added, their records deleted up to an offset, retention, producer ids — each made durable
//! before it is answered, one command at a time in the order they came, beside the commit
//! pipeline rather than on it: on a slow disk a topic creation takes dozens of operations, and
//! produces queued behind it on the pipeline went unanswered for seconds.
//!
//! What keeps the two apart: the lane never writes a partition's active segment, and never
//! removes a partition's files while the pipeline may still write them — a deletion first takes
//! the topic out of the catalog, then has the pipeline retire its partitions in queue order
//! ([`Command::Retire`]: appends queued before it commit, appends behind it are refused, no
//! round or roll of theirs is in flight after it), and only then removes the files.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::log::{self, Partition};
use super::small_file;
use super::{queue, Command, Io, Reply, Shared, StorageError};
use crate::broker_configs::{self, DynamicConfigs};
use crate::security::{SecurityChange, SecurityMetadata};
use crate::storage::catalog::{self, Topic, TopicError};
use crate::topic_config::{self, Overrides};

/// A single node's security metadata, in its `.meta` directory.
pub(super) const SECURITY_FILE: &str = "security";
/// A single node's client-metrics subscriptions (JSON: name → configs).
pub(super) const CLIENT_METRICS_FILE: &str = "client-metrics";
/// A single node's client quotas (JSON: each entity and its quotas).
pub(super) const CLIENT_QUOTAS_FILE: &str = "client-quotas";

/// Admin commands queued at most; a handler waits for a slot beyond that.
pub(super) const ADMIN_QUEUE_CAPACITY: usize = 64;

pub(crate) enum AdminCommand {
    CreateTopic {
        name: String,
        partitions: i32,
        overrides: Overrides,
        /// The topic's id, when the cluster gave it one.
        id: Option<u128>,
        reply: Reply<Result<Arc<Topic>, TopicError>>,
    },
    /// Replace a topic's configs (AlterConfigs, IncrementalAlterConfigs).
    AlterTopicConfig {
        name: String,
        overrides: Overrides,
        reply: Reply<Result<Arc<Topic>, TopicError>>,
    },
    /// Grow a topic to `count` partitions (CreatePartitions).
    CreatePartitions {
        name: String,
        count: i32,
        reply: Reply<Result<Arc<Topic>, TopicError>>,
    },
    /// Move a partition's log start up to `offset` (DeleteRecords); answers the new start.
    DeleteRecords {
        partition: Arc<Partition>,
        offset: i64,
        reply: Reply<Result<i64, TopicError>>,
    },
    DeleteTopic {
        name: String,
        reply: Reply<Result<(), TopicError>>,
    },
    /// Replace the dynamic broker configs (AlterConfigs, IncrementalAlterConfigs on a broker).
    SetDynamicConfigs {
        configs: DynamicConfigs,
        reply: Reply<Result<(), TopicError>>,
    },
    /// Change a single node's security metadata (users' credentials, ACLs): applied in order, each
    /// change's outcome answered once the whole is durable.
    AlterSecurity {
        changes: Vec<SecurityChange>,
        reply: Reply<Result<crate::security::Outcomes, TopicError>>,
    },
    /// Replace a single node's client-metrics subscription `name` (no configs: remove it).
    SetClientMetrics {
        name: String,
        configs: Overrides,
        reply: Reply<Result<(), TopicError>>,
    },
    /// Apply alterations to a single node's client quotas, each alone.
    AlterClientQuotas {
        alterations: Vec<crate::quota::Alteration>,
        reply: Reply<Result<Vec<Result<(), crate::quota::Refused>>, TopicError>>,
    },
    /// Raise the directory's format (a cluster finalized `stillwater.version` at `level`).
    RaiseFormat {
        level: u16,
        reply: Reply<Result<(), TopicError>>,
    },
    /// Finalize feature levels on a single node (checked by the caller).
    UpdateFeatures {
        updates: Vec<crate::features::Update>,
        reply: Reply<Result<(), TopicError>>,
    },
    /// Make the next block of producer ids durable and hand it over: `[start, end)`.
    ReserveProducerIds {
        reply: Reply<Result<(i64, i64), StorageError>>,
    },
    Retention,
}

pub(super) struct AdminLane {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: mpsc::Receiver<AdminCommand>,
    /// The pipeline's queue, for retiring a deleted topic's partitions. The pipeline ends only
    /// after the lane has (this sender dropped), so it outlives every command here.
    pub(super) pipeline: mpsc::Sender<Command>,
    /// Producer ids below this are taken (durably).
    pub(super) producer_ids_allocated: i64,
}

impl AdminLane {
    pub(super) fn io(&self) -> &Io {
        &self.shared.io
    }

    pub(super) async fn run(mut self) {
        while let Some(cmd) = self.rx.recv().await {
            self.admin(cmd).await;
        }
    }

    async fn admin(&mut self, cmd: AdminCommand) {
        match cmd {
            AdminCommand::CreateTopic {
                name,
                partitions,
                overrides,
                id,
                reply,
            } => {
                let r = self
                    .guarded(async |p: &mut Self| {
                        p.create_topic(&name, partitions, overrides, id).await
                    })
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::DeleteTopic { name, reply } => {
                let r = self
                    .guarded(async |p: &mut Self| p.delete_topic(&name).await)
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::AlterTopicConfig {
                name,
                overrides,
                reply,
            } => {
                let r = self
                    .guarded(async |p: &mut Self| p.alter_topic_config(&name, overrides).await)
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::SetDynamicConfigs { configs, reply } => {
                let r = self
                    .guarded(async |p: &mut Self| p.set_dynamic_configs(configs).await)
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::AlterSecurity { changes, reply } => {
                let r = self
                    .guarded(async |p: &mut Self| p.alter_security(&changes).await)
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::SetClientMetrics {
                name,
                configs,
                reply,
            } => {
                let r = self
                    .guarded(async |p: &mut Self| p.set_client_metrics(&name, &configs).await)
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::AlterClientQuotas { alterations, reply } => {
                let r = self
                    .guarded(async |p: &mut Self| p.alter_client_quotas(&alterations).await)
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::RaiseFormat { level, reply } => {
                let r = self
                    .guarded(async |p: &mut Self| p.raise_format(level).await)
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::UpdateFeatures { updates, reply } => {
                let r = self
                    .guarded(async |p: &mut Self| p.update_features(&updates).await)
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::CreatePartitions { name, count, reply } => {
                let r = self
                    .guarded(async |p: &mut Self| p.create_partitions(&name, count).await)
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::DeleteRecords {
                partition,
                offset,
                reply,
            } => {
                let r = self
                    .guarded(async |p: &mut Self| p.delete_records(&partition, offset).await)
                    .await;
                let _ = reply.send(r);
            }
            AdminCommand::ReserveProducerIds { reply } => {
                let start = self.producer_ids_allocated;
                let end = start + super::producer_ids::BLOCK;
                let r = match self.shared.io.health.check() {
                    Err(e) => Err(e),
                    Ok(()) => {
                        super::producer_ids::write_allocated(self.io(), &self.shared.data_dir, end)
                            .await
                    }
                };
                match &r {
                    Ok(()) => self.producer_ids_allocated = end,
                    Err(e) => self.shared.fail_on(e),
                }
                let _ = reply.send(r.map(|()| (start, end)));
            }
            AdminCommand::Retention => {
                if self.shared.io.health.check().is_ok() {
                    self.retention().await;
                }
            }
        }
    }

    /// Run an admin change on a healthy directory; a disk failure in it fails the directory
    /// (it heals as after a failed append).
    async fn guarded<T>(
        &mut self,
        change: impl AsyncFnOnce(&mut Self) -> Result<T, TopicError>,
    ) -> Result<T, TopicError> {
        self.shared.io.health.check()?;
        let r = change(self).await;
        if let Err(TopicError::Storage(e)) = &r {
            self.shared.fail_on(e);
        }
        r
    }

    /// Create a topic whole or not at all ([`catalog::write_topic`]); a failure removes what
    /// it made, and what a crash leaves is removed at the next start.
    async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        overrides: Overrides,
        id: Option<u128>,
    ) -> Result<Arc<Topic>, TopicError> {
        self.shared.catalog.check_new(name)?;
        let config = topic_config::resolve(self.shared.defaults(), &overrides)
            .map_err(|e| TopicError::InvalidConfig(e.0))?;
        let id = id.unwrap_or_else(|| {
            let hi = self.shared.env.rng.next_u64() as u128;
            let lo = self.shared.env.rng.next_u64() as u128;
            (hi << 64) | lo
        });
        let data_dir = &self.shared.data_dir;
        let created = catalog::write_topic(
            self.io(),
            data_dir,
            catalog::NewTopic {
                name,
                partitions,
                overrides,
                config,
                id,
            },
            self.shared.replicated,
        )
        .await;
        match &created {
            Ok(topic) => {
                self.shared.catalog.insert(topic.clone());
                tracing::info!(topic = name, partitions, "created topic");
            }
            Err(e) => {
                tracing::warn!(topic = name, error = %e, "topic creation failed; removing what it made");
                if let Err(undo) = catalog::undo_create(self.io(), data_dir, name, partitions).await
                {
                    tracing::warn!(topic = name, error = %undo, "could not remove a failed topic's files; they are removed at the next start");
                }
            }
        }
        created
    }

    async fn delete_topic(&mut self, name: &str) -> Result<(), TopicError> {
        let topic = self
            .shared
            .catalog
            .remove(name)
            .ok_or(TopicError::Unknown)?;
        // New produces no longer find the topic; those already queued on the pipeline commit
        // (queued before this) or are refused (behind it). Once the pipeline answers, nothing
        // of it is in flight there, and its files may go.
        let (reply, retired) = oneshot::channel();
        let partitions = topic.partitions.clone();
        queue(
            &self.shared,
            &self.pipeline,
            Command::Retire { partitions, reply },
        )
        .await?;
        retired
            .await
            .map_err(|_| StorageError::DirFailed("the commit pipeline has stopped".into()))?;
        catalog::delete_files(self.io(), &self.shared.data_dir, &topic).await?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Replace a topic's configs: its metadata file rewritten (durably), then its partitions
    /// take the new settings (the next round, roll and retention check use them).
    async fn alter_topic_config(
        &mut self,
        name: &str,
        overrides: Overrides,
    ) -> Result<Arc<Topic>, TopicError> {
        let old = self.shared.catalog.get(name).ok_or(TopicError::Unknown)?;
        let config = topic_config::resolve(self.shared.defaults(), &overrides)
            .map_err(|e| TopicError::InvalidConfig(e.0))?;
        let topic = Arc::new(Topic {
            name: old.name.clone(),
            id: old.id,
            overrides,
            config,
            partitions: old.partitions.clone(),
        });
        catalog::write_meta(self.io(), &self.shared.data_dir, &topic).await?;
        for p in &topic.partitions {
            p.set_config(config);
        }
        self.shared.catalog.insert(topic.clone());
        tracing::info!(topic = name, overrides = ?topic.overrides, "altered topic configs");
        Ok(topic)
    }

    /// Apply `changes` to a copy of the security metadata, write it (durably), then serve it.
    async fn alter_security(
        &mut self,
        changes: &[SecurityChange],
    ) -> Result<crate::security::Outcomes, TopicError> {
        let current = self.shared.security.read().expect("not poisoned").clone();
        let mut next: SecurityMetadata = (*current).clone();
        let outcomes: Vec<_> = changes.iter().map(|c| next.apply(c)).collect();
        // A bootstrap user that exists, a deletion that matched nothing: no write.
        if next != *current {
            let meta = self.shared.data_dir.join(catalog::META_DIR);
            small_file::write(self.io(), &meta, SECURITY_FILE, &next.encode()).await?;
            let users = next.users.len();
            *self.shared.security.write().expect("not poisoned") = Arc::new(next);
            tracing::info!(changes = changes.len(), users, "security metadata changed");
        }
        Ok(outcomes)
    }

    /// Replace client-metrics subscription `name` (removed when `configs` is empty): the
    /// file rewritten durably, then the change shown.
    async fn set_client_metrics(
        &mut self,
        name: &str,
        configs: &Overrides,
    ) -> Result<(), TopicError> {
        let current = self
            .shared
            .client_metrics
            .read()
            .expect("not poisoned")
            .clone();
        let mut next = (*current).clone();
        if configs.is_empty() {
            next.remove(name);
        } else {
            next.insert(name.to_string(), configs.clone());
        }
        if next == *current {
            return Ok(());
        }
        let meta = self.shared.data_dir.join(catalog::META_DIR);
        let body = serde_json::to_string(&next).expect("plain data encodes");
        small_file::write(self.io(), &meta, CLIENT_METRICS_FILE, &body).await?;
        tracing::info!(subscription = %name, configs = ?configs, "client-metrics subscription changed");
        *self.shared.client_metrics.write().expect("not poisoned") = Arc::new(next);
        Ok(())
    }

    /// Apply client-quota alterations, each alone: the file rewritten durably, then the
    /// change shown.
    async fn alter_client_quotas(
        &mut self,
        alterations: &[crate::quota::Alteration],
    ) -> Result<Vec<Result<(), crate::quota::Refused>>, TopicError> {
        let current = self
            .shared
            .client_quotas
            .read()
            .expect("not poisoned")
            .clone();
        let mut next = (*current).clone();
        let outcomes: Vec<_> = alterations.iter().map(|a| next.apply(a)).collect();
        if next == *current {
            return Ok(outcomes);
        }
        let meta = self.shared.data_dir.join(catalog::META_DIR);
        let body = serde_json::to_string(&next).expect("plain data encodes");
        small_file::write(self.io(), &meta, CLIENT_QUOTAS_FILE, &body).await?;
        tracing::info!(entities = next.entries.len(), "client quotas changed");
        *self.shared.client_quotas.write().expect("not poisoned") = Arc::new(next);
        Ok(outcomes)
    }

    /// Finalize feature levels: the directory's format raised first when
    /// `stillwater.version` rises past it (before anything of the new level is written), then
    /// the levels' file rewritten durably, then the levels shown.
    async fn update_features(
        &mut self,
        updates: &[crate::features::Update],
    ) -> Result<(), TopicError> {
        let current = self.shared.features.read().expect("not poisoned").clone();
        let mut next = (*current).clone();
        for u in updates {
            next.set(&u.name, u.level, current.epoch + 1);
        }
        let wanted = next.level(crate::features::STILLWATER_VERSION);
        self.raise_format(u16::try_from(wanted).unwrap_or(0))
            .await?;
        let meta = self.shared.data_dir.join(catalog::META_DIR);
        let body = serde_json::to_string(&next).expect("plain data encodes");
        small_file::write(self.io(), &meta, super::node_meta::FEATURES_FILE, &body).await?;
        tracing::info!(levels = ?next.levels, "feature levels finalized");
        *self.shared.features.write().expect("not poisoned") = Arc::new(next);
        Ok(())
    }

    /// Raise the directory's format to `level` if it is below (the marker first).
    async fn raise_format(&mut self, level: u16) -> Result<(), TopicError> {
        let now = self.io().format();
        if level > now {
            super::format::write(self.io(), &self.shared.data_dir, level).await?;
            tracing::info!(from = now, to = level, "the data directory's format raised");
        }
        Ok(())
    }

    /// Replace the dynamic broker configs: their file rewritten (durably), then every topic
    /// resolved again over the new defaults (its own overrides unchanged, so its metadata file
    /// stays as it is) and its partitions given the result.
    async fn set_dynamic_configs(&mut self, configs: DynamicConfigs) -> Result<(), TopicError> {
        let defaults = configs
            .apply(self.shared.static_defaults)
            .map_err(|e| TopicError::InvalidConfig(e.0))?;
        let meta = self.shared.data_dir.join(catalog::META_DIR);
        small_file::write(self.io(), &meta, broker_configs::FILE, &configs.encode()).await?;
        tracing::info!(node = ?configs.node, cluster = ?configs.cluster, "dynamic broker configs changed");
        *self.shared.dynamic.write().expect("not poisoned") = (configs, defaults);
        for old in self.shared.catalog.all() {
            let Ok(config) = topic_config::resolve(defaults, &old.overrides) else {
                // Its overrides were checked when set; a topic that cannot take the new
                // defaults keeps what it had.
                continue;
            };
            if config == old.config {
                continue;
            }
            let topic = Arc::new(Topic {
                name: old.name.clone(),
                id: old.id,
                overrides: old.overrides.clone(),
                config,
                partitions: old.partitions.clone(),
            });
            for p in &topic.partitions {
                p.set_config(config);
            }
            self.shared.catalog.insert(topic);
        }
        Ok(())
    }

    /// Add empty partitions to a topic: their directories first, then the metadata file with
    /// the new count (the commit point; a crash before it leaves directories that the next
    /// start removes).
    async fn create_partitions(
        &mut self,
        name: &str,
        count: i32,
    ) -> Result<Arc<Topic>, TopicError> {
        let old = self.shared.catalog.get(name).ok_or(TopicError::Unknown)?;
        catalog::check_partition_growth(&old, count)?;
        let from = old.partitions.len() as i32;
        let data_dir = self.shared.data_dir.clone();
        let grown = async {
            let of = log::Naming {
                topic: name,
                topic_id: old.id,
                index: 0,
            };
            let added = catalog::create_partitions(
                self.io(),
                &data_dir,
                of,
                from..count,
                old.config,
                self.shared.replicated,
            )
            .await?;
            let mut partitions = old.partitions.clone();
            partitions.extend(added);
            let topic = Arc::new(Topic {
                name: old.name.clone(),
                id: old.id,
                overrides: old.overrides.clone(),
                config: old.config,
                partitions,
            });
            catalog::write_meta(self.io(), &data_dir, &topic).await?;
            Ok::<_, TopicError>(topic)
        }
        .await;
        match &grown {
            Ok(topic) => {
                self.shared.catalog.insert(topic.clone());
                tracing::info!(topic = name, from, to = count, "added partitions");
            }
            Err(e) => {
                tracing::warn!(topic = name, error = %e, "adding partitions failed; removing what it made");
                if let Err(undo) =
                    catalog::remove_partitions(self.io(), &data_dir, name, from..count).await
                {
                    tracing::warn!(topic = name, error = %undo, "could not remove the new partitions' directories; they are removed at the next start");
                }
            }
        }
        grown
    }

    /// Move a partition's log start up to `offset` (-1: its high watermark), durably; then
    /// remove the closed segments wholly below it. Answers the log start (unchanged when it is
    /// already past `offset`, as Kafka does).
    async fn delete_records(
        &mut self,
        partition: &Arc<Partition>,
        offset: i64,
    ) -> Result<i64, TopicError> {
        if partition.is_deleted() {
            return Err(TopicError::Unknown);
        }
        let (start, hw) = {
            let st = partition.state();
            (st.log_start_offset, st.high_watermark())
        };
        let target = if offset == -1 { hw } else { offset };
        if !(0..=hw).contains(&target) {
            return Err(TopicError::OffsetOutOfRange(format!(
                "cannot delete records below offset {offset} of {}-{}: it is not between 0 and the high watermark {hw}",
                partition.topic, partition.index
            )));
        }
        if target <= start {
            return Ok(start);
        }
        log::write_log_start(self.io(), &partition.dir, target).await?;
        partition.state_mut().log_start_offset = target;
        tracing::info!(topic = %partition.topic, partition = partition.index, log_start_offset = target, "deleted records");
        for seg in super::retention::below_log_start(partition) {
            if let Err(e) = self.delete_segment(partition, &seg).await {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "could not remove a segment below the log start; retention tries again later");
                break;
            }
        }
        Ok(target)
    }
}
