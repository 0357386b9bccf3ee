"""Verified, resumable model downloads: the code that runs on the workstation.

Self-contained on purpose: it needs only python3 and requests, so the pyinfra operation can
upload this one file to a host and run it there (`python3 downloader.py --manifest M.json
--secrets-stdin`). The `genai-models` CLI runs the very same functions.

- Streams to `<name>.part` in the target folder, sha256 in the same pass, HTTP Range resume of
  an existing `.part` (only a 206 with a matching Content-Range is accepted; a server that
  answers 200 makes the download restart from zero), retries with backoff on connection errors
  and 5xx, `os.replace` into place only when the hash matches (a mismatch removes the part file
  and fails with both hashes).
- Tokens: the entry's source decides the credential (CREDENTIALS): an `hf` entry's requests may
  carry HF_TOKEN, a `civitai` entry's CIVITAI_TOKEN, a plain `url` entry none. A token goes, as
  an Authorization header (never in a URL), only to URLs below its own source's configured
  endpoint (same origin and path prefix), so one mirror serving both sources still gets each
  token for its own source only. Redirects are followed here, hop by hop, and the header is
  attached per hop only when that hop is below the token's endpoint.
- Idempotent: a verified file's (size, mtime) is kept in `<models_dir>/.genai-verified.json`, so a
  second run neither re-hashes nor even asks the network about it.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests

HF_ENDPOINT = "https://huggingface.co"
CIVITAI_ENDPOINT = "https://civitai.com"
SIDECAR = ".genai-verified.json"
# source kind of a manifest entry -> the secret that authenticates it (its endpoint: Http)
CREDENTIALS = {"hf": "HF_TOKEN", "civitai": "CIVITAI_TOKEN"}
TOKEN_NAMES = tuple(CREDENTIALS.values())
# 128 KiB: a chunk is received, hashed and written while it is still in the CPU's cache
# (2-core EPYC, 1 MiB L2: 1 MiB chunks ran at ~0.7x curl's speed, 128-512 KiB at curl's;
# see docs/models.md).
CHUNK = 128 << 10
BUFFERS = 32  # chunks in flight between the socket and the disk (4 MiB)
_REDIRECTS = (301, 302, 303, 307, 308)
_USER_AGENT = "genai-workstation-models/1"


class DownloadError(Exception):
    """A download or resolution failed; the message never holds a token."""


class HashMismatch(DownloadError):
    def __init__(self, name: str, expected: str, actual: str):
        self.expected, self.actual = expected, actual
        super().__init__(f"{name}: sha256 mismatch: expected {expected}, got {actual}; "
                         "the partial file was removed")


class _Retry(Exception):
    """A transient failure: try again (from where the part file ends)."""


# ---- manifest entries ---------------------------------------------------------------------

def source_key(spec: dict) -> str:
    """A stable name for where an entry comes from (recorded in the sidecar)."""
    if "hf" in spec:
        return f"hf:{spec['hf']}@{spec.get('revision') or 'main'}/{spec['file']}"
    if "civitai" in spec:
        return f"civitai:{spec['civitai']}"
    return f"url:{spec['url']}"


def default_name(spec: dict) -> str | None:
    """The file name the entry gets, when it can be known without asking the network."""
    if spec.get("name"):
        return spec["name"]
    if "hf" in spec:
        return spec["file"].rsplit("/", 1)[-1]
    if "url" in spec:
        return unquote(urlsplit(spec["url"]).path.rstrip("/").rsplit("/", 1)[-1]) or None
    return None  # Civitai: the file name comes from the model-version metadata


def folder_of(spec: dict) -> str:
    return spec["folder"].strip("/")


def human(size: float | None) -> str:
    if size is None:
        return "? B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


class Item:
    """One manifest entry on its way to disk."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.key = source_key(spec)
        self.folder = folder_of(spec)
        self.name = default_name(spec)
        self.sha256 = (spec.get("sha256") or "").lower() or None
        self.size: int | None = None
        self.url: str | None = spec.get("url")
        self.resolved_from: str | None = None  # where the sha256 came from, when resolved

    @property
    def rel(self) -> str:
        return f"{self.folder}/{self.name}"

    def __repr__(self):
        return f"Item({self.key})"


