//! The log cleaner (Kafka's `LogCleaner`): compacted topics (`cleanup.policy` with `compact`)
//! keep at least the latest record of every key. A task per data directory, beside the
//! commit pipeline and the admin lane, never inside either: it picks the partition whose
//! cleanable log is dirtiest (the part written since its last cleaning, by bytes, at least
//! `min.cleanable.dirty.ratio`, or older than `max.compaction.lag.ms`), cleans it
//! ([`pass`]), and waits `log_cleaner_backoff_ms` when none needs it.
//!
//! **Invariants.** The cleaner rewrites only closed segments wholly below the first
//! uncleanable offset — the active segment, the last stable offset (the high watermark — in a
//! cluster what Raft committed and this replica applied — or an open transaction's first
//! offset, whose abort would make the records it hides the latest again), records younger
//! than `min.compaction.lag.ms` — so nothing a producer or Raft may still write or cut, and
//! no record an undecided transaction may supersede, is touched. A cleaned batch keeps its
//! offsets ([`rewrite`]), so the log's batches stay dense and every Raft entry stays one
//! batch. A segment is replaced whole, under the partition's files lock, only if it is still
//! the segment read, and crash-safely ([`pass`]). Its memory is bounded (the key map's
//! budget, a megabyte of reads and writes at a time); its I/O is paced
//! (`log_cleaner_io_max_bytes_per_second`); its disk operations have the I/O deadline, and
//! one that fails or stalls fails the data directory as any other would.
//!
//! Where the dirty section begins (the clean point) is kept per partition in its directory
//! (`cleaner-offset-checkpoint`); without it the whole log counts as dirty, which costs a
//! cleaning, never a record.

mod offset_map;
mod pass;
mod rewrite;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::log::{LogConfig, Partition};
use super::{small_file, Command, Shared, StorageError};
use crate::config::Config;
use crate::metrics::Metrics;
use pass::Plan;

/// The file that keeps where a partition's dirty section begins.
pub(crate) const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// The cleaner's settings (`log_cleaner_*`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CleanerSettings {
    pub dedupe_buffer_bytes: u64,
    /// Bytes read and written per second at most; 0: no limit.
    pub rate_bytes_per_s: u64,
    pub backoff: Duration,
}

impl CleanerSettings {
    pub(crate) fn of(config: &Config) -> Option<CleanerSettings> {
        config.log_cleaner_enable.then(|| CleanerSettings {
            dedupe_buffer_bytes: config.log_cleaner_dedupe_buffer_bytes,
            rate_bytes_per_s: config.log_cleaner_io_max_bytes_per_second,
            backoff: Duration::from_millis(config.log_cleaner_backoff_ms),
        })
    }
}

pub(super) struct Cleaner {
    shared: Arc<Shared>,
    settings: CleanerSettings,
    /// Closed when the store is dropped: the cleaner ends at its next safe point.
    open: watch::Receiver<()>,
    /// Keeps the commit pipeline (and the directory's lock) until the cleaner has ended.
    _pipeline: mpsc::Sender<Command>,
    /// Where each partition's dirty section begins, by directory (for the partition there
    /// now: a topic deleted and made again is another).
    clean_points: HashMap<PathBuf, (Weak<Partition>, i64)>,
    /// The pace: I/O granted up to this instant.
    paced_until: Option<tokio::time::Instant>,
}

impl Cleaner {
    pub(super) fn new(
        shared: Arc<Shared>,
        settings: CleanerSettings,
        open: watch::Receiver<()>,
        pipeline: mpsc::Sender<Command>,
    ) -> Self {
        Cleaner {
            shared,
            settings,
            open,
            _pipeline: pipeline,
            clean_points: HashMap::new(),
            paced_until: None,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            if self.stopping() {
                return;
            }
            if self.round().await {
                continue;
            }
            let clock = self.shared.env.clock.clone();
            tokio::select! {
                _ = clock.sleep(self.settings.backoff) => {}
                _ = self.open.changed() => return,
            }
        }
    }

    fn stopping(&self) -> bool {
        self.open.has_changed().is_err()
    }

