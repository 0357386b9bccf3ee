"""The REAL ComfyUI (not the stand-in) built from files/comfyui/Dockerfile and run under the
real lifecycle (tests/deploys/stack_lifecycle.py = the stack and verify steps of
deploys/comfyui.py), CPU only, on the test engine (tests/harness/docker_engine.py).

The build is offline, the way a user behind a mirror builds: the inventory's image settings
(base image, apt mirror, package index, PyTorch index, git repository and ref, custom node)
point at tests/harness/mirror.py (wheelhouse from pip, git bundles of ../shared/upstream).
With GENAI_UPSTREAM=real the same tests build from the real upstream URLs instead. Skipped,
with the reason, when neither is available (tests/harness/mirror.py, upstream_source).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from pathlib import Path

import pytest
import yaml

from genai_workstation.stacks import lifecycle as lc
from tests.harness import mirror as mr
from tests.harness.pyinfra_run import run_pyinfra

UPSTREAM, SKIP_REASON = mr.upstream_source()
pytestmark = [pytest.mark.docker, pytest.mark.skipif(UPSTREAM is None, reason=SKIP_REASON)]

DEPLOY = "tests/deploys/stack_lifecycle.py"
PORT = 18321
UID = 1  # the workstation user of these tests: `daemon`, an existing system user


@pytest.fixture(scope="module")
def mirror(docker_engine, tmp_path_factory):
    with mr.upstream_mirror(docker_engine, UPSTREAM, tmp_path_factory.mktemp("git"),
                            mr.comfyui_wheelhouse) as served:
        yield served


def _inventory(workspace: Path, mirror, base_image: str, **comfyui) -> dict:
    if mirror is None:  # GENAI_UPSTREAM=real
        image = {"ref": mr.COMFYUI_REF, "torch_index_url": "https://download.pytorch.org/whl/cpu"}
        login = {"url": mr.LOGIN_UPSTREAM_URL, "ref": mr.LOGIN_UPSTREAM_COMMIT}
    else:
        image = mr.image_settings(mirror, base_image, "ComfyUI", mr.COMFYUI_REF)
        login = {"url": f"{mirror.url}/git/ComfyUI-Login.git", "ref": mr.LOGIN_REF}
    stack = {"port": PORT, "gpu": "none", "health_timeout": 300, "image": image,
             "custom_nodes": [login], **comfyui}
    return {"hosts": {"local": {
        "connection": {"type": "local"},
        "user": {"name": "daemon", "uid": UID, "gid": 1},
        "workspace": str(workspace), "gpu": {"mode": "none"}, "history_keep": 3,
        "stacks": {"comfyui": stack},
    }}}


def _deploy(engine, inventory: dict, tmp_path: Path, *args: str):
    return run_pyinfra(DEPLOY, inventory, "--data", "lifecycle_stack=comfyui", *args,
                       env=engine.env, inventory_dir=tmp_path / "inventory", timeout=2400)


def _changed(run) -> list[str]:
    return [name for names in run.changed_operations.values() for name in names]


def _call(engine, url: str, token: str = "", payload: dict | None = None,
          form: dict | None = None) -> tuple[int | None, str]:
    """(status, body) of GET `url`, or POST of `payload` (JSON) or `form`, from the engine's
    namespace, with ComfyUI-Login's token the way the stack's probes send it: a Bearer header
    (token and body from stdin, never on a command line), or `?token=` before a password is set."""
    code = ("import json, sys, urllib.request as u, urllib.error as e, urllib.parse as p\n"
            "url, kind = sys.argv[1], sys.argv[2]; i = json.load(sys.stdin); t = i['t']\n"
            "h = {'Authorization': 'Bearer ' + t} if t else {}\n"
            "url += '' if t else ('&' if '?' in url else '?') + 'token='\n"
            "data = None\n"
            "if kind == 'json': data = json.dumps(i['b']).encode(); h['Content-Type'] = "
            "'application/json'\n"
            "if kind == 'form': data = p.urlencode(i['b']).encode()\n"
            "class N(u.HTTPRedirectHandler):\n"
            " def redirect_request(self, *a): return None\n"
            "try:\n x = u.build_opener(N).open(u.Request(url, data=data, headers=h), timeout=30)\n"
            " print(x.status); print(x.read().decode(errors='replace'))\n"
            "except e.HTTPError as x:\n print(x.code); print(x.read().decode(errors='replace'))\n")
    kind, body = ("json", payload) if payload is not None else ("form", form)
    result = engine.exec_in_netns([sys.executable, "-c", code, url,
                                   kind if body is not None else "get"],
                                  input=json.dumps({"t": token, "b": body}))
    status, _, out = result.stdout.partition("\n")
    return (int(status) if status.isdigit() else None), out + result.stderr


def _token(comfyui) -> str:
    """ComfyUI-Login's token: the first line of its PASSWORD, in the workspace (a mount)."""
    password = comfyui["workspace"] / "comfyui-login" / "PASSWORD"
    return password.read_text().splitlines()[0].strip() if password.exists() else ""


