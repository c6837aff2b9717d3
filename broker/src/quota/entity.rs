//! The quotas as configured: for each entity (a user, a client id, both, their defaults, or an
//! IP address) the value of each quota key set for it. Changed only by [`ClientQuotas::apply`]
//! of alterations checked by [`check`], so every broker that applied the same alterations holds
//! the same quotas.
//!
//! Bounds: at most [`ENTITIES_MAX`] entities, names of at most [`NAME_BYTES_MAX`] bytes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::protocol::error;

/// Entities with quotas, at most.
pub const ENTITIES_MAX: usize = 100_000;
/// An entity name's length, at most.
pub const NAME_BYTES_MAX: usize = 1024;

/// Kafka's entity type names.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// One part of an entity: a name, or the default of its type (every user, say, that has no
/// quota of its own — each measured alone).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Name {
    Default,
    Named(String),
}

impl Name {
    /// Kafka's wire form: `None` for the default.
    pub fn as_wire(&self) -> Option<&str> {
        match self {
            Name::Default => None,
            Name::Named(n) => Some(n),
        }
    }
}

/// What a quota is set for: a user, a client id or both (each a name or the default), or an
/// IP address (or the default of IPs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Entity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Name>,
}

impl Entity {
    /// Its parts as Kafka lists them: `(type, name)`, `None` for a default.
    pub fn parts(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::with_capacity(2);
        if let Some(u) = &self.user {
            out.push((USER, u.as_wire()));
        }
        if let Some(c) = &self.client_id {
            out.push((CLIENT_ID, c.as_wire()));
        }
        if let Some(i) = &self.ip {
            out.push((IP, i.as_wire()));
        }
        out
    }

    fn is_ip(&self) -> bool {
        self.ip.is_some()
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .parts()
            .iter()
            .map(|(t, n)| format!("{t}={}", n.unwrap_or("<default>")))
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// The quotas Kafka knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKey {
    /// Bytes per second a client may produce.
    ProducerByteRate,
    /// Bytes per second a client may fetch.
    ConsumerByteRate,
    /// Share of one request handler's time per second, in percent.
    RequestPercentage,
    /// Partitions created or deleted per second (CreateTopics, CreatePartitions, DeleteTopics).
    ControllerMutationRate,
    /// Connections an IP address may open per second.
    ConnectionCreationRate,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 5] = [
        QuotaKey::ProducerByteRate,
        QuotaKey::ConsumerByteRate,
        QuotaKey::RequestPercentage,
        QuotaKey::ControllerMutationRate,
        QuotaKey::ConnectionCreationRate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestPercentage => "request_percentage",
            QuotaKey::ControllerMutationRate => "controller_mutation_rate",
            QuotaKey::ConnectionCreationRate => "connection_creation_rate",
        }
    }

    pub fn parse(name: &str) -> Option<QuotaKey> {
        QuotaKey::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether it is set for IP addresses (the others for users and client ids).
    fn for_ip(self) -> bool {
        self == QuotaKey::ConnectionCreationRate
    }
}

/// A quota's value: positive and finite (checked before it is stored).
#[derive(Debug, Clone, Copy, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Value(pub f64);

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Value {}

/// One change of an entity's quotas: a key set to a value, or removed (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alteration {
    pub entity: Entity,
    pub ops: Vec<(QuotaKey, Option<Value>)>,
}

/// A refusal with Kafka's error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub code: i16,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Refused {
    Refused {
        code: error::INVALID_REQUEST,
        message: message.into(),
    }
}

/// An entity as AlterClientQuotas names it: `(type, name)` pairs, `None` for a default.
/// Kafka's rules and words: known types (a type named twice: the last one), no empty name,
/// an IP alone and a valid address.
pub fn entity_of<'a>(
    parts: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<Entity, Refused> {
    let mut e = Entity::default();
    let mut any = false;
    for (kind, name) in parts {
        any = true;
        let name = match name {
            None => Name::Default,
            Some("") => return Err(invalid(format!("Empty {kind} not supported"))),
            Some(n) if n.len() > NAME_BYTES_MAX => {
                return Err(invalid(format!(
                    "{kind} name is longer than {NAME_BYTES_MAX} bytes"
                )))
            }
            Some(n) => Name::Named(n.to_string()),
        };
        let slot = match kind {
            USER => &mut e.user,
            CLIENT_ID => &mut e.client_id,
            IP => &mut e.ip,
            other => {
                return Err(invalid(format!(
                    "Unhandled client quota entity type: {other}"
                )))
            }
        };
        *slot = Some(name);
    }
    if !any {
        return Err(invalid("Invalid empty client quota entity"));
    }
    if e.is_ip() && (e.user.is_some() || e.client_id.is_some()) {
        // Kafka's words, its missing space included.
        return Err(invalid(
            "Invalid quota entity combination, IP entity shouldnot be combined with User or ClientId",
        ));
    }
    if let Some(Name::Named(ip)) = &e.ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(format!(
                "{ip} is not a valid IP or resolvable host."
            )));
        }
    }
    Ok(e)
}

