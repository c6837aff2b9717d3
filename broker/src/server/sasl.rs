//! SASL on a SASL_PLAINTEXT or SASL_SSL connection, Kafka's way: SaslHandshake (v0: the
//! tokens then follow as bare length-prefixed frames; v1: inside SaslAuthenticate requests),
//! then the mechanism's exchange — PLAIN (the password checked against the user's SCRAM
//! credential) or SCRAM-SHA-256/512 (RFC 5802) — and, with `connections_max_reauth_ms`, the
//! same again on the open connection before the session ends (KIP-368).
//!
//! Until it has authenticated a connection may send only ApiVersions and the SASL requests;
//! anything else closes it. A failed authentication is answered with
//! SASL_AUTHENTICATION_FAILED after `connection_failed_authentication_delay_ms`, then the
//! connection is closed; one that has not authenticated within
//! `sasl_authentication_timeout_ms` is closed. An unknown user is led through the same
//! exchange as a known one (a decoy credential) and refused at the same point.
//!
//! Invariant: no request other than ApiVersions and SASL is dispatched on a SASL listener for
//! a connection that is not authenticated, or whose session has ended.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::config::{SaslMechanism, SaslSettings};
use crate::protocol::{self, error, Request};
use crate::security::random::SecureRandom;
use crate::security::scram::{self, Credential, Mechanism, ServerExchange};
use crate::security::{Principal, SecurityMetadata};

/// What every SASL connection of a broker shares.
pub(super) struct SaslContext {
    pub settings: SaslSettings,
    random: SecureRandom,
    /// Makes the decoy credentials of unknown users (the same for a name within this run).
    decoy_secret: Vec<u8>,
}

impl SaslContext {
    pub fn new(settings: SaslSettings, random: SecureRandom) -> Arc<SaslContext> {
        let decoy_secret = random.bytes(32);
        Arc::new(SaslContext {
            settings,
            random,
            decoy_secret,
        })
    }

    /// A SCRAM server nonce: 24 printable characters (no `,`), unguessable ([`SecureRandom`]).
    fn nonce(&self) -> String {
        // 64 characters: six bits of each random byte pick one, uniformly.
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        self.random
            .bytes(24)
            .into_iter()
            .map(|b| ALPHABET[usize::from(b & 63)] as char)
            .collect()
    }
}

/// Where a connection's authentication stands.
enum State {
    /// Waiting for a SaslHandshake.
    Handshake,
    /// A mechanism chosen; waiting for the client's first token (`raw`: as a bare frame).
    First { mechanism: SaslMechanism, raw: bool },
    /// A SCRAM exchange between the server's first message and the client's proof.
    ScramFinal {
        exchange: Box<ServerExchange>,
        user: String,
        raw: bool,
    },
    /// Authenticated (and not re-authenticating).
    Done,
}

/// What the connection does with a SASL frame.
pub(super) enum Step {
    /// Write this response (a whole frame, length prefix included) and go on.
    Answer(Bytes),
    /// Write this response after the failure delay, then close.
    Refuse(Bytes),
    /// Close without an answer (a request the protocol does not allow here).
    Close(String),
}

/// One connection's authentication.
pub(super) struct Authenticator {
    ctx: Arc<SaslContext>,
    state: State,
    /// Who the connection authenticated as, and with which mechanism.
    principal: Option<(Principal, SaslMechanism)>,
    /// When the session ends (`connections_max_reauth_ms`), if it does.
    expires: Option<Instant>,
    /// An exchange succeeded since [`Authenticator::take_authenticated`] was last asked.
    fresh: bool,
}

/// Why an authentication failed: what the client is told, and what the log says.
struct Failure {
    code: i16,
    message: String,
}

impl Failure {
    fn auth(message: impl Into<String>) -> Failure {
        Failure {
            code: error::SASL_AUTHENTICATION_FAILED,
            message: message.into(),
        }
    }
}

impl Authenticator {
    pub fn new(ctx: Arc<SaslContext>) -> Authenticator {
        Authenticator {
            ctx,
            state: State::Handshake,
            principal: None,
            expires: None,
            fresh: false,
        }
    }

    /// Whether an exchange succeeded since the last time this was asked.
    pub fn take_authenticated(&mut self) -> bool {
        std::mem::take(&mut self.fresh)
    }

