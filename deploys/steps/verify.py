"""The verify step: the workstation and its stacks checked against the inventory, read-only."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from deploys.steps.stacks import stack_spec
from deploys.steps.workstation import wsl_shutdown_reminder
from genai_workstation.operations.verify import verified
from genai_workstation.verify import enabled_stacks


@deploy("Verify")
def verify_host(stacks: list[str] | None = None, workstation: bool = True):
    """Check GPU, Docker, folders, write access, health and the given stacks (default: all the
    host runs) after the changes of this run; fail the host with the fix for each problem."""
    data = host.data.dict()
    names = enabled_stacks(data) if stacks is None else stacks
    specs = [spec for spec in (stack_spec(name, data) for name in names) if spec]
    what = ", ".join(["workstation"] * workstation + [f"stack {s['stack']}" for s in specs])
    wsl_shutdown_reminder()  # last words of a longer run, before checks that may fail it
    verified(name=f"Verify {what or 'nothing'}", stack_specs=specs, workstation=workstation)
