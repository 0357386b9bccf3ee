"""Check workstations against the inventory, changing nothing: GPU, Docker, folders, stacks."""

from genai_workstation.deploys.steps.verify import verify_host

verify_host()
