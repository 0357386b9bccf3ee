"""Verify a host after the changes: facts read at execution time, compared with the inventory."""

from __future__ import annotations

import time
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.state import StateStage
from pyinfra.context import state

from genai_workstation.facts.docker import DaemonJson, DockerRuntimes
from genai_workstation.facts.filesystem import PathStates
from genai_workstation.facts.gpu import NvidiaGpus
from genai_workstation.facts.health import HostHealth
from genai_workstation.facts.packages import ForbiddenNvidiaPackages
from genai_workstation.facts.platform import DockerCli, Platform
from genai_workstation.facts.probe import WriteProbe
from genai_workstation.findings import ERROR, SKIPPED, Finding, Report
from genai_workstation.hostfacts import read_once, read_together
from genai_workstation.hostmodel import HostModel, host_model
from genai_workstation.stacks.verify import StackSpec, stack_findings
from genai_workstation.verify import evaluate_workstation


def read_workstation_facts(data: HostModel) -> dict:
    """Every fact the workstation checks need, read now, in one remote command."""
    platform = read_once(Platform)  # kernel, distribution, init: no run changes them
    specs = workstation_fact_specs(data, platform)
    facts = dict(zip(specs, read_together(list(specs.values())), strict=True))
    facts.setdefault("gpus", None)
    facts.setdefault("forbidden", [])
    facts["platform"] = platform
    facts["controller_epoch"] = None if host.name == "@local" else int(time.time())
    return facts


def workstation_fact_specs(data: HostModel, platform: dict) -> dict[str, tuple[type, dict]]:
    """{name: (fact class, arguments)} of what the workstation checks read."""
    specs = {
        "docker_cli": (DockerCli, {}),
        "daemon_json": (DaemonJson, {}),
        "runtimes": (DockerRuntimes, {}),
        "paths": (PathStates, {"paths": data.layout.tree()}),
        "probe": (WriteProbe, {"paths": data.layout.writable(), "uid": data.user.uid,
                               "gid": data.user.gid}),
        "health": (HostHealth, {}),
    }
    if data.gpu.mode == "nvidia":
        specs["gpus"] = (NvidiaGpus, {})
    if platform.get("wsl"):
        specs["forbidden"] = (ForbiddenNvidiaPackages, {})
    return specs


@operation(is_idempotent=True)
def verified(stack_specs: list[StackSpec] | None = None, workstation: bool = True):
    """
    Check the host against the inventory after the run's changes; fail the host on any drift.

    + stack_specs: stacks to check, as made by ``deploys.steps.stacks.stack_spec``
    + workstation: check the workstation too (GPU, Docker, folders, write probe, health)

    Nothing is planned (a converged host plans zero changes); the facts are read when the
    operation executes, after the operations before it. With host data ``findings_dir`` set
    (``--data findings_dir=DIR``), the findings are also written to ``DIR/<host>.json``.
    """
    if state.current_stage != StateStage.Execute:
        host.noop("checks run after the changes are applied")
        return

    name = host.data.get("workstation_name") or host.name
    data = host.data.dict()
    findings = host_findings(name, host_model(data), stack_specs, workstation)
    _write_findings(data.get("findings_dir"), name, findings)

    failures = [f for f in findings if f.kind != SKIPPED]
    for finding in findings:
        if finding.kind == SKIPPED:
            logger.warning(f"{host.print_prefix}notice: {finding.item} {finding.expected}: "
                           f"{finding.actual}")
    if not failures:
        host.noop(f"verified: {len(findings)} notice(s), nothing wrong")
        return
    yield FunctionCommand(_fail, (failures,), {})


def host_findings(name: str, data: HostModel, stack_specs: list[StackSpec] | None = None,
                  workstation: bool = True) -> list[Finding]:
    """The checks of `verified`, on facts read now (a check that cannot run gives an error
    finding, not a crash)."""
    checks = [("workstation", lambda: evaluate_workstation(name, data,
                                                          read_workstation_facts(data)))]
    checks = checks if workstation else []
    checks += [(f"stack {spec.stack}", lambda spec=spec: stack_findings(name, spec))
               for spec in stack_specs or []]
    findings = []
    for what, check in checks:
        try:
            findings += check()
        except Exception as error:
            findings.append(Finding(name, f"verification of {what}", "checks run",
                                    f"{type(error).__name__}: {error}", "see the log above",
                                    kind=ERROR))
    return findings


def _fail(state, host, failures: list[Finding]) -> bool:
    lines = [f"verification failed: {len(failures)} problem(s)"]
    for finding in failures:
        lines.append(f"  - {finding.item}: expected {finding.expected}; actual {finding.actual}")
        lines.append(f"    fix: {finding.fix}")
    host.log_styled("\n".join(lines), fg="red", log_func=logger.error)
    return False


def _write_findings(findings_dir, name: str, findings: list[Finding]) -> None:
    if not findings_dir:
        return
    report = Report(hosts=[name], findings=findings)
    path = Path(findings_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.part")
    partial.write_text(report.to_json())
    partial.replace(path)
