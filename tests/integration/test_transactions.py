"""Transactions with real clients on a single node: librdkafka (confluent-kafka) committing and
aborting across three partitions with its consumer's offsets in the transaction, read by a
read_committed and a read_uncommitted consumer; a zombie producer fenced by a new instance; a
transaction a killed client left open, aborted by its timeout so that readers go on; a
consume-transform-produce pipeline that stays exactly-once across a broker SIGKILL; and
kafka-python's transactional producer and its admin calls (list, describe, abort a hanging
transaction)."""

import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

import clients


def txn_producer(bootstrap, txn_id, **conf):
    return Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                     "linger.ms": 5, **conf})


def read_values(bootstrap, topic, level, expect, timeout=30.0, group=None):
    """Values of `topic` from the start at isolation `level`, until `expect` are read (or the
    time is up, then what was read)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group or str(uuid.uuid4()),
                  "auto.offset.reset": "earliest", "isolation.level": level,
                  "enable.auto.commit": False})
    c.subscribe([topic])
    values = []
    deadline = time.time() + timeout
    while time.time() < deadline and len(values) < expect:
        for m in c.consume(500, 0.5):
            if not m.error():
                values.append(m.value().decode())
    # Anything more than expected would show now.
    for m in c.consume(500, 1.0):
        if not m.error():
            values.append(m.value().decode())
    c.close()
    return values


def pipeline(bootstrap, txn_id, total, deadline, progress):
    """Move `ctp-in` (three partitions) to `ctp-out` in transactions of at most 100, with the
    consumer's offsets in them, until every input is moved or the time is up
    (`progress["moved"]`: inputs moved by committed transactions so far); a failed transaction
    is aborted and its input read again from the committed offsets."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ctp",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.subscribe(["ctp-in"])
    p = txn_producer(bootstrap, txn_id, **{"transaction.timeout.ms": 20000})
    p.init_transactions(60)
    try:
        while time.time() < deadline:
            msgs = [m for m in c.consume(100, 1.0) if not m.error()]
            if not msgs:
                committed = c.committed([TopicPartition("ctp-in", i) for i in range(3)], 10)
                if sum(max(tp.offset, 0) for tp in committed) >= total:
                    return
                continue
            try:
                p.begin_transaction()
                for m in msgs:
                    p.produce("ctp-out", value=m.value().replace(b"in-", b"out-"),
                              partition=m.partition())
                p.send_offsets_to_transaction(c.position(c.assignment()),
                                              c.consumer_group_metadata(), 30)
                p.commit_transaction(30)
                progress["moved"] += len(msgs)
            except KafkaException as e:
                err = e.args[0]
                if err.fatal():
                    raise
                if err.txn_requires_abort():
                    p.abort_transaction(30)
                # Read again from what was committed.
                for tp in c.committed(c.assignment(), 10):
                    c.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
    finally:
        c.close()


def run_pipeline(bootstrap, txn_id, total, deadline, progress):
    """[`pipeline`] until it is done; an instance that fails for good (fenced, or its
    coordinator lost past its patience) is replaced by a new one with the same id, as an
    application restarts."""
    while True:
        try:
            return pipeline(bootstrap, txn_id, total, deadline, progress)
        except KafkaException as e:
            if time.time() > deadline:
                raise
            print("pipeline restarted after", e)


def assert_exactly_once(bootstrap, total, timeout):
    """`ctp-out` at read_committed holds the output of each of the `total` inputs once."""
    out = read_values(bootstrap, "ctp-out", "read_committed", total, timeout=timeout)
    counts = {}
    for v in out:
        counts[v] = counts.get(v, 0) + 1
    dups = {v: n for v, n in counts.items() if n > 1}
    assert not dups, f"{len(dups)} outputs duplicated, e.g. {list(dups.items())[:5]}"
    missing = [i for i in range(total) if f"out-{i:05d}" not in counts]
    assert not missing, f"{len(missing)} inputs never output, e.g. {missing[:5]}"


