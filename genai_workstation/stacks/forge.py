"""The built-in Forge stack: one app per instance."""

from __future__ import annotations

from ..hostmodel import FORGE
from . import forge_image
from .builtin import FORBIDDEN_FLAGS, _App, _app_env, _bind, _BuiltinStack
from .errors import StackError
from .forge_flags import FORGE_FLAGS, FORGE_FLAGS_REF, FORGE_REFUSED_FLAGS
from .rendered import HASH_PLACEHOLDER, RenderedFile, RenderedStack

FORGE_DEFAULTS = {
    "base_image": "nvidia/cuda:12.1.1-runtime-ubuntu22.04",
    "torch_index_url": "https://download.pytorch.org/whl/cu121",
    "pip_index_url": "https://pypi.org/simple",
    "repo_url": "https://github.com/lllyasviel/stable-diffusion-webui-forge.git",
    "ref": "1b44ae22e3996b8af048f268bd076702b296b469",
}
FORGE_PORT = FORGE.internal_port

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


class _Forge(_BuiltinStack):
    kind = "forge"
    defaults = FORGE_DEFAULTS

    def build_args(self, settings: dict) -> dict[str, str]:
        return {
            "BASE_IMAGE": settings["base_image"], "TORCH_INDEX_URL": settings["torch_index_url"],
            "PIP_INDEX_URL": settings["pip_index_url"], "FORGE_REPO": settings["repo_url"],
            "FORGE_REF": settings["ref"], **self.mirror_args(settings),
            **forge_image.installer_args(self.spec.get("image") or {}),
        }

    def build_context(self, settings: dict) -> dict[str, RenderedFile]:
        context = super().build_context(settings)
        context["torch-requirements.txt"] = RenderedFile(
            forge_image.torch_requirements(self.spec.get("image") or {}))
        for name in ("forge-install.sh", "requirements-seed.txt"):
            context[name] = RenderedFile(self.renderer.read(f"forge/{name}"))
        return context

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
        apps = self.apps()
        if not apps:
            raise StackError("stacks.forge.instances: no instance", "add at least one instance")
        for app in apps:
            extra = self.check_extra_args(app, FORBIDDEN_FLAGS["forge"])
            self.check_forge_flags(app, extra)
            app.command = ["--skip-prepare-environment", "--skip-install",
                           "--skip-version-check", "--no-download-sd-model",
                           "--listen", "--port", str(app.internal_port), "--api",
                           "--data-dir", "/data/forge"]
            app.command += [a for flag, folder in FORGE_MODEL_FLAGS
                            for a in (flag, f"/data/models/{folder}")]
            if app.gpu is None:
                app.command += ["--always-cpu", "--skip-torch-cuda-test"]
            else:
                app.command += ["--gpu-device-id", str(app.cuda_index)]
            app.command += extra
        image, built, build = self.image()
        proxy, sites = self.exposure(apps, image, built)
        layout = self.data.layout
        contexts, directories = [], []
        for app in apps:
            instance = app.model.instance
            mounts = [
                _bind(layout.models_dir, "/data/models"),
                _bind(layout.data(f"forge/{instance}"), "/data/forge"),
                _bind(layout.data(f"output/forge-{instance}"), "/data/forge/outputs"),
                _bind(layout.data("cache"), "/data/cache"),
            ]
            directories += [m["source"] for m in mounts if m["source"] not in directories]
            contexts.append(self.app_context(app, image, built, _app_env(), mounts,
                                             self.stack.health_timeout, "--gpu-device-id"))
        compose = self.renderer.render("forge/compose.yaml.j2", stack={
            "name": self.kind, "project": self.stack.project, "apps": contexts, "proxy": proxy,
            "secrets": self.secrets, "network": self.spec.get("network"),
            "hash_placeholder": HASH_PLACEHOLDER})
        return self.finish(apps, compose, build, sites, [], directories)
