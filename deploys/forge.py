"""`pyinfra inventory.py deploys/forge.py`: one command from a fresh machine to Forge.

The checklist: the workstation, the models, the Forge stack (every instance of the inventory's
`stacks.forge`, one per card), then verify.
"""

from deploys.steps.models import sync_models
from deploys.steps.stacks import stack, verify
from deploys.steps.workstation import workstation

workstation()
sync_models()
stack("forge")
verify("forge")
