//! The coordinator's log: groups and committed offsets written as records to
//! `__consumer_offsets` through the store (created on first use, as Kafka does), the answers
//! that wait for those writes, and the load of every partition this broker leads at start and
//! when it takes one over.
//!
//! Invariant: a response that depends on a write is sent only once the write is durable; what
//! is loaded is applied in log order, so a group's state is the last record's.

use super::*;

/// A write to the offsets topic under way: through the local pipeline, or (in a cluster) the
/// partition's Raft group.
pub(super) enum Appending {
    Local(oneshot::Receiver<Result<Appended, AppendError>>),
    Replicated(oneshot::Receiver<Result<Appended, ReplicaError>>),
}

impl Appending {
    /// Once durable (committed, in a cluster): where the batch starts; or the code to answer.
    pub(super) async fn outcome(self) -> Result<Appended, i16> {
        match self {
            Appending::Local(rx) => match rx.await {
                Ok(Ok(a)) => Ok(a),
                Ok(Err(e)) => Err(write_error(&e)),
                Err(_) => Err(GONE),
            },
            Appending::Replicated(rx) => match rx.await {
                Ok(Ok(a)) => Ok(a),
                Ok(Err(ReplicaError::NotLeader { .. } | ReplicaError::Unknown)) => Err(ELSEWHERE),
                Ok(Err(_)) | Err(_) => Err(GONE),
            },
        }
    }
}

/// What a write is for, to finish when it is durable.
pub(super) enum Pending {
    /// The leader's assignment of `generation`: then the members get theirs.
    Assignment { group: String, generation: i32 },
    /// Offsets: then the cache takes them and the committer gets its answer.
    Offsets {
        group: String,
        offsets: Vec<(String, i32, OffsetValue)>,
        reply: oneshot::Sender<Result<Vec<i16>, i16>>,
        /// Per offset asked: NONE for those written, an error for those refused.
        codes: Vec<i16>,
    },
    /// Tombstones of deleted groups or offsets (the in-memory state already changed).
    Tombstones(Option<(oneshot::Sender<Vec<i16>>, Vec<i16>)>),
    /// Tombstones of a group's deleted offsets, answered once durable.
    DeletedOffsets(oneshot::Sender<Result<Vec<i16>, i16>>, Vec<i16>),
    /// A group's metadata (an empty group after its last member left): nothing waits.
    GroupState,
    /// A consumer-protocol heartbeat's records: then its answer.
    Consumer(
        oneshot::Sender<ConsumerHeartbeatResponse>,
        ConsumerHeartbeatResponse,
    ),
    /// A transaction's offsets: then they are pending until its marker, and the committer
    /// gets its answer.
    TxnOffsets {
        group: String,
        producer_id: i64,
        offsets: Vec<(String, i32, OffsetValue)>,
        reply: oneshot::Sender<Result<Vec<i16>, i16>>,
        codes: Vec<i16>,
    },
}

/// A write to the offsets topic not yet applied.
pub(super) struct InFlight {
    pub(super) id: u64,
    pub(super) pending: Pending,
    /// Set when the write finished, until the writes before it have too.
    pub(super) outcome: Option<Result<(), i16>>,
}

impl Actor {
    /// Append `entries` as one batch to partition `index` of the offsets topic.
    pub(super) async fn append(&self, index: i32, entries: &[Entry]) -> Result<Appending, i16> {
        self.append_for(index, entries, None).await
    }

