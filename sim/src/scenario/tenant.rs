//! A tenant over its quota (`[workload.tenant]`): one more producer, under a client id of its
//! own with a `producer_byte_rate` quota, sending as fast as the brokers let it; the quota
//! checker ([`crate::checks::quota`]) judges that it was held near its quota, lost nothing, and
//! that the other producers kept their pace.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Its `producer_byte_rate`, bytes per second (set at the start through AlterClientQuotas).
    pub quota_bytes_per_s: u64,
    /// Bytes of each of its records.
    pub value_bytes: usize,
}
