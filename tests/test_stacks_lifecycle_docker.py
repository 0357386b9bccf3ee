"""Stack lifecycle against a real Docker engine (tests/harness/docker_engine.py), through the
real pyinfra CLI (`tests/deploys/stack_lifecycle.py` = the stack and verify steps of
deploys/comfyui.py, without the workstation step, which is not for this machine).

The app image is the STAND-IN from tests/standin/ (it answers the ComfyUI endpoints the deploy
uses, reports a configurable GPU name, and fails on STANDIN_FAIL=1): these tests prove the
lifecycle, not ComfyUI itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from genai_workstation.stacks import lifecycle as lc
from tests.harness.pyinfra_run import run_pyinfra

pytestmark = pytest.mark.docker

DEPLOY = "tests/deploys/stack_lifecycle.py"
SECRET = "Zq9-lifecycle-SECRET-7f3c2b1a-do-not-print"
GPU_3090 = "NVIDIA GeForce RTX 3090"
GPU_3080 = "NVIDIA GeForce RTX 3080"


# --- engine plumbing (the harness fixture is the contract: env, run, exec_in_netns) --------


def _docker(engine, *args: str) -> subprocess.CompletedProcess:
    return engine.run(*args)


@pytest.fixture(scope="module")
def images(docker_engine):
    """Stand-in tags: `ok` reports an RTX 3090, `other_gpu` an RTX 3080, `fail` never starts."""
    return {
        "ok": docker_engine.standin_image,
        "other_gpu": docker_engine.standin_variant(
            STANDIN_GPU_NAME=f"cuda:0 {GPU_3080} : cudaMallocAsync"),
        "fail": docker_engine.standin_variant(STANDIN_FAIL="1"),
    }


def _http_status(engine, url: str) -> int | None:
    """GET `url` from inside the engine's network namespace (where ports are published)."""
    return engine.http_get(url)[0]


def _inventory(workspace: Path, stacks: dict, gpu_mode: str = "none") -> dict:
    return {"hosts": {"local": {
        "connection": {"type": "local"},
        "user": {"name": "daemon", "uid": 1, "gid": 1},  # an existing system user
        "workspace": str(workspace), "gpu": {"mode": gpu_mode}, "history_keep": 3,
        "stacks": stacks,
    }}}


def _run(engine, inventory: dict, stack: str, *args: str, tmp_path: Path, env=None, **kw):
    secrets = tmp_path / "secrets.env"
    if not secrets.exists():
        secrets.write_text(f"API_TOKEN={SECRET}\n")
        secrets.chmod(0o600)
    return run_pyinfra(DEPLOY, inventory, "--data", f"lifecycle_stack={stack}", *args,
                       env={**engine.env, **(env or {})}, secrets=secrets,
                       inventory_dir=tmp_path / "inventory", **kw)


