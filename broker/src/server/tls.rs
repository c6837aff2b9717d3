//! TLS on the SSL listeners: rustls (the `ring` provider), the certificate chain, its key and
//! the client CAs read from PEM files through the environment's disk, optional client
//! certificates (`ssl_client_auth`), a handshake that must finish within
//! `ssl_handshake_timeout_ms`, and the files read again every `ssl_reload_interval_ms`: a
//! change serves every new connection from then on, and no open connection is dropped.
//!
//! Invariant: a connection that has not finished its handshake holds its connection slot and
//! at most rustls' bounded buffers, and only until the handshake deadline; a plaintext client,
//! garbage or silence on a TLS port ends in a closed connection and a rate-limited log line.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use io_backend::{Clock, Connection, Disk, OpenMode};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsSettings};

/// A PEM file larger than this is refused (a certificate chain is a few KiB).
const PEM_BYTES_MAX: u64 = 1 << 20;

/// The TLS configuration the SSL listeners serve, replaced whole when its files change.
pub struct Tls {
    settings: TlsSettings,
    disk: Arc<dyn Disk>,
    /// (The files as last loaded, the configuration built from them.) A std lock, held for a
    /// clone or a swap, never across an await.
    current: RwLock<(Vec<Bytes>, Arc<ServerConfig>)>,
}

impl Tls {
    /// Read the files and build the configuration: an error names the file or what is wrong
    /// with it, and the broker does not start.
    pub async fn load(disk: Arc<dyn Disk>, settings: TlsSettings) -> Result<Arc<Tls>, String> {
        let files = read_files(disk.as_ref(), &settings).await?;
        let config = build(&settings, &files)?;
        Ok(Arc::new(Tls {
            settings,
            disk,
            current: RwLock::new((files, Arc::new(config))),
        }))
    }

    /// The acceptor for a new connection: the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        TlsAcceptor::from(current.1.clone())
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
        match build(&self.settings, &files) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                    (files, Arc::new(config));
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
            self.reload().await;
        }
    }
}

/// The TLS handshake of a new connection, within its deadline.
pub async fn handshake(
    tls: &Tls,
    conn: Box<dyn Connection>,
    clock: &Arc<dyn Clock>,
) -> Result<Box<dyn Connection>, String> {
    let limit = tls.handshake_timeout();
    match clock.timeout(limit, tls.acceptor().accept(conn)).await {
        Ok(Ok(stream)) => Ok(Box::new(stream)),
        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
        Err(_) => Err(format!(
            "TLS handshake not done within {} ms",
            limit.as_millis()
        )),
    }
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

/// The server configuration from the files' contents.
fn build(settings: &TlsSettings, files: &[Bytes]) -> Result<ServerConfig, String> {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match (settings.client_auth, files.get(2), &settings.ca) {
        (ClientAuth::None, _, _) => builder.with_no_client_auth(),
        (auth, Some(ca_pem), Some(ca_path)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem) {
                let cert =
                    cert.map_err(|e| format!("{}: not a PEM certificate: {e}", name(ca_path)))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: a CA certificate refused: {e}", name(ca_path)))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("{}: {e}", name(ca_path)))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => return Err("client certificates need ssl_ca_location".into()),
    };
    builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "{} and {}: the key does not go with the certificate, or is not usable: {e}",
            name(&settings.certificate),
            name(&settings.key)
        )
    })
}
