//! Every broker stays within its bounds, on every seed: the high-water marks each start of a
//! broker kept ([`broker::metrics::Metrics::bounds`]: its queues, catch-up reads under way
//! and their bytes per follower), and the bytes of the reads it made that its disk held in
//! flight at once — memory the broker held, measured outside it, which must stay within its
//! memory budget (a Fetch and a catch-up read take their bytes from it before reading). And a
//! data directory is never declared failed in a run whose disks have no fault that could do it:
//! then the broker's own load did (found black-box: catch-up reads for a broker with a
//! replaced disk made the healthy brokers' writes miss their deadlines).

use broker::metrics::Bound;

use crate::findings::Finding;

/// What one broker node showed over the run.
#[derive(Debug, Clone, Default)]
pub struct NodeBounds {
    pub node: String,
    /// Each start's high-water marks, and how often its data directory failed.
    pub starts: Vec<(Vec<Bound>, u64)>,
    /// The most bytes of reads its disk held in flight at once.
    pub disk_reads_peak: u64,
    /// Its memory budget (`memory_budget_bytes`).
    pub memory_budget: u64,
}

/// The findings over every node: each bound broken once (its highest peak), and data
/// directories that failed when `disk_faults` is false.
pub fn check(nodes: &[NodeBounds], disk_faults: bool) -> Vec<Finding> {
    let mut findings = Vec::new();
    for n in nodes {
        let mut worst: Vec<Bound> = Vec::new();
        for b in n.starts.iter().flat_map(|(b, _)| b).filter(|b| b.broken()) {
            match worst.iter_mut().find(|w| w.name == b.name) {
                Some(w) if w.peak < b.peak => *w = b.clone(),
                Some(_) => {}
                None => worst.push(b.clone()),
            }
        }
        findings.extend(worst.into_iter().map(|b| Finding::BoundBroken {
            node: n.node.clone(),
            bound: b.name.to_string(),
            peak: b.peak,
            limit: b.limit,
        }));
        if n.disk_reads_peak > n.memory_budget {
            findings.push(Finding::BoundBroken {
                node: n.node.clone(),
                bound: "bytes of disk reads in flight (memory_budget_bytes)".into(),
                peak: n.disk_reads_peak as i64,
                limit: n.memory_budget as i64,
            });
        }
        let failures: u64 = n.starts.iter().map(|(_, f)| f).sum();
        if failures > 0 && !disk_faults {
            findings.push(Finding::DirFailed {
                node: n.node.clone(),
                times: failures,
            });
        }
    }
    findings
}

/// Resolves, with its finding, once the first of these brokers (name, disk, memory budget)
/// holds more bytes of disk reads in flight than its budget.
#[cfg(madsim)]
pub async fn first_read_overrun(
    brokers: Vec<(String, crate::world::disk::SimDisk, u64)>,
) -> Finding {
    let watches = brokers.into_iter().map(|(node, disk, budget)| {
        Box::pin(async move {
            disk.set_read_limit(budget);
            disk.read_limit_passed().await;
            Finding::BoundBroken {
                node,
                bound: "bytes of disk reads in flight (memory_budget_bytes; the run stopped there)"
                    .into(),
                peak: disk.read_bytes_in_flight_peak() as i64,
                limit: budget as i64,
            }
        })
    });
    futures::future::select_all(watches).await.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(name: &'static str, peak: i64, limit: i64) -> Bound {
        Bound { name, peak, limit }
    }

    fn node(starts: Vec<(Vec<Bound>, u64)>, disk_reads_peak: u64) -> NodeBounds {
        NodeBounds {
            node: "broker-1".into(),
            starts,
            disk_reads_peak,
            memory_budget: 100,
        }
    }

    #[test]
    fn a_node_within_its_bounds_is_no_finding() {
        let n = node(
            vec![(vec![bound("queue", 10, 10), bound("off", 5, 0)], 0)],
            100,
        );
        assert!(check(&[n], false).is_empty());
    }

    #[test]
    fn each_bound_broken_is_one_finding_with_its_highest_peak() {
        let n = node(
            vec![
                (vec![bound("queue", 11, 10)], 0),
                (vec![bound("queue", 15, 10)], 0),
            ],
            101,
        );
        let found = check(&[n], false);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(matches!(
            &found[0],
            Finding::BoundBroken {
                peak: 15,
                limit: 10,
                ..
            }
        ));
        assert!(
            matches!(&found[1], Finding::BoundBroken { bound, peak: 101, .. } if bound.contains("disk reads"))
        );
    }

    #[test]
    fn a_failed_directory_is_a_finding_only_without_disk_faults() {
        let n = node(vec![(vec![], 1), (vec![], 2)], 0);
        assert_eq!(
            check(std::slice::from_ref(&n), false),
            vec![Finding::DirFailed {
                node: "broker-1".into(),
                times: 3
            }]
        );
        assert!(check(&[n], true).is_empty());
    }
}
