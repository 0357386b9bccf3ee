"""The Docker test engine (tests/harness/docker_engine.py) and the STAND-IN app (tests/standin/).

Proves: Compose v2 `up -d --wait` with a healthcheck, `ps --format json` health, a port
published on 127.0.0.1 inside the engine's namespace only, a fast `down` with `init: true`, and
the stand-in's ComfyUI/Forge answers, GPU pinning and failure modes.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

pytestmark = pytest.mark.docker

HEALTH = ("import sys, urllib.request; r = urllib.request.urlopen("
          "'http://127.0.0.1:{port}{path}', timeout=8); sys.exit(0 if r.status == 200 else 1)")
GPUS = "NVIDIA GeForce RTX 3090,NVIDIA GeForce RTX 3080"


def _project(folder, image: str, port: int, command: list[str], env: dict | None = None,
             internal: int = 8188, path: str = "/system_stats", start: str = "10s") -> None:
    """A compose project shaped like the product's (init, healthcheck with `python`)."""
    folder.mkdir(parents=True, exist_ok=True)
    service = {
        "image": image, "pull_policy": "never", "init": True, "user": "1:1",
        "command": command, "environment": env or {},
        "ports": [f"127.0.0.1:{port}:{internal}"],
        "healthcheck": {"test": ["CMD", "python", "-c", HEALTH.format(port=internal, path=path)],
                        "interval": "1s", "timeout": "5s", "retries": 3, "start_period": start},
    }
    # JSON is YAML: no quoting surprises
    (folder / "compose.yaml").write_text(json.dumps({"services": {"app": service}}, indent=2))


