//! The Raft hard states (term, vote, commit) of every replicated partition of the data
//! directory, in one file: `raft-states`.
//!
//! Invariant: a hard state a Raft write made durable is the one the next start reads for its
//! partition — the newest record of the partition in the file, or, for a partition the file
//! has never held, the partition's own `raft-state` file of an older version. A record belongs
//! to one incarnation of a partition: it is keyed by the topic's id, which a topic deleted and
//! created again under the same name does not share.
//!
//! Each partition's hard state was a small file of its own, written aside, synced, renamed and
//! its directory synced: three syncs per Raft write and partition, so that a thousand new
//! partitions, each writing its first term, queued thousands of syncs on one disk. Here the
//! hard states of all partitions of a commit round are one frame appended to the file and one
//! sync, whatever the number of partitions. The file grows until it is rewritten whole (the
//! newest record of each live partition, written aside, synced and renamed over it) once it
//! holds several times what is live, at every start, when partitions are deleted, and after the
//! directory failed (what a failed append left behind goes with the rewrite).
//!
//! The file: an 8-byte header (magic and format version), then frames, each the length of its
//! body (4 bytes), the body's CRC-32 (4 bytes) and the body: records of [`RECORD_BYTES`] (topic
//! id, partition, term, vote, commit, big-endian). A start reads frames up to the first that is
//! torn or fails its CRC (a write a crash interrupted, never answered): what follows it was
//! never acknowledged either, as frames are appended one after another.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use io_backend::{DiskFile, OpenMode};

use super::log::replica::HardStateRecord;
use super::log::{read_whole, Partition, READ_ATTEMPTS};
use super::{Io, StorageError};

/// The file's name in the data directory.
pub const FILE: &str = "raft-states";
const TMP_FILE: &str = "raft-states.tmp";
/// Magic and format version (1).
const HEADER: &[u8; 8] = b"swrs\0\0\0\x01";
/// One record: topic id (16 bytes), partition (4), term, vote, commit (8 each).
pub const RECORD_BYTES: usize = 44;
const FRAME_HEADER_BYTES: usize = 8;
/// The file is rewritten once it would grow past this, or past [`REWRITE_FACTOR`] times what is
/// live, whichever is larger.
const REWRITE_BYTES_MIN: u64 = 1 << 20;
const REWRITE_FACTOR: u64 = 4;

/// A partition's key: its topic's id and its index.
pub type Key = (u128, i32);

/// The file as the commit pipeline (its only writer) keeps it.
pub struct RaftStates {
    dir: PathBuf,
    file: Arc<dyn DiskFile>,
    /// The bytes of the file that are durable and whole: the next frame goes there.
    len: u64,
    live: HashMap<Key, HardStateRecord>,
    rewrite_due: bool,
}

/// A round's hard states, ready to be written: a frame appended, or the file rewritten.
pub struct Staged {
    changes: Vec<(Key, HardStateRecord)>,
    op: Op,
}

enum Op {
    Append {
        file: Arc<dyn DiskFile>,
        at: u64,
        frame: Bytes,
    },
    Rewrite {
        dir: PathBuf,
        text: Bytes,
    },
}

/// What a staged write left: the file appended to, or the rewritten file.
pub enum Written {
    Appended(u64),
    Rewritten(Arc<dyn DiskFile>, u64),
}

/// Read the file of `data_dir`: the newest record of each partition (none if there is no
/// file). A frame that fails its checks ends the file; when one does before the file's end,
/// the file is read again (a misread must not pass for a torn write) and the longest reading
/// taken.
pub async fn read(io: &Io, data_dir: &Path) -> Result<HashMap<Key, HardStateRecord>, StorageError> {
    let path = data_dir.join(FILE);
    let mut best: Option<(usize, HashMap<Key, HardStateRecord>)> = None;
    for _ in 0..READ_ATTEMPTS {
        let Some(data) = read_whole(io, &path).await? else {
            return Ok(HashMap::new());
        };
        if data.len() < HEADER.len() || &data[..HEADER.len()] != HEADER {
            // A rewrite is renamed in only once whole, so the header is always there.
            return Err(StorageError::Corrupt {
                path,
                reason: "not a file of Raft hard states (bad header or format version)".into(),
            });
        }
        let (read, states) = parse(&data[HEADER.len()..]);
        let whole = HEADER.len() + read == data.len();
        if best.as_ref().is_none_or(|(n, _)| read > *n) {
            best = Some((read, states));
        }
        if whole {
            break;
        }
        tracing::warn!(file = %path.display(), at = HEADER.len() + read, len = data.len(), "the file of Raft hard states ends in a frame that fails its checks (a write a crash interrupted, or a misread): reading it again");
    }
    Ok(best.map(|(_, s)| s).unwrap_or_default())
}

