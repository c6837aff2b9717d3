//! Scanning a segment from the disk: every batch validated in order (CRC-32C, header, offsets
//! continuing), a chunk at a time so memory stays bounded, to find the valid prefix a recovery
//! keeps, the index it rebuilds, and (for a replicated partition's active segment) its tail of
//! Raft entries; and telling the zeros written ahead of the data from a torn tail.

use std::sync::Arc;

use bytes::Bytes;
use io_backend::DiskFile;

use super::index::IndexEntry;
use super::read::READ_ATTEMPTS;
use super::replica::{self, TailEntry};
use super::txn_index::AbortedTxn;
use super::SCAN_CHUNK_BYTES;
use crate::batch::{self, HEADER_BYTES};
use crate::producer_state::ProducerStates;
use crate::storage::io::{Io, StorageError};
use crate::txn_marker::Marker;

/// What scanning a segment found: the valid prefix and its index.
pub(super) struct Scanned {
    pub(super) valid_len: u64,
    pub(super) next_offset: i64,
    pub(super) entries: Vec<IndexEntry>,
    pub(super) max_timestamp: i64,
    pub(super) first_timestamp: Option<i64>,
    /// Batches (Raft entries) in the valid prefix.
    pub(super) batches: u64,
    /// The last batches, one by one (of a replicated partition's active segment).
    pub(super) tail: std::collections::VecDeque<TailEntry>,
    /// Where the term changes, as (term, batches before, offset) (kept with the tail).
    pub(super) terms: Vec<(u64, u64, i64)>,
    /// What the last batches changed in the producers' state, by batch number (with the tail).
    pub(super) undo: std::collections::VecDeque<(u64, crate::producer_state::Undo)>,
    /// Log-start marks, as (offset, start) (with the tail).
    pub(super) log_starts: Vec<(i64, i64)>,
    /// The log offsets of the batches that take no Kafka offset ([`super::gaps`]).
    pub(super) gaps: Vec<i64>,
    /// The membership changes: `(batches before it, offset, change)`.
    pub(super) confs: Vec<(u64, i64, Vec<u8>)>,
    /// The transactions the segment's abort markers ended (known only when the scan records
    /// the producers' state: a transaction's first offset may lie in an earlier segment).
    pub(super) aborted: Vec<AbortedTxn>,
    /// How many abort markers the segment holds.
    pub(super) abort_markers: usize,
}

/// Drop the chunk so the scan reads from `pos` again; false once this position was read
/// [`READ_ATTEMPTS`] times (the data is bad on the disk, or torn).
fn reread(reread_at: &mut (u64, usize), pos: u64, chunk: &mut Bytes) -> bool {
    if reread_at.0 != pos {
        *reread_at = (pos, 1);
    }
    if reread_at.1 >= READ_ATTEMPTS {
        return false;
    }
    reread_at.1 += 1;
    *chunk = Bytes::new();
    true
}

