//! The broker's disk engines, both of them, on a fault filesystem: the io-backend conformance
//! suite (positional I/O, syncs, renames, the data directory's flock), and its crash case with
//! a real crash of the mount.
#![cfg(all(target_os = "linux", not(madsim)))]

mod common;

use std::sync::Arc;

use io_backend::{blocking::BlockingDisk, conformance, Disk};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_engine_conforms_on_faultfs() {
    let fx = common::mount();
    let disk: Arc<dyn Disk> = Arc::new(BlockingDisk::new(4));
    conformance::run_all(disk.clone(), &fx.mnt).await.unwrap();
    conformance::durable_after_syncs(&*disk, &fx.mnt, || {
        fx.m.crash(None);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uring_engine_conforms_on_faultfs() {
    let fx = common::mount();
    let disk: Arc<dyn Disk> = Arc::new(io_backend::uring::UringDisk::start(2).expect(
        "io_uring cannot be set up on this machine; the uring engine cannot be tested here",
    ));
    conformance::run_all(disk.clone(), &fx.mnt).await.unwrap();
    conformance::durable_after_syncs(&*disk, &fx.mnt, || {
        fx.m.crash(None);
    })
    .await
    .unwrap();
}
