"""Platform check and the workstation user."""

from __future__ import annotations

from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from genai_workstation.facts.accounts import Account
from genai_workstation.facts.platform import Platform
from genai_workstation.hostfacts import fact, noop, passed_at_prepare, read_once

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
    platform = read_once(Platform)
    problem = platform_problem(expected, platform)
    if problem:
        raise OperationError(problem)
    kind = "WSL2" if platform.get("wsl") == 2 else "Linux"
    init = "systemd" if platform.get("systemd_pid1") else "no systemd"
    noop(
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
    if passed_at_prepare():
        return
    account = fact(Account, username=name, uid=uid, groups=groups)
    user = account.get("user")
    existing_groups = account.get("groups") or {}

    problems = []
    owner = account.get("uid_owner")
    if owner and owner != name:
        problems.append(
            f"uid {uid} already belongs to user {owner!r}: set `user.name: {owner}` to use "
            "that account as the workstation user, or choose a free `user.uid`"
        )
    if user is not None and str(user.get("uid")) != str(uid):
        problems.append(
            f"user {name!r} exists with uid {user.get('uid')}, not {uid}: set "
            f"`user.uid: {user.get('uid')}` (renumbering would orphan its files)"
        )
    if problems:
        raise OperationError("; ".join(problems))

    # The same commands pyinfra's server.group/server.user would run, from one fact read.
    if name not in existing_groups:
        yield StringCommand("groupadd", QuoteString(name), "--gid", str(gid))
    for group in groups:
        if group not in existing_groups and group != name:
            yield StringCommand("groupadd", "-r", QuoteString(group))

    joined = StringCommand(*_comma_separated(groups), _separator="")
    if user is None:
        yield StringCommand(
            "useradd", "-d", QuoteString(f"/home/{name}"), "-s", "/bin/bash",
            "-g", QuoteString(name), *(["-G", joined] if groups else []),
            "--uid", str(uid), "-m", QuoteString(name),
        )
        # as pyinfra's server.user: a home restored from a backup may already exist
        yield StringCommand("mkdir", "-p", QuoteString(f"/home/{name}"))
        yield StringCommand("chown", QuoteString(f"{name}:{name}"), QuoteString(f"/home/{name}"))
        return
    mod_args: list = []
    if user.get("group") != name:
        mod_args += ["-g", QuoteString(name)]
    if not set(groups).issubset(user.get("groups") or []):
        mod_args += ["-a", "-G", joined]
    if mod_args:
        yield StringCommand("usermod", *mod_args, QuoteString(name))
    else:
        noop(f"user {name} ({uid}:{gid}) exists, in {', '.join(groups) or 'no'} groups")


def _comma_separated(groups: list[str]) -> list:
    parts: list = []
    for group in groups:
        if parts:
            parts.append(",")
        parts.append(QuoteString(group))
    return parts
