//! How long the backing disk takes to sync: a histogram of every sync served without a stall
//! (the backing filesystem's fsync or fdatasync alone — not the FUSE round trip, not a slow
//! disk's injected wait), so that a user of the mount can tell what this machine's disk gives.
//!
//! Invariant: bucket `i` counts the syncs that took `[edge(i), edge(i + 1))` microseconds,
//! the edges growing by 2^(1/4) (a quarter of a doubling); a percentile is told as the upper
//! edge of its bucket, never lower than the truth and at most 19 % above it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// 2^(80/4) µs ≈ 17 min: longer syncs are counted in the last bucket.
const BUCKETS: usize = 81;

#[derive(Debug)]
pub(crate) struct Histogram {
    counts: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn edge(i: usize) -> f64 {
    2f64.powf(i as f64 / 4.0)
}

impl Histogram {
    pub(crate) fn record(&self, took: Duration) {
        let us = took.as_secs_f64() * 1e6;
        let i = if us < 1.0 {
            0
        } else {
            ((us.log2() * 4.0).floor() as usize).min(BUCKETS - 1)
        };
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q`-th quantile (0..=1) of what was recorded, as its bucket's upper edge; `None`
    /// before anything was.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_secs_f64(edge(i + 1) / 1e6));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_is_the_upper_edge_of_its_bucket_within_a_fifth() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.99), None);
        for _ in 0..990 {
            h.record(Duration::from_micros(500));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(40));
        }
        let p99 = h.quantile(0.99).unwrap();
        assert!(
            p99 >= Duration::from_micros(500) && p99 <= Duration::from_micros(600),
            "{p99:?}"
        );
        let p999 = h.quantile(0.999).unwrap();
        assert!(
            p999 >= Duration::from_millis(40) && p999 <= Duration::from_millis(48),
            "{p999:?}"
        );
    }
}
