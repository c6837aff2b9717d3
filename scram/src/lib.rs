//! SCRAM (RFC 5802; SCRAM-SHA-256 of RFC 7677 and SCRAM-SHA-512) as Kafka uses it for SASL
//! (KIP-84): the credential a broker stores — salt, iterations, stored key and server key, never
//! the password — and the server's and a client's side of an exchange as pure functions, so the
//! broker's connections, the simulator's clients, the benchmarks' client and the tests share
//! them. Randomness (salts, nonces) is passed in by the caller: the broker's is the operating
//! system's (the simulator's, the seed's).
//!
//! Invariant: a password is used only to derive a credential and never kept; a proof is
//! compared in constant time; every malformed message is an error naming what is wrong, never a
//! panic.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Kafka's bounds on a credential's iterations (`ScramMechanism.minIterations` is 4096).
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;

/// A SCRAM mechanism, by its SASL name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        [Mechanism::Sha256, Mechanism::Sha512]
            .into_iter()
            .find(|m| m.name() == name)
    }

    /// Kafka's number for it (`ScramMechanism` in KIP-554's requests: 1 and 2).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<Mechanism> {
        [Mechanism::Sha256, Mechanism::Sha512]
            .into_iter()
            .find(|m| m.kafka_type() == t)
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => mac::<Hmac<Sha256>>(key, data),
            Mechanism::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi() of RFC 5802: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut block = salt.to_vec();
        block.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &block);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u);
            out.iter_mut().zip(&u).for_each(|(o, b)| *o ^= b);
        }
        out
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// What a broker keeps of a user's password for one mechanism (the byte strings in base64
/// when written down).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub mechanism: Mechanism,
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

mod b64 {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

impl Credential {
    /// The credential of `password` with this salt (at least 16 bytes from the caller's
    /// generator) and iterations (Kafka's bounds).
    pub fn derive(
        mechanism: Mechanism,
        password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let salted = mechanism.salted_password(password, &salt, iterations);
        Credential::from_salted_password(mechanism, salt, &salted, iterations)
    }

    /// The credential of a salted password (`Hi(password, salt, iterations)`), as an
    /// AlterUserScramCredentials request carries it (KIP-554: the client salts, the password
    /// never reaches the broker).
    pub fn from_salted_password(
        mechanism: Mechanism,
        salt: Vec<u8>,
        salted_password: &[u8],
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        if salt.is_empty() || salted_password.is_empty() {
            return Err(ScramError::Malformed("an empty salt or salted password"));
        }
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        Ok(Credential {
            mechanism,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            salt,
            iterations,
        })
    }

    /// Whether `password` is this credential's (SASL/PLAIN checked against a SCRAM
    /// credential: the password salted again, its stored key compared in constant time).
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let m = self.mechanism;
        let salted = m.salted_password(password, &self.salt, self.iterations);
        let stored = m.hash(&m.hmac(&salted, b"Client Key"));
        constant_time_eq(&stored, &self.stored_key)
    }

    /// A credential for a user that does not exist, the same for the same name on this
    /// broker (salt and keys from `secret`, a per-process random value): an exchange for it
    /// proceeds like any other and fails at the proof, so answers tell nobody which users
    /// exist.
    pub fn decoy(mechanism: Mechanism, username: &str, secret: &[u8]) -> Credential {
        let salt = mechanism.hmac(secret, format!("salt:{username}").as_bytes());
        let key = mechanism.hmac(secret, format!("key:{username}").as_bytes());
        Credential {
            mechanism,
            salt: salt[..16].to_vec(),
            iterations: ITERATIONS_MIN,
            stored_key: mechanism.hash(&key),
            server_key: key,
        }
    }
}

