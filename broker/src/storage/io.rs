//! Disk operations with deadlines, and the health of a data directory.
//!
//! Every disk operation the broker issues goes through [`Io::run`]. With a deadline configured,
//! the operation runs as its own task and the caller waits at most the deadline: when it passes,
//! the data directory is declared failed (naming the file and the operation), the caller gets a
//! retriable error, and the stalled operation is kept so the directory can heal once it ends.
//! Without a deadline (the legacy configuration, for simulation only) the caller waits for as
//! long as the disk takes — which is how Node 1 froze. Every operation first waits for its
//! place in the directory's own queue ([`super::gate`]); a writer's deadline counts from there.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use io_backend::{Clock, DirLock, Disk, DiskError, DiskFile, DiskOp, OpenMode};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// A storage failure as request handlers see it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    Disk(Arc<DiskError>),
    #[error("{op} on {} did not finish within {after:?}", path.display())]
    Stalled {
        op: DiskOp,
        path: PathBuf,
        after: Duration,
    },
    #[error("data directory is failed: {0}")]
    DirFailed(String),
    #[error("corrupt data in {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// Another broker holds the data directory's lock: two writers of one log would assign the
    /// same offsets twice and overwrite each other's acknowledged records.
    #[error("it is in use by another broker ({holder}); stop that broker or choose another data directory")]
    InUse { holder: String },
    /// The directory belongs to another kind of node (a single node's, a cluster node's, or
    /// another node id's): opening it would mix two logs' histories.
    #[error("{0}")]
    NotThisNodes(String),
    /// The data directory (or one of its files) is in a format of a later version than this
    /// broker: reading it could misread it, writing could destroy what that version wrote.
    #[error("{} says format {found} (written by {}); this broker ({}) reads formats up to {reads}: run {} on this directory", path.display(), written_by.as_ref().map_or("a later version".to_string(), |v| format!("Stillwater {v}")), super::format::software_version(), written_by.as_ref().map_or("the version that wrote it".to_string(), |v| format!("version {v} or later")))]
    NewerFormat {
        path: PathBuf,
        found: u16,
        /// The version that wrote it, where the file says.
        written_by: Option<String>,
        reads: u16,
    },
    /// The append's bytes were handed to the disk but the sync covering them failed or missed
    /// its deadline: the record may or may not survive (a crash can keep a torn prefix of
    /// unsynced writes). Every other error means the append was never written.
    #[error("written but not confirmed durable: {0}")]
    Unconfirmed(Box<StorageError>),
}

impl StorageError {
    /// Whether the failed append may still be in the log: true only for [`StorageError::Unconfirmed`].
    pub fn indefinite(&self) -> bool {
        matches!(self, StorageError::Unconfirmed(_))
    }

    /// Whether trying again later may succeed: a stalled or failing disk (EIO, a full disk) may
    /// recover; corrupt data, a missing directory or a permission problem will not by itself.
    pub fn transient(&self) -> bool {
        use std::io::ErrorKind::*;
        match self {
            StorageError::Stalled { .. } | StorageError::DirFailed(_) => true,
            StorageError::Disk(d) => !matches!(
                d.kind(),
                NotFound
                    | PermissionDenied
                    | InvalidInput
                    | InvalidData
                    | Unsupported
                    | ReadOnlyFilesystem
                    | NotADirectory
                    | IsADirectory
            ),
            StorageError::Corrupt { .. }
            | StorageError::InUse { .. }
            | StorageError::NotThisNodes(_)
            | StorageError::NewerFormat { .. } => false,
            StorageError::Unconfirmed(cause) => cause.transient(),
        }
    }
}

impl From<DiskError> for StorageError {
    fn from(e: DiskError) -> Self {
        StorageError::Disk(Arc::new(e))
    }
}

/// Why a data directory was declared failed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: String,
    pub op: Option<DiskOp>,
    pub path: Option<PathBuf>,
    pub since: Instant,
}

/// Whether a data directory can be written, and the operations that stalled it.
pub struct Health {
    failure: Mutex<Option<Failure>>,
    /// Tasks of operations that missed their deadline; the directory heals after they end.
    stalled: Mutex<Vec<JoinHandle<()>>>,
    /// Woken when the directory fails (so the pipeline starts healing).
    pub failed_signal: Notify,
    /// Whether the directory is failed, for whoever must act on it (replication steps down).
    state: tokio::sync::watch::Sender<bool>,
    metrics: Arc<Metrics>,
    /// Log lines of reads that missed their deadline (a loaded disk misses many at once).
    slow_reads: crate::throttle::LogThrottle,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Health> {
        Arc::new(Health {
            failure: Mutex::new("storage.io.failure", None),
            stalled: Mutex::new("storage.io.stalled", Vec::new()),
            failed_signal: Notify::new(),
            state: tokio::sync::watch::channel(false).0,
            metrics,
            slow_reads: Default::default(),
        })
    }

