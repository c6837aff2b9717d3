//! The client-quota requests' gate: describing the quotas takes DESCRIBE_CONFIGS on the
//! cluster, changing them ALTER_CONFIGS (Kafka's rule); refused, every entry is answered
//! CLUSTER_AUTHORIZATION_FAILED.

use kafka_protocol::messages::*;

use super::{Access, Gate, Parts, Refused};
use crate::protocol::error;
use crate::security::acl::op;

pub(super) fn handles(body: &RequestKind) -> bool {
    matches!(
        body,
        RequestKind::DescribeClientQuotas(_) | RequestKind::AlterClientQuotas(_)
    )
}

pub(super) fn gate(access: &Access, body: RequestKind) -> Gate {
    let refusal = error::CLUSTER_AUTHORIZATION_FAILED;
    match body {
        RequestKind::DescribeClientQuotas(_) if !access.cluster(op::DESCRIBE_CONFIGS) => {
            Gate::Answer(ResponseKind::DescribeClientQuotas(
                DescribeClientQuotasResponse::default()
                    .with_error_code(refusal)
                    .with_entries(None),
            ))
        }
        RequestKind::AlterClientQuotas(r) if !access.cluster(op::ALTER_CONFIGS) => {
            let entries = r
                .entries
                .iter()
                .map(|e| {
                    alter_client_quotas_response::EntryData::default()
                        .with_error_code(refusal)
                        .with_entity(crate::api::quotas::entity_answered(&e.entity))
                })
                .collect();
            Gate::Answer(ResponseKind::AlterClientQuotas(
                AlterClientQuotasResponse::default().with_entries(entries),
            ))
        }
        other => Gate::Serve(other, Refused::new(access, Parts::Nothing)),
    }
}