def _template(folder: Path) -> Path:
    """A user's compose template folder: the stand-in, a compose secret, a healthcheck."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compose.yaml.j2").write_text(textwrap.dedent("""\
        services:
          app:
            image: {{ vars.image }}
            init: true
            user: "{{ user }}"
            ports: ["127.0.0.1:{{ vars.port }}:8188"]
            environment:
              STANDIN_FAIL: "{{ vars.fail }}"
            secrets: [api_token]
            healthcheck:
              test: ["CMD", "python3", "-c",
                     "import urllib.request as u; u.urlopen('http://127.0.0.1:8188/system_stats')"]
              interval: 2s
              timeout: 5s
              retries: 3
        secrets:
          api_token:
            file: {{ secrets.API_TOKEN }}
        """))
    return folder


def _custom(tmp_path: Path, image: str, port: int, fail: str = "0") -> dict:
    return {"custom": {"demo": {
        "template_dir": str(_template(tmp_path / "template")), "secrets": ["API_TOKEN"],
        "ports": [port], "vars": {"image": image, "port": port, "fail": fail},
        "health_timeout": 30}}}


def _changed(run) -> list[str]:
    return [name for names in run.changed_operations.values() for name in names]


# --- tests ----------------------------------------------------------------------------------


def test_comfyui_converges_then_plans_zero_changes_on_loopback_only(docker_engine, images,
                                                                      tmp_path):
    port = 18301
    stacks = {"comfyui": {"port": port, "gpu": "none", "health_timeout": 60,
                          "image": {"build": False, "name": images["ok"]}}}
    inventory = _inventory(tmp_path / "ws", stacks)
    first = _run(docker_engine, inventory, "comfyui", tmp_path=tmp_path).check()
    assert any("Stack comfyui" in name for name in _changed(first))
    second = _run(docker_engine, inventory, "comfyui", tmp_path=tmp_path).check()
    assert _changed(second) == [], second.describe()
    dry = _run(docker_engine, inventory, "comfyui", tmp_path=tmp_path, dry=True)
    assert dry.returncode == 0 and not dry.changed, dry.describe()

    stack = tmp_path / "ws" / "stacks" / "comfyui"
    assert (stack / lc.DEPLOYED_HASH_FILE).read_text().strip()
    ps = _docker(docker_engine, "ps", "--filter", "label=genai.stack=comfyui", "-q").stdout.split()
    assert ps, "no comfyui container"
    info = json.loads(_docker(docker_engine, "inspect", *ps).stdout)
    bindings = [b for c in info for spec in (c["HostConfig"]["PortBindings"] or {}).values()
                for b in spec]
    assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}, bindings
    assert _http_status(docker_engine, f"http://127.0.0.1:{port}/system_stats") == 200


def test_unhealthy_config_is_rolled_back_and_old_stack_keeps_serving(docker_engine, images,
                                                                      tmp_path):
    port = 18302
    good = _inventory(tmp_path / "ws", _custom(tmp_path, images["ok"], port))
    _run(docker_engine, good, "demo", tmp_path=tmp_path).check()
    stack = tmp_path / "ws" / "stacks" / "demo"
    deployed = (stack / lc.DEPLOYED_HASH_FILE).read_text().strip()

    bad = _inventory(tmp_path / "ws", _custom(tmp_path, images["ok"], port, fail="1"))
    failed = _run(docker_engine, bad, "demo", tmp_path=tmp_path)
    assert failed.returncode != 0
    assert "ROLLED BACK stack demo" in failed.stderr, failed.describe()
    assert f"last {lc.LOG_LINES} log lines" in failed.stderr
    assert "standin" in failed.stderr.lower()  # the app's own log lines were printed
    assert (stack / lc.DEPLOYED_HASH_FILE).read_text().strip() == deployed
    assert _http_status(docker_engine, f"http://127.0.0.1:{port}/system_stats") == 200
    kept = [p.name for p in (stack / ".history").iterdir()]
    assert any(name.endswith(deployed[:12]) for name in kept), kept

    # the restored config is the inventory's old one: converged, 0 changes
    again = _run(docker_engine, good, "demo", tmp_path=tmp_path).check()
    assert _changed(again) == [], again.describe()


def test_rollback_deploy_restores_the_previous_config(docker_engine, images, tmp_path):
    port = 18303
    first = _inventory(tmp_path / "ws", _custom(tmp_path, images["ok"], port))
    _run(docker_engine, first, "demo", tmp_path=tmp_path).check()
    stack = tmp_path / "ws" / "stacks" / "demo"
    old = (stack / lc.DEPLOYED_HASH_FILE).read_text().strip()
    second = _inventory(tmp_path / "ws", _custom(tmp_path, images["other_gpu"], port))
    _run(docker_engine, second, "demo", tmp_path=tmp_path).check()
    assert (stack / lc.DEPLOYED_HASH_FILE).read_text().strip() != old

    back = run_pyinfra("deploys/rollback.py", second, "--data", "rollback_stack=demo",
                       env=docker_engine.env, secrets=tmp_path / "secrets.env",
                       inventory_dir=tmp_path / "inventory").check()
    assert any("Roll back stack demo" in n for n in _changed(back))
    assert (stack / lc.DEPLOYED_HASH_FILE).read_text().strip() == old
    assert _http_status(docker_engine, f"http://127.0.0.1:{port}/system_stats") == 200


def test_secret_value_never_printed_in_argv_or_compose(docker_engine, images, tmp_path):
    port = 18304
    inventory = _inventory(tmp_path / "ws", _custom(tmp_path, images["ok"], port))
    outputs = []
    for args in (("-vv", "--diff"), ("-vvv",), ("--diff",)):
        run = _run(docker_engine, inventory, "demo", *args, tmp_path=tmp_path).check()
        outputs.append(run.stdout + run.stderr)
        # rotate the secret so that the next run has a change (and a --diff) to show
        (tmp_path / "secrets.env").write_text(f"API_TOKEN={SECRET}-{len(outputs)}\n")
    assert all(SECRET not in text for text in outputs)
    assert all(json.loads(text[text.find('{"plan"'):].splitlines()[0]) for text in outputs)

    stack = tmp_path / "ws" / "stacks" / "demo"
    secret_files = {stack / "secrets" / "API_TOKEN", stack / "secrets.env"}
    for path in secret_files:
        assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_uid == 1
        assert SECRET in path.read_text()
    for path in stack.rglob("*"):
        if path.is_file() and ".history" not in path.parts and path not in secret_files:
            assert SECRET not in path.read_text(errors="replace"), path
    ps = _docker(docker_engine, "ps", "-aq", "--filter", "label=genai.stack=demo").stdout.split()
    for container in json.loads(_docker(docker_engine, "inspect", *ps).stdout):
        shown = json.dumps([container["Config"].get("Cmd"), container.get("Args"),
                            container["Config"].get("Env"), container["Config"].get("Entrypoint")])
        assert SECRET not in shown


def test_gpu_name_check_fails_on_mismatch(docker_engine, images, tmp_path):
    """The inventory declares the RTX 3090 (nvidia-smi stub); the app reports an RTX 3080."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, GPU-873ec493-2856-0e4e-b7c4-47f859451051, "
                   f"{GPU_3090}, 00000000:01:00.0, 24576, 555.99'\n")
    smi.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    port = 18305
    stacks = {"comfyui": {"port": port, "gpu": "RTX 3090", "health_timeout": 60,
                          "image": {"build": False, "name": images["other_gpu"]}}}
    inventory = _inventory(tmp_path / "ws", stacks, gpu_mode="nvidia")
    run = _run(docker_engine, inventory, "comfyui", tmp_path=tmp_path, env=env)
    if "could not select device driver" in run.stderr:
        pytest.skip("the test engine has no (stub) nvidia device driver; see docs/lifecycle.md")
    assert run.returncode != 0
    assert "GPU check FAILED" in run.stderr, run.describe()
    assert GPU_3080 in run.stderr and GPU_3090 in run.stderr
    # nothing changed since: the check still fails, from facts alone
    again = _run(docker_engine, inventory, "comfyui", tmp_path=tmp_path, env=env)
    assert again.returncode != 0 and "GPU check FAILED" in again.stderr


