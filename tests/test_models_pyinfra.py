"""The pyinfra side: the ModelFiles fact, the convergence check, the `synced` operation through
the real pyinfra CLI (@local), and deploys/models.py against a fresh Debian host over SSH."""

from __future__ import annotations

import hashlib
import sys
import textwrap
from pathlib import Path

import pytest

from genai_workstation.facts.models import ModelFiles
from genai_workstation.models import manifest

HF_TOKEN = "hf_" + "pyinfratestTOKEN" + "B" * 20  # fake, built: no token literal in git
REPO = Path(__file__).resolve().parent.parent


def test_fact_parses_sidecar_and_files():
    fact = ModelFiles()
    command = fact.command("/srv/genai/models", ["checkpoints", "loras"])
    assert "find checkpoints loras -maxdepth 1 -type f" in command
    output = [
        "==genai-models-sidecar==",
        '{"version": 1, "files": {"checkpoints/a.safetensors": {"size": 3, ',
        '"mtime_ns": 1700000000123456789, "sha256": "ab", "source": "url:x"}}}',
        "",
        "==genai-models-files==",
        "3 1700000000.1234567890 1000 1000 644 checkpoints/a.safetensors",
        "9 1700000001.0000000000 0 0 600 loras/with space.safetensors",
    ]
    state = fact.process(output)
    assert state["sidecar"]["files"]["checkpoints/a.safetensors"]["size"] == 3
    assert state["files"]["checkpoints/a.safetensors"] == {
        "size": 3, "mtime_ns": 1700000000123456789, "uid": 1000, "gid": 1000, "mode": "644"}
    assert state["files"]["loras/with space.safetensors"]["mode"] == "600"
    assert fact.process([]) == {"sidecar": None, "files": {}}


def test_pending_is_empty_only_when_every_file_is_verified():
    spec = {"url": "http://h/x/a.safetensors", "folder": "checkpoints", "sha256": "ab" * 32}
    civitai = {"civitai": 5, "folder": "loras"}
    files = {"checkpoints/a.safetensors": {"size": 3, "mtime_ns": 7, "uid": 1000,
                                           "gid": 1000, "mode": "644"},
             "loras/l.safetensors": {"size": 4, "mtime_ns": 8, "uid": 1000, "gid": 1000,
                                     "mode": "644"}}
    sidecar = {"files": {
        "checkpoints/a.safetensors": {"size": 3, "mtime_ns": 7, "sha256": "ab" * 32,
                                      "source": "url:http://h/x/a.safetensors"},
        "loras/l.safetensors": {"size": 4, "mtime_ns": 8, "sha256": "cd" * 32,
                                "source": "civitai:5"}}}
    state = {"sidecar": sidecar, "files": files}
    assert manifest.pending([spec, civitai], state, 1000, 1000) == []
    touched = {**files, "checkpoints/a.safetensors": {**files["checkpoints/a.safetensors"],
                                                      "mtime_ns": 9}}
    assert manifest.pending([spec], {"sidecar": sidecar, "files": touched}, 1000, 1000) == \
        [(spec, "not verified yet")]
    assert manifest.pending([spec], state, 1001, 1000) == [(spec, "owner or mode")]
    other = {**spec, "sha256": "ef" * 32}
    assert manifest.pending([other], state) == [(other, "different sha256 or source")]
    assert manifest.pending([spec], {"sidecar": None, "files": {}}) == [(spec, "missing")]


def test_models_yaml_is_validated(tmp_path):
    good = tmp_path / "models.yaml"
    good.write_text("models:\n  - {hf: org/repo, file: a.safetensors, folder: checkpoints}\n")
    (spec,) = manifest.load_manifest_file(good)
    assert spec["revision"] == "main" and spec["gated"] is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - {url: 'https://x/y.bin', folder: lora}\n  - {folder: vae}\n")
    from genai_workstation.errors import InventoryError

    with pytest.raises(InventoryError) as caught:
        manifest.load_manifest_file(bad)
    text = caught.value.render()
    assert "'lora' is not a ComfyUI model folder" in text and "needs one source" in text


def _local_inventory(tmp_path, models, user=None):
    user = user or {"name": "genai", "uid": 1000, "gid": 1000}
    return {"hosts": {"local": {"connection": {"type": "local"},
                                "workspace": str(tmp_path / "ws"), "user": user,
                                "gpu": {"mode": "none"}, "models": models}}}