    /// [`Actor::append`], transactional for the producer when `for_producer`.
    pub(super) async fn append_for(
        &self,
        index: i32,
        entries: &[Entry],
        for_producer: Option<crate::schema::WrittenFor>,
    ) -> Result<Appending, i16> {
        let topic = self.offsets_topic().await?;
        let partition = topic.partition(index).cloned().ok_or(GONE)?;
        let payload = encode_batch(entries, self.clock.wall_ms(), for_producer);
        let headers = batch::validate_all(&payload, usize::MAX).map_err(|_| GONE)?;
        if let Some(cluster) = &self.cluster {
            let view = cluster
                .replication()
                .replica(OFFSETS_TOPIC, index)
                .ok_or(ELSEWHERE)?;
            return match cluster
                .replication()
                .propose(view.group, vec![payload], -1)
                .await
            {
                Ok(Some(rx)) => Ok(Appending::Replicated(rx)),
                Ok(None) => Err(GONE),
                Err(ReplicaError::NotLeader { .. } | ReplicaError::Unknown) => Err(ELSEWHERE),
                Err(_) => Err(GONE),
            };
        }
        match self
            .store
            .append(partition, payload, headers, true, None)
            .await
        {
            Ok(Some(rx)) => Ok(Appending::Local(rx)),
            Ok(None) => Err(GONE),
            Err(e) => Err(write_error(&AppendError::Storage(e))),
        }
    }

