use super::*;

#[test]
fn defaults_start_one_node_on_9092_with_data() {
    let c = Config::load(&Sources::default()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.advertised(), ("127.0.0.1".to_string(), 9092));
}

#[test]
fn later_sources_win_and_values_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    std::fs::write(
        &path,
        "node_id = 3\ndata_dir = \"/file\"\nio_deadline_ms = 100\n",
    )
    .unwrap();
    let c = Config::load(&Sources {
        file: Some(path),
        env: vec![
            ("data_dir".into(), "/env".into()),
            ("node_id".into(), "4".into()),
        ],
        flags: vec![("data-dir".into(), "/flag".into())],
    })
    .unwrap();
    assert_eq!(c.node_id, 4);
    assert_eq!(c.data_dir, PathBuf::from("/flag"));
    assert_eq!(c.io_deadline_ms, 100);
}

#[test]
fn every_field_is_a_known_key() {
    let keys = Config::keys();
    for k in [
        "listen",
        "advertised_listener",
        "data_dir",
        "io_deadline_ms",
        "worker_threads",
    ] {
        assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
    }
}

#[test]
fn bad_settings_are_named() {
    let err = Config::load(&Sources {
        flags: vec![("no_such_key".into(), "1".into())],
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("no_such_key"), "{err}");
    let err = Config::load(&Sources {
        env: vec![("io_engine".into(), "floppy".into())],
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("floppy"), "{err}");
    let err = Config::load(&Sources {
        flags: vec![("listen".into(), "nowhere".into())],
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("listen"), "{err}");
    for rack in [" a", "a\nb", &"r".repeat(256)] {
        let err = Config::load(&Sources {
            env: vec![("broker_rack".into(), rack.to_string())],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("broker_rack"), "{err}");
    }
    let c = Config::load(&Sources {
        env: vec![("broker_rack".into(), "eu-west-1a".into())],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.broker_rack, "eu-west-1a");
}

#[test]
fn a_broken_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "node_id = \"x\"\n").unwrap();
    let err = Config::load(&Sources {
        file: Some(path.clone()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("bad.toml"), "{err}");
}

fn with_listeners(settings: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(&Sources {
        flags: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Sources::default()
    })
}

#[test]
fn without_listeners_there_is_one_plaintext_listener_on_listen() {
    let c = with_listeners(&[
        ("listen", "0.0.0.0:9093"),
        ("advertised_listener", "kafka.example:19093"),
    ])
    .unwrap();
    let specs = c.listener_specs().unwrap();
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].name, "PLAINTEXT");
    assert_eq!(specs[0].protocol, SecurityProtocol::Plaintext);
    assert_eq!(specs[0].bind.to_string(), "0.0.0.0:9093");
    assert_eq!(
        c.advertised_endpoints(),
        vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: "kafka.example".into(),
            port: 19093
        }]
    );
}

#[test]
fn several_listeners_each_with_its_protocol_and_advertised_address() {
    let c = with_listeners(&[
        ("listeners", "CLIENT://:9093, INTERNAL://127.0.0.1:9094"),
        (
            "listener_security_protocol_map",
            "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT",
        ),
        ("advertised_listeners", "CLIENT://broker1.example:9093"),
    ])
    .unwrap();
    let specs = c.listener_specs().unwrap();
    assert_eq!(
        specs
            .iter()
            .map(|s| (s.name.as_str(), s.bind.to_string()))
            .collect::<Vec<_>>(),
        vec![
            ("CLIENT", "0.0.0.0:9093".to_string()),
            ("INTERNAL", "127.0.0.1:9094".to_string())
        ]
    );
    let endpoints = c.advertised_endpoints();
    assert_eq!(endpoints[0].host, "broker1.example");
    assert_eq!(
        (endpoints[1].host.as_str(), endpoints[1].port),
        ("127.0.0.1", 9094)
    );
    assert_eq!(c.advertised(), ("broker1.example".to_string(), 9093));
    let (listeners, advertised, map) = c.kafka_listener_settings();
    assert_eq!(listeners, "CLIENT://0.0.0.0:9093,INTERNAL://127.0.0.1:9094");
    assert_eq!(
        advertised,
        "CLIENT://broker1.example:9093,INTERNAL://127.0.0.1:9094"
    );
    assert_eq!(map, "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT");
}

#[test]
fn a_listener_named_after_a_protocol_needs_no_map_entry() {
    let c = with_listeners(&[("listeners", "PLAINTEXT://127.0.0.1:9092")]).unwrap();
    assert_eq!(
        c.listener_specs().unwrap()[0].protocol,
        SecurityProtocol::Plaintext
    );
}

#[test]
fn listeners_that_cannot_be_served_are_refused_with_the_reason() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("listeners", "CLIENT://127.0.0.1:9093")],
            "no security protocol",
        ),
        (
            &[
                ("listeners", "A://127.0.0.1:9093,A://127.0.0.1:9094"),
                ("listener_security_protocol_map", "A:PLAINTEXT"),
            ],
            "twice",
        ),
        (
            &[
                ("listeners", "A://127.0.0.1:9093,B://127.0.0.1:9093"),
                ("listener_security_protocol_map", "A:PLAINTEXT,B:PLAINTEXT"),
            ],
            "same port",
        ),
        (&[("listeners", "127.0.0.1:9093")], "not NAME://host:port"),
        (
            &[
                ("listeners", "A://127.0.0.1"),
                ("listener_security_protocol_map", "A:PLAINTEXT"),
            ],
            "no port",
        ),
        (
            &[
                ("listeners", "A://kafka.example:9093"),
                ("listener_security_protocol_map", "A:PLAINTEXT"),
            ],
            "not an IP address",
        ),
        (
            &[
                ("listeners", "A://127.0.0.1:9093"),
                ("listener_security_protocol_map", "A:TLS"),
            ],
            "is not PLAINTEXT, SSL",
        ),
        (
            &[("listeners", "A B://127.0.0.1:9093")],
            "not a listener name",
        ),
        (
            &[
                ("listeners", "A://127.0.0.1:9093"),
                ("listener_security_protocol_map", "A:PLAINTEXT"),
                ("advertised_listeners", "B://x:1"),
            ],
            "not one of the listeners",
        ),
        (
            &[("advertised_listeners", "PLAINTEXT://x:1")],
            "listeners is not",
        ),
        (
            &[
                ("listeners", "PLAINTEXT://127.0.0.1:9093"),
                ("advertised_listener", "x:1"),
            ],
            "both set",
        ),
        (
            &[("listeners", "SASL_SSL://127.0.0.1:9093")],
            "needs ssl_certificate_location",
        ),
        (
            &[("listeners", "SSL://127.0.0.1:9093")],
            "needs ssl_certificate_location",
        ),
        (
            &[
                ("listeners", "SSL://127.0.0.1:9093"),
                ("ssl_certificate_location", "c.pem"),
                ("ssl_key_location", "k.pem"),
                ("ssl_client_auth", "required"),
            ],
            "need ssl_ca_location",
        ),
        (
            &[
                ("listeners", "SSL://127.0.0.1:9093"),
                ("ssl_certificate_location", "c.pem"),
                ("ssl_key_location", "k.pem"),
                ("ssl_client_auth", "sometimes"),
            ],
            "none, requested or required",
        ),
        (
            &[("inter_broker_security_protocol", "SSL")],
            "a single node has no links between brokers",
        ),
        (
            &[
                ("cluster_peers", "1@127.0.0.1:9093,2@127.0.0.1:9094"),
                ("inter_broker_security_protocol", "SSL"),
                ("ssl_certificate_location", "c.pem"),
                ("ssl_key_location", "k.pem"),
            ],
            "checked against ssl_ca_location",
        ),
        (
            &[("inter_broker_security_protocol", "TLS")],
            "PLAINTEXT or SSL",
        ),
    ];
    for (settings, reason) in cases {
        let e = with_listeners(settings).expect_err(reason).to_string();
        assert!(e.contains(reason), "{settings:?}: {e}");
    }
}

