use super::*;
use crate::controller::records::id_text;

/// Broker `id`'s registration, with the feature ranges and first levels it names.
fn register(
    id: u64,
    features: Option<Vec<crate::features::Range>>,
    bootstrap: Option<BTreeMap<String, i16>>,
) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        id,
        host: "127.0.0.1".into(),
        port: 9090 + id as i32,
        incarnation: id * 10,
        listeners: vec![],
        rack: None,
        inter_broker: None,
        features,
        bootstrap,
    }
}

fn registered(n: u64) -> ClusterMetadata {
    let mut m = ClusterMetadata::new();
    for id in 1..=n {
        m.apply(&register(id, None, None));
    }
    m
}

fn create(m: &mut ClusterMetadata, request: u64, name: &str, partitions: i32, rf: i32) -> Outcome {
    m.apply(&MetadataRecord::CreateTopic {
        request,
        name: name.into(),
        id: id_text(request as u128 + 1000),
        partitions,
        replication_factor: rf,
        assignments: None,
        overrides: Default::default(),
    });
    m.outcome(request).cloned().expect("an outcome")
}

#[test]
fn topics_are_placed_on_live_brokers_with_preferred_leaders_taking_turns() {
    let mut m = registered(3);
    assert_eq!(create(&mut m, 1, "a", 3, 3), Outcome::Done);
    let t = &m.topics["a"];
    let leaders: BTreeSet<_> = t.partitions.iter().map(|p| p.replicas[0]).collect();
    assert_eq!(leaders.len(), 3, "{:?}", t.partitions);
    for p in &t.partitions {
        let distinct: BTreeSet<_> = p.replicas.iter().collect();
        assert_eq!(distinct.len(), 3);
    }
    let groups: Vec<_> = t.partitions.iter().map(|p| p.group).collect();
    assert_eq!(groups, vec![1, 2, 3]);
    assert_eq!(
        create(&mut m, 2, "a", 1, 1),
        Outcome::Failed(MetadataError::TopicExists)
    );
    assert!(matches!(
        create(&mut m, 3, "b", 1, 4),
        Outcome::Failed(MetadataError::InvalidReplicationFactor(_))
    ));
    assert!(matches!(create(&mut m, 4, "a_", 1, 1), Outcome::Done));
    assert!(matches!(
        create(&mut m, 5, "a.", 1, 1),
        Outcome::Failed(MetadataError::InvalidTopic(_))
    ));
    // A fenced broker takes no new replicas.
    m.apply(&MetadataRecord::FenceBroker {
        id: 2,
        incarnation: 20,
    });
    assert!(matches!(
        create(&mut m, 6, "c", 1, 3),
        Outcome::Failed(MetadataError::InvalidReplicationFactor(_))
    ));
    assert_eq!(create(&mut m, 7, "c", 4, 2), Outcome::Done);
    assert!(m.topics["c"]
        .partitions
        .iter()
        .all(|p| !p.replicas.contains(&2)));
}

/// Two incremental config changes made from the same configs (through two brokers whose
/// replicas had not applied each other's): the second is refused, not applied over the
/// first, and made again from the newer configs it applies.
#[test]
fn an_incremental_config_change_made_from_replaced_configs_is_refused() {
    let mut m = registered(3);
    create(&mut m, 1, "t", 1, 3);
    let base = m.topics["t"].overrides.clone();
    let with = |k: &str, v: &str, from: &Overrides| {
        let mut o = from.clone();
        o.insert(k.to_string(), v.to_string());
        o
    };
    let alter = |m: &mut ClusterMetadata, request, overrides, base| {
        m.apply(&MetadataRecord::AlterTopicConfig {
            request,
            name: "t".into(),
            overrides,
            base,
        });
        m.outcome(request).cloned()
    };
    let first = with("retention.ms", "3600000", &base);
    assert_eq!(
        alter(&mut m, 2, first.clone(), Some(base.clone())),
        Some(Outcome::Done)
    );
    let second = with("min.insync.replicas", "2", &base);
    assert_eq!(
        alter(&mut m, 3, second, Some(base.clone())),
        Some(Outcome::Failed(MetadataError::ConfigsChanged))
    );
    assert_eq!(m.topics["t"].overrides, first, "the first change stands");
    let again = with("min.insync.replicas", "2", &first);
    assert_eq!(
        alter(&mut m, 4, again.clone(), Some(first)),
        Some(Outcome::Done)
    );
    assert_eq!(m.topics["t"].overrides.len(), 2);
    // A whole replacement (AlterConfigs) has no base: it replaces whatever is there.
    assert_eq!(alter(&mut m, 5, base.clone(), None), Some(Outcome::Done));
    assert_eq!(m.topics["t"].overrides, base);
}

