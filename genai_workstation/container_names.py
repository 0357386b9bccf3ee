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
from .hostmodel import HostModel

_TEMPLATE_LINE = re.compile(r"^\s*container_name:\s*[\"']?([^\"'#\s]+)[\"']?\s*(#.*)?$")
_VARS = re.compile(r"\{\{\s*vars\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_FIX = ("give each container its own name, or remove `container_name` from one of them (Compose "
        "then names it genai-<stack>-<service>-1)")


def container_name_problems(model: HostModel, marks: dict, inventory_dir: str) -> list[Problem]:
    """A Problem for each container name that a second container of the host also uses."""
    problems, first_use = [], {}
    for name, field, where in _names(model, Path(inventory_dir or ".")):
        field = f"hosts.{model.name}.{field}"
        if name in first_use:
            problems.append(Problem(
                field, f"container name {name!r}{where} is already used by {first_use[name]}",
                _FIX, marks.get(field)))
        else:
            first_use[name] = field + where
    return problems


def _names(model: HostModel, base: Path):
    """(container name, field path below the host, where in a template) of every container,
    in deploy order."""
    for stack in model.enabled_stacks():
        for app in stack.apps:
            name = app.service_settings.get("container_name")
            if name:
                yield name, f"{app.field}.service.container_name", ""
            else:
                yield (f"genai-{stack.name}-{app.service}-1", app.field,
                       " (Compose's name for it)")
        if stack.name == "comfyui" and int(stack.settings.get("idle_unload_minutes") or 0) > 0:
            yield "genai-comfyui-idle-unload-1", f"{stack.field}.idle_unload_minutes", ""
        if stack.kind == "custom":
            for name, where in template_names(base / stack.settings["template_dir"],
                                              stack.settings.get("vars")):
                yield name, f"{stack.field}.template_dir", where


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
