//! Client quotas (Kafka's KIP-13, KIP-124, KIP-219, KIP-257, KIP-599): how much of a broker one
//! tenant may take, configured per user, client id, both, their defaults ([`entity`]), and
//! enforced by measuring what each client uses ([`meter`], over [`rate`]'s windows) and
//! throttling a client over its quota — its response says for how long (`throttle_time_ms`),
//! and its connection reads nothing more until then.
//!
//! The quotas themselves are cluster metadata (a record of the controller's log) or, on a
//! single node, a file of its data directory; this module holds no state of its own beyond the
//! rates it measured.
//!
//! Invariant: a client no quota covers is never measured nor throttled, and a broker with no
//! quotas set does nothing per request but look at an empty map.

pub mod cost;
pub mod entity;
pub mod filter;
pub mod meter;
pub mod metrics;
pub mod rate;

pub use entity::{Alteration, ClientQuotas, Entity, Name, QuotaKey, Refused, Value};
pub use meter::{Client, Meters};
pub use rate::Windows;
