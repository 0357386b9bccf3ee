"""The package installs: `pip install .` (not editable) into a fresh venv gives working
genai-drift, genai-models and genai-import from any folder, with templates, schema, facts and
deploys found inside the installed package, and nothing in site-packages but the project's own
names.

The wheel is built from a copy holding only what pyproject.toml packs (no checkout to fall back
on), by pip with build isolation (setuptools from the package index, as `pip install .` does).
The fresh venv sees the dependencies through a .pth line to this venv's site-packages (a path
added by a .pth line is not scanned for .pth files, so this venv's editable install stays out).
genai-drift then runs the shipped site deploy against this machine (@local, read-only: a drift
check executes nothing), genai-models downloads from a real loopback HTTP server and
genai-import drafts an inventory the schema accepts.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

from tests.harness.docker_engine import find_compose_binary

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PRODUCT = ("genai_workstation", "facts", "deploys")  # files/*.py run inside the containers
PACKED = ("pyproject.toml", "README.md", "genai_workstation", "facts", "deploys", "files",
          "inventory")


def _top_level_imports(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return names


def _requirement_name(requirement: str) -> str:
    for mark in "<>=!~[; ":
        requirement = requirement.split(mark)[0]
    return requirement.lower().replace("_", "-")


def test_dependencies_are_what_the_code_imports():
    imported = set().union(*(_top_level_imports(REPO / folder) for folder in PRODUCT))
    assert imported & {"facts", "deploys"} == set(), (
        "import genai_workstation.facts / genai_workstation.deploys.steps: a wheel has no "
        "top-level facts or deploys")
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", *PRODUCT}
    distributions = packages_distributions()
    missing = [name for name in third_party if name not in distributions]
    assert not missing, f"imported but not installed: {missing}"
    needed = {_requirement_name(distributions[name][0]) for name in third_party}
    declared = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert needed - declared == set(), "imported, not declared in pyproject.toml"
    assert declared - needed == set(), "declared, never imported: drop it or say why"


def test_tests_and_benchmarks_import_facts_by_the_package_name():
    """`facts.gpu` and `genai_workstation.facts.gpu` would be two modules, two classes of each
    fact: pyinfra would read and cache the same fact twice."""
    for folder in ("tests", "bench"):
        assert _top_level_imports(REPO / folder) & {"facts", "deploys"} == set(), folder


def test_every_package_is_listed_with_its_folder():
    """A package missing from pyproject's explicit list would be left out of the wheel."""
    listed = {REPO / _folder(name) for name in SETUPTOOLS["packages"]}
    on_disk = {path.parent for folder in PRODUCT
               for path in (REPO / folder).rglob("__init__.py")}
    assert on_disk - listed == set(), "add these packages to [tool.setuptools] packages"
    assert all(path.is_dir() for path in listed)


