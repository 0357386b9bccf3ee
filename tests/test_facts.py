"""Fact tests: JSON cases (pyinfra's format), the pure helpers, and real runs against @local."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra_testing.facts import make_fact_tests

from genai_workstation.facts.docker import nvidia_runtime_ok
from genai_workstation.facts.filesystem import is_windows_mount
from genai_workstation.facts.packages import NVIDIA_WSL_REASON
from genai_workstation.facts.wsl import merge_wsl_conf, parse_wsl_conf
from genai_workstation.gpus import GpuResolutionError, cuda_index, resolve_gpu

REPO = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "facts"

# One TestCase class per tests/facts/<module>.<FactName>/ folder.
for _folder in sorted(p for p in CASES.iterdir() if p.is_dir()):
    _cls = make_fact_tests("genai_workstation.facts", _folder.name, _folder)
    _cls.__name__ = f"TestFact_{_folder.name.replace('.', '_')}"
    globals()[_cls.__name__] = _cls
del _folder, _cls


# --- genai_workstation.gpus -----------------------------------------------------------------

UUID_3090 = "GPU-873ec493-2856-0e4e-b7c4-47f859451051"
UUID_3080 = "GPU-52dc20f4-4d06-1338-85c9-c493c5dcec02"

# nvidia-smi's index 0 is the 3080, but the 3090 sits on the lower PCI bus: with
# CUDA_DEVICE_ORDER=PCI_BUS_ID the 3090 is CUDA device 0 and the 3080 device 1.
TWO_CARDS = [
    {
        "index": 0,
        "uuid": UUID_3080,
        "name": "NVIDIA GeForce RTX 3080",
        "pci_bus_id": "00000000:2D:00.0",
        "memory_total_mib": 10240,
        "driver_version": "573.24",
    },
    {
        "index": 1,
        "uuid": UUID_3090,
        "name": "NVIDIA GeForce RTX 3090",
        "pci_bus_id": "00000000:01:00.0",
        "memory_total_mib": 24576,
        "driver_version": "573.24",
    },
]


def test_resolve_by_index_uuid_and_name():
    assert resolve_gpu(0, TWO_CARDS)["uuid"] == UUID_3080
    assert resolve_gpu("1", TWO_CARDS)["uuid"] == UUID_3090
    assert resolve_gpu("0", TWO_CARDS)["uuid"] == UUID_3080  # "0" is in "3080", not a word
    assert resolve_gpu(UUID_3090, TWO_CARDS)["index"] == 1
    assert resolve_gpu("gpu-52dc", TWO_CARDS)["index"] == 0
    assert resolve_gpu("RTX 3090", TWO_CARDS)["index"] == 1
    assert resolve_gpu("rtx 3080", TWO_CARDS)["index"] == 0
    assert resolve_gpu("3090", TWO_CARDS)["index"] == 1  # digits in a name: a name fragment


def test_nvidia_smi_index_and_cuda_order_differ():
    rtx3090 = resolve_gpu("RTX 3090", TWO_CARDS)
    rtx3080 = resolve_gpu("3080", TWO_CARDS)
    assert (rtx3090["index"], cuda_index(rtx3090, TWO_CARDS)) == (1, 0)
    assert (rtx3080["index"], cuda_index(rtx3080, TWO_CARDS)) == (0, 1)
    # a copy (e.g. from JSON) is found by UUID
    assert cuda_index(dict(rtx3090), TWO_CARDS) == 0


def test_pci_order_is_numeric_not_textual():
    gpus = [
        {"index": 0, "uuid": "GPU-a", "name": "A", "pci_bus_id": "0000:0A:00.0"},
        {"index": 1, "uuid": "GPU-b", "name": "B", "pci_bus_id": "00000000:09:00.0"},
    ]
    assert cuda_index(gpus[0], gpus) == 1
    assert cuda_index(gpus[1], gpus) == 0


def test_ambiguous_name_lists_the_matches():
    with pytest.raises(GpuResolutionError) as error:
        resolve_gpu("GeForce", TWO_CARDS)
    message = str(error.value)
    assert "'GeForce'" in message and "ambiguous" in message
    assert "index 0: NVIDIA GeForce RTX 3080" in message
    assert UUID_3090 in message


def test_two_identical_cards_need_index_or_uuid():
    twins = [dict(TWO_CARDS[1]), dict(TWO_CARDS[1], index=0, uuid=UUID_3080)]
    with pytest.raises(GpuResolutionError, match="ambiguous"):
        resolve_gpu("NVIDIA GeForce RTX 3090", twins)
    assert resolve_gpu(UUID_3080, twins)["index"] == 0


@pytest.mark.parametrize("ref", [2, "RTX 4090", "GPU-ffff", True, 3.0, ""])
def test_unknown_ref_names_it_and_lists_gpus(ref):
    with pytest.raises(GpuResolutionError) as error:
        resolve_gpu(ref, TWO_CARDS)
    message = str(error.value)
    assert repr(ref) in message
    assert "index 1: NVIDIA GeForce RTX 3090 (" + UUID_3090 + ")" in message
    assert isinstance(error.value, ValueError)


def test_no_gpus_at_all():
    with pytest.raises(GpuResolutionError, match="no GPUs found"):
        resolve_gpu(0, [])
    with pytest.raises(GpuResolutionError):
        cuda_index(TWO_CARDS[0], [])


# --- facts.docker.nvidia_runtime_ok ---------------------------------------------------------


@pytest.mark.parametrize(
    "nvidia, ok",
    [
        ({"path": "nvidia-container-runtime", "args": []}, True),
        ({"path": "nvidia-container-runtime", "runtimeArgs": []}, True),
        ({"path": "/usr/bin/nvidia-container-runtime"}, True),
        ({"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": ["--debug"]}, False),
        ({"path": "nvidia-container-runtime", "args": ["--debug"]}, False),
        ({"path": "nvidia-container-runtime", "args": [], "runtimeArgs": ["-x"]}, False),
        ({"path": "nvidia-container-runtime", "args": None}, False),
        ({"path": "runc"}, False),
        ({"path": "my-nvidia-container-runtime"}, False),
        ({"path": "/opt/nvidia-container-runtime-wrapper"}, False),
        ({}, False),
    ],
)
def test_nvidia_runtime_ok(nvidia, ok):
    assert nvidia_runtime_ok({"runtimes": {"nvidia": nvidia}}) is ok


def test_nvidia_runtime_missing():
    assert nvidia_runtime_ok({}) is False
    assert nvidia_runtime_ok({"runtimes": {"runc": {"path": "runc"}}}) is False
    assert nvidia_runtime_ok({"runtimes": []}) is False


# --- facts.filesystem.is_windows_mount ------------------------------------------------------


def test_is_windows_mount():
    assert is_windows_mount({"exists": True, "fstype": "ext4", "mount": "/"}) is None
    assert is_windows_mount({"fstype": "overlay", "mount": "/usr/lib/wsl/lib"}) is None
    assert is_windows_mount({"exists": False, "fstype": None, "mount": None}) is None
    assert "9p" in is_windows_mount({"exists": True, "fstype": "9p", "mount": "/mnt/c"})
    assert "drvfs" in is_windows_mount({"fstype": "drvfs", "mount": "/mnt/c"})
    assert "virtiofs" in is_windows_mount({"fstype": "virtiofs", "mount": "/mnt/e"})
    assert "/mnt/d" in is_windows_mount({"fstype": "fuseblk", "mount": "/mnt/d"})
    assert is_windows_mount({"fstype": "ext4", "mount": "/mnt/data"}) is None
    assert is_windows_mount({}) is None


def test_nvidia_wsl_reason_says_why():
    assert "libcuda" in NVIDIA_WSL_REASON and "/usr/lib/wsl/lib" in NVIDIA_WSL_REASON


# --- facts.wsl.merge_wsl_conf ---------------------------------------------------------------

WSL_CONF = (
    "# managed by hand\n"
    "[boot]\n"
    "systemd = false   \n"
    "command = service docker start\n"
    "\n"
    "[automount]\n"
    "; DrvFs options\n"
    'options = "metadata,umask=022"\n'
    "\n"
    "[network]\n"
    "hostname = gpu-box\n"
)


def test_merge_changes_only_the_value():
    merged = merge_wsl_conf(WSL_CONF, "boot", "systemd", "true")
    assert merged == WSL_CONF.replace("systemd = false   \n", "systemd = true   \n")
    assert parse_wsl_conf(merged)["boot"]["systemd"] == "true"


def test_merge_is_a_no_op_when_set():
    conf = WSL_CONF.replace("systemd = false", "systemd = true")
    assert merge_wsl_conf(conf, "boot", "systemd", "true") is conf
    assert merge_wsl_conf(conf, "automount", "options", "metadata,umask=022") is conf
    # section and key names match case-insensitively
    assert merge_wsl_conf(conf, "Boot", "SystemD", "true") is conf


def test_merge_adds_key_after_the_section_settings():
    merged = merge_wsl_conf(WSL_CONF, "automount", "enabled", "true")
    assert merged == WSL_CONF.replace(
        'options = "metadata,umask=022"\n', 'options = "metadata,umask=022"\nenabled=true\n'
    )


def test_merge_appends_a_missing_section():
    merged = merge_wsl_conf(WSL_CONF, "interop", "appendWindowsPath", "false")
    assert merged == WSL_CONF + "\n[interop]\nappendWindowsPath=false\n"
    assert merge_wsl_conf("", "boot", "systemd", "true") == "[boot]\nsystemd=true\n"
    assert merge_wsl_conf("[boot]\nsystemd=false", "boot", "systemd", "true") == (
        "[boot]\nsystemd=true"
    )
    assert merge_wsl_conf("# x", "boot", "systemd", "true") == "# x\n\n[boot]\nsystemd=true\n"


def test_merge_ignores_commented_keys_and_keeps_crlf():
    conf = "[boot]\r\n# systemd=false\r\n"
    assert merge_wsl_conf(conf, "boot", "systemd", "true") == (
        "[boot]\r\nsystemd=true\r\n# systemd=false\r\n"
    )
    conf = "[boot]\r\nsystemd=false\r\n"
    assert merge_wsl_conf(conf, "boot", "systemd", "true") == "[boot]\r\nsystemd=true\r\n"


def test_merge_does_not_touch_same_key_in_other_sections():
    conf = "[user]\ndefault=root\n[boot]\n"
    assert (
        merge_wsl_conf(conf, "boot", "default", "x") == "[user]\ndefault=root\n[boot]\ndefault=x\n"
    )


# --- the real commands on this machine, through the pyinfra CLI -----------------------------

PYINFRA = Path(sys.executable).with_name("pyinfra")


def _local_fact(fact: str, *args: str):
    if not PYINFRA.exists() or shutil.which("sh") is None:
        pytest.skip("pyinfra CLI not next to this Python")
    result = subprocess.run(
        [str(PYINFRA), "@local", "fact", fact, *args, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    data = json.loads(result.stdout)
    ((key, hosts),) = data.items()
    assert key.startswith(fact)
    return hosts["@local"]


def test_local_platform():
    data = _local_fact("facts.platform.Platform")
    assert data["kernel"] == Path("/proc/sys/kernel/osrelease").read_text().strip()
    assert data["distro_id"] and data["arch"]
    assert isinstance(data["dxg"], bool) and isinstance(data["systemd_pid1"], bool)
    assert data["wsl"] in (None, 1, 2)
    pid1 = Path("/proc/1/comm").read_text().strip()
    assert data["systemd_pid1"] is (pid1 == "systemd")


def test_local_path_states(tmp_path):
    (tmp_path / "a dir").mkdir()
    (tmp_path / "it's a file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    paths = [
        str(tmp_path / "a dir"),
        str(tmp_path / "it's a file"),
        str(tmp_path / "dangling"),
        str(tmp_path / "missing" / "deeper"),
        "/",
    ]
    data = _local_fact("facts.filesystem.PathStates", "paths=" + json.dumps(paths))
    assert list(data) == paths
    a_dir, a_file, dangling, missing, root = (data[p] for p in paths)
    assert (
        a_dir["exists"]
        and a_dir["kind"] == "directory"
        and a_dir["uid"] == Path(paths[0]).stat().st_uid
    )
    assert a_file["kind"] == "file" and a_file["mode"] == format(
        Path(paths[1]).stat().st_mode & 0o7777, "o"
    )
    assert dangling["exists"] and dangling["kind"] == "link"
    assert missing == {"exists": False, "fstype": a_dir["fstype"], "mount": a_dir["mount"]}
    assert root["kind"] == "directory" and root["mount"] == "/" and root["fstype"]


def test_local_daemon_json():
    data = _local_fact("facts.docker.DaemonJson")
    assert data["exists"] is Path("/etc/docker/daemon.json").exists()
    assert isinstance(data["config"], dict)


def test_local_nvidia_gpus():
    data = _local_fact("facts.gpu.NvidiaGpus")
    if shutil.which("nvidia-smi") or Path("/usr/lib/wsl/lib/nvidia-smi").exists():
        pytest.skip("this machine has nvidia-smi")
    assert data == {
        "available": False,
        "error": "nvidia-smi not found (PATH, /usr/lib/wsl/lib)",
        "gpus": [],
    }


def test_local_forbidden_nvidia_packages():
    data = _local_fact("facts.packages.ForbiddenNvidiaPackages")
    assert isinstance(data, list)
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Status}\n"], capture_output=True, text=True
    ).stdout.splitlines()
    installed = {line.split()[0] for line in listed if line.endswith(" installed")}
    assert set(data) <= installed
