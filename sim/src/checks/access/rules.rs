//! What each probe request needs of the ACLs, as Kafka's authorizer decides it (written from
//! Kafka's documented rules, apart from the broker's own authorizer): the operation on the
//! resource each API is checked against, with Kafka's implications and its rule for an
//! operation on "some topic" (an idempotent producer's InitProducerId, KIP-679).

use broker::security::acl::{op, pattern, permission, resource, AclBinding, CLUSTER_NAME};

use crate::history::probe::{ABSENT_TOPIC, PROBE_GROUP, PROBE_TOPIC, PROBE_TXN};
use crate::history::Probe;

/// One way to meet a clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// This operation on this resource: `(resource type, name, operation)`.
    On(i8, &'static str, i8),
    /// This operation on some topic (any one the ACLs allow it on).
    AnyTopic(i8),
}

fn topic(operation: i8) -> Need {
    Need::On(resource::TOPIC, PROBE_TOPIC, operation)
}

fn group(operation: i8) -> Need {
    Need::On(resource::GROUP, PROBE_GROUP, operation)
}

fn txn_id(operation: i8) -> Need {
    Need::On(resource::TRANSACTIONAL_ID, PROBE_TXN, operation)
}

fn cluster(operation: i8) -> Need {
    Need::On(resource::CLUSTER, CLUSTER_NAME, operation)
}

/// What `probe` needs: every clause met, each by one of its alternatives.
pub fn needs(probe: Probe) -> Vec<Vec<Need>> {
    use op::*;
    use Probe as P;
    match probe {
        P::Produce => vec![vec![topic(WRITE)]],
        P::Fetch | P::DescribeProducers => vec![vec![topic(READ)]],
        P::ListOffsets
        | P::OffsetForLeaderEpoch
        | P::Metadata
        | P::MetadataListing
        | P::DescribeTopicPartitions => {
            vec![vec![topic(DESCRIBE)]]
        }
        P::CreateTopics => vec![vec![
            cluster(CREATE),
            Need::On(resource::TOPIC, ABSENT_TOPIC, CREATE),
        ]],
        P::DeleteTopics => vec![vec![Need::On(resource::TOPIC, ABSENT_TOPIC, DELETE)]],
        P::InitProducerId => vec![vec![cluster(IDEMPOTENT_WRITE), Need::AnyTopic(WRITE)]],
        P::FindCoordinator | P::DescribeGroups | P::ConsumerGroupDescribe => {
            vec![vec![group(DESCRIBE)]]
        }
        P::JoinGroup | P::SyncGroup | P::Heartbeat | P::LeaveGroup | P::ConsumerGroupHeartbeat => {
            vec![vec![group(READ)]]
        }
        P::OffsetCommit => vec![vec![group(READ)], vec![topic(READ)]],
        P::OffsetFetch => vec![vec![group(DESCRIBE)], vec![topic(DESCRIBE)]],
        P::ListGroups => vec![vec![cluster(DESCRIBE), group(DESCRIBE)]],
        P::DeleteGroups => vec![vec![group(DELETE)]],
        P::OffsetDelete => vec![vec![group(DELETE)], vec![topic(READ)]],
        P::CreatePartitions => vec![vec![topic(ALTER)]],
        P::DeleteRecords => vec![vec![topic(DELETE)]],
        P::DescribeTopicConfigs => vec![vec![topic(DESCRIBE_CONFIGS)]],
        P::DescribeBrokerConfigs | P::ListConfigResources | P::DescribeClientQuotas => {
            vec![vec![cluster(DESCRIBE_CONFIGS)]]
        }
        P::AlterTopicConfigs | P::IncrementalAlterTopicConfigs => {
            vec![vec![topic(ALTER_CONFIGS)]]
        }
        P::AlterBrokerConfigs | P::IncrementalAlterBrokerConfigs | P::AlterClientQuotas => {
            vec![vec![cluster(ALTER_CONFIGS)]]
        }
        P::DescribeLogDirs
        | P::DescribeAcls
        | P::ListPartitionReassignments
        | P::DescribeQuorum
        | P::DescribeUserScramCredentials => vec![vec![cluster(DESCRIBE)]],
        P::CreateAcls
        | P::DeleteAcls
        | P::ElectLeaders
        | P::AlterPartitionReassignments
        | P::UnregisterBroker
        | P::AlterUserScramCredentials
        | P::UpdateFeatures => vec![vec![cluster(ALTER)]],
        P::AddPartitionsToTxn => vec![vec![txn_id(WRITE)], vec![topic(WRITE)]],
        P::AddPartitionsToTxnBatched | P::WriteTxnMarkers => vec![vec![cluster(CLUSTER_ACTION)]],
        P::AddOffsetsToTxn => vec![vec![txn_id(WRITE)], vec![group(READ)]],
        P::EndTxn => vec![vec![txn_id(WRITE)]],
        P::TxnOffsetCommit => vec![vec![txn_id(WRITE)], vec![group(READ)], vec![topic(READ)]],
        P::DescribeTransactions | P::ListTransactions => vec![vec![txn_id(DESCRIBE)]],
    }
}

