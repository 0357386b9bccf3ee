"""Facts about NVIDIA GPUs (nvidia-smi, also from /usr/lib/wsl/lib) and the container toolkit."""

from __future__ import annotations

import re

from pyinfra.api import FactBase

QUERY_FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.total", "driver_version")

# Values nvidia-smi prints when it cannot read a field.
_UNAVAILABLE = {
    "",
    "n/a",
    "[n/a]",
    "[not supported]",
    "not supported",
    "err!",
    "[err!]",
    "[unknown error]",
}


def _clean(value: str) -> str | None:
    value = value.strip()
    return None if value.lower() in _UNAVAILABLE else value


def _mib(value: str) -> int | None:
    cleaned = _clean(value)
    if cleaned is None:
        return None
    match = re.fullmatch(r"(\d+)(?:\s*MiB)?", cleaned, flags=re.IGNORECASE)
    return int(match.group(1)) if match else None


def parse_gpu_row(line: str) -> dict | None:
    """One CSV row of the nvidia-smi query, or None when the line is not a GPU row."""
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != len(QUERY_FIELDS) or not fields[0].isdigit():
        return None
    index, uuid, name, bus_id, memory, driver = fields
    return {
        "index": int(index),
        "uuid": _clean(uuid),
        "name": _clean(name),
        "pci_bus_id": _clean(bus_id),
        "memory_total_mib": _mib(memory),
        "driver_version": _clean(driver),
    }


class NvidiaGpus(FactBase):
    """
    Returns the GPUs nvidia-smi sees (looked up in PATH, then /usr/lib/wsl/lib).

    .. code:: python

        {
            "available": True,
            "error": None,  # or nvidia-smi's complaint, e.g. "NVIDIA-SMI has failed ..."
            "gpus": [
                {
                    "index": 0,
                    "uuid": "GPU-52dc20f4-4d06-1338-85c9-c493c5dcec02",
                    "name": "NVIDIA GeForce RTX 3090",
                    "pci_bus_id": "00000000:01:00.0",
                    "memory_total_mib": 24576,  # None when nvidia-smi cannot tell
                    "driver_version": "555.99",  # the Windows driver version on WSL
                },
            ],
        }
    """

    def command(self) -> str:
        query = ",".join(QUERY_FIELDS)
        return (
            "smi=$(command -v nvidia-smi 2>/dev/null); "
            'if [ -z "$smi" ] && [ -x /usr/lib/wsl/lib/nvidia-smi ]; '
            "then smi=/usr/lib/wsl/lib/nvidia-smi; fi; "
            'if [ -z "$smi" ]; then echo smi=; else echo "smi=$smi"; '
            f'"$smi" --query-gpu={query} --format=csv,noheader,nounits 2>&1; '
            'echo "rc=$?"; fi'
        )

    @staticmethod
    def default():
        return {"available": False, "error": None, "gpus": []}

    def process(self, output: list[str]):
        if not output:
            return self.default()
        smi = None
        rc = None
        gpus = []
        messages = []
        for line in output:
            if line.startswith("smi="):
                smi = line[4:].strip()
                continue
            if re.fullmatch(r"rc=\d+", line.strip()):
                rc = int(line.strip()[3:])
                continue
            row = parse_gpu_row(line)
            if row is not None:
                gpus.append(row)
            elif line.strip():
                messages.append(line.strip())

        error = None
        if not smi:
            error = "nvidia-smi not found (PATH, /usr/lib/wsl/lib)"
        elif rc not in (None, 0):
            error = messages[0] if messages else f"nvidia-smi exited with status {rc}"
        elif not gpus:
            error = messages[0] if messages else "nvidia-smi listed no GPUs"

        if error is not None and rc not in (None, 0):
            gpus = []
        return {"available": bool(gpus), "error": error, "gpus": gpus}


class NvidiaCtkVersion(FactBase):
    """
    Returns the NVIDIA Container Toolkit CLI version, e.g. ``"1.12.0"``, or None.
    """

    def requires_command(self) -> str:
        return "nvidia-ctk"

    def command(self) -> str:
        return "nvidia-ctk --version 2>/dev/null || true"

    def process(self, output: list[str]):
        for line in output:
            match = re.search(r"version\s+v?(\d+(?:\.\d+)+[0-9A-Za-z.~+-]*)", line)
            if match:
                return match.group(1)
        return None
