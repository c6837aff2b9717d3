//! The server-side assignors: `uniform` (balanced and sticky, Kafka's default) and `range`
//! (each topic's partitions in ranges over its members, by member id).
//!
//! Invariant: every partition of a subscribed topic goes to exactly one member that
//! subscribes to it; with `uniform`, no member that could take a partition from another holds
//! two or more partitions more than it.

use std::collections::{BTreeMap, BTreeSet};

use super::TopicPartitions;

/// The assignors served, the default first (`group.consumer.assignors`).
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// Each member's subscribed topic ids.
pub(super) type Subscriptions = BTreeMap<String, BTreeSet<u128>>;

/// The target assignment by `assignor`: `partitions` per topic id, the `previous` target kept
/// where it still may be (uniform).
pub(super) fn assign(
    assignor: &str,
    members: &Subscriptions,
    partitions: &BTreeMap<u128, i32>,
    previous: &BTreeMap<String, TopicPartitions>,
) -> BTreeMap<String, TopicPartitions> {
    match assignor {
        "range" => range(members, partitions),
        _ => uniform(members, partitions, previous),
    }
}

fn range(
    members: &Subscriptions,
    partitions: &BTreeMap<u128, i32>,
) -> BTreeMap<String, TopicPartitions> {
    let mut out: BTreeMap<String, TopicPartitions> = members
        .keys()
        .map(|m| (m.clone(), Default::default()))
        .collect();
    for (topic, n) in partitions {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, s)| s.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let (quota, extra) = (
            *n as usize / subscribers.len(),
            *n as usize % subscribers.len(),
        );
        let mut next = 0;
        for (i, m) in subscribers.into_iter().enumerate() {
            let take = quota + usize::from(i < extra);
            if take > 0 {
                out.get_mut(m)
                    .map(|a| a.entry(*topic).or_default())
                    .into_iter()
                    .for_each(|set| set.extend(next as i32..(next + take) as i32));
            }
            next += take;
        }
    }
    out
}

