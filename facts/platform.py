"""Facts about the operating system, WSL and the Docker command line."""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase

_DPKG_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "i686": "i386",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def wsl_version(kernel: str | None, dxg: bool = False) -> int | None:
    """WSL generation from the kernel release: 1, 2 or None (not WSL).

    WSL1 fakes a kernel ending in ``-Microsoft`` (``4.4.0-19041-Microsoft``); WSL2 kernels
    contain ``microsoft-standard`` (``5.15.133.1-microsoft-standard-WSL2``). A custom WSL2
    kernel without those words is still recognised by ``/dev/dxg``.
    """
    kernel = kernel or ""
    if "microsoft-standard" in kernel.lower() or "wsl2" in kernel.lower():
        return 2
    if "Microsoft" in kernel:
        return 1
    if "microsoft" in kernel.lower() or dxg:
        return 2
    return None


class Platform(FactBase):
    """
    Returns the kernel, WSL generation and distribution of the host.

    .. code:: python

        {
            "kernel": "5.15.133.1-microsoft-standard-WSL2",
            "wsl": 2,  # 1, 2 or None
            "wsl_distro": "Ubuntu",  # WSL_DISTRO_NAME, or None
            "dxg": True,  # /dev/dxg exists (WSL2 GPU paravirtualisation)
            "distro_id": "ubuntu",
            "distro_version": "22.04",
            "codename": "jammy",
            "systemd_pid1": True,
            "arch": "amd64",
        }
    """

    def command(self) -> str:
        return (
            "printf 'kernel=%s\\n' \"$(uname -r)\"; "
            "printf 'machine=%s\\n' \"$(uname -m)\"; "
            'd="${WSL_DISTRO_NAME:-}"; '
            'if [ -z "$d" ]; then '
            "d=$(grep -z -h '^WSL_DISTRO_NAME=' /proc/[0-9]*/environ 2>/dev/null "
            "| tr '\\000' '\\n' | head -n 1 | cut -d= -f2-); fi; "
            "printf 'wsl_distro=%s\\n' \"$d\"; "
            "if [ -e /dev/dxg ]; then echo dxg=1; else echo dxg=0; fi; "
            "printf 'pid1=%s\\n' \"$(cat /proc/1/comm 2>/dev/null)\"; "
            "printf 'arch=%s\\n' \"$(dpkg --print-architecture 2>/dev/null)\"; "
            "for f in /etc/os-release /usr/lib/os-release; do "
            'if [ -r "$f" ]; then sed \'s/^/os:/\' "$f"; break; fi; done; true'
        )

    def process(self, output: list[str]):
        values: dict[str, str] = {}
        os_release: dict[str, str] = {}
        for line in output:
            if line.startswith("os:"):
                key, sep, value = line[3:].partition("=")
                if sep:
                    os_release[key.strip()] = _unquote(value)
                continue
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value.strip()

        kernel = values.get("kernel") or None
        dxg = values.get("dxg") == "1"
        arch = values.get("arch") or _DPKG_ARCH.get(values.get("machine", "")) or None
        return {
            "kernel": kernel,
            "wsl": wsl_version(kernel, dxg),
            "wsl_distro": values.get("wsl_distro") or None,
            "dxg": dxg,
            "distro_id": os_release.get("ID", "").lower() or None,
            "distro_version": os_release.get("VERSION_ID") or None,
            "codename": (
                os_release.get("VERSION_CODENAME") or os_release.get("UBUNTU_CODENAME") or None
            ),
            "systemd_pid1": values.get("pid1") == "systemd",
            "arch": arch,
        }


_DOCKER_DESKTOP_PREFIX = "/mnt/wsl/docker-desktop"


