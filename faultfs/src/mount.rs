//! Mounting, the fault switches, and unmounting: the handle a test runner holds for each
//! broker's data directory.
//!
//! Invariant: a `Mounted` is a live mount until it is dropped or [`Mounted::unmount`]ed; then
//! no sync is left held (held ones run), and the mount point is given back — cleanly, or, when
//! files in it are still open, detached lazily (gone from the tree at once, served until the
//! last file closes) so that dropping never blocks on another process.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, MountOption};

use crate::cache::CrashReport;
use crate::faults::Faults;
use crate::fs::FaultFilesystem;
use crate::volume::{lock, Volume};

/// Why a mount (or unmount) failed, and on what.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The backing directory is missing or not a directory.
    #[error("backing directory {path}: {source}")]
    Backing {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The mount point is missing or not a directory.
    #[error("mount point {path}: {source}")]
    Mountpoint {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The kernel refused the mount (EPERM: not root; ENODEV: no FUSE in this kernel).
    #[error(
        "mounting the fault filesystem on {mountpoint} failed: {source} (a FUSE mount needs \
         /dev/fuse and either root with CAP_SYS_ADMIN, or the fusermount3 helper of the Debian \
         package fuse3)"
    )]
    Mount {
        mountpoint: PathBuf,
        source: std::io::Error,
    },
    /// The thread that answers stalled syncs could not be started.
    #[error("starting the sync staller thread of {mountpoint}: {source}")]
    Thread {
        mountpoint: PathBuf,
        source: std::io::Error,
    },
    /// A clean unmount failed (usually EBUSY: a file in it is still open); the mount was
    /// detached lazily instead and goes when its last open file is closed.
    #[error("unmounting {mountpoint}: {source} (detached lazily instead)")]
    Unmount {
        mountpoint: PathBuf,
        source: std::io::Error,
    },
}

/// Settings of a mount.
#[derive(Debug, Clone)]
pub struct Options {
    /// Dirty bytes held in memory, at most (soft: give or take one write per thread). A write
    /// past it first writes the largest dirty file back to the backing file, without a sync.
    pub dirty_bytes_max: u64,
    /// Threads serving the kernel's requests.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dirty_bytes_max: 512 << 20,
            threads: 4,
        }
    }
}

/// What the filesystem holds and has done, for a runner's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Bytes written and not yet synced (lost by a crash).
    pub dirty_bytes: u64,
    /// Syncs (fsync, fdatasync, fsyncdir) answered, failed ones included.
    pub syncs: u64,
    /// Syncs answered with an error (injected, backing, or failed by a crash while held).
    pub syncs_failed: u64,
    /// Files (or single writes larger than the cap) written back to make room: their data
    /// survives a crash although nobody synced it.
    pub forced_writebacks: u64,
    /// Syncs between request and answer: the file (relative to the mount) and when it began.
    pub syncs_in_flight: Vec<(PathBuf, Instant)>,
    /// The 99th percentile of the syncs served without a stall: the backing disk's own time
    /// (to within a fifth above), without the FUSE round trip or a slow disk's injected wait.
    pub sync_p99: Option<Duration>,
}

/// Mounts the fault filesystem.
///
/// ```no_run
/// use std::time::Duration;
/// # fn main() -> Result<(), faultfs::MountError> {
/// let m = faultfs::FaultFs::mount("/data/b1.real".as_ref(), "/data/b1".as_ref())?;
/// m.stall_syncs_for(Duration::from_secs(5)); // every fsync starting now ends in 5 s
/// // ... kill the broker using /data/b1 ...
/// let lost = m.crash(None); // unsynced writes are gone
/// println!("lost {} bytes", lost.dropped_bytes);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FaultFs;

impl FaultFs {
    /// Mount a passthrough of `backing` at `mountpoint`, with the default [`Options`].
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<Mounted, MountError> {
        Self::mount_with(backing, mountpoint, &Options::default())
    }

    /// Mount with explicit options.
    pub fn mount_with(
        backing: &Path,
        mountpoint: &Path,
        options: &Options,
    ) -> Result<Mounted, MountError> {
        let backing = dir(backing).map_err(|source| MountError::Backing {
            path: backing.to_path_buf(),
            source,
        })?;
        let mountpoint = dir(mountpoint).map_err(|source| MountError::Mountpoint {
            path: mountpoint.to_path_buf(),
            source,
        })?;
        let vol = Arc::new(Volume::new(backing, options.dirty_bytes_max));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("faultfs".into()),
            MountOption::Subtype("faultfs".into()),
            MountOption::DefaultPermissions,
        ];
        config.n_threads = Some(options.threads.max(1));
        let fs = FaultFilesystem { vol: vol.clone() };
        let session =
            fuser::spawn_mount(fs, &mountpoint, &config).map_err(|source| MountError::Mount {
                mountpoint: mountpoint.clone(),
                source,
            })?;
        vol.set_notifier(session.notifier());
        let staller = {
            let vol = vol.clone();
            std::thread::Builder::new()
                .name("faultfs-staller".into())
                .spawn(move || vol.run_staller())
        };
        let staller = match staller {
            Ok(h) => h,
            Err(source) => {
                // Dropping the session unmounts.
                drop(session);
                return Err(MountError::Thread { mountpoint, source });
            }
        };
        Ok(Mounted {
            vol,
            session: Some(session),
            staller: Some(staller),
            mountpoint,
        })
    }
}

