//! The node's multi-raft loop (docs/design.md, "many groups driven as one"): one task drives every
//! Raft group this node is a replica of — the cluster metadata's and each partition's.
//!
//! What it does, and why:
//! - **one task, all groups**: inbound messages, proposals, ticks, finished writes and reads
//!   all arrive at one `select!`; the groups they touch are marked, then each marked group's
//!   `Ready` is handled, then the transport is flushed once — every group's messages to a peer
//!   leave in one frame.
//! - **raft-rs's async-ready API**: a leader sends its appends before its own write (raft
//!   thesis 10.2.1); entries and hard state go to the commit pipeline as one [`RaftWrite`] per
//!   group at a time (what later Readies bring waits and goes as the next one: group commit);
//!   messages that depend on persistence (`persisted_messages`: votes, append acknowledgements)
//!   wait until every Ready up to theirs is durable. No task ever waits on the disk inside the
//!   loop: a write is a future the loop polls, at the end of every turn too ([`underway`]),
//!   and a turn hears every write, read and chunk that finished, not one.
//! - **quiet idle groups**: a leader whose group has nothing to do for a while tells its
//!   followers ([`wire::quiesce`]) and the group stops ticking everywhere — no heartbeats, no
//!   elections, no disk work. It wakes on a proposal, on any message for it, or when the
//!   connection to its leader goes down (the peer's silence), so a dead leader is still
//!   replaced.
//! - **acknowledgements**: `acks=1` is answered once the leader's own write of the batch is
//!   durable, `acks=all` once Raft committed it (a majority has it durably) and, where the
//!   topic's `min.insync.replicas` asks for more copies than a majority, once that many
//!   replicas (the leader's own write counted) have it durably; with fewer replicas in sync
//!   (this one and the voters connected to it) it is refused before it is written
//!   (NOT_ENOUGH_REPLICAS), or, when they drop out while it waits, answered
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND (written, so indefinite), as Kafka does. A leader that loses
//!   its leadership answers what it had not answered with NOT_LEADER_OR_FOLLOWER (the write may
//!   still commit under the next leader: the failure is indefinite, as in Kafka).
//! - **the high watermark** is the end offset of the committed entry; it moves only forward,
//!   and a new leader serves reads only once an entry of its own term is committed (so a
//!   consumer never sees it go back).
//!
//! Architecture invariant: only this loop writes a replicated partition's log, through the
//! commit pipeline; nothing here reads the system clock, draws from `thread_rng` or blocks.
//!
//! The loop and its mailbox are here; each concern has its own file: [`handle`] (what the rest
//! of the broker calls: commands into the mailbox), [`groups`] (a group added or removed),
//! [`propose`] (proposals and the gate), [`acks`] (answering producers), [`delivery`] (messages
//! from peers, early messages, what is withheld), [`ticks`] (ticks, health, links, status),
//! [`ready`] (Readies and log writes), [`reads`] (catch-up reads for followers),
//! [`underway`] (the work started away from the loop) and [`leadership`] (transfer,
//! hand-over, confirmation, the preferred leader).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::sync::{Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;

use io_backend::Env;
use raft::eraftpb::{Entry, Message, MessageType};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot, watch};

use super::catch_up::{self, CatchUp, CatchUpSettings, Started, Verdict};
use super::entries::{self, read_entries, snapshot_conf, snapshot_offset, snapshot_state};
use super::gate::Gate;
use super::idempotence::{Checked, Producers};
use super::logger::raft_logger;
use super::storage::PartitionStorage;
use super::transport::{Inbox, NodeId, Transport};
use super::wire::{self, GroupId, Inbound};
use super::ElectionTimer;
use crate::memory::MemoryBudget;
use crate::metrics::Metrics;
use crate::storage::log::Partition;
use crate::storage::{AppendError, Appended, RaftReset, RaftWrite, RaftWritten, Store};
use crate::throttle::LogThrottle;
use std::sync::atomic::Ordering;
use underway::Underway;