    /// The principal, once authenticated.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref().map(|(p, _)| p)
    }

    /// The next frame is a bare token (after a v0 SaslHandshake), not a request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(
            self.state,
            State::First { raw: true, .. } | State::ScramFinal { raw: true, .. }
        )
    }

    /// Whether a request of `api` may be served now: ApiVersions always; anything else once
    /// authenticated, within the session. The reason to close the connection otherwise.
    pub fn admits(&self, api: ApiKey, now: Instant) -> Result<(), String> {
        if api == ApiKey::ApiVersions {
            return Ok(());
        }
        // A re-authentication begun does not extend the session: only its success does.
        match &self.principal {
            None => Err(format!(
                "{api:?} request before SASL authentication (only ApiVersions and the SASL requests are allowed)"
            )),
            Some(_) if self.expires.is_some_and(|e| now >= e) => Err(format!(
                "{api:?} request after the session ended (connections_max_reauth_ms) without re-authentication"
            )),
            Some(_) => Ok(()),
        }
    }

    /// A SaslHandshake or SaslAuthenticate request.
    pub fn request(&mut self, req: &Request, security: &SecurityMetadata, now: Instant) -> Step {
        let (api, version, cid) = (req.api, req.version, req.correlation_id);
        match &req.body {
            RequestKind::SaslHandshake(h) => {
                let offered: Vec<StrBytes> = self
                    .ctx
                    .settings
                    .mechanisms
                    .iter()
                    .map(|m| StrBytes::from_static_str(m.name()))
                    .collect();
                let mut resp = SaslHandshakeResponse::default().with_mechanisms(offered);
                let asked = SaslMechanism::from_name(h.mechanism.as_str())
                    .filter(|m| self.ctx.settings.mechanisms.contains(m));
                let reauth = self.ctx.settings.max_reauth.is_some();
                if matches!(self.state, State::Done) && !reauth {
                    // Authenticated, and no session to renew: as Kafka, an answer that says
                    // so, the connection kept.
                    let resp =
                        SaslHandshakeResponse::default().with_error_code(error::ILLEGAL_SASL_STATE);
                    return Step::Answer(encode(
                        api,
                        version,
                        cid,
                        ResponseKind::SaslHandshake(resp),
                    ));
                }
                let in_order = matches!(self.state, State::Handshake | State::Done);
                resp.error_code = match asked {
                    _ if !in_order => error::ILLEGAL_SASL_STATE,
                    None => error::UNSUPPORTED_SASL_MECHANISM,
                    // Re-authentication needs the v1 requests (KIP-368).
                    Some(_) if self.principal.is_some() && version == 0 => {
                        error::ILLEGAL_SASL_STATE
                    }
                    Some(mechanism) => {
                        self.state = State::First {
                            mechanism,
                            raw: version == 0,
                        };
                        error::NONE
                    }
                };
                let refused = resp.error_code != error::NONE;
                if resp.error_code == error::ILLEGAL_SASL_STATE {
                    // Only a mechanism the client may choose is worth listing.
                    resp.mechanisms.clear();
                }
                let frame = encode(api, version, cid, ResponseKind::SaslHandshake(resp));
                if refused {
                    Step::Refuse(frame)
                } else {
                    Step::Answer(frame)
                }
            }
            RequestKind::SaslAuthenticate(a) => {
                let mut resp = SaslAuthenticateResponse::default();
                match self.state {
                    // No handshake yet: nothing to authenticate with (Kafka closes).
                    State::Handshake if self.principal.is_none() => {
                        return Step::Close("SaslAuthenticate before SaslHandshake".into());
                    }
                    // Authenticated already: said so, the connection kept.
                    State::Done | State::Handshake => {
                        resp.error_code = error::ILLEGAL_SASL_STATE;
                        resp.error_message = Some(StrBytes::from_static_str(
                            "SaslAuthenticate after the connection authenticated, without a SaslHandshake",
                        ));
                        return Step::Answer(encode(
                            api,
                            version,
                            cid,
                            ResponseKind::SaslAuthenticate(resp),
                        ));
                    }
                    _ => {}
                }
                match self.token(&a.auth_bytes, security, now) {
                    Ok(bytes) => {
                        resp.auth_bytes = Bytes::from(bytes);
                        if matches!(self.state, State::Done) {
                            resp.session_lifetime_ms = self
                                .ctx
                                .settings
                                .max_reauth
                                .map_or(0, |d| d.as_millis() as i64);
                        }
                        Step::Answer(encode(
                            api,
                            version,
                            cid,
                            ResponseKind::SaslAuthenticate(resp),
                        ))
                    }
                    Err(f) => {
                        resp.error_code = f.code;
                        resp.error_message = Some(StrBytes::from_string(f.message));
                        Step::Refuse(encode(
                            api,
                            version,
                            cid,
                            ResponseKind::SaslAuthenticate(resp),
                        ))
                    }
                }
            }
            _ => Step::Close(format!("{api:?} is not a SASL request")),
        }
    }

    /// A bare token after a v0 SaslHandshake. A failure has no message to carry it: the
    /// connection is closed, as Kafka does.
    pub fn raw_token(&mut self, frame: &[u8], security: &SecurityMetadata, now: Instant) -> Step {
        match self.token(frame, security, now) {
            Ok(bytes) => {
                let mut out = BytesMut::with_capacity(4 + bytes.len());
                out.put_i32(bytes.len() as i32);
                out.put_slice(&bytes);
                Step::Answer(out.freeze())
            }
            Err(f) => Step::Close(f.message),
        }
    }

    /// The next token of the exchange; the server's answer.
    fn token(
        &mut self,
        token: &[u8],
        security: &SecurityMetadata,
        now: Instant,
    ) -> Result<Vec<u8>, Failure> {
        match std::mem::replace(&mut self.state, State::Handshake) {
            State::First {
                mechanism: SaslMechanism::Plain,
                ..
            } => {
                let user = plain(token, security)?;
                self.authenticated(user, SaslMechanism::Plain, now)?;
                Ok(Vec::new())
            }
            State::First { mechanism, raw } => {
                let m = scram_of(mechanism);
                let first = scram::client_first(token).map_err(|e| Failure::auth(e.to_string()))?;
                let credential = security
                    .credential(&first.username, m)
                    .cloned()
                    .unwrap_or_else(|| {
                        Credential::decoy(m, &first.username, &self.ctx.decoy_secret)
                    });
                let (exchange, server_first) =
                    ServerExchange::start(&first, credential, &self.ctx.nonce());
                self.state = State::ScramFinal {
                    exchange: Box::new(exchange),
                    user: first.username,
                    raw,
                };
                Ok(server_first.into_bytes())
            }
            State::ScramFinal { exchange, user, .. } => {
                let mechanism = match exchange.mechanism() {
                    Mechanism::Sha256 => SaslMechanism::ScramSha256,
                    Mechanism::Sha512 => SaslMechanism::ScramSha512,
                };
                let server_final = exchange.finish(token).map_err(|e| match e {
                    scram::ScramError::Proof => Failure::auth(format!(
                        "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                        mechanism.name()
                    )),
                    other => Failure::auth(other.to_string()),
                })?;
                self.authenticated(user, mechanism, now)?;
                Ok(server_final.into_bytes())
            }
            State::Handshake | State::Done => Err(Failure {
                code: error::ILLEGAL_SASL_STATE,
                message: "SaslAuthenticate before SaslHandshake".into(),
            }),
        }
    }

    /// The exchange succeeded for `user`: a first authentication, or a re-authentication that
    /// must keep the principal and the mechanism.
    fn authenticated(
        &mut self,
        user: String,
        mechanism: SaslMechanism,
        now: Instant,
    ) -> Result<(), Failure> {
        let principal = Principal::user(user);
        if let Some((before, m)) = &self.principal {
            if *before != principal || *m != mechanism {
                return Err(Failure::auth(format!(
                    "re-authentication as {principal} with {} on a connection of {before} with {}",
                    mechanism.name(),
                    m.name()
                )));
            }
        }
        self.principal = Some((principal, mechanism));
        self.expires = self.ctx.settings.max_reauth.map(|d| now + d);
        self.state = State::Done;
        self.fresh = true;
        Ok(())
    }

    /// How long an unauthenticated connection may take.
    pub fn timeout(&self) -> Duration {
        self.ctx.settings.authentication_timeout
    }

    pub fn failed_delay(&self) -> Duration {
        self.ctx.settings.failed_delay
    }
}

