//! `broker verify`: a data directory checked offline, file by file — the format marker, every
//! small file's CRC and format, every segment's batches (CRC-32C, counts, offsets that never
//! go back), each closed segment's index files against the segment itself, the transaction
//! index and producer state, and each replicated partition's Raft state against its log: the
//! hard state's term against the terms of its entries, and the Raft record's terms
//! (`raft-log`) against each closed segment's batches. What the broker repairs by itself at start (a torn tail of the
//! active segment, an index or producer state it rebuilds) is a warning; anything else is
//! damage. Nothing is written, and a directory a broker holds is refused.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{read, ToolError};
use crate::batch;
use crate::storage::log::replica::{self, ReplicaMeta};
use crate::storage::log::{index, txn_index};
use crate::storage::{format, raft_states, small_file};

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    /// `WARN …` and `DAMAGED …` lines, in the order found.
    pub lines: Vec<String>,
    pub damaged: usize,
    pub warnings: usize,
    pub files: usize,
    pub partitions: usize,
    pub batches: u64,
    pub bytes: u64,
}

impl Report {
    fn damage(&mut self, path: &Path, why: impl std::fmt::Display) {
        self.damaged += 1;
        self.lines
            .push(format!("DAMAGED {}: {why}", path.display()));
    }

    fn warn(&mut self, path: &Path, why: impl std::fmt::Display) {
        self.warnings += 1;
        self.lines.push(format!("WARN {}: {why}", path.display()));
    }

    /// The closing line.
    pub fn summary(&self) -> String {
        format!(
            "checked {} files, {} partitions, {} batches ({:.1} MB): {} damaged, {} warnings",
            self.files,
            self.partitions,
            self.batches,
            self.bytes as f64 / 1e6,
            self.damaged,
            self.warnings
        )
    }
}

