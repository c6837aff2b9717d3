//! The FUSE side: each kernel request turned into an operation on the backing directory (names,
//! metadata) or on the write cache (data, syncs), and answered.
//!
//! Invariant: every request is answered exactly once, with the backing filesystem's own errno
//! when it fails there; a request never blocks on a stall (held syncs are answered by the
//! staller thread), so one stuck fsync does not stop the other operations. Names go straight
//! to the backing directory: unlike the simulated disk, a created, renamed or unlinked entry is
//! not lost by a crash even if its directory was never synced (a known fidelity gap).

use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};
use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;

use crate::inodes::ROOT;
use crate::stall::SyncTarget;
use crate::volume::{errno, lock, nix_errno, Entry, Handle, Volume};

/// Attributes and entries are not cached by the kernel: after a crash or a failed sync drops
/// data, the next stat or open sees the length the cache now has, not a remembered one.
const TTL: Duration = Duration::ZERO;

/// File data goes through the kernel's page cache in write-through mode (FUSE without
/// `writeback_cache`): every write comes here before it returns, reads may be served from pages
/// the kernel holds, and whenever bytes are dropped here (a crash, a failed sync) the kernel is
/// told to forget its copy (`Volume::invalidate`); an open also drops it (no `KEEP_CACHE`).
/// Not `FOPEN_DIRECT_IO`: with it, io_uring's retry of a short read at the end of a file asks
/// again at the same offset (seen on Linux 6.18) and reads the tail over and over.
const OPEN_FLAGS: FopenFlags = FopenFlags::empty();

pub(crate) struct FaultFilesystem {
    pub(crate) vol: Arc<Volume>,
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let nsecs = nsecs.clamp(0, 999_999_999) as u32;
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs)
    } else {
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nsecs)
    }
}

fn kind(ft: fs::FileType) -> FileType {
    FileType::from_std(ft).unwrap_or(FileType::RegularFile)
}

fn attr(ino: u64, md: &Metadata, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: md.blocks(),
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(md.file_type()),
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: md.blksize() as u32,
        flags: 0,
    }
}

fn timespec(t: Option<TimeOrNow>) -> TimeSpec {
    match t {
        None => TimeSpec::UTIME_OMIT,
        Some(TimeOrNow::Now) => TimeSpec::UTIME_NOW,
        Some(TimeOrNow::SpecificTime(t)) => {
            TimeSpec::from_duration(t.duration_since(UNIX_EPOCH).unwrap_or_default())
        }
    }
}

/// What a metadata change applies to: the open file when there is one (it may be unlinked),
/// else the path.
enum Target {
    Fd(Arc<File>),
    Path(std::path::PathBuf),
}

impl FaultFilesystem {
    fn io<T>(r: std::io::Result<T>) -> Result<T, Errno> {
        r.map_err(|e| errno(&e))
    }

    /// The attributes of `ino`, its size as the cache sees it.
    fn stat(&self, ino: u64, fh: Option<u64>) -> Result<FileAttr, Errno> {
        let md = match fh.and_then(|fh| self.vol.handle(fh).ok()) {
            Some(Handle::File { file, .. }) => file.metadata(),
            Some(Handle::Dir { dir, .. }) => dir.metadata(),
            None => match self.vol.path_of(ino) {
                Ok(p) => fs::symlink_metadata(self.vol.real(&p)),
                // Unlinked but open (fstat does not say which handle): any of its handles.
                Err(e) => self.vol.any_file_of(ino).ok_or(e)?.metadata(),
            },
        };
        let md = Self::io(md)?;
        let size = if md.is_file() {
            self.vol.len_of(ino, md.len())
        } else {
            md.len()
        };
        Ok(attr(ino, &md, size))
    }

    /// Look `path` up for the kernel (one more lookup of its inode).
    fn entry(&self, path: &Path) -> Result<FileAttr, Errno> {
        let md = Self::io(fs::symlink_metadata(self.vol.real(path)))?;
        let (ino, _) = lock(&self.vol.inodes).lookup(path);
        let size = if md.is_file() {
            self.vol.len_of(ino, md.len())
        } else {
            md.len()
        };
        Ok(attr(ino, &md, size))
    }

