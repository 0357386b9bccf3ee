"""Render a stack (ComfyUI, Forge or a user's compose template) from host data, without a host.

`render_stack()` returns every file of `<workspace>/stacks/<name>/` (compose.yaml, .env, the
image build context, the proxy config, 0600 secret files) plus what the lifecycle needs to act
on it: the config hash, the image to build, health checks, the expected GPU per service and
the published addresses. Pure Python: nothing here touches a host; the lifecycle steps
(lifecycle.py) upload, build, start and verify.

Rules kept here (issue #4):
- a secret value goes only into files marked `secret=True` (mode 0600); never into compose.yaml,
  .env, the Caddyfile, a command line or an environment variable; the config hash covers
  secrets through a slow keyed digest, never a plain hash;
- apps publish on 127.0.0.1 only; with `expose` (which requires `auth`), a Caddy proxy is the
  only published port and the app has no `ports:` at all;
- the GPU is pinned inside the app (CUDA_DEVICE_ORDER=PCI_BUS_ID + --cuda-device /
  --gpu-device-id), because WSL2 ignores compose `device_ids`; `gpu: none` runs on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import jinja2
import yaml

from ..checks import windows_path_reason
from ..layout import COMFYUI_MODEL_FOLDERS, LEGACY_MODEL_FOLDERS
from ..resources import FILES_DIR
from .errors import StackError
from .forge_flags import FORGE_FLAGS, FORGE_FLAGS_REF, FORGE_REFUSED_FLAGS
from .gpu_order import cuda_index
from .proxy import GATE_PORT, auth_snippet, gate_config

LABEL = "genai"  # label prefix, shared with the lifecycle and facts/compose.py
HASH_PLACEHOLDER = "@@GENAI_CONFIG_HASH@@"
PROXY_IMAGE = "caddy:2"
PROXY_FIRST_PORT = 8080
# Slow keyed digest of secret file contents for the config hash (PBKDF2-HMAC-SHA256).
SECRET_DIGEST_ITERATIONS = 200_000

BUILTIN_STACKS = ("comfyui", "forge")

COMFYUI_DEFAULTS = {
    "base_image": "nvidia/cuda:12.8.1-runtime-ubuntu24.04",
    "torch_index_url": "https://download.pytorch.org/whl/cu128",
    "pip_index_url": "https://pypi.org/simple",
    "repo_url": "https://github.com/Comfy-Org/ComfyUI.git",
    "ref": "v0.38.0",
}
FORGE_DEFAULTS = {
    "base_image": "nvidia/cuda:12.1.1-runtime-ubuntu22.04",
    "torch_index_url": "https://download.pytorch.org/whl/cu121",
    "pip_index_url": "https://pypi.org/simple",
    "repo_url": "https://github.com/lllyasviel/stable-diffusion-webui-forge.git",
    "ref": "1b44ae22e3996b8af048f268bd076702b296b469",
}
# Image settings with no default: unset keeps the base image's own behaviour.
OPTIONAL_IMAGE_SETTINGS = ("apt_mirror",)
COMFYUI_PORT = 8188
FORGE_PORT = 7860

# Forge reads the shared models/ tree through its directory flags (ComfyUI folder names).
FORGE_MODEL_FLAGS = (
    ("--ckpt-dir", "checkpoints"),
    ("--lora-dir", "loras"),
    ("--vae-dir", "vae"),
    ("--text-encoder-dir", "text_encoders"),
    ("--embeddings-dir", "embeddings"),
    ("--hypernetwork-dir", "hypernetworks"),
    ("--controlnet-dir", "controlnet"),
    ("--esrgan-models-path", "upscale_models"),
)
# Flags that would put credentials on the command line (echoed by /sdapi/v1/cmd-flags) or open
# the app to the internet behind the proxy's back.
FORBIDDEN_FLAGS = {
    "comfyui": ("--listen",),
    "forge": ("--gradio-auth", "--api-auth", "--gradio-auth-path", "--share", "--ngrok",
              "--listen", "--server-name", "--port", "--gpu-device-id", "--device-id"),
}
_FORBIDDEN_COMFYUI_EXTRA = ("--port", "--cuda-device", "--cpu")


@dataclass(frozen=True)
class RenderedFile:
    """One file of the stack folder. Secret files are mode 0600 and never printed."""

    content: str | bytes
    mode: int = 0o644
    secret: bool = False

    def data(self) -> bytes:
        return self.content if isinstance(self.content, bytes) else self.content.encode()

    def __repr__(self) -> str:
        shown = "<secret>" if self.secret else f"{len(self.data())} bytes"
        return f"RenderedFile({shown}, mode={self.mode:04o}, secret={self.secret})"


@dataclass
class ImageBuild:
    """An image to build on the workstation from `context` (a folder of the stack dir)."""

    service: str
    tag: str
    build_hash: str
    context: str  # relative to the stack directory, e.g. "build"
    files: dict[str, RenderedFile]  # relative to the context
    build_args: dict[str, str]
    labels: dict[str, str]

    def argv(self, stack_dir: str = ".") -> list[str]:
        """`docker build` command line (no secret ever goes into a build argument)."""
        argv = ["docker", "build", "--tag", self.tag]
        for key, value in sorted(self.labels.items()):
            argv += ["--label", f"{key}={value}"]
        for key, value in sorted(self.build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        return argv + [posixpath.join(stack_dir, self.context)]


@dataclass
class RenderedStack:
    name: str
    project: str  # compose project name
    directory: str  # <workspace>/stacks/<name>
    files: dict[str, RenderedFile]
    config_hash: str
    services: list[str]
    published: list[tuple[str, str, int]]  # (service, host address, host port)
    health: list[dict]  # [{"service", "url", "gpu_url"}]: in-container addresses (GPU probe)
    expected_gpu: dict[str, str | None]
    gpus: dict[str, dict | None] = field(default_factory=dict)
    image_build: ImageBuild | None = None
    directories: list[str] = field(default_factory=list)  # host folders to create (user-owned)
    health_timeout: int = 300
    warnings: list[str] = field(default_factory=list)
    # exposed apps: a request without credentials to `url` must be refused by the proxy
    # [{"protects": app service, "url": published URL, "proxy_port": the proxy's own port}]
    auth_checks: list[dict] = field(default_factory=list)

    def secret_paths(self) -> list[str]:
        return sorted(path for path, f in self.files.items() if f.secret)


# --------------------------------------------------------------------------- entry point


def render_stack(stack_name: str, host_data, resolved_gpus: Mapping[str, dict | None],
                 *, all_gpus: list[dict] | None = None,
                 files_dir: Path | str | None = None) -> RenderedStack:
    """Render one stack of one host.

    stack_name: "comfyui", "forge", or a custom stack ("custom/<name>" or "<name>").
    host_data: the host's settings as the loader resolved them (dict or pyinfra host.data).
    resolved_gpus: {app key: GPU dict from the GPU fact, or None for the CPU}; app keys are
        "comfyui" and "forge/<instance>". Not needed for apps on the CPU.
    all_gpus: every GPU of the host (the GPU fact's list), to compute CUDA indexes in PCI bus
        order; without it nvidia-smi's index is used.
    """
    data = _Data(host_data)
    renderer = _Renderer(Path(files_dir) if files_dir else FILES_DIR)
    stacks = data.get("stacks") or {}
    custom = stacks.get("custom") or {}
    name = stack_name.removeprefix("custom/")
    if stack_name in BUILTIN_STACKS:
        spec = stacks.get(stack_name)
        if not spec or not spec.get("enabled", True):
            raise StackError(f"stacks.{stack_name} is not configured (or not enabled) here",
                             f"add stacks.{stack_name} to the host in the inventory")
        builder = _ComfyUI if stack_name == "comfyui" else _Forge
        stack = builder(data, spec, renderer, resolved_gpus, all_gpus).render()
    elif name in custom and name not in BUILTIN_STACKS:
        spec = custom[name]
        if not spec.get("enabled", True):
            raise StackError(f"stacks.custom.{name} is not enabled", "set enabled: true")
        stack = _Custom(data, name, spec, renderer).render()
    else:
        known = list(s for s in BUILTIN_STACKS if stacks.get(s)) + [f"custom/{c}" for c in custom]
        raise StackError(f"no stack named {stack_name!r} on this host",
                         f"known stacks: {', '.join(known) or 'none'}")
    return _finish(stack, data)


# --------------------------------------------------------------------------- host data


class _Data:
    """Read access to a dict or pyinfra host.data; secrets unmasked only on request."""

    def __init__(self, source):
        self.source = source

    def get(self, key: str, default=None):
        getter = getattr(self.source, "get", None)
        value = getter(key, default) if getter else default
        return default if value is None else value

    @property
    def workspace(self) -> str:
        return self._path("workspace", self.get("workspace", "/srv/genai"))

    @property
    def models_dir(self) -> str:
        return self._path("models_dir",
                          self.get("models_dir") or self.workspace.rstrip("/") + "/models")

    @property
    def uid_gid(self) -> str:
        user = self.get("user") or {}
        return f"{int(user.get('uid', 1000))}:{int(user.get('gid', 1000))}"

    @property
    def workstation(self) -> str:
        return str(self.get("workstation_name", "workstation"))

    @property
    def cpu_only(self) -> bool:
        return (self.get("gpu") or {}).get("mode") == "none"

    def secret(self, name: str, field_path: str) -> str:
        secrets = self.get("secrets") or {}
        value = secrets.get(name)
        if value is None:
            raise StackError(f"{field_path}: needs the secret {name}, which is not set",
                             f"put {name}=... in the secrets file (chmod 600) or export {name}")
        return value.unmask() if hasattr(value, "unmask") else str(value)

    def secret_values(self) -> list[str]:
        values = []
        for value in (self.get("secrets") or {}).values():
            raw = value.unmask() if hasattr(value, "unmask") else str(value)
            if raw:
                values.append(raw)
        return values

    def _path(self, key: str, path: str) -> str:
        reason = windows_path_reason(path)
        if reason:
            raise StackError(f"{key}: {reason}; containers never mount a Windows drive",
                             "use a path on the Linux filesystem (ext4), e.g. /srv/genai")
        if not path.startswith("/"):
            raise StackError(f"{key}: {path!r} is not an absolute path", "e.g. /srv/genai")
        return path.rstrip("/") or "/"


# --------------------------------------------------------------------------- templates


def _compose_quote(value) -> str:
    """A YAML scalar (JSON syntax) with `$` doubled so that Compose does not interpolate it."""

    def escape(item):
        if isinstance(item, str):
            return item.replace("$", "$$")
        if isinstance(item, list | tuple):
            return [escape(i) for i in item]
        if isinstance(item, dict):
            return {k: escape(v) for k, v in item.items()}
        return item

    value = escape(value)
    if isinstance(value, bool | int | float):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    return json.dumps(value, ensure_ascii=False)


class _Renderer:
    def __init__(self, files_dir: Path):
        self.files_dir = files_dir
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(files_dir)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self.env.filters["q"] = _compose_quote

    def render(self, template: str, **context) -> str:
        text = self.env.get_template(template).render(**context)
        # Optional blocks leave empty lines: keep only those before a top-level line.
        lines = text.rstrip("\n").split("\n")
        kept = [line for i, line in enumerate(lines)
                if line.strip() or (i + 1 < len(lines) and lines[i + 1][:1] not in ("", " "))]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)) + "\n"

    def read(self, relative: str) -> str:
        return (self.files_dir / relative).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- built-in apps


@dataclass
class _App:
    key: str  # "comfyui" or "forge/<instance>"
    service: str
    field: str  # inventory field path below the host
    spec: dict
    internal_port: int
    health_path: str
    gpu_check_path: str
    gpu: dict | None = None
    cuda_index: int | None = None
    command: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)  # compose `ports:` entries
    published: list[tuple[str, str, int]] = field(default_factory=list)
    writable: list[str] = field(default_factory=list)  # folders the app must write (checked)


class _BuiltinStack:
    kind = ""
    defaults: dict = {}
    default_secret = ""

    def __init__(self, data: _Data, spec: dict, renderer: _Renderer,
                 resolved_gpus: Mapping[str, dict | None], all_gpus: list[dict] | None):
        self.data = data
        self.spec = spec
        self.renderer = renderer
        self.resolved_gpus = resolved_gpus or {}
        self.all_gpus = all_gpus
        self.files: dict[str, RenderedFile] = {}
        self.secrets: dict[str, str] = {}  # compose secret name -> ./secrets/<file>
        self.warnings: list[str] = []

    # -- pieces shared by ComfyUI and Forge

    def resolve_gpu(self, app: _App) -> None:
        ref = app.spec.get("gpu")
        if self.data.cpu_only or ref == "none":
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
            return image["name"], False, None
        settings = {key: image.get(key) or default for key, default in self.defaults.items()}
        settings.update({key: image.get(key) or "" for key in OPTIONAL_IMAGE_SETTINGS})
        for key, value in settings.items():
            if (key not in OPTIONAL_IMAGE_SETTINGS and not value) or any(
                    c.isspace() or c in "\"'\\$" for c in str(value)):
                raise StackError(f"stacks.{self.kind}.image.{key}: {value!r} cannot be used",
                                 "no spaces, quotes, backslashes or $ in image settings")
        context = self.build_context(settings)
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
            build_args={}, labels={f"{LABEL}.build-hash": build_hash, f"{LABEL}.app": self.kind},
        )
        return tag, True, build

    def build_context(self, settings: dict) -> dict[str, RenderedFile]:
        return {"Dockerfile": RenderedFile(self.renderer.read(f"{self.kind}/Dockerfile")),
                "apt-mirror.sh": RenderedFile(self.renderer.read("common/apt-mirror.sh"))}

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

    def exposure(self, apps: list[_App], image: str,
                 built: bool) -> tuple[dict | None, list]:
        """The proxy (or None) and the per-app published ports."""
        sites, secret_names, gates = [], [], []
        for app in apps:
            expose, auth = app.spec.get("expose"), app.spec.get("auth")
            if not expose and not auth:
                app.ports = [f"127.0.0.1:{app.spec['port']}:{app.internal_port}"]
                app.published = [(app.service, "127.0.0.1", int(app.spec["port"]))]
                continue
            # auth without expose is never dropped: a reverse proxy on this machine may forward
            # the world to loopback, so the authenticating proxy fronts the app there too.
            expose = expose or {"address": "127.0.0.1"}
            if not auth:
                raise StackError(f"{app.field}.expose: publishes the app without authentication",
                                 "add auth (basic or bearer) or remove expose")
            secret_name = auth.get("secret") or self.default_secret
            value = self.data.secret(secret_name, f"{app.field}.auth")
            compose_secret = f"proxy_auth_{app.service.replace('-', '_')}"
            gate = None
            if auth["type"] == "login":
                gate = self.login_gate(app, auth, value, compose_secret, image, built)
                gates.append(gate)
                snippet = gate.pop("config")
            else:
                snippet = auth_snippet(auth, value,
                                       (self.data.workstation, self.kind, app.service),
                                       f"{app.field}.auth")
                secret_names.append(compose_secret)
            self.files[f"secrets/{compose_secret}"] = RenderedFile(snippet, 0o600, True)
            self.secrets[compose_secret] = f"./secrets/{compose_secret}"
            port = int(expose.get("port") or app.spec["port"])
            internal = PROXY_FIRST_PORT + len(sites)
            sites.append({
                "service": app.service, "address": expose["address"], "port": port,
                "internal_port": internal, "auth_type": auth["type"],
                "auth_file": f"/run/secrets/{compose_secret}",
                "gate": gate and f"{gate['service']}:{GATE_PORT}",
                "upstream": f"{app.service}:{app.internal_port}",
            })
            app.published = [("proxy", expose["address"], port)]
        if not sites:
            return None, []
        self.files["proxy/Caddyfile"] = RenderedFile(
            self.renderer.render("proxy/Caddyfile.j2", sites=sites))
        proxy_image = (self.spec.get("proxy_image") or PROXY_IMAGE)
        proxy = {
            "image": proxy_image, "user": self.data.uid_gid, "stack": self.kind,
            "ports": [f"{_host_ip(s['address'])}:{s['port']}:{s['internal_port']}"
                      for s in sites],
            "secrets": secret_names,
            "upstreams": [s["service"] for s in sites] + [g["service"] for g in gates],
            "gates": gates, "hash_placeholder": HASH_PLACEHOLDER,
        }
        if gates:
            self.files["proxy/auth_gate.py"] = RenderedFile(self.renderer.read(
                "proxy/auth_gate.py"))
        return proxy, sites

    def login_gate(self, app: _App, auth: dict, password: str, compose_secret: str,
                   image: str, built: bool) -> dict:
        """The login gate service of one app (runs the app image's Python)."""
        field = f"{app.field}.auth"
        token = (self.data.secret(auth["token_secret"], f"{field}.token_secret")
                 if auth.get("token_secret") else None)
        return {
            "service": f"auth-{app.service}", "image": image, "pull_never": built,
            "user": self.data.uid_gid,
            "secret": compose_secret, "title": f"{self.kind} {app.service}",
            "port": GATE_PORT, "token_file": auth.get("token_file"), "stack": self.kind,
            "config": gate_config(auth, password, token, auth.get("token_file"), field),
        }

    def health_entries(self, apps: list[_App]) -> list[dict]:
        return [{"service": app.service,
                 "url": f"http://127.0.0.1:{app.internal_port}{app.health_path}",
                 "gpu_url": f"http://127.0.0.1:{app.internal_port}{app.gpu_check_path}",
                 "writable": list(app.writable)}
                for app in apps]

    @staticmethod
    def auth_checks(sites: list[dict]) -> list[dict]:
        return [{"protects": site["service"], "proxy_port": site["internal_port"],
                 "url": f"http://{_client_ip(site['address'])}:{site['port']}/"}
                for site in sites]

    def app_context(self, app: _App, image: str, pull_never: bool, env: dict,
                    mounts: list[dict], start_period: int, gpu_flag: str) -> dict:
        settings = app.spec.get("service") or {}
        return {
            "service": app.service, "stack": self.kind, "image": image, "pull_never": pull_never,
            "user": self.data.uid_gid, "command": app.command,
            "environment": {**self.own_environment(app, env), **env},
            "container_name": settings.get("container_name"),
            "labels": settings.get("labels") or {}, "restart": settings.get("restart"),
            "shm_size": settings.get("shm_size"),
            "health_timing": settings.get("healthcheck") or {},
            "mounts": mounts, "ports": app.ports, "gpu": app.gpu, "cuda_index": app.cuda_index,
            "gpu_flag": gpu_flag, "start_period": start_period,
            "healthcheck": _python_healthcheck(app.internal_port, app.health_path),
            "hash_placeholder": HASH_PLACEHOLDER, "instance": app.key.split("/")[-1],
        }

    def own_environment(self, app: _App, env: dict) -> dict:
        """The user's non-secret variables; the ones genai-workstation sets are refused."""
        own = {key: str(value).lower() if isinstance(value, bool) else str(value)
               for key, value in ((app.spec.get("service") or {}).get("environment") or {})
               .items()}
        for key in own:
            if key in env:
                raise StackError(f"{app.field}.service.environment.{key}: set by "
                                 "genai-workstation", "remove it: it is derived from the "
                                 "inventory (GPU pinning, caches, paths)")
        self.refuse_secret_values(own.values(), f"{app.field}.service.environment",
                                  "secrets go in the secrets file, never in the environment")
        return own

    def finish(self, apps: list[_App], compose: str, build: ImageBuild | None,
               sites: list[dict], extra_services: list[str], directories: list[str],
               health_timeout: int) -> RenderedStack:
        self.files["compose.yaml"] = RenderedFile(compose)
        self.files[".env"] = RenderedFile(
            "# Rendered by genai-workstation: compose project settings only, never a secret.\n"
            f"COMPOSE_PROJECT_NAME=genai-{self.kind}\n")
        if build:
            for path, rendered in build.files.items():
                self.files[f"{build.context}/{path}"] = rendered
        services = [a.service for a in apps] + extra_services + (["proxy"] if sites else [])
        return RenderedStack(
            name=self.kind, project=f"genai-{self.kind}",
            directory=f"{self.data.workspace}/stacks/{self.kind}", files=self.files,
            config_hash="", services=services,
            published=[p for a in apps for p in a.published],
            health=self.health_entries(apps), auth_checks=self.auth_checks(sites),
            expected_gpu={a.service: (a.gpu or {}).get("name") for a in apps},
            gpus={a.service: None if a.gpu is None else {**a.gpu, "cuda_index": a.cuda_index}
                  for a in apps},
            image_build=build, directories=directories, health_timeout=health_timeout,
            warnings=self.warnings,
        )


class _ComfyUI(_BuiltinStack):
    kind = "comfyui"
    defaults = COMFYUI_DEFAULTS
    default_secret = "COMFYUI_AUTH"

    def build_context(self, settings: dict) -> dict[str, RenderedFile]:
        context = super().build_context(settings)
        context["custom-nodes.txt"] = RenderedFile(self.custom_nodes())
        context["extra_model_paths.yaml"] = RenderedFile(self.renderer.render(
            "comfyui/extra_model_paths.yaml.j2", folders=COMFYUI_MODEL_FOLDERS,
            legacy=LEGACY_MODEL_FOLDERS))
        return context

    def build_args(self, settings: dict) -> dict[str, str]:
        return {
            "BASE_IMAGE": settings["base_image"], "TORCH_INDEX_URL": settings["torch_index_url"],
            "PIP_INDEX_URL": settings["pip_index_url"], "COMFYUI_REPO": settings["repo_url"],
            "COMFYUI_REF": settings["ref"], **self.mirror_args(settings),
        }

    def custom_nodes(self) -> str:
        lines = ["# <git url> <ref> <folder>: installed at image build time"]
        seen = set()
        for index, node in enumerate(self.spec.get("custom_nodes") or []):
            url, ref = str(node["url"]).strip(), str(node["ref"]).strip()
            folder = PurePosixPath(url.rstrip("/")).name.removesuffix(".git")
            where = f"stacks.comfyui.custom_nodes.{index}"
            if not url or not ref or any(c.isspace() for c in url + ref):
                raise StackError(f"{where}: url and ref must be set, without spaces",
                                 "e.g. url: https://github.com/ltdrdata/ComfyUI-Manager, "
                                 "ref: a tag or commit")
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", folder) or folder in seen:
                raise StackError(f"{where}.url: cannot derive a unique folder name from {url}",
                                 "each custom node needs its own repository name")
            seen.add(folder)
            lines.append(f"{url} {ref} {folder}")
        return "\n".join(lines) + "\n"

    def render(self) -> RenderedStack:
        spec = self.spec
        app = _App("comfyui", "comfyui", "stacks.comfyui", spec, COMFYUI_PORT,
                   "/system_stats", "/system_stats", writable=["/data/output"])
        self.resolve_gpu(app)
        extra = self.check_extra_args(app, FORBIDDEN_FLAGS["comfyui"] + _FORBIDDEN_COMFYUI_EXTRA)
        app.command = ["--listen", "0.0.0.0", "--port", str(COMFYUI_PORT),
                       "--disable-auto-launch",
                       "--input-directory", "/data/input", "--output-directory", "/data/output",
                       "--user-directory", "/data/user", "--temp-directory", "/tmp"]
        app.command += ["--cpu"] if app.gpu is None else ["--cuda-device", str(app.cuda_index)]
        app.command += extra
        image, built, build = self.image()
        proxy, sites = self.exposure([app], image, built)
        ws = self.data.workspace
        mounts = [_bind(self.data.models_dir, "/data/models")] + [
            _bind(f"{ws}/{folder}", f"/data/{folder}")
            for folder in ("input", "output", "user", "custom_nodes", "cache")]
        env = _app_env()
        idle = None
        minutes = int(spec.get("idle_unload_minutes") or 0)
        extra_services = []
        if minutes > 0:
            idle = {"image": image, "pull_never": built, "user": self.data.uid_gid,
                    "minutes": str(minutes), "url": f"http://comfyui:{COMFYUI_PORT}",
                    "upstream": "comfyui"}
            self.files["sidecar/idle_unload.py"] = RenderedFile(
                self.renderer.read("comfyui/idle_unload.py"))
            extra_services.append("idle-unload")
        timeout = int(spec.get("health_timeout", 300))
        context = self.app_context(app, image, built, env, mounts, timeout, "--cuda-device")
        compose = self.renderer.render("comfyui/compose.yaml.j2", stack={
            "name": self.kind, "project": "genai-comfyui", "apps": [context],
            "idle_unload": idle, "proxy": proxy, "secrets": self.secrets,
            "network": self.spec.get("network"), "hash_placeholder": HASH_PLACEHOLDER})
        directories = [m["source"] for m in mounts]
        return self.finish([app], compose, build, sites, extra_services, directories, timeout)


class _Forge(_BuiltinStack):
    kind = "forge"
    defaults = FORGE_DEFAULTS
    default_secret = "FORGE_AUTH"

    def build_args(self, settings: dict) -> dict[str, str]:
        return {
            "BASE_IMAGE": settings["base_image"], "TORCH_INDEX_URL": settings["torch_index_url"],
            "PIP_INDEX_URL": settings["pip_index_url"], "FORGE_REPO": settings["repo_url"],
            "FORGE_REF": settings["ref"], **self.mirror_args(settings),
        }

    def check_forge_flags(self, app: _App, extra: list[str]) -> None:
        """Refuse a flag Forge does not know (it would exit at start) or cannot honour."""
        image = self.spec.get("image") or {}
        if image.get("build", True) is False or (image.get("ref") or FORGE_FLAGS_REF) \
                != FORGE_FLAGS_REF:
            return  # another Forge: its flags are not known here
        for arg in extra:
            flag = arg.split("=", 1)[0]
            if flag in FORGE_REFUSED_FLAGS:
                raise StackError(f"{app.field}.extra_args: {flag} is refused: "
                                 f"{FORGE_REFUSED_FLAGS[flag]}", f"remove {flag}")
            if flag.startswith("--") and flag not in FORGE_FLAGS:
                raise StackError(
                    f"{app.field}.extra_args: {flag} is not a flag of Forge "
                    f"{FORGE_FLAGS_REF[:8]} (it would exit at start)",
                    "check the spelling against `python launch.py --help` of that commit")

    def render(self) -> RenderedStack:
        instances = self.spec.get("instances") or []
        if not instances:
            raise StackError("stacks.forge.instances: no instance", "add at least one instance")
        apps = []
        for index, instance in enumerate(instances):
            app = _App(f"forge/{instance['name']}", f"forge-{instance['name']}",
                       f"stacks.forge.instances.{index}", instance, FORGE_PORT,
                       "/internal/ping", "/sdapi/v1/memory",
                       writable=["/data/forge/outputs"])
            self.resolve_gpu(app)
            extra = self.check_extra_args(app, FORBIDDEN_FLAGS["forge"])
            self.check_forge_flags(app, extra)
            app.command = ["--skip-prepare-environment", "--skip-install",
                           "--skip-version-check", "--no-download-sd-model",
                           "--listen", "--port", str(FORGE_PORT), "--api",
                           "--data-dir", "/data/forge"]
            app.command += [a for flag, folder in FORGE_MODEL_FLAGS
                            for a in (flag, f"/data/models/{folder}")]
            if app.gpu is None:
                app.command += ["--always-cpu", "--skip-torch-cuda-test"]
            else:
                app.command += ["--gpu-device-id", str(app.cuda_index)]
            app.command += extra
            apps.append(app)
        image, built, build = self.image()
        proxy, sites = self.exposure(apps, image, built)
        timeout = int(self.spec.get("health_timeout", 600))
        ws = self.data.workspace
        contexts, directories = [], []
        for app in apps:
            instance = app.key.split("/", 1)[1]
            mounts = [
                _bind(self.data.models_dir, "/data/models"),
                _bind(f"{ws}/forge/{instance}", "/data/forge"),
                _bind(f"{ws}/output/forge-{instance}", "/data/forge/outputs"),
                _bind(f"{ws}/cache", "/data/cache"),
            ]
            directories += [m["source"] for m in mounts if m["source"] not in directories]
            contexts.append(self.app_context(app, image, built, _app_env(), mounts, timeout,
                                             "--gpu-device-id"))
        compose = self.renderer.render("forge/compose.yaml.j2", stack={
            "name": self.kind, "project": "genai-forge", "apps": contexts, "proxy": proxy,
            "secrets": self.secrets, "network": self.spec.get("network"),
            "hash_placeholder": HASH_PLACEHOLDER})
        return self.finish(apps, compose, build, sites, [], directories, timeout)


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


def _python_healthcheck(port: int, path: str) -> list[str]:
    """A healthcheck run with the image's Python (no curl in the image)."""
    code = ("import sys, urllib.request; "
            f"r = urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=8); "
            "sys.exit(0 if r.status == 200 else 1)")
    return ["CMD", "python", "-c", code]


def _host_ip(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _client_ip(address: str) -> str:
    """Where a check on the workstation reaches a published address."""
    if address in ("0.0.0.0", "", "*"):
        return "127.0.0.1"
    if address in ("::", "[::]"):
        return "[::1]"
    return _host_ip(address)


# --------------------------------------------------------------------------- custom stacks


class _Custom:
    """A user's compose template folder, rendered with its vars; secrets go to 0600 files."""

    SKIP = {".history", ".git", "__pycache__"}

    def __init__(self, data: _Data, name: str, spec: dict, renderer: _Renderer):
        self.data, self.name, self.spec, self.renderer = data, name, spec, renderer

    def render(self) -> RenderedStack:
        base = Path(str(self.data.get("inventory_dir", "."))).expanduser()
        folder = (base / self.spec["template_dir"]).expanduser()
        field_path = f"stacks.custom.{self.name}"
        if not folder.is_dir():
            raise StackError(f"{field_path}.template_dir: {folder} is not a folder",
                             "relative paths start at the inventory file's folder")
        secret_names = list(self.spec.get("secrets") or [])
        context = {
            "vars": self.spec.get("vars") or {}, "stack": self.name,
            "project": f"genai-{self.name}", "workspace": self.data.workspace,
            "models_dir": self.data.models_dir, "uid": self.data.uid_gid.split(":")[0],
            "gid": self.data.uid_gid.split(":")[1], "user": self.data.uid_gid,
            "secrets_env_file": "./secrets.env",
            "secrets": {n: f"./secrets/{n}" for n in secret_names},
        }
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)),
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                 autoescape=False)
        files: dict[str, RenderedFile] = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(folder)
            if set(relative.parts) & self.SKIP:
                continue
            target = relative.as_posix()
            if target.endswith(".j2"):
                target = target[:-3]
                try:
                    text = env.get_template(relative.as_posix()).render(**context)
                except jinja2.TemplateError as exc:
                    raise StackError(f"{field_path}: {relative} does not render: {exc}",
                                     "check the template and stacks.custom.*.vars") from None
                files[target] = RenderedFile(text)
            else:
                files[target] = RenderedFile(path.read_bytes(), 0o755 if path.stat().st_mode
                                             & 0o111 else 0o644)
        if "compose.yaml" not in files:
            raise StackError(f"{field_path}.template_dir: {folder} holds no compose.yaml(.j2)",
                             "add your compose template to that folder")
        for target in list(files):
            if target == ".env" or target.startswith("secrets/") or target == "secrets.env":
                raise StackError(f"{field_path}: the template folder has {target}, a name "
                                 "genai-workstation writes itself", "rename or remove it")
        values = {n: self.data.secret(n, f"{field_path}.secrets") for n in secret_names}
        for target, rendered in files.items():
            for value in values.values():
                if value and value.encode() in rendered.data():
                    raise StackError(f"{field_path}: {target} contains the value of a secret",
                                     "refer to secrets through compose `secrets:` "
                                     "({{ secrets.NAME }}) or the env file, never by value")
        compose, warnings, published, services = self.compose(files["compose.yaml"], field_path)
        files["compose.yaml"] = RenderedFile(compose)
        files[".env"] = RenderedFile(
            "# Rendered by genai-workstation: compose project settings only, never a secret.\n"
            f"COMPOSE_PROJECT_NAME=genai-{self.name}\n")
        if secret_names:
            files["secrets.env"] = RenderedFile(
                "".join(f"{n}={_env_quote(v)}\n" for n, v in sorted(values.items())), 0o600, True)
            for name, value in values.items():
                files[f"secrets/{name}"] = RenderedFile(value, 0o600, True)
        return RenderedStack(
            name=self.name, project=f"genai-{self.name}",
            directory=f"{self.data.workspace}/stacks/{self.name}", files=files, config_hash="",
            services=services, published=published, health=[], expected_gpu={},
            gpus={}, image_build=None, directories=[],
            health_timeout=int(self.spec.get("health_timeout", 300)), warnings=warnings)

    def compose(self, rendered: RenderedFile, field_path: str):
        try:
            document = yaml.safe_load(rendered.data().decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise StackError(f"{field_path}: compose.yaml is not valid YAML: {exc}",
                             "fix the template") from None
        if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
            raise StackError(f"{field_path}: compose.yaml has no `services:` mapping",
                             "a compose file lists its services under `services:`")
        document.setdefault("name", f"genai-{self.name}")
        warnings, published = [], []
        for service, body in document["services"].items():
            body = body if isinstance(body, dict) else {}
            document["services"][service] = body
            labels = body.get("labels") or {}
            if isinstance(labels, list):
                labels = dict(item.split("=", 1) if "=" in item else (item, "")
                              for item in labels)
            labels.update({f"{LABEL}.stack": self.name, f"{LABEL}.service": service,
                           f"{LABEL}.config-hash": HASH_PLACEHOLDER})
            body["labels"] = labels
            for port in body.get("ports") or []:
                address, number = _published_port(port)
                if number is None:
                    continue
                published.append((service, address, number))
                if address not in ("127.0.0.1", "::1", "localhost"):
                    warnings.append(f"{field_path}: service {service} publishes port {number} on "
                                    f"{address}, beyond this machine")
        text = ("# Rendered by genai-workstation from the template folder of "
                f"stacks.custom.{self.name}; do not edit here.\n"
                + yaml.safe_dump(document, sort_keys=False, default_flow_style=False,
                                 allow_unicode=True))
        return text, warnings, published, list(document["services"])


def _published_port(port) -> tuple[str, int | None]:
    """(host address, host port) of a compose `ports:` entry (short or long syntax)."""
    if isinstance(port, dict):
        published = port.get("published")
        number = int(str(published).split("-")[0]) if published else None
        return port.get("host_ip") or "0.0.0.0", number
    text = str(port).split("/")[0]
    if text.startswith("["):
        address, _, rest = text[1:].partition("]:")
        parts = rest.split(":")
        return address, int(parts[0].split("-")[0]) if len(parts) > 1 else None
    parts = text.split(":")
    if len(parts) == 3:
        return parts[0] or "0.0.0.0", int(parts[1].split("-")[0]) if parts[1] else None
    if len(parts) == 2:
        return "0.0.0.0", int(parts[0].split("-")[0])
    return "0.0.0.0", None  # a container port only: not published on a fixed host port


def _env_quote(value: str) -> str:
    if re.match(r"^[A-Za-z0-9_./:@+-]*$", value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------- hash


def _finish(stack: RenderedStack, data: _Data) -> RenderedStack:
    """Compute the config hash, put it in the labels, and check no secret leaked."""
    stack.config_hash = config_hash(stack.files, (data.workstation, stack.name))
    for path, rendered in list(stack.files.items()):
        if rendered.secret or not isinstance(rendered.content, str):
            continue
        if HASH_PLACEHOLDER in rendered.content:
            stack.files[path] = RenderedFile(
                rendered.content.replace(HASH_PLACEHOLDER, stack.config_hash),
                rendered.mode, rendered.secret)
    leaks = [path for path, rendered in stack.files.items() if not rendered.secret
             for value in data.secret_values() if value.encode() in rendered.data()]
    if leaks:
        raise StackError(
            f"a secret value would be written to {', '.join(sorted(set(leaks)))}",
            "secrets belong only in the secrets file: check vars and extra_args (a very short "
            "secret can also appear there by chance: use a longer one)")
    return stack


def config_hash(files: Mapping[str, RenderedFile], context: tuple[str, ...]) -> str:
    """sha256 over every file; secret files enter through a slow keyed digest only.

    Non-secret files contribute their sha256. A secret file contributes
    PBKDF2-HMAC-SHA256(content, salt=host/stack/path), so the hash (shown in container labels)
    changes when a secret changes but is no cheap oracle for guessing it.
    """
    digest = hashlib.sha256(b"genai-workstation config v1\0")
    for path in sorted(files):
        rendered = files[path]
        if rendered.secret:
            salt = "\0".join(("genai-workstation/secret-file", *context, path)).encode()
            part = hashlib.pbkdf2_hmac("sha256", rendered.data(), salt,
                                       SECRET_DIGEST_ITERATIONS).hex()
        else:
            part = hashlib.sha256(rendered.data()).hexdigest()
        digest.update(f"{path}\0{rendered.mode:o}\0{int(rendered.secret)}\0{part}\0".encode())
    return digest.hexdigest()
