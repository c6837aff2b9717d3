//! Client telemetry (KIP-714) against an in-process broker over the wire: a subscription made
//! with IncrementalAlterConfigs reaches a client through GetTelemetrySubscriptions, its
//! compressed OTLP push shows on the metrics endpoint, bad subscriptions are refused with
//! Kafka's errors, and subscriptions outlive a restart. Volume: a handful of requests; the
//! bounds (clients, series) are unit-tested in the telemetry module.
#![cfg(not(madsim))]

use std::io::Write;
use std::time::Duration;

use broker::protocol::error;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Metric, MetricsData, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum,
};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{restart, start_with, Client};

const CLIENT_METRICS: i8 = 16;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn enabled(c: &mut broker::config::Config) {
    c.client_telemetry_enabled = true;
    c.metrics_listen = "127.0.0.1:0".into();
}

/// IncrementalAlterConfigs on subscription `name`: each `(config, op, value)`.
async fn alter(c: &mut Client, name: &str, ops: &[(&str, i8, Option<&str>)]) -> (i16, String) {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut r = AlterConfigsResource::default();
    r.resource_type = CLIENT_METRICS;
    r.resource_name = s(name);
    r.configs = ops
        .iter()
        .map(|(k, op, v)| {
            let mut a = AlterableConfig::default();
            a.name = s(k);
            a.config_operation = *op;
            a.value = v.map(s);
            a
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![r]);
    let ResponseKind::IncrementalAlterConfigs(resp) = c
        .call(
            ApiKey::IncrementalAlterConfigs,
            1,
            RequestKind::IncrementalAlterConfigs(req),
        )
        .await
    else {
        panic!()
    };
    let r = &resp.responses[0];
    (
        r.error_code,
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

async fn describe(c: &mut Client, name: &str) -> Vec<(String, String, i8)> {
    let mut r = describe_configs_request::DescribeConfigsResource::default();
    r.resource_type = CLIENT_METRICS;
    r.resource_name = s(name);
    let req = DescribeConfigsRequest::default().with_resources(vec![r]);
    let ResponseKind::DescribeConfigs(resp) = c
        .call(
            ApiKey::DescribeConfigs,
            4,
            RequestKind::DescribeConfigs(req),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(resp.results[0].error_code, 0);
    resp.results[0]
        .configs
        .iter()
        .map(|e| {
            (
                e.name.to_string(),
                e.value.as_ref().unwrap().to_string(),
                e.config_source,
            )
        })
        .collect()
}

async fn listed(c: &mut Client) -> Vec<String> {
    let ResponseKind::ListConfigResources(r) = c
        .call(
            ApiKey::ListConfigResources,
            0,
            RequestKind::ListConfigResources(Default::default()),
        )
        .await
    else {
        panic!()
    };
    r.config_resources
        .iter()
        .map(|r| r.resource_name.to_string())
        .collect()
}

/// An OTLP payload of one monotonic sum, gzip-compressed as a client may send it.
fn gzipped_sum(name: &str, topic: &str, value: f64) -> Vec<u8> {
    let dp = NumberDataPoint {
        attributes: vec![KeyValue {
            key: "topic".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(topic.into())),
            }),
            ..Default::default()
        }],
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    };
    let data = MetricsData {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![dp],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&data.encode_to_vec()).unwrap();
    gz.finish().unwrap()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_reaches_a_client_and_its_push_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_with(dir.path(), enabled).await;
    let mut c = Client::connect(running.kafka_addr).await;

    // The client names its software; the APIs are listed when telemetry is on.
    let hello = ApiVersionsRequest::default()
        .with_client_software_name(s("wire-test"))
        .with_client_software_version(s("1.0"));
    let ResponseKind::ApiVersions(v) = c
        .call(ApiKey::ApiVersions, 3, RequestKind::ApiVersions(hello))
        .await
    else {
        panic!()
    };
    for api in [ApiKey::GetTelemetrySubscriptions, ApiKey::PushTelemetry] {
        assert!(
            v.api_keys.iter().any(|k| k.api_key == api as i16),
            "{api:?} listed"
        );
    }

    // Bad subscriptions: Kafka's errors, nothing kept.
    let set = 0;
    for (name, ops, code) in [
        (
            "",
            vec![("metrics", set, Some("a"))],
            error::INVALID_REQUEST,
        ),
        (
            "bad",
            vec![("colour", set, Some("red"))],
            error::INVALID_REQUEST,
        ),
        (
            "bad",
            vec![("interval.ms", set, Some("50"))],
            error::INVALID_REQUEST,
        ),
        (
            "bad",
            vec![("interval.ms", set, Some("often"))],
            error::INVALID_CONFIG,
        ),
        (
            "bad",
            vec![("match", set, Some("hostname=x"))],
            error::INVALID_CONFIG,
        ),
        (
            "bad",
            vec![("match", set, Some("client_id=("))],
            error::INVALID_CONFIG,
        ),
        (
            "bad",
            vec![("interval.ms", 2, Some("100"))],
            error::INVALID_CONFIG,
        ),
    ] {
        let (got, msg) = alter(&mut c, name, &ops).await;
        assert_eq!(got, code, "{name:?} {ops:?}: {msg}");
    }
    assert!(listed(&mut c).await.is_empty());

    // A subscription for this client's software, at a one-second interval.
    let ops = [
        ("metrics", set, Some("org.apache.kafka.producer.")),
        ("interval.ms", set, Some("1000")),
        ("match", set, Some("client_software_name=wire-.*")),
    ];
    assert_eq!(alter(&mut c, "producers", &ops).await.0, 0);
    // Another that matches no one (another client id): it changes nothing for this client.
    let other = [
        ("metrics", set, Some("*")),
        ("match", set, Some("client_id=someone-else")),
    ];
    assert_eq!(alter(&mut c, "others", &other).await.0, 0);
    assert_eq!(listed(&mut c).await, ["others", "producers"]);
    let described = describe(&mut c, "producers").await;
    assert_eq!(
        described,
        [
            ("interval.ms".to_string(), "1000".to_string(), 7),
            ("match".into(), "client_software_name=wire-.*".into(), 7),
            ("metrics".into(), "org.apache.kafka.producer.".into(), 7),
        ]
    );

    let ResponseKind::GetTelemetrySubscriptions(sub) = c
        .call(
            ApiKey::GetTelemetrySubscriptions,
            0,
            RequestKind::GetTelemetrySubscriptions(Default::default()),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(sub.error_code, 0);
    assert_eq!(sub.push_interval_ms, 1000);
    assert_eq!(sub.requested_metrics, [s("org.apache.kafka.producer.")]);
    assert!(!sub.delta_temporality, "cumulative: shown as is");

    let push = PushTelemetryRequest::default()
        .with_client_instance_id(sub.client_instance_id)
        .with_subscription_id(sub.subscription_id)
        .with_compression_type(1)
        .with_metrics(
            gzipped_sum(
                "org.apache.kafka.producer.record.send.total",
                "orders",
                1234.0,
            )
            .into(),
        );
    let ResponseKind::PushTelemetry(pushed) = c
        .call(
            ApiKey::PushTelemetry,
            0,
            RequestKind::PushTelemetry(push.clone()),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(pushed.error_code, 0);
    // At once again: too early.
    let ResponseKind::PushTelemetry(early) = c
        .call(ApiKey::PushTelemetry, 0, RequestKind::PushTelemetry(push))
        .await
    else {
        panic!()
    };
    assert_eq!(early.error_code, error::THROTTLING_QUOTA_EXCEEDED);

    let text = scrape(running.metrics_addr.unwrap()).await;
    let series = text
        .lines()
        .find(|l| l.starts_with("stillwater_client_org_apache_kafka_producer_record_send_total{"))
        .unwrap_or_else(|| panic!("no pushed series in\n{text}"));
    assert!(
        series.contains("client_software_name=\"wire-test\""),
        "{series}"
    );
    assert!(series.contains("topic=\"orders\""), "{series}");
    assert!(series.ends_with(" 1234.0"), "{series}");
    assert!(
        text.contains("stillwater_client_telemetry_throttled_total 1"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"));

    // The subscriptions outlive a restart; deleting every config removes one.
    drop(c);
    let running = restart(running, dir.path(), enabled).await;
    let mut c = Client::connect(running.kafka_addr).await;
    assert_eq!(listed(&mut c).await, ["others", "producers"]);
    let delete = 1;
    let ops = [
        ("metrics", delete, None),
        ("match", delete, None),
        ("interval.ms", delete, None),
    ];
    assert_eq!(alter(&mut c, "producers", &ops).await.0, 0);
    assert_eq!(listed(&mut c).await, ["others"]);
    // Described as Kafka describes one never set: every config at its default.
    assert_eq!(
        describe(&mut c, "producers").await,
        [
            ("interval.ms".to_string(), "300000".to_string(), 5),
            ("match".into(), "".into(), 5),
            ("metrics".into(), "".into(), 5),
        ]
    );
    drop(c);
    running.shutdown().await;
}
