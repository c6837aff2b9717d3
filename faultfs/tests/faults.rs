//! Each fault, struck through the handle and observed for real through `std::fs` on the mount.
#![cfg(all(target_os = "linux", not(madsim)))]

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{errno, mount, mount_with, read};
use faultfs::Options;

/// Write `data` at the end of `path` and close it, without a sync.
fn append(path: &Path, data: &[u8]) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

/// Write `data` as the whole of `path` and sync it.
fn write_synced(path: &Path, data: &[u8]) {
    let mut f = fs::File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_data().unwrap();
}

#[test]
fn a_crash_loses_unsynced_writes_and_keeps_synced_ones() {
    let fx = mount();
    write_synced(&fx.at("log"), b"base");
    assert_eq!(fs::read(fx.real("log")).unwrap(), b"base");

    append(&fx.at("log"), b"+more");
    let f = OpenOptions::new().write(true).open(fx.at("log")).unwrap();
    f.write_all_at(b"B", 0).unwrap();
    drop(f);
    assert_eq!(read(&fx.at("log")), b"Base+more");
    assert_eq!(
        fs::read(fx.real("log")).unwrap(),
        b"base",
        "nothing reached the backing file"
    );

    let report = fx.m.crash(None);
    assert_eq!(report.dropped_bytes, 6);
    assert_eq!(read(&fx.at("log")), b"base", "back to what was synced");
    assert_eq!(fs::metadata(fx.at("log")).unwrap().len(), 4);
    assert_eq!(fx.m.status().dirty_bytes, 0);

    let mut f = OpenOptions::new().append(true).open(fx.at("log")).unwrap();
    f.write_all(b"+kept").unwrap();
    f.sync_data().unwrap();
    drop(f);
    fx.m.crash(None);
    assert_eq!(read(&fx.at("log")), b"base+kept");
}

/// A file kept open across the crash (a reader that outlives the broker) sees the loss too:
/// the kernel's cached pages and length of the file are dropped with the data.
#[test]
fn files_open_across_a_crash_or_a_failed_sync_see_the_loss() {
    use std::io::{Read, Seek, SeekFrom};
    let fx = mount();
    write_synced(&fx.at("f"), b"base");
    let mut reader = fs::File::open(fx.at("f")).unwrap();
    let mut writer = OpenOptions::new().append(true).open(fx.at("f")).unwrap();
    writer.write_all(b"+lost").unwrap();
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(
        got, b"base+lost",
        "the reader sees the unsynced write (and caches it)"
    );
    fx.m.crash(None);
    got.clear();
    reader.seek(SeekFrom::Start(0)).unwrap();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"base", "after the crash, through the same open file");
    assert_eq!(reader.metadata().unwrap().len(), 4);

    let mut writer = OpenOptions::new().append(true).open(fx.at("f")).unwrap();
    writer.write_all(b"+gone").unwrap();
    got.clear();
    reader.seek(SeekFrom::Start(0)).unwrap();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"base+gone");
    fx.m.fail_syncs(1);
    assert_eq!(errno(&writer.sync_data().unwrap_err()), libc::EIO);
    got.clear();
    reader.seek(SeekFrom::Start(0)).unwrap();
    reader.read_to_end(&mut got).unwrap();
    assert_eq!(
        got, b"base",
        "after the failed sync, through the same open file"
    );
}

#[test]
fn a_slow_disk_makes_every_write_and_sync_wait_and_a_fast_one_does_not() {
    let fx = mount();
    let path = fx.at("slow");
    let timed = |n: usize| {
        let t = Instant::now();
        for _ in 0..n {
            write_synced(&path, b"x");
        }
        t.elapsed()
    };
    // A write and a sync each wait 100–120 ms.
    let ms = Duration::from_millis;
    fx.m.slow(Some((ms(100), ms(120))), None, 7);
    let slow = timed(3);
    assert!(slow >= ms(600), "three writes and syncs took {slow:?}");
    // Every operation in the tail.
    fx.m.slow(None, Some((1_000_000, ms(250))), 7);
    let tail = timed(1);
    assert!(
        tail >= ms(500),
        "a write and a sync in the tail took {tail:?}"
    );
    fx.m.slow(None, None, 0);
    let fast = timed(3);
    assert!(
        fast < ms(300),
        "three writes and syncs on a fast disk took {fast:?}"
    );
    assert_eq!(read(&path), b"x");
    // The disk's own sync time leaves the injected waits out: 7 syncs, none near 100 ms.
    let p99 = fx.m.status().sync_p99.expect("syncs were timed");
    assert!(p99 < ms(100), "the backing disk's sync p99: {p99:?}");
}

