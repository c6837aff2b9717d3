//! Small text files that must be whole or absent (topic metadata, producer id blocks, log
//! start offsets): a body, then a `crc32=` line. Written aside, synced, renamed over the old
//! file, the directory synced — a crash leaves the old file or the new one, never half of one.
//! Read back with the CRC checked; a file that fails is read again before it is called corrupt
//! (a misread must not stop the node).
//!
//! From format 2 ([`super::format`]) a file's first line names its format,
//! `stillwater-format=N` (inside what the CRC covers); a file without it is format 1. A file
//! of a format this broker does not read is refused as [`StorageError::NewerFormat`].

use std::path::Path;

use bytes::Bytes;
use io_backend::OpenMode;

use super::log::{read_whole, READ_ATTEMPTS};
use super::{Io, StorageError};

/// Write `dir/name` durably with `body` (which must not end in a `crc32=` line of its own).
pub async fn write(io: &Io, dir: &Path, name: &str, body: &str) -> Result<(), StorageError> {
    write_all(io, dir, &[(name, body)]).await
}

/// Write several files of one directory durably, each as [`write`] does, all in flight
/// together and their renames made durable by one sync of the directory (a Raft write's
/// record and hard state: the directory's sync was a third of an election's syncs). Each file
/// is whole or absent after a crash; which of them were renamed in is not ordered. No files,
/// no disk work.
pub async fn write_all(io: &Io, dir: &Path, files: &[(&str, &str)]) -> Result<(), StorageError> {
    write_at(io, dir, files, io.format()).await
}

/// [`write_all`] in the format of level `format`.
pub async fn write_at(
    io: &Io,
    dir: &Path,
    files: &[(&str, &str)],
    format: u16,
) -> Result<(), StorageError> {
    if files.is_empty() {
        return Ok(());
    }
    let aside = files.iter().map(|&(name, body)| async move {
        let tmp = dir.join(format!("{name}.tmp"));
        let f = io.open(&tmp, OpenMode::Truncate).await?;
        io.write_at(&f, Bytes::from(text(format, body)), 0).await?;
        io.sync_data(&f).await?;
        io.rename(&tmp, &dir.join(name)).await
    });
    for done in futures::future::join_all(aside).await {
        done?;
    }
    io.sync_dir(dir).await
}

/// The line that names a file's format (from format 2 on).
const FORMAT_LINE: &str = "stillwater-format=";

/// The file's text for `body` in the format of level `format`: the line naming the format
/// (from level 2), the body, then the CRC line of both.
pub fn text(format: u16, body: &str) -> String {
    let covered = if format >= super::format::VERSIONED {
        format!("{FORMAT_LINE}{format}\n{body}")
    } else {
        body.to_string()
    };
    format!(
        "{covered}\ncrc32={:08x}\n",
        crc32fast::hash(covered.as_bytes())
    )
}

/// Read `path`, check its CRC and `parse` its body; `None` if there is no such file.
pub async fn read<T>(
    io: &Io,
    path: &Path,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, StorageError> {
    let mut attempt = 1;
    loop {
        let Some(data) = read_whole(io, path).await? else {
            return Ok(None);
        };
        let checked = check_versioned(&data);
        if let Ok((format, _)) = &checked {
            if *format > super::format::READS {
                return Err(StorageError::NewerFormat {
                    path: path.to_path_buf(),
                    found: *format,
                    written_by: None,
                    reads: super::format::READS,
                });
            }
        }
        match checked.and_then(|(_, body)| parse(body)) {
            Ok(v) => return Ok(Some(v)),
            Err(reason) if attempt >= READ_ATTEMPTS => {
                return Err(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    reason,
                })
            }
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "file failed its checks; reading again");
                attempt += 1;
            }
        }
    }
}

/// A file's body, if its text is whole (its CRC line matches) and in a format this broker
/// reads.
pub fn check(data: &[u8]) -> Result<&str, String> {
    let (format, body) = check_versioned(data)?;
    if format > super::format::READS {
        return Err(format!(
            "format {format}, of a later version (this one reads up to {})",
            super::format::READS
        ));
    }
    Ok(body)
}

/// A whole file's format and body (the line naming the format taken off).
pub fn check_versioned(data: &[u8]) -> Result<(u16, &str), String> {
    let covered = check_crc(data)?;
    let Some(rest) = covered.strip_prefix(FORMAT_LINE) else {
        return Ok((1, covered));
    };
    let (level, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let level = level
        .parse::<u16>()
        .map_err(|e| format!("bad format line: {e}"))?;
    Ok((level, body))
}

/// The text a file's CRC line covers, if it matches.
fn check_crc(data: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let (body, crc_line) = text
        .trim_end()
        .rsplit_once('\n')
        .ok_or_else(|| "no checksum line".to_string())?;
    let stored = crc_line
        .strip_prefix("crc32=")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| format!("bad checksum line {crc_line:?}"))?;
    let computed = crc32fast::hash(body.as_bytes());
    if stored != computed {
        return Err(format!(
            "checksum {stored:08x} does not match {computed:08x}"
        ));
    }
    Ok(body)
}

/// A file's text as it travels to another broker (a Raft snapshot of the cluster metadata
/// carries its snapshot's): gzip at its fastest level, which shrinks JSON about tenfold, so the
/// text one message can carry is about ten times larger.
pub fn pack(text: &[u8]) -> Bytes {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    // Writing to memory cannot fail.
    enc.write_all(text).expect("gzip into memory");
    Bytes::from(enc.finish().expect("gzip into memory"))
}

/// The text [`pack`] made, refused when it would be larger than `limit` bytes; a text that is
/// not packed (gzip's magic bytes never begin a file's text) is taken as it is, as a broker
/// from before packing sends it.
pub fn unpack(carried: &[u8], limit: usize) -> Result<Bytes, String> {
    if !carried.starts_with(&[0x1f, 0x8b]) {
        return Ok(Bytes::copy_from_slice(carried));
    }
    crate::records::decompress(1, carried, limit)
        .map(Bytes::from)
        .map_err(|e| format!("cannot unpack: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_its_format_from_format_2_and_either_form_reads_back() {
        let body = "{\"a\":1}\nsecond line";
        let old = text(1, body);
        assert!(old.starts_with("{\"a\":1}"), "{old}");
        assert_eq!(check_versioned(old.as_bytes()), Ok((1, body)));
        let new = text(2, body);
        assert!(new.starts_with("stillwater-format=2\n{\"a\":1}"), "{new}");
        assert_eq!(check_versioned(new.as_bytes()), Ok((2, body)));
        assert_eq!(check(new.as_bytes()), Ok(body));
        // The CRC covers the format line: changing it is damage, not another format.
        let forged = new.replacen("format=2", "format=1", 1);
        assert!(check(forged.as_bytes()).is_err());
        // A later format is refused by `check`, told by `check_versioned`.
        let later = text(super::super::format::READS + 1, body);
        assert!(check(later.as_bytes())
            .unwrap_err()
            .contains("later version"));
        assert_eq!(
            check_versioned(later.as_bytes()).map(|(f, _)| f),
            Ok(super::super::format::READS + 1)
        );
    }
}
