//! A member's offset commits: synchronous ones (sent, then waited for), asynchronous ones
//! (several in flight on the coordinator's connection, their answers read in order), the
//! reads of the group's committed offsets, and what each outcome does to the member.

use std::time::Duration;

use super::*;

/// A commit sent without waiting for its answer.
pub(super) struct SentCommit {
    correlation_id: i32,
    offsets: Vec<(i32, i64)>,
    generation: i32,
    member_id: String,
    invoked_s: f64,
}

impl Member<'_> {
    /// Read the answers to commits in flight until at most `keep` are left. Without a
    /// connection (it was dropped) their outcome is unknown.
    pub(super) async fn settle_commits(&mut self, keep: usize) {
        let t_out = self.world.client_timeout();
        let version = self.commit_version();
        while self.in_flight.len() > keep {
            let Some(sent) = self.in_flight.pop_front() else {
                break;
            };
            let answer = match self.conn.as_mut() {
                Some(c) => {
                    tokio::time::timeout(t_out, c.commit_answer(version, sent.correlation_id)).await
                }
                None => Ok(Err(ClientError::Protocol("connection dropped".into()))),
            };
            let outcome = commit_outcome(answer);
            if outcome == CommitOutcome::Unknown {
                self.conn = None;
            }
            self.finish_commit(sent, outcome);
        }
    }

    /// Send this generation's progress as a commit without waiting for its answer (with
    /// `async_commits`), once fewer than that many are in flight.
    pub(super) async fn commit_async(&mut self) {
        let max = self.g().async_commits;
        if max == 0 || !self.joined {
            return;
        }
        let moved: Vec<(i32, i64, i64)> = self
            .positions
            .iter()
            .filter_map(|(p, o)| {
                let from = self.sent.get(p).copied().unwrap_or(0);
                (from < *o).then_some((*p, from, *o))
            })
            .collect();
        // As a consumer committing after each record it processed: a poll that brought several
        // records is committed in steps (half way, then all of it), back to back.
        let halfway: Vec<(i32, i64)> = moved
            .iter()
            .filter(|(_, from, to)| to - from >= 2)
            .map(|(p, from, to)| (*p, from + (to - from) / 2))
            .collect();
        let all: Vec<(i32, i64)> = moved.iter().map(|(p, _, to)| (*p, *to)).collect();
        for offsets in [halfway, all] {
            if !offsets.is_empty() {
                self.send_commit(max, offsets).await;
            }
        }
    }

    /// Send one commit without waiting, once fewer than `max` are in flight.
    pub(super) async fn send_commit(&mut self, max: usize, offsets: Vec<(i32, i64)>) {
        self.settle_commits(max - 1).await;
        if self.conn.is_none() || !self.joined {
            return;
        }
        let g = self.g().clone();
        let topic = self.world.scenario.workload.topic.clone();
        let (generation, member_id) = (self.generation, self.member_id.clone());
        let invoked_s = self.world.now_s();
        let version = self.commit_version();
        let Some(c) = self.conn.as_mut() else {
            return;
        };
        match c
            .send_commit(
                version,
                &g.group_id,
                generation,
                &member_id,
                &topic,
                &offsets,
            )
            .await
        {
            Ok(correlation_id) => {
                for (p, o) in &offsets {
                    self.sent.insert(*p, *o);
                }
                self.in_flight.push_back(SentCommit {
                    correlation_id,
                    offsets,
                    generation,
                    member_id,
                    invoked_s,
                });
            }
            Err(_) => self.conn = None,
        }
    }

    /// Record a commit's outcome and act on it.
    pub(super) fn finish_commit(&mut self, sent: SentCommit, outcome: CommitOutcome) {
        self.world.record(Op::Commit(Commit {
            member: self.id,
            member_id: sent.member_id,
            generation: sent.generation,
            offsets: sent.offsets.clone(),
            invoked_s: sent.invoked_s,
            completed_s: self.world.now_s(),
            outcome: outcome.clone(),
        }));
        match outcome {
            CommitOutcome::Ok => {
                let mut progress = lock(&self.world.group);
                for (p, o) in &sent.offsets {
                    self.committed.insert(*p, *o);
                    let c = progress.committed.entry(*p).or_insert(0);
                    *c = (*c).max(*o);
                }
            }
            // Only a commit of the member's current generation speaks for it.
            CommitOutcome::Failed(code) if sent.generation == self.generation => self.told(code),
            CommitOutcome::Failed(_) | CommitOutcome::Unknown => {}
        }
    }

    /// Read the group's committed offsets of partitions `mine` (and record the read).
    pub(super) async fn read_committed_offsets(
        &mut self,
        mine: Vec<i32>,
    ) -> Option<Vec<(i32, i64)>> {
        let t_out = self.world.client_timeout();
        let group_id = self.g().group_id.clone();
        let topic = self.world.scenario.workload.topic.clone();
        let invoked_s = self.world.now_s();
        let c = self.client().await?;
        match tokio::time::timeout(t_out, c.committed_offsets(&group_id, &topic, &mine)).await {
            Ok(Ok(offsets)) => {
                self.world.record(Op::CommittedRead(CommittedRead {
                    member: self.id,
                    offsets: offsets.clone(),
                    invoked_s,
                    completed_s: self.world.now_s(),
                }));
                Some(offsets)
            }
            Ok(Err(_)) => None,
            Err(_) => {
                self.conn = None;
                None
            }
        }
    }

    /// Commit this generation's positions that moved since the last commit (once the commits
    /// in flight are answered; with `async_commits`, then read the committed offsets back).
    pub(super) async fn commit(&mut self) {
        let t_out = self.world.client_timeout();
        self.settle_commits(0).await;
        if !self.joined {
            return;
        }
        self.commit_sync(t_out, |_| true).await;
        if self.g().async_commits > 0 && self.joined {
            let mine = self.positions.keys().copied().collect();
            self.read_committed_offsets(mine).await;
        }
    }

    /// Commit the positions of partitions `which` that moved since the last commit, and wait.
    pub(super) async fn commit_sync(&mut self, t_out: Duration, which: impl Fn(&i32) -> bool) {
        let offsets: Vec<(i32, i64)> = self
            .positions
            .iter()
            .filter(|(p, o)| which(p) && self.committed.get(p) != Some(o))
            .map(|(p, o)| (*p, *o))
            .collect();
        if offsets.is_empty() {
            return;
        }
        let g = self.g().clone();
        let topic = self.world.scenario.workload.topic.clone();
        let (generation, member_id) = (self.generation, self.member_id.clone());
        let invoked_s = self.world.now_s();
        let version = self.commit_version();
        let Some(c) = self.client().await else {
            return;
        };
        let r = tokio::time::timeout(
            t_out,
            c.commit_offsets(
                version,
                &g.group_id,
                generation,
                &member_id,
                &topic,
                &offsets,
            ),
        )
        .await;
        let outcome = commit_outcome(r);
        if outcome == CommitOutcome::Unknown {
            self.conn = None;
        }
        for (p, o) in &offsets {
            self.sent.insert(*p, *o);
        }
        self.finish_commit(
            SentCommit {
                correlation_id: 0,
                offsets,
                generation,
                member_id,
                invoked_s,
            },
            outcome,
        );
    }
}

/// What an OffsetCommit's answer (or its absence) says.
fn commit_outcome(
    answer: Result<Result<Vec<(i32, i16)>, ClientError>, tokio::time::error::Elapsed>,
) -> CommitOutcome {
    match answer {
        Ok(Ok(codes)) => match codes.iter().find(|(_, c)| *c != 0) {
            None => CommitOutcome::Ok,
            Some((_, code)) => CommitOutcome::Failed(*code),
        },
        Ok(Err(ClientError::Kafka(code))) => CommitOutcome::Failed(code),
        _ => CommitOutcome::Unknown,
    }
}
