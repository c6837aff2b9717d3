"""Client quotas, measured from outside with clients this project did not write: librdkafka
(confluent-kafka) producing and consuming under byte-rate quotas beside unthrottled clients,
kafka-python sending many small requests under a request-percentage quota and setting and
reading the quotas (AlterClientQuotas, DescribeClientQuotas), bad input refused.

Data volume: about 30 MB produced under a 1 MiB/s quota and 120 MB unthrottled beside it;
25 MB written and read back under a consumer quota and without one; a few thousand small
requests."""

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

import clients

MiB = 1024 * 1024
QUOTA = MiB  # bytes per second
VALUE = b"q" * 10_000


def quota_admin(bootstrap, **conf):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000, **conf)


def alter_quotas(bootstrap, entries, validate_only=False, **conf):
    """entries: [({entity_type: name or None}, {key: value or None (remove)})]; each entry's
    (error code, message)."""
    from kafka.protocol.admin.client_quotas import AlterClientQuotasRequest as R
    E = R.EntryData
    req = R(validate_only=validate_only, entries=[
        E(entity=[E.EntityData(entity_type=t, entity_name=n) for t, n in entity.items()],
          ops=[E.OpData(key=k, value=0.0 if v is None else float(v), remove=v is None)
               for k, v in ops.items()])
        for entity, ops in entries
    ])
    a = quota_admin(bootstrap, **conf)
    try:
        resp = a._manager.run(a._manager.send, req)
    finally:
        a.close()
    return [(e.error_code, e.error_message) for e in resp.entries]


def describe_quotas(bootstrap, components, strict=False, **conf):
    """components: [(entity_type, match_type, match)]; {((type, name), ...): {key: value}}, or
    the (error code, message) of a refused filter."""
    from kafka.protocol.admin.client_quotas import DescribeClientQuotasRequest as R
    req = R(strict=strict, components=[
        R.ComponentData(entity_type=t, match_type=m, match=n) for t, m, n in components])
    a = quota_admin(bootstrap, **conf)
    try:
        resp = a._manager.run(a._manager.send, req)
    finally:
        a.close()
    if resp.error_code:
        return (resp.error_code, resp.error_message)
    return {
        tuple(sorted((e.entity_type, e.entity_name) for e in entry.entity)):
            {v.key: v.value for v in entry.values}
        for entry in resp.entries
    }


class Throttles:
    """The largest throttle time librdkafka saw from any broker, from its statistics."""

    def __init__(self):
        self.max_ms = 0

    def __call__(self, stats_json):
        import json
        stats = json.loads(stats_json)
        for b in stats.get("brokers", {}).values():
            self.max_ms = max(self.max_ms, b.get("throttle", {}).get("max", 0))


def produce_for(bootstrap, topic, client_id, seconds, pace=None):
    """Produce VALUE-sized records as fast as allowed (or at `pace` bytes per second) for
    `seconds`: (bytes acknowledged by then, the largest throttle time seen)."""
    throttles = Throttles()
    p = Producer({
        "bootstrap.servers": bootstrap, "client.id": client_id, "acks": "all",
        "linger.ms": 5, "queue.buffering.max.kbytes": 2048,
        "statistics.interval.ms": 500, "stats_cb": throttles, **clients.COMMON,
    })
    acked = [0]
    errors = []

    def done(err, msg):
        if err is None:
            acked[0] += len(msg.value())
        else:
            errors.append(err)

    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        if pace is not None and sent >= pace * elapsed:
            p.poll(0.005)
            continue
        try:
            p.produce(topic, VALUE, callback=done)
            sent += len(VALUE)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    at_deadline = acked[0]
    assert p.flush(60) == 0, "records left unsent"
    p.poll(1.0)
    assert not errors, errors[:3]
    return at_deadline, throttles.max_ms


