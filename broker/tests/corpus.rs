//! The fuzz corpus (`tests/corpus/`, made by its `make_corpus.py`): malformed SASL exchanges
//! and broken TLS records, each sent as it is and then mutated (cut, bits flipped, tokens
//! dropped or doubled, from a seeded generator: a failure names its seed and case) to an
//! in-process broker with a SASL_PLAINTEXT and an SSL listener. Every one must end in a closed
//! connection within the deadlines (`sasl_authentication_timeout_ms`,
//! `ssl_handshake_timeout_ms`): never a panic, a held connection, or an answer to a request the
//! connection was not authenticated for; and a well-behaved client is served after them.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many mutations of each seed of the corpus (with `STILLWATER_CORPUS_MUTATIONS`, more).
const MUTATIONS: usize = 3;
/// The correlation id of the request that must never be answered.
const PROBE_ID: i32 = 0x0bad_cafe;
/// Every connection must be closed by then.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// A SASL seed: the request form (`true`: SaslAuthenticate; `false`: v0's bare frames), the
/// mechanism, the tokens.
struct SaslCase {
    requests: bool,
    mechanism: Vec<u8>,
    tokens: Vec<Vec<u8>>,
}

fn parse_sasl(data: &[u8]) -> SaslCase {
    let requests = data[0] == b'A';
    let len = u16::from_be_bytes([data[1], data[2]]) as usize;
    let mechanism = data[3..3 + len].to_vec();
    let mut at = 3 + len;
    let mut tokens = Vec::new();
    while at < data.len() {
        let n = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        tokens.push(data[at + 4..at + 4 + n].to_vec());
        at += 4 + n;
    }
    SaslCase {
        requests,
        mechanism,
        tokens,
    }
}

/// `bytes` changed a little: cut, a few bits flipped, or a run of bytes repeated.
fn mutate(rng: &mut rand::rngs::StdRng, bytes: &mut Vec<u8>) {
    match rng.gen_range(0..3) {
        0 => {
            let keep = rng.gen_range(0..=bytes.len());
            bytes.truncate(keep);
        }
        1 if !bytes.is_empty() => {
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
        }
        _ if !bytes.is_empty() => {
            let from = rng.gen_range(0..bytes.len());
            let to = rng.gen_range(from..=bytes.len().min(from + 64));
            let run = bytes[from..to].to_vec();
            bytes.splice(from..from, run);
        }
        _ => bytes.push(rng.gen()),
    }
}

fn mutate_sasl(rng: &mut rand::rngs::StdRng, case: &mut SaslCase) {
    match rng.gen_range(0..4) {
        0 => mutate(rng, &mut case.mechanism),
        1 if !case.tokens.is_empty() => {
            let i = rng.gen_range(0..case.tokens.len());
            mutate(rng, &mut case.tokens[i]);
        }
        2 if !case.tokens.is_empty() => {
            let i = rng.gen_range(0..case.tokens.len());
            let t = case.tokens[i].clone();
            case.tokens.insert(i, t);
        }
        _ => {
            case.tokens.pop();
        }
    }
}

/// Everything the broker sends until it closes the connection; an error if it does not close
/// it within [`CLOSED_WITHIN`].
async fn read_to_close(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    match read {
        Ok(()) => Ok(got),
        Err(_) => Err(format!(
            "the connection was still open after {CLOSED_WITHIN:?} ({} bytes received)",
            got.len()
        )),
    }
}

/// Send one SASL case (and a Metadata request after it) without waiting; the connection must
/// close, and the Metadata request must not be answered.
async fn sasl_case(addr: SocketAddr, case: &SaslCase) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut out = BytesMut::new();
    let mechanism = StrBytes::from_string(String::from_utf8_lossy(&case.mechanism).into_owned());
    let handshake = SaslHandshakeRequest::default().with_mechanism(mechanism);
    let version = if case.requests { 1 } else { 0 };
    out.put(common::request_frame(
        ApiKey::SaslHandshake,
        version,
        1,
        RequestKind::SaslHandshake(handshake),
    ));
    for (i, token) in case.tokens.iter().enumerate() {
        if case.requests {
            let req =
                SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
            out.put(common::request_frame(
                ApiKey::SaslAuthenticate,
                2,
                2 + i as i32,
                RequestKind::SaslAuthenticate(req),
            ));
        } else {
            out.put_u32(token.len() as u32);
            out.put_slice(token);
        }
    }
    out.put(common::request_frame(
        ApiKey::Metadata,
        9,
        PROBE_ID,
        RequestKind::Metadata(MetadataRequest::default()),
    ));
    // The broker may close before it has read everything: a failed write is fine.
    let _ = s.write_all(&out).await;
    let got = read_to_close(&mut s).await?;
    // Responses are length-prefixed, a correlation id first (v0's bare tokens have none, and
    // a bare answer that began with the probe's id is beyond chance).
    let mut at = 0;
    while at + 8 <= got.len() {
        let len = u32::from_be_bytes(got[at..at + 4].try_into().unwrap()) as usize;
        let id = i32::from_be_bytes(got[at + 4..at + 8].try_into().unwrap());
        if id == PROBE_ID {
            return Err("an unauthenticated connection was answered a Metadata request".into());
        }
        at += 4 + len;
    }
    Ok(())
}

