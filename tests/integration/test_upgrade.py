"""A rolling upgrade, as an operator does it (docs/operations.md, "Upgrading"): a three-node
cluster of an earlier version's release broker (`cargo xtask upgrade` builds it once, from a
tag of this repository) rolled to this version one broker at a time, under an acks=all
idempotent producer and a consumer group; a broker rolled back while the cluster is still at
the earlier format level (allowed), the format level raised once every broker runs this
version (refused before), and the earlier version then refused on a directory of the new
format with a clear error and exit code 3, touching nothing. Throughout: nothing acknowledged
lost, nothing stored twice, the group reads everything, and no partition is without a leader
for longer than an election; and afterwards `broker verify` finds every data directory sound.

Data volume: about 25,000 records of 1 KiB (25 MB acknowledged) over 6 partitions, three
replicas each."""

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import clients
from conftest import Background, broker_bin, broker_env
from test_cluster import Cluster, Group, Node, consume_all
from test_features import finalized, update, wait_level, wait_markers

TOPIC = "rolling"
PARTITIONS = 6
# The longest a partition may be seen without a live leader: an election's longest timeout
# (20 ticks of 100 ms), its vote and the leadership reported to the metadata, plus the
# sampling interval. A graceful stop hands leadership over first, so most gaps are shorter.
LEADERLESS_MAX_S = 3.0