    /// A new file or directory belongs to the caller, as it would on a local filesystem
    /// (the server runs as root; a non-root caller would otherwise get root's files).
    fn give_to_caller(req: &Request, fd: Option<&File>, path: &Path) -> Result<(), Errno> {
        if !nix::unistd::geteuid().is_root() || (req.uid() == 0 && req.gid() == 0) {
            return Ok(());
        }
        let (uid, gid) = (Some(req.uid()), Some(req.gid()));
        Self::io(match fd {
            Some(f) => std::os::unix::fs::fchown(f, uid, gid),
            None => std::os::unix::fs::lchown(path, uid, gid),
        })
    }

    fn target(&self, ino: u64, fh: Option<u64>) -> Result<Target, Errno> {
        if let Some(Ok(h)) = fh.map(|fh| self.vol.handle(fh)) {
            match h {
                Handle::File { file, .. } => return Ok(Target::Fd(file)),
                Handle::Dir { dir, .. } => return Ok(Target::Fd(dir)),
            }
        }
        Ok(Target::Path(self.vol.real(&self.vol.path_of(ino)?)))
    }

    #[allow(clippy::too_many_arguments)]
    fn set_attr(
        &self,
        ino: u64,
        fh: Option<u64>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> Result<FileAttr, Errno> {
        let target = self.target(ino, fh)?;
        if let Some(mode) = mode {
            let perms = fs::Permissions::from_mode(mode & 0o7777);
            Self::io(match &target {
                Target::Fd(f) => f.set_permissions(perms),
                Target::Path(p) => fs::set_permissions(p, perms),
            })?;
        }
        if uid.is_some() || gid.is_some() {
            Self::io(match &target {
                Target::Fd(f) => std::os::unix::fs::fchown(&**f, uid, gid),
                Target::Path(p) => std::os::unix::fs::lchown(p, uid, gid),
            })?;
        }
        if let Some(size) = size {
            self.vol.truncate(ino, fh, size)?;
        }
        if atime.is_some() || mtime.is_some() {
            let (a, m) = (timespec(atime), timespec(mtime));
            match &target {
                Target::Fd(f) => nix::sys::stat::futimens(&**f, &a, &m),
                Target::Path(p) => nix::sys::stat::utimensat(
                    nix::fcntl::AT_FDCWD,
                    p,
                    &a,
                    &m,
                    UtimensatFlags::NoFollowSymlink,
                ),
            }
            .map_err(nix_errno)?;
        }
        self.stat(ino, fh)
    }

    fn open_file(&self, ino: u64, flags: OpenFlags) -> Result<u64, Errno> {
        let path = self.vol.real(&self.vol.path_of(ino)?);
        let mut o = OpenOptions::new();
        // Only the access mode: the kernel handles O_APPEND (it sends the offset), O_TRUNC
        // (a setattr) and O_CREAT; an O_APPEND backing handle would make pwrite ignore offsets.
        match flags.acc_mode() {
            OpenAccMode::O_RDONLY => o.read(true),
            OpenAccMode::O_WRONLY => o.write(true),
            OpenAccMode::O_RDWR => o.read(true).write(true),
        };
        let file = Self::io(o.open(path))?;
        Ok(self.vol.add_handle(Handle::File {
            ino,
            file: Arc::new(file),
        }))
    }

    fn create_file(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64), Errno> {
        let rel = self.vol.child(parent, name)?;
        let path = self.vol.real(&rel);
        let mode = mode & !umask & 0o7777;
        let acc = flags & libc::O_ACCMODE;
        let mut creat = libc::O_CREAT;
        if flags & libc::O_EXCL != 0 {
            creat |= libc::O_EXCL;
        }
        let file = Self::io(
            OpenOptions::new()
                .read(acc != libc::O_WRONLY)
                .write(acc != libc::O_RDONLY)
                .custom_flags(creat)
                .mode(mode)
                .open(&path),
        )?;
        // This process's umask applied to the mode once more: set the one asked for.
        Self::io(file.set_permissions(fs::Permissions::from_mode(mode)))?;
        Self::give_to_caller(req, Some(&file), &path)?;
        let md = Self::io(file.metadata())?;
        let (ino, _) = lock(&self.vol.inodes).lookup(&rel);
        if flags & libc::O_TRUNC != 0 {
            self.vol.truncate(ino, None, 0)?;
        }
        let size = self.vol.len_of(ino, md.len());
        let fh = self.vol.add_handle(Handle::File {
            ino,
            file: Arc::new(file),
        });
        Ok((attr(ino, &md, size), fh))
    }

    fn open_dir(&self, ino: u64) -> Result<u64, Errno> {
        let rel = self.vol.path_of(ino)?;
        let path = self.vol.real(&rel);
        let dir = Self::io(File::open(&path))?;
        let parent_ino = rel
            .parent()
            .and_then(|p| lock(&self.vol.inodes).ino_of(p))
            .unwrap_or(ROOT);
        let mut entries = vec![
            Entry {
                ino,
                kind: FileType::Directory,
                name: ".".into(),
            },
            Entry {
                ino: parent_ino,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for e in Self::io(fs::read_dir(&path))? {
            let e = Self::io(e)?;
            let name = e.file_name();
            // The inode number the kernel knows for it, or the backing one (readdir's d_ino
            // is informational; lookups give the numbers that count).
            let known = lock(&self.vol.inodes).ino_of(&rel.join(&name));
            entries.push(Entry {
                ino: known.unwrap_or_else(|| e.ino()),
                kind: e.file_type().map(kind).unwrap_or(FileType::RegularFile),
                name,
            });
        }
        Ok(self.vol.add_handle(Handle::Dir {
            ino,
            dir: Arc::new(dir),
            entries: Arc::new(entries),
        }))
    }

    fn rename_path(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let from = self.vol.child(parent, name)?;
        let to = self.vol.child(newparent, newname)?;
        let (real_from, real_to) = (self.vol.real(&from), self.vol.real(&to));
        if flags.is_empty() {
            Self::io(fs::rename(&real_from, &real_to))?;
        } else {
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &real_from,
                nix::fcntl::AT_FDCWD,
                &real_to,
                nix::fcntl::RenameFlags::from_bits_truncate(flags.bits()),
            )
            .map_err(nix_errno)?;
        }
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        let replaced = lock(&self.vol.inodes).renamed(&from, &to, exchange);
        if let Some(inode) = replaced {
            self.vol.discard(&inode);
        }
        Ok(())
    }

    fn allocate(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or(Errno::EFBIG)?;
        let frees = mode & libc::FALLOC_FL_PUNCH_HOLE != 0;
        // A full disk refuses to allocate past a file's end (whether or not the length grows).
        if self.vol.faults().full && !frees && self.vol.grows(ino, fh, end)? {
            return Err(Errno::ENOSPC);
        }
        let file = self.vol.file(fh)?;
        nix::fcntl::fallocate(
            &*file,
            nix::fcntl::FallocateFlags::from_bits_truncate(mode),
            offset as i64,
            length as i64,
        )
        .map_err(nix_errno)?;
        if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 {
            // The range reads as zeros now: dirty bytes there must not come back over it.
            self.vol.cut(ino, offset, end)?;
        }
        Ok(())
    }

    fn statfs_of(&self) -> Result<nix::sys::statvfs::Statvfs, Errno> {
        nix::sys::statvfs::statvfs(&self.vol.backing).map_err(nix_errno)
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn reply_entry(reply: ReplyEntry, r: Result<FileAttr, Errno>) {
    match r {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_attr(reply: ReplyAttr, r: Result<FileAttr, Errno>) {
    match r {
        Ok(a) => reply.attr(&TTL, &a),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for FaultFilesystem {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.vol.child(parent.0, name).and_then(|p| self.entry(&p));
        reply_entry(reply, r);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let gone = lock(&self.vol.inodes).forget(ino.0, nlookup);
        if let Some(inode) = gone {
            self.vol.discard(&inode);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, self.stat(ino.0, fh.map(|f| f.0)));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.set_attr(ino.0, fh.map(|f| f.0), mode, uid, gid, size, atime, mtime);
        reply_attr(reply, r);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = self
            .vol
            .path_of(ino.0)
            .and_then(|p| Self::io(fs::read_link(self.vol.real(&p))));
        match r {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.vol.child(parent.0, name).and_then(|rel| {
            let path = self.vol.real(&rel);
            let mode = mode & !umask & 0o7777;
            Self::io(fs::DirBuilder::new().mode(mode).create(&path))?;
            Self::io(fs::set_permissions(&path, fs::Permissions::from_mode(mode)))?;
            Self::give_to_caller(req, None, &path)?;
            self.entry(&rel)
        });
        reply_entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.vol.child(parent.0, name).and_then(|rel| {
            Self::io(fs::remove_file(self.vol.real(&rel)))?;
            let gone = lock(&self.vol.inodes).unlinked(&rel);
            if let Some(inode) = gone {
                self.vol.discard(&inode);
            }
            Ok(())
        });
        reply_empty(reply, r);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.vol.child(parent.0, name).and_then(|rel| {
            Self::io(fs::remove_dir(self.vol.real(&rel)))?;
            let gone = lock(&self.vol.inodes).unlinked(&rel);
            drop(gone);
            Ok(())
        });
        reply_empty(reply, r);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self.vol.child(parent.0, link_name).and_then(|rel| {
            let path = self.vol.real(&rel);
            Self::io(std::os::unix::fs::symlink(target, &path))?;
            Self::give_to_caller(req, None, &path)?;
            self.entry(&rel)
        });
        reply_entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.rename_path(parent.0, name, newparent.0, newname, flags),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_file(ino.0, flags) {
            Ok(fh) => reply.opened(FileHandle(fh), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.vol.delay();
        match self.vol.read(ino.0, fh.0, offset, size) {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.vol.delay();
        let before = lock(&self.vol.before_write).take();
        if let Some(before) = before {
            (before.0)();
        }
        match self.vol.write(ino.0, fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2), not a sync: dirty data stays dirty.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.vol.remove_handle(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.vol.delay();
        let target = SyncTarget::File {
            ino: ino.0,
            fh: fh.0,
            datasync,
        };
        self.vol.begin_sync(target, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.open_dir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.vol.handle(fh.0) {
            Ok(Handle::Dir { entries, .. }) => entries,
            Ok(Handle::File { .. }) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(e),
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in entries.iter().enumerate().skip(start) {
            // The offset of an entry is where the next readdir resumes.
            if reply.add(INodeNo(e.ino), (i + 1) as u64, e.kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.vol.remove_handle(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.vol.delay();
        self.vol.begin_sync(SyncTarget::Dir { fh: fh.0 }, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.statfs_of() {
            Ok(s) => {
                let full = self.vol.faults().full;
                let (free, avail) = if full {
                    (0, 0)
                } else {
                    (s.blocks_free(), s.blocks_available())
                };
                reply.statfs(
                    s.blocks(),
                    free,
                    avail,
                    s.files(),
                    s.files_free(),
                    s.block_size() as u32,
                    s.name_max() as u32,
                    s.fragment_size() as u32,
                );
            }
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let r = self.vol.path_of(ino.0).and_then(|p| {
            nix::unistd::access(
                &self.vol.real(&p),
                nix::unistd::AccessFlags::from_bits_truncate(mask.bits()),
            )
            .map_err(nix_errno)
        });
        reply_empty(reply, r);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_file(req, parent.0, name, mode, umask, flags) {
            Ok((a, fh)) => reply.created(&TTL, &a, Generation(0), FileHandle(fh), OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.allocate(ino.0, fh.0, offset, length, mode));
    }
}
