//! `[workload.configs]`: an admin changing a topic's configuration again and again, each change
//! through the next broker ([`crate::workload::configs`]).

use serde::Deserialize;

/// Every `interval_ms` the admin sets one key of the configured topic to a new value
/// (IncrementalAlterConfigs), the keys in turn, each change sent to the next broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigsWorkload {
    pub interval_ms: u64,
}

impl ConfigsWorkload {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.interval_ms == 0 {
            return Err("workload.configs: interval_ms must be above 0".into());
        }
        Ok(())
    }
}
