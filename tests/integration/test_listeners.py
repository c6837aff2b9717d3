"""Listeners, Kafka's way: a broker with two named listeners (CLIENT and INTERNAL) answers each
client with the addresses of the listener it connected to — in Metadata, FindCoordinator and
DescribeCluster, for itself and, in a three-node cluster, for every broker — and clients this
project did not write (confluent-kafka, kafka-python) produce through one listener and consume
in a group through the other. Data volume: 2,000 records of 100 B on one node, 3,000 on the
cluster. A listener setting the broker cannot honour stops the start with the reason."""

import threading
import time
import uuid

import pytest
from confluent_kafka.admin import ConfigResource

import clients
import wire
from conftest import Broker, free_port
from test_startup_and_admin import run_broker

API_FIND_COORDINATOR = 10


class ListenerNode(Broker):
    """A broker with two listeners: CLIENT (advertised as `localhost`, where every client of
    these tests connects by name) and INTERNAL (advertised at its address)."""

    def __init__(self, workdir, node_id=1, peers=None):
        super().__init__(workdir, name=f"node{node_id}", advertise=False)
        self.node_id = node_id
        self.peers = peers
        self.internal_port = free_port()

    @property
    def client_addr(self):
        return ("localhost", self.port)

    @property
    def internal_addr(self):
        return ("127.0.0.1", self.internal_port)

    def command(self):
        cmd = super().command()
        at = cmd.index("--node-id")
        cmd[at + 1] = str(self.node_id)
        cmd += [
            "--set", f"listeners=CLIENT://127.0.0.1:{self.port},INTERNAL://127.0.0.1:{self.internal_port}",
            "--set", "listener_security_protocol_map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT",
            "--set", f"advertised_listeners=CLIENT://localhost:{self.port}",
        ]
        if self.peers:
            cmd += ["--set", f"cluster_peers={self.peers}"]
        return cmd


def metadata_brokers(addr):
    with wire.connect(f"{addr[0]}:{addr[1]}") as s:
        return wire.parse_metadata_v1(wire.metadata_v1(s, []))["brokers"]


def find_coordinator(addr, group):
    """FindCoordinator v0 for `group`: (error, node, host, port)."""
    with wire.connect(f"{addr[0]}:{addr[1]}") as s:
        r = wire.roundtrip(s, API_FIND_COORDINATOR, 0, wire.string(group))
        return r.i16(), r.i32(), r.string(), r.i32()


