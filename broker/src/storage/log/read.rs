//! Reads of committed batches (Fetch, ListOffsets by time), checked right after they are read
//! and read again before they are called corrupt; up to the high watermark, or for a
//! `read_committed` consumer the last stable offset.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use io_backend::DiskFile;

use super::{index, only_recordless, FetchData, Partition, ReadError, SCAN_CHUNK_BYTES};
use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::storage::io::{Io, StorageError};

/// Read whole batches from `file` in `[start, end)`, beginning with the first batch for which
/// `wanted(header)` holds, up to `max_bytes` — with `at_least_one`, the first batch even if it
/// alone is larger (Kafka's first batch of a fetch, KIP-74); without, nothing then. No batch
/// that starts at or past `offset_end` is returned (a replicated partition's high watermark,
/// which may lie below the durable end of its log).
///
/// With `start_base` (the offset the batch at `start` begins at, from the index), every batch
/// walked over and the first one returned must continue the offsets from it: a flipped bit in
/// a base offset (Kafka's CRC does not cover it) that still held the wanted offset would
/// otherwise give the reader every record of that batch at the wrong offset.
pub(super) async fn read_from(
    io: &Io,
    file: &Arc<dyn DiskFile>,
    (start, start_base): (u64, Option<i64>),
    (end, offset_end): (u64, i64),
    wanted: impl Fn(&BatchHeader) -> bool,
    max_bytes: usize,
    at_least_one: bool,
) -> Result<Bytes, StorageError> {
    let mut expect = start_base;
    let want = (max_bytes.max(64 * 1024) + 64 * 1024).min(SCAN_CHUNK_BYTES.max(max_bytes));
    let mut chunk = Bytes::new();
    let mut chunk_pos = start;
    let mut pos = start;
    while pos < end {
        let rel = (pos - chunk_pos) as usize;
        if pos < chunk_pos || rel + HEADER_BYTES > chunk.len() {
            let len = (end - pos).min(want as u64) as usize;
            chunk = io.read_at(file, len, pos).await?;
            chunk_pos = pos;
            if chunk.len() < HEADER_BYTES {
                return Err(corrupt(file, pos, "batch header cut short"));
            }
            continue;
        }
        let h =
            batch::parse_header(&chunk[rel..]).map_err(|e| corrupt(file, pos, &e.to_string()))?;
        if let Some(base) = expect {
            if h.base_offset != base {
                let why = format!("batch starts at offset {} instead of {base}", h.base_offset);
                return Err(corrupt(file, pos, &why));
            }
            expect = Some(h.next_offset());
        }
        if !wanted(&h) {
            pos += h.size as u64;
            continue;
        }
        if h.base_offset >= offset_end {
            return Ok(Bytes::new());
        }
        if pos + h.size as u64 > end {
            // Past what is committed: a misread length (it is read again), or damage — never
            // a reason to read bytes no sync has covered (swarm seed 90: a flipped length made
            // the read below return two uncommitted batches past the high watermark, and the
            // consumer's next fetch was out of range).
            let why = format!("a batch of {} bytes runs past the committed end", h.size);
            return Err(corrupt(file, pos, &why));
        }
        if !at_least_one && h.size > max_bytes {
            return Ok(Bytes::new());
        }
        // Gather complete batches from here that fit.
        let mut total = 0usize;
        for (_, next) in batch::scan(&chunk.slice(rel..)) {
            if total > 0 && total + next.size > max_bytes {
                break;
            }
            if pos + (total + next.size) as u64 > end || next.base_offset >= offset_end {
                break;
            }
            total += next.size;
        }
        if total == 0 {
            // The first batch is larger than the chunk: read exactly it (and check it is
            // still the batch whose header was checked).
            let whole = io.read_at(file, h.size, pos).await?;
            return match batch::parse_header(&whole) {
                Ok(again) if again.base_offset == h.base_offset => Ok(whole),
                _ => Err(corrupt(file, pos, "batch changed between two reads")),
            };
        }
        return Ok(chunk.slice(rel..rel + total));
    }
    Ok(Bytes::new())
}

/// Which records a consumer's read may return (Kafka's isolation levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Everything below the high watermark, aborted transactions' records too.
    ReadUncommitted,
    /// Only below the last stable offset, with the aborted transactions of the range named so
    /// that the consumer drops their records.
    ReadCommitted,
}