/// Dynamic broker configs live in the metadata: the cluster-wide default for every
/// broker, a broker's own for it alone; an incremental change from replaced configs is
/// refused as a topic's is.
#[test]
fn client_metrics_subscriptions_are_set_compared_and_removed() {
    let mut m = registered(3);
    let set = |k: &str, v: &str| Overrides::from([(k.to_string(), v.to_string())]);
    m.apply(&MetadataRecord::AlterClientMetrics {
        request: 1,
        name: "producers".into(),
        configs: set("metrics", "org.apache.kafka.producer."),
        base: Some(Overrides::new()),
    });
    assert_eq!(m.outcome(1), Some(&Outcome::Done));
    // Made from configs that are no longer those: refused, nothing changed.
    m.apply(&MetadataRecord::AlterClientMetrics {
        request: 2,
        name: "producers".into(),
        configs: set("metrics", "*"),
        base: Some(Overrides::new()),
    });
    assert_eq!(
        m.outcome(2),
        Some(&Outcome::Failed(MetadataError::ConfigsChanged))
    );
    assert_eq!(
        m.client_metrics["producers"]["metrics"],
        "org.apache.kafka.producer."
    );
    // In a snapshot, and gone once its configs are.
    let back: ClusterMetadata = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back.client_metrics, m.client_metrics);
    m.apply(&MetadataRecord::AlterClientMetrics {
        request: 3,
        name: "producers".into(),
        configs: Overrides::new(),
        base: None,
    });
    assert!(m.client_metrics.is_empty());
}

/// Client quotas: each alteration applied alone, kept in a snapshot,
/// and a record proposed again after it landed changes nothing more.
#[test]
fn client_quotas_are_applied_each_alone_and_kept_in_snapshots() {
    use crate::quota::{Alteration, Entity, Name, QuotaKey, Value};
    let mut m = registered(3);
    let alice = Entity {
        user: Some(Name::Named("alice".into())),
        ..Entity::default()
    };
    let set = |e: &Entity, v: Option<f64>| Alteration {
        entity: e.clone(),
        ops: vec![(QuotaKey::ProducerByteRate, v.map(Value))],
    };
    let record = |request, alterations| MetadataRecord::AlterClientQuotas {
        request,
        alterations,
    };
    m.apply(&record(1, vec![set(&alice, Some(1000.0))]));
    assert_eq!(m.outcome(1), Some(&Outcome::ClientQuotas(vec![Ok(())])));
    assert_eq!(
        m.client_quotas.get(&alice, QuotaKey::ProducerByteRate),
        Some(1000.0)
    );
    // The same record again (its proposer did not hear it land): what it did stands.
    m.apply(&record(2, vec![set(&alice, Some(2000.0))]));
    m.apply(&record(1, vec![set(&alice, Some(1000.0))]));
    assert_eq!(
        m.client_quotas.get(&alice, QuotaKey::ProducerByteRate),
        Some(2000.0)
    );
    let back: ClusterMetadata = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back.client_quotas, m.client_quotas);
    m.apply(&record(3, vec![set(&alice, None)]));
    assert!(m.client_quotas.is_empty());
}

#[test]
fn broker_configs_are_the_cluster_defaults_under_each_brokers_own() {
    let mut m = registered(3);
    let set = |k: &str, v: &str| Overrides::from([(k.to_string(), v.to_string())]);
    m.apply(&MetadataRecord::AlterBrokerConfigs {
        request: 1,
        node: None,
        configs: set("log.retention.ms", "3600000"),
        base: Some(Overrides::new()),
    });
    m.apply(&MetadataRecord::AlterBrokerConfigs {
        request: 2,
        node: Some(2),
        configs: set("log.retention.ms", "60000"),
        base: None,
    });
    assert_eq!(m.outcome(2), Some(&Outcome::Done));
    for n in [1, 3] {
        let d = m.dynamic_configs_of(n);
        assert_eq!((d.cluster.len(), d.node.len()), (1, 0), "broker {n}");
    }
    assert_eq!(m.dynamic_configs_of(2).node["log.retention.ms"], "60000");
    m.apply(&MetadataRecord::AlterBrokerConfigs {
        request: 3,
        node: None,
        configs: set("log.retention.bytes", "1000"),
        base: Some(Overrides::new()),
    });
    assert_eq!(
        m.outcome(3),
        Some(&Outcome::Failed(MetadataError::ConfigsChanged))
    );
    assert_eq!(m.cluster_configs, set("log.retention.ms", "3600000"));
}

