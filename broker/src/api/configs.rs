//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: a topic's configs by Kafka's
//! names ([`topic_config`]) and the broker's settings by the names a Kafka broker gives them.
//! Topic configs can be changed, and so can the broker-wide defaults of topic configs
//! ([`broker_configs`]: for this broker, resource "<node id>", or as the cluster default,
//! resource ""); the broker's other settings are static (its config file, environment and
//! flags), so changing one is refused by name.

use std::collections::HashSet;

use kafka_protocol::messages::{
    alter_configs_response::AlterConfigsResourceResponse,
    describe_configs_response::{
        DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
    },
    incremental_alter_configs_response, AlterConfigsRequest, AlterConfigsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::{topic_error_code, ADMIN_LIMIT};
use super::Broker;
use crate::broker_configs::{self, Scope};
use crate::protocol::error;
use crate::storage::catalog::{check_topic_name, Topic};
use crate::topic_config::{self, Overrides, Source, Type};

/// Kafka's resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;

/// IncrementalAlterConfigs operations.
pub(super) const SET: i8 = 0;
pub(super) const DELETE: i8 = 1;
pub(super) const APPEND: i8 = 2;
pub(super) const SUBTRACT: i8 = 3;

/// A refusal: the code and a message for the client.
pub(super) type Refusal = (i16, String);

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// One described config, as every version of DescribeConfigs needs it.
struct Entry {
    name: String,
    value: String,
    read_only: bool,
    source: Source,
    synonyms: Vec<(String, String, Source)>,
    ty: Type,
    doc: String,
}

impl Broker {
    pub(super) async fn describe_configs(
        &self,
        req: DescribeConfigsRequest,
        version: i16,
    ) -> DescribeConfigsResponse {
        let mut resp = DescribeConfigsResponse::default();
        for res in req.resources {
            let mut r = DescribeConfigsResult::default();
            r.resource_type = res.resource_type;
            r.resource_name = res.resource_name.clone();
            // No keys, or none named: every config (Kafka's reading of an empty list too).
            let wanted: Option<HashSet<&str>> = res
                .configuration_keys
                .as_ref()
                .filter(|keys| !keys.is_empty())
                .map(|keys| keys.iter().map(|k| k.as_str()).collect());
            match self.describe_resource(res.resource_type, res.resource_name.as_str()) {
                Err((code, msg)) => {
                    r.error_code = code;
                    r.error_message = Some(str_bytes(msg));
                }
                Ok(entries) => {
                    r.error_message = None;
                    for e in entries {
                        if wanted
                            .as_ref()
                            .is_some_and(|w| !w.contains(e.name.as_str()))
                        {
                            continue;
                        }
                        r.configs.push(describe_entry(
                            e,
                            req.include_synonyms,
                            req.include_documentation,
                            version,
                        ));
                    }
                }
            }
            resp.results.push(r);
        }
        resp
    }

    fn describe_resource(&self, ty: i8, name: &str) -> Result<Vec<Entry>, Refusal> {
        match ty {
            TOPIC => {
                let topic = self.known_topic(name)?;
                Ok(self.topic_entries(&topic.config, &topic.overrides))
            }
            BROKER => Ok(self.broker_entries(self.broker_scope(name)?)),
            CLIENT_METRICS => {
                let set = self.client_metrics_configs(name)?;
                Ok(super::telemetry::described(&set)
                    .into_iter()
                    .map(|(name, value, source)| Entry {
                        ty: super::telemetry::config_type(name),
                        doc: super::telemetry::config_doc(name).to_string(),
                        name: name.to_string(),
                        synonyms: match source {
                            Source::ClientMetrics => {
                                vec![(name.to_string(), value.clone(), source)]
                            }
                            _ => Vec::new(),
                        },
                        value,
                        read_only: false,
                        source,
                    })
                    .collect())
            }
            other => Err(unsupported_resource(other)),
        }
    }

    /// Every topic config of a topic with these settings, as DescribeConfigs and CreateTopics
    /// (v5+) tell them.
    fn topic_entries(
        &self,
        config: &crate::topic_config::LogConfig,
        overrides: &Overrides,
    ) -> Vec<Entry> {
        let dynamic = self.store.dynamic_configs();
        topic_config::describe(
            config,
            overrides,
            |k| dynamic.synonyms_of(k),
            |k| self.config.topic_default_of(k.name),
        )
        .into_iter()
        .map(|d| Entry {
            name: d.key.name.to_string(),
            value: d.value,
            read_only: false,
            source: d.source,
            synonyms: d
                .synonyms
                .into_iter()
                .map(|(n, v, s)| (n.to_string(), v, s))
                .collect(),
            ty: d.key.ty,
            doc: match d.key.support {
                topic_config::Support::DefaultOnly(why) => {
                    format!("{} Only Kafka's default is accepted: {why}.", d.key.doc)
                }
                topic_config::Support::InertAsInKafka(why) => {
                    format!("{} Kept, with no effect: {why}.", d.key.doc)
                }
                _ => d.key.doc.to_string(),
            },
        })
        .collect()
    }

    /// CreateTopics v5+ answers with the new topic's configs.
    pub(super) fn created_topic_configs(
        &self,
        config: &crate::topic_config::LogConfig,
        overrides: &Overrides,
    ) -> Vec<kafka_protocol::messages::create_topics_response::CreatableTopicConfigs> {
        self.topic_entries(config, overrides)
            .into_iter()
            .map(|e| {
                let mut c =
                    kafka_protocol::messages::create_topics_response::CreatableTopicConfigs::default();
                c.name = str_bytes(e.name);
                c.value = Some(str_bytes(e.value));
                c.read_only = e.read_only;
                c.config_source = e.source as i8;
                c
            })
            .collect()
    }

    fn known_topic(&self, name: &str) -> Result<std::sync::Arc<Topic>, Refusal> {
        check_topic_name(name).map_err(|m| (error::INVALID_TOPIC_EXCEPTION, m))?;
        self.store.topic(name).ok_or_else(|| {
            (
                error::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic {name} does not exist"),
            )
        })
    }

    /// The broker's settings as DescribeConfigs tells them: for this broker, every setting
    /// (the dynamic ones with what set them); for the cluster default, the dynamic defaults
    /// set (as Kafka answers).
    fn broker_entries(&self, scope: Scope) -> Vec<Entry> {
        let dynamic = self.store.dynamic_configs();
        let entry = |name: &str, value: Option<String>, ty, doc: String| {
            let mut synonyms: Vec<(String, String, Source)> = match scope {
                Scope::Node => [
                    (dynamic.node.get(name), Source::DynamicBroker),
                    (dynamic.cluster.get(name), Source::DynamicDefaultBroker),
                ]
                .into_iter()
                .filter_map(|(v, s)| v.map(|v| (name.to_string(), v.clone(), s)))
                .collect(),
                Scope::Cluster => dynamic
                    .cluster
                    .get(name)
                    .map(|v| (name.to_string(), v.clone(), Source::DynamicDefaultBroker))
                    .into_iter()
                    .collect(),
            };
            if let Some(v) = value.filter(|_| scope == Scope::Node) {
                synonyms.push((name.to_string(), v, Source::StaticBroker));
            }
            let (value, source) = synonyms
                .first()
                .map(|(_, v, s)| (v.clone(), *s))
                .unwrap_or((String::new(), Source::Default));
            Entry {
                name: name.to_string(),
                value,
                read_only: broker_configs::topic_key_of(name).is_none(),
                source,
                synonyms,
                ty,
                doc,
            }
        };
        let mut out: Vec<Entry> = Vec::new();
        let statics = self.config.kafka_broker_configs();
        if scope == Scope::Node {
            for (name, value, ty, doc) in statics {
                out.push(entry(name, Some(value), ty, doc));
            }
        }
        // Dynamic values of settings the static list does not name.
        for name in dynamic.node.keys().chain(dynamic.cluster.keys()) {
            if out.iter().any(|e| e.name == *name) {
                continue;
            }
            if let Some(key) = broker_configs::topic_key_of(name) {
                let doc = format!("The broker-wide default of topic config {}.", key.name);
                let e = entry(name, None, key.ty, doc);
                if !e.synonyms.is_empty() {
                    out.push(e);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Which dynamic set a broker resource names: this node's, or (empty) the cluster-wide
    /// default's.
    fn broker_scope(&self, name: &str) -> Result<Scope, Refusal> {
        if name.is_empty() {
            Ok(Scope::Cluster)
        } else if name == self.config.node_id.to_string() {
            Ok(Scope::Node)
        } else {
            Err((
                error::INVALID_REQUEST,
                format!(
                    "unexpected broker id {name:?}: this is broker {} (or use \"\" for the cluster default)",
                    self.config.node_id
                ),
            ))
        }
    }

    pub(super) async fn alter_configs(&self, req: AlterConfigsRequest) -> AlterConfigsResponse {
        let mut resp = AlterConfigsResponse::default();
        let dups = duplicates(
            req.resources
                .iter()
                .map(|r| (r.resource_type, r.resource_name.as_str())),
        );
        for res in req.resources {
            let name = res.resource_name.as_str().to_string();
            let outcome = if dups.contains(&(res.resource_type, name.clone())) {
                Err(duplicate_resource())
            } else {
                // The whole set replaces the topic's configs.
                let pairs = res
                    .configs
                    .iter()
                    .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str())));
                match res.resource_type {
                    TOPIC => match topic_config::check_all(pairs) {
                        Err(e) => Err((error::INVALID_CONFIG, e.0)),
                        Ok(overrides) => {
                            self.set_topic_configs(&name, overrides, req.validate_only)
                                .await
                        }
                    },
                    BROKER => match self.broker_scope(&name).and_then(|scope| {
                        // Every setting named must be dynamic, its value valid.
                        pairs
                            .map(|(k, v)| {
                                broker_configs::check(k, v)
                                    .map(|v| (k.to_string(), v))
                                    .map_err(|e| (error::INVALID_CONFIG, e.0))
                            })
                            .collect::<Result<_, _>>()
                            .map(|set| (scope, set))
                    }) {
                        Err(e) => Err(e),
                        Ok((scope, set)) => {
                            self.set_broker_configs(scope, set, req.validate_only).await
                        }
                    },
                    CLIENT_METRICS => {
                        let set: Overrides = pairs
                            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
                            .collect();
                        self.alter_client_metrics(&name, |_| Ok(set.clone()), req.validate_only)
                            .await
                    }
                    other => Err(unsupported_resource(other)),
                }
            };
            let mut r = AlterConfigsResourceResponse::default();
            r.resource_type = res.resource_type;
            r.resource_name = res.resource_name;
            set_outcome(&mut r.error_code, &mut r.error_message, outcome);
            resp.responses.push(r);
        }
        resp
    }

    pub(super) async fn incremental_alter_configs(
        &self,
        req: IncrementalAlterConfigsRequest,
    ) -> IncrementalAlterConfigsResponse {
        let mut resp = IncrementalAlterConfigsResponse::default();
        let dups = duplicates(
            req.resources
                .iter()
                .map(|r| (r.resource_type, r.resource_name.as_str())),
        );
        for res in req.resources {
            let name = res.resource_name.as_str().to_string();
            let ops: Vec<(&str, i8, Option<&str>)> = res
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.as_str(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.as_str()),
                    )
                })
                .collect();
            let outcome = if dups.contains(&(res.resource_type, name.clone())) {
                Err(duplicate_resource())
            } else {
                match res.resource_type {
                    TOPIC => match (self.known_topic(&name), &self.cluster) {
                        (Err(e), _) => Err(e),
                        (Ok(_), Some(cluster)) if !req.validate_only => {
                            self.update_replicated_topic_configs(cluster, &name, &ops)
                                .await
                        }
                        (Ok(topic), _) => match apply_ops(&topic.overrides, &ops) {
                            Err(e) => Err(e),
                            Ok(overrides) => {
                                self.set_topic_configs(&name, overrides, req.validate_only)
                                    .await
                            }
                        },
                    },
                    BROKER => match (self.broker_scope(&name), &self.cluster) {
                        (Err(e), _) => Err(e),
                        (Ok(scope), Some(cluster)) if !req.validate_only => {
                            self.update_replicated_broker_configs(cluster, scope, &ops)
                                .await
                        }
                        (Ok(scope), _) => {
                            match broker_ops(&self.store.dynamic_configs(), scope, &ops) {
                                Err(e) => Err(e),
                                Ok(set) => {
                                    self.set_broker_configs(scope, set, req.validate_only).await
                                }
                            }
                        }
                    },
                    CLIENT_METRICS => {
                        self.alter_client_metrics(
                            &name,
                            |current| super::telemetry::apply_ops(current, &ops),
                            req.validate_only,
                        )
                        .await
                    }
                    other => Err(unsupported_resource(other)),
                }
            };
            let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
            r.resource_type = res.resource_type;
            r.resource_name = res.resource_name;
            set_outcome(&mut r.error_code, &mut r.error_message, outcome);
            resp.responses.push(r);
        }
        resp
    }

    /// IncrementalAlterConfigs' operations on a topic of the cluster: made from the topic's
    /// configs in the cluster metadata, again if another change lands first (see
    /// [`Controller::update_topic_config`](crate::controller::Controller::update_topic_config)).
    async fn update_replicated_topic_configs(
        &self,
        cluster: &crate::controller::Controller,
        name: &str,
        ops: &[(&str, i8, Option<&str>)],
    ) -> Result<(), Refusal> {
        if crate::storage::catalog::is_internal(name) {
            return Err(internal_topic(name));
        }
        let refuse = |e: crate::storage::catalog::TopicError| (topic_error_code(&e), e.to_string());
        let change = |current: &Overrides| {
            let overrides = apply_ops(current, ops)?;
            self.store.resolve(&overrides).map_err(refuse)?;
            Ok(overrides)
        };
        cluster
            .update_topic_config(name, change, ADMIN_LIMIT)
            .await?
            .map_err(refuse)?;
        cluster.configs_taken(Some(name), TAKEN_LIMIT).await;
        Ok(())
    }

    /// Replace `scope`'s dynamic broker configs with `set` (each checked). In a cluster they
    /// are the cluster metadata's (the cluster-wide default reaches every broker; a broker's
    /// own are kept for it), and each broker follows them.
    async fn set_broker_configs(
        &self,
        scope: Scope,
        set: std::collections::BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        let refuse = |e: crate::storage::catalog::TopicError| (topic_error_code(&e), e.to_string());
        let configs = self.store.dynamic_configs().with(scope, set.clone());
        self.store.check_dynamic_configs(&configs).map_err(refuse)?;
        if validate_only {
            return Ok(());
        }
        if let Some(cluster) = &self.cluster {
            cluster
                .alter_broker_configs(self.scope_node(scope), set, ADMIN_LIMIT)
                .await
                .map_err(refuse)?;
            cluster.configs_taken(None, TAKEN_LIMIT).await;
            return Ok(());
        }
        self.store
            .set_dynamic_configs(configs)
            .await
            .map_err(refuse)
    }

    /// IncrementalAlterConfigs' operations on dynamic broker configs in a cluster: made from
    /// the cluster metadata's, again if another change lands first.
    async fn update_replicated_broker_configs(
        &self,
        cluster: &crate::controller::Controller,
        scope: Scope,
        ops: &[(&str, i8, Option<&str>)],
    ) -> Result<(), Refusal> {
        let refuse = |e: crate::storage::catalog::TopicError| (topic_error_code(&e), e.to_string());
        let me = self.config.node_id as crate::replication::transport::NodeId;
        let change = |current: &Overrides| {
            let mine = cluster.metadata().dynamic_configs_of(me);
            let set = broker_ops(&mine.with(scope, current.clone()), scope, ops)?;
            self.store
                .check_dynamic_configs(&mine.with(scope, set.clone()))
                .map_err(refuse)?;
            Ok(set)
        };
        cluster
            .update_broker_configs(self.scope_node(scope), change, ADMIN_LIMIT)
            .await?
            .map_err(refuse)?;
        cluster.configs_taken(None, TAKEN_LIMIT).await;
        Ok(())
    }

    /// The metadata's name of `scope`: this broker, or (`None`) the cluster-wide default.
    fn scope_node(&self, scope: Scope) -> Option<crate::replication::transport::NodeId> {
        match scope {
            Scope::Node => Some(self.config.node_id as crate::replication::transport::NodeId),
            Scope::Cluster => None,
        }
    }

    /// Replace topic `name`'s configs with `overrides` (checked whole first; only checked
    /// with `validate_only`).
    async fn set_topic_configs(
        &self,
        name: &str,
        overrides: Overrides,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        self.known_topic(name)?;
        if crate::storage::catalog::is_internal(name) {
            return Err(internal_topic(name));
        }
        let refuse = |e: crate::storage::catalog::TopicError| (topic_error_code(&e), e.to_string());
        self.store.resolve(&overrides).map_err(refuse)?;
        if validate_only {
            return Ok(());
        }
        if let Some(cluster) = &self.cluster {
            cluster
                .alter_topic_config(name, overrides, std::time::Duration::from_secs(30))
                .await
                .map_err(refuse)?;
            cluster.configs_taken(Some(name), TAKEN_LIMIT).await;
            return Ok(());
        }
        self.store
            .alter_topic_config(name, overrides)
            .await
            .map(|_| ())
            .map_err(refuse)
    }
}

