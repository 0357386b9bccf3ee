"""Fresh Debian bookworm hosts reachable over real SSH on loopback, for end-to-end tests.

Each host is a debootstrap tree running in its own mount, PID and UTS namespaces (sharing this
machine's network, so apt works inside): `tini` is PID 1 and runs `sshd -D` on 127.0.0.1:PORT
with a throwaway host key and client key. Every mount a host needs (its root, /proc, /sys, /dev,
/run, cgroups) is made inside its private mount namespace, so nothing leaks onto this machine
and everything goes away with the namespace: stopping PID 1 ends every process inside.

Plain hosts use an overlay on a shared, cached, read-only tree (starting one takes well under a
second); `docker_capable` hosts get their own unpacked tree (Docker's overlay2 cannot run on an
overlay) and the extra set-up the Docker engine needs (see /work/shared/reference/test-hosts.md).

Fixtures: `fresh_host`, `fresh_hosts(n, docker_capable=False)`, `docker_host` (module scope).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from . import netns
from .rootfs import CACHE_DIR, remove_tree, rootfs_tarball, unpack

# What every fresh host has on top of minbase: an SSH server, a PID 1 that reaps, CA roots.
HOST_PACKAGES = ("ca-certificates", "openssh-server", "tini")
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Only this machine needs it: it lacks CAP_SYS_RESOURCE, so the init script's
# `ulimit -n 1048576` fails. Real workstations do not get this file.
DOCKER_DEFAULTS_QUIRK = """\
# genai-workstation test harness: this test machine lacks CAP_SYS_RESOURCE.
ulimit() { command ulimit "$@" 2>/dev/null || true; }
"""
CGROUP_FSTAB_LINE = "cgroup /sys/fs/cgroup cgroup defaults 0 0\n"
# A docker-capable host has its own network namespace; apt reaches out through this proxy.
APT_PROXY_PORT = 3142
APT_PROXY_CONF = f'Acquire::http::Proxy "http://127.0.0.1:{APT_PROXY_PORT}/";\n'
PROXY_ENV = {
    name: value
    for names, value in ((("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"),
                          f"http://127.0.0.1:{APT_PROXY_PORT}"),
                         (("no_proxy", "NO_PROXY"), "localhost,127.0.0.1,::1"))
    for name in names
}

# Runs as PID 1 of the new namespaces (before exec'ing chroot + tini); mounts stay private.
_NAMESPACE_INIT = r"""
set -eu
root=$1 hostname=$2 mode=$3 lower=$4 upper=$5 work=$6 docker=$7 cgroup=$8
shift 8
if [ "$mode" = overlay ]; then
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$root"
else
    mount --bind "$root" "$root"
fi
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
if [ "$docker" = 1 ]; then
    ip link set lo up
    mount -t tmpfs -o mode=755 cgroup "$root/sys/fs/cgroup"
    # Each hierarchy of this machine, seen from a sub-group of its own (removed at the end).
    awk '$2 ~ "^/sys/fs/cgroup/" && $3 ~ "^cgroup" {print $2}' /proc/self/mounts |
    while read -r hierarchy; do
        mkdir -p "$hierarchy/$cgroup" "$root$hierarchy"
        for knob in cpuset.cpus cpuset.mems; do
            if [ -f "$hierarchy/$knob" ]; then
                cat "$hierarchy/$knob" >"$hierarchy/$cgroup/$knob"
            fi
        done
        echo 0 >"$hierarchy/$cgroup/cgroup.procs" || true
        mount --bind "$hierarchy/$cgroup" "$root$hierarchy"
    done
fi
hostname "$hostname"
start_sshd='mkdir -p /run/sshd && chmod 755 /run/sshd && exec /usr/sbin/sshd "$@"'
if [ "$docker" = 1 ]; then
    # pivot_root, not chroot: Docker enters containers (exec, healthchecks) from the mount
    # namespace's root, which must be the host's tree, not this machine's /.
    cd "$root"
    mkdir -p .genai-oldroot
    pivot_root . .genai-oldroot
    cd /
    umount -l /.genai-oldroot
    rmdir /.genai-oldroot
    exec /usr/bin/tini -- /bin/sh -c "$start_sshd" sshd "$@"
