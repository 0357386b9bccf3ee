"""A signed stand-in of NVIDIA's container toolkit apt repository, served on loopback.

Laid out like https://nvidia.github.io/libnvidia-container/: the ASCII key at `/gpgkey` and a
flat repository at `/stable/deb/<arch>/` (`deb [signed-by=KEYRING] URL/stable/deb/<arch> /`),
signed with a throwaway key (InRelease and Release.gpg). It holds the four packages NVIDIA pins
together, at two versions (VERSIONS), so tests can prove version pinning:

- nvidia-container-toolkit: Depends nvidia-container-toolkit-base (= V),
  libnvidia-container-tools (= V); ships a no-op /usr/bin/nvidia-container-runtime-hook.
- nvidia-container-toolkit-base: ships /usr/bin/nvidia-ctk (tests/standin/nvidia-ctk, a STAND-IN
  that Depends on python3-minimal; see that file) and /usr/bin/nvidia-container-runtime (a
  shell wrapper that execs runc).
- libnvidia-container-tools: Depends libnvidia-container1 (>= V), like the real package, so
  pinning only three of the four silently takes the newest libnvidia-container1.
  Ships /usr/bin/nvidia-container-cli (a shell stand-in: `--version`; `info` fails as on a
  host without a driver).
- libnvidia-container1: a placeholder (no library).

The tree is built once per machine and cached by content hash under CACHE_DIR (the builder's
source, the stand-in scripts, the versions and the architecture); the throwaway signing key is
part of the cache. Needs on the machine running the tests: dpkg-deb, apt-ftparchive (package
apt-utils), gpg. The fixture `nvidia_repo` serves it with `python3 -m http.server --bind
127.0.0.1` on a free port for the session.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

VERSIONS = ("1.17.8-1", "1.18.0-1")
PACKAGES = (
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
)
KEYRING_PATH = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
STANDIN_CTK = Path(__file__).resolve().parent.parent / "standin" / "nvidia-ctk"
KEY_UID = "genai-workstation stand-in NVIDIA repo (TEST ONLY) <nvidia-standin@example.invalid>"

_RUNTIME = """#!/bin/sh
# STAND-IN for NVIDIA's nvidia-container-runtime (genai-workstation tests): no GPU hooks,
# it hands every call to runc, as the real shim does for containers that request no GPU.
exec runc "$@"
"""
_HOOK = """#!/bin/sh
# STAND-IN for NVIDIA's nvidia-container-runtime-hook (genai-workstation tests): does nothing.
exit 0
"""
_CLI = """#!/bin/sh
# STAND-IN for NVIDIA's nvidia-container-cli (genai-workstation tests).
case "$1" in
  --version|-V)
    echo "cli-version: @UPSTREAM@"
    echo "lib-version: @UPSTREAM@"
    echo "build date: stand-in" ;;
  *)
    echo "nvidia-container-cli: initialization error: nvml error: driver not loaded" >&2
    exit 1 ;;
