//! Authorization of every request, as Kafka's authorizer checks it: before a request is
//! handled, [`gate`] decides what its principal may do — the whole request refused at once
//! (a group it may not read, a cluster action it may not take), or narrowed to the topics,
//! groups and resources it may touch; after it is handled, [`Refused::merge`] (in `merge.rs`)
//! puts the refused parts back into the response with Kafka's error codes
//! (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED,
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED), hides the topics and groups it may not describe
//! from listings, and fills the authorized-operations fields.
//!
//! Invariant: with an authorizer, no handler sees a topic, group or cluster action the
//! request's principal is not allowed, as the ACLs applied on this broker say when the request
//! arrives. Without one (the default), every request passes unchanged.

mod cluster;
mod features;
mod merge;
mod quotas;
mod txn;

use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::name_of;
use crate::config::AuthorizerSettings;
use crate::protocol::error;
use crate::security::acl::{self, op, resource, Requester, CLUSTER_NAME};
use crate::security::{Principal, SecurityMetadata};

/// Who a connection is: its principal (SASL, a TLS client certificate, or `User:ANONYMOUS`)
/// and the address it comes from.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub host: String,
}

impl Session {
    pub fn new(principal: Principal, peer: Option<std::net::SocketAddr>) -> Session {
        Session {
            principal,
            host: peer.map_or_else(|| "*".into(), |p| p.ip().to_string()),
        }
    }
}

/// What a request's principal may do, decided against one snapshot of the ACLs.
#[derive(Clone)]
pub(crate) struct Access(Option<Arc<Checked>>);

struct Checked {
    md: Arc<SecurityMetadata>,
    settings: Arc<AuthorizerSettings>,
    principal: String,
    host: String,
}

impl Access {
    pub(super) fn new(
        settings: Option<&Arc<AuthorizerSettings>>,
        md: impl FnOnce() -> Arc<SecurityMetadata>,
        session: &Session,
    ) -> Access {
        Access(settings.map(|settings| {
            Arc::new(Checked {
                md: md(),
                settings: settings.clone(),
                principal: session.principal.to_string(),
                host: session.host.clone(),
            })
        }))
    }

    pub(crate) fn allows(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        match &self.0 {
            None => true,
            Some(c) => acl::authorize(
                &c.md.acls,
                &c.settings,
                Requester {
                    principal: &c.principal,
                    host: &c.host,
                },
                operation,
                resource_type,
                name,
            ),
        }
    }

    pub(crate) fn topic(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::TOPIC, name)
    }

    pub(crate) fn group(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::GROUP, name)
    }

    pub(crate) fn cluster(&self, operation: i8) -> bool {
        self.allows(operation, resource::CLUSTER, CLUSTER_NAME)
    }

    /// Whether some ACL lets the principal do `operation` to some resource of this type (an
    /// idempotent producer needs WRITE on a topic, any topic: KIP-679).
    fn on_any(&self, operation: i8, resource_type: i8) -> bool {
        let Some(c) = &self.0 else { return true };
        if c.settings.super_users.contains(&c.principal) {
            return true;
        }
        c.md.acls.iter().any(|b| {
            b.resource_type == resource_type
                && b.permission == acl::permission::ALLOW
                && (b.operation == operation || b.operation == op::ALL)
                && self.allows(operation, resource_type, &b.name)
        })
    }

    /// The authorized-operations bits of a resource (Kafka's `AclOperation` codes).
    pub(crate) fn operations(&self, resource_type: i8, name: &str) -> i32 {
        acl::operations_of(resource_type)
            .iter()
            .filter(|o| self.allows(**o, resource_type, name))
            .fold(0, |bits, o| bits | (1 << o))
    }

    fn on(&self) -> bool {
        self.0.is_some()
    }
}

/// What to do with a request.
pub(super) enum Gate {
    /// Handle this (perhaps narrowed) request; merge what was refused into its response.
    Serve(RequestKind, Refused),
    /// Answer this at once: the whole request is refused.
    Answer(ResponseKind),
}

/// What was taken out of a request, to be answered with its error.
pub(super) struct Refused {
    access: Access,
    parts: Parts,
    /// The request's version: a response field the version lacks must stay at its default.
    version: i16,
}

/// The refused parts: topics with their partitions, names of groups, config resources.
enum Parts {
    Nothing,
    Topics(Vec<(String, Vec<i32>)>),
    Names(Vec<String>),
    /// Config resources: `(resource type, name, error)`.
    Resources(Vec<(i8, String, i16)>),
}

