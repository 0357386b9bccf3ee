"""Per-service change detection on a real Docker engine + Compose v2 (tests/harness), through
the real pyinfra CLI (tests/deploys/stack_lifecycle.py): a change recreates only the services
it touches; the others keep their container (same ID, same start time).

Apps are the STAND-IN image (tests/standin/); the proxy is Debian's caddy on the local base
image (as in tests/test_drift_e2e.py). The verify step is left out (`lifecycle_verify=`): its
proxy check asks the published port from this machine's network namespace, not the engine's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.pyinfra_run import run_pyinfra
from tests.test_drift_e2e import _proxy_image

pytestmark = pytest.mark.docker

DEPLOY = "tests/deploys/stack_lifecycle.py"


@pytest.fixture(scope="module")
def proxy_image(docker_engine, tmp_path_factory) -> str:
    return _proxy_image(docker_engine, tmp_path_factory.mktemp("caddy"))


def _inventory(workspace: Path, stacks: dict) -> dict:
    return {"hosts": {"local": {
        "connection": {"type": "local"},
        "user": {"name": "daemon", "uid": 1, "gid": 1},  # an existing system user
        "workspace": str(workspace), "gpu": {"mode": "none"}, "history_keep": 3,
        "stacks": stacks,
    }}}


def _run(engine, tmp_path: Path, stacks: dict, stack: str, *args: str, **kw):
    secrets = tmp_path / "secrets.env"
    if not secrets.exists():  # the proxy's bearer token, built at run time
        secrets.write_text(f"FORGE_AUTH=tok-{tmp_path.name[-8:]}-{'7' * 24}\n")
        secrets.chmod(0o600)
    return run_pyinfra(DEPLOY, _inventory(tmp_path / "ws", stacks), "--data",
                       f"lifecycle_stack={stack}", "--data", "lifecycle_verify=", *args,
                       env=engine.env, secrets=secrets, inventory_dir=tmp_path / "inventory", **kw)


def _containers(engine, stack: str) -> dict[str, str]:
    """{service: "<container ID> <State.StartedAt>"} of the stack's containers."""
    ids = engine.run("ps", "-aq", "--filter", f"label=genai.stack={stack}").stdout.split()
    rows = engine.run("inspect", "-f", '{{index .Config.Labels "com.docker.compose.service"}} '
                      "{{.Id}} {{.State.StartedAt}} {{.State.Status}}", *ids).stdout
    seen = {}
    for row in rows.splitlines():
        service, ident, started, status = row.split()
        assert status == "running", row
        seen[service] = f"{ident} {started}"
    return seen


def _changed(run) -> list[str]:
    return [name for names in run.changed_operations.values() for name in names]


def _forge(proxy: str, image: str, turbo_env: dict | None = None) -> dict:
    turbo = {"name": "turbo", "port": 18412, "gpu": "none"}
    if turbo_env:
        turbo["service"] = {"environment": turbo_env}
    return {"forge": {
        "health_timeout": 30, "proxy_image": proxy, "image": {"build": False, "name": image},
        "instances": [{"name": "main", "port": 18411, "gpu": "none", "auth": {"type": "bearer"},
                       "expose": {"address": "127.0.0.1"}}, turbo]}}


def test_one_forge_instance_changes_alone_and_a_failed_change_rolls_back_alone(
        docker_engine, proxy_image, tmp_path):
    image = docker_engine.standin_image
    _run(docker_engine, tmp_path, _forge(proxy_image, image), "forge").check()
    first = _containers(docker_engine, "forge")
    assert set(first) == {"forge-main", "forge-turbo", "proxy"}

    paris = _forge(proxy_image, image, {"TZ": "Europe/Paris"})
    plan = _run(docker_engine, tmp_path, paris, "forge", dry=True)
    assert plan.returncode == 0
    assert "plan: stack forge: recreate forge-turbo; keep running forge-main, proxy" in \
        plan.stdout + plan.stderr, plan.describe()
    assert _containers(docker_engine, "forge") == first  # a dry run touches nothing

    changed = _run(docker_engine, tmp_path, paris, "forge").check()
    assert _changed(changed)
    second = _containers(docker_engine, "forge")
    assert second["forge-main"] == first["forge-main"]
    assert second["proxy"] == first["proxy"]
    assert second["forge-turbo"] != first["forge-turbo"]
    env = docker_engine.run("inspect", "-f", "{{json .Config.Env}}",
                            second["forge-turbo"].split()[0]).stdout
    assert "TZ=Europe/Paris" in env

    again = _run(docker_engine, tmp_path, paris, "forge").check()
    assert _changed(again) == [], again.describe()
    assert _containers(docker_engine, "forge") == second

    # a change that fails its health check: the last good config comes back, for turbo alone
    broken = _forge(proxy_image, image, {"TZ": "Europe/Paris", "STANDIN_FAIL": "1"})
    failed = _run(docker_engine, tmp_path, broken, "forge")
    assert failed.returncode != 0
    assert "ROLLED BACK stack forge" in failed.stderr, failed.describe()
    after = _containers(docker_engine, "forge")
    assert after["forge-main"] == second["forge-main"]
    assert after["proxy"] == second["proxy"]
    turbo_env = docker_engine.run("inspect", "-f", "{{json .Config.Env}}",
                                  after["forge-turbo"].split()[0]).stdout
    assert "TZ=Europe/Paris" in turbo_env and "STANDIN_FAIL" not in turbo_env
    assert docker_engine.http_get("http://127.0.0.1:18412/internal/ping")[0] == 200
    back = _run(docker_engine, tmp_path, paris, "forge").check()
    assert _changed(back) == [], back.describe()  # the restored config is the inventory's


def test_comfyui_sidecar_change_keeps_comfyui_running(docker_engine, tmp_path):
    def stacks(minutes: int) -> dict:
        return {"comfyui": {"port": 18421, "gpu": "none", "health_timeout": 30,
                            "idle_unload_minutes": minutes,
                            "image": {"build": False, "name": docker_engine.standin_image}}}

    _run(docker_engine, tmp_path, stacks(5), "comfyui").check()
    first = _containers(docker_engine, "comfyui")
    assert set(first) == {"comfyui", "idle-unload"}
    run = _run(docker_engine, tmp_path, stacks(7), "comfyui").check()
    assert "plan: stack comfyui: recreate idle-unload; keep running comfyui" in \
        run.stdout + run.stderr, run.describe()
    second = _containers(docker_engine, "comfyui")
    assert second["comfyui"] == first["comfyui"]  # the models it loaded stay loaded
    assert second["idle-unload"] != first["idle-unload"]
    again = _run(docker_engine, tmp_path, stacks(7), "comfyui").check()
    assert _changed(again) == [] and _containers(docker_engine, "comfyui") == second