    /// The offsets topic, created on first use (as Kafka does).
    pub(super) async fn offsets_topic(&self) -> Result<Arc<crate::storage::catalog::Topic>, i16> {
        if let Some(t) = self.store.topic(OFFSETS_TOPIC) {
            return Ok(t);
        }
        // Committed offsets and group metadata are kept until they are replaced.
        let config = offsets_topic_overrides(&self.config);
        if let Some(cluster) = &self.cluster {
            return ensure_offsets_topic(
                cluster,
                self.config.offsets_partitions,
                self.config.offsets_replication,
                config,
            )
            .await
            .and_then(|()| self.store.topic(OFFSETS_TOPIC).ok_or(GONE));
        }
        match self
            .store
            .create_topic(OFFSETS_TOPIC, self.config.offsets_partitions, config)
            .await
        {
            Ok(t) => {
                tracing::info!(
                    partitions = self.config.offsets_partitions,
                    "created {OFFSETS_TOPIC}"
                );
                Ok(t)
            }
            Err(TopicError::Exists) => self.store.topic(OFFSETS_TOPIC).ok_or(GONE),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC}");
                Err(GONE)
            }
        }
    }

    /// Write `entries` to the group's partition of the offsets topic; `pending` finishes when
    /// the write is durable. Errors (the write was refused at once) come back as a code.
    pub(super) async fn write(&mut self, group: &str, entries: Vec<Entry>, pending: Pending) {
        self.write_for(group, entries, pending, None).await
    }

    /// [`Actor::write`], the batch transactional for the producer when `for_producer` (a
    /// transaction's offsets).
    pub(super) async fn write_for(
        &mut self,
        group: &str,
        entries: Vec<Entry>,
        pending: Pending,
        for_producer: Option<crate::schema::WrittenFor>,
    ) {
        let index = partition_for(group, self.config.offsets_partitions);
        let result = self.append_for(index, &entries, for_producer).await;
        match result {
            Ok(rx) => {
                let id = self.next_write;
                self.next_write += 1;
                let partition = partition_for(group, self.config.offsets_partitions);
                self.writes
                    .entry(partition)
                    .or_default()
                    .push_back(InFlight {
                        id,
                        pending,
                        outcome: None,
                    });
                let Some(tx) = self.tx.upgrade() else { return };
                tokio::spawn(async move {
                    let outcome = rx.outcome().await.map(|_| ());
                    let _ = tx.send(Msg::Written(partition, id, outcome)).await;
                });
            }
            Err(code) => {
                self.reread.insert(index);
                self.written(pending, Err(code))
            }
        }
    }

    /// Writes to partition `index` of the offsets topic not yet applied.
    pub(super) fn writes_in_flight(&self, index: i32) -> usize {
        self.writes.get(&index).map_or(0, VecDeque::len)
    }

    /// A write finished (and every earlier one of its partition): what waited on it goes on.
    pub(super) fn written(&mut self, pending: Pending, result: Result<(), i16>) {
        match pending {
            Pending::Assignment { group, generation } => {
                self.assignment_written(&group, generation, result)
            }
            Pending::Offsets {
                group,
                offsets,
                reply,
                codes,
            } => self.offsets_written(&group, offsets, reply, codes, result),
            Pending::Tombstones(reply) => {
                if let Some((reply, codes)) = reply {
                    let codes = match result {
                        Ok(()) => codes,
                        Err(code) => codes
                            .iter()
                            .map(|c| if *c == 0 { code } else { *c })
                            .collect(),
                    };
                    let _ = reply.send(codes);
                }
            }
            Pending::DeletedOffsets(reply, codes) => {
                let _ = reply.send(result.map(|()| codes));
            }
            Pending::Consumer(reply, response) => {
                let _ = reply.send(match result {
                    Ok(()) => response,
                    Err(code) => ConsumerHeartbeatResponse::refused(
                        code,
                        "the group's records were not written",
                    ),
                });
            }
            Pending::GroupState => {
                if let Err(code) = result {
                    tracing::warn!(code, "a group's metadata was not written");
                }
            }
            Pending::TxnOffsets {
                group,
                producer_id,
                offsets,
                reply,
                codes,
            } => self.txn_offsets_written(&group, producer_id, offsets, reply, codes, result),
        }
    }

    /// Read the offsets topic, if it exists, into the groups and their offsets.
    pub(super) async fn load(&mut self) {
        let Some(mut topic) = self.store.topic(OFFSETS_TOPIC) else {
            return;
        };
        // On a single node the topic's configs follow `offsets_topic_compacted` at every start
        // (in a cluster they are the metadata's, set when the topic was made).
        let overrides = offsets_topic_overrides(&self.config);
        if topic.overrides != overrides {
            match self
                .store
                .alter_topic_config(OFFSETS_TOPIC, overrides)
                .await
            {
                Ok(t) => topic = t,
                Err(e) => tracing::warn!(error = %e, "cannot set the configs of {OFFSETS_TOPIC}"),
            }
        }
        let mut records = 0u64;
        for p in &topic.partitions {
            match self.load_partition(p).await {
                Some(n) => records += n,
                // Its groups are read again in a while; their requests wait.
                None => self.unread(p.index),
            }
        }
        let now = self.now();
        for g in self.groups.values_mut() {
            g.loaded(now, self.config.consumer_session_timeout);
        }
        self.groups.retain(|_, g| !g.is_dead());
        tracing::info!(
            groups = self.groups.len(),
            records,
            "loaded consumer groups"
        );
    }

    /// Read one partition of the offsets topic into its groups; the records read (`None`: the
    /// log could not be read, and what was read of it must be dropped: [`Actor::unread`]).
    pub(super) async fn load_partition(
        &mut self,
        p: &crate::storage::log::Partition,
    ) -> Option<u64> {
        let io = self.store.io().clone();
        let mut records = 0u64;
        let start = p.log_start_offset();
        let mut offset = start;
        let end = p.high_watermark();
        while offset < end {
            let data = match p.read(&io, offset, 1 << 20).await {
                Ok(d) if !d.records.is_empty() => d.records,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(partition = p.index, error = %e, "cannot read {OFFSETS_TOPIC}; its groups are read again in a while");
                    return None;
                }
            };
            let mut buf = data;
            while !buf.is_empty() {
                // A batch the cleaner emptied (a compacted topic) holds no record but still
                // spans its offsets: the next read starts after it.
                let after = crate::batch::parse_header(&buf).map(|h| h.next_offset());
                let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf) else {
                    tracing::error!(
                        partition = p.index,
                        offset,
                        "undecodable batch in {OFFSETS_TOPIC}"
                    );
                    offset = end;
                    break;
                };
                for r in set.records {
                    offset = r.offset + 1;
                    if r.offset < start {
                        continue;
                    }
                    if r.control {
                        // A transaction's marker decides its offsets here; Raft's own
                        // entries (control batches too) are not group records.
                        if let Some(commit) = r
                            .transactional
                            .then(|| crate::txn_marker::commit_of_key(r.key.as_deref()?))
                            .flatten()
                        {
                            self.txn_completed(p.index, r.producer_id, commit);
                        }
                        continue;
                    }
                    records += 1;
                    let Some(key) = r.key.as_deref() else {
                        continue;
                    };
                    match Entry::decode(key, r.value.as_deref()) {
                        Ok(Some(entry)) if r.transactional => self.apply_txn(r.producer_id, entry),
                        Ok(Some(entry)) => self.apply(entry),
                        Ok(None) => {}
                        Err(why) => {
                            tracing::warn!(partition = p.index, offset = r.offset, %why, "skipping a damaged record of {OFFSETS_TOPIC}")
                        }
                    }
                }
                if let Ok(after) = after {
                    offset = offset.max(after);
                }
            }
        }
        Some(records)
    }

    /// Take one record of the offsets topic into the state (load).
    pub(super) fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group));
                match value {
                    Some(v) => {
                        g.offsets.insert((topic, partition), v);
                    }
                    None => {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            }
            Entry::Consumer(e) => {
                let group = e.group().to_string();
                let g = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group));
                g.replay(e);
            }
            Entry::Group { group, value } => match value {
                Some(v) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group));
                    g.restore(v);
                }
                // The group's classic metadata is gone (its offsets go by their own
                // tombstones, written before it; a group made a consumer group keeps them).
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.reset_classic();
                    }
                }
            },
        }
    }
}

