"""Check workstations against the inventory, changing nothing: GPU, Docker, folders, stacks."""

from deploys.steps.verify import verify_host

verify_host()
