//! The data directory's format (`.meta/format`): the level of the formats its files may be in,
//! and the version of the broker that set it. A broker reads every format up to its own
//! [`READS`]; it writes the formats of a level only once the directory's marker says that
//! level, and raises the marker only when the feature level `stillwater.version` is finalized
//! there (every broker of the cluster can read it) — so until then a broker can be rolled back
//! to the version before it.
//!
//! Invariant: a broker never touches a directory in a format above what it reads; it refuses
//! before writing anything (its lock file included), with [`StorageError::NewerFormat`].

use std::path::Path;

use super::{catalog, small_file, Io, StorageError};

/// The file's name, in the metadata directory.
pub const FILE: &str = "format";

/// The highest directory format this broker reads (the highest level of `stillwater.version`
/// it supports). Level 2: every file names its format (small files' first line, segments'
/// index files' header; [`super::small_file`], [`super::log::index`]).
pub const READS: u16 = 2;

/// The first format whose files name their format themselves.
pub const VERSIONED: u16 = 2;

/// The format of a directory without a marker: one made before the marker existed.
pub const UNMARKED: u16 = 1;

/// What the marker says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub format: u16,
    /// The version of the broker that last wrote the marker (`"unknown"` if it did not say).
    pub written_by: String,
}

impl Marker {
    fn encode(&self) -> String {
        format!(
            "format={}\nwritten_by={}",
            self.format,
            self.written_by.replace('\n', " ")
        )
    }

    fn decode(body: &str) -> Result<Marker, String> {
        let mut format = None;
        let mut written_by = "unknown".to_string();
        for line in body.lines() {
            match line.split_once('=') {
                Some(("format", v)) => {
                    format = Some(
                        v.trim()
                            .parse::<u16>()
                            .map_err(|e| format!("format: {e}"))?,
                    )
                }
                Some(("written_by", v)) => written_by = v.trim().to_string(),
                // A later version may say more; what it says is not ours to check.
                _ => {}
            }
        }
        Ok(Marker {
            format: format.ok_or("no format line")?,
            written_by,
        })
    }
}

/// This broker's version, as markers and logs name it.
pub fn software_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Read the marker of `data_dir` (`None`: no directory, or one without a marker) and refuse a
/// format this broker does not read. Reads only.
pub(super) async fn check(io: &Io, data_dir: &Path) -> Result<Option<Marker>, StorageError> {
    let path = data_dir.join(catalog::META_DIR).join(FILE);
    if !io.exists(data_dir).await? {
        return Ok(None);
    }
    let marker = small_file::read(io, &path, Marker::decode).await?;
    if let Some(m) = &marker {
        if m.format > READS {
            return Err(StorageError::NewerFormat {
                path,
                found: m.format,
                written_by: Some(m.written_by.clone()),
                reads: READS,
            });
        }
    }
    Ok(marker)
}

/// The directory's format once it is open: the marker's; else (and the marker written)
/// `new_single`, a single node's new directory's (its initial `stillwater.version`), or the
/// first for a cluster node's (it rises with the cluster's `stillwater.version`) and for a
/// directory from before the marker.
pub(super) async fn settle(
    io: &Io,
    data_dir: &Path,
    marker: Option<Marker>,
    new_single: Option<u16>,
) -> Result<u16, StorageError> {
    if let Some(m) = marker {
        io.format
            .store(m.format, std::sync::atomic::Ordering::Release);
        return Ok(m.format);
    }
    let first = new_single.unwrap_or(UNMARKED);
    write(io, data_dir, first).await?;
    Ok(first)
}

/// Record that the directory's files may be in `format`'s formats from now on (before the
/// first such file is written). A format above [`READS`] is refused: this broker could not read
/// back what it would then write.
pub(super) async fn write(io: &Io, data_dir: &Path, format: u16) -> Result<(), StorageError> {
    if format > READS {
        return Err(StorageError::NewerFormat {
            path: data_dir.join(catalog::META_DIR).join(FILE),
            found: format,
            written_by: None,
            reads: READS,
        });
    }
    let marker = Marker {
        format,
        written_by: software_version().to_string(),
    };
    // The marker is the directory's version: written as every version reads it, without the
    // line that names a file's format.
    small_file::write_at(
        io,
        &data_dir.join(catalog::META_DIR),
        &[(FILE, &marker.encode())],
        UNMARKED,
    )
    .await?;
    io.format
        .store(format, std::sync::atomic::Ordering::Release);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_reads_back_and_tolerates_lines_a_later_version_adds() {
        let m = Marker {
            format: 1,
            written_by: "0.1.0".into(),
        };
        assert_eq!(Marker::decode(&m.encode()).unwrap(), m);
        let later = Marker::decode("format=7\nwritten_by=9.0.0\ncluster=abc").unwrap();
        assert_eq!(later.format, 7);
        assert!(Marker::decode("written_by=1").is_err());
        assert!(Marker::decode("format=x").is_err());
    }
}
