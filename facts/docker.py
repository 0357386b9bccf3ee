"""Facts about the Docker daemon: daemon.json and the runtimes it offers."""

from __future__ import annotations

import json

from pyinfra.api import FactBase

DAEMON_JSON = "/etc/docker/daemon.json"
NVIDIA_RUNTIME = "nvidia-container-runtime"

_PRESENT = "@@genai:daemon.json present"
_ABSENT = "@@genai:daemon.json absent"
_UNREADABLE = "@@genai:daemon.json unreadable"


def nvidia_runtime_ok(config: dict) -> bool:
    """True when ``config`` (a parsed daemon.json) declares the nvidia runtime as nvidia-ctk does.

    ``runtimes.nvidia.path`` must be ``nvidia-container-runtime`` (or an absolute path ending in
    it) and its arguments, ``args`` or the older ``runtimeArgs``, empty or absent.
    """
    if not isinstance(config, dict):
        return False
    runtimes = config.get("runtimes")
    nvidia = runtimes.get("nvidia") if isinstance(runtimes, dict) else None
    if not isinstance(nvidia, dict):
        return False
    path = nvidia.get("path")
    if not isinstance(path, str):
        return False
    if path != NVIDIA_RUNTIME and not (
        path.startswith("/") and path.endswith("/" + NVIDIA_RUNTIME)
    ):
        return False
    return all(nvidia.get(key, []) == [] for key in ("args", "runtimeArgs"))


class DaemonJson(FactBase):
    """
    Returns /etc/docker/daemon.json, parsed.

    .. code:: python

        {
            "exists": True,
            "config": {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}},
            "error": None,  # or why the file could not be read as a JSON object
        }
    """

    def command(self) -> str:
        return (
            f"if [ -e {DAEMON_JSON} ]; then echo '{_PRESENT}'; "
            f"cat {DAEMON_JSON} 2>/dev/null || echo '{_UNREADABLE}'; "
            f"else echo '{_ABSENT}'; fi"
        )

    @staticmethod
    def default():
        return {"exists": False, "config": {}, "error": None}

    def process(self, output: list[str]):
        if not output or output[0] != _PRESENT:
            return self.default()
        body = output[1:]
        if body and body[-1] == _UNREADABLE:
            return {"exists": True, "config": {}, "error": f"{DAEMON_JSON} is not readable"}
        text = "\n".join(body)
        if not text.strip():
            return {"exists": True, "config": {}, "error": None}
        try:
            config = json.loads(text)
        except ValueError as e:
            return {"exists": True, "config": {}, "error": f"invalid JSON in {DAEMON_JSON}: {e}"}
        if not isinstance(config, dict):
            return {
                "exists": True,
                "config": {},
                "error": f"{DAEMON_JSON} holds a JSON {type(config).__name__}, not an object",
            }
        return {"exists": True, "config": config, "error": None}


class DockerRuntimes(FactBase):
    """
    Returns the runtimes the running Docker daemon offers, or None when it is unreachable.

    .. code:: python

        {
            "runtimes": ["io.containerd.runc.v2", "nvidia", "runc"],
            "default": "runc",
        }
    """

    def requires_command(self) -> str:
        return "docker"

    def command(self) -> str:
        return (
            "if out=$(docker info --format '{{json .Runtimes}} {{.DefaultRuntime}}' "
            '2>/dev/null); then echo "$out"; fi'
        )

    def process(self, output: list[str]):
        text = "\n".join(output).strip()
        if not text:
            return None
        try:
            runtimes, end = json.JSONDecoder().raw_decode(text)
        except ValueError:
            return None
        if not isinstance(runtimes, dict):
            return None
        return {"runtimes": sorted(runtimes), "default": text[end:].strip() or None}