#[test]
fn a_stalled_sync_ends_at_the_stall_while_other_files_are_served() {
    let fx = mount();
    write_synced(&fx.at("other"), &vec![7u8; 64 << 10]);
    let stall = Duration::from_millis(1500);
    let set = Instant::now();
    fx.m.stall_syncs_for(stall);
    let path = fx.at("stuck");
    let syncer = std::thread::spawn(move || {
        let mut f = fs::File::create(&path).unwrap();
        f.write_all(b"waiting").unwrap();
        let start = Instant::now();
        f.sync_data().unwrap();
        start.elapsed()
    });
    // Wait for the sync to be held.
    let deadline = Instant::now() + Duration::from_secs(1);
    while fx.m.status().syncs_in_flight.is_empty() {
        assert!(Instant::now() < deadline, "the sync never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let in_flight = fx.m.status().syncs_in_flight;
    assert_eq!(in_flight.len(), 1);
    assert_eq!(in_flight[0].0, Path::new("stuck"));

    let t = Instant::now();
    assert_eq!(read(&fx.at("other")).len(), 64 << 10);
    append(&fx.at("third"), b"a write elsewhere");
    let other_ops = t.elapsed();
    assert!(
        other_ops < Duration::from_millis(500),
        "a read and a write took {other_ops:?}"
    );
    assert_eq!(
        fs::read(fx.real("stuck")).unwrap(),
        b"",
        "a held sync has written nothing"
    );

    let sync_took = syncer.join().unwrap();
    let ended = set.elapsed();
    assert!(
        ended >= stall,
        "the sync ended {ended:?} after the stall was set"
    );
    assert!(
        sync_took >= stall - Duration::from_millis(300),
        "the sync took {sync_took:?}"
    );
    assert!(fx.m.status().syncs_in_flight.is_empty());
    assert_eq!(fs::read(fx.real("stuck")).unwrap(), b"waiting");
    println!("stalled sync took {sync_took:?}; read and write meanwhile {other_ops:?}");
}

#[test]
fn a_failed_sync_reports_eio_and_drops_the_data_and_the_next_succeeds() {
    let fx = mount();
    write_synced(&fx.at("f"), b"base");
    let mut f = OpenOptions::new().append(true).open(fx.at("f")).unwrap();
    f.write_all(b"+lost").unwrap();
    fx.m.fail_syncs(1);
    let e = f.sync_data().unwrap_err();
    assert_eq!(errno(&e), libc::EIO, "{e}");
    assert_eq!(read(&fx.at("f")), b"base", "the dirty data is gone");
    assert_eq!(fx.m.status().dirty_bytes, 0);
    f.sync_data().expect("the next sync succeeds");
    drop(f);
    let mut f = OpenOptions::new().append(true).open(fx.at("f")).unwrap();
    f.write_all(b"+kept").unwrap();
    f.sync_data().unwrap();
    assert_eq!(fs::read(fx.real("f")).unwrap(), b"base+kept");
    let s = fx.m.status();
    assert_eq!(s.syncs_failed, 1);
}

#[test]
fn a_full_disk_refuses_growth_but_not_overwrites() {
    let fx = mount();
    write_synced(&fx.at("f"), b"0123456789");
    fx.m.full(true);
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .open(fx.at("f"))
        .unwrap();
    let e = f.write_all(b"more").unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    let g = OpenOptions::new().write(true).open(fx.at("f")).unwrap();
    g.write_all_at(b"ab", 2)
        .expect("an overwrite inside the file");
    assert_eq!(errno(&g.set_len(20).unwrap_err()), libc::ENOSPC);
    g.set_len(8).expect("shrinking needs no space");
    let e = nix::fcntl::fallocate(&g, nix::fcntl::FallocateFlags::empty(), 0, 4096).unwrap_err();
    assert_eq!(e, nix::errno::Errno::ENOSPC);
    let st = nix::sys::statvfs::statvfs(&fx.mnt).unwrap();
    assert_eq!((st.blocks_free(), st.blocks_available()), (0, 0));
    fx.m.full(false);
    f.write_all(b"more").unwrap();
    assert_eq!(read(&fx.at("f")), b"01ab4567more");
    assert!(
        nix::sys::statvfs::statvfs(&fx.mnt)
            .unwrap()
            .blocks_available()
            > 0
    );
}

#[test]
fn failing_writes_report_eio_until_cleared() {
    let fx = mount();
    fs::write(fx.at("f"), b"x").unwrap();
    fx.m.fail_writes(true);
    let mut f = OpenOptions::new().append(true).open(fx.at("f")).unwrap();
    assert_eq!(errno(&f.write_all(b"y").unwrap_err()), libc::EIO);
    fx.m.clear();
    f.write_all(b"y").unwrap();
    assert_eq!(read(&fx.at("f")), b"xy");
}

/// Write 1 MiB to each of two files, crash torn with `seed`; returns what each file kept.
fn torn_crash(seed: u64) -> (faultfs::CrashReport, Vec<u8>, Vec<u8>) {
    let fx = mount();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    append(&fx.at("a"), &data);
    append(&fx.at("b"), &data);
    let report = fx.m.crash(Some(seed));
    (report, read(&fx.at("a")), read(&fx.at("b")))
}

#[test]
fn a_torn_crash_keeps_a_seeded_prefix_of_one_file() {
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let (report, a, b) = torn_crash(7);
    let torn = report.torn.clone().expect("a torn write");
    assert_eq!(torn.dirty_bytes, 1 << 20);
    assert!(torn.kept_bytes > 0 && torn.kept_bytes < 1 << 20, "{torn:?}");
    assert_eq!(report.dropped_bytes, (2 << 20) - torn.kept_bytes);
    let (kept, lost) = match torn.path.as_deref().and_then(|p| p.to_str()) {
        Some("a") => (a, b),
        Some("b") => (b, a),
        other => panic!("torn file {other:?}"),
    };
    assert_eq!(kept.len() as u64, torn.kept_bytes);
    assert_eq!(
        kept,
        data[..kept.len()],
        "the kept part is a prefix of what was written"
    );
    assert!(lost.is_empty(), "the other file lost everything");

    let (again, _, _) = torn_crash(7);
    assert_eq!(
        again.torn, report.torn,
        "the same seed tears the same bytes"
    );
    let others: Vec<_> = (8..12).map(|s| torn_crash(s).0.torn).collect();
    assert!(
        others.iter().any(|t| *t != report.torn),
        "other seeds tear otherwise"
    );
}

#[test]
fn the_dirty_cap_forces_write_back_and_counts_it() {
    let cap = 1 << 20;
    let fx = mount_with(&Options {
        dirty_bytes_max: cap,
        ..Options::default()
    });
    let chunk = vec![1u8; 600 << 10];
    append(&fx.at("first"), &chunk);
    assert_eq!(fx.m.status().forced_writebacks, 0);
    append(&fx.at("second"), &chunk);
    let s = fx.m.status();
    assert!(s.forced_writebacks >= 1, "{s:?}");
    assert!(s.dirty_bytes <= cap, "{s:?}");
    assert_eq!(
        fs::metadata(fx.real("first")).unwrap().len(),
        600 << 10,
        "the largest dirty file was written back"
    );
    let report = fx.m.crash(None);
    assert_eq!(report.dropped_bytes, 600 << 10);
    assert_eq!(
        read(&fx.at("first")).len(),
        600 << 10,
        "forced write-back survives a crash"
    );
    assert!(read(&fx.at("second")).is_empty());

    // A single write larger than the whole cap goes straight through.
    let before = fx.m.status().forced_writebacks;
    let small = mount_with(&Options {
        dirty_bytes_max: 4096,
        ..Options::default()
    });
    append(&small.at("big"), &vec![2u8; 64 << 10]);
    assert!(small.m.status().forced_writebacks > 0);
    assert!(small.m.status().dirty_bytes <= 4096);
    assert_eq!(fx.m.status().forced_writebacks, before);
}

/// A process blocked in a held sync cannot die until the sync is answered: `crash` answers it
/// (EIO) and drops its data, and the killed process exits.
#[test]
fn a_crash_releases_a_killed_process_stuck_in_a_stalled_sync() {
    let fx = mount();
    fx.m.stall_syncs_for(Duration::from_secs(60));
    let mut child = std::process::Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", fx.at("f").display()))
        .args(["bs=4096", "count=1", "conv=fsync", "status=none"])
        .spawn()
        .expect("dd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while fx.m.status().syncs_in_flight.is_empty() {
        assert!(Instant::now() < deadline, "dd never reached its fsync");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    let t = Instant::now();
    let report = fx.m.crash(None);
    assert_eq!(report.stalled_syncs_failed, 1);
    assert_eq!(report.dropped_bytes, 4096);
    child.wait().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the killed dd took {:?}",
        t.elapsed()
    );
    assert_eq!(fs::metadata(fx.at("f")).unwrap().len(), 0);
    fx.m.clear();
}
