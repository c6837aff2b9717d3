//! The consumer-group APIs (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete): the wire
//! format in and out, per version; what they do is the [`group`](crate::group) coordinator's.

use std::net::SocketAddr;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{name_of, topic_name, Broker};
use crate::group::{CommitRequest, JoinRequest, MemberRef, SyncRequest};
use crate::protocol::error;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn opt(v: &Option<StrBytes>) -> Option<String> {
    v.as_ref().map(|s| s.to_string())
}

/// How Kafka names a client's host: "/" and its address.
fn client_host(peer: Option<SocketAddr>) -> String {
    peer.map(|p| format!("/{}", p.ip())).unwrap_or_default()
}

impl Broker {
    pub(super) fn find_coordinator(
        &self,
        req: FindCoordinatorRequest,
        version: i16,
        listener: Option<&str>,
    ) -> FindCoordinatorResponse {
        let (host, port) = self.own_address(listener);
        let me = BrokerId(self.config.node_id);
        let clustered = self.cluster.is_some();
        // Who coordinates a group (a transactional id): this broker on a single node; in a
        // cluster, the leader of its partition of the offsets topic (of the transactions'
        // state topic).
        let where_ = |key: &str| -> Option<(BrokerId, String, i32)> {
            if !clustered {
                return Some((me, host.clone(), port));
            }
            let found = match req.key_type {
                1 => self.txns.as_ref()?.coordinator_of(key, listener),
                _ => self.groups.coordinator_of(key, listener),
            };
            found.map(|(id, host, port)| (BrokerId(id), host, port))
        };
        let answer = |key: &str| -> (i16, Option<String>) {
            match req.key_type {
                0 if key.is_empty() => (
                    error::INVALID_GROUP_ID,
                    Some("the group id is empty".into()),
                ),
                0 if !key.is_empty() && !clustered => {
                    self.groups.offsets_topic_wanted();
                    (error::NONE, None)
                }
                0 if clustered && where_(key).is_none() => (
                    error::COORDINATOR_NOT_AVAILABLE,
                    Some("the group's partition of __consumer_offsets has no leader yet".into()),
                ),
                0 => (error::NONE, None),
                1 if key.is_empty() => (
                    error::INVALID_REQUEST,
                    Some("the transactional id is empty".into()),
                ),
                1 if self.txns.is_none() => (
                    error::COORDINATOR_NOT_AVAILABLE,
                    Some("no transaction coordinator".into()),
                ),
                1 if clustered && where_(key).is_none() => (
                    error::COORDINATOR_NOT_AVAILABLE,
                    Some(
                        "the transactional id's partition of __transaction_state has no leader yet"
                            .into(),
                    ),
                ),
                1 => {
                    if let Some(txns) = &self.txns {
                        txns.topic_wanted();
                    }
                    (error::NONE, None)
                }
                t => (
                    error::INVALID_REQUEST,
                    Some(format!("unknown key type {t}")),
                ),
            }
        };
        let mut resp = FindCoordinatorResponse::default();
        if version >= 4 {
            for key in &req.coordinator_keys {
                let (code, message) = answer(key);
                let mut c = find_coordinator_response::Coordinator::default();
                c.key = key.clone();
                c.error_code = code;
                c.error_message = message.map(StrBytes::from_string);
                if let Some((node, h, p)) = (code == error::NONE).then(|| where_(key)).flatten() {
                    c.node_id = node;
                    c.host = s(&h);
                    c.port = p;
                } else {
                    if c.error_code == error::NONE {
                        // The leader went between two looks.
                        c.error_code = error::COORDINATOR_NOT_AVAILABLE;
                    }
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                }
                resp.coordinators.push(c);
            }
        } else {
            let (code, message) = answer(&req.key);
            resp.error_code = code;
            if version >= 1 {
                resp.error_message = message.map(StrBytes::from_string);
            }
            if let Some((node, h, p)) = (code == error::NONE).then(|| where_(&req.key)).flatten() {
                resp.node_id = node;
                resp.host = s(&h);
                resp.port = p;
            } else {
                if resp.error_code == error::NONE {
                    resp.error_code = error::COORDINATOR_NOT_AVAILABLE;
                }
                resp.node_id = BrokerId(-1);
                resp.port = -1;
            }
        }
        resp
    }

