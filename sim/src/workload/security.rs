//! Security churn (scenarios with `[auth.churn]`): an admin — the run's super user — changes
//! users' credentials and ACLs through the admin API for the whole run, while one probe per
//! user logs in as that user (with the password it was last given, now and then an older one)
//! to a broker drawn at random, and sends a request of every API the authorizer checks
//! ([`Probe`]: of a topic and a group of its own, or of the cluster), each at a version drawn
//! from those the broker serves. Two users get ACLs of their own (literal, prefixed and on
//! every name; ALLOW and DENY; on topics, groups and the cluster); the third, `carol`, only
//! those for every user. Every login and request is recorded with how the broker
//! decided ([`Access`]); the security checker ([`crate::checks::access`]) judges each against
//! the metadata log as that broker had applied it.
//!
//! Data: a topic of one partition that takes one small record per allowed produce (a few
//! hundred in a run); the changes are a few dozen records in the metadata log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::security::acl::{
    op, pattern, permission, resource, AclBinding, AclFilter, CLUSTER_NAME,
};
use broker::security::scram::Mechanism;
use io_backend::EnvRng;
use tokio::time::Instant;

use super::client::probes::{self, ProbeAnswer};
use super::client::sasl::Login;
use super::client::{Client, ClientError};
use super::{
    admin_result, existing_is_created, lock, take_or_connect, wait_ready, World, RETRY_BACKOFF,
};
use crate::history::{Access, AccessKind, AccessOutcome, Op, Probe};

pub use crate::history::probe::{PROBE_GROUP, PROBE_TOPIC};
/// The users the admin makes and the probes log in as (no ACL of the pool names `carol`).
pub const PROBE_USERS: [&str; 3] = ["alice", "bob", "carol"];
/// The iterations of the credentials the admin sets (Kafka's least).
const ITERATIONS: u32 = 4096;
/// How long a probe waits for an answer: a broker catching up holds a login until it has.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Kafka's RESOURCE_NOT_FOUND (deleting a credential that is not there).
const RESOURCE_NOT_FOUND: i16 = 91;

/// Whether `code` refuses `kind`: SASL_AUTHENTICATION_FAILED a login; TOPIC_, GROUP_,
/// CLUSTER_ or TRANSACTIONAL_ID_AUTHORIZATION_FAILED a request (any other answer passed
/// authorization: it is checked before anything else).
pub fn refuses(kind: &AccessKind, code: i16) -> bool {
    match kind {
        AccessKind::Login { .. } => code == 58,
        AccessKind::Request { .. } => matches!(code, 29 | 30 | 31 | 53),
    }
}

/// The passwords the admin has set (or is setting) for each user, in order: the probes use the
/// newest, now and then an older one.
#[derive(Default)]
pub struct Passwords(Mutex<BTreeMap<String, Vec<String>>>);

impl Passwords {
    fn set(&self, user: &str, password: String) {
        lock(&self.0)
            .entry(user.to_string())
            .or_default()
            .push(password);
    }

    fn of(&self, user: &str) -> Vec<String> {
        lock(&self.0).get(user).cloned().unwrap_or_default()
    }
}

/// The mechanism the probes log in with and the admin makes credentials for.
fn mechanism(world: &World) -> Mechanism {
    match world.scenario.auth.as_ref().map(|a| a.mechanism.as_str()) {
        Some("SCRAM-SHA-256") => Mechanism::Sha256,
        _ => Mechanism::Sha512,
    }
}

/// A delay of about `ms` milliseconds (from half to one and a half of it).
fn about(rng: &EnvRng, ms: u64) -> Duration {
    Duration::from_millis(rng.range_u64(ms / 2, ms + ms / 2 + 1))
}

fn acl(rt: i8, name: &str, pat: i8, principal: &str, operation: i8, perm: i8) -> AclBinding {
    AclBinding {
        resource_type: rt,
        name: name.into(),
        pattern: pat,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission: perm,
    }
}

fn topic_acl(name: &str, pat: i8, principal: &str, operation: i8, perm: i8) -> AclBinding {
    acl(resource::TOPIC, name, pat, principal, operation, perm)
}

fn group_acl(name: &str, pat: i8, principal: &str, operation: i8, perm: i8) -> AclBinding {
    acl(resource::GROUP, name, pat, principal, operation, perm)
}

