"""Platform check and the workstation user."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, operation
from pyinfra.facts.server import Groups, Users
from pyinfra.operations import server

from facts.platform import Platform

PLATFORMS = ("auto", "wsl2", "linux")


def platform_problem(expected: str, platform: dict) -> str | None:
    """Why the host's platform does not fit `platform:` of the inventory, or None."""
    if expected not in PLATFORMS:
        return f"unknown platform setting {expected!r} (one of {', '.join(PLATFORMS)})"
    wsl = platform.get("wsl")
    kernel = platform.get("kernel") or "?"
    if wsl == 1:
        return (
            f"this is WSL1 (kernel {kernel}): WSL1 has no real Linux kernel, so it cannot run "
            "the Docker engine or see the GPU; convert the distribution with "
            "`wsl.exe --set-version <distro> 2` (in Windows) and run again"
        )
    if expected == "wsl2" and wsl != 2:
        return (
            f"the inventory says `platform: wsl2` but this host is not WSL2 (kernel {kernel}); "
            "set `platform: linux` or `auto` for this host"
        )
    if expected == "linux" and wsl == 2:
        return (
            f"the inventory says `platform: linux` but this host is WSL2 (kernel {kernel}); "
            "set `platform: wsl2` or `auto` for this host"
        )
    distro = platform.get("distro_id")
    if distro not in ("debian", "ubuntu"):
        return (
            f"unsupported distribution {distro or 'unknown'!r}: the workstation step manages "
            "Debian and Ubuntu (apt, dpkg)"
        )
    return None


@operation()
def check_platform(expected: str = "auto"):
    """
    Refuse a host whose platform does not fit: WSL1, a mismatch with ``platform:`` of the
    inventory, or a distribution other than Debian/Ubuntu. Changes nothing.

    + expected: ``auto``, ``wsl2`` or ``linux`` (the inventory's ``platform``)
    """
    platform = host.get_fact(Platform)
    problem = platform_problem(expected, platform)
    if problem:
        raise OperationError(problem)
    kind = "WSL2" if platform.get("wsl") == 2 else "Linux"
    init = "systemd" if platform.get("systemd_pid1") else "no systemd"
    host.noop(
        f"{kind}, {platform.get('distro_id')} {platform.get('distro_version')} "
        f"({platform.get('codename')}, {platform.get('arch')}), {init}"
    )
    return
    yield  # an operation is a generator


@operation()
def workstation_user(username: str, uid: int, gid: int, groups: list[str] | None = None):
    """
    The workstation user and its own group with the inventory's uid/gid, plus supplementary
    groups (created as system groups when missing, e.g. ``docker`` before Docker is installed).

    An existing user or group with another id, or the id taken by another name, is refused:
    renumbering would orphan files the user already owns.

    + username: user and group name
    + uid: user id
    + gid: group id of the user's own group
    + groups: supplementary groups (appended, other memberships kept)
    """
    name = username
    groups = list(groups or [])
    users = host.get_fact(Users)
    existing_groups = host.get_fact(Groups)

    problems = []
    for other, info in users.items():
        if other != name and str(info.get("uid")) == str(uid):
            problems.append(
                f"uid {uid} already belongs to user {other!r}: set `user.name: {other}` to use "
                "that account as the workstation user, or choose a free `user.uid`"
            )
    if name in users and str(users[name].get("uid")) != str(uid):
        problems.append(
            f"user {name!r} exists with uid {users[name].get('uid')}, not {uid}: set "
            f"`user.uid: {users[name].get('uid')}` (renumbering would orphan its files)"
        )
    if problems:
        raise OperationError("; ".join(problems))

    yield from server.group._inner(group=name, gid=gid)
    for group in groups:
        if group not in existing_groups:
            yield from server.group._inner(group=group, system=True)

    current = users.get(name)
    if current is None:
        yield from server.user._inner(
            user=name,
            uid=uid,
            group=name,
            groups=groups or None,
            append=True,
            home=f"/home/{name}",
            shell="/bin/bash",
            create_home=True,
        )
        return
    missing = [group for group in groups if group not in (current.get("groups") or [])]
    if current.get("group") != name or missing:
        yield from server.user._inner(
            user=name, uid=uid, group=name, groups=groups or None, append=True
        )
    else:
        host.noop(f"user {name} ({uid}:{gid}) exists, in {', '.join(groups) or 'no'} groups")
