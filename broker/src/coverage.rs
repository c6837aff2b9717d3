//! Coverage of rare paths ("sometimes" assertions, as Antithesis calls them): named events the
//! simulator counts per seed, so a sweep can say which paths it exercised and flag the ones no
//! seed reached. [`reached`] compiles to nothing in a normal build; under `--cfg madsim` it
//! counts on the run's thread (each simulated run has a thread of its own).
//!
//! Invariant: an event is declared here once, with what it means; counting never changes
//! behaviour (no branch depends on a count).

/// A rare path worth knowing a sweep went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// A produce waited for a slot of the full append queue (backpressure).
    AppendQueueFull,
    /// A partition's active segment was closed and a new one begun.
    SegmentRolled,
    /// The node crashed while a sync was in flight (counted by the simulator's disk).
    CrashWithSyncInFlight,
    /// A data directory was declared failed and later healed.
    DirFailedAndHealed,
    /// Recovery cut a torn or corrupt tail (not the zeros written ahead of data) off a segment.
    RecoveryCutTornTail,
    /// Retention (time, size or DeleteRecords) deleted a segment.
    RetentionDeletedSegment,
    /// A Fetch long-poll was woken by a commit round and then answered with data.
    LongPollWokenByCommit,
    /// A commit round's sync failed, and a later round's sync succeeded.
    SyncFailedThenSucceeded,
    /// One commit round made several writes to one partition of an internal topic durable (on a
    /// single node the pipeline writes only `__consumer_offsets` among them).
    OffsetCommitsInOneRound,
    /// An idempotent producer's retry was answered from producer state, not written again.
    DuplicateBatchAnswered,
    /// A group moved to a new generation while it had members (a rebalance).
    GroupRebalanced,
    /// A read stopped at a damaged batch and returned the batches before it.
    ReadStoppedAtDamagedBatch,
    /// A node whose data directory failed handed a group's leadership to a caught-up follower.
    LeadershipHandedOver,
    /// A replica cut a divergent uncommitted suffix off its log (Raft replaced it).
    DivergentSuffixCut,
    /// A quiet group woke because its leader's link went silent (or a lost peer came back).
    QuietGroupWokenByLink,
    /// A replica's log started afresh at a leader's snapshot (it lagged behind the leader's
    /// log start, which retention had moved).
    LogResetToSnapshot,
    /// A leader sent a follower entries it read from its log, not from the recent tail in
    /// memory (a lagging follower catching up).
    EntriesReadFromLog,
    /// A leader's gate let several held proposals through together, as one round.
    ProposalsReleasedTogether,
    /// Proposals held at a leader's gate were refused: the replica stopped leading first.
    HeldProposalsRefused,
    /// A leader handed its group back to the preferred replica (connected and caught up).
    LeadershipReturnedToPreferred,
    /// A replica that may have lost what it acknowledged withheld a vote it would have granted.
    VoteWithheld,
    /// A replica that had lost what it acknowledged (a leader's heartbeat named a commit
    /// past its log) caught up and votes again.
    LostReplicaCaughtUp,
    /// A node whose data directory is new found in the cluster metadata that an earlier
    /// start of it had been a member (its disk was replaced or emptied).
    ReplacedDirectoryRecognised,
    /// A replica moved its log start to a committed log-start mark (DeleteRecords, a
    /// checkpoint of `__consumer_offsets`, in a cluster).
    LogStartMarkApplied,
    /// A client's request waited for this cluster node's metadata to catch up with the
    /// cluster's (a broker just started).
    RequestHeldForMetadata,
    /// A replica applied a membership change of its group (a partition's replicas moving).
    MembershipChangeApplied,
    /// A replica took a leader's snapshot that made it a learner (added to a group whose
    /// leader's log no longer held the group's first entries).
    LearnerFromSnapshot,
    /// A joint configuration was left by a leader of a later term than the one that entered
    /// it (the leader changed in the middle of a move).
    JointLeftUnderNewLeader,
    /// A broker removed its replica of a partition that moved away (group, then data).
    MovedReplicaRemoved,
    /// A cancelled move ended: the group is back on its original replicas.
    CancelledMoveEnded,
    /// A leader applied a membership change that removed it, and stepped down.
    RemovedLeaderSteppedDown,
    /// A broker outside the metadata group asked a member to register it, and it proposed it.
    BrokerJoined,
    /// The controller quorum replaced a retired voter (a joint change that removes it).
    RetiredVoterReplaced,
    /// The log cleaner swapped a cleaned copy in for a segment of a compacted partition.
    LogCleaned,
    /// Recovery removed a cleaned copy a cleaning left half done (`<base>.cleaned.tmp`).
    CleanedCopyRecovered,
    /// The cleaner removed a tombstone whose delete horizon had passed.
    TombstoneExpired,
    /// The cleaner of a log that is not a Raft log wrote a run of record-less batches as one.
    EmptyBatchesMerged,
    /// The cleaner emptied a transaction marker whose transaction had no record left, its
    /// delete horizon passed.
    TxnMarkerRemoved,
    /// A transaction coordinator's abort of a transaction past its timeout became durable.
    TxnTimedOut,
    /// The cleaner wrote several consecutive segments as one cleaned segment.
    CleanedSegmentsMerged,
    /// Recovery finished a merge of segments a crash interrupted after its copy became the
    /// swap (`<base>.swap`): the merged segments' files removed, the swap renamed in.
    CleanedSwapFinished,
    /// A replica stored a batch the leader's cleaner had cleaned (fewer records than the
    /// offsets it spans), sent as a Raft entry.
    CleanedEntriesReplicated,
    /// A replicated compacted log's Raft entries now begin above a cleaned prefix.
    RaftStartMoved,
    /// A leader sent a follower behind its Raft entries' start the cleaned prefix, in chunks,
    /// before the snapshot that names it.
    PrefixSent,
    /// A follower reset its log to a leader's snapshot with the cleaned prefix it received.
    PrefixInstalled,
    /// A broker took a snapshot of the cluster metadata and deleted the log below it.
    MetadataSnapshotTaken,
    /// A broker's controller loaded a snapshot of the cluster metadata a leader sent (its log
    /// was behind the leader's log start).
    MetadataSnapshotInstalled,
    /// A leader's catch-up read for a follower failed (a read error, a missed deadline): it
    /// gave back what it held and waits a backoff.
    CatchUpReadFailed,
    /// A catch-up read that had failed was made again and brought the entries.
    CatchUpReadRecovered,
    /// A leader's catch-up read for a follower missed its deadline (the disk stalled): it gave
    /// back what it held and waits a backoff, as a failed read does.
    CatchUpReadStalled,
    /// A failed Raft write carried more than a catch-up read's bytes, and was made again in
    /// pieces: one of them became durable and the next went.
    RetryWrittenInPieces,
    /// An unsettled partition (its first entries kept in the data directory's file of hard
    /// states) had its segment and directory synced and its pieces dropped.
    PartitionSettled,
    /// A start wrote an unsettled partition's pieces into its segment again.
    PiecesRestored,
}

