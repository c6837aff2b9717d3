"""The monitoring kept in monitoring/: the alerting rules pass `promtool check rules` and their
unit tests (`promtool test rules`); every metric the rules and the Grafana dashboard name is
one a running cluster exports; and a real Prometheus server scraping a three-node cluster with
those rules answers the under-replicated query right — 0, then above 0 (the alert pending)
once a broker is stopped, then 0 again once it is back.

Data volume: 3,000 records of 1 KiB over 6 partitions, three replicas each. Needs Debian's
prometheus package (`cargo xtask test` installs it as root; skipped otherwise, saying so)."""

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import clients
from conftest import free_port
from test_cluster import Cluster

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "prometheus" / "stillwater-rules.yml"
DASHBOARD = MONITORING / "grafana" / "stillwater.json"


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian: apt-get install prometheus)")


def test_the_rules_pass_promtool_and_their_unit_tests():
    need("promtool")
    checked = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout, checked.stdout
    tested = subprocess.run(["promtool", "test", "rules", "stillwater-rules.test.yml"],
                            cwd=RULES.parent, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def named_metrics():
    """Every stillwater_* name the rules and the dashboard's queries use."""
    texts = [RULES.read_text()]
    dash = json.loads(DASHBOARD.read_text())
    assert dash["panels"], "a dashboard without panels"
    texts += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    return set(re.findall(r"\bstillwater_[a-z_]+", "\n".join(texts)))


def query(addr, expr):
    url = f"http://{addr}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(addr, expr, ok, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        result = query(addr, expr)
        if ok(result):
            return result
        assert time.monotonic() < deadline, f"{expr}: {result}"
        time.sleep(0.5)


def value(result):
    return sum(float(r["value"][1]) for r in result)


@pytest.mark.timeout(600)
def test_prometheus_scraping_a_cluster_sees_a_stopped_broker_s_partitions_under_replicated(tmp_path):
    need("prometheus")
    c = Cluster(tmp_path / "cluster").start()
    prom = None
    try:
        c.wait_brokers(3)
        nodes = list(c.nodes.values())
        a = clients.admin(c.bootstrap)
        from confluent_kafka.admin import NewTopic
        for f in a.create_topics([NewTopic("watched", 6, 3)]).values():
            f.result()
        # A quota its producer is metered against, so that the quota series exist too.
        from test_quotas import alter_quotas
        assert alter_quotas(c.bootstrap, [({"client-id": "watcher"}, {"producer_byte_rate": 1e9})]) == [(0, None)]
        p = clients.producer(c.bootstrap, acks="all", **{"client.id": "watcher"})
        log = clients.DeliveryLog()
        clients.produce_all(p, "watched", [{"value": b"m" * 1024} for _ in range(3000)], log)
        clients.consume_all(c.bootstrap, "watched", list(range(6)))

        # Every metric the rules and the dashboard use is one the brokers export.
        exported = set()
        for n in nodes:
            exported |= {name for (name, _), _ in __import__("conftest").parse_prometheus_samples(n.metrics_text())}
        bases = {re.sub(r"_(bucket|sum|count)$", "", e) for e in exported} | exported
        missing = sorted(m for m in named_metrics() if m not in bases)
        assert not missing, f"named in monitoring/ but not exported: {missing}"

        port = free_port()
        addr = f"127.0.0.1:{port}"
        config = tmp_path / "prometheus.yml"
        targets = ", ".join(f'"{n.metrics_addr}"' for n in nodes)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n  - job_name: stillwater\n"
            f"    static_configs:\n      - targets: [{targets}]\n"
        )
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address={addr}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
        deadline = time.monotonic() + 60
        while True:
            try:
                query(addr, "up")
                break
            except OSError:
                assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "Prometheus did not start"
                time.sleep(0.5)
        under = "sum(stillwater_raft_under_replicated)"
        wait_for(addr, 'up{job="stillwater"} == 1', lambda r: len(r) == 3)
        wait_for(addr, under, lambda r: r and value(r) == 0)

        stopped = nodes[2]
        assert stopped.stop() == 0
        result = wait_for(addr, under, lambda r: r and value(r) > 0)
        wait_for(addr, f'up{{instance="{stopped.metrics_addr}"}}', lambda r: r and value(r) == 0)
        wait_for(addr, 'ALERTS{alertname="StillwaterUnderReplicatedPartitions"}', lambda r: len(r) > 0)
        print(f"under-replicated with node {stopped.node_id} stopped: {value(result):.0f}")

        stopped.start()
        c.wait_brokers(3)
        wait_for(addr, under, lambda r: r and value(r) == 0, timeout=90)
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=30)
        died = c.cleanup()
        assert not died, [n.log_tail() for n in died]
