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
//! The first entries of a new partition are kept here too ([`Piece`]s), in the same frame as
//! the round's hard states: a partition made with its directory and segment not synced
//! ("unsettled") would otherwise need two syncs of its own for its first Raft entry, its
//! segment's and its directory's, and a thousand new partitions queued two thousand syncs on
//! one disk before any could take a write. Its entries are written to its segment too, without
//! a sync; a start writes the pieces into the segment again before the partition is recovered.
//! Once a partition has [`UNSETTLED_BYTES_MAX`] here, or its log is to be cut, reset or rolled,
//! its segment and directory are synced and a record marks it settled: its pieces go.
//!
//! The file: an 8-byte header (magic and format version), then frames, each the length of its
//! body (4 bytes), the body's CRC-32 (4 bytes) and the body: records, each a kind byte, the
//! partition's key (topic id, 16 bytes; partition, 4) and, big-endian: for a hard state its
//! term, vote and commit (8 bytes each); for a piece its position in the segment (8), its length
//! (4) and its bytes; for a settled partition nothing. (Version 1, still read, held hard states
//! only, without the kind byte.) A start reads frames up to the first that is torn or fails its
//! CRC (a write a crash interrupted, never answered): what follows it was never acknowledged
//! either, as frames are appended one after another.

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
/// Magic and format version (2).
const HEADER: &[u8; 8] = b"swrs\0\0\0\x02";
/// The header of version 1, whose records were hard states only.
const HEADER_V1: &[u8; 8] = b"swrs\0\0\0\x01";
/// A hard state's record: topic id (16 bytes), partition (4), term, vote, commit (8 each),
/// after its kind byte.
pub const RECORD_BYTES: usize = 44;
const KEY_BYTES: usize = 20;
const KIND_HARD_STATE: u8 = 0;
const KIND_PIECE: u8 = 1;
const KIND_SETTLED: u8 = 2;
/// What one unsettled partition keeps here at most (its bytes of entries); past it, the
/// partition is settled. Below the size at which zeros are written ahead of a segment's data
/// (`zeros::ZERO_FILL_FROM_BYTES`), so a piece never has zeros to write.
pub const UNSETTLED_BYTES_MAX: u64 = 2048;
const _: () = assert!(UNSETTLED_BYTES_MAX < super::zeros::ZERO_FILL_FROM_BYTES);
const FRAME_HEADER_BYTES: usize = 8;
/// The file is rewritten once it would grow past this, or past [`REWRITE_FACTOR`] times what is
/// live, whichever is larger.
const REWRITE_BYTES_MIN: u64 = 1 << 20;
const REWRITE_FACTOR: u64 = 4;

/// A partition's key: its topic's id and its index.
pub type Key = (u128, i32);

/// Entries of an unsettled partition: bytes written at `position` of its first segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub position: u64,
    pub data: Bytes,
}

/// Add `piece` to a partition's pieces: a piece at position `p` is the log cut at `p`, then
/// its bytes (a write retried after a failure may be written again where a failed one was),
/// so what earlier pieces hold from `p` on goes.
fn push_piece(pieces: &mut Vec<Piece>, piece: Piece) {
    pieces.retain(|q| q.position < piece.position);
    if let Some(last) = pieces.last_mut() {
        let keep = (piece.position - last.position) as usize;
        if last.data.len() > keep {
            last.data.truncate(keep);
        }
    }
    pieces.push(piece);
}

/// The end of a partition's pieces: where its log ends, as far as they tell.
pub fn pieces_end(pieces: &[Piece]) -> u64 {
    pieces
        .last()
        .map_or(0, |p| p.position + p.data.len() as u64)
}

/// What a start reads from the file.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The newest hard state of each partition.
    pub states: HashMap<Key, HardStateRecord>,
    /// The pieces of each partition not settled since, oldest first.
    pub pieces: HashMap<Key, Vec<Piece>>,
}

/// The file as the commit pipeline (its only writer) keeps it.
pub struct RaftStates {
    dir: PathBuf,
    file: Arc<dyn DiskFile>,
    /// The bytes of the file that are durable and whole: the next frame goes there.
    len: u64,
    live: HashMap<Key, HardStateRecord>,
    /// The unsettled partitions' pieces (a rewrite keeps them).
    pieces: HashMap<Key, Vec<Piece>>,
    rewrite_due: bool,
}