/// How long a config change's answer waits for this broker's storage to take the change (a
/// moment: the storage follows the metadata this broker has applied).
const TAKEN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

fn internal_topic(name: &str) -> Refusal {
    (
        error::INVALID_REQUEST,
        format!("{name} is an internal topic: its configs are the broker's"),
    )
}

/// The overrides after IncrementalAlterConfigs' operations, each checked.
fn apply_ops(current: &Overrides, ops: &[(&str, i8, Option<&str>)]) -> Result<Overrides, Refusal> {
    let mut seen = HashSet::new();
    let mut out = current.clone();
    for &(name, op, value) in ops {
        if !seen.insert(name) {
            return Err((
                error::INVALID_REQUEST,
                format!("{name} is given more than once"),
            ));
        }
        let Some(key) = topic_config::find(name) else {
            return Err((
                error::INVALID_CONFIG,
                format!("unknown topic config name: {name}"),
            ));
        };
        let invalid = |e: topic_config::ConfigError| (error::INVALID_CONFIG, e.0);
        match op {
            SET => {
                out.insert(
                    name.to_string(),
                    topic_config::check(name, value).map_err(invalid)?,
                );
            }
            DELETE => {
                out.remove(name);
            }
            APPEND | SUBTRACT => {
                if key.ty != Type::List {
                    return Err((
                        error::INVALID_CONFIG,
                        format!(
                            "{} is not allowed for {name}: it is not a list",
                            if op == APPEND { "APPEND" } else { "SUBTRACT" }
                        ),
                    ));
                }
                let now = out
                    .get(name)
                    .map(String::as_str)
                    .unwrap_or(key.kafka_default);
                let mut items: Vec<String> = split_list(now);
                for v in split_list(value.unwrap_or("")) {
                    if op == APPEND && !items.contains(&v) {
                        items.push(v);
                    } else if op == SUBTRACT {
                        items.retain(|i| *i != v);
                    }
                }
                let joined = items.join(",");
                out.insert(
                    name.to_string(),
                    topic_config::check(name, Some(&joined)).map_err(invalid)?,
                );
            }
            other => {
                return Err((
                    error::INVALID_REQUEST,
                    format!("unknown config operation {other} for {name}"),
                ))
            }
        }
    }
    Ok(out)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .collect()
}

