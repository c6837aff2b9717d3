//! Where a new partition's replicas go: the lists a request gave (checked), or Kafka's
//! placement over the live brokers — preferred leaders taking turns, replicas over the racks
//! (`broker_rack`). Decided from the metadata alone, as `apply` is, so every broker places alike.

use std::collections::{BTreeMap, BTreeSet};

use super::state::{ClusterMetadata, MetadataError};
use crate::replication::transport::NodeId;

impl ClusterMetadata {
    /// Replica lists for `count` new partitions: the given ones (checked), or spread over the
    /// live brokers — each partition's list starts one broker further, so preferred leaders
    /// take turns.
    pub(super) fn place(
        &self,
        first_index: i32,
        count: i32,
        replication_factor: i32,
        assignments: Option<&[Vec<NodeId>]>,
    ) -> Result<Vec<Vec<NodeId>>, MetadataError> {
        if let Some(a) = assignments {
            if a.len() != count as usize {
                return Err(MetadataError::InvalidReplicaAssignment(format!(
                    "{} replica lists for {count} partitions",
                    a.len()
                )));
            }
            for replicas in a {
                let distinct: BTreeSet<_> = replicas.iter().collect();
                if replicas.is_empty() || distinct.len() != replicas.len() {
                    return Err(MetadataError::InvalidReplicaAssignment(format!(
                        "replica list {replicas:?} is empty or names a broker twice"
                    )));
                }
                if let Some(unknown) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                    return Err(MetadataError::InvalidReplicaAssignment(format!(
                        "broker {unknown} is not registered"
                    )));
                }
            }
            return Ok(a.to_vec());
        }
        let live = self.live_brokers();
        if replication_factor < 1 || replication_factor as usize > live.len() {
            return Err(MetadataError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} with {} live brokers",
                live.len()
            )));
        }
        let live: Vec<(NodeId, Option<&str>)> = live
            .iter()
            .map(|id| (*id, self.brokers[id].rack.as_deref()))
            .collect();
        let start = self.next_group as usize + first_index as usize;
        Ok(spread(
            &live,
            start,
            count as usize,
            replication_factor as usize,
        ))
    }
}

/// Replica lists for `count` partitions over `brokers` (id and rack), Kafka's rack-aware way:
/// the brokers in rack-alternating order (the first of each rack, then the second of each, …);
/// partition `i`'s first replica (its preferred leader) is the one at `start + i`, so leaders
/// take turns, and its next replicas are the following brokers in that order whose racks it
/// does not have yet (once it has every rack, any it does not have). Without racks: `rf`
/// brokers in a row from the first, by id.
fn spread(
    brokers: &[(NodeId, Option<&str>)],
    start: usize,
    count: usize,
    rf: usize,
) -> Vec<Vec<NodeId>> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
    for &(id, rack) in brokers {
        by_rack.entry(rack).or_default().push(id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let order: Vec<(NodeId, Option<&str>)> = (0..deepest)
        .flat_map(|depth| {
            by_rack
                .iter()
                .filter_map(move |(rack, ids)| ids.get(depth).map(|id| (*id, *rack)))
        })
        .collect();
    let (n, racks) = (order.len(), by_rack.len());
    (0..count)
        .map(|i| {
            let first = (start + i) % n;
            let mut chosen = vec![order[first].0];
            let mut racks_used = BTreeSet::from([order[first].1]);
            let mut step = 1;
            while chosen.len() < rf.min(n) {
                let (id, rack) = order[(first + step) % n];
                step += 1;
                if chosen.contains(&id) || (racks_used.len() < racks && racks_used.contains(&rack))
                {
                    if step > n {
                        // Every rack seen in a full turn: any broker not chosen yet will do.
                        racks_used = BTreeSet::new();
                        step = 1;
                    }
                    continue;
                }
                chosen.push(id);
                racks_used.insert(rack);
                if racks_used.len() == racks {
                    racks_used = BTreeSet::new();
                }
            }
            chosen
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::records::MetadataRecord;

    /// How many replicas, and how many preferred leaderships, each broker got.
    fn load(placed: &[Vec<NodeId>]) -> (BTreeMap<NodeId, usize>, BTreeMap<NodeId, usize>) {
        let (mut replicas, mut leaders) = (BTreeMap::new(), BTreeMap::new());
        for list in placed {
            *leaders.entry(list[0]).or_insert(0) += 1;
            for id in list {
                *replicas.entry(*id).or_insert(0) += 1;
            }
        }
        (replicas, leaders)
    }

    #[test]
    fn replicas_spread_over_racks_and_brokers_evenly() {
        let racked = |racks: &[(NodeId, &'static str)]| -> Vec<(NodeId, Option<&'static str>)> {
            racks.iter().map(|&(id, r)| (id, Some(r))).collect()
        };
        // Two racks of two: every partition in both racks, every broker as loaded.
        let four = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]);
        let placed = spread(&four, 0, 8, 2);
        for list in &placed {
            let racks: BTreeSet<_> = list
                .iter()
                .map(|id| if *id <= 2 { "a" } else { "b" })
                .collect();
            assert_eq!(racks.len(), 2, "{list:?} in one rack");
        }
        let (replicas, leaders) = load(&placed);
        assert!(replicas.values().all(|&n| n == 4), "{replicas:?}");
        assert!(leaders.values().all(|&n| n == 2), "{leaders:?}");
        // Three racks, uneven, replication 3: every partition in all three racks.
        let six = racked(&[(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "c")]);
        let rack_of = |id: NodeId| six.iter().find(|b| b.0 == id).unwrap().1;
        for start in 0..6 {
            for list in spread(&six, start, 12, 3) {
                let racks: BTreeSet<_> = list.iter().map(|id| rack_of(*id)).collect();
                let distinct: BTreeSet<_> = list.iter().collect();
                assert_eq!((racks.len(), distinct.len()), (3, 3), "{list:?}");
            }
        }
        // More replicas than racks: every rack, then any broker not chosen yet.
        for list in spread(&four, 1, 4, 3) {
            let distinct: BTreeSet<_> = list.iter().collect();
            assert_eq!(distinct.len(), 3, "{list:?}");
        }
        // No racks: a row of brokers by id from a turning start, as before racks.
        let plain: Vec<(NodeId, Option<&str>)> = (1..=3).map(|id| (id, None)).collect();
        assert_eq!(
            spread(&plain, 1, 3, 2),
            vec![vec![2, 3], vec![3, 1], vec![1, 2]]
        );
    }

    #[test]
    fn a_brokers_rack_is_registered_and_placements_use_it() {
        let mut m = ClusterMetadata::new();
        for (id, rack) in [(1, "a"), (2, "a"), (3, "b")] {
            m.apply(&MetadataRecord::RegisterBroker {
                id,
                host: "127.0.0.1".into(),
                port: 9090 + id as i32,
                incarnation: 1,
                listeners: vec![],
                rack: Some(rack.into()),
                inter_broker: None,
                features: None,
                bootstrap: None,
            });
        }
        assert_eq!(m.brokers[&3].rack.as_deref(), Some("b"));
        let placed = m.place(0, 6, 2, None).unwrap();
        assert!(
            placed.iter().all(|l| l.contains(&3)),
            "rack b holds a replica of each: {placed:?}"
        );
    }
}
