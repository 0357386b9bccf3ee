"""The stand-in NVIDIA toolkit repository and the stand-in nvidia-ctk behave like the real ones.

Proof on a fresh Debian minbase tree (chroot, sharing this machine's loopback): fetch the key
over HTTP, dearmor it to NVIDIA's keyring path, add the `signed-by` list line, `apt-get update`,
install all four packages pinned to one version, upgrade them pinned to the other. apt inside the
chroot only sees the stand-in repository (its Debian sources are removed), so all traffic is to
127.0.0.1. The tree is built with python3-minimal, which the stand-in nvidia-ctk needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.harness.aptrepo import KEYRING_PATH, STANDIN_CTK
from tests.harness.rootfs import remove_tree, rootfs_tarball, unpack

LIST_PATH = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "LC_ALL": "C"}


def in_root(root: Path, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["chroot", str(root), *command], capture_output=True, text=True,
                            env=APT_ENV)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def installed_versions(root: Path) -> dict[str, str]:
    out = in_root(root, "dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n")
    return {name: version for name, version, status in
            (line.split(" ", 2) for line in out.stdout.splitlines()) if status.startswith("ii")}


@pytest.fixture(scope="module")
def fresh_root(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        pytest.skip("needs root and debootstrap for a fresh Debian tree")
    root = unpack(rootfs_tarball(("python3-minimal",)),
                  tmp_path_factory.mktemp("aptrepo") / "root")
    # Only the stand-in repository: no traffic to the Debian mirror from here on.
    for sources in (root / "etc/apt/sources.list", *root.glob("etc/apt/sources.list.d/*")):
        sources.unlink()
    yield root
    remove_tree(root)


@pytest.fixture(scope="module")
def repo_root(fresh_root, nvidia_repo):
    """The fresh tree with the stand-in repository added the way NVIDIA's guide does it."""
    with urllib.request.urlopen(nvidia_repo.gpgkey_url, timeout=10) as response:
        armored = response.read()
    assert armored.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    keyring = fresh_root / KEYRING_PATH.lstrip("/")
    keyring.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "-o", str(keyring)], input=armored,
                   check=True, capture_output=True)
    keyring.chmod(0o644)
    repo_url = nvidia_repo.repo_url.replace("$(ARCH)", nvidia_repo.arch)
    (fresh_root / LIST_PATH.lstrip("/")).write_text(
        f"deb [signed-by={KEYRING_PATH}] {repo_url} /\n")
    in_root(fresh_root, "apt-get", "-o", "APT::Update::Error-Mode=any", "update")
    return fresh_root


def test_fixture_values(nvidia_repo):
    assert nvidia_repo.repo_url.startswith("http://127.0.0.1:")
    assert nvidia_repo.repo_url.endswith("/stable/deb/$(ARCH)")
    assert nvidia_repo.gpgkey_url == nvidia_repo.base_url + "/gpgkey"
    assert nvidia_repo.versions == ("1.17.8-1", "1.18.0-1")
    assert nvidia_repo.toolkit_versions == ("1.17.8", "1.18.0")
    pool = nvidia_repo.root / "stable" / "deb" / nvidia_repo.arch
    for name in ("InRelease", "Release", "Release.gpg", "Packages", "Packages.gz"):
        assert (pool / name).is_file(), name
    assert (pool / "InRelease").read_text().startswith("-----BEGIN PGP SIGNED MESSAGE-----")
    assert len(list(pool.glob("*.deb"))) == 8


def test_update_fetches_key_and_signed_index(repo_root, nvidia_repo):
    paths = nvidia_repo.requests_log
    assert "/gpgkey" in paths
    assert f"/stable/deb/{nvidia_repo.arch}/InRelease" in paths
    assert all(status == 200 for _method, p, status in nvidia_repo.requests
               if p in ("/gpgkey", f"/stable/deb/{nvidia_repo.arch}/InRelease"))
    policy = in_root(repo_root, "apt-cache", "policy", "nvidia-container-toolkit").stdout
    assert "1.18.0-1" in policy and "1.17.8-1" in policy