fi
exec chroot "$root" /usr/bin/tini -- /bin/sh -c "$start_sshd" sshd "$@"
"""

_ports_taken: set[int] = set()
_cgroup_numbers = itertools.count(1)
_ports_lock = threading.Lock()


class FreshHost:
    """One fresh bookworm host: an sshd on 127.0.0.1:`ssh_port` in its own namespaces.

    `root` is the host's tree as this machine sees it while the host runs
    (`/proc/<pid 1>/root`: read and write files there); `tree` is the folder on disk
    that holds the host's own files (the whole tree, or the overlay's upper layer).
    """

    def __init__(self, name: str, workdir: Path, docker_capable: bool = False,
                 lower: Path | None = None):
        self.name = name
        self.workdir = Path(workdir)
        self.docker_capable = docker_capable
        self.lower = lower  # shared read-only tree for an overlay host; None: own tree
        self.mountpoint = self.workdir / "root"
        self.upper = self.workdir / "upper"
        self.tree = self.upper if lower else self.mountpoint
        self.key_path = self.workdir / "ssh" / "id_ed25519"
        self.known_hosts = self.workdir / "ssh" / "known_hosts"
        self.log_path = self.workdir / "sshd.log"
        self.ssh_port: int = 0
        self.host_key: str = ""
        self.pid: int | None = None  # PID 1 of the host's namespaces, as this machine sees it
        self._process: subprocess.Popen | None = None
        self._relays: list[netns.Relay] = []
        self.cgroup = ""  # docker-capable: its own sub-group in each cgroup hierarchy
        self._apt_updated = False

    def __repr__(self) -> str:
        state = f"port {self.ssh_port}, pid {self.pid}" if self.running else "stopped"
        kind = "docker-capable, " if self.docker_capable else ""
        return f"<FreshHost {self.name} ({kind}{state})>"

    # Set-up --------------------------------------------------------------------------------
    def prepare(self, tarball: Path) -> None:
        """Lay out the tree and keys (thread-safe: no process is started here)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(exist_ok=True)
        if self.lower:
            self.upper.mkdir(exist_ok=True)
            (self.workdir / "work").mkdir(exist_ok=True)
        else:
            unpack(tarball, self.mountpoint)
        ssh_dir = self.key_path.parent
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        _keygen(self.key_path, f"genai-workstation-tests@{self.name}")
        host_key_dir = self._make_dirs("etc/ssh")
        for kind in ("rsa", "ecdsa"):  # the tarball's host keys are shared by all: drop them
            for suffix in ("", ".pub"):
                self._remove(f"etc/ssh/ssh_host_{kind}_key{suffix}")
        host_key = host_key_dir / "ssh_host_ed25519_key"  # and replace this one
        for old in (host_key, host_key.with_suffix(".pub")):
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        _keygen(host_key, f"root@{self.name}")
        self.host_key = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
        authorized_keys = self._make_dirs("root/.ssh") / "authorized_keys"
        authorized_keys.write_text(self.key_path.with_suffix(".pub").read_text())
        authorized_keys.chmod(0o600)
        (self.tree / "etc" / "hostname").write_text(self.name + "\n")
        if self.docker_capable:
            (self._make_dirs("etc/default") / "docker").write_text(DOCKER_DEFAULTS_QUIRK)
            fstab = self.tree / "etc" / "fstab"
            fstab.write_text(fstab.read_text() + CGROUP_FSTAB_LINE)
            proxy_conf = self._make_dirs("etc/apt/apt.conf.d") / "99genai-test-proxy"
            proxy_conf.write_text(APT_PROXY_CONF)

    @property
    def netns(self) -> str | None:
        """The host's own network namespace (docker-capable hosts), else None (shared)."""
        return f"/proc/{self.pid}/ns/net" if self.docker_capable and self.pid else None

    def _make_dirs(self, relative: str) -> Path:
        """A folder of the tree (in an overlay's upper layer: with the lower one's modes)."""
        path = self.tree
        for part in Path(relative).parts:
            path = path / part
            if not path.is_dir():
                path.mkdir(mode=0o700 if part == ".ssh" else 0o755)
                like = self.lower / path.relative_to(self.tree) if self.lower else None
                if like and like.is_dir():
                    info = like.stat()
                    os.chown(path, info.st_uid, info.st_gid)
                    os.chmod(path, stat.S_IMODE(info.st_mode))
        return path

    def _remove(self, relative: str) -> None:
        """Delete a file of the tree (in an overlay: hide the lower one with a whiteout)."""
        with contextlib.suppress(FileNotFoundError):
            (self.tree / relative).unlink()
        if self.lower and (self.lower / relative).exists():
            os.mknod(self.tree / relative, stat.S_IFCHR | 0o600, os.makedev(0, 0))

    def launch(self) -> None:
        """Start the namespaces and sshd on a free port (call from the thread that owns it)."""
        # Own network namespace: sshd on :22 inside, relayed from a port here once it runs.
        self.ssh_port = 0 if self.docker_capable else _free_port()
        sshd_args = [
            "-D", "-e", "-p", str(22 if self.docker_capable else self.ssh_port),
            "-o", f"ListenAddress={LOOPBACK}",
            "-o", "HostKey=/etc/ssh/ssh_host_ed25519_key",
            "-o", "UsePAM=no",
            "-o", "StrictModes=no",
            "-o", "PermitRootLogin=prohibit-password",
            "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no",
            "-o", "MaxStartups=100:30:200",
            "-o", "MaxSessions=100",
            "-o", "UseDNS=no",
            "-o", "PrintMotd=no",
        ]
        if self.docker_capable:  # sessions reach out through the proxy (see netns.py)
            sshd_args += ["-o", "SetEnv=" + " ".join(f"{k}={v}" for k, v in PROXY_ENV.items())]
        mode = "overlay" if self.lower else "bind"
        if self.docker_capable:
            self.cgroup = f"genai-test-{os.getpid()}-{next(_cgroup_numbers)}-{self.name}"
        command = [
            "unshare", "--mount", "--uts", "--pid", "--fork", "--propagation", "private",
            "--kill-child", *(["--net"] if self.docker_capable else []),
            "/bin/sh", "-c", _NAMESPACE_INIT, "init",
            str(self.mountpoint), self.name, mode, str(self.lower or ""), str(self.upper),
            str(self.workdir / "work"), "1" if self.docker_capable else "0", self.cgroup,
            *sshd_args,
        ]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={"PATH": HOST_PATH, "LANG": "C.UTF-8"}, preexec_fn=_die_with_parent,
            )
        self.pid = None

    def wait_ready(self, deadline: float) -> bool:
        """One readiness poll: True once sshd answers with its banner. Raises if it died."""
        assert self._process is not None
        if self._process.poll() is not None:
            raise HostStartError(self, f"exited with {self._process.returncode}")
        if self.pid is None:
            self.pid = _child_pid(self._process.pid)
        if self.pid is None or not _ssh_banner(self.ssh_port or 22, self.netns):
            if time.monotonic() > deadline:
                raise HostStartError(self, f"sshd not answering on port {self.ssh_port}")
            return False
        if self.docker_capable and not self._relays:
            ssh = netns.tcp_forward(None, 0, self.netns, (LOOPBACK, 22), f"ssh-{self.name}")
            self._relays.append(ssh)
            self._relays.append(netns.http_proxy(self.netns, APT_PROXY_PORT,
                                                 f"apt-proxy-{self.name}"))
            self.ssh_port = ssh.port
        self.known_hosts.write_text(f"[{LOOPBACK}]:{self.ssh_port} {self.host_key}\n")
        return True

    def start(self, timeout: float = START_TIMEOUT) -> FreshHost:
        """Launch and wait until sshd accepts connections (the tree must be prepared)."""
        start_all([self], timeout)
        return self

    # Inside the host ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def root(self) -> Path:
        """The host's tree as this machine sees it, including its mounts (/run, /proc)."""
        if not self.running or self.pid is None:
            raise RuntimeError(f"{self.name} is not running")
        return Path(f"/proc/{self.pid}/root")

    def path(self, inside: str) -> Path:
        """Where an absolute path of the host is, seen from this machine."""
        return self.root / inside.lstrip("/")

    def run(self, command: str | list[str], check: bool = True, timeout: float = 600,
            input: str | None = None, env: dict | None = None,
            ) -> subprocess.CompletedProcess:
        """Run a command inside the host (its namespaces and root; not over SSH).

        A string runs through /bin/sh -c. Output is captured as text; `check` raises
        CalledProcessError (with the output in its message) on a non-zero exit.
        """
        if not self.running or self.pid is None:
            raise RuntimeError(f"{self.name} is not running")
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        full_env = {"PATH": HOST_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb",
                    "DEBIAN_FRONTEND": "noninteractive",
                    **(PROXY_ENV if self.docker_capable else {}), **(env or {})}
        namespaces = ["-m", "-u", "-p", *(["-n"] if self.docker_capable else [])]
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), *namespaces, "-r", "-w", "--", *argv],
            input=input, capture_output=True, text=True, timeout=timeout, env=full_env,
        )
        if check and result.returncode:
            raise HostCommandError(self, argv, result)
        return result

    def ssh(self, command: str, check: bool = True, timeout: float = 600,
            ) -> subprocess.CompletedProcess:
        """Run a command over real SSH (paramiko, the host's key pinned in known_hosts)."""
        import paramiko

        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(LOOPBACK, port=self.ssh_port, username="root",
                       key_filename=str(self.key_path), look_for_keys=False,
                       allow_agent=False, timeout=timeout)
        try:
            _, stdout, stderr = client.exec_command(command, timeout=timeout)
            out, err = stdout.read().decode(), stderr.read().decode()
            code = stdout.channel.recv_exit_status()
        finally:
            client.close()
        result = subprocess.CompletedProcess(command, code, out, err)
        if check and code:
            raise HostCommandError(self, command, result)
        return result

    def install_packages(self, packages, recommends: bool = False,
                         timeout: float = 900) -> subprocess.CompletedProcess:
        """apt-get install inside the host (apt-get update once per host first)."""
        if not self._apt_updated:
            self.run("apt-get update -qq", timeout=timeout)
            self._apt_updated = True
        options = "" if recommends else "--no-install-recommends "
        return self.run(
            "apt-get install -y -qq -o Dpkg::Options::=--force-confdef "
            "-o Dpkg::Options::=--force-confold " + options + shlex.join(list(packages)),
            timeout=timeout,
        )

    def processes(self) -> list[int]:
        """PIDs (as this machine sees them) of every process inside the host."""
        if self.pid is None:
            return []
        try:
            namespace = os.readlink(f"/proc/{self.pid}/ns/pid")
        except OSError:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                        pids.append(int(entry))
        return sorted(pids)

    def mounts_seen_outside(self) -> list[str]:
        """Mount points under this host's folder that this machine's namespace sees
        (always empty: every mount of a host is private to it)."""
        result = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True,
                                text=True, check=True)
        prefix = str(self.workdir)
        return [line for line in result.stdout.splitlines()
                if line == prefix or line.startswith(prefix + "/")]

    def log(self) -> str:
        """sshd's log (stderr of the namespace's processes)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # Inventory ------------------------------------------------------------------------------
    def inventory_entry(self, **settings) -> dict:
        """This host's entry for `hosts:` in an inventory YAML (settings merged on top)."""
        connection = {
            "type": "ssh", "host": LOOPBACK, "port": self.ssh_port, "user": "root",
            "key": str(self.key_path), "known_hosts_file": str(self.known_hosts),
            "strict_host_key_checking": "accept-new",
        }
        extra = dict(settings)
        connection.update(extra.pop("connection", {}))
        return {"connection": connection, **extra}

    # Teardown -------------------------------------------------------------------------------
    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop Docker inside (if running), then PID 1; every process inside ends with it."""
        if self._process is None:
            return
        if self.running and self.pid and self.docker_capable:
            with contextlib.suppress(Exception):
                if self.path("/run/docker.pid").exists():
                    self.run("service docker stop", check=False, timeout=60)
        self._signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._process.kill()
            self._process.wait(timeout=timeout)
        self._process = None
        for relay in self._relays:
            relay.close()
        self._relays.clear()
        if self.cgroup:
            _remove_cgroups(self.cgroup)
            self.cgroup = ""

    def _signal(self, signum: int) -> None:
        target = self.pid or (self._process and _child_pid(self._process.pid))
        if target:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signum)

    def remove(self) -> None:
        """Stop the host and delete its folder."""
        self.stop()
        remove_tree(self.workdir)


class HostStartError(RuntimeError):
    def __init__(self, host: FreshHost, problem: str):
        super().__init__(f"fresh host {host.name}: {problem}\n--- sshd log ---\n{host.log()}")


class HostCommandError(subprocess.CalledProcessError):
    def __init__(self, host: FreshHost, command, result: subprocess.CompletedProcess):
        super().__init__(result.returncode, command, result.stdout, result.stderr)
        self.host = host

    def __str__(self) -> str:
        return (f"{self.host.name}: {self.cmd!r} exited with {self.returncode}\n"
                f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}")


# Fleets ---------------------------------------------------------------------------------------
def harness_missing() -> str | None:
    """Why fresh hosts cannot run on this machine, or None."""
    for tool in ("debootstrap", "unshare", "nsenter", "chroot", "ssh-keygen"):
        if not shutil.which(tool, path=HOST_PATH):
            return (f"fresh hosts need `{tool}` "
                    "(apt-get install debootstrap util-linux openssh-client)")
    if os.geteuid() != 0:
        return "fresh hosts need root (mount, unshare, chroot)"
    return None


def shared_tree(tarball: Path) -> Path:
    """The tarball unpacked once per machine, next to it: the read-only lower layer."""
    tree = tarball.with_suffix(".tree")
    if not (tree / "etc" / "os-release").exists():
        partial = Path(tempfile.mkdtemp(prefix=tree.name + ".", dir=tree.parent))
        unpack(tarball, partial)
        try:
            os.rename(partial, tree)
        except OSError:  # someone else finished first
            remove_tree(partial)
    return tree


def start_hosts(base: Path, names: list[str], docker_capable: bool = False,
                timeout: float = START_TIMEOUT) -> list[FreshHost]:
    """Prepare (in parallel threads) and start `names` as fresh hosts under `base`."""
    tarball = rootfs_tarball(HOST_PACKAGES)
    lower = None if docker_capable or not _overlay_supported() else shared_tree(tarball)
    hosts = [FreshHost(name, base / name, docker_capable, lower) for name in names]
    with ThreadPoolExecutor(max_workers=min(len(hosts), 4) or 1) as pool:
        list(pool.map(lambda host: host.prepare(tarball), hosts))
    try:
        start_all(hosts, timeout)
    except BaseException:
        stop_hosts(hosts, remove=True)
        raise
    return hosts


def start_all(hosts: list[FreshHost], timeout: float = START_TIMEOUT) -> None:
    """Launch every host, then wait for all of them; a port lost to a race is retried."""
    for host in hosts:
        host.launch()
    deadline = time.monotonic() + timeout
    pending = list(hosts)
    retries = {host.name: 2 for host in hosts}
    while pending:
        for host in list(pending):
            try:
                ready = host.wait_ready(deadline)
            except HostStartError:
                if retries[host.name] and "Bind to port" in host.log():
                    retries[host.name] -= 1
                    host.stop()
                    host.launch()
                    continue
                raise
            if ready:
                pending.remove(host)
        if pending:
            time.sleep(0.02)


def stop_hosts(hosts: list[FreshHost], remove: bool = True) -> None:
    """Stop hosts (Docker inside first), all at once, then delete their folders."""
    for host in hosts:
        if host.docker_capable and host.running:
            host.stop()
    for host in hosts:
        if host.running:
            host._signal(signal.SIGTERM)
    for host in hosts:
        host.stop()
        if remove:
            remove_tree(host.workdir)


def fleet_inventory(hosts: list[FreshHost], defaults: dict | None = None,
                    **settings) -> dict:
    """An inventory document for `hosts`: every host gets `settings` (and `defaults:`)."""
    document: dict = {"hosts": {host.name: host.inventory_entry(**settings) for host in hosts}}
    if defaults:
        document = {"defaults": defaults, **document}
    return document


class FleetFactory:
    """`fresh_hosts(n, docker_capable=False)`: n new hosts, stopped at the end of the module."""

    def __init__(self, base: Path):
        self.base = base
        self.hosts: list[FreshHost] = []
        self._numbers: dict[str, itertools.count] = {}

    def __call__(self, n: int = 1, docker_capable: bool = False,
                 prefix: str = "h") -> list[FreshHost]:
        numbers = self._numbers.setdefault(prefix, itertools.count(1))
        names = [f"{prefix}{next(numbers)}" for _ in range(n)]
        hosts = start_hosts(self.base, names, docker_capable)
        self.hosts.extend(hosts)
        return hosts

    def close(self) -> None:
        stop_hosts(self.hosts, remove=True)
        self.hosts.clear()


@pytest.fixture(scope="module")
def fresh_hosts(tmp_path_factory):
    """Factory: `fresh_hosts(n, docker_capable=False) -> list[FreshHost]` (h1, h2, ...)."""
    reason = harness_missing()
    if reason:
        pytest.skip(reason)
    factory = FleetFactory(tmp_path_factory.mktemp("fresh-hosts"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def fresh_host(fresh_hosts) -> FreshHost:
    """One clean bookworm host reachable over SSH."""
    return fresh_hosts(1)[0]


@pytest.fixture(scope="module")
def docker_host(fresh_hosts) -> FreshHost:
    """A clean host that can run its own Docker engine (docker.io is not installed)."""
    return fresh_hosts(1, docker_capable=True, prefix="dh")[0]


# Helpers --------------------------------------------------------------------------------------
def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)


def _free_port() -> int:
    with _ports_lock:
        while True:
            with socket.socket() as probe:
                probe.bind((LOOPBACK, 0))
                port = probe.getsockname()[1]
            if port not in _ports_taken:
                _ports_taken.add(port)
                return port


def _ssh_banner(port: int, namespace: str | None = None) -> bool:
    try:
        with netns.connect(namespace, (LOOPBACK, port), timeout=1) as conn:
            conn.settimeout(2)
            return conn.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def _child_pid(pid: int) -> int | None:
    """The first child of `pid` (unshare --fork's child: PID 1 of the new namespace)."""
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            if children:
                return int(children[0])
    return None


def cgroup_hierarchies() -> list[Path]:
    """This machine's cgroup mounts under /sys/fs/cgroup/."""
    hierarchies = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1].startswith("/sys/fs/cgroup/") and fields[2].startswith("cgroup"):
            hierarchies.append(Path(fields[1]))
    return hierarchies


def _remove_cgroups(name: str, timeout: float = 10.0) -> None:
    """Remove a host's sub-groups (and what Docker made in them), once their tasks are gone."""
    deadline = time.monotonic() + timeout
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / name
        while top.exists():
            for folder, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
            if not top.exists() or time.monotonic() > deadline:
                break
            time.sleep(0.05)


def _overlay_supported() -> bool:
    with contextlib.suppress(OSError):
        return "overlay" in Path("/proc/filesystems").read_text()
    return False


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the test process dies (no leaked hosts)."""
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


__all__ = ["CACHE_DIR", "FreshHost", "HOST_PACKAGES", "fleet_inventory", "start_hosts",
           "stop_hosts", "harness_missing"]
