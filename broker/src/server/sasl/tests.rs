//! The authentication state machine driven as a client drives it, with the client side of
//! `security::scram`.

use bytes::Buf;
use kafka_protocol::messages::{ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::Decodable;

use super::*;
use crate::security::SecurityChange;
use io_backend::EnvRng;

fn context(mechanisms: &[SaslMechanism], reauth: Option<Duration>) -> Arc<SaslContext> {
    SaslContext::new(
        SaslSettings {
            mechanisms: mechanisms.to_vec(),
            authentication_timeout: Duration::from_secs(10),
            failed_delay: Duration::from_millis(100),
            max_reauth: reauth,
        },
        crate::security::random::SecureRandom::new(&EnvRng::seeded(7)),
    )
}

fn users() -> SecurityMetadata {
    let mut md = SecurityMetadata::default();
    for (user, m, pw) in [
        ("alice", Mechanism::Sha512, "alice-secret"),
        ("bob", Mechanism::Sha256, "bob-secret"),
    ] {
        md.apply(&SecurityChange::SetCredential {
            user: user.into(),
            credential: Credential::derive(m, pw.as_bytes(), vec![3; 16], 4096).unwrap(),
        })
        .unwrap();
    }
    md
}

fn request(version: i16, body: RequestKind) -> Request {
    let api = match &body {
        RequestKind::SaslHandshake(_) => ApiKey::SaslHandshake,
        _ => ApiKey::SaslAuthenticate,
    };
    Request {
        api,
        version,
        correlation_id: 9,
        client_id: None,
        body,
        peer: None,
        listener: None,
        software: None,
    }
}

fn handshake(version: i16, mechanism: &str) -> Request {
    request(
        version,
        RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
        ),
    )
}

fn authenticate(version: i16, token: &[u8]) -> Request {
    request(
        version,
        RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
        ),
    )
}

/// The body of a response frame (after its length and header).
fn body(api: ApiKey, version: i16, frame: &Bytes) -> Bytes {
    let mut b = frame.slice(4..);
    let header = ResponseHeader::decode(&mut b, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 9);
    b
}

fn handshake_answer(step: Step) -> (bool, SaslHandshakeResponse) {
    let (ok, frame) = match step {
        Step::Answer(b) => (true, b),
        Step::Refuse(b) => (false, b),
        Step::Close(why) => panic!("closed: {why}"),
    };
    let mut b = body(ApiKey::SaslHandshake, 1, &frame);
    (ok, SaslHandshakeResponse::decode(&mut b, 1).unwrap())
}

fn auth_answer(version: i16, step: Step) -> (bool, SaslAuthenticateResponse) {
    let (ok, frame) = match step {
        Step::Answer(b) => (true, b),
        Step::Refuse(b) => (false, b),
        Step::Close(why) => panic!("closed: {why}"),
    };
    let mut b = body(ApiKey::SaslAuthenticate, version, &frame);
    (
        ok,
        SaslAuthenticateResponse::decode(&mut b, version).unwrap(),
    )
}

/// A whole SCRAM exchange over the v1 requests; the server's final answer.
fn scram(
    a: &mut Authenticator,
    md: &SecurityMetadata,
    m: Mechanism,
    user: &str,
    password: &str,
    now: Instant,
) -> (bool, SaslAuthenticateResponse) {
    let (ok, _) = handshake_answer(a.request(&handshake(1, m.name()), md, now));
    assert!(ok);
    let first = format!("n,,{}", scram::client_first_bare(user, "clientnonce"));
    let (ok, r) = auth_answer(2, a.request(&authenticate(2, first.as_bytes()), md, now));
    assert!(ok, "{:?}", r.error_message);
    let server_first = std::str::from_utf8(&r.auth_bytes).unwrap().to_string();
    let (fin, _) =
        scram::client_final(m, user, password.as_bytes(), "clientnonce", &server_first).unwrap();
    auth_answer(2, a.request(&authenticate(2, fin.as_bytes()), md, now))
}

