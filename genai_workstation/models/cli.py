"""genai-models: sync the inventory's models, fetch one file, migrate a Windows collection.

    genai-models sync [--inventory PATH] [--host NAME] [--manifest models.yaml]
    genai-models fetch URL --folder F [--sha256 HEX] [--name N]
    genai-models migrate SRC [--apply] [--delete-source]

Runs on the workstation itself (for remote hosts: `pyinfra inventory.py deploys/models.py`).
Tokens come from the inventory's secrets file or the environment (HF_TOKEN, CIVITAI_TOKEN) and
are never printed.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import InventoryError
from . import downloader, manifest, migrate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genai-models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, models_dir_help="model tree (default: the host's models_dir)"):
        p.add_argument("--inventory", help="inventory YAML (default: $GENAI_INVENTORY or "
                                           "inventory/workstation.yaml)")
        p.add_argument("--host", help="host of the inventory (default: the local one)")
        p.add_argument("--models-dir", help=models_dir_help)

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
            name = args.host or _local_host(inventory)
            if name not in inventory.hosts:
                raise SystemExit(f"genai-models: no host {name!r} in {inventory.path}; "
                                 f"hosts: {', '.join(inventory.hosts)}")
            self.settings = inventory.hosts[name]
            self.tokens = {k: v.unmask() for k, v in (self.settings.get("secrets") or {}).items()
                           if k in downloader.TOKEN_NAMES}
        except InventoryError as exc:
            if args.inventory or args.command == "sync" or not args.models_dir:
                print(exc.render(), file=sys.stderr)
                raise SystemExit(2) from None
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


def _local_host(inventory) -> str:
    local = [n for n, s in inventory.hosts.items() if s["connection"]["type"] == "local"]
    if local:
        return local[0]
    if len(inventory.hosts) == 1:
        return next(iter(inventory.hosts))
    raise SystemExit("genai-models: the inventory has several hosts and none is local; "
                     "pick one with --host")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    context = _Context(args)
    if not context.models_dir:
        print("genai-models: no models_dir: give --models-dir", file=sys.stderr)
        return 2
    try:
        if args.command == "migrate":
            return _migrate(args, context)
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
                print("models: none listed")
                return 0
        result = downloader.sync(specs, context.models_dir, uid=context.uid, gid=context.gid,
                                 tokens=context.tokens, hf_endpoint=context.hf_endpoint,
                                 civitai_endpoint=context.civitai_endpoint, jobs=args.jobs)
    except InventoryError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except downloader.DownloadError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0 if result.ok else 1


def _migrate(args, context) -> int:
    if args.delete_source and not args.apply:
        print("genai-models: --delete-source needs --apply", file=sys.stderr)
        return 2
    the_plan = migrate.plan(args.source, context.models_dir)
    print(the_plan.render())
    if not args.apply:
        print("nothing copied: run again with --apply to copy (sources are kept unless "
              "--delete-source)")
        return 0 if the_plan.fits else 1
    summary = migrate.apply(the_plan, delete_source=args.delete_source, uid=context.uid,
                            gid=context.gid)
    return 0 if not summary["conflicts"] else 1


if __name__ == "__main__":
    sys.exit(main())
