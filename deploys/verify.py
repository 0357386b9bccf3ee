"""Check workstations against the inventory, changing nothing: GPU, Docker, folders, stacks."""

from pyinfra import host

from genai_workstation.operations.verify import verified
from genai_workstation.verify import enabled_stacks

verified(name="Verify workstation and stacks", stacks=enabled_stacks(host.data))