def test_quotas_are_set_described_and_removed(broker):
    b = broker.bootstrap
    user = {"user": "alice"}
    both = {"user": "alice", "client-id": "app"}
    default_client = {"client-id": None}
    assert alter_quotas(b, [(user, {"producer_byte_rate": 2 * MiB}),
                            (both, {"request_percentage": 12.5}),
                            (default_client, {"consumer_byte_rate": MiB})]) == [(0, None)] * 3
    assert describe_quotas(b, [("user", 0, "alice")], strict=True) == {
        (("user", "alice"),): {"producer_byte_rate": 2 * MiB}}
    assert describe_quotas(b, [("user", 0, "alice")]) == {
        (("user", "alice"),): {"producer_byte_rate": 2 * MiB},
        (("client-id", "app"), ("user", "alice")): {"request_percentage": 12.5}}
    assert describe_quotas(b, [("client-id", 1, None)]) == {
        (("client-id", None),): {"consumer_byte_rate": MiB}}
    # Validate-only changes nothing; removal removes the entity with its last key.
    assert alter_quotas(b, [(user, {"producer_byte_rate": None})], validate_only=True) == [(0, None)]
    assert len(describe_quotas(b, [])) == 3
    assert alter_quotas(b, [(user, {"producer_byte_rate": None})]) == [(0, None)]
    assert len(describe_quotas(b, [])) == 2
    # They outlive a restart (a single node keeps them in its data directory).
    broker.restart()
    assert describe_quotas(broker.bootstrap, [("client-id", 2, None)], strict=True) == {
        (("client-id", None),): {"consumer_byte_rate": MiB}}


def test_bad_quotas_are_refused_and_change_nothing(broker):
    b = broker.bootstrap
    INVALID_REQUEST, UNSUPPORTED_VERSION = 42, 35
    bad = [
        ({"user": "u"}, {"no_such_quota": 5}),
        ({"user": "u"}, {"producer_byte_rate": -1}),
        ({"user": "u"}, {"producer_byte_rate": 0}),
        ({"user": "u"}, {"producer_byte_rate": 1.5}),
        ({"user": "u"}, {"connection_creation_rate": 5}),
        ({"ip": "10.1.2.3"}, {"producer_byte_rate": 5}),
        ({"ip": "10.1.2.3", "user": "u"}, {"connection_creation_rate": 5}),
        ({"ip": "not an address"}, {"connection_creation_rate": 5}),
        ({"tenant": "u"}, {"producer_byte_rate": 5}),
        ({}, {"producer_byte_rate": 5}),
        ({"user": ""}, {"producer_byte_rate": 5}),
    ]
    good = ({"client-id": "fine"}, {"producer_byte_rate": 5000})
    outcomes = alter_quotas(b, bad + [good])
    assert [code for code, _ in outcomes] == [INVALID_REQUEST] * len(bad) + [0], outcomes
    assert all(message for _, message in outcomes[:-1])
    assert describe_quotas(b, []) == {(("client-id", "fine"),): {"producer_byte_rate": 5000}}
    assert describe_quotas(b, [("tenant", 2, None)])[0] == UNSUPPORTED_VERSION
    assert describe_quotas(b, [("user", 0, None)])[0] == INVALID_REQUEST
    assert describe_quotas(b, [("user", 2, None), ("user", 1, None)])[0] == INVALID_REQUEST


