"""A leader cut off from its peers while its clients still reach it: the clients must leave it
within seconds. Broker 1 leads the cluster metadata (a new cluster's lowest node stands for
election first) and every partition of the topic (its preferred replica); proxies on the
inter-broker links cut it off from brokers 2 and 3 for 30 s. The healthy side elects new
leaders within an election timeout or two; found black-box, the clients did not follow for
the whole cut: the cut-off broker answered Metadata fastest (librdkafka asks the broker it
used last, kafka-python the one with the fewest requests in flight) and it knew no leaders.

librdkafka (confluent-kafka) and kafka-python run side by side, each an acks=all producer at
~100 records/s and a consumer group of one member, and each must resume within 5 s of the cut
and go on while it lasts; nothing acknowledged is lost.

Data volume: ~10,000 records of ~10 bytes over 3 partitions (about 45 s of both producers)."""

import threading
import time

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import NewTopic

import clients
from test_cluster_outages import ProxiedCluster, metadata_of

CUT_S = 30
RESUME_S = 5  # the most a client may go without an acknowledgement (a record) during the cut
PARTITIONS = 3


def longest_gap(times, start, end):
    """The longest stretch of [start, end] without one of `times` in it."""
    inside = sorted(t for t in times if start <= t <= end)
    edges = [start] + inside + [end]
    return max(b - a for a, b in zip(edges, edges[1:]))


class Run:
    """One client library's producer and consumer group, in threads: what each acknowledged
    and read, with when."""

    def __init__(self, name):
        self.name = name
        self.acked = []  # (time, value)
        self.failed = []
        self.read = []  # (time, value)
        self.stop_producing = threading.Event()
        self.stop_reading = threading.Event()
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._consume, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join(timeout=120)

    def values(self, what):
        return {v for _, v in what}


class Librdkafka(Run):
    def __init__(self, bootstrap, topic):
        self.bootstrap, self.topic = bootstrap, topic
        super().__init__("librdkafka")

    def _produce(self):
        p = clients.producer(self.bootstrap, **{
            "enable.idempotence": True, "message.timeout.ms": 120_000, "linger.ms": 5})

        def report(err, msg):
            if err is None:
                self.acked.append((time.monotonic(), msg.value()))
            else:
                self.failed.append((err, msg.value()))
        n = 0
        while not self.stop_producing.is_set():
            p.produce(self.topic, value=f"r-{n}".encode(), partition=n % PARTITIONS,
                      on_delivery=report)
            p.poll(0)
            n += 1
            time.sleep(0.01)
        assert p.flush(120) == 0, "librdkafka kept messages unreported"

    def _consume(self):
        c = clients.consumer(self.bootstrap, **{
            "group.id": f"{self.topic}-librdkafka", "auto.offset.reset": "earliest",
            "enable.auto.commit": True, "enable.auto.offset.store": True,
            "enable.partition.eof": False})
        c.subscribe([self.topic])
        try:
            while not self.stop_reading.is_set():
                for m in c.consume(num_messages=500, timeout=0.2):
                    if m.error() is None and m.value().startswith(b"r-"):
                        self.read.append((time.monotonic(), m.value()))
                    elif m.error() is not None:
                        assert m.error().code() != KafkaError._FATAL, m.error()
        finally:
            c.close()


class KafkaPython(Run):
    def __init__(self, bootstrap, topic):
        self.bootstrap, self.topic = bootstrap, topic
        super().__init__("kafka-python")

    def _produce(self):
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                          retries=1_000_000, request_timeout_ms=10_000,
                          delivery_timeout_ms=120_000, max_in_flight_requests_per_connection=1)
        n = 0
        while not self.stop_producing.is_set():
            value = f"k-{n}".encode()
            f = p.send(self.topic, value=value, partition=n % PARTITIONS)
            f.add_callback(lambda _md, v=value: self.acked.append((time.monotonic(), v)))
            f.add_errback(lambda e, v=value: self.failed.append((e, v)))
            n += 1
            time.sleep(0.01)
        p.flush(timeout=120)
        p.close(timeout=10)

    def _consume(self):
        from kafka import KafkaConsumer
        c = KafkaConsumer(self.topic, bootstrap_servers=self.bootstrap,
                          group_id=f"{self.topic}-kafka-python", auto_offset_reset="earliest",
                          enable_auto_commit=True, auto_commit_interval_ms=1000,
                          request_timeout_ms=10_000)
        try:
            while not self.stop_reading.is_set():
                for records in c.poll(timeout_ms=200).values():
                    now = time.monotonic()
                    self.read += [(now, r.value) for r in records if r.value.startswith(b"k-")]
        finally:
            c.close()


@pytest.mark.timeout(300)
def test_producers_and_groups_leave_a_leader_cut_off_from_its_peers_within_seconds(tmp_path):
    c = ProxiedCluster(tmp_path).start()
    try:
        c.wait_brokers(3)
        a = clients.admin(c.bootstrap)
        deadline = time.monotonic() + 30
        while a.describe_cluster(request_timeout=10).result().controller.id != 1:
            assert time.monotonic() < deadline, "broker 1 never led the cluster metadata"
            time.sleep(0.2)
        topic = "cut-off-leader"
        assignment = [[1, 2, 3], [1, 3, 2], [1, 2, 3]]
        a.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replica_assignment=assignment)],
                        operation_timeout=10)[topic].result(timeout=30)
        deadline = time.monotonic() + 30
        while {leader for _, leader in metadata_of(c.nodes[2], topic).values()} != {1}:
            assert time.monotonic() < deadline, metadata_of(c.nodes[2], topic)
            time.sleep(0.2)

        runs = [Librdkafka(c.bootstrap, topic), KafkaPython(c.bootstrap, topic)]
        for r in runs:
            r.start()
        deadline = time.monotonic() + 60
        while not all(r.read for r in runs):
            assert time.monotonic() < deadline, [(r.name, len(r.acked), len(r.read)) for r in runs]
            time.sleep(0.2)
        time.sleep(3)
        cut = time.monotonic()
        c.isolate(1)
        time.sleep(CUT_S)
        healed = time.monotonic()
        c.heal()
        time.sleep(5)
        for r in runs:
            r.stop_producing.set()
        gaps = {}
        for r in runs:
            gaps[r.name] = (longest_gap([t for t, _ in r.acked], cut, healed),
                            longest_gap([t for t, _ in r.read], cut, healed))
        # Everything acknowledged is read by the group, at the end at the latest.
        for r in runs:
            r.threads[0].join(timeout=150)
        deadline = time.monotonic() + 120
        while (any(not r.values(r.acked) <= r.values(r.read) for r in runs)
               and time.monotonic() < deadline):
            time.sleep(0.5)
        for r in runs:
            r.stop_reading.set()
            r.join()
        for r in runs:
            lost = r.values(r.acked) - r.values(r.read)
            assert not lost, (r.name, len(lost), sorted(lost)[:10])
            assert not r.failed, (r.name, len(r.failed), r.failed[:5])
            assert len(r.acked) > 100 * (CUT_S + 10) * 0.5, (r.name, len(r.acked))
        print("longest stretch without (acknowledgement, record read) during the cut:", gaps)
        for name, (acks, reads) in gaps.items():
            assert acks <= RESUME_S and reads <= RESUME_S, (name, gaps)
    finally:
        died = c.cleanup()
        assert not died, [n.log_tail() for n in died]
