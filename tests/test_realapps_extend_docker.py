"""Image extensions and a local custom node in the REAL ComfyUI image (files/comfyui/Dockerfile),
built offline from tests/harness/mirror.py and run under the real lifecycle
(tests/deploys/stack_lifecycle.py), CPU only, on the test engine.

Proves: image.extend's apt package, pinned pip package and build-time command are in the running
container; a custom node from a local folder is loaded by the real ComfyUI (its requirements
baked, its .env left out); a change to the extension rebuilds from the extension step only (the
mirror serves the changed pin and nothing else: no PyTorch, no ComfyUI requirement). Skipped,
with the reason, where ../shared/upstream (GENAI_UPSTREAM_DIR) is absent.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from tests.harness import mirror as mr
from tests.harness.pyinfra_run import run_pyinfra
from tests.test_realapps_comfyui_docker import UPSTREAM, pytestmark  # noqa: F401 (skip mark)

DEPLOY = "tests/deploys/stack_lifecycle.py"
PORT = 18361
EXTRA_PINS = ["text-unidecode==1.3", "tabulate==0.9.0"]
CHANGED_PIN = "text-unidecode==1.2"
NODE_INIT = '''\
"""A local custom node for the tests: its requirement (tabulate) is baked into the image."""
from tabulate import tabulate


class GenaiLocalEcho:
    CATEGORY = "genai-tests"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hi"})}}

    def run(self, text):
        return (tabulate([[text]]),)


NODE_CLASS_MAPPINGS = {"GenaiLocalEcho": GenaiLocalEcho}
'''


def _wheels() -> Path:
    """The ComfyUI wheelhouse plus the extension's pins, hard-linked into one folder."""
    git_root = mr.WHEELHOUSE_ROOT.parent / "git-extend"
    comfyui = mr.wheelhouse("comfyui", mr.TORCH_PINS, mr.comfyui_sources(UPSTREAM, git_root))
    folder = mr.wheelhouse("comfyui-extend", EXTRA_PINS, [])
    mr.wheelhouse("comfyui-extend", [CHANGED_PIN], [])
    for wheel in comfyui.glob("*.whl"):
        if not (folder / wheel.name).exists():
            os.link(wheel, folder / wheel.name)
    return folder


@pytest.fixture(scope="module")
def mirror(docker_engine, tmp_path_factory):
    git_root = tmp_path_factory.mktemp("git")
    mr.comfyui_sources(UPSTREAM, git_root)
    with mr.serving(docker_engine, _wheels(), git_root) as served:
        yield served


