"""pyinfra operation `models.synced`: the model manifest, downloaded and verified ON the host.

The controller reads one fact (the manifest's folders and the verified-hash sidecar). On a
converged host that is all: no upload, no command, `host.noop(...)`. Otherwise it uploads the
self-contained downloader (python3 + requests) and a JSON manifest without secrets to a 0700
state folder, and runs the downloader there. Tokens travel on the command's stdin, never in
argv, the environment, a file or pyinfra's output.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from genai_workstation.facts.models import ModelFiles
from genai_workstation.hostfacts import fact
from genai_workstation.operations import atomic

from . import downloader, manifest

DOWNLOADER = Path(downloader.__file__)
STATE_DIR = "/var/lib/genai-workstation/models"


def _unmask(value) -> str | None:
    if value is None:
        return None
    return value.unmask() if hasattr(value, "unmask") else str(value)


@operation()
def synced(
    models: list[dict],
    models_dir: str,
    user: dict | None = None,
    secrets: dict | None = None,
    hf_endpoint: str | None = None,
    civitai_endpoint: str | None = None,
    jobs: int = manifest.DEFAULT_JOBS,
    state_dir: str = STATE_DIR,
    python: str = "/usr/bin/python3",
):
    """
    Download and verify the model manifest into ``models_dir`` on the host.

    + models: the inventory's ``models:`` entries (hf/civitai/url, folder, name, sha256)
    + models_dir: the model tree root (ComfyUI folder names below it)
    + user: ``{name, uid, gid}``: owner of the files (mode 0644) and folders (0755)
    + secrets: ``{HF_TOKEN, CIVITAI_TOKEN}`` (HiddenValue or str); sent via stdin only
    + hf_endpoint / civitai_endpoint: mirrors (default huggingface.co / civitai.com); each
      token goes only with its own source's entries, only below its own endpoint
    + jobs: files downloaded at once
    + state_dir: where the downloader and its manifest are uploaded (made 0700)
    + python: the host's interpreter (needs requests: python3-requests on Debian/Ubuntu)

    Reports a change only when files must be fetched (or their owner/mode fixed).
    """
    specs = manifest.specs_from_settings({"models": models})
    if not specs:
        host.noop("models: none listed")
        return
    uid = (user or {}).get("uid")
    gid = (user or {}).get("gid")
    state = fact(ModelFiles, models_dir=models_dir, folders=manifest.folders(specs))
    todo = manifest.pending(specs, state, uid, gid)
    if not todo:
        host.noop(f"models: all {len(specs)} files present and verified")
        return

    document = {
        "models_dir": models_dir, "models": specs, "uid": uid, "gid": gid, "jobs": jobs,
        "hf_endpoint": hf_endpoint or downloader.HF_ENDPOINT,
        "civitai_endpoint": civitai_endpoint or downloader.CIVITAI_ENDPOINT,
    }
    script = f"{state_dir.rstrip('/')}/downloader.py"
    manifest_path = f"{state_dir.rstrip('/')}/manifest.json"
    yield StringCommand("mkdir", "-p", "-m", "700", QuoteString(state_dir), "&&",
                        "chmod", "700", QuoteString(state_dir))
    yield from atomic.put(str(DOWNLOADER), script, mode="600")
    yield from atomic.put(StringIO(json.dumps(document, indent=1, sort_keys=True)),
                          manifest_path, mode="600")
    lines = []
    for name in downloader.TOKEN_NAMES:
        value = _unmask((secrets or {}).get(name))
        if value:
            lines.append(f"{name}={value}")
    yield StringCommand(QuoteString(python), QuoteString(script), "--manifest",
                        QuoteString(manifest_path), "--secrets-stdin", _stdin=lines)
