//! Moves of partitions' replicas (scenarios with `[workload.moves]`), judged from what the
//! brokers applied (`broker::observe`):
//! - **membership-diverged**: two replicas applied different memberships at the same index
//!   of a group's log (every replica must apply the same committed change at the same place —
//!   a replica voting or counting under a configuration no committed entry names is how Raft's
//!   membership bugs lose data);
//! - **retire-unfinished**: a broker the workload retired whose partitions were not all moved
//!   off, or that was not unregistered and let go by the controller quorum, within the
//!   deadline ([`crate::workload::retire`]);
//! - **move-unfinished**: a move whose latest epoch never ended (its completion never
//!   applied), though the run went on past the faults; or one that ended with the group's
//!   last applied membership not being its target (the metadata says one thing, the group
//!   another).

use std::collections::BTreeMap;

use broker::controller::moves::MoveApplied;
use broker::replication::node::MembershipApplied;

use crate::findings::Finding;
pub use crate::history::MovesObserved as Observed;

/// Every retirement the workload recorded ended.
pub fn retirements(history: &[crate::history::Op]) -> Vec<Finding> {
    history
        .iter()
        .filter_map(|op| match op {
            crate::history::Op::Admin(a) if a.what.starts_with("retire broker") => {
                a.error.as_ref().map(|why| Finding::RetireUnfinished {
                    what: a.what.clone(),
                    why: why.clone(),
                })
            }
            _ => None,
        })
        .collect()
}

pub fn check(o: &Observed) -> Vec<Finding> {
    let mut out = Vec::new();
    // Every replica's membership at each index of each group.
    let mut at: BTreeMap<(u64, u64), Vec<&MembershipApplied>> = BTreeMap::new();
    for m in &o.memberships {
        at.entry((m.group, m.index)).or_default().push(m);
    }
    for ((group, index), applied) in &at {
        if let Some(other) = applied.iter().find(|m| m.members != applied[0].members) {
            out.push(Finding::MembershipDiverged {
                group: *group,
                index: *index,
                nodes: vec![applied[0].node, other.node],
                members: vec![
                    format!("{:?}", applied[0].members),
                    format!("{:?}", other.members),
                ],
            });
        }
    }
    // Each group's latest move, and whether it ended.
    let mut latest: BTreeMap<u64, (&MoveApplied, bool)> = BTreeMap::new();
    for m in &o.moves {
        let e = latest.entry(m.group).or_insert((m, m.done));
        if m.epoch > e.0.epoch {
            *e = (m, m.done);
        } else if m.epoch == e.0.epoch && m.done {
            e.1 = true;
        }
    }
    for (&group, &(m, done)) in &latest {
        if !done {
            out.push(Finding::MoveUnfinished {
                group,
                epoch: m.epoch,
                target: m.target.clone(),
                why: "its completion was never applied".into(),
            });
            continue;
        }
        let last = at
            .range((group, 0)..=(group, u64::MAX))
            .next_back()
            .map(|(_, applied)| &applied[0].members);
        if let Some(members) = last {
            let mut voters = members.voters.clone();
            voters.sort_unstable();
            let mut target = m.target.clone();
            target.sort_unstable();
            if voters != target || members.joint() || !members.learners.is_empty() {
                out.push(Finding::MoveUnfinished {
                    group,
                    epoch: m.epoch,
                    target: m.target.clone(),
                    why: format!("it ended, but the group's last membership is {members:?}"),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker::replication::node::Members;

    fn applied(
        node: u64,
        group: u64,
        index: u64,
        voters: &[u64],
        learners: &[u64],
    ) -> MembershipApplied {
        MembershipApplied {
            node,
            group,
            index,
            members: Members {
                voters: voters.to_vec(),
                learners: learners.to_vec(),
                ..Default::default()
            },
        }
    }

    fn moved(group: u64, epoch: i64, target: &[u64], done: bool) -> MoveApplied {
        MoveApplied {
            group,
            epoch,
            target: target.to_vec(),
            cancelled: false,
            done,
        }
    }

    #[test]
    fn a_move_that_ended_on_its_target_with_replicas_agreeing_is_no_finding() {
        let o = Observed {
            memberships: vec![
                applied(1, 5, 10, &[1, 2, 3], &[4]),
                applied(2, 5, 10, &[1, 2, 3], &[4]),
                applied(2, 5, 14, &[2, 3, 4], &[]),
                applied(4, 5, 14, &[2, 3, 4], &[]),
            ],
            moves: vec![
                moved(5, 100, &[4, 3, 2], false),
                moved(5, 100, &[4, 3, 2], true),
            ],
        };
        assert!(check(&o).is_empty(), "{:?}", check(&o));
    }

    #[test]
    fn replicas_that_applied_different_memberships_at_one_index_are_found() {
        let o = Observed {
            memberships: vec![
                applied(1, 5, 10, &[1, 2, 3], &[4]),
                applied(2, 5, 10, &[1, 2, 4], &[]),
            ],
            moves: vec![],
        };
        assert!(matches!(
            &check(&o)[..],
            [Finding::MembershipDiverged { index: 10, .. }]
        ));
    }

    #[test]
    fn a_move_never_ended_or_ended_elsewhere_than_its_target_is_found() {
        let o = Observed {
            memberships: vec![applied(1, 5, 10, &[1, 2, 3], &[4])],
            moves: vec![
                moved(5, 100, &[2, 3, 4], false),
                moved(5, 100, &[2, 3, 4], true),
                moved(6, 120, &[1, 2, 3], false),
            ],
        };
        let found = check(&o);
        assert_eq!(found.len(), 2, "{found:?}");
        // A later epoch replaces an earlier one: only the latest must end.
        let o = Observed {
            memberships: vec![],
            moves: vec![
                moved(6, 120, &[1, 2, 3], false),
                moved(6, 130, &[1, 2, 4], false),
                moved(6, 130, &[1, 2, 4], true),
            ],
        };
        assert!(check(&o).is_empty());
    }
}