/// The frames of `data` up to the first that is torn or fails its CRC: how many bytes they
/// take, and the newest record of each partition.
fn parse(data: &[u8]) -> (usize, HashMap<Key, HardStateRecord>) {
    let mut states = HashMap::new();
    let mut at = 0;
    while data.len() - at >= FRAME_HEADER_BYTES {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        let body_at = at + FRAME_HEADER_BYTES;
        if len == 0 || !len.is_multiple_of(RECORD_BYTES) || data.len() - body_at < len {
            break;
        }
        let body = &data[body_at..body_at + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        for r in body.chunks_exact(RECORD_BYTES) {
            let (key, hs) = decode(r);
            states.insert(key, hs);
        }
        at = body_at + len;
    }
    (at, states)
}

fn encode(out: &mut BytesMut, (topic, index): Key, hs: &HardStateRecord) {
    out.put_u128(topic);
    out.put_i32(index);
    out.put_u64(hs.term);
    out.put_u64(hs.vote);
    out.put_u64(hs.commit);
}

fn decode(r: &[u8]) -> (Key, HardStateRecord) {
    let u64_at = |i: usize| u64::from_be_bytes(r[i..i + 8].try_into().expect("8 bytes"));
    let topic = u128::from_be_bytes(r[..16].try_into().expect("16 bytes"));
    let index = i32::from_be_bytes(r[16..20].try_into().expect("4 bytes"));
    let hs = HardStateRecord {
        term: u64_at(20),
        vote: u64_at(28),
        commit: u64_at(36),
    };
    ((topic, index), hs)
}

/// One frame of these records.
fn frame<'a>(records: impl ExactSizeIterator<Item = (&'a Key, &'a HardStateRecord)>) -> Bytes {
    let mut body = BytesMut::with_capacity(records.len() * RECORD_BYTES);
    for (key, hs) in records {
        encode(&mut body, *key, hs);
    }
    let mut out = BytesMut::with_capacity(FRAME_HEADER_BYTES + body.len());
    out.put_u32(body.len() as u32);
    out.put_u32(crc32fast::hash(&body));
    out.extend_from_slice(&body);
    out.freeze()
}

impl RaftStates {
    /// Start the file afresh with the hard state of every replicated partition the directory
    /// holds, as recovered: what the old file held of deleted partitions, or after a torn
    /// frame, goes.
    pub async fn open(
        io: &Io,
        data_dir: &Path,
        partitions: impl Iterator<Item = &Arc<Partition>>,
    ) -> Result<RaftStates, StorageError> {
        let live: HashMap<Key, HardStateRecord> = partitions
            .filter_map(|p| {
                let hs = p.state().replica.as_ref()?.hard_state;
                Some(((p.topic_id, p.index), hs))
            })
            .collect();
        let text = whole_text(&live, &[]);
        let (file, len) = rewrite(io, data_dir, text).await?;
        Ok(RaftStates {
            dir: data_dir.to_path_buf(),
            file,
            len,
            live,
            rewrite_due: false,
        })
    }

    /// The write of a round's hard states (`None`: nothing to write).
    pub fn stage(&self, changes: Vec<(Key, HardStateRecord)>) -> Option<Staged> {
        if changes.is_empty() {
            return None;
        }
        let frame = frame(changes.iter().map(|(k, hs)| (k, hs)));
        let live_bytes = (self.live.len().max(changes.len()) * RECORD_BYTES) as u64;
        let limit = REWRITE_BYTES_MIN.max(REWRITE_FACTOR * live_bytes);
        let op = if self.rewrite_due || self.len + frame.len() as u64 > limit {
            Op::Rewrite {
                dir: self.dir.clone(),
                text: whole_text(&self.live, &changes),
            }
        } else {
            Op::Append {
                file: self.file.clone(),
                at: self.len,
                frame,
            }
        };
        Some(Staged { changes, op })
    }

    /// The staged write's outcome: on success its records are the file's; on a failure the
    /// next write rewrites the file (a failed append may have left part of a frame).
    pub fn finish(&mut self, staged: Staged, outcome: Option<Written>) {
        match outcome {
            Some(Written::Appended(len)) => self.len = len,
            Some(Written::Rewritten(file, len)) => {
                self.file = file;
                self.len = len;
                self.rewrite_due = false;
            }
            None => {
                self.rewrite_due = true;
                return;
            }
        }
        self.live.extend(staged.changes);
    }

    /// The next write rewrites the file (the directory failed and healed).
    pub fn rewrite_next(&mut self) {
        self.rewrite_due = true;
    }

