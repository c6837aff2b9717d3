use super::*;
use crate::history::probe::{PROBE_GROUP, PROBE_TOPIC};
use crate::history::Probe;

fn req(probe: Probe) -> AccessKind {
    AccessKind::Request { probe, version: 0 }
}

fn acl(principal: &str, operation: i8, perm: i8) -> AclBinding {
    AclBinding {
        resource_type: resource::TOPIC,
        name: PROBE_TOPIC.into(),
        pattern: pattern::LITERAL,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission: perm,
    }
}

fn grant_alice_write() -> SecurityChange {
    SecurityChange::CreateAcl {
        binding: acl("User:alice", op::WRITE, permission::ALLOW),
    }
}

fn revoke_alice() -> SecurityChange {
    SecurityChange::DeleteAcls {
        filters: vec![AclFilter {
            resource_type: resource::ANY,
            name: None,
            pattern: pattern::ANY,
            principal: Some("User:alice".into()),
            host: None,
            operation: op::ANY,
            permission: permission::ANY,
        }],
    }
}

fn publish(
    broker: usize,
    incarnation: u64,
    at_s: f64,
    position: i64,
    changes: Vec<(i64, SecurityChange)>,
) -> Publication {
    Publication {
        broker,
        incarnation,
        at_s,
        position,
        changes: changes.into_iter().map(|(o, c)| (o, vec![c])).collect(),
    }
}

fn access(kind: AccessKind, broker: usize, span: (f64, f64), outcome: AccessOutcome) -> Op {
    Op::Access(Access {
        user: "alice".into(),
        kind,
        broker,
        invoked_s: span.0,
        completed_s: span.1,
        outcome,
    })
}

fn settings() -> Settings {
    Settings {
        mechanism: "SCRAM-SHA-512".into(),
        super_users: vec!["User:admin".into()],
        settled_s: 1000.0,
    }
}

fn kinds(f: &[Finding]) -> Vec<&'static str> {
    f.iter().map(Finding::kind).collect()
}

/// Broker 0 applies the grant at t=1 (offset 10) and the revocation at t=5 (offset 20).
fn grant_then_revoke() -> Vec<Publication> {
    vec![
        publish(0, 1, 1.0, 10, vec![(10, grant_alice_write())]),
        publish(0, 1, 5.0, 20, vec![(20, revoke_alice())]),
    ]
}

#[test]
fn a_request_is_judged_by_the_points_its_broker_may_have_decided_at() {
    let allowed = |span| access(req(Probe::Produce), 0, span, AccessOutcome::Allowed);
    let refused = |span| access(req(Probe::Produce), 0, span, AccessOutcome::Refused(29));
    let p = grant_then_revoke();
    // Between the grant and the revocation: allowed is right, refused is not.
    assert!(check(&[allowed((2.0, 3.0))], &p, &settings()).is_empty());
    assert_eq!(
        kinds(&check(&[refused((2.0, 3.0))], &p, &settings())),
        ["refused-authorized"]
    );
    // Sent before the revocation was applied, answered after: either is right.
    assert!(check(&[allowed((4.0, 6.0)), refused((4.0, 6.0))], &p, &settings()).is_empty());
    // After the revocation: allowed is wrong.
    assert_eq!(
        kinds(&check(&[allowed((6.0, 7.0))], &p, &settings())),
        ["served-unauthorized"]
    );
    // Before the broker applied anything: nobody but a super user is allowed.
    assert!(check(&[refused((0.1, 0.2))], &p, &settings()).is_empty());
    // Unknown outcomes say nothing.
    let unknown = access(req(Probe::Produce), 0, (6.0, 7.0), AccessOutcome::Unknown);
    assert!(check(&[unknown], &p, &settings()).is_empty());
}

