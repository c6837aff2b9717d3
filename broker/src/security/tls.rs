//! TLS, on the SSL listeners and between brokers: rustls (the `ring` provider; under simulation
//! with its randomness from the seed, [`super::crypto`]), the certificate
//! chain, its key and the CAs read from PEM files through the environment's disk, optional
//! client certificates on the listeners (`ssl_client_auth`), a handshake that must finish
//! within `ssl_handshake_timeout_ms`, and the files read again every `ssl_reload_interval_ms`:
//! a change serves every new connection from then on, and no open connection is dropped.
//!
//! Between brokers (`inter_broker_security_protocol = "SSL"`) TLS is mutual: each end presents
//! the broker's certificate and must be shown one that chains to `ssl_ca_location`. A peer is
//! a member of the cluster by its certificate's CA, not by a name in it (brokers are dialled by
//! address).
//!
//! Invariant: a connection that has not finished its handshake holds its connection slot and
//! at most rustls' bounded buffers, and only until the handshake deadline; a plaintext client,
//! garbage or silence on a TLS port ends in a closed connection and a log line.

use std::path::Path;
use std::sync::Arc;

use crate::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use io_backend::{Clock, Connection, Disk, OpenMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::random::SecureRandom;
use super::Principal;
use crate::config::{ClientAuth, TlsSettings};

/// A PEM file larger than this is refused (a certificate chain is a few KiB).
const PEM_BYTES_MAX: u64 = 1 << 20;

/// Reading the files (at start, and again) must be done within this.
pub const FILES_DEADLINE: Duration = Duration::from_secs(10);

/// The TLS configuration the SSL listeners serve, replaced whole when its files change.
pub struct Tls {
    settings: TlsSettings,
    disk: Arc<dyn Disk>,
    /// What the crypto provider draws from (the system's; under simulation the seed's).
    random: SecureRandom,
    /// (The files as last loaded, the configurations built from them.) A std lock, held for
    /// a clone or a swap, never across an await.
    current: RwLock<(Vec<Bytes>, Configs)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("certificate", &self.settings.certificate)
            .field("inter_broker", &self.settings.inter_broker)
            .finish()
    }
}

/// What one set of files serves.
#[derive(Clone)]
struct Configs {
    /// The SSL listeners'.
    listeners: Arc<ServerConfig>,
    /// Between brokers: accepting (a peer's certificate required) and dialling.
    inter_broker: Option<(Arc<ServerConfig>, Arc<ClientConfig>)>,
}

impl Tls {
    /// Read the files and build the configuration: an error names the file or what is wrong
    /// with it, and the broker does not start.
    pub async fn load(
        disk: Arc<dyn Disk>,
        settings: TlsSettings,
        random: SecureRandom,
    ) -> Result<Arc<Tls>, String> {
        let files = read_files(disk.as_ref(), &settings).await?;
        let configs = build(&settings, &files, &random)?;
        Ok(Arc::new(Tls {
            settings,
            disk,
            random,
            current: RwLock::new("security.tls", (files, configs)),
        }))
    }

    fn configs(&self) -> Configs {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// The acceptor for a new client connection: the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.configs().listeners)
    }

    /// The acceptor and the connector between brokers, when their links are TLS.
    pub fn inter_broker(&self) -> Option<(TlsAcceptor, TlsConnector)> {
        let (accept, dial) = self.configs().inter_broker?;
        Some((TlsAcceptor::from(accept), TlsConnector::from(dial)))
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.settings.handshake_timeout
    }

    /// Read the files again; if they changed and make a valid configuration, serve it. What
    /// cannot be read or used is logged and the configuration in force kept. Whether it
    /// changed.
    pub async fn reload(&self) -> bool {
        let files = match read_files(self.disk.as_ref(), &self.settings).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the TLS files again; the ones loaded before are kept");
                return false;
            }
        };
        if self.current.read().unwrap_or_else(|p| p.into_inner()).0 == files {
            return false;
        }
        match build(&self.settings, &files, &self.random) {
            Ok(configs) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (files, configs);
                tracing::info!(certificate = %self.settings.certificate.display(), "TLS files changed: new connections are served with them");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the TLS files changed but cannot be used; the ones loaded before are kept");
                false
            }
        }
    }

    /// Read the files every `ssl_reload_interval_ms` until the broker stops.
    pub async fn reload_loop(
        self: Arc<Self>,
        clock: Arc<dyn Clock>,
        mut stop: watch::Receiver<bool>,
    ) {
        let Some(every) = self.settings.reload_interval else {
            return;
        };
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = clock.sleep(every) => {}
            }
            // A disk that stalls holds this task only, and not past the deadline.
            if clock.timeout(FILES_DEADLINE, self.reload()).await.is_err() {
                tracing::warn!(certificate = %self.settings.certificate.display(), "reading the TLS files again did not finish in time; the ones loaded before are kept");
            }
        }
    }
}

/// The TLS handshake of a new connection, within its deadline: the connection, and the
/// principal of the client's certificate if it showed one.
pub async fn handshake(
    tls: &Tls,
    conn: Box<dyn Connection>,
    clock: &Arc<dyn Clock>,
) -> Result<(Box<dyn Connection>, Option<Principal>), String> {
    let limit = tls.handshake_timeout();
    match clock.timeout(limit, tls.acceptor().accept(conn)).await {
        Ok(Ok(stream)) => {
            let principal = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| certificate_principal(cert.as_ref()))
                .transpose()?;
            Ok((Box::new(stream), principal))
        }
        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
        Err(_) => Err(format!(
            "TLS handshake not done within {} ms",
            limit.as_millis()
        )),
    }
}