/// What a round writes to the file.
#[derive(Default)]
pub struct Changes {
    pub states: Vec<(Key, HardStateRecord)>,
    pub pieces: Vec<(Key, Piece)>,
    pub settled: Vec<Key>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.states.is_empty() && self.pieces.is_empty() && self.settled.is_empty()
    }
}

/// A round's hard states, ready to be written: a frame appended, or the file rewritten.
pub struct Staged {
    changes: Changes,
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
pub async fn read(io: &Io, data_dir: &Path) -> Result<Recovered, StorageError> {
    let path = data_dir.join(FILE);
    let mut best: Option<(usize, Recovered)> = None;
    for _ in 0..READ_ATTEMPTS {
        let Some(data) = read_whole(io, &path).await? else {
            return Ok(Recovered::default());
        };
        let version = match data.get(..HEADER.len()) {
            Some(h) if h == HEADER => 2,
            Some(h) if h == HEADER_V1 => 1,
            // A later version's file of the same kind: not ours to read.
            Some(h) if h[..4] == HEADER[..4] => {
                let found = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                return Err(StorageError::NewerFormat {
                    path,
                    found: u16::try_from(found).unwrap_or(u16::MAX),
                    written_by: None,
                    reads: 2,
                });
            }
            // A rewrite is renamed in only once whole, so the header is always there.
            _ => {
                return Err(StorageError::Corrupt {
                    path,
                    reason: "not a file of Raft hard states (bad header or format version)".into(),
                })
            }
        };
        let (read, states) = parse(&data.slice(HEADER.len()..), version);
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

/// What a copy of the file says, read offline (the operator's tools): the frames up to the
/// first that is torn or fails its checks, the bytes they take (the header included), and
/// what they tell; an error for a file that is not one of Raft hard states.
pub fn parse_file(data: &Bytes) -> Result<(usize, Recovered), String> {
    let version = match data.get(..HEADER.len()) {
        Some(h) if h == HEADER => 2,
        Some(h) if h == HEADER_V1 => 1,
        _ => return Err("not a file of Raft hard states (bad header or a later format)".into()),
    };
    let (read, states) = parse(&data.slice(HEADER.len()..), version);
    Ok((HEADER.len() + read, states))
}

/// The frames of `data` (of format `version`) up to the first that is torn, fails its CRC or
/// does not parse: how many bytes they take, and what they tell.
fn parse(data: &Bytes, version: u8) -> (usize, Recovered) {
    let mut out = Recovered::default();
    let mut at = 0;
    while data.len() - at >= FRAME_HEADER_BYTES {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        let body_at = at + FRAME_HEADER_BYTES;
        if len == 0 || data.len() - body_at < len {
            break;
        }
        let body = data.slice(body_at..body_at + len);
        if crc32fast::hash(&body) != crc {
            break;
        }
        let whole = if version == 1 {
            parse_v1(&body, &mut out)
        } else {
            parse_body(&body, &mut out)
        };
        if !whole {
            break;
        }
        at = body_at + len;
    }
    (at, out)
}

/// A frame of version 1: hard states only.
fn parse_v1(body: &[u8], out: &mut Recovered) -> bool {
    if !body.len().is_multiple_of(RECORD_BYTES) {
        return false;
    }
    for r in body.chunks_exact(RECORD_BYTES) {
        let (key, hs) = decode(r);
        out.states.insert(key, hs);
    }
    true
}

/// A frame's records, applied to `out` only if all of them parse.
fn parse_body(body: &Bytes, out: &mut Recovered) -> bool {
    let mut records = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let Some(kind) = body.get(at).copied() else {
            return false;
        };
        let Some(key) = body.get(at + 1..at + 1 + KEY_BYTES).map(decode_key) else {
            return false;
        };
        at += 1 + KEY_BYTES;
        match kind {
            KIND_HARD_STATE => {
                let Some(r) = body.get(at - KEY_BYTES..at + RECORD_BYTES - KEY_BYTES) else {
                    return false;
                };
                records.push(Record::State(key, decode(r).1));
                at += RECORD_BYTES - KEY_BYTES;
            }
            KIND_PIECE => {
                let Some(h) = body.get(at..at + 12) else {
                    return false;
                };
                let position = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
                let len = u32::from_be_bytes(h[8..].try_into().expect("4 bytes")) as usize;
                at += 12;
                if body.len() - at < len {
                    return false;
                }
                // A copy: the file read whole is not kept for the pieces it holds.
                let data = Bytes::copy_from_slice(&body[at..at + len]);
                records.push(Record::Piece(key, Piece { position, data }));
                at += len;
            }
            KIND_SETTLED => records.push(Record::Settled(key)),
            _ => return false,
        }
    }
    for r in records {
        match r {
            Record::State(key, hs) => {
                out.states.insert(key, hs);
            }
            Record::Piece(key, piece) => push_piece(out.pieces.entry(key).or_default(), piece),
            Record::Settled(key) => {
                out.pieces.remove(&key);
            }
        }
    }
    true
}

enum Record {
    State(Key, HardStateRecord),
    Piece(Key, Piece),
    Settled(Key),
}

fn decode_key(r: &[u8]) -> Key {
    let topic = u128::from_be_bytes(r[..16].try_into().expect("16 bytes"));
    let index = i32::from_be_bytes(r[16..20].try_into().expect("4 bytes"));
    (topic, index)
}

fn put_key(out: &mut BytesMut, kind: u8, (topic, index): Key) {
    out.put_u8(kind);
    out.put_u128(topic);
    out.put_i32(index);
}

fn encode(out: &mut BytesMut, key: Key, hs: &HardStateRecord) {
    put_key(out, KIND_HARD_STATE, key);
    out.put_u64(hs.term);
    out.put_u64(hs.vote);
    out.put_u64(hs.commit);
}

fn encode_piece(out: &mut BytesMut, key: Key, piece: &Piece) {
    put_key(out, KIND_PIECE, key);
    out.put_u64(piece.position);
    out.put_u32(piece.data.len() as u32);
    out.extend_from_slice(&piece.data);
}

/// A hard state's record (without its kind byte).
fn decode(r: &[u8]) -> (Key, HardStateRecord) {
    let u64_at = |i: usize| u64::from_be_bytes(r[i..i + 8].try_into().expect("8 bytes"));
    let hs = HardStateRecord {
        term: u64_at(20),
        vote: u64_at(28),
        commit: u64_at(36),
    };
    (decode_key(r), hs)
}

/// One frame: hard states, pieces, then settled partitions (so that a partition settled in
/// the round its last piece was recorded keeps none).
fn frame<'a>(
    states: impl Iterator<Item = (&'a Key, &'a HardStateRecord)>,
    pieces: impl Iterator<Item = (&'a Key, &'a Piece)>,
    settled: impl Iterator<Item = &'a Key>,
) -> Bytes {
    let mut body = BytesMut::new();
    for (key, hs) in states {
        encode(&mut body, *key, hs);
    }
    for (key, piece) in pieces {
        encode_piece(&mut body, *key, piece);
    }
    for key in settled {
        put_key(&mut body, KIND_SETTLED, *key);
    }
    let mut out = BytesMut::with_capacity(FRAME_HEADER_BYTES + body.len());
    out.put_u32(body.len() as u32);
    out.put_u32(crc32fast::hash(&body));
    out.extend_from_slice(&body);
    out.freeze()
}

impl RaftStates {
    /// Start the file afresh with the hard state of every replicated partition the directory
    /// holds, as recovered, and the pieces of those still unsettled: what the old file held of
    /// deleted partitions, or after a torn frame, goes.
    pub async fn open(
        io: &Io,
        data_dir: &Path,
        partitions: impl Iterator<Item = &Arc<Partition>>,
        mut pieces: HashMap<Key, Vec<Piece>>,
    ) -> Result<RaftStates, StorageError> {
        let mut live = HashMap::new();
        let mut kept = HashMap::new();
        for p in partitions {
            let st = p.state();
            let Some(r) = st.replica.as_ref() else {
                continue;
            };
            let key = (p.topic_id, p.index);
            live.insert(key, r.hard_state);
            if r.unsettled.is_some() {
                if let Some(pieces) = pieces.remove(&key) {
                    kept.insert(key, pieces);
                }
            }
        }
        let text = whole_text(&live, &kept, &Changes::default());
        let (file, len) = rewrite(io, data_dir, text).await?;
        Ok(RaftStates {
            dir: data_dir.to_path_buf(),
            file,
            len,
            live,
            pieces: kept,
            rewrite_due: false,
        })
    }

