"""A topic config the broker accepts is honoured; one it does not support is refused with
INVALID_CONFIG naming it — never accepted and ignored."""

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


def test_min_insync_replicas_above_the_replicas_refuses_acks_all(broker):
    clients.create_topics(broker.bootstrap, {"strict": 1}, config={"min.insync.replicas": "2"})
    err, _ = produce_one(broker.bootstrap, "strict", b"all", acks="all")
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
    assert produce_one(broker.bootstrap, "strict", b"one", acks=1)[0] is None


@pytest.mark.parametrize("config", [
    {"compression.type": "gzip"},
    {"cleanup.policy": "compact"},
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
