//! The simulated admin's configuration requests: IncrementalAlterConfigs (SET of one key),
//! DescribeConfigs, and AlterClientQuotas (one key of one client id).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, IncrementalAlterConfigsRequest, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError};

const ALTER_VERSION: i16 = 1;
const DESCRIBE_VERSION: i16 = 1;
/// Kafka's resource type of a topic.
const TOPIC: i8 = 2;
/// IncrementalAlterConfigs' SET.
const SET: i8 = 0;

impl Client {
    /// Set quota `key` of client id `client_id` to `value` (AlterClientQuotas); a Kafka error
    /// code if the broker refuses it.
    pub async fn set_client_quota(
        &mut self,
        client_id: &str,
        key: &str,
        value: f64,
    ) -> Result<(), ClientError> {
        use kafka_protocol::messages::alter_client_quotas_request::{
            EntityData, EntryData, OpData,
        };
        let req = kafka_protocol::messages::AlterClientQuotasRequest::default().with_entries(vec![
            EntryData::default()
                .with_entity(vec![EntityData::default()
                    .with_entity_type(StrBytes::from_static_str("client-id"))
                    .with_entity_name(Some(StrBytes::from_string(
                        client_id.to_string(),
                    )))])
                .with_ops(vec![OpData::default()
                    .with_key(StrBytes::from_string(key.to_string()))
                    .with_value(value)]),
        ]);
        match self
            .call(
                ApiKey::AlterClientQuotas,
                1,
                RequestKind::AlterClientQuotas(req),
            )
            .await?
        {
            ResponseKind::AlterClientQuotas(r) => match r.entries.first() {
                Some(e) if e.error_code != 0 => Err(ClientError::Kafka(e.error_code)),
                Some(_) => Ok(()),
                None => Err(ClientError::Protocol("empty AlterClientQuotas".into())),
            },
            other => Err(ClientError::Protocol(format!(
                "AlterClientQuotas: unexpected response {other:?}"
            ))),
        }
    }

    /// Set `key` of `topic` to `value` (IncrementalAlterConfigs); a Kafka error code if the
    /// broker refuses it.
    pub async fn set_topic_config(
        &mut self,
        topic: &str,
        key: &str,
        value: &str,
    ) -> Result<(), ClientError> {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_string(key.to_string()))
                    .with_config_operation(SET)
                    .with_value(Some(StrBytes::from_string(value.to_string())))]),
        ]);
        match self
            .call(
                ApiKey::IncrementalAlterConfigs,
                ALTER_VERSION,
                RequestKind::IncrementalAlterConfigs(req),
            )
            .await?
        {
            ResponseKind::IncrementalAlterConfigs(r) => match r.responses.first() {
                Some(res) if res.error_code != 0 => Err(ClientError::Kafka(res.error_code)),
                Some(_) => Ok(()),
                None => Err(ClientError::Protocol(
                    "empty IncrementalAlterConfigs".into(),
                )),
            },
            other => Err(ClientError::Protocol(format!(
                "IncrementalAlterConfigs: unexpected response {other:?}"
            ))),
        }
    }

    /// The values of `keys` of `topic` as this broker describes them (DescribeConfigs).
    pub async fn topic_configs(
        &mut self,
        topic: &str,
        keys: &[&str],
    ) -> Result<BTreeMap<String, String>, ClientError> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configuration_keys(Some(
                    keys.iter()
                        .map(|k| StrBytes::from_string(k.to_string()))
                        .collect(),
                )),
        ]);
        match self
            .call(
                ApiKey::DescribeConfigs,
                DESCRIBE_VERSION,
                RequestKind::DescribeConfigs(req),
            )
            .await?
        {
            ResponseKind::DescribeConfigs(r) => match r.results.first() {
                Some(res) if res.error_code != 0 => Err(ClientError::Kafka(res.error_code)),
                Some(res) => Ok(res
                    .configs
                    .iter()
                    .map(|c| {
                        let value = c.value.as_ref().map(|v| v.to_string());
                        (c.name.to_string(), value.unwrap_or_default())
                    })
                    .collect()),
                None => Err(ClientError::Protocol("empty DescribeConfigs".into())),
            },
            other => Err(ClientError::Protocol(format!(
                "DescribeConfigs: unexpected response {other:?}"
            ))),
        }
    }
}
