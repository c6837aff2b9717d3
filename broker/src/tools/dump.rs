//! `broker dump FILE…`: what a file of a data directory holds, as text (Kafka's
//! `kafka-dump-log.sh`, for this broker's files). The kind is told by the name: a segment
//! (`.log`: its batches, with `--records` each record too, a control batch's marker or Raft
//! entry named), its index files (`.index`, `.timeindex`, `.txnindex`), producer state
//! (`.snapshot`), the Raft hard states (`raft-states`); any other file is taken as one of the
//! small files (a body and its CRC line: the format marker, topic metadata, a partition's
//! Raft record, …).

use std::fmt::Write as _;
use std::path::Path;

use bytes::{Buf, Bytes};

use super::{base_of, read, shown, ToolError};
use crate::batch::{self, BatchHeader};
use crate::storage::log::{index, txn_index};
use crate::storage::{raft_states, small_file};

/// What to print.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Each record of a segment's batches (Kafka's `--print-data-log`).
    pub records: bool,
    /// At most this many characters of a key or value (0: the default, 200).
    pub max_chars: usize,
}

/// The text of `path`'s dump.
pub fn dump(path: &Path, opts: Options) -> Result<String, ToolError> {
    let data = read(path)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let mut out = format!("Dumping {}\n", path.display());
    match (name, ext) {
        (_, "log") => segment(&mut out, &data, base_of(path).unwrap_or(0), opts),
        (_, "index") => offset_index(&mut out, &data, base_of(path).unwrap_or(0)),
        (_, "timeindex") => time_index(&mut out, &data, base_of(path).unwrap_or(0)),
        (_, "txnindex") => txns(&mut out, &data),
        (_, "snapshot") => producers(&mut out, &data),
        (raft_states::FILE, _) => hard_states(&mut out, &data),
        _ => small(&mut out, &data),
    }
    Ok(out)
}

/// A segment's batches, each checked (CRC, count) and described; the tail that is no batch
/// (zeros written ahead, or a torn write) said as such.
fn segment(out: &mut String, data: &Bytes, base: i64, opts: Options) {
    let _ = writeln!(out, "Starting offset: {base}");
    let mut pos = 0usize;
    while pos < data.len() {
        let rest = &data[pos..];
        let Ok(h) = batch::parse_header(rest) else {
            tail(out, rest, pos);
            return;
        };
        if h.size > rest.len() || h.size < batch::HEADER_BYTES {
            tail(out, rest, pos);
            return;
        }
        let bytes = data.slice(pos..pos + h.size);
        let valid = batch::validate_stored(&bytes).is_ok();
        let _ = writeln!(out, "{}", describe(&h, pos, valid, &bytes));
        if opts.records && valid {
            records(out, &bytes, &h, opts);
        }
        pos += h.size;
    }
}

/// One batch as Kafka's tool prints it, with what a control batch is.
fn describe(h: &BatchHeader, pos: usize, valid: bool, bytes: &Bytes) -> String {
    let mut line =
        format!(
        "baseOffset: {} lastOffset: {} count: {} baseSequence: {} lastSequence: {} producerId: {} \
         producerEpoch: {} partitionLeaderEpoch: {} isTransactional: {} isControl: {} \
         position: {pos} CreateTime: {} size: {} magic: 2 compresscodec: {} crc valid: {valid}",
        h.base_offset,
        h.last_offset(),
        h.record_count,
        h.base_sequence,
        if h.base_sequence < 0 { -1 } else { h.base_sequence + h.last_offset_delta },
        h.producer_id,
        h.producer_epoch,
        h.partition_leader_epoch,
        h.is_transactional(),
        h.is_control(),
        h.max_timestamp,
        h.size,
        codec_name(h.compression()),
    );
    if h.takes_no_offset() {
        let what = if let Some(start) = batch::log_start_of(bytes) {
            format!("the log starts at {start}")
        } else if batch::conf_change_of(bytes).is_some() {
            "a change of the Raft group's voters".into()
        } else {
            "a new leader's first entry".into()
        };
        let _ = write!(line, " raftEntry: {what} (takes no offset)");
    }
    line
}

