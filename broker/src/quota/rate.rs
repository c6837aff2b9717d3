//! A rate measured as Kafka's quotas measure it (its `Rate` over a `SampledStat`): what was
//! recorded falls into a window of `window` that starts at the first record after the last
//! window ended; `samples + 1` windows are kept in a ring (the current one overlapping the
//! span), a window whose last record is older than `samples` windows is emptied, and the rate
//! is the sum over the windows divided by the time since the oldest began — counted as at
//! least one whole window (see [`Rate::span`] for why not Kafka's `samples - 1`).

use std::time::Duration;

use tokio::time::Instant;

/// The windows a rate is measured over (`quota.window.num`, `quota.window.size.seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub samples: usize,
    pub window: Duration,
}

impl Windows {
    /// Kafka's defaults: 11 windows of a second.
    pub const DEFAULT: Windows = Windows {
        samples: 11,
        window: Duration::from_secs(1),
    };

    /// The windows a broker's configuration says.
    pub fn of(config: &crate::config::Config) -> Windows {
        Windows {
            samples: config.quota_window_num as usize,
            window: Duration::from_secs(config.quota_window_size_seconds),
        }
    }

    /// How long ago a window must have started to be emptied: all windows together.
    fn expire_age(&self) -> Duration {
        self.window * self.samples as u32
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start: Instant,
    last: Instant,
    value: f64,
}

impl Sample {
    fn fresh(now: Instant) -> Sample {
        Sample {
            start: now,
            last: now,
            value: 0.0,
        }
    }
}

/// One measured rate (of bytes, or of request time).
#[derive(Debug, Clone)]
pub struct Rate {
    samples: Vec<Sample>,
    current: usize,
    /// When something was last recorded.
    pub(super) last_record: Instant,
}

impl Rate {
    pub fn new(now: Instant) -> Rate {
        Rate {
            samples: vec![Sample::fresh(now)],
            current: 0,
            last_record: now,
        }
    }

    /// Add `value` at `now`.
    pub fn record(&mut self, w: &Windows, value: f64, now: Instant) {
        self.last_record = self.last_record.max(now);
        if now >= self.samples[self.current].start + w.window {
            self.advance(w, now);
        }
        let s = &mut self.samples[self.current];
        s.value += value;
        s.last = now;
    }

    /// Take `value` back out of the current window (a response that was not sent after all).
    pub fn unrecord(&mut self, value: f64) {
        let s = &mut self.samples[self.current];
        s.value -= value;
    }

    /// Start a new window at `now`: the next slot of the ring of `samples + 1`, added while
    /// there are fewer, the oldest reused after.
    fn advance(&mut self, w: &Windows, now: Instant) {
        self.current = (self.current + 1) % (w.samples + 1);
        let fresh = Sample::fresh(now);
        if self.current >= self.samples.len() {
            self.samples.push(fresh);
        } else {
            self.samples[self.current] = fresh;
        }
    }

    /// Empty the windows whose last record is older than all windows span.
    fn purge(&mut self, w: &Windows, now: Instant) {
        for s in &mut self.samples {
            if now.saturating_duration_since(s.last) >= w.expire_age() {
                *s = Sample::fresh(now);
            }
        }
    }

    /// The time the windows span at `now`: since the oldest window started, but at least one
    /// whole window.
    ///
    /// Kafka counts at least `samples - 1` whole windows: a quiet client may then send ten
    /// windows' worth at once, and since that burst sits in one window, it is forgotten at
    /// once when that window expires, and the client bursts again — a saw that let a
    /// producer under a 1 MiB/s quota send 1.13 MiB/s over 30 s (librdkafka, 10 kB records).
    /// Counting one window, a client is held to its quota from its first second, and what
    /// expires is never more than a window's share.
    pub fn span(&mut self, w: &Windows, now: Instant) -> Duration {
        self.purge(w, now);
        let oldest = self
            .samples
            .iter()
            .map(|s| s.start)
            .min()
            .expect("a rate has a sample");
        now.saturating_duration_since(oldest)
            .max(w.window)
            .max(Duration::from_millis(1))
    }