impl Isolation {
    /// Kafka's `isolation_level` field: 1 is read_committed, anything else read_uncommitted.
    pub fn from_level(level: i8) -> Isolation {
        if level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

/// Where a read stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upto {
    /// The durable end of the log, committed or not (Raft's reads).
    LogEnd,
    /// The high watermark.
    HighWatermark,
    /// The last stable offset.
    Stable,
}

impl Partition {
    /// Read whole batches starting with the one that holds `offset`, at most `max_bytes` unless
    /// the first batch alone is larger (then just that batch, as Kafka does).
    pub async fn read(
        &self,
        io: &Io,
        offset: i64,
        max_bytes: usize,
    ) -> Result<FetchData, ReadError> {
        self.read_limited(io, offset, max_bytes, true).await
    }

    /// [`Partition::read`], but with `at_least_one` false a first batch larger than
    /// `max_bytes` is not returned (a Fetch's later partitions, once the response holds
    /// records: Kafka returns an oversized batch only first).
    pub async fn read_limited(
        &self,
        io: &Io,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<FetchData, ReadError> {
        self.read_isolated(
            io,
            offset,
            max_bytes,
            at_least_one,
            Isolation::ReadUncommitted,
        )
        .await
    }

    /// [`Partition::read_limited`] at an isolation level: `read_committed` stops at the last
    /// stable offset and names the aborted transactions of what it returns.
    pub async fn read_isolated(
        &self,
        io: &Io,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
        isolation: Isolation,
    ) -> Result<FetchData, ReadError> {
        let upto = match isolation {
            Isolation::ReadUncommitted => Upto::HighWatermark,
            Isolation::ReadCommitted => Upto::Stable,
        };
        let mut data = self
            .read_bounded(io, offset, max_bytes, at_least_one, upto)
            .await?;
        if isolation == Isolation::ReadCommitted {
            if let Some((_, last)) = crate::batch::scan(&data.records).last() {
                data.aborted = self.state().aborted_between(offset, last.next_offset());
            }
        }
        Ok(data)
    }

    /// Read whole batches from `offset` up to the durable end of the log, committed or not:
    /// what a Raft leader sends a follower. `high_watermark` in the answer is the log's end.
    pub async fn read_durable(
        &self,
        io: &Io,
        offset: i64,
        max_bytes: usize,
    ) -> Result<FetchData, ReadError> {
        self.read_bounded(io, offset, max_bytes, true, Upto::LogEnd)
            .await
    }

    /// Whole batches from `offset` (see [`Partition::read_limited`]), read on past batches
    /// that hold no record — emptied by the log cleaner, or control batches — into the next
    /// segments while `max_bytes` has room: a consumer sent only such batches fetch after
    /// fetch takes them for a record too large to fetch (librdkafka doubles its fetch size,
    /// then fails with MSG_SIZE_TOO_LARGE).
    async fn read_bounded(
        &self,
        io: &Io,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
        upto: Upto,
    ) -> Result<FetchData, ReadError> {
        let (first, bound) = self
            .read_segment(io, offset, max_bytes, at_least_one, upto)
            .await?;
        let Some(mut next) = only_recordless(&first.records) else {
            return Ok(first);
        };
        let mut out = bytes::BytesMut::from(&first.records[..]);
        while out.len() + crate::batch::HEADER_BYTES <= max_bytes && next < bound {
            let (more, _) = self
                .read_segment(io, next, max_bytes - out.len(), false, upto)
                .await?;
            if more.records.is_empty() {
                break;
            }
            out.extend_from_slice(&more.records);
            match only_recordless(&more.records) {
                Some(n) => next = n,
                None => break,
            }
        }
        Ok(FetchData {
            records: out.freeze(),
            ..first
        })
    }

    /// One segment's batches from `offset`, with the offset the read stopped before.
    async fn read_segment(
        &self,
        io: &Io,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
        upto: Upto,
    ) -> Result<(FetchData, i64), ReadError> {
        let (file, start, end, bound, mut data) = {
            let st = self.state();
            let hw = if upto == Upto::LogEnd {
                st.log_end_offset()
            } else {
                st.high_watermark()
            };
            let lso = st.last_stable_offset();
            // A read_committed read is refused only past the high watermark, as Kafka's is;
            // between the last stable offset and it, there is nothing to read yet.
            let bound = if upto == Upto::Stable { lso } else { hw };
            // Raft's reads start where its log does, the first segment: a log start that
            // DeleteRecords moved inside it hides records from consumers, not from a follower
            // that still needs the entries (the log-start marks among them).
            let floor = if upto == Upto::LogEnd {
                st.segments.keys().next().copied().unwrap_or(0)
            } else {
                st.log_start_offset
            };
            if offset < floor || offset > hw {
                return Err(ReadError::OffsetOutOfRange {
                    offset,
                    log_start: st.log_start_offset,
                    high_watermark: hw,
                });
            }
            let data = FetchData {
                records: Bytes::new(),
                high_watermark: hw,
                log_start_offset: st.log_start_offset,
                last_stable_offset: lso,
                aborted: Vec::new(),
            };
            let seg = st.segments.range(..=offset).next_back().map(|(_, s)| s);
            match seg {
                Some(seg) if offset < seg.next_offset && offset < bound => {
                    let rel = (offset - seg.base_offset) as u32;
                    let (pos, base) = index::lookup_offset(&seg.entries, rel);
                    let start = (pos as u64, Some(seg.base_offset + base as i64));
                    (seg.file.clone(), start, seg.size, bound, data)
                }
                _ => return Ok((data, bound)),
            }
        };
        data.records = read_verified(&file, Some(offset), || {
            read_from(
                io,
                &file,
                start,
                (end, bound),
                |h| h.next_offset() > offset,
                max_bytes,
                at_least_one,
            )
        })
        .await?;
        Ok((data, bound))
    }
}

/// How many times data that fails its checks is read before it is called corrupt: a bit flipped
/// on the way from the disk is gone on the next read; damage on the disk stays.
pub const READ_ATTEMPTS: usize = 4;

/// Read batches with `read` and check them right after the read (docs/design.md: CRC on write, CRC on
/// read): every batch's CRC-32C, and their offsets — which Kafka's CRC does not cover — dense
/// from the batch that holds `first_offset`. A misread is read again (up to [`READ_ATTEMPTS`]
/// reads); data that stays bad is corrupt on the disk. The reader then gets the good batches
/// before the damaged one (the most any read returned), and an error only when the damage is in
/// the first batch — never wrong offsets or records (librdkafka does not check CRCs by default),
/// and never a whole chunk withheld for one bad batch in it.
pub(super) async fn read_verified<F, Fut>(
    file: &Arc<dyn DiskFile>,
    first_offset: Option<i64>,
    read: F,
) -> Result<Bytes, StorageError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, StorageError>>,
{
    let mut last_error = None;
    // The longest run of good batches any attempt read before its damage.
    let mut good = Bytes::new();
    for attempt in 0..READ_ATTEMPTS {
        let outcome = match read().await {
            Ok(bytes) => match verify_batches(&bytes, first_offset) {
                Ok(()) => Ok(bytes),
                Err((good_len, reason)) => {
                    if good_len > good.len() {
                        good = bytes.slice(..good_len);
                    }
                    Err(StorageError::Corrupt {
                        path: file.path().to_path_buf(),
                        reason,
                    })
                }
            },
            Err(e @ StorageError::Corrupt { .. }) => Err(e),
            Err(e) => return Err(e),
        };
        match outcome {
            Ok(bytes) => return Ok(bytes),
            Err(e) => {
                if attempt == 0 {
                    tracing::warn!(segment = %file.path().display(), error = %e, "a read failed its checks; reading again");
                }
                last_error = Some(e);
            }
        }
    }
    // Bad every time: the bytes on the disk are damaged.
    let e = last_error.unwrap_or_else(|| corrupt(file, 0, "unreadable"));
    tracing::error!(segment = %file.path().display(), error = %e, good_bytes_before = good.len(), "stored data is corrupt");
    if good.is_empty() {
        return Err(e);
    }
    crate::coverage::reached(crate::coverage::Event::ReadStoppedAtDamagedBatch);
    Ok(good)
}

/// Whether `bytes` are whole batches with valid CRCs and dense offsets, the first holding
/// `first_offset` (when given); if not, how many bytes of good batches come before the first
/// bad one, and what is wrong with it.
fn verify_batches(bytes: &[u8], first_offset: Option<i64>) -> Result<(), (usize, String)> {
    let mut pos = 0;
    let mut expect = None;
    while pos < bytes.len() {
        let h = batch::validate_stored(&bytes[pos..])
            .map_err(|e| (pos, format!("batch at +{pos}: {e}")))?;
        match expect {
            None => {
                if let Some(o) = first_offset {
                    if !(h.base_offset <= o && o < h.next_offset()) {
                        return Err((
                            0,
                            format!(
                                "the batch read for offset {o} holds {}..{}",
                                h.base_offset,
                                h.next_offset()
                            ),
                        ));
                    }
                }
            }
            Some(next) if next != h.base_offset => {
                return Err((
                    pos,
                    format!(
                        "batch at +{pos} starts at offset {} instead of {next}",
                        h.base_offset
                    ),
                ))
            }
            Some(_) => {}
        }
        expect = Some(h.next_offset());
        pos += h.size;
    }
    Ok(())
}

fn corrupt(file: &Arc<dyn DiskFile>, pos: u64, why: &str) -> StorageError {
    StorageError::Corrupt {
        path: file.path().to_path_buf(),
        reason: format!("at byte {pos}: {why}"),
    }
}

/// Walk the records of an uncompressed batch for the first at or after `min_offset` with
/// timestamp ≥ `ts`.
pub(super) fn first_record_at_or_after(
    batch: &[u8],
    h: &BatchHeader,
    ts: i64,
    min_offset: i64,
) -> Option<(i64, i64)> {
    let mut buf = batch.get(HEADER_BYTES..)?;
    for _ in 0..h.record_count {
        let len = get_varint(&mut buf)? as usize;
        let mut rec = buf.get(..len)?;
        buf = &buf[len..];
        let _attributes = rec.get_i8();
        let ts_delta = get_varint(&mut rec)?;
        let offset_delta = get_varint(&mut rec)?;
        let record_ts = h.first_timestamp + ts_delta;
        if record_ts >= ts && h.base_offset + offset_delta >= min_offset {
            return Some((h.base_offset + offset_delta, record_ts));
        }
    }
    None
}

/// The largest timestamp among the records of an uncompressed batch at or after `min_offset`.
pub(super) fn max_record_timestamp(batch: &[u8], h: &BatchHeader, min_offset: i64) -> Option<i64> {
    let mut buf = batch.get(HEADER_BYTES..)?;
    let mut max = None;
    for _ in 0..h.record_count {
        let len = get_varint(&mut buf)? as usize;
        let mut rec = buf.get(..len)?;
        buf = &buf[len..];
        let _attributes = rec.get_i8();
        let ts_delta = get_varint(&mut rec)?;
        let offset_delta = get_varint(&mut rec)?;
        if h.base_offset + offset_delta >= min_offset {
            max = max.max(Some(h.first_timestamp + ts_delta));
        }
    }
    max
}

fn get_varint(buf: &mut &[u8]) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.first()?;
        *buf = &buf[1..];
        z |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::make_batch;
    use bytes::BytesMut;

