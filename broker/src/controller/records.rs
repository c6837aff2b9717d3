//! The records of the cluster metadata log (`__cluster_metadata`, partition 0 — the
//! controller's Raft group): each entry is a record batch of one record whose key names the
//! format and whose value is the record as JSON. Every broker applies them in log order to its
//! replica of the metadata ([`super::state`]); what a record does is decided there, from the
//! record and the state alone, so every replica decides the same.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};

use crate::config::Endpoint;
use crate::replication::transport::NodeId;
use crate::replication::wire::GroupId;
use crate::security::SecurityChange;
use crate::topic_config::Overrides;

/// The key of every metadata record: the format of its value.
const KEY: &[u8] = b"stillwater.metadata.v1";

/// A change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// A broker (re)started and serves clients at `host:port` (its first listener's address)
    /// and at `listeners`, its address on each listener (empty: one PLAINTEXT listener at
    /// `host:port`, as every record before listeners had names); it is live (not fenced).
    RegisterBroker {
        id: NodeId,
        host: String,
        port: i32,
        incarnation: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        listeners: Vec<Endpoint>,
        /// Its `broker_rack` (`None`: none given).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rack: Option<String>,
        /// The address the other brokers link with it at, `ip:port` (`None`: its entry in the
        /// configured voters, `cluster_peers`; every record before brokers could join).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inter_broker: Option<String>,
        /// The feature levels it supports (`None`: a broker of a version before it said;
        /// [`crate::features::supported_before_ranges`]). A broker that does not support a
        /// finalized level is not registered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        features: Option<Vec<crate::features::Range>>,
        /// The levels a new cluster starts at when this is the first broker it registers
        /// (`initial_features`; `None`: a broker of a version before it said, and a cluster
        /// such a broker formed keeps the levels before any was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bootstrap: Option<std::collections::BTreeMap<String, i16>>,
    },
    /// Forget broker `id` (retired: it holds no replica). Refused while a partition names it.
    UnregisterBroker {
        request: u64,
        id: NodeId,
    },
    /// The broker has not been heard from for longer than the session timeout.
    FenceBroker {
        id: NodeId,
        incarnation: u64,
    },
    /// A topic to create, with its partitions placed on `assignments` (one replica list per
    /// partition, the preferred leader first) or, without, on the live brokers.
    CreateTopic {
        request: u64,
        name: String,
        id: String,
        partitions: i32,
        replication_factor: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignments: Option<Vec<Vec<NodeId>>>,
        overrides: Overrides,
    },
    DeleteTopic {
        request: u64,
        name: String,
    },
    /// Grow a topic to `count` partitions.
    CreatePartitions {
        request: u64,
        name: String,
        count: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignments: Option<Vec<Vec<NodeId>>>,
    },
    /// Replace a topic's configs — with `base`, only if they are still `base` (an
    /// incremental change made from them; another change applied in between refuses it, and
    /// the proposer makes it again from the newer configs).
    AlterTopicConfig {
        request: u64,
        name: String,
        overrides: Overrides,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<Overrides>,
    },
    /// Replace the dynamic broker configs of broker `node`, or with `None` the cluster-wide
    /// default (Kafka broker keys) — with `base`, only if they are still `base`.
    AlterBrokerConfigs {
        request: u64,
        node: Option<NodeId>,
        configs: Overrides,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<Overrides>,
    },
    /// Replace client-metrics subscription `name`'s configs (none: the subscription is
    /// removed) — with `base`, only if they are still `base`.
    AlterClientMetrics {
        request: u64,
        name: String,
        configs: Overrides,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<Overrides>,
    },
    /// Leaders as their groups elected them: `(group, leader, term)`.
    Leaders {
        leaders: Vec<(GroupId, NodeId, u64)>,
    },
    /// A block of producer ids for the broker that asks (they are unique in the cluster).
    AllocateProducerIds {
        request: u64,
    },
    /// Changes to the security metadata (users' credentials, ACLs), applied in order; each may be
    /// refused alone.
    AlterSecurity {
        request: u64,
        changes: Vec<SecurityChange>,
    },
    /// Changes to the client quotas, each applied alone (AlterClientQuotas).
    AlterClientQuotas {
        request: u64,
        alterations: Vec<crate::quota::Alteration>,
    },
    /// Partitions' replicas moved to a new list (`Some`), or a move cancelled (`None`), each
    /// alone (Kafka's AlterPartitionReassignments; [`super::moves`]).
    AlterPartitionReassignments {
        request: u64,
        moves: Vec<Reassignment>,
    },
    /// Finalized feature levels changed (UpdateFeatures), all together or none: each level
    /// within every registered broker's range ([`crate::features::check_recorded`]).
    UpdateFeatures {
        request: u64,
        updates: Vec<crate::features::Update>,
    },
    /// The move of `group`'s replicas whose epoch is `epoch` is done: its Raft group's
    /// membership is the move's target (proposed by the group's leader).
    ReassignmentDone {
        group: GroupId,
        epoch: i64,
    },
}

