//! One conformance suite for every [`Disk`] implementation (uring, blocking, and the simulator's
//! disk): what the broker relies on, checked the same way against each.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::{Disk, DiskOp, OpenMode};

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn fail<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// What the broker may rely on across a crash: a file written and synced, in a directory made
/// durable by a sync of its parent, and its own entry made durable by a sync of that directory,
/// is there after `crash` with its data; and after a rename over an old file and a sync of the
/// directory, the new contents are. (A crash is the test's: a disk that can crash crashes; a
/// real engine cannot crash the machine in a test, and passes `|| {}`: then the case checks
/// that the sequence itself works.) `root` must itself be durable in its parent.
pub async fn durable_after_syncs(disk: &dyn Disk, root: &Path, crash: impl Fn()) -> Check {
    let dir = root.join("durable");
    disk.create_dir_all(&dir)
        .await
        .map_err(fail("create_dir_all"))?;
    disk.sync_dir(root).await.map_err(fail("sync_dir(root)"))?;
    let f = disk
        .open(&dir.join("f"), OpenMode::Create)
        .await
        .map_err(fail("open"))?;
    f.write_at(Bytes::from_static(b"kept"), 0)
        .await
        .map_err(fail("write_at"))?;
    f.sync_data().await.map_err(fail("sync_data"))?;
    disk.sync_dir(&dir).await.map_err(fail("sync_dir"))?;
    let tmp = disk
        .open(&dir.join("meta.tmp"), OpenMode::Create)
        .await
        .map_err(fail("open tmp"))?;
    tmp.write_at(Bytes::from_static(b"v2"), 0)
        .await
        .map_err(fail("write tmp"))?;
    tmp.sync_data().await.map_err(fail("sync tmp"))?;
    disk.rename(&dir.join("meta.tmp"), &dir.join("meta"))
        .await
        .map_err(fail("rename"))?;
    disk.sync_dir(&dir)
        .await
        .map_err(fail("sync_dir after rename"))?;
    drop((f, tmp));
    crash();
    for (name, want) in [("f", &b"kept"[..]), ("meta", &b"v2"[..])] {
        let f = disk
            .open(&dir.join(name), OpenMode::Existing)
            .await
            .map_err(|e| format!("{name} lost across a crash after its syncs: {e}"))?;
        let got = f.read_at(16, 0).await.map_err(fail("read_at"))?;
        ensure!(
            &got[..] == want,
            "{name} holds {got:?} after a crash, not {want:?}"
        );
    }
    ensure!(
        !disk
            .exists(&dir.join("meta.tmp"))
            .await
            .map_err(fail("exists"))?,
        "the renamed file's old name is back after a crash"
    );
    disk.remove_dir_all(&dir)
        .await
        .map_err(fail("remove_dir_all"))?;
    disk.sync_dir(root)
        .await
        .map_err(fail("sync_dir(root) after removal"))?;
    Ok(())
}

/// Run every check under `root` (an empty directory). Returns the first failure.
pub async fn run_all(disk: Arc<dyn Disk>, root: &Path) -> Check {
    write_read_at_offsets(&*disk, root).await?;
    concurrent_writes_distinct_offsets(disk.clone(), root).await?;
    sync_then_reopen(&*disk, root).await?;
    truncate_and_len(&*disk, root).await?;
    write_all_and_sync(&*disk, root).await?;
    rename_list_remove(&*disk, root).await?;
    errors_name_file_and_operation(&*disk, root).await?;
    dir_lock_is_exclusive(&*disk, root).await?;
    durable_after_syncs(&*disk, root, || {}).await?;
    Ok(())
}

pub async fn write_read_at_offsets(disk: &dyn Disk, root: &Path) -> Check {
    let dir = root.join("offsets");
    disk.create_dir_all(&dir)
        .await
        .map_err(fail("create_dir_all"))?;
    let f = disk
        .open(&dir.join("a"), OpenMode::Create)
        .await
        .map_err(fail("open"))?;
    f.write_at(Bytes::from_static(b"hello"), 0)
        .await
        .map_err(fail("write 0"))?;
    f.write_at(Bytes::from_static(b"world"), 10)
        .await
        .map_err(fail("write 10"))?;
    // A write at an offset must not move anything else (failure mode 2: offset reset to 0).
    f.write_at(Bytes::from_static(b"HE"), 0)
        .await
        .map_err(fail("overwrite"))?;
    let got = f.read_at(15, 0).await.map_err(fail("read"))?;
    ensure!(&got[..] == b"HEllo\0\0\0\0\0world", "read back {:?}", got);
    let tail = f.read_at(100, 12).await.map_err(fail("read past end"))?;
    ensure!(
        &tail[..] == b"rld",
        "short read at end of file gave {:?}",
        tail
    );
    let none = f.read_at(10, 1000).await.map_err(fail("read beyond end"))?;
    ensure!(none.is_empty(), "read beyond end gave {} bytes", none.len());
    ensure!(
        f.len().await.map_err(fail("len"))? == 15,
        "length after writes"
    );
    Ok(())
}

