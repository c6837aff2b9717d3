//! Listeners, Kafka's way: several, each with a name and a security protocol
//! (`listeners = "CLIENT://0.0.0.0:9093,INTERNAL://127.0.0.1:9094"`,
//! `listener_security_protocol_map = "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT"`), and the address
//! clients of each are told (`advertised_listeners`). A client is answered with the addresses of
//! the listener it connected to: Metadata, DescribeCluster and FindCoordinator name every broker
//! by its endpoint of that listener.
//!
//! Without `listeners`, the broker has one PLAINTEXT listener on `listen`, advertised as
//! `advertised_listener` (the embedded default: `PLAINTEXT://127.0.0.1:9092`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::{parse_host_port, Config};

/// How a listener's connections are secured (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// SSL and SASL_SSL: TLS first.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// SASL_PLAINTEXT and SASL_SSL: a client authenticates before anything else.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn parse(text: &str) -> Option<Self> {
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(text))
    }
}

/// A listener as configured: where it binds, how it is secured, what its clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    /// `(host, port)` clients of this listener are told; `None`: the address it is bound to
    /// (the port the system chose, for port 0).
    pub advertised: Option<(String, i32)>,
}

/// Whether a TLS listener asks its clients for a certificate (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Asked for; a client without one is served.
    Requested,
    /// A client without a certificate that chains to `ssl_ca_location` is refused.
    Required,
}

/// What the TLS listeners serve: where their PEM files are and what they ask of clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub certificate: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: Option<std::path::PathBuf>,
    pub client_auth: ClientAuth,
    pub handshake_timeout: std::time::Duration,
    /// `None`: the files are read only at start.
    pub reload_interval: Option<std::time::Duration>,
    /// The links between brokers are TLS too (mutual: the CAs are required).
    pub inter_broker: bool,
}

/// A broker's address on one listener, as the cluster metadata records it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
}

/// The listener of the embedded default and of `listen` alone.
pub const DEFAULT_LISTENER: &str = "PLAINTEXT";

/// At most this many listeners (each one task and one socket).
pub const LISTENERS_MAX: usize = 16;

impl Config {
    /// The listeners clients connect to, in the order configured (the first is the one named
    /// in single-address settings such as DescribeConfigs' `advertised.listeners` before the
    /// others): every listener but the inter-broker one ([`Config::inter_broker_listener`]).
    pub fn listener_specs(&self) -> Result<Vec<ListenerSpec>, String> {
        let mut specs = self.all_listener_specs()?;
        let name = self.inter_broker_listener_name.trim();
        if !name.is_empty() {
            specs.retain(|s| s.name != name);
            if specs.is_empty() {
                return Err(format!(
                    "inter_broker_listener_name = {name:?} is the only listener: clients need one of their own"
                ));
            }
        }
        Ok(specs)
    }

