use super::*;

fn defaults() -> LogConfig {
    crate::config::Config::default().topic_defaults()
}

#[test]
fn keys_are_sorted_unique_and_their_defaults_pass_their_own_checks() {
    for w in KEYS.windows(2) {
        assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
    }
    for k in KEYS {
        assert_eq!(
            check(k.name, Some(k.kafka_default)).as_deref(),
            Ok(k.kafka_default),
            "{}",
            k.name
        );
    }
}

#[test]
fn honoured_keys_change_the_log_and_others_refuse_anything_but_the_default() {
    let o = check_all([
        ("retention.ms", Some(" 1000 ")),
        ("segment.bytes", Some("1048576")),
        ("message.timestamp.type", Some("LogAppendTime")),
        ("flush.messages", Some("1")),
    ])
    .unwrap();
    assert_eq!(o["retention.ms"], "1000");
    let c = resolve(defaults(), &o).unwrap();
    assert_eq!(c.retention_ms, 1000);
    assert_eq!(c.segment_bytes, 1 << 20);
    assert_eq!(c.timestamp_type, TimestampType::LogAppendTime);
    let z = resolve(
        defaults(),
        &check_all([("compression.type", Some("zstd"))]).unwrap(),
    );
    assert_eq!(z.unwrap().compression, TopicCompression::Zstd);
    let compacted = resolve(
        defaults(),
        &check_all([
            ("cleanup.policy", Some("compact, delete")),
            ("min.cleanable.dirty.ratio", Some("0.1")),
            ("delete.retention.ms", Some("900")),
            ("min.compaction.lag.ms", Some("5")),
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        compacted.cleanup,
        CleanupPolicy {
            delete: true,
            compact: true
        }
    );
    assert_eq!(compacted.min_cleanable_dirty_ratio, Ratio(100_000));
    assert_eq!(
        (
            compacted.delete_retention_ms,
            compacted.min_compaction_lag_ms
        ),
        (900, 5)
    );
    let lags = check_all([
        ("min.compaction.lag.ms", Some("10")),
        ("max.compaction.lag.ms", Some("5")),
    ])
    .unwrap();
    assert!(resolve(defaults(), &lags).is_err());
    for (k, v) in [
        ("cleanup.policy", "compact,compact"),
        ("cleanup.policy", "forget"),
        ("cleanup.policy", ""),
        ("compression.type", "brotli"),
        ("preallocate", "true"),
        ("segment.jitter.ms", "100"),
        ("min.cleanable.dirty.ratio", "2"),
        ("segment.bytes", "10"),
        ("retention.ms", "-2"),
        ("retention.ms", "soon"),
        ("no.such.key", "1"),
    ] {
        let err = check(k, Some(v)).unwrap_err();
        assert!(err.0.contains(k), "{err} names {k}");
    }
    // Kafka's default of a key that is not supported is accepted, in any spelling.
    assert_eq!(check("preallocate", Some("FALSE")).unwrap(), "false");
    // A compaction setting is kept as Kafka keeps it on a topic that is not compacted.
    assert_eq!(check("delete.retention.ms", Some("900")).unwrap(), "900");
    // Kafka 3 ignores the message format version; it must still look like a version.
    assert_eq!(
        check("message.format.version", Some("0.10.0")).unwrap(),
        "0.10.0"
    );
    assert!(check("message.format.version", Some("3.0-IV1")).is_ok());
    assert!(check("message.format.version", Some("v2")).is_err());
    assert_eq!(
        check("min.cleanable.dirty.ratio", Some("0.10")).unwrap(),
        "0.10"
    );
    assert!(check_all([("retention.ms", Some("1")), ("retention.ms", Some("2"))]).is_err());
}

#[test]
fn the_old_timestamp_bound_yields_to_the_new_ones() {
    let o = check_all([
        ("message.timestamp.difference.max.ms", Some("100")),
        ("message.timestamp.after.max.ms", Some("5")),
    ])
    .unwrap();
    let c = resolve(defaults(), &o).unwrap();
    assert_eq!(
        (c.timestamp_before_max_ms, c.timestamp_after_max_ms),
        (100, 5)
    );
}

#[test]
fn overrides_between_configs_resolve_back_to_the_config() {
    let d = defaults();
    let mut c = d;
    c.retention_bytes = 8192;
    c.segment_ms = 50;
    c.timestamp_type = TimestampType::LogAppendTime;
    let o = overrides_between(&d, &c);
    assert_eq!(o.len(), 3);
    assert_eq!(resolve(d, &o).unwrap(), c);
}

#[test]
fn described_values_name_their_source() {
    let o = check_all([("retention.ms", Some("1000"))]).unwrap();
    let c = resolve(defaults(), &o).unwrap();
    let all = describe(
        &c,
        &o,
        |_| Vec::new(),
        |k| (k.name == "segment.bytes").then(|| "1048576".to_string()),
    );
    assert_eq!(all.len(), KEYS.len());
    let get = |n: &str| all.iter().find(|d| d.key.name == n).unwrap();
    assert_eq!(get("retention.ms").value, "1000");
    assert_eq!(get("retention.ms").synonyms[0].2, Source::DynamicTopic);
    assert_eq!(get("segment.bytes").synonyms[0].2, Source::StaticBroker);
    assert_eq!(get("segment.bytes").synonyms[0].0, "log.segment.bytes");
    assert_eq!(get("preallocate").synonyms[0].2, Source::Default);
    // A default Kafka lists no synonym for: a null broker default, or no broker setting.
    assert_eq!(get("segment.ms").source, Source::Default);
    assert!(get("segment.ms").synonyms.is_empty());
    assert!(get("remote.storage.enable").synonyms.is_empty());
}
