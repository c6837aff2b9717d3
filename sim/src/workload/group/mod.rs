//! The simulated consumer group: members of one group reading the workload topic with Kafka's
//! classic protocol, as a Java consumer with the range assignor and auto-commit does — join,
//! the leader assigns, sync, fetch from the committed offsets, heartbeat, commit on an interval
//! and when a rebalance begins, rejoin when told. While producing lasts, members crash (no
//! LeaveGroup; they come back as new members), pause past their session timeout (and go on as
//! zombies until the group tells them otherwise), and leave (and come back), as often as the
//! scenario says, drawn from the seed. Once producing is over, the group reads to the end and
//! commits it, then its members leave. With `async_commits`, each poll's progress is committed
//! without waiting (several commits in flight on the member's coordinator connection while it
//! fetches on another, as librdkafka's asynchronous commits are), and at each commit interval the member reads the group's
//! committed offsets back: an acknowledged commit must be what the group answers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_backend::EnvRng;
use tokio::time::Instant;

use crate::history::{
    Assigned, Commit, CommitOutcome, CommittedRead, MemberEvent, Op, Poll, PollResult,
};
use crate::workload::client::group::{assigned, assignment};
use crate::workload::client::routing::{leadership_code, Conns};
use crate::workload::client::{Client, ClientError};
use crate::workload::{lock, wait_ready, World, DRAIN_MAX, OFFSET_OUT_OF_RANGE};

/// Kafka's answers that tell a member to rejoin.
const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_MEMBER_ID: i16 = 25;

/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: the coordinator
/// moved (its partition's leadership did) or is not ready; find it again.
fn coordinator_moved(code: i16) -> bool {
    matches!(code, 14..=16)
}

/// The group's progress, shared by its members: what it has committed, and where each
/// partition ends once producing is over.
#[derive(Debug, Default)]
pub struct Progress {
    committed: BTreeMap<i32, i64>,
    end: BTreeMap<i32, i64>,
    /// Member incarnations started so far.
    incarnations: usize,
}

impl Progress {
    /// Everything up to the end of every partition is committed.
    fn drained(&self, partitions: i32) -> bool {
        (0..partitions).all(|p| {
            self.end
                .get(&p)
                .is_some_and(|end| self.committed.get(&p).copied().unwrap_or(0) >= *end)
        })
    }
}

/// What ended a member's incarnation.
enum Ending {
    /// The group drained (or the drain deadline passed): the member left for good.
    Done,
    /// Crashed or left: another incarnation comes after a while.
    Gone,
}

/// A fault a member brings on itself.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Crash,
    Pause,
    Leave,
}

/// A commit sent without waiting for its answer.
struct SentCommit {
    correlation_id: i32,
    offsets: Vec<(i32, i64)>,
    generation: i32,
    member_id: String,
    invoked_s: f64,
}

/// One member slot of the group: incarnation after incarnation until the group is drained.
pub async fn member(world: Arc<World>, slot: usize) {
    if !wait_ready(&world).await {
        return;
    }
    let rng = EnvRng::seeded(world.seed ^ 0x60c0_ffee ^ (slot as u64).wrapping_mul(0x9e37));
    loop {
        let incarnation = {
            let mut g = lock(&world.group);
            g.incarnations += 1;
            g.incarnations - 1
        };
        // Polls of group members count as consumers after the plain ones.
        let id = world.scenario.workload.consumers + incarnation;
        let mut m = Member::new(world.clone(), id, &rng);
        match m.run().await {
            Ending::Done => return,
            Ending::Gone => {
                let down = Duration::from_millis(rng.range_u64(500, 5_000));
                tokio::time::sleep(down).await;
            }
        }
    }
}

