"""Three `broker` processes as one cluster (`cluster_peers`), used by clients this project did
not write: topics created through any broker, replicated three ways; an idempotent
confluent-kafka producer (acks=all) and a consumer group keep working while the leader of a
partition is SIGKILLed and restarted, again and again; afterwards every acknowledged message is
there once, in order, and the group's committed offsets are intact. Also: the brokers and
leaders clients see, kcat and kafka-python against the cluster, a broker gone is reported as
such, and a node refuses a data directory that is not its own."""

import os
import threading
import time
import uuid

import pytest

from confluent_kafka import KafkaError, KafkaException, TopicPartition

import clients
from conftest import Broker, free_port


class Node(Broker):
    """One broker of a cluster: its own id, data directory and inter-broker address."""

    def __init__(self, workdir, node_id, peers, extra_args=()):
        super().__init__(workdir, name=f"node{node_id}", extra_args=extra_args)
        self.node_id = node_id
        self.peers = peers

    def command(self):
        cmd = super().command()
        at = cmd.index("--node-id")
        cmd[at + 1] = str(self.node_id)
        return cmd + ["--set", f"cluster_peers={self.peers}"]


class Cluster:
    def __init__(self, tmp_path, size=3, extra_args=(), node_class=None):
        ports = {i: free_port() for i in range(1, size + 1)}
        self.peers = ",".join(f"{i}@127.0.0.1:{p}" for i, p in ports.items())
        self.nodes = {
            i: (node_class or Node)(tmp_path / f"node{i}", i, self.peers, extra_args)
            for i in range(1, size + 1)
        }

    def start(self):
        # Every node at once: each waits for the others to elect the metadata's leader.
        for n in self.nodes.values():
            n.proc = None
        threads = [threading.Thread(target=n.start) for n in self.nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n in self.nodes.values():
            n.assert_alive()
        return self

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes.values())

    def alive_bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes.values() if n.alive())

    def wait_brokers(self, count, timeout=30.0):
        """Wait until Metadata names `count` brokers (a cluster that just started has none
        until its nodes have registered)."""
        a = clients.admin(self.alive_bootstrap())
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                md = a.list_topics(timeout=5)
                last = md.brokers
                if len(md.brokers) == count:
                    return md
            except KafkaException as e:
                last = e
            time.sleep(0.1)
        raise AssertionError(f"not {count} brokers in metadata: {last}")

    def leader_of(self, topic, partition, timeout=30.0):
        a = clients.admin(self.alive_bootstrap())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                t = a.list_topics(topic=topic, timeout=10).topics.get(topic)
            except KafkaException:
                # A broker of the bootstrap list just (re)started and not answering yet:
                # librdkafka says "Failed to get metadata"; ask again.
                time.sleep(0.2)
                continue
            if t is not None and partition in t.partitions:
                leader = t.partitions[partition].leader
                if leader in self.nodes and self.nodes[leader].alive():
                    return leader
            time.sleep(0.1)
        raise AssertionError(f"no live leader for {topic}-{partition}")

    def cleanup(self):
        died = [n for n in self.nodes.values() if n.died_unexpectedly()]
        for n in self.nodes.values():
            n.cleanup()
        return died


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path).start()
    c.wait_brokers(3)
    yield c
    died = c.cleanup()
    if died:
        pytest.fail("a node died during the test:\n" + "\n".join(n.log_tail() for n in died),
                    pytrace=False)


def consume_all(bootstrap, topic, partitions, attempts=20):
    """clients.consume_all, asked again while leadership settles (a leader just elected
    answers NOT_LEADER_OR_FOLLOWER until an entry of its term is committed; a fresh client
    may not know a partition's leader yet)."""
    for attempt in range(attempts):
        try:
            return clients.consume_all(bootstrap, topic, partitions, timeout=120)
        except KafkaException:
            if attempt + 1 == attempts:
                raise
            time.sleep(0.5)


def create(bootstrap, topic, partitions, rf=3, timeout=30.0):
    """Create `topic` and wait until every partition has a leader. The broker answers within
    the request's 10 s operation timeout, done or not (Kafka's rule); librdkafka must wait
    longer than that for the answer (its socket timeout was 10 s too, and an answer sent at
    the operation timeout came a moment after the client gave up)."""
    from confluent_kafka.admin import NewTopic
    a = clients.admin(bootstrap, **{"socket.timeout.ms": int(timeout * 1000)})
    f = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=rf)],
                        operation_timeout=10, request_timeout=timeout)
    f[topic].result(timeout=timeout)
    clients.wait_for_topic(a, topic, partitions, timeout)


def test_every_broker_answers_metadata_with_all_brokers_and_replicated_topics(cluster):
    md = cluster.wait_brokers(3)
    assert sorted(md.brokers) == [1, 2, 3]
    assert md.controller_id in (1, 2, 3)
    started = time.monotonic()
    create(cluster.nodes[2].bootstrap, "three-ways", 3)
    took = time.monotonic() - started
    for n in cluster.nodes.values():
        t = clients.admin(n.bootstrap).list_topics(topic="three-ways", timeout=10).topics["three-ways"]
        assert len(t.partitions) == 3
        for p in t.partitions.values():
            assert sorted(p.replicas) == [1, 2, 3]
            assert p.leader in (1, 2, 3)
    # Preferred leaders take turns: the three partitions are not all led by one broker.
    t = clients.admin(cluster.bootstrap).list_topics(topic="three-ways", timeout=10).topics["three-ways"]
    assert len({p.leader for p in t.partitions.values()}) > 1
    # A replication factor larger than the cluster is refused, as Kafka does.
    with pytest.raises(KafkaException) as e:
        create(cluster.bootstrap, "too-many-replicas", 1, rf=4)
    assert e.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    # A cluster formed from new directories has nothing to warn about.
    for i, n in cluster.nodes.items():
        warnings = [l for l in n.log_text().splitlines() if " WARN " in l or " ERROR " in l]
        assert not warnings, (i, warnings[:3])
    print(f"created a topic of 3 partitions x 3 replicas, leaders elected, in {took * 1000:.0f} ms")


