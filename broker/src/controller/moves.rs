//! Partition reassignment in the cluster metadata (Kafka's KIP-455): a partition's replicas
//! moved to a new list, and such a move cancelled.
//!
//! The metadata says where a partition's replicas should be; the partition's Raft group gets
//! there by membership changes its leader proposes ([`super::reassign`]), and the metadata is
//! told once it has ([`MetadataRecord::ReassignmentDone`]). Meanwhile:
//! - `replicas` lists every broker that may hold the partition — the target first (its first
//!   is the preferred leader), then the replicas being removed — so every one of them runs a
//!   replica and Metadata names them all, as Kafka's does during a move;
//! - [`Move`] keeps the replicas before the move (what a cancellation goes back to) and the
//!   target. A cancellation makes the original replicas the target again; the move ends the
//!   same way, when the group's membership is the original one.
//!
//! Invariant: a move ends (`replicas` becomes its target, the move goes) only through a
//! completion that names the move's epoch, proposed by a leader whose group's applied
//! membership is exactly the target; so a broker that is no longer in `replicas` once no move
//! is in progress is in no configuration of the group, and may remove its replica's data.

use super::records::{MetadataRecord, Reassignment};
use super::state::{ClusterMetadata, MetadataError, Outcome, PartitionInfo};
use crate::replication::transport::NodeId;
use crate::replication::wire::GroupId;

/// A partition's replicas being moved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Move {
    /// The replicas before the move: where a cancellation goes back to.
    pub original: Vec<NodeId>,
    /// Where the move goes (the original replicas once cancelled).
    pub target: Vec<NodeId>,
    pub cancelled: bool,
    /// The metadata log's offset after the record that last changed the move: a completion
    /// names it, so that one meant for an earlier target does not end a later one.
    pub epoch: i64,
}

impl Move {
    /// Replicas the move adds (Kafka's addingReplicas).
    pub fn adding(&self) -> Vec<NodeId> {
        without(&self.target, &self.original)
    }

    /// Replicas the move removes (Kafka's removingReplicas).
    pub fn removing(&self) -> Vec<NodeId> {
        without(&self.original, &self.target)
    }
}

fn without(a: &[NodeId], b: &[NodeId]) -> Vec<NodeId> {
    a.iter().copied().filter(|x| !b.contains(x)).collect()
}

impl PartitionInfo {
    /// The replicas the partition's Raft group is to have: a move's target, else its replicas.
    pub fn desired(&self) -> &[NodeId] {
        self.moving.as_ref().map_or(&self.replicas, |m| &m.target)
    }

    /// A move in progress that was not cancelled (what ListPartitionReassignments shows).
    pub fn reassigning(&self) -> Option<&Move> {
        self.moving.as_ref().filter(|m| !m.cancelled)
    }
}

/// What the metadata tells the simulator of a move each time a broker applies a record that
/// starts, replaces, cancels or ends one ([`crate::observe`]; every broker applies each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveApplied {
    pub group: GroupId,
    pub epoch: i64,
    pub target: Vec<NodeId>,
    pub cancelled: bool,
    /// The record ended the move (its group's membership is `target`).
    pub done: bool,
}

fn observe(group: GroupId, m: &Move, done: bool) {
    crate::observe::emit(|| MoveApplied {
        group,
        epoch: m.epoch,
        target: m.target.clone(),
        cancelled: m.cancelled,
        done,
    });
}

/// Why one partition's reassignment was refused (in the record's order), or `None`.
pub type MoveOutcomes = Vec<Option<MetadataError>>;

impl ClusterMetadata {
    /// Apply `AlterPartitionReassignments`: each partition's move started, replaced or
    /// cancelled, alone.
    pub(super) fn alter_reassignments(&mut self, moves: &[Reassignment]) -> Outcome {
        let epoch = self.applying_end;
        let known: Vec<NodeId> = self.brokers.keys().copied().collect();
        let outcomes = moves
            .iter()
            .map(|m| {
                let p = self
                    .topics
                    .get_mut(&m.topic)
                    .and_then(|t| t.partitions.get_mut(usize::try_from(m.partition).ok()?))
                    .ok_or(MetadataError::UnknownTopic)?;
                match &m.replicas {
                    Some(target) => {
                        check_target(target, &known)?;
                        start(p, target, epoch);
                    }
                    None => cancel(p, epoch)?,
                }
                if let Some(mv) = &p.moving {
                    observe(p.group, mv, false);
                }
                Ok(())
            })
            .map(|r: Result<(), MetadataError>| r.err())
            .collect();
        Outcome::Reassignments(outcomes)
    }