/// Why an exchange failed. Every variant ends the authentication: the connection answers
/// SASL_AUTHENTICATION_FAILED (after Kafka's delay) and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("SCRAM extensions are not supported")]
    Extensions,
    #[error("the authorization id differs from the user name")]
    Authzid,
    #[error("the final message does not continue this exchange")]
    Nonce,
    #[error("wrong proof (unknown user or wrong password)")]
    Proof,
    #[error("{0} iterations: SCRAM credentials take from 4096 to 16384")]
    Iterations(u32),
}

/// The client's first message, as the server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub username: String,
    pub nonce: String,
    /// `client-first-message-bare`, part of the signed auth message.
    bare: String,
}

/// Read a client-first-message: `gs2-header` (`n,,` or `y,,`, an authzid allowed only if it
/// is the user name) then `n=user,r=nonce`.
pub fn client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let (cb, rest) = text
        .split_once(',')
        .ok_or(ScramError::Malformed("no gs2 header"))?;
    match cb {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad channel binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("no gs2 header"))?;
    let mut attrs = bare.split(',');
    let username = match attrs.next() {
        Some(a) if a.starts_with("n=") => sasl_name(&a[2..])?,
        _ => return Err(ScramError::Malformed("no user name")),
    };
    let nonce = match attrs.next() {
        Some(a) if a.starts_with("r=") && a.len() > 2 => a[2..].to_string(),
        _ => return Err(ScramError::Malformed("no nonce")),
    };
    if attrs.next().is_some() {
        return Err(ScramError::Extensions);
    }
    if !authzid.is_empty() {
        let id = authzid
            .strip_prefix("a=")
            .ok_or(ScramError::Malformed("bad authorization id"))?;
        if sasl_name(id)? != username {
            return Err(ScramError::Authzid);
        }
    }
    if !nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(ScramError::Malformed("bad nonce"));
    }
    Ok(ClientFirst {
        username,
        nonce,
        bare: bare.to_string(),
    })
}