    /// Changes whenever the directory fails or heals (`true`: failed).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.state.subscribe()
    }

    /// The current failure, if any.
    pub fn failure(&self) -> Option<Failure> {
        lock(&self.failure).clone()
    }

    pub fn check(&self) -> Result<(), StorageError> {
        match lock(&self.failure).as_ref() {
            None => Ok(()),
            Some(f) => Err(StorageError::DirFailed(f.reason.clone())),
        }
    }

    /// Declare the directory failed. The first failure is kept as the reason.
    pub fn fail(&self, reason: String, op: Option<DiskOp>, path: Option<PathBuf>, now: Instant) {
        let mut f = lock(&self.failure);
        if f.is_none() {
            tracing::error!(%reason, "data directory declared failed: produce requests get KAFKA_STORAGE_ERROR until it heals");
            *f = Some(Failure {
                reason,
                op,
                path,
                since: now,
            });
            self.metrics.failed_log_dirs.set(1);
            Metrics::inc(&self.metrics.log_dir_failures, 1);
            self.failed_signal.notify_one();
            self.state.send_replace(true);
        }
    }

    /// The directory works again.
    pub fn heal(&self) {
        let mut f = lock(&self.failure);
        if let Some(old) = f.take() {
            crate::coverage::reached(crate::coverage::Event::DirFailedAndHealed);
            tracing::warn!(reason = %old.reason, "data directory healed; accepting writes again");
        }
        self.metrics.failed_log_dirs.set(0);
        self.state.send_replace(false);
    }

    fn keep_stalled(&self, task: JoinHandle<()>) {
        lock(&self.stalled).push(task);
    }

    /// Wait until every stalled operation has ended (however long the disk takes). Used only by
    /// the healing step of the pipeline, never by a request.
    pub async fn stalled_operations_ended(&self) {
        loop {
            let tasks: Vec<_> = std::mem::take(&mut *lock(&self.stalled));
            if tasks.is_empty() {
                return;
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
}

#[track_caller]
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the data (a flag, a list) is still valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The most bytes of one read handed to a slow device at once ([`Io::read_at`]). A catch-up read
/// of 1 MiB held a disk of 3 MB/s for a third of a second, and every write of a leader behind
/// it waited that long, step after step of its round: with two followers catching up, its
/// partition took no write for up to 3.75 s (`moves-at-volume` seed 25).
pub const READ_PIECE_MAX: usize = 256 << 10;

/// The disk, the clock and the deadline of one data directory.
#[derive(Clone)]
pub struct Io {
    pub disk: Arc<dyn Disk>,
    pub clock: Arc<dyn Clock>,
    pub deadline: Option<Duration>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// The directory's own queue: how many operations are in the device at once.
    pub gate: Arc<super::gate::Gate>,
    /// The directory's format ([`super::format`]): the level the files written now are in.
    pub format: Arc<std::sync::atomic::AtomicU16>,
}

impl Io {
    /// The format level files are written in now.
    pub fn format(&self) -> u16 {
        self.format.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Run one disk operation under the deadline. A missed deadline fails the directory, except
    /// for a read, which fails only its caller.
    pub async fn run<T, F>(&self, disk_op: DiskOp, path: &Path, fut: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, DiskError>> + Send + 'static,
    {
        let now = || self.clock.now();
        // Only what reaches the device waits for a place there: syncs and reads. Other
        // operations (opens, writes into the page cache, names) pass at once.
        let device = matches!(
            disk_op,
            DiskOp::SyncData | DiskOp::SyncDir | DiskOp::WriteSync | DiskOp::ReadAt
        );
        let lane = match disk_op {
            DiskOp::ReadAt => super::gate::Lane::Read,
            _ => super::gate::Lane::Write,
        };
        let Some(limit) = self.deadline else {
            let place = match device {
                true => Some(self.gate.admit(lane, now).await),
                false => None,
            };
            let result = fut.await;
            if let Some(place) = place {
                place.done(self.clock.now());
            }
            return result.map_err(StorageError::from);
        };
        let read = disk_op == DiskOp::ReadAt;
        let asked = self.clock.now();
        // A writer's deadline counts from its admission to the device (a wait in the
        // directory's own queue is not a stalled disk); a reader's counts its wait too.
        let mut admission = Box::pin(async {
            match device {
                true => Some(self.gate.admit(lane, now).await),
                false => None,
            }
        });
        let place = if read {
            match self.clock.timeout_running(limit, &mut admission).await {
                Ok(place) => place,
                Err(_) => return Err(self.read_missed(path, limit)),
            }
        } else {
            admission.await
        };
        let limit_left = if read {
            limit.saturating_sub(self.clock.now().saturating_duration_since(asked))
        } else {
            limit
        };
        // Poll the operation here; only if it misses the deadline does it move to a task of its
        // own, kept so the directory can heal once it ends.
        let mut op = Box::pin(fut);
        match self.clock.timeout_running(limit_left, &mut op).await {
            Ok(result) => {
                if let Some(place) = place {
                    place.done(self.clock.now());
                }
                result.map_err(StorageError::from)
            }
            Err(_) => {
                // Its place comes back now: the directory fails, and the width narrows.
                if let Some(place) = place {
                    place.done(self.clock.now());
                }
                if read {
                    // A slow read (a cold fetch on a busy disk) fails its reader only: writes
                    // that work must not be refused for it. A disk that stalls writes fails the
                    // directory through them. The read is abandoned; the engine finishes it.
                    return Err(self.read_missed(path, limit));
                }
                self.metrics.io_deadline_expired.inc_by(1);
                let err = StorageError::Stalled {
                    op: disk_op,
                    path: path.to_path_buf(),
                    after: limit,
                };
                let task = tokio::spawn(async move {
                    let _ = op.await;
                });
                self.health.keep_stalled(task);
                self.health.fail(
                    err.to_string(),
                    Some(disk_op),
                    Some(path.to_path_buf()),
                    self.clock.now(),
                );
                Err(err)
            }
        }
    }

    fn read_missed(&self, path: &Path, limit: Duration) -> StorageError {
        self.metrics.io_deadline_expired.inc_by(1);
        if let Some(suppressed) = self.health.slow_reads.admit(self.clock.now()) {
            tracing::warn!(file = %path.display(), after = ?limit, suppressed, "a read missed its deadline");
        }
        StorageError::Stalled {
            op: DiskOp::ReadAt,
            path: path.to_path_buf(),
            after: limit,
        }
    }
}

/// Every disk operation the broker uses, each under the deadline of [`Io::run`].
impl Io {
    pub async fn create_dir_all(&self, path: &Path) -> Result<(), StorageError> {
        let (disk, p) = (self.disk.clone(), path.to_path_buf());
        self.run(DiskOp::CreateDir, path, async move {
            disk.create_dir_all(&p).await
        })
        .await
    }

    pub async fn open(
        &self,
        path: &Path,
        mode: OpenMode,
    ) -> Result<Arc<dyn DiskFile>, StorageError> {
        let (disk, p) = (self.disk.clone(), path.to_path_buf());
        self.run(DiskOp::Open, path, async move { disk.open(&p, mode).await })
            .await
    }

    pub async fn list(&self, dir: &Path) -> Result<Vec<String>, StorageError> {
        let (disk, p) = (self.disk.clone(), dir.to_path_buf());
        self.run(DiskOp::List, dir, async move { disk.list(&p).await })
            .await
    }

    pub async fn exists(&self, path: &Path) -> Result<bool, StorageError> {
        let (disk, p) = (self.disk.clone(), path.to_path_buf());
        self.run(DiskOp::Open, path, async move { disk.exists(&p).await })
            .await
    }

    pub async fn rename(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        let (disk, f, t) = (self.disk.clone(), from.to_path_buf(), to.to_path_buf());
        self.run(
            DiskOp::Rename,
            from,
            async move { disk.rename(&f, &t).await },
        )
        .await
    }

    pub async fn remove_file(&self, path: &Path) -> Result<(), StorageError> {
        let (disk, p) = (self.disk.clone(), path.to_path_buf());
        self.run(
            DiskOp::Remove,
            path,
            async move { disk.remove_file(&p).await },
        )
        .await
    }

    /// [`Io::remove_file`], and a file already gone is removed too: where two of the
    /// directory's actors may remove the same file (retention on the admin lane, a log reset
    /// to a leader's snapshot on the pipeline), the second must not take the first's work for
    /// a failed disk (simulation, lagging-follower seed 1: the reset's `exists` then `remove`
    /// straddled retention's removal and the directory was declared failed).
    pub async fn remove_file_if_present(&self, path: &Path) -> Result<(), StorageError> {
        match self.remove_file(path).await {
            Err(StorageError::Disk(e)) if e.source.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    pub async fn remove_dir_all(&self, path: &Path) -> Result<(), StorageError> {
        let (disk, p) = (self.disk.clone(), path.to_path_buf());
        self.run(DiskOp::Remove, path, async move {
            disk.remove_dir_all(&p).await
        })
        .await
    }

    /// Take the directory's exclusive lock ([`Disk::lock_dir`]); held by someone else, the
    /// answer is [`StorageError::InUse`] with what the lock file says of the holder.
    pub async fn lock_dir(&self, dir: &Path, holder: &str) -> Result<DirLock, StorageError> {
        let (disk, d, h) = (self.disk.clone(), dir.to_path_buf(), holder.to_string());
        let locked = self
            .run(
                DiskOp::Lock,
                dir,
                async move { disk.lock_dir(&d, &h).await },
            )
            .await;
        match locked {
            Err(StorageError::Disk(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(StorageError::InUse {
                    holder: e.source.to_string(),
                })
            }
            other => other,
        }
    }

    pub async fn sync_dir(&self, path: &Path) -> Result<(), StorageError> {
        let (disk, p) = (self.disk.clone(), path.to_path_buf());
        self.run(
            DiskOp::SyncDir,
            path,
            async move { disk.sync_dir(&p).await },
        )
        .await
    }

    pub async fn write_at(
        &self,
        file: &Arc<dyn DiskFile>,
        data: Bytes,
        offset: u64,
    ) -> Result<(), StorageError> {
        let f = file.clone();
        self.run(DiskOp::WriteAt, file.path(), async move {
            f.write_at(data, offset).await
        })
        .await
    }

    /// `len` bytes at `offset` (fewer at the end of the file). On a device slow enough that
    /// the read would hold its place longer than an operation that narrows the directory's
    /// queue ([`super::gate::Gate::read_too_slow`]), it goes in pieces of at most
    /// [`READ_PIECE_MAX`], one after another, each with its own place and deadline: a write
    /// waits behind one piece of a large read, never behind all of it. A fast device reads it
    /// whole (in pieces, fetches from the page cache were 0.71× as fast).
    pub async fn read_at(
        &self,
        file: &Arc<dyn DiskFile>,
        len: usize,
        offset: u64,
    ) -> Result<Bytes, StorageError> {
        if len <= READ_PIECE_MAX || !self.gate.read_too_slow(len) {
            return self.read_piece(file, len, offset).await;
        }
        let mut out = bytes::BytesMut::with_capacity(len);
        while out.len() < len {
            let want = (len - out.len()).min(READ_PIECE_MAX);
            let piece = self
                .read_piece(file, want, offset + out.len() as u64)
                .await?;
            let short = piece.len() < want;
            out.extend_from_slice(&piece);
            if short {
                break;
            }
        }
        Ok(out.freeze())
    }

    async fn read_piece(
        &self,
        file: &Arc<dyn DiskFile>,
        len: usize,
        offset: u64,
    ) -> Result<Bytes, StorageError> {
        let f = file.clone();
        let asked = self.clock.now();
        let read = self
            .run(DiskOp::ReadAt, file.path(), async move {
                f.read_at(len, offset).await
            })
            .await?;
        self.gate.read_took(
            read.len(),
            self.clock.now().saturating_duration_since(asked),
        );
        Ok(read)
    }

    pub async fn sync_data(&self, file: &Arc<dyn DiskFile>) -> Result<(), StorageError> {
        let f = file.clone();
        self.run(
            DiskOp::SyncData,
            file.path(),
            async move { f.sync_data().await },
        )
        .await
    }

    pub async fn write_all_and_sync(
        &self,
        file: &Arc<dyn DiskFile>,
        writes: Vec<(Bytes, u64)>,
    ) -> Result<(), StorageError> {
        let f = file.clone();
        self.run(DiskOp::WriteSync, file.path(), async move {
            f.write_all_and_sync(writes).await
        })
        .await
    }

    pub async fn truncate(&self, file: &Arc<dyn DiskFile>, len: u64) -> Result<(), StorageError> {
        let f = file.clone();
        self.run(DiskOp::Truncate, file.path(), async move {
            f.truncate(len).await
        })
        .await
    }

    pub async fn len(&self, file: &Arc<dyn DiskFile>) -> Result<u64, StorageError> {
        let f = file.clone();
        self.run(DiskOp::Len, file.path(), async move { f.len().await })
            .await
    }
}
