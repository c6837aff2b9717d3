"""Connections: a client that is gone frees what it held at once; one address cannot take every
connection slot; a client that stops reading its responses is closed after the write deadline."""

import socket
import time

import clients
import wire


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def served(bootstrap, source=None, timeout=3.0):
    """Whether a new connection (from `source` if given) gets an ApiVersions answer."""
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout,
                                      source_address=(source, 0) if source else None) as s:
            s.settimeout(timeout)
            err, _ = wire.api_versions(s)
            return err == 0
    except (OSError, ValueError, ConnectionError):
        return False


def test_long_polls_of_a_client_that_left_free_their_slots_at_once(make_broker):
    b = make_broker(extra_args=["--set", "max_connections=16",
                                "--set", "max_connections_per_ip=16"])
    with wire.connect(b.bootstrap) as s:
        wire.metadata_v1(s, ["quiet"])  # creates the (empty) topic
    wait_for(lambda: b.metric("stillwater_connections") == 0, 5, "setup connections to close")
    polls = []
    for i in range(16):
        s = wire.connect(b.bootstrap)
        # Two long polls each: the second waits for the first (one Fetch at a time), and the
        # closed socket must be noticed all the same.
        s.sendall(wire.fetch_frame("quiet", 0, 0, 2 * i, max_wait_ms=30_000, min_bytes=1)
                  + wire.fetch_frame("quiet", 0, 0, 2 * i + 1, max_wait_ms=30_000, min_bytes=1))
        polls.append(s)
    wait_for(lambda: b.metric("stillwater_connections") == 16, 5, "16 long polls")
    assert not served(b.bootstrap), "a 17th connection was served past max_connections"
    for s in polls:
        s.close()
    # Long before the 30 s polls would have ended, the slots are free again.
    started = time.monotonic()
    wait_for(lambda: served(b.bootstrap, timeout=1.0), 5, "a new client to be served")
    assert time.monotonic() - started < 5
    wait_for(lambda: b.metric("stillwater_connections") == 0, 5, "the closed connections to go")


def test_one_address_cannot_take_every_slot(make_broker):
    b = make_broker(extra_args=["--set", "max_connections=64",
                                "--set", "max_connections_per_ip=8",
                                "--set", "max_connections_per_ip_overrides=127.0.0.3:2"])
    wait_for(lambda: b.metric("stillwater_connections") == 0, 5, "setup connections to close")
    idle = [wire.connect(b.bootstrap) for _ in range(8)]
    wait_for(lambda: b.metric("stillwater_connections") == 8, 5, "8 idle connections")
    try:
        assert not served(b.bootstrap), "a 9th connection from 127.0.0.1 was served"
        assert b.metric("stillwater_connections_rejected_per_ip_total") >= 1
        # Other addresses are not locked out.
        assert served(b.bootstrap, source="127.0.0.2")
        # An override: two from 127.0.0.3, not three.
        host, port = b.bootstrap.rsplit(":", 1)
        two = [socket.create_connection((host, int(port)), source_address=("127.0.0.3", 0))
               for _ in range(2)]
        wait_for(lambda: b.metric("stillwater_connections") == 10, 5, "two from 127.0.0.3")
        assert not served(b.bootstrap, source="127.0.0.3")
        for s in two:
            s.close()
    finally:
        for s in idle:
            s.close()
    wait_for(lambda: served(b.bootstrap), 5, "127.0.0.1 to be served again once its connections closed")


def test_a_client_that_stops_reading_is_closed_at_the_write_deadline(make_broker):
    b = make_broker(extra_args=["--set", "response_write_timeout_ms=2000"])
    topic = "unread"
    clients.create_topics(b.bootstrap, {topic: 1})
    p = clients.producer(b.bootstrap, **{"linger.ms": 50, "acks": 1})
    log = clients.DeliveryLog()
    clients.produce_all(p, topic, [{"value": b"x" * 1000} for _ in range(8000)], log)
    wait_for(lambda: b.metric("stillwater_connections") <= 2, 10, "setup connections to close")
    before = b.metric("stillwater_connections")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = b.bootstrap.rsplit(":", 1)
    s.connect((host, int(port)))
    for i in range(20):
        s.sendall(wire.fetch_frame(topic, 0, 0, i, max_bytes=8 << 20,
                                   partition_max_bytes=8 << 20))
    # The client reads nothing: the first response fills the socket buffers and stops moving.
    wait_for(lambda: b.metric("stillwater_response_write_timeouts_total") >= 1, 15,
             "the write deadline to close the connection")
    wait_for(lambda: b.metric("stillwater_connections") <= before, 5, "the slot to be freed")
    wait_for(lambda: b.metric("stillwater_memory_used_bytes") < 1 << 20, 5,
             "the responses' memory to be given back")
    s.close()
    clients.roundtrip(b.bootstrap, topic, n=3, tag="after")
