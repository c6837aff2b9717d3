//! A segment's aborted transactions (Kafka's transaction index): for every abort marker in the
//! segment, the producer, the first offset of the transaction it aborted, the marker's offset,
//! and the partition's last stable offset once the marker was written. A `read_committed` fetch
//! names the aborted transactions its records may hold ([`collect`]), and the consumer drops
//! those producers' transactional records up to their abort markers.
//!
//! On disk (`.txnindex`, written when the segment is closed, beside its offset index): entries of
//! `producer id i64 | first offset i64 | last offset i64 | last stable offset i64 | crc u32`,
//! checked on load like the offset index's ([`decode`]); one that fails is rebuilt from the
//! segment's markers, as the active segment's entries are at every recovery.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::producer_state::{CompletedTxn, ProducerStates};

/// Bytes of one entry on disk.
pub const ENTRY_BYTES: usize = 36;

/// One aborted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Its first batch's first offset.
    pub first_offset: i64,
    /// Its abort marker's offset.
    pub last_offset: i64,
    /// The partition's last stable offset once the marker was written (the first offset of
    /// the earliest transaction still open then, or the offset after the marker): no aborted
    /// transaction of a later segment starts before it.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    /// The entry of a transaction aborted in a log whose producers' state is now `p` (its
    /// marker recorded): the last stable offset then is the first offset of the earliest
    /// transaction still open, or the offset after the marker.
    pub fn of(txn: &CompletedTxn, p: &ProducerStates) -> AbortedTxn {
        AbortedTxn {
            producer_id: txn.producer_id,
            first_offset: txn.first_offset,
            last_offset: txn.last_offset,
            last_stable_offset: p
                .first_unstable_offset()
                .map_or(txn.last_offset + 1, |f| f.min(txn.last_offset + 1)),
        }
    }
}

/// The `.txnindex` file of a closed segment's aborted transactions (in marker order).
pub fn encode(entries: &[AbortedTxn]) -> Bytes {
    let mut out = BytesMut::with_capacity(entries.len() * ENTRY_BYTES);
    for e in entries {
        let start = out.len();
        out.put_i64(e.producer_id);
        out.put_i64(e.first_offset);
        out.put_i64(e.last_offset);
        out.put_i64(e.last_stable_offset);
        let crc = crc32fast::hash(&out[start..]);
        out.put_u32(crc);
    }
    out.freeze()
}

/// A `.txnindex` file's entries, when every check passes (whole entries, each checksum right,
/// markers in order, each transaction before its marker); `None`: rebuild it from the segment.
pub fn decode(mut data: &[u8]) -> Option<Vec<AbortedTxn>> {
    if !data.len().is_multiple_of(ENTRY_BYTES) {
        return None;
    }
    let mut entries: Vec<AbortedTxn> = Vec::with_capacity(data.len() / ENTRY_BYTES);
    while !data.is_empty() {
        let (entry, rest) = data.split_at(ENTRY_BYTES);
        let (body, mut crc) = entry.split_at(ENTRY_BYTES - 4);
        if crc32fast::hash(body) != crc.get_u32() {
            return None;
        }
        let mut body = body;
        let e = AbortedTxn {
            producer_id: body.get_i64(),
            first_offset: body.get_i64(),
            last_offset: body.get_i64(),
            last_stable_offset: body.get_i64(),
        };
        let ordered = entries.last().is_none_or(|p| p.last_offset < e.last_offset);
        if !ordered || e.first_offset > e.last_offset || e.first_offset < 0 {
            return None;
        }
        entries.push(e);
        data = rest;
    }
    Some(entries)
}

/// The aborted transactions (producer id, first offset) a `read_committed` fetch from
/// `fetch_offset` whose records end before `upper_bound` must name, given the aborted
/// transactions of the segments from the fetch's on, in order: those that end at or after the
/// fetch offset (an older one would make the consumer drop that producer's later records) and
/// begin before the bound. A segment whose entries reach a last stable offset at or past the
/// bound is the last one looked at: no later abort can start before it.
pub fn collect<'a>(
    segments: impl IntoIterator<Item = &'a [AbortedTxn]>,
    fetch_offset: i64,
    upper_bound: i64,
) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for entries in segments {
        let mut done = false;
        for e in entries {
            if e.last_offset >= fetch_offset && e.first_offset < upper_bound {
                out.push((e.producer_id, e.first_offset));
            }
            done |= e.last_stable_offset >= upper_bound;
        }
        if done {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn the_file_round_trips_and_damage_means_rebuilding() {
        let entries = vec![
            aborted(7, 10, 20, 21),
            aborted(8, 15, 30, 31),
            aborted(7, 25, 40, 41),
        ];
        let data = encode(&entries);
        assert_eq!(data.len(), 3 * ENTRY_BYTES);
        assert_eq!(decode(&data), Some(entries.clone()));
        assert_eq!(decode(&[]), Some(vec![]));
        assert_eq!(decode(&data[..data.len() - 1]), None, "cut short");
        for at in [0, 9, ENTRY_BYTES + 3, data.len() - 1] {
            let mut bad = data.to_vec();
            bad[at] ^= 0x04;
            assert_eq!(decode(&bad), None, "flip at {at}");
        }
        // Entries out of marker order, or a transaction after its marker, are not trusted.
        let swapped = encode(&[entries[1], entries[0]]);
        assert_eq!(decode(&swapped), None);
        assert_eq!(decode(&encode(&[aborted(1, 9, 5, 10)])), None);
    }

    #[test]
    fn a_fetch_names_the_aborts_its_records_may_hold() {
        // Segment at 0: producer 1 aborted [2, 6]; segment at 10: producer 2 aborted [8, 12]
        // (it began in the segment before), producer 3 aborted [14, 16] while 4's transaction
        // from 15 was open (last stable offset 15); segment at 20: producer 4 aborted [15, 22].
        let seg0 = [aborted(1, 2, 6, 7)];
        let seg1 = [aborted(2, 8, 12, 13), aborted(3, 14, 16, 15)];
        let seg2 = [aborted(4, 15, 22, 23)];
        let all: [&[AbortedTxn]; 3] = [&seg0, &seg1, &seg2];

        // From 0 up to 10: producer 1's, and producer 2's (it starts at 8, before the bound).
        assert_eq!(collect(all, 0, 10), [(1, 2), (2, 8)]);
        // From 7: producer 1's ended before the fetch and must not be named.
        assert_eq!(collect(all, 7, 10), [(2, 8)]);
        // From 13 up to 20: 3's; 4's began at 15 (before the bound) though its marker is in the
        // next segment — segment 1's last stable offsets stay below 20, so segment 2 is read.
        assert_eq!(
            collect(all[1..].iter().copied(), 13, 20),
            [(3, 14), (4, 15)]
        );
        // Up to 14: segment 1 reaches a last stable offset of 15 ≥ 14, so segment 2 is not read
        // (nothing there can start before 14).
        assert_eq!(
            collect(all[1..].iter().copied(), 13, 14),
            Vec::<(i64, i64)>::new()
        );
        assert_eq!(collect(all[1..].iter().copied(), 11, 14), [(2, 8)]);
    }
}
