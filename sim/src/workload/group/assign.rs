//! The assignors a group's leader runs, as the Java client's: `range` (eager: every member
//! gives up all it owns before it joins) and `cooperative-sticky` (members keep consuming what
//! they own while they rejoin; a partition moves in two rebalances: its owner is assigned
//! without it and gives it up, then the next rebalance gives it to its new member).

use std::collections::{BTreeMap, BTreeSet};

use crate::scenario::COOPERATIVE_STICKY;
use crate::workload::client::group::Subscription;

/// Whether members of `protocol` keep what they own across a rebalance.
pub fn cooperative(protocol: &str) -> bool {
    protocol == COOPERATIVE_STICKY
}

/// Kafka's range assignor for one topic: members in order of their ids, each a contiguous
/// range, the first `partitions % members` one more.
pub fn range(members: &[String], partitions: i32) -> Vec<(String, Vec<i32>)> {
    let mut sorted = members.to_vec();
    sorted.sort();
    let n = sorted.len().max(1) as i32;
    let (each, extra) = (partitions / n, partitions % n);
    let mut next = 0;
    sorted
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let count = each + i32::from((i as i32) < extra);
            let ps: Vec<i32> = (next..next + count).collect();
            next += count;
            (m, ps)
        })
        .collect()
}

/// The cooperative sticky assignor for one topic of `partitions`: a balanced assignment (each
/// member `partitions / members` or one more) that keeps as much of what members own as the
/// balance allows; then a partition that another member still owns is left out (its owner
/// gives it up first). A partition two members claim goes to the one that owned it in the
/// later generation (the other's claim is stale).
pub fn cooperative_sticky(
    members: &[(String, Subscription)],
    partitions: i32,
) -> Vec<(String, Vec<i32>)> {
    let mut ids: Vec<&String> = members.iter().map(|(m, _)| m).collect();
    ids.sort();
    if ids.is_empty() {
        return Vec::new();
    }
    // The valid claim of each partition: (generation, member).
    let mut owner: BTreeMap<i32, (i32, &String)> = BTreeMap::new();
    for (m, sub) in members {
        for &p in sub.owned.iter().filter(|p| (0..partitions).contains(*p)) {
            let wins = owner
                .get(&p)
                .is_none_or(|(g, o)| sub.generation > *g || (sub.generation == *g && m < *o));
            if wins {
                owner.insert(p, (sub.generation, m));
            }
        }
    }
    let mut claims: BTreeMap<&String, Vec<i32>> = ids.iter().map(|m| (*m, Vec::new())).collect();
    for (&p, (_, m)) in &owner {
        if let Some(c) = claims.get_mut(m) {
            c.push(p);
        }
    }
    // The larger quotas go to the members owning the most.
    let n = ids.len() as i32;
    let (base, extra) = (partitions / n, partitions % n);
    let mut by_claims = ids.clone();
    by_claims.sort_by_key(|m| (std::cmp::Reverse(claims[m].len()), *m));
    let quota: BTreeMap<&String, usize> = by_claims
        .iter()
        .enumerate()
        .map(|(i, m)| (*m, (base + i32::from((i as i32) < extra)) as usize))
        .collect();
    let mut target: BTreeMap<&String, Vec<i32>> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for m in &ids {
        let keep: Vec<i32> = claims[m].iter().copied().take(quota[m]).collect();
        taken.extend(keep.iter().copied());
        target.insert(*m, keep);
    }
    let mut free = (0..partitions).filter(|p| !taken.contains(p));
    for m in &by_claims {
        let t = target.entry(*m).or_default();
        while t.len() < quota[m] {
            match free.next() {
                Some(p) => t.push(p),
                None => break,
            }
        }
    }
    ids.iter()
        .map(|m| {
            let mut ps: Vec<i32> = target[m]
                .iter()
                .copied()
                .filter(|p| owner.get(p).is_none_or(|(_, o)| o == m))
                .collect();
            ps.sort();
            ((*m).clone(), ps)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(owned: &[i32], generation: i32) -> Subscription {
        Subscription {
            topics: vec!["t".into()],
            owned: owned.to_vec(),
            generation,
        }
    }

    fn of<'a>(a: &'a [(String, Vec<i32>)], m: &str) -> &'a [i32] {
        &a.iter().find(|(id, _)| id == m).unwrap().1
    }

    #[test]
    fn range_gives_contiguous_ranges_the_first_members_one_more() {
        let a = range(&["b".into(), "a".into()], 5);
        assert_eq!(
            a,
            vec![("a".into(), vec![0, 1, 2]), ("b".into(), vec![3, 4])]
        );
    }

    #[test]
    fn a_first_generation_is_balanced() {
        let a = cooperative_sticky(&[("a".into(), sub(&[], -1)), ("b".into(), sub(&[], -1))], 6);
        assert_eq!(of(&a, "a").len(), 3);
        assert_eq!(of(&a, "b").len(), 3);
    }

    #[test]
    fn a_new_member_gets_nothing_its_owner_still_holds() {
        // a owns all six; b joins: a keeps three, the other three are given to nobody yet.
        let a = cooperative_sticky(
            &[
                ("a".into(), sub(&[0, 1, 2, 3, 4, 5], 3)),
                ("b".into(), sub(&[], -1)),
            ],
            6,
        );
        assert_eq!(of(&a, "a"), &[0, 1, 2]);
        assert!(of(&a, "b").is_empty());
        // a gave 3, 4, 5 up and rejoins: now b gets them.
        let a = cooperative_sticky(
            &[("a".into(), sub(&[0, 1, 2], 4)), ("b".into(), sub(&[], -1))],
            6,
        );
        assert_eq!(of(&a, "a"), &[0, 1, 2]);
        assert_eq!(of(&a, "b"), &[3, 4, 5]);
    }

    #[test]
    fn a_stale_claim_loses_to_the_later_generation() {
        let a = cooperative_sticky(
            &[
                ("a".into(), sub(&[0, 1], 2)),
                ("b".into(), sub(&[1, 2, 3], 5)),
            ],
            4,
        );
        assert_eq!(of(&a, "b"), &[1, 2]);
        assert_eq!(of(&a, "a"), &[0]);
        // 3 is b's: it is left out until b gives it up.
        assert!(!of(&a, "a").contains(&3));
    }
}
