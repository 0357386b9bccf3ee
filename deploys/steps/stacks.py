"""Stack steps: render a stack from host.data, converge it, verify it, roll it back.

Each step reads host.data only (the inventory decides) and calls the operations of
``genai_workstation.operations.stack`` with an explicit ``name=`` so that pyinfra never prints
an operation's arguments (the rendered stack carries secret file contents).
"""

from __future__ import annotations

from genai_workstation.facts.gpu import NvidiaGpus
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from genai_workstation.operations import stack as stack_ops
from genai_workstation.stacks import lifecycle as lc


def host_settings() -> dict:
    """host.data as a plain dict (what the loader produced for this host)."""
    return host.data.dict()


def stack_settings(data: dict, name: str) -> dict | None:
    stacks = data.get("stacks") or {}
    if name in ("comfyui", "forge"):
        return stacks.get(name)
    return (stacks.get("custom") or {}).get(name)


def gpu_refs(name: str, settings: dict) -> dict:
    """{app key: gpu reference} the stack declares (keys as render_stack expects them)."""
    if name == "forge":
        return {f"forge/{i['name']}": i.get("gpu") for i in settings.get("instances") or []}
    if name == "comfyui":
        return {"comfyui": settings.get("gpu")}
    return {}


def resolve_gpus(name: str, settings: dict, data: dict) -> tuple[dict, list[dict], list[str]]:
    """({app key: gpu dict | None}, every GPU, problems). The GPU fact is read only when a
    card is declared; no declared card runs the app on the CPU."""
    from genai_workstation.gpus import GpuResolutionError, resolve_gpu

    refs = gpu_refs(name, settings)
    wanted = {k: v for k, v in refs.items() if v not in (None, "none")}
    if (data.get("gpu") or {}).get("mode") == "none" or not wanted:
        return {k: None for k in refs}, [], []
    fact = host.get_fact(NvidiaGpus)
    resolved, problems = {}, []
    for key, ref in refs.items():
        if ref in (None, "none"):
            resolved[key] = None
            continue
        try:
            resolved[key] = resolve_gpu(ref, fact.get("gpus") or [])
        except GpuResolutionError as exc:
            resolved[key] = None
            problems.append(f"stack {name}, {key}: {exc}"
                            + (f" (nvidia-smi: {fact['error']})" if fact.get("error") else ""))
    return resolved, list(fact.get("gpus") or []), problems


def render(name: str, data: dict, resolved: dict, all_gpus: list[dict]):
    """The rendered stack; rendered once per host in a read-only run (genai-drift), where
    the plan and the checks both need it."""
    from genai_workstation.operations.once import read_only_memo
    from genai_workstation.stacks.render import render_stack

    memo = read_only_memo("stack renders")
    if memo is None:
        return render_stack(name, data, resolved, all_gpus=all_gpus or None)
    key = (name, repr(resolved), repr(all_gpus))
    if key not in memo:
        memo[key] = render_stack(name, data, resolved, all_gpus=all_gpus or None)
    return memo[key]


def _user(data: dict) -> dict:
    user = data.get("user") or {}
    return {"user": user.get("name", "genai"), "group": user.get("name", "genai"),
            "uid": int(user.get("uid", 1000)), "gid": int(user.get("gid", 1000))}


def fail(title: str, problems: list[str]) -> None:
    """An operation that fails the run with these messages (a shell step; it always runs)."""
    server.shell(name=title, commands=[str(stack_ops.fail_command(problems))])


@deploy("Stack")
def stack(name: str):
    """Render, build, bring up and health-check one stack (comfyui, forge or a custom one)."""
    data = host_settings()
    settings = stack_settings(data, name)
    if not settings or not settings.get("enabled", True):
        host.noop(f"stack {name} is not enabled on this host")
        return
    resolved, all_gpus, problems = resolve_gpus(name, settings, data)
    if problems:
        fail(f"Stack {name}: resolve the declared GPUs", problems)
        return
    from genai_workstation.stacks.errors import StackError

    try:
        rendered = render(name, data, resolved, all_gpus)
    except StackError as exc:
        fail(f"Stack {name}: render", [str(exc)])
        return
    stack_ops.converge(
        name=f"Stack {name}: render, build, up, health",
        stack=name,
        rendered=rendered,
        project_dir=lc.stack_dir(data["workspace"], name),
        health_timeout=int(getattr(rendered, "health_timeout", None)
                           or settings.get("health_timeout", 300)),
        history_keep=int(data.get("history_keep", 5)),
        **_user(data),
    )


def stack_spec(name: str, data: dict | None = None) -> dict | None:
    """What verify checks for one stack: {stack, project_dir, services, checks}; {stack, error}
    when it cannot be rendered; None when the stack is not enabled on this host."""
    data = host_settings() if data is None else data
    settings = stack_settings(data, name)
    if not settings or not settings.get("enabled", True):
        return None
    resolved, all_gpus, problems = resolve_gpus(name, settings, data)
    if problems:
        return {"stack": name, "error": "; ".join(problems)}
    from genai_workstation.stacks.errors import StackError

    try:
        rendered = stack_ops.as_plain(render(name, data, resolved, all_gpus))
    except StackError as exc:
        return {"stack": name, "error": str(exc)}
    user = _user(data)
    return {"stack": name, "project_dir": lc.stack_dir(data["workspace"], name),
            "services": rendered["services"],
            "checks": [list(check) for check in stack_ops.gpu_checks(rendered)],
            "published": [list(p) for p in rendered["published"] or []],
            "secret_files": sorted(p for p, f in rendered["files"].items() if f["secret"]),
            "owner": [user["uid"], user["gid"]],
            "auth_checks": list(rendered.get("auth_checks") or [])}


def verify(name: str):
    """After the deploy: every service of the stack running/healthy and on the declared card
    (the stack only; deploys.steps.verify.verify_host also checks the workstation)."""
    from genai_workstation.deploys.steps.verify import verify_host

    verify_host([name], workstation=False)


def comfyui_stack():
    stack("comfyui")


def forge_stack():
    stack("forge")


def custom_stacks():
    for name in sorted((host_settings().get("stacks") or {}).get("custom") or {}):
        stack(name)


@deploy("Roll back stack")
def rollback(name: str, to: str | None = None):
    """Restore the newest (or the named) previous config of a stack and bring it up."""
    data = host_settings()
    settings = stack_settings(data, name) or {}
    stack_ops.rollback(
        name=f"Roll back stack {name}" + (f" to {to}" if to else ""),
        stack=name,
        project_dir=lc.stack_dir(data["workspace"], name),
        to=to,
        health_timeout=int(settings.get("health_timeout", 300)),
    )
