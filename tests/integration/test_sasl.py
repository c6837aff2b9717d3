"""SASL on SASL_PLAINTEXT and SASL_SSL listeners, with clients this project did not write:
the first user made by `--add-scram`, further users made, described and deleted with
confluent-kafka's AdminClient (KIP-554); confluent-kafka producing (2,000 records of 1 KiB) and
consuming in a group with SCRAM-SHA-256, kafka-python reading them with PLAIN, kcat with
SCRAM-SHA-512; a wrong password, an unknown user and a request before authentication refused
while the others are served; users kept across a restart, a password changed through the API
not undone by `--add-scram`; re-authentication (KIP-368) on open connections; and the
production-style cluster: three brokers with only SASL_SSL listeners for clients and mutual TLS
between them (3,000 records of 100 B replicated three ways)."""

import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, NewTopic,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo,
                                   ScramMechanism, UserScramCredentialDeletion,
                                   UserScramCredentialUpsertion)

import clients
import wire
from conftest import free_port

ADMIN = ("admin", "admin-secret")
MECHANISMS = "sasl_enabled_mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"


def sasl_conf(user, password, mechanism="SCRAM-SHA-512", protocol="SASL_PLAINTEXT", **extra):
    return {"security.protocol": protocol, "sasl.mechanisms": mechanism,
            "sasl.username": user, "sasl.password": password, **extra}


def sasl_broker(make_broker, *settings, name="broker"):
    """A broker whose only listener is SASL_PLAINTEXT (the harness's port), with the admin
    user made at start."""
    b = make_broker(name=name, advertise=False, start=False)
    b.extra_args += [
        "--set", f"listeners=SASL_PLAINTEXT://127.0.0.1:{b.port}",
        "--set", MECHANISMS,
        "--add-scram", f"SCRAM-SHA-512=[name={ADMIN[0]},password={ADMIN[1]}]",
    ]
    for s in settings:
        b.extra_args += ["--set", s]
    b.start()
    return b


def add_user(admin, user, password, mechanism=ScramMechanism.SCRAM_SHA_256, iterations=8192):
    futures = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        user, ScramCredentialInfo(mechanism, iterations), password.encode())])
    futures[user].result(30)


def group_read(bootstrap, topic, group, want, seconds=60, **conf):
    """Read `want` records of `topic` as a member of `group`, failing on any consumer error."""
    c = clients.consumer(bootstrap, **conf, **{"group.id": group,
                                               "auto.offset.reset": "earliest",
                                               "enable.partition.eof": False})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + seconds
    try:
        while len(got) < want:
            assert time.monotonic() < deadline, f"read {len(got)} of {want} from {topic}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    raise KafkaException(m.error())
                got.append(m.value())
    finally:
        c.close()
    return got


def refused(bootstrap, conf, seconds=10):
    """The librdkafka errors an AdminClient with `conf` gets on `bootstrap`."""
    errors = []
    a = clients.admin(bootstrap, **conf, error_cb=errors.append)
    with pytest.raises(KafkaException):
        a.list_topics(timeout=3)
    deadline = time.monotonic() + seconds
    while not errors and time.monotonic() < deadline:
        a.poll(0.2)
    return errors


