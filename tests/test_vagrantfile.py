"""The rehearsal Vagrantfile stays valid: the real `vagrant validate`, no VM, no network.

Skipped only when vagrant is not installed (CI: `apt-get install -y vagrant`). `-p`
(`--ignore-provider`) always runs; each provider's own validation runs where that provider is
usable here (Debian's vagrant-libvirt, which tests/setup.sh installs: its checks work without a
hypervisor; VirtualBox needs VBoxManage on PATH).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from genai_workstation.loader import load_inventory

REPO = Path(__file__).resolve().parent.parent
VAGRANTFILE = REPO / "Vagrantfile"
MACHINE = "genai-rehearsal"

needs_vagrant = pytest.mark.skipif(shutil.which("vagrant") is None,
                                   reason="vagrant is not installed (apt-get install -y vagrant)")


def vagrant(tmp_path: Path, *args: str, cwd: Path = REPO, **env: str):
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("VAGRANT_", "GENAI_VAGRANT_"))}
    environ.update({
        "VAGRANT_CWD": str(cwd),
        "VAGRANT_HOME": str(tmp_path / "vagrant.d"),      # no writes to ~/.vagrant.d
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),   # no .vagrant/ in the repository
        "VAGRANT_CHECKPOINT_DISABLE": "1",                # no version check over the network
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
        **env,
    })
    return subprocess.run(["vagrant", *args], capture_output=True, text=True, env=environ,
                          cwd=cwd, timeout=120)


@functools.cache
def libvirt_plugin() -> bool:
    with tempfile.TemporaryDirectory() as scratch:
        result = vagrant(Path(scratch), "plugin", "list")
    return "vagrant-libvirt" in result.stdout


@needs_vagrant
def test_validate_ignoring_providers(tmp_path):
    had_dotdir = (REPO / ".vagrant").exists()
    result = vagrant(tmp_path, "validate", "-p")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout
    assert (REPO / ".vagrant").exists() == had_dotdir


@needs_vagrant
@pytest.mark.parametrize("provider", ["libvirt", "virtualbox"])
def test_validate_with_provider(tmp_path, provider):
    if provider == "libvirt" and not libvirt_plugin():
        pytest.skip("the vagrant-libvirt plugin is not installed")
    if provider == "virtualbox" and shutil.which("VBoxManage") is None:
        pytest.skip("VirtualBox is not installed (no VBoxManage); covered by validate -p")
    result = vagrant(tmp_path, "validate", VAGRANT_DEFAULT_PROVIDER=provider)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_vagrant
def test_libvirt_validation_catches_a_typo(tmp_path):
    """Proves the provider-level check is real: a misspelt libvirt option fails."""
    if not libvirt_plugin():
        pytest.skip("the vagrant-libvirt plugin is not installed")
    copy = tmp_path / "copy"
    copy.mkdir()
    text = VAGRANTFILE.read_text()
    assert "libvirt.cpus = CPUS" in text
    (copy / "Vagrantfile").write_text(text.replace("libvirt.cpus = CPUS", "libvirt.cpuz = CPUS"))
    result = vagrant(tmp_path, "validate", cwd=copy, VAGRANT_DEFAULT_PROVIDER="libvirt")
    assert result.returncode != 0
    assert "cpuz" in result.stdout + result.stderr


@needs_vagrant
@pytest.mark.parametrize(("variable", "value"), [
    ("GENAI_VAGRANT_MEMORY", "lots"),
    ("GENAI_VAGRANT_CPUS", "0"),
    ("GENAI_VAGRANT_IP", "192.168.56"),
    ("GENAI_VAGRANT_BOX", "ubuntu 24.04"),
])
def test_bad_settings_are_refused_with_the_variable_named(tmp_path, variable, value):
    result = vagrant(tmp_path, "validate", "-p", **{variable: value})
    assert result.returncode != 0
    assert f"{variable}=" in result.stdout + result.stderr


@needs_vagrant
def test_settings_from_environment(tmp_path):
    result = vagrant(tmp_path, "validate", "-p", GENAI_VAGRANT_MEMORY="4096",
                     GENAI_VAGRANT_CPUS="2", GENAI_VAGRANT_IP="192.168.57.20",
                     GENAI_VAGRANT_BOX="cloud-image/ubuntu-24.04")
    assert result.returncode == 0, result.stdout + result.stderr


def _code_lines() -> list[str]:
    return [line.split("#", 1)[0] for line in VAGRANTFILE.read_text().splitlines()
            if line.split("#", 1)[0].strip()]


def test_shape_nothing_provisioned_private_network_no_synced_folder():
    code = "\n".join(_code_lines())
    assert ".provision" not in code, "Vagrant must not provision: pyinfra owns the machine"
    assert re.search(r'synced_folder "\.", "/vagrant", disabled: true', code)
    assert re.search(r'vm\.network "private_network", ip: IP', code)
    assert 'provider "libvirt"' in code and 'provider "virtualbox"' in code
    assert f'NAME = "{MACHINE}"' in code


def test_example_inventory_matches_the_vagrantfile():
    inventory = load_inventory(REPO / "inventory" / "examples" / "vagrant.yaml", environ={})
    settings = inventory.hosts[MACHINE]
    assert settings["gpu"]["mode"] == "none"
    assert settings["nvidia_toolkit"]["enabled"] is False
    assert settings["connection"]["host"] == "192.168.56.10"
    assert '"GENAI_VAGRANT_IP", "192.168.56.10"' in VAGRANTFILE.read_text()
    assert settings["connection"]["key"].startswith(f".vagrant/machines/{MACHINE}/")
    assert settings["user"]["uid"] != 1000  # the box's vagrant user has uid 1000
