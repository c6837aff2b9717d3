"""Feature levels on a cluster (UpdateFeatures; the levels every broker's ApiVersions tells):
finalized through any broker, told by every broker, kept over restarts, and acted on —
group.version at 0 turns KIP-848's consumer protocol off on every broker. Refused updates
change nothing. Data volume: none (a few admin requests per broker)."""

import time

from differential import Server


def finalized(bootstrap):
    """{feature: level} and the epoch, as the broker at `bootstrap` tells them."""
    s = Server("broker", bootstrap)
    try:
        av = s.call("ApiVersions", 3, {"client_software_name": "features-test",
                                       "client_software_version": "1.0"})
        return {f.name: f.max_version_level for f in av.finalized_features}, av.finalized_features_epoch
    finally:
        s.close()


def update(bootstrap, feature, level, upgrade_type, validate_only=False):
    s = Server("broker", bootstrap)
    try:
        r = s.call("UpdateFeatures", 1, {"timeout_ms": 30000, "validate_only": validate_only,
                                         "feature_updates": [{"feature": feature, "max_version_level": level,
                                                              "upgrade_type": upgrade_type}]})
        return r.error_code, r.error_message
    finally:
        s.close()


def heartbeat_error(bootstrap, group):
    s = Server("broker", bootstrap)
    try:
        r = s.call("ConsumerGroupHeartbeat", 0, {
            "group_id": group, "member_id": f"m-{group}-00000000000", "member_epoch": 0,
            "rebalance_timeout_ms": 30000, "subscribed_topic_names": ["none"], "topic_partitions": []})
        if r.error_code == 0:  # leave
            s.call("ConsumerGroupHeartbeat", 0, {"group_id": group, "member_id": f"m-{group}-00000000000",
                                                 "member_epoch": -1, "rebalance_timeout_ms": -1})
        return r.error_code
    finally:
        s.close()


def wait_level(nodes, feature, level, timeout=15.0):
    for n in nodes:
        deadline = time.monotonic() + timeout
        while True:
            levels, _ = finalized(n.bootstrap)
            if levels.get(feature, 0) == level:
                break
            assert time.monotonic() < deadline, f"node {n.node_id} tells {levels}, not {feature}={level}"
            time.sleep(0.2)


def test_levels_finalized_through_one_broker_are_told_and_acted_on_by_all(tmp_path):
    """A new cluster starts at the newest levels (its first broker's registration finalizes
    them; every directory's format follows)."""
    from test_cluster import Cluster
    c = Cluster(tmp_path).start()
    try:
        c.wait_brokers(3)
        nodes = list(c.nodes.values())
        levels, epoch = finalized(nodes[0].bootstrap)
        assert levels == {"group.version": 1, "stillwater.version": 2}, levels
        assert epoch >= 0
        wait_level(nodes, "stillwater.version", 2)
        wait_markers(nodes, 2)

        # Refused whole: a level no broker supports, a feature no broker knows.
        code, message = update(nodes[1].bootstrap, "stillwater.version", 3, 1)
        assert code == 95 and f"Local controller {nodes[1].node_id} only supports versions 1-2" in message, message
        code, message = update(nodes[2].bootstrap, "no.such.feature", 1, 1)
        assert code == 95 and "does not support this feature" in message, message
        assert update(nodes[0].bootstrap, "group.version", 0, 2, validate_only=True) == (0, None)
        assert finalized(nodes[2].bootstrap)[0] == levels

        assert update(nodes[1].bootstrap, "group.version", 0, 2) == (0, None)
        wait_level(nodes, "group.version", 0)
        for n in nodes:
            assert heartbeat_error(n.bootstrap, f"g-{n.node_id}") == 35, n.node_id
            assert finalized(n.bootstrap)[1] > epoch

        # Kept over a restart of every broker.
        for n in nodes:
            n.restart()
        c.wait_brokers(3)
        wait_level(nodes, "group.version", 0)

        assert update(nodes[2].bootstrap, "group.version", 1, 1) == (0, None)
        wait_level(nodes, "group.version", 1)
        for n in nodes:
            # Served again (by the group's coordinator; NOT_COORDINATOR elsewhere).
            assert heartbeat_error(n.bootstrap, f"g-back-{n.node_id}") in (0, 16), n.node_id
    finally:
        died = c.cleanup()
        assert not died, [n.log_tail() for n in died]


def wait_markers(nodes, format, timeout=15.0):
    """Wait until every node's data directory marker says `format`."""
    for n in nodes:
        marker = n.data_dir / ".meta" / "format"
        deadline = time.monotonic() + timeout
        while not marker.read_text().startswith(f"format={format}\n"):
            assert time.monotonic() < deadline, f"node {n.node_id}: {marker.read_text()}"
            time.sleep(0.1)


