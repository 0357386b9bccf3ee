"""Pick one GPU from the NvidiaGpus fact by index, UUID or name, and find its CUDA index.

nvidia-smi and CUDA do not number GPUs the same way. nvidia-smi's ``index`` is its own
enumeration (normally PCI bus order). CUDA numbers devices "fastest first" unless the process
runs with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so on a two-card machine (say an RTX 3090 and an
RTX 3080) device 0 can be a different card for nvidia-smi and for ComfyUI or Forge. WSL2 also
cannot isolate GPUs per container (every container sees every GPU), so the card is chosen
inside the app (ComfyUI ``--cuda-device``, Forge ``--gpu-device-id``): set
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and pass :func:`cuda_index`, the card's position in PCI bus
order, never nvidia-smi's index; then confirm the card's name from inside the app.
"""

from __future__ import annotations


class GpuResolutionError(ValueError):
    """A GPU reference matched no GPU, or more than one."""


def _describe(gpus: list[dict]) -> str:
    if not gpus:
        return "no GPUs found"
    return "; ".join(
        f"index {gpu.get('index')}: {gpu.get('name')} ({gpu.get('uuid')})" for gpu in gpus
    )


def _fail(ref, problem: str, gpus: list[dict], shown: list[dict] | None = None) -> None:
    label = "matches" if shown is not None else "GPUs found"
    raise GpuResolutionError(
        f"GPU {ref!r} {problem}; {label}: {_describe(gpus if shown is None else shown)}"
    )


def resolve_gpu(ref: int | str, gpus: list[dict]) -> dict:
    """The one GPU that ``ref`` names in ``gpus`` (the NvidiaGpus fact's ``gpus`` list).

    ``ref`` is nvidia-smi's index (an int, or digits that are no word of a name), a UUID
    (``GPU-...``, a unique prefix is enough) or a fragment of the name (``"RTX 3090"``,
    case-insensitive).
    Raises :class:`GpuResolutionError` naming ``ref`` and listing the GPUs.
    """
    if isinstance(ref, bool) or not isinstance(ref, (int, str)):
        _fail(ref, "is not an index, UUID or name", gpus)
    if not gpus:
        _fail(ref, "cannot be resolved", gpus)

    text = ref.strip().lower() if isinstance(ref, str) else ""
    named = [gpu for gpu in gpus if text and text in (gpu.get("name") or "").lower()]
    # an int is an index; so are digits that are no word of any name ("0", but not "3090")
    if isinstance(ref, int) or (
        text.isdigit() and not any(text in (gpu.get("name") or "").lower().split() for gpu in gpus)
    ):
        index = int(ref)
        found = [gpu for gpu in gpus if gpu.get("index") == index]
        if not found:
            _fail(ref, "matches no nvidia-smi index", gpus)
        return found[0]

    if not text:
        _fail(ref, "is empty", gpus)

    if text.startswith("gpu-"):
        found = [gpu for gpu in gpus if (gpu.get("uuid") or "").lower().startswith(text)]
        if not found:
            _fail(ref, "matches no GPU UUID", gpus)
        if len(found) > 1:
            _fail(ref, "is an ambiguous UUID prefix", gpus, shown=found)
        return found[0]

    found = named
    if len(found) > 1:
        exact = [gpu for gpu in found if (gpu.get("name") or "").lower() == text]
        if len(exact) == 1:
            return exact[0]
        _fail(ref, "is ambiguous (use the index or UUID)", gpus, shown=found)
    if not found:
        _fail(ref, "matches no GPU name", gpus)
    return found[0]


def _bus_key(gpu: dict) -> tuple:
    """Sort key for a PCI bus id such as 00000000:01:00.0 (domain:bus:device.function)."""
    bus_id = (gpu.get("pci_bus_id") or "").strip()
    try:
        domain, bus, rest = bus_id.split(":")
        device, function = rest.split(".")
        return (0, int(domain, 16), int(bus, 16), int(device, 16), int(function, 16))
    except ValueError:
        return (1, bus_id.lower(), 0, 0, 0)


def cuda_index(gpu: dict, gpus: list[dict]) -> int:
    """Position of ``gpu`` in PCI bus order: its CUDA index with CUDA_DEVICE_ORDER=PCI_BUS_ID."""
    ordered = sorted(gpus, key=_bus_key)
    for position, candidate in enumerate(ordered):
        if candidate is gpu or (
            candidate.get("uuid") is not None and candidate.get("uuid") == gpu.get("uuid")
        ):
            return position
    for position, candidate in enumerate(ordered):
        if candidate == gpu:
            return position
    raise GpuResolutionError(
        f"GPU {gpu.get('name')} ({gpu.get('uuid')}) is not among the GPUs found: {_describe(gpus)}"
    )