def _app(engine, comfyui, path: str, **kwargs) -> tuple[int | None, str]:
    return _call(engine, f"http://127.0.0.1:{PORT}{path}", _token(comfyui), **kwargs)


@pytest.fixture(scope="module")
def comfyui(docker_engine, mirror, tmp_path_factory):
    """The real ComfyUI stack, deployed once for this module: (inventory, workspace, run)."""
    tmp_path = tmp_path_factory.mktemp("comfyui")
    workspace = tmp_path / "ws"
    inventory = _inventory(workspace, mirror, docker_engine.base_image, idle_unload_minutes=1)
    started = time.monotonic()
    first = _deploy(docker_engine, inventory, tmp_path).check()
    docker_engine.timings["comfyui_first_deploy"] = time.monotonic() - started
    return {"inventory": inventory, "workspace": workspace, "tmp": tmp_path, "first": first}


def test_real_comfyui_converges_healthy_then_zero_changes(docker_engine, comfyui):
    first = comfyui["first"]
    assert any("Stack comfyui" in name for name in _changed(first))
    if "genai: built genai-workstation/comfyui:" in first.stderr:  # not when the image was cached
        assert re.search(r"genai: build genai-workstation/comfyui:\w+ \[\d+ s\] Step 1/\d+ :",
                         first.stderr), first.stderr[-3000:]
    again = _deploy(docker_engine, comfyui["inventory"], comfyui["tmp"]).check()
    assert _changed(again) == [], again.describe()
    status, body = _app(docker_engine, comfyui, "/system_stats")
    assert status == 200, body
    stats = json.loads(body)
    assert stats["system"]["comfyui_version"] == mr.COMFYUI_REF.lstrip("v")
    if UPSTREAM != mr.REAL:  # the real CPU index serves its newest torch
        assert stats["system"]["pytorch_version"].startswith("2.13.0")
    image = docker_engine.run("compose", "--project-directory",
                              str(comfyui["workspace"] / "stacks" / "comfyui"), "images",
                              "--format", "json").stdout
    assert "genai-workstation/comfyui" in image


def test_comfyui_login_loads_and_the_probes_send_its_token(docker_engine, comfyui):
    """ComfyUI-Login (from the inventory's custom_nodes, requirements baked at build time)
    loads as the workstation user: it writes .secret-key.txt into its own folder (writable
    from the build) and keeps PASSWORD in <comfyui>/login (<workspace>/comfyui-login). Its
    middleware then answers 401 without its token; the compose healthcheck and the device
    probe read the token from that file in the container and still pass, before a password
    is set (`?token=`: the node's token is empty) and after (Bearer)."""
    stack_dir = comfyui["workspace"] / "stacks" / "comfyui"
    logs = docker_engine.compose(stack_dir, "logs", "--no-color", "comfyui").stdout
    # ComfyUI lists each custom node's import time, `(IMPORT FAILED): <path>` when it failed
    assert " seconds: /opt/comfyui/custom_nodes/ComfyUI-Login" in logs, logs[-3000:]
    assert "Permission denied" not in logs, logs[-3000:]
    url = f"http://127.0.0.1:{PORT}"
    status, page = _call(docker_engine, f"{url}/login")  # its own route, exempt
    assert status == 200 and "password" in page.lower(), page[:500]
    assert _call(docker_engine, f"{url}/system_stats", "not-the-token")[0] == 401
    compose = yaml.safe_load((stack_dir / "compose.yaml").read_text())
    health = compose["services"]["comfyui"]["healthcheck"]["test"]
    probe = lc.device_probe_command("comfyui", "comfyui", "http://127.0.0.1:8188/system_stats")

    def probes_pass() -> None:
        ran = docker_engine.compose(stack_dir, "exec", "-T", "comfyui", *health[1:],
                                    check=False)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        out = docker_engine.exec_in_netns(f"cd {stack_dir} && {probe}", timeout=120).stdout
        assert "@@genai:device cpu" in out, out

    assert _token(comfyui) == ""
    probes_pass()
    form = {"username": "genai-tests", "password": secrets.token_urlsafe(16)}
    status, _ = _call(docker_engine, f"{url}/login", "", form=form)
    assert status == 302  # to /, logged in: the node wrote its PASSWORD
    password = comfyui["workspace"] / "comfyui-login" / "PASSWORD"
    assert password.stat().st_uid == UID and _token(comfyui).startswith("$2b$")
    comfyui["password_set"] = time.time()
    assert _call(docker_engine, f"{url}/system_stats", "")[0] == 401  # `?token=` no more
    assert _app(docker_engine, comfyui, "/system_stats")[0] == 200
    probes_pass()
    inspect = docker_engine.compose(stack_dir, "ps", "--format", "json", "comfyui").stdout
    assert "healthy" in inspect and "unhealthy" not in inspect, inspect


