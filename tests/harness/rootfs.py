"""Debian bookworm root trees from debootstrap, built once per machine and cached as tarballs."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

CACHE_DIR = Path(os.environ.get("GENAI_TEST_CACHE", "/var/cache/genai-workstation-tests"))
SUITE = "bookworm"


def debian_mirror() -> str:
    """The Debian mirror apt on this machine already uses."""
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        match = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", source.read_text(), re.M)
        if match:
            return match.group(1)
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        pattern = r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s"
        match = re.search(pattern, sources_list.read_text(), re.M)
        if match:
            return match.group(1)
    return "http://deb.debian.org/debian"


def rootfs_tarball(packages: tuple[str, ...] = ()) -> Path:
    """A cached tarball of a minbase bookworm tree with `packages` added."""
    packages = tuple(sorted(set(packages)))
    key = hashlib.sha256(" ".join((SUITE, *packages)).encode()).hexdigest()[:12]
    tarball = CACHE_DIR / f"{SUITE}-minbase-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
        root = Path(work) / "root"
        command = ["debootstrap", "--variant=minbase"]
        if packages:
            command.append("--include=" + ",".join(packages))
        subprocess.run([*command, SUITE, str(root), debian_mirror()], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        partial = Path(work) / "rootfs.tar"
        with tarfile.open(partial, "w") as archive:
            archive.add(root, arcname=".")
        os.replace(partial, tarball)
    return tarball


def unpack(tarball: Path, target: Path) -> Path:
    """Unpack a cached tree into `target` (a fresh folder), keeping owners and modes."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-C", str(target), "--numeric-owner", "-xpf", str(tarball)], check=True)
    return target


def remove_tree(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
