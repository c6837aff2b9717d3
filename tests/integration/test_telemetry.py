"""Client telemetry (KIP-714) with librdkafka (confluent-kafka) and kafka-python: a
client-metrics subscription set with kafka-python's admin client makes a librdkafka producer push
its metrics (compressed as librdkafka chooses), which the broker shows on its metrics endpoint;
with telemetry off (the default) the APIs are not listed and librdkafka pushes nothing.
Volume: 5,000 records of 100 bytes per test."""

import re
import time

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

import clients

SUBSCRIPTION = "rdkafka-producers"


def subscribe(bootstrap, configs):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        resource = ConfigResource(ConfigResourceType.CLIENT_METRICS, SUBSCRIPTION, configs=configs)
        result = admin.alter_configs([resource])
        assert result == {"client_metrics": {SUBSCRIPTION: "OK"}}, result
        described = admin.describe_configs([ConfigResource(ConfigResourceType.CLIENT_METRICS, SUBSCRIPTION)])
        return {k: v["value"] for k, v in described["client_metrics"][SUBSCRIPTION].items()}
    finally:
        admin.close()


def produce_for(bootstrap, seconds, **conf):
    p = clients.producer(bootstrap, **{"enable.metrics.push": True, "client.id": "rdkafka-telemetry", **conf})
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        for _ in range(500):
            p.produce("telemetry", value=b"x" * 100)
            sent += 1
        p.poll(0.2)
        time.sleep(0.3)
    assert p.flush(30) == 0
    return p, sent


def test_a_subscription_makes_librdkafka_push_its_metrics(make_broker):
    broker = make_broker(extra_args=["--set", "client_telemetry_enabled=true"])
    clients.create_topics(broker.bootstrap, {"telemetry": 2})
    described = subscribe(broker.bootstrap, {
        "metrics": "org.apache.kafka.producer.",
        "interval.ms": "1000",
        "match": "client_id=rdkafka-.*",
    })
    assert described["interval.ms"] == "1000", described
    p, sent = produce_for(broker.bootstrap, 6)
    assert sent >= 5_000
    try:
        deadline = time.monotonic() + 30
        series = []
        while time.monotonic() < deadline and not series:
            text = broker.metrics_text()
            series = [line for line in text.splitlines()
                      if line.startswith("stillwater_client_org_apache_kafka_producer_")
                      and 'client_id="rdkafka-telemetry"' in line]
            time.sleep(0.5)
        assert series, "no pushed producer metric:\n" + text[-3000:]
        # librdkafka names its software; every series is of this producer's one instance.
        ids = {re.search(r'client_instance_id="([^"]+)"', s).group(1) for s in series}
        assert len(ids) == 1, ids
        assert all('client_software_name="' in s for s in series)
        assert broker.metric("stillwater_client_telemetry_refused_total") == 0
        assert broker.metric("stillwater_client_telemetry_pushes_total") >= 1
    finally:
        p.flush(10)


def test_telemetry_off_is_not_listed_and_nothing_is_pushed(make_broker):
    broker = make_broker()
    clients.create_topics(broker.bootstrap, {"telemetry": 1})
    subscribe(broker.bootstrap, {"metrics": "*", "interval.ms": "500"})
    p, _ = produce_for(broker.bootstrap, 3)
    p.flush(10)
    requests = broker.metrics()
    text = broker.metrics_text()
    assert "stillwater_client_org_apache" not in text
    assert broker.metric("stillwater_client_telemetry_pushes_total") == 0
    assert not any("PushTelemetry" in str(k) or "GetTelemetrySubscriptions" in str(k)
                   for k in requests), "telemetry requests sent though not listed"