impl Refused {
    fn new(access: &Access, parts: Parts) -> Refused {
        Refused {
            access: access.clone(),
            parts,
            version: 0,
        }
    }

    fn topics(access: &Access, refused: Vec<(String, Vec<i32>)>) -> Refused {
        let parts = if refused.is_empty() {
            Parts::Nothing
        } else {
            Parts::Topics(refused)
        };
        Refused::new(access, parts)
    }

    fn names(access: &Access, names: Vec<String>) -> Refused {
        let parts = if names.is_empty() {
            Parts::Nothing
        } else {
            Parts::Names(names)
        };
        Refused::new(access, parts)
    }

    /// Whether anything was refused (an acks=0 producer refused gets its connection closed).
    pub(super) fn any(&self) -> bool {
        !matches!(self.parts, Parts::Nothing)
    }
}

/// Keep in `items` what `allowed` allows; the names (with partitions) of the others.
fn split<T>(
    items: &mut Vec<T>,
    name: impl Fn(&T) -> &str,
    partitions: impl Fn(&T) -> Vec<i32>,
    allowed: impl Fn(&str) -> bool,
) -> Vec<(String, Vec<i32>)> {
    let mut refused = Vec::new();
    items.retain(|t| {
        let keep = allowed(name(t));
        if !keep {
            refused.push((name(t).to_string(), partitions(t)));
        }
        keep
    });
    refused
}

