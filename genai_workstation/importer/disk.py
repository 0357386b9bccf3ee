"""The importer's files: read the old setup safely, write the draft and secrets atomically."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import yaml
from dotenv.parser import parse_stream

from .. import textfiles
from ..errors import InventoryError


class SourceError(Exception):
    """An input cannot be read or a file cannot be written; the message names the file."""


def read_text(path: Path) -> str:
    """The file's text, through the same size/binary/UTF-8 checks as the inventory."""
    try:
        return textfiles.read_text(path, str(path), "a compose or .env file")
    except InventoryError as exc:
        problem = exc.problems[0]
        where = f"{path}:{problem.line}" if problem.line else str(path)
        raise SourceError(f"{where}: {problem.message}; {problem.hint}") from None


def read_yaml(path: Path):
    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SourceError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def read_env(path: Path) -> dict[str, str]:
    """A .env file by python-dotenv's rules (as the secrets file), without ${VAR} expansion."""
    bindings = parse_stream(io.StringIO(read_text(path)))
    return {b.key: b.value or "" for b in bindings if b.key is not None and not b.error}


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
    existing = read_env(path) if path.is_file() else {}
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
