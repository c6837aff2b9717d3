//! Metadata: this broker, and the topics asked for (auto-created where that applies).

use kafka_protocol::messages::{
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    BrokerId, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::operations;
use super::{name_of, topic_name, Broker};
use crate::catalog::Topic;
use crate::protocol::error;

impl Broker {
    pub(super) async fn metadata(&self, req: MetadataRequest, version: i16) -> MetadataResponse {
        let mut resp = MetadataResponse::default();
        let (host, port) = self.config.advertised();
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(self.config.node_id);
        b.host = StrBytes::from_string(host);
        b.port = port;
        resp.brokers.push(b);
        if version >= 2 {
            resp.cluster_id = Some(StrBytes::from_static_str(super::cluster::CLUSTER_ID));
        }
        if version >= 1 {
            resp.controller_id = BrokerId(self.config.node_id);
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

    fn describe(&self, t: &Topic, version: i16, ops: i32) -> MetadataResponseTopic {
        let me = BrokerId(self.config.node_id);
        let mut mt = MetadataResponseTopic::default();
        mt.name = Some(topic_name(&t.name));
        if version >= 1 {
            // Clients leave internal topics out of their listings.
            mt.is_internal = crate::catalog::is_internal(&t.name);
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