def test_scram_users_made_through_the_admin_api_produce_and_consume(make_broker):
    b = sasl_broker(make_broker)
    admin = clients.admin(b.bootstrap, **sasl_conf(*ADMIN))
    add_user(admin, "alice", "alice-secret")
    described = admin.describe_user_scram_credentials(["alice", "admin"])
    infos = {u: [(i.mechanism, i.iterations) for i in f.result(10).scram_credential_infos]
             for u, f in described.items()}
    assert infos == {"alice": [(ScramMechanism.SCRAM_SHA_256, 8192)],
                     "admin": [(ScramMechanism.SCRAM_SHA_512, 4096)]}
    topic = f"sasl-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    alice = sasl_conf("alice", "alice-secret", "SCRAM-SHA-256")
    p = clients.producer(b.bootstrap, **alice)
    values = [b"%04d" % i + b"v" * 1020 for i in range(2000)]
    for v in values:
        p.produce(topic, value=v)
    assert p.flush(60) == 0
    # A consumer group's member, subscribing and committing as alice.
    group = f"g-{uuid.uuid4().hex[:6]}"
    c = clients.consumer(b.bootstrap, **alice, **{"group.id": group,
                                                   "auto.offset.reset": "earliest",
                                                   "enable.auto.offset.store": True})
    c.subscribe([topic])
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < 2000 and time.monotonic() < deadline:
        for m in c.consume(num_messages=500, timeout=0.5):
            if m.error() is None:
                seen.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    assert sorted(seen) == values
    from confluent_kafka import ConsumerGroupTopicPartitions
    done = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    committed = {tp.partition: tp.offset for tp in done.result(30).topic_partitions}
    assert sum(committed.values()) == 2000, committed
    # kafka-python with PLAIN, checked against alice's SCRAM credential.
    from kafka import KafkaConsumer
    kc = KafkaConsumer(topic, bootstrap_servers=b.bootstrap, security_protocol="SASL_PLAINTEXT",
                       sasl_mechanism="PLAIN", sasl_plain_username="alice",
                       sasl_plain_password="alice-secret", auto_offset_reset="earliest",
                       consumer_timeout_ms=15000)
    try:
        assert sorted(m.value for m in kc) == values
    finally:
        kc.close()
    # kcat as the admin, with SCRAM-SHA-512.
    out = clients.run_kcat(["-b", b.bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
                            "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=admin",
                            "-X", "sasl.password=admin-secret", "-C", "-t", topic, "-p", "0",
                            "-o", "beginning", "-e", "-f", "%o\\n"])
    lo, hi = clients.watermarks(
        clients.consumer(b.bootstrap, **alice), topic, [0])[0]
    assert len(out.split()) == hi - lo
    assert b.metric("stillwater_sasl_authentications_total") >= 5
    b.assert_alive()


def test_wrong_credentials_and_unauthenticated_requests_are_refused(make_broker):
    b = sasl_broker(make_broker, "connection_failed_authentication_delay_ms=300",
                    "sasl_authentication_timeout_ms=2000")
    admin = clients.admin(b.bootstrap, **sasl_conf(*ADMIN))
    add_user(admin, "bob", "bob-secret", ScramMechanism.SCRAM_SHA_512)
    for conf in (sasl_conf("bob", "wrong"), sasl_conf("nobody", "bob-secret"),
                 sasl_conf("bob", "wrong", "PLAIN")):
        errors = refused(b.bootstrap, conf)
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), \
            (conf["sasl.username"], conf["sasl.mechanisms"], errors)
    # A mechanism not offered: UNSUPPORTED_SASL_MECHANISM naming those that are, then closed.
    with wire.connect(b.bootstrap) as s:
        r = wire.roundtrip(s, 17, 1, wire.string("GSSAPI"))
        assert r.i16() == 33
        assert [r.string() for _ in range(r.i32())] == ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
        assert wire.wait_closed(s)[0]
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError as PyKafkaError
    with pytest.raises(PyKafkaError):
        KafkaAdminClient(bootstrap_servers=b.bootstrap, security_protocol="SASL_PLAINTEXT",
                         sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="bob",
                         sasl_plain_password="wrong", request_timeout_ms=5000,
                         api_version_auto_timeout_ms=5000).list_topics()
    # ApiVersions is answered before authentication; anything else closes the connection.
    with wire.connect(b.bootstrap) as s:
        assert wire.api_versions(s)[0] == 0
        s.sendall(wire.frame(wire.request_header_v1(wire.API_METADATA, 1, 2) + struct.pack(">i", -1)))
        assert s.recv(4) == b"", "a Metadata request was answered before authentication"
    # A PLAINTEXT client that never authenticates is closed at the deadline.
    s = wire.connect(b.bootstrap)
    started = time.monotonic()
    s.settimeout(10)
    assert s.recv(4) == b""
    assert 1.5 < time.monotonic() - started < 8
    s.close()
    # A refusal waits for connection_failed_authentication_delay_ms.
    started = time.monotonic()
    refused(b.bootstrap, sasl_conf("bob", "wrong", **{"reconnect.backoff.ms": 10000}))
    assert time.monotonic() - started >= 0.3
    # Others are served throughout.
    assert clients.admin(b.bootstrap, **sasl_conf("bob", "bob-secret")).list_topics(timeout=10)
    assert b.metric("stillwater_sasl_authentications_failed_total") >= 7
    b.assert_alive()


