"""A cluster that grows and shrinks at run time, operated with clients this project did not
write: three brokers (the controller quorum, `cluster_peers`) take writes at acks=all from an
idempotent confluent-kafka producer while a consumer group reads; a fourth and a fifth broker
join (started with the quorum's addresses only) and are listed by Metadata and DescribeCluster;
every partition of the topic is moved to {3, 4, 5} with kafka-python's admin client; brokers 1
and 2 retire (stopped, then UnregisterBroker) and the quorum moves to {3, 4, 5}; everything
restarts and every acknowledged record reads back once, in order. Also: a joining broker
SIGKILLed while it catches up starts again and finishes joining; UnregisterBroker's refusals."""

import threading
import time

import pytest
from confluent_kafka.admin import NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTopicPartition
from kafka.errors import KafkaError as KError

import clients
import wire
from conftest import free_port
from test_cluster import Cluster, Node, consume_all
from test_reassignment import (Writer, create_on, partition_log_bytes, read_back_exactly,
                               replicas_of, wait_until)


class Joiner(Node):
    """A broker outside the quorum: its id, the quorum's addresses, an inter-broker address."""

    def __init__(self, workdir, node_id, peers, extra_args=()):
        super().__init__(workdir, node_id, peers, extra_args)
        self.inter_broker = f"127.0.0.1:{free_port()}"

    def command(self):
        return super().command() + ["--set", f"inter_broker_listen={self.inter_broker}"]


def add_broker(cluster, tmp_path, node_id, extra_args=()):
    n = Joiner(tmp_path / f"node{node_id}", node_id, cluster.peers, extra_args)
    cluster.nodes[node_id] = n
    n.start()
    return n


def unregister(bootstrap, node_id):
    """UnregisterBroker (API 64) on the wire: kafka-python's admin client has no call for it."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    with wire.connect(f"{host}:{port}", timeout=30.0) as s:
        return wire.unregister_broker(s, node_id)


def drain(bootstrap, leaving, staying):
    """Move every partition (internal topics too) off the brokers `leaving`, onto brokers of
    `staying` it is not on yet, with kafka-python's admin client; wait until the moves end."""
    md = clients.admin(bootstrap).list_topics(timeout=10)
    target = {}
    for name, t in md.topics.items():
        for p, info in t.partitions.items():
            replicas = list(info.replicas)
            if not set(replicas) & set(leaving):
                continue
            spare = [b for b in staying if b not in replicas]
            target[KTopicPartition(name, p)] = [
                b if b not in leaving else spare.pop(0) for b in replicas]
    kadmin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        assert kadmin.alter_partition_reassignments(target, timeout_ms=30_000) == {
            tp: None for tp in target}
        wait_until("the moves off the retiring brokers to end",
                   lambda: not kadmin.list_partition_reassignments(), timeout=180)
    finally:
        kadmin.close()
    return len(target)


def quorum(bootstrap):
    """(voters, observers) of the controller quorum, from kafka-python's DescribeQuorum."""
    kadmin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        q = kadmin.describe_metadata_quorum()
    finally:
        kadmin.close()
    p = q["topics"][0]["partitions"][0]
    assert p["error"] is None, p
    return (sorted(v["replica_id"] for v in p["current_voters"]),
            sorted(o["replica_id"] for o in p["observers"]))


def described_brokers(bootstrap):
    kadmin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        return sorted(b["broker_id"] for b in kadmin.describe_cluster()["brokers"])
    finally:
        kadmin.close()


@pytest.fixture
def three(tmp_path):
    c = Cluster(tmp_path, size=3).start()
    c.wait_brokers(3)
    yield c
    died = c.cleanup()
    if died:
        pytest.fail("a node died during the test:\n" + "\n".join(n.log_tail() for n in died),
                    pytrace=False)


class GroupReader:
    """A consumer group member reading the topic until stopped, committing as it goes."""

    def __init__(self, bootstrap, topic, group):
        self.c = clients.consumer(bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                                "enable.auto.commit": True})
        self.c.subscribe([topic])
        self.seen = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            m = self.c.poll(0.2)
            if m is not None and m.error() is None:
                self.seen += 1

    def close(self):
        self.stop.set()
        self.t.join()
        self.c.close()


