//! Client-metrics subscriptions: the config resources of type CLIENT_METRICS (16), each a
//! named set of `metrics` (name prefixes, `*` for all), `interval.ms` (how often matching
//! clients push) and `match` (selectors a client must all fit). They are kept as plain configs
//! (the cluster metadata's, or a single node's file) and read here: checked when changed, and
//! resolved against a client when it asks what to push.

use regex::Regex;

use crate::protocol::error;
use crate::topic_config::Overrides;

/// The configs a subscription has.
pub const METRICS: &str = "metrics";
pub const INTERVAL_MS: &str = "interval.ms";
pub const MATCH: &str = "match";
pub const KEYS: [&str; 3] = [METRICS, INTERVAL_MS, MATCH];

/// Kafka's bounds and default of `interval.ms`; a client no subscription names pushes at the
/// default, and no subscription makes a client push less often than that.
pub const DEFAULT_INTERVAL_MS: i32 = 300_000;
pub const MIN_INTERVAL_MS: i32 = 100;
pub const MAX_INTERVAL_MS: i32 = 3_600_000;

/// The `metrics` entry that asks for every metric.
pub const ALL_METRICS: &str = "*";

/// A longest `match` pattern: a regular expression is compiled per subscription, and the
/// configs are small.
const MAX_PATTERN: usize = 1024;

/// What a `match` entry may select on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    InstanceId,
    ClientId,
    SoftwareName,
    SoftwareVersion,
    SourceAddress,
    SourcePort,
}

const SELECTORS: [(&str, Selector); 6] = [
    ("client_instance_id", Selector::InstanceId),
    ("client_id", Selector::ClientId),
    ("client_software_name", Selector::SoftwareName),
    ("client_software_version", Selector::SoftwareVersion),
    ("client_source_address", Selector::SourceAddress),
    ("client_source_port", Selector::SourcePort),
];

/// What is known of a client when it first asks for its subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its client instance id in Kafka's text form (URL-safe base64).
    pub instance_id: String,
    pub client_id: String,
    /// From its ApiVersions request (v3+).
    pub software_name: Option<String>,
    pub software_version: Option<String>,
    pub source_address: Option<String>,
    pub source_port: Option<String>,
}

impl ClientInfo {
    fn get(&self, s: Selector) -> Option<&str> {
        match s {
            Selector::InstanceId => Some(&self.instance_id),
            Selector::ClientId => Some(&self.client_id),
            Selector::SoftwareName => self.software_name.as_deref(),
            Selector::SoftwareVersion => self.software_version.as_deref(),
            Selector::SourceAddress => self.source_address.as_deref(),
            Selector::SourcePort => self.source_port.as_deref(),
        }
    }
}

/// A subscription, parsed.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub name: String,
    pub metrics: Vec<String>,
    pub interval_ms: i32,
    /// Every one must match the whole of its attribute.
    matchers: Vec<(Selector, Regex)>,
}

/// Why a subscription's configs are refused: Kafka's error code and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub code: i16,
    pub message: String,
}

fn invalid(code: i16, message: String) -> Invalid {
    Invalid { code, message }
}

/// A subscription's name must not be empty.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(invalid(
            error::INVALID_REQUEST,
            "Subscription name can't be empty".to_string(),
        ));
    }
    Ok(())
}

