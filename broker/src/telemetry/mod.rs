//! Client telemetry (KIP-714): a client asks which of its own metrics to send
//! (GetTelemetrySubscriptions) and pushes them every interval (PushTelemetry), and the broker
//! shows them on its metrics endpoint beside its own.
//!
//! What a client is asked for comes from the client-metrics subscriptions
//! ([`subscriptions`]), read afresh at each request, so a change reaches every client at its
//! next request. A client is known here by its client instance id (the broker names a new one)
//! from its first request until it is silent for three intervals (at least a minute); at most
//! [`MAX_INSTANCES`] are known, the longest silent forgotten first. The checks of a push —
//! too early, an old subscription, a codec, a size — and their order are Kafka's, so a
//! client's backoff works as against Kafka.
//!
//! Invariant: what the broker holds for clients is bounded whatever they send — instances by
//! [`MAX_INSTANCES`], pushed series by `client_telemetry_max_series` (those over the bound
//! are dropped and counted), a payload by `client_telemetry_max_bytes` compressed and
//! [`MAX_PLAIN_BYTES`] decompressed, names and values by their lengths. Exposure is opt-in
//! (`client_telemetry_enabled`, off by default as in Kafka): off, the two APIs are not
//! listed in ApiVersions, are still answered as Kafka answers them, and a push is checked and
//! dropped unread.

pub mod otlp;
pub mod subscriptions;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use io_backend::{Clock, EnvRng};
use kafka_protocol::messages::{
    GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse, PushTelemetryRequest,
    PushTelemetryResponse,
};
use kafka_protocol::protocol::StrBytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use uuid::Uuid;

use crate::protocol::error;
use crate::sync::Mutex;
use crate::topic_config::Overrides;
use subscriptions::{ClientInfo, Matched};

/// Most clients known at once (Kafka's cache size).
pub const MAX_INSTANCES: usize = 16_384;
/// Most bytes a pushed payload may decompress to.
pub const MAX_PLAIN_BYTES: usize = 16 << 20;
/// A client silent this long (or three of its intervals, if longer) is forgotten.
const MIN_EXPIRY: Duration = Duration::from_secs(60);
/// How often forgotten clients are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Codecs a client may compress its metrics with, preferred first (Kafka's list: zstd, lz4,
/// gzip, snappy).
const ACCEPTED_CODECS: [i8; 4] = [4, 3, 1, 2];
/// Longest metric name, attribute name and value kept; most attributes kept per value.
const MAX_NAME: usize = 200;
const MAX_VALUE: usize = 256;
const MAX_ATTRIBUTES: usize = 16;

/// The settings of client telemetry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Whether the APIs are listed and pushed metrics shown.
    pub enabled: bool,
    /// The largest payload a client may push (compressed), told to clients.
    pub max_bytes: i32,
    /// Most pushed values shown at once, over all clients.
    pub max_series: usize,
}

impl TelemetryConfig {
    pub fn from_config(config: &crate::config::Config) -> Self {
        TelemetryConfig {
            enabled: config.client_telemetry_enabled,
            max_bytes: config.client_telemetry_max_bytes,
            max_series: config.client_telemetry_max_series,
        }
    }
}

/// A registry of client telemetry's metrics, for the metrics endpoint (read at each scrape).
pub fn registry(telemetry: &Arc<ClientTelemetry>) -> prometheus_client::registry::Registry {
    let mut r = prometheus_client::registry::Registry::with_prefix("stillwater");
    r.register_collector(Box::new(telemetry.clone()));
    r
}

/// What the connection knows of the client asking.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asker<'a> {
    pub client_id: &'a str,
    pub peer: Option<SocketAddr>,
    /// Its software's name and version, from its ApiVersions request.
    pub software: Option<(&'a str, &'a str)>,
}

/// One known client.
struct Instance {
    client: ClientInfo,
    /// The subscriptions it was resolved against.
    fingerprint: u32,
    matched: Matched,
    subscription_id: i32,
    last_get: Option<Instant>,
    last_push: Option<Instant>,
    terminating: bool,
    seen: Instant,
    points: Vec<otlp::Point>,
}

impl Instance {
    fn expiry(&self) -> Duration {
        MIN_EXPIRY.max(Duration::from_millis(self.matched.interval_ms as u64 * 3))
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    pushes: u64,
    throttled: u64,
    unknown_subscription: u64,
    refused: u64,
    dropped_series: u64,
}

#[derive(Default)]
struct State {
    instances: HashMap<Uuid, Instance>,
    /// Points held over all instances.
    series: usize,
    next_sweep: Option<Instant>,
    counts: Counts,
    /// The subscriptions parsed, with their fingerprint: parsed (their regular expressions
    /// compiled) once per change, not once per client.
    parsed: Option<(u32, Arc<Vec<subscriptions::Subscription>>)>,
}

/// Client telemetry's state and its two requests.
pub struct ClientTelemetry {
    config: TelemetryConfig,
    clock: Arc<dyn Clock>,
    rng: EnvRng,
    state: Mutex<State>,
}

impl std::fmt::Debug for ClientTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTelemetry")
            .field("config", &self.config)
            .finish()
    }
}

