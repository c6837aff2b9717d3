//! Who a client is and what it may do: TLS ([`tls`]), SCRAM ([`scram`]), the principal a
//! connection authenticates as ([`principal`]), Kafka's ACLs and the authorizer's decision
//! ([`acl`]), and the security metadata — the users' SCRAM credentials and the ACLs — with the
//! changes that make it ([`metadata`]); the randomness all of it draws ([`random`]: the
//! system's in production, the seed's in simulation). Plain data and pure
//! functions but for `tls`, which reads its PEM files through the environment's disk; where
//! the metadata is kept (a single node's data directory, a cluster's metadata log) is decided
//! by the layers above.

pub mod acl;
pub mod crypto;
pub mod metadata;
pub mod principal;
pub mod random;
/// SCRAM, the workspace's `scram` crate (shared with the benchmarks' client).
pub use ::scram;
pub mod tls;

pub use metadata::{Applied, Outcomes, SecurityChange, SecurityError, SecurityMetadata};
pub use principal::Principal;
