//! The quota checker (`[workload.tenant]`): a tenant over its `producer_byte_rate` is held near
//! it — over the run, what it had acknowledged is at most its quota for the run's length, plus
//! one window's burst each time its partition's leader changed (every broker measures on its
//! own, and a new leader starts measuring afresh), and in the time no fault touched it at
//! least half its quota (held, not starved); what it had acknowledged is never lost (the
//! producers' checks read it back with every other write). The other producers keep their
//! pace: the performance figures leave the tenant out ([`super::perf::measure`]).

use crate::findings::Finding;
use crate::history::{Op, SendOutcome};
use crate::scenario::{Fault, Scenario};
use crate::workload::tenant::PRODUCER;

/// Slack on the upper bound: requests are whole records, and a throttle ends a little late.
const OVER: f64 = 1.1;
/// The least share of its quota a tenant gets in time no fault touched.
const UNDER: f64 = 0.5;

pub fn check(history: &[Op], scenario: &Scenario, faults: &[Fault]) -> Vec<Finding> {
    let Some(tenant) = &scenario.workload.tenant else {
        return Vec::new();
    };
    let quota = tenant.quota_bytes_per_s as f64;
    let window_s = scenario
        .broker
        .get("quota_window_size_seconds")
        .and_then(|v| v.as_integer())
        .unwrap_or(1) as f64;
    let acked: Vec<(f64, f64, usize, usize)> = history
        .iter()
        .filter_map(|op| match op {
            Op::Send(s) if s.producer == PRODUCER && matches!(s.outcome, SendOutcome::Ok(_)) => {
                Some((s.invoked_s, s.completed_s, s.broker, s.value.len()))
            }
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    let total: f64 = acked.iter().map(|a| a.3 as f64).sum();
    // Leaderships the tenant wrote to: each change of broker starts another.
    let stints = 1 + acked.windows(2).filter(|p| p[0].2 != p[1].2).count();
    let end = acked.last().map_or(0.0, |a| a.1);
    let first = acked.first().map_or(0.0, |a| a.0);
    let allowed = quota * ((end - first) * OVER + window_s * stints as f64)
        + tenant.value_bytes as f64 * stints as f64;
    if total > allowed {
        out.push(Finding::QuotaNotHeld {
            why: format!(
                "the tenant had {total:.0} bytes acknowledged from {first:.1} s to {end:.1} s over {stints} leaderships, above its quota of {quota:.0}/s ({allowed:.0} allowed)"
            ),
        });
    }
    // In clean time (no fault near), its rate is not far below its quota.
    let windows = super::perf::fault_windows(faults);
    let clean = |from: f64, to: f64| windows.iter().all(|&(a, b)| to < a || from > b);
    let from = first + super::perf::WARM_UP_S;
    let clean_bytes: f64 = acked
        .iter()
        .filter(|a| a.0 >= from && clean(a.0, a.1))
        .map(|a| a.3 as f64)
        .sum();
    let mut clean_s = (end - from).max(0.0);
    for &(a, b) in &windows {
        clean_s -= (b.min(end) - a.max(from)).max(0.0);
    }
    if clean_s >= 10.0 && clean_bytes < UNDER * quota * clean_s {
        out.push(Finding::QuotaNotHeld {
            why: format!(
                "the tenant had {clean_bytes:.0} bytes acknowledged in {clean_s:.1} s no fault touched: {:.0}/s, under half its quota of {quota:.0}/s",
                clean_bytes / clean_s
            ),
        });
    }
    if acked.is_empty() {
        out.push(Finding::QuotaNotHeld {
            why: "the tenant had nothing acknowledged: the check proved nothing".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::history::Send;

    fn scenario() -> Scenario {
        toml::from_str(
            r#"
            name = "t"
            duration_s = 60
            [workload]
            producers = 1
            acks = -1
            interval_ms = 50
            [workload.tenant]
            quota_bytes_per_s = 1000
            value_bytes = 100
            [[faults]]
            kind = "crash"
            at_s = 30
            [expect]
            outcome = "pass"
            response_deadline_s = 10
            liveness_deadline_s = 30
            "#,
        )
        .unwrap()
    }

    /// The tenant's sends: one of 100 B every `every_s` from 0 to 60 s, to broker `broker(t)`.
    fn sends(every_s: f64, broker: impl Fn(f64) -> usize) -> Vec<Op> {
        let mut out = Vec::new();
        let mut t = 0.0;
        while t < 60.0 {
            out.push(Op::Send(Send {
                producer: PRODUCER,
                partition: 0,
                value: Bytes::from(vec![b'x'; 100]),
                idempotence: None,
                attempt: 1,
                acks: -1,
                broker: broker(t),
                invoked_s: t,
                completed_s: t + 0.02,
                outcome: SendOutcome::Ok(0),
            }));
            t += every_s;
        }
        out
    }

    #[test]
    fn a_tenant_at_its_quota_passes() {
        let sc = scenario();
        // 1000 B/s, a leader change at 30 s.
        let h = sends(0.1, |t| usize::from(t >= 30.0));
        assert_eq!(check(&h, &sc, &sc.faults), vec![]);
    }

    #[test]
    fn a_tenant_past_its_quota_is_found() {
        let sc = scenario();
        // 2000 B/s: twice its quota.
        let h = sends(0.05, |_| 0);
        let found = check(&h, &sc, &sc.faults);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].to_string().contains("above its quota"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn a_starved_tenant_is_found_and_a_missing_one_proves_nothing() {
        let sc = scenario();
        // 200 B/s: a fifth of its quota.
        let found = check(&sends(0.5, |_| 0), &sc, &sc.faults);
        assert!(
            found.iter().any(|f| f.to_string().contains("under half")),
            "{found:?}"
        );
        let found = check(&[], &sc, &sc.faults);
        assert!(
            found
                .iter()
                .any(|f| f.to_string().contains("proved nothing")),
            "{found:?}"
        );
    }
}