/// `scope`'s dynamic broker configs after IncrementalAlterConfigs' operations: each one's
/// setting must be dynamic (else it is refused by name); the operations run on the topic
/// configs the settings are the defaults of, so that values are checked, and lists appended
/// to and subtracted from, as a topic's are.
fn broker_ops(
    current: &broker_configs::DynamicConfigs,
    scope: Scope,
    ops: &[(&str, i8, Option<&str>)],
) -> Result<std::collections::BTreeMap<String, String>, Refusal> {
    let mut topic_ops = Vec::with_capacity(ops.len());
    for &(name, op, value) in ops {
        let Some(key) = broker_configs::topic_key_of(name) else {
            return Err((error::INVALID_CONFIG, broker_configs::not_dynamic(name).0));
        };
        if op == SET {
            // Refused naming the broker setting (the topic config's check would name its own).
            broker_configs::check(name, value).map_err(|e| (error::INVALID_CONFIG, e.0))?;
        }
        topic_ops.push((key.name, op, value));
    }
    let after = apply_ops(&current.topic_overrides(scope), &topic_ops)?;
    Ok(broker_configs::from_topic_overrides(&after))
}

fn unsupported_resource(ty: i8) -> Refusal {
    match ty {
        BROKER_LOGGER => (
            error::INVALID_REQUEST,
            "broker loggers are not configurable by request (the log filter is STILLWATER_LOG)"
                .into(),
        ),
        other => (
            error::INVALID_REQUEST,
            format!("resource type {other} has no configs here (topics: 2, brokers: 4, client metrics: 16)"),
        ),
    }
}

