"""Fact: the model files of the manifest's folders and the verified-hash sidecar, in one read."""

from __future__ import annotations

import json
import shlex
from decimal import Decimal

from pyinfra.api import FactBase

SIDECAR = ".genai-verified.json"  # genai_workstation.models.downloader.SIDECAR
_SIDECAR_MARK = "==genai-models-sidecar=="
_FILES_MARK = "==genai-models-files=="


class ModelFiles(FactBase):
    """
    Returns the regular files directly inside each folder (relative to ``models_dir``) and the
    sidecar of verified hashes that the downloader keeps there.

    .. code:: python

        {
            "sidecar": {"version": 1, "files": {"checkpoints/a.safetensors": {
                "size": 6938078334, "mtime_ns": 1700000000123456789,
                "sha256": "6ce0...", "source": "hf:org/repo@main/a.safetensors"}}},
            "files": {"checkpoints/a.safetensors": {
                "size": 6938078334, "mtime_ns": 1700000000123456789,
                "uid": 1000, "gid": 1000, "mode": "644"}},
        }

    ``sidecar`` is None when there is none (or it is not valid JSON); both are empty when
    ``models_dir`` does not exist.
    """

    default = dict

    def command(self, models_dir: str, folders: list[str] | tuple[str, ...] = ()):
        quoted = " ".join(shlex.quote(f) for f in folders) or "."
        return (
            f"cd {shlex.quote(models_dir)} 2>/dev/null || exit 0; "
            f"echo {_SIDECAR_MARK}; cat {SIDECAR} 2>/dev/null; echo; "
            f"echo {_FILES_MARK}; "
            f"find {quoted} -maxdepth 1 -type f -printf '%s %T@ %U %G %m %p\\n' 2>/dev/null "
            "|| true"
        )

    def process(self, output):
        lines = list(output)
        result = {"sidecar": None, "files": {}}
        if _SIDECAR_MARK not in lines:
            return result
        start = lines.index(_SIDECAR_MARK) + 1
        end = lines.index(_FILES_MARK) if _FILES_MARK in lines else len(lines)
        text = "\n".join(lines[start:end]).strip()
        if text:
            try:
                sidecar = json.loads(text)
                result["sidecar"] = sidecar if isinstance(sidecar, dict) else None
            except ValueError:
                result["sidecar"] = None
        for line in lines[end + 1:]:
            parts = line.split(" ", 5)
            if len(parts) != 6 or not parts[0].isdigit():
                continue
            size, mtime, uid, gid, mode, path = parts
            if path.startswith("./"):
                path = path[2:]
            result["files"][path] = {
                "size": int(size),
                "mtime_ns": int(Decimal(mtime) * 1_000_000_000),
                "uid": int(uid), "gid": int(gid), "mode": mode,
            }
        return result
