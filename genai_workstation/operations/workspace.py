"""The workspace and model tree: one fact read for every path, one command for what is missing."""

from __future__ import annotations

from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from genai_workstation.facts.filesystem import PathStates, is_windows_mount
from genai_workstation.hostfacts import fact, noop, passed_at_prepare
from genai_workstation.layout import Layout, default_models_dir

# Local Linux filesystems that keep owners, modes and mmap-friendly speed across reboots.
ALLOWED_FSTYPES = ("ext4", "ext3", "xfs", "btrfs", "zfs", "f2fs", "bcachefs")

_REFUSED_WHY = {
    "tmpfs": "memory-backed: models and outputs vanish at reboot or `wsl --shutdown`",
    "ramfs": "memory-backed: models and outputs vanish at reboot or `wsl --shutdown`",
    "overlay": "an overlay (a container's or WSL's /usr/lib/wsl/lib layer), not a disk of its own",
    "nfs": "a network filesystem: slow for multi-GB models, uid/gid mapping not guaranteed",
    "nfs4": "a network filesystem: slow for multi-GB models, uid/gid mapping not guaranteed",
    "cifs": "a Windows/SMB share: chmod/chown do not persist",
    "smb3": "a Windows/SMB share: chmod/chown do not persist",
    "vboxsf": "a VirtualBox shared folder: chmod/chown do not persist",
}


def workspace_paths(root: str, models_dir: str | None = None) -> list[str]:
    """Every folder of the tree, parents before children (genai_workstation.layout.Layout)."""
    return Layout(root, models_dir or default_models_dir(root)).tree()


def refusal(path: str, state: dict) -> str | None:
    """Why `path` cannot hold the workspace, or None."""
    windows = is_windows_mount(state)
    if windows:
        return f"{path} is {windows}"
    fstype = state.get("fstype")
    if state.get("exists") and state.get("kind") != "directory":
        return f"{path} exists and is a {state.get('kind')}, not a directory"
    if fstype in ALLOWED_FSTYPES:
        return None
    where = f"{fstype or 'an unknown filesystem'} (mounted at {state.get('mount') or '?'})"
    why = _REFUSED_WHY.get(fstype or "", "not a local Linux disk filesystem")
    if (fstype or "").startswith("fuse"):
        why = "a FUSE filesystem: ownership and speed depend on the userspace driver"
    return (
        f"{path} is on {where}: {why}. Put the workspace on a local Linux filesystem "
        f"({', '.join(ALLOWED_FSTYPES)}), e.g. the WSL2 ext4 disk (/srv/genai or ~/genai)"
    )


@operation()
def tree(root: str, uid: int, gid: int, models_dir: str | None = None, mode: str = "755"):
    """
    The workspace root, ``models/<ComfyUI folder>`` for every ComfyUI model folder and the data
    folders, owned by uid:gid with ``mode``. Every path is checked first (one PathStates read):
    a path on a Windows drive (9p/drvfs/virtiofs, /mnt/<letter>), tmpfs, a network or other
    non-local filesystem is refused with the reason, and nothing is created.

    + root: workspace root
    + uid: owner
    + gid: group
    + models_dir: model tree (default ``<root>/models``)
    + mode: directory mode (default 755: the owner writes, containers running as other users
      can still read the models)
    """
    paths = workspace_paths(root, models_dir)
    if passed_at_prepare():
        return
    states = fact(PathStates, paths=paths)
    problems, seen = [], set()
    for path in paths:
        state = states.get(path) or {}
        reason = refusal(path, state)
        where = (state.get("fstype"), state.get("mount"))
        if state.get("exists") and state.get("kind") != "directory":
            where = path
        if reason and where not in seen:  # one line per filesystem, not per folder
            seen.add(where)
            problems.append(reason)
    if problems:
        raise OperationError("workspace refused, nothing created: " + "; ".join(problems))

    todo = [
        path for path in paths
        if not (states.get(path) or {}).get("exists")
        or states[path].get("uid") != uid
        or states[path].get("gid") != gid
        or str(states[path].get("mode")) != str(mode).lstrip("0")
    ]
    if not todo:
        noop(f"{len(paths)} workspace folders in place ({uid}:{gid}, {mode})")
        return
    yield StringCommand(
        "install", "-d", "-o", str(uid), "-g", str(gid), "-m", str(mode),
        *(QuoteString(path) for path in todo),
    )
