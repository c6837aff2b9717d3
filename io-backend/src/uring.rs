//! The io_uring disk engine: tokio-uring on one dedicated ring thread.
//!
//! Data operations (write, read, sync) are sent to the ring over an async channel — the ring
//! never blocks in a synchronous `recv()` (that deadlock is failure mode 3) — and each command is
//! spawned as its own task on the ring, so many writes and syncs are in flight at once.
//! A sync waits until every write to the same file that was issued before it has completed,
//! because an fdatasync covers only completed writes. Directory operations, truncate and length
//! are rare and go to a small [`BlockingPool`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::blocking::{open_std, BlockingDisk, BlockingPool};
use crate::{Disk, DiskError, DiskFile, DiskOp, DiskResult, OpenMode};

/// Commands queued for the ring before submitters wait.
const RING_QUEUE: usize = 4096;
const RING_ENTRIES: u32 = 256;

enum Cmd {
    Register {
        id: u64,
        file: std::fs::File,
    },
    Write {
        id: u64,
        data: Bytes,
        offset: u64,
        reply: oneshot::Sender<std::io::Result<()>>,
    },
    Read {
        id: u64,
        len: usize,
        offset: u64,
        reply: oneshot::Sender<std::io::Result<Bytes>>,
    },
    Sync {
        id: u64,
        reply: oneshot::Sender<std::io::Result<()>>,
    },
    WriteSync {
        id: u64,
        writes: Vec<(Bytes, u64)>,
        reply: oneshot::Sender<std::io::Result<()>>,
    },
    Close {
        id: u64,
    },
}

/// One file as the ring sees it. Writes hold the barrier shared; a sync takes it exclusively
/// (and releases it at once) so that it starts only after the writes issued before it finished.
struct RingFile {
    file: tokio_uring::fs::File,
    barrier: tokio::sync::RwLock<()>,
}

/// The io_uring engine. Cloning shares the ring.
#[derive(Clone)]
pub struct UringDisk {
    ring: mpsc::Sender<Cmd>,
    /// Directory operations go to the blocking engine; its pool also serves truncate and len.
    meta: BlockingDisk,
    pool: BlockingPool,
    next_id: Arc<AtomicU64>,
}