    pub(super) async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: Option<String>,
        peer: Option<SocketAddr>,
    ) -> JoinGroupResponse {
        let r = self
            .groups
            .join(JoinRequest {
                group_id: req.group_id.to_string(),
                member_id: req.member_id.to_string(),
                group_instance_id: opt(&req.group_instance_id),
                require_known_member_id: version >= 4,
                client_id: client_id.unwrap_or_default(),
                client_host: client_host(peer),
                session_timeout_ms: req.session_timeout_ms,
                // v0 has no rebalance timeout: the session timeout serves.
                rebalance_timeout_ms: if version >= 1 {
                    req.rebalance_timeout_ms
                } else {
                    req.session_timeout_ms
                },
                protocol_type: req.protocol_type.to_string(),
                protocols: req
                    .protocols
                    .iter()
                    .map(|p| (p.name.to_string(), p.metadata.clone()))
                    .collect(),
            })
            .await;
        let mut resp = JoinGroupResponse::default();
        resp.error_code = r.error;
        // An error carries no generation (-1), as Kafka answers, whichever layer refused.
        resp.generation_id = if r.error == 0 { r.generation } else { -1 };
        if version >= 7 {
            resp.protocol_type = r.protocol_type.map(StrBytes::from_string);
            resp.protocol_name = r.protocol_name.map(StrBytes::from_string);
        } else {
            // Not nullable before v7: an empty name instead.
            resp.protocol_name = Some(s(r.protocol_name.as_deref().unwrap_or("")));
        }
        resp.leader = s(&r.leader);
        resp.member_id = s(&r.member_id);
        resp.members = r
            .members
            .into_iter()
            .map(|(id, instance, metadata)| {
                let mut m = join_group_response::JoinGroupResponseMember::default();
                m.member_id = s(&id);
                if version >= 5 {
                    m.group_instance_id = instance.map(StrBytes::from_string);
                }
                m.metadata = metadata;
                m
            })
            .collect();
        resp
    }

    pub(super) async fn sync_group(
        &self,
        req: SyncGroupRequest,
        version: i16,
    ) -> SyncGroupResponse {
        let r = self
            .groups
            .sync(SyncRequest {
                group_id: req.group_id.to_string(),
                generation: req.generation_id,
                member_id: req.member_id.to_string(),
                group_instance_id: opt(&req.group_instance_id),
                protocol_type: opt(&req.protocol_type),
                protocol_name: opt(&req.protocol_name),
                assignments: req
                    .assignments
                    .iter()
                    .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                    .collect(),
            })
            .await;
        let mut resp = SyncGroupResponse::default();
        resp.error_code = r.error;
        if version >= 5 {
            resp.protocol_type = r.protocol_type.map(StrBytes::from_string);
            resp.protocol_name = r.protocol_name.map(StrBytes::from_string);
        }
        resp.assignment = r.assignment;
        resp
    }

    pub(super) async fn heartbeat(&self, req: HeartbeatRequest) -> HeartbeatResponse {
        let code = self
            .groups
            .heartbeat(
                req.group_id.to_string(),
                req.generation_id,
                MemberRef {
                    member_id: req.member_id.to_string(),
                    group_instance_id: opt(&req.group_instance_id),
                },
            )
            .await;
        let mut resp = HeartbeatResponse::default();
        resp.error_code = code;
        resp
    }

    pub(super) async fn leave_group(
        &self,
        req: LeaveGroupRequest,
        version: i16,
    ) -> LeaveGroupResponse {
        let members: Vec<MemberRef> = if version >= 3 {
            req.members
                .iter()
                .map(|m| MemberRef {
                    member_id: m.member_id.to_string(),
                    group_instance_id: opt(&m.group_instance_id),
                })
                .collect()
        } else {
            vec![MemberRef {
                member_id: req.member_id.to_string(),
                group_instance_id: None,
            }]
        };
        let codes = self
            .groups
            .leave(req.group_id.to_string(), members.clone())
            .await;
        let mut resp = LeaveGroupResponse::default();
        if version >= 3 {
            resp.members = members
                .into_iter()
                .zip(&codes)
                .map(|(m, code)| {
                    let mut r = leave_group_response::MemberResponse::default();
                    r.member_id = s(&m.member_id);
                    r.group_instance_id = m.group_instance_id.map(StrBytes::from_string);
                    r.error_code = *code;
                    r
                })
                .collect();
        } else {
            resp.error_code = codes.first().copied().unwrap_or(error::NONE);
        }
        resp
    }

    /// Hand the commit to the coordinator now (in the connection's order); the response once
    /// it is answered.
    pub(super) async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
    ) -> impl std::future::Future<Output = OffsetCommitResponse> {
        let asked: Vec<(TopicName, i32)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.clone(), p.partition_index))
            })
            .collect();
        let offsets = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        name_of(&t.name).to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        opt(&p.committed_metadata),
                    )
                })
            })
            .collect();
        let answer = self
            .groups
            .commit_in_order(CommitRequest {
                group_id: req.group_id.to_string(),
                generation: req.generation_id_or_member_epoch,
                member_id: req.member_id.to_string(),
                group_instance_id: opt(&req.group_instance_id),
                offsets,
                unknown_group: if version >= 9 {
                    error::GROUP_ID_NOT_FOUND
                } else {
                    error::ILLEGAL_GENERATION
                },
                member_epoch_commit: version >= 9,
            })
            .await;
        async move { commit_response(asked, answer.await) }
    }

    pub(super) async fn offset_fetch(
        &self,
        req: OffsetFetchRequest,
        version: i16,
    ) -> OffsetFetchResponse {
        let mut resp = OffsetFetchResponse::default();
        if version >= 8 {
            for g in &req.groups {
                let asked = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (name_of(&t.name).to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let mut out = offset_fetch_response::OffsetFetchResponseGroup::default();
                out.group_id = g.group_id.clone();
                // v9: the member asking, when it names itself (Kafka checks a consumer
                // protocol's member; none: an admin's or a classic consumer's fetch).
                let member = g
                    .member_id
                    .as_ref()
                    .map(|m| (m.to_string(), g.member_epoch))
                    .filter(|(m, e)| !m.is_empty() || *e >= 0);
                match self
                    .groups
                    .fetch_as(g.group_id.to_string(), asked, req.require_stable, member)
                    .await
                {
                    Ok(committed) => {
                        for c in committed {
                            if out
                                .topics
                                .last()
                                .is_none_or(|t| name_of(&t.name) != c.topic)
                            {
                                let mut t =
                                    offset_fetch_response::OffsetFetchResponseTopics::default();
                                t.name = topic_name(&c.topic);
                                out.topics.push(t);
                            }
                            let mut p =
                                offset_fetch_response::OffsetFetchResponsePartitions::default();
                            p.partition_index = c.partition;
                            p.committed_offset = c.offset;
                            p.committed_leader_epoch = c.leader_epoch;
                            // Kafka's answer has "" where no metadata was committed.
                            p.metadata =
                                Some(StrBytes::from_string(c.metadata.unwrap_or_default()));
                            p.error_code = c.error;
                            if let Some(t) = out.topics.last_mut() {
                                t.partitions.push(p);
                            }
                        }
                    }
                    Err(code) => out.error_code = code,
                }
                resp.groups.push(out);
            }
            return resp;
        }
        let asked = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (name_of(&t.name).to_string(), t.partition_indexes.clone()))
                .collect()
        });
        // require_stable from v7 (a read_committed consumer's).
        let stable = version >= 7 && req.require_stable;
        match self
            .groups
            .fetch(req.group_id.to_string(), asked, stable)
            .await
        {
            Ok(committed) => {
                for c in committed {
                    if resp
                        .topics
                        .last()
                        .is_none_or(|t| name_of(&t.name) != c.topic)
                    {
                        let mut t = offset_fetch_response::OffsetFetchResponseTopic::default();
                        t.name = topic_name(&c.topic);
                        resp.topics.push(t);
                    }
                    let mut p = offset_fetch_response::OffsetFetchResponsePartition::default();
                    p.partition_index = c.partition;
                    p.committed_offset = c.offset;
                    if version >= 5 {
                        p.committed_leader_epoch = c.leader_epoch;
                    }
                    p.metadata = Some(StrBytes::from_string(c.metadata.unwrap_or_default()));
                    p.error_code = c.error;
                    if let Some(t) = resp.topics.last_mut() {
                        t.partitions.push(p);
                    }
                }
            }
            Err(code) if version >= 2 => resp.error_code = code,
            Err(code) => {
                // v1 has no top-level error: every partition asked carries it.
                for t in req.topics.iter().flatten() {
                    let mut rt = offset_fetch_response::OffsetFetchResponseTopic::default();
                    rt.name = t.name.clone();
                    for p in &t.partition_indexes {
                        let mut rp = offset_fetch_response::OffsetFetchResponsePartition::default();
                        rp.partition_index = *p;
                        rp.committed_offset = -1;
                        rp.error_code = code;
                        rt.partitions.push(rp);
                    }
                    resp.topics.push(rt);
                }
            }
        }
        resp
    }

    pub(super) async fn list_groups(
        &self,
        req: ListGroupsRequest,
        version: i16,
    ) -> ListGroupsResponse {
        let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
        let types: Vec<String> = req
            .types_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let mut resp = ListGroupsResponse::default();
        for g in self.groups.list().await {
            if !states.is_empty() && !states.iter().any(|s| s.eq_ignore_ascii_case(g.state)) {
                continue;
            }
            let kind = if g.consumer_protocol {
                "consumer"
            } else {
                "classic"
            };
            if !types.is_empty() && !types.iter().any(|t| t == kind) {
                continue;
            }
            let mut l = list_groups_response::ListedGroup::default();
            l.group_id = GroupId(s(&g.group_id));
            l.protocol_type = s(&g.protocol_type);
            if version >= 4 {
                l.group_state = s(g.state);
            }
            if version >= 5 {
                l.group_type = s(kind);
            }
            resp.groups.push(l);
        }
        resp
    }

    pub(super) async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let ids: Vec<String> = req.groups.iter().map(|g| g.to_string()).collect();
        let mut resp = DescribeGroupsResponse::default();
        for g in self.groups.describe(ids).await {
            let mut d = describe_groups_response::DescribedGroup::default();
            d.group_id = GroupId(s(&g.group_id));
            d.error_code = g.error;
            if version >= 6 && g.error == error::NONE && g.state == "Dead" {
                // v6 (KIP-1043): a group that does not exist is said to be not found.
                d.error_code = error::GROUP_ID_NOT_FOUND;
                d.error_message = Some(s(&format!("Group {} not found.", g.group_id)));
            }
            d.group_state = s(g.state);
            d.protocol_type = s(&g.protocol_type);
            d.protocol_data = s(&g.protocol);
            d.members = g
                .members
                .into_iter()
                .map(|m| {
                    let mut dm = describe_groups_response::DescribedGroupMember::default();
                    dm.member_id = s(&m.member_id);
                    if version >= 4 {
                        dm.group_instance_id = m.group_instance_id.map(StrBytes::from_string);
                    }
                    dm.client_id = s(&m.client_id);
                    dm.client_host = s(&m.client_host);
                    dm.member_metadata = m.metadata;
                    dm.member_assignment = m.assignment;
                    dm
                })
                .collect();
            if version >= 3 {
                d.authorized_operations = super::cluster::operations::if_asked(
                    req.include_authorized_operations,
                    super::cluster::operations::GROUP,
                );
            }
            resp.groups.push(d);
        }
        resp
    }

    pub(super) async fn delete_groups(&self, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let ids: Vec<String> = req.groups_names.iter().map(|g| g.to_string()).collect();
        let codes = self.groups.delete_groups(ids.clone()).await;
        let mut resp = DeleteGroupsResponse::default();
        resp.results = ids
            .into_iter()
            .zip(codes)
            .map(|(id, code)| {
                let mut r = delete_groups_response::DeletableGroupResult::default();
                r.group_id = GroupId(s(&id));
                r.error_code = code;
                r
            })
            .collect();
        resp
    }

    pub(super) async fn offset_delete(&self, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let asked: Vec<(TopicName, i32)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.clone(), p.partition_index))
            })
            .collect();
        // A topic the cluster does not have: UNKNOWN_TOPIC_OR_PARTITION, as Kafka answers,
        // whether or not the group has offsets of it.
        let unknown: std::collections::HashSet<String> = asked
            .iter()
            .map(|(t, _)| name_of(t))
            .filter(|name| !self.topic_known(name))
            .map(str::to_string)
            .collect();
        let partitions = asked
            .iter()
            .filter(|(t, _)| !unknown.contains(name_of(t)))
            .map(|(t, p)| (name_of(t).to_string(), *p))
            .collect();
        let mut resp = OffsetDeleteResponse::default();
        match self
            .groups
            .delete_offsets(req.group_id.to_string(), partitions)
            .await
        {
            Err(code) => resp.error_code = code,
            Ok(codes) => {
                let mut codes = codes.into_iter();
                for (topic, partition) in asked {
                    let code = if unknown.contains(name_of(&topic)) {
                        error::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        codes.next().unwrap_or(error::NONE)
                    };
                    if resp.topics.last().is_none_or(|t| t.name != topic) {
                        let mut t = offset_delete_response::OffsetDeleteResponseTopic::default();
                        t.name = topic;
                        resp.topics.push(t);
                    }
                    let mut p = offset_delete_response::OffsetDeleteResponsePartition::default();
                    p.partition_index = partition;
                    p.error_code = code;
                    if let Some(t) = resp.topics.last_mut() {
                        t.partitions.push(p);
                    }
                }
            }
        }
        resp
    }
}

/// The OffsetCommit response: a code per partition asked for, in order.
fn commit_response(
    asked: Vec<(TopicName, i32)>,
    codes: Result<Vec<i16>, i16>,
) -> OffsetCommitResponse {
    let codes = match codes {
        Ok(codes) => codes,
        Err(code) => vec![code; asked.len()],
    };
    let mut resp = OffsetCommitResponse::default();

    for ((topic, partition), code) in asked.into_iter().zip(codes) {
        if resp.topics.last().is_none_or(|t| t.name != topic) {
            let mut t = offset_commit_response::OffsetCommitResponseTopic::default();
            t.name = topic;
            resp.topics.push(t);
        }
        let mut p = offset_commit_response::OffsetCommitResponsePartition::default();
        p.partition_index = partition;
        p.error_code = code;
        if let Some(t) = resp.topics.last_mut() {
            t.partitions.push(p);
        }
    }
    resp
}
