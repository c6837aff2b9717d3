//! Zeros written ahead of a segment's data (preallocation), so that most syncs overwrite
//! blocks the file already has instead of committing its growth too. What they save is per
//! sync, what they cost is per byte written and synced; the rules below keep the cost bounded
//! per round, so that a slow disk that works is never made to miss the I/O deadline by them.

use bytes::Bytes;

use super::log::{self, Segment};

/// Zeros for preallocation: read-only and never written, so its pages cost nothing.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// `len` zeros at `at`, as writes of at most 1 MiB, each a slice of one static buffer (no
/// allocation per segment, whatever `preallocate_bytes` is).
pub(super) fn zero_writes(at: u64, len: usize) -> impl Iterator<Item = (Bytes, u64)> {
    (0..len).step_by(ZEROS.len()).map(move |from| {
        let n = (len - from).min(ZEROS.len());
        (Bytes::from_static(&ZEROS[..n]), at + from as u64)
    })
}

/// The zeros to write ahead of a segment whose data will end at `end` (`(offset, len)`), and
/// the file's written length after: so that most syncs overwrite blocks the file has.
///
/// Only a round that appends little (`round_bytes` under [`ZERO_FILL_ROUND_BYTES_MAX`]) writes
/// zeros ahead: what preallocation saves is per sync (a small append's fdatasync that need
/// not commit the file's growth: p50 1.22 against 1.39–1.45 ms, 128 producers of 100 B), and
/// what it costs is per byte (the zeros written and synced in the round). A round of a
/// megabyte — one librdkafka batch, alone in its round because an idempotent librdkafka
/// producer keeps one request in flight — paid for 4 MiB of zeros every fourth round: 1.25
/// against 0.95 ms of mean sync (docs/benchmarks.md).
///
/// The zeros ahead grow with the segment: none until it holds [`ZERO_FILL_FROM_BYTES`], then
/// as much as it holds, up to `preallocate_bytes` — at most doubling the segment — and at most
/// [`ZERO_FILL_STEP_MAX`] in one round. A fixed 4 MiB
/// ahead of every partition's first entry wrote 4 GiB of zeros, and synced them, on each broker
/// making a topic of 1,000 partitions (half its CPU went to copying them), and would have taken
/// 40 GiB of disk for 10,000 partitions that each hold a record.
pub(super) fn zeros_ahead(
    seg: &Segment,
    end: u64,
    round_bytes: u64,
    config: &log::LogConfig,
) -> (Option<(u64, usize)>, u64) {
    let ahead = config.preallocate_bytes.min(end);
    if ahead > 0
        && end >= ZERO_FILL_FROM_BYTES
        && end > seg.allocated
        && round_bytes < ZERO_FILL_ROUND_BYTES_MAX
    {
        let from = seg.allocated.max(end);
        let to = (end + ahead)
            .min(from + ZERO_FILL_STEP_MAX)
            .min(config.segment_bytes.max(end));
        (
            (to > from).then(|| (from, (to - from) as usize)),
            to.max(end),
        )
    } else {
        (None, seg.allocated.max(end))
    }
}

/// A round appending this much or more to a partition writes no zeros ahead (see
/// [`zeros_ahead`]).
pub(super) const ZERO_FILL_ROUND_BYTES_MAX: u64 = 256 << 10;

/// The most zeros a round writes ahead of one partition's data: the zeros go a step at a time
/// as the data reaches them. A round that wrote `preallocate_bytes` (4 MiB) of zeros for each
/// of its partitions took longer than the I/O deadline on a disk of 4 MB/s (two partitions'
/// zeros, 2 s): the directory failed, was cut back and healed, and the next round wrote the
/// same zeros again, on every broker, until no partition had a leader (`stalled-catch-up`).
pub(super) const ZERO_FILL_STEP_MAX: u64 = 1 << 20;

/// A segment holding less than this gets no zeros ahead (see [`zeros_ahead`]).
pub(super) const ZERO_FILL_FROM_BYTES: u64 = 64 << 10;

#[cfg(test)]
mod tests {
    use super::zero_writes;

    #[test]
    fn zero_writes_cover_the_range_in_chunks_of_at_most_a_mebibyte() {
        let writes: Vec<_> = zero_writes(100, (5 << 20) / 2).collect();
        assert_eq!(writes.len(), 3);
        let mut at = 100;
        for (data, offset) in &writes {
            assert_eq!(*offset, at);
            assert!(data.len() <= 1 << 20 && data.iter().all(|&b| b == 0));
            at += data.len() as u64;
        }
        assert_eq!(at, 100 + (5 << 20) / 2);
        assert_eq!(zero_writes(7, 0).count(), 0);
    }
}
