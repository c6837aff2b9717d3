//! The cluster metadata after the run, against what the admin client was told: every broker
//! lists a topic whose creation was acknowledged and that no deletion may have removed since,
//! and none whose deletion was acknowledged and that no creation may have made again. A broker
//! that lost a committed change — a snapshot of the metadata that missed records, a log cut
//! below what its snapshot holds — lists the wrong topics.

use std::collections::BTreeMap;

use crate::findings::Finding;
use crate::history::{Admin, Op};

/// Each broker's listing (its index in the run's brokers, 0 is `broker-1`; `None`: it did not
/// answer) of the topics the admin client made or deleted, against the admin's history.
pub fn topics_as_acknowledged(
    history: &[Op],
    listed: &[Option<BTreeMap<String, bool>>],
) -> Vec<Finding> {
    // Per topic, its admin operations in the order they were invoked.
    let mut ops: BTreeMap<&str, Vec<&Admin>> = BTreeMap::new();
    for op in history {
        if let Op::Admin(a) = op {
            let Some((verb, topic)) = a.what.split_once(' ') else {
                continue;
            };
            if verb == "create" || verb == "delete" {
                ops.entry(topic.split(' ').next().unwrap_or(topic))
                    .or_default()
                    .push(a);
            }
        }
    }
    let mut out = Vec::new();
    for (topic, ops) in ops {
        let Some(expected) = expected(&ops) else {
            continue;
        };
        for (broker, listing) in listed.iter().enumerate() {
            let Some(exists) = listing.as_ref().and_then(|l| l.get(topic)) else {
                continue;
            };
            if *exists != expected {
                out.push(Finding::MetadataDiverged {
                    broker: format!("broker-{}", broker + 1),
                    topic: topic.to_string(),
                    expected,
                });
            }
        }
    }
    out
}

/// Whether the topic must exist after these operations (in invocation order), if that is
/// known: the last acknowledged one decides, unless another may have taken effect at a time
/// nobody knows (no answer, or a timeout: it may be applied later) or after it.
fn expected(ops: &[&Admin]) -> Option<bool> {
    let last_ok = ops.iter().rposition(|a| a.error.is_none())?;
    let unknown = |a: &&Admin| a.error.as_deref().is_some_and(|e| !definite(e));
    let later = ops[last_ok + 1..]
        .iter()
        .any(|a| a.error.is_none() || unknown(a));
    let earlier_unknown = ops[..last_ok].iter().any(unknown);
    // Two operations at once (the later invoked before the earlier answered) are not ordered.
    let overlapped = ops[..last_ok]
        .iter()
        .any(|a| a.completed_s > ops[last_ok].invoked_s);
    if later || earlier_unknown || overlapped {
        return None;
    }
    Some(ops[last_ok].what.starts_with("create "))
}

/// An admin error after which the operation cannot have happened: the broker refused it with
/// a code other than REQUEST_TIMED_OUT (7), which a request that may still be applied gets.
pub(crate) fn definite(error: &str) -> bool {
    error
        .strip_prefix("broker error code ")
        .and_then(|c| c.parse::<i16>().ok())
        .is_some_and(|c| c != 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(what: &str, t: f64, error: Option<&str>) -> Op {
        Op::Admin(Admin {
            what: what.into(),
            invoked_s: t,
            completed_s: t + 0.1,
            error: error.map(Into::into),
        })
    }

    fn listed(pairs: &[(&str, bool)]) -> Option<BTreeMap<String, bool>> {
        Some(pairs.iter().map(|(t, e)| (t.to_string(), *e)).collect())
    }

    #[test]
    fn a_broker_listing_a_deleted_topic_or_missing_a_created_one_is_found() {
        let history = vec![
            admin("create scratch-0", 1.0, None),
            admin("create scratch-1", 2.0, None),
            admin("delete scratch-0", 2.5, None),
            admin("create scratch-2", 3.0, Some("no answer")),
        ];
        let good = listed(&[
            ("scratch-0", false),
            ("scratch-1", true),
            ("scratch-2", false),
        ]);
        assert!(topics_as_acknowledged(&history, &[good.clone(), None]).is_empty());
        // scratch-2's outcome is unknown: either way is fine.
        let other = listed(&[
            ("scratch-0", false),
            ("scratch-1", true),
            ("scratch-2", true),
        ]);
        assert!(topics_as_acknowledged(&history, &[good.clone(), other]).is_empty());
        let stale = listed(&[
            ("scratch-0", true),
            ("scratch-1", false),
            ("scratch-2", false),
        ]);
        let found = topics_as_acknowledged(&history, &[good, stale]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|f| f.kind() == "metadata-diverged"));
    }
}
