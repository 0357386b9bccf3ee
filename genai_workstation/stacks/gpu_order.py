"""CUDA device index of a GPU when CUDA_DEVICE_ORDER=PCI_BUS_ID (what the stacks pin with)."""

from __future__ import annotations

import re

_PCI = re.compile(r"^(?:([0-9a-fA-F]+):)?([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-9a-fA-F]+)$")


def pci_sort_key(bus_id: str | None) -> tuple:
    """(domain, bus, device, function) as integers; `00000000:2B:00.0` == `0000:2b:00.0`."""
    match = _PCI.match((bus_id or "").strip())
    if not match:
        return (float("inf"), bus_id or "")
    return tuple(int(part or "0", 16) for part in match.groups())


def cuda_index(gpu: dict, gpus: list[dict] | None = None) -> int:
    """Index CUDA gives `gpu` with CUDA_DEVICE_ORDER=PCI_BUS_ID.

    With the full list of the host's GPUs (`gpus`, from the GPU fact), this is the GPU's rank
    by PCI bus id, whatever order nvidia-smi printed them in. Without it, nvidia-smi's own index
    is used (nvidia-smi enumerates in PCI bus order), which is only a fallback.
    """
    try:  # the shared helper, when the GPU module provides one
        from genai_workstation.gpus import cuda_index as shared  # type: ignore[import-not-found]
    except ImportError:
        shared = None
    if shared is not None and gpus:
        return shared(gpu, gpus)
    if not gpus:
        return int(gpu["index"])
    ordered = sorted(gpus, key=lambda g: pci_sort_key(g.get("pci_bus_id")))
    key = pci_sort_key(gpu.get("pci_bus_id"))
    for position, candidate in enumerate(ordered):
        if pci_sort_key(candidate.get("pci_bus_id")) == key and (
            gpu.get("uuid") is None or candidate.get("uuid") in (None, gpu.get("uuid"))
        ):
            return position
    raise ValueError(f"GPU {gpu.get('name')} ({gpu.get('pci_bus_id')}) is not in the GPU list")
