"""The differential suite: every case of `differential/cases/*.toml` sent to Apache Kafka and
to the broker (a single node of each, fresh), at the lowest and highest version of its API
that both serve, and the answers compared field by field (see `differential.py`). A
difference not listed, with its reason, in `differential/differences.toml` fails the case.

Kafka is not started here: `cargo xtask differential` starts it (`cargo xtask kafka up`), names
it in STILLWATER_KAFKA_BOOTSTRAP and runs this file; without that variable the suite is
skipped. Cases with `listener = "sasl"` go to Kafka's SASL_PLAINTEXT listener and to a second
broker with only such a listener (requests before and during a SCRAM login), and again to the
SASL_SSL listeners of Kafka and of a third broker (the certificate xtask made for Kafka:
STILLWATER_KAFKA_CERTS); cases with `listener = "ssl"` go to their SSL listeners. Cases with
`nodes = 3` go to a three-node Kafka (STILLWATER_KAFKA_CLUSTER_BOOTSTRAP) and a three-node
broker cluster. Data volume: a few records per case, about 800 requests per server in all."""

import os
import ssl
from pathlib import Path

import pytest

import differential

KAFKA = os.environ.get("STILLWATER_KAFKA_BOOTSTRAP")
# Kafka's SASL_PLAINTEXT listener (SCRAM, user admin): the cases with `listener = "sasl"`.
KAFKA_SASL = os.environ.get("STILLWATER_KAFKA_SASL_BOOTSTRAP")
# Kafka's SSL and SASL_SSL listeners, and the folder of the certificate they present (ca.pem,
# broker.pem, broker-key.pem), which the TLS broker presents too.
KAFKA_SSL = os.environ.get("STILLWATER_KAFKA_SSL_BOOTSTRAP")
KAFKA_SASL_SSL = os.environ.get("STILLWATER_KAFKA_SASL_SSL_BOOTSTRAP")
KAFKA_CERTS = os.environ.get("STILLWATER_KAFKA_CERTS")
# A three-node Kafka: the cases with `nodes = 3`.
KAFKA_CLUSTER = os.environ.get("STILLWATER_KAFKA_CLUSTER_BOOTSTRAP")
SCRAM_USER = ("admin", "admin-secret")


def _cases():
    """Every case, and each SASL case once more over TLS (`listener = "sasl_ssl"`)."""
    cases = []
    for case in differential.load_cases():
        cases.append(case)
        if case.get("listener") == "sasl":
            cases.append({**case, "listener": "sasl_ssl", "name": case["name"] + " (over TLS)"})
    return cases


CASES = _cases()

pytestmark = pytest.mark.skipif(
    KAFKA is None, reason="no Kafka to compare with: run `cargo xtask differential`")


@pytest.fixture(scope="module")
def servers(module_broker):
    kafka = differential.Server("kafka", KAFKA)
    broker = differential.Server("broker", module_broker.bootstrap)
    yield kafka, broker
    kafka.close()
    broker.close()


def _scram_args():
    user, password = SCRAM_USER
    return [
        "--set", "sasl_enabled_mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
        "--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]",
        "--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]",
    ]


def _serve(b, kafka, broker):
    """Yield the pair, then close them and stop the broker (failing if it died)."""
    yield kafka, broker
    kafka.close()
    broker.close()
    died = b.died_unexpectedly()
    b.cleanup()
    if died:
        pytest.fail(f"the {b.name} died:\n{b.log_tail()}", pytrace=False)


@pytest.fixture(scope="module")
def sasl_servers(tmp_path_factory):
    """Kafka's SASL_PLAINTEXT listener and a broker with only such a listener, each knowing
    the same SCRAM user."""
    if KAFKA_SASL is None:
        pytest.skip("no SASL listener of Kafka named (STILLWATER_KAFKA_SASL_BOOTSTRAP)")
    from conftest import Broker
    b = Broker(tmp_path_factory.mktemp("sasl-broker"), name="sasl-broker", advertise=False)
    b.extra_args += ["--set", f"listeners=SASL_PLAINTEXT://127.0.0.1:{b.port}"] + _scram_args()
    b.start()
    yield from _serve(b, differential.Server("kafka", KAFKA_SASL),
                      differential.Server("broker", b.bootstrap))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    """A broker with an SSL and a SASL_SSL listener (besides the PLAINTEXT one the harness
    probes), presenting the certificate Kafka presents; the TLS context trusting its CA."""
    if not (KAFKA_SSL and KAFKA_SASL_SSL and KAFKA_CERTS):
        pytest.skip("no TLS listener of Kafka named (STILLWATER_KAFKA_SSL_BOOTSTRAP, "
                    "STILLWATER_KAFKA_SASL_SSL_BOOTSTRAP, STILLWATER_KAFKA_CERTS)")
    from conftest import Broker, free_port
    certs = Path(KAFKA_CERTS)
    b = Broker(tmp_path_factory.mktemp("tls-broker"), name="tls-broker", advertise=False)
    b.ssl_port, b.sasl_ssl_port = free_port(), free_port()
    b.extra_args += [
        "--set", f"listeners=PLAINTEXT://127.0.0.1:{b.port},SSL://127.0.0.1:{b.ssl_port},"
                 f"SASL_SSL://127.0.0.1:{b.sasl_ssl_port}",
        "--set", f"ssl_certificate_location={certs / 'broker.pem'}",
        "--set", f"ssl_key_location={certs / 'broker-key.pem'}",
    ] + _scram_args()
    b.start()
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    yield b, context
    died = b.died_unexpectedly()
    b.cleanup()
    if died:
        pytest.fail(f"the TLS broker died:\n{b.log_tail()}", pytrace=False)


