"""Facts about paths: kind, owner, mode and the filesystem they (or their parent) live on."""

from __future__ import annotations

import re
import shlex

from pyinfra.api import FactBase

# Filesystems WSL uses for Windows drives (DrvFs over 9p, or virtiofs).
WINDOWS_FSTYPES = {"9p", "drvfs", "virtiofs"}
_WINDOWS_DRIVE_MOUNT = re.compile(r"^/mnt/[A-Za-z](/|$)")

_KINDS = {
    "directory": "directory",
    "regular file": "file",
    "regular empty file": "file",
    "symbolic link": "link",
}


def _unescape(value: str) -> str:
    """findmnt -r escapes spaces and other bytes as \\xNN."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def is_windows_mount(state: dict) -> str | None:
    """Why a path state (from PathStates) is on a Windows drive, or None when it is not."""
    fstype = (state or {}).get("fstype")
    mount = (state or {}).get("mount")
    if fstype in WINDOWS_FSTYPES:
        return (
            f"on a Windows drive: {mount or '?'} is {fstype} (DrvFs); slow, and chmod/chown "
            "do not persist; keep it on the WSL ext4 filesystem"
        )
    if mount and _WINDOWS_DRIVE_MOUNT.match(mount):
        return f"under {mount}, where WSL mounts Windows drives; keep it on the WSL ext4 filesystem"
    return None


class PathStates(FactBase):
    """
    Returns the state of each path in one round trip; missing paths report the filesystem
    of their nearest existing parent.

    .. code:: python

        {
            "/srv/genai": {
                "exists": True,
                "kind": "directory",  # "file", "link" or "other"
                "fstype": "ext4",
                "uid": 1000,
                "gid": 1000,
                "mode": "755",
                "mount": "/",
            },
            "/srv/genai/x": {"exists": False, "fstype": "ext4", "mount": "/"},
        }
    """

    default = dict

    def command(self, paths: list[str]) -> str:
        if not paths:
            return "true"
        quoted = " ".join(shlex.quote(str(path)) for path in paths)
        return (
            f"for p in {quoted}; do "
            "printf '@@path %s\\n' \"$p\"; q=$p; "
            'while [ ! -e "$q" ] && [ ! -L "$q" ]; do q=$(dirname -- "$q"); done; '
            'if [ "$q" = "$p" ]; then '
            "stat -c '@@stat %u %g %a %F' -- \"$p\" 2>/dev/null; fi; "
            "findmnt -rn -o FSTYPE,TARGET --target \"$q\" 2>/dev/null | sed 's/^/@@mnt /' "
            '| grep . || findmnt -rn -o FSTYPE,TARGET --target "$(dirname -- "$q")" '
            "2>/dev/null | sed 's/^/@@mnt /'; "
            "done; true"
        )

    def process(self, output: list[str]):
        states: dict[str, dict] = {}
        current: dict | None = None
        for line in output:
            if line.startswith("@@path "):
                current = {"exists": False, "fstype": None, "mount": None}
                states[line[len("@@path ") :]] = current
            elif current is None:
                continue
            elif line.startswith("@@stat "):
                parts = line[len("@@stat ") :].split(" ", 3)
                if len(parts) == 4:
                    uid, gid, mode, kind = parts
                    current.update(
                        {
                            "exists": True,
                            "kind": _KINDS.get(kind, "other"),
                            "uid": int(uid),
                            "gid": int(gid),
                            "mode": mode,
                        }
                    )
            elif line.startswith("@@mnt ") and current["fstype"] is None:
                fstype, _, target = line[len("@@mnt ") :].partition(" ")
                current["fstype"] = _unescape(fstype) or None
                current["mount"] = _unescape(target) or None

        # keep the documented key order: exists, kind, fstype, uid, gid, mode, mount
        order = ("exists", "kind", "fstype", "uid", "gid", "mode", "mount")
        return {
            path: {key: state[key] for key in order if key in state}
            for path, state in states.items()
        }
