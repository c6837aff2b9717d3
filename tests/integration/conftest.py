"""Fixtures that run the real `broker` binary for the integration tests.

Each test gets its own broker on free loopback ports with a fresh data directory. The
broker's stderr goes to a file; when a test fails, the tail of that file is attached to the
report. A broker that died on its own (not stopped or killed by the test) fails the test.

Environment:
  STILLWATER_BROKER_BIN      the broker binary (default /root/.cache/stillwater-target/debug/broker)
  STILLWATER_TEST_IO_ENGINE  passed as --io-engine when set (uring | blocking | auto)
  STILLWATER_OLD_BROKER_BIN  the earlier version's release broker (test_upgrade.py; built by
                             `cargo xtask upgrade --build-only` when not set)
"""

import atexit
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import wire

DEFAULT_BIN = "/root/.cache/stillwater-target/debug/broker"
LOG_TAIL_LINES = 200

# Brokers currently alive, so a failing test's report can carry their logs (module-scoped
# brokers included).
_LIVE_BROKERS = []


@atexit.register
def _kill_leftover_brokers():
    # Last resort if pytest is torn down abnormally: never leave a broker running.
    for b in list(_LIVE_BROKERS):
        if b.proc is not None and b.proc.poll() is None:
            b.proc.kill()


def broker_bin() -> str:
    return os.environ.get("STILLWATER_BROKER_BIN", DEFAULT_BIN)


# The harness's own STILLWATER_* variables are not broker settings (the broker refuses
# unknown STILLWATER_* variables), so they stay out of the broker's environment.
HARNESS_VARS = ("STILLWATER_BROKER_BIN", "STILLWATER_TEST_IO_ENGINE", "STILLWATER_KAFKA_BOOTSTRAP",
                "STILLWATER_KAFKA_SASL_BOOTSTRAP", "STILLWATER_KAFKA_SSL_BOOTSTRAP",
                "STILLWATER_KAFKA_SASL_SSL_BOOTSTRAP", "STILLWATER_KAFKA_CERTS",
                "STILLWATER_KAFKA_CLUSTER_BOOTSTRAP", "STILLWATER_OLD_BROKER_BIN")


def broker_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in HARNESS_VARS}
    env.setdefault("RUST_BACKTRACE", "1")
    env.update(extra)
    return env


_TAKEN_PORTS: set = set()


def _port_range() -> range:
    """This process's share of the ports: under pytest-xdist each worker (gw0, gw1, …)
    takes its own slice, so two workers never pick the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    width = 12_000 // max(count, 1)
    return range(20_000 + index * width, 20_000 + (index + 1) * width)


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range (32768 and up on Linux): a
    broker restarted on its ports must find them free, and a port from that range may
    meanwhile have become the local end of some client's connection."""
    rng = random.Random()
    ports = _port_range()
    for _ in range(10_000):
        port = rng.randrange(ports.start, ports.stop)
        if port in _TAKEN_PORTS:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _TAKEN_PORTS.add(port)
        return port
    raise RuntimeError("no free port below 32000")


class Background:
    """`_run` in a thread of its own from `with` to the end of the block (`stop` says when);
    the block's end waits for the thread at most `join_timeout` seconds (`None`: until it
    ends)."""

    join_timeout = None

    def __init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=self.join_timeout)


class BrokerDied(AssertionError):
    pass