/// Kafka's list form: comma-separated, each entry trimmed, an empty value an empty list.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `name`'s subscription from its configs (missing ones at their defaults), or why not.
pub fn parse(name: &str, configs: &Overrides) -> Result<Subscription, Invalid> {
    check_name(name)?;
    if let Some(k) = configs.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(invalid(
            error::INVALID_REQUEST,
            format!(
                "Unknown client metrics configuration: {k} (a subscription has {})",
                KEYS.join(", ")
            ),
        ));
    }
    let metrics = configs.get(METRICS).map(|v| list(v)).unwrap_or_default();
    let interval_ms = match configs.get(INTERVAL_MS) {
        None => DEFAULT_INTERVAL_MS,
        Some(v) => {
            let ms: i32 = v.trim().parse().map_err(|_| {
                invalid(
                    error::INVALID_CONFIG,
                    format!("Invalid value {v} for configuration {INTERVAL_MS}: Not a number of type INT"),
                )
            })?;
            if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms) {
                return Err(invalid(
                    error::INVALID_REQUEST,
                    format!(
                        "Invalid value {ms} for {INTERVAL_MS}, interval must be between \
                         {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS} (1 hour)"
                    ),
                ));
            }
            ms
        }
    };
    let mut matchers: Vec<(Selector, Regex)> = Vec::new();
    for entry in configs.get(MATCH).map(|v| list(v)).unwrap_or_default() {
        let (selector, pattern) = matcher(&entry)?;
        // A selector given twice: the last one counts, as Kafka.
        matchers.retain(|(s, _)| *s != selector);
        matchers.push((selector, pattern));
    }
    Ok(Subscription {
        name: name.to_string(),
        metrics,
        interval_ms,
        matchers,
    })
}

/// One `match` entry: `selector=regex`.
fn matcher(entry: &str) -> Result<(Selector, Regex), Invalid> {
    let illegal = |why: &str| {
        invalid(
            error::INVALID_CONFIG,
            format!("Illegal client matching pattern: {entry} ({why})"),
        )
    };
    let parts: Vec<&str> = entry.split('=').collect();
    let [key, pattern] = parts[..] else {
        return Err(illegal("expected selector=regular expression"));
    };
    let (key, pattern) = (key.trim(), pattern.trim());
    let Some(&(_, selector)) = SELECTORS.iter().find(|(k, _)| *k == key) else {
        let known: Vec<&str> = SELECTORS.iter().map(|(k, _)| *k).collect();
        return Err(illegal(&format!(
            "unknown selector {key}; known: {}",
            known.join(", ")
        )));
    };
    if pattern.is_empty() || pattern.len() > MAX_PATTERN {
        return Err(illegal("empty or too long a regular expression"));
    }
    // Matched against the whole attribute, as Java's `Matcher::matches`.
    let anchored = format!("^(?:{pattern})$");
    let regex = Regex::new(&anchored).map_err(|e| illegal(&e.to_string()))?;
    Ok((selector, regex))
}

impl Subscription {
    /// Whether `client` fits every selector (no selector: every client does).
    pub fn matches(&self, client: &ClientInfo) -> bool {
        self.matchers
            .iter()
            .all(|(s, re)| client.get(*s).is_some_and(|v| re.is_match(v)))
    }
}

/// What the subscriptions that match a client ask of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// Name prefixes, sorted and each once; `["*"]` when one asks for all; empty: none.
    pub metrics: Vec<String>,
    /// The shortest interval of those matched, never above the default.
    pub interval_ms: i32,
}

/// Every subscription of `all` that can be read (one that cannot was refused when set and
/// is skipped), by name.
pub fn parse_all(all: &std::collections::BTreeMap<String, Overrides>) -> Vec<Subscription> {
    all.iter()
        .filter_map(|(name, configs)| match parse(name, configs) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(subscription = %name, error = %e, "client-metrics subscription skipped");
                None
            }
        })
        .collect()
}