fn scram_of(m: SaslMechanism) -> Mechanism {
    match m {
        SaslMechanism::ScramSha512 => Mechanism::Sha512,
        _ => Mechanism::Sha256,
    }
}

/// A PLAIN message, `authzid NUL authcid NUL password` (RFC 4616), checked against the
/// user's SCRAM credential (SHA-512's if it has one). The user name.
fn plain(token: &[u8], security: &SecurityMetadata) -> Result<String, Failure> {
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::auth("malformed PLAIN message"));
    };
    let user = std::str::from_utf8(authcid)
        .map_err(|_| Failure::auth("PLAIN: the user name is not UTF-8"))?;
    if user.is_empty() || password.is_empty() {
        return Err(Failure::auth("PLAIN: an empty user name or password"));
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(Failure::auth(
            "PLAIN: the authorization id differs from the user name",
        ));
    }
    let credential = security
        .credential(user, Mechanism::Sha512)
        .or_else(|| security.credential(user, Mechanism::Sha256));
    match credential {
        Some(c) if c.verify_password(password) => Ok(user.to_string()),
        _ => Err(Failure::auth(
            "Authentication failed: Invalid username or password",
        )),
    }
}

fn encode(api: ApiKey, version: i16, cid: i32, body: ResponseKind) -> Bytes {
    protocol::encode_response(api, version, cid, &body)
        .expect("SASL responses are small and always encode")
}

#[cfg(test)]
mod tests;