    /// Three batches of 2, 3 and 1 records at offsets 10, 12, 15, as the pipeline stores them.
    fn stored() -> BytesMut {
        let payload: Vec<Bytes> = vec![
            make_batch(2, 1, 8),
            make_batch(3, 1, 8),
            make_batch(1, 1, 8),
        ];
        let joined: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
        let headers = batch::validate_all(&joined, 1 << 20).unwrap();
        let mut out = BytesMut::new();
        assert_eq!(batch::assign_offsets(&joined, &headers, 10, &mut out), 16);
        out
    }

    #[test]
    fn verified_reads_accept_dense_valid_batches_holding_the_offset() {
        let data = stored();
        assert_eq!(verify_batches(&data, Some(10)), Ok(()));
        assert_eq!(verify_batches(&data, Some(11)), Ok(()));
        assert_eq!(verify_batches(&data, None), Ok(()));
        assert_eq!(verify_batches(&[], Some(3)), Ok(()));
        // The first batch does not hold offset 12.
        assert!(verify_batches(&data, Some(12)).is_err());
    }

    #[test]
    fn verified_reads_catch_a_flip_the_crc_does_not_cover() {
        // Kafka's CRC starts after the base offset: a flipped offset bit passes the CRC.
        let mut data = stored();
        let second = make_batch(2, 1, 8).len();
        data[second + 7] ^= 0x04; // The second batch's base offset, 12 -> 8.
        let (good, err) = verify_batches(&data, Some(10)).unwrap_err();
        assert!(err.contains("instead of 12"), "{err}");
        assert_eq!(good, second, "the first batch is good");
    }

