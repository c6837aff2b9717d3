"""The operator's tools of the one `broker` binary: the effective configuration with each
value's source, the version, and what the metrics listener says about the broker."""

import subprocess

from conftest import broker_bin, broker_env


def run_tool(*args, env=None, cwd=None):
    return subprocess.run([broker_bin(), *args], capture_output=True, text=True, timeout=60,
                          env=broker_env(**(env or {})), cwd=cwd, stdin=subprocess.DEVNULL)


def test_config_prints_each_value_with_the_source_that_won(tmp_path):
    """Data: none. A file, an environment variable and a flag each set a value (the later
    winning over the earlier); secrets are not printed; the output read back as a file gives
    the same effective configuration; a bad value exits 2 naming the setting."""
    cfg = tmp_path / "broker.toml"
    cfg.write_text('retention_ms = 1000\nsegment_bytes = 65536\n'
                   'add_scram = "SCRAM-SHA-256=[name=ops,password=do-not-print]"\n')
    r = run_tool("config", "--config", str(cfg), "--set", "segment_bytes=131072",
                 env={"STILLWATER_RETENTION_MS": "2000", "STILLWATER_NODE_ID": "4"})
    assert r.returncode == 0, r.stderr
    lines = {l.split(" = ")[0]: l for l in r.stdout.splitlines() if " = " in l}
    assert lines["retention_ms"] == "retention_ms = 2000  # environment STILLWATER_RETENTION_MS"
    assert lines["segment_bytes"] == "segment_bytes = 131072  # flag"
    assert lines["node_id"] == "node_id = 4  # environment STILLWATER_NODE_ID"
    assert lines["listen"] == 'listen = "127.0.0.1:9092"  # default'
    assert lines["add_scram"].startswith('add_scram = "<set>"  # file '), lines["add_scram"]
    assert "do-not-print" not in r.stdout

    again = tmp_path / "effective.toml"
    again.write_text("\n".join(l for l in r.stdout.splitlines() if not l.startswith("add_scram")))
    r2 = run_tool("config", "--config", str(again))
    assert r2.returncode == 0, r2.stderr
    strip = lambda out: sorted(l.split("  # ")[0] for l in out.splitlines() if not l.startswith("add_scram"))
    assert strip(r2.stdout) == strip(r.stdout)

    bad = run_tool("config", "--set", "segment_bytes=12")
    assert bad.returncode == 2 and "segment_bytes" in bad.stderr, bad.stderr


def test_the_version_is_told_by_the_binary_and_by_the_metrics(make_broker):
    """Data: none. `broker --version` and the `stillwater_build_info` metric name one version,
    the one the broker logs when it serves."""
    r = run_tool("--version")
    assert r.returncode == 0, r.stderr
    name, version = r.stdout.split()
    assert name == "broker" and version[0].isdigit(), r.stdout
    b = make_broker()
    assert b.metric("stillwater_build_info", version=version) == 1
    assert f'version="{version}"' in b.log_text() or f"version={version}" in b.log_text()


