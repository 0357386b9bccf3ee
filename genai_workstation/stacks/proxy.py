"""The authenticating reverse proxy (Caddy) in front of exposed apps: credential snippets.

The Caddyfile itself holds no credential. Each exposed app gets a snippet, written as a compose
secret (0600 file, mounted at /run/secrets/<name>) and imported by its site block:
- basic: `basic_auth { <user> <bcrypt hash> }`. Caddy only accepts hashed passwords; the hash is
  computed here with the `bcrypt` package, which is already installed as a dependency of
  paramiko (which pyinfra's SSH connector needs), so the product gains no dependency.
- bearer: a header matcher `@genai_authorized header Authorization "Bearer <token>"`.
- login: no credential in Caddy at all; a login gate (files/proxy/auth_gate.py, run with the
  app image's Python) answers Caddy's `forward_auth` and serves the login page; its credentials
  are a JSON compose secret for the gate alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

from .errors import StackError

BCRYPT_COST = 12
# Characters a bearer token may hold: the Caddyfile quotes it, and Caddy's header matcher
# treats `*` as a wildcard, so quotes, backslashes, `*` and white space are refused.
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=:@!#$%&'()\[\],;?^|-]{16,}$")
_USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
# bcrypt's own base64 alphabet.
_BCRYPT_B64 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
)


def bcrypt_salt(*context: str, cost: int = BCRYPT_COST) -> bytes:
    """A bcrypt salt derived from public, stable context (host, stack, service, user).

    A salt need only be unique, not secret. Deriving it (instead of drawing a random one) keeps
    the rendered secret file, hence the stack's config hash, the same from one run to the next,
    so an unchanged password does not restart the proxy. The salt never depends on the password:
    a password-derived salt would let anyone holding the hash test guesses without bcrypt's cost.
    """
    digest = hashlib.sha256("\0".join(("genai-workstation/bcrypt", *context)).encode()).digest()
    # 16 bytes -> 22 characters, the last one with its 4 unused bits at zero (canonical).
    encoded = base64.b64encode(digest[:16]).decode().rstrip("=").translate(_BCRYPT_B64)
    return f"$2a${cost:02d}${encoded}".encode()


def bcrypt_hash(password: str, salt: bytes) -> str:
    try:
        import bcrypt
    except ImportError as exc:  # pragma: no cover - paramiko always brings it
        raise StackError(
            "basic auth needs the `bcrypt` package to hash the password for Caddy",
            "install it (pip install bcrypt; paramiko normally brings it) or use auth.type: "
            "bearer") from exc
    return bcrypt.hashpw(password.encode("utf-8"), salt).decode()


def auth_snippet(auth: dict, value: str, context: tuple[str, ...], field: str) -> str:
    """The Caddyfile snippet for one exposed app (goes into a 0600 secret file only)."""
    if not value:
        raise StackError(f"{field}: the secret {auth.get('secret')} is empty",
                         "set a password or token in the secrets file")
    if auth["type"] == "basic":
        username = auth.get("username", "admin")
        if not _USERNAME.match(username):
            raise StackError(f"{field}.username: {username!r} cannot be used in the proxy config",
                             "use letters, digits and . _ @ - (no spaces or quotes)")
        hashed = bcrypt_hash(value, bcrypt_salt(*context, username))
        return f"basic_auth {{\n\t{username} {hashed}\n}}\n"
    if not _TOKEN.match(value):
        raise StackError(
            f"{field}: the bearer token in {auth.get('secret')} is not usable",
            "use at least 16 characters without spaces, quotes, backslashes or `*`, e.g. "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return f'@genai_authorized header Authorization "Bearer {value}"\n'


GATE_PORT = 9091
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")


def gate_config(auth: dict, password: str, token: str | None, token_file: str | None,
                field: str) -> str:
    """The login gate's credentials (JSON, into a 0600 compose secret only).

    The password secret may be a bcrypt hash, as ComfyUI-Login keeps it in login/PASSWORD:
    the gate then checks passwords against it, and, as ComfyUI-Login does, accepts the hash
    itself as the bearer token unless a token is given."""
    if not password:
        raise StackError(f"{field}: the secret {auth.get('secret')} is empty",
                         "set a password (or a bcrypt hash) in the secrets file")
    username = auth.get("username", "admin")
    if not _USERNAME.match(username):
        raise StackError(f"{field}.username: {username!r} cannot be used for the login",
                         "use letters, digits and . _ @ - (no spaces or quotes)")
    config: dict = {"username": username, "session_hours": auth.get("session_hours", 12)}
    if password.startswith("$2") and not _BCRYPT_HASH.match(password):
        raise StackError(f"{field}: the secret {auth.get('secret')} looks like a bcrypt hash "
                         "but is not a whole one", "copy the full line of ComfyUI-Login's "
                         "login/PASSWORD file (60 characters, $2b$12$...)")
    config["password_hash" if _BCRYPT_HASH.match(password) else "password"] = password
    if token is not None:
        if len(token) < 16 or any(c.isspace() for c in token):
            raise StackError(f"{field}.token_secret: the token is not usable",
                             "use at least 16 characters without spaces, e.g. python3 -c "
                             "'import secrets; print(secrets.token_urlsafe(32))'")
        config["token"] = token
    if token_file:
        config["token_file"] = "/run/genai/token"
    return json.dumps(config, sort_keys=True) + "\n"
