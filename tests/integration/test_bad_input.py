"""Bad input over raw sockets against one running broker. After (and during) each bad
input, a well-behaved client still produces and consumes, the broker process is alive, and
where it closed a connection it said so in its log."""

import random
import re
import socket
import struct
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

import clients
import wire

HEALTHY = "healthy"
LOG_WORDS = ("clos", "malformed", "error", "invalid", "unsupported", "unknown", "refus",
             "reject", "too large", "oversized", "frame")


@pytest.fixture(scope="module")
def b(module_broker):
    clients.create_topics(module_broker.bootstrap, {HEALTHY: 1})
    return module_broker


def healthy(b, tag):
    b.assert_alive()
    clients.roundtrip(b.bootstrap, HEALTHY, n=5, tag=tag)
    b.assert_alive()


class Mark:
    """Where the broker's log and its malformed-request counter stood before a bad input."""

    def __init__(self, b):
        self.log = b.log_size()
        self.malformed = b.metric("stillwater_malformed_requests_total")


def assert_reported(b, mark, peer_port):
    """The broker counted the bad input (stillwater_malformed_requests_total) and, unless its
    log lines about bad input are being rate-limited, said so in its log: a line with the
    peer's port or one of LOG_WORDS."""
    needle = f":{peer_port}"

    def found(text):
        low = text.lower()
        return needle in text or any(w in low for w in LOG_WORDS)

    deadline = time.monotonic() + 5
    while b.metric("stillwater_malformed_requests_total") <= mark.malformed:
        assert time.monotonic() < deadline, "the bad input was not counted as malformed"
        time.sleep(0.05)
    text = b.wait_for_log(mark.log, found, timeout=1)
    throttled = len(re.findall(r"WARN.*(closing connection|middle of a frame)", b.log_text())) >= 10
    assert found(text) or throttled, (
        f"broker logged nothing about the bad connection from port {peer_port}, and no line "
        f"says lines were suppressed; log since then:\n{text[-3000:]}")


def test_random_bytes(b):
    rnd = random.Random(7)
    for i in range(5):
        s = wire.connect(b.bootstrap)
        s.sendall(rnd.randbytes(rnd.randrange(1, 8192)))
        healthy(b, f"random-{i}-during")
        s.close()
    healthy(b, "random-after")


def test_random_body_in_valid_frame(b):
    """A complete frame of garbage: the broker must answer or close, not wait forever."""
    rnd = random.Random(11)
    for i in range(5):
        mark = Mark(b)
        s = wire.connect(b.bootstrap)
        port = s.getsockname()[1]
        # api key 1000..32000 (none exists), then random bytes
        body = struct.pack(">h", rnd.randrange(1000, 32000)) + rnd.randbytes(rnd.randrange(2, 300))
        s.sendall(wire.frame(body))
        closed, _ = wire.wait_closed(s, timeout=10)
        s.close()
        assert closed, "broker kept a connection open after a garbage request"
        assert_reported(b, mark, port)
    healthy(b, "garbage-frame-after")