def http_get(addr, path):
    """(status code, body) of GET `path` on the metrics listener at `addr`."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_status(addr, path, status, timeout=30.0):
    import time
    deadline = time.monotonic() + timeout
    while True:
        got = http_get(addr, path)
        if got[0] == status:
            return got[1]
        assert time.monotonic() < deadline, f"{path} on {addr}: {got}, not {status}"
        time.sleep(0.2)


def test_health_and_ready_on_a_single_node(broker):
    """Data: none. A single node serves its partitions once it listens: both probes 200; an
    unknown path 404; metrics unchanged."""
    assert http_get(broker.metrics_addr, "/health") == (200, "ok\n")
    assert http_get(broker.metrics_addr, "/ready") == (200, "ready\n")
    assert http_get(broker.metrics_addr, "/nope")[0] == 404
    assert http_get(broker.metrics_addr, "/metrics")[0] == 200


def test_a_cluster_node_is_ready_once_it_serves_its_partitions(tmp_path):
    """Data: one topic of 6 partitions, three replicas each, 600 records. A node started alone
    (no quorum) is healthy but not ready, saying why; once the others start it becomes ready,
    and stays ready through a topic's creation and another node's crash (its partitions get
    leaders elsewhere)."""
    import clients
    from test_cluster import Cluster
    c = Cluster(tmp_path)
    n1, n2, n3 = (c.nodes[i] for i in (1, 2, 3))
    try:
        n1.start()
        assert http_get(n1.metrics_addr, "/health") == (200, "ok\n")
        status, why = http_get(n1.metrics_addr, "/ready")
        assert status == 503 and "not caught up" in why, (status, why)
        n2.start()
        n3.start()
        for n in (n1, n2, n3):
            wait_status(n.metrics_addr, "/ready", 200)
        clients.create_topics(c.bootstrap, {"ready-topic": 6})  # three replicas: the default on three nodes
        p = clients.producer(c.bootstrap, acks="all")
        log = clients.DeliveryLog()
        clients.produce_all(p, "ready-topic", [{"value": f"r{i}".encode()} for i in range(600)], log)
        n3.kill()
        for n in (n1, n2):
            wait_status(n.metrics_addr, "/ready", 200)
    finally:
        died = c.cleanup()
        assert not died, [n.log_tail() for n in died]


def test_dump_and_verify_a_data_directory(make_broker):
    """Data: 6,000 records (about 1 MB) in gzip batches over 64 KiB segments, and a committed
    transaction. `verify` refuses a directory a broker holds (exit 2); on the stopped broker's
    directory it finds nothing wrong (exit 0) and counts what it checked; `dump` prints the
    batches, with `--records` each record and the transaction's COMMIT marker, and the index
    files. A byte flipped inside a closed segment is damage (exit 1, the file and the batch
    named); a torn tail of the active segment is only a warning (the broker cuts it at start,
    and does)."""
    from confluent_kafka import Producer
    import clients
    b = make_broker(extra_args=("--set", "segment_bytes=65536"))
    clients.create_topics(b.bootstrap, {"dumped": 1})
    p = clients.producer(b.bootstrap, acks="all", **{"compression.type": "gzip", "batch.size": 32768})
    log = clients.DeliveryLog()
    import os
    clients.produce_all(p, "dumped", [{"key": f"k{i % 50}".encode(),
                                       "value": f"value-{i:05d}-".encode() + os.urandom(100).hex().encode()}
                                      for i in range(6000)], log)
    t = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "dump-txn"})
    t.init_transactions(30)
    t.begin_transaction()
    t.produce("dumped", key=b"in-txn", value=b"committed value")
    t.commit_transaction(30)

    busy = run_tool("verify", str(b.data_dir))
    assert busy.returncode == 2 and "in use by a running broker" in busy.stderr, busy.stderr
    b.stop()
    ok = run_tool("verify", str(b.data_dir))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 damaged" in ok.stdout and "1 partitions" in ok.stdout, ok.stdout
    segments = sorted((b.data_dir / "dumped-0").glob("*.log"))
    assert len(segments) >= 3, segments

    first = run_tool("dump", str(segments[0]))
    assert first.returncode == 0, first.stderr
    assert "compresscodec: gzip" in first.stdout and "crc valid: true" in first.stdout, first.stdout[:2000]
    records = run_tool("dump", "--records", *map(str, segments))
    assert '| offset: 0 ' in records.stdout and 'key: "k0"' in records.stdout, records.stdout[:2000]
    assert "endTxnMarker: COMMIT" in records.stdout, records.stdout[-3000:]
    assert 'payload: "committed value"' in records.stdout
    idx = run_tool("dump", str(segments[0].with_suffix(".index")), str(segments[0].with_suffix(".timeindex")))
    assert idx.returncode == 0 and "format: 2" in idx.stdout and "offset: 0 position: 0" in idx.stdout, idx.stdout

    # A torn tail of the active segment: repaired at start, so only a warning.
    active = segments[-1]
    size = active.stat().st_size
    with open(active, "r+b") as f:
        data = f.read()
        end = len(data.rstrip(b"\0"))
        f.seek(end)
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x01\x00garbage")
    torn = run_tool("verify", str(b.data_dir))
    assert torn.returncode == 0 and "WARN" in torn.stdout and active.name in torn.stdout, torn.stdout

    # A byte flipped in a closed segment: damage, named.
    closed = segments[1]
    with open(closed, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    bad = run_tool("verify", str(b.data_dir))
    assert bad.returncode == 1, bad.stdout
    assert f"DAMAGED {closed}" in bad.stdout and "1 damaged" in bad.stdout, bad.stdout
    assert size > 0


def test_connections_are_counted_by_the_client_software_they_name(broker):
    """Data: 10 records. librdkafka (through confluent-kafka) names its software in ApiVersions;
    while its producer is open the broker counts its connections under that name, and not once
    it is closed."""
    import clients
    from conftest import parse_prometheus_samples
    clients.create_topics(broker.bootstrap, {"software": 1})
    p = clients.producer(broker.bootstrap, acks="all")
    log = clients.DeliveryLog()
    clients.produce_all(p, "software", [{"value": b"v"} for _ in range(10)], log)

    def by_software():
        return {(lab.get("software_name"), lab.get("software_version")): v
                for (name, lab), v in parse_prometheus_samples(broker.metrics_text())
                if name == "stillwater_client_software_connections"}
    open_now = by_software()
    rdkafka = {k: v for k, v in open_now.items() if k[0] and "kafka" in k[0] and v > 0}
    assert rdkafka, open_now
    del p
    import gc
    gc.collect()
    import time
    deadline = time.monotonic() + 15
    while any(by_software().get(k, 0) > 0 for k in rdkafka):
        assert time.monotonic() < deadline, by_software()
        time.sleep(0.2)
