"""Run the real pyinfra CLI against an inventory document, and read its `--json` output.

What pyinfra 3.10 prints with `--json` (stdout; the human log goes to stderr):

- a run (`-y`): `{"plan": [...], "results": {"operations": [{"name", "names", "op_hash",
  "args", "hosts", "success": [hosts that CHANGED], "no_change": [hosts], "error": [hosts]}],
  "totals": {...}, "failed_hosts": [...]}}`. With `-y`, pyinfra does not pre-compute changes,
  so the plan's `hosts_with_change` lists are empty: what changed is `results...success`.
  When every host fails, nothing is printed to stdout ("No hosts remaining!" on stderr, exit
  code 1): `json` is None.
- a dry run (`--dry`, which must NOT be combined with `-y`, else every plan entry has empty
  `hosts_with_change`): `{"plan": [{"name", "names", "op_hash", "args", "hosts_with_change",
  "hosts_with_conditional_change"}], "results": null}`. Exit code 0 even with changes pending.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).with_name("pyinfra")
DEFAULT_TIMEOUT = 900
# Environment variables that never reach a test run (a developer's own secrets and agent).
_DROPPED_ENV_SUFFIXES = ("_TOKEN", "_AUTH", "_PASSWORD", "_SECRET", "_KEY")
_DROPPED_ENV = ("SSH_AUTH_SOCK", "GENAI_INVENTORY", "GENAI_SECRETS")


@dataclass
class PyinfraRun:
    """One finished `pyinfra` CLI run."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    json: dict | None
    dry: bool
    duration: float
    hosts: list[str] = field(default_factory=list)  # host names of the inventory, if known

    @property
    def rc(self) -> int:
        return self.returncode

    @property
    def ok(self) -> bool:
        """Exit code 0, JSON parsed, and no host failed."""
        return self.returncode == 0 and self.json is not None and not self.failed_hosts

    @property
    def results(self) -> dict | None:
        return (self.json or {}).get("results")

    @property
    def operations(self) -> list[dict]:
        """Per-operation entries: `results.operations` for a run, `plan` for a dry run."""
        if self.json is None:
            return []
        if self.dry or self.results is None:
            return list(self.json.get("plan") or [])
        return list(self.results.get("operations") or [])

    @property
    def changed_operations(self) -> dict[str, list[str]]:
        """{host: [names of operations that changed (dry run: would change) something]}.

        Every host of the inventory is a key, also when nothing changed on it."""
        changed: dict[str, list[str]] = {host: [] for host in self.hosts}
        key = "hosts_with_change" if self.dry else "success"
        for operation in self.operations:
            for host in operation.get(key) or []:
                changed.setdefault(host, []).append(operation["name"])
        return changed

    @property
    def conditional_operations(self) -> dict[str, list[str]]:
        """Dry run only: operations that may change something (they have an `_if`)."""
        maybe: dict[str, list[str]] = {host: [] for host in self.hosts}
        for operation in self.operations if self.dry else []:
            for host in operation.get("hosts_with_conditional_change") or []:
                maybe.setdefault(host, []).append(operation["name"])
        return maybe

    @property
    def unchanged_operations(self) -> dict[str, list[str]]:
        """{host: [names of operations that ran and changed nothing]} (runs only)."""
        same: dict[str, list[str]] = {host: [] for host in self.hosts}
        for operation in [] if self.dry else self.operations:
            for host in operation.get("no_change") or []:
                same.setdefault(host, []).append(operation["name"])
        return same

    @property
    def failed_operations(self) -> dict[str, list[str]]:
        """{host: [operations in `error`]}, in order: the one that failed, then every later
        one, which pyinfra never ran on that host but also lists as errors."""
        failed: dict[str, list[str]] = {}
        for operation in [] if self.dry else self.operations:
            for host in operation.get("error") or []:
                failed.setdefault(host, []).append(operation["name"])
        return failed

    @property
    def failed_hosts(self) -> list[str]:
        return list((self.results or {}).get("failed_hosts") or [])

    @property
    def changed(self) -> bool:
        """Anything changed (dry run: would change) on any host."""
        return any(self.changed_operations.values())

    def check(self) -> PyinfraRun:
        """Raise AssertionError (with the log) unless the run was ok; return self."""
        if not self.ok:
            raise AssertionError(self.describe())
        return self

    def describe(self) -> str:
        failed = f", failed: {self.failed_operations or self.failed_hosts}" if self.json else ""
        return (f"pyinfra exited with {self.returncode} after {self.duration:.1f}s{failed}\n"
                f"$ {' '.join(self.command)}\n--- stderr (end) ---\n{self.stderr[-6000:]}\n"
                f"--- stdout (end) ---\n{self.stdout[-2000:]}")


