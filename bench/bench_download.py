"""Download benchmark: our downloader vs `curl -o`, same loopback server, same file, one run.

    .venv/bin/python bench/bench_download.py [--size-gib 2] [--rounds 2] [--dir DIR]

The server (tests/harness/model_server.py) serves a sparse 2 GiB file over real sockets on
127.0.0.1 with sendfile and counts the body bytes it sends. Each client runs in its own process:
curl, curl followed by an fsync of its output, our downloader (hash in the same pass) without
fsync, and our downloader as it really runs (fsync before the atomic rename). Before every run
the page cache is synced (no dirty pages left by the previous client) and the order of the
four clients rotates each round; the table shows medians. Then a resumed
download: the server cuts the first attempt at 40 %, the process gives up (retries=0) leaving
the .part, a second process resumes; the server's byte count shows only the missing bytes went
over the wire. Peak memory is the downloader process's ru_maxrss (the whole interpreter with
requests loaded) and the tracemalloc peak of Python allocations during the resumed download.

Writes bench/results/download.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.model_server import ModelServer  # noqa: E402

CLIENT = r"""
import json, os, resource, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
from genai_workstation.models import downloader as d
url, models_dir, sha, fsync, retries, trace = sys.argv[2:8]
if trace == "1":
    tracemalloc.start()
item = d.Item({"url": url, "folder": "checkpoints", "sha256": sha})
http = d.Http()
started = time.perf_counter()
error = None
try:
    d.download(item, http, models_dir, log=lambda m: None, fsync=fsync == "1",
               retries=int(retries), backoff=0.05)
except d.DownloadError as exc:
    error = str(exc)
seconds = time.perf_counter() - started
peak = tracemalloc.get_traced_memory()[1] if trace == "1" else None
print(json.dumps({"seconds": seconds, "maxrss_kib": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss, "tracemalloc_peak": peak, "error": error}))
"""


def run_ours(url, models_dir, sha, *, fsync, retries=6, trace=False):
    out = subprocess.run([sys.executable, "-c", CLIENT, str(REPO), url, str(models_dir), sha,
                          "1" if fsync else "0", str(retries), "1" if trace else "0"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_curl(url, target: Path, *, fsync: bool):
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(target), url], check=True)
    if fsync:
        fd = os.open(target, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", default=None, help="work folder (default: a temp dir in /var/tmp)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "download.json"))
    args = parser.parse_args()
    if not shutil.which("curl"):
        print("curl is not installed", file=sys.stderr)
        return 2
    size = int(args.size_gib * (1 << 30))
    work = Path(tempfile.mkdtemp(prefix="bench-download-", dir=args.dir or "/var/tmp"))
    results: dict = {"size_bytes": size, "rounds": args.rounds, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "kernel": platform.release(),
        "curl": subprocess.run(["curl", "--version"], capture_output=True,
                               text=True).stdout.split("\n")[0]}}
    try:
        with ModelServer(root=work / "server") as server:
            served = server.add_file("big.safetensors", size=size, sparse=True)
            url = f"{server.url}/files/big.safetensors"
            times: dict[str, list[float]] = {"curl": [], "curl+fsync": [], "ours": [],
                                             "ours+fsync": []}
            rss = []
            labels = list(times)
            for round_ in range(args.rounds):
                # Rotate the order each round; start every run with no dirty pages left over.
                for label in labels[round_ % len(labels):] + labels[:round_ % len(labels)]:
                    os.sync()
                    target_dir = work / "dest" / label
                    shutil.rmtree(target_dir, ignore_errors=True)
                    target_dir.mkdir(parents=True)
                    before = served.sent
                    if label.startswith("curl"):
                        seconds = run_curl(url, target_dir / "big.safetensors",
                                           fsync=label.endswith("fsync"))
                    else:
                        report = run_ours(url, target_dir, served.sha256,
                                          fsync=label.endswith("fsync"))
                        if report["error"]:
                            raise SystemExit(report["error"])
                        seconds = report["seconds"]
                        rss.append(report["maxrss_kib"])
                        final = target_dir / "checkpoints" / "big.safetensors"
                        assert final.stat().st_size == size
                    assert served.sent - before == size
                    times[label].append(seconds)
                    shutil.rmtree(target_dir, ignore_errors=True)

            # Resumed download: cut at 40 %, give up, resume in a new process.
            resume_dir = work / "dest" / "resume"
            resume_dir.mkdir(parents=True)
            served.cut_after = int(size * 0.4)
            first_before = served.sent
            first = run_ours(url, resume_dir, served.sha256, fsync=False, retries=0)
            first_sent = served.sent - first_before
            part = resume_dir / "checkpoints" / "big.safetensors.part"
            part_size = part.stat().st_size
            second_before = served.sent
            second = run_ours(url, resume_dir, served.sha256, fsync=True, trace=True)
            second_sent = served.sent - second_before
            final = resume_dir / "checkpoints" / "big.safetensors"
            resume = {
                "first_attempt_error": bool(first["error"]),
                "first_attempt_bytes_sent": first_sent,
                "part_bytes_after_cut": part_size,
                "second_attempt_bytes_sent": second_sent,
                "missing_bytes": size - part_size,
                "only_missing_bytes_fetched": second_sent == size - part_size,
                "final_size_ok": final.stat().st_size == size and not part.exists(),
                "second_attempt_seconds": round(second["seconds"], 3),
                "tracemalloc_peak_bytes": second["tracemalloc_peak"],
                "maxrss_kib": second["maxrss_kib"],
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = {}
    for label, values in times.items():
        median = statistics.median(values)
        rows[label] = {"seconds": [round(v, 3) for v in values],
                       "median_seconds": round(median, 3),
                       "mib_per_s": round(size / (1 << 20) / median, 1)}
    results["throughput"] = rows
    results["peak_rss_mib"] = round(max(rss + [resume["maxrss_kib"]]) / 1024, 1)
    results["resume"] = resume
    results["ours_vs_curl"] = round(rows["curl"]["median_seconds"]
                                    / rows["ours"]["median_seconds"], 3)
    results["ours_fsync_vs_curl_fsync"] = round(rows["curl+fsync"]["median_seconds"]
                                                / rows["ours+fsync"]["median_seconds"], 3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")

    print(f"{human(size)} file from 127.0.0.1, {args.rounds} rounds, median:")
    print(f"{'client':<14}{'seconds':>10}{'MiB/s':>10}")
    for label, row in rows.items():
        print(f"{label:<14}{row['median_seconds']:>10.2f}{row['mib_per_s']:>10.0f}")
    print(f"ours/curl speed ratio: {results['ours_vs_curl']} (no fsync), "
          f"{results['ours_fsync_vs_curl_fsync']} (with fsync)")
    print(f"downloader peak RSS: {results['peak_rss_mib']} MiB (whole process); tracemalloc "
          f"peak {resume['tracemalloc_peak_bytes'] / (1 << 20):.1f} MiB")
    print(f"resume: cut after {human(resume['part_bytes_after_cut'])}, second run fetched "
          f"{human(resume['second_attempt_bytes_sent'])} = missing "
          f"{human(resume['missing_bytes'])}: {resume['only_missing_bytes_fetched']}")
    print(f"results: {out}")
    return 0


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return str(n)


if __name__ == "__main__":
    sys.exit(main())