struct Member<'a> {
    world: Arc<World>,
    id: usize,
    rng: &'a EnvRng,
    /// The connection to the group coordinator (group requests and commits).
    conn: Option<Client>,
    /// The connections fetches go on, one per partition leader (librdkafka and the Java client
    /// fetch from the partition leader on a connection of its own, beside the coordinator's).
    fetch_conns: Conns,
    member_id: String,
    generation: i32,
    joined: bool,
    /// The partitions of this generation and the next offset to read in each.
    positions: BTreeMap<i32, i64>,
    /// What this member last committed, per partition.
    committed: BTreeMap<i32, i64>,
    /// What its last commit sent, per partition (ahead of `committed` while commits are in
    /// flight).
    sent: BTreeMap<i32, i64>,
    /// Commits sent without waiting, oldest first: their answers come before anything else
    /// on the connection.
    in_flight: VecDeque<SentCommit>,
    /// Counts joins and resets: a poll's `session` (offsets may go back between two).
    session: u32,
    fate: Option<(Instant, Fate)>,
}

impl<'a> Member<'a> {
    fn new(world: Arc<World>, id: usize, rng: &'a EnvRng) -> Member<'a> {
        let mut m = Member {
            world,
            id,
            rng,
            conn: None,
            fetch_conns: Conns::default(),
            member_id: String::new(),
            generation: -1,
            joined: false,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            sent: BTreeMap::new(),
            in_flight: VecDeque::new(),
            session: 0,
            fate: None,
        };
        m.draw_fate();
        m
    }

    fn g(&self) -> &crate::scenario::GroupWorkload {
        self.world
            .scenario
            .workload
            .group
            .as_ref()
            .expect("a group workload")
    }

    fn event(&self, what: String) {
        self.world.record(Op::Member(MemberEvent {
            member: self.id,
            at_s: self.world.now_s(),
            what,
        }));
    }

    /// The next fault this member brings on itself, if the scenario has member faults.
    fn draw_fate(&mut self) {
        let g = self.g();
        let per_member_per_min = g.member_faults_per_min / g.members.max(1) as f64;
        if per_member_per_min <= 0.0 {
            self.fate = None;
            return;
        }
        let mean_ms = 60_000.0 / per_member_per_min;
        let u = (self.rng.range_u64(1, 1_000_001) as f64) / 1_000_001.0;
        let after = Duration::from_millis((-(u.ln()) * mean_ms) as u64);
        let fate = match self.rng.range_u64(0, 3) {
            0 => Fate::Crash,
            1 => Fate::Pause,
            _ => Fate::Leave,
        };
        self.fate = Some((Instant::now() + after, fate));
    }

    async fn run(&mut self) -> Ending {
        let g = self.g().clone();
        let heartbeat_every = Duration::from_millis(g.heartbeat_interval_ms);
        let commit_every = Duration::from_millis(g.commit_interval_ms);
        let mut next_heartbeat = Instant::now();
        let mut next_commit = Instant::now() + commit_every;
        let mut drain_deadline: Option<Instant> = None;
        self.event("starts".into());
        loop {
            let over = *self.world.producing_over.borrow();
            if over && drain_deadline.is_none() {
                drain_deadline = Some(Instant::now() + DRAIN_MAX);
            }
            // Faults only while producing lasts: then the group must settle and drain.
            if let Some((at, fate)) = self.fate.filter(|(at, _)| !over && Instant::now() >= *at) {
                let _ = at;
                match fate {
                    Fate::Crash => {
                        self.event("crashes (no LeaveGroup)".into());
                        return Ending::Gone;
                    }
                    Fate::Leave => {
                        self.commit().await;
                        self.leave().await;
                        self.event("left the group".into());
                        return Ending::Gone;
                    }
                    Fate::Pause => {
                        let pause = Duration::from_millis(
                            g.session_timeout_ms + self.rng.range_u64(500, 5_000),
                        );
                        self.event(format!("pauses for {:.1} s", pause.as_secs_f64()));
                        tokio::time::sleep(pause).await;
                        self.event("resumes".into());
                        self.draw_fate();
                    }
                }
            }
            let drained =
                over && lock(&self.world.group).drained(self.world.scenario.workload.partitions);
            if drained || drain_deadline.is_some_and(|d| Instant::now() >= d) {
                self.commit().await;
                self.leave().await;
                self.event(
                    if drained {
                        "done: the group read and committed everything"
                    } else {
                        "gives up draining"
                    }
                    .into(),
                );
                return Ending::Done;
            }
            if !self.joined {
                if !self.join().await {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                next_heartbeat = Instant::now() + heartbeat_every;
                next_commit = Instant::now() + commit_every;
                continue;
            }
            if Instant::now() >= next_commit {
                next_commit = Instant::now() + commit_every;
                self.commit().await;
                if !self.joined {
                    continue;
                }
            }
            if Instant::now() >= next_heartbeat {
                next_heartbeat = Instant::now() + heartbeat_every;
                self.heartbeat().await;
                if !self.joined {
                    continue;
                }
            }
            if self.positions.is_empty() {
                tokio::time::sleep(heartbeat_every / 2).await;
                continue;
            }
            let wait = heartbeat_every.min(Duration::from_millis(
                self.world.scenario.workload.poll_max_wait_ms,
            ));
            self.poll(wait).await;
            self.commit_async().await;
        }
    }

    /// The member's connection to the coordinator, once the answers to its commits in flight
    /// are read.
    async fn client(&mut self) -> Option<&mut Client> {
        self.settle_commits(0).await;
        if self.conn.is_none() {
            let group = self.g().group_id.clone();
            self.conn = self.world.coordinator(&group).await;
        }
        self.conn.as_mut()
    }

    /// Read the answers to commits in flight until at most `keep` are left. Without a
    /// connection (it was dropped) their outcome is unknown.
    async fn settle_commits(&mut self, keep: usize) {
        let t_out = self.world.client_timeout();
        while self.in_flight.len() > keep {
            let Some(sent) = self.in_flight.pop_front() else {
                break;
            };
            let answer = match self.conn.as_mut() {
                Some(c) => tokio::time::timeout(t_out, c.commit_answer(sent.correlation_id)).await,
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
    async fn commit_async(&mut self) {
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
    async fn send_commit(&mut self, max: usize, offsets: Vec<(i32, i64)>) {
        self.settle_commits(max - 1).await;
        if self.conn.is_none() || !self.joined {
            return;
        }
        let g = self.g().clone();
        let topic = self.world.scenario.workload.topic.clone();
        let (generation, member_id) = (self.generation, self.member_id.clone());
        let invoked_s = self.world.now_s();
        let Some(c) = self.conn.as_mut() else {
            return;
        };
        match c
            .send_commit(&g.group_id, generation, &member_id, &topic, &offsets)
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
    fn finish_commit(&mut self, sent: SentCommit, outcome: CommitOutcome) {
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

    /// Read the group's committed offsets of this member's partitions (and record the read).
    async fn read_committed_offsets(&mut self) -> Option<Vec<(i32, i64)>> {
        let t_out = self.world.client_timeout();
        let group_id = self.g().group_id.clone();
        let topic = self.world.scenario.workload.topic.clone();
        let mine: Vec<i32> = self.positions.keys().copied().collect();
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

    /// A JoinGroup or SyncGroup that did not let the member in: an unknown member id is
    /// forgotten (the next join asks for a new one); no answer drops the connection.
    fn not_joined(&mut self, error: Option<ClientError>) -> bool {
        match error {
            Some(ClientError::Kafka(code)) => {
                if code == UNKNOWN_MEMBER_ID {
                    self.member_id.clear();
                }
                if coordinator_moved(code) {
                    self.conn = None;
                }
            }
            _ => self.conn = None,
        }
        false
    }

    /// Join (and sync) a new generation: the leader computes the range assignment.
    async fn join(&mut self) -> bool {
        let g = self.g().clone();
        let topic = self.world.scenario.workload.topic.clone();
        let partitions = self.world.scenario.workload.partitions;
        let join_timeout = Duration::from_millis(g.rebalance_timeout_ms + g.session_timeout_ms)
            + self.world.client_timeout();
        let member_id = self.member_id.clone();
        let Some(c) = self.client().await else {
            return false;
        };
        let joined = tokio::time::timeout(
            join_timeout,
            c.join_group(
                &g.group_id,
                &member_id,
                g.session_timeout_ms as i32,
                g.rebalance_timeout_ms as i32,
                std::slice::from_ref(&topic),
            ),
        )
        .await;
        let j = match joined {
            Ok(Ok(j)) => j,
            Ok(Err(ClientError::MemberIdRequired(id))) => {
                self.member_id = id;
                return true; // Join again at once, with the id.
            }
            Ok(Err(e)) => return self.not_joined(Some(e)),
            Err(_) => return self.not_joined(None),
        };
        self.member_id = j.member_id.clone();
        let assignments = if j.leader == j.member_id {
            range(
                &j.members.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(),
                partitions,
            )
            .into_iter()
            .map(|(m, ps)| (m, assignment(&topic, &ps)))
            .collect()
        } else {
            Vec::new()
        };
        let Some(c) = self.client().await else {
            return false;
        };
        let synced = tokio::time::timeout(
            join_timeout,
            c.sync_group(&g.group_id, j.generation, &j.member_id, assignments),
        )
        .await;
        let data: Bytes = match synced {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return self.not_joined(Some(e)),
            Err(_) => return self.not_joined(None),
        };
        let Ok(mine) = assigned(&topic, &data) else {
            return false;
        };
        self.generation = j.generation;
        self.world.record(Op::Assigned(Assigned {
            member: self.id,
            member_id: j.member_id.clone(),
            generation: j.generation,
            partitions: mine.clone(),
            at_s: self.world.now_s(),
        }));
        // Start from what the group committed (the earliest offset where nothing is).
        self.positions = mine.iter().map(|p| (*p, 0)).collect();
        let Some(committed) = self.read_committed_offsets().await else {
            self.positions.clear();
            return false;
        };
        self.positions = committed.into_iter().map(|(p, o)| (p, o.max(0))).collect();
        self.committed = self.positions.clone();
        self.sent = self.positions.clone();
        self.session += 1;
        self.joined = true;
        true
    }

    /// Commit this generation's positions that moved since the last commit (once the commits
    /// in flight are answered; with `async_commits`, then read the committed offsets back).
    async fn commit(&mut self) {
        let t_out = self.world.client_timeout();
        self.settle_commits(0).await;
        if !self.joined {
            return;
        }
        self.commit_sync(t_out).await;
        if self.g().async_commits > 0 && self.joined {
            self.read_committed_offsets().await;
        }
    }

    async fn commit_sync(&mut self, t_out: Duration) {
        let offsets: Vec<(i32, i64)> = self
            .positions
            .iter()
            .filter(|(p, o)| self.committed.get(p) != Some(o))
            .map(|(p, o)| (*p, *o))
            .collect();
        if offsets.is_empty() {
            return;
        }
        let g = self.g().clone();
        let topic = self.world.scenario.workload.topic.clone();
        let (generation, member_id) = (self.generation, self.member_id.clone());
        let invoked_s = self.world.now_s();
        let Some(c) = self.client().await else {
            return;
        };
        let r = tokio::time::timeout(
            t_out,
            c.commit_offsets(&g.group_id, generation, &member_id, &topic, &offsets),
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

    /// The group said something other than "fine" to a heartbeat or commit.
    fn told(&mut self, code: i16) {
        match code {
            0 => {}
            REBALANCE_IN_PROGRESS => self.joined = false,
            // ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID: no longer a member of
            // the generation: its partitions are someone else's; nothing more is committed.
            22 | UNKNOWN_MEMBER_ID | 82 => {
                if code == UNKNOWN_MEMBER_ID {
                    self.member_id.clear();
                }
                self.event(format!(
                    "fenced (error {code}): drops its partitions and rejoins"
                ));
                self.joined = false;
                self.positions.clear();
            }
            code if coordinator_moved(code) => self.conn = None,
            _ => {}
        }
    }

    async fn heartbeat(&mut self) {
        let t_out = self.world.client_timeout();
        let g = self.g().clone();
        let (generation, member_id) = (self.generation, self.member_id.clone());
        let Some(c) = self.client().await else {
            return;
        };
        match tokio::time::timeout(t_out, c.heartbeat(&g.group_id, generation, &member_id)).await {
            Ok(Ok(REBALANCE_IN_PROGRESS)) => {
                // Commit before giving the partitions up (onPartitionsRevoked), then rejoin.
                self.commit().await;
                self.joined = false;
            }
            Ok(Ok(code)) => self.told(code),
            Ok(Err(ClientError::Kafka(code))) => self.told(code),
            _ => self.conn = None,
        }
    }

    async fn leave(&mut self) {
        let t_out = self.world.client_timeout();
        if self.member_id.is_empty() {
            return;
        }
        let g = self.g().clone();
        let member_id = self.member_id.clone();
        if let Some(c) = self.client().await {
            let _ = tokio::time::timeout(t_out, c.leave_group(&g.group_id, &member_id)).await;
        }
        self.joined = false;
    }

    /// Fetch this generation's partitions from their positions, one fetch to each leader.
    async fn poll(&mut self, wait: Duration) {
        let topic = self.world.scenario.workload.topic.clone();
        let mut by_leader: BTreeMap<std::net::SocketAddr, Vec<(i32, i64)>> = BTreeMap::new();
        for (&p, &o) in &self.positions {
            match self.world.directory.leader(&topic, p).await {
                Some(addr) => by_leader.entry(addr).or_default().push((p, o)),
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        for (leader, asked) in by_leader {
            self.poll_leader(leader, &asked, wait).await;
        }
    }

    async fn poll_leader(
        &mut self,
        leader: std::net::SocketAddr,
        asked: &[(i32, i64)],
        wait: Duration,
    ) {
        let t_out = self.world.client_timeout();
        let topic = self.world.scenario.workload.topic.clone();
        let over = *self.world.producing_over.borrow();
        let invoked_s = self.world.now_s();
        let timeout_ms =
            i32::try_from(self.world.scenario.workload.request_timeout_ms).unwrap_or(i32::MAX);
        let Some(c) = self.fetch_conns.get(leader, timeout_ms).await else {
            for (p, _) in asked {
                self.world.directory.forget(&topic, *p);
            }
            return;
        };
        let answer = tokio::time::timeout(
            t_out + wait,
            c.fetch_many(&topic, asked, wait.as_millis() as i32),
        )
        .await;
        let answers = match answer {
            Ok(Ok(a)) => a,
            _ => {
                self.fetch_conns.drop_conn(leader);
                for (p, _) in asked {
                    self.world.directory.forget(&topic, *p);
                }
                return;
            }
        };
        let completed_s = self.world.now_s();
        for (partition, r) in answers {
            let Some(&from_offset) = self.positions.get(&partition) else {
                continue;
            };
            let result = match r {
                Ok((records, hw, next)) => {
                    if over {
                        let mut progress = lock(&self.world.group);
                        let e = progress.end.entry(partition).or_insert(0);
                        *e = (*e).max(hw);
                    }
                    if let Some(next) = next.filter(|n| *n > from_offset) {
                        self.positions.insert(partition, next);
                    }
                    if records.is_empty() {
                        continue;
                    }
                    PollResult::Records(records)
                }
                Err(code) => {
                    if code == OFFSET_OUT_OF_RANGE {
                        self.positions.insert(partition, 0);
                        self.session += 1;
                    }
                    if leadership_code(code) {
                        self.world.directory.forget(&topic, partition);
                    }
                    PollResult::Failed(code)
                }
            };
            self.world.record(Op::Poll(Poll {
                broker: self.world.broker_index(leader),
                consumer: self.id,
                session: self.session,
                partition,
                from_offset,
                invoked_s,
                completed_s,
                result,
            }));
        }
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

/// The group's committed offsets after the run, read by a fresh client from the coordinator.
pub async fn read_committed(
    world: &World,
    group: &str,
    topic: &str,
    partitions: i32,
) -> crate::history::FinalCommitted {
    let all: Vec<i32> = (0..partitions).collect();
    for _ in 0..30 {
        if let Some(mut c) = world.coordinator(group).await {
            if let Ok(Ok(offsets)) = tokio::time::timeout(
                Duration::from_secs(10),
                c.committed_offsets(group, topic, &all),
            )
            .await
            {
                return offsets.into_iter().collect();
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    crate::history::FinalCommitted::new()
}

#[cfg(test)]
mod tests;