fn duplicate_resource() -> Refusal {
    (
        error::INVALID_REQUEST,
        "the resource appears more than once in the request".into(),
    )
}

/// The resources named more than once.
fn duplicates<'a>(all: impl Iterator<Item = (i8, &'a str)>) -> HashSet<(i8, String)> {
    let mut seen = HashSet::new();
    let mut dups = HashSet::new();
    for (t, n) in all {
        if !seen.insert((t, n)) {
            dups.insert((t, n.to_string()));
        }
    }
    dups
}

fn set_outcome(code: &mut i16, message: &mut Option<StrBytes>, outcome: Result<(), Refusal>) {
    match outcome {
        Ok(()) => *message = None,
        Err((c, m)) => {
            tracing::info!(code = c, %m, "config change refused");
            *code = c;
            *message = Some(str_bytes(m));
        }
    }
}

fn describe_entry(
    e: Entry,
    synonyms: bool,
    documentation: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = str_bytes(e.name);
    c.value = Some(str_bytes(e.value));
    c.read_only = e.read_only;
    c.config_source = e.source as i8;
    if synonyms {
        c.synonyms = e
            .synonyms
            .into_iter()
            .map(|(n, v, s)| {
                let mut syn = DescribeConfigsSynonym::default();
                syn.name = str_bytes(n);
                syn.value = Some(str_bytes(v));
                syn.source = s as i8;
                syn
            })
            .collect();
    }
    if version >= 3 {
        c.config_type = e.ty as i8;
        c.documentation = documentation.then(|| str_bytes(e.doc));
    }
    c
}
