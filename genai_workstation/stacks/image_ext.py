"""Image extensions and local custom nodes in a built app's Dockerfile; the user's own image.

`extend_context()` inserts, just before the Dockerfile's `ARG BUILD_HASH` (the last steps), the
steps the inventory adds, each its own layer, from the least to the most often changed:
image.extend.apt, the local custom nodes' requirements.txt, image.extend.pip (the user's pins
win), the local custom nodes' files, image.extend.run. They come after PyTorch, the app and its
requirements, so a change to one of them rebuilds from that step only (a pin change fetches
that pin, a node's code edit fetches nothing); each app (ComfyUI, Forge) has its own Dockerfile
and build hash, so a change to one app's extension does not rebuild the other. Values are
checked by genai_workstation/image_spec.py (the loader reports them with file and line; the
same checks run here without the loader).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import Problem
from ..image_spec import Extension, image_problems, local_node, node_files, node_problems
from .errors import StackError

APP_DIRS = {"comfyui": "/opt/comfyui", "forge": "/opt/forge"}
RUN_SCRIPT = "extend-run.sh"
NODES_DIR = "local-nodes"


def check_image(kind: str, spec: dict, base_dir: Path) -> None:
    """StackError for the first problem of the app's image and custom node settings."""
    field = f"stacks.{kind}"
    found = image_problems(field, spec, {})
    if kind == "comfyui" and (spec.get("image") or {}).get("build", True) is not False:
        found += node_problems(field, spec.get("custom_nodes") or [], {}, base_dir)
    if found:
        raise _error(found[0])


def entrypoint(spec: dict) -> list[str] | None:
    """The compose `entrypoint:` of an app: None keeps the image's own (built or yours)."""
    value = (spec.get("image") or {}).get("entrypoint")
    return [str(a) for a in value] if isinstance(value, list) else None


def arguments(spec: dict, command: list[str], env: dict) -> tuple[list[str], dict]:
    """(compose command, environment) of an app. With image.args_env (your own image), the
    app's arguments go into that variable as shell words and the image's own CMD stays
    (an empty compose command keeps it)."""
    name = (spec.get("image") or {}).get("args_env")
    if not name:
        return command, env
    if name in env:
        raise StackError(f"image.args_env: {name} is set by genai-workstation",
                         "name the variable your image's start script reads, e.g. CLI_ARGS")
    return [], {**env, name: shlex.join(command)}


def extend_context(kind: str, spec: dict, context: dict, base_dir: Path | str,
                   warnings: list[str], file_type) -> dict:
    """`context` (build-context files) with the extension steps in its Dockerfile."""
    base_dir = Path(str(base_dir)).expanduser()
    check_image(kind, spec, base_dir)
    extension = Extension.of(spec.get("image"))
    nodes = [local_node(node, f"stacks.{kind}.custom_nodes.{index}", base_dir)
             for index, node in enumerate(spec.get("custom_nodes") or []) if node.get("path")]
    if not extension and not nodes:
        return context
    context = dict(context)
    steps = [f"# --- Added from the inventory (stacks.{kind}), after the expensive layers: a "
             "change below\n# rebuilds from its own step on, never PyTorch or the app's "
             "requirements."]
    if extension.apt:
        steps.append("# image.extend.apt\nRUN apt-get update \\\n"
                     f" && apt-get install -y --no-install-recommends {_words(extension.apt)} \\\n"
                     " && rm -rf /var/lib/apt/lists/*")
    copies = [_node_files(kind, node, context, warnings, file_type) for node in nodes]
    steps += [requirements for requirements, _copy in copies if requirements]
    if extension.pip:
        steps.append("# image.extend.pip (pinned; after the nodes' requirements, so they win)\n"
                     f'RUN pip install --index-url "${{PIP_INDEX_URL}}" {_words(extension.pip)}')
    steps += [copy for _requirements, copy in copies]
    if extension.run:
        context[RUN_SCRIPT] = file_type(
            f"# image.extend.run of stacks.{kind}: run as root at the end of the build, in "
            f"{APP_DIRS[kind]}\n# (sh -eu: a failing line fails the build).\n"
            + "".join(f"{line}\n" for line in extension.run))
        steps.append(f"# image.extend.run\nCOPY {RUN_SCRIPT} /opt/genai/{RUN_SCRIPT}\n"
                     f"RUN sh -eu /opt/genai/{RUN_SCRIPT}")
    dockerfile = context["Dockerfile"].content
    context["Dockerfile"] = file_type(insert_before_build_hash(dockerfile, "\n\n".join(steps)))
    return context


def _node_files(kind: str, node, context: dict, warnings: list[str],
                file_type) -> tuple[str, str]:
    """Put a local node's files in the context; (its requirements steps or "", its COPY)."""
    try:
        files, excluded = node_files(node)
    except ValueError as exc:
        raise _error(Problem(*exc.args)) from None
    if excluded:
        warnings.append(f"{node.field}.path: not copied into the image: {', '.join(excluded)} "
                        "(secret files and links stay out of image layers; the app reads "
                        "secrets from the secrets file)")
    for relative, (content, mode) in files.items():
        context[f"{NODES_DIR}/{node.name}/{relative}"] = file_type(content, mode)
    source, target = f"{NODES_DIR}/{node.name}", f"{APP_DIRS[kind]}/custom_nodes/{node.name}"
    requirements = ""
    if "requirements.txt" in files:
        requirements = (f"# requirements of the custom node {node.name} ({node.field}.path)\n"
                        f"COPY {source}/requirements.txt /opt/genai/{source}/requirements.txt\n"
                        f'RUN pip install --index-url "${{PIP_INDEX_URL}}" '
                        f"-r /opt/genai/{source}/requirements.txt")
    return requirements, (f"# custom node {node.name} ({node.field}.path)\n"
                          f"COPY {source}/ {target}/")


def insert_before_build_hash(dockerfile: str, block: str) -> str:
    """`block` before the comment and `ARG BUILD_HASH` line that end every app Dockerfile."""
    lines = dockerfile.split("\n")
    index = next((i for i, line in enumerate(lines) if line.startswith("ARG BUILD_HASH")), None)
    if index is None:
        raise StackError("the Dockerfile has no `ARG BUILD_HASH` line", "restore files/")
    while index > 0 and lines[index - 1].startswith("#"):
        index -= 1
    return "\n".join(lines[:index] + [block, ""] + lines[index:])


def _words(values) -> str:
    return " ".join(shlex.quote(v) for v in values)


def _error(problem: Problem) -> StackError:
    return StackError(f"{problem.field}: {problem.message}", problem.hint)
