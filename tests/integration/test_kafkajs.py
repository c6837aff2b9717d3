"""KafkaJS (the Node.js client) as a transactional producer, on a single node and on a three-node
cluster: commits and aborts across three partitions with the group's input offsets in the
transaction, a zombie fenced by a new producer with its transactional id, and what a
read_committed and a read_uncommitted KafkaJS consumer then read (`kafkajs/transactions.js`
does the client's part and prints what it saw).

KafkaJS comes from npm, at the version `kafkajs/package-lock.json` pins: `cargo xtask test`
installs it under the target directory and points `NODE_PATH` at it. Where Node.js or KafkaJS
is missing, these tests are skipped with the command that installs it."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_cluster import cluster  # noqa: F401 (the fixture)

SCRIPT = Path(__file__).parent / "kafkajs" / "transactions.js"
NODE = shutil.which("node")


def kafkajs_missing():
    if NODE is None:
        return "Node.js is not installed"
    found = subprocess.run(
        [NODE, "-e", "require.resolve('kafkajs')"], capture_output=True, env=os.environ)
    if found.returncode != 0:
        return ("KafkaJS is not installed: `npm ci` in a copy of tests/integration/kafkajs, with "
                "NODE_PATH naming its node_modules (cargo xtask test does both)")
    return None


needs_kafkajs = pytest.mark.skipif(kafkajs_missing() is not None, reason=str(kafkajs_missing()))


def run_transactions(bootstrap, name):
    """Data volume: 4 transactions of 3 records (about 20 bytes), 3 offsets commits."""
    r = subprocess.run(
        [NODE, str(SCRIPT), bootstrap, f"{name}-out", f"{name}-in", f"{name}-group"],
        capture_output=True, text=True, timeout=150, env=os.environ)
    assert r.returncode == 0, f"transactions.js exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def check(seen):
    committed = [f"committed-{t}-p{p}" for t in (1, 2, 3) for p in range(3)]
    aborted = [f"aborted-p{p}" for p in range(3)]
    # read_committed: the three committed transactions, nothing of the aborted one or of the
    # zombie's, each record once, in offset order within its partition.
    values = [m["value"] for m in seen["committed"]]
    assert sorted(values) == sorted(committed), values
    # read_uncommitted: the aborted records too (they are in the log), still not the zombie's.
    values = [m["value"] for m in seen["uncommitted"]]
    assert sorted(values) == sorted(committed + aborted), values
    for reader in ("committed", "uncommitted"):
        for p in range(3):
            offsets = [m["offset"] for m in seen[reader] if m["partition"] == p]
            assert offsets == sorted(offsets), (reader, p, offsets)
            names = [m["value"].rsplit("-p", 1)[0] for m in seen[reader] if m["partition"] == p]
            order = ["committed-1", "aborted", "committed-2", "committed-3"]
            assert names == [n for n in order if n in names], (reader, p, names)
    # The zombie's transaction failed on its epoch: KafkaJS's request versions predate
    # PRODUCER_FENCED, so Kafka answers them INVALID_PRODUCER_EPOCH.
    assert seen["zombieError"] is not None
    assert seen["zombieError"]["type"] in ("INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED"), seen
    # The committed transaction's offset is the group's; the aborted one's (9) is not.
    (topic,) = seen["offsets"]
    assert [(p["partition"], p["offset"]) for p in topic["partitions"]] == [(0, "5")], seen


@needs_kafkajs
@pytest.mark.timeout(200)
def test_kafkajs_transactions_on_a_single_node(broker):
    check(run_transactions(broker.bootstrap, "kjs"))


@needs_kafkajs
@pytest.mark.timeout(300)
def test_kafkajs_transactions_on_three_nodes(cluster):  # noqa: F811
    check(run_transactions(cluster.bootstrap, "kjs3"))
