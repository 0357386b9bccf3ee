"""`genai-drift` runs in ONE pass: one SSH connection per host, no remote command twice, hosts in
parallel, an unreachable host bounded by its connect timeout.

On a fresh docker-capable Debian 12 host (tests/harness/hosts.py: real sshd, real SSH over
loopback) that was never converged, so both kinds of drift exist: state (no Docker, no
workspace) and config (everything to install). sshd's log counts the connections; root's login
shell is swapped for a wrapper that logs every command it is asked to run. The silent host is
a loopback TCP listener that accepts and never answers (a machine that hangs before SSH's
banner): paramiko's own wait for the banner is 15 s, the inventory says 2.
(The converged host's exit code 0 and the drift found on it: tests/test_drift_e2e.py.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.harness.docker_engine import find_compose_binary

pytestmark = [pytest.mark.hosts]

REPO = Path(__file__).resolve().parent.parent
DRIFT = Path(sys.executable).with_name("genai-drift")
CONNECTION = "Accepted publickey for root"
COMMAND_LOG = "/var/log/genai-drift-test-commands.log"
WRAPPER = "/usr/local/bin/genai-drift-test-sh"
WRAPPER_SCRIPT = f"""#!/bin/sh
if [ "$1" = "-c" ]; then
    printf '=== %s\\n' "$2" >>{COMMAND_LOG}
    exec /bin/sh -c "$2"
fi
exec /bin/sh "$@"
"""
SILENT_TIMEOUT = 2
PARAMIKO_BANNER_WAIT = 15


def settings() -> dict:
    return {"platform": "linux", "user": {"name": "genai", "uid": 1000, "gid": 1000},
            "workspace": "/srv/genai", "gpu": {"mode": "none"},
            "docker": {"source": "distro", "compose_plugin_path": str(find_compose_binary())}}


def drift(inventory: Path) -> tuple[subprocess.CompletedProcess, dict, float]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GENAI_INVENTORY", "GENAI_SECRETS", "SSH_AUTH_SOCK")
           and not k.endswith(("_TOKEN", "_AUTH", "_PASSWORD", "_SECRET", "_KEY"))}
    env.update({"GENAI_INVENTORY": str(inventory),
                "GENAI_SECRETS": str(inventory.parent / "no-secrets.env")})
    started = time.monotonic()
    result = subprocess.run([str(DRIFT), "--format", "json"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"exit {result.returncode}, no JSON\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}") from None
    return result, report, seconds


@pytest.fixture(scope="module")
def host(fresh_hosts):
    """A never-converged host whose root runs every command through the logging wrapper."""
    host = fresh_hosts(1, docker_capable=True, prefix="drift")[0]
    host.path(WRAPPER).write_text(WRAPPER_SCRIPT)
    host.run(f"chmod 755 {WRAPPER} && usermod -s {WRAPPER} root")
    return host


@pytest.fixture
def silent_port():
    """A loopback port that accepts TCP connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def inventory_of(tmp_path: Path, hosts: dict) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": hosts}, sort_keys=False))
    return path


def test_one_connection_and_no_command_twice(host, tmp_path):
    inventory = inventory_of(tmp_path, {host.name: host.inventory_entry(**settings())})
    host.run(f"rm -f {COMMAND_LOG}")
    before = host.log().count(CONNECTION)
    result, report, _ = drift(inventory)
    time.sleep(0.2)  # sshd's log line is written as the connection is accepted
    connections = host.log().count(CONNECTION) - before
    commands = [c.strip() for c in host.path(COMMAND_LOG).read_text().split("=== ")[1:]]

    assert result.returncode == 2, (result.stderr[-3000:], report)
    kinds = {f["kind"] for f in report["findings"] if f["host"] == host.name}
    assert {"state", "config"} <= kinds, report
    assert "workspace folders" in [f["item"] for f in report["findings"]], report
    assert connections == 1, f"{connections} SSH connections"
    repeated = sorted({c[:120] for c in commands if commands.count(c) > 1})
    assert not repeated, f"sent more than once: {repeated}"
    assert 0 < len(commands) <= 4, commands  # platform, one batch of facts, the plan's rest


def test_a_silent_host_costs_its_connect_timeout_only(host, silent_port, tmp_path):
    inventory = inventory_of(tmp_path, {
        "silent": {"connection": {"host": "127.0.0.1", "port": silent_port, "user": "root",
                                  "connect_timeout": SILENT_TIMEOUT}, **settings()},
        host.name: host.inventory_entry(**settings()),
    })
    result, report, seconds = drift(inventory)
    assert result.returncode == 1, (result.stderr[-3000:], report)
    errors = [f for f in report["findings"] if f["kind"] == "error"]
    assert [(f["host"], f["item"]) for f in errors] == [("silent", "host reachable")], report
    assert "banner" in errors[0]["actual"].lower(), errors
    # the reachable host was checked in the same run
    assert {"state", "config"} <= {f["kind"] for f in report["findings"]
                                   if f["host"] == host.name}, report
    assert seconds < PARAMIKO_BANNER_WAIT, f"{seconds:.1f} s: the connect timeout was ignored"


def test_connect_timeout_option_overrides_the_inventory(silent_port, tmp_path):
    inventory = inventory_of(tmp_path, {"silent": {"connection": {
        "host": "127.0.0.1", "port": silent_port, "user": "root", "connect_timeout": 600},
        **settings()}})
    env = {**os.environ, "GENAI_INVENTORY": str(inventory),
           "GENAI_SECRETS": str(tmp_path / "none.env")}
    started = time.monotonic()
    result = subprocess.run([str(DRIFT), "--connect-timeout", "1"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "host reachable" in result.stdout
    assert time.monotonic() - started < PARAMIKO_BANNER_WAIT
