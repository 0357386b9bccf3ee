"""The fresh-host harness itself: real hosts over real SSH, the real pyinfra CLI."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from tests.harness.hosts import cgroup_hierarchies, fleet_inventory

TRIVIAL = "tests/deploys/trivial.py"
TRIVIAL_OPERATIONS = ["Workstation group", "Workstation user", "Workspace folder", "Marker file"]
SETTINGS = {"workspace": "/srv/genai", "gpu": {"mode": "none"}}
TINY_IMAGE = """set -e
mkdir -p /tmp/tiny/bin /tmp/tiny/lib/x86_64-linux-gnu /tmp/tiny/lib64
cp /usr/bin/dash /tmp/tiny/bin/sh
cp /lib/x86_64-linux-gnu/libc.so.6 /tmp/tiny/lib/x86_64-linux-gnu/
cp /lib64/ld-linux-x86-64.so.2 /tmp/tiny/lib64/
tar -C /tmp/tiny -c . | docker import - tiny:1
"""


def host_mounts(prefix: str) -> list[str]:
    """Mount points under `prefix` that this machine's namespace sees."""
    targets = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    return [target for target in targets if target.startswith(prefix)]


def test_fresh_host_is_clean_and_reachable_over_ssh(fresh_host):
    assert fresh_host.ssh("hostname").stdout.strip() == fresh_host.name == "h1"
    assert fresh_host.run("hostname").stdout.strip() == "h1"
    assert fresh_host.ssh("id -u").stdout.strip() == "0"
    assert not fresh_host.path("/srv/genai").exists()
    assert "bookworm" in fresh_host.path("/etc/os-release").read_text()
    # tini is PID 1, sshd its child; nothing else runs.
    assert fresh_host.run("cat /proc/1/comm").stdout.strip() == "tini"
    assert {_comm(pid) for pid in fresh_host.processes()} <= {"tini", "sshd", ""}
    assert fresh_host.mounts_seen_outside() == []
    entry = fresh_host.inventory_entry(workspace="/srv/x")
    assert entry["connection"] == {
        "type": "ssh", "host": "127.0.0.1", "port": fresh_host.ssh_port, "user": "root",
        "key": str(fresh_host.key_path), "known_hosts_file": str(fresh_host.known_hosts),
        "strict_host_key_checking": "accept-new"}
    assert entry["workspace"] == "/srv/x"


def test_trivial_deploy_converges_then_changes_nothing(fresh_host, pyinfra_run):
    inventory = fleet_inventory([fresh_host], **SETTINGS)

    plan = pyinfra_run(TRIVIAL, inventory, dry=True).check()
    assert plan.changed_operations == {"h1": TRIVIAL_OPERATIONS}
    assert not fresh_host.path("/srv/genai").exists()  # --dry changed nothing

    first = pyinfra_run(TRIVIAL, inventory).check()
    assert first.changed_operations == {"h1": TRIVIAL_OPERATIONS}
    marker = fresh_host.path("/srv/genai/marker.txt")
    assert marker.read_text() == "genai-workstation harness test on h1\n"
    assert fresh_host.run("stat -c %U:%a /srv/genai/marker.txt").stdout.strip() == "genai:644"

    second = pyinfra_run(TRIVIAL, inventory).check()
    assert second.changed_operations == {"h1": []}
    assert second.unchanged_operations == {"h1": TRIVIAL_OPERATIONS}
    assert pyinfra_run(TRIVIAL, inventory, dry=True).check().changed is False


def test_two_hosts_in_one_run(fresh_hosts, pyinfra_run):
    hosts = fresh_hosts(2)
    inventory = {"defaults": SETTINGS,
                 "hosts": {hosts[0].name: hosts[0].inventory_entry(),
                           hosts[1].name: hosts[1].inventory_entry(workspace="/opt/ws")}}
    first = pyinfra_run(TRIVIAL, inventory).check()
    assert first.changed_operations == {host.name: TRIVIAL_OPERATIONS for host in hosts}
    assert hosts[0].path("/srv/genai/marker.txt").exists()
    assert hosts[1].path("/opt/ws/marker.txt").exists()
    assert not hosts[1].path("/srv/genai").exists()
    again = pyinfra_run(TRIVIAL, inventory, "--limit", hosts[1].name).check()
    assert again.changed_operations == {hosts[0].name: [], hosts[1].name: []}


