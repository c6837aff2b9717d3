//! Raft entries a follower is sent, read back from a replicated partition's log (when the
//! leader's cache no longer holds them), and what a leader's snapshot carries (where the
//! log starts, the gaps before it, the membership, and for the cluster metadata the state).
//!
//! Invariant: an entry read back is the entry raft-rs made — a membership change its change,
//! Raft's own empty entry empty, anything else its batch's bytes — so every replica stores
//! the same bytes.

use bytes::Bytes;
use raft::eraftpb::{Entry, EntryType, Snapshot};

use super::conf;
use crate::storage::log::conf::ConfRecord;
use crate::storage::log::Partition;

/// The log offset a snapshot's log starts at, and how many of Raft's own entries (which take
/// no Kafka offset) lie before it (none in a snapshot of a broker that did not say).
pub fn snapshot_offset(snapshot: &Snapshot) -> Option<(i64, i64)> {
    Some((
        snapshot_word(snapshot, 0)?,
        snapshot_word(snapshot, 1).unwrap_or(0),
    ))
}

/// The membership a snapshot carries: the leader's, after the changes through the index it
/// names (its snapshot point when it does not say).
pub fn snapshot_conf(snapshot: &Snapshot) -> ConfRecord {
    let meta = snapshot.get_metadata();
    let index = snapshot_word(snapshot, 2).map_or(meta.index, |i| i as u64);
    conf::record(index, meta.get_conf_state())
}

/// A compacted log's cleaned prefix a snapshot names: `[start, end)` of the leader's log,
/// below its Raft entries (`end` is the snapshot's log start), which the follower must hold
/// before it takes the snapshot (`super::node::prefix`), with where Raft's own entries lie in
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub start: i64,
    pub end: i64,
    /// The leader's log start, in `[start, end]` (DeleteRecords or a checkpoint may have moved
    /// it inside the first segment).
    pub log_start: i64,
    /// Raft's own entries before `start`.
    pub gaps_before: i64,
    /// Their log offsets in `[start, end)`, increasing.
    pub gaps: Vec<i64>,
}

/// Marks a partition snapshot's prefix, after its three words.
const PREFIX_MAGIC: u64 = u64::from_be_bytes(*b"PREFIX01");

/// A partition snapshot's bytes: where its log starts (`offset`), the gaps before it, the
/// index of the membership it carries, then either a state machine's state or a prefix.
pub fn snapshot_data(
    offset: i64,
    gaps_before: i64,
    conf_index: u64,
    state: Option<&[u8]>,
    prefix: Option<&Prefix>,
) -> Bytes {
    let mut data = Vec::with_capacity(24 + state.map_or(0, <[u8]>::len));
    data.extend_from_slice(&offset.to_be_bytes());
    data.extend_from_slice(&gaps_before.to_be_bytes());
    data.extend_from_slice(&conf_index.to_be_bytes());
    if let Some(state) = state {
        data.extend_from_slice(state);
    } else if let Some(p) = prefix {
        data.extend_from_slice(&PREFIX_MAGIC.to_be_bytes());
        for word in [p.start, p.log_start, p.gaps_before, p.gaps.len() as i64] {
            data.extend_from_slice(&word.to_be_bytes());
        }
        for gap in &p.gaps {
            data.extend_from_slice(&gap.to_be_bytes());
        }
    }
    data.into()
}

/// The prefix a partition's snapshot names, if it names one (well formed: below its log
/// start, the gaps inside it and increasing).
pub fn snapshot_prefix(snapshot: &Snapshot) -> Option<Prefix> {
    if snapshot_word(snapshot, 3)? as u64 != PREFIX_MAGIC {
        return None;
    }
    let end = snapshot_word(snapshot, 0)?;
    let start = snapshot_word(snapshot, 4)?;
    let log_start = snapshot_word(snapshot, 5)?;
    let gaps_before = snapshot_word(snapshot, 6)?;
    let n = usize::try_from(snapshot_word(snapshot, 7)?).ok()?;
    if snapshot.data.len() != (8 + n) * 8
        || start >= end
        || !(start..=end).contains(&log_start)
        || gaps_before < 0
    {
        return None;
    }
    let gaps: Vec<i64> = (0..n)
        .map(|i| snapshot_word(snapshot, 8 + i))
        .collect::<Option<_>>()?;
    let inside = gaps.iter().all(|g| (start..end).contains(g));
    let increasing = gaps.windows(2).all(|w| w[0] < w[1]);
    (inside && increasing).then_some(Prefix {
        start,
        end,
        log_start,
        gaps_before,
        gaps,
    })
}

