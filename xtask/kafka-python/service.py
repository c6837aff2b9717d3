"""The harness module kafka-python's integration tests import (`test.service`), written here.

kafka-python's source distribution on PyPI carries its integration tests but not this module,
which in its own repository starts Kafka and ZooKeeper as child processes. `cargo xtask
kafka-python` runs the tests against a broker it started itself (the tests' `KAFKA_URI`), so
only the external service is needed: a record of where the broker listens, with nothing to
start, stop or wait for. A spawned service is refused with a clear message.
"""


class ExternalService:
    def __init__(self, host, port):
        self.host = host
        self.port = port

    def start(self):
        pass

    def stop(self):
        pass

    def dump_logs(self):
        pass

    def wait_for(self, pattern, timeout=30):
        return True


class SpawnedService(ExternalService):
    def __init__(self, args=None, env=None):
        raise RuntimeError(
            "cargo xtask kafka-python runs kafka-python's tests against a broker it started "
            "(KAFKA_URI); it cannot spawn Kafka or ZooKeeper")
