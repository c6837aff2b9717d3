"""A measurement, not a test (docs/benchmarks.md, "Restarting after a long metadata history"):
three brokers take N metadata changes as IncrementalAlterConfigs records (32 topics changed in
turn), then every broker is stopped and started again; prints the time until every broker
serves the latest config (each broker's log says when its metadata caught up). Run with
snapshots at the defaults (`snapshots`) and with none (`off`):

    STILLWATER_BROKER_BIN=target/release/broker python tests/integration/measure_metadata_restart.py 300000 snapshots
"""
import os
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("STILLWATER_BROKER_BIN", str(HERE.parent.parent / "target/release/broker"))
import clients
from test_cluster import Cluster
from test_metadata_snapshots import alter_many, churn_topics, retention_ms, log_bytes, log_files

N = int(sys.argv[1]); mode = sys.argv[2]
args = [] if mode == "snapshots" else ["--set", "metadata_snapshot_interval_bytes=1099511627776"]
tmp = pathlib.Path(tempfile.mkdtemp(prefix="restart-"))
c = Cluster(tmp, extra_args=args).start()
try:
    c.wait_brokers(3)
    a = clients.admin(c.bootstrap)
    topics = churn_topics(a, 32)
    t0 = time.monotonic()
    last = alter_many(a, topics, N // len(topics))
    took = time.monotonic() - t0
    sizes = {n.node_id: log_bytes(n) for n in c.nodes.values()}
    first = {n.node_id: log_files(n)[0] for n in c.nodes.values()}
    for n in c.nodes.values():
        n.stop()
    started = time.monotonic()
    c.start()
    for n in c.nodes.values():
        while True:
            try:
                if retention_ms(n.bootstrap, "churn31") == last:
                    break
            except Exception:
                pass
            time.sleep(0.05)
    restart = time.monotonic() - started
    print(f"{mode}: {N} changes in {took:.0f} s ({N/took:.0f}/s); metadata log on disk {sizes} "
          f"first segment {first}; restart to every broker serving the latest config: {restart:.2f} s", flush=True)
    print(f"broker logs (opening data directory → metadata caught up): {tmp}", flush=True)
finally:
    c.cleanup()