def test_forge_two_instances_converge_then_zero_changes(docker_engine, images, tmp_path):
    stacks = {"forge": {"health_timeout": 60, "image": {"build": False, "name": images["ok"]},
                        "instances": [{"name": "main", "port": 18311, "gpu": "none"},
                                      {"name": "turbo", "port": 18312, "gpu": "none"}]}}
    inventory = _inventory(tmp_path / "ws", stacks)
    _run(docker_engine, inventory, "forge", tmp_path=tmp_path).check()
    again = _run(docker_engine, inventory, "forge", tmp_path=tmp_path).check()
    assert _changed(again) == [], again.describe()
    for port in (18311, 18312):
        assert _http_status(docker_engine, f"http://127.0.0.1:{port}/internal/ping") == 200
    logs = docker_engine.compose(tmp_path / "ws" / "stacks" / "forge", "logs", "--no-color")
    assert logs.stdout.count("Device: cpu") == 2


def test_image_is_built_only_when_its_build_hash_label_differs(docker_engine, images, tmp_path):
    tag = "local/lifecycle-built:test"
    docker_engine.run("rmi", "-f", tag)

    def rendered(build_hash: str, marker: str) -> Path:
        compose = textwrap.dedent(f"""\
            name: genai-built
            services:
              app:
                image: {tag}
                pull_policy: never
                init: true
                ports: ["127.0.0.1:18313:8188"]
                labels:
                  genai.config-hash: "{build_hash}"
            """)
        data = {
            "files": {"compose.yaml": {"content": compose},
                      "build/Dockerfile": {"content": f"FROM {images['ok']}\n"
                                                      f"LABEL marker={marker}\n"}},
            "config_hash": build_hash, "services": ["app"], "health": [], "gpu_checks": [],
            "image_build": {"tag": tag, "build_hash": build_hash, "context": "build",
                            "labels": {"genai.app": "built"}},
        }
        path = tmp_path / f"rendered-{marker}.json"
        path.write_text(json.dumps(data))
        return path

    inventory = _inventory(tmp_path / "ws", {})

    def deploy(path: Path):
        return _run(docker_engine, inventory, "built", "--data", f"lifecycle_rendered={path}",
                    tmp_path=tmp_path).check()

    first = deploy(rendered("1" * 64, "one"))
    assert _changed(first)
    # the build's progress is printed as it runs, at the default verbosity
    assert re.search(rf"genai: build {tag} \[\d+ s\] Step 1/\d+ : FROM", first.stderr), first.stderr
    assert f"genai: built {tag} in " in first.stderr
    label = docker_engine.run("image", "inspect", "--format",
                              '{{ index .Config.Labels "genai.build-hash" }}', tag).stdout.strip()
    assert label == "1" * 64
    image_id = docker_engine.run("image", "inspect", "--format", "{{.Id}}", tag).stdout
    assert _changed(deploy(rendered("1" * 64, "one"))) == []  # same hash: no build, no up
    assert docker_engine.run("image", "inspect", "--format", "{{.Id}}", tag).stdout == image_id
    deploy(rendered("2" * 64, "two"))
    assert docker_engine.run("image", "inspect", "--format", "{{.Id}}", tag).stdout != image_id
    assert _http_status(docker_engine, "http://127.0.0.1:18313/system_stats") == 200


