"""The workspace layout shared by the workstation deploy, the stacks and the model sync."""

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