def _folder(package: str) -> Path:
    """The folder of a package, as setuptools finds it from `package-dir`."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        mapped = SETUPTOOLS["package-dir"].get(".".join(parts[:cut]))
        if mapped:
            return Path(mapped, *parts[cut:])
    return Path(*parts)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the project installed from a wheel; its bin folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.secrets.env", "secrets.env")
    for name in PACKED:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                             "--no-deps", str(source)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return venv


def _site_packages(venv: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))


def _run(venv: Path, command: str, *args: str, cwd: Path,
         env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("GENAI_INVENTORY", "GENAI_SECRETS", "PYTHONPATH")
             and not k.endswith(("_TOKEN", "_AUTH", "_PASSWORD", "_SECRET", "_KEY"))}
    clean.update({"GENAI_SECRETS": str(cwd / "no-secrets.env"), **(env or {})})
    return subprocess.run([str(venv / "bin" / command), *args], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.mark.install
def test_wheel_installs_only_the_projects_own_names(installed):
    dist_info = next(_site_packages(installed).glob("genai_workstation-*.dist-info"))
    record = [line.split(",")[0] for line in (dist_info / "RECORD").read_text().splitlines()]
    top = {path.split("/")[0] for path in record if not path.startswith("..")}
    assert top == {"genai_workstation", dist_info.name}
    assert (dist_info / "top_level.txt").read_text().split() == ["genai_workstation"]
    for shipped in ("facts/gpu.py", "deploys/site.py", "deploys/steps/verify.py",
                    "files/comfyui/compose.yaml.j2", "files/forge/Dockerfile",
                    "inventory/schema.json"):
        assert f"genai_workstation/{shipped}" in record, shipped
    assert not [p for p in record if "secrets.env" in p or "workstation.yaml" in p]


@pytest.mark.install
def test_installed_commands_run_from_any_folder(installed, tmp_path, model_server):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in ("genai-drift", "genai-models", "genai-import"):
        shown = _run(installed, command, "--help", cwd=elsewhere)
        assert shown.returncode == 0, shown.stderr
        assert "exit" in shown.stdout.lower()

    (elsewhere / "docker-compose.yml").write_text(yaml.safe_dump({"services": {"comfy": {
        "image": "yanwenkun/comfyui-boot:cu124", "ports": ["8188:8188"]}}}))
    imported = _run(installed, "genai-import", "compose", "docker-compose.yml", cwd=elsewhere)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert "the inventory loader accepts it" in imported.stdout  # validated by the schema
    draft = yaml.safe_load((elsewhere / "imported.yaml").read_text())
    assert draft["hosts"]["local"]["stacks"] == {"comfyui": {"port": 8188}}

    data = b"installed weights " * 4096
    model_server.add_file("tiny.safetensors", data)
    host = {"connection": {"type": "local"}, "platform": "linux",
            "user": {"name": "genaipkgtest", "uid": 1731, "gid": 1731},
            "workspace": str(tmp_path / "genai"), "gpu": {"mode": "none"},
            "docker": {"source": "distro", "compose_plugin_path": str(find_compose_binary())},
            "stacks": {"comfyui": {"port": 8188}},
            "models": [{"url": f"{model_server.url}/files/tiny.safetensors",
                        "folder": "loras", "sha256": hashlib.sha256(data).hexdigest()}]}
    inventory = tmp_path / "checkout" / "inventory" / "workstation.yaml"
    inventory.parent.mkdir(parents=True)
    inventory.write_text(yaml.safe_dump({"hosts": {"here": host}}, sort_keys=False))

    models = tmp_path / "models"
    synced = _run(installed, "genai-models", "sync", "--inventory", str(inventory),
                  "--models-dir", str(models), "--format", "json", cwd=elsewhere)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert (models / "loras" / "tiny.safetensors").read_bytes() == data

    # The shipped site deploy planned against this machine: the plan renders the ComfyUI
    # stack from the shipped templates; an error (a missing file, an import) is a finding.
    drift = _run(installed, "genai-drift", "--format", "json", cwd=elsewhere,
                 env={"GENAI_INVENTORY": str(inventory)})
    assert drift.returncode == 2, drift.stdout[-3000:] + drift.stderr[-3000:]
    findings = json.loads(drift.stdout)["findings"]
    assert [f for f in findings if f["kind"] == "error"] == []
    assert any(f["kind"] == "config" and f["item"].startswith("Stack | Stack comfyui")
               for f in findings), findings

    # The default inventory of an installed package is the current folder's.
    from_checkout = _run(installed, "genai-drift", "--format", "json",
                         cwd=inventory.parent.parent)
    assert from_checkout.returncode == 2, from_checkout.stderr[-3000:]
    assert json.loads(from_checkout.stdout)["hosts"] == ["here"]

    inventory.write_text(inventory.read_text().replace("workspace:", "worksapce:"))
    broken = _run(installed, "genai-models", "sync", "--inventory", str(inventory),
                  cwd=elsewhere)
    assert broken.returncode == 1 and "unknown key 'worksapce'" in broken.stderr