def test_users_are_kept_and_deleted_and_add_scram_never_resets_a_password(make_broker):
    b = sasl_broker(make_broker)
    admin = clients.admin(b.bootstrap, **sasl_conf(*ADMIN))
    add_user(admin, "carol", "carol-1")
    # The admin changes its own password; the next start still has --add-scram's.
    add_user(admin, "admin", "admin-changed", ScramMechanism.SCRAM_SHA_512)
    b.restart()
    assert clients.admin(b.bootstrap, **sasl_conf("admin", "admin-changed")).list_topics(timeout=10)
    assert refused(b.bootstrap, sasl_conf(*ADMIN))
    admin = clients.admin(b.bootstrap, **sasl_conf("admin", "admin-changed"))
    assert clients.admin(b.bootstrap, **sasl_conf("carol", "carol-1", "SCRAM-SHA-256")) \
        .list_topics(timeout=10)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_256)])
    futures["carol"].result(30)
    assert refused(b.bootstrap, sasl_conf("carol", "carol-1", "SCRAM-SHA-256"))
    # Deleting what does not exist, or describing an unknown user: Kafka's errors.
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_256)])
    with pytest.raises(KafkaException) as e:
        futures["carol"].result(30)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
    with pytest.raises(KafkaException) as e:
        admin.describe_user_scram_credentials(["carol"])["carol"].result(30)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
    # An upsertion below Kafka's 4,096 iterations is refused.
    futures = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"x")])
    with pytest.raises(KafkaException) as e:
        futures["dave"].result(30)
    assert e.value.args[0].code() == KafkaError.UNACCEPTABLE_CREDENTIAL
    b.assert_alive()


def test_clients_authenticate_again_on_open_connections(make_broker):
    b = sasl_broker(make_broker, "connections_max_reauth_ms=2000")
    admin = clients.admin(b.bootstrap, **sasl_conf(*ADMIN))
    topic = f"reauth-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    p = clients.producer(b.bootstrap, **sasl_conf(*ADMIN))
    from kafka import KafkaProducer
    kp = KafkaProducer(bootstrap_servers=b.bootstrap, security_protocol="SASL_PLAINTEXT",
                       sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=ADMIN[0],
                       sasl_plain_password=ADMIN[1])
    try:
        before = b.metric("stillwater_sasl_authentications_total")
        # Seven seconds of writes over sessions of two seconds.
        deadline = time.monotonic() + 7
        n = 0
        while time.monotonic() < deadline:
            p.produce(topic, value=b"c%d" % n)
            kp.send(topic, b"k%d" % n).get(timeout=10)
            p.poll(0)
            n += 1
            time.sleep(0.05)
        assert p.flush(30) == 0
        # Each client's connection authenticated again (or was closed and opened anew):
        # either way nothing was refused and every record is there.
        assert b.metric("stillwater_sasl_authentications_total") >= before + 4
    finally:
        kp.close()
    got, _ = clients.consume_all(b.bootstrap, topic, [0], **sasl_conf(*ADMIN))
    assert len(got[0]) == 2 * n
    b.assert_alive()


