//! Mounting for the tests: a fault filesystem over a temporary backing directory, at a
//! temporary mount point. These tests need root (or the fusermount3 helper) and /dev/fuse; a
//! machine without them fails here, saying so, rather than skipping.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use faultfs::{FaultFs, Mounted, Options};

/// Field order matters: the mount goes before its directories.
pub struct Fixture {
    pub m: Mounted,
    pub mnt: PathBuf,
    pub backing: PathBuf,
    _mnt_dir: tempfile::TempDir,
    _backing_dir: tempfile::TempDir,
}

impl Fixture {
    /// `rel` under the mount point.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// `rel` under the backing directory (what a crash leaves).
    pub fn real(&self, rel: &str) -> PathBuf {
        self.backing.join(rel)
    }
}

pub fn mount() -> Fixture {
    mount_with(&Options::default())
}

pub fn mount_with(options: &Options) -> Fixture {
    let backing_dir = tempfile::tempdir().expect("a temporary backing directory");
    let mnt_dir = tempfile::tempdir().expect("a temporary mount point");
    let m = match FaultFs::mount_with(backing_dir.path(), mnt_dir.path(), options) {
        Ok(m) => m,
        Err(e) => panic!(
            "cannot mount the fault filesystem: {e}\nThese tests mount FUSE for real: run them \
             as root on a machine with /dev/fuse (a container needs --device /dev/fuse and \
             CAP_SYS_ADMIN)."
        ),
    };
    Fixture {
        mnt: m.mountpoint().to_path_buf(),
        backing: m.backing().to_path_buf(),
        m,
        _mnt_dir: mnt_dir,
        _backing_dir: backing_dir,
    }
}

pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}
