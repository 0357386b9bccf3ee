"""A loopback model server: real HTTP on 127.0.0.1 (and 127.0.0.2 as "another host").

Serves real files with HTTP Range, counts the body bytes it sends, can cut a connection
mid-file, can ignore Range, can fail with 5xx, imitates the Hugging Face metadata and resolve
endpoints and Civitai's model-versions endpoint, redirects downloads to the other host (as the
real services do to their CDNs) and records which requests carried an Authorization header.

Fixture: `model_server` (function scope). Also usable from bench/ as a plain class.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

OTHER_HOST = "127.0.0.2"  # loopback too, but a different origin from 127.0.0.1
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Served:
    """One file the server offers."""

    path: Path
    size: int
    sha256: str
    sent: int = 0  # body bytes sent for this file, all requests
    cut_after: int | None = None  # close the connection after this many body bytes (once)
    fail_times: int = 0  # answer 503 this many times first
    requests: int = 0


@dataclass
class Request:
    method: str
    host: str  # the address the request reached: 127.0.0.1:port or 127.0.0.2:port
    path: str
    authorization: str | None
    range: str | None
    status: int = 0


@dataclass
class ModelServer:
    root: Path
    ignore_range: bool = False
    files: dict[str, Served] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)
    hf_repos: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    civitai_versions: dict[int, dict] = field(default_factory=dict)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._servers = []
        self.port = 0

    # ---- life cycle ----------------------------------------------------------------------
    def start(self) -> ModelServer:
        handler = _make_handler(self)
        main = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = main.server_address[1]
        try:
            other = ThreadingHTTPServer((OTHER_HOST, self.port), handler)
        except OSError:
            other = ThreadingHTTPServer((OTHER_HOST, 0), handler)
        self.other_port = other.server_address[1]
        for server in (main, other):
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def other_url(self) -> str:
        return f"http://{OTHER_HOST}:{self.other_port}"

    # ---- content -------------------------------------------------------------------------
    def add_file(self, name: str, data: bytes | None = None, *, size: int | None = None,
                 sparse: bool = False) -> Served:
        """Serve `data` (or `size` bytes: sparse zeros or a repeating pattern) at /files/name."""
        path = self.root / "served" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        if data is not None:
            path.write_bytes(data)
            digest.update(data)
        elif sparse:
            with open(path, "wb") as handle:
                handle.truncate(size)
            zeros = bytes(1 << 20)
            left = size
            while left:
                n = min(left, len(zeros))
                digest.update(zeros[:n] if n < len(zeros) else zeros)
                left -= n
        else:
            block = hashlib.sha256(name.encode()).digest() * (1 << 15)  # 1 MiB pattern
            with open(path, "wb") as handle:
                left = size
                while left:
                    piece = block[: min(left, len(block))]
                    handle.write(piece)
                    digest.update(piece)
                    left -= len(piece)
        served = Served(path=path, size=path.stat().st_size, sha256=digest.hexdigest())
        self.files[name] = served
        return served

    def add_hf_file(self, repo: str, revision: str, filename: str, data: bytes) -> Served:
        served = self.add_file(f"hf/{repo}/{revision}/{filename}", data)
        key = f"hf/{repo}/{revision}/{filename}"
        self.hf_repos.setdefault((repo, revision), {})[filename] = key
        return served

    def add_civitai_version(self, version_id: int, filename: str, data: bytes) -> Served:
        served = self.add_file(f"civitai/{version_id}/{filename}", data)
        self.civitai_versions[version_id] = {"name": filename,
                                             "key": f"civitai/{version_id}/{filename}"}
        return served

    def sent(self, name: str) -> int:
        return self.files[name].sent

    def requests_to(self, host_prefix: str) -> list[Request]:
        return [r for r in self.log if r.host.startswith(host_prefix)]

    def _record(self, request: Request) -> None:
        with self._lock:
            self.log.append(request)


def _make_handler(server: ModelServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _start(self) -> Request:
            address, port = self.connection.getsockname()[:2]
            host = f"{address}:{port}"
            request = Request(self.command, host, self.path, self.headers.get("Authorization"),
                              self.headers.get("Range"))
            server._record(request)
            return request

        def do_HEAD(self):
            self._dispatch(head=True)

        def do_GET(self):
            self._dispatch(head=False)

        def do_POST(self):
            request = self._start()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            match = re.match(r"^/api/models/([^/]+/[^/]+)/paths-info/([^/?]+)$",
                             urlsplit(self.path).path)
            if not match:
                return self._json(request, 404, {"error": "not found"})
            repo, revision = match.group(1), unquote(match.group(2))
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(body).get("paths", [])
            else:
                paths = parse_qs(body).get("paths", [])
            files = server.hf_repos.get((repo, revision))
            if files is None:
                return self._json(request, 404, {"error": "Repository not found"})
            entries = []
            for path in paths:
                if path in files:
                    served = server.files[files[path]]
                    entries.append({"type": "file", "path": path, "size": served.size,
                                    "oid": "0" * 40, "lfs": {"oid": served.sha256,
                                                             "size": served.size,
                                                             "pointerSize": 134}})
            return self._json(request, 200, entries)

        # ---- routes ----------------------------------------------------------------------
        def _dispatch(self, head: bool):
            request = self._start()
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            query = parse_qs(parts.query)
            if path.startswith("/files/"):
                return self._file(request, path[len("/files/"):], head)
            if path.startswith("/redirect/"):  # /redirect/<name>: 302 to the other host
                target = f"{server.other_url}/files/{path[len('/redirect/'):]}"
                return self._redirect(request, target)
            match = re.match(r"^/api/models/([^/]+/[^/]+)/revision/([^/]+)$", path)
            if match:
                return self._hf_revision(request, match.group(1), match.group(2), query)
            match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if match:
                return self._hf_resolve(request, *match.groups())
            match = re.match(r"^/api/v1/model-versions/(\d+)$", path)
            if match:
                return self._civitai_version(request, int(match.group(1)))
            match = re.match(r"^/api/download/models/(\d+)$", path)
            if match:
                version = server.civitai_versions.get(int(match.group(1)))
                if not version:
                    return self._json(request, 404, {"error": "not found"})
                if not request.authorization:
                    return self._json(request, 401, {"error": "Unauthorized"})
                # Civitai answers with a signed URL on its storage host.
                return self._redirect(request, f"{server.other_url}/files/{version['key']}"
                                      "?X-Signature=abc", status=307)
            return self._json(request, 404, {"error": "not found"})

        def _hf_revision(self, request, repo, revision, query):
            files = server.hf_repos.get((repo, revision))
            if files is None:
                return self._json(request, 404, {"error": "Repository not found"})
            siblings = []
            for name, key in files.items():
                served = server.files[key]
                entry = {"rfilename": name}
                if query.get("blobs") == ["true"]:
                    entry.update({"blobId": "0" * 40, "size": served.size,
                                  "lfs": {"sha256": served.sha256, "size": served.size,
                                          "pointerSize": 134}})
                siblings.append(entry)
            return self._json(request, 200, {"id": repo, "sha": "1" * 40, "siblings": siblings})

        def _hf_resolve(self, request, repo, revision, filename):
            key = (server.hf_repos.get((repo, revision)) or {}).get(filename)
            if key is None:
                return self._json(request, 404, {"error": "Entry not found"})
            served = server.files[key]
            # Like the Hub: 302 to the CDN (another host) with the LFS sha256 as X-Linked-Etag.
            self.send_response(302)
            self.send_header("Location", f"{server.other_url}/files/{key}")
            self.send_header("X-Linked-Etag", f'"{served.sha256}"')
            self.send_header("X-Linked-Size", str(served.size))
            self.send_header("Content-Length", "0")
            self.end_headers()
            request.status = 302

        def _civitai_version(self, request, version_id):
            version = server.civitai_versions.get(version_id)
            if version is None:
                return self._json(request, 404, {"error": "No model version with id"})
            served = server.files[version["key"]]
            body = {
                "id": version_id, "modelId": 1, "name": "v1.0",
                "files": [{
                    "id": version_id * 10, "sizeKB": served.size / 1024, "name": version["name"],
                    "type": "Model", "primary": True,
                    "hashes": {"AutoV2": served.sha256[:10].upper(),
                               "SHA256": served.sha256.upper()},
                    "downloadUrl": f"{server.url}/api/download/models/{version_id}",
                }],
                "downloadUrl": f"{server.url}/api/download/models/{version_id}",
            }
            return self._json(request, 200, body)

        # ---- helpers ---------------------------------------------------------------------
        def _redirect(self, request, target, status=302):
            self.send_response(status)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            request.status = status

        def _json(self, request, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            request.status = status

        def _file(self, request, name, head):
            served = server.files.get(name)
            if served is None:
                return self._json(request, 404, {"error": "no such file"})
            with server._lock:
                served.requests += 1
                fail = served.fail_times > 0 and not head
                if fail:
                    served.fail_times -= 1
            if fail:
                return self._json(request, 503, {"error": "try again"})
            start, end, status = 0, served.size - 1, 200
            match = _RANGE.match(self.headers.get("Range") or "")
            if match and not server.ignore_range:
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else served.size - 1
                end = min(end, served.size - 1)
                if start >= served.size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{served.size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    request.status = 416
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("ETag", f'"{served.sha256}"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{served.size}")
            self.end_headers()
            request.status = status
            if head:
                return
            self._send_body(served, start, end - start + 1)

        def _send_body(self, served, offset, count):
            limit = None
            with server._lock:
                if served.cut_after is not None:
                    limit, served.cut_after = served.cut_after, None
            budget = count if limit is None else min(count, limit)
            sock = self.connection
            with open(served.path, "rb") as handle:
                sent_here = 0
                while sent_here < budget:
                    try:
                        n = os.sendfile(sock.fileno(), handle.fileno(), offset + sent_here,
                                        min(budget - sent_here, 1 << 24))
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    if n == 0:
                        break
                    sent_here += n
                    with server._lock:
                        served.sent += n
            if limit is not None and sent_here < count:
                self.close_connection = True
                try:
                    import socket

                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    return Handler


@pytest.fixture
def model_server(tmp_path):
    """A running ModelServer on 127.0.0.1 (and 127.0.0.2), stopped after the test."""
    with ModelServer(root=tmp_path / "server") as server:
        yield server
