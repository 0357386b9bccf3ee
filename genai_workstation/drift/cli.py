"""genai-drift: what differs from the declared state? (exit 0 no drift, 2 drift, 1 error, 64
usage error)."""

# pyinfra checks the hosts in parallel on gevent greenlets: like pyinfra's own CLI
# (pyinfra_cli/__init__.py), patch the standard library before anything opens a socket.
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from genai_workstation import exitcodes  # noqa: E402
from genai_workstation.errors import InventoryError  # noqa: E402
from genai_workstation.loader import inventory_path, load_inventory  # noqa: E402
from genai_workstation.reports import FORMATS, render  # noqa: E402
from genai_workstation.resources import ROOT, shipped_path  # noqa: E402

DEFAULT_DEPLOY = "deploys/site.py"
PROG = "genai-drift"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    if args.inventory:
        env["GENAI_INVENTORY"] = str(Path(args.inventory).resolve())
    try:
        inventory = load_inventory(inventory_path(env), env)
    except InventoryError as error:
        print(error.render(), file=sys.stderr)
        return exitcodes.ERROR
    hosts = exitcodes.hosts_option(args.limit) or list(inventory.hosts)
    unknown = [h for h in hosts if h not in inventory.hosts]
    if unknown:
        return exitcodes.usage_error(PROG, f"unknown host(s) in --limit: {', '.join(unknown)}; "
                                           f"the inventory has {', '.join(inventory.hosts)}")
    deploy = args.deploy
    if not shipped_path(deploy).is_file():
        return exitcodes.usage_error(PROG, f"--deploy {deploy}: no such deploy file (a path "
                                           f"from here or below {ROOT}, e.g. {DEFAULT_DEPLOY})")

    from genai_workstation.drift.run import check

    report = check(inventory, hosts, deploy, args.connect_timeout)
    text = render(report, args.format)
    if args.output:
        _write_atomic(Path(args.output), text)
    else:
        sys.stdout.write(text)
    if args.textfile:
        _write_atomic(Path(args.textfile), render(report, "prometheus"))
    return report.exit_code()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(text)
    partial.replace(path)


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= 600:
        raise argparse.ArgumentTypeError(f"{value!r}: give seconds, from 1 to 600")
    return seconds


def _parser() -> exitcodes.Parser:
    parser = exitcodes.Parser(
        prog=PROG,
        description="Report what differs between the workstations and the inventory: state "
                    "drift (facts vs inventory) and config drift (what a converge would "
                    "change), in one pyinfra run over all hosts at once.",
        epilog=exitcodes.epilog("drift found"))
    parser.add_argument("--inventory", help="inventory YAML (default: $GENAI_INVENTORY or "
                                            "inventory/workstation.yaml)")
    parser.add_argument("--limit", action="append", metavar="HOST[,HOST]",
                        help="check only these hosts (repeatable; default: all)")
    parser.add_argument("--deploy", default=DEFAULT_DEPLOY,
                        help="the converge whose plan is compared (default "
                             f"{DEFAULT_DEPLOY})")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default), json, junit or prometheus")
    parser.add_argument("--output", help="write the report here instead of stdout")
    parser.add_argument("--textfile", help="also write a Prometheus textfile here (for "
                                           "node_exporter's textfile collector)")
    parser.add_argument("--connect-timeout", type=_timeout, metavar="SECONDS",
                        help="give up on a host that has not answered after this long "
                             "(default: connection.connect_timeout of the inventory, 10)")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