def test_cpu_mode_device_probe_reads_cpu_from_the_real_app(docker_engine, comfyui):
    """The product's own device probe (the GPU check's) against the real /system_stats."""
    stack_dir = comfyui["workspace"] / "stacks" / "comfyui"
    command = lc.device_probe_command("comfyui", "comfyui",
                                      "http://127.0.0.1:8188/system_stats")
    result = docker_engine.exec_in_netns(f"cd {stack_dir} && {command}", timeout=120)
    assert "@@genai:device cpu" in result.stdout, result.stdout + result.stderr
    logs = docker_engine.compose(stack_dir, "logs", "--no-color", "comfyui").stdout
    assert "Device: cpu" in logs


def test_real_workflow_writes_a_png_owned_by_the_workstation_user(docker_engine, comfyui):
    prompt = {"1": {"class_type": "EmptyImage",
                    "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0x3366CC}},
              "2": {"class_type": "SaveImage",
                    "inputs": {"images": ["1", 0], "filename_prefix": "genai-real"}}}
    status, body = _app(docker_engine, comfyui, "/prompt",
                        payload={"prompt": prompt, "client_id": "genai-tests"})
    assert status == 200, body
    prompt_id = json.loads(body)["prompt_id"]
    deadline, entry = time.monotonic() + 120, {}
    while time.monotonic() < deadline:
        status, body = _app(docker_engine, comfyui, f"/history/{prompt_id}")
        entry = json.loads(body).get(prompt_id, {}) if status == 200 else {}
        if entry.get("status", {}).get("completed"):
            break
        time.sleep(1)
    assert entry.get("status", {}).get("status_str") == "success", entry
    saved = entry["outputs"]["2"]["images"][0]
    png = comfyui["workspace"] / "output" / saved["subfolder"] / saved["filename"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_uid == UID


def test_idle_unload_sidecar_calls_the_real_free_endpoint(docker_engine, comfyui):
    stack_dir = comfyui["workspace"] / "stacks" / "comfyui"
    since = str(int(comfyui.get("password_set", 0)))  # its calls with the Bearer token
    deadline, logs = time.monotonic() + 240, ""
    while time.monotonic() < deadline:
        logs = docker_engine.compose(stack_dir, "logs", "--no-color", "--since", since,
                                     "idle-unload").stdout
        if "POST /free" in logs:
            break
        time.sleep(5)
    assert "POST /free -> 200" in logs, logs


def test_broken_config_is_rolled_back_while_the_real_app_keeps_serving(docker_engine, comfyui):
    """An unknown flag (ComfyUI's argparse exits 2) never becomes healthy: the previous real
    config comes back, and ComfyUI answers again."""
    stack_dir = comfyui["workspace"] / "stacks" / "comfyui"
    deployed = (stack_dir / lc.DEPLOYED_HASH_FILE).read_text().strip()
    broken = json.loads(json.dumps(comfyui["inventory"]))
    broken["hosts"]["local"]["stacks"]["comfyui"]["extra_args"] = ["--no-such-flag"]
    failed = _deploy(docker_engine, broken, comfyui["tmp"])
    assert failed.returncode != 0
    assert "ROLLED BACK stack comfyui" in failed.stderr, failed.describe()
    assert "unrecognized arguments: --no-such-flag" in failed.stderr
    assert (stack_dir / lc.DEPLOYED_HASH_FILE).read_text().strip() == deployed
    assert _token(comfyui)  # ComfyUI-Login's PASSWORD outlived the recreated containers
    assert _app(docker_engine, comfyui, "/system_stats")[0] == 200
    again = _deploy(docker_engine, comfyui["inventory"], comfyui["tmp"]).check()
    assert _changed(again) == [], again.describe()


def test_failed_build_shows_its_step_and_the_running_stack_keeps_serving(docker_engine, comfyui):
    """A ref the mirror does not have: the build fails at its git step, the run prints that
    step and git's error, and the ComfyUI that was running still answers (build before up)."""
    stack_dir = comfyui["workspace"] / "stacks" / "comfyui"
    deployed = (stack_dir / lc.DEPLOYED_HASH_FILE).read_text().strip()
    broken = json.loads(json.dumps(comfyui["inventory"]))
    broken["hosts"]["local"]["stacks"]["comfyui"]["image"]["ref"] = "v0.0.0-no-such-ref"
    failed = _deploy(docker_engine, broken, comfyui["tmp"])
    assert failed.returncode != 0
    assert "genai: image build FAILED for genai-workstation/comfyui:" in failed.stderr
    assert 'at: Step' in failed.stderr and 'checkout --detach "${COMFYUI_REF}"' in failed.stderr
    assert "--- last 30 lines of the build log ---" in failed.stderr, failed.describe()
    assert "v0.0.0-no-such-ref" in failed.stderr and "returned a non-zero code" in failed.stderr
    assert (stack_dir / lc.DEPLOYED_HASH_FILE).read_text().strip() == deployed
    assert _app(docker_engine, comfyui, "/system_stats")[0] == 200
