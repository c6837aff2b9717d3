//! The simulated consumer group: members of one group reading the workload topic with Kafka's
//! classic protocol, as a Java consumer with auto-commit does — join, the leader assigns, sync,
//! fetch from the committed offsets, heartbeat, commit on an interval and when a rebalance
//! begins, rejoin when told. With the range assignor (eager) a member gives up everything it
//! owns before it rejoins; with the cooperative sticky one it keeps what it owns, tells the
//! group so as it joins, and gives up only what the new assignment leaves out (committing it
//! first), then rejoins so that the partitions it gave up can move (`assign`). While producing
//! lasts, members crash (no LeaveGroup; they come back as new members), pause past their
//! session timeout (and go on as zombies until the group tells them otherwise), and leave (and
//! come back), as often as the scenario says, drawn from the seed. Once producing is over, the
//! group reads to the end and commits it, then its members leave. With `async_commits`, each
//! poll's progress is committed without waiting (several commits in flight on the member's
//! coordinator connection while it fetches on another, as librdkafka's asynchronous commits
//! are), and at each commit interval the member reads the group's committed offsets back: an
//! acknowledged commit must be what the group answers. With `protocol = "consumer"` the
//! members use KIP-848's protocol instead, the broker assigning (`consumer`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_backend::EnvRng;
use tokio::time::Instant;

use crate::history::{
    Assigned, Commit, CommitOutcome, CommittedRead, Joined, MemberEvent, Op, Owns, Poll, PollResult,
};
use crate::workload::client::group::{assigned, assignment, subscription};
use crate::workload::client::routing::{leadership_code, Conns};
use crate::workload::client::{Client, ClientError};
use crate::workload::{lock, wait_ready, World, DRAIN_MAX, OFFSET_OUT_OF_RANGE};
use commits::SentCommit;

/// Kafka's answers that tell a member to rejoin.
const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const FENCED_INSTANCE_ID: i16 = 82;

