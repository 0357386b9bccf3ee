"""ComfyUI-Login (github.com/liusida/ComfyUI-Login) and the stack's own in-container probes.

Once loaded, the node's middleware answers 401 to any request without its token (the first line
of ``<comfyui>/login/PASSWORD``, a bcrypt hash), sent as ``Authorization: Bearer <token>`` or
``?token=<token>``. Before a password is set its token is the empty string, so ``?token=`` passes
(and anyone can set the first password at /login anyway). The healthcheck, the device probe and
the idle sidecar read the file inside the container at each call: the token never appears on a
command line, in the compose file or in output. Without the node the file is absent and the
extra empty ``token`` parameter is ignored by ComfyUI. A leaf module: it imports nothing.
"""

from __future__ import annotations

NODE_FOLDER = "ComfyUI-Login"
LOGIN_DIR = "/opt/comfyui/login"  # <comfyui>/login, where the node keeps PASSWORD (fixed path)
WORKSPACE_FOLDER = "comfyui-login"  # <workspace>/comfyui-login is mounted there
TOKEN_FILE = f"{LOGIN_DIR}/PASSWORD"


def authed_request_code(url: str) -> str:
    """Python statements that leave in ``r`` a urllib Request for ``url`` carrying the token
    (``u`` is urllib.request); for ``python -c`` in the app image."""
    return ("import os,urllib.request as u;"
            f"f={TOKEN_FILE!r};t=open(f).readline().strip() if os.path.exists(f) else '';"
            f"r=u.Request({url!r}+('' if t else '?token='),"
            "headers={'Authorization':'Bearer '+t} if t else {});")
