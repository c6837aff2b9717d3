//! Producer ids, handed out in blocks: the end of a block is durable (`.meta/producer-ids`,
//! CRC-checked) before any id in it is given to a producer, so no id is given twice, also
//! across crashes — an id given twice would let two producers' sequences be taken for one's
//! (Kafka's `ProducerIdManager`; per broker until a cluster's controller hands out the blocks).

use std::path::Path;

use super::{small_file, Io, StorageError};
use crate::storage::catalog::META_DIR;

/// Ids per block.
pub const BLOCK: i64 = 1000;
const FILE: &str = "producer-ids";

/// How far ids have been handed out in blocks (every id below is taken); 0 on a new directory.
pub async fn read_allocated(io: &Io, data_dir: &Path) -> Result<i64, StorageError> {
    let path = data_dir.join(META_DIR).join(FILE);
    let parsed = small_file::read(io, &path, |body| {
        body.strip_prefix("allocated=")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| "not a valid producer id block record".to_string())
    })
    .await?;
    Ok(parsed.unwrap_or(0))
}

/// Record that ids below `allocated` are taken: durable before the caller hands out any of
/// them.
pub async fn write_allocated(io: &Io, data_dir: &Path, allocated: i64) -> Result<(), StorageError> {
    let body = format!("allocated={allocated}");
    small_file::write(io, &data_dir.join(META_DIR), FILE, &body).await
}