/// Keep in `items` what `allowed` allows; the names of the others.
fn split_names<T>(
    items: &mut Vec<T>,
    name: impl Fn(&T) -> &str,
    allowed: impl Fn(&str) -> bool,
) -> Vec<String> {
    split(items, name, |_| Vec::new(), allowed)
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Decide what of `body` its principal may have handled.
pub(super) fn gate(access: &Access, body: RequestKind, version: i16) -> Gate {
    if !access.on() {
        return Gate::Serve(body, Refused::new(access, Parts::Nothing));
    }
    match decide(access, body, version) {
        Gate::Serve(body, mut refused) => {
            refused.version = version;
            Gate::Serve(body, refused)
        }
        answer => answer,
    }
}

fn decide(access: &Access, body: RequestKind, version: i16) -> Gate {
    use RequestKind as R;
    let topics = |refused| Refused::topics(access, refused);
    if txn::handles(&body) {
        return txn::gate(access, body, version);
    }
    if quotas::handles(&body) {
        return quotas::gate(access, body);
    }
    if features::handles(&body) {
        return features::gate(access, body);
    }
    if let R::Produce(r) = &body {
        if let Some(refused) = txn::produce_refused(access, r) {
            return refused;
        }
    }
    // From v13 Produce and Fetch name topics by id; an id no topic has was given no name,
    // and is answered UNKNOWN_TOPIC_ID whoever asks (there is nothing to authorize).
    let unknown_id = |n: &str| n.is_empty() && version >= 13;
    match body {
        R::Produce(mut r) => {
            let refused = split(
                &mut r.topic_data,
                |t| name_of(&t.name),
                |t| t.partition_data.iter().map(|p| p.index).collect(),
                |n| unknown_id(n) || access.topic(op::WRITE, n),
            );
            Gate::Serve(R::Produce(r), topics(refused))
        }
        R::Fetch(mut r) => {
            let refused = split(
                &mut r.topics,
                |t| name_of(&t.topic),
                |t| t.partitions.iter().map(|p| p.partition).collect(),
                |n| unknown_id(n) || access.topic(op::READ, n),
            );
            if r.topics.is_empty() && !refused.is_empty() {
                // Nothing left to wait for: answered now, not after max_wait_ms.
                let mut resp = ResponseKind::Fetch(FetchResponse::default());
                merge::topics(
                    &mut resp,
                    &refused,
                    error::TOPIC_AUTHORIZATION_FAILED,
                    version,
                );
                return Gate::Answer(resp);
            }
            Gate::Serve(R::Fetch(r), topics(refused))
        }
        R::ListOffsets(mut r) => {
            let refused = split(
                &mut r.topics,
                |t| name_of(&t.name),
                |t| t.partitions.iter().map(|p| p.partition_index).collect(),
                |n| access.topic(op::DESCRIBE, n),
            );
            Gate::Serve(R::ListOffsets(r), topics(refused))
        }
        R::OffsetForLeaderEpoch(mut r) => {
            let refused = split(
                &mut r.topics,
                |t| name_of(&t.topic),
                |t| t.partitions.iter().map(|p| p.partition).collect(),
                |n| access.topic(op::DESCRIBE, n),
            );
            Gate::Serve(R::OffsetForLeaderEpoch(r), topics(refused))
        }
        R::DescribeProducers(mut r) => {
            let refused = split(
                &mut r.topics,
                |t| name_of(&t.name),
                |t| t.partition_indexes.clone(),
                |n| access.topic(op::READ, n),
            );
            Gate::Serve(R::DescribeProducers(r), topics(refused))
        }
        R::DeleteRecords(mut r) => {
            let refused = split(
                &mut r.topics,
                |t| name_of(&t.name),
                |t| t.partitions.iter().map(|p| p.partition_index).collect(),
                |n| access.topic(op::DELETE, n),
            );
            Gate::Serve(R::DeleteRecords(r), topics(refused))
        }
        R::CreatePartitions(mut r) => {
            let refused = split(
                &mut r.topics,
                |t| name_of(&t.name),
                |_| Vec::new(),
                |n| access.topic(op::ALTER, n),
            );
            Gate::Serve(R::CreatePartitions(r), topics(refused))
        }
        R::CreateTopics(mut r) => {
            let anywhere = access.cluster(op::CREATE);
            let refused = split(
                &mut r.topics,
                |t| name_of(&t.name),
                |_| Vec::new(),
                |n| anywhere || access.topic(op::CREATE, n),
            );
            Gate::Serve(R::CreateTopics(r), topics(refused))
        }
        R::DeleteTopics(mut r) => {
            let allowed = |n: &str| access.topic(op::DELETE, n);
            let mut refused = split(&mut r.topic_names, |t| name_of(t), |_| Vec::new(), allowed);
            refused.extend(split(
                &mut r.topics,
                |t| t.name.as_ref().map_or("", name_of),
                |_| Vec::new(),
                allowed,
            ));
            Gate::Serve(R::DeleteTopics(r), topics(refused))
        }
        R::DescribeConfigs(mut r) => {
            let refused = config_resources(access, &mut r.resources, op::DESCRIBE_CONFIGS, |c| {
                (c.resource_type, c.resource_name.as_str())
            });
            Gate::Serve(R::DescribeConfigs(r), resources(access, refused))
        }
        R::AlterConfigs(mut r) => {
            let refused = config_resources(access, &mut r.resources, op::ALTER_CONFIGS, |c| {
                (c.resource_type, c.resource_name.as_str())
            });
            Gate::Serve(R::AlterConfigs(r), resources(access, refused))
        }
        R::IncrementalAlterConfigs(mut r) => {
            let refused = config_resources(access, &mut r.resources, op::ALTER_CONFIGS, |c| {
                (c.resource_type, c.resource_name.as_str())
            });
            Gate::Serve(R::IncrementalAlterConfigs(r), resources(access, refused))
        }
        R::Metadata(mut r) => {
            let mut refused = Vec::new();
            if let Some(asked) = &mut r.topics {
                refused = split(
                    asked,
                    |t| t.name.as_ref().map_or("", name_of),
                    |_| Vec::new(),
                    |n| access.topic(op::DESCRIBE, n),
                );
                // Auto-creation needs CREATE, on the cluster or on each topic.
                r.allow_auto_topic_creation &= access.cluster(op::CREATE)
                    || asked.iter().all(|t| {
                        t.name
                            .as_ref()
                            .is_some_and(|n| access.topic(op::CREATE, name_of(n)))
                    });
            }
            Gate::Serve(R::Metadata(r), topics(refused))
        }
        R::DescribeTopicPartitions(mut r) => {
            let asked = !r.topics.is_empty();
            let refused = split(
                &mut r.topics,
                |t| name_of(&t.name),
                |_| Vec::new(),
                |n| access.topic(op::DESCRIBE, n),
            );
            if asked && r.topics.is_empty() {
                // Nothing left that may be described (an empty list would ask for all).
                let mut resp = ResponseKind::DescribeTopicPartitions(
                    DescribeTopicPartitionsResponse::default(),
                );
                Refused::topics(access, refused).merge(&mut resp);
                return Gate::Answer(resp);
            }
            Gate::Serve(R::DescribeTopicPartitions(r), topics(refused))
        }
        R::OffsetCommit(mut r) => {
            if !access.group(op::READ, r.group_id.as_str()) {
                let all = r
                    .topics
                    .iter()
                    .map(|t| {
                        let parts = t.partitions.iter().map(|p| p.partition_index).collect();
                        (name_of(&t.name).to_string(), parts)
                    })
                    .collect::<Vec<_>>();
                let mut resp = ResponseKind::OffsetCommit(OffsetCommitResponse::default());
                merge::topics(&mut resp, &all, error::GROUP_AUTHORIZATION_FAILED, version);
                return Gate::Answer(resp);
            }
            let refused = split(
                &mut r.topics,
                |t| name_of(&t.name),
                |t| t.partitions.iter().map(|p| p.partition_index).collect(),
                |n| access.topic(op::READ, n),
            );
            Gate::Serve(R::OffsetCommit(r), topics(refused))
        }
        R::OffsetFetch(r) => offset_fetch(access, r, version),
        R::OffsetDelete(mut r) => {
            if !access.group(op::DELETE, r.group_id.as_str()) {
                return Gate::Answer(ResponseKind::OffsetDelete(
                    OffsetDeleteResponse::default()
                        .with_error_code(error::GROUP_AUTHORIZATION_FAILED),
                ));
            }
            let refused = split(
                &mut r.topics,
                |t| name_of(&t.name),
                |t| t.partitions.iter().map(|p| p.partition_index).collect(),
                |n| access.topic(op::READ, n),
            );
            Gate::Serve(R::OffsetDelete(r), topics(refused))
        }
        R::JoinGroup(r) if !access.group(op::READ, r.group_id.as_str()) => {
            Gate::Answer(ResponseKind::JoinGroup(
                JoinGroupResponse::default().with_error_code(error::GROUP_AUTHORIZATION_FAILED),
            ))
        }
        R::SyncGroup(r) if !access.group(op::READ, r.group_id.as_str()) => {
            Gate::Answer(ResponseKind::SyncGroup(
                SyncGroupResponse::default().with_error_code(error::GROUP_AUTHORIZATION_FAILED),
            ))
        }
        R::Heartbeat(r) if !access.group(op::READ, r.group_id.as_str()) => {
            Gate::Answer(ResponseKind::Heartbeat(
                HeartbeatResponse::default().with_error_code(error::GROUP_AUTHORIZATION_FAILED),
            ))
        }
        R::LeaveGroup(r) if !access.group(op::READ, r.group_id.as_str()) => {
            Gate::Answer(ResponseKind::LeaveGroup(
                LeaveGroupResponse::default().with_error_code(error::GROUP_AUTHORIZATION_FAILED),
            ))
        }
        R::ConsumerGroupHeartbeat(r) if !access.group(op::READ, r.group_id.as_str()) => {
            Gate::Answer(ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(error::GROUP_AUTHORIZATION_FAILED),
            ))
        }
        R::ConsumerGroupDescribe(mut r) => {
            let names = split_names(
                &mut r.group_ids,
                |g| g.as_str(),
                |g| access.group(op::DESCRIBE, g),
            );
            Gate::Serve(R::ConsumerGroupDescribe(r), Refused::names(access, names))
        }
        R::FindCoordinator(r) => find_coordinator(access, r, version),
        R::DescribeGroups(mut r) => {
            let names = split_names(
                &mut r.groups,
                |g| g.as_str(),
                |g| access.group(op::DESCRIBE, g),
            );
            Gate::Serve(R::DescribeGroups(r), Refused::names(access, names))
        }
        R::DeleteGroups(mut r) => {
            let names = split_names(
                &mut r.groups_names,
                |g| g.as_str(),
                |g| access.group(op::DELETE, g),
            );
            Gate::Serve(R::DeleteGroups(r), Refused::names(access, names))
        }
        R::InitProducerId(r) => init_producer_id(access, r),
        other => cluster::gate(access, other, version),
    }
}

