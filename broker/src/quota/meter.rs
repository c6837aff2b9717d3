//! What each client used, measured against its quota: a [`Rate`] per quota and per *metered
//! entity* — the clients one quota covers together (a user's quota is shared by all of that
//! user's client ids; a default is measured for each user or client id alone) — and the
//! throttle time of a client over its quota.
//!
//! Which quota covers a client is Kafka's order of precedence, per quota key: the user and
//! client id, the user and the default client id, the user, the default user and the client
//! id, the default user and the default client id, the default user, the client id, the
//! default client id ([`resolve`]).
//!
//! Bounds: at most [`METERED_MAX`] rates; a rate with nothing recorded for longer than all
//! its windows span measures zero and is forgotten first (losing nothing); when every rate is
//! in use, the least recently used goes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::entity::{ClientQuotas, Entity, Name, QuotaKey};
use super::rate::{Rate, Windows};

/// Rates kept, at most.
pub const METERED_MAX: usize = 50_000;

/// Who a request comes from, as quotas see it: the principal's name and the client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client<'a> {
    pub user: &'a str,
    pub client_id: &'a str,
}

/// The clients one rate measures together: a user, a client id, or both (`""`: not part of
/// it), as Kafka tags its quota metrics; or, for `connection_creation_rate`, an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Metered {
    pub key: QuotaKey,
    pub user: String,
    pub client_id: String,
    pub ip: String,
}

/// The `connection_creation_rate` that covers address `ip`: its own, or the default of IPs.
pub fn resolve_ip(quotas: &ClientQuotas, ip: IpAddr) -> Option<(f64, Metered)> {
    let key = QuotaKey::ConnectionCreationRate;
    let text = ip.to_string();
    [Name::Named(text.clone()), Name::Default]
        .into_iter()
        .find_map(|name| {
            let e = Entity {
                user: None,
                client_id: None,
                ip: Some(name),
            };
            quotas.get(&e, key)
        })
        .map(|bound| {
            (
                bound,
                Metered {
                    key,
                    user: String::new(),
                    client_id: String::new(),
                    ip: text,
                },
            )
        })
}

/// The quota that covers `client` for `key`, and the clients measured together with it.
pub fn resolve(quotas: &ClientQuotas, key: QuotaKey, client: Client<'_>) -> Option<(f64, Metered)> {
    let named = |s: &str| Some(Name::Named(s.to_string()));
    let (u, c) = (client.user, client.client_id);
    // (user part, client-id part, metered user, metered client id), most specific first.
    let levels: [(Option<Name>, Option<Name>, &str, &str); 8] = [
        (named(u), named(c), u, c),
        (named(u), Some(Name::Default), u, c),
        (named(u), None, u, ""),
        (Some(Name::Default), named(c), u, c),
        (Some(Name::Default), Some(Name::Default), u, c),
        (Some(Name::Default), None, u, ""),
        (None, named(c), "", c),
        (None, Some(Name::Default), "", c),
    ];
    levels.into_iter().find_map(|(user, client_id, mu, mc)| {
        let e = Entity {
            user,
            client_id,
            ip: None,
        };
        quotas.get(&e, key).map(|bound| {
            (
                bound,
                Metered {
                    key,
                    user: mu.to_string(),
                    client_id: mc.to_string(),
                    ip: String::new(),
                },
            )
        })
    })
}

/// One metered entity's rate and what it was throttled.
struct Meter {
    rate: Rate,
    /// For `controller_mutation_rate`: Kafka's token bucket (KIP-599), its tokens when last
    /// refilled.
    bucket: Option<(f64, Instant)>,
    throttle_ms: u64,
    throttled: u64,
}

/// A token bucket's tokens at `now`: refilled at `bound` per second since `last`, up to a
/// burst of all windows' worth.
fn refill(bucket: &mut (f64, Instant), w: &Windows, bound: f64, now: Instant) -> f64 {
    let burst = bound * w.window.as_secs_f64() * w.samples as f64;
    let (tokens, last) = bucket;
    let dt = now.saturating_duration_since(*last).as_secs_f64();
    *tokens = (*tokens + bound * dt).min(burst);
    *last = now.max(*last);
    *tokens
}