mod acks;
mod commit;
mod delivery;
mod feed;
mod groups;
mod handle;
mod leadership;
mod membership;
mod prefix;
mod propose;
mod reads;
mod ready;
mod ticks;
mod underway;
use acks::{answer, answer_copies, answer_durable, in_sync, majority};
use delivery::{persist_held, release_held, send, withheld};
pub use feed::StatusFeed;
use handle::Views;
pub use handle::{Acknowledgement, GroupView, RaftSettings, ReplicaError, Replication, Status};
use leadership::{answer_commit_asks, hand_back, rebalance, HAND_BACKS_MAX};
pub use membership::{Members, MembershipApplied, Progress};
use ticks::update_status;

enum Command {
    Propose {
        group: GroupId,
        proposal: Proposal,
        reply: oneshot::Sender<Result<Acknowledgement, ReplicaError>>,
    },
    AddGroup {
        group: GroupId,
        partition: Arc<Partition>,
        voters: Vec<NodeId>,
        campaign: bool,
        made_at: Option<i64>,
        /// Added by a move of the partition's replicas (see [`Replication::add_moved_group`]).
        moved_in: bool,
    },
    RemoveGroup {
        group: GroupId,
    },
    Confirm {
        group: GroupId,
        reply: oneshot::Sender<bool>,
    },
    AskCommit {
        group: GroupId,
        reply: oneshot::Sender<Option<i64>>,
    },
    Transfer {
        group: GroupId,
        to: NodeId,
    },
    ChangeMembers {
        group: GroupId,
        change: raft::eraftpb::ConfChangeV2,
        reply: oneshot::Sender<Result<(), ReplicaError>>,
    },
    Progress {
        group: GroupId,
        reply: oneshot::Sender<Option<membership::Progress>>,
    },
    HandOver,
}

type Answer = oneshot::Sender<Result<Appended, ReplicaError>>;

/// A proposal waiting for its acknowledgement.
struct Waiter {
    first_index: u64,
    last_index: u64,
    term: u64,
    /// 1: answered once durable here; -1: once committed.
    acks: i16,
    /// Replicas that must hold it durably before an `acks=-1` answer, beyond the commit's
    /// majority (`min.insync.replicas`; at most a majority: the commit is enough).
    min_insync: usize,
    /// A retry of batches already in the log at these offsets `[base, end)`: answered with
    /// them once the high watermark passes `end` (no entry of its own).
    duplicate: Option<(i64, i64)>,
    /// A refusal of an idempotent batch (its sequence or producer unknown to this log) held
    /// until a read index (this read's context) confirms that this node still led in `term`:
    /// a leader cut off, or just back from a pause, holds a stale producer state, and only
    /// the cluster's leader may tell a producer that its sequence is out of order. Losing the
    /// leadership first answers NOT_LEADER_OR_FOLLOWER, and the producer retries elsewhere.
    refusal: Option<(u64, crate::producer_state::ProducerError)>,
    reply: Answer,
}

impl Waiter {
    /// A waiter of `term` with nothing in the log yet (its indexes are set once proposed).
    fn new(term: u64, acks: i16, reply: Answer) -> Self {
        Waiter {
            first_index: 0,
            last_index: 0,
            term,
            acks,
            min_insync: 0,
            duplicate: None,
            refusal: None,
            reply,
        }
    }

    /// Held until the read index `ctx` confirms the leadership, then refused with `error`.
    fn refused(self, ctx: u64, error: crate::producer_state::ProducerError) -> Self {
        Waiter {
            refusal: Some((ctx, error)),
            ..self
        }
    }
}

/// Refusals waiting for their read index in one group, at most (past it they are answered at
/// once).
const REFUSALS_MAX: usize = 256;

