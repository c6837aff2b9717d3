"""Snapshots of the cluster metadata, with real clients: metadata changes made through the
admin API (confluent-kafka's IncrementalAlterConfigs, CreateTopics, CreateAcls and DeleteAcls)
until the metadata log
has been snapshotted and cut several times; a broker whose disk is wiped catches up from a
leader's snapshot and serves the latest metadata; a cluster restarted after 100,000 changes
replays no more than the log since its last snapshot.

Data volume: 100,000 ACL changes (~10 MB of metadata log written) in the large test; 3,600
config changes (~1 MB) in the other."""

import os
import shutil
import time

from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, NewTopic, ResourcePatternType, ResourceType)

import clients
from test_cluster import Cluster

SEGMENT = 64 * 1024
# Small segments and interval: a snapshot every ~128 KiB of metadata log.
SMALL_SNAPSHOTS = ["--set", f"metadata_log_segment_bytes={SEGMENT}",
                   "--set", f"metadata_snapshot_interval_bytes={2 * SEGMENT}"]


def alter_many(admin, topics, count, first=0):
    """Set `retention.ms` of each of `topics` `count` times (3,600,000 + first + 1 … + count),
    one request per topic out at once (changes of one topic made at once would refuse each
    other, as Kafka's do); the last value set."""
    for i in range(first + 1, first + count + 1):
        pending = []
        for topic in topics:
            r = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
                ConfigEntry("retention.ms", str(3_600_000 + i),
                            incremental_operation=AlterConfigOpType.SET)])
            pending.append(admin.incremental_alter_configs([r])[r])
        for f in pending:
            f.result(60)
    return 3_600_000 + first + count


def churn_topics(admin, count):
    """Make `count` topics of one partition, three replicas, to change configs of."""
    topics = [f"churn{i}" for i in range(count)]
    for f in admin.create_topics([NewTopic(t, 1, 3) for t in topics]).values():
        f.result(60)
    for t in topics:
        clients.wait_for_topic(admin, t, 1, 60)
    return topics


def retention_ms(bootstrap, topic):
    a = clients.admin(bootstrap)
    r = ConfigResource(ResourceType.TOPIC, topic)
    return int(a.describe_configs([r])[r].result(30)["retention.ms"].value)


def metadata_dir(node):
    return node.data_dir / "__cluster_metadata-0"


def log_files(node):
    return sorted(p for p in os.listdir(metadata_dir(node)) if p.endswith(".log"))


def log_bytes(node):
    return sum(os.path.getsize(metadata_dir(node) / f) for f in log_files(node))


def test_the_metadata_log_is_cut_below_snapshots_and_a_wiped_broker_starts_from_one(tmp_path):
    c = Cluster(tmp_path, extra_args=SMALL_SNAPSHOTS).start()
    try:
        c.wait_brokers(3)
        a = clients.admin(c.bootstrap)
        topics = churn_topics(a, 8)
        last = alter_many(a, topics, 400)
        for n in c.nodes.values():
            deadline = time.monotonic() + 30
            while not (metadata_dir(n) / "metadata.snapshot").exists() \
                    or log_files(n)[0] == f"{0:020}.log":
                assert time.monotonic() < deadline, f"node {n.node_id}: no snapshot, log {log_files(n)}"
                time.sleep(0.2)
            assert log_bytes(n) < 4 * 2 * SEGMENT, f"node {n.node_id}: {log_files(n)}"
        # Broker 3 loses its disk; the others' logs no longer start at 0, so it can only catch
        # up from a leader's snapshot of the metadata.
        c.nodes[3].stop()
        shutil.rmtree(c.nodes[3].data_dir)
        last = alter_many(a, topics, 50, first=last - 3_600_000)
        c.nodes[3].start()
        deadline = time.monotonic() + 60
        while True:
            try:
                if retention_ms(c.nodes[3].bootstrap, "churn7") == last:
                    break
            except Exception:  # noqa: BLE001 - not caught up: no such topic yet
                pass
            assert time.monotonic() < deadline, "broker 3 never served the latest config"
            time.sleep(0.5)
        assert (metadata_dir(c.nodes[3]) / "metadata.snapshot").exists()
        assert "loaded the snapshot of the cluster metadata" in c.nodes[3].log_text()
        # And it takes part: a topic made now is served through it.
        a3 = clients.admin(c.nodes[3].bootstrap)
        a3.create_topics([NewTopic("after-wipe", 2, 3)])["after-wipe"].result(30)
        clients.wait_for_topic(a3, "after-wipe", 2, 30)
    finally:
        died = c.cleanup()
    assert not died, [n.log_tail() for n in died]


def binding(user, topic):
    return AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, user, "*",
                      AclOperation.READ, AclPermissionType.ALLOW)


def every_acl(admin):
    return admin.describe_acls(AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
        AclPermissionType.ANY)).result(60)


CHANGES = int(os.environ.get("STILLWATER_METADATA_CHANGES", "100000"))


def test_a_cluster_restarted_after_100000_metadata_changes_replays_only_since_its_snapshot(
        tmp_path):
    # A snapshot every 2 MiB of metadata log, in 1 MiB segments.
    # ACLs are kept by the authorizer; this test's client (unauthenticated) is its super user.
    args = ["--set", "metadata_log_segment_bytes=1048576",
            "--set", "metadata_snapshot_interval_bytes=2097152",
            "--set", "authorizer_enabled=true", "--set", "super_users=User:ANONYMOUS"]
    c = Cluster(tmp_path, extra_args=args).start()
    try:
        c.wait_brokers(3)
        a = clients.admin(c.bootstrap)
        # History: ACLs made and removed again, 1,000 a request; the last round stays.
        rounds = CHANGES // 2000
        for r in range(rounds + 1):
            user = f"User:u{r}"
            for f in a.create_acls([binding(user, f"t{j}") for j in range(1000)]).values():
                f.result(60)
            if r < rounds:
                for f in a.delete_acls([AclBindingFilter(
                        ResourceType.ANY, None, ResourcePatternType.ANY, user, None,
                        AclOperation.ANY, AclPermissionType.ANY)]).values():
                    f.result(60)
        assert len(every_acl(a)) == 1000
        records = max(int(log_files(n)[-1].split(".")[0]) for n in c.nodes.values())
        sizes = {n.node_id: log_bytes(n) for n in c.nodes.values()}
        for n in c.nodes.values():
            n.stop()
        started = time.monotonic()
        c.start()
        c.wait_brokers(3, timeout=120)
        deadline = time.monotonic() + 120
        while True:
            try:
                if len(every_acl(clients.admin(c.bootstrap))) == 1000:
                    break
            except Exception:  # noqa: BLE001 - not serving yet
                pass
            assert time.monotonic() < deadline, "the ACLs did not come back"
            time.sleep(0.2)
        took = time.monotonic() - started
        print(f"\n{CHANGES} metadata changes ({records}+ records in the metadata log's "
              f"history): metadata log on disk {sizes} bytes; restarted and serving the "
              f"metadata in {took:.1f} s")
        for n in c.nodes.values():
            # Only the log since the last snapshot (at most its interval and a segment) is
            # left to replay, however long the history.
            assert sizes[n.node_id] <= 2 * 1048576 + 2 * 1048576, sizes
            assert "loaded the snapshot of the cluster metadata" in n.log_text()
    finally:
        died = c.cleanup()
    assert not died, [n.log_tail() for n in died]
