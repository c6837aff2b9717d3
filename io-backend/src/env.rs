use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Clock, Disk, Net};

/// A seeded random generator shared by a node's components. Randomness never comes from
/// `thread_rng()`: in simulation that would bypass the seed and break replay.
#[derive(Clone)]
pub struct EnvRng(Arc<Mutex<ChaCha8Rng>>);

impl EnvRng {
    pub fn seeded(seed: u64) -> Self {
        EnvRng(Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))))
    }

    /// A uniformly drawn value in `[low, high)`; `low` when the range is empty.
    pub fn range_u64(&self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        // A poisoned lock only means another thread panicked mid-draw; the state is still valid.
        let mut rng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rng.gen_range(low..high)
    }

    pub fn next_u64(&self) -> u64 {
        let mut rng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rng.gen()
    }
}

impl fmt::Debug for EnvRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvRng")
    }
}

/// Everything a node may use from the outside world, handed to the broker as one value.
#[derive(Clone)]
pub struct Env {
    pub disk: Arc<dyn Disk>,
    pub net: Arc<dyn Net>,
    pub clock: Arc<dyn Clock>,
    pub rng: EnvRng,
}

/// Which disk implementation to use in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoEngine {
    Uring,
    Blocking,
    /// io_uring when it can be set up, otherwise `blocking` (with one log line saying why).
    #[default]
    Auto,
}

impl FromStr for IoEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uring" | "io_uring" => Ok(IoEngine::Uring),
            "blocking" => Ok(IoEngine::Blocking),
            "auto" => Ok(IoEngine::Auto),
            other => Err(format!(
                "unknown io engine {other:?}: expected uring, blocking or auto"
            )),
        }
    }
}

impl fmt::Display for IoEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoEngine::Uring => "uring",
            IoEngine::Blocking => "blocking",
            IoEngine::Auto => "auto",
        })
    }
}

#[cfg(not(madsim))]
impl Env {
    /// The production environment: the chosen disk engine, TCP, the system clock, and a
    /// generator seeded from `seed`.
    pub fn production(
        engine: IoEngine,
        blocking_threads: usize,
        seed: u64,
    ) -> std::io::Result<Env> {
        let disk: Arc<dyn Disk> = match engine {
            IoEngine::Blocking => Arc::new(crate::blocking::BlockingDisk::new(blocking_threads)),
            #[cfg(target_os = "linux")]
            IoEngine::Uring => Arc::new(crate::uring::UringDisk::start(blocking_threads)?),
            #[cfg(target_os = "linux")]
            IoEngine::Auto => match crate::uring::UringDisk::start(blocking_threads) {
                Ok(d) => Arc::new(d),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring cannot be set up; falling back to the blocking disk engine");
                    Arc::new(crate::blocking::BlockingDisk::new(blocking_threads))
                }
            },
            #[cfg(not(target_os = "linux"))]
            IoEngine::Uring => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "io_uring exists only on Linux",
                ))
            }
            #[cfg(not(target_os = "linux"))]
            IoEngine::Auto => Arc::new(crate::blocking::BlockingDisk::new(blocking_threads)),
        };
        Ok(Env {
            disk,
            net: Arc::new(crate::TcpNet),
            clock: Arc::new(crate::SystemClock),
            rng: EnvRng::seeded(seed),
        })
    }
}