fn dir(p: &Path) -> std::io::Result<PathBuf> {
    let p = p.canonicalize()?;
    if p.is_dir() {
        Ok(p)
    } else {
        Err(std::io::Error::from_raw_os_error(libc::ENOTDIR))
    }
}

/// A live mount and its fault switches. Every method takes `&self` and may be called from any
/// thread at any time. Dropping it unmounts.
#[derive(Debug)]
pub struct Mounted {
    vol: Arc<Volume>,
    session: Option<BackgroundSession>,
    staller: Option<JoinHandle<()>>,
    mountpoint: PathBuf,
}

impl Mounted {
    /// Where the filesystem is mounted (canonical).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The backing directory (canonical).
    pub fn backing(&self) -> &Path {
        &self.vol.backing
    }

    /// Every fsync, fdatasync or fsyncdir that starts before `until` completes only at `until`
    /// (it writes nothing before then: a crash meanwhile loses its data). Other operations go
    /// on meanwhile. The latest call wins; a time already past lifts the stall.
    pub fn stall_syncs(&self, until: Instant) {
        self.vol.set_stall(Some(until));
    }

    /// [`stall_syncs`](Self::stall_syncs) until `d` from now.
    pub fn stall_syncs_for(&self, d: Duration) {
        self.stall_syncs(Instant::now() + d);
    }

    /// The next `count` syncs (replacing any count left) fail with EIO, each dropping the
    /// file's dirty data, as Linux does after a writeback error: the data is gone, and a
    /// retried sync succeeds without it.
    pub fn fail_syncs(&self, count: u32) {
        lock(&self.vol.faults).syncs_to_fail = count;
    }

    /// While on, every write fails with EIO.
    pub fn fail_writes(&self, on: bool) {
        lock(&self.vol.faults).writes_fail = on;
    }

    /// While on, the disk is full: a write, fallocate or truncate that would grow a file fails
    /// with ENOSPC (overwrites inside a file still work), and statfs reports no free space.
    pub fn full(&self, on: bool) {
        lock(&self.vol.faults).full = on;
    }

    /// A power cut: every dirty byte of every file is dropped. With `Some(seed)`, a seeded
    /// choice of one dirty file first has a seeded prefix of its dirty bytes (in offset order;
    /// some but not all, when it has two or more) written to its backing file: a torn write.
    /// Syncs held by a stall fail with EIO.
    ///
    /// Kill the processes using the mount first. A process blocked in a held sync cannot exit
    /// until that sync is answered (the kernel waits for a request the filesystem has taken),
    /// so: kill, then `crash`, then wait for the exit.
    pub fn crash(&self, torn: Option<u64>) -> CrashReport {
        let report = self.vol.crash(torn);
        tracing::info!(mountpoint = %self.mountpoint.display(), ?report, "crash");
        report
    }

    /// A slow disk while `latency` is set: every read, write and sync first waits a uniform
    /// draw from it (holding one of the filesystem's threads, so operations queue behind slow
    /// ones), and `spike`'s share of them (per million) its time instead; the draws come from
    /// `seed`. `None, None` makes the disk fast again.
    pub fn slow(
        &self,
        latency: Option<(Duration, Duration)>,
        spike: Option<(u32, Duration)>,
        seed: u64,
    ) {
        *lock(&self.vol.latency_draws) = crate::faults::SplitMix64::new(seed);
        let mut f = lock(&self.vol.faults);
        f.latency = latency;
        f.spike = spike;
    }

    /// Run `f` once, when the next write arrives and before it is served (`None`: forget one
    /// set before). A test stops the writing process there, so the write spans the stop.
    pub fn before_next_write(&self, f: Option<Box<dyn FnOnce() + Send>>) {
        *lock(&self.vol.before_write) = f.map(crate::volume::BeforeWrite);
    }

    /// Lift every fault: held syncs go ahead, syncs, writes and space are back to normal.
    pub fn clear(&self) {
        *lock(&self.vol.faults) = Faults::default();
        self.vol.set_stall(None);
    }

    /// Counters and the syncs under way.
    pub fn status(&self) -> Status {
        let c = &self.vol.counters;
        Status {
            dirty_bytes: self.vol.dirty_total.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            syncs_failed: c.syncs_failed.load(Ordering::Relaxed),
            forced_writebacks: c.forced_writebacks.load(Ordering::Relaxed),
            syncs_in_flight: lock(&self.vol.in_flight)
                .values()
                .map(|s| (s.path.clone(), s.started))
                .collect(),
            sync_p99: c.sync_latency.quantile(0.99),
        }
    }

    /// Unmount now. Fails (having detached the mount lazily) when a file in it is still open.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), MountError> {
        self.clear();
        self.vol.stop_staller();
        if let Some(h) = self.staller.take() {
            if h.join().is_err() {
                tracing::error!(mountpoint = %self.mountpoint.display(), "the staller panicked");
            }
        }
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match session.umount_and_join() {
            Ok(()) => Ok(()),
            Err(source) => {
                if let Err(e) =
                    nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH)
                {
                    tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e,
                        "lazy unmount failed too");
                }
                Err(MountError::Unmount {
                    mountpoint: self.mountpoint.clone(),
                    source,
                })
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "faultfs unmount");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_handle_can_be_shared_across_threads() {
        // A runner keeps each mount behind an `Arc` and strikes faults from any task.
        fn send_sync<T: Send + Sync>() {}
        send_sync::<super::Mounted>();
        send_sync::<super::Status>();
    }
}
