//! The portable disk engine: `std::fs` on a small bounded pool of threads.
//!
//! Used when io_uring cannot be set up (containers often forbid it) or by configuration. The job
//! queue is bounded; a stalled operation occupies one thread and the others keep serving.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::{DirLock, Disk, DiskError, DiskFile, DiskOp, DiskResult, OpenMode, LOCK_FILE};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Jobs waiting for a thread, per thread; past this, submitters wait (backpressure).
const QUEUE_PER_THREAD: usize = 64;

/// A bounded pool of OS threads that run blocking file operations.
#[derive(Clone)]
pub struct BlockingPool {
    jobs: async_channel::Sender<Job>,
}

impl BlockingPool {
    pub fn new(threads: usize, name: &str) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = async_channel::bounded::<Job>(threads * QUEUE_PER_THREAD);
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv_blocking() {
                        job();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a disk thread");
            }
        }
        BlockingPool { jobs: tx }
    }

    /// Run `f` on a pool thread and wait for its result.
    pub async fn run<T, F>(&self, op: DiskOp, path: &Path, f: F) -> DiskResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> std::io::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let gone = || {
            DiskError::new(
                op,
                path,
                std::io::Error::other("the disk thread pool has shut down"),
            )
        };
        self.jobs.send(job).await.map_err(|_| gone())?;
        rx.await
            .map_err(|_| gone())?
            .map_err(|e| DiskError::new(op, path, e))
    }
}

/// `std::fs` on a [`BlockingPool`].
#[derive(Clone)]
pub struct BlockingDisk {
    pool: BlockingPool,
}

impl BlockingDisk {
    pub fn new(threads: usize) -> Self {
        BlockingDisk {
            pool: BlockingPool::new(threads, "disk"),
        }
    }

    pub fn with_pool(pool: BlockingPool) -> Self {
        BlockingDisk { pool }
    }
}

pub(crate) fn open_std(path: &Path, mode: OpenMode) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(mode != OpenMode::ReadOnly);
    match mode {
        OpenMode::Existing | OpenMode::ReadOnly => {}
        OpenMode::Create => {
            opts.create(true);
        }
        OpenMode::Truncate => {
            opts.create(true).truncate(true);
        }
    }
    opts.open(path)
}

