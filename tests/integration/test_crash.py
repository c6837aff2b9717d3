"""SIGKILL the broker while a producer writes continuously (acks=1), restart it, and check
that every acknowledged message is still there, at the offset it was acknowledged with, and
that nothing stored is corrupt. Unacknowledged messages may or may not survive."""

import hashlib
import random
import time

import pytest

import clients

ROUNDS = 4
PARTITIONS = 2
SEED = 20_241_122
RATE = 20_000  # messages per second at most, so verification stays quick


def make_value(rnd_no, part, seq):
    head = f"r{rnd_no}-p{part}-s{seq:09d}-".encode()
    return head + hashlib.sha256(head).hexdigest().encode() * 3


def value_ok(value):
    if value is None or b"-s" not in value:
        return False
    head_len = value.index(b"-s") + 2 + 9 + 1
    head = value[:head_len]
    return value == head + hashlib.sha256(head).hexdigest().encode() * 3


class AckLog:
    def __init__(self):
        self.acked = {}  # partition -> [(offset, value)] in the order acks arrived
        self.count = 0
        self.errors = 0

    def __call__(self, err, msg):
        if err is not None:
            self.errors += 1
            return
        self.acked.setdefault(msg.partition(), []).append((msg.offset(), msg.value()))
        self.count += 1


def produce_until_killed(broker, topic, rnd_no, rnd, acks):
    """Produce continuously; SIGKILL the broker at a seeded moment after the first ack."""
    p = clients.producer(
        broker.bootstrap,
        **{
            "acks": 1,
            "linger.ms": rnd.choice([0, 1, 5]),
            "message.timeout.ms": 5000,
            "retry.backoff.ms": 50,
            "queue.buffering.max.messages": 20000,
        },
    )
    kill_after = rnd.uniform(0.2, 1.5)
    first_ack_at = None
    start = time.monotonic()
    before = acks.count
    seq = 0
    while True:
        now = time.monotonic()
        if first_ack_at is None and acks.count > before:
            first_ack_at = now
        if first_ack_at is not None and now - first_ack_at >= kill_after:
            break
        assert now - start < 30, "no acknowledgement within 30 s"
        if seq > (now - start) * RATE:
            p.poll(0.002)
            continue
        part = seq % PARTITIONS
        try:
            p.produce(topic, key=f"k{seq % 17}".encode(), value=make_value(rnd_no, part, seq),
                      partition=part, on_delivery=acks)
            seq += 1
        except BufferError:
            p.poll(0.01)
        p.poll(0)

    broker.kill()
    # Whatever was not acknowledged by now never will be: purge it and collect the reports.
    p.purge(in_queue=True, in_flight=True)
    left = p.flush(10)
    assert left == 0, f"{left} messages stuck in the producer after purge"
    return seq


def verify(broker, topic, acks):
    consumed, marks = clients.consume_all(broker.bootstrap, topic, range(PARTITIONS), timeout=120)
    for part in range(PARTITIONS):
        recs = consumed[part]
        lo, hi = marks[part]
        assert lo == 0, f"partition {part}: log start {lo}"
        assert [r[0] for r in recs] == list(range(hi)), f"partition {part}: offsets not dense"
        bad = [r[0] for r in recs if not value_ok(r[2])]
        assert not bad, f"partition {part}: corrupt values at offsets {bad[:10]}"
        stored = {r[0]: r[2] for r in recs}
        acked = acks.acked.get(part, [])
        offsets = [off for off, _ in acked]
        assert offsets == sorted(set(offsets)), (
            f"partition {part}: acknowledged offsets not strictly increasing in ack order")
        lost = [(off, v) for off, v in acked if stored.get(off) != v]
        assert not lost, (
            f"partition {part}: {len(lost)} of {len(acked)} acknowledged messages lost or "
            f"changed; first: offset {lost[0][0]} acked {lost[0][1][:40]!r}, "
            f"stored {stored.get(lost[0][0], b'<missing>')[:40]!r}; high watermark {hi}")
    return marks


@pytest.mark.timeout(280)
@pytest.mark.parametrize("engine", ["auto", "blocking"])
def test_sigkill_during_production_loses_no_acknowledged_write(make_broker, engine):
    broker = make_broker(extra_args=["--io-engine", engine])
    topic = "crash"
    clients.create_topics(broker.bootstrap, {topic: PARTITIONS})
    rnd = random.Random(f"{SEED}-{engine}")
    acks = AckLog()
    summary = []
    for rnd_no in range(ROUNDS):
        before = acks.count
        sent = produce_until_killed(broker, topic, rnd_no, rnd, acks)
        broker.start()
        marks = verify(broker, topic, acks)
        summary.append((rnd_no, sent, acks.count - before, {p: m[1] for p, m in marks.items()}))
    print("rounds (round, sent, acked, high watermarks):", summary)
    assert acks.count > 0

    # The recovered broker still takes and serves writes at acks=all.
    clients.roundtrip(broker.bootstrap, topic, n=10, tag="after-crashes")