/// Kafka's default principal of a client certificate: `User:` and the certificate's subject as
/// RFC 2253 writes it (`CN=alice,OU=eng,O=corp`: the most specific part first), as Java's
/// `X500Principal.getName()` does. A subject that cannot be read refuses the connection.
pub fn certificate_principal(der: &[u8]) -> Result<Principal, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the client certificate cannot be read: {e}"))?;
    let mut parts = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let oid = a.attr_type().to_id_string();
                let key = match oid.as_str() {
                    "2.5.4.3" => "CN",
                    "2.5.4.7" => "L",
                    "2.5.4.8" => "ST",
                    "2.5.4.10" => "O",
                    "2.5.4.11" => "OU",
                    "2.5.4.6" => "C",
                    "2.5.4.9" => "STREET",
                    "0.9.2342.19200300.100.1.25" => "DC",
                    "0.9.2342.19200300.100.1.1" => "UID",
                    _ => "",
                };
                match (key, a.as_str()) {
                    ("", _) | (_, Err(_)) => {
                        // Another attribute: its OID and its value's DER in hex (RFC 2253).
                        let hex: String = a
                            .attr_value()
                            .as_bytes()
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect();
                        let tag = a.attr_value().tag().0 as u8;
                        let len = a.attr_value().as_bytes().len();
                        format!("{oid}=#{tag:02x}{len:02x}{hex}")
                    }
                    (key, Ok(value)) => format!("{key}={}", rfc2253_escape(value)),
                }
            })
            .collect();
        parts.push(attrs.join("+"));
    }
    parts.reverse();
    Ok(Principal::user(parts.join(",")))
}

/// A value as RFC 2253 writes it: `,+"\<>;` escaped, and a leading `#` or space and a
/// trailing space.
fn rfc2253_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The certificate chain, the key and (if given) the client CAs, in that order.
async fn read_files(disk: &dyn Disk, settings: &TlsSettings) -> Result<Vec<Bytes>, String> {
    let mut out = vec![
        read_pem(disk, &settings.certificate).await?,
        read_pem(disk, &settings.key).await?,
    ];
    if let Some(ca) = &settings.ca {
        out.push(read_pem(disk, ca).await?);
    }
    Ok(out)
}

async fn read_pem(disk: &dyn Disk, path: &Path) -> Result<Bytes, String> {
    let file = disk
        .open(path, OpenMode::ReadOnly)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let len = file
        .len()
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if len > PEM_BYTES_MAX {
        return Err(format!(
            "{} is {len} bytes: a PEM file of at most {PEM_BYTES_MAX} was expected",
            path.display()
        ));
    }
    file.read_at(len as usize, 0)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The configurations from the files' contents.
fn build(
    settings: &TlsSettings,
    files: &[Bytes],
    random: &SecureRandom,
) -> Result<Configs, String> {
    let name = |p: &Path| p.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files[0])
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "{}: not a PEM certificate chain: {e}",
                name(&settings.certificate)
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no certificate in it",
            name(&settings.certificate)
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&files[1])
        .map_err(|e| format!("{}: no PEM private key in it: {e}", name(&settings.key)))?;
    let provider = super::crypto::provider(random);
    let roots = match (files.get(2), &settings.ca) {
        (Some(ca_pem), Some(ca_path)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem) {
                let cert =
                    cert.map_err(|e| format!("{}: not a PEM certificate: {e}", name(ca_path)))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: a CA certificate refused: {e}", name(ca_path)))?;
            }
            Some((Arc::new(roots), name(ca_path)))
        }
        _ => None,
    };
    let key_fits = |e: rustls::Error| {
        format!(
            "{} and {}: the key does not go with the certificate, or is not usable: {e}",
            name(&settings.certificate),
            name(&settings.key)
        )
    };
    let server = |auth: ClientAuth| -> Result<ServerConfig, String> {
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = match (auth, &roots) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (auth, Some((roots, ca_name))) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|e| format!("{ca_name}: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
            (_, None) => return Err("client certificates need ssl_ca_location".into()),
        };
        builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(key_fits)
    };
    let listeners = Arc::new(server(settings.client_auth)?);
    let inter_broker = if settings.inter_broker {
        let Some((roots, ca_name)) = &roots else {
            return Err("TLS between brokers needs ssl_ca_location".into());
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| format!("{ca_name}: {e}"))?;
        let dial = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ClusterMember(verifier)))
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(key_fits)?;
        Some((Arc::new(server(ClientAuth::Required)?), Arc::new(dial)))
    } else {
        None
    };
    Ok(Configs {
        listeners,
        inter_broker,
    })
}

/// A dialled broker's certificate is checked as a server's — its chain to the cluster's CAs,
/// its validity, its signatures — but not for the dialled name: brokers are dialled by
/// address, and membership is the CA's word.
#[derive(Debug)]
struct ClusterMember(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ClusterMember {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict =
            self.0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verdict {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The name a dialled broker is asked for: its address (see [`ClusterMember`]).
pub fn peer_name(address: std::net::SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(address.ip().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_values_are_escaped_as_rfc_2253_writes_them() {
        assert_eq!(rfc2253_escape("alice"), "alice");
        assert_eq!(rfc2253_escape("Smith, John"), "Smith\\, John");
        assert_eq!(
            rfc2253_escape("a+b=c;d<e>\"f\""),
            "a\\+b=c\\;d\\<e\\>\\\"f\\\""
        );
        assert_eq!(rfc2253_escape("#1 "), "\\#1\\ ");
        assert_eq!(rfc2253_escape(" x"), "\\ x");
        assert!(certificate_principal(b"not a certificate").is_err());
    }
}
