"""What a render produces: the files of a stack folder, the image to build, the stack itself."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from ..stack_names import LABEL  # noqa: F401 (the label prefix, shared with facts/)

HASH_PLACEHOLDER = "@@GENAI_CONFIG_HASH@@"


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


@dataclass(frozen=True)
class HealthCheck:
    """An app's health address inside its container (its compose healthcheck asks the same)."""

    service: str
    url: str  # http://127.0.0.1:<the app's internal port><its health path>
    writable: tuple[str, ...] = ()  # folders inside the container the app must write


@dataclass(frozen=True)
class GpuCheck:
    """The card the inventory declares for an app, and how to ask the app which one it uses:
    `probe` "comfyui" GETs `url` inside the container (/system_stats lists the devices);
    "forge" reads its `Device: ...` start-up log line."""

    service: str
    expected: str  # the declared card's nvidia-smi name
    probe: str
    url: str | None = None


@dataclass(frozen=True)
class AuthCheck:
    """An exposed app: a request without credentials to `url` must be refused by the proxy."""

    service: str  # the app the proxy protects
    url: str  # the published address, as a client on the workstation reaches it
    proxy_port: int  # the proxy's own port for this app (finds the port really published)


@dataclass
class RenderedStack:
    name: str
    project: str  # compose project name
    directory: str  # <workspace>/stacks/<name>
    files: dict[str, RenderedFile]
    config_hash: str
    services: list[str]
    published: list[tuple[str, str, int]]  # (service, host address, host port)
    health_timeout: int  # seconds `docker compose up --wait` waits (the stack's setting)
    health: list[HealthCheck] = field(default_factory=list)
    gpu_checks: list[GpuCheck] = field(default_factory=list)
    auth_checks: list[AuthCheck] = field(default_factory=list)
    image_build: ImageBuild | None = None
    directories: list[str] = field(default_factory=list)  # host folders to create (user-owned)
    warnings: list[str] = field(default_factory=list)  # shown by the stack step
    # {service: hash of what its container depends on} (its genai.service-hash label)
    service_hashes: dict[str, str] = field(default_factory=dict)

    def secret_paths(self) -> list[str]:
        return sorted(path for path, f in self.files.items() if f.secret)
