"""A topic config the broker accepts is honoured; one it does not support is refused with
INVALID_CONFIG naming it — never accepted and ignored."""

import struct
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, TIMESTAMP_CREATE_TIME, OFFSET_BEGINNING

import clients

OLD_TS = 1_000_000_000_000  # 2001-09-09


def produce_one(bootstrap, topic, value, **conf):
    """Produce one message; (error or None, offset)."""
    p = clients.producer(bootstrap, **{"linger.ms": 0, "retries": 0, **conf})
    out = []
    p.produce(topic, value=value, timestamp=OLD_TS,
              on_delivery=lambda err, msg: out.append((err, msg.offset())))
    assert p.flush(30) == 0
    return out[0]


def first_message(bootstrap, topic):
    c = clients.consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                return m
        raise AssertionError("no message")
    finally:
        c.close()


def create_error(bootstrap, topic, config):
    a = clients.admin(bootstrap)
    fut = a.create_topics([clients.NewTopic(topic, num_partitions=1, replication_factor=1,
                                            config=config)], request_timeout=30)[topic]
    with pytest.raises(KafkaException) as e:
        fut.result(timeout=30)
    return e.value.args[0]


def test_log_append_time_replaces_the_producers_timestamp(broker):
    clients.create_topics(broker.bootstrap, {"appended": 1},
                          config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    err, _ = produce_one(broker.bootstrap, "appended", b"when?")
    after = int(time.time() * 1000)
    assert err is None, err
    kind, ts = first_message(broker.bootstrap, "appended").timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= after + 1000, (before, ts, after)
    # Survives a restart: the setting is the topic's, kept in its metadata.
    broker.restart()
    err, _ = produce_one(broker.bootstrap, "appended", b"again")
    assert err is None


def test_create_time_keeps_the_producers_timestamp(broker):
    clients.create_topics(broker.bootstrap, {"created": 1},
                          config={"message.timestamp.type": "CreateTime"})
    assert produce_one(broker.bootstrap, "created", b"then")[0] is None
    assert first_message(broker.bootstrap, "created").timestamp() == (TIMESTAMP_CREATE_TIME, OLD_TS)


def test_max_message_bytes_is_enforced_per_topic(broker):
    clients.create_topics(broker.bootstrap, {"small": 1}, config={"max.message.bytes": "1024"})
    err, _ = produce_one(broker.bootstrap, "small", b"x" * 20_000, **{"compression.type": "none"})
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    assert produce_one(broker.bootstrap, "small", b"x" * 100)[0] is None
    consumed, marks = clients.consume_all(broker.bootstrap, "small", [0])
    assert marks[0] == (0, 1) and consumed[0][0][2] == b"x" * 100


def test_timestamp_window_is_enforced(broker):
    clients.create_topics(broker.bootstrap, {"recent": 1},
                          config={"message.timestamp.before.max.ms": "3600000"})
    err, _ = produce_one(broker.bootstrap, "recent", b"too old")
    assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, err


def test_min_insync_replicas_above_the_replicas_asks_for_all_of_them(broker):
    """min.insync.replicas above a partition's replicas asks for every replica, as Kafka 4's
    effective minimum does (Kafka 4.4 itself answers the same: the differential suite's
    `records/min.insync.replicas above the replicas of one node`): on one node acks=all is
    served."""
    clients.create_topics(broker.bootstrap, {"strict": 1}, config={"min.insync.replicas": "2"})
    err, _ = produce_one(broker.bootstrap, "strict", b"all", acks="all")
    assert err is None, err
    assert produce_one(broker.bootstrap, "strict", b"one", acks=1)[0] is None


@pytest.mark.parametrize("config", [
    {"compression.type": "brotli"},
    {"cleanup.policy": "compact,forget"},
    {"unclean.leader.election.enable": "true"},
    {"message.timestamp.type": "WallClock"},
    {"retention.ms": "soon"},
    {"segment.bytes": "10"},
], ids=lambda c: next(iter(c)))
def test_unsupported_or_bad_configs_are_refused_by_name(broker, config):
    name = "refused-" + next(iter(config)).replace(".", "-")
    err = create_error(broker.bootstrap, name, config)
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert next(iter(config)) in err.str(), err.str()
    assert name not in clients.topic_names(broker.bootstrap)


CODECS = {0: "uncompressed", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def stored_codecs(broker, topic):
    """The codec of every batch in partition 0's first segment, read from the data directory."""
    data = (broker.data_dir / f"{topic}-0" / ("0" * 20 + ".log")).read_bytes()
    codecs, pos = [], 0
    while pos + 61 <= len(data):
        (length,) = struct.unpack_from(">i", data, pos + 8)
        if length == 0:  # the zeros written ahead of the segment's end
            break
        (attributes,) = struct.unpack_from(">h", data, pos + 21)
        codecs.append(CODECS[attributes & 7])
        pos += 12 + length
    return codecs


@pytest.mark.parametrize("codec", ["uncompressed", "gzip", "snappy", "lz4", "zstd"])
def test_compression_type_recompresses_what_producers_send(broker, codec):
    """A topic's compression.type other than producer: batches sent in any codec are stored in
    the topic's (as Kafka's broker recompresses them) and read back intact by librdkafka and
    kcat, with their keys, headers and timestamps."""
    topic = f"codec-{codec}"
    clients.create_topics(broker.bootstrap, {topic: 1}, config={"compression.type": codec})
    sent = []
    for sent_as in ["none", "gzip", "snappy", "lz4", "zstd"]:
        p = clients.producer(broker.bootstrap, **{"compression.type": sent_as, "linger.ms": 50,
                                                   "enable.idempotence": sent_as == "zstd"})
        errors = []
        for i in range(300):
            value = f"{sent_as} message {i} ".encode() * (1 + i % 7)
            p.produce(topic, value=value, key=f"k{i}".encode(), partition=0,
                      headers=[("codec", sent_as.encode())], timestamp=OLD_TS + i,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
            sent.append((f"k{i}".encode(), value, sent_as.encode(), OLD_TS + i))
        assert p.flush(30) == 0 and errors == []
    assert set(stored_codecs(broker, topic)) == {codec}
    c = clients.consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got, deadline = [], time.monotonic() + 60
        while len(got) < len(sent) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append((m.key(), m.value(), dict(m.headers())["codec"], m.timestamp()[1]))
    finally:
        c.close()
    assert got == sent
    out = clients.run_kcat(["-C", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-o",
                            "beginning", "-e", "-q", "-f", "%k\\n"])
    assert out.split() == [k.decode() for k, _, _, _ in sent]
    a = clients.admin(broker.bootstrap)
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource("topic", topic)
    described = a.describe_configs([res])[res].result(30)
    assert described["compression.type"].value == codec


def test_compaction_settings_are_kept_as_kafka_keeps_them_on_a_delete_topic(broker):
    """delete.retention.ms and the other compaction settings act only on compacted topics, in
    Kafka too: a delete topic that sets them (librdkafka's admin test does) is created, keeps
    and describes them, and takes records without keys."""
    from confluent_kafka.admin import ConfigResource
    settings = {"delete.retention.ms": "900", "min.compaction.lag.ms": "10",
                "min.cleanable.dirty.ratio": "0.1"}
    clients.create_topics(broker.bootstrap, {"inert": 1}, config=settings)
    res = ConfigResource("topic", "inert")
    a = clients.admin(broker.bootstrap)
    described = a.describe_configs([res])[res].result(30)
    for k, v in settings.items():
        assert described[k].value == v
        assert not described[k].is_default
    assert produce_one(broker.bootstrap, "inert", b"kept")[0] is None
