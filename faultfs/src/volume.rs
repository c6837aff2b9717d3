//! The state one mount shares between the kernel's requests (served on several threads), the
//! thread that answers stalled syncs, and the test's [`Mounted`](crate::Mounted) handle.
//!
//! Invariant: `dirty_total` is the sum of every inode's `dirty_bytes`, and each of those the
//! byte count of its extents — both change only under that inode's data lock. Locks are taken
//! one at a time (table, handles, one inode's data, faults, stall queue, in-flight syncs),
//! never one inside another, so no two requests can wait on each other; and none is held while
//! the kernel is told to drop its cache (which may need a request answered first).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use fuser::{Errno, FileType};

use crate::faults::Faults;
use crate::inodes::{Inode, InodeTable};
use crate::stall::Stalls;

/// Lock a mutex; a panic on another thread while it held the lock does not make the state
/// unusable for this one (every update here is a single step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The errno of a backing filesystem's error (EIO when it carries none).
pub(crate) fn errno(e: &std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

pub(crate) fn nix_errno(e: nix::errno::Errno) -> Errno {
    Errno::from_i32(e as i32)
}

/// One entry of a directory listing, as taken when the directory was opened.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) ino: u64,
    pub(crate) kind: FileType,
    pub(crate) name: OsString,
}

/// An open file or directory.
#[derive(Debug, Clone)]
pub(crate) enum Handle {
    File {
        ino: u64,
        file: Arc<File>,
    },
    Dir {
        ino: u64,
        dir: Arc<File>,
        entries: Arc<Vec<Entry>>,
    },
}

/// Counters behind [`Status`](crate::Status).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) syncs: AtomicU64,
    pub(crate) syncs_failed: AtomicU64,
    pub(crate) forced_writebacks: AtomicU64,
    /// How long each sync served without a stall took on the backing disk.
    pub(crate) sync_latency: crate::latency::Histogram,
}

/// A sync between its request and its reply.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    pub(crate) path: PathBuf,
    pub(crate) started: Instant,
}

#[derive(Debug)]
pub(crate) struct Volume {
    /// The backing directory, absolute.
    pub(crate) backing: PathBuf,
    pub(crate) dirty_bytes_max: u64,
    pub(crate) inodes: Mutex<InodeTable>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    pub(crate) dirty_total: AtomicU64,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) stalls: Stalls,
    pub(crate) counters: Counters,
    pub(crate) in_flight: Mutex<BTreeMap<u64, InFlight>>,
    next_sync: AtomicU64,
    /// Tells the kernel to forget its cached pages and attributes of an inode (set once the
    /// session is up).
    notifier: OnceLock<KernelCache>,
    /// Run once, on the filesystem's thread, when the next write arrives and before it is
    /// served (a test stops the writing process then, so that the write spans the stop).
    pub(crate) before_write: Mutex<Option<BeforeWrite>>,
    /// Draws a slow disk's latencies (seeded by [`crate::Mounted::slow`]).
    pub(crate) latency_draws: Mutex<crate::faults::SplitMix64>,
}

/// What to do when the next write arrives.
pub(crate) struct BeforeWrite(pub(crate) Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for BeforeWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeWrite")
    }
}

/// The kernel's cache of this mount, as far as we can make it forget.
struct KernelCache(fuser::Notifier);

impl std::fmt::Debug for KernelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelCache")
    }
}

impl Volume {
    /// Wait as long as a slow disk takes for one operation (not at all unless one is set).
    /// The wait holds the request's thread, as a busy disk holds its queue.
    pub(crate) fn delay(&self) {
        let (latency, spike) = {
            let f = lock(&self.faults);
            (f.latency, f.spike)
        };
        let wait = {
            let mut rng = lock(&self.latency_draws);
            match (spike, latency) {
                (Some((per_million, long)), _) if rng.below(1_000_000) < u64::from(per_million) => {
                    Some(long)
                }
                (_, Some((low, high))) => {
                    let span = (high.saturating_sub(low)).as_micros() as u64;
                    Some(low + std::time::Duration::from_micros(rng.below(span + 1)))
                }
                _ => None,
            }
        };
        if let Some(wait) = wait {
            std::thread::sleep(wait);
        }
    }