impl Event {
    pub const ALL: [Event; 53] = [
        Event::AppendQueueFull,
        Event::SegmentRolled,
        Event::CrashWithSyncInFlight,
        Event::DirFailedAndHealed,
        Event::RecoveryCutTornTail,
        Event::RetentionDeletedSegment,
        Event::LongPollWokenByCommit,
        Event::SyncFailedThenSucceeded,
        Event::OffsetCommitsInOneRound,
        Event::DuplicateBatchAnswered,
        Event::GroupRebalanced,
        Event::ReadStoppedAtDamagedBatch,
        Event::LeadershipHandedOver,
        Event::DivergentSuffixCut,
        Event::QuietGroupWokenByLink,
        Event::LogResetToSnapshot,
        Event::EntriesReadFromLog,
        Event::ProposalsReleasedTogether,
        Event::HeldProposalsRefused,
        Event::LeadershipReturnedToPreferred,
        Event::VoteWithheld,
        Event::LostReplicaCaughtUp,
        Event::ReplacedDirectoryRecognised,
        Event::LogStartMarkApplied,
        Event::RequestHeldForMetadata,
        Event::MembershipChangeApplied,
        Event::LearnerFromSnapshot,
        Event::JointLeftUnderNewLeader,
        Event::MovedReplicaRemoved,
        Event::CancelledMoveEnded,
        Event::RemovedLeaderSteppedDown,
        Event::BrokerJoined,
        Event::RetiredVoterReplaced,
        Event::LogCleaned,
        Event::CleanedCopyRecovered,
        Event::TombstoneExpired,
        Event::EmptyBatchesMerged,
        Event::TxnMarkerRemoved,
        Event::TxnTimedOut,
        Event::CleanedSegmentsMerged,
        Event::CleanedSwapFinished,
        Event::CleanedEntriesReplicated,
        Event::RaftStartMoved,
        Event::PrefixSent,
        Event::PrefixInstalled,
        Event::MetadataSnapshotTaken,
        Event::MetadataSnapshotInstalled,
        Event::CatchUpReadFailed,
        Event::CatchUpReadRecovered,
        Event::CatchUpReadStalled,
        Event::RetryWrittenInPieces,
        Event::PartitionSettled,
        Event::PiecesRestored,
    ];

