"""The workspace layout shared by the workstation deploy, the stacks and the model sync."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

# ComfyUI's model folders (comfy/folder_paths.py in Comfy-Org/ComfyUI).
COMFYUI_MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)

# Older names ComfyUI still accepts for the same folders.
LEGACY_MODEL_FOLDERS = {
    "clip": "text_encoders",
    "unet": "diffusion_models",
    "t2i_adapter": "controlnet",
}

# Data folders beside models/ in the workspace.
DATA_FOLDERS = ("input", "output", "custom_nodes", "user", "cache", "stacks")


# Folders of the workspace the containers (running as the workstation uid) write.
WRITABLE_FOLDERS = ("input", "output", "user", "custom_nodes", "cache")


@dataclass(frozen=True)
class Layout:
    """Every path of a host's workspace, defined here once."""

    workspace: str
    models_dir: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "workspace", posixpath.normpath(self.workspace))
        object.__setattr__(self, "models_dir", posixpath.normpath(self.models_dir))

    def stack_dir(self, name: str) -> str:
        """`<workspace>/stacks/<name>`: a stack's compose folder."""
        return stack_dir(self.workspace, name)

    def data(self, folder: str) -> str:
        return posixpath.join(self.workspace, folder)

    def tree(self) -> list[str]:
        """Every folder the workstation step creates, parents before children."""
        paths = [self.workspace, self.models_dir]
        paths += [posixpath.join(self.models_dir, name) for name in COMFYUI_MODEL_FOLDERS]
        paths += [self.data(name) for name in DATA_FOLDERS]
        return list(dict.fromkeys(paths))

    def writable(self) -> list[str]:
        """Folders the containers must be able to write."""
        return [self.models_dir] + [self.data(name) for name in WRITABLE_FOLDERS]


def stack_dir(workspace: str, name: str) -> str:
    return f"{workspace.rstrip('/')}/stacks/{name}"


def default_models_dir(workspace: str) -> str:
    return workspace.rstrip("/") + "/models"