def test_a_wrong_key_fails_update(repo_root, nvidia_repo):
    """apt must reject the index when signed-by names another key (separate lists dir)."""
    scratch = repo_root / "tmp" / "wrong-key"
    (scratch / "lists" / "partial").mkdir(parents=True)
    (scratch / "parts").mkdir()
    repo_url = nvidia_repo.repo_url.replace("$(ARCH)", nvidia_repo.arch)
    (scratch / "wrong.list").write_text(
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {repo_url} /\n")
    try:
        result = in_root(repo_root, "apt-get",
                         "-o", "Dir::Etc::SourceList=/tmp/wrong-key/wrong.list",
                         "-o", "Dir::Etc::SourceParts=/tmp/wrong-key/parts",
                         "-o", "Dir::State::Lists=/tmp/wrong-key/lists",
                         "-o", "APT::Update::Error-Mode=any", "update", check=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert result.returncode == 100, result.stdout + result.stderr
    assert "NO_PUBKEY" in result.stdout + result.stderr


def test_pinned_install_and_upgrade(repo_root):
    old, new = "1.17.8-1", "1.18.0-1"
    # Pinning only the top package fails: its exact dependencies are not the candidates.
    top_only = in_root(repo_root, "apt-get", "install", "-y", f"nvidia-container-toolkit={old}",
                       check=False)
    assert top_only.returncode == 100
    assert f"nvidia-container-toolkit-base (= {old})" in top_only.stdout + top_only.stderr

    packages = ("nvidia-container-toolkit", "nvidia-container-toolkit-base",
                "libnvidia-container-tools", "libnvidia-container1")
    in_root(repo_root, "apt-get", "install", "-y", *(f"{p}={old}" for p in packages))
    versions = installed_versions(repo_root)
    assert {p: versions.get(p) for p in packages} == dict.fromkeys(packages, old)
    ctk = in_root(repo_root, "nvidia-ctk", "--version").stdout.splitlines()
    assert ctk[0] == "NVIDIA Container Toolkit CLI version 1.17.8"
    assert ctk[1].startswith("commit: ")
    assert in_root(repo_root, "nvidia-container-cli", "--version").stdout.startswith(
        "cli-version: 1.17.8")

    in_root(repo_root, "apt-get", "install", "-y", *(f"{p}={new}" for p in packages))
    versions = installed_versions(repo_root)
    assert {p: versions.get(p) for p in packages} == dict.fromkeys(packages, new)
    assert in_root(repo_root, "nvidia-ctk", "--version").stdout.startswith(
        "NVIDIA Container Toolkit CLI version 1.18.0\n")


def test_installed_standin_runs_without_json_module(repo_root):
    """python3-minimal has no `json` module: the stand-in must not need it."""
    in_root(repo_root, "sh", "-c", "command -v nvidia-ctk || apt-get install -y "
            "nvidia-container-toolkit=1.18.0-1 nvidia-container-toolkit-base=1.18.0-1 "
            "libnvidia-container-tools=1.18.0-1 libnvidia-container1=1.18.0-1")
    assert in_root(repo_root, "python3", "-c", "import json", check=False).returncode != 0
    daemon = repo_root / "etc/docker/daemon.json"
    daemon.parent.mkdir(parents=True, exist_ok=True)
    daemon.write_text('{"log-driver": "local", "runtimes": {"nvidia": '
                      '{"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}}}\n')
    result = in_root(repo_root, "nvidia-ctk", "runtime", "configure", "--runtime=docker",
                     "--set-as-default")
    assert "level=info msg=\"Wrote updated config to /etc/docker/daemon.json\"" in result.stderr
    assert daemon.read_text() == (
        '{\n'
        '    "default-runtime": "nvidia",\n'
        '    "log-driver": "local",\n'
        '    "runtimes": {\n'
        '        "nvidia": {\n'
        '            "args": [],\n'
        '            "path": "nvidia-container-runtime"\n'
        '        }\n'
        '    }\n'
        '}')
    (repo_root / "dev/dxg").touch()
    try:
        result = in_root(repo_root, "nvidia-ctk", "cdi", "generate",
                         "--output=/etc/cdi/nvidia.yaml")
    finally:
        (repo_root / "dev/dxg").unlink()
    assert 'Auto-detected mode as \\"wsl\\"' in result.stderr
    spec = (repo_root / "etc/cdi/nvidia.yaml").read_text()
    assert "kind: nvidia.com/gpu\n" in spec
    assert "- name: all\n" in spec and "- path: /dev/dxg\n" in spec


# ---- the stand-in CLI on this machine's python3 (fast; no chroot) ----

def ctk(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STANDIN_CTK), *args], capture_output=True, text=True,
                          cwd=cwd)


