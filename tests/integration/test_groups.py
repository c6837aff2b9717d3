"""Consumer groups with the clients applications use: a librdkafka group of three on six
partitions with one member SIGKILLed mid-way (the others take over, every message is consumed,
the committed offsets end at the end of the log), cooperative-sticky and static membership,
kafka-python's KafkaConsumer in a group, kcat -G, manual assignment with a group.id (commit
without joining; close does not hang), committed offsets across a broker restart, and the
AdminClient's group operations."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import (Consumer, ConsumerGroupState, KafkaError, KafkaException,
                             TopicPartition, OFFSET_BEGINNING)
from confluent_kafka.admin import AdminClient

import clients

HERE = Path(__file__).parent
FAST = ["--set", "group_initial_rebalance_delay_ms=0"]


def produce_values(bootstrap, topic, n, prefix="v", partitions=1):
    """n values, spread evenly over the topic's first `partitions` partitions."""
    p = clients.producer(bootstrap, **{"linger.ms": 20})
    log = clients.DeliveryLog()
    clients.produce_all(p, topic, [{"value": f"{prefix}-{i}".encode(), "partition": i % partitions}
                                   for i in range(n)], log)
    return log


def committed(bootstrap, group, topic, partitions):
    c = clients.consumer(bootstrap, **{"group.id": group})
    try:
        return {tp.partition: tp.offset for tp in
                c.committed([TopicPartition(topic, p) for p in partitions], timeout=20)}
    finally:
        c.close()


class Member:
    """A group member process (group_member.py); what it prints is collected by a thread."""

    def __init__(self, bootstrap, topic, group, delay=0.0, strategy="range"):
        import threading
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "group_member.py"), bootstrap, topic, group, str(delay),
             strategy],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def values(self):
        return {f[2] for f in (line.split() for line in list(self.lines)) if len(f) == 3}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=10)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky", "consumer:uniform",
                                      "consumer:range"])
def test_a_group_of_three_survives_a_killed_member(make_broker, strategy):
    # The consumer protocol's session is the broker's: short, as the classic members' is.
    b = make_broker(extra_args=FAST + ["--set", "group_consumer_session_timeout_ms=6000",
                                       "--set", "group_consumer_heartbeat_interval_ms=500"])
    topic, group, total = "shared", f"three-{strategy.replace(':', '-')}", 3000
    clients.create_topics(b.bootstrap, {topic: 6})
    produce_values(b.bootstrap, topic, total, partitions=6)
    members = [Member(b.bootstrap, topic, group, delay=0.002, strategy=strategy)
               for _ in range(3)]
    try:
        # Let all three join and consume for a while, then kill one without a goodbye.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(m.lines for m in members):
            time.sleep(0.05)
        assert all(m.lines for m in members), \
            f"not every member got partitions: {[len(m.lines) for m in members]}"
        if strategy.startswith("consumer:"):
            # A group of KIP-848's protocol, assigned by the assignor its members name.
            from confluent_kafka import ConsumerGroupType
            d = describe(b.bootstrap, group)
            assert (d.type, d.partition_assignor, len(d.members)) == (
                ConsumerGroupType.CONSUMER, strategy.split(":")[1], 3), vars(d)
        members[0].proc.send_signal(signal.SIGKILL)
        members[0].proc.wait()
        deadline = time.monotonic() + 60
        values = set()
        while time.monotonic() < deadline and len(values) < total:
            time.sleep(0.2)
            values = set().union(*(m.values() for m in members))
        assert len(values) == total, f"{total - len(values)} messages never consumed"
    finally:
        # One survivor leaves; the last one is given what it had (from the leaver's last
        # commit, which can meet that very rebalance) and reads it again before it leaves too:
        # stopped at once, it could leave before reading them (committed 458 of 500 once).
        members[1].stop()
        last, quiet_since, deadline = members[2], time.monotonic(), time.monotonic() + 15
        seen = len(last.lines)
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 3.0:
            time.sleep(0.1)
            if len(last.lines) != seen:
                seen, quiet_since = len(last.lines), time.monotonic()
        last.stop()
    # The survivors committed everything before they left.
    marks = clients.watermarks(clients.consumer(b.bootstrap), topic, range(6))
    assert committed(b.bootstrap, group, topic, range(6)) == {p: marks[p][1] for p in range(6)}


