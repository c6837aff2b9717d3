//! ApiVersions: the body that lists what this broker serves and the feature levels, the v0
//! error reply for a version it does not speak, and the client software names Kafka takes.

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};

use super::{encode_response, error, SUPPORTED, TELEMETRY_APIS};

/// Whether an ApiVersions request's client software name and version are what Kafka takes: one
/// or more of `[a-zA-Z0-9.-]`, beginning and ending with a letter or digit.
pub fn software_ok(req: &kafka_protocol::messages::ApiVersionsRequest) -> bool {
    let ok = |s: &str| {
        let alnum = |c: char| c.is_ascii_alphanumeric();
        s.starts_with(alnum)
            && s.ends_with(alnum)
            && s.chars().all(|c| alnum(c) || c == '-' || c == '.')
    };
    ok(req.client_software_name.as_str()) && ok(req.client_software_version.as_str())
}

/// The ApiVersions response body (at `version`) listing everything in [`SUPPORTED`] (the
/// [`TELEMETRY_APIS`] only with `telemetry`) and, from v3, the feature levels
/// ([`crate::features`]) with the cluster's `finalized` ones.
pub fn api_versions(
    error_code: i16,
    version: i16,
    telemetry: bool,
    finalized: &crate::features::Finalized,
) -> ApiVersionsResponse {
    use kafka_protocol::messages::api_versions_response::{
        FinalizedFeatureKey, SupportedFeatureKey,
    };
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    if version >= 3 {
        r.supported_features = crate::features::supported_at(version)
            .map(|f| {
                let mut k = SupportedFeatureKey::default();
                k.name = kafka_protocol::protocol::StrBytes::from_static_str(f.name);
                k.min_version = f.min;
                k.max_version = f.max;
                k
            })
            .collect();
        r.finalized_features_epoch = finalized.epoch;
        r.finalized_features = finalized
            .listed()
            .into_iter()
            .map(|(name, level)| {
                let mut k = FinalizedFeatureKey::default();
                k.name = kafka_protocol::protocol::StrBytes::from_string(name);
                k.min_version_level = level;
                k.max_version_level = level;
                k
            })
            .collect();
    }
    r.api_keys = SUPPORTED
        .iter()
        .filter(|(k, _, _)| telemetry || !TELEMETRY_APIS.contains(k))
        .map(|(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = *k as i16;
            v.min_version = *lo;
            v.max_version = *hi;
            v
        })
        .collect();
    r
}

/// The v0 ApiVersions error reply for a version we do not speak.
pub fn api_versions_unsupported(correlation_id: i32) -> anyhow::Result<Bytes> {
    encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ResponseKind::ApiVersions(api_versions(
            error::UNSUPPORTED_VERSION,
            0,
            false,
            &Default::default(),
        )),
    )
}