/// One partition's asked-for replicas in [`MetadataRecord::AlterPartitionReassignments`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    /// `None`: cancel the partition's move.
    pub replicas: Option<Vec<NodeId>>,
}

impl MetadataRecord {
    /// The record as the one record of a batch (offsets are set when the log writes it).
    pub fn encode(&self, timestamp_ms: i64) -> Bytes {
        let value = serde_json::to_vec(self).expect("plain data encodes");
        let record = Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: timestamp_ms,
            key: Some(Bytes::from_static(KEY)),
            value: Some(Bytes::from(value)),
            headers: Default::default(),
            delete_horizon: false,
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            std::iter::once(&record),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("one uncompressed record encodes");
        buf.freeze()
    }

    /// Decode one record's key and value; `Ok(None)` for a record that is not metadata.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Option<Self>, String> {
        if key != Some(KEY) {
            return Ok(None);
        }
        let value = value.ok_or("a metadata record without a value")?;
        serde_json::from_slice(value)
            .map(Some)
            .map_err(|e| format!("undecodable metadata record: {e}"))
    }
}

/// The metadata records of a stretch of the log, with the offset after each; control batches
/// (Raft's own entries) skipped. A record that does not decode is reported and skipped (it was
/// checked when proposed; a newer broker's record this one does not know is not its to apply).
pub fn decode_batches(mut data: Bytes) -> Vec<(i64, MetadataRecord)> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let Ok(set) = RecordBatchDecoder::decode(&mut data) else {
            tracing::error!("an undecodable batch in the cluster metadata log");
            break;
        };
        for r in set.records {
            if r.control {
                continue;
            }
            match MetadataRecord::decode(r.key.as_deref(), r.value.as_deref()) {
                Ok(Some(record)) => out.push((r.offset + 1, record)),
                Ok(None) => {}
                Err(why) => tracing::error!(offset = r.offset, %why, "skipping a metadata record"),
            }
        }
    }
    out
}

/// A topic id as metadata records write it.
pub fn id_text(id: u128) -> String {
    format!("{id:032x}")
}

pub fn parse_id(text: &str) -> Option<u128> {
    u128::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_batch() {
        let r = MetadataRecord::CreateTopic {
            request: 9,
            name: "orders".into(),
            id: id_text(77),
            partitions: 3,
            replication_factor: 3,
            assignments: None,
            overrides: [("retention.ms".to_string(), "1000".to_string())].into(),
        };
        let batch = r.encode(1);
        crate::batch::validate(&batch).expect("a valid batch");
        let decoded = decode_batches(batch);
        assert_eq!(decoded, vec![(1, r)]);
        assert_eq!(
            MetadataRecord::decode(Some(b"other"), Some(b"{}")),
            Ok(None)
        );
        assert!(MetadataRecord::decode(Some(KEY), Some(b"{\"type\":\"nope\"}")).is_err());
    }
}

#[cfg(test)]
mod listener_tests {
    use super::*;
    use crate::controller::state::ClusterMetadata;

    #[test]
    fn a_registration_names_each_listener_and_one_without_is_plaintext() {
        // As every broker wrote it before listeners had names.
        let old = br#"{"type":"register_broker","id":2,"host":"h2","port":9092,"incarnation":5}"#;
        let old = MetadataRecord::decode(Some(KEY), Some(old))
            .unwrap()
            .unwrap();
        let new = MetadataRecord::RegisterBroker {
            id: 3,
            host: "c3".into(),
            port: 9093,
            incarnation: 6,
            listeners: vec![
                Endpoint {
                    name: "CLIENT".into(),
                    host: "c3".into(),
                    port: 9093,
                },
                Endpoint {
                    name: "INTERNAL".into(),
                    host: "10.0.0.3".into(),
                    port: 9094,
                },
            ],
            rack: Some("eu-1a".into()),
            inter_broker: Some("10.0.0.3:9095".into()),
            features: Some(crate::features::supported()),
            bootstrap: Some(crate::features::initial_levels("").unwrap()),
        };
        let decoded = decode_batches(new.encode(1));
        assert_eq!(decoded, vec![(1, new.clone())]);
        let mut m = ClusterMetadata::new();
        m.apply(&old);
        m.apply(&new);
        let (b2, b3) = (&m.brokers[&2], &m.brokers[&3]);
        assert_eq!(b2.address_on(Some("PLAINTEXT")), Some(("h2".into(), 9092)));
        assert_eq!(b2.address_on(Some("INTERNAL")), None);
        assert_eq!(
            b3.address_on(Some("INTERNAL")),
            Some(("10.0.0.3".into(), 9094))
        );
        assert_eq!(b3.address_on(None), Some(("c3".into(), 9093)));
        assert_eq!(b3.address_on(Some("PLAINTEXT")), None);
        // A record from before brokers could join names no inter-broker address.
        assert_eq!(b2.inter_broker, None);
        assert_eq!(b3.inter_broker.as_deref(), Some("10.0.0.3:9095"));
    }
}