/// Check `data_dir` (see the module doc).
pub fn verify(data_dir: &Path) -> Result<Report, ToolError> {
    if !data_dir.is_dir() {
        return Err(ToolError::Usage(format!(
            "{} is not a directory",
            data_dir.display()
        )));
    }
    refuse_in_use(data_dir)?;
    let mut report = Report::default();
    let meta = data_dir.join(".meta");
    let marker = meta.join(format::FILE);
    if marker.is_file() {
        let data = read(&marker)?;
        let level = small_file::check_versioned(&data)
            .ok()
            .and_then(|(_, body)| {
                body.lines()
                    .find_map(|l| l.strip_prefix("format="))
                    .and_then(|v| v.trim().parse::<u16>().ok())
            });
        match level {
            Some(l) if l > format::READS => {
                return Err(ToolError::Newer(format!(
                    "{} says format {l}; this broker reads formats up to {}: verify it with the \
                     version that wrote it",
                    marker.display(),
                    format::READS
                )))
            }
            Some(_) => {}
            None => report.damage(&marker, "not a readable format marker"),
        }
    }
    let mut names: HashMap<u128, String> = HashMap::new();
    for path in entries(&meta) {
        if path.extension().is_some_and(|e| e == "tmp") || !path.is_file() {
            continue;
        }
        if let Some(body) = small(&mut report, &path)? {
            if path.extension().is_some_and(|e| e == "topic") {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                    let id = v["id"]
                        .as_str()
                        .and_then(|t| u128::from_str_radix(t, 16).ok());
                    if let (Some(id), Some(name)) = (id, v["name"].as_str()) {
                        names.insert(id, name.to_string());
                    }
                }
            }
        }
    }
    let mut terms: HashMap<PathBuf, i64> = HashMap::new();
    for dir in entries(data_dir) {
        let hidden = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if dir.is_dir() && !hidden {
            let term = partition(&mut report, &dir)?;
            terms.insert(dir, term);
        }
    }
    let states = data_dir.join(raft_states::FILE);
    if states.is_file() {
        report.files += 1;
        let data = read(&states)?;
        match raft_states::parse_file(&data) {
            Err(e) => report.damage(&states, e),
            Ok((whole, recovered)) => {
                if whole < data.len() {
                    report.warn(&states, format!("{} bytes at its end fail their checks (a torn last frame, dropped at start)", data.len() - whole));
                }
                for ((topic, p), hs) in recovered.states {
                    let Some(name) = names.get(&topic) else {
                        continue;
                    };
                    let dir = data_dir.join(format!("{name}-{p}"));
                    let newest = terms.get(&dir).copied().unwrap_or(-1);
                    if (hs.term as i64) < newest {
                        report.damage(&states, format!("{name}-{p}'s hard state is at term {}, below the term {newest} of an entry in its log", hs.term));
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Refuse a directory whose lock a broker holds (the check takes a shared lock and writes
/// nothing).
fn refuse_in_use(data_dir: &Path) -> Result<(), ToolError> {
    let lock = data_dir.join(".lock");
    let Ok(file) = std::fs::File::open(&lock) else {
        return Ok(());
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(ToolError::Usage(format!(
            "{} is in use by a running broker ({}); stop it first",
            data_dir.display(),
            std::fs::read_to_string(&lock).unwrap_or_default().trim()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(ToolError::Read {
            path: lock,
            source: e,
        }),
    }
}

/// The entries of `dir`, sorted (none if it cannot be listed).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// A small file checked; its body when whole.
fn small(report: &mut Report, path: &Path) -> Result<Option<String>, ToolError> {
    report.files += 1;
    let data = read(path)?;
    match small_file::check_versioned(&data) {
        Ok((f, _)) if f > format::READS => {
            report.damage(path, format!("format {f}, of a later version"));
            Ok(None)
        }
        Ok((_, body)) => Ok(Some(body.to_string())),
        Err(e) => {
            report.damage(path, e);
            Ok(None)
        }
    }
}

/// A partition's directory checked; the newest term of an entry in its log (-1: none).
fn partition(report: &mut Report, dir: &Path) -> Result<i64, ToolError> {
    let mut segments: BTreeMap<i64, PathBuf> = BTreeMap::new();
    let mut others = Vec::new();
    for path in entries(dir) {
        match path.extension().and_then(|e| e.to_str()) {
            Some("log") => {
                if let Some(base) = super::base_of(&path) {
                    segments.insert(base, path);
                }
            }
            Some("index" | "timeindex" | "txnindex" | "snapshot" | "prefix" | "tmp" | "swap") => {}
            _ if path.is_file() => others.push(path),
            _ => {}
        }
    }
    if segments.is_empty() && others.is_empty() {
        return Ok(-1);
    }
    report.partitions += 1;
    let mut record = None;
    for path in others {
        let body = small(report, &path)?;
        if path.file_name().is_some_and(|n| n == replica::META_FILE) {
            record = body.and_then(|b| match ReplicaMeta::decode(&b) {
                Ok(m) => Some((path, m)),
                Err(e) => {
                    report.damage(&path, e);
                    None
                }
            });
        }
    }
    let last = segments.keys().next_back().copied();
    // The Raft record names every closed segment's first entry and terms; the active segment's
    // part, and the segment before's when a crash lost its write at the roll, only its
    // batches tell (a start rebuilds them).
    let lagging = match (&record, last) {
        (Some((path, m)), Some(active)) if !m.segments.contains_key(&active) => {
            let before = segments.range(..active).next_back().map(|(&b, _)| b);
            if let Some(b) = before.filter(|b| m.segments.contains_key(b)) {
                report.warn(
                    path,
                    format!("names no first entry for the active segment at offset {active} (a crash at its roll): a start rebuilds what it says of the segment at {b} from the batches"),
                );
            }
            before
        }
        _ => None,
    };
    let mut term_damage = false;
    let mut newest_term = -1i64;
    let mut next = i64::MIN;
    for (&base, path) in &segments {
        report.files += 1;
        let data = read(path)?;
        report.bytes += data.len() as u64;
        let active = Some(base) == last;
        let mut raft_index = record
            .as_ref()
            .filter(|(_, m)| !active && lagging != Some(base) && base >= m.raft_from)
            .and_then(|(_, m)| m.segments.get(&base).copied());
        let mut pos = 0usize;
        let mut starts: HashMap<usize, i64> = HashMap::new();
        while pos < data.len() {
            let rest = &data[pos..];
            let header = batch::parse_header(rest)
                .ok()
                .filter(|h| h.size <= rest.len());
            let Some(h) = header else {
                if !rest.iter().all(|b| *b == 0) {
                    let why = format!(
                        "{} bytes at position {pos} are not a whole batch",
                        rest.len()
                    );
                    if active {
                        report.warn(path, format!("{why} (a torn tail, cut at start)"));
                    } else {
                        report.damage(path, why);
                    }
                }
                break;
            };
            if let Err(e) = batch::validate_stored(&rest[..h.size]) {
                report.damage(
                    path,
                    format!(
                        "the batch at position {pos} (offset {}): {e}",
                        h.base_offset
                    ),
                );
            }
            report.batches += 1;
            newest_term = newest_term.max(i64::from(h.partition_leader_epoch));
            if let (Some(index), Some((record_path, m))) = (raft_index, &record) {
                let term = u64::try_from(h.partition_leader_epoch).unwrap_or(0);
                match m.term_of(index) {
                    Some(recorded) if recorded != term && !term_damage => {
                        term_damage = true;
                        report.damage(
                            record_path,
                            format!("says entry {index} is of term {recorded}; its batch (offset {} in {}) says term {term}", h.base_offset, path.display()),
                        );
                    }
                    _ => {}
                }
                raft_index = Some(index + 1);
            }
            // Offsets here are the log's: Raft's own entries in a replicated log take one
            // too (only a client's offsets skip them).
            if h.base_offset < next || h.base_offset < base {
                report.damage(
                    path,
                    format!(
                        "the batch at position {pos} starts at offset {}, before {}",
                        h.base_offset,
                        next.max(base)
                    ),
                );
            }
            starts.insert(pos, h.base_offset);
            next = h.next_offset();
            pos += h.size;
        }
        if !active {
            indexes(report, path, base, data.len() as u64, &starts, next)?;
        }
    }
    Ok(newest_term)
}

/// A closed segment's index files: checked, then held against the segment's batches.
fn indexes(
    report: &mut Report,
    log: &Path,
    base: i64,
    len: u64,
    starts: &HashMap<usize, i64>,
    next: i64,
) -> Result<(), ToolError> {
    let (offsets, times, txns, snapshot) = (
        log.with_extension("index"),
        log.with_extension("timeindex"),
        log.with_extension("txnindex"),
        log.with_extension("snapshot"),
    );
    if offsets.is_file() && times.is_file() {
        report.files += 2;
        let (o, t) = (read(&offsets)?, read(&times)?);
        let loaded = index::entries_of(index::OFFSET_KIND, &o)
            .zip(index::entries_of(index::TIME_KIND, &t))
            .and_then(|(o, t)| index::decode(o, t, len));
        match loaded {
            None => report.warn(
                &offsets,
                "the index files fail their checks (rebuilt at start)",
            ),
            Some(l) => {
                for e in &l.entries {
                    let at = starts.get(&(e.position as usize)).copied();
                    if at != Some(base + i64::from(e.relative_offset)) {
                        report.damage(
                            &offsets,
                            format!(
                                "offset {} at position {} is not where the segment has it ({at:?})",
                                base + i64::from(e.relative_offset),
                                e.position
                            ),
                        );
                    }
                }
                if base + i64::from(l.next_relative) != next {
                    report.damage(
                        &times,
                        format!(
                            "says the segment ends before offset {}, the segment before {next}",
                            base + i64::from(l.next_relative)
                        ),
                    );
                }
            }
        }
    }
    if txns.is_file() {
        report.files += 1;
        let data = read(&txns)?;
        if index::entries_of(index::TXN_KIND, &data)
            .and_then(txn_index::decode)
            .is_none()
        {
            report.warn(&txns, "fails its checks (rebuilt at start)");
        }
    }
    if snapshot.is_file() {
        report.files += 1;
        let data = read(&snapshot)?;
        if let Err(e) = crate::producer_state::ProducerStates::decode(&data) {
            report.warn(
                &snapshot,
                format!("producer state fails its checks ({e}; rebuilt at start)"),
            );
        }
    }
    Ok(())
}
