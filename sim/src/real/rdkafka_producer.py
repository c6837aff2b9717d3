"""A librdkafka producer (confluent-kafka) of a twin run: message n of producer P is the
simulator's own (value `p<P>-<n>` padded with `|` and dots to the workload's size, on
partition (P + n) mod partitions), sent idempotently with acks=all every interval until the
deadline, then flushed. Each message sent is one JSON line on stdout (n, partition, when),
and each delivery report another (the same, with the offset or error code and when it was
reported; seconds from the run's start).
Written by the twin runner into the run's directory and run with the test clients' Python."""
import json
import sys
import time

from confluent_kafka import KafkaError, Producer


def main():
    a = dict(arg.split("=", 1) for arg in sys.argv[1:])
    producer, partitions = int(a["producer"]), int(a["partitions"])
    # As the simulated producers: started max(1, partitions / producers) partitions apart.
    stride = max(1, partitions // max(1, int(a["producers"])))
    value_bytes, interval = int(a["value_bytes"]), int(a["interval_ms"]) / 1000.0
    t0, until = float(a["t0"]), float(a["until"])
    p = Producer({
        "bootstrap.servers": a["bootstrap"],
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": int(a["message_timeout_ms"]),
        "client.id": "twin-librdkafka-%d" % producer,
    })
    out = sys.stdout

    def report(n, invoked):
        def on_delivery(err, msg):
            line = {"n": n, "partition": msg.partition(), "invoked": invoked,
                    "completed": time.time() - t0}
            if err is None:
                line["offset"] = msg.offset()
            else:
                line["error"] = err.code()
                line["error_name"] = err.name()
            out.write(json.dumps(line) + "\n")
        return on_delivery

    n = 0
    while time.time() < until:
        name = "p%d-%d" % (producer, n)
        value = name.encode()
        if value_bytes > len(value) + 1:
            value = (value + b"|").ljust(value_bytes, b".")
        invoked = time.time() - t0
        partition = (producer * stride + n) % partitions
        try:
            p.produce(a["topic"], value, partition=partition, on_delivery=report(n, invoked))
        except BufferError:
            # Not sent: the local queue is full; try the same message again.
            p.poll(0.1)
            continue
        # Sent (its report follows): a message never reported may still have been written.
        out.write(json.dumps({"n": n, "partition": partition, "invoked": invoked}) + "\n")
        n += 1
        p.poll(0)
        time.sleep(interval)
    left = p.flush(int(a["message_timeout_ms"]) / 1000.0 + 10)
    out.flush()
    sys.exit(0 if left == 0 else 1)


if __name__ == "__main__":
    main()
