use super::*;
use std::sync::Arc;

fn disk() -> (SimDisk, Arc<dyn Disk>) {
    let d = SimDisk::new(7);
    let dyn_disk: Arc<dyn Disk> = Arc::new(d.clone());
    (d, dyn_disk)
}

#[madsim::test]
async fn conforms_to_the_disk_contract() {
    let (_, d) = disk();
    d.create_dir_all(Path::new("/root")).await.unwrap();
    io_backend::conformance::run_all(d, Path::new("/root"))
        .await
        .unwrap();
}

#[madsim::test]
async fn a_crash_keeps_synced_data_and_drops_the_rest() {
    let (sim, d) = disk();
    let dir = Path::new("/data");
    d.create_dir_all(dir).await.unwrap();
    let f = d.open(&dir.join("a"), OpenMode::Create).await.unwrap();
    d.sync_dir(dir).await.unwrap();
    d.sync_dir(Path::new("/")).await.unwrap();
    f.write_at(Bytes::from_static(b"durable"), 0).await.unwrap();
    f.sync_data().await.unwrap();
    f.write_at(Bytes::from_static(b"-lost"), 7).await.unwrap();
    // A file created but never made durable by a directory sync disappears.
    d.open(&dir.join("unsynced-name"), OpenMode::Create)
        .await
        .unwrap();
    sim.crash(Crash::DropUnsynced);
    let f = d.open(&dir.join("a"), OpenMode::Existing).await.unwrap();
    assert_eq!(&f.read_at(100, 0).await.unwrap()[..], b"durable");
    assert!(!d.exists(&dir.join("unsynced-name")).await.unwrap());
}

#[madsim::test]
async fn a_file_grown_by_truncate_reads_zeros_and_shrinks_back() {
    let (sim, d) = disk();
    let dir = Path::new("/data");
    d.create_dir_all(dir).await.unwrap();
    let f = d.open(&dir.join("a"), OpenMode::Create).await.unwrap();
    d.sync_dir(dir).await.unwrap();
    d.sync_dir(Path::new("/")).await.unwrap();
    // Preallocated: 1 MiB of zeros, then data at the start and in the middle.
    f.truncate(1 << 20).await.unwrap();
    f.write_at(Bytes::from_static(b"head"), 0).await.unwrap();
    f.write_at(Bytes::from_static(b"mid"), 1000).await.unwrap();
    assert_eq!(f.len().await.unwrap(), 1 << 20);
    let tail = f.read_at(8, (1 << 20) - 4).await.unwrap();
    assert_eq!(&tail[..], &[0, 0, 0, 0], "4 bytes to the end, all zeros");
    let around = f.read_at(10, 998).await.unwrap();
    assert_eq!(&around[..], b"\0\0mid\0\0\0\0\0");
    f.sync_data().await.unwrap();
    // Cut back to the data's end: what was synced survives a crash as it reads.
    f.truncate(1003).await.unwrap();
    f.sync_data().await.unwrap();
    sim.crash(Crash::DropUnsynced);
    let f = d.open(&dir.join("a"), OpenMode::Existing).await.unwrap();
    assert_eq!(f.len().await.unwrap(), 1003);
    let all = f.read_at(2000, 0).await.unwrap();
    assert_eq!(&all[..4], b"head");
    assert_eq!(&all[1000..], b"mid");
    assert!(all[4..1000].iter().all(|&b| b == 0));
}

#[madsim::test]
async fn a_torn_crash_keeps_a_prefix_of_the_unsynced_writes() {
    let mut saw_partial = false;
    for seed in 0..40 {
        let sim = SimDisk::new(seed);
        let d: Arc<dyn Disk> = Arc::new(sim.clone());
        d.create_dir_all(Path::new("/d")).await.unwrap();
        let f = d.open(Path::new("/d/f"), OpenMode::Create).await.unwrap();
        d.sync_dir(Path::new("/d")).await.unwrap();
        d.sync_dir(Path::new("/")).await.unwrap();
        f.write_at(Bytes::from_static(b"aaaa"), 0).await.unwrap();
        f.write_at(Bytes::from_static(b"bbbb"), 4).await.unwrap();
        sim.crash(Crash::Torn);
        let f = d.open(Path::new("/d/f"), OpenMode::Existing).await.unwrap();
        let got = f.read_at(100, 0).await.unwrap();
        assert!(b"aaaabbbb".starts_with(&got), "not a prefix: {got:?}");
        saw_partial |= !got.is_empty() && got.len() < 8;
    }
    assert!(saw_partial, "no seed tore a write");
}