#[test]
fn a_scram_exchange_authenticates_and_only_then_are_other_requests_served() {
    let md = users();
    let now = Instant::now();
    let mut a = Authenticator::new(context(&[SaslMechanism::ScramSha512], None));
    assert!(a.admits(ApiKey::ApiVersions, now).is_ok());
    assert!(a.admits(ApiKey::Metadata, now).is_err());
    assert!(a.admits(ApiKey::Produce, now).is_err());
    let (ok, r) = scram(&mut a, &md, Mechanism::Sha512, "alice", "alice-secret", now);
    assert!(ok && r.error_code == 0, "{:?}", r.error_message);
    assert!(std::str::from_utf8(&r.auth_bytes)
        .unwrap()
        .starts_with("v="));
    assert_eq!(r.session_lifetime_ms, 0);
    assert!(a.take_authenticated());
    assert!(!a.take_authenticated());
    assert_eq!(a.principal(), Some(&Principal::user("alice")));
    assert!(a.admits(ApiKey::Produce, now).is_ok());
}

#[test]
fn a_wrong_password_and_an_unknown_user_are_refused_at_the_same_step() {
    let md = users();
    let now = Instant::now();
    for (user, password) in [("alice", "wrong"), ("mallory", "alice-secret")] {
        let mut a = Authenticator::new(context(&[SaslMechanism::ScramSha512], None));
        let (ok, r) = scram(&mut a, &md, Mechanism::Sha512, user, password, now);
        assert!(!ok, "{user}");
        assert_eq!(r.error_code, error::SASL_AUTHENTICATION_FAILED);
        assert!(r.error_message.unwrap().contains("invalid credentials"));
        assert!(a.principal().is_none());
        assert!(a.admits(ApiKey::Metadata, now).is_err());
    }
    // An unknown user's salt is the same at every attempt on a broker (a fresh one would tell).
    let ctx = context(&[SaslMechanism::ScramSha256], None);
    let salt_of = |seed_user: &str| {
        let mut a = Authenticator::new(ctx.clone());
        a.request(&handshake(1, "SCRAM-SHA-256"), &md, now);
        let first = format!("n,,{}", scram::client_first_bare(seed_user, "n1"));
        let (_, r) = auth_answer(2, a.request(&authenticate(2, first.as_bytes()), &md, now));
        let text = String::from_utf8(r.auth_bytes.to_vec()).unwrap();
        text.split(',')
            .find(|p| p.starts_with("s="))
            .unwrap()
            .to_string()
    };
    assert_eq!(salt_of("nobody"), salt_of("nobody"));
    assert_ne!(salt_of("nobody"), salt_of("someone"));
}

#[test]
fn plain_is_checked_against_the_scram_credential() {
    let md = users();
    let now = Instant::now();
    let ctx = context(&[SaslMechanism::Plain], None);
    for (token, good) in [
        (&b"\0bob\0bob-secret"[..], true),
        (b"bob\0bob\0bob-secret", true),
        (b"\0bob\0wrong", false),
        (b"\0nobody\0bob-secret", false),
        (b"alice\0bob\0bob-secret", false),
        (b"\0bob", false),
        (b"\0\0", false),
    ] {
        let mut a = Authenticator::new(ctx.clone());
        handshake_answer(a.request(&handshake(1, "PLAIN"), &md, now));
        let (ok, r) = auth_answer(1, a.request(&authenticate(1, token), &md, now));
        assert_eq!(ok, good, "{token:?}");
        assert_eq!(r.error_code == 0, good);
        assert_eq!(a.principal().is_some(), good);
    }
}