def test_operation_via_pyinfra_cli_converges_and_hides_the_token(model_server, tmp_path,
                                                                pyinfra_run):
    data = b"weights" * 40000
    model_server.add_hf_file("org/gated", "main", "g.safetensors", data)
    plain = b"plain" * 1000
    model_server.add_file("p.safetensors", plain)
    models = [{"hf": "org/gated", "file": "g.safetensors", "folder": "checkpoints",
               "gated": True},
              {"url": f"{model_server.url}/files/p.safetensors", "folder": "loras",
               "sha256": hashlib.sha256(plain).hexdigest()}]
    deploy = tmp_path / "deploy_models.py"
    deploy.write_text(textwrap.dedent(f"""
        from pyinfra import host
        from genai_workstation.models.operation import synced

        data = host.data.dict()
        synced(name="Models (test)", models=data["models"], models_dir=data["models_dir"],
               user=data["user"], secrets=data["secrets"], hf_endpoint={model_server.url!r},
               python={sys.executable!r}, state_dir={str(tmp_path / "state")!r})
    """))
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"HF_TOKEN={HF_TOKEN}\n")
    secrets.chmod(0o600)
    inventory = _local_inventory(tmp_path, models)
    first = pyinfra_run(deploy, inventory, "-vvv", secrets=secrets)
    first.check()
    assert first.changed_operations["@local"] == ["Models (test)"]
    final = tmp_path / "ws" / "models" / "checkpoints" / "g.safetensors"
    assert final.read_bytes() == data
    assert any(r.authorization == f"Bearer {HF_TOKEN}" for r in model_server.log)
    assert HF_TOKEN not in first.stdout + first.stderr
    state = tmp_path / "state"
    assert (state.stat().st_mode & 0o777) == 0o700
    assert HF_TOKEN not in (state / "manifest.json").read_text()
    assert not [p for p in state.iterdir() if p.name not in ("downloader.py", "manifest.json")]

    requests_before = len(model_server.log)
    dry = pyinfra_run(deploy, inventory, dry=True, secrets=secrets)
    assert dry.ok or dry.returncode == 0, dry.describe()
    assert not dry.changed, dry.describe()
    second = pyinfra_run(deploy, inventory, "-v", secrets=secrets)
    second.check()
    assert not second.changed
    assert "all 2 files present and verified" in second.stdout + second.stderr
    assert len(model_server.log) == requests_before


def test_operation_sends_each_token_to_its_own_source_on_one_mirror(model_server, tmp_path,
                                                                    pyinfra_run):
    """Through pyinfra: `model_endpoints` in the inventory name ONE mirror for Hugging Face and
    Civitai; the server counts which token each request carried."""
    civitai_token = "".join(f"{n:x}" for n in range(16)) * 2  # fake, built at run time
    model_server.add_hf_file("org/gated", "main", "g.safetensors", b"hf" * 20000)
    model_server.add_civitai_version(31337, "style.safetensors", b"cv" * 20000)
    models = [{"hf": "org/gated", "file": "g.safetensors", "folder": "checkpoints",
               "gated": True},
              {"civitai": 31337, "folder": "loras"}]
    deploy = tmp_path / "deploy_models.py"
    deploy.write_text(textwrap.dedent(f"""
        from pyinfra import host
        from genai_workstation.models.operation import synced

        data = host.data.dict()
        endpoints = data["model_endpoints"]
        synced(name="Models (one mirror)", models=data["models"],
               models_dir=data["models_dir"], user=data["user"], secrets=data["secrets"],
               hf_endpoint=endpoints["huggingface"], civitai_endpoint=endpoints["civitai"],
               python={sys.executable!r}, state_dir={str(tmp_path / "state")!r})
    """))
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"HF_TOKEN={HF_TOKEN}\nCIVITAI_TOKEN={civitai_token}\n")
    secrets.chmod(0o600)
    inventory = _local_inventory(tmp_path, models)
    inventory["hosts"]["local"]["model_endpoints"] = {"huggingface": model_server.url,
                                                      "civitai": model_server.url}
    run = pyinfra_run(deploy, inventory, "-vvv", secrets=secrets)
    run.check()
    assert (tmp_path / "ws" / "models" / "loras" / "style.safetensors").exists()
    mirror = model_server.requests_to("127.0.0.1")
    hf = [r.authorization for r in mirror if r.path.startswith(("/api/models/", "/org/"))]
    civitai = [r.authorization for r in mirror
               if r.path.startswith(("/api/v1/", "/api/download/"))]
    assert hf and set(hf) == {f"Bearer {HF_TOKEN}"}, mirror
    assert civitai and set(civitai) == {f"Bearer {civitai_token}"}, mirror
    assert {r.authorization for r in model_server.requests_to("127.0.0.2")} == {None}
    assert HF_TOKEN not in run.stdout + run.stderr
    assert civitai_token not in run.stdout + run.stderr


@pytest.mark.hosts
def test_deploy_models_on_a_fresh_host(fresh_host, model_server, pyinfra_run, tmp_path):
    """deploys/models.py over SSH: installs python3-requests, downloads, then plans nothing."""
    data = b"fresh-host-model" * 50000
    model_server.add_file("fresh.safetensors", data)
    digest = hashlib.sha256(data).hexdigest()
    models = [{"url": f"{model_server.url}/files/fresh.safetensors", "folder": "checkpoints",
               "sha256": digest}]
    entry = fresh_host.inventory_entry(workspace="/srv/genai", gpu={"mode": "none"},
                                       user={"name": "genai", "uid": 1000, "gid": 1000},
                                       models=models)
    inventory = {"hosts": {fresh_host.name: entry}}
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"HF_TOKEN={HF_TOKEN}\n")
    secrets.chmod(0o600)
    first = pyinfra_run("deploys/models.py", inventory, "-vvv", secrets=secrets)
    first.check()
    assert HF_TOKEN not in first.stdout + first.stderr
    final = fresh_host.path("/srv/genai/models/checkpoints/fresh.safetensors")
    assert hashlib.sha256(final.read_bytes()).hexdigest() == digest
    st = final.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o644)
    dry = pyinfra_run("deploys/models.py", inventory, dry=True, secrets=secrets)
    assert dry.returncode == 0 and not dry.changed, dry.describe()
