//! Feature levels' requests: UpdateFeatures (Kafka's `kafka-features.sh upgrade|downgrade`,
//! the admin client's `updateFeatures`) and the finalized levels ApiVersions tells
//! (`describeFeatures`). The levels' rules are [`crate::features`]'.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use crate::controller::state::MetadataError;
use crate::controller::SubmitError;
use crate::features::{Finalized, Refused, Update, UpgradeType};
use crate::protocol::error;

/// INVALID_UPDATE_VERSION: a level this cluster cannot finalize.
const INVALID_UPDATE_VERSION: i16 = 95;

/// How long an update waits for the metadata to take it, at most.
const UPDATE_LIMIT: Duration = Duration::from_secs(30);

impl Broker {
    /// The finalized feature levels as this broker knows them now.
    pub fn finalized_features(&self) -> Arc<Finalized> {
        match &self.cluster {
            Some(cluster) => Arc::new(cluster.metadata().features.clone()),
            None => self.store.features(),
        }
    }

    /// Whether the cluster runs KIP-848's consumer group protocol (`group.version` 1).
    pub(super) fn consumer_protocol_on(&self) -> bool {
        self.finalized_features().level("group.version") >= 1
    }

    /// Check every update (all or none), then finalize them — through the metadata log in a
    /// cluster, the admin lane on a single node — unless `validate_only`.
    pub(super) async fn update_features(
        &self,
        req: UpdateFeaturesRequest,
        version: i16,
    ) -> UpdateFeaturesResponse {
        let updates: Vec<Update> = req
            .feature_updates
            .iter()
            .map(|u| Update {
                name: u.feature.to_string(),
                level: u.max_version_level,
                upgrade: UpgradeType::of(u.upgrade_type),
            })
            .collect();
        let now = self.finalized_features();
        let checked = crate::features::check_request(&now, &updates, self.config.node_id);
        let done: Result<(), (i16, String)> = match checked {
            Err(refused) => Err(refusal(refused)),
            Ok(()) if req.validate_only || updates.is_empty() => Ok(()),
            Ok(()) => {
                let limit = if req.timeout_ms > 0 {
                    Duration::from_millis(req.timeout_ms as u64).min(UPDATE_LIMIT)
                } else {
                    UPDATE_LIMIT
                };
                match &self.cluster {
                    Some(cluster) => match cluster.update_features(updates, limit).await {
                        Ok(()) => Ok(()),
                        Err(SubmitError::Failed(MetadataError::FeatureRefused(r))) => {
                            Err(refusal(r))
                        }
                        Err(SubmitError::TimedOut(_)) => Err((
                            error::REQUEST_TIMED_OUT,
                            "the cluster metadata did not take the update in time; it may \
                             still be made"
                                .into(),
                        )),
                        Err(e) => Err((error::NOT_CONTROLLER, e.to_string())),
                    },
                    None => self
                        .store
                        .update_features(updates)
                        .await
                        .map_err(|e| (super::admin::topic_error_code(&e), e.to_string())),
                }
            }
        };
        let mut resp = UpdateFeaturesResponse::default().with_error_message(None);
        match done {
            Err((code, message)) => {
                resp.error_code = code;
                resp.error_message = Some(StrBytes::from_string(message));
            }
            // Up to v1 each feature is answered; v2 answers the request only.
            Ok(()) if version < 2 => {
                resp.results = req
                    .feature_updates
                    .iter()
                    .map(|u| {
                        let mut r = UpdatableFeatureResult::default();
                        r.feature = u.feature.clone();
                        r.error_message = Some(StrBytes::from_static_str("NONE"));
                        r
                    })
                    .collect();
            }
            Ok(()) => {}
        }
        resp
    }
}

/// A refused update as Kafka answers it: the whole request failed, for the feature named.
fn refusal(r: Refused) -> (i16, String) {
    (
        INVALID_UPDATE_VERSION,
        format!("The update failed for all features since the following feature had an error: {r}"),
    )
}