#[test]
fn a_mechanism_not_offered_and_requests_out_of_order_are_refused() {
    let md = users();
    let now = Instant::now();
    let mut a = Authenticator::new(context(&[SaslMechanism::ScramSha256], None));
    let (ok, r) = handshake_answer(a.request(&handshake(1, "PLAIN"), &md, now));
    assert!(!ok);
    assert_eq!(r.error_code, error::UNSUPPORTED_SASL_MECHANISM);
    let offered: Vec<_> = r.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(offered, ["SCRAM-SHA-256"]);
    // SaslAuthenticate before any handshake: closed unanswered, as Kafka does.
    let mut a = Authenticator::new(context(&[SaslMechanism::ScramSha256], None));
    let step = a.request(&authenticate(1, b"n,,n=bob,r=x"), &md, now);
    assert!(matches!(step, Step::Close(_)));
    // After a login without re-authentication: a handshake or a token is answered
    // ILLEGAL_SASL_STATE (no mechanisms listed) and the connection kept.
    let mut a = Authenticator::new(context(&[SaslMechanism::ScramSha256], None));
    let (ok, _) = scram(&mut a, &md, Mechanism::Sha256, "bob", "bob-secret", now);
    assert!(ok);
    let (ok, r) = handshake_answer(a.request(&handshake(1, "SCRAM-SHA-256"), &md, now));
    assert!(ok);
    assert_eq!(r.error_code, error::ILLEGAL_SASL_STATE);
    assert!(r.mechanisms.is_empty());
    let (ok, r) = auth_answer(1, a.request(&authenticate(1, b"n,,n=bob,r=x"), &md, now));
    assert!(ok);
    assert_eq!(r.error_code, error::ILLEGAL_SASL_STATE);
    // Garbage where the client's first message belongs.
    let mut a = Authenticator::new(context(&[SaslMechanism::ScramSha256], None));
    a.request(&handshake(1, "SCRAM-SHA-256"), &md, now);
    let (ok, r) = auth_answer(1, a.request(&authenticate(1, &[0xff, 0, 7]), &md, now));
    assert!(!ok);
    assert_eq!(r.error_code, error::SASL_AUTHENTICATION_FAILED);
}

#[test]
fn after_a_v0_handshake_the_tokens_come_bare() {
    let md = users();
    let now = Instant::now();
    let mut a = Authenticator::new(context(&[SaslMechanism::ScramSha256], None));
    let (ok, _) = handshake_answer(a.request(&handshake(0, "SCRAM-SHA-256"), &md, now));
    assert!(ok);
    assert!(a.expects_raw_token());
    let first = format!("n,,{}", scram::client_first_bare("bob", "abc"));
    let Step::Answer(mut frame) = a.raw_token(first.as_bytes(), &md, now) else {
        panic!("refused");
    };
    let len = frame.get_i32() as usize;
    assert_eq!(len, frame.len());
    let server_first = String::from_utf8(frame.to_vec()).unwrap();
    let (fin, expected) = scram::client_final(
        Mechanism::Sha256,
        "bob",
        b"bob-secret",
        "abc",
        &server_first,
    )
    .unwrap();
    let Step::Answer(mut frame) = a.raw_token(fin.as_bytes(), &md, now) else {
        panic!("refused");
    };
    frame.advance(4);
    assert_eq!(frame, Bytes::from(expected));
    assert!(!a.expects_raw_token());
    assert_eq!(a.principal(), Some(&Principal::user("bob")));
    // A wrong proof in bare form has nowhere to carry an error: the connection closes.
    let mut a = Authenticator::new(context(&[SaslMechanism::ScramSha256], None));
    a.request(&handshake(0, "SCRAM-SHA-256"), &md, now);
    let Step::Answer(mut frame) = a.raw_token(first.as_bytes(), &md, now) else {
        panic!("refused");
    };
    frame.advance(4);
    let server_first = String::from_utf8(frame.to_vec()).unwrap();
    let (fin, _) =
        scram::client_final(Mechanism::Sha256, "bob", b"nope", "abc", &server_first).unwrap();
    assert!(matches!(
        a.raw_token(fin.as_bytes(), &md, now),
        Step::Close(_)
    ));
}