fn uniform(
    members: &Subscriptions,
    partitions: &BTreeMap<u128, i32>,
    previous: &BTreeMap<String, TopicPartitions>,
) -> BTreeMap<String, TopicPartitions> {
    let mut out: BTreeMap<String, TopicPartitions> = members
        .keys()
        .map(|m| (m.clone(), Default::default()))
        .collect();
    let mut owner: BTreeMap<(u128, i32), String> = BTreeMap::new();
    let mut counts: BTreeMap<&str, usize> = members.keys().map(|m| (m.as_str(), 0)).collect();
    // Who may hold each topic.
    let eligible: BTreeMap<u128, Vec<&str>> = partitions
        .keys()
        .map(|t| {
            let ms = members
                .iter()
                .filter(|(_, s)| s.contains(t))
                .map(|(m, _)| m.as_str())
                .collect();
            (*t, ms)
        })
        .collect();
    // Sticky: what a member held in the previous target and still may hold.
    for (m, assigned) in previous {
        let Some(subs) = members.get(m) else { continue };
        for (t, ps) in assigned {
            let Some(n) = partitions.get(t).filter(|_| subs.contains(t)) else {
                continue;
            };
            for p in ps.iter().filter(|p| **p < *n) {
                if owner.insert((*t, *p), m.clone()).is_none() {
                    *counts.entry(m.as_str()).or_default() += 1;
                }
            }
        }
    }
    // The rest, each to the member of fewest partitions that may take it; partitions with
    // fewer candidates first.
    let mut free: Vec<(usize, u128, i32)> = partitions
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| (*t, p)))
        .filter(|k| !owner.contains_key(k))
        .filter_map(|(t, p)| {
            let n = eligible.get(&t).map_or(0, Vec::len);
            (n > 0).then_some((n, t, p))
        })
        .collect();
    free.sort();
    for (_, t, p) in free {
        let best = eligible[&t]
            .iter()
            .min_by_key(|m| (counts[**m], **m))
            .copied();
        if let Some(m) = best {
            owner.insert((t, p), m.to_string());
            *counts.get_mut(m).expect("a member") += 1;
        }
    }
    // Balance: move a partition to a member that may take it and holds two fewer, until none
    // can move (each move lowers the sum of squared counts, so this ends). The last partitions
    // move first, so a member keeps its lowest ones, as Kafka's assignor does: a member holding
    // 0-5 keeps 0-2 when a second one joins (librdkafka's tests count on that).
    loop {
        let mut moved = false;
        let keys: Vec<(u128, i32)> = owner.keys().rev().copied().collect();
        for k in keys {
            let from = owner[&k].clone();
            let least = eligible[&k.0]
                .iter()
                .min_by_key(|m| (counts[**m], **m))
                .copied();
            if let Some(to) = least.filter(|to| counts[*to] + 1 < counts[from.as_str()]) {
                *counts.get_mut(from.as_str()).expect("a member") -= 1;
                *counts.get_mut(to).expect("a member") += 1;
                owner.insert(k, to.to_string());
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    for ((t, p), m) in owner {
        if let Some(a) = out.get_mut(&m) {
            a.entry(t).or_default().insert(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Kafka's uniform assignor: members keep their lowest partitions as others join.
    #[test]
    fn members_joining_one_by_one_take_the_last_partitions_of_the_others() {
        let parts: BTreeMap<u128, i32> = [(7, 6)].into_iter().collect();
        let mut target = BTreeMap::new();
        let mut members = Vec::new();
        let mut seen = Vec::new();
        for m in ["c0", "c1", "c2"] {
            members.push((m, &[7u128][..]));
            target = assign("uniform", &subs(&members), &parts, &target);
            seen.push(
                target
                    .values()
                    .map(|a| a.get(&7).cloned().unwrap_or_default())
                    .collect::<Vec<_>>(),
            );
        }
        let sets = |v: &[&[i32]]| -> Vec<BTreeSet<i32>> {
            v.iter().map(|s| s.iter().copied().collect()).collect()
        };
        assert_eq!(seen[0], sets(&[&[0, 1, 2, 3, 4, 5]]));
        assert_eq!(seen[1], sets(&[&[0, 1, 2], &[3, 4, 5]]));
        assert_eq!(seen[2], sets(&[&[0, 1], &[3, 4], &[2, 5]]));
    }

    fn subs(list: &[(&str, &[u128])]) -> Subscriptions {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().copied().collect()))
            .collect()
    }

    fn sizes(a: &BTreeMap<String, TopicPartitions>) -> Vec<usize> {
        a.values().map(super::super::count).collect()
    }

    /// Every partition of a subscribed topic is held once, by a subscriber.
    fn check_complete(
        a: &BTreeMap<String, TopicPartitions>,
        members: &Subscriptions,
        partitions: &BTreeMap<u128, i32>,
    ) {
        let mut seen = BTreeSet::new();
        for (m, tp) in a {
            for (t, ps) in tp {
                assert!(
                    members[m].contains(t),
                    "{m} holds {t} it does not subscribe to"
                );
                for p in ps {
                    assert!(seen.insert((*t, *p)), "({t}, {p}) held twice");
                }
            }
        }
        for (t, n) in partitions {
            if members.values().any(|s| s.contains(t)) {
                for p in 0..*n {
                    assert!(seen.contains(&(*t, p)), "({t}, {p}) held by none");
                }
            }
        }
    }

    #[test]
    fn range_gives_each_topic_in_ranges_by_member_id() {
        let members = subs(&[("a", &[1, 2]), ("b", &[1]), ("c", &[1, 2])]);
        let partitions = [(1, 7), (2, 2)].into();
        let a = assign("range", &members, &partitions, &BTreeMap::new());
        check_complete(&a, &members, &partitions);
        assert_eq!(a["a"][&1], [0, 1, 2].into());
        assert_eq!(a["b"][&1], [3, 4].into());
        assert_eq!(a["c"][&1], [5, 6].into());
        assert_eq!(a["a"][&2], [0].into());
        assert_eq!(a["c"][&2], [1].into());
    }

    #[test]
    fn uniform_balances_and_keeps_what_members_held() {
        let partitions: BTreeMap<u128, i32> = [(1, 10), (2, 5)].into();
        let two = subs(&[("a", &[1, 2]), ("b", &[1, 2])]);
        let first = assign("uniform", &two, &partitions, &BTreeMap::new());
        check_complete(&first, &two, &partitions);
        assert_eq!(sizes(&first), [8, 7]);
        // A third member takes a share; the others keep most of theirs.
        let three = subs(&[("a", &[1, 2]), ("b", &[1, 2]), ("c", &[1, 2])]);
        let second = assign("uniform", &three, &partitions, &first);
        check_complete(&second, &three, &partitions);
        assert_eq!(sizes(&second), [5, 5, 5]);
        for m in ["a", "b"] {
            let kept: usize = second[m]
                .iter()
                .map(|(t, ps)| ps.intersection(&first[m][t]).count())
                .sum();
            assert_eq!(kept, 5, "{m} keeps five of its partitions");
        }
    }

    #[test]
    fn uniform_with_different_subscriptions_is_balanced_where_it_can_be() {
        let partitions: BTreeMap<u128, i32> = [(1, 6), (2, 6), (3, 1)].into();
        let members = subs(&[("a", &[1]), ("b", &[1, 2]), ("c", &[2, 3]), ("d", &[])]);
        let a = assign("uniform", &members, &partitions, &BTreeMap::new());
        check_complete(&a, &members, &partitions);
        let s = sizes(&a);
        assert_eq!(s[3], 0, "d subscribes to nothing");
        assert!(
            s[..3].iter().max().unwrap() - s[..3].iter().min().unwrap() <= 1,
            "{s:?}"
        );
    }
}
