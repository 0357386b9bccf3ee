"""The workstation step: platform, WSL settings, user, Docker, NVIDIA toolkit, workspace.

Reads host.data only (the inventory decides). Checks that can refuse a host (platform, Linux
NVIDIA driver inside WSL2, GPUs, Docker Desktop, the workspace's filesystem) are evaluated while
pyinfra prepares the run, so a refused host is left exactly as it was: nothing is installed or
created on it. Every other operation yields commands only when the host differs from the
inventory, so a converged host plans zero changes.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import python

from genai_workstation.facts.accounts import Account
from genai_workstation.facts.filesystem import FileStat, PathStates
from genai_workstation.facts.platform import Platform, ServiceState
from genai_workstation.hostfacts import prefetch, read_once, run_memo
from genai_workstation.hostmodel import host_model
from genai_workstation.operations import docker, nvidia, system, workspace, wsl

GPU_SKIPPED_NOTICE = "gpu.mode is none: GPU checks and the NVIDIA container toolkit are skipped"


def _check_now(op_meta) -> None:
    """Run a check operation while the run is prepared (also with `-y`), not when executing.

    A check yields no command; evaluating it now raises its OperationError before any other
    operation touches the host. One that found nothing to do is not evaluated again when the
    run executes (genai_workstation/hostfacts.py): its facts are read once.
    """
    op_meta.will_change  # noqa: B018 (the property runs the operation's generator)


WSL_CONF_OP = "wsl.conf operation"  # run_memo: this run's wsl.conf operation, if it changes


def _wsl_shutdown_notice(host_name: str, path: str) -> None:
    message = wsl.SHUTDOWN_NOTICE.format(path=path)
    logger.warning(f"[{host_name}] ACTION NEEDED: {message}")


def wsl_shutdown_reminder() -> None:
    """Repeat the `wsl.exe --shutdown` notice near the end of a longer run (models, stacks),
    when this run's workstation step changed /etc/wsl.conf."""
    conf_changed = run_memo(WSL_CONF_OP).get("op")
    if conf_changed is not None:
        _shutdown_notice("wsl.exe --shutdown needed (reminder)", conf_changed)


def _shutdown_notice(name: str, conf_changed) -> None:
    """An operation printing the notice when the wsl.conf operation changed the file."""
    python.call(
        name=name,
        function=_wsl_shutdown_notice,
        host_name=host.name,
        path=wsl.WSL_CONF,
        _if=conf_changed.did_change,
    )


def facts_read_by_the_step(data, platform: dict) -> list[tuple[type, dict]]:
    """The facts (with the operations' exact arguments) the workstation operations read."""
    model = host_model(data)
    specs = [
        (PathStates, {"paths": model.layout.tree()}),
        (Account, {"username": model.user.name, "uid": model.user.uid, "groups": ["docker"]}),
    ]
    if model.docker.source != "desktop":
        specs += [
            (DebPackages, {}),
            (ServiceState, {"service": "docker", "systemd": bool(platform.get("systemd_pid1"))}),
        ]
        if model.docker.compose_plugin_path:
            specs.append((FileStat, {"path": docker.COMPOSE_PLUGIN}))
    return specs


@deploy("Workstation")
def workstation():
    data = host.data.dict()
    model = host_model(data)
    user, docker_settings, toolkit, gpu = model.user, model.docker, model.nvidia_toolkit, model.gpu
    source = docker_settings.source
    platform = read_once(Platform)
    on_wsl = platform.get("wsl") == 2
    # What the operations below read on a converged host, in one round trip.
    prefetch(facts_read_by_the_step(data, platform))

    # Checks: refuse before anything changes.
    _check_now(system.check_platform(
        name=f"Platform is {model.platform}", expected=model.platform))
    if on_wsl:
        _check_now(wsl.no_linux_driver(name="No Linux NVIDIA driver inside WSL2"))
    if gpu.mode == "nvidia":
        _check_now(nvidia.gpus(name="GPUs expected by the inventory", expected=list(gpu.expected)))
    else:
        logger.warning(f"{host.print_prefix}{GPU_SKIPPED_NOTICE}")
    if source == "desktop":
        _check_now(docker.desktop(name="Docker Desktop provides Docker"))
    elif source == "distro":
        docker.distro_packages(platform, docker_settings.compose_plugin_path)
    # The workspace tree: checked now, created (numeric uid:gid) before the user account exists.
    tree = workspace.tree(
        name=f"Workspace {data['workspace']}",
        root=model.layout.workspace,
        models_dir=model.layout.models_dir,
        uid=user.uid,
        gid=user.gid,
    )
    _check_now(tree)

    # WSL settings.
    conf_changed = None
    if on_wsl and model.wsl_systemd:
        conf = wsl.conf(name="/etc/wsl.conf [boot] systemd=true",
                        section="boot", key="systemd", value="true")
        if conf.will_change:
            conf_changed = conf

    # Docker, then the user in its group.
    if source != "desktop":
        docker.engine(
            name=f"Docker engine ({source})",
            source=source,
            repo_url=docker_settings.repo_url,
            gpgkey_url=docker_settings.gpgkey_url,
            compose_plugin_path=docker_settings.compose_plugin_path,
        )
        docker.service(name="Docker service running and enabled")
    # Its uid/name conflicts are checked now too (before Docker is installed).
    _check_now(system.workstation_user(
        name=f"User {user.name} ({user.uid}:{user.gid}) in group docker",
        username=user.name,
        uid=user.uid,
        gid=user.gid,
        groups=["docker"],
    ))

    # NVIDIA container toolkit and Docker's nvidia runtime.
    if toolkit.enabled and gpu.mode == "nvidia" and source != "desktop":
        nvidia.toolkit(
            name=f"NVIDIA container toolkit {toolkit.version}",
            version=toolkit.version,
            repo_url=toolkit.repo_url,
            gpgkey_url=toolkit.gpgkey_url,
        )
        docker.nvidia_runtime(name="Docker nvidia runtime in daemon.json")
        if toolkit.cdi:
            nvidia.cdi(name="CDI spec /etc/cdi/nvidia.yaml")

    if conf_changed is not None:
        run_memo(WSL_CONF_OP)["op"] = conf_changed
        _shutdown_notice("wsl.exe --shutdown needed", conf_changed)
