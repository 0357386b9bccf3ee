"""NVIDIA: the container toolkit from NVIDIA's apt repository, CDI, and the GPUs expected."""

from __future__ import annotations

from io import StringIO

from pyinfra import host, logger
from pyinfra.api import OperationError, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File
from pyinfra.operations import apt

from genai_workstation.facts.gpu import NvidiaGpus
from genai_workstation.facts.platform import Platform
from genai_workstation.gpus import GpuResolutionError, resolve_gpu
from genai_workstation.hostfacts import fact, noop, passed_at_prepare, read_once

from . import atomic, packages

KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
LIST_NAME = "nvidia-container-toolkit"
LIST_FILE = f"/etc/apt/sources.list.d/{LIST_NAME}.list"
TOOLKIT_PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)
CDI_SPEC = "/etc/cdi/nvidia.yaml"

# apt-get update of the NVIDIA list alone; a wrong key (NO_PUBKEY) only warns and exits 0 when
# older lists are cached, so any W:/E: line fails the command too.
UPDATE_COMMAND = (
    "out=$(apt-get update"
    f" -o Dir::Etc::sourcelist=sources.list.d/{LIST_NAME}.list"
    " -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0"
    " -o APT::Update::Error-Mode=any 2>&1); rc=$?; printf '%s\\n' \"$out\"; "
    "if [ $rc -ne 0 ] || printf '%s\\n' \"$out\" | grep -qE '^(W|E): '; then "
    "echo 'apt-get update of the NVIDIA container toolkit repository failed (see above): "
    "check nvidia_toolkit.repo_url and gpgkey_url' >&2; exit 1; fi"
)


def pinned_version(version: str) -> str:
    """NVIDIA's packages are versioned ``<version>-1``; a full ``1.17.8-1`` is kept."""
    return version if "-" in version else f"{version}-1"


def list_line(repo_url: str, arch: str, keyring: str = KEYRING) -> str:
    return f"deb [signed-by={keyring}] {repo_url.replace('$(ARCH)', arch)} /\n"


@operation()
def toolkit(version: str, repo_url: str, gpgkey_url: str):
    """
    NVIDIA's apt repository (key dearmored to /usr/share/keyrings, list file as NVIDIA
    publishes it plus ``signed-by``) and the four toolkit packages pinned to ``<version>-1``.
    The repository's lists are refreshed only when a package is to be installed, and a failed
    refresh (wrong key, wrong URL) fails the operation.

    + version: toolkit version, e.g. ``1.17.8``
    + repo_url: repository URL; ``$(ARCH)`` becomes the dpkg architecture (the inventory's
      ``nvidia_toolkit.repo_url``, NVIDIA's by default)
    + gpgkey_url: the repository's ASCII-armored key (``nvidia_toolkit.gpgkey_url``)
    """
    platform = read_once(Platform)
    pinned = pinned_version(version)
    wanted = [f"{name}={pinned}" for name in TOOLKIT_PACKAGES]

    yield from packages.install._inner(packages=["ca-certificates", "curl", "gpg"])
    yield from apt.key._inner(src=gpgkey_url, dest=KEYRING)
    yield from atomic.put(
        StringIO(list_line(repo_url, platform.get("arch") or "amd64")),
        LIST_FILE, mode="644", user="root", group="root",
    )
    missing = packages.missing_packages(wanted, fact(DebPackages))
    if not missing:
        host.noop(f"NVIDIA container toolkit {pinned} installed")
        return
    yield UPDATE_COMMAND
    yield from apt.packages._inner(packages=wanted, allow_downgrades=True)


@operation()
def cdi(output: str = CDI_SPEC):
    """
    Generate the CDI spec with ``nvidia-ctk cdi generate`` when it does not exist yet (on WSL2
    it holds the single device ``nvidia.com/gpu=all``).

    + output: where the spec goes
    """
    if fact(File, path=output):
        host.noop(f"{output} exists")
        return
    yield f"nvidia-ctk cdi generate --output={output}"


def describe_gpus(gpus: list[dict]) -> str:
    if not gpus:
        return "none"
    return "; ".join(
        f"{gpu.get('index')}: {gpu.get('name')} ({gpu.get('uuid')}, {gpu.get('pci_bus_id')})"
        for gpu in gpus
    )


@operation()
def gpus(expected: list | None = None):
    """
    The GPUs the inventory names (``gpu.expected``: index, UUID or part of the name) must be
    visible to nvidia-smi. With none named, a host without a visible GPU only gets a warning:
    the toolkit installs without one, and the verify deploy reports it as a failure.

    + expected: GPU references from the inventory
    """
    expected = list(expected or [])
    if passed_at_prepare():
        return
    found = fact(NvidiaGpus)
    visible = found.get("gpus") or []
    if not found.get("available"):
        reason = (found.get("error") or "nvidia-smi lists no GPU").rstrip(".")
        if expected:
            raise OperationError(
                f"gpu.expected names {', '.join(map(str, expected))} but no GPU is visible: "
                f"{reason}. On WSL2 install or update the NVIDIA driver in Windows (never "
                "inside WSL); on Linux install the NVIDIA driver; or set `gpu.mode: none`"
            )
        logger.warning(
            f"{host.print_prefix}no NVIDIA GPU visible ({reason}); the container toolkit is "
            "installed anyway, containers get a GPU once the driver works (verify checks it)"
        )
        noop("no GPU visible; none expected")
        return

    problems = []
    for ref in expected:
        try:
            resolve_gpu(ref, visible)
        except GpuResolutionError as error:
            problems.append(str(error))
    if problems:
        raise OperationError("gpu.expected: " + "; ".join(problems))
    noop(f"GPUs: {describe_gpus(visible)}")
    return
    yield  # an operation is a generator