fn cluster_acl(principal: &str, operation: i8, perm: i8) -> AclBinding {
    acl(
        resource::CLUSTER,
        CLUSTER_NAME,
        pattern::LITERAL,
        principal,
        operation,
        perm,
    )
}

/// The ACLs the admin draws from: allowances and denials, literal, prefixed and on every
/// name, for one user and for every user, on topics, groups, transactional ids and the cluster — so that both
/// the grants and the denials of each operation the probes use come and go.
pub fn acl_pool() -> Vec<AclBinding> {
    use op::*;
    use pattern::{LITERAL, PREFIXED};
    use permission::{ALLOW, DENY};
    vec![
        topic_acl(PROBE_TOPIC, LITERAL, "User:alice", WRITE, ALLOW),
        topic_acl("sec", PREFIXED, "User:alice", ALL, ALLOW),
        topic_acl(PROBE_TOPIC, LITERAL, "User:*", READ, ALLOW),
        topic_acl("secu", PREFIXED, "User:bob", READ, ALLOW),
        topic_acl(PROBE_TOPIC, LITERAL, "User:bob", DESCRIBE, ALLOW),
        topic_acl("*", LITERAL, "User:bob", WRITE, ALLOW),
        topic_acl(PROBE_TOPIC, LITERAL, "User:alice", WRITE, DENY),
        topic_acl("se", PREFIXED, "User:bob", READ, DENY),
        topic_acl(PROBE_TOPIC, LITERAL, "User:*", DESCRIBE, DENY),
        group_acl(PROBE_GROUP, LITERAL, "User:alice", READ, ALLOW),
        group_acl("secured", PREFIXED, "User:*", DESCRIBE, ALLOW),
        group_acl(PROBE_GROUP, LITERAL, "User:bob", DESCRIBE, DENY),
        topic_acl("secured", PREFIXED, "User:bob", DELETE, ALLOW),
        topic_acl(PROBE_TOPIC, LITERAL, "User:alice", ALTER, ALLOW),
        topic_acl(PROBE_TOPIC, LITERAL, "User:*", DESCRIBE_CONFIGS, ALLOW),
        topic_acl("sec", PREFIXED, "User:bob", ALTER_CONFIGS, ALLOW),
        topic_acl("*", LITERAL, "User:alice", ALTER_CONFIGS, DENY),
        topic_acl("secured-", PREFIXED, "User:alice", CREATE, ALLOW),
        group_acl("secured", PREFIXED, "User:bob", DELETE, ALLOW),
        group_acl("*", LITERAL, "User:alice", DELETE, DENY),
        group_acl(PROBE_GROUP, LITERAL, "User:*", READ, ALLOW),
        cluster_acl("User:alice", ALTER, ALLOW),
        cluster_acl("User:*", DESCRIBE, ALLOW),
        cluster_acl("User:bob", DESCRIBE, DENY),
        cluster_acl("User:bob", CREATE, ALLOW),
        cluster_acl("User:alice", IDEMPOTENT_WRITE, ALLOW),
        cluster_acl("User:bob", ALTER_CONFIGS, ALLOW),
        cluster_acl("User:alice", DESCRIBE_CONFIGS, DENY),
        cluster_acl("User:bob", ALL, ALLOW),
        acl(
            resource::TRANSACTIONAL_ID,
            "secured-txn",
            LITERAL,
            "User:alice",
            WRITE,
            ALLOW,
        ),
        acl(
            resource::TRANSACTIONAL_ID,
            "secured",
            PREFIXED,
            "User:*",
            DESCRIBE,
            ALLOW,
        ),
        acl(
            resource::TRANSACTIONAL_ID,
            "secured-txn",
            LITERAL,
            "User:bob",
            WRITE,
            DENY,
        ),
        cluster_acl("User:alice", CLUSTER_ACTION, ALLOW),
    ]
}

/// One change the admin makes.
#[derive(Debug, Clone)]
enum Change {
    /// Make the user's credential this password (a new user, or a new password).
    Password {
        user: &'static str,
        password: String,
        salt: Vec<u8>,
    },
    /// Remove the user's credential (its open connections stay, as in Kafka).
    RemoveUser {
        user: &'static str,
    },
    Grant(AclBinding),
    Revoke(AclFilter),
}

