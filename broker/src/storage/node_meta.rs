//! A single node's own metadata files in `.meta/` (a cluster keeps the same in its metadata
//! log): the dynamic broker configs, the security metadata, the client-metrics
//! subscriptions, the client quotas and the finalized feature levels — each read whole at
//! start, changed only through the admin lane ([`super::admin`]); and the `Store`'s methods that
//! tell and change them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::admin::AdminCommand;
use super::catalog::TopicError;
use super::log::LogConfig;
use super::{admin, catalog, small_file, Io, StorageError};
use crate::broker_configs::{self, DynamicConfigs};
use crate::features::Finalized;
use crate::security::{SecurityChange, SecurityMetadata};
use crate::topic_config::Overrides;

/// The file of a single node's finalized feature levels.
pub(super) const FEATURES_FILE: &str = "features";

/// What the files say (absent ones: their defaults).
pub(super) struct NodeMeta {
    pub dynamic: DynamicConfigs,
    /// The topic defaults the dynamic configs make over the static ones.
    pub defaults: LogConfig,
    pub security: SecurityMetadata,
    pub client_metrics: BTreeMap<String, Overrides>,
    pub client_quotas: crate::quota::ClientQuotas,
    pub features: Finalized,
}

/// Read every file of `data_dir`'s metadata directory; `format` is the directory's, which
/// is `stillwater.version`'s level wherever no file says one.
pub(super) async fn read(
    io: &Io,
    data_dir: &Path,
    static_defaults: LogConfig,
    format: u16,
) -> Result<NodeMeta, StorageError> {
    let meta = data_dir.join(catalog::META_DIR);
    let dynamic = small_file::read(io, &meta.join(broker_configs::FILE), DynamicConfigs::decode)
        .await?
        .unwrap_or_default();
    let defaults = dynamic
        .apply(static_defaults)
        .map_err(|e| StorageError::Corrupt {
            path: meta.join(broker_configs::FILE),
            reason: e.0,
        })?;
    let security = small_file::read(
        io,
        &meta.join(admin::SECURITY_FILE),
        SecurityMetadata::decode,
    )
    .await?
    .unwrap_or_default();
    let client_metrics = small_file::read(io, &meta.join(admin::CLIENT_METRICS_FILE), |text| {
        serde_json::from_str::<BTreeMap<String, Overrides>>(text)
            .map_err(|e| format!("client-metrics subscriptions: {e}"))
    })
    .await?
    .unwrap_or_default();
    let client_quotas = small_file::read(io, &meta.join(admin::CLIENT_QUOTAS_FILE), |text| {
        serde_json::from_str::<crate::quota::ClientQuotas>(text)
            .map_err(|e| format!("client quotas: {e}"))
    })
    .await?
    .unwrap_or_default();
    let features = small_file::read(io, &meta.join(FEATURES_FILE), |text| {
        serde_json::from_str::<Finalized>(text).map_err(|e| format!("feature levels: {e}"))
    })
    .await?
    .unwrap_or_else(|| {
        // A directory without the file finalized nothing: every feature at its unrecorded
        // level, but the format level at the directory's format.
        let mut f = Finalized::default();
        f.levels.insert(
            crate::features::STILLWATER_VERSION.to_string(),
            format as i16,
        );
        f
    });
    Ok(NodeMeta {
        dynamic,
        defaults,
        security,
        client_metrics,
        client_quotas,
        features,
    })
}

/// A new single node's levels: `levels` over what it read (nothing finalized yet), the file
/// written when they differ from what a directory without it would run at.
pub(super) async fn start_features(
    io: &Io,
    data_dir: &Path,
    read: Finalized,
    levels: &BTreeMap<String, i16>,
) -> Result<Finalized, StorageError> {
    let mut features = read.clone();
    for (name, &level) in levels {
        features.set(name, level, read.epoch);
    }
    let same = features.listed() == read.listed();
    if !same {
        let body = serde_json::to_string(&features).expect("plain data encodes");
        small_file::write(io, &data_dir.join(catalog::META_DIR), FEATURES_FILE, &body).await?;
    }
    Ok(if same { read } else { features })
}

