"""Converge everything a host declares: the workstation, its models, every enabled stack, verify.

`genai-drift` compares the host with this deploy's dry-run plan.
"""

from genai_workstation.deploys.steps.models import sync_models
from genai_workstation.deploys.steps.stacks import comfyui_stack, custom_stacks, forge_stack
from genai_workstation.deploys.steps.verify import verify_host
from genai_workstation.deploys.steps.workstation import workstation

workstation()
sync_models()
comfyui_stack()
forge_stack()
custom_stacks()
verify_host()
