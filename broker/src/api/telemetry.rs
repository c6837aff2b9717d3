//! Client telemetry's requests (GetTelemetrySubscriptions, PushTelemetry) and its config
//! resources, the client-metrics subscriptions (type CLIENT_METRICS in DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs and ListConfigResources). The subscriptions are the
//! cluster metadata's (through the controller's log, so every broker asks its clients the
//! same), or a single node's (a file of its data directory).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::{
    GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse, PushTelemetryRequest,
    PushTelemetryResponse,
};

use super::admin::{topic_error_code, ADMIN_LIMIT};
use super::Broker;
use crate::protocol::error;
use crate::telemetry::subscriptions::{self, Invalid};
use crate::telemetry::Asker;
use crate::topic_config::{Overrides, Source};

/// A refusal: the code and a message for the client.
use super::configs::Refusal;

fn asker<'a>(
    client_id: Option<&'a str>,
    peer: Option<SocketAddr>,
    software: Option<&'a (String, String)>,
) -> Asker<'a> {
    Asker {
        client_id: client_id.unwrap_or(""),
        peer,
        software: software.map(|(n, v)| (n.as_str(), v.as_str())),
    }
}

fn refusal(e: Invalid) -> Refusal {
    (e.code, e.message)
}

impl Broker {
    /// The client-metrics subscriptions in force here.
    pub fn client_metrics(&self) -> Arc<BTreeMap<String, Overrides>> {
        match &self.cluster {
            Some(cluster) => cluster.metadata().client_metrics.clone(),
            None => self.store.client_metrics(),
        }
    }

    pub(super) fn get_telemetry_subscriptions(
        &self,
        req: GetTelemetrySubscriptionsRequest,
        client_id: Option<&str>,
        peer: Option<SocketAddr>,
        software: Option<&(String, String)>,
    ) -> GetTelemetrySubscriptionsResponse {
        let subs = self.client_metrics();
        self.telemetry
            .get_subscriptions(&req, asker(client_id, peer, software), &subs)
    }

    pub(super) fn push_telemetry(
        &self,
        req: PushTelemetryRequest,
        client_id: Option<&str>,
        peer: Option<SocketAddr>,
        software: Option<&(String, String)>,
    ) -> PushTelemetryResponse {
        let subs = self.client_metrics();
        self.telemetry
            .push(&req, asker(client_id, peer, software), &subs)
    }

    /// A subscription's configs as set (none for a name without a subscription: no error,
    /// as Kafka).
    pub(super) fn client_metrics_configs(&self, name: &str) -> Result<Overrides, Refusal> {
        subscriptions::check_name(name).map_err(refusal)?;
        Ok(self.client_metrics().get(name).cloned().unwrap_or_default())
    }

    /// Set subscription `name`'s configs to `change` of its current ones (AlterConfigs: the
    /// whole set; IncrementalAlterConfigs: its operations), checked whole; none left removes
    /// it. In a cluster the change is made from the metadata's configs, again if another
    /// change lands first.
    pub(super) async fn alter_client_metrics(
        &self,
        name: &str,
        change: impl Fn(&Overrides) -> Result<Overrides, Refusal>,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        subscriptions::check_name(name).map_err(refusal)?;
        let checked = |current: &Overrides| {
            let next = change(current)?;
            subscriptions::parse(name, &next).map_err(refusal)?;
            Ok(next)
        };
        let refuse = |e: crate::storage::catalog::TopicError| (topic_error_code(&e), e.to_string());
        if validate_only {
            let current = self.client_metrics().get(name).cloned().unwrap_or_default();
            return checked(&current).map(|_| ());
        }
        match &self.cluster {
            Some(cluster) => cluster
                .update_client_metrics(name, checked, ADMIN_LIMIT)
                .await?
                .map_err(refuse),
            None => {
                let current = self.client_metrics().get(name).cloned().unwrap_or_default();
                let next = checked(&current)?;
                self.store
                    .set_client_metrics(name, next)
                    .await
                    .map_err(refuse)
            }
        }
    }
}

/// A refusal for a config resource the client-metrics type does not take.
pub(super) fn not_a_subscription_config(name: &str) -> Refusal {
    (
        error::INVALID_REQUEST,
        format!(
            "Unknown client metrics configuration: {name} (a subscription has {})",
            subscriptions::KEYS.join(", ")
        ),
    )
}

/// Every config of a subscription as DescribeConfigs tells it (Kafka's way): its value and
/// source, the default where it is not set.
pub(super) fn described(set: &Overrides) -> Vec<(&'static str, String, Source)> {
    let default = |key: &str| match key {
        subscriptions::INTERVAL_MS => subscriptions::DEFAULT_INTERVAL_MS.to_string(),
        _ => String::new(),
    };
    let mut keys = subscriptions::KEYS;
    keys.sort_unstable();
    keys.iter()
        .map(|&k| match set.get(k) {
            Some(v) => (k, v.clone(), Source::ClientMetrics),
            None => (k, default(k), Source::Default),
        })
        .collect()
}

/// A subscription config's type, as DescribeConfigs v3+ tells it.
pub(super) fn config_type(name: &str) -> crate::topic_config::Type {
    match name {
        subscriptions::INTERVAL_MS => crate::topic_config::Type::Int,
        _ => crate::topic_config::Type::List,
    }
}

/// A subscription config's documentation.
pub(super) fn config_doc(name: &str) -> &'static str {
    match name {
        subscriptions::METRICS => "Prefixes of the metric names matching clients push (* for all)",
        subscriptions::INTERVAL_MS => "How often matching clients push, in ms (100..=3600000)",
        subscriptions::MATCH => {
            "selector=regular expression pairs a client must all match (client_instance_id, \
             client_id, client_software_name, client_software_version, client_source_address, \
             client_source_port)"
        }
        _ => "",
    }
}

/// A subscription's configs after IncrementalAlterConfigs' operations (checked whole after):
/// SET and DELETE only — Kafka refuses APPEND and SUBTRACT on a subscription (INVALID_CONFIG),
/// and a SET without a value (INVALID_REQUEST).
pub(super) fn apply_ops(
    current: &Overrides,
    ops: &[(&str, i8, Option<&str>)],
) -> Result<Overrides, Refusal> {
    use super::configs::{APPEND, DELETE, SET, SUBTRACT};
    let mut out = current.clone();
    for &(name, op, value) in ops {
        if !subscriptions::KEYS.contains(&name) {
            return Err(not_a_subscription_config(name));
        }
        match (op, value) {
            (SET, Some(v)) => {
                out.insert(name.to_string(), v.to_string());
            }
            (SET, None) => {
                return Err((
                    error::INVALID_REQUEST,
                    format!("Null value not supported for : {name}"),
                ))
            }
            (DELETE, _) => {
                out.remove(name);
            }
            (APPEND | SUBTRACT, _) => {
                return Err((
                    error::INVALID_CONFIG,
                    format!("{name}: a subscription's configs are set or deleted, not appended to or subtracted from"),
                ))
            }
            (other, _) => {
                return Err((
                    error::INVALID_REQUEST,
                    format!("unknown config operation {other} for {name}"),
                ))
            }
        }
    }
    Ok(out)
}
