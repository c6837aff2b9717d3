//! A broker's storage follows the cluster metadata: its dynamic broker configs are the
//! metadata's (the cluster-wide default and its own); every topic the metadata holds has a local
//! copy here (made with the cluster's topic id; partitions this broker does not replicate stay
//! empty), its configs as the metadata says, and a Raft group for each partition this broker is
//! a replica of; a topic the metadata deleted is removed here, its groups first.
//!
//! Removal goes by the deleted topic's id, never by a topic's absence: right after a start the
//! metadata replayed so far may be an older prefix of the log, which does not yet hold topics
//! made later. A replica moved away ([`super::moves`]) is removed — its group, then its data —
//! only once this broker's metadata has caught up with the cluster's and no move of the
//! partition is in progress, for the same reason.

use std::sync::Arc;
use std::time::Duration;

use super::{Controller, METADATA_TOPIC};
use crate::storage::catalog::TopicError;

impl Controller {
    /// Reconcile after every change of the metadata; after a failure (a failed disk), again a
    /// second later.
    pub(super) async fn reconcile_loop(self: Arc<Self>) {
        let mut changes = self.changes();
        loop {
            let done = self.reconcile().await;
            self.reconciled.send_modify(|n| *n += 1);
            if done {
                if changes.changed().await.is_err() {
                    return;
                }
            } else {
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = self.env.clock.sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    /// One pass; whether everything is as the metadata says.
    async fn reconcile(&self) -> bool {
        let md = self.metadata();
        let mut done = true;
        // The dynamic broker configs: the cluster-wide default and this broker's own.
        let configs = md.dynamic_configs_of(self.node_id);
        if configs != self.store.dynamic_configs() {
            if let Err(e) = self.store.set_dynamic_configs(configs).await {
                tracing::warn!(error = %e, "cannot take the cluster's dynamic broker configs yet");
                done = false;
            }
        }
        // Deleted topics first: a topic deleted and made again under its name is replaced.
        for local in self.store.topics() {
            if local.name == METADATA_TOPIC || !md.deleted.contains(&local.id) {
                continue;
            }
            for p in &local.partitions {
                if let Some(view) = self.replication.replica(&local.name, p.index) {
                    let _ = self.replication.remove_group(view.group).await;
                }
            }
            match self.store.delete_topic(&local.name).await {
                Ok(()) | Err(TopicError::Unknown) => {
                    tracing::info!(topic = %local.name, "removed a topic the cluster deleted")
                }
                Err(e) => {
                    tracing::warn!(topic = %local.name, error = %e, "cannot remove a deleted topic yet");
                    done = false;
                }
            }
        }
        for t in md.topics.values() {
            let mut created = false;
            let local = match self.store.topic(&t.name) {
                Some(local) if local.id == t.id => local,
                Some(_) => {
                    // An older topic of the same name whose deletion this broker has not seen
                    // applied yet: wait for it.
                    done = false;
                    continue;
                }
                None => {
                    match self
                        .store
                        .create_topic_with_id(
                            &t.name,
                            t.partitions.len() as i32,
                            t.overrides.clone(),
                            t.id,
                        )
                        .await
                    {
                        Ok(local) => {
                            created = true;
                            local
                        }
                        Err(e) => {
                            tracing::warn!(topic = %t.name, error = %e, "cannot make the local copy of a topic yet");
                            done = false;
                            continue;
                        }
                    }
                }
            };
            let before = local.partitions.len();
            let local = if before < t.partitions.len() {
                match self
                    .store
                    .create_partitions(&t.name, t.partitions.len() as i32)
                    .await
                {
                    Ok(grown) => grown,
                    Err(e) => {
                        tracing::warn!(topic = %t.name, error = %e, "cannot add the topic's new partitions here yet");
                        done = false;
                        continue;
                    }
                }
            } else {
                local
            };
            if local.overrides != t.overrides {
                // Where the simulation delays the storage's taking of a change (on real
                // threads it may come after a client's next request).
                crate::fault_point!("controller.take_topic_configs");
                if let Err(e) = self
                    .store
                    .alter_topic_config(&t.name, t.overrides.clone())
                    .await
                {
                    tracing::warn!(topic = %t.name, error = %e, "cannot take the topic's new configs yet");
                    done = false;
                }
            }
            for (index, p) in t.partitions.iter().enumerate() {
                let Some(partition) = local.partitions.get(index).cloned() else {
                    continue;
                };
                if !p.replicas.contains(&self.node_id) {
                    if p.moving.is_none() && !self.remove_moved_replica(p.group, partition).await {
                        done = false;
                    }
                    continue;
                }
                if let Some(view) = self.replication.group(p.group) {
                    view.set_preferred(p.desired().first().copied());
                    continue;
                }
                // The preferred leader of a partition made just now stands at once.
                let new = created || index >= before;
                let campaign = new && p.replicas.first() == Some(&self.node_id);
                let added = if p.moving.is_some() {
                    // A replica the move adds (or one of the original replicas started empty
                    // during it): it votes only once caught up.
                    self.replication
                        .add_moved_group(p.group, partition, p.initial.clone(), Some(p.made_at))
                        .await
                } else {
                    self.replication
                        .add_group(
                            p.group,
                            partition,
                            p.initial.clone(),
                            campaign,
                            Some(p.made_at),
                        )
                        .await
                };
                if added.is_err() {
                    return false;
                }
            }
        }
        done
    }

    /// This broker's replica of a partition was moved away: its group goes, then its data
    /// (once the metadata has caught up: a prefix replayed after a start may not yet name this
    /// broker). Whether nothing is left to remove.
    async fn remove_moved_replica(
        &self,
        group: crate::replication::wire::GroupId,
        partition: Arc<crate::storage::log::Partition>,
    ) -> bool {
        let holds = self.replication.group(group).is_some() || partition.holds_data();
        if !holds {
            return true;
        }
        if !*self.caught_up.borrow() {
            return false;
        }
        if self.replication.group(group).is_some() {
            let _ = self.replication.remove_group(group).await;
        }
        match self.store.clear_replica(partition.clone()).await {
            Ok(()) => {
                crate::coverage::reached(crate::coverage::Event::MovedReplicaRemoved);
                tracing::info!(topic = %partition.topic, partition = partition.index, "removed this broker's replica: the partition moved away");
                true
            }
            Err(e) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "cannot remove a replica that moved away yet");
                false
            }
        }
    }
}
