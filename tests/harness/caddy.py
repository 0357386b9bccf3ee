"""The proxy STAND-IN image: this machine's Debian `caddy` on the test engine's base image (no
registry here for the product's default caddy:2). Debian's caddy is 2.6: no `basic_auth`
directive (Caddy >= 2.8 spells it so; 2.6 has `basicauth`), so tests through it use bearer
auth."""

from __future__ import annotations

import shutil
from pathlib import Path


def caddy_image(engine, context: Path, tag: str) -> str:
    """Build the stand-in as `tag` from `context` (an empty folder); RuntimeError without
    caddy."""
    caddy = shutil.which("caddy")
    if not caddy:
        raise RuntimeError("caddy not installed (tests/setup.sh installs it)")
    shutil.copy2(caddy, context / "caddy")
    (context / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\nCOPY caddy /usr/bin/caddy\n"
        'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]\n')
    engine.build(context, tag, build_args={"BASE": engine.base_image})
    return tag
