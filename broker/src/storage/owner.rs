//! Whose a data directory is: a single node's, or node N's of a cluster (`.meta/owner`).
//!
//! Invariant: a directory is only ever opened by the kind of node that made it.

use super::{catalog, small_file, Io, StorageError};
use crate::config::Config;

/// The file that says whose a data directory is: a single node's, or node N's of a cluster.
const OWNER_FILE: &str = "owner";

/// Refuse a directory that belongs to another kind of node; record the owner of a new one
/// (then `true`: the directory is new). A directory from before this record is a single
/// node's.
pub(super) async fn check_ownership(
    io: &Io,
    data_dir: &std::path::Path,
    config: &Config,
) -> Result<bool, StorageError> {
    let meta = data_dir.join(catalog::META_DIR);
    let me = if config.clustered() {
        format!("cluster node {}", config.node_id)
    } else {
        "single node".to_string()
    };
    let recorded = small_file::read(io, &meta.join(OWNER_FILE), |body| {
        body.strip_prefix("owner=")
            .map(str::to_string)
            .ok_or_else(|| "not an owner record".to_string())
    })
    .await?;
    let recorded = match recorded {
        Some(r) => Some(r),
        None => {
            let has_topics = io.list(&meta).await?.iter().any(|n| n.ends_with(".topic"));
            has_topics.then(|| "single node".to_string())
        }
    };
    match recorded {
        Some(owner) if owner == me => Ok(false),
        Some(owner) => Err(StorageError::NotThisNodes(format!(
            "data directory {} belongs to a {owner}, not to this {me}: a cluster node and a single node (or two cluster nodes) never share a data directory",
            data_dir.display()
        ))),
        None => small_file::write(io, &meta, OWNER_FILE, &format!("owner={me}"))
            .await
            .map(|()| true),
    }
}
