//! Topics named by id (KIP-516) and leaders named with their addresses (KIP-951).
//!
//! From Fetch v13 and Produce v13 a request names its topics by id, not by name. Before
//! anything else reads such a request (the authorizer, the handlers) each topic is given the
//! name its id has now ([`Broker::name_topics`]); an id no topic has (a deleted topic's: a
//! topic re-created under the same name has a new id) is left without a name, and answered
//! UNKNOWN_TOPIC_ID. Answers at those versions carry each topic's id ([`Broker::answer_ids`]).
//!
//! From Produce v10 and Fetch v16 an answer that says "not the leader" names the leader this
//! broker knows, with its address (`node_endpoints`), so a client moves to it without asking
//! for metadata first ([`Broker::name_leaders`]).

use kafka_protocol::messages::{
    fetch_response, produce_response, BrokerId, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{name_of, topic_name, Broker};
use crate::protocol::error;

/// The first Fetch version that names topics by id.
pub(super) const FETCH_BY_ID: i16 = 13;
/// The first Produce version that names topics by id.
pub(super) const PRODUCE_BY_ID: i16 = 13;
/// The first Produce version whose answers name the leader and its address.
const PRODUCE_LEADERS: i16 = 10;
/// The first Fetch version whose answers carry the leaders' addresses.
const FETCH_ENDPOINTS: i16 = 16;

impl Broker {
    /// The name of the topic whose id is `id` now.
    pub(super) fn topic_name_of_id(&self, id: Uuid) -> Option<String> {
        if id.is_nil() {
            return None;
        }
        if let Some(t) = self.store.topic_by_id(id.as_u128()) {
            return Some(t.name.clone());
        }
        // In a cluster, a topic this broker holds no replica of is in the metadata only.
        let cluster = self.cluster.as_ref()?;
        cluster
            .metadata()
            .topics
            .values()
            .find(|t| t.id == id.as_u128())
            .map(|t| t.name.clone())
    }

    /// The id of the topic named `name` now (nil when there is none).
    fn topic_id_of_name(&self, name: &str) -> Uuid {
        let id = match &self.cluster {
            None => self.store.topic(name).map(|t| t.id),
            Some(c) => c.metadata().topics.get(name).map(|t| t.id),
        };
        id.map_or(Uuid::nil(), Uuid::from_u128)
    }

    /// Give the topics of a request that names them by id the names of their ids (none for
    /// an id no topic has).
    pub(super) fn name_topics(&self, body: &mut RequestKind, version: i16) {
        match body {
            RequestKind::Fetch(r) if version >= FETCH_BY_ID => {
                for t in &mut r.topics {
                    t.topic = topic_name(&self.topic_name_of_id(t.topic_id).unwrap_or_default());
                }
            }
            RequestKind::Produce(r) if version >= PRODUCE_BY_ID => {
                for t in &mut r.topic_data {
                    t.name = topic_name(&self.topic_name_of_id(t.topic_id).unwrap_or_default());
                }
            }
            // Metadata v10+ may ask for topics by id alone (a consumer given its assignment
            // by topic id, KIP-848); an id no topic has stays nameless: UNKNOWN_TOPIC_ID.
            RequestKind::Metadata(r) if version >= 10 => {
                let Some(topics) = r.topics.as_mut() else {
                    return;
                };
                if topics.iter().all(|t| t.topic_id.is_nil()) {
                    return;
                }
                for t in topics.iter_mut().filter(|t| !t.topic_id.is_nil()) {
                    t.name = self.topic_name_of_id(t.topic_id).map(|n| topic_name(&n));
                }
                // Kafka answers the ids no topic has first.
                topics.sort_by_key(|t| t.name.is_some());
            }
            _ => {}
        }
    }

    /// Give every topic of an answer that names topics by id its id, where the handler (or
    /// the authorizer, for the topics it refused) knew only the name.
    pub(super) fn answer_ids(&self, body: &mut ResponseKind, version: i16) {
        match body {
            ResponseKind::Fetch(r) if version >= FETCH_BY_ID => {
                for t in r.responses.iter_mut().filter(|t| t.topic_id.is_nil()) {
                    t.topic_id = self.topic_id_of_name(name_of(&t.topic));
                }
            }
            ResponseKind::Produce(r) if version >= PRODUCE_BY_ID => {
                for t in r.responses.iter_mut().filter(|t| t.topic_id.is_nil()) {
                    t.topic_id = self.topic_id_of_name(name_of(&t.name));
                }
            }
            _ => {}
        }
    }

    /// Name, in an answer of partitions this broker does not lead, the leader it knows and
    /// that leader's address on `listener` (KIP-951), so the client moves to it at once.
    pub(super) fn name_leaders(
        &self,
        body: &mut ResponseKind,
        version: i16,
        listener: Option<&str>,
    ) {
        let mut leaders = Vec::new();
        match body {
            ResponseKind::Produce(r) if version >= PRODUCE_LEADERS => {
                for t in &mut r.responses {
                    for p in &mut t.partition_responses {
                        if !moved(p.error_code) {
                            continue;
                        }
                        if let Some((leader, epoch)) =
                            self.partition_leader(name_of(&t.name), p.index)
                        {
                            p.current_leader.leader_id = BrokerId(leader);
                            p.current_leader.leader_epoch = epoch;
                            leaders.push(leader);
                        }
                    }
                }
                r.node_endpoints = self
                    .endpoints(&mut leaders, listener)
                    .map(|(id, host, port, rack)| {
                        produce_response::NodeEndpoint::default()
                            .with_node_id(BrokerId(id))
                            .with_host(StrBytes::from_string(host))
                            .with_port(port)
                            .with_rack(rack.map(StrBytes::from_string))
                    })
                    .collect();
            }
            ResponseKind::Fetch(r) if version >= FETCH_ENDPOINTS => {
                // The fetch handler names the leader (v12+); its address is added here.
                leaders.extend(
                    r.responses
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .filter(|p| moved(p.error_code))
                        .map(|p| p.current_leader.leader_id.0)
                        .filter(|&l| l >= 0),
                );
                r.node_endpoints = self
                    .endpoints(&mut leaders, listener)
                    .map(|(id, host, port, rack)| {
                        fetch_response::NodeEndpoint::default()
                            .with_node_id(BrokerId(id))
                            .with_host(StrBytes::from_string(host))
                            .with_port(port)
                            .with_rack(rack.map(StrBytes::from_string))
                    })
                    .collect();
            }
            _ => {}
        }
    }

    /// The live brokers among `ids` (once each) with their addresses on `listener`.
    fn endpoints(
        &self,
        ids: &mut Vec<i32>,
        listener: Option<&str>,
    ) -> impl Iterator<Item = (i32, String, i32, Option<String>)> {
        ids.sort_unstable();
        ids.dedup();
        let wanted = std::mem::take(ids);
        let brokers = if wanted.is_empty() {
            Vec::new()
        } else {
            self.live_brokers(listener)
        };
        brokers
            .into_iter()
            .filter(move |b| wanted.binary_search(&b.0).is_ok())
    }
}

/// Whether an error says the partition is led elsewhere (or by a newer leader).
fn moved(code: i16) -> bool {
    code == error::NOT_LEADER_OR_FOLLOWER || code == error::FENCED_LEADER_EPOCH
}
