//! The sparse offset index and time index of a segment, in memory and on disk.
//!
//! Kafka does not checksum its index files, so ours carry a CRC-32 (`crc32fast`) per entry and
//! are checked on load; an index that fails any check is rebuilt by scanning the segment.
//!
//! On disk, entry `i` of `.index` is `relative offset u32 | position u32 | crc u32` and entry `i`
//! of `.timeindex` is `timestamp i64 | relative offset u32 | crc u32`, where the timestamp is the
//! largest timestamp of all batches *before* the entry's position. A closed segment's
//! `.timeindex` has one more, trailing entry: the segment's largest timestamp and its next offset.
//!
//! From format 2 ([`crate::storage::format`]) each of a segment's binary sidecar files (these
//! two and `.txnindex`) begins with an 8-byte header: four bytes naming its kind, then its
//! format as a big-endian u32. A file without it is format 1 (no entry can begin with a
//! kind's bytes: they would be a relative offset, timestamp or producer id past any real one).

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const OFFSET_ENTRY_BYTES: usize = 12;
/// The header of a sidecar file from format 2.
pub const SIDECAR_HEADER_BYTES: usize = 8;
/// The kinds of sidecar files, as their header names them.
pub const OFFSET_KIND: &[u8; 4] = b"SWOI";
pub const TIME_KIND: &[u8; 4] = b"SWTI";
pub const TXN_KIND: &[u8; 4] = b"SWTX";
const KINDS: [&[u8; 4]; 3] = [OFFSET_KIND, TIME_KIND, TXN_KIND];

/// A sidecar file of `kind`: `entries` after the header of `format` (none before format 2).
pub fn with_header(kind: &[u8; 4], format: u16, entries: Bytes) -> Bytes {
    if format < crate::storage::format::VERSIONED {
        return entries;
    }
    let mut out = BytesMut::with_capacity(SIDECAR_HEADER_BYTES + entries.len());
    out.put_slice(kind);
    out.put_u32(u32::from(format));
    out.put_slice(&entries);
    out.freeze()
}

/// The entries of a sidecar file of `kind` (after its header, if it has one); `None` for a
/// header of another kind or of a format this broker does not read: rebuild the file.
pub fn entries_of<'a>(kind: &[u8; 4], data: &'a [u8]) -> Option<&'a [u8]> {
    let Some(head) = data.get(..4).filter(|h| KINDS.iter().any(|k| &k[..] == *h)) else {
        return Some(data);
    };
    let format = data.get(4..SIDECAR_HEADER_BYTES).map(|mut b| b.get_u32())?;
    let readable = head == kind
        && (u32::from(crate::storage::format::VERSIONED)
            ..=u32::from(crate::storage::format::READS))
            .contains(&format);
    readable.then(|| &data[SIDECAR_HEADER_BYTES..])
}
pub const TIME_ENTRY_BYTES: usize = 16;

/// One sparse index point: the batch at `position` starts at `base + relative_offset`, and every
/// batch before it has a timestamp of at most `prefix_max_timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
    pub prefix_max_timestamp: i64,
}

/// Encode the index of a closed segment into its two files' contents.
pub fn encode(entries: &[IndexEntry], max_timestamp: i64, next_relative: u32) -> (Bytes, Bytes) {
    let mut offsets = BytesMut::with_capacity(entries.len() * OFFSET_ENTRY_BYTES);
    let mut times = BytesMut::with_capacity((entries.len() + 1) * TIME_ENTRY_BYTES);
    for e in entries {
        let start = offsets.len();
        offsets.put_u32(e.relative_offset);
        offsets.put_u32(e.position);
        let crc = crc32fast::hash(&offsets[start..]);
        offsets.put_u32(crc);
        put_time(&mut times, e.prefix_max_timestamp, e.relative_offset);
    }
    put_time(&mut times, max_timestamp, next_relative);
    (offsets.freeze(), times.freeze())
}

fn put_time(buf: &mut BytesMut, ts: i64, rel: u32) {
    let start = buf.len();
    buf.put_i64(ts);
    buf.put_u32(rel);
    let crc = crc32fast::hash(&buf[start..]);
    buf.put_u32(crc);
}

/// What a closed segment's index files say, when every check passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedIndex {
    pub entries: Vec<IndexEntry>,
    pub max_timestamp: i64,
    pub next_relative: u32,
}

