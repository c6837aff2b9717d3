//! Topics and their partitions: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords.

use kafka_protocol::messages::{
    create_partitions_response::CreatePartitionsTopicResult,
    create_topics_request::CreatableTopic,
    create_topics_response::CreatableTopicResult,
    delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
    delete_topics_response::DeletableTopicResult,
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse,
};
use kafka_protocol::protocol::StrBytes;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::throttling::Mutations;
use super::{name_of, topic_name, Broker};
use crate::protocol::error;
use crate::storage::catalog::{self, TopicError};
use crate::topic_config::{self, Overrides};

/// A refusal: the code and a message for the client.
type Refusal = (i16, String);

/// The longest an admin request waits for its changes (Kafka clients' default request timeout).
pub(super) const ADMIN_LIMIT: Duration = Duration::from_secs(30);

fn refusal(e: TopicError) -> Refusal {
    (topic_error_code(&e), e.to_string())
}

impl Broker {
    /// When an admin request's changes must be answered by: its `timeout_ms` from now (Kafka:
    /// how long to wait for them), or [`ADMIN_LIMIT`] when it gives none.
    fn admin_deadline(&self, timeout_ms: i32) -> Instant {
        let limit = if timeout_ms > 0 {
            Duration::from_millis(timeout_ms as u64).min(ADMIN_LIMIT)
        } else {
            ADMIN_LIMIT
        };
        self.clock.now() + limit
    }

    /// `change`, answered by `deadline`: past it the client hears REQUEST_TIMED_OUT and the
    /// change, already queued or under way on the admin lane, may still complete (as in Kafka).
    async fn within<T>(
        &self,
        deadline: Instant,
        change: impl std::future::Future<Output = Result<T, TopicError>>,
    ) -> Result<T, TopicError> {
        let left = deadline.saturating_duration_since(self.clock.now());
        self.clock
            .timeout(left, change)
            .await
            .unwrap_or(Err(TopicError::TimedOut(left)))
    }

