"""Containers by name, whoever made them: the stack converge asks before `docker compose up`
whether a fixed `container_name` is held by a container outside the stack (e.g. the old
hand-kept setup), which Docker would refuse only halfway through the `up`."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

# One tab-separated line per container; no Env, no Cmd (they may carry secrets).
_FORMAT = ("{{.Name}}\t{{.Id}}\t{{index .Config.Labels \"com.docker.compose.project\"}}\t"
           "{{.Config.Image}}\t{{.State.Status}}")


class ContainersNamed(FactBase):
    """
    Returns the containers that hold one of ``names`` (absent names are left out).

    .. code:: python

        {
            "comfyui-qwen": {
                "id": "3f2a9c...",
                "project": "sd",          # its Compose project; None when not made by Compose
                "image": "nvidia/cuda:12.4.0-devel-ubuntu22.04",
                "state": "exited",
            },
        }
    """

    def command(self, names: list[str]) -> str:
        quoted = " ".join(shlex.quote(name) for name in names)
        return (f"docker container inspect --format {shlex.quote(_FORMAT)} {quoted} "
                "2>/dev/null; true")

    @staticmethod
    def default() -> dict:
        return {}

    def process(self, output: list[str]) -> dict:
        found = {}
        for line in output:
            parts = line.split("\t")
            if len(parts) != 5 or not parts[0].startswith("/"):
                continue
            name, container_id, project, image, state = parts
            found[name[1:]] = {"id": container_id,
                               "project": None if project in ("", "<no value>") else project,
                               "image": image, "state": state}
        return found
