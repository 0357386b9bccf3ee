"""Fault: the SSH connection is cut while a converge writes a stack's files.

A fresh Debian host over real SSH (tests/harness/hosts.py) drives the real test Docker engine
(tests/harness/docker_engine.py): the engine's socket is bind-mounted at the host's
/run/docker.sock and the host gets this machine's `docker` CLI and Compose plugin, so the
product's `stack.converge` runs over SSH exactly as on a workstation (the hand-made stack has
no bind mounts, whose sources the engine would resolve on this machine). The stack carries a
large build-context file so that the upload takes a moment; the pyinfra process is SIGKILLed
(its SSH connection drops) while that file is being written.

Then: every file of the stack is whole (the old or the new version, the secret 0600), the next
run converges and leaves no temp file, and the run after it changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from genai_workstation.operations.atomic import TEMP_SUFFIX
from genai_workstation.stacks import lifecycle as lc
from tests.harness.docker_engine import find_compose_binary
from tests.harness.pyinfra_run import PYINFRA, REPO, run_pyinfra

pytestmark = [pytest.mark.hosts, pytest.mark.docker]

WORKSPACE = "/srv/ws"
STACK = "cut"
STACK_DIR = f"{WORKSPACE}/stacks/{STACK}"
BLOB = "build/weights-list.txt"
BLOB_SIZE = 24 * 1024 * 1024
SECRET_NAME = "secrets/api_token"


def _blob(marker: str) -> str:
    line = (marker * 63)[:63] + "\n"
    return line * (BLOB_SIZE // len(line))


def _rendered(tmp_path: Path, image: str, marker: str) -> tuple[Path, dict[str, str]]:
    compose = (f"name: genai-{STACK}\nservices:\n  app:\n    image: {image}\n    init: true\n"
               f"    labels:\n      genai.config-hash: \"{marker * 64}\"\n"
               "    healthcheck:\n      test: [\"CMD\", \"python3\", \"-c\", \"import urllib."
               "request as u; u.urlopen('http://127.0.0.1:8188/system_stats')\"]\n"
               "      interval: 1s\n      retries: 20\n")
    files = {"compose.yaml": compose, BLOB: _blob(marker),
             SECRET_NAME: f"fake-{os.urandom(8).hex()}-{marker}\n"}
    data = {"files": {path: {"content": content, "secret": path == SECRET_NAME}
                      for path, content in files.items()},
            "config_hash": marker * 64, "services": ["app"], "image_build": None,
            "health": [], "gpu_checks": []}
    path = tmp_path / f"rendered-{marker}.json"
    path.write_text(json.dumps(data))
    return path, files


@pytest.fixture(scope="module")
def ssh_docker_host(fresh_host, docker_engine):
    """The fresh host with the test engine's socket and the docker CLI + Compose plugin."""
    fresh_host.path("/usr/local/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("docker"), fresh_host.path("/usr/local/bin/docker"))
    plugins = fresh_host.path("/usr/libexec/docker/cli-plugins")
    plugins.mkdir(parents=True, exist_ok=True)
    shutil.copy2(find_compose_binary(), plugins / "docker-compose")
    subprocess.run(["nsenter", "-t", str(fresh_host.pid), "-m", "--", "sh", "-c",
                    docker_engine.bind_socket_shell(f"{fresh_host.mountpoint}/run/docker.sock")],
                   check=True)
    assert fresh_host.ssh("docker version --format '{{.Server.Version}}'").stdout.strip()
    yield fresh_host
    docker_engine.compose(fresh_host.path(STACK_DIR), "down", "--remove-orphans", check=False)


def _inventory(host) -> dict:
    return {"hosts": {host.name: host.inventory_entry(
        user={"name": "daemon", "uid": 1, "gid": 1}, workspace=WORKSPACE,
        gpu={"mode": "none"}, history_keep=3, stacks={})}}


def _args(rendered: Path) -> list[str]:
    return ["--data", f"lifecycle_stack={STACK}", "--data", f"lifecycle_rendered={rendered}"]


def _deploy(host, rendered: Path, tmp_path: Path):
    return run_pyinfra("tests/deploys/stack_lifecycle.py", _inventory(host), *_args(rendered),
                       inventory_dir=tmp_path / "inventory")


def _run_and_cut(host, rendered: Path, tmp_path: Path) -> str:
    """Start the converge; SIGKILL pyinfra while the large file is being written on the host.
    Returns what was seen being written (the temp file, or the file itself in place)."""
    inventory = tmp_path / "inventory" / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(_inventory(host), sort_keys=False))
    env = {**os.environ, "GENAI_INVENTORY": str(inventory), "PYINFRA_PROGRESS": "off",
           "GENAI_SECRETS": str(tmp_path / "none.env"), "PYTHONPATH": str(REPO)}
    command = [str(PYINFRA), "-y", *_args(rendered), str(REPO / "inventory.py"),
               "tests/deploys/stack_lifecycle.py"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    dest = host.path(f"{STACK_DIR}/{BLOB}")
    temp = dest.with_name(f".{dest.name}{TEMP_SUFFIX}")
    seen = None
    deadline = time.monotonic() + 120
    try:
        while seen is None and process.poll() is None and time.monotonic() < deadline:
            for what, path in (("temp file", temp), ("file in place", dest)):
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                if 0 < size < len(_blob("x")):
                    seen = what
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert seen, "the converge ended before the large file was seen being written"
    return seen


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_connection_cut_while_writing_leaves_whole_files_and_the_next_run_converges(
        ssh_docker_host, docker_engine, tmp_path):
    host = ssh_docker_host
    old, old_files = _rendered(tmp_path, docker_engine.standin_image, "a")
    new, new_files = _rendered(tmp_path, docker_engine.standin_image, "b")
    _deploy(host, old, tmp_path).check()

    seen = _run_and_cut(host, new, tmp_path)
    stack = host.path(STACK_DIR)
    for relpath in old_files:
        digest = _digest(stack / relpath)
        versions = {hashlib.sha256(files[relpath].encode()).hexdigest()
                    for files in (old_files, new_files)}
        assert digest in versions, f"{relpath} is half-written after the cut ({seen} seen)"
    assert (stack / SECRET_NAME).stat().st_mode & 0o777 == 0o600
    assert (stack / lc.DEPLOYED_HASH_FILE).read_text().strip() == "a" * 64

    again = _deploy(host, new, tmp_path).check()
    assert (stack / lc.DEPLOYED_HASH_FILE).read_text().strip() == "b" * 64
    assert (stack / lc.VERIFIED_FILE).read_text().strip() == "b" * 64
    for relpath, content in new_files.items():
        assert (stack / relpath).read_text() == content, relpath
    leftovers = [str(p) for p in stack.rglob(f"*{TEMP_SUFFIX}")]
    assert leftovers == [], leftovers
    assert again.ok
    last = _deploy(host, new, tmp_path).check()
    assert [n for names in last.changed_operations.values() for n in names] == []