#[test]
fn a_restarted_broker_may_not_decide_from_an_older_point_than_it_had_reached() {
    let mut p = grant_then_revoke();
    // Its next start replays the log: the grant again first (at t=8), then the revocation.
    p.push(publish(0, 2, 8.0, 10, vec![(10, grant_alice_write())]));
    p.push(publish(0, 2, 12.0, 20, vec![(20, revoke_alice())]));
    let served = access(req(Probe::Produce), 0, (9.0, 9.5), AccessOutcome::Allowed);
    assert_eq!(
        kinds(&check(&[served], &p, &settings())),
        ["served-unauthorized"]
    );
    // Another broker that never applied the revocation may still allow it.
    p.push(publish(1, 1, 1.0, 10, vec![(10, grant_alice_write())]));
    let elsewhere = access(req(Probe::Produce), 1, (9.0, 9.5), AccessOutcome::Allowed);
    assert!(check(
        &[elsewhere],
        &p,
        &Settings {
            settled_s: 0.5,
            ..settings()
        }
    )
    .is_empty());
}

#[test]
fn a_login_is_judged_by_the_credential_at_the_brokers_point() {
    let credential = |pw: &str| SecurityChange::SetCredential {
        user: "alice".into(),
        credential: Credential::derive(Mechanism::Sha512, pw.as_bytes(), vec![3; 16], 4096)
            .unwrap(),
    };
    let p = vec![
        publish(0, 1, 1.0, 5, vec![(5, credential("pw1"))]),
        publish(0, 1, 5.0, 9, vec![(9, credential("pw2"))]),
    ];
    let login = |pw: &str, span, outcome| {
        access(
            AccessKind::Login {
                password: pw.into(),
            },
            0,
            span,
            outcome,
        )
    };
    let history = [
        login("pw1", (2.0, 2.1), AccessOutcome::Allowed),
        login("pw2", (2.0, 2.1), AccessOutcome::Refused(58)),
        login("pw1", (4.9, 5.1), AccessOutcome::Allowed),
        login("pw2", (6.0, 6.1), AccessOutcome::Allowed),
        login("wrong", (6.0, 6.1), AccessOutcome::Refused(58)),
    ];
    assert!(check(&history, &p, &settings()).is_empty());
    let wrong = [
        login("pw1", (6.0, 6.1), AccessOutcome::Allowed),
        login("pw1", (2.0, 2.1), AccessOutcome::Refused(58)),
    ];
    assert_eq!(
        kinds(&check(&wrong, &p, &settings())),
        ["served-unauthorized", "refused-authorized"]
    );
}

#[test]
fn brokers_that_disagree_on_a_change_or_skip_one_are_found() {
    let mut p = grant_then_revoke();
    p.push(publish(1, 1, 1.0, 10, vec![(10, revoke_alice())]));
    let early = Settings {
        settled_s: 0.0,
        ..settings()
    };
    assert_eq!(kinds(&check(&[], &p, &early)), ["security-diverged"]);
    let mut p = grant_then_revoke();
    // Broker 1 says it reached offset 20 with only the revocation applied.
    p.push(publish(1, 7, 6.0, 20, vec![(20, revoke_alice())]));
    let f = check(&[], &p, &settings());
    assert_eq!(kinds(&f), ["security-diverged"]);
    assert!(
        f[0].to_string()
            .contains("without applying the change at 10"),
        "{}",
        f[0]
    );
}

#[test]
fn a_broker_that_never_applies_a_change_is_found_once_the_faults_healed() {
    let mut p = grant_then_revoke();
    p.push(publish(1, 1, 1.0, 10, vec![(10, grant_alice_write())]));
    p.push(publish(1, 1, 30.0, 12, vec![]));
    let settled = Settings {
        settled_s: 10.0,
        ..settings()
    };
    assert_eq!(kinds(&check(&[], &p, &settled)), ["security-unapplied"]);
    // Had the faults healed only at the end, it may not have caught up.
    let early = Settings {
        settled_s: 3.0,
        ..settings()
    };
    assert!(check(&[], &p, &early).is_empty());
}

