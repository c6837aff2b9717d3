//! The write cache: writes land in memory as dirty extents of their inode, reads see the backing
//! file with those extents laid over it, a sync writes them to the backing file and syncs it,
//! and a crash drops them — what a power cut does to a kernel's page cache.
//!
//! Invariant: a byte acknowledged to a writer is in exactly one of two places — an extent of its
//! inode, or the backing file — and it leaves the extents only by being written to the backing
//! file (a sync, a forced write-back, a torn crash's prefix) or by being dropped (a crash, a
//! failed sync, a truncate below it). Dirty bytes stay under `dirty_bytes_max`, give or take one
//! write per request thread: a write that would pass it first writes the largest dirty file
//! back (without a sync), and such data then survives a crash — counted as a forced write-back.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fuser::Errno;

use crate::faults::SplitMix64;
use crate::inodes::{FileData, Inode};
use crate::volume::{errno, lock, Volume};

/// How many files one write may push out to make room, at most (then it goes ahead: the cap
/// is a soft bound, and this one keeps a write's latency bounded).
const ROOM_VICTIMS_MAX: usize = 64;

/// What a crash did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Dirty bytes dropped (not counting those a torn write kept).
    pub dropped_bytes: u64,
    /// The file a torn write kept a part of, if any.
    pub torn: Option<TornWrite>,
    /// Stalled syncs answered with EIO (their data dropped with the rest).
    pub stalled_syncs_failed: usize,
}

/// The part of one file's dirty data a torn crash wrote to the backing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornWrite {
    /// Relative to the mount's root (`None`: the file had been unlinked).
    pub path: Option<PathBuf>,
    /// The first `kept_bytes` of the file's dirty bytes, in offset order, survived...
    pub kept_bytes: u64,
    /// ... of this many.
    pub dirty_bytes: u64,
}