/// The code a failed write answers: the partition is moving or failing — the client finds the
/// coordinator again and retries.
pub(super) fn write_error(e: &AppendError) -> i16 {
    use crate::producer_state::ProducerError;
    match e {
        AppendError::Storage(_) | AppendError::PartitionGone { .. } => {
            error::COORDINATOR_NOT_AVAILABLE
        }
        // A transaction's offsets, written for a producer a newer epoch fenced, or outside
        // its open transaction.
        AppendError::Producer(ProducerError::InvalidEpoch { .. }) => error::INVALID_PRODUCER_EPOCH,
        AppendError::Producer(ProducerError::InvalidTxnState { .. }) => error::INVALID_TXN_STATE,
        AppendError::Producer(_) => error::UNKNOWN_SERVER_ERROR,
    }
}

/// In a cluster: make the offsets topic through the controller if the metadata lacks it, and
/// wait (a little) for this broker's copy.
pub(super) async fn ensure_offsets_topic(
    cluster: &Controller,
    partitions: i32,
    rf: i32,
    overrides: crate::topic_config::Overrides,
) -> Result<(), i16> {
    let limit = Duration::from_secs(10);
    if !cluster.metadata().topics.contains_key(OFFSETS_TOPIC) {
        match cluster
            .create_topic(OFFSETS_TOPIC, partitions, rf, None, overrides, limit)
            .await
        {
            Ok(_) | Err(TopicError::Exists) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC}");
                return Err(GONE);
            }
        }
    }
    cluster
        .local_topic(OFFSETS_TOPIC, limit)
        .await
        .map(|_| ())
        .ok_or(GONE)
}

/// One record batch of `entries` (keys and values in Kafka's schemas), stamped `now_ms`;
/// transactional when written for a producer (a transaction's offsets).
pub(super) fn encode_batch(
    entries: &[Entry],
    now_ms: i64,
    for_producer: Option<crate::schema::WrittenFor>,
) -> Bytes {
    let records: Vec<_> = entries.iter().map(Entry::encode).collect();
    crate::schema::internal_batch(&records, now_ms, for_producer)
}

/// The offsets topic's configs, on one node and in a cluster: committed offsets and group
/// metadata are kept until they are replaced (checkpoints bound the topic, not retention);
/// compacted (`offsets_topic_compacted`), the log cleaner also keeps only each key's latest
/// record.
pub(super) fn offsets_topic_overrides(config: &GroupConfig) -> crate::topic_config::Overrides {
    let policy = config.compacted.then_some(("cleanup.policy", "compact"));
    let segment = config.segment_bytes.to_string();
    [
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("segment.bytes", segment.as_str()),
    ]
    .into_iter()
    .chain(policy)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
