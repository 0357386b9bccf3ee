"""The built-in ComfyUI stack: one app, an optional idle-unload sidecar."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from .. import comfyui_login as login
from ..hostmodel import COMFYUI
from ..layout import COMFYUI_MODEL_FOLDERS, LEGACY_MODEL_FOLDERS
from .builtin import FORBIDDEN_FLAGS, _app_env, _bind, _BuiltinStack
from .errors import StackError
from .rendered import HASH_PLACEHOLDER, RenderedFile, RenderedStack

COMFYUI_DEFAULTS = {
    "base_image": "nvidia/cuda:12.8.1-runtime-ubuntu24.04",
    "torch_index_url": "https://download.pytorch.org/whl/cu128",
    "pip_index_url": "https://pypi.org/simple",
    "repo_url": "https://github.com/Comfy-Org/ComfyUI.git",
    "ref": "v0.38.0",
}
COMFYUI_PORT = COMFYUI.internal_port
_FORBIDDEN_COMFYUI_EXTRA = ("--port", "--cuda-device", "--cpu")


class _ComfyUI(_BuiltinStack):
    kind = "comfyui"
    defaults = COMFYUI_DEFAULTS

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
            if node.get("path"):
                continue  # copied from its folder by image_ext.extend_context
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
        apps = self.apps()
        app = apps[0]
        extra = self.check_extra_args(app, FORBIDDEN_FLAGS["comfyui"] + _FORBIDDEN_COMFYUI_EXTRA)
        app.command = ["--listen", "0.0.0.0", "--port", str(app.internal_port),
                       "--disable-auto-launch",
                       "--input-directory", "/data/input", "--output-directory", "/data/output",
                       "--user-directory", "/data/user", "--temp-directory", "/tmp"]
        app.command += ["--cpu"] if app.gpu is None else ["--cuda-device", str(app.cuda_index)]
        app.command += extra
        image, built, build = self.image()
        proxy, sites = self.exposure(apps, image, built)
        layout = self.data.layout
        mounts = [_bind(layout.models_dir, "/data/models")] + [
            _bind(layout.data(folder), f"/data/{folder}")
            for folder in ("input", "output", "user", "custom_nodes", "cache")]
        has_login = login.NODE_FOLDER in self.custom_nodes().split()
        if has_login:  # its PASSWORD survives a recreate; the folder belongs to the user
            mounts.append(_bind(layout.data(login.WORKSPACE_FOLDER), login.LOGIN_DIR))
        env = _app_env()
        idle = None
        minutes = int(spec.get("idle_unload_minutes") or 0)
        extra_services = []
        if minutes > 0:
            idle = {"image": image, "pull_never": built, "user": self.data.uid_gid,
                    "minutes": str(minutes), "url": f"http://comfyui:{app.internal_port}",
                    "upstream": "comfyui", "login": has_login and {
                        "source": layout.data(login.WORKSPACE_FOLDER), "target": login.LOGIN_DIR}}
            self.files["sidecar/idle_unload.py"] = RenderedFile(
                self.renderer.read("comfyui/idle_unload.py"))
            extra_services.append("idle-unload")
        context = self.app_context(app, image, built, env, mounts, self.stack.health_timeout,
                                   "--cuda-device")
        context["healthcheck"] = _healthcheck(self.health_check(app).url)
        compose = self.renderer.render("comfyui/compose.yaml.j2", stack={
            "name": self.kind, "project": self.stack.project, "apps": [context],
            "idle_unload": idle, "proxy": proxy, "secrets": self.secrets,
            "network": self.spec.get("network"), "hash_placeholder": HASH_PLACEHOLDER})
        directories = [m["source"] for m in mounts]
        return self.finish(apps, compose, build, sites, extra_services, directories)


def _healthcheck(url: str) -> list[str]:
    """The image's Python asks `url` with ComfyUI-Login's token when it has one."""
    code = (login.authed_request_code(url) + "import sys;"
            "sys.exit(0 if u.urlopen(r,timeout=8).status==200 else 1)")
    return ["CMD", "python", "-c", code]
