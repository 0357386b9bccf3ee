"""Facts that prove access rather than read metadata: can a uid really write a folder?"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


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