#[test]
fn a_broker_that_starts_again_leads_nothing_until_it_reports_again() {
    let mut m = registered(3);
    create(&mut m, 1, "t", 2, 3);
    let p0 = m.topics["t"].partitions[0].clone();
    let p1 = m.topics["t"].partitions[1].clone();
    m.apply(&MetadataRecord::Leaders {
        leaders: vec![(p0.group, 2, 4), (p1.group, 3, 4)],
    });
    // The same incarnation registering again (its fence lifted) keeps what it leads.
    m.apply(&MetadataRecord::RegisterBroker {
        id: 2,
        host: "127.0.0.1".into(),
        port: 9092,
        incarnation: 20,
        listeners: vec![],
        rack: None,
        inter_broker: None,
        features: None,
        bootstrap: None,
    });
    assert_eq!(m.partition("t", 0).unwrap().leader, Some(2));
    // A new start of broker 2 (a restart, an emptied directory) leads nothing yet.
    m.apply(&MetadataRecord::RegisterBroker {
        id: 2,
        host: "127.0.0.1".into(),
        port: 9092,
        incarnation: 21,
        listeners: vec![],
        rack: None,
        inter_broker: None,
        features: None,
        bootstrap: None,
    });
    assert_eq!(m.partition("t", 0).unwrap().leader, None);
    assert_eq!(m.partition("t", 0).unwrap().leader_term, 4);
    assert_eq!(m.partition("t", 1).unwrap().leader, Some(3));
    // Its report in the same term is taken again.
    m.apply(&MetadataRecord::Leaders {
        leaders: vec![(p0.group, 2, 4)],
    });
    assert_eq!(m.partition("t", 0).unwrap().leader, Some(2));
}

#[test]
fn outcomes_leaders_deletions_and_growth() {
    let mut m = registered(3);
    create(&mut m, 1, "t", 2, 2);
    // A request proposed twice keeps its first outcome.
    create(&mut m, 1, "t", 2, 2);
    assert_eq!(m.outcome(1), Some(&Outcome::Done));
    let p0 = m.topics["t"].partitions[0].clone();
    let other = *p0.replicas.last().unwrap();
    m.apply(&MetadataRecord::Leaders {
        leaders: vec![(p0.group, other, 3)],
    });
    assert_eq!(m.partition("t", 0).unwrap().leader, Some(other));
    // An older term, or a node that is not a replica, does not move it.
    m.apply(&MetadataRecord::Leaders {
        leaders: vec![(p0.group, p0.replicas[0], 2)],
    });
    assert_eq!(m.partition("t", 0).unwrap().leader, Some(other));
    m.apply(&MetadataRecord::CreatePartitions {
        request: 2,
        name: "t".into(),
        count: 4,
        assignments: None,
    });
    assert_eq!(m.outcome(2), Some(&Outcome::Done));
    assert_eq!(m.topics["t"].partitions.len(), 4);
    assert!(m.topics["t"]
        .partitions
        .iter()
        .all(|p| p.replicas.len() == 2));
    let id = m.topics["t"].id;
    m.apply(&MetadataRecord::DeleteTopic {
        request: 3,
        name: "t".into(),
    });
    assert!(m.topics.is_empty() && m.groups.is_empty());
    assert!(m.deleted.contains(&id));
    m.apply(&MetadataRecord::AllocateProducerIds { request: 4 });
    m.apply(&MetadataRecord::AllocateProducerIds { request: 5 });
    assert_eq!(m.outcome(4), Some(&Outcome::ProducerIds(0, 1000)));
    assert_eq!(m.outcome(5), Some(&Outcome::ProducerIds(1000, 2000)));
}

#[test]
fn a_security_change_proposed_again_does_not_undo_a_later_one() {
    use crate::security::scram::{Credential, Mechanism};
    use crate::security::SecurityChange;
    let set = |request, pw: &str| MetadataRecord::AlterSecurity {
        request,
        changes: vec![SecurityChange::SetCredential {
            user: "u".into(),
            credential: Credential::derive(Mechanism::Sha256, pw.as_bytes(), vec![1; 16], 4096)
                .unwrap(),
        }],
    };
    let mut m = ClusterMetadata::new();
    m.apply(&set(1, "one"));
    m.apply(&set(2, "two"));
    m.apply(&set(1, "one"));
    let c = m.security.credential("u", Mechanism::Sha256).unwrap();
    assert!(c.verify_password(b"two"));
    assert_eq!(
        m.outcome(1),
        Some(&Outcome::Security(vec![Ok(crate::security::Applied::Done)]))
    );
}

