"""Bad inventory input fails through the real `pyinfra inventory.py` CLI before any connection."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))

GOOD_HOST = """
hosts:
  ws1:
    connection: {type: ssh, host: 203.0.113.7, port: 22, user: root}
    workspace: /srv/genai
"""


def run_cli(tmp_path: Path, yaml_text: str, secrets: str | None = None, secrets_mode=0o600,
            env_extra: dict | None = None) -> subprocess.CompletedProcess:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(textwrap.dedent(yaml_text))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_TOKEN")}
    env["GENAI_INVENTORY"] = str(inventory)
    env["GENAI_SECRETS"] = str(tmp_path / "secrets.env")
    if secrets is not None:
        path = tmp_path / "secrets.env"
        path.write_text(secrets)
        path.chmod(secrets_mode)
    env.update(env_extra or {})
    # 203.0.113.0/24 is TEST-NET-3: if validation let it through, the run would try to connect
    # there; the assertions below prove it never got that far.
    return subprocess.run([PYINFRA, "-y", "inventory.py", "fact", "server.Hostname"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)


CASES = {
    "wrong type": (
        """
        hosts:
          ws1:
            workspace: /srv/genai
            stacks: {comfyui: {port: "eighty"}}
        """,
        ["hosts.ws1.stacks.comfyui.port", "'eighty' is text, expected a whole number"],
    ),
    "port out of range": (
        """
        hosts:
          ws1:
            stacks: {comfyui: {port: 70000}}
        """,
        ["hosts.ws1.stacks.comfyui.port", "70000 is out of range", "from 1 to 65535"],
    ),
    "duplicate published port": (
        """
        hosts:
          ws1:
            stacks:
              comfyui: {port: 17861}
              forge:
                instances:
                  - {name: myia, port: 36525}
                  - {name: myia-turbo, port: 17861}
        """,
        ["hosts.ws1.stacks.forge.instances.1.port", "port 17861 is already published by "
         "hosts.ws1.stacks.comfyui.port"],
    ),
    "typo with did-you-mean": (
        """
        hosts:
          ws1:
            worksapce: /srv/genai
        """,
        ["hosts.ws1.worksapce", "unknown key 'worksapce'", "did you mean 'workspace'?"],
    ),
    "workspace on /mnt/c": (
        """
        hosts:
          ws1:
            workspace: /mnt/c/Users/jesse/SD/workspace
        """,
        ["hosts.ws1.workspace", "Windows drive", "9p", "Operation not permitted"],
    ),
    "workspace as UNC path": (
        r"""
        hosts:
          ws1:
            workspace: '\\wsl.localhost\Ubuntu\home\jesse\SD\workspace'
        """,
        ["hosts.ws1.workspace", "UNC", "chmod/chown do not stick"],
    ),
    "models on C: drive": (
        r"""
        hosts:
          ws1:
            models_dir: 'D:\Production\models'
        """,
        ["hosts.ws1.models_dir", "Windows drive path", "ext4"],
    ),
    "relative path": (
        """
        defaults:
          workspace: genai/workspace
        hosts:
          ws1: {}
        """,
        ["defaults.workspace", "'genai/workspace' is a relative path", "absolute path"],
    ),
    "unknown stack": (
        """
        hosts:
          ws1:
            stacks: {comfy: {port: 8188}}
        """,
        ["hosts.ws1.stacks.comfy", "unknown key 'comfy'", "did you mean 'comfyui'?"],
    ),
    "token in yaml": (
        """
        hosts:
          ws1:
            stacks:
              custom:
                music: {template_dir: /nonexistent, vars: {token: hf_abcdefghijklmnopqrstuvwxy}}
        """,
        ["hosts.ws1.stacks.custom.music.vars.token", "looks like a Hugging Face token",
         "HF_TOKEN=<value> in secrets.env"],
    ),
    "missing secret for auth": (
        """
        hosts:
          ws1:
            stacks:
              comfyui:
                expose: {address: 0.0.0.0}
                auth: {type: basic}
        """,
        ["hosts.ws1.stacks.comfyui.auth", "needs the secret COMFYUI_AUTH", "chmod 600"],
    ),
    "missing civitai token": (
        """
        hosts:
          ws1:
            models:
              - {civitai: 128713, folder: checkpoints}
        """,
        ["hosts.ws1.models.0.civitai", "CIVITAI_TOKEN"],
    ),
    "expose without auth": (
        """
        hosts:
          ws1:
            stacks:
              comfyui: {expose: {address: 0.0.0.0}}
        """,
        ["hosts.ws1.stacks.comfyui.expose", "without authentication", "comfyui.auth"],
    ),
    "unknown model folder": (
        """
        hosts:
          ws1:
            models:
              - {url: "https://example.org/x.safetensors", folder: lora}
        """,
        ["hosts.ws1.models.0.folder", "not a ComfyUI model folder", "did you mean 'loras'?"],
    ),
    "group names an unknown host": (
        """
        groups:
          gpu_boxes: {hosts: [ws2]}
        hosts:
          ws1: {}
        """,
        ["groups.gpu_boxes.hosts.0", "'ws2' is not a host", "did you mean 'ws1'?"],
    ),
    "bad enum": (
        """
        hosts:
          ws1:
            docker: {source: snap}
        """,
        ["hosts.ws1.docker.source", "'snap' is not one of the allowed values",
         "distro, docker-ce, desktop"],
    ),
    "custom stack named like a built-in": (
        """
        hosts:
          ws1:
            stacks:
              custom:
                forge: {template_dir: /srv/mine}
        """,
        ["hosts.ws1.stacks.custom.forge", "the name 'forge' is not allowed", "built-in stacks"],
    ),
    "duplicate key": (
        """
        hosts:
          ws1:
            workspace: /srv/a
            workspace: /srv/b
        """,
        ["hosts.ws1.workspace", "appears twice"],
    ),
    "toolkit version not a version": (
        """
        hosts:
          ws1:
            nvidia_toolkit: {version: latest}
        """,
        ["hosts.ws1.nvidia_toolkit.version", "'latest' does not have the expected form",
         "fix: write a full version such as 1.17.8"],
    ),
    "forge instance without port": (
        """
        hosts:
          ws1:
            stacks: {forge: {instances: [{name: myia}]}}
        """,
        ["hosts.ws1.stacks.forge.instances.0: the required key 'port' is missing",
         "fix: add `port:` with a port number from 1 to 65535"],
    ),
    "version read as a number": (
        """
        hosts:
          ws1:
            nvidia_toolkit: {version: 1.17}
        """,
        ["1.17 is a number, expected text", "put it in quotes"],
    ),
    "yaml syntax": (
        """
        hosts:
          ws1: {workspace: /srv/a
        """,
        ["not valid YAML"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_before_any_host_is_contacted(tmp_path, case):
    yaml_text, expected = CASES[case]
    result = run_cli(tmp_path, yaml_text)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert "inv.yaml" in result.stderr  # names the file
    assert "no host was contacted" in result.stderr
    assert "Connecting" not in output and "203.0.113.7" not in output
    for text in expected:
        assert text in result.stderr, f"{text!r} missing from:\n{result.stderr}"


def test_error_points_at_the_line(tmp_path):
    result = run_cli(tmp_path, "hosts:\n  ws1:\n    stacks:\n      comfyui: {port: 0}\n")
    assert "inv.yaml:4: hosts.ws1.stacks.comfyui.port: 0 is out of range" in result.stderr


def test_secrets_file_readable_by_others_is_refused(tmp_path):
    result = run_cli(tmp_path, GOOD_HOST, secrets="HF_TOKEN=" + "hf_x\n", secrets_mode=0o644)
    assert result.returncode == 2
    assert "readable by others (mode 0644)" in result.stderr
    assert "chmod 600" in result.stderr
    assert "hf_x" not in result.stdout + result.stderr


def test_secret_from_file_satisfies_auth_and_never_shows(tmp_path):
    yaml_text = """
    hosts:
      ws1:
        connection: {type: local}
        stacks:
          comfyui: {expose: {address: 0.0.0.0}, auth: {type: basic}}
    """
    secret = "s3cret-Pa55word-for-test"
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(textwrap.dedent(yaml_text))
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"# auth for comfyui\nCOMFYUI_AUTH='{secret}'\n")
    secrets.chmod(0o600)
    env = dict(os.environ, GENAI_INVENTORY=str(inventory), GENAI_SECRETS=str(secrets))
    result = subprocess.run([PYINFRA, "-y", "inventory.py", "debug-inventory"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "COMFYUI_AUTH" in output  # the inventory dump lists the secret's name...
    assert secret not in output  # ...never its value


def test_environment_wins_and_satisfies_required_secret(tmp_path):
    yaml_text = """
    hosts:
      ws1:
        connection: {type: local}
        models:
          - {civitai: 128713, folder: checkpoints}
    """
    result = run_cli(tmp_path, yaml_text, env_extra={"CIVITAI_TOKEN": "0123abcd" * 4})
    assert result.returncode == 0, result.stderr


def test_shipped_inventories_are_valid(tmp_path):
    shipped = [REPO / "inventory" / "workstation.yaml", *sorted((REPO / "inventory" /
                                                                 "examples").glob("*.yaml"))]
    for path in shipped:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_TOKEN")}
        env.update(GENAI_INVENTORY=str(path), GENAI_SECRETS=str(tmp_path / "example.env"))
        example_secrets = tmp_path / "example.env"
        example_secrets.write_text("COMFYUI_AUTH=x\nFORGE_AUTH=x\nCIVITAI_TOKEN=x\nHF_TOKEN=x\n")
        example_secrets.chmod(0o600)
        result = subprocess.run([PYINFRA, "-y", "inventory.py", "debug-inventory"], cwd=REPO,
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (path, result.stderr)
        assert "--> Groups: workstations" in result.stdout + result.stderr, result.stdout


def test_connection_types_map_to_pyinfra_hosts(tmp_path):
    from genai_workstation.loader import load_inventory

    inventory = tmp_path / "inv.yaml"
    inventory.write_text(textwrap.dedent("""
        groups:
          lab: {hosts: [ws2, rehearsal]}
        hosts:
          ws1: {connection: {type: local}}
          ws2: {connection: {host: 10.0.0.5, port: 2222, user: root, key: /k}}
          rehearsal: {connection: {type: vagrant, machine: genai-rehearsal}, gpu: {mode: none}}
    """))
    loaded = load_inventory(inventory, {"GENAI_SECRETS": str(tmp_path / "none.env")})
    groups = loaded.pyinfra_groups()
    names = [name for name, _ in groups["workstations"]]
    assert names == ["@local", "ws2", "@vagrant/genai-rehearsal"]
    ws2 = dict(groups["lab"])["ws2"]
    assert (ws2["ssh_hostname"], ws2["ssh_port"], ws2["ssh_user"], ws2["ssh_key"]) == (
        "10.0.0.5", 2222, "root", "/k")
    assert dict(groups["lab"])["@vagrant/genai-rehearsal"]["nvidia_toolkit"]["enabled"] is False


def test_models_manifest_is_validated_and_its_tokens_required(tmp_path):
    (tmp_path / "models.yaml").write_text(
        "- {hf: stabilityai/sdxl-turbo, file: sd_xl_turbo_1.0_fp16.safetensors, "
        "folder: checkpoints}\n- {civitai: 128713, folder: checkpoints}\n")
    yaml_text = """
    hosts:
      ws1:
        connection: {type: local}
        models_manifest: models.yaml
    """
    result = run_cli(tmp_path, yaml_text)
    assert result.returncode == 2
    assert "hosts.ws1.models.1.civitai: needs the secret CIVITAI_TOKEN" in result.stderr
    (tmp_path / "models.yaml").write_text("- {url: 'https://example.org/a.bin', folder: lora}\n")
    result = run_cli(tmp_path, yaml_text)
    assert "models.yaml:1: models.0.folder: 'lora' is not a ComfyUI model folder" in result.stderr
