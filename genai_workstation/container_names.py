"""Container names on one host: two containers cannot share a name (Docker refuses the second
at `up`, after the first stack is already running), so a clash is refused at load time.

Names come from the built-in apps' `service.container_name`, the names Compose gives the
built-in stacks' containers otherwise (`genai-<stack>-<service>-1`), and the literal
`container_name:` lines of custom stacks' compose templates (`{{ vars.NAME }}` filled in).
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import Problem

_TEMPLATE_LINE = re.compile(r"^\s*container_name:\s*[\"']?([^\"'#\s]+)[\"']?\s*(#.*)?$")
_VARS = re.compile(r"\{\{\s*vars\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_FIX = ("give each container its own name, or remove `container_name` from one of them (Compose "
        "then names it genai-<stack>-<service>-1)")


def container_name_problems(host: str, settings: dict, marks: dict) -> list[Problem]:
    """A Problem for each container name that a second container of the host also uses."""
    problems, first_use = [], {}
    for name, field, where in _names(settings):
        field = f"hosts.{host}.{field}"
        if name in first_use:
            problems.append(Problem(
                field, f"container name {name!r}{where} is already used by {first_use[name]}",
                _FIX, marks.get(field)))
        else:
            first_use[name] = field + where
    return problems


def _names(settings: dict):
    """(container name, field path below the host, where in a template) of every container."""
    stacks = settings.get("stacks") or {}
    comfyui = stacks.get("comfyui")
    if comfyui and comfyui.get("enabled", True):
        yield from _app("comfyui", "comfyui", "stacks.comfyui", comfyui)
        if int(comfyui.get("idle_unload_minutes") or 0) > 0:
            yield "genai-comfyui-idle-unload-1", "stacks.comfyui.idle_unload_minutes", ""
    forge = stacks.get("forge")
    if forge and forge.get("enabled", True):
        for index, instance in enumerate(forge.get("instances") or []):
            yield from _app("forge", f"forge-{instance['name']}",
                            f"stacks.forge.instances.{index}", instance)
    base = Path(settings.get("inventory_dir") or ".")
    for stack, spec in sorted((stacks.get("custom") or {}).items()):  # deploy order
        if spec.get("enabled", True):
            field = f"stacks.custom.{stack}.template_dir"
            for name, where in template_names(base / spec["template_dir"], spec.get("vars")):
                yield name, field, where


def _app(stack: str, service: str, field: str, spec: dict):
    name = (spec.get("service") or {}).get("container_name")
    if name:
        yield name, f"{field}.service.container_name", ""
    else:
        yield f"genai-{stack}-{service}-1", field, " (Compose's name for it)"


def template_names(folder: Path, variables: dict | None) -> list[tuple[str, str]]:
    """(name, " (FILE line N)") of the `container_name:` lines of a compose template whose
    value is literal or a `{{ vars.NAME }}`; others cannot be known before rendering."""
    folder = folder.expanduser()
    path = next((p for p in (folder / "compose.yaml.j2", folder / "compose.yaml")
                 if p.is_file()), None)
    if path is None:
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []  # the renderer reports an unreadable template
    found = []
    for number, line in enumerate(lines, 1):
        line = _VARS.sub(lambda m: str((variables or {}).get(m.group(1), m.group(0))), line)
        match = _TEMPLATE_LINE.match(line)
        if match and "{" not in match.group(1):
            found.append((match.group(1), f" ({path} line {number})"))
    return found
