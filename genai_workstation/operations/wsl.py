"""WSL2: /etc/wsl.conf settings and the no-Linux-driver rule."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from genai_workstation.facts.packages import NVIDIA_WSL_REASON, ForbiddenNvidiaPackages
from genai_workstation.facts.wsl import WslConf, merge_wsl_conf
from genai_workstation.hostfacts import fact, noop, passed_at_prepare

from . import atomic

WSL_CONF = "/etc/wsl.conf"

SHUTDOWN_NOTICE = (
    "{path} changed: run `wsl.exe --shutdown` in Windows (PowerShell or cmd), then open the "
    "distribution again; WSL reads {path} only when the distribution starts"
)


def backup_command(path: str) -> StringCommand:
    """Copy `path` to `path.bak-<host time>` (keeping mode and owner) when it exists."""
    quoted = QuoteString(path)
    return StringCommand(
        "if [ -e", quoted, "]; then cp -p", quoted,
        StringCommand(QuoteString(f"{path}.bak-"), '"$(date +%Y%m%d-%H%M%S)"', _separator=""),
        "; fi",
    )


@operation()
def conf(section: str, key: str, value: str, path: str = WSL_CONF):
    """
    Set one key of /etc/wsl.conf, keeping every other section, key and comment. The old file
    is copied to ``<path>.bak-<time>`` first. Takes effect after ``wsl.exe --shutdown``.

    + section: ini section, e.g. ``boot``
    + key: key in the section, e.g. ``systemd``
    + value: wanted value, e.g. ``true``
    + path: the file (default /etc/wsl.conf)
    """
    current = fact(WslConf)
    raw = (current.get("raw") or "") if current.get("exists") else ""
    wanted = merge_wsl_conf(raw, section, key, value)
    if current.get("exists") and wanted == raw:
        host.noop(f"{path} has [{section}] {key}={value}")
        return
    if current.get("exists"):
        yield backup_command(path)
    yield from atomic.put(StringIO(wanted), path, mode="644", user="root", group="root",
                          create_remote_dir=False)


@operation()
def no_linux_driver():
    """
    Fail when a Linux NVIDIA driver package is installed inside WSL2, with NVIDIA's reason.
    Changes nothing: removing packages is left to the user.
    """
    if passed_at_prepare():
        return
    found = list(fact(ForbiddenNvidiaPackages) or [])
    if found:
        raise OperationError(
            f"Linux NVIDIA driver packages installed inside WSL2: {', '.join(found)}. "
            f"{NVIDIA_WSL_REASON} Remove them (e.g. `sudo apt-get purge {' '.join(found)}`), "
            "then run again."
        )
    noop("no Linux NVIDIA driver package installed (the Windows driver serves WSL2)")
    return
    yield  # an operation is a generator