fn resources(access: &Access, refused: Vec<(i8, String, i16)>) -> Refused {
    let parts = if refused.is_empty() {
        Parts::Nothing
    } else {
        Parts::Resources(refused)
    };
    Refused::new(access, parts)
}

/// Config resources (topics: type 2; brokers and their loggers: the cluster's) the principal
/// may not `operation`, taken out of `items`.
fn config_resources<T>(
    access: &Access,
    items: &mut Vec<T>,
    operation: i8,
    key: impl Fn(&T) -> (i8, &str),
) -> Vec<(i8, String, i16)> {
    let mut refused = Vec::new();
    items.retain(|t| {
        let (rt, name) = key(t);
        let (allowed, code) = match rt {
            2 => (
                access.topic(operation, name),
                error::TOPIC_AUTHORIZATION_FAILED,
            ),
            _ => (
                access.cluster(operation),
                error::CLUSTER_AUTHORIZATION_FAILED,
            ),
        };
        if !allowed {
            refused.push((rt, name.to_string(), code));
        }
        allowed
    });
    refused
}

fn find_coordinator(access: &Access, mut r: FindCoordinatorRequest, version: i16) -> Gate {
    let transactional = r.key_type == 1;
    let allowed = |key: &str| match transactional {
        true => access.allows(op::DESCRIBE, resource::TRANSACTIONAL_ID, key),
        false => access.group(op::DESCRIBE, key),
    };
    if version >= 4 {
        let names = split_names(&mut r.coordinator_keys, |k| k.as_str(), allowed);
        return Gate::Serve(
            RequestKind::FindCoordinator(r),
            Refused::names(access, names),
        );
    }
    if allowed(r.key.as_str()) {
        return Gate::Serve(
            RequestKind::FindCoordinator(r),
            Refused::new(access, Parts::Nothing),
        );
    }
    let code = match transactional {
        true => error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        false => error::GROUP_AUTHORIZATION_FAILED,
    };
    Gate::Answer(ResponseKind::FindCoordinator(
        FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    ))
}

