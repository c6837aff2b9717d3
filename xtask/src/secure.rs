//! SASL_SSL for the local cluster and the benchmarks: certificates made with rcgen (a CA, and
//! one certificate for localhost and 127.0.0.1 that every local broker presents to clients and
//! to the other brokers), the brokers' settings for a SASL_SSL listener with mutual TLS between
//! them and the authorizer on, and the client side the benchmarks' connections use — TLS
//! (rustls, trusting the CA) and a SASL/SCRAM-SHA-512 login (the workspace's `scram` crate).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{anyhow, bail, Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The SASL mechanism the local brokers' users have.
pub const MECHANISM: scram::Mechanism = scram::Mechanism::Sha512;
/// The super user made at start (`add_scram`).
pub const ADMIN: &str = "admin";

/// How a client reaches brokers over SASL_SSL.
#[derive(Clone)]
pub struct SaslSsl {
    pub ca: PathBuf,
    pub user: String,
    pub password: String,
    pub tls: Arc<rustls::ClientConfig>,
}

impl SaslSsl {
    /// Trusting the CA certificates in `ca` (PEM), logging in as `user`.
    pub fn new(ca: &Path, user: &str, password: &str) -> Result<SaslSsl> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading {}", ca.display()))?
        {
            roots
                .add(cert.with_context(|| format!("a certificate of {}", ca.display()))?)
                .with_context(|| format!("trusting {}", ca.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(SaslSsl {
            ca: ca.to_path_buf(),
            user: user.to_string(),
            password: password.to_string(),
            tls: Arc::new(tls),
        })
    }

    /// librdkafka's properties for it (what `kcat -F` reads).
    pub fn properties(&self) -> String {
        format!(
            "security.protocol=SASL_SSL\nssl.ca.location={}\nsasl.mechanisms={}\nsasl.username={}\nsasl.password={}\n",
            self.ca.display(),
            MECHANISM.name(),
            self.user,
            self.password
        )
    }

    /// Read back what [`SaslSsl::properties`] wrote.
    pub fn from_properties(path: &Path) -> Result<SaslSsl> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| anyhow!("{} has no {key}", path.display()))
        };
        SaslSsl::new(
            Path::new(get("ssl.ca.location")?),
            get("sasl.username")?,
            get("sasl.password")?,
        )
    }
}

static CLIENT: RwLock<Option<Arc<SaslSsl>>> = RwLock::new(None);

/// From now on, every benchmark connection uses `security` (`None`: PLAINTEXT).
pub fn use_for_clients(security: Option<SaslSsl>) {
    *CLIENT.write().unwrap_or_else(|p| p.into_inner()) = security.map(Arc::new);
}

/// What the benchmark connections use now.
pub fn for_clients() -> Option<Arc<SaslSsl>> {
    CLIENT.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A broker's certificate files.
#[derive(Clone, Debug)]
pub struct Certificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The certificates in `dir` (a CA, and a certificate for localhost and 127.0.0.1 signed by it,
/// for server and client authentication), made there first if they are not.
pub fn certificates(dir: &Path) -> Result<Certificates> {
    let certs = Certificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("broker.pem"),
        key: dir.join("broker-key.pem"),
    };
    if certs.ca.is_file() && certs.cert.is_file() && certs.key.is_file() {
        return Ok(certs);
    }
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "stillwater local CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "stillwater local broker");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(&certs.ca, ca.pem())?;
    write(&certs.cert, cert.pem())?;
    write(&certs.key, key.serialize_pem())?;
    Ok(certs)
}

/// A broker's settings (`key=value`) for one SASL_SSL listener on `addr` (named CLIENTS),
/// the authorizer on with [`ADMIN`] its super user and, in a `cluster`, mutual TLS between
/// the brokers.
pub fn broker_settings(certs: &Certificates, addr: &str, cluster: bool) -> Vec<String> {
    let mut settings = vec![
        format!("listeners=CLIENTS://{addr}"),
        "listener_security_protocol_map=CLIENTS:SASL_SSL".into(),
        format!("ssl_certificate_location={}", certs.cert.display()),
        format!("ssl_key_location={}", certs.key.display()),
        format!("ssl_ca_location={}", certs.ca.display()),
        "authorizer_enabled=true".into(),
        format!("super_users=User:{ADMIN}"),
    ];
    if cluster {
        settings.push("inter_broker_security_protocol=SSL".into());
    }
    settings
}

/// The broker's `--add-scram` argument that makes the admin user with `password`.
pub fn add_admin(password: &str) -> String {
    format!("{}=[name={ADMIN},password={password}]", MECHANISM.name())
}

/// A fresh password (16 bytes from the operating system, hex).
pub fn new_password() -> Result<String> {
    random_hex(16)
}

/// A client nonce: unique within this process, unguessable enough for a benchmark's logins.
pub fn nonce() -> Result<String> {
    random_hex(12)
}

/// `n` bytes from the operating system, in hex.
fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| anyhow!("the operating system's random generator failed"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Salted passwords by (password, salt, iterations): the key derivation costs a few thousand
/// HMACs, which a benchmark's client should not spend at every login beside the broker.
static SALTED: Mutex<Option<HashMap<SaltedKey, Vec<u8>>>> = Mutex::new(None);

/// (password, salt, iterations).
type SaltedKey = (String, Vec<u8>, u32);

pub fn salted(password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let key = (password.to_string(), salt.to_vec(), iterations);
    let mut cache = SALTED.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(s) = cache.get(&key) {
        return s.clone();
    }
    let s = MECHANISM.salted_password(password.as_bytes(), salt, iterations);
    if cache.len() < 64 {
        cache.insert(key, s.clone());
    }
    s
}

/// From the server's first message, the client's final one and the server signature to expect.
pub trait ScramFinal: FnOnce(&str) -> Result<(String, String)> {}
impl<F: FnOnce(&str) -> Result<(String, String)>> ScramFinal for F {}

/// The SCRAM exchange's client messages: the first, then the final one (with the server
/// signature to expect) from the server's first message.
pub fn scram_messages(user: &str, password: &str) -> Result<(String, impl ScramFinal)> {
    let nonce = nonce()?;
    let first = format!("n,,{}", scram::client_first_bare(user, &nonce));
    let user = user.to_string();
    let password = password.to_string();
    let last = move |server_first: &str| {
        scram::client_final_salted(
            MECHANISM,
            &user,
            |salt, iterations| salted(&password, salt, iterations),
            &nonce,
            server_first,
        )
        .map_err(|e| anyhow!("SCRAM: {e}"))
    };
    Ok((first, last))
}

/// Fail unless `dir` holds a secured local cluster's client properties.
pub fn cluster_client(dir: &Path) -> Result<Option<SaslSsl>> {
    let path = dir.join("client.properties");
    if !path.is_file() {
        return Ok(None);
    }
    let s = SaslSsl::from_properties(&path)?;
    if !s.ca.is_file() {
        bail!("{} names a CA file that is gone", path.display());
    }
    Ok(Some(s))
}