def _node(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text(NODE_INIT)
    # The run's own comment: the layers from the node's requirements on are this run's, so a
    # warm engine (an earlier run's pin-change layer) cannot hide what a pin change fetches.
    (folder / "requirements.txt").write_text(f"tabulate==0.9.0\n# test run {uuid.uuid4()}\n")
    (folder / ".env").write_text("SOME_API_KEY=never-baked\n")
    return folder


def _inventory(workspace: Path, mirror, base_image: str, node: Path, pin: str) -> dict:
    image = mr.image_settings(mirror, base_image, "ComfyUI", mr.COMFYUI_REF)
    image["extend"] = {"apt": ["tree"], "pip": [pin],
                       "run": ["tree -L 1 /opt/comfyui/custom_nodes > /opt/genai/extend-tree.txt",
                               "python -c 'import text_unidecode' && echo ok >> "
                               "/opt/genai/extend-tree.txt"]}
    stack = {"port": PORT, "gpu": "none", "health_timeout": 300, "image": image,
             "custom_nodes": [{"path": str(node), "name": "genai-local"}]}
    return {"hosts": {"local": {
        "connection": {"type": "local"},
        "user": {"name": "daemon", "uid": 1, "gid": 1},
        "workspace": str(workspace), "gpu": {"mode": "none"}, "history_keep": 3,
        "stacks": {"comfyui": stack},
    }}}


def _deploy(engine, inventory: dict, tmp_path: Path):
    return run_pyinfra(DEPLOY, inventory, "--data", "lifecycle_stack=comfyui", env=engine.env,
                       inventory_dir=tmp_path / "inventory", timeout=2400)


def _changed(run) -> list[str]:
    return [name for names in run.changed_operations.values() for name in names]


@pytest.fixture(scope="module")
def comfyui(docker_engine, mirror, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("extend")
    node = _node(tmp_path / "nodes" / "my-node")
    inventory = _inventory(tmp_path / "ws", mirror, docker_engine.base_image, node,
                           EXTRA_PINS[0])
    started = time.monotonic()
    first = _deploy(docker_engine, inventory, tmp_path).check()
    docker_engine.timings["extend_first_deploy"] = time.monotonic() - started
    yield {"inventory": inventory, "tmp": tmp_path, "first": first, "node": node,
           "stack_dir": tmp_path / "ws" / "stacks" / "comfyui"}
    docker_engine.compose(tmp_path / "ws" / "stacks" / "comfyui", "down", "--timeout", "2",
                          check=False)


def _exec(engine, stack_dir: Path, *argv: str):
    return engine.compose(stack_dir, "exec", "-T", "comfyui", *argv, check=False)


def test_extension_apt_pip_and_command_are_in_the_running_container(docker_engine, comfyui):
    first = comfyui["first"]
    assert any("Stack comfyui" in name for name in _changed(first))
    assert "not copied into the image: .env" in first.stdout + first.stderr
    again = _deploy(docker_engine, comfyui["inventory"], comfyui["tmp"]).check()
    assert _changed(again) == [], again.describe()
    stack_dir = comfyui["stack_dir"]
    assert _exec(docker_engine, stack_dir, "tree", "--version").returncode == 0
    version = _exec(docker_engine, stack_dir, "python", "-c",
                    "import importlib.metadata as m; print(m.version('text-unidecode'))")
    assert version.stdout.strip() == "1.3", version.stderr
    made = _exec(docker_engine, stack_dir, "cat", "/opt/genai/extend-tree.txt").stdout
    assert "genai-local" in made and made.rstrip().endswith("ok"), made


def test_local_custom_node_is_loaded_by_the_real_comfyui(docker_engine, comfyui):
    status, body = docker_engine.http_get(f"http://127.0.0.1:{PORT}/object_info/GenaiLocalEcho")
    assert status == 200 and "GenaiLocalEcho" in json.loads(body), body[:500]
    stack_dir = comfyui["stack_dir"]
    listed = _exec(docker_engine, stack_dir, "ls", "-A", "/opt/comfyui/custom_nodes/genai-local")
    assert listed.stdout.split() == ["__init__.py", "requirements.txt"], listed.stdout


def _redeploy(engine, mirror, comfyui, timing: str) -> None:
    """Deploy with CHANGED_PIN, counting what the mirror serves from here on."""
    changed = _inventory(comfyui["tmp"] / "ws", mirror, engine.base_image, comfyui["node"],
                         CHANGED_PIN)
    mirror.reset_counters()
    started = time.monotonic()
    run = _deploy(engine, changed, comfyui["tmp"]).check()
    engine.timings[timing] = time.monotonic() - started
    assert any("Stack comfyui" in name for name in _changed(run))


def test_an_extension_change_rebuilds_from_the_extension_step_only(docker_engine, mirror,
                                                                    comfyui):
    stack_dir = comfyui["stack_dir"]
    before = docker_engine.compose(stack_dir, "images", "--format", "json").stdout
    _redeploy(docker_engine, mirror, comfyui, "extend_pin_change_deploy")
    fetched = sorted({path for kind, path, _ in mirror.requests if kind == "files"})
    assert fetched == ["/files/text_unidecode-1.2-py2.py3-none-any.whl"], fetched
    assert not [path for kind, path, _ in mirror.requests if kind in ("git", "apt")]
    version = _exec(docker_engine, stack_dir, "python", "-c",
                    "import importlib.metadata as m; print(m.version('text-unidecode'))")
    assert version.stdout.strip() == "1.2"
    after = docker_engine.compose(stack_dir, "images", "--format", "json").stdout
    assert json.loads(before)[0]["ID"] != json.loads(after)[0]["ID"]


def test_a_local_node_edit_rebuilds_without_fetching_anything(docker_engine, mirror, comfyui):
    """The node's requirements and the pins come before its files: an edit to its code copies
    the files again and fetches nothing from the index."""
    init = comfyui["node"] / "__init__.py"
    init.write_text(init.read_text().replace('"genai-tests"', '"genai-tests/edited"'))
    _redeploy(docker_engine, mirror, comfyui, "extend_node_edit_deploy")
    assert not mirror.requests, mirror.requests
    status, body = docker_engine.http_get(f"http://127.0.0.1:{PORT}/object_info/GenaiLocalEcho")
    assert status == 200 and json.loads(body)["GenaiLocalEcho"]["category"] == \
        "genai-tests/edited"
