"""Produce and consume through real third-party clients: librdkafka (confluent-kafka),
kcat and kafka-python. Data must come back byte for byte, in order, and survive a restart."""

import random
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

import clients

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
N_MESSAGES = 10_000
PARTITIONS = 3


def short(x, n=120):
    r = repr(x)
    return r if len(r) <= n else r[:n] + f"...({len(r)} chars)"


def generate_messages(n, seed, base_ts):
    """Keyed messages with headers; a mix of incompressible, compressible and
    degenerate payloads, a few null keys and null values, duplicate header keys and null
    header values. No empty (zero-length) byte strings: clients differ on whether they
    hand those back as b"" or None."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        key = f"key-{i % 101}-".encode() + bytes(rnd.randrange(1, 256) for _ in range(rnd.randrange(0, 6)))
        if i % 503 == 17:
            key = None
        kind = i % 4
        if i % 1009 == 5:
            value = None
        elif kind == 0:
            value = rnd.randbytes(rnd.randrange(1, 700))
        elif kind == 1:
            value = (f"message {i} of {n} " * rnd.randrange(1, 60)).encode()
        elif kind == 2:
            value = bytes(range(256)) * rnd.randrange(1, 5)
        else:
            value = b"\x00" * rnd.randrange(1, 1500)
        headers = [("seq", str(i).encode()), ("bin", rnd.randbytes(rnd.randrange(1, 24)))]
        if i % 7 == 0:
            headers.append(("seq", b"duplicate key"))
        if i % 11 == 0:
            headers.append(("null-value", None))
        if i % 13 == 0:
            headers = []
        # Explicit CreateTime timestamps, so they can be checked too; not monotonic on purpose.
        ts = base_ts + i * 3 - (i % 5) * 7
        out.append({"key": key, "value": value, "headers": headers, "timestamp": ts})
    return out


def check_against_deliveries(delivered, consumed, partitions):
    """Consumed data must equal what the delivery reports said, partition by partition,
    in offset order, with dense offsets from 0."""
    for p in partitions:
        want = sorted(delivered.get(p, []))
        got = consumed[p]
        assert [r[0] for r in want] == list(range(len(want))), (
            f"partition {p}: delivered offsets not dense from 0")
        assert len(got) == len(want), f"partition {p}: consumed {len(got)}, delivered {len(want)}"
        for w, g in zip(want, got):
            assert g == w, f"partition {p} offset {w[0]}: consumed {short(g)}\n expected {short(w)}"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_restart(broker, codec):
    topic = f"codec-{codec}"
    clients.create_topics(broker.bootstrap, {topic: PARTITIONS})

    base_ts = (int(time.time()) - 600) * 1000
    messages = generate_messages(N_MESSAGES, seed=CODECS.index(codec), base_ts=base_ts)
    p = clients.producer(
        broker.bootstrap,
        **{"compression.type": codec, "linger.ms": 20, "batch.num.messages": 2000},
    )
    log = clients.DeliveryLog()
    clients.produce_all(p, topic, messages, log)
    assert not log.errors, f"{len(log.errors)} delivery errors, first: {log.errors[:3]}"
    assert len(log.ok) == N_MESSAGES

    # Per partition, the broker assigned offsets in produce order.
    produced_seq = {}
    for part, off, _ in log.ok:
        produced_seq.setdefault(part, []).append(off)
    for part, offs in produced_seq.items():
        assert offs == sorted(offs), f"partition {part}: offsets not in delivery order"
    assert set(produced_seq) == set(range(PARTITIONS)), "keys should spread over all partitions"

    delivered = log.by_partition()
    consumed, marks = clients.consume_all(broker.bootstrap, topic, range(PARTITIONS))
    for part in range(PARTITIONS):
        assert marks[part] == (0, len(delivered[part])), f"partition {part} watermarks {marks[part]}"
    check_against_deliveries(delivered, consumed, range(PARTITIONS))

    # And what we sent is what was delivered (order within the stream of sends).
    sent_triples = sorted((repr(m["key"]), repr(m["value"]), repr(m["headers"])) for m in messages)
    got_triples = sorted(
        (repr(r[1]), repr(r[2]), repr(r[3])) for recs in consumed.values() for r in recs)
    assert sent_triples == got_triples, "consumed messages differ from the produced ones"

    p.flush(5)
    del p

    # Restart on the same data directory and ports: everything reads back identically.
    broker.restart()
    again, marks_again = clients.consume_all(broker.bootstrap, topic, range(PARTITIONS))
    assert marks_again == marks
    for part in range(PARTITIONS):
        assert again[part] == consumed[part], f"partition {part} differs after restart"

    # And the restarted broker takes new writes after the recovered ones.
    offs = clients.roundtrip(broker.bootstrap, topic, n=5, tag="after-restart")
    assert offs[0] == marks[0][1]


def test_metadata_lists_broker_and_topics(broker):
    a = clients.create_topics(broker.bootstrap, {"meta-a": 2, "meta-b": 1})
    md = a.list_topics(timeout=10)
    assert list(md.brokers) == [1], md.brokers
    b = md.brokers[1]
    assert (b.host, b.port) == ("127.0.0.1", broker.port)
    assert md.controller_id == 1, "AdminClient needs the controller id to send CreateTopics"
    assert {"meta-a", "meta-b"} <= set(md.topics)
    assert sorted(md.topics["meta-a"].partitions) == [0, 1]
    for part in md.topics["meta-a"].partitions.values():
        assert part.leader == 1 and list(part.replicas) == [1] and list(part.isrs) == [1]


def test_advertised_listener_defaults_to_listen(make_broker):
    b = make_broker(advertise=False)
    md = clients.admin(b.bootstrap).list_topics(timeout=10)
    assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", b.port)]


def test_create_existing_topic_fails(broker):
    clients.create_topics(broker.bootstrap, {"dup": 1})
    a = clients.admin(broker.bootstrap)  # keep a reference: the future dies with the client
    fut = a.create_topics([clients.NewTopic("dup", num_partitions=1, replication_factor=1)])["dup"]
    with pytest.raises(KafkaException) as e:
        fut.result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_auto_create_on_produce(broker):
    offs = clients.roundtrip(broker.bootstrap, "auto-created", n=3, tag="auto")
    assert offs == [0, 1, 2]
    assert "auto-created" in clients.topic_names(broker.bootstrap)


# ---------------------------------------------------------------------------
# kcat


run_kcat = clients.run_kcat


@clients.needs_kcat
@pytest.mark.timeout(120)
def test_kcat(broker):
    topic = "kcat-topic"
    clients.create_topics(broker.bootstrap, {topic: 1})

    listing = run_kcat(["-b", broker.bootstrap, "-L"])
    assert f"broker 1 at {broker.bootstrap}" in listing, listing
    assert f'topic "{topic}" with 1 partitions' in listing, listing

    lines = [f"key{i}:value {i} {'x' * (i % 50)}" for i in range(200)]
    run_kcat(["-b", broker.bootstrap, "-t", topic, "-p", "0", "-P", "-K", ":", "-X", "acks=all"],
             input_text="\n".join(lines) + "\n")

    out = run_kcat(["-b", broker.bootstrap, "-t", topic, "-C", "-e", "-o", "beginning",
                    "-f", "%p|%o|%k|%s\n"])
    got = [line.split("|", 3) for line in out.splitlines()]
    assert len(got) == len(lines), out[-2000:]
    for i, (part, off, key, value) in enumerate(got):
        assert (part, off) == ("0", str(i))
        assert f"{key}:{value}" == lines[i]

    # What kcat wrote, librdkafka via Python reads identically.
    consumed, _ = clients.consume_all(broker.bootstrap, topic, [0])
    assert [f"{r[1].decode()}:{r[2].decode()}" for r in consumed[0]] == lines


# ---------------------------------------------------------------------------
# kafka-python


@pytest.mark.timeout(120)
def test_kafka_python(broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTopicPartition

    topic = "kafka-python-topic"  # auto-created by the producer's metadata request
    prod = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks="all",
        enable_idempotence=False,  # the broker has no InitProducerId
        compression_type="gzip",
        request_timeout_ms=15000,
        max_block_ms=30000,
        linger_ms=5,
    )
    sent = []
    futures = []
    for i in range(500):
        key = f"kp-{i % 10}".encode()
        value = f"kafka-python value {i} ".encode() * (1 + i % 5)
        headers = [("i", str(i).encode())]
        sent.append((key, value, headers))
        futures.append(prod.send(topic, key=key, value=value, headers=headers))
    prod.flush(timeout=60)
    metas = [f.get(timeout=60) for f in futures]
    prod.close(timeout=10)

    cons = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=30000,
        check_crcs=True,
    )
    try:
        parts = sorted(cons.partitions_for_topic(topic) or [])
        assert parts, "topic not found by kafka-python"
        tps = [KTopicPartition(topic, p) for p in parts]
        cons.assign(tps)
        cons.seek_to_beginning(*tps)
        got = {}
        deadline = time.monotonic() + 60
        while sum(len(v) for v in got.values()) < len(sent):
            assert time.monotonic() < deadline, f"timed out, got {sum(len(v) for v in got.values())}"
            for tp, recs in cons.poll(timeout_ms=500).items():
                for r in recs:
                    got.setdefault(tp.partition, []).append(
                        (r.offset, r.key, r.value, [(k, v) for k, v in r.headers]))
    finally:
        cons.close()

    expected = {}
    for meta, (key, value, headers) in zip(metas, sent):
        expected.setdefault(meta.partition, []).append((meta.offset, key, value, headers))
    for part, recs in expected.items():
        assert [r[0] for r in recs] == sorted(r[0] for r in recs)
        assert got.get(part) == sorted(recs), f"partition {part} differs"

    # librdkafka reads what kafka-python wrote.
    consumed, _ = clients.consume_all(broker.bootstrap, topic, parts)
    for part, recs in expected.items():
        assert [(r[0], r[1], r[2], r[3]) for r in consumed[part]] == sorted(recs)


# ---------------------------------------------------------------------------
# ListOffsets


def test_list_offsets(broker):
    topic = "timestamps"
    clients.create_topics(broker.bootstrap, {topic: 1})
    base = (int(time.time()) - 3600) * 1000  # an hour ago, in ms
    stamps = [base + i * 1000 for i in range(10)]
    p = clients.producer(broker.bootstrap, **{"linger.ms": 0})
    log = clients.DeliveryLog()
    for i, ts in enumerate(stamps):
        # One produce and flush per message, so each lands in its own batch.
        clients.produce_all(p, topic, [{"key": b"t", "value": f"at {ts}".encode(),
                                        "partition": 0, "timestamp": ts}], log)
    assert [off for _, off, _ in log.ok] == list(range(10))
    consumed, _ = clients.consume_all(broker.bootstrap, topic, [0])
    assert [r[4] for r in consumed[0]] == stamps, "CreateTime timestamps not preserved"

    def check(c):
        tp = TopicPartition(topic, 0)
        assert c.get_watermark_offsets(tp, timeout=10, cached=False) == (0, 10)

        def lookup(ts):
            res = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert res[0].error is None, res[0].error
            return res[0].offset

        assert lookup(base - 10_000) == 0
        assert lookup(base) == 0
        assert lookup(base + 1) == 1
        assert lookup(base + 2500) == 3
        assert lookup(base + 3000) == 3
        assert lookup(stamps[-1]) == 9
        assert lookup(stamps[-1] + 1) == -1  # no such message: end / -1

    c = clients.consumer(broker.bootstrap)
    try:
        check(c)
    finally:
        c.close()

    broker.restart()  # the time index is rebuilt or reloaded
    c = clients.consumer(broker.bootstrap)
    try:
        check(c)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# DeleteTopics


def test_delete_topics(broker):
    a = clients.create_topics(broker.bootstrap, {"doomed": 2, "kept": 1})
    clients.roundtrip(broker.bootstrap, "doomed", n=3, tag="doomed")
    futures = a.delete_topics(["doomed"], operation_timeout=10, request_timeout=30)
    futures["doomed"].result(timeout=30)

    deadline = time.monotonic() + 10
    while "doomed" in clients.topic_names(broker.bootstrap):
        assert time.monotonic() < deadline, "deleted topic still in metadata"
        time.sleep(0.2)
    assert "kept" in clients.topic_names(broker.bootstrap)

    # Deleting an unknown topic is an error, not a hang.
    fut = a.delete_topics(["never-existed"], operation_timeout=10, request_timeout=30)["never-existed"]
    with pytest.raises(KafkaException) as e:
        fut.result(timeout=30)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    broker.restart()
    names = clients.topic_names(broker.bootstrap)
    assert "doomed" not in names and "kept" in names
