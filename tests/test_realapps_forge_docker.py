"""The REAL Stable Diffusion WebUI Forge (not the stand-in) built from files/forge/Dockerfile and
run under the real lifecycle (tests/deploys/stack_lifecycle.py = the stack and verify steps of
deploys/forge.py), CPU only, on the test engine (tests/harness/docker_engine.py).

The build is offline, the way a user behind a mirror builds: the inventory's image settings
(base image, apt mirror, package index, PyTorch index and packages, git repository and ref, and
Forge's own installer settings: its four clones and CLIP) point at tests/harness/mirror.py.
With GENAI_UPSTREAM=real the same tests build from the real upstream URLs instead. Skipped, with
the reason, when neither is available (tests/harness/mirror.py, upstream_source).
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path

import pytest

from genai_workstation.stacks import lifecycle as lc
from tests.harness import forge_mirror as fm
from tests.harness import mirror as mr
from tests.harness import netns
from tests.harness.caddy import caddy_image
from tests.harness.pyinfra_run import run_pyinfra

UPSTREAM, SKIP_REASON = mr.upstream_source()
pytestmark = [pytest.mark.docker, pytest.mark.skipif(UPSTREAM is None, reason=SKIP_REASON)]

DEPLOY = "tests/deploys/stack_lifecycle.py"
PORT, PROXY_PORT = 18331, 18332
UID = 1  # the workstation user of these tests: `daemon`, an existing system user
PROXY_IMAGE = "local/caddy-standin:1"


@pytest.fixture(scope="module")
def mirror(docker_engine, tmp_path_factory):
    with mr.upstream_mirror(docker_engine, UPSTREAM, tmp_path_factory.mktemp("git"),
                            fm.forge_wheelhouse_of) as served:
        yield served


def _inventory(workspace: Path, mirror, base_image: str, proxy_image: str) -> dict:
    if mirror is None:
        image = {"ref": fm.FORGE_UPSTREAM_COMMIT,
                 "torch_index_url": "https://download.pytorch.org/whl/cpu"}
    else:
        image = {**mr.image_settings(mirror, base_image, "stable-diffusion-webui-forge",
                                     fm.FORGE_REF),
                 "torch_packages": fm.FORGE_TORCH, "installer_env": fm.forge_installer_env(mirror)}
    instance = {"name": "one", "port": PORT, "gpu": "none", "auth": {"type": "bearer"},
                "expose": {"address": "0.0.0.0", "port": PROXY_PORT}}
    stack = {"image": image, "health_timeout": 900, "proxy_image": proxy_image,
             "instances": [instance]}
    return {"hosts": {"local": {
        "connection": {"type": "local"},
        "user": {"name": "daemon", "uid": UID, "gid": 1},
        "workspace": str(workspace), "gpu": {"mode": "none"}, "history_keep": 3,
        "stacks": {"forge": stack},
    }}}


def _deploy(engine, forge: dict, inventory: dict | None = None):
    return run_pyinfra(DEPLOY, inventory or forge["inventory"], "--data",
                       "lifecycle_stack=forge", env=engine.env, secrets=forge["secrets"],
                       inventory_dir=forge["tmp"] / "inventory", timeout=3600)


def _changed(run) -> list[str]:
    return [name for names in run.changed_operations.values() for name in names]


def _api(engine, forge: dict, path: str) -> tuple[int | None, str]:
    """GET `path` of the exposed Forge, through the proxy, with the stack's token (the app's
    own port is not published when the instance is exposed)."""
    return _get(engine, f"http://127.0.0.1:{PROXY_PORT}{path}", forge["token"])


def _get(engine, url: str, token: str | None = None) -> tuple[int | None, str]:
    """GET from inside the engine's namespace, with a bearer token (read from stdin: never on
    a command line) when given."""
    code = ("import sys, urllib.request as u, urllib.error as e\n"
            "r = u.Request(sys.argv[1])\n"
            "if len(sys.argv) > 2:\n"
            " r.add_header('Authorization', 'Bearer ' + sys.stdin.read())\n"
            "try:\n x = u.urlopen(r, timeout=30); print(x.status); print(x.read().decode())\n"
            "except e.HTTPError as x:\n print(x.code); print(x.read().decode())\n")
    argv = [sys.executable, "-c", code, url] + (["token"] if token else [])
    result = engine.exec_in_netns(argv, input=token)
    status, _, body = result.stdout.partition("\n")
    return (int(status) if status.isdigit() else None), body + result.stderr


@pytest.fixture(scope="module")
def forge(docker_engine, mirror, tmp_path_factory):
    """The real Forge stack, deployed once for this module."""
    tmp_path = tmp_path_factory.mktemp("forge")
    token = f"forge-{secrets.token_urlsafe(24)}"  # made at run time, never in the repo
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text(f"FORGE_AUTH={token}\n")
    secrets_file.chmod(0o600)
    proxy = caddy_image(docker_engine, tmp_path_factory.mktemp("caddy"), PROXY_IMAGE)
    inventory = _inventory(tmp_path / "ws", mirror, docker_engine.base_image, proxy)
    forge = {"inventory": inventory, "workspace": tmp_path / "ws", "tmp": tmp_path,
             "secrets": secrets_file, "token": token}
    # The deploy's verify step checks the proxy at 127.0.0.1:PROXY_PORT from this machine, as
    # on a workstation; the published port lives in the engine's namespace: relay it.
    relay = netns.tcp_forward(None, PROXY_PORT, docker_engine.netns_path,
                              ("127.0.0.1", PROXY_PORT), "forge-proxy-relay")
    try:
        started = time.monotonic()
        forge["first"] = _deploy(docker_engine, forge).check()
        docker_engine.timings["forge_first_deploy"] = time.monotonic() - started
        yield forge
    finally:
        relay.close()


def _stack_dir(forge: dict) -> Path:
    return forge["workspace"] / "stacks" / "forge"


def test_real_forge_converges_healthy_then_zero_changes(docker_engine, forge):
    assert any("Stack forge" in name for name in _changed(forge["first"]))
    again = _deploy(docker_engine, forge).check()
    assert _changed(again) == [], again.describe()
    status, body = _api(docker_engine, forge, "/internal/ping")
    assert status == 200, body
    status, body = _api(docker_engine, forge, "/sdapi/v1/options")
    assert status == 200 and "sd_model_checkpoint" in json.loads(body), body[:2000]
    health = docker_engine.run("inspect", "--format", "{{.State.Health.Status}} {{.Config.User}}",
                               "genai-forge-forge-one-1").stdout.split()
    assert health == ["healthy", f"{UID}:1"], health


def _cmd_flags(engine, token: str | None) -> tuple[int | None, dict]:
    """/sdapi/v1/cmd-flags through the proxy: (status, its JSON answer)."""
    status, body = _get(engine, f"http://127.0.0.1:{PROXY_PORT}/sdapi/v1/cmd-flags", token)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {"text": body}


def test_real_forge_runs_the_rendered_flags_on_the_cpu(docker_engine, forge):
    """The product's device probe (the GPU check's, for Forge: its `Device:` log line) reads
    the CPU. Forge's /sdapi/v1/cmd-flags shows the flags it parsed, inside an error: at this
    commit it answers 500 whenever --port is given (an int where its response model, built
    from the parser's defaults, expects a str; pydantic 2 does not convert) and for
    --controlnet-dir (a Path): the body still echoes every flag (hence no credentials on a
    command line, AUTOMATIC1111#17411)."""
    stack_dir = _stack_dir(forge)
    result = docker_engine.exec_in_netns(
        f"cd {stack_dir} && {lc.device_probe_command('forge-one', 'forge')}", timeout=120)
    assert "@@genai:device cpu" in result.stdout, result.stdout + result.stderr
    status, answer = _cmd_flags(docker_engine, forge["token"])
    assert status == 500 and answer["error"] == "ResponseValidationError", answer
    assert answer["message"].startswith("2 validation errors"), answer["message"]
    assert "('response', 'port')" in answer["message"]
    assert "('response', 'controlnet_dir')" in answer["message"]
    flags = answer["body"]
    assert flags["always_cpu"] is True and flags["api"] is True and flags["port"] == 7860
    assert flags["text_encoder_dir"] == "/data/models/text_encoders"
    assert flags["data_dir"] == "/data/forge"
    assert forge["token"] not in json.dumps(answer)


def test_cmd_flags_behind_the_proxy_need_credentials(docker_engine, forge):
    """Exposed: Forge's own port is not published (only the proxy's); the proxy answers 401
    without the token or with a wrong one, and passes the right one to Forge."""
    assert docker_engine.http_get(f"http://127.0.0.1:{PORT}/internal/ping")[0] is None
    assert _cmd_flags(docker_engine, None)[0] == 401
    assert _cmd_flags(docker_engine, "not-the-token-0123456789")[0] == 401
    status, answer = _cmd_flags(docker_engine, forge["token"])
    assert status == 500 and answer["body"]["api"] is True  # Forge's own answer (see above)
    assert _get(docker_engine, f"http://127.0.0.1:{PROXY_PORT}/sdapi/v1/options")[0] == 401
    status, body = _api(docker_engine, forge, "/sdapi/v1/options")
    assert status == 200 and "sd_model_checkpoint" in json.loads(body)


def test_broken_config_is_rolled_back_while_the_real_forge_keeps_serving(docker_engine, forge):
    """A flag Forge's argparse rejects (`--ckpt` needs a value; the render cannot know that
    the value is missing): Forge exits, the previous real config comes back and answers."""
    stack_dir = _stack_dir(forge)
    deployed = (stack_dir / lc.DEPLOYED_HASH_FILE).read_text().strip()
    broken = json.loads(json.dumps(forge["inventory"]))
    broken["hosts"]["local"]["stacks"]["forge"]["instances"][0]["extra_args"] = ["--ckpt"]
    broken["hosts"]["local"]["stacks"]["forge"]["health_timeout"] = 120
    failed = _deploy(docker_engine, forge, broken)
    assert failed.returncode != 0
    assert "ROLLED BACK stack forge" in failed.stderr, failed.describe()
    assert "argument --ckpt: expected one argument" in failed.stderr, failed.describe()
    assert (stack_dir / lc.DEPLOYED_HASH_FILE).read_text().strip() == deployed
    assert _api(docker_engine, forge, "/internal/ping")[0] == 200
    again = _deploy(docker_engine, forge).check()
    assert _changed(again) == [], again.describe()