/// The state a snapshot of a state machine's log carries after its three words (the cluster
/// metadata's: `controller::snapshot`), if any.
pub fn snapshot_state(snapshot: &Snapshot) -> Option<Bytes> {
    (snapshot.data.len() > 24).then(|| Bytes::copy_from_slice(&snapshot.data[24..]))
}

fn snapshot_word(snapshot: &Snapshot, n: usize) -> Option<i64> {
    let at = n * 8;
    let bytes: [u8; 8] = snapshot.data.get(at..at + 8)?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// Read the entries from `low` on (at most about `max_bytes`) from `partition`'s log, for a
/// follower: each batch is an entry (Raft's own are control batches, which go back to empty
/// entries; a log-start mark stays what it is); its term is its leader epoch. Where the next
/// entry starts is noted in the log's points, so that the follower's next read finds it at
/// once.
pub async fn read_entries(
    partition: &Partition,
    io: &crate::storage::Io,
    low: u64,
    known_offset: Option<i64>,
    max_bytes: u64,
) -> Result<Vec<Entry>, crate::storage::StorageError> {
    // Taken before anything is read: what the reads find holds for this generation only.
    let generation = partition.points_generation();
    let offset = match known_offset {
        Some(o) => o,
        None => match partition.locate(io, low).await? {
            Some(at) => at.offset,
            None => return Ok(Vec::new()),
        },
    };
    let data = match partition
        .read_durable(io, offset, max_bytes.min(16 << 20) as usize)
        .await
    {
        Ok(d) => d.records,
        Err(crate::storage::log::ReadError::OffsetOutOfRange { .. }) => return Ok(Vec::new()),
        Err(crate::storage::log::ReadError::Storage(e)) => return Err(e),
    };
    let mut out = Vec::new();
    let mut next_offset = offset;
    for (index, (at, h)) in (low..).zip(crate::batch::scan(&data)) {
        let bytes = data.slice(at..at + h.size);
        next_offset = h.next_offset();
        let term = h.partition_leader_epoch.max(0) as u64;
        // A membership change goes back to the entry raft-rs made.
        if let Some(change) = crate::batch::conf_change_of(&bytes)
            .filter(|_| h.takes_no_offset())
            .and_then(|kept| conf::decode_entry(index, term, kept))
        {
            out.push(change);
            continue;
        }
        // Raft's own entries go back to empty entries (every replica writes the same bytes for
        // them); a log-start mark is an entry of data, and so is a leader's entry written
        // before such entries took no offset (a follower must store the same bytes).
        let data = if h.takes_no_offset() && crate::batch::log_start_of(&bytes).is_none() {
            Bytes::new()
        } else {
            bytes
        };
        out.push(Entry {
            entry_type: EntryType::EntryNormal,
            index,
            term,
            data,
            ..Default::default()
        });
    }
    if let Some(last) = out.last() {
        partition.note_points(generation, &[(last.index + 1, next_offset)]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::SnapshotMetadata;

    fn snapshot(data: Bytes) -> Snapshot {
        Snapshot {
            data,
            metadata: Some(SnapshotMetadata::default()).into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_snapshots_prefix_comes_back_as_it_went_and_a_malformed_one_is_none() {
        let prefix = Prefix {
            start: 100,
            end: 900,
            log_start: 140,
            gaps_before: 3,
            gaps: vec![120, 450],
        };
        let s = snapshot(snapshot_data(900, 5, 7, None, Some(&prefix)));
        assert_eq!(snapshot_prefix(&s), Some(prefix.clone()));
        assert_eq!(snapshot_offset(&s), Some((900, 5)));
        // No prefix: the three words of a snapshot without one.
        assert_eq!(
            snapshot_prefix(&snapshot(snapshot_data(900, 5, 7, None, None))),
            None
        );
        for bad in [
            Prefix {
                gaps: vec![950],
                ..prefix.clone()
            },
            Prefix {
                gaps: vec![450, 120],
                ..prefix.clone()
            },
            Prefix {
                log_start: 99,
                ..prefix.clone()
            },
            Prefix {
                start: 900,
                ..prefix.clone()
            },
        ] {
            let s = snapshot(snapshot_data(900, 5, 7, None, Some(&bad)));
            assert_eq!(snapshot_prefix(&s), None, "{bad:?}");
        }
        let mut cut = snapshot_data(900, 5, 7, None, Some(&prefix)).to_vec();
        cut.pop();
        assert_eq!(snapshot_prefix(&snapshot(cut.into())), None);
    }
}