pub(crate) fn list_std(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Write every `(data, offset)`: each run of pieces that follow one another in the file (a
/// batch's patched header, then the rest of it as it came off the wire, then the next batch…)
/// with `pwritev`, short writes resumed, at most [`WRITE_CALL_BYTES_MAX`] per call.
///
/// Why the cap: the page cache takes a write of 2 MiB or more in large folios, and on this
/// project's VMs (kernel 6.18, memory the host takes back when the guest frees it) filling
/// those cost 6–13× the CPU per byte of writes of 1 MiB or less (300 MB written after the
/// cache was dropped: 0.33–0.73 s against 0.053 s) — most of the broker's CPU when a commit
/// round wrote 20 MB in one call.
pub(crate) fn write_all_vectored(f: &File, writes: &[(Bytes, u64)]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    /// IOV_MAX on Linux.
    const IOVECS_MAX: usize = 1024;
    let mut i = 0;
    while i < writes.len() {
        // The run starting at piece i: contiguous in the file.
        let mut end = writes[i].1;
        let mut j = i;
        while j < writes.len() && writes[j].1 == end {
            end += writes[j].0.len() as u64;
            j += 1;
        }
        let run = &writes[i..j];
        // Where the next call starts: a piece of the run and how much of it is written.
        let (mut piece, mut skip) = (0usize, 0usize);
        let mut at = run[0].1;
        while piece < run.len() {
            let mut iov: Vec<libc::iovec> = Vec::new();
            let mut bytes = 0usize;
            let mut k = piece;
            let mut from = skip;
            while k < run.len() && iov.len() < IOVECS_MAX && bytes < WRITE_CALL_BYTES_MAX {
                let data = &run[k].0[from..];
                let take = data.len().min(WRITE_CALL_BYTES_MAX - bytes);
                iov.push(libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: take,
                });
                bytes += take;
                k += 1;
                from = 0;
            }
            if bytes == 0 {
                // Only empty pieces are left.
                break;
            }
            // SAFETY: every iovec points into a live slice of `writes` of at least its stated
            // length, which the kernel only reads; `f` is an open file for the whole call.
            let n = unsafe {
                libc::pwritev(
                    f.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len() as libc::c_int,
                    at as libc::off_t,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            // Move past what was written: whole pieces, then a part of one.
            at += n as u64;
            let mut left = n as usize;
            while piece < run.len() && left >= run[piece].0.len() - skip {
                left -= run[piece].0.len() - skip;
                piece += 1;
                skip = 0;
            }
            skip += left;
        }
        i = j;
    }
    Ok(())
}

/// The most one write call takes (see [`write_all_vectored`]).
pub const WRITE_CALL_BYTES_MAX: usize = 1 << 20;

pub(crate) fn sync_dir_std(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Take `dir/.lock` with `flock` (per open file, so a second claim from this very process is
/// refused too), and write the holder — with this process id — into it for whoever is refused.
pub(crate) fn lock_dir_std(dir: &Path, holder: &str) -> std::io::Result<File> {
    use std::io::Read;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    // A second broker on the directory must fail at once, naming the holder, not wait for it.
    #[expect(
        clippy::disallowed_methods,
        reason = "the data directory's lock: waiting for another broker to exit is never right"
    )]
    let locked = file.try_lock();
    match locked {
        Ok(()) => {
            let text = format!("{holder}, pid {}\n", std::process::id());
            file.set_len(0)?;
            file.write_all_at(text.as_bytes(), 0)?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            // What the holder wrote; it may not have written it yet.
            let _ = file.read_to_string(&mut text);
            let text = text.trim();
            Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                if text.is_empty() {
                    "held by another process".to_string()
                } else {
                    format!("held by {text}")
                },
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

pub(crate) fn read_at_std(file: &File, len: usize, offset: u64) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

#[async_trait]
impl Disk for BlockingDisk {
    async fn create_dir_all(&self, path: &Path) -> DiskResult<()> {
        let p = path.to_path_buf();
        self.pool
            .run(DiskOp::CreateDir, path, move || std::fs::create_dir_all(p))
            .await
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> DiskResult<Arc<dyn DiskFile>> {
        let p = path.to_path_buf();
        let file = self
            .pool
            .run(DiskOp::Open, path, move || open_std(&p, mode))
            .await?;
        Ok(Arc::new(BlockingFile {
            file: Arc::new(file),
            path: path.to_path_buf(),
            pool: self.pool.clone(),
        }))
    }

    async fn list(&self, dir: &Path) -> DiskResult<Vec<String>> {
        let p = dir.to_path_buf();
        self.pool.run(DiskOp::List, dir, move || list_std(&p)).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> DiskResult<()> {
        let (f, t) = (from.to_path_buf(), to.to_path_buf());
        self.pool
            .run(DiskOp::Rename, from, move || std::fs::rename(f, t))
            .await
    }

    async fn remove_file(&self, path: &Path) -> DiskResult<()> {
        let p = path.to_path_buf();
        self.pool
            .run(DiskOp::Remove, path, move || std::fs::remove_file(p))
            .await
    }

    async fn remove_dir_all(&self, path: &Path) -> DiskResult<()> {
        let p = path.to_path_buf();
        self.pool
            .run(DiskOp::Remove, path, move || std::fs::remove_dir_all(p))
            .await
    }

    async fn sync_dir(&self, path: &Path) -> DiskResult<()> {
        let p = path.to_path_buf();
        self.pool
            .run(DiskOp::SyncDir, path, move || sync_dir_std(&p))
            .await
    }

    async fn exists(&self, path: &Path) -> DiskResult<bool> {
        let p = path.to_path_buf();
        self.pool
            .run(DiskOp::Open, path, move || p.try_exists())
            .await
    }

    async fn lock_dir(&self, dir: &Path, holder: &str) -> DiskResult<DirLock> {
        let (d, h) = (dir.to_path_buf(), holder.to_string());
        let file = self
            .pool
            .run(DiskOp::Lock, &dir.join(LOCK_FILE), move || {
                lock_dir_std(&d, &h)
            })
            .await?;
        Ok(DirLock::new(file))
    }

    fn engine(&self) -> &'static str {
        "blocking"
    }
}

struct BlockingFile {
    file: Arc<File>,
    path: PathBuf,
    pool: BlockingPool,
}

#[async_trait]
impl DiskFile for BlockingFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn write_at(&self, data: Bytes, offset: u64) -> DiskResult<()> {
        let f = self.file.clone();
        self.pool
            .run(DiskOp::WriteAt, &self.path, move || {
                write_all_vectored(&f, &[(data, offset)])
            })
            .await
    }

    async fn read_at(&self, len: usize, offset: u64) -> DiskResult<Bytes> {
        let f = self.file.clone();
        self.pool
            .run(DiskOp::ReadAt, &self.path, move || {
                read_at_std(&f, len, offset)
            })
            .await
    }

    async fn sync_data(&self) -> DiskResult<()> {
        let f = self.file.clone();
        self.pool
            .run(DiskOp::SyncData, &self.path, move || f.sync_data())
            .await
    }

    async fn write_all_and_sync(&self, writes: Vec<(Bytes, u64)>) -> DiskResult<()> {
        let f = self.file.clone();
        // One job: the pool thread goes straight from the writes to the fdatasync.
        self.pool
            .run(DiskOp::WriteSync, &self.path, move || {
                write_all_vectored(&f, &writes)?;
                f.sync_data()
            })
            .await
    }

    async fn truncate(&self, len: u64) -> DiskResult<()> {
        let f = self.file.clone();
        self.pool
            .run(DiskOp::Truncate, &self.path, move || f.set_len(len))
            .await
    }

    async fn len(&self) -> DiskResult<u64> {
        let f = self.file.clone();
        self.pool
            .run(DiskOp::Len, &self.path, move || Ok(f.metadata()?.len()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::{write_all_vectored, WRITE_CALL_BYTES_MAX};
    use bytes::Bytes;

    /// Runs of adjacent pieces (more than one `pwritev` can take), a gap between runs, empty
    /// pieces and lone pieces all land where they were meant to.
    #[test]
    fn vectored_writes_land_at_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let mut expected = vec![0u8; 0];
        let mut writes = Vec::new();
        let mut at = 0u64;
        // 3,000 adjacent pieces of 1..=7 bytes (some empty), then a gap of 100 bytes, then one.
        for i in 0..3000u32 {
            let len = (i % 8) as usize;
            let piece: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8 | 1).collect();
            expected.extend_from_slice(&piece);
            writes.push((Bytes::from(piece), at));
            at += len as u64;
        }
        // A piece larger than one call takes, then a gap and a lone piece.
        let big: Vec<u8> = (0..3 * WRITE_CALL_BYTES_MAX + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        expected.extend_from_slice(&big);
        writes.push((Bytes::from(big), at));
        at += (3 * WRITE_CALL_BYTES_MAX + 5) as u64;
        expected.extend_from_slice(&[0; 100]);
        expected.extend_from_slice(b"tail");
        writes.push((Bytes::from_static(b"tail"), at + 100));
        write_all_vectored(&file, &writes).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), expected);
    }
}