class Broker:
    """One broker process, restartable on the same data directory and ports."""

    def __init__(self, workdir: Path, name="broker", extra_args=(), advertise=True, open_files=None):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / f"{name}-stderr.log"
        self.port = free_port()
        self.metrics_port = free_port()
        self.extra_args = list(extra_args)
        self.advertise = advertise
        # The process's open-file limit (soft and hard), if the test sets one.
        self.open_files = open_files
        self.proc = None
        self.starts = 0
        self._expected_exit = False
        self._log_file = None

    # -- addresses ---------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_addr(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    # -- lifecycle ---------------------------------------------------------------------

    def command(self):
        cmd = [
            broker_bin(),
            "--listen", self.bootstrap,
            "--data-dir", str(self.data_dir),
            "--metrics-listen", self.metrics_addr,
            "--node-id", "1",
        ]
        if self.advertise:
            cmd += ["--advertised-listener", self.bootstrap]
        engine = os.environ.get("STILLWATER_TEST_IO_ENGINE")
        if engine and "--io-engine" not in self.extra_args:
            cmd += ["--io-engine", engine]
        return cmd + self.extra_args

    def start(self, timeout=30.0):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        binary = broker_bin()
        if not os.access(binary, os.X_OK):
            pytest.fail(
                f"broker binary {binary} not found or not executable; build it "
                "(cargo build -p broker --bin broker) or set STILLWATER_BROKER_BIN",
                pytrace=False,
            )
        self.starts += 1
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(
            f"\n===== test harness: start #{self.starts}: {' '.join(self.command())}\n".encode()
        )
        self._log_file.flush()
        env = broker_env()
        limit = None
        if self.open_files is not None:
            import resource
            n = self.open_files
            limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))  # noqa: E731
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            cwd=self.workdir,
            env=env,
            preexec_fn=limit,
        )
        self._expected_exit = False
        if self not in _LIVE_BROKERS:
            _LIVE_BROKERS.append(self)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30.0):
        """Wait until the port accepts and an ApiVersions v0 round trip succeeds."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerDied(
                    f"broker exited with {self.proc.returncode} during start-up\n{self.log_tail()}"
                )
            try:
                with self._probe() as s:
                    err, keys = wire.api_versions(s)
                    if err == 0 and wire.API_API_VERSIONS in keys:
                        return
                    last_error = f"ApiVersions error {err}, keys {sorted(keys)}"
            except (OSError, ValueError) as e:
                last_error = repr(e)
            time.sleep(0.05)
        raise AssertionError(
            f"broker not ready on {self.bootstrap} after {timeout}s: {last_error}\n{self.log_tail()}"
        )

    def _probe(self):
        """A connection to the first listener: TLS with `ready_tls_ca` (a TLS-only broker)."""
        s = wire.connect(self.bootstrap, timeout=2.0)
        ca = getattr(self, "ready_tls_ca", None)
        if ca is None:
            return s
        import ssl
        ctx = ssl.create_default_context(cafile=ca)
        client = getattr(self, "ready_tls_client", None)
        if client is not None:
            ctx.load_cert_chain(*client)
        return ctx.wrap_socket(s, server_hostname="localhost")

    def _reap(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self._log_file is not None and self.proc.poll() is not None:
                self._log_file.close()
                self._log_file = None

    def stop(self, timeout=20.0):
        """Graceful shutdown (SIGTERM). Returns the exit code; SIGKILLs and fails if the
        broker does not exit within timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self._expected_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self._reap(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self._reap(10)
            raise AssertionError(
                f"broker did not exit within {timeout}s of SIGTERM\n{self.log_tail()}"
            )

    def kill(self):
        """SIGKILL: a crash, no chance to flush anything."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._expected_exit = True
        self.proc.send_signal(signal.SIGKILL)
        self._reap(10)

    def restart(self, timeout=30.0, graceful=True):
        if graceful:
            code = self.stop()
            assert code == 0, f"broker exited with {code} on SIGTERM\n{self.log_tail()}"
        else:
            self.kill()
        return self.start(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        if not self.alive():
            raise BrokerDied(
                f"broker process exited unexpectedly with {self.proc.returncode}\n{self.log_tail()}"
            )

    def died_unexpectedly(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None and not self._expected_exit

    def cleanup(self):
        if self.alive():
            try:
                self.stop(timeout=10)
            except AssertionError:
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self in _LIVE_BROKERS:
            _LIVE_BROKERS.remove(self)

    # -- logs --------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES) -> str:
        text = self.log_text().splitlines()
        head = f"----- {self.name} stderr ({self.log_path}), last {min(lines, len(text))} lines -----"
        return "\n".join([head] + text[-lines:])

    def wait_for_log(self, since: int, predicate, timeout=5.0) -> str:
        """Poll the log written since byte offset `since` until predicate(text) is true.
        Returns the text (whether or not the predicate became true)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(since)
            if predicate(text) or time.monotonic() >= deadline:
                return text
            time.sleep(0.1)

    # -- metrics -----------------------------------------------------------------------

    def metrics_text(self, timeout=5.0) -> str:
        with urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=timeout) as r:
            assert r.status == 200, r.status
            return r.read().decode()

    def metrics(self) -> dict:
        """{'name{label="v",...}' or 'name': value} from the Prometheus text format."""
        return parse_prometheus(self.metrics_text())

    def metric(self, name, **labels) -> float:
        """Sum of the samples of `name` whose labels include `labels`; fails if none."""
        samples = [
            value
            for (n, lab), value in parse_prometheus_samples(self.metrics_text())
            if n == name and all(lab.get(k) == v for k, v in labels.items())
        ]
        assert samples, f"metric {name}{labels or ''} not exported by the broker"
        return sum(samples)


_SAMPLE_RE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfaINFA]+|NaN)(\s+-?\d+)?\s*$"
)
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus_samples(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ValueError(f"unparseable metrics line: {line!r}")
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        out.append(((name, dict(_LABEL_RE.findall(labels))), float(value)))
    return out


def parse_prometheus(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ValueError(f"unparseable metrics line: {line!r}")
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


# ---------------------------------------------------------------------------
# Fixtures.


@pytest.fixture
def make_broker(tmp_path):
    """Factory: make_broker(name="broker", extra_args=(), start=True, advertise=True,
    open_files=None)."""
    made = []

    def factory(name="broker", extra_args=(), start=True, advertise=True, open_files=None):
        b = Broker(tmp_path / name, name=name, extra_args=extra_args, advertise=advertise,
                   open_files=open_files)
        made.append(b)
        if start:
            b.start()
        return b

    yield factory
    died = [b for b in made if b.died_unexpectedly()]
    for b in made:
        b.cleanup()
    if died:
        pytest.fail(
            "broker died during the test:\n" + "\n".join(
                f"exit code {b.proc.returncode}\n{b.log_tail()}" for b in died),
            pytrace=False,
        )


@pytest.fixture
def certs(tmp_path):
    """A CA for this test (certs.py), its files under the test's directory."""
    from certs import Certs
    return Certs(tmp_path / "certs")


@pytest.fixture
def broker(make_broker):
    """A started broker for this test."""
    return make_broker()


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory):
    """One broker shared by the tests of a module (used by the bad-input tests, which
    also check that it survives all of them)."""
    b = Broker(tmp_path_factory.mktemp("module-broker"), name="module-broker")
    b.start()
    yield b
    died = b.died_unexpectedly()
    b.cleanup()
    if died:
        pytest.fail(f"shared broker died:\n{b.log_tail()}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in list(_LIVE_BROKERS):
            rep.sections.append((f"{b.name} stderr", b.log_tail()))