    pub(super) async fn create_topics(
        &self,
        req: CreateTopicsRequest,
        version: i16,
        quota: Mutations,
    ) -> CreateTopicsResponse {
        let mut resp = CreateTopicsResponse::default();
        let deadline = self.admin_deadline(req.timeout_ms);
        // A name given twice: one answer for it, INVALID_REQUEST, and nothing created (Kafka's).
        let mut count: HashMap<&str, usize> = HashMap::new();
        for t in &req.topics {
            *count.entry(name_of(&t.name)).or_default() += 1;
        }
        let mut answered = HashSet::new();
        for t in &req.topics {
            let name = name_of(&t.name).to_string();
            if count[name.as_str()] > 1 {
                if answered.insert(name) {
                    let mut r = CreatableTopicResult::default();
                    r.name = t.name.clone();
                    r.error_code = error::INVALID_REQUEST;
                    r.error_message = Some(StrBytes::from_static_str(
                        "Found multiple entries for this topic.",
                    ));
                    resp.topics.push(r);
                }
                continue;
            }
            let mut r = CreatableTopicResult::default();
            r.name = t.name.clone();
            let permits = match (t.num_partitions, t.assignments.len()) {
                (n, _) if n > 0 => n,
                (_, 0) => self.config.default_partitions,
                (_, assigned) => assigned as i32,
            };
            let taken = if req.validate_only {
                Ok(())
            } else {
                quota.take(permits)
            };
            let created = match taken {
                Ok(()) => self.create_one(t, req.validate_only, deadline).await,
                Err(refused) => Err(refused),
            };
            if matches!(&created, Err((code, _)) if *code != error::THROTTLING_QUOTA_EXCEEDED)
                && !req.validate_only
            {
                quota.give_back(permits);
            }
            match created {
                Ok((partitions, topic_id, config, overrides)) => {
                    r.error_message = None;
                    if version >= 5 {
                        r.num_partitions = partitions;
                        r.replication_factor = match (&self.cluster, t.replication_factor) {
                            (None, _) => 1,
                            (Some(_), -1) if t.assignments.is_empty() => {
                                self.default_replication_factor() as i16
                            }
                            (Some(_), -1) => t.assignments[0].broker_ids.len() as i16,
                            (Some(_), rf) => rf,
                        };
                        r.configs = Some(self.created_topic_configs(&config, &overrides));
                    }
                    if version >= 7 {
                        r.topic_id = topic_id.map_or(uuid::Uuid::nil(), uuid::Uuid::from_u128);
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

    /// Check one topic of a CreateTopics request (Kafka's order: name, replication and
    /// partitions, assignments, configs) and create it unless `validate_only`. Answers the
    /// partition count, the topic id (when created) and its settings.
    async fn create_one(
        &self,
        t: &CreatableTopic,
        validate_only: bool,
        deadline: Instant,
    ) -> Result<(i32, Option<u128>, crate::topic_config::LogConfig, Overrides), Refusal> {
        let name = name_of(&t.name);
        if catalog::is_internal(name) {
            return Err((
                error::INVALID_REQUEST,
                format!("{name} is an internal topic: the broker creates it"),
            ));
        }
        if let Some(cluster) = &self.cluster {
            return self
                .create_replicated(cluster, t, validate_only, deadline)
                .await;
        }
        let partitions = if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                return Err((
                    error::INVALID_REQUEST,
                    "both a partition count or replication factor and replica assignments were given".into(),
                ));
            }
            self.check_assignments(
                t.assignments
                    .iter()
                    .map(|a| (a.partition_index, &a.broker_ids[..])),
                0,
            )?;
            t.assignments.len() as i32
        } else if t.num_partitions == -1 {
            self.config.default_partitions
        } else {
            t.num_partitions
        };
        if t.replication_factor == 0 || t.replication_factor < -1 {
            return Err((
                error::INVALID_REPLICATION_FACTOR,
                format!(
                    "replication factor {} is invalid: it must be at least 1 (or -1 for the default)",
                    t.replication_factor
                ),
            ));
        }
        if t.replication_factor > 1 {
            return Err((
                error::INVALID_REPLICATION_FACTOR,
                format!(
                    "replication factor {} is larger than the 1 available broker",
                    t.replication_factor
                ),
            ));
        }
        if partitions < 1 {
            return Err((
                error::INVALID_PARTITIONS,
                format!(
                    "{partitions} partitions: a topic needs at least 1 (or -1 for the default)"
                ),
            ));
        }
        self.store
            .check_new_topic(name, partitions)
            .map_err(refusal)?;
        let overrides = topic_config::check_all(
            t.configs
                .iter()
                .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
        )
        .map_err(|e| (error::INVALID_CONFIG, e.0))?;
        let config = self.store.resolve(&overrides).map_err(refusal)?;
        if validate_only {
            return Ok((partitions, None, config, overrides));
        }
        let topic = self
            .within(
                deadline,
                self.store.create_topic(name, partitions, overrides),
            )
            .await
            .map_err(refusal)?;
        Ok((
            partitions,
            Some(topic.id),
            topic.config,
            topic.overrides.clone(),
        ))
    }

    /// [`Broker::create_one`] in a cluster: checked against the cluster metadata (the live
    /// brokers, the topics), created through the controller.
    async fn create_replicated(
        &self,
        cluster: &crate::controller::Controller,
        t: &CreatableTopic,
        validate_only: bool,
        deadline: Instant,
    ) -> Result<(i32, Option<u128>, crate::topic_config::LogConfig, Overrides), Refusal> {
        let name = name_of(&t.name);
        let md = cluster.metadata();
        let live = md.live_brokers();
        let (partitions, replication_factor, assignments) = if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                return Err((
                    error::INVALID_REQUEST,
                    "both a partition count or replication factor and replica assignments were given".into(),
                ));
            }
            let mut sorted: Vec<_> = t.assignments.iter().collect();
            sorted.sort_by_key(|a| a.partition_index);
            let mut lists = Vec::with_capacity(sorted.len());
            for (i, a) in sorted.iter().enumerate() {
                if a.partition_index != i as i32 {
                    return Err((
                        error::INVALID_REPLICA_ASSIGNMENT,
                        "the assigned partitions are not 0.. once each".into(),
                    ));
                }
                let list: Vec<u64> = a.broker_ids.iter().map(|b| b.0.max(0) as u64).collect();
                if let Some(b) = a
                    .broker_ids
                    .iter()
                    .find(|b| !live.contains(&(b.0.max(0) as u64)))
                {
                    return Err((
                        error::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "partition {i} is assigned to broker {}, which is not a live broker",
                            b.0
                        ),
                    ));
                }
                lists.push(list);
            }
            let rf = lists.first().map_or(0, |l| l.len() as i32);
            if lists.iter().any(|l| l.len() as i32 != rf) {
                return Err((
                    error::INVALID_REPLICA_ASSIGNMENT,
                    "all partitions must have the same number of replicas".into(),
                ));
            }
            (lists.len() as i32, rf, Some(lists))
        } else {
            let partitions = if t.num_partitions == -1 {
                self.config.default_partitions
            } else {
                t.num_partitions
            };
            let rf = match t.replication_factor {
                -1 => self.default_replication_factor(),
                rf => rf as i32,
            };
            (partitions, rf, None)
        };
        if replication_factor < 1 {
            return Err((
                error::INVALID_REPLICATION_FACTOR,
                format!("replication factor {replication_factor} is invalid: it must be at least 1 (or -1 for the default)"),
            ));
        }
        if replication_factor as usize > live.len() {
            return Err((
                error::INVALID_REPLICATION_FACTOR,
                format!(
                    "replication factor {replication_factor} is larger than the {} available brokers",
                    live.len()
                ),
            ));
        }
        if !(1..=catalog::PARTITIONS_MAX).contains(&partitions) {
            return Err((
                error::INVALID_PARTITIONS,
                format!(
                    "{partitions} partitions: a topic has from 1 to {}",
                    catalog::PARTITIONS_MAX
                ),
            ));
        }
        catalog::check_topic_name(name).map_err(|m| (error::INVALID_TOPIC_EXCEPTION, m))?;
        if md.topics.contains_key(name) {
            return Err(refusal(TopicError::Exists));
        }
        let overrides = topic_config::check_all(
            t.configs
                .iter()
                .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
        )
        .map_err(|e| (error::INVALID_CONFIG, e.0))?;
        let config = self.store.resolve(&overrides).map_err(refusal)?;
        if validate_only {
            return Ok((partitions, None, config, overrides));
        }
        let limit = deadline.saturating_duration_since(self.clock.now());
        let id = cluster
            .create_topic(
                name,
                partitions,
                replication_factor,
                assignments,
                overrides.clone(),
                limit,
            )
            .await
            .map_err(refusal)?;
        Ok((partitions, Some(id), config, overrides))
    }