#[test]
fn a_level_is_finalized_only_if_every_registered_broker_supports_it_and_survives_a_snapshot() {
    use crate::features::{Range, Update, UpgradeType, STILLWATER_VERSION};
    let mut m = registered(2);
    // Broker 3 supports group.version 0 only.
    let narrow = |incarnation| MetadataRecord::RegisterBroker {
        id: 3,
        host: "127.0.0.1".into(),
        port: 9093,
        incarnation,
        listeners: vec![],
        rack: None,
        inter_broker: None,
        features: Some(vec![
            Range {
                name: "group.version".into(),
                min: 0,
                max: 0,
            },
            Range {
                name: STILLWATER_VERSION.into(),
                min: 1,
                max: 1,
            },
        ]),
        bootstrap: None,
    };
    m.apply(&narrow(30));
    let lower = |request, level, upgrade| MetadataRecord::UpdateFeatures {
        request,
        updates: vec![Update {
            name: "group.version".into(),
            level,
            upgrade,
        }],
    };
    // Broker 3 cannot run group.version 1, which the cluster runs (unrecorded): not registered.
    assert!(!m.brokers.contains_key(&3));
    m.applying_end = 40;
    m.apply(&lower(1, 0, UpgradeType::SafeDowngrade));
    assert_eq!(m.outcome(1), Some(&Outcome::Done));
    assert_eq!(
        (m.features.level("group.version"), m.features.epoch),
        (0, 40)
    );
    // Now it can: registered, and raising the level again is refused for its sake.
    m.apply(&narrow(31));
    assert!(m.brokers.contains_key(&3));
    m.applying_end = 41;
    m.apply(&lower(2, 1, UpgradeType::Upgrade));
    match m.outcome(2) {
        Some(Outcome::Failed(MetadataError::FeatureRefused(r))) => {
            assert_eq!(r.why, "Broker 3 only supports versions 0-0")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (m.features.level("group.version"), m.features.epoch),
        (0, 40)
    );
    // A record proposed again after it landed does nothing more.
    m.applying_end = 42;
    m.apply(&lower(1, 0, UpgradeType::SafeDowngrade));
    assert_eq!(m.features.epoch, 40);
    // Kept by a snapshot.
    let json = serde_json::to_string(&m).unwrap();
    let back: ClusterMetadata = serde_json::from_str(&json).unwrap();
    assert_eq!(back.features, m.features);
    assert_eq!(back.brokers[&3].features, m.brokers[&3].features);
    // A broker registered before brokers said their ranges: the ranges of those versions.
    let old: BrokerInfo = serde_json::from_str(
        r#"{"id":9,"host":"h","port":1,"endpoints":[],"incarnation":1,"fenced":false,"rack":null,"inter_broker":null}"#,
    )
    .unwrap();
    assert_eq!(old.features, crate::features::supported_before_ranges());
}

#[test]
fn a_new_cluster_starts_at_the_levels_its_first_broker_asks_for_and_an_old_one_does_not() {
    use crate::features::{initial_levels, supported, STILLWATER_VERSION};
    let newest = initial_levels("").unwrap();
    // A new cluster: the first broker's levels, at the record's offset.
    let mut m = ClusterMetadata::new();
    m.applying_end = 3;
    m.apply(&register(1, Some(supported()), Some(newest.clone())));
    assert_eq!(m.features.level(STILLWATER_VERSION), 2);
    assert_eq!(m.features.epoch, 3);
    // The next brokers' ask nothing more, even for other levels.
    m.applying_end = 4;
    let older = initial_levels("stillwater.version=1,group.version=0").unwrap();
    m.apply(&register(2, Some(supported()), Some(older.clone())));
    assert_eq!(
        (m.features.level(STILLWATER_VERSION), m.features.epoch),
        (2, 3)
    );
    // Configured lower: a new cluster at those levels.
    let mut m = ClusterMetadata::new();
    m.apply(&register(1, Some(supported()), Some(older)));
    assert_eq!(m.features.level(STILLWATER_VERSION), 1);
    assert_eq!(m.features.level("group.version"), 0);
    // A cluster formed by brokers of a version before levels, whose first registration asks
    // for none: a broker of this version registering later does not raise anything.
    let mut m = registered(2);
    m.apply(&register(3, Some(supported()), Some(newest.clone())));
    assert_eq!(m.features, crate::features::Finalized::default());
    // Levels outside the first broker's own ranges: refused, nothing finalized.
    let mut m = ClusterMetadata::new();
    m.apply(&register(
        1,
        Some(crate::features::supported_before_ranges()),
        Some(newest),
    ));
    assert_eq!(m.features, crate::features::Finalized::default());
    assert!(m.brokers.contains_key(&1));
}
