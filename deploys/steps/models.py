"""Model step: the inventory's `models:` downloaded and verified on the workstation itself.

The downloader needs python3 and requests on the host (Debian/Ubuntu: python3-requests). They
are installed only when missing, so a converged host plans zero changes here.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

from genai_workstation.hostfacts import fact
from genai_workstation.models import operation as models_ops

DOWNLOADER_PACKAGES = ("python3", "python3-requests")


@deploy("Models")
def sync_models():
    data = host.data.dict()
    models = data.get("models") or []
    if not models:
        host.noop("models: none listed in the inventory")
        return
    installed = fact(DebPackages) or {}
    missing = [p for p in DOWNLOADER_PACKAGES if p not in installed]
    if missing:
        apt.packages(name=f"Install {', '.join(missing)} for the model downloader",
                     packages=missing, update=True, no_recommends=True)
    endpoints = data.get("model_endpoints") or {}
    models_ops.synced(
        name=f"Models: {len(models)} files in {data['models_dir']}",
        models=models,
        models_dir=data["models_dir"],
        user=data.get("user"),
        secrets=data.get("secrets") or {},
        hf_endpoint=endpoints.get("huggingface"),
        civitai_endpoint=endpoints.get("civitai"),
    )
