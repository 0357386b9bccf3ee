"""The typed model of one host: what the loader resolved, as frozen dataclasses.

`host_model(settings)` reads a host's settings as the loader resolved them (schema defaults
filled in once, by the loader) and gives one `HostModel`: the user, the workspace layout, Docker,
the GPU settings, the models, and ONE list of stacks, each with its apps. Every consumer (the
loader's checks, the secrets, verify, the deploy steps, the stack render) iterates that list;
none walks the inventory's dict shape (ComfyUI one app, Forge a list of instances, custom
stacks) itself.

The path of a port, YAML to health check: `stacks.forge.instances.0.port` becomes
`App.port` (the host port, `App.published` with `expose`); the render publishes
`127.0.0.1:<App.port>:<App.kind.internal_port>` in compose.yaml and carries a
`stacks.rendered.HealthCheck` on `<App.kind.internal_port><App.kind.health_path>` inside the
container, which the converge and verify steps use as is (docs/model.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .layout import Layout

BUILTIN_STACKS = ("comfyui", "forge")


@dataclass(frozen=True)
class AppKind:
    """What genai-workstation knows of a built-in app, whatever the inventory says."""

    name: str  # "comfyui" or "forge"
    internal_port: int  # where the app listens inside its container
    health_path: str  # answers 200 once the app is up
    # How the app names the card it runs on: "comfyui" asks GET `device_path` (its
    # /system_stats lists devices); "forge" reads its `Device: ...` start-up log line (its API
    # has sizes only).
    device_probe: str
    device_path: str | None
    writable: tuple[str, ...]  # folders inside the container the app must be able to write
    default_secret: str  # the secret holding the proxy password when auth names none


COMFYUI = AppKind("comfyui", 8188, "/system_stats", "comfyui", "/system_stats",
                  ("/data/output",), "COMFYUI_AUTH")
FORGE = AppKind("forge", 7860, "/internal/ping", "forge", None,
                ("/data/forge/outputs",), "FORGE_AUTH")
APP_KINDS = {kind.name: kind for kind in (COMFYUI, FORGE)}


@dataclass(frozen=True)
class Exposure:
    """`expose`: the authenticating proxy publishes the app on `address:port`."""

    address: str
    port: int


@dataclass(frozen=True)
class App:
    """One app of a built-in stack: ComfyUI, or one Forge instance."""

    key: str  # "comfyui" or "forge/<instance>" (how GPUs are resolved per app)
    stack: str  # "comfyui" or "forge"
    kind: AppKind
    service: str  # compose service name
    field: str  # inventory field path below the host, e.g. "stacks.forge.instances.0"
    port: int  # host port from the inventory (127.0.0.1 unless exposed)
    gpu: str | None  # the GPU reference as written; None or "none": the CPU
    auth: Mapping | None
    expose: Exposure | None
    settings: Mapping  # the app's own inventory settings (extra_args, ...)
    service_settings: Mapping  # `service:`: environment, container_name, labels, healthcheck...

    @property
    def instance(self) -> str:
        return self.key.split("/")[-1]

    @property
    def published(self) -> tuple[str, int]:
        """(field path, port) of the port this app takes on the host."""
        if self.expose is not None and "port" in (self.settings.get("expose") or {}):
            return f"{self.field}.expose.port", self.expose.port
        return f"{self.field}.port", self.port

    @property
    def wants_gpu(self) -> bool:
        return self.gpu not in (None, "none")

    def secrets(self) -> dict[str, str]:
        """{secret name: field that needs it} for this app's proxy."""
        if not self.auth:
            return {}
        field = f"{self.field}.auth"
        needed = {self.auth.get("secret") or self.kind.default_secret: field}
        if self.auth.get("token_secret"):
            needed.setdefault(self.auth["token_secret"], f"{field}.token_secret")
        return needed


@dataclass(frozen=True)
class Stack:
    """One stack of the host: comfyui, forge, or a custom compose stack."""

    name: str
    kind: str  # "comfyui", "forge" or "custom"
    field: str  # "stacks.comfyui", "stacks.custom.<name>"
    enabled: bool
    apps: tuple[App, ...]  # built-in stacks; a custom stack has none
    health_timeout: int  # seconds `docker compose up --wait` waits
    ports: tuple[tuple[str, int], ...]  # custom stacks: (field path, port) declared
    secret_names: tuple[str, ...]  # custom stacks: secrets written to its 0600 env file
    settings: Mapping

    @property
    def project(self) -> str:
        return f"genai-{self.name}"

    @property
    def builtin(self) -> bool:
        return self.kind != "custom"

    def published_ports(self) -> list[tuple[str, int]]:
        """(field path below the host, port) of every host port the stack takes."""
        return [app.published for app in self.apps] + list(self.ports)

    def secrets(self) -> dict[str, str]:
        """{secret name: field that needs it}."""
        needed: dict[str, str] = {}
        for app in self.apps:
            for name, field in app.secrets().items():
                needed.setdefault(name, field)
        for index, name in enumerate(self.secret_names):
            needed.setdefault(name, f"{self.field}.secrets.{index}")
        return needed


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    @property
    def owner(self) -> str:
        return f"{self.uid}:{self.gid}"


@dataclass(frozen=True)
class Docker:
    source: str  # distro, docker-ce or desktop
    repo_url: str
    gpgkey_url: str | None
    compose_plugin_path: str | None


@dataclass(frozen=True)
class NvidiaToolkit:
    enabled: bool  # False with gpu.mode none (the loader decides)
    version: str
    repo_url: str
    gpgkey_url: str
    cdi: bool


