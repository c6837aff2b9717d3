//! The simulated disk: per-node files that survive a crash of that node, with what is durable
//! kept apart from what was written since the last sync.
//!
//! Semantics (what the broker must be robust to):
//! - `write_at`/`truncate` change what reads see at once, and are remembered as *pending* until
//!   the file's next `sync_data`. A crash drops pending changes, or (`Crash::Torn`) keeps a
//!   prefix of them, the last one possibly cut in the middle.
//! - Names (creation, rename, removal of files and directories) are durable only after
//!   `sync_dir` of the parent directory; a crash brings back the last synced names, and only
//!   those whose every ancestor's entry is durable too (a file synced into a new directory whose
//!   parent was never synced is lost with the directory).
//! - A torn crash keeps, for each file independently, a prefix of its unsynced changes: across
//!   files, a later write may survive where an earlier one is lost.
//! - Faults: a sync that stalls for a given simulated time; a sync that fails with EIO and drops
//!   the dirty data ("fsyncgate"); latency on every operation; a capacity after which writes fail
//!   with ENOSPC; bit flips on read.
//!
//! Time is madsim's (tokio's under `--cfg madsim`), so stalls cost no wall time.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use io_backend::{
    DirLock, Disk, DiskError, DiskFile, DiskOp, DiskResult, EnvRng, OpenMode, LOCK_FILE,
};

mod content;
use content::{Inode, Pending};

type InodeRef = Arc<Mutex<Inode>>;

/// The entries directly inside `dir`, from paths in order starting at `dir`: paths order by
/// component, so everything under `dir` follows it in one run.
fn entries_of<'a>(sorted: impl Iterator<Item = &'a PathBuf>, dir: &Path) -> Vec<PathBuf> {
    let mut names = entries_under(sorted, dir);
    names.retain(|p| p.parent() == Some(dir));
    names
}

/// `dir` and everything below it, from a sorted walk that starts at `dir`.
fn entries_under<'a>(sorted: impl Iterator<Item = &'a PathBuf>, dir: &Path) -> Vec<PathBuf> {
    sorted.take_while(|p| p.starts_with(dir)).cloned().collect()
}

/// What a crash does to data written since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Every pending change is lost.
    DropUnsynced,
    /// A random prefix of the pending changes survives, the last one possibly torn.
    Torn,
    /// The disk is lost (replaced by an empty one): nothing survives, synced or not.
    Lost,
}

/// Faults in force; change them at any time (from a scenario's schedule or at random).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Syncs started before this simulated instant wait until it (a stalled fsync).
    pub sync_stall_until: Option<tokio::time::Instant>,
    /// The next this-many syncs fail with EIO and drop the file's dirty data.
    pub sync_eio_next: u32,
    /// Each operation takes a time drawn uniformly from this range.
    pub latency: Option<(Duration, Duration)>,
    /// A long tail on top of `latency`: this share of operations (per million) takes this long
    /// instead (a disk that mostly answers in milliseconds and now and then in seconds).
    pub latency_spike: Option<(u32, Duration)>,
    /// Total bytes the disk holds; a write that would grow past it fails with ENOSPC.
    pub capacity_bytes: Option<u64>,
    /// Chance (per million) that a read returns one flipped bit.
    pub read_bitflip_per_million: u32,
    /// Chance (per million) that a read fails with EIO (a bad sector, a flaky controller).
    pub read_eio_per_million: u32,
    /// How long a read that fails with EIO takes first (a drive retrying a bad sector).
    pub read_eio_stall: Duration,
    /// Bytes per second the disk moves, shared by the reads and syncs in flight: each waits,
    /// besides its latency, for every byte in flight before it and its own (a disk whose reads
    /// slow down under load, and slow its syncs down with them). Writes go to the page cache
    /// and cost nothing here; their bytes cost at the sync.
    pub bandwidth_bytes_per_s: Option<u64>,
    /// Operations the device serves at once; the others wait in line ([`queue`]). `None`:
    /// no queue, every operation is served at once.
    pub queue_depth: Option<usize>,
}

