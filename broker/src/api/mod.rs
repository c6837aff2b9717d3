//! What the broker does for each Kafka request.
//!
//! [`Broker::dispatch`] runs in a connection's arrival order the part of a request that must be
//! ordered (validating produce data and queueing it for the commit pipeline) and returns a future
//! for the rest; the connection writes responses in request order.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_backend::Clock;
use kafka_protocol::messages::{
    create_topics_response::CreatableTopicResult,
    delete_topics_response::DeletableTopicResult,
    fetch_response::{FetchableTopicResponse, PartitionData},
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use crate::batch::BatchError;
use crate::commit::{check_topic_name, Appended, Store, Topic, TopicError};
use crate::config::Config;
use crate::io::StorageError;
use crate::log::{LogConfig, ReadError};
use crate::memory::{MemoryBudget, Reservation};
use crate::metrics::Metrics;
use crate::protocol::{self, error, Request};
use crate::records::{self, Rules, TimestampType};
use crate::throttle::Throttles;

/// What a connection does once a request is handled.
pub enum Reply {
    /// Write this response; the memory it holds is given back once it is written.
    Send(Bytes, Reservation),
    /// Nothing to send (acks=0).
    Silent,
    /// The response could not be encoded: close rather than leave the client waiting.
    Close,
}

/// A response being computed.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Most record bytes one Fetch response carries, whatever the client asks (Kafka's
/// `fetch.max.bytes` default is 55 MB).
const FETCH_BYTES_MAX: usize = 64 << 20;

/// Longest a Fetch may long-poll, whatever the client asks.
const FETCH_WAIT_MAX: Duration = Duration::from_secs(30);

/// Shortest a Fetch waits for memory before it answers without records.
const FETCH_MEMORY_WAIT_MIN: Duration = Duration::from_millis(100);

/// The request handlers' view of the node.
pub struct Broker {
    pub config: Config,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Request and response bytes held, broker-wide.
    pub memory: Arc<MemoryBudget>,
    /// Limits on log lines a peer can cause.
    pub throttles: Throttles,
}

fn name_of(t: &TopicName) -> &str {
    t.0.as_str()
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// KAFKA_STORAGE_ERROR says the append was not written (a definite failure: retrying cannot
/// duplicate it); REQUEST_TIMED_OUT says it was written but not confirmed durable, as Kafka
/// answers a produce whose replication did not finish in time (indefinite: it may be in the
/// log). Both are retriable for clients.
fn storage_code(e: &StorageError) -> i16 {
    if let StorageError::PartitionGone { .. } = e {
        error::UNKNOWN_TOPIC_OR_PARTITION
    } else if e.indefinite() {
        error::REQUEST_TIMED_OUT
    } else {
        error::KAFKA_STORAGE_ERROR
    }
}

impl Broker {
    /// Handle a request: ordered part now, the rest in the returned future. `frame` is the
    /// memory the request's frame holds; produced batches keep it until they are in the log.
    pub async fn dispatch(
        self: &Arc<Self>,
        req: Request,
        frame: Arc<Reservation>,
    ) -> ResponseFuture {
        self.metrics.request(req.api as i16);
        crate::fault_point!("request.dispatch");
        let (api, version, cid) = (req.api, req.version, req.correlation_id);
        let this = self.clone();
        let memory = self.memory.clone();
        // Encode a response; the memory it holds, already taken (a Fetch's) or charged now.
        let respond_holding = move |body: ResponseKind, held: Option<Reservation>| -> Reply {
            match protocol::encode_response(api, version, cid, &body) {
                Ok(b) => {
                    let held = match held {
                        Some(mut held) => {
                            held.resize(b.len());
                            held
                        }
                        None => memory.charge(b.len()),
                    };
                    Reply::Send(b, held)
                }
                Err(e) => {
                    tracing::error!(?api, version, error = %format!("{e:#}"), "cannot encode a response; closing the connection");
                    Reply::Close
                }
            }
        };
        let respond = {
            let respond_holding = respond_holding.clone();
            move |body: ResponseKind| respond_holding(body, None)
        };
        match req.body {
            RequestKind::Fetch(f) => Box::pin(async move {
                let (r, held) = this.fetch(f, version).await;
                respond_holding(ResponseKind::Fetch(r), Some(held))
            }),
            RequestKind::Produce(p) => {
                let pending = self.produce_enqueue(p, &frame).await;
                Box::pin(async move {
                    let (acks, resp) = this.produce_finish(pending, version).await;
                    if acks == 0 {
                        Reply::Silent
                    } else {
                        respond(ResponseKind::Produce(resp))
                    }
                })
            }
            RequestKind::ApiVersions(_) => {
                let body = protocol::api_versions(error::NONE);
                Box::pin(async move { respond(ResponseKind::ApiVersions(body)) })
            }
            RequestKind::Metadata(m) => Box::pin(async move {
                let r = this.metadata(m, version).await;
                respond(ResponseKind::Metadata(r))
            }),
            RequestKind::ListOffsets(l) => Box::pin(async move {
                let r = this.list_offsets(l).await;
                respond(ResponseKind::ListOffsets(r))
            }),
            RequestKind::CreateTopics(c) => Box::pin(async move {
                let r = this.create_topics(c, version).await;
                respond(ResponseKind::CreateTopics(r))
            }),
            RequestKind::DeleteTopics(d) => Box::pin(async move {
                let r = this.delete_topics(d, version).await;
                respond(ResponseKind::DeleteTopics(r))
            }),
            other => {
                // decode() only lets through what SUPPORTED lists, and each is handled above.
                tracing::error!(api = ?other, "request type without a handler");
                Box::pin(async { Reply::Close })
            }
        }
    }

    /// Find a topic, creating it when auto-creation applies.
    async fn topic_or_create(&self, name: &str, may_create: bool) -> Result<Arc<Topic>, i16> {
        if let Err(why) = check_topic_name(name) {
            tracing::debug!(topic = name, %why, "refusing an invalid topic name");
            return Err(error::INVALID_TOPIC_EXCEPTION);
        }
        if let Some(t) = self.store.topic(name) {
            return Ok(t);
        }
        if !(may_create && self.config.auto_create_topics) {
            return Err(error::UNKNOWN_TOPIC_OR_PARTITION);
        }
        match self
            .store
            .create_topic(name, self.config.default_partitions, self.store.defaults)
            .await
        {
            Ok(t) => Ok(t),
            Err(TopicError::Exists) => self
                .store
                .topic(name)
                .ok_or(error::UNKNOWN_TOPIC_OR_PARTITION),
            Err(e) => Err(topic_error_code(&e)),
        }
    }

    // ---- Produce -------------------------------------------------------------------------

    async fn produce_enqueue(
        &self,
        req: ProduceRequest,
        frame: &Arc<Reservation>,
    ) -> PendingProduce {
        let acks = req.acks;
        let mut topics = Vec::with_capacity(req.topic_data.len());
        for t in req.topic_data {
            let name = name_of(&t.name).to_string();
            let topic = if acks != 0 && acks != 1 && acks != -1 {
                Err(error::INVALID_REQUIRED_ACKS)
            } else {
                self.topic_or_create(&name, true).await
            };
            let mut parts = Vec::with_capacity(t.partition_data.len());
            for p in t.partition_data {
                let state = match &topic {
                    Err(code) => PartState::Done(*code, None),
                    Ok(topic) => {
                        self.enqueue_partition(topic, p.index, p.records, acks, frame)
                            .await
                    }
                };
                parts.push((p.index, state));
            }
            topics.push((t.name, parts));
        }
        PendingProduce {
            acks,
            timeout_ms: req.timeout_ms,
            topics,
        }
    }

    async fn enqueue_partition(
        &self,
        topic: &Topic,
        index: i32,
        records: Option<Bytes>,
        acks: i16,
        frame: &Arc<Reservation>,
    ) -> PartState {
        let Some(partition) = usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i))
        else {
            return PartState::Done(error::UNKNOWN_TOPIC_OR_PARTITION, None);
        };
        if acks == -1 && topic.config.min_insync_replicas > 1 {
            return PartState::Done(
                error::NOT_ENOUGH_REPLICAS,
                Some(format!(
                    "min.insync.replicas={} but the partition has 1 replica",
                    topic.config.min_insync_replicas
                )),
            );
        }
        let payload = records.unwrap_or_default();
        let rules = Rules {
            batch_bytes_max: topic.config.max_message_bytes as usize,
            timestamp_type: topic.config.timestamp_type,
            timestamp_before_max_ms: topic.config.timestamp_before_max_ms,
            timestamp_after_max_ms: topic.config.timestamp_after_max_ms,
            now_ms: self.clock.wall_ms(),
        };
        let headers = match records::validate_produce(&payload, &rules) {
            Ok(h) => h,
            Err(e) => {
                if let Some(suppressed) = self.throttles.refused_batches.admit(self.clock.now()) {
                    tracing::warn!(topic = %topic.name, partition = index, error = %e, suppressed, "refusing produced data");
                }
                Metrics::inc(&self.metrics.request_errors, 1);
                let code = match e {
                    BatchError::TooLarge { .. } => error::MESSAGE_TOO_LARGE,
                    // Damage on the way (a retry may pass); everything else is how the client
                    // built the batch, and a retry would fail the same way.
                    BatchError::BadCrc { .. } => error::CORRUPT_MESSAGE,
                    BatchError::InvalidTimestamp(_) => error::INVALID_TIMESTAMP,
                    _ => error::INVALID_RECORD,
                };
                return PartState::Done(code, Some(e.to_string()));
            }
        };
        match self
            .store
            .append(
                partition.clone(),
                payload,
                headers,
                acks != 0,
                Some(frame.clone()),
            )
            .await
        {
            Ok(Some(rx)) => PartState::Waiting(rx),
            Ok(None) => PartState::Done(error::NONE, None),
            Err(e) => PartState::Done(storage_code(&e), Some(e.to_string())),
        }
    }

    async fn produce_finish(
        &self,
        pending: PendingProduce,
        version: i16,
    ) -> (i16, ProduceResponse) {
        let limit = Duration::from_millis(pending.timeout_ms.clamp(100, 300_000) as u64);
        let started = self.clock.now();
        let mut resp = ProduceResponse::default();
        for (name, parts) in pending.topics {
            let mut t = TopicProduceResponse::default();
            t.name = name;
            for (index, state) in parts {
                let mut p = PartitionProduceResponse::default();
                p.index = index;
                match state {
                    PartState::Done(code, msg) => {
                        p.error_code = code;
                        if version >= 8 {
                            p.error_message = msg.map(StrBytes::from_string);
                        }
                    }
                    PartState::Waiting(rx) => {
                        let left = limit.saturating_sub(self.clock.now() - started);
                        match self.clock.timeout(left, rx).await {
                            Ok(Ok(Ok(Appended {
                                base_offset,
                                log_start_offset,
                                log_append_time_ms,
                            }))) => {
                                p.base_offset = base_offset;
                                p.log_append_time_ms = log_append_time_ms;
                                if version >= 5 {
                                    p.log_start_offset = log_start_offset;
                                }
                            }
                            Ok(Ok(Err(e))) => {
                                p.error_code = storage_code(&e);
                                if version >= 8 {
                                    p.error_message = Some(StrBytes::from_string(e.to_string()));
                                }
                            }
                            // The pipeline dropped the answer (it stopped): whether the bytes
                            // were written is unknown, as when the request's time runs out.
                            Ok(Err(_)) | Err(_) => p.error_code = error::REQUEST_TIMED_OUT,
                        }
                    }
                }
                if p.error_code != error::NONE {
                    p.base_offset = -1;
                    Metrics::inc(&self.metrics.request_errors, 1);
                }
                t.partition_responses.push(p);
            }
            resp.responses.push(t);
        }
        (pending.acks, resp)
    }

    // ---- Fetch -----------------------------------------------------------------------------

    /// A Fetch, long-polling up to `max_wait_ms` for `min_bytes`. Each read first takes from
    /// the memory budget the most it can return (and gives back what it did not use), so a
    /// Fetch waits for memory before it reads rather than after; the records it returns hold
    /// their share until the response is written.
    async fn fetch(&self, req: FetchRequest, version: i16) -> (FetchResponse, Reservation) {
        let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MAX);
        let deadline = self.clock.now() + wait;
        let mut commits = self.store.commits();
        loop {
            commits.borrow_and_update();
            // Wait for memory no longer than the poll may last (at least a little): a Fetch
            // that cannot have it answers with no records, which a client takes as "nothing
            // yet" and asks again. Waiting on could deadlock a connection whose own requests
            // behind this Fetch hold the memory (their responses are written after it).
            let memory_wait = deadline
                .saturating_duration_since(self.clock.now())
                .max(FETCH_MEMORY_WAIT_MIN);
            let want = self.fetch_bytes_max(&req);
            let (mut held, records_allowed) = match self
                .clock
                .timeout(memory_wait, self.memory.acquire(want))
                .await
            {
                Ok(held) => (held, true),
                Err(_) => (Reservation::none(&self.memory), false),
            };
            let (resp, bytes, errors) = self.fetch_once(&req, version, records_allowed).await;
            if !records_allowed {
                return (resp, held);
            }
            held.resize(bytes);
            let now = self.clock.now();
            if bytes >= req.min_bytes.max(0) as usize || errors || now >= deadline {
                Metrics::inc(&self.metrics.fetched_bytes, bytes as u64);
                return (resp, held);
            }
            drop((resp, held));
            // Long-poll: sleep until a commit makes new data visible or the wait is over.
            let _ = self.clock.timeout(deadline - now, commits.changed()).await;
        }
    }

    /// The most record bytes a read for `req` can return now: per partition what its log holds
    /// from the fetch offset, at most `partition_max_bytes`; in all at most `max_bytes` (one
    /// batch larger than the limits, KIP-74, is charged when it is read).
    fn fetch_bytes_max(&self, req: &FetchRequest) -> usize {
        let max_total = (req.max_bytes.max(0) as usize).min(FETCH_BYTES_MAX);
        let mut total = 0usize;
        for t in &req.topics {
            let Some(topic) = self.store.topic(name_of(&t.topic)) else {
                continue;
            };
            for p in &t.partitions {
                let part = usize::try_from(p.partition)
                    .ok()
                    .and_then(|i| topic.partitions.get(i));
                if let Some(part) = part {
                    let readable = part.bytes_from(p.fetch_offset) as usize;
                    total += readable.min(p.partition_max_bytes.max(0) as usize);
                }
            }
        }
        total.min(max_total)
    }

    /// Read every requested partition once (offsets only, no records, unless `records_allowed`).
    async fn fetch_once(
        &self,
        req: &FetchRequest,
        version: i16,
        records_allowed: bool,
    ) -> (FetchResponse, usize, bool) {
        let mut resp = FetchResponse::default();
        let mut total = 0usize;
        let mut errors = false;
        let max_total = (req.max_bytes.max(0) as usize).min(FETCH_BYTES_MAX);
        for t in &req.topics {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = t.topic.clone();
            tr.topic_id = t.topic_id;
            let topic = self.store.topic(name_of(&t.topic));
            for p in &t.partitions {
                let mut pd = PartitionData::default();
                pd.partition_index = p.partition;
                pd.records = Some(Bytes::new());
                let partition = topic.as_ref().and_then(|t| {
                    usize::try_from(p.partition)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                });
                match partition {
                    None => pd.error_code = error::UNKNOWN_TOPIC_OR_PARTITION,
                    Some(part) => {
                        // KIP-74: the first batch is returned even if it exceeds the limits.
                        let room = if total == 0 {
                            (p.partition_max_bytes.max(0) as usize).min(max_total.max(1))
                        } else {
                            (p.partition_max_bytes.max(0) as usize)
                                .min(max_total.saturating_sub(total))
                        };
                        if room == 0 || !records_allowed {
                            pd.high_watermark = part.high_watermark();
                            pd.last_stable_offset = pd.high_watermark;
                            if version >= 5 {
                                pd.log_start_offset = part.log_start_offset();
                            }
                        } else {
                            match part.read(self.store.io(), p.fetch_offset, room).await {
                                Ok(data) => {
                                    total += data.records.len();
                                    pd.high_watermark = data.high_watermark;
                                    pd.last_stable_offset = data.high_watermark;
                                    if version >= 5 {
                                        pd.log_start_offset = data.log_start_offset;
                                    }
                                    pd.records = Some(data.records);
                                }
                                Err(ReadError::OffsetOutOfRange {
                                    high_watermark,
                                    log_start,
                                    ..
                                }) => {
                                    pd.error_code = error::OFFSET_OUT_OF_RANGE;
                                    pd.high_watermark = high_watermark;
                                    pd.last_stable_offset = high_watermark;
                                    if version >= 5 {
                                        pd.log_start_offset = log_start;
                                    }
                                }
                                Err(ReadError::Storage(e)) => {
                                    tracing::warn!(topic = %part.topic, partition = part.index, error = %e, "fetch read failed");
                                    pd.error_code = storage_code(&e);
                                }
                            }
                        }
                    }
                }
                errors |= pd.error_code != error::NONE;
                tr.partitions.push(pd);
            }
            resp.responses.push(tr);
        }
        (resp, total, errors)
    }

    // ---- ListOffsets -------------------------------------------------------------------------

    async fn list_offsets(&self, req: ListOffsetsRequest) -> ListOffsetsResponse {
        let mut resp = ListOffsetsResponse::default();
        for t in req.topics {
            let mut tr = ListOffsetsTopicResponse::default();
            let topic = self.store.topic(name_of(&t.name));
            tr.name = t.name;
            for p in t.partitions {
                let mut pr = ListOffsetsPartitionResponse::default();
                pr.partition_index = p.partition_index;
                pr.timestamp = -1;
                pr.offset = -1;
                let part = topic.as_ref().and_then(|t| {
                    usize::try_from(p.partition_index)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                });
                match (part, p.timestamp) {
                    (None, _) => pr.error_code = error::UNKNOWN_TOPIC_OR_PARTITION,
                    (Some(part), -1) => pr.offset = part.high_watermark(),
                    (Some(part), -2) => pr.offset = part.log_start_offset(),
                    (Some(part), ts) if ts >= 0 => {
                        match part.offset_for_timestamp(self.store.io(), ts).await {
                            Ok(Some((offset, found_ts))) => {
                                pr.offset = offset;
                                pr.timestamp = found_ts;
                            }
                            Ok(None) => {}
                            Err(e) => pr.error_code = storage_code(&e),
                        }
                    }
                    (Some(_), _) => pr.error_code = error::UNSUPPORTED_VERSION,
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        resp
    }

    // ---- Metadata ----------------------------------------------------------------------------

    async fn metadata(&self, req: MetadataRequest, version: i16) -> MetadataResponse {
        let mut resp = MetadataResponse::default();
        let (host, port) = self.config.advertised();
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(self.config.node_id);
        b.host = StrBytes::from_string(host);
        b.port = port;
        resp.brokers.push(b);
        if version >= 2 {
            resp.cluster_id = Some(StrBytes::from_static_str("stillwater"));
        }
        if version >= 1 {
            resp.controller_id = BrokerId(self.config.node_id);
        }
        let may_create = version < 4 || req.allow_auto_topic_creation;
        let wanted: Option<Vec<_>> = match req.topics {
            None => None,
            Some(list) if list.is_empty() && version == 0 => None,
            Some(list) => Some(list),
        };
        match wanted {
            None => {
                for t in self.store.topics() {
                    resp.topics.push(self.describe(&t, version));
                }
            }
            Some(list) => {
                for req_topic in list {
                    let Some(name) = req_topic.name else {
                        let mut mt = MetadataResponseTopic::default();
                        mt.topic_id = req_topic.topic_id;
                        mt.error_code = error::UNKNOWN_TOPIC_ID;
                        resp.topics.push(mt);
                        continue;
                    };
                    match self.topic_or_create(name_of(&name), may_create).await {
                        Ok(t) => resp.topics.push(self.describe(&t, version)),
                        Err(code) => {
                            let mut mt = MetadataResponseTopic::default();
                            mt.name = Some(name);
                            mt.error_code = code;
                            resp.topics.push(mt);
                        }
                    }
                }
            }
        }
        resp
    }

    fn describe(&self, t: &Topic, version: i16) -> MetadataResponseTopic {
        let me = BrokerId(self.config.node_id);
        let mut mt = MetadataResponseTopic::default();
        mt.name = Some(topic_name(&t.name));
        if version >= 10 {
            mt.topic_id = uuid::Uuid::from_u128(t.id);
        }
        for p in &t.partitions {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p.index;
            mp.leader_id = me;
            if version >= 7 {
                mp.leader_epoch = 0;
            }
            mp.replica_nodes = vec![me];
            mp.isr_nodes = vec![me];
            mt.partitions.push(mp);
        }
        mt
    }

    // ---- CreateTopics / DeleteTopics ---------------------------------------------------------

    async fn create_topics(&self, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
        let mut resp = CreateTopicsResponse::default();
        for t in req.topics {
            let mut r = CreatableTopicResult::default();
            r.name = t.name.clone();
            let name = name_of(&t.name).to_string();
            let partitions = if !t.assignments.is_empty() {
                t.assignments.len() as i32
            } else if t.num_partitions == -1 {
                self.config.default_partitions
            } else {
                t.num_partitions
            };
            let outcome = match self.topic_settings(&t.configs) {
                Err(msg) => Err((error::INVALID_CONFIG, msg)),
                Ok(_) if t.replication_factor == 0 || t.replication_factor < -1 => Err((
                    error::INVALID_REPLICATION_FACTOR,
                    format!(
                        "replication factor {} is invalid: it must be at least 1 (or -1 for the default)",
                        t.replication_factor
                    ),
                )),
                Ok(_) if t.replication_factor > 1 => Err((
                    error::INVALID_REPLICATION_FACTOR,
                    format!(
                        "replication factor {} is larger than the 1 available broker",
                        t.replication_factor
                    ),
                )),
                Ok(_) if partitions < 1 => Err((
                    error::INVALID_PARTITIONS,
                    format!(
                        "{partitions} partitions: a topic needs at least 1 (or -1 for the default)"
                    ),
                )),
                Ok(_) if req.validate_only => match check_topic_name(&name) {
                    Err(m) => Err((error::INVALID_TOPIC_EXCEPTION, m)),
                    Ok(()) if self.store.topic(&name).is_some() => {
                        Err((error::TOPIC_ALREADY_EXISTS, "topic already exists".into()))
                    }
                    Ok(()) => Ok(None),
                },
                Ok(cfg) => match self.store.create_topic(&name, partitions, cfg).await {
                    Ok(topic) => Ok(Some(topic)),
                    Err(e) => Err((topic_error_code(&e), e.to_string())),
                },
            };
            match outcome {
                Ok(topic) => {
                    if version >= 5 {
                        r.num_partitions = partitions;
                        r.replication_factor = 1;
                    }
                    if let Some(topic) = topic.filter(|_| version >= 7) {
                        r.topic_id = uuid::Uuid::from_u128(topic.id);
                    }
                }
                Err((code, msg)) => {
                    tracing::info!(topic = %name, code, %msg, "CreateTopics refused");
                    r.error_code = code;
                    r.error_message = Some(StrBytes::from_string(msg));
                }
            }
            resp.topics.push(r);
        }
        resp
    }

    /// Topic settings from CreateTopics configs over the broker's defaults. A config that is
    /// accepted is honoured; one the broker does not support is refused by name (INVALID_CONFIG),
    /// never silently ignored.
    fn topic_settings(
        &self,
        configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
    ) -> Result<LogConfig, String> {
        let mut c = self.store.defaults;
        for kv in configs {
            let key = kv.name.as_str();
            let Some(value) = kv.value.as_ref().map(|v| v.as_str()) else {
                return Err(format!("{key}: a null value is not allowed"));
            };
            let num = |min: i64, max: i64| -> Result<i64, String> {
                let n = value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{key}={value:?} is not a number"))?;
                if !(min..=max).contains(&n) {
                    return Err(format!("{key}={n} must be between {min} and {max}"));
                }
                Ok(n)
            };
            match key {
                "retention.ms" => c.retention_ms = num(-1, i64::MAX)?,
                "retention.bytes" => c.retention_bytes = num(-1, i64::MAX)?,
                "segment.ms" => c.segment_ms = num(1, i64::MAX)?,
                // Index positions are 32-bit.
                "segment.bytes" => c.segment_bytes = num(1024, i32::MAX as i64)? as u64,
                "index.interval.bytes" => {
                    c.index_interval_bytes = num(0, i32::MAX as i64)? as u64
                }
                "max.message.bytes" => c.max_message_bytes = num(0, i32::MAX as i64)? as u64,
                "message.timestamp.type" => {
                    c.timestamp_type = match value {
                        "CreateTime" => TimestampType::CreateTime,
                        "LogAppendTime" => TimestampType::LogAppendTime,
                        other => {
                            return Err(format!(
                                "message.timestamp.type={other:?}: expected CreateTime or LogAppendTime"
                            ))
                        }
                    }
                }
                "message.timestamp.before.max.ms" => {
                    c.timestamp_before_max_ms = num(0, i64::MAX)?
                }
                "message.timestamp.after.max.ms" => c.timestamp_after_max_ms = num(0, i64::MAX)?,
                // Before Kafka 3.6 one setting bounded both sides.
                "message.timestamp.difference.max.ms" => {
                    let n = num(0, i64::MAX)?;
                    c.timestamp_before_max_ms = n;
                    c.timestamp_after_max_ms = n;
                }
                "min.insync.replicas" => c.min_insync_replicas = num(1, i32::MAX as i64)? as i32,
                "cleanup.policy" if value == "delete" => {}
                "cleanup.policy" => {
                    return Err(format!(
                        "cleanup.policy={value} is not supported (only delete: there is no log compaction)"
                    ))
                }
                // Batches are stored as produced, never recompressed.
                "compression.type" if value == "producer" => {}
                "compression.type" => {
                    return Err(format!(
                        "compression.type={value} is not supported (only producer: batches are \
                         stored as the producer compressed them)"
                    ))
                }
                other => return Err(format!("topic config {other} is not supported")),
            }
        }
        Ok(c)
    }

    async fn delete_topics(&self, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
        let mut resp = DeleteTopicsResponse::default();
        let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
            req.topics
                .into_iter()
                .map(|t| (t.name.map(|n| name_of(&n).to_string()), t.topic_id))
                .collect()
        } else {
            req.topic_names
                .iter()
                .map(|n| (Some(name_of(n).to_string()), uuid::Uuid::nil()))
                .collect()
        };
        for (name, id) in targets {
            let mut r = DeletableTopicResult::default();
            r.topic_id = id;
            let name = name.or_else(|| {
                self.store
                    .topics()
                    .into_iter()
                    .find(|t| uuid::Uuid::from_u128(t.id) == id)
                    .map(|t| t.name.clone())
            });
            match name {
                None => r.error_code = error::UNKNOWN_TOPIC_ID,
                Some(name) => {
                    r.name = Some(topic_name(&name));
                    if let Err(e) = self.store.delete_topic(&name).await {
                        r.error_code = topic_error_code(&e);
                        if version >= 5 {
                            r.error_message = Some(StrBytes::from_string(e.to_string()));
                        }
                    }
                }
            }
            resp.responses.push(r);
        }
        resp
    }
}

fn topic_error_code(e: &TopicError) -> i16 {
    match e {
        TopicError::Exists => error::TOPIC_ALREADY_EXISTS,
        TopicError::Unknown => error::UNKNOWN_TOPIC_OR_PARTITION,
        TopicError::InvalidName(_) => error::INVALID_TOPIC_EXCEPTION,
        TopicError::InvalidPartitions(_) => error::INVALID_PARTITIONS,
        TopicError::InvalidConfig(_) => error::INVALID_CONFIG,
        TopicError::Storage(_) => error::KAFKA_STORAGE_ERROR,
    }
}

enum PartState {
    Done(i16, Option<String>),
    Waiting(oneshot::Receiver<Result<Appended, StorageError>>),
}

struct PendingProduce {
    acks: i16,
    timeout_ms: i32,
    topics: Vec<(TopicName, Vec<(i32, PartState)>)>,
}

pub(crate) fn count_connection(metrics: &Metrics, delta: i64) {
    metrics.connections.fetch_add(delta, Ordering::Relaxed);
}