/// A fingerprint of the subscriptions in force: an instance resolved against others is
/// resolved again.
fn fingerprint(subs: &BTreeMap<String, Overrides>) -> u32 {
    let mut crc = 0;
    for (name, configs) in subs {
        crc = crc32c::crc32c_append(crc, name.as_bytes());
        for (k, v) in configs {
            crc = crc32c::crc32c_append(crc, &[0]);
            crc = crc32c::crc32c_append(crc, k.as_bytes());
            crc = crc32c::crc32c_append(crc, &[1]);
            crc = crc32c::crc32c_append(crc, v.as_bytes());
        }
        crc = crc32c::crc32c_append(crc, &[2]);
    }
    crc
}

/// The subscription id of what `matched` asks of client `id`: the same on every broker, so a
/// client that moves to another broker keeps pushing (Kafka's recipe: a CRC-32C of the
/// metrics and interval, folded with the id's hash).
fn subscription_id(matched: &Matched, id: Uuid) -> i32 {
    let text = format!("{:?}{}", matched.metrics, matched.interval_ms);
    let (hi, lo) = id.as_u64_pair();
    let x = hi ^ lo;
    (crc32c::crc32c(text.as_bytes()) as i32) ^ ((x >> 32) as i32 ^ x as i32)
}

/// Kafka's text form of a uuid: URL-safe base64 without padding.
pub fn kafka_uuid(id: Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

impl State {
    /// Forget clients silent too long.
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        let before = self.instances.len();
        let mut freed = 0;
        self.instances.retain(|_, i| {
            let keep = now.saturating_duration_since(i.seen) < i.expiry();
            if !keep {
                freed += i.points.len();
            }
            keep
        });
        self.series -= freed;
        if before != self.instances.len() {
            tracing::debug!(
                forgotten = before - self.instances.len(),
                known = self.instances.len(),
                "silent telemetry clients forgotten"
            );
        }
    }

    /// A client instance id no client has.
    fn new_id(&self, rng: &EnvRng) -> Uuid {
        loop {
            let id = Uuid::from_u64_pair(rng.next_u64(), rng.next_u64());
            if !id.is_nil() && !self.instances.contains_key(&id) {
                return id;
            }
        }
    }

    /// Client `id`, made known (and the longest silent forgotten, when full), resolved
    /// against the subscriptions in force.
    fn instance(
        &mut self,
        id: Uuid,
        subs: &BTreeMap<String, Overrides>,
        asker: Asker<'_>,
        now: Instant,
    ) -> &mut Instance {
        let fp = fingerprint(subs);
        if !self.instances.contains_key(&id) && self.instances.len() >= MAX_INSTANCES {
            let oldest = self
                .instances
                .iter()
                .min_by_key(|(k, i)| (i.seen, **k))
                .map(|(k, _)| *k);
            if let Some(old) = oldest.and_then(|k| self.instances.remove(&k)) {
                self.series -= old.points.len();
            }
        }
        let parsed = match &self.parsed {
            Some((f, parsed)) if *f == fp => parsed.clone(),
            _ => {
                let parsed = Arc::new(subscriptions::parse_all(subs));
                self.parsed = Some((fp, parsed.clone()));
                parsed
            }
        };
        let resolve = |client: &ClientInfo| {
            let matched = subscriptions::resolve(&parsed, client);
            let sid = subscription_id(&matched, id);
            (matched, sid)
        };
        let inst = self.instances.entry(id).or_insert_with(|| {
            let client = ClientInfo {
                instance_id: kafka_uuid(id),
                client_id: asker.client_id.to_string(),
                software_name: asker.software.map(|(n, _)| n.to_string()),
                software_version: asker.software.map(|(_, v)| v.to_string()),
                source_address: asker.peer.map(|p| p.ip().to_string()),
                source_port: asker.peer.map(|p| p.port().to_string()),
            };
            let (matched, subscription_id) = resolve(&client);
            Instance {
                client,
                fingerprint: fp,
                matched,
                subscription_id,
                last_get: None,
                last_push: None,
                terminating: false,
                seen: now,
                points: Vec::new(),
            }
        });
        if inst.fingerprint != fp {
            // The subscriptions changed: a new subscription, and the client starts over.
            let (matched, sid) = resolve(&inst.client);
            inst.fingerprint = fp;
            inst.matched = matched;
            inst.subscription_id = sid;
            inst.last_get = None;
            inst.last_push = None;
            inst.terminating = false;
        }
        inst.seen = now;
        inst
    }
}

