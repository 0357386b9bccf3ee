"""Pieces shared by the built-in apps (ComfyUI, Forge): GPU, image build, service context."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..hostmodel import App, Stack
from .context import _Data, _Renderer
from .errors import StackError
from .exposure import _Exposure
from .gpu_order import cuda_index
from .image_ext import arguments, check_image, entrypoint, extend_context
from .rendered import (
    HASH_PLACEHOLDER,
    LABEL,
    GpuCheck,
    HealthCheck,
    ImageBuild,
    RenderedFile,
    RenderedStack,
)

# Image settings with no default: unset keeps the base image's own behaviour.
OPTIONAL_IMAGE_SETTINGS = ("apt_mirror",)
# Flags that would put credentials on the command line (echoed by /sdapi/v1/cmd-flags) or open
# the app to the internet behind the proxy's back.
FORBIDDEN_FLAGS = {
    "comfyui": ("--listen",),
    "forge": ("--gradio-auth", "--api-auth", "--gradio-auth-path", "--share", "--ngrok",
              "--listen", "--server-name", "--port", "--gpu-device-id", "--device-id"),
}


@dataclass
class _App:
    """An app of the host model while it renders: the card it runs on, its command, ports."""

    model: App
    gpu: dict | None = None
    cuda_index: int | None = None
    command: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)  # compose `ports:` entries
    published: list[tuple[str, str, int]] = field(default_factory=list)

    # what the host model says of the app, read through (app.key, app.service, ...)
    key = property(lambda self: self.model.key)
    service = property(lambda self: self.model.service)
    field = property(lambda self: self.model.field)  # its path in the inventory
    spec = property(lambda self: self.model.settings)
    internal_port = property(lambda self: self.model.kind.internal_port)


class _BuiltinStack(_Exposure):
    kind = ""
    defaults: dict = {}
    default_secret = ""

    def __init__(self, data: _Data, stack: Stack, renderer: _Renderer,
                 resolved_gpus: Mapping[str, dict | None], all_gpus: list[dict] | None):
        self.data = data
        self.stack = stack
        self.spec = stack.settings
        self.renderer = renderer
        self.resolved_gpus = resolved_gpus or {}
        self.all_gpus = all_gpus
        self.files: dict[str, RenderedFile] = {}
        self.secrets: dict[str, str] = {}  # compose secret name -> ./secrets/<file>
        self.warnings: list[str] = []

    # -- pieces shared by ComfyUI and Forge

    def apps(self) -> list[_App]:
        """The stack's apps from the host model, each on its resolved card (or the CPU)."""
        apps = [_App(app) for app in self.stack.apps]
        for app in apps:
            self.resolve_gpu(app)
        return apps

    def resolve_gpu(self, app: _App) -> None:
        if self.data.model.gpu.cpu_only or app.model.gpu == "none":
            return
        keys = [k for k in (app.key, app.key.split("/")[-1], app.service)
                if k in self.resolved_gpus]
        if not keys:
            raise StackError(
                f"{app.field}.gpu: no GPU was resolved for {app.key}",
                "the deploy resolves the inventory's GPU reference with the GPU fact; pass it "
                "in resolved_gpus (None runs the app on the CPU)")
        gpu = self.resolved_gpus[keys[0]]
        if gpu is None:
            return
        app.gpu = dict(gpu)
        app.cuda_index = cuda_index(gpu, self.all_gpus)

    def image(self) -> tuple[str, bool, ImageBuild | None]:
        """(image reference, built locally?, build) for this stack's apps."""
        image = self.spec.get("image") or {}
        if not image.get("build", True):
            if not image.get("name"):
                raise StackError(f"stacks.{self.kind}.image.name: build is false but no image "
                                 "is named", "name the image to run, or set build: true")
            check_image(self.kind, self.spec, self.data.get("inventory_dir", "."))
            return image["name"], False, None
        settings = {key: image.get(key) or default for key, default in self.defaults.items()}
        settings.update({key: image.get(key) or "" for key in OPTIONAL_IMAGE_SETTINGS})
        for key, value in settings.items():
            if (key not in OPTIONAL_IMAGE_SETTINGS and not value) or any(
                    c.isspace() or c in "\"'\\$" for c in str(value)):
                raise StackError(f"stacks.{self.kind}.image.{key}: {value!r} cannot be used",
                                 "no spaces, quotes, backslashes or $ in image settings")
        context = extend_context(self.kind, self.spec, self.build_context(settings),
                                 self.data.get("inventory_dir", "."), self.warnings, RenderedFile)
        # The inventory's values become the Dockerfile's ARG defaults: the build context alone
        # (`docker build build/`) rebuilds the same image, and .history keeps what was built.
        dockerfile = set_arg_defaults(context["Dockerfile"].content, self.build_args(settings))
        context["Dockerfile"] = RenderedFile(dockerfile)
        digest = hashlib.sha256(b"genai-workstation image v1\0")
        for path in sorted(context):
            digest.update(f"file {path}\0".encode() + context[path].data() + b"\0")
        build_hash = digest.hexdigest()
        context["Dockerfile"] = RenderedFile(set_arg_defaults(dockerfile,
                                                              {"BUILD_HASH": build_hash}))
        tag = image.get("name") or f"genai-workstation/{self.kind}:{build_hash[:12]}"
        build = ImageBuild(
            service=self.kind, tag=tag, build_hash=build_hash, context="build", files=context,
            build_args={}, labels={f"{LABEL}.build-hash": build_hash, f"{LABEL}.app": self.kind,
                                   "org.opencontainers.image.source": settings["repo_url"],
                                   "org.opencontainers.image.version": settings["ref"]},
        )
        return tag, True, build

    def build_context(self, settings: dict) -> dict[str, RenderedFile]:
        return {"Dockerfile": RenderedFile(app_dockerfile(self.renderer.read, self.kind)),
                "apt-mirror.sh": RenderedFile(self.renderer.read("common/apt-mirror.sh")),
                "base-setup.sh": RenderedFile(self.renderer.read("common/base-setup.sh"))}

    def build_args(self, settings: dict) -> dict[str, str]:
        raise NotImplementedError

    @staticmethod
    def mirror_args(settings: dict) -> dict[str, str]:
        """APT_MIRROR, and PIP_TRUSTED_HOST: the hosts of http:// package indexes (pip ignores
        a plain-HTTP index unless its host is trusted; the inventory named it, so it is)."""
        hosts = sorted({urlsplit(settings[key]).hostname or "" for key in
                        ("pip_index_url", "torch_index_url")
                        if settings[key].startswith("http://")} - {""})
        return {"APT_MIRROR": settings["apt_mirror"], "PIP_TRUSTED_HOST": " ".join(hosts)}

    def check_extra_args(self, app: _App, forbidden: tuple[str, ...]) -> list[str]:
        extra = [str(a) for a in app.spec.get("extra_args") or []]
        for arg in extra:
            flag = arg.split("=", 1)[0]
            if flag in forbidden:
                raise StackError(
                    f"{app.field}.extra_args: {flag} is set by genai-workstation",
                    "remove it: ports, GPU pinning and listening address come from the "
                    "inventory, and credentials never go on a command line (use auth + expose)")
        self.refuse_secret_values(extra, f"{app.field}.extra_args",
                                  "credentials never go on a command line; use auth + expose")
        return extra

    def refuse_secret_values(self, items, field: str, fix: str) -> None:
        """StackError when one of the host's secret values appears in any of `items`."""
        for value in self.data.secret_values():
            if any(value in item for item in items):
                raise StackError(f"{field}: holds a secret value", fix)


    @staticmethod
    def health_check(app: _App) -> HealthCheck:
        """The app's health address in its container: its compose healthcheck asks it, the
        converge waits for it, and checks the folders it must write."""
        return HealthCheck(app.service, _local_url(app.internal_port, app.model.kind.health_path),
                           app.model.kind.writable)

    @staticmethod
    def gpu_checks(apps: list[_App]) -> list[GpuCheck]:
        """The card each app on a GPU must report, and how to ask it (its kind's probe)."""
        checks = []
        for app in apps:
            kind = app.model.kind
            if app.gpu and app.gpu.get("name"):
                url = kind.device_path and _local_url(app.internal_port, kind.device_path)
                checks.append(GpuCheck(app.service, app.gpu["name"], kind.device_probe, url))
        return sorted(checks, key=lambda check: check.service)

    def app_context(self, app: _App, image: str, pull_never: bool, env: dict,
                    mounts: list[dict], start_period: int, gpu_flag: str) -> dict:
        settings = app.model.service_settings
        command, env = arguments(self.spec, app.command, env)
        return {
            "service": app.service, "stack": self.kind, "image": image, "pull_never": pull_never,
            "user": self.data.uid_gid, "command": command,
            "entrypoint": entrypoint(self.spec),
            "environment": {**self.own_environment(app, env), **env},
            "container_name": settings.get("container_name"),
            "labels": settings.get("labels") or {}, "restart": settings.get("restart"),
            "shm_size": settings.get("shm_size"),
            "health_timing": settings.get("healthcheck") or {},
            "mounts": mounts, "ports": app.ports, "gpu": app.gpu, "cuda_index": app.cuda_index,
            "gpu_flag": gpu_flag, "start_period": start_period,
            "healthcheck": _python_healthcheck(self.health_check(app).url),
            "hash_placeholder": HASH_PLACEHOLDER, "instance": app.model.instance,
        }

    def own_environment(self, app: _App, env: dict) -> dict:
        """The user's non-secret variables; the ones genai-workstation sets are refused."""
        own = {key: str(value).lower() if isinstance(value, bool) else str(value)
               for key, value in (app.model.service_settings.get("environment") or {}).items()}
        for key in own:
            if key in env:
                raise StackError(f"{app.field}.service.environment.{key}: set by "
                                 "genai-workstation", "remove it: it is derived from the "
                                 "inventory (GPU pinning, caches, paths)")
        self.refuse_secret_values(own.values(), f"{app.field}.service.environment",
                                  "secrets go in the secrets file, never in the environment")
        return own

    def finish(self, apps: list[_App], compose: str, build: ImageBuild | None,
               sites: list[dict], extra_services: list[str],
               directories: list[str]) -> RenderedStack:
        self.files["compose.yaml"] = RenderedFile(compose)
        self.files[".env"] = RenderedFile(
            "# Rendered by genai-workstation: compose project settings only, never a secret.\n"
            f"COMPOSE_PROJECT_NAME=genai-{self.kind}\n")
        if build:
            for path, rendered in build.files.items():
                self.files[f"{build.context}/{path}"] = rendered
        services = [a.service for a in apps] + extra_services + (["proxy"] if sites else [])
        return RenderedStack(
            name=self.kind, project=self.stack.project,
            directory=self.data.layout.stack_dir(self.kind), files=self.files,
            config_hash="", services=services,
            published=[p for a in apps for p in a.published],
            health=[self.health_check(a) for a in apps], gpu_checks=self.gpu_checks(apps),
            auth_checks=self.auth_checks(sites), image_build=build, directories=directories,
            health_timeout=self.stack.health_timeout, warnings=self.warnings,
        )