    /// Clean the dirtiest partition that needs it; whether one was cleaned.
    async fn round(&mut self) -> bool {
        if self.shared.io.health.check().is_err() {
            return false;
        }
        let compacted: Vec<Arc<Partition>> = self
            .shared
            .catalog
            .all()
            .iter()
            .flat_map(|t| t.partitions.iter().cloned())
            .filter(|p| p.config().cleanup.compact && !p.is_deleted())
            .collect();
        let now_ms = self.shared.env.clock.wall_ms();
        let mut best: Option<(Arc<Partition>, Plan)> = None;
        for p in compacted {
            let point = match self.clean_point(&p).await {
                Ok(point) => point,
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "cannot read the cleaner's checkpoint; the partition is not cleaned now");
                    continue;
                }
            };
            let Some(plan) = plan(&p, point, now_ms) else {
                continue;
            };
            let better = best
                .as_ref()
                .is_none_or(|(_, b)| (plan.overdue, plan.ratio) > (b.overdue, b.ratio));
            if better {
                best = Some((p, plan));
            }
        }
        let Some((p, plan)) = best else {
            return false;
        };
        match self.clean(&p, plan).await {
            Ok(Some(done)) => {
                tracing::info!(topic = %p.topic, partition = p.index, from = plan.first_dirty, to = done.cleaned_to, keys = done.keys, dirty_ratio = plan.ratio, records_removed = done.records_removed, segments = done.segments_rewritten, bytes_before = done.bytes_before, bytes_after = done.bytes_after, "cleaned a compacted log");
                let m = &self.shared.metrics;
                Metrics::inc(&m.cleaner_runs, 1);
                Metrics::inc(&m.cleaner_records_removed, done.records_removed);
                Metrics::inc(
                    &m.cleaner_bytes_freed,
                    done.bytes_before.saturating_sub(done.bytes_after),
                );
                if let Err(e) = self.save_clean_point(&p, done.cleaned_to).await {
                    self.failed(&p, &e);
                }
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.failed(&p, &e);
                false
            }
        }
    }

    /// A cleaning failed: a disk that failed or stalled fails the directory (as any write
    /// would); damage in a segment is left for its readers to report, and the cleaner tries
    /// again later.
    fn failed(&self, p: &Partition, e: &StorageError) {
        if p.is_deleted() {
            return;
        }
        tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "the cleaner could not clean a partition; it tries again later");
        self.shared.fail_on(e);
    }

    /// Where `p`'s dirty section begins, read from its checkpoint the first time.
    async fn clean_point(&mut self, p: &Arc<Partition>) -> Result<i64, StorageError> {
        if let Some((known, point)) = self.clean_points.get(&p.dir) {
            if std::ptr::eq(known.as_ptr(), Arc::as_ptr(p)) {
                return Ok(*point);
            }
        }
        let point = small_file::read(&self.shared.io, &p.dir.join(CHECKPOINT_FILE), |body| {
            body.strip_prefix("clean_offset=")
                .and_then(|n| n.trim().parse::<i64>().ok())
                .ok_or_else(|| format!("unreadable: {body:?}"))
        })
        .await?
        .unwrap_or(0);
        self.clean_points
            .insert(p.dir.clone(), (Arc::downgrade(p), point));
        Ok(point)
    }

    async fn save_clean_point(
        &mut self,
        p: &Arc<Partition>,
        point: i64,
    ) -> Result<(), StorageError> {
        self.clean_points
            .insert(p.dir.clone(), (Arc::downgrade(p), point));
        small_file::write(
            &self.shared.io,
            &p.dir,
            CHECKPOINT_FILE,
            &format!("clean_offset={point}"),
        )
        .await
    }

    /// Wait until `bytes` more fit the I/O rate.
    async fn pace(&mut self, bytes: u64) {
        let rate = self.settings.rate_bytes_per_s;
        if rate == 0 {
            return;
        }
        let clock = self.shared.env.clock.clone();
        let now = clock.now();
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        // No credit for time spent idle beyond a tenth of a second.
        let floor = now.checked_sub(Duration::from_millis(100)).unwrap_or(now);
        let until = self.paced_until.map_or(now, |u| u.max(floor)) + cost;
        self.paced_until = Some(until);
        if until > now {
            clock.sleep(until - now).await;
        }
    }

    /// The most a batch's records may decompress to (as the produce path allows).
    fn decompressed_max(&self, config: &LogConfig) -> usize {
        crate::records::Rules {
            batch_bytes_max: config.max_message_bytes as usize,
            timestamp_type: config.timestamp_type,
            timestamp_before_max_ms: 0,
            timestamp_after_max_ms: 0,
            now_ms: 0,
            keys_required: false,
            transactional: false,
        }
        .decompressed_bytes_max()
    }
}

/// What the cleaner would clean of `p` now, if it needs it: its dirty section (from
/// `clean_point`) up to the first uncleanable offset, and how dirty the cleanable log is.
fn plan(p: &Partition, clean_point: i64, now_ms: i64) -> Option<Plan> {
    let config = p.config();
    if !config.cleanup.compact {
        return None;
    }
    let st = p.state();
    let first_base = *st.segments.keys().next()?;
    // A clean point past the active segment is another log's (this one was reset since).
    let first_dirty = if clean_point > st.active().base_offset {
        first_base
    } else {
        clean_point.max(first_base)
    };
    let closed = st.segments.len().saturating_sub(1);
    let young_after = now_ms.saturating_sub(config.min_compaction_lag_ms);
    let mut uncleanable = st.active().base_offset.min(st.last_stable_offset());
    for seg in st.segments.values().take(closed) {
        if seg.next_offset > first_dirty && seg.max_timestamp > young_after {
            uncleanable = uncleanable.min(seg.base_offset);
            break;
        }
    }
    let (mut clean, mut dirty) = (0u64, 0u64);
    let mut oldest_dirty: Option<i64> = None;
    for seg in st.segments.values().take(closed) {
        if seg.next_offset > uncleanable {
            break;
        }
        if seg.next_offset <= first_dirty {
            clean += seg.size;
        } else {
            dirty += seg.size;
            oldest_dirty.get_or_insert(seg.roll_base_ms.unwrap_or(seg.max_timestamp));
        }
    }
    if dirty == 0 {
        return None;
    }
    let ratio = dirty as f64 / (clean + dirty) as f64;
    let overdue = config.max_compaction_lag_ms < i64::MAX
        && oldest_dirty.is_some_and(|t| now_ms.saturating_sub(t) > config.max_compaction_lag_ms);
    (overdue || ratio >= config.min_cleanable_dirty_ratio.get()).then_some(Plan {
        first_dirty,
        uncleanable,
        ratio,
        overdue,
    })
}
