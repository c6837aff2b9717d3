//! Metadata: this broker, and the topics asked for (auto-created where that applies).

use kafka_protocol::messages::{
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    BrokerId, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::operations;
use super::{name_of, topic_name, Broker};
use crate::protocol::error;
use crate::storage::catalog::Topic;

impl Broker {
    pub(super) async fn metadata(
        &self,
        req: MetadataRequest,
        version: i16,
        listener: Option<&str>,
    ) -> MetadataResponse {
        let mut resp = MetadataResponse::default();
        for (id, host, port, rack) in self.live_brokers(listener) {
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(id);
            b.host = StrBytes::from_string(host);
            b.port = port;
            b.rack = rack.map(StrBytes::from_string);
            resp.brokers.push(b);
        }
        if version >= 2 {
            resp.cluster_id = Some(StrBytes::from_static_str(super::cluster::CLUSTER_ID));
        }
        if version >= 1 {
            resp.controller_id = BrokerId(self.controller_id());
        }
        if (8..=10).contains(&version) {
            resp.cluster_authorized_operations = operations::if_asked(
                req.include_cluster_authorized_operations,
                operations::CLUSTER,
            );
        }
        let topic_ops = operations::if_asked(
            version >= 8 && req.include_topic_authorized_operations,
            operations::TOPIC,
        );
        let may_create = version < 4 || req.allow_auto_topic_creation;
        let wanted: Option<Vec<_>> = match req.topics {
            None => None,
            Some(list) if list.is_empty() && version == 0 => None,
            Some(list) => Some(list),
        };
        if self.cluster.is_some() {
            self.cluster_topics(wanted, may_create, version, topic_ops, &mut resp)
                .await;
            return resp;
        }
        match wanted {
            None => {
                for t in self.store.topics() {
                    resp.topics.push(self.describe(&t, version, topic_ops));
                }
            }
            Some(list) => {
                for req_topic in list {
                    let Some(name) = req_topic.name else {
                        let mut mt = MetadataResponseTopic::default();
                        mt.topic_id = req_topic.topic_id;
                        mt.name = None;
                        mt.error_code = error::UNKNOWN_TOPIC_ID;
                        resp.topics.push(mt);
                        continue;
                    };
                    match self.topic_or_create(name_of(&name), may_create).await {
                        Ok(t) => resp.topics.push(self.describe(&t, version, topic_ops)),
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

    /// The brokers clients of `listener` may use: `(id, host, port, rack)` — this one on a
    /// single node; in a cluster, every registered broker that is not fenced and has that
    /// listener, at its address there — but not this one while it is cut off from the
    /// metadata's quorum ([`crate::controller::Controller::cut_off`]). Its view is then stale
    /// and the leaders it knew have moved, yet it answers fastest: librdkafka asks the broker
    /// it used last and kafka-python the one with the fewest requests in flight, so clients
    /// kept asking it and waited for the whole cut. Left out, it is dropped from their lists
    /// (as the controller's fencing of it will do on the other side) and they ask the others.
    pub(super) fn live_brokers(
        &self,
        listener: Option<&str>,
    ) -> Vec<(i32, String, i32, Option<String>)> {
        match &self.cluster {
            None => {
                let (host, port) = self.own_address(listener);
                vec![(self.config.node_id, host, port, self.config.rack())]
            }
            Some(c) => {
                let leave_out = c.cut_off().then_some(self.config.node_id as u64);
                c.metadata()
                    .brokers
                    .values()
                    .filter(|b| !b.fenced && Some(b.id) != leave_out)
                    .filter_map(|b| {
                        let (host, port) = b.address_on(listener)?;
                        Some((b.id as i32, host, port, b.rack.clone()))
                    })
                    .collect()
            }
        }
    }

    /// While this broker's replica of the cluster metadata has not caught up since it started
    /// ([`crate::controller::Controller::caught_up`]), a watch that turns true when it has;
    /// `None` when there is nothing to wait for (a single node loads its metadata before
    /// serving). Kafka's broker opens its listeners only once it has caught up: before, it
    /// would name no brokers (a broker that just joined has not applied their registrations),
    /// topics from an older point of the log, and users and ACLs since revoked.
    pub fn metadata_loading(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        let caught_up = self.cluster.as_ref()?.caught_up();
        let loaded = *caught_up.borrow();
        (!loaded).then_some(caught_up)
    }

    /// This broker's address as clients of `listener` are told (`None`: its first listener's).
    pub(super) fn own_address(&self, listener: Option<&str>) -> (String, i32) {
        let endpoints = self.config.advertised_endpoints();
        listener
            .and_then(|name| endpoints.iter().find(|e| e.name == name))
            .or(endpoints.first())
            .map(|e| (e.host.clone(), e.port))
            .unwrap_or_else(|| self.config.advertised())
    }

    /// The controller clients send admin requests to: this broker on a single node; in a
    /// cluster, the leader of the metadata's group, or this broker while there is none. Every
    /// broker takes admin requests and proposes them to the metadata's group (bounded by the
    /// request's timeout), as KRaft's brokers forward them; an id of -1 instead leaves
    /// librdkafka's admin client waiting for a controller until its request times out, without
    /// asking again (seen: CreateTopics unanswered for 30 s after an election of the metadata
    /// leader on a loaded host). A leader this broker has lost its link to is not named
    /// ([`crate::controller::Controller::reachable_leader`]); a broker cut off from the
    /// metadata's quorum could propose nothing: it names the first other broker it knows of.
    pub(super) fn controller_id(&self) -> i32 {
        let me = self.config.node_id;
        match &self.cluster {
            None => me,
            Some(c) => match c.reachable_leader() {
                Some(l) => l as i32,
                None if c.cut_off() => c
                    .metadata()
                    .brokers
                    .values()
                    .find(|b| !b.fenced && b.id as i32 != me)
                    .map_or(me, |b| b.id as i32),
                None => me,
            },
        }
    }

    /// The topics of a Metadata answer in a cluster, from this broker's replica of the cluster
    /// metadata (auto-creating through the controller where that applies).
    async fn cluster_topics(
        &self,
        wanted: Option<Vec<kafka_protocol::messages::metadata_request::MetadataRequestTopic>>,
        may_create: bool,
        version: i16,
        ops: i32,
        resp: &mut MetadataResponse,
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let names: Vec<(Option<kafka_protocol::messages::TopicName>, uuid::Uuid)> = match wanted {
            None => cluster
                .metadata()
                .topics
                .keys()
                .filter(|n| n.as_str() != crate::controller::METADATA_TOPIC)
                .map(|n| (Some(topic_name(n)), uuid::Uuid::nil()))
                .collect(),
            Some(list) => list.into_iter().map(|t| (t.name, t.topic_id)).collect(),
        };
        for (name, id) in names {
            let Some(name) = name else {
                let mut mt = MetadataResponseTopic::default();
                mt.topic_id = id;
                mt.name = None;
                mt.error_code = error::UNKNOWN_TOPIC_ID;
                resp.topics.push(mt);
                continue;
            };
            let text = name_of(&name).to_string();
            let known = cluster.metadata().topics.contains_key(&text)
                && text != crate::controller::METADATA_TOPIC;
            let outcome = if known {
                Ok(())
            } else {
                self.topic_or_create(&text, may_create).await.map(|_| ())
            };
            match outcome.and_then(|()| {
                self.describe_replicated(&text, version, ops)
                    .ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)
            }) {
                Ok(mt) => resp.topics.push(mt),
                Err(code) => {
                    let mut mt = MetadataResponseTopic::default();
                    mt.name = Some(name);
                    mt.error_code = code;
                    resp.topics.push(mt);
                }
            }
        }
    }

    /// A topic as the cluster metadata has it: its partitions' replicas and leaders.
    fn describe_replicated(
        &self,
        name: &str,
        version: i16,
        ops: i32,
    ) -> Option<MetadataResponseTopic> {
        let md = self.cluster.as_ref()?.metadata();
        let t = md.topics.get(name)?;
        let mut mt = MetadataResponseTopic::default();
        mt.name = Some(topic_name(name));
        if version >= 1 {
            mt.is_internal = crate::storage::catalog::is_internal(name);
        }
        if version >= 8 {
            mt.topic_authorized_operations = ops;
        }
        if version >= 10 {
            mt.topic_id = uuid::Uuid::from_u128(t.id);
        }
        for (index, p) in t.partitions.iter().enumerate() {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = index as i32;
            match self.partition_leader(name, index as i32) {
                Some((leader, epoch)) => {
                    mp.leader_id = BrokerId(leader);
                    if version >= 7 {
                        mp.leader_epoch = epoch;
                    }
                }
                None => {
                    mp.error_code = error::LEADER_NOT_AVAILABLE;
                    mp.leader_id = BrokerId(-1);
                    if version >= 7 {
                        mp.leader_epoch = -1;
                    }
                }
            }
            let live = |b: &u64| md.brokers.get(b).is_some_and(|b| !b.fenced);
            // A cancelled move's replicas are the original ones at once, as on Kafka; the
            // metadata keeps the added ones until the group has let them go.
            let replicas = match &p.moving {
                Some(m) if m.cancelled => &m.target,
                _ => &p.replicas,
            };
            mp.replica_nodes = replicas.iter().map(|&b| BrokerId(b as i32)).collect();
            mp.isr_nodes = replicas
                .iter()
                .filter(|b| live(b))
                .map(|&b| BrokerId(b as i32))
                .collect();
            if version >= 5 {
                mp.offline_replicas = replicas
                    .iter()
                    .filter(|b| !live(b))
                    .map(|&b| BrokerId(b as i32))
                    .collect();
            }
            mt.partitions.push(mp);
        }
        Some(mt)
    }

    fn describe(&self, t: &Topic, version: i16, ops: i32) -> MetadataResponseTopic {
        let me = BrokerId(self.config.node_id);
        let mut mt = MetadataResponseTopic::default();
        mt.name = Some(topic_name(&t.name));
        if version >= 1 {
            // Clients leave internal topics out of their listings.
            mt.is_internal = crate::storage::catalog::is_internal(&t.name);
        }
        if version >= 8 {
            mt.topic_authorized_operations = ops;
        }
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
}