/// Scan a segment from the start, validating every batch (CRC-32C, header, offsets continuing
/// from the previous batch). Stops at the first invalid or incomplete batch. Reads a chunk at a
/// time, so memory stays bounded however long the log is.
pub(super) async fn scan_segment(
    io: &Io,
    file: &Arc<dyn DiskFile>,
    base_offset: i64,
    len: u64,
    interval: u64,
    mut producers: Option<&mut ProducerStates>,
    keep_tail: bool,
) -> Result<Scanned, StorageError> {
    let mut s = Scanned {
        valid_len: 0,
        next_offset: base_offset,
        entries: Vec::new(),
        max_timestamp: -1,
        first_timestamp: None,
        batches: 0,
        tail: std::collections::VecDeque::new(),
        terms: Vec::new(),
        undo: std::collections::VecDeque::new(),
        log_starts: Vec::new(),
        gaps: Vec::new(),
        confs: Vec::new(),
        aborted: Vec::new(),
        abort_markers: 0,
    };
    let mut chunk = Bytes::new();
    let mut chunk_pos = 0u64;
    let mut pos = 0u64;
    // Where the scan last found bad data, and how often it read it: what looks like a torn tail
    // may be a misread, and cutting there would drop acknowledged records; more reads decide.
    let mut reread_at = (u64::MAX, 0);
    while pos < len {
        let rel = (pos - chunk_pos) as usize;
        let have = chunk.len().saturating_sub(rel);
        let header = match chunk.get(rel..).map(batch::parse_header) {
            Some(Ok(h)) => Some(h),
            // Zeros where a header would be: the end of the data (the pipeline writes zeros
            // ahead of it). No misread turns a header into zeros, so this is not read again.
            Some(Err(_)) if have >= HEADER_BYTES && is_zeros(&chunk[rel..rel + HEADER_BYTES]) => {
                break
            }
            // A full header that does not parse: corrupt from here on (once read again).
            Some(Err(_)) if have >= HEADER_BYTES => {
                if reread(&mut reread_at, pos, &mut chunk) {
                    continue;
                }
                break;
            }
            _ => None,
        };
        if let Some(h) = header {
            if h.size as u64 > len - pos {
                if reread(&mut reread_at, pos, &mut chunk) {
                    continue;
                }
                break; // The batch claims more bytes than the file has: a torn write.
            }
        }
        let Some(h) = header.filter(|h| h.size <= have) else {
            // The next batch (or its header) is not all in the chunk: read from here.
            if rel == 0 && have as u64 >= len - pos {
                break; // Everything up to the end is here and it is not a whole batch.
            }
            let need = header
                .map(|h| h.size)
                .unwrap_or(HEADER_BYTES)
                .max(SCAN_CHUNK_BYTES);
            chunk = io
                .read_at(file, (len - pos).min(need as u64) as usize, pos)
                .await?;
            chunk_pos = pos;
            if chunk.is_empty() {
                break;
            }
            continue;
        };
        if batch::validate_stored(&chunk[rel..rel + h.size]).is_err()
            || h.base_offset != s.next_offset
        {
            if reread(&mut reread_at, pos, &mut chunk) {
                continue;
            }
            break;
        }
        let due = s
            .entries
            .last()
            .map(|e| pos - e.position as u64 >= interval)
            .unwrap_or(true);
        if due {
            s.entries.push(IndexEntry {
                relative_offset: (h.base_offset - base_offset) as u32,
                position: pos as u32,
                prefix_max_timestamp: s.max_timestamp,
            });
        }
        let body = &chunk[rel..rel + h.size];
        if Marker::decode(&h, body).is_some_and(|m| !m.commit) {
            s.abort_markers += 1;
        }
        if let Some(p) = producers.as_deref_mut() {
            // What the log holds is what was written: no checks, only the record of it. The
            // producer counts as active from now (batch timestamps are the producer's clock).
            let now_ms = io.clock.wall_ms();
            let done = if keep_tail && h.producer_id >= 0 {
                let mut undo = Vec::new();
                let done = p.record_batch_with_undo(&h, body, h.base_offset, now_ms, &mut undo);
                s.undo.push_back((s.batches, undo));
                while s
                    .undo
                    .front()
                    .is_some_and(|(n, _)| n + replica::UNDO_ENTRIES_MAX <= s.batches)
                {
                    s.undo.pop_front();
                }
                done
            } else {
                p.record_batch(&h, body, h.base_offset, now_ms)
            };
            if let Some(txn) = done.filter(|t| t.aborted) {
                s.aborted.push(AbortedTxn::of(&txn, p));
            }
        }
        // A batch without timestamps (Raft's own entries: -1) does not start `segment.ms`.
        if h.max_timestamp >= 0 {
            s.first_timestamp.get_or_insert(h.max_timestamp);
        }
        s.max_timestamp = s.max_timestamp.max(h.max_timestamp);
        s.next_offset = h.next_offset();
        s.batches += 1;
        if keep_tail {
            if h.is_control() {
                if let Some(to) = batch::log_start_of(body) {
                    s.log_starts.push((h.base_offset, to));
                }
                if let Some(change) = batch::conf_change_of(body) {
                    s.confs
                        .push((s.batches - 1, h.base_offset, change.to_vec()));
                }
            }
            if h.takes_no_offset() {
                s.gaps.push(h.base_offset);
            }
            let term = h.partition_leader_epoch.max(0) as u64;
            if s.terms.last().map(|t| t.0) != Some(term) {
                s.terms.push((term, s.batches - 1, h.base_offset));
            }
            if s.tail.len() == replica::TAIL_ENTRIES_MAX {
                s.tail.pop_front();
            }
            s.tail.push_back(TailEntry {
                base_offset: h.base_offset,
                records: (h.last_offset_delta as u32).saturating_add(1),
                term,
            });
        }
        pos += h.size as u64;
        s.valid_len = pos;
    }
    Ok(s)
}

fn is_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// Whether the tail of `file` from `from` looks like the zeros the pipeline writes ahead of
/// the data: its first chunk (at most [`SCAN_CHUNK_BYTES`]) is all zeros. A torn write starts
/// where the data ends, so damage shows in that chunk; reading all of a long tail of zeros at
/// every start of every partition would cost more than it tells.
pub(super) async fn zeros_from(
    io: &Io,
    file: &Arc<dyn DiskFile>,
    from: u64,
    to: u64,
) -> Result<bool, StorageError> {
    let len = (to - from).min(SCAN_CHUNK_BYTES as u64) as usize;
    Ok(is_zeros(&io.read_at(file, len, from).await?))
}