#[derive(Default)]
struct State {
    /// The names the running node sees.
    files: BTreeMap<PathBuf, InodeRef>,
    dirs: BTreeSet<PathBuf>,
    /// The names a crash comes back to.
    durable_files: BTreeMap<PathBuf, InodeRef>,
    durable_dirs: BTreeSet<PathBuf>,
    /// Names (of files or directories) created, renamed or removed since their directory was
    /// last synced: all a directory sync has to look at, however many entries the directory has.
    unsynced_names: BTreeSet<PathBuf>,
    faults: Faults,
    /// Counters a test or a liveness report can read.
    syncs: u64,
    /// When each successful sync of a segment (`.log`) file ended: commit batching is measured
    /// against them.
    segment_syncs: Vec<tokio::time::Instant>,
    /// Syncs that have started and not finished, with when they started.
    syncs_in_flight: BTreeMap<u64, (PathBuf, tokio::time::Instant)>,
    next_sync_id: u64,
    /// Directory locks held now: directory → (lock id, what the holder said of itself). A lock
    /// belongs to the running process: a crash releases it, as the kernel releases a flock.
    locks: BTreeMap<PathBuf, (u64, String)>,
    next_lock_id: u64,
    /// Bytes of reads and syncs in flight (the bandwidth model's queue).
    bytes_in_flight: u64,
    /// Bytes of reads in flight now, and the most ever: memory a broker holds for reads it
    /// made (a read's buffer lives from its call until it is dropped).
    read_bytes_in_flight: u64,
    read_bytes_in_flight_peak: u64,
    /// Past this many bytes of reads in flight, `read_limit_passed` resolves.
    read_limit: Option<u64>,
}

/// Bytes an operation has in flight, given back when it ends or its caller drops it (a read
/// past its deadline is abandoned mid-way).
struct InFlight {
    state: Arc<Mutex<State>>,
    bytes: u64,
    read: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        st.bytes_in_flight -= self.bytes;
        if self.read {
            st.read_bytes_in_flight -= self.bytes;
        }
    }
}

/// One node's disk. Cloning shares it; keep a clone outside the node so it survives a crash.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    rng: EnvRng,
    /// Set once the reads in flight passed the read limit.
    over_read_limit: Arc<tokio::sync::watch::Sender<bool>>,
    /// The device queue (apart from `state`: a place is given back without the disk's lock).
    queue: Arc<Mutex<queue::DeviceQueue>>,
    /// Told each time a write to a file begins, its latency not yet spent (a pause
    /// `mid_write` waits for it).
    pub(crate) write_began: Arc<tokio::sync::Notify>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn err(op: DiskOp, path: &Path, kind: io::ErrorKind, what: &str) -> DiskError {
    DiskError::new(op, path, io::Error::new(kind, what.to_string()))
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A pending sync, for liveness reports: which file, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncInFlight {
    pub path: PathBuf,
    pub since: tokio::time::Instant,
}

/// A held directory lock; dropping it releases the lock (unless a crash already did and someone
/// else holds it now).
struct SimLock {
    state: std::sync::Weak<Mutex<State>>,
    dir: PathBuf,
    id: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            let mut st = lock(&state);
            if st
                .locks
                .get(&self.dir)
                .is_some_and(|(id, _)| *id == self.id)
            {
                st.locks.remove(&self.dir);
            }
        }
    }
}

