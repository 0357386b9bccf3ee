"""Turn the services of a hand-kept compose file into a draft host of the inventory."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import windows_path_reason
from ..credentials import is_credential_name
from . import app_args
from .compose_file import ARGS_VARIABLES, Port, Service
from .notes import CARRIED, CHANGED, NOT_CARRIED, Note
from .service_settings import service_settings

_COMFYUI_ENTRY = re.compile(r"(^|/)main\.py$")
_FORGE_ENTRY = re.compile(r"(^|/)(launch|webui)\.(py|sh)$")
_EVERY_INTERFACE = ("", "0.0.0.0", "::")
_IDLE_MINUTES = ("IDLE_MINUTES", "IDLE_TIMEOUT_MINUTES", "UNLOAD_AFTER_MINUTES", "IDLE_TIMEOUT")
_IDLE_SECONDS = ("IDLE_SECONDS", "IDLE_TIMEOUT_SECONDS", "UNLOAD_AFTER_SECONDS")
_LOGIN_TOKEN_NAMES = ("COMFYUI_AUTH", "COMFYUI_TOKEN", "COMFYUI_LOGIN_TOKEN",
                      "COMFYUI_BEARER_TOKEN", "COMFY_TOKEN")
# Compose's name for the idle-unload service of the comfyui stack (project genai-comfyui).
IDLE_CONTAINER = "genai-comfyui-idle-unload-1"


@dataclass
class Draft:
    """A draft host: its settings (inventory YAML), the secrets found, and the report."""

    host: str
    settings: dict
    secrets: dict[str, str] = field(default_factory=dict)  # never printed
    notes: list[Note] = field(default_factory=list)

    def note(self, service: str, item: str, kind: str, reason: str, fix: str = "") -> None:
        self.notes.append(Note(service, item, kind, reason, fix))


def service_kind(service: Service) -> str:
    """comfyui, forge, idle (the unload sidecar) or other."""
    text = " ".join((service.name, service.image, service.command_text,
                     *(service.environment.get(v, "") for v in ARGS_VARIABLES))).lower()
    if "/free" in text or "idle" in service.name.lower():
        return "idle"
    if "forge" in text or "webui" in text or any(_FORGE_ENTRY.search(w) for w in service.argv):
        return "forge"
    if "comfy" in text or any(_COMFYUI_ENTRY.search(w) for w in service.argv):
        return "comfyui"
    return "other"


def draft_from_services(services: list[Service], env: dict[str, str], host: str = "local",
                        base_settings: dict | None = None) -> Draft:
    draft = Draft(host, dict(base_settings or {}))
    _secrets_from_env(draft, env)
    by_kind: dict[str, list[Service]] = {}
    for service in services:
        by_kind.setdefault(service_kind(service), []).append(service)
    stacks: dict = {}
    comfyui = by_kind.get("comfyui", [])
    if comfyui:
        stacks["comfyui"] = _comfyui(draft, comfyui[0], by_kind.get("idle", []))
        for extra in comfyui[1:]:
            draft.note(extra.name, "service", NOT_CARRIED,
                       "one ComfyUI per workstation: only the first ComfyUI service is carried",
                       "run another workstation host, or merge its settings into the first")
    elif by_kind.get("idle"):
        for idle in by_kind["idle"]:
            draft.note(idle.name, "service", NOT_CARRIED, "an idle sidecar without ComfyUI")
    if by_kind.get("forge"):
        instances = [_forge_instance(draft, service, index)
                     for index, service in enumerate(by_kind["forge"])]
        stacks["forge"] = {"instances": instances}
        _image(draft, by_kind["forge"][0], stacks["forge"], "forge")
    for other in by_kind.get("other", []):
        draft.note(other.name, "service", NOT_CARRIED,
                   "not a ComfyUI or Forge service",
                   "declare it as a custom stack: stacks.custom.<name>.template_dir, a folder "
                   "holding its compose.yaml (docs/stacks.md, custom stacks)")
    if stacks:
        draft.settings["stacks"] = stacks
    draft.note("", "docker", CHANGED,
               "the draft installs Docker Engine from Docker's repository (docker.source: "
               "docker-ce) with the NVIDIA container toolkit",
               "with Docker Desktop's WSL integration, set docker.source: desktop (verify only)")
    gpus = sorted({_gpu_text(s) for s in by_kind.get("comfyui", []) + by_kind.get("forge", [])}
                  - {None})
    if gpus:
        draft.note("", "gpu", CHANGED,
                   "services picked GPUs by index; nvidia-smi and CUDA can number the same card "
                   "differently (CUDA puts the fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID)",
                   "replace each `gpu: <index>` with the card's name as `nvidia-smi -L` prints "
                   "it (e.g. \"RTX 3090\"); genai-workstation pins by PCI bus order and checks "
                   "the card from inside the app")
    return draft


def _secrets_from_env(draft: Draft, env: dict[str, str]) -> None:
    names = [name for name, value in env.items() if value and is_credential_name(name)]
    for name in names:
        draft.secrets[name] = env[name]
    if names:
        draft.note("", ".env " + ", ".join(names), CHANGED,
                   "secrets in a .env file next to the compose file",
                   "they go in the secrets file (chmod 600, never in the YAML); delete them "
                   "from the old .env once the new setup works, and rotate them if that "
                   "folder was ever shared or committed")


def _comfyui(draft: Draft, service: Service, idle: list[Service]) -> dict:
    spec: dict = {}
    flags = app_args.app_flags(service.argv, _COMFYUI_ENTRY)
    internal = int(app_args.flag_value(flags, "--port") or 8188)
    _ports_and_exposure(draft, service, spec, internal, auth=_comfyui_login(draft, service))
    _gpu(draft, service, spec, app_args.flag_value(flags, "--cuda-device"))
    _image(draft, service, spec, "comfyui")
    spec_args = _extra_args(draft, service, flags, "comfyui")
    if spec_args:
        spec["extra_args"] = spec_args
    for sidecar in idle[:1]:
        minutes = _idle_minutes(sidecar.environment)
        spec["idle_unload_minutes"] = minutes or 30
        draft.note(sidecar.name, "idle sidecar", CARRIED if minutes else CHANGED,
                   f"models are unloaded after {spec['idle_unload_minutes']} idle minutes "
                   "(POST /free) by the stack's own sidecar"
                   + ("" if minutes else "; its delay could not be read, 30 is a guess"),
                   "" if minutes else "set stacks.comfyui.idle_unload_minutes")
        _sidecar_name(draft, sidecar)
    for sidecar in idle[1:]:
        draft.note(sidecar.name, "service", NOT_CARRIED, "a second idle sidecar")
    _common(draft, service, spec)
    return spec


def _sidecar_name(draft: Draft, sidecar: Service) -> None:
    """The stack's own sidecar has Compose's name: a script's `docker logs <old name>` must
    change, and the report says to what."""
    name = sidecar.extra.get("container_name")
    if name:
        draft.note(sidecar.name, f"container_name {name}", CHANGED,
                   f"the stack's own sidecar is named {IDLE_CONTAINER} by Compose",
                   f"scripts that call `docker logs {name}` call `docker logs {IDLE_CONTAINER}`")


def _comfyui_login(draft: Draft, service: Service) -> dict | None:
    """ComfyUI-Login becomes `auth: login`: a login page for browsers, the same bearer token
    for notebooks. Its login/PASSWORD line (a bcrypt hash, which is also its API token) is
    carried as the password secret when the mounted ComfyUI folder is readable here."""
    enabled = service.environment.get("COMFYUI_LOGIN_ENABLED", "").lower() in ("1", "true", "yes")
    mounted = any("comfyui-login" in m.target.lower() or "comfyui-login" in m.source.lower()
                  for m in service.mounts)
    if not (enabled or mounted):
        return None
    auth: dict = {"type": "login", "username": "admin", "secret": "COMFYUI_AUTH"}
    password_line = _login_password_line(service)
    token_name = next((n for n in _LOGIN_TOKEN_NAMES if draft.secrets.get(n)), None)
    if password_line:
        draft.secrets["COMFYUI_AUTH"] = password_line
        how = ("its login/PASSWORD hash becomes COMFYUI_AUTH: browsers sign in with the same "
               "password, API clients keep sending `Authorization: Bearer <that hash>`")
    elif token_name:
        auth["token_secret"] = token_name
        how = (f"API clients keep sending the bearer token {token_name}; put the browser "
               "password in the secrets file as COMFYUI_AUTH")
    else:
        how = ("put the browser password (or ComfyUI-Login's login/PASSWORD line) in the "
               "secrets file as COMFYUI_AUTH")
    draft.note(service.name, "login (ComfyUI-Login)", CHANGED,
               "replaced by the stack's login gate (login page and cookie for browsers, bearer "
               "or basic for API clients, on the same port)", how)
    return auth


def _login_password_line(service: Service) -> str | None:
    for mount in service.mounts:
        if not mount.bind:
            continue
        folder = Path(linux_path(mount.source)).expanduser()
        for candidate in (folder / "login" / "PASSWORD", folder / "PASSWORD"):
            try:
                line = candidate.read_text(encoding="utf-8").splitlines()[0].strip()
            except (OSError, UnicodeDecodeError, IndexError):
                continue
            if line.startswith("$2"):
                return line
    return None


def _ports_and_exposure(draft: Draft, service: Service, spec: dict, internal: int,
                        auth: dict | None) -> None:
    port = _published(service.ports, internal)
    if port is None or port.host_port is None:
        draft.note(service.name, "ports", CHANGED, "no published port found",
                   "the draft uses the default port; change it if your clients use another")
        return
    everywhere = port.host_ip in _EVERY_INTERFACE
    if auth and everywhere or auth and port.host_ip not in ("127.0.0.1", "::1", "localhost"):
        spec["port"] = port.host_port + 10000 if port.host_port < 55536 else port.host_port - 1
        spec["expose"] = {"address": port.host_ip or "0.0.0.0", "port": port.host_port}
        spec["auth"] = auth
        draft.note(service.name, f"port {port.host_port}", CARRIED,
                   f"clients keep using port {port.host_port}, now behind the authenticating "
                   f"proxy; the app itself listens on 127.0.0.1:{spec['port']}")
        return
    spec["port"] = port.host_port
    if everywhere:
        draft.note(service.name, f"port {port.host_port}", CHANGED,
                   f"it was published on every interface (0.0.0.0:{port.host_port}) with no "
                   "authentication: anyone on the network could run jobs; it is published on "
                   "127.0.0.1 only",
                   "to reach it from other machines, add `expose: {address: 0.0.0.0}` and "
                   "`auth: {type: basic}` (or bearer) and its secret")
    elif auth:
        spec["auth"] = auth
        draft.note(service.name, f"port {port.host_port}", CARRIED,
                   "on loopback, behind the authenticating proxy (a reverse proxy on this "
                   "machine that forwards to it still gets the authentication)")


def _published(ports: tuple[Port, ...], internal: int) -> Port | None:
    for port in ports:
        if port.container_port == internal:
            return port
    return ports[0] if ports else None


def _gpu(draft: Draft, service: Service, spec: dict, flag_value: str | None) -> None:
    gpu = _gpu_text(service, flag_value)
    if gpu is None:
        return
    spec["gpu"] = int(gpu) if gpu.isdigit() else gpu
    if service.device_ids:
        draft.note(service.name, "deploy.resources.reservations.devices.device_ids", CHANGED,
                   "device_ids does not isolate GPUs on WSL2 (every container sees every card, "
                   "NVIDIA/nvidia-container-toolkit#21): the card is pinned inside the app")


def _gpu_text(service: Service, flag_value: str | None = None) -> str | None:
    if flag_value is None:
        flags = app_args.app_flags(service.argv, re.compile(r"$^"))
        flag_value = app_args.flag_value(flags, "--cuda-device", "--gpu-device-id",
                                         "--device-id")
    candidates = (flag_value, service.environment.get("CUDA_VISIBLE_DEVICES"),
                  service.environment.get("NVIDIA_VISIBLE_DEVICES"),
                  *service.device_ids)
    for value in candidates:
        if value and value.lower() not in ("all", "none", "void"):
            return value.split(",")[0].strip()
    return None


def _image(draft: Draft, service: Service, spec: dict, kind: str) -> None:
    if service.image.startswith(("nvidia/cuda", "docker.io/nvidia/cuda")):
        spec["image"] = {"base_image": service.image}
        draft.note(service.name, f"image {service.image}", CARRIED,
                   f"kept as the base of the {kind} image, which is now built with the app "
                   "pinned to a ref and its Python packages baked in")
    elif service.image or service.build:
        draft.note(service.name, f"image {service.image or '(built)'}", CHANGED,
                   f"the {kind} image is built from files/{kind}/Dockerfile (app pinned to a "
                   "ref, venv baked in)",
                   "to keep running your own image: image: {build: false, name: <image>}")
    if re.search(r"pip3? install|python3? -m venv|virtualenv", service.command_text):
        draft.note(service.name, "command", CHANGED,
                   "it created a venv and pip-installed at every start; the image now has "
                   "everything installed at build time, so a container starts in seconds and "
                   "cannot drift")


def _extra_args(draft: Draft, service: Service, flags: list[app_args.Flag],
                kind: str) -> list[str]:
    kept, managed = [], []
    for flag in flags:
        if flag.name in app_args.MANAGED[kind]:
            managed.append(flag.name)
        elif flag.name in app_args.CREDENTIAL_FLAGS or flag.name == "--gradio-auth-path":
            continue  # handled with the instance's auth
        elif flag.name in app_args.TUNNEL_FLAGS:
            draft.note(service.name, f"command: {flag.name}", NOT_CARRIED,
                       "it opens a public tunnel to the app, around any authentication",
                       "use expose + auth on your own network instead")
        else:
            kept.extend(app_args.as_args(flag))
    if managed:
        draft.note(service.name, "command: " + " ".join(sorted(set(managed))), CHANGED,
                   "set by genai-workstation from the inventory (port, listening address, GPU, "
                   "folders)")
    if kept:
        draft.note(service.name, "command: " + " ".join(kept), CARRIED, "as extra_args")
    return kept


def _forge_instance(draft: Draft, service: Service, index: int) -> dict:
    name = re.sub(r"[^a-z0-9-]+", "-", service.name.lower()).strip("-") or f"forge-{index}"
    if not name[0].isalpha():
        name = f"forge-{name}"
    flags = app_args.app_flags(service.argv, _FORGE_ENTRY)
    spec: dict = {"name": name}
    internal = int(app_args.flag_value(flags, "--port") or 7860)
    auth = _forge_auth(draft, service, flags, index, name)
    _ports_and_exposure(draft, service, spec, internal, auth)
    spec.setdefault("port", 7860 + index)
    _gpu(draft, service, spec, app_args.flag_value(flags, "--gpu-device-id", "--device-id"))
    extra = _extra_args(draft, service, flags, "forge")
    if extra:
        spec["extra_args"] = extra
    _common(draft, service, spec)
    return spec


def _forge_auth(draft: Draft, service: Service, flags, index: int,
                instance: str) -> dict | None:
    credentials = app_args.flag_value(flags, "--gradio-auth", "--api-auth")
    if app_args.flag_value(flags, "--gradio-auth-path"):
        draft.note(service.name, "command: --gradio-auth-path", NOT_CARRIED,
                   "credentials in a file the draft cannot read",
                   "put the user name in auth.username and the password in the secrets file")
    if not credentials:
        return None
    username, _, password = credentials.split(",")[0].partition(":")
    secret = next((name for name, value in draft.secrets.items() if value == password), None)
    if secret is None:
        secret = "FORGE_AUTH" if index == 0 else f"FORGE_{_upper(instance)}_AUTH"
        draft.secrets[secret] = password
    draft.note(service.name, "command: --gradio-auth/--api-auth", CHANGED,
               "the password was on the command line (shown by `docker inspect`, `ps` and "
               "Forge's own /sdapi/v1/cmd-flags): it moves to the secrets file as " + secret
               + " and the authenticating proxy asks for it, for the UI and the API alike")
    return {"type": "basic", "username": username or "admin", "secret": secret}


def _upper(instance: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", instance.upper().removeprefix("FORGE-")).strip("_")


def _idle_minutes(environment: dict[str, str]) -> int | None:
    for name in _IDLE_MINUTES:
        if environment.get(name, "").isdigit():
            return int(environment[name])
    for name in _IDLE_SECONDS:
        if environment.get(name, "").isdigit():
            return max(1, int(environment[name]) // 60)
    return None


def _common(draft: Draft, service: Service, spec: dict) -> None:
    for mount in service.mounts:
        _mount_note(draft, service, mount)
    consumed = {*ARGS_VARIABLES, *_IDLE_MINUTES, *_IDLE_SECONDS}
    settings, found = service_settings(service, consumed)
    draft.notes.extend(found)
    if settings:
        spec["service"] = settings


def _mount_note(draft: Draft, service: Service, mount) -> None:
    if not mount.bind:
        draft.note(service.name, f"volume {mount.source or mount.target}", NOT_CARRIED,
                   "named volumes are replaced by the workspace folders on ext4")
        return
    windows = windows_path_reason(mount.source)
    target = mount.target.lower()
    if "model" in target or "model" in mount.source.lower():
        fix = ("copy the models into the workspace with `genai-models migrate "
               f"{linux_path(mount.source)}` (plan), then `--apply`")
    elif "custom_nodes" in target or target.rstrip("/").endswith("comfyui"):
        fix = ("pin its custom nodes with `genai-import custom-nodes --comfyui-dir "
               f"{linux_path(mount.source)}`")
    else:
        fix = "its files belong in the workspace (workspace: on ext4)"
    reason = (f"{windows}: slow, and chmod/chown fail there ('Operation not permitted')"
              if windows else "the workspace layout replaces hand-made bind mounts")
    draft.note(service.name, f"volume {mount.source}:{mount.target}", NOT_CARRIED, reason, fix)


def linux_path(path: str) -> str:
    """Where a Windows or \\\\wsl.localhost path is seen from inside WSL."""
    unc = re.match(r"^[\\/]{2}wsl(?:\.localhost|\$)[\\/][^\\/]+(.*)$", path, re.I)
    if unc:
        return unc.group(1).replace("\\", "/") or "/"
    drive = re.match(r"^([A-Za-z]):[\\/]?(.*)$", path)
    if drive:
        return f"/mnt/{drive.group(1).lower()}/" + drive.group(2).replace("\\", "/")
    return path
