"""One member of a consumer group, as its own process (so that a test can SIGKILL it):
consume the topic with librdkafka's group protocol (classic with an assignor, or KIP-848's
with `consumer:<assignor>`), print each record as
"partition offset value", commit every 100 records, and on SIGTERM leave the group cleanly.

    python group_member.py BOOTSTRAP TOPIC GROUP [per-record delay in s] [strategy]
"""

import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException

bootstrap, topic, group = sys.argv[1:4]
delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
strategy = sys.argv[5] if len(sys.argv) > 5 else "range"
conf = {
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
}
if strategy.startswith("consumer:"):
    # KIP-848's protocol: the broker assigns with the named assignor, and the session and
    # heartbeat are the broker's settings.
    conf.update({"group.protocol": "consumer",
                 "group.remote.assignor": strategy.split(":", 1)[1]})
else:
    conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                 "partition.assignment.strategy": strategy})
c = Consumer(conf)
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
# The final commit can meet a rebalance (another member leaving at the same time): then poll
# (which lets the rebalance finish) and commit again, as an application that must not lose
# its progress does.
give_up = time.monotonic() + 15
while True:
    try:
        c.commit(asynchronous=False)
        break
    except KafkaException as e:
        err = e.args[0]
        if err.code() == KafkaError._NO_OFFSET or not err.retriable() and err.code() not in (
                KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                KafkaError.UNKNOWN_MEMBER_ID) or time.monotonic() > give_up:
            break  # nothing new to commit, or no longer possible
        m = c.poll(0.2)
        if m is not None and not m.error():  # consumed, so printed before it is committed
            print(f"{m.partition()} {m.offset()} {m.value().decode()}", flush=True)
c.close()
print("closed", flush=True)
