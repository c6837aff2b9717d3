//! The fault switches a test sets on a mounted filesystem, and the seeded generator behind a
//! torn crash.
//!
//! Invariant: nothing here draws on the operating system's randomness: the same seed tears the
//! same bytes, so a failing run can be replayed.

/// The switches read by every write, sync and allocation. (The stall of syncs lives with the
/// stalled syncs themselves, in `stall`, so that one lock orders both.)
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Faults {
    /// Syncs still to fail with EIO (each drops its file's dirty data).
    pub(crate) syncs_to_fail: u32,
    /// Every write fails with EIO.
    pub(crate) writes_fail: bool,
    /// The disk is full: growing a file fails with ENOSPC, statfs reports no free space.
    pub(crate) full: bool,
    /// A slow disk: every read, write and sync first waits a uniform draw from this range.
    pub(crate) latency: Option<(std::time::Duration, std::time::Duration)>,
    /// Its tail: this many operations in a million wait this long instead.
    pub(crate) spike: Option<(u32, std::time::Duration)>,
}

impl Faults {
    /// Whether the sync starting now is to fail (and counts it against `syncs_to_fail`).
    pub(crate) fn take_sync_failure(&mut self) -> bool {
        if self.syncs_to_fail > 0 {
            self.syncs_to_fail -= 1;
            true
        } else {
            false
        }
    }
}

/// SplitMix64 (Steele, Lea and Flood): a tiny generator, good enough to pick which bytes a
/// torn write keeps, and fully determined by its seed.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in `0..n` (0 when `n` is 0). The modulo bias is irrelevant at these sizes.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_numbers() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SplitMix64::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        let mut c = SplitMix64::new(43);
        assert_ne!(a[0], c.next_u64());
        // The reference value of SplitMix64 seeded with 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn sync_failures_are_counted_down() {
        let mut f = Faults {
            syncs_to_fail: 2,
            ..Faults::default()
        };
        assert!(f.take_sync_failure());
        assert!(f.take_sync_failure());
        assert!(!f.take_sync_failure());
    }
}