/// What the next write of a group will carry (Readies gather here while one is in flight).
#[derive(Default)]
struct NextWrite {
    reset: Option<RaftReset>,
    truncate_from: Option<u64>,
    producers_at_cut: Option<crate::producer_state::ProducerStates>,
    entries: Vec<crate::storage::RaftEntry>,
    hard_state: Option<crate::storage::log::replica::HardStateRecord>,
    /// The membership after the changes applied, to record.
    conf: Option<crate::storage::log::conf::ConfRecord>,
    /// The last Ready it covers.
    number: u64,
}

/// How long a first term's leader leads without raft-rs's quorum check.
#[derive(Debug, Clone, Copy)]
struct FirstTermWindow {
    /// The check is back at this tick, unless no other replica has answered yet.
    at: u64,
    /// The other replicas' patience for a first leader, in ticks: the window is moved on by
    /// it while none of them has answered (their brokers are still making the topic's
    /// partitions: on a disk of 30 syncs a second, a topic of 1,000 partitions took 35 s, and
    /// leaders that had heard nobody stepped down by the hundred before their followers
    /// started).
    longest: u64,
    /// Never later than this tick: a leader that hears nobody for this long steps down.
    cap: u64,
}

/// The most windows of the other replicas' patience a first term's leader waits for any of
/// them to answer.
const FIRST_TERM_WINDOWS_MAX: u64 = 20;

impl NextWrite {
    fn is_empty(&self) -> bool {
        self.reset.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.conf.is_none()
    }
}

struct Group {
    raw: RawNode<PartitionStorage>,
    /// The term of the entry that entered the joint configuration this replica applied last
    /// (none when not joint, or not known since a start).
    joint_entered_in: Option<u64>,
    /// As leader: the ticks each replica sent a snapshot has not answered it.
    snapshot_waits: BTreeMap<NodeId, usize>,
    /// As leader: the cleaned prefixes being sent to followers behind the Raft entries'
    /// start ([`prefix`]).
    sending: BTreeMap<NodeId, prefix::Sending>,
    /// As follower: the cleaned prefix being received from the leader.
    receiving: Option<prefix::Receiving>,
    /// As follower: a whole prefix whose snapshot was stepped, until the reset takes it.
    admitted: Option<prefix::Receiving>,
    timer: ElectionTimer,
    view: Arc<GroupView>,
    /// The Ready number of the write in flight.
    in_flight: Option<u64>,
    /// The write in flight is a piece of a retry ([`Node::retry_write`]): once it is durable
    /// the next piece goes, and only the last one makes the Readies durable.
    retry_piece: bool,
    next: NextWrite,
    /// Readies whose persistence is not yet confirmed, with the messages that wait for it.
    held: VecDeque<(u64, Vec<Message>)>,
    /// Every Ready up to this one is durable.
    persisted: u64,
    waiters: VecDeque<Waiter>,
    /// Some waiter needs more durable copies than the commit's majority
    /// ([`answer_copies`] looks at every Ready until none does).
    copies_awaited: bool,
    /// Leadership confirmations asked for ([`Replication::confirm_leading`]): the read index's
    /// context, the term asked in, where to answer. At most [`CONFIRMS_MAX`]; dropped (answered
    /// `false`) when the replica stops leading in that term.
    confirms: Vec<(u64, u64, oneshot::Sender<bool>)>,
    /// Asks for the group's commit as its leader has it ([`Replication::leader_commit`]), at
    /// most [`COMMIT_ASKS_MAX`]; each answered once this replica has applied that far.
    commit_asks: Vec<CommitAsk>,
    /// The idempotent producers as of the end of the log.
    producers: Producers,
    quiet: bool,
    idle_ticks: usize,
    /// The status last published in the view (read here without its lock, per Ready).
    published: Status,
    /// The floor last given to the storage's cache (`keep_for_followers`).
    kept_from: u64,
    /// As leader in a term, the offset after its log's last entry: (term, last index, next
    /// offset). Counted from the log, it costs a pass over the entries not durable yet at
    /// every proposal: under a stream of proposals each cost more than the last.
    next_offset_at: Option<(u64, u64, i64)>,
    /// The term and vote of the hard state last handed to a write: the hard state is written
    /// when they change (raft-rs's `must_sync` also asks for it whenever a Ready with entries
    /// moves the commit, which would cost a small file's syncs and rename per round; the
    /// commit needs no durability, Raft learns it again).
    vote_written: (u64, u64),
    /// Leading the first term without an election, nothing written yet: every message waits
    /// for the first write, so no replica sees an entry of the term that this leader could
    /// forget in a crash (and lead the term again with other entries).
    first_term_unwritten: bool,
    /// Leading the first term without an election, until this tick (or until an entry is
    /// committed, when a quorum has surely heard it): raft-rs's quorum check is off meanwhile.
    /// The other replicas may start the group seconds later (each broker makes a new topic's
    /// partitions before it starts their groups: 2 s apart for 1,000 partitions on a busy
    /// host), and a leader that had not heard from them within an election timeout stepped
    /// down, so that 885 of 1,000 new partitions went to elections. The bound matches the
    /// patience of those replicas (`ElectionTimer::wait_for_first_leader`), counted again
    /// while no other replica has answered at all ([`FirstTermWindow`]).
    first_term_quorum_check_at_tick: Option<FirstTermWindow>,
    /// Proposals waiting for an earlier round of this leader's to commit ([`super::gate`]).
    gate: Gate<HeldProposal>,
    /// Ticks this leader has seen its preferred replica (another node) connected and caught up
    /// in a row; at `rebalance_ticks` the leadership goes back to it.
    preferred_ready: usize,
    /// This leader is handing its leadership back to its preferred replica ([`hand_back`]);
    /// cleared once no transfer is under way.
    handing_back: bool,
    recovery: Recovery,
}

