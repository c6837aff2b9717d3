//! The quotas' figures on the metrics endpoint, read at each scrape: per metered entity (a
//! quota key with the user and client id it measures — Kafka's quota metric tags) its rate,
//! its bound, and the throttle time it was given; at most [`SERIES_MAX`] entities, the most
//! throttled first, and a count of those left out.

use std::sync::Arc;

use io_backend::Clock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::{ClientQuotas, Meters};

/// Entities shown, at most.
pub const SERIES_MAX: usize = 500;

/// The quotas' collector: the meters, and where the quotas in force are read.
pub struct QuotaMetrics {
    pub meters: Arc<Meters>,
    pub quotas: Box<dyn Fn() -> Arc<ClientQuotas> + Send + Sync>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for QuotaMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuotaMetrics")
    }
}

type Labels = Vec<(String, String)>;

impl Collector for QuotaMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let quotas = (self.quotas)();
        let (figures, left_out) = self.meters.figures(&quotas, SERIES_MAX, self.clock.now());
        let labels = |m: &super::meter::Metered| -> Labels {
            vec![
                ("quota".into(), m.key.name().into()),
                ("user".into(), m.user.clone()),
                ("client_id".into(), m.client_id.clone()),
                ("ip".into(), m.ip.clone()),
            ]
        };
        let mut rate = encoder.encode_descriptor(
            "quota_rate",
            "What a metered client used per second over the quota windows (bytes, or percent of a thread)",
            None,
            MetricType::Gauge,
        )?;
        for f in &figures {
            ConstGauge::new(f.rate).encode(rate.encode_family(&labels(&f.metered))?)?;
        }
        let mut bound = encoder.encode_descriptor(
            "quota_bound",
            "The quota that covers a metered client (0: none any more)",
            None,
            MetricType::Gauge,
        )?;
        for f in &figures {
            ConstGauge::new(f.bound).encode(bound.encode_family(&labels(&f.metered))?)?;
        }
        let mut time = encoder.encode_descriptor(
            "quota_throttle_time_ms",
            "Throttle time given to a metered client",
            None,
            MetricType::Counter,
        )?;
        for f in &figures {
            ConstCounter::new(f.throttle_ms).encode(time.encode_family(&labels(&f.metered))?)?;
        }
        let mut count = encoder.encode_descriptor(
            "quota_throttled",
            "Responses that told a metered client to wait",
            None,
            MetricType::Counter,
        )?;
        for f in &figures {
            ConstCounter::new(f.throttled).encode(count.encode_family(&labels(&f.metered))?)?;
        }
        let m = encoder.encode_descriptor(
            "quota_metered",
            "Metered clients measured now",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new((figures.len() + left_out) as i64).encode(m)?;
        let m = encoder.encode_descriptor(
            "quota_metered_not_shown",
            "Metered clients left out of the series above (past their bound, the least throttled)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(left_out as i64).encode(m)
    }
}