def test_gpu_name_check_on_a_hand_made_stack(docker_engine, images, tmp_path):
    """The GPU check itself, on any engine: no compose GPU request, the card declared in the
    rendered stack's gpu_checks (as render_stack sets them from the resolved GPU)."""

    def rendered(image: str, marker: str) -> Path:
        compose = textwrap.dedent(f"""\
            name: genai-gpu
            services:
              comfyui:
                image: {image}
                init: true
                ports: ["127.0.0.1:18314:8188"]
                healthcheck:
                  test: ["CMD", "python", "-c",
                         "import urllib.request as u; u.urlopen('http://127.0.0.1:8188/system_stats')"]
                  interval: 2s
                  retries: 5
            """)
        url = "http://127.0.0.1:8188/system_stats"
        data = {"files": {"compose.yaml": {"content": compose}}, "config_hash": marker * 64,
                "services": ["comfyui"], "image_build": None,
                "health": [{"service": "comfyui", "url": url}],
                "gpu_checks": [{"service": "comfyui", "expected": GPU_3090, "probe": "comfyui",
                                "url": url}]}
        path = tmp_path / f"rendered-{marker}.json"
        path.write_text(json.dumps(data))
        return path

    inventory = _inventory(tmp_path / "ws", {})

    def deploy(path: Path):
        return _run(docker_engine, inventory, "gpu", "--data", f"lifecycle_rendered={path}",
                    tmp_path=tmp_path)

    assert _changed(deploy(rendered(images["ok"], "a")).check())
    assert _changed(deploy(rendered(images["ok"], "a")).check()) == []  # RTX 3090 as declared
    wrong = deploy(rendered(images["other_gpu"], "b"))
    assert wrong.returncode != 0
    assert f"the app sees 'cuda:0 {GPU_3080} : cudaMallocAsync'" in wrong.stderr, wrong.describe()
    assert f"the inventory declares '{GPU_3090}'" in wrong.stderr
    again = deploy(rendered(images["other_gpu"], "b"))  # nothing to change: facts still fail it
    assert again.returncode != 0 and "GPU check FAILED" in again.stderr
