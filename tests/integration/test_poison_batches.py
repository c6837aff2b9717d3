"""Batches whose header and CRC-32C are valid but whose records no consumer can read: each is
refused (CORRUPT_MESSAGE or INVALID_RECORD) with nothing of it stored, and librdkafka, kcat and
kafka-python read every good record around them — none stalls at a poisoned offset."""

import gzip
import random
import time

import pytest

import clients
import wire

GOOD_HEADER = [("h", b"v")]


def good(i):
    return wire.record_batch([(b"k", f"good-{i}".encode(), GOOD_HEADER)])


def records(n, value=b"value"):
    return b"".join(wire.encode_record(i, 0, b"k", value, []) for i in range(n))


def control_record():
    # What a broker writes to end a transaction: key = version 0, type 0 (abort); value =
    # version 0, coordinator epoch 0.
    return wire.encode_record(0, 0, wire.i16(0) + wire.i16(0), wire.i16(0) + wire.i32(0), [])


def poison():
    three = records(3)
    length_past_end = bytearray(three)
    length_past_end[0:3] = wire.uvarint(2_000_000)  # first record claims ~1 MB
    trailing = three + b"tail"
    wrong_delta = wire.encode_record(1, 0, b"k", b"v", []) + wire.encode_record(0, 0, b"k", b"v", [])
    rnd = random.Random(5)
    return {
        "gzip codec, not gzip": wire.record_batch([], attributes=1, raw_records=b"not gzip at all", count=3),
        "snappy codec, not snappy": wire.record_batch([], attributes=2, raw_records=b"\xff" * 40, count=3),
        "lz4 codec, not lz4": wire.record_batch([], attributes=3, raw_records=b"not lz4 at all", count=3),
        "zstd codec, not zstd": wire.record_batch([], attributes=4, raw_records=b"not zstd at all", count=3),
        "codec 5": wire.record_batch([], attributes=5, raw_records=three, count=3),
        "codec 6": wire.record_batch([], attributes=6, raw_records=three, count=3),
        "codec 7": wire.record_batch([], attributes=7, raw_records=three, count=3),
        "garbage record bodies": wire.record_batch([], raw_records=rnd.randbytes(300), count=3),
        "record length past the batch end": wire.record_batch([], raw_records=bytes(length_past_end), count=3),
        "valid gzip around garbage": wire.record_batch(
            [], attributes=1, raw_records=gzip.compress(rnd.randbytes(200)), count=3),
        "control batch from a client": wire.record_batch([], attributes=0x20, raw_records=control_record(), count=1),
        "more records declared than sent": wire.record_batch([], raw_records=three, count=5),
        "bytes after the last record": wire.record_batch([], raw_records=trailing, count=3),
        "offset deltas out of order": wire.record_batch([], raw_records=wrong_delta, count=2),
        "varint past 32 bits": wire.record_batch(
            [], raw_records=b"\x80\x80\x80\x80\x80\x01" + b"\x00" * 12, count=1),
    }


def produce(s, topic, batch, corr):
    r = wire.roundtrip(s, wire.API_PRODUCE, 3, wire.produce_request_v3(topic, 0, batch), corr)
    return wire.parse_produce_response_v3(r)[(topic, 0)]


def read_with_kafka_python(bootstrap, topic, want, timeout=60):
    from kafka import KafkaConsumer, TopicPartition

    cons = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", request_timeout_ms=30000, check_crcs=True)
    try:
        tp = TopicPartition(topic, 0)
        cons.assign([tp])
        cons.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < want:
            assert time.monotonic() < deadline, f"kafka-python stalled after {len(got)} of {want}"
            for recs in cons.poll(timeout_ms=500).values():
                got += [(r.offset, r.value) for r in recs]
        return got
    finally:
        cons.close()


@pytest.mark.timeout(240)
def test_poisoned_batches_are_refused_and_consumers_read_past_them(broker):
    topic = "poison"
    clients.create_topics(broker.bootstrap, {topic: 1})
    cases = poison()
    expected = []
    refused_wrongly = []
    with wire.connect(broker.bootstrap) as s:
        corr = 1
        for i, (name, batch) in enumerate(cases.items()):
            err, base = produce(s, topic, good(i), corr)
            assert err == 0, f"good batch before {name!r} refused with {err}"
            expected.append((base, f"good-{i}".encode()))
            err, _ = produce(s, topic, batch, corr + 1)
            if err not in (wire.CORRUPT_MESSAGE, wire.INVALID_RECORD):
                refused_wrongly.append(f"{name}: error {err}")
            corr += 2
        err, base = produce(s, topic, good(len(cases)), corr)
        assert err == 0
        expected.append((base, f"good-{len(cases)}".encode()))
    assert not refused_wrongly, "poison acknowledged:\n" + "\n".join(refused_wrongly)
    # Offsets are dense: nothing of a refused batch took an offset.
    assert [e[0] for e in expected] == list(range(len(expected)))

    # librdkafka (confluent-kafka), with CRC checks on.
    consumed, marks = clients.consume_all(broker.bootstrap, topic, [0])
    assert marks[0] == (0, len(expected))
    assert [(r[0], r[2]) for r in consumed[0]] == expected

    # kafka-python.
    assert read_with_kafka_python(broker.bootstrap, topic, len(expected)) == expected

    # kcat reads to the end and exits.
    if clients.KCAT:
        out = clients.run_kcat(["-b", broker.bootstrap, "-t", topic, "-p", "0", "-C", "-e",
                                "-o", "beginning", "-f", "%o|%s\n"], timeout=60)
        assert [tuple(line.split("|", 1)) for line in out.splitlines()] == \
            [(str(o), v.decode()) for o, v in expected]