    /// Replica assignments name partitions `first..` once each, each with this broker alone.
    fn check_assignments<'a>(
        &self,
        assignments: impl Iterator<Item = (i32, &'a [BrokerId])>,
        first: i32,
    ) -> Result<(), Refusal> {
        let me = self.config.node_id;
        let mut seen = std::collections::BTreeSet::new();
        for (partition, brokers) in assignments {
            if brokers.len() != 1 || brokers[0].0 != me {
                return Err((
                    error::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "partition {partition} is assigned to brokers {:?}: the only broker is {me}",
                        brokers.iter().map(|b| b.0).collect::<Vec<_>>()
                    ),
                ));
            }
            seen.insert(partition);
        }
        let expected =
            (first..first + seen.len() as i32).collect::<std::collections::BTreeSet<_>>();
        if seen != expected {
            return Err((
                error::INVALID_REPLICA_ASSIGNMENT,
                format!("the assigned partitions {seen:?} are not {first}.. once each"),
            ));
        }
        Ok(())
    }

    pub(super) async fn delete_topics(
        &self,
        req: DeleteTopicsRequest,
        version: i16,
        quota: Mutations,
    ) -> DeleteTopicsResponse {
        let mut resp = DeleteTopicsResponse::default();
        let deadline = self.admin_deadline(req.timeout_ms);
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
        // Every topic's name, id and partition count, to answer the one not given (v6 answers
        // both) and charge its partitions to the mutation quota.
        let known: Vec<(String, uuid::Uuid, i32)> = match &self.cluster {
            None => self
                .store
                .topics()
                .into_iter()
                .map(|t| {
                    let n = t.partitions.len() as i32;
                    (t.name.clone(), uuid::Uuid::from_u128(t.id), n)
                })
                .collect(),
            Some(c) => c
                .metadata()
                .topics
                .values()
                .map(|t| {
                    let n = t.partitions.len() as i32;
                    (t.name.clone(), uuid::Uuid::from_u128(t.id), n)
                })
                .collect(),
        };
        // A topic named twice: one answer for it, INVALID_REQUEST, and nothing deleted (Kafka's).
        let mut count: HashMap<String, usize> = HashMap::new();
        for (name, id) in &targets {
            *count
                .entry(name.clone().unwrap_or_else(|| id.to_string()))
                .or_default() += 1;
        }
        let mut answered = HashSet::new();
        for (name, id) in targets {
            let key = name.clone().unwrap_or_else(|| id.to_string());
            if count[&key] > 1 {
                if answered.insert(key) {
                    let mut r = DeletableTopicResult::default();
                    r.name = name.as_deref().map(topic_name);
                    r.error_code = error::INVALID_REQUEST;
                    if version >= 5 {
                        r.error_message =
                            Some(StrBytes::from_static_str("Duplicate topic in request."));
                    }
                    resp.responses.push(r);
                }
                continue;
            }
            let mut r = DeletableTopicResult::default();
            r.topic_id = id;
            let name = match name {
                Some(name) => {
                    if version >= 6 && id.is_nil() {
                        if let Some((_, known_id, _)) = known.iter().find(|(n, ..)| *n == name) {
                            r.topic_id = *known_id;
                        }
                    }
                    Some(name)
                }
                None => known
                    .iter()
                    .find(|(_, i, _)| *i == id)
                    .map(|(n, ..)| n.clone()),
            };
            match name {
                None => r.error_code = error::UNKNOWN_TOPIC_ID,
                Some(name) if catalog::is_internal(&name) => {
                    r.name = Some(topic_name(&name));
                    r.error_code = error::INVALID_REQUEST;
                    if version >= 5 {
                        r.error_message = Some(StrBytes::from_string(format!(
                            "{name} is an internal topic and cannot be deleted"
                        )));
                    }
                }
                Some(name) => {
                    r.name = Some(topic_name(&name));
                    let permits = known
                        .iter()
                        .find(|(n, ..)| *n == name)
                        .map_or(0, |(.., p)| *p);
                    if let Err((code, msg)) = quota.take(permits) {
                        r.error_code = code;
                        r.error_message = Some(StrBytes::from_string(msg));
                        resp.responses.push(r);
                        continue;
                    }
                    let deleted = match &self.cluster {
                        None => self.within(deadline, self.store.delete_topic(&name)).await,
                        Some(c) => {
                            let limit = deadline.saturating_duration_since(self.clock.now());
                            c.delete_topic(&name, limit).await
                        }
                    };
                    if let Err(e) = deleted {
                        quota.give_back(permits);
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

    pub(super) async fn create_partitions(
        &self,
        req: CreatePartitionsRequest,
        quota: Mutations,
    ) -> CreatePartitionsResponse {
        let mut resp = CreatePartitionsResponse::default();
        let deadline = self.admin_deadline(req.timeout_ms);
        // A topic named twice: one answer for it, INVALID_REQUEST, and nothing grown (Kafka's).
        let mut count: HashMap<String, usize> = HashMap::new();
        for t in &req.topics {
            *count.entry(name_of(&t.name).to_string()).or_default() += 1;
        }
        let mut answered = HashSet::new();
        for t in req.topics {
            let name = name_of(&t.name).to_string();
            let outcome = if count[&name] > 1 {
                if !answered.insert(name.clone()) {
                    continue;
                }
                Err((
                    error::INVALID_REQUEST,
                    "the topic appears more than once in the request".into(),
                ))
            } else {
                // The partitions added: the count asked for beyond the topic's.
                let now = match &self.cluster {
                    Some(c) => c.metadata().topics.get(&name).map(|t| t.partitions.len()),
                    None => self.store.topic(&name).map(|t| t.partitions.len()),
                };
                let permits = now.map_or(0, |n| (t.count - n as i32).max(0));
                let taken = if req.validate_only {
                    Ok(())
                } else {
                    quota.take(permits)
                };
                match taken {
                    Err(refused) => Err(refused),
                    Ok(()) => {
                        let grown = self
                            .grow(
                                &name,
                                t.count,
                                t.assignments.as_deref(),
                                req.validate_only,
                                deadline,
                            )
                            .await;
                        if grown.is_err() && !req.validate_only {
                            quota.give_back(permits);
                        }
                        grown
                    }
                }
            };
            let mut r = CreatePartitionsTopicResult::default();
            r.name = t.name;
            if let Err((code, msg)) = outcome {
                tracing::info!(topic = %name, code, %msg, "CreatePartitions refused");
                r.error_code = code;
                r.error_message = Some(StrBytes::from_string(msg));
            }
            resp.results.push(r);
        }
        resp
    }

    async fn grow(
        &self,
        name: &str,
        count: i32,
        assignments: Option<
            &[kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment],
        >,
        validate_only: bool,
        deadline: Instant,
    ) -> Result<(), Refusal> {
        catalog::check_topic_name(name).map_err(|m| (error::INVALID_TOPIC_EXCEPTION, m))?;
        if catalog::is_internal(name) {
            return Err((
                error::INVALID_REQUEST,
                format!("{name} is an internal topic: its partitions decide where groups live and cannot change"),
            ));
        }
        if let Some(cluster) = &self.cluster {
            let md = cluster.metadata();
            let topic = md
                .topics
                .get(name)
                .ok_or_else(|| refusal(TopicError::Unknown))?;
            let now = topic.partitions.len() as i32;
            if count <= now || count > catalog::PARTITIONS_MAX {
                return Err((
                    error::INVALID_PARTITIONS,
                    format!("topic currently has {now} partitions, which is higher than or equal to the requested {count}"),
                ));
            }
            // Every new partition has the topic's replication factor, as Kafka requires.
            let rf = topic
                .partitions
                .iter()
                .find(|p| p.moving.is_none())
                .map(|p| p.replicas.len());
            if let (Some(rf), Some(a)) = (rf, assignments) {
                if let Some(bad) = a.iter().find(|a| a.broker_ids.len() != rf) {
                    return Err((
                        error::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "inconsistent replication factor: the topic's partitions have {rf} \
                             replicas, a new one {}",
                            bad.broker_ids.len()
                        ),
                    ));
                }
            }
            let lists = assignments.map(|a| {
                a.iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0.max(0) as u64).collect())
                    .collect::<Vec<Vec<u64>>>()
            });
            if validate_only {
                return Ok(());
            }
            let limit = deadline.saturating_duration_since(self.clock.now());
            return cluster
                .create_partitions(name, count, lists, limit)
                .await
                .map_err(refusal);
        }
        let topic = self
            .store
            .check_new_partitions(name, count)
            .map_err(refusal)?;
        if let Some(assignments) = assignments {
            let from = topic.partitions.len() as i32;
            if assignments.len() as i32 != count - from {
                return Err((
                    error::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "{} assignments for {} new partitions",
                        assignments.len(),
                        count - from
                    ),
                ));
            }
            self.check_assignments(
                assignments
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (from + i as i32, &a.broker_ids[..])),
                from,
            )?;
        }
        if validate_only {
            return Ok(());
        }
        self.within(deadline, self.store.create_partitions(name, count))
            .await
            .map(|_| ())
            .map_err(refusal)
    }

    /// DeleteRecords on a replicated partition (this broker must lead it): see
    /// [`crate::replication::log_start`].
    async fn delete_replicated_records(
        &self,
        part: &std::sync::Arc<crate::storage::log::Partition>,
        offset: i64,
        deadline: Instant,
    ) -> Result<i64, i16> {
        use crate::replication::log_start::LogStartError;
        let cluster = self.cluster.as_ref().ok_or(error::UNKNOWN_SERVER_ERROR)?;
        self.serving(&part.topic, part.index, -1)
            .map_err(|not| not.code)?;
        let view = cluster
            .replication()
            .replica(&part.topic, part.index)
            .ok_or(error::NOT_LEADER_OR_FOLLOWER)?;
        let left = deadline.saturating_duration_since(self.clock.now());
        let moved = self.clock.timeout(
            left,
            cluster
                .replication()
                .delete_records(&self.store, part.clone(), view.group, offset),
        );
        match moved.await {
            Ok(Ok(start)) => Ok(start),
            Ok(Err(LogStartError::Topic(e))) => Err(topic_error_code(&e)),
            Ok(Err(LogStartError::Replica(e))) => Err(match e {
                crate::replication::node::ReplicaError::NotLeader { .. } => {
                    error::NOT_LEADER_OR_FOLLOWER
                }
                _ => error::REQUEST_TIMED_OUT,
            }),
            Err(_) => Err(error::REQUEST_TIMED_OUT),
        }
    }

    pub(super) async fn delete_records(&self, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
        let mut resp = DeleteRecordsResponse::default();
        let deadline = self.admin_deadline(req.timeout_ms);
        for t in req.topics {
            let name = name_of(&t.name).to_string();
            let topic = self.store.topic(&name);
            let mut tr = DeleteRecordsTopicResult::default();
            tr.name = t.name;
            for p in t.partitions {
                let mut pr = DeleteRecordsPartitionResult::default();
                pr.partition_index = p.partition_index;
                pr.low_watermark = -1;
                let part = topic.as_ref().and_then(|t| t.partition(p.partition_index));
                match part {
                    None => pr.error_code = error::UNKNOWN_TOPIC_OR_PARTITION,
                    Some(_) if catalog::is_internal(&name) => {
                        pr.error_code = error::INVALID_TOPIC_EXCEPTION
                    }
                    // In a cluster, a Raft entry the leader proposes moves every replica's.
                    // Asked and answered in Kafka offsets; the log moves in its own.
                    Some(part) if self.cluster.is_some() => {
                        let offset = match p.offset {
                            -1 => -1,
                            kafka => part.to_log(kafka),
                        };
                        match self.delete_replicated_records(part, offset, deadline).await {
                            Ok(start) => pr.low_watermark = part.to_kafka(start),
                            Err(code) => pr.error_code = code,
                        }
                    }
                    Some(part) => match self
                        .within(deadline, self.store.delete_records(part.clone(), p.offset))
                        .await
                    {
                        Ok(start) => pr.low_watermark = start,
                        Err(e) => {
                            tracing::info!(topic = %name, partition = p.partition_index, offset = p.offset, error = %e, "DeleteRecords refused");
                            pr.error_code = topic_error_code(&e);
                        }
                    },
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        resp
    }
}

pub(super) fn topic_error_code(e: &TopicError) -> i16 {
    match e {
        TopicError::Exists => error::TOPIC_ALREADY_EXISTS,
        TopicError::Unknown => error::UNKNOWN_TOPIC_OR_PARTITION,
        TopicError::InvalidName(_) => error::INVALID_TOPIC_EXCEPTION,
        TopicError::InvalidPartitions(_) => error::INVALID_PARTITIONS,
        TopicError::InvalidConfig(_) => error::INVALID_CONFIG,
        TopicError::OffsetOutOfRange(_) => error::OFFSET_OUT_OF_RANGE,
        TopicError::Storage(_) => error::KAFKA_STORAGE_ERROR,
        TopicError::TimedOut(_) => error::REQUEST_TIMED_OUT,
        TopicError::InvalidReplicationFactor(_) => error::INVALID_REPLICATION_FACTOR,
        TopicError::InvalidReplicaAssignment(_) => error::INVALID_REPLICA_ASSIGNMENT,
        TopicError::NoController(_) => error::NOT_CONTROLLER,
    }
}
