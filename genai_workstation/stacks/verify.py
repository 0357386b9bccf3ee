"""Findings for deployed stacks: services running and healthy, on the declared card, published
where declared, secret files 0600, exposed apps refused without credentials."""

from __future__ import annotations

from pyinfra import host

from genai_workstation.facts.compose import AppDevice, ComposeProject
from genai_workstation.facts.filesystem import PathStates
from genai_workstation.facts.probe import HttpStatus
from genai_workstation.findings import Finding

from . import checks
from . import lifecycle as lc


def stack_findings(host_name: str, spec: dict) -> list[Finding]:
    """Read the stack's facts now and compare them with the rendered spec.

    ``spec``: {"stack", "project_dir", "services", "checks": [(service, probe, expected)],
    "published": [(service, address, port)], "secret_files": [relpath], "owner": [uid, gid],
    "auth_checks": [{"protects", "url", "proxy_port"}]}, or {"stack", "error"} when the stack
    could not even be rendered (bad GPU name, ...).
    """
    stack = spec["stack"]
    fix = _fix(stack)
    if spec.get("error"):
        return [Finding(host_name, f"stack {stack}", "renders from the inventory", spec["error"],
                        "fix the inventory, then " + fix)]
    project_dir = spec["project_dir"]
    project = host.get_fact(ComposeProject, project_dir=project_dir)
    if not project.get("exists"):
        return [Finding(host_name, f"stack {stack}", "deployed",
                        f"{project_dir}/compose.yaml missing", fix)]
    down = lc.not_running(project, list(spec["services"]))
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
    for service, probe, expected in spec.get("checks") or []:
        if service in stopped:  # no app to ask; already reported above
            continue
        seen = host.get_fact(AppDevice, project_dir=project_dir, service=service, probe=probe)
        mismatch = lc.gpu_mismatch(expected, seen.get("name"))
        if mismatch:
            found.append(Finding(
                host_name, f"stack {stack}: GPU of {service}", expected,
                (seen.get("name") or "no device") + (f" ({seen['error']})"
                                                      if seen.get("error") else ""),
                "name the card in the inventory (its nvidia-smi name or UUID, not an index); the "
                "stack pins it with CUDA_DEVICE_ORDER=PCI_BUS_ID, then " + fix))
    return found + _deployed_findings(host_name, spec, project, fix)


def _deployed_findings(host_name: str, spec: dict, project: dict, fix: str) -> list[Finding]:
    """Ports, secret files and the proxy's refusal, each read now and decided in checks.py."""
    stack, project_dir = spec["stack"], spec["project_dir"]
    found = checks.port_findings(host_name, stack, spec.get("published") or [], project, fix)
    secret_files = spec.get("secret_files") or []
    if secret_files:
        uid, gid = spec["owner"]
        states = host.get_fact(PathStates, paths=[f"{project_dir}/{rel}" for rel in secret_files])
        found += checks.secret_file_findings(host_name, project_dir, secret_files, states, uid,
                                             gid, fix)
    targets = checks.auth_targets(spec.get("auth_checks") or [], project)
    if targets:
        answers = host.get_fact(HttpStatus, urls=sorted({url for _, url in targets}))
        found += checks.auth_findings(host_name, stack, project_dir, targets, answers, fix)
    return found


def _fix(stack: str) -> str:
    deploy = stack if stack in ("comfyui", "forge") else "site"
    return f"pyinfra inventory.py deploys/{deploy}.py"
