"""The config hash of a rendered stack (secret files through a slow keyed digest)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from .context import _Data
from .errors import StackError
from .rendered import HASH_PLACEHOLDER, RenderedFile, RenderedStack

# Slow keyed digest of secret file contents for the config hash (PBKDF2-HMAC-SHA256).
SECRET_DIGEST_ITERATIONS = 200_000


def _finish(stack: RenderedStack, data: _Data) -> RenderedStack:
    """Compute the config hash, put it in the labels, and check no secret leaked."""
    stack.config_hash = config_hash(stack.files, (data.workstation, stack.name))
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


def config_hash(files: Mapping[str, RenderedFile], context: tuple[str, ...]) -> str:
    """sha256 over every file; secret files enter through a slow keyed digest only.

    Non-secret files contribute their sha256. A secret file contributes
    PBKDF2-HMAC-SHA256(content, salt=host/stack/path), so the hash (shown in container labels)
    changes when a secret changes but is no cheap oracle for guessing it.
    """
    digest = hashlib.sha256(b"genai-workstation config v1\0")
    for path in sorted(files):
        rendered = files[path]
        if rendered.secret:
            salt = "\0".join(("genai-workstation/secret-file", *context, path)).encode()
            part = hashlib.pbkdf2_hmac("sha256", rendered.data(), salt,
                                       SECRET_DIGEST_ITERATIONS).hex()
        else:
            part = hashlib.sha256(rendered.data()).hexdigest()
        digest.update(f"{path}\0{rendered.mode:o}\0{int(rendered.secret)}\0{part}\0".encode())
    return digest.hexdigest()