/// Why a mutation was refused: its client's bucket is empty (the throttle time it is told).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted(pub Duration);

/// What a broker measured, per metered entity.
pub struct Meters {
    windows: Windows,
    state: crate::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The quotas the cache below was resolved from.
    resolved_from: Option<Arc<ClientQuotas>>,
    cache: HashMap<(QuotaKey, String, String), Option<(f64, Metered)>>,
    meters: HashMap<Metered, Meter>,
}

/// Resolutions cached, at most (the cache is emptied when full).
const CACHE_MAX: usize = 10_000;

/// One metered entity's figures, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub metered: Metered,
    pub bound: f64,
    pub rate: f64,
    pub throttle_ms: u64,
    pub throttled: u64,
}

impl Meters {
    pub fn new(windows: Windows) -> Meters {
        Meters {
            windows,
            state: crate::sync::Mutex::new("quota.meters", State::default()),
        }
    }

    pub fn windows(&self) -> Windows {
        self.windows
    }

    /// Record `amount` of `key` used by `client` at `now`: how long the client is to wait
    /// before its next request (zero unless its quota is exceeded). Nothing is measured for a
    /// client no quota covers.
    pub fn record(
        &self,
        quotas: &Arc<ClientQuotas>,
        key: QuotaKey,
        client: Client<'_>,
        amount: f64,
        now: Instant,
    ) -> Duration {
        if quotas.is_empty() {
            return Duration::ZERO;
        }
        let w = self.windows;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some((bound, metered)) = st.resolve(quotas, key, client) else {
            return Duration::ZERO;
        };
        let meter = st.meter(&w, metered, now);
        meter.rate.record(&w, amount, now);
        let mut throttle = meter.rate.throttle(&w, bound, now);
        if matches!(
            key,
            QuotaKey::RequestPercentage | QuotaKey::ConnectionCreationRate
        ) {
            // As Kafka: a throttle for request time or connections is at most one window.
            throttle = throttle.min(w.window);
        }
        if !throttle.is_zero() {
            meter.throttle_ms += throttle.as_millis() as u64;
            meter.throttled += 1;
        }
        throttle
    }

    /// A connection from `ip` accepted at `now`, under its `connection_creation_rate`: `None`
    /// to serve it, or how long to hold it before closing it unread (Kafka's way: the client
    /// is not told, it just finds the connection closed a moment later, at most a window).
    /// A refused connection does not count.
    pub fn admit_connection(
        &self,
        quotas: &Arc<ClientQuotas>,
        ip: IpAddr,
        now: Instant,
    ) -> Option<Duration> {
        if quotas.is_empty() {
            return None;
        }
        let w = self.windows;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (bound, metered) = resolve_ip(quotas, ip)?;
        let meter = st.meter(&w, metered, now);
        meter.rate.record(&w, 1.0, now);
        let throttle = meter.rate.throttle(&w, bound, now).min(w.window);
        if throttle.is_zero() {
            return None;
        }
        meter.rate.unrecord(1.0);
        meter.throttle_ms += throttle.as_millis() as u64;
        meter.throttled += 1;
        Some(throttle)
    }

