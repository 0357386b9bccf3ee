"""The model manifest: entries from the inventory (or a models.yaml), and the convergence check.

An entry is the inventory's `$defs.model`: one source (`hf` + `file` [+ `revision`], `civitai`
version id, or `url`), a ComfyUI `folder`, optional `name` and `sha256`, `gated`.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ..errors import InventoryError, Problem
from . import downloader

DEFAULT_JOBS = 3


def specs_from_settings(settings: dict) -> list[dict]:
    """The host's `models:` list (already validated and defaulted by the loader)."""
    specs = []
    for model in settings.get("models") or []:
        spec = copy.deepcopy(dict(model))
        if "hf" in spec:
            spec.setdefault("revision", "main")
        if spec.get("sha256"):
            spec["sha256"] = spec["sha256"].lower()
        specs.append(spec)
    return specs


def models_yaml_schema() -> dict:
    """JSON Schema of a models.yaml: `models:` with the inventory's `$defs.model` items."""
    from ..loader import schema

    full = schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["models"],
        "properties": {"models": {"type": "array", "items": {"$ref": "#/$defs/model"}}},
        "$defs": full["$defs"],
    }


def load_manifest_file(path: str | Path) -> list[dict]:
    """Read and validate a models.yaml; raise InventoryError with every problem found."""
    from ..checks import _model_problems
    from ..loader import apply_defaults, read_yaml, schema_problems

    path = Path(path)
    shown = str(path)
    if not path.is_file():
        raise InventoryError(shown, [Problem("", "file not found",
                                             "check models_manifest in the inventory")])
    document, marks = read_yaml(path, shown, "a model manifest", list_key="models")
    problems = []
    schema = models_yaml_schema()
    problems += schema_problems(document, schema, marks)
    if not problems:
        for index, model in enumerate(document["models"]):
            problems += _model_problems(f"models.{index}", model, marks)
    if problems:
        raise InventoryError(shown, problems)
    apply_defaults(document, schema, schema)
    return specs_from_settings(document)


def target(spec: dict) -> str | None:
    """folder/name below models_dir, when it is known without the network."""
    name = downloader.default_name(spec)
    return f"{downloader.folder_of(spec)}/{name}" if name else None


def folders(specs: list[dict]) -> list[str]:
    return sorted({downloader.folder_of(spec) for spec in specs})


def pending(specs: list[dict], state: dict, uid: int | None = None,
            gid: int | None = None) -> list[tuple[dict, str]]:
    """Entries that need the downloader, with why; [] on a converged host.

    `state` is the ModelFiles fact: {"sidecar": {...} | None, "files": {rel: {size, mtime_ns,
    uid, gid, mode}}}. An entry is done when its file is listed in the sidecar with the same
    size and mtime (and the pinned sha256, or the same source), and has the wanted owner/mode.
    """
    sidecar = ((state or {}).get("sidecar") or {}).get("files") or {}
    files = (state or {}).get("files") or {}
    todo = []
    for spec in specs:
        rel = target(spec)
        if rel is None:  # Civitai without a name: find it by source in the sidecar
            key = downloader.source_key(spec)
            rel = next((r for r, rec in sidecar.items() if rec.get("source") == key), None)
        if rel is None or rel not in files:
            todo.append((spec, "missing"))
            continue
        present = files[rel]
        record = sidecar.get(rel)
        if not record or not downloader.record_matches(record, present["size"],
                                                       present["mtime_ns"]):
            todo.append((spec, "not verified yet"))
            continue
        if not downloader.verified_state(spec, record):
            todo.append((spec, "different sha256 or source"))
            continue
        if (uid is not None and present.get("uid") != uid) or \
                (gid is not None and present.get("gid") != gid) or present.get("mode") != "644":
            todo.append((spec, "owner or mode"))
    return todo
