"""`pyinfra inventory.py deploys/forge.py`: one command from a fresh machine to Forge.

The checklist: the workstation, the models, the Forge stack (every instance of the inventory's
`stacks.forge`, one per card), then verify.
"""

from genai_workstation.deploys.steps.models import sync_models
from genai_workstation.deploys.steps.stacks import stack
from genai_workstation.deploys.steps.verify import verify_host
from genai_workstation.deploys.steps.workstation import workstation

workstation()
sync_models()
stack("forge")
verify_host(["forge"])