def test_sasl_ssl_cluster_with_mutual_tls_acls_and_no_plaintext_listener(tmp_path, certs):
    """The production-style configuration: clients on SASL_SSL with SCRAM-SHA-512, brokers
    linked by mutual TLS on a listener of their own (inter_broker_listener_name), ACLs on, no
    PLAINTEXT listener anywhere; a user refused until ACLs
    allow it, then producing and consuming in a group; a broker killed and restarted knows the
    users and ACLs again before it serves them (it waits for the metadata to catch up)."""
    from test_cluster import Cluster, Node
    cert, key = certs.issue("broker", "broker", server=True, client=True)

    class SecureNode(Node):
        def __init__(self, workdir, node_id, peers, extra_args=()):
            super().__init__(workdir, node_id, peers, extra_args)
            self.advertise = False
            self.ready_tls_ca = certs.ca
            # Kafka's way: a listener for clients, another the brokers link on (mutual TLS).
            replication = dict(p.split("@") for p in peers.split(","))[str(node_id)]
            self.extra_args += [
                "--set", f"listeners=CLIENTS://127.0.0.1:{self.port},REPLICATION://{replication}",
                "--set", "listener_security_protocol_map=CLIENTS:SASL_SSL,REPLICATION:SSL",
                "--set", "inter_broker_listener_name=REPLICATION",
                "--set", f"advertised_listeners=CLIENTS://localhost:{self.port}"]

    c = Cluster(tmp_path / "cluster", node_class=SecureNode, extra_args=(
        "--set", f"ssl_certificate_location={cert}",
        "--set", f"ssl_key_location={key}",
        "--set", f"ssl_ca_location={certs.ca}",
        "--set", "authorizer_enabled=true",
        "--set", f"super_users=User:{ADMIN[0]}",
        "--add-scram", f"SCRAM-SHA-512=[name={ADMIN[0]},password={ADMIN[1]}]"))
    c.start()
    try:
        boot = ",".join(f"localhost:{n.port}" for n in c.nodes.values())
        conf = sasl_conf(*ADMIN, protocol="SASL_SSL", **{"ssl.ca.location": certs.ca})
        admin = clients.admin(boot, **conf)
        deadline = time.monotonic() + 30
        while True:
            try:
                md = admin.list_topics(timeout=5)
                if len(md.brokers) == 3:
                    break
            except KafkaException:
                pass
            assert time.monotonic() < deadline, "the cluster did not come up for SASL_SSL clients"
            time.sleep(0.2)
        assert {(n.host, n.port) for n in md.brokers.values()} == \
            {("localhost", n.port) for n in c.nodes.values()}
        # A user made through one broker authenticates on every broker.
        add_user(admin, "app", "app-secret", ScramMechanism.SCRAM_SHA_512)
        app = sasl_conf("app", "app-secret", protocol="SASL_SSL", **{"ssl.ca.location": certs.ca})
        for n in c.nodes.values():
            deadline = time.monotonic() + 15
            while True:
                try:
                    clients.admin(f"localhost:{n.port}", **app).list_topics(timeout=5)
                    break
                except KafkaException:
                    assert time.monotonic() < deadline, f"app refused by node {n.node_id}"
                    time.sleep(0.3)
        topic = "secured"
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic] \
            .result(30)
        # No ACL yet: the app's writes are refused with Kafka's code.
        errors = []
        p = clients.producer(boot, **app, **{"message.timeout.ms": 10000, "retries": 0})
        p.produce(topic, value=b"early", on_delivery=lambda err, m: errors.append(err))
        p.flush(30)
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED], errors
        group = "app-group"
        for f in admin.create_acls([
                AclBinding(ResourceType.TOPIC, "secur", ResourcePatternType.PREFIXED,
                           "User:app", "*", AclOperation.ALL, AclPermissionType.ALLOW),
                AclBinding(ResourceType.GROUP, group, ResourcePatternType.LITERAL,
                           "User:app", "*", AclOperation.READ, AclPermissionType.ALLOW),
        ]).values():
            f.result(30)
        p = clients.producer(boot, **app)
        for i in range(3000):
            p.produce(topic, value=b"%05d" % i + b"." * 95)
            if i == 1500:
                # A broker killed and restarted while the app produces: it serves the app
                # again only once it knows the app and its ACLs.
                c.nodes[2].kill()
                c.nodes[2].start()
        assert p.flush(60) == 0
        got = group_read(boot, topic, group, 3000, **app)
        assert sorted(v[:5] for v in got) == [b"%05d" % i for i in range(3000)]
        # A plaintext client on a SASL_SSL port is refused; the cluster serves on.
        with socket.create_connection(("127.0.0.1", c.nodes[1].port), timeout=10) as s:
            s.sendall(wire.frame(wire.request_header_v1(wire.API_API_VERSIONS, 0, 1)))
            closed, sent = wire.wait_closed(s, 15)
            assert closed, "a plaintext client was kept on the SASL_SSL port"
            assert not sent or sent[0] == 0x15, f"answered with {sent!r}"  # a TLS alert at most
        assert refused(boot, sasl_conf("app", "wrong", protocol="SASL_SSL",
                                       **{"ssl.ca.location": certs.ca}))
        clients.admin(boot, **app).list_topics(timeout=10)
    finally:
        died = c.cleanup()
        assert not died, "\n".join(n.log_tail() for n in died)
