"""Idle unload sidecar for ComfyUI (genai-workstation).

Polls ComfyUI's queue and history; after IDLE_MINUTES without activity it asks ComfyUI to
unload its models and free memory (POST /free), once, until the next activity. Standard library
only, so it runs with the ComfyUI image's own Python. Settings come from the environment:
COMFYUI_URL (http://comfyui:8188), IDLE_MINUTES (required, > 0), POLL_SECONDS (30).
With ComfyUI-Login its token (the first line of its PASSWORD file, mounted read-only at
TOKEN_FILE) goes with each call as `Authorization: Bearer`; before a password is set the node's
token is empty and `?token=` passes (genai_workstation/comfyui_login.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

TOKEN_FILE = "/opt/comfyui/login/PASSWORD"


def _request(url: str, **kwargs) -> urllib.request.Request:
    """`url` with ComfyUI-Login's token, read at each call (a password may be set later)."""
    try:
        with open(TOKEN_FILE, encoding="utf-8") as file:
            token = file.readline().strip()
    except FileNotFoundError:
        token = ""
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    else:
        url += ("&" if "?" in url else "?") + "token="
    return urllib.request.Request(url, headers=headers, **kwargs)


def _get(base: str, path: str):
    with urllib.request.urlopen(_request(base + path), timeout=10) as response:
        return json.load(response)


def _post(base: str, path: str, payload: dict) -> int:
    request = _request(base + path, data=json.dumps(payload).encode(), method="POST",
                       headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def activity_marker(base: str) -> tuple:
    """Something that changes whenever ComfyUI works: queue contents and the newest history id."""
    queue = _get(base, "/queue")
    running = len(queue.get("queue_running") or [])
    pending = len(queue.get("queue_pending") or [])
    history = _get(base, "/history?max_items=1")
    newest = next(iter(history), None) if isinstance(history, dict) else None
    return running, pending, newest


def log(message: str) -> None:
    print(f"idle-unload: {message}", flush=True)


def main() -> int:
    base = os.environ.get("COMFYUI_URL", "http://comfyui:8188").rstrip("/")
    idle_seconds = float(os.environ["IDLE_MINUTES"]) * 60
    poll = float(os.environ.get("POLL_SECONDS", "30"))
    if idle_seconds <= 0:
        log("IDLE_MINUTES must be > 0")
        return 2
    log(f"unloading models after {idle_seconds / 60:g} idle minutes ({base})")
    last_marker, last_activity, unloaded = None, time.monotonic(), False
    while True:
        try:
            marker = activity_marker(base)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log(f"ComfyUI not reachable ({exc}); retrying")
            time.sleep(poll)
            continue
        now = time.monotonic()
        busy = marker[0] or marker[1]
        if busy or marker != last_marker:
            last_marker, last_activity, unloaded = marker, now, False
        elif not unloaded and now - last_activity >= idle_seconds:
            try:
                status = _post(base, "/free", {"unload_models": True, "free_memory": True})
                log(f"idle for {(now - last_activity) / 60:.0f} min: POST /free -> {status}")
                unloaded = True
            except (urllib.error.URLError, OSError) as exc:
                log(f"POST /free failed ({exc}); retrying")
        time.sleep(poll)


if __name__ == "__main__":
    sys.exit(main())
