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
    from test_cluster import Cluster
    c = Cluster(tmp_path).start()
    try:
        c.wait_brokers(3)
        nodes = list(c.nodes.values())
        levels, epoch = finalized(nodes[0].bootstrap)
        assert levels == {"group.version": 1, "stillwater.version": 1}, levels

        # Refused whole: a level no broker supports, a feature no broker knows.
        code, message = update(nodes[1].bootstrap, "stillwater.version", 2, 1)
        assert code == 95 and f"Local controller {nodes[1].node_id} only supports versions 1-1" in message, message
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