impl Change {
    fn what(&self) -> String {
        match self {
            Change::Password { user, password, .. } => format!("password of {user}: {password}"),
            Change::RemoveUser { user } => format!("remove user {user}"),
            Change::Grant(b) => format!("create acl {b:?}"),
            Change::Revoke(f) => format!("delete acls {f:?}"),
        }
    }

    async fn send(&self, c: &mut Client, mechanism: Mechanism) -> Result<(), ClientError> {
        match self {
            Change::Password {
                user,
                password,
                salt,
            } => {
                c.set_scram(user, mechanism, password, salt.clone(), ITERATIONS)
                    .await
            }
            Change::RemoveUser { user } => match c.delete_scram(user, mechanism).await {
                // Already gone (an earlier attempt whose answer was lost, or never made).
                Err(ClientError::Kafka(RESOURCE_NOT_FOUND)) => Ok(()),
                other => other,
            },
            Change::Grant(b) => c.create_acl(b).await,
            Change::Revoke(f) => c.delete_acls(f).await.map(|_| ()),
        }
    }
}

/// The admin: the probes' topic and their users, then a change about every
/// `change_interval_ms` until the run's end.
pub async fn churn(world: Arc<World>, passwords: Arc<Passwords>) {
    let Some(spec) = world.scenario.auth.as_ref().and_then(|a| a.churn.clone()) else {
        return;
    };
    let rng = EnvRng::seeded(world.seed ^ 0xC4A2_0000);
    if !wait_ready(&world).await {
        return;
    }
    let mut conn: Option<Client> = None;
    while Instant::now() < world.end {
        let Some(c) = take_or_connect(&world, &mut conn).await else {
            continue;
        };
        let invoked_s = world.now_s();
        let r = tokio::time::timeout(world.client_timeout(), c.create_topic(PROBE_TOPIC, 1))
            .await
            .map(existing_is_created);
        if admin_result(
            &world,
            &mut conn,
            format!("create {PROBE_TOPIC}"),
            invoked_s,
            r,
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut versions: BTreeMap<&str, u32> = BTreeMap::new();
    let mut new_password = |user: &'static str| {
        let v = versions.entry(user).or_insert(0);
        *v += 1;
        let password = format!("{user}-pw{v}");
        passwords.set(user, password.clone());
        let salt = (0..2).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
        Change::Password {
            user,
            password,
            salt,
        }
    };
    for user in PROBE_USERS {
        let first = new_password(user);
        make(&world, &mut conn, &first).await;
    }
    let pool = acl_pool();
    while Instant::now() < world.end {
        tokio::time::sleep(about(&rng, spec.change_interval_ms)).await;
        let user = PROBE_USERS[rng.range_u64(0, PROBE_USERS.len() as u64) as usize];
        // Mostly grants (the pool is large), so that both answers to each request come up; a
        // user is removed now and then (and made again by its next password).
        let change = match rng.range_u64(0, 12) {
            0..=1 => new_password(user),
            2 => Change::RemoveUser { user },
            3..=9 => Change::Grant(pool[rng.range_u64(0, pool.len() as u64) as usize].clone()),
            10 => {
                let b = &pool[rng.range_u64(0, pool.len() as u64) as usize];
                Change::Revoke(exactly(b))
            }
            _ => Change::Revoke(AclFilter {
                principal: Some(format!("User:{user}")),
                ..every_acl()
            }),
        };
        make(&world, &mut conn, &change).await;
    }
}

/// A filter that matches `b` alone.
fn exactly(b: &AclBinding) -> AclFilter {
    AclFilter {
        resource_type: b.resource_type,
        name: Some(b.name.clone()),
        pattern: b.pattern,
        principal: Some(b.principal.clone()),
        host: Some(b.host.clone()),
        operation: b.operation,
        permission: b.permission,
    }
}

/// A filter that matches every ACL.
fn every_acl() -> AclFilter {
    AclFilter {
        resource_type: resource::ANY,
        name: None,
        pattern: pattern::ANY,
        principal: None,
        host: None,
        operation: op::ANY,
        permission: permission::ANY,
    }
}

/// Make `change`, again while its outcome is unknown (each change may be made twice), until it
/// is made, refused or the run is over.
async fn make(world: &World, conn: &mut Option<Client>, change: &Change) {
    let mechanism = mechanism(world);
    while Instant::now() < world.end {
        let Some(c) = take_or_connect(world, conn).await else {
            continue;
        };
        let invoked_s = world.now_s();
        let r = tokio::time::timeout(world.client_timeout(), change.send(c, mechanism)).await;
        // NOT_CONTROLLER (41) is as retriable as the producer's codes.
        let definite = matches!(&r, Ok(Err(ClientError::Kafka(code)))
            if !crate::history::retriable_code(*code) && *code != 41);
        if admin_result(world, conn, change.what(), invoked_s, r) || definite {
            return;
        }
        tokio::time::sleep(RETRY_BACKOFF).await;
    }
}

/// One probe: logs in as `PROBE_USERS[who]` and uses the probes' topic until the run's end.
pub async fn probe(world: Arc<World>, who: usize, passwords: Arc<Passwords>) {
    let Some(spec) = world.scenario.auth.as_ref().and_then(|a| a.churn.clone()) else {
        return;
    };
    let user = PROBE_USERS[who];
    let rng = EnvRng::seeded(world.seed ^ (0x9B0B_E000 + who as u64));
    let mechanism = mechanism(&world).name().to_string();
    let brokers = world.directory.brokers().to_vec();
    let mut conn: Option<(usize, Client)> = None;
    while Instant::now() < world.end {
        tokio::time::sleep(about(&rng, spec.probe_interval_ms)).await;
        let known = passwords.of(user);
        let Some(newest) = known.last() else {
            continue;
        };
        if conn.is_none() || rng.range_u64(0, 5) == 0 {
            conn = None;
            let broker = rng.range_u64(0, brokers.len() as u64) as usize;
            // Mostly the newest password; now and then an older one (or a wrong one).
            let password = match rng.range_u64(0, 8) {
                0 if known.len() > 1 => {
                    known[rng.range_u64(0, known.len() as u64 - 1) as usize].clone()
                }
                1 => format!("{user}-wrong"),
                _ => newest.clone(),
            };
            let login = Login {
                mechanism: mechanism.clone(),
                user: user.to_string(),
                password: password.clone(),
                rng: rng.clone(),
            };
            let invoked_s = world.now_s();
            let r = tokio::time::timeout(
                PROBE_TIMEOUT,
                Client::connect_as(brokers[broker], Some(&login)),
            )
            .await;
            let kind = AccessKind::Login { password };
            let outcome = match &r {
                Ok(Ok(_)) => AccessOutcome::Allowed,
                Ok(Err(ClientError::Kafka(code))) if refuses(&kind, *code) => {
                    AccessOutcome::Refused(*code)
                }
                _ => AccessOutcome::Unknown,
            };
            record_access(&world, user, kind, broker, invoked_s, outcome);
            if let Ok(Ok(c)) = r {
                conn = Some((broker, c));
            }
            continue;
        }
        let Some((broker, c)) = conn.as_mut() else {
            continue;
        };
        let broker = *broker;
        let probe = Probe::ALL[rng.range_u64(0, Probe::ALL.len() as u64) as usize];
        let (lo, hi) = probes::versions(probe);
        let version = rng.range_u64(lo as u64, hi as u64 + 1) as i16;
        let kind = AccessKind::Request { probe, version };
        let invoked_s = world.now_s();
        let r = tokio::time::timeout(PROBE_TIMEOUT, c.probe(probe, version)).await;
        // Any answer but a refusal passed authorization (it is checked before anything else:
        // a partition's leader elsewhere is told after it); a listing without the probes'
        // resource tells nothing (it may not exist, or not be known there yet).
        let outcome = match r {
            Ok(Ok(ProbeAnswer::Codes(codes))) => match codes.iter().find(|c| refuses(&kind, **c)) {
                Some(code) => AccessOutcome::Refused(*code),
                None => AccessOutcome::Allowed,
            },
            Ok(Ok(ProbeAnswer::Listed(true))) => AccessOutcome::Allowed,
            Ok(Ok(ProbeAnswer::Listed(false))) => AccessOutcome::Unknown,
            _ => {
                conn = None;
                AccessOutcome::Unknown
            }
        };
        record_access(&world, user, kind, broker, invoked_s, outcome);
    }
}

fn record_access(
    world: &World,
    user: &str,
    kind: AccessKind,
    broker: usize,
    invoked_s: f64,
    outcome: AccessOutcome,
) {
    world.record(Op::Access(Access {
        user: user.to_string(),
        kind,
        broker,
        invoked_s,
        completed_s: world.now_s(),
        outcome,
    }));
}
