"""An idle broker does no disk work: no periodic commits, syncs or writes."""

import time

import clients

DISK_COUNTERS = [
    "stillwater_disk_write_ops_total",
    "stillwater_disk_sync_ops_total",
    "stillwater_commit_rounds_total",
    "stillwater_commit_appends_total",
]


def test_idle_broker_does_no_disk_work(broker):
    clients.create_topics(broker.bootstrap, {"idle": 2})
    p = clients.producer(broker.bootstrap)
    log = clients.DeliveryLog()
    clients.produce_all(
        p, "idle", [{"key": f"k{i}".encode(), "value": f"v{i}".encode()} for i in range(20)], log)
    assert len(log.ok) == 20 and not log.errors
    del p

    time.sleep(1.0)
    first = {name: broker.metric(name) for name in DISK_COUNTERS}
    assert first["stillwater_disk_write_ops_total"] > 0, "writes not counted"
    assert first["stillwater_disk_sync_ops_total"] > 0, "syncs not counted (acks=all must sync)"
    assert first["stillwater_commit_appends_total"] >= 1
    assert broker.metric("stillwater_requests_total", api="Produce") >= 1
    assert broker.metric("stillwater_append_queue_depth") == 0
    assert broker.metric("stillwater_failed_log_dirs") == 0

    time.sleep(5.0)
    second = {name: broker.metric(name) for name in DISK_COUNTERS}
    assert second == first, f"idle broker did disk work: before {first}, after {second}"
