use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::DiskResult;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading and writing; fail with `NotFound` if it is missing.
    Existing,
    /// Open for reading and writing, creating the file if it is missing.
    Create,
    /// Create a new empty file, truncating any existing one.
    Truncate,
    /// Open an existing file for reading only (a file the broker must not change, such as a
    /// TLS certificate it may not write); fail with `NotFound` if it is missing.
    ReadOnly,
}

/// Directories and files. Buffers are owned (`Bytes` in, `Bytes` out) because io_uring needs a
/// buffer to live until the kernel is done with it.
///
/// Every operation returns a [`DiskError`](crate::DiskError) naming the file and the operation.
/// Operations may take arbitrarily long (a disk can stall); callers put deadlines around them.
#[async_trait]
pub trait Disk: Send + Sync + 'static {
    /// Create a directory and its parents; succeed if it exists.
    async fn create_dir_all(&self, path: &Path) -> DiskResult<()>;
    /// Open a file for positional reads and writes.
    async fn open(&self, path: &Path, mode: OpenMode) -> DiskResult<Arc<dyn DiskFile>>;
    /// Names of the entries of a directory, sorted.
    async fn list(&self, dir: &Path) -> DiskResult<Vec<String>>;
    /// Atomically rename a file (replacing the target).
    async fn rename(&self, from: &Path, to: &Path) -> DiskResult<()>;
    /// Remove a file.
    async fn remove_file(&self, path: &Path) -> DiskResult<()>;
    /// Remove a directory and everything in it.
    async fn remove_dir_all(&self, path: &Path) -> DiskResult<()>;
    /// Make the directory's entries (creations, renames, removals) durable.
    async fn sync_dir(&self, path: &Path) -> DiskResult<()>;
    /// Whether a path exists.
    async fn exists(&self, path: &Path) -> DiskResult<bool>;
    /// Take the exclusive lock of the directory `dir` (the file `dir/.lock`, as Kafka's), held
    /// until the returned [`DirLock`] is dropped or the process ends, and record `holder` in it.
    /// If another process (or another [`DirLock`] of this one) holds it, fail at once with
    /// `ErrorKind::WouldBlock` and a message that says what the lock file says of its holder.
    async fn lock_dir(&self, dir: &Path, holder: &str) -> DiskResult<DirLock>;
    /// Which implementation this is (`uring`, `blocking`, `sim`), for logs and metrics.
    fn engine(&self) -> &'static str;
}

/// The name of the lock file [`Disk::lock_dir`] takes inside a directory.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive claim on a directory ([`Disk::lock_dir`]); dropping it releases the lock.
pub struct DirLock {
    _held: Box<dyn Send + Sync>,
}

impl DirLock {
    /// Wrap whatever keeps an engine's lock alive (an open, locked file; a table entry).
    pub fn new(held: impl Send + Sync + 'static) -> DirLock {
        DirLock {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for DirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirLock")
    }
}

/// An open file. Writes and reads are positional; there is no file cursor to get wrong.
#[async_trait]
#[allow(clippy::len_without_is_empty)] // An async length; "empty" is not a question callers ask.
pub trait DiskFile: Send + Sync + 'static {
    /// The path the file was opened at (for error messages).
    fn path(&self) -> &Path;
    /// Write all of `data` at byte `offset`.
    async fn write_at(&self, data: Bytes, offset: u64) -> DiskResult<()>;
    /// Read exactly `len` bytes at `offset`; fewer only at end of file.
    async fn read_at(&self, len: usize, offset: u64) -> DiskResult<Bytes>;
    /// Make the data written so far (writes that completed before this call) durable.
    async fn sync_data(&self) -> DiskResult<()>;
    /// Write every `(data, offset)`, then make the file's data durable, as one operation: an
    /// engine that can do both without a round trip to the caller in between does so.
    /// The pieces that follow one another in the file are one write (as one `pwritev`):
    /// a caller may hand a batch's patched header and its body as two pieces without paying
    /// for two writes.
    async fn write_all_and_sync(&self, writes: Vec<(Bytes, u64)>) -> DiskResult<()> {
        for (data, offset) in coalesce_adjacent(writes) {
            self.write_at(data, offset).await?;
        }
        self.sync_data().await
    }
    /// Cut or extend the file to `len` bytes.
    async fn truncate(&self, len: u64) -> DiskResult<()>;
    /// The file's current length in bytes.
    async fn len(&self) -> DiskResult<u64>;
}

/// `writes` with every run of pieces that follow one another in the file joined into one
/// (a copy, only where a run has more than one piece), in the same order.
pub fn coalesce_adjacent(writes: Vec<(Bytes, u64)>) -> Vec<(Bytes, u64)> {
    // (pieces, where the run starts, where it ends)
    let mut runs: Vec<(Vec<Bytes>, u64, u64)> = Vec::new();
    for (data, offset) in writes {
        match runs.last_mut() {
            Some((pieces, _, end)) if *end == offset => {
                *end += data.len() as u64;
                pieces.push(data);
            }
            _ => {
                let end = offset + data.len() as u64;
                runs.push((vec![data], offset, end));
            }
        }
    }
    runs.into_iter()
        .map(|(mut pieces, start, end)| {
            if pieces.len() == 1 {
                return (pieces.pop().expect("one piece"), start);
            }
            let mut joined = bytes::BytesMut::with_capacity((end - start) as usize);
            for p in &pieces {
                joined.extend_from_slice(p);
            }
            (joined.freeze(), start)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::coalesce_adjacent;
    use bytes::Bytes;

    #[test]
    fn adjacent_pieces_are_joined_and_the_rest_kept_in_order() {
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        let writes = vec![
            (b("ab"), 0),
            (b("cd"), 2),
            (b("e"), 4),
            (b("x"), 10),
            (b("yz"), 11),
            (b("q"), 3),
        ];
        let got = coalesce_adjacent(writes);
        assert_eq!(got, vec![(b("abcde"), 0), (b("xyz"), 10), (b("q"), 3)]);
        assert!(coalesce_adjacent(Vec::new()).is_empty());
    }
}