fn init_producer_id(access: &Access, r: InitProducerIdRequest) -> Gate {
    let refusal = match &r.transactional_id {
        Some(t) if !access.allows(op::WRITE, resource::TRANSACTIONAL_ID, t.as_str()) => {
            Some(error::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        }
        None if !(access.cluster(op::IDEMPOTENT_WRITE)
            || access.on_any(op::WRITE, resource::TOPIC)) =>
        {
            Some(error::CLUSTER_AUTHORIZATION_FAILED)
        }
        _ => None,
    };
    match refusal {
        Some(code) => Gate::Answer(ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )),
        None => Gate::Serve(
            RequestKind::InitProducerId(r),
            Refused::new(access, Parts::Nothing),
        ),
    }
}

fn offset_fetch(access: &Access, mut r: OffsetFetchRequest, version: i16) -> Gate {
    let topic_allowed = |n: &str| access.topic(op::DESCRIBE, n);
    if version < 8 {
        if !access.group(op::DESCRIBE, r.group_id.as_str()) {
            // v1 has no error code of its own: each partition asked says it.
            let code = if version >= 2 {
                error::GROUP_AUTHORIZATION_FAILED
            } else {
                0
            };
            let all = r
                .topics
                .unwrap_or_default()
                .iter()
                .map(|t| (name_of(&t.name).to_string(), t.partition_indexes.clone()))
                .collect::<Vec<_>>();
            let mut resp =
                ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_error_code(code));
            merge::topics(&mut resp, &all, error::GROUP_AUTHORIZATION_FAILED, version);
            return Gate::Answer(resp);
        }
        let refused = match &mut r.topics {
            Some(asked) => split(
                asked,
                |t| name_of(&t.name),
                |t| t.partition_indexes.clone(),
                topic_allowed,
            ),
            None => Vec::new(),
        };
        return Gate::Serve(
            RequestKind::OffsetFetch(r),
            Refused::topics(access, refused),
        );
    }
    // v8 answers per group: a group refused whole, or topics refused within it.
    let mut groups = Vec::new();
    let mut refused = Vec::new();
    r.groups.retain_mut(|g| {
        if !access.group(op::DESCRIBE, g.group_id.as_str()) {
            groups.push(g.group_id.to_string());
            return false;
        }
        if let Some(asked) = &mut g.topics {
            refused.extend(split(
                asked,
                |t| name_of(&t.name),
                |t| t.partition_indexes.clone(),
                topic_allowed,
            ));
        }
        true
    });
    let parts = match (groups.is_empty(), refused.is_empty()) {
        (true, true) => Parts::Nothing,
        (false, _) => Parts::Names(groups),
        (true, false) => Parts::Topics(refused),
    };
    Gate::Serve(RequestKind::OffsetFetch(r), Refused::new(access, parts))
}
