//! Client quotas' requests (DescribeClientQuotas, AlterClientQuotas) and the quotas in force
//! on this broker: the cluster metadata's (through the controller's log, so every broker
//! throttles the same clients) or a single node's (a file of its data directory).

use std::sync::Arc;

use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::{topic_error_code, ADMIN_LIMIT};
use super::Broker;
use crate::quota::entity::{entity_of, op_of};
use crate::quota::filter::filter_of;
use crate::quota::{Alteration, ClientQuotas, Refused};

/// An entry's entity as AlterClientQuotas' answer repeats it.
pub(super) fn entity_answered(
    entity: &[kafka_protocol::messages::alter_client_quotas_request::EntityData],
) -> Vec<alter_client_quotas_response::EntityData> {
    entity
        .iter()
        .map(|p| {
            alter_client_quotas_response::EntityData::default()
                .with_entity_type(p.entity_type.clone())
                .with_entity_name(p.entity_name.clone())
        })
        .collect()
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Broker {
    /// The client quotas in force here.
    pub fn client_quotas(&self) -> Arc<ClientQuotas> {
        match &self.cluster {
            Some(cluster) => cluster.metadata().client_quotas.clone(),
            None => self.store.client_quotas(),
        }
    }

    /// Whether a connection from `ip` just accepted is served (`None`) or, over its
    /// `connection_creation_rate`, held this long and closed unread.
    pub fn connection_throttle(&self, ip: std::net::IpAddr) -> Option<std::time::Duration> {
        self.quota_meters
            .admit_connection(&self.client_quotas(), ip, self.clock.now())
    }

    pub(super) fn describe_client_quotas(
        &self,
        req: DescribeClientQuotasRequest,
    ) -> DescribeClientQuotasResponse {
        let components = req
            .components
            .iter()
            .map(|c| (c.entity_type.as_str(), c.match_type, c._match.as_deref()));
        let filter = match filter_of(components, req.strict) {
            Ok(f) => f,
            Err(Refused { code, message }) => {
                return DescribeClientQuotasResponse::default()
                    .with_error_code(code)
                    .with_error_message(Some(text(&message)))
                    .with_entries(None)
            }
        };
        let quotas = self.client_quotas();
        let entries = quotas
            .describe(&filter)
            .map(|(entity, values)| {
                describe_client_quotas_response::EntryData::default()
                    .with_entity(
                        entity
                            .parts()
                            .into_iter()
                            .map(|(t, n)| {
                                describe_client_quotas_response::EntityData::default()
                                    .with_entity_type(text(t))
                                    .with_entity_name(n.map(text))
                            })
                            .collect(),
                    )
                    .with_values(
                        values
                            .into_iter()
                            .map(|(k, v)| {
                                describe_client_quotas_response::ValueData::default()
                                    .with_key(text(k.name()))
                                    .with_value(v.0)
                            })
                            .collect(),
                    )
            })
            .collect();
        DescribeClientQuotasResponse::default().with_entries(Some(entries))
    }

    /// Each entry checked alone (a refused one changes nothing, the others stand), then the
    /// checked ones applied together — through the metadata log in a cluster, or the data
    /// directory's admin lane on a single node.
    pub(super) async fn alter_client_quotas(
        &self,
        req: AlterClientQuotasRequest,
    ) -> AlterClientQuotasResponse {
        let checked: Vec<Result<Alteration, Refused>> = req
            .entries
            .iter()
            .map(|e| {
                let entity = entity_of(
                    e.entity
                        .iter()
                        .map(|p| (p.entity_type.as_str(), p.entity_name.as_deref())),
                )?;
                let ops = e
                    .ops
                    .iter()
                    .map(|o| op_of(&entity, o.key.as_str(), o.value, o.remove))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Alteration { entity, ops })
            })
            .collect();
        let wanted: Vec<Alteration> = checked.iter().filter_map(|c| c.clone().ok()).collect();
        let applied: Result<Vec<Result<(), Refused>>, (i16, String)> =
            if req.validate_only || wanted.is_empty() {
                Ok(wanted.iter().map(|_| Ok(())).collect())
            } else {
                let done = match &self.cluster {
                    Some(cluster) => cluster.alter_client_quotas(wanted, ADMIN_LIMIT).await,
                    None => self.store.alter_client_quotas(wanted).await,
                };
                done.map_err(|e| (topic_error_code(&e), e.to_string()))
            };
        let mut applied = match applied {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|r| r.map_err(|e| (e.code, e.message)))
                .collect::<Vec<_>>(),
            Err(e) => checked
                .iter()
                .filter(|c| c.is_ok())
                .map(|_| Err(e.clone()))
                .collect(),
        }
        .into_iter();
        let entries = req
            .entries
            .iter()
            .zip(&checked)
            .map(|(e, c)| {
                let outcome = match c {
                    Err(r) => Err((r.code, r.message.clone())),
                    Ok(_) => applied.next().unwrap_or(Ok(())),
                };
                let (code, message) = match outcome {
                    Ok(()) => (0, None),
                    Err((code, message)) => (code, Some(text(&message))),
                };
                alter_client_quotas_response::EntryData::default()
                    .with_error_code(code)
                    .with_error_message(message)
                    .with_entity(entity_answered(&e.entity))
            })
            .collect();
        AlterClientQuotasResponse::default().with_entries(entries)
    }
}
