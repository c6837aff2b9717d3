use std::fmt;
use std::path::PathBuf;

/// The disk operation that failed, named in every [`DiskError`] so a log line says what stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskOp {
    CreateDir,
    Open,
    List,
    Rename,
    Remove,
    SyncDir,
    WriteAt,
    ReadAt,
    SyncData,
    /// Writes followed by a sync of the same file, as one operation.
    WriteSync,
    Truncate,
    Len,
    /// Taking a directory's exclusive lock.
    Lock,
}

impl fmt::Display for DiskOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DiskOp::CreateDir => "create_dir",
            DiskOp::Open => "open",
            DiskOp::List => "list",
            DiskOp::Rename => "rename",
            DiskOp::Remove => "remove",
            DiskOp::SyncDir => "sync_dir",
            DiskOp::WriteAt => "write_at",
            DiskOp::ReadAt => "read_at",
            DiskOp::SyncData => "sync_data",
            DiskOp::WriteSync => "write_at+sync_data",
            DiskOp::Truncate => "truncate",
            DiskOp::Len => "len",
            DiskOp::Lock => "lock",
        };
        f.write_str(name)
    }
}

/// A failed disk operation: which operation, on which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("{op} on {}: {source}", path.display())]
pub struct DiskError {
    pub op: DiskOp,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl DiskError {
    pub fn new(op: DiskOp, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DiskError {
            op,
            path: path.into(),
            source,
        }
    }

    /// The kind of the underlying I/O error (e.g. `NotFound`).
    pub fn kind(&self) -> std::io::ErrorKind {
        self.source.kind()
    }
}

pub type DiskResult<T> = Result<T, DiskError>;