def _ps(engine, folder) -> list[dict]:
    out = engine.compose(folder, "ps", "--all", "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _refused_from_host(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(3)
        try:
            sock.connect((address, port))
        except (ConnectionRefusedError, TimeoutError, OSError):
            return True
    return False


@pytest.fixture(scope="module")
def comfy(docker_engine, standin_image, tmp_path_factory):
    """The stand-in as ComfyUI, up and healthy, pinned to the second fake card."""
    folder = tmp_path_factory.mktemp("comfy")
    port = 18411
    _project(folder, standin_image, port,
             ["--listen", "0.0.0.0", "--port", "8188", "--disable-auto-launch",
              "--cuda-device", "1", "--unknown-flag", "x"],
             env={"STANDIN_GPUS": GPUS, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    started = time.monotonic()
    docker_engine.compose(folder, "up", "-d", "--wait", "--wait-timeout", "60")
    docker_engine.timings["compose_up_wait"] = time.monotonic() - started
    yield folder, port
    started = time.monotonic()
    docker_engine.compose(folder, "down", "--timeout", "10")
    docker_engine.timings["compose_down"] = time.monotonic() - started


def test_engine_answers_in_its_own_namespace(docker_engine):
    info = json.loads(docker_engine.run("info", "--format", "{{json .}}").stdout)
    assert info["DockerRootDir"] == str(docker_engine.data_root)
    version = docker_engine.run("compose", "version").stdout
    assert "Docker Compose version v2" in version
    links = docker_engine.exec_in_netns(["ip", "-br", "link"], check=True).stdout
    assert "docker0" in links
    host_links = docker_engine.exec_in_netns(["true"], check=True)  # nsenter works
    assert host_links.returncode == 0
    assert docker_engine.env["DOCKER_HOST"] == f"unix://{docker_engine.socket}"


def test_base_image_is_local_and_has_python(docker_engine, base_image):
    assert base_image == "local/bookworm-py:1"
    out = docker_engine.run("run", "--rm", "--network", "none", base_image, "python3", "-c",
                            "import http.server, sys; print(sys.version_info[0])").stdout
    assert out.strip() == "3"


def test_compose_up_wait_healthy_and_loopback_only(docker_engine, comfy):
    folder, port = comfy
    rows = _ps(docker_engine, folder)
    assert [(r["Service"], r["State"], r["Health"]) for r in rows] == [("app", "running",
                                                                        "healthy")]
    status, body = docker_engine.http_get(f"http://127.0.0.1:{port}/system_stats")
    assert status == 200, body
    stats = json.loads(body)
    # the pin (--cuda-device 1 with PCI order) selects the second fake card, seen as cuda:0
    assert stats["devices"][0]["name"] == "cuda:0 NVIDIA GeForce RTX 3080 : cudaMallocAsync"
    assert stats["devices"][0]["type"] == "cuda" and stats["devices"][0]["index"] == 0
    assert "--cuda-device" in stats["system"]["argv"]
    for path in ("/api/system_stats", "/queue", "/api/queue", "/models/checkpoints"):
        assert docker_engine.http_get(f"http://127.0.0.1:{port}{path}")[0] == 200, path
    post = docker_engine.exec_in_netns(
        ["python3", "-c", "import urllib.request as u; print(u.urlopen(u.Request("
         f"'http://127.0.0.1:{port}/free', data=b'{{}}', method='POST')).status)"], check=True)
    assert post.stdout.strip() == "200"
    # bound on the namespace's 127.0.0.1 only: not on its veth address, not on this machine
    assert docker_engine.http_get(f"http://{docker_engine.ns_addr}:{port}/system_stats")[0] is None
    assert _refused_from_host(docker_engine.ns_addr, port)
    assert _refused_from_host("127.0.0.1", port)
    logs = docker_engine.compose(folder, "logs", "--no-color", "app").stdout
    assert "Device: cuda:0 NVIDIA GeForce RTX 3080" in logs and "STAND-IN" in logs


def test_down_is_fast_with_init(docker_engine, standin_image, tmp_path):
    folder = tmp_path / "fast"
    _project(folder, standin_image, 18412, ["--listen", "--port", "8188"])
    docker_engine.compose(folder, "up", "-d", "--wait", "--wait-timeout", "60")
    started = time.monotonic()
    docker_engine.compose(folder, "down")
    took = time.monotonic() - started
    assert took < 5, f"down took {took:.1f} s"
    assert _ps(docker_engine, folder) == []


def test_standin_as_forge_with_fastest_first_order(docker_engine, standin_image, tmp_path):
    """Without CUDA_DEVICE_ORDER=PCI_BUS_ID the same pin lands on the other card."""
    folder = tmp_path / "forge"
    command = ["--skip-prepare-environment", "--skip-install", "--listen", "--port", "7860",
               "--api", "--ckpt-dir", "/data/models/checkpoints", "--gpu-device-id", "1"]
    _project(folder, standin_image, 18413, command, internal=7860, path="/internal/ping",
             env={"STANDIN_GPUS": GPUS, "STANDIN_FASTEST_FIRST": "1,0"})
    docker_engine.compose(folder, "up", "-d", "--wait", "--wait-timeout", "60")
    try:
        base = "http://127.0.0.1:18413"
        status, body = docker_engine.http_get(f"{base}/sdapi/v1/memory")
        assert status == 200
        assert json.loads(body)["cuda"]["system"]["total"] == 24576 * 1024 * 1024  # the 3090
        assert docker_engine.http_get(f"{base}/sdapi/v1/sd-models") == (200, "[]")
        flags = json.loads(docker_engine.http_get(f"{base}/sdapi/v1/cmd-flags")[1])
        assert flags["gpu_device_id"] == "1" and flags["api"] is True
        logs = docker_engine.compose(folder, "logs", "--no-color", "--no-log-prefix").stdout
        assert "Device: cuda:0 NVIDIA GeForce RTX 3090 : native" in logs
    finally:
        docker_engine.compose(folder, "down")


def test_standin_failure_modes(docker_engine, standin_image, tmp_path):
    failing = docker_engine.standin_variant(STANDIN_FAIL="1")
    run = docker_engine.run("run", "--rm", "--network", "none", failing, check=False)
    assert run.returncode == 3 and "STANDIN_FAIL" in run.stdout
    wrong_pin = docker_engine.run("run", "--rm", "--network", "none", "-e", f"STANDIN_GPUS={GPUS}",
                                  standin_image, "--cuda-device", "5", check=False)
    assert wrong_pin.returncode == 1 and "No CUDA GPUs are available" in wrong_pin.stdout

    folder = tmp_path / "sick"
    _project(folder, standin_image, 18414, ["--listen"], env={"STANDIN_FAIL": "500"},
             start="0s")
    up = docker_engine.compose(folder, "up", "-d", "--wait", "--wait-timeout", "20", check=False)
    try:
        assert up.returncode != 0
        assert [r["Health"] for r in _ps(docker_engine, folder)] == ["unhealthy"]
    finally:
        docker_engine.compose(folder, "down")


def test_stub_nvidia_driver_lets_gpu_reservations_start(docker_engine, standin_image, tmp_path):
    """Compose GPU reservations start on this GPU-less engine; the stub hook records them."""
    if not docker_engine.nvidia_stub:
        pytest.skip("GENAI_TEST_DOCKER_NVIDIA_STUB=0")
    folder = tmp_path / "gpu"
    _project(folder, standin_image, 18415, ["--listen"])
    spec = json.loads((folder / "compose.yaml").read_text())
    spec["services"]["app"]["deploy"] = {"resources": {"reservations": {"devices": [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}}
    (folder / "compose.yaml").write_text(json.dumps(spec))
    docker_engine.compose(folder, "up", "-d", "--wait", "--wait-timeout", "60")
    try:
        container = docker_engine.compose(folder, "ps", "-q", "app").stdout.strip()
        requests = [r for r in docker_engine.nvidia_requests() if r["id"] == container]
        assert requests and requests[0]["env"]["NVIDIA_VISIBLE_DEVICES"] == "all", requests
    finally:
        docker_engine.compose(folder, "down")