def test_standin_keeps_other_keys_and_accepts_runtime_args(tmp_path):
    daemon = tmp_path / "daemon.json"
    daemon.write_text(
        '{"log-driver": "json-file", "log-opts": {"max-size": "10m"},\n'
        ' "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime",'
        ' "runtimeArgs": []}, "crun": {"path": "/usr/bin/crun", "runtimeArgs": ["--debug"]}},\n'
        ' "features": {"buildkit": true}, "data-root": "/srv/docker"}\n')
    result = ctk("runtime", "configure", "--runtime=docker", "--set-as-default",
                 "--cdi.enabled", f"--config={daemon}")
    assert result.returncode == 0, result.stderr
    assert daemon.read_text() == """{
    "data-root": "/srv/docker",
    "default-runtime": "nvidia",
    "features": {
        "buildkit": true,
        "cdi": true
    },
    "log-driver": "json-file",
    "log-opts": {
        "max-size": "10m"
    },
    "runtimes": {
        "crun": {
            "path": "/usr/bin/crun",
            "runtimeArgs": [
                "--debug"
            ]
        },
        "nvidia": {
            "args": [],
            "path": "nvidia-container-runtime"
        }
    }
}"""
    before = daemon.read_bytes()
    assert ctk("runtime", "configure", "--runtime=docker", "--set-as-default", "--cdi.enabled",
               f"--config={daemon}").returncode == 0
    assert daemon.read_bytes() == before  # converged: a second run changes nothing


def test_standin_creates_missing_file(tmp_path):
    daemon = tmp_path / "etc" / "docker" / "daemon.json"
    result = ctk("runtime", "configure", "--runtime=docker", f"--config={daemon}")
    assert result.returncode == 0, result.stderr
    assert "Config file does not exist; using empty config" in result.stderr
    assert daemon.read_text() == ('{\n    "runtimes": {\n        "nvidia": {\n'
                                  '            "args": [],\n'
                                  '            "path": "nvidia-container-runtime"\n'
                                  '        }\n    }\n}')


def test_standin_dry_run_and_invalid_json(tmp_path):
    daemon = tmp_path / "daemon.json"
    daemon.write_text('{"log-driver": "local",}')
    result = ctk("runtime", "configure", f"--config={daemon}")
    assert result.returncode == 1
    assert "level=error" in result.stderr
    assert daemon.read_text() == '{"log-driver": "local",}'  # untouched
    daemon.write_text('{"x": "a<b"}')
    result = ctk("runtime", "configure", "--dry-run", f"--config={daemon}")
    assert result.returncode == 0
    assert '"x": "a\\u003cb"' in result.stdout
    assert daemon.read_text() == '{"x": "a<b"}'


def test_standin_version_unbuilt():
    result = ctk("--version")
    assert result.stdout.startswith("NVIDIA Container Toolkit CLI version ")
    assert "\ncommit: " in result.stdout
