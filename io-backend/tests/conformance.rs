//! The disk conformance suite against both real engines.
#![cfg(not(madsim))]

use std::sync::Arc;

use io_backend::{blocking::BlockingDisk, conformance, Disk};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_engine_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(BlockingDisk::new(4));
    conformance::run_all(disk, dir.path()).await.unwrap();
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uring_engine_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(io_backend::uring::UringDisk::start(2).expect(
        "io_uring cannot be set up on this machine; the uring engine cannot be tested here",
    ));
    assert_eq!(disk.engine(), "uring");
    conformance::run_all(disk, dir.path()).await.unwrap();
}