def test_failed_run_is_reported_not_raised(fresh_hosts, pyinfra_run):
    good, bad = fresh_hosts(2)
    inventory = {"defaults": SETTINGS,
                 "hosts": {good.name: good.inventory_entry(),
                           bad.name: bad.inventory_entry(workspace="/proc/no/such/place")}}
    run = pyinfra_run(TRIVIAL, inventory)
    assert not run.ok
    assert run.failed_hosts == [bad.name]
    # The failing operation first, then those the failed host never ran.
    assert run.failed_operations == {bad.name: ["Workspace folder", "Marker file"]}
    assert run.changed_operations[good.name] == TRIVIAL_OPERATIONS
    with pytest.raises(AssertionError, match="pyinfra exited"):
        run.check()
    # When every host fails, pyinfra prints no JSON at all ("No hosts remaining!").
    alone = pyinfra_run(TRIVIAL, fleet_inventory([bad], **{**SETTINGS, "workspace": "/proc/x"}))
    assert (alone.ok, alone.json, alone.returncode) == (False, None, 1)


def test_stopped_host_leaves_no_process_and_no_mount(fresh_hosts):
    host = fresh_hosts(1)[0]
    pids = host.processes()
    assert pids
    host.stop()
    assert [pid for pid in pids if _alive(pid)] == []
    assert host_mounts(str(host.workdir)) == []
    host.remove()
    assert not host.workdir.exists()


def test_docker_capable_host_runs_its_own_engine(docker_host, pyinfra_run):
    # pyinfra reaches it over SSH like any host (relayed into its own network namespace).
    converged = pyinfra_run(TRIVIAL, fleet_inventory([docker_host], **SETTINGS)).check()
    assert converged.changed_operations == {docker_host.name: TRIVIAL_OPERATIONS}

    started = time.monotonic()
    docker_host.install_packages(["docker.io"])
    docker_host.run("service docker start")
    deadline = time.monotonic() + 60
    while True:
        info = docker_host.ssh("docker info --format '{{.ServerVersion}} {{.Driver}}'",
                               check=False)
        if info.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert info.returncode == 0, info.stderr
    assert info.stdout.split()[1] == "overlay2"
    print(f"docker.io installed and dockerd up in {time.monotonic() - started:.1f}s")
    # The engine's bridge lives in the host's own network namespace, not this machine's.
    inside = docker_host.run("ls /sys/class/net").stdout.split()
    assert "docker0" in inside and "eth0" not in inside

    # Outbound traffic goes through the harness's proxy, opened from this machine's side: a
    # CONNECT tunnel from inside reaches a server on this machine's loopback.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        answer = threading.Thread(target=_say_hello, args=(server,), daemon=True)
        answer.start()
        tunnel = docker_host.ssh(
            'proxy=${https_proxy#http://}; exec 3<>"/dev/tcp/${proxy%:*}/${proxy##*:}"; '
            f"printf 'CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\n\\r\\n' >&3; timeout 10 cat <&3",
            timeout=30)
        answer.join(10)
    assert tunnel.stdout.endswith("hello from this machine\n"), tunnel.stdout

    # Containers run (an image made from three files of the host), in the host's own cgroups.
    docker_host.run(TINY_IMAGE)
    hello = docker_host.run("docker run --rm --network none tiny:1 /bin/sh -c 'echo hi'")
    assert hello.stdout == "hi\n"
    docker_host.run("docker run -d --name spinner tiny:1 /bin/sh -c 'while :; do :; done'")
    cgroups = [hierarchy / docker_host.cgroup for hierarchy in cgroup_hierarchies()]
    assert cgroups and all(cgroup.is_dir() for cgroup in cgroups)

    assert docker_host.run("cat /run/docker.pid").stdout.strip()
    pids = docker_host.processes()
    docker_host.stop()  # dockerd, containerd, the container: all gone, and their cgroups
    assert [pid for pid in pids if _alive(pid)] == []
    assert host_mounts(str(docker_host.workdir)) == []
    assert [cgroup for cgroup in cgroups if cgroup.exists()] == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def _say_hello(server: socket.socket) -> None:
    connection, _ = server.accept()
    with connection:
        connection.sendall(b"hello from this machine\n")
