//! Dynamic broker configs: the broker settings AlterConfigs and IncrementalAlterConfigs may
//! change at run time, as a Kafka broker's dynamic configs. Here they are the broker-wide
//! defaults of topic configs that have an effect or are kept (`log.retention.ms`,
//! `log.segment.bytes`, `message.max.bytes`, `log.message.timestamp.type`, …: each the
//! broker synonym of a topic config in [`topic_config::KEYS`]). They are set for this broker
//! (resource `"<node id>"`) or as the cluster-wide default (resource `""`), kept in a
//! CRC-checked file of the data directory, and take effect at once for every topic without a
//! value of its own: a topic's setting is its own override, else this broker's dynamic value,
//! else the cluster default, else the static setting (config file, environment, flags), else
//! Kafka's default — Kafka's order. Every other broker setting is static and its change is
//! refused by name.

use std::collections::BTreeMap;

use crate::topic_config::LogConfig;
use crate::topic_config::{self, ConfigError, Key, Overrides, Source, Support, KEYS};

/// Which dynamic set a broker resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This broker (the resource named by its node id).
    Node,
    /// The cluster-wide default (the resource named "").
    Cluster,
}

/// The dynamic broker configs, by Kafka broker key.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DynamicConfigs {
    #[serde(default)]
    pub node: BTreeMap<String, String>,
    #[serde(default)]
    pub cluster: BTreeMap<String, String>,
}

/// The file in the data directory's metadata folder that keeps them.
pub const FILE: &str = "broker-configs";

/// The topic config whose broker-wide default `broker_key` is, when it may change at run
/// time (one that only Kafka's default may have cannot).
pub fn topic_key_of(broker_key: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|k| k.broker_key == Some(broker_key) && !matches!(k.support, Support::DefaultOnly(_)))
}

/// `value` for `broker_key`, checked as its topic config is and in normal form.
pub fn check(broker_key: &str, value: Option<&str>) -> Result<String, ConfigError> {
    let Some(key) = topic_key_of(broker_key) else {
        return Err(not_dynamic(broker_key));
    };
    topic_config::check(key.name, value).map_err(|e| {
        ConfigError(format!(
            "{broker_key} (the default of {}): {}",
            key.name, e.0
        ))
    })
}

/// Why a broker setting cannot be changed.
pub fn not_dynamic(broker_key: &str) -> ConfigError {
    ConfigError(format!(
        "cannot update {broker_key} dynamically: only the broker-wide defaults of topic configs \
         can be (log.retention.ms, log.segment.bytes, message.max.bytes, …); other broker \
         settings are static here (set them in the config file, STILLWATER_* variables or \
         flags, and restart)"
    ))
}

/// The same settings keyed by their topic configs' names.
fn as_topic_overrides(set: &BTreeMap<String, String>) -> Overrides {
    set.iter()
        .filter_map(|(b, v)| topic_key_of(b).map(|k| (k.name.to_string(), v.clone())))
        .collect()
}

/// Topic-keyed settings keyed by their broker synonyms again.
pub fn from_topic_overrides(set: &Overrides) -> BTreeMap<String, String> {
    set.iter()
        .filter_map(|(t, v)| {
            topic_config::find(t)
                .and_then(|k| k.broker_key)
                .map(|b| (b.to_string(), v.clone()))
        })
        .collect()
}

impl DynamicConfigs {
    pub fn get(&self, scope: Scope) -> &BTreeMap<String, String> {
        match scope {
            Scope::Node => &self.node,
            Scope::Cluster => &self.cluster,
        }
    }

    /// These configs with `scope`'s set replaced.
    pub fn with(&self, scope: Scope, set: BTreeMap<String, String>) -> DynamicConfigs {
        let mut out = self.clone();
        match scope {
            Scope::Node => out.node = set,
            Scope::Cluster => out.cluster = set,
        }
        out
    }

    /// Topic-keyed view of `scope`'s set.
    pub fn topic_overrides(&self, scope: Scope) -> Overrides {
        as_topic_overrides(self.get(scope))
    }

    /// The defaults every topic resolves over: the static ones under the cluster default
    /// under this broker's values.
    pub fn apply(&self, statics: LogConfig) -> Result<LogConfig, ConfigError> {
        let c = topic_config::resolve(statics, &as_topic_overrides(&self.cluster))?;
        topic_config::resolve(c, &as_topic_overrides(&self.node))
    }

    /// Where topic config `key`'s broker-wide default is set dynamically, most specific first.
    pub fn synonyms_of(&self, key: &Key) -> Vec<(String, Source)> {
        let Some(b) = key.broker_key.filter(|b| topic_key_of(b).is_some()) else {
            return Vec::new();
        };
        [
            (self.node.get(b), Source::DynamicBroker),
            (self.cluster.get(b), Source::DynamicDefaultBroker),
        ]
        .into_iter()
        .filter_map(|(v, s)| v.map(|v| (v.clone(), s)))
        .collect()
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("string maps serialise")
    }

    /// Read back (every value checked again: a file from another version must not bring in
    /// a value this one refuses).
    pub fn decode(body: &str) -> Result<DynamicConfigs, String> {
        let d: DynamicConfigs = serde_json::from_str(body).map_err(|e| e.to_string())?;
        for (k, v) in d.node.iter().chain(&d.cluster) {
            check(k, Some(v)).map_err(|e| e.0)?;
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statics() -> LogConfig {
        crate::config::Config::default().topic_defaults()
    }

    #[test]
    fn this_brokers_value_wins_over_the_cluster_default_over_the_static_one() {
        let mut d = DynamicConfigs::default();
        d.cluster.insert(
            "log.retention.ms".into(),
            check("log.retention.ms", Some("5000")).unwrap(),
        );
        d.cluster
            .insert("log.segment.bytes".into(), "2097152".into());
        d.node.insert("log.retention.ms".into(), "7000".into());
        let c = d.apply(statics()).unwrap();
        assert_eq!((c.retention_ms, c.segment_bytes), (7000, 2 << 20));
        let key = topic_config::find("retention.ms").unwrap();
        assert_eq!(
            d.synonyms_of(key),
            vec![
                ("7000".to_string(), Source::DynamicBroker),
                ("5000".to_string(), Source::DynamicDefaultBroker)
            ]
        );
        assert_eq!(DynamicConfigs::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn only_defaults_of_topic_configs_are_dynamic() {
        assert_eq!(
            topic_key_of("log.retention.ms").unwrap().name,
            "retention.ms"
        );
        assert_eq!(
            topic_key_of("message.max.bytes").unwrap().name,
            "max.message.bytes"
        );
        for static_key in ["num.partitions", "log.preallocate", "broker.id", "no.such"] {
            let e = check(static_key, Some("1")).unwrap_err();
            assert!(e.0.contains(static_key), "{e:?}");
        }
        let e = check("log.segment.bytes", Some("10")).unwrap_err();
        assert!(e.0.contains("log.segment.bytes"), "{e:?}");
        assert!(DynamicConfigs::decode(r#"{"node":{"log.segment.bytes":"10"}}"#).is_err());
    }
}
