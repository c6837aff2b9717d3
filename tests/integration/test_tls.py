"""TLS on an SSL listener, with certificates the test makes (a CA, the broker's, a client's):
confluent-kafka, kafka-python and kcat produce and consume over TLS (1,000 records of 1 KiB);
client certificates required and refused without; a plaintext client, garbage and silence on the
TLS port closed within the handshake deadline while TLS clients go on being served; the
certificate files replaced and served to new connections without dropping an open one; three
brokers linked by mutual TLS (3,000 records of 100 B replicated three ways), and processes
without the cluster's certificate refused on the inter-broker port."""

import os
import socket
import ssl
import time
import uuid

import pytest
from confluent_kafka import KafkaException

import clients
import wire
from certs import Certs
from conftest import free_port


def tls_broker(make_broker, certs, *settings):
    """A broker with a PLAINTEXT listener (the harness's) and an SSL one on localhost."""
    cert, key = certs.issue("broker", "broker1", server=True)
    ssl_port = free_port()
    b = make_broker(advertise=False, start=False)
    b.ssl_port = ssl_port
    b.extra_args += [
        "--set", f"listeners=PLAINTEXT://127.0.0.1:{b.port},SSL://127.0.0.1:{ssl_port}",
        "--set", f"advertised_listeners=SSL://localhost:{ssl_port}",
        "--set", f"ssl_certificate_location={cert}",
        "--set", f"ssl_key_location={key}",
    ]
    for s in settings:
        b.extra_args += ["--set", s]
    b.start()
    return b


def tls_conf(certs, **extra):
    return {"security.protocol": "SSL", "ssl.ca.location": certs.ca, **extra}


def raw_tls(port, certs, client=None):
    ctx = ssl.create_default_context(cafile=certs.ca)
    if client:
        ctx.load_cert_chain(*client)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(s, server_hostname="localhost")


