"""What the README promises about starting and configuring the broker, checked against the
binary: settings are bounded and unknown ones refused (from every source), a missing data
directory is created, clean and crashed restarts do not warn about damage that is not there
(while real damage is still reported), and CreateTopics explains what it refuses."""

import os
import subprocess

import pytest
from confluent_kafka import KafkaError, KafkaException

import clients
from conftest import Broker, broker_bin, broker_env


def run_broker(args, env_extra=None, timeout=30):
    """Start the binary expecting it to refuse; its exit code and stderr."""
    try:
        r = subprocess.run([broker_bin(), *args], capture_output=True, text=True, timeout=timeout,
                           env=broker_env(**(env_extra or {})), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the broker started with {args} {env_extra} instead of refusing")
    return r.returncode, r.stderr


@pytest.mark.parametrize("args,env,named", [
    (["--set", "worker_threads=100000"], None, "worker_threads"),
    (["--set", "disk_threads=0"], None, "disk_threads"),
    (["--set", "max_in_flight_per_connection=1000000"], None, "max_in_flight_per_connection"),
    (["--set", "memory_budget_bytes=1048576"], None, "memory_budget_bytes"),
    (["--set", "no_such_setting=1"], None, "no_such_setting"),
    ([], {"STILLWATER_DATADIR": "/tmp/typo"}, "STILLWATER_DATADIR"),
    ([], {"STILLWATER_WORKER_THREADS": "100000"}, "worker_threads"),
], ids=["worker-threads", "disk-threads-0", "in-flight", "budget-below-frame", "unknown-flag",
        "unknown-env", "env-out-of-range"])
def test_bad_settings_are_refused_with_their_name(tmp_path, args, env, named):
    code, err = run_broker(["--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                            "--metrics-listen", "", *args], env)
    assert code == 2, f"exit {code}: {err}"
    assert named in err, err
    assert not (tmp_path / "data").exists(), "a refused configuration touched the data directory"


def test_a_missing_data_directory_is_created(make_broker, tmp_path):
    b = Broker(tmp_path / "fresh", name="fresh")
    assert not b.data_dir.exists()
    b.start()
    try:
        assert b.data_dir.is_dir()
        clients.roundtrip(b.bootstrap, "t", n=2)
    finally:
        b.cleanup()


DAMAGE_WARNING = "truncating a torn or corrupt tail"


def test_restarts_do_not_report_damage_that_is_not_there(make_broker):
    b = make_broker()
    topic = "restarts"
    clients.create_topics(b.bootstrap, {topic: 2})
    for i in range(3):
        clients.roundtrip(b.bootstrap, topic, n=20, tag=f"r{i}")
        since = b.log_size()
        b.restart(graceful=(i % 2 == 0))  # clean, then crashed, then clean
        text = b.log_since(since)
        assert DAMAGE_WARNING not in text, f"restart {i} warned of damage:\n{text}"
    # Real damage is still reported: garbage after the data of a partition's segment.
    b.stop()
    seg = sorted((b.data_dir / f"{topic}-0").glob("*.log"))[-1]
    data = bytearray(seg.read_bytes())
    end = 0  # the end of the last batch (zeros written ahead may follow)
    while end + 12 <= len(data):
        length = int.from_bytes(data[end + 8:end + 12], "big", signed=True)
        if length <= 0:
            break
        end += 12 + length
    data[end:end + 64] = b"\xab" * 64
    seg.write_bytes(bytes(data))
    since = b.log_size()
    b.start()
    assert DAMAGE_WARNING in b.log_since(since)
    consumed, _ = clients.consume_all(b.bootstrap, topic, [0])
    assert len(consumed[0]) == 60


@pytest.mark.parametrize("partitions,replication,code,words", [
    (1, 0, KafkaError.INVALID_REPLICATION_FACTOR, "at least 1"),
    (1, 3, KafkaError.INVALID_REPLICATION_FACTOR, "larger than the 1 available broker"),
    (0, 1, KafkaError.INVALID_PARTITIONS, "at least 1"),
], ids=["rf-0", "rf-3", "partitions-0"])
def test_create_topics_explains_what_it_refuses(broker, partitions, replication, code, words):
    a = clients.admin(broker.bootstrap)
    name = f"refused-{partitions}-{replication}"
    fut = a.create_topics([clients.NewTopic(name, num_partitions=partitions,
                                            replication_factor=replication)],
                          request_timeout=30)[name]
    with pytest.raises(KafkaException) as e:
        fut.result(timeout=30)
    err = e.value.args[0]
    assert err.code() == code, err
    assert words in err.str(), err.str()
    assert "larger" not in err.str() or replication > 1, err.str()


def test_a_topic_id_that_cannot_be_read_stops_the_start_naming_the_file(make_broker):
    import json
    import zlib

    b = make_broker()
    clients.create_topics(b.bootstrap, {"named": 1})
    b.stop()
    meta = b.data_dir / ".meta" / "named.topic"
    covered, _crc = meta.read_text().rstrip("\n").rsplit("\n", 1)
    # From format 2 the file's first line names its format, inside what the CRC covers.
    head, body = covered.split("\n", 1) if covered.startswith("stillwater-format=") else ("", covered)
    doc = json.loads(body)
    doc["id"] = "not-a-hex-id"
    covered = (head + "\n" if head else "") + json.dumps(doc)
    meta.write_text(f"{covered}\ncrc32={zlib.crc32(covered.encode()):08x}\n")
    code, err = run_broker(b.command()[1:])
    assert code != 0, "the broker started on a topic whose id it cannot read"
    assert "named.topic" in err and "not-a-hex-id" in err, err