pub async fn concurrent_writes_distinct_offsets(disk: Arc<dyn Disk>, root: &Path) -> Check {
    const WRITES: usize = 256;
    const SIZE: usize = 512;
    let dir = root.join("concurrent");
    disk.create_dir_all(&dir)
        .await
        .map_err(fail("create_dir_all"))?;
    let f = disk
        .open(&dir.join("c"), OpenMode::Create)
        .await
        .map_err(fail("open"))?;
    let mut tasks = Vec::new();
    for i in 0..WRITES {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let data = Bytes::from(vec![(i % 251) as u8; SIZE]);
            f.write_at(data, (i * SIZE) as u64).await
        }));
    }
    for t in tasks {
        t.await
            .map_err(fail("join"))?
            .map_err(fail("concurrent write"))?;
    }
    f.sync_data().await.map_err(fail("sync"))?;
    let all = f.read_at(WRITES * SIZE, 0).await.map_err(fail("read"))?;
    ensure!(all.len() == WRITES * SIZE, "length {}", all.len());
    for i in 0..WRITES {
        let chunk = &all[i * SIZE..(i + 1) * SIZE];
        ensure!(
            chunk.iter().all(|b| *b == (i % 251) as u8),
            "write {i} is not where it was written"
        );
    }
    Ok(())
}

pub async fn sync_then_reopen(disk: &dyn Disk, root: &Path) -> Check {
    let dir = root.join("reopen");
    disk.create_dir_all(&dir)
        .await
        .map_err(fail("create_dir_all"))?;
    let path = dir.join("r");
    {
        let f = disk
            .open(&path, OpenMode::Create)
            .await
            .map_err(fail("open"))?;
        f.write_at(Bytes::from_static(b"durable"), 0)
            .await
            .map_err(fail("write"))?;
        f.sync_data().await.map_err(fail("sync_data"))?;
    }
    disk.sync_dir(&dir).await.map_err(fail("sync_dir"))?;
    let f = disk
        .open(&path, OpenMode::Existing)
        .await
        .map_err(fail("reopen"))?;
    let got = f.read_at(7, 0).await.map_err(fail("read"))?;
    ensure!(&got[..] == b"durable", "after reopen read {:?}", got);
    let f = disk
        .open(&path, OpenMode::ReadOnly)
        .await
        .map_err(fail("open read-only"))?;
    let got = f.read_at(7, 0).await.map_err(fail("read read-only"))?;
    ensure!(&got[..] == b"durable", "read-only read {:?}", got);
    let missing = dir.join("missing-read-only");
    ensure!(
        disk.open(&missing, OpenMode::ReadOnly).await.is_err(),
        "ReadOnly opened a missing file"
    );
    ensure!(
        !disk.exists(&missing).await.map_err(fail("exists"))?,
        "ReadOnly created a file"
    );
    let f = disk
        .open(&path, OpenMode::Truncate)
        .await
        .map_err(fail("open truncate"))?;
    ensure!(
        f.len().await.map_err(fail("len"))? == 0,
        "Truncate mode keeps data"
    );
    Ok(())
}

pub async fn write_all_and_sync(disk: &dyn Disk, root: &Path) -> Check {
    let dir = root.join("write-sync");
    disk.create_dir_all(&dir)
        .await
        .map_err(fail("create_dir_all"))?;
    let path = dir.join("w");
    let f = disk
        .open(&path, OpenMode::Create)
        .await
        .map_err(fail("open"))?;
    f.write_all_and_sync(vec![
        (Bytes::from_static(b"tail"), 6),
        (Bytes::from_static(b"head"), 0),
    ])
    .await
    .map_err(fail("write_all_and_sync"))?;
    let again = disk
        .open(&path, OpenMode::Existing)
        .await
        .map_err(fail("reopen"))?;
    let got = again.read_at(10, 0).await.map_err(fail("read"))?;
    ensure!(&got[..] == b"head\0\0tail", "read back {:?}", got);
    f.write_all_and_sync(Vec::new())
        .await
        .map_err(fail("sync alone"))?;
    Ok(())
}

