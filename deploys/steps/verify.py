"""The verify step: the workstation and its stacks checked against the inventory, read-only."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from genai_workstation.deploys.steps.stacks import stack_spec
from genai_workstation.deploys.steps.workstation import (
    facts_read_by_the_step,
    wsl_shutdown_reminder,
)
from genai_workstation.facts.compose import ComposeProject
from genai_workstation.facts.platform import Platform
from genai_workstation.findings import Finding
from genai_workstation.hostfacts import fact, in_parallel, prefetch, read_once
from genai_workstation.hostmodel import host_model
from genai_workstation.operations.verify import host_findings, verified, workstation_fact_specs
from genai_workstation.verify import enabled_stacks


@deploy("Verify")
def verify_host(stacks: list[str] | None = None, workstation: bool = True):
    """Check GPU, Docker, folders, write access, health and the given stacks (default: all the
    host runs) after the changes of this run; fail the host with the fix for each problem."""
    data = host.data.dict()
    names = enabled_stacks(data) if stacks is None else stacks
    specs = [spec for spec in (stack_spec(name, data) for name in names) if spec]
    what = ", ".join(["workstation"] * workstation + [f"stack {s.stack}" for s in specs])
    wsl_shutdown_reminder()  # last words of a longer run, before checks that may fail it
    verified(name=f"Verify {what or 'nothing'}", stack_specs=specs, workstation=workstation)


def state_findings() -> list[Finding]:
    """What `verify_host()` would find, read now (genai-drift, in a read-only run).

    First, in one remote command, every fact the workstation step's plan and these checks
    read: the plan that follows answers from them (genai_workstation/hostfacts.py).
    """
    data = host.data.dict()
    model = host_model(data)
    platform = read_once(Platform)
    names = enabled_stacks(data)
    in_parallel(  # the stacks' compose state meanwhile, read by both too
        lambda: prefetch(facts_read_by_the_step(data, platform)
                         + list(workstation_fact_specs(model, platform).values())),
        *[lambda name=name: _compose_state(model.layout.stack_dir(name)) for name in names])
    specs = [spec for spec in (stack_spec(name, data) for name in names) if spec]
    return host_findings(host.data.get("workstation_name") or host.name, model, specs)


def _compose_state(project_dir: str) -> None:
    """Read a stack's compose state ahead; if it fails, the stack's check reads it again and
    reports why."""
    try:
        fact(ComposeProject, project_dir=project_dir)
    except Exception:  # noqa: BLE001 (reported by stack_findings)
        return
