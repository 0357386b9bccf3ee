"""Where the folders shipped with the code are: files/ (Dockerfiles, templates), inventory/
(schema.json) and deploys/.

A checkout keeps them at its top, the layout the README describes, and an editable install
runs from there. A wheel carries them inside this package (pyproject.toml maps them in with
`package-dir`, next to facts/ and deploys/ as `genai_workstation.facts` and `.deploys`), so an
installed genai-drift or genai-models needs no checkout. Both are plain folders on disk: Jinja's
FileSystemLoader and `docker build` need real paths, so a zipped package is not supported.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PACKAGE = Path(str(files(__package__)))
INSTALLED = (PACKAGE / "files").is_dir()
ROOT = PACKAGE if INSTALLED else PACKAGE.parent
"""The folder holding files/, inventory/ and deploys/: the package in a wheel, else the
checkout."""

FILES_DIR = ROOT / "files"
SCHEMA_PATH = ROOT / "inventory" / "schema.json"
# An installed package ships no inventory of its own: the current folder's, as pyinfra reads
# inventory.py from the current folder.
DEFAULT_INVENTORY = (Path("inventory") if INSTALLED else ROOT / "inventory") / "workstation.yaml"


def shipped_path(path: str | Path) -> Path:
    """`path` as given if absolute or present from the current folder, else below ROOT (so
    `deploys/site.py` names the shipped deploy from any folder)."""
    path = Path(path)
    return path if path.is_absolute() or path.exists() else ROOT / path