pub mod assign;
mod commits;
mod consumer;

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
    /// The consumer protocol: the workload topic's id (from an assignment), and whether the
    /// member heartbeats at once (to say what it owns after an assignment changed).
    topic_id: Option<uuid::Uuid>,
    beat_soon: bool,
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
            topic_id: None,
            beat_soon: false,
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
                        self.release(&BTreeSet::new());
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
            if Instant::now() >= next_heartbeat || std::mem::take(&mut self.beat_soon) {
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

    /// A JoinGroup or SyncGroup that did not let the member in: an unknown member id is
    /// forgotten (the next join asks for a new one); no answer drops the connection.
    fn not_joined(&mut self, error: Option<ClientError>) -> bool {
        match error {
            Some(ClientError::Kafka(code)) => {
                // No longer a member of the generation it owned its partitions in: they are
                // lost (given to others), as the Java client's onPartitionsLost.
                if matches!(
                    code,
                    UNKNOWN_MEMBER_ID | ILLEGAL_GENERATION | FENCED_INSTANCE_ID
                ) {
                    self.release(&BTreeSet::new());
                }
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

    /// Join (and sync) a new generation: the leader computes the assignment. (With the
    /// consumer protocol: a heartbeat at epoch 0.)
    async fn join(&mut self) -> bool {
        if self.consumer_protocol() {
            return self.beat().await;
        }
        let g = self.g().clone();
        let topic = self.world.scenario.workload.topic.clone();
        let partitions = self.world.scenario.workload.partitions;
        let join_timeout = Duration::from_millis(g.rebalance_timeout_ms + g.session_timeout_ms)
            + self.world.client_timeout();
        let cooperative = assign::cooperative(&g.assignor);
        if !cooperative {
            // Eager: everything is given up before the member joins (onPartitionsRevoked).
            self.release(&BTreeSet::new());
        }
        let owned: Vec<i32> = self.positions.keys().copied().collect();
        let since = if owned.is_empty() {
            -1
        } else {
            self.generation
        };
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
                &g.assignor,
                subscription(std::slice::from_ref(&topic), &owned, since),
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
        self.world.record(Op::Joined(Joined {
            member: self.id,
            member_id: j.member_id.clone(),
            generation: j.generation,
            owned: owned.clone(),
            at_s: self.world.now_s(),
        }));
        let assignments = if j.leader != j.member_id {
            Vec::new()
        } else if cooperative {
            assign::cooperative_sticky(&j.members, partitions)
        } else {
            assign::range(
                &j.members.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(),
                partitions,
            )
        };
        let assignments = assignments
            .into_iter()
            .map(|(m, ps)| (m, assignment(&topic, &ps)))
            .collect();
        let Some(c) = self.client().await else {
            return false;
        };
        let synced = tokio::time::timeout(
            join_timeout,
            c.sync_group(
                &g.group_id,
                j.generation,
                &j.member_id,
                &g.assignor,
                assignments,
            ),
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
        // What the new assignment leaves out is given up, its progress committed first.
        let mine_set: BTreeSet<i32> = mine.iter().copied().collect();
        let revoked = owned.iter().any(|p| !mine_set.contains(p));
        if revoked {
            let t_out = self.world.client_timeout();
            self.commit_sync(t_out, |p| !mine_set.contains(p)).await;
            if self.generation != j.generation {
                return false; // The commit's answer said it is no longer a member.
            }
            self.release(&mine_set);
        }
        self.world.record(Op::Assigned(Assigned {
            member: self.id,
            member_id: j.member_id.clone(),
            generation: j.generation,
            partitions: mine.clone(),
            at_s: self.world.now_s(),
        }));
        // Start what is new from what the group committed (the earliest offset where nothing
        // is); what the member kept goes on from where it was.
        let added: Vec<i32> = mine
            .iter()
            .copied()
            .filter(|p| !self.positions.contains_key(p))
            .collect();
        let Some(committed) = self.read_committed_offsets(added).await else {
            // The new partitions cannot start without the group's offsets: the member gives
            // them up again and rejoins with what it kept.
            self.record_owns();
            self.joined = false;
            return false;
        };
        self.start_from(committed);
        // A member that gave partitions up rejoins at once, so that they can move.
        self.joined = !revoked;
        true
    }

    /// Start partitions newly given to the member from the group's `committed` offsets (the
    /// earliest where nothing is): a new session of polls.
    fn start_from(&mut self, committed: Vec<(i32, i64)>) {
        for (p, o) in committed {
            let o = o.max(0);
            self.positions.insert(p, o);
            self.committed.insert(p, o);
            self.sent.insert(p, o);
        }
        self.session += 1;
    }

    /// Give up every partition not in `keep` (and record what the member still owns).
    fn release(&mut self, keep: &BTreeSet<i32>) {
        let before = self.positions.len();
        self.positions.retain(|p, _| keep.contains(p));
        self.committed.retain(|p, _| keep.contains(p));
        self.sent.retain(|p, _| keep.contains(p));
        if self.positions.len() != before {
            self.record_owns();
        }
    }

    /// Record what the member owns now (its positions' partitions).
    fn record_owns(&self) {
        self.world.record(Op::Owns(Owns {
            member: self.id,
            member_id: self.member_id.clone(),
            partitions: self.positions.keys().copied().collect(),
            at_s: self.world.now_s(),
        }));
    }

    /// The group said something other than "fine" to a heartbeat or commit.
    fn told(&mut self, code: i16) {
        match code {
            0 => {}
            REBALANCE_IN_PROGRESS => self.joined = false,
            // ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID: no longer a member of
            // the generation: its partitions are someone else's; nothing more is committed.
            ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID | FENCED_INSTANCE_ID => {
                self.event(format!(
                    "fenced (error {code}): drops its partitions and rejoins"
                ));
                self.release(&BTreeSet::new());
                if code == UNKNOWN_MEMBER_ID {
                    self.member_id.clear();
                }
                self.generation = -1;
                self.joined = false;
            }
            code if coordinator_moved(code) => self.conn = None,
            _ => {}
        }
    }

    async fn heartbeat(&mut self) {
        if self.consumer_protocol() {
            self.beat().await;
            return;
        }
        let t_out = self.world.client_timeout();
        let g = self.g().clone();
        let (generation, member_id) = (self.generation, self.member_id.clone());
        let Some(c) = self.client().await else {
            return;
        };
        match tokio::time::timeout(t_out, c.heartbeat(&g.group_id, generation, &member_id)).await {
            Ok(Ok(REBALANCE_IN_PROGRESS)) => {
                // Commit, then rejoin (giving everything up first if the protocol is eager).
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
        if self.consumer_protocol() {
            self.leave_by_heartbeat().await;
        } else if let Some(c) = self.client().await {
            let _ = tokio::time::timeout(t_out, c.leave_group(&g.group_id, &member_id)).await;
        }
        self.release(&BTreeSet::new());
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