# ---- verified-hash sidecar ----------------------------------------------------------------

class VerifiedCache:
    """`<models_dir>/.genai-verified.json`: {rel path: {size, mtime_ns, sha256, source}}.

    A record is trusted only while the file keeps the same size and mtime, so touching or
    replacing a file makes the next run hash it again.
    """

    def __init__(self, models_dir: str, uid: int | None = None, gid: int | None = None):
        self.path = os.path.join(models_dir, SIDECAR)
        self.uid, self.gid = uid, gid
        self.lock = threading.Lock()
        self.files: dict[str, dict] = {}
        try:
            with open(self.path, encoding="utf-8") as handle:
                self.files = dict(json.load(handle).get("files") or {})
        except (OSError, ValueError, AttributeError):
            self.files = {}

    def lookup(self, rel: str, models_dir: str) -> dict | None:
        """The record for `rel` when the file on disk still matches it."""
        record = self.files.get(rel)
        if not record:
            return None
        try:
            st = os.stat(os.path.join(models_dir, rel))
        except OSError:
            return None
        return record if record_matches(record, st.st_size, st.st_mtime_ns) else None

    def by_source(self, key: str) -> str | None:
        for rel, record in self.files.items():
            if record.get("source") == key:
                return rel
        return None

    def record(self, rel: str, full: str, sha256: str, key: str) -> None:
        st = os.stat(full)
        with self.lock:
            self.files[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                               "sha256": sha256, "source": key}
            self._save()

    def _save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"version": 1, "files": self.files}, handle, indent=1, sort_keys=True)
        _own(tmp, self.uid, self.gid, 0o644)
        os.replace(tmp, self.path)


def record_matches(record: dict, size: int, mtime_ns: int) -> bool:
    return record.get("size") == size and record.get("mtime_ns") == mtime_ns


def verified_state(spec: dict, record: dict | None) -> bool:
    """Whether a matching sidecar record proves this entry present: the pinned sha256, or
    (no sha256 pinned) the same source as when it was verified."""
    if not record:
        return False
    wanted = (spec.get("sha256") or "").lower()
    if wanted:
        return record.get("sha256") == wanted
    return record.get("source") == source_key(spec)


# ---- HTTP with per-origin tokens ----------------------------------------------------------

def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


class _NoAuth(requests.auth.AuthBase):
    """Keeps requests from adding ~/.netrc credentials to any hop."""

    def __call__(self, request):
        return request


def _below(url: str, endpoint: str) -> bool:
    """Whether `url` is on the endpoint's origin and below its path (a mirror's prefix)."""
    if origin(url) != origin(endpoint):
        return False
    prefix = urlsplit(endpoint).path.rstrip("/")
    path = urlsplit(url).path
    return not prefix or path == prefix or path.startswith(prefix + "/")


