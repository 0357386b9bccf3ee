"""Facts about installed Debian packages that must not be on a WSL2 GPU host."""

from __future__ import annotations

import re

from pyinfra.api import FactBase

NVIDIA_WSL_REASON = (
    "NVIDIA's CUDA on WSL guide: the Windows NVIDIA driver is the only GPU driver; inside WSL2 "
    "it is stubbed as libcuda (with nvidia-smi) in /usr/lib/wsl/lib. Installing a Linux NVIDIA "
    "driver (cuda-drivers, nvidia-driver-*, or the cuda / cuda-12-x meta-packages that pull it "
    "in) overwrites that stub and breaks CUDA in WSL. Install only the toolkit packages "
    "(cuda-toolkit-12-x) if CUDA is needed on the Linux side."
)

# Package names (not globs) that bring a Linux NVIDIA driver.
FORBIDDEN_NVIDIA_PACKAGES = re.compile(
    r"^(cuda|cuda-drivers(-\d+)?|cuda-\d+-\d+|nvidia-driver|nvidia-driver-.+)$"
)

# dpkg-query globs wide enough to cover every name above.
_GLOBS = ("cuda", "cuda-drivers*", "cuda-[0-9]*", "nvidia-driver*")


class ForbiddenNvidiaPackages(FactBase):
    """
    Returns the installed packages that put a Linux NVIDIA driver on the host (sorted).

    .. code:: python

        ["cuda-drivers", "nvidia-driver-550"]
    """

    default = list

    def requires_command(self) -> str:
        return "dpkg-query"

    def command(self) -> str:
        globs = " ".join(f"'{glob}'" for glob in _GLOBS)
        return f"dpkg-query -W -f '${{Package}} ${{Status}}\\n' {globs} 2>/dev/null || true"

    def process(self, output: list[str]):
        found = set()
        for line in output:
            parts = line.split()
            # "<name> install ok installed" (or "hold ok installed")
            if len(parts) == 4 and parts[3] == "installed":
                name = parts[0].split(":", 1)[0]
                if FORBIDDEN_NVIDIA_PACKAGES.match(name):
                    found.add(name)
        return sorted(found)
