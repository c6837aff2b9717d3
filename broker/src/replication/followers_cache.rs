//! The memory every group of a broker shares for durable entries its connected followers have
//! not acknowledged yet.
//!
//! Invariant: what the groups hold beyond their own floors stays within one broker-wide bound.

use std::sync::Arc;

/// The memory all groups of a broker keep, beyond their floors, for durable entries a
/// connected follower has not acknowledged yet (`CatchUpSettings::followers_cache_bytes_max`).
///
/// Why: a leader keeps a follower's appends few in flight (four of at most 1 MiB), so a
/// producer whose requests come faster than a follower acknowledges (one librdkafka
/// producer with its requests in flight: ~20 MB a round) got ahead of it by more than the
/// 1 MiB the cache kept; every entry past that was then read back from disk through the
/// catch-up reads and their throttle: 21 MB/s on the three-node cluster, against 233 MB/s
/// for the idempotent producer whose one request in flight never got ahead.
#[derive(Debug)]
pub struct FollowersCache {
    used: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl FollowersCache {
    pub fn new(max: u64) -> Arc<Self> {
        Arc::new(FollowersCache {
            used: std::sync::atomic::AtomicUsize::new(0),
            max: usize::try_from(max).unwrap_or(usize::MAX),
        })
    }

    /// Bytes held now, all groups together.
    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn full(&self) -> bool {
        self.used() > self.max
    }

    /// Move a group's share from `from` to `to` bytes.
    pub(super) fn account(&self, from: usize, to: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        if to > from {
            self.used.fetch_add(to - from, Relaxed);
        } else {
            self.used.fetch_sub(from - to, Relaxed);
        }
    }
}
