"""Test deploy: only the stack step (+ verify) of deploys/comfyui.py, for the Docker tests.

The tests run it against `@local` with DOCKER_HOST pointing at the test engine; the workstation
step (users, apt, Docker install) is not for this machine. `--data lifecycle_stack=<name>`.
"""

from pyinfra import host

from deploys.steps.stacks import stack, verify

_name = host.data.get("lifecycle_stack", "comfyui")
stack(_name)
if host.data.get("lifecycle_verify", True):
    verify(_name)
