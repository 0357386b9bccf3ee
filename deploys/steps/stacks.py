"""Stack steps: render a stack from host.data, converge it, verify it, roll it back.

Each step reads the host's model (genai_workstation/hostmodel.py, from host.data: the inventory
decides) and calls the operations of
``genai_workstation.operations.stack`` with an explicit ``name=`` so that pyinfra never prints
an operation's arguments (the rendered stack carries secret file contents).
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.context import ctx_host
from pyinfra.operations import server

from genai_workstation import hostfacts
from genai_workstation.facts.gpu import NvidiaGpus
from genai_workstation.hostmodel import BUILTIN_STACKS, HostModel, Stack, host_model
from genai_workstation.operations import stack as stack_ops
from genai_workstation.stacks.verify import StackSpec


def host_settings() -> dict:
    """host.data as a plain dict (what the loader produced for this host)."""
    return host.data.dict()


def resolve_gpus(stack: Stack, model: HostModel) -> tuple[dict, list[dict], list[str]]:
    """({app key: gpu dict | None}, every GPU, problems). The GPU fact is read only when a
    card is declared; no declared card runs the app on the CPU."""
    from genai_workstation.gpus import GpuResolutionError, resolve_gpu

    if model.gpu.cpu_only or not any(app.wants_gpu for app in stack.apps):
        return {app.key: None for app in stack.apps}, [], []
    fact = hostfacts.fact(NvidiaGpus)
    resolved, problems = {}, []
    for app in stack.apps:
        if not app.wants_gpu:
            resolved[app.key] = None
            continue
        try:
            resolved[app.key] = resolve_gpu(app.gpu, fact.get("gpus") or [])
        except GpuResolutionError as exc:
            resolved[app.key] = None
            problems.append(f"stack {stack.name}, {app.key}: {exc}"
                            + (f" (nvidia-smi: {fact['error']})" if fact.get("error") else ""))
    return resolved, list(fact.get("gpus") or []), problems


# This run's render of each stack, per host: the converge and the checks after it (verify,
# genai-drift's plan and state checks) use the same one, never a second render.
_RENDERS: WeakKeyDictionary = WeakKeyDictionary()


def rendered_stack(stack: Stack, data: dict, model: HostModel):
    """(RenderedStack, [], ""), or (None, [why it cannot be rendered], the step that failed);
    rendered once per host and run."""
    from genai_workstation.stacks.errors import StackError
    from genai_workstation.stacks.render import render_stack

    renders = _RENDERS.setdefault(ctx_host.get(), {})
    if stack.name not in renders:
        resolved, all_gpus, problems = resolve_gpus(stack, model)
        if problems:
            renders[stack.name] = (None, problems, "resolve the declared GPUs")
        else:
            try:
                renders[stack.name] = (render_stack(stack.name if stack.builtin else
                                                    f"custom/{stack.name}", data, resolved,
                                                    all_gpus=all_gpus or None), [], "")
            except StackError as exc:
                renders[stack.name] = (None, [str(exc)], "render")
    return renders[stack.name]


def fail(title: str, problems: list[str]) -> None:
    """An operation that fails the run with these messages (a shell step; it always runs)."""
    server.shell(name=title, commands=[str(stack_ops.fail_command(problems))])


@deploy("Stack")
def stack(name: str):
    """Render, build, bring up and health-check one stack (comfyui, forge or a custom one)."""
    data = host_settings()
    model = host_model(data)
    declared = model.stack(name)
    if declared is None or not declared.enabled:
        host.noop(f"stack {name} is not enabled on this host")
        return
    rendered, problems, step = rendered_stack(declared, data, model)
    if rendered is None:
        fail(f"Stack {name}: {step}", problems)
        return
    for warning in rendered.warnings:
        logger.warning(f"{host.print_prefix}stack {name}: {warning}")
    stack_ops.converge(
        name=f"Stack {name}: render, build, up, health",
        stack=name,
        rendered=rendered,
        project_dir=rendered.directory,
        health_timeout=rendered.health_timeout,
        history_keep=model.history_keep,
        user=model.user.name, group=model.user.name, uid=model.user.uid, gid=model.user.gid,
    )


def stack_spec(name: str, data: dict | None = None) -> StackSpec | None:
    """What verify checks for one stack (this run's render, where it is deployed); None when
    the stack is not enabled on this host."""
    data = host_settings() if data is None else data
    model = host_model(data)
    declared = model.stack(name)
    if declared is None or not declared.enabled:
        return None
    rendered, problems, _ = rendered_stack(declared, data, model)
    return StackSpec(stack=name, project_dir=model.layout.stack_dir(name),
                     owner=(model.user.uid, model.user.gid), rendered=rendered,
                     error="; ".join(problems) or None)


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
    for name in [s.name for s in host_model(host_settings()).stacks if not s.builtin]:
        stack(name)


@deploy("Roll back stack")
def rollback(name: str, to: str | None = None):
    """Restore the newest (or the named) previous config of a stack and bring it up."""
    model = host_model(host_settings())
    declared = model.stack(name)
    stack_ops.rollback(
        name=f"Roll back stack {name}" + (f" to {to}" if to else ""),
        stack=name,
        project_dir=model.layout.stack_dir(name),
        to=to,
        health_timeout=declared.health_timeout if declared else _schema_health_timeout(name),
    )


def _schema_health_timeout(name: str) -> int:
    """The schema's health_timeout for a stack no longer in the inventory (of its kind)."""
    from genai_workstation.loader import schema

    kind = name if name in BUILTIN_STACKS else "custom_stack"
    return int(schema()["$defs"][kind]["properties"]["health_timeout"]["default"])