def segment_files(data_dir, topic, ext):
    return sorted((data_dir / f"{topic}-0").glob(f"*.{ext}"))


def test_raising_the_format_level_keeps_the_data_and_new_files_name_their_format(tmp_path):
    """Data: 3 MB in 1 KB records over segments of 256 KiB on three nodes. A cluster starts at
    stillwater.version 1 (`initial_features`, as one that must still take brokers of an
    earlier version): every directory's marker at format 1, its files without a format line. Raised to 2 (through one broker), every broker's marker says 2 within seconds;
    files written from then on name their format (a new topic's metadata file, a closed
    segment's index files) while the old ones stay as they were and are read as before, also
    after every broker restarted; the level cannot be lowered again."""
    import clients
    from test_cluster import Cluster
    c = Cluster(tmp_path, extra_args=("--set", "segment_bytes=262144",
                                      "--set", "initial_features=stillwater.version=1")).start()
    try:
        c.wait_brokers(3)
        nodes = list(c.nodes.values())
        for n in nodes:
            assert (n.data_dir / ".meta" / "format").read_text().startswith("format=1\n")
        clients.create_topics(c.bootstrap, {"before": 1})
        p = clients.producer(c.bootstrap, acks="all")
        log = clients.DeliveryLog()
        values = [f"b{i:05d}".encode() * 128 for i in range(1500)]
        clients.produce_all(p, "before", [{"value": v} for v in values], log)
        # A closed segment's index files are written where it closes (its leader at least).
        old_index = [f for n in nodes for f in segment_files(n.data_dir, "before", "index")]
        assert old_index
        assert not any(f.read_bytes().startswith(b"SWOI") for f in old_index)
        for n in nodes:
            assert not (n.data_dir / ".meta" / "before.topic").read_text().startswith("stillwater-format=")

        assert update(nodes[1].bootstrap, "stillwater.version", 2, 1) == (0, None)
        wait_level(nodes, "stillwater.version", 2)
        wait_markers(nodes, 2)

        clients.create_topics(c.bootstrap, {"after": 1})
        clients.produce_all(p, "after", [{"value": v} for v in values], log)
        for n in nodes:
            assert (n.data_dir / ".meta" / "after.topic").read_text().startswith("stillwater-format=2\n")
        new_index = [f for n in nodes for f in segment_files(n.data_dir, "after", "index")]
        assert new_index and all(f.read_bytes().startswith(b"SWOI\0\0\0\x02") for f in new_index)
        assert not any(f.read_bytes().startswith(b"SWOI") for f in old_index)

        code, message = update(nodes[0].bootstrap, "stillwater.version", 1, 3)
        assert code == 95 and "not supported" in message, message

        for n in nodes:
            n.restart()
        c.wait_brokers(3)
        for topic in ("before", "after"):
            c.leader_of(topic, 0)
            consumed, _ = clients.consume_all(c.bootstrap, topic, [0])
            assert [r[2] for r in consumed[0]] == values, topic
    finally:
        died = c.cleanup()
        assert not died, [n.log_tail() for n in died]


def test_a_new_single_node_starts_at_its_initial_levels_and_keeps_them(make_broker):
    """Data: none (admin requests). `initial_features` starts a new single node lower than
    the newest levels (format 1, the classic group protocol alone); a directory keeps its
    levels when the setting changes; a feature or level the broker does not know is refused
    at start (exit 2) with the setting named."""
    import subprocess
    from conftest import Broker, broker_env
    b = make_broker("initial", extra_args=("--set", "initial_features=stillwater.version=1,group.version=0"))
    levels, _ = finalized(b.bootstrap)
    assert levels == {"stillwater.version": 1}, levels
    assert (b.data_dir / ".meta" / "format").read_text().startswith("format=1\n")
    assert heartbeat_error(b.bootstrap, "g-initial") == 35
    # Started again without the setting: the directory's levels stay.
    b.stop()
    b.extra_args = []
    b.start()
    assert finalized(b.bootstrap)[0] == levels
    b.stop()

    for spec, why in [("no.such=1", 'no feature "no.such"'),
                      ("stillwater.version=9", "stillwater.version=9: this broker supports levels 1 to 2"),
                      ("group.version", "is not name=level")]:
        bad = Broker(b.workdir.parent / f"bad-{len(why)}", name="bad", extra_args=("--set", f"initial_features={spec}"))
        r = subprocess.run(bad.command(), capture_output=True, text=True, timeout=60,
                           env=broker_env(), stdin=subprocess.DEVNULL)
        assert r.returncode == 2, (spec, r.returncode, r.stderr)
        assert "initial_features" in r.stderr and why in r.stderr, r.stderr