impl UringDisk {
    /// Start the ring thread. Fails (so that `auto` can fall back) when io_uring cannot be set
    /// up, e.g. when a container's seccomp profile forbids it.
    pub fn start(meta_threads: usize) -> std::io::Result<UringDisk> {
        let (tx, rx) = mpsc::channel(RING_QUEUE);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
        std::thread::Builder::new()
            .name("uring".into())
            .spawn(move || {
                let mut builder = tokio_uring::builder();
                builder.entries(RING_ENTRIES);
                let rt = match tokio_uring::Runtime::new(&builder) {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                rt.block_on(ring_loop(rx));
            })?;
        // Start-up only: waiting here for the ring thread to say whether io_uring works.
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the io_uring thread exited during set-up"))??;
        let pool = BlockingPool::new(meta_threads, "disk-meta");
        Ok(UringDisk {
            ring: tx,
            meta: BlockingDisk::with_pool(pool.clone()),
            pool,
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }
}

async fn ring_loop(mut rx: mpsc::Receiver<Cmd>) {
    let files: Rc<RefCell<HashMap<u64, Rc<RingFile>>>> = Rc::default();
    while let Some(cmd) = rx.recv().await {
        let lookup = |id: u64| files.borrow().get(&id).cloned();
        match cmd {
            Cmd::Register { id, file } => {
                let file = tokio_uring::fs::File::from_std(file);
                files.borrow_mut().insert(
                    id,
                    Rc::new(RingFile {
                        file,
                        barrier: tokio::sync::RwLock::new(()),
                    }),
                );
            }
            Cmd::Close { id } => {
                // In-flight operations hold their own Rc; the fd closes when the last one ends.
                files.borrow_mut().remove(&id);
            }
            Cmd::Write {
                id,
                data,
                offset,
                reply,
            } => {
                let Some(f) = lookup(id) else {
                    let _ = reply.send(Err(closed()));
                    continue;
                };
                tokio_uring::spawn(async move {
                    let _shared = f.barrier.read().await;
                    let (res, _) = f.file.write_all_at(data, offset).await;
                    let _ = reply.send(res);
                });
            }
            Cmd::Read {
                id,
                len,
                offset,
                reply,
            } => {
                let Some(f) = lookup(id) else {
                    let _ = reply.send(Err(closed()));
                    continue;
                };
                tokio_uring::spawn(async move {
                    let _ = reply.send(read_full(&f.file, len, offset).await);
                });
            }
            Cmd::WriteSync { id, writes, reply } => {
                let Some(f) = lookup(id) else {
                    let _ = reply.send(Err(closed()));
                    continue;
                };
                // Writes and sync in one ring task: no round trip to the caller in between.
                tokio_uring::spawn(async move {
                    let written = {
                        let _shared = f.barrier.read().await;
                        let mut result = Ok(());
                        for (data, offset) in writes {
                            let (res, _) = f.file.write_all_at(data, offset).await;
                            if res.is_err() {
                                result = res;
                                break;
                            }
                        }
                        result
                    };
                    let result = match written {
                        Ok(()) => {
                            drop(f.barrier.write().await);
                            f.file.sync_data().await
                        }
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(result);
                });
            }
            Cmd::Sync { id, reply } => {
                let Some(f) = lookup(id) else {
                    let _ = reply.send(Err(closed()));
                    continue;
                };
                tokio_uring::spawn(async move {
                    // Wait for earlier writes, then release at once: no lock across the fsync.
                    drop(f.barrier.write().await);
                    let _ = reply.send(f.file.sync_data().await);
                });
            }
        }
    }
}

async fn read_full(
    file: &tokio_uring::fs::File,
    len: usize,
    offset: u64,
) -> std::io::Result<Bytes> {
    let mut out: Vec<u8> = Vec::with_capacity(len);
    while out.len() < len {
        let chunk = Vec::with_capacity(len - out.len());
        let (res, chunk) = file.read_at(chunk, offset + out.len() as u64).await;
        match res {
            Ok(0) => break,
            Ok(_) => out.extend_from_slice(&chunk),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Bytes::from(out))
}

fn closed() -> std::io::Error {
    std::io::Error::other("file is closed")
}

fn ring_gone() -> std::io::Error {
    std::io::Error::other("the io_uring thread has stopped")
}

#[async_trait]
impl Disk for UringDisk {
    async fn create_dir_all(&self, path: &Path) -> DiskResult<()> {
        self.meta.create_dir_all(path).await
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> DiskResult<Arc<dyn DiskFile>> {
        let p = path.to_path_buf();
        let (ring_fd, meta_fd) = self
            .pool
            .run(DiskOp::Open, path, move || {
                let f = open_std(&p, mode)?;
                let dup = f.try_clone()?;
                Ok((f, dup))
            })
            .await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.ring
            .send(Cmd::Register { id, file: ring_fd })
            .await
            .map_err(|_| DiskError::new(DiskOp::Open, path, ring_gone()))?;
        Ok(Arc::new(UringFile {
            id,
            path: path.to_path_buf(),
            meta: Arc::new(meta_fd),
            ring: self.ring.clone(),
            pool: self.pool.clone(),
        }))
    }

    async fn list(&self, dir: &Path) -> DiskResult<Vec<String>> {
        self.meta.list(dir).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> DiskResult<()> {
        self.meta.rename(from, to).await
    }

    async fn remove_file(&self, path: &Path) -> DiskResult<()> {
        self.meta.remove_file(path).await
    }

    async fn remove_dir_all(&self, path: &Path) -> DiskResult<()> {
        self.meta.remove_dir_all(path).await
    }

    async fn sync_dir(&self, path: &Path) -> DiskResult<()> {
        self.meta.sync_dir(path).await
    }

    async fn exists(&self, path: &Path) -> DiskResult<bool> {
        self.meta.exists(path).await
    }

    async fn lock_dir(&self, dir: &Path, holder: &str) -> DiskResult<crate::DirLock> {
        self.meta.lock_dir(dir, holder).await
    }

    fn engine(&self) -> &'static str {
        "uring"
    }
}

struct UringFile {
    id: u64,
    path: PathBuf,
    /// A second descriptor of the same file for the rare operations the ring does not do.
    meta: Arc<std::fs::File>,
    ring: mpsc::Sender<Cmd>,
    pool: BlockingPool,
}

impl UringFile {
    async fn ask<T>(
        &self,
        op: DiskOp,
        make: impl FnOnce(oneshot::Sender<std::io::Result<T>>) -> Cmd,
    ) -> DiskResult<T> {
        let (tx, rx) = oneshot::channel();
        self.ring
            .send(make(tx))
            .await
            .map_err(|_| DiskError::new(op, &self.path, ring_gone()))?;
        rx.await
            .map_err(|_| DiskError::new(op, &self.path, ring_gone()))?
            .map_err(|e| DiskError::new(op, &self.path, e))
    }
}

impl Drop for UringFile {
    fn drop(&mut self) {
        // Best effort: if the queue is full the ring keeps the entry until shutdown.
        #[expect(
            clippy::disallowed_methods,
            reason = "Drop cannot await; a close that does not fit is done at shutdown"
        )]
        let _ = self.ring.try_send(Cmd::Close { id: self.id });
    }
}

#[async_trait]
impl DiskFile for UringFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn write_at(&self, data: Bytes, offset: u64) -> DiskResult<()> {
        let id = self.id;
        self.ask(DiskOp::WriteAt, |reply| Cmd::Write {
            id,
            data,
            offset,
            reply,
        })
        .await
    }

    async fn read_at(&self, len: usize, offset: u64) -> DiskResult<Bytes> {
        let id = self.id;
        self.ask(DiskOp::ReadAt, |reply| Cmd::Read {
            id,
            len,
            offset,
            reply,
        })
        .await
    }

    async fn sync_data(&self) -> DiskResult<()> {
        let id = self.id;
        self.ask(DiskOp::SyncData, |reply| Cmd::Sync { id, reply })
            .await
    }

    async fn write_all_and_sync(&self, writes: Vec<(Bytes, u64)>) -> DiskResult<()> {
        // One write per run of adjacent pieces (a batch's patched header and its body).
        let writes = crate::disk::coalesce_adjacent(writes);
        let id = self.id;
        self.ask(DiskOp::WriteSync, |reply| Cmd::WriteSync {
            id,
            writes,
            reply,
        })
        .await
    }

    async fn truncate(&self, len: u64) -> DiskResult<()> {
        let f = self.meta.clone();
        self.pool
            .run(DiskOp::Truncate, &self.path, move || f.set_len(len))
            .await
    }

    async fn len(&self) -> DiskResult<u64> {
        let f = self.meta.clone();
        self.pool
            .run(DiskOp::Len, &self.path, move || Ok(f.metadata()?.len()))
            .await
    }
}
