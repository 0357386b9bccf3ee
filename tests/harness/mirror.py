"""A local mirror for building the REAL app images offline, as a user behind a mirror would.

One HTTP server, listening INSIDE the test engine's network namespace (so `docker build`
containers reach it at the engine's docker0 address, e.g. ``http://172.17.0.1:3141``, an
address that stays the same from session to session and keeps the build cache valid):

- ``/simple/`` and ``/files/``: a PEP 503 package index made from a wheelhouse (the image
  settings ``pip_index_url`` and ``torch_index_url`` point at it). The wheelhouse is filled by
  ``pip download`` on this machine (from the package index it reaches; the local CPU torch
  wheel from pip's find-links) and cached in ``$GENAI_TEST_CACHE/wheelhouse/<name>``.
- ``/git/<name>.git``: bare mirrors of the one-commit bundles in ``../shared/upstream``
  (``GENAI_UPSTREAM_DIR``), served over git's "dumb" HTTP protocol (``repo_url`` and
  custom nodes point at them).
- ``/debian/``, ``/debian-security/``: a relay to the Debian archive this machine uses, with
  ``pool/`` files cached in ``$GENAI_TEST_CACHE/apt-relay`` (the ``apt_mirror`` setting).

Forge's inputs (its clones, its wheelhouse, its installer settings) are in forge_mirror.py.

``bytes_served`` counts what the server sent, by kind (``index``, ``files``, ``git``, ``apt``):
the benchmark reads what a build fetched from the package index there.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.harness.netns import listen
from tests.harness.rootfs import CACHE_DIR, debian_mirror

REPO = Path(__file__).resolve().parents[2]
UPSTREAM_ENV = "GENAI_UPSTREAM_DIR"
WHEELHOUSE_ROOT = CACHE_DIR / "wheelhouse"
APT_CACHE = CACHE_DIR / "apt-relay"
MIRROR_PORT = 3141
_CHUNK = 1 << 20


def upstream_dir() -> Path | None:
    """The folder of upstream git bundles (MANIFEST.tsv), or None when this machine has none."""
    candidates = [os.environ.get(UPSTREAM_ENV, ""), str(REPO.parent / "shared" / "upstream")]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "MANIFEST.tsv").is_file():
            return Path(candidate)
    return None


REAL = "real"
UPSTREAM_MODE_ENV = "GENAI_UPSTREAM"
_REAL_PROBES = ("https://github.com/", "https://pypi.org/simple/",
                "https://download.pytorch.org/whl/cpu/")


def upstream_source() -> tuple[Path | str | None, str]:
    """Where the real-app tests build from, and why not when they cannot: (source, reason).

    ``GENAI_UPSTREAM=real``: the real upstream URLs (GitHub, PyPI, PyTorch's index, the base
    images' registry), for a machine with internet; ``REAL`` is returned when they answer.
    Otherwise the bundles of ``upstream_dir()`` served by this mirror (a Path)."""
    if os.environ.get(UPSTREAM_MODE_ENV, "") == REAL:
        for url in _REAL_PROBES:
            try:
                urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10)
            except (urllib.error.URLError, OSError) as error:
                return None, (f"{UPSTREAM_MODE_ENV}=real but {url} is unreachable ({error}): "
                              "the real upstream URLs need internet")
        return REAL, ""
    found = upstream_dir()
    if found is None:
        return None, ("no upstream sources: ../shared/upstream (or $GENAI_UPSTREAM_DIR) holds "
                      "the git bundles the real-app builds use offline; with internet, set "
                      f"{UPSTREAM_MODE_ENV}=real to build from the real upstream URLs")
    return found, ""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheelhouse(name: str, requirements: list[str], requirement_files: list[Path]) -> Path:
    """``pip download`` (wheels only) of what the requirements need, cached by their text."""
    texts = [*requirements, *(p.read_text() for p in requirement_files)]
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    folder = WHEELHOUSE_ROOT / name
    stamp = folder / f".complete-{key}"
    if stamp.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--progress-bar",
            "off", "--disable-pip-version-check", "-d", str(folder), *requirements]
    for path in requirement_files:
        argv += ["-r", str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=3000)
    if result.returncode != 0:
        raise RuntimeError(f"pip download failed:\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    stamp.write_text("\n".join(texts))
    return folder


def git_mirror(bundle: Path, root: Path, name: str | None = None) -> Path:
    """A bare clone of `bundle` under `root`, ready for git's dumb HTTP protocol."""
    target = root / f"{name or bundle.stem}.git"
    if not target.exists():
        subprocess.run(["git", "clone", "-q", "--mirror", str(bundle), str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "update-server-info"], check=True)
    return target


def wheel_project(filename: str) -> str:
    return normalize(filename.split("-", 1)[0])


class _Handler(BaseHTTPRequestHandler):
    server: MirrorServer

    def log_message(self, *args) -> None:  # quiet: the counters are the record
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urllib.parse.unquote(self.path.split("?", 1)[0])
        mirror = self.server
        if path in ("/simple", "/simple/"):
            return self._html("".join(f'<a href="/simple/{p}/">{p}</a>\n'
                                      for p in sorted(mirror.projects())), "index")
        match = re.fullmatch(r"/simple/([^/]+)/?", path)
        if match:
            files = mirror.projects().get(normalize(match.group(1)))
            if not files:
                return self._error(404)
            links = (f'<a href="/files/{urllib.parse.quote(f)}">{f}</a>\n' for f in sorted(files))
            return self._html("".join(links), "index")
        if path.startswith("/files/"):
            return self._file(mirror.wheels / path[len("/files/"):], "files")
        if path.startswith("/git/") and mirror.git_root:
            return self._file(mirror.git_root / path[len("/git/"):], "git")
        if path.startswith(("/debian/", "/debian-security/")):
            return self._apt(path)
        return self._error(404)

    def _error(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _html(self, body: str, kind: str) -> None:
        data = f"<!DOCTYPE html><html><body>\n{body}</body></html>\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.count(kind, len(data), self.path)

    def _file(self, path: Path, kind: str) -> None:
        root = self.server.wheels if kind == "files" else self.server.git_root
        resolved = path.resolve()
        if not resolved.is_file() or root.resolve() not in resolved.parents:
            return self._error(404)
        size = resolved.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with open(resolved, "rb") as source:
            shutil.copyfileobj(source, self.wfile, _CHUNK)
        self.server.count(kind, size, self.path)

    def _apt(self, path: str) -> None:
        cached = APT_CACHE / path.lstrip("/")
        if "/pool/" in path and cached.is_file():
            return self._file_from(cached)
        upstream = self.server.apt_upstream + path
        try:
            with urllib.request.urlopen(upstream, timeout=120) as response:
                data = response.read()
        except urllib.error.HTTPError as error:
            return self._error(error.code)
        except (urllib.error.URLError, OSError):
            return self._error(502)
        if "/pool/" in path:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(cached.name + f".{os.getpid()}.{threading.get_ident()}")
            partial.write_bytes(data)
            os.replace(partial, cached)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.count("apt", len(data), path)

    def _file_from(self, path: Path) -> None:
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.count("apt", len(data), self.path)


class MirrorServer(ThreadingHTTPServer):
    """The mirror; ``url`` is its address as build containers see it."""

    daemon_threads = True

    def __init__(self, wheels: Path, git_root: Path | None, sock, url: str) -> None:
        super().__init__(sock.getsockname(), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.wheels, self.git_root, self.url = wheels, git_root, url
        self.apt_upstream = debian_mirror().removesuffix("/debian")
        self.bytes_served: Counter = Counter()
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name="mirror", daemon=True)

    def projects(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for entry in os.scandir(self.wheels):
            if entry.name.endswith(".whl"):
                found.setdefault(wheel_project(entry.name), []).append(entry.name)
        return found

    def count(self, kind: str, size: int, path: str) -> None:
        with self._lock:
            self.bytes_served[kind] += size
            self.requests.append((kind, path, size))

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_served.clear()
            self.requests.clear()

    def index_bytes(self) -> int:
        """Bytes the package index served (pages + files) since the last reset."""
        return self.bytes_served["index"] + self.bytes_served["files"]

    def start(self) -> MirrorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)


def start_mirror(engine, wheels: Path, git_root: Path | None) -> MirrorServer:
    """The mirror, listening in `engine`'s network namespace on its docker0 gateway."""
    shown = subprocess.run(["ip", "-n", engine.netns, "-o", "-4", "addr", "show", "docker0"],
                           check=True, capture_output=True, text=True).stdout
    gateway = shown.split(" inet ", 1)[1].split("/", 1)[0]
    sock = listen(engine.netns_path, gateway, MIRROR_PORT)
    return MirrorServer(wheels, git_root, sock, f"http://{gateway}:{MIRROR_PORT}").start()


@contextlib.contextmanager
def serving(engine, wheels: Path, git_root: Path | None):
    mirror = start_mirror(engine, wheels, git_root)
    try:
        yield mirror
    finally:
        mirror.stop()


@contextlib.contextmanager
def upstream_mirror(engine, source, git_root: Path, wheelhouse_of):
    """The mirror of `source` (upstream_source()'s folder of bundles), whose wheelhouse is
    ``wheelhouse_of(source, git_root)``; None for ``REAL`` (the tests use the real URLs)."""
    if source == REAL:
        yield None
        return
    with serving(engine, wheelhouse_of(source, git_root), git_root) as mirror:
        yield mirror


# --- the ComfyUI build inputs ----------------------------------------------------------------

COMFYUI_REF = "v0.3.64"  # the tag in ComfyUI.bundle
LOGIN_REF = "snapshot"  # the tag in ComfyUI-Login.bundle
LOGIN_UPSTREAM_URL = "https://github.com/liusida/ComfyUI-Login.git"
LOGIN_UPSTREAM_COMMIT = "69109257f4629a11ebe26cd65667536c4f8dddcb"  # LOGIN_REF's upstream
# torch is the CPU wheel of pip's find-links (/opt/wheels); torchvision is the release built
# for it (Requires-Dist torch==2.13.0); torchaudio's last release (2.11.1) needs torch>=2.11.
# pip and requests: the Dockerfile installs them too.
TORCH_PINS = ["torch==2.13.0", "torchvision==0.28.0", "torchaudio==2.11.1", "pip", "requests"]


REPACK_TAG = "cpurepack"
_TORCHVISION_SCHEMAS = f"""

# --- genai-workstation test repack ({REPACK_TAG}; tests/harness/mirror.py) ---
# PyPI's Linux torchvision is a CUDA build: its C++ ops (_C.so) need libtorch_cuda, which the
# CPU torch lacks, and then the unguarded register_fake("torchvision::nms") fails at import.
# Declaring the two schemas lets torchvision import without its C++ ops (nms, roi_align, ...).
if not _has_ops():
    _GENAI_SCHEMAS = torch.library.Library("torchvision", "DEF")
    _GENAI_SCHEMAS.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _GENAI_SCHEMAS.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
"""


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def repack_torchvision_for_cpu(wheels: Path) -> Path:
    """A copy of PyPI's torchvision wheel that imports with the CPU torch (see the patch text).

    NOT the wheel a user installs: a user's CPU build takes the matching CPU pair from the
    PyTorch index (e.g. download.pytorch.org/whl/cpu), which this machine cannot reach. The
    version gets a local label (0.28.0+cpurepack), so pip prefers it over the original."""
    original = next(wheels.glob("torchvision-*[0-9]-cp311-*.whl"))
    version = original.name.split("-")[1]
    repacked = wheels / original.name.replace(f"-{version}-", f"-{version}+{REPACK_TAG}-")
    if repacked.exists():
        return repacked
    old_info = f"torchvision-{version}.dist-info"
    new_info = f"torchvision-{version}+{REPACK_TAG}.dist-info"
    partial = repacked.with_suffix(".partial")
    records = []
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(partial, "w",
                                                              zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            name, data = item.filename.replace(old_info, new_info), source.read(item)
            if name.endswith("/RECORD"):
                continue
            if name == "torchvision/extension.py":
                data += _TORCHVISION_SCHEMAS.encode()
            if name.endswith("/METADATA"):
                data = data.replace(f"Version: {version}\n".encode(),
                                    f"Version: {version}+{REPACK_TAG}\n".encode())
            target.writestr(name, data)
            records.append(_record_line(name, data))
        records.append(f"{new_info}/RECORD,,")
        target.writestr(f"{new_info}/RECORD", "\n".join(records) + "\n")
    os.replace(partial, repacked)
    return repacked


def comfyui_wheelhouse(upstream: Path, git_root: Path) -> Path:
    """ComfyUI's git mirrors under `git_root` and its wheelhouse (torchvision repacked)."""
    wheels = wheelhouse("comfyui", TORCH_PINS, comfyui_sources(upstream, git_root))
    repack_torchvision_for_cpu(wheels)
    return wheels


def comfyui_sources(upstream: Path, git_root: Path) -> list[Path]:
    """Bare mirrors of ComfyUI and ComfyUI-Login under `git_root`; their requirement files."""
    git_root.mkdir(parents=True, exist_ok=True)
    files = []
    for bundle, ref in (("ComfyUI", COMFYUI_REF), ("ComfyUI-Login", LOGIN_REF)):
        mirror = git_mirror(upstream / f"{bundle}.bundle", git_root)
        text = subprocess.run(["git", "-C", str(mirror), "show", f"{ref}:requirements.txt"],
                              check=True, capture_output=True, text=True).stdout
        path = git_root / f"{bundle}.requirements.txt"
        path.write_text(text)
        files.append(path)
    return files


def image_settings(mirror: MirrorServer, base_image: str, repo: str, ref: str) -> dict:
    """The inventory's `image:` for a build from this mirror (what a user behind one sets)."""
    return {"base_image": base_image, "apt_mirror": mirror.url,
            "pip_index_url": f"{mirror.url}/simple", "torch_index_url": f"{mirror.url}/simple",
            "repo_url": f"{mirror.url}/git/{repo}.git", "ref": ref}