class Http:
    """requests with redirects followed here, and each token only for its own source."""

    def __init__(self, tokens: dict[str, str] | None = None, hf_endpoint: str = HF_ENDPOINT,
                 civitai_endpoint: str = CIVITAI_ENDPOINT, timeout: float = 60.0):
        self.hf_endpoint = hf_endpoint.rstrip("/")
        self.civitai_endpoint = civitai_endpoint.rstrip("/")
        self.endpoints = {"hf": self.hf_endpoint, "civitai": self.civitai_endpoint}
        tokens = tokens or {}
        # {source kind: token}; the kind's endpoint bounds where the token may go
        self._tokens = {kind: tokens[name] for kind, name in CREDENTIALS.items()
                        if tokens.get(name)}
        self.timeout = timeout
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = _NoAuth()
            session.headers["User-Agent"] = _USER_AGENT
            self._local.session = session
        return session

    def token_for(self, url: str, source: str | None) -> str | None:
        """The token a request for an entry of `source` (hf, civitai, None) may carry to
        `url`: its own source's, and only below that source's endpoint."""
        token = self._tokens.get(source) if source else None
        return token if token and _below(url, self.endpoints[source]) else None

    def open(self, method: str, url: str, *, source: str | None = None,
             headers: dict | None = None, stream: bool = False, data=None, follow: bool = True,
             max_redirects: int = 10) -> requests.Response:
        """One request for an entry of kind `source`; redirects followed hop by hop, each
        hop authenticated only per token_for."""
        for _ in range(max_redirects + 1):
            hop_headers = dict(headers or {})
            token = self.token_for(url, source)
            if token:
                hop_headers["Authorization"] = f"Bearer {token}"
            response = self.session.request(method, url, headers=hop_headers, data=data,
                                            stream=stream, allow_redirects=False,
                                            timeout=(min(self.timeout, 30), self.timeout))
            if not follow or response.status_code not in _REDIRECTS \
                    or "Location" not in response.headers:
                return response
            url = urljoin(url, response.headers["Location"])
            response.close()
            if response.status_code == 303 or (response.status_code in (301, 302)
                                               and method == "POST"):
                method, data = "GET", None
        raise DownloadError(f"too many redirects from {_safe(url)}")


