"""What a built app image may add (image.extend), the user's own image, local custom nodes.

Pure checks on the inventory's values (no host, no Docker): the loader reports the problems
with file, line and fix before anything is contacted (`problems()`), and the render refuses the
same values when it is called without the loader (`stacks/image_ext.py`).

    stacks.<comfyui|forge>.image.extend: {apt: [pkg], pip: [name==version], run: [shell line]}
    stacks.<comfyui|forge>.image: {build: false, name: <ref>, entrypoint: keep | [argv],
                                   args_env: <VARIABLE its start script reads the arguments from>}
    stacks.comfyui.custom_nodes: [{url, ref} | {path, name?}]
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from .credentials import credential_problems, is_credential_name
from .errors import Problem

# The same forms as inventory/schema.json (tests/test_image_ext.py checks they agree).
APT_PACKAGE = r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:_-]+)?$"
PIP_PIN = (r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._,-]+\])?"
           r"==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
IMAGE_REF = r"^[a-z0-9]+([._/:@-][A-Za-z0-9_.-]+)*$"
NODE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
PIN_FIX = ("pin it as name==version, e.g. onnxruntime==1.19.2 (`pip index versions NAME` "
           "lists them): an unpinned package installs whatever is newest on the next rebuild")
BUILD_ONLY = ("base_image", "torch_index_url", "pip_index_url", "repo_url", "ref", "apt_mirror",
              "extend")
# Never copied from a local custom node folder into an image (every layer is readable by
# anyone who has the image): secrets stay in the secrets file.
SECRET_FILE_NAMES = {".env", ".netrc", ".npmrc", ".pypirc", ".git-credentials", "id_rsa",
                     "id_ed25519", "id_ecdsa", "id_dsa", "credentials.json", "PASSWORD"}
SECRET_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".keystore", ".token")
SKIPPED_PARTS = {".git", "__pycache__", ".mypy_cache", ".pytest_cache", ".venv", "venv"}
LOCAL_NODE_MAX_BYTES = 64 * 1024 * 1024
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")
_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Extension:
    """What image.extend adds to a built image, in build order."""

    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    run: tuple[str, ...] = ()

    @classmethod
    def of(cls, image: dict | None) -> Extension:
        extend = (image or {}).get("extend") or {}
        return cls(*(tuple(str(v) for v in extend.get(key) or ()) for key in ("apt", "pip", "run")))

    def __bool__(self) -> bool:
        return bool(self.apt or self.pip or self.run)


@dataclass(frozen=True)
class LocalNode:
    """A custom node copied from a folder of the controller into the ComfyUI image."""

    name: str  # folder under custom_nodes/ in the image
    folder: Path
    field: str


def problems(prefix: str, stacks: dict, marks: dict, base_dir: Path) -> list[Problem]:
    """Every problem of the image and custom node settings of one inventory section."""
    found = []
    for kind in ("comfyui", "forge"):
        spec = stacks.get(kind) or {}
        found += image_problems(f"{prefix}.stacks.{kind}", spec, marks)
    comfyui = stacks.get("comfyui") or {}
    if (comfyui.get("image") or {}).get("build", True) is not False:
        found += node_problems(f"{prefix}.stacks.comfyui", comfyui.get("custom_nodes") or [],
                               marks, base_dir)
    return found


def image_problems(field: str, spec: dict, marks: dict) -> list[Problem]:
    image = spec.get("image") or {}
    where = f"{field}.image"
    if image.get("build", True) is False:
        return _own_image_problems(where, image, spec, marks)
    found = []
    for key in ("entrypoint", "args_env"):
        if key in image:
            found.append(_problem(marks, f"{where}.{key}", "applies to your own image only",
                                  "remove it (a built image starts the app itself), or set "
                                  "build: false and name your image"))
    extend = image.get("extend") or {}
    for key, pattern, fix in (("apt", APT_PACKAGE, "a Debian/Ubuntu package name, e.g. "
                               "ffmpeg (or ffmpeg=7:5.1.6-0+deb12u1)"),
                              ("pip", PIP_PIN, PIN_FIX)):
        for index, value in enumerate(extend.get(key) or []):
            if not re.match(pattern, str(value)):
                what = "pinned to one version" if key == "pip" else "a package name"
                found.append(_problem(marks, f"{where}.extend.{key}.{index}",
                                      f"{str(value)!r} is not {what}", fix))
    for index, line in enumerate(extend.get("run") or []):
        found += run_line_problems(f"{where}.extend.run.{index}", str(line), marks)
    return found


def _own_image_problems(where: str, image: dict, spec: dict, marks: dict) -> list[Problem]:
    found = []
    name = image.get("name")
    if not name:
        found.append(_problem(marks, f"{where}.name", "build is false but no image is named",
                              "name the image to run, e.g. registry.example/forge-mine:1.2, "
                              "or set build: true"))
    elif not re.match(IMAGE_REF, str(name)):
        found.append(_problem(marks, f"{where}.name", f"{name!r} is not an image reference",
                              "registry/name:tag in lower case, e.g. registry.example/forge:1.2"))
    for key in BUILD_ONLY:
        if image.get(key):
            found.append(_problem(marks, f"{where}.{key}", "is a build setting, but build is "
                                  "false", f"remove {key} (your own image is used as it is), "
                                  "or set build: true to build the app with it"))
    if spec.get("custom_nodes"):
        found.append(_problem(marks, f"{where.rsplit('.', 1)[0]}.custom_nodes",
                              "custom nodes are baked into a built image, but build is false",
                              "install them in your own image, or set image.build: true"))
    entrypoint = image.get("entrypoint")
    if isinstance(entrypoint, list) and not all(str(a).strip() for a in entrypoint):
        found.append(_problem(marks, f"{where}.entrypoint", "has an empty entry",
                              "the program and its arguments, e.g. [/usr/local/bin/start-forge]"))
    return found


def run_line_problems(field: str, line: str, marks: dict) -> list[Problem]:
    """A build-time shell line must hold no credential: image layers keep it for anyone."""
    fix = ("build steps run without secrets and their text stays in the image's layers: "
           "download what needs a token with `models:` (token from the secrets file), or bake "
           "it into an image of your own")
    if "\n" in line or not line.strip():
        return [_problem(marks, field, "is not one shell line", "one non-empty line per entry")]
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        return [_problem(marks, field, f"is not a valid shell line ({exc})",
                         "close the quotes on that line")]
    for problem in credential_problems(words, {}, field) + credential_problems(line, {}, field):
        return [Problem(field, problem.message, fix, marks.get(field))]
    for word in words:
        assigned = _ASSIGNMENT.match(word)
        if assigned and is_credential_name(assigned.group(1)):
            return [_problem(marks, field, f"sets {assigned.group(1)}, a credential", fix)]
    for name in _REFERENCE.findall(line):
        if is_credential_name(name):
            return [_problem(marks, field, f"reads ${name}, a credential", fix)]
    return []


def node_problems(field: str, nodes: list, marks: dict, base_dir: Path) -> list[Problem]:
    found = []
    names = {str(node["url"]).rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
             for node in nodes if isinstance(node, dict) and node.get("url")}
    for index, node in enumerate(nodes):
        where = f"{field}.custom_nodes.{index}"
        node = node if isinstance(node, dict) else {}
        if bool(node.get("url")) == bool(node.get("path")):
            found.append(_problem(marks, where, "needs either url (+ ref) or path",
                                  "url: <git repository> with ref: <tag or commit>, or path: "
                                  "<a node folder on this machine>"))
            continue
        if node.get("url"):
            if not node.get("ref"):
                found.append(_problem(marks, f"{where}.ref", "a git node needs its ref",
                                      "ref: a tag or commit, so every rebuild gets the same "
                                      "code"))
            if node.get("name"):
                found.append(_problem(marks, f"{where}.name", "applies to a path node only",
                                      "remove it: a git node's folder is its repository name"))
            continue
        if node.get("ref"):
            found.append(_problem(marks, f"{where}.ref", "applies to a git node only",
                                  "remove it: a path node is copied as the folder is"))
        try:
            local = local_node(node, where, base_dir)
        except ValueError as exc:
            found.append(_problem(marks, *exc.args))
            continue
        if local.name in names:
            found.append(_problem(marks, f"{where}.name", f"another custom node is already "
                                  f"named {local.name}", "give it its own `name:`"))
        names.add(local.name)
    return found


def local_node(node: dict, where: str, base_dir: Path) -> LocalNode:
    """The node folder, checked; ValueError(field, message, fix) when it cannot be used."""
    folder = (Path(base_dir) / str(node["path"])).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{where}.path", f"{folder} is not a folder",
                         "the node's folder on the machine running pyinfra; relative paths "
                         "start at the inventory file's folder")
    if not (folder / "__init__.py").is_file():
        raise ValueError(f"{where}.path", f"{folder} has no __init__.py, so ComfyUI would not "
                         "load it as a custom node", "point at the node's folder, the one "
                         "whose __init__.py defines NODE_CLASS_MAPPINGS")
    name = str(node.get("name") or folder.resolve().name)
    if not re.match(NODE_NAME, name):
        raise ValueError(f"{where}.name", f"{name!r} cannot be a folder name",
                         "letters, digits, ., _ and -, e.g. my-nodes")
    return LocalNode(name, folder, where)


def node_files(node: LocalNode) -> tuple[dict[str, tuple[bytes, int]], list[str]]:
    """({relative path: (content, mode)}, [excluded secret files]) of a local node folder."""
    files, excluded, total = {}, [], 0
    for path in sorted(node.folder.rglob("*")):
        relative = path.relative_to(node.folder)
        if set(relative.parts) & SKIPPED_PARTS or path.suffix == ".pyc":
            continue
        if path.is_symlink() or not path.is_file():
            if path.is_symlink():
                excluded.append(f"{relative.as_posix()} (a symbolic link)")
            continue
        if is_secret_file(path.name):
            excluded.append(relative.as_posix())
            continue
        content = path.read_bytes()
        total += len(content)
        if total > LOCAL_NODE_MAX_BYTES:
            raise ValueError(f"{node.field}.path", f"{node.folder} holds more than "
                             f"{LOCAL_NODE_MAX_BYTES // 2**20} MiB", "keep models and outputs "
                             "out of the node folder: models go in the workspace's models/")
        files[relative.as_posix()] = (content, 0o755 if path.stat().st_mode & 0o111 else 0o644)
    return files, excluded


def is_secret_file(name: str) -> bool:
    return (name in SECRET_FILE_NAMES or name.startswith(".env.") or name.endswith(SECRET_SUFFIXES)
            or name.lower().startswith("secrets."))


def _problem(marks: dict, field: str, message: str, fix: str) -> Problem:
    return Problem(field, message, fix, marks.get(field) or marks.get(field.rsplit(".", 1)[0]))