#[madsim::test]
async fn a_new_directory_is_durable_only_once_its_parent_is_synced() {
    let (sim, d) = disk();
    d.create_dir_all(Path::new("/data")).await.unwrap();
    d.sync_dir(Path::new("/")).await.unwrap();
    // A partition directory and its file, both synced, but not the data directory.
    let part = Path::new("/data/t-0");
    d.create_dir_all(part).await.unwrap();
    let f = d.open(&part.join("0.log"), OpenMode::Create).await.unwrap();
    f.write_at(Bytes::from_static(b"synced"), 0).await.unwrap();
    f.sync_data().await.unwrap();
    d.sync_dir(part).await.unwrap();
    sim.crash(Crash::DropUnsynced);
    assert!(
        !d.exists(part).await.unwrap() && !d.exists(&part.join("0.log")).await.unwrap(),
        "the directory's entry was never synced in its parent: it is gone, with its file"
    );
    // Again, with the parent synced: everything stays.
    d.create_dir_all(part).await.unwrap();
    let f = d.open(&part.join("0.log"), OpenMode::Create).await.unwrap();
    f.write_at(Bytes::from_static(b"synced"), 0).await.unwrap();
    f.sync_data().await.unwrap();
    d.sync_dir(part).await.unwrap();
    d.sync_dir(Path::new("/data")).await.unwrap();
    sim.crash(Crash::DropUnsynced);
    let f = d
        .open(&part.join("0.log"), OpenMode::Existing)
        .await
        .unwrap();
    assert_eq!(&f.read_at(100, 0).await.unwrap()[..], b"synced");
    // The conformance suite's crash cases, on the disk that can crash.
    let crash = sim.clone();
    io_backend::conformance::durable_after_syncs(&*d, Path::new("/data"), move || {
        crash.crash(Crash::Torn)
    })
    .await
    .unwrap();
}

#[madsim::test]
async fn a_torn_crash_can_keep_a_later_write_to_one_file_and_lose_an_earlier_one_to_another() {
    let mut reordered = false;
    for seed in 0..40 {
        let sim = SimDisk::new(seed);
        let d: Arc<dyn Disk> = Arc::new(sim.clone());
        d.create_dir_all(Path::new("/d")).await.unwrap();
        let a = d.open(Path::new("/d/a"), OpenMode::Create).await.unwrap();
        let b = d.open(Path::new("/d/b"), OpenMode::Create).await.unwrap();
        d.sync_dir(Path::new("/d")).await.unwrap();
        d.sync_dir(Path::new("/")).await.unwrap();
        a.write_at(Bytes::from_static(b"first"), 0).await.unwrap();
        b.write_at(Bytes::from_static(b"second"), 0).await.unwrap();
        sim.crash(Crash::Torn);
        let read = |name: &'static str| {
            let d = d.clone();
            async move {
                let f = d.open(Path::new(name), OpenMode::Existing).await.unwrap();
                f.read_at(100, 0).await.unwrap()
            }
        };
        let (a, b) = (read("/d/a").await, read("/d/b").await);
        reordered |= a.is_empty() && &b[..] == b"second";
    }
    assert!(
        reordered,
        "no seed kept the later write and lost the earlier one"
    );
}

#[madsim::test]
async fn an_eio_sync_drops_the_dirty_data() {
    let (sim, d) = disk();
    d.create_dir_all(Path::new("/d")).await.unwrap();
    let f = d.open(Path::new("/d/f"), OpenMode::Create).await.unwrap();
    f.write_at(Bytes::from_static(b"kept"), 0).await.unwrap();
    f.sync_data().await.unwrap();
    f.write_at(Bytes::from_static(b"gone"), 4).await.unwrap();
    sim.set_faults(Faults {
        sync_eio_next: 1,
        ..Faults::default()
    });
    let e = f.sync_data().await.unwrap_err();
    assert_eq!(e.op, DiskOp::SyncData);
    assert_eq!(&f.read_at(100, 0).await.unwrap()[..], b"kept");
    f.sync_data().await.unwrap();
}

#[madsim::test]
async fn a_stalled_sync_takes_simulated_time_and_is_reported() {
    let (sim, d) = disk();
    d.create_dir_all(Path::new("/d")).await.unwrap();
    let f = d.open(Path::new("/d/f"), OpenMode::Create).await.unwrap();
    let stall = Duration::from_secs(3 * 3600 + 40 * 60);
    let start = tokio::time::Instant::now();
    sim.set_faults(Faults {
        sync_stall_until: Some(start + stall),
        ..Faults::default()
    });
    let syncing = tokio::spawn(async move { f.sync_data().await });
    tokio::time::sleep(Duration::from_secs(60)).await;
    let pending = sim.syncs_in_flight();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].path, Path::new("/d/f"));
    assert!(pending[0].since - start < Duration::from_millis(1));
    syncing.await.unwrap().unwrap();
    assert!(tokio::time::Instant::now() - start >= stall);
    assert!(sim.syncs_in_flight().is_empty());
}

