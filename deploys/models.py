"""Download and verify the inventory's models on each workstation, and nothing else.

    pyinfra inventory.py deploys/models.py
"""

from genai_workstation.deploys.steps.models import sync_models

sync_models()