    /// The write of a round's changes (`None`: nothing to write).
    pub fn stage(&self, changes: Changes) -> Option<Staged> {
        if changes.is_empty() {
            return None;
        }
        let frame = frame(
            changes.states.iter().map(|(k, hs)| (k, hs)),
            changes.pieces.iter().map(|(k, p)| (k, p)),
            changes.settled.iter(),
        );
        let live_bytes = (self.live.len().max(changes.states.len()) * (RECORD_BYTES + 1)) as u64
            + self.piece_bytes();
        let limit = REWRITE_BYTES_MIN.max(REWRITE_FACTOR * live_bytes);
        let op = if self.rewrite_due || self.len + frame.len() as u64 > limit {
            Op::Rewrite {
                dir: self.dir.clone(),
                text: whole_text(&self.live, &self.pieces, &changes),
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

    /// The bytes the unsettled partitions' pieces take.
    fn piece_bytes(&self) -> u64 {
        self.pieces
            .values()
            .flatten()
            .map(|p| (1 + KEY_BYTES + 12 + p.data.len()) as u64)
            .sum()
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
        let Changes {
            states,
            pieces,
            settled,
        } = staged.changes;
        self.live.extend(states);
        for (key, piece) in pieces {
            push_piece(self.pieces.entry(key).or_default(), piece);
        }
        for key in settled {
            self.pieces.remove(&key);
        }
    }

    /// The next write rewrites the file (the directory failed and healed).
    pub fn rewrite_next(&mut self) {
        self.rewrite_due = true;
    }

    /// Deleted partitions: the file is rewritten without their records before their files go
    /// (a topic made again under their name, should it get the same id, starts with no term).
    pub async fn forget(&mut self, io: &Io, keys: &[Key]) -> Result<(), StorageError> {
        let before = self.live.len() + self.pieces.len();
        for key in keys {
            self.live.remove(key);
            self.pieces.remove(key);
        }
        if self.live.len() + self.pieces.len() == before {
            return Ok(());
        }
        let text = whole_text(&self.live, &self.pieces, &Changes::default());
        match rewrite(io, &self.dir, text).await {
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

/// The whole file for `live` and `pieces` with `changes` over them.
fn whole_text(
    live: &HashMap<Key, HardStateRecord>,
    pieces: &HashMap<Key, Vec<Piece>>,
    changes: &Changes,
) -> Bytes {
    let mut all: std::collections::BTreeMap<Key, HardStateRecord> =
        live.iter().map(|(k, hs)| (*k, *hs)).collect();
    all.extend(changes.states.iter().copied());
    let mut kept: std::collections::BTreeMap<Key, Vec<Piece>> =
        pieces.iter().map(|(k, v)| (*k, v.clone())).collect();
    for (key, piece) in &changes.pieces {
        push_piece(kept.entry(*key).or_default(), piece.clone());
    }
    for key in &changes.settled {
        kept.remove(key);
    }
    let mut text = BytesMut::from(&HEADER[..]);
    if !all.is_empty() || !kept.is_empty() {
        let pieces = kept.iter().flat_map(|(k, v)| v.iter().map(move |p| (k, p)));
        text.extend_from_slice(&frame(all.iter(), pieces, std::iter::empty()));
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

    fn states(
        records: &[(Key, HardStateRecord)],
    ) -> impl Iterator<Item = (&Key, &HardStateRecord)> {
        records.iter().map(|(k, hs)| (k, hs))
    }

    fn piece(position: u64, data: &'static [u8]) -> Piece {
        Piece {
            position,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn frames_read_back_newest_last_and_stop_at_a_torn_one() {
        let a: Key = (7, 0);
        let b: Key = (7, 1);
        let mut data = BytesMut::new();
        data.extend_from_slice(&frame(
            states(&[(a, hs(1, 1, 0)), (b, hs(1, 2, 0))]),
            std::iter::empty(),
            std::iter::empty(),
        ));
        data.extend_from_slice(&frame(
            states(&[(a, hs(2, 3, 5))]),
            std::iter::empty(),
            std::iter::empty(),
        ));
        let whole = data.len();
        let torn = frame(
            states(&[(b, hs(9, 9, 9))]),
            std::iter::empty(),
            std::iter::empty(),
        );
        data.extend_from_slice(&torn[..torn.len() - 3]);
        let (read, out) = parse(&data.clone().freeze(), 2);
        assert_eq!(read, whole);
        assert_eq!(out.states[&a], hs(2, 3, 5));
        assert_eq!(out.states[&b], hs(1, 2, 0));
        // A flipped bit ends the file there too.
        let mut bad = data[..whole].to_vec();
        bad[FRAME_HEADER_BYTES + 3] ^= 1;
        let (read, out) = parse(&Bytes::from(bad), 2);
        assert_eq!(read, 0);
        assert!(out.states.is_empty());
    }

    #[test]
    fn pieces_read_back_in_order_until_their_partition_is_settled() {
        let a: Key = (7, 0);
        let b: Key = (7, 1);
        let first = [(a, piece(0, b"first")), (b, piece(0, b"b's"))];
        let second = [(a, piece(5, b"second"))];
        let mut data = BytesMut::new();
        data.extend_from_slice(&frame(
            states(&[(a, hs(1, 1, 0))]),
            first.iter().map(|(k, p)| (k, p)),
            std::iter::empty(),
        ));
        data.extend_from_slice(&frame(
            std::iter::empty(),
            second.iter().map(|(k, p)| (k, p)),
            [b].iter(),
        ));
        let (read, out) = parse(&data.clone().freeze(), 2);
        assert_eq!(read, data.len());
        assert_eq!(
            out.pieces[&a],
            vec![piece(0, b"first"), piece(5, b"second")]
        );
        assert!(!out.pieces.contains_key(&b), "settled: its pieces went");
        assert_eq!(out.states[&a], hs(1, 1, 0));
        // A frame that does not parse ends the file, as a torn one does: none of it counts.
        let mut bad = BytesMut::new();
        bad.put_u8(9);
        bad.extend_from_slice(&[0; KEY_BYTES]);
        let mut framed = BytesMut::new();
        framed.put_u32(bad.len() as u32);
        framed.put_u32(crc32fast::hash(&bad));
        framed.extend_from_slice(&bad);
        let mut with_bad = data.clone();
        with_bad.extend_from_slice(&framed);
        let (read, _) = parse(&with_bad.freeze(), 2);
        assert_eq!(read, data.len());
    }

    #[test]
    fn a_piece_written_where_an_earlier_one_was_replaces_what_it_held_from_there() {
        let mut pieces = vec![piece(0, b"aaaa"), piece(4, b"bbbbbb")];
        push_piece(&mut pieces, piece(6, b"cc"));
        assert_eq!(
            pieces,
            vec![piece(0, b"aaaa"), piece(4, b"bb"), piece(6, b"cc")]
        );
        assert_eq!(pieces_end(&pieces), 8);
        push_piece(&mut pieces, piece(2, b"d"));
        assert_eq!(pieces, vec![piece(0, b"aa"), piece(2, b"d")]);
        assert_eq!(pieces_end(&pieces), 3);
    }

    #[test]
    fn a_file_of_version_1_is_read() {
        let a: Key = (7, 0);
        let mut body = BytesMut::new();
        body.put_u128(a.0);
        body.put_i32(a.1);
        for v in [3u64, 2, 1] {
            body.put_u64(v);
        }
        let mut data = BytesMut::new();
        data.put_u32(body.len() as u32);
        data.put_u32(crc32fast::hash(&body));
        data.extend_from_slice(&body);
        let (read, out) = parse(&data.clone().freeze(), 1);
        assert_eq!(read, data.len());
        assert_eq!(out.states[&a], hs(3, 2, 1));
    }

    #[test]
    fn a_rewrite_holds_every_live_partition_once_and_the_unsettled_pieces() {
        let live = HashMap::from([((1, 0), hs(1, 1, 1)), ((2, 0), hs(3, 2, 0))]);
        let pieces = HashMap::from([
            ((1, 0), vec![piece(0, b"one")]),
            ((2, 0), vec![piece(0, b"two")]),
        ]);
        let changes = Changes {
            states: vec![((1, 0), hs(4, 1, 2)), ((3, 5), hs(1, 3, 0))],
            pieces: vec![((1, 0), piece(3, b"more"))],
            settled: vec![(2, 0)],
        };
        let text = whole_text(&live, &pieces, &changes);
        assert_eq!(&text[..8], HEADER);
        let (read, out) = parse(&text.slice(8..), 2);
        assert_eq!(read, text.len() - 8);
        assert_eq!(out.states.len(), 3);
        assert_eq!(out.states[&(1, 0)], hs(4, 1, 2));
        assert_eq!(out.states[&(2, 0)], hs(3, 2, 0));
        assert_eq!(out.states[&(3, 5)], hs(1, 3, 0));
        assert_eq!(
            out.pieces[&(1, 0)],
            vec![piece(0, b"one"), piece(3, b"more")]
        );
        assert!(!out.pieces.contains_key(&(2, 0)));
    }
}