def old_broker():
    """The earlier version's release broker: given by `cargo xtask upgrade`/`test`, or built
    (once) by asking xtask for it."""
    given = os.environ.get("STILLWATER_OLD_BROKER_BIN")
    if given:
        return given
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(["cargo", "xtask", "upgrade", "--build-only"], cwd=root,
                         capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, f"cannot build the earlier version:\n{out.stdout}\n{out.stderr}"
    return out.stdout.strip().splitlines()[-1]


def version_of(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.split()[1]


class VersionedNode(Node):
    """A cluster node whose binary can change between its starts."""

    binary = None

    def command(self):
        cmd = super().command()
        cmd[0] = self.binary
        return cmd


class Load(Background):
    """An idempotent acks=all producer writing 1 KiB records to TOPIC as fast as the cluster
    takes them (at most `rate` a second), in a thread, until stopped."""

    join_timeout = 240

    def __init__(self, cluster, rate=800):
        self.cluster, self.rate = cluster, rate
        self.delivered = {}
        self.errors = []
        super().__init__()

    def _on_delivery(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            self.delivered[msg.value()] = msg.partition()

    def _run(self):
        p = clients.producer(self.cluster.bootstrap, **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 180_000,
            "retry.backoff.ms": 100,
            "topic.metadata.refresh.interval.ms": 1000,
        })
        i = 0
        started = time.monotonic()
        while not self.stop.is_set():
            if i > (time.monotonic() - started) * self.rate:
                p.poll(0.01)
                continue
            value = f"u-{i:07d}-".encode().ljust(1024, b".")
            try:
                p.produce(TOPIC, key=str(i % 101).encode(), value=value, on_delivery=self._on_delivery)
                i += 1
            except BufferError:
                p.poll(0.05)
            p.poll(0)
        self.left = p.flush(180)


class Leaders(Background):
    """Samples every partition's leader through Metadata every 250 ms; the longest stretch
    each partition was seen without a live leader."""

    join_timeout = 30

    def __init__(self, cluster):
        self.cluster = cluster
        self.since = {}
        self.longest = {p: 0.0 for p in range(PARTITIONS)}
        super().__init__()

    def _run(self):
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                a = clients.admin(self.cluster.alive_bootstrap())
                t = a.list_topics(topic=TOPIC, timeout=5).topics.get(TOPIC)
            except Exception:  # noqa: BLE001 — no broker answered this time: sample again
                time.sleep(0.25)
                continue
            for p in range(PARTITIONS):
                leader = t.partitions[p].leader if t is not None and p in t.partitions else -1
                live = leader in self.cluster.nodes and self.cluster.nodes[leader].alive()
                if live:
                    self.since.pop(p, None)
                else:
                    start = self.since.setdefault(p, now)
                    self.longest[p] = max(self.longest[p], now - start)
            time.sleep(0.25)


def wait_leaders(cluster, timeout=60.0):
    for p in range(PARTITIONS):
        cluster.leader_of(TOPIC, p, timeout=timeout)


def roll(cluster, node, binary):
    """Stop `node` gracefully and start it on `binary`; wait until the cluster has all its
    brokers and every partition a live leader again."""
    code = node.stop()
    assert code == 0, f"node {node.node_id} exited with {code} on SIGTERM\n{node.log_tail()}"
    node.binary = binary
    node.start(timeout=60)
    cluster.wait_brokers(3, timeout=60)
    wait_leaders(cluster)


def files_of(root):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.timeout(900)
def test_a_cluster_rolls_from_the_earlier_version_to_this_one_under_load(tmp_path):
    old, new = old_broker(), os.environ.get("STILLWATER_BROKER_BIN")
    new = new or broker_bin()
    old_version, new_version = version_of(old), version_of(new)
    assert old_version != new_version, (old_version, new_version)
    c = Cluster(tmp_path, node_class=VersionedNode)
    for n in c.nodes.values():
        n.binary = old
    c.start()
    try:
        c.wait_brokers(3)
        nodes = list(c.nodes.values())
        levels, _ = finalized(nodes[0].bootstrap)
        assert levels.get("stillwater.version") == 1, levels
        a = clients.admin(c.bootstrap)
        from confluent_kafka.admin import NewTopic
        for f in a.create_topics([NewTopic(TOPIC, PARTITIONS, 3)]).values():
            f.result()
        wait_leaders(c)
        group = "rolling-" + uuid.uuid4().hex[:6]
        with Leaders(c) as leaders, Group(c, TOPIC, group) as readers:
            with Load(c) as load:
                time.sleep(5)
                # One broker at a time to this version; meanwhile the format level cannot rise:
                # the brokers still on the earlier version cannot read its files.
                for i, n in enumerate(nodes):
                    roll(c, n, new)
                    if i == 0:
                        code, message = update(n.bootstrap, "stillwater.version", 2, 1)
                        assert code == 95 and "only supports versions 1-1" in message, message
                    time.sleep(3)
                # Before the raise a broker can go back to the earlier version, and forward again.
                roll(c, nodes[1], old)
                time.sleep(3)
                roll(c, nodes[1], new)
                time.sleep(3)

                # Every broker runs this version: the level rises, and every directory's marker.
                assert update(nodes[2].bootstrap, "stillwater.version", 2, 1) == (0, None)
                wait_level(nodes, "stillwater.version", 2)
                wait_markers(nodes, 2)
                time.sleep(3)

                # After it, the earlier version refuses the directory and changes nothing in it.
                victim = nodes[0]
                assert victim.stop() == 0
                before = files_of(victim.data_dir)
                victim.binary = old
                r = subprocess.run(victim.command(), capture_output=True, text=True, timeout=60,
                                   stdin=subprocess.DEVNULL, cwd=victim.workdir, env=broker_env())
                assert r.returncode == 3, (r.returncode, r.stderr[-2000:])
                assert "format 2" in r.stderr and f"written by Stillwater {new_version}" in r.stderr, r.stderr
                assert f"run version {new_version} or later" in r.stderr, r.stderr
                assert files_of(victim.data_dir) == before, "the refused broker changed files"
                victim.binary = new
                victim.start(timeout=60)
                c.wait_brokers(3, timeout=60)
                wait_leaders(c)
                time.sleep(5)
            assert load.left == 0, f"{load.left} records left undelivered"
            assert not load.errors, f"{len(load.errors)} delivery errors, e.g. {load.errors[:3]}"
            acked = load.delivered
            assert len(acked) > 10_000, len(acked)

            # Nothing acknowledged lost, nothing stored twice.
            got, _ = consume_all(c.bootstrap, TOPIC, list(range(PARTITIONS)))
            stored = {}
            for p in range(PARTITIONS):
                values = [r[2] for r in got[p]]
                assert len(values) == len(set(values)), f"partition {p}: records stored twice"
                stored.update((v, p) for v in values)
            missing = [v[:12] for v in acked if v not in stored]
            assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
            assert all(stored[v] == p for v, p in acked.items())

            # The group read everything (its members commit as they go; a rebalance may re-read).
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not set(acked) <= readers.values():
                time.sleep(0.5)
            unread = len(set(acked) - readers.values())
            print(f"rolling upgrade {old_version} -> {new_version}: {len(acked)} records acknowledged; "
                  f"longest leaderless stretch per partition (s): "
                  f"{ {p: round(s, 2) for p, s in leaders.longest.items()} }")
            assert unread == 0, f"the group did not read {unread} acknowledged records"
            worst = max(leaders.longest.values())
            assert worst <= LEADERLESS_MAX_S, f"a partition was leaderless for {worst:.2f} s: {leaders.longest}"
        # Every directory, files of both formats in it, is sound (`broker verify`).
        for n in nodes:
            assert n.stop() == 0
            r = subprocess.run([new, "verify", str(n.data_dir)], capture_output=True, text=True,
                               timeout=300, env=broker_env())
            assert r.returncode == 0 and " 0 damaged" in r.stdout, r.stdout[-3000:] + r.stderr
    finally:
        died = c.cleanup()
        assert not died, [n.log_tail() for n in died]