def _safe(url: str) -> str:
    """A URL for messages: no query (signed URLs carry credentials of their own)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _http_error(item_name: str, response: requests.Response, http: Http,
                kind: str | None = None) -> DownloadError:
    status = response.status_code
    hint = ""
    if status in (401, 403):
        if kind == "hf":
            hint = " (gated or private: set HF_TOKEN and accept the licence on the model page)"
        elif kind == "civitai":
            hint = " (Civitai needs a token for this file: set CIVITAI_TOKEN)"
        else:
            hint = (" (a `url:` entry is fetched without credentials: for a gated Hugging Face "
                    "or Civitai file use `hf:` + `file:` or `civitai:` so that its token is sent)")
    return DownloadError(f"{item_name}: HTTP {status} from {_safe(response.url)}{hint}")


# ---- resolution ---------------------------------------------------------------------------

def resolve(item: Item, http: Http, log) -> None:
    """Fill in url, name, size and (when not pinned) sha256 from the source's metadata."""
    spec = item.spec
    if "hf" in spec:
        repo, revision, path = spec["hf"], spec.get("revision") or "main", spec["file"]
        item.url = (f"{http.hf_endpoint}/{repo}/resolve/{quote(revision, safe='')}/"
                    f"{quote(path)}")
        sha, size, how = _hf_lfs(http, repo, revision, path)
        item.size = size
        if item.sha256 is None and sha:
            item.sha256, item.resolved_from = sha, how
            log(f"resolved sha256 of {item.key} from {how}: {sha}")
    elif "civitai" in spec:
        version = spec["civitai"]
        url = f"{http.civitai_endpoint}/api/v1/model-versions/{int(version)}"
        response = http.open("GET", url, source="civitai",
                             headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise _http_error(item.key, response, http, "civitai")
        files = response.json().get("files") or []
        chosen = _pick_civitai_file(files, spec.get("name"))
        if chosen is None:
            raise DownloadError(f"{item.key}: the model version lists no files")
        item.url = chosen.get("downloadUrl") or response.json().get("downloadUrl")
        item.name = spec.get("name") or chosen.get("name")
        if chosen.get("sizeKB"):
            item.size = int(float(chosen["sizeKB"]) * 1024)
        sha = ((chosen.get("hashes") or {}).get("SHA256") or "").lower() or None
        if item.sha256 is None and sha:
            item.sha256, item.resolved_from = sha, "Civitai model-version file hashes"
            log(f"resolved sha256 of {item.key} ({item.name}) from Civitai model-version "
                f"metadata: {sha}")
    if not item.name:
        raise DownloadError(f"{item.key}: no file name; give `name:`")


def _hf_lfs(http: Http, repo: str, revision: str, path: str):
    """(sha256, size, how) of an LFS file: paths-info first, then the resolve HEAD."""
    url = (f"{http.hf_endpoint}/api/models/{repo}/paths-info/{quote(revision, safe='')}")
    try:
        response = http.open("POST", url, source="hf",
                             data={"paths": path, "expand": "false"})
        if response.status_code == 200:
            for entry in response.json():
                if entry.get("path") == path:
                    lfs = entry.get("lfs") or {}
                    if lfs.get("oid"):
                        return lfs["oid"].lower(), lfs.get("size") or entry.get("size"), \
                            "Hugging Face LFS metadata (paths-info)"
                    return None, entry.get("size"), None
        elif response.status_code in (401, 403, 404):
            raise _http_error(f"hf:{repo}/{path}", response, http, "hf")
    except (requests.RequestException, ValueError):
        pass
    resolve_url = f"{http.hf_endpoint}/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"
    response = http.open("HEAD", resolve_url, source="hf", follow=False,
                         headers={"Accept-Encoding": "identity"})
    if response.status_code >= 400:
        raise _http_error(f"hf:{repo}/{path}", response, http, "hf")
    etag = (response.headers.get("X-Linked-Etag") or "").strip('"').lower()
    size = response.headers.get("X-Linked-Size")
    if len(etag) == 64:
        return etag, int(size) if size else None, "Hugging Face LFS metadata (X-Linked-Etag)"
    return None, int(size) if size else None, None


def _pick_civitai_file(files: list, name: str | None):
    if name:
        for entry in files:
            if entry.get("name") == name:
                return entry
    for entry in files:
        if entry.get("primary"):
            return entry
    for entry in files:
        if entry.get("type") == "Model":
            return entry
    return files[0] if files else None


# ---- the download -------------------------------------------------------------------------

class Counter:
    """Bytes done for one file; written by one download thread, read by the progress thread."""

    def __init__(self, name: str, total: int | None):
        self.name, self.total, self.done, self.start = name, total, 0, time.monotonic()


def _hash_file(path: str, hasher=None, counter: Counter | None = None):
    hasher = hasher or hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            hasher.update(view[:n])
            if counter is not None:
                counter.done += n
    return hasher


class _State:
    """Where one download stands: bytes in the part file, their running hash, bytes fetched."""

    def __init__(self, handle, counter: Counter, log, rel: str):
        self.handle, self.counter, self.log, self.rel = handle, counter, log, rel
        self.offset, self.fetched, self.hasher = 0, 0, hashlib.sha256()

    def restart(self, why: str) -> None:
        self.log(f"{self.rel}: {why}; starting again from zero")
        self.handle.seek(0)
        self.handle.truncate()
        self.offset, self.hasher = 0, hashlib.sha256()
        self.counter.done = 0


def download(item: Item, http: Http, models_dir: str, *, uid=None, gid=None,
             counter: Counter | None = None, log=print, retries: int = 6,
             backoff: float = 1.0, fsync: bool = True) -> tuple[str, int, int]:
    """Fetch one item into place. Returns (sha256, size, bytes fetched over the network)."""
    folder = os.path.join(models_dir, item.folder)
    _makedirs(folder, models_dir, uid, gid)
    final = os.path.join(folder, item.name)
    part = final + ".part"
    counter = counter or Counter(item.rel, item.size)
    offset = 0
    if os.path.exists(part):
        offset = os.path.getsize(part)
        if item.size is not None and offset > item.size:
            os.unlink(part)
            offset = 0
    handle = open(part, "r+b" if offset else "wb", buffering=0)
    state = _State(handle, counter, log, item.rel)
    try:
        if offset:
            _hash_file(part, state.hasher)
            state.offset = offset
            handle.seek(offset)
            log(f"{item.rel}: resuming at {human(offset)} of {human(item.size)}")
        counter.done = state.offset
        _own(part, uid, gid, 0o644)
        failures = 0
        while True:
            before = state.offset
            try:
                _transfer(item, http, state)
                break
            except _Retry as retry:
                failures = 1 if state.offset > before else failures + 1
                if failures > retries:
                    raise DownloadError(f"{item.rel}: giving up after {retries} retries: "
                                        f"{retry}") from None
                delay = min(backoff * (2 ** (failures - 1)), 30.0)
                log(f"{item.rel}: {retry}; retrying in {delay:.1f} s from "
                    f"{human(state.offset)}")
                time.sleep(delay)
        if fsync:
            os.fsync(handle.fileno())
    finally:
        handle.close()
    actual = state.hasher.hexdigest()
    if item.sha256 and actual != item.sha256:
        os.unlink(part)
        raise HashMismatch(item.rel, item.sha256, actual)
    os.replace(part, final)
    if fsync:
        _fsync_dir(folder)
    return actual, state.offset, state.fetched


def _transfer(item: Item, http: Http, state: _State) -> None:
    """One GET from the part file's end to the end of the file; raises _Retry when cut."""
    headers = {"Accept-Encoding": "identity"}
    if state.offset:
        headers["Range"] = f"bytes={state.offset}-"
    try:
        response = http.open("GET", item.url, source=_kind(item), headers=headers,
                             stream=True)
    except requests.RequestException as exc:
        raise _Retry(f"connection failed ({type(exc).__name__})") from None
    with response:
        status = response.status_code
        if status == 416 and state.offset and item.size == state.offset:
            return
        if status >= 500 or status == 429:
            raise _Retry(f"HTTP {status} from {_safe(response.url)}")
        if status >= 400:
            raise _http_error(item.rel, response, http, _kind(item))
        if state.offset:
            if status == 200:  # the whole file again: keep reading it, from zero
                state.restart("the server ignored the Range request (200, not 206)")
            elif status != 206 or not _range_ok(response.headers.get("Content-Range"),
                                                state.offset, item.size):
                state.restart(f"unexpected answer to a Range request: HTTP {status} "
                              f"{response.headers.get('Content-Range')}")
                raise _Retry("asking for the whole file")
        elif status != 200:
            raise DownloadError(f"{item.rel}: HTTP {status} from {_safe(response.url)}")
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        start = state.offset
        total = (start + expected) if expected is not None else item.size
        if total is not None:
            state.counter.total = total
            if item.size is None:
                item.size = total
        error = _pump(response, state)
        got = state.offset - start
        if error is not None or (expected is not None and got < expected):
            raise _Retry(f"the connection ended after {human(state.offset)} of "
                         f"{human(total)}" + (f" ({type(error).__name__})" if error else ""))


def _kind(item: Item) -> str | None:
    return "hf" if "hf" in item.spec else "civitai" if "civitai" in item.spec else None


def _range_ok(content_range: str | None, offset: int, size: int | None) -> bool:
    if not content_range or not content_range.startswith("bytes "):
        return False
    span, _, total = content_range[6:].partition("/")
    start, _, _ = span.partition("-")
    if not start.isdigit() or int(start) != offset:
        return False
    return size is None or total == "*" or not total.isdigit() or int(total) == size


def _pump(response, state: _State):
    """Socket -> sha256 + file, in a pipeline: this thread reads into one of a few reused
    128 KiB buffers and hashes it, a writer thread writes it (both release the GIL), so the disk
    and the hash overlap and no chunk is copied on the way. Bounded: at most 8 buffers.
    Returns the read error that ended the stream, if any."""
    readinto = _raw_readinto(response)
    hasher, counter, handle = state.hasher, state.counter, state.handle
    free: queue.Queue = queue.Queue()
    for _ in range(BUFFERS):
        free.put(bytearray(CHUNK))
    pending: queue.Queue = queue.Queue()
    failure: list = []

    def writer():
        write = handle.write
        try:
            while True:
                item = pending.get()
                if item is None:
                    return
                buffer, size = item
                view = memoryview(buffer)[:size]
                while view:
                    n = write(view)
                    view = view[n:]
                free.put(buffer)
        except BaseException as exc:  # reported by the reader
            failure.append(exc)
            for _ in range(BUFFERS):
                free.put(bytearray(0))  # unblock the reader, then wait for its end
            while pending.get() is not None:
                pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    error = None
    try:
        while not failure:
            buffer = free.get()
            if failure:
                break
            try:
                n = readinto(buffer)
            except Exception as exc:  # urllib3/http.client/socket errors: transient
                error = exc
                break
            if not n:
                break
            hasher.update(memoryview(buffer)[:n])
            pending.put((buffer, n))
            state.offset += n
            state.fetched += n
            counter.done += n
    finally:
        pending.put(None)
        thread.join()
    if failure:
        raise DownloadError(f"writing {handle.name}: {failure[0]}")
    return error


def _raw_readinto(response):
    """``readinto(buffer) -> bytes read`` of the response body as sent (identity encoding).

    http.client's own ``readinto`` (under urllib3's response) fills the buffer in place;
    urllib3's ``read(amt)`` returns a new bytes object per chunk (two copies). When that inner
    response is not there (another urllib3), urllib3's ``read`` is used.
    """
    raw = response.raw
    inner = getattr(raw, "_fp", None)
    encoded = (response.headers.get("Content-Encoding") or "identity").lower() != "identity"
    if inner is not None and hasattr(inner, "readinto") and not encoded:
        def readinto(buffer: bytearray) -> int:
            n = inner.readinto(buffer)
            if n is None:
                return 0
            return n

        return readinto

    def read_copy(buffer: bytearray) -> int:
        chunk = raw.read(len(buffer), decode_content=False)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    return read_copy


def _makedirs(folder: str, models_dir: str, uid, gid) -> None:
    missing = []
    path = folder
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for path in reversed(missing):
        os.makedirs(path, exist_ok=True)
        _own(path, uid, gid, 0o755)


def _own(path: str, uid, gid, mode: int) -> None:
    os.chmod(path, mode)
    if uid is None and gid is None:
        return
    st = os.stat(path)
    want_uid = st.st_uid if uid is None else uid
    want_gid = st.st_gid if gid is None else gid
    if (st.st_uid, st.st_gid) != (want_uid, want_gid):
        try:
            os.chown(path, want_uid, want_gid)
        except PermissionError:
            pass  # not root: files stay with the user running the sync


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- progress -----------------------------------------------------------------------------

class Progress:
    """A status line with speed and ETA on a terminal; plain lines otherwise."""

    def __init__(self, stream=None, tty: bool | None = None, interval: float | None = None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval or (0.5 if self.tty else 30.0)
        self.counters: list[Counter] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._line = False

    def say(self, message: str) -> None:
        with self.lock:
            if self._line:
                self.stream.write("\r\033[K")
                self._line = False
            self.stream.write(message + "\n")
            self.stream.flush()

    def add(self, counter: Counter) -> None:
        with self.lock:
            self.counters.append(counter)

    def remove(self, counter: Counter) -> None:
        with self.lock:
            if counter in self.counters:
                self.counters.remove(counter)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        with self.lock:
            if self._line:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self._line = False

    def _run(self):
        last = {}
        while not self._stop.wait(self.interval):
            with self.lock:
                counters = list(self.counters)
            if not counters:
                continue
            now = time.monotonic()
            parts = []
            for counter in counters:
                prev_time, prev_done = last.get(id(counter), (counter.start, 0))
                speed = (counter.done - prev_done) / max(now - prev_time, 1e-6)
                last[id(counter)] = (now, counter.done)
                parts.append(_status(counter, speed))
            if self.tty:
                line = " | ".join(parts)
                width = shutil.get_terminal_size((120, 20)).columns - 1
                with self.lock:
                    self.stream.write("\r\033[K" + line[:width])
                    self.stream.flush()
                    self._line = True
            else:
                for part in parts:
                    self.say(part)


def _status(counter: Counter, speed: float) -> str:
    if counter.total:
        percent = 100 * counter.done / counter.total
        left = counter.total - counter.done
        eta = left / speed if speed > 0 else None
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta is not None else "--"
        return (f"{counter.name}: {percent:5.1f}% {human(counter.done)}/{human(counter.total)} "
                f"{human(speed)}/s ETA {eta_text}")
    return f"{counter.name}: {human(counter.done)} {human(speed)}/s"


# ---- sync: the whole manifest -------------------------------------------------------------

class Result:
    def __init__(self):
        self.present: list[str] = []
        self.fetched: list[tuple[str, int]] = []
        self.failed: list[tuple[str, str]] = []
        self.resolved: list[str] = []
        self.fixed: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        got = sum(size for _, size in self.fetched)
        text = (f"models: {len(self.present)} present, {len(self.fetched)} fetched "
                f"({human(got)})")
        if self.fixed:
            text += f", {len(self.fixed)} owner/mode fixed"
        if self.failed:
            text += f", {len(self.failed)} FAILED"
        return text


def sync(specs: list[dict], models_dir: str, *, uid=None, gid=None, tokens=None,
         hf_endpoint: str = HF_ENDPOINT, civitai_endpoint: str = CIVITAI_ENDPOINT,
         jobs: int = 3, progress: Progress | None = None, retries: int = 6,
         backoff: float = 1.0, fsync: bool = True) -> Result:
    """Bring every entry of the manifest into `models_dir`, verified. Never raises for one
    file's failure: the Result lists it."""
    progress = progress or Progress()
    say = progress.say
    http = Http(tokens, hf_endpoint, civitai_endpoint)
    os.makedirs(models_dir, exist_ok=True)
    cache = VerifiedCache(models_dir, uid, gid)
    result = Result()
    todo: list[Item] = []
    for spec in specs:
        item = Item(spec)
        rel = item.rel if item.name else cache.by_source(item.key)
        record = cache.lookup(rel, models_dir) if rel else None
        if verified_state(spec, record):
            result.present.append(rel)
            if _fix_owner(os.path.join(models_dir, rel), uid, gid):
                result.fixed.append(rel)
            continue
        todo.append(item)

    ready: list[Item] = []
    for item in todo:
        try:
            resolve(item, http, say)
        except (DownloadError, requests.RequestException, ValueError) as exc:
            result.failed.append((item.key, _message(exc)))
            say(f"FAILED {item.key}: {_message(exc)}")
            continue
        if item.resolved_from:
            result.resolved.append(item.key)
        final = os.path.join(models_dir, item.rel)
        if os.path.isfile(final):
            verdict = _check_existing(item, final, cache, models_dir, say)
            if verdict:
                result.present.append(item.rel)
                if _fix_owner(final, uid, gid):
                    result.fixed.append(item.rel)
                continue
        if item.sha256 is None:
            say(f"{item.rel}: no sha256 given or published for {item.key}; the hash of what "
                "arrives is recorded (pin it with sha256: to verify)")
        ready.append(item)

    if ready:
        _check_space(ready, models_dir, http)
        with progress, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [(item, pool.submit(_fetch_one, item, http, models_dir, cache, uid, gid,
                                          progress, retries, backoff, fsync))
                       for item in ready]
            for item, future in futures:
                try:
                    size = future.result()
                    result.fetched.append((item.rel, size))
                except (DownloadError, OSError, requests.RequestException) as exc:
                    result.failed.append((item.rel, _message(exc)))
                    say(f"FAILED {item.rel}: {_message(exc)}")
    say(result.summary())
    return result


def _fetch_one(item, http, models_dir, cache, uid, gid, progress, retries, backoff, fsync):
    counter = Counter(item.rel, item.size)
    progress.say(f"fetching {item.rel} ({human(item.size)}) from {_safe(item.url)}")
    progress.add(counter)
    started = time.monotonic()
    try:
        sha, size, fetched = download(item, http, models_dir, uid=uid, gid=gid, counter=counter,
                                      log=progress.say, retries=retries, backoff=backoff,
                                      fsync=fsync)
    finally:
        progress.remove(counter)
    seconds = max(time.monotonic() - started, 1e-6)
    cache.record(item.rel, os.path.join(models_dir, item.rel), sha, item.key)
    check = "verified" if item.sha256 else "recorded"
    progress.say(f"fetched {item.rel}: {human(size)} ({human(fetched)} over the network) in "
                 f"{seconds:.1f} s, {human(fetched / seconds)}/s, sha256 {sha} {check}")
    return size


def _check_existing(item: Item, final: str, cache: VerifiedCache, models_dir: str, say) -> bool:
    record = cache.lookup(item.rel, models_dir)
    if record and item.sha256 and record.get("sha256") == item.sha256:
        return True
    if item.sha256 is None:
        return False  # nothing to compare with: fetch and record (never trust a stray file)
    say(f"{item.rel}: already there; checking its sha256")
    actual = _hash_file(final).hexdigest()
    if actual == item.sha256:
        cache.record(item.rel, final, actual, item.key)
        return True
    say(f"{item.rel}: sha256 {actual} is not the wanted {item.sha256}; fetching it again")
    return False


def _check_space(items: list[Item], models_dir: str, http: Http) -> None:
    need = 0
    unknown = []
    for item in items:
        if item.size is None and item.url:
            try:
                head = http.open("HEAD", item.url, source=_kind(item),
                                 headers={"Accept-Encoding": "identity"})
                if head.status_code == 200 and head.headers.get("Content-Length"):
                    item.size = int(head.headers["Content-Length"])
            except requests.RequestException:
                pass
        if item.size is None:
            unknown.append(item.rel)
            continue
        part = os.path.join(models_dir, item.rel) + ".part"
        have = os.path.getsize(part) if os.path.exists(part) else 0
        need += max(item.size - have, 0)
    free = shutil.disk_usage(models_dir).free
    if need > free:
        raise DownloadError(f"not enough free space in {models_dir}: the downloads need "
                            f"{human(need)}, {human(free)} is free")


def _fix_owner(path: str, uid, gid) -> bool:
    if uid is None and gid is None:
        return False
    st = os.stat(path)
    wrong = (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid) \
        or (st.st_mode & 0o777) != 0o644
    if wrong:
        mtime = (st.st_atime_ns, st.st_mtime_ns)
        _own(path, uid, gid, 0o644)
        os.utime(path, ns=mtime)
    return wrong


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# ---- on the host --------------------------------------------------------------------------

def read_secrets(stream) -> dict[str, str]:
    """NAME=value lines (only the token names this module knows)."""
    tokens = {}
    for line in stream.read().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() in TOKEN_NAMES and value.strip():
            tokens[name.strip()] = value.strip()
    return tokens


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="downloader.py", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, help="JSON: models_dir, models, uid, ...")
    parser.add_argument("--secrets-stdin", action="store_true",
                        help="read HF_TOKEN=/CIVITAI_TOKEN= lines from stdin")
    args = parser.parse_args(argv)
    with open(args.manifest, encoding="utf-8") as handle:
        manifest = json.load(handle)
    tokens = read_secrets(sys.stdin) if args.secrets_stdin else {}
    try:
        result = sync(manifest["models"], manifest["models_dir"], uid=manifest.get("uid"),
                      gid=manifest.get("gid"), tokens=tokens,
                      hf_endpoint=manifest.get("hf_endpoint") or HF_ENDPOINT,
                      civitai_endpoint=manifest.get("civitai_endpoint") or CIVITAI_ENDPOINT,
                      jobs=manifest.get("jobs") or 3)
    except DownloadError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
