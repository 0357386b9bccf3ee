"""Run the workstation step in-process against pyinfra's `@fake` connector.

The fake connector answers each command with a canned response (matched by substring, first
match wins; unmatched commands succeed with no output). The facts' commands are answered with
recorded real outputs, so the step takes the branch a real WSL2 machine would make it take;
what each operation then executed is read back per operation, exactly as pyinfra ran it.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.api.connect import connect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.operations import run_ops

from genai_workstation.layout import COMFYUI_MODEL_FOLDERS, DATA_FOLDERS
from genai_workstation.loader import load_inventory

# Verbatim outputs as the facts' commands print them on a WSL2 Ubuntu 22.04 machine with
# Docker Desktop (kernel string and nvidia-smi values from field-notes.md).
WSL2_PLATFORM = [
    "kernel=5.15.133.1-microsoft-standard-WSL2",
    "machine=x86_64",
    "wsl_distro=Ubuntu",
    "dxg=1",
    "pid1=init",
    "arch=amd64",
    'os:PRETTY_NAME="Ubuntu 22.04.4 LTS"',
    "os:NAME=\"Ubuntu\"",
    'os:VERSION_ID="22.04"',
    "os:VERSION_CODENAME=jammy",
    "os:ID=ubuntu",
    "os:ID_LIKE=debian",
    "os:UBUNTU_CODENAME=jammy",
]
WSL2_GPU = [
    "smi=/usr/lib/wsl/lib/nvidia-smi",
    "0, GPU-52dc20f4-4d06-1338-85c9-c493c5dcec02, NVIDIA GeForce RTX 4070, 00000000:01:00.0, "
    "12282, 555.99",
    "rc=0",
]
DOCKER_DESKTOP_CLI = [
    "path=/usr/bin/docker",
    "target=/mnt/wsl/docker-desktop/cli-tools/usr/bin/docker",
    "info=Docker Desktop|28.5.1",
    "compose=v2.40.3-desktop.1",
]
# A typical wsl.conf of a WSL2 Ubuntu: automount options and a network section, no [boot].
WSL_CONF = [
    "@@genai:wsl.conf present",
    "# written by the user",
    "[automount]",
    'options = "metadata,umask=22,fmask=11"',
    "",
    "[network]",
    "generateResolvConf = false",
]


def path_states(paths: list[str], fstype: str = "ext4", mount: str = "/") -> list[str]:
    """PathStates output for paths that do not exist yet under `mount` (a `fstype` mount,
    on an ext4 root): only the mount point and the root answer `stat`."""
    lines = [f"@@path {path}" for path in paths]
    existing = dict.fromkeys(["/", mount])
    lines += [f"@@st 0 0 755 directory|{path}" for path in existing]
    lines += [f"@@mp {path}|{path}" for path in existing]
    lines += ["@@fs ext4 /"] if mount != "/" else []
    return lines + [f"@@fs {fstype} {mount}"]


def workspace_paths(root: str = "/srv/genai") -> list[str]:
    return ([root, f"{root}/models"] + [f"{root}/models/{m}" for m in COMFYUI_MODEL_FOLDERS]
            + [f"{root}/{d}" for d in DATA_FOLDERS])


def wsl_responses(**overrides) -> dict:
    """Fake responses of a WSL2 machine with Docker Desktop; keys are command substrings."""
    responses = {
        "uname -r": WSL2_PLATFORM,
        "dpkg-query -W -f": [],
        "--query-gpu=": WSL2_GPU,
        "compose version --short": DOCKER_DESKTOP_CLI,
        "@@path": path_states(workspace_paths()),
        "@@genai:wsl.conf": WSL_CONF,
        # facts.accounts.Account: no workstation user yet, uid free, no docker group
        "@@genai:account": ["@@genai:account"],
    }
    responses.update(overrides)
    return responses


def host_data(tmp_path: Path, **settings) -> dict:
    """Host data as the loader makes it for one host with `settings`."""
    document = {"hosts": {"wsl": {"connection": {"type": "local"}, **settings}}}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(document))
    inventory = load_inventory(path, environ={"GENAI_SECRETS": str(tmp_path / "none.env")})
    return dict(inventory.hosts["wsl"])


def command_text(command) -> object:
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    if isinstance(command, FileUploadCommand):
        src = command.src
        if hasattr(src, "getvalue"):
            src = src.getvalue()
        return ["upload", src, str(command.dest)]
    if isinstance(command, FunctionCommand):
        return ["call", getattr(command.function, "__name__", str(command.function))]
    return repr(command)


LAST_EXECUTED: list[str] = []


def run_fake(tmp_path: Path, responses: dict, steps=None, **settings):
    """Run the workstation step (or `steps`, deploy functions run in order) on `@fake/wsl`;
    return (state, host, [(op name, [commands])])."""
    from genai_workstation.deploys.steps.workstation import workstation

    data = host_data(tmp_path, **settings)
    data.update({"fake_responses": responses, "fake_delay": 0, "fake_delay_jitter": 0})
    inventory = Inventory(([("@fake/wsl", data)], {}))
    state = State(inventory, Config())
    connect_all(state)
    host = inventory.get_host("@fake/wsl")
    LAST_EXECUTED[:] = []
    try:
        for step in steps or [workstation]:
            add_deploy(state, step)
    finally:
        LAST_EXECUTED[:] = list(host.connector.executed_commands)
    run_ops(state)
    ran = []
    for op_hash in state.get_op_order():
        names = sorted(state.get_op_meta(op_hash).names)
        op_data = state.ops[host].get(op_hash)
        if op_data is None:
            continue
        commands = op_data.operation_meta._commands or []
        ran.append((names[0], [command_text(c) for c in commands]))
    return state, host, ran
