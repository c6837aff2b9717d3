"""One member of a consumer group, as its own process (so that a test can SIGKILL it):
consume the topic with librdkafka's group protocol, print each record as
"partition offset value", commit every 100 records, and on SIGTERM leave the group cleanly.

    python group_member.py BOOTSTRAP TOPIC GROUP [per-record delay in s]
"""

import signal
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, group = sys.argv[1:4]
delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
c = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "partition.assignment.strategy": sys.argv[5] if len(sys.argv) > 5 else "range",
})
c.subscribe([topic])
since_commit = 0
while not stop:
    m = c.poll(0.2)
    if m is None or m.error():
        continue
    print(f"{m.partition()} {m.offset()} {m.value().decode()}", flush=True)
    since_commit += 1
    if since_commit >= 100:
        c.commit(asynchronous=False)
        since_commit = 0
    if delay:
        time.sleep(delay)
try:
    c.commit(asynchronous=False)
except Exception:
    pass  # nothing new to commit
c.close()
print("closed", flush=True)