/// Decode and check a closed segment's index files against the segment's length.
/// `None` means "do not trust it: rebuild by scanning".
pub fn decode(offsets: &[u8], times: &[u8], segment_len: u64) -> Option<LoadedIndex> {
    if !offsets.len().is_multiple_of(OFFSET_ENTRY_BYTES)
        || !times.len().is_multiple_of(TIME_ENTRY_BYTES)
    {
        return None;
    }
    let n = offsets.len() / OFFSET_ENTRY_BYTES;
    if times.len() / TIME_ENTRY_BYTES != n + 1 {
        return None;
    }
    let mut entries = Vec::with_capacity(n);
    let mut last: Option<IndexEntry> = None;
    for i in 0..n {
        let o = &offsets[i * OFFSET_ENTRY_BYTES..(i + 1) * OFFSET_ENTRY_BYTES];
        let t = &times[i * TIME_ENTRY_BYTES..(i + 1) * TIME_ENTRY_BYTES];
        if crc32fast::hash(&o[..8]) != (&o[8..]).get_u32()
            || crc32fast::hash(&t[..12]) != (&t[12..]).get_u32()
        {
            return None;
        }
        let (mut ob, mut tb) = (o, t);
        let relative_offset = ob.get_u32();
        let position = ob.get_u32();
        let prefix_max_timestamp = tb.get_i64();
        if tb.get_u32() != relative_offset || position as u64 >= segment_len.max(1) {
            return None;
        }
        if let Some(prev) = last {
            if relative_offset <= prev.relative_offset || position <= prev.position {
                return None;
            }
        }
        let e = IndexEntry {
            relative_offset,
            position,
            prefix_max_timestamp,
        };
        entries.push(e);
        last = Some(e);
    }
    let t = &times[n * TIME_ENTRY_BYTES..];
    if crc32fast::hash(&t[..12]) != (&t[12..]).get_u32() {
        return None;
    }
    let mut tb = t;
    let max_timestamp = tb.get_i64();
    let next_relative = tb.get_u32();
    Some(LoadedIndex {
        entries,
        max_timestamp,
        next_relative,
    })
}

/// Position to start scanning from for `relative_offset`: the last entry at or before it, as
/// (position, relative offset of the batch that starts there).
pub fn lookup_offset(entries: &[IndexEntry], relative_offset: u32) -> (u32, u32) {
    let i = entries.partition_point(|e| e.relative_offset <= relative_offset);
    if i == 0 {
        (0, 0)
    } else {
        (entries[i - 1].position, entries[i - 1].relative_offset)
    }
}

/// Position to start scanning from for the first batch with a timestamp ≥ `ts`: every batch
/// before it has a smaller timestamp.
pub fn lookup_time(entries: &[IndexEntry], ts: i64) -> u32 {
    let i = entries.partition_point(|e| e.prefix_max_timestamp < ts);
    if i == 0 {
        0
    } else {
        entries[i - 1].position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<IndexEntry> {
        (0..10)
            .map(|i| IndexEntry {
                relative_offset: i * 10,
                position: i * 4096,
                prefix_max_timestamp: 1000 + i as i64 * 5,
            })
            .collect()
    }

    #[test]
    fn round_trip_and_lookups() {
        let entries = sample();
        let (o, t) = encode(&entries, 2000, 100);
        let loaded = decode(&o, &t, 50_000).unwrap();
        assert_eq!(loaded.entries, entries);
        assert_eq!(loaded.max_timestamp, 2000);
        assert_eq!(loaded.next_relative, 100);
        assert_eq!(lookup_offset(&entries, 0), (0, 0));
        assert_eq!(lookup_offset(&entries, 9), (0, 0));
        assert_eq!(lookup_offset(&entries, 10), (4096, 10));
        assert_eq!(lookup_offset(&entries, 55), (5 * 4096, 50));
        assert_eq!(lookup_offset(&entries, 10_000), (9 * 4096, 90));
        assert_eq!(lookup_time(&entries, 0), 0);
        // Entry 3 has prefix max 1015 < 1017; entry 4 has 1020.
        assert_eq!(lookup_time(&entries, 1017), 3 * 4096);
    }

    #[test]
    fn any_damage_means_rebuild() {
        let entries = sample();
        let (o, t) = encode(&entries, 2000, 100);
        let mut bad = o.to_vec();
        bad[13] ^= 1;
        assert!(decode(&bad, &t, 50_000).is_none(), "flipped bit");
        assert!(
            decode(&o[..o.len() - 3], &t, 50_000).is_none(),
            "torn entry"
        );
        assert!(
            decode(&o, &t[..t.len() - 16], 50_000).is_none(),
            "missing trailer"
        );
        assert!(
            decode(&o, &t, 4096).is_none(),
            "positions beyond the segment"
        );
        assert!(decode(&[], &[], 0).is_none(), "no trailer at all");
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;

    #[test]
    fn sidecar_files_carry_a_header_from_format_2_and_old_ones_read_as_they_are() {
        let entries = [IndexEntry {
            relative_offset: 0,
            position: 0,
            prefix_max_timestamp: 5,
        }];
        let (offsets, times) = encode(&entries, 9, 3);
        let legacy = with_header(OFFSET_KIND, 1, offsets.clone());
        assert_eq!(legacy, offsets);
        let headed = with_header(OFFSET_KIND, 2, offsets.clone());
        assert_eq!(&headed[..8], b"SWOI\0\0\0\x02");
        assert_eq!(entries_of(OFFSET_KIND, &headed), Some(&offsets[..]));
        assert_eq!(entries_of(OFFSET_KIND, &offsets), Some(&offsets[..]));
        // Another kind's header, or a later format's: rebuilt, not misread.
        assert_eq!(entries_of(TIME_KIND, &headed), None);
        let later = with_header(
            OFFSET_KIND,
            crate::storage::format::READS + 1,
            offsets.clone(),
        );
        assert_eq!(entries_of(OFFSET_KIND, &later), None);
        let times = with_header(TIME_KIND, 2, times);
        let loaded = entries_of(OFFSET_KIND, &headed)
            .zip(entries_of(TIME_KIND, &times))
            .and_then(|(o, t)| decode(o, t, 100))
            .unwrap();
        assert_eq!(
            (
                loaded.entries.len(),
                loaded.max_timestamp,
                loaded.next_relative
            ),
            (1, 9, 3)
        );
    }
}