def test_truncated_frame(b):
    # Length says 100, only 10 bytes arrive. While that connection hangs mid-frame, others
    # are served; then it closes and the broker carries on.
    s = wire.connect(b.bootstrap)
    s.sendall(struct.pack(">i", 100) + b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x00")
    healthy(b, "truncated-during")
    s.close()
    healthy(b, "truncated-after")

    # Same, but the peer vanishes with a reset instead of a FIN.
    s = wire.connect(b.bootstrap)
    s.sendall(struct.pack(">i", 100) + b"\x00" * 10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    healthy(b, "truncated-reset-after")


def test_two_gib_length_prefix_is_refused(b):
    mark = Mark(b)
    s = wire.connect(b.bootstrap)
    port = s.getsockname()[1]
    s.sendall(struct.pack(">I", 0x7FFFFFFF) + b"\x00\x12\x00\x00" * 4)
    closed, _ = wire.wait_closed(s, timeout=10)
    s.close()
    assert closed, "broker kept reading a 2 GiB frame"
    assert_reported(b, mark, port)
    healthy(b, "2gib-after")

    # A negative length, too.
    mark = Mark(b)
    s = wire.connect(b.bootstrap)
    port = s.getsockname()[1]
    s.sendall(struct.pack(">i", -5) + b"\x00" * 8)
    closed, _ = wire.wait_closed(s, timeout=10)
    s.close()
    assert closed, "broker kept a connection with a negative frame length"
    healthy(b, "negative-length-after")


def test_unknown_api_key_closes_connection(b):
    mark = Mark(b)
    s = wire.connect(b.bootstrap)
    port = s.getsockname()[1]
    s.sendall(wire.frame(wire.request_header_v1(9999, 0, 42)))
    closed, data = wire.wait_closed(s, timeout=10)
    s.close()
    assert closed, "connection not closed after an unknown API key"
    assert data == b"", f"unexpected reply to an unknown API key: {data[:64]!r}"
    assert_reported(b, mark, port)
    healthy(b, "unknown-key-after")


def test_api_versions_unsupported_version(b):
    s = wire.connect(b.bootstrap)
    try:
        s.sendall(wire.frame(wire.request_header_v1(wire.API_API_VERSIONS, 99, 7)))
        resp = wire.recv_frame(s)
        r = wire.Reader(resp)
        assert r.i32() == 7, "correlation id"
        err, keys = wire.parse_api_versions_v0(r)
        assert err == wire.UNSUPPORTED_VERSION, f"error_code {err}"
        assert wire.API_API_VERSIONS in keys, f"api list {keys}"
        lo, hi = keys[wire.API_API_VERSIONS]
        assert lo == 0 and hi >= 3, f"ApiVersions range {lo}..{hi}"
        for key in (wire.API_PRODUCE, wire.API_FETCH, wire.API_METADATA, wire.API_LIST_OFFSETS,
                    wire.API_CREATE_TOPICS):
            assert key in keys, f"api key {key} not advertised"
        # Clients (librdkafka) retry at a supported version on the same connection.
        err, keys2 = wire.api_versions(s, correlation_id=8)
        assert err == 0 and keys2 == keys
    finally:
        s.close()
    healthy(b, "apiversions-v99-after")


def _produce_version(b):
    with wire.connect(b.bootstrap) as s:
        err, keys = wire.api_versions(s)
    lo, hi = keys[wire.API_PRODUCE]
    assert lo <= 3 <= hi, f"test speaks Produce v3; broker offers {lo}..{hi}"
    return 3


def _raw_produce(s, topic, batch, corr):
    r = wire.roundtrip(s, wire.API_PRODUCE, 3, wire.produce_request_v3(topic, 0, batch), corr)
    res = wire.parse_produce_response_v3(r)
    assert (topic, 0) in res, res
    return res[(topic, 0)]


def test_produce_with_bad_crc_is_rejected(b):
    topic = "raw-crc"
    clients.create_topics(b.bootstrap, {topic: 1})
    _produce_version(b)
    good = wire.record_batch([(b"k", b"the good one", [("h", b"v")])])

    bad_payload = bytearray(wire.record_batch([(b"k", b"CORRUPTED VALUE", [])]))
    bad_payload[-5] ^= 0x20  # a bit flip inside the value: CRC no longer matches
    bad_crc = bytearray(wire.record_batch([(b"k", b"wrong crc field", [])]))
    bad_crc[wire.BATCH_CRC_AT] ^= 0xFF
    bad_length = bytearray(wire.record_batch([(b"k", b"lies about its length", [])]))
    struct.pack_into(">i", bad_length, 8, len(bad_length) + 1000)

    s = wire.connect(b.bootstrap)
    try:
        err, base = _raw_produce(s, topic, good, 1)
        assert (err, base) == (0, 0), f"valid hand-made batch rejected: error {err}"
        for i, bad in enumerate([bad_payload, bad_crc]):
            err, _ = _raw_produce(s, topic, bytes(bad), 10 + i)
            assert err in (wire.CORRUPT_MESSAGE, wire.INVALID_RECORD), f"bad batch {i}: error {err}"
    finally:
        s.close()

    # A batch whose length field overruns the records: an error reply or a closed
    # connection are both fine; storing it is not.
    s = wire.connect(b.bootstrap)
    try:
        try:
            err, _ = _raw_produce(s, topic, bytes(bad_length), 20)
            assert err != 0, "batch with a bogus length accepted"
        except (ConnectionError, OSError):
            pass
    finally:
        s.close()

    # Nothing but the valid record was stored, and the log still takes writes.
    consumed, marks = clients.consume_all(b.bootstrap, topic, [0])
    assert marks[0] == (0, 1), f"watermarks {marks[0]}: a corrupt batch was stored"
    assert [(r[1], r[2]) for r in consumed[0]] == [(b"k", b"the good one")]
    with wire.connect(b.bootstrap) as s:
        assert _raw_produce(s, topic, good, 30) == (0, 1)
    healthy(b, "bad-crc-after")


@pytest.mark.parametrize("name", ["bad/name", "a" * 300, "..", "with space", "tab\tname"],
                         ids=["slash", "300-chars", "dotdot", "space", "tab"])
def test_create_topic_with_forbidden_name(b, name):
    a = clients.admin(b.bootstrap)  # keep a reference: the future dies with the client
    fut = a.create_topics(
        [clients.NewTopic(name, num_partitions=1, replication_factor=1)],
        operation_timeout=10, request_timeout=30)[name]
    with pytest.raises(KafkaException) as e:
        fut.result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, e.value
    assert name not in clients.topic_names(b.bootstrap)
    healthy(b, "bad-name-after")


def test_broker_survived_everything(b):
    b.assert_alive()
    healthy(b, "final")


def test_a_flood_of_bad_frames_does_not_flood_the_log(make_broker):
    """Bad input is logged a few lines per window; the rest are counted, and the next line
    written says how many were suppressed."""
    b = make_broker("flood")
    mark = Mark(b)
    for _ in range(300):
        with wire.connect(b.bootstrap) as s:
            s.sendall(struct.pack(">i", -1))
            wire.wait_closed(s, timeout=5)
    assert b.metric("stillwater_malformed_requests_total") - mark.malformed == 300
    lines = [l for l in b.log_since(mark.log).splitlines() if "frame size out of bounds" in l]
    assert 1 <= len(lines) <= 20, f"{len(lines)} log lines for 300 bad frames"
    time.sleep(10.5)  # the next window
    since = b.log_size()
    with wire.connect(b.bootstrap) as s:
        s.sendall(struct.pack(">i", -1))
        wire.wait_closed(s, timeout=5)
    text = b.wait_for_log(since, lambda t: "suppressed=" in t, timeout=5)
    m = re.search(r"suppressed=(\d+)", text)
    assert m and int(m.group(1)) == 300 - len(lines), text
    healthy(b, "after-flood")
