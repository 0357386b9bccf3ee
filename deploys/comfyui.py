"""`pyinfra inventory.py deploys/comfyui.py`: one command from a fresh machine to ComfyUI.

The checklist: the workstation (user, workspace, Docker, NVIDIA toolkit), the models, the
ComfyUI stack (render, build, up, health, GPU check, rollback on failure), then verify.
"""

from genai_workstation.deploys.steps.models import sync_models
from genai_workstation.deploys.steps.stacks import stack
from genai_workstation.deploys.steps.verify import verify_host
from genai_workstation.deploys.steps.workstation import workstation

workstation()
sync_models()
stack("comfyui")
verify_host(["comfyui"])