    pub(crate) fn new(backing: PathBuf, dirty_bytes_max: u64) -> Self {
        Volume {
            backing,
            dirty_bytes_max,
            inodes: Mutex::new(InodeTable::new()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            dirty_total: AtomicU64::new(0),
            faults: Mutex::new(Faults::default()),
            stalls: Stalls::default(),
            counters: Counters::default(),
            in_flight: Mutex::new(BTreeMap::new()),
            next_sync: AtomicU64::new(1),
            notifier: OnceLock::new(),
            before_write: Mutex::new(None),
            latency_draws: Mutex::new(crate::faults::SplitMix64::new(0)),
        }
    }

    pub(crate) fn set_notifier(&self, n: fuser::Notifier) {
        // Set once, right after the mount; a second call has nothing to add.
        let _ = self.notifier.set(KernelCache(n));
    }

    /// Make the kernel drop what it caches of `ino` — pages and attributes — after data it may
    /// hold was dropped here (a crash, a failed sync). Not called with any lock held: the
    /// kernel may need a request answered (a read holding a page) before it can comply.
    pub(crate) fn invalidate(&self, ino: u64) {
        let Some(KernelCache(n)) = self.notifier.get() else {
            return;
        };
        match n.inval_inode(fuser::INodeNo(ino), 0, 0) {
            Ok(()) => {}
            // Not in the kernel's cache: nothing to forget.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => tracing::warn!(ino, error = %e, "invalidating the kernel's cache failed"),
        }
    }

    /// The backing path of a relative one.
    pub(crate) fn real(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.backing.clone()
        } else {
            self.backing.join(rel)
        }
    }

    /// The relative path of `ino` (ENOENT once it has none: unlinked, or unknown).
    pub(crate) fn path_of(&self, ino: u64) -> Result<PathBuf, Errno> {
        lock(&self.inodes).path(ino).ok_or(Errno::ENOENT)
    }

    /// The relative path of `name` in directory `parent`.
    pub(crate) fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        let name = Path::new(name);
        // One plain component only: the kernel never sends otherwise, and a "../x" here would
        // leave the backing directory.
        let mut parts = name.components();
        match (parts.next(), parts.next()) {
            (Some(std::path::Component::Normal(_)), None) => {}
            _ => return Err(Errno::EINVAL),
        }
        Ok(self.path_of(parent)?.join(name))
    }

    pub(crate) fn inode(&self, ino: u64) -> Result<Arc<Inode>, Errno> {
        lock(&self.inodes).inode(ino).ok_or(Errno::ENOENT)
    }

    pub(crate) fn faults(&self) -> Faults {
        *lock(&self.faults)
    }

    pub(crate) fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let ino = match &h {
            Handle::File { ino, .. } | Handle::Dir { ino, .. } => *ino,
        };
        lock(&self.handles).insert(fh, h);
        lock(&self.inodes).opened(ino);
        fh
    }

    pub(crate) fn handle(&self, fh: u64) -> Result<Handle, Errno> {
        lock(&self.handles).get(&fh).cloned().ok_or(Errno::EBADF)
    }

    /// The backing file of an open file handle.
    pub(crate) fn file(&self, fh: u64) -> Result<Arc<File>, Errno> {
        match self.handle(fh)? {
            Handle::File { file, .. } => Ok(file),
            Handle::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    /// Some open file of `ino` (to stat a file that has lost its name but is still open).
    pub(crate) fn any_file_of(&self, ino: u64) -> Option<Arc<File>> {
        lock(&self.handles).values().find_map(|h| match h {
            Handle::File { ino: i, file } if *i == ino => Some(file.clone()),
            _ => None,
        })
    }

    pub(crate) fn remove_handle(&self, fh: u64) {
        let Some(h) = lock(&self.handles).remove(&fh) else {
            return;
        };
        let ino = match h {
            Handle::File { ino, .. } | Handle::Dir { ino, .. } => ino,
        };
        let gone = lock(&self.inodes).closed(ino);
        if let Some(inode) = gone {
            self.discard(&inode);
        }
    }

    /// Drop the dirty data of an inode nothing can reach any more.
    pub(crate) fn discard(&self, inode: &Inode) {
        let mut data = lock(&inode.data);
        let dropped = data.extents.clear();
        data.writer = None;
        inode.dirty_bytes.store(0, Ordering::Relaxed);
        self.dirty_total.fetch_sub(dropped, Ordering::Relaxed);
    }

    /// Register a sync as under way; returns its id for [`sync_done`](Self::sync_done).
    pub(crate) fn sync_started(&self, path: PathBuf) -> u64 {
        let id = self.next_sync.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        lock(&self.in_flight).insert(id, InFlight { path, started });
        id
    }

    pub(crate) fn sync_done(&self, id: u64) {
        lock(&self.in_flight).remove(&id);
    }
}
