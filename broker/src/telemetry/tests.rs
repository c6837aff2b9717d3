use super::*;

/// A clock moved by hand.
struct HandClock(std::sync::Mutex<Instant>);

#[async_trait::async_trait]
impl Clock for HandClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
    fn wall_ms(&self) -> i64 {
        0
    }
    async fn sleep(&self, _: Duration) {}
}

impl HandClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

fn setup(enabled: bool, max_series: usize) -> (Arc<ClientTelemetry>, Arc<HandClock>) {
    let clock = Arc::new(HandClock(std::sync::Mutex::new(Instant::now())));
    let t = ClientTelemetry::new(
        TelemetryConfig {
            enabled,
            max_bytes: 4096,
            max_series,
        },
        clock.clone(),
        EnvRng::seeded(1),
    );
    (t, clock)
}

fn subs(pairs: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, Overrides> {
    pairs
        .iter()
        .map(|(name, kvs)| {
            let c = kvs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (name.to_string(), c)
        })
        .collect()
}

fn asker() -> Asker<'static> {
    Asker {
        client_id: "app-1",
        peer: Some("127.0.0.1:40000".parse().unwrap()),
        software: Some(("apache-kafka-java", "4.1.0")),
    }
}

fn get(
    t: &ClientTelemetry,
    id: Uuid,
    s: &BTreeMap<String, Overrides>,
) -> GetTelemetrySubscriptionsResponse {
    let mut req = GetTelemetrySubscriptionsRequest::default();
    req.client_instance_id = id;
    t.get_subscriptions(&req, asker(), s)
}

fn push(
    t: &ClientTelemetry,
    id: Uuid,
    sid: i32,
    metrics: Vec<u8>,
    terminating: bool,
    s: &BTreeMap<String, Overrides>,
) -> i16 {
    let mut req = PushTelemetryRequest::default();
    req.client_instance_id = id;
    req.subscription_id = sid;
    req.terminating = terminating;
    req.metrics = metrics.into();
    t.push(&req, asker(), s).error_code
}

fn rendered(t: &Arc<ClientTelemetry>) -> String {
    let mut r = prometheus_client::registry::Registry::with_prefix("stillwater");
    r.register_collector(Box::new(t.clone()));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
    out
}

