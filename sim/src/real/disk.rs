//! A twin run's disks: the fault filesystem (`faultfs`, FUSE) mounted over each broker's data
//! directory — the real twin of the simulated disk: unsynced writes live in its memory so a
//! crash loses them, and syncs stall or fail, and the disk fills, on the fault schedule.
//!
//! Invariant: a broker of a twin run writes only through its mount; what a crash keeps is
//! what the broker synced (and, with a torn crash, part of one file's unsynced bytes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::real::DiskFaults;

/// A broker's data directory on the fault filesystem: `backing` holds what is durable, the
/// broker sees `mountpoint`.
pub fn mount(backing: &Path, mountpoint: &Path) -> anyhow::Result<faultfs::Mounted> {
    std::fs::create_dir_all(backing)?;
    std::fs::create_dir_all(mountpoint)?;
    faultfs::FaultFs::mount(backing, mountpoint).map_err(|e| {
        anyhow::anyhow!(
            "cannot mount the fault filesystem over {} ({e}); a twin run needs /dev/fuse and root \
             (or fusermount3)",
            mountpoint.display()
        )
    })
}

impl DiskFaults for faultfs::Mounted {
    fn crash(&self, torn: Option<u64>) {
        let report = faultfs::Mounted::crash(self, torn);
        tracing::info!(?report, "the fault filesystem dropped what was not synced");
    }

    fn stall_syncs_for(&self, d: Duration) {
        faultfs::Mounted::stall_syncs_for(self, d)
    }

    fn fail_syncs(&self, count: u32) {
        faultfs::Mounted::fail_syncs(self, count)
    }

    fn full(&self, on: bool) {
        faultfs::Mounted::full(self, on)
    }

    fn syncs_in_flight(&self) -> Vec<(PathBuf, std::time::Instant)> {
        self.status().syncs_in_flight
    }

    fn sync_p99(&self) -> Option<Duration> {
        self.status().sync_p99
    }

    fn slow(
        &self,
        latency: Option<(Duration, Duration)>,
        spike: Option<(u32, Duration)>,
        seed: u64,
    ) {
        faultfs::Mounted::slow(self, latency, spike, seed)
    }

    fn before_next_write(&self, f: Option<Box<dyn FnOnce() + Send>>) {
        faultfs::Mounted::before_next_write(self, f)
    }

    fn clear(&self) {
        faultfs::Mounted::clear(self)
    }
}
