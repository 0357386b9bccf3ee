"""Load the inventory YAML: schema, defaults, semantic checks, secrets, pyinfra host data."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from .checks import check_document, check_host
from .container_names import container_name_problems
from .credentials import credential_problems
from .errors import InventoryError, Problem
from .hostmodel import HostModel, host_model
from .layout import default_models_dir
from .resources import DEFAULT_INVENTORY, SCHEMA_PATH
from .secrets import load_secrets, required_secrets
from .textfiles import read_text
from .yamlmarks import MAX_ENTRIES, TooLarge, join, load_with_marks

INVENTORY_ENV = "GENAI_INVENTORY"

# Settings that are objects get their own defaults filled in even when absent.
_OBJECT_SETTINGS = ("connection", "user", "docker", "nvidia_toolkit", "gpu", "wsl", "stacks",
                    "model_endpoints")


@dataclass
class Inventory:
    """A validated inventory: resolved settings per host, and groups."""

    path: Path
    hosts: dict[str, dict] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def model(self, name: str) -> HostModel:
        """The typed model of one host (genai_workstation/hostmodel.py)."""
        return host_model(self.hosts[name])

    def pyinfra_name(self, name: str) -> str:
        connection = self.hosts[name]["connection"]
        if connection["type"] == "vagrant":
            return f"@vagrant/{connection.get('machine', name)}"
        return "@local" if connection["type"] == "local" else name

    def pyinfra_host(self, name: str, connect_timeout: float | None = None) -> tuple[str, dict]:
        """(pyinfra host name, host data) for one host; `connect_timeout` overrides the
        inventory's."""
        data = copy.copy(self.hosts[name])
        connection = data["connection"]
        if connection["type"] == "ssh":
            data["ssh_hostname"] = connection.get("host", name)
            data["ssh_port"] = connection["port"]
            data["ssh_strict_host_key_checking"] = connection["strict_host_key_checking"]
            timeout = connect_timeout or connection["connect_timeout"]
            # paramiko's own waits for the banner (15 s) and authentication (30 s) too
            data["ssh_paramiko_connect_kwargs"] = {
                "timeout": timeout, "banner_timeout": timeout, "auth_timeout": timeout}
            for key in ("user", "key", "known_hosts_file"):
                if key in connection:
                    data[f"ssh_{key}"] = connection[key]
        return self.pyinfra_name(name), data

    def pyinfra_groups(self) -> dict[str, list[tuple[str, dict]]]:
        """Every pyinfra group: `workstations` (all hosts) plus the groups of the YAML."""
        groups = {"workstations": [self.pyinfra_host(name) for name in self.hosts]}
        for group, members in self.groups.items():
            groups[group] = [self.pyinfra_host(name) for name in members]
        return groups


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def inventory_path(environ=None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get(INVENTORY_ENV) or DEFAULT_INVENTORY)


def load_inventory(path: Path | str | None = None, environ=None) -> Inventory:
    """Read, validate and resolve an inventory file; raise InventoryError on bad input."""
    environ = os.environ if environ is None else environ
    path = Path(path) if path else inventory_path(environ)
    shown = _shown_path(path)
    if not path.is_file():
        found = "is not a regular file (a folder?)" if path.exists() else "file not found"
        raise InventoryError(shown, [Problem("", found, _not_found_hint())])

    document, marks = read_yaml(path, shown, "an inventory")
    if not isinstance(document, dict) or not {"hosts", "defaults", "groups"} & set(document):
        raise InventoryError(shown, [Problem("", _not_an_inventory(document),
                                             "see inventory/workstation.yaml for the shape")])

    full_schema = schema()
    problems = schema_problems(document, full_schema, marks)
    if problems:
        raise InventoryError(shown, problems)
    problems = check_document(document, marks, base_dir=path.parent)
    if problems:
        raise InventoryError(shown, problems)

    secrets, problems = load_secrets(path, environ)
    if problems:
        raise InventoryError(_shown_path(secrets.source), problems)

    inventory = Inventory(path=path)
    settings_schema = full_schema["$defs"]["settings"]
    for name in document["hosts"]:
        settings = resolve_host(document, name, settings_schema, full_schema)
        if settings.get("models_manifest"):
            settings["models"] = settings["models"] + _manifest(path, settings["models_manifest"])
        settings["workstation_name"] = name
        settings["inventory_dir"] = str(path.parent.resolve())
        model = host_model(settings)
        host_problems = check_host(name, model, marks)
        host_problems += container_name_problems(model, marks, settings["inventory_dir"])
        needed = required_secrets(name, model)
        for secret_name, field_path in needed.items():
            if secret_name not in secrets:
                host_problems.append(Problem(
                    field_path,
                    f"needs the secret {secret_name}, which is not set",
                    f"put {secret_name}=... in {_shown_path(secrets.source)} "
                    f"(chmod 600; git ignores it) or export {secret_name}",
                    marks.get(field_path),
                ))
        problems.extend(host_problems)
        settings["secrets"] = secrets.for_host(needed)
        inventory.hosts[name] = settings
    local_hosts = [n for n, s in inventory.hosts.items() if s["connection"]["type"] == "local"]
    if len(local_hosts) > 1:
        problems.append(Problem(
            f"hosts.{local_hosts[1]}.connection.type",
            f"only one host can be `local`; {', '.join(local_hosts)} all are",
            "give the others an SSH connection (host, port, user, key)",
        ))
    if problems:
        raise InventoryError(shown, problems)
    inventory.groups = {g: list(spec["hosts"]) for g, spec in document.get("groups", {}).items()}
    return inventory


