//! The simulated clients' SASL login, as librdkafka's: SaslHandshake v1, then SaslAuthenticate
//! (PLAIN, or SCRAM's two rounds with the server's signature checked), on every new
//! connection of a run whose scenario asks for it. The nonces come from a generator seeded by
//! the run's seed, so a seed replays the same exchanges.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use broker::security::scram::{self, Mechanism};
use bytes::Bytes;
use io_backend::EnvRng;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError};

/// Who the clients of this run log in as.
#[derive(Clone)]
pub struct Login {
    pub mechanism: String,
    pub user: String,
    pub password: String,
    pub rng: EnvRng,
}

thread_local! {
    /// The run's login (a run is one thread: madsim's), set before its clients start.
    static LOGIN: RefCell<Option<Login>> = const { RefCell::new(None) };
    /// Salted passwords by (mechanism, password, salt, iterations): the key derivation is a
    /// few thousand HMACs, and the clients of a run log in thousands of times.
    static SALTED: RefCell<HashMap<SaltedKey, Vec<u8>>> = RefCell::new(HashMap::new());
    /// The run's TLS, when its brokers' listener is SASL_SSL.
    static TLS: RefCell<Option<Arc<rustls::ClientConfig>>> = const { RefCell::new(None) };
}

/// Every connection of this thread's run from now on is a TLS session trusting the CA in
/// `ca_pem` (`None`: none is), its randomness from `rng`.
pub fn use_tls(ca_pem: Option<&str>, rng: &EnvRng) -> Result<(), String> {
    let config = match ca_pem {
        None => None,
        Some(pem) => {
            use rustls_pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(cert.map_err(|e| format!("the sim's CA: {e}"))?)
                    .map_err(|e| format!("the sim's CA: {e}"))?;
            }
            let random = broker::security::random::SecureRandom::new(rng);
            let provider = broker::security::crypto::provider(&random);
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS versions: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(config))
        }
    };
    TLS.with(|t| *t.borrow_mut() = config);
    Ok(())
}

pub(super) fn tls() -> Option<Arc<rustls::ClientConfig>> {
    TLS.with(|t| t.borrow().clone())
}

type SaltedKey = (Mechanism, String, Vec<u8>, u32);

/// Salted passwords kept, at most (then the cache starts again).
const SALTED_MAX: usize = 256;

fn salted(mechanism: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let key = (mechanism, password.to_string(), salt.to_vec(), iterations);
    if let Some(s) = SALTED.with(|c| c.borrow().get(&key).cloned()) {
        return s;
    }
    let s = mechanism.salted_password(password.as_bytes(), salt, iterations);
    SALTED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= SALTED_MAX {
            c.clear();
        }
        c.insert(key, s.clone());
    });
    s
}

/// Every connection of this thread's run from now on logs in so (`None`: none does).
pub fn log_in_as(login: Option<Login>) {
    LOGIN.with(|l| *l.borrow_mut() = login);
}

pub(super) fn current() -> Option<Login> {
    LOGIN.with(|l| l.borrow().clone())
}

impl Client {
    /// Authenticate this connection; a refusal is `ClientError::Kafka` with its code.
    pub(super) async fn log_in(&mut self, login: &Login) -> Result<(), ClientError> {
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_string(login.mechanism.clone()));
        let ResponseKind::SaslHandshake(r) = self
            .call(
                ApiKey::SaslHandshake,
                1,
                RequestKind::SaslHandshake(handshake),
            )
            .await?
        else {
            return Err(ClientError::Protocol(
                "SaslHandshake: another response".into(),
            ));
        };
        if r.error_code != 0 {
            return Err(ClientError::Kafka(r.error_code));
        }
        let mechanism = match login.mechanism.as_str() {
            "PLAIN" => {
                let token = format!("\0{}\0{}", login.user, login.password);
                self.sasl_token(token.into_bytes()).await?;
                return Ok(());
            }
            "SCRAM-SHA-256" => Mechanism::Sha256,
            _ => Mechanism::Sha512,
        };
        let nonce = format!("{:016x}{:016x}", login.rng.next_u64(), login.rng.next_u64());
        let first = format!("n,,{}", scram::client_first_bare(&login.user, &nonce));
        let server_first = self.sasl_token(first.into_bytes()).await?;
        let server_first = String::from_utf8(server_first.to_vec())
            .map_err(|_| ClientError::Protocol("SCRAM: the server's first is not UTF-8".into()))?;
        let (last, expected) = scram::client_final_salted(
            mechanism,
            &login.user,
            |salt, iterations| salted(mechanism, &login.password, salt, iterations),
            &nonce,
            &server_first,
        )
        .map_err(|e| ClientError::Protocol(format!("SCRAM: {e}")))?;
        let server_final = self.sasl_token(last.into_bytes()).await?;
        if server_final != expected.as_bytes() {
            return Err(ClientError::Protocol(
                "SCRAM: the server's signature is not the expected one".into(),
            ));
        }
        Ok(())
    }

    /// One SaslAuthenticate round: the server's bytes.
    async fn sasl_token(&mut self, token: Vec<u8>) -> Result<Bytes, ClientError> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let ResponseKind::SaslAuthenticate(r) = self
            .call(
                ApiKey::SaslAuthenticate,
                2,
                RequestKind::SaslAuthenticate(req),
            )
            .await?
        else {
            return Err(ClientError::Protocol(
                "SaslAuthenticate: another response".into(),
            ));
        };
        if r.error_code != 0 {
            return Err(ClientError::Kafka(r.error_code));
        }
        Ok(r.auth_bytes)
    }
}