@dataclass(frozen=True)
class Gpu:
    mode: str  # nvidia or none
    expected: tuple[str, ...]

    @property
    def cpu_only(self) -> bool:
        return self.mode == "none"


@dataclass(frozen=True)
class HostModel:
    name: str
    platform: str
    user: User
    layout: Layout
    docker: Docker
    nvidia_toolkit: NvidiaToolkit
    gpu: Gpu
    wsl_systemd: bool  # set [boot] systemd=true in /etc/wsl.conf (WSL2 hosts)
    models: tuple[Mapping, ...]
    history_keep: int
    stacks: tuple[Stack, ...]  # comfyui, forge, then custom stacks by name: the deploy order

    def stack(self, name: str) -> Stack | None:
        """The stack named `name` ("comfyui", "forge", "<custom>" or "custom/<custom>")."""
        name = name if name in BUILTIN_STACKS else name.removeprefix("custom/")
        return next((s for s in self.stacks if s.name == name and (
            s.builtin == (name in BUILTIN_STACKS))), None)

    def enabled_stacks(self) -> list[Stack]:
        return [stack for stack in self.stacks if stack.enabled]

    def apps(self) -> list[App]:
        """The apps of every stack the host runs."""
        return [app for stack in self.enabled_stacks() for app in stack.apps]


def host_model(settings: Mapping) -> HostModel:
    """The model of one host from its settings as the loader resolved them (or pyinfra's
    host.data of that host)."""
    settings = settings.dict() if hasattr(settings, "dict") else settings
    user, docker, toolkit, gpu = (settings[key] for key in (
        "user", "docker", "nvidia_toolkit", "gpu"))
    return HostModel(
        name=str(settings.get("workstation_name") or ""),
        platform=settings["platform"],
        user=User(user["name"], int(user["uid"]), int(user["gid"])),
        layout=Layout(settings["workspace"], settings["models_dir"]),
        docker=Docker(docker["source"], docker["repo_url"], docker.get("gpgkey_url"),
                      docker.get("compose_plugin_path")),
        nvidia_toolkit=NvidiaToolkit(bool(toolkit["enabled"]), toolkit["version"],
                                     toolkit["repo_url"], toolkit["gpgkey_url"],
                                     bool(toolkit["cdi"])),
        gpu=Gpu(gpu["mode"], tuple(gpu.get("expected") or ())),
        wsl_systemd=bool(settings["wsl"]["systemd"]),
        models=tuple(_frozen(m) for m in settings.get("models") or ()),
        history_keep=int(settings["history_keep"]),
        stacks=stacks_of(settings.get("stacks") or {}),
    )


def app_settings(stacks: Mapping) -> list[tuple[str, str, str, str, Mapping]]:
    """(stack, app key, service, field path, settings) of every app a `stacks:` setting
    declares: the one place that knows ComfyUI is one app and Forge a list of instances (also
    for the settings as written, before the loader merges them)."""
    apps = []
    if stacks.get("comfyui") is not None:
        apps.append(("comfyui", "comfyui", "comfyui", "stacks.comfyui", stacks["comfyui"]))
    for index, spec in enumerate((stacks.get("forge") or {}).get("instances") or []):
        apps.append(("forge", f"forge/{spec['name']}", f"forge-{spec['name']}",
                     f"stacks.forge.instances.{index}", spec))
    return apps


def stacks_of(stacks: Mapping) -> tuple[Stack, ...]:
    """Every stack the `stacks:` setting declares (enabled or not), in one list."""
    apps = app_settings(stacks)
    found = [_builtin(name, stacks[name], [app[1:] for app in apps if app[0] == name])
             for name in BUILTIN_STACKS if stacks.get(name)]
    for name, spec in sorted((stacks.get("custom") or {}).items()):  # by name: deploy order
        field = f"stacks.custom.{name}"
        found.append(Stack(
            name=name, kind="custom", field=field, enabled=bool(spec["enabled"]), apps=(),
            health_timeout=int(spec["health_timeout"]),
            ports=tuple((f"{field}.ports.{i}", int(p)) for i, p in enumerate(spec["ports"])),
            secret_names=tuple(spec["secrets"]), settings=_frozen(spec)))
    return tuple(found)


def _builtin(name: str, spec: Mapping, apps: list[tuple[str, str, str, Mapping]]) -> Stack:
    kind = APP_KINDS[name]
    return Stack(
        name=name, kind=name, field=f"stacks.{name}", enabled=bool(spec["enabled"]),
        apps=tuple(_app(name, kind, key, service, field, app)
                   for key, service, field, app in apps),
        health_timeout=int(spec["health_timeout"]), ports=(), secret_names=(),
        settings=_frozen(spec))


def _app(stack: str, kind: AppKind, key: str, service: str, field: str, spec: Mapping) -> App:
    expose = spec.get("expose")
    auth = spec.get("auth")
    return App(
        key=key, stack=stack, kind=kind, service=service, field=field, port=int(spec["port"]),
        gpu=spec.get("gpu"), auth=_frozen(auth) if auth else None,
        # auth without expose still fronts the app with the proxy, on 127.0.0.1
        expose=Exposure(expose["address"], int(expose.get("port") or spec["port"]))
        if expose else (Exposure("127.0.0.1", int(spec["port"])) if auth else None),
        settings=_frozen(spec), service_settings=_frozen(spec.get("service") or {}))


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))
