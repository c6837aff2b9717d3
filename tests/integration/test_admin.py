"""The admin API from the two admin clients people use — confluent-kafka's AdminClient
(librdkafka) and kafka-python's KafkaAdminClient — against the real binary: topics created
(with configs, validate-only), described, altered, grown and deleted; records deleted; offsets
listed by time and by the largest timestamp; the cluster and its log directory described."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)
from confluent_kafka import IsolationLevel

import clients


def result(fut, timeout=30):
    return fut.result(timeout=timeout)


def error_of(fut):
    with pytest.raises(KafkaException) as e:
        fut.result(timeout=30)
    return e.value.args[0]


def produce(bootstrap, topic, partition, values, timestamps=None):
    p = clients.producer(bootstrap)
    for i, v in enumerate(values):
        kw = {"timestamp": timestamps[i]} if timestamps else {}
        p.produce(topic, value=v, partition=partition, **kw)
    assert p.flush(30) == 0


def describe_topic_config(a, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return result(a.describe_configs([res])[res])


def test_confluent_admin_client_creates_describes_alters_grows_and_deletes(broker):
    a = clients.admin(broker.bootstrap)
    # Validate-only checks and creates nothing; a config that is not supported is refused by
    # name, and so is one Kafka does not know.
    fut = a.create_topics([NewTopic("orders", 3, 1, config={"retention.ms": "3600000"})],
                          validate_only=True)["orders"]
    assert result(fut) is None
    assert "orders" not in a.list_topics(timeout=10).topics
    for key, value in [("cleanup.policy", "forget"), ("not.a.config", "1")]:
        err = error_of(a.create_topics([NewTopic("orders", 3, 1, config={key: value})])["orders"])
        assert err.code() == KafkaError.INVALID_CONFIG and key in err.str(), err
    result(a.create_topics([NewTopic("orders", 3, 1,
                                     config={"retention.ms": "3600000",
                                             "max.message.bytes": "2048"})])["orders"])
    clients.wait_for_topic(a, "orders", 3, 30)
    err = error_of(a.create_topics([NewTopic("orders", 3, 1)])["orders"])
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err

    # Described: every config Kafka defines, the overrides as the topic's own.
    configs = describe_topic_config(a, "orders")
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.bytes"].value == "1073741824"
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["cleanup.policy"].value == "delete"
    assert len(configs) >= 30, sorted(configs)

    # Altered incrementally: set, delete, and a list operation that appends a policy Kafka does
    # not know.
    res = ConfigResource(ConfigResource.Type.TOPIC, "orders", incremental_configs=[
        ConfigEntry("max.message.bytes", "100000",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    result(a.incremental_alter_configs([res])[res])
    configs = describe_topic_config(a, "orders")
    assert configs["max.message.bytes"].value == "100000"
    assert configs["retention.ms"].value == "604800000"
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    res = ConfigResource(ConfigResource.Type.TOPIC, "orders", incremental_configs=[
        ConfigEntry("cleanup.policy", "forget", incremental_operation=AlterConfigOpType.APPEND)])
    err = error_of(a.incremental_alter_configs([res])[res])
    assert err.code() == KafkaError.INVALID_CONFIG and "cleanup.policy" in err.str(), err
    # The honoured setting is in force: 50 kB now passes where 2 kB was the limit.
    produce(broker.bootstrap, "orders", 0, [b"x" * 50_000])

    # The broker's settings are described; the defaults of topic configs change at run time
    # (for this broker here; confluent-kafka does not name the cluster default, "": the Rust
    # tests do), the others are refused by name.
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    broker_configs = result(a.describe_configs([res])[res])
    assert broker_configs["log.retention.ms"].value == "604800000"
    assert not broker_configs["log.retention.ms"].is_read_only
    assert broker_configs["num.partitions"].is_read_only
    res = ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
        ConfigEntry("log.retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    result(a.incremental_alter_configs([res])[res])
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    broker_configs = result(a.describe_configs([res])[res])
    assert broker_configs["log.retention.ms"].value == "3600000"
    assert broker_configs["log.retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    configs = describe_topic_config(a, "orders")  # no values of its own for these
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    for name, value in [("num.partitions", "3"), ("log.segment.bytes", "10")]:
        res = ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
            ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
        err = error_of(a.incremental_alter_configs([res])[res])
        assert err.code() == KafkaError.INVALID_CONFIG and name in err.str(), err
    res = ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=[
        ConfigEntry("log.retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    result(a.incremental_alter_configs([res])[res])
    assert describe_topic_config(a, "orders")["retention.ms"].value == "604800000"

    # Grown: 3 → 6 partitions, the new ones written to; shrinking is refused.
    result(a.create_partitions([NewPartitions("orders", 6)])["orders"])
    clients.wait_for_topic(a, "orders", 6, 30)
    produce(broker.bootstrap, "orders", 5, [b"to the new partition"])
    err = error_of(a.create_partitions([NewPartitions("orders", 4)])["orders"])
    assert err.code() == KafkaError.INVALID_PARTITIONS, err

    # Described as a topic, with authorized operations (no authorizer: all of them).
    desc = result(a.describe_topics(
        __import__("confluent_kafka").TopicCollection(["orders"]),
        include_authorized_operations=True)["orders"])
    assert len(desc.partitions) == 6
    assert desc.authorized_operations, desc

    # The cluster: one broker, which is the controller.
    cluster = result(a.describe_cluster(include_authorized_operations=True))
    assert [n.port for n in cluster.nodes] == [broker.port]
    assert cluster.controller.id == cluster.nodes[0].id
    assert cluster.authorized_operations

    # Deleted: gone from metadata; a second delete says it is unknown.
    result(a.delete_topics(["orders"])["orders"])
    deadline = time.monotonic() + 30
    while "orders" in a.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "orders" not in a.list_topics(timeout=10).topics
    err = error_of(a.delete_topics(["orders"])["orders"])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


def test_confluent_admin_client_deletes_records_and_lists_offsets(broker):
    a = clients.admin(broker.bootstrap)
    clients.create_topics(broker.bootstrap, {"events": 1})
    base = 1_700_000_000_000
    stamps = [base + i for i in range(20)]
    stamps[7] = base + 1_000_000  # the largest timestamp
    produce(broker.bootstrap, "events", 0, [b"e%d" % i for i in range(20)], stamps)
    tp = TopicPartition("events", 0)

    def offset(spec):
        return result(a.list_offsets({tp: spec})[tp])

    assert offset(OffsetSpec.earliest()).offset == 0
    assert offset(OffsetSpec.latest()).offset == 20
    top = offset(OffsetSpec.max_timestamp())
    assert (top.offset, top.timestamp) == (7, base + 1_000_000)
    assert offset(OffsetSpec.for_timestamp(base + 3)).offset == 3
    # Deleting records moves the start; reading below it is out of range.
    deleted = result(a.delete_records([TopicPartition("events", 0, 12)])[
        TopicPartition("events", 0, 12)])
    assert deleted.low_watermark == 12
    assert offset(OffsetSpec.earliest()).offset == 12
    assert offset(OffsetSpec.for_timestamp(base)).offset == 12
    top = offset(OffsetSpec.max_timestamp())
    assert top.offset == 19, top
    # Consumers start at the new start, even inside a batch (they skip the records before it).
    consumed, marks = clients.consume_all(broker.bootstrap, "events", [0])
    assert marks[0] == (12, 20)
    assert [m[2] for m in consumed[0]] == [b"e%d" % i for i in range(12, 20)]
    # Past the end: refused, nothing moves.
    fut = a.delete_records([TopicPartition("events", 0, 21)])[TopicPartition("events", 0, 21)]
    err = error_of(fut)
    assert err.code() == KafkaError.OFFSET_OUT_OF_RANGE, err
    # Kept across a crash.
    broker.restart(graceful=False)
    a = clients.admin(broker.bootstrap)
    assert result(a.list_offsets({tp: OffsetSpec.earliest()})[tp]).offset == 12


def test_kafka_python_admin_client(broker):
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType
    from kafka.admin import NewPartitions as KNewPartitions, NewTopic as KNewTopic
    from kafka.structs import TopicPartition as KTopicPartition

    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    try:
        a.create_topics([KNewTopic("kp", 2, 1, topic_configs={"segment.ms": "600000"})])
        assert "kp" in a.list_topics()
        def described():
            res = a.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "kp")],
                                     config_filter="all")
            return {k: (v["value"], v["config_source"]) for k, v in res["topic"]["kp"].items()}

        assert described()["segment.ms"] == ("600000", "DYNAMIC_TOPIC_CONFIG")
        # IncrementalAlterConfigs (kafka-python's default) changes what it names.
        a.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "kp",
                                         configs={"retention.bytes": "1048576"})])
        entries = described()
        assert entries["retention.bytes"] == ("1048576", "DYNAMIC_TOPIC_CONFIG")
        assert entries["segment.ms"] == ("600000", "DYNAMIC_TOPIC_CONFIG")
        # AlterConfigs replaces the whole set; kafka-python sends the other overrides along (it
        # reads them first, by their source), so they stay.
        a.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "kp",
                                         configs={"retention.bytes": "2097152"})],
                        incremental=False)
        entries = described()
        assert entries["retention.bytes"] == ("2097152", "DYNAMIC_TOPIC_CONFIG")
        assert entries["segment.ms"] == ("600000", "DYNAMIC_TOPIC_CONFIG")
        a.create_partitions({"kp": KNewPartitions(4)})
        p = KafkaProducer(bootstrap_servers=broker.bootstrap)
        for i in range(10):
            p.send("kp", b"v%d" % i, partition=3)
        p.flush(30)
        p.close()
        out = a.delete_records({KTopicPartition("kp", 3): 4})
        assert out[KTopicPartition("kp", 3)]["low_watermark"] == 4, out
        cluster = a.describe_cluster()
        assert [b["port"] for b in cluster["brokers"]] == [broker.port], cluster
        dirs = a.describe_log_dirs()[0]["log_dirs"][0]
        sizes = {(t["name"], p["partition_index"]): p["partition_size"]
                 for t in dirs["topics"] for p in t["partitions"]}
        assert sizes[("kp", 3)] > 0 and sizes[("kp", 0)] == 0, sizes
        a.delete_topics(["kp"])
    finally:
        a.close()