    /// The listener the brokers link on (Kafka's `inter.broker.listener.name`), if one is
    /// named: PLAINTEXT or SSL, in a cluster, on this broker's `cluster_peers` port.
    pub fn inter_broker_listener(&self) -> Result<Option<ListenerSpec>, String> {
        let name = self.inter_broker_listener_name.trim();
        if name.is_empty() {
            return Ok(None);
        }
        if !self.clustered() {
            return Err(format!(
                "inter_broker_listener_name = {name:?} but cluster_peers is empty: a single node has no links between brokers"
            ));
        }
        if self.inter_broker_security_protocol.trim() != "PLAINTEXT" {
            return Err("inter_broker_listener_name and inter_broker_security_protocol are both set: the listener's protocol (listener_security_protocol_map) is the links' (as in Kafka, give one of them)".into());
        }
        if self.inter_broker_listen.is_some() {
            return Err("inter_broker_listener_name and inter_broker_listen are both set: the listener's address is where the brokers link".into());
        }
        let spec = self
            .all_listener_specs()?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                format!("inter_broker_listener_name = {name:?} is not one of the listeners")
            })?;
        if !matches!(
            spec.protocol,
            SecurityProtocol::Plaintext | SecurityProtocol::Ssl
        ) {
            return Err(format!(
                "inter_broker_listener_name = {name:?} is a {} listener: the brokers link by PLAINTEXT or SSL (mutual TLS; SASL between brokers is not supported)",
                spec.protocol.name()
            ));
        }
        let peer_port = self.peers().get(&(self.node_id as u64)).map(|a| a.port());
        if peer_port != Some(spec.bind.port()) {
            return Err(format!(
                "inter_broker_listener_name = {name:?} listens on port {}, but this broker's address in cluster_peers has port {}: the others dial that one",
                spec.bind.port(),
                peer_port.map_or("none".into(), |p| p.to_string())
            ));
        }
        Ok(Some(spec))
    }

    /// Every listener configured, the inter-broker one included.
    fn all_listener_specs(&self) -> Result<Vec<ListenerSpec>, String> {
        if self.listeners.trim().is_empty() {
            if !self.inter_broker_listener_name.trim().is_empty() {
                return Err("inter_broker_listener_name is set but listeners is not: name the listeners (e.g. listeners = \"CLIENT://0.0.0.0:9092,REPLICATION://10.0.0.1:9093\")".into());
            }
            if !self.advertised_listeners.trim().is_empty() {
                return Err("advertised_listeners is set but listeners is not: name the listeners (e.g. listeners = \"PLAINTEXT://0.0.0.0:9092\")".into());
            }
            let advertised = match &self.advertised_listener {
                Some(a) => Some(parse_host_port(a)?),
                None => None,
            };
            return Ok(vec![ListenerSpec {
                name: DEFAULT_LISTENER.into(),
                protocol: SecurityProtocol::Plaintext,
                bind: self.listen,
                advertised,
            }]);
        }
        if self.advertised_listener.is_some() {
            return Err("advertised_listener and listeners are both set: with listeners, give the advertised addresses in advertised_listeners".into());
        }
        let protocols = self.protocol_map()?;
        let mut specs: Vec<ListenerSpec> = Vec::new();
        for (name, host, port) in parse_list("listeners", &self.listeners)? {
            let protocol = *protocols.get(&name).ok_or_else(|| {
                format!("listener {name} has no security protocol: add {name}:PLAINTEXT (or another protocol) to listener_security_protocol_map")
            })?;
            let bind = SocketAddr::new(bind_ip(&name, &host)?, port);
            if let Some(other) = specs.iter().find(|s| s.bind.port() == port && port != 0) {
                return Err(format!(
                    "listeners {} and {name} use the same port {port}",
                    other.name
                ));
            }
            specs.push(ListenerSpec {
                name,
                protocol,
                bind,
                advertised: None,
            });
        }
        if specs.len() > LISTENERS_MAX {
            return Err(format!(
                "{} listeners: at most {LISTENERS_MAX}",
                specs.len()
            ));
        }
        for (name, host, port) in parse_list("advertised_listeners", &self.advertised_listeners)? {
            let Some(spec) = specs.iter_mut().find(|s| s.name == name) else {
                return Err(format!(
                    "advertised_listeners names {name}, which is not one of the listeners"
                ));
            };
            if host.is_empty() {
                return Err(format!("advertised_listeners: {name} has an empty host"));
            }
            spec.advertised = Some((host, port as i32));
        }
        Ok(specs)
    }

    /// What the TLS listeners serve; `None` when no listener is SSL (the `ssl_*` settings are
    /// then not used).
    pub fn tls_settings(&self) -> Result<Option<TlsSettings>, String> {
        let specs = self.listener_specs()?;
        let inter_broker = match self.inter_broker_security_protocol.trim() {
            "PLAINTEXT" => false,
            "SSL" => true,
            other => {
                return Err(format!(
                    "inter_broker_security_protocol = {other:?}: PLAINTEXT or SSL"
                ))
            }
        };
        let inter_broker = inter_broker
            || self
                .inter_broker_listener()?
                .is_some_and(|s| s.protocol == SecurityProtocol::Ssl);
        if inter_broker && !self.clustered() {
            return Err("inter_broker_security_protocol = \"SSL\" but cluster_peers is empty: a single node has no links between brokers".into());
        }
        if !inter_broker && !specs.iter().any(|s| s.protocol.uses_tls()) {
            return Ok(None);
        }
        let path = |key: &str, value: &str| -> Result<std::path::PathBuf, String> {
            if value.trim().is_empty() {
                Err(format!(
                    "an SSL listener (or TLS between brokers) needs {key} (a PEM file)"
                ))
            } else {
                Ok(value.trim().into())
            }
        };
        let client_auth = match self.ssl_client_auth.trim() {
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            other => {
                return Err(format!(
                    "ssl_client_auth = {other:?}: none, requested or required"
                ))
            }
        };
        let ca = match self.ssl_ca_location.trim() {
            "" if inter_broker => {
                return Err("inter_broker_security_protocol = \"SSL\": the brokers' certificates are checked against ssl_ca_location, which is not set".into())
            }
            "" if client_auth != ClientAuth::None => {
                return Err(format!(
                    "ssl_client_auth = {}: client certificates need ssl_ca_location (the CAs they chain to)",
                    self.ssl_client_auth.trim()
                ))
            }
            "" => None,
            ca => Some(ca.into()),
        };
        if !(100..=600_000).contains(&self.ssl_handshake_timeout_ms) {
            return Err("ssl_handshake_timeout_ms must be from 100 to 600000".into());
        }
        if self.ssl_reload_interval_ms != 0 && self.ssl_reload_interval_ms < 100 {
            return Err("ssl_reload_interval_ms must be 0 (never) or at least 100".into());
        }
        Ok(Some(TlsSettings {
            certificate: path("ssl_certificate_location", &self.ssl_certificate_location)?,
            key: path("ssl_key_location", &self.ssl_key_location)?,
            ca,
            client_auth,
            handshake_timeout: std::time::Duration::from_millis(self.ssl_handshake_timeout_ms),
            reload_interval: (self.ssl_reload_interval_ms > 0)
                .then(|| std::time::Duration::from_millis(self.ssl_reload_interval_ms)),
            inter_broker,
        }))
    }

    /// This broker's address on each listener, as its clients are told (the listeners'
    /// order). Empty only for a configuration [`Config::check`] refuses.
    pub fn advertised_endpoints(&self) -> Vec<Endpoint> {
        self.listener_specs()
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let (host, port) = s
                    .advertised
                    .unwrap_or_else(|| (s.bind.ip().to_string(), s.bind.port() as i32));
                Endpoint {
                    name: s.name,
                    host,
                    port,
                }
            })
            .collect()
    }

    /// Listeners bound to a port the system chose (port 0) and advertised at no address of
    /// their own are advertised at the address they were bound to: `bound` is each listener's
    /// name and bound address.
    pub fn advertise_bound(&mut self, bound: &[(String, SocketAddr)]) {
        let Ok(specs) = self.listener_specs() else {
            return;
        };
        for spec in specs {
            if spec.bind.port() != 0 || spec.advertised.is_some() {
                continue;
            }
            let Some((_, addr)) = bound.iter().find(|(n, _)| *n == spec.name) else {
                continue;
            };
            if self.listeners.trim().is_empty() {
                self.advertised_listener = Some(addr.to_string());
            } else {
                let sep = if self.advertised_listeners.trim().is_empty() {
                    ""
                } else {
                    ","
                };
                self.advertised_listeners =
                    format!("{}{sep}{}://{}", self.advertised_listeners, spec.name, addr);
            }
        }
    }

    /// Kafka's `listeners`, `advertised.listeners` and `listener.security.protocol.map` as
    /// this broker has them.
    pub fn kafka_listener_settings(&self) -> (String, String, String) {
        let specs = self.listener_specs().unwrap_or_default();
        let listeners = specs
            .iter()
            .map(|s| format!("{}://{}", s.name, s.bind))
            .collect::<Vec<_>>()
            .join(",");
        let advertised = self
            .advertised_endpoints()
            .iter()
            .map(|e| format!("{}://{}:{}", e.name, e.host, e.port))
            .collect::<Vec<_>>()
            .join(",");
        let map = specs
            .iter()
            .map(|s| format!("{}:{}", s.name, s.protocol.name()))
            .collect::<Vec<_>>()
            .join(",");
        (listeners, advertised, map)
    }

    /// Every listener's name to its protocol: Kafka's default map (each protocol's name maps
    /// to itself) with `listener_security_protocol_map` over it.
    fn protocol_map(&self) -> Result<BTreeMap<String, SecurityProtocol>, String> {
        let mut map: BTreeMap<String, SecurityProtocol> = [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .map(|p| (p.name().to_string(), p))
        .collect();
        let mut seen = BTreeSet::new();
        for entry in self
            .listener_security_protocol_map
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (name, protocol) = entry.split_once(':').ok_or_else(|| {
                format!("listener_security_protocol_map: {entry:?} is not NAME:PROTOCOL")
            })?;
            let name = check_name(name.trim())?;
            let protocol = SecurityProtocol::parse(protocol.trim()).ok_or_else(|| {
                format!("listener_security_protocol_map: {protocol:?} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
            })?;
            if !seen.insert(name.clone()) {
                return Err(format!("listener_security_protocol_map names {name} twice"));
            }
            map.insert(name, protocol);
        }
        Ok(map)
    }
}

