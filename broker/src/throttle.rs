//! Rate limits for the log lines a peer can cause: one line per malformed frame, refused
//! connection or refused batch would let any client flood the log (and the disk under it).
//! Each kind gets a few lines per window; the rest are counted, and the next line that is
//! written says how many were suppressed before it. Time comes from the node's clock.

use crate::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Lines of one kind per window, at most.
const LINES_PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(10);

/// The limit for one kind of log line.
pub struct LogThrottle {
    state: Mutex<Window>,
}

impl Default for LogThrottle {
    fn default() -> Self {
        LogThrottle {
            state: Mutex::new("throttle.log", Window::default()),
        }
    }
}

#[derive(Default)]
struct Window {
    started: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl LogThrottle {
    /// Whether to write this line now. `Some(n)`: write it, saying that `n` lines of this kind
    /// were suppressed since the last one written; `None`: count it and stay quiet.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if w.started
            .is_none_or(|s| now.saturating_duration_since(s) >= WINDOW)
        {
            w.started = Some(now);
            w.written = 0;
        }
        if w.written >= LINES_PER_WINDOW {
            w.suppressed += 1;
            return None;
        }
        w.written += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

/// The kinds of line a peer can cause.
#[derive(Default)]
pub struct Throttles {
    /// Frames or requests that cannot be decoded; connections closed mid-frame.
    pub malformed: LogThrottle,
    /// Connections refused at a connection limit.
    pub refused: LogThrottle,
    /// Produced batches refused (invalid records, too large, …).
    pub refused_batches: LogThrottle,
    /// TLS handshakes that failed or did not finish in time.
    pub tls: LogThrottle,
    /// SASL authentications refused.
    pub sasl: LogThrottle,
    /// Connections closed because this broker's metadata did not catch up with the cluster's
    /// in time (every client that connects meanwhile waits, so they come in floods).
    pub metadata_wait: LogThrottle,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_a_few_lines_per_window_and_the_rest_is_counted() {
        let t = LogThrottle::default();
        let start = Instant::now();
        let written: Vec<u64> = (0..1000)
            .filter_map(|i| t.admit(start + Duration::from_micros(i)))
            .collect();
        assert_eq!(written, vec![0; LINES_PER_WINDOW as usize]);
        // The first line of the next window says how many were suppressed.
        assert_eq!(
            t.admit(start + WINDOW),
            Some(1000 - LINES_PER_WINDOW as u64)
        );
        assert_eq!(t.admit(start + WINDOW), Some(0));
    }
}
