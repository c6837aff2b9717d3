//! The feature levels' gate: finalizing a level takes ALTER on the cluster (Kafka's rule);
//! refused, the request is answered CLUSTER_AUTHORIZATION_FAILED and nothing changes.
//! ApiVersions, which tells the levels, is open to every client.

use kafka_protocol::messages::*;

use super::{Access, Gate, Parts, Refused};
use crate::protocol::error;
use crate::security::acl::op;

pub(super) fn handles(body: &RequestKind) -> bool {
    matches!(body, RequestKind::UpdateFeatures(_))
}

pub(super) fn gate(access: &Access, body: RequestKind) -> Gate {
    match body {
        RequestKind::UpdateFeatures(_) if !access.cluster(op::ALTER) => {
            Gate::Answer(ResponseKind::UpdateFeatures(
                UpdateFeaturesResponse::default()
                    .with_error_code(error::CLUSTER_AUTHORIZATION_FAILED)
                    .with_error_message(Some("Cluster authorization failed.".into())),
            ))
        }
        other => Gate::Serve(other, Refused::new(access, Parts::Nothing)),
    }
}