esac
"""


def dpkg_architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()


def upstream(version: str) -> str:
    """'1.17.8-1' -> '1.17.8' (the version nvidia-ctk prints and the inventory names)."""
    return version.rsplit("-", 1)[0]


def cache_key(arch: str, versions: tuple[str, ...] = VERSIONS) -> str:
    digest = hashlib.sha256()
    for part in (Path(__file__).read_bytes(), STANDIN_CTK.read_bytes(), " ".join(versions),
                 arch):
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def build_repo(arch: str | None = None, versions: tuple[str, ...] = VERSIONS) -> Path:
    """The served tree (cached): <tree>/gpgkey and <tree>/stable/deb/<arch>/."""
    from tests.harness.rootfs import CACHE_DIR  # late: keeps pytest's rewrite of that plugin

    arch = arch or dpkg_architecture()
    final = CACHE_DIR / f"nvidia-repo-{cache_key(arch, versions)}"
    if (final / "tree" / "gpgkey").exists():
        return final / "tree"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="nvidia-repo-build-", dir=CACHE_DIR))
    try:
        _build(work, arch, versions)
        os.chmod(work, 0o755)
        try:
            os.rename(work, final)
        except OSError:  # another process won the race; its tree is as good as ours
            if not (final / "tree" / "gpgkey").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final / "tree"


def _build(work: Path, arch: str, versions: tuple[str, ...]) -> None:
    tree = work / "tree"
    pool = tree / "stable" / "deb" / arch
    pool.mkdir(parents=True)
    for version in versions:
        for package in PACKAGES:
            _build_deb(work / "src" / f"{package}-{version}", pool, package, version, arch)
    shutil.rmtree(work / "src")

    subprocess.run("apt-ftparchive packages . > Packages && gzip -9nk Packages", shell=True,
                   cwd=pool, check=True, stderr=subprocess.PIPE)
    release = subprocess.run(
        ["apt-ftparchive",
         "-o", "APT::FTPArchive::Release::Origin=genai-workstation stand-in of "
               "https://nvidia.github.io/libnvidia-container",
         "-o", "APT::FTPArchive::Release::Label=nvidia-container-toolkit (STAND-IN)",
         "release", "."],
        cwd=pool, check=True, capture_output=True)
    (pool / "Release").write_bytes(release.stdout)

    gnupghome = Path(tempfile.mkdtemp(prefix="gnupg-"))  # short path: gpg-agent socket
    gpg = ["gpg", "--homedir", str(gnupghome), "--batch", "--yes", "--quiet",
           "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run([*gpg, "--quick-generate-key", KEY_UID, "ed25519", "sign", "never"],
                       check=True, capture_output=True)
        listing = subprocess.run([*gpg, "--with-colons", "--list-keys"], check=True,
                                 capture_output=True, text=True).stdout
        fingerprint = re.search(r"^fpr:+([0-9A-F]{40}):", listing, re.M).group(1)
        sign = [*gpg, "--local-user", fingerprint, "--digest-algo", "SHA512"]
        subprocess.run([*sign, "--clearsign", "-o", str(pool / "InRelease"),
                        str(pool / "Release")], check=True, capture_output=True)
        subprocess.run([*sign, "--armor", "--detach-sign", "-o", str(pool / "Release.gpg"),
                        str(pool / "Release")], check=True, capture_output=True)
        key = subprocess.run([*gpg, "--armor", "--export", fingerprint], check=True,
                             capture_output=True).stdout
        (tree / "gpgkey").write_bytes(key)
        (work / "fingerprint").write_text(fingerprint + "\n")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(gnupghome), "--kill", "gpg-agent"],
                       capture_output=True)
        shutil.rmtree(gnupghome, ignore_errors=True)


def _build_deb(src: Path, pool: Path, package: str, version: str, arch: str) -> None:
    files: dict[str, str] = {}
    depends = ""
    if package == "nvidia-container-toolkit":
        depends = (f"nvidia-container-toolkit-base (= {version}), "
                   f"libnvidia-container-tools (= {version})")
        files["usr/bin/nvidia-container-runtime-hook"] = _HOOK
    elif package == "nvidia-container-toolkit-base":
        depends = "python3-minimal"
        ctk = STANDIN_CTK.read_text()
        ctk = ctk.replace('"@VERSION@"', f'"{upstream(version)}"', 1)
        commit = hashlib.sha1(version.encode()).hexdigest()[:8]
        ctk = ctk.replace('"@COMMIT@"', f'"{commit}"', 1)
        files["usr/bin/nvidia-ctk"] = ctk
        files["usr/bin/nvidia-container-runtime"] = _RUNTIME
    elif package == "libnvidia-container-tools":
        depends = f"libnvidia-container1 (>= {version})"
        files["usr/bin/nvidia-container-cli"] = _CLI.replace("@UPSTREAM@", upstream(version))
    files[f"usr/share/doc/{package}/STANDIN"] = (
        f"{package} {version}: a stand-in built by genai-workstation's tests, "
        "not NVIDIA software.\n")
    for relative, content in files.items():
        target = src / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(0o755 if relative.startswith("usr/bin/") else 0o644)
    control = [
        f"Package: {package}",
        f"Version: {version}",
        f"Architecture: {arch}",
        "Maintainer: genai-workstation tests <nvidia-standin@example.invalid>",
        "Section: utils",
        "Priority: optional",
    ]
    if depends:
        control.append(f"Depends: {depends}")
    control.append(f"Description: STAND-IN for NVIDIA's {package} (test double)\n"
                   " Built by genai-workstation's test harness; not NVIDIA software.")
    (src / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (src / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(src),
                    str(pool / f"{package}_{version}_{arch}.deb")],
                   check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(root: Path, log_path: Path) -> Iterator[str]:
    """Serve `root` on 127.0.0.1 (free port); yield the base URL. Requests go to log_path."""
    for _attempt in range(5):
        port = _free_port()
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1",
                 "--directory", str(root), str(port)],
                stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        if process.poll() is None and time.monotonic() < deadline:
            break
        process.kill()
        process.wait()
    else:
        raise RuntimeError(f"http.server did not start; see {log_path}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_REQUEST = re.compile(r'"(GET|HEAD|POST) (\S+) HTTP/[0-9.]+" (\d{3})')


@dataclass
class NvidiaRepo:
    """What the `nvidia_repo` fixture yields."""

    base_url: str
    root: Path
    arch: str
    log_path: Path
    versions: tuple[str, ...] = VERSIONS

    @property
    def repo_url(self) -> str:
        """For nvidia_toolkit.repo_url; `$(ARCH)` is substituted by the deploy, as upstream."""
        return f"{self.base_url}/stable/deb/$(ARCH)"

    @property
    def gpgkey_url(self) -> str:
        return f"{self.base_url}/gpgkey"

    @property
    def gpgkey_path(self) -> Path:
        """The ASCII-armored key as served (for tests that skip the download)."""
        return self.root / "gpgkey"

    @property
    def fingerprint(self) -> str:
        return (self.root.parent / "fingerprint").read_text().strip()

    @property
    def toolkit_versions(self) -> tuple[str, ...]:
        """The versions as nvidia_toolkit.version takes them ('1.17.8')."""
        return tuple(upstream(v) for v in self.versions)

    def sources_line(self, keyring: str = KEYRING_PATH) -> str:
        return f"deb [signed-by={keyring}] {self.base_url}/stable/deb/{self.arch} /"

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request served so far, oldest first."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return [(m, p, int(s)) for m, p, s in _REQUEST.findall(text)]

    @property
    def requests_log(self) -> list[str]:
        """Paths requested so far (e.g. '/gpgkey', '/stable/deb/amd64/InRelease')."""
        return [path for _method, path, _status in self.requests]


@pytest.fixture(scope="session")
def nvidia_repo(tmp_path_factory) -> Iterator[NvidiaRepo]:
    """The stand-in NVIDIA toolkit repository, served on 127.0.0.1 for the session."""
    for tool in ("dpkg-deb", "apt-ftparchive", "gpg"):
        if shutil.which(tool) is None:
            pytest.fail(f"nvidia_repo needs {tool} (apt-get install -y apt-utils gnupg dpkg)")
    arch = dpkg_architecture()
    root = build_repo(arch)
    log_path = tmp_path_factory.mktemp("nvidia-repo") / "http.log"
    with serve(root, log_path) as base_url:
        yield NvidiaRepo(base_url=base_url, root=root, arch=arch, log_path=log_path)
