"""Helpers around confluent-kafka (librdkafka) for the integration tests.

Consumers here use manual assignment (the group tests have their own members): the Python
wrapper insists on a group.id; auto-commit and offset storing are off so nothing is committed.
"""

import logging
import shutil
import subprocess
import time
import uuid

import pytest

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

# Keep librdkafka from waiting for its long defaults when something is wrong.
# librdkafka's own log lines go through Python logging, so pytest shows them with a
# failing test instead of printing them to the terminal.
COMMON = {
    "socket.timeout.ms": 10000,
    "log.connection.close": False,
    "logger": logging.getLogger("librdkafka"),
}


def admin(bootstrap, **conf):
    return AdminClient({"bootstrap.servers": bootstrap, **COMMON, **conf})


def producer(bootstrap, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "message.timeout.ms": 30000,
        "linger.ms": 10,
        **COMMON,
    }
    base.update(conf)
    return Producer(base)


def consumer(bootstrap, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "group.id": "stillwater-it-" + uuid.uuid4().hex[:8],
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "check.crcs": True,
        "auto.offset.reset": "error",
        **COMMON,
    }
    base.update(conf)
    return Consumer(base)


def create_topics(bootstrap, topics, timeout=30.0, config=None):
    """topics: {name: partitions}, with topic configs `config` for all of them. Creates them
    and waits until metadata shows every partition with a leader."""
    a = admin(bootstrap)
    futures = a.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1, config=config or {})
         for name, n in topics.items()],
        operation_timeout=10,
        request_timeout=timeout,
    )
    for name, f in futures.items():
        f.result(timeout=timeout)  # raises KafkaException on error
    for name, n in topics.items():
        wait_for_topic(a, name, n, timeout)
    return a


def wait_for_topic(a, name, partitions, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            md = a.list_topics(topic=name, timeout=10)
        except KafkaException as e:
            # No broker answered Metadata in time (a busy cluster electing many leaders).
            last = e
            time.sleep(0.1)
            continue
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 and p.error is None for p in t.partitions.values()
        ):
            return md
        last = t
        time.sleep(0.1)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions: {last}")


def topic_names(bootstrap, timeout=10):
    return set(admin(bootstrap).list_topics(timeout=timeout).topics)


class DeliveryLog:
    """Delivery reports in the order librdkafka delivered them, each tied to the message
    dict it was produced from (delivery reports do not carry headers back)."""

    def __init__(self):
        self.ok = []  # (partition, offset, message dict)
        self.errors = []  # (error, message dict)

    def callback(self, m):
        def on_delivery(err, msg):
            if err is not None:
                self.errors.append((err, m))
            else:
                self.ok.append((msg.partition(), msg.offset(), m))
        return on_delivery

    def by_partition(self):
        """{partition: [(offset, key, value, headers, timestamp-or-None)]} in delivery order."""
        out = {}
        for part, off, m in self.ok:
            out.setdefault(part, []).append(
                (off, m.get("key"), m.get("value"), norm_headers(m.get("headers")),
                 m.get("timestamp")))
        return out


def norm_headers(h):
    """librdkafka gives None for "no headers"; compare as a list of (str, bytes|None)."""
    return [] if not h else [(k, v) for k, v in h]


def produce_all(p, topic, messages, log, flush_timeout=120.0):
    """messages: iterable of dicts with key/value/headers (and optional partition,
    timestamp). Produces everything, recording deliveries in `log`, and flushes."""
    for m in messages:
        kwargs = {"key": m.get("key"), "value": m.get("value"), "on_delivery": log.callback(m)}
        if m.get("headers"):
            kwargs["headers"] = m["headers"]
        if m.get("partition") is not None:
            kwargs["partition"] = m["partition"]
        if m.get("timestamp") is not None:
            kwargs["timestamp"] = m["timestamp"]
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(flush_timeout)
    assert left == 0, f"{left} messages still undelivered after {flush_timeout}s"


def watermarks(c, topic, partitions, timeout=10.0):
    return {
        p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
        for p in partitions
    }


def consume_all(bootstrap, topic, partitions, timeout=90.0, **conf):
    """Read every partition from the beginning up to its high watermark (taken first).
    Returns {partition: [(offset, key, value, headers, timestamp), ...]}."""
    c = consumer(bootstrap, **conf)
    try:
        marks = watermarks(c, topic, partitions)
        out = {p: [] for p in partitions}
        pending = {p for p in partitions if marks[p][1] > marks[p][0]}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                got = {p: len(v) for p, v in out.items()}
                raise AssertionError(
                    f"timed out consuming {topic}: got {got}, watermarks {marks}")
            for msg in c.consume(num_messages=1000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if msg.partition() in pending and msg.offset() >= marks[msg.partition()][1]:
                            pending.discard(msg.partition())
                        continue
                    raise KafkaException(err)
                p = msg.partition()
                out[p].append(
                    (msg.offset(), msg.key(), msg.value(), norm_headers(msg.headers()),
                     msg.timestamp()[1])
                )
                if msg.offset() + 1 >= marks[p][1]:
                    pending.discard(p)
        return out, marks
    finally:
        c.close()


def roundtrip(bootstrap, topic, n=20, tag="rt", timeout=30.0):
    """A well-behaved client produces n messages (acks=all) to partition 0 of `topic` and
    reads them back. Returns the delivered offsets."""
    p = producer(bootstrap, **{"message.timeout.ms": int(timeout * 1000)})
    log = DeliveryLog()
    values = [f"{tag}-{i}-{uuid.uuid4().hex}".encode() for i in range(n)]
    produce_all(p, topic, ({"key": b"k", "value": v, "partition": 0} for v in values), log,
                flush_timeout=timeout)
    assert not log.errors, log.errors
    offsets = [off for _, off, _ in log.ok]
    got, _ = consume_all(bootstrap, topic, [0], timeout=timeout)
    by_offset = {rec[0]: rec[2] for rec in got[0]}
    for off, v in zip(offsets, values):
        assert by_offset.get(off) == v, f"offset {off}: expected {v!r}, got {by_offset.get(off)!r}"
    return offsets


# ---------------------------------------------------------------------------
# kcat (a system package: `cargo xtask test` installs it where it can, and says so where it
# cannot; the tests that need it are skipped then).

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
needs_kcat = pytest.mark.skipif(
    KCAT is None, reason="kcat is not installed (sudo apt-get install kcat)")


def run_kcat(args, input_text=None, timeout=60, check=True):
    """Run kcat; its stdout (and, with check=False, the whole CompletedProcess)."""
    r = subprocess.run(
        [KCAT, *args], input=input_text, capture_output=True, text=True, timeout=timeout)
    if not check:
        return r
    assert r.returncode == 0, f"kcat {args} exited {r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"
    return r.stdout