    /// Apply a completion: the move of `group` whose epoch is `epoch` is done.
    pub(super) fn reassignment_done(&mut self, group: GroupId, epoch: i64) {
        let Some((topic, index)) = self.groups.get(&group).cloned() else {
            return;
        };
        let Some(p) = self
            .topics
            .get_mut(&topic)
            .and_then(|t| t.partitions.get_mut(index as usize))
        else {
            return;
        };
        let Some(m) = p.moving.take_if(|m| m.epoch == epoch) else {
            return;
        };
        if m.cancelled {
            crate::coverage::reached(crate::coverage::Event::CancelledMoveEnded);
        }
        observe(group, &m, true);
        p.replicas = m.target;
        if p.leader.is_some_and(|l| !p.replicas.contains(&l)) {
            p.leader = None;
        }
    }
}

fn check_target(target: &[NodeId], known: &[NodeId]) -> Result<(), MetadataError> {
    let invalid = |why: String| Err(MetadataError::InvalidReplicaAssignment(why));
    if target.is_empty() {
        return invalid("a partition needs at least one replica".into());
    }
    if let Some(unknown) = target.iter().find(|id| !known.contains(id)) {
        return invalid(format!("broker {unknown} is not registered"));
    }
    let mut sorted = target.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return invalid(format!("replica list {target:?} names a broker twice"));
    }
    Ok(())
}

/// Start a move to `target`, or replace the target of one in progress (its original replicas
/// stay what a cancellation goes back to).
fn start(p: &mut PartitionInfo, target: &[NodeId], epoch: i64) {
    let original = match &p.moving {
        Some(m) => m.original.clone(),
        None if p.replicas == target => return,
        None => p.replicas.clone(),
    };
    // Every broker that may hold the partition stays listed until the move is done.
    let mut replicas = target.to_vec();
    replicas.extend(without(&p.replicas, target));
    p.replicas = replicas;
    p.moving = Some(Move {
        original,
        target: target.to_vec(),
        cancelled: false,
        epoch,
    });
}

fn cancel(p: &mut PartitionInfo, epoch: i64) -> Result<(), MetadataError> {
    let Some(m) = p.moving.as_mut().filter(|m| !m.cancelled) else {
        return Err(MetadataError::NoReassignmentInProgress);
    };
    m.target = m.original.clone();
    m.cancelled = true;
    m.epoch = epoch;
    let mut replicas = m.original.clone();
    replicas.extend(without(&p.replicas, &m.original));
    p.replicas = replicas;
    Ok(())
}