/// One operation of AlterClientQuotas: its key, and its value or (`remove`) none; checked
/// with Kafka's words against the keys of the entity's type.
pub fn op_of(
    entity: &Entity,
    key: &str,
    value: f64,
    remove: bool,
) -> Result<(QuotaKey, Option<Value>), Refused> {
    let k = QuotaKey::parse(key)
        .filter(|k| k.for_ip() == entity.is_ip())
        .ok_or_else(|| invalid(format!("Invalid configuration key {key}")))?;
    if remove {
        return Ok((k, None));
    }
    if value.is_nan() || value <= 0.0 {
        return Err(invalid(format!("Quota {key} must be greater than 0")));
    }
    let (limit, kind) = match k {
        QuotaKey::ConnectionCreationRate => (i32::MAX as f64, Some("an INT")),
        QuotaKey::ProducerByteRate | QuotaKey::ConsumerByteRate => {
            (i64::MAX as f64, Some("a LONG"))
        }
        QuotaKey::RequestPercentage | QuotaKey::ControllerMutationRate => (f64::MAX, None),
    };
    match kind {
        Some(kind) if value > limit => Err(invalid(format!(
            "Proposed value for {key} is too large for {kind}."
        ))),
        Some(_) if (value % 1.0).abs() > 1e-6 => {
            Err(invalid(format!("{key} cannot be a fractional value.")))
        }
        None if value.is_infinite() => Err(invalid(format!("Quota {key} must be a finite number"))),
        _ => Ok((k, Some(Value(value)))),
    }
}

/// Every entity's quotas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Stored>", into = "Vec<Stored>")]
pub struct ClientQuotas {
    pub entries: BTreeMap<Entity, BTreeMap<QuotaKey, Value>>,
}

/// One entity's quotas as stored (JSON maps take only string keys).
#[derive(Serialize, Deserialize)]
struct Stored {
    entity: Entity,
    quotas: BTreeMap<QuotaKey, Value>,
}

impl From<Vec<Stored>> for ClientQuotas {
    fn from(v: Vec<Stored>) -> Self {
        ClientQuotas {
            entries: v.into_iter().map(|s| (s.entity, s.quotas)).collect(),
        }
    }
}

impl From<ClientQuotas> for Vec<Stored> {
    fn from(q: ClientQuotas) -> Self {
        q.entries
            .into_iter()
            .map(|(entity, quotas)| Stored { entity, quotas })
            .collect()
    }
}

impl ClientQuotas {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any entity has a quota of `key`.
    pub fn any(&self, key: QuotaKey) -> bool {
        self.entries.values().any(|q| q.contains_key(&key))
    }

    pub fn get(&self, entity: &Entity, key: QuotaKey) -> Option<f64> {
        self.entries.get(entity)?.get(&key).map(|v| v.0)
    }

    /// Apply one checked alteration; refused (and nothing changed) when it would add an entity
    /// past [`ENTITIES_MAX`].
    pub fn apply(&mut self, a: &Alteration) -> Result<(), Refused> {
        if !self.entries.contains_key(&a.entity)
            && self.entries.len() >= ENTITIES_MAX
            && a.ops.iter().any(|(_, v)| v.is_some())
        {
            return Err(invalid(format!(
                "{ENTITIES_MAX} entities have quotas already"
            )));
        }
        let quotas = self.entries.entry(a.entity.clone()).or_default();
        for (k, v) in &a.ops {
            match v {
                Some(v) => {
                    quotas.insert(*k, *v);
                }
                None => {
                    quotas.remove(k);
                }
            }
        }
        if quotas.is_empty() {
            self.entries.remove(&a.entity);
        }
        Ok(())
    }
}