    /// A temporary directory and the blocking engine on it, with no deadline.
    #[cfg(not(madsim))]
    fn blocking_io() -> (tempfile::TempDir, Io) {
        use io_backend::{blocking::BlockingDisk, SystemClock};
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let io = Io {
            disk: Arc::new(BlockingDisk::new(1)),
            clock: Arc::new(SystemClock),
            deadline: None,
            health: crate::storage::io::Health::new(metrics.clone()),
            metrics,
            gate: Arc::new(crate::storage::gate::Gate::new(None)),
            format: Arc::new(crate::storage::format::READS.into()),
        };
        (tempfile::tempdir().unwrap(), io)
    }

    /// A flip in the first batch's base offset that still holds the wanted offset passes every
    /// check of the batches alone (bitflip scenario seed 446: a consumer was given the batch
    /// of offsets 4054..4055 as 4055..4056). The read knows where the batch at its start
    /// position begins (from the index) and refuses it.
    #[cfg(not(madsim))]
    #[tokio::test]
    async fn a_read_refuses_a_first_batch_whose_base_offset_was_flipped() {
        let (dir, io) = blocking_io();
        let mut data = stored();
        data[7] ^= 0x01; // The first batch's base offset, 10 -> 11: it still holds 11.
        assert_eq!(
            verify_batches(&data[..make_batch(2, 1, 8).len()], Some(11)),
            Ok(())
        );
        let path = dir.path().join("s.log");
        let file = io.open(&path, io_backend::OpenMode::Create).await.unwrap();
        io.write_at(&file, data.clone().freeze(), 0).await.unwrap();
        let end = data.len() as u64;
        let read = |start_base| {
            read_from(
                &io,
                &file,
                (0, start_base),
                (end, i64::MAX),
                |h| h.next_offset() > 11,
                1,
                true,
            )
        };
        // Without knowing where the file starts, the flipped batch passes for offsets 11..12.
        let unchecked = read(None).await.unwrap();
        assert_eq!(batch::parse_header(&unchecked).unwrap().base_offset, 11);
        // Knowing it starts at 10, the read refuses it (and read_verified reads again).
        let err = read(Some(10)).await.unwrap_err();
        assert!(err.to_string().contains("instead of 10"), "{err}");
        // An intact file reads as before.
        io.write_at(&file, stored().freeze(), 0).await.unwrap();
        let good = read(Some(10)).await.unwrap();
        assert_eq!(batch::parse_header(&good).unwrap().base_offset, 10);
    }