pub async fn truncate_and_len(disk: &dyn Disk, root: &Path) -> Check {
    let dir = root.join("truncate");
    disk.create_dir_all(&dir)
        .await
        .map_err(fail("create_dir_all"))?;
    let f = disk
        .open(&dir.join("t"), OpenMode::Create)
        .await
        .map_err(fail("open"))?;
    f.write_at(Bytes::from(vec![7u8; 1000]), 0)
        .await
        .map_err(fail("write"))?;
    f.truncate(300).await.map_err(fail("truncate"))?;
    ensure!(
        f.len().await.map_err(fail("len"))? == 300,
        "length after truncate"
    );
    let got = f.read_at(1000, 0).await.map_err(fail("read"))?;
    ensure!(
        got.len() == 300,
        "read after truncate gave {} bytes",
        got.len()
    );
    f.write_at(Bytes::from_static(b"x"), 300)
        .await
        .map_err(fail("append"))?;
    ensure!(
        f.len().await.map_err(fail("len"))? == 301,
        "length after append"
    );
    Ok(())
}

pub async fn rename_list_remove(disk: &dyn Disk, root: &Path) -> Check {
    let dir = root.join("names");
    disk.create_dir_all(&dir.join("sub"))
        .await
        .map_err(fail("create_dir_all"))?;
    for name in ["b.log", "a.log", "c.tmp"] {
        disk.open(&dir.join(name), OpenMode::Create)
            .await
            .map_err(fail("create"))?;
    }
    disk.rename(&dir.join("c.tmp"), &dir.join("c.log"))
        .await
        .map_err(fail("rename"))?;
    let names = disk.list(&dir).await.map_err(fail("list"))?;
    ensure!(
        names == ["a.log", "b.log", "c.log", "sub"],
        "list gave {:?}",
        names
    );
    disk.remove_file(&dir.join("a.log"))
        .await
        .map_err(fail("remove"))?;
    ensure!(
        !disk
            .exists(&dir.join("a.log"))
            .await
            .map_err(fail("exists"))?,
        "removed file exists"
    );
    ensure!(
        disk.exists(&dir.join("b.log"))
            .await
            .map_err(fail("exists"))?,
        "kept file is gone"
    );
    disk.remove_dir_all(&dir)
        .await
        .map_err(fail("remove_dir_all"))?;
    ensure!(
        !disk.exists(&dir).await.map_err(fail("exists"))?,
        "removed dir exists"
    );
    Ok(())
}

pub async fn errors_name_file_and_operation(disk: &dyn Disk, root: &Path) -> Check {
    let missing = root.join("no-such-dir").join("file");
    let err = match disk.open(&missing, OpenMode::Existing).await {
        Ok(_) => return Err("opening a missing file succeeded".into()),
        Err(e) => e,
    };
    ensure!(err.op == DiskOp::Open, "error names op {}", err.op);
    ensure!(
        err.path == missing,
        "error names path {}",
        err.path.display()
    );
    ensure!(
        err.kind() == std::io::ErrorKind::NotFound,
        "error kind {:?}",
        err.kind()
    );
    let text = err.to_string();
    ensure!(
        text.contains("open") && text.contains("no-such-dir"),
        "message {text:?}"
    );
    let err = match disk.list(&root.join("absent")).await {
        Ok(_) => return Err("listing a missing directory succeeded".into()),
        Err(e) => e,
    };
    ensure!(err.op == DiskOp::List, "list error names op {}", err.op);
    Ok(())
}

/// One holder per directory (two brokers on one data directory lose acknowledged data): a
/// second claim fails at once, names the holder, and succeeds once the first is released.
pub async fn dir_lock_is_exclusive(disk: &dyn Disk, root: &Path) -> Check {
    let dir = root.join("locked");
    disk.create_dir_all(&dir)
        .await
        .map_err(fail("create_dir_all"))?;
    let first = disk
        .lock_dir(&dir, "holder-one")
        .await
        .map_err(fail("first lock"))?;
    match disk.lock_dir(&dir, "holder-two").await {
        Ok(_) => return Err("a second lock of a locked directory succeeded".into()),
        Err(e) => {
            ensure!(
                e.kind() == std::io::ErrorKind::WouldBlock && e.op == DiskOp::Lock,
                "a second lock failed with {e} ({:?}), expected WouldBlock on lock",
                e.kind()
            );
            ensure!(
                e.to_string().contains("holder-one"),
                "the refusal does not name the holder: {e}"
            );
        }
    }
    // Another directory is not affected.
    let other = root.join("unlocked");
    disk.create_dir_all(&other)
        .await
        .map_err(fail("create_dir_all"))?;
    let _other = disk
        .lock_dir(&other, "holder-three")
        .await
        .map_err(fail("lock of another directory"))?;
    drop(first);
    let _again = disk
        .lock_dir(&dir, "holder-two")
        .await
        .map_err(fail("lock after release"))?;
    Ok(())
}
