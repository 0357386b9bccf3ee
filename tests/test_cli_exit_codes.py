"""Exit codes and options of the two CLIs, through their installed console scripts.

`genai-drift` and `genai-models` share: 0 ok, 1 could not check/do it, 2 drift/problems found,
64 usage error (never 2, which CI reads as "drift found"); `--inventory`, `--limit`, `--format`.
genai-drift's 0 and 2 on real hosts are in tests/test_drift_e2e.py and tests/test_drift_run.py;
here: usage errors, an invalid inventory, an unreachable host (a closed loopback port), and
genai-models' 0 / 1 / 2 with a real HTTP server on loopback and real folders.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
USAGE = 64


def cli(name: str, *args: str, inventory: Path | None = None, cwd: Path = REPO,
        timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GENAI_INVENTORY", "GENAI_SECRETS", "SSH_AUTH_SOCK")
           and not k.endswith(("_TOKEN", "_AUTH", "_PASSWORD", "_SECRET", "_KEY"))}
    env["GENAI_SECRETS"] = str(Path(cwd) / "no-secrets.env")
    if inventory:
        env["GENAI_INVENTORY"] = str(inventory)
    return subprocess.run([str(BIN / name), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def write_inventory(path: Path, hosts: dict) -> Path:
    path.write_text(yaml.safe_dump({"hosts": hosts}, sort_keys=False))
    return path


def closed_port() -> int:
    with socket.socket() as probe:  # bound then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ssh_inventory(tmp_path) -> Path:
    """Two SSH hosts on loopback ports where nothing listens (connection refused)."""
    host = {"connection": {"host": "127.0.0.1", "port": closed_port(), "user": "root"},
            "platform": "linux", "gpu": {"mode": "none"}}
    return write_inventory(tmp_path / "inventory.yaml", {"ws1": host, "ws2": dict(host)})


# --- genai-drift --------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--bogus"],
    ["--format", "xml"],
    ["--connect-timeout", "0"],
    ["--connect-timeout", "soon"],
    ["--limit", "ws9"],
    ["--limit", "ws1,ws9"],
    ["--deploy", "deploys/no-such.py"],
])
def test_drift_usage_errors_exit_64(ssh_inventory, args):
    result = cli("genai-drift", *args, inventory=ssh_inventory)
    assert result.returncode == USAGE, (result.returncode, result.stderr)
    assert "genai-drift: error:" in result.stderr and result.stdout == ""


def test_drift_unknown_host_names_the_known_ones(ssh_inventory):
    result = cli("genai-drift", "--limit", "ws1", "--limit", "ws3", inventory=ssh_inventory)
    assert result.returncode == USAGE
    assert "unknown host(s) in --limit: ws3; the inventory has ws1, ws2" in result.stderr


def test_drift_invalid_inventory_exits_1(tmp_path):
    inventory = tmp_path / "bad.yaml"
    inventory.write_text("hosts:\n  ws1:\n    worksapce: /srv/genai\n")
    result = cli("genai-drift", inventory=inventory)
    assert result.returncode == 1, result.stderr
    assert "unknown key 'worksapce'" in result.stderr and result.stdout == ""


def test_drift_unreachable_hosts_exit_1_each_reported(ssh_inventory):
    result = cli("genai-drift", "--format", "json", inventory=ssh_inventory)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["exit_code"] == 1 and report["hosts"] == ["ws1", "ws2"]
    errors = {f["host"]: f for f in report["findings"] if f["kind"] == "error"}
    assert set(errors) == {"ws1", "ws2"}, report
    assert errors["ws1"]["item"] == "host reachable"
    port = yaml.safe_load(ssh_inventory.read_text())["hosts"]["ws1"]["connection"]["port"]
    assert f"Unable to connect to port {port}" in errors["ws1"]["actual"], errors


def test_drift_limit_takes_commas_and_repeats(ssh_inventory):
    result = cli("genai-drift", "--limit", "ws2", "--format", "json", inventory=ssh_inventory)
    assert result.returncode == 1 and json.loads(result.stdout)["hosts"] == ["ws2"]
    result = cli("genai-drift", "--limit", "ws2,ws1", "--limit", "ws2", "--format", "json",
                 inventory=ssh_inventory)
    assert json.loads(result.stdout)["hosts"] == ["ws2", "ws1"]


def test_drift_help_documents_the_exit_codes():
    result = cli("genai-drift", "--help")
    assert result.returncode == 0
    for line in ("0   ok", "1   error", "2   drift found", "64  usage error"):
        assert line in result.stdout, result.stdout
    assert "--connect-timeout" in result.stdout


# --- genai-models -------------------------------------------------------------------------------


@pytest.fixture
def local_inventory(tmp_path) -> Path:
    return write_inventory(tmp_path / "inventory.yaml", {
        "ws1": {"connection": {"type": "local"}, "workspace": str(tmp_path / "genai")},
        "ws2": {"connection": {"host": "10.0.0.9"}, "workspace": str(tmp_path / "genai2")}})


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server for tmp_path/www: {url, root}."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "root": root}
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("args", [
    [],
    ["sync", "--bogus"],
    ["sync", "--format", "yaml"],
    ["sync", "--limit", "ws9"],
    ["sync", "--limit", "ws1,ws2"],
    ["sync", "--host", "ws9"],
    ["migrate", "/nonexistent-webui", "--models-dir", "/tmp/x"],
    ["migrate", ".", "--models-dir", "/tmp/x", "--delete-source"],
])
def test_models_usage_errors_exit_64(local_inventory, args):
    result = cli("genai-models", *args, inventory=local_inventory)
    assert result.returncode == USAGE, (result.returncode, result.stderr)
    assert result.stderr.startswith(("genai-models: error:", "usage: genai-models"))


def test_models_host_is_a_hidden_alias_of_limit(local_inventory):
    result = cli("genai-models", "sync", "--host", "ws3", inventory=local_inventory)
    assert "unknown host in --limit: ws3; the inventory has ws1, ws2" in result.stderr
    assert result.returncode == USAGE
    help_text = cli("genai-models", "sync", "--help").stdout
    assert "--limit HOST" in help_text and "--host" not in help_text
    assert "--format {table,json}" in help_text


def test_models_invalid_inventory_exits_1(tmp_path):
    inventory = tmp_path / "bad.yaml"
    inventory.write_text("hosts:\n  ws1:\n    worksapce: /srv/genai\n")
    result = cli("genai-models", "sync", inventory=inventory)
    assert result.returncode == 1, result.stderr
    assert "unknown key 'worksapce'" in result.stderr


def test_models_fetch_json_0_then_1_on_a_failed_download(tmp_path, server, local_inventory):
    data = b"lora weights " * 1000
    (server["root"] / "detail.safetensors").write_bytes(data)
    models = tmp_path / "models"
    fetched = cli("genai-models", "fetch", f"{server['url']}/detail.safetensors",
                  "--folder", "loras", "--sha256", hashlib.sha256(data).hexdigest(),
                  "--models-dir", str(models), "--format", "json", inventory=local_inventory)
    assert fetched.returncode == 0, fetched.stderr
    report = json.loads(fetched.stdout)  # stdout is the JSON document alone
    assert report["exit_code"] == 0 and report["failed"] == []
    assert report["fetched"] == [{"file": "loras/detail.safetensors", "bytes": len(data)}]
    assert (models / "loras" / "detail.safetensors").read_bytes() == data

    missing = cli("genai-models", "fetch", f"{server['url']}/gone.safetensors",
                  "--folder", "loras", "--sha256", "0" * 64, "--models-dir", str(models),
                  "--format", "json", inventory=local_inventory)
    assert missing.returncode == 1, missing.stderr
    report = json.loads(missing.stdout)
    assert report["exit_code"] == 1 and report["fetched"] == []
    assert [f["file"] for f in report["failed"]] == ["loras/gone.safetensors"]
    assert "404" in report["failed"][0]["error"]


def test_models_migrate_conflict_is_2_clean_plan_is_0(tmp_path, local_inventory):
    source = tmp_path / "webui" / "models"
    (source / "Lora").mkdir(parents=True)
    (source / "Lora" / "a.safetensors").write_bytes(b"ours" * 100)
    models = tmp_path / "models"
    clean = cli("genai-models", "migrate", str(source.parent), "--models-dir", str(models),
                "--format", "json", inventory=local_inventory)
    assert clean.returncode == 0, clean.stderr
    plan = json.loads(clean.stdout)
    assert plan["moves"][0]["dest"] == "loras/a.safetensors" and plan["conflicts"] == []

    (models / "loras").mkdir(parents=True)
    (models / "loras" / "a.safetensors").write_bytes(b"theirs")
    conflict = cli("genai-models", "migrate", str(source.parent), "--models-dir", str(models),
                   "--format", "json", inventory=local_inventory)
    assert conflict.returncode == 2, conflict.stderr
    plan = json.loads(conflict.stdout)
    assert plan["exit_code"] == 2 and plan["conflicts"][0]["source"] == "models/Lora/a.safetensors"
    table = cli("genai-models", "migrate", str(source.parent), "--models-dir", str(models),
                inventory=local_inventory)
    assert table.returncode == 2 and "CONFLICT models/Lora/a.safetensors" in table.stdout


def test_models_help_documents_the_exit_codes():
    for args in ([], ["sync"], ["migrate"]):
        result = cli("genai-models", *args, "--help")
        assert result.returncode == 0
        assert "64  usage error" in result.stdout and "2   problems found" in result.stdout
