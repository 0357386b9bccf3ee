"""Read a hand-kept docker-compose.yml and its .env into typed services (no inventory logic)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

# Variables compose interpolates: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, $NAME.
_VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|"
                       r"([A-Za-z_][A-Za-z0-9_]*))")
# Environment variables images read their app's command line from (AbdBarho, ai-dock, A1111).
ARGS_VARIABLES = ("CLI_ARGS", "COMMANDLINE_ARGS", "FORGE_ARGS", "WEBUI_FLAGS", "COMFYUI_ARGS",
                  "COMFYUI_FLAGS")


@dataclass(frozen=True)
class Port:
    host_ip: str  # "" when the short syntax named none: every interface
    host_port: int | None
    container_port: int


@dataclass(frozen=True)
class Mount:
    source: str  # host path or volume name
    target: str
    bind: bool


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    build: bool
    argv: tuple[str, ...]  # command and app arguments, shell scripts split into words
    command_text: str  # the command as written, for spotting pip/venv at start
    environment: dict[str, str]
    ports: tuple[Port, ...]
    mounts: tuple[Mount, ...]
    device_ids: tuple[str, ...]
    extra: dict = field(default_factory=dict)  # keys read as they are (container_name, ...)


def interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation of one value (strings at any depth)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, default = match.group(2), match.group(3) or ""
        current = env.get(name)
        if operator in (":-",):
            return current if current else default
        if operator == "-":
            return default if current is None else current
        if operator in (":+", "+"):
            return default if current else ""
        return current or ""

    return _VARIABLE.sub(replace, value)


def services(document: dict, env: dict[str, str]) -> list[Service]:
    """The compose file's services, interpolated, in file order."""
    result = []
    for name, raw in (document.get("services") or {}).items():
        spec = interpolate(raw or {}, env)
        environment = _environment(spec.get("environment"))
        command_text = _text(spec.get("entrypoint")) + " " + _text(spec.get("command"))
        argv = _words(spec.get("entrypoint")) + _words(spec.get("command"))
        for variable in ARGS_VARIABLES:
            if environment.get(variable):
                argv += _split(environment[variable])
        result.append(Service(
            name=name,
            image=str(spec.get("image") or ""),
            build="build" in spec,
            argv=tuple(argv),
            command_text=command_text.strip(),
            environment=environment,
            ports=tuple(port for item in spec.get("ports") or [] for port in _ports(item)),
            mounts=tuple(_mount(item) for item in spec.get("volumes") or []),
            device_ids=_device_ids(spec),
            extra={key: spec[key] for key in spec if key not in _READ_KEYS},
        ))
    return result


_READ_KEYS = {"image", "build", "command", "entrypoint", "environment", "ports", "volumes",
              "deploy"}


def _environment(value) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    pairs = {}
    for item in value or []:
        key, _, item_value = str(item).partition("=")
        pairs[key] = item_value
    return pairs


def _text(value) -> str:
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return "" if value is None else str(value)


def _words(value) -> list[str]:
    words = [str(item) for item in value] if isinstance(value, list) else _split(_text(value))
    result = []
    for index, word in enumerate(words):
        # `bash -c "cd x && python main.py --port 8188"`: the script's own words count too.
        is_script = index > 0 and words[index - 1] in ("-c", "-lc", "-ec")
        result.extend(_split(word) if is_script else [word])
    return result


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _ports(item) -> list[Port]:
    if isinstance(item, dict):
        published = item.get("published")
        return [Port(str(item.get("host_ip") or ""), int(published) if published else None,
                     int(item["target"]))]
    text = str(item).split("/", 1)[0]
    match = re.match(r"^(?:(\[[^\]]+\]|[^:]+):)?(?:([\d-]+):)?([\d-]+)$", text)
    if not match:
        return []
    host_ip, host, container = match.groups()
    if host_ip and not host and host_ip.isdigit():
        host_ip, host = "", host_ip
    host_ip = (host_ip or "").strip("[]")
    first_container = int(container.split("-")[0])
    first_host = int(host.split("-")[0]) if host else None
    return [Port(host_ip, first_host, first_container)]


def _mount(item) -> Mount:
    if isinstance(item, dict):
        source = str(item.get("source") or "")
        return Mount(source, str(item.get("target") or ""), item.get("type") == "bind")
    text = str(item)
    drive = re.match(r"^([A-Za-z]:[\\/][^:]*):(.*)$", text)  # C:\models:/data:ro
    if drive:
        source, rest = drive.groups()
    else:
        source, _, rest = text.partition(":")
        if not rest:
            return Mount("", source, False)
    target = rest.split(":", 1)[0]
    bind = source.startswith(("/", ".", "~", "\\", "$")) or bool(drive)
    return Mount(source, target, bind)


def _device_ids(spec: dict) -> tuple[str, ...]:
    devices = (((spec.get("deploy") or {}).get("resources") or {}).get("reservations")
               or {}).get("devices") or []
    return tuple(str(i) for device in devices for i in device.get("device_ids") or [])
