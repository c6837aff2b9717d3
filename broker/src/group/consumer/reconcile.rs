//! A member's next current assignment, one heartbeat at a time towards its target (Kafka's
//! `CurrentAssignmentBuilder`): partitions it must give up are revoked first, at its current
//! epoch; once it no longer owns them it moves to the target's epoch and takes the target's
//! partitions that no other member still holds (those it waits for keep it
//! UNRELEASED_PARTITIONS until they are released).
//!
//! Invariant: a member is never given a partition another member holds (assigned or
//! revoking), and never reaches the target's epoch while it owns a partition of another's.

use super::{CurrentAssignment, MemberState, TopicPartitions};

/// `current` moved towards `target` (at `target_epoch`). `held_by_others(topic, partition)`:
/// another member holds it. `owned`: the partitions the member says it owns (none given: as
/// before).
pub(super) fn next(
    current: &CurrentAssignment,
    target_epoch: i32,
    target: &TopicPartitions,
    held_by_others: impl Fn(u128, i32) -> bool,
    owned: Option<&TopicPartitions>,
) -> CurrentAssignment {
    match current.state {
        MemberState::UnrevokedPartitions if still_owns(owned, &current.revoking) => current.clone(),
        MemberState::Stable if current.epoch == target_epoch => current.clone(),
        _ => compute(current, target_epoch, target, held_by_others, owned),
    }
}

/// The member (by its own account) still owns one of `revoking`.
fn still_owns(owned: Option<&TopicPartitions>, revoking: &TopicPartitions) -> bool {
    let Some(owned) = owned else { return true };
    revoking.iter().any(|(t, ps)| {
        owned
            .get(t)
            .is_some_and(|o| ps.iter().any(|p| o.contains(p)))
    })
}

fn compute(
    current: &CurrentAssignment,
    target_epoch: i32,
    target: &TopicPartitions,
    held_by_others: impl Fn(u128, i32) -> bool,
    owned: Option<&TopicPartitions>,
) -> CurrentAssignment {
    let mut keep = TopicPartitions::new();
    let mut revoke = TopicPartitions::new();
    let mut add = TopicPartitions::new();
    let mut unreleased = false;
    for (t, ps) in &current.assigned {
        let wanted = target.get(t);
        for p in ps {
            let into = if wanted.is_some_and(|w| w.contains(p)) {
                &mut keep
            } else {
                &mut revoke
            };
            into.entry(*t).or_default().insert(*p);
        }
    }
    for (t, ps) in target {
        for p in ps {
            if current.assigned.get(t).is_some_and(|a| a.contains(p)) {
                continue;
            }
            if held_by_others(*t, *p) {
                unreleased = true;
            } else {
                add.entry(*t).or_default().insert(*p);
            }
        }
    }
    if !revoke.is_empty() && still_owns(owned, &revoke) {
        return CurrentAssignment {
            epoch: current.epoch,
            previous_epoch: current.previous_epoch,
            state: MemberState::UnrevokedPartitions,
            assigned: keep,
            revoking: revoke,
        };
    }
    for (t, ps) in add {
        keep.entry(t).or_default().extend(ps);
    }
    CurrentAssignment {
        epoch: target_epoch,
        previous_epoch: current.epoch,
        state: if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        },
        assigned: keep,
        revoking: TopicPartitions::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(list: &[(u128, &[i32])]) -> TopicPartitions {
        list.iter()
            .map(|(t, ps)| (*t, ps.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn revocation_comes_first_then_the_target_epoch_and_released_partitions() {
        let stable = CurrentAssignment {
            epoch: 3,
            previous_epoch: 2,
            state: MemberState::Stable,
            assigned: tp(&[(1, &[0, 1, 2])]),
            revoking: TopicPartitions::new(),
        };
        let target = tp(&[(1, &[0, 1, 3])]);
        // Partition 3 is still another's; partition 2 must go first.
        let step = next(&stable, 4, &target, |_, p| p == 3, None);
        assert_eq!(step.state, MemberState::UnrevokedPartitions);
        assert_eq!(step.epoch, 3);
        assert_eq!(step.assigned, tp(&[(1, &[0, 1])]));
        assert_eq!(step.revoking, tp(&[(1, &[2])]));
        // Not acknowledged yet (it still owns 2): no change.
        let owned = tp(&[(1, &[0, 1, 2])]);
        assert_eq!(next(&step, 4, &target, |_, _| false, Some(&owned)), step);
        // Acknowledged, 3 still held elsewhere: the new epoch, waiting for 3.
        let owned = tp(&[(1, &[0, 1])]);
        let step = next(&step, 4, &target, |_, p| p == 3, Some(&owned));
        assert_eq!(step.state, MemberState::UnreleasedPartitions);
        assert_eq!((step.epoch, step.previous_epoch), (4, 3));
        assert_eq!(step.assigned, tp(&[(1, &[0, 1])]));
        // Released: stable with the whole target.
        let step = next(&step, 4, &target, |_, _| false, Some(&owned));
        assert_eq!(step.state, MemberState::Stable);
        assert_eq!(step.assigned, target);
        assert_eq!(step.epoch, 4);
    }
}
