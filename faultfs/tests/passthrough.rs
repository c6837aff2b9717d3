//! Every operation passes through to the backing directory, and reads see unsynced writes.
#![cfg(all(target_os = "linux", not(madsim)))]

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;

use common::{errno, mount, read};

#[test]
fn names_data_and_attributes_pass_through() {
    let fx = mount();
    // create, write, read back
    fs::write(fx.at("a"), b"hello world").unwrap();
    assert_eq!(read(&fx.at("a")), b"hello world");
    assert_eq!(fs::metadata(fx.at("a")).unwrap().len(), 11);
    assert!(
        fx.real("a").exists(),
        "the name is in the backing directory at once"
    );
    assert_eq!(
        fx.m.status().dirty_bytes,
        11,
        "the data is not, until a sync"
    );

    // append, and an overwrite in the middle
    let mut f = OpenOptions::new().append(true).open(fx.at("a")).unwrap();
    f.write_all(b"!!").unwrap();
    f.write_all_at(b"?", 0).unwrap();
    drop(f);
    assert_eq!(
        read(&fx.at("a")),
        b"hello world!!?",
        "O_APPEND: Linux's pwrite appends"
    );
    let f = OpenOptions::new().write(true).open(fx.at("a")).unwrap();
    f.write_all_at(b"W", 6).unwrap();
    drop(f);
    assert_eq!(read(&fx.at("a")), b"hello World!!?");

    // rename, and rename without replacing
    fs::rename(fx.at("a"), fx.at("b")).unwrap();
    assert!(!fx.at("a").exists());
    assert_eq!(read(&fx.at("b")), b"hello World!!?");
    fs::write(fx.at("c"), b"c").unwrap();
    let e = nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &fx.at("b"),
        nix::fcntl::AT_FDCWD,
        &fx.at("c"),
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    )
    .unwrap_err();
    assert_eq!(e, nix::errno::Errno::EEXIST);
    fs::rename(fx.at("c"), fx.at("b")).unwrap();
    assert_eq!(read(&fx.at("b")), b"c", "rename replaces the target");

    // mkdir, readdir, a file inside; a renamed directory keeps its dirty files
    fs::create_dir(fx.at("d")).unwrap();
    fs::write(fx.at("d/x"), b"inside").unwrap();
    let mut names: Vec<String> = fs::read_dir(&fx.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "d"]);
    let open_before = OpenOptions::new().write(true).open(fx.at("d/x")).unwrap();
    fs::rename(fx.at("d"), fx.at("e")).unwrap();
    assert_eq!(read(&fx.at("e/x")), b"inside");
    open_before.sync_data().unwrap();
    assert_eq!(
        fs::read(fx.real("e/x")).unwrap(),
        b"inside",
        "a sync through a handle opened before the rename lands at the new name"
    );

    // truncate down and up
    let f = OpenOptions::new().write(true).open(fx.at("e/x")).unwrap();
    f.set_len(3).unwrap();
    assert_eq!(read(&fx.at("e/x")), b"ins");
    f.set_len(5).unwrap();
    assert_eq!(read(&fx.at("e/x")), b"ins\0\0");
    drop(f);

    // unlink, rmdir
    fs::remove_file(fx.at("e/x")).unwrap();
    assert!(!fx.real("e/x").exists());
    fs::remove_dir(fx.at("e")).unwrap();
    assert!(!fx.real("e").exists());
    assert_eq!(
        errno(&fs::remove_dir(fx.at("e")).unwrap_err()),
        libc::ENOENT,
        "backing errors pass through as their errno"
    );

    // fsyncdir, and stat/permissions
    let syncs = fx.m.status().syncs;
    fs::File::open(&fx.mnt).unwrap().sync_all().unwrap();
    assert_eq!(fx.m.status().syncs, syncs + 1);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(fx.at("b"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        fs::metadata(fx.at("b")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(fx.real("b")).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // fallocate grows the file through the backing one
    let f = OpenOptions::new().write(true).open(fx.at("b")).unwrap();
    nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, 4096).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 4096);
}

#[test]
fn an_unlinked_open_file_keeps_working() {
    let fx = mount();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(fx.at("gone"))
        .unwrap();
    f.write_all(b"still here").unwrap();
    fs::remove_file(fx.at("gone")).unwrap();
    assert_eq!(
        f.metadata().unwrap().len(),
        10,
        "fstat of an unlinked open file"
    );
    let mut buf = [0u8; 10];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"still here");
    f.sync_data().unwrap();
    drop(f);
    assert_eq!(fx.m.status().dirty_bytes, 0);
}

#[test]
fn flock_is_exclusive_across_open_files() {
    use nix::fcntl::{Flock, FlockArg};
    let fx = mount();
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(fx.at(".lock"))
            .unwrap()
    };
    let first = Flock::lock(open(), FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("a first exclusive flock");
    match Flock::lock(open(), FlockArg::LockExclusiveNonblock) {
        Ok(_) => panic!("a second exclusive flock of a locked file succeeded"),
        Err((_, e)) => assert_eq!(e, nix::errno::Errno::EWOULDBLOCK),
    }
    drop(first);
    let _again = Flock::lock(open(), FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("a flock after the release");
}