fn codec_name(codec: i16) -> &'static str {
    match codec {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// What follows the last whole batch.
fn tail(out: &mut String, rest: &[u8], pos: usize) {
    if rest.iter().all(|b| *b == 0) {
        let _ = writeln!(
            out,
            "zeros from position {pos} to the end ({} bytes, written ahead)",
            rest.len()
        );
    } else {
        let _ = writeln!(
            out,
            "position {pos}: {} bytes that are not a whole batch (a write a crash interrupted; \
             the broker cuts them at start)",
            rest.len()
        );
    }
}

/// Each record of a checked batch (its codec undone).
fn records(out: &mut String, bytes: &Bytes, h: &BatchHeader, opts: Options) {
    let max = if opts.max_chars == 0 {
        200
    } else {
        opts.max_chars
    };
    let mut buf = bytes.clone();
    // The codecs are the broker's own (the crate's are not built in), bounded as a fetch's.
    let undo = |data: &mut Bytes, codec: kafka_protocol::records::Compression| {
        if codec == kafka_protocol::records::Compression::None {
            return Ok(data.clone());
        }
        crate::records::decompress(codec as i16, data, crate::records::DECOMPRESSED_BYTES_CAP)
            .map(Bytes::from)
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let decoded = kafka_protocol::records::RecordBatchDecoder::decode_with_custom_compression(
        &mut buf,
        Some(undo),
    );
    let set = match decoded {
        Ok(set) => set,
        Err(e) => {
            let _ = writeln!(out, "| records not decodable: {e}");
            return;
        }
    };
    for r in set.records {
        let mut line =
            format!(
            "| offset: {} CreateTime: {} keySize: {} valueSize: {} sequence: {} headerKeys: [{}]",
            r.offset,
            r.timestamp,
            r.key.as_ref().map_or(-1, |k| k.len() as i64),
            r.value.as_ref().map_or(-1, |v| v.len() as i64),
            r.sequence,
            r.headers.keys().map(|k| k.to_string()).collect::<Vec<_>>().join(","),
        );
        if h.is_control() && !h.takes_no_offset() {
            let _ = write!(line, " {}", marker(r.key.as_deref(), r.value.as_deref()));
        } else {
            let _ = write!(
                line,
                " key: {} payload: {}",
                shown(r.key.as_deref(), max),
                shown(r.value.as_deref(), max)
            );
        }
        let _ = writeln!(out, "{line}");
    }
}

/// A transaction marker's record: COMMIT or ABORT and the coordinator's epoch.
fn marker(key: Option<&[u8]>, value: Option<&[u8]>) -> String {
    let kind = key
        .filter(|k| k.len() >= 4)
        .map(|mut k| {
            let _version = k.get_i16();
            match k.get_i16() {
                0 => "ABORT".to_string(),
                1 => "COMMIT".to_string(),
                t => format!("control type {t}"),
            }
        })
        .unwrap_or_else(|| "an unreadable control record".into());
    let epoch = value.filter(|v| v.len() >= 6).map(|mut v| {
        let _version = v.get_i16();
        v.get_i32()
    });
    match epoch {
        Some(e) => format!("endTxnMarker: {kind} coordinatorEpoch: {e}"),
        None => format!("endTxnMarker: {kind}"),
    }
}

/// The format a sidecar file's header names, and its entries.
fn sidecar<'a>(out: &mut String, kind: &[u8; 4], data: &'a [u8]) -> Option<&'a [u8]> {
    match index::entries_of(kind, data) {
        Some(entries) => {
            let format = if entries.len() == data.len() {
                1
            } else {
                (&data[4..8]).get_u32()
            };
            let _ = writeln!(out, "format: {format}");
            Some(entries)
        }
        None => {
            let _ = writeln!(
                out,
                "a header of another kind of file, or of a later format"
            );
            None
        }
    }
}