class Group:
    """Members of a consumer group (librdkafka) reading `topic` in threads, committing their
    position every 200 ms; what they read is in `consumed`."""

    def __init__(self, cluster, topic, name, members=2):
        self.cluster, self.topic, self.name = cluster, topic, name
        self.consumed = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._member) for _ in range(members)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def _member(self):
        c = clients.consumer(self.cluster.bootstrap, **{
            "group.id": self.name,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
            "enable.auto.offset.store": True,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "session.timeout.ms": 10_000,
            "topic.metadata.refresh.interval.ms": 1000,
        })
        c.subscribe([self.topic])
        try:
            while not self.stop.is_set():
                for m in c.consume(num_messages=500, timeout=0.2):
                    if m.error() is None:
                        self.consumed.append((m.partition(), m.offset(), m.value()))
        finally:
            c.close()

    def values(self):
        return {v for _, _, v in self.consumed}


@pytest.mark.timeout(300)
def test_idempotent_producer_and_a_group_survive_the_leader_killed_again_and_again(cluster):
    topic = "survives"
    create(cluster.bootstrap, topic, 3)
    total = 15_000
    p = clients.producer(cluster.bootstrap, **{
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 180_000,
        "retry.backoff.ms": 100,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    delivered = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[msg.value()] = (msg.partition(), msg.offset())

    kills = []

    def killer():
        for _ in range(3):
            while len(delivered) < (len(kills) + 1) * total // 5:
                time.sleep(0.01)
            victim = cluster.leader_of(topic, 0)
            cluster.nodes[victim].kill()
            kills.append(victim)
            time.sleep(1.0)
            cluster.nodes[victim].start()

    group = "survivors-" + uuid.uuid4().hex[:6]
    with Group(cluster, topic, group) as readers:
        k = threading.Thread(target=killer, daemon=True)
        k.start()
        for i in range(total):
            value = f"v-{i:06d}".encode()
            while True:
                try:
                    p.produce(topic, key=str(i % 97).encode(), value=value,
                              on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        assert p.flush(200) == 0, "messages left undelivered"
        k.join(timeout=60)
        assert len(kills) == 3, kills
        assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:3]}"
        assert len(delivered) == total

        # Every acknowledged message is there once; within a partition, in the order sent.
        got, _ = consume_all(cluster.bootstrap, topic, [0, 1, 2])
        seen = {}
        for part in (0, 1, 2):
            values = [r[2] for r in got[part]]
            dups = len(values) - len(set(values))
            assert dups == 0, f"partition {part}: {dups} messages stored twice"
            by_key = {}
            for v in values:
                seen[v] = part
                n = int(v[2:])
                assert by_key.get(n % 97, -1) < n, f"partition {part}: {v} out of order"
                by_key[n % 97] = n
        missing = [v for v in delivered if v not in seen]
        assert not missing, f"{len(missing)} acknowledged messages missing, e.g. {missing[:5]}"
        assert all(seen[v] == part for v, (part, _) in delivered.items())

        # The group read everything.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(readers.values()) < total:
            time.sleep(0.2)
        assert len(readers.values()) == total, "the group did not read every message"

        # Committed offsets intact: through every leader change, the group's commits reached
        # past the last record of every partition (its members commit their position).
        ends = {q: max(r[0] for r in got[q]) + 1 for q in (0, 1, 2) if got[q]}
        c = clients.consumer(cluster.bootstrap, **{"group.id": group})
        try:
            deadline = time.monotonic() + 30
            while True:
                committed = c.committed([TopicPartition(topic, q) for q in ends], timeout=30)
                short = [tp for tp in committed
                         if tp.error is not None or tp.offset < ends[tp.partition]]
                if not short or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            c.close()
        assert not short, f"committed offsets short of the partitions' ends {ends}: {short}"


@clients.needs_kcat
def test_kcat_and_kafka_python_use_the_cluster(cluster):
    from kafka import KafkaConsumer, KafkaProducer

    clients.run_kcat(["-b", cluster.nodes[1].bootstrap, "-P", "-t", "via-kcat"],
                     input_text="\n".join(f"line-{i}" for i in range(50)) + "\n")
    out = clients.run_kcat(["-b", cluster.nodes[3].bootstrap, "-C", "-t", "via-kcat",
                            "-o", "beginning", "-e", "-q"])
    assert out.split() == [f"line-{i}" for i in range(50)]
    create(cluster.bootstrap, "via-python", 2)
    prod = KafkaProducer(bootstrap_servers=cluster.bootstrap)  # idempotent, acks=all
    for i in range(500):
        prod.send("via-python", value=f"py-{i}".encode())
    prod.flush(timeout=60)
    prod.close(timeout=10)
    cons = KafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id="py-group",
                         auto_offset_reset="earliest", consumer_timeout_ms=5000)
    cons.subscribe(["via-python"])
    values = set()
    deadline = time.monotonic() + 60
    while len(values) < 500 and time.monotonic() < deadline:
        for batch in cons.poll(timeout_ms=500).values():
            values.update(r.value for r in batch)
    cons.commit()
    cons.close()
    assert values == {f"py-{i}".encode() for i in range(500)}


