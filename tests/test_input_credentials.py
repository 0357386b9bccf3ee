"""Credentials written anywhere in the inventory or a models.yaml are refused, never printed.

Every case runs the real `pyinfra inventory.py debug-inventory` (which prints all host data)
and a `--dry` deploy, then scans stdout and stderr for the credential. Fake credentials are
built at run time: no token-like literal in the repository.
"""

from __future__ import annotations

import os
import random
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from genai_workstation.credentials import credential_problems, looks_secret

REPO = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
_RANDOM = random.Random()


def fake(alphabet: str, length: int) -> str:
    return "".join(_RANDOM.choice(alphabet) for _ in range(length))


HF = "hf_" + fake(string.ascii_letters + string.digits, 34)
CIVITAI = fake("0123456789abcdef", 32)
PASSWORD = "Pw-" + fake(string.ascii_letters, 12)
SIGNATURE = fake(string.ascii_letters + string.digits, 40)

HOST = """
hosts:
  ws1:
    connection: {type: local}
    workspace: /srv/genai
"""

# name: (YAML below hosts.ws1, the secret, the field path, what the fix must say)
CASES = {
    "civitai url with ?token=": (
        f"""
    models:
      - url: "https://civitai.com/api/download/models/128713?type=Model&token={CIVITAI}"
        folder: checkpoints
""", CIVITAI, "hosts.ws1.models.0.url", ["token=...", "CIVITAI_TOKEN", "Authorization"]),
    "hf token inside an extra argument": (
        f"""
    stacks:
      comfyui:
        extra_args: ["--lowvram", "--hf-token={HF}"]
""", HF, "hosts.ws1.stacks.comfyui.extra_args.1", ["HF_TOKEN", "secrets.env"]),
    "password in a git url": (
        f"""
    stacks:
      comfyui:
        custom_nodes:
          - url: https://jesse:{PASSWORD}@git.example.org/nodes.git
            ref: v1.0
""", PASSWORD, "hosts.ws1.stacks.comfyui.custom_nodes.0.url", ["user:password@"]),
    "gradio auth as two arguments": (
        f"""
    stacks:
      forge:
        instances:
          - name: myia
            port: 7861
            extra_args:
              - --gradio-auth
              - admin:{PASSWORD}
""", PASSWORD, "hosts.ws1.stacks.forge.instances.0.extra_args.1", ["auth:", "secrets.env"]),
    "signed url in a mirror setting": (
        f"""
    model_endpoints:
      huggingface: "https://mirror.example.org/hf?X-Amz-Signature={SIGNATURE}&X-Amz-Expires=60"
""", SIGNATURE, "hosts.ws1.model_endpoints.huggingface", ["X-Amz-Signature=..."]),
    "token inside a longer template value": (
        f"""
    stacks:
      custom:
        music:
          template_dir: /nonexistent
          vars: {{header: "Authorization: Bearer {HF}"}}
""", HF, "hosts.ws1.stacks.custom.music.vars.header", ["HF_TOKEN"]),
}


def run(tmp_path: Path, yaml_text: str, *command: str) -> subprocess.CompletedProcess:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(yaml_text)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_TOKEN")}
    env.update(GENAI_INVENTORY=str(inventory), GENAI_SECRETS=str(tmp_path / "none.env"))
    return subprocess.run([PYINFRA, "-y", "inventory.py", *command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", sorted(CASES))
def test_credential_is_refused_and_never_printed(tmp_path, case):
    settings, secret, field, fix = CASES[case]
    yaml_text = HOST + textwrap.indent(textwrap.dedent(settings).lstrip("\n"), "    ")
    line = 1 + yaml_text[:yaml_text.index(secret)].count("\n")
    for command in (["debug-inventory"], ["--dry", "deploys/verify.py"]):
        result = run(tmp_path, yaml_text, *command)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "Traceback" not in output
        assert secret not in output and secret[4:16] not in output
        assert f"inv.yaml:{line}: {field}: " in result.stderr, result.stderr
        for text in fix:
            assert text in result.stderr, (text, result.stderr)


def test_credential_in_models_manifest_is_refused(tmp_path):
    (tmp_path / "models.yaml").write_text(
        "# my models\n"
        f"- {{url: 'https://civitai.com/api/download/models/1?token={CIVITAI}', "
        "folder: loras}\n")
    result = run(tmp_path, HOST + "    models_manifest: models.yaml\n", "debug-inventory")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert CIVITAI not in output
    assert "models.yaml:2: models.0.url: the URL carries a credential" in result.stderr
    assert "CIVITAI_TOKEN" in result.stderr


def test_lookalikes_are_not_credentials():
    document = {
        "sha256": "ab" * 32,                          # 64 hex digits: a checksum
        "ref": "0123456789abcdef0123456789abcdef01234567",  # a git commit
        "url": "https://huggingface.co/org/repo/resolve/main/x.safetensors?download=true",
        "git": "ssh://git@github.com/org/repo.git",   # a user name without a password
        "gpu": "GPU-4b1e5a3f-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        "extra_args": ["--listen", "--port", "8188", "--cuda-device", "0", "--auth-mode"],
        "secret": "COMFYUI_AUTH",                     # a secret's name, not its value
    }
    assert credential_problems(document, {}) == []


def test_each_shape_is_found_anywhere_in_a_value():
    assert looks_secret(f"prefix {HF} suffix")
    assert looks_secret(f"x={CIVITAI}")
    assert looks_secret(f"https://u:{PASSWORD}@h/p")
    assert looks_secret("https://h/p?a=1&api_key=abc")
    assert looks_secret("see https://h/p?AccessToken=abc")
    assert looks_secret("https://h/p?access_token=abc")
    assert not looks_secret("https://h/p?keyword=abc&monkey=1&download=true")
    problems = credential_problems({"args": ["--api-key", "abc"]}, {})
    assert [p.field for p in problems] == ["args.1"]
