"""The user's own image with its own ENTRYPOINT (`image: {build: false, name, entrypoint: keep}`)
under the real lifecycle (tests/deploys/stack_lifecycle.py) on the test engine.

The "own image" is built here FROM the STAND-IN app (tests/standin/): its ENTRYPOINT is a start
script of its own that records its arguments and then execs the app with "$@", as a user's
Forge image would. It proves the wiring (entrypoint kept, genai-workstation's arguments passed
to it, same user, mounts, health and checks as a built app), not Forge itself.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.harness.pyinfra_run import run_pyinfra

pytestmark = pytest.mark.docker

DEPLOY = "tests/deploys/stack_lifecycle.py"
OWN_TAG = "registry.example/forge-mine:1.2"
PORT = 18351


@pytest.fixture(scope="module")
def own_image(docker_engine, tmp_path_factory) -> str:
    context = tmp_path_factory.mktemp("own-image")
    (context / "start-mine").write_text(textwrap.dedent("""\
        #!/bin/sh
        # The user's own start script: records how it was called, then starts the app.
        echo "start-mine $*" > /tmp/start-mine.log
        exec python3 /opt/standin/app.py "$@"
        """))
    (context / "start-mine").chmod(0o755)
    (context / "start-env").write_text(textwrap.dedent("""\
        #!/bin/sh
        # A start script that reads the app's arguments from a variable, as many Forge images
        # do (CLI_ARGS, COMMANDLINE_ARGS); it ignores its own arguments.
        echo "start-env CMD=$* CLI_ARGS=$CLI_ARGS" > /tmp/start-env.log
        exec python3 /opt/standin/app.py $CLI_ARGS
        """))
    (context / "start-env").chmod(0o755)
    (context / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {docker_engine.standin_image}
        COPY start-mine start-env /usr/local/bin/
        ENTRYPOINT ["/usr/local/bin/start-mine"]
        CMD ["--port", "9999"]
        """))
    docker_engine.build(context, OWN_TAG)
    return OWN_TAG


@pytest.fixture
def workspace(docker_engine, tmp_path):
    """The test's workspace; its forge stack is taken down afterwards (same project name)."""
    yield tmp_path / "ws"
    stack = tmp_path / "ws" / "stacks" / "forge"
    if (stack / "compose.yaml").exists():
        docker_engine.compose(stack, "down", "--timeout", "2", check=False)


def _inventory(workspace: Path, image: dict) -> dict:
    return {"hosts": {"local": {
        "connection": {"type": "local"},
        "user": {"name": "daemon", "uid": 1, "gid": 1},
        "workspace": str(workspace), "gpu": {"mode": "none"}, "history_keep": 3,
        "stacks": {"forge": {"health_timeout": 60, "image": image,
                             "instances": [{"name": "mine", "port": PORT, "gpu": "none"}]}},
    }}}


def _run(engine, inventory: dict, tmp_path: Path):
    return run_pyinfra(DEPLOY, inventory, "--data", "lifecycle_stack=forge", env=engine.env,
                       inventory_dir=tmp_path / "inventory")


def _changed(run) -> list[str]:
    return [name for names in run.changed_operations.values() for name in names]


def test_own_image_runs_with_its_entrypoint_healthy_then_zero_changes(docker_engine, own_image,
                                                                      workspace, tmp_path):
    inventory = _inventory(workspace, {"build": False, "name": own_image,
                                             "entrypoint": "keep"})
    first = _run(docker_engine, inventory, tmp_path).check()
    assert any("Stack forge" in name for name in _changed(first))
    assert "image build" not in first.stderr  # used as it is, never built
    again = _run(docker_engine, inventory, tmp_path).check()
    assert _changed(again) == [], again.describe()
    assert docker_engine.http_get(f"http://127.0.0.1:{PORT}/internal/ping")[0] == 200

    ids = docker_engine.run("ps", "-q", "--filter", "label=genai.service=forge-mine").stdout
    info = json.loads(docker_engine.run("inspect", *ids.split()).stdout)[0]
    assert info["Config"]["Image"] == own_image
    assert info["Config"]["Entrypoint"] == ["/usr/local/bin/start-mine"]
    assert info["Config"]["User"] == "1:1"
    assert info["State"]["Health"]["Status"] == "healthy"
    targets = {m["Destination"] for m in info["Mounts"]}
    assert {"/data/models", "/data/forge", "/data/forge/outputs", "/data/cache"} <= targets
    # The start script got genai-workstation's arguments (port, paths, CPU), not its own CMD.
    called = docker_engine.run("exec", ids.split()[0], "cat", "/tmp/start-mine.log").stdout
    assert "--port 7860" in called and "--always-cpu" in called and "9999" not in called
    assert "--ckpt-dir /data/models/checkpoints" in called


def test_a_replaced_entrypoint_starts_the_image_the_declared_way(docker_engine, own_image,
                                                                  workspace, tmp_path):
    inventory = _inventory(workspace, {"build": False, "name": own_image,
                                             "entrypoint": ["python3", "/opt/standin/app.py"]})
    _run(docker_engine, inventory, tmp_path).check()
    ids = docker_engine.run("ps", "-q", "--filter", "label=genai.service=forge-mine").stdout
    info = json.loads(docker_engine.run("inspect", *ids.split()).stdout)[0]
    assert info["Config"]["Entrypoint"] == ["python3", "/opt/standin/app.py"]
    assert docker_engine.run("exec", ids.split()[0], "test", "-e", "/tmp/start-mine.log",
                             check=False).returncode == 1  # the image's own script never ran
    assert docker_engine.http_get(f"http://127.0.0.1:{PORT}/internal/ping")[0] == 200


def test_own_image_reading_its_arguments_from_a_variable(docker_engine, own_image, workspace,
                                                         tmp_path):
    tag = "registry.example/forge-env:1.0"
    docker_engine.run("build", "-q", "-t", tag, "-", env={"DOCKER_BUILDKIT": "0"},
                      input=f"FROM {own_image}\nENTRYPOINT [\"/usr/local/bin/start-env\"]\n"
                            "CMD [\"--own-cmd\"]\n")
    inventory = _inventory(workspace, {"build": False, "name": tag, "entrypoint": "keep",
                                       "args_env": "CLI_ARGS"})
    _run(docker_engine, inventory, tmp_path).check()
    again = _run(docker_engine, inventory, tmp_path).check()
    assert _changed(again) == [], again.describe()
    assert docker_engine.http_get(f"http://127.0.0.1:{PORT}/internal/ping")[0] == 200
    ids = docker_engine.run("ps", "-q", "--filter", "label=genai.service=forge-mine").stdout
    called = docker_engine.run("exec", ids.split()[0], "cat", "/tmp/start-env.log").stdout
    assert "CLI_ARGS=--skip-prepare-environment" in called and "--port 7860" in called
    assert "CMD=--own-cmd CLI_ARGS" in called  # the image's own CMD stays