#[test]
fn a_session_ends_unless_the_same_principal_authenticates_again() {
    let md = users();
    let t0 = Instant::now();
    let reauth = Duration::from_secs(60);
    let ctx = context(
        &[SaslMechanism::ScramSha512, SaslMechanism::ScramSha256],
        Some(reauth),
    );
    let mut a = Authenticator::new(ctx.clone());
    let (ok, r) = scram(&mut a, &md, Mechanism::Sha512, "alice", "alice-secret", t0);
    assert!(ok);
    assert_eq!(r.session_lifetime_ms, 60_000);
    assert!(a
        .admits(ApiKey::Fetch, t0 + Duration::from_secs(59))
        .is_ok());
    assert!(a.admits(ApiKey::Fetch, t0 + reauth).is_err());
    assert!(a.admits(ApiKey::ApiVersions, t0 + reauth).is_ok());
    // A re-authentication begun, not finished, does not extend the session.
    let mut begun = Authenticator::new(ctx.clone());
    scram(
        &mut begun,
        &md,
        Mechanism::Sha512,
        "alice",
        "alice-secret",
        t0,
    );
    let (ok, _) = handshake_answer(begun.request(&handshake(1, "SCRAM-SHA-512"), &md, t0));
    assert!(ok);
    assert!(begun.admits(ApiKey::Fetch, t0 + reauth).is_err());
    // Again, as the same user: the session goes on.
    let t1 = t0 + Duration::from_secs(50);
    let (ok, _) = scram(&mut a, &md, Mechanism::Sha512, "alice", "alice-secret", t1);
    assert!(ok);
    assert!(a
        .admits(ApiKey::Fetch, t1 + Duration::from_secs(59))
        .is_ok());
    // As another user: refused, whatever that user's password.
    let (ok, r) = scram(&mut a, &md, Mechanism::Sha256, "bob", "bob-secret", t1);
    assert!(!ok);
    assert!(r.error_message.unwrap().contains("re-authentication"));
    // A v0 handshake cannot re-authenticate.
    let mut a = Authenticator::new(ctx);
    scram(&mut a, &md, Mechanism::Sha512, "alice", "alice-secret", t0);
    let (ok, r) = handshake_answer(a.request(&handshake(0, "SCRAM-SHA-512"), &md, t0));
    assert!(!ok);
    assert_eq!(r.error_code, error::ILLEGAL_SASL_STATE);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Malformed SASL tokens, in either request form and at every step of every mechanism:
    /// an answer or a refusal, never a panic, and never an authenticated connection.
    #[test]
    fn garbage_tokens_are_refused_and_never_authenticate(
        tokens in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 1..6),
        mechanism in 0..3usize,
        bare in proptest::bool::ANY,
        scram_prefix in proptest::bool::ANY,
    ) {
        // Derived once: PBKDF2 is slow in a debug build.
        static USERS: std::sync::OnceLock<SecurityMetadata> = std::sync::OnceLock::new();
        let md = USERS.get_or_init(users);
        let now = Instant::now();
        let m = SaslMechanism::ALL[mechanism];
        let mut a = Authenticator::new(context(&SaslMechanism::ALL, None));
        let version = if bare { 0 } else { 1 };
        let _ = a.request(&handshake(version, m.name()), md, now);
        for (i, mut token) in tokens.into_iter().enumerate() {
            // Half the time a well-formed first message, so the final step is reached too.
            if i == 0 && scram_prefix && m != SaslMechanism::Plain {
                token = format!("n,,{}", scram::client_first_bare("alice", "nonce")).into_bytes();
            }
            let step = if a.expects_raw_token() {
                a.raw_token(&token, md, now)
            } else {
                a.request(&authenticate(2, &token), md, now)
            };
            if matches!(step, Step::Close(_) | Step::Refuse(_)) {
                break;
            }
        }
        proptest::prop_assert!(a.principal().is_none());
        proptest::prop_assert!(a.admits(ApiKey::Produce, now).is_err());
    }
}
