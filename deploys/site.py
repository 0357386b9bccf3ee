"""Converge everything a host declares: the workstation, its models, every enabled stack, verify.

`genai-drift` compares the host with this deploy's dry-run plan.
"""

from deploys.steps.models import sync_models
from deploys.steps.stacks import comfyui_stack, custom_stacks, forge_stack
from deploys.steps.verify import verify_host
from deploys.steps.workstation import workstation

workstation()
sync_models()
comfyui_stack()
forge_stack()
custom_stacks()
verify_host()