def wait_coordinator(addr, group, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        answer = find_coordinator(addr, group)
        if answer[0] == 0 or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def produce_and_consume(produce_via, consume_via, topic, count):
    """`count` records produced through one listener (confluent-kafka, acks=all) are all read
    back in a group through the other (kafka-python)."""
    p = clients.producer(produce_via, acks="all")
    for i in range(count):
        p.produce(topic, value=b"v%05d" % i + b"." * 94)
    assert p.flush(60) == 0, "records left unsent"
    from kafka import KafkaConsumer
    c = KafkaConsumer(topic, bootstrap_servers=consume_via, group_id=f"g-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", consumer_timeout_ms=20000)
    try:
        seen = [m.value[:6] for m in c]
    finally:
        c.close()
    assert sorted(seen) == [b"v%05d" % i for i in range(count)]


def test_a_client_is_told_the_addresses_of_the_listener_it_connected_to(tmp_path):
    node = ListenerNode(tmp_path / "node1").start()
    try:
        client, internal = node.client_addr, node.internal_addr
        assert metadata_brokers(client) == {1: client}
        assert metadata_brokers(internal) == {1: internal}
        assert wait_coordinator(client, "g1") == (0, 1, *client)
        assert wait_coordinator(internal, "g1") == (0, 1, *internal)
        a = clients.admin(f"localhost:{node.port}")
        nodes = a.describe_cluster().result(timeout=10).nodes
        assert [(n.id, n.host, n.port) for n in nodes] == [(1, *client)]
        res = ConfigResource(ConfigResource.Type.BROKER, "1")
        configs = a.describe_configs([res])[res].result(timeout=10)
        assert configs["listeners"].value == \
            f"CLIENT://127.0.0.1:{node.port},INTERNAL://127.0.0.1:{node.internal_port}"
        assert configs["advertised.listeners"].value == \
            f"CLIENT://localhost:{node.port},INTERNAL://127.0.0.1:{node.internal_port}"
        assert configs["listener.security.protocol.map"].value == \
            "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT"
        clients.create_topics(f"localhost:{node.port}", {"through-both": 2})
        produce_and_consume(f"localhost:{node.port}", f"127.0.0.1:{node.internal_port}",
                            "through-both", 2000)
    finally:
        node.cleanup()


def test_a_cluster_names_every_broker_by_its_address_on_the_listener_asked(tmp_path):
    ports = {i: free_port() for i in (1, 2, 3)}
    peers = ",".join(f"{i}@127.0.0.1:{p}" for i, p in ports.items())
    nodes = {i: ListenerNode(tmp_path / f"node{i}", i, peers) for i in ports}
    threads = [threading.Thread(target=n.start) for n in nodes.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        for n in nodes.values():
            n.assert_alive()
        want_client = {i: n.client_addr for i, n in nodes.items()}
        want_internal = {i: n.internal_addr for i, n in nodes.items()}
        deadline = time.monotonic() + 30
        while len(metadata_brokers(nodes[1].client_addr)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        for n in nodes.values():
            assert metadata_brokers(n.client_addr) == want_client
            assert metadata_brokers(n.internal_addr) == want_internal
        # The group's coordinator, named on the listener asked (whichever broker leads it).
        err, coordinator, host, port = wait_coordinator(nodes[2].internal_addr, "cg")
        assert err == 0 and (host, port) == want_internal[coordinator]
        err, coordinator, host, port = wait_coordinator(nodes[2].client_addr, "cg")
        assert err == 0 and (host, port) == want_client[coordinator]
        from confluent_kafka.admin import NewTopic
        a = clients.admin(",".join(f"localhost:{n.port}" for n in nodes.values()))
        a.create_topics([NewTopic("replicated", num_partitions=3, replication_factor=3)],
                        operation_timeout=10)["replicated"].result(timeout=30)
        clients.wait_for_topic(a, "replicated", 3, 30)
        produce_and_consume(",".join(f"localhost:{n.port}" for n in nodes.values()),
                            ",".join(f"127.0.0.1:{n.internal_port}" for n in nodes.values()),
                            "replicated", 3000)
    finally:
        died = [n for n in nodes.values() if n.died_unexpectedly()]
        for n in nodes.values():
            n.cleanup()
        assert not died, "\n".join(n.log_tail() for n in died)


@pytest.mark.parametrize("settings,named", [
    (["listeners=CLIENT://127.0.0.1:0"], "listener_security_protocol_map"),
    (["listeners=SASL_PLAINTEXT://127.0.0.1:0", "sasl_enabled_mechanisms=GSSAPI"], "GSSAPI"),
    (["listeners=SASL_PLAINTEXT://127.0.0.1:0", "add_scram=SCRAM-SHA-256=[name=a]"],
     "give password"),
    (["listeners=SSL://127.0.0.1:0"], "needs ssl_certificate_location"),
    (["listeners=A://127.0.0.1:0,A://127.0.0.1:0", "listener_security_protocol_map=A:PLAINTEXT"],
     "twice"),
    (["listeners=PLAINTEXT://127.0.0.1:0", "advertised_listeners=OTHER://x:1"],
     "not one of the listeners"),
], ids=["no-protocol", "sasl-mechanism", "add-scram-without-password", "ssl-without-certificate", "same-name",
        "advertised-unknown"])
def test_a_listener_setting_that_cannot_be_honoured_stops_the_start(tmp_path, settings, named):
    args = ["--data-dir", str(tmp_path / "data"), "--metrics-listen", ""]
    for s in settings:
        args += ["--set", s]
    code, err = run_broker(args)
    assert code == 2, f"exit {code}: {err}"
    assert named in err, err
    assert not (tmp_path / "data").exists(), "a refused configuration touched the data directory"
