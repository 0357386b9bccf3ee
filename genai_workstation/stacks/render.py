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

Modules: rendered.py (the result types), context.py (host data access, Jinja), builtin.py (what
ComfyUI and Forge share: GPU, image build, service context), comfyui.py, forge.py, exposure.py
(loopback ports or the Caddy proxy), custom.py (the user's compose templates), hashing.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..hostmodel import BUILTIN_STACKS
from ..resources import FILES_DIR  # noqa: F401 (re-exported)
from .builtin import FORBIDDEN_FLAGS, OPTIONAL_IMAGE_SETTINGS, set_arg_defaults  # noqa: F401
from .comfyui import COMFYUI_DEFAULTS, COMFYUI_PORT, _ComfyUI  # noqa: F401
from .context import _Data, _Renderer
from .custom import _Custom, _published_port  # noqa: F401
from .errors import StackError
from .exposure import PROXY_FIRST_PORT, PROXY_IMAGE, _client_ip  # noqa: F401
from .forge import FORGE_DEFAULTS, FORGE_MODEL_FLAGS, FORGE_PORT, _Forge  # noqa: F401
from .hashing import SECRET_DIGEST_ITERATIONS, _finish, config_hash  # noqa: F401
from .rendered import HASH_PLACEHOLDER, LABEL, ImageBuild, RenderedFile, RenderedStack  # noqa: F401


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
    stack = data.model.stack(stack_name)
    if stack_name in BUILTIN_STACKS and not (stack and stack.enabled):
        raise StackError(f"stacks.{stack_name} is not configured (or not enabled) here",
                         f"add stacks.{stack_name} to the host in the inventory")
    if stack is None:
        known = [s.name if s.builtin else f"custom/{s.name}" for s in data.model.stacks]
        raise StackError(f"no stack named {stack_name!r} on this host",
                         f"known stacks: {', '.join(known) or 'none'}")
    if not stack.enabled:
        raise StackError(f"{stack.field} is not enabled", "set enabled: true")
    if stack.builtin:
        builder = _ComfyUI if stack.kind == "comfyui" else _Forge
        rendered = builder(data, stack, renderer, resolved_gpus, all_gpus).render()
    else:
        rendered = _Custom(data, stack, renderer).render()
    return _finish(rendered, data)
