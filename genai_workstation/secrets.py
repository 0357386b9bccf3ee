"""Secrets enter here only: from the environment or a git-ignored 0600 file, never the YAML."""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra.api import HiddenValue

from .errors import Problem

SECRETS_ENV = "GENAI_SECRETS"
# Secrets any host may use when present (model downloads), even if no feature requires them.
OPTIONAL_SECRETS = ("HF_TOKEN", "CIVITAI_TOKEN")
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


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
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            problems.append(Problem(
                str(path), f"the secrets file is readable by others (mode {mode:04o})",
                f"run: chmod 600 {path}"))
            return secrets, problems
        secrets.values.update(_parse(path, problems))
    return secrets, problems


def required_secrets(host: str, settings: dict) -> dict[str, str]:
    """{secret name: field that needs it} for the features this host enables."""
    prefix = f"hosts.{host}"
    stacks = settings.get("stacks") or {}
    needed: dict[str, str] = {}
    comfyui = stacks.get("comfyui")
    if comfyui and comfyui.get("enabled") and comfyui.get("auth"):
        needed.setdefault(comfyui["auth"].get("secret", "COMFYUI_AUTH"),
                          f"{prefix}.stacks.comfyui.auth")
        if comfyui["auth"].get("token_secret"):
            needed.setdefault(comfyui["auth"]["token_secret"],
                              f"{prefix}.stacks.comfyui.auth.token_secret")
    forge = stacks.get("forge")
    if forge and forge.get("enabled"):
        for index, instance in enumerate(forge.get("instances") or []):
            if instance.get("auth"):
                needed.setdefault(instance["auth"].get("secret", "FORGE_AUTH"),
                                  f"{prefix}.stacks.forge.instances.{index}.auth")
                if instance["auth"].get("token_secret"):
                    needed.setdefault(instance["auth"]["token_secret"],
                                      f"{prefix}.stacks.forge.instances.{index}.auth"
                                      ".token_secret")
    for stack, spec in (stacks.get("custom") or {}).items():
        if spec.get("enabled"):
            for index, name in enumerate(spec.get("secrets") or []):
                needed.setdefault(name, f"{prefix}.stacks.custom.{stack}.secrets.{index}")
    for index, model in enumerate(settings.get("models") or []):
        if "civitai" in model:
            needed.setdefault("CIVITAI_TOKEN", f"{prefix}.models.{index}.civitai")
        if model.get("gated"):
            needed.setdefault("HF_TOKEN", f"{prefix}.models.{index}.gated")
    return needed


def _parse(path: Path, problems: list[Problem]) -> dict[str, str]:
    values = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            problems.append(Problem(f"line {number}", "is not NAME=value",
                                    "write one secret a line, e.g. HF_TOKEN=<your token>, names in "
                                    "capitals", None))
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values

