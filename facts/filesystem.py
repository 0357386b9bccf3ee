"""Facts about paths: kind, owner, mode, the filesystem they (or their parent) live on, and
the digests of files a run writes (stack files, secret files)."""

from __future__ import annotations

import posixpath
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

    One ``stat`` of every path and its parents (owner, mode, kind), one ``stat -L`` for their
    mount points and one ``findmnt`` of the mount table, matched here (a ``stat`` and a
    ``findmnt`` per path cost ~6 ms each on the host).
    """

    default = dict

    @staticmethod
    def _candidates(paths: list[str]) -> list[str]:
        """The paths and every parent of them, each once."""
        seen: dict[str, None] = {}
        for path in paths:
            path = str(path)
            while path and path not in seen:
                seen[path] = None
                parent = posixpath.dirname(path.rstrip("/")) or ("/" if path.startswith("/")
                                                                 else "")
                if parent == path:
                    break
                path = parent
        return list(seen)

    def command(self, paths: list[str]) -> str:
        if not paths:
            return "true"
        quoted = " ".join(shlex.quote(str(path)) for path in paths)
        every = " ".join(shlex.quote(path) for path in self._candidates(paths))
        return (
            f"printf '@@path %s\\n' {quoted}; "
            f"stat -c '@@st %u %g %a %F|%n' -- {every} 2>/dev/null; "
            f"stat -L -c '@@mp %m|%n' -- {every} 2>/dev/null; "
            "findmnt -rn -o FSTYPE,TARGET 2>/dev/null | sed 's/^/@@fs /'; true"
        )

    def process(self, output: list[str]):
        states: dict[str, dict] = {}
        stats: dict[str, dict] = {}
        mount_lines: list[str] = []
        fstypes: dict[str, str] = {}
        for line in output:
            if line.startswith("@@path "):
                states[line[len("@@path ") :]] = {"exists": False, "fstype": None, "mount": None}
            elif line.startswith("@@st "):
                parts = line[len("@@st ") :].split(" ", 3)
                if len(parts) == 4:
                    kind, _, name = parts[3].partition("|")
                    stats[name] = _stat(parts[0], parts[1], parts[2], kind)
            elif line.startswith("@@mp "):
                mount_lines.append(line[len("@@mp ") :])
            elif line.startswith("@@fs "):
                fstype, _, target = line[len("@@fs ") :].partition(" ")
                fstypes[_unescape(target)] = _unescape(fstype)

        names = self._candidates(list(states))
        mount_of: dict[str, str] = {}
        for rest in mount_lines:
            # "<mount point>|<name>": the name is one of ours, the longest that fits
            name = max((n for n in names if rest.endswith("|" + n)), key=len, default=None)
            if name is not None:
                mount_of[name] = rest[: -len(name) - 1]
        for path, state in states.items():
            state.update(stats.get(path, {}))
            where = path
            while where and where not in mount_of:
                parent = posixpath.dirname(where.rstrip("/"))
                where = "" if parent == where else parent
            mount = mount_of.get(where) if where else None
            state["mount"] = mount or None
            state["fstype"] = fstypes.get(mount) if mount else None

        # keep the documented key order: exists, kind, fstype, uid, gid, mode, mount
        order = ("exists", "kind", "fstype", "uid", "gid", "mode", "mount")
        return {
            path: {key: state[key] for key in order if key in state}
            for path, state in states.items()
        }


def _stat(uid: str, gid: str, mode: str, kind: str) -> dict:
    return {
        "exists": True,
        "kind": _KINDS.get(kind, "other"),
        "uid": int(uid),
        "gid": int(gid),
        "mode": mode,
    }


class FileStat(FactBase):
    """
    Returns size, modification time, mode and owner of one path (``stat``, no hashing), or
    None when it does not exist.

    .. code:: python

        {"kind": "file", "size": 76021944, "mtime": 1763900000, "mode": "755", "uid": 0,
         "gid": 0}
    """

    def command(self, path: str) -> str:
        return f"stat -c '%s %Y %a %u %g %F' -- {shlex.quote(str(path))} 2>/dev/null; true"

    def process(self, output: list[str]):
        for line in output:
            parts = line.split(" ", 5)
            if len(parts) == 6 and parts[0].isdigit():
                size, mtime, mode, uid, gid, kind = parts
                return {
                    "kind": _KINDS.get(kind, "other"),
                    "size": int(size),
                    "mtime": int(mtime),
                    "mode": mode,
                    "uid": int(uid),
                    "gid": int(gid),
                }
        return None



def sh_quote(value) -> str:
    """Single-quote for sh, always (unlike shlex.quote, which leaves safe words bare)."""
    return "'" + str(value).replace("'", "'\"'\"'") + "'"


def _each_path(paths: list, script) -> str:
    """One command running ``script(quoted path)`` for each path."""
    return "; ".join(script(sh_quote(path)) for path in paths) or "true"


def _mode_owner_of(quoted: str) -> str:
    """sh: mode and owner of a quoted path, as ``644 1000 1000``."""
    return f"\"$(stat -c '%a %u %g' {quoted})\""


def _mode_owner(field: str) -> dict:
    """``stat -c '%a %u %g'`` as {"mode": "644", "uid": 1000, "gid": 1000}."""
    mode, uid, gid = (field.split() + ["", "", ""])[:3]
    return {"mode": mode, "uid": int(uid) if uid.isdigit() else None,
            "gid": int(gid) if gid.isdigit() else None}


class _PathRows(FactBase):
    """A fact answering one tab-separated line per path: an absent path's line has two
    fields, ``absent`` at index `_absent` and the path; `_present(fields)` reads the others
    as (path, value), or None."""

    _absent = 0

    @staticmethod
    def default():
        return {}

    def process(self, output: list[str]):
        result = {}
        for line in output:
            parts = line.split("\t")
            if len(parts) == 2 and parts[self._absent] == "absent":
                result[parts[1 - self._absent]] = None
            elif found := self._present(parts):
                result[found[0]] = found[1]
        return result

    @staticmethod
    def _present(parts: list[str]) -> tuple[str, dict] | None:
        raise NotImplementedError


class SecretFiles(_PathRows):
    """
    Returns, for files that hold secrets, a salted digest of the content plus mode and owner,
    so that the deploy can tell whether a secret file needs rewriting without the content (or
    an unsalted hash of it) ever showing in pyinfra's output.

    .. code:: python

        {"/srv/genai/stacks/comfyui/secrets/auth": {"digest": "9f..", "mode": "600",
                                                     "uid": 1000, "gid": 1000},
         "/srv/genai/stacks/comfyui/.env": None}  # absent
    """

    _absent = 1  # "<path>\tabsent"

    def command(self, paths: list, salt: str) -> str:
        return _each_path(paths, lambda p: (
            f"if [ -f {p} ]; then printf '%s\\t%s\\t' {p} {_mode_owner_of(p)}; "
            f"{{ printf %s {sh_quote(salt)}; cat {p}; }} | sha256sum | cut -d' ' -f1; "
            f"else printf '%s\\tabsent\\n' {p}; fi"))

    @staticmethod
    def _present(parts: list[str]):
        if len(parts) == 3:
            return parts[0], {"digest": parts[2].strip(), **_mode_owner(parts[1])}
        return None


class PathDigests(_PathRows):
    """
    Returns kind, mode, owner and (files) the sha256 of each path in one command, so that a
    stack whose files are all in place costs one round trip, not one per file. For files that
    are not secret (secret files: ``SecretFiles``).

    .. code:: python

        {"/srv/genai/stacks/comfyui/compose.yaml": {"kind": "file", "sha256": "9f..",
                                                    "mode": "644", "uid": 1000, "gid": 1000},
         "/srv/genai/stacks/comfyui": {"kind": "directory", "sha256": None, "mode": "750",
                                       "uid": 1000, "gid": 1000},
         "/srv/genai/stacks/comfyui/.env": None}  # absent
    """

    def command(self, paths: list) -> str:
        return _each_path(paths, lambda p: (
            f"if [ -f {p} ] && [ ! -L {p} ]; then "
            f"printf 'file\\t%s\\t%s\\t' {p} {_mode_owner_of(p)}; sha256sum < {p} | cut -d' ' -f1; "
            f"elif [ -d {p} ] && [ ! -L {p} ]; then "
            f"printf 'directory\\t%s\\t%s\\t\\n' {p} {_mode_owner_of(p)}; "
            f"else printf 'absent\\t%s\\n' {p}; fi"))

    @staticmethod
    def _present(parts: list[str]):
        if len(parts) == 4 and parts[0] in ("file", "directory"):
            return parts[1], {"kind": parts[0], "sha256": parts[3].strip() or None,
                              **_mode_owner(parts[2])}
        return None