    /// Swarm seed 90: a bit flipped in a batch's length (which the CRC does not cover) made the
    /// read take the batch as larger than what was read, and read that many bytes — past the
    /// committed end, into batches written but not yet synced. The read must refuse it.
    #[cfg(not(madsim))]
    #[tokio::test]
    async fn a_read_never_returns_bytes_past_the_committed_end() {
        let (dir, io) = blocking_io();
        let data = stored();
        let first = make_batch(2, 1, 8).len();
        let path = dir.path().join("s.log");
        let file = io.open(&path, io_backend::OpenMode::Create).await.unwrap();
        // Only the first batch is committed; the other two are written, not yet synced.
        io.write_at(&file, data.clone().freeze(), 0).await.unwrap();
        let end = first as u64;
        let read = || {
            read_from(
                &io,
                &file,
                (0, Some(10)),
                (end, i64::MAX),
                |h| h.next_offset() > 10,
                1 << 20,
                true,
            )
        };
        let good = read().await.unwrap();
        assert_eq!(good.len(), first, "the committed batch alone");
        // The first batch's length claims the whole file (as a flipped bit in it would).
        let mut flipped = data.clone();
        let claimed = (data.len() - 12) as u32;
        flipped[8..12].copy_from_slice(&claimed.to_be_bytes());
        io.write_at(&file, flipped.freeze(), 0).await.unwrap();
        let err = read().await.unwrap_err();
        assert!(err.to_string().contains("past the committed end"), "{err}");
    }

    #[test]
    fn verified_reads_catch_a_flip_in_the_records() {
        let mut data = stored();
        let last = data.len() - 1;
        data[last] ^= 0x10;
        let (good, err) = verify_batches(&data, Some(10)).unwrap_err();
        assert!(err.to_lowercase().contains("crc"), "{err}");
        assert_eq!(
            good,
            data.len() - make_batch(1, 1, 8).len(),
            "two good batches before"
        );
    }
}