@pytest.mark.timeout(120)
def test_librdkafka_commits_and_aborts_and_each_isolation_level_reads_its_share(broker):
    """Data volume: 10 transactions of 600 messages (100 bytes) over three partitions."""
    clients.create_topics(broker.bootstrap, {"txn-in": 3, "txn-out": 3})
    p = txn_producer(broker.bootstrap, "mixed")
    p.init_transactions(30)
    committed, aborted = [], []
    for t in range(10):
        p.begin_transaction()
        batch = [f"t{t:02d}-{i:04d}-" + "x" * 90 for i in range(600)]
        for i, v in enumerate(batch):
            p.produce("txn-out", value=v, partition=i % 3)
        if t % 3 == 2:
            p.flush(30)
            p.abort_transaction(30)
            aborted += batch
        else:
            p.commit_transaction(30)
            committed += batch
    rc = read_values(broker.bootstrap, "txn-out", "read_committed", len(committed))
    assert sorted(rc) == sorted(committed), (len(rc), len(committed))
    ru = read_values(broker.bootstrap, "txn-out", "read_uncommitted", len(committed) + len(aborted))
    assert sorted(ru) == sorted(committed + aborted)

    # The consumer's offsets, sent inside a transaction, are committed only with it.
    group = "offsets-in-txn"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.assign([TopicPartition("txn-out", i, 0) for i in range(3)])
    got = 0
    while got < 300:
        got += len([m for m in c.consume(300 - got, 1.0) if not m.error()])
    positions = c.position([TopicPartition("txn-out", i) for i in range(3)])
    p.begin_transaction()
    p.send_offsets_to_transaction(positions, c.consumer_group_metadata(), 30)
    p.abort_transaction(30)
    assert [tp.offset for tp in c.committed([TopicPartition("txn-out", i) for i in range(3)], 10)] == [-1001] * 3
    p.begin_transaction()
    p.send_offsets_to_transaction(positions, c.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    assert [tp.offset for tp in c.committed([TopicPartition("txn-out", i) for i in range(3)], 10)] == \
        [tp.offset for tp in positions]
    c.close()


@pytest.mark.timeout(60)
def test_a_zombie_producer_is_fenced_by_a_new_instance_with_its_id(broker):
    clients.create_topics(broker.bootstrap, {"fenced": 1})
    zombie = txn_producer(broker.bootstrap, "shared-id")
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce("fenced", value="zombie-1")
    zombie.flush(30)
    successor = txn_producer(broker.bootstrap, "shared-id")
    successor.init_transactions(30)  # aborts the zombie's open transaction
    with pytest.raises(KafkaException) as e:
        zombie.produce("fenced", value="zombie-2")
        zombie.commit_transaction(30)
    assert e.value.args[0].fatal(), e.value
    successor.begin_transaction()
    successor.produce("fenced", value="successor")
    successor.commit_transaction(30)
    assert read_values(broker.bootstrap, "fenced", "read_committed", 1) == ["successor"]


@pytest.mark.timeout(90)
def test_a_transaction_left_open_by_a_killed_client_is_aborted_by_its_timeout(make_broker):
    b = make_broker(extra_args=["--set", "transaction_abort_check_interval_ms=200"])
    clients.create_topics(b.bootstrap, {"left-open": 1})
    script = textwrap.dedent(f"""
        import os
        from confluent_kafka import Producer
        p = Producer({{"bootstrap.servers": "{b.bootstrap}", "transactional.id": "killed",
                       "transaction.timeout.ms": 3000}})
        p.init_transactions(30)
        p.begin_transaction()
        p.produce("left-open", value="never-committed")
        p.flush(30)
        os._exit(0)  # gone without a word, its transaction open
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    # A later transaction of another producer is stuck behind the open one...
    p = txn_producer(b.bootstrap, "later")
    p.init_transactions(30)
    p.begin_transaction()
    p.produce("left-open", value="committed-later")
    p.commit_transaction(30)
    started = time.time()
    assert read_values(b.bootstrap, "left-open", "read_committed", 1, timeout=1.5) == []
    # ...until the timeout aborts the open one; then readers go on, without its record.
    values = read_values(b.bootstrap, "left-open", "read_committed", 1, timeout=30)
    assert values == ["committed-later"], values
    assert time.time() - started < 20


@pytest.mark.timeout(240)
def test_consume_transform_produce_is_exactly_once_across_a_broker_kill(make_broker):
    """Data volume: 6,000 input messages, each moved to the output in transactions of at most
    100 while the broker is SIGKILLed and restarted."""
    b = make_broker()
    clients.create_topics(b.bootstrap, {"ctp-in": 3, "ctp-out": 3})
    total = 6000
    src = clients.producer(b.bootstrap, **{"enable.idempotence": True})
    for i in range(total):
        src.produce("ctp-in", value=f"in-{i:05d}", partition=i % 3)
        if i % 1000 == 0:
            src.poll(0)
    assert src.flush(60) == 0

    import threading

    def kill_and_restart():
        time.sleep(2)
        b.kill()
        time.sleep(1)
        b.start()

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    deadline = time.time() + 150
    run_pipeline(b.bootstrap, "ctp-pipeline", total, deadline, {"moved": 0})
    killer.join()
    assert_exactly_once(b.bootstrap, total, timeout=60)


@pytest.mark.timeout(90)
def test_kafka_python_transactions_and_its_admin_calls(broker):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    clients.create_topics(broker.bootstrap, {"kp-txn": 2})
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="kp-1")
    p.init_transactions()
    p.begin_transaction()
    for i in range(10):
        p.send("kp-txn", value=f"kp-commit-{i}".encode(), partition=i % 2)
    p.commit_transaction()
    p.begin_transaction()
    for i in range(10):
        p.send("kp-txn", value=f"kp-abort-{i}".encode(), partition=i % 2)
    p.flush()  # written, so that the abort has markers to write
    p.abort_transaction()
    p.close()
    c = KafkaConsumer("kp-txn", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                      isolation_level="read_committed", consumer_timeout_ms=5000)
    values = sorted(m.value.decode() for m in c)
    c.close()
    assert values == sorted(f"kp-commit-{i}" for i in range(10)), values

    # A transaction left hanging, seen and aborted by the admin client.
    hanging = txn_producer(broker.bootstrap, "kp-hanging")
    hanging.init_transactions(30)
    hanging.begin_transaction()
    hanging.produce("kp-txn", value="hanging", partition=0)
    hanging.flush(30)
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    listed = [t for per_broker in a.list_transactions().values() for t in per_broker]
    states = {t.transactional_id: str(t.state.value) for t in listed}
    assert states == {"kp-1": "CompleteAbort", "kp-hanging": "Ongoing"}, listed
    hanging_state = a.describe_transactions(["kp-hanging"])["kp-hanging"]
    print("described:", hanging_state)
    assert str(hanging_state.state.value) == "Ongoing"
    assert [(tp.topic, tp.partition) for tp in hanging_state.topic_partitions] == [("kp-txn", 0)]
    # Stuck behind it, a read_committed reader sees nothing past it until an admin aborts it
    # on its partition (WriteTxnMarkers), as kafka-transactions.sh abort does.
    from kafka import TopicPartition as KTP
    from kafka.admin import AbortTransactionSpec
    stable = read_values(broker.bootstrap, "kp-txn", "read_committed", 11, timeout=3)
    assert sorted(stable) == sorted(f"kp-commit-{i}" for i in range(10))
    a.abort_transaction(AbortTransactionSpec(
        topic_partition=KTP("kp-txn", 0), producer_id=hanging_state.producer_id,
        producer_epoch=hanging_state.producer_epoch, coordinator_epoch=0))
    p2 = txn_producer(broker.bootstrap, "kp-after")
    p2.init_transactions(30)
    p2.begin_transaction()
    p2.produce("kp-txn", value="after-abort", partition=0)
    p2.commit_transaction(30)
    values = read_values(broker.bootstrap, "kp-txn", "read_committed", 11, timeout=20)
    assert sorted(values) == sorted([f"kp-commit-{i}" for i in range(10)] + ["after-abort"])
    a.close()


@pytest.mark.timeout(120)
def test_a_commit_decided_before_a_broker_kill_completes_on_every_partition_after_it(make_broker):
    """The commit is answered once decided; SIGKILLed right after, the broker finds the decision
    at its restart and writes the markers that were missing. Data volume: 5 rounds of a
    transaction over 40 partitions (400 records)."""
    b = make_broker()
    clients.create_topics(b.bootstrap, {"wide": 40})
    expected = []
    for round_ in range(5):
        p = txn_producer(b.bootstrap, f"wide-{round_}")
        p.init_transactions(30)
        p.begin_transaction()
        batch = [f"r{round_}-p{i:02d}-{j}" for i in range(40) for j in range(2)]
        for v in batch:
            p.produce("wide", value=v, partition=int(v.split("-p")[1][:2]))
        p.commit_transaction(30)
        b.kill()  # at once: some markers may not be written yet
        expected += batch
        b.start()
    values = read_values(b.bootstrap, "wide", "read_committed", len(expected), timeout=60)
    assert sorted(values) == sorted(expected), (len(values), len(expected))
