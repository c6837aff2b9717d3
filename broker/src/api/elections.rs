//! ElectLeaders (KIP-460): a preferred leader election on request. On a single node every
//! partition has one replica, which leads it: no election is ever needed. In a cluster a
//! partition whose leader is not its preferred replica (the first of its list) is handed to
//! that replica — the request goes to the partition's Raft leader through this broker's
//! replica (raft-rs forwards it over the long-lived connection), and the answer waits, within
//! the request's timeout, until the preferred replica leads. Raft has no unclean election: a
//! leader may only be a replica holding every committed write, so UNCLEAN elects nobody.

use std::time::Duration;

use kafka_protocol::messages::{
    elect_leaders_response::{PartitionResult, ReplicaElectionResult},
    ElectLeadersRequest, ElectLeadersResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{name_of, topic_name, Broker};
use crate::protocol::error;

/// ElectLeaders' election types.
const PREFERRED: i8 = 0;

impl Broker {
    pub(super) async fn elect_leaders(
        &self,
        req: ElectLeadersRequest,
        version: i16,
    ) -> ElectLeadersResponse {
        let election_type = if version >= 1 {
            req.election_type
        } else {
            PREFERRED
        };
        let limit = Duration::from_millis(req.timeout_ms.clamp(100, 60_000) as u64);
        // Null: every partition whose leader is not its preferred replica.
        let asked: Vec<(TopicName, Vec<i32>)> = match req.topic_partitions {
            Some(list) => list.into_iter().map(|t| (t.topic, t.partitions)).collect(),
            None => self.misled_partitions(),
        };
        let mut results = Vec::with_capacity(asked.len());
        let mut waiting = Vec::new();
        for (topic, partitions) in asked {
            let mut r = ReplicaElectionResult::default();
            for p in partitions {
                let outcome = self.elect(name_of(&topic), p, election_type).await;
                if let Ok(Some(preferred)) = outcome {
                    waiting.push((results.len(), r.partition_result.len(), preferred));
                }
                let mut pr = PartitionResult::default();
                pr.partition_id = p;
                let (code, msg) = match outcome {
                    Ok(_) => (error::NONE, None),
                    Err((code, msg)) => (code, Some(msg)),
                };
                // v0 knows no ELECTION_NOT_NEEDED: there, the leader is as asked (no error).
                if version >= 1 || code != error::ELECTION_NOT_NEEDED {
                    pr.error_code = code;
                    pr.error_message = msg.map(StrBytes::from_string);
                }
                r.partition_result.push(pr);
            }
            r.topic = topic;
            results.push(r);
        }
        self.await_elections(&mut results, waiting, limit).await;
        let mut resp = ElectLeadersResponse::default();
        resp.replica_election_results = results;
        resp
    }

    /// Every partition of the cluster led by another replica than its preferred one.
    fn misled_partitions(&self) -> Vec<(TopicName, Vec<i32>)> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        let md = cluster.metadata();
        md.topics
            .values()
            .filter_map(|t| {
                let misled: Vec<i32> = (0..t.partitions.len() as i32)
                    .filter(|&i| {
                        let preferred = t.partitions[i as usize].replicas.first().copied();
                        self.partition_leader(&t.name, i).map(|(l, _)| l as u64) != preferred
                    })
                    .collect();
                (!misled.is_empty()).then(|| (topic_name(&t.name), misled))
            })
            .collect()
    }

    /// Start the election of one partition: `Ok(Some(preferred))` when one is under way (to
    /// wait for), `Ok(None)` when its answer is NONE at once, else the refusal.
    async fn elect(
        &self,
        topic: &str,
        index: i32,
        election_type: i8,
    ) -> Result<Option<u64>, (i16, String)> {
        let Some(cluster) = &self.cluster else {
            let known = self
                .store
                .topic(topic)
                .is_some_and(|t| index >= 0 && (index as usize) < t.partitions.len());
            return Err(if known {
                (
                    error::ELECTION_NOT_NEEDED,
                    "the partition's only replica is its leader".into(),
                )
            } else {
                unknown()
            });
        };
        let md = cluster.metadata();
        let Some(p) = md.partition(topic, index) else {
            return Err(unknown());
        };
        let leader = self.partition_leader(topic, index).map(|(l, _)| l as u64);
        if election_type != PREFERRED {
            return Err(match leader {
                Some(_) => (
                    error::ELECTION_NOT_NEEDED,
                    "the partition has a leader".into(),
                ),
                None => (
                    error::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                    "no unclean election here: Raft elects only a replica holding every committed write".into(),
                ),
            });
        }
        let Some(&preferred) = p.replicas.first() else {
            return Err(unknown());
        };
        if leader == Some(preferred) {
            return Err((
                error::ELECTION_NOT_NEEDED,
                format!("its preferred replica, broker {preferred}, leads it"),
            ));
        }
        if md.brokers.get(&preferred).is_none_or(|b| b.fenced) {
            return Err((
                error::PREFERRED_LEADER_NOT_AVAILABLE,
                format!("its preferred replica, broker {preferred}, is not live"),
            ));
        }
        let Some(view) = cluster.replication().replica(topic, index) else {
            return Err((
                error::PREFERRED_LEADER_NOT_AVAILABLE,
                format!(
                    "broker {} holds no replica of it to ask its leader through: ask one of brokers {:?}",
                    self.config.node_id, p.replicas
                ),
            ));
        };
        cluster
            .replication()
            .transfer_leader(view.group, preferred)
            .await
            .map_err(|e| (error::PREFERRED_LEADER_NOT_AVAILABLE, e.to_string()))?;
        Ok(Some(preferred))
    }

    /// Wait, within `limit`, until every election under way has its preferred replica leading;
    /// those that have not are answered REQUEST_TIMED_OUT.
    async fn await_elections(
        &self,
        results: &mut [ReplicaElectionResult],
        mut waiting: Vec<(usize, usize, u64)>,
        limit: Duration,
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let deadline = self.clock.now() + limit;
        let mut changes = cluster.replication().changes();
        loop {
            waiting.retain(|&(t, p, preferred)| {
                let r = &results[t];
                let index = r.partition_result[p].partition_id;
                self.partition_leader(name_of(&r.topic), index)
                    .map(|(l, _)| l as u64)
                    != Some(preferred)
            });
            let left = deadline.saturating_duration_since(self.clock.now());
            if waiting.is_empty() || left.is_zero() {
                break;
            }
            // A leadership change shows in this broker's replica's status.
            let _ = self
                .clock
                .timeout(left.min(Duration::from_millis(100)), changes.changed())
                .await;
        }
        for (t, p, preferred) in waiting {
            let pr = &mut results[t].partition_result[p];
            pr.error_code = error::REQUEST_TIMED_OUT;
            pr.error_message = Some(StrBytes::from_string(format!(
                "broker {preferred} did not take the leadership within the request's timeout (it must first hold every committed write)"
            )));
        }
    }
}

fn unknown() -> (i16, String) {
    (
        error::UNKNOWN_TOPIC_OR_PARTITION,
        "unknown topic or partition".into(),
    )
}
