"""Render context: read access to the host data, and the Jinja renderer of files/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2

from ..checks import windows_path_reason
from ..hostmodel import host_model
from .errors import StackError


class _Data:
    """The host's model, and read access to its settings (a dict or pyinfra host.data) for
    what the model leaves out: secret values (unmasked only on request), the inventory folder."""

    def __init__(self, source):
        self.source = source
        self.model = host_model(source)
        self.layout = self.model.layout
        for key, path in (("workspace", self.layout.workspace),
                          ("models_dir", self.layout.models_dir)):
            _check_path(key, path)

    def get(self, key: str, default=None):
        getter = getattr(self.source, "get", None)
        value = getter(key, default) if getter else default
        return default if value is None else value

    @property
    def uid_gid(self) -> str:
        return self.model.user.owner

    @property
    def workstation(self) -> str:
        return self.model.name or "workstation"

    def secret(self, name: str, field_path: str) -> str:
        secrets = self.get("secrets") or {}
        value = secrets.get(name)
        if value is None:
            raise StackError(f"{field_path}: needs the secret {name}, which is not set",
                             f"put {name}=... in the secrets file (chmod 600) or export {name}")
        return value.unmask() if hasattr(value, "unmask") else str(value)

    def secret_values(self) -> list[str]:
        values = []
        for value in (self.get("secrets") or {}).values():
            raw = value.unmask() if hasattr(value, "unmask") else str(value)
            if raw:
                values.append(raw)
        return values



def _check_path(key: str, path: str) -> None:
    reason = windows_path_reason(path)
    if reason:
        raise StackError(f"{key}: {reason}; containers never mount a Windows drive",
                         "use a path on the Linux filesystem (ext4), e.g. /srv/genai")
    if not path.startswith("/"):
        raise StackError(f"{key}: {path!r} is not an absolute path", "e.g. /srv/genai")


def _compose_quote(value) -> str:
    """A YAML scalar (JSON syntax) with `$` doubled so that Compose does not interpolate it."""

    def escape(item):
        if isinstance(item, str):
            return item.replace("$", "$$")
        if isinstance(item, list | tuple):
            return [escape(i) for i in item]
        if isinstance(item, dict):
            return {k: escape(v) for k, v in item.items()}
        return item

    value = escape(value)
    if isinstance(value, bool | int | float):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    return json.dumps(value, ensure_ascii=False)


class _Renderer:
    def __init__(self, files_dir: Path):
        self.files_dir = files_dir
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(files_dir)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self.env.filters["q"] = _compose_quote

    def render(self, template: str, **context) -> str:
        text = self.env.get_template(template).render(**context)
        # Optional blocks leave empty lines: keep only those before a top-level line.
        lines = text.rstrip("\n").split("\n")
        kept = [line for i, line in enumerate(lines)
                if line.strip() or (i + 1 < len(lines) and lines[i + 1][:1] not in ("", " "))]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)) + "\n"

    def read(self, relative: str) -> str:
        return (self.files_dir / relative).read_text(encoding="utf-8")