#[test]
fn the_model_follows_kafka_s_acl_rules() {
    let mut m = Model::default();
    let verified = RefCell::new(HashMap::new());
    let may = |m: &Model, user: &str, kind: AccessKind| {
        let a = Access {
            user: user.into(),
            kind,
            broker: 0,
            invoked_s: 0.0,
            completed_s: 0.0,
            outcome: AccessOutcome::Unknown,
        };
        m.allows(&a, Mechanism::Sha512, &settings(), &verified)
    };
    assert!(!may(&m, "alice", req(Probe::Metadata)), "no ACL: nothing");
    assert!(
        may(&m, "admin", req(Probe::Produce)),
        "a super user: everything"
    );
    m.apply(&SecurityChange::CreateAcl {
        binding: acl("User:*", op::READ, permission::ALLOW),
    });
    assert!(may(&m, "bob", req(Probe::Fetch)));
    assert!(
        may(&m, "bob", req(Probe::Metadata)),
        "READ implies DESCRIBE"
    );
    assert!(!may(&m, "bob", req(Probe::Produce)));
    m.apply(&SecurityChange::CreateAcl {
        binding: AclBinding {
            name: "sec".into(),
            pattern: pattern::PREFIXED,
            ..acl("User:bob", op::ALL, permission::ALLOW)
        },
    });
    assert!(may(&m, "bob", req(Probe::Produce)), "a prefix and ALL");
    m.apply(&SecurityChange::CreateAcl {
        binding: acl("User:bob", op::WRITE, permission::DENY),
    });
    assert!(!may(&m, "bob", req(Probe::Produce)), "DENY wins");
    assert!(
        may(&m, "bob", req(Probe::Metadata)),
        "a DENY of WRITE leaves DESCRIBE"
    );
    m.apply(&SecurityChange::CreateAcl {
        binding: AclBinding {
            name: "*".into(),
            ..acl("User:bob", op::READ, permission::DENY)
        },
    });
    assert!(
        !may(&m, "bob", req(Probe::Fetch)),
        "a literal * applies to every topic"
    );
    m.apply(&SecurityChange::DeleteAcls {
        filters: vec![AclFilter {
            resource_type: resource::TOPIC,
            name: None,
            pattern: pattern::ANY,
            principal: Some("User:bob".into()),
            host: None,
            operation: op::ANY,
            permission: permission::DENY,
        }],
    });
    assert!(may(&m, "bob", req(Probe::Produce)) && may(&m, "bob", req(Probe::Fetch)));
    // Groups are resources of their own: READ on the group implies DESCRIBE; a topic's ACLs
    // say nothing of it.
    assert!(!may(&m, "bob", req(Probe::FindCoordinator)));
    m.apply(&SecurityChange::CreateAcl {
        binding: AclBinding {
            resource_type: resource::GROUP,
            name: PROBE_GROUP.into(),
            ..acl("User:alice", op::READ, permission::ALLOW)
        },
    });
    assert!(may(&m, "alice", req(Probe::FindCoordinator)));
    assert!(!may(&m, "bob", req(Probe::FindCoordinator)));
}