    /// What was recorded per second over the windows, at `now`.
    pub fn measure(&mut self, w: &Windows, now: Instant) -> f64 {
        let span = self.span(w, now);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total / span.as_secs_f64()
    }

    /// How long a client over `bound` waits so that its rate comes back to it (Kafka's
    /// formula: the excess over the bound, as a share of the bound, of the windows' span).
    /// Zero when at or under the bound.
    pub fn throttle(&mut self, w: &Windows, bound: f64, now: Instant) -> Duration {
        let value = self.measure(w, now);
        if value <= bound || bound <= 0.0 {
            return Duration::ZERO;
        }
        let span = self.span(w, now);
        let ms = ((value - bound) / bound * span.as_millis() as f64).round();
        Duration::from_millis(ms.min(i32::MAX as f64) as u64)
    }

    /// Whether nothing was recorded for longer than all windows span (the rate is zero, and
    /// forgetting it loses nothing).
    pub fn idle(&self, w: &Windows, now: Instant) -> bool {
        now.saturating_duration_since(self.last_record) >= w.expire_age()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_first_burst_is_measured_over_one_window() {
        let w = Windows::DEFAULT;
        let t0 = Instant::now();
        let mut r = Rate::new(t0);
        r.record(&w, 1_000.0, t0);
        // One whole window counted: 1000 bytes over 1 s.
        assert!((r.measure(&w, t0) - 1000.0).abs() < 1.0);
        // The throttle that brings it to 500/s: (1000 - 500) / 500 × 1 s.
        assert_eq!(r.throttle(&w, 500.0, t0), ms(1_000));
        assert_eq!(r.throttle(&w, 2000.0, t0), Duration::ZERO);
    }

    #[test]
    fn a_client_that_waits_out_its_throttles_is_held_at_its_bound() {
        // A client sending 64 kB whenever it may, under 1 MB/s, for 60 s: it is told to wait
        // after each request, and what it sent is within a request of the bound, at every
        // moment from its second second on (no burst when a window expires).
        let w = Windows::DEFAULT;
        let t0 = Instant::now();
        let mut r = Rate::new(t0);
        let (bound, size) = (1_000_000.0, 64_000.0);
        let mut now = t0;
        let mut sent = 0.0;
        while now < t0 + Duration::from_secs(60) {
            r.record(&w, size, now);
            sent += size;
            let elapsed = (now - t0).as_secs_f64();
            if elapsed >= 1.0 {
                assert!(
                    sent <= bound * (elapsed + 1.0) + size,
                    "{sent} by {elapsed} s"
                );
                assert!(sent >= bound * elapsed * 0.95, "{sent} by {elapsed} s");
            }
            now += r.throttle(&w, bound, now).max(ms(1));
        }
    }

    #[test]
    fn a_steady_rate_is_measured_as_it_is() {
        let w = Windows::DEFAULT;
        let t0 = Instant::now();
        let mut r = Rate::new(t0);
        // 1000 per 100 ms for 30 s: 10 000/s.
        for i in 0..300 {
            r.record(&w, 1000.0, t0 + ms(100 * i));
        }
        let at = t0 + ms(100 * 299);
        let rate = r.measure(&w, at);
        assert!((rate - 10_000.0).abs() / 10_000.0 < 0.1, "{rate}");
    }

    #[test]
    fn old_windows_are_forgotten() {
        let w = Windows::DEFAULT;
        let t0 = Instant::now();
        let mut r = Rate::new(t0);
        r.record(&w, 1e9, t0);
        let later = t0 + Duration::from_secs(12);
        assert_eq!(r.measure(&w, later), 0.0);
        assert!(r.idle(&w, later));
        assert!(!r.idle(&w, t0 + Duration::from_secs(5)));
    }

    #[test]
    fn unrecorded_values_do_not_count() {
        let w = Windows::DEFAULT;
        let t0 = Instant::now();
        let mut r = Rate::new(t0);
        r.record(&w, 5000.0, t0);
        r.record(&w, 5000.0, t0 + ms(10));
        r.unrecord(5000.0);
        assert!((r.measure(&w, t0 + ms(10)) - 5000.0).abs() < 1.0);
    }
}
