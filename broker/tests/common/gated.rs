//! A disk for tests that can be made to stall or fail: syncs held behind a gate, reads held,
//! opens and directory syncs that fail.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use io_backend::{Disk, DiskFile, DiskResult, OpenMode};
use tokio::sync::watch;

/// Syncs wait while the gate is closed, and take `delay` when open; reads wait while the read
/// gate is closed; opens of a path containing `fail_open` fail, and so do the next
/// `fail_sync_dir.1` syncs of a directory whose path contains `fail_sync_dir.0`; syncs of a
/// directory whose path contains `hold_sync_dir` wait until it is cleared (`held` counts them).
#[derive(Clone)]
pub struct Gate {
    pub open: watch::Sender<bool>,
    pub hold_sync_dir: watch::Sender<Option<String>>,
    pub held: Arc<std::sync::atomic::AtomicUsize>,
    pub delay: Arc<std::sync::Mutex<Duration>>,
    /// How long each sync holds the one device: syncs queue behind each other, as on a disk
    /// that is busy (a delay lets them overlap).
    pub device_sync: Arc<std::sync::Mutex<Duration>>,
    pub device: Arc<tokio::sync::Mutex<()>>,
    pub reads_open: watch::Sender<bool>,
    pub fail_open: Arc<std::sync::Mutex<Option<String>>>,
    pub fail_sync_dir: Arc<std::sync::Mutex<Option<(String, u32)>>>,
}

pub fn injected(op: io_backend::DiskOp, p: &Path) -> io_backend::DiskError {
    io_backend::DiskError::new(op, p, std::io::Error::other("injected failure"))
}

impl Gate {
    pub fn new() -> Self {
        Gate {
            open: watch::channel(true).0,
            hold_sync_dir: watch::channel(None).0,
            held: Arc::default(),
            delay: Arc::new(std::sync::Mutex::new(Duration::ZERO)),
            device_sync: Arc::new(std::sync::Mutex::new(Duration::ZERO)),
            device: Arc::default(),
            reads_open: watch::channel(true).0,
            fail_open: Arc::default(),
            fail_sync_dir: Arc::default(),
        }
    }
    pub async fn pass_read(&self) {
        let mut rx = self.reads_open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
    pub fn close(&self) {
        self.open.send_replace(false);
    }
    pub fn open(&self) {
        self.open.send_replace(true);
    }
    pub async fn pass(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
        let d = *self.delay.lock().unwrap();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        let d = *self.device_sync.lock().unwrap();
        if !d.is_zero() {
            let _device = self.device.lock().await;
            tokio::time::sleep(d).await;
        }
    }
}

pub struct GatedDisk {
    pub inner: Arc<dyn Disk>,
    pub gate: Gate,
}

#[async_trait]
impl Disk for GatedDisk {
    async fn create_dir_all(&self, p: &Path) -> DiskResult<()> {
        self.inner.create_dir_all(p).await
    }
    async fn open(&self, p: &Path, m: OpenMode) -> DiskResult<Arc<dyn DiskFile>> {
        let fail = self.gate.fail_open.lock().unwrap().clone();
        if fail.is_some_and(|f| p.to_string_lossy().contains(&f)) {
            return Err(injected(io_backend::DiskOp::Open, p));
        }
        Ok(Arc::new(GatedFile {
            inner: self.inner.open(p, m).await?,
            gate: self.gate.clone(),
        }))
    }
    async fn list(&self, d: &Path) -> DiskResult<Vec<String>> {
        self.inner.list(d).await
    }
    async fn rename(&self, a: &Path, b: &Path) -> DiskResult<()> {
        self.inner.rename(a, b).await
    }
    async fn remove_file(&self, p: &Path) -> DiskResult<()> {
        self.inner.remove_file(p).await
    }
    async fn remove_dir_all(&self, p: &Path) -> DiskResult<()> {
        self.inner.remove_dir_all(p).await
    }
    async fn sync_dir(&self, p: &Path) -> DiskResult<()> {
        let mut hold = self.gate.hold_sync_dir.subscribe();
        let held = |h: &Option<String>| h.as_ref().is_some_and(|h| p.to_string_lossy().contains(h));
        if held(&hold.borrow_and_update()) {
            self.gate.held.fetch_add(1, Ordering::SeqCst);
            let _ = hold.wait_for(|h| !held(h)).await;
        }
        {
            let mut fail = self.gate.fail_sync_dir.lock().unwrap();
            if let Some((what, left)) = fail.as_mut() {
                if *left > 0 && p.to_string_lossy().contains(what.as_str()) {
                    *left -= 1;
                    return Err(injected(io_backend::DiskOp::SyncDir, p));
                }
            }
        }
        self.inner.sync_dir(p).await
    }
    async fn exists(&self, p: &Path) -> DiskResult<bool> {
        self.inner.exists(p).await
    }
    async fn lock_dir(&self, d: &Path, holder: &str) -> DiskResult<io_backend::DirLock> {
        self.inner.lock_dir(d, holder).await
    }
    fn engine(&self) -> &'static str {
        "gated"
    }
}

struct GatedFile {
    inner: Arc<dyn DiskFile>,
    gate: Gate,
}

#[async_trait]
impl DiskFile for GatedFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    async fn write_at(&self, d: Bytes, o: u64) -> DiskResult<()> {
        self.inner.write_at(d, o).await
    }
    async fn read_at(&self, l: usize, o: u64) -> DiskResult<Bytes> {
        self.gate.pass_read().await;
        self.inner.read_at(l, o).await
    }
    async fn sync_data(&self) -> DiskResult<()> {
        self.gate.pass().await;
        self.inner.sync_data().await
    }
    async fn truncate(&self, l: u64) -> DiskResult<()> {
        self.inner.truncate(l).await
    }
    async fn len(&self) -> DiskResult<u64> {
        self.inner.len().await
    }
}
