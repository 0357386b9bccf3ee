"""Last known good, on the real Docker engine (tests/harness/docker_engine.py) through the real
pyinfra CLI: a config is marked good only after its run verified it; a config that comes up
healthy but fails a check (the app reports another card, the app cannot write its output
folder) is rolled back to the newest good config, not merely the previous one.

Hand-made rendered stacks (`--data lifecycle_rendered=FILE`, as in
test_stacks_lifecycle_docker.py) declare the card in `gpu_checks`, so the GPU check runs on
any engine; the app is the STAND-IN (tests/standin/), whose reported card is set by its env.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from genai_workstation.stacks import lifecycle as lc
from tests import test_stacks_lifecycle_docker as lifecycle_docker
from tests.harness.pyinfra_run import run_pyinfra
from tests.test_stacks_lifecycle_docker import GPU_3080, GPU_3090, _changed, _inventory, _run

pytestmark = pytest.mark.docker

URL = "http://127.0.0.1:8188/system_stats"
images = lifecycle_docker.images  # the stand-in tags (a module fixture): ok, other_gpu, fail


class Stack:
    """A hand-made rendered stack `name` on `port`; deploy(image, marker) converges one config."""

    def __init__(self, engine, tmp_path: Path, name: str, port: int):
        self.engine, self.tmp_path, self.name, self.port = engine, tmp_path, name, port
        self.inventory = _inventory(tmp_path / "ws", {})
        self.dir = tmp_path / "ws" / "stacks" / name
        (tmp_path / "out").mkdir(exist_ok=True)

    def rendered(self, image: str, marker: str, output_mode: str = "rw") -> Path:
        compose = textwrap.dedent(f"""\
            name: genai-{self.name}
            services:
              comfyui:
                image: {image}
                init: true
                ports: ["127.0.0.1:{self.port}:8188"]
                volumes: ["{self.tmp_path / 'out'}:/data/output:{output_mode}"]
                labels:
                  genai.config-hash: "{marker * 64}"
                healthcheck:
                  test: ["CMD", "python", "-c", "import urllib.request as u; u.urlopen('{URL}')"]
                  interval: 1s
                  retries: 10
            """)
        data = {"files": {"compose.yaml": {"content": compose}}, "config_hash": marker * 64,
                "services": ["comfyui"], "image_build": None,
                "health": [{"service": "comfyui", "url": URL, "writable": ["/data/output"]}],
                "gpu_checks": [{"service": "comfyui", "expected": GPU_3090, "probe": "comfyui",
                                "url": URL}]}
        path = self.tmp_path / f"rendered-{marker}.json"
        path.write_text(json.dumps(data))
        return path

    def deploy(self, image: str, marker: str, *args: str, **kw):
        return _run(self.engine, self.inventory, self.name, "--data",
                    f"lifecycle_rendered={self.rendered(image, marker, **kw)}", *args,
                    tmp_path=self.tmp_path)

    def deployed(self) -> str:
        return (self.dir / lc.DEPLOYED_HASH_FILE).read_text().strip()

    def verified(self) -> str | None:
        path = self.dir / lc.VERIFIED_FILE
        return path.read_text().strip() if path.exists() else None

    def snapshot_of(self, marker: str) -> str:
        names = [p.name for p in (self.dir / ".history").iterdir()
                 if p.name.endswith(f"-{marker * 12}")]
        assert len(names) == 1, names
        return names[0]

    def device(self) -> str:
        status, body = self.engine.http_get(f"http://127.0.0.1:{self.port}/system_stats")
        assert status == 200, body
        return json.loads(body)["devices"][0]["name"]


def test_verified_config_is_marked_good_and_a_wrong_card_is_rolled_back(docker_engine, images,
                                                                       tmp_path):
    """(a) A verified -> marked good; (b) B healthy but the app sees another card -> back to
    A, the run naming the failed check and the restored snapshot."""
    stack = Stack(docker_engine, tmp_path, "lkgab", 18361)
    first = stack.deploy(images["ok"], "a", "-vvv").check()
    assert stack.deployed() == stack.verified() == "a" * 64
    assert "marked good" in first.stderr + first.stdout, first.describe()
    assert _changed(stack.deploy(images["ok"], "a").check()) == []  # verified: nothing to do

    wrong = stack.deploy(images["other_gpu"], "b")
    assert wrong.returncode != 0
    good = stack.snapshot_of("a")
    text = wrong.stderr
    assert (f"config {'b' * 12} failed the GPU check of comfyui (the app sees "
            f"'cuda:0 {GPU_3080} : cudaMallocAsync', the inventory declares '{GPU_3090}')"
            in text), wrong.describe()
    assert f"restored the last good config {good} (verified by an earlier run)" in text
    assert stack.deployed() == stack.verified() == "a" * 64
    assert GPU_3090 in stack.device()  # the old config serves again

    # the restored config is the inventory's old one: converged and verified, 0 changes
    assert _changed(stack.deploy(images["ok"], "a").check()) == []


def test_write_check_failure_is_rolled_back(docker_engine, images, tmp_path):
    """B is healthy and on the right card but its output folder is mounted read-only."""
    stack = Stack(docker_engine, tmp_path, "lkgw", 18362)
    stack.deploy(images["ok"], "a").check()
    failed = stack.deploy(images["ok"], "b", output_mode="ro")
    assert failed.returncode != 0
    assert "Write check FAILED for comfyui: cannot create a file in /data/output" \
        in failed.stderr, failed.describe()
    assert f"failed the write check of comfyui (/data/output); restored the last good " \
           f"config {stack.snapshot_of('a')}" in failed.stderr
    assert stack.deployed() == "a" * 64


def test_broken_config_goes_back_to_the_last_good_not_the_previous(docker_engine, images,
                                                                  tmp_path):
    """(c) A good; B deployed but never verified (its run was cut after `up`, before the mark:
    the mark is removed here); a broken C rolls back to A, not to B."""
    stack = Stack(docker_engine, tmp_path, "lkgc", 18363)
    stack.deploy(images["ok"], "a").check()
    stack.deploy(images["ok"], "b").check()
    (stack.dir / lc.VERIFIED_FILE).unlink()

    broken = stack.deploy(images["fail"], "c")
    assert broken.returncode != 0
    good, previous = stack.snapshot_of("a"), stack.snapshot_of("b")
    assert "failed the health check (not healthy within 60 s)" in broken.stderr, \
        broken.describe()
    assert f"restored the last good config {good}" in broken.stderr
    assert previous not in broken.stderr.split("restored", 1)[1]
    assert stack.deployed() == "a" * 64
    assert GPU_3090 in stack.device()

    # the manual rollback lists what is kept and which is good; A runs and no other config is
    # good, so it goes to B and says that B was never verified
    back = run_pyinfra("deploys/rollback.py", stack.inventory, "--data", "rollback_stack=lkgc",
                       "-vvv", env=docker_engine.env, secrets=tmp_path / "secrets.env",
                       inventory_dir=tmp_path / "inventory").check()
    text = back.stdout + back.stderr
    assert f"kept: {good}: good (verified), the config deployed now" in text, back.describe()
    assert f"kept: {previous}: not verified" in text
    assert f"rolled back to {previous} (never verified)" in text
    assert stack.deployed() == "b" * 64