/// The union of what the subscriptions matching `client` ask for.
pub fn resolve(subscriptions: &[Subscription], client: &ClientInfo) -> Matched {
    let mut metrics = std::collections::BTreeSet::new();
    let mut interval_ms = DEFAULT_INTERVAL_MS;
    for s in subscriptions.iter().filter(|s| s.matches(client)) {
        metrics.extend(s.metrics.iter().cloned());
        interval_ms = interval_ms.min(s.interval_ms);
    }
    let metrics = if metrics.contains(ALL_METRICS) {
        vec![ALL_METRICS.to_string()]
    } else {
        metrics.into_iter().collect()
    };
    Matched {
        metrics,
        interval_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> Overrides {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn client(id: &str, software: &str) -> ClientInfo {
        ClientInfo {
            instance_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            client_id: id.into(),
            software_name: Some(software.into()),
            software_version: Some("4.1.0".into()),
            source_address: Some("127.0.0.1".into()),
            source_port: Some("50000".into()),
        }
    }

    #[test]
    fn configs_are_checked_with_kafkas_errors() {
        let code =
            |name: &str, pairs: &[(&str, &str)]| parse(name, &configs(pairs)).err().map(|e| e.code);
        assert_eq!(
            code("s", &[("metrics", "a.b"), ("interval.ms", "1000")]),
            None
        );
        assert_eq!(code("", &[]), Some(error::INVALID_REQUEST));
        assert_eq!(
            code("s", &[("colour", "red")]),
            Some(error::INVALID_REQUEST)
        );
        assert_eq!(
            code("s", &[("interval.ms", "99")]),
            Some(error::INVALID_REQUEST)
        );
        assert_eq!(
            code("s", &[("interval.ms", "3600001")]),
            Some(error::INVALID_REQUEST)
        );
        assert_eq!(
            code("s", &[("interval.ms", "soon")]),
            Some(error::INVALID_CONFIG)
        );
        assert_eq!(
            code("s", &[("match", "client_id")]),
            Some(error::INVALID_CONFIG)
        );
        assert_eq!(
            code("s", &[("match", "client_id=a=b")]),
            Some(error::INVALID_CONFIG)
        );
        assert_eq!(
            code("s", &[("match", "hostname=x")]),
            Some(error::INVALID_CONFIG)
        );
        assert_eq!(
            code("s", &[("match", "client_id=(")]),
            Some(error::INVALID_CONFIG)
        );
    }

    #[test]
    fn every_selector_must_match_the_whole_attribute() {
        let s = parse(
            "s",
            &configs(&[(
                "match",
                "client_id=app-.*, client_software_name=apache-kafka-java",
            )]),
        )
        .unwrap();
        assert!(s.matches(&client("app-1", "apache-kafka-java")));
        assert!(!s.matches(&client("app-1", "librdkafka")));
        assert!(
            !s.matches(&client("my-app-1", "apache-kafka-java")),
            "whole, not found within"
        );
        let mut unknown = client("app-1", "apache-kafka-java");
        unknown.software_name = None;
        assert!(
            !s.matches(&unknown),
            "an attribute not known does not match"
        );
        assert!(parse("all", &Overrides::new())
            .unwrap()
            .matches(&client("x", "y")));
    }

    #[test]
    fn matched_subscriptions_are_united_at_the_shortest_interval() {
        let subs = vec![
            parse(
                "a",
                &configs(&[
                    ("metrics", "org.apache.kafka.producer., x"),
                    ("interval.ms", "5000"),
                ]),
            )
            .unwrap(),
            parse(
                "b",
                &configs(&[
                    ("metrics", "x,y"),
                    ("interval.ms", "1000"),
                    ("match", "client_id=other"),
                ]),
            )
            .unwrap(),
            parse(
                "c",
                &configs(&[("metrics", "z"), ("interval.ms", "3600000")]),
            )
            .unwrap(),
        ];
        let m = resolve(&subs, &client("app", "java"));
        assert_eq!(m.metrics, vec!["org.apache.kafka.producer.", "x", "z"]);
        assert_eq!(m.interval_ms, 5000);
        let none = resolve(&[], &client("app", "java"));
        assert_eq!(
            (none.metrics.len(), none.interval_ms),
            (0, DEFAULT_INTERVAL_MS)
        );
        let star = parse("s", &configs(&[("metrics", "a, *")])).unwrap();
        assert_eq!(resolve(&[star], &client("a", "b")).metrics, vec!["*"]);
    }
}