/// Fill `buf` from the backing file at `offset`; past its end the bytes stay zero.
fn read_backing(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The length readers see: the backing file's, or further if dirty data reaches further.
fn logical_len(file: &File, data: &FileData) -> Result<u64, Errno> {
    let backing = file.metadata().map_err(|e| errno(&e))?.len();
    Ok(backing.max(data.extents.end()))
}

/// Write every extent to the backing file (no sync) and forget them.
fn write_extents(data: &mut FileData, fallback: Option<&Arc<File>>) -> Result<(), Errno> {
    if data.extents.is_empty() {
        data.writer = None;
        return Ok(());
    }
    let writer = data
        .writer
        .clone()
        .or_else(|| fallback.cloned())
        .ok_or(Errno::EIO)?;
    for (offset, bytes) in data.extents.iter() {
        writer.write_all_at(bytes, offset).map_err(|e| errno(&e))?;
    }
    data.extents.clear();
    data.writer = None;
    Ok(())
}

impl Volume {
    /// Bring `dirty_bytes` and `dirty_total` in line with the extents (under the data lock).
    fn account(&self, inode: &Inode, data: &FileData) {
        let new = data.extents.bytes();
        let old = inode.dirty_bytes.swap(new, Ordering::Relaxed);
        if new >= old {
            self.dirty_total.fetch_add(new - old, Ordering::Relaxed);
        } else {
            self.dirty_total.fetch_sub(old - new, Ordering::Relaxed);
        }
    }

    /// The length of `ino` as readers see it (for getattr).
    pub(crate) fn len_of(&self, ino: u64, backing_len: u64) -> u64 {
        match self.inode(ino) {
            Ok(inode) => backing_len.max(lock(&inode.data).extents.end()),
            Err(_) => backing_len,
        }
    }

    pub(crate) fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let file = self.file(fh)?;
        let inode = self.inode(ino)?;
        // Held across the backing read so that a write-back cannot move bytes between the
        // extents and the file halfway through it.
        let data = lock(&inode.data);
        let len = logical_len(&file, &data)?;
        if offset >= len {
            return Ok(Vec::new());
        }
        let n = (len - offset).min(u64::from(size)) as usize;
        let mut buf = vec![0u8; n];
        read_backing(&file, offset, &mut buf).map_err(|e| errno(&e))?;
        data.extents.overlay(offset, &mut buf);
        Ok(buf)
    }

    pub(crate) fn write(&self, ino: u64, fh: u64, offset: u64, bytes: &[u8]) -> Result<u32, Errno> {
        let faults = self.faults();
        if faults.writes_fail {
            return Err(Errno::EIO);
        }
        let len = bytes.len() as u64;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or(Errno::EFBIG)?;
        let written = u32::try_from(bytes.len()).map_err(|_| Errno::EINVAL)?;
        let file = self.file(fh)?;
        let inode = self.inode(ino)?;
        if faults.full && end > logical_len(&file, &lock(&inode.data))? {
            return Err(Errno::ENOSPC);
        }
        let fits = self.make_room(len)?;
        let mut data = lock(&inode.data);
        if fits {
            data.extents.insert(offset, bytes);
            if data.writer.is_none() {
                data.writer = Some(file);
            }
        } else {
            // Larger than the whole cache: straight to the backing file.
            file.write_all_at(bytes, offset).map_err(|e| errno(&e))?;
            data.extents.cut(offset, end);
            self.counters
                .forced_writebacks
                .fetch_add(1, Ordering::Relaxed);
        }
        self.account(&inode, &data);
        Ok(written)
    }

    /// Make room for `len` more dirty bytes by writing the largest dirty files back. Returns
    /// false when `len` alone exceeds the cap (the write must go through to the backing file).
    fn make_room(&self, len: u64) -> Result<bool, Errno> {
        if len > self.dirty_bytes_max {
            return Ok(false);
        }
        for _ in 0..ROOM_VICTIMS_MAX {
            if self.dirty_total.load(Ordering::Relaxed) + len <= self.dirty_bytes_max {
                break;
            }
            let Some(victim) = lock(&self.inodes).largest_dirty() else {
                break;
            };
            let mut data = lock(&victim.data);
            write_extents(&mut data, None)?;
            self.account(&victim, &data);
            self.counters
                .forced_writebacks
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(true)
    }

    /// The body of fsync/fdatasync once any stall is over: write the file's dirty extents to
    /// the backing file and sync it — or, when a failure is due, drop them and fail with EIO
    /// (as Linux does after a writeback error: the data is gone, the error reported once).
    pub(crate) fn sync_file(&self, ino: u64, fh: u64, datasync: bool) -> Result<(), Errno> {
        let file = self.file(fh)?;
        let inode = self.inode(ino)?;
        if lock(&self.faults).take_sync_failure() {
            {
                let mut data = lock(&inode.data);
                data.extents.clear();
                data.writer = None;
                self.account(&inode, &data);
            }
            // The kernel's copy of the lost bytes (and of the length) must go too.
            self.invalidate(ino);
            return Err(Errno::EIO);
        }
        {
            let mut data = lock(&inode.data);
            let written = write_extents(&mut data, Some(&file));
            self.account(&inode, &data);
            written?;
        }
        // Outside the data lock: reads of the file need not wait for the device.
        let synced = if datasync {
            file.sync_data()
        } else {
            file.sync_all()
        };
        synced.map_err(|e| errno(&e))
    }

    /// fsyncdir once any stall is over.
    pub(crate) fn sync_dir(&self, dir: &File) -> Result<(), Errno> {
        if lock(&self.faults).take_sync_failure() {
            return Err(Errno::EIO);
        }
        dir.sync_all().map_err(|e| errno(&e))
    }

    /// Truncate (or extend) `ino` to `size`: applied to the backing file at once, and dirty
    /// bytes past it dropped. (So a crash keeps the new length: unlike the simulated disk, a
    /// truncate here is durable at once — a deliberate simplification.)
    pub(crate) fn truncate(&self, ino: u64, fh: Option<u64>, size: u64) -> Result<(), Errno> {
        let full = self.faults().full;
        let inode = self.inode(ino)?;
        let file = match (self.path_of(ino), fh) {
            (Ok(path), _) => Arc::new(
                OpenOptions::new()
                    .write(true)
                    .open(self.real(&path))
                    .map_err(|e| errno(&e))?,
            ),
            (Err(_), Some(fh)) => self.file(fh)?,
            (Err(e), None) => return Err(e),
        };
        let mut data = lock(&inode.data);
        if full && size > logical_len(&file, &data)? {
            return Err(Errno::ENOSPC);
        }
        file.set_len(size).map_err(|e| errno(&e))?;
        data.extents.truncate(size);
        self.account(&inode, &data);
        Ok(())
    }

    /// Whether an allocation of `[offset, offset+len)` would grow `ino` past its length.
    pub(crate) fn grows(&self, ino: u64, fh: u64, end: u64) -> Result<bool, Errno> {
        let file = self.file(fh)?;
        let inode = self.inode(ino)?;
        let data = lock(&inode.data);
        Ok(end > logical_len(&file, &data)?)
    }

    /// Forget the dirty bytes of `[offset, end)` (a hole punched, or a range zeroed, in the
    /// backing file).
    pub(crate) fn cut(&self, ino: u64, offset: u64, end: u64) -> Result<(), Errno> {
        let inode = self.inode(ino)?;
        let mut data = lock(&inode.data);
        data.extents.cut(offset, end);
        self.account(&inode, &data);
        Ok(())
    }

    /// Drop every dirty extent of every file (with a seed, first write a seeded prefix of one
    /// file's dirty bytes to its backing file: a torn write).
    pub(crate) fn crash(&self, torn: Option<u64>) -> CrashReport {
        let mut report = CrashReport {
            stalled_syncs_failed: self.fail_stalled(),
            ..CrashReport::default()
        };
        let nodes = lock(&self.inodes).all();
        if let Some(seed) = torn {
            let dirty: Vec<_> = nodes.iter().filter(|n| n.2.dirty() > 0).collect();
            let mut rng = SplitMix64::new(seed);
            if let Some(&(_, path, inode)) = dirty.get(rng.below(dirty.len() as u64) as usize) {
                let data = lock(&inode.data);
                let total = data.extents.bytes();
                // For two bytes or more, some but not all survive.
                let keep = if total >= 2 {
                    1 + rng.below(total - 1)
                } else {
                    rng.below(total + 1)
                };
                if let Some(writer) = &data.writer {
                    for (offset, bytes) in data.extents.prefix(keep) {
                        if let Err(e) = writer.write_all_at(bytes, offset) {
                            tracing::warn!(?path, offset, error = %e, "torn write-back failed");
                        }
                    }
                }
                report.torn = Some(TornWrite {
                    path: path.clone(),
                    kept_bytes: keep,
                    dirty_bytes: total,
                });
            }
        }
        let mut changed = Vec::new();
        for (ino, _, inode) in &nodes {
            let mut data = lock(&inode.data);
            let dropped = data.extents.clear();
            data.writer = None;
            self.account(inode, &data);
            if dropped > 0 {
                report.dropped_bytes += dropped;
                changed.push(*ino);
            }
        }
        if let Some(t) = &report.torn {
            report.dropped_bytes -= t.kept_bytes;
        }
        // Whatever the kernel kept of the lost bytes (pages, lengths) is forgotten too.
        for ino in changed {
            self.invalidate(ino);
        }
        // Nodes kept only for their dirty data can go now.
        let gone = lock(&self.inodes).collect_all();
        drop(gone);
        report
    }
}