/// Whether a replica may lack entries it once acknowledged, and what it must hold before it
/// votes again. Raft's safety rests on a replica never forgetting what it acknowledged or
/// whom it voted for: one whose data directory was emptied (a replaced disk) or restored from
/// an older copy could otherwise vote a candidate without the committed entries it had helped
/// commit into leadership, and those entries would be lost. Such a replica withholds its vote
/// grants (the candidate sees no answer, as if it were lost) until it holds everything a
/// leader of the group named as committed in an append; it follows, replicates and
/// acknowledges meanwhile, so it catches up as any follower does. One candidate it may vote
/// for: the last leader it heard, whose log holds everything committed before its leadership
/// (what this replica forgot included) — without that, a leader that lost its quorum while
/// this replica was away could never be elected again with it. Known when the node's data
/// directory is new while a peer holds Raft data (the peer's transport `STATUS`, which comes
/// before its messages), or when a leader's heartbeat names a commit past this replica's log
/// (raft-rs would panic on it: it holds its followers to what they acknowledged).
#[derive(Debug, Default)]
struct Recovery {
    /// Vote grants are withheld.
    withholding: bool,
    /// The replica has held everything a leader named as committed in an append (or never
    /// had reason to doubt it).
    caught_up: bool,
    /// What it must hold before it votes again (see `step`).
    leader_commit: u64,
    /// An append from a leader has named its commit (a heartbeat names only what the leader
    /// thinks this replica has).
    heard_append: bool,
    /// The last leader heard.
    leader: Option<NodeId>,
    /// A leader's heartbeat proved the loss: it named a commit past this replica's log.
    lost: bool,
}

/// A proposal the gate holds: its batches, acks and where it is answered (none for acks=0).
struct HeldProposal {
    proposal: Proposal,
    answer: Option<Answer>,
}

/// What is proposed to a group, and how.
pub(super) struct Proposal {
    pub(super) batches: Vec<Bytes>,
    pub(super) acks: i16,
    /// Replicas that must hold an `acks=-1` proposal durably (`min.insync.replicas`).
    pub(super) min_insync: usize,
    /// Through the leader, wherever it is (raft-rs forwards it; nothing answers).
    pub(super) forward: bool,
    /// The partition's token of the transaction coordinator's confirmation that a producer's
    /// first transactional batch here is in its transaction (`PartitionState::txn_guard`).
    pub(super) txn_guard: Option<u64>,
}