#[test]
fn each_probe_needs_what_kafka_checks_it_for() {
    let mut m = Model::default();
    let verified = RefCell::new(HashMap::new());
    let may = |m: &Model, user: &str, probe: Probe| {
        let a = Access {
            user: user.into(),
            kind: req(probe),
            broker: 0,
            invoked_s: 0.0,
            completed_s: 0.0,
            outcome: AccessOutcome::Unknown,
        };
        m.allows(&a, Mechanism::Sha512, &settings(), &verified)
    };
    let grant =
        |m: &mut Model, binding: AclBinding| m.apply(&SecurityChange::CreateAcl { binding });
    let cluster = |who: &str, operation: i8, perm: i8| AclBinding {
        resource_type: resource::CLUSTER,
        name: broker::security::acl::CLUSTER_NAME.into(),
        ..acl(who, operation, perm)
    };
    let group = |who: &str, operation: i8| AclBinding {
        resource_type: resource::GROUP,
        name: PROBE_GROUP.into(),
        ..acl(who, operation, permission::ALLOW)
    };
    // Committing offsets needs READ on the group and on the topic.
    grant(&mut m, group("User:alice", op::READ));
    assert!(!may(&m, "alice", Probe::OffsetCommit), "the group alone");
    assert!(may(&m, "alice", Probe::JoinGroup));
    grant(&mut m, acl("User:alice", op::READ, permission::ALLOW));
    assert!(may(&m, "alice", Probe::OffsetCommit));
    assert!(
        !may(&m, "alice", Probe::OffsetDelete),
        "deleting offsets needs DELETE"
    );
    // The cluster's operations: DESCRIBE does not allow ALTER; ALTER implies DESCRIBE.
    grant(&mut m, cluster("User:bob", op::DESCRIBE, permission::ALLOW));
    assert!(may(&m, "bob", Probe::DescribeAcls) && may(&m, "bob", Probe::DescribeLogDirs));
    assert!(!may(&m, "bob", Probe::CreateAcls) && !may(&m, "bob", Probe::UnregisterBroker));
    grant(&mut m, cluster("User:carol", op::ALTER, permission::ALLOW));
    assert!(may(&m, "carol", Probe::ElectLeaders) && may(&m, "carol", Probe::DescribeQuorum));
    // ALTER_CONFIGS implies DESCRIBE_CONFIGS, on the topic and on the cluster alike.
    grant(
        &mut m,
        acl("User:bob", op::ALTER_CONFIGS, permission::ALLOW),
    );
    assert!(may(&m, "bob", Probe::DescribeTopicConfigs));
    assert!(!may(&m, "bob", Probe::DescribeBrokerConfigs));
    // Creating a topic: CREATE on the cluster or on the topic's name.
    assert!(!may(&m, "bob", Probe::CreateTopics));
    grant(&mut m, cluster("User:bob", op::CREATE, permission::ALLOW));
    assert!(may(&m, "bob", Probe::CreateTopics));
    // An idempotent producer: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic that no
    // DENY covers.
    assert!(!may(&m, "carol", Probe::InitProducerId));
    grant(
        &mut m,
        AclBinding {
            name: "other".into(),
            ..acl("User:carol", op::WRITE, permission::ALLOW)
        },
    );
    assert!(
        may(&m, "carol", Probe::InitProducerId),
        "WRITE on a topic of another name"
    );
    grant(
        &mut m,
        AclBinding {
            name: "ot".into(),
            pattern: pattern::PREFIXED,
            ..acl("User:carol", op::WRITE, permission::DENY)
        },
    );
    assert!(
        !may(&m, "carol", Probe::InitProducerId),
        "covered by a prefixed DENY"
    );
    grant(
        &mut m,
        cluster("User:carol", op::IDEMPOTENT_WRITE, permission::ALLOW),
    );
    assert!(may(&m, "carol", Probe::InitProducerId));
}

#[test]
fn a_refusal_and_a_served_probe_of_any_api_are_judged() {
    let p = grant_then_revoke();
    let probe = |probe: Probe, outcome| {
        Op::Access(Access {
            user: "alice".into(),
            kind: req(probe),
            broker: 0,
            invoked_s: 2.0,
            completed_s: 2.5,
            outcome,
        })
    };
    // Alice may WRITE between offsets 10 and 20: nothing about groups or the cluster.
    let fine = [
        probe(Probe::DeleteGroups, AccessOutcome::Refused(30)),
        probe(Probe::DescribeAcls, AccessOutcome::Refused(31)),
        probe(Probe::Metadata, AccessOutcome::Allowed),
    ];
    assert!(check(&fine, &p, &settings()).is_empty());
    let served = [probe(Probe::AlterBrokerConfigs, AccessOutcome::Allowed)];
    let f = check(&served, &p, &settings());
    assert_eq!(kinds(&f), ["served-unauthorized"]);
    assert!(f[0].to_string().contains("AlterBrokerConfigs"), "{}", f[0]);
}
