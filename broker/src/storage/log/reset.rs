//! A replicated log's repairs at start and around a reset to a leader's snapshot: a reset a
//! crash interrupted finished (the received cleaned prefix renamed in), a segment whose first
//! entry never came removed, and the prefix's files made segments.

use std::path::Path;

use io_backend::OpenMode;

use super::recovery::{scanned_segment, write_index, write_log_start};
use super::replica::{self, ReplicaMeta};
use super::scan::scan_segment;
use super::{segment_name, Segment};
use crate::storage::io::{Io, StorageError};
use crate::storage::small_file;

/// Rename a leader's cleaned prefix, received as `<base>.prefix` files, into segments (over
/// any log of the same base), then sync the directory. A file renamed already (a retry, or
/// a start finishing the reset) is left as it is.
pub async fn rename_prefix_files(io: &Io, dir: &Path, bases: &[i64]) -> Result<(), StorageError> {
    for &base in bases {
        let from = dir.join(segment_name(base, "prefix"));
        if io.exists(&from).await? {
            io.rename(&from, &dir.join(segment_name(base, "log")))
                .await?;
        }
    }
    io.sync_dir(dir).await
}

/// A closed segment made of a file already in place (a cleaned prefix a reset renamed in):
/// scanned whole, checked to end where the next segment begins, its index written.
pub async fn load_closed(
    io: &Io,
    dir: &Path,
    base: i64,
    next_base: i64,
    index_interval_bytes: u64,
) -> Result<Segment, StorageError> {
    let path = dir.join(segment_name(base, "log"));
    let file = io.open(&path, OpenMode::Existing).await?;
    let len = io.len(&file).await?;
    let s = scan_segment(io, &file, base, len, index_interval_bytes, None, false).await?;
    if s.valid_len < len || s.next_offset != next_base {
        return Err(StorageError::Corrupt {
            path,
            reason: format!(
                "a received prefix segment holds {} of its {len} bytes and ends at offset {} instead of {next_base}",
                s.valid_len, s.next_offset
            ),
        });
    }
    let seg = scanned_segment(base, file, s);
    write_index(io, dir, &seg).await?;
    Ok(seg)
}

/// Finish a reset of a replicated log that a crash interrupted: its record names a segment
/// above every segment file (the record is written first, then the old segments removed, then
/// the new one made). Whether there was one to finish.
pub(super) async fn finish_reset(
    io: &Io,
    dir: &Path,
    bases: &mut Vec<i64>,
    meta: &mut ReplicaMeta,
) -> Result<bool, StorageError> {
    let Some((&base, _)) = meta.segments.iter().next_back() else {
        return Ok(false);
    };
    // (A record written before the mark existed: a reset's segment is above every file.)
    if !meta.resetting && bases.last().is_some_and(|&last| last >= base) {
        return Ok(false);
    }
    tracing::warn!(dir = %dir.display(), base, "finishing a reset of the log that a crash interrupted");
    let prefix = std::mem::take(&mut meta.prefix_bases);
    for old in bases.drain(..) {
        // A log of a prefix base is the prefix's once its file was renamed: a `.prefix` file
        // left means the rename is still to come (over the old log).
        let exts: &[&str] = if prefix.contains(&old) {
            &["index", "timeindex", "txnindex", "snapshot"]
        } else {
            &["log", "index", "timeindex", "txnindex", "snapshot"]
        };
        for ext in exts {
            let path = dir.join(segment_name(old, ext));
            if io.exists(&path).await? {
                io.remove_file(&path).await?;
            }
        }
    }
    rename_prefix_files(io, dir, &prefix).await?;
    io.open(&dir.join(segment_name(base, "log")), OpenMode::Create)
        .await?;
    io.sync_dir(dir).await?;
    meta.resetting = false;
    small_file::write(io, dir, replica::META_FILE, &meta.encode()).await?;
    if let Some(&start) = prefix.first() {
        write_log_start(io, dir, start).await?;
    }
    bases.extend(prefix);
    bases.push(base);
    Ok(true)
}

/// Remove an empty last segment of a replicated partition that has no first index recorded
/// while another segment comes before it: a roll whose first entry never came (the segment's
/// start is recorded as its first entry is written). The segment before takes the entries
/// again, so its index files, written when it was closed, go too. Whether it removed one.
pub(super) async fn remove_unstarted_segment(
    io: &Io,
    dir: &Path,
    bases: &mut Vec<i64>,
    meta: &ReplicaMeta,
) -> Result<bool, StorageError> {
    let [.., before, last] = bases[..] else {
        return Ok(false);
    };
    if meta.segments.contains_key(&last) {
        return Ok(false);
    }
    let file = io
        .open(&dir.join(segment_name(last, "log")), OpenMode::Existing)
        .await?;
    if io.len(&file).await? > 0 {
        return Ok(false);
    }
    tracing::warn!(segment = %dir.join(segment_name(last, "log")).display(), "removing an empty segment whose first entry never came");
    for (base, exts) in [
        (
            last,
            &["log", "index", "timeindex", "txnindex", "snapshot"][..],
        ),
        (before, &["index", "timeindex", "txnindex"][..]),
    ] {
        for ext in exts {
            let path = dir.join(segment_name(base, ext));
            if io.exists(&path).await? {
                io.remove_file(&path).await?;
            }
        }
    }
    io.sync_dir(dir).await?;
    bases.pop();
    Ok(true)
}