def test_static_members_keep_their_partitions_across_a_restart_of_the_client(make_broker):
    b = make_broker(extra_args=FAST)
    topic = "static"
    clients.create_topics(b.bootstrap, {topic: 4})
    conf = {"group.id": "statics", "group.instance.id": "instance-a",
            "session.timeout.ms": 10_000, "auto.offset.reset": "earliest"}

    def assignment_of(c):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            c.poll(0.2)
            if c.assignment():
                return sorted(tp.partition for tp in c.assignment())
        raise AssertionError("no assignment")

    c = Consumer({"bootstrap.servers": b.bootstrap, **conf})
    c.subscribe([topic])
    first = assignment_of(c)
    generation = describe(b.bootstrap, "statics").members
    c.close()  # a static member's close does not leave the group
    c = Consumer({"bootstrap.servers": b.bootstrap, **conf})
    c.subscribe([topic])
    assert assignment_of(c) == first
    d = describe(b.bootstrap, "statics")
    assert [m.group_instance_id for m in d.members] == ["instance-a"]
    c.close()


def describe(bootstrap, group):
    a = AdminClient({"bootstrap.servers": bootstrap})
    return a.describe_consumer_groups([group], request_timeout=20)[group].result(timeout=20)


def test_kafka_python_consumer_in_a_group(broker):
    from kafka import KafkaConsumer

    topic = "py-group"
    clients.create_topics(broker.bootstrap, {topic: 3})
    produce_values(broker.bootstrap, topic, 300, prefix="py")
    cons = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="py-group",
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         consumer_timeout_ms=20_000)
    got = set()
    for msg in cons:
        got.add(msg.value)
        if len(got) == 300:
            break
    cons.commit()
    cons.close()
    assert len(got) == 300
    assert sum(committed(broker.bootstrap, "py-group", topic, range(3)).values()) == 300


@clients.needs_kcat
def test_kcat_balanced_consumer(broker):
    topic = "kcat-group"
    clients.create_topics(broker.bootstrap, {topic: 2})
    produce_values(broker.bootstrap, topic, 50, prefix="k")
    r = clients.run_kcat(["-b", broker.bootstrap, "-G", "kcat-group", "-e",
                          "-X", "auto.offset.reset=earliest", "-f", "%s\n", topic],
                         timeout=60, check=False)
    values = sorted(line for line in r.stdout.splitlines() if line.startswith("k-"))
    assert values == sorted(f"k-{i}" for i in range(50)), r.stderr[-2000:]