def _over_tls(context, kafka_bootstrap, broker_port):
    """Kafka's and the TLS broker's listeners of one kind, seen over TLS."""
    kafka = differential.Server("kafka", kafka_bootstrap, tls=context)
    broker = differential.Server("broker", f"127.0.0.1:{broker_port}", tls=context)
    yield kafka, broker
    kafka.close()
    broker.close()


@pytest.fixture(scope="module")
def ssl_servers(tls_broker):
    b, context = tls_broker
    yield from _over_tls(context, KAFKA_SSL, b.ssl_port)


@pytest.fixture(scope="module")
def sasl_ssl_servers(tls_broker):
    b, context = tls_broker
    yield from _over_tls(context, KAFKA_SASL_SSL, b.sasl_ssl_port)


@pytest.fixture(scope="module")
def cluster_servers(tmp_path_factory):
    """A three-node Kafka and a three-node broker cluster."""
    if KAFKA_CLUSTER is None:
        pytest.skip("no three-node Kafka named (STILLWATER_KAFKA_CLUSTER_BOOTSTRAP)")
    from test_cluster import Cluster
    cluster = Cluster(tmp_path_factory.mktemp("differential-cluster")).start()
    cluster.wait_brokers(3)
    kafka = differential.Server("kafka", KAFKA_CLUSTER)
    broker = differential.Server("broker", cluster.bootstrap)
    yield kafka, broker
    kafka.close()
    broker.close()
    died = [n.name for n in cluster.nodes.values() if n.died_unexpectedly()]
    tails = "\n".join(n.log_tail() for n in cluster.nodes.values() if n.died_unexpectedly())
    for n in cluster.nodes.values():
        n.cleanup()
    if died:
        pytest.fail(f"nodes of the cluster died: {died}\n{tails}", pytrace=False)


@pytest.fixture(scope="module")
def telemetry_servers(tmp_path_factory):
    """Kafka (its telemetry witness makes it serve client telemetry) and a broker with client
    telemetry enabled, for the cases that say `telemetry = true`."""
    from conftest import Broker
    b = Broker(tmp_path_factory.mktemp("telemetry-broker"), name="telemetry-broker")
    b.extra_args += ["--set", "client_telemetry_enabled=true"]
    b.start()
    yield from _serve(b, differential.Server("kafka", KAFKA),
                      differential.Server("broker", b.bootstrap))


FIXTURES = {None: "servers", "sasl": "sasl_servers", "ssl": "ssl_servers",
            "sasl_ssl": "sasl_ssl_servers"}


@pytest.fixture(scope="module")
def differences():
    return differential.load_differences()


def test_every_difference_has_a_reason(differences):
    for d in differences:
        assert d.get("reason", "").strip(), d
        assert d.get("paths"), d


@pytest.mark.parametrize(
    "index,case", list(enumerate(CASES)), ids=[f"{c['file']}-{c['name']}" for c in CASES])
def test_kafka_and_the_broker_answer_alike(request, differences, index, case):
    if case.get("nodes", 1) == 3:
        assert case.get("listener") is None, "cases on three nodes use PLAINTEXT listeners"
        fixture = "cluster_servers"
    else:
        fixture = "telemetry_servers" if case.get("telemetry") else FIXTURES[case.get("listener")]
    kafka, broker = request.getfixturevalue(fixture)
    assert differential.versions(case, kafka, broker), "no version served by both"
    problems = differential.run_case(case, index, kafka, broker, differences)
    assert not problems, "\n".join(problems)
