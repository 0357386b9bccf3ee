"""genai-import: a draft inventory from a hand-kept compose setup, pinned custom nodes.

    genai-import compose docker-compose.yml [--env-file .env] [--output inventory/imported.yaml]
    genai-import custom-nodes --comfyui-dir ~/ComfyUI [--keep-local-folders]
    genai-import custom-nodes --snapshot snapshot.json

Nothing on the machine changes: it reads the old files and writes a draft inventory, the
secrets it found into a 0600 secrets file (values never printed), and a report of what it
carried over, changed on purpose, or could not carry, with the reason and what to do.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

from .. import exitcodes
from ..errors import InventoryError
from . import compose_file, custom_nodes, disk, draft, notes

EXIT_CODES = exitcodes.epilog("the draft is written but needs your attention before a "
                              "converge (listed)")


KEEP_LOCAL = ("carry node folders that are not git checkouts as `path:` entries (copied from "
              "this machine into the image at each build) instead of leaving them out")


def _parser() -> argparse.ArgumentParser:
    parser = exitcodes.Parser(prog="genai-import", description=__doc__.splitlines()[0],
                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=exitcodes.Parser)
    compose = sub.add_parser("compose", help="draft inventory from a docker-compose.yml",
                             epilog=EXIT_CODES,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    compose.add_argument("compose_file", type=Path)
    compose.add_argument("--env-file", type=Path,
                         help="its .env (default: .env next to the compose file, if any)")
    compose.add_argument("--output", type=Path,
                         help="draft inventory to write (default: inventory/imported.yaml)")
    compose.add_argument("--secrets-output", type=Path,
                         help="secrets file to add the secrets found to (default: secrets.env "
                              "next to the draft, where the loader looks)")
    compose.add_argument("--host", default="local", help="host name in the draft (default local)")
    compose.add_argument("--user", type=_user_option, metavar="NAME:UID:GID",
                         help="account that owns the workspace and runs the containers "
                              "(default: the one running genai-import, or sudo's caller)")
    compose.add_argument("--workspace", help="workspace on ext4 (default: ~NAME/genai)")
    compose.add_argument("--force", action="store_true",
                         help="replace an existing draft (the old one is kept as .bak-<time>)")
    compose.add_argument("--keep-local-folders", action="store_true", help=KEEP_LOCAL)
    nodes = sub.add_parser("custom-nodes", help="pinned custom_nodes entries",
                           epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = nodes.add_mutually_exclusive_group(required=True)
    source.add_argument("--comfyui-dir", type=Path, help="an existing ComfyUI folder")
    source.add_argument("--snapshot", type=Path, help="a ComfyUI-Manager snapshot (.json/.yaml)")
    nodes.add_argument("--format", choices=("yaml", "json"), default="yaml")
    nodes.add_argument("--keep-local-folders", action="store_true", help=KEEP_LOCAL)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "custom-nodes":
            return _custom_nodes(args)
        return _compose(args)
    except disk.SourceError as exc:
        print(f"genai-import: {exc}", file=sys.stderr)
        return exitcodes.ERROR


def _custom_nodes(args) -> int:
    if args.comfyui_dir:
        entries, found = custom_nodes.from_install(args.comfyui_dir.expanduser(),
                                                   args.keep_local_folders)
    else:
        entries, found = custom_nodes.from_snapshot(args.snapshot.expanduser())
    if args.format == "json":
        print(json.dumps({"custom_nodes": entries,
                          "notes": [note.__dict__ for note in found]}, indent=2))
    else:
        print(yaml.safe_dump({"custom_nodes": entries}, sort_keys=False), end="")
        print(notes.report(found), file=sys.stderr)
    return exitcodes.OK


def _compose(args) -> int:
    compose_path = args.compose_file.expanduser()
    document = disk.read_yaml(compose_path)
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise disk.SourceError(f"{compose_path}: no `services:` mapping; is it a "
                                       "docker-compose file?")
    env_path = args.env_file or compose_path.parent / ".env"
    dotenv = disk.read_env(env_path) if env_path.is_file() else {}
    if args.env_file and not args.env_file.is_file():
        raise disk.SourceError(f"{args.env_file}: no such file")
    interpolation = {**dotenv, **os.environ}
    services = compose_file.services(document, interpolation)
    result = draft.draft_from_services(services, dotenv, host=args.host,
                                       base_settings=_base_settings(args))
    _custom_nodes_of_mounts(result, services, args.keep_local_folders)
    output = args.output or _default_output()
    secrets_file = args.secrets_output or output.parent / "secrets.env"
    header = _header(compose_path, result)
    disk.write_draft(output, {"hosts": {args.host: result.settings}}, header, force=args.force)
    written = disk.add_secrets(secrets_file, result.secrets)
    print(notes.report(result.notes))
    print(f"\nwrote {output}" + (f"; secrets {', '.join(written)} added to {secrets_file} "
                                 "(chmod 600)" if written else ""))
    return _validate(output, secrets_file)


def _base_settings(args) -> dict:
    """The host around the stacks: this machine's user owns the workspace, Docker CE."""
    base: dict = {"connection": {"type": "local"} if args.host == "local" else {"type": "ssh"}}
    user = args.user or _invoking_user()
    if user:
        base["user"] = user
    if args.workspace:
        base["workspace"] = args.workspace
    elif user and _home(user["name"]):
        base["workspace"] = f"{_home(user['name'])}/genai"
    base["docker"] = {"source": "docker-ce"}
    return base


