//! A single node's own metadata files in `.meta/` (a cluster keeps the same in its metadata
//! log): the dynamic broker configs, the security metadata, the client-metrics
//! subscriptions, the client quotas and the finalized feature levels — each read whole at
//! start, changed only through the admin lane ([`super::admin`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::log::LogConfig;
use super::{admin, catalog, small_file, Io, StorageError};
use crate::broker_configs::{self, DynamicConfigs};
use crate::features::Finalized;
use crate::security::SecurityMetadata;
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
