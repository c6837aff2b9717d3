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