type WriteDone = (GroupId, u64, Result<RaftWritten, AppendError>);

/// A catch-up read's end: the read, what it brought (entries and their bytes), and the memory
/// it holds until raft-rs has the entries.
type FetchDone = (
    Started,
    Result<(Vec<Entry>, u64), crate::storage::StorageError>,
    crate::memory::Reservation,
);

struct Node {
    id: NodeId,
    env: Env,
    store: Arc<Store>,
    transport: Transport,
    inbox: Inbox,
    settings: RaftSettings,
    commands: mpsc::Receiver<Command>,
    groups: HashMap<GroupId, Group>,
    /// Groups that tick (not quiet).
    active: BTreeSet<GroupId>,
    /// Groups touched since their Ready was last handled.
    dirty: BTreeSet<GroupId>,
    writes: Underway<WriteDone>,
    fetches: Underway<FetchDone>,
    /// Chunks of cleaned prefixes read (as leader) or written (as follower) ([`prefix`]).
    prefix_io: Underway<prefix::PrefixIo>,
    /// Chunk reads in flight, at most [`prefix::READS_MAX`].
    prefix_reads: usize,
    /// Groups whose leader here sends a cleaned prefix to some follower.
    prefix_groups: BTreeSet<GroupId>,
    views: Arc<RwLock<Views>>,
    changed: feed::StatusChanges,
    links: watch::Receiver<u64>,
    link_state: HashMap<NodeId, bool>,
    /// The data directory's health (`true`: failed).
    health: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    /// What this node's election timeouts are stretched by: its Raft writes' pace.
    stretch: super::ElectionStretch,
    /// Raft steps (messages taken, groups ticked, Readies handled) in this turn of the loop.
    work: u64,
    /// Groups seen without a leader, since which tick ([`ticks::watch_leaderless`]).
    leaderless_since: HashMap<GroupId, u64>,
    /// When the leaderless groups were last reported in the log.
    leaderless_warned_at_tick: Option<u64>,
    /// The data directory failed: this node has stepped down everywhere and takes no part in
    /// Raft (no messages in or out, no ticks, no votes) until it heals — to the others it is
    /// as if it had crashed, so they elect leaders among themselves.
    stepped_down: bool,
    /// Read indexes asked so far (each one's context).
    reads: u64,
    /// Turns of the loop so far: the proposals of one turn make one round (see the gate).
    turn: u64,
    /// Ticks so far, and the tick at which each peer was last heard from.
    ticks: u64,
    heard: HashMap<NodeId, u64>,
    /// Raft messages for groups not (yet) started here, held until the controller's record
    /// that makes this node a replica is applied: a new partition's preferred leader campaigns
    /// at once, and its vote requests often arrive first. Bounded, and dropped once older than
    /// an election timeout (the sender retries by then).
    early: HashMap<GroupId, Vec<(tokio::time::Instant, Message)>>,
    logger: slog::Logger,
    /// The data directory was new at this start: whatever this node acknowledged before (if it
    /// ever ran) is gone — see [`Recovery`].
    fresh: bool,
    /// Fresh, and a peer that holds Raft data has been heard: this node joins an existing
    /// cluster, and its groups withhold their votes until they have caught up.
    joined: bool,
    /// What the transport tells peers: this node holds Raft data — its directory is not new,
    /// it has written entries, or a leader told it of committed ones (a vote alone is not
    /// data: at a first start every node votes before anything is written).
    holds_data: bool,
    /// Fresh: the metadata log's offset after what its leader had committed when this node's
    /// replica of it first caught up — partitions made by later records are new.
    metadata_caught_up_at: Option<i64>,
    /// Reads of old entries for followers, within their budgets ([`catch_up`]).
    catch_up: CatchUp,
    /// Durable entries kept in memory for connected followers, all groups together.
    followers_cache: Arc<super::storage::FollowersCache>,
    /// The broker's memory budget: a catch-up read takes its bytes before it is made.
    memory: Arc<MemoryBudget>,
    /// Failed catch-up reads' log lines.
    read_warnings: LogThrottle,
    /// Calls between brokers: what arrives for them is handed over here.
    calls: Arc<crate::replication::calls::Calls>,
}

