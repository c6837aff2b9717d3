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
    async fn write_all_and_sync(&self, writes: Vec<(Bytes, u64)>) -> DiskResult<()> {
        for (data, offset) in writes {
            self.write_at(data, offset).await?;
        }
        self.sync_data().await
    }
    /// Cut or extend the file to `len` bytes.
    async fn truncate(&self, len: u64) -> DiskResult<()>;
    /// The file's current length in bytes.
    async fn len(&self) -> DiskResult<u64>;
}
