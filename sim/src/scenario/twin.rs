//! A scenario's `[twin]` table: how its twin runs on real processes are held against its
//! simulated seeds (`cargo xtask sim fidelity`, [`crate::report::fidelity`]).

use serde::Deserialize;

/// How a scenario's twin runs are held against its simulated seeds (`cargo xtask sim
/// fidelity`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwinSpec {
    /// A figure (throughput, produce p99, time to resume) diverges when the real world's is
    /// more than this many times the simulation's, or less than its inverse.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    3.0
}

impl Default for TwinSpec {
    fn default() -> Self {
        TwinSpec {
            tolerance: default_tolerance(),
        }
    }
}
