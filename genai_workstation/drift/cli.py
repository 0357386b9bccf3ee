"""genai-drift: what differs from the declared state? (exit 0 no drift, 2 drift, 1 error)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from genai_workstation.errors import InventoryError
from genai_workstation.findings import CONFIG, ERROR, Finding, Report
from genai_workstation.loader import REPO_ROOT, Inventory, inventory_path, load_inventory
from genai_workstation.reports import FORMATS, render

DEFAULT_DEPLOY = "deploys/site.py"
VERIFY_DEPLOY = "deploys/verify.py"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    if args.inventory:
        env["GENAI_INVENTORY"] = str(Path(args.inventory).resolve())
    try:
        inventory = load_inventory(inventory_path(env), env)
    except InventoryError as error:
        print(error.render(), file=sys.stderr)
        return 1
    hosts = args.limit or list(inventory.hosts)
    unknown = [h for h in hosts if h not in inventory.hosts]
    if unknown:
        print(f"genai-drift: unknown host(s): {', '.join(unknown)}; the inventory has "
              f"{', '.join(inventory.hosts)}", file=sys.stderr)
        return 1

    report = check(inventory, hosts, args.deploy, env)
    text = render(report, args.format)
    if args.output:
        _write_atomic(Path(args.output), text)
    else:
        sys.stdout.write(text)
    if args.textfile:
        _write_atomic(Path(args.textfile), render(report, "prometheus"))
    return report.exit_code()


def check(inventory: Inventory, hosts: list[str], deploy: str, env: dict) -> Report:
    """State drift (verify facts) then config drift (the converge's dry-run plan)."""
    report = Report(hosts=list(hosts))
    limit = _limit_args(inventory, hosts)
    with tempfile.TemporaryDirectory(prefix="genai-drift-") as findings_dir:
        verify = _pyinfra(["deploys/verify.py", "--data", f"findings_dir={findings_dir}",
                           *limit], env)
        for host in hosts:
            path = Path(findings_dir) / f"{host}.json"
            if path.exists():
                for finding in Report.from_json(path.read_text()).findings:
                    report.add(finding)
            else:
                report.add(Finding(host, "host reachable", "verification ran",
                                   _why_failed(verify, inventory.pyinfra_name(host)),
                                   f"check the connection settings of hosts.{host} and that "
                                   "the host is up", kind=ERROR))
    unreachable = {f.host for f in report.errors}
    plan = _pyinfra([deploy, "--dry", "--json", *limit], env)
    try:
        operations = json.loads(plan.stdout)["plan"]
    except (ValueError, KeyError, TypeError):
        for host in hosts:
            if host not in unreachable:
                report.add(Finding(host, "converge plan", f"`pyinfra {deploy} --dry` runs",
                                   _why_failed(plan, inventory.pyinfra_name(host)),
                                   "run the command by hand to see the error", kind=ERROR))
        return report
    names = {inventory.pyinfra_name(h): h for h in hosts}
    for operation in operations:
        for pyinfra_name in operation.get("hosts_with_change", []):
            host = names.get(pyinfra_name)
            if host and host not in unreachable:
                report.add(Finding(host, operation["name"], "converged (no change planned)",
                                   "a converge would change this",
                                   f"pyinfra inventory.py {deploy} --limit {pyinfra_name}",
                                   kind=CONFIG))
    return report


def _pyinfra(args: list[str], env: dict) -> subprocess.CompletedProcess:
    pyinfra = str(Path(sys.executable).with_name("pyinfra"))
    # `-y` makes pyinfra skip change detection, which a `--dry` plan needs; a dry run never asks.
    yes = [] if "--dry" in args else ["-y"]
    return subprocess.run([pyinfra, *yes, "inventory.py", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def _limit_args(inventory: Inventory, hosts: list[str]) -> list[str]:
    if set(hosts) == set(inventory.hosts):
        return []
    return ["--limit", ",".join(inventory.pyinfra_name(h) for h in hosts)]


def _why_failed(result: subprocess.CompletedProcess, pyinfra_name: str) -> str:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines()]
    for line in lines:
        if pyinfra_name in line and ("Could not connect" in line or "Error" in line):
            return line
    tail = [line for line in lines if line][-1:] or ["no output"]
    return f"pyinfra exited {result.returncode}: {tail[0]}"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(text)
    partial.replace(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genai-drift",
        description="Report what differs between the workstations and the inventory: state "
                    "drift (facts vs inventory) and config drift (what a converge would change). "
                    "Exit codes: 0 no drift, 2 drift found, 1 error.")
    parser.add_argument("--inventory", help="inventory YAML (default: $GENAI_INVENTORY or "
                                            "inventory/workstation.yaml)")
    parser.add_argument("--limit", action="append", metavar="HOST",
                        help="check only this host (repeatable)")
    parser.add_argument("--deploy", default=DEFAULT_DEPLOY,
                        help="the converge whose dry-run plan is compared "
                             f"(default {DEFAULT_DEPLOY})")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--output", help="write the report here instead of stdout")
    parser.add_argument("--textfile", help="also write a Prometheus textfile here (for "
                                           "node_exporter's textfile collector)")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
