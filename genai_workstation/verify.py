"""Turn facts read from a host into findings against its declared state (pure: no host contact)."""

from __future__ import annotations

from .findings import SKIPPED, Finding, mode4
from .gpus import GpuResolutionError, resolve_gpu
from .hostmodel import HostModel, host_model

CLOCK_SKEW_LIMIT_SECONDS = 30
# What a stack needs in RAM beyond the GPU (model offload, ComfyUI's cache): a floor, not a fit.
STACK_MEMORY_MIB = {"comfyui": 8192, "forge": 8192}
# MemTotal is "total usable RAM (i.e. physical RAM minus a few reserved bits and the kernel
# binary code)" (kernel Documentation/filesystems/proc.rst): a machine or WSL VM sized exactly
# at the floor reports a few % less, and is not short of memory.
MEM_TOTAL_SHARE = 0.95
CONVERGE = "pyinfra inventory.py deploys/workstation.py"
MODELS_DEPLOY = "pyinfra inventory.py deploys/models.py"
SITE_DEPLOY = "pyinfra inventory.py deploys/site.py"


def enabled_stacks(settings) -> list[str]:
    """Names of the stacks the host runs: comfyui, forge and custom ones, in that order."""
    return [stack.name for stack in host_model(settings).enabled_stacks()]


def evaluate_workstation(host: str, data: HostModel, facts: dict) -> list[Finding]:
    """Findings for the base workstation: platform, GPU, Docker, folders, health."""
    found: list[Finding] = []
    found += _platform(host, data, facts)
    found += _gpu(host, data, facts)
    found += _docker(host, data, facts)
    found += _folders(host, data, facts)
    found += _health(host, data, facts)
    return found


def _platform(host, data, facts) -> list[Finding]:
    platform = facts["platform"]
    found = []
    if platform.get("wsl") == 1:
        found.append(Finding(host, "platform", "WSL2", "WSL1 (no GPU, no Docker engine)",
                             "wsl.exe --set-version <distro> 2"))
    wanted = data.platform
    is_wsl2 = platform.get("wsl") == 2
    if wanted == "wsl2" and not is_wsl2:
        found.append(Finding(host, "platform", "wsl2", f"not WSL2 (kernel {platform['kernel']})",
                             "set platform: linux (or auto) in the inventory"))
    if wanted == "linux" and is_wsl2:
        found.append(Finding(host, "platform", "linux", "WSL2", "set platform: wsl2 (or auto)"))
    if is_wsl2 and facts.get("forbidden"):
        from genai_workstation.facts.packages import NVIDIA_WSL_REASON

        names = " ".join(facts["forbidden"])
        found.append(Finding(host, "Linux NVIDIA driver packages in WSL", "none installed",
                             names, f"apt-get purge {names}  ({NVIDIA_WSL_REASON})"))
    return found


def _gpu(host, data, facts) -> list[Finding]:
    if data.gpu.cpu_only:
        return [Finding(host, "GPU checks", "skipped", "gpu.mode is none (CPU-only)",
                        "set gpu.mode: nvidia to check GPUs", kind=SKIPPED)]
    gpus = facts["gpus"]
    if not gpus.get("available"):
        where = "the Windows NVIDIA driver" if facts["platform"].get("wsl") else "the NVIDIA driver"
        return [Finding(host, "GPU visible (nvidia-smi)", "at least one NVIDIA GPU",
                        gpus.get("error") or "no GPU listed",
                        f"install or repair {where}; on a machine without a GPU set gpu.mode: "
                        "none")]
    found = []
    for ref in data.gpu.expected:
        try:
            resolve_gpu(ref, gpus["gpus"])
        except GpuResolutionError as error:
            found.append(Finding(host, f"GPU {ref}", f"present ({ref})", str(error),
                                 "check the card is seated and the driver sees it, or fix "
                                 "gpu.expected in the inventory"))
    return found


def _docker(host, data, facts) -> list[Finding]:
    cli = facts["docker_cli"]
    source = data.docker.source
    found = []
    if cli.get("dangling"):
        found.append(Finding(host, "docker CLI", "a working docker command",
                             f"{cli['path']} points to missing {cli['target']}",
                             "start Docker Desktop with WSL integration for this distro, or "
                             "remove the dangling link"))
    if source == "desktop":
        if not cli.get("desktop"):
            found.append(Finding(host, "Docker Desktop", "the docker CLI of Docker Desktop",
                                 f"{cli.get('server_os') or cli.get('path') or 'no docker CLI'}",
                                 "enable WSL integration in Docker Desktop, or set "
                                 "docker.source: distro"))
        return found
    if not cli.get("daemon_running"):
        found.append(Finding(host, "Docker engine", "running", "not answering",
                             f"{CONVERGE}  (or: service docker start)"))
    if not cli.get("compose_version"):
        found.append(Finding(host, "docker compose", "Compose v2", "missing", CONVERGE))
    gpu_wanted = data.gpu.mode == "nvidia" and data.nvidia_toolkit.enabled
    if gpu_wanted:
        from genai_workstation.facts.docker import nvidia_runtime_ok

        daemon = facts["daemon_json"]
        if daemon.get("error") or not nvidia_runtime_ok(daemon.get("config") or {}):
            found.append(Finding(host, "/etc/docker/daemon.json nvidia runtime",
                                 'runtimes.nvidia.path = "nvidia-container-runtime"',
                                 daemon.get("error") or "missing or different",
                                 f"{CONVERGE}  (runs nvidia-ctk runtime configure)"))
        runtimes = facts.get("runtimes") or {}
        if cli.get("daemon_running") and "nvidia" not in runtimes.get("runtimes", []):
            found.append(Finding(host, "Docker runtimes", "nvidia registered",
                                 ", ".join(runtimes.get("runtimes", [])) or "unknown",
                                 "restart Docker after configuring the runtime: "
                                 "service docker restart"))
    return found


