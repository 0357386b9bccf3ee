"""apt packages, refreshing the package lists only when something is to be installed."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

from genai_workstation.hostfacts import fact


def missing_packages(wanted: list[str], installed: dict) -> list[str]:
    """Packages of `wanted` (``name`` or ``name=version``) not installed at that version."""
    missing = []
    for spec in wanted:
        name, _, version = spec.partition("=")
        versions = installed.get(name) or []
        if isinstance(versions, str):
            versions = [versions]
        if not versions or (version and version not in versions):
            missing.append(spec)
    return missing


@operation()
def install(packages: list[str], allow_downgrades: bool = False):
    """
    Install apt packages (``name`` or ``name=version``). ``apt-get update`` runs first, and only
    when a package is missing, so a converged host runs no apt command at all.

    + packages: the packages
    + allow_downgrades: let a pinned version replace a newer one
    """
    installed = fact(DebPackages)
    missing = missing_packages(packages, installed)
    if not missing:
        host.noop(f"installed: {', '.join(packages)}")
        return
    yield "apt-get update"
    yield from apt.packages._inner(
        packages=missing, allow_downgrades=allow_downgrades, no_recommends=False
    )
