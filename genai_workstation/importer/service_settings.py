"""A compose service's own settings (environment, name, labels, restart, health timing, shm)."""

from __future__ import annotations

import re

from ..credentials import is_credential_name, looks_secret
from .compose_file import Service
from .notes import CARRIED, CHANGED, NOT_CARRIED, Note

_RESTART = ("no", "always", "on-failure", "unless-stopped")
_CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")
# Variables genai-workstation sets itself, or that the importer reads into other settings.
MANAGED_ENVIRONMENT = {"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
                       "COMFYUI_LOGIN_ENABLED", "PYTHONUNBUFFERED", "HOME", "HF_HOME",
                       "TORCH_HOME", "NVIDIA_DRIVER_CAPABILITIES"}


def service_settings(service: Service, consumed: set[str]) -> tuple[dict, list[Note]]:
    """The `service:` mapping of an app in the draft, and notes on what was left out."""
    settings: dict = {}
    notes: list[Note] = []

    def note(item: str, kind: str, reason: str, fix: str = "") -> None:
        notes.append(Note(service.name, item, kind, reason, fix))

    environment = {}
    for name, value in sorted(service.environment.items()):
        if name in consumed or name in MANAGED_ENVIRONMENT:
            continue
        if is_credential_name(name) or looks_secret(value):
            note(f"environment {name}", NOT_CARRIED,
                 "a secret: the app's environment holds only non-secret values",
                 "keep it in the secrets file; the stacks give the app no secret variables")
        else:
            environment[name] = value
    if environment:
        settings["environment"] = environment
        note("environment " + ", ".join(environment), CARRIED, "as service.environment")
    extra = service.extra
    name = extra.get("container_name")
    if name and _CONTAINER_NAME.match(str(name)):
        settings["container_name"] = str(name)
        note("container_name", CARRIED, f"scripts that call `docker logs {name}` keep working")
    elif name:
        note("container_name", NOT_CARRIED, f"{name!r} is not a valid container name")
    restart = str(extra.get("restart", "")).strip()
    if restart in _RESTART:
        settings["restart"] = restart
    elif restart:
        note("restart", NOT_CARRIED, f"{restart!r} is not a restart policy Compose knows")
    labels = _labels(extra.get("labels"))
    if labels:
        settings["labels"] = {k: v for k, v in labels.items() if not k.startswith("genai.")}
    _healthcheck(extra.get("healthcheck"), settings, note)
    if extra.get("shm_size"):
        settings["shm_size"] = str(extra["shm_size"]).lower().rstrip("b") or "0"
    if extra.get("networks"):
        note("networks", NOT_CARRIED, "each stack has its own network",
             "`network: <name>` on the stack names it, for containers that join it")
    return settings, notes


def _labels(value) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    pairs = (str(item).partition("=") for item in value or [])
    return {key: item for key, _, item in pairs}


def _healthcheck(value, settings: dict, note) -> None:
    if not isinstance(value, dict):
        return
    timing = {key: str(value[key]) for key in ("interval", "timeout", "start_period")
              if key in value and _DURATION.match(str(value[key]))}
    if str(value.get("retries", "")).isdigit():
        timing["retries"] = int(value["retries"])
    if timing:
        settings["healthcheck"] = timing
    if "test" in value:
        note("healthcheck test", CHANGED,
             "the stacks have a built-in check (ComfyUI /system_stats, Forge /internal/ping) that "
             "the deploy waits for; its timing is carried")
