"""The verify rules on recorded facts: a converged host gives no finding, each drift one."""

import copy

import pytest

from genai_workstation.findings import SKIPPED
from genai_workstation.hostmodel import host_model
from genai_workstation.loader import load_inventory
from genai_workstation.verify import evaluate_workstation

RTX_3090 = {"index": 1, "uuid": "GPU-52dc20f4-4d06-1338-85c9-c493c5dcec02",
            "name": "NVIDIA GeForce RTX 3090", "pci_bus_id": "00000000:2B:00.0",
            "memory_total_mib": 24576, "driver_version": "573.24"}
RTX_3080 = {"index": 0, "uuid": "GPU-873ec493-2856-0e4e-b7c4-47f859451051",
            "name": "NVIDIA GeForce RTX 3080", "pci_bus_id": "00000000:01:00.0",
            "memory_total_mib": 16384, "driver_version": "573.24"}


@pytest.fixture
def host_data(tmp_path):
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "hosts:\n  ws1:\n    connection: {type: local}\n    platform: wsl2\n"
        "    workspace: /home/jesse/genai\n    gpu: {expected: ['RTX 3090', 'RTX 3080']}\n"
        "    stacks: {comfyui: {gpu: 'RTX 3090'}}\n")
    env = {"GENAI_SECRETS": str(tmp_path / "none.env")}
    return load_inventory(inventory, env).hosts["ws1"]


@pytest.fixture
def converged(host_data):
    folder = {"exists": True, "kind": "directory", "fstype": "ext4", "uid": 1000, "gid": 1000,
              "mode": "755", "mount": "/"}
    return {
        "platform": {"kernel": "5.15.133.1-microsoft-standard-WSL2", "wsl": 2,
                     "wsl_distro": "Ubuntu", "dxg": True, "distro_id": "ubuntu",
                     "distro_version": "22.04", "codename": "jammy", "systemd_pid1": True,
                     "arch": "amd64"},
        "docker_cli": {"path": "/usr/bin/docker", "target": "/usr/bin/docker", "desktop": False,
                       "dangling": False, "server_os": "Ubuntu 22.04.4 LTS",
                       "server_version": "27.3.1", "compose_version": "2.29.7",
                       "daemon_running": True},
        "daemon_json": {"exists": True, "error": None, "config": {
            "log-driver": "local",
            "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}},
        "runtimes": {"runtimes": ["io.containerd.runc.v2", "nvidia", "runc"], "default": "runc"},
        "gpus": {"available": True, "error": None, "gpus": [RTX_3080, RTX_3090]},
        "forbidden": [],
        "paths": {path: dict(folder) for path in host_model(host_data).layout.tree()},
        "probe": {path: {"writable": True, "error": None}
                  for path in host_model(host_data).layout.writable()},
        "health": {"epoch": 1763900000, "windows_epoch": 1763900003, "mem_total_mib": 32000,
                   "mem_available_mib": 20000, "dockerd_pids": [412], "docker_socket":
                   "/run/docker.sock", "desktop_integration": False},
        "controller_epoch": None,
    }


def items(findings):
    return [f.item for f in findings]


def test_converged_host_has_no_finding(host_data, converged):
    assert evaluate_workstation("ws1", host_model(host_data), converged) == []


def drifted(facts, path, value):
    facts = copy.deepcopy(facts)
    target = facts
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return facts


DRIFTS = {
    "card gone": (("gpus", "gpus"), [RTX_3080], "GPU RTX 3090"),
    "driver broken": (("gpus",), {"available": False, "error": "CUDA Version: ERR!",
                                  "gpus": []}, "GPU visible (nvidia-smi)"),
    "runtime removed": (("daemon_json", "config"), {"log-driver": "local"},
                        "/etc/docker/daemon.json nvidia runtime"),
    "docker stopped": (("docker_cli", "daemon_running"), False, "Docker engine"),
    "linux driver in wsl": (("forbidden",), ["nvidia-driver-550"],
                            "Linux NVIDIA driver packages in WSL"),
    "clock after sleep": (("health", "epoch"), 1763899000, "clock"),
    "two daemons": (("health", "dockerd_pids"), [412, 977], "Docker daemons"),
    "dangling desktop cli": (("docker_cli", "dangling"), True, "docker CLI"),
    "wsl1": (("platform", "wsl"), 1, "platform"),
}


@pytest.mark.parametrize("case", sorted(DRIFTS))
def test_each_drift_is_reported(host_data, converged, case):
    path, value, item = DRIFTS[case]
    findings = evaluate_workstation("ws1", host_model(host_data), drifted(converged, path, value))
    assert item in items(findings)
    finding = next(f for f in findings if f.item == item)
    assert finding.host == "ws1" and finding.fix and finding.expected != finding.actual


def test_chowned_folder_reports_owner_and_failed_probe(host_data, converged):
    output = "/home/jesse/genai/output"
    facts = drifted(converged, ("paths", output, "uid"), 0)
    facts = drifted(facts, ("probe", output), {"writable": False, "error": "Permission denied"})
    findings = evaluate_workstation("ws1", host_model(host_data), facts)
    assert f"owner of {output}" in items(findings)
    probe = next(f for f in findings if f.item == f"uid 1000 can write {output}")
    assert probe.actual == "Permission denied" and "chown -R 1000:1000" in probe.fix


def test_folder_on_windows_drive(host_data, converged):
    models = "/home/jesse/genai/models"
    facts = drifted(converged, ("paths", models), {
        "exists": True, "kind": "directory", "fstype": "9p", "uid": 1000, "gid": 1000,
        "mode": "755", "mount": "/mnt/d"})
    finding = next(f for f in evaluate_workstation("ws1", host_model(host_data), facts)
                   if f.item == f"folder {models}")
    assert "9p" in finding.actual


def test_cpu_only_skips_gpu_checks_visibly(host_data, converged):
    host_data["gpu"]["mode"] = "none"
    host_data["nvidia_toolkit"]["enabled"] = False
    facts = drifted(converged, ("gpus",), None)
    facts = drifted(facts, ("daemon_json", "config"), {})
    findings = evaluate_workstation("ws1", host_model(host_data), facts)
    assert [(f.item, f.kind) for f in findings] == [("GPU checks", SKIPPED)]
