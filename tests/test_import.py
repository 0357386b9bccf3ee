"""genai-import through its real entry point on compose files in the seeds' style.

The fixtures under tests/fixtures/import/ are written the way the field reports describe the
hand-kept setup; fake secrets are made at run time and must never show in any output.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genai_workstation.importer.compose_file import interpolate

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "import"
GENAI_IMPORT = str(Path(sys.executable).with_name("genai-import"))


def fake(prefix: str = "", length: int = 24) -> str:
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits)
                            for _ in range(length))


def setup_folder(tmp_path: Path, fixture: str, values: dict[str, str]) -> Path:
    folder = tmp_path / fixture
    folder.mkdir()
    (folder / "docker-compose.yml").write_text((FIXTURES / fixture / "docker-compose.yml")
                                               .read_text())
    env = (FIXTURES / fixture / "env.template").read_text()
    for name, value in values.items():
        env = env.replace(f"@{name}@", value)
    (folder / ".env").write_text(env)
    return folder


def run_import(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_")}
    return subprocess.run([GENAI_IMPORT, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)


def host_of(draft: Path) -> dict:
    return yaml.safe_load(draft.read_text())["hosts"]["local"]


def secrets_file(path: Path) -> dict[str, str]:
    from genai_workstation.importer.disk import read_env

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return read_env(path)


def assert_no_leak(values: dict[str, str], *texts: str) -> None:
    for value in values.values():
        for text in texts:
            assert value not in text


@pytest.fixture
def comfyui_tokens() -> dict[str, str]:
    return {"HF_TOKEN": fake("hf_", 34), "CIVITAI_TOKEN": fake(length=32).lower(),
            "COMFYUI_TOKEN": fake()}


def test_seed_comfyui_setup(tmp_path, comfyui_tokens):
    folder = setup_folder(tmp_path, "comfyui-qwen", comfyui_tokens)
    result = run_import(folder, "compose", "docker-compose.yml")
    assert result.returncode in (0, 2), result.stderr
    draft = folder / "imported.yaml"
    comfyui = host_of(draft)["stacks"]["comfyui"]
    # The login node's bearer token keeps working: clients on the old port, behind the proxy.
    assert comfyui["expose"] == {"address": "0.0.0.0", "port": 8188}
    assert comfyui["auth"] == {"type": "login", "username": "admin", "secret": "COMFYUI_AUTH",
                               "token_secret": "COMFYUI_TOKEN"}
    assert comfyui["port"] != 8188
    assert comfyui["idle_unload_minutes"] == 20
    assert comfyui["extra_args"] == ["--preview-method", "auto"]
    assert comfyui["gpu"] == 0
    assert comfyui["image"] == {"base_image": "nvidia/cuda:12.4.0-devel-ubuntu22.04"}
    # What the owner's scripts rely on is carried: the container name, TZ, restart, timing.
    assert comfyui["service"] == {"environment": {"TZ": "Europe/Paris"},
                                  "container_name": "comfyui-qwen", "restart": "unless-stopped",
                                  "healthcheck": {"interval": "30s"}}
    report = result.stdout
    for expected in ("\\\\wsl.localhost\\Ubuntu", "Operation not permitted",
                     "genai-models migrate /mnt/d/models", "pip-installed at every start",
                     "device_ids does not isolate", "container_name", "environment TZ",
                     "nvidia-smi -L", "HF_TOKEN, CIVITAI_TOKEN, COMFYUI_TOKEN",
                     "--comfyui-dir /home/jesse/SD/workspace/comfyui-qwen/ComfyUI",
                     "`docker logs comfyui-idle` call `docker logs genai-comfyui-idle-unload-1`"):
        assert expected in report, expected
    assert secrets_file(folder / "secrets.env") == comfyui_tokens
    assert_no_leak(comfyui_tokens, result.stdout, result.stderr, draft.read_text())
    # The browser password is not in the old files: the draft says so, exit 2.
    assert result.returncode == 2
    assert "needs the secret COMFYUI_AUTH" in result.stderr


def test_comfyui_login_password_file_is_carried(tmp_path):
    import bcrypt

    comfy = tmp_path / "ComfyUI"
    (comfy / "login").mkdir(parents=True)
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    (comfy / "login" / "PASSWORD").write_text(hashed + "\n")
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump({"services": {"comfyui": {
        "image": "comfy:local", "ports": ["8188:8188"],
        "environment": ["COMFYUI_LOGIN_ENABLED=true"],
        "volumes": [f"{comfy}:/workspace/ComfyUI"]}}}))
    result = run_import(tmp_path, "compose", "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    comfyui = host_of(tmp_path / "imported.yaml")["stacks"]["comfyui"]
    assert comfyui["auth"] == {"type": "login", "username": "admin", "secret": "COMFYUI_AUTH"}
    assert secrets_file(tmp_path / "secrets.env") == {"COMFYUI_AUTH": hashed}
    assert hashed not in result.stdout + result.stderr


def test_seed_forge_setup_two_instances(tmp_path):
    passwords = {"FORGE_PASSWORD": fake(), "TURBO_PASSWORD": fake() + " with #space"}
    folder = setup_folder(tmp_path, "forge", passwords)
    result = run_import(folder, "compose", "docker-compose.yml", "--output", "inv/forge.yaml")
    assert result.returncode == 0, result.stderr
    draft = folder / "inv" / "forge.yaml"
    myia, turbo = host_of(draft)["stacks"]["forge"]["instances"]
    assert myia["name"] == "forge-myia" and turbo["name"] == "forge-turbo"
    assert myia["expose"] == {"address": "0.0.0.0", "port": 36525}
    assert myia["auth"] == {"type": "basic", "username": "admin", "secret": "FORGE_PASSWORD"}
    assert turbo["auth"] == {"type": "basic", "username": "jesse", "secret": "TURBO_PASSWORD"}
    assert turbo["expose"] == {"address": "0.0.0.0", "port": 17861}
    assert (myia["gpu"], turbo["gpu"]) == (1, 0)
    assert myia["extra_args"] == ["--xformers", "--cuda-malloc"]
    assert myia["service"] == {"environment": {"TZ": "Europe/Paris"},
                               "container_name": "forge-myia"}
    assert "extra_args" not in turbo  # --share is never carried
    assert "[not carried] forge-turbo: command: --share" in result.stdout
    assert "/sdapi/v1/cmd-flags" in result.stdout
    assert "D:\\stable-diffusion\\models" in result.stdout
    assert "genai-models migrate /mnt/d/stable-diffusion/models" in result.stdout
    # The secrets file sits where the loader looks for this draft, values intact.
    assert secrets_file(folder / "inv" / "secrets.env") == passwords
    assert_no_leak(passwords, result.stdout, result.stderr, draft.read_text())


def test_open_port_without_auth_goes_to_loopback(tmp_path):
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump({"services": {"comfy": {
        "image": "yanwenkun/comfyui-boot:cu124", "ports": ["8188:8188"]}}}))
    result = run_import(tmp_path, "compose", "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    comfyui = host_of(tmp_path / "imported.yaml")["stacks"]["comfyui"]
    assert comfyui == {"port": 8188}
    assert "with no authentication" in result.stdout
    assert "published on 127.0.0.1 only" in result.stdout
    assert not (tmp_path / "secrets.env").exists()


def test_existing_draft_and_secrets_are_kept(tmp_path, comfyui_tokens):
    folder = setup_folder(tmp_path, "comfyui-qwen", comfyui_tokens)
    (folder / "imported.yaml").write_text("# mine\n")
    kept = fake("hf_", 34)
    (folder / "secrets.env").write_text(f"HF_TOKEN={kept}\n")
    (folder / "secrets.env").chmod(0o600)
    refused = run_import(folder, "compose", "docker-compose.yml")
    assert refused.returncode == 1
    assert "imported.yaml: already exists" in refused.stderr
    assert (folder / "imported.yaml").read_text() == "# mine\n"
    forced = run_import(folder, "compose", "docker-compose.yml", "--force")
    assert forced.returncode == 2 and "needs the secret COMFYUI_AUTH" in forced.stderr
    backups = list(folder.glob("imported.yaml.bak-*"))
    assert [b.read_text() for b in backups] == ["# mine\n"]
    assert secrets_file(folder / "secrets.env")["HF_TOKEN"] == kept


@pytest.mark.parametrize("content, message", [
    (b"services:\n  comfy:\n    image: caf\xe9\n", "imported.yaml"),
    (b"\x00\x01\x02binary", "not a text file"),
    (b"services: [a, b]\n", "no `services:` mapping"),
    (b"services:\n  comfy: {image: x\n", "not valid YAML"),
])
def test_bad_compose_files_name_the_file(tmp_path, content, message):
    (tmp_path / "docker-compose.yml").write_bytes(content)
    result = run_import(tmp_path, "compose", "docker-compose.yml")
    if message == "imported.yaml":  # cp1252: the line and the fix
        assert result.returncode == 1
        assert "docker-compose.yml:3: is not UTF-8 text" in result.stderr
        assert "save it as UTF-8" in result.stderr
    else:
        assert result.returncode == 1, result.stdout
        assert "docker-compose.yml" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "imported.yaml").exists()


def test_usage_error_exit_code(tmp_path):
    result = run_import(tmp_path, "compose")
    assert result.returncode == 64
    bad_user = run_import(tmp_path, "compose", "x.yml", "--user", "jesse")
    assert bad_user.returncode == 64 and "NAME:UID:GID" in bad_user.stderr
    assert "exit codes" in run_import(tmp_path, "--help").stdout


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def make_node(root: Path, name: str, url: str) -> str:
    node = root / name
    node.mkdir(parents=True)
    (node / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    git(node, "init", "-q")
    git(node, "add", ".")
    git(node, "commit", "-qm", "node")
    git(node, "remote", "add", "origin", url)
    return git(node, "rev-parse", "HEAD")


def test_custom_nodes_from_an_install(tmp_path):
    nodes = tmp_path / "ComfyUI" / "custom_nodes"
    login = make_node(nodes, "ComfyUI-Login", "https://github.com/liusida/ComfyUI-Login.git")
    credential = fake()
    private = make_node(nodes, "private-node", f"https://jesse:{credential}@git.example/n.git")
    make_node(nodes, "dirty-node", "https://git.example/dirty.git")
    (nodes / "dirty-node" / "__init__.py").write_text("changed = True\n")
    (nodes / "plain-folder").mkdir()
    make_node(nodes, "old.disabled", "https://git.example/old.git")
    (nodes / "single_file.py").write_text("x = 1\n")
    result = run_import(tmp_path, "custom-nodes", "--comfyui-dir", "ComfyUI")
    assert result.returncode == 0, result.stderr
    entries = yaml.safe_load(result.stdout)["custom_nodes"]
    assert {"url": "https://github.com/liusida/ComfyUI-Login.git", "ref": login} in entries
    assert {"url": "https://git.example/n.git", "ref": private} in entries
    assert len(entries) == 3  # the dirty node is pinned at its commit, with a note
    for expected in ("dirty-node: local changes", "plain-folder: folder", "old.disabled",
                     "single_file.py", "carried credentials"):
        assert expected in result.stderr, expected
    assert credential not in result.stdout + result.stderr


def test_custom_nodes_from_a_manager_snapshot(tmp_path):
    snapshot = {
        "comfyui": "a" * 40,
        "git_custom_nodes": {
            "https://github.com/liusida/ComfyUI-Login": {"hash": "b" * 40, "disabled": False},
            "https://github.com/x/off": {"hash": "c" * 40, "disabled": True},
        },
        "cnr_custom_nodes": {"comfyui-kjnodes": "1.1.0"},
        "file_custom_nodes": [{"filename": "mine.py", "disabled": False}],
        "pips": {"numpy==1.26.4": ""},
    }
    (tmp_path / "snap.json").write_text(json.dumps(snapshot))
    result = run_import(tmp_path, "custom-nodes", "--snapshot", "snap.json", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["custom_nodes"] == [{"url": "https://github.com/liusida/ComfyUI-Login",
                                       "ref": "b" * 40}]
    items = {(n["service"], n["kind"]) for n in report["notes"]}
    assert ("off", "not carried") in items and ("comfyui-kjnodes", "not carried") in items
    assert ("mine.py", "not carried") in items and ("", "changed") in items
    (tmp_path / "bad.json").write_text("{}")
    bad = run_import(tmp_path, "custom-nodes", "--snapshot", "bad.json")
    assert bad.returncode == 1 and "bad.json: no `git_custom_nodes`" in bad.stderr


def test_mounted_comfyui_folder_pins_its_nodes(tmp_path):
    login = make_node(tmp_path / "ComfyUI" / "custom_nodes", "ComfyUI-Login",
                      "https://github.com/liusida/ComfyUI-Login.git")
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump({"services": {"comfyui": {
        "image": "comfy:local", "ports": ["127.0.0.1:8188:8188"],
        "volumes": [f"{tmp_path}/ComfyUI:/workspace/ComfyUI"]}}}))
    result = run_import(tmp_path, "compose", "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    comfyui = host_of(tmp_path / "imported.yaml")["stacks"]["comfyui"]
    assert comfyui["custom_nodes"] == [{"url": "https://github.com/liusida/ComfyUI-Login.git",
                                        "ref": login}]


def test_draft_dry_runs_with_pyinfra(tmp_path, comfyui_tokens):
    folder = setup_folder(tmp_path, "comfyui-qwen", comfyui_tokens)
    imported = run_import(folder, "compose", "docker-compose.yml", "--user", "genai:1500:1500",
                          "--workspace", str(tmp_path / "ws"))
    assert imported.returncode == 2, imported.stderr
    assert host_of(folder / "imported.yaml")["user"] == {"name": "genai", "uid": 1500,
                                                         "gid": 1500}
    with (folder / "secrets.env").open("a") as secrets_env:  # the browser password, as asked
        secrets_env.write(f"COMFYUI_AUTH={fake()}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_")}
    env.update(GENAI_INVENTORY=str(folder / "imported.yaml"))
    pyinfra = str(Path(sys.executable).with_name("pyinfra"))
    result = subprocess.run([pyinfra, "-y", "inventory.py", "deploys/comfyui.py", "--dry",
                             "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    names = [op["name"] for op in json.loads(result.stdout)["plan"]]
    assert any(name.startswith("Stack | Stack comfyui") for name in names), names
    assert_no_leak(comfyui_tokens, result.stdout, result.stderr)


@pytest.mark.parametrize("text, env, expected", [
    ("${A:-x}", {}, "x"), ("${A:-x}", {"A": ""}, "x"), ("${A-x}", {"A": ""}, ""),
    ("$A/b", {"A": "p"}, "p/b"), ("$$A", {"A": "p"}, "$A"), ("${A:+set}", {"A": "1"}, "set"),
])
def test_interpolation_follows_compose(text, env, expected):
    assert interpolate(text, env) == expected


def test_loopback_port_with_auth_keeps_auth(tmp_path):
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump({"services": {"forge": {
        "image": "forge:mine", "ports": ["127.0.0.1:7860:7860"],
        "command": "python launch.py --api --gradio-auth admin:${PW}"}}}))
    password = fake()
    (tmp_path / ".env").write_text(f"PW={password}\n")
    result = run_import(tmp_path, "compose", "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    instance = host_of(tmp_path / "imported.yaml")["stacks"]["forge"]["instances"][0]
    assert instance == {"name": "forge", "port": 7860,
                        "auth": {"type": "basic", "username": "admin", "secret": "FORGE_AUTH"}}
    assert secrets_file(tmp_path / "secrets.env") == {"FORGE_AUTH": password}
    assert_no_leak({"PW": password}, result.stdout, result.stderr)