/// Send `bytes` to the TLS listener; it must close the connection, having sent nothing but
/// TLS records.
async fn tls_case(addr: SocketAddr, bytes: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = s.write_all(bytes).await;
    let got = read_to_close(&mut s).await?;
    let mut at = 0;
    while at < got.len() {
        if at + 5 > got.len() || !(20..=23).contains(&got[at]) || got[at + 1] != 3 {
            return Err(format!(
                "the broker sent something other than TLS records: {:?}",
                &got[at..got.len().min(at + 16)]
            ));
        }
        at += 5 + u16::from_be_bytes([got[at + 3], got[at + 4]]) as usize;
    }
    Ok(())
}

/// A client that does everything right is still served: SCRAM over SASL_PLAINTEXT, and a TLS
/// handshake then ApiVersions over SSL.
async fn served(sasl: SocketAddr, ssl: SocketAddr, ca: &[u8], salted: &[u8]) {
    let mut c = common::Client::connect(sasl).await;
    common::scram_login(&mut c, "alice", salted).await;
    let ResponseKind::Metadata(_) = c
        .call(
            ApiKey::Metadata,
            9,
            RequestKind::Metadata(MetadataRequest::default()),
        )
        .await
    else {
        panic!("Metadata: another response");
    };
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(ssl).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("a good TLS client is served");
    let frame = common::request_frame(
        ApiKey::ApiVersions,
        0,
        7,
        RequestKind::ApiVersions(ApiVersionsRequest::default()),
    );
    tls.write_all(&frame).await.unwrap();
    tls.flush().await.unwrap();
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut len))
        .await
        .expect("ApiVersions answered over TLS")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_of_the_corpus_and_its_mutations_is_closed_and_nothing_else_suffers() {
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/tls");
    let ca = std::fs::read(tls_dir.join("ca.pem")).unwrap();
    // alice's password salted once, here, and given to the broker salted.
    let salt = b"corpus-salt-0123";
    let salted =
        broker::security::scram::Mechanism::Sha512.salted_password(b"alice-secret", salt, 4096);
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let alice = format!(
        "SCRAM-SHA-512=[name=alice,iterations=4096,salt=\"{}\",saltedpassword=\"{}\"]",
        b64(salt),
        b64(&salted)
    );
    let running = common::start_with(dir.path(), |c| {
        c.listeners = "SASL_PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0".into();
        c.sasl_enabled_mechanisms = "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN".into();
        c.add_scram = alice;
        c.sasl_authentication_timeout_ms = 300;
        c.connection_failed_authentication_delay_ms = 0;
        c.ssl_handshake_timeout_ms = 300;
        c.ssl_certificate_location = tls_dir.join("broker.pem").display().to_string();
        c.ssl_key_location = tls_dir.join("broker-key.pem").display().to_string();
    })
    .await;
    let addr = |name: &str| {
        running
            .listener_addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap()
    };
    let (sasl, ssl) = (addr("SASL_PLAINTEXT"), addr("SSL"));
    let seed: u64 = std::env::var("STILLWATER_CORPUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(27);
    let mutations: usize = std::env::var("STILLWATER_CORPUS_MUTATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(MUTATIONS);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let sasl_seeds = corpus("sasl");
    let tls_seeds = corpus("tls");
    assert!(
        sasl_seeds.len() >= 30 && tls_seeds.len() >= 20,
        "the corpus is there"
    );
    served(sasl, ssl, &ca, &salted).await;
    let mut failures = Vec::new();
    for (name, data) in &sasl_seeds {
        for m in 0..=mutations {
            let mut case = parse_sasl(data);
            for _ in 0..m {
                mutate_sasl(&mut rng, &mut case);
            }
            if let Err(e) = sasl_case(sasl, &case).await {
                failures.push(format!("sasl/{name} mutation {m}: {e}"));
            }
        }
    }
    served(sasl, ssl, &ca, &salted).await;
    for (name, data) in &tls_seeds {
        for m in 0..=mutations {
            let mut bytes = data.clone();
            for _ in 0..m {
                mutate(&mut rng, &mut bytes);
            }
            if let Err(e) = tls_case(ssl, &bytes).await {
                failures.push(format!("tls/{name} mutation {m}: {e}"));
            }
        }
    }
    served(sasl, ssl, &ca, &salted).await;
    assert!(
        failures.is_empty(),
        "seed {seed} (STILLWATER_CORPUS_SEED replays it):\n{}",
        failures.join("\n")
    );
}
