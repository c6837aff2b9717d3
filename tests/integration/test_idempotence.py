"""Idempotent producers, as clients configure them by default: librdkafka with
`enable.idempotence=true` (five requests in flight, retries, acks=all) across a broker SIGKILL
and restart, and kafka-python 3's `KafkaProducer()` with no settings at all. Every message sent
is stored exactly once."""

import threading
import time

import pytest

import clients


def consume_values(bootstrap, topic, partitions):
    consumed, _ = clients.consume_all(bootstrap, topic, partitions)
    return [r[2] for p in partitions for r in consumed[p]]


@pytest.mark.timeout(240)
def test_idempotent_librdkafka_producer_across_a_broker_crash_writes_each_message_once(make_broker):
    b = make_broker()
    topic = "exactly-once-each"
    clients.create_topics(b.bootstrap, {topic: 3})
    p = clients.producer(b.bootstrap, **{
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 5,
        "batch.num.messages": 50,
        "message.timeout.ms": 120_000,
        "retry.backoff.ms": 100,
    })
    delivered, errors = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append((err, msg.value()))

    total = 20_000
    crashed = threading.Event()

    def crash_midway():
        while len(delivered) < total // 3:
            time.sleep(0.01)
        b.kill()
        crashed.set()
        time.sleep(1)
        b.start()

    killer = threading.Thread(target=crash_midway)
    killer.start()
    for i in range(total):
        value = f"m-{i:06d}".encode()
        while True:
            try:
                p.produce(topic, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(150) == 0, "messages left undelivered"
    killer.join()
    assert crashed.is_set()
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:3]}"
    values = consume_values(b.bootstrap, topic, [0, 1, 2])
    counts = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    duplicates = {v: n for v, n in counts.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} messages stored more than once, e.g. {list(duplicates.items())[:5]}"
    missing = total - len(counts)
    assert missing == 0, f"{missing} acknowledged messages missing"


def test_kafka_python_producer_with_its_defaults(broker):
    from kafka import KafkaProducer

    topic = "python-defaults"
    clients.create_topics(broker.bootstrap, {topic: 2})
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap)  # idempotence on, acks=all
    assert prod.config.get("enable_idempotence", True), "kafka-python 3 enables idempotence"
    futures = [prod.send(topic, value=f"py-{i}".encode()) for i in range(2000)]
    prod.flush(timeout=60)
    metas = [f.get(timeout=60) for f in futures]
    prod.close(timeout=10)
    assert all(m.offset >= 0 for m in metas)
    values = consume_values(broker.bootstrap, topic, [0, 1])
    assert sorted(values) == sorted(f"py-{i}".encode() for i in range(2000))