/// A user name as SCRAM writes it: `=2C` for `,` and `=3D` for `=`, no other `=`.
fn sasl_name(text: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in a user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

/// The server's side of one exchange, between its first answer and the client's proof.
#[derive(Debug, Clone)]
pub struct ServerExchange {
    credential: Credential,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ServerExchange {
    /// Answer the client's first message with the salt, the iterations and the nonce (the
    /// client's and `server_nonce`, printable, from the caller's generator). An unknown user
    /// is answered like a known one, with a credential made up by the caller, so the exchange
    /// fails only at the proof and tells nobody which users exist.
    pub fn start(
        first: &ClientFirst,
        credential: Credential,
        server_nonce: &str,
    ) -> (ServerExchange, String) {
        let nonce = format!("{}{}", first.nonce, server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let exchange = ServerExchange {
            credential,
            client_first_bare: first.bare.clone(),
            server_first: server_first.clone(),
            nonce,
        };
        (exchange, server_first)
    }

    pub fn mechanism(&self) -> Mechanism {
        self.credential.mechanism
    }

    /// Check the client's final message (`c=…,r=…,p=…`): its proof against the stored key.
    /// The server-final-message (`v=…`) when it is right.
    pub fn finish(&self, message: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        match attrs.next() {
            // base64("n,,") or base64("y,,"): no channel binding, no authzid data beyond it.
            Some(c) if c.starts_with("c=") => {
                let gs2 = BASE64
                    .decode(&c[2..])
                    .map_err(|_| ScramError::Malformed("bad channel binding"))?;
                if !(gs2.starts_with(b"n,") || gs2.starts_with(b"y,")) {
                    return Err(ScramError::ChannelBinding);
                }
            }
            _ => return Err(ScramError::Malformed("no channel binding")),
        }
        // The nonce must end with the one the server sent, as Kafka checks it
        // (`ScramSaslServer`): librdkafka 2.0 writes the client's part twice
        // (`r=<client><client><server>`), and Kafka's brokers take it. The server's part, fresh
        // for this exchange, is what makes a replayed proof fail; the proof covers what was
        // sent.
        match attrs.next() {
            Some(r) if r.starts_with("r=") && r.ends_with(self.nonce.as_str()) => {}
            Some(r) if r.starts_with("r=") => return Err(ScramError::Nonce),
            _ => return Err(ScramError::Malformed("no nonce")),
        }
        if attrs.next().is_some() {
            return Err(ScramError::Extensions);
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("bad proof"))?;
        let m = self.credential.mechanism;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = m.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::Proof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&m.hash(&client_key), &self.credential.stored_key) {
            return Err(ScramError::Proof);
        }
        let server_signature = m.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A client's side, for the simulator's clients and the tests: the first message, then the
/// final one from the server's first answer. `(client final message, expected server final)`.
pub fn client_final(
    mechanism: Mechanism,
    username: &str,
    password: &[u8],
    client_nonce: &str,
    server_first: &str,
) -> Result<(String, String), ScramError> {
    client_final_salted(
        mechanism,
        username,
        |salt, iterations| mechanism.salted_password(password, salt, iterations),
        client_nonce,
        server_first,
    )
}

/// [`client_final`] with the salted password made by `salted(salt, iterations)` (a client
/// that keeps it, as the simulator's do, skips the key derivation at its next login).
pub fn client_final_salted(
    mechanism: Mechanism,
    username: &str,
    salted: impl FnOnce(&[u8], u32) -> Vec<u8>,
    client_nonce: &str,
    server_first: &str,
) -> Result<(String, String), ScramError> {
    let mut nonce = None;
    let mut salt = None;
    let mut iterations = None;
    for attr in server_first.split(',') {
        match attr.split_at_checked(2) {
            Some(("r=", v)) => nonce = Some(v.to_string()),
            Some(("s=", v)) => {
                salt = Some(
                    BASE64
                        .decode(v)
                        .map_err(|_| ScramError::Malformed("bad salt"))?,
                )
            }
            Some(("i=", v)) => {
                iterations = Some(
                    v.parse::<u32>()
                        .map_err(|_| ScramError::Malformed("bad iterations"))?,
                )
            }
            _ => return Err(ScramError::Extensions),
        }
    }
    let (nonce, salt, iterations) = match (nonce, salt, iterations) {
        (Some(n), Some(s), Some(i)) => (n, s, i),
        _ => return Err(ScramError::Malformed("incomplete server first message")),
    };
    if !nonce.starts_with(client_nonce) {
        return Err(ScramError::Nonce);
    }
    if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
        return Err(ScramError::Iterations(iterations));
    }
    let salted = salted(&salt, iterations);
    let client_key = mechanism.hmac(&salted, b"Client Key");
    let stored_key = mechanism.hash(&client_key);
    let bare = client_first_bare(username, client_nonce);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = mechanism.hmac(&salted, b"Server Key");
    let server_signature = mechanism.hmac(&server_key, auth_message.as_bytes());
    Ok((
        format!("{without_proof},p={}", BASE64.encode(proof)),
        format!("v={}", BASE64.encode(server_signature)),
    ))
}

/// `n=user,r=nonce` with the user name escaped.
pub fn client_first_bare(username: &str, client_nonce: &str) -> String {
    let name = username.replace('=', "=3D").replace(',', "=2C");
    format!("n={name},r={client_nonce}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3: user "user", password "pencil".
    #[test]
    fn the_rfc_7677_exchange_is_reproduced_step_by_step() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::derive(Mechanism::Sha256, b"pencil", salt, 4096).unwrap();
        let first = client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.username, "user");
        let (exchange, server_first) =
            ServerExchange::start(&first, cred, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final_message = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            exchange.finish(client_final_message.as_bytes()),
            Ok("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_string())
        );
        let (ours, expected) = client_final(
            Mechanism::Sha256,
            "user",
            b"pencil",
            "rOprNGfwEbeRWgbNEkqO",
            &server_first,
        )
        .unwrap();
        assert_eq!(ours, client_final_message);
        assert_eq!(expected, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn sha_512_round_trips_and_a_wrong_password_or_nonce_is_refused() {
        let cred = Credential::derive(
            Mechanism::Sha512,
            b"s3cret",
            b"0123456789abcdef".to_vec(),
            4096,
        )
        .unwrap();
        assert!(
            client_first(client_first_bare("al,i=ce", "abc").as_bytes()).is_err(),
            "a bare message has no gs2 header"
        );
        let message = format!("n,,{}", client_first_bare("al,i=ce", "abc"));
        let first = client_first(message.as_bytes()).unwrap();
        assert_eq!(first.username, "al,i=ce");
        let (exchange, server_first) = ServerExchange::start(&first, cred, "XYZ");
        let (good, expected) = client_final(
            Mechanism::Sha512,
            "al,i=ce",
            b"s3cret",
            "abc",
            &server_first,
        )
        .unwrap();
        assert_eq!(exchange.finish(good.as_bytes()), Ok(expected));
        let (bad, _) =
            client_final(Mechanism::Sha512, "al,i=ce", b"wrong", "abc", &server_first).unwrap();
        assert_eq!(exchange.finish(bad.as_bytes()), Err(ScramError::Proof));
        let replayed = good.replace("abcXYZ", "abcXYW");
        assert_eq!(exchange.finish(replayed.as_bytes()), Err(ScramError::Nonce));
    }

    /// librdkafka 2.0 sends `r=<client nonce><client nonce><server nonce>`; Kafka takes it
    /// (the nonce must end with the server's), and so do we.
    #[test]
    fn a_final_nonce_that_repeats_the_clients_part_is_taken_as_kafka_takes_it() {
        let m = Mechanism::Sha256;
        let cred = Credential::derive(m, b"pw", vec![5; 16], 4096).unwrap();
        let first = client_first(b"n,,n=u,r=cli").unwrap();
        let (exchange, server_first) = ServerExchange::start(&first, cred, "SRV");
        let without_proof = "c=biws,r=clicliSRV";
        let salted = m.salted_password(b"pw", &[5; 16], 4096);
        let client_key = m.hmac(&salted, b"Client Key");
        let auth = format!("n=u,r=cli,{server_first},{without_proof}");
        let signature = m.hmac(&m.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let message = format!("{without_proof},p={}", BASE64.encode(proof));
        assert!(exchange.finish(message.as_bytes()).is_ok());
        // Without the server's part at its end, refused.
        let message = message.replace("clicliSRV", "cliSRVcli");
        assert_eq!(exchange.finish(message.as_bytes()), Err(ScramError::Nonce));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for m in [
            &b""[..],
            b"n",
            b"n,,",
            b"n,,n=",
            b"n,,n=u",
            b"n,,r=x,n=u",
            b"p=tls-unique,,n=u,r=x",
            b"n,,n=u=2,r=x",
            b"n,,n=u,r=x,ext=1",
            b"n,a=other,n=u,r=x",
            b"\xff\xfe",
        ] {
            assert!(client_first(m).is_err(), "{m:?}");
        }
        let cred = Credential::derive(Mechanism::Sha256, b"p", b"salt-salt-salt-s".to_vec(), 4096)
            .unwrap();
        let first = client_first(b"n,a=u,n=u,r=x").unwrap();
        let (exchange, _) = ServerExchange::start(&first, cred, "y");
        for m in [
            &b""[..],
            b"p=",
            b"c=biws,p=AAAA",
            b"c=!!,r=xy,p=AAAA",
            b"c=biws,r=xy,p=!!",
            b"c=biws,r=xy,e=1,p=AAAA",
            b"c=cD10bHMtdW5pcXVlLCw=,r=xy,p=AAAA",
        ] {
            assert!(exchange.finish(m).is_err(), "{m:?}");
        }
        assert_eq!(
            Credential::derive(Mechanism::Sha256, b"p", vec![0; 16], 100),
            Err(ScramError::Iterations(100))
        );
    }
}