def run_pyinfra(deploy: str | Path | Sequence[str | Path], inventory: dict | str | Path,
                *args: str, dry: bool = False, env: dict | None = None,
                cwd: str | Path = REPO, timeout: float = DEFAULT_TIMEOUT,
                inventory_dir: str | Path | None = None, secrets: str | Path | None = None,
                ) -> PyinfraRun:
    """Run `pyinfra [-y | --dry] --json ARGS inventory.py DEPLOY...` from the repo root.

    `inventory` is an inventory document (dict: written as YAML into `inventory_dir`, a temp
    folder by default) or the path of an inventory YAML; it reaches the repo's inventory.py
    through GENAI_INVENTORY. GENAI_SECRETS points at `secrets` (default: a file that does not
    exist), and secret-looking variables of this environment are dropped; `env` is applied
    last. `args` are extra CLI options (e.g. "--limit", "h1"). Never raises on a failed run:
    look at `.ok`, or call `.check()`.
    """
    deploys = [deploy] if isinstance(deploy, (str, Path)) else list(deploy)
    with tempfile.TemporaryDirectory(prefix="pyinfra-run-") as scratch:
        hosts: list[str] = []
        if isinstance(inventory, dict):
            folder = Path(inventory_dir) if inventory_dir else Path(scratch)
            folder.mkdir(parents=True, exist_ok=True)
            inventory_file = folder / "inventory.yaml"
            inventory_file.write_text(yaml.safe_dump(inventory, sort_keys=False))
            hosts = [_pyinfra_name(name, settings)
                     for name, settings in (inventory.get("hosts") or {}).items()]
        else:
            inventory_file = Path(inventory).resolve()
        run_env = {key: value for key, value in os.environ.items()
                   if key not in _DROPPED_ENV and not key.endswith(_DROPPED_ENV_SUFFIXES)}
        run_env.update({
            "GENAI_INVENTORY": str(inventory_file),
            "GENAI_SECRETS": str(secrets or Path(scratch) / "no-secrets.env"),
            "PYINFRA_PROGRESS": "off",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
        })
        run_env.update(env or {})
        command = [str(PYINFRA), *(["--dry"] if dry else ["-y"]), "--json", *args,
                   str(REPO / "inventory.py"), *(str(d) for d in deploys)]
        started = time.monotonic()
        try:
            process = subprocess.run(command, cwd=cwd, env=run_env, capture_output=True,
                                     text=True, timeout=timeout, stdin=subprocess.DEVNULL)
            returncode, stdout, stderr = process.returncode, process.stdout, process.stderr
        except subprocess.TimeoutExpired as exc:
            returncode = -9
            stdout = _text(exc.stdout)
            stderr = _text(exc.stderr) + f"\n[harness] pyinfra killed after {timeout}s"
        duration = time.monotonic() - started
    return PyinfraRun(command, returncode, stdout, stderr, _parse_json(stdout), dry,
                      duration, hosts)


def _pyinfra_name(name: str, settings: dict | None) -> str:
    """The pyinfra host name the loader gives a host (`@local` for the local one)."""
    connection = (settings or {}).get("connection") or {}
    local = connection.get("type") == "local" or (not connection and name in ("local", "@local"))
    return "@local" if local else name


def _parse_json(stdout: str) -> dict | None:
    """The JSON document pyinfra printed (the last line that parses, if more was printed)."""
    text = stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    start = text.rfind('\n{"plan"')
    start = text.find('{"plan"') if start < 0 else start + 1
    if start >= 0:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            return None
    return None


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


@pytest.fixture
def pyinfra_run():
    """`run_pyinfra(deploy, inventory, *args, dry=False, env=None, ...) -> PyinfraRun`."""
    return run_pyinfra