impl ClientTelemetry {
    pub fn new(config: TelemetryConfig, clock: Arc<dyn Clock>, rng: EnvRng) -> Arc<Self> {
        Arc::new(ClientTelemetry {
            config,
            clock,
            rng,
            state: Mutex::new("telemetry.state", State::default()),
        })
    }

    /// Whether the APIs are listed in ApiVersions and pushed metrics shown.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// GetTelemetrySubscriptions: what the client is to push and how often (a client that
    /// has no id yet is given one). Asked again before its interval has passed since its
    /// last request: THROTTLING_QUOTA_EXCEEDED.
    pub fn get_subscriptions(
        &self,
        req: &GetTelemetrySubscriptionsRequest,
        asker: Asker<'_>,
        subs: &BTreeMap<String, Overrides>,
    ) -> GetTelemetrySubscriptionsResponse {
        let now = self.clock.now();
        let mut st = self.state.lock().expect("not poisoned");
        st.sweep(now);
        let id = if req.client_instance_id.is_nil() {
            st.new_id(&self.rng)
        } else {
            req.client_instance_id
        };
        let inst = st.instance(id, subs, asker, now);
        let interval = Duration::from_millis(inst.matched.interval_ms as u64);
        let last = inst.last_get.max(inst.last_push);
        let mut resp = GetTelemetrySubscriptionsResponse::default();
        if last.is_some_and(|t| now.saturating_duration_since(t) < interval) {
            resp.error_code = error::THROTTLING_QUOTA_EXCEEDED;
            st.counts.throttled += 1;
            return resp;
        }
        inst.last_get = Some(now);
        resp.client_instance_id = id;
        resp.subscription_id = inst.subscription_id;
        resp.accepted_compression_types = ACCEPTED_CODECS.to_vec();
        resp.push_interval_ms = inst.matched.interval_ms;
        resp.telemetry_max_bytes = self.config.max_bytes;
        // Cumulative values: what a scrape of the metrics endpoint shows as is.
        resp.delta_temporality = false;
        resp.requested_metrics = inst
            .matched
            .metrics
            .iter()
            .map(|m| StrBytes::from_string(m.clone()))
            .collect();
        resp
    }

    /// PushTelemetry: the client's metrics, checked in Kafka's order — a client id, not
    /// after its last push, not too early (its first push after asking always in time),
    /// the subscription it was given, a codec Kafka knows, the size told — then read.
    pub fn push(
        &self,
        req: &PushTelemetryRequest,
        asker: Asker<'_>,
        subs: &BTreeMap<String, Overrides>,
    ) -> PushTelemetryResponse {
        let mut resp = PushTelemetryResponse::default();
        if req.client_instance_id.is_nil() {
            resp.error_code = error::INVALID_REQUEST;
            return resp;
        }
        let now = self.clock.now();
        let max_bytes = self.config.max_bytes;
        let mut st = self.state.lock().expect("not poisoned");
        st.sweep(now);
        let inst = st.instance(req.client_instance_id, subs, asker, now);
        let checked = (|| {
            if inst.terminating {
                return Err(error::INVALID_REQUEST);
            }
            let interval = Duration::from_millis(inst.matched.interval_ms as u64);
            let in_time = match (inst.last_get, inst.last_push) {
                (_, None) => true,
                (Some(get), Some(push)) if get > push => true,
                (_, Some(push)) => now.saturating_duration_since(push) >= interval,
            };
            if !req.terminating && !in_time {
                return Err(error::THROTTLING_QUOTA_EXCEEDED);
            }
            inst.last_push = Some(now);
            if req.subscription_id != inst.subscription_id {
                return Err(error::UNKNOWN_SUBSCRIPTION_ID);
            }
            if !(0..=4).contains(&req.compression_type) {
                return Err(error::UNSUPPORTED_COMPRESSION_TYPE);
            }
            if req.metrics.len() > max_bytes.max(0) as usize {
                return Err(error::TELEMETRY_TOO_LARGE);
            }
            Ok(())
        })();
        inst.terminating = req.terminating;
        let outcome = checked.and_then(|()| {
            // Off, nothing reads pushed metrics (as Kafka without a telemetry reporter).
            if req.metrics.is_empty() || !self.config.enabled {
                return Ok(Vec::new());
            }
            let plain;
            let bytes: &[u8] = match req.compression_type {
                0 => &req.metrics,
                codec => {
                    plain = crate::records::decompress(codec as i16, &req.metrics, MAX_PLAIN_BYTES)
                        .map_err(|_| error::INVALID_RECORD)?;
                    &plain
                }
            };
            otlp::decode(bytes).map_err(|_| error::INVALID_RECORD)
        });
        let points = match outcome {
            Err(code) => {
                match code {
                    error::THROTTLING_QUOTA_EXCEEDED => st.counts.throttled += 1,
                    error::UNKNOWN_SUBSCRIPTION_ID => st.counts.unknown_subscription += 1,
                    _ => st.counts.refused += 1,
                }
                resp.error_code = code;
                return resp;
            }
            Ok(points) => points,
        };
        st.counts.pushes += 1;
        if !points.is_empty() {
            self.keep(&mut st, req.client_instance_id, points);
        }
        resp
    }