/// Groups with early messages held, at most; and messages held per group.
const EARLY_GROUPS_MAX: usize = 1024;

const EARLY_PER_GROUP_MAX: usize = 16;

/// Leadership confirmations waiting per group, at most.
const CONFIRMS_MAX: usize = 256;

/// Asks for a group's commit waiting per group, at most.
const COMMIT_ASKS_MAX: usize = 16;

/// An ask for the group's commit: the read index's context, the leader's commit once it
/// answered, and where to answer.
struct CommitAsk {
    ctx: u64,
    index: Option<u64>,
    reply: oneshot::Sender<Option<i64>>,
}

/// Inputs handled before the Readies of what they touched are: a burst is taken together.
const BURST_MAX: usize = 256;

/// Passes over the groups' Readies per turn of the loop, at most.
const READY_PASSES: usize = 4;

impl Node {
    async fn run(mut self) {
        let clock = self.env.clock.clone();
        let mut next_tick = clock.now() + self.settings.tick;
        loop {
            let wait = next_tick.saturating_duration_since(clock.now());
            let ticking = !self.active.is_empty();
            let catch_up_wait = self
                .catch_up
                .wake_at(clock.now())
                .map(|at| at.saturating_duration_since(clock.now()));
            self.turn += 1;
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                delivery = self.inbox.recv() => match delivery {
                    Some(d) => self.deliver(d.from, d.messages),
                    None => break,
                },
                Some(done) = self.writes.next() => self.writes.keep(done),
                Some(done) = self.fetches.next() => self.fetches.keep(done),
                Some(done) = self.prefix_io.next() => self.prefix_io.keep(done),
                // Work found finished at the end of the last turn: below.
                _ = std::future::ready(()), if self.any_finished() => {}
                changed = self.links.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.links_changed();
                }
                changed = self.health.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let failed = *self.health.borrow_and_update();
                    self.health_changed(failed).await;
                }
                // Only wakes the loop: the tick itself is taken below.
                _ = clock.sleep(wait), if ticking && !self.stepped_down => {}
                // A catch-up read may start (a backoff ended, the rate allows more): below.
                _ = clock.sleep(catch_up_wait.unwrap_or_default()), if catch_up_wait.is_some() => {}
            }
            self.take_finished().await;
            // A tick that is due is taken whichever branch woke the loop. Were it a branch of
            // its own, a timer made anew at every turn would lose every race against a branch
            // that is always ready (a busy inbox): a busy node never ticked, its leaders sent
            // no heartbeats for seconds and their followers deposed them.
            if ticking && !self.stepped_down && clock.now() >= next_tick {
                self.take_inbox();
                self.tick().await;
                next_tick = clock.now() + self.settings.tick;
            }
            if !ticking {
                next_tick = clock.now() + self.settings.tick;
            }
            // Whatever else is there already joins this round.
            for _ in 0..BURST_MAX {
                match self.commands.try_recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(_) => break,
                }
            }
            // Advancing a Ready may make another (a leader's commit after its own write):
            // handled now, a bounded number of passes.
            for _ in 0..READY_PASSES {
                if self.dirty.is_empty() {
                    break;
                }
                self.handle_readies().await;
            }
            self.start_reads();
            self.drive_prefixes();
            // What this turn started begins now (a write is queued, a read admitted).
            self.writes.poll_now();
            self.fetches.poll_now();
            self.prefix_io.poll_now();
            self.transport.flush();
            // What this turn did (messages, ticks, Readies) costs processor time: under
            // simulation an overloaded node's loop falls behind here.
            crate::cpu_work!("raft", std::mem::take(&mut self.work));
            let stats = self.transport.stats();
            // The transport counts; the counters mirror it.
            let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            self.metrics
                .raft_messages_sent
                .inner()
                .store(load(&stats.messages_sent), Ordering::Relaxed);
            self.metrics
                .raft_messages_received
                .inner()
                .store(load(&stats.messages_received), Ordering::Relaxed);
            self.metrics
                .raft_messages_dropped
                .inner()
                .store(load(&stats.messages_dropped), Ordering::Relaxed);
            Metrics::peak(
                &self.metrics.raft_queue_bytes_peak,
                load(&stats.queue_bytes_peak) as i64,
            );
        }
        tracing::info!(node = self.id, "replication loop stopped");
    }

    /// What peers sent before a tick is heard before it: a node behind on its processors or
    /// its disk would otherwise count election timeouts while its leaders' heartbeats wait in
    /// its inbox. A node that is behind ticks later instead (ticks never catch up), which
    /// stretches its timeouts by its lag. At most what the inbox held when called.
    fn take_inbox(&mut self) {
        for _ in 0..self.inbox.len() {
            let Some(d) = self.inbox.try_recv() else {
                break;
            };
            self.deliver(d.from, d.messages);
        }
    }

    fn any_finished(&self) -> bool {
        self.writes.has_finished() || self.fetches.has_finished() || self.prefix_io.has_finished()
    }

    /// Everything started that finished is heard, not one per turn (`underway`).
    async fn take_finished(&mut self) {
        for done in self.writes.take() {
            self.write_done(done).await;
        }
        for done in self.fetches.take() {
            self.fetch_done(done);
        }
        for done in self.prefix_io.take() {
            self.prefix_io_done(done);
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Propose {
                group,
                proposal,
                reply,
            } => {
                if !proposal.forward && !self.stepped_down {
                    if let Some(g) = self.groups.get_mut(&group) {
                        let raft = &g.raw.raft;
                        if raft.state == StateRole::Leader
                            && !proposal.batches.is_empty()
                            && g.gate.must_wait(raft.raft_log.committed)
                        {
                            // The sender has its acknowledgement at once (a request handler
                            // or the group coordinator goes on); the answer comes through it.
                            let answer = if proposal.acks == 0 {
                                let _ = reply.send(Ok(None));
                                None
                            } else {
                                let (tx, rx) = oneshot::channel();
                                let _ = reply.send(Ok(Some(rx)));
                                Some(tx)
                            };
                            let full = g.gate.is_full();
                            g.gate.hold(HeldProposal { proposal, answer });
                            if full {
                                let held = g.gate.take_all();
                                self.propose_held(group, held);
                            }
                            return;
                        }
                    }
                }
                let r = self.propose(group, proposal);
                let _ = reply.send(r);
                self.note_round(group);
            }
            Command::AddGroup {
                group,
                partition,
                voters,
                campaign,
                made_at,
                moved_in,
            } => self.add_group(group, partition, voters, campaign, made_at, moved_in),
            Command::RemoveGroup { group } => self.remove_group(group),
            Command::Confirm { group, reply } => self.confirm(group, reply),
            Command::AskCommit { group, reply } => self.ask_commit(group, reply),
            Command::Transfer { group, to } => self.transfer(group, to),
            Command::ChangeMembers {
                group,
                change,
                reply,
            } => {
                let _ = reply.send(self.change_members(group, change));
            }
            Command::Progress { group, reply } => {
                let _ = reply.send(self.progress(group));
            }
            Command::HandOver => self.hand_over(),
        }
    }
}

/// A quiet group ticks again. (Its idleness is judged at each tick: heartbeats and their
/// answers do not count against it.)
fn wake(g: &mut Group, active: &mut BTreeSet<GroupId>, group: GroupId) {
    if g.quiet {
        g.quiet = false;
        g.idle_ticks = 0;
        active.insert(group);
    }
}