def _user_option(text: str) -> dict:
    parts = text.split(":")
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        raise argparse.ArgumentTypeError("NAME:UID:GID, e.g. jesse:1000:1000")
    return {"name": parts[0], "uid": int(parts[1]), "gid": int(parts[2])}


def _home(name: str) -> str | None:
    try:
        return pwd.getpwnam(name).pw_dir
    except KeyError:
        return None


def _invoking_user() -> dict | None:
    name = os.environ.get("SUDO_USER") if os.geteuid() == 0 else None
    try:
        entry = pwd.getpwnam(name) if name else pwd.getpwuid(os.geteuid())
    except KeyError:
        return None
    if entry.pw_uid == 0:
        return None
    return {"name": entry.pw_name, "uid": entry.pw_uid, "gid": entry.pw_gid}


def _custom_nodes_of_mounts(result: draft.Draft, services, local_folders: bool) -> None:
    """Pin the custom nodes of a mounted ComfyUI folder when it is readable from here."""
    comfyui = (result.settings.get("stacks") or {}).get("comfyui")
    if comfyui is None:
        return
    for service in services:
        if draft.service_kind(service) != "comfyui":
            continue
        for mount in service.mounts:
            folder = Path(draft.linux_path(mount.source)).expanduser()
            if mount.bind and ((folder / "custom_nodes").is_dir() or folder.name == "custom_nodes"):
                entries, found = custom_nodes.from_install(folder, local_folders)
                result.notes.extend(found)
                if entries:
                    comfyui.setdefault("custom_nodes", []).extend(entries)
        return


def _default_output() -> Path:
    return Path("inventory/imported.yaml") if Path("inventory").is_dir() else Path("imported.yaml")


def _header(compose_path: Path, result: draft.Draft) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Draft inventory written by `genai-import compose {compose_path}` ({stamp}).",
             "Review it, then: GENAI_INVENTORY=<this file> pyinfra inventory.py deploys/site.py"
             " --dry", "", *notes.report(result.notes).splitlines()]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def _validate(output: Path, secrets_file: Path) -> int:
    from ..loader import load_inventory

    environ = {**os.environ, "GENAI_SECRETS": str(secrets_file)}
    try:
        load_inventory(output, environ=environ)
    except InventoryError as exc:
        print("\nthe draft needs attention before a converge:\n" + exc.render(), file=sys.stderr)
        return exitcodes.FOUND
    print(f"the inventory loader accepts it: GENAI_INVENTORY={output} pyinfra inventory.py "
          "deploys/site.py --dry")
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
