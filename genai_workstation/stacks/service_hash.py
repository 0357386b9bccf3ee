"""Per-service config hashes: what one service's container depends on, and nothing else.

The stack's config hash (``RenderedStack.config_hash``) names the whole rendered folder: it is
the identity of a snapshot in ``.history/`` and of the ``.genai/verified`` mark. A container
must not carry it, or changing one Forge instance would recreate the other one and the proxy.
Each service gets its own hash instead, put in its ``genai.service-hash`` label, over:

- its compose definition, and the top-level networks, volumes, secrets and configs it uses;
- the files of the stack folder it reads: relative bind mounts (the Caddyfile for the proxy
  only, the sidecar script for the sidecar only), compose secrets and configs, ``env_file``,
  a relative build context, and ``.env`` (Compose reads it for every service);
- the image build hash when it runs the image built here (a named image keeps its tag);
- the hash of a service whose container it shares (``network_mode: service:x``,
  ``volumes_from``): Compose recreates it along with that one.

Why a label of our own: Compose recreates a container when its service's config hash
(``com.docker.compose.config-hash``: the service definition as JSON, labels included, without
build, pull_policy, scale, depends_on and profiles) or its image changed (docker/compose
``pkg/compose/convergence.go`` ``mustRecreate``, ``pkg/compose/hash.go`` ``ServiceHash``); the
content of a bind-mounted file or of a secret file is not part of it. Putting our hash in the
labels makes Compose's own hash change exactly when what the container depends on changed, so
``docker compose up`` recreates those services and leaves the others running. ``depends_on``
does not tie them: Compose stops a dependent only when it declares ``restart: true``.

Secret files enter through the same slow keyed digest as the stack hash (:func:`file_part`):
labels are readable by anyone who can run ``docker inspect``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
from collections.abc import Mapping

import yaml

SERVICE_HASH_LABEL = "genai.service-hash"
# Slow keyed digest of secret file contents (PBKDF2-HMAC-SHA256), shared with the stack hash.
SECRET_DIGEST_ITERATIONS = 200_000
_SHARED = re.compile(r"^service:(.+)$")


def file_part(path: str, rendered, context: tuple[str, ...]) -> str:
    """The digest of one rendered file: sha256, or PBKDF2 keyed by host/stack/path when the
    file is secret (so a hash shown in a label is no cheap oracle for guessing the secret)."""
    if rendered.secret:
        salt = "\0".join(("genai-workstation/secret-file", *context, path)).encode()
        return hashlib.pbkdf2_hmac("sha256", rendered.data(), salt,
                                   SECRET_DIGEST_ITERATIONS).hex()
    return hashlib.sha256(rendered.data()).hexdigest()


def file_parts(files: Mapping, context: tuple[str, ...]) -> dict[str, str]:
    """{path: file_part} of every rendered file, computed once for the stack hash and the
    service hashes (a secret's keyed digest is slow on purpose)."""
    return {path: file_part(path, rendered, context) for path, rendered in files.items()}


def service_hashes(files: Mapping, context: tuple[str, ...], build=None,
                   parts: dict[str, str] | None = None) -> dict[str, str]:
    """{service: sha256} for every service of ``files["compose.yaml"]`` (rendered, with the
    label placeholders still in it). ``build``: the stack's ImageBuild (tag, build_hash);
    ``parts``: file_parts, when already computed."""
    document = _compose(files)
    services = document.get("services") or {}
    parts = dict(parts or {})

    def part(path: str) -> str:
        if path not in parts:
            parts[path] = file_part(path, files[path], context)
        return parts[path]

    done: dict[str, str] = {}

    def one(name: str, seen: tuple[str, ...] = ()) -> str:
        if name not in done:
            body = services.get(name) or {}
            shared = [other for other in _shared_with(body) if other in services
                      and other not in seen]
            inputs = {
                "project": document.get("name"), "service": name, "definition": body,
                "top_level": _top_level(document, body),
                "files": {path: part(path) for path in _files_read(body, document, files)},
                "build_hash": _build_hash(body, build),
                "shares": {other: one(other, (*seen, name)) for other in shared},
            }
            data = json.dumps(inputs, sort_keys=True, default=str).encode()
            done[name] = hashlib.sha256(b"genai-workstation service v1\0" + data).hexdigest()
        return done[name]

    return {name: one(name) for name in services}


def label_services(text: str, hashes: Mapping[str, str], placeholder: str) -> str:
    """The compose file with ``placeholder`` replaced, inside each service's block, by that
    service's hash. Raises ValueError when a service's label does not come out as its hash."""
    lines = text.splitlines(keepends=True)
    current, indent, in_services = None, None, False
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        depth = len(line) - len(line.lstrip(" "))
        if depth == 0:
            in_services, current = stripped.split("#")[0].strip() == "services:", None
            continue
        if not in_services:
            continue
        indent = depth if indent is None else indent
        if depth == indent:
            current = stripped[:-1].strip().strip("'\"") if stripped.endswith(":") else None
        elif current in hashes and placeholder in line:
            lines[number] = line.replace(placeholder, hashes[current])
    result = "".join(lines)
    labelled = (_load(result) or {}).get("services") or {}
    for name, value in hashes.items():
        labels = _labels(labelled.get(name) or {})
        if labels.get(SERVICE_HASH_LABEL) != value:
            raise ValueError(f"compose.yaml: service {name}: its {SERVICE_HASH_LABEL} label "
                             "was not set")
    return result


def apply(stack, context: tuple[str, ...], placeholder: str,
          parts: dict[str, str] | None = None) -> None:
    """Set ``stack.service_hashes`` and write each one into its service's label."""
    compose = stack.files.get("compose.yaml")
    if compose is None or not isinstance(compose.content, str):
        return
    stack.service_hashes = service_hashes(stack.files, context, stack.image_build, parts)
    text = label_services(compose.content, stack.service_hashes, placeholder)
    stack.files["compose.yaml"] = dataclasses.replace(compose, content=text)


# ------------------------------------------------------------------------- what one reads


def _compose(files: Mapping) -> dict:
    rendered = files.get("compose.yaml")
    if rendered is None:
        return {}
    document = _load(rendered.data().decode("utf-8"))
    return document if isinstance(document, dict) else {}


def _load(text: str):
    """yaml.safe_load, with libyaml's loader when PyYAML has it (several times faster)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _labels(body: dict) -> dict:
    labels = body.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(item.split("=", 1) if "=" in item else (item, "") for item in labels)
    return labels


def _names(value) -> list[str]:
    """Names of a list / mapping of references (networks, secrets, configs)."""
    if isinstance(value, dict):
        return [str(key) for key in value]
    return [str(item.get("source")) if isinstance(item, dict) else str(item)
            for item in value or []]


def _top_level(document: dict, body: dict) -> dict:
    """The top-level definitions this service uses (a network's name, a secret's file...)."""
    networks = _names(body.get("networks")) or (
        [] if body.get("network_mode") else ["default"])
    volumes = [v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
               for v in body.get("volumes") or []]
    used = {"networks": networks, "volumes": [v for v in volumes if v and not _is_path(v)],
            "secrets": _names(body.get("secrets")), "configs": _names(body.get("configs"))}
    return {kind: {name: (document.get(kind) or {}).get(name) for name in sorted(set(names))}
            for kind, names in used.items()}


def _is_path(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def _relative(source) -> str | None:
    """A path of the stack folder (``./proxy/Caddyfile`` -> ``proxy/Caddyfile``), else None."""
    if not isinstance(source, str) or not source.startswith("."):
        return None
    path = posixpath.normpath(source)
    return None if path.startswith("..") else path


def _files_read(body: dict, document: dict, files: Mapping) -> list[str]:
    """Rendered files the service's container reads (``.env`` always: Compose reads it)."""
    sources = [v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
               for v in body.get("volumes") or []]
    env_files = body.get("env_file") or []
    env_files = [env_files] if isinstance(env_files, str) else env_files
    sources += [e.get("path") if isinstance(e, dict) else e for e in env_files]
    for kind in ("secrets", "configs"):
        for name in _names(body.get(kind)):
            sources.append(((document.get(kind) or {}).get(name) or {}).get("file"))
    build = body.get("build")
    sources.append(build.get("context") if isinstance(build, dict) else build)
    read = {".env"} & set(files)
    for source in sources:
        path = _relative(source)
        if path is None:
            continue
        read |= {p for p in files if path == "." or p == path or p.startswith(path + "/")}
    return sorted(read)


def _build_hash(body: dict, build) -> str | None:
    if build is None:
        return None
    tag = getattr(build, "tag", None) or (build.get("tag") if isinstance(build, dict) else None)
    if body.get("image") != tag:
        return None
    return getattr(build, "build_hash", None) or build.get("build_hash")


def _shared_with(body: dict) -> list[str]:
    """Services whose container this one shares (namespaces, volumes_from)."""
    shared = []
    for key in ("network_mode", "ipc", "pid"):
        match = _SHARED.match(str(body.get(key) or ""))
        if match:
            shared.append(match.group(1))
    for source in body.get("volumes_from") or []:
        name = str(source).split(":")[0]
        if name != "container":
            shared.append(name)
    return sorted(set(shared))