/// What a single node keeps in `.meta/`, as the store tells and changes it (each change through
/// the admin lane, answered once durable).
impl super::Store {
    /// The dynamic broker configs in force.
    pub fn dynamic_configs(&self) -> DynamicConfigs {
        self.shared.dynamic.read().expect("not poisoned").0.clone()
    }

    /// Whether `configs` resolve over this broker's static settings.
    pub fn check_dynamic_configs(&self, configs: &DynamicConfigs) -> Result<(), TopicError> {
        configs
            .apply(self.shared.static_defaults)
            .map(|_| ())
            .map_err(|e| TopicError::InvalidConfig(e.0))
    }

    /// Replace the dynamic broker configs: kept durably, then every topic without its own
    /// value of a changed setting follows it at once.
    pub async fn set_dynamic_configs(&self, configs: DynamicConfigs) -> Result<(), TopicError> {
        self.check_dynamic_configs(&configs)?;
        self.ask(|reply| AdminCommand::SetDynamicConfigs { configs, reply })
            .await
    }

    /// A single node's security metadata as it is now.
    pub fn security(&self) -> Arc<SecurityMetadata> {
        self.shared.security.read().expect("not poisoned").clone()
    }

    /// A single node's client-metrics subscriptions as they are now.
    pub fn client_metrics(&self) -> Arc<std::collections::BTreeMap<String, Overrides>> {
        self.shared
            .client_metrics
            .read()
            .expect("not poisoned")
            .clone()
    }

    /// Replace a single node's client-metrics subscription `name` (no configs: remove it),
    /// answered once durable.
    pub async fn set_client_metrics(
        &self,
        name: &str,
        configs: Overrides,
    ) -> Result<(), TopicError> {
        let name = name.to_string();
        self.ask(|reply| AdminCommand::SetClientMetrics {
            name,
            configs,
            reply,
        })
        .await
    }

    /// A single node's finalized feature levels as they are now.
    pub fn features(&self) -> Arc<crate::features::Finalized> {
        self.shared.features.read().expect("not poisoned").clone()
    }

    /// The directory's format now ([`format`]).
    pub fn format(&self) -> u16 {
        self.shared.io.format()
    }

    /// Raise the directory's format to `level` (a cluster finalized `stillwater.version` at
    /// it): the marker rewritten durably before any file of the level is written. A level at
    /// or below the format now changes nothing; one above what this broker reads is refused.
    pub async fn raise_format(&self, level: u16) -> Result<(), TopicError> {
        if level <= self.format() {
            return Ok(());
        }
        self.ask(|reply| AdminCommand::RaiseFormat { level, reply })
            .await
    }

    /// Finalize feature levels on a single node (checked by the caller), once durable; the
    /// directory's format first raised if `stillwater.version` rises.
    pub async fn update_features(
        &self,
        updates: Vec<crate::features::Update>,
    ) -> Result<(), TopicError> {
        self.ask(|reply| AdminCommand::UpdateFeatures { updates, reply })
            .await
    }

    /// A single node's client quotas as they are now.
    pub fn client_quotas(&self) -> Arc<crate::quota::ClientQuotas> {
        self.shared
            .client_quotas
            .read()
            .expect("not poisoned")
            .clone()
    }

    /// Apply alterations to a single node's client quotas, each alone (in the admin lane, so
    /// two requests' alterations never undo one another): each one's outcome, once durable.
    pub async fn alter_client_quotas(
        &self,
        alterations: Vec<crate::quota::Alteration>,
    ) -> Result<Vec<Result<(), crate::quota::Refused>>, TopicError> {
        self.ask(|reply| AdminCommand::AlterClientQuotas { alterations, reply })
            .await
    }

    /// Change a single node's security metadata: each change's outcome, once durable.
    pub async fn alter_security(
        &self,
        changes: Vec<SecurityChange>,
    ) -> Result<crate::security::Outcomes, TopicError> {
        self.ask(|reply| AdminCommand::AlterSecurity { changes, reply })
            .await
    }
}