/// Whether an ALLOW of `granted` allows `wanted` (Kafka: READ, WRITE, DELETE and ALTER
/// imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL implies everything).
pub fn implies(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || granted == op::ALL
        || (wanted == op::DESCRIBE
            && [op::READ, op::WRITE, op::DELETE, op::ALTER].contains(&granted))
        || (wanted == op::DESCRIBE_CONFIGS && granted == op::ALTER_CONFIGS)
}

/// Whether `b` is about `principal` (by name or `User:*`) from any host.
fn names(b: &AclBinding, principal: &str) -> bool {
    b.host == "*" && (b.principal == principal || b.principal == "User:*")
}

/// Whether the ACLs let `principal` do `operation` on the resource: a DENY of the operation
/// (or of ALL) that matches the resource wins; else an ALLOW that implies it.
pub fn permits<'a>(
    acls: impl Iterator<Item = &'a AclBinding> + Clone,
    principal: &str,
    (resource_type, name, operation): (i8, &str, i8),
) -> bool {
    let applies = |b: &&AclBinding| {
        b.resource_type == resource_type
            && names(b, principal)
            && match b.pattern {
                pattern::LITERAL => b.name == name || b.name == "*",
                pattern::PREFIXED => name.starts_with(b.name.as_str()),
                _ => false,
            }
    };
    let denied = acls.clone().filter(applies).any(|b| {
        b.permission == permission::DENY && (b.operation == operation || b.operation == op::ALL)
    });
    !denied
        && acls
            .filter(applies)
            .any(|b| b.permission == permission::ALLOW && implies(b.operation, operation))
}

/// Kafka's rule for an operation on some topic: allowed when an ALLOW of it (literal or
/// prefixed) is not covered by a DENY of it — a DENY on every topic covers all; a prefixed
/// DENY covers the names that start with its prefix; a literal DENY covers the literal ALLOW of
/// the same name.
pub fn permits_some_topic<'a>(
    acls: impl Iterator<Item = &'a AclBinding> + Clone,
    principal: &str,
    operation: i8,
) -> bool {
    let mine = |b: &&AclBinding| b.resource_type == resource::TOPIC && names(b, principal);
    let denies: Vec<&AclBinding> = acls
        .clone()
        .filter(mine)
        .filter(|b| {
            b.permission == permission::DENY && (b.operation == operation || b.operation == op::ALL)
        })
        .collect();
    let every = |d: &&&AclBinding| d.pattern == pattern::LITERAL && d.name == "*";
    if denies.iter().any(|d| every(&d)) {
        return false;
    }
    acls.filter(mine)
        .filter(|b| b.permission == permission::ALLOW && implies(b.operation, operation))
        .any(|a| {
            let by_prefix = denies
                .iter()
                .any(|d| d.pattern == pattern::PREFIXED && a.name.starts_with(d.name.as_str()));
            let literally = a.pattern == pattern::LITERAL
                && denies
                    .iter()
                    .any(|d| d.pattern == pattern::LITERAL && d.name == a.name);
            !by_prefix && !literally
        })
}
