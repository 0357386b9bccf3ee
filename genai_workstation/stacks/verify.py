"""Findings for deployed stacks: services running and healthy, on the declared card, published
where declared, secret files 0600, exposed apps refused without credentials."""

from __future__ import annotations

from dataclasses import dataclass

from genai_workstation.facts.compose import AppDevice, ComposeProject
from genai_workstation.facts.filesystem import PathStates
from genai_workstation.facts.probe import HttpStatus
from genai_workstation.findings import Finding
from genai_workstation.hostfacts import fact

from . import checks
from . import lifecycle as lc
from .rendered import RenderedStack
from .service_hash import SERVICE_HASH_LABEL


@dataclass(frozen=True)
class StackSpec:
    """What verify checks for one stack: this run's render of it and where it is deployed, or
    why it could not be rendered (`error`: a bad GPU name, ...)."""

    stack: str
    project_dir: str
    owner: tuple[int, int]  # uid, gid of the workstation user (owner of the secret files)
    rendered: RenderedStack | None = None
    error: str | None = None


def stack_findings(host_name: str, spec: StackSpec) -> list[Finding]:
    """Read the stack's facts now and compare them with its rendering."""
    stack = spec.stack
    fix = _fix(stack)
    if spec.error or spec.rendered is None:
        return [Finding(host_name, f"stack {stack}", "renders from the inventory",
                        spec.error or "not rendered", "fix the inventory, then " + fix)]
    rendered, project_dir = spec.rendered, spec.project_dir
    project = fact(ComposeProject, project_dir=project_dir)
    if not project.get("exists"):
        return [Finding(host_name, f"stack {stack}", "deployed",
                        f"{project_dir}/compose.yaml missing", fix)]
    down = lc.not_running(project, list(rendered.services))
    found = [Finding(host_name, f"stack {stack}: service {problem.split(' ')[0]}",
                     "running and healthy", problem.split(" ", 1)[1].strip("()"),
                     f"cd {project_dir} && docker compose logs --tail 50; then {fix}")
             for problem in down]
    stopped = {problem.split(" ")[0] for problem in down}
    recorded = project.get("config_hash")
    stale = [h for h in project.get("running_hashes") or [] if not lc.hash_matches(h, recorded)]
    if recorded and stale:
        found.append(Finding(host_name, f"stack {stack}: containers",
                             f"running the deployed config {recorded[:12]}",
                             f"running config {', '.join(sorted(set(stale)))[:40]}", fix))
    if recorded and lc.hash_matches(rendered.config_hash, recorded):
        found += _stale_services(host_name, stack, rendered, project, fix)
    for check in rendered.gpu_checks:
        if check.service in stopped:  # no app to ask; already reported above
            continue
        seen = fact(AppDevice, project_dir=project_dir, service=check.service,
                    probe=check.probe, url=check.url)
        mismatch = lc.gpu_mismatch(check.expected, seen.get("name"))
        if mismatch:
            found.append(Finding(
                host_name, f"stack {stack}: GPU of {check.service}", check.expected,
                (seen.get("name") or "no device") + (f" ({seen['error']})"
                                                      if seen.get("error") else ""),
                "name the card in the inventory (its nvidia-smi name or UUID, not an index); the "
                "stack pins it with CUDA_DEVICE_ORDER=PCI_BUS_ID, then " + fix))
    return found + _deployed_findings(host_name, spec, project, fix)


def _stale_services(host_name: str, stack: str, rendered: RenderedStack, project: dict,
                    fix: str) -> list[Finding]:
    """Containers whose genai.service-hash label is not their service's in the deployed config
    (a container recreated by hand or by another tool)."""
    found = []
    for svc in project.get("services") or []:
        wanted = rendered.service_hashes.get(svc.get("service"))
        running = (svc.get("labels") or {}).get(SERVICE_HASH_LABEL)
        if wanted and running and running != wanted:
            found.append(Finding(host_name, f"stack {stack}: container of {svc['service']}",
                                 f"running the deployed config {wanted[:12]}",
                                 f"running config {running[:12]}", fix))
    return found


def _deployed_findings(host_name: str, spec: StackSpec, project: dict,
                       fix: str) -> list[Finding]:
    """Ports, secret files and the proxy's refusal, each read now and decided in checks.py."""
    stack, project_dir, rendered = spec.stack, spec.project_dir, spec.rendered
    found = checks.port_findings(host_name, stack, rendered.published, project, fix)
    secret_files = rendered.secret_paths()
    if secret_files:
        uid, gid = spec.owner
        states = fact(PathStates, paths=[f"{project_dir}/{rel}" for rel in secret_files])
        found += checks.secret_file_findings(host_name, project_dir, secret_files, states, uid,
                                             gid, fix)
    targets = checks.auth_targets(rendered.auth_checks, project)
    if targets:
        answers = fact(HttpStatus, urls=sorted({url for _, url in targets}))
        found += checks.auth_findings(host_name, stack, project_dir, targets, answers, fix)
    return found


def _fix(stack: str) -> str:
    deploy = stack if stack in ("comfyui", "forge") else "site"
    return f"pyinfra inventory.py deploys/{deploy}.py"
