//! A broker's wall clock in a twin run, skewed and drifted for real: the broker process is
//! started with libfaketime preloaded, reading its offset from a file of its own on every
//! wall-clock read (`FAKETIME_NO_CACHE`), its monotonic clock left alone
//! (`FAKETIME_DONT_FAKE_MONOTONIC`) — so, as the simulated clock ([`crate::world::clock`]),
//! a skew moves only the wall time (Kafka timestamps, time-based retention and rolls).
//!
//! A drift is the offset growing by `ppm` of the time since it began, rewritten every
//! [`DRIFT_STEP`]; what it gained is kept when it ends, as in simulation. The simulated drift
//! also slows the broker's timers; libfaketime cannot slow the monotonic clock apart from the
//! wall clock, so in this world the timers are not slowed (the runner says so).
//!
//! Invariant: the offset file is replaced whole (written beside, then renamed), so the broker
//! never reads a partial offset.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How often a drifting offset is rewritten.
pub const DRIFT_STEP: Duration = Duration::from_millis(100);

/// Where Debian and others put the library.
const LIBRARY: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

/// libfaketime's library, if this machine has it.
pub fn library() -> Result<PathBuf, String> {
    LIBRARY
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "libfaketime is not installed (Debian: apt-get install libfaketime)".to_string()
        })
}

#[derive(Debug, Default)]
struct State {
    offset_ms: i64,
    /// The drift under way: its rate, and since when.
    drift: Option<(i64, Instant)>,
    /// What earlier drifts gained.
    gained_ms: i64,
}

impl State {
    fn total_ms(&self, now: Instant) -> i64 {
        let drifting = self.drift.map_or(0, |(ppm, since)| {
            (now - since).as_millis() as i64 * ppm / 1_000_000
        });
        self.offset_ms + self.gained_ms + drifting
    }
}

/// One broker's faked wall clock.
pub struct FakeClock {
    file: PathBuf,
    library: PathBuf,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeClock {
    /// A clock with no offset, its file at `file`.
    pub fn new(file: PathBuf) -> Result<Arc<FakeClock>, String> {
        let clock = FakeClock {
            file,
            library: library()?,
            state: Mutex::default(),
        };
        clock
            .write(0)
            .map_err(|e| format!("{}: {e}", clock.file.display()))?;
        Ok(Arc::new(clock))
    }

    /// The environment a process started with sees this clock.
    pub fn env(&self) -> Vec<(String, OsString)> {
        vec![
            ("LD_PRELOAD".into(), self.library.clone().into()),
            ("FAKETIME_TIMESTAMP_FILE".into(), self.file.clone().into()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }

    /// The wall clock is off by `offset_ms` (besides what drifts gained) from now on.
    pub fn set_offset_ms(&self, offset_ms: i64) {
        let total = {
            let mut s = lock(&self.state);
            s.offset_ms = offset_ms;
            s.total_ms(Instant::now())
        };
        self.write_or_log(total);
    }

    /// The wall clock drifts by `ppm` from now on (0: it stops drifting, keeping what it
    /// gained). While it drifts, the offset is rewritten every [`DRIFT_STEP`].
    pub fn set_drift_ppm(self: &Arc<Self>, ppm: i64) {
        let now = Instant::now();
        {
            let mut s = lock(&self.state);
            let gained = s.total_ms(now) - s.offset_ms - s.gained_ms;
            s.gained_ms += gained;
            s.drift = (ppm != 0).then_some((ppm, now));
        }
        if ppm != 0 {
            let clock = self.clone();
            tokio::spawn(async move {
                loop {
                    let total = {
                        let s = lock(&clock.state);
                        match s.drift {
                            Some((p, since)) if p == ppm && since == now => {
                                s.total_ms(Instant::now())
                            }
                            // Another drift (or none) took over.
                            _ => break,
                        }
                    };
                    clock.write_or_log(total);
                    tokio::time::sleep(DRIFT_STEP).await;
                }
            });
        } else {
            let total = lock(&self.state).total_ms(now);
            self.write_or_log(total);
        }
    }

    fn write_or_log(&self, total_ms: i64) {
        if let Err(e) = self.write(total_ms) {
            tracing::error!("cannot set the clock in {}: {e}", self.file.display());
        }
    }

    fn write(&self, total_ms: i64) -> std::io::Result<()> {
        let spec = format!(
            "{}{}.{:03}s\n",
            if total_ms < 0 { "-" } else { "+" },
            total_ms.unsigned_abs() / 1000,
            total_ms.unsigned_abs() % 1000
        );
        let beside = self.file.with_extension("next");
        std::fs::write(&beside, spec)?;
        std::fs::rename(&beside, &self.file)
    }

    /// The offset file.
    pub fn file(&self) -> &Path {
        &self.file
    }
}
