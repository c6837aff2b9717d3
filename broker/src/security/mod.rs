//! Who a client is, and what is known of users: TLS ([`tls`]), SCRAM ([`scram`]), the
//! principal a connection authenticates as ([`principal`]) and the security metadata — the
//! users' SCRAM credentials — with the changes that make it ([`metadata`]). Plain data and pure
//! functions but for `tls`, which reads its PEM files through the environment's disk; where
//! the metadata is kept (a single node's data directory, a cluster's metadata log) is decided
//! by the layers above.

pub mod metadata;
pub mod principal;
pub mod scram;
pub mod tls;

pub use metadata::{SecurityChange, SecurityError, SecurityMetadata};
pub use principal::Principal;