    /// Replace client `id`'s shown values with `points`, within the bound on series.
    fn keep(&self, st: &mut State, id: Uuid, points: Vec<otlp::Point>) {
        let held = st.instances.get(&id).map_or(0, |i| i.points.len());
        let room = self.config.max_series.saturating_sub(st.series - held);
        let dropped = points.len().saturating_sub(room);
        let mut points = points;
        points.truncate(room);
        for p in &mut points {
            p.name.truncate(floor_char(&p.name, MAX_NAME));
            p.attributes.truncate(MAX_ATTRIBUTES);
            for (k, v) in &mut p.attributes {
                k.truncate(floor_char(k, MAX_NAME));
                v.truncate(floor_char(v, MAX_VALUE));
            }
        }
        let Some(inst) = st.instances.get_mut(&id) else {
            return;
        };
        let now_held = points.len();
        inst.points = points;
        st.series = st.series - held + now_held;
        if dropped > 0 {
            st.counts.dropped_series += dropped as u64;
            tracing::debug!(
                dropped,
                max = self.config.max_series,
                "client telemetry series over the bound"
            );
        }
    }
}

/// The largest char boundary of `s` at most `max`.
fn floor_char(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// A name as Prometheus takes it: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn prometheus_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// A label value as the text format needs it (the encoder writes it as given).
fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A series' labels, names and values.
type Labels = Vec<(String, String)>;

/// The labels of the series the client labels as `client` and the point as `attributes`.
fn labels_of(client: &ClientInfo, attributes: &[(String, String)]) -> Labels {
    let mut labels = vec![
        (
            "client_instance_id".to_string(),
            escaped(&client.instance_id),
        ),
        ("client_id".to_string(), escaped(&client.client_id)),
        (
            "client_software_name".to_string(),
            escaped(client.software_name.as_deref().unwrap_or("")),
        ),
        (
            "client_software_version".to_string(),
            escaped(client.software_version.as_deref().unwrap_or("")),
        ),
    ];
    for (k, v) in attributes {
        let k = prometheus_name(k);
        if labels.iter().all(|(have, _)| *have != k) {
            labels.push((k, escaped(v)));
        }
    }
    labels
}

impl Collector for ClientTelemetry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (counts, instances, series, families) = {
            let mut st = self.state.lock().expect("not poisoned");
            st.sweep(self.clock.now());
            let mut families: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
            for inst in st.instances.values() {
                for p in &inst.points {
                    let name = format!("client_{}", prometheus_name(&p.name));
                    families
                        .entry(name)
                        .or_default()
                        .push((labels_of(&inst.client, &p.attributes), p.value));
                }
            }
            (st.counts, st.instances.len(), st.series, families)
        };
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: i64| {
            let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(v).encode(m)
        };
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64| {
            let m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(m)
        };
        gauge(
            &mut encoder,
            "client_telemetry_instances",
            "Clients known to client telemetry (KIP-714)",
            instances as i64,
        )?;
        gauge(
            &mut encoder,
            "client_telemetry_series",
            "Pushed client metric values shown",
            series as i64,
        )?;
        counter(
            &mut encoder,
            "client_telemetry_pushes",
            "PushTelemetry requests accepted",
            counts.pushes,
        )?;
        counter(
            &mut encoder,
            "client_telemetry_throttled",
            "Telemetry requests refused as too early (THROTTLING_QUOTA_EXCEEDED)",
            counts.throttled,
        )?;
        counter(
            &mut encoder,
            "client_telemetry_unknown_subscription",
            "Pushes of a subscription no longer in force",
            counts.unknown_subscription,
        )?;
        counter(
            &mut encoder,
            "client_telemetry_refused",
            "Pushes refused otherwise (after termination, codec, size, undecodable)",
            counts.refused,
        )?;
        counter(
            &mut encoder,
            "client_telemetry_dropped_series",
            "Pushed values not shown: over client_telemetry_max_series",
            counts.dropped_series,
        )?;
        for (name, rows) in &families {
            let mut m = encoder.encode_descriptor(
                name,
                "A client's pushed metric (KIP-714), its last value",
                None,
                MetricType::Gauge,
            )?;
            for (labels, value) in rows {
                let f = m.encode_family(labels)?;
                ConstGauge::new(*value).encode(f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
