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