    /// Partitions created or deleted (`permits`) by `client`, under its
    /// `controller_mutation_rate` (Kafka's token bucket, KIP-599): the throttle time once they
    /// are taken. `strict` (the request versions that can say THROTTLING_QUOTA_EXCEEDED): a
    /// client whose bucket is already empty is refused and nothing taken; otherwise the
    /// mutation is taken even past the bottom.
    pub fn take_mutations(
        &self,
        quotas: &Arc<ClientQuotas>,
        client: Client<'_>,
        permits: f64,
        strict: bool,
        now: Instant,
    ) -> Result<Duration, Exhausted> {
        if quotas.is_empty() {
            return Ok(Duration::ZERO);
        }
        let w = self.windows;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some((bound, metered)) = st.resolve(quotas, QuotaKey::ControllerMutationRate, client)
        else {
            return Ok(Duration::ZERO);
        };
        let meter = st.meter(&w, metered, now);
        let burst = bound * w.window.as_secs_f64() * w.samples as f64;
        let bucket = meter.bucket.get_or_insert((burst, now));
        let tokens = refill(bucket, &w, bound, now);
        let wait = |tokens: f64| {
            Duration::from_millis(
                (-tokens / bound * 1000.0)
                    .round()
                    .max(0.0)
                    .min(i32::MAX as f64) as u64,
            )
        };
        if strict && tokens < 0.0 {
            meter.throttled += 1;
            return Err(Exhausted(wait(tokens)));
        }
        bucket.0 = (tokens - permits).min(burst);
        meter.rate.record(&w, permits, now);
        let throttle = wait(bucket.0);
        if !throttle.is_zero() {
            meter.throttle_ms += throttle.as_millis() as u64;
            meter.throttled += 1;
        }
        Ok(throttle)
    }

    /// Give back mutations taken for a change that was not made after all.
    pub fn give_back_mutations(
        &self,
        quotas: &Arc<ClientQuotas>,
        client: Client<'_>,
        permits: f64,
        now: Instant,
    ) {
        if quotas.is_empty() {
            return;
        }
        let w = self.windows;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some((bound, metered)) = st.resolve(quotas, QuotaKey::ControllerMutationRate, client)
        else {
            return;
        };
        if let Some(m) = st.meters.get_mut(&metered) {
            if let Some(bucket) = m.bucket.as_mut() {
                let burst = bound * w.window.as_secs_f64() * w.samples as f64;
                let tokens = refill(bucket, &w, bound, now);
                bucket.0 = (tokens + permits).min(burst);
            }
            m.rate.unrecord(permits);
        }
    }

