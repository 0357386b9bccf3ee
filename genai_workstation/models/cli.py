"""genai-models: sync the inventory's models, fetch one file, migrate a Windows collection.

    genai-models sync [--inventory PATH] [--limit HOST] [--manifest models.yaml] [--format json]
    genai-models fetch URL --folder F [--sha256 HEX] [--name N]
    genai-models migrate SRC [--apply] [--delete-source]

Runs on the workstation itself (for remote hosts: `pyinfra inventory.py deploys/models.py`).
Tokens come from the inventory's secrets file or the environment (HF_TOKEN, CIVITAI_TOKEN) and
are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .. import exitcodes
from ..errors import InventoryError
from . import downloader, manifest, migrate

PROG = "genai-models"
FORMATS = ("table", "json")
EPILOG = exitcodes.epilog("problems found: migrate found conflicts or too little space")


class UsageError(Exception):
    """The command line is wrong (exit code exitcodes.USAGE)."""


def _parser() -> argparse.ArgumentParser:
    parser = exitcodes.Parser(prog=PROG, description=__doc__.splitlines()[0], epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, models_dir_help="model tree (default: the host's models_dir)"):
        p.epilog = EPILOG
        p.add_argument("--inventory", help="inventory YAML (default: $GENAI_INVENTORY or "
                                           "inventory/workstation.yaml)")
        p.add_argument("--limit", action="append", metavar="HOST",
                       help="host of the inventory (default: the local one, or the only one)")
        p.add_argument("--host", action="append", dest="limit", help=argparse.SUPPRESS)
        p.add_argument("--models-dir", help=models_dir_help)
        p.add_argument("--format", choices=FORMATS, default="table",
                       help="table (default: lines for a terminal) or json (on stdout; "
                            "progress goes to stderr)")

    def network(p):
        p.add_argument("--jobs", type=int, default=manifest.DEFAULT_JOBS,
                       help="files downloaded at once (default 3)")
        p.add_argument("--hf-endpoint", help="Hugging Face endpoint or mirror")
        p.add_argument("--civitai-endpoint", help="Civitai endpoint or mirror")

    sync = sub.add_parser("sync", help="download and verify the inventory's models")
    common(sync)
    network(sync)
    sync.add_argument("--manifest", help="a models.yaml (`models:` list) to sync as well")

    fetch = sub.add_parser("fetch", help="download one URL into a model folder, verified")
    fetch.add_argument("url")
    fetch.add_argument("--folder", required=True, help="ComfyUI model folder, e.g. loras")
    fetch.add_argument("--sha256", help="expected sha256 (strongly recommended)")
    fetch.add_argument("--name", help="file name (default: from the URL)")
    common(fetch)
    network(fetch)

    move = sub.add_parser("migrate", help="copy an A1111/Forge model tree into ComfyUI names")
    move.add_argument("source", help="e.g. /mnt/d/stable-diffusion-webui/models")
    move.add_argument("--apply", action="store_true", help="copy (default: show the plan)")
    move.add_argument("--delete-source", action="store_true",
                      help="after a verified copy, delete the source files (with --apply)")
    common(move)
    return parser


class _Context:
    def __init__(self, args):
        self.settings: dict = {}
        self.tokens: dict[str, str] = {}
        inventory_error = None
        try:
            from ..loader import load_inventory

            inventory = load_inventory(args.inventory)
            name = _host(args.limit, inventory)
            self.settings = inventory.hosts[name]
            self.tokens = {k: v.unmask() for k, v in (self.settings.get("secrets") or {}).items()
                           if k in downloader.TOKEN_NAMES}
        except InventoryError as exc:
            if args.inventory or args.command == "sync" or not args.models_dir:
                raise
            inventory_error = exc
        if inventory_error is not None:  # fetch/migrate with --models-dir: secrets only
            from ..loader import inventory_path
            from ..secrets import load_secrets

            secrets, _ = load_secrets(inventory_path(), os.environ)
            self.tokens = {n: secrets.get(n) for n in downloader.TOKEN_NAMES if n in secrets}
        self.models_dir = args.models_dir or self.settings.get("models_dir")
        user = self.settings.get("user") or {}
        running_as_root = os.geteuid() == 0
        self.uid = user.get("uid") if running_as_root else None
        self.gid = user.get("gid") if running_as_root else None
        endpoints = self.settings.get("model_endpoints") or {}
        self.hf_endpoint = (getattr(args, "hf_endpoint", None) or endpoints.get("huggingface")
                            or downloader.HF_ENDPOINT)
        self.civitai_endpoint = (getattr(args, "civitai_endpoint", None)
                                 or endpoints.get("civitai") or downloader.CIVITAI_ENDPOINT)


def _host(limit: list[str] | None, inventory) -> str:
    """The one host `--limit` names, else the local one, else the only one."""
    names = exitcodes.hosts_option(limit)
    if len(names) > 1:
        raise UsageError(f"--limit: one host, not {len(names)} (genai-models works on the "
                         "machine it runs on)")
    if names:
        if names[0] not in inventory.hosts:
            raise UsageError(f"unknown host in --limit: {names[0]}; the inventory has "
                             f"{', '.join(inventory.hosts)}")
        return names[0]
    local = [n for n, s in inventory.hosts.items() if s["connection"]["type"] == "local"]
    if local:
        return local[0]
    if len(inventory.hosts) == 1:
        return next(iter(inventory.hosts))
    raise UsageError("the inventory has several hosts and none is local; pick one with "
                     "--limit HOST")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as exc:
        return exitcodes.usage_error(PROG, str(exc))
    except InventoryError as exc:
        print(exc.render(), file=sys.stderr)
        return exitcodes.ERROR
    except downloader.DownloadError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return exitcodes.ERROR


def _run(args) -> int:
    if getattr(args, "delete_source", False) and not args.apply:
        raise UsageError("--delete-source needs --apply")
    context = _Context(args)
    if not context.models_dir:
        raise UsageError("no models_dir: give --models-dir")
    progress = downloader.Progress(sys.stderr if args.format == "json" else None)
    if args.command == "migrate":
        return _migrate(args, context, progress)
    if args.command == "fetch":
        spec = {"url": args.url, "folder": args.folder}
        if args.sha256:
            spec["sha256"] = args.sha256.lower()
        if args.name:
            spec["name"] = args.name
        specs = [spec]
    else:
        specs = manifest.specs_from_settings(context.settings)
        if args.manifest:
            specs += manifest.load_manifest_file(args.manifest)
    if not specs:
        result = downloader.Result()
        progress.say("models: none listed")
    else:
        result = downloader.sync(specs, context.models_dir, uid=context.uid, gid=context.gid,
                                 tokens=context.tokens, hf_endpoint=context.hf_endpoint,
                                 civitai_endpoint=context.civitai_endpoint, jobs=args.jobs,
                                 progress=progress)
    code = exitcodes.OK if result.ok else exitcodes.ERROR
    if args.format == "json":
        _print_json(_sync_json(args.command, context.models_dir, result, code))
    return code


def _sync_json(command: str, models_dir: str, result, code: int) -> dict:
    return {"command": command, "models_dir": models_dir, "exit_code": code,
            "present": result.present,
            "fetched": [{"file": rel, "bytes": size} for rel, size in result.fetched],
            "failed": [{"file": rel, "error": why} for rel, why in result.failed],
            "resolved": result.resolved, "owner_mode_fixed": result.fixed}


def _print_json(document: dict) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def _migrate(args, context, progress) -> int:
    if not os.path.isdir(args.source):
        raise UsageError(f"{args.source}: no such folder (a webui root or its models folder)")
    the_plan = migrate.plan(args.source, context.models_dir)
    problems = bool(the_plan.conflicts) or not the_plan.fits
    summary = None
    if args.format == "table":
        print(the_plan.render())
    if not args.apply:
        progress.say("nothing copied: run again with --apply to copy (sources are kept unless "
                     "--delete-source)")
    elif the_plan.fits:
        summary = migrate.apply(the_plan, delete_source=args.delete_source, uid=context.uid,
                                gid=context.gid, progress=progress)
    code = exitcodes.FOUND if problems else exitcodes.OK
    if args.format == "json":
        _print_json(_plan_json(the_plan, summary, code))
    if args.apply and not the_plan.fits:
        raise downloader.DownloadError(f"not enough free space in {the_plan.models_dir}: "
                                       "nothing copied")
    return code


def _plan_json(the_plan, summary: dict | None, code: int) -> dict:
    def source(path) -> str:
        return str(path.relative_to(the_plan.source))

    return {"command": "migrate", "source": str(the_plan.source),
            "models_dir": str(the_plan.models_dir), "exit_code": code,
            "moves": [{"source": source(m.source), "dest": m.rel, "bytes": m.size,
                       "duplicate_of": str(m.duplicate_of) if m.duplicate_of else None,
                       "already_there": m.already} for m in the_plan.moves],
            "conflicts": [{"source": source(m.source), "why": why}
                          for m, why in the_plan.conflicts],
            "skipped": [{"source": source(path), "why": why} for path, why in the_plan.skipped],
            "bytes_to_copy": the_plan.bytes_to_copy, "free_bytes": the_plan.free,
            "fits": the_plan.fits, "applied": summary}


if __name__ == "__main__":
    sys.exit(main())
