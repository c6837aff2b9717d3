//! Groups added and removed as the controller's records make this node a replica or not.
//!
//! Invariant: a group starts from what its log holds (a recovered Raft log, or none: a new
//! replica), and a removed group answers every waiter before it goes; early messages held
//! for a group are delivered once it exists.

use super::*;

impl Node {
    pub(super) fn add_group(
        &mut self,
        group: GroupId,
        partition: Arc<Partition>,
        voters: Vec<NodeId>,
        campaign: bool,
        made_at: Option<i64>,
        moved_in: bool,
    ) {
        if self.groups.contains_key(&group) {
            return;
        }
        // Every partition's first term is its first leader's (`first_term`); the cluster
        // metadata's group elects its first leader, as it has no controller above it.
        let first_leader = (group != wire::CONTROLLER_GROUP)
            .then(|| voters.first().copied())
            .flatten();
        let wrote_a_term = partition
            .state()
            .replica
            .as_ref()
            .is_some_and(|r| r.hard_state.term > 0);
        let storage = match PartitionStorage::open(
            partition.clone(),
            voters.clone(),
            first_leader,
            self.followers_cache.clone(),
        ) {
            Ok(s) => s,
            Err(why) => {
                tracing::error!(group, %why, "cannot open the group's log for Raft");
                return;
            }
        };
        let empty = raft::Storage::last_index(&storage).unwrap_or(0) == 0;
        let (commit, vote_written, conf_state) = raft::Storage::initial_state(&storage)
            .map(|s| {
                (
                    s.hard_state.commit,
                    (s.hard_state.term, s.hard_state.vote),
                    s.conf_state,
                )
            })
            .unwrap_or_default();
        // The membership changes the recorded membership does not include are handed over
        // again, to be applied (those below the commit were applied before a crash, or not).
        let applied = storage
            .first_unapplied_conf()
            .map_or(commit, |first| commit.min(first - 1));
        let producers = {
            let last = raft::Storage::last_index(&storage).unwrap_or(0);
            let mut st = partition.state_mut();
            let state = st.producers.clone();
            let (undo, undo_from) = st.replica.as_mut().map_or((Vec::new(), last + 1), |r| {
                (std::mem::take(&mut r.recovered_undo), r.undo_from)
            });
            Producers::open(state, last, undo, undo_from)
        };
        let config = raft::Config {
            id: self.id,
            election_tick: self.settings.election_ticks,
            // The timer draws within it, stretched by the disk's writes (`ElectionStretch`).
            max_election_tick: ElectionTimer::max_election_tick(self.settings.election_ticks),
            heartbeat_tick: self.settings.heartbeat_ticks,
            applied,
            max_size_per_msg: self.settings.catch_up.read_bytes_max,
            // Few appends in flight per follower: what a leader proposes while they are out
            // goes in the next one, together (TiKV's setting is of this order too).
            max_inflight_msgs: 4,
            // A partition's followers learn the commit with the next append or heartbeat
            // rather than from an append of its own (their high watermark serves no reader;
            // the leader's does). The cluster metadata's followers are told at once: each
            // broker acts on what it applies (a new partition's replicas start, its preferred
            // leader campaigns), and a heartbeat away is 2 ticks — it made topic creation take
            // 200 ms instead of 50.
            skip_bcast_commit: group != wire::CONTROLLER_GROUP,
            // A Ready's appends to one follower merged into one message.
            batch_append: true,
            check_quorum: true,
            pre_vote: true,
            max_committed_size_per_ready: 64 << 10,
            ..Default::default()
        };
        let logger = self.logger.new(slog::o!("group" => group));
        let mut raw = match RawNode::new(&config, storage, &logger) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(group, error = %e, "cannot start the group's Raft node");
                return;
            }
        };
        // A partition made by a metadata record committed after this node caught up with the
        // cluster metadata holds nothing it could have acknowledged before this start.
        // A replica a move adds votes only once caught up while it holds nothing.
        let caught_up = (!self.fresh
            || made_at
                .zip(self.metadata_caught_up_at)
                .is_some_and(|(made, caught)| made > caught))
            && !(moved_in && empty);
        let mut timer = ElectionTimer::new(self.env.rng.clone(), &config, self.stretch.clone());
        timer.settle(&mut raw);
        // The first leader of a new partition leads its first term at once, without an
        // election: term 1 is its own on every replica (`first_term`). Only while it has
        // written nothing of the group (no term, no entry) and provably never did (a data
        // directory that is new at this start may have lost what it wrote: then it campaigns
        // as Raft has it). What it sends waits for its first write
        // (`Group::first_term_unwritten`): should it crash before that write, nobody has seen
        // an entry of its term 1, and leading term 1 again from an empty log is safe.
        let first_term_start = campaign
            && caught_up
            && empty
            && !wrote_a_term
            && !moved_in
            && first_leader == Some(self.id)
            && conf_state.voters.contains(&self.id)
            && raw.raft.term == 1
            && raw.raft.vote == self.id;
        if first_term_start {
            raw.raft.state = StateRole::Candidate;
            raw.raft.become_leader();
            raw.raft.bcast_append();
            raw.raft.check_quorum = false;
            timer.settle(&mut raw);
            Metrics::inc(&self.metrics.raft_first_terms_led, 1);
        } else if campaign && conf_state.voters.contains(&self.id) {
            let _ = raw.campaign();
            timer.settle(&mut raw);
        } else if made_at.is_some()
            && empty
            && !wrote_a_term
            && first_leader.is_some_and(|l| l != self.id)
        {
            timer.wait_for_first_leader(&mut raw);
        }
        let first_term_quorum_check_at_tick = first_term_start.then(|| {
            let longest = timer.longest_ticks() as u64;
            FirstTermWindow {
                at: self.ticks + longest,
                longest,
                cap: self.ticks + FIRST_TERM_WINDOWS_MAX * longest,
            }
        });
        let view = Arc::new(GroupView {
            group,
            partition: partition.clone(),
            members: Mutex::new("replication.group.members", Members::of(&conf_state)),
            preferred: Mutex::new("replication.group.preferred", voters.first().copied()),
            status: Mutex::new("replication.group.status", Status::default()),
            counted: Default::default(),
        });
        {
            let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
            views.by_group.insert(group, view.clone());
            views
                .by_partition
                .insert((partition.topic.clone(), partition.index), view.clone());
        }
        self.groups.insert(
            group,
            Group {
                raw,
                joint_entered_in: None,
                snapshot_waits: BTreeMap::new(),
                sending: BTreeMap::new(),
                receiving: None,
                admitted: None,
                timer,
                view,
                in_flight: None,
                retry_piece: false,
                next: NextWrite::default(),
                held: VecDeque::new(),
                persisted: 0,
                waiters: VecDeque::new(),
                copies_awaited: false,
                confirms: Vec::new(),
                commit_asks: Vec::new(),
                producers,
                quiet: false,
                idle_ticks: 0,
                published: Status::default(),
                kept_from: u64::MAX,
                next_offset_at: None,
                vote_written,
                first_term_unwritten: first_term_start,
                first_term_quorum_check_at_tick,
                gate: Gate::default(),
                preferred_ready: 0,
                handing_back: false,
                recovery: Recovery {
                    withholding: (self.joined || moved_in) && !caught_up,
                    caught_up,
                    ..Recovery::default()
                },
            },
        );
        // The cluster metadata is read from what this replica knows committed at once (Raft's
        // commit, recorded; what raft-rs counts applied and hands over no more): a broker that
        // restarts finds its peers' addresses there, registered as they joined, before any
        // leader is elected — the quorum may be brokers the configuration does not name. A
        // partition's replica learns its high watermark from its leader, as before.
        if group == wire::CONTROLLER_GROUP && applied > 0 {
            if let Some(g) = self.groups.get_mut(&group) {
                commit::apply(g, applied, &self.store);
            }
        }
        self.active.insert(group);
        self.dirty.insert(group);
        tracing::debug!(node = self.id, group, topic = %partition.topic, partition = partition.index, "replica started");
        self.deliver_early(group);
    }

    pub(super) fn remove_group(&mut self, group: GroupId) {
        let Some(mut g) = self.groups.remove(&group) else {
            return;
        };
        if g.view.counted.load(Ordering::Relaxed) {
            let s = g.view.status();
            let m = &self.metrics;
            let flag = |on: bool| i64::from(on);
            m.raft_leaders.dec_by(flag(s.is_leader));
            m.raft_followers.dec_by(flag(!s.is_leader));
            m.raft_under_replicated.dec_by(flag(s.under_replicated));
            m.raft_quiet.dec_by(flag(s.quiet));
        }
        self.active.remove(&group);
        self.dirty.remove(&group);
        for w in g.waiters.drain(..) {
            let _ = w.reply.send(Err(ReplicaError::Unknown));
        }
        for p in g.gate.take_all() {
            if let Some(a) = p.answer {
                let _ = a.send(Err(ReplicaError::Unknown));
            }
        }
        let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
        views.by_group.remove(&group);
        let key = (g.view.partition.topic.clone(), g.view.partition.index);
        if views
            .by_partition
            .get(&key)
            .is_some_and(|v| v.group == group)
        {
            views.by_partition.remove(&key);
        }
    }
}
