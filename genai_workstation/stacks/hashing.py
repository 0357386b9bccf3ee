"""The config hash of a rendered stack (secret files through a slow keyed digest)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from .context import _Data
from .errors import StackError
from .rendered import HASH_PLACEHOLDER, RenderedFile, RenderedStack
from .service_hash import (
    SECRET_DIGEST_ITERATIONS,  # noqa: F401 (re-exported)
    file_part,
    file_parts,
)
from .service_hash import apply as apply_service_hashes


def _finish(stack: RenderedStack, data: _Data) -> RenderedStack:
    """Compute the config hash and each service's hash (its label), check no secret leaked."""
    context = (data.workstation, stack.name)
    parts = file_parts(stack.files, context)
    stack.config_hash = config_hash(stack.files, context, parts)
    apply_service_hashes(stack, context, HASH_PLACEHOLDER, parts)
    for path, rendered in list(stack.files.items()):
        if rendered.secret or not isinstance(rendered.content, str):
            continue
        if HASH_PLACEHOLDER in rendered.content:
            stack.files[path] = RenderedFile(
                rendered.content.replace(HASH_PLACEHOLDER, stack.config_hash),
                rendered.mode, rendered.secret)
    leaks = [path for path, rendered in stack.files.items() if not rendered.secret
             for value in data.secret_values() if value.encode() in rendered.data()]
    if leaks:
        raise StackError(
            f"a secret value would be written to {', '.join(sorted(set(leaks)))}",
            "secrets belong only in the secrets file: check vars and extra_args (a very short "
            "secret can also appear there by chance: use a longer one)")
    return stack


def config_hash(files: Mapping[str, RenderedFile], context: tuple[str, ...],
                parts: Mapping[str, str] | None = None) -> str:
    """sha256 over every file; secret files enter through a slow keyed digest only.

    Non-secret files contribute their sha256. A secret file contributes
    PBKDF2-HMAC-SHA256(content, salt=host/stack/path), so the hash (and the service hashes of
    the container labels, built from the same parts) changes when a secret changes but is no
    cheap oracle for guessing it.
    """
    digest = hashlib.sha256(b"genai-workstation config v1\0")
    for path in sorted(files):
        rendered = files[path]
        part = parts[path] if parts else file_part(path, rendered, context)
        digest.update(f"{path}\0{rendered.mode:o}\0{int(rendered.secret)}\0{part}\0".encode())
    return digest.hexdigest()
