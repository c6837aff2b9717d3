//! The gate of the requests about the cluster as a whole (log directories, ACLs, SCRAM
//! credentials, partition moves, elections, the quorum, …): each refused whole, in its
//! response's own shape, without the cluster operation it takes; any other request passes.

use super::*;

/// The requests about the cluster as a whole: refused whole without the cluster operation.
pub(super) fn gate(access: &Access, body: RequestKind, version: i16) -> Gate {
    use RequestKind as R;
    let refusal = error::CLUSTER_AUTHORIZATION_FAILED;
    match body {
        // Before v3 the response has no error code: nothing is described.
        R::DescribeLogDirs(_) if !access.cluster(op::DESCRIBE) => {
            Gate::Answer(ResponseKind::DescribeLogDirs(
                DescribeLogDirsResponse::default().with_error_code(if version >= 3 {
                    refusal
                } else {
                    0
                }),
            ))
        }
        R::ListConfigResources(_) if !access.cluster(op::DESCRIBE_CONFIGS) => {
            Gate::Answer(ResponseKind::ListConfigResources(
                ListConfigResourcesResponse::default().with_error_code(refusal),
            ))
        }
        R::DescribeAcls(_) if !access.cluster(op::DESCRIBE) => {
            Gate::Answer(ResponseKind::DescribeAcls(
                DescribeAclsResponse::default()
                    .with_error_code(refusal)
                    .with_error_message(Some(text("not authorized to describe ACLs"))),
            ))
        }
        R::CreateAcls(r) if !access.cluster(op::ALTER) => {
            let results = r
                .creations
                .iter()
                .map(|_| {
                    create_acls_response::AclCreationResult::default().with_error_code(refusal)
                })
                .collect();
            Gate::Answer(ResponseKind::CreateAcls(
                CreateAclsResponse::default().with_results(results),
            ))
        }
        R::DeleteAcls(r) if !access.cluster(op::ALTER) => {
            let results = r
                .filters
                .iter()
                .map(|_| {
                    delete_acls_response::DeleteAclsFilterResult::default().with_error_code(refusal)
                })
                .collect();
            Gate::Answer(ResponseKind::DeleteAcls(
                DeleteAclsResponse::default().with_filter_results(results),
            ))
        }
        R::ElectLeaders(r) if !access.cluster(op::ALTER) => {
            let results = r
                .topic_partitions
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            elect_leaders_response::PartitionResult::default()
                                .with_partition_id(*p)
                                .with_error_code(refusal)
                        })
                        .collect();
                    elect_leaders_response::ReplicaElectionResult::default()
                        .with_topic(t.topic.clone())
                        .with_partition_result(partitions)
                })
                .collect();
            Gate::Answer(ResponseKind::ElectLeaders(
                ElectLeadersResponse::default()
                    .with_error_code(if version >= 1 { refusal } else { 0 })
                    .with_replica_election_results(results),
            ))
        }
        R::DescribeUserScramCredentials(_) if !access.cluster(op::DESCRIBE) => {
            Gate::Answer(ResponseKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsResponse::default().with_error_code(refusal),
            ))
        }
        R::AlterUserScramCredentials(r) if !access.cluster(op::ALTER) => {
            let mut users: Vec<&StrBytes> = r
                .deletions
                .iter()
                .map(|d| &d.name)
                .chain(r.upsertions.iter().map(|u| &u.name))
                .collect();
            users.sort();
            users.dedup();
            let results = users
                .into_iter()
                .map(|u| {
                    alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default(
                    )
                    .with_user(u.clone())
                    .with_error_code(refusal)
                })
                .collect();
            Gate::Answer(ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(results),
            ))
        }
        R::AlterPartitionReassignments(_) if !access.cluster(op::ALTER) => {
            Gate::Answer(ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default()
                    .with_error_code(refusal)
                    .with_error_message(Some(text("not authorized to reassign partitions"))),
            ))
        }
        R::DescribeQuorum(_) if !access.cluster(op::DESCRIBE) => {
            Gate::Answer(ResponseKind::DescribeQuorum(
                DescribeQuorumResponse::default()
                    .with_error_code(refusal)
                    .with_error_message(Some(text("not authorized to describe the quorum"))),
            ))
        }
        R::UnregisterBroker(_) if !access.cluster(op::ALTER) => {
            Gate::Answer(ResponseKind::UnregisterBroker(
                UnregisterBrokerResponse::default()
                    .with_error_code(refusal)
                    .with_error_message(Some(text("not authorized to unregister brokers"))),
            ))
        }
        R::ListPartitionReassignments(_) if !access.cluster(op::DESCRIBE) => {
            Gate::Answer(ResponseKind::ListPartitionReassignments(
                ListPartitionReassignmentsResponse::default()
                    .with_error_code(refusal)
                    .with_error_message(Some(text("not authorized to list reassignments"))),
            ))
        }
        other => Gate::Serve(other, Refused::new(access, Parts::Nothing)),
    }
}