/// `NAME://host:port,…`: each listener's name (unique), host (may be empty) and port.
fn parse_list(key: &str, text: &str) -> Result<Vec<(String, String, u16)>, String> {
    let mut out: Vec<(String, String, u16)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, address) = entry
            .split_once("://")
            .ok_or_else(|| format!("{key}: {entry:?} is not NAME://host:port"))?;
        let name = check_name(name)?;
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| format!("{key}: {entry:?} has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{key}: {entry:?} has an invalid port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if out.iter().any(|(n, _, _)| *n == name) {
            return Err(format!("{key} names {name} twice"));
        }
        out.push((name, host.to_string(), port));
    }
    if out.is_empty() && !text.trim().is_empty() {
        return Err(format!("{key}: no listener in {text:?}"));
    }
    Ok(out)
}

/// A listener's name: letters, digits, `_` and `-`, as Kafka takes them (upper case by
/// convention; names are compared as written).
fn check_name(name: &str) -> Result<String, String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "{name:?} is not a listener name (letters, digits, _ and -, at most 64)"
        ));
    }
    Ok(name.to_string())
}

/// The address a listener binds: an IP address, `localhost`, or empty for every interface
/// (Kafka's `PLAINTEXT://:9092`).
fn bind_ip(name: &str, host: &str) -> Result<IpAddr, String> {
    match host {
        "" => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        "localhost" => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        _ => host.parse().map_err(|_| {
            format!("listener {name}: {host:?} is not an IP address (a host name is for advertised_listeners)")
        }),
    }
}