/// The record that completes a move (what [`ClusterMetadata::reassignment_done`] applies).
pub fn done_record(group: GroupId, epoch: i64) -> MetadataRecord {
    MetadataRecord::ReassignmentDone { group, epoch }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::records::id_text;

    fn cluster(brokers: u64) -> ClusterMetadata {
        let mut m = ClusterMetadata::new();
        for id in 1..=brokers {
            m.apply(&MetadataRecord::RegisterBroker {
                id,
                host: "h".into(),
                port: 9000 + id as i32,
                incarnation: 1,
                listeners: vec![],
                rack: None,
                inter_broker: None,
                features: None,
                bootstrap: None,
            });
        }
        m.apply(&MetadataRecord::CreateTopic {
            request: 1,
            name: "t".into(),
            id: id_text(77),
            partitions: 2,
            replication_factor: 3,
            assignments: Some(vec![vec![1, 2, 3], vec![2, 3, 1]]),
            overrides: Default::default(),
        });
        m
    }

    fn alter(m: &mut ClusterMetadata, request: u64, asks: &[(i32, Option<Vec<NodeId>>)]) {
        m.applying_end += 1;
        m.apply(&MetadataRecord::AlterPartitionReassignments {
            request,
            moves: asks
                .iter()
                .map(|(partition, replicas)| Reassignment {
                    topic: "t".into(),
                    partition: *partition,
                    replicas: replicas.clone(),
                })
                .collect(),
        });
    }

    fn outcomes(m: &ClusterMetadata, request: u64) -> MoveOutcomes {
        match m.outcome(request) {
            Some(Outcome::Reassignments(o)) => o.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_move_lists_every_replica_until_a_completion_of_its_epoch_ends_it() {
        let mut m = cluster(5);
        alter(&mut m, 2, &[(0, Some(vec![3, 4, 5]))]);
        assert_eq!(outcomes(&m, 2), vec![None]);
        let p = m.partition("t", 0).unwrap().clone();
        assert_eq!(p.replicas, vec![3, 4, 5, 1, 2]);
        assert_eq!(p.desired(), &[3, 4, 5]);
        let mv = p.reassigning().unwrap();
        assert_eq!((mv.adding(), mv.removing()), (vec![4, 5], vec![1, 2]));
        assert_eq!(p.initial, vec![1, 2, 3], "the group's first voters stay");
        // A completion of an earlier epoch ends nothing.
        m.apply(&done_record(p.group, mv.epoch - 1));
        assert!(m.partition("t", 0).unwrap().moving.is_some());
        m.apply(&done_record(p.group, mv.epoch));
        let p = m.partition("t", 0).unwrap();
        assert_eq!(
            (p.replicas.clone(), p.moving.clone()),
            (vec![3, 4, 5], None)
        );
        // Moving to where it is is nothing to do.
        alter(&mut m, 3, &[(0, Some(vec![3, 4, 5]))]);
        assert_eq!(outcomes(&m, 3), vec![None]);
        assert!(m.partition("t", 0).unwrap().moving.is_none());
    }

    #[test]
    fn a_cancelled_move_goes_back_to_its_original_replicas_and_a_new_target_keeps_them() {
        let mut m = cluster(5);
        alter(&mut m, 2, &[(1, Some(vec![4, 5, 1]))]);
        alter(&mut m, 3, &[(1, Some(vec![5, 4, 3]))]);
        let p = m.partition("t", 1).unwrap().clone();
        assert_eq!(p.replicas, vec![5, 4, 3, 1, 2]);
        assert_eq!(p.moving.as_ref().unwrap().original, vec![2, 3, 1]);
        alter(&mut m, 4, &[(1, None), (0, None)]);
        assert_eq!(
            outcomes(&m, 4),
            vec![None, Some(MetadataError::NoReassignmentInProgress)]
        );
        let p = m.partition("t", 1).unwrap().clone();
        let mv = p.moving.clone().unwrap();
        assert!(mv.cancelled && p.reassigning().is_none());
        assert_eq!(p.desired(), &[2, 3, 1]);
        assert_eq!(
            p.replicas,
            vec![2, 3, 1, 5, 4],
            "4 and 5 hold data until it is done"
        );
        // Cancelling again: nothing in progress.
        alter(&mut m, 5, &[(1, None)]);
        assert_eq!(
            outcomes(&m, 5),
            vec![Some(MetadataError::NoReassignmentInProgress)]
        );
        m.apply(&done_record(p.group, mv.epoch));
        assert_eq!(m.partition("t", 1).unwrap().replicas, vec![2, 3, 1]);
    }

    #[test]
    fn a_target_with_unknown_or_repeated_brokers_or_an_unknown_partition_is_refused_alone() {
        let mut m = cluster(3);
        alter(
            &mut m,
            2,
            &[
                (0, Some(vec![1, 9])),
                (1, Some(vec![1, 1])),
                (5, Some(vec![1])),
                (0, Some(vec![])),
                (1, Some(vec![3, 2])),
            ],
        );
        let o = outcomes(&m, 2);
        assert!(matches!(
            o[0],
            Some(MetadataError::InvalidReplicaAssignment(_))
        ));
        assert!(matches!(
            o[1],
            Some(MetadataError::InvalidReplicaAssignment(_))
        ));
        assert_eq!(o[2], Some(MetadataError::UnknownTopic));
        assert!(matches!(
            o[3],
            Some(MetadataError::InvalidReplicaAssignment(_))
        ));
        assert_eq!(o[4], None);
        assert_eq!(m.partition("t", 0).unwrap().moving, None);
        assert_eq!(m.partition("t", 1).unwrap().desired(), &[3, 2]);
    }
}