def _folders(host, data, facts) -> list[Finding]:
    from genai_workstation.facts.filesystem import is_windows_mount

    uid, gid = data.user.uid, data.user.gid
    found = []
    missing = [path for path, state in facts["paths"].items() if not state.get("exists")]
    found += _missing_folders(host, data, missing)
    for path, state in facts["paths"].items():
        if not state.get("exists"):
            continue
        reason = is_windows_mount(state)
        if reason:
            found.append(Finding(host, f"folder {path}", "on the Linux (ext4) filesystem",
                                 reason, "move it into the WSL filesystem; see "
                                 "`genai-models migrate` for models"))
        if (state.get("uid"), state.get("gid")) != (uid, gid):
            found.append(Finding(host, f"owner of {path}", f"{uid}:{gid}",
                                 f"{state.get('uid')}:{state.get('gid')}",
                                 f"chown {uid}:{gid} {path}  (or {CONVERGE})"))
        if mode4(state.get("mode")) != "0755":
            found.append(Finding(host, f"mode of {path}", "0755", mode4(state.get("mode")),
                                 f"chmod 755 {path}  (or {CONVERGE})"))
    for path, probe in (facts.get("probe") or {}).items():
        if not probe.get("writable") and facts["paths"].get(path, {}).get("exists", True):
            found.append(Finding(host, f"uid {uid} can write {path}", "writable",
                                 probe.get("error") or "not writable",
                                 f"chown -R {uid}:{gid} {path}  (containers run as {uid}:{gid})"))
    return found


def manifest_files(data: HostModel) -> dict[str, list[str]]:
    """{absolute folder: file names (or source keys when the name comes from the network)} of
    the host's model manifest."""
    from .models.downloader import default_name, folder_of, source_key

    models = data.layout.models_dir
    files: dict[str, list[str]] = {}
    for spec in data.models:
        name = default_name(spec) or source_key(spec)
        files.setdefault(f"{models}/{folder_of(spec)}", []).append(name)
    return files


def _missing_folders(host, data, missing: list[str]) -> list[Finding]:
    """Missing folders: those that held manifest files name the deploy that brings the files
    back too (deploys/workstation.py would recreate them empty); the others are one finding."""
    manifest = manifest_files(data)
    models_root = data.layout.models_dir
    found, empty, covered = [], [], []
    for path in sorted(missing, key=len):
        if any(path.startswith(root + "/") for root in covered):
            continue  # inside a missing folder already reported with its files
        names = [n for folder, held in manifest.items()
                 if folder == path or folder.startswith(path + "/") for n in held]
        if not names:
            empty.append(path)
            continue
        covered.append(path)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        deploy = SITE_DEPLOY if path == models_root or not path.startswith(models_root + "/") \
            else MODELS_DEPLOY
        found.append(Finding(host, f"folder {path}",
                             f"present, with its {len(names)} model file(s) of the manifest",
                             "missing", f"{deploy}  (recreates the folder and downloads {shown} "
                             f"again; {CONVERGE} alone would recreate it empty)"))
    if empty:
        more = f" and {len(empty) - 4} more" if len(empty) > 4 else ""
        found.append(Finding(host, "workspace folders", "all present",
                             f"{len(empty)} missing: {', '.join(empty[:4]) + more}", CONVERGE))
    return found


def _health(host, data, facts) -> list[Finding]:
    health = facts["health"]
    found = []
    reference = health.get("windows_epoch") or facts.get("controller_epoch")
    if reference and health.get("epoch"):
        skew = health["epoch"] - reference
        if abs(skew) > CLOCK_SKEW_LIMIT_SECONDS:
            against = "the Windows clock" if health.get("windows_epoch") else "this controller"
            found.append(Finding(host, "clock", f"within {CLOCK_SKEW_LIMIT_SECONDS} s of {against}",
                                 f"{skew:+d} s", "sudo hwclock -s  (WSL loses time after sleep; "
                                 "apt and TLS fail on a skewed clock)"))
    needed = _memory_needed(data)
    total = health.get("mem_total_mib")
    if needed and total and total < needed * MEM_TOTAL_SHARE:
        found.append(Finding(host, "memory", f">= {needed} MiB for the enabled stacks",
                             f"{total} MiB", "raise the WSL memory limit in %UserProfile%\\"
                             ".wslconfig ([wsl2] memory=...), then wsl.exe --shutdown"))
    if len(health.get("dockerd_pids") or []) > 1 or (
            health.get("dockerd_pids") and health.get("desktop_integration")
            and data.docker.source != "desktop"):
        found.append(Finding(host, "Docker daemons", "one daemon behind docker.sock",
                             f"dockerd pids {health.get('dockerd_pids')}, Docker Desktop "
                             f"integration {'on' if health.get('desktop_integration') else 'off'}",
                             "stop one of them: disable Docker Desktop's WSL integration for "
                             "this distro, or set docker.source: desktop"))
    return found


def _memory_needed(data: HostModel) -> int:
    return sum(STACK_MEMORY_MIB.get(app.stack, 0) for app in data.apps())