    /// Deleted partitions: the file is rewritten without their records before their files go
    /// (a topic made again under their name, should it get the same id, starts with no term).
    pub async fn forget(&mut self, io: &Io, keys: &[Key]) -> Result<(), StorageError> {
        let before = self.live.len();
        for key in keys {
            self.live.remove(key);
        }
        if self.live.len() == before {
            return Ok(());
        }
        match rewrite(io, &self.dir, whole_text(&self.live, &[])).await {
            Ok((file, len)) => {
                self.file = file;
                self.len = len;
                self.rewrite_due = false;
                Ok(())
            }
            Err(e) => {
                self.rewrite_due = true;
                Err(e)
            }
        }
    }

    /// How many partitions' records the file holds.
    pub fn live(&self) -> usize {
        self.live.len()
    }
}

impl Staged {
    /// Write and sync it.
    pub async fn write(&self, io: &Io) -> Result<Written, StorageError> {
        match &self.op {
            Op::Append { file, at, frame } => {
                io.write_all_and_sync(file, vec![(frame.clone(), *at)])
                    .await?;
                Ok(Written::Appended(at + frame.len() as u64))
            }
            Op::Rewrite { dir, text } => {
                let (file, len) = rewrite(io, dir, text.clone()).await?;
                Ok(Written::Rewritten(file, len))
            }
        }
    }
}

/// The whole file for `live` with `changes` over it.
fn whole_text(live: &HashMap<Key, HardStateRecord>, changes: &[(Key, HardStateRecord)]) -> Bytes {
    let mut all: std::collections::BTreeMap<Key, HardStateRecord> =
        live.iter().map(|(k, hs)| (*k, *hs)).collect();
    all.extend(changes.iter().copied());
    let mut text = BytesMut::from(&HEADER[..]);
    if !all.is_empty() {
        text.extend_from_slice(&frame(all.iter()));
    }
    text.freeze()
}

/// Write `text` aside, sync it, rename it over the file and sync the directory; the file
/// opened again for appends.
async fn rewrite(
    io: &Io,
    dir: &Path,
    text: Bytes,
) -> Result<(Arc<dyn DiskFile>, u64), StorageError> {
    let len = text.len() as u64;
    let tmp = dir.join(TMP_FILE);
    let f = io.open(&tmp, OpenMode::Truncate).await?;
    io.write_all_and_sync(&f, vec![(text, 0)]).await?;
    drop(f);
    let path = dir.join(FILE);
    io.rename(&tmp, &path).await?;
    io.sync_dir(dir).await?;
    let file = io.open(&path, OpenMode::Existing).await?;
    Ok((file, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(term: u64, vote: u64, commit: u64) -> HardStateRecord {
        HardStateRecord { term, vote, commit }
    }

    #[test]
    fn frames_read_back_newest_last_and_stop_at_a_torn_one() {
        let a: Key = (7, 0);
        let b: Key = (7, 1);
        let mut data = Vec::new();
        data.extend_from_slice(&frame([(&a, &hs(1, 1, 0)), (&b, &hs(1, 2, 0))].into_iter()));
        data.extend_from_slice(&frame([(&a, &hs(2, 3, 5))].into_iter()));
        let whole = data.len();
        let torn = frame([(&b, &hs(9, 9, 9))].into_iter());
        data.extend_from_slice(&torn[..torn.len() - 3]);
        let (read, states) = parse(&data);
        assert_eq!(read, whole);
        assert_eq!(states[&a], hs(2, 3, 5));
        assert_eq!(states[&b], hs(1, 2, 0));
        // A flipped bit ends the file there too.
        let mut bad = data[..whole].to_vec();
        bad[FRAME_HEADER_BYTES + 3] ^= 1;
        let (read, states) = parse(&bad);
        assert_eq!(read, 0);
        assert!(states.is_empty());
    }

    #[test]
    fn a_rewrite_holds_every_live_partition_once() {
        let live = HashMap::from([((1, 0), hs(1, 1, 1)), ((2, 0), hs(3, 2, 0))]);
        let text = whole_text(&live, &[((1, 0), hs(4, 1, 2)), ((3, 5), hs(1, 3, 0))]);
        assert_eq!(&text[..8], HEADER);
        let (read, states) = parse(&text[8..]);
        assert_eq!(read, text.len() - 8);
        assert_eq!(read, FRAME_HEADER_BYTES + 3 * RECORD_BYTES);
        assert_eq!(states[&(1, 0)], hs(4, 1, 2));
        assert_eq!(states[&(2, 0)], hs(3, 2, 0));
        assert_eq!(states[&(3, 5)], hs(1, 3, 0));
    }
}