#[madsim::test]
async fn a_full_disk_refuses_growth() {
    let (sim, d) = disk();
    d.create_dir_all(Path::new("/d")).await.unwrap();
    let f = d.open(Path::new("/d/f"), OpenMode::Create).await.unwrap();
    sim.set_faults(Faults {
        capacity_bytes: Some(10),
        ..Faults::default()
    });
    f.write_at(Bytes::from_static(b"12345678"), 0)
        .await
        .unwrap();
    let e = f.write_at(Bytes::from_static(b"abc"), 8).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    f.write_at(Bytes::from_static(b"xy"), 0).await.unwrap(); // overwriting is fine
}

#[madsim::test]
async fn bit_flips_on_read_change_one_bit() {
    let (sim, d) = disk();
    d.create_dir_all(Path::new("/d")).await.unwrap();
    let f = d.open(Path::new("/d/f"), OpenMode::Create).await.unwrap();
    f.write_at(Bytes::from(vec![0u8; 64]), 0).await.unwrap();
    sim.set_faults(Faults {
        read_bitflip_per_million: 1_000_000,
        ..Faults::default()
    });
    let got = f.read_at(64, 0).await.unwrap();
    let ones: u32 = got.iter().map(|b| b.count_ones()).sum();
    assert_eq!(ones, 1);
}

#[madsim::test]
async fn latency_is_drawn_from_its_range_with_a_tail_of_spikes() {
    let (sim, d) = disk();
    d.create_dir_all(Path::new("/d")).await.unwrap();
    let f = d.open(Path::new("/d/f"), OpenMode::Create).await.unwrap();
    sim.set_faults(Faults {
        latency: Some((Duration::from_millis(5), Duration::from_millis(20))),
        latency_spike: Some((100_000, Duration::from_secs(3))),
        ..Faults::default()
    });
    let (mut fast, mut spikes) = (0, 0);
    for _ in 0..200 {
        let t = tokio::time::Instant::now();
        f.len().await.unwrap();
        let took = tokio::time::Instant::now() - t;
        if took >= Duration::from_secs(3) {
            spikes += 1;
        } else {
            assert!(took >= Duration::from_millis(5) && took <= Duration::from_millis(21));
            fast += 1;
        }
    }
    // One in ten, give or take what 200 draws allow.
    assert!((5..=40).contains(&spikes), "{spikes} spikes, {fast} fast");
}

/// Four files synced at once through a queue of depth 1, each sync taking 10 ms: they are served
/// one after the other (the last ends at 40 ms), a neighbour's I/O queued first delays them all,
/// and a caller that gives up while it waits gives its place to the next.
#[madsim::test]
async fn a_queue_of_depth_one_serves_syncs_in_turn_and_a_neighbour_delays_them() {
    let (sim, d) = disk();
    let dir = Path::new("/q");
    d.create_dir_all(dir).await.unwrap();
    let ms = Duration::from_millis;
    sim.set_faults(Faults {
        latency: Some((ms(10), ms(10))),
        queue_depth: Some(1),
        ..Faults::default()
    });
    let mut files = Vec::new();
    for i in 0..4 {
        let f = d
            .open(&dir.join(format!("f{i}")), OpenMode::Create)
            .await
            .unwrap();
        f.write_at(Bytes::from_static(b"x"), 0).await.unwrap();
        files.push(f);
    }
    let start = tokio::time::Instant::now();
    let ends = futures::future::join_all(files.iter().map(|f| async {
        f.sync_data().await.unwrap();
        start.elapsed().as_millis()
    }))
    .await;
    assert_eq!(ends, vec![10, 20, 30, 40]);
    let stats = sim.queue_stats();
    assert_eq!(stats.wait_max.as_millis(), 30);
    assert_eq!((stats.waited, stats.waiting_peak), (3, 3));

    // A neighbour holds the device for 100 ms: a sync that comes after it waits for it.
    let neighbour = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.occupy(ms(100)).await })
    };
    tokio::task::yield_now().await;
    let start = tokio::time::Instant::now();
    files[0]
        .write_at(Bytes::from_static(b"y"), 1)
        .await
        .unwrap();
    // (The write took 10 ms.) One caller gives up after 50 ms in line (its deadline); the sync
    // after it is served when the neighbour is done, at 100 ms, and ends at 110 ms.
    let gave_up = tokio::time::timeout(ms(50), files[1].sync_data()).await;
    assert!(gave_up.is_err());
    files[0].sync_data().await.unwrap();
    assert_eq!(start.elapsed().as_millis(), 110);
    neighbour.await.unwrap();

    // Off again: four syncs at once all end after one latency.
    sim.set_faults(Faults {
        latency: Some((ms(10), ms(10))),
        ..Faults::default()
    });
    let start = tokio::time::Instant::now();
    futures::future::join_all(files.iter().map(|f| f.sync_data())).await;
    assert_eq!(start.elapsed().as_millis(), 10);
}
