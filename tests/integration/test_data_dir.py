"""The data directory belongs to one broker: a second broker started on it is refused with a
message naming the directory and the holder, and exits non-zero; the first one keeps serving
and loses nothing."""

import subprocess

import clients
from conftest import Broker, broker_env


def test_second_broker_on_the_same_data_dir_is_refused(make_broker):
    first = make_broker("first")
    topic = "one-owner"
    clients.create_topics(first.bootstrap, {topic: 1})
    p = clients.producer(first.bootstrap, acks="all")
    log = clients.DeliveryLog()
    clients.produce_all(p, topic, [{"value": f"before-{i}".encode()} for i in range(500)], log)

    # Same work directory, so the same data directory; other ports.
    second = Broker(first.workdir, name="second")
    assert second.data_dir == first.data_dir
    r = subprocess.run(second.command(), capture_output=True, text=True, timeout=60,
                       env=broker_env(), stdin=subprocess.DEVNULL)
    assert r.returncode != 0, f"a second broker started on a directory in use:\n{r.stderr}"
    err = r.stderr
    assert str(first.data_dir) in err, err
    assert "in use by another broker" in err, err
    assert f"pid {first.proc.pid}" in err and first.bootstrap in err, err

    # The first broker never noticed; everything acknowledged is there, also after a restart.
    clients.produce_all(p, topic, [{"value": f"after-{i}".encode()} for i in range(500)], log)
    first.restart()
    consumed, _ = clients.consume_all(first.bootstrap, topic, [0])
    values = [r[2] for r in consumed[0]]
    assert values == [f"before-{i}".encode() for i in range(500)] + \
        [f"after-{i}".encode() for i in range(500)]


def _snapshot(root):
    """Every file under `root` with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_directory_in_a_newer_format_is_refused_and_left_untouched(make_broker):
    """Data: 200 records. A broker meeting a data directory whose marker says a format above
    what it reads exits with code 3 and a message naming the file, the format, the version that
    wrote it and what to run — and changes no file there (not even its lock); put back, the
    directory serves everything it had."""
    b = make_broker("older")
    topic = "kept-for-later"
    clients.create_topics(b.bootstrap, {topic: 1})
    p = clients.producer(b.bootstrap, acks="all")
    log = clients.DeliveryLog()
    clients.produce_all(p, topic, [{"value": f"v{i}".encode()} for i in range(200)], log)
    b.stop()
    marker = b.data_dir / ".meta" / "format"
    text = marker.read_text()
    assert text.startswith("format=2\nwritten_by="), text  # a new single node: the newest format
    import zlib
    body = "format=99\nwritten_by=98.7.6"
    marker.write_text(f"{body}\ncrc32={zlib.crc32(body.encode()):08x}\n")
    before = _snapshot(b.data_dir)
    r = subprocess.run(b.command(), capture_output=True, text=True, timeout=60,
                       env=broker_env(), stdin=subprocess.DEVNULL)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert str(marker) in r.stderr and "format 99" in r.stderr, r.stderr
    assert "written by Stillwater 98.7.6" in r.stderr, r.stderr
    assert "run version 98.7.6 or later" in r.stderr, r.stderr
    assert _snapshot(b.data_dir) == before, "the refused broker changed files"

    marker.write_text(text)
    b.start()
    consumed, _ = clients.consume_all(b.bootstrap, topic, [0])
    assert [r[2] for r in consumed[0]] == [f"v{i}".encode() for i in range(200)]