def test_manual_assignment_with_a_group_id_commits_and_closes_quickly(broker):
    topic = "manual"
    clients.create_topics(broker.bootstrap, {topic: 1})
    produce_values(broker.bootstrap, topic, 10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "manual-g",
                  "enable.auto.commit": True, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = 0
    deadline = time.monotonic() + 20
    while got < 10 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got += 1
    started = time.monotonic()
    c.close()  # commits the consumed offsets: must not hang
    assert time.monotonic() - started < 5
    assert committed(broker.bootstrap, "manual-g", topic, [0]) == {0: 10}


def test_committed_offsets_and_groups_survive_a_broker_restart(make_broker):
    b = make_broker(extra_args=FAST)
    topic = "durable"
    clients.create_topics(b.bootstrap, {topic: 2})
    c = clients.consumer(b.bootstrap, **{"group.id": "durable-g"})
    c.commit(offsets=[TopicPartition(topic, 0, 17), TopicPartition(topic, 1, 3)], asynchronous=False)
    c.close()
    for graceful in (True, False):
        b.restart(graceful=graceful)
        assert committed(b.bootstrap, "durable-g", topic, [0, 1]) == {0: 17, 1: 3}
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    listed = a.list_consumer_groups(request_timeout=20).result(timeout=20)
    assert "durable-g" in {g.group_id for g in listed.valid}


def test_admin_client_lists_describes_and_deletes_groups(make_broker):
    b = make_broker(extra_args=FAST)
    topic = "admin-groups"
    clients.create_topics(b.bootstrap, {topic: 2})
    produce_values(b.bootstrap, topic, 20)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "busy",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 20
    while got < 20 and time.monotonic() < deadline:
        m = c.poll(0.2)
        got += m is not None and not m.error()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    d = a.describe_consumer_groups(["busy"], request_timeout=20)["busy"].result(timeout=20)
    assert d.state == ConsumerGroupState.STABLE and len(d.members) == 1
    assert d.members[0].assignment.topic_partitions
    # A group with a member cannot be deleted; an empty one can.
    with pytest.raises(KafkaException) as e:
        a.delete_consumer_groups(["busy"], request_timeout=20)["busy"].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    c.commit(asynchronous=False)
    c.close()
    listed = a.list_consumer_groups(request_timeout=20).result(timeout=20)
    assert {g.group_id for g in listed.valid} >= {"busy"}
    offsets = a.list_consumer_group_offsets(
        [__import__("confluent_kafka").ConsumerGroupTopicPartitions("busy")])["busy"].result(timeout=20)
    assert sum(tp.offset for tp in offsets.topic_partitions) == 20
    a.delete_consumer_groups(["busy"], request_timeout=20)["busy"].result(timeout=20)
    listed = a.list_consumer_groups(request_timeout=20).result(timeout=20)
    assert "busy" not in {g.group_id for g in listed.valid}
    assert committed(b.bootstrap, "busy", topic, [0, 1]) == {0: -1001, 1: -1001}


def test_internal_topic_is_hidden_and_protected(broker):
    c = clients.consumer(broker.bootstrap, **{"group.id": "makes-the-topic"})
    clients.create_topics(broker.bootstrap, {"visible": 1})
    c.commit(offsets=[TopicPartition("visible", 0, 1)], asynchronous=False)
    c.close()
    md = clients.admin(broker.bootstrap).list_topics(timeout=10)
    # Listed with is_internal (clients hide it from ordinary listings).
    assert "__consumer_offsets" in md.topics
    names = clients.topic_names(broker.bootstrap)
    a = clients.admin(broker.bootstrap)
    fut = a.delete_topics(["__consumer_offsets"], request_timeout=20)["__consumer_offsets"]
    with pytest.raises(KafkaException):
        fut.result(timeout=20)
    assert "__consumer_offsets" in clients.topic_names(broker.bootstrap)
    del names


def offsets_topic_bytes(broker):
    return sum(f.stat().st_size for d in Path(broker.data_dir).glob("__consumer_offsets-*")
               for f in d.iterdir() if f.is_file())


@pytest.mark.timeout(300)
def test_a_compacted_offsets_topic_keeps_every_groups_last_commit_and_forgets_deleted_groups(
        make_broker):
    """`offsets_topic_compacted` (checkpoints off): the log cleaner alone bounds
    `__consumer_offsets`. Data: 20 groups committing 3 partitions 150 times each (9,000 offset
    records, ~1 MB in 16 KiB segments); 5 groups deleted (tombstones). After cleaning and a
    SIGKILL, every kept group's last commit is served and the deleted groups have none."""
    b = make_broker(extra_args=FAST + [
        "--set", "offsets_topic_compacted=true",
        "--set", "offsets_checkpoint_records=100000000",
        "--set", "offsets_topic_segment_bytes=16384",
        "--set", "offsets_topic_partitions=1",
        "--set", "log_cleaner_backoff_ms=100"])
    topic = "tracked"
    clients.create_topics(b.bootstrap, {topic: 3})
    groups = [f"compacted-g{i}" for i in range(20)]
    consumers = {g: clients.consumer(b.bootstrap, **{"group.id": g}) for g in groups}
    last = {}
    for round_ in range(1, 151):
        for i, (g, c) in enumerate(consumers.items()):
            offsets = [TopicPartition(topic, p, round_ * 10 + i + p) for p in range(3)]
            c.commit(offsets=offsets, asynchronous=False)
            last[g] = {p: round_ * 10 + i + p for p in range(3)}
    for c in consumers.values():
        c.close()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    deleted = groups[:5]
    for g, f in a.delete_consumer_groups(deleted, request_timeout=20).items():
        f.result(timeout=20)
    # Written uncompacted, the 3,000 commits take ~240 B each (~720 KB). The cleaner keeps
    # each key's latest record and a 61-byte header per emptied batch (~180 KB), plus the
    # active segment and a dirty part below min.cleanable.dirty.ratio (0.5).
    deadline = time.monotonic() + 120
    while b.metric("stillwater_cleaner_records_removed_total") < 6000:
        assert time.monotonic() < deadline, (
            b.metric("stillwater_cleaner_records_removed_total"), offsets_topic_bytes(b))
        time.sleep(0.5)
    assert offsets_topic_bytes(b) < 350_000, offsets_topic_bytes(b)
    b.restart(graceful=False)
    for g in groups[5:]:
        assert committed(b.bootstrap, g, topic, range(3)) == last[g], g
    for g in deleted:
        assert committed(b.bootstrap, g, topic, range(3)) == {p: -1001 for p in range(3)}, g
    listed = a.list_consumer_groups(request_timeout=20).result(timeout=20)
    assert not {g.group_id for g in listed.valid} & set(deleted)