_INCLUDE = re.compile(r"^# genai:include (\S+)(.*)$", re.MULTILINE)


def app_dockerfile(read, kind: str) -> str:
    """files/<kind>/Dockerfile, its `# genai:include <file> [apt package...]` line replaced by
    that file (the layers every app image starts with; the packages are the app's own)."""
    def included(match: re.Match) -> str:
        packages = match.group(2).strip()
        text = read(match.group(1)).replace(" @@APT_PACKAGES@@", f" {packages}" if packages else "")
        return text.rstrip("\n")

    return _INCLUDE.sub(included, read(f"{kind}/Dockerfile"))


def set_arg_defaults(dockerfile: str, values: dict[str, str]) -> str:
    """Replace the default of `ARG NAME=...` lines; every name must exist in the Dockerfile."""
    for name, value in values.items():
        pattern = re.compile(rf"^ARG {re.escape(name)}=.*$", re.MULTILINE)
        if not pattern.search(dockerfile):
            raise StackError(f"the Dockerfile has no `ARG {name}=` line", "restore files/")
        dockerfile = pattern.sub(lambda _m, n=name, v=value: f"ARG {n}={v}", dockerfile)
    return dockerfile


def _bind(source: str, target: str, read_only: bool = False) -> dict:
    return {"source": source, "target": target, "read_only": read_only}


def _app_env() -> dict[str, str]:
    return {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "PYTHONUNBUFFERED": "1",
        "HOME": "/tmp",
        "HF_HOME": "/data/cache/huggingface",
        "TORCH_HOME": "/data/cache/torch",
    }


def _local_url(port: int, path: str) -> str:
    """The app's address inside its own container."""
    return f"http://127.0.0.1:{port}{path}"


def _python_healthcheck(url: str) -> list[str]:
    """A healthcheck run with the image's Python (no curl in the image)."""
    code = ("import sys, urllib.request; "
            f"r = urllib.request.urlopen('{url}', timeout=8); "
            "sys.exit(0 if r.status == 200 else 1)")
    return ["CMD", "python", "-c", code]

