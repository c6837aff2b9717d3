"""The differential suite: every case of `differential/cases/*.toml` sent to Apache Kafka and
to the broker (a single node of each, fresh), at the lowest and highest version of its API
that both serve, and the answers compared field by field (see `differential.py`). A
difference not listed, with its reason, in `differential/differences.toml` fails the case.

Kafka is not started here: `cargo xtask differential` starts it (`cargo xtask kafka up`), names
it in STILLWATER_KAFKA_BOOTSTRAP and runs this file; without that variable the suite is
skipped. Cases with `listener = "sasl"` go to Kafka's SASL_PLAINTEXT listener and to a second
broker with only such a listener (requests before and during a SCRAM login). Data volume: a few
records per case, about 600 requests per server in all."""

import os

import pytest

import differential

KAFKA = os.environ.get("STILLWATER_KAFKA_BOOTSTRAP")
# Kafka's SASL_PLAINTEXT listener (SCRAM, user admin): the cases with `listener = "sasl"`.
KAFKA_SASL = os.environ.get("STILLWATER_KAFKA_SASL_BOOTSTRAP")
SCRAM_USER = ("admin", "admin-secret")
CASES = differential.load_cases()

pytestmark = pytest.mark.skipif(
    KAFKA is None, reason="no Kafka to compare with: run `cargo xtask differential`")


@pytest.fixture(scope="module")
def servers(module_broker):
    kafka = differential.Server("kafka", KAFKA)
    broker = differential.Server("broker", module_broker.bootstrap)
    yield kafka, broker
    kafka.close()
    broker.close()


@pytest.fixture(scope="module")
def sasl_servers(tmp_path_factory):
    """Kafka's SASL_PLAINTEXT listener and a broker with only such a listener, each knowing
    the same SCRAM user."""
    if KAFKA_SASL is None:
        pytest.skip("no SASL listener of Kafka named (STILLWATER_KAFKA_SASL_BOOTSTRAP)")
    from conftest import Broker
    b = Broker(tmp_path_factory.mktemp("sasl-broker"), name="sasl-broker", advertise=False)
    user, password = SCRAM_USER
    b.extra_args += [
        "--set", f"listeners=SASL_PLAINTEXT://127.0.0.1:{b.port}",
        "--set", "sasl_enabled_mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
        "--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]",
        "--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]",
    ]
    b.start()
    kafka = differential.Server("kafka", KAFKA_SASL)
    broker = differential.Server("broker", b.bootstrap)
    yield kafka, broker
    kafka.close()
    broker.close()
    died = b.died_unexpectedly()
    b.cleanup()
    if died:
        pytest.fail(f"the SASL broker died:\n{b.log_tail()}", pytrace=False)


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
    fixture = "sasl_servers" if case.get("listener") == "sasl" else "servers"
    kafka, broker = request.getfixturevalue(fixture)
    assert differential.versions(case, kafka, broker), "no version served by both"
    problems = differential.run_case(case, index, kafka, broker, differences)
    assert not problems, "\n".join(problems)
