"""Checks the schema cannot express: Windows paths, port clashes, model sources.

Credentials in values are refused earlier, by credentials.py.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path, PureWindowsPath

from .errors import Problem
from .hostmodel import HostModel, app_settings
from .image_spec import problems as image_problems
from .layout import COMFYUI_MODEL_FOLDERS, LEGACY_MODEL_FOLDERS
from .yamlmarks import join

_WINDOWS_WHY = (
    "Windows drives reach WSL over 9p (DrvFs): chmod/chown do not stick, so containers fail "
    "with 'Operation not permitted' (e.g. creating a venv), and reading a model takes minutes "
    "instead of seconds"
)
_PATH_FIELDS = ("workspace", "models_dir")


def windows_path_reason(path: str) -> str | None:
    """Why `path` is on a Windows drive, or None when it is not."""
    if re.match(r"^/mnt/[a-zA-Z](/|$)", path):
        return f"{path} is a Windows drive mounted in WSL"
    if path.startswith(("\\\\wsl", "//wsl", "\\\\?\\", "\\\\")):
        return f"{path} is a Windows (UNC) path"
    if PureWindowsPath(path).drive and re.match(r"^[A-Za-z]:", path):
        return f"{path} is a Windows drive path"
    return None


def check_document(document: dict, marks: dict, base_dir: Path) -> list[Problem]:
    """Checks on the file as written, reported where each value was written."""
    problems = []
    sections = [("defaults", document.get("defaults"))]
    sections += [(f"groups.{g}.settings", spec.get("settings"))
                 for g, spec in (document.get("groups") or {}).items()]
    sections += [(f"hosts.{h}", settings) for h, settings in document["hosts"].items()]
    for prefix, settings in sections:
        if settings:
            problems += _settings_problems(prefix, settings, marks, base_dir)
    hosts = list(document["hosts"])
    for group, spec in (document.get("groups") or {}).items():
        for index, member in enumerate(spec["hosts"]):
            if member not in hosts:
                guess = difflib.get_close_matches(member, hosts, n=1)
                hint = f"did you mean '{guess[0]}'? " if guess else ""
                field = f"groups.{group}.hosts.{index}"
                problems.append(Problem(field, f"'{member}' is not a host of this inventory",
                                        f"{hint}hosts: {', '.join(hosts)}", marks.get(field)))
    return problems


def check_host(name: str, model: HostModel, marks: dict) -> list[Problem]:
    """Checks on one host's merged settings."""
    prefix = f"hosts.{name}"
    problems = _port_clashes(prefix, model, marks)
    if model.gpu.cpu_only:
        for app in (app for stack in model.stacks for app in stack.apps):
            if app.wants_gpu:
                field = f"{prefix}.{app.field}.gpu"
                problems.append(Problem(field, f"names the GPU {app.gpu!r} but gpu.mode is none",
                                        "remove the GPU or set gpu.mode: nvidia", marks.get(field)))
    return problems


def published_ports(model: HostModel) -> list[tuple[str, int]]:
    """(field path below the host, port) for every port the host's stacks publish."""
    return [port for stack in model.enabled_stacks() for port in stack.published_ports()]


def _port_clashes(prefix: str, model: HostModel, marks: dict) -> list[Problem]:
    problems, first_use = [], {}
    for field, port in published_ports(model):
        field = f"{prefix}.{field}"
        if port in first_use:
            problems.append(Problem(field, f"port {port} is already published by {first_use[port]}",
                                    "give every published port on a host its own number",
                                    marks.get(field)))
        else:
            first_use[port] = field
    return problems


def _settings_problems(prefix: str, settings: dict, marks: dict, base_dir: Path) -> list[Problem]:
    problems = []
    for key in _PATH_FIELDS:
        if key in settings:
            field = join(prefix, key)
            problems += _path_problems(field, settings[key], marks.get(field))
    problems += _exposure_problems(prefix, settings.get("stacks") or {}, marks)
    problems += image_problems(prefix, settings.get("stacks") or {}, marks, base_dir)
    for stack, spec in ((settings.get("stacks") or {}).get("custom") or {}).items():
        field = f"{prefix}.stacks.custom.{stack}.template_dir"
        folder = (base_dir / spec["template_dir"]).expanduser()
        if not (folder / "compose.yaml").is_file() and not (folder / "compose.yaml.j2").is_file():
            problems.append(Problem(field, f"{folder} holds no compose.yaml (or compose.yaml.j2)",
                                    "point it at a folder with your compose template; relative "
                                    "paths start at the inventory file's folder", marks.get(field)))
    for index, model in enumerate(settings.get("models") or []):
        problems += _model_problems(f"{prefix}.models.{index}", model, marks)
    return problems


def _path_problems(field: str, path: str, line: int | None) -> list[Problem]:
    reason = windows_path_reason(path)
    if reason:
        return [Problem(field, f"{reason}. {_WINDOWS_WHY}",
                        "use a path inside the Linux filesystem (ext4), e.g. /srv/genai or "
                        "/home/<you>/genai; to bring models over from a Windows drive use "
                        "`genai-models migrate`", line)]
    if not path.startswith("/"):
        return [Problem(field, f"'{path}' is a relative path",
                        "write an absolute path starting with /, e.g. /srv/genai", line)]
    return []


def _exposure_problems(prefix: str, stacks: dict, marks: dict) -> list[Problem]:
    problems = []
    for _, _, _, field_path, app in app_settings(stacks):
        path = f"{prefix}.{field_path}"
        if "expose" in app and "auth" not in app:
            field = f"{path}.expose"
            problems.append(Problem(
                field, "publishes the app beyond this machine without authentication",
                f"add {path.split('.', 2)[-1]}.auth (type: basic or bearer; the password or "
                "token goes in the secrets file), or remove expose to keep it on 127.0.0.1",
                marks.get(field)))
    return problems


def _model_problems(path: str, model: dict, marks: dict) -> list[Problem]:
    problems = []
    sources = [key for key in ("hf", "civitai", "url") if key in model]
    if len(sources) != 1:
        found = ", ".join(sources) or "none"
        problems.append(Problem(path, f"needs one source (hf, civitai or url); found {found}",
                                "e.g. `hf: org/repo` with `file:`, `civitai: 12345`, or `url:`",
                                marks.get(path)))
    if "hf" in model and "file" not in model:
        problems.append(Problem(f"{path}.hf", "a Hugging Face source needs `file:`",
                                "add the file's path in the repo, e.g. file: model.safetensors",
                                marks.get(f"{path}.hf")))
    folder = model["folder"].split("/")[0]
    if folder not in COMFYUI_MODEL_FOLDERS and folder not in LEGACY_MODEL_FOLDERS:
        guess = difflib.get_close_matches(folder, COMFYUI_MODEL_FOLDERS, n=1)
        hint = f"did you mean '{guess[0]}'? " if guess else ""
        field = f"{path}.folder"
        problems.append(Problem(field, f"'{model['folder']}' is not a ComfyUI model folder",
                                f"{hint}folders: {', '.join(COMFYUI_MODEL_FOLDERS)}",
                                marks.get(field)))
    return problems
