//! Small text files that must be whole or absent (topic metadata, producer id blocks, log
//! start offsets): a body, then a `crc32=` line. Written aside, synced, renamed over the old
//! file, the directory synced — a crash leaves the old file or the new one, never half of one.
//! Read back with the CRC checked; a file that fails is read again before it is called corrupt
//! (a misread must not stop the node).

use std::path::Path;

use bytes::Bytes;
use io_backend::OpenMode;

use super::log::{read_whole, READ_ATTEMPTS};
use super::{Io, StorageError};

/// Write `dir/name` durably with `body` (which must not end in a `crc32=` line of its own).
pub async fn write(io: &Io, dir: &Path, name: &str, body: &str) -> Result<(), StorageError> {
    let text = text(body);
    let tmp = dir.join(format!("{name}.tmp"));
    let f = io.open(&tmp, OpenMode::Truncate).await?;
    io.write_at(&f, Bytes::from(text), 0).await?;
    io.sync_data(&f).await?;
    io.rename(&tmp, &dir.join(name)).await?;
    io.sync_dir(dir).await
}

/// The file's text for `body`: the body, then its CRC line.
pub fn text(body: &str) -> String {
    format!("{body}\ncrc32={:08x}\n", crc32fast::hash(body.as_bytes()))
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
        match check(&data).and_then(&parse) {
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

/// A file's body, if its text is whole (its CRC line matches).
pub fn check(data: &[u8]) -> Result<&str, String> {
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
