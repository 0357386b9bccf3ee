"""`pyinfra inventory.py deploys/workstation.py`: the workstation alone.

Platform checks, WSL settings, the workstation user, Docker, the NVIDIA container toolkit and
the workspace tree; see docs/workstation.md for what it changes on the machine and why.
"""

from genai_workstation.deploys.steps.workstation import workstation

workstation()
