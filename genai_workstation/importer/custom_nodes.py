"""Pinned `custom_nodes` entries from a ComfyUI install or a ComfyUI-Manager snapshot."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from ..image_spec import is_secret_file
from .disk import SourceError
from .notes import CARRIED, CHANGED, NOT_CARRIED, Note

_NOT_NODES = {"__pycache__", ".git"}


def from_install(comfyui_dir: Path, local_folders: bool = False) -> tuple[list[dict], list[Note]]:
    """Each `custom_nodes/<folder>` git checkout as {url, ref} at its current commit; with
    `local_folders`, each other node folder as {path} (copied from there at each build)."""
    nodes_dir = comfyui_dir / "custom_nodes"
    if not nodes_dir.is_dir():
        nodes_dir = comfyui_dir if comfyui_dir.name == "custom_nodes" else nodes_dir
    if not nodes_dir.is_dir():
        raise SourceError(f"{comfyui_dir}: no custom_nodes folder here "
                           "(give the ComfyUI folder or its custom_nodes folder)")
    entries, notes = [], []
    for folder in sorted(nodes_dir.iterdir()):
        if folder.name in _NOT_NODES or folder.name.startswith("."):
            continue
        if folder.is_file():
            if folder.suffix == ".py" and folder.name != "__init__.py":
                notes.append(Note(folder.name, "single-file node", NOT_CARRIED,
                                  "not a git repository: nothing to pin",
                                  "publish it as a git repository (even a local mirror) "
                                  "and add it to custom_nodes"))
            continue
        if folder.name.endswith(".disabled"):
            notes.append(Note(folder.name, "disabled node", NOT_CARRIED, "it was disabled"))
            continue
        entry = (_path_entry(folder, notes) if local_folders and not (folder / ".git").exists()
                 else _git_entry(folder, notes))
        if entry:
            entries.append(entry)
    return entries, notes


def _path_entry(folder: Path, notes: list[Note]) -> dict | None:
    """A node folder that is not a git checkout, as a `path:` entry (see image_spec)."""
    if not (folder / "__init__.py").is_file():
        notes.append(Note(folder.name, "folder", NOT_CARRIED,
                          "no __init__.py: ComfyUI does not load it as a custom node"))
        return None
    left_out = sorted(p.name for p in folder.rglob("*") if is_secret_file(p.name))
    notes.append(Note(folder.name, "local folder", CARRIED,
                      "copied from this folder into the image at each build (not pinned)"
                      + (f"; left out of the image: {', '.join(left_out)}" if left_out else ""),
                      "keep the folder where it is, or make it a git repository to pin it"))
    return {"path": str(folder.resolve())}


def _git_entry(folder: Path, notes: list[Note]) -> dict | None:
    if not (folder / ".git").exists():
        notes.append(Note(folder.name, "folder", NOT_CARRIED, "not a git checkout: nothing to pin",
                          "make it a git repository (a local mirror is fine), or import it "
                          "with --keep-local-folders as a path: entry"))
        return None
    url = _git(folder, "config", "--get", "remote.origin.url")
    ref = _git(folder, "rev-parse", "HEAD")
    if not url or not ref:
        notes.append(Note(folder.name, "git", NOT_CARRIED,
                          "no `origin` remote or no commit to pin",
                          "add the repository's URL as `origin`"))
        return None
    url = _without_credentials(url, folder.name, notes)
    if _git(folder, "status", "--porcelain", "--untracked-files=no"):
        notes.append(Note(folder.name, "local changes", NOT_CARRIED,
                          "the checkout has uncommitted changes; only the commit is pinned",
                          "commit them to a fork and point url/ref at it, or use the "
                          "folder itself as a `path:` entry"))
    notes.append(Note(folder.name, "custom node", CARRIED, f"pinned at {ref[:12]}"))
    return {"url": url, "ref": ref}


def from_snapshot(path: Path) -> tuple[list[dict], list[Note]]:
    """The git nodes of a ComfyUI-Manager snapshot (.json, or .yaml with `custom_nodes:`)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise SourceError(f"{path}: not a readable ComfyUI-Manager snapshot ({exc})") from None
    if isinstance(data, dict) and "custom_nodes" in data and path.suffix in (".yaml", ".yml"):
        data = data["custom_nodes"]
    if not isinstance(data, dict) or "git_custom_nodes" not in data:
        raise SourceError(f"{path}: no `git_custom_nodes` in it; is it a ComfyUI-Manager "
                           "snapshot (Manager menu > Snapshot Manager > Save snapshot)?")
    entries, notes = [], []
    for url, info in (data.get("git_custom_nodes") or {}).items():
        info = info or {}
        name = url.rstrip("/").rsplit("/", 1)[-1]
        if info.get("disabled"):
            notes.append(Note(name, "disabled node", NOT_CARRIED, "disabled in the snapshot"))
            continue
        if not info.get("hash"):
            notes.append(Note(name, "git", NOT_CARRIED, "no commit hash in the snapshot"))
            continue
        clean = _without_credentials(url, name, notes)
        entries.append({"url": clean, "ref": str(info["hash"])})
        notes.append(Note(name, "custom node", CARRIED, f"pinned at {str(info['hash'])[:12]}"))
    for name, version in (data.get("cnr_custom_nodes") or {}).items():
        notes.append(Note(name, f"registry node {version}", NOT_CARRIED,
                          "installed from the Comfy registry, which has no git URL to pin",
                          "add its git repository URL and the commit of that version"))
    for item in data.get("file_custom_nodes") or []:
        notes.append(Note(item.get("filename", "?"), "single-file node", NOT_CARRIED,
                          "not a git repository: nothing to pin"))
    if data.get("pips"):
        notes.append(Note("", "pips", CHANGED,
                          "pip packages are baked from each node's requirements.txt at build "
                          "time, not reinstalled from the snapshot's list"))
    return entries, notes


def _without_credentials(url: str, name: str, notes: list[Note]) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        notes.append(Note(name, "url", CHANGED,
                          "the remote URL carried credentials; they are left out of the draft",
                          "use a credential helper or a mirror that needs none"))
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _git(folder: Path, *args: str) -> str:
    try:
        result = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(folder), *args],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""
