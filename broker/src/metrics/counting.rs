//! The disk wrapper that counts every write and sync into [`Metrics`] (so a test can prove an
//! idle broker does no disk work).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use io_backend::{Disk, DiskFile, DiskResult, OpenMode};

use super::Metrics;

/// A [`Disk`] that counts writes and syncs into [`Metrics`].
pub struct CountingDisk {
    inner: Arc<dyn Disk>,
    metrics: Arc<Metrics>,
}

impl CountingDisk {
    pub fn wrap(inner: Arc<dyn Disk>, metrics: Arc<Metrics>) -> Arc<dyn Disk> {
        Arc::new(CountingDisk { inner, metrics })
    }
}

#[async_trait]
impl Disk for CountingDisk {
    async fn create_dir_all(&self, path: &Path) -> DiskResult<()> {
        Metrics::inc(&self.metrics.disk_write_ops, 1);
        self.inner.create_dir_all(path).await
    }
    async fn open(&self, path: &Path, mode: OpenMode) -> DiskResult<Arc<dyn DiskFile>> {
        let inner = self.inner.open(path, mode).await?;
        Ok(Arc::new(CountingFile {
            inner,
            metrics: self.metrics.clone(),
        }))
    }
    async fn list(&self, dir: &Path) -> DiskResult<Vec<String>> {
        self.inner.list(dir).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> DiskResult<()> {
        Metrics::inc(&self.metrics.disk_write_ops, 1);
        self.inner.rename(from, to).await
    }
    async fn remove_file(&self, path: &Path) -> DiskResult<()> {
        Metrics::inc(&self.metrics.disk_write_ops, 1);
        self.inner.remove_file(path).await
    }
    async fn remove_dir_all(&self, path: &Path) -> DiskResult<()> {
        Metrics::inc(&self.metrics.disk_write_ops, 1);
        self.inner.remove_dir_all(path).await
    }
    async fn sync_dir(&self, path: &Path) -> DiskResult<()> {
        Metrics::inc(&self.metrics.disk_sync_ops, 1);
        self.inner.sync_dir(path).await
    }
    async fn exists(&self, path: &Path) -> DiskResult<bool> {
        self.inner.exists(path).await
    }
    async fn lock_dir(&self, dir: &Path, holder: &str) -> DiskResult<io_backend::DirLock> {
        self.inner.lock_dir(dir, holder).await
    }
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }
}

struct CountingFile {
    inner: Arc<dyn DiskFile>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl DiskFile for CountingFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    async fn write_at(&self, data: Bytes, offset: u64) -> DiskResult<()> {
        Metrics::inc(&self.metrics.disk_write_ops, 1);
        Metrics::inc(&self.metrics.disk_write_bytes, data.len() as u64);
        self.inner.write_at(data, offset).await
    }
    async fn read_at(&self, len: usize, offset: u64) -> DiskResult<Bytes> {
        self.inner.read_at(len, offset).await
    }
    async fn sync_data(&self) -> DiskResult<()> {
        Metrics::inc(&self.metrics.disk_sync_ops, 1);
        self.inner.sync_data().await
    }
    async fn write_all_and_sync(&self, writes: Vec<(Bytes, u64)>) -> DiskResult<()> {
        Metrics::inc(&self.metrics.disk_write_ops, writes.len() as u64);
        let bytes: usize = writes.iter().map(|(d, _)| d.len()).sum();
        Metrics::inc(&self.metrics.disk_write_bytes, bytes as u64);
        Metrics::inc(&self.metrics.disk_sync_ops, 1);
        self.inner.write_all_and_sync(writes).await
    }
    async fn truncate(&self, len: u64) -> DiskResult<()> {
        Metrics::inc(&self.metrics.disk_write_ops, 1);
        self.inner.truncate(len).await
    }
    async fn len(&self) -> DiskResult<u64> {
        self.inner.len().await
    }
}
