"""Test deploy: only the NVIDIA toolkit operation of the workstation step, from host.data."""

from pyinfra import host

from genai_workstation.operations import nvidia

_toolkit = host.data.get("nvidia_toolkit")
nvidia.toolkit(
    name=f"NVIDIA container toolkit {_toolkit['version']}",
    version=_toolkit["version"],
    repo_url=_toolkit["repo_url"],
    gpgkey_url=_toolkit["gpgkey_url"],
)