#[test]
fn a_listener_on_a_port_the_system_chose_is_advertised_at_it() {
    let mut c = with_listeners(&[
        ("listeners", "A://127.0.0.1:0,B://127.0.0.1:0"),
        ("listener_security_protocol_map", "A:PLAINTEXT,B:PLAINTEXT"),
        ("advertised_listeners", "B://b.example:7"),
    ])
    .unwrap();
    c.advertise_bound(&[
        ("A".into(), "127.0.0.1:40001".parse().unwrap()),
        ("B".into(), "127.0.0.1:40002".parse().unwrap()),
    ]);
    let e = c.advertised_endpoints();
    assert_eq!((e[0].host.as_str(), e[0].port), ("127.0.0.1", 40001));
    assert_eq!((e[1].host.as_str(), e[1].port), ("b.example", 7));
    let mut single = with_listeners(&[("listen", "127.0.0.1:0")]).unwrap();
    single.advertise_bound(&[("PLAINTEXT".into(), "127.0.0.1:40003".parse().unwrap())]);
    assert_eq!(single.advertised(), ("127.0.0.1".to_string(), 40003));
}

#[test]
fn tls_settings_only_for_ssl_listeners() {
    let plain = with_listeners(&[("ssl_client_auth", "required")]).unwrap();
    assert_eq!(plain.tls_settings().unwrap(), None);
    let c = with_listeners(&[
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093",
        ),
        ("ssl_certificate_location", "/etc/b/cert.pem"),
        ("ssl_key_location", "/etc/b/key.pem"),
        ("ssl_ca_location", "/etc/b/ca.pem"),
        ("ssl_client_auth", "requested"),
        ("ssl_reload_interval_ms", "0"),
    ])
    .unwrap();
    let t = c.tls_settings().unwrap().unwrap();
    assert_eq!(t.client_auth, ClientAuth::Requested);
    assert_eq!(t.ca, Some(PathBuf::from("/etc/b/ca.pem")));
    assert_eq!(t.reload_interval, None);
    assert_eq!(t.handshake_timeout, Duration::from_secs(10));
}