def read_yaml(path: Path, shown: str, what: str, list_key: str = "") -> tuple[object, dict]:
    """(document, marks) of a YAML input file whose strings hold no credential.

    With `list_key`, a file holding a bare list is read as {list_key: [...]}.
    """
    text = read_text(path, shown, what)
    try:
        document, marks, problems = load_with_marks(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        # `problem` only: str(exc) quotes the line, which may hold a secret.
        what = getattr(exc, "problem", None) or "it cannot be parsed"
        problem = Problem("", f"not valid YAML: {what}",
                          "fix the YAML syntax (indentation, colons, quotes)",
                          None if line is None else line + 1)
        raise InventoryError(shown, [problem]) from None
    except (RecursionError, TooLarge):
        raise InventoryError(shown, [Problem(
            "", f"nests too deeply or expands to more than {MAX_ENTRIES} values (YAML anchors "
                "and aliases)", "write the settings out plainly; an inventory is a few "
                                "hundred values")]) from None
    if list_key and isinstance(document, list):
        document = {list_key: document}
        marks = {join(list_key, key): line for key, line in marks.items()}
    # Before the schema: its messages quote values, and a credential must never be printed.
    problems = credential_problems(document, marks) or problems
    if problems:
        raise InventoryError(shown, problems)
    return document, marks


def resolve_host(document: dict, name: str, settings_schema: dict, full_schema: dict) -> dict:
    """defaults < groups (in file order) < host, merged key by key; then schema defaults."""
    merged: dict = {}
    _merge(merged, document.get("defaults") or {})
    for spec in (document.get("groups") or {}).values():
        if name in spec["hosts"]:
            _merge(merged, spec.get("settings") or {})
    _merge(merged, document["hosts"][name] or {})
    for key in _OBJECT_SETTINGS:
        merged.setdefault(key, {})
    if "type" not in merged["connection"] and not merged["connection"]:
        merged["connection"]["type"] = "local" if name in ("local", "@local") else "ssh"
    apply_defaults(merged, settings_schema, full_schema)
    merged.setdefault("models_dir", default_models_dir(merged["workspace"]))
    if merged["gpu"]["mode"] == "none":
        merged["nvidia_toolkit"]["enabled"] = False
    return merged


def apply_defaults(instance, subschema: dict, full_schema: dict) -> None:
    """Fill in `default` values from the schema, in place, at every depth."""
    subschema = _deref(subschema, full_schema)
    if isinstance(instance, dict):
        for key, prop in subschema.get("properties", {}).items():
            prop = _deref(prop, full_schema)
            if key not in instance and "default" in prop:
                instance[key] = copy.deepcopy(prop["default"])
            if key in instance:
                apply_defaults(instance[key], prop, full_schema)
        extra = subschema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in instance.items():
                if key not in subschema.get("properties", {}):
                    apply_defaults(value, extra, full_schema)
    elif isinstance(instance, list) and isinstance(subschema.get("items"), dict):
        for item in instance:
            apply_defaults(item, subschema["items"], full_schema)


def schema_problems(document: dict, full_schema: dict, marks: dict) -> list[Problem]:
    from .schema_messages import describe

    validator = Draft202012Validator(full_schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path))):
        problems.extend(describe(error, full_schema, marks))
    return _unique(problems)


def _manifest(inventory_file: Path, manifest: str) -> list[dict]:
    from .models.manifest import load_manifest_file

    return load_manifest_file((inventory_file.parent / manifest).expanduser())


def _merge(into: dict, overlay: dict) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _deref(subschema: dict, full_schema: dict) -> dict:
    while "$ref" in subschema:
        target = full_schema
        for part in subschema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        rest = {k: v for k, v in subschema.items() if k != "$ref"}
        subschema = {**target, **rest}
    return subschema


def _unique(problems: list[Problem]) -> list[Problem]:
    seen, kept = set(), []
    for problem in problems:
        if (problem.field, problem.message) not in seen:
            seen.add((problem.field, problem.message))
            kept.append(problem)
    return kept


def _shown_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _not_an_inventory(document) -> str:
    if document is None:
        return "the file is empty (or only comments): it must hold a mapping with `hosts:`"
    if not isinstance(document, dict):
        kind = "a list" if isinstance(document, list) else "a single value"
        return f"the file holds {kind}, not a mapping with `hosts:`"
    return ("the file has no `hosts:` (nor `defaults:` or `groups:`): it does not look like an "
            "inventory; is it the right file?")


def _not_found_hint() -> str:
    return (f"create it (copy inventory/workstation.yaml) or point {INVENTORY_ENV} "
            "at an existing inventory file")
