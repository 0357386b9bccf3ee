"""Names a deployed stack shares between the code that writes it and the facts that read it.

A leaf module (standard library and the leaf comfyui_login only): `facts/` may import it, and so
may `stacks/`, so facts depend on nothing above them. Here: the label prefix and the labels a
run reads back, the files under a stack's ``.genai/`` and ``.history/``, snapshot names, and
the command that asks a running app which GPU it sees.
"""

from __future__ import annotations

import re
import shlex

from .comfyui_login import authed_request_code

LABEL = "genai"  # prefix of every label the project sets on images and containers
BUILD_HASH_LABEL = f"{LABEL}.build-hash"
CONFIG_HASH_LABEL = f"{LABEL}.config-hash"

GENAI_DIR = ".genai"
DEPLOYED_HASH_FILE = f"{GENAI_DIR}/config.sha256"
# Written only after a run verified the config (health + the stack's checks). It travels with
# the config into .history/, so a snapshot is good when its mark equals its own hash.
VERIFIED_FILE = f"{GENAI_DIR}/verified"
MANIFEST_FILE = f"{GENAI_DIR}/manifest"
TEMP_DIR = f"{GENAI_DIR}/tmp"
HISTORY_DIR = ".history"

DEVICE_MARK = "@@genai:device "  # the line a device probe prints before the GPU's name

_SNAPSHOT = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{6,64}|none)(-rollback)?$")


def q(value) -> str:
    return shlex.quote(str(value))


def snapshot_name(timestamp: str, config_hash: str | None, rollback: bool = False) -> str:
    """``20261123T094200Z-ab12cd34ef56`` (``-rollback`` when taken by deploys/rollback.py)."""
    short = (config_hash or "none")[:12]
    return f"{timestamp}-{short}{'-rollback' if rollback else ''}"


def parse_snapshot_name(name: str) -> dict | None:
    match = _SNAPSHOT.match(name)
    if not match:
        return None
    return {"name": name, "timestamp": match.group(1), "hash": match.group(2),
            "origin": "rollback" if match.group(3) else "deploy"}


def hash_matches(short_or_full: str | None, full: str | None) -> bool:
    return bool(short_or_full and full and (full.startswith(short_or_full)
                                            or short_or_full.startswith(full)))


def device_probe_command(service: str, probe: str, url: str | None = None) -> str:
    """Print ``@@genai:device <name>`` for the GPU the app in ``service`` reports.

    ``comfyui``: GET ``url`` (the app's /system_stats) from inside its container (python3 is in
    every app image), take ``devices[0].name``. ``forge``: Forge logs ``Device: cuda:0 <name>``
    at start; its API has no device name (/sdapi/v1/memory has sizes only). The render names
    the probe of each app (``stacks.rendered.GpuCheck``).
    """
    svc = q(service)
    if probe == "comfyui" and url:
        code = (authed_request_code(url) + "import json;"
                "d=json.load(u.urlopen(r,timeout=20))['devices'];"
                f"print({DEVICE_MARK!r}+(d[0]['name'] if d else ''))")
        runner = 'p=$(command -v python3 || command -v python); exec "$p" -c "$1"'
        return f"docker compose exec -T {svc} sh -c {q(runner)} sh {q(code)} 2>&1"
    if probe == "forge":
        return (f"docker compose logs --no-color --no-log-prefix {svc} 2>&1 "
                f"| sed -n 's/^.*Device: \\(.*\\)$/{DEVICE_MARK}\\1/p' | tail -n 1")
    raise ValueError(f"unknown device probe {probe!r}")