def test_three_brokers_grow_to_five_and_shrink_to_three_under_load(three, tmp_path):
    """Data: a topic of 3 partitions, three replicas each, ~30,000 records of 200 B (~6 MB)
    written while brokers join, partitions move and brokers retire."""
    c = three
    topic = "grown"
    create_on(c.bootstrap, topic, [[1, 2, 3], [2, 3, 1], [3, 1, 2]])
    reader = GroupReader(c.bootstrap, topic, "readers")
    with Writer(c.bootstrap, topic) as w:
        wait_until("some writes", lambda: len(w.log.ok) > 2000)
        # The group reads, so __consumer_offsets is made now, on the first three brokers (new
        # partitions are led at once: the writes above once took seconds longer than that).
        wait_until("the group reading", lambda: reader.seen > 0)
        add_broker(c, tmp_path, 4)
        add_broker(c, tmp_path, 5)
        c.wait_brokers(5, timeout=60)
        # Every broker learns of the others as it applies the metadata (a broker that just
        # joined answers only once it has caught up, and may not have applied the last
        # registration yet).
        wait_until("five brokers described",
                   lambda: described_brokers(c.bootstrap) == [1, 2, 3, 4, 5])
        # A new topic is placed on the new brokers too.
        a = clients.admin(c.bootstrap)
        a.create_topics([NewTopic("fresh", num_partitions=10, replication_factor=3)],
                        operation_timeout=10, request_timeout=30)["fresh"].result(30)
        placed = wait_until("the new topic", lambda: replicas_of(c.bootstrap, "fresh"))
        on = {b for r in placed.values() for b in r}
        assert {4, 5} <= on, placed
        # Every partition of the topic moves to {3, 4, 5}.
        kadmin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30_000)
        target = {KTopicPartition(topic, p): [3, 4, 5] for p in range(3)}
        # (And the new topic's partitions off brokers 1 and 2.)
        target.update({KTopicPartition("fresh", p): [3, 4, 5] for p in range(10)})
        assert kadmin.alter_partition_reassignments(target, timeout_ms=30_000) == {
            tp: None for tp in target}
        wait_until("the moves to finish",
                   lambda: not kadmin.list_partition_reassignments(
                       {topic: [0, 1, 2], "fresh": list(range(10))}), timeout=120)
        kadmin.close()
        # Brokers 1 and 2 retire. Refused: a broker that is not registered, one that holds
        # replicas.
        err, msg = unregister(c.nodes[3].bootstrap, 9)
        assert err == 102, (err, msg)
        err, msg = unregister(c.nodes[3].bootstrap, 1)
        assert err == 42 and "holds replicas" in msg, (err, msg)
        moved = drain(c.bootstrap, leaving=[1, 2], staying=[3, 4, 5])
        assert moved >= 50, moved  # __consumer_offsets too
        assert quorum(c.bootstrap) == ([1, 2, 3], [4, 5])
        for node_id in (1, 2):
            c.nodes[node_id].stop()
            err, msg = unregister(c.nodes[3].bootstrap, node_id)
            assert err == 0, (node_id, err, msg)
            # A retired voter is replaced by an observer; the next one is stopped only once the
            # quorum has moved (its old majority needs the voters still up).
            wait_until(f"the quorum to let {node_id} go",
                       lambda: node_id not in quorum(c.nodes[3].bootstrap)[0]
                       and len(quorum(c.nodes[3].bootstrap)[0]) == 3)
        assert quorum(c.nodes[3].bootstrap) == ([3, 4, 5], [])
        c.nodes.pop(1)
        c.nodes.pop(2)
        wait_until("three brokers listed",
                   lambda: described_brokers(c.alive_bootstrap()) == [3, 4, 5])
        wait_until("more writes after the brokers retired",
                   lambda: len(w.log.ok) > w.sent // 2 + 3000, timeout=120)
        w.finish()
    reader.close()
    assert reader.seen > 0
    acked = w.log.by_partition()
    total = sum(len(v) for v in acked.values())
    assert total > 10_000, total

    assert sorted(acked) == [0, 1, 2]
    read_back_exactly(c, topic, acked)
    # Everything restarts, with the configuration it was started with (cluster_peers still
    # names the retired brokers): the quorum is {3, 4, 5} now.
    for n in c.nodes.values():
        n.stop()
    c.start()
    c.wait_brokers(3, timeout=60)
    read_back_exactly(c, topic, acked)
    assert quorum(c.bootstrap) == ([3, 4, 5], [])
    # Writes go on.
    log = clients.DeliveryLog()
    p = clients.producer(c.alive_bootstrap(), **{"acks": "all"})
    clients.produce_all(p, topic, [{"value": b"after"}], log)
    assert not log.errors, log.errors[:3]


def first_metadata(addr, timeout=60.0):
    """The first Metadata (v1, every topic) `addr` answers, asked as soon as it listens: its
    brokers and topics."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = wire.connect(addr, timeout=40.0)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    with s:
        r = wire.roundtrip(s, wire.API_METADATA, 1, wire.i32(-1))
        md = wire.parse_metadata_v1(r)
    return sorted(md["brokers"]), sorted(md["topics"])


def test_a_joining_broker_answers_clients_only_once_it_knows_the_cluster(tmp_path):
    """Data: 24 topics and 2,400 config changes (~0.5 MB of metadata log) for a broker that
    joins to catch up on. Its first answer to a client, asked the moment it listens, names every
    broker (itself included) and every topic, as Kafka's broker opens its listeners only once
    it has caught up with the metadata."""
    from test_metadata_snapshots import alter_many, churn_topics
    c = Cluster(tmp_path, size=3).start()
    try:
        c.wait_brokers(3)
        admin = clients.admin(c.bootstrap)
        topics = churn_topics(admin, 24)
        alter_many(admin, topics, 100)
        joiner = add_broker(c, tmp_path, 4)
        brokers, listed = first_metadata(joiner.bootstrap)
        assert brokers == [1, 2, 3, 4], brokers
        assert set(topics) <= set(listed), sorted(set(topics) - set(listed))
    finally:
        c.cleanup()


def test_a_joining_broker_killed_while_it_catches_up_starts_again_and_the_move_ends(tmp_path):
    """Data: one partition of ~40 MB (40,000 records of 1 KB) moved to a broker that just
    joined, its catch-up throttled to 4 MB/s so that it is SIGKILLed half-way."""
    throttle = ["--set", "leader_replication_throttled_rate=4000000"]
    c = Cluster(tmp_path, size=3, extra_args=throttle).start()
    try:
        c.wait_brokers(3)
        topic = "big"
        create_on(c.bootstrap, topic, [[1, 2, 3]])
        log = clients.DeliveryLog()
        p = clients.producer(c.bootstrap, **{"acks": "all", "enable.idempotence": True,
                                             "linger.ms": 20})
        clients.produce_all(p, topic, [{"value": b"%08d" % i * 128} for i in range(40_000)], log)
        assert not log.errors, log.errors[:3]
        joiner = add_broker(c, tmp_path, 4, extra_args=throttle)
        c.wait_brokers(4, timeout=60)
        kadmin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30_000)
        tp = KTopicPartition(topic, 0)
        assert kadmin.alter_partition_reassignments({tp: [4, 1, 2]}) == {tp: None}
        full = partition_log_bytes(c.nodes[1], topic, 0)  # (preallocated past its end)
        assert full > 30_000_000, full
        wait_until("broker 4 to be catching up",
                   lambda: 0 < partition_log_bytes(joiner, topic, 0) < full // 3, timeout=60)
        joiner.kill()
        held = partition_log_bytes(joiner, topic, 0)
        assert held < full, (held, full)
        listed = kadmin.list_partition_reassignments([tp])
        assert listed[tp]["adding_replicas"] == [4], listed
        joiner.start()
        wait_until("the move to end", lambda: not kadmin.list_partition_reassignments([tp]),
                   timeout=120)
        kadmin.close()
        assert sorted(replicas_of(c.bootstrap, topic)[0]) == [1, 2, 4]
        wait_until("broker 3 to let go of it",
                   lambda: partition_log_bytes(c.nodes[3], topic, 0) == 0)
        # Broker 4 (the preferred replica now) leads: what it holds is read back.
        from confluent_kafka import ElectionType, TopicPartition as CTopicPartition
        a = clients.admin(c.bootstrap)

        def elected():
            try:
                a.elect_leaders(ElectionType.PREFERRED, [CTopicPartition(topic, 0)]).result(30)
            except Exception:
                pass  # ELECTION_NOT_NEEDED once it leads
            return c.leader_of(topic, 0) == 4
        wait_until("broker 4 to lead", elected, timeout=60)
        got, marks = consume_all(c.bootstrap, topic, [0])
        assert marks[0] == (0, 40_000), marks
        want = [v for _, _, v, _, _ in sorted(log.by_partition()[0])]
        assert [v for _, _, v, _, _ in got[0]] == want
    finally:
        died = c.cleanup()
        if died:
            pytest.fail("a node died:\n" + "\n".join(n.log_tail() for n in died), pytrace=False)


def test_with_tls_between_brokers_only_a_broker_of_the_cluster_ca_joins(tmp_path, certs):
    """Data: none beyond the metadata. Links by mutual TLS: a broker whose certificate another
    CA signed is never registered; one with the cluster CA's certificate joins."""
    from certs import Certs
    cert, key = certs.issue("broker", "broker", server=True, client=True)
    tls = ("--set", "inter_broker_security_protocol=SSL",
           "--set", f"ssl_certificate_location={cert}",
           "--set", f"ssl_key_location={key}",
           "--set", f"ssl_ca_location={certs.ca}")
    c = Cluster(tmp_path, size=3, extra_args=tls).start()
    stranger = None
    try:
        c.wait_brokers(3)
        other_cert, other_key = Certs(certs.dir / "other").issue(
            "mallory", "mallory", server=True, client=True)
        stranger = add_broker(c, tmp_path, 4, extra_args=(
            "--set", "inter_broker_security_protocol=SSL",
            "--set", f"ssl_certificate_location={other_cert}",
            "--set", f"ssl_key_location={other_key}",
            "--set", f"ssl_ca_location={certs.ca}"))
        stranger.wait_for_log(0, lambda t: "request to join not taken" in t, timeout=30)
        # (Left running, out of the clients' bootstrap: it serves no cluster.)
        c.nodes.pop(4)
        add_broker(c, tmp_path, 5, extra_args=tls)
        md = c.wait_brokers(4, timeout=60)
        assert sorted(md.brokers) == [1, 2, 3, 5], md.brokers
        time.sleep(2)
        assert sorted(c.wait_brokers(4).brokers) == [1, 2, 3, 5]
        assert quorum(c.nodes[1].bootstrap)[1] == [5]
        stranger.assert_alive()
    finally:
        if stranger is not None:
            stranger.cleanup()
        died = c.cleanup()
        if died:
            pytest.fail("a node died:\n" + "\n".join(n.log_tail() for n in died), pytrace=False)
