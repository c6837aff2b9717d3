//! Scenario files (`scenarios/*.toml`): the cluster, broker settings, workload, fault schedule
//! and the expected outcome.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Simulated seconds of workload.
    pub duration_s: u64,
    /// Broker settings over the defaults (keys as in the broker's configuration).
    #[serde(default)]
    pub broker: toml::Table,
    pub workload: Workload,
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Delays at the broker's fault points (`fault_point!`), for the whole run.
    #[serde(default)]
    pub fault_points: Option<FaultPoints>,
    pub expect: Expect,
}

/// Each time the broker passes a fault point, it pauses with this chance, for a time drawn up to
/// `max_delay_ms`: lock contention and unusual interleavings on demand.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPoints {
    pub chance_percent: u32,
    pub max_delay_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub producers: usize,
    /// 1 or -1 (all); acks=0 has no outcome to check.
    pub acks: i16,
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Pause between one producer's requests.
    pub interval_ms: u64,
}

fn default_topic() -> String {
    "workload".into()
}

/// A fault, applied at `at_s` simulated seconds into the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Every fsync started in the window waits until its end.
    FsyncStall { at_s: u64, for_s: u64 },
    /// The next `count` fsyncs fail with EIO and drop the dirty data.
    FsyncEio { at_s: u64, count: u32 },
    /// Kill the node (unsynced data lost, or torn), restart it after `down_s`.
    Crash {
        at_s: u64,
        #[serde(default)]
        torn: bool,
        #[serde(default = "one")]
        down_s: u64,
    },
    /// Every disk operation takes between `min_ms` and `max_ms` for `for_s`.
    SlowDisk {
        at_s: u64,
        for_s: u64,
        min_ms: u64,
        max_ms: u64,
    },
    /// The disk is full (writes that grow files fail) for `for_s`.
    DiskFull { at_s: u64, for_s: u64 },
}

fn one() -> u64 {
    1
}

impl Fault {
    pub fn at_s(&self) -> u64 {
        match self {
            Fault::FsyncStall { at_s, .. }
            | Fault::FsyncEio { at_s, .. }
            | Fault::Crash { at_s, .. }
            | Fault::SlowDisk { at_s, .. }
            | Fault::DiskFull { at_s, .. } => *at_s,
        }
    }

    /// When the fault is over (for the after-heal liveness check).
    pub fn healed_at_s(&self) -> u64 {
        match self {
            Fault::FsyncStall { at_s, for_s }
            | Fault::SlowDisk { at_s, for_s, .. }
            | Fault::DiskFull { at_s, for_s } => at_s + for_s,
            Fault::FsyncEio { at_s, .. } => *at_s,
            Fault::Crash { at_s, down_s, .. } => at_s + down_s,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expected {
    Pass,
    LivenessFailure,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub outcome: Expected,
    /// Longest a request may wait for any answer (success or error) before it counts as hung.
    pub response_deadline_s: u64,
    /// After the last fault heals, a write must succeed within this time.
    pub liveness_deadline_s: u64,
    /// No produce may be refused (the append queue never fills in these scenarios, so a refusal
    /// would be contention mistaken for backpressure — failure mode of the legacy system).
    #[serde(default)]
    pub no_refusals: bool,
}

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read scenario {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("scenario {}: {e}", path.display()))
    }

    pub fn last_heal_s(&self) -> u64 {
        self.faults
            .iter()
            .map(Fault::healed_at_s)
            .max()
            .unwrap_or(0)
    }
}