class DockerCli(FactBase):
    """
    Returns where the ``docker`` command lives and what it talks to; works without Docker.

    .. code:: python

        {
            "path": "/usr/bin/docker",  # or None when there is no docker command
            "target": "/mnt/wsl/docker-desktop/cli-tools/usr/bin/docker",  # link target or None
            "desktop": True,  # Docker Desktop's CLI link or daemon
            "dangling": False,  # path is a link whose target is missing
            "server_os": "Docker Desktop",  # docker info OperatingSystem, None if unreachable
            "server_version": "28.5.1",
            "compose_version": "2.40.3",  # docker compose version --short, None if missing
            "daemon_running": True,
        }
    """

    def command(self) -> str:
        info_format = "{{.OperatingSystem}}|{{.ServerVersion}}"
        return (
            "p=$(command -v docker 2>/dev/null); "
            'if [ -z "$p" ]; then for c in /usr/bin/docker /usr/local/bin/docker; do '
            'if [ -L "$c" ] || [ -e "$c" ]; then p=$c; break; fi; done; fi; '
            'if [ -n "$p" ]; then '
            'echo "path=$p"; '
            'if [ -L "$p" ]; then echo "target=$(readlink -m "$p")"; '
            '[ -e "$p" ] || echo dangling=1; fi; '
            'if [ -x "$p" ]; then '
            f"if i=$(\"$p\" info --format '{info_format}' 2>/dev/null); "
            'then echo "info=$i"; fi; '
            'if v=$("$p" compose version --short 2>/dev/null); then echo "compose=$v"; fi; '
            "fi; fi; true"
        )

    @staticmethod
    def default():
        return {
            "path": None,
            "target": None,
            "desktop": False,
            "dangling": False,
            "server_os": None,
            "server_version": None,
            "compose_version": None,
            "daemon_running": False,
        }

    def process(self, output: list[str]):
        data = self.default()
        for line in output:
            key, sep, value = line.partition("=")
            if not sep:
                continue
            value = value.strip()
            if key == "path":
                data["path"] = value or None
            elif key == "target":
                data["target"] = value or None
            elif key == "dangling":
                data["dangling"] = True
            elif key == "info":
                server_os, _, version = value.rpartition("|")
                data["server_os"] = server_os.strip() or None
                data["server_version"] = version.strip() or None
                data["daemon_running"] = bool(version.strip())
            elif key == "compose":
                match = re.search(r"\d+(?:\.\d+)+\S*", value)
                data["compose_version"] = match.group(0) if match else None

        target = data["target"] or ""
        data["desktop"] = (
            target == _DOCKER_DESKTOP_PREFIX
            or target.startswith(_DOCKER_DESKTOP_PREFIX + "/")
            or data["server_os"] == "Docker Desktop"
        )
        return data


class ServiceState(FactBase):
    """
    Returns whether one service is running and started at boot, asking only about it: systemd
    (``systemctl show``, the states pyinfra's systemd facts use) or its init script's
    ``status`` and its ``/etc/rc*.d/S*`` links (pyinfra's ``InitdStatus`` runs ``status`` of
    every init script).

    .. code:: python

        {"running": True, "enabled": True}
    """

    @staticmethod
    def default():
        return {"running": False, "enabled": False}

    def command(self, service: str, systemd: bool) -> str:
        name = shlex.quote(str(service))
        if systemd:
            return (
                f"systemctl show -p SubState -p UnitFileState -- {name}.service 2>/dev/null; "
                "true"
            )
        return (
            f"if [ -x /etc/init.d/{name} ] && /etc/init.d/{name} status >/dev/null 2>&1; "
            "then echo SubState=running; fi; "
            f"for l in /etc/rc*.d/S*{name}; do "
            'if [ -L "$l" ] || [ -e "$l" ]; then echo UnitFileState=enabled; break; fi; done; '
            "true"
        )

    def process(self, output: list[str]):
        values = dict(line.strip().partition("=")[::2] for line in output if "=" in line)
        return {
            "running": values.get("SubState") in
            ("running", "waiting", "exited", "listening", "mounted"),
            "enabled": values.get("UnitFileState") in ("enabled", "static"),
        }