def test_a_producer_over_its_quota_is_held_near_it_while_another_keeps_its_rate(broker):
    b = broker.bootstrap
    clients.create_topics(b, {"quota-slow": 1, "quota-fast": 1})
    assert alter_quotas(b, [({"client-id": "slow-producer"}, {"producer_byte_rate": QUOTA})]) == [(0, None)]
    seconds, fast_pace = 30, 4 * MiB
    results = {}

    def run(name, topic, pace):
        results[name] = produce_for(b, topic, name, seconds, pace)

    threads = [threading.Thread(target=run, args=("slow-producer", "quota-slow", None)),
               threading.Thread(target=run, args=("fast-producer", "quota-fast", fast_pace))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slow, slow_throttle = results["slow-producer"]
    fast, fast_throttle = results["fast-producer"]
    rate = slow / seconds
    print(f"throttled producer: {rate / MiB:.3f} MiB/s (quota 1), largest throttle {slow_throttle} ms; "
          f"unthrottled: {fast / seconds / MiB:.3f} MiB/s (paced at 4)")
    assert abs(rate - QUOTA) <= 0.1 * QUOTA, f"throttled producer at {rate / MiB:.3f} MiB/s"
    assert slow_throttle > 0, "the throttled producer was never told of a throttle"
    assert fast >= 0.9 * fast_pace * seconds, f"unthrottled producer at {fast / seconds / MiB:.3f} MiB/s"
    assert fast_throttle == 0
    # The broker's metrics name the throttled client, and not the other.
    labels = {"quota": "producer_byte_rate", "user": "", "client_id": "slow-producer"}
    assert broker.metric("stillwater_quota_throttle_time_ms_total", **labels) > 0
    assert broker.metric("stillwater_quota_bound", **labels) == QUOTA
    assert 0 < broker.metric("stillwater_quota_rate", **labels) < 1.5 * QUOTA
    assert "fast-producer" not in broker.metrics_text()
    # Nothing lost: every acknowledged record is in the log.
    c = clients.consumer(b)
    lo, hi = c.get_watermark_offsets(TopicPartition("quota-slow", 0), timeout=10)
    c.close()
    assert hi - lo >= slow // len(VALUE)


def consume_for(bootstrap, topic, client_id, seconds, total):
    """Read `topic` (one partition) from the start for `seconds` or until `total` bytes: (bytes
    read, seconds taken, the largest throttle time seen)."""
    throttles = Throttles()
    c = Consumer({
        "bootstrap.servers": bootstrap, "client.id": client_id,
        "group.id": f"quota-{client_id}", "enable.auto.commit": False,
        "statistics.interval.ms": 500, "stats_cb": throttles, **clients.COMMON,
    })
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds and got < total:
        for m in c.consume(100, timeout=0.2):
            if m.error() is None:
                got += len(m.value())
    took = time.monotonic() - start
    c.close()
    return got, took, throttles.max_ms


def test_a_consumer_over_its_quota_is_held_near_it_while_another_reads_freely(broker):
    b = broker.bootstrap
    clients.create_topics(b, {"quota-read": 1})
    total = 25 * MiB
    p = clients.producer(b, **{"linger.ms": 20})
    for _ in range(total // len(VALUE)):
        while True:
            try:
                p.produce("quota-read", VALUE)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0
    total = (total // len(VALUE)) * len(VALUE)
    assert alter_quotas(b, [({"client-id": "slow-reader"}, {"consumer_byte_rate": QUOTA})]) == [(0, None)]
    seconds = 15
    slow, _, slow_throttle = consume_for(b, "quota-read", "slow-reader", seconds, total)
    fast, fast_took, fast_throttle = consume_for(b, "quota-read", "fast-reader", 60, total)
    rate = slow / seconds
    print(f"throttled consumer: {rate / MiB:.3f} MiB/s (quota 1), largest throttle {slow_throttle} ms; "
          f"unthrottled: {total / MiB:.0f} MiB in {fast_took:.1f} s")
    assert abs(rate - QUOTA) <= 0.1 * QUOTA, f"throttled consumer at {rate / MiB:.3f} MiB/s"
    assert slow_throttle > 0
    assert fast == total and fast_throttle == 0
    assert fast / fast_took > 3 * QUOTA


def metadata_loop(bootstrap, client_id, seconds):
    """Send Metadata requests one after another for `seconds` (kafka-python's connection,
    which waits out a throttle the broker names: meanwhile it has no node to send to):
    (requests answered, largest throttle)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import NodeNotReadyError
    from kafka.protocol.metadata import MetadataRequest
    a = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    answered, throttle = 0, 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            try:
                resp = a._manager.run(a._manager.send, MetadataRequest(topics=None))
            except NodeNotReadyError:
                time.sleep(0.01)
                continue
            answered += 1
            throttle = max(throttle, resp.throttle_time_ms)
    finally:
        a.close()
    return answered, throttle


def test_a_client_sending_many_small_requests_is_held_by_its_request_quota(broker):
    b = broker.bootstrap
    assert alter_quotas(b, [({"client-id": "chatty"}, {"request_percentage": 0.5})]) == [(0, None)]
    chatty, chatty_throttle = metadata_loop(b, "chatty", 8)
    free, free_throttle = metadata_loop(b, "free", 8)
    print(f"request quota 0.5 %: {chatty} requests answered, largest throttle {chatty_throttle} ms; "
          f"without a quota: {free}")
    assert chatty_throttle > 0
    assert free_throttle == 0
    # Held back: at most a second's throttle at a time (Kafka's bound), so fewer answers.
    assert chatty < free / 2, (chatty, free)


class ThrottlesByNode:
    """The largest throttle time librdkafka saw from each broker (by node id)."""

    def __init__(self):
        self.max_ms = {}

    def __call__(self, stats_json):
        import json
        for b in json.loads(stats_json).get("brokers", {}).values():
            node = b.get("nodeid", -1)
            if node >= 0:
                seen = b.get("throttle", {}).get("max", 0)
                self.max_ms[node] = max(self.max_ms.get(node, 0), seen)


def produce_to_all(bootstrap, topic, partitions, client_id, seconds):
    """Produce to every partition of `topic` for `seconds`: the largest throttle per node."""
    throttles = ThrottlesByNode()
    p = Producer({
        "bootstrap.servers": bootstrap, "client.id": client_id, "acks": "all",
        "linger.ms": 5, "queue.buffering.max.kbytes": 2048,
        "statistics.interval.ms": 500, "stats_cb": throttles, **clients.COMMON,
    })
    errors = []
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        try:
            p.produce(topic, VALUE, partition=i % partitions,
                      on_delivery=lambda err, _m: err and errors.append(err))
            i += 1
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    assert p.flush(60) == 0
    p.poll(1.0)
    assert not errors, errors[:3]
    return throttles.max_ms


def test_quotas_changed_at_run_time_reach_every_broker_of_a_cluster(tmp_path):
    """Three nodes: a quota set through one broker is described by every broker within
    seconds and enforced by each leader (quotas are per broker, as Kafka's); removed through
    another, it stops. Data volume: about 40 MB produced."""
    from test_cluster import Cluster, create
    c = Cluster(tmp_path).start()
    try:
        c.wait_brokers(3)
        create(c.bootstrap, "quota-spread", 3)
        leaders = {c.leader_of("quota-spread", p) for p in range(3)}
        nodes = list(c.nodes.values())
        spread = {"client-id": "spread"}
        assert alter_quotas(nodes[0].bootstrap, [(spread, {"producer_byte_rate": 256 * 1024})]) == [(0, None)]
        want = {(("client-id", "spread"),): {"producer_byte_rate": 256 * 1024}}
        for n in nodes:
            deadline = time.monotonic() + 10
            while describe_quotas(n.bootstrap, [("client-id", 0, "spread")]) != want:
                assert time.monotonic() < deadline, f"node {n.node_id} never told of the quota"
                time.sleep(0.1)
        throttled = produce_to_all(c.bootstrap, "quota-spread", 3, "spread", 8)
        assert all(throttled.get(n, 0) > 0 for n in leaders), (leaders, throttled)
        assert alter_quotas(nodes[1].bootstrap, [(spread, {"producer_byte_rate": None})]) == [(0, None)]
        for n in nodes:
            deadline = time.monotonic() + 10
            while describe_quotas(n.bootstrap, [("client-id", 0, "spread")]) != {}:
                assert time.monotonic() < deadline, f"node {n.node_id} kept the removed quota"
                time.sleep(0.1)
        free = produce_to_all(c.bootstrap, "quota-spread", 3, "spread", 3)
        assert all(v == 0 for v in free.values()), free
    finally:
        died = c.cleanup()
        assert not died, [n.log_tail() for n in died]


def create_topics_raw(bootstrap, client_id, names, partitions, version=None):
    """CreateTopics through kafka-python's protocol layer: ({name: error code}, throttle ms)."""
    from kafka.admin import KafkaAdminClient
    from kafka.protocol.admin.topics import CreateTopicsRequest as R
    a = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        kwargs = {} if version is None else {"version": version}
        req = R(topics=[R.CreatableTopic(name=n, num_partitions=partitions, replication_factor=1,
                                          assignments=[], configs=[]) for n in names],
                timeout_ms=10000, validate_only=False, **kwargs)
        resp = a._manager.run(a._manager.send, req)
    finally:
        a.close()
    return {t.name: t.error_code for t in resp.topics}, resp.throttle_time_ms


def test_a_script_creating_topics_in_a_loop_is_held_by_its_mutation_quota(broker):
    """controller_mutation_rate (KIP-599): 2 partitions per second, a burst of 22. Ten topics
    of four partitions at once: the first six are made (the sixth takes the bucket below
    zero), the other four are refused THROTTLING_QUOTA_EXCEEDED with the wait named; another
    client is not held. Data volume: 60 partitions."""
    b = broker.bootstrap
    THROTTLING_QUOTA_EXCEEDED = 89
    assert alter_quotas(b, [({"client-id": "topic-maker"}, {"controller_mutation_rate": 2})]) == [(0, None)]
    names = [f"made-{i}" for i in range(10)]
    codes, wait = create_topics_raw(b, "topic-maker", names, 4)
    assert [codes[n] for n in names] == [0] * 6 + [THROTTLING_QUOTA_EXCEEDED] * 4, codes
    assert 900 <= wait <= 1100, wait
    # Nothing made of the refused ones.
    assert not set(names[6:]) & set(clients.topic_names(b))
    # Another client is not held.
    others = [f"other-{i}" for i in range(5)]
    codes, throttle = create_topics_raw(b, "someone-else", others, 4)
    assert set(codes.values()) == {0} and throttle == 0
    # Below zero, the maker is refused whole; after the wait, it may go on.
    codes, _ = create_topics_raw(b, "topic-maker", ["made-too-soon"], 4)
    assert codes == {"made-too-soon": THROTTLING_QUOTA_EXCEEDED}
    time.sleep(wait / 1000 + 0.5)
    codes, _ = create_topics_raw(b, "topic-maker", ["made-later"], 4)
    assert codes == {"made-later": 0}


def answered_on_a_new_connection(bootstrap, source):
    """Open a connection from address `source` and ask ApiVersions (kafka-python's codec):
    whether it was answered (a connection over its address's rate is closed unread)."""
    import socket
    import struct
    from kafka.protocol.metadata.api_versions import ApiVersionsRequest
    host, port = bootstrap.rsplit(":", 1)
    sock = socket.socket()
    sock.settimeout(5)
    try:
        sock.bind((source, 0))
        sock.connect((host, int(port)))
        request = ApiVersionsRequest()
        request.with_header(correlation_id=1, client_id="connection-rate")
        sock.sendall(request.encode(version=0, header=True, framed=True))
        head = sock.recv(4)
        return len(head) == 4 and struct.unpack(">i", head)[0] > 0
    except OSError:
        return False
    finally:
        sock.close()


def test_an_address_opening_connections_in_a_loop_is_held_by_its_connection_rate(broker):
    """connection_creation_rate (KIP-612) for 127.0.0.1: five a second. Forty connections at
    once from it: about a second's worth are served, the rest closed unread (after at most a
    window); another address (127.0.0.2) is not held; a second later the first may connect
    again. Data volume: about 50 connections."""
    b = broker.bootstrap
    assert alter_quotas(b, [({"ip": "127.0.0.1"}, {"connection_creation_rate": 5})]) == [(0, None)]
    results = []
    threads = [threading.Thread(target=lambda: results.append(answered_on_a_new_connection(b, "127.0.0.1")))
               for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    served = sum(results)
    assert 3 <= served <= 8, f"{served} of 40 connections served"
    assert all(answered_on_a_new_connection(b, "127.0.0.2") for _ in range(10))
    time.sleep(2)
    assert answered_on_a_new_connection(b, "127.0.0.1")
    labels = {"quota": "connection_creation_rate", "user": "", "client_id": "", "ip": "127.0.0.1"}
    assert broker.metric("stillwater_quota_throttled_total", **labels) >= 30
