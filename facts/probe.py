"""Facts that prove access rather than read metadata: can a uid really write a folder?"""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

from pyinfra.api import FactBase

_HTTP_MARK = "@@genai:http "
_HTTP_RC = "@@genai:http-rc "
# One plain HTTP/1.0 GET without credentials over bash's /dev/tcp (curl is not on every host):
# prints the status line and headers, up to the blank line.
_HTTP_GET = (
    'exec 3<>"/dev/tcp/$1/$2" || exit 7; '
    'printf "GET %s HTTP/1.0\\r\\nHost: %s:%s\\r\\nConnection: close\\r\\n\\r\\n" '
    '"$3" "$1" "$2" >&3; head -c 8192 <&3 | tr -d "\\r" | sed "/^$/q"'
)


class WriteProbe(FactBase):
    """
    Returns, for each folder, whether the given uid/gid can create a file in it.

    A probe file ``.genai-write-probe.<pid>`` is created as that uid and removed at once, so
    the answer covers mode, owner, ACLs, read-only mounts and 9p quirks alike.

    .. code:: python

        {
            "/srv/genai/output": {"writable": True, "error": None},
            "/srv/genai/models": {"writable": False, "error": "Permission denied"},
        }
    """

    requires_command = "setpriv"

    def command(self, paths: list[str], uid: int, gid: int) -> str:
        probe = 'f="$1/.genai-write-probe.$$"; : > "$f" && rm -f "$f"'
        loop = (
            f"for p in {' '.join(shlex.quote(p) for p in paths)}; do "
            f"err=$(setpriv --reuid={int(uid)} --regid={int(gid)} --clear-groups "
            f'sh -c {shlex.quote(probe)} _ "$p" 2>&1) '
            '&& echo "ok $p" || printf "fail %s\\t%s\\n" "$p" "$(echo "$err" | tail -n 1)"; '
            "done"
        )
        return loop

    def process(self, output: list[str]) -> dict:
        result = {}
        for line in output:
            status, _, rest = line.partition(" ")
            if status == "ok":
                result[rest] = {"writable": True, "error": None}
            elif status == "fail":
                path, _, error = rest.partition("\t")
                error = error.rsplit(": ", 1)[-1] if ": " in error else error
                result[path] = {"writable": False, "error": error or "cannot write"}
        return result


class HttpStatus(FactBase):
    """
    Returns what each http:// URL answers to a GET without credentials, asked ON the host
    (where the published ports are), with a 5 s limit per URL.

    .. code:: python

        {
            "http://127.0.0.1:8443/": {"status": 401, "location": None, "error": None},
            "http://127.0.0.1:8444/": {"status": None, "location": None,
                                       "error": "connect: Connection refused"},
        }
    """

    requires_command = "bash"

    def command(self, urls: list[str]) -> str:
        parts = []
        for url in urls:
            split = urlsplit(url)
            host = (split.hostname or "").strip("[]")
            port = split.port or 80
            path = (split.path or "/") + (f"?{split.query}" if split.query else "")
            parts.append(
                f"echo {shlex.quote(_HTTP_MARK + url)}; "
                f"timeout 5 bash -c {shlex.quote(_HTTP_GET)} _ {shlex.quote(host)} {int(port)} "
                f"{shlex.quote(path)} 2>&1; echo \"{_HTTP_RC}$?\""
            )
        return "; ".join(parts) or "true"

    def process(self, output: list[str]) -> dict:
        result: dict[str, dict] = {}
        current, lines = None, []
        for line in output:
            if line.startswith(_HTTP_MARK):
                current, lines = line[len(_HTTP_MARK):], []
            elif line.startswith(_HTTP_RC) and current is not None:
                result[current] = _http_answer(lines, line[len(_HTTP_RC):].strip())
                current = None
            elif current is not None:
                lines.append(line)
        return result


def _http_answer(lines: list[str], rc: str) -> dict:
    status, location = None, None
    for line in lines:
        words = line.split()
        if status is None and len(words) >= 2 and words[0].startswith("HTTP/") \
                and words[1].isdigit():
            status = int(words[1])
        elif line.lower().startswith("location:"):
            location = line.split(":", 1)[1].strip()
    if status is not None:
        return {"status": status, "location": location, "error": None}
    text = [line.strip() for line in lines if line.strip()]
    error = "no answer within 5 s" if rc == "124" else (text[-1].rsplit(": ", 1)[-1]
                                                         if text else f"no answer (exit {rc})")
    return {"status": None, "location": None, "error": error}
