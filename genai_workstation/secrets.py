"""Secrets enter here only: from the environment or a git-ignored 0600 file, never the YAML."""

from __future__ import annotations

import io
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import parse_stream
from pyinfra.api import HiddenValue

from .errors import Problem
from .hostmodel import HostModel
from .textfiles import read_text

SECRETS_ENV = "GENAI_SECRETS"
# Secrets any host may use when present (model downloads), even if no feature requires them.
OPTIONAL_SECRETS = ("HF_TOKEN", "CIVITAI_TOKEN")
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_LINE_FIX = ("write one secret a line, NAME=value (e.g. HF_TOKEN=<your token>); quote a value "
             "holding spaces or #: NAME='...'")


class Secret(HiddenValue):
    """A secret value: masked in pyinfra's output and JSON; `.unmask()` gives the value."""

    def to_json(self) -> str:
        return str(self.masked_value)


@dataclass
class Secrets:
    """Secret values by name, and where the file was (or would be)."""

    source: Path
    values: dict[str, str] = field(default_factory=dict)  # from the file
    environ: dict = field(default_factory=dict)  # wins over the file

    def get(self, name: str) -> str | None:
        value = self.environ.get(name) if _NAME.match(name) else None
        return value or self.values.get(name) or None

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def for_host(self, required: dict[str, str]) -> dict[str, Secret]:
        """The secrets one host gets, masked in every pyinfra print-out."""
        names = sorted(set(required) | set(OPTIONAL_SECRETS))
        return {name: Secret(self.get(name)) for name in names if name in self}


def secrets_path(inventory_file: Path, environ) -> Path:
    return Path(environ.get(SECRETS_ENV) or Path(inventory_file).parent / "secrets.env")


def load_secrets(inventory_file: Path, environ) -> tuple[Secrets, list[Problem]]:
    """Read the secrets file (when present) and the environment; the environment wins."""
    path = secrets_path(inventory_file, environ)
    secrets = Secrets(source=path, environ=dict(environ))
    problems: list[Problem] = []
    if path.exists() and not path.is_file():
        problems.append(Problem("", "the secrets file is not a regular file (a folder?)",
                                f"point {SECRETS_ENV} at a NAME=value file, or remove it"))
    elif path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            problems.append(Problem(
                "", f"the secrets file is readable by others (mode {mode:04o})",
                f"run: chmod 600 {path}"))
            return secrets, problems
        secrets.values.update(_parse(path, problems))
    return secrets, problems


def required_secrets(host: str, model: HostModel) -> dict[str, str]:
    """{secret name: field that needs it} for the features this host enables."""
    prefix = f"hosts.{host}"
    needed: dict[str, str] = {}
    for stack in model.enabled_stacks():
        for name, field_path in stack.secrets().items():
            needed.setdefault(name, f"{prefix}.{field_path}")
    for index, model_spec in enumerate(model.models):
        if "civitai" in model_spec:
            needed.setdefault("CIVITAI_TOKEN", f"{prefix}.models.{index}.civitai")
        if model_spec.get("gated"):
            needed.setdefault("HF_TOKEN", f"{prefix}.models.{index}.gated")
    return needed


def _parse(path: Path, problems: list[Problem]) -> dict[str, str]:
    """python-dotenv's rules (quotes, escapes, `export`, inline comments), no ${VAR} expansion.

    A bad line is reported by its number, never with its text: it may hold a secret.
    """
    values = {}
    text = read_text(path, str(path), "a secrets file")
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        line = binding.original.line + original[:len(original) - len(original.lstrip())].count("\n")
        if binding.error or (binding.key is not None and binding.value is None):
            problems.append(Problem("", "this line is not NAME=value", _LINE_FIX, line))
        elif binding.key is not None and not _NAME.match(binding.key):
            problems.append(Problem(binding.key, "is not a secret name",
                                    "names are capitals, digits and _, e.g. HF_TOKEN", line))
        elif binding.key is not None:
            values[binding.key] = binding.value
    return values