def test_a_broker_gone_is_reported_gone_and_comes_back(tmp_path):
    c = Cluster(tmp_path, extra_args=("--set", "broker_session_timeout_ms=1500")).start()
    try:
        c.wait_brokers(3)
        c.nodes[3].kill()
        c.wait_brokers(2, timeout=20)
        c.nodes[3].start()
        c.wait_brokers(3, timeout=20)
    finally:
        c.cleanup()


def test_a_single_nodes_data_directory_is_refused_by_a_cluster_node(make_broker, tmp_path):
    single = make_broker(name="single")
    clients.create_topics(single.bootstrap, {"mine": 1})
    single.stop()
    node = Node(tmp_path / "node", 1, f"1@127.0.0.1:{free_port()}")
    node.data_dir = single.data_dir
    with pytest.raises(Exception):
        node.start(timeout=10)
    assert "belongs to a single node" in node.log_text(), node.log_tail()
    node.cleanup()


def cpu_seconds(pid):
    """User + system CPU a process has used (from /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(300)
def test_an_idle_cluster_goes_quiet_no_disk_work_no_raft_traffic(cluster):
    """Idle partitions quiesce: once the writes stop, no node writes or syncs anything and no
    Raft message crosses (the connections' keepalives aside), however many partitions. And
    the 300 new partitions needed no election: each first term is led by the replica the
    controller named (an election per partition, on a busy host, split its votes for ever)."""
    first_terms = "stillwater_raft_first_terms_led_total"
    led_before = sum(n.metric(first_terms) for n in cluster.nodes.values())
    create(cluster.bootstrap, "many", 300, timeout=120)
    p = clients.producer(cluster.bootstrap)
    log = clients.DeliveryLog()
    clients.produce_all(p, "many", [{"value": f"v{i}".encode(), "partition": i % 300}
                                    for i in range(600)], log)
    assert len(log.ok) == 600 and not log.errors
    del p
    nodes = list(cluster.nodes.values())
    counters = ["stillwater_disk_write_ops_total", "stillwater_disk_sync_ops_total",
                "stillwater_raft_messages_sent_total"]

    def sample():
        return {n.node_id: {c: n.metric(c) for c in counters} for n in nodes}

    # Groups go quiet 2 x raft_election_ticks ticks (2 s) after their last write.
    deadline = time.monotonic() + 60
    before = sample()
    while time.monotonic() < deadline:
        time.sleep(3.0)
        after = sample()
        if after == before:
            break
        before = after
    cpu_before = {n.node_id: cpu_seconds(n.proc.pid) for n in nodes}
    time.sleep(5.0)
    after = sample()
    cpu = {n.node_id: (cpu_seconds(n.proc.pid) - cpu_before[n.node_id]) / 5.0 for n in nodes}
    assert after == before, f"an idle cluster did disk work or sent Raft messages:\n{before}\n{after}"
    for n in nodes:
        # Creating 300 partitions at once is work for the disk, not a disk failure (every node
        # declared its directory failed when a commit round took all 300).
        assert n.metric("stillwater_log_dir_failures_total") == 0, n.log_tail()
        assert n.metric("stillwater_raft_quiet_groups") >= 300, n.metrics_text()
        # The topic's 300 groups and the cluster metadata's.
        assert n.metric("stillwater_raft_leaders") + n.metric("stillwater_raft_followers") == 301
        assert n.metric("stillwater_raft_under_replicated") == 0
    leaders = sum(n.metric("stillwater_raft_leaders") for n in nodes)
    assert leaders == 301, f"every group has one leader: {leaders}"
    led = sum(n.metric(first_terms) for n in nodes) - led_before
    assert led == 300, f"{led} of the 300 new partitions' first terms were led without an election"
    for n in nodes:
        assert n.metric("stillwater_raft_groups_leaderless") == 0, n.metrics_text()
    print("idle CPU per node: " + ", ".join(f"node {k}: {v * 100:.2f}%" for k, v in cpu.items()))


@pytest.mark.timeout(180)
def test_a_kafka_python_consumer_reads_on_after_its_partitions_leader_is_killed(cluster):
    """kafka-python 3 checks its position with OffsetForLeaderEpoch (KIP-320) after a leader
    change; a broker without it left the consumer validating for ever (found black-box: a
    partition stuck at offset 499 of 3,000 once its leader was killed)."""
    from kafka import KafkaConsumer, TopicPartition as KTopicPartition

    topic = "kp-failover"
    create(cluster.bootstrap, topic, 1)
    p = clients.producer(cluster.bootstrap, **{"acks": "all", "enable.idempotence": True,
                                                "message.timeout.ms": 60_000})
    log = clients.DeliveryLog()
    clients.produce_all(p, topic, [{"value": f"a-{i}".encode()} for i in range(500)], log)
    cons = KafkaConsumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, metadata_max_age_ms=1000)
    tp = KTopicPartition(topic, 0)
    cons.assign([tp])
    values = []
    deadline = time.monotonic() + 60
    while len(values) < 500 and time.monotonic() < deadline:
        for batch in cons.poll(timeout_ms=500).values():
            values.extend(r.value for r in batch)
    assert len(values) == 500
    # The leader goes; the consumer's next records come from the next leader, in a new epoch.
    victim = cluster.leader_of(topic, 0)
    cluster.nodes[victim].kill()
    clients.produce_all(p, topic, [{"value": f"b-{i}".encode()} for i in range(500)], log)
    assert len(log.ok) == 1000 and not log.errors, log.errors[:3]
    cluster.nodes[victim].start()
    deadline = time.monotonic() + 60
    while len(values) < 1000 and time.monotonic() < deadline:
        for batch in cons.poll(timeout_ms=500).values():
            values.extend(r.value for r in batch)
    cons.close()
    want = [f"a-{i}".encode() for i in range(500)] + [f"b-{i}".encode() for i in range(500)]
    assert values == want, f"read {len(values)} of 1000 after the leader changed"


def test_min_insync_replicas_of_three_needs_three_in_sync_replicas(cluster):
    """min.insync.replicas is a promise: with 3 (of 3) an acks=all write is acknowledged
    only once all three hold it, and with a replica down it is refused NOT_ENOUGH_REPLICAS;
    with 2 the cluster writes on (found black-box: 3 was accepted and not honoured)."""
    from confluent_kafka.admin import NewTopic

    a = clients.admin(cluster.bootstrap)
    for name, n in (("isr-3", "3"), ("isr-2", "2")):
        f = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=3,
                                      config={"min.insync.replicas": n})],
                            operation_timeout=10, request_timeout=30)
        f[name].result(timeout=30)
        clients.wait_for_topic(a, name, 1)

    def send(topic):
        p = clients.producer(cluster.bootstrap, **{"acks": "all", "enable.idempotence": False,
                                                    "retries": 0, "message.timeout.ms": 20_000})
        log = clients.DeliveryLog()
        clients.produce_all(p, topic, [{"value": b"x"}], log)
        return log

    for topic in ("isr-3", "isr-2"):
        deadline = time.monotonic() + 20
        while not send(topic).ok:  # leaders just elected, links coming up
            assert time.monotonic() < deadline, f"{topic}: nothing acknowledged with all up"
            time.sleep(0.2)
    leaders = {cluster.leader_of(t, 0) for t in ("isr-3", "isr-2")}
    victim = next(i for i in (1, 2, 3) if i not in leaders)
    cluster.nodes[victim].kill()
    time.sleep(1.0)
    refused = send("isr-3")
    assert not refused.ok, "acknowledged with two of the three replicas min.insync.replicas asks for"
    assert refused.errors[0][0].code() == KafkaError.NOT_ENOUGH_REPLICAS, refused.errors
    assert send("isr-2").ok, "min.insync.replicas=2 with two replicas in sync refused"
    cluster.nodes[victim].start()


def test_config_changes_through_different_brokers_in_a_row_all_stand(cluster):
    """Incremental config changes sent one after another through different brokers: each
    is made from the cluster's configs, not from a broker's copy that has not yet seen the
    one before (found black-box: the second undid the first)."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    create(cluster.bootstrap, "configs-in-a-row", 1)
    changes = [("retention.ms", "3600000"), ("min.insync.replicas", "2"),
               ("segment.ms", "7200000"), ("max.message.bytes", "500000")]
    for round_ in range(3):
        for i, (key, value) in enumerate(changes):
            node = cluster.nodes[1 + (i + round_) % 3]
            r = ConfigResource(ConfigResource.Type.TOPIC, "configs-in-a-row",
                               incremental_configs=[ConfigEntry(key, str(int(value) + round_),
                                                                incremental_operation=AlterConfigOpType.SET)])
            a = clients.admin(node.bootstrap)
            a.incremental_alter_configs([r])[r].result(timeout=30)
        deadline = time.monotonic() + 10
        while True:
            r = ConfigResource(ConfigResource.Type.TOPIC, "configs-in-a-row")
            a = clients.admin(cluster.nodes[3].bootstrap)
            got = a.describe_configs([r])[r].result(timeout=30)
            have = {k: got[k].value for k, _ in changes}
            if have == {k: str(int(v) + round_) for k, v in changes} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert have == {k: str(int(v) + round_) for k, v in changes}, f"round {round_}: {have}"


def test_a_config_change_is_described_by_the_broker_that_acknowledged_it(cluster):
    """Each broker in turn takes an incremental change and is asked at once to describe the
    topic: it gives the new value (found by a twin run of config-churn: the broker answered once
    the cluster metadata had the change, while the copy DescribeConfigs reads — and the log
    enforces — took it a moment later; 1,506 stale descriptions in 104 s). 60 changes; the data
    is one empty topic."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    create(cluster.bootstrap, "described-at-once", 1)
    admins = [clients.admin(n.bootstrap) for n in cluster.nodes.values()]
    stale = []
    for n in range(60):
        a = admins[n % len(admins)]
        key, value = ("retention.ms", str(3_600_000 + n)) if n % 2 else ("segment.ms", str(7_200_000 + n))
        r = ConfigResource(ConfigResource.Type.TOPIC, "described-at-once",
                           incremental_configs=[ConfigEntry(key, value,
                                                            incremental_operation=AlterConfigOpType.SET)])
        a.incremental_alter_configs([r])[r].result(timeout=30)
        d = ConfigResource(ConfigResource.Type.TOPIC, "described-at-once")
        got = a.describe_configs([d])[d].result(timeout=30)[key].value
        if got != value:
            stale.append((n, key, value, got))
    assert stale == [], f"{len(stale)} of 60 descriptions missed the change just acknowledged: {stale[:5]}"

@pytest.mark.timeout(240)
def test_a_broker_whose_data_directory_was_emptied_rejoins_and_catches_up(cluster):
    """A replaced disk: the broker starts with an empty directory and its old id. It must not
    crash (raft-rs panicked on the leaders' commits past its empty logs, at every start) and
    must be sent everything again — after which the cluster survives another broker's loss."""
    import shutil

    topic = "emptied"
    create(cluster.bootstrap, topic, 3)
    p = clients.producer(cluster.bootstrap, **{"acks": "all", "enable.idempotence": True,
                                                "message.timeout.ms": 60_000})
    log = clients.DeliveryLog()
    clients.produce_all(p, topic, [{"value": f"v{i}".encode(), "partition": i % 3}
                                   for i in range(3000)], log)
    assert len(log.ok) == 3000
    wiped = cluster.nodes[2]
    wiped.kill()
    shutil.rmtree(wiped.data_dir)
    wiped.start()
    clients.produce_all(p, topic, [{"value": f"w{i}".encode(), "partition": i % 3}
                                   for i in range(300)], log)
    assert len(log.ok) == 3300 and not log.errors, log.errors[:3]
    # It catches up: its metrics show it a replica of every group, none under-replicated.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        assert wiped.alive(), wiped.log_tail()
        if all(n.metric("stillwater_raft_under_replicated") == 0 for n in cluster.nodes.values()) \
                and wiped.metric("stillwater_raft_leaders") + wiped.metric("stillwater_raft_followers") >= 4:
            break
    time.sleep(3.0)  # what remains of the catching up
    # Another broker goes: the emptied one, caught up, makes the majority with the third.
    other = next(i for i in (1, 3) if cluster.leader_of(topic, 0) != i)
    cluster.nodes[other].kill()
    clients.produce_all(p, topic, [{"value": f"x{i}".encode(), "partition": i % 3}
                                   for i in range(300)], log, flush_timeout=90)
    assert len(log.ok) == 3600 and not log.errors, log.errors[:3]
    cluster.nodes[other].start()
    got, _ = consume_all(cluster.bootstrap, topic, [0, 1, 2])
    values = {r[2] for part in got.values() for r in part}
    missing = [m["value"] for _, _, m in log.ok if m["value"] not in values]
    assert not missing, f"{len(missing)} acknowledged messages missing, e.g. {missing[:5]}"
    assert len(values) == 3600
    assert wiped.alive() and "panicked" not in wiped.log_text()
    # The operator is told what happened — on the replaced broker, and only there (the others
    # formed the cluster with new directories too, and have nothing to warn about).
    assert "was a member of the cluster before" in wiped.log_text(), wiped.log_tail()
    for i, n in cluster.nodes.items():
        if n is not wiped:
            assert "data directory is new (replaced" not in n.log_text(), (i, n.log_tail())


def test_a_preferred_leader_election_on_request_hands_partitions_back(tmp_path):
    """ElectLeaders (PREFERRED) through any broker: a partition led by another replica than
    its preferred one is handed back to it (here automatic rebalancing is off), one already
    led by its preferred replica needs no election, and UNCLEAN elects nobody (Raft has no
    unclean election)."""
    from confluent_kafka import ElectionType

    c = Cluster(tmp_path, extra_args=("--set", "leader_rebalance_ms=0")).start()
    try:
        c.wait_brokers(3)
        create(c.bootstrap, "elections", 3)
        md = clients.admin(c.bootstrap).list_topics(topic="elections", timeout=10)
        preferred = {i: p.replicas[0] for i, p in md.topics["elections"].partitions.items()}
        victim = c.leader_of("elections", 0)
        assert victim == preferred[0], "a new partition is led by its preferred replica"
        c.nodes[victim].kill()
        moved = c.leader_of("elections", 0)
        assert moved != victim
        c.nodes[victim].start()
        c.wait_brokers(3)
        time.sleep(2.0)  # caught up, and registered again
        assert c.leader_of("elections", 0) == moved, "nothing moved it back by itself"
        asker = next(i for i in (1, 2, 3) if i != victim)
        a = clients.admin(c.nodes[asker].bootstrap)
        tps = [TopicPartition("elections", i) for i in range(3)]
        result = a.elect_leaders(ElectionType.PREFERRED, tps,
                                 ).result(timeout=40)
        errors = {tp.partition: err for tp, err in result.items()}
        assert errors[0] is None, errors
        for i in (1, 2):
            if preferred[i] != victim:
                assert errors[i].code() == KafkaError.ELECTION_NOT_NEEDED, errors
        md = clients.admin(c.bootstrap).list_topics(topic="elections", timeout=10)
        assert md.topics["elections"].partitions[0].leader == preferred[0]
        result = a.elect_leaders(ElectionType.UNCLEAN, tps[:1],
                                 ).result(timeout=40)
        assert next(iter(result.values())).code() == KafkaError.ELECTION_NOT_NEEDED
    finally:
        died = c.cleanup()
        assert not died, [n.log_tail() for n in died]


def test_the_cluster_wide_broker_config_default_reaches_every_broker(cluster):
    """A dynamic broker config set as the cluster-wide default (resource "") through one
    broker is every broker's; one set for a broker is that broker's alone (found black-box
    reading: both were kept only by the broker that took the request)."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource
    import wire

    create(cluster.bootstrap, "follows-defaults", 1)
    # Neither Python client names the cluster default (the resource ""): AlterConfigs v0 by
    # hand — resources [{type 4 (broker), name "", configs [(key, value)]}], validate_only.
    body = (wire.i32(1) + wire.i8(4) + wire.string("") + wire.i32(1)
            + wire.string("log.retention.ms") + wire.string("3600000") + wire.i8(0))
    sock = wire.connect(cluster.nodes[1].bootstrap)
    try:
        r = wire.roundtrip(sock, 33, 0, body)
    finally:
        sock.close()
    r.i32()  # throttle
    assert r.i32() == 1
    code, message = r.i16(), r.string()
    assert code == 0, message
    r = ConfigResource(ConfigResource.Type.BROKER, "2", incremental_configs=[
        ConfigEntry("log.retention.bytes", "123456789", incremental_operation=AlterConfigOpType.SET)])
    a2 = clients.admin(cluster.nodes[2].bootstrap)
    a2.incremental_alter_configs([r])[r].result(timeout=30)

    def broker_config(node, key):
        # librdkafka asks broker N itself about the resource BROKER "N".
        a = clients.admin(cluster.nodes[node].bootstrap)
        r = ConfigResource(ConfigResource.Type.BROKER, str(node))
        return a.describe_configs([r])[r].result(timeout=30)[key]

    deadline = time.monotonic() + 10
    while True:
        seen = {n: broker_config(n, "log.retention.ms") for n in (1, 2, 3)}
        own = {n: broker_config(n, "log.retention.bytes").value for n in (1, 2, 3)}
        settled = all(c.value == "3600000" for c in seen.values()) and own[2] == "123456789"
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for n, c in seen.items():
        assert (c.value, c.source) == ("3600000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value), \
            f"broker {n}: log.retention.ms {c.value} from source {c.source}"
    assert own == {1: "-1", 2: "123456789", 3: "-1"}, own
    # A topic without a value of its own follows the default (asked of any broker).
    a = clients.admin(cluster.bootstrap)
    r = ConfigResource(ConfigResource.Type.TOPIC, "follows-defaults")
    assert a.describe_configs([r])[r].result(timeout=30)["retention.ms"].value == "3600000"


@pytest.mark.timeout(240)
def test_delete_records_and_offsets_checkpoints_hold_on_every_replica(tmp_path):
    """DeleteRecords in a cluster moves the log start of every replica (a Raft entry the
    leader proposes), so a consumer starts there whichever broker leads after; and the group
    coordinator's checkpoints of __consumer_offsets, which bound that topic, run in a cluster
    too, with the group's offsets intact across a coordinator's death. (Both were refused or
    off in a cluster: DeleteRecords answered POLICY_VIOLATION, and the offsets topic grew with
    every commit.)"""
    from confluent_kafka import OFFSET_BEGINNING
    from confluent_kafka.admin import OffsetSpec

    c = Cluster(tmp_path, extra_args=("--set", "offsets_checkpoint_records=100",
                                      "--set", "broker_session_timeout_ms=1500")).start()
    try:
        c.wait_brokers(3)
        create(c.bootstrap, "trimmed", 1)
        # The offsets topic is made with three replicas or not at all: while a broker is away
        # a group cannot commit (Kafka's offsets.topic.replication.factor; it was made with as
        # many replicas as brokers were live, for good). First, before any client of a group
        # (a consumer with a group id asks for its coordinator, which makes the topic) could
        # have had it made.
        c.nodes[3].kill()
        c.wait_brokers(2)
        early = clients.consumer(c.alive_bootstrap(), **{"group.id": "too-early",
                                                         "enable.auto.commit": False})
        with pytest.raises(KafkaException):
            early.commit(offsets=[TopicPartition("trimmed", 0, 61)], asynchronous=False)
        early.close()
        c.nodes[3].start()
        c.wait_brokers(3)
        p = clients.producer(c.bootstrap, **{"acks": "all", "enable.idempotence": True})
        log = clients.DeliveryLog()
        clients.produce_all(p, "trimmed", [{"value": f"t{i}".encode()} for i in range(100)], log)
        a = clients.admin(c.bootstrap)
        tp = TopicPartition("trimmed", 0, 60)
        deleted = a.delete_records([tp])[tp].result(timeout=30)
        assert deleted.low_watermark == 60
        victim = c.leader_of("trimmed", 0)
        c.nodes[victim].kill()
        q = TopicPartition("trimmed", 0)
        deadline = time.monotonic() + 30
        while True:
            try:
                la = clients.admin(c.alive_bootstrap())
                earliest = la.list_offsets({q: OffsetSpec.earliest()})[q].result(timeout=10).offset
                # librdkafka's OFFSET_INVALID (-1001): no broker answered for the partition yet
                # (its leader just died); ask again, as for an error.
                if earliest >= 0:
                    break
                assert time.monotonic() < deadline, f"no earliest offset: {earliest}"
                time.sleep(0.3)
            except (KafkaException, TimeoutError):
                assert time.monotonic() < deadline
                time.sleep(0.3)
        assert earliest == 60, "the new leader serves records DeleteRecords removed"
        got, _ = consume_all(c.alive_bootstrap(), "trimmed", [0])
        kept = [m["value"] for _, off, m in sorted(log.ok, key=lambda x: x[1]) if off >= 60]
        assert [r[2] for r in got[0]] == kept and len(kept) >= 39
        c.nodes[victim].start()

        c.wait_brokers(3)
        # A group commits far past the checkpoint threshold; its offsets topic partition is
        # checkpointed (its start moves) and the committed offsets stay.
        group = "checkpointed"
        cons = clients.consumer(c.bootstrap, **{"group.id": group, "enable.auto.commit": False})
        parts = [TopicPartition("trimmed", 0, 60 + (i % 40)) for i in range(600)]
        moved = 0
        for tpo in parts:
            # Broker 3's return moves leaderships back to it, perhaps the group's coordinator
            # among them: a commit in flight at that moment is answered NOT_COORDINATOR by the
            # broker that just handed it over, which librdkafka raises after two retries to the
            # same broker (as with Kafka); an application commits again.
            while True:
                try:
                    cons.commit(offsets=[tpo], asynchronous=False)
                    break
                except KafkaException as e:
                    assert e.args[0].code() == KafkaError.NOT_COORDINATOR and moved < 5, e
                    moved += 1
        cons.commit(offsets=[TopicPartition("trimmed", 0, 99)], asynchronous=False)
        cons.close()
        md = clients.admin(c.bootstrap).list_topics(topic="__consumer_offsets", timeout=10)
        assert {len(p.replicas) for p in md.topics["__consumer_offsets"].partitions.values()} == {3}
        # Every replica of the group's partition moved its start (each says so in its log).
        deadline = time.monotonic() + 60
        while True:
            trimmed = [n for n in c.nodes.values()
                       if 'deleted records topic="__consumer_offsets"' in n.log_text()
                       or "deleted records topic=__consumer_offsets" in n.log_text()]
            if len(trimmed) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(trimmed) == 3, [n.node_id for n in trimmed]
        # Its coordinator goes; the next one loads the group from the checkpointed log.
        md = clients.admin(c.bootstrap).list_topics(topic="__consumer_offsets", timeout=10)
        h = 0
        for ch in group:
            h = (31 * h + ord(ch)) & 0xFFFFFFFF
        h = h - (1 << 32) if h >= 1 << 31 else h
        coordinator = md.topics["__consumer_offsets"].partitions[abs(h) % 50].leader
        c.nodes[coordinator].kill()
        cons = clients.consumer(c.alive_bootstrap(), **{"group.id": group})
        committed = cons.committed([TopicPartition("trimmed", 0)], timeout=60)
        cons.close()
        assert committed[0].offset == 99, committed
        c.nodes[coordinator].start()
    finally:
        died = c.cleanup()
        assert not died, [n.log_tail() for n in died]


def test_a_replicated_partitions_offsets_are_dense_from_zero_through_elections(cluster):
    """Kafka never spends an offset on a leader change (only transaction markers and
    compaction leave gaps). A replicated partition's log also holds Raft's own entries (a new
    leader's empty entry, the mark DeleteRecords proposes); they take no Kafka offset. So 1,000
    records to a fresh partition get offsets 0..999 (offset 0 was the first leader's entry), and
    after two leaders are killed and a DeleteRecords the offsets go on densely; ListOffsets,
    the high watermark and a consumer reading it all back, from whichever broker leads, agree.
    Data: 2,001 records of 100 B on one partition, three replicas."""
    topic = "dense"
    create(cluster.bootstrap, topic, 1)
    p = clients.producer(cluster.bootstrap, **{"acks": "all", "enable.idempotence": True,
                                                "message.timeout.ms": 60_000})
    log = clients.DeliveryLog()
    value = lambda i: f"{i:06d}".encode() * 16 + b"0123"  # 100 B
    clients.produce_all(p, topic, [{"value": value(i)} for i in range(1000)], log)
    assert sorted(off for _, off, _ in log.ok) == list(range(1000))
    for round in range(2):
        victim = cluster.leader_of(topic, 0)
        cluster.nodes[victim].kill()
        first = 1000 + 500 * round
        clients.produce_all(p, topic, [{"value": value(i)} for i in range(first, first + 500)],
                            log)
        cluster.nodes[victim].start()
    assert not log.errors, log.errors[:3]
    assert sorted(off for _, off, _ in log.ok) == list(range(2000)), "dense across elections"

    # ListOffsets (earliest and latest), as a consumer asks it, and as kafka-python asks it.
    cons = clients.consumer(cluster.bootstrap)
    deadline = time.monotonic() + 60
    while True:
        try:
            marks = clients.watermarks(cons, topic, [0])[0]
            break
        except KafkaException:
            assert time.monotonic() < deadline, "no ListOffsets answer"
            time.sleep(0.3)
    cons.close()
    assert marks == (0, 2000), marks
    from kafka import KafkaConsumer, TopicPartition as KTopicPartition
    kp = KafkaConsumer(bootstrap_servers=cluster.bootstrap)
    ktp = KTopicPartition(topic, 0)
    assert (kp.beginning_offsets([ktp])[ktp], kp.end_offsets([ktp])[ktp]) == (0, 2000)
    kp.close()
    # Asked again while a restarted broker does not yet know the partition's leader (librdkafka
    # then fails at once, or waits): DeleteRecords to the same offset does nothing more.
    tp = TopicPartition(topic, 0, 10)
    deadline = time.monotonic() + 60
    while True:
        try:
            a = clients.admin(cluster.bootstrap)
            deleted = a.delete_records([tp], request_timeout=10)[tp].result(timeout=15)
            break
        except (KafkaException, TimeoutError) as e:
            assert time.monotonic() < deadline, f"DeleteRecords not answered: {e!r}"
            time.sleep(0.3)
    assert deleted.low_watermark == 10
    clients.produce_all(p, topic, [{"value": value(2000)}], log)
    assert max(off for _, off, _ in log.ok) == 2000, "DeleteRecords took no offset either"
    # Read back twice, each time from another leader: the same records at the same offsets.
    for _ in range(2):
        cluster.wait_brokers(3)
        got, marks = consume_all(cluster.bootstrap, topic, [0])
        assert marks[0] == (10, 2001), marks
        assert [(r[0], r[2]) for r in got[0]] == [(i, value(i)) for i in range(10, 2001)]
        victim = cluster.leader_of(topic, 0)
        cluster.nodes[victim].kill()
        cluster.leader_of(topic, 0)
        cluster.nodes[victim].start()


def test_brokers_name_their_racks_and_new_topics_span_them(tmp_path):
    """broker.rack (`broker_rack`): Metadata and DescribeCluster name each broker's rack, and
    a new topic's replicas go to every rack they can, spread evenly over the brokers (Kafka's
    rack-aware placement); replicas placed by hand through CreateTopics and CreatePartitions
    stay where they were put. Four brokers in two racks; 8 partitions of two replicas; 300
    records over a hand-placed topic of 3 partitions."""
    c = Cluster(tmp_path, size=4)
    racks = {1: "rack-a", 2: "rack-a", 3: "rack-b", 4: "rack-b"}
    for i, n in c.nodes.items():
        n.extra_args += ["--set", f"broker_rack={racks[i]}"]
    c.start()
    try:
        c.wait_brokers(4)
        a = clients.admin(c.bootstrap)  # kept: a future outlives no client
        nodes = a.describe_cluster().result(timeout=10).nodes
        assert {n.id: n.rack for n in nodes} == racks
        from kafka import KafkaAdminClient
        kp = KafkaAdminClient(bootstrap_servers=c.bootstrap)
        brokers = kp.describe_cluster()["brokers"]
        assert {b.get("node_id", b.get("broker_id")): b["rack"] for b in brokers} == racks, brokers
        kp.close()
        create(c.bootstrap, "racked", 8, rf=2)
        md = clients.admin(c.bootstrap).list_topics(topic="racked", timeout=10)
        placed = [p.replicas for p in md.topics["racked"].partitions.values()]
        assert all({racks[b] for b in r} == {"rack-a", "rack-b"} for r in placed), placed
        held = {b: sum(b in r for r in placed) for b in racks}
        preferred = {b: sum(r[0] == b for r in placed) for b in racks}
        assert set(held.values()) == {4} and set(preferred.values()) == {2}, (held, preferred)

        # Replicas placed by hand (CreateTopics' and CreatePartitions' assignments), by both
        # clients; the first of each list leads once elected; an unknown broker is refused.
        from confluent_kafka.admin import NewPartitions, NewTopic
        from kafka.admin import NewTopic as KNewTopic
        from kafka.errors import InvalidReplicationAssignmentError
        a = clients.admin(c.bootstrap)
        a.create_topics([NewTopic("placed", num_partitions=2, replica_assignment=[[4, 1], [3, 2]])],
                        operation_timeout=10)["placed"].result(timeout=30)
        clients.wait_for_topic(a, "placed", 2, 30)
        a.create_partitions([NewPartitions("placed", 3, replica_assignment=[[2, 4]])],
                            operation_timeout=10)["placed"].result(timeout=30)
        clients.wait_for_topic(a, "placed", 3, 30)
        want = {0: [4, 1], 1: [3, 2], 2: [2, 4]}
        deadline = time.monotonic() + 30
        while True:
            md = a.list_topics(topic="placed", timeout=10).topics["placed"].partitions
            got = {i: (p.replicas, p.leader) for i, p in md.items()}
            if got == {i: (r, r[0]) for i, r in want.items()}:
                break
            assert time.monotonic() < deadline, got
            time.sleep(0.3)
        kp = KafkaAdminClient(bootstrap_servers=c.bootstrap)
        kp.create_topics([KNewTopic("placed-kp", -1, -1, replica_assignments={0: [1, 3]})])
        with pytest.raises(InvalidReplicationAssignmentError):
            kp.create_topics([KNewTopic("misplaced", -1, -1, replica_assignments={0: [1, 9]})])
        kp.close()
        md = a.list_topics(topic="placed-kp", timeout=10).topics["placed-kp"].partitions
        assert md[0].replicas == [1, 3]
        p = clients.producer(c.bootstrap, **{"acks": "all"})
        log = clients.DeliveryLog()
        clients.produce_all(p, "placed", [{"value": f"v{i}".encode(), "partition": i % 3}
                                          for i in range(300)], log)
        assert not log.errors and len(log.ok) == 300
        got, _ = consume_all(c.bootstrap, "placed", [0, 1, 2])
        assert {i: [r[0] for r in got[i]] for i in got} == {i: list(range(100)) for i in range(3)}
    finally:
        died = c.cleanup()
        assert not died, [n.log_tail() for n in died]