    /// The event's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Event::AppendQueueFull => "append-queue-full",
            Event::SegmentRolled => "segment-rolled",
            Event::CrashWithSyncInFlight => "crash-with-sync-in-flight",
            Event::DirFailedAndHealed => "dir-failed-and-healed",
            Event::RecoveryCutTornTail => "recovery-cut-torn-tail",
            Event::RetentionDeletedSegment => "retention-deleted-segment",
            Event::LongPollWokenByCommit => "long-poll-woken-by-commit",
            Event::SyncFailedThenSucceeded => "sync-failed-then-succeeded",
            Event::OffsetCommitsInOneRound => "offset-commits-in-one-round",
            Event::DuplicateBatchAnswered => "duplicate-batch-answered",
            Event::GroupRebalanced => "group-rebalanced",
            Event::ReadStoppedAtDamagedBatch => "read-stopped-at-damaged-batch",
            Event::LeadershipHandedOver => "leadership-handed-over",
            Event::DivergentSuffixCut => "divergent-suffix-cut",
            Event::QuietGroupWokenByLink => "quiet-group-woken-by-link",
            Event::LogResetToSnapshot => "log-reset-to-snapshot",
            Event::EntriesReadFromLog => "entries-read-from-log",
            Event::ProposalsReleasedTogether => "proposals-released-together",
            Event::HeldProposalsRefused => "held-proposals-refused",
            Event::LeadershipReturnedToPreferred => "leadership-returned-to-preferred",
            Event::VoteWithheld => "vote-withheld",
            Event::LostReplicaCaughtUp => "lost-replica-caught-up",
            Event::ReplacedDirectoryRecognised => "replaced-directory-recognised",
            Event::LogStartMarkApplied => "log-start-mark-applied",
            Event::RequestHeldForMetadata => "request-held-for-metadata",
            Event::MembershipChangeApplied => "membership-change-applied",
            Event::LearnerFromSnapshot => "learner-from-snapshot",
            Event::JointLeftUnderNewLeader => "joint-left-under-new-leader",
            Event::MovedReplicaRemoved => "moved-replica-removed",
            Event::CancelledMoveEnded => "cancelled-move-ended",
            Event::RemovedLeaderSteppedDown => "removed-leader-stepped-down",
            Event::BrokerJoined => "broker-joined",
            Event::RetiredVoterReplaced => "retired-voter-replaced",
            Event::LogCleaned => "log-cleaned",
            Event::CleanedCopyRecovered => "cleaned-copy-recovered",
            Event::TombstoneExpired => "tombstone-expired",
            Event::EmptyBatchesMerged => "empty-batches-merged",
            Event::TxnMarkerRemoved => "txn-marker-removed",
            Event::TxnTimedOut => "txn-timed-out",
            Event::CleanedSegmentsMerged => "cleaned-segments-merged",
            Event::CleanedSwapFinished => "cleaned-swap-finished",
            Event::CleanedEntriesReplicated => "cleaned-entries-replicated",
            Event::RaftStartMoved => "raft-start-moved",
            Event::PrefixSent => "prefix-sent",
            Event::PrefixInstalled => "prefix-installed",
            Event::MetadataSnapshotTaken => "metadata-snapshot-taken",
            Event::MetadataSnapshotInstalled => "metadata-snapshot-installed",
            Event::CatchUpReadFailed => "catch-up-read-failed",
            Event::CatchUpReadRecovered => "catch-up-read-recovered",
            Event::CatchUpReadStalled => "catch-up-read-stalled",
            Event::RetryWrittenInPieces => "retry-written-in-pieces",
            Event::PartitionSettled => "partition-settled",
            Event::PiecesRestored => "pieces-restored",
        }
    }
}

/// Count one pass through `event` (nothing in a normal build).
#[inline(always)]
pub fn reached(event: Event) {
    #[cfg(madsim)]
    COUNTS.with(|c| c.borrow_mut()[event as usize] += 1);
    #[cfg(not(madsim))]
    let _ = event;
}

/// Count `event` if `happened` says so; in a normal build `happened` is never called, so the
/// check costs nothing on the paths it watches.
#[inline(always)]
pub fn reached_when(event: Event, happened: impl FnOnce() -> bool) {
    #[cfg(madsim)]
    if happened() {
        reached(event);
    }
    #[cfg(not(madsim))]
    let _ = (event, happened);
}

#[cfg(madsim)]
thread_local! {
    static COUNTS: std::cell::RefCell<[u64; Event::ALL.len()]> =
        const { std::cell::RefCell::new([0; Event::ALL.len()]) };
}

/// This thread's counts, in the order of [`Event::ALL`], reset to zero.
#[cfg(madsim)]
pub fn take() -> Vec<(Event, u64)> {
    COUNTS.with(|c| {
        let counts = std::mem::replace(&mut *c.borrow_mut(), [0; Event::ALL.len()]);
        Event::ALL.iter().copied().zip(counts).collect()
    })
}
