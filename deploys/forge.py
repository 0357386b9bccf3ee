"""`pyinfra inventory.py deploys/forge.py`: one command from a fresh machine to Forge.

The checklist: the workstation, the models, the Forge stack (every instance of the inventory's
`stacks.forge`, one per card), then verify.
"""

from deploys.steps.models import sync_models
from deploys.steps.stacks import stack
from deploys.steps.verify import verify_host
from deploys.steps.workstation import workstation

workstation()
sync_models()
stack("forge")
verify_host(["forge"])
