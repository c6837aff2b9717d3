"""Transactions on a three-node cluster with real clients: the coordinator of a transactional id
is the leader of its partition of `__transaction_state`, markers go to every partition's leader
(most of them on other brokers), and a partition leader asks the coordinator before a first
transactional batch. librdkafka commits and aborts across six partitions led by all three
brokers, read by a read_committed and a read_uncommitted consumer; a consume-transform-produce
pipeline stays exactly-once while the coordinator's broker is SIGKILLed and restarted, then a
partition leader; a zombie producer is fenced across a coordinator change."""

import threading
import time
import uuid

import pytest
from confluent_kafka import KafkaException

import clients
from test_cluster import cluster, create  # noqa: F401 (the fixture)
from test_transactions import assert_exactly_once, read_values, run_pipeline, txn_producer


def java_hash(s):
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def state_partition(txn_id, partitions=50):
    """The partition of `__transaction_state` that holds `txn_id` (Kafka's choice)."""
    h = java_hash(txn_id)
    return 0 if h == -(1 << 31) else abs(h) % partitions


def coordinator_of(c, txn_id):
    return c.leader_of("__transaction_state", state_partition(txn_id), timeout=60)


@pytest.mark.timeout(180)
def test_commits_and_aborts_across_partitions_led_by_every_broker(cluster):  # noqa: F811
    """Data volume: 12 transactions of 600 messages (100 bytes) over six partitions."""
    create(cluster.bootstrap, "ctxn-out", 6)
    leaders = {cluster.leader_of("ctxn-out", p) for p in range(6)}
    p = txn_producer(cluster.bootstrap, "ctxn-mixed")
    p.init_transactions(60)
    coordinator = coordinator_of(cluster, "ctxn-mixed")
    committed, aborted = [], []
    for t in range(12):
        p.begin_transaction()
        batch = [f"t{t:02d}-{i:04d}-" + "x" * 90 for i in range(600)]
        for i, v in enumerate(batch):
            p.produce("ctxn-out", value=v, partition=i % 6)
        if t % 3 == 2:
            # Written before the abort (an abort drops what the client has not sent yet).
            assert p.flush(60) == 0
            p.abort_transaction(60)
            aborted += batch
        else:
            p.commit_transaction(60)
            committed += batch
    # The markers went to partitions led elsewhere than the coordinator.
    assert leaders - {coordinator}, (leaders, coordinator)
    got = read_values(cluster.bootstrap, "ctxn-out", "read_committed", len(committed), 90)
    assert sorted(got) == sorted(committed), (len(got), len(committed))
    every = read_values(cluster.bootstrap, "ctxn-out", "read_uncommitted",
                        len(committed) + len(aborted), 90)
    missing = set(committed + aborted) - set(every)
    assert sorted(every) == sorted(committed + aborted), (len(every), len(missing),
                                                          sorted(missing)[:3])


@pytest.mark.timeout(420)
def test_consume_transform_produce_is_exactly_once_while_the_coordinator_and_a_leader_die(cluster):  # noqa: F811,E501
    """Data volume: 9,000 input messages, each moved to the output in transactions of at most
    100 while the coordinator's broker (a fifth of the way) and then a partition leader (half
    of the way) are SIGKILLed and restarted."""
    create(cluster.bootstrap, "ctp-in", 3)
    create(cluster.bootstrap, "ctp-out", 3)
    total = 9000
    src = clients.producer(cluster.bootstrap, **{"enable.idempotence": True})
    for i in range(total):
        src.produce("ctp-in", value=f"in-{i:05d}", partition=i % 3)
        if i % 1000 == 0:
            src.poll(0)
    assert src.flush(60) == 0
    txn_id = "ctp-" + uuid.uuid4().hex[:8]

    progress = {"moved": 0}
    kills = []
    deadline = time.time() + 300

    def kill_and_restart():
        for share, victim_of in ((5, lambda: coordinator_of(cluster, txn_id)),
                                 (2, lambda: cluster.leader_of("ctp-out", 1))):
            while progress["moved"] < total // share and time.time() < deadline:
                time.sleep(0.05)
            victim = victim_of()
            kills.append((victim, progress["moved"]))
            cluster.nodes[victim].kill()
            time.sleep(2)
            cluster.nodes[victim].start()

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    run_pipeline(cluster.bootstrap, txn_id, total, deadline, progress)
    killer.join()
    # Both kills came while the pipeline ran.
    assert len(kills) == 2 and all(moved < total for _, moved in kills), kills
    assert_exactly_once(cluster.bootstrap, total, timeout=90)


@pytest.mark.timeout(180)
def test_a_zombie_is_fenced_after_its_coordinator_moved(cluster):  # noqa: F811
    """Data volume: a few messages. The first producer's coordinator is stopped; a second
    instance of the id initialises with the new coordinator, and the first one's next commit
    is refused as fenced; read_committed sees only the second one's data."""
    create(cluster.bootstrap, "zombie-out", 3)
    txn_id = "zombie-" + uuid.uuid4().hex[:8]
    first = txn_producer(cluster.bootstrap, txn_id)
    first.init_transactions(60)
    first.begin_transaction()
    first.produce("zombie-out", value=b"zombie", partition=0)
    first.flush(30)
    victim = coordinator_of(cluster, txn_id)
    cluster.nodes[victim].stop()
    second = txn_producer(cluster.alive_bootstrap(), txn_id)
    second.init_transactions(90)
    second.begin_transaction()
    second.produce("zombie-out", value=b"live", partition=1)
    second.commit_transaction(60)
    with pytest.raises(KafkaException) as refused:
        first.commit_transaction(30)
    assert refused.value.args[0].fatal(), refused.value
    cluster.nodes[victim].start()
    got = read_values(cluster.bootstrap, "zombie-out", "read_committed", 1, 60)
    assert got == ["live"], got
