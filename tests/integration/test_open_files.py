"""Running out of open files is the process's limit, not a failed disk.

Every segment of every partition holds a file open, so a broker asked for more partitions than its
open-file limit allows runs out of descriptors. The creation that ran out fails with an error and
removes what it made; the data directory stays healthy, so every partition made before keeps
taking and serving writes, and a smaller topic can still be made. Before, the failed open declared
the whole data directory failed (every produce then got KAFKA_STORAGE_ERROR until it healed), and
a creation retried by the cluster's reconciler failed it again and again.

Data volume: a 512-descriptor broker, 200 records of 100 B to a topic of 8 partitions, one
topic of 2,000 partitions refused.
"""

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

import clients

OPEN_FILES = 512


def test_a_creation_past_the_open_file_limit_fails_alone(make_broker):
    broker = make_broker(open_files=OPEN_FILES)
    a = clients.create_topics(broker.bootstrap, {"kept": 8})
    p = clients.producer(broker.bootstrap)
    log = clients.DeliveryLog()
    clients.produce_all(
        p, "kept", [{"value": b"x" * 100, "partition": i % 8} for i in range(100)], log)
    assert len(log.ok) == 100 and not log.errors

    futures = a.create_topics(
        [NewTopic("too-many", num_partitions=2000, replication_factor=1)],
        operation_timeout=30, request_timeout=60)
    with pytest.raises(KafkaException):
        futures["too-many"].result(timeout=60)

    assert broker.metric("stillwater_open_files_exhausted_total") > 0, \
        "the creation did not run out of files: the test proves nothing"
    assert broker.metric("stillwater_failed_log_dirs") == 0, \
        "running out of open files failed the data directory"
    md = a.list_topics(timeout=10)
    assert "too-many" not in md.topics, "a refused topic was left behind"

    # The partitions made before take writes and serve them.
    log = clients.DeliveryLog()
    clients.produce_all(
        p, "kept", [{"value": b"y" * 100, "partition": i % 8} for i in range(100)], log)
    assert len(log.ok) == 100 and not log.errors, log.errors[:3]
    read, _ = clients.consume_all(broker.bootstrap, "kept", range(8))
    assert sum(len(records) for records in read.values()) == 200

    # What the refused creation opened was closed again: a small topic still fits.
    clients.create_topics(broker.bootstrap, {"after": 4}, timeout=30)
