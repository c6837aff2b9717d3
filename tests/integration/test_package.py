"""The Debian package (`cargo xtask package`), installed on this machine as an operator would:
its files, the `stillwater` user and `/var/lib/stillwater`, the systemd unit checked by
`systemd-analyze verify`; then the installed binary started as that user with the installed
configuration (only its ports changed, so the test never meets another broker's), telling a
service manager READY=1 once it serves and STOPPING=1 when told to stop, serving clients in
between, its data where the configuration says. The package is removed and purged at the end.

Data volume: 1,000 records. Needs root (CI runs as root); skipped otherwise, saying so."""

import os
import pwd
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import clients
from conftest import broker_bin, broker_env, free_port

ROOT = Path(__file__).resolve().parents[2]
UNIT = Path("/lib/systemd/system/stillwater.service")
CONFIG = Path("/etc/stillwater/broker.toml")
BINARY = Path("/usr/bin/stillwater-broker")
DATA = Path("/var/lib/stillwater/data")


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=600, **kw)


def purge():
    run("dpkg", "--purge", "stillwater")
    subprocess.run(["rm", "-rf", "/var/lib/stillwater"], check=False)
    if run("getent", "passwd", "stillwater").returncode == 0:
        run("userdel", "stillwater")
    run("groupdel", "stillwater")


@pytest.mark.timeout(900)
def test_the_package_installs_and_its_broker_starts_as_a_service_would(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("installs a Debian package on this machine: run as root (CI does)")
    built = run("cargo", "xtask", "package", "--binary", broker_bin(), "--out", str(tmp_path), cwd=ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    deb = Path(built.stdout.strip().splitlines()[-1])
    listing = run("dpkg-deb", "-c", str(deb)).stdout
    for f in ("./usr/bin/stillwater-broker", "./lib/systemd/system/stillwater.service",
              "./etc/stillwater/broker.toml"):
        assert f in listing, listing
    purge()
    try:
        installed = run("dpkg", "-i", str(deb))
        assert installed.returncode == 0, installed.stdout + installed.stderr
        user = pwd.getpwnam("stillwater")
        assert user.pw_shell.endswith("nologin"), user
        home = Path("/var/lib/stillwater").stat()
        assert (home.st_uid, oct(home.st_mode & 0o777)) == (user.pw_uid, "0o750")

        verified = run("systemd-analyze", "verify", str(UNIT))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        unit = UNIT.read_text()
        for line in ("Type=notify", "User=stillwater", "LimitNOFILE=1048576", "TimeoutStopSec=30s",
                     f"ExecStart={BINARY} --config {CONFIG}", "RestartPreventExitStatus=2 3"):
            assert line in unit, line
        effective = run(str(BINARY), "config", "--config", str(CONFIG), env=broker_env()).stdout
        assert f'data_dir = "{DATA}"  # file {CONFIG}' in effective, effective

        # Started as the unit starts it, told a service manager's socket.
        sockdir = Path(tempfile.mkdtemp(prefix="stillwater-notify-", dir="/run"))
        os.chmod(sockdir, 0o755)
        path = sockdir / "notify"
        manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        manager.bind(str(path))
        os.chmod(path, 0o666)
        manager.settimeout(60)
        port, metrics = free_port(), free_port()
        env = broker_env(NOTIFY_SOCKET=str(path), STILLWATER_LISTEN=f"127.0.0.1:{port}",
                         STILLWATER_METRICS_LISTEN=f"127.0.0.1:{metrics}")
        proc = subprocess.Popen([str(BINARY), "--config", str(CONFIG)], user="stillwater",
                                group="stillwater", extra_groups=[], cwd="/var/lib/stillwater", env=env,
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / "broker.log", "wb"))
        try:
            said = manager.recv(4096).decode()
            assert "READY=1" in said, said
            bootstrap = f"127.0.0.1:{port}"
            clients.create_topics(bootstrap, {"packaged": 1})
            p = clients.producer(bootstrap, acks="all")
            log = clients.DeliveryLog()
            clients.produce_all(p, "packaged", [{"value": f"p{i}".encode()} for i in range(1000)], log)
            consumed, _ = clients.consume_all(bootstrap, "packaged", [0])
            assert len(consumed[0]) == 1000
            import urllib.request
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/ready", timeout=5) as r:
                assert r.status == 200
            owned = {f.stat().st_uid for f in DATA.rglob("*")}
            assert owned == {user.pw_uid}, owned
            proc.terminate()
            said = manager.recv(4096).decode()
            assert "STOPPING=1" in said, said
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            manager.close()
            subprocess.run(["rm", "-rf", str(sockdir)], check=False)
            print((tmp_path / "broker.log").read_text()[-3000:])
    finally:
        purge()
