//! The rules a scenario file must follow, checked when it is read (and after each random
//! configuration is drawn into it).

use super::*;

impl Scenario {
    pub(super) fn validate(&self) -> Result<(), String> {
        let w = &self.workload;
        if !(self.twin.tolerance.is_finite() && self.twin.tolerance >= 1.0) {
            return Err("twin.tolerance must be a number of at least 1".into());
        }
        if w.producers == 0 {
            return Err("workload.producers must be at least 1".into());
        }
        if !(1..=MAX_PARTITIONS).contains(&w.partitions) {
            return Err(format!(
                "workload.partitions {} is not in 1..={MAX_PARTITIONS}",
                w.partitions
            ));
        }
        let acks_ok = |a: i16| matches!(a, -1..=1);
        let all_acks_ok = match &w.acks {
            Acks::One(a) => acks_ok(*a),
            Acks::Each(v) => !v.is_empty() && v.iter().all(|a| acks_ok(*a)),
        };
        if !all_acks_ok {
            return Err("workload.acks must be 0, 1 or -1 (or a non-empty list of them)".into());
        }
        if (0..w.producers).all(|p| w.acks.for_producer(p) == 0) {
            return Err(
                "workload.acks: at least one producer must ask for acknowledgements (1 or -1): \
                 without acknowledged writes neither the loss nor the liveness checks can see \
                 anything"
                    .into(),
            );
        }
        if (0..w.producers).any(|p| w.idempotent.for_producer(p) && w.acks.for_producer(p) != -1) {
            return Err("an idempotent producer needs acks = -1 (as Kafka requires)".into());
        }
        if w.request_timeout_ms < self.expect.response_deadline_s * 1000 + 1000 {
            return Err(format!(
                "workload.request_timeout_ms {} must be at least a second above \
                 expect.response_deadline_s ({} s): a client that gives up first records an \
                 unknown outcome, and a broker that never answers would pass unseen",
                w.request_timeout_ms, self.expect.response_deadline_s
            ));
        }
        if w.value_bytes > 512 * 1024 {
            return Err("workload.value_bytes must be at most 512 KiB".into());
        }
        if !(1..=5).contains(&w.max_in_flight) {
            return Err("workload.max_in_flight must be from 1 to 5".into());
        }
        if let Some(g) = &w.group {
            if g.members == 0
                || g.heartbeat_interval_ms == 0
                || g.commit_interval_ms == 0
                || g.heartbeat_interval_ms * 3 > g.session_timeout_ms
                || g.member_faults_per_min < 0.0
            {
                return Err("workload.group: at least one member, heartbeats and commits more often than a third of the session timeout, member_faults_per_min not negative".into());
            }
            let known: &[&str] = match g.protocol.as_str() {
                super::CLASSIC => &[super::RANGE, super::COOPERATIVE_STICKY],
                super::CONSUMER => super::SERVER_ASSIGNORS,
                other => {
                    return Err(format!(
                        "workload.group.protocol must be {:?} or {:?}, not {other:?}",
                        super::CLASSIC,
                        super::CONSUMER
                    ))
                }
            };
            if !known.contains(&g.assignor.as_str()) {
                return Err(format!(
                    "workload.group.assignor must be one of {known:?}, not {:?}",
                    g.assignor
                ));
            }
        }
        if self.expect.writes_during_moves_s.is_some() && w.moves.is_none() {
            return Err("expect.writes_during_moves_s needs [workload.moves]".into());
        }
        if let Some(c) = &w.compacted {
            let [lo, hi] = c.far_behind_pause_ms;
            if lo > hi || hi == 0 {
                return Err(format!(
                    "workload.compacted.far_behind_pause_ms [{lo}, {hi}]: the first must not \
                     exceed the second, which must be above 0"
                ));
            }
        }
        if let Some(p) = &self.expect.performance {
            p.validate()?;
        }
        if self.disk.bandwidth_mb_s == Some(0) {
            return Err("disk.bandwidth_mb_s must be above 0".into());
        }
        if let Some([lo, hi]) = self.disk.latency_ms {
            if lo > hi || hi > 10_000 {
                return Err(format!(
                    "disk.latency_ms [{lo}, {hi}]: the first must not exceed the second, nor 10000"
                ));
            }
        }
        if let Expected::Finding(k) = &self.expect.outcome {
            if !crate::findings::FINDING_KINDS.contains(&k.as_str()) {
                return Err(format!(
                    "expect.outcome {k:?} is not pass, liveness-failure or one of {}",
                    crate::findings::FINDING_KINDS.join(", ")
                ));
            }
        }
        for f in &self.faults {
            f.check(self.cluster.nodes)
                .map_err(|e| format!("{} fault: {e}", f.kind()))?;
        }
        if !(1..=7).contains(&self.cluster.nodes) {
            return Err("cluster.nodes must be from 1 to 7".into());
        }
        let c = &self.cluster;
        if c.voters.is_some_and(|v| v == 0 || v > c.nodes) {
            return Err("cluster.voters must be from 1 to cluster.nodes".into());
        }
        if let Some(j) = c
            .joining
            .iter()
            .find(|j| j.node <= c.voters() || j.node > c.nodes)
        {
            return Err(format!(
                "cluster.joining: broker {} is not an observer (above cluster.voters, at most cluster.nodes)",
                j.node
            ));
        }
        if let Some(r) = self
            .workload
            .retire
            .iter()
            .find(|r| r.node == 0 || r.node > c.nodes)
        {
            return Err(format!("workload.retire: no broker {}", r.node));
        }
        if let Some(c) = &self.workload.configs {
            c.check()?;
        }
        if let Some(m) = &self.workload.moves {
            if m.replicas == 0 || m.replicas > self.cluster.nodes || m.interval_ms == 0 {
                return Err(format!(
                    "workload.moves: replicas must be from 1 to cluster.nodes ({}), interval_ms above 0",
                    self.cluster.nodes
                ));
            }
        }
        if let Some(churn) = self.auth.as_ref().and_then(|a| a.churn.as_ref()) {
            let auth = self.auth.as_ref().expect("churn is in it");
            if !auth.authorizer || !self.clustered() || auth.mechanism == "PLAIN" {
                return Err(
                    "auth.churn needs auth.authorizer, a cluster (what each broker \
                            applied of the metadata log is what the checker judges) and a SCRAM \
                            mechanism"
                        .into(),
                );
            }
            if churn.change_interval_ms < 100 || churn.probe_interval_ms < 10 {
                return Err(
                    "auth.churn: change_interval_ms at least 100, probe_interval_ms at \
                            least 10"
                        .into(),
                );
            }
        }
        if let Some(cpu) = &self.cpu {
            cpu.check()?;
        }
        let busy_cpu = self.faults.iter().any(|f| f.kind() == "busy-cpu")
            || self
                .random_faults
                .as_ref()
                .is_some_and(|r| r.kinds.iter().any(|k| k == "busy-cpu"));
        if busy_cpu && self.cpu.is_none() {
            return Err("a busy-cpu fault needs the scenario's [cpu] (processors to take)".into());
        }
        if let Some(r) = &self.random_faults {
            if let Some(k) = r.kinds.iter().find(|k| !RANDOM_KINDS.contains(&k.as_str())) {
                return Err(format!(
                    "random_faults.kinds: unknown kind {k:?} (known: {})",
                    RANDOM_KINDS.join(", ")
                ));
            }
            if r.rate_per_min.is_nan() || r.rate_per_min <= 0.0 {
                return Err("random_faults.rate_per_min must be above 0".into());
            }
        }
        Ok(())
    }
}