impl SimDisk {
    /// An empty disk whose random draws (latency, torn prefixes, bit flips) come from `seed`.
    pub fn new(seed: u64) -> SimDisk {
        let mut state = State::default();
        state.dirs.insert(PathBuf::from("/"));
        state.durable_dirs.insert(PathBuf::from("/"));
        SimDisk {
            state: Arc::new(Mutex::new(state)),
            rng: EnvRng::seeded(seed),
            over_read_limit: Arc::new(tokio::sync::watch::channel(false).0),
            queue: Arc::default(),
            write_began: Arc::default(),
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        queue::set_depth(&self.queue, faults.queue_depth);
        lock(&self.state).faults = faults;
    }

    /// Hold a place of the device queue for `service`, in its turn in the line: another
    /// tenant's I/O (which, when the queue is off, delays nobody but still takes its time).
    pub async fn occupy(&self, service: Duration) {
        let _place = queue::enter(&self.queue).await;
        tokio::time::sleep(service).await;
    }

    /// What the device queue saw so far.
    pub fn queue_stats(&self) -> queue::QueueStats {
        let q = lock(&self.queue);
        queue::QueueStats {
            waited: q.waited,
            wait_max: q.wait_max,
            waiting_peak: q.waiting_peak,
        }
    }

    pub fn faults(&self) -> Faults {
        lock(&self.state).faults.clone()
    }

    /// Bytes the files hold now.
    pub fn used_bytes(&self) -> u64 {
        Self::used(&lock(&self.state))
    }

    /// Whether a file the running node sees has a name ending in `suffix`; with `durable`,
    /// one whose name a crash would come back to.
    pub fn has_file_ending(&self, suffix: &str, durable: bool) -> bool {
        let st = lock(&self.state);
        let files = if durable {
            &st.durable_files
        } else {
            &st.files
        };
        files.keys().any(|p| p.to_string_lossy().ends_with(suffix))
    }

    /// Syncs completed so far.
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// When each successful sync of a segment file ended, in order.
    pub fn segment_syncs(&self) -> Vec<tokio::time::Instant> {
        lock(&self.state).segment_syncs.clone()
    }

    /// Watch the bytes of reads in flight: past `limit`, [`SimDisk::read_limit_passed`]
    /// resolves (a run stops there rather than let a broker's reads take the machine's memory).
    pub fn set_read_limit(&self, limit: u64) {
        lock(&self.state).read_limit = Some(limit);
    }

    /// Resolves once the reads in flight have passed the read limit.
    pub async fn read_limit_passed(&self) {
        let mut over = self.over_read_limit.subscribe();
        let _ = over.wait_for(|passed| *passed).await;
    }

    /// The most bytes of reads that were in flight at once.
    pub fn read_bytes_in_flight_peak(&self) -> u64 {
        lock(&self.state).read_bytes_in_flight_peak
    }

    /// Syncs started and not finished (a stalled fsync shows here).
    pub fn syncs_in_flight(&self) -> Vec<SyncInFlight> {
        lock(&self.state)
            .syncs_in_flight
            .values()
            .map(|(path, since)| SyncInFlight {
                path: path.clone(),
                since: *since,
            })
            .collect()
    }

    /// The node crashed: unsynced data and names are lost (or torn). Handles opened before the
    /// crash must not be used again; the restarted node opens the files anew.
    pub fn crash(&self, how: Crash) {
        let mut st = lock(&self.state);
        if how == Crash::Lost {
            st.durable_files.clear();
            st.durable_dirs.retain(|d| d.parent().is_none());
        }
        let durable_files = st.durable_files.clone();
        let mut seen: std::collections::HashSet<*const Mutex<Inode>> = Default::default();
        for inode in st.files.values().chain(durable_files.values()) {
            if !seen.insert(Arc::as_ptr(inode)) {
                continue;
            }
            let mut f = lock(inode);
            let mut survivor = f.durable.clone();
            if how == Crash::Torn && !f.pending.is_empty() {
                let keep = self.rng.range_u64(0, f.pending.len() as u64 + 1) as usize;
                for change in &f.pending[..keep] {
                    Inode::apply(&mut survivor, change);
                }
                if let Some(Pending::Write { offset, data }) = f.pending.get(keep) {
                    let cut = self.rng.range_u64(0, data.len() as u64 + 1) as usize;
                    Inode::apply(
                        &mut survivor,
                        &Pending::Write {
                            offset: *offset,
                            data: data.slice(..cut),
                        },
                    );
                }
            }
            f.durable = survivor.clone();
            f.current = survivor;
            f.pending.clear();
        }
        // A name survives only if every directory above it does: an entry made durable in a
        // directory whose own entry never was is lost with it.
        let root = PathBuf::from("/");
        let mut dirs = BTreeSet::new();
        for d in &st.durable_dirs {
            // Sorted: a directory's parent was decided before it.
            if *d == root || d.parent().is_some_and(|p| dirs.contains(p)) {
                dirs.insert(d.clone());
            }
        }
        st.files = durable_files
            .into_iter()
            .filter(|(p, _)| p.parent().is_some_and(|d| dirs.contains(d)))
            .collect();
        st.durable_files = st.files.clone();
        st.durable_dirs = dirs.clone();
        st.dirs = dirs;
        st.unsynced_names.clear();
        st.syncs_in_flight.clear();
        st.locks.clear();
    }

    fn used(st: &State) -> u64 {
        let mut seen: std::collections::HashSet<*const Mutex<Inode>> = Default::default();
        let mut total = 0u64;
        for inode in st.files.values() {
            if seen.insert(Arc::as_ptr(inode)) {
                total += lock(inode).current.len() as u64;
            }
        }
        total
    }

    /// Wait the configured latency for one operation.
    async fn delay(&self) {
        let (latency, spike) = {
            let st = lock(&self.state);
            (st.faults.latency, st.faults.latency_spike)
        };
        if let Some((per_million, long)) = spike {
            if self.rng.range_u64(0, 1_000_000) < per_million as u64 {
                tokio::time::sleep(long).await;
                return;
            }
        }
        if let Some((low, high)) = latency {
            let nanos = self
                .rng
                .range_u64(low.as_nanos() as u64, high.as_nanos() as u64 + 1);
            tokio::time::sleep(Duration::from_nanos(nanos)).await;
        }
    }

    /// Put `bytes` in flight and wait for them to be moved, after every byte in flight before
    /// them, at the configured bandwidth (at once without one).
    async fn transfer(&self, bytes: u64, read: bool) -> InFlight {
        let wait = {
            let mut st = lock(&self.state);
            st.bytes_in_flight += bytes;
            if read {
                st.read_bytes_in_flight += bytes;
                st.read_bytes_in_flight_peak =
                    st.read_bytes_in_flight_peak.max(st.read_bytes_in_flight);
                if st.read_limit.is_some_and(|l| st.read_bytes_in_flight > l) {
                    self.over_read_limit.send_replace(true);
                }
            }
            st.faults.bandwidth_bytes_per_s.map(|rate| {
                Duration::from_nanos(
                    (st.bytes_in_flight as u128 * 1_000_000_000 / rate.max(1) as u128) as u64,
                )
            })
        };
        let held = InFlight {
            state: self.state.clone(),
            bytes,
            read,
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        held
    }

    fn check_dir(st: &State, op: DiskOp, path: &Path) -> DiskResult<()> {
        let dir = parent(path);
        if dir.as_os_str().is_empty() || st.dirs.contains(&dir) {
            Ok(())
        } else {
            Err(err(op, path, io::ErrorKind::NotFound, "no such directory"))
        }
    }
}

#[async_trait]
impl Disk for SimDisk {
    async fn create_dir_all(&self, path: &Path) -> DiskResult<()> {
        self.delay().await;
        let mut st = lock(&self.state);
        for dir in path.ancestors() {
            if !dir.as_os_str().is_empty() && st.dirs.insert(dir.to_path_buf()) {
                st.unsynced_names.insert(dir.to_path_buf());
            }
        }
        Ok(())
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> DiskResult<Arc<dyn DiskFile>> {
        self.delay().await;
        let mut st = lock(&self.state);
        Self::check_dir(&st, DiskOp::Open, path)?;
        let inode = match (st.files.get(path).cloned(), mode) {
            (Some(inode), OpenMode::Truncate) => {
                let mut f = lock(&inode);
                f.current.clear();
                f.pending.push(Pending::Truncate(0));
                drop(f);
                inode
            }
            (Some(inode), _) => inode,
            (None, OpenMode::Existing | OpenMode::ReadOnly) => {
                return Err(err(
                    DiskOp::Open,
                    path,
                    io::ErrorKind::NotFound,
                    "no such file",
                ))
            }
            (None, _) => {
                let inode = InodeRef::default();
                st.files.insert(path.to_path_buf(), inode.clone());
                st.unsynced_names.insert(path.to_path_buf());
                inode
            }
        };
        Ok(Arc::new(SimFile {
            path: path.to_path_buf(),
            inode,
            disk: self.clone(),
        }))
    }

    async fn list(&self, dir: &Path) -> DiskResult<Vec<String>> {
        self.delay().await;
        let st = lock(&self.state);
        if !st.dirs.contains(dir) {
            return Err(err(
                DiskOp::List,
                dir,
                io::ErrorKind::NotFound,
                "no such directory",
            ));
        }
        let from = dir.to_path_buf();
        let children = entries_of(st.files.range(from.clone()..).map(|(p, _)| p), dir)
            .into_iter()
            .chain(entries_of(st.dirs.range(from..), dir));
        let mut names: Vec<String> = children
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn rename(&self, from: &Path, to: &Path) -> DiskResult<()> {
        self.delay().await;
        let mut st = lock(&self.state);
        Self::check_dir(&st, DiskOp::Rename, to)?;
        let inode = st.files.remove(from).ok_or_else(|| {
            err(
                DiskOp::Rename,
                from,
                io::ErrorKind::NotFound,
                "no such file",
            )
        })?;
        st.files.insert(to.to_path_buf(), inode);
        st.unsynced_names.insert(from.to_path_buf());
        st.unsynced_names.insert(to.to_path_buf());
        Ok(())
    }

    async fn remove_file(&self, path: &Path) -> DiskResult<()> {
        self.delay().await;
        let mut st = lock(&self.state);
        st.files.remove(path).ok_or_else(|| {
            err(
                DiskOp::Remove,
                path,
                io::ErrorKind::NotFound,
                "no such file",
            )
        })?;
        st.unsynced_names.insert(path.to_path_buf());
        Ok(())
    }

    async fn remove_dir_all(&self, path: &Path) -> DiskResult<()> {
        self.delay().await;
        let mut st = lock(&self.state);
        if !st.dirs.contains(path) {
            return Err(err(
                DiskOp::Remove,
                path,
                io::ErrorKind::NotFound,
                "no such directory",
            ));
        }
        let st = &mut *st;
        let gone = entries_under(st.files.range(path.to_path_buf()..).map(|(p, _)| p), path)
            .into_iter()
            .chain(entries_under(st.dirs.range(path.to_path_buf()..), path));
        for p in gone.collect::<Vec<_>>() {
            st.files.remove(&p);
            st.dirs.remove(&p);
            st.unsynced_names.insert(p);
        }
        Ok(())
    }

    async fn sync_dir(&self, path: &Path) -> DiskResult<()> {
        let place = queue::enter(&self.queue).await;
        self.delay().await;
        drop(place);
        let mut st = lock(&self.state);
        if !st.dirs.contains(path) {
            return Err(err(
                DiskOp::SyncDir,
                path,
                io::ErrorKind::NotFound,
                "no such directory",
            ));
        }
        // The directory's entries as they are now become what a crash comes back to. Its own
        // entry (in its parent) does not: that takes a sync of the parent, as in POSIX.
        let st = &mut *st;
        for p in entries_of(st.unsynced_names.range(path.to_path_buf()..), path) {
            match st.files.get(&p) {
                Some(inode) => st.durable_files.insert(p.clone(), inode.clone()),
                None => st.durable_files.remove(&p),
            };
            if st.dirs.contains(&p) {
                st.durable_dirs.insert(p.clone());
            } else {
                st.durable_dirs.remove(&p);
            }
            st.unsynced_names.remove(&p);
        }
        Ok(())
    }

    async fn exists(&self, path: &Path) -> DiskResult<bool> {
        self.delay().await;
        let st = lock(&self.state);
        Ok(st.files.contains_key(path) || st.dirs.contains(path))
    }

    async fn lock_dir(&self, dir: &Path, holder: &str) -> DiskResult<DirLock> {
        self.delay().await;
        let mut st = lock(&self.state);
        let path = dir.join(LOCK_FILE);
        if !st.dirs.contains(dir) {
            return Err(err(
                DiskOp::Lock,
                &path,
                io::ErrorKind::NotFound,
                "no such directory",
            ));
        }
        if let Some((_, held_by)) = st.locks.get(dir) {
            let why = format!("held by {held_by}");
            return Err(err(DiskOp::Lock, &path, io::ErrorKind::WouldBlock, &why));
        }
        st.next_lock_id += 1;
        let id = st.next_lock_id;
        st.locks.insert(dir.to_path_buf(), (id, holder.to_string()));
        Ok(DirLock::new(SimLock {
            state: Arc::downgrade(&self.state),
            dir: dir.to_path_buf(),
            id,
        }))
    }

    fn engine(&self) -> &'static str {
        "sim"
    }
}

struct SimFile {
    path: PathBuf,
    inode: InodeRef,
    disk: SimDisk,
}

#[async_trait]
impl DiskFile for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    async fn write_at(&self, data: Bytes, offset: u64) -> DiskResult<()> {
        self.disk.write_began.notify_waiters();
        self.disk.delay().await;
        let st = lock(&self.disk.state);
        let mut f = lock(&self.inode);
        let grows = (offset + data.len() as u64).saturating_sub(f.current.len() as u64);
        if let Some(cap) = st.faults.capacity_bytes {
            drop(f);
            let used = SimDisk::used(&st);
            if used + grows > cap {
                return Err(err(
                    DiskOp::WriteAt,
                    &self.path,
                    io::ErrorKind::StorageFull,
                    "no space left on device",
                ));
            }
            f = lock(&self.inode);
        }
        let change = Pending::Write { offset, data };
        Inode::apply(&mut f.current, &change);
        f.pending.push(change);
        Ok(())
    }

    async fn read_at(&self, len: usize, offset: u64) -> DiskResult<Bytes> {
        let place = queue::enter(&self.disk.queue).await;
        self.disk.delay().await;
        let wanted = (len as u64).min(
            lock(&self.inode)
                .current
                .len()
                .saturating_sub(offset as usize) as u64,
        );
        let _moving = self.disk.transfer(wanted, true).await;
        drop(place);
        let (flip, eio, stall) = {
            let st = lock(&self.disk.state);
            (
                st.faults.read_bitflip_per_million,
                st.faults.read_eio_per_million,
                st.faults.read_eio_stall,
            )
        };
        if eio > 0 && self.disk.rng.range_u64(0, 1_000_000) < eio as u64 {
            if !stall.is_zero() {
                tokio::time::sleep(stall).await;
            }
            return Err(err(
                DiskOp::ReadAt,
                &self.path,
                io::ErrorKind::Other,
                "EIO: input/output error",
            ));
        }
        let f = lock(&self.inode);
        let mut out = f.current.read(offset as usize, len);
        drop(f);
        if flip > 0 && !out.is_empty() && self.disk.rng.range_u64(0, 1_000_000) < flip as u64 {
            let bit = self.disk.rng.range_u64(0, out.len() as u64 * 8);
            out[(bit / 8) as usize] ^= 1 << (bit % 8);
        }
        Ok(Bytes::from(out))
    }

    async fn sync_data(&self) -> DiskResult<()> {
        let (id, stall, eio) = {
            let mut st = lock(&self.disk.state);
            let id = st.next_sync_id;
            st.next_sync_id += 1;
            st.syncs_in_flight
                .insert(id, (self.path.clone(), tokio::time::Instant::now()));
            let eio = st.faults.sync_eio_next > 0;
            if eio {
                st.faults.sync_eio_next -= 1;
            }
            (id, st.faults.sync_stall_until, eio)
        };
        let place = queue::enter(&self.disk.queue).await;
        self.disk.delay().await;
        let dirty: u64 = lock(&self.inode)
            .pending
            .iter()
            .map(|p| match p {
                Pending::Write { data, .. } => data.len() as u64,
                Pending::Truncate(_) => 0,
            })
            .sum();
        let moving = self.disk.transfer(dirty, false).await;
        drop((place, moving));
        if let Some(until) = stall {
            tokio::time::sleep_until(until).await;
        }
        let mut st = lock(&self.disk.state);
        st.syncs_in_flight.remove(&id);
        let mut f = lock(&self.inode);
        if eio {
            // fsyncgate: the dirty pages are gone; what reads see falls back to the durable data.
            f.current = f.durable.clone();
            f.pending.clear();
            return Err(err(
                DiskOp::SyncData,
                &self.path,
                io::ErrorKind::Other,
                "EIO: input/output error",
            ));
        }
        // Replay the pending changes onto the durable copy: cost proportional to what was
        // written, not to the file's size.
        let pending = std::mem::take(&mut f.pending);
        for change in &pending {
            Inode::apply(&mut f.durable, change);
        }
        debug_assert!(f.durable == f.current);
        st.syncs += 1;
        if self.path.extension().is_some_and(|e| e == "log") {
            st.segment_syncs.push(tokio::time::Instant::now());
        }
        Ok(())
    }

    async fn truncate(&self, len: u64) -> DiskResult<()> {
        self.disk.delay().await;
        let mut f = lock(&self.inode);
        let change = Pending::Truncate(len);
        Inode::apply(&mut f.current, &change);
        f.pending.push(change);
        Ok(())
    }

    async fn len(&self) -> DiskResult<u64> {
        self.disk.delay().await;
        Ok(lock(&self.inode).current.len() as u64)
    }
}

mod queue;
pub use queue::QueueStats;

#[cfg(test)]
mod tests;
