//! Producer ids, handed out in blocks: the end of a block is durable (`.meta/producer-ids`,
//! CRC-checked) before any id in it is given to a producer, so no id is given twice, also
//! across crashes — an id given twice would let two producers' sequences be taken for one's
//! (Kafka's `ProducerIdManager`; per broker until a cluster's controller hands out the blocks).

use std::path::Path;

use bytes::Bytes;
use io_backend::OpenMode;

use super::{Io, StorageError};
use crate::catalog::META_DIR;
use crate::storage::log::read_whole;

/// Ids per block.
pub const BLOCK: i64 = 1000;
const FILE: &str = "producer-ids";

/// How far ids have been handed out in blocks (every id below is taken); 0 on a new directory.
pub async fn read_allocated(io: &Io, data_dir: &Path) -> Result<i64, StorageError> {
    let path = data_dir.join(META_DIR).join(FILE);
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.clone(),
        reason,
    };
    let mut attempt = 1;
    loop {
        let Some(data) = read_whole(io, &path).await? else {
            return Ok(0);
        };
        let parsed = std::str::from_utf8(&data)
            .ok()
            .and_then(|t| t.trim_end().split_once('\n'))
            .and_then(|(body, crc)| {
                let stored = u32::from_str_radix(crc.strip_prefix("crc32=")?, 16).ok()?;
                (stored == crc32fast::hash(body.as_bytes())).then_some(body)
            })
            .and_then(|body| body.strip_prefix("allocated=")?.parse::<i64>().ok());
        match parsed {
            Some(n) if n >= 0 => return Ok(n),
            _ if attempt < super::log::READ_ATTEMPTS => attempt += 1,
            _ => return Err(corrupt("not a valid producer id block record".into())),
        }
    }
}

/// Record that ids below `allocated` are taken: written aside, synced, renamed, directory
/// synced — durable before the caller hands out any of them.
pub async fn write_allocated(io: &Io, data_dir: &Path, allocated: i64) -> Result<(), StorageError> {
    let meta_dir = data_dir.join(META_DIR);
    let body = format!("allocated={allocated}");
    let text = format!("{body}\ncrc32={:08x}\n", crc32fast::hash(body.as_bytes()));
    let tmp = meta_dir.join(format!("{FILE}.tmp"));
    let f = io.open(&tmp, OpenMode::Truncate).await?;
    io.write_at(&f, Bytes::from(text), 0).await?;
    io.sync_data(&f).await?;
    io.rename(&tmp, &meta_dir.join(FILE)).await?;
    io.sync_dir(&meta_dir).await
}
