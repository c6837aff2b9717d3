"""The differential suite: every case of `differential/cases/*.toml` sent to Apache Kafka and
to the broker (a single node of each, fresh), at the lowest and highest version of its API
that both serve, and the answers compared field by field (see `differential.py`). A
difference not listed, with its reason, in `differential/differences.toml` fails the case.

Kafka is not started here: `cargo xtask differential` starts it (`cargo xtask kafka up`), names
it in STILLWATER_KAFKA_BOOTSTRAP and runs this file; without that variable the suite is
skipped. Data volume: a few records per case, about 300 requests per server in all."""

import os

import pytest

import differential

KAFKA = os.environ.get("STILLWATER_KAFKA_BOOTSTRAP")
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
def differences():
    return differential.load_differences()


def test_every_difference_has_a_reason(differences):
    for d in differences:
        assert d.get("reason", "").strip(), d
        assert d.get("paths"), d


@pytest.mark.parametrize(
    "index,case", list(enumerate(CASES)), ids=[f"{c['file']}-{c['name']}" for c in CASES])
def test_kafka_and_the_broker_answer_alike(servers, differences, index, case):
    kafka, broker = servers
    assert differential.versions(case, kafka, broker), "no version served by both"
    problems = differential.run_case(case, index, kafka, broker, differences)
    assert not problems, "\n".join(problems)