#[test]
fn the_brokers_link_on_the_listener_inter_broker_listener_name_names() {
    let peers = ("cluster_peers", "1@10.0.0.1:9094,2@10.0.0.2:9094");
    let c = with_listeners(&[
        peers,
        ("node_id", "1"),
        (
            "listeners",
            "CLIENT://0.0.0.0:9093,REPLICATION://10.0.0.1:9094",
        ),
        (
            "listener_security_protocol_map",
            "CLIENT:SASL_SSL,REPLICATION:SSL",
        ),
        ("inter_broker_listener_name", "REPLICATION"),
        ("ssl_certificate_location", "c.pem"),
        ("ssl_key_location", "k.pem"),
        ("ssl_ca_location", "ca.pem"),
    ])
    .unwrap();
    // Clients are served (and told of) the other listener only.
    let names: Vec<String> = c
        .listener_specs()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["CLIENT"]);
    assert!(c.advertised_endpoints().iter().all(|e| e.name == "CLIENT"));
    // The transport binds the named listener, with mutual TLS for its SSL.
    assert_eq!(
        c.inter_broker_address(),
        Some("10.0.0.1:9094".parse().unwrap())
    );
    assert!(c.tls_settings().unwrap().unwrap().inter_broker);
    let plain = with_listeners(&[
        peers,
        ("node_id", "1"),
        (
            "listeners",
            "CLIENT://0.0.0.0:9093,REPLICATION://10.0.0.1:9094",
        ),
        (
            "listener_security_protocol_map",
            "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT",
        ),
        ("inter_broker_listener_name", "REPLICATION"),
    ])
    .unwrap();
    assert!(plain.tls_settings().unwrap().is_none());

    let base = [
        peers,
        ("node_id", "1"),
        (
            "listeners",
            "CLIENT://0.0.0.0:9093,REPLICATION://10.0.0.1:9094",
        ),
        (
            "listener_security_protocol_map",
            "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT",
        ),
    ];
    let refused = |extra: &[(&str, &str)], reason: &str| {
        let mut settings = base.to_vec();
        settings.extend_from_slice(extra);
        let e = with_listeners(&settings).expect_err(reason).to_string();
        assert!(e.contains(reason), "{extra:?}: {e}");
    };
    refused(
        &[("inter_broker_listener_name", "NOPE")],
        "is not one of the listeners",
    );
    refused(
        &[
            ("inter_broker_listener_name", "REPLICATION"),
            ("inter_broker_security_protocol", "SSL"),
        ],
        "are both set",
    );
    refused(
        &[
            ("inter_broker_listener_name", "REPLICATION"),
            (
                "listeners",
                "CLIENT://0.0.0.0:9093,REPLICATION://10.0.0.1:9095",
            ),
        ],
        "cluster_peers has port 9094",
    );
    refused(
        &[
            ("inter_broker_listener_name", "REPLICATION"),
            (
                "listener_security_protocol_map",
                "CLIENT:PLAINTEXT,REPLICATION:SASL_SSL",
            ),
        ],
        "SASL between brokers is not supported",
    );
    let e = with_listeners(&[
        (
            "listeners",
            "CLIENT://0.0.0.0:9093,REPLICATION://10.0.0.1:9094",
        ),
        (
            "listener_security_protocol_map",
            "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT",
        ),
        ("inter_broker_listener_name", "REPLICATION"),
    ])
    .expect_err("single node")
    .to_string();
    assert!(e.contains("a single node has no links"), "{e}");
}
