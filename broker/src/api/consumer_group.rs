//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat, ConsumerGroupDescribe):
//! the wire format in and out; what they do is the [`group`](crate::group) coordinator's.
//! Assignments travel by topic id; ConsumerGroupDescribe names the topics too.

use std::net::SocketAddr;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{name_of, topic_name, Broker};
use crate::group::{ConsumerHeartbeat, TopicPartitions};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn opt(v: &Option<StrBytes>) -> Option<String> {
    v.as_ref().map(|s| s.to_string())
}

/// A member's partitions as the request has them, by topic id.
fn partitions_of(list: &[consumer_group_heartbeat_request::TopicPartitions]) -> TopicPartitions {
    let mut out = TopicPartitions::new();
    for t in list {
        out.entry(t.topic_id.as_u128())
            .or_default()
            .extend(t.partitions.iter().copied());
    }
    out
}

impl Broker {
    pub(super) async fn consumer_group_heartbeat(
        &self,
        req: ConsumerGroupHeartbeatRequest,
        version: i16,
        client_id: Option<String>,
        peer: Option<SocketAddr>,
    ) -> ConsumerGroupHeartbeatResponse {
        // `group.version` 0: the cluster runs the classic protocol only (Kafka's answer).
        if !self.consumer_protocol_on() {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(crate::protocol::error::UNSUPPORTED_VERSION);
        }
        let asked = ConsumerHeartbeat {
            version,
            group_id: req.group_id.to_string(),
            member_id: req.member_id.to_string(),
            member_epoch: req.member_epoch,
            instance_id: opt(&req.instance_id),
            rack_id: opt(&req.rack_id),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed_topic_names: req
                .subscribed_topic_names
                .as_ref()
                .map(|ts| ts.iter().map(|t| name_of(t).to_string()).collect()),
            subscribed_topic_regex: opt(&req.subscribed_topic_regex),
            server_assignor: opt(&req.server_assignor),
            topic_partitions: req.topic_partitions.as_deref().map(partitions_of),
            client_id: client_id.unwrap_or_default(),
            client_host: peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
        };
        let a = self.groups.consumer_heartbeat(asked).await;
        let mut resp = ConsumerGroupHeartbeatResponse::default();
        resp.error_code = a.error;
        resp.error_message = a.message.as_deref().map(s);
        resp.member_id = a.member_id.as_deref().map(s);
        resp.member_epoch = a.member_epoch;
        resp.heartbeat_interval_ms = a.heartbeat_interval_ms;
        resp.assignment = a.assignment.map(|tp| {
            let mut out = consumer_group_heartbeat_response::Assignment::default();
            out.topic_partitions = tp
                .into_iter()
                .map(|(id, ps)| {
                    let mut t = consumer_group_heartbeat_response::TopicPartitions::default();
                    t.topic_id = uuid::Uuid::from_u128(id);
                    t.partitions = ps.into_iter().collect();
                    t
                })
                .collect();
            out
        });
        resp
    }

    pub(super) async fn consumer_group_describe(
        &self,
        req: ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        if !self.consumer_protocol_on() {
            let groups = req
                .group_ids
                .iter()
                .map(|g| {
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(g.clone())
                        .with_error_code(crate::protocol::error::UNSUPPORTED_VERSION)
                })
                .collect();
            return ConsumerGroupDescribeResponse::default().with_groups(groups);
        }
        let ids = req.group_ids.iter().map(|g| g.to_string()).collect();
        let assignment = |tp: &TopicPartitions| {
            let mut a = consumer_group_describe_response::Assignment::default();
            a.topic_partitions = tp
                .iter()
                .map(|(id, ps)| {
                    let id = uuid::Uuid::from_u128(*id);
                    let mut t = consumer_group_describe_response::TopicPartitions::default();
                    t.topic_id = id;
                    t.topic_name = topic_name(&self.topic_name_of_id(id).unwrap_or_default());
                    t.partitions = ps.iter().copied().collect();
                    t
                })
                .collect();
            a
        };
        let mut resp = ConsumerGroupDescribeResponse::default();
        for g in self.groups.consumer_describe(ids).await {
            let mut d = consumer_group_describe_response::DescribedGroup::default();
            d.group_id = GroupId(s(&g.group_id));
            d.error_code = g.error;
            d.error_message = g.message.as_deref().map(s);
            d.group_state = s(g.state);
            d.group_epoch = g.epoch;
            d.assignment_epoch = g.assignment_epoch;
            d.assignor_name = s(g.assignor);
            // Kafka names a group's operations only when it describes the group.
            d.authorized_operations = super::cluster::operations::if_asked(
                req.include_authorized_operations && g.error == 0,
                super::cluster::operations::GROUP,
            );
            d.members = g
                .members
                .iter()
                .map(|m| {
                    let mut out = consumer_group_describe_response::Member::default();
                    out.member_id = s(&m.member_id);
                    out.instance_id = m.instance_id.as_deref().map(s);
                    out.rack_id = m.rack_id.as_deref().map(s);
                    out.member_epoch = m.member_epoch;
                    out.client_id = s(&m.client_id);
                    out.client_host = s(&m.client_host);
                    out.subscribed_topic_names = m
                        .subscribed_topic_names
                        .iter()
                        .map(|t| topic_name(t))
                        .collect();
                    out.subscribed_topic_regex = m.subscribed_topic_regex.as_deref().map(s);
                    out.assignment = assignment(&m.assignment);
                    out.target_assignment = assignment(&m.target_assignment);
                    // v1: a member of the consumer protocol (1).
                    out.member_type = 1;
                    out
                })
                .collect();
            resp.groups.push(d);
        }
        resp
    }
}
