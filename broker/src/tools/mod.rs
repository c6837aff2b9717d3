//! The operator's offline tools of the one `broker` binary: [`dump`] prints what a file of a
//! data directory holds (a segment's batches and records, its index files, producer state,
//! the Raft hard states, any small file) as Kafka's `kafka-dump-log.sh` does; [`verify`]
//! checks a whole data directory (CRCs, index files against their segments, Raft terms against
//! the entries' terms) with a report and an exit code.
//!
//! They read files directly, never through the broker's disk engine: they run only as
//! commands, never inside the broker or the simulator, and they write nothing.

pub mod dump;
pub mod verify;

use std::path::{Path, PathBuf};

/// What a tool could not do.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    /// The directory is in a format of a later version.
    #[error("{0}")]
    Newer(String),
}

/// The whole file at `path`.
fn read(path: &Path) -> Result<bytes::Bytes, ToolError> {
    std::fs::read(path)
        .map(bytes::Bytes::from)
        .map_err(|source| ToolError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// The base offset a segment file's name says (`00000000000000001234.log`: 1234).
fn base_of(path: &Path) -> Option<i64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Bytes shown as text: UTF-8 where they are, escaped where not, cut at `max` characters.
fn shown(bytes: Option<&[u8]>, max: usize) -> String {
    let Some(b) = bytes else {
        return "null".into();
    };
    let text = String::from_utf8_lossy(b);
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    format!("{out:?}")
}
