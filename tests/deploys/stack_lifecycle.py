"""Test deploy: only the stack step (+ verify) of deploys/comfyui.py, for the Docker tests.

The tests run it against `@local` with DOCKER_HOST pointing at the test engine; the workstation
step (users, apt, Docker install) is not for this machine. `--data lifecycle_stack=<name>`.
`--data lifecycle_rendered=<file.json>` converges a hand-made rendered stack (a dict in the
RenderedStack shape) instead of rendering one: for the image build path, whose real
Dockerfiles need a registry.
"""

import json

from pyinfra import host

from genai_workstation.deploys.steps.stacks import stack, verify
from genai_workstation.operations import stack as stack_ops
from genai_workstation.stacks import lifecycle as lc

_name = host.data.get("lifecycle_stack", "comfyui")
_rendered = host.data.get("lifecycle_rendered")
if _rendered:
    with open(_rendered, encoding="utf-8") as _file:
        _stack = json.load(_file)
    _user = host.data.get("user")
    stack_ops.converge(
        name=f"Stack {_name}: render, build, up, health", stack=_name, rendered=_stack,
        project_dir=lc.stack_dir(host.data.get("workspace"), _name), user=_user["name"],
        uid=_user["uid"], gid=_user["gid"], health_timeout=60,
        history_keep=host.data.get("history_keep"))
else:
    stack(_name)
    if host.data.get("lifecycle_verify", True):
        verify(_name)
