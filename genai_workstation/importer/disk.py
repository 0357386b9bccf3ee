"""The importer's files: read the old setup safely, write the draft and secrets atomically."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import yaml

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")


class SourceError(Exception):
    """An input cannot be read or a file cannot be written; the message names the file."""


def read_text(path: Path, max_bytes: int) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from None
    if size > max_bytes:
        raise SourceError(f"{path}: {size} bytes, more than a compose or .env file holds "
                          f"(limit {max_bytes}); is it the right file?")
    data = path.read_bytes()
    if b"\0" in data:
        raise SourceError(f"{path}: not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SourceError(f"{path}:{line}: not UTF-8; save it as UTF-8 and run again") from None


def read_yaml(path: Path, max_bytes: int):
    text = read_text(path, max_bytes)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SourceError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def read_env(path: Path, max_bytes: int) -> dict[str, str]:
    """A compose .env file: NAME=value lines, quotes removed, `# comments` skipped."""
    values = {}
    for line in read_text(path, max_bytes).splitlines():
        match = _ENV_LINE.match(line)
        if not match or line.lstrip().startswith("#"):
            continue
        name, value = match.groups()
        if value[:1] in ("'", '"') and value.endswith(value[0]) and len(value) > 1:
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)
        values[name] = value
    return values


def write_draft(path: Path, document: dict, header: str, force: bool) -> None:
    if path.exists() and not force:
        raise SourceError(f"{path}: already exists; give another --output, or --force to "
                          "replace it (the old one is kept as a .bak-<time> copy)")
    if path.exists():
        shutil.copy2(path, path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d%H%M%S')}"))
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
    _atomic_write(path, header + body, 0o644)


def add_secrets(path: Path, secrets: dict[str, str]) -> list[str]:
    """Add the secrets not already in the file (0600, atomic); existing values are kept.
    Returns the names added. Values never leave this function except into the file."""
    existing = read_env(path, 1024 * 1024) if path.is_file() else {}
    new = {name: value for name, value in secrets.items() if name not in existing and value}
    if not new:
        return []
    old_text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if old_text and not old_text.endswith("\n"):
        old_text += "\n"
    lines = [f"{name}={_quoted(value)}\n" for name, value in sorted(new.items())]
    _atomic_write(path, old_text + "".join(lines), 0o600)
    return sorted(new)


def _quoted(value: str) -> str:
    """The value as dotenv reads it back unchanged."""
    if re.fullmatch(r"[A-Za-z0-9_./:@+=,-]*", value):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _atomic_write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise SourceError(f"{path}: cannot write ({exc.strerror or exc})") from None
