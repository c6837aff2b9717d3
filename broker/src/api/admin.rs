//! CreateTopics and DeleteTopics.

use kafka_protocol::messages::{
    create_topics_response::CreatableTopicResult, delete_topics_response::DeletableTopicResult,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{name_of, topic_name, Broker};
use crate::catalog::{self, check_topic_name, TopicError};
use crate::protocol::error;

impl Broker {
    pub(super) async fn create_topics(
        &self,
        req: CreateTopicsRequest,
        version: i16,
    ) -> CreateTopicsResponse {
        let mut resp = CreateTopicsResponse::default();
        for t in req.topics {
            let mut r = CreatableTopicResult::default();
            r.name = t.name.clone();
            let name = name_of(&t.name).to_string();
            let partitions = if !t.assignments.is_empty() {
                t.assignments.len() as i32
            } else if t.num_partitions == -1 {
                self.config.default_partitions
            } else {
                t.num_partitions
            };
            let outcome = match catalog::topic_config(self.store.defaults, &t.configs) {
                _ if catalog::is_internal(&name) => Err((
                    error::INVALID_REQUEST,
                    format!("{name} is an internal topic: the broker creates it"),
                )),
                Err(msg) => Err((error::INVALID_CONFIG, msg)),
                Ok(_) if t.replication_factor == 0 || t.replication_factor < -1 => Err((
                    error::INVALID_REPLICATION_FACTOR,
                    format!(
                        "replication factor {} is invalid: it must be at least 1 (or -1 for the default)",
                        t.replication_factor
                    ),
                )),
                Ok(_) if t.replication_factor > 1 => Err((
                    error::INVALID_REPLICATION_FACTOR,
                    format!(
                        "replication factor {} is larger than the 1 available broker",
                        t.replication_factor
                    ),
                )),
                Ok(_) if partitions < 1 => Err((
                    error::INVALID_PARTITIONS,
                    format!(
                        "{partitions} partitions: a topic needs at least 1 (or -1 for the default)"
                    ),
                )),
                Ok(_) if req.validate_only => match check_topic_name(&name) {
                    Err(m) => Err((error::INVALID_TOPIC_EXCEPTION, m)),
                    Ok(()) if self.store.topic(&name).is_some() => {
                        Err((error::TOPIC_ALREADY_EXISTS, "topic already exists".into()))
                    }
                    Ok(()) => Ok(None),
                },
                Ok(cfg) => match self.store.create_topic(&name, partitions, cfg).await {
                    Ok(topic) => Ok(Some(topic)),
                    Err(e) => Err((topic_error_code(&e), e.to_string())),
                },
            };
            match outcome {
                Ok(topic) => {
                    if version >= 5 {
                        r.num_partitions = partitions;
                        r.replication_factor = 1;
                    }
                    if let Some(topic) = topic.filter(|_| version >= 7) {
                        r.topic_id = uuid::Uuid::from_u128(topic.id);
                    }
                }
                Err((code, msg)) => {
                    tracing::info!(topic = %name, code, %msg, "CreateTopics refused");
                    r.error_code = code;
                    r.error_message = Some(StrBytes::from_string(msg));
                }
            }
            resp.topics.push(r);
        }
        resp
    }

    pub(super) async fn delete_topics(
        &self,
        req: DeleteTopicsRequest,
        version: i16,
    ) -> DeleteTopicsResponse {
        let mut resp = DeleteTopicsResponse::default();
        let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
            req.topics
                .into_iter()
                .map(|t| (t.name.map(|n| name_of(&n).to_string()), t.topic_id))
                .collect()
        } else {
            req.topic_names
                .iter()
                .map(|n| (Some(name_of(n).to_string()), uuid::Uuid::nil()))
                .collect()
        };
        for (name, id) in targets {
            let mut r = DeletableTopicResult::default();
            r.topic_id = id;
            let name = name.or_else(|| {
                self.store
                    .topics()
                    .into_iter()
                    .find(|t| uuid::Uuid::from_u128(t.id) == id)
                    .map(|t| t.name.clone())
            });
            match name {
                None => r.error_code = error::UNKNOWN_TOPIC_ID,
                Some(name) if catalog::is_internal(&name) => {
                    r.name = Some(topic_name(&name));
                    r.error_code = error::INVALID_REQUEST;
                    if version >= 5 {
                        r.error_message = Some(StrBytes::from_string(format!(
                            "{name} is an internal topic and cannot be deleted"
                        )));
                    }
                }
                Some(name) => {
                    r.name = Some(topic_name(&name));
                    if let Err(e) = self.store.delete_topic(&name).await {
                        r.error_code = topic_error_code(&e);
                        if version >= 5 {
                            r.error_message = Some(StrBytes::from_string(e.to_string()));
                        }
                    }
                }
            }
            resp.responses.push(r);
        }
        resp
    }
}

pub(super) fn topic_error_code(e: &TopicError) -> i16 {
    match e {
        TopicError::Exists => error::TOPIC_ALREADY_EXISTS,
        TopicError::Unknown => error::UNKNOWN_TOPIC_OR_PARTITION,
        TopicError::InvalidName(_) => error::INVALID_TOPIC_EXCEPTION,
        TopicError::InvalidPartitions(_) => error::INVALID_PARTITIONS,
        TopicError::InvalidConfig(_) => error::INVALID_CONFIG,
        TopicError::Storage(_) => error::KAFKA_STORAGE_ERROR,
    }
}