    /// The most `client` may use of `key` in one window (`None`: no quota).
    pub fn window_limit(
        &self,
        quotas: &Arc<ClientQuotas>,
        key: QuotaKey,
        client: Client<'_>,
    ) -> Option<f64> {
        if quotas.is_empty() {
            return None;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (bound, _) = st.resolve(quotas, key, client)?;
        Some(bound * self.windows.window.as_secs_f64())
    }

    /// Every metered entity's figures at `now`, at most `limit` of them (the most throttled
    /// first), and how many were left out.
    pub fn figures(
        &self,
        quotas: &Arc<ClientQuotas>,
        limit: usize,
        now: Instant,
    ) -> (Vec<Figures>, usize) {
        let w = self.windows;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Figures> = Vec::new();
        let keys: Vec<Metered> = st.meters.keys().cloned().collect();
        for metered in keys {
            let client = Client {
                user: &metered.user,
                client_id: &metered.client_id,
            };
            let bound = match metered.ip.parse::<IpAddr>() {
                Ok(ip) => resolve_ip(quotas, ip),
                Err(_) => resolve(quotas, metered.key, client),
            }
            .map_or(0.0, |(b, _)| b);
            let m = st.meters.get_mut(&metered).expect("listed");
            out.push(Figures {
                rate: m.rate.measure(&w, now),
                throttle_ms: m.throttle_ms,
                throttled: m.throttled,
                bound,
                metered,
            });
        }
        out.sort_by(|a, b| {
            b.throttle_ms
                .cmp(&a.throttle_ms)
                .then(a.metered.cmp(&b.metered))
        });
        let left = out.len().saturating_sub(limit);
        out.truncate(limit);
        (out, left)
    }

    /// Rates kept now.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .meters
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    fn resolve(
        &mut self,
        quotas: &Arc<ClientQuotas>,
        key: QuotaKey,
        client: Client<'_>,
    ) -> Option<(f64, Metered)> {
        if !self
            .resolved_from
            .as_ref()
            .is_some_and(|q| Arc::ptr_eq(q, quotas))
        {
            self.resolved_from = Some(quotas.clone());
            self.cache.clear();
        }
        let k = (key, client.user.to_string(), client.client_id.to_string());
        if let Some(r) = self.cache.get(&k) {
            return r.clone();
        }
        let r = resolve(quotas, key, client);
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(k, r.clone());
        r
    }

    fn meter(&mut self, w: &Windows, metered: Metered, now: Instant) -> &mut Meter {
        if !self.meters.contains_key(&metered) && self.meters.len() >= METERED_MAX {
            self.meters.retain(|_, m| !m.rate.idle(w, now));
            if self.meters.len() >= METERED_MAX {
                let oldest = self
                    .meters
                    .iter()
                    .min_by_key(|(_, m)| m.rate.last_record)
                    .map(|(k, _)| k.clone())
                    .expect("full");
                self.meters.remove(&oldest);
            }
        }
        self.meters.entry(metered).or_insert_with(|| Meter {
            rate: Rate::new(now),
            bucket: None,
            throttle_ms: 0,
            throttled: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::entity::{Alteration, Value};
    use super::*;

    fn set(
        q: &mut ClientQuotas,
        user: Option<Name>,
        client_id: Option<Name>,
        key: QuotaKey,
        v: f64,
    ) {
        q.apply(&Alteration {
            entity: Entity {
                user,
                client_id,
                ip: None,
            },
            ops: vec![(key, Some(Value(v)))],
        })
        .unwrap();
    }

    fn n(s: &str) -> Option<Name> {
        Some(Name::Named(s.into()))
    }

    #[test]
    fn quotas_are_resolved_in_kafkas_order_of_precedence() {
        let k = QuotaKey::ProducerByteRate;
        let mut q = ClientQuotas::default();
        let who = Client {
            user: "alice",
            client_id: "app",
        };
        let at = |q: &ClientQuotas| resolve(q, k, who).map(|(b, m)| (b, m.user, m.client_id));
        assert_eq!(at(&q), None);
        let s = |x: &str| x.to_string();
        // Least specific first: each added level takes over.
        set(&mut q, None, Some(Name::Default), k, 8.0);
        assert_eq!(at(&q), Some((8.0, s(""), s("app"))));
        set(&mut q, None, n("app"), k, 7.0);
        assert_eq!(at(&q), Some((7.0, s(""), s("app"))));
        set(&mut q, Some(Name::Default), None, k, 6.0);
        assert_eq!(at(&q), Some((6.0, s("alice"), s(""))));
        set(&mut q, Some(Name::Default), Some(Name::Default), k, 5.0);
        assert_eq!(at(&q), Some((5.0, s("alice"), s("app"))));
        set(&mut q, Some(Name::Default), n("app"), k, 4.0);
        assert_eq!(at(&q), Some((4.0, s("alice"), s("app"))));
        set(&mut q, n("alice"), None, k, 3.0);
        assert_eq!(at(&q), Some((3.0, s("alice"), s(""))));
        set(&mut q, n("alice"), Some(Name::Default), k, 2.0);
        assert_eq!(at(&q), Some((2.0, s("alice"), s("app"))));
        set(&mut q, n("alice"), n("app"), k, 1.0);
        assert_eq!(at(&q), Some((1.0, s("alice"), s("app"))));
        // Each key alone: a consumer quota does not cover production.
        assert_eq!(resolve(&q, QuotaKey::ConsumerByteRate, who), None);
        // Another user falls to the defaults.
        let bob = Client {
            user: "bob",
            client_id: "other",
        };
        assert_eq!(
            resolve(&q, k, bob).map(|(b, m)| (b, m.user, m.client_id)),
            Some((5.0, s("bob"), s("other")))
        );
    }

    #[test]
    fn a_user_quota_is_shared_by_its_client_ids_and_a_default_is_not() {
        let k = QuotaKey::ProducerByteRate;
        let mut q = ClientQuotas::default();
        set(&mut q, n("alice"), None, k, 10_000.0);
        set(&mut q, Some(Name::Default), None, k, 10_000.0);
        let q = Arc::new(q);
        let m = Meters::new(Windows::DEFAULT);
        let t0 = Instant::now();
        let who = |user, client_id| Client { user, client_id };
        // 6 000 bytes from each of two client ids of alice: 12 000 in a second, over 10 000/s.
        assert_eq!(
            m.record(&q, k, who("alice", "a"), 6000.0, t0),
            Duration::ZERO
        );
        assert!(!m.record(&q, k, who("alice", "b"), 6000.0, t0).is_zero());
        // bob and carol, under the default, are measured apart.
        assert_eq!(m.record(&q, k, who("bob", "a"), 6000.0, t0), Duration::ZERO);
        assert_eq!(
            m.record(&q, k, who("carol", "a"), 6000.0, t0),
            Duration::ZERO
        );
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn mutations_drain_a_bucket_of_all_windows_worth_and_refill_at_the_rate() {
        let mut q = ClientQuotas::default();
        set(
            &mut q,
            None,
            n("admin"),
            QuotaKey::ControllerMutationRate,
            2.0,
        );
        let q = Arc::new(q);
        let m = Meters::new(Windows::DEFAULT);
        let who = Client {
            user: "",
            client_id: "admin",
        };
        let t0 = Instant::now();
        // A burst of 11 windows × 2 per second = 22 partitions, then 30 more past the bottom.
        assert_eq!(
            m.take_mutations(&q, who, 22.0, true, t0),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            m.take_mutations(&q, who, 30.0, true, t0),
            Ok(Duration::from_secs(15))
        );
        // Strict: refused while below the bottom, nothing taken; permissive: taken.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            m.take_mutations(&q, who, 1.0, true, later),
            Err(Exhausted(Duration::from_secs(10)))
        );
        assert_eq!(
            m.take_mutations(&q, who, 2.0, false, later),
            Ok(Duration::from_secs(11))
        );
        m.give_back_mutations(&q, who, 2.0, later);
        // Refilled at 2 per second: 10 s after the bottom, at zero again.
        let refilled = t0 + Duration::from_secs(15);
        assert_eq!(
            m.take_mutations(&q, who, 1.0, true, refilled),
            Ok(Duration::from_millis(500))
        );
    }

    #[test]
    fn without_quotas_nothing_is_measured() {
        let m = Meters::new(Windows::DEFAULT);
        let q = Arc::new(ClientQuotas::default());
        let who = Client {
            user: "u",
            client_id: "c",
        };
        assert_eq!(
            m.record(&q, QuotaKey::ProducerByteRate, who, 1e12, Instant::now()),
            Duration::ZERO
        );
        assert!(m.is_empty());
    }

    #[test]
    fn rates_are_bounded_and_idle_ones_go_first() {
        let k = QuotaKey::RequestPercentage;
        let mut q = ClientQuotas::default();
        set(&mut q, None, Some(Name::Default), k, 50.0);
        let q = Arc::new(q);
        let m = Meters::new(Windows::DEFAULT);
        let t0 = Instant::now();
        for i in 0..METERED_MAX {
            let id = format!("c{i}");
            m.record(
                &q,
                k,
                Client {
                    user: "",
                    client_id: &id,
                },
                1.0,
                t0,
            );
        }
        assert_eq!(m.len(), METERED_MAX);
        // All in use: the least recently used goes.
        let later = t0 + Duration::from_secs(1);
        m.record(
            &q,
            k,
            Client {
                user: "",
                client_id: "new",
            },
            1.0,
            later,
        );
        assert_eq!(m.len(), METERED_MAX);
        // All idle but one: they go at once.
        let much_later = t0 + Duration::from_secs(12);
        m.record(
            &q,
            k,
            Client {
                user: "",
                client_id: "newer",
            },
            1.0,
            much_later,
        );
        assert!(m.len() <= 3, "{}", m.len());
    }
}