def closed_within(sock, seconds):
    """Whether the broker closes `sock` within `seconds` (reading whatever it sends)."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, ssl.SSLError, OSError) as e:
        return not isinstance(e, socket.timeout)
    return False


def test_three_clients_produce_and_consume_over_tls(make_broker, certs):
    b = tls_broker(make_broker, certs)
    boot = f"localhost:{b.ssl_port}"
    topic = f"tls-{uuid.uuid4().hex[:6]}"
    a = clients.admin(boot, **tls_conf(certs))
    from confluent_kafka.admin import NewTopic
    a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    md = a.list_topics(timeout=10)
    assert {(n.host, n.port) for n in md.brokers.values()} == {("localhost", b.ssl_port)}
    p = clients.producer(boot, **tls_conf(certs))
    values = [b"%04d" % i + b"x" * 1020 for i in range(1000)]
    for v in values:
        p.produce(topic, value=v)
    assert p.flush(60) == 0
    got, _ = clients.consume_all(boot, topic, [0], **tls_conf(certs))
    assert [r[2] for r in got[0]] == values
    out = clients.run_kcat(["-b", boot, "-X", "security.protocol=SSL", "-X",
                            f"ssl.ca.location={certs.ca}", "-C", "-t", topic, "-o", "beginning",
                            "-c", "1000", "-e", "-f", "%o\\n"])
    assert out.split() == [str(i) for i in range(1000)]
    from kafka import KafkaConsumer
    c = KafkaConsumer(topic, bootstrap_servers=boot, security_protocol="SSL", ssl_cafile=certs.ca,
                      auto_offset_reset="earliest", consumer_timeout_ms=15000)
    try:
        assert [m.value for m in c] == values
    finally:
        c.close()


def test_client_certificates_when_required(make_broker, certs):
    b = tls_broker(make_broker, certs, "ssl_client_auth=required", f"ssl_ca_location={certs.ca}")
    alice = certs.issue("alice", "alice", server=False)
    boot = f"localhost:{b.ssl_port}"
    from kafka import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=boot, security_protocol="SSL", ssl_cafile=certs.ca,
                             ssl_certfile=alice[0], ssl_keyfile=alice[1])
    try:
        assert admin.describe_cluster()["brokers"]
    finally:
        admin.close()
    with pytest.raises(KafkaException):
        clients.admin(boot, **tls_conf(certs, **{"socket.timeout.ms": 3000})).list_topics(timeout=5)
    # A certificate from another CA is refused too.
    stranger = Certs(certs.dir / "other").issue("mallory", "mallory", server=False)
    answered = None
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        s = raw_tls(b.ssl_port, certs, client=stranger)
        s.sendall(wire.frame(wire.request_header_v1(wire.API_API_VERSIONS, 0, 1)))
        answered = s.recv(4)  # TLS 1.3: the refusal arrives with the first read
    assert answered is None, f"a stranger's certificate was served: {answered!r}"
    s = raw_tls(b.ssl_port, certs, client=alice)
    assert wire.api_versions(s)[0] == 0
    s.close()
    b.assert_alive()


def test_bad_clients_on_the_tls_port_are_closed_and_others_served(make_broker, certs):
    b = tls_broker(make_broker, certs, "ssl_handshake_timeout_ms=1000")
    plaintext = socket.create_connection(("127.0.0.1", b.ssl_port), timeout=10)
    plaintext.sendall(wire.frame(wire.request_header_v1(wire.API_API_VERSIONS, 0, 1)))
    garbage = socket.create_connection(("127.0.0.1", b.ssl_port), timeout=10)
    garbage.sendall(b"\x16\x03\x01\x00\x05hello" + bytes(range(256)) * 4)
    silent = socket.create_connection(("127.0.0.1", b.ssl_port), timeout=10)
    half = socket.create_connection(("127.0.0.1", b.ssl_port), timeout=10)
    half.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello's first bytes, then nothing
    for name, s in [("plaintext", plaintext), ("garbage", garbage), ("silent", silent),
                    ("half a ClientHello", half)]:
        assert closed_within(s, 10), f"{name}: still open"
        s.close()
    # A TLS client on the plaintext port: refused as a bad frame, the broker serves on.
    with pytest.raises(KafkaException):
        clients.admin(b.bootstrap, **tls_conf(certs, **{"socket.timeout.ms": 3000})).list_topics(timeout=5)
    s = raw_tls(b.ssl_port, certs)
    assert wire.api_versions(s)[0] == 0
    s.close()
    assert b.metric("stillwater_tls_handshakes_failed_total") >= 4
    log = b.log_text()
    assert "TLS handshake not done within 1000 ms" in log, b.log_tail()
    assert "TLS handshake failed" in log, b.log_tail()
    b.assert_alive()


def test_changed_certificates_serve_new_connections_and_keep_open_ones(make_broker, certs):
    b = tls_broker(make_broker, certs, "ssl_reload_interval_ms=200")
    before = raw_tls(b.ssl_port, certs)
    assert before.getpeercert()["subject"][-1] == (("commonName", "broker1"),)
    # The files replaced in place, as a certificate manager does.
    cert, key = certs.issue("broker-next", "broker2", server=True)
    (certs.dir / "broker.pem").write_bytes(open(cert, "rb").read())
    (certs.dir / "broker-key.pem").write_bytes(open(key, "rb").read())
    deadline = time.monotonic() + 15
    while True:
        s = raw_tls(b.ssl_port, certs)
        cn = s.getpeercert()["subject"][-1]
        s.close()
        if cn == (("commonName", "broker2"),):
            break
        assert time.monotonic() < deadline, f"still served {cn}"
        time.sleep(0.2)
    # The connection opened before the change is still served.
    assert wire.api_versions(before)[0] == 0
    before.close()
    # A key that does not go with the certificate is not taken; the last good pair stays.
    other_cert, _ = certs.issue("broker-bad", "broker3", server=True)
    (certs.dir / "broker.pem").write_bytes(open(other_cert, "rb").read())
    since = b.log_size()
    b.wait_for_log(since, lambda t: "cannot be used" in t, timeout=10)
    s = raw_tls(b.ssl_port, certs)
    assert s.getpeercert()["subject"][-1] == (("commonName", "broker2"),)
    s.close()
    b.assert_alive()


def test_brokers_linked_by_mutual_tls_refuse_strangers(tmp_path, certs):
    from test_cluster import Cluster, consume_all, create
    cert, key = certs.issue("broker", "broker", server=True, client=True)
    c = Cluster(tmp_path / "cluster", extra_args=(
        "--set", "inter_broker_security_protocol=SSL",
        "--set", f"ssl_certificate_location={cert}",
        "--set", f"ssl_key_location={key}",
        "--set", f"ssl_ca_location={certs.ca}")).start()
    try:
        c.wait_brokers(3)
        create(c.bootstrap, "secured", 3)
        p = clients.producer(c.bootstrap)
        for i in range(3000):
            p.produce("secured", value=b"%05d" % i + b"." * 95)
        assert p.flush(60) == 0
        got, _ = consume_all(c.bootstrap, "secured", [0, 1, 2])
        assert sorted(r[2][:5] for part in got.values() for r in part) == \
            [b"%05d" % i for i in range(3000)]
        port = int(c.peers.split(",")[0].rsplit(":", 1)[1])  # node 1's inter-broker port
        since = c.nodes[1].log_size()
        # A process speaking the transport in plaintext: a frame that would be a hello.
        plain = socket.create_connection(("127.0.0.1", port), timeout=10)
        plain.sendall(b"\x00\x00\x00\x20" + bytes(36))
        assert closed_within(plain, 10), "a plaintext peer was kept"
        plain.close()
        # A TLS client whose certificate another CA signed.
        stranger = Certs(certs.dir / "other").issue("mallory", "mallory", server=True,
                                                     client=True)
        ctx = ssl.create_default_context(cafile=certs.ca)
        ctx.check_hostname = False
        ctx.load_cert_chain(*stranger)
        answered = None
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
            s.sendall(b"\x00\x00\x00\x20" + bytes(36))
            answered = s.recv(4)
        assert answered is None, f"a stranger was answered: {answered!r}"
        c.nodes[1].wait_for_log(
            since, lambda t: t.count("why=TLS handshake failed") >= 2, timeout=10)
        flood_the_inter_broker_port(c.nodes[1], port)
        # The cluster goes on: one more round of writes through every broker.
        p = clients.producer(c.bootstrap)
        for i in range(300):
            p.produce("secured", value=b"after %d" % i)
        assert p.flush(60) == 0
    finally:
        died = c.cleanup()
        assert not died, "\n".join(n.log_tail() for n in died)


def flood_the_inter_broker_port(node, port):
    """Strangers' floods on the inter-broker port (a few hundred garbage connections, then a few
    hundred idle ones): held to the bound on unidentified connections, counted, and logged a
    few lines per window — not one line and one file handle each."""
    def handles():
        return len(os.listdir(f"/proc/{node.proc.pid}/fd"))
    before = handles()
    since = node.log_size()
    refused = node.metric("stillwater_inter_broker_connections_refused_total")
    for _ in range(500):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(300)]
    try:
        # Past the bound (8 from one address), each is closed at once.
        open_ones = [s for s in idle if not closed_within(s, 0.2)]
        assert len(open_ones) <= 8, f"{len(open_ones)} idle strangers held open"
        assert handles() <= before + 8 + 16, f"{handles()} handles open, {before} before"
        counted = node.metric("stillwater_inter_broker_connections_refused_total") - refused
        assert counted >= 500 + 300 - 8, f"{counted} refusals counted"
        lines = node.log_since(since).count("inter-broker connection refused")
        assert 1 <= lines <= 30, f"{lines} log lines for {int(counted)} refusals"
    finally:
        for s in idle:
            s.close()