#[test]
fn a_client_is_named_asked_for_its_metrics_and_shown_what_it_pushes() {
    let (t, clock) = setup(true, 100);
    let s = subs(&[(
        "producers",
        &[
            ("metrics", "org.apache.kafka.producer."),
            ("interval.ms", "1000"),
        ],
    )]);
    let first = get(&t, Uuid::nil(), &s);
    assert_eq!(first.error_code, error::NONE);
    let id = first.client_instance_id;
    assert!(!id.is_nil());
    assert_eq!(first.push_interval_ms, 1000);
    assert_eq!(first.accepted_compression_types, vec![4, 3, 1, 2]);
    assert_eq!(first.requested_metrics.len(), 1);
    let sid = first.subscription_id;
    let body = otlp::tests::payload(&[(
        "org.apache.kafka.producer.record.send.total",
        &[("topic", "orders \"eu\"")],
        7.0,
    )]);
    assert_eq!(
        push(&t, id, sid, body.clone(), false, &s),
        error::NONE,
        "the first push after asking is in time"
    );
    assert_eq!(
        push(&t, id, sid, body.clone(), false, &s),
        error::THROTTLING_QUOTA_EXCEEDED
    );
    clock.advance(Duration::from_millis(1000));
    assert_eq!(
        push(&t, id, sid + 1, body.clone(), false, &s),
        error::UNKNOWN_SUBSCRIPTION_ID
    );
    clock.advance(Duration::from_millis(1000));
    assert_eq!(push(&t, id, sid, body, false, &s), error::NONE);
    let text = rendered(&t);
    let line = text
        .lines()
        .find(|l| l.starts_with("stillwater_client_org_apache_kafka_producer_record_send_total{"))
        .unwrap_or_else(|| panic!("no series in\n{text}"));
    assert!(
        line.contains(&format!("client_instance_id=\"{}\"", kafka_uuid(id))),
        "{line}"
    );
    assert!(
        line.contains("client_software_name=\"apache-kafka-java\""),
        "{line}"
    );
    assert!(line.contains(r#"topic="orders \"eu\"""#), "escaped: {line}");
    assert!(line.ends_with(" 7.0"), "{line}");
    assert!(
        text.contains("stillwater_client_telemetry_pushes_total 2"),
        "{text}"
    );
}

#[test]
fn asking_again_within_the_interval_is_throttled_and_a_subscription_change_starts_over() {
    let (t, clock) = setup(true, 100);
    let s = subs(&[("all", &[("metrics", "*"), ("interval.ms", "5000")])]);
    let first = get(&t, Uuid::nil(), &s);
    let id = first.client_instance_id;
    assert_eq!(first.requested_metrics[0].as_str(), "*");
    assert_eq!(get(&t, id, &s).error_code, error::THROTTLING_QUOTA_EXCEEDED);
    clock.advance(Duration::from_millis(5000));
    let again = get(&t, id, &s);
    assert_eq!(again.error_code, error::NONE);
    assert_eq!(
        again.subscription_id, first.subscription_id,
        "the same subscription keeps its id"
    );
    let changed = subs(&[("all", &[("metrics", "org."), ("interval.ms", "2000")])]);
    let after = get(&t, id, &changed);
    assert_eq!(
        after.error_code,
        error::NONE,
        "a new subscription may be asked for at once"
    );
    assert_ne!(after.subscription_id, first.subscription_id);
    assert_eq!(after.push_interval_ms, 2000);
    // Without a subscription: nothing asked, at the default interval.
    let none = get(&t, Uuid::from_u128(5), &BTreeMap::new());
    assert_eq!(
        (none.requested_metrics.len(), none.push_interval_ms),
        (0, 300_000)
    );
}

#[test]
fn pushes_are_checked_in_kafkas_order() {
    let (t, _clock) = setup(true, 100);
    let s = subs(&[("all", &[("metrics", "*")])]);
    let id = get(&t, Uuid::nil(), &s).client_instance_id;
    let sid = get(&t, id, &s).subscription_id; // throttled, but the id is known
    assert_eq!(
        push(&t, Uuid::nil(), sid, vec![], false, &s),
        error::INVALID_REQUEST
    );
    let mut req = PushTelemetryRequest::default();
    req.client_instance_id = id;
    req.subscription_id = get_sid(&t, id, &s);
    req.compression_type = 9;
    assert_eq!(
        t.push(&req, asker(), &s).error_code,
        error::UNSUPPORTED_COMPRESSION_TYPE
    );
    // Terminating skips the interval; after it, nothing more is taken.
    req.compression_type = 0;
    req.metrics = vec![0u8; 5000].into();
    req.terminating = true;
    assert_eq!(
        t.push(&req, asker(), &s).error_code,
        error::TELEMETRY_TOO_LARGE
    );
    req.metrics = otlp::tests::payload(&[("a.b", &[], 1.0)]).into();
    assert_eq!(
        t.push(&req, asker(), &s).error_code,
        error::INVALID_REQUEST,
        "terminated already"
    );
    // Undecodable metrics: INVALID_RECORD, and nothing shown.
    let other = get(&t, Uuid::nil(), &s);
    let code = push(
        &t,
        other.client_instance_id,
        other.subscription_id,
        vec![0xff; 12],
        false,
        &s,
    );
    assert_eq!(code, error::INVALID_RECORD);
    assert!(!rendered(&t).contains("stillwater_client_a_b"));
}

fn get_sid(t: &ClientTelemetry, id: Uuid, s: &BTreeMap<String, Overrides>) -> i32 {
    // The id a subscription has for a client is the same wherever it is computed.
    let parsed = subscriptions::parse_all(s);
    let st = t.state.lock().unwrap();
    let client = &st.instances[&id].client;
    subscription_id(&subscriptions::resolve(&parsed, client), id)
}

#[test]
fn series_and_clients_are_bounded_and_silent_clients_forgotten() {
    let (t, clock) = setup(true, 3);
    let s = subs(&[("all", &[("metrics", "*"), ("interval.ms", "1000")])]);
    let body = otlp::tests::payload(&[("a.one", &[], 1.0), ("a.two", &[], 2.0)]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let g = get(&t, Uuid::nil(), &s);
        assert_eq!(
            push(
                &t,
                g.client_instance_id,
                g.subscription_id,
                body.clone(),
                false,
                &s
            ),
            error::NONE
        );
        ids.push(g.client_instance_id);
    }
    let text = rendered(&t);
    assert!(
        text.contains("stillwater_client_telemetry_series 3"),
        "{text}"
    );
    assert!(
        text.contains("stillwater_client_telemetry_dropped_series_total 1"),
        "{text}"
    );
    // Silent for a minute (three intervals are less): forgotten, series freed.
    clock.advance(MIN_EXPIRY + SWEEP_EVERY);
    let text = rendered(&t);
    assert!(
        text.contains("stillwater_client_telemetry_instances 0"),
        "{text}"
    );
    assert!(
        text.contains("stillwater_client_telemetry_series 0"),
        "{text}"
    );
    // Disabled: answered the same, nothing read (not even a payload that is not OTLP).
    let (off, _) = setup(false, 100);
    let g = get(&off, Uuid::nil(), &s);
    assert_eq!(
        push(
            &off,
            g.client_instance_id,
            g.subscription_id,
            vec![0xff; 9],
            false,
            &s
        ),
        error::NONE
    );
    assert!(rendered(&off).contains("stillwater_client_telemetry_series 0"));
}

#[test]
fn the_instance_cache_forgets_the_longest_silent_when_full() {
    let (t, clock) = setup(true, 10);
    let s = BTreeMap::new();
    let first = get(&t, Uuid::nil(), &s).client_instance_id;
    for _ in 1..MAX_INSTANCES {
        clock.advance(Duration::from_millis(1));
        get(&t, Uuid::nil(), &s);
    }
    assert!(t.state.lock().unwrap().instances.contains_key(&first));
    get(&t, Uuid::nil(), &s);
    let st = t.state.lock().unwrap();
    assert_eq!(st.instances.len(), MAX_INSTANCES);
    assert!(!st.instances.contains_key(&first));
}
