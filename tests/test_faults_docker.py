"""Faults on the real Docker engine (tests/harness/docker_engine.py), through the real CLI:

- the Docker daemon restarted (SIGTERM, as `systemctl restart docker`) while `docker compose up
  --wait` of a new config runs: the run fails saying so, the stack folder holds one whole
  config, and the next run converges to a healthy stack;
- the disk filling during an image build: a second, throw-away engine whose data root is a
  small loop-mounted ext4; the build fails with a message that names the full disk, the
  running stack keeps serving, the stack folder holds the deployed config again.

The app is the STAND-IN (tests/standin/); stacks are hand-made rendered stacks
(`--data lifecycle_rendered=FILE`), as in test_stacks_lkg_docker.py.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from genai_workstation.stacks import lifecycle as lc
from tests.harness.docker_engine import DockerEngine
from tests.test_stacks_lifecycle_docker import _changed, _inventory, _run

pytestmark = pytest.mark.docker

URL = "http://127.0.0.1:8188/system_stats"


def _rendered(tmp_path: Path, name: str, port: int, image: str, marker: str,
              build: dict | None = None) -> Path:
    compose = textwrap.dedent(f"""\
        name: genai-{name}
        services:
          app:
            image: {image}
            init: true
            ports: ["127.0.0.1:{port}:8188"]
            labels:
              genai.config-hash: "{marker * 64}"
            healthcheck:
              test: ["CMD", "python3", "-c", "import urllib.request as u; u.urlopen('{URL}')"]
              interval: 1s
              retries: 30
        """)
    files = {"compose.yaml": {"content": compose}}
    if build:
        files["build/Dockerfile"] = {"content": build.pop("dockerfile")}
    data = {"files": files, "config_hash": marker * 64, "services": ["app"],
            "image_build": build, "health": [], "gpu_checks": []}
    path = tmp_path / f"rendered-{name}-{marker}.json"
    path.write_text(json.dumps(data))
    return path


def _deploy(engine, tmp_path: Path, name: str, rendered: Path):
    return _run(engine, _inventory(tmp_path / "ws", {}), name, "--data",
                f"lifecycle_rendered={rendered}", tmp_path=tmp_path)


def _whole_config(stack: Path) -> str:
    """The recorded hash of the stack folder, after checking its compose.yaml is that config."""
    recorded = (stack / lc.DEPLOYED_HASH_FILE).read_text().strip()
    assert f'genai.config-hash: "{recorded}"' in (stack / "compose.yaml").read_text()
    return recorded


def test_daemon_restarted_during_up_then_next_run_converges(docker_engine, tmp_path):
    name, port = "restart", 18371
    slow = docker_engine.standin_variant(STANDIN_START_DELAY="4")
    _deploy(docker_engine, tmp_path, name, _rendered(tmp_path, name, port, slow, "a")).check()
    stack = tmp_path / "ws" / "stacks" / name

    restarted: dict = {}

    def restart_during_up():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # B's container exists: `up --wait` is waiting
            ids = docker_engine.run("ps", "-aq", "--filter", f"label=genai.config-hash={'b' * 64}",
                                    check=False).stdout.split()
            if ids:
                restarted["away"] = docker_engine.restart()
                return
            time.sleep(0.1)

    thread = threading.Thread(target=restart_during_up)
    thread.start()
    faulted = _deploy(docker_engine, tmp_path, name, _rendered(tmp_path, name, port, slow, "b"))
    thread.join()
    assert "away" in restarted, "B's container never appeared: the restart did not happen"
    assert faulted.returncode != 0, faulted.describe()
    assert "failed the health check" in faulted.stderr, faulted.describe()
    # one whole config in the folder: A restored (B's files are gone), never a mix
    assert _whole_config(stack) == "a" * 64

    again = _deploy(docker_engine, tmp_path, name, _rendered(tmp_path, name, port, slow, "b"))
    again.check()
    assert _whole_config(stack) == "b" * 64
    assert (stack / lc.VERIFIED_FILE).read_text().strip() == "b" * 64
    assert docker_engine.http_get(f"http://127.0.0.1:{port}/system_stats")[0] == 200
    last = _deploy(docker_engine, tmp_path, name, _rendered(tmp_path, name, port, slow, "b"))
    assert _changed(last.check()) == []
    docker_engine.compose(stack, "down", check=False)


@contextlib.contextmanager
def _small_disk(folder: Path, size_mb: int):
    """A loop-mounted ext4 file system of `size_mb` at `folder`."""
    image = folder.with_suffix(".img")
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        image.unlink(missing_ok=True)


def test_disk_full_during_build_keeps_the_running_stack(docker_engine, tmp_path):
    name, port = "diskfull", 18372
    tag = "local/diskfull-app:test"
    with _small_disk(tmp_path / "disk", 900) as disk:
        engine = DockerEngine(tag="f", data_root=disk / "docker")
        try:
            engine.start()
            image = engine.standin_image
            _deploy(engine, tmp_path, name, _rendered(tmp_path, name, port, image, "a")).check()
            stack = tmp_path / "ws" / "stacks" / name
            filler = {"tag": tag, "build_hash": "f" * 64, "context": "build",
                      "dockerfile": f"FROM {image}\n"
                                    "RUN dd if=/dev/zero of=/filler bs=1M count=4096\n"}
            failed = _deploy(engine, tmp_path, name,
                             _rendered(tmp_path, name, port, tag, "b", build=filler))
            assert failed.returncode != 0
            text = failed.stderr
            assert f"genai: building image {tag} for stack {name} FAILED: no space left on " \
                   f"device (Docker's data root {disk / 'docker'}" in text, failed.describe()
            assert "the running containers were not touched" in text
            # still serving, the deployed config in the folder, the space given back
            status, body = engine.http_get(f"http://127.0.0.1:{port}/system_stats")
            assert status == 200, body
            assert _whole_config(stack) == "a" * 64
            assert engine.run("ps", "-aq", "--filter", "status=exited").stdout.split() == []
            again = _deploy(engine, tmp_path, name, _rendered(tmp_path, name, port, image, "a"))
            assert _changed(again.check()) == []
        finally:
            engine.stop()