fn offset_index(out: &mut String, data: &[u8], base: i64) {
    let Some(entries) = sidecar(out, index::OFFSET_KIND, data) else {
        return;
    };
    for (i, mut e) in entries.chunks(index::OFFSET_ENTRY_BYTES).enumerate() {
        if e.len() < index::OFFSET_ENTRY_BYTES {
            let _ = writeln!(out, "entry {i}: {} bytes, not a whole entry", e.len());
            break;
        }
        let crc_ok = crc32fast::hash(&e[..8]) == (&e[8..]).get_u32();
        let (rel, position) = (e.get_u32(), e.get_u32());
        let _ = writeln!(
            out,
            "offset: {} position: {position} crc valid: {crc_ok}",
            base + i64::from(rel)
        );
    }
}

fn time_index(out: &mut String, data: &[u8], base: i64) {
    let Some(entries) = sidecar(out, index::TIME_KIND, data) else {
        return;
    };
    let n = entries.len() / index::TIME_ENTRY_BYTES;
    for (i, mut e) in entries.chunks(index::TIME_ENTRY_BYTES).enumerate() {
        if e.len() < index::TIME_ENTRY_BYTES {
            let _ = writeln!(out, "entry {i}: {} bytes, not a whole entry", e.len());
            break;
        }
        let crc_ok = crc32fast::hash(&e[..12]) == (&e[12..]).get_u32();
        let (ts, rel) = (e.get_i64(), e.get_u32());
        let what = if i + 1 == n {
            format!(
                "largest timestamp: {ts} next offset: {}",
                base + i64::from(rel)
            )
        } else {
            format!("timestamp: {ts} offset: {}", base + i64::from(rel))
        };
        let _ = writeln!(out, "{what} crc valid: {crc_ok}");
    }
}

fn txns(out: &mut String, data: &[u8]) {
    let Some(entries) = sidecar(out, index::TXN_KIND, data) else {
        return;
    };
    match txn_index::decode(entries) {
        Some(aborted) => {
            for t in aborted {
                let _ = writeln!(
                    out,
                    "producerId: {} firstOffset: {} lastOffset: {} lastStableOffset: {}",
                    t.producer_id, t.first_offset, t.last_offset, t.last_stable_offset
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "fails its checks (the broker rebuilds it from the segment)"
            );
        }
    }
}

fn producers(out: &mut String, data: &[u8]) {
    match crate::producer_state::ProducerStates::decode(data) {
        Ok(states) => {
            for p in states.describe() {
                let _ = writeln!(
                    out,
                    "producerId: {} producerEpoch: {} lastSequence: {} lastWrite: {} \
                     coordinatorEpoch: {} currentTxnFirstOffset: {}",
                    p.producer_id,
                    p.epoch,
                    p.last_sequence,
                    p.last_write_ms,
                    p.coordinator_epoch,
                    p.txn_start_offset
                );
            }
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "fails its checks ({e}): the broker rebuilds it from the segments"
            );
        }
    }
}

fn hard_states(out: &mut String, data: &Bytes) {
    match raft_states::parse_file(data) {
        Ok((read, recovered)) => {
            let mut states: Vec<_> = recovered.states.iter().collect();
            states.sort_by_key(|(k, _)| **k);
            for ((topic, partition), hs) in states {
                let _ = writeln!(
                    out,
                    "topicId: {topic:032x} partition: {partition} term: {} vote: {} commit: {}",
                    hs.term, hs.vote, hs.commit
                );
            }
            let mut pieces: Vec<_> = recovered.pieces.iter().collect();
            pieces.sort_by_key(|(k, _)| **k);
            for ((topic, partition), ps) in pieces {
                let _ = writeln!(
                    out,
                    "topicId: {topic:032x} partition: {partition} unsettled pieces: {}",
                    ps.len()
                );
            }
            if read < data.len() {
                let _ = writeln!(
                    out,
                    "{} bytes from position {read} fail their checks (a torn last frame: the \
                     broker drops them at start)",
                    data.len() - read
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "{e}");
        }
    }
}

fn small(out: &mut String, data: &[u8]) {
    match small_file::check_versioned(data) {
        Ok((format, body)) => {
            let _ = writeln!(out, "format: {format} crc valid: true");
            let pretty = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok());
            let _ = writeln!(out, "{}", pretty.as_deref().unwrap_or(body));
        }
        Err(e) => {
            let _ = writeln!(out, "not a whole small file: {e}");
        }
    }
}
