//! A scenario's `[cpu]`: the brokers' processors, which the simulated world makes their work
//! wait for (`world::cpu`).

use std::time::Duration;

use serde::Deserialize;

/// A scenario's `[cpu]`: processors per broker and what each kind of work costs them.
/// The default costs were calibrated on a release broker (docs/simulation.md, "Processors").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuSpec {
    #[serde(default = "default_cores")]
    pub cores: usize,
    /// Per request handled (decoding, the handler, the answer), besides its bytes.
    #[serde(default = "default_request_us")]
    pub request_us: f64,
    /// Per Raft step: a message taken, a group ticked, a group's Ready handled.
    #[serde(default = "default_raft_us")]
    pub raft_us: f64,
    /// Per file a commit round appends to (its writes and sync handed to the kernel).
    #[serde(default = "default_append_us")]
    pub append_us: f64,
    /// Per KiB of requests read and of records written (checksums, copies).
    #[serde(default = "default_kib_us")]
    pub kib_us: f64,
}

fn default_cores() -> usize {
    2
}
fn default_request_us() -> f64 {
    50.0
}
fn default_raft_us() -> f64 {
    10.0
}
fn default_append_us() -> f64 {
    20.0
}
fn default_kib_us() -> f64 {
    1.0
}

impl CpuSpec {
    pub(crate) fn check(&self) -> Result<(), String> {
        let costs = [self.request_us, self.raft_us, self.append_us, self.kib_us];
        if !(1..=64).contains(&self.cores) || costs.iter().any(|c| !c.is_finite() || *c < 0.0) {
            return Err("cpu: cores in 1..=64 and every cost a number of at least 0".into());
        }
        Ok(())
    }

    #[cfg_attr(not(madsim), allow(dead_code))]
    pub(crate) fn cost(&self, kind: &str, units: u64) -> Duration {
        let per_unit_us = match kind {
            "request" => self.request_us,
            "raft" => self.raft_us,
            "append" => self.append_us,
            "bytes" => self.kib_us / 1024.0,
            _ => 0.0,
        };
        Duration::from_nanos((per_unit_us * 1000.0 * units as f64) as u64)
    }
}
