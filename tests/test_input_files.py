"""Any bytes as inventory, models.yaml or secrets file: a clear error naming the file, no traceback.

Through the real `pyinfra inventory.py` CLI, as a user would meet them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from genai_workstation.textfiles import MAX_BYTES

REPO = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))

GOOD = "hosts:\n  ws1:\n    connection: {type: local}\n"


def run(tmp_path: Path, data: bytes, secrets: bytes | None = None) -> subprocess.CompletedProcess:
    inventory = tmp_path / "inv.yaml"
    inventory.write_bytes(data)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_TOKEN")}
    env.update(GENAI_INVENTORY=str(inventory), GENAI_SECRETS=str(tmp_path / "secrets.env"))
    if secrets is not None:
        (tmp_path / "secrets.env").write_bytes(secrets)
        (tmp_path / "secrets.env").chmod(0o600)
    result = subprocess.run([PYINFRA, "-y", "inventory.py", "debug-inventory"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return result


def refused(result: subprocess.CompletedProcess, *expected: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no host was contacted" in result.stderr
    for text in expected:
        assert text in result.stderr, (text, result.stderr)
    return result.stderr


CP1252 = ("hosts:\n  ws1:\n    connection: {type: local}\n    user: {name: jesse}\n"
          "    # Poste de Jérôme, bureau d'études\n"
          "    stacks: {comfyui: {extra_args: ['--output-directory', '/srv/genai/éléments']}}\n")


def test_cp1252_inventory_names_the_line_and_says_utf8(tmp_path):
    stderr = refused(run(tmp_path, CP1252.encode("cp1252")),
                     "inv.yaml:5: is not UTF-8 text (byte 0xe9 on line 5", "save it as UTF-8")
    assert stderr.count("inv.yaml") == 1
    assert run(tmp_path, CP1252.encode("utf-8")).returncode == 0  # the same text as UTF-8 is fine


def test_utf8_with_bom_is_read(tmp_path):
    assert run(tmp_path, b"\xef\xbb\xbf" + GOOD.encode()).returncode == 0


def test_binary_file_is_not_text(tmp_path):
    png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)) * 8
    refused(run(tmp_path, png), "inv.yaml: is not a text file")


def test_large_file_is_refused_before_reading(tmp_path):
    # 7 MB of valid YAML that is not an inventory (a dump of rows).
    rows = "".join(f"row{i:06d}: {{id: {i}, label: value number {i}}}\n"
                   for i in range(7 * 1024 * 1024 // 40))
    data = rows.encode()
    assert len(data) > 7 * 1000 * 1000
    stderr = refused(run(tmp_path, data), "is too large for an inventory",
                     f"the limit is {MAX_BYTES / 1024 / 1024:.1f} MiB")
    assert len(stderr.splitlines()) < 10


@pytest.mark.parametrize("data, expected", [
    (b"", "the file is empty"),
    (b"# nothing here yet\n\n", "the file is empty"),
    (b"- ws1\n- ws2\n", "the file holds a list, not a mapping with `hosts:`"),
    (b"just some text\n", "the file holds a single value, not a mapping with `hosts:`"),
    (b"name: my notes\nitems: [1, 2]\n", "the file has no `hosts:`"),
])
def test_not_an_inventory(tmp_path, data, expected):
    refused(run(tmp_path, data), f"inv.yaml: {expected}", "inventory/workstation.yaml")


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize("data, expected", [
    (b"hosts:\n  1: {}\n", "inv.yaml:2: hosts.1: the key 1 is read as a number, not as a name"),
    (b"hosts: &h {ws1: *h}\n", "nests too deeply or expands to more than 200000 values"),
    (LAUGHS.encode(), "nests too deeply or expands to more than 200000 values"),
])
def test_yaml_that_is_no_inventory_shape(tmp_path, data, expected):
    refused(run(tmp_path, data), expected)


def test_problems_sorted_by_line_as_numbers_and_capped(tmp_path):
    # 1,500 hosts, each with a typo: lines 2 .. 3001; a string sort would put line 1001 before 2.
    hosts = "".join(f"  ws{i}:\n    worksapce: /srv/genai\n" for i in range(1500))
    stderr = refused(run(tmp_path, ("hosts:\n" + hosts).encode()),
                     "the inventory is invalid (1500 problems)",
                     "... and 1480 more problems: fix the ones above first")
    lines = [int(n) for n in re.findall(r"^\S*inv\.yaml:(\d+):", stderr, re.M)]
    assert len(lines) == 20
    assert lines == sorted(lines) and lines[0] == 3
    assert stderr.rstrip().endswith("then run again")


def test_whole_file_problem_comes_first(tmp_path):
    # A mapping with `defaults:` but no `hosts:`: the missing key is the message that matters.
    data = "defaults:\n" + "".join(f"  setting{i}: 1\n" for i in range(40))
    stderr = refused(run(tmp_path, data.encode()), "the required key 'hosts' is missing")
    first = stderr.split("no host was contacted.\n", 1)[1].splitlines()[0]
    assert "the required key 'hosts' is missing" in first


def test_models_manifest_as_cp1252_and_binary(tmp_path):
    inventory = (GOOD + "    models_manifest: models.yaml\n").encode()
    (tmp_path / "models.yaml").write_bytes(
        "# modèles\n- {hf: org/repo, file: a.safetensors, folder: loras}\n".encode("cp1252"))
    refused(run(tmp_path, inventory), "models.yaml:1: is not UTF-8 text", "save it as UTF-8")
    (tmp_path / "models.yaml").write_bytes(b"\0\1\2\3" * 100)
    refused(run(tmp_path, inventory), "models.yaml: is not a text file")


def test_folders_instead_of_files(tmp_path):
    (tmp_path / "secrets.env").mkdir()
    refused(run(tmp_path, GOOD.encode()), "secrets.env: the secrets file is not a regular file")
    (tmp_path / "secrets.env").rmdir()
    (tmp_path / "folder.yaml").mkdir()
    env = dict(os.environ, GENAI_INVENTORY=str(tmp_path / "folder.yaml"))
    result = subprocess.run([PYINFRA, "-y", "inventory.py", "debug-inventory"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=60)
    refused(result, "folder.yaml: is not a regular file (a folder?)")


def test_secrets_file_as_cp1252_binary_and_oversized(tmp_path):
    value = "mot-de-passe-é"
    stderr = refused(run(tmp_path, GOOD.encode(), f"# mine\nCOMFYUI_AUTH={value}\n".encode(
        "cp1252")), "secrets.env:2: is not UTF-8 text", "save it as UTF-8")
    assert "mot-de-passe" not in stderr
    refused(run(tmp_path, GOOD.encode(), b"\0" * 64), "secrets.env: is not a text file")
    refused(run(tmp_path, GOOD.encode(), b"A=" + b"x" * (MAX_BYTES + 10)),
            "secrets.env: 1.0 MiB is too large for a secrets file")
